// ferrum CPU plugin — mixture-of-experts kernels (see moe.hpp).
#include "moe.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

#include "elementwise.hpp"
#include "parallel.hpp"

namespace ferrum::cpu {
namespace {

// Rows per parallel_for chunk so that a chunk holds about this many elements of work.
constexpr uint64_t kChunkElems = 1u << 14;
uint64_t row_grain(uint64_t row_elems) { return std::max<uint64_t>(1, kChunkElems / std::max<uint64_t>(1, row_elems)); }

// Runs fn(g) for every group of the plan. Many small groups (decode: one or a few rows per expert)
// run side by side on the pool, each expert GEMM inline on its thread; few large groups run one
// after another so that each GEMM spreads over the pool itself. Either way every group is computed
// by the same code on the same rows, so the result does not depend on the choice.
void for_each_group(const MoePlan& plan, const std::function<void(uint64_t)>& fn) {
  const uint64_t groups = plan.experts.size();
  uint64_t max_rows = 0;
  for (uint64_t g = 0; g < groups; ++g) max_rows = std::max(max_rows, plan.group_begin[g + 1] - plan.group_begin[g]);
  const uint64_t threads = pool_threads();
  if (groups > 1 && threads > 1 && (max_rows <= 32 || groups >= 4 * threads)) {
    parallel_for(groups, 1, [&](uint64_t g0, uint64_t g1) {
      for (uint64_t g = g0; g < g1; ++g) fn(g);
    });
  } else {
    for (uint64_t g = 0; g < groups; ++g) fn(g);
  }
}

template <class T>
void zero_rows(T* out, uint64_t row_len, uint64_t row) {
  std::fill(out + row * row_len, out + (row + 1) * row_len, from_float<T>(0.0f));
}

// out[t] = Σ_k w·row over the K pairs of token t, accumulated in f32 in k order: row_of(t, k, w)
// gives pair (t, k)'s row of H values and sets its weight w, or returns NULL for a pair that
// contributes nothing (unassigned or out of range). `grain_k` sizes the work per token.
template <class T, class RowOf>
void combine_rows(T* out, uint64_t num_tokens, uint64_t H, uint64_t K, uint64_t grain_k, RowOf&& row_of) {
  parallel_for(num_tokens, row_grain(H * grain_k), [&](uint64_t t0, uint64_t t1) {
    std::vector<float> acc(H);
    for (uint64_t t = t0; t < t1; ++t) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (uint64_t k = 0; k < K; ++k) {
        float w = 0.0f;
        const T* row = row_of(t, k, w);
        if (!row) continue;
        for (uint64_t d = 0; d < H; ++d) acc[d] += w * to_float(row[d]);
      }
      T* o = out + t * H;
      for (uint64_t d = 0; d < H; ++d) o[d] = from_float<T>(acc[d]);
    }
  });
}

}  // namespace

// ------------------------------------------------------------------------------------- routing
template <class T>
void route_topk_softmax(const T* logits, int32_t* ids, float* weights, uint64_t num_tokens, uint64_t num_experts,
                        uint64_t top_k, bool norm) {
  const uint64_t E = num_experts, K = top_k;
  if (num_tokens == 0 || K == 0 || K > E) return;
  parallel_for(num_tokens, row_grain(E * 4), [&](uint64_t t0, uint64_t t1) {
    std::vector<float> p(E), key(E);
    std::vector<uint64_t> order(E);
    for (uint64_t t = t0; t < t1; ++t) {
      const T* l = logits + t * E;
      float mx = -std::numeric_limits<float>::infinity();
      for (uint64_t e = 0; e < E; ++e) {
        const float v = to_float(l[e]);
        if (v > mx) mx = v;  // NaN never wins
      }
      float z = 0.0f;
      for (uint64_t e = 0; e < E; ++e) {
        p[e] = std::exp(to_float(l[e]) - mx);
        z += p[e];
      }
      for (uint64_t e = 0; e < E; ++e) {
        p[e] /= z;
        key[e] = std::isnan(p[e]) ? -std::numeric_limits<float>::infinity() : p[e];
      }
      std::iota(order.begin(), order.end(), uint64_t{0});
      // (descending key, ascending id): a strict weak order (NaN mapped to -inf above).
      std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](uint64_t a, uint64_t b) {
        return key[a] > key[b] || (key[a] == key[b] && a < b);
      });
      int32_t* id_row = ids + t * K;
      float* w_row = weights + t * K;
      for (uint64_t k = 0; k < K; ++k) {
        id_row[k] = static_cast<int32_t>(order[k]);
        w_row[k] = p[order[k]];
      }
      if (norm) {
        float s = 0.0f;
        for (uint64_t k = 0; k < K; ++k) s += w_row[k];
        for (uint64_t k = 0; k < K; ++k) w_row[k] = s > 0.0f ? w_row[k] / s : 1.0f / static_cast<float>(K);
      }
    }
  });
}

