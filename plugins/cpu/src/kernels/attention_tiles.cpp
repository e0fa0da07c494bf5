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

#include <cstring>

#include "simd.hpp"

namespace ferrum::cpu::attn_tiles {

#if FERRUM_SIMD_X86
namespace {

constexpr float kInf = __builtin_inff();

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

}  // namespace

bool available(uint64_t head_dim) { return simd::has_avx512() && (head_dim == 64 || head_dim == 128); }

void block(uint64_t head_dim, const Rows& r, const float* kf, const float* vf, uint64_t nk, uint64_t j0, float sigma,
           float* s) {
  if (head_dim == 64) block_d<64>(r, kf, vf, nk, j0, sigma, s);
  else block_d<128>(r, kf, vf, nk, j0, sigma, s);
}
#else
bool available(uint64_t) { return false; }
void block(uint64_t, const Rows&, const float*, const float*, uint64_t, uint64_t, float, float*) {}
#endif

}  // namespace ferrum::cpu::attn_tiles
