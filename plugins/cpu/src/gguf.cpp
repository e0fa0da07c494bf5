// CPU plugin: GGUF quantised matmul (OPS.md §11) and qweight_release. Thin glue: op-specific
// checks, dtype dispatch, kernel call (kernels/gguf.hpp).
#include "glue.hpp"
#include "qweight.hpp"

namespace ferrum::cpu {

using plugin::data_of;
using plugin::run_op;

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
    const uint64_t blocks_per_row = a.n_cols / qk;
    const bool overflow = a.n_rows && blocks_per_row > UINT64_MAX / bb / a.n_rows;
    if (overflow || a.byte_len != a.n_rows * blocks_per_row * bb)
      return invalid(plugin::format("load_quant: argument 'byte_len': expected n_rows * (n_cols / QK) * %llu = %s%llu, "
                                    "given %llu",
                                    (ull)bb, overflow ? "(overflow) " : "",
                                    overflow ? 0ull : (ull)(a.n_rows * blocks_per_row * bb), (ull)a.byte_len));
    if (dry) return ok_status();
    auto* w = new ferrum_qweight;
    try {
      w->kind = ferrum_qweight::Kind::gguf;
      w->quant_type = a.quant_type;
      w->n_rows = a.n_rows;
      w->n_cols = a.n_cols;
      w->blocks.assign(a.bytes, a.bytes + a.byte_len);
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
    if (s.ok()) s = check_min_count("gguf_matmul", "a", a.a, a.m * w.n_cols);
    if (s.ok()) s = check_min_count("gguf_matmul", "out", a.out, a.m * w.n_rows);
    if (!s.ok() || dry || a.m == 0 || w.n_rows == 0) return s;
    return dispatch_float(a.out->dtype, unsupported("gguf_matmul: activation dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      if (w.n_cols == 0) {  // empty sums: +0.0
        for (uint64_t i = 0; i < a.m * w.n_rows; ++i) data_of<T>(a.out)[i] = from_float<T>(0.0f);
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
