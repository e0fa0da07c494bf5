// ferrum CUDA plugin — mixture-of-experts kernels (see moe.cuh).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "cuda_check.hpp"
#include "dtype.hpp"
#include "kernels/attention/common.cuh"  // cp.async, ldmatrix, mma.sync wrappers
#include "kernels/elementwise.cuh"
#include "kernels/moe.cuh"

namespace ferrum::cuda::kernels {
namespace {

using namespace dev;
using attn::cp_async16;
using attn::cp_async_commit;
using attn::cp_async_wait;
using attn::ldmatrix_x4;
using attn::mma16816;
using attn::pack2;

constexpr int kRouteWarps = 8;
constexpr int kPerLane = static_cast<int>(kMoeMaxExperts / 32);  // logits per lane

// (key, id) order of the routing: larger key first, then lower id.
__device__ __forceinline__ bool route_before(float ka, int ia, float kb, int ib) {
  return ka > kb || (ka == kb && ia < ib);
}

template <class T>
__global__ void __launch_bounds__(kRouteWarps * 32)
    route_kernel(const T* __restrict__ logits, int32_t* __restrict__ ids, float* __restrict__ weights,
                 uint64_t num_tokens, int E, int K, bool norm) {
  const int lane = threadIdx.x & 31;
  const float inf = INFINITY;
  for (uint64_t t = static_cast<uint64_t>(blockIdx.x) * kRouteWarps + (threadIdx.x >> 5); t < num_tokens;
       t += static_cast<uint64_t>(gridDim.x) * kRouteWarps) {
    const T* l = logits + t * static_cast<uint64_t>(E);
    float p[kPerLane];
    float mx = -inf;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int e = lane + 32 * j;
      p[j] = e < E ? to_f(l[e]) : -inf;
      if (e < E && p[j] > mx) mx = p[j];  // NaN never wins
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float other = __shfl_xor_sync(0xffffffffu, mx, o);
      if (other > mx) mx = other;
    }
    float z = 0.0f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int e = lane + 32 * j;
      p[j] = e < E ? expf(p[j] - mx) : 0.0f;
      z += p[j];
    }
    z = warp_sum(z);
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) p[j] = p[j] / z;
    uint32_t taken = 0;  // bit j: expert lane + 32·j already chosen
    float wsel[kMoeMaxTopK];
    int isel[kMoeMaxTopK];
#pragma unroll
    for (int kk = 0; kk < static_cast<int>(kMoeMaxTopK); ++kk) {
      if (kk < K) {
        float bk = -inf, bp = 0.0f;
        int bi = 0x7fffffff;
#pragma unroll
        for (int j = 0; j < kPerLane; ++j) {
          const int e = lane + 32 * j;
          const float key = isnan(p[j]) ? -inf : p[j];
          if (e < E && !((taken >> j) & 1u) && route_before(key, e, bk, bi)) {
            bk = key;
            bi = e;
            bp = p[j];
          }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
          const float ok = __shfl_xor_sync(0xffffffffu, bk, o);
          const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
          const float op = __shfl_xor_sync(0xffffffffu, bp, o);
          if (route_before(ok, oi, bk, bi)) {
            bk = ok;
            bi = oi;
            bp = op;
          }
        }
        if ((bi & 31) == lane) taken |= 1u << (bi >> 5);
        wsel[kk] = bp;
        isel[kk] = bi;
      }
    }
    if (lane == 0) {
      float s = 0.0f;
      if (norm) {
#pragma unroll
        for (int kk = 0; kk < static_cast<int>(kMoeMaxTopK); ++kk)
          if (kk < K) s += wsel[kk];
      }
#pragma unroll
      for (int kk = 0; kk < static_cast<int>(kMoeMaxTopK); ++kk) {
        if (kk < K) {
          ids[t * K + kk] = isel[kk];
          weights[t * K + kk] = !norm ? wsel[kk] : (s > 0.0f ? wsel[kk] / s : 1.0f / static_cast<float>(K));
        }
      }
    }
  }
}

constexpr int kAlignThreads = static_cast<int>(kMoeMaxExperts);
constexpr int kAlignTile = 4096;

