// ferrum CPU plugin — flash-attention prefill with 16 query rows per AVX-512 vector (or two AVX2
// vectors, namespace v2 below) and decode 16 keys at a time (see attention_tiles.hpp).
//
// For one group of 16 query rows (one query head, 16 consecutive positions; lanes past the tile
// are empty) and one block of up to kKeys keys already widened to f32:
//   scores  sᵀ[j] (16 rows) = Σ_d K[j][d] · qᵀ[d]          one FMA per (key, d), K as a broadcast
//   mask    lanes whose visible range misses key j get −inf
//   softmax m' = max(m, max_j s[j]), α = e^(m − m') (0 while m = −inf), p[j] = e^(s[j] − m'),
//           l ← l·α + Σ_j p[j] (keys in order)
//   values  accᵀ[d] (16 rows) ← accᵀ[d]·α + Σ_j p[j] · V[j][d]   one FMA per (key, d), V broadcast
// e^x is simd::exp16 (≤ ~1.5e-7 relative). Every lane's arithmetic is a fixed sequence over keys and
// dimensions, whatever the thread split.
#include "attention_tiles.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>

#include "simd.hpp"

namespace ferrum::cpu::attn_tiles {

#if FERRUM_SIMD_X86
namespace {

constexpr float kInf = __builtin_inff();

FERRUM_AVX512_INLINE float simd_exp1(float x) { return _mm512_cvtss_f32(simd::exp16(_mm512_set1_ps(x))); }

// sᵀ[j] for keys [0, nk16) (nk16 a multiple of 16, rows of kf past nk zero): 16 keys at a time.
template <int D>
FERRUM_AVX512 void scores(const float* qt, const float* kf, uint64_t nk16, float* s) {
  for (uint64_t j0 = 0; j0 < nk16; j0 += 16) {
    __m512 acc[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) acc[j] = _mm512_setzero_ps();
    const float* kb = kf + j0 * D;
    for (int d = 0; d < D; ++d) {
      const __m512 q = _mm512_load_ps(qt + 16 * d);
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) acc[j] = _mm512_fmadd_ps(q, _mm512_set1_ps(kb[j * D + d]), acc[j]);
    }
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) _mm512_store_ps(s + 16 * (j0 + j), acc[j]);
  }
}

// accᵀ[d] = accᵀ[d]·α + Σ_{j < nk} p[j] · V[j][d], 16 dimensions at a time.
template <int D>
FERRUM_AVX512 void values(const float* p, const float* vf, uint64_t nk, __m512 alpha, float* acc) {
  for (int d0 = 0; d0 < D; d0 += 16) {
    __m512 a[16];
#pragma GCC unroll 16
    for (int d = 0; d < 16; ++d) a[d] = _mm512_mul_ps(_mm512_load_ps(acc + 16 * (d0 + d)), alpha);
    for (uint64_t j = 0; j < nk; ++j) {
      const __m512 pj = _mm512_load_ps(p + 16 * j);
      const float* vr = vf + j * D + d0;
#pragma GCC unroll 16
      for (int d = 0; d < 16; ++d) a[d] = _mm512_fmadd_ps(pj, _mm512_set1_ps(vr[d]), a[d]);
    }
#pragma GCC unroll 16
    for (int d = 0; d < 16; ++d) _mm512_store_ps(acc + 16 * (d0 + d), a[d]);
  }
}

