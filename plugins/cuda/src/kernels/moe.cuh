// ferrum CUDA plugin — mixture-of-experts kernels (docs/spec.md §13).
//
// Launch functions over raw device pointers (T = the activation dtype), enqueued on `stream` (its
// device current), no allocation, capturable; deterministic (no result depends on the order in
// which atomics complete). The glue validated sizes and bounds: num_experts <= kMoeMaxExperts,
// top_k <= kMoeMaxTopK, block_size in {16, 32, 64}. Routing buffers are read as device data and
// may be hand-built: out-of-range pair ids, expert ids and counts are skipped, never followed.
//
//   route_topk_softmax    one warp per token: the logits in registers (<= 16 per lane), softmax in
//                         f32, then top_k rounds of a warp argmax (largest probability, then lowest
//                         id); NaN probabilities rank as −inf.
//   moe_align_block_size  one block: expert counts (shared-memory atomics: order-independent),
//                         offsets, then each expert's thread places its pairs in ascending pair
//                         order from shared-memory tiles of topk_ids (a stable counting sort).
//   moe_gemm_dense        out[p] = x[p / top_k]·W_eᵀ for the valid pairs of each used routing block
//                         (fused_moe's down projection passes its act rows with top_k = 1). Rows the
//                         routing does not reach are zeroed first. Two kernels, one CTA per (routing
//                         block of BM = block_size sorted slots, output-column tile), so a CTA never
//                         mixes experts; blocks past the clamped count or with an expert id outside
//                         [0, num_experts) exit at once; every result is f32-accumulated in ascending
//                         k tiles (deterministic, no atomics):
//                         * tensor cores — F16 / BF16 when k % 8 == 0 and x and w are 16-byte aligned
//                           (every row then starts on a 16-byte boundary): 128 columns per CTA, 4 warps
//                           of 32 columns, 64-deep k tiles of the gathered x rows and W_e's rows in a
//                           cp.async ring of 4 stages (3 for BM = 64; 16-byte copies; chunks past n
//                           or k and padding rows zero-filled in shared memory, never read), ldmatrix
//                           + mma.sync m16n8k16 with f32 accumulators; 83–92 KB of dynamic shared
//                           memory per CTA (within the 99 KB opt-in limit of every sm_80+ GPU). At
//                           block size 64, where the device grants 113 KB per CTA (A100, H100, H200),
//                           a CTA of 8 warps computes two consecutive blocks of the same expert (the
//                           even one takes the odd one along; the odd one's CTA exits), so each W_e
//                           tile is read once for 128 rows.
//                         * SIMT — F32, and F16 / BF16 shapes the tensor path does not take (k not a
//                           multiple of 8, unaligned x or w): 64 columns per CTA, 32-deep k tiles
//                           converted to f32 in shared memory, f32 FMA.
//   weighted_sum_rows     out[t] = Σ_k w[t, k]·rows[r(t, k)] in ascending k, f32, with r(t, k) =
//                         t·top_k + k (weighted_sum_batched) or idx[t·top_k + k] (moe_combine;
//                         rows outside [0, num_rows) contribute nothing).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "status.hpp"

namespace ferrum::cuda::kernels {

inline constexpr uint64_t kMoeMaxExperts = 512;
inline constexpr uint64_t kMoeMaxTopK = 16;

[[nodiscard]] Status route_topk_softmax(int32_t dtype, const void* logits, int32_t* ids, float* weights,
                                        uint64_t num_tokens, uint64_t num_experts, uint64_t top_k, bool norm,
                                        cudaStream_t stream) noexcept;

// sorted[cap] / expert_ids[cap_blocks] / total[1] as docs/spec.md §13.1 builds them.
[[nodiscard]] Status moe_align_block_size(const int32_t* topk_ids, uint64_t num_pairs, uint64_t num_experts,
                                          uint64_t block_size, int32_t* sorted, uint64_t cap, int32_t* expert_ids,
                                          uint64_t cap_blocks, int32_t* total, cudaStream_t stream) noexcept;

// w: [num_experts, n, k]; out: [num_pairs, n] (zeroed, then the routed rows). `sorted_count` and
// `blocks_count` are the routing buffers' element counts (bounds for hand-built routing).
[[nodiscard]] Status moe_gemm_dense(int32_t dtype, const void* x, const int32_t* sorted, uint64_t sorted_count,
                                    const int32_t* expert_ids, uint64_t blocks_count, const int32_t* total,
                                    const void* w, void* out, uint64_t num_pairs, uint64_t top_k, uint64_t num_experts,
                                    uint64_t n, uint64_t k, uint64_t block_size, cudaStream_t stream) noexcept;

// idx == nullptr: rows[t·top_k + k]; else rows[idx[t·top_k + k]] when in [0, num_rows).
[[nodiscard]] Status weighted_sum_rows(int32_t dtype, const void* rows, const int32_t* idx, uint64_t num_rows,
                                       const float* weights, void* out, uint64_t num_tokens, uint64_t top_k,
                                       uint64_t hidden, cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::kernels
