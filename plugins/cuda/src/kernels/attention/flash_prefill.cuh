// ferrum CUDA plugin — FlashAttention-2-style prefill for F16 / BF16 (tensor cores).
//
// One CTA of 4 warps per (tile of kBM = 64 queries, query head, batch entry), launched longest
// tile first (causal); warp w owns query
// rows 16w .. 16w+15 of the tile. K/V tiles of kBN keys stream through shared memory with
// cp.async double buffering (the load of tile t+1 overlaps the math of tile t). Per tile each
// warp computes S = Q·Kᵀ (mma.sync m16n8k16, f32 accumulators; Q fragments kept in registers
// for hd <= 128, re-read with ldmatrix above), masks it (causal / window / length; skipped for
// tiles wholly visible to the warp), updates the running row max and sum in the log2 domain,
// rounds P to the activation dtype and accumulates O += P·V (V fragments via ldmatrix.trans).
// Shared-memory rows are padded by 8 elements (an odd number of 16-byte chunks), so the eight
// row addresses of every ldmatrix phase hit distinct banks. A warp whose rows see none of a
// tile skips its math for that tile (causal prefill does about half the work).
// Registers: O is hd/2 floats per thread, S is kBN/2. On-chip storage is per tile only.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "common.cuh"
#include "cuda_check.hpp"
#include "flash_decode.cuh"  // FlashSrc, PrefillTile

