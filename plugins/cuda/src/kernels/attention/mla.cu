// ferrum CUDA plugin — MLA attention, absorbed form (see mla.hpp).
#include <cuda_runtime.h>

#include <algorithm>

#include "common.cuh"
#include "cuda_check.hpp"
#include "dtype.hpp"
#include "flash.hpp"
#include "mla.hpp"

namespace ferrum::cuda::attn {
namespace {

constexpr int kH = 8;          // heads per CTA (one warp each)
constexpr int kN = 32;         // keys per tile (one lane each when scoring)
constexpr int kThreads = 256;  // 8 warps
constexpr int kC = static_cast<int>(kMlaMaxR / kThreads);  // output columns per thread
constexpr size_t kMaxSmem = 227 * 1024;

// Shared memory of a CTA: q rows [kH][QD], the key tile [kN][QD + 1] (odd stride: lane-per-key
// reads hit distinct banks), P [kH][kN], the tile's alpha, then m and l per head.
size_t smem_bytes(uint64_t QD) {
  return sizeof(float) * (kH * QD + kN * (QD + 1) + kH * kN + 3 * kH);
}

uint64_t row_groups(const MlaParams& p) { return p.batch * p.q_len * ((p.heads + kH - 1) / kH); }

// Splits: enough CTAs to fill the SMs about twice, each split at least 256 keys. Shapes only.
uint32_t mla_splits(const MlaParams& p, int sm_count) {
  const uint64_t groups = std::max<uint64_t>(1, row_groups(p));
  const uint64_t bound = p.window ? std::min(p.kv_len, p.window) : p.kv_len;
  const uint64_t by_len = std::max<uint64_t>(1, (bound + 255) / 256);
  const uint64_t by_fill = std::max<uint64_t>(1, 2 * static_cast<uint64_t>(std::max(sm_count, 1)) / groups);
  return static_cast<uint32_t>(std::min<uint64_t>({by_len, by_fill, kMaxSplits}));
}

template <class T>
__global__ void __launch_bounds__(kThreads) mla_kernel(MlaParams p, uint32_t splits, float* part_o, float* part_m,
                                                       float* part_l) {
  extern __shared__ float sm[];
  const int QD = static_cast<int>(p.R + p.P), R = static_cast<int>(p.R), ld = QD + 1;
  float* qs = sm;                  // [kH][QD]
  float* ks = qs + kH * QD;        // [kN][ld]
  float* ps = ks + kN * ld;        // [kH][kN]
  float* als = ps + kH * kN;       // [kH]
  float* ms = als + kH;            // [kH]
  float* ls = ms + kH;             // [kH]
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31;
  const uint64_t hgs = (p.heads + kH - 1) / kH;
  const uint64_t split = blockIdx.x % splits, rg = blockIdx.x / splits;
  const uint64_t hg = rg % hgs, bi = rg / hgs, i = bi % p.q_len, b = bi / p.q_len;
  const uint64_t h0 = hg * kH;
  const int nh = static_cast<int>(p.heads - h0 < kH ? p.heads - h0 : kH);
  const T* q = static_cast<const T*>(p.q);
  const T* cb = static_cast<const T*>(p.c) + b * p.S * p.R;
  const T* rb = static_cast<const T*>(p.r) + b * p.S * p.P;

  for (int hh = 0; hh < kH; ++hh) {
    const T* qr = q + ((b * p.heads + h0 + hh) * p.q_len + i) * QD;
    for (int d = tid; d < QD; d += kThreads) qs[hh * QD + d] = hh < nh ? to_f32(qr[d]) : 0.0f;
  }
  uint64_t lo, hi;
  visible_range(p.pos_offset + i, p.kv_len, p.causal, p.window, lo, hi);
  if (lo > hi) lo = hi;
  const uint64_t per = ((hi - lo + splits - 1) / splits + kN - 1) / kN * kN;
  const uint64_t js = lo + split * per < hi ? lo + split * per : hi, je = js + per < hi ? js + per : hi;

  const float scale2 = p.scale * kLog2e;
  float m_run = -INFINITY, l_run = 0.0f;  // head w's (identical in every lane of warp w)
  float acc[kH][kC];
#pragma unroll
  for (int hh = 0; hh < kH; ++hh)
#pragma unroll
    for (int k = 0; k < kC; ++k) acc[hh][k] = 0.0f;

  for (uint64_t j0 = js; j0 < je; j0 += kN) {
    const int nk = static_cast<int>(je - j0 < kN ? je - j0 : kN);
    __syncthreads();  // the previous tile is consumed (and the q rows are written)
    for (int jj = 0; jj < kN; ++jj) {
      const uint64_t j = j0 + jj;
      for (int d = tid; d < QD; d += kThreads) {
        float v = 0.0f;
        if (jj < nk) v = d < R ? to_f32(cb[j * p.R + d]) : to_f32(rb[j * p.P + (d - R)]);
        ks[jj * ld + d] = v;
      }
    }
    __syncthreads();
    float sc = -INFINITY;
    if (w < nh && lane < nk) {
      const float* qr = qs + w * QD;
      const float* kr = ks + lane * ld;
      float dot = 0.0f;
      for (int d = 0; d < QD; ++d) dot = fmaf(qr[d], kr[d], dot);
      sc = dot * scale2;
    }
    const float mx = warp_max(sc);
    const float m_new = fmaxf(m_run, mx);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = exp2f(m_run - m_use);
    const float pv = exp2f(sc - m_use);  // 0 for a masked key
    l_run = l_run * alpha + warp_sum(pv);
    m_run = m_new;
    ps[w * kN + lane] = pv;
    if (lane == 0) als[w] = alpha;
    __syncthreads();
#pragma unroll
    for (int hh = 0; hh < kH; ++hh) {
      const float a = als[hh];
#pragma unroll
      for (int k = 0; k < kC; ++k) acc[hh][k] *= a;
    }
    for (int jj = 0; jj < nk; ++jj) {
#pragma unroll
      for (int k = 0; k < kC; ++k) {
        const int col = tid + k * kThreads;
        if (col >= R) break;
        const float v = ks[jj * ld + col];
#pragma unroll
        for (int hh = 0; hh < kH; ++hh) acc[hh][k] = fmaf(ps[hh * kN + jj], v, acc[hh][k]);
      }
    }
  }
  if (lane == 0) {
    ms[w] = m_run;
    ls[w] = l_run;
  }
  __syncthreads();
  for (int hh = 0; hh < nh; ++hh) {
    const uint64_t row = (b * p.heads + h0 + hh) * p.q_len + i;
    const float l = ls[hh];
#pragma unroll
    for (int k = 0; k < kC; ++k) {
      const int col = tid + k * kThreads;
      if (col >= R) break;
      if (splits == 1) {
        static_cast<T*>(p.out)[row * p.R + col] = from_f32<T>(l == 0.0f ? 0.0f : acc[hh][k] / l);  // empty: +0.0
      } else {
        part_o[(row * splits + split) * p.R + col] = acc[hh][k];
      }
    }
    if (splits > 1 && tid == 0) {
      part_m[row * splits + split] = ms[hh];
      part_l[row * splits + split] = l;
    }
  }
}

// ---- Tensor-core path: f16 / bf16, R 512, P 64 (DeepSeek V2 / V3's absorbed shape) ----
//
// One CTA of 8 warps serves 64 heads of one (batch entry, query) over a split of its keys; the key
// rows [c_j | r_j] come in 32-key tiles through a cp.async pipeline (3 stages; 2 where the device
// has less shared memory), Q stays in shared memory for the whole split. Warp (mw, nw) owns heads
// mw·16 .. mw·16 + 15 and output columns nw·256 ..: it scores its 16 heads against the tile's 32
// keys over half of the 576 columns (mma m16n8k16), the two warps of a row block add each other's
// partial scores through shared memory (in one order, so both hold the same bits), run the same
// online softmax, and multiply P (registers, rounded to the activation type) by V = c into f32
// accumulators for their columns. Same split and merge contract as the SIMT kernel (m in log2
// units).
namespace tc {
constexpr int kR = 512, kP = 64, kQD = kR + kP;
constexpr int kLd = kQD + 8;      // smem row in elements (1168 bytes: ldmatrix's 8 rows on distinct banks)
constexpr int kM = 64;            // heads per CTA
constexpr int kN = 32;            // keys per tile
constexpr int kThreads = 256;
constexpr int kOT = kR / 2 / 8;   // n8 output tiles per warp
constexpr int kChunks = kQD / 8;  // 16-byte chunks per row

constexpr size_t smem_bytes(int stages) {
  return 2 * static_cast<size_t>(kM * kLd + stages * kN * kLd) + sizeof(float) * 8 * 32 * 16;
}

// Pipeline depth: 3 stages (193 KB of shared memory: Hopper), 2 (155 KB: A100's 163 KB), 0 when
// neither fits the device (the SIMT kernel serves).
int stages_for_device() {
  int dev = 0, optin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
    return 0;
  const size_t have = static_cast<size_t>(optin);
  return have >= smem_bytes(3) ? 3 : have >= smem_bytes(2) ? 2 : 0;
}

uint64_t row_groups(const MlaParams& p) { return p.batch * p.q_len * ((p.heads + kM - 1) / kM); }

// Splits: about one CTA per SM (one fits an SM), each split at least 64 keys. Shapes only.
uint32_t splits_for(const MlaParams& p, int sm_count) {
  const uint64_t groups = std::max<uint64_t>(1, row_groups(p));
  const uint64_t bound = p.window ? std::min(p.kv_len, p.window) : p.kv_len;
  const uint64_t by_len = std::max<uint64_t>(1, (bound + 63) / 64);
  const uint64_t by_fill = std::max<uint64_t>(1, static_cast<uint64_t>(std::max(sm_count, 1)) / groups);
  return static_cast<uint32_t>(std::min<uint64_t>({by_len, by_fill, kMaxSplits}));
}

bool aligned16(const void* x) { return (reinterpret_cast<uintptr_t>(x) & 15u) == 0; }

// The shapes and pointers this path serves (others run the SIMT kernel).
bool serves(const MlaParams& p) {
  return stages_for_device() != 0 && (p.dtype == FERRUM_DTYPE_F16 || p.dtype == FERRUM_DTYPE_BF16) && p.R == kR && p.P == kP && aligned16(p.q) &&
         aligned16(p.c) && aligned16(p.r) && aligned16(p.out);
}

template <class T, int kStages>
__global__ void __launch_bounds__(kThreads, 1) mla_tc_kernel(MlaParams p, uint32_t splits, float* part_o, float* part_m,
                                                             float* part_l) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);  // [kM][kLd]
  T* ks = qs + kM * kLd;                   // [kStages][kN][kLd]
  float4* sx = reinterpret_cast<float4*>(ks + kStages * kN * kLd);  // [4 n8 tiles][8 warps][32 lanes] partial scores
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int mw = warp & 3, nw = warp >> 2, g = lane >> 2, t = lane & 3;
  const uint64_t hgs = (p.heads + kM - 1) / kM;
  const uint64_t split = blockIdx.x % splits, rg = blockIdx.x / splits;
  const uint64_t hg = rg % hgs, bi = rg / hgs, i = bi % p.q_len, b = bi / p.q_len;
  const uint64_t h0 = hg * kM;
  const int nh = static_cast<int>(p.heads - h0 < kM ? p.heads - h0 : kM);
  const T* q = static_cast<const T*>(p.q);
  const T* cb = static_cast<const T*>(p.c) + b * p.S * kR;
  const T* rb = static_cast<const T*>(p.r) + b * p.S * kP;

