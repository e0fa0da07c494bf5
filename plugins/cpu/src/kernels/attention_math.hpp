// ferrum CPU plugin — the scalar pieces every attention kernel shares (attention.cpp, mla.cpp,
// paged.cpp, quant_kv.cpp): an f32 dot product with a fixed summation order and the visible key
// range of docs/spec.md §0.8 (and, through <ferrum/common/softmax_scale.hpp>, the softmax scale).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include <ferrum/common/softmax_scale.hpp>

namespace ferrum::cpu::attn {

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Σ a[d]·b[d] over eight interleaved lanes summed pairwise, then the tail: the same order on
// every call, so a score does not depend on where the row lies in memory.
inline float dot_f32(const float* a, const float* b, uint64_t n) {
  float lanes[8] = {};
  uint64_t d = 0;
  for (; d + 8 <= n; d += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += a[d + l] * b[d + l];
  float r = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
  for (; d < n; ++d) r += a[d] * b[d];
  return r;
}

// Visible key range [lo, hi) of a query at position p over L keys (docs/spec.md §0.8): causal
// keys up to p, and with a sliding window W > 0 only the last W of them.
inline void visible_range(uint64_t p, uint64_t L, bool causal, uint64_t W, uint64_t& lo, uint64_t& hi) {
  hi = causal ? std::min(L, p + 1) : L;
  lo = (W != 0 && p + 1 > W) ? p + 1 - W : 0;
}

}  // namespace ferrum::cpu::attn