__global__ void __launch_bounds__(kAlignThreads)
    align_kernel(const int32_t* __restrict__ topk, uint64_t num_pairs, int E, uint64_t bs, int32_t* __restrict__ sorted,
                 uint64_t cap, int32_t* __restrict__ eids, uint64_t cap_blocks, int32_t* __restrict__ total) {
  __shared__ int counts[kMoeMaxExperts];
  __shared__ unsigned long long offs[kMoeMaxExperts + 1];
  __shared__ int32_t tile[kAlignTile];
  const int tid = threadIdx.x;
  for (int e = tid; e < E; e += kAlignThreads) counts[e] = 0;
  __syncthreads();
  for (uint64_t p = tid; p < num_pairs; p += kAlignThreads) {
    const int32_t e = topk[p];
    if (e >= 0 && e < E) atomicAdd(&counts[e], 1);
  }
  __syncthreads();
  if (tid == 0) {
    unsigned long long off = 0;
    for (int e = 0; e < E; ++e) {
      offs[e] = off;
      off += (counts[e] + bs - 1) / bs * bs;
    }
    offs[E] = off;
  }
  for (uint64_t i = tid; i < cap; i += kAlignThreads) sorted[i] = static_cast<int32_t>(num_pairs);
  for (uint64_t i = tid; i < cap_blocks; i += kAlignThreads) eids[i] = -1;
  __syncthreads();
  for (int e = tid; e < E; e += kAlignThreads)
    for (uint64_t b = offs[e] / bs; b < offs[e + 1] / bs && b < cap_blocks; ++b) eids[b] = e;
  uint64_t pos = tid < E ? offs[tid] : 0;
  for (uint64_t base = 0; base < num_pairs; base += kAlignTile) {
    const int n = static_cast<int>(num_pairs - base < kAlignTile ? num_pairs - base : kAlignTile);
    __syncthreads();
    for (int i = tid; i < n; i += kAlignThreads) tile[i] = topk[base + i];
    __syncthreads();
    if (tid < E) {
      for (int i = 0; i < n; ++i)
        if (tile[i] == tid && pos < cap) sorted[pos++] = static_cast<int32_t>(base + i);
    }
  }
  if (tid == 0) total[0] = static_cast<int32_t>(offs[E] < cap ? offs[E] : cap);
}

// Resolves the routing blocks of the GEMM CTA at block `b`; returns how many it computes (0:
// none, uniform over the CTA). A block counts only below the used count (total[0] clamped to
// [0, sorted_count]) and with an expert id in [0, E). G == 2 pairs block b (even) with b + 1 when
// both are used and have the same expert: the CTA at b computes both (2·BM rows) and the CTA at
// b + 1 exits, so every block is computed by exactly one CTA. `e` is the expert; threads < G·BM
// fill pairs[r] / rows[r] (pair id and its x row p / top_k; −1 for padding, slots past the count
// or the computed blocks, and pair ids outside [0, num_pairs)). The caller synchronises.
template <int BM, int G>
__device__ __forceinline__ int gemm_blocks(uint64_t b, uint64_t blocks_count, const int32_t* __restrict__ sorted,
                                           uint64_t sorted_count, const int32_t* __restrict__ eids,
                                           const int32_t* __restrict__ total, uint64_t num_pairs, uint64_t top_k,
                                           uint64_t E, long long* pairs, long long* rows, int32_t& e) {
  static_assert(G == 1 || G == 2, "one or two routing blocks per CTA");
  long long tot = total[0];
  if (tot < 0) tot = 0;
  if (static_cast<uint64_t>(tot) > sorted_count) tot = static_cast<long long>(sorted_count);
  const uint64_t used = static_cast<uint64_t>(tot);
  if (b * BM >= used) return 0;
  e = eids[b];
  if (e < 0 || static_cast<uint64_t>(e) >= E) return 0;
  int nb = 1;
  if constexpr (G == 2) {
    // Block a (even, used, valid expert) takes a + 1 along when that one is used with the same expert.
    auto takes_next = [&](uint64_t a) { return a + 1 < blocks_count && (a + 1) * BM < used && eids[a + 1] == eids[a]; };
    if (b % 2 == 1) {
      if (takes_next(b - 1)) return 0;  // block b − 1 is used (below b) with expert e: its CTA computes b
    } else if (takes_next(b)) {
      nb = 2;
    }
  }
  const int tid = threadIdx.x;
  if (tid < G * BM) {
    const uint64_t i = b * BM + static_cast<uint64_t>(tid);
    const int32_t p = tid < nb * BM && i < used ? sorted[i] : -1;
    const bool ok = p >= 0 && static_cast<uint64_t>(p) < num_pairs;
    pairs[tid] = ok ? p : -1;
    rows[tid] = ok ? static_cast<long long>(static_cast<uint64_t>(p) / top_k) : -1;
  }
  return nb;
}

