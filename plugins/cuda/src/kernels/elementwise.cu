// ferrum CUDA plugin — element-wise dense kernels (declared in elementwise.cuh).
//
// Shapes of the kernels:
//   flat maps (gelu, add_inplace, scaled_add_inplace): 1-D grid-stride over 16-byte vectors,
//     then a scalar tail; 256 threads per block.
//   row ops (add_bias, split_qkv, silu_mul_split, swap_outer): 1-D grid-stride over the output's
//     16-byte vectors; the flat vector index is split into (row, column) by an integer
//     division in 32 bits when the vector count is below 2^31 (the common case: a 64-bit
//     division costs ~4x more issue slots), else in 64 bits. The vector path needs every row
//     length a multiple of the vector width and 16-byte aligned bases; else scalar.
//   argmax_rows: one block per row, a strided scan then a warp-shuffle + shared-memory
//     reduction with an order-independent rule (deterministic).
// Aliasing permitted by docs/spec.md (gelu out = x, add_inplace x = residual) is safe because every
// element is read and written by the same thread; no pointer here is __restrict__ where the
// ABI allows aliasing.
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda_check.hpp"
#include "dtype.hpp"
#include "kernels/elementwise.cuh"

namespace ferrum::cuda::kernels {

using namespace dev;

namespace {

// ---- flat maps ----------------------------------------------------------------------------

// F32: erff (libdevice, ~30 instructions). F16 / BF16: Phi(x) from the Abramowitz–Stegun 7.1.26
// form erfc(y) ~ t·P(t)·exp(−y²), t = 1/(1 + p·y), y = |x|/√2 (absolute error <= 1.5e-7 on
// erf, far below the 16-bit output rounding), ~16 instructions with two MUFU ops; written as
// Phi = q/2 or 1 − q/2 with q = erfc(y), so the negative tail keeps its relative accuracy
// instead of cancelling in 1 + erf. The op is issue-bound at full bandwidth with erff.
struct GeluOp {
  __device__ float operator()(float x) const { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f)); }
};
struct GeluFastOp {
  __device__ float operator()(float x) const {
    const float y = fabsf(x) * 0.70710678118654752440f;
    const float t = __fdividef(1.0f, fmaf(0.3275911f, y, 1.0f));
    const float poly =
        t * fmaf(t, fmaf(t, fmaf(t, fmaf(t, 1.061405429f, -1.453152027f), 1.421413741f), -0.284496736f), 0.254829592f);
    const float q = poly * __expf(-y * y);  // erfc(y)
    const float phi = x >= 0.0f ? fmaf(-0.5f, q, 1.0f) : 0.5f * q;
    return x * phi;
  }
};
struct AddOp {
  __device__ float operator()(float d, float s) const { return d + s; }
};
struct ScaledAddOp {
  float scale;
  __device__ float operator()(float d, float s) const { return fmaf(scale, s, d); }
};

// out[i] = f(x[i]); N = 1 is the scalar path. out may alias x.
// Two vectors per thread per step (g and g + stride, both loads issued first): the op is
// compute-heavy (gelu), so more bytes stay in flight per thread while it computes.
template <class T, int N, class F>
__global__ void map1_kernel(const T* x, T* out, uint64_t n, F f) {
  using V = Vec<T, N>;
  const uint64_t groups = n / N, stride = grid_stride();
  for (uint64_t g = global_tid(); g < groups; g += 2 * stride) {
    const bool two = g + stride < groups;
    const V a = reinterpret_cast<const V*>(x)[g];
    V b;
    if (two) b = reinterpret_cast<const V*>(x)[g + stride];
    V r;
#pragma unroll
    for (int j = 0; j < N; ++j) r.v[j] = from_f<T>(f(to_f(a.v[j])));
    reinterpret_cast<V*>(out)[g] = r;
    if (two) {
#pragma unroll
      for (int j = 0; j < N; ++j) r.v[j] = from_f<T>(f(to_f(b.v[j])));
      reinterpret_cast<V*>(out)[g + stride] = r;
    }
  }
  for (uint64_t i = groups * N + global_tid(); i < n; i += stride) out[i] = from_f<T>(f(to_f(x[i])));
}

