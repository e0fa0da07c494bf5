// ferrum CPU plugin — GGUF matmul with 8-bit activations (see gguf_q8.hpp for the arithmetic).
//
// Paths:
//  * AVX-512 VNNI (all six types): the weight codes are unpacked to unsigned bytes in registers
//    and multiplied with the activation codes by vpdpbusd (unsigned × signed, 4 products per int32
//    lane): Q4 nibbles and Q5/Q6 codes are unsigned as they are (Q4_0's − 8 and Q6_K's − 32 are
//    taken off afterwards with 8·Σq / 32·Σq per block, computed once per call), Q8_0 bytes are
//    offset by +128 and corrected with 128·Σq. The activations are quantised once per call with
//    the codes of every full 256-column group stored in the order the kernel reads them, so each
//    vpdpbusd pairs a weight with its own activation.
//     - m = 1 (memory-bound): one pass over the weights with software prefetch (as gguf.cpp's
//       matvecs); per group the int32 lanes are reduced to one exact sum per block (unpack/add
//       trees, one permute to block order) and the f32 lane updates run on 8 (Q6_K: 16) lanes.
//     - m > 1: the weights of a tile of kTileRows rows are transposed once (to L1) so that int32
//       lane j of every vector belongs to block j: a group's vpdpbusd chain leaves the block sums
//       in block order, with no reduction across lanes; two activation rows share each 16-lane
//       vector (8-lane types).
//  * AVX2 without VNNI: direct block kernels (every type at m = 1, Q4_0 / Q4_1 / Q8_0 at every m):
//    the weight blocks read as stored, decoded per group in registers, vpmaddubsw + horizontal adds
//    to the block sums; K-quants at m > 1: tiles of 8 weight rows unpacked once per call with the
//    rows in the 8 lanes (vpmaddubsw + vpmaddwd). See the two sections below.
//  * portable: the same integer sums and the same f32 operations in plain C++ (also the last,
//    partial group of the 32-weight types on the VNNI and AVX2 paths).
#include "gguf_q8.hpp"

#include <ferrum/common/dtype.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>

#include "gguf_kquant.hpp"
#include "parallel.hpp"
#include "scratch.hpp"
#include "simd.hpp"

namespace ferrum::cpu {
namespace {

constexpr int32_t kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14;
// m > 1: weight rows per tile (each activation row is read once per tile).
constexpr uint64_t kTileRows = 4;
// Activation rows quantised at a time (bounds the scratch: about 1.6 bytes per column and row).
constexpr uint64_t kRowChunk = 256;

// The quantised activations of a call, on the calling thread (read by the pool's threads).
thread_local Scratch t_q8;
// The quantised activations in the AVX2 tiles' pass order, on the calling thread.
thread_local Scratch t_pass;
// m > 1: the unpacked weights of a tile, and a tile's outputs, per pool thread.
thread_local Scratch t_prep;
thread_local Scratch t_res;

using gguf_fields::f16le;
using gguf_fields::hi;
using gguf_fields::lo;
using gguf_fields::scale_min;

constexpr bool small_block(int32_t t) { return t == kQ4_0 || t == kQ4_1 || t == kQ8_0; }
constexpr uint64_t block_bytes(int32_t t) {
  return t == kQ4_0 ? 18 : t == kQ4_1 ? 20 : t == kQ8_0 ? 34 : t == kQ4_K ? 144 : t == kQ5_K ? 176 : 210;
}
constexpr uint64_t lanes(int32_t t) { return t == kQ6_K ? 16 : 8; }

// ---- quantised activation rows -----------------------------------------------------------------
// One row of K columns in G = ceil(K / 256) groups, in bytes: codes [0, 256G) (0 past K), d_b per
// 32-block [256G, 288G), f = d_b·Σq per 32-block (Q6_K: d_b per 16 columns) [288G, 352G), the integer
// corrections [352G, 416G) (Q4_0: 8·Σq and Q8_0: 128·Σq per 32-block, Q6_K: 32·Σq per 16 columns).
// Padding (past K) is 0 everywhere. Rows are 64-byte aligned.
struct Layout {
  uint64_t groups, stride;
  explicit Layout(uint64_t k) : groups((k + 255) / 256), stride((416 * groups + 63) / 64 * 64) {}
};

struct QRow {
  const int8_t* q;
  const float* d;
  const float* f;  // Q6_K: d_b per 16 columns
  const int32_t* corr;
};

QRow view(const uint8_t* base, uint64_t groups) {
  return {reinterpret_cast<const int8_t*>(base), reinterpret_cast<const float*>(base + 256 * groups),
          reinterpret_cast<const float*>(base + 288 * groups), reinterpret_cast<const int32_t*>(base + 352 * groups)};
}

// The order of the activation codes within each full group on the VNNI path (the portable code
// and a partial last group keep column order): the order the weight bytes come out of unpack
// (m = 1), or transposed (m > 1: vector v, lane j = columns 4v … 4v + 3 of block j; Q6_K: of
// 16-column group j).
enum class Order { unpack, transposed };

// The per-block values after the codes of 32-block b (Σq of its two 16-column halves s0, s1).
inline void block_values(int32_t type, uint64_t b, float db, int32_t s0, int32_t s1, float* d, float* f, int32_t* corr) {
  d[b] = db;
  switch (type) {
    case kQ4_0: corr[b] = 8 * (s0 + s1); break;
    case kQ8_0: corr[b] = 128 * (s0 + s1); break;
    case kQ6_K:
      f[2 * b] = f[2 * b + 1] = db;
      corr[2 * b] = 32 * s0;
      corr[2 * b + 1] = 32 * s1;
      break;
    default: f[b] = db * static_cast<float>(s0 + s1);  // Q4_1, Q4_K, Q5_K
  }
}

// Round to nearest, ties to even, for |x| < 2^22 (f32 arithmetic in the default rounding mode).
inline float round_even(float x) { return (x + 12582912.0f) - 12582912.0f; }

// Quantises one activation row (gguf_q8.hpp) into dst (Layout(K).stride bytes), codes in column
// order.
template <class T>
void quantize_row(int32_t type, const T* a, uint64_t K, uint8_t* dst) {
  const uint64_t G = Layout(K).groups;
  std::memset(dst, 0, Layout(K).stride);
  auto* q = reinterpret_cast<int8_t*>(dst);
  for (uint64_t b = 0; b < K / 32; ++b) {
    float v[32], amax = 0;
    for (int k = 0; k < 32; ++k) {
      v[k] = to_float(a[32 * b + k]);
      amax = std::max(amax, std::fabs(v[k]));  // a NaN is skipped
    }
    const float db = amax / 127.0f;
    int32_t s[2] = {0, 0};  // Σq over columns 0-15 and 16-31
    for (int k = 0; k < 32; ++k) {
      // |v / db| ≤ 127·(1 + 2^-23) rounds into [−127, 127]; a NaN or infinite quotient gives 0 (the
      // output is not finite anyway)
      const float r = db != 0.0f ? round_even(v[k] / db) : 0.0f;
      const int32_t qk = r >= -127.0f && r <= 127.0f ? static_cast<int32_t>(r) : 0;
      s[k / 16] += qk;
      q[32 * b + k] = static_cast<int8_t>(qk);
    }
    block_values(type, b, db, s[0], s[1], reinterpret_cast<float*>(dst + 256 * G),
                 reinterpret_cast<float*>(dst + 288 * G), reinterpret_cast<int32_t*>(dst + 352 * G));
  }
}

// ---- portable -----------------------------------------------------------------------------------
// Group g of one weight row (column-order codes): the exact integer sums and the f32 lane updates.
// nb: 32-blocks in the row (32-weight types; blocks past it are +0 lanes).
void group_portable(int32_t type, const uint8_t* row, uint64_t g, uint64_t nb, const QRow& x, float* acc) {
  const int8_t* q = x.q + 256 * g;
  int32_t I[16] = {};
  float c[16] = {}, mn[8] = {};
  if (small_block(type)) {
    const uint64_t bb = block_bytes(type);
    for (uint64_t j = 0; j < 8 && 8 * g + j < nb; ++j) {
      const uint8_t* blk = row + (8 * g + j) * bb;
      const int8_t* qj = q + 32 * j;
      int32_t s = 0;
      if (type == kQ8_0) {
        for (int k = 0; k < 32; ++k) s += static_cast<int8_t>(blk[2 + k]) * qj[k];
      } else {
        const uint8_t* qs = blk + (type == kQ4_0 ? 2 : 4);
        const int off = type == kQ4_0 ? 8 : 0;
        for (int i = 0; i < 16; ++i) s += (lo(qs[i]) - off) * qj[i] + (hi(qs[i]) - off) * qj[i + 16];
      }
      I[j] = s;
      c[j] = f16le(blk);
      if (type == kQ4_1) mn[j] = f16le(blk + 2);
    }
  } else if (type == kQ6_K) {
    const uint8_t* blk = row + g * 210;
    const float d = f16le(blk + 208);
    const auto* sc = reinterpret_cast<const int8_t*>(blk + 192);
    for (int n = 0; n < 2; ++n) {
      const uint8_t* L = blk + 64 * n;
      const uint8_t* H = blk + 128 + 32 * n;
      const int8_t* qn = q + 128 * n;
      for (int l = 0; l < 32; ++l) {  // the four columns 128n + {0, 32, 64, 96} + l (16-column groups 8n + …)
        I[8 * n + l / 16] += ((lo(L[l]) | ((H[l] & 3) << 4)) - 32) * qn[l];
        I[8 * n + 2 + l / 16] += ((lo(L[l + 32]) | (((H[l] >> 2) & 3) << 4)) - 32) * qn[32 + l];
        I[8 * n + 4 + l / 16] += ((hi(L[l]) | (((H[l] >> 4) & 3) << 4)) - 32) * qn[64 + l];
        I[8 * n + 6 + l / 16] += ((hi(L[l + 32]) | (((H[l] >> 6) & 3) << 4)) - 32) * qn[96 + l];
      }
    }
    for (int u = 0; u < 16; ++u) c[u] = d * static_cast<float>(sc[u]);
  } else {  // Q4_K, Q5_K
    const bool five = type == kQ5_K;
    const uint8_t* blk = row + g * (five ? 176 : 144);
    const float d = f16le(blk), dmin = f16le(blk + 2);
    const uint8_t* qh = blk + 16;
    const uint8_t* qs = five ? blk + 48 : blk + 16;
    for (int j = 0; j < 8; ++j) {  // sub-block j: chunk j / 2, low (j even) or high nibbles
      int sc, m;
      scale_min(blk + 4, j, sc, m);
      int32_t s = 0;
      for (int l = 0; l < 32; ++l) {
        const uint8_t byte = qs[32 * (j / 2) + l];
        const int n = (j % 2 ? hi(byte) : lo(byte)) + (five ? 16 * ((qh[l] >> j) & 1) : 0);
        s += n * q[32 * j + l];
      }
      I[j] = s;
      c[j] = d * static_cast<float>(sc);
      mn[j] = dmin * static_cast<float>(m);
    }
  }
  const uint64_t nl = lanes(type);
  for (uint64_t j = 0; j < nl; ++j) {
    const float A = (type == kQ6_K ? x.f[16 * g + j] : x.d[8 * g + j]) * static_cast<float>(I[j]);
    const float t = c[j] * A;
    acc[j] = acc[j] + t;
    if (type == kQ4_1) {
      const float u = mn[j] * x.f[8 * g + j];
      acc[j] = acc[j] + u;
    } else if (type == kQ4_K || type == kQ5_K) {
      const float u = mn[j] * x.f[8 * g + j];
      acc[j] = acc[j] - u;
    }
  }
}

float reduce_lanes(float* acc, uint64_t nl) {
  if (nl == 16)
    for (int j = 0; j < 8; ++j) acc[j] = acc[j] + acc[j + 8];
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

#if FERRUM_SIMD_X86
// ---- AVX-512 VNNI -------------------------------------------------------------------------------
#define FERRUM_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))
#define FERRUM_VNNI_INLINE \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c"), always_inline)) inline

bool has_vnni() {
  static const bool v = simd::has_avx512() && __builtin_cpu_supports("avx512vnni");
  return v;
}

// Software prefetch of the weight stream, kPrefetch bytes ahead (m = 1; gguf.cpp measured why).
constexpr uint64_t kPrefetch = 8192;

FERRUM_VNNI_INLINE __m512i ld64(const uint8_t* p) {  // two 32-byte loads (line-split 64-byte loads are slow here)
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)), 1);
}
FERRUM_VNNI_INLINE __m128i ld16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
FERRUM_VNNI_INLINE __m256i ld32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
// Unsigned weight bytes u times 64 activation codes (aligned), 4 products per int32 lane.
FERRUM_VNNI_INLINE __m512i dot4(__m512i acc, __m512i u, const int8_t* q) {
  return _mm512_dpbusd_epi32(acc, u, _mm512_load_si512(q));
}
// The f16 scales at p, p + stride, …, p + 7·stride as 8 floats.
FERRUM_VNNI_INLINE __m256 f16x8(const uint8_t* p, uint64_t stride) {
  const auto h = [&](int j) {
    int16_t v;
    std::memcpy(&v, p + j * stride, 2);
    return v;
  };
  return _mm256_cvtph_ps(_mm_setr_epi16(h(0), h(1), h(2), h(3), h(4), h(5), h(6), h(7)));
}

