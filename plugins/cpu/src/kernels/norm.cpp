// ferrum CPU plugin — normalisation kernels (see norm.hpp).
#include "norm.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "parallel.hpp"
#include "simd.hpp"

namespace ferrum::cpu {
namespace {

// Rows per parallel chunk: about 64K elements of work.
uint64_t row_grain(uint64_t dim) { return std::max<uint64_t>(1, (uint64_t{1} << 16) / std::max<uint64_t>(dim, 1)); }

template <class T>
double sum_squares(const T* x, uint64_t dim) {
  double lanes[4] = {0, 0, 0, 0};
  uint64_t i = 0;
  for (; i + 4 <= dim; i += 4) {
    for (int l = 0; l < 4; ++l) {
      const double v = to_float(x[i + l]);
      lanes[l] += v * v;
    }
  }
  for (; i < dim; ++i) {
    const double v = to_float(x[i]);
    lanes[0] += v * v;
  }
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

template <class T>
void rms_row(const T* x, const T* w, float eps, T* out, uint64_t dim) {
  const double ms = sum_squares(x, dim) / static_cast<double>(dim);
  const float inv = static_cast<float>(1.0 / std::sqrt(ms + static_cast<double>(eps)));
  for (uint64_t i = 0; i < dim; ++i) out[i] = from_float<T>(to_float(x[i]) * inv * to_float(w[i]));
}

// Outputs at least this large use non-temporal stores (see elementwise.cpp).
constexpr uint64_t kStreamBytes = uint64_t{64} << 20;

#if FERRUM_SIMD_X86
using namespace simd;

// The value a T store of v reads back as.
template <class T>
FERRUM_AVX512_INLINE __m512 round_trip(__m512 v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else if constexpr (std::is_same_v<T, f16>) {
    return _mm512_cvtph_ps(to_half_bits<T>(v));
  } else {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(to_half_bits<T>(v)), 16));
  }
}

FERRUM_AVX512_INLINE double hsum_pd(__m512d a, __m512d b, __m512d c, __m512d d) {
  return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a, b), _mm512_add_pd(c, d)));
}

template <bool kSquares>
FERRUM_AVX512_INLINE void add_pd(__m512 v, __m512d& lo, __m512d& hi) {
  if constexpr (kSquares)
    sumsq_pd(v, lo, hi);
  else
    sum_pd(v, lo, hi);
}

// Σ x[i] (kSquares: Σ x[i]²) over one row in f64: four accumulators, two 16-lane loads per step.
template <bool kSquares, class T>
FERRUM_AVX512_INLINE double row_sum_avx512(const T* x, uint64_t dim) {
  __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
  uint64_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    prefetch_ahead(x + i);
    prefetch_ahead(x + i + 16);
    add_pd<kSquares>(load16(x + i), a0, a1);
    add_pd<kSquares>(load16(x + i + 16), a2, a3);
  }
  for (; i < dim; i += 16) add_pd<kSquares>(load16(x + i, tail_mask(dim - i)), a0, a1);
  return hsum_pd(a0, a1, a2, a3);
}

template <class T>
FERRUM_AVX512 double sum_squares_avx512(const T* x, uint64_t dim) {
  return row_sum_avx512<true>(x, dim);
}

// out = x · inv · w over one row.
template <bool S, class T>
FERRUM_AVX512 void scale_row_avx512(const T* x, const T* w, float inv_f, T* out, uint64_t dim) {
  const __m512 inv = _mm512_set1_ps(inv_f);
  uint64_t i = 0;
  for (; i + 16 <= dim; i += 16) put16<S>(out + i, _mm512_mul_ps(_mm512_mul_ps(load16(x + i), inv), load16(w + i)));
  if (i < dim) {
    const __mmask16 m = tail_mask(dim - i);
    store16(out + i, _mm512_mul_ps(_mm512_mul_ps(load16(x + i, m), inv), load16(w + i, m)), m);
  }
}