// dst[i] = f(dst[i], src[i]); src may alias dst.
template <class T, int N, class F>
__global__ void map2_kernel(T* dst, const T* src, uint64_t n, F f) {
  using V = Vec<T, N>;
  const uint64_t groups = n / N, stride = grid_stride();
  for (uint64_t g = global_tid(); g < groups; g += stride) {
    const V s = reinterpret_cast<const V*>(src)[g];
    V d = reinterpret_cast<const V*>(dst)[g];
#pragma unroll
    for (int j = 0; j < N; ++j) d.v[j] = from_f<T>(f(to_f(d.v[j]), to_f(s.v[j])));
    reinterpret_cast<V*>(dst)[g] = d;
  }
  for (uint64_t i = groups * N + global_tid(); i < n; i += stride)
    dst[i] = from_f<T>(f(to_f(dst[i]), to_f(src[i])));
}

template <class T, class F>
Status launch_map1(const void* x, void* out, uint64_t n, F f, cudaStream_t stream) {
  constexpr int N = kVec<T>;
  const auto* xs = static_cast<const T*>(x);
  auto* os = static_cast<T*>(out);
  (void)cudaGetLastError();
  if (aligned16(x) && aligned16(out)) {
    map1_kernel<T, N, F><<<blocks_for((n / N + 1) / 2 + n % N), kThreads, 0, stream>>>(xs, os, n, f);
    FERRUM_CUDA_LAUNCH_CHECK("map1_kernel (vector)");
  } else {
    map1_kernel<T, 1, F><<<blocks_for(n), kThreads, 0, stream>>>(xs, os, n, f);
    FERRUM_CUDA_LAUNCH_CHECK("map1_kernel (scalar)");
  }
  return ok_status();
}

template <class T, class F>
Status launch_map2(void* dst, const void* src, uint64_t n, F f, cudaStream_t stream) {
  constexpr int N = kVec<T>;
  auto* ds = static_cast<T*>(dst);
  const auto* ss = static_cast<const T*>(src);
  (void)cudaGetLastError();
  if (aligned16(dst) && aligned16(src)) {
    map2_kernel<T, N, F><<<blocks_for(n / N + n % N), kThreads, 0, stream>>>(ds, ss, n, f);
    FERRUM_CUDA_LAUNCH_CHECK("map2_kernel (vector)");
  } else {
    map2_kernel<T, 1, F><<<blocks_for(n), kThreads, 0, stream>>>(ds, ss, n, f);
    FERRUM_CUDA_LAUNCH_CHECK("map2_kernel (scalar)");
  }
  return ok_status();
}

// ---- row ops ------------------------------------------------------------------------------
// Idx is the type of the flat vector index and of its division into (row, column): uint32_t
// when the vector count is below kIdx32Limit (so that index + grid stride cannot wrap), else
// uint64_t. Addresses are always formed in 64 bits.
inline constexpr uint64_t kIdx32Limit = uint64_t{1} << 31;

// data[r, c] += bias[c]; cv = cols / N vectors per row.
template <class T, int N, class Idx>
__global__ void add_bias_kernel(T* __restrict__ data, const T* __restrict__ bias, Idx total, Idx cv) {
  using V = Vec<T, N>;
  const Idx stride = static_cast<Idx>(gridDim.x) * blockDim.x;
  for (Idx g = static_cast<Idx>(blockIdx.x) * blockDim.x + threadIdx.x; g < total; g += stride) {
    const Idx r = g / cv, c = g - r * cv;
    V d = reinterpret_cast<const V*>(data)[static_cast<uint64_t>(r) * cv + c];
    const V b = reinterpret_cast<const V*>(bias)[c];
#pragma unroll
    for (int j = 0; j < N; ++j) d.v[j] = from_f<T>(to_f(d.v[j]) + to_f(b.v[j]));
    reinterpret_cast<V*>(data)[static_cast<uint64_t>(r) * cv + c] = d;
  }
}