// Two vectors of four 4-lane chunks (a: blocks 0-3, b: blocks 4-7, one per 128-bit chunk) -> the
// 8 block sums in block order.
FERRUM_VNNI_INLINE __m256i sums_4x4(__m512i a, __m512i b) {
  const __m512i t = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  const __m512i u = _mm512_add_epi32(t, _mm512_shuffle_epi32(t, _MM_PERM_BADC));  // chunk k: a_k, b_k, a_k, b_k
  return _mm512_castsi512_si256(
      _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0), u));
}
// Chunk sums of four vectors: lane 4k + v of the result = Σ of 128-bit chunk k of p[v].
FERRUM_VNNI_INLINE __m512i chunk_sums(const __m512i* p) {
  const __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(p[0], p[1]), _mm512_unpackhi_epi32(p[0], p[1]));
  const __m512i t23 = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2], p[3]), _mm512_unpackhi_epi32(p[2], p[3]));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23), _mm512_unpackhi_epi64(t01, t23));
}
// Four vectors of two 8-lane halves (one block per half) -> 8 block sums, lane j taken from
// `order[j]` of [p0.lo, p1.lo, p2.lo, p3.lo, –, –, –, –, p0.hi, p1.hi, p2.hi, p3.hi, …].
FERRUM_VNNI_INLINE __m256i sums_4x2(const __m512i* p, __m512i order) {
  const __m512i u = chunk_sums(p);
  const __m512i v = _mm512_add_epi32(u, _mm512_shuffle_i32x4(u, u, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, v));
}

// Bytes with bit a set (low 32 bytes) and bit b set (high 32 bytes).
FERRUM_VNNI_INLINE __m512i bit_halves(int a, int b) {
  return _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << a)), _mm256_set1_epi8(static_cast<char>(1 << b)), 1);
}

// The weights of one full group as vpdpbusd operands: u[v] is multiplied with the 64 arranged
// activation codes at 64v; cm holds the f32 coefficients: c (lanes 0-7) and the min / offset
// coefficient (lanes 8-15; Q4_1 m, Q4_K / Q5_K dmin·mn_j), Q6_K: c of its 16 lanes.
struct WGroup {
  __m512i u[4];
  __m512 cm;
};

// Q4_0 / Q4_1, 8 blocks: 4 blocks' qs per vector (one per 128-bit chunk); the low nibbles go with
// the arranged columns 0-15 of each block, the high ones with columns 16-31.
// Q8_0: two blocks' qs per vector, offset to unsigned (+128; corrected by 128·Σq).
// Q4_K / Q5_K: the 64 qs bytes of chunks 2h, 2h + 1; their low nibbles are sub-blocks 4h, 4h + 2,
// the high ones 4h + 1, 4h + 3 (Q5_K: + 16 from qh, bits 4h … 4h + 3).
// Q6_K, half n: the 64 ql bytes' low nibbles are columns 128n + 0 … 63, the high ones
// 128n + 64 … 127 (column order); bits 4-5 from qh, shifted per 32-byte half.
template <int32_t kType>
FERRUM_VNNI_INLINE WGroup unpack(const uint8_t* blk) {
  const __m512i m4 = _mm512_set1_epi8(15);
  WGroup w;
  if constexpr (kType == kQ4_0 || kType == kQ4_1) {
    constexpr uint64_t bb = block_bytes(kType), qo = kType == kQ4_0 ? 2 : 4;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* p = blk + 4 * h * bb + qo;
      __m512i v = _mm512_castsi128_si512(ld16(p));
      v = _mm512_inserti32x4(v, ld16(p + bb), 1);
      v = _mm512_inserti32x4(v, ld16(p + 2 * bb), 2);
      v = _mm512_inserti32x4(v, ld16(p + 3 * bb), 3);
      w.u[2 * h] = _mm512_and_si512(v, m4);
      w.u[2 * h + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
    const __m256 m = kType == kQ4_1 ? f16x8(blk + 2, bb) : _mm256_setzero_ps();
    w.cm = _mm512_insertf32x8(_mm512_castps256_ps512(f16x8(blk, bb)), m, 1);
  } else if constexpr (kType == kQ8_0) {
    for (int i = 0; i < 4; ++i) {
      const uint8_t* b = blk + 2 * i * 34 + 2;
      const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(ld32(b)), ld32(b + 34), 1);
      w.u[i] = _mm512_xor_si512(v, _mm512_set1_epi8(static_cast<char>(0x80)));
    }
    w.cm = _mm512_castps256_ps512(f16x8(blk, 34));
  } else if constexpr (kType == kQ4_K || kType == kQ5_K) {
    constexpr bool kFive = kType == kQ5_K;
    alignas(64) float s[16];
    kquant_scales(blk, s);
    const uint8_t* qs = blk + (kFive ? 48 : 16);
    __m512i qh = _mm512_setzero_si512();
    if constexpr (kFive) qh = _mm512_broadcast_i64x4(ld32(blk + 16));
    for (int h = 0; h < 2; ++h) {
      const __m512i v = ld64(qs + 64 * h);
      __m512i l = _mm512_and_si512(v, m4), u = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
      if constexpr (kFive) {
        const __m512i sixteen = _mm512_set1_epi8(16);
        l = _mm512_mask_add_epi8(l, _mm512_test_epi8_mask(qh, bit_halves(4 * h, 4 * h + 2)), l, sixteen);
        u = _mm512_mask_add_epi8(u, _mm512_test_epi8_mask(qh, bit_halves(4 * h + 1, 4 * h + 3)), u, sixteen);
      }
      w.u[2 * h] = l;
      w.u[2 * h + 1] = u;
    }
    w.cm = _mm512_load_ps(s);
  } else {
    const __m512i m30 = _mm512_set1_epi8(0x30);
    const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    for (int n = 0; n < 2; ++n) {
      const __m512i L = ld64(blk + 64 * n), H = _mm512_broadcast_i64x4(ld32(blk + 128 + 32 * n));
      w.u[2 * n] = _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_and_si512(_mm512_sllv_epi16(H, shl), m30));
      w.u[2 * n + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                       _mm512_and_si512(_mm512_srlv_epi16(H, shr), m30));
    }
    w.cm = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(static_cast<unsigned short>(blk[208] | (blk[209] << 8)))),
                         _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(ld16(blk + 192))));
  }
  return w;
}

// The lane accumulator of one output: 8 lanes, Q6_K 16.
template <bool k16>
struct AccOf {
  using type = __m256;
};
template <>
struct AccOf<true> {
  using type = __m512;
};
template <int32_t kType>
using Acc = typename AccOf<kType == kQ6_K>::type;

// The exact block sums of one group with activation row x, then the f32 lane updates of
// gguf_q8.hpp: acc += c·(d_b·I) (and ± m·f).
template <int32_t kType>
FERRUM_VNNI_INLINE Acc<kType> combine(const WGroup& w, const QRow& x, uint64_t g, Acc<kType> acc) {
  const int8_t* q = x.q + 256 * g;
  const __m512i z = _mm512_setzero_si512();
  if constexpr (kType == kQ6_K) {
    const __m512i p[4] = {dot4(z, w.u[0], q), dot4(z, w.u[1], q + 64), dot4(z, w.u[2], q + 128), dot4(z, w.u[3], q + 192)};
    // chunk k of p[v] is the 16-column group 4v + k: to group order
    const __m512i R = _mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), chunk_sums(p));
    const __m512i I = _mm512_sub_epi32(R, _mm512_loadu_si512(x.corr + 16 * g));
    return _mm512_add_ps(acc, _mm512_mul_ps(w.cm, _mm512_mul_ps(_mm512_loadu_ps(x.f + 16 * g), _mm512_cvtepi32_ps(I))));
  } else {
    __m256i I;
    if constexpr (kType == kQ4_0 || kType == kQ4_1) {
      I = sums_4x4(dot4(dot4(z, w.u[0], q), w.u[1], q + 64), dot4(dot4(z, w.u[2], q + 128), w.u[3], q + 192));
    } else {
      const __m512i p[4] = {dot4(z, w.u[0], q), dot4(z, w.u[1], q + 64), dot4(z, w.u[2], q + 128), dot4(z, w.u[3], q + 192)};
      I = sums_4x2(p, kType == kQ8_0 ? _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 0, 0, 0, 0, 0, 0, 0, 0)
                                     : _mm512_setr_epi32(0, 1, 8, 9, 2, 3, 10, 11, 0, 0, 0, 0, 0, 0, 0, 0));
    }
    if constexpr (kType == kQ4_0 || kType == kQ8_0)
      I = _mm256_sub_epi32(I, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.corr + 8 * g)));
    const __m256 c = _mm512_castps512_ps256(w.cm);
    acc = _mm256_add_ps(acc, _mm256_mul_ps(c, _mm256_mul_ps(_mm256_loadu_ps(x.d + 8 * g), _mm256_cvtepi32_ps(I))));
    if constexpr (kType == kQ4_1)
      acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm512_extractf32x8_ps(w.cm, 1), _mm256_loadu_ps(x.f + 8 * g)));
    if constexpr (kType == kQ4_K || kType == kQ5_K)
      acc = _mm256_sub_ps(acc, _mm256_mul_ps(_mm512_extractf32x8_ps(w.cm, 1), _mm256_loadu_ps(x.f + 8 * g)));
    return acc;
  }
}

