// ferrum test support — float64 references of the MoE ops (docs/spec.md §13).
//
// Written straight from docs/spec.md §13.1 and the op entries, independent of every plugin. Conventions are
// those of reference.hpp (parameters in docs/spec.md field order; `in X` -> const vec&, `out X` -> vec&
// resized to the written shape; device index buffers -> std::vector<int64_t>; flags -> uint32_t):
// * Everything runs in double with no rounding. The roundings docs/spec.md only permits (the activation-dtype
//   roundings of a_p and y_p in fused_moe, the f32 softmax of route_topk_softmax) are not applied.
// * INVALID_ARGUMENT misuse (top_k out of range, block_size 0, num_pairs > num_tokens·top_k, routing
//   buffers smaller than cap / cap_blocks, shapes that do not fit) throws std::invalid_argument.
// * Device-supplied routing values are bounds-checked the way §0.11 asks of a kernel: out-of-range
//   experts, pair ids and block counts are skipped, never read through.
// * GPTQ expert stacks: dequantise each expert with ref_gptq.hpp's gptq_dequantize (§12.1, [k, n]) and
//   turn the E matrices into the [E, n, k] dense stack the MoE references take with
//   gptq_stack_as_dense() (W_e of §13 is the transpose of the dequantised matrix).
#pragma once

#include "quantize.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace ferrum::ref {

namespace moe_detail {
using vec = std::vector<double>;
inline void need(uint64_t have, uint64_t n, const char* op, const char* field) {
  if (have < n)
    throw std::invalid_argument(std::string(op) + ": " + field + " holds " + std::to_string(have) +
                                " elements, needs " + std::to_string(n));
}
inline void check(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string(op) + ": " + what);
}
inline void fit(vec& v, uint64_t n) {
  if (v.size() < n) v.resize(n, 0.0);
}
}  // namespace moe_detail

// §13.1 worst-case routing sizes: cap = num_pairs + min(E, num_pairs)·(block_size − 1),
// cap_blocks = ceil(cap / block_size).
inline uint64_t moe_cap(uint64_t num_pairs, uint64_t num_experts, uint64_t block_size) {
  if (block_size == 0) throw std::invalid_argument("moe_cap: block_size = 0");
  return num_pairs + std::min(num_experts, num_pairs) * (block_size - 1);
}
inline uint64_t moe_cap_blocks(uint64_t num_pairs, uint64_t num_experts, uint64_t block_size) {
  const uint64_t cap = moe_cap(num_pairs, num_experts, block_size);
  return (cap + block_size - 1) / block_size;
}

// ------------------------------------------------------------------------------- route_topk_softmax
// Per row: softmax over E, K picks of the largest probability (ties to the smaller id), optional
// renormalisation (σ > 0: divide; else 1/K). out_ids [T, K], out_weights [T, K].
inline void route_topk_softmax(const std::vector<double>& logits, std::vector<int64_t>& out_ids,
                               std::vector<double>& out_weights, uint64_t num_tokens, uint64_t num_experts,
                               uint64_t top_k, uint32_t norm_topk_prob) {
  const char* op = "route_topk_softmax";
  moe_detail::check(top_k >= 1 && top_k <= num_experts, op, "expected 1 <= top_k <= num_experts");
  moe_detail::check(norm_topk_prob <= 1, op, "norm_topk_prob is a flag");
  moe_detail::need(logits.size(), num_tokens * num_experts, op, "logits");
  const uint64_t E = num_experts, K = top_k;
  if (out_ids.size() < num_tokens * K) out_ids.resize(num_tokens * K, 0);
  moe_detail::fit(out_weights, num_tokens * K);
  std::vector<double> p(E);
  std::vector<char> taken(E);
  for (uint64_t t = 0; t < num_tokens; ++t) {
    const double* l = logits.data() + t * E;
    double mx = -std::numeric_limits<double>::infinity();
    for (uint64_t e = 0; e < E; ++e) mx = std::max(mx, l[e]);
    double z = 0.0;
    for (uint64_t e = 0; e < E; ++e) z += std::exp(l[e] - mx);
    for (uint64_t e = 0; e < E; ++e) p[e] = std::exp(l[e] - mx) / z;
    std::fill(taken.begin(), taken.end(), 0);
    for (uint64_t k = 0; k < K; ++k) {
      uint64_t best = E;
      for (uint64_t e = 0; e < E; ++e)
        if (!taken[e] && (best == E || p[e] > p[best])) best = e;  // strict '>': ties keep the lower id
      taken[best] = 1;
      out_ids[t * K + k] = static_cast<int64_t>(best);
      out_weights[t * K + k] = p[best];
    }
    if (norm_topk_prob) {
      double s = 0.0;
      for (uint64_t k = 0; k < K; ++k) s += out_weights[t * K + k];
      for (uint64_t k = 0; k < K; ++k) out_weights[t * K + k] = s > 0 ? out_weights[t * K + k] / s : 1.0 / double(K);
    }
  }
}

