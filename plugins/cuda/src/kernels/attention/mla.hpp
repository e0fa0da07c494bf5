// ferrum CUDA plugin — MLA attention, absorbed form (docs/spec.md §14): host-side interface.
//
// One CTA of 8 warps serves 8 heads of one (batch entry, query) over a split of its visible keys:
// each 32-key tile of [c_j | r_j] is widened to f32 in shared memory once for the 8 heads; warp w
// scores head w (lane = key, f32 dot products over R + P), runs the online softmax of its head,
// and every thread accumulates P·c_j for its output columns of all 8 heads (f32, SIMT: no tensor
// cores yet). With several splits (few (entry, query, head group) rows), each CTA writes its
// unnormalised partial (o, m, l) to the scratch and a second kernel merges them in split order
// (deterministic). Plain pointers and sizes in, a Status out; the glue validated every field.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "status.hpp"

namespace ferrum::cuda::attn {

struct MlaParams {
  int32_t dtype = 0;  // F32, F16 or BF16 (q, kv, out alike)
  const void* q = nullptr;     // [batch, heads, q_len, R + P]
  const void* c = nullptr;     // kv_compressed [batch, S, R]
  const void* r = nullptr;     // kv_rope [batch, S, P]
  void* out = nullptr;         // [batch, heads, q_len, R]
  uint64_t batch = 0, q_len = 0, kv_len = 0, pos_offset = 0, heads = 0, R = 0, P = 0;
  uint64_t S = 0;              // kv_seq_stride (or kv_len)
  uint64_t window = 0;         // sliding_window (0 = none)
  bool causal = true;
  float scale = 0.0f;          // non-zero, finite
};

// Largest kv_lora_rank served (output columns a thread keeps in registers: 4 × 256).
inline constexpr uint64_t kMlaMaxR = 1024;

// UNSUPPORTED (naming the field) for shapes the kernel does not serve: R above kMlaMaxR, a row of
// R + P whose tile does not fit shared memory, a grid beyond the CUDA limits.
[[nodiscard]] Status mla_supported(const MlaParams& p) noexcept;

// Scratch bytes for the split partials (0: one split). Shapes only.
uint64_t mla_scratch_bytes(const MlaParams& p, int sm_count) noexcept;

// Enqueues the attention (kv_len > 0, batch · q_len > 0). `scratch` holds mla_scratch_bytes
// bytes from its start (may be NULL when that is 0).
[[nodiscard]] Status mla_attention(const MlaParams& p, int sm_count, void* scratch, cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::attn
