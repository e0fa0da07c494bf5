// GPTQ int4 (docs/spec.md §12.1): the host-side part of a repack that both project plugins share.
//
// gptq_layout orders the K input rows by group (stable; an act-order g_idx folded in) and pads
// each group's rows to a multiple of 8, so every group is a contiguous run of 8-row words and a
// word never straddles two groups; padding rows have src_row −1 (the kernels multiply them by a
// zero activation). It also decodes the zero points z (1..16; 8 without qzeros) and the scales ŝ
// rounded to the activation dtype, both as f32 [G, N]. How the nibbles are then stored is the
// plugin's business: gptq_nibble reads one from the source tensors.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include <ferrum/common/dtype.hpp>

namespace ferrum::common {

// Source tensors of one matrix (§12.1). `scales` holds G·n values of scales_dtype; qzeros / g_idx
// may be NULL. The caller has validated the shapes; g_idx values must be in [0, G).
struct GptqSource {
  const int32_t* qweight = nullptr;
  const void* scales = nullptr;
  const int32_t* qzeros = nullptr;
  const int32_t* g_idx = nullptr;
  uint64_t group_size = 0, k = 0, n = 0;  // group_size 0 = per-channel
  int32_t scales_dtype = 0, act_dtype = 0;
};

struct GptqLayout {
  uint64_t k = 0, n = 0, groups = 0;
  uint64_t kp = 0;                   // padded row count (multiple of 8)
  bool identity = true;              // padded row p is source row p for every p < k, kp == k
  std::vector<int64_t> src_row;      // [kp]: source row of padded row p, −1 for padding
  std::vector<uint64_t> group_word;  // [G + 1]: first word row of each group
  std::vector<float> zero, scale;    // [G, n]: z and ŝ
};

// Scale i of `p` (scales_dtype F32, F16 or BF16), widened exactly.
inline float gptq_read_scale(const void* p, int32_t dtype, uint64_t i) {
  const auto* b = static_cast<const uint8_t*>(p);
  if (dtype == FERRUM_DTYPE_F32) {
    float v;
    std::memcpy(&v, b + 4 * i, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, b + 2 * i, 2);
  return dtype == FERRUM_DTYPE_F16 ? to_float(f16{h}) : to_float(bf16{h});
}

// v rounded to the activation dtype (ŝ of §12.1) and widened back.
inline float gptq_round_act(float v, int32_t act) {
  return dispatch_float(act, v, [&](auto t) { return to_float(from_float<decltype(t)>(v)); });
}

// The 4-bit quant of source row `row`, column `col` (§12.1's q[k, n]).
inline uint32_t gptq_nibble(const GptqSource& s, uint64_t row, uint64_t col) {
  const auto word = static_cast<uint32_t>(s.qweight[row / 8 * s.n + col]);
  return (word >> (4 * (row % 8))) & 15u;
}

// Everything but the nibbles (may throw std::bad_alloc).
inline void gptq_layout(const GptqSource& s, GptqLayout& w) {
  const uint64_t K = s.k, N = s.n, G = s.group_size ? K / s.group_size : 1;
  w.k = K;
  w.n = N;
  w.groups = G;
  std::vector<uint64_t> grp(K), count(G, 0);
  for (uint64_t k = 0; k < K; ++k) {
    grp[k] = s.g_idx ? uint64_t(s.g_idx[k]) : (s.group_size ? k / s.group_size : 0);
    ++count[grp[k]];
  }
  w.group_word.assign(G + 1, 0);
  for (uint64_t g = 0; g < G; ++g) w.group_word[g + 1] = w.group_word[g] + (count[g] + 7) / 8;
  w.kp = 8 * w.group_word[G];
  w.src_row.assign(w.kp, -1);
  std::vector<uint64_t> fill(G);
  for (uint64_t g = 0; g < G; ++g) fill[g] = 8 * w.group_word[g];
  for (uint64_t k = 0; k < K; ++k) w.src_row[fill[grp[k]]++] = int64_t(k);
  w.identity = w.kp == K;
  for (uint64_t p = 0; w.identity && p < K; ++p) w.identity = w.src_row[p] == int64_t(p);

  w.zero.assign(G * N, 8.0f);
  w.scale.resize(G * N);
  for (uint64_t g = 0; g < G; ++g)
    for (uint64_t col = 0; col < N; ++col) {
      if (s.qzeros) {
        const auto word = static_cast<uint32_t>(s.qzeros[g * (N / 8) + col / 8]);
        w.zero[g * N + col] = float(((word >> (4 * (col % 8))) & 15u) + 1u);
      }
      w.scale[g * N + col] = gptq_round_act(gptq_read_scale(s.scales, s.scales_dtype, g * N + col), s.act_dtype);
    }
}

}  // namespace ferrum::common