// Bit copies of the three column ranges; qv / kv = q_dim / kv_dim in vectors, wv = qv + 2·kv.
template <class T, int N, class Idx>
__global__ void split_qkv_kernel(const T* __restrict__ qkv, T* __restrict__ q, T* __restrict__ k,
                                 T* __restrict__ v, Idx total, Idx qv, Idx kvv) {
  using V = Vec<T, N>;
  const Idx wv = qv + 2 * kvv;
  const Idx stride = static_cast<Idx>(gridDim.x) * blockDim.x;
  for (Idx g = static_cast<Idx>(blockIdx.x) * blockDim.x + threadIdx.x; g < total; g += stride) {
    const Idx t = g / wv, c = g - t * wv;
    const V x = reinterpret_cast<const V*>(qkv)[g];
    if (c < qv) {
      reinterpret_cast<V*>(q)[static_cast<uint64_t>(t) * qv + c] = x;
    } else if (c < qv + kvv) {
      reinterpret_cast<V*>(k)[static_cast<uint64_t>(t) * kvv + (c - qv)] = x;
    } else {
      reinterpret_cast<V*>(v)[static_cast<uint64_t>(t) * kvv + (c - qv - kvv)] = x;
    }
  }
}

// silu(g)·u for the 16-bit types: __expf (ex2.approx) and a fast reciprocal divide, ~6
// instructions per element instead of ~25 for expf + an IEEE division; the f32 error
// (~1e-6 relative) is far below the 16-bit output rounding. Edge cases match the exact form:
// g = −inf gives NaN (−inf·0, as −inf/inf), g < ~−88 gives ±0, NaN stays NaN.
__device__ __forceinline__ float silu_mul_fast(float g, float u) { return __fdividef(g, 1.0f + __expf(-g)) * u; }
__device__ __forceinline__ float silu_mul_exact(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// out[out_off + t, i] = silu(gate_up[in_off + t, i]) · gate_up[in_off + t, im + i]; imv = im / N.
// FAST (16-bit types): silu_mul_fast. One vector per thread: two vectors per thread (all four
// loads first, with or without ld.global.cs) measured 5–7 % slower on H200.
template <class T, int N, class Idx, bool FAST>
__global__ void silu_mul_kernel(const T* __restrict__ gate_up, uint64_t in_off, T* __restrict__ out,
                                uint64_t out_off, Idx total, Idx imv) {
  using V = Vec<T, N>;
  const Idx stride = static_cast<Idx>(gridDim.x) * blockDim.x;
  for (Idx g = static_cast<Idx>(blockIdx.x) * blockDim.x + threadIdx.x; g < total; g += stride) {
    const Idx t = g / imv, i = g - t * imv;
    const uint64_t in_row = (in_off + t) * 2 * static_cast<uint64_t>(imv);
    const V gv = reinterpret_cast<const V*>(gate_up)[in_row + i];
    const V uv = reinterpret_cast<const V*>(gate_up)[in_row + imv + i];
    V r;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float gf = to_f(gv.v[j]), uf = to_f(uv.v[j]);
      r.v[j] = from_f<T>(FAST ? silu_mul_fast(gf, uf) : silu_mul_exact(gf, uf));
    }
    reinterpret_cast<V*>(out)[(out_off + t) * static_cast<uint64_t>(imv) + i] = r;
  }
}

// dst[(b·A + a)·Dv + d] = src[(a·B + b)·Dv + d], over the dst vectors (coalesced writes; reads
// are coalesced within each D-row).
template <class T, int N, class Idx>
__global__ void swap_outer_kernel(const T* __restrict__ src, T* __restrict__ dst, Idx total, Idx A, Idx B,
                                  Idx dv) {
  using V = Vec<T, N>;
  const Idx stride = static_cast<Idx>(gridDim.x) * blockDim.x;
  for (Idx g = static_cast<Idx>(blockIdx.x) * blockDim.x + threadIdx.x; g < total; g += stride) {
    const Idx row = g / dv, d = g - row * dv;
    const Idx b = row / A, a = row - b * A;
    reinterpret_cast<V*>(dst)[g] =
        reinterpret_cast<const V*>(src)[(static_cast<uint64_t>(a) * B + b) * dv + d];
  }
}