namespace ferrum::cuda::attn {

template <class T, int HD>
struct PrefillCfg {
  static constexpr int kBM = 64;
  static constexpr int kBN = HD <= 128 ? 64 : 32;  // keeps O + S + P within the register file
  static constexpr int kThreads = 128;
  static constexpr int kLd = HD + 8;                // elements per smem row
  static constexpr int kChunks = HD / 8;            // 16-byte chunks per global row
  static constexpr bool kQInRegs = HD <= 128;
  static constexpr size_t kSmemBytes = sizeof(T) * static_cast<size_t>(kLd) * (kBM + 4 * kBN);
  static_assert(HD % 16 == 0, "prefill head_dim must be a multiple of 16");
  static_assert((kLd * 2 / 16) % 2 == 1, "padded row must be an odd number of 16-byte chunks");
};

// The kernel is a template over a KV source (flash_decode.cuh's FlashSrc for contiguous caches,
// paged_src.cuh's PagedSrc for paged pools), which maps the CTA to its tile (prefill_tile: false
// = the CTA has no tile and exits), copies K/V chunks (locate + key_rows + copy_k / copy_v, through TileRows) and takes the LSE of
// each row (lse_row; a no-op without an LSE output).
template <class T, int HD, class Src>
__global__ void __launch_bounds__(128) flash_prefill_kernel(const Src src) {
  using Cfg = PrefillCfg<T, HD>;
  constexpr int kBM = Cfg::kBM, kBN = Cfg::kBN, kLd = Cfg::kLd, kChunks = Cfg::kChunks;
  extern __shared__ __align__(16) unsigned char smem[];
  T* q_s = reinterpret_cast<T*>(smem);  // [kBM][kLd]
  T* k_s = q_s + kBM * kLd;             // [2][kBN][kLd]
  T* v_s = k_s + 2 * kBN * kLd;         // [2][kBN][kLd]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  // blockIdx.x = (tile from the last, head): the CTAs start longest-first (causal tiles near
  // the end of the sequence see the most keys), so the short ones fill the tail of the grid.
  PrefillTile<typename Src::Row, T> tl;
  if (!src.prefill_tile(blockIdx.x, blockIdx.y, kBM, tl)) return;  // uniform over the CTA
  const int nq = tl.nq;
  const T* qg = tl.q0;
  T* og = tl.o0;
  const uint64_t rs = tl.stride;  // elements between the tile's query (and output) rows
  // Visible keys of row r (position pos0 + r; a negative position sees none).
  auto row_range = [&](int r, uint64_t& lo, uint64_t& hi) {
    const int64_t pos = tl.pos0 + r;
    if (pos < 0) {
      lo = hi = 0;
      return;
    }
    visible_range(static_cast<uint64_t>(pos), tl.L, tl.causal, src.window, lo, hi);
  };

  // Union of the tile's visible ranges (lo and hi are non-decreasing in the position; rows
  // with a negative position see nothing and are left out).
  const int r_first = tl.pos0 < 0 ? static_cast<int>(-tl.pos0 < nq ? -tl.pos0 : nq) : 0;
  uint64_t lo_u = 0, hi_u = 0, unused;
  if (r_first < nq) {
    row_range(r_first, lo_u, unused);
    row_range(nq - 1, unused, hi_u);
  }
  const uint64_t n_keys = hi_u > lo_u ? hi_u - lo_u : 0;
  const uint64_t ntiles = (n_keys + kBN - 1) / kBN;

  if (ntiles == 0) {  // no row of the tile sees a key: +0.0 rows, LSE −∞
    for (int e = tid; e < nq * HD; e += Cfg::kThreads) og[(e / HD) * rs + e % HD] = from_f32<T>(0.0f);
    for (int r = tid; r < nq; r += Cfg::kThreads) src.lse_row(tl.g0 + r, tl.h, -INFINITY);
    return;
  }

  // This thread's two rows (g and g + 8 of its warp) and the warp's row range.
  const int r_base = warp * 16 + (lane >> 2);
  uint64_t rlo[2], rhi[2];
#pragma unroll
  for (int ri = 0; ri < 2; ++ri) {
    const int r = r_base + ri * 8;
    if (r < nq) {
      row_range(r, rlo[ri], rhi[ri]);
    } else {
      rlo[ri] = rhi[ri] = 0;  // padding row: sees nothing, never stored
    }
  }
  const int w_first = warp * 16;
  const int w_last = (w_first + 15 < nq ? w_first + 15 : nq - 1);
  const bool warp_active = w_first < nq;
  uint64_t w_lo_first = 0, w_hi_first = 0, w_lo_last = 0, w_hi_last = 0;
  if (warp_active) {
    row_range(w_first, w_lo_first, w_hi_first);
    row_range(w_last, w_lo_last, w_hi_last);
  }

  // Q tile (zero rows past q_len), then K/V tile 0, as one cp.async group.
  for (int c = tid; c < kBM * kChunks; c += Cfg::kThreads) {
    const int r = c / kChunks, cc = c % kChunks;
    T* dst = q_s + r * kLd + cc * 8;
    if (r < nq) {
      cp_async16(dst, qg + static_cast<uint64_t>(r) * rs + cc * 8);
    } else {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
    }
  }
  // K/V tiles through TileRows (flash_decode.cuh): tile X's rows resolved into slot X & 1 one
  // iteration before it is copied, its table reads fetched one iteration before that.
  __shared__ ulonglong2 rows_s[2 * kBN];
  TileRows<Src, kBN, kChunks, Cfg::kThreads> tr;
  tr.slots = rows_s;
  auto load_kv = [&](uint64_t tile) {
    const int st = static_cast<int>(tile & 1);
    tr.copy(src, tl.row, st, k_s + st * kBN * kLd, v_s + st * kBN * kLd, kLd, false, tid);
  };
  tr.fetch(src, tl.row, lo_u, hi_u, tid);
  tr.resolve(src, tl.row, hi_u, 0, tid);
  __syncthreads();
  load_kv(0);
  cp_async_commit();
  if (ntiles > 1) {
    tr.fetch(src, tl.row, lo_u + kBN, hi_u, tid);
    tr.resolve(src, tl.row, hi_u, 1, tid);  // visible after the first iteration's barrier
  }
  if (ntiles > 2) tr.fetch(src, tl.row, lo_u + 2 * kBN, hi_u, tid);

  constexpr int kQFrags = Cfg::kQInRegs ? HD / 16 : 1;
  uint32_t qf[kQFrags][4];
  float o[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY};
  float l_run[2] = {0.0f, 0.0f};
  const float qscale = src.scale * kLog2e;
  const int t4 = lane & 3;

  for (uint64_t t = 0; t < ntiles; ++t) {
    cp_async_wait<0>();
    __syncthreads();  // tile t (and Q) landed; all warps are done with stage (t+1)&1
    if constexpr (Cfg::kQInRegs) {
      if (t == 0) {
#pragma unroll
        for (int ks = 0; ks < HD / 16; ++ks)
          ldmatrix_x4(qf[ks], q_s + (warp * 16 + (lane & 15)) * kLd + ks * 16 + (lane >> 4) * 8);
      }
    }
    if (t + 1 < ntiles) load_kv(t + 1);
    cp_async_commit();
    if (t + 2 < ntiles) tr.resolve(src, tl.row, hi_u, static_cast<int>(t & 1), tid);  // tile t + 2: slot (t + 2) & 1
    if (t + 3 < ntiles) tr.fetch(src, tl.row, lo_u + (t + 3) * kBN, hi_u, tid);     // lands during this tile's math

    const uint64_t j0 = lo_u + t * kBN;
    if (!warp_active || j0 >= w_hi_last || j0 + kBN <= w_lo_first) continue;  // warp sees none of it
    const bool full = j0 >= w_lo_last && j0 + kBN <= w_hi_first;
    const T* ks_t = k_s + (t & 1) * kBN * kLd;
    const T* vs_t = v_s + (t & 1) * kBN * kLd;

    // S = Q·Kᵀ
    float s[kBN / 8][4];
#pragma unroll
    for (int n = 0; n < kBN / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t a[4];
      if constexpr (Cfg::kQInRegs) {
        a[0] = qf[kk][0];
        a[1] = qf[kk][1];
        a[2] = qf[kk][2];
        a[3] = qf[kk][3];
      } else {
        ldmatrix_x4(a, q_s + (warp * 16 + (lane & 15)) * kLd + kk * 16 + (lane >> 4) * 8);
      }
#pragma unroll
      for (int n2 = 0; n2 < kBN / 16; ++n2) {
        uint32_t bb[4];
        ldmatrix_x4(bb, ks_t + (n2 * 16 + (lane & 7) + (lane >> 4) * 8) * kLd + kk * 16 + ((lane >> 3) & 1) * 8);
        mma16816<T>(s[2 * n2], a, bb[0], bb[1]);
        mma16816<T>(s[2 * n2 + 1], a, bb[2], bb[3]);
      }
    }

    // scale, mask, online softmax (rows ri = 0: regs 0,1; ri = 1: regs 2,3)
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kBN / 8; ++n) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int ri = r >> 1;
        float x = s[n][r] * qscale;
        if (!full) {
          const uint64_t key = j0 + n * 8 + 2 * t4 + (r & 1);
          if (key < rlo[ri] || key >= rhi[ri]) x = -INFINITY;
        }
        s[n][r] = x;
        mx[ri] = fmaxf(mx[ri], x);
      }
    }
    float m_use[2];
