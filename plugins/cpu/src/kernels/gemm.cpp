// ferrum CPU plugin — dense GEMM: out = a · bᵀ (see gemm.hpp).
//
// Structure (BLIS-style): the output is split between pool threads along its larger
// dimension; each thread runs a blocked loop nest
//   jc (NC columns: B packed once, all of k) → ic (MC rows) → pc (KC of k: A packed)
//     → NR-column panels → MR-row panels → micro-kernel (MR × NR tile, kc FMAs deep).
// Packed panels are f32 (f16/bf16 convert while packing). The f32 partial sums of an output
// element are added in the same order whatever the tiling, so results do not depend on the
// thread count. For f32 output the partial sums live in `out`; for f16/bf16 they live in an
// f32 block buffer and each element is rounded once at the end.
// Small m (decode-like) takes a dot-product path that reads b once without packing. With AVX-512
// and k a multiple of 16, f32 from m = 8, f16 from m = 4 and bf16 at 16 < m <= 48 run the
// decode-once tiles of tile_fma.hpp instead (b widened to f32 28 rows × 256 columns at a time, used
// by every row of a); see use_tiles.
#include "gemm.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define FERRUM_GEMM_X86 1
#endif

#include "parallel.hpp"
#include "scratch.hpp"
#include "simd.hpp"
#include "tile_fma.hpp"

namespace ferrum::cpu {
namespace {

// Tile shapes: the AVX2 / generic micro-kernels are 6 × 16, the AVX-512 one 14 × 32 (28 zmm
// accumulators). kMR / kNR are the largest of them (edge buffers).
constexpr uint64_t kMR = 14;
constexpr uint64_t kNR = 32;
constexpr uint64_t kKC = 384;                      // B micro-panel 48 KiB (AVX-512)
constexpr uint64_t kMCPanels = 12;                 // MC = 12 MR panels (A block ≤ 168 KiB, in L2)
constexpr uint64_t kBPackBudget = 4u << 20;        // bytes of packed B per thread (NC × KC, or NC × k)
constexpr uint64_t kNCMax = 4096;
constexpr uint64_t kSmallMBlocked = 16;            // m <= this: the dot-product path (f32 dot blocks, bf16 pairs)

thread_local Scratch t_apack, t_bpack, t_cbuf;

// C[MR × NR] (row stride ldc) = (accumulate ? C : 0) + Σ_p A[p, :]ᵀ · B[p, :].
using MicroKernel = void (*)(uint64_t kc, const float* A, const float* B, float* C, uint64_t ldc, bool accumulate);

constexpr uint64_t kMR2 = 6, kNR2 = 16;  // generic and AVX2 tile

void micro_generic(uint64_t kc, const float* A, const float* B, float* C, uint64_t ldc, bool accumulate) {
  float acc[kMR2][kNR2] = {};
  for (uint64_t p = 0; p < kc; ++p) {
    const float* ap = A + p * kMR2;
    const float* bp = B + p * kNR2;
    for (uint64_t i = 0; i < kMR2; ++i) {
      const float av = ap[i];
      for (uint64_t j = 0; j < kNR2; ++j) acc[i][j] += av * bp[j];
    }
  }
  for (uint64_t i = 0; i < kMR2; ++i) {
    float* c = C + i * ldc;
    if (accumulate) {
      for (uint64_t j = 0; j < kNR2; ++j) c[j] += acc[i][j];
    } else {
      for (uint64_t j = 0; j < kNR2; ++j) c[j] = acc[i][j];
    }
  }
}

#if FERRUM_GEMM_X86
__attribute__((target("avx2,fma"), always_inline)) inline void store_row_avx2(float* c, __m256 v0, __m256 v1,
                                                                            bool accumulate) {
  if (accumulate) {
    v0 = _mm256_add_ps(_mm256_loadu_ps(c), v0);
    v1 = _mm256_add_ps(_mm256_loadu_ps(c + 8), v1);
  }
  _mm256_storeu_ps(c, v0);
  _mm256_storeu_ps(c + 8, v1);
}

__attribute__((target("avx2,fma"))) void micro_avx2(uint64_t kc, const float* A, const float* B, float* C,
                                                    uint64_t ldc, bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (uint64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(B);
    const __m256 b1 = _mm256_load_ps(B + 8);
    __m256 a = _mm256_broadcast_ss(A + 0);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(A + 1);
    c10 = _mm256_fmadd_ps(a, b0, c10);
    c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(A + 2);
    c20 = _mm256_fmadd_ps(a, b0, c20);
    c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(A + 3);
    c30 = _mm256_fmadd_ps(a, b0, c30);
    c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(A + 4);
    c40 = _mm256_fmadd_ps(a, b0, c40);
    c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(A + 5);
    c50 = _mm256_fmadd_ps(a, b0, c50);
    c51 = _mm256_fmadd_ps(a, b1, c51);
    A += kMR2;
    B += kNR2;
  }
  store_row_avx2(C + 0 * ldc, c00, c01, accumulate);
  store_row_avx2(C + 1 * ldc, c10, c11, accumulate);
  store_row_avx2(C + 2 * ldc, c20, c21, accumulate);
  store_row_avx2(C + 3 * ldc, c30, c31, accumulate);
  store_row_avx2(C + 4 * ldc, c40, c41, accumulate);
  store_row_avx2(C + 5 * ldc, c50, c51, accumulate);
}

#define FERRUM_GEMM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

// 14 × 32 tile: 28 accumulators, per k step 2 B loads + 14 broadcasts + 28 FMAs. Each
// accumulator is the same FMA chain over p as in the 6 × 16 kernels (bitwise identical sums).
FERRUM_GEMM_AVX512 void micro_avx512(uint64_t kc, const float* A, const float* B, float* C, uint64_t ldc,
                                     bool accumulate) {
#define FERRUM_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
#define FERRUM_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
  FERRUM_ROWS(FERRUM_DECL)
#undef FERRUM_DECL
#define FERRUM_PF(i)                                                              \
  _mm_prefetch(reinterpret_cast<const char*>(C + (i) * ldc), _MM_HINT_T0);         \
  _mm_prefetch(reinterpret_cast<const char*>(C + (i) * ldc + 31), _MM_HINT_T0);
  if (accumulate) {
    FERRUM_ROWS(FERRUM_PF)
  }
#undef FERRUM_PF
  for (uint64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(B);
    const __m512 b1 = _mm512_load_ps(B + 16);
#define FERRUM_STEP(i)                              \
  {                                                 \
    const __m512 a = _mm512_set1_ps(A[i]);          \
    c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0);      \
    c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);      \
  }
    FERRUM_ROWS(FERRUM_STEP)
#undef FERRUM_STEP
    A += 14;
    B += 32;
  }
#define FERRUM_STORE(i)                                                          \
  {                                                                              \
    float* c = C + (i) * ldc;                                                    \
    if (accumulate) {                                                            \
      c##i##0 = _mm512_add_ps(_mm512_loadu_ps(c), c##i##0);                      \
      c##i##1 = _mm512_add_ps(_mm512_loadu_ps(c + 16), c##i##1);                 \
    }                                                                            \
    _mm512_storeu_ps(c, c##i##0);                                                \
    _mm512_storeu_ps(c + 16, c##i##1);                                           \
  }
  FERRUM_ROWS(FERRUM_STORE)
}

// BF16 pairs (AVX512-BF16): the same 14 × 32 tile over kc2 = kc / 2 steps. A and B are the
// packed panels of 32-bit words, each the bf16 values of two consecutive k (low half: the even k)
// — the f32 packers move them unchanged. vdpbf16ps adds both exact bf16 products to the f32
// accumulator (odd k first, then even k; bf16 subnormal inputs and f32 subnormal results are
// flushed to zero) — twice the products per instruction of the widened f32 kernel.
#define FERRUM_GEMM_BF16DP __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
FERRUM_GEMM_BF16DP void micro_bf16dp(uint64_t kc2, const float* A, const float* B, float* C, uint64_t ldc,
                                     bool accumulate) {
  const auto* Aw = reinterpret_cast<const int32_t*>(A);
#define FERRUM_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
  FERRUM_ROWS(FERRUM_DECL)
#undef FERRUM_DECL
  for (uint64_t p = 0; p < kc2; ++p) {
    const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_load_si512(B));
    const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_load_si512(B + 16));
#define FERRUM_STEP(i)                                                         \
  {                                                                            \
    const __m512bh a = reinterpret_cast<__m512bh>(_mm512_set1_epi32(Aw[i]));   \
    c##i##0 = _mm512_dpbf16_ps(c##i##0, a, b0);                                \
    c##i##1 = _mm512_dpbf16_ps(c##i##1, a, b1);                                \
  }
    FERRUM_ROWS(FERRUM_STEP)
#undef FERRUM_STEP
    Aw += 14;
    B += 32;
  }
  FERRUM_ROWS(FERRUM_STORE)  // the store of micro_avx512 (defined there)
#undef FERRUM_STORE
#undef FERRUM_ROWS
}