// Launches `kernel<T, N, Idx>` sized for `total` vectors with Idx chosen from `total`.
// `make(idx_tag)` performs the launch; the macro-free form keeps control flow visible.
template <class Launch>
Status with_index(uint64_t total, Launch&& launch) {
  if (total < kIdx32Limit) return launch(TypeTag<uint32_t>{});
  return launch(TypeTag<uint64_t>{});
}

// ---- argmax ---------------------------------------------------------------------------------

// (v, i) replaces (bv, bi) if it is a candidate (i != kNone) and beats it: larger, or equal
// (−0 == +0) with a smaller index. NaNs never become candidates.
inline constexpr uint64_t kNone = ~uint64_t{0};

__device__ __forceinline__ void arg_better(float& bv, uint64_t& bi, float v, uint64_t i) {
  if (i != kNone && (bi == kNone || v > bv || (v == bv && i < bi))) {
    bv = v;
    bi = i;
  }
}

template <class T, int N>
__global__ void argmax_kernel(const T* __restrict__ logits, uint64_t m, uint64_t n, uint32_t* __restrict__ out) {
  using V = Vec<T, N>;
  __shared__ float sv[32];
  __shared__ uint64_t si[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (uint64_t r = blockIdx.x; r < m; r += gridDim.x) {
    const T* row = logits + r * n;
    float bv = 0.0f;
    uint64_t bi = kNone;
    const uint64_t groups = n / N;
    for (uint64_t g = threadIdx.x; g < groups; g += blockDim.x) {
      const V x = reinterpret_cast<const V*>(row)[g];
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const float f = to_f(x.v[j]);
        if (!isnan(f)) arg_better(bv, bi, f, g * N + j);
      }
    }
    for (uint64_t i = groups * N + threadIdx.x; i < n; i += blockDim.x) {
      const float f = to_f(row[i]);
      if (!isnan(f)) arg_better(bv, bi, f, i);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const uint64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
      arg_better(bv, bi, ov, oi);
    }
    if (lane == 0) {
      sv[warp] = bv;
      si[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
      bv = 0.0f;
      bi = kNone;
      if (lane < warps) {
        bv = sv[lane];
        bi = si[lane];
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const uint64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        arg_better(bv, bi, ov, oi);
      }
      if (lane == 0) out[r] = bi == kNone ? 0u : static_cast<uint32_t>(bi);
    }
    __syncthreads();  // sv/si are rewritten by the next row
  }
}

template <class T>
Status launch_argmax(const T* logits, uint64_t m, uint64_t n, uint32_t* dev_out, cudaStream_t stream) {
  constexpr int N = kVec<T>;
  const unsigned threads = n >= 8192 ? 1024 : 256;
  const unsigned blocks = static_cast<unsigned>(std::min<uint64_t>(m, uint64_t{1} << 20));
  (void)cudaGetLastError();
  if (aligned16(logits) && n % N == 0) {
    argmax_kernel<T, N><<<blocks, threads, 0, stream>>>(logits, m, n, dev_out);
    FERRUM_CUDA_LAUNCH_CHECK("argmax_kernel (vector)");
  } else {
    argmax_kernel<T, 1><<<blocks, threads, 0, stream>>>(logits, m, n, dev_out);
    FERRUM_CUDA_LAUNCH_CHECK("argmax_kernel (scalar)");
  }
  return ok_status();
}

}  // namespace

Status gelu(int32_t dtype, const void* x, void* out, uint64_t len, cudaStream_t stream) noexcept {
  if (len == 0) return ok_status();
  return dispatch_float(dtype, "gelu", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float>) return launch_map1<T>(x, out, len, GeluOp{}, stream);
    else return launch_map1<T>(x, out, len, GeluFastOp{}, stream);
  });
}

