// ferrum CUDA plugin — row normalisations (docs/spec.md §3): rms_norm, fused_add_rms_norm, layer_norm.
//
// Launch functions: plain C++ signatures over raw device pointers of one ABI float dtype
// (F32 / F16 / BF16), enqueued on `stream` (its device current), no allocation, capturable.
// The glue validated the arguments (dim > 0 with rows, finite eps >= 0, sizes, aliasing).
//
// rms_norm / fused_add_rms_norm: one block per row (grid-stride over rows). The row is read
// once into registers as 16-byte vectors (up to 8 per thread, 512 threads: rows of up to 32768
// F16/BF16 or 16384 F32 values); longer rows, and rows whose length or base is not 16-byte
// aligned, re-read global memory (L2-resident) for their later passes. layer_norm on 16-byte
// rows: 1–16 warps per row (one warp per row, several rows per block, for rows of <= 1024
// 16-bit values), up to 4 vectors per lane (8 past 16 warps), one reduction of (count, mean,
// M2) partials merged with Chan's formula; other rows take the generic kernel. Statistics in
// f32 through warp shuffles and one shared-memory step, in a fixed order: deterministic, no
// atomics. Each output rounded once.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "status.hpp"

namespace ferrum::cuda::kernels {

// out[r, i] = x[r, i]·w[i] / sqrt(mean_j x[r, j]² + eps). out may alias x.
[[nodiscard]] Status rms_norm(int32_t dtype, const void* x, const void* w, float eps, void* out, uint64_t rows,
                              uint64_t dim, cudaStream_t stream) noexcept;

// residual ← round(residual + x); out = rms_norm(residual, w, eps) from the stored residual.
// out may alias x (not residual).
[[nodiscard]] Status fused_add_rms_norm(int32_t dtype, void* residual, const void* x, const void* w, float eps,
                                        void* out, uint64_t rows, uint64_t dim, cudaStream_t stream) noexcept;

// out = (x − μ)/sqrt(v + eps)·gamma + beta, v the population variance as a mean of squared
// deviations (per-thread two-pass (mean, M2) over its cached values, merged pairwise with
// Chan's update; the generic path: two passes over the row). out may alias x.
[[nodiscard]] Status layer_norm(int32_t dtype, const void* x, const void* gamma, const void* beta, float eps,
                                void* out, uint64_t rows, uint64_t dim, cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::kernels
