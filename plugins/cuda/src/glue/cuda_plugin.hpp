// Internal declarations of the CUDA plugin's ABI glue: its context and timer, the per-family
// slot tables that plugin.cpp assembles into the API table, and the helpers every glue file
// shares (device-layer status conversion, device checks, buffer allocation).
//
// The glue validates the ABI args (generic generated checks through plugin::run_op, then the
// op rules of docs/spec.md), makes the context's device current, and calls the ABI-agnostic device
// layer (namespace ferrum::cuda). Nothing here is exported: the plugin's only dynamic symbol
// is ferrum_plugin_entry_v1 (hidden visibility + cmake/ferrum-plugin.map).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include <ferrum/common/family_rules.hpp>
#include <ferrum/common/plugin_support.hpp>

#include "context.hpp"
#include "status.hpp"
#include "timer.hpp"

// One ferrum_context = one heap-allocated DeviceContext (stream, cuBLASLt handle, workspace,
// staging), never copied; `device` is its ordinal.
struct ferrum_context : ferrum::plugin::ContextBase {
  ferrum::cuda::DeviceContext* dev = nullptr;
  int32_t activation_dtype = FERRUM_DTYPE_F16;
  uint64_t device = 0;

  // ---- graph family (docs/spec.md §8), owned by glue/graph.cpp ------------------------------------
  bool capturing = false;          // a stream capture is in flight: only G ops may run
  bool dev_state_mode = false;     // dev-state mode (§8.2): the four ops read dev_state
  uint32_t* dev_state = nullptr;   // device u32[3] = {token, pos, kv}; set_decode_state writes it
  void* graph_state = nullptr;     // the keyed graph cache (glue/graph.cpp)
  // ---- batched per-cache decode staging (docs/spec.md §5.1), owned by glue/attention.cpp ----------
  void* staging = nullptr;
  // ---- collective family (docs/spec.md §10), owned by glue/collective.cpp -------------------------
  bool comm_joined = false;    // comm_init succeeded (comm_destroy clears it)
  uint32_t comm_world = 1;     // world size and rank: 1 / 0 without a communicator
  uint32_t comm_rank = 0;
  void* nccl_comm = nullptr;   // ncclComm_t; NULL without one or once aborted
  std::string comm_broken;     // why it was aborted (an NCCL error or a timeout); empty when usable
};

// Two timing events on the device of the context that made the timer.
struct ferrum_timer {
  ferrum::cuda::Timer t;
};

// An event (ABI 1.1, docs/spec.md §2.1): a cudaEvent_t (timing disabled) of the device of the
// context that made it. Live handles are kept in plugin::event_table() (glue/events.cpp).
struct ferrum_event {
  int device = -1;
  cudaEvent_t ev = nullptr;
};