template <int32_t kType>
constexpr uint64_t group_bytes = small_block(kType) ? 8 * block_bytes(kType) : block_bytes(kType);

// The lanes of one output (stored): the partial last group (portable code), then their sum.
template <int32_t kType>
float finish(float* acc, const uint8_t* row, uint64_t K, const QRow& x) {
  if (small_block(kType) && K % 256) group_portable(kType, row, K / 256, K / 32, x, acc);
  return reduce_lanes(acc, lanes(kType));
}
template <int32_t kType>
FERRUM_VNNI_INLINE float finish(Acc<kType> v, const uint8_t* row, uint64_t K, const QRow& x) {
  alignas(64) float acc[16];
  if constexpr (kType == kQ6_K) _mm512_store_ps(acc, v);
  else _mm256_store_ps(acc, v);
  return finish<kType>(acc, row, K, x);
}

// m = 1: one weight row, unpacked group by group, prefetching the weight stream.
template <int32_t kType>
FERRUM_VNNI float row_dot_vnni(const uint8_t* row, uint64_t K, const QRow& x) {
  Acc<kType> acc{};
  const char* pf = reinterpret_cast<const char*>(row) + kPrefetch;
  for (uint64_t g = 0; g < K / 256; ++g) {
    for (const char* end = reinterpret_cast<const char*>(row) + (g + 1) * group_bytes<kType> + kPrefetch; pf < end;
         pf += 64)
      _mm_prefetch(pf, _MM_HINT_T0);
    acc = combine<kType>(unpack<kType>(row + g * group_bytes<kType>), x, g, acc);
  }
  return finish<kType>(acc, row, K, x);
}

// ---- m > 1: transposed groups ---------------------------------------------------------------------
// The weights of a group are unpacked once per call (per tile of weight rows) into vectors whose
// int32 lane j holds 4 codes of block j (Q6_K: of 16-column group j): vector v lane j = columns
// 4v … 4v + 3 of that block. The activation codes of the full groups are stored the same way
// (Order::transposed), so the vpdpbusd chain over the vectors of a group leaves the exact block
// sums in block order, with no reduction across lanes. 8-lane types: two activation rows share
// one 16-lane vector (row i: lanes 0-7, row i + 1: lanes 8-15) and the weight vectors are
// broadcast to both halves. The f32 lane updates are gguf_q8.hpp's, lane by lane.

// r[j] = the 32 codes of block j in column order -> o[v] lane j = dword v of r[j].
FERRUM_VNNI_INLINE void transpose8(const __m256i* r, __m256i* o) {
  __m256i t[8], u[8];
  for (int k = 0; k < 4; ++k) {
    t[2 * k] = _mm256_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm256_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
  }
  for (int k = 0; k < 2; ++k) {  // u[4k + d]: dword d of each 128-bit half, rows 4k … 4k + 3
    u[4 * k] = _mm256_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
    u[4 * k + 1] = _mm256_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
    u[4 * k + 2] = _mm256_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
    u[4 * k + 3] = _mm256_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
  }
  for (int d = 0; d < 4; ++d) {
    o[d] = _mm256_permute2x128_si256(u[d], u[4 + d], 0x20);
    o[4 + d] = _mm256_permute2x128_si256(u[d], u[4 + d], 0x31);
  }
}

// u: 256 codes in column order (u[k] chunk L = 16-column group 4k + L) -> u[v] lane j = dword v of
// 16-column group j.
FERRUM_VNNI_INLINE void transpose16x4(__m512i* u) {
  const __m512i t0 = _mm512_unpacklo_epi32(u[0], u[1]), t1 = _mm512_unpackhi_epi32(u[0], u[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(u[2], u[3]), t3 = _mm512_unpackhi_epi32(u[2], u[3]);
  const __m512i o[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2), _mm512_unpacklo_epi64(t1, t3),
                        _mm512_unpackhi_epi64(t1, t3)};  // o[v] lane 4L + k = dword v of group 4k + L
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  for (int v = 0; v < 4; ++v) u[v] = _mm512_permutexvar_epi32(order, o[v]);
}

// One full group transposed, as a WGroup: Q6_K u[v] = vector v (16 lanes); the 8-lane types: the
// 8 vectors of 32 bytes one after the other in u.
template <int32_t kType>
FERRUM_VNNI_INLINE WGroup transposed(const uint8_t* blk) {
  WGroup w;
  if constexpr (kType == kQ6_K) {
    WGroup c = unpack<kQ6_K>(blk);  // column order
    transpose16x4(c.u);
    for (int v = 0; v < 4; ++v) w.u[v] = c.u[v];
    w.cm = c.cm;
    return w;
  } else {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i r[8], o[8];
    if constexpr (kType == kQ4_0 || kType == kQ4_1) {
      constexpr uint64_t bb = block_bytes(kType), qo = kType == kQ4_0 ? 2 : 4;
      for (int j = 0; j < 8; ++j) {
        const __m128i x = ld16(blk + j * bb + qo);
        r[j] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(x, _mm256_castsi256_si128(m4))),
                                       _mm_and_si128(_mm_srli_epi16(x, 4), _mm256_castsi256_si128(m4)), 1);
      }
      const __m256 m = kType == kQ4_1 ? f16x8(blk + 2, bb) : _mm256_setzero_ps();
      w.cm = _mm512_insertf32x8(_mm512_castps256_ps512(f16x8(blk, bb)), m, 1);
    } else if constexpr (kType == kQ8_0) {
      for (int j = 0; j < 8; ++j) r[j] = _mm256_xor_si256(ld32(blk + 34 * j + 2), _mm256_set1_epi8(static_cast<char>(0x80)));
      w.cm = _mm512_castps256_ps512(f16x8(blk, 34));
    } else {  // Q4_K, Q5_K: chunk c = sub-blocks 2c (low nibbles), 2c + 1 (high), + 16 from qh bits 2c, 2c + 1
      constexpr bool kFive = kType == kQ5_K;
      alignas(64) float s[16];
      kquant_scales(blk, s);
      const uint8_t* qs = blk + (kFive ? 48 : 16);
      const __m256i qh = ld32(blk + 16), one = _mm256_set1_epi8(1);
      for (int c = 0; c < 4; ++c) {
        const __m256i x = ld32(qs + 32 * c);
        r[2 * c] = _mm256_and_si256(x, m4);
        r[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
        if constexpr (kFive) {  // bit → 16 within each byte (no carry across bytes: the bit is 0 or 1)
          r[2 * c] = _mm256_or_si256(r[2 * c], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4));
          r[2 * c + 1] =
              _mm256_or_si256(r[2 * c + 1], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4));
        }
      }
      w.cm = _mm512_load_ps(s);
    }
    transpose8(r, o);
    for (int v = 0; v < 8; ++v) _mm256_store_si256(reinterpret_cast<__m256i*>(w.u) + v, o[v]);
    return w;
  }
}

// The two activation rows' 32-byte pieces at the same offset as one 16-lane vector.
FERRUM_VNNI_INLINE __m512i two_rows(const int8_t* a, const int8_t* b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(ld32(reinterpret_cast<const uint8_t*>(a))),
                            ld32(reinterpret_cast<const uint8_t*>(b)), 1);
}
FERRUM_VNNI_INLINE __m512 two_rows(const float* a, const float* b) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(a)), _mm256_loadu_ps(b), 1);
}

// The same quantisation as quantize_row, 32 columns per step (the same IEEE operations: the
// largest magnitude with NaNs skipped, one division per code, rounding to nearest even, codes
// kept where |a/d_b| < 127.5), then each full group put in `order`.
template <class T>
FERRUM_VNNI void quantize_row_vnni(int32_t type, const T* a, uint64_t K, uint8_t* dst, Order order) {
  const Layout lay(K);
  const uint64_t G = lay.groups;
  std::memset(dst, 0, lay.stride);
  auto* q = reinterpret_cast<int8_t*>(dst);
  const __m512 sign = _mm512_set1_ps(-0.0f), limit = _mm512_set1_ps(127.5f);
  for (uint64_t b = 0; b < K / 32; ++b) {
    const __m512 v0 = simd::load16(a + 32 * b), v1 = simd::load16(a + 32 * b + 16);
    const __m512 a0 = _mm512_andnot_ps(sign, v0), a1 = _mm512_andnot_ps(sign, v1);
    // max(x, acc) returns acc where x is NaN: NaNs are skipped as in quantize_row
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a1, _mm512_max_ps(a0, _mm512_setzero_ps())));
    const float db = amax / 127.0f;
    const __m512 dv = _mm512_set1_ps(db);
    const __m512 r0 = _mm512_div_ps(v0, dv), r1 = _mm512_div_ps(v1, dv);
    const __m512i q0 = _mm512_maskz_cvtps_epi32(_mm512_cmp_ps_mask(_mm512_andnot_ps(sign, r0), limit, _CMP_LT_OQ), r0);
    const __m512i q1 = _mm512_maskz_cvtps_epi32(_mm512_cmp_ps_mask(_mm512_andnot_ps(sign, r1), limit, _CMP_LT_OQ), r1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * b), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * b + 16), _mm512_cvtepi32_epi8(q1));
    block_values(type, b, db, _mm512_reduce_add_epi32(q0), _mm512_reduce_add_epi32(q1),
                 reinterpret_cast<float*>(dst + 256 * G), reinterpret_cast<float*>(dst + 288 * G),
                 reinterpret_cast<int32_t*>(dst + 352 * G));
  }
  for (uint64_t g = 0; g < K / 256; ++g) {
    uint8_t* p = dst + 256 * g;
    if (order == Order::transposed) {
      if (type == kQ6_K) {
        __m512i u[4];
        for (int k = 0; k < 4; ++k) u[k] = _mm512_load_si512(p + 64 * k);
        transpose16x4(u);
        for (int k = 0; k < 4; ++k) _mm512_store_si512(p + 64 * k, u[k]);
      } else {
        __m256i r[8], o[8];
        for (int j = 0; j < 8; ++j) r[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 32 * j));
        transpose8(r, o);
        for (int v = 0; v < 8; ++v) _mm256_store_si256(reinterpret_cast<__m256i*>(p + 32 * v), o[v]);
      }
    } else if (type != kQ8_0 && type != kQ6_K) {  // unpack order; Q8_0 and Q6_K keep column order
      // per 128 columns, as qwords: Q4_0 / Q4_1 the 16-column halves of the 4 blocks, low halves
      // first; Q4_K / Q5_K the 32-column segments in the order 0, 2, 1, 3
      const bool q4 = type == kQ4_0 || type == kQ4_1;
      const __m512i lo = q4 ? _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13) : _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
      const __m512i hi = q4 ? _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15) : _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
      for (int h = 0; h < 2; ++h) {
        const __m512i x = _mm512_load_si512(p + 128 * h), y = _mm512_load_si512(p + 128 * h + 64);
        _mm512_store_si512(p + 128 * h, _mm512_permutex2var_epi64(x, lo, y));
        _mm512_store_si512(p + 128 * h + 64, _mm512_permutex2var_epi64(x, hi, y));
      }
    }
  }
}