// SIMT path (F32, and F16/BF16 rows that cp.async cannot copy in 16-byte chunks).
constexpr int kGemmThreads = 256, kBN = 64, kBK = 32;

template <class T, int BM>
__global__ void __launch_bounds__(kGemmThreads)
    moe_gemm_kernel(const T* __restrict__ x, const int32_t* __restrict__ sorted, uint64_t sorted_count,
                    const int32_t* __restrict__ eids, const int32_t* __restrict__ total, const T* __restrict__ w,
                    T* __restrict__ out, uint64_t blocks_count, uint64_t num_pairs, uint64_t top_k, uint64_t E,
                    uint64_t n, uint64_t k) {
  constexpr int TM = BM / 16;
  __shared__ float xs[kBK][BM + 4];
  __shared__ float wsm[kBK][kBN + 4];
  __shared__ long long rows[BM];
  __shared__ long long pairs[BM];
  const uint64_t b = blockIdx.x, n0 = static_cast<uint64_t>(blockIdx.y) * kBN;
  int32_t e = -1;
  if (gemm_blocks<BM, 1>(b, blocks_count, sorted, sorted_count, eids, total, num_pairs, top_k, E, pairs, rows, e) == 0)
    return;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  __syncthreads();
  const T* we = w + static_cast<uint64_t>(e) * n * k;
  float acc[TM][4];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  for (uint64_t k0 = 0; k0 < k; k0 += kBK) {
    for (int idx = tid; idx < BM * kBK; idx += kGemmThreads) {
      const int r = idx / kBK, kk = idx % kBK;
      const long long row = rows[r];
      xs[kk][r] = row >= 0 && k0 + kk < k ? to_f(x[static_cast<uint64_t>(row) * k + k0 + kk]) : 0.0f;
    }
    for (int idx = tid; idx < kBN * kBK; idx += kGemmThreads) {
      const int c = idx / kBK, kk = idx % kBK;
      wsm[kk][c] = n0 + c < n && k0 + kk < k ? to_f(we[(n0 + c) * k + k0 + kk]) : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kBK; ++kk) {
      float av[TM], bv[4];
#pragma unroll
      for (int i = 0; i < TM; ++i) av[i] = xs[kk][ty * TM + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = wsm[kk][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const long long p = pairs[ty * TM + i];
    if (p < 0) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint64_t col = n0 + tx * 4 + j;
      if (col < n) out[static_cast<uint64_t>(p) * n + col] = from_f<T>(acc[i][j]);
    }
  }
}

// Tensor-core path (F16 / BF16, k % 8 == 0, x and w 16-byte aligned). One CTA of 4·G warps per
// (G routing blocks of BM rows, kTcBN output columns; see gemm_blocks): kTcBK-deep k tiles of the
// gathered x rows [G·BM × kTcBK] and of W_e's rows [kTcBN × kTcBK] (row = output column) through
// a cp.async ring of kTcStages; rows padded to kTcLd elements (9 × 16 bytes: the 8 row addresses
// of an ldmatrix phase fall in distinct banks). Warp w computes rows (w / 4)·BM .. + BM − 1 (one
// routing block; idle in the math when the CTA computes fewer blocks) and columns 32·(w % 4) ..
// + 31: per 16-deep k step, BM/16 A fragments (ldmatrix.x4 of x, row-major) and two B fragments
// (ldmatrix.x4 of W rows, non-transposed: x·W_eᵀ), mma.sync m16n8k16 with f32 accumulators, k in
// ascending tile order (deterministic). Chunks past n or k and the x rows of padding slots are
// zero-filled in shared memory, never read from global memory.
constexpr int kTcBN = 128, kTcBK = 64, kTcLd = kTcBK + 8;
constexpr int kTcChunks = kTcBK / 8;  // 16-byte chunks per tile row
static_assert((kTcLd * 2 / 16) % 2 == 1, "padded row must be an odd number of 16-byte chunks");

// Ring depth: 4 stages up to 32 rows, 3 from 64 (BM 16 / 32 / 64: 83 / 92 / 83 KB, within the
// 99 KB a CTA may opt into on every sm_80+ GPU, 2 CTAs per SM on A100 / H100 / H200; 2 × 64 rows:
// 110 KB, taken only where the device allows it).
template <int ROWS>
inline constexpr int kTcStagesFor = ROWS >= 64 ? 3 : 4;
template <int ROWS>
constexpr size_t tc_smem_bytes() {
  return sizeof(uint16_t) * static_cast<size_t>(kTcStagesFor<ROWS>) * (ROWS + kTcBN) * kTcLd;
}

template <class T, int BM, int G>
__global__ void __launch_bounds__(128 * G)
    moe_gemm_mma_kernel(const T* __restrict__ x, const int32_t* __restrict__ sorted, uint64_t sorted_count,
                        const int32_t* __restrict__ eids, const int32_t* __restrict__ total, const T* __restrict__ w,
                        T* __restrict__ out, uint64_t blocks_count, uint64_t num_pairs, uint64_t top_k, uint64_t E,
                        uint64_t n, uint64_t k, bool pack_out) {
  constexpr int kThreads = 128 * G, ROWS = G * BM, MT = BM / 16, kTcStages = kTcStagesFor<ROWS>;
  static_assert(sizeof(T) == 2, "tensor-core path: 16-bit activations");
  static_assert(BM % 16 == 0 && ROWS * kTcChunks % kThreads == 0 && kTcBN * kTcChunks % kThreads == 0,
                "tile copies split evenly over the CTA");
  static_assert(kTcBN == 32 * 4, "each warp owns 32 output columns");
  extern __shared__ __align__(16) unsigned char moe_smem[];
  T* xs = reinterpret_cast<T*>(moe_smem);  // [kTcStages][ROWS][kTcLd]
  T* ws = xs + kTcStages * ROWS * kTcLd;   // [kTcStages][kTcBN][kTcLd]
  __shared__ long long rows[ROWS];
  __shared__ long long pairs[ROWS];
  const uint64_t b = blockIdx.x, n0 = static_cast<uint64_t>(blockIdx.y) * kTcBN;
  int32_t e = -1;
  const int nb = gemm_blocks<BM, G>(b, blocks_count, sorted, sorted_count, eids, total, num_pairs, top_k, E, pairs,
                                    rows, e);
  if (nb == 0) return;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wm = warp / 4, wn = warp % 4;  // routing block and 32-column slice of this warp
  const bool wactive = wm < nb;            // uniform per warp
  __syncthreads();
  const T* we = w + static_cast<uint64_t>(e) * n * k;
  const uint64_t ntiles = (k + kTcBK - 1) / kTcBK;

  auto load_tile = [&](uint64_t t, int st) {  // tile t into stage st
    const uint64_t k0 = t * kTcBK;
    T* xd = xs + st * ROWS * kTcLd;
    T* wd = ws + st * kTcBN * kTcLd;
#pragma unroll
    for (int i = 0; i < ROWS * kTcChunks / kThreads; ++i) {
      const int c = tid + i * kThreads, r = c / kTcChunks, cc = c % kTcChunks;
      T* dst = xd + r * kTcLd + cc * 8;
      const long long row = rows[r];
      const uint64_t kc = k0 + static_cast<uint64_t>(cc) * 8;
      if (row >= 0 && kc < k) {
        cp_async16(dst, x + static_cast<uint64_t>(row) * k + kc);
      } else {
        *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int i = 0; i < kTcBN * kTcChunks / kThreads; ++i) {
      const int c = tid + i * kThreads, r = c / kTcChunks, cc = c % kTcChunks;
      T* dst = wd + r * kTcLd + cc * 8;
      const uint64_t col = n0 + static_cast<uint64_t>(r), kc = k0 + static_cast<uint64_t>(cc) * 8;
      if (col < n && kc < k) {
        cp_async16(dst, we + col * k + kc);
      } else {
        *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
      }
    }
  };

  // Prologue: tiles 0 .. kTcStages − 2, one commit group each (empty groups keep the count).
#pragma unroll
  for (int s = 0; s < kTcStages - 1; ++s) {
    if (static_cast<uint64_t>(s) < ntiles) load_tile(static_cast<uint64_t>(s), s);
    cp_async_commit();
  }

  float acc[MT][4][4];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[m][j][0] = acc[m][j][1] = acc[m][j][2] = acc[m][j][3] = 0.0f;

  int st = 0;  // stage of tile t (t mod kTcStages)
  for (uint64_t t = 0; t < ntiles; ++t, st = st + 1 == kTcStages ? 0 : st + 1) {
    // t + kTcStages − 1 groups committed: all but the newest kTcStages − 2 landed = tile t.
    cp_async_wait<kTcStages - 2>();
    __syncthreads();  // tile t visible (cp.async and zero stores); every warp is done with tile t − 1
    if (t + kTcStages - 1 < ntiles)  // into tile t − 1's stage
      load_tile(t + kTcStages - 1, st == 0 ? kTcStages - 1 : st - 1);
    cp_async_commit();
    if (!wactive) continue;
    const T* xt = xs + (st * ROWS + wm * BM) * kTcLd;
    const T* wt = ws + (st * kTcBN + wn * 32) * kTcLd;
#pragma unroll
    for (int kk = 0; kk < kTcBK / 16; ++kk) {
      uint32_t a[MT][4];
#pragma unroll
      for (int m = 0; m < MT; ++m) ldmatrix_x4(a[m], xt + (m * 16 + (lane & 15)) * kTcLd + kk * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int n2 = 0; n2 < 2; ++n2) {
        uint32_t bb[4];  // columns n2·16 + 0..7 (bb[0], bb[1]) and + 8..15 (bb[2], bb[3])
        ldmatrix_x4(bb, wt + (n2 * 16 + (lane & 7) + (lane >> 4) * 8) * kTcLd + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          mma16816<T>(acc[m][2 * n2], a[m], bb[0], bb[1]);
          mma16816<T>(acc[m][2 * n2 + 1], a[m], bb[2], bb[3]);
        }
      }
    }
  }
  cp_async_wait<0>();
  if (!wactive) return;

  // Accumulator (m, j): rows m·16 + g (regs 0, 1) and + 8 (regs 2, 3), columns j·8 + 2·t4, + 1.
  const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const long long p = pairs[wm * BM + m * 16 + g + h * 8];
      if (p < 0) continue;
      T* orow = out + static_cast<uint64_t>(p) * n;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint64_t col = n0 + static_cast<uint64_t>(wn * 32 + j * 8 + 2 * t4);
        const float v0 = acc[m][j][2 * h], v1 = acc[m][j][2 * h + 1];
        if (pack_out) {  // n even, out 4-byte aligned: col < n implies col + 1 < n
          if (col < n) *reinterpret_cast<uint32_t*>(orow + col) = pack2<T>(v0, v1);
        } else {
          if (col < n) orow[col] = from_f<T>(v0);
          if (col + 1 < n) orow[col + 1] = from_f<T>(v1);
        }
      }
    }
  }
}