// ----------------------------------------------------------------------------- moe_align_block_size
// sorted_token_ids [cap], expert_ids [cap_blocks], num_tokens_post_padded [1]. Pairs whose id is
// outside [0, E) are left out.
inline void moe_align_block_size(const std::vector<int64_t>& topk_ids, std::vector<int64_t>& sorted_token_ids,
                                 std::vector<int64_t>& expert_ids, std::vector<int64_t>& num_tokens_post_padded,
                                 uint64_t num_pairs, uint64_t num_experts, uint64_t block_size) {
  const char* op = "moe_align_block_size";
  moe_detail::check(block_size > 0, op, "block_size = 0");
  moe_detail::need(topk_ids.size(), num_pairs, op, "topk_ids");
  const uint64_t bs = block_size;
  const uint64_t cap = moe_cap(num_pairs, num_experts, bs), cap_blocks = moe_cap_blocks(num_pairs, num_experts, bs);
  // Experts that occur, ascending, each with its pairs in ascending pair order.
  std::vector<std::pair<int64_t, uint64_t>> valid;  // (expert, pair)
  for (uint64_t p = 0; p < num_pairs; ++p)
    if (topk_ids[p] >= 0 && uint64_t(topk_ids[p]) < num_experts) valid.push_back({topk_ids[p], p});
  std::sort(valid.begin(), valid.end());
  std::vector<int64_t> sorted(cap, int64_t(num_pairs)), eids(cap_blocks, -1);
  uint64_t off = 0;
  for (uint64_t i = 0; i < valid.size();) {
    const int64_t e = valid[i].first;
    uint64_t j = i;
    while (j < valid.size() && valid[j].first == e) ++j;
    const uint64_t cnt = j - i, pad = (cnt + bs - 1) / bs * bs;
    for (uint64_t r = 0; r < cnt; ++r) sorted[off + r] = int64_t(valid[i + r].second);
    for (uint64_t b = off / bs; b < (off + pad) / bs; ++b) eids[b] = e;
    off += pad;
    i = j;
  }
  if (sorted_token_ids.size() < cap) sorted_token_ids.resize(cap);
  if (expert_ids.size() < cap_blocks) expert_ids.resize(cap_blocks);
  if (num_tokens_post_padded.empty()) num_tokens_post_padded.resize(1);
  std::copy(sorted.begin(), sorted.end(), sorted_token_ids.begin());
  std::copy(eids.begin(), eids.end(), expert_ids.begin());
  num_tokens_post_padded[0] = int64_t(off);
}

