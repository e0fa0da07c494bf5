// ferrum CPU plugin — mixture-of-experts kernels (docs/spec.md §13).
//
// Framework-free: routing buffers arrive as plain I32 arrays with their element counts, and the
// expert weights of moe_gemm / fused_moe as an ExpertMatmul callback (dense slice through
// cpu::gemm, or a GPTQ stack through the plugin's quantised matmul), so this file knows no handle
// type. T in {float, f16, bf16}; all sums run in f32.
//
// Determinism (docs/spec.md §0.4, §13.1): no kernel here has an order-dependent reduction. Every output
// element is produced by exactly one thread, and every sum runs in a fixed order (ascending expert
// for the softmax denominator, ascending k for the combines); the expert GEMMs inherit cpu::gemm's
// thread-count independence. Work is spread over the pool with cpu::parallel_for.
//
// Device-supplied routing values are bounds-checked against the counts passed in (§0.11): expert ids
// outside [0, E), pair ids >= num_pairs, a negative or oversized num_tokens_post_padded and blocks
// beyond the buffers are skipped, never read through.
#ifndef FERRUM_CPU_KERNELS_MOE_HPP
#define FERRUM_CPU_KERNELS_MOE_HPP

#include <cstdint>
#include <functional>
#include <vector>

#include <ferrum/common/dtype.hpp>

namespace ferrum::cpu {

// Per row t < num_tokens of logits [num_tokens, E]: f32 softmax over E, then the top_k experts by
// descending probability with ties to the lower id (ids [num_tokens, K], weights [num_tokens, K]);
// with `norm`, the K weights are divided by their sum (ascending k) when it is > 0, else become 1/K.
// A NaN in a row still yields K distinct ids in [0, E) (NaN probabilities rank last).
// Requires 1 <= top_k <= num_experts.
template <class T>
void route_topk_softmax(const T* logits, int32_t* ids, float* weights, uint64_t num_tokens, uint64_t num_experts,
                        uint64_t top_k, bool norm);

// §13 moe_align_block_size. Writes sorted[0, cap), expert_ids[0, cap_blocks) and returns total
// (num_tokens_post_padded). Requires block_size >= 1, num_pairs < 2^31 and cap / cap_blocks at
// least the §13.1 worst case (then total <= cap always holds).
int32_t moe_align_block_size(const int32_t* topk_ids, uint64_t num_pairs, uint64_t num_experts, uint64_t block_size,
                             int32_t* sorted, uint64_t cap, int32_t* expert_ids, uint64_t cap_blocks);

// Which pairs each expert computes, decoded from the routing buffers with the rules of §13
// moe_gemm: blocks b < total / block_size whose expert is in [0, E), entries < num_pairs. A pair
// named twice keeps its last naming (the spec leaves such rows unspecified). Groups are ordered by
// expert id, pairs ascending inside a group; every pair is in at most one group.
struct MoePlan {
  std::vector<uint64_t> experts;      // active experts, ascending
  std::vector<uint64_t> group_begin;  // experts.size() + 1 offsets into `pairs`
  std::vector<uint64_t> pairs;        // grouped pair ids
  std::vector<uint8_t> assigned;      // [num_pairs]: 1 when the pair is in a group
};
MoePlan moe_plan(const int32_t* sorted, uint64_t sorted_count, const int32_t* expert_ids, uint64_t expert_ids_count,
                 int32_t total, uint64_t num_pairs, uint64_t num_experts, uint64_t block_size);

// out[r, j] = Σ_p x[r, p]·W_expert[j, p] for r < rows: x is [rows, k], out is [rows, n] (dense,
// contiguous); W_expert is the op's [n, k] weight of `expert`. Must be thread-safe (moe_gemm may
// call it for different experts at once).
template <class T>
using ExpertMatmul = std::function<void(uint64_t expert, const T* x, uint64_t rows, T* out)>;

// §13 moe_gemm on a plan: out[p, :] = x[p / top_k, :]·W_eᵀ for planned pairs, +0.0 rows for the
// other pairs < num_pairs. x is [num_tokens, k], out [num_pairs, n].
template <class T>
void moe_gemm(const MoePlan& plan, const T* x, T* out, uint64_t num_pairs, uint64_t top_k, uint64_t n, uint64_t k,
              const ExpertMatmul<T>& matmul);

// §13 fused_moe on a plan: per planned pair p = t·K + k of expert e, g|u = x[t]·W_gu[e]ᵀ (gate
// first), a = silu(g)·u, y_p = a·W_d[e]ᵀ (a and y_p rounded to T); out[t] = Σ_k topk_weights[t, k]·y_p
// over the planned pairs, ascending k in f32 (a token with none gets +0.0).
template <class T>
void fused_moe(const MoePlan& plan, const T* x, const float* topk_weights, T* out, uint64_t num_tokens,
               uint64_t hidden, uint64_t intermediate, uint64_t top_k, const ExpertMatmul<T>& gate_up,
               const ExpertMatmul<T>& down);

// out[t, :] = Σ_k weights[t·K + k]·slots[t·K + k, :], ascending k in f32.
template <class T>
void weighted_sum_batched(const T* slots, const float* weights, T* out, uint64_t num_tokens, uint64_t top_k,
                          uint64_t hidden);

// out[t, :] = Σ_k pair_weights[t·K + k]·packed[r_k, :] with r_k = pairs_by_token[t·K + k], ascending k
// in f32; r_k outside [0, num_packed) is skipped.
template <class T>
void moe_combine(const T* packed, const int32_t* pairs_by_token, const float* pair_weights, T* out,
                 uint64_t num_tokens, uint64_t hidden, uint64_t top_k, uint64_t num_packed);

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_MOE_HPP
