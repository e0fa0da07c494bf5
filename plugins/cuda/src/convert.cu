// ferrum CUDA plugin — element-wise float conversion kernel (declared in memory.hpp).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_check.hpp"
#include "dtype.hpp"
#include "kernels/elementwise.cuh"
#include "memory.hpp"

namespace ferrum::cuda {

namespace {

// The dense kernels' device helpers (Vec, float conversion, launch sizing): one copy for the
// device layer and the kernels.
using namespace kernels::dev;

// Elements per vector so that neither side exceeds 16 bytes.
template <class S, class D>
inline constexpr int kVecElems = 16 / static_cast<int>(sizeof(S) > sizeof(D) ? sizeof(S) : sizeof(D));

// Vector path: the first n / N groups as aligned vectors, the remainder element-wise.
template <class S, class D>
__global__ void convert_vec_kernel(const S* __restrict__ src, D* __restrict__ dst, uint64_t n) {
  constexpr int N = kVecElems<S, D>;
  using SV = Vec<S, N>;
  using DV = Vec<D, N>;
  const uint64_t groups = n / N;
  const uint64_t stride = grid_stride();
  const uint64_t tid = global_tid();
  const SV* vsrc = reinterpret_cast<const SV*>(src);
  DV* vdst = reinterpret_cast<DV*>(dst);
  for (uint64_t g = tid; g < groups; g += stride) {
    const SV in = vsrc[g];
    DV out;
#pragma unroll
    for (int j = 0; j < N; ++j) out.v[j] = from_f<D>(to_f(in.v[j]));
    vdst[g] = out;
  }
  for (uint64_t i = groups * N + tid; i < n; i += stride) dst[i] = from_f<D>(to_f(src[i]));
}

// Scalar path for pointers that are not vector-aligned.
template <class S, class D>
__global__ void convert_scalar_kernel(const S* __restrict__ src, D* __restrict__ dst, uint64_t n) {
  const uint64_t stride = grid_stride();
  for (uint64_t i = global_tid(); i < n; i += stride) {
    dst[i] = from_f<D>(to_f(src[i]));
  }
}

template <class S, class D>
Status launch_convert(const void* src, void* dst, uint64_t n, cudaStream_t stream) {
  constexpr int N = kVecElems<S, D>;
  const auto* s = static_cast<const S*>(src);
  auto* d = static_cast<D*>(dst);
  const bool aligned = reinterpret_cast<uintptr_t>(src) % (sizeof(S) * N) == 0 &&
                       reinterpret_cast<uintptr_t>(dst) % (sizeof(D) * N) == 0;
  (void)cudaGetLastError();  // do not blame this launch for an unrelated earlier error
  if (aligned) {
    convert_vec_kernel<S, D><<<blocks_for(n / N + n % N), kThreads, 0, stream>>>(s, d, n);
    FERRUM_CUDA_LAUNCH_CHECK("convert_vec_kernel");
  } else {
    convert_scalar_kernel<S, D><<<blocks_for(n), kThreads, 0, stream>>>(s, d, n);
    FERRUM_CUDA_LAUNCH_CHECK("convert_scalar_kernel");
  }
  return ok_status();
}

}  // namespace

Status convert_async(const void* src, int32_t src_dtype, void* dst, int32_t dst_dtype, uint64_t n,
                     cudaStream_t stream) noexcept {
  const uint64_t src_size = dtype_size(src_dtype);
  const uint64_t dst_size = dtype_size(dst_dtype);
  if (src_size == 0 || dst_size == 0) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "convert: invalid dtype pair %d (%s) -> %d (%s)",
                       static_cast<int>(src_dtype), dtype_name(src_dtype), static_cast<int>(dst_dtype),
                       dtype_name(dst_dtype));
  }
  if (src_dtype != dst_dtype && !(is_float_dtype(src_dtype) && is_float_dtype(dst_dtype))) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT,
                       "convert: %s -> %s is not supported (only equal dtypes or F32/F16/BF16 pairs)",
                       dtype_name(src_dtype), dtype_name(dst_dtype));
  }
  if (n == 0) return ok_status();
  if (src == nullptr || dst == nullptr) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "convert: NULL pointer for %llu elements",
                       static_cast<unsigned long long>(n));
  }
  if (n > UINT64_MAX / 4) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "convert: element count %llu overflows",
                       static_cast<unsigned long long>(n));
  }
  if (src_dtype == dst_dtype) {
    if (src == dst) return ok_status();
    FERRUM_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n * src_size),
                                      cudaMemcpyDeviceToDevice, stream));
    return ok_status();
  }
  return dispatch_float(src_dtype, "convert", [&](auto s_tag) {
    using S = typename decltype(s_tag)::type;
    return dispatch_float(dst_dtype, "convert", [&](auto d_tag) {
      using D = typename decltype(d_tag)::type;
      return launch_convert<S, D>(src, dst, n, stream);
    });
  });
}

}  // namespace ferrum::cuda