template <int D>
FERRUM_AVX512 void block_d(const Rows& r, const float* kf, const float* vf, uint64_t nk, uint64_t j0, float sigma,
                           float* s) {
  const uint64_t nk16 = (nk + 15) / 16 * 16;
  scores<D>(r.qt, kf, nk16, s);
  const __m512i lo = _mm512_load_si512(r.lo), hi = _mm512_load_si512(r.hi);
  const __m512 sg = _mm512_set1_ps(sigma), ninf = _mm512_set1_ps(-kInf);
  __m512 bmax = ninf;
  for (uint64_t j = 0; j < nk; ++j) {
    const __m512i jj = _mm512_set1_epi32(static_cast<int32_t>(j0 + j));
    const __mmask16 vis = _mm512_cmpge_epi32_mask(jj, lo) & _mm512_cmplt_epi32_mask(jj, hi);
    const __m512 v = _mm512_mask_mul_ps(ninf, vis, sg, _mm512_load_ps(s + 16 * j));
    _mm512_store_ps(s + 16 * j, v);
    bmax = _mm512_max_ps(v, bmax);  // a NaN score is skipped here and propagates through p
  }
  const __m512 m = _mm512_load_ps(r.m);
  const __m512 m_new = _mm512_max_ps(bmax, m);
  const __mmask16 none = _mm512_cmp_ps_mask(m, ninf, _CMP_EQ_OQ);
  const __m512 alpha = _mm512_mask_mov_ps(simd::exp16(_mm512_sub_ps(m, m_new)), none, _mm512_setzero_ps());
  const __m512 m_use = _mm512_mask_mov_ps(m_new, _mm512_cmp_ps_mask(m_new, ninf, _CMP_EQ_OQ), _mm512_setzero_ps());
  __m512 sum = _mm512_setzero_ps();
  for (uint64_t j = 0; j < nk; ++j) {
    const __m512 pj = simd::exp16(_mm512_sub_ps(_mm512_load_ps(s + 16 * j), m_use));
    _mm512_store_ps(s + 16 * j, pj);
    sum = _mm512_add_ps(sum, pj);
  }
  _mm512_store_ps(r.l, _mm512_add_ps(_mm512_mul_ps(_mm512_load_ps(r.l), alpha), sum));
  _mm512_store_ps(r.m, m_new);
  values<D>(s, vf, nk, alpha, r.acc);
}

// ---- decode: one query row at a time, 16 keys per step --------------------------------------------
// Sixteen vectors → one vector of their sixteen lane sums (lane j = Σ of v[j]), a fixed tree.
FERRUM_AVX512_INLINE __m512 sum16(__m512* v) {
  // 1: w[j] = [v[j] halves summed (8), v[j + 8] halves summed (8)]
  for (int j = 0; j < 8; ++j)
    v[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[j], v[j + 8], 0x44), _mm512_shuffle_f32x4(v[j], v[j + 8], 0xEE));
  // 2: x[j] = quarters [v[j], v[j + 8], v[j + 4], v[j + 12]], 4 partial sums each
  for (int j = 0; j < 4; ++j)
    v[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[j], v[j + 4], 0x88), _mm512_shuffle_f32x4(v[j], v[j + 4], 0xDD));
  // 3: y0 = f(x0, x1), y1 = f(x2, x3): per quarter [x_a partials (2), x_b partials (2)]
  for (int j = 0; j < 2; ++j) {
    const __m512d a = _mm512_castps_pd(v[2 * j]), b = _mm512_castps_pd(v[2 * j + 1]);
    v[j] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  // 4: per quarter [v0, v1, v2, v3] (quarters hold j, j + 8, j + 4, j + 12), then quarters 0, 2, 1, 3
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(v[0], v[1], 0x88), _mm512_shuffle_ps(v[0], v[1], 0xDD));
  return _mm512_shuffle_f32x4(r, r, 0xD8);
}

// Key row j of the block: contiguous rows (stride D) or one pointer per key (a paged pool).
// (No target attribute: inlined into the AVX-512 and the AVX2 kernels alike.)
template <class E, int D>
struct ContigRows {
  const E* base;
  __attribute__((always_inline)) inline const E* operator()(uint64_t j) const { return base + j * D; }
};
template <class E>
struct PtrRows {
  const E* const* rows;
  __attribute__((always_inline)) inline const E* operator()(uint64_t j) const { return rows[j]; }
};

