// CUDA plugin: the MoE family (docs/spec.md §13) with dense expert weights. Thin glue: the op rules
// shared with the CPU plugin (<ferrum/common/moe_rules.hpp>), the CUDA bounds of §13.1 (at most
// kMoeMaxExperts experts, top_k <= kMoeMaxTopK, routing block sizes 16, 32 and 64 for the expert
// GEMMs: UNSUPPORTED naming the argument otherwise), the device check, and the kernels of
// kernels/moe.cuh. GPTQ expert stacks (w_quant, w_gate_up_quant, w_down_quant) are UNSUPPORTED:
// load_gptq_stacked is not implemented on CUDA yet.
//
// fused_moe runs the chain the spec defines it by — moe_gemm (gate/up), silu_mul_split, moe_gemm
// (down, one row per pair), weighted_sum — with its temporaries in the context's scratch block
// (num_pairs · (3·intermediate + hidden) activation elements; during a capture the block must
// already be that large: warm up eagerly first, docs/spec.md §0.4).
#include <ferrum/common/moe_rules.hpp>

#include <cuda_runtime_api.h>

#include "cuda_plugin.hpp"
#include "memory.hpp"
#include "kernels/elementwise.cuh"
#include "kernels/moe.cuh"

namespace ferrum::cuda::glue {
namespace {

using ull = unsigned long long;
using plugin::rules::check_block_size;
using plugin::rules::check_one_weight;
using plugin::rules::check_routing;
using plugin::rules::routing_cap;

Status check_experts(const char* op, uint64_t num_experts) {
  if (num_experts > kernels::kMoeMaxExperts)
    return unsupported(plugin::format("%s: argument 'num_experts': expected <= %llu on CUDA, given %llu", op,
                                      (ull)kernels::kMoeMaxExperts, (ull)num_experts));
  return ok_status();
}

Status check_top_k(const char* op, uint64_t top_k) {
  if (top_k > kernels::kMoeMaxTopK)
    return unsupported(plugin::format("%s: argument 'top_k': expected <= %llu on CUDA, given %llu", op,
                                      (ull)kernels::kMoeMaxTopK, (ull)top_k));
  return ok_status();
}

Status check_gemm_block(const char* op, uint64_t block_size) {
  if (block_size != 16 && block_size != 32 && block_size != 64)
    return unsupported(plugin::format("%s: argument 'block_size': expected 16, 32 or 64 on CUDA, given %llu", op,
                                      (ull)block_size));
  return ok_status();
}

// Output column tiles are a grid dimension (<= 65535 tiles of 64) and routing blocks the other.
Status check_grid(const char* op, const char* n_name, uint64_t n, uint64_t cap_blocks) {
  if (n > uint64_t{65535} * 64)
    return unsupported(plugin::format("%s: argument '%s': expected <= %llu on CUDA, given %llu", op, n_name,
                                      (ull)(uint64_t{65535} * 64), (ull)n));
  if (cap_blocks > uint64_t{0x7fffffff})
    return unsupported(plugin::format("%s: arguments 'num_pairs'/'block_size': expected at most 2^31 - 1 routing "
                                      "blocks on CUDA, given %llu", op, (ull)cap_blocks));
  return ok_status();
}

Status no_gptq(const char* op, const char* name, const ferrum_qweight* w) {
  if (w)
    return unsupported(plugin::format("%s: argument '%s': GPTQ expert stacks are not implemented on CUDA yet (pass "
                                      "dense weights)", op, name));
  return ok_status();
}

const int32_t* i32(const ferrum_buffer* b) { return b ? static_cast<const int32_t*>(b->data) : nullptr; }
uint64_t count(const ferrum_buffer* b) { return b ? b->count : 0; }

// The expert GEMM of moe_gemm / fused_moe on validated arguments (routing buffers may be NULL when
// they hold nothing).
cuda::Status expert_gemm(int32_t dt, const void* x, const ferrum_buffer* sorted, const ferrum_buffer* eids,
                         const ferrum_buffer* nptp, const void* w, void* out, uint64_t num_pairs, uint64_t top_k,
                         uint64_t num_experts, uint64_t n, uint64_t k, uint64_t block_size, cudaStream_t st) {
  const uint64_t blocks = std::min(count(eids), common::ceil_div(count(sorted), block_size));
  return kernels::moe_gemm_dense(dt, x, i32(sorted), count(sorted), i32(eids), blocks, i32(nptp), w, out, num_pairs,
                                 top_k, num_experts, n, k, block_size, st);
}

ferrum_status route_topk_softmax(ferrum_context* ctx, const ferrum_route_topk_softmax_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_route_topk_softmax_args& a, bool dry) -> Status {
    const char* op = "route_topk_softmax";
    Status s = plugin::rules::check_route(a);
    if (s.ok()) s = check_experts(op, a.num_experts);
    if (s.ok()) s = check_top_k(op, a.top_k);
    if (s.ok()) s = check_devices(op, c, {{"logits", a.logits}, {"out_ids", a.out_ids}, {"out_weights", a.out_weights}});
    if (!s.ok() || dry || a.num_tokens == 0) return s;
    return launch(op, c, [&](cudaStream_t st) {
      return kernels::route_topk_softmax(a.logits->dtype, a.logits->data, static_cast<int32_t*>(a.out_ids->data),
                                         static_cast<float*>(a.out_weights->data), a.num_tokens, a.num_experts,
                                         a.top_k, a.norm_topk_prob != 0, st);
    });
  });
}

