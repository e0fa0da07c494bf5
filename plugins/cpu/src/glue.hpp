// Shared argument checks of the CPU plugin's glue layer (op-specific rules of OPS.md that the
// generated generic checks cannot express).
#pragma once

#include <cmath>
#include <type_traits>

#include "cpu_plugin.hpp"

namespace ferrum::cpu {

inline Status check_finite_eps(const char* op, float eps) {
  if (!std::isfinite(eps) || eps < 0)
    return invalid(plugin::format("%s: argument 'eps': expected a finite value >= 0, given %g", op, eps));
  return ok_status();
}

inline Status check_positive(const char* op, const char* field, uint64_t v, bool work) {
  if (work && v == 0)
    return invalid(plugin::format("%s: argument '%s': expected > 0 while there is work, given 0", op, field));
  return ok_status();
}

inline Status check_min_count(const char* op, const char* field, const ferrum_buffer* b, uint64_t need) {
  if (need == 0) return ok_status();
  if (!b)
    return invalid(plugin::format("%s: argument '%s': expected a buffer of %llu elements, given NULL", op, field,
                                  (unsigned long long)need));
  if (b->count < need)
    return invalid(plugin::format("%s: argument '%s': expected at least %llu elements, given %llu", op, field,
                                  (unsigned long long)need, (unsigned long long)b->count));
  return ok_status();
}

inline Status check_gqa(const char* op, uint64_t nh, uint64_t nkv, const char* nh_name = "num_heads",
                        const char* nkv_name = "num_kv_heads") {
  if (nh == 0 || nkv == 0 || nh % nkv)
    return invalid(plugin::format("%s: arguments '%s'/'%s': expected both >= 1 and %s %% %s == 0, given %llu / %llu",
                                  op, nh_name, nkv_name, nh_name, nkv_name, (unsigned long long)nh,
                                  (unsigned long long)nkv));
  return ok_status();
}

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

// RoPE / qk-norm rules shared by the §4 ops (OPS.md §0.7). `pos_end` = largest host position + 1
// (0 when positions come from device memory). On success `rows` is the table row count.
Status check_rope(const char* op, const char* mode_field, int32_t mode, uint64_t head_dim, float eps, const ferrum_buffer* cos,
                  const ferrum_buffer* sin, uint64_t pos_end, bool work, uint64_t& rows);
// The norm weight `name` must be a [head_dim] buffer in mode 1.
Status check_norm_weight(const char* op, const char* name, const ferrum_buffer* w, int32_t mode, uint64_t head_dim,
                         bool work);

}  // namespace ferrum::cpu
