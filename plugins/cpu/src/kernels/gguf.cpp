// ferrum CPU plugin — GGUF quantised matmul kernels (see gguf.hpp).
//
// A weight loaded with act_precision = FERRUM_QUANT_ACT_Q8 goes to gguf_q8.cpp (8-bit activations);
// the paths below keep the activations exact.
// Paths:
//  * AVX-512, m = 1 (all six types; namespace z below): fused per-row dot products straight from the
//    blocks, quants turned into f32 in registers, software-prefetched weight stream. Memory-bound:
//    ~90-100% of the 2-thread read bandwidth on the Zen 5 dev box (docs/perf-notes.md).
//  * AVX-512, m > 1 (all six types): decode-once tiles. Each tile of kTileJ weight rows × kTileK
//    columns is decoded exactly to f32 once (in L1) and every activation row runs over it: groups of
//    16 rows through a broadcast FMA micro-kernel (one vector = 16 rows, one weight per FMA as a
//    broadcast operand), rows left over through a dot micro-kernel (vectors along k). The compute is
//    the f32 FMA work of a dense gemm plus one decode per weight: f32-FMA-bound from m ≈ 8.
//  * m >= kPanelMinM without AVX-512: panels of kPanelRows weight rows decoded exactly to f32 on the
//    pool, then the f32 gemm (its tiles reuse each decoded weight for every activation row).
//  * m = 1, Q4_0 / Q8_0 / Q4_K on AVX2+FMA+F16C (CPUs without AVX-512): a fused per-row dot product
//    (quants widened to f32 in registers, the f16 scale applied once per block or sub-block; the Q4_K
//    min term uses per-sub-block activation sums computed once per call).
//  * m = 1, Q6_K / Q5_K / Q4_1 on AVX2+FMA+F16C: fused rows (rows_dot_exact) with exactly the bits of
//    the tile path below: each weight formed in registers with the decoder's f32 operations, one
//    8-lane FMA accumulator per row in natural k order, hsum; 4 rows interleaved.
//  * everything else (no AVX-512): rows are decoded exactly into a small per-chunk tile (kTileRows rows, in L1/L2)
//    and each activation row is dotted with the tile's rows (AVX2 FMA or portable scalar code; the two
//    are not bitwise equal: the scalar code is not FMA-contracted at this build's flags and pairs the
//    lanes as (s0+s1)+(s2+s3), hsum as (s0+s2)+(s1+s3)).
// All paths sum each output in a fixed order, so results do not depend on the thread count.
#include "gguf.hpp"

#include <ferrum/common/gguf_blocks.hpp>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FERRUM_GGUF_X86 1
#endif

#include "gemm.hpp"
#include "gguf_kquant.hpp"
#include "gguf_q8.hpp"
#include "parallel.hpp"
#include "scratch.hpp"
#include "simd.hpp"
#include "tile_fma.hpp"

namespace ferrum::cpu {
namespace {

constexpr int32_t kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14;
constexpr uint64_t kTileRows = 4;
// m at which gguf_matmul switches to decoded f32 panels of kPanelRows weight rows + the f32 gemm.
// (CPUs without AVX-512 only: with AVX-512 every m > 1 runs the decode-once tiles, measured faster
// at m = 32 ... 512 than panels + gemm, docs/perf-notes.md.)
constexpr uint64_t kPanelMinM = 32;
constexpr uint64_t kPanelRows = 512;
#if FERRUM_SIMD_X86
// m = 1 (AVX-512): the activations arranged for the matvec kernels, per calling thread.
thread_local Scratch t_arranged;
#endif

using gguf_fields::f16le;
using gguf_fields::hi;
using gguf_fields::lo;
using gguf_fields::scale_min;

// ---- exact block decoders (§11.1); every product is exact in f32, one rounding per weight ----------
void decode_q4_0(const uint8_t* b, float* w) {
  const float d = f16le(b);
  for (int i = 0; i < 16; ++i) {
    w[i] = d * float(lo(b[2 + i]) - 8);
    w[i + 16] = d * float(hi(b[2 + i]) - 8);
  }
}
void decode_q4_1(const uint8_t* b, float* w) {
  const float d = f16le(b), m = f16le(b + 2);
  for (int i = 0; i < 16; ++i) {
    w[i] = d * float(lo(b[4 + i])) + m;
    w[i + 16] = d * float(hi(b[4 + i])) + m;
  }
}
void decode_q8_0(const uint8_t* b, float* w) {
  const float d = f16le(b);
  for (int i = 0; i < 32; ++i) w[i] = d * float(static_cast<int8_t>(b[2 + i]));
}
template <bool kFive>
void decode_qk45(const uint8_t* b, float* w) {
  const float d = f16le(b), dmin = f16le(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = kFive ? b + 48 : b + 16;
  for (int c = 0; c < 4; ++c) {
    int sc0, mn0, sc1, mn1;
    scale_min(scales, 2 * c, sc0, mn0);
    scale_min(scales, 2 * c + 1, sc1, mn1);
    const float ds0 = d * float(sc0), dm0 = dmin * float(mn0), ds1 = d * float(sc1), dm1 = dmin * float(mn1);
    for (int l = 0; l < 32; ++l) {
      int q0 = lo(qs[32 * c + l]), q1 = hi(qs[32 * c + l]);
      if constexpr (kFive) {
        q0 += 16 * ((qh[l] >> (2 * c)) & 1);
        q1 += 16 * ((qh[l] >> (2 * c + 1)) & 1);
      }
      w[64 * c + l] = ds0 * float(q0) - dm0;
      w[64 * c + 32 + l] = ds1 * float(q1) - dm1;
    }
  }
}
void decode_q6_k(const uint8_t* b, float* w) {
  const float d = f16le(b + 208);
  for (int n = 0; n < 2; ++n) {
    const uint8_t* L = b + 64 * n;
    const uint8_t* H = b + 128 + 32 * n;
    const int8_t* Sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * n;
    for (int l = 0; l < 32; ++l) {
      const int u = l / 16;
      w[128 * n + l] = (d * float(Sc[u])) * float((lo(L[l]) | ((H[l] & 3) << 4)) - 32);
      w[128 * n + 32 + l] = (d * float(Sc[u + 2])) * float((lo(L[l + 32]) | (((H[l] >> 2) & 3) << 4)) - 32);
      w[128 * n + 64 + l] = (d * float(Sc[u + 4])) * float((hi(L[l]) | (((H[l] >> 4) & 3) << 4)) - 32);
      w[128 * n + 96 + l] = (d * float(Sc[u + 6])) * float((hi(L[l + 32]) | (((H[l] >> 6) & 3) << 4)) - 32);
    }
  }
}

using DecodeFn = void (*)(const uint8_t*, float*);
DecodeFn decoder(int32_t type) {
  switch (type) {
    case kQ4_0: return decode_q4_0;
    case kQ4_1: return decode_q4_1;
    case kQ8_0: return decode_q8_0;
    case kQ4_K: return decode_qk45<false>;
    case kQ5_K: return decode_qk45<true>;
    case kQ6_K: return decode_q6_k;
    default: return nullptr;
  }
}

// ---- f32 dot products of one activation row with `r` (1..kTileRows) tile rows --------------------
// Per output: 8 lane partial sums over k in steps of 8, lanes reduced in a fixed order, then the tail.
void dot_rows_generic(const float* x, const float* w, uint64_t r, uint64_t k, float* res) {
  for (uint64_t j = 0; j < r; ++j) {
    const float* wr = w + j * k;
    float lane[8] = {};
    uint64_t p = 0;
    for (; p + 8 <= k; p += 8)
      for (int l = 0; l < 8; ++l) lane[l] = (x[p + l]) * (wr[p + l]) + (lane[l]);
    float s = ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
    for (; p < k; ++p) s = (x[p]) * (wr[p]) + (s);
    res[j] = s;
  }
}

#ifdef FERRUM_GGUF_X86
FERRUM_AVX2 inline float hsum(__m256 v) {
  // lanes paired (0+4, 1+5, 2+6, 3+7), then ((s0+s2)+(s1+s3)); dot_rows_generic adds
  // ((s0+s1)+(s2+s3)) and is not FMA-contracted: the two paths are not bitwise equal
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));              // (s0+s2, s1+s3)
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 0x55)));  // (s0+s2)+(s1+s3)
}