// m > 1: the full groups of nr (≤ kTileRows) weight rows transposed once into `prep` (L1), then
// every activation row runs over them; res[i·nr + j] = output (i, row j).
template <int32_t kType>
FERRUM_VNNI void tile_vnni(const uint8_t* w, uint64_t rb, uint64_t nr, uint64_t K, const uint8_t* qa,
                           const Layout& lay, uint64_t m, float* res) {
  const uint64_t full = K / 256;
  auto* prep = reinterpret_cast<WGroup*>(t_prep.get(nr * full * sizeof(WGroup) / sizeof(float)));
  for (uint64_t j = 0; j < nr; ++j)
    for (uint64_t g = 0; g < full; ++g) prep[j * full + g] = transposed<kType>(w + j * rb + g * group_bytes<kType>);
  const WGroup* p[kTileRows];  // rows past nr repeat the last one (computed, not stored)
  for (uint64_t j = 0; j < kTileRows; ++j) p[j] = prep + std::min(j, nr - 1) * full;
  const __m512i z = _mm512_setzero_si512();
  alignas(64) float lanes16[kTileRows][16];
  if constexpr (kType == kQ6_K) {
    for (uint64_t i = 0; i < m; ++i) {
      const QRow x = view(qa + i * lay.stride, lay.groups);
      __m512 acc[kTileRows];
      for (auto& a : acc) a = _mm512_setzero_ps();
      for (uint64_t g = 0; g < full; ++g) {
        const int8_t* q = x.q + 256 * g;
        const __m512 d = _mm512_loadu_ps(x.f + 16 * g);
        const __m512i corr = _mm512_loadu_si512(x.corr + 16 * g);
#pragma GCC unroll 4
        for (uint64_t j = 0; j < kTileRows; ++j) {
          const WGroup& wg = p[j][g];
          __m512i R = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, wg.u[0], _mm512_load_si512(q)), wg.u[1], _mm512_load_si512(q + 64));
          R = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(R, wg.u[2], _mm512_load_si512(q + 128)), wg.u[3], _mm512_load_si512(q + 192));
          const __m512i I = _mm512_sub_epi32(R, corr);
          acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(wg.cm, _mm512_mul_ps(d, _mm512_cvtepi32_ps(I))));
        }
      }
      for (uint64_t j = 0; j < nr; ++j) {
        _mm512_store_ps(lanes16[j], acc[j]);
        res[i * nr + j] = finish<kType>(lanes16[j], w + j * rb, K, x);
      }
    }
  } else {
    for (uint64_t i = 0; i < m; i += 2) {
      const uint64_t i2 = std::min(i + 1, m - 1);  // an odd last row runs twice, stored once
      const QRow x1 = view(qa + i * lay.stride, lay.groups), x2 = view(qa + i2 * lay.stride, lay.groups);
      __m512 acc[kTileRows];
      for (auto& a : acc) a = _mm512_setzero_ps();
      for (uint64_t g = 0; g < full; ++g) {
        const int8_t* q1 = x1.q + 256 * g;
        const int8_t* q2 = x2.q + 256 * g;
        __m512i R[kTileRows][2];
        for (auto& r : R) r[0] = r[1] = z;
#pragma GCC unroll 8
        for (int v = 0; v < 8; ++v) {
          const __m512i A = two_rows(q1 + 32 * v, q2 + 32 * v);
#pragma GCC unroll 4
          for (uint64_t j = 0; j < kTileRows; ++j)
            R[j][v & 1] = _mm512_dpbusd_epi32(  // the row's vector v in both halves
                R[j][v & 1], _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(p[j][g].u) + v)), A);
        }
        const __m512 d = two_rows(x1.d + 8 * g, x2.d + 8 * g);
        __m512i corr = z;
        if constexpr (kType == kQ4_0 || kType == kQ8_0)
          corr = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1.corr + 8 * g))),
                                    _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x2.corr + 8 * g)), 1);
        __m512 f = _mm512_setzero_ps();
        if constexpr (kType == kQ4_1 || kType == kQ4_K || kType == kQ5_K) f = two_rows(x1.f + 8 * g, x2.f + 8 * g);
#pragma GCC unroll 4
        for (uint64_t j = 0; j < kTileRows; ++j) {
          const __m512i I = _mm512_sub_epi32(_mm512_add_epi32(R[j][0], R[j][1]), corr);  // exact integers
          const __m512 cm = p[j][g].cm;
          const __m512 c = _mm512_shuffle_f32x4(cm, cm, _MM_SHUFFLE(1, 0, 1, 0));
          acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(c, _mm512_mul_ps(d, _mm512_cvtepi32_ps(I))));
          if constexpr (kType == kQ4_1 || kType == kQ4_K || kType == kQ5_K) {
            const __m512 mf = _mm512_mul_ps(_mm512_shuffle_f32x4(cm, cm, _MM_SHUFFLE(3, 2, 3, 2)), f);
            acc[j] = kType == kQ4_1 ? _mm512_add_ps(acc[j], mf) : _mm512_sub_ps(acc[j], mf);
          }
        }
      }
      for (uint64_t j = 0; j < nr; ++j) {
        _mm512_store_ps(lanes16[j], acc[j]);
        res[i * nr + j] = finish<kType>(lanes16[j], w + j * rb, K, x1);
        if (i2 != i) res[i2 * nr + j] = finish<kType>(lanes16[j] + 8, w + j * rb, K, x2);
      }
    }
  }
}
#endif

#if FERRUM_SIMD_X86
// ---- AVX2 without VNNI: K-quant tiles with the weight rows in the lanes ---------------------------
// For x86 CPUs with AVX2 but no AVX-512 VNNI, m > 1 (m = 1 runs the direct kernels further down). The weights of a tile of kAvxRows = 8 rows are unpacked once per call into units (the
// lanes of gguf_q8.hpp: a 32-column sub-block, Q6_K a 16-column group) interleaved by row: the
// 32-byte vector (u, g, t) holds in int32 lane n the 4 codes of weight row n at columns
// 4t … 4t + 3 of unit u of group g. One broadcast of 4 activation codes then feeds 8 rows
// (vpmaddubsw: unsigned code × signed code, pairs summed in int16; vpmaddwd widens to int32), so
// the exact unit sums I of 8 rows end in the 8 lanes of one vector and gguf_q8.hpp's f32 lane
// updates run for 8 rows at once (lane = weight row, one vector per unit and activation row: no
// reduction across lanes). int16 sums never saturate: a pair of products is at most 2·15·127
// (Q4_K), 2·31·127 (Q5_K) or 2·63·127 (Q6_K), and 8 / 4 / 2 pairs are summed before widening.
#define FERRUM_Q8_AVX2 __attribute__((target("avx2,f16c")))
#define FERRUM_Q8_AVX2_INLINE __attribute__((target("avx2,f16c"), always_inline)) inline

bool has_avx2_q8() {
  static const bool v = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && simd::has_f16c();
  }();
  return v;
}

constexpr bool avx2_type(int32_t t) { return t == kQ4_K || t == kQ5_K || t == kQ6_K; }
constexpr uint64_t kAvxRows = 8;   // weight rows per tile (the 8 lanes)
constexpr uint64_t kAvxAct = 8;    // activation rows per pass over a tile (registers: 8 int16 sums, W, one broadcast)
constexpr uint64_t kAvxChunk = 4;  // groups per pass over the units (keeps the pass in L1)

template <int32_t kType>
constexpr int kUnits = kType == kQ6_K ? 16 : 8;  // units per group
template <int32_t kType>
constexpr int kSteps = 256 / kUnits<kType> / 4;  // 4-column steps per unit: 8 or 4
template <int32_t kType>
constexpr int kSpan = kType == kQ4_K ? 8 : kType == kQ5_K ? 4 : 2;  // steps summed in int16

// r[n] = 8 dwords of row n -> o[t] lane n = dword t of r[n].
FERRUM_Q8_AVX2_INLINE void transpose8_avx2(const __m256i* r, __m256i* o) {
  __m256i t[8], u[8];
#pragma GCC unroll 16
  for (int k = 0; k < 4; ++k) {
    t[2 * k] = _mm256_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm256_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
  }
#pragma GCC unroll 16
  for (int k = 0; k < 2; ++k) {
    u[4 * k] = _mm256_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
    u[4 * k + 1] = _mm256_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
    u[4 * k + 2] = _mm256_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
    u[4 * k + 3] = _mm256_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
  }
#pragma GCC unroll 16
  for (int d = 0; d < 4; ++d) {
    o[d] = _mm256_permute2x128_si256(u[d], u[4 + d], 0x20);
    o[4 + d] = _mm256_permute2x128_si256(u[d], u[4 + d], 0x31);
  }
}

// The 32 bytes at offset `at` of each of the 8 rows, transposed (o[t] lane n = row n's bytes
// at + 4t … at + 4t + 3).
FERRUM_Q8_AVX2_INLINE void load_rows_t(const uint8_t* const* rows, uint64_t at, __m256i* o) {
  __m256i r[8];
#pragma GCC unroll 16
  for (int n = 0; n < 8; ++n) r[n] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[n] + at));
  transpose8_avx2(r, o);
}

// 8 f16 bit patterns (the low 16 bits of each int32 lane, the rest 0) -> 8 floats (exact).
FERRUM_Q8_AVX2_INLINE __m256 f16_lanes(__m256i h) {
  const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0x08);  // lanes 0-3, 4-7 as 8 × u16
  return _mm256_cvtph_ps(_mm256_castsi256_si128(p));
}