  uint64_t lo, hi;
  visible_range(p.pos_offset + i, p.kv_len, p.causal, p.window, lo, hi);
  if (lo > hi) lo = hi;
  const uint64_t per = ((hi - lo + splits - 1) / splits + kN - 1) / kN * kN;
  const uint64_t js = lo + split * per < hi ? lo + split * per : hi, je = js + per < hi ? js + per : hi;
  const int ntiles = static_cast<int>((je - js + kN - 1) / kN);

  const uint4 zero = make_uint4(0, 0, 0, 0);
  for (int x = tid; x < kM * kChunks; x += kThreads) {
    const int row = x / kChunks, ch = x % kChunks;
    T* dst = qs + row * kLd + ch * 8;
    if (row < nh)
      cp_async16(dst, q + ((b * p.heads + h0 + row) * p.q_len + i) * kQD + ch * 8);
    else
      *reinterpret_cast<uint4*>(dst) = zero;
  }
  cp_async_commit();
  auto load_tile = [&](int tile) {
    T* kt = ks + (tile % kStages) * kN * kLd;
    const uint64_t j0 = js + static_cast<uint64_t>(tile) * kN;
    for (int x = tid; x < kN * kChunks; x += kThreads) {
      const int row = x / kChunks, ch = x % kChunks;
      const uint64_t j = j0 + row;
      T* dst = kt + row * kLd + ch * 8;
      if (j < je)
        cp_async16(dst, ch < kR / 8 ? cb + j * kR + ch * 8 : rb + j * kP + (ch - kR / 8) * 8);
      else
        *reinterpret_cast<uint4*>(dst) = zero;  // V rows past the split must be finite (P is 0 there)
    }
  };
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < ntiles) load_tile(st);
    cp_async_commit();
  }

  const float scale2 = p.scale * kLog2e;
  float o[kOT][4];