FERRUM_AVX2 void dot_rows_avx2(const float* x, const float* w, uint64_t r, uint64_t k, float* res) {
  uint64_t j = 0;
  for (; j + 4 <= r; j += 4) {
    const float *w0 = w + j * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    uint64_t p = 0;
    for (; p + 8 <= k; p += 8) {
      const __m256 xv = _mm256_loadu_ps(x + p);
      a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w0 + p), a0);
      a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w1 + p), a1);
      a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w2 + p), a2);
      a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w3 + p), a3);
    }
    float s[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
    for (; p < k; ++p)
      for (int i = 0; i < 4; ++i) s[i] = (x[p]) * (w[(j + i) * k + p]) + (s[i]);
    for (int i = 0; i < 4; ++i) res[j + i] = s[i];
  }
  for (; j < r; ++j) {
    const float* wr = w + j * k;
    __m256 a = _mm256_setzero_ps();
    uint64_t p = 0;
    for (; p + 8 <= k; p += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_loadu_ps(wr + p), a);
    float s = hsum(a);
    for (; p < k; ++p) s = (x[p]) * (wr[p]) + (s);
    res[j] = s;
  }
}

// 8 unsigned / signed bytes (low half of v) -> 8 floats.
FERRUM_AVX2 inline __m256 u8f(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
FERRUM_AVX2 inline __m256 i8f(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }
FERRUM_AVX2 inline __m128i hi64(__m128i v) { return _mm_unpackhi_epi64(v, v); }

// Σ_i x_i·w_i over one Q4_0 row: per block d · Σ x·(q − 8).
FERRUM_AVX2 float row_dot_q4_0(const uint8_t* row, const float* x, uint64_t nb) {
  const __m128i m4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (uint64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + 18 * b;
    const float* xb = x + 32 * b;
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i l = _mm_sub_epi8(_mm_and_si128(qs, m4), eight);
    const __m128i h = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), m4), eight);
    __m256 s = _mm256_mul_ps(i8f(l), _mm256_loadu_ps(xb));
    __m256 t = _mm256_mul_ps(i8f(hi64(l)), _mm256_loadu_ps(xb + 8));
    s = _mm256_fmadd_ps(i8f(h), _mm256_loadu_ps(xb + 16), s);
    t = _mm256_fmadd_ps(i8f(hi64(h)), _mm256_loadu_ps(xb + 24), t);
    acc[b & 1] = _mm256_fmadd_ps(_mm256_set1_ps(f16le(blk)), _mm256_add_ps(s, t), acc[b & 1]);
  }
  return hsum(_mm256_add_ps(acc[0], acc[1]));
}

FERRUM_AVX2 float row_dot_q8_0(const uint8_t* row, const float* x, uint64_t nb) {
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (uint64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + 34 * b;
    const float* xb = x + 32 * b;
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 18));
    __m256 s = _mm256_mul_ps(i8f(q0), _mm256_loadu_ps(xb));
    __m256 t = _mm256_mul_ps(i8f(hi64(q0)), _mm256_loadu_ps(xb + 8));
    s = _mm256_fmadd_ps(i8f(q1), _mm256_loadu_ps(xb + 16), s);
    t = _mm256_fmadd_ps(i8f(hi64(q1)), _mm256_loadu_ps(xb + 24), t);
    acc[b & 1] = _mm256_fmadd_ps(_mm256_set1_ps(f16le(blk)), _mm256_add_ps(s, t), acc[b & 1]);
  }
  return hsum(_mm256_add_ps(acc[0], acc[1]));
}

// Q4_K: Σ_j (d·sc_j)·Σ_l x·q − Σ_j (dmin·mn_j)·xsum_j, xsum_j = Σ of x over sub-block j.
FERRUM_AVX2 float row_dot_q4_k(const uint8_t* row, const float* x, const float* xsum, uint64_t nb) {
  const __m128i m4 = _mm_set1_epi8(15);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  float mins = 0;
  for (uint64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + 144 * b;
    const float d = f16le(blk), dmin = f16le(blk + 2);
    const uint8_t* qs = blk + 16;
    const float* xb = x + 256 * b;
    for (int c = 0; c < 4; ++c) {
      int sc0, mn0, sc1, mn1;
      scale_min(blk + 4, 2 * c, sc0, mn0);
      scale_min(blk + 4, 2 * c + 1, sc1, mn1);
      mins = (dmin * float(mn0)) * (xsum[8 * b + 2 * c]) + (mins);
      mins = (dmin * float(mn1)) * (xsum[8 * b + 2 * c + 1]) + (mins);
      const __m128i a0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 32 * c));
      const __m128i a1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 32 * c + 16));
      const __m128i l0 = _mm_and_si128(a0, m4), l1 = _mm_and_si128(a1, m4);
      const __m128i h0 = _mm_and_si128(_mm_srli_epi16(a0, 4), m4), h1 = _mm_and_si128(_mm_srli_epi16(a1, 4), m4);
      const float* xc = xb + 64 * c;
      __m256 s = _mm256_mul_ps(u8f(l0), _mm256_loadu_ps(xc));
      __m256 s2 = _mm256_mul_ps(u8f(hi64(l0)), _mm256_loadu_ps(xc + 8));
      s = _mm256_fmadd_ps(u8f(l1), _mm256_loadu_ps(xc + 16), s);
      s2 = _mm256_fmadd_ps(u8f(hi64(l1)), _mm256_loadu_ps(xc + 24), s2);
      __m256 t = _mm256_mul_ps(u8f(h0), _mm256_loadu_ps(xc + 32));
      __m256 t2 = _mm256_mul_ps(u8f(hi64(h0)), _mm256_loadu_ps(xc + 40));
      t = _mm256_fmadd_ps(u8f(h1), _mm256_loadu_ps(xc + 48), t);
      t2 = _mm256_fmadd_ps(u8f(hi64(h1)), _mm256_loadu_ps(xc + 56), t2);
      acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(d * float(sc0)), _mm256_add_ps(s, s2), acc[0]);
      acc[1] = _mm256_fmadd_ps(_mm256_set1_ps(d * float(sc1)), _mm256_add_ps(t, t2), acc[1]);
    }
  }
  return hsum(_mm256_add_ps(acc[0], acc[1])) - mins;
}

// ---- bit-exact fused m = 1 rows (Q6_K, Q5_K, Q4_1) ----------------------------------------------------
// The same bits as the decode-into-a-tile path these types took before (decode_* above, then
// dot_rows_avx2), without the tile: each weight is formed in registers with exactly the decoder's f32
// operations (Q6_K (d·sc)·(q − 32), Q5_K (d·sc)·q − dmin·mn, Q4_1 d·q + m: every product exact, at
// most one rounding, as in §11.1), and each row keeps ONE 8-lane FMA accumulator over k in natural
// order (lane l sums k ≡ l mod 8), reduced by hsum: the order of dot_rows_avx2. R rows run interleaved
// (R independent FMA chains sharing each x load); that does not change any row's order, so the
// thread split does not change a result. Per block and row the quants are first turned into bytes
// (Q6_K: q − 32 as int8; Q5_K: q with its 5th bit; Q4_1: the nibbles), then widened 8 at a time.
FERRUM_AVX2_INLINE __m256i ld32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
FERRUM_AVX2_INLINE void st32(uint8_t* p, __m256i v) { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); }
// bytes p[0, 8) as 8 f32 (signed or unsigned)
FERRUM_AVX2_INLINE __m256 i8x8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
FERRUM_AVX2_INLINE __m256 u8x8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

struct ExactQ6_K {
  static constexpr uint64_t kQK = 256, kBytes = 210;
  struct Blk {
    alignas(32) uint8_t q[256];  // q − 32 as int8, weight order
    float s[16];                 // d·sc_j (exact), weights [16j, 16j + 16)
  };
  FERRUM_AVX2_INLINE static void prepare(const uint8_t* b, Blk& o) {
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30), c32 = _mm256_set1_epi8(32);
    for (int n = 0; n < 2; ++n) {
      // 16-bit shifts: every bit kept by the masks comes from its own byte
      const __m256i l0 = ld32(b + 64 * n), l1 = ld32(b + 64 * n + 32), h = ld32(b + 128 + 32 * n);
      uint8_t* q = o.q + 128 * n;
      st32(q, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30)), c32));
      st32(q + 32, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30)), c32));
      st32(q + 64, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30)), c32));
      st32(q + 96, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                                    _mm256_and_si256(_mm256_srli_epi16(h, 2), m30)), c32));
    }
    const float d = f16le(b + 208);
    for (int j = 0; j < 16; ++j) o.s[j] = d * float(static_cast<int8_t>(b[192 + j]));
  }
  // weights [8v, 8v + 8)
  FERRUM_AVX2_INLINE static __m256 w8(const Blk& o, int v) { return _mm256_mul_ps(_mm256_set1_ps(o.s[v >> 1]), i8x8(o.q + 8 * v)); }
};

