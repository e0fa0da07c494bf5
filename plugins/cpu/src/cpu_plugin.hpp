// Internal declarations of the CPU plugin: its context and timer, and the per-family slot
// tables that plugin.cpp assembles into the API table.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

#include <ferrum/common/plugin_support.hpp>

struct ferrum_context : ferrum::plugin::ContextBase {
  int32_t activation_dtype = FERRUM_DTYPE_F32;
  uint64_t device = 0;

  // Staging tables of docs/spec.md §5.1 (batched_slots × batched_items), written only by
  // populate_batched_pointers. APPEND slot: `first` holds the cache handles; ATTENTION slot:
  // `first`/`second` hold the (K, V) pairs. Eager calls never read them (the CPU has no capture).
  static constexpr uint64_t kBatchedSlots = 128;
  static constexpr uint64_t kBatchedItems = 64;
  struct BatchedSlot {
    uint64_t m = 0;
    std::array<ferrum_buffer*, kBatchedItems> first{};
    std::array<ferrum_buffer*, kBatchedItems> second{};
  };
  std::array<BatchedSlot, kBatchedSlots> append_slots{};
  std::array<BatchedSlot, kBatchedSlots> attention_slots{};
};

struct ferrum_timer {
  bool has_start = false;
  bool has_end = false;
  std::chrono::steady_clock::time_point start, end;
};

namespace ferrum::cpu {

using plugin::Status;
using plugin::invalid;
using plugin::ok_status;
using plugin::unsupported;

extern const ferrum_memory_table kMemoryTable;
extern const ferrum_context_table kContextTable;
extern const ferrum_dense_table kDenseTable;
extern const ferrum_attention_table kAttentionTable;
extern const ferrum_paged_kv_table kPagedKvTable;
extern const ferrum_quant_kv_table kQuantKvTable;
extern const ferrum_quant_matmul_table kQuantMatmulTable;
extern const ferrum_moe_table kMoeTable;
extern const ferrum_mla_table kMlaTable;

// Element-wise conversion between any two of F32/F16/BF16 (docs/spec.md §1 from_weight_bytes rules);
// equal dtypes copy bits. `src` may be unaligned.
Status convert_elements(const void* src, int32_t src_dtype, void* dst, int32_t dst_dtype, uint64_t n);

// Allocates a buffer of n elements of dtype (zeroed when `zero`); OUT_OF_MEMORY on failure.
Status make_buffer(int32_t dtype, uint64_t n, bool zero, ferrum_buffer** out);

}  // namespace ferrum::cpu
