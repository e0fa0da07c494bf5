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

// ---- layer_norm, row cached in registers, one-pass statistics ----------------------------------
// W warps per row (runtime, a power of two <= 16); a block of max(128, 32·W) threads holds
// 128 / (32·W) rows when W < 4 (one warp per row at W = 1: no block barrier at all). Lane l of
// a row owns the vectors c = l + k·32W (k < K), loaded first, all in flight at once. Each
// thread forms (count, mean, M2 = Σ(x − mean)²) of its own values exactly (two passes over its
// registers), then the partial statistics are merged with Chan's pairwise update
//   n = na + nb,  δ = μb − μa,  μ = μa + δ·nb/n,  M2 = M2a + M2b + δ²·na·nb/n
// (a running mean + sum of squared deviations: never E[x²] − μ²) — a butterfly over the warp,
// the lower lane always the left operand, so every lane ends with bit-identical statistics,
// then across the row's warps in warp order through shared memory (one barrier per row
// group). Deterministic; one reduction on the critical path instead of two, and short blocks
// with few registers keep many rows' loads in flight per SM.
struct LnStat {
  float n, mean, m2;
};

__device__ __forceinline__ LnStat chan_merge(const LnStat& a, const LnStat& b) {  // a: lower-indexed part
  const float n = a.n + b.n;
  if (n == 0.0f) return a;
  // Equal halves (every full row): f = 1/2 exactly, no division on the critical path.
  const float f = a.n == b.n ? 0.5f : __fdividef(b.n, n);
  const float d = b.mean - a.mean;
  return {n, fmaf(d, f, a.mean), a.m2 + b.m2 + d * d * (a.n * f)};
}

__host__ __device__ constexpr int ln_threads(int W) { return W >= 4 ? 32 * W : 128; }

// W and K are compile-time so that every vector's offset is an immediate of the load/store
// (no per-vector 64-bit address registers); the bound of 1024 resident threads per SM caps
// the kernel at 64 registers (K = 8: ~680 threads, ~96 registers, which it needs unspilled).
// gamma/beta are loaded after the reduction (L1/L2 hits): issuing them with x measured 11 %
// slower at dim 4096 (123 registers, half the rows in flight).
template <class T, int N, int K, int W>
__global__ void __launch_bounds__(ln_threads(W), 2048 / ln_threads(W) / (K >= 8 ? 3 : 2))
    layer_norm_rows_kernel(NormArgs<T> a) {
  using V = Vec<T, N>;
  constexpr int kThreads = ln_threads(W), kLanes = 32 * W, kRpb = kThreads / kLanes;
  __shared__ float red[2][kThreads / 32][3];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int rb = tid / kLanes, lr = tid % kLanes;
  const uint32_t nv = static_cast<uint32_t>(a.dim / N);
  const float inv_dim = 1.0f / static_cast<float>(a.dim);
  int parity = 0;
  for (uint64_t r0 = static_cast<uint64_t>(blockIdx.x) * kRpb; r0 < a.rows;
       r0 += static_cast<uint64_t>(gridDim.x) * kRpb) {
    const uint64_t row = r0 + rb;
    const bool live = row < a.rows;
    const uint64_t base = live ? row * a.dim : 0;
    const V* xr = reinterpret_cast<const V*>(a.x + base) + lr;
    V cache[K];
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (live && lr + k * kLanes < nv) cache[k] = xr[k * kLanes];
    float cnt = 0.0f, sum = 0.0f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (live && lr + k * kLanes < nv) {
        float f[N];
        to_floats(cache[k], f);
#pragma unroll
        for (int j = 0; j < N; ++j) sum += f[j];
        cnt += static_cast<float>(N);
      }
    }
    const float mt = cnt > 0.0f ? __fdividef(sum, cnt) : 0.0f;
    float m2 = 0.0f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (live && lr + k * kLanes < nv) {
        float f[N];
        to_floats(cache[k], f);
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const float d = f[j] - mt;
          m2 = fmaf(d, d, m2);
        }
      }
    }
    LnStat st{cnt, mt, m2};
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const LnStat q{__shfl_xor_sync(0xffffffffu, st.n, o), __shfl_xor_sync(0xffffffffu, st.mean, o),
                     __shfl_xor_sync(0xffffffffu, st.m2, o)};
      st = (lane & o) ? chan_merge(q, st) : chan_merge(st, q);
    }
    if constexpr (W > 1) {
      if (lane == 0) {
        red[parity][warp][0] = st.n;
        red[parity][warp][1] = st.mean;
        red[parity][warp][2] = st.m2;
      }
      __syncthreads();  // (the buffer alternates, so the next group's writes never meet these reads)
      const int w0 = rb * W;
      st = LnStat{red[parity][w0][0], red[parity][w0][1], red[parity][w0][2]};
#pragma unroll
      for (int w = 1; w < W; ++w)
        st = chan_merge(st, LnStat{red[parity][w0 + w][0], red[parity][w0 + w][1], red[parity][w0 + w][2]});
      parity ^= 1;
    }
    const float mean = st.mean;
    const float inv = rsqrtf(st.m2 * inv_dim + a.eps);
    const V* wr = reinterpret_cast<const V*>(a.w) + lr;
    const V* br = reinterpret_cast<const V*>(a.beta) + lr;
    V* outr = reinterpret_cast<V*>(a.out + base) + lr;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (live && lr + k * kLanes < nv) {
        float f[N], wf[N], bf[N];
        to_floats(cache[k], f);
        to_floats(wr[k * kLanes], wf);
        to_floats(br[k * kLanes], bf);
        V o;
#pragma unroll
        for (int j = 0; j < N; ++j) o.v[j] = from_f<T>((f[j] - mean) * inv * wf[j] + bf[j]);
        outr[k * kLanes] = o;
      }
    }
  }
}