template <int D, class E, class KRow, class VRow>
FERRUM_AVX512 void decode_block_d(const DecodeRow& r, KRow krow, VRow vrow, uint64_t nk, uint64_t j0, float sigma,
                                  float* s) {
  constexpr int kV = D / 16;
  __m512 q[kV];
  for (int t = 0; t < kV; ++t) q[t] = _mm512_loadu_ps(r.q + 16 * t);
  const __m512 ninf = _mm512_set1_ps(-kInf);
  __m512 bmax = ninf;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (uint64_t c = 0; c < nk; c += 16) {
    __m512 acc[16];
    const int n = static_cast<int>(nk - c < 16 ? nk - c : 16);
    for (int j = 0; j < 16; ++j) {
      __m512 a = _mm512_setzero_ps();
      if (j < n) {
        const E* kr = krow(c + j);
#pragma GCC unroll 8
        for (int t = 0; t < kV; ++t) a = _mm512_fmadd_ps(q[t], simd::load16(kr + 16 * t), a);
      }
      acc[j] = a;
    }
    const __m512i jj = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(j0 + c)), lane);
    const __mmask16 vis = _mm512_cmpge_epi32_mask(jj, _mm512_set1_epi32(r.lo)) &
                          _mm512_cmplt_epi32_mask(jj, _mm512_set1_epi32(r.hi)) & static_cast<__mmask16>((1u << n) - 1u);
    const __m512 v = _mm512_mask_mul_ps(ninf, vis, _mm512_set1_ps(sigma), sum16(acc));
    _mm512_store_ps(s + c, v);
    bmax = _mm512_max_ps(v, bmax);
  }
  const float m = *r.m, m_new = std::max(m, _mm512_reduce_max_ps(bmax));
  const float alpha = m == -kInf ? 0.0f : simd_exp1(m - m_new);
  const __m512 mu = _mm512_set1_ps(m_new == -kInf ? 0.0f : m_new);
  __m512 sum = _mm512_setzero_ps();
  for (uint64_t c = 0; c < nk; c += 16) {
    const __m512 p = simd::exp16(_mm512_sub_ps(_mm512_load_ps(s + c), mu));
    _mm512_store_ps(s + c, p);
    sum = _mm512_add_ps(sum, p);
  }
  *r.l = *r.l * alpha + _mm512_reduce_add_ps(sum);
  *r.m = m_new;
  __m512 o[kV];
  const __m512 av = _mm512_set1_ps(alpha);
  for (int t = 0; t < kV; ++t) o[t] = _mm512_mul_ps(_mm512_loadu_ps(r.acc + 16 * t), av);
  for (uint64_t j = 0; j < nk; ++j) {
    const __m512 pj = _mm512_set1_ps(s[j]);
    const E* vr = vrow(j);
#pragma GCC unroll 8
    for (int t = 0; t < kV; ++t) o[t] = _mm512_fmadd_ps(pj, simd::load16(vr + 16 * t), o[t]);
  }
  for (int t = 0; t < kV; ++t) _mm512_storeu_ps(r.acc + 16 * t, o[t]);
}


