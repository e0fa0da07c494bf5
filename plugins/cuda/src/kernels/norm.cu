// ferrum CUDA plugin — row normalisations (declared in norm.cuh).
//
// norm_kernel<T, N, K, OP>: one block per row; thread t owns the row's vectors
// c = t + k·blockDim.x (k < K) of N elements each. K > 0 keeps them in registers as raw
// vectors (one global read of the row); K = 0 re-reads global memory in each pass. N = 1 is
// the scalar path (any dim, any alignment). OP selects the normalisation.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.hpp"
#include "dtype.hpp"
#include "kernels/elementwise.cuh"
#include "kernels/norm.cuh"

namespace ferrum::cuda::kernels {

using namespace dev;

namespace {

enum NormOp : int { kRms = 0, kAddRms = 1, kLayer = 2 };

constexpr int kMaxNormThreads = 512;
constexpr int kMaxCached = 8;  // vectors per thread kept in registers

template <class T>
struct NormArgs {
  const T* x;        // rows of the input (kAddRms: the addend)
  T* residual;       // kAddRms only: read, rounded sum written back
  const T* w;        // weight (kLayer: gamma)
  const T* beta;     // kLayer only
  T* out;
  uint64_t rows;
  uint64_t dim;
  float eps;
};

template <class T, int N>
__device__ __forceinline__ void to_floats(const Vec<T, N>& v, float (&f)[N]) {
#pragma unroll
  for (int j = 0; j < N; ++j) f[j] = to_f(v.v[j]);
}

// Reads vector c of the row (kAddRms: forms and stores the rounded residual first).
template <class T, int N, int OP>
__device__ __forceinline__ Vec<T, N> first_read(const NormArgs<T>& a, uint64_t base, uint64_t c) {
  using V = Vec<T, N>;
  const V xv = reinterpret_cast<const V*>(a.x + base)[c];
  if constexpr (OP == kAddRms) {
    V* rr = reinterpret_cast<V*>(a.residual + base);
    const V rv = rr[c];
    V s;
#pragma unroll
    for (int j = 0; j < N; ++j) s.v[j] = from_f<T>(to_f(rv.v[j]) + to_f(xv.v[j]));
    rr[c] = s;
    return s;
  } else {
    return xv;
  }
}

// Re-reads vector c in a later pass (K = 0): the stored residual for kAddRms (written by this
// same thread in the first pass), x otherwise.
template <class T, int N, int OP>
__device__ __forceinline__ Vec<T, N> reread(const NormArgs<T>& a, uint64_t base, uint64_t c) {
  using V = Vec<T, N>;
  if constexpr (OP == kAddRms) return reinterpret_cast<const V*>(a.residual + base)[c];
  else return reinterpret_cast<const V*>(a.x + base)[c];
}

template <class T, int N, int K, int OP>
__global__ void __launch_bounds__(kMaxNormThreads) norm_kernel(NormArgs<T> a) {
  using V = Vec<T, N>;
  __shared__ float red[33];
  const uint64_t nv = a.dim / N;
  const float inv_dim = 1.0f / static_cast<float>(a.dim);
  constexpr int KC = K > 0 ? K : 1;
  for (uint64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    const uint64_t base = row * a.dim;
    V cache[KC];
    // Pass 1: Σx² (rms) or Σx (layer).
    float acc = 0.0f;
    auto stat1 = [&](const V& v) {
      float f[N];
      to_floats(v, f);
#pragma unroll
      for (int j = 0; j < N; ++j) acc += OP == kLayer ? f[j] : f[j] * f[j];
    };
    if constexpr (K > 0) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const uint64_t c = threadIdx.x + static_cast<uint64_t>(k) * blockDim.x;
        if (c < nv) {
          cache[k] = first_read<T, N, OP>(a, base, c);
          stat1(cache[k]);
        }
      }
    } else {
      for (uint64_t c = threadIdx.x; c < nv; c += blockDim.x) stat1(first_read<T, N, OP>(a, base, c));
    }
    const float s1 = block_sum(acc, red);
    float mean = 0.0f, inv;
    if constexpr (OP == kLayer) {
      // Pass 2: Σ(x − μ)² (a mean of squared deviations, never E[x²] − μ²).
      mean = s1 * inv_dim;
      float acc2 = 0.0f;
      auto stat2 = [&](const V& v) {
        float f[N];
        to_floats(v, f);
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const float d = f[j] - mean;
          acc2 += d * d;
        }
      };
      if constexpr (K > 0) {
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const uint64_t c = threadIdx.x + static_cast<uint64_t>(k) * blockDim.x;
          if (c < nv) stat2(cache[k]);
        }
      } else {
        for (uint64_t c = threadIdx.x; c < nv; c += blockDim.x) stat2(reread<T, N, OP>(a, base, c));
      }
      inv = rsqrtf(block_sum(acc2, red) * inv_dim + a.eps);
    } else {
      inv = rsqrtf(s1 * inv_dim + a.eps);
    }
    // Last pass: normalise, scale (and shift), round once.
    auto emit = [&](const V& v, uint64_t c) {
      float f[N], wf[N];
      to_floats(v, f);
      to_floats(reinterpret_cast<const V*>(a.w)[c], wf);
      V o;
      if constexpr (OP == kLayer) {
        float bf[N];
        to_floats(reinterpret_cast<const V*>(a.beta)[c], bf);
#pragma unroll
        for (int j = 0; j < N; ++j) o.v[j] = from_f<T>((f[j] - mean) * inv * wf[j] + bf[j]);
      } else {
#pragma unroll
        for (int j = 0; j < N; ++j) o.v[j] = from_f<T>(f[j] * inv * wf[j]);
      }
      reinterpret_cast<V*>(a.out + base)[c] = o;
    };
    if constexpr (K > 0) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const uint64_t c = threadIdx.x + static_cast<uint64_t>(k) * blockDim.x;
        if (c < nv) emit(cache[k], c);
      }
    } else {
      for (uint64_t c = threadIdx.x; c < nv; c += blockDim.x) emit(reread<T, N, OP>(a, base, c), c);
    }
    // No barrier needed before the next row: block_sum's barriers order every use of `red`.
  }
}