int32_t moe_align_block_size(const int32_t* topk_ids, uint64_t num_pairs, uint64_t num_experts, uint64_t block_size,
                             int32_t* sorted, uint64_t cap, int32_t* expert_ids, uint64_t cap_blocks) {
  const uint64_t bs = block_size;
  // Valid pairs as (expert, pair), pairs already ascending: a stable sort by expert groups them.
  std::vector<std::pair<int32_t, int32_t>> valid;
  valid.reserve(num_pairs);
  for (uint64_t p = 0; p < num_pairs; ++p) {
    const int32_t e = topk_ids[p];
    if (e >= 0 && static_cast<uint64_t>(e) < num_experts) valid.emplace_back(e, static_cast<int32_t>(p));
  }
  std::stable_sort(valid.begin(), valid.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  const int32_t sentinel = static_cast<int32_t>(num_pairs);
  std::fill(sorted, sorted + cap, sentinel);
  std::fill(expert_ids, expert_ids + cap_blocks, -1);
  uint64_t off = 0;
  for (uint64_t i = 0; i < valid.size();) {
    const int32_t e = valid[i].first;
    uint64_t j = i;
    while (j < valid.size() && valid[j].first == e) ++j;
    const uint64_t cnt = j - i, pad = (cnt + bs - 1) / bs * bs;
    if (off + pad > cap) break;  // cannot happen when cap is the §13.1 worst case
    for (uint64_t r = 0; r < cnt; ++r) sorted[off + r] = valid[i + r].second;
    for (uint64_t b = off / bs; b < (off + pad) / bs && b < cap_blocks; ++b) expert_ids[b] = e;
    off += pad;
    i = j;
  }
  return static_cast<int32_t>(off);
}

MoePlan moe_plan(const int32_t* sorted, uint64_t sorted_count, const int32_t* expert_ids, uint64_t expert_ids_count,
                 int32_t total, uint64_t num_pairs, uint64_t num_experts, uint64_t block_size) {
  MoePlan plan;
  plan.assigned.assign(num_pairs, 0);
  std::vector<int64_t> owner(num_pairs, -1);
  const uint64_t bs = block_size;
  const uint64_t blocks = total > 0 && bs > 0 ? static_cast<uint64_t>(total) / bs : 0;
  for (uint64_t b = 0; b < blocks && b < expert_ids_count; ++b) {
    const int32_t e = expert_ids[b];
    if (e < 0 || static_cast<uint64_t>(e) >= num_experts) continue;
    for (uint64_t i = b * bs; i < (b + 1) * bs && i < sorted_count; ++i) {
      const int32_t p = sorted[i];
      if (p >= 0 && static_cast<uint64_t>(p) < num_pairs) owner[static_cast<uint64_t>(p)] = e;
    }
  }
  std::vector<std::pair<int64_t, uint64_t>> named;  // (expert, pair), pairs ascending
  for (uint64_t p = 0; p < num_pairs; ++p)
    if (owner[p] >= 0) {
      named.emplace_back(owner[p], p);
      plan.assigned[p] = 1;
    }
  std::stable_sort(named.begin(), named.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  plan.pairs.reserve(named.size());
  for (uint64_t i = 0; i < named.size(); ++i) {
    if (i == 0 || named[i].first != named[i - 1].first) {
      plan.experts.push_back(static_cast<uint64_t>(named[i].first));
      plan.group_begin.push_back(i);
    }
    plan.pairs.push_back(named[i].second);
  }
  plan.group_begin.push_back(named.size());
  return plan;
}

// ------------------------------------------------------------------------------------ expert GEMMs
template <class T>
void moe_gemm(const MoePlan& plan, const T* x, T* out, uint64_t num_pairs, uint64_t top_k, uint64_t n, uint64_t k,
              const ExpertMatmul<T>& matmul) {
  if (num_pairs == 0 || n == 0) return;
  parallel_for(num_pairs, row_grain(n), [&](uint64_t p0, uint64_t p1) {
    for (uint64_t p = p0; p < p1; ++p)
      if (!plan.assigned[p]) zero_rows(out, n, p);
  });
  for_each_group(plan, [&](uint64_t g) {
    const uint64_t* pairs = plan.pairs.data() + plan.group_begin[g];
    const uint64_t m = plan.group_begin[g + 1] - plan.group_begin[g];
    std::vector<T> xg(m * k), og(m * n);
    for (uint64_t r = 0; r < m; ++r) std::copy_n(x + (pairs[r] / top_k) * k, k, xg.data() + r * k);
    matmul(plan.experts[g], xg.data(), m, og.data());
    for (uint64_t r = 0; r < m; ++r) std::copy_n(og.data() + r * n, n, out + pairs[r] * n);
  });
}

template <class T>
void fused_moe(const MoePlan& plan, const T* x, const float* topk_weights, T* out, uint64_t num_tokens,
               uint64_t hidden, uint64_t intermediate, uint64_t top_k, const ExpertMatmul<T>& gate_up,
               const ExpertMatmul<T>& down) {
  if (num_tokens == 0 || hidden == 0) return;
  const uint64_t H = hidden, I = intermediate, K = top_k;
  std::vector<T> y(plan.pairs.size() * H);  // y_p, in plan order
  std::vector<uint64_t> slot(num_tokens * K, UINT64_MAX);  // pair -> its row of y
  for (uint64_t i = 0; i < plan.pairs.size(); ++i) slot[plan.pairs[i]] = i;
  for_each_group(plan, [&](uint64_t g) {
    const uint64_t base = plan.group_begin[g];
    const uint64_t* pairs = plan.pairs.data() + base;
    const uint64_t m = plan.group_begin[g + 1] - base;
    std::vector<T> xg(m * H), gu(m * 2 * I), act(m * I);
    for (uint64_t r = 0; r < m; ++r) std::copy_n(x + (pairs[r] / K) * H, H, xg.data() + r * H);
    gate_up(plan.experts[g], xg.data(), m, gu.data());
    fused_silu_mul_split<T>(gu.data(), act.data(), m, I);
    down(plan.experts[g], act.data(), m, y.data() + base * H);
  });
  combine_rows(out, num_tokens, H, K, K, [&](uint64_t t, uint64_t k, float& w) -> const T* {
    const uint64_t s = slot[t * K + k];
    if (s == UINT64_MAX) return nullptr;  // unassigned pair: contributes 0
    w = topk_weights[t * K + k];
    return y.data() + s * H;
  });
}

// ------------------------------------------------------------------------------------- combines
template <class T>
void weighted_sum_batched(const T* slots, const float* weights, T* out, uint64_t num_tokens, uint64_t top_k,
                          uint64_t hidden) {
  if (num_tokens == 0 || hidden == 0) return;
  const uint64_t H = hidden, K = top_k;
  combine_rows(out, num_tokens, H, K, std::max<uint64_t>(K, 1), [&](uint64_t t, uint64_t k, float& w) -> const T* {
    w = weights[t * K + k];
    return slots + (t * K + k) * H;
  });
}

template <class T>
void moe_combine(const T* packed, const int32_t* pairs_by_token, const float* pair_weights, T* out,
                 uint64_t num_tokens, uint64_t hidden, uint64_t top_k, uint64_t num_packed) {
  if (num_tokens == 0 || hidden == 0) return;
  const uint64_t H = hidden, K = top_k;
  combine_rows(out, num_tokens, H, K, std::max<uint64_t>(K, 1), [&](uint64_t t, uint64_t k, float& w) -> const T* {
    const int32_t r = pairs_by_token[t * K + k];
    if (r < 0 || static_cast<uint64_t>(r) >= num_packed) return nullptr;
    w = pair_weights[t * K + k];
    return packed + static_cast<uint64_t>(r) * H;
  });
}

#define FERRUM_MOE_INSTANTIATE(T)                                                                              \
  template void route_topk_softmax<T>(const T*, int32_t*, float*, uint64_t, uint64_t, uint64_t, bool);         \
  template void moe_gemm<T>(const MoePlan&, const T*, T*, uint64_t, uint64_t, uint64_t, uint64_t,              \
                            const ExpertMatmul<T>&);                                                           \
  template void fused_moe<T>(const MoePlan&, const T*, const float*, T*, uint64_t, uint64_t, uint64_t, uint64_t, \
                             const ExpertMatmul<T>&, const ExpertMatmul<T>&);                                  \
  template void weighted_sum_batched<T>(const T*, const float*, T*, uint64_t, uint64_t, uint64_t);             \
  template void moe_combine<T>(const T*, const int32_t*, const float*, T*, uint64_t, uint64_t, uint64_t, uint64_t);
FERRUM_MOE_INSTANTIATE(float)
FERRUM_MOE_INSTANTIATE(f16)
FERRUM_MOE_INSTANTIATE(bf16)
#undef FERRUM_MOE_INSTANTIATE

}  // namespace ferrum::cpu