struct ExactQ5_K {
  static constexpr uint64_t kQK = 256, kBytes = 176;
  struct Blk {
    alignas(32) uint8_t q[256];  // 5-bit q, weight order
    float ds[8], dm[8];          // d·sc_j, dmin·mn_j (exact), sub-block j = weights [32j, 32j + 32)
  };
  FERRUM_AVX2_INLINE static void prepare(const uint8_t* b, Blk& o) {
    const __m256i m4 = _mm256_set1_epi8(15), b4 = _mm256_set1_epi8(16);
    __m256i h = ld32(b + 16);  // qh; after c shifts by 2, bits 0 / 1 of each byte are bits 2c / 2c + 1 of qh[l]
    for (int c = 0; c < 4; ++c) {
      const __m256i qs = ld32(b + 48 + 32 * c);
      st32(o.q + 64 * c, _mm256_or_si256(_mm256_and_si256(qs, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), b4)));
      st32(o.q + 64 * c + 32, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qs, 4), m4),
                                              _mm256_and_si256(_mm256_slli_epi16(h, 3), b4)));
      h = _mm256_srli_epi16(h, 2);
    }
    const float d = f16le(b), dmin = f16le(b + 2);
    for (int j = 0; j < 8; ++j) {
      int sc, mn;
      scale_min(b + 4, j, sc, mn);
      o.ds[j] = d * float(sc);
      o.dm[j] = dmin * float(mn);
    }
  }
  FERRUM_AVX2_INLINE static __m256 w8(const Blk& o, int v) {
    return _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(o.ds[v >> 2]), u8x8(o.q + 8 * v)), _mm256_set1_ps(o.dm[v >> 2]));
  }
};

struct ExactQ4_1 {
  static constexpr uint64_t kQK = 32, kBytes = 20;
  struct Blk {
    alignas(32) uint8_t q[32];  // nibbles, weight order
    float d, m;
  };
  FERRUM_AVX2_INLINE static void prepare(const uint8_t* b, Blk& o) {
    const __m128i m4 = _mm_set1_epi8(15), qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4));
    _mm_store_si128(reinterpret_cast<__m128i*>(o.q), _mm_and_si128(qs, m4));
    _mm_store_si128(reinterpret_cast<__m128i*>(o.q + 16), _mm_and_si128(_mm_srli_epi16(qs, 4), m4));
    o.d = f16le(b);
    o.m = f16le(b + 2);
  }
  FERRUM_AVX2_INLINE static __m256 w8(const Blk& o, int v) {
    return _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(o.d), u8x8(o.q + 8 * v)), _mm256_set1_ps(o.m));
  }
};