// ---- AVX2 + FMA + F16C: the same kernels on two 8-lane halves ------------------------------------
// Lanes 0..7 of every 16-lane AVX-512 vector are the first half, lanes 8..15 the second; each lane
// runs the operations it runs above in the same order (exp8 carries exp16's bits), and the decode
// dots' and sums' reductions are the trees of sum16 and of _mm512_reduce_add_ps / _max_ps, so the
// results are the AVX-512 ones bit for bit.
namespace v2 {

// sᵀ[j] for keys [j, j + NJ): NJ keys × 2 halves of FMA accumulators (K as a broadcast).
template <int D, int NJ>
FERRUM_AVX2_INLINE void scores_nj(const float* qt, const float* kb, float* s) {
  __m256 a0[NJ], a1[NJ];
#pragma GCC unroll 8
  for (int j = 0; j < NJ; ++j) a0[j] = a1[j] = _mm256_setzero_ps();
  for (int d = 0; d < D; ++d) {
    const __m256 q0 = _mm256_load_ps(qt + 16 * d), q1 = _mm256_load_ps(qt + 16 * d + 8);
#pragma GCC unroll 8
    for (int j = 0; j < NJ; ++j) {
      const __m256 kj = _mm256_broadcast_ss(kb + j * D + d);
      a0[j] = _mm256_fmadd_ps(q0, kj, a0[j]);
      a1[j] = _mm256_fmadd_ps(q1, kj, a1[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NJ; ++j) {
    _mm256_store_ps(s + 16 * j, a0[j]);
    _mm256_store_ps(s + 16 * j + 8, a1[j]);
  }
}

template <int D>
FERRUM_AVX2 void scores(const float* qt, const float* kf, uint64_t nk, float* s) {
  uint64_t j = 0;
  for (; j + 6 <= nk; j += 6) scores_nj<D, 6>(qt, kf + j * D, s + 16 * j);
  switch (nk - j) {
    case 5: scores_nj<D, 5>(qt, kf + j * D, s + 16 * j); break;
    case 4: scores_nj<D, 4>(qt, kf + j * D, s + 16 * j); break;
    case 3: scores_nj<D, 3>(qt, kf + j * D, s + 16 * j); break;
    case 2: scores_nj<D, 2>(qt, kf + j * D, s + 16 * j); break;
    case 1: scores_nj<D, 1>(qt, kf + j * D, s + 16 * j); break;
    default: break;
  }
}

// accᵀ[d] for d in [d0, d0 + W): accᵀ[d]·α + Σ_{j < nk} p[j] · V[j][d] (V as a broadcast).
template <int D, int W>
FERRUM_AVX2_INLINE void values_w(const float* p, const float* vf, uint64_t nk, __m256 alpha0, __m256 alpha1, float* acc,
                                 int d0) {
  __m256 a0[W], a1[W];
#pragma GCC unroll 8
  for (int d = 0; d < W; ++d) {
    a0[d] = _mm256_mul_ps(_mm256_load_ps(acc + 16 * (d0 + d)), alpha0);
    a1[d] = _mm256_mul_ps(_mm256_load_ps(acc + 16 * (d0 + d) + 8), alpha1);
  }
  for (uint64_t j = 0; j < nk; ++j) {
    const __m256 p0 = _mm256_load_ps(p + 16 * j), p1 = _mm256_load_ps(p + 16 * j + 8);
    const float* vr = vf + j * D + d0;
#pragma GCC unroll 8
    for (int d = 0; d < W; ++d) {
      const __m256 vd = _mm256_broadcast_ss(vr + d);
      a0[d] = _mm256_fmadd_ps(p0, vd, a0[d]);
      a1[d] = _mm256_fmadd_ps(p1, vd, a1[d]);
    }
  }
#pragma GCC unroll 8
  for (int d = 0; d < W; ++d) {
    _mm256_store_ps(acc + 16 * (d0 + d), a0[d]);
    _mm256_store_ps(acc + 16 * (d0 + d) + 8, a1[d]);
  }
}

template <int D>
FERRUM_AVX2 void values(const float* p, const float* vf, uint64_t nk, __m256 alpha0, __m256 alpha1, float* acc) {
  constexpr int kW = 6, kRest = D % kW;  // 6 dimensions × 2 halves: 12 accumulators
  for (int d0 = 0; d0 + kW <= D; d0 += kW) values_w<D, kW>(p, vf, nk, alpha0, alpha1, acc, d0);
  if constexpr (kRest > 0) values_w<D, kRest>(p, vf, nk, alpha0, alpha1, acc, D - kRest);
}

// Visible-lane mask of key index jj for the lanes [lo, hi): jj >= lo and jj < hi.
FERRUM_AVX2_INLINE __m256 visible(__m256i jj, __m256i lo, __m256i hi) {
  return _mm256_castsi256_ps(_mm256_andnot_si256(_mm256_cmpgt_epi32(lo, jj), _mm256_cmpgt_epi32(hi, jj)));
}

template <int D>
FERRUM_AVX2 void block_d(const Rows& r, const float* kf, const float* vf, uint64_t nk, uint64_t j0, float sigma,
                         float* s) {
  scores<D>(r.qt, kf, nk, s);
  const __m256i lo0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(r.lo));
  const __m256i lo1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(r.lo + 8));
  const __m256i hi0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(r.hi));
  const __m256i hi1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(r.hi + 8));
  const __m256 sg = _mm256_set1_ps(sigma), ninf = _mm256_set1_ps(-kInf), zero = _mm256_setzero_ps();
  __m256 bmax0 = ninf, bmax1 = ninf;
  for (uint64_t j = 0; j < nk; ++j) {
    const __m256i jj = _mm256_set1_epi32(static_cast<int32_t>(j0 + j));
    const __m256 v0 = _mm256_blendv_ps(ninf, _mm256_mul_ps(sg, _mm256_load_ps(s + 16 * j)), visible(jj, lo0, hi0));
    const __m256 v1 = _mm256_blendv_ps(ninf, _mm256_mul_ps(sg, _mm256_load_ps(s + 16 * j + 8)), visible(jj, lo1, hi1));
    _mm256_store_ps(s + 16 * j, v0);
    _mm256_store_ps(s + 16 * j + 8, v1);
    bmax0 = _mm256_max_ps(v0, bmax0);  // a NaN score is skipped here and propagates through p
    bmax1 = _mm256_max_ps(v1, bmax1);
  }
  __m256 alpha[2], m_use[2];
  for (int h = 0; h < 2; ++h) {
    const __m256 m = _mm256_load_ps(r.m + 8 * h);
    const __m256 m_new = _mm256_max_ps(h ? bmax1 : bmax0, m);
    alpha[h] = _mm256_blendv_ps(simd::exp8(_mm256_sub_ps(m, m_new)), zero, _mm256_cmp_ps(m, ninf, _CMP_EQ_OQ));
    m_use[h] = _mm256_blendv_ps(m_new, zero, _mm256_cmp_ps(m_new, ninf, _CMP_EQ_OQ));
    _mm256_store_ps(r.m + 8 * h, m_new);
  }
  __m256 sum0 = zero, sum1 = zero;
  for (uint64_t j = 0; j < nk; ++j) {
    const __m256 p0 = simd::exp8(_mm256_sub_ps(_mm256_load_ps(s + 16 * j), m_use[0]));
    const __m256 p1 = simd::exp8(_mm256_sub_ps(_mm256_load_ps(s + 16 * j + 8), m_use[1]));
    _mm256_store_ps(s + 16 * j, p0);
    _mm256_store_ps(s + 16 * j + 8, p1);
    sum0 = _mm256_add_ps(sum0, p0);
    sum1 = _mm256_add_ps(sum1, p1);
  }
  _mm256_store_ps(r.l, _mm256_add_ps(_mm256_mul_ps(_mm256_load_ps(r.l), alpha[0]), sum0));
  _mm256_store_ps(r.l + 8, _mm256_add_ps(_mm256_mul_ps(_mm256_load_ps(r.l + 8), alpha[1]), sum1));
  values<D>(s, vf, nk, alpha[0], alpha[1], r.acc);
}


