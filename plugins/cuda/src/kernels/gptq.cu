// ferrum CUDA plugin — GPTQ int4 (W4A16) kernels (see gptq.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_check.hpp"
#include "dtype.hpp"
#include "kernels/elementwise.cuh"
#include "kernels/gptq.cuh"

namespace ferrum::cuda::kernels {
namespace {

using namespace dev;

constexpr int kMvThreads = 64;      // threads per matvec block (4 columns each)
constexpr int kMvUnroll = 8;        // word rows whose 16-byte loads are in flight together
constexpr uint32_t kMagic = 0x4B000000u;  // the float 2^23: 0x4B000000 | q is 2^23 + q (q < 2^23)

// x[r, p] = a[r, src_row[p]] (0 for padding, src_row[p] < 0; src_row NULL: the identity) as X;
// grid-stride over m·kp.
template <class T, class X>
__global__ void gather_kernel(const T* __restrict__ a, const int32_t* __restrict__ src_row, X* __restrict__ x,
                              uint64_t m, uint64_t k, uint64_t kp) {
  const uint64_t total = m * kp;
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const uint64_t r = i / kp, p = i % kp;
    const int64_t src = src_row ? static_cast<int64_t>(src_row[p]) : static_cast<int64_t>(p);
    x[i] = from_f<X>(src >= 0 ? to_f(a[r * k + static_cast<uint64_t>(src)]) : 0.0f);
  }
}

// Four adjacent output columns per thread (one 16-byte load per word row: the words of the four
// columns), kMvThreads threads per column tile of 4·kMvThreads columns; the block's split covers
// word rows [w0, w1). Groups are contiguous runs of word rows: group g is [gword[g], gword[g+1]).
// The loads of kMvUnroll word rows (16 bytes each) are issued before any is used. M: the
// accumulator rows compiled in (m <= M; rows >= m are skipped).
template <class T, int M>
__global__ void __launch_bounds__(kMvThreads)
    matvec_kernel(const uint32_t* __restrict__ q, const float2* __restrict__ zs, const uint32_t* __restrict__ wgrp,
                  const uint32_t* __restrict__ gword, const float* __restrict__ x, T* __restrict__ out,
                  float* __restrict__ partial, int m, uint64_t kw, uint64_t kp, uint64_t n, uint32_t splits) {
  const uint64_t col = (static_cast<uint64_t>(blockIdx.x) * kMvThreads + threadIdx.x) * 4;
  const uint32_t split = blockIdx.y;
  const uint64_t w0 = kw * split / splits, w1 = kw * (split + 1) / splits;
  const bool live = col < n;
  const uint64_t c = live ? col : n - 4;  // idle threads read valid columns and write nothing
  float acc[M][4], gacc[M][4];
#pragma unroll
  for (int r = 0; r < M; ++r)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[r][j] = gacc[r][j] = 0.0f;
  uint64_t w = w0;
  uint32_t g = w0 < w1 ? __ldg(wgrp + w0) : 0;
  while (w < w1) {
    float zb[4], sc[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 z_s = __ldg(zs + static_cast<uint64_t>(g) * n + c + j);
      zb[j] = z_s.x;
      sc[j] = z_s.y;
    }
    const uint64_t gend = __ldg(gword + g + 1);
    const uint64_t we = gend < w1 ? gend : w1;  // this group's word rows inside the split
    while (w < we) {
      const int cnt = we - w < static_cast<uint64_t>(kMvUnroll) ? static_cast<int>(we - w) : kMvUnroll;
      uint4 words[kMvUnroll];
#pragma unroll
      for (int u = 0; u < kMvUnroll; ++u)
        if (u < cnt) words[u] = __ldg(reinterpret_cast<const uint4*>(q + (w + u) * n + c));
#pragma unroll
      for (int u = 0; u < kMvUnroll; ++u) {
        if (u >= cnt) break;
        const uint32_t wd[4] = {words[u].x, words[u].y, words[u].z, words[u].w};
#pragma unroll
        for (int r = 0; r < M; ++r) {
          if (r >= m) break;
          const float* xr = x + static_cast<uint64_t>(r) * kp + 8 * (w + u);
          const float4 x0 = __ldg(reinterpret_cast<const float4*>(xr));
          const float4 x1 = __ldg(reinterpret_cast<const float4*>(xr) + 1);
          const float xs[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
#pragma unroll
          for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int i = 0; i < 8; ++i)
              gacc[r][j] = fmaf(xs[i], __uint_as_float(((wd[j] >> (4 * i)) & 15u) | kMagic) - zb[j], gacc[r][j]);
        }
      }
      w += static_cast<uint64_t>(cnt);
    }
#pragma unroll
    for (int r = 0; r < M; ++r)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        acc[r][j] = fmaf(sc[j], gacc[r][j], acc[r][j]);
        gacc[r][j] = 0.0f;
      }
    ++g;
  }
  if (!live) return;
#pragma unroll
  for (int r = 0; r < M; ++r) {
    if (r >= m) break;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (splits == 1)
        out[static_cast<uint64_t>(r) * n + col + j] = from_f<T>(acc[r][j]);
      else
        partial[(static_cast<uint64_t>(split) * m + r) * n + col + j] = acc[r][j];
    }
  }
}