#pragma unroll
    for (int ri = 0; ri < 2; ++ri) {
      mx[ri] = fmaxf(mx[ri], __shfl_xor_sync(0xffffffffu, mx[ri], 1));
      mx[ri] = fmaxf(mx[ri], __shfl_xor_sync(0xffffffffu, mx[ri], 2));
      const float m_new = fmaxf(m_run[ri], mx[ri]);
      m_use[ri] = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = exp2f(m_run[ri] - m_use[ri]);
      m_run[ri] = m_new;
      l_run[ri] *= alpha;
#pragma unroll
      for (int n = 0; n < HD / 8; ++n) {
        o[n][2 * ri] *= alpha;
        o[n][2 * ri + 1] *= alpha;
      }
    }
#pragma unroll
    for (int n = 0; n < kBN / 8; ++n) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const float pv = exp2f(s[n][r] - m_use[r >> 1]);
        s[n][r] = pv;
        l_run[r >> 1] += pv;
      }
    }

    // O += P·V
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t a[4];
      a[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
      a[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
      a[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      a[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dn = 0; dn < HD / 16; ++dn) {
        uint32_t bb[4];
        ldmatrix_x4_trans(bb, vs_t + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kLd + dn * 16 + (lane >> 4) * 8);
        mma16816<T>(o[2 * dn], a, bb[0], bb[1]);
        mma16816<T>(o[2 * dn + 1], a, bb[2], bb[3]);
      }
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int ri = 0; ri < 2; ++ri) {
    float l = l_run[ri];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int r = r_base + ri * 8;
    if (r >= nq) continue;
    const float inv = l == 0.0f ? 0.0f : 1.0f / l;  // empty visible set: +0.0; NaN propagates
    if (t4 == 0) src.lse_row(tl.g0 + r, tl.h, l == 0.0f ? -INFINITY : m_run[ri] + log2f(l));
    T* orow = og + static_cast<uint64_t>(r) * rs;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      *reinterpret_cast<uint32_t*>(orow + n * 8 + 2 * t4) = pack2<T>(o[n][2 * ri] * inv, o[n][2 * ri + 1] * inv);
    }
  }
}

// Launches the prefill kernel over `tiles` query tiles (of 64) per head and `groups` grid rows
// (batch entries, or sequences for the paged source).
template <class T, int HD, class Src>
Status launch_prefill_src(const Src& src, uint64_t tiles, uint64_t groups, cudaStream_t stream,
                          const char* what) noexcept {
  using Cfg = PrefillCfg<T, HD>;
  if (tiles * src.H > 0x7FFFFFFFull || groups > 65535)
    return make_status(FERRUM_STATUS_UNSUPPORTED, "%s: prefill grid %llu x %llu x %llu exceeds the CUDA limits", what,
                       static_cast<unsigned long long>(tiles), static_cast<unsigned long long>(src.H),
                       static_cast<unsigned long long>(groups));
  auto kernel = flash_prefill_kernel<T, HD, Src>;
  FERRUM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(Cfg::kSmemBytes)));
  kernel<<<dim3(static_cast<unsigned>(tiles * src.H), static_cast<unsigned>(groups)), Cfg::kThreads,
           Cfg::kSmemBytes, stream>>>(src);
  FERRUM_CUDA_LAUNCH_CHECK("flash_prefill_kernel");
  return ok_status();
}

template <class T, int HD>
Status launch_prefill(const FlashParams& p, cudaStream_t stream) noexcept {
  return launch_prefill_src<T, HD>(FlashSrc<T, HD>(p), (p.q_len + PrefillCfg<T, HD>::kBM - 1) / PrefillCfg<T, HD>::kBM,
                                   p.batch, stream, "flash_attention");
}

}  // namespace ferrum::cuda::attn