// res[0, R) = rows row, row + rb, … dotted with x (nb blocks each).
template <class Q, int R>
FERRUM_AVX2 void rows_dot_exact(const uint8_t* row, uint64_t rb, const float* x, uint64_t nb, float* res) {
  __m256 acc[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  typename Q::Blk blk[R];
  for (uint64_t b = 0; b < nb; ++b) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) Q::prepare(row + r * rb + b * Q::kBytes, blk[r]);
    const float* xb = x + b * Q::kQK;
    // unrolled over the rows so that the accumulators stay in registers (-O2 alone kept acc[] in
    // memory: a store-to-load round trip in every FMA chain step, measured ~2.5x slower)
#pragma GCC unroll 4
    for (int v = 0; v < int(Q::kQK / 8); ++v) {
      const __m256 xv = _mm256_loadu_ps(xb + 8 * v);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(xv, Q::w8(blk[r], v), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) res[r] = hsum(acc[r]);
}

using ExactRowsFn = void (*)(const uint8_t*, uint64_t, const float*, uint64_t, float*);
struct ExactRows {
  ExactRowsFn four = nullptr, one = nullptr;
};
ExactRows exact_rows(int32_t type) {
  switch (type) {
    case kQ6_K: return {rows_dot_exact<ExactQ6_K, 4>, rows_dot_exact<ExactQ6_K, 1>};
    case kQ5_K: return {rows_dot_exact<ExactQ5_K, 4>, rows_dot_exact<ExactQ5_K, 1>};
    case kQ4_1: return {rows_dot_exact<ExactQ4_1, 4>, rows_dot_exact<ExactQ4_1, 1>};
    default: return {};
  }
}

#endif
using simd::has_avx2;  // AVX2 + FMA + F16C (false off x86)

bool fused_m1(int32_t type) {
  return has_avx2() && (type == kQ4_0 || type == kQ8_0 || type == kQ4_K || type == kQ6_K || type == kQ5_K || type == kQ4_1);
}

#if FERRUM_SIMD_X86
// ---- AVX-512 m = 1 kernels ----------------------------------------------------------------------------
// Memory-bound: one pass over the weights, software prefetch of every line, activations re-arranged
// once per call into a 64-byte-aligned buffer (line-split 64-byte loads were measured very slow here).
//  * Q4_0 (with VBMI) and Q4_K: lane-parallel block / sub-block sums Σ q·x with the quants as f32 from
//    a constant vpermps table, the f16 scales applied once per block (Q4_0) or sub-block (Q4_K, min
//    term from per-sub-block activation sums) — a reassociation of §11.1 within the F tolerance.
//  * Q8_0: natural order, Σ q·x per block (vpmovsxbd + convert), the scale once per block (the same
//    reassociation).
//  * Q4_1, Q5_K, Q6_K (and Q4_0 without VBMI): every weight decoded to exactly its §11.1 f32 value
//    (tables d·(j − 8), d·j + m, (d·sc)·j − dmin·mn built with one multiply / FMA and indexed by
//    vpermps / vpermt2ps; Q6_K: integer → f32 times the exact scale), one FMA per 16 weights.
// Each output is a fixed-order sum over its own row only, so neither the thread split nor the strip
// boundaries change a result (bitwise independent of FERRUM_CPU_THREADS).
namespace z {

// Software prefetch of the weight stream, kPrefetch bytes ahead, every cache line (the hardware
// prefetcher alone reached ~30% of the read bandwidth; every other line only, ~20%).
constexpr uint64_t kPrefetch = 8192;

// Quant bytes are not widened with vpmovzx (a shuffle, the scarce port here): 16 bytes are broadcast
// to the four 128-bit lanes (a plain load) and each dword lane k is shifted right by 8·(k/4), so lane
// k holds byte π(k) = 4·(k % 4) + k/4 in bits 0-7. The activations are permuted the same way once
// per call (xp[16g + k] = x[16g + π(k)]), so every lane still pairs a weight with its own activation.
FERRUM_AVX512_INLINE __m512i bcast16(const uint8_t* p) {
  return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
FERRUM_AVX512_INLINE __m512i lane_shift(int extra) {  // 8·(k/4) + extra, mod 32
  return _mm512_and_si512(_mm512_add_epi32(_mm512_setr_epi32(0, 0, 0, 0, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24, 24, 24),
                                           _mm512_set1_epi32(extra)), _mm512_set1_epi32(31));
}
// bits 0-3: the low (kHi = false) or high nibble of byte π(k)
template <bool kHi>
FERRUM_AVX512_INLINE __m512i nib(__m512i v) { return _mm512_srlv_epi32(v, lane_shift(kHi ? 4 : 0)); }
FERRUM_AVX512_INLINE __m512 iota() { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
FERRUM_AVX512_INLINE __m512 lut(__m512i idx, __m512 t) { return _mm512_permutexvar_ps(idx, t); }
FERRUM_AVX512_INLINE __m512 bc(const float* p) { return _mm512_set1_ps(*p); }

FERRUM_AVX512_INLINE __m512i ld64(const uint8_t* p) {  // 64 bytes as two 32-byte loads: a line-split 64-byte load
  // measured far slower on this Zen 5 VM when the line is still in flight (Q4_K: 10.4 -> 6.5 ms)
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)), 1);
}

FERRUM_AVX512_INLINE __m512i words8(int a, int b, int c, int d, int e, int f, int g, int h) {
  return _mm512_setr_epi32(a | (b << 16), c | (d << 16), e | (f << 16), g | (h << 16), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}
// f16 words `idx` (word offsets from p, < 64 when kTwo is false, else < 128) -> f32 s[0..7].
template <bool kTwo>
FERRUM_AVX512_INLINE void f16_words(const uint8_t* p, __m512i idx, float* s) {
  const __m512i a = ld64(p);
  const __m512i w = kTwo ? _mm512_permutex2var_epi16(a, idx, ld64(p + 64)) : _mm512_permutexvar_epi16(idx, a);
  _mm256_store_ps(s, _mm256_cvtph_ps(_mm512_castsi512_si128(w)));
}

// 32-weight blocks, 4 per group: scales of the group first (s), then each block.
struct Q4_0 {
  static constexpr uint64_t kQK = 32, kBytes = 18;
  FERRUM_AVX512_INLINE static void scales4(const uint8_t* b, float* s) {
    f16_words<false>(b, words8(0, 9, 18, 27, 0, 0, 0, 0), s);
  }
  FERRUM_AVX512_INLINE static void step(const uint8_t* b, const float* x, const float* s, int u, __m512* acc) {
    const __m512 t = _mm512_mul_ps(bc(s + u), _mm512_sub_ps(iota(), _mm512_set1_ps(8.0f)));
    const __m512i q = bcast16(b + 2);
    acc[0] = _mm512_fmadd_ps(lut(nib<false>(q), t), _mm512_loadu_ps(x), acc[0]);
    acc[1] = _mm512_fmadd_ps(lut(nib<true>(q), t), _mm512_loadu_ps(x + 16), acc[1]);
  }
};

struct Q4_1 {
  static constexpr uint64_t kQK = 32, kBytes = 20;
  FERRUM_AVX512_INLINE static void scales4(const uint8_t* b, float* s) {  // d0..d3, m0..m3
    f16_words<false>(b, words8(0, 10, 20, 30, 1, 11, 21, 31), s);
  }
  FERRUM_AVX512_INLINE static void step(const uint8_t* b, const float* x, const float* s, int u, __m512* acc) {
    const __m512 t = _mm512_fmadd_ps(bc(s + u), iota(), bc(s + 4 + u));
    const __m512i q = bcast16(b + 4);
    acc[0] = _mm512_fmadd_ps(lut(nib<false>(q), t), _mm512_loadu_ps(x), acc[0]);
    acc[1] = _mm512_fmadd_ps(lut(nib<true>(q), t), _mm512_loadu_ps(x + 16), acc[1]);
  }
};

struct Q5_K {
  static constexpr uint64_t kQK = 256, kBytes = 176;
  // idx bits 0-3 from q, bit 4 from h (vpermt2ps reads only idx bits 0-4)
  FERRUM_AVX512_INLINE static __m512i idx5(__m512i q, __m512i h) {
    return _mm512_ternarylogic_epi32(_mm512_set1_epi32(15), q, h, 0xCA);  // a ? b : c
  }
  // bit p of byte π(k) of the broadcast h -> bit 4 (rotate right by 8·(k/4) + p − 4)
  template <int p>
  FERRUM_AVX512_INLINE static __m512i hbit(__m512i h) { return _mm512_rorv_epi32(h, lane_shift(p - 4)); }
  template <int c>
  FERRUM_AVX512_INLINE static void chunk(const float* s, const uint8_t* qs, __m512i h0, __m512i h1, const float* xc,
                                         __m512* acc) {
    const __m512 i16 = _mm512_add_ps(iota(), _mm512_set1_ps(16.0f));
    const __m512 ds0 = bc(s + 2 * c), dm0 = bc(s + 8 + 2 * c), ds1 = bc(s + 2 * c + 1), dm1 = bc(s + 9 + 2 * c);
    const __m512 t0a = _mm512_fmsub_ps(ds0, iota(), dm0), t0b = _mm512_fmsub_ps(ds0, i16, dm0);
    const __m512 t1a = _mm512_fmsub_ps(ds1, iota(), dm1), t1b = _mm512_fmsub_ps(ds1, i16, dm1);
    const __m512i qa = bcast16(qs + 32 * c), qb = bcast16(qs + 32 * c + 16);
    acc[0] = _mm512_fmadd_ps(_mm512_permutex2var_ps(t0a, idx5(nib<false>(qa), hbit<2 * c>(h0)), t0b), _mm512_loadu_ps(xc), acc[0]);
    acc[1] = _mm512_fmadd_ps(_mm512_permutex2var_ps(t0a, idx5(nib<false>(qb), hbit<2 * c>(h1)), t0b), _mm512_loadu_ps(xc + 16), acc[1]);
    acc[2] = _mm512_fmadd_ps(_mm512_permutex2var_ps(t1a, idx5(nib<true>(qa), hbit<2 * c + 1>(h0)), t1b),
                             _mm512_loadu_ps(xc + 32), acc[2]);
    acc[3] = _mm512_fmadd_ps(_mm512_permutex2var_ps(t1a, idx5(nib<true>(qb), hbit<2 * c + 1>(h1)), t1b),
                             _mm512_loadu_ps(xc + 48), acc[3]);
  }
  FERRUM_AVX512_INLINE static void step(const uint8_t* b, const float* x, __m512* acc) {
    alignas(64) float s[16];
    kquant_scales(b, s);
    const __m512i h0 = bcast16(b + 16), h1 = bcast16(b + 32);
    const uint8_t* qs = b + 48;
    chunk<0>(s, qs, h0, h1, x, acc);
    chunk<1>(s, qs, h0, h1, x + 64, acc);
    chunk<2>(s, qs, h0, h1, x + 128, acc);
    chunk<3>(s, qs, h0, h1, x + 192, acc);
  }
};

struct Q6_K {
  static constexpr uint64_t kQK = 256, kBytes = 210;
  // 16 weights (d·sc)·(q − 32): q bits 0-3 from l, bits 4-5 from h (both already positioned).
  FERRUM_AVX512_INLINE static __m512 w16(__m512i l, __m512i h, const float* dsc) {
    const __m512i q = _mm512_ternarylogic_epi32(_mm512_set1_epi32(15), l, _mm512_and_si512(h, _mm512_set1_epi32(0x30)), 0xCA);
    // q <= 63 already: bits 0-3 come from l, bits 4-5 from h & 0x30, every other bit is 0
    return _mm512_mul_ps(bc(dsc), _mm512_cvtepi32_ps(_mm512_sub_epi32(q, _mm512_set1_epi32(32))));
  }
  FERRUM_AVX512_INLINE static void step(const uint8_t* b, const float* x, __m512* acc) {
    alignas(64) float s[16];  // d · scales[j]
    _mm512_store_ps(s, _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(static_cast<unsigned short>(b[208] | (b[209] << 8)))),
                                     _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192))))));
    for (int n = 0; n < 2; ++n) {
      const uint8_t* L = b + 64 * n;
      const uint8_t* H = b + 128 + 32 * n;
      const float* xn = x + 128 * n;
      for (int u = 0; u < 2; ++u) {  // l in [16u, 16u + 16)
        const __m512i l0 = bcast16(L + 16 * u), l1 = bcast16(L + 32 + 16 * u), h = bcast16(H + 16 * u);
        const float* xl = xn + 16 * u;
        const float* sc = s + 8 * n + u;
        acc[0] = _mm512_fmadd_ps(w16(nib<false>(l0), _mm512_rorv_epi32(h, lane_shift(-4)), sc), _mm512_loadu_ps(xl), acc[0]);
        acc[1] = _mm512_fmadd_ps(w16(nib<false>(l1), _mm512_rorv_epi32(h, lane_shift(-2)), sc + 2), _mm512_loadu_ps(xl + 32), acc[1]);
        acc[2] = _mm512_fmadd_ps(w16(nib<true>(l0), _mm512_rorv_epi32(h, lane_shift(0)), sc + 4), _mm512_loadu_ps(xl + 64), acc[2]);
        acc[3] = _mm512_fmadd_ps(w16(nib<true>(l1), _mm512_rorv_epi32(h, lane_shift(2)), sc + 6), _mm512_loadu_ps(xl + 96), acc[3]);
      }
    }
  }
};

template <class Q>
constexpr bool kSmall = Q::kQK == 32;