// Vectors per lane the layer_norm launch aims at (more warps per row beyond it). Measured on
// H200 at dim 4096 bf16: K = 4 (4 warps per row) 95.0 µs, K = 8 (2 warps) 102.7 µs.
constexpr uint64_t kLnTargetK = 4;

template <class T, int K, int W>
Status launch_ln(const NormArgs<T>& a, cudaStream_t stream) {
  constexpr int kRpb = ln_threads(W) / (32 * W);
  const unsigned blocks = static_cast<unsigned>(std::min<uint64_t>((a.rows + kRpb - 1) / kRpb, uint64_t{1} << 20));
  layer_norm_rows_kernel<T, kVec<T>, K, W><<<blocks, ln_threads(W), 0, stream>>>(a);
  return launch_status("layer_norm_rows_kernel", __FILE__, __LINE__);
}

// layer_norm over 16-byte vectors: W warps per row (doubling while a lane would hold more
// than the target K vectors, up to 16), K vectors per lane; false when no instance fits (rows
// over 16 warps × 8 vectors: the generic kernel takes them).
template <class T>
bool launch_layer_norm_rows(const NormArgs<T>& a, cudaStream_t stream, Status& st) {
  constexpr int NV = kVec<T>;
  const uint64_t nv = a.dim / NV;
  if (nv > 0xFFFFFFFFull) return false;
  constexpr uint64_t kt = kLnTargetK;
  uint64_t W = 1;
  while (W < 16 && nv > 32 * W * kt) W *= 2;
  const uint64_t per = (nv + 32 * W - 1) / (32 * W);
  const int K = per <= 1 ? 1 : per <= 2 ? 2 : per <= 4 ? 4 : per <= 8 ? 8 : 0;
  switch (K * 100 + static_cast<int>(W)) {
    case 101: st = launch_ln<T, 1, 1>(a, stream); return true;
    case 201: st = launch_ln<T, 2, 1>(a, stream); return true;
    case 401: st = launch_ln<T, 4, 1>(a, stream); return true;
    case 402: st = launch_ln<T, 4, 2>(a, stream); return true;
    case 404: st = launch_ln<T, 4, 4>(a, stream); return true;
    case 408: st = launch_ln<T, 4, 8>(a, stream); return true;
    case 416: st = launch_ln<T, 4, 16>(a, stream); return true;
    case 802: st = launch_ln<T, 8, 2>(a, stream); return true;
    case 816: st = launch_ln<T, 8, 16>(a, stream); return true;
    default: return false;
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
  if constexpr (OP == kLayer) {
    Status st = ok_status();
    if (launch_layer_norm_rows<T>(a, stream, st)) return st;
  }
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
