// CPU plugin: GPTQ int4 quantised matmul (docs/spec.md §12): load_gptq, load_gptq_stacked, marlin_gemm,
// and the internal GPTQ API of qweight.hpp. Thin glue over kernels/gptq.hpp.
#include <memory>

#include <ferrum/common/quant_rules.hpp>

#include "glue.hpp"
#include "qweight.hpp"

namespace ferrum::cpu {

namespace {

// Builds a weight of the matrices of `srcs` (one per expert).
Status build(const std::vector<GptqSource>& srcs, ferrum_qweight** out) {
  auto w = std::make_unique<ferrum_qweight>();
  w->kind = ferrum_qweight::Kind::gptq;
  w->act_dtype = srcs.front().act_dtype;
  w->k = srcs.front().k;
  w->n = srcs.front().n;
  w->experts.resize(srcs.size());
  for (size_t e = 0; e < srcs.size(); ++e) gptq_repack(srcs[e], w->experts[e]);
  *out = w.release();
  return ok_status();
}

}  // namespace

bool gptq_info(const ferrum_qweight* w, GptqInfo& info) {
  if (!live_qweight(w) || w->kind != ferrum_qweight::Kind::gptq) return false;
  info = {w->experts.size(), w->k, w->n, w->act_dtype};
  return true;
}

template <class T>
void gptq_matmul(const ferrum_qweight* w, uint64_t expert, const T* x, uint64_t rows, T* out) {
  cpu::gptq_matmul<T>(w->experts[expert], x, rows, out);
}
template void gptq_matmul<float>(const ferrum_qweight*, uint64_t, const float*, uint64_t, float*);
template void gptq_matmul<f16>(const ferrum_qweight*, uint64_t, const f16*, uint64_t, f16*);
template void gptq_matmul<bf16>(const ferrum_qweight*, uint64_t, const bf16*, uint64_t, bf16*);

ferrum_status load_gptq(ferrum_context* ctx, const ferrum_load_gptq_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_load_gptq_args& a, bool dry) -> Status {
    std::vector<GptqSource> srcs;
    const Status st = plugin::rules::gptq_sources(a, c.activation_dtype, srcs);
    return !st.ok() || dry ? st : build(srcs, a.weight);
  });
}

ferrum_status load_gptq_stacked(ferrum_context* ctx, const ferrum_load_gptq_stacked_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_load_gptq_stacked_args& a, bool dry) -> Status {
    std::vector<GptqSource> srcs;
    const Status st = plugin::rules::gptq_sources(a, c.activation_dtype, srcs);
    return !st.ok() || dry ? st : build(srcs, a.weight);
  });
}

ferrum_status marlin_gemm(ferrum_context* ctx, const ferrum_marlin_gemm_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_marlin_gemm_args& a, bool dry) -> Status {
    GptqInfo info{};
    if (!gptq_info(a.weight, info))
      return invalid(plugin::format("marlin_gemm: argument 'weight': expected a live GPTQ weight (load_gptq), given %s",
                                    !a.weight ? "NULL"
                                    : !live_qweight(a.weight) ? "an unknown or released handle"
                                                              : "a GGUF weight"));
    Status s = plugin::rules::check_marlin_gemm(a, info.num_experts, info.k, info.n, info.act_dtype);
    if (!s.ok() || dry || a.m == 0) return s;
    return dispatch_float(info.act_dtype, unsupported("marlin_gemm: activation dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      gptq_matmul<T>(a.weight, 0, data_of<const T>(a.a), a.m, data_of<T>(a.out));
      return ok_status();
    });
  });
}

}  // namespace ferrum::cpu