// out[i] = Σ_s partial[s, i] in split order, rounded once; i over m·n.
template <class T>
__global__ void reduce_kernel(const float* __restrict__ partial, T* __restrict__ out, uint64_t total, uint32_t splits) {
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (uint32_t k = 0; k < splits; ++k) s += partial[k * total + i];
    out[i] = from_f<T>(s);
  }
}

// Wt[c − c0, p] for columns c0 … c0 + cols − 1: tiles of 32 word rows × 32 columns; block
// (32, 8): phase 1 thread (tx, ty) reads q[w0 + ty + 8j, c0' + tx] (coalesced); phase 2 thread
// (tx, ty) decodes word row w0 + tx of column c0' + ty + 8j and writes its 8 values (one warp:
// 32 consecutive 8-value runs of one Wt row).
template <class T>
__global__ void dequant_t_kernel(const uint32_t* __restrict__ q, const float2* __restrict__ zs,
                                 const uint32_t* __restrict__ wgrp, T* __restrict__ wt, uint64_t kw, uint64_t n,
                                 uint64_t c0, uint64_t cols) {
  __shared__ uint32_t tile[32][33];
  const uint64_t wt0 = static_cast<uint64_t>(blockIdx.x) * 32, ct0 = static_cast<uint64_t>(blockIdx.y) * 32;
  const int tx = threadIdx.x, ty = threadIdx.y;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const uint64_t w = wt0 + ty + 8 * j, cc = ct0 + tx;
    tile[ty + 8 * j][tx] = w < kw && cc < cols ? __ldg(q + w * n + c0 + cc) : 0u;
  }
  __syncthreads();
  const uint64_t w = wt0 + tx;
  if (w >= kw) return;
  const uint32_t g = __ldg(wgrp + w);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const uint64_t cc = ct0 + ty + 8 * j;
    if (cc >= cols) continue;
    const float2 z_s = __ldg(zs + static_cast<uint64_t>(g) * n + c0 + cc);
    const uint32_t word = tile[tx][ty + 8 * j];
    T v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
      v[i] = from_f<T>((__uint_as_float(((word >> (4 * i)) & 15u) | kMagic) - z_s.x) * z_s.y);
    T* dst = wt + cc * (8 * kw) + 8 * w;
    if constexpr (sizeof(T) == 2) {
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(v);
    } else {
      reinterpret_cast<float4*>(dst)[0] = *reinterpret_cast<const float4*>(v);
      reinterpret_cast<float4*>(dst)[1] = *reinterpret_cast<const float4*>(v + 4);
    }
  }
}

}  // namespace