// ---- decode ----
template <class E>
FERRUM_AVX2_INLINE __m256 load8(const E* p) {
  if constexpr (std::is_same_v<E, float>) {
    return _mm256_loadu_ps(p);
  } else if constexpr (std::is_same_v<E, f16>) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
}

// Eight keys' dot halves summed (w[k][i] = lane i + lane i + 8 of key k's 16-lane FMA sums) -> one
// vector of the eight dots, key k in lane k: sum16's tree from its second step on.
FERRUM_AVX2_INLINE __m256 sum8(const __m256* w) {
  __m256 u[4];  // u[k/2] = [w_k lanes i + i+4 (4), w_{k+1} the same (4)]
  for (int k = 0; k < 4; ++k)
    u[k] = _mm256_add_ps(_mm256_permute2f128_ps(w[2 * k], w[2 * k + 1], 0x20),
                         _mm256_permute2f128_ps(w[2 * k], w[2 * k + 1], 0x31));
  __m256 t[2];  // t[0] = [t0 (2), t2 (2) | t1 (2), t3 (2)], t_k[i] = u_k[i] + u_k[i + 2]
  for (int k = 0; k < 2; ++k) {
    const __m256d a = _mm256_castps_pd(u[2 * k]), b = _mm256_castps_pd(u[2 * k + 1]);
    t[k] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(a, b)), _mm256_castpd_ps(_mm256_unpackhi_pd(a, b)));
  }
  // [f0, f2, f4, f6 | f1, f3, f5, f7], f_k = t_k[0] + t_k[1]; then keys in order
  const __m256 f = _mm256_add_ps(_mm256_shuffle_ps(t[0], t[1], 0x88), _mm256_shuffle_ps(t[0], t[1], 0xDD));
  return _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// _mm512_reduce_add_ps / _mm512_reduce_max_ps of the 16-lane vector [a | b] (GCC's tree).
