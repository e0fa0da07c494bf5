// Op rules of the GGUF quantised-matmul ops (docs/spec.md §11) shared by the project's plugins:
// the block geometry of each type and the checks of load_quant / gguf_matmul / gguf_dequantize,
// with the same messages. A plugin adds only what its device needs.
#pragma once

#include <cstdint>

#include <ferrum/common/gguf_blocks.hpp>
#include <ferrum/common/op_rules.hpp>

namespace ferrum::plugin::rules {

using common::gguf_block_bytes;
using common::gguf_qk;

// load_quant: a served type, whole blocks per row, byte_len == n_rows · (n_cols / QK) · block
// bytes, and n_rows · n_cols representable (the element count of the weight's users).
inline Status check_load_quant(const ferrum_load_quant_args& a) {
  using ull = unsigned long long;
  const uint64_t qk = gguf_qk(a.quant_type), bb = gguf_block_bytes(a.quant_type);
  if (qk == 0)
    return unsupported(format("load_quant: argument 'quant_type': expected a GGUF type id in {2 (Q4_0), "
                              "3 (Q4_1), 8 (Q8_0), 12 (Q4_K), 13 (Q5_K), 14 (Q6_K)}, given %d",
                              a.quant_type));
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

}  // namespace ferrum::plugin::rules