Status gptq_gather(int32_t dtype, const void* a, const int32_t* src_row, void* x, uint64_t m, uint64_t k, uint64_t kp,
                   bool to_f32, cudaStream_t stream) noexcept {
  if (m == 0 || kp == 0) return Status{};
  return dispatch_float(dtype, "gptq_gather", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    const unsigned blocks = blocks_for(m * kp);  // arith-ok: m·kp checked by the glue
    if (to_f32)
      gather_kernel<T, float><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(a), src_row, static_cast<float*>(x), m, k, kp);
    else
      gather_kernel<T, T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(a), src_row, static_cast<T*>(x), m, k, kp);
    FERRUM_CUDA_LAUNCH_CHECK("gptq_gather");
    return Status{};
  });
}

uint32_t gptq_matvec_splits(uint64_t n, uint64_t kw, int sms) noexcept {
  const uint64_t tiles = (n + 4 * kMvThreads - 1) / (4 * kMvThreads);
  const uint64_t want = (8ull * static_cast<uint64_t>(sms > 0 ? sms : 1) + tiles - 1) / tiles;  // ≈ 8 blocks per SM
  const uint64_t most = std::max<uint64_t>(1, kw / 16);                                       // ≥ 16 word rows each
  return static_cast<uint32_t>(std::clamp<uint64_t>(want, 1, std::min<uint64_t>(most, 64)));
}

Status gptq_matvec(int32_t dtype, const uint32_t* q, const float2* zs, const uint32_t* wgrp, const uint32_t* gword,
                   const float* x, void* out, float* partial, uint64_t m, uint64_t kw, uint64_t n, uint32_t splits,
                   cudaStream_t stream) noexcept {
  if (m == 0 || n == 0) return Status{};
  if (m > kGptqMatvecMaxM || splits == 0 || (splits > 1 && !partial))
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "gptq_matvec: m %llu (at most %llu), splits %u",
                       static_cast<unsigned long long>(m), static_cast<unsigned long long>(kGptqMatvecMaxM), splits);
  return dispatch_float(dtype, "gptq_matvec", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    const dim3 grid(static_cast<unsigned>((n + 4 * kMvThreads - 1) / (4 * kMvThreads)), splits);
    const auto launch = [&](auto kernel) {
      kernel<<<grid, kMvThreads, 0, stream>>>(q, zs, wgrp, gword, x, static_cast<T*>(out), partial,
                                              static_cast<int>(m), kw, 8 * kw, n, splits);  // arith-ok: kp = 8·kw checked by the glue
    };
    if (m == 1) launch(matvec_kernel<T, 1>);
    else if (m == 2) launch(matvec_kernel<T, 2>);
    else if (m <= 4) launch(matvec_kernel<T, 4>);
    else launch(matvec_kernel<T, 8>);
    FERRUM_CUDA_LAUNCH_CHECK("gptq_matvec");
    if (splits > 1) {
      reduce_kernel<T><<<blocks_for(m * n), kThreads, 0, stream>>>(partial, static_cast<T*>(out), m * n, splits);  // arith-ok: m·n checked by the glue
      FERRUM_CUDA_LAUNCH_CHECK("gptq_reduce");
    }
    return Status{};
  });
}

Status gptq_dequant_t(int32_t dtype, const uint32_t* q, const float2* zs, const uint32_t* wgrp, void* wt, uint64_t kw,
                      uint64_t n, uint64_t c0, uint64_t cols, cudaStream_t stream) noexcept {
  if (kw == 0 || cols == 0) return Status{};
  return dispatch_float(dtype, "gptq_dequant_t", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    const dim3 grid(static_cast<unsigned>((kw + 31) / 32), static_cast<unsigned>((cols + 31) / 32));
    dequant_t_kernel<T><<<grid, dim3(32, 8), 0, stream>>>(q, zs, wgrp, static_cast<T*>(wt), kw, n, c0, cols);
    FERRUM_CUDA_LAUNCH_CHECK("gptq_dequant_t");
    return Status{};
  });
}

}  // namespace ferrum::cuda::kernels