// One row dotted with the permuted activations: 32-weight types take 4 blocks per iteration (scales
// of the 4 converted together), K-quants 2; each block of the iteration has its own 4 accumulators,
// all reduced in a fixed order at the end, so an output depends on its row only (not on the thread
// split or strip). The strip's rows are contiguous: the prefetch cursor runs kPrefetch bytes ahead,
// one cache line at a time, on into the next row.
template <class Q>
FERRUM_AVX512 float row_dot(const uint8_t* row, const float* x, uint64_t nb) {
  constexpr int kU = kSmall<Q> ? 4 : 2;
  __m512 acc[kU][4];
  for (int u = 0; u < kU; ++u)
    for (int i = 0; i < 4; ++i) acc[u][i] = _mm512_setzero_ps();
  const char* pf = reinterpret_cast<const char*>(row) + kPrefetch;
  uint64_t b = 0;
  for (; b + kU <= nb; b += kU) {
    const char* pf_end = reinterpret_cast<const char*>(row) + (b + kU) * Q::kBytes + kPrefetch;
    for (; pf < pf_end; pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
    const uint8_t* blk = row + b * Q::kBytes;
    if constexpr (kSmall<Q>) {
      alignas(32) float s[8];
      Q::scales4(blk, s);
      for (int u = 0; u < kU; ++u) Q::step(blk + u * Q::kBytes, x + (b + u) * Q::kQK, s, u, acc[u]);
    } else {
      for (int u = 0; u < kU; ++u) Q::step(blk + u * Q::kBytes, x + (b + u) * Q::kQK, acc[u]);
    }
  }
  for (; b < nb; ++b) {
    if constexpr (kSmall<Q>) {
      alignas(32) float s[8];
      const uint8_t* blk = row + b * Q::kBytes;
      const float d = _cvtsh_ss(static_cast<unsigned short>(blk[0] | (blk[1] << 8)));
      s[0] = d;
      if constexpr (Q::kBytes == 20) s[4] = _cvtsh_ss(static_cast<unsigned short>(blk[2] | (blk[3] << 8)));
      Q::step(blk, x + b * Q::kQK, s, 0, acc[0]);
    } else {
      Q::step(row + b * Q::kBytes, x + b * Q::kQK, acc[0]);
    }
  }
  __m512 t = _mm512_add_ps(_mm512_add_ps(acc[0][0], acc[0][1]), _mm512_add_ps(acc[0][2], acc[0][3]));
  for (int u = 1; u < kU; ++u)
    t = _mm512_add_ps(t, _mm512_add_ps(_mm512_add_ps(acc[u][0], acc[u][1]), _mm512_add_ps(acc[u][2], acc[u][3])));
  return _mm512_reduce_add_ps(t);
}

template <class Q>
void matvec(const uint8_t* w, uint64_t rb, uint64_t rows, const float* xp, uint64_t nb, float* res) {
  for (uint64_t r = 0; r < rows; ++r) res[r] = row_dot<Q>(w + r * rb, xp, nb);
}

// xp[16g + k] = x[16g + π(k)], π(k) = 4·(k % 4) + k/4; n a multiple of 32.
FERRUM_AVX512 void permute_x_avx512(const float* x, float* xp, uint64_t n) {
  const __m512i pi = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  for (uint64_t i = 0; i < n; i += 16) _mm512_storeu_ps(xp + i, _mm512_permutexvar_ps(pi, _mm512_loadu_ps(x + i)));
}

// ---- Q8_0 in natural order: vpmovsxbd + vcvtdq2ps per 16 weights, the scale once per block -----------
// Per block Σ x·q over its 32 weights (two products, one FMA), then acc_u += d·that; 4 blocks per
// iteration, each with its own accumulator, reduced in a fixed order (an output depends on its row
// only). x is used as given (arrange = copy). The block scale applied once per block is a
// reassociation within the F tolerance, as in the other m = 1 paths.
FERRUM_AVX512_INLINE __m512 q8_0_block(const uint8_t* blk, const float* xb) {  // Σ-able x·q of one block
  const __m512 q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2))));
  const __m512 q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 18))));
  return _mm512_fmadd_ps(q1, _mm512_loadu_ps(xb + 16), _mm512_mul_ps(q0, _mm512_loadu_ps(xb)));
}
FERRUM_AVX512_INLINE __m512 q8_0_scale(const uint8_t* blk) {
  return _mm512_set1_ps(_cvtsh_ss(static_cast<unsigned short>(blk[0] | (blk[1] << 8))));
}
FERRUM_AVX512 float row_dot_q8_0_nat(const uint8_t* row, const float* x, uint64_t nb) {
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  const char* pf = reinterpret_cast<const char*>(row) + kPrefetch;
  uint64_t b = 0;
  for (; b + 4 <= nb; b += 4) {
    const char* pf_end = reinterpret_cast<const char*>(row) + (b + 4) * 34 + kPrefetch;
    for (; pf < pf_end; pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
    for (int u = 0; u < 4; ++u) {
      const uint8_t* blk = row + (b + u) * 34;
      acc[u] = _mm512_fmadd_ps(q8_0_scale(blk), q8_0_block(blk, x + (b + u) * 32), acc[u]);
    }
  }
  for (; b < nb; ++b) {
    const uint8_t* blk = row + b * 34;
    acc[0] = _mm512_fmadd_ps(q8_0_scale(blk), q8_0_block(blk, x + b * 32), acc[0]);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}
void matvec_q8_0_nat(const uint8_t* w, uint64_t rb, uint64_t rows, const float* x, uint64_t nb, float* res) {
  for (uint64_t r = 0; r < rows; ++r) res[r] = row_dot_q8_0_nat(w + r * rb, x, nb);
}
void copy_x(const float* x, float* xp, uint64_t n) { std::memcpy(xp, x, n * sizeof(float)); }

// ---- Q4_0 with VBMI: 4 blocks (128 weights) per step ---------------------------------------------------
// vpermt2b gathers the 4 blocks' qs into the four 128-bit lanes (lane L = block L); variant v
// (m = v & 3, h = v >> 2) shifts every dword right by 8m + 4h, so lane k = 4L + t holds the nibble of
// weight i = 4t + m + 16h of block L in bits 0-3, and vpermps of the constant table (j − 8) gives
// q − 8 as f32 (it reads index bits 0-3 only). Per lane Σ x·(q − 8) over the 8 variants, then × d of its block
// (vpermw + vcvtph2ps: [d0 ×4, d1 ×4, d2 ×4, d3 ×4]). The activations are pre-arranged to match:
// xq[128g + 16v + k] = x[128g + 32L + 4t + m + 16h]. (d is applied to the block sum, not per
// weight: a reassociation within the F tolerance, checked by the conformance kit.) The 72 bytes of a
// group are read as 32-byte loads (a = bytes 0-63, b = bytes 40-71).
#define FERRUM_AVX512_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,fma,f16c")))
inline bool has_vbmi() {
  static const bool v = simd::has_avx512() && __builtin_cpu_supports("avx512vbmi");
  return v;
}

void arrange_q4_0(const float* x, float* xq, uint64_t n) {
  const uint64_t full = n / 128 * 128;
  for (uint64_t g = 0; g < full; g += 128)
    for (int v = 0; v < 8; ++v)
      for (int k = 0; k < 16; ++k)
        xq[g + 16 * v + k] = x[g + 32 * (k / 4) + 4 * (k % 4) + (v & 3) + 16 * (v >> 2)];
  std::memcpy(xq + full, x + full, (n - full) * sizeof(float));
}

// vpermt2b indices: byte 16L + j <- qs[j] of block L = group byte 18L + 2 + j (from a below 64, else b)
struct Q4_0Gather {
  alignas(64) uint8_t b[64];
  constexpr Q4_0Gather() : b{} {
    for (int L = 0; L < 4; ++L)
      for (int j = 0; j < 16; ++j) {
        const int off = 18 * L + 2 + j;
        b[16 * L + j] = static_cast<uint8_t>(off < 64 ? off : 64 + (off - 40));
      }
  }
};
constexpr Q4_0Gather kQ4_0Gather;

template <int kV>
FERRUM_AVX512_INLINE __m512 q4_minus8(__m512i q) {
  const __m512 t = _mm512_sub_ps(iota(), _mm512_set1_ps(8.0f));  // vpermps reads index bits 0-3 only
  if constexpr (kV == 0) return _mm512_permutexvar_ps(q, t);
  else return _mm512_permutexvar_ps(_mm512_srli_epi32(q, 8 * (kV & 3) + 4 * (kV >> 2)), t);
}

// One group of four Q4_0 blocks (72 bytes at p: 128 weights) dotted with xg[0, 128) (permuted to
// the gather order), added into acc.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,fma,f16c"), always_inline)) inline void
q4_0_group_fma(const uint8_t* p, const float* xg, __m512i qidx, __m512i didx, __m512& acc) {
  const __m512i a = ld64(p), b = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 40)));
  const __m512i q = _mm512_permutex2var_epi8(a, qidx, b);
  const __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(didx, a)));
  __m512 s0 = _mm512_mul_ps(q4_minus8<0>(q), _mm512_loadu_ps(xg));
  __m512 s1 = _mm512_mul_ps(q4_minus8<4>(q), _mm512_loadu_ps(xg + 64));
  s0 = _mm512_fmadd_ps(q4_minus8<1>(q), _mm512_loadu_ps(xg + 16), s0);
  s1 = _mm512_fmadd_ps(q4_minus8<5>(q), _mm512_loadu_ps(xg + 80), s1);
  s0 = _mm512_fmadd_ps(q4_minus8<2>(q), _mm512_loadu_ps(xg + 32), s0);
  s1 = _mm512_fmadd_ps(q4_minus8<6>(q), _mm512_loadu_ps(xg + 96), s1);
  s0 = _mm512_fmadd_ps(q4_minus8<3>(q), _mm512_loadu_ps(xg + 48), s0);
  s1 = _mm512_fmadd_ps(q4_minus8<7>(q), _mm512_loadu_ps(xg + 112), s1);
  acc = _mm512_fmadd_ps(d, _mm512_add_ps(s0, s1), acc);
}