#pragma unroll
  for (int n = 0; n < kOT; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};  // rows g and g + 8 of the warp's block
  const int r0 = mw * 16;
  float4* sx_own = sx + warp * 32 + lane;
  const float4* sx_peer = sx + ((nw ^ 1) * 4 + mw) * 32 + lane;  // the other half of the same rows

  for (int it = 0; it < ntiles; ++it) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile it is in for every thread; tile it - 1's buffer and the partials are free
    if (it + kStages - 1 < ntiles) load_tile(it + kStages - 1);
    cp_async_commit();
    const T* kt = ks + (it % kStages) * kN * kLd;

    // Partial scores of rows r0.. against the tile's 32 keys over columns nw·288 .. nw·288 + 287.
    float s[4][4];
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
    const T* qa = qs + (r0 + (lane & 15)) * kLd + (lane >> 4) * 8 + nw * (kQD / 2);
    const T* kb = kt + ((lane >> 4) * 8 + (lane & 7)) * kLd + ((lane >> 3) & 1) * 8 + nw * (kQD / 2);
#pragma unroll
    for (int kk = 0; kk < kQD / 32; ++kk) {
      uint32_t a[4], b0[4], b1[4];
      ldmatrix_x4(a, qa + kk * 16);
      ldmatrix_x4(b0, kb + kk * 16);
      ldmatrix_x4(b1, kb + 16 * kLd + kk * 16);
      mma16816<T>(s[0], a, b0[0], b0[1]);
      mma16816<T>(s[1], a, b0[2], b0[3]);
      mma16816<T>(s[2], a, b1[0], b1[1]);
      mma16816<T>(s[3], a, b1[2], b1[3]);
    }
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
      sx_own[nt * 8 * 32] = make_float4(s[nt][0], s[nt][1], s[nt][2], s[nt][3]);
    __syncthreads();  // both halves' partial scores are in
    const uint64_t j0 = js + static_cast<uint64_t>(it) * kN;
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const float4 pe = sx_peer[nt * 8 * 32];
      const float pv[4] = {pe.x, pe.y, pe.z, pe.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        // the same sum in both warps of the row block: half 0's partial first
        const float full = nw == 0 ? s[nt][e] + pv[e] : pv[e] + s[nt][e];
        const float v = j0 + nt * 8 + 2 * t + (e & 1) < je ? full * scale2 : -INFINITY;
        s[nt][e] = v;
        mx[e >> 1] = fmaxf(mx[e >> 1], v);
      }
    }
    float alpha[2], mu[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m_run[r], mx[r]);
      mu[r] = m_new == -INFINITY ? 0.0f : m_new;
      alpha[r] = exp2f(m_run[r] - mu[r]);
      m_run[r] = m_new;
      l_run[r] *= alpha[r];
    }
    uint32_t pa[2][4];  // P as the A operand of two k16 steps (keys 0..15, 16..31)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const float p0 = exp2f(s[nt][0] - mu[0]), p1 = exp2f(s[nt][1] - mu[0]);
      const float p2 = exp2f(s[nt][2] - mu[1]), p3 = exp2f(s[nt][3] - mu[1]);
      l_run[0] += p0 + p1;
      l_run[1] += p2 + p3;
      pa[nt >> 1][(nt & 1) * 2] = pack2<T>(p0, p1);
      pa[nt >> 1][(nt & 1) * 2 + 1] = pack2<T>(p2, p3);
    }