// Whether any of the n bf16 values is subnormal (exponent 0, mantissa non-zero): vdpbf16ps would
// read it as zero, while docs/spec.md §0.2 widens inputs exactly.
FERRUM_GEMM_BF16DP bool any_subnormal_bf16(const bf16* x, uint64_t n) {
  const auto* u = reinterpret_cast<const uint16_t*>(x);
  const __m512i exp = _mm512_set1_epi16(0x7F80), man = _mm512_set1_epi16(0x007F);
  __mmask32 hit = 0;
  uint64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512i v = _mm512_loadu_si512(u + i);
    hit |= _mm512_testn_epi16_mask(v, exp) & _mm512_test_epi16_mask(v, man);
    if ((i & 4095) == 0 && hit) return true;
  }
  if (hit) return true;
  for (; i < n; ++i)
    if ((u[i] & 0x7F80) == 0 && (u[i] & 0x007F) != 0) return true;
  return false;
}

FERRUM_GEMM_AVX512 float dot_avx512(const float* x, const float* y, uint64_t k) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  uint64_t p = 0;
  for (; p + 64 <= k; p += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p), _mm512_loadu_ps(y + p), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p + 16), _mm512_loadu_ps(y + p + 16), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p + 32), _mm512_loadu_ps(y + p + 32), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p + 48), _mm512_loadu_ps(y + p + 48), s3);
  }
  for (; p + 16 <= k; p += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p), _mm512_loadu_ps(y + p), s0);
  if (p < k) {
    const __mmask16 m = static_cast<__mmask16>((1u << (k - p)) - 1u);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + p), _mm512_maskz_loadu_ps(m, y + p), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

// Blocks of RA × RB dot products (RA, RB ≤ 2) into out[i·RB + j], one body for two element kinds,
// each with its own target:
//   dot_block_avx512  f32 rows, FMAs: out[i·RB + j] = dot_avx512(a[i], b[j], len) bit for bit.
//   dot_pairs_bf16dp  bf16 rows read as 32-bit pair words (len = k / 2 pairs; AVX512-BF16, no
//                     subnormal input): vdpbf16ps, two exact products per lane and instruction and
//                     half the bytes; its own bits (the pair order).
// Every output keeps dot_avx512's four accumulators and order (64-wide steps, a 16-wide tail into
// s0, a masked tail into s1, (s0 + s1) + (s2 + s3) reduced), so the bits do not depend on the
// blocking or the thread split; each loaded vector feeds RB (or RA) multiply-adds instead of one.
// NAME##_any(ra, rb, ...) picks the instance for ra × rb outputs.
FERRUM_GEMM_AVX512 inline __m512 dot_load(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
FERRUM_GEMM_AVX512 inline __m512 dot_mac(__m512 acc, __m512 x, __m512 y) { return _mm512_fmadd_ps(x, y, acc); }
FERRUM_GEMM_BF16DP inline __m512bh dot_load(__mmask16 m, const int32_t* p) {
  return reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi32(m, p));
}
FERRUM_GEMM_BF16DP inline __m512 dot_mac(__m512 acc, __m512bh x, __m512bh y) { return _mm512_dpbf16_ps(acc, x, y); }
#define FERRUM_UNROLL _Pragma("GCC unroll 4")
#define FERRUM_DOT_BLOCK(NAME, TARGET, E, V)                                                                     \
  template <int RA, int RB>                                                                                      \
  TARGET inline void NAME##_step(__m512 (&s)[RA][RB][4], const E* const* a, const E* const* b, uint64_t p, int q, \
                                 __mmask16 m) {                                                                  \
    V av[RA], bv[RB];                                                                                            \
    FERRUM_UNROLL for (int i = 0; i < RA; ++i) av[i] = dot_load(m, a[i] + p);                                    \
    FERRUM_UNROLL for (int j = 0; j < RB; ++j) bv[j] = dot_load(m, b[j] + p);                                    \
    FERRUM_UNROLL for (int i = 0; i < RA; ++i) FERRUM_UNROLL for (int j = 0; j < RB; ++j) s[i][j][q] =           \
        dot_mac(s[i][j][q], av[i], bv[j]);                                                                       \
  }                                                                                                              \
  template <int RA, int RB>                                                                                      \
  TARGET void NAME(const E* const* a, const E* const* b, uint64_t len, float* out) {                             \
    __m512 s[RA][RB][4];                                                                                         \
    FERRUM_UNROLL for (int i = 0; i < RA; ++i) FERRUM_UNROLL for (int j = 0; j < RB; ++j)                        \
        FERRUM_UNROLL for (int q = 0; q < 4; ++q) s[i][j][q] = _mm512_setzero_ps();                              \
    uint64_t p = 0;                                                                                              \
    for (; p + 64 <= len; p += 64) {                                                                             \
      FERRUM_UNROLL for (int q = 0; q < 4; ++q) NAME##_step<RA, RB>(s, a, b, p + 16 * q, q, 0xFFFF);             \
    }                                                                                                            \
    for (; p + 16 <= len; p += 16) NAME##_step<RA, RB>(s, a, b, p, 0, 0xFFFF);                                   \
    if (p < len) NAME##_step<RA, RB>(s, a, b, p, 1, static_cast<__mmask16>((1u << (len - p)) - 1u));             \
    FERRUM_UNROLL for (int i = 0; i < RA; ++i) FERRUM_UNROLL for (int j = 0; j < RB; ++j) out[i * RB + j] =      \
        _mm512_reduce_add_ps(                                                                                    \
            _mm512_add_ps(_mm512_add_ps(s[i][j][0], s[i][j][1]), _mm512_add_ps(s[i][j][2], s[i][j][3])));        \
  }                                                                                                              \
  TARGET void NAME##_any(int ra, int rb, const E* const* a, const E* const* b, uint64_t len, float* out) {       \
    if (ra == 2 && rb == 2) NAME<2, 2>(a, b, len, out);                                                          \
    else if (ra == 2) NAME<2, 1>(a, b, len, out);                                                                \
    else if (rb == 2) NAME<1, 2>(a, b, len, out);                                                                \
    else NAME<1, 1>(a, b, len, out);                                                                             \
  }