FERRUM_AVX2_INLINE float reduce_add16(__m256 a, __m256 b) {
  const __m256 t3 = _mm256_add_ps(b, a);
  const __m128 t6 = _mm_add_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
  const __m128 t8 = _mm_add_ps(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm_cvtss_f32(t8) + _mm_cvtss_f32(_mm_shuffle_ps(t8, t8, 1));
}
FERRUM_AVX2_INLINE float reduce_max16(__m256 a, __m256 b) {
  const __m256 t3 = _mm256_max_ps(b, a);
  const __m128 t6 = _mm_max_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
  const __m128 t8 = _mm_max_ps(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm_cvtss_f32(_mm_max_ps(t8, _mm_shuffle_ps(t8, t8, _MM_SHUFFLE(0, 1, 0, 1))));
}

alignas(64) constexpr float kZeroRow[128] = {};

template <int D, class E, class KRow, class VRow>
FERRUM_AVX2 void decode_block_d(const DecodeRow& r, KRow krow, VRow vrow, uint64_t nk, uint64_t j0, float sigma,
                                float* s) {
  constexpr int kV = D / 16;
  const __m256 ninf = _mm256_set1_ps(-kInf), sg = _mm256_set1_ps(sigma);
  const __m256i lo = _mm256_set1_epi32(r.lo), hi = _mm256_set1_epi32(r.hi);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 bmax0 = ninf, bmax1 = ninf;
  for (uint64_t c = 0; c < nk; c += 16) {
    const int n = static_cast<int>(nk - c < 16 ? nk - c : 16);
    __m256 w[16];
    for (int j4 = 0; j4 < 16; j4 += 4) {
      if (j4 >= n) {
        for (int u = 0; u < 4; ++u) w[j4 + u] = _mm256_setzero_ps();
        continue;
      }
      const E* kr[4];
      for (int u = 0; u < 4; ++u)  // keys past nk: a zero row (their lanes are masked below)
        kr[u] = j4 + u < n ? krow(c + j4 + u) : reinterpret_cast<const E*>(kZeroRow);
      __m256 a0[4], a1[4];
      for (int u = 0; u < 4; ++u) a0[u] = a1[u] = _mm256_setzero_ps();
#pragma GCC unroll 8
      for (int t = 0; t < kV; ++t) {
        const __m256 q0 = _mm256_loadu_ps(r.q + 16 * t), q1 = _mm256_loadu_ps(r.q + 16 * t + 8);
#pragma GCC unroll 4
        for (int u = 0; u < 4; ++u) {
          a0[u] = _mm256_fmadd_ps(q0, load8(kr[u] + 16 * t), a0[u]);
          a1[u] = _mm256_fmadd_ps(q1, load8(kr[u] + 16 * t + 8), a1[u]);
        }
      }
      for (int u = 0; u < 4; ++u) w[j4 + u] = j4 + u < n ? _mm256_add_ps(a0[u], a1[u]) : _mm256_setzero_ps();
    }
    const __m256i jj0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(j0 + c)), lane);
    const __m256i jj1 = _mm256_add_epi32(jj0, _mm256_set1_epi32(8));
    const __m256i nn = _mm256_set1_epi32(static_cast<int32_t>(j0 + c) + n);  // lanes past nk: masked
    const __m256 vis0 = _mm256_and_ps(visible(jj0, lo, hi), _mm256_castsi256_ps(_mm256_cmpgt_epi32(nn, jj0)));
    const __m256 vis1 = _mm256_and_ps(visible(jj1, lo, hi), _mm256_castsi256_ps(_mm256_cmpgt_epi32(nn, jj1)));
    const __m256 v0 = _mm256_blendv_ps(ninf, _mm256_mul_ps(sg, sum8(w)), vis0);
    const __m256 v1 = _mm256_blendv_ps(ninf, _mm256_mul_ps(sg, sum8(w + 8)), vis1);
    _mm256_store_ps(s + c, v0);
    _mm256_store_ps(s + c + 8, v1);
    bmax0 = _mm256_max_ps(v0, bmax0);
    bmax1 = _mm256_max_ps(v1, bmax1);
  }
  const float m = *r.m, m_new = std::max(m, reduce_max16(bmax0, bmax1));
  const float alpha = m == -kInf ? 0.0f : _mm256_cvtss_f32(simd::exp8(_mm256_set1_ps(m - m_new)));
  const __m256 mu = _mm256_set1_ps(m_new == -kInf ? 0.0f : m_new);
  __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
  for (uint64_t c = 0; c < nk; c += 16) {
    const __m256 p0 = simd::exp8(_mm256_sub_ps(_mm256_load_ps(s + c), mu));
    const __m256 p1 = simd::exp8(_mm256_sub_ps(_mm256_load_ps(s + c + 8), mu));
    _mm256_store_ps(s + c, p0);
    _mm256_store_ps(s + c + 8, p1);
    sum0 = _mm256_add_ps(sum0, p0);
    sum1 = _mm256_add_ps(sum1, p1);
  }
  *r.l = *r.l * alpha + reduce_add16(sum0, sum1);
  *r.m = m_new;
  const __m256 av = _mm256_set1_ps(alpha);
  constexpr int kO = D / 8 < 8 ? D / 8 : 8;  // 8 accumulators (64 dimensions) per pass over the keys
  for (int d0 = 0; d0 < D; d0 += 8 * kO) {
    __m256 o[kO];
    for (int t = 0; t < kO; ++t) o[t] = _mm256_mul_ps(_mm256_loadu_ps(r.acc + d0 + 8 * t), av);
    for (uint64_t j = 0; j < nk; ++j) {
      const __m256 pj = _mm256_broadcast_ss(s + j);
      const E* vr = vrow(j) + d0;
#pragma GCC unroll 8
      for (int t = 0; t < kO; ++t) o[t] = _mm256_fmadd_ps(pj, load8(vr + 8 * t), o[t]);
    }
    for (int t = 0; t < kO; ++t) _mm256_storeu_ps(r.acc + d0 + 8 * t, o[t]);
  }
}

}  // namespace v2
}  // namespace

