// CPU plugin: GPTQ int4 quantised matmul (docs/spec.md §12): load_gptq, load_gptq_stacked, marlin_gemm,
// and the internal GPTQ API of qweight.hpp. Thin glue over kernels/gptq.hpp.
#include <memory>

#include "glue.hpp"
#include "qweight.hpp"

namespace ferrum::cpu {


namespace {

using ull = unsigned long long;

// Fields shared by load_gptq and load_gptq_stacked.
struct GptqShape {
  uint32_t bits;
  uint64_t group_size, k, n;
  int32_t scales_dtype, act_dtype;
};

Status check_shape(const char* op, const char* n_name, const GptqShape& s) {
  if (s.bits != 4)
    return unsupported(plugin::format("%s: argument 'bits': expected 4, given %u", op, s.bits));
  if (s.k == 0 || s.k % 8)
    return invalid(plugin::format("%s: argument 'k': expected a positive multiple of 8, given %llu", op, (ull)s.k));
  if (s.n == 0 || s.n % 8)
    return invalid(plugin::format("%s: argument '%s': expected a positive multiple of 8, given %llu", op, n_name,
                                  (ull)s.n));
  if (s.group_size && s.k % s.group_size)
    return invalid(plugin::format("%s: argument 'group_size': expected 0 (per-channel) or a divisor of k = %llu, given %llu",
                                  op, (ull)s.k, (ull)s.group_size));
  // The repacked matrix holds k·n nibbles and G·n scales: k·n must be representable.
  uint64_t kn = 0;
  Status st = plugin::rules::check_product(op, {{"k", s.k}, {n_name, s.n}}, kn);
  if (!st.ok()) return st;
  if (s.scales_dtype != FERRUM_DTYPE_F16 && s.scales_dtype != FERRUM_DTYPE_BF16 && s.scales_dtype != FERRUM_DTYPE_F32)
    return invalid(plugin::format("%s: argument 'scales_dtype': expected f16, bf16 or f32, given %s (%d)", op,
                                  dtype_name(s.scales_dtype), s.scales_dtype));
  if (s.act_dtype != 0 && !is_float_dtype(s.act_dtype))
    return invalid(plugin::format("%s: argument 'act_dtype': expected 0 (context default), f32, f16 or bf16, given %d", op,
                                  s.act_dtype));
  return ok_status();
}

// Host tensors of one matrix; `e` names the expert in messages (-1 for load_gptq).
Status check_tensors(const char* op, int64_t e, const GptqShape& s, const int32_t* qweight, const void* scales,
                     const int32_t* g_idx) {
  const std::string where = e < 0 ? std::string() : plugin::format("[%lld]", (long long)e);
  if (!qweight) return invalid(plugin::format("%s: argument 'qweight%s': expected a host pointer, given NULL", op, where.c_str()));
  if (!scales) return invalid(plugin::format("%s: argument 'scales%s': expected a host pointer, given NULL", op, where.c_str()));
  if (g_idx) {
    const uint64_t G = s.group_size ? s.k / s.group_size : 1;
    for (uint64_t i = 0; i < s.k; ++i)
      if (g_idx[i] < 0 || uint64_t(g_idx[i]) >= G)
        return invalid(plugin::format("%s: argument 'g_idx%s': expected every value in [0, G = %llu), given g_idx[%llu] = %d",
                                      op, where.c_str(), (ull)G, (ull)i, g_idx[i]));
  }
  return ok_status();
}

// Builds a weight of E experts; tensors(e, src) fills the pointers of expert e.
template <class Tensors>
Status build(const GptqShape& s, int32_t act, uint64_t E, Tensors&& tensors, ferrum_qweight** out) {
  auto w = std::make_unique<ferrum_qweight>();
  w->kind = ferrum_qweight::Kind::gptq;
  w->act_dtype = act;
  w->k = s.k;
  w->n = s.n;
  w->experts.resize(E);
  for (uint64_t e = 0; e < E; ++e) {
    GptqSource src;
    tensors(e, src);
    src.group_size = s.group_size;
    src.k = s.k;
    src.n = s.n;
    src.scales_dtype = s.scales_dtype;
    src.act_dtype = act;
    gptq_repack(src, w->experts[e]);
  }
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
    const GptqShape s{a.bits, a.group_size, a.k, a.n, a.scales_dtype, a.act_dtype};
    Status st = check_shape("load_gptq", "n", s);
    if (st.ok()) st = check_tensors("load_gptq", -1, s, a.qweight, a.scales, a.g_idx);
    if (!st.ok() || dry) return st;
    const int32_t act = a.act_dtype ? a.act_dtype : c.activation_dtype;
    return build(s, act, 1, [&](uint64_t, GptqSource& src) {
      src.qweight = a.qweight;
      src.scales = a.scales;
      src.qzeros = a.qzeros;
      src.g_idx = a.g_idx;
    }, a.weight);
  });
}