ferrum_status moe_align_block_size(ferrum_context* ctx, const ferrum_moe_align_block_size_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_moe_align_block_size_args& a, bool dry) -> Status {
    const char* op = "moe_align_block_size";
    Status s = plugin::rules::check_align(a);
    if (s.ok()) s = check_experts(op, a.num_experts);
    if (s.ok())
      s = check_devices(op, c, {{"topk_ids", a.topk_ids}, {"sorted_token_ids", a.sorted_token_ids},
                                {"expert_ids", a.expert_ids}, {"num_tokens_post_padded", a.num_tokens_post_padded}});
    if (!s.ok() || dry) return s;
    int32_t* total = static_cast<int32_t*>(a.num_tokens_post_padded->data);
    if (a.num_pairs == 0)  // §13: the count is written even without pairs
      return launch(op, c, [&](cudaStream_t) { return memset_async(*c.dev, total, sizeof(int32_t)); });
    const auto cap = routing_cap(a.num_pairs, a.num_experts, a.block_size);
    return launch(op, c, [&](cudaStream_t st) {
      return kernels::moe_align_block_size(i32(a.topk_ids), a.num_pairs, a.num_experts, a.block_size,
                                           static_cast<int32_t*>(a.sorted_token_ids->data), cap.cap,
                                           static_cast<int32_t*>(a.expert_ids->data), cap.cap_blocks, total, st);
    });
  });
}

ferrum_status moe_gemm(ferrum_context* ctx, const ferrum_moe_gemm_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_moe_gemm_args& a, bool dry) -> Status {
    const char* op = "moe_gemm";
    const bool work = a.num_pairs > 0;
    Status s = check_one_weight(op, "w_dense", a.w_dense, "w_quant", a.w_quant, work);
    if (s.ok()) s = plugin::rules::check_moe_pairs(a);
    if (s.ok()) s = no_gptq(op, "w_quant", a.w_quant);
    if (!s.ok() || !work) return s;
    s = check_block_size(op, a.block_size);
    if (s.ok())
      s = check_routing(op, a.sorted_token_ids, a.expert_ids, a.num_tokens_post_padded, a.num_pairs, a.num_experts,
                        a.block_size);
    if (s.ok()) s = check_experts(op, a.num_experts);
    if (s.ok()) s = check_gemm_block(op, a.block_size);
    if (s.ok()) s = check_grid(op, "n", a.n, routing_cap(a.num_pairs, a.num_experts, a.block_size).cap_blocks);
    if (s.ok())
      s = check_devices(op, c, {{"x", a.x}, {"sorted_token_ids", a.sorted_token_ids}, {"expert_ids", a.expert_ids},
                                {"num_tokens_post_padded", a.num_tokens_post_padded}, {"w_dense", a.w_dense},
                                {"out", a.out}});
    if (!s.ok() || dry || a.n == 0) return s;
    return launch(op, c, [&](cudaStream_t st) {
      return expert_gemm(a.out->dtype, a.x->data, a.sorted_token_ids, a.expert_ids, a.num_tokens_post_padded,
                         a.w_dense->data, a.out->data, a.num_pairs, a.top_k, a.num_experts, a.n, a.k, a.block_size, st);
    });
  });
}

