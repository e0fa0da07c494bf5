// ferrum CPU plugin — AVX-512 helpers shared by the element-wise, norm and RoPE kernels.
//
// Everything here is compiled with a function-level target attribute (FERRUM_AVX512), never with
// translation-unit flags, so no AVX-512 code can leak into the portable paths through ODR-merged
// inline functions. Callers check has_avx512() at run time before calling a FERRUM_AVX512 function.
//
// Conversions match ferrum/common/dtype.hpp exactly: f16 via vcvtph2ps / vcvtps2ph (RNE), bf16
// widening by a 16-bit shift and narrowing by integer round-to-nearest-even (NaN kept quiet), the
// same arithmetic as bf16_from_float (not vcvtneps2bf16, which flushes denormals).
// exp16 and erfc-based helpers are vector approximations (≤ ~2e-7 relative error over the f32
// range they are used on; see the comments at each).
#ifndef FERRUM_CPU_KERNELS_SIMD_HPP
#define FERRUM_CPU_KERNELS_SIMD_HPP

#include <cstdint>
#include <type_traits>

#include <ferrum/common/dtype.hpp>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define FERRUM_SIMD_X86 1
#define FERRUM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define FERRUM_AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c"), always_inline)) inline
// AVX2 + FMA + F16C (8-lane fallbacks for CPUs without AVX-512; callers check has_avx2() first).
#define FERRUM_AVX2 __attribute__((target("avx2,fma,f16c")))
#define FERRUM_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline
#endif

namespace ferrum::cpu::simd {

#if FERRUM_SIMD_X86
// F16C through cpuid: __builtin_cpu_supports("f16c") is GCC-only (clang 14 rejects it).
inline bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}

inline bool has_avx512() {
  static const bool v = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma") && has_f16c();
  }();
  return v;
}

// AVX2 + FMA + F16C (the FERRUM_AVX2 functions).
inline bool has_avx2() {
  static const bool v = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  }();
  return v;
}

inline __mmask16 tail_mask(uint64_t n) { return static_cast<__mmask16>((n >= 16) ? 0xFFFFu : ((1u << n) - 1u)); }

// 16 elements of T -> 16 f32 lanes.
template <class T>
FERRUM_AVX512_INLINE __m512 load16(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return _mm512_loadu_ps(p);
  } else if constexpr (std::is_same_v<T, f16>) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  } else {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }
}

// Masked load: lanes outside m read nothing and are +0.0.
template <class T>
FERRUM_AVX512_INLINE __m512 load16(const T* p, __mmask16 m) {
  if constexpr (std::is_same_v<T, float>) {
    return _mm512_maskz_loadu_ps(m, p);
  } else if constexpr (std::is_same_v<T, f16>) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  } else {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }
}

// f32 lanes -> 16 bf16 / f16 bit patterns (RNE, as from_float).
FERRUM_AVX512_INLINE __m256i to_bf16_bits(__m512 v) {
  const __m512i x = _mm512_castps_si512(v);
  const __m512i ax = _mm512_and_si512(x, _mm512_set1_epi32(0x7FFFFFFF));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(ax, _mm512_set1_epi32(0x7F800000));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(r);
}

template <class T>
FERRUM_AVX512_INLINE __m256i to_half_bits(__m512 v) {
  if constexpr (std::is_same_v<T, f16>) {
    return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  } else {
    return to_bf16_bits(v);
  }
}

template <class T>
FERRUM_AVX512_INLINE void store16(T* p, __m512 v) {
  if constexpr (std::is_same_v<T, float>) {
    _mm512_storeu_ps(p, v);
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_half_bits<T>(v));
  }
}

template <class T>
FERRUM_AVX512_INLINE void store16(T* p, __m512 v, __mmask16 m) {
  if constexpr (std::is_same_v<T, float>) {
    _mm512_mask_storeu_ps(p, m, v);
  } else {
    _mm256_mask_storeu_epi16(p, m, to_half_bits<T>(v));
  }
}

// Non-temporal store of 16 elements when p is aligned to the vector size, else a plain store.
// (Used only for outputs far larger than the last-level cache; the caller issues _mm_sfence.)
template <class T>
FERRUM_AVX512_INLINE void stream16(T* p, __m512 v) {
  if constexpr (std::is_same_v<T, float>) {
    if ((reinterpret_cast<uintptr_t>(p) & 63) == 0) {
      _mm512_stream_ps(p, v);
    } else {
      _mm512_storeu_ps(p, v);
    }
  } else {
    const __m256i h = to_half_bits<T>(v);
    if ((reinterpret_cast<uintptr_t>(p) & 31) == 0) {
      _mm256_stream_si256(reinterpret_cast<__m256i*>(p), h);
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
    }
  }
}

template <bool kStream, class T>
FERRUM_AVX512_INLINE void put16(T* p, __m512 v) {
  if constexpr (kStream) {
    stream16(p, v);
  } else {
    store16(p, v);
  }
}

// Software prefetch 4 KiB ahead of p: compute-heavy loops (erf, exp, RoPE) keep too few demand
// misses in flight to saturate DRAM on their own (one prefetch per 16 elements).
template <class T>
FERRUM_AVX512_INLINE void prefetch_ahead(const T* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + 4096, _MM_HINT_T0);
}

