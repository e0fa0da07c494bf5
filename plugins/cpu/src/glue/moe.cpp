// CPU plugin: the MoE family (docs/spec.md §13). Thin glue: op-specific checks, dtype dispatch, kernel
// call. The CPU has no expert-count, top_k or block_size limits; expert weights are dense [E, n, k]
// stacks (through cpu::gemm) or GPTQ stacks from load_gptq_stacked (through qweight.hpp).
#include <algorithm>
#include <limits>
#include <string>

#include <ferrum/common/moe_rules.hpp>

#include "glue.hpp"
#include "kernels/gemm.hpp"
#include "kernels/moe.hpp"
#include "qweight.hpp"

namespace ferrum::cpu {
namespace {

using ull = unsigned long long;

using common::ceil_div;
using common::sat_mul;

using plugin::rules::check_block_size;
using plugin::rules::check_one_weight;
using plugin::rules::check_routing;
using plugin::rules::routing_cap;
using plugin::rules::RoutingCap;

// A GPTQ stack with these dims, used with activation dtype `act` (0: unknown, not checked).
Status check_gptq_stack(const char* op, const char* name, const ferrum_qweight* w, uint64_t experts, uint64_t k,
                        uint64_t n, const char* k_name, const char* n_name, int32_t act) {
  if (!w) return ok_status();
  GptqInfo info{};
  if (!gptq_info(w, info))
    return invalid(plugin::format("%s: argument '%s': expected a GPTQ stack from load_gptq_stacked, given another "
                                  "kind of quantised weight", op, name));
  if (info.num_experts != experts || info.k != k || info.n != n)
    return invalid(plugin::format("%s: argument '%s': expected a stack of num_experts = %llu, k = %s = %llu, "
                                  "n_per_expert = %s = %llu, given num_experts = %llu, k = %llu, n_per_expert = %llu",
                                  op, name, (ull)experts, k_name, (ull)k, n_name, (ull)n, (ull)info.num_experts,
                                  (ull)info.k, (ull)info.n));
  if (act != 0 && info.act_dtype != act)
    return invalid(plugin::format("%s: argument '%s': expected a stack loaded for the activation dtype %s, given one "
                                  "loaded for %s", op, name, dtype_name(act), dtype_name(info.act_dtype)));
  return ok_status();
}

int32_t act_of(const ferrum_buffer* a, const ferrum_buffer* b) { return a ? a->dtype : b ? b->dtype : 0; }

// The expert matmul of a projection: the dense [E, n, k] slice, or the GPTQ stack.
template <class T>
ExpertMatmul<T> expert_matmul(const ferrum_buffer* dense, const ferrum_qweight* quant, uint64_t n, uint64_t k) {
  if (dense) {
    const T* w = data_of<const T>(dense);
    // arith-ok: e < num_experts and w_dense holds [num_experts, n, k] (generated check)
    return [w, n, k](uint64_t e, const T* x, uint64_t rows, T* out) { cpu::gemm<T>(x, w + e * n * k, out, rows, n, k); };
  }
  return [quant](uint64_t e, const T* x, uint64_t rows, T* out) { cpu::gptq_matmul<T>(quant, e, x, rows, out); };
}

// The routing plan of an op from its (validated) routing buffers; NULL buffers (cap = 0) plan nothing.
MoePlan plan_of(const ferrum_buffer* sorted, const ferrum_buffer* eids, const ferrum_buffer* nptp, uint64_t num_pairs,
                uint64_t num_experts, uint64_t block_size) {
  return cpu::moe_plan(data_of<const int32_t>(sorted), sorted ? sorted->count : 0, data_of<const int32_t>(eids),
                       eids ? eids->count : 0, nptp ? data_of<const int32_t>(nptp)[0] : 0, num_pairs, num_experts,
                       block_size);
}

// ------------------------------------------------------------------------------------------------
ferrum_status route_topk_softmax(ferrum_context* ctx, const ferrum_route_topk_softmax_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_route_topk_softmax_args& a, bool dry) -> Status {
    Status s = plugin::rules::check_route(a);
    if (!s.ok()) return s;
    if (dry || a.num_tokens == 0) return ok_status();
    return dispatch_float(a.logits->dtype, unsupported("route_topk_softmax: activation dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      cpu::route_topk_softmax<T>(data_of<const T>(a.logits), data_of<int32_t>(a.out_ids), data_of<float>(a.out_weights),
                                 a.num_tokens, a.num_experts, a.top_k, a.norm_topk_prob != 0);
      return ok_status();
    });
  });
}

ferrum_status moe_align_block_size(ferrum_context* ctx, const ferrum_moe_align_block_size_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_moe_align_block_size_args& a, bool dry) -> Status {
    Status s = plugin::rules::check_align(a);
    if (!s.ok() || dry) return s;
    const RoutingCap c = routing_cap(a.num_pairs, a.num_experts, a.block_size);
    int32_t total = 0;
    if (a.num_pairs > 0)
      total = cpu::moe_align_block_size(data_of<const int32_t>(a.topk_ids), a.num_pairs, a.num_experts, a.block_size,
                                        data_of<int32_t>(a.sorted_token_ids), c.cap, data_of<int32_t>(a.expert_ids),
                                        c.cap_blocks);
    data_of<int32_t>(a.num_tokens_post_padded)[0] = total;
    return ok_status();
  });
}

