// ferrum CUDA plugin — MLA attention, absorbed form (docs/spec.md §14): host-side interface.
//
// Two kernels. F16 / BF16 at DeepSeek's shape (R 512, P 64, 16-byte aligned buffers) run on tensor
// cores: a CTA of 8 warps serves 64 heads of one (batch entry, query) over a split of its keys,
// Q in shared memory, 32-key tiles of [c_j | r_j] through a cp.async pipeline, scores and P·c on
// mma m16n8k16 with f32 accumulators (mla.cu, "Tensor-core path"). Every other shape and F32 run
// the SIMT kernel: 8 heads per CTA (a warp each) share each 32-key tile widened to f32 in shared
// memory, lane-per-key dot products, f32 P·c. With several splits (few (entry, query, head group)
// rows), each CTA writes its unnormalised partial (o, m, l) to the scratch and a second kernel
// merges them in a fixed order (deterministic). Plain pointers and sizes in, a Status out; the
// glue validated every field.
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