ferrum_status load_gptq_stacked(ferrum_context* ctx, const ferrum_load_gptq_stacked_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_load_gptq_stacked_args& a, bool dry) -> Status {
    const char* op = "load_gptq_stacked";
    // num_experts is the length of four host arrays the plugin cannot measure: bound it before
    // the first element is read, so a wrapped or garbage count is refused instead of walking
    // far past the caller's arrays (a count within the bound is the caller's word).
    constexpr uint64_t kMaxExperts = uint64_t{1} << 16;
    if (a.num_experts == 0 || a.num_experts > kMaxExperts)
      return invalid(plugin::format("load_gptq_stacked: argument 'num_experts': expected 1..%llu, given %llu",
                                    (unsigned long long)kMaxExperts, (unsigned long long)a.num_experts));
    const GptqShape s{a.bits, a.group_size, a.k, a.n_per_expert, a.scales_dtype, a.act_dtype};
    Status st = check_shape(op, "n_per_expert", s);
    for (uint64_t e = 0; st.ok() && e < a.num_experts; ++e)
      st = check_tensors(op, int64_t(e), s, a.qweights[e], a.scales[e], a.g_idx ? a.g_idx[e] : nullptr);
    if (!st.ok() || dry) return st;
    const int32_t act = a.act_dtype ? a.act_dtype : c.activation_dtype;
    return build(s, act, a.num_experts, [&](uint64_t e, GptqSource& src) {
      src.qweight = a.qweights[e];
      src.scales = a.scales[e];
      src.qzeros = a.qzeros ? a.qzeros[e] : nullptr;
      src.g_idx = a.g_idx ? a.g_idx[e] : nullptr;
    }, a.weight);
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
    if (info.num_experts != 1)
      return invalid(plugin::format("marlin_gemm: argument 'weight': expected a single GPTQ matrix (load_gptq), given a "
                                    "stack of %llu experts", (ull)info.num_experts));
    const ferrum_buffer* act_buf = a.a ? a.a : a.out;
    if (act_buf && act_buf->dtype != info.act_dtype)
      return invalid(plugin::format("marlin_gemm: argument '%s': expected dtype %s (the weight's act_dtype), given %s",
                                    a.a ? "a" : "out", dtype_name(info.act_dtype), dtype_name(act_buf->dtype)));
    uint64_t a_need = 0, out_need = 0;
    Status s = check_product("marlin_gemm", {{"m", a.m}, {"weight.k", info.k}}, a_need);
    if (s.ok()) s = check_product("marlin_gemm", {{"m", a.m}, {"weight.n", info.n}}, out_need);
    if (s.ok()) s = check_min_count("marlin_gemm", "a", a.a, a_need);
    if (s.ok()) s = check_min_count("marlin_gemm", "out", a.out, out_need);
    if (!s.ok() || dry || a.m == 0) return s;
    return dispatch_float(info.act_dtype, unsupported("marlin_gemm: activation dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      gptq_matmul<T>(a.weight, 0, data_of<const T>(a.a), a.m, data_of<T>(a.out));
      return ok_status();
    });
  });
}

}  // namespace ferrum::cpu