Status add_inplace(int32_t dtype, void* residual, const void* x, uint64_t len, cudaStream_t stream) noexcept {
  if (len == 0) return ok_status();
  return dispatch_float(dtype, "add_inplace", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return launch_map2<T>(residual, x, len, AddOp{}, stream);
  });
}

Status scaled_add_inplace(int32_t dtype, void* dst, const void* src, float scale, uint64_t len,
                          cudaStream_t stream) noexcept {
  if (len == 0) return ok_status();
  return dispatch_float(dtype, "scaled_add_inplace", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return launch_map2<T>(dst, src, len, ScaledAddOp{scale}, stream);
  });
}

Status add_bias(int32_t dtype, void* data, const void* bias, uint64_t rows, uint64_t cols,
                cudaStream_t stream) noexcept {
  if (rows == 0 || cols == 0) return ok_status();
  return dispatch_float(dtype, "add_bias", [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int NV = kVec<T>;
    const bool vec = cols % NV == 0 && aligned16(data) && aligned16(bias);
    const uint64_t cv = vec ? cols / NV : cols, total = rows * cv;
    auto* d = static_cast<T*>(data);
    const auto* b = static_cast<const T*>(bias);
    return with_index(total, [&](auto itag) -> Status {
      using Idx = typename decltype(itag)::type;
      (void)cudaGetLastError();
      if (vec) {
        add_bias_kernel<T, NV, Idx><<<blocks_for(total), kThreads, 0, stream>>>(d, b, Idx(total), Idx(cv));
      } else {
        add_bias_kernel<T, 1, Idx><<<blocks_for(total), kThreads, 0, stream>>>(d, b, Idx(total), Idx(cv));
      }
      FERRUM_CUDA_LAUNCH_CHECK("add_bias_kernel");
      return ok_status();
    });
  });
}

Status split_qkv(int32_t dtype, const void* qkv, void* q, void* k, void* v, uint64_t tokens, uint64_t q_dim,
                 uint64_t kv_dim, cudaStream_t stream) noexcept {
  if (tokens == 0 || q_dim + 2 * kv_dim == 0) return ok_status();
  return dispatch_float(dtype, "split_qkv", [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int NV = kVec<T>;
    // q / k / v may be NULL when their width is 0 (nothing is written to them then).
    const bool vec = q_dim % NV == 0 && kv_dim % NV == 0 && aligned16(qkv) && aligned16(q) && aligned16(k) &&
                     aligned16(v);
    const int n = vec ? NV : 1;
    const uint64_t qv = q_dim / n, kvv = kv_dim / n, total = tokens * (qv + 2 * kvv);
    const auto* src = static_cast<const T*>(qkv);
    auto *qp = static_cast<T*>(q), *kp = static_cast<T*>(k), *vp = static_cast<T*>(v);
    return with_index(total, [&](auto itag) -> Status {
      using Idx = typename decltype(itag)::type;
      (void)cudaGetLastError();
      if (vec) {
        split_qkv_kernel<T, NV, Idx>
            <<<blocks_for(total), kThreads, 0, stream>>>(src, qp, kp, vp, Idx(total), Idx(qv), Idx(kvv));
      } else {
        split_qkv_kernel<T, 1, Idx>
            <<<blocks_for(total), kThreads, 0, stream>>>(src, qp, kp, vp, Idx(total), Idx(qv), Idx(kvv));
      }
      FERRUM_CUDA_LAUNCH_CHECK("split_qkv_kernel");
      return ok_status();
    });
  });
}

