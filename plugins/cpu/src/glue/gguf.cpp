// CPU plugin: GGUF quantised matmul (docs/spec.md §11) and qweight_release. Thin glue: op-specific
// checks, dtype dispatch, kernel call (kernels/gguf.hpp).
#include <ferrum/common/quant_rules.hpp>

#include "glue.hpp"
#include "qweight.hpp"

namespace ferrum::cpu {


namespace {

using ull = unsigned long long;

// The weight argument must be a live GGUF weight of this plugin.
Status check_gguf_weight(const char* op, const ferrum_qweight* w) {
  if (!live_qweight(w))
    return invalid(plugin::format("%s: argument 'weight': expected a live quantised weight of this plugin, given %s", op,
                                  w ? "an unknown or released handle" : "NULL"));
  if (w->kind != ferrum_qweight::Kind::gguf)
    return invalid(plugin::format("%s: argument 'weight': expected a GGUF weight (load_quant), given a GPTQ weight", op));
  return ok_status();
}

}  // namespace

ferrum_status load_quant(ferrum_context* ctx, const ferrum_load_quant_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_load_quant_args& a, bool dry) -> Status {
    Status s = plugin::rules::check_load_quant(a);
    if (!s.ok() || dry) return s;
    auto* w = new ferrum_qweight;
    try {
      w->kind = ferrum_qweight::Kind::gguf;
      w->quant_type = a.quant_type;
      w->n_rows = a.n_rows;
      w->n_cols = a.n_cols;
      w->act_q8 = ferrum_load_quant_args_act_precision(&a) == FERRUM_QUANT_ACT_Q8;  // a 1.1 caller: exact
      w->blocks.resize(a.byte_len);  // byte_len validated above; a failed allocation is OUT_OF_MEMORY
      std::copy_n(a.bytes, a.byte_len, w->blocks.begin());
    } catch (...) {
      delete w;
      throw;
    }
    *a.weight = w;
    return ok_status();
  });
}

ferrum_status gguf_matmul(ferrum_context* ctx, const ferrum_gguf_matmul_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_gguf_matmul_args& a, bool dry) -> Status {
    Status s = check_gguf_weight("gguf_matmul", a.weight);
    if (!s.ok()) return s;
    const ferrum_qweight& w = *a.weight;
    uint64_t out_need = 0;
    s = plugin::rules::check_gguf_matmul(a, w.n_rows, w.n_cols, out_need);
    if (!s.ok() || dry || a.m == 0 || w.n_rows == 0) return s;
    return dispatch_float(a.out->dtype, unsupported("gguf_matmul: activation dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      if (w.n_cols == 0) {  // empty sums: +0.0
        for (uint64_t i = 0; i < out_need; ++i) data_of<T>(a.out)[i] = from_float<T>(0.0f);
      } else {
        cpu::gguf_matmul<T>(w.gguf(), data_of<const T>(a.a), data_of<T>(a.out), a.m);
      }
      return ok_status();
    });
  });
}

ferrum_status gguf_dequantize(ferrum_context* ctx, const ferrum_gguf_dequantize_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_gguf_dequantize_args& a, bool dry) -> Status {
    Status s = check_gguf_weight("gguf_dequantize", a.weight);
    if (!s.ok()) return s;
    const ferrum_qweight& w = *a.weight;
    s = check_min_count("gguf_dequantize", "out", a.out, w.n_rows * w.n_cols);
    if (!s.ok() || dry || w.n_rows * w.n_cols == 0) return s;
    return dispatch_float(a.out->dtype, unsupported("gguf_dequantize: output dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      cpu::gguf_dequantize<T>(w.gguf(), data_of<T>(a.out));
      return ok_status();
    });
  });
}

ferrum_status qweight_release(ferrum_context*, const ferrum_qweight_release_args* a) {
  return plugin::guard(nullptr, "qweight_release", [&]() -> Status {
    if (!a || a->struct_size < FERRUM_QWEIGHT_RELEASE_ARGS_SIZE_V1_0)
      return invalid("qweight_release: args NULL or struct_size too small");
    auto* w = const_cast<ferrum_qweight*>(a->weight);
    if (!w) return ok_status();  // NULL-safe
    if (!live_qweight(w))
      return invalid("qweight_release: argument 'weight': expected a live quantised weight, given a released one");
    w->magic = ferrum_qweight::kDead;
    delete w;
    return ok_status();
  });
}

}  // namespace ferrum::cpu