// Unpacks the G groups of a tile of nr ≤ 8 weight rows (rows past nr repeat the last one):
// codes[(u·G + g)·S + t] as above, cf[(u·G + g)·8 + n] = unit u's coefficient of row n (Q4_K /
// Q5_K d·sc_j, Q6_K d·sc_u) and mf[…] = dmin·mn_j (Q4_K / Q5_K), each exact as in group_portable.
template <int32_t kType>
FERRUM_Q8_AVX2 void prep_avx2(const uint8_t* w, uint64_t rb, uint64_t nr, uint64_t G, __m256i* codes, float* cf,
                              float* mf) {
  constexpr uint64_t U = kUnits<kType>, S = kSteps<kType>, bb = block_bytes(kType);
  const uint8_t* rows[kAvxRows];
#pragma GCC unroll 16
  for (uint64_t n = 0; n < kAvxRows; ++n) rows[n] = w + std::min(n, nr - 1) * rb;
  const __m256i m4 = _mm256_set1_epi8(15);
  auto at = [&](uint64_t u, uint64_t g, int t) { return codes + (u * G + g) * S + t; };
  // the next tile (the rows after this one, contiguous) is fetched while this one is unpacked: 8
  // rows' worth of blocks per group (prefetches past the matrix are harmless)
  const char* pf = reinterpret_cast<const char*>(w + kAvxRows * rb);
  for (uint64_t g = 0; g < G; ++g) {
#pragma GCC unroll 16
    for (uint64_t o = 0; o < kAvxRows * bb; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
    pf += kAvxRows * bb;
    const uint64_t b0 = g * bb;
    // the coefficients of the 8 rows at once (lane n = row n), the same exact products as group_portable
    if constexpr (kType == kQ6_K) {
      __m256i r[8], T[8];
#pragma GCC unroll 16
      for (uint64_t n = 0; n < kAvxRows; ++n) {
        uint16_t dh;
        std::memcpy(&dh, rows[n] + b0 + 208, 2);
        r[n] = _mm256_set_m128i(_mm_cvtsi32_si128(dh), _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[n] + b0 + 192)));
      }
      transpose8_avx2(r, T);  // T[0..3]: the 16 scales, 4 per lane; T[4]: d
      const __m256 d = f16_lanes(T[4]);
#pragma GCC unroll 16
      for (uint64_t u = 0; u < 16; ++u) {
        const __m256i sc = _mm256_srai_epi32(_mm256_sll_epi32(T[u / 4], _mm_cvtsi32_si128(static_cast<int>(24 - 8 * (u % 4)))), 24);
        _mm256_store_ps(cf + (u * G + g) * 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc)));
      }
    } else {
      __m256i T[8];
      load_rows_t(rows, b0, T);  // T[0]: d | dmin << 16; T[1..3]: the 12 scale bytes
      const __m256 d = f16_lanes(_mm256_and_si256(T[0], _mm256_set1_epi32(0xFFFF)));
      const __m256 dmin = f16_lanes(_mm256_srli_epi32(T[0], 16));
      const __m256i m63 = _mm256_set1_epi32(63), m15 = _mm256_set1_epi32(15), m3 = _mm256_set1_epi32(3);
#pragma GCC unroll 16
      for (uint64_t j = 0; j < 8; ++j) {
        const __m128i sh = _mm_cvtsi32_si128(static_cast<int>(8 * (j % 4)));
        __m256i sc, mn;
        if (j < 4) {  // scales[j] & 63, scales[j + 4] & 63
          sc = _mm256_and_si256(_mm256_srl_epi32(T[1], sh), m63);
          mn = _mm256_and_si256(_mm256_srl_epi32(T[2], sh), m63);
        } else {  // (scales[j + 4] & 15) | (scales[j - 4] >> 6) << 4, (scales[j + 4] >> 4) | (scales[j] >> 6) << 4
          const __m256i s8 = _mm256_srl_epi32(T[3], sh), s0 = _mm256_srl_epi32(T[1], sh), s4 = _mm256_srl_epi32(T[2], sh);
          sc = _mm256_or_si256(_mm256_and_si256(s8, m15), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(s0, 6), m3), 4));
          mn = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(s8, 4), m15),
                               _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(s4, 6), m3), 4));
        }
        _mm256_store_ps(cf + (j * G + g) * 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc)));
        _mm256_store_ps(mf + (j * G + g) * 8, _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(mn)));
      }
    }
    __m256i T[8];
    if constexpr (kType == kQ6_K) {
      const __m256i m30 = _mm256_set1_epi8(0x30);
#pragma GCC unroll 16
      for (uint64_t h = 0; h < 2; ++h) {  // columns 128h … 128h + 127
        __m256i Lo[8], Lh[8], Hq[8];
        load_rows_t(rows, b0 + 64 * h, Lo);
        load_rows_t(rows, b0 + 64 * h + 32, Lh);
        load_rows_t(rows, b0 + 128 + 32 * h, Hq);
#pragma GCC unroll 16
        for (int t = 0; t < 8; ++t) {
          // 32-column segment 4h + k: units 8h + 2k (t < 4) and 8h + 2k + 1, step t % 4
          const __m256i v[4] = {
              _mm256_or_si256(_mm256_and_si256(Lo[t], m4), _mm256_and_si256(_mm256_slli_epi16(Hq[t], 4), m30)),
              _mm256_or_si256(_mm256_and_si256(Lh[t], m4), _mm256_and_si256(_mm256_slli_epi16(Hq[t], 2), m30)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(Lo[t], 4), m4), _mm256_and_si256(Hq[t], m30)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(Lh[t], 4), m4),
                              _mm256_and_si256(_mm256_srli_epi16(Hq[t], 2), m30))};
#pragma GCC unroll 16
          for (uint64_t k = 0; k < 4; ++k) _mm256_store_si256(at(8 * h + 2 * k + t / 4, g, t % 4), v[k]);
        }
      }
    } else {  // Q4_K, Q5_K: chunk c = sub-blocks 2c (low nibbles), 2c + 1 (high), + 16 from qh bits 2c, 2c + 1
      constexpr bool kFive = kType == kQ5_K;
      __m256i H[8];
      if constexpr (kFive) load_rows_t(rows, b0 + 16, H);
      const __m256i one = _mm256_set1_epi8(1);
#pragma GCC unroll 16
      for (int c = 0; c < 4; ++c) {
        load_rows_t(rows, b0 + (kFive ? 48 : 16) + 32 * static_cast<uint64_t>(c), T);
#pragma GCC unroll 16
        for (int t = 0; t < 8; ++t) {
          __m256i lo = _mm256_and_si256(T[t], m4), hi = _mm256_and_si256(_mm256_srli_epi16(T[t], 4), m4);
          if constexpr (kFive) {  // bit → 16 within each byte (the masked bit is 0 or 1: no carry)
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(H[t], _mm_cvtsi32_si128(2 * c)), one), 4));
            hi = _mm256_or_si256(hi,
                                 _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(H[t], _mm_cvtsi32_si128(2 * c + 1)), one), 4));
          }
          _mm256_store_si256(at(2 * static_cast<uint64_t>(c), g, t), lo);
          _mm256_store_si256(at(2 * static_cast<uint64_t>(c) + 1, g, t), hi);
        }
      }
    }
  }
}

// R activation rows against a prepared tile: lane[(r·U + u)·8 + n] = the f32 lane accumulator of
// unit u for activation row r and weight row n, updated group by group in gguf_q8.hpp's order.
// An empty asm on the value: GCC would otherwise re-associate the int16 sums of a unit into a tree
// (all products live at once, spilled to the stack).
FERRUM_Q8_AVX2_INLINE void keep(__m256i& v) { asm("" : "+x"(v)); }

template <int32_t kType, int R>
FERRUM_Q8_AVX2 void units_avx2(const __m256i* codes, const float* cf, const float* mf, uint64_t G, const uint8_t* pass,
                               float* lane) {
  constexpr uint64_t U = kUnits<kType>, S = kSteps<kType>;
  const __m256i ones = _mm256_set1_epi16(1);
  const float* pd = reinterpret_cast<const float*>(pass + R * 256 * G);  // d_b per unit and row
  const float* pf = pd + R * G * U;                                      // f (Q6_K: the int32 correction)
  alignas(32) int32_t sums[kAvxChunk][R][8];  // the exact unit sums of one chunk (integer phase -> f32 phase)
  for (uint64_t g0 = 0; g0 < G; g0 += kAvxChunk) {
    const uint64_t nc = std::min(G - g0, kAvxChunk);
    for (uint64_t u = 0; u < U; ++u) {
      const __m256i* wv = codes + (u * G + g0) * S;
      for (uint64_t c = 0; c < nc; ++c, wv += S) {
        const uint8_t* pq = pass + ((g0 + c) * U + u) * S * R * 4;  // step t, row r: pq + 4·(t·R + r)
        __m256i I[R];
#pragma GCC unroll 8
        for (uint64_t t0 = 0; t0 < S; t0 += kSpan<kType>) {
          __m256i sm[R];
#pragma GCC unroll 8
          for (uint64_t t = t0; t < t0 + kSpan<kType>; ++t) {
            const __m256i wt = _mm256_load_si256(wv + t);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
              int32_t a4;
              std::memcpy(&a4, pq + 4 * (t * R + r), 4);
              const __m256i pr = _mm256_maddubs_epi16(wt, _mm256_set1_epi32(a4));
              sm[r] = t == t0 ? pr : _mm256_add_epi16(sm[r], pr);
              keep(sm[r]);
            }
          }
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
            const __m256i v = _mm256_madd_epi16(sm[r], ones);
            I[r] = t0 == 0 ? v : _mm256_add_epi32(I[r], v);
          }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) _mm256_store_si256(reinterpret_cast<__m256i*>(sums[c][r]), I[r]);
      }
      // f32 phase: gguf_q8.hpp's lane updates, group by group
      __m256 acc[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r] = g0 ? _mm256_load_ps(lane + (r * U + u) * 8) : _mm256_setzero_ps();
      for (uint64_t c = 0; c < nc; ++c) {
        const uint64_t gb = (u * G + g0 + c) * 8, vb = ((g0 + c) * U + u) * R;  // vb: the unit's values of row 0
        const __m256 cv = _mm256_load_ps(cf + gb);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          __m256i Ir = _mm256_load_si256(reinterpret_cast<const __m256i*>(sums[c][r]));
          if constexpr (kType == kQ6_K) {
            int32_t corr;
            std::memcpy(&corr, pf + vb + r, 4);
            Ir = _mm256_sub_epi32(Ir, _mm256_set1_epi32(corr));
          }
          const __m256 A = _mm256_mul_ps(_mm256_set1_ps(pd[vb + r]), _mm256_cvtepi32_ps(Ir));
          acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(cv, A));
          if constexpr (kType == kQ4_K || kType == kQ5_K)
            acc[r] = _mm256_sub_ps(acc[r], _mm256_mul_ps(_mm256_load_ps(mf + gb), _mm256_set1_ps(pf[vb + r])));
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) _mm256_store_ps(lane + (r * U + u) * 8, acc[r]);
    }
  }
}