namespace {
Isa best_isa() {
  static const Isa v = simd::has_avx512() ? Isa::avx512 : simd::has_avx2() ? Isa::avx2 : Isa::none;
  return v;
}
std::atomic<int> g_forced{-1};  // force_isa: the level asked for (−1: none asked)
}  // namespace

Isa isa() {
  const int f = g_forced.load(std::memory_order_relaxed);
  const Isa b = best_isa();
  return f < 0 ? b : static_cast<Isa>(std::min(f, static_cast<int>(b)));
}
void force_isa(Isa want) { g_forced.store(static_cast<int>(want), std::memory_order_relaxed); }

bool available(uint64_t head_dim) { return isa() != Isa::none && (head_dim == 64 || head_dim == 128); }

template <class E>
void decode_block(uint64_t head_dim, const DecodeRow& r, const E* kb, const E* vb, uint64_t nk, uint64_t j0,
                  float sigma, float* s) {
  if (isa() == Isa::avx512) {
    if (head_dim == 64) decode_block_d<64, E>(r, ContigRows<E, 64>{kb}, ContigRows<E, 64>{vb}, nk, j0, sigma, s);
    else decode_block_d<128, E>(r, ContigRows<E, 128>{kb}, ContigRows<E, 128>{vb}, nk, j0, sigma, s);
  } else {
    if (head_dim == 64) v2::decode_block_d<64, E>(r, ContigRows<E, 64>{kb}, ContigRows<E, 64>{vb}, nk, j0, sigma, s);
    else v2::decode_block_d<128, E>(r, ContigRows<E, 128>{kb}, ContigRows<E, 128>{vb}, nk, j0, sigma, s);
  }
}
template <class E>
void decode_block_rows(uint64_t head_dim, const DecodeRow& r, const E* const* krows, const E* const* vrows,
                       uint64_t nk, uint64_t j0, float sigma, float* s) {
  if (isa() == Isa::avx512) {
    if (head_dim == 64) decode_block_d<64, E>(r, PtrRows<E>{krows}, PtrRows<E>{vrows}, nk, j0, sigma, s);
    else decode_block_d<128, E>(r, PtrRows<E>{krows}, PtrRows<E>{vrows}, nk, j0, sigma, s);
  } else {
    if (head_dim == 64) v2::decode_block_d<64, E>(r, PtrRows<E>{krows}, PtrRows<E>{vrows}, nk, j0, sigma, s);
    else v2::decode_block_d<128, E>(r, PtrRows<E>{krows}, PtrRows<E>{vrows}, nk, j0, sigma, s);
  }
}