FERRUM_DOT_BLOCK(dot_block_avx512, FERRUM_GEMM_AVX512, float, __m512)
FERRUM_DOT_BLOCK(dot_pairs_bf16dp, FERRUM_GEMM_BF16DP, int32_t, __m512bh)
#undef FERRUM_DOT_BLOCK
#undef FERRUM_UNROLL
// The pair blocks over bf16 rows (k = 2·kp values each).
FERRUM_GEMM_BF16DP void dot_pairs_bf16(int ra, int rb, const bf16* const* a, const bf16* const* b, uint64_t kp,
                                       float* out) {
  const int32_t* aw[2] = {reinterpret_cast<const int32_t*>(a[0]), reinterpret_cast<const int32_t*>(a[1])};
  const int32_t* bw[2] = {reinterpret_cast<const int32_t*>(b[0]), reinterpret_cast<const int32_t*>(b[1])};
  dot_pairs_bf16dp_any(ra, rb, aw, bw, kp, out);
}

// 16 half-precision values widened to f32 (exact); `m` masks a tail.
FERRUM_GEMM_AVX512 inline __m512 widen16(const f16* y, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, y));
}
FERRUM_GEMM_AVX512 inline __m512 widen16(const bf16* y, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, y)), 16));
}
// dot_avx512(x, widened y) without the widened row in memory: the same loads, FMAs and order, so
// the same bits as widening the row first.
template <class H>
FERRUM_GEMM_AVX512 float dot_half_avx512(const float* x, const H* y, uint64_t k) {
  const __mmask16 all = 0xFFFF;
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  uint64_t p = 0;
  for (; p + 64 <= k; p += 64) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p), widen16(y + p, all), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p + 16), widen16(y + p + 16, all), s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p + 32), widen16(y + p + 32, all), s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p + 48), widen16(y + p + 48, all), s3);
  }
  for (; p + 16 <= k; p += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + p), widen16(y + p, all), s0);
  if (p < k) {
    const __mmask16 m = static_cast<__mmask16>((1u << (k - p)) - 1u);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + p), widen16(y + p, m), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

// In-register 16 × 16 transpose: r[i] = row i in, r[j] = column j out.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"), always_inline)) inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
    const __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
    const __m512 v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    r[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
}

// f32 packing by 16 × 16 register transposes: `rows` (≤ 16) rows of src (row stride ld) × kc
// columns into dst[p · dst_stride + i] (i < rows). Rows are read as whole cache lines (no
// set-conflicting column walks, which 16-KiB row strides would cause).
FERRUM_GEMM_AVX512 void pack_rows_t16(const float* src, uint64_t ld, uint64_t rows, uint64_t kc, float* dst,
                                      uint64_t dst_stride) {
  const __mmask16 out_mask = static_cast<__mmask16>((1u << rows) - 1u);
  __m512 r[16];
  for (uint64_t p0 = 0; p0 < kc; p0 += 16) {
    const uint64_t w = std::min<uint64_t>(16, kc - p0);
    const __mmask16 in_mask = static_cast<__mmask16>((w == 16) ? 0xFFFFu : ((1u << w) - 1u));
    for (uint64_t i = 0; i < 16; ++i) {
      r[i] = i < rows ? _mm512_maskz_loadu_ps(in_mask, src + i * ld + p0) : _mm512_setzero_ps();
    }
    transpose16(r);
    for (uint64_t j = 0; j < w; ++j) _mm512_mask_storeu_ps(dst + (p0 + j) * dst_stride, out_mask, r[j]);
  }
}

FERRUM_GEMM_AVX512 void pack_a14_avx512(const float* a, uint64_t lda, uint64_t kc, float* panel) {
  pack_rows_t16(a, lda, 14, kc, panel, 14);
}

FERRUM_GEMM_AVX512 void pack_b32_avx512(const float* b, uint64_t ldb, uint64_t kc, float* panel) {
  pack_rows_t16(b, ldb, 16, kc, panel, 32);
  pack_rows_t16(b + 16 * ldb, ldb, 16, kc, panel + 16, 32);
}

#endif