// Activation rows [0, m) are taken in passes of kAvxAct rows while that many are left, then 4, 2, 1
// (an output's arithmetic never depends on its pass).
constexpr uint64_t pass_size(uint64_t left) {
  return left >= kAvxAct ? kAvxAct : left >= 4 ? 4 : left >= 2 ? 2 : 1;
}
// Passes in that order without a list: m / kAvxAct full ones, then one of 4, 2, 1 rows for each bit
// of m % kAvxAct; pass p as (first row, rows).
static_assert(kAvxAct == 8, "the remainder passes are the bits of m % 8");
constexpr uint64_t pass_count(uint64_t m) {
  return m / kAvxAct + ((m & 4) != 0) + ((m & 2) != 0) + ((m & 1) != 0);
}
constexpr std::pair<uint64_t, uint64_t> pass_at(uint64_t m, uint64_t p) {
  const uint64_t full = m / kAvxAct;
  if (p < full) return {p * kAvxAct, kAvxAct};
  uint64_t i = full * kAvxAct, q = p - full;
  for (uint64_t R : {uint64_t{4}, uint64_t{2}, uint64_t{1}}) {
    if (!(m & R)) continue;
    if (q == 0) return {i, R};
    --q;
    i += R;
  }
  return {m, 0};
}
// The activations in pass order, kPassRowBytes·K / 256 bytes per row: the pass of rows [i, i + R)
// starts at byte i·(that) and holds the codes of unit u of group g, step t, row r at
// 4·(((g·U + u)·S + t)·R + r) (the R rows' 4 codes for one broadcast each, one pointer for all), then
// d_b per unit at float [(g·U + u)·R + r] after the R·K codes, then f (Q6_K: the int32 correction)
// the same way.
template <int32_t kType>
constexpr uint64_t kPassRowBytes = 256 + 8 * kUnits<kType>;  // per group

template <int32_t kType>
void build_passes(const uint8_t* qa, const Layout& lay, uint64_t K, uint64_t m, uint8_t* out) {
  constexpr uint64_t U = kUnits<kType>, S = kSteps<kType>, W = 256 / U;
  const uint64_t G = K / 256;
  parallel_for(pass_count(m), 1, [&](uint64_t p0, uint64_t p1) {
    for (uint64_t p = p0; p < p1; ++p) {
      const auto [i, R] = pass_at(m, p);
      uint8_t* base = out + i * G * kPassRowBytes<kType>;
      auto* pd = reinterpret_cast<float*>(base + R * 256 * G);
      float* pf = pd + R * G * U;
      for (uint64_t r = 0; r < R; ++r) {
        const QRow x = view(qa + (i + r) * lay.stride, lay.groups);
        for (uint64_t g = 0; g < G; ++g)
          for (uint64_t u = 0; u < U; ++u) {
            const uint64_t b = g * U + u;  // the unit's index in the row (its 32-block, Q6_K its 16 columns)
            for (uint64_t t = 0; t < S; ++t) std::memcpy(base + 4 * ((b * S + t) * R + r), x.q + 256 * g + W * u + 4 * t, 4);
            pd[b * R + r] = kType == kQ6_K ? x.f[b] : x.d[b];
            if constexpr (kType == kQ6_K) std::memcpy(pf + b * R + r, x.corr + b, 4);
            else pf[b * R + r] = x.f[b];
          }
      }
    }
  });
}

// A tile of nr ≤ kAvxRows weight rows with every activation row: res[i·nr + n] = output (i, row n);
// qp: the activations in pass order (build_passes).
template <int32_t kType>
FERRUM_Q8_AVX2 void tile_avx2(const uint8_t* w, uint64_t rb, uint64_t nr, uint64_t K, const uint8_t* qp,
                              const Layout&, uint64_t m, float* res) {
  constexpr uint64_t U = kUnits<kType>;
  const uint64_t G = K / 256;
  // scratch: the codes (8 bytes per column), cf and mf (U·G·8 floats each), the lanes of kAvxAct rows
  // arith-ok: G ≤ K / 256 and the weight rows of K columns are in memory, so these sizes are far below 2^64
  float* base = t_prep.get(2 * K + 2 * U * G * 8 + kAvxAct * U * 8);
  auto* codes = reinterpret_cast<__m256i*>(base);
  float* cf = base + 2 * K;
  float* mf = cf + U * G * 8;
  float* lane = mf + U * G * 8;
  prep_avx2<kType>(w, rb, nr, G, codes, cf, mf);
  for (uint64_t i = 0; i < m;) {
    const uint64_t R = pass_size(m - i);
    const uint8_t* pass = qp + i * G * kPassRowBytes<kType>;
    switch (R) {
      case 1: units_avx2<kType, 1>(codes, cf, mf, G, pass, lane); break;
      case 2: units_avx2<kType, 2>(codes, cf, mf, G, pass, lane); break;
      case 4: units_avx2<kType, 4>(codes, cf, mf, G, pass, lane); break;
      default: units_avx2<kType, kAvxAct>(codes, cf, mf, G, pass, lane); break;
    }
    for (uint64_t r = 0; r < R; ++r) {
      const float* l = lane + r * U * 8;
      __m256 a[8];
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        a[j] = _mm256_load_ps(l + 8 * j);
        if constexpr (U == 16) a[j] = _mm256_add_ps(a[j], _mm256_load_ps(l + 8 * (j + 8)));  // acc_u + acc_{u+8}
      }
      const __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6])),
                                       _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7])));
      alignas(32) float o[8];
      _mm256_store_ps(o, sum);
      for (uint64_t n = 0; n < nr; ++n) res[(i + r) * nr + n] = o[n];
    }
    i += R;
  }
}

// ---- AVX2 without VNNI: direct block kernels ----------------------------------------------------
// One weight row's blocks are read as they are stored (no per-call unpacked copy) and multiplied
// with R activation rows: every group's weight codes are decoded once into registers (nibble masks,
// Q5_K / Q6_K high bits; Q8_0 its magnitudes), then per activation row vpmaddubsw (unsigned weight
// code × signed activation code, adjacent pairs summed in int16) and int16 / int32 horizontal adds
// leave the group's exact block sums I (Q6_K: per 16 columns) in the 8 lanes of one vector (Q6_K:
// two), where gguf_q8.hpp's f32 lane updates run as on the other paths. Used for all six types at
// m = 1 and for Q4_0 / Q4_1 / Q8_0 at every m (the K-quants at m > 1 keep the tiles above).
// int16 bounds (vpmaddubsw and vphaddw do not widen): a pair of products is at most 2·15·127 = 3810
// (Q4), 2·31·127 = 7874 (Q5_K), 2·63·127 = 16002 (Q6_K), 2·128·127 = 32512 (Q8_0: |w| × ±q, the
// sign moved onto the activation code); every int16 sum below stays under 32767 (noted per type).
// Q4_0's nibble − 8 is taken off afterwards with its per-block 8·Σq (exact integers).

constexpr uint64_t kDirectRows = 4;  // activation rows per pass over a weight row (m > 1)

// A group's weight operands (decoded once, used for every activation row of a pass).
struct DGroup {
  __m256i w[16];  // Q4: 8 nibble vectors; Q8_0: 8 magnitudes, then the 8 signed blocks; K: 8 (Q6_K 8)
  __m256 c[2];    // the lane coefficients: d (Q4_0, Q4_1, Q8_0), d·sc_j (Q4_K, Q5_K), d·sc_u (Q6_K: 16)
  __m256 mn;      // Q4_1: the blocks' m; Q4_K / Q5_K: dmin·mn_j
};

// The dwords at grp + k·stride, k = 0 … 7 (the f16 d (and Q4_1's m) of the 8 blocks of a group).
// (Eight scalar loads: measured faster here than vpgatherdd.)
template <int stride>
FERRUM_Q8_AVX2_INLINE __m256i block_heads(const uint8_t* grp) {
  const auto h = [grp](int j) {
    int32_t v;
    std::memcpy(&v, grp + j * stride, 4);
    return v;
  };
  return _mm256_setr_epi32(h(0), h(1), h(2), h(3), h(4), h(5), h(6), h(7));
}

FERRUM_Q8_AVX2_INLINE __m256i ld32u(const void* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
FERRUM_Q8_AVX2_INLINE __m128i ld16u(const void* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// quantize_row with AVX2: the same IEEE operations (the largest magnitude with NaNs skipped, one
// f32 division per code, rounding to nearest even by vcvtps2dq in the default rounding mode, codes
// kept where |a / d_b| < 127.5, i.e. where the rounded value is in [−127, 127]), so the same bytes.
template <class T>
FERRUM_Q8_AVX2 void quantize_row_avx2(int32_t type, const T* a, uint64_t K, uint8_t* dst) {
  const uint64_t G = Layout(K).groups;
  std::memset(dst, 0, Layout(K).stride);
  auto* q = reinterpret_cast<int8_t*>(dst);
  const __m256 sign = _mm256_set1_ps(-0.0f), limit = _mm256_set1_ps(127.5f);
  for (uint64_t b = 0; b < K / 32; ++b) {
    __m256 x[4], mx = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      if constexpr (std::is_same_v<T, float>) {
        x[i] = _mm256_loadu_ps(a + 32 * b + 8 * i);
      } else {
        alignas(32) float v[8];
        for (int k = 0; k < 8; ++k) v[k] = to_float(a[32 * b + 8 * i + k]);
        x[i] = _mm256_load_ps(v);
      }
      mx = _mm256_max_ps(_mm256_andnot_ps(sign, x[i]), mx);  // returns mx where |x| is NaN
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float db = _mm_cvtss_f32(m4) / 127.0f;
    const __m256 dv = _mm256_set1_ps(db);
    __m256i qi[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const __m256 r = _mm256_div_ps(x[i], dv);
      const __m256 keep = _mm256_cmp_ps(_mm256_andnot_ps(sign, r), limit, _CMP_LT_OQ);  // false for NaN
      qi[i] = _mm256_and_si256(_mm256_cvtps_epi32(r), _mm256_castps_si256(keep));
    }
    const __m256i bytes = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3])),
        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 32 * b), bytes);
    int32_t s[2];
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i t = _mm256_add_epi32(qi[2 * h], qi[2 * h + 1]);
      __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
      u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0x4E));
      u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0xB1));
      s[h] = _mm_cvtsi128_si32(u);
    }
    block_values(type, b, db, s[0], s[1], reinterpret_cast<float*>(dst + 256 * G), reinterpret_cast<float*>(dst + 288 * G),
                 reinterpret_cast<int32_t*>(dst + 352 * G));
  }
}

// Q4 activation order (the arrange hook): per full group, vector v (32 bytes) = the codes of
// 16-column chunk v (low 16 bytes) and chunk v + 8 (high 16 bytes), i.e. vector 2p + h holds
// half h of blocks p and p + 4: the order the nibbles of two blocks loaded side by side come out.
void arrange_q4(uint8_t* row, uint64_t K) {
  for (uint64_t g = 0; g < K / 256; ++g) {
    uint8_t t[256];
    std::memcpy(t, row + 256 * g, 256);
    for (int v = 0; v < 8; ++v) {
      std::memcpy(row + 256 * g + 32 * v, t + 16 * v, 16);
      std::memcpy(row + 256 * g + 32 * v + 16, t + 16 * (v + 8), 16);
    }
  }
}