ferrum_status moe_gemm(ferrum_context* ctx, const ferrum_moe_gemm_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_moe_gemm_args& a, bool dry) -> Status {
    const char* op = "moe_gemm";
    const bool work = a.num_pairs > 0;
    Status s = check_one_weight(op, "w_dense", a.w_dense, "w_quant", a.w_quant, work);
    if (!s.ok()) return s;
    s = plugin::rules::check_moe_pairs(a);
    if (!s.ok()) return s;
    s = check_gptq_stack(op, "w_quant", a.w_quant, a.num_experts, a.k, a.n, "k", "n", act_of(a.x, a.out));
    if (!s.ok() || !work) return s;
    s = check_block_size(op, a.block_size);
    if (s.ok())
      s = check_routing(op, a.sorted_token_ids, a.expert_ids, a.num_tokens_post_padded, a.num_pairs, a.num_experts,
                        a.block_size);
    if (!s.ok() || dry || a.n == 0) return s;
    const MoePlan plan =
        plan_of(a.sorted_token_ids, a.expert_ids, a.num_tokens_post_padded, a.num_pairs, a.num_experts, a.block_size);
    return dispatch_float(a.out->dtype, unsupported("moe_gemm: activation dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      cpu::moe_gemm<T>(plan, data_of<const T>(a.x), data_of<T>(a.out), a.num_pairs, a.top_k, a.n, a.k,
                       expert_matmul<T>(a.w_dense, a.w_quant, a.n, a.k));
      return ok_status();
    });
  });
}

ferrum_status fused_moe(ferrum_context* ctx, const ferrum_fused_moe_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_fused_moe_args& a, bool dry) -> Status {
    const char* op = "fused_moe";
    const bool work = a.num_tokens > 0 && a.hidden > 0;
    Status s = check_one_weight(op, "w_gate_up_dense", a.w_gate_up_dense, "w_gate_up_quant", a.w_gate_up_quant, work);
    if (s.ok()) s = check_one_weight(op, "w_down_dense", a.w_down_dense, "w_down_quant", a.w_down_quant, work);
    const int32_t act = act_of(a.x, a.out);
    if (s.ok())
      s = check_gptq_stack(op, "w_gate_up_quant", a.w_gate_up_quant, a.num_experts, a.hidden,
                           sat_mul(2, a.intermediate), "hidden", "2*intermediate", act);
    if (s.ok())
      s = check_gptq_stack(op, "w_down_quant", a.w_down_quant, a.num_experts, a.intermediate, a.hidden,
                           "intermediate", "hidden", act);
    if (!s.ok() || !work) return s;
    uint64_t num_pairs = 0;
    s = check_product(op, {{"num_tokens", a.num_tokens}, {"top_k", a.top_k}}, num_pairs);
    if (!s.ok()) return s;
    s = check_block_size(op, a.block_size);
    if (s.ok())
      s = check_routing(op, a.sorted_token_ids, a.expert_ids, a.num_tokens_post_padded, num_pairs, a.num_experts,
                        a.block_size);
    if (!s.ok() || dry) return s;
    const MoePlan plan =
        plan_of(a.sorted_token_ids, a.expert_ids, a.num_tokens_post_padded, num_pairs, a.num_experts, a.block_size);
    return dispatch_float(a.out->dtype, unsupported("fused_moe: activation dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      const uint64_t H = a.hidden, I = a.intermediate;
      cpu::fused_moe<T>(plan, data_of<const T>(a.x), data_of<const float>(a.topk_weights), data_of<T>(a.out),
                        a.num_tokens, H, I, a.top_k, expert_matmul<T>(a.w_gate_up_dense, a.w_gate_up_quant, sat_mul(2, I), H),
                        expert_matmul<T>(a.w_down_dense, a.w_down_quant, H, I));
      return ok_status();
    });
  });
}

ferrum_status moe_combine(ferrum_context* ctx, const ferrum_moe_combine_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_moe_combine_args& a, bool dry) -> Status {
    if (dry || a.num_tokens == 0 || a.hidden == 0) return ok_status();
    return dispatch_float(a.out->dtype, unsupported("moe_combine: activation dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      cpu::moe_combine<T>(data_of<const T>(a.packed_down), data_of<const int32_t>(a.pairs_by_token),
                          data_of<const float>(a.pair_weights), data_of<T>(a.out), a.num_tokens, a.hidden, a.top_k,
                          a.num_packed);
      return ok_status();
    });
  });
}

ferrum_status weighted_sum_batched(ferrum_context* ctx, const ferrum_weighted_sum_batched_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_weighted_sum_batched_args& a, bool dry) -> Status {
    if (dry || a.num_tokens == 0 || a.hidden == 0) return ok_status();
    return dispatch_float(a.out->dtype, unsupported("weighted_sum_batched: activation dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      cpu::weighted_sum_batched<T>(data_of<const T>(a.slots), data_of<const float>(a.weights), data_of<T>(a.out),
                                   a.num_tokens, a.top_k, a.hidden);
      return ok_status();
    });
  });
}

}  // namespace

const ferrum_moe_table kMoeTable = {sizeof(ferrum_moe_table), FERRUM_MOE_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cpu
