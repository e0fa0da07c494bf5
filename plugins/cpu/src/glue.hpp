// Shared argument checks of the CPU plugin's glue layer (op-specific rules of docs/spec.md that the
// generated generic checks cannot express).
#pragma once

#include <cmath>
#include <type_traits>

#include <ferrum/common/op_rules.hpp>

#include "cpu_plugin.hpp"

namespace ferrum::cpu {

// The op rules shared with the CUDA plugin (same checks, same messages).
using plugin::rules::check_finite_eps;
using plugin::rules::check_gqa;
using plugin::rules::check_min_count;
using plugin::rules::check_norm_weight;
using plugin::rules::check_positive;
using plugin::rules::check_product;
using plugin::rules::check_rope;
using plugin::rules::check_sum;
using plugin::rules::check_sum_le;
using plugin::rules::pos_end;
using common::Size;

// Calls f(T{}, C{}) with T the activation type and C the RoPE table type (T, or float when the
// tables are F32). `tab` 0 (no tables, mode 0) means C = T.
template <class F>
Status with_act_and_table(int32_t act, int32_t tab, F&& f) {
  return dispatch_float(act, unsupported("activation dtype"), [&](auto t) -> Status {
    using T = decltype(t);
    if constexpr (!std::is_same_v<T, float>)
      if (tab == FERRUM_DTYPE_F32) return f(T{}, float{});
    return f(T{}, T{});
  });
}

}  // namespace ferrum::cpu