FERRUM_AVX512_VBMI float row_dot_q4_0_vbmi(const uint8_t* row, const float* xq, uint64_t nb) {
  const __m512i qidx = _mm512_load_si512(kQ4_0Gather.b);
  const __m512i didx = _mm512_setr_epi32(0, 0, 9 | (9 << 16), 9 | (9 << 16), 18 | (18 << 16), 18 | (18 << 16),
                                         27 | (27 << 16), 27 | (27 << 16), 0, 0, 0, 0, 0, 0, 0, 0);
  constexpr int kU = 2;
  __m512 acc[kU] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  const char* pf = reinterpret_cast<const char*>(row) + kPrefetch;
  const uint64_t ng = nb / 4;
  uint64_t g = 0;
  for (; g + kU <= ng; g += kU) {
    const char* pf_end = reinterpret_cast<const char*>(row) + (g + kU) * 72 + kPrefetch;
    for (; pf < pf_end; pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
    for (int u = 0; u < kU; ++u) {
      q4_0_group_fma(row + (g + u) * 72, xq + (g + u) * 128, qidx, didx, acc[u]);
    }
  }
  for (; g < ng; ++g) {  // same arithmetic as above, into acc[0]
    q4_0_group_fma(row + g * 72, xq + g * 128, qidx, didx, acc[0]);
  }
  __m512 t = _mm512_add_ps(acc[0], acc[1]);
  // leftover blocks (nb % 4): exact per-weight tables on the unpermuted tail of xq
  __m512 tail[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (uint64_t b = 4 * ng; b < nb; ++b) {
    const uint8_t* blk = row + b * 18;
    const float* xb = xq + b * 32;
    const __m512 tb = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(static_cast<unsigned short>(blk[0] | (blk[1] << 8)))),
                                    _mm512_sub_ps(iota(), _mm512_set1_ps(8.0f)));
    const __m512i qz = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)));
    tail[0] = _mm512_fmadd_ps(lut(qz, tb), _mm512_loadu_ps(xb), tail[0]);
    tail[1] = _mm512_fmadd_ps(lut(_mm512_srli_epi32(qz, 4), tb), _mm512_loadu_ps(xb + 16), tail[1]);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(t, _mm512_add_ps(tail[0], tail[1])));
}

// ---- Q4_K: lane-parallel sub-block sums -------------------------------------------------------------
// Σ_i w_i·x_i = Σ_j (d·sc_j)·Σ_{sub-block j} q·x − Σ_j (dmin·mn_j)·Σ_{sub-block j} x.
// Half c of a block is the 64 qs bytes of chunks 2c, 2c + 1, loaded as one zmm: 128-bit lane L holds
// qs[64c + 16L, +16), dword k = 4L + t bytes 4t..4t+3. Variant v (m = v & 3, h = v >> 2): shift by
// 8m + 4h, vpermps with the constant table 0..15 (reads index bits 0-3), FMA with the activation of
// that weight (pre-arranged, arrange_q4_k). Lanes 0-7 then sum sub-block 4c + h, lanes 8-15 sub-block
// 4c + 2 + h, so one vector of per-lane scales (vpermps of the decoded scales) finishes the half.
// Per block the min term is one FMA with the sub-block sums of x stored after the arranged x.
void arrange_q4_k(const float* x, float* xq, uint64_t n) {
  for (uint64_t b = 0; b < n / 256; ++b) {
    const float* xb = x + 256 * b;
    float* o = xq + 256 * b;
    for (int c = 0; c < 2; ++c)
      for (int v = 0; v < 8; ++v)
        for (int k = 0; k < 16; ++k) {
          const int L = k / 4, t = k % 4, m = v & 3, h = v >> 2;
          o[128 * c + 16 * v + k] = xb[64 * (2 * c + (L >> 1)) + 32 * h + 16 * (L & 1) + 4 * t + m];
        }
    float* xs = xq + n + 16 * b;  // lanes 8-15: Σ x over sub-block j (in order), lanes 0-7: 0
    for (int j = 0; j < 8; ++j) {
      float sum = 0;
      for (int l = 0; l < 32; ++l) sum += xb[32 * j + l];
      xs[j] = 0;
      xs[8 + j] = sum;
    }
  }
}

template <int kV>
FERRUM_AVX512_INLINE __m512 nib_f(__m512i q) {  // nibble of variant kV as f32 (vpermps of 0..15)
  if constexpr (kV == 0) return _mm512_permutexvar_ps(q, iota());
  else return _mm512_permutexvar_ps(_mm512_srli_epi32(q, 8 * (kV & 3) + 4 * (kV >> 2)), iota());
}

FERRUM_AVX512_INLINE void q4_k_block(const uint8_t* blk, const float* xb, const float* xs, __m512& acc, __m512& accm) {
  alignas(64) float sv[16];
  kquant_scales(blk, sv);
  const __m512 S = _mm512_load_ps(sv);
  accm = _mm512_fmadd_ps(S, _mm512_loadu_ps(xs), accm);
  for (int c = 0; c < 2; ++c) {
    const __m512i q = ld64(blk + 16 + 64 * c);
    const float* xc = xb + 128 * c;
    __m512 s0 = _mm512_mul_ps(nib_f<0>(q), _mm512_loadu_ps(xc));
    __m512 s1 = _mm512_mul_ps(nib_f<4>(q), _mm512_loadu_ps(xc + 64));
    s0 = _mm512_fmadd_ps(nib_f<1>(q), _mm512_loadu_ps(xc + 16), s0);
    s1 = _mm512_fmadd_ps(nib_f<5>(q), _mm512_loadu_ps(xc + 80), s1);
    s0 = _mm512_fmadd_ps(nib_f<2>(q), _mm512_loadu_ps(xc + 32), s0);
    s1 = _mm512_fmadd_ps(nib_f<6>(q), _mm512_loadu_ps(xc + 96), s1);
    s0 = _mm512_fmadd_ps(nib_f<3>(q), _mm512_loadu_ps(xc + 48), s0);
    s1 = _mm512_fmadd_ps(nib_f<7>(q), _mm512_loadu_ps(xc + 112), s1);
    const int j = 4 * c;
    const __m512 sc0 = _mm512_permutexvar_ps(_mm512_setr_epi32(j, j, j, j, j, j, j, j, j + 2, j + 2, j + 2, j + 2, j + 2, j + 2, j + 2, j + 2), S);
    const __m512 sc1 = _mm512_permutexvar_ps(_mm512_setr_epi32(j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 1, j + 3, j + 3, j + 3, j + 3, j + 3, j + 3, j + 3, j + 3), S);
    acc = _mm512_fmadd_ps(sc0, s0, acc);
    acc = _mm512_fmadd_ps(sc1, s1, acc);
  }
}

FERRUM_AVX512 float row_dot_q4_k(const uint8_t* row, const float* xq, const float* xs, uint64_t nb) {
  constexpr int kU = 2;
  __m512 acc[kU], accm[kU];
  for (int u = 0; u < kU; ++u) acc[u] = accm[u] = _mm512_setzero_ps();
  const char* pf = reinterpret_cast<const char*>(row) + kPrefetch;
  uint64_t b = 0;
  for (; b + kU <= nb; b += kU) {
    const char* pf_end = reinterpret_cast<const char*>(row) + (b + kU) * 144 + kPrefetch;
    for (; pf < pf_end; pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
    for (int u = 0; u < kU; ++u) q4_k_block(row + (b + u) * 144, xq + (b + u) * 256, xs + (b + u) * 16, acc[u], accm[u]);
  }
  for (; b < nb; ++b) q4_k_block(row + b * 144, xq + b * 256, xs + b * 16, acc[0], accm[0]);
  return _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1])) - _mm512_reduce_add_ps(_mm512_add_ps(accm[0], accm[1]));
}

void matvec_q4_k(const uint8_t* w, uint64_t rb, uint64_t rows, const float* xq, uint64_t nb, float* res) {
  for (uint64_t r = 0; r < rows; ++r) res[r] = row_dot_q4_k(w + r * rb, xq, xq + nb * 256, nb);
}

void matvec_q4_0_vbmi(const uint8_t* w, uint64_t rb, uint64_t rows, const float* xq, uint64_t nb, float* res) {
  for (uint64_t r = 0; r < rows; ++r) res[r] = row_dot_q4_0_vbmi(w + r * rb, xq, nb);
}

using MatvecFn = void (*)(const uint8_t*, uint64_t, uint64_t, const float*, uint64_t, float*);
using ArrangeFn = void (*)(const float*, float*, uint64_t);
struct Plan {
  MatvecFn fn = nullptr;
  ArrangeFn arrange = nullptr;
};
void permute_x(const float* x, float* xp, uint64_t n) { permute_x_avx512(x, xp, n); }
MatvecFn matvec_fn(int32_t type);
Plan plan(int32_t type) {
  if (type == kQ4_0 && has_vbmi()) return {matvec_q4_0_vbmi, arrange_q4_0};
  if (type == kQ4_K && simd::has_avx512()) return {matvec_q4_k, arrange_q4_k};
  if (type == kQ8_0 && simd::has_avx512()) return {matvec_q8_0_nat, copy_x};
  return {matvec_fn(type), permute_x};
}