#if FERRUM_GEMM_X86
// The AVX2 dots of f32 rows a with rows b of f32, or of f16 / bf16 widened in registers (F16C for
// f16), in blocks of RA × RB ≤ 2 × 2 outputs (out[i·RB + j]): every output keeps one sequence —
// two accumulators over 16-wide steps (s0 the low 8, s1 the high 8), an 8-wide step into s0,
// s0 + s1 reduced by lanes ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)), then the scalar tail
// by fmaf — so its bits do not depend on the blocking, the thread split or the row type (a half
// row gives the bits of widening it first). Each loaded vector feeds RB (or RA) FMAs: at 2 × 2 one
// load per FMA instead of two, and 8 accumulators + 4 operands fit the 16 ymm registers.
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256 widen8(const float* y) { return _mm256_loadu_ps(y); }
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256 widen8(const f16* y) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y)));
}
__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256 widen8(const bf16* y) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y))), 16));
}
template <int RA, int RB, class Y>
__attribute__((target("avx2,fma,f16c"), always_inline)) inline void dot_step_avx2(__m256 (&s)[RA][RB][2],
                                                                                 const float* const* a,
                                                                                 const Y* const* b, uint64_t p, int q) {
  __m256 av[RA], bv[RB];
#pragma GCC unroll 4
  for (int i = 0; i < RA; ++i) av[i] = _mm256_loadu_ps(a[i] + p);
#pragma GCC unroll 4
  for (int j = 0; j < RB; ++j) bv[j] = widen8(b[j] + p);
#pragma GCC unroll 4
  for (int i = 0; i < RA; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < RB; ++j) s[i][j][q] = _mm256_fmadd_ps(av[i], bv[j], s[i][j][q]);
}
template <int RA, int RB, class Y>
__attribute__((target("avx2,fma,f16c"))) void dot_block_avx2(const float* const* a, const Y* const* b, uint64_t k,
                                                             float* out) {
  __m256 s[RA][RB][2];
#pragma GCC unroll 4
  for (int i = 0; i < RA; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < RB; ++j) s[i][j][0] = s[i][j][1] = _mm256_setzero_ps();
  uint64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    dot_step_avx2<RA, RB>(s, a, b, p, 0);
    dot_step_avx2<RA, RB>(s, a, b, p + 8, 1);
  }
  if (p + 8 <= k) {
    dot_step_avx2<RA, RB>(s, a, b, p, 0);
    p += 8;
  }
#pragma GCC unroll 4
  for (int i = 0; i < RA; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < RB; ++j) {
      alignas(32) float l[8];
      _mm256_store_ps(l, _mm256_add_ps(s[i][j][0], s[i][j][1]));
      float r = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
      for (uint64_t t = p; t < k; ++t) r = __builtin_fmaf(a[i][t], to_float(b[j][t]), r);
      out[i * RB + j] = r;
    }
  }
}
template <class Y>
__attribute__((target("avx2,fma,f16c"))) float dot_avx2(const float* x, const Y* y, uint64_t k) {
  float r;
  dot_block_avx2<1, 1, Y>(&x, &y, k, &r);
  return r;
}
// m = 1: one x against four rows of b (out[j] = dot_avx2(x, b[j], k) bit for bit): 8 independent
// FMA chains instead of 2 (one row's two accumulators wait on the FMA latency), x loaded once per
// step for the four rows.
template <class Y>
__attribute__((target("avx2,fma,f16c"))) void dot4_avx2(const float* x, const Y* const* b, uint64_t k, float* out) {
  dot_block_avx2<1, 4, Y>(&x, b, k, out);
}
__attribute__((target("avx2,fma,f16c"))) void dot_block_avx2_any(int ra, int rb, const float* const* a,
                                                                 const float* const* b, uint64_t k, float* out) {
  if (ra == 2 && rb == 2) dot_block_avx2<2, 2, float>(a, b, k, out);
  else if (ra == 2) dot_block_avx2<2, 1, float>(a, b, k, out);
  else if (rb == 2) dot_block_avx2<1, 2, float>(a, b, k, out);
  else dot_block_avx2<1, 1, float>(a, b, k, out);
}
#endif

// Half-precision rows widened to f32 (exact) — 16 values per instruction instead of one software
// conversion per value. Same values as to_float, so every result stays bitwise the same.
#if FERRUM_GEMM_X86
__attribute__((target("avx512f"))) void f16_row_avx512(const f16* s, float* d, uint64_t n) {
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(d + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
  for (; i < n; ++i) d[i] = to_float(s[i]);
}
__attribute__((target("avx2,f16c"))) void f16_row_f16c(const f16* s, float* d, uint64_t n) {
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) d[i] = to_float(s[i]);
}
__attribute__((target("avx512f"))) void bf16_row_avx512(const bf16* s, float* d, uint64_t n) {
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    _mm512_storeu_ps(d + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) d[i] = to_float(s[i]);
}
__attribute__((target("avx2"))) void bf16_row_avx2(const bf16* s, float* d, uint64_t n) {
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
    _mm256_storeu_ps(d + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) d[i] = to_float(s[i]);
}
#endif
template <class T>
void row_generic(const T* s, float* d, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) d[i] = to_float(s[i]);
}

float dot_generic(const float* x, const float* y, uint64_t k) {
  float lanes[8] = {};
  uint64_t p = 0;
  for (; p + 8 <= k; p += 8) {
    for (int l = 0; l < 8; ++l) lanes[l] += x[p + l] * y[p + l];
  }
  float r = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
  for (; p < k; ++p) r += x[p] * y[p];
  return r;
}

#if FERRUM_GEMM_X86
// CPUID.1:ECX.F16C[bit 29] (clang's __builtin_cpu_supports has no "f16c").
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & (1u << 29)) != 0;
}
#endif

struct Kernels {
  MicroKernel micro = micro_generic;
  float (*dot)(const float*, const float*, uint64_t) = dot_generic;
  void (*f16_row)(const f16*, float*, uint64_t) = row_generic<f16>;
  void (*bf16_row)(const bf16*, float*, uint64_t) = row_generic<bf16>;
  // f32 · half dots with the widening fused (AVX-512; NULL: widen the row, then `dot`)
  float (*dot_f16)(const float*, const f16*, uint64_t) = nullptr;
  float (*dot_bf16)(const float*, const bf16*, uint64_t) = nullptr;
  // Blocks of up to 2 × 2 dots with `dot`'s bits (AVX-512), or NULL.
  void (*dot_block)(int, int, const float* const*, const float* const*, uint64_t, float*) = nullptr;
  // m = 1 (AVX2): one x against four b rows, each output with the bits of `dot` (f32 rows) /
  // `dot_f16` / `dot_bf16`, or NULL.
  void (*dot4)(const float*, const float* const*, uint64_t, float*) = nullptr;
  void (*dot4_f16)(const float*, const f16* const*, uint64_t, float*) = nullptr;
  void (*dot4_bf16)(const float*, const bf16* const*, uint64_t, float*) = nullptr;
  // The same over bf16 pairs (AVX512-BF16; k / 2 pairs), or NULL.
  void (*dot_pairs)(int, int, const bf16* const*, const bf16* const*, uint64_t, float*) = nullptr;
  const char* name = "generic";
  uint64_t mr = kMR2, nr = kNR2;
  bool gather_pack = false;  // AVX-512 f32 transposing packers (14 × 32 tile only)
  MicroKernel micro_bf16 = nullptr;  // the 14 × 32 tile over bf16 pairs (AVX512-BF16), or NULL
  bool (*any_subnormal_bf16)(const bf16*, uint64_t) = nullptr;
};

