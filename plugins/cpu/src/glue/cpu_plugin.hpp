// Internal declarations of the CPU plugin's ABI glue: its context and timer, the per-family slot
// tables that plugin.cpp assembles into the API table, and the helpers every glue file shares
// (buffer allocation and conversion over the device layer).
//
// The glue validates the ABI args (generic generated checks through plugin::run_op, then the
// op rules of docs/spec.md shared with the CUDA plugin in <ferrum/common/*_rules.hpp>) and calls
// the kernels (src/kernels/) over the device layer (src/memory.hpp, src/device.hpp; namespace
// ferrum::cpu). Nothing here is exported: the plugin's only dynamic symbol is
// ferrum_plugin_entry_v1 (hidden visibility + cmake/ferrum-plugin.map).
#pragma once

#include <array>
#include <cstdint>

#include <ferrum/common/event_rules.hpp>
#include <ferrum/common/family_rules.hpp>
#include <ferrum/common/plugin_support.hpp>

#include "device.hpp"

struct ferrum_context : ferrum::plugin::ContextBase {
  int32_t activation_dtype = FERRUM_DTYPE_F32;
  uint64_t device = 0;

  // Staging tables of docs/spec.md §5.1 (batched_slots × batched_items), written only by
  // populate_batched_pointers. APPEND slot: `first` holds the cache handles; ATTENTION slot:
  // `first`/`second` hold the (K, V) pairs. Eager calls never read them (the CPU has no capture).
  static constexpr uint64_t kBatchedSlots = ferrum::plugin::rules::kBatchedSlots;
  static constexpr uint64_t kBatchedItems = ferrum::plugin::rules::kBatchedItems;
  struct BatchedSlot {
    uint64_t m = 0;
    std::array<ferrum_buffer*, kBatchedItems> first{};
    std::array<ferrum_buffer*, kBatchedItems> second{};
  };
  std::array<BatchedSlot, kBatchedSlots> append_slots{};
  std::array<BatchedSlot, kBatchedSlots> attention_slots{};

  // The communicator of docs/spec.md §10 (glue/collective.cpp): `joined` after comm_init; `mpi`
  // is the MPI shim's communicator when world > 1 (NULL for a world of one). Freed with the context.
  struct Comm {
    bool joined = false;
    uint32_t world = 1, rank = 0;
    void* mpi = nullptr;
    Comm() = default;
    Comm(const Comm&) = delete;
    Comm& operator=(const Comm&) = delete;
    ~Comm();
  } comm;
};

// The host clock's two marks (device layer).
struct ferrum_timer {
  ferrum::cpu::Timer t;
};

// An event (ABI 1.1, docs/spec.md §2.1): every op has run when its call returns, so a recorded event
// is already complete; only whether it was recorded is kept (live handles: plugin::event_table()).
struct ferrum_event {
  bool recorded = false;
};

namespace ferrum::cpu {

using plugin::data_of;
using plugin::invalid;
using plugin::run_op;
using plugin::Status;
using plugin::ok_status;
using plugin::unsupported;
// The op rules shared with the CUDA plugin (same checks, same messages).
using namespace plugin::rules;

extern const ferrum_memory_table kMemoryTable;
extern const ferrum_context_table kContextTable;
extern const ferrum_dense_table kDenseTable;
extern const ferrum_attention_table kAttentionTable;
extern const ferrum_paged_kv_table kPagedKvTable;
extern const ferrum_quant_kv_table kQuantKvTable;
extern const ferrum_quant_matmul_table kQuantMatmulTable;
extern const ferrum_moe_table kMoeTable;
extern const ferrum_mla_table kMlaTable;
extern const ferrum_collective_table kCollectiveTable;  // glue/collective.cpp (MPI between processes)

// Element-wise conversion between any two of F32/F16/BF16 (docs/spec.md §1 from_weight_bytes rules);
// equal dtypes copy bits. `src` may be unaligned.
Status convert_elements(const void* src, int32_t src_dtype, void* dst, int32_t dst_dtype, uint64_t n);

// Allocates a buffer of n elements of dtype (zeroed when `zero`); OUT_OF_MEMORY on failure.
Status make_buffer(int32_t dtype, uint64_t n, bool zero, ferrum_buffer** out);

}  // namespace ferrum::cpu