template <class T, int N, int K, int OP>
Status launch_one(const NormArgs<T>& a, unsigned threads, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(std::min<uint64_t>(a.rows, uint64_t{1} << 20));
  norm_kernel<T, N, K, OP><<<blocks, threads, 0, stream>>>(a);
  FERRUM_CUDA_LAUNCH_CHECK("norm_kernel");
  return ok_status();
}

// Chooses the path: 16-byte vectors when dim and every row base allow it; the row cached in
// registers when it fits 8 vectors per thread.
template <class T, int OP>
Status launch_norm(const NormArgs<T>& a, cudaStream_t stream) {
  constexpr int NV = kVec<T>;
  bool vec = a.dim % NV == 0 && aligned16(a.x) && aligned16(a.w) && aligned16(a.out);
  if (OP == kAddRms) vec = vec && aligned16(a.residual);
  if (OP == kLayer) vec = vec && aligned16(a.beta);
  (void)cudaGetLastError();
  if (!vec) return launch_one<T, 1, 0, OP>(a, kMaxNormThreads, stream);
  const uint64_t nv = a.dim / NV;
  // Up to 256 threads while the row fits 8 vectors each, then 512.
  uint64_t threads = nv <= 256 ? (nv + 31) / 32 * 32 : (nv <= 256 * kMaxCached ? 256 : kMaxNormThreads);
  const uint64_t per = (nv + threads - 1) / threads;
  const unsigned t = static_cast<unsigned>(threads);
  if (per <= 1) return launch_one<T, NV, 1, OP>(a, t, stream);
  if (per <= 2) return launch_one<T, NV, 2, OP>(a, t, stream);
  if (per <= 4) return launch_one<T, NV, 4, OP>(a, t, stream);
  if (per <= 8) return launch_one<T, NV, 8, OP>(a, t, stream);
  return launch_one<T, NV, 0, OP>(a, t, stream);
}

}  // namespace

Status rms_norm(int32_t dtype, const void* x, const void* w, float eps, void* out, uint64_t rows, uint64_t dim,
                cudaStream_t stream) noexcept {
  if (rows == 0 || dim == 0) return ok_status();
  return dispatch_float(dtype, "rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const NormArgs<T> a{static_cast<const T*>(x), nullptr, static_cast<const T*>(w), nullptr, static_cast<T*>(out),
                        rows, dim, eps};
    return launch_norm<T, kRms>(a, stream);
  });
}

Status fused_add_rms_norm(int32_t dtype, void* residual, const void* x, const void* w, float eps, void* out,
                          uint64_t rows, uint64_t dim, cudaStream_t stream) noexcept {
  if (rows == 0 || dim == 0) return ok_status();
  return dispatch_float(dtype, "fused_add_rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const NormArgs<T> a{static_cast<const T*>(x), static_cast<T*>(residual), static_cast<const T*>(w), nullptr,
                        static_cast<T*>(out), rows, dim, eps};
    return launch_norm<T, kAddRms>(a, stream);
  });
}

Status layer_norm(int32_t dtype, const void* x, const void* gamma, const void* beta, float eps, void* out,
                  uint64_t rows, uint64_t dim, cudaStream_t stream) noexcept {
  if (rows == 0 || dim == 0) return ok_status();
  return dispatch_float(dtype, "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const NormArgs<T> a{static_cast<const T*>(x), nullptr, static_cast<const T*>(gamma),
                        static_cast<const T*>(beta), static_cast<T*>(out), rows, dim, eps};
    return launch_norm<T, kLayer>(a, stream);
  });
}

}  // namespace ferrum::cuda::kernels