Status silu_mul_split(int32_t dtype, const void* gate_up, uint64_t in_row_offset, void* out, uint64_t out_row_offset,
                      uint64_t tokens, uint64_t im, cudaStream_t stream) noexcept {
  if (tokens == 0 || im == 0) return ok_status();
  return dispatch_float(dtype, "fused_silu_mul_split", [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int NV = kVec<T>;
    const bool vec = im % NV == 0 && aligned16(gate_up) && aligned16(out);
    const uint64_t imv = vec ? im / NV : im, total = tokens * imv;
    const auto* g = static_cast<const T*>(gate_up);
    auto* o = static_cast<T*>(out);
    return with_index(total, [&](auto itag) -> Status {
      using Idx = typename decltype(itag)::type;
      (void)cudaGetLastError();
      constexpr bool kFast = !std::is_same_v<T, float>;  // F32 keeps expf + the IEEE division
      if (vec) {
        silu_mul_kernel<T, NV, Idx, kFast><<<blocks_for(total), kThreads, 0, stream>>>(g, in_row_offset, o,
                                                                                       out_row_offset, Idx(total), Idx(imv));
      } else {
        silu_mul_kernel<T, 1, Idx, kFast><<<blocks_for(total), kThreads, 0, stream>>>(g, in_row_offset, o,
                                                                                      out_row_offset, Idx(total), Idx(imv));
      }
      FERRUM_CUDA_LAUNCH_CHECK("silu_mul_kernel");
      return ok_status();
    });
  });
}

Status swap_outer(int32_t dtype, const void* src, void* dst, uint64_t A, uint64_t B, uint64_t D,
                  cudaStream_t stream) noexcept {
  if (A == 0 || B == 0 || D == 0) return ok_status();
  return dispatch_float(dtype, "transpose", [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int NV = kVec<T>;
    const bool vec = D % NV == 0 && aligned16(src) && aligned16(dst);
    const uint64_t dv = vec ? D / NV : D, total = A * B * dv;
    const auto* s = static_cast<const T*>(src);
    auto* d = static_cast<T*>(dst);
    return with_index(total, [&](auto itag) -> Status {
      using Idx = typename decltype(itag)::type;
      (void)cudaGetLastError();
      if (vec) {
        swap_outer_kernel<T, NV, Idx>
            <<<blocks_for(total), kThreads, 0, stream>>>(s, d, Idx(total), Idx(A), Idx(B), Idx(dv));
      } else {
        swap_outer_kernel<T, 1, Idx>
            <<<blocks_for(total), kThreads, 0, stream>>>(s, d, Idx(total), Idx(A), Idx(B), Idx(dv));
      }
      FERRUM_CUDA_LAUNCH_CHECK("swap_outer_kernel");
      return ok_status();
    });
  });
}

Status argmax_rows(int32_t dtype, const void* logits, uint64_t m, uint64_t n, uint32_t* out,
                   cudaStream_t stream) noexcept {
  if (m == 0) return ok_status();
  void* scratch = nullptr;
  FERRUM_CUDA_CHECK(cudaMallocAsync(&scratch, static_cast<size_t>(m * sizeof(uint32_t)), stream));
  auto* dev_out = static_cast<uint32_t*>(scratch);
  Status s = dispatch_float(dtype, "argmax_rows_f16", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return launch_argmax<T>(static_cast<const T*>(logits), m, n, dev_out, stream);
  });
  if (s.ok()) {
    const cudaError_t e = cudaMemcpyAsync(out, dev_out, static_cast<size_t>(m * sizeof(uint32_t)),
                                          cudaMemcpyDeviceToHost, stream);
    if (e != cudaSuccess) s = cuda_error_status(e, "cudaMemcpyAsync(argmax result)", __FILE__, __LINE__);
  }
  const cudaError_t fe = cudaFreeAsync(scratch, stream);
  if (s.ok() && fe != cudaSuccess) s = cuda_error_status(fe, "cudaFreeAsync(argmax scratch)", __FILE__, __LINE__);
  const cudaError_t se = cudaStreamSynchronize(stream);
  if (s.ok() && se != cudaSuccess) s = cuda_error_status(se, "cudaStreamSynchronize", __FILE__, __LINE__);
  return s;
}

}  // namespace ferrum::cuda::kernels