const Kernels& kernels() {
  static const Kernels k = [] {
    Kernels r;
#if FERRUM_GEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) r.bf16_row = bf16_row_avx2;
    if (__builtin_cpu_supports("avx2") && has_f16c()) r.f16_row = f16_row_f16c;
    if (__builtin_cpu_supports("avx512f")) {
      r.f16_row = f16_row_avx512;
      r.bf16_row = bf16_row_avx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      r.micro = micro_avx2;
      r.dot = dot_avx2<float>;  // (no F16C instruction in the f32 instances)
      r.dot_block = dot_block_avx2_any;
      r.dot4 = dot4_avx2<float>;
      r.name = "avx2_fma";
      if (has_f16c()) {  // (the bf16 instance needs none either; one target keeps them together)
        r.dot_f16 = dot_avx2<f16>;
        r.dot_bf16 = dot_avx2<bf16>;
        r.dot4_f16 = dot4_avx2<f16>;
        r.dot4_bf16 = dot4_avx2<bf16>;
      }
    }
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma")) {
      r.micro = micro_avx512;
      r.dot = dot_avx512;
      r.dot_f16 = dot_half_avx512<f16>;
      r.dot_bf16 = dot_half_avx512<bf16>;
      r.dot_block = dot_block_avx512_any;
      r.dot4 = nullptr;  // (the AVX-512 dots have their own order)
      r.dot4_f16 = nullptr;
      r.dot4_bf16 = nullptr;
      r.name = "avx512";
      r.mr = 14;
      r.nr = 32;
      r.gather_pack = true;
      if (__builtin_cpu_supports("avx512bf16")) {
        r.micro_bf16 = micro_bf16dp;
        r.dot_pairs = dot_pairs_bf16;
        r.any_subnormal_bf16 = any_subnormal_bf16;
        r.name = "avx512_bf16";
      }
    }
#endif
    return r;
  }();
  return k;
}

template <class T>
inline void load_row_f32(const T* src, float* dst, uint64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(dst, src, n * sizeof(float));
  } else if constexpr (std::is_same_v<T, f16>) {
    kernels().f16_row(src, dst, n);
  } else {
    kernels().bf16_row(src, dst, n);
  }
}

// The portable packing of one panel of W lanes: source rows first .. first + n (stride ld, kc
// values each) go to lanes 0 .. n (panel[p·W + i] = row i's value p), lanes n .. W are zero.
template <class T>
void pack_panel(const T* src, uint64_t ld, uint64_t first, uint64_t n, uint64_t W, uint64_t kc, float* panel) {
  for (uint64_t i = 0; i < n; ++i) {
    const T* row = src + (first + i) * ld;
    if constexpr (std::is_same_v<T, float>) {
      for (uint64_t p = 0; p < kc; ++p) panel[p * W + i] = row[p];
    } else {  // widen 256 values at a time (vector converters), then the strided stores
      float tmp[256];
      for (uint64_t p0 = 0; p0 < kc; p0 += 256) {
        const uint64_t len = std::min<uint64_t>(256, kc - p0);
        load_row_f32(row + p0, tmp, len);
        for (uint64_t p = 0; p < len; ++p) panel[(p0 + p) * W + i] = tmp[p];
      }
    }
  }
  for (uint64_t i = n; i < W; ++i) {
    for (uint64_t p = 0; p < kc; ++p) panel[p * W + i] = 0.0f;
  }
}

// Packs source rows [0, n) (row stride ld, kc values each) into panels of W lanes, panel q at
// q · W · kc, for `padded` lanes (>= n; the lanes past n are zero). A full f32 panel of 14 or 32
// lanes goes through the AVX-512 gather packers when the CPU has them.
template <class T>
void pack_panels(const T* src, uint64_t ld, uint64_t n, uint64_t padded, uint64_t kc, uint64_t W, float* dst) {
  [[maybe_unused]] const bool fast = kernels().gather_pack && (W == 14 || W == 32);
  for (uint64_t q0 = 0; q0 < padded; q0 += W) {
    float* panel = dst + q0 * kc;
    const uint64_t m = q0 < n ? std::min(W, n - q0) : 0;
#if FERRUM_GEMM_X86
    if (fast && m == W) {
      const float* rows = nullptr;
      uint64_t rows_ld = ld;
      if constexpr (std::is_same_v<T, float>) {
        rows = src + q0 * ld;
      } else if (kc <= kKC) {  // widen the W rows (vector converters) into f32, then the same packer
        thread_local std::vector<float> t_rows;
        if (t_rows.size() < W * kc) t_rows.resize(W * kc);
        for (uint64_t i = 0; i < W; ++i) load_row_f32(src + (q0 + i) * ld, t_rows.data() + i * kc, kc);
        rows = t_rows.data();
        rows_ld = kc;
      }
      if (rows) {
        if (W == 14)
          pack_a14_avx512(rows, rows_ld, kc, panel);
        else
          pack_b32_avx512(rows, rows_ld, kc, panel);
        continue;
      }
    }
#endif
    pack_panel(src, ld, q0, m, W, kc, panel);
  }
}

// A: rows [0, rows) × cols [0, kc) (row stride lda) into MR-row panels, zero-padded.
template <class T>
void pack_a(const T* a, uint64_t lda, uint64_t rows, uint64_t kc, uint64_t MR, float* dst) {
  pack_panels(a, lda, rows, rows, kc, MR, dst);
}

// B: rows [0, cols) × k-range [0, kc) (row stride ldb) into NR-column panels, zero-padded to
// ncp columns.
template <class T>
void pack_b_block(const T* b, uint64_t ldb, uint64_t cols, uint64_t ncp, uint64_t kc, uint64_t NR, float* dst) {
  pack_panels(b, ldb, cols, ncp, kc, NR, dst);
}