namespace ferrum::cuda::glue {

using plugin::invalid;
using plugin::ok_status;
using plugin::run_op;
using plugin::unsupported;
using Status = plugin::Status;
// The op rules shared with the CPU plugin (same checks, same messages): <ferrum/common/*_rules.hpp>.
using namespace plugin::rules;

extern const ferrum_memory_table kMemoryTable;
extern const ferrum_context_table kContextTable;
extern const ferrum_dense_table kDenseTable;
extern const ferrum_attention_table kAttentionTable;  // glue/attention.cpp
extern const ferrum_graph_table kGraphTable;          // glue/graph.cpp
#if FERRUM_CUDA_HAVE_NCCL
extern const ferrum_collective_table kCollectiveTable;  // glue/collective.cpp
#endif

// Called by context_destroy (after nothing else can use the context): wait for the stream,
// then free the attention state behind ferrum_context::staging (glue/attention.cpp) and the
// graph cache behind ferrum_context::graph_state (glue/graph.cpp). NULL-safe.
void release_attention_state(ferrum_context& c) noexcept;
void release_graph_state(ferrum_context& c) noexcept;

// The device's SM count (the split choice's input), and the context's scratch block
// (glue/attention.cpp) grown to `bytes` (UNSUPPORTED during a capture that would need more,
// docs/spec.md's scratch rule): split-KV partials of every attention family, and fused_moe's
// temporaries (glue/moe.cpp).
Status attention_sm_count(ferrum_context& c, int& sm_count);
Status attention_scratch(ferrum_context& c, uint64_t bytes, const char* op, void*& scratch);
// `bytes` of the same block for an op's temporaries with no content contract (fused_moe's
// intermediates, gguf_matmul's dequantised panels): the part after the split-KV arrival counters,
// which must stay zero between launches and which a temporary would otherwise overwrite.
Status work_scratch(ferrum_context& c, uint64_t bytes, const char* op, void*& scratch);

extern const ferrum_paged_kv_table kPagedKvTable;  // glue/paged_attention.cpp (+ writers in paged_kv.cpp)
extern const ferrum_quant_kv_table kQuantKvTable;  // glue/quant_kv.cpp
extern const ferrum_quant_matmul_table kQuantMatmulTable;  // glue/quant_matmul.cpp (GGUF)
extern const ferrum_moe_table kMoeTable;                  // glue/moe.cpp (dense experts)
extern const ferrum_mla_table kMlaTable;                  // glue/attention.cpp (SIMT f32)
// Capability flags of the paged family (glue/paged_attention.cpp; slots of kContextTable).
ferrum_status supports_paged_kv(ferrum_context* ctx, const ferrum_supports_paged_kv_args* a);
ferrum_status supports_varlen_qkv(ferrum_context* ctx, const ferrum_supports_varlen_qkv_args* a);
ferrum_status supports_vllm_paged_attn(ferrum_context* ctx, const ferrum_supports_vllm_paged_attn_args* a);

// A device-layer status as a boundary status (same code, same message).
inline Status from_device(cuda::Status s) {
  return s.ok() ? ok_status() : Status{static_cast<ferrum_status>(s.code), std::move(s.message)};
}

// Makes the context's device current for the guard's lifetime.
inline Status enter_device(DeviceGuard& g, const ferrum_context& c) {
  return from_device(g.enter(static_cast<int>(c.device)));
}

// Collective state (glue/collective.cpp; without NCCL at build time, the inline forms below):
// release_comm frees the context's communicator (a bounded wait for its collectives), a no-op
// without one; sync_with_comm is `sync` for a context with a communicator, bounded by
// FERRUM_CUDA_COMM_TIMEOUT_S with NCCL's errors checked while waiting (the device must be current).
#if FERRUM_CUDA_HAVE_NCCL
Status release_comm(ferrum_context& c) noexcept;
Status sync_with_comm(ferrum_context& c) noexcept;
#else
inline Status release_comm(ferrum_context&) noexcept { return ok_status(); }
inline Status sync_with_comm(ferrum_context& c) noexcept { return from_device(cuda::sync(*c.dev)); }
#endif

// Makes the context's device current and runs `f(stream)` (a launch function returning a
// device-layer Status); a failure's message is prefixed with the op name.
template <class F>
Status launch(const char* op, ferrum_context& c, F&& f) {
  DeviceGuard g;
  Status s = enter_device(g, c);
  if (!s.ok()) return s;
  s = from_device(f(c.dev->stream));
  if (!s.ok() && s.message.rfind(op, 0) != 0) s.message = std::string(op) + ": " + s.message;
  return s;
}

struct NamedBuffer {
  const char* field;
  const ferrum_buffer* buf;
};

// Every non-NULL buffer must live on the context's device (docs/spec.md §0.12: a handle from another
// device is INVALID_ARGUMENT).
Status check_devices(const char* op, const ferrum_context& c, std::initializer_list<NamedBuffer> bufs);

// Allocates a buffer of n elements of dtype on the context's device; every byte zero on return
// when `zero`. OUT_OF_MEMORY on failure; *out untouched on failure.
Status make_buffer(ferrum_context& c, int32_t dtype, uint64_t n, bool zero, ferrum_buffer** out);

// Frees a live buffer's device memory and the handle (a wrap_external buffer: calls the host's
// release callback instead).
Status free_buffer(ferrum_buffer* b);

// ABI 1.1 slots of glue/events.cpp: events (slots of kContextTable) and external memory (slots of
// kMemoryTable), docs/spec.md §2.1, §2.2.
ferrum_status event_create(ferrum_context* ctx, const ferrum_event_create_args* a);
ferrum_status event_record(ferrum_context* ctx, const ferrum_event_record_args* a);
ferrum_status event_wait(ferrum_context* ctx, const ferrum_event_wait_args* a);
ferrum_status event_synchronize(ferrum_context* ctx, const ferrum_event_synchronize_args* a);
ferrum_status event_query(ferrum_context* ctx, const ferrum_event_query_args* a);
ferrum_status event_release(ferrum_context* ctx, const ferrum_event_release_args* a);
ferrum_status wrap_external(ferrum_context* ctx, const ferrum_wrap_external_args* a);
ferrum_status buffer_device_address(ferrum_context* ctx, const ferrum_buffer_device_address_args* a);

// Head sizes the kernels serve: UNSUPPORTED naming `field` otherwise. The attention kernels
// (glue/attention.cpp) take 32, 64, 80, 96, 112, 128, 192, 256; the QK-norm/RoPE kernels
// (glue/dense.cpp) any head_dim up to their maximum (checked only while there is `work`).
Status check_attention_head_dim(const char* op, const char* field, uint64_t head_dim);
Status check_rope_head_dim(const char* op, uint64_t head_dim, bool work);

}  // namespace ferrum::cuda::glue
