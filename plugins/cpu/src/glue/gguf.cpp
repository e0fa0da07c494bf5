// CPU plugin: GGUF quantised matmul (docs/spec.md §11) and qweight_release. Thin glue: op-specific
// checks, dtype dispatch, kernel call (kernels/gguf.hpp).
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
    const uint64_t qk = gguf_qk(a.quant_type), bb = gguf_block_bytes(a.quant_type);
    if (qk == 0)
      return unsupported(plugin::format("load_quant: argument 'quant_type': expected a GGUF type id in {2 (Q4_0), "
                                        "3 (Q4_1), 8 (Q8_0), 12 (Q4_K), 13 (Q5_K), 14 (Q6_K)}, given %d",
                                        a.quant_type));
    if (a.n_cols % qk)
      return invalid(plugin::format("load_quant: argument 'n_cols': expected a multiple of QK = %llu for type %d, given %llu",
                                    (ull)qk, a.quant_type, (ull)a.n_cols));
    const Size expect = Size(a.n_rows) * Size(a.n_cols / qk) * Size(bb);
    if (!expect.ok())
      return invalid(plugin::format("load_quant: arguments 'n_rows'/'n_cols': expected n_rows * (n_cols / QK) * %llu < 2^64, "
                                    "given n_rows = %llu, n_cols = %llu (the size wraps past 2^64)",
                                    (ull)bb, (ull)a.n_rows, (ull)a.n_cols));
    if (a.byte_len != expect.value)
      return invalid(plugin::format("load_quant: argument 'byte_len': expected n_rows * (n_cols / QK) * %llu = %llu, "
                                    "given %llu",
                                    (ull)bb, (ull)expect.value, (ull)a.byte_len));
    // Both element counts of the weight's users (n_rows·n_cols) must be representable too.
    uint64_t elems = 0;
    Status s = check_product("load_quant", {{"n_rows", a.n_rows}, {"n_cols", a.n_cols}}, elems);
    if (!s.ok() || dry) return s;
    auto* w = new ferrum_qweight;
    try {
      w->kind = ferrum_qweight::Kind::gguf;
      w->quant_type = a.quant_type;
      w->n_rows = a.n_rows;
      w->n_cols = a.n_cols;
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
    uint64_t a_need = 0, out_need = 0;
    s = check_product("gguf_matmul", {{"m", a.m}, {"weight.n_cols", w.n_cols}}, a_need);
    if (s.ok()) s = check_product("gguf_matmul", {{"m", a.m}, {"weight.n_rows", w.n_rows}}, out_need);
    if (s.ok()) s = check_min_count("gguf_matmul", "a", a.a, a_need);
    if (s.ok()) s = check_min_count("gguf_matmul", "out", a.out, out_need);
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