template <class T>
__global__ void weighted_sum_kernel(const T* __restrict__ rows, const int32_t* __restrict__ idx, uint64_t num_rows,
                                    const float* __restrict__ wts, T* __restrict__ out, uint64_t num_tokens,
                                    uint64_t K, uint64_t H) {
  const uint64_t total = num_tokens * H;
  for (uint64_t i = global_tid(); i < total; i += grid_stride()) {
    const uint64_t t = i / H, d = i % H;
    float acc = 0.0f;
    for (uint64_t kk = 0; kk < K; ++kk) {
      uint64_t r = t * K + kk;
      if (idx) {
        const int32_t v = idx[t * K + kk];
        if (v < 0 || static_cast<uint64_t>(v) >= num_rows) continue;
        r = static_cast<uint64_t>(v);
      }
      acc = fmaf(wts[t * K + kk], to_f(rows[r * H + d]), acc);
    }
    out[i] = from_f<T>(acc);
  }
}

}  // namespace

Status route_topk_softmax(int32_t dtype, const void* logits, int32_t* ids, float* weights, uint64_t num_tokens,
                          uint64_t num_experts, uint64_t top_k, bool norm, cudaStream_t stream) noexcept {
  if (num_tokens == 0) return Status{};
  return dispatch_float(dtype, "route_topk_softmax", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    route_kernel<T><<<blocks_for(num_tokens, kRouteWarps), kRouteWarps * 32, 0, stream>>>(
        static_cast<const T*>(logits), ids, weights, num_tokens, static_cast<int>(num_experts), static_cast<int>(top_k),
        norm);
    FERRUM_CUDA_LAUNCH_CHECK("route_kernel");
    return Status{};
  });
}

