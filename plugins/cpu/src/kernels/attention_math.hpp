// ferrum CPU plugin — the scalar pieces every attention kernel shares (attention.cpp, mla.cpp,
// paged.cpp, quant_kv.cpp): an f32 dot product with a fixed summation order, the visible key
// range of docs/spec.md §0.8, the online-softmax step (and, through
// <ferrum/common/softmax_scale.hpp>, the softmax scale).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include <ferrum/common/dtype.hpp>
#include <ferrum/common/softmax_scale.hpp>

namespace ferrum::cpu {

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Σ a[d]·b[d] over eight interleaved lanes summed pairwise, then the tail: the same order on
// every call, so a score does not depend on where the row lies in memory. Each lane step is a
// rounded multiply then a rounded add (no FMA): the AVX2 version (8 lanes, one register) gives
// exactly these bits and is chosen at run time where the CPU has it (attention_simd.cpp).
template <class E>
inline float dot_f32_portable(const float* a, const E* b, uint64_t n) {
  float lanes[8] = {};
  uint64_t d = 0;
  for (; d + 8 <= n; d += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += a[d + l] * to_float(b[d + l]);
  float r = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
  for (; d < n; ++d) r += a[d] * to_float(b[d]);
  return r;
}
// acc[d] += p·v[d] (a rounded multiply, then a rounded add, per element: any vector width gives
// the same bits).
template <class E>
inline void axpy_f32_portable(float* acc, float p, const E* v, uint64_t n) {
  for (uint64_t d = 0; d < n; ++d) acc[d] += p * to_float(v[d]);
}
// The run-time choices (AVX2 dot, AVX-512 axpy, or the portable code above).
float dot_f32(const float* a, const float* b, uint64_t n);
// acc[d] += p[j]·v[j·ldv + d] for j = 0 .. nj − 1 in that order, for every d < n — the same bits as
// nj axpy_f32 calls; the vector form keeps a block of acc in registers across the keys instead of
// storing and reloading it after every key.
void axpy_rows_f32(float* acc, const float* p, const float* v, uint64_t ldv, uint64_t nj, uint64_t n);
// out[r] = dot_f32(a, b + r·ldb, n) for r < 4, bit for bit: the four dots' lane chains are
// independent, so the vector form interleaves them (one dot's chain of dependent adds alone
// leaves the adder idle most of the time).
void dot4_f32(const float* a, const float* b, uint64_t ldb, uint64_t n, float* out);
void axpy_f32(float* acc, float p, const float* v, uint64_t n);
// The same three with f16 / bf16 rows b, v (widened exactly in registers): the bits of widening the
// rows to f32 first and calling the f32 forms.
float dot_f32(const float* a, const f16* b, uint64_t n);
float dot_f32(const float* a, const bf16* b, uint64_t n);
void dot4_f32(const float* a, const f16* b, uint64_t ldb, uint64_t n, float* out);
void dot4_f32(const float* a, const bf16* b, uint64_t ldb, uint64_t n, float* out);
void axpy_rows_f32(float* acc, const float* p, const f16* v, uint64_t ldv, uint64_t nj, uint64_t n);
void axpy_rows_f32(float* acc, const float* p, const bf16* v, uint64_t ldv, uint64_t nj, uint64_t n);

// Visible key range [lo, hi) of a query at position p over L keys (docs/spec.md §0.8): causal
// keys up to p, and with a sliding window W > 0 only the last W of them.
inline void visible_range(uint64_t p, uint64_t L, bool causal, uint64_t W, uint64_t& lo, uint64_t& hi) {
  hi = causal ? std::min(L, p + 1) : L;
  lo = (W != 0 && p + 1 > W) ? p + 1 - W : 0;
}

// The online softmax of every attention kernel (flash attention): a running max m, sum l and
// accumulator acc[0, width) per query row, updated one block of keys at a time.
//
// A new block whose largest score is `bmax` moves m to max(m, bmax) and rescales l and acc to it
// (m = −inf, no key yet, gives the factor 0).
inline void online_softmax_rescale(float& m, float& l, float* acc, uint64_t width, float bmax) {
  const float m_new = std::max(m, bmax);
  const float alpha = m == kNegInf ? 0.0f : std::exp(m - m_new);
  if (alpha != 1.0f)
    for (uint64_t d = 0; d < width; ++d) acc[d] *= alpha;
  l *= alpha;
  m = m_new;
}

// Then each key of score s and value row v: p = exp(s − m), l += p, acc += (p·w)·v (w: the value
// row's scale, 1 for unquantised values).
inline void online_softmax_add(float s, float m, const float* v, uint64_t width, float& l, float* acc, float w = 1.0f) {
  const float p = std::exp(s - m);
  l += p;
  axpy_f32(acc, p * w, v, width);
}

}  // namespace ferrum::cpu