template <int32_t kType>
FERRUM_Q8_AVX2_INLINE void decode_group(const uint8_t* grp, DGroup& o) {
  const __m256i m4 = _mm256_set1_epi8(15);
  if constexpr (kType == kQ4_0 || kType == kQ4_1) {
    constexpr uint64_t bb = block_bytes(kType), qo = kType == kQ4_0 ? 2 : 4;
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {  // blocks p (low 128 bits) and p + 4 (high)
      const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(ld16u(grp + p * bb + qo)),
                                                ld16u(grp + (p + 4) * bb + qo), 1);
      o.w[2 * p] = _mm256_and_si256(v, m4);                             // columns 0-15
      o.w[2 * p + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);  // columns 16-31
    }
    const __m256i h = block_heads<static_cast<int>(bb)>(grp);
    o.c[0] = f16_lanes(_mm256_and_si256(h, _mm256_set1_epi32(0xFFFF)));
    if constexpr (kType == kQ4_1) o.mn = f16_lanes(_mm256_srli_epi32(h, 16));
  } else if constexpr (kType == kQ8_0) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m256i v = ld32u(grp + 34 * j + 2);
      o.w[j] = _mm256_sign_epi8(v, v);  // |w| as an unsigned byte (−128 → 128)
      o.w[8 + j] = v;
    }
    o.c[0] = f16_lanes(_mm256_and_si256(block_heads<34>(grp), _mm256_set1_epi32(0xFFFF)));
  } else if constexpr (kType == kQ4_K || kType == kQ5_K) {
    // sub-blocks p and p + 4 side by side as Q4_0's blocks (the same activation order): sub-block j
    // is the low (j even) or high nibbles of 32-byte chunk j / 2, so X_h = chunks 0 | 2 and
    // Y_h = chunks 1 | 3 (bytes 16h … 16h + 15 of each) give pairs 0, 1 (X) and 2, 3 (Y)
    constexpr bool kFive = kType == kQ5_K;
    const uint8_t* qs = grp + (kFive ? 48 : 16);
    const __m256i b4 = _mm256_set1_epi8(16);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i X = _mm256_inserti128_si256(_mm256_castsi128_si256(ld16u(qs + 16 * h)), ld16u(qs + 64 + 16 * h), 1);
      const __m256i Y = _mm256_inserti128_si256(_mm256_castsi128_si256(ld16u(qs + 32 + 16 * h)), ld16u(qs + 96 + 16 * h), 1);
      __m256i v[4] = {_mm256_and_si256(X, m4), _mm256_and_si256(_mm256_srli_epi16(X, 4), m4), _mm256_and_si256(Y, m4),
                      _mm256_and_si256(_mm256_srli_epi16(Y, 4), m4)};
      if constexpr (kFive) {
        // qh bytes 16h … 16h + 15 in both halves, the high half shifted right by 4 bits per dword:
        // bit p (low half) / p + 4 (high half) of each byte is then its bit p, p < 4 (clean), which
        // a left shift by 4 − p puts at bit 4 (= +16) without reaching into the neighbouring byte
        const __m256i qh = _mm256_srlv_epi32(_mm256_broadcastsi128_si256(ld16u(grp + 16 + 16 * h)),
                                             _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
        v[0] = _mm256_or_si256(v[0], _mm256_and_si256(_mm256_slli_epi16(qh, 4), b4));
        v[1] = _mm256_or_si256(v[1], _mm256_and_si256(_mm256_slli_epi16(qh, 3), b4));
        v[2] = _mm256_or_si256(v[2], _mm256_and_si256(_mm256_slli_epi16(qh, 2), b4));
        v[3] = _mm256_or_si256(v[3], _mm256_and_si256(_mm256_slli_epi16(qh, 1), b4));
      }
#pragma GCC unroll 4
      for (int p = 0; p < 4; ++p) o.w[2 * p + h] = v[p];
    }
    // the 8 scales and mins (6 bits each, gguf_fields::scale_min) as bytes [sc0 … sc7, mn0 … mn7]
    const __m128i v = ld16u(grp + 4);
    const __m128i p = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i q = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m128i low = _mm_or_si128(
        _mm_and_si128(p, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0)),
        _mm_and_si128(_mm_srli_epi16(p, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15)));
    const __m128i sm = _mm_or_si128(low, _mm_and_si128(_mm_srli_epi16(q, 2), _mm_set1_epi8(0x30)));
    int32_t dd;
    std::memcpy(&dd, grp, 4);
    const __m128 d2 = _mm_cvtph_ps(_mm_cvtsi32_si128(dd));  // d, dmin
    o.c[0] = _mm256_mul_ps(_mm256_broadcastss_ps(d2), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm)));
    o.mn = _mm256_mul_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(d2)),
                         _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8))));
  } else {  // Q6_K, half n: ql 64 bytes (L0, L1), qh 32 bytes (H): 4 vectors of 32 columns in column order
    const __m256i m30 = _mm256_set1_epi8(0x30);
#pragma GCC unroll 2
    for (int n = 0; n < 2; ++n) {
      const __m256i L0 = ld32u(grp + 64 * n), L1 = ld32u(grp + 64 * n + 32), H = ld32u(grp + 128 + 32 * n);
      // bits 2k, 2k + 1 of qh → bits 4, 5 (the neighbouring byte's bits land outside 0x30)
      o.w[4 * n] = _mm256_or_si256(_mm256_and_si256(L0, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
      o.w[4 * n + 1] = _mm256_or_si256(_mm256_and_si256(L1, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
      o.w[4 * n + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L0, 4), m4), _mm256_and_si256(H, m30));
      o.w[4 * n + 3] =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
    }
    uint16_t dh;
    std::memcpy(&dh, grp + 208, 2);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(dh));
    const __m128i sc = ld16u(grp + 192);
    o.c[0] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)));
    o.c[1] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))));
  }
}

// The exact integer sums of one decoded group with the activation codes q (this group's 256, in
// the type's order): S[0] lane j = I of block / sub-block j; Q6_K S[0], S[1] = the 16-column groups
// 0-7, 8-15 (the 32·Σq correction still to take off; Q4_0: the 8·Σq one).
template <int32_t kType>
FERRUM_Q8_AVX2_INLINE void group_sums(const DGroup& w, const int8_t* q, __m256i* S) {
  const __m256i ones = _mm256_set1_epi16(1);
#define mb(v, at) _mm256_maddubs_epi16(w.w[v], ld32u(q + (at)))
  if constexpr (kType == kQ4_0 || kType == kQ4_1) {
    __m256i P[4];  // blocks p | p + 4, 16 int16 sums of 4 products each (≤ 7620)
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) P[p] = _mm256_add_epi16(mb(2 * p, 64 * p), mb(2 * p + 1, 64 * p + 32));
    // two levels of int16 adds (≤ 30480), then int32: lane k = block k (low half), k + 4 (high half)
    const __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(P[0], P[1]), _mm256_hadd_epi16(P[2], P[3]));
    S[0] = _mm256_madd_epi16(h, ones);
  } else if constexpr (kType == kQ8_0) {
    __m256i M[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j)  // |w|·(±q) pairs ≤ 32512, widened at once
      M[j] = _mm256_madd_epi16(_mm256_maddubs_epi16(w.w[j], _mm256_sign_epi8(ld32u(q + 32 * j), w.w[8 + j])), ones);
    const __m256i X = _mm256_hadd_epi32(_mm256_hadd_epi32(M[0], M[1]), _mm256_hadd_epi32(M[2], M[3]));
    const __m256i Y = _mm256_hadd_epi32(_mm256_hadd_epi32(M[4], M[5]), _mm256_hadd_epi32(M[6], M[7]));
    // X lane k: block k's low 16 columns (k < 4) or block k − 4's high ones; Y the same for blocks 4-7
    S[0] = _mm256_add_epi32(_mm256_permute2x128_si256(X, Y, 0x20), _mm256_permute2x128_si256(X, Y, 0x31));
  } else if constexpr (kType == kQ4_K || kType == kQ5_K) {
    __m256i P[4];  // sub-blocks p | p + 4 (as Q4_0), int16 sums of 4 products ≤ 7620 (Q4_K) / 15748 (Q5_K)
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) P[p] = _mm256_add_epi16(mb(2 * p, 64 * p), mb(2 * p + 1, 64 * p + 32));
    if constexpr (kType == kQ4_K) {  // two levels of int16 adds (≤ 30480), then int32
      S[0] = _mm256_madd_epi16(_mm256_hadd_epi16(_mm256_hadd_epi16(P[0], P[1]), _mm256_hadd_epi16(P[2], P[3])), ones);
    } else {  // one level (≤ 31496), then int32
      S[0] = _mm256_hadd_epi32(_mm256_madd_epi16(_mm256_hadd_epi16(P[0], P[1]), ones),
                               _mm256_madd_epi16(_mm256_hadd_epi16(P[2], P[3]), ones));
    }
  } else {  // Q6_K
    __m256i M[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k)  // one level of int16 adds (pairs of pairs ≤ 32004), then int32
      M[k] = _mm256_madd_epi16(_mm256_hadd_epi16(mb(2 * k, 64 * k), mb(2 * k + 1, 64 * k + 32)), ones);
    // vector v = columns 32v … 32v + 31 = the 16-column groups 2v (low half), 2v + 1 (high half):
    // X = groups [0, 2, 4, 6 | 1, 3, 5, 7], Y the same + 8, permuted to group order
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    S[0] = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(M[0], M[1]), order);
    S[1] = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(M[2], M[3]), order);
  }
#undef mb
}

// gguf_q8.hpp's f32 lane updates for group g of activation row x.
template <int32_t kType>
FERRUM_Q8_AVX2_INLINE void group_update(const DGroup& w, const __m256i* S, const QRow& x, uint64_t g, __m256* acc) {
  if constexpr (kType == kQ6_K) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i I = _mm256_sub_epi32(S[h], ld32u(x.corr + 16 * g + 8 * h));
      const __m256 A = _mm256_mul_ps(_mm256_loadu_ps(x.f + 16 * g + 8 * h), _mm256_cvtepi32_ps(I));
      acc[h] = _mm256_add_ps(acc[h], _mm256_mul_ps(w.c[h], A));
    }
  } else {
    __m256i I = S[0];
    if constexpr (kType == kQ4_0) I = _mm256_sub_epi32(I, ld32u(x.corr + 8 * g));
    const __m256 A = _mm256_mul_ps(_mm256_loadu_ps(x.d + 8 * g), _mm256_cvtepi32_ps(I));
    acc[0] = _mm256_add_ps(acc[0], _mm256_mul_ps(w.c[0], A));
    if constexpr (kType == kQ4_1) acc[0] = _mm256_add_ps(acc[0], _mm256_mul_ps(w.mn, _mm256_loadu_ps(x.f + 8 * g)));
    if constexpr (kType == kQ4_K || kType == kQ5_K)
      acc[0] = _mm256_sub_ps(acc[0], _mm256_mul_ps(w.mn, _mm256_loadu_ps(x.f + 8 * g)));
  }
}