// Packs all of k: KC block pc starts at pc · ncp.
template <class T>
void pack_b(const T* b, uint64_t ldb, uint64_t cols, uint64_t ncp, uint64_t k, uint64_t NR, float* dst) {
  for (uint64_t pc = 0; pc < k; pc += kKC) {
    pack_b_block(b + pc, ldb, cols, ncp, std::min(kKC, k - pc), NR, dst + pc * ncp);
  }
}

// One packed A block × one packed B block (kc deep) into C (row stride ldc).
inline void macro_kernel(const Kernels& K, uint64_t mc, uint64_t nc, uint64_t kc, const float* apack,
                         const float* bblock, float* cblock, uint64_t ldc, bool accumulate) {
  const uint64_t MR = K.mr, NR = K.nr;
  alignas(64) float edge[kMR * kNR];
  for (uint64_t j0 = 0; j0 < nc; j0 += NR) {
    const uint64_t nr = std::min(NR, nc - j0);
    const float* bp = bblock + j0 * kc;
    for (uint64_t i0 = 0; i0 < mc; i0 += MR) {
      const uint64_t mr = std::min(MR, mc - i0);
      const float* ap = apack + i0 * kc;
      float* c = cblock + i0 * ldc + j0;
      if (mr == MR && nr == NR) {
        K.micro(kc, ap, bp, c, ldc, accumulate);
      } else {
        K.micro(kc, ap, bp, edge, NR, false);
        for (uint64_t i = 0; i < mr; ++i) {
          for (uint64_t j = 0; j < nr; ++j) {
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + edge[i * NR + j] : edge[i * NR + j];
          }
        }
      }
    }
  }
}

// The f16/bf16 loop nest: jc (B packed over all of `depth`) → ic → pc, partial sums in an f32
// MC × NC buffer, each element rounded once into T. S is the packed rows' source type: T itself
// (the packers widen to f32), or float for bf16 pairs read as 32-bit words (depth = k / 2).
template <class S, class T>
void gemm_blocked_buffered(const Kernels& K, const S* a, const S* b, T* out, uint64_t m, uint64_t n, uint64_t depth,
                           uint64_t ldo) {
  const uint64_t MR = K.mr, NR = K.nr, MC = kMCPanels * MR;
  float* apack = t_apack.get(MC * kKC);
  uint64_t nc_max = kBPackBudget / (sizeof(float) * depth);
  nc_max = std::clamp<uint64_t>(nc_max / NR * NR, NR, kNCMax);
  float* bpack = t_bpack.get(std::min(nc_max, (n + NR - 1) / NR * NR) * depth);
  float* cbuf = t_cbuf.get(MC * nc_max);
  for (uint64_t jc = 0; jc < n; jc += nc_max) {
    const uint64_t nc = std::min(nc_max, n - jc);
    const uint64_t ncp = (nc + NR - 1) / NR * NR;
    pack_b(b + jc * depth, depth, nc, ncp, depth, NR, bpack);
    for (uint64_t ic = 0; ic < m; ic += MC) {
      const uint64_t mc = std::min(MC, m - ic);
      for (uint64_t pc = 0; pc < depth; pc += kKC) {
        const uint64_t kc = std::min(kKC, depth - pc);
        pack_a(a + ic * depth + pc, depth, mc, kc, MR, apack);
        macro_kernel(K, mc, nc, kc, apack, bpack + pc * ncp, cbuf, ncp, pc != 0);
      }
      for (uint64_t i = 0; i < mc; ++i) {
        T* orow = out + (ic + i) * ldo + jc;
        const float* crow = cbuf + i * ncp;
        for (uint64_t j = 0; j < nc; ++j) orow[j] = from_float<T>(crow[j]);
      }
    }
  }
}

// bf16 on AVX512-BF16, k even, 4-byte aligned rows: each row is read as k / 2 32-bit words (one
// bf16 pair each), so the f32 packers build the pair panels unchanged (they only move 32-bit
// words), and the pair micro-kernel runs in place of the f32 one. An element's sum: KC blocks of
// pairs in order, each a vdpbf16ps chain from 0 — the same for every tiling and thread count.
void gemm_blocked_bf16dp(const bf16* a, const bf16* b, bf16* out, uint64_t m, uint64_t n, uint64_t k, uint64_t ldo) {
  Kernels K = kernels();
  K.micro = K.micro_bf16;
  gemm_blocked_buffered(K, reinterpret_cast<const float*>(a), reinterpret_cast<const float*>(b), out, m, n, k / 2, ldo);
}

// out block [m × n] (row stride ldo) = a[m × k] · b[n × k]ᵀ, on the calling thread.
// f32: BLIS order jc → pc (B block NC × KC packed) → ic (A block MC × KC packed), partial sums in
// out. f16/bf16: jc (B packed over all of k) → ic → pc, partial sums in an f32 MC × NC buffer.
// Either way an element's sum is the same chain: KC blocks in order, each an FMA chain from 0.
template <class T>
void gemm_blocked(const T* a, const T* b, T* out, uint64_t m, uint64_t n, uint64_t k, uint64_t ldo,
                  bool pairs = false) {
  const Kernels& K = kernels();
  if constexpr (std::is_same_v<T, bf16>) {
    if (pairs) return gemm_blocked_bf16dp(a, b, out, m, n, k, ldo);
  }
  const uint64_t MR = K.mr, NR = K.nr, MC = kMCPanels * MR;
  float* apack = t_apack.get(MC * kKC);
  if constexpr (std::is_same_v<T, float>) {
    uint64_t nc_max = kBPackBudget / (sizeof(float) * std::min(k, kKC));
    nc_max = std::clamp<uint64_t>(nc_max / NR * NR, NR, kNCMax);
    float* bpack = t_bpack.get(std::min(nc_max, (n + NR - 1) / NR * NR) * std::min(k, kKC));
    for (uint64_t jc = 0; jc < n; jc += nc_max) {
      const uint64_t nc = std::min(nc_max, n - jc);
      const uint64_t ncp = (nc + NR - 1) / NR * NR;
      for (uint64_t pc = 0; pc < k; pc += kKC) {
        const uint64_t kc = std::min(kKC, k - pc);
        pack_b_block(b + jc * k + pc, k, nc, ncp, kc, NR, bpack);
        for (uint64_t ic = 0; ic < m; ic += MC) {
          const uint64_t mc = std::min(MC, m - ic);
          pack_a(a + ic * k + pc, k, mc, kc, MR, apack);
          macro_kernel(K, mc, nc, kc, apack, bpack, out + ic * ldo + jc, ldo, pc != 0);
        }
      }
    }
  } else {
    gemm_blocked_buffered(K, a, b, out, m, n, k, ldo);
  }
}

