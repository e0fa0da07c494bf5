// ferrum CPU plugin — the vector forms of attention_math.hpp's dot_f32 / axpy_f32, chosen once at
// run time. Both give exactly the portable code's bits: the dot keeps its eight lanes (one AVX2
// register) and its pairwise lane sum, every step a multiply then an add (no FMA); the axpy is
// element-wise.
#include <cstdint>

#include "attention_math.hpp"

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

__attribute__((target("avx2"))) float dot_avx2(const float* a, const float* b, uint64_t n) {
  __m256 lanes = _mm256_setzero_ps();
  uint64_t d = 0;
  for (; d + 8 <= n; d += 8)
    lanes = _mm256_add_ps(lanes, opaque(_mm256_mul_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d))));
  alignas(32) float l[8];
  _mm256_store_ps(l, lanes);
  float r = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
  for (; d < n; ++d) r += a[d] * b[d];
  return r;
}

__attribute__((target("avx2"))) inline float lane_sum(__m256 v) {
  alignas(32) float l[8];
  _mm256_store_ps(l, v);
  return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
}
__attribute__((target("avx2"))) void dot4_avx2(const float* a, const float* b, uint64_t ldb, uint64_t n, float* out) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  const float *b0 = b, *b1 = b + ldb, *b2 = b + 2 * ldb, *b3 = b + 3 * ldb;
  uint64_t d = 0;
  for (; d + 8 <= n; d += 8) {
    const __m256 x = _mm256_loadu_ps(a + d);
    s0 = _mm256_add_ps(s0, opaque(_mm256_mul_ps(x, _mm256_loadu_ps(b0 + d))));
    s1 = _mm256_add_ps(s1, opaque(_mm256_mul_ps(x, _mm256_loadu_ps(b1 + d))));
    s2 = _mm256_add_ps(s2, opaque(_mm256_mul_ps(x, _mm256_loadu_ps(b2 + d))));
    s3 = _mm256_add_ps(s3, opaque(_mm256_mul_ps(x, _mm256_loadu_ps(b3 + d))));
  }
  float r[4] = {lane_sum(s0), lane_sum(s1), lane_sum(s2), lane_sum(s3)};
  const float* rows[4] = {b0, b1, b2, b3};
  for (int k = 0; k < 4; ++k) {
    for (uint64_t t = d; t < n; ++t) r[k] += a[t] * rows[k][t];
    out[k] = r[k];
  }
}
__attribute__((target("avx512f"))) void axpy_avx512(float* acc, float p, const float* v, uint64_t n) {
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
__attribute__((target("avx512f"))) void axpy_rows_avx512(float* acc, const float* p, const float* v, uint64_t ldv,
                                                         uint64_t nj, uint64_t n) {
  uint64_t d = 0;
  for (; d + 128 <= n; d += 128) {
    __m512 c[8];
    for (int t = 0; t < 8; ++t) c[t] = _mm512_loadu_ps(acc + d + 16 * t);
    for (uint64_t j = 0; j < nj; ++j) {
      const __m512 pv = _mm512_set1_ps(p[j]);
      const float* vr = v + j * ldv + d;
      for (int t = 0; t < 8; ++t) c[t] = _mm512_add_ps(c[t], opaque(_mm512_mul_ps(pv, _mm512_loadu_ps(vr + 16 * t))));
    }
    for (int t = 0; t < 8; ++t) _mm512_storeu_ps(acc + d + 16 * t, c[t]);
  }
  for (; d < n; d += 16) {  // the rest, 16 at a time (masked tail)
    const __mmask16 m = n - d >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - d)) - 1u);
    __m512 c = _mm512_maskz_loadu_ps(m, acc + d);
    for (uint64_t j = 0; j < nj; ++j)
      c = _mm512_add_ps(c, opaque(_mm512_mul_ps(_mm512_set1_ps(p[j]), _mm512_maskz_loadu_ps(m, v + j * ldv + d))));
    _mm512_mask_storeu_ps(acc + d, m, c);
  }
}
#endif

void axpy_rows_portable(float* acc, const float* p, const float* v, uint64_t ldv, uint64_t nj, uint64_t n) {
  for (uint64_t j = 0; j < nj; ++j) axpy_f32_portable(acc, p[j], v + j * ldv, n);
}

void dot4_portable(const float* a, const float* b, uint64_t ldb, uint64_t n, float* out) {
  for (uint64_t r = 0; r < 4; ++r) out[r] = dot_f32_portable(a, b + r * ldb, n);
}

struct Choice {
  float (*dot)(const float*, const float*, uint64_t) = dot_f32_portable;
  void (*dot4)(const float*, const float*, uint64_t, uint64_t, float*) = dot4_portable;
  void (*axpy_rows)(float*, const float*, const float*, uint64_t, uint64_t, uint64_t) = axpy_rows_portable;
  void (*axpy)(float*, float, const float*, uint64_t) = axpy_f32_portable;
};

const Choice& choice() {
  static const Choice c = [] {
    Choice r;
#if FERRUM_ATTN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
      r.dot = dot_avx2;
      r.dot4 = dot4_avx2;
    }
    if (__builtin_cpu_supports("avx512f")) {
      r.axpy = axpy_avx512;
      r.axpy_rows = axpy_rows_avx512;
    }
#endif
    return r;
  }();
  return c;
}

}  // namespace

float dot_f32(const float* a, const float* b, uint64_t n) { return choice().dot(a, b, n); }
void axpy_f32(float* acc, float p, const float* v, uint64_t n) { choice().axpy(acc, p, v, n); }
void dot4_f32(const float* a, const float* b, uint64_t ldb, uint64_t n, float* out) { choice().dot4(a, b, ldb, n, out); }
void axpy_rows_f32(float* acc, const float* p, const float* v, uint64_t ldv, uint64_t nj, uint64_t n) {
  choice().axpy_rows(acc, p, v, ldv, nj, n);
}

}  // namespace ferrum::cpu