#pragma unroll
    for (int n = 0; n < kOT; ++n) {
      o[n][0] *= alpha[0];
      o[n][1] *= alpha[0];
      o[n][2] *= alpha[1];
      o[n][3] *= alpha[1];
    }
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
      const T* vb = kt + (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * kLd + nw * (kR / 2) + (lane >> 4) * 8;
#pragma unroll
      for (int n2 = 0; n2 < kOT / 2; ++n2) {
        uint32_t bb[4];
        ldmatrix_x4_trans(bb, vb + n2 * 16);
        mma16816<T>(o[2 * n2], pa[kk], bb[0], bb[1]);
        mma16816<T>(o[2 * n2 + 1], pa[kk], bb[2], bb[3]);
      }
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int hr = r0 + g + 8 * r;
    if (hr >= nh) continue;
    const float l = l_run[r];  // both warps of the row block hold the same sum
    const uint64_t row = (b * p.heads + h0 + hr) * p.q_len + i;
    if (splits == 1) {
      const float inv = l == 0.0f ? 0.0f : 1.0f / l;  // no visible key: +0.0
      T* orow = static_cast<T*>(p.out) + row * kR + nw * (kR / 2) + 2 * t;
#pragma unroll
      for (int n = 0; n < kOT; ++n)
        *reinterpret_cast<uint32_t*>(orow + n * 8) = pack2<T>(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    } else {
      float* prow = part_o + (row * splits + split) * kR + nw * (kR / 2) + 2 * t;
#pragma unroll
      for (int n = 0; n < kOT; ++n) *reinterpret_cast<float2*>(prow + n * 8) = make_float2(o[n][2 * r], o[n][2 * r + 1]);
      if (nw == 0 && t == 0) {
        part_m[row * splits + split] = m_run[r];
        part_l[row * splits + split] = l;
      }
    }
  }
}
}  // namespace tc