// e^x, ≤ ~1.5e-7 relative error for x in [−87, 88]; overflows to +inf, underflows through the
// denormals to +0, NaN in -> NaN out. Range reduction x = n·ln2 + r (two-part ln2), degree-7
// Taylor polynomial of e^r on |r| ≤ ln2/2 (truncation < 5e-9), then scalef by 2^n.
FERRUM_AVX512_INLINE __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(150.0f), _mm512_max_ps(_mm512_set1_ps(-150.0f), x));  // NaN passes
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// 1 + erf(z), accurate in the relative sense also for negative z (no cancellation):
//  |z| < 0.75: 1 + z·P(z²), P a degree-6 Chebyshev fit of erf(z)/z (error 3e-11);
//  else erfc(|z|) = e^{−z²} · w · H(1.5·w − 1), w = 1/|z|, H a degree-13 Chebyshev fit of
//  erfcx(1/w)/w on w ∈ [0, 4/3] (relative error 3e-8); e^{−z²} uses the exact residual of z²
//  (fma) so the large-|z| tail keeps ~2e-7 relative accuracy. Coefficients: fitted for ferrum
//  with mpmath.chebyfit (scratch script; docs/perf-notes.md "CPU AVX-512 kernels").
FERRUM_AVX512_INLINE __m512 one_plus_erf16(__m512 z) {
  const __m512 a = _mm512_abs_ps(z);
  // small branch
  const __m512 s = _mm512_mul_ps(z, z);
  __m512 p = _mm512_set1_ps(9.470461781593866e-05f);
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-0.0008356927920014206f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(0.00521678948992104f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-0.02686477180205234f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(0.11283778642917985f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-0.3761263844667974f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.128379167069327f));
  const __m512 small = _mm512_fmadd_ps(z, p, _mm512_set1_ps(1.0f));
  // large branch (|z| clamped to 10: erfc(10) ≈ 2e-45 is below the f32 range anyway)
  const __m512 ac = _mm512_min_ps(_mm512_max_ps(a, _mm512_set1_ps(0.75f)), _mm512_set1_ps(10.0f));
  const __m512 w = _mm512_div_ps(_mm512_set1_ps(1.0f), ac);
  const __m512 t = _mm512_fmsub_ps(w, _mm512_set1_ps(1.5f), _mm512_set1_ps(1.0f));
  __m512 h = _mm512_set1_ps(0.0002116457438472461f);
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(-0.00039081485012408567f));
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(-0.00022722825951574662f));
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(0.0009542273793929102f));
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(-0.0009149685782322148f));
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(0.0008782243173309404f));
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(-0.0006959198311989408f));
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(-0.0012597958160890908f));
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(0.006099559881180445f));
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(-0.013449070243448831f));
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(0.01776031409896773f));
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(0.0030855175105548678f));
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(-0.11422656307399504f));
  h = _mm512_fmadd_ps(h, t, _mm512_set1_ps(0.48237811697413496f));
  const __m512 q = _mm512_mul_ps(ac, ac);
  const __m512 qerr = _mm512_fmsub_ps(ac, ac, q);  // ac² = q + qerr exactly
  __m512 ec = _mm512_mul_ps(exp16(_mm512_sub_ps(_mm512_setzero_ps(), q)), _mm512_mul_ps(w, h));
  ec = _mm512_fnmadd_ps(ec, qerr, ec);  // · e^{−qerr} ≈ (1 − qerr)
  const __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GT_OQ);
  const __m512 large = _mm512_mask_sub_ps(ec, pos, _mm512_set1_ps(2.0f), ec);
  const __mmask16 is_small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.75f), _CMP_LT_OQ);
  // NaN z: neither branch mask is set for small -> large branch; propagate z itself.
  const __mmask16 nan = _mm512_cmp_ps_mask(z, z, _CMP_UNORD_Q);
  return _mm512_mask_mov_ps(_mm512_mask_mov_ps(large, is_small, small), nan, z);
}

// Σ lanes in f64 of a·a for 16 f32 lanes, added into two f64 accumulators.
FERRUM_AVX512_INLINE void sumsq_pd(__m512 v, __m512d& acc0, __m512d& acc1) {
  const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  acc0 = _mm512_fmadd_pd(lo, lo, acc0);
  acc1 = _mm512_fmadd_pd(hi, hi, acc1);
}

FERRUM_AVX512_INLINE void sum_pd(__m512 v, __m512d& acc0, __m512d& acc1) {
  acc0 = _mm512_add_pd(acc0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
  acc1 = _mm512_add_pd(acc1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}
// exp16 on 8 lanes (AVX2 + FMA): the same operations in the same order on each lane, and 2^n
// applied as two exact-or-once-rounded products p·2^⌊n/2⌋·2^(n−⌊n/2⌋) (each factor a normal f32 for
// |n| <= 216; p·2^⌊n/2⌋ is exact, the second product rounds once, as scalef does, denormals
// included), so every lane carries the bits exp16 gives it.
FERRUM_AVX2_INLINE __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(150.0f), _mm256_max_ps(_mm256_set1_ps(-150.0f), x));  // NaN passes
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);  // exact (n integral, |n| <= 216); NaN lanes: p is NaN
  const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
#else
inline bool has_avx512() { return false; }
inline bool has_avx2() { return false; }
#endif

}  // namespace ferrum::cpu::simd

#endif  // FERRUM_CPU_KERNELS_SIMD_HPP