MatvecFn matvec_fn(int32_t type) {
  if (!simd::has_avx512()) return nullptr;
  switch (type) {
    case kQ4_0: return matvec<Q4_0>;
    case kQ4_1: return matvec<Q4_1>;
    case kQ5_K: return matvec<Q5_K>;
    case kQ6_K: return matvec<Q6_K>;
    default: return nullptr;
  }
}

// ---- m > 1: the weight tiles of tile::matmul (tile_fma.hpp), decoded exactly ----------------------
using tile::kTileJ;
using tile::kTileK;

// Exact natural-order block decoders (same values as decode_* above, 16 weights per vector).
FERRUM_AVX512_INLINE __m512i u8x16(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
FERRUM_AVX512_INLINE float f16at(const uint8_t* p) { return _cvtsh_ss(static_cast<unsigned short>(p[0] | (p[1] << 8))); }

FERRUM_AVX512_INLINE void tile_q4_0(const uint8_t* b, float* w) {  // d·(q − 8), exact
  const __m512 t = _mm512_mul_ps(_mm512_set1_ps(f16at(b)), _mm512_sub_ps(iota(), _mm512_set1_ps(8.0f)));
  const __m512i q = u8x16(b + 2);
  _mm512_store_ps(w, lut(q, t));  // vpermps reads index bits 0-3: the low nibble
  _mm512_store_ps(w + 16, lut(_mm512_srli_epi32(q, 4), t));
}
FERRUM_AVX512_INLINE void tile_q4_1(const uint8_t* b, float* w) {  // d·q + m, one rounding as in §11.1
  const __m512 t = _mm512_fmadd_ps(_mm512_set1_ps(f16at(b)), iota(), _mm512_set1_ps(f16at(b + 2)));
  const __m512i q = u8x16(b + 4);
  _mm512_store_ps(w, lut(q, t));
  _mm512_store_ps(w + 16, lut(_mm512_srli_epi32(q, 4), t));
}
FERRUM_AVX512_INLINE void tile_q8_0(const uint8_t* b, float* w) {  // d·q, exact
  const __m512 d = _mm512_set1_ps(f16at(b));
  for (int h = 0; h < 2; ++h)
    _mm512_store_ps(w + 16 * h, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                                      _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 + 16 * h))))));
}
template <bool kFive>
FERRUM_AVX512_INLINE void tile_qk45(const uint8_t* b, float* w) {  // (d·sc)·q − dmin·mn, one rounding
  alignas(64) float s[16];
  kquant_scales(b, s);
  const uint8_t* qs = kFive ? b + 48 : b + 16;
  const __m512 i16 = _mm512_add_ps(iota(), _mm512_set1_ps(16.0f));
  for (int c = 0; c < 4; ++c) {
    const __m512 ds0 = bc(s + 2 * c), dm0 = bc(s + 8 + 2 * c), ds1 = bc(s + 2 * c + 1), dm1 = bc(s + 9 + 2 * c);
    const __m512 t0 = _mm512_fmsub_ps(ds0, iota(), dm0), t1 = _mm512_fmsub_ps(ds1, iota(), dm1);
    for (int u = 0; u < 2; ++u) {  // l in [16u, 16u + 16)
      const __m512i q = u8x16(qs + 32 * c + 16 * u);
      const __m512i qh4 = _mm512_srli_epi32(q, 4);
      float* o = w + 64 * c + 16 * u;
      if constexpr (kFive) {
        // index bits 0-3 from the nibble, bit 4 from bit 2c (2c + 1) of qh[l]; vpermt2ps reads bits 0-4
        const __m512i h = u8x16(b + 16 + 16 * u);
        const __m512i m15 = _mm512_set1_epi32(15);
        const __m512i hb0 = _mm512_rorv_epi32(h, _mm512_set1_epi32((2 * c - 4) & 31));
        const __m512i hb1 = _mm512_rorv_epi32(h, _mm512_set1_epi32((2 * c - 3) & 31));
        const __m512 t0b = _mm512_fmsub_ps(ds0, i16, dm0), t1b = _mm512_fmsub_ps(ds1, i16, dm1);
        _mm512_store_ps(o, _mm512_permutex2var_ps(t0, _mm512_ternarylogic_epi32(m15, q, hb0, 0xCA), t0b));
        _mm512_store_ps(o + 32, _mm512_permutex2var_ps(t1, _mm512_ternarylogic_epi32(m15, qh4, hb1, 0xCA), t1b));
      } else {
        _mm512_store_ps(o, lut(q, t0));
        _mm512_store_ps(o + 32, lut(qh4, t1));
      }
    }
  }
}
// 16 weights scale·(q − 32): q bits 0-3 from lo4, bits 4-5 from hi2 (both already positioned).
FERRUM_AVX512_INLINE void q6_put(float* dst, __m512i lo4, __m512i hi2, float scale) {
  const __m512i q = _mm512_ternarylogic_epi32(_mm512_set1_epi32(15), lo4, _mm512_and_si512(hi2, _mm512_set1_epi32(0x30)), 0xCA);
  _mm512_store_ps(dst, _mm512_mul_ps(_mm512_set1_ps(scale), _mm512_cvtepi32_ps(_mm512_sub_epi32(q, _mm512_set1_epi32(32)))));
}
FERRUM_AVX512_INLINE void tile_q6_k(const uint8_t* b, float* w) {  // (d·sc)·(q − 32), one rounding
  alignas(64) float s[16];  // d · scales[j], exact
  _mm512_store_ps(s, _mm512_mul_ps(_mm512_set1_ps(f16at(b + 208)),
                                   _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192))))));
  for (int n = 0; n < 2; ++n)
    for (int u = 0; u < 2; ++u) {  // l in [16u, 16u + 16)
      const __m512i l0 = u8x16(b + 64 * n + 16 * u), l1 = u8x16(b + 64 * n + 32 + 16 * u);
      const __m512i h = u8x16(b + 128 + 32 * n + 16 * u);
      const float* sc = s + 8 * n + u;
      float* o = w + 128 * n + 16 * u;
      q6_put(o, l0, _mm512_slli_epi32(h, 4), sc[0]);
      q6_put(o + 32, l1, _mm512_slli_epi32(h, 2), sc[2]);
      q6_put(o + 64, _mm512_srli_epi32(l0, 4), h, sc[4]);
      q6_put(o + 96, _mm512_srli_epi32(l1, 4), _mm512_srli_epi32(h, 2), sc[6]);
    }
}

// Rows [j0, j0 + r) × blocks [b0, b0 + nbk) of w into W[j][0, nbk·QK) (row stride kTileK; tile::matmul
// zeroes the rows past r). Prefetches the same rows' next tile.
template <int32_t kType>
FERRUM_AVX512 void decode_tile(const uint8_t* w, uint64_t rb, uint64_t r, uint64_t b0, uint64_t nbk, uint64_t nb,
                               float* W) {
  constexpr uint64_t qk = kType == kQ4_0 || kType == kQ4_1 || kType == kQ8_0 ? 32 : 256;
  constexpr uint64_t bb = kType == kQ4_0 ? 18 : kType == kQ4_1 ? 20 : kType == kQ8_0 ? 34 : kType == kQ4_K ? 144
                          : kType == kQ5_K ? 176 : 210;
  const uint64_t next = std::min(nb, b0 + 2 * nbk);  // blocks of the next tile
  for (uint64_t j = 0; j < r; ++j) {
    const uint8_t* row = w + j * rb;
    for (const char* p = reinterpret_cast<const char*>(row + (b0 + nbk) * bb);
         p < reinterpret_cast<const char*>(row + next * bb); p += 64)
      _mm_prefetch(p, _MM_HINT_T0);
    for (uint64_t b = 0; b < nbk; ++b) {
      const uint8_t* blk = row + (b0 + b) * bb;
      float* o = W + j * kTileK + b * qk;
      if constexpr (kType == kQ4_0) tile_q4_0(blk, o);
      else if constexpr (kType == kQ4_1) tile_q4_1(blk, o);
      else if constexpr (kType == kQ8_0) tile_q8_0(blk, o);
      else if constexpr (kType == kQ4_K) tile_qk45<false>(blk, o);
      else if constexpr (kType == kQ5_K) tile_qk45<true>(blk, o);
      else tile_q6_k(blk, o);
    }
  }
}