// out[row] = Σ_s w_s·o_s with w_s = 2^(m_s − M) / Σ_s' 2^(m_s' − M)·l_s': the first warp computes the
// weights (a fixed reduction order: deterministic) into shared memory, then every thread sums its
// columns over the splits — four columns at a time where R allows 16-byte loads.
template <class T>
__global__ void __launch_bounds__(128) mla_merge_kernel(const float* part_o, const float* part_m, const float* part_l,
                                                        T* out, uint32_t splits, uint64_t R) {
  __shared__ float w[kMaxSplits];
  static_assert(kMaxSplits == 64, "two splits per lane");
  const uint64_t row = blockIdx.x;
  const unsigned lane = threadIdx.x & 31;
  if (threadIdx.x < 32) {
    const bool h0 = lane < splits, h1 = lane + 32 < splits;
    const float m0 = h0 ? part_m[row * splits + lane] : -INFINITY, m1 = h1 ? part_m[row * splits + lane + 32] : -INFINITY;
    const float M = warp_max(fmaxf(m0, m1)), Mu = M == -INFINITY ? 0.0f : M;
    const float e0 = h0 ? exp2f(m0 - Mu) : 0.0f, e1 = h1 ? exp2f(m1 - Mu) : 0.0f;
    const float den = warp_sum((h0 ? e0 * part_l[row * splits + lane] : 0.0f) + (h1 ? e1 * part_l[row * splits + lane + 32] : 0.0f));
    const float inv = den == 0.0f ? 0.0f : 1.0f / den;  // no visible key: +0.0
    if (h0) w[lane] = e0 * inv;
    if (h1) w[lane + 32] = e1 * inv;
  }
  __syncthreads();
  const float* po = part_o + row * splits * R;
  if (R % 4 == 0) {
    for (uint64_t col = 4 * threadIdx.x; col < R; col += 4 * blockDim.x) {
      float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 8
      for (uint32_t sp = 0; sp < splits; ++sp) {
        const float4 v = *reinterpret_cast<const float4*>(po + sp * R + col);
        const float ws = w[sp];
        acc = make_float4(fmaf(ws, v.x, acc.x), fmaf(ws, v.y, acc.y), fmaf(ws, v.z, acc.z), fmaf(ws, v.w, acc.w));
      }
      T* o = out + row * R + col;
      o[0] = from_f32<T>(acc.x);
      o[1] = from_f32<T>(acc.y);
      o[2] = from_f32<T>(acc.z);
      o[3] = from_f32<T>(acc.w);
    }
  } else {
    for (uint64_t col = threadIdx.x; col < R; col += blockDim.x) {
      float acc = 0.0f;
#pragma unroll 8
      for (uint32_t sp = 0; sp < splits; ++sp) acc = fmaf(w[sp], po[sp * R + col], acc);
      out[row * R + col] = from_f32<T>(acc);
    }
  }
}

}  // namespace

