// Shared dispatch helpers of the CPU plugin's glue layer (the op rules themselves are shared with
// the CUDA plugin: <ferrum/common/op_rules.hpp> and friends, brought in by cpu_plugin.hpp).
#pragma once

#include <cmath>
#include <type_traits>

#include "cpu_plugin.hpp"

namespace ferrum::cpu {

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
