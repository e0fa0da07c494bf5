// ferrum CUDA plugin — GGUF quantised matmul kernels (docs/spec.md §11).
//
// Weights stay in their GGUF blocks, on the device exactly as the file stores them (row after
// row, blocks of any alignment: fields are read byte by byte). Every weight is decoded exactly to
// its f32 value (§11.1; each formula's products are exact in f32, so the value does not depend on
// evaluation order or FMA contraction). Activations are not quantised.
//
//   gguf_matvec      out[r, j] = Σ_c a[r, c]·W[j, c] for r < m <= kGgufMatvecMaxM: one warp per
//                    output feature j; lane l takes the 32-weight groups l, l + 32, … of the row,
//                    decodes each into registers and multiplies it with every activation row
//                    (the weight is read once for all m rows). f32 sums; the lanes' partials are
//                    added in a fixed tree order (deterministic). Each output rounded once to T.
//   gguf_dequantize  out[j, c] = W[j, c] rounded once to T: one thread per 32-weight group.
//
// Launch functions: raw device pointers, T = the float dtype, enqueued on `stream` (its device
// current), no allocation, capturable. The glue validated sizes, types and shapes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "status.hpp"

namespace ferrum::cuda::kernels {

// Largest m gguf_matvec serves (its per-lane accumulators); larger m goes through gguf_dequantize
// and the tensor-core gemm.
inline constexpr uint64_t kGgufMatvecMaxM = 8;

[[nodiscard]] Status gguf_matvec(int32_t dtype, int32_t quant_type, const uint8_t* w, uint64_t n_rows,
                                 uint64_t n_cols, const void* a, void* out, uint64_t m, cudaStream_t stream) noexcept;

[[nodiscard]] Status gguf_dequantize(int32_t dtype, int32_t quant_type, const uint8_t* w, uint64_t n_rows,
                                     uint64_t n_cols, void* out, cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::kernels