void block(uint64_t head_dim, const Rows& r, const float* kf, const float* vf, uint64_t nk, uint64_t j0, float sigma,
           float* s) {
  if (isa() == Isa::avx512) {
    if (head_dim == 64) block_d<64>(r, kf, vf, nk, j0, sigma, s);
    else block_d<128>(r, kf, vf, nk, j0, sigma, s);
  } else {
    if (head_dim == 64) v2::block_d<64>(r, kf, vf, nk, j0, sigma, s);
    else v2::block_d<128>(r, kf, vf, nk, j0, sigma, s);
  }
}
#else
Isa isa() { return Isa::none; }
void force_isa(Isa) {}
bool available(uint64_t) { return false; }
void block(uint64_t, const Rows&, const float*, const float*, uint64_t, uint64_t, float, float*) {}
template <class E>
void decode_block(uint64_t, const DecodeRow&, const E*, const E*, uint64_t, uint64_t, float, float*) {}
template <class E>
void decode_block_rows(uint64_t, const DecodeRow&, const E* const*, const E* const*, uint64_t, uint64_t, float, float*) {}
#endif

template void decode_block<float>(uint64_t, const DecodeRow&, const float*, const float*, uint64_t, uint64_t, float, float*);
template void decode_block<f16>(uint64_t, const DecodeRow&, const f16*, const f16*, uint64_t, uint64_t, float, float*);
template void decode_block<bf16>(uint64_t, const DecodeRow&, const bf16*, const bf16*, uint64_t, uint64_t, float, float*);
template void decode_block_rows<float>(uint64_t, const DecodeRow&, const float* const*, const float* const*, uint64_t,
                                       uint64_t, float, float*);
template void decode_block_rows<f16>(uint64_t, const DecodeRow&, const f16* const*, const f16* const*, uint64_t,
                                     uint64_t, float, float*);
template void decode_block_rows<bf16>(uint64_t, const DecodeRow&, const bf16* const*, const bf16* const*, uint64_t,
                                      uint64_t, float, float*);

}  // namespace ferrum::cpu::attn_tiles