// Small m: each output is one dot product; b is read once (no packing), rows converted to f32 on
// the fly. f32 with dot_block and 2 <= m <= kSmallMBlocked: two b rows at a time meet the a rows
// two at a time (2 × 2 blocks of dots with `dot`'s bits — the same as one dot per output,
// whatever the blocking or thread split — at half the loads per FMA; at m = 16 the packed path
// spent most of its time packing b).
// bf16 with `pairs` (dot_pairs, k even, no subnormal in a): the same 2 × 2 blocks over bf16
// pairs for every b row without a subnormal value (checked per row, so a column's path depends
// on its data only, never on the thread split); a row that has one takes the widened dot_half.
template <class T>
void gemm_small_m(const T* a, const T* b, T* out, uint64_t m, uint64_t n, uint64_t k, bool pairs = false) {
  const auto dot = kernels().dot;
  const auto dot_block = kernels().dot_block;
  const uint64_t grain = std::max<uint64_t>(2, (uint64_t{1} << 16) / std::max<uint64_t>(k, 1));
  parallel_for(n, grain, [&](uint64_t j_begin, uint64_t j_end) {
    float* buf = t_apack.get((m + 1) * k);
    float* arows = buf;
    float* brow = buf + m * k;
    for (uint64_t i = 0; i < m; ++i) load_row_f32(a + i * k, arows + i * k, k);
    if constexpr (std::is_same_v<T, bf16>) {
      if (pairs) {
        const Kernels& K = kernels();
        // Rows j .. j + rb − 1 of b through the pair blocks.
        auto block = [&](uint64_t j, int rb) {
          const bf16* bj[2] = {b + j * k, b + (j + rb - 1) * k};
          for (uint64_t i = 0; i < m; i += 2) {
            const int ra = i + 1 < m ? 2 : 1;
            const bf16* ai[2] = {a + i * k, a + (i + ra - 1) * k};
            float r[4];
            K.dot_pairs(ra, rb, ai, bj, k / 2, r);
            for (int x = 0; x < ra; ++x)
              for (int c = 0; c < rb; ++c) out[(i + x) * n + j + c] = from_float<T>(r[x * rb + c]);
          }
        };
        for (uint64_t j = j_begin; j < j_end; j += 2) {
          const int rb = j + 1 < j_end ? 2 : 1;
          bool ok[2] = {true, true};
          for (int c = 0; c < rb; ++c) ok[c] = !K.any_subnormal_bf16(b + (j + c) * k, k);
          if (rb == 2 && ok[0] && ok[1]) {
            block(j, 2);
            continue;
          }
          for (int c = 0; c < rb; ++c) {
            if (ok[c]) {
              block(j + c, 1);
              continue;
            }
            for (uint64_t i = 0; i < m; ++i)
              out[i * n + j + c] = from_float<T>(K.dot_bf16(arows + i * k, b + (j + c) * k, k));
          }
        }
        return;
      }
    }
    if (dot_block && m > 1) {
      // f16 / bf16: the two b rows widened once into brow (k floats each), the same bits as `dot`
      // on widened rows (and as the fused half dot of an m = 1 call)
      float* bw = t_bpack.get(2 * k);
      for (uint64_t j = j_begin; j < j_end; j += 2) {
        const int rb = j + 1 < j_end ? 2 : 1;
        const float* bj[2] = {nullptr, nullptr};
        for (int c = 0; c < rb; ++c) {
          if constexpr (std::is_same_v<T, float>) {
            bj[c] = b + (j + c) * k;
          } else {
            load_row_f32(b + (j + c) * k, bw + c * k, k);
            bj[c] = bw + c * k;
          }
        }
        for (uint64_t i = 0; i < m; i += 2) {
          const int ra = i + 1 < m ? 2 : 1;
          const float* ai[2] = {arows + i * k, arows + (i + ra - 1) * k};
          float r[4];
          dot_block(ra, rb, ai, bj, k, r);
          for (int x = 0; x < ra; ++x)
            for (int c = 0; c < rb; ++c) out[(i + x) * n + j + c] = from_float<T>(r[x * rb + c]);
        }
      }
      return;
    }
    float (*dot_half)(const float*, const T*, uint64_t) = nullptr;
    void (*dot4)(const float*, const T* const*, uint64_t, float*) = nullptr;
    if constexpr (std::is_same_v<T, float>) dot4 = kernels().dot4;
    if constexpr (std::is_same_v<T, f16>) dot_half = kernels().dot_f16, dot4 = kernels().dot4_f16;
    if constexpr (std::is_same_v<T, bf16>) dot_half = kernels().dot_bf16, dot4 = kernels().dot4_bf16;
    uint64_t j_first = j_begin;
    if (m == 1 && dot4) {  // four rows at a time, each with the single-row dot's bits
      for (; j_first + 4 <= j_end; j_first += 4) {
        const T* bj[4] = {b + j_first * k, b + (j_first + 1) * k, b + (j_first + 2) * k, b + (j_first + 3) * k};
        float r[4];
        dot4(arows, bj, k, r);
        for (int c = 0; c < 4; ++c) out[j_first + c] = from_float<T>(r[c]);
      }
    }
    for (uint64_t j = j_first; j < j_end; ++j) {
      if (dot_half && m == 1) {  // same bits as widening the row and calling dot, half the bytes
        out[j] = from_float<T>(dot_half(arows, b + j * k, k));
        continue;
      }
      const float* bj;
      if constexpr (std::is_same_v<T, float>) {
        bj = b + j * k;
      } else {
        load_row_f32(b + j * k, brow, k);
        bj = brow;
      }
      for (uint64_t i = 0; i < m; ++i) out[i * n + j] = from_float<T>(dot(arows + i * k, bj, k));
    }
  });
}

// The decode-once tiles of tile_fma.hpp (AVX-512, k a multiple of 16) where they were measured
// faster than the dot / packed paths (one thread, K = N = 4096, docs/perf-notes.md): f32 from m = 8,
// f16 from m = 4 (both up to the m = 512 measured); bf16 only between its pair blocks (m <= 16) and
// its vdpbf16ps packed kernel (twice the f32 FMA rate; faster from m = 64). Large m with few output
// columns (n < 2048) keeps the packed path, which splits m across the threads (the tiles split n
// only). The choice depends on the shape only, never on the thread count, so the bits do not either.
template <class T>
bool use_tiles(uint64_t m, uint64_t n, uint64_t k) {
#if FERRUM_SIMD_X86
  if (k % 16 != 0 || !simd::has_avx512()) return false;
  if (m > 64 && n < 2048) return false;
  if constexpr (std::is_same_v<T, float>) return m >= 8;
  if constexpr (std::is_same_v<T, f16>) return m >= 4;
  return m > kSmallMBlocked && m <= 48;
#else
  (void)m, (void)n, (void)k;
  return false;
#endif
}

}  // namespace

