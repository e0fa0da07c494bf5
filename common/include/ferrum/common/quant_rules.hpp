// Op rules of the quantised-matmul ops shared by the project's plugins, with the same messages:
// GGUF (docs/spec.md §11: the block geometry of each type, load_quant / gguf_matmul /
// gguf_dequantize) and GPTQ (§12: the shape and tensor checks of load_gptq / load_gptq_stacked).
// A plugin adds only what its device needs.
#pragma once

#include <cstdint>
#include <vector>

#include <ferrum/common/gguf_blocks.hpp>
#include <ferrum/common/gptq_layout.hpp>
#include <ferrum/common/op_rules.hpp>

namespace ferrum::plugin::rules {

using common::gguf_block_bytes;
using common::gguf_qk;

// load_quant: a served type, a known act_precision (ABI 1.2; read through the accessor, so a 1.1
// caller's shorter struct is FERRUM_QUANT_ACT_EXACT), whole blocks per row, byte_len == n_rows ·
// (n_cols / QK) · block bytes, and n_rows · n_cols representable (the element count of the
// weight's users).
inline Status check_load_quant(const ferrum_load_quant_args& a) {
  using ull = unsigned long long;
  const uint64_t qk = gguf_qk(a.quant_type), bb = gguf_block_bytes(a.quant_type);
  if (qk == 0)
    return unsupported(format("load_quant: argument 'quant_type': expected a GGUF type id in {2 (Q4_0), "
                              "3 (Q4_1), 8 (Q8_0), 12 (Q4_K), 13 (Q5_K), 14 (Q6_K)}, given %d",
                              a.quant_type));
  const int32_t act = ferrum_load_quant_args_act_precision(&a);
  if (act != FERRUM_QUANT_ACT_EXACT && act != FERRUM_QUANT_ACT_Q8)
    return invalid(format("load_quant: argument 'act_precision': expected %d (FERRUM_QUANT_ACT_EXACT) or %d "
                          "(FERRUM_QUANT_ACT_Q8), given %d",
                          FERRUM_QUANT_ACT_EXACT, FERRUM_QUANT_ACT_Q8, act));
  if (a.n_cols % qk)
    return invalid(format("load_quant: argument 'n_cols': expected a multiple of QK = %llu for type %d, given %llu",
                          (ull)qk, a.quant_type, (ull)a.n_cols));
  const Size expect = Size(a.n_rows) * Size(a.n_cols / qk) * Size(bb);
  if (!expect.ok())
    return invalid(format("load_quant: arguments 'n_rows'/'n_cols': expected n_rows * (n_cols / QK) * %llu < 2^64, "
                          "given n_rows = %llu, n_cols = %llu (the size wraps past 2^64)",
                          (ull)bb, (ull)a.n_rows, (ull)a.n_cols));
  if (a.byte_len != expect.value)
    return invalid(format("load_quant: argument 'byte_len': expected n_rows * (n_cols / QK) * %llu = %llu, given %llu",
                          (ull)bb, (ull)expect.value, (ull)a.byte_len));
  uint64_t elems = 0;
  return check_product("load_quant", {{"n_rows", a.n_rows}, {"n_cols", a.n_cols}}, elems);
}

// gguf_matmul on a weight of n_rows × n_cols: `a` holds m · n_cols and `out` m · n_rows elements
// (`out_need` gets m · n_rows).
inline Status check_gguf_matmul(const ferrum_gguf_matmul_args& a, uint64_t n_rows, uint64_t n_cols,
                                uint64_t& out_need) {
  uint64_t a_need = 0;
  Status s = check_product("gguf_matmul", {{"m", a.m}, {"weight.n_cols", n_cols}}, a_need);
  if (s.ok()) s = check_product("gguf_matmul", {{"m", a.m}, {"weight.n_rows", n_rows}}, out_need);
  if (s.ok()) s = check_min_count("gguf_matmul", "a", a.a, a_need);
  if (s.ok()) s = check_min_count("gguf_matmul", "out", a.out, out_need);
  return s;
}

// ---- GPTQ (docs/spec.md §12.1) -----------------------------------------------------------------
// Fields shared by load_gptq and load_gptq_stacked (n: `n` or `n_per_expert`).
struct GptqShape {
  uint32_t bits;
  uint64_t group_size, k, n;
  int32_t scales_dtype, act_dtype;
};

// bits 4; K and N positive multiples of 8; K a multiple of group_size (> 0); K·N representable;
// scales F16/BF16/F32; act_dtype 0 (the context's) or a float dtype.
inline Status check_gptq_shape(const char* op, const char* n_name, const GptqShape& s) {
  using ull = unsigned long long;
  if (s.bits != 4) return unsupported(format("%s: argument 'bits': expected 4, given %u", op, s.bits));
  if (s.k == 0 || s.k % 8)
    return invalid(format("%s: argument 'k': expected a positive multiple of 8, given %llu", op, (ull)s.k));
  if (s.n == 0 || s.n % 8)
    return invalid(format("%s: argument '%s': expected a positive multiple of 8, given %llu", op, n_name, (ull)s.n));
  if (s.group_size && s.k % s.group_size)
    return invalid(format("%s: argument 'group_size': expected 0 (per-channel) or a divisor of k = %llu, given %llu",
                          op, (ull)s.k, (ull)s.group_size));
  // The repacked matrix holds k·n nibbles and G·n scales: k·n must be representable.
  uint64_t kn = 0;
  Status st = check_product(op, {{"k", s.k}, {n_name, s.n}}, kn);
  if (!st.ok()) return st;
  if (s.scales_dtype != FERRUM_DTYPE_F16 && s.scales_dtype != FERRUM_DTYPE_BF16 && s.scales_dtype != FERRUM_DTYPE_F32)
    return invalid(format("%s: argument 'scales_dtype': expected f16, bf16 or f32, given %s (%d)", op,
                          dtype_name(s.scales_dtype), s.scales_dtype));
  if (s.act_dtype != 0 && !is_float_dtype(s.act_dtype))
    return invalid(format("%s: argument 'act_dtype': expected 0 (context default), f32, f16 or bf16, given %d", op,
                          s.act_dtype));
  return ok_status();
}

// The host tensors of one matrix: qweight and scales present, every g_idx entry in [0, G).
// `e` names the expert in messages (-1 for load_gptq).
inline Status check_gptq_tensors(const char* op, int64_t e, const GptqShape& s, const int32_t* qweight,
                                 const void* scales, const int32_t* g_idx) {
  using ull = unsigned long long;
  const std::string where = e < 0 ? std::string() : format("[%lld]", (long long)e);
  if (!qweight) return invalid(format("%s: argument 'qweight%s': expected a host pointer, given NULL", op, where.c_str()));
  if (!scales) return invalid(format("%s: argument 'scales%s': expected a host pointer, given NULL", op, where.c_str()));
  if (g_idx) {
    const uint64_t G = s.group_size ? s.k / s.group_size : 1;
    for (uint64_t i = 0; i < s.k; ++i)
      if (g_idx[i] < 0 || uint64_t(g_idx[i]) >= G)
        return invalid(format("%s: argument 'g_idx%s': expected every value in [0, G = %llu), given g_idx[%llu] = %d", op,
                              where.c_str(), (ull)G, (ull)i, g_idx[i]));
  }
  return ok_status();
}

// load_gptq_stacked's num_experts is the length of four host arrays the plugin cannot measure:
// it is bounded before the first element is read, so a wrapped or garbage count is refused instead
// of walking far past the caller's arrays (a count within the bound is the caller's word).
inline constexpr uint64_t kGptqMaxExperts = uint64_t{1} << 16;
inline Status check_gptq_experts(const char* op, uint64_t num_experts) {
  if (num_experts == 0 || num_experts > kGptqMaxExperts)
    return invalid(format("%s: argument 'num_experts': expected 1..%llu, given %llu", op,
                          (unsigned long long)kGptqMaxExperts, (unsigned long long)num_experts));
  return ok_status();
}

// load_gptq: every check, then the one matrix's source (activation dtype: act_dtype, or the
// context's `ctx_act` when 0). Plugins build their format from `srcs`.
inline Status gptq_sources(const ferrum_load_gptq_args& a, int32_t ctx_act, std::vector<common::GptqSource>& srcs) {
  const GptqShape s{a.bits, a.group_size, a.k, a.n, a.scales_dtype, a.act_dtype};
  Status st = check_gptq_shape("load_gptq", "n", s);
  if (st.ok()) st = check_gptq_tensors("load_gptq", -1, s, a.qweight, a.scales, a.g_idx);
  if (!st.ok()) return st;
  srcs.assign(1, common::GptqSource{a.qweight, a.scales, a.qzeros, a.g_idx, a.group_size, a.k, a.n, a.scales_dtype,
                                    a.act_dtype ? a.act_dtype : ctx_act});
  return ok_status();
}

// load_gptq_stacked: the same for every expert.
inline Status gptq_sources(const ferrum_load_gptq_stacked_args& a, int32_t ctx_act,
                           std::vector<common::GptqSource>& srcs) {
  const char* op = "load_gptq_stacked";
  Status st = check_gptq_experts(op, a.num_experts);
  if (!st.ok()) return st;
  const GptqShape s{a.bits, a.group_size, a.k, a.n_per_expert, a.scales_dtype, a.act_dtype};
  st = check_gptq_shape(op, "n_per_expert", s);
  for (uint64_t e = 0; st.ok() && e < a.num_experts; ++e)
    st = check_gptq_tensors(op, int64_t(e), s, a.qweights[e], a.scales[e], a.g_idx ? a.g_idx[e] : nullptr);
  if (!st.ok()) return st;
  srcs.clear();
  for (uint64_t e = 0; e < a.num_experts; ++e)
    srcs.push_back(common::GptqSource{a.qweights[e], a.scales[e], a.qzeros ? a.qzeros[e] : nullptr,
                                      a.g_idx ? a.g_idx[e] : nullptr, a.group_size, a.k, a.n_per_expert,
                                      a.scales_dtype, a.act_dtype ? a.act_dtype : ctx_act});
  return ok_status();
}

// marlin_gemm on a GPTQ weight of `experts` matrices of k × n loaded for `act_dtype`: a single
// matrix, a and out of that dtype, a holding m·k and out m·n elements.
inline Status check_marlin_gemm(const ferrum_marlin_gemm_args& a, uint64_t experts, uint64_t k, uint64_t n,
                                int32_t act_dtype) {
  using ull = unsigned long long;
  if (experts != 1)
    return invalid(format("marlin_gemm: argument 'weight': expected a single GPTQ matrix (load_gptq), given a "
                          "stack of %llu experts", (ull)experts));
  const ferrum_buffer* act_buf = a.a ? a.a : a.out;
  if (act_buf && act_buf->dtype != act_dtype)
    return invalid(format("marlin_gemm: argument '%s': expected dtype %s (the weight's act_dtype), given %s",
                          a.a ? "a" : "out", dtype_name(act_dtype), dtype_name(act_buf->dtype)));
  uint64_t a_need = 0, out_need = 0;
  Status s = check_product("marlin_gemm", {{"m", a.m}, {"weight.k", k}}, a_need);
  if (s.ok()) s = check_product("marlin_gemm", {{"m", a.m}, {"weight.n", n}}, out_need);
  if (s.ok()) s = check_min_count("marlin_gemm", "a", a.a, a_need);
  if (s.ok()) s = check_min_count("marlin_gemm", "out", a.out, out_need);
  return s;
}

}  // namespace ferrum::plugin::rules