// One weight row with R activation rows x[0 … R): out[r] = the output (full groups here, a partial
// last group and the lane sum as finish does).
template <int32_t kType, int R>
FERRUM_Q8_AVX2 void direct_rows(const uint8_t* row, uint64_t K, const QRow* x, float* out) {
  __m256 acc[R][2];
  for (auto& a : acc) a[0] = a[1] = _mm256_setzero_ps();
  // (no software prefetch: with it m = 1 measured slower on this path, L3-resident or not)
  for (uint64_t g = 0; g < K / 256; ++g) {
    DGroup w;
    decode_group<kType>(row + g * group_bytes<kType>, w);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m256i S[2];
      group_sums<kType>(w, x[r].q + 256 * g, S);
      group_update<kType>(w, S, x[r], g, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(32) float lanes16[16];
    _mm256_store_ps(lanes16, acc[r][0]);
    _mm256_store_ps(lanes16 + 8, acc[r][1]);
    out[r] = finish<kType>(lanes16, row, K, x[r]);
  }
}

template <int32_t kType>
float row_dot_direct(const uint8_t* row, uint64_t K, const QRow& x) {
  float out;
  direct_rows<kType, 1>(row, K, &x, &out);
  return out;
}

// A tile of nr weight rows with every activation row, each weight row against kDirectRows
// activation rows at a time (then 2, 1): res[i·nr + j] = output (i, row j).
template <int32_t kType>
void tile_direct(const uint8_t* w, uint64_t rb, uint64_t nr, uint64_t K, const uint8_t* qa, const Layout& lay,
                 uint64_t m, float* res) {
  for (uint64_t j = 0; j < nr; ++j)
    for (uint64_t i = 0; i < m;) {
      const uint64_t R = m - i >= kDirectRows ? kDirectRows : m - i >= 2 ? 2 : 1;
      QRow x[kDirectRows];
      float o[kDirectRows];
      for (uint64_t r = 0; r < R; ++r) x[r] = view(qa + (i + r) * lay.stride, lay.groups);
      if (R == kDirectRows) direct_rows<kType, kDirectRows>(w + j * rb, K, x, o);
      else if (R == 2) direct_rows<kType, 2>(w + j * rb, K, x, o);
      else direct_rows<kType, 1>(w + j * rb, K, x, o);
      for (uint64_t r = 0; r < R; ++r) res[(i + r) * nr + j] = o[r];
      i += R;
    }
}
#endif

template <int32_t kType>
float row_dot_portable(const uint8_t* row, uint64_t K, const QRow& x) {
  float acc[16] = {};
  for (uint64_t g = 0; g < (K + 255) / 256; ++g) group_portable(kType, row, g, K / 32, x, acc);
  return reduce_lanes(acc, lanes(kType));
}

template <int32_t kType>
void tile_portable(const uint8_t* w, uint64_t rb, uint64_t nr, uint64_t K, const uint8_t* qa, const Layout& lay,
                   uint64_t m, float* res) {
  for (uint64_t i = 0; i < m; ++i)
    for (uint64_t j = 0; j < nr; ++j) res[i * nr + j] = row_dot_portable<kType>(w + j * rb, K, view(qa + i * lay.stride, lay.groups));
}

// The kernels of one type and path: one weight row with one activation row (m = 1), a tile of
// weight rows with every activation row (m > 1).
// tile_rows: weight rows per tile; tile_m1: the tile kernel also runs m = 1 (no row kernel);
// passes (AVX2 tiles): the tile kernel reads the activations in pass order, built by it from qa
// into pass_bytes·K / 256 bytes per row; arrange (AVX2 direct Q4_0 / Q4_1): puts the codes of
// each quantised row's full groups in the order the row and tile kernels read them.
struct Kernels {
  float (*row)(const uint8_t* row, uint64_t K, const QRow& x);
  void (*tile)(const uint8_t* w, uint64_t rb, uint64_t nr, uint64_t K, const uint8_t* qa, const Layout& lay,
               uint64_t m, float* res);
  uint64_t tile_rows = kTileRows;
  bool tile_m1 = false;
  void (*passes)(const uint8_t* qa, const Layout& lay, uint64_t K, uint64_t m, uint8_t* out) = nullptr;
  uint64_t pass_bytes = 0;
  void (*arrange)(uint8_t* row, uint64_t K) = nullptr;
};

enum class Isa { vnni, avx2, portable };

template <int32_t kType>
Kernels kernels_of(Isa isa) {
#if FERRUM_SIMD_X86
  if (isa == Isa::vnni) return {row_dot_vnni<kType>, tile_vnni<kType>};
  if (isa == Isa::avx2) {
    // the K-quants: the direct kernel at m = 1, the row-interleaved tiles at m > 1; the 32-weight
    // types: the direct kernels at every m
    if constexpr (avx2_type(kType))
      return {row_dot_direct<kType>, tile_avx2<kType>, kAvxRows, false, build_passes<kType>, kPassRowBytes<kType>,
              kType == kQ6_K ? nullptr : arrange_q4};
    return {row_dot_direct<kType>, tile_direct<kType>, kTileRows, false, nullptr, 0,
            kType == kQ8_0 ? nullptr : arrange_q4};
  }
#endif
  (void)isa;
  return {row_dot_portable<kType>, tile_portable<kType>};
}

Kernels kernels(int32_t type, Isa isa) {
  switch (type) {
    case kQ4_0: return kernels_of<kQ4_0>(isa);
    case kQ4_1: return kernels_of<kQ4_1>(isa);
    case kQ8_0: return kernels_of<kQ8_0>(isa);
    case kQ4_K: return kernels_of<kQ4_K>(isa);
    case kQ5_K: return kernels_of<kQ5_K>(isa);
    default: return kernels_of<kQ6_K>(isa);
  }
}

Isa isa_of(Q8Path path) {
#if FERRUM_SIMD_X86
  if (path == Q8Path::best && has_vnni()) return Isa::vnni;
  if ((path == Q8Path::best || path == Q8Path::avx2) && has_avx2_q8()) return Isa::avx2;
#endif
  (void)path;
  return Isa::portable;
}

// Runs f(begin, end) over [0, n) in pieces of `step`, each thread of the pool pulling the next
// piece from a shared counter until none is left. parallel_for's own chunks are at least an eighth
// of the range, and a pool worker starts tens of µs after the caller (measured on this VM): with
// small pieces the caller simply takes more of them, so the threads finish together. Every output
// is still computed whole by one thread, so the results do not depend on the split.
template <class F>
void split_dynamic(uint64_t n, uint64_t step, F&& f) {
  std::atomic<uint64_t> next{0};
  parallel_for(pool_threads(), 1, [&](uint64_t, uint64_t) {
    for (uint64_t b = next.fetch_add(step, std::memory_order_relaxed); b < n;
         b = next.fetch_add(step, std::memory_order_relaxed))
      f(b, std::min(n, b + step));
  });
}

}  // namespace

const char* gguf_q8_kernel_name() {
  switch (isa_of(Q8Path::best)) {
    case Isa::vnni: return "avx512_vnni";
    case Isa::avx2: return "avx2";
    default: return "portable";
  }
}

template <class T>
void gguf_matmul_q8(const GgufMatrix& w, const T* a, T* out, uint64_t m, Q8Path path) {
  const uint64_t K = w.cols, N = w.rows, rb = w.row_bytes();
  const Isa isa = isa_of(path);
  const bool vnni = isa == Isa::vnni;
  const Layout lay(K);
  const Kernels kn = kernels(w.type, isa);
  // Activation rows in chunks of kRowChunk: the quantised rows of one chunk are the scratch (an
  // output depends on its own activation row only, so the chunking changes no result).
  for (uint64_t c0 = 0; c0 < m; c0 += kRowChunk) {
    const uint64_t mc = std::min(kRowChunk, m - c0);
    const T* ac = a + c0 * K;
    T* oc = out + c0 * N;
    auto* qa = reinterpret_cast<uint8_t*>(t_q8.get(mc * lay.stride / sizeof(float)));
    const bool row_kernel = mc == 1 && !kn.tile_m1;
    // the arranged order is read by the row kernel and by tiles without passes (not by the AVX2
    // K-quant tiles, which build their pass order from column order)
    const bool arrange = kn.arrange && (row_kernel || !kn.passes);
    parallel_for(mc, 1, [&](uint64_t i0, uint64_t i1) {
      for (uint64_t i = i0; i < i1; ++i) {
#if FERRUM_SIMD_X86
        if (vnni) {
          quantize_row_vnni(w.type, ac + i * K, K, qa + i * lay.stride, mc == 1 ? Order::unpack : Order::transposed);
          continue;
        }
        if (isa == Isa::avx2) quantize_row_avx2(w.type, ac + i * K, K, qa + i * lay.stride);
        else
#endif
          quantize_row(w.type, ac + i * K, K, qa + i * lay.stride);
        if (arrange) kn.arrange(qa + i * lay.stride, K);
      }
    });
    if (kn.passes && !row_kernel) {  // the tile kernels read the activations in their pass order
      // arith-ok: the same bytes per row as the quantised rows' layout (pass_bytes ≤ 416 per group)
      auto* qp = reinterpret_cast<uint8_t*>(t_pass.get(mc * (K / 256) * kn.pass_bytes / sizeof(float) + 1));
      kn.passes(qa, lay, K, mc, qp);
      qa = qp;
    }
    if (row_kernel) {
      const QRow x = view(qa, lay.groups);
      split_dynamic(N, 16, [&](uint64_t r0, uint64_t r1) {
        for (uint64_t r = r0; r < r1; ++r) oc[r] = from_float<T>(kn.row(w.data + r * rb, K, x));
      });
      continue;
    }
    const uint64_t tr = kn.tile_rows;
    split_dynamic((N + tr - 1) / tr, 1, [&](uint64_t t0, uint64_t t1) {
      float* res = t_res.get(mc * tr);
      for (uint64_t t = t0; t < t1; ++t) {
        const uint64_t j0 = t * tr, nr = std::min(tr, N - j0);
        kn.tile(w.data + j0 * rb, rb, nr, K, qa, lay, mc, res);
        for (uint64_t i = 0; i < mc; ++i)
          for (uint64_t j = 0; j < nr; ++j) oc[i * N + j0 + j] = from_float<T>(res[i * nr + j]);
      }
    });
  }
}

#define FERRUM_GGUF_Q8_INSTANTIATE(T) \
  template void gguf_matmul_q8<T>(const GgufMatrix&, const T*, T*, uint64_t, Q8Path);
FERRUM_GGUF_Q8_INSTANTIATE(float)
FERRUM_GGUF_Q8_INSTANTIATE(f16)
FERRUM_GGUF_Q8_INSTANTIATE(bf16)
#undef FERRUM_GGUF_Q8_INSTANTIATE

}  // namespace ferrum::cpu
