// ferrum CPU plugin — GGUF quantised matmul kernels (see gguf.hpp).
//
// Two paths:
//  * m = 1, Q4_0 / Q8_0 / Q4_K on AVX2+FMA+F16C: a fused per-row dot product straight from the
//    blocks (quants widened to f32 in registers, the f16 scale applied once per block or sub-block;
//    the Q4_K min term uses per-sub-block activation sums computed once per call). Memory-bound.
//  * everything else: rows are decoded exactly into a small per-chunk tile (kTileRows rows, in L1/L2)
//    and each activation row is dotted with the tile's rows (AVX2 FMA or portable scalar code).
// Both paths sum each output in a fixed order, so results do not depend on the thread count.
#include "gguf.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FERRUM_GGUF_X86 1
#endif

#include "parallel.hpp"

namespace ferrum::cpu {
namespace {

constexpr int32_t kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14;
constexpr uint64_t kTileRows = 4;

inline float f16le(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return to_float(f16{h});
}
inline int lo(uint8_t b) { return b & 15; }
inline int hi(uint8_t b) { return b >> 4; }

// K-quant scale pair j of a Q4_K / Q5_K block (§11.1).
inline void scale_min(const uint8_t* s, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = s[j] & 63;
    mn = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

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
#define FERRUM_AVX2 __attribute__((target("avx2,fma,f16c")))

FERRUM_AVX2 inline float hsum(__m256 v) {
  // same lane order as dot_rows_generic: (0+4, 1+5, 2+6, 3+7) then ((a+b)+(c+d))
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

bool has_avx2() {
  static const bool v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                        __builtin_cpu_supports("f16c");
  return v;
}
#else
bool has_avx2() { return false; }
#endif

bool fused_m1(int32_t type) { return has_avx2() && (type == kQ4_0 || type == kQ8_0 || type == kQ4_K); }

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

uint64_t gguf_qk(int32_t type) {
  switch (type) {
    case kQ4_0: case kQ4_1: case kQ8_0: return 32;
    case kQ4_K: case kQ5_K: case kQ6_K: return 256;
    default: return 0;
  }
}

uint64_t gguf_block_bytes(int32_t type) {
  switch (type) {
    case kQ4_0: return 18;
    case kQ4_1: return 20;
    case kQ8_0: return 34;
    case kQ4_K: return 144;
    case kQ5_K: return 176;
    case kQ6_K: return 210;
    default: return 0;
  }
}

const char* gguf_kernel_name() { return has_avx2() ? "avx2_fma" : "generic"; }

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
  const uint64_t K = w.cols, N = w.rows, rb = w.row_bytes();
  std::vector<float> a_store;
  const float* x = as_f32(a, m * K, a_store);

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