template <bool S, class T>
FERRUM_AVX512 void rms_rows_avx512(const T* x, const T* w, float eps, T* out, uint64_t rows, uint64_t dim) {
  for (uint64_t r = 0; r < rows; ++r) {
    const double ms = sum_squares_avx512(x + r * dim, dim) / static_cast<double>(dim);
    const float inv = static_cast<float>(1.0 / std::sqrt(ms + static_cast<double>(eps)));
    scale_row_avx512<S>(x + r * dim, w, inv, out + r * dim, dim);
  }
  if constexpr (S) _mm_sfence();
}

template <bool S, class T>
FERRUM_AVX512 void fused_add_rms_rows_avx512(T* residual, const T* x, const T* w, float eps, T* out, uint64_t rows,
                                             uint64_t dim) {
  for (uint64_t r = 0; r < rows; ++r) {
    T* res = residual + r * dim;
    const T* xr = x + r * dim;
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    uint64_t i = 0;
    for (; i + 16 <= dim; i += 16) {
      const __m512 v = _mm512_add_ps(load16(res + i), load16(xr + i));
      store16(res + i, v);
      sumsq_pd(round_trip<T>(v), (i & 16) ? a2 : a0, (i & 16) ? a3 : a1);
    }
    if (i < dim) {
      const __mmask16 m = tail_mask(dim - i);
      const __m512 v = _mm512_add_ps(load16(res + i, m), load16(xr + i, m));
      store16(res + i, v, m);
      sumsq_pd(_mm512_maskz_mov_ps(m, round_trip<T>(v)), a0, a1);
    }
    const double ms = hsum_pd(a0, a1, a2, a3) / static_cast<double>(dim);
    const float inv = static_cast<float>(1.0 / std::sqrt(ms + static_cast<double>(eps)));
    scale_row_avx512<S>(res, w, inv, out + r * dim, dim);  // out may alias x: x is no longer read
  }
  if constexpr (S) _mm_sfence();
}

template <bool S, class T>
FERRUM_AVX512 void layer_norm_rows_avx512(const T* x, const T* gamma, const T* beta, float eps, T* out,
                                          uint64_t rows, uint64_t dim) {
  for (uint64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    const double mean = row_sum_avx512<false>(xr, dim) / static_cast<double>(dim);
    const __m512d mpd = _mm512_set1_pd(mean);
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    uint64_t i = 0;
    for (; i < dim; i += 16) {
      const __mmask16 m = tail_mask(dim - i);
      const __m512 v = load16(xr + i, m);
      __m512d lo = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), mpd);
      __m512d hi = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))), mpd);
      lo = _mm512_maskz_mov_pd(static_cast<__mmask8>(m & 0xFF), lo);
      hi = _mm512_maskz_mov_pd(static_cast<__mmask8>(m >> 8), hi);
      if (i & 16) {
        a2 = _mm512_fmadd_pd(lo, lo, a2);
        a3 = _mm512_fmadd_pd(hi, hi, a3);
      } else {
        a0 = _mm512_fmadd_pd(lo, lo, a0);
        a1 = _mm512_fmadd_pd(hi, hi, a1);
      }
    }
    const double var = hsum_pd(a0, a1, a2, a3) / static_cast<double>(dim);
    const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps))));
    const __m512 mu = _mm512_set1_ps(static_cast<float>(mean));
    T* o = out + r * dim;
    for (i = 0; i + 16 <= dim; i += 16) {
      const __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(load16(xr + i), mu), inv), load16(gamma + i));
      put16<S>(o + i, _mm512_add_ps(y, load16(beta + i)));
    }
    if (i < dim) {
      const __mmask16 m = tail_mask(dim - i);
      const __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(load16(xr + i, m), mu), inv), load16(gamma + i, m));
      store16(o + i, _mm512_add_ps(y, load16(beta + i, m)), m);
    }
  }
  if constexpr (S) _mm_sfence();
}
#endif

}  // namespace