Status moe_align_block_size(const int32_t* topk_ids, uint64_t num_pairs, uint64_t num_experts, uint64_t block_size,
                            int32_t* sorted, uint64_t cap, int32_t* expert_ids, uint64_t cap_blocks, int32_t* total,
                            cudaStream_t stream) noexcept {
  align_kernel<<<1, kAlignThreads, 0, stream>>>(topk_ids, num_pairs, static_cast<int>(num_experts), block_size, sorted,
                                                cap, expert_ids, cap_blocks, total);
  FERRUM_CUDA_LAUNCH_CHECK("align_kernel");
  return Status{};
}

Status moe_gemm_dense(int32_t dtype, const void* x, const int32_t* sorted, uint64_t sorted_count,
                      const int32_t* expert_ids, uint64_t blocks_count, const int32_t* total, const void* w, void* out,
                      uint64_t num_pairs, uint64_t top_k, uint64_t num_experts, uint64_t n, uint64_t k,
                      uint64_t block_size, cudaStream_t stream) noexcept {
  if (num_pairs == 0 || n == 0) return Status{};
  return dispatch_float(dtype, "moe_gemm", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    FERRUM_CUDA_CHECK(cudaMemsetAsync(out, 0, num_pairs * n * sizeof(T), stream));  // unrouted rows: zero
    if (blocks_count == 0) return Status{};
    // Tensor cores for 16-bit types whose rows cp.async can copy in 16-byte chunks.
    bool tc = false;
    if constexpr (sizeof(T) == 2)
      tc = k % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
    if (!tc) {
      const dim3 grid(static_cast<unsigned>(blocks_count), static_cast<unsigned>((n + kBN - 1) / kBN));
      auto launch = [&](auto kernel) {
        kernel<<<grid, kGemmThreads, 0, stream>>>(static_cast<const T*>(x), sorted, sorted_count, expert_ids, total,
                                                   static_cast<const T*>(w), static_cast<T*>(out), blocks_count,
                                                   num_pairs, top_k, num_experts, n, k);
      };
      if (block_size == 16) launch(moe_gemm_kernel<T, 16>);
      else if (block_size == 32) launch(moe_gemm_kernel<T, 32>);
      else launch(moe_gemm_kernel<T, 64>);
      FERRUM_CUDA_LAUNCH_CHECK("moe_gemm_kernel");
      return Status{};
    }
    if constexpr (sizeof(T) == 2) {
      const dim3 grid(static_cast<unsigned>(blocks_count), static_cast<unsigned>((n + kTcBN - 1) / kTcBN));
      const bool pack_out = n % 2 == 0 && reinterpret_cast<uintptr_t>(out) % 4 == 0;
      auto launch = [&](auto kernel, unsigned threads, size_t smem) -> Status {
        FERRUM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem)));
        kernel<<<grid, threads, smem, stream>>>(static_cast<const T*>(x), sorted, sorted_count, expert_ids, total,
                                                static_cast<const T*>(w), static_cast<T*>(out), blocks_count, num_pairs,
                                                top_k, num_experts, n, k, pack_out);
        FERRUM_CUDA_LAUNCH_CHECK("moe_gemm_mma_kernel");
        return Status{};
      };
      if (block_size == 16) return launch(moe_gemm_mma_kernel<T, 16, 1>, 128, tc_smem_bytes<16>());
      if (block_size == 32) return launch(moe_gemm_mma_kernel<T, 32, 1>, 128, tc_smem_bytes<32>());
      // Block size 64 (large batches: an expert often spans several blocks): two blocks of one
      // expert per CTA read each W_e tile once for both, where the device grants the larger shared block.
      int dev = 0, optin = 0;
      FERRUM_CUDA_CHECK(cudaGetDevice(&dev));
      FERRUM_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
      constexpr size_t kPairSmem = tc_smem_bytes<128>(), kPairStatic = 2 * 128 * sizeof(long long);
      if (static_cast<size_t>(optin) >= kPairSmem + kPairStatic)
        return launch(moe_gemm_mma_kernel<T, 64, 2>, 256, kPairSmem);
      return launch(moe_gemm_mma_kernel<T, 64, 1>, 128, tc_smem_bytes<64>());
    }
    return Status{};
  });
}

Status weighted_sum_rows(int32_t dtype, const void* rows, const int32_t* idx, uint64_t num_rows, const float* weights,
                         void* out, uint64_t num_tokens, uint64_t top_k, uint64_t hidden, cudaStream_t stream) noexcept {
  const uint64_t work = num_tokens * hidden;  // <= out's count, checked by the glue
  if (work == 0) return Status{};
  return dispatch_float(dtype, "weighted_sum", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    weighted_sum_kernel<T><<<blocks_for(work), kThreads, 0, stream>>>(static_cast<const T*>(rows), idx, num_rows,
                                                                       weights, static_cast<T*>(out), num_tokens,
                                                                       top_k, hidden);
    FERRUM_CUDA_LAUNCH_CHECK("weighted_sum_kernel");
    return Status{};
  });
}

}  // namespace ferrum::cuda::kernels
