// ferrum CPU plugin — flash-attention prefill on AVX-512 with 16 query rows per vector (see
// attention_tiles.hpp).
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
#include <cstring>

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
template <class E, int D>
struct ContigRows {
  const E* base;
  FERRUM_AVX512_INLINE const E* operator()(uint64_t j) const { return base + j * D; }
};
template <class E>
struct PtrRows {
  const E* const* rows;
  FERRUM_AVX512_INLINE const E* operator()(uint64_t j) const { return rows[j]; }
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

}  // namespace

bool available(uint64_t head_dim) { return simd::has_avx512() && (head_dim == 64 || head_dim == 128); }

template <class E>
void decode_block(uint64_t head_dim, const DecodeRow& r, const E* kb, const E* vb, uint64_t nk, uint64_t j0,
                  float sigma, float* s) {
  if (head_dim == 64) decode_block_d<64, E>(r, ContigRows<E, 64>{kb}, ContigRows<E, 64>{vb}, nk, j0, sigma, s);
  else decode_block_d<128, E>(r, ContigRows<E, 128>{kb}, ContigRows<E, 128>{vb}, nk, j0, sigma, s);
}
template <class E>
void decode_block_rows(uint64_t head_dim, const DecodeRow& r, const E* const* krows, const E* const* vrows,
                       uint64_t nk, uint64_t j0, float sigma, float* s) {
  if (head_dim == 64) decode_block_d<64, E>(r, PtrRows<E>{krows}, PtrRows<E>{vrows}, nk, j0, sigma, s);
  else decode_block_d<128, E>(r, PtrRows<E>{krows}, PtrRows<E>{vrows}, nk, j0, sigma, s);
}

void block(uint64_t head_dim, const Rows& r, const float* kf, const float* vf, uint64_t nk, uint64_t j0, float sigma,
           float* s) {
  if (head_dim == 64) block_d<64>(r, kf, vf, nk, j0, sigma, s);
  else block_d<128>(r, kf, vf, nk, j0, sigma, s);
}
#else
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