template <class T>
void rms_norm(const T* x, const T* w, float eps, T* out, uint64_t tokens, uint64_t dim) {
  if (tokens == 0 || dim == 0) return;
#if FERRUM_SIMD_X86
  if (simd::has_avx512()) {
    const bool stream = tokens * dim * sizeof(T) >= kStreamBytes && out != x;
    parallel_for(tokens, row_grain(dim), [&](uint64_t r0, uint64_t r1) {
      if (stream) rms_rows_avx512<true>(x + r0 * dim, w, eps, out + r0 * dim, r1 - r0, dim);
      else rms_rows_avx512<false>(x + r0 * dim, w, eps, out + r0 * dim, r1 - r0, dim);
    });
    return;
  }
#endif
  parallel_for(tokens, row_grain(dim), [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r) rms_row(x + r * dim, w, eps, out + r * dim, dim);
  });
}

template <class T>
void fused_add_rms_norm(T* residual, const T* x, const T* w, float eps, T* out, uint64_t tokens, uint64_t dim) {
  if (tokens == 0 || dim == 0) return;
#if FERRUM_SIMD_X86
  if (simd::has_avx512()) {
    const bool stream = tokens * dim * sizeof(T) >= kStreamBytes && out != x;
    parallel_for(tokens, row_grain(dim), [&](uint64_t r0, uint64_t r1) {
      const uint64_t o = r0 * dim;
      if (stream) fused_add_rms_rows_avx512<true>(residual + o, x + o, w, eps, out + o, r1 - r0, dim);
      else fused_add_rms_rows_avx512<false>(residual + o, x + o, w, eps, out + o, r1 - r0, dim);
    });
    return;
  }
#endif
  parallel_for(tokens, row_grain(dim), [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r) {
      T* res = residual + r * dim;
      const T* xr = x + r * dim;
      for (uint64_t i = 0; i < dim; ++i) res[i] = from_float<T>(to_float(res[i]) + to_float(xr[i]));
      rms_row<T>(res, w, eps, out + r * dim, dim);  // out may alias x: x is no longer read
    }
  });
}

template <class T>
void layer_norm(const T* x, const T* gamma, const T* beta, float eps, T* out, uint64_t tokens, uint64_t dim) {
  if (tokens == 0 || dim == 0) return;
#if FERRUM_SIMD_X86
  if (simd::has_avx512()) {
    const bool stream = tokens * dim * sizeof(T) >= kStreamBytes && out != x;
    parallel_for(tokens, row_grain(dim), [&](uint64_t r0, uint64_t r1) {
      const uint64_t o = r0 * dim;
      if (stream) layer_norm_rows_avx512<true>(x + o, gamma, beta, eps, out + o, r1 - r0, dim);
      else layer_norm_rows_avx512<false>(x + o, gamma, beta, eps, out + o, r1 - r0, dim);
    });
    return;
  }
#endif
  parallel_for(tokens, row_grain(dim), [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * dim;
      double sum = 0;
      for (uint64_t i = 0; i < dim; ++i) sum += to_float(xr[i]);
      const double mean = sum / static_cast<double>(dim);
      double ssd = 0;
      for (uint64_t i = 0; i < dim; ++i) {
        const double d = to_float(xr[i]) - mean;
        ssd += d * d;
      }
      const double var = ssd / static_cast<double>(dim);
      const float inv = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)));
      const float mu = static_cast<float>(mean);
      T* o = out + r * dim;
      for (uint64_t i = 0; i < dim; ++i) {
        o[i] = from_float<T>((to_float(xr[i]) - mu) * inv * to_float(gamma[i]) + to_float(beta[i]));
      }
    }
  });
}

#define FERRUM_INSTANTIATE_NORM(T)                                                                  \
  template void rms_norm<T>(const T*, const T*, float, T*, uint64_t, uint64_t);                     \
  template void fused_add_rms_norm<T>(T*, const T*, const T*, float, T*, uint64_t, uint64_t);       \
  template void layer_norm<T>(const T*, const T*, const T*, float, T*, uint64_t, uint64_t);
FERRUM_INSTANTIATE_NORM(float)
FERRUM_INSTANTIATE_NORM(f16)
FERRUM_INSTANTIATE_NORM(bf16)
#undef FERRUM_INSTANTIATE_NORM

}  // namespace ferrum::cpu