ferrum_status fused_moe(ferrum_context* ctx, const ferrum_fused_moe_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_fused_moe_args& a, bool dry) -> Status {
    const char* op = "fused_moe";
    const bool work = a.num_tokens > 0 && a.hidden > 0;
    Status s = check_one_weight(op, "w_gate_up_dense", a.w_gate_up_dense, "w_gate_up_quant", a.w_gate_up_quant, work);
    if (s.ok()) s = check_one_weight(op, "w_down_dense", a.w_down_dense, "w_down_quant", a.w_down_quant, work);
    if (s.ok()) s = no_gptq(op, "w_gate_up_quant", a.w_gate_up_quant);
    if (s.ok()) s = no_gptq(op, "w_down_quant", a.w_down_quant);
    if (!s.ok() || !work) return s;
    uint64_t num_pairs = 0;
    s = check_product(op, {{"num_tokens", a.num_tokens}, {"top_k", a.top_k}}, num_pairs);
    if (s.ok()) s = check_block_size(op, a.block_size);
    if (s.ok())
      s = check_routing(op, a.sorted_token_ids, a.expert_ids, a.num_tokens_post_padded, num_pairs, a.num_experts,
                        a.block_size);
    if (s.ok()) s = check_experts(op, a.num_experts);
    if (s.ok()) s = check_top_k(op, a.top_k);
    if (s.ok()) s = check_gemm_block(op, a.block_size);
    uint64_t two_i = 0, scratch_elems = 0;
    if (s.ok()) s = check_product(op, {{"2", 2}, {"intermediate", a.intermediate}}, two_i);
    const uint64_t cap_blocks = routing_cap(num_pairs, a.num_experts, a.block_size).cap_blocks;
    if (s.ok()) s = check_grid(op, "2*intermediate", two_i, cap_blocks);
    if (s.ok()) s = check_grid(op, "hidden", a.hidden, cap_blocks);
    // gate/up rows (2I), activations (I) and expert outputs (H) per pair
    uint64_t per_pair = 0;
    if (s.ok()) s = check_sum(op, "intermediate", "3*intermediate + hidden", common::sat_mul(3, a.intermediate), a.hidden, per_pair);
    if (s.ok()) s = check_product(op, {{"num_pairs", num_pairs}, {"3*intermediate + hidden", per_pair}}, scratch_elems);
    if (s.ok())
      s = check_devices(op, c, {{"x", a.x}, {"topk_weights", a.topk_weights}, {"sorted_token_ids", a.sorted_token_ids},
                                {"expert_ids", a.expert_ids}, {"num_tokens_post_padded", a.num_tokens_post_padded},
                                {"w_gate_up_dense", a.w_gate_up_dense}, {"w_down_dense", a.w_down_dense},
                                {"out", a.out}});
    if (!s.ok() || dry) return s;
    const int32_t dt = a.out->dtype;
    const uint64_t es = dtype_size(dt), H = a.hidden, I = a.intermediate;
    uint64_t bytes = 0;
    s = check_product(op, {{"scratch elements", scratch_elems}, {"dtype size", es}}, bytes);
    void* scratch = nullptr;
    if (s.ok()) s = work_scratch(c, bytes, op, scratch);
    if (!s.ok()) return s;
    char* base = static_cast<char*>(scratch);
    void* gu = base;                                                     // [num_pairs, 2I]
    void* act = base + common::sat_mul(common::sat_mul(num_pairs, two_i), es);  // [num_pairs, I]; arith-ok: inside the scratch bytes checked above
    void* y = static_cast<char*>(act) + common::sat_mul(common::sat_mul(num_pairs, I), es);  // [num_pairs, H]; arith-ok: inside the scratch
    return launch(op, c, [&](cudaStream_t st) -> cuda::Status {
      cuda::Status ds = expert_gemm(dt, a.x->data, a.sorted_token_ids, a.expert_ids, a.num_tokens_post_padded,
                                    a.w_gate_up_dense->data, gu, num_pairs, a.top_k, a.num_experts, two_i, H,
                                    a.block_size, st);
      if (ds.ok() && I) ds = kernels::silu_mul_split(dt, gu, 0, act, 0, num_pairs, I, st);
      if (ds.ok())
        ds = expert_gemm(dt, act, a.sorted_token_ids, a.expert_ids, a.num_tokens_post_padded, a.w_down_dense->data, y,
                         num_pairs, 1, a.num_experts, H, I, a.block_size, st);
      if (ds.ok())
        ds = kernels::weighted_sum_rows(dt, y, nullptr, num_pairs, static_cast<const float*>(a.topk_weights->data),
                                        a.out->data, a.num_tokens, a.top_k, H, st);
      return ds;
    });
  });
}

ferrum_status moe_combine(ferrum_context* ctx, const ferrum_moe_combine_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_moe_combine_args& a, bool dry) -> Status {
    const char* op = "moe_combine";
    Status s = check_devices(op, c, {{"packed_down", a.packed_down}, {"pairs_by_token", a.pairs_by_token},
                                     {"pair_weights", a.pair_weights}, {"out", a.out}});
    if (!s.ok() || dry || a.num_tokens == 0 || a.hidden == 0) return s;
    return launch(op, c, [&](cudaStream_t st) {
      return kernels::weighted_sum_rows(a.out->dtype, a.packed_down ? a.packed_down->data : nullptr,
                                        i32(a.pairs_by_token), a.num_packed,
                                        static_cast<const float*>(a.pair_weights->data), a.out->data, a.num_tokens,
                                        a.top_k, a.hidden, st);
    });
  });
}

ferrum_status weighted_sum_batched(ferrum_context* ctx, const ferrum_weighted_sum_batched_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_weighted_sum_batched_args& a, bool dry) -> Status {
    const char* op = "weighted_sum_batched";
    Status s = check_devices(op, c, {{"slots", a.slots}, {"weights", a.weights}, {"out", a.out}});
    if (!s.ok() || dry || a.num_tokens == 0 || a.hidden == 0) return s;
    return launch(op, c, [&](cudaStream_t st) {
      return kernels::weighted_sum_rows(a.out->dtype, a.slots->data, nullptr, 0, static_cast<const float*>(a.weights->data),
                                        a.out->data, a.num_tokens, a.top_k, a.hidden, st);
    });
  });
}

}  // namespace

const ferrum_moe_table kMoeTable = {sizeof(ferrum_moe_table), FERRUM_MOE_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cuda::glue
