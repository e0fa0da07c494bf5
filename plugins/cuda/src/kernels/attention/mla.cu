// ferrum CUDA plugin — MLA attention, absorbed form (see mla.hpp).
#include <cuda_runtime.h>

#include <algorithm>

#include "common.cuh"
#include "cuda_check.hpp"
#include "dtype.hpp"
#include "mla.hpp"

namespace ferrum::cuda::attn {
namespace {

constexpr int kH = 8;          // heads per CTA (one warp each)
constexpr int kN = 32;         // keys per tile (one lane each when scoring)
constexpr int kThreads = 256;  // 8 warps
constexpr int kC = static_cast<int>(kMlaMaxR / kThreads);  // output columns per thread
constexpr uint32_t kMlaMaxSplits = 64;
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
  return static_cast<uint32_t>(std::min<uint64_t>({by_len, by_fill, kMlaMaxSplits}));
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

// out[row] = Σ_s 2^(m_s − M)·o_s / Σ_s 2^(m_s − M)·l_s, splits in order (deterministic).
template <class T>
__global__ void mla_merge_kernel(const float* part_o, const float* part_m, const float* part_l, T* out,
                                 uint32_t splits, uint64_t R) {
  const uint64_t row = blockIdx.x;
  float M = -INFINITY;
  for (uint32_t s = 0; s < splits; ++s) M = fmaxf(M, part_m[row * splits + s]);
  const float Mu = M == -INFINITY ? 0.0f : M;
  float den = 0.0f;
  for (uint32_t s = 0; s < splits; ++s) den = fmaf(exp2f(part_m[row * splits + s] - Mu), part_l[row * splits + s], den);
  for (uint64_t col = threadIdx.x; col < R; col += blockDim.x) {
    float num = 0.0f;
    for (uint32_t s = 0; s < splits; ++s)
      num = fmaf(exp2f(part_m[row * splits + s] - Mu), part_o[(row * splits + s) * R + col], num);
    out[row * R + col] = from_f32<T>(den == 0.0f ? 0.0f : num / den);
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
  if (row_groups(p) > 0x7FFFFFFFull / kMlaMaxSplits)
    return make_status(FERRUM_STATUS_UNSUPPORTED, "mla_attention: argument 'q_len': %llu (entry, query, 8-head group) rows exceed the CUDA grid",
                       static_cast<unsigned long long>(row_groups(p)));
  return ok_status();
}

uint64_t mla_scratch_bytes(const MlaParams& p, int sm_count) noexcept {
  const uint32_t splits = mla_splits(p, sm_count);
  if (splits <= 1) return 0;
  const uint64_t rows = p.batch * p.heads * p.q_len;
  return rows * splits * (p.R + 2) * sizeof(float);
}

Status mla_attention(const MlaParams& p, int sm_count, void* scratch, cudaStream_t stream) noexcept {
  Status s = mla_supported(p);
  if (!s.ok()) return s;
  const uint32_t splits = mla_splits(p, sm_count);
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
  const size_t smem = smem_bytes(p.R + p.P);
  const unsigned grid = static_cast<unsigned>(row_groups(p) * splits);
  return dispatch_float(p.dtype, "mla_attention", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    FERRUM_CUDA_CHECK(cudaFuncSetAttribute(mla_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    mla_kernel<T><<<grid, kThreads, smem, stream>>>(p, splits, part_o, part_m, part_l);
    FERRUM_CUDA_LAUNCH_CHECK("mla_kernel");
    if (splits > 1) {
      mla_merge_kernel<T><<<static_cast<unsigned>(rows), 256, 0, stream>>>(part_o, part_m, part_l, static_cast<T*>(p.out),
                                                                            splits, p.R);
      FERRUM_CUDA_LAUNCH_CHECK("mla_merge_kernel");
    }
    return ok_status();
  });
}

}  // namespace ferrum::cuda::attn
