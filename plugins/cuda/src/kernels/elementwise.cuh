// ferrum CUDA plugin — element-wise dense kernels (docs/spec.md §3): gelu, add_inplace,
// scaled_add_inplace, add_bias, split_qkv, fused_silu_mul_split(_strided), the two head/token
// transposes and argmax_rows.
//
// Launch functions: plain C++ signatures over raw device pointers and an ABI float dtype
// (F32 / F16 / BF16); they enqueue on `stream` (whose device must be current), allocate
// nothing (argmax_rows excepted: it is the one synchronising op) and return a Status. The
// glue validated every argument before; these functions re-check nothing but the dtype.
//
// Every kernel moves 16-byte vectors (`Vec<T, 16 / sizeof(T)>`) when all pointers and the
// row lengths allow it, and falls back to a scalar path otherwise; arithmetic is f32, each
// output rounded once (round-to-nearest-even). Index arithmetic is 64-bit.
//
// The second half of this header (CUDA compilers only) holds the small device helpers the
// dense kernel files share: Vec, float conversion, alignment checks, launch sizing.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "status.hpp"

namespace ferrum::cuda::kernels {

// out[i] = 0.5·x·(1 + erf(x/√2)). out may alias x.
[[nodiscard]] Status gelu(int32_t dtype, const void* x, void* out, uint64_t len, cudaStream_t stream) noexcept;

// residual[i] = round(residual[i] + x[i]). x may alias residual.
[[nodiscard]] Status add_inplace(int32_t dtype, void* residual, const void* x, uint64_t len,
                                 cudaStream_t stream) noexcept;

// dst[i] = round(dst[i] + scale·src[i]) (fused multiply-add).
[[nodiscard]] Status scaled_add_inplace(int32_t dtype, void* dst, const void* src, float scale, uint64_t len,
                                        cudaStream_t stream) noexcept;

// data[r, c] = round(data[r, c] + bias[c]).
[[nodiscard]] Status add_bias(int32_t dtype, void* data, const void* bias, uint64_t rows, uint64_t cols,
                              cudaStream_t stream) noexcept;

// q/k/v[t, :] = the three column ranges of qkv[t, :] (bit copies).
[[nodiscard]] Status split_qkv(int32_t dtype, const void* qkv, void* q, void* k, void* v, uint64_t tokens,
                               uint64_t q_dim, uint64_t kv_dim, cudaStream_t stream) noexcept;

// out[out_row_offset + t, i] = silu(g)·u, g = gate_up[in_row_offset + t, i],
// u = gate_up[in_row_offset + t, im + i], for t < tokens, i < im.
[[nodiscard]] Status silu_mul_split(int32_t dtype, const void* gate_up, uint64_t in_row_offset, void* out,
                                    uint64_t out_row_offset, uint64_t tokens, uint64_t im,
                                    cudaStream_t stream) noexcept;

// dst[(b·A + a)·D + d] = src[(a·B + b)·D + d] (bit copies): with A = heads, B = tokens it is
// transpose_head_to_token; with A = tokens, B = heads, transpose_token_to_head.
[[nodiscard]] Status swap_outer(int32_t dtype, const void* src, void* dst, uint64_t A, uint64_t B, uint64_t D,
                                cudaStream_t stream) noexcept;

// out[r] = the smallest index of the row's maximum non-NaN value (−0 == +0), 0 for a row
// without one (docs/spec.md §3 argmax_rows_f16). Synchronising: stream-ordered scratch
// (cudaMallocAsync), the kernel, a copy into host `out`, then waits for the stream.
[[nodiscard]] Status argmax_rows(int32_t dtype, const void* logits, uint64_t m, uint64_t n, uint32_t* out,
                                 cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::kernels

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

namespace ferrum::cuda::kernels::dev {

// N elements of T moved as one aligned load/store.
template <class T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// Elements of T in one 16-byte vector.
template <class T>
inline constexpr int kVec = 16 / static_cast<int>(sizeof(T));

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

// Round-to-nearest-even; overflow gives ±inf, NaN stays NaN.
template <class T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Global thread index and grid stride of a 1-D launch, 64-bit.
__device__ __forceinline__ uint64_t global_tid() {
  return static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ uint64_t grid_stride() { return static_cast<uint64_t>(gridDim.x) * blockDim.x; }

inline constexpr int kThreads = 256;
inline constexpr uint64_t kMaxBlocks = 65535;  // grid-stride loops cover the rest

// Blocks for `work` items at `per_block` items per block, in [1, kMaxBlocks].
inline unsigned blocks_for(uint64_t work, uint64_t per_block = kThreads) {
  const uint64_t b = (work + per_block - 1) / per_block;
  return static_cast<unsigned>(std::clamp<uint64_t>(b, 1, kMaxBlocks));
}

// Sum over a warp (every lane gets the result; fixed butterfly order: deterministic).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
// `red` is 33 floats of shared memory; it may be called again with the same `red` (the next
// call's first writes come after this call's last barrier, its red[32] write after every
// thread has passed the next call's first barrier).
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < warps ? red[lane] : 0.0f;
    t = warp_sum(t);
    if (lane == 0) red[32] = t;
  }
  __syncthreads();
  return red[32];
}

}  // namespace ferrum::cuda::kernels::dev
#endif