namespace moe_detail {
// The expert each pair is assigned to by the routing buffers (-1: none), §13 moe_gemm rules.
inline std::vector<int64_t> assignment(const std::vector<int64_t>& sorted, const std::vector<int64_t>& eids,
                                       const std::vector<int64_t>& nptp, uint64_t num_pairs, uint64_t num_experts,
                                       uint64_t bs, const char* op) {
  check(bs > 0, op, "block_size = 0");
  need(sorted.size(), moe_cap(num_pairs, num_experts, bs), op, "sorted_token_ids");
  need(eids.size(), moe_cap_blocks(num_pairs, num_experts, bs), op, "expert_ids");
  need(nptp.size(), 1, op, "num_tokens_post_padded");
  std::vector<int64_t> assign(num_pairs, -1);
  const uint64_t total = nptp[0] > 0 ? uint64_t(nptp[0]) : 0;
  for (uint64_t b = 0; b < total / bs && b < eids.size(); ++b) {
    const int64_t e = eids[b];
    if (e < 0 || uint64_t(e) >= num_experts) continue;
    for (uint64_t i = b * bs; i < (b + 1) * bs && i < sorted.size(); ++i) {
      const int64_t p = sorted[i];
      if (p >= 0 && uint64_t(p) < num_pairs) assign[p] = e;
    }
  }
  return assign;
}
}  // namespace moe_detail

// ------------------------------------------------------------------------------------------ moe_gemm
// out[p, :] = x[p / top_k, :] · W_eᵀ for pairs routed to expert e (w = [E, n, k] dense stack), else +0.
inline void moe_gemm(const std::vector<double>& x, const std::vector<int64_t>& sorted_token_ids,
                     const std::vector<int64_t>& expert_ids, const std::vector<int64_t>& num_tokens_post_padded,
                     const std::vector<double>& w, std::vector<double>& out, uint64_t num_tokens, uint64_t num_pairs,
                     uint64_t top_k, uint64_t num_experts, uint64_t n, uint64_t k, uint64_t block_size) {
  const char* op = "moe_gemm";
  moe_detail::check(num_pairs <= num_tokens * top_k, op, "num_pairs > num_tokens * top_k");
  if (num_pairs == 0) return;
  moe_detail::need(x.size(), num_tokens * k, op, "x");
  moe_detail::need(w.size(), num_experts * n * k, op, "w");
  const std::vector<int64_t> assign = moe_detail::assignment(sorted_token_ids, expert_ids, num_tokens_post_padded,
                                                             num_pairs, num_experts, block_size, op);
  moe_detail::vec r(num_pairs * n, 0.0);
  for (uint64_t p = 0; p < num_pairs; ++p) {
    if (assign[p] < 0) continue;
    const double* xr = x.data() + (p / top_k) * k;
    const double* we = w.data() + uint64_t(assign[p]) * n * k;
    for (uint64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (uint64_t q = 0; q < k; ++q) s += xr[q] * we[j * k + q];
      r[p * n + j] = s;
    }
  }
  moe_detail::fit(out, num_pairs * n);
  std::copy(r.begin(), r.end(), out.begin());
}

// ------------------------------------------------------------------------------ weighted_sum_batched
inline void weighted_sum_batched(const std::vector<double>& slots, const std::vector<double>& weights,
                                 std::vector<double>& out, uint64_t num_tokens, uint64_t top_k, uint64_t hidden) {
  const char* op = "weighted_sum_batched";
  moe_detail::need(slots.size(), num_tokens * top_k * hidden, op, "slots");
  moe_detail::need(weights.size(), num_tokens * top_k, op, "weights");
  moe_detail::vec r(num_tokens * hidden, 0.0);
  for (uint64_t t = 0; t < num_tokens; ++t)
    for (uint64_t k = 0; k < top_k; ++k)
      for (uint64_t d = 0; d < hidden; ++d)
        r[t * hidden + d] += weights[t * top_k + k] * slots[(t * top_k + k) * hidden + d];
  moe_detail::fit(out, num_tokens * hidden);
  std::copy(r.begin(), r.end(), out.begin());
}