Status mla_supported(const MlaParams& p) noexcept {
  if (p.R > kMlaMaxR)
    return make_status(FERRUM_STATUS_UNSUPPORTED, "mla_attention: argument 'kv_lora_rank': the CUDA kernel serves up to %llu, given %llu",
                       static_cast<unsigned long long>(kMlaMaxR), static_cast<unsigned long long>(p.R));
  if (smem_bytes(p.R + p.P) > kMaxSmem)
    return make_status(FERRUM_STATUS_UNSUPPORTED,
                       "mla_attention: argument 'qk_rope_head_dim': a key row of kv_lora_rank + qk_rope_head_dim = %llu "
                       "values does not fit the CUDA kernel's shared-memory tile",
                       static_cast<unsigned long long>(p.R + p.P));
  if (row_groups(p) > 0x7FFFFFFFull / kMaxSplits)
    return make_status(FERRUM_STATUS_UNSUPPORTED, "mla_attention: argument 'q_len': %llu (entry, query, 8-head group) rows exceed the CUDA grid",
                       static_cast<unsigned long long>(row_groups(p)));
  return ok_status();
}

uint64_t mla_scratch_bytes(const MlaParams& p, int sm_count) noexcept {
  const uint32_t splits = tc::serves(p) ? tc::splits_for(p, sm_count) : mla_splits(p, sm_count);
  if (splits <= 1) return 0;
  const uint64_t rows = p.batch * p.heads * p.q_len;
  return rows * splits * (p.R + 2) * sizeof(float);
}

Status mla_attention(const MlaParams& p, int sm_count, void* scratch, cudaStream_t stream) noexcept {
  Status s = mla_supported(p);
  if (!s.ok()) return s;
  const bool use_tc = tc::serves(p);
  const uint32_t splits = use_tc ? tc::splits_for(p, sm_count) : mla_splits(p, sm_count);
  const uint64_t rows = p.batch * p.heads * p.q_len;
  float* part_o = nullptr;
  float* part_m = nullptr;
  float* part_l = nullptr;
  if (splits > 1) {
    if (!scratch) return make_status(FERRUM_STATUS_INTERNAL, "mla_attention: split scratch missing");
    part_o = static_cast<float*>(scratch);
    part_m = part_o + rows * splits * p.R;
    part_l = part_m + rows * splits;
  }
  return dispatch_float(p.dtype, "mla_attention", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    if constexpr (sizeof(T) == 2) {
      if (use_tc) {
        const int stages = tc::stages_for_device();
        const size_t smem = tc::smem_bytes(stages);
        const unsigned grid = static_cast<unsigned>(tc::row_groups(p) * splits);
        auto* kernel = stages == 3 ? tc::mla_tc_kernel<T, 3> : tc::mla_tc_kernel<T, 2>;
        FERRUM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
        kernel<<<grid, tc::kThreads, smem, stream>>>(p, splits, part_o, part_m, part_l);
        FERRUM_CUDA_LAUNCH_CHECK("mla_tc_kernel");
      }
    }
    if (!use_tc) {
      const size_t smem = smem_bytes(p.R + p.P);
      const unsigned grid = static_cast<unsigned>(row_groups(p) * splits);
      FERRUM_CUDA_CHECK(cudaFuncSetAttribute(mla_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
      mla_kernel<T><<<grid, kThreads, smem, stream>>>(p, splits, part_o, part_m, part_l);
      FERRUM_CUDA_LAUNCH_CHECK("mla_kernel");
    }
    if (splits > 1) {
      mla_merge_kernel<T><<<static_cast<unsigned>(rows), 128, 0, stream>>>(part_o, part_m, part_l, static_cast<T*>(p.out),
                                                                            splits, p.R);
      FERRUM_CUDA_LAUNCH_CHECK("mla_merge_kernel");
    }
    return ok_status();
  });
}

}  // namespace ferrum::cuda::attn
