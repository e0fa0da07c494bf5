// ferrum CPU plugin — the vector forms of attention_math.hpp's dot_f32 / axpy_f32, chosen once at
// run time. Both give exactly the portable code's bits: the dot keeps its eight lanes (one AVX2
// register) and its pairwise lane sum, every step a multiply then an add (no FMA); the axpy is
// element-wise.
#include <cstdint>
#include <type_traits>

#include "attention_math.hpp"
#include "simd.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FERRUM_ATTN_X86 1
#endif

namespace ferrum::cpu {
namespace {

#if FERRUM_ATTN_X86
// The product passes through an empty asm statement so that the compiler cannot fuse it with
// the following add into an FMA (it would, for an AVX-512 target, under -ffp-contract=fast):
// the bits must stay those of a rounded multiply then a rounded add.
__attribute__((target("avx2"), always_inline)) inline __m256 opaque(__m256 x) {
  __asm__("" : "+v"(x));
  return x;
}
__attribute__((target("avx512f"), always_inline)) inline __m512 opaque(__m512 x) {
  __asm__("" : "+v"(x));
  return x;
}

// Eight / sixteen row values as f32 (exact widening of f16 / bf16).
#define FERRUM_ATTN_AVX2 __attribute__((target("avx2,f16c")))
#define FERRUM_ATTN_AVX2_INLINE __attribute__((target("avx2,f16c"), always_inline)) inline
#define FERRUM_ATTN_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,f16c")))
#define FERRUM_ATTN_AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,f16c"), always_inline)) inline
FERRUM_ATTN_AVX2_INLINE __m256 ld8(const float* p) { return _mm256_loadu_ps(p); }
FERRUM_ATTN_AVX2_INLINE __m256 ld8(const f16* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
FERRUM_ATTN_AVX2_INLINE __m256 ld8(const bf16* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
FERRUM_ATTN_AVX512_INLINE __m512 ld16(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
FERRUM_ATTN_AVX512_INLINE __m512 ld16(__mmask16 m, const f16* p) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
FERRUM_ATTN_AVX512_INLINE __m512 ld16(__mmask16 m, const bf16* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

template <class E>
FERRUM_ATTN_AVX2 float dot_avx2(const float* a, const E* b, uint64_t n) {
  __m256 lanes = _mm256_setzero_ps();
  uint64_t d = 0;
  for (; d + 8 <= n; d += 8) lanes = _mm256_add_ps(lanes, opaque(_mm256_mul_ps(_mm256_loadu_ps(a + d), ld8(b + d))));
  alignas(32) float l[8];
  _mm256_store_ps(l, lanes);
  float r = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
  for (; d < n; ++d) r += a[d] * to_float(b[d]);
  return r;
}

__attribute__((target("avx2"))) inline float lane_sum(__m256 v) {
  alignas(32) float l[8];
  _mm256_store_ps(l, v);
  return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
}
template <class E>
FERRUM_ATTN_AVX2 void dot4_avx2(const float* a, const E* b, uint64_t ldb, uint64_t n, float* out) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  const E *b0 = b, *b1 = b + ldb, *b2 = b + 2 * ldb, *b3 = b + 3 * ldb;
  uint64_t d = 0;
  for (; d + 8 <= n; d += 8) {
    const __m256 x = _mm256_loadu_ps(a + d);
    s0 = _mm256_add_ps(s0, opaque(_mm256_mul_ps(x, ld8(b0 + d))));
    s1 = _mm256_add_ps(s1, opaque(_mm256_mul_ps(x, ld8(b1 + d))));
    s2 = _mm256_add_ps(s2, opaque(_mm256_mul_ps(x, ld8(b2 + d))));
    s3 = _mm256_add_ps(s3, opaque(_mm256_mul_ps(x, ld8(b3 + d))));
  }
  float r[4] = {lane_sum(s0), lane_sum(s1), lane_sum(s2), lane_sum(s3)};
  const E* rows[4] = {b0, b1, b2, b3};
  for (int k = 0; k < 4; ++k) {
    for (uint64_t t = d; t < n; ++t) r[k] += a[t] * to_float(rows[k][t]);
    out[k] = r[k];
  }
}
FERRUM_ATTN_AVX512 void axpy_avx512(float* acc, float p, const float* v, uint64_t n) {
  const __m512 pv = _mm512_set1_ps(p);
  uint64_t d = 0;
  for (; d + 16 <= n; d += 16)
    _mm512_storeu_ps(acc + d, _mm512_add_ps(_mm512_loadu_ps(acc + d), opaque(_mm512_mul_ps(pv, _mm512_loadu_ps(v + d)))));
  if (d < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - d)) - 1u);
    _mm512_mask_storeu_ps(acc + d, m,
                          _mm512_add_ps(_mm512_maskz_loadu_ps(m, acc + d),
                                        opaque(_mm512_mul_ps(pv, _mm512_maskz_loadu_ps(m, v + d)))));
  }
}
// Eight 16-float columns of acc stay in registers while every key's row is added.
template <class E>
FERRUM_ATTN_AVX512 void axpy_rows_avx512(float* acc, const float* p, const E* v, uint64_t ldv, uint64_t nj,
                                         uint64_t n) {
  const __mmask16 all = 0xFFFF;
  uint64_t d = 0;
  for (; d + 128 <= n; d += 128) {
    __m512 c[8];
    for (int t = 0; t < 8; ++t) c[t] = _mm512_loadu_ps(acc + d + 16 * t);
    for (uint64_t j = 0; j < nj; ++j) {
      const __m512 pv = _mm512_set1_ps(p[j]);
      const E* vr = v + j * ldv + d;
      for (int t = 0; t < 8; ++t) c[t] = _mm512_add_ps(c[t], opaque(_mm512_mul_ps(pv, ld16(all, vr + 16 * t))));
    }
    for (int t = 0; t < 8; ++t) _mm512_storeu_ps(acc + d + 16 * t, c[t]);
  }
  for (; d < n; d += 16) {  // the rest, 16 at a time (masked tail)
    const __mmask16 m = n - d >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - d)) - 1u);
    __m512 c = _mm512_maskz_loadu_ps(m, acc + d);
    for (uint64_t j = 0; j < nj; ++j)
      c = _mm512_add_ps(c, opaque(_mm512_mul_ps(_mm512_set1_ps(p[j]), ld16(m, v + j * ldv + d))));
    _mm512_mask_storeu_ps(acc + d, m, c);
  }
}
#endif