using TileFill = void (*)(const uint8_t*, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, float*);
TileFill tile_fill(int32_t type) {
  if (!simd::has_avx512()) return nullptr;
  switch (type) {
    case kQ4_0: return decode_tile<kQ4_0>;
    case kQ4_1: return decode_tile<kQ4_1>;
    case kQ8_0: return decode_tile<kQ8_0>;
    case kQ4_K: return decode_tile<kQ4_K>;
    case kQ5_K: return decode_tile<kQ5_K>;
    case kQ6_K: return decode_tile<kQ6_K>;
    default: return nullptr;
  }
}

}  // namespace z
#endif

// Activations as f32 (a itself when T is float).
template <class T>
const float* as_f32(const T* a, uint64_t n, std::vector<float>& store) {
  if constexpr (std::is_same_v<T, float>) {
    return a;
  } else {
    store.resize(n);
    for (uint64_t i = 0; i < n; ++i) store[i] = to_float(a[i]);
    return store.data();
  }
}

}  // namespace

uint64_t gguf_qk(int32_t type) { return common::gguf_qk(type); }

uint64_t gguf_block_bytes(int32_t type) { return common::gguf_block_bytes(type); }

const char* gguf_kernel_name() {
#if FERRUM_SIMD_X86
  if (simd::has_avx512()) return z::has_vbmi() ? "avx512_vbmi" : "avx512";
#endif
  return has_avx2() ? "avx2_fma" : "generic";
}

void gguf_dequantize_row(int32_t type, const uint8_t* row, float* out, uint64_t cols) {
  const DecodeFn dec = decoder(type);
  const uint64_t qk = gguf_qk(type), bb = gguf_block_bytes(type);
  for (uint64_t b = 0; b < cols / qk; ++b) dec(row + b * bb, out + b * qk);
}

template <class T>
void gguf_dequantize(const GgufMatrix& w, T* out) {
  const uint64_t rb = w.row_bytes();
  parallel_for(w.rows, 8, [&](uint64_t r0, uint64_t r1) {
    std::vector<float> tmp(std::is_same_v<T, float> ? 0 : w.cols);
    for (uint64_t r = r0; r < r1; ++r) {
      if constexpr (std::is_same_v<T, float>) {
        gguf_dequantize_row(w.type, w.data + r * rb, out + r * w.cols, w.cols);
      } else {
        gguf_dequantize_row(w.type, w.data + r * rb, tmp.data(), w.cols);
        for (uint64_t c = 0; c < w.cols; ++c) out[r * w.cols + c] = from_float<T>(tmp[c]);
      }
    }
  });
}

template <class T>
void gguf_matmul(const GgufMatrix& w, const T* a, T* out, uint64_t m) {
  if (m == 0 || w.rows == 0) return;
  if (w.act_q8) return gguf_matmul_q8(w, a, out, m);  // the engine allowed 8-bit activations
  const uint64_t K = w.cols, N = w.rows, rb = w.row_bytes();
  std::vector<float> a_store;
  const float* x = as_f32(a, m * K, a_store);

#if FERRUM_SIMD_X86
  if (m > 1) {
    if (const z::TileFill fill = z::tile_fill(w.type)) {  // decode-once tiles (tile_fma.hpp)
      const uint64_t qk = gguf_qk(w.type), nb = K / qk;
      tile::matmul(
          x, m, N, K,
          [&](uint64_t j0, uint64_t r, uint64_t k0, uint64_t kn, float* W) {
            fill(w.data + j0 * rb, rb, r, k0 / qk, kn / qk, nb, W);
          },
          [&](uint64_t i, uint64_t j, float v) { out[i * N + j] = from_float<T>(v); });
      return;
    }
  }
  if (m == 1) {
    const z::Plan plan = z::plan(w.type);
    if (const z::MatvecFn fn = plan.fn) {
      const uint64_t nb = K / gguf_qk(w.type);
      // arranged activations (+ Q4_K sub-block sums), 64-byte aligned: line-split 64-byte loads of x
      // made the kernels 2-3x slower in the DRAM-bound regime on the Zen 5 box
      float* xp = t_arranged.get(K + K / 16 + 16);
      plan.arrange(x, xp, K);
      parallel_for(N, 64, [&](uint64_t r0, uint64_t r1) {
        float res[256];
        for (uint64_t s = r0; s < r1; s += 256) {
          const uint64_t n = std::min<uint64_t>(256, r1 - s);
          fn(w.data + s * rb, rb, n, xp, nb, res);
          for (uint64_t j = 0; j < n; ++j) out[s + j] = from_float<T>(res[j]);
        }
      });
      return;
    }
  }
#endif
#ifdef FERRUM_GGUF_X86
  if (m == 1 && fused_m1(w.type)) {
    const uint64_t nb = K / gguf_qk(w.type);
    std::vector<float> xsum;
    if (w.type == kQ4_K) {
      xsum.resize(K / 32);
      for (uint64_t j = 0; j < K / 32; ++j) {
        float s = 0;
        for (int l = 0; l < 32; ++l) s += x[32 * j + l];
        xsum[j] = s;
      }
    }
    if (const ExactRows ex = exact_rows(w.type); ex.four) {  // Q6_K, Q5_K, Q4_1: the tile path's bits
      parallel_for(N, 16, [&](uint64_t r0, uint64_t r1) {
        float v[4];
        uint64_t r = r0;
        for (; r + 4 <= r1; r += 4) {
          ex.four(w.data + r * rb, rb, x, nb, v);
          for (int i = 0; i < 4; ++i) out[r + i] = from_float<T>(v[i]);
        }
        for (; r < r1; ++r) {
          ex.one(w.data + r * rb, rb, x, nb, v);
          out[r] = from_float<T>(v[0]);
        }
      });
      return;
    }
    parallel_for(N, 16, [&](uint64_t r0, uint64_t r1) {
      for (uint64_t r = r0; r < r1; ++r) {
        const uint8_t* row = w.data + r * rb;
        float v;
        if (w.type == kQ4_0) v = row_dot_q4_0(row, x, nb);
        else if (w.type == kQ8_0) v = row_dot_q8_0(row, x, nb);
        else v = row_dot_q4_k(row, x, xsum.data(), nb);
        out[r] = from_float<T>(v);
      }
    });
    return;
  }
#endif

  // Large m without AVX-512: exact f32 panels of the weight (rows decoded on the pool) through the f32 gemm, whose
  // tiles reuse each decoded weight for every activation row.
  if (m >= kPanelMinM) {
    const uint64_t P = std::min<uint64_t>(kPanelRows, N);
    std::vector<float> panel(P * K), tmp(m * P);
    for (uint64_t j0 = 0; j0 < N; j0 += P) {
      const uint64_t r = std::min(P, N - j0);
      parallel_for(r, 8, [&](uint64_t a0, uint64_t a1) {
        for (uint64_t j = a0; j < a1; ++j) gguf_dequantize_row(w.type, w.data + (j0 + j) * rb, panel.data() + j * K, K);
      });
      cpu::gemm<float>(x, panel.data(), tmp.data(), m, r, K);
      for (uint64_t i = 0; i < m; ++i)
        for (uint64_t j = 0; j < r; ++j) out[i * N + j0 + j] = from_float<T>(tmp[i * r + j]);
    }
    return;
  }

  const auto dot = has_avx2() ?
#ifdef FERRUM_GGUF_X86
                             dot_rows_avx2
#else
                             dot_rows_generic
#endif
                             : dot_rows_generic;
  const uint64_t tiles = (N + kTileRows - 1) / kTileRows;
  parallel_for(tiles, 1, [&](uint64_t t0, uint64_t t1) {
    std::vector<float> tile(kTileRows * K);
    float res[kTileRows];
    for (uint64_t t = t0; t < t1; ++t) {
      const uint64_t j0 = t * kTileRows, r = std::min(kTileRows, N - j0);
      for (uint64_t j = 0; j < r; ++j) gguf_dequantize_row(w.type, w.data + (j0 + j) * rb, tile.data() + j * K, K);
      for (uint64_t i = 0; i < m; ++i) {
        dot(x + i * K, tile.data(), r, K, res);
        for (uint64_t j = 0; j < r; ++j) out[i * N + j0 + j] = from_float<T>(res[j]);
      }
    }
  });
}

#define FERRUM_GGUF_INSTANTIATE(T)                                \
  template void gguf_dequantize<T>(const GgufMatrix&, T*);        \
  template void gguf_matmul<T>(const GgufMatrix&, const T*, T*, uint64_t);
FERRUM_GGUF_INSTANTIATE(float)
FERRUM_GGUF_INSTANTIATE(f16)
FERRUM_GGUF_INSTANTIATE(bf16)
#undef FERRUM_GGUF_INSTANTIATE

}  // namespace ferrum::cpu
