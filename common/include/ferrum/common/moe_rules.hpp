// Op rules of the MoE family (docs/spec.md §13) shared by the project's plugins: the worst-case
// routing sizes of §13.1 and the checks every plugin applies before it runs an MoE op, with the
// same messages. A plugin adds only what its device needs (the CUDA plugin: its expert, top_k
// and block-size bounds; the CPU plugin: its GPTQ stacks).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include <ferrum/common/op_rules.hpp>

namespace ferrum::plugin::rules {

// §13.1 worst-case routing sizes (block_size >= 1); `wrapped` when cap does not fit in 64 bits.
struct RoutingCap {
  uint64_t cap, cap_blocks;
  bool wrapped;
};
inline RoutingCap routing_cap(uint64_t num_pairs, uint64_t num_experts, uint64_t block_size) {
  const Size cap = Size(num_pairs) + Size(std::min(num_experts, num_pairs)) * (Size(block_size) - Size(1));
  return {cap.value, common::ceil_div(cap.value, block_size), !cap.ok()};
}

inline Status check_block_size(const char* op, uint64_t block_size) {
  if (block_size == 0) return invalid(format("%s: argument 'block_size': expected >= 1, given 0", op));
  return ok_status();
}

// The routing buffers of an op with `num_pairs` pairs hold at least cap / cap_blocks / 1 elements.
inline Status check_routing(const char* op, const ferrum_buffer* sorted, const ferrum_buffer* eids,
                            const ferrum_buffer* nptp, uint64_t num_pairs, uint64_t num_experts, uint64_t block_size) {
  using ull = unsigned long long;
  const RoutingCap c = routing_cap(num_pairs, num_experts, block_size);
  if (c.wrapped)
    return invalid(format("%s: arguments 'num_pairs'/'num_experts'/'block_size': expected cap = num_pairs + "
                          "min(num_experts, num_pairs)*(block_size - 1) < 2^64, given num_pairs = %llu, "
                          "num_experts = %llu, block_size = %llu (the size wraps past 2^64)",
                          op, (ull)num_pairs, (ull)num_experts, (ull)block_size));
  auto need = [&](const char* name, const ferrum_buffer* b, uint64_t n, const char* rule) -> Status {
    if (n == 0 || (b && b->count >= n)) return ok_status();
    return invalid(format("%s: argument '%s': expected at least %llu elements (%s, with num_pairs = %llu, "
                          "num_experts = %llu, block_size = %llu), given %s",
                          op, name, (ull)n, rule, (ull)num_pairs, (ull)num_experts, (ull)block_size,
                          b ? std::to_string(b->count).c_str() : "NULL"));
  };
  Status s = need("sorted_token_ids", sorted, c.cap, "cap = num_pairs + min(num_experts, num_pairs)*(block_size - 1)");
  if (s.ok()) s = need("expert_ids", eids, c.cap_blocks, "cap_blocks = ceil(cap / block_size)");
  if (s.ok()) s = check_min_count(op, "num_tokens_post_padded", nptp, 1);
  return s;
}

// Exactly one of a dense and a quantised weight (`need`: there is work, so one must be present).
template <class QWeight>
Status check_one_weight(const char* op, const char* dense_name, const ferrum_buffer* dense, const char* quant_name,
                        const QWeight* quant, bool need) {
  if (dense && quant)
    return invalid(format("%s: arguments '%s'/'%s': expected exactly one of them, given both", op, dense_name,
                          quant_name));
  if (need && !dense && !quant)
    return invalid(format("%s: arguments '%s'/'%s': expected exactly one of them, given neither", op, dense_name,
                          quant_name));
  return ok_status();
}

// route_topk_softmax: 1 <= top_k <= num_experts, and expert ids that fit in I32.
inline Status check_route(const ferrum_route_topk_softmax_args& a) {
  using ull = unsigned long long;
  const char* op = "route_topk_softmax";
  if (a.top_k < 1 || a.top_k > a.num_experts)
    return invalid(format("%s: argument 'top_k': expected 1 <= top_k <= num_experts (= %llu), given %llu", op,
                          (ull)a.num_experts, (ull)a.top_k));
  if (a.num_experts > (uint64_t(1) << 31))
    return invalid(format("%s: argument 'num_experts': expected <= 2^31 (ids are I32), given %llu", op,
                          (ull)a.num_experts));
  return ok_status();
}

// moe_align_block_size: a block size, pairs below the I32 sentinel, the count output present,
// and routing buffers of the worst-case sizes.
inline Status check_align(const ferrum_moe_align_block_size_args& a) {
  const char* op = "moe_align_block_size";
  Status s = check_block_size(op, a.block_size);
  if (!s.ok()) return s;
  if (a.num_pairs > uint64_t(std::numeric_limits<int32_t>::max()))
    return invalid(format("%s: argument 'num_pairs': expected < 2^31 (the I32 padding sentinel), given %llu", op,
                          (unsigned long long)a.num_pairs));
  // §13: num_tokens_post_padded is written even when num_pairs = 0.
  if (!a.num_tokens_post_padded)
    return invalid(format("%s: argument 'num_tokens_post_padded': expected a buffer of 1 element, given NULL (it is "
                          "written even when num_pairs = 0)", op));
  return check_routing(op, a.sorted_token_ids, a.expert_ids, a.num_tokens_post_padded, a.num_pairs, a.num_experts,
                       a.block_size);
}

// moe_gemm's pair count: at most num_tokens·top_k.
inline Status check_moe_pairs(const ferrum_moe_gemm_args& a) {
  using ull = unsigned long long;
  if (a.num_pairs > common::sat_mul(a.num_tokens, a.top_k))
    return invalid(format("moe_gemm: argument 'num_pairs': expected <= num_tokens * top_k = %llu * %llu, given %llu",
                          (ull)a.num_tokens, (ull)a.top_k, (ull)a.num_pairs));
  return ok_status();
}

}  // namespace ferrum::plugin::rules