template <class E>
void axpy_rows_portable(float* acc, const float* p, const E* v, uint64_t ldv, uint64_t nj, uint64_t n) {
  for (uint64_t j = 0; j < nj; ++j) axpy_f32_portable(acc, p[j], v + j * ldv, n);
}

template <class E>
void dot4_portable(const float* a, const E* b, uint64_t ldb, uint64_t n, float* out) {
  for (uint64_t r = 0; r < 4; ++r) out[r] = dot_f32_portable(a, b + r * ldb, n);
}

template <class E>
struct Choice {
  float (*dot)(const float*, const E*, uint64_t) = dot_f32_portable<E>;
  void (*dot4)(const float*, const E*, uint64_t, uint64_t, float*) = dot4_portable<E>;
  void (*axpy_rows)(float*, const float*, const E*, uint64_t, uint64_t, uint64_t) = axpy_rows_portable<E>;
  void (*axpy)(float*, float, const float*, uint64_t) = axpy_f32_portable<float>;
};

template <class E>
const Choice<E>& choice() {
  static const Choice<E> c = [] {
    Choice<E> r;
#if FERRUM_ATTN_X86
    __builtin_cpu_init();
    const bool f16c = simd::has_f16c();  // (cpuid: clang 14 has no __builtin_cpu_supports("f16c"))
    if (__builtin_cpu_supports("avx2") && f16c) {
      r.dot = dot_avx2<E>;
      r.dot4 = dot4_avx2<E>;
    }
    if (simd::has_avx512()) {
      if constexpr (std::is_same_v<E, float>) r.axpy = axpy_avx512;
      r.axpy_rows = axpy_rows_avx512<E>;
    }
#endif
    return r;
  }();
  return c;
}

}  // namespace

float dot_f32(const float* a, const float* b, uint64_t n) { return choice<float>().dot(a, b, n); }
float dot_f32(const float* a, const f16* b, uint64_t n) { return choice<f16>().dot(a, b, n); }
float dot_f32(const float* a, const bf16* b, uint64_t n) { return choice<bf16>().dot(a, b, n); }
void axpy_f32(float* acc, float p, const float* v, uint64_t n) { choice<float>().axpy(acc, p, v, n); }
void dot4_f32(const float* a, const float* b, uint64_t ldb, uint64_t n, float* out) {
  choice<float>().dot4(a, b, ldb, n, out);
}
void dot4_f32(const float* a, const f16* b, uint64_t ldb, uint64_t n, float* out) {
  choice<f16>().dot4(a, b, ldb, n, out);
}
void dot4_f32(const float* a, const bf16* b, uint64_t ldb, uint64_t n, float* out) {
  choice<bf16>().dot4(a, b, ldb, n, out);
}
void axpy_rows_f32(float* acc, const float* p, const float* v, uint64_t ldv, uint64_t nj, uint64_t n) {
  choice<float>().axpy_rows(acc, p, v, ldv, nj, n);
}
void axpy_rows_f32(float* acc, const float* p, const f16* v, uint64_t ldv, uint64_t nj, uint64_t n) {
  choice<f16>().axpy_rows(acc, p, v, ldv, nj, n);
}
void axpy_rows_f32(float* acc, const float* p, const bf16* v, uint64_t ldv, uint64_t nj, uint64_t n) {
  choice<bf16>().axpy_rows(acc, p, v, ldv, nj, n);
}

}  // namespace ferrum::cpu