// --------------------------------------------------------------------------------------- moe_combine
// out[t, :] = Σ_k pair_weights[t·K + k]·packed_down[r_k, :], r_k outside [0, num_packed) skipped.
inline void moe_combine(const std::vector<double>& packed_down, const std::vector<int64_t>& pairs_by_token,
                        const std::vector<double>& pair_weights, std::vector<double>& out, uint64_t num_tokens,
                        uint64_t hidden, uint64_t top_k, uint64_t num_packed) {
  const char* op = "moe_combine";
  moe_detail::need(packed_down.size(), num_packed * hidden, op, "packed_down");
  moe_detail::need(pairs_by_token.size(), num_tokens * top_k, op, "pairs_by_token");
  moe_detail::need(pair_weights.size(), num_tokens * top_k, op, "pair_weights");
  moe_detail::vec r(num_tokens * hidden, 0.0);
  for (uint64_t t = 0; t < num_tokens; ++t)
    for (uint64_t k = 0; k < top_k; ++k) {
      const int64_t row = pairs_by_token[t * top_k + k];
      if (row < 0 || uint64_t(row) >= num_packed) continue;
      for (uint64_t d = 0; d < hidden; ++d)
        r[t * hidden + d] += pair_weights[t * top_k + k] * packed_down[uint64_t(row) * hidden + d];
    }
  moe_detail::fit(out, num_tokens * hidden);
  std::copy(r.begin(), r.end(), out.begin());
}

// ----------------------------------------------------------------------------------------- fused_moe
// The reference composition of docs/spec.md §13: moe_gemm (gate_up) → silu(g)·u → moe_gemm (down, top_k = 1
// over the pair rows) → weighted_sum_batched, without intermediate roundings. w_gate_up [E, 2I, hidden]
// (gate rows first), w_down [E, hidden, I].
inline void fused_moe(const std::vector<double>& x, const std::vector<double>& topk_weights,
                      const std::vector<int64_t>& sorted_token_ids, const std::vector<int64_t>& expert_ids,
                      const std::vector<int64_t>& num_tokens_post_padded, const std::vector<double>& w_gate_up,
                      const std::vector<double>& w_down, std::vector<double>& out, uint64_t num_tokens,
                      uint64_t hidden, uint64_t intermediate, uint64_t num_experts, uint64_t top_k,
                      uint64_t block_size) {
  const uint64_t P = num_tokens * top_k, I = intermediate;
  if (num_tokens == 0) return;
  std::vector<double> gu, a(P * I), y;
  moe_gemm(x, sorted_token_ids, expert_ids, num_tokens_post_padded, w_gate_up, gu, num_tokens, P, top_k, num_experts,
           2 * I, hidden, block_size);
  gu.resize(P * 2 * I, 0.0);
  for (uint64_t p = 0; p < P; ++p)
    for (uint64_t i = 0; i < I; ++i) {
      const double g = gu[p * 2 * I + i], u = gu[p * 2 * I + I + i];
      a[p * I + i] = g / (1.0 + std::exp(-g)) * u;
    }
  moe_gemm(a, sorted_token_ids, expert_ids, num_tokens_post_padded, w_down, y, P, P, 1, num_experts, hidden, I,
           block_size);
  y.resize(P * hidden, 0.0);
  weighted_sum_batched(y, topk_weights, out, num_tokens, top_k, hidden);
}

// ----------------------------------------------------------------------------- GPTQ expert stacks
// E dequantised [k, n] matrices → the [E, n, k] dense stack of §13 (W_e = transpose).
inline std::vector<double> gptq_stack_as_dense(const std::vector<std::vector<double>>& mats, uint64_t k, uint64_t n) {
  std::vector<double> w(mats.size() * n * k);
  for (uint64_t e = 0; e < mats.size(); ++e) {
    moe_detail::need(mats[e].size(), k * n, "gptq_stack_as_dense", "matrix");
    for (uint64_t r = 0; r < k; ++r)
      for (uint64_t c = 0; c < n; ++c) w[(e * n + c) * k + r] = mats[e][r * n + c];
  }
  return w;
}

}  // namespace ferrum::ref