const char* gemm_kernel_name() { return kernels().name; }

void widen_row(const f16* src, float* dst, uint64_t n) { kernels().f16_row(src, dst, n); }
void widen_row(const bf16* src, float* dst, uint64_t n) { kernels().bf16_row(src, dst, n); }

float gemm_dot(const float* x, const float* y, uint64_t k) { return kernels().dot(x, y, k); }
float gemm_dot_half(const float* x, const f16* y, uint64_t k) {
  if (kernels().dot_f16) return kernels().dot_f16(x, y, k);
  std::vector<float> w(k);
  widen_row(y, w.data(), k);
  return kernels().dot(x, w.data(), k);
}
float gemm_dot_half(const float* x, const bf16* y, uint64_t k) {
  if (kernels().dot_bf16) return kernels().dot_bf16(x, y, k);
  std::vector<float> w(k);
  widen_row(y, w.data(), k);
  return kernels().dot(x, w.data(), k);
}

template <class T>
void gemm(const T* a, const T* b, T* out, uint64_t m, uint64_t n, uint64_t k) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::memset(static_cast<void*>(out), 0, m * n * sizeof(T));
    return;
  }
#if FERRUM_SIMD_X86
  if (use_tiles<T>(m, n, k)) {
    std::vector<float> a_store;  // a widened to f32 (f16 / bf16 only)
    const float* af = nullptr;
    if constexpr (std::is_same_v<T, float>) {
      af = a;
    } else {
      a_store.resize(m * k);
      for (uint64_t i = 0; i < m; ++i) load_row_f32(a + i * k, a_store.data() + i * k, k);
      af = a_store.data();
    }
    tile::matmul(
        af, m, n, k,
        [&](uint64_t j0, uint64_t r, uint64_t k0, uint64_t kn, float* W) {
          // prefetch the same rows' next columns (or the next tile's first ones): the FMAs of
          // this tile then hide their DRAM latency (28 row streams defeat the hardware prefetcher)
          const uint64_t nj0 = k0 + kn < k ? j0 : j0 + r, nk0 = k0 + kn < k ? k0 + kn : 0;
          const uint64_t nr = std::min<uint64_t>(tile::kTileJ, n > nj0 ? n - nj0 : 0);
          const uint64_t nbytes = std::min<uint64_t>(tile::kTileK, k - nk0) * sizeof(T);
          for (uint64_t j = 0; j < nr; ++j) {
            const char* row = reinterpret_cast<const char*>(b + (nj0 + j) * k + nk0);
            for (uint64_t o = 0; o < nbytes; o += 64) _mm_prefetch(row + o, _MM_HINT_T1);
          }
          for (uint64_t j = 0; j < r; ++j) load_row_f32(b + (j0 + j) * k + k0, W + j * tile::kTileK, kn);
        },
        [&](uint64_t i, uint64_t j, float v) { out[i * n + j] = from_float<T>(v); });
    return;
  }
#endif
  if constexpr (std::is_same_v<T, bf16>) {  // 2 <= m <= kSmallMBlocked over bf16 pairs
    const Kernels& K = kernels();
    if (K.dot_pairs && m >= 2 && m <= kSmallMBlocked && k % 2 == 0 && !K.any_subnormal_bf16(a, m * k)) {
      gemm_small_m(a, b, out, m, n, k, true);
      return;
    }
  }
  // Up to kSmallMBlocked rows stay on the dot path on every CPU (f32: 2 × 2 dot blocks where the
  // CPU has them, one dot per output elsewhere; f16 / bf16: each b row widened once, then one dot
  // per a row), so each row carries the bits of an m = 1 call. (The packed kernel converts while
  // packing b; at m = 16 on an AVX2 CPU that made f16 1.4x slower than f32.)
  if (m <= kSmallMBlocked) {
    gemm_small_m(a, b, out, m, n, k);
    return;
  }
  const uint64_t threads = pool_threads();
  const uint64_t flops = 2 * m * n * k;
  // Split the larger output dimension into one part per thread (whole MR/NR tiles).
  const bool split_n = n >= m;
  const uint64_t unit = split_n ? kernels().nr : kernels().mr;
  const uint64_t extent = split_n ? n : m;
  const uint64_t units = (extent + unit - 1) / unit;
  uint64_t parts = std::min<uint64_t>(threads, units);
  if (flops < (uint64_t{1} << 21)) parts = 1;  // not worth waking the pool
  const uint64_t per = (units + parts - 1) / parts * unit;
  // bf16 on AVX512-BF16 (k even, 4-byte aligned rows, no subnormal input anywhere — decided for
  // the whole call, so every element takes the same path whatever the thread count): the pair
  // micro-kernel.
  bool pairs = false;
  if constexpr (std::is_same_v<T, bf16>) {
    const Kernels& K = kernels();
    const bool aligned = ((reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b)) & 3) == 0;
    if (K.micro_bf16 && k % 2 == 0 && aligned) {
      std::atomic<bool> sub{K.any_subnormal_bf16(a, m * k)};
      if (!sub.load())
        parallel_for(n, std::max<uint64_t>(1, (uint64_t{1} << 20) / k), [&](uint64_t j0, uint64_t j1) {
          if (!sub.load(std::memory_order_relaxed) && K.any_subnormal_bf16(b + j0 * k, (j1 - j0) * k))
            sub.store(true, std::memory_order_relaxed);
        });
      pairs = !sub.load();
    }
  }
  parallel_for(parts, 1, [&](uint64_t p_begin, uint64_t p_end) {
    for (uint64_t p = p_begin; p < p_end; ++p) {
      const uint64_t lo = p * per;
      if (lo >= extent) continue;
      const uint64_t hi = std::min(extent, lo + per);
      if (split_n) {
        gemm_blocked(a, b + lo * k, out + lo, m, hi - lo, k, n, pairs);
      } else {
        gemm_blocked(a + lo * k, b, out + lo * n, hi - lo, n, k, n, pairs);
      }
    }
  });
}

template void gemm<float>(const float*, const float*, float*, uint64_t, uint64_t, uint64_t);
template void gemm<f16>(const f16*, const f16*, f16*, uint64_t, uint64_t, uint64_t);
template void gemm<bf16>(const bf16*, const bf16*, bf16*, uint64_t, uint64_t, uint64_t);

}  // namespace ferrum::cpu
