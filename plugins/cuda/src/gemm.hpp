// ferrum CUDA plugin — dense GEMM through cuBLASLt (docs/spec.md §3 `gemm`, §0.6).
//
// Thread contract: externally synchronised on the context.
#pragma once

#include <cstdint>

#include "context.hpp"
#include "status.hpp"

namespace ferrum::cuda {

// out[i, j] = sum_p a[i, p] * b[j, p] for i < m, j < n, with a row-major [m, k], b row-major
// [n, k] and out row-major [m, n], all of `dtype` (F32, F16 or BF16), accumulated in f32
// (F32 in full f32 precision: CUBLAS_COMPUTE_32F, never TF32 or emulation), enqueued on
// ctx.stream.
//   m == 0 or n == 0: no-op (NULL pointers accepted).  k == 0: out is set to +0.0.
//   out must not alias a or b; a and b may be the same pointer.
// The cuBLASLt descriptors, layouts and algorithm are cached in ctx per (dtype, m, n, k,
// pointer alignment), so a repeated shape makes no heuristic query; the workspace is the
// context's, so the call never allocates device memory and is capturable.
// Errors: INVALID_ARGUMENT (dtype, NULL pointer, size overflow), UNSUPPORTED (cuBLASLt has
// no algorithm for this shape on this device), OUT_OF_MEMORY, DEVICE_ERROR; messages name
// the cuBLAS status.
[[nodiscard]] Status gemm(DeviceContext& ctx, int32_t dtype, const void* a, const void* b, void* out,
                          uint64_t m, uint64_t n, uint64_t k) noexcept;

// The same into a column panel of a wider output: out row i starts ldo elements after row i - 1
// (ldo >= n), so out[i, j] lives at out + i·ldo + j. Columns n..ldo-1 of each row are not touched.
[[nodiscard]] Status gemm_ldo(DeviceContext& ctx, int32_t dtype, const void* a, const void* b, void* out,
                              uint64_t m, uint64_t n, uint64_t k, uint64_t ldo) noexcept;

}  // namespace ferrum::cuda
