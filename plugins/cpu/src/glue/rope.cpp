// CPU plugin: the QK-norm / RoPE family (docs/spec.md §0.7, §4).
#include <vector>

#include <ferrum/common/dense_rules.hpp>

#include "glue.hpp"
#include "kernels/rope.hpp"

namespace ferrum::cpu {

namespace {

int32_t table_dtype(const ferrum_buffer* cos) { return cos ? cos->dtype : 0; }

}  // namespace

ferrum_status qk_norm_rope(ferrum_context* ctx, const ferrum_qk_norm_rope_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_qk_norm_rope_args& a, bool dry) -> Status {
    const bool work = a.tokens && a.heads;
    uint64_t rows = 0;
    Status s = check_qk_norm_rope("qk_norm_rope", a, pos_end(a.pos_offset, a.tokens), work, rows);
    if (!s.ok() || dry || !work) return s;
    return with_act_and_table(a.input->dtype, table_dtype(a.cos), [&](auto t, auto c) -> Status {
      using T = decltype(t);
      using C = decltype(c);
      cpu::qk_norm_rope<T, C>(data_of<const T>(a.input), data_of<const T>(a.norm_w), data_of<const C>(a.cos),
                              data_of<const C>(a.sin), data_of<T>(a.output), a.tokens, a.heads, a.head_dim,
                              a.pos_offset, a.eps, a.mode);
      return ok_status();
    });
  });
}

ferrum_status qk_norm_rope_batched_per_item(ferrum_context* ctx, const ferrum_qk_norm_rope_batched_per_item_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_qk_norm_rope_batched_per_item_args& a, bool dry) -> Status {
    const bool work = a.m && a.heads;
    uint64_t rows = 0;
    Status s = check_qk_norm_rope("qk_norm_rope_batched_per_item", a, 0, work, rows);
    if (!s.ok() || dry || !work) return s;
    std::vector<uint64_t> pos(a.m);  // device values (§0.11): negative I32 -> out of range
    for (uint64_t i = 0; i < a.m; ++i)
      pos[i] = a.positions->dtype == FERRUM_DTYPE_I32
                   ? (data_of<const int32_t>(a.positions)[i] < 0 ? UINT64_MAX : uint64_t(data_of<const int32_t>(a.positions)[i]))
                   : data_of<const uint32_t>(a.positions)[i];
    return with_act_and_table(a.input->dtype, table_dtype(a.cos), [&](auto t, auto c) -> Status {
      using T = decltype(t);
      using C = decltype(c);
      cpu::qk_norm_rope_batched_per_item<T, C>(data_of<const T>(a.input), data_of<const T>(a.norm_w),
                                               data_of<const C>(a.cos), data_of<const C>(a.sin), rows,
                                               data_of<T>(a.output), pos.data(), a.m, a.heads, a.head_dim, a.eps,
                                               a.mode);
      return ok_status();
    });
  });
}

ferrum_status split_qkv_norm_rope(ferrum_context* ctx, const ferrum_split_qkv_norm_rope_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_split_qkv_norm_rope_args& a, bool dry) -> Status {
    uint64_t rows = 0;
    Status s = check_packed_qkv_rope("split_qkv_norm_rope", a, rows);
    if (!s.ok() || dry || a.tokens == 0) return s;
    return with_act_and_table(a.qkv->dtype, table_dtype(a.cos), [&](auto t, auto c) -> Status {
      using T = decltype(t);
      using C = decltype(c);
      cpu::split_qkv_norm_rope<T, C>(data_of<const T>(a.qkv), data_of<const T>(a.q_norm_w),
                                     data_of<const T>(a.k_norm_w), data_of<const C>(a.cos), data_of<const C>(a.sin),
                                     data_of<T>(a.q_out), data_of<T>(a.k_out), data_of<T>(a.v_out), a.tokens,
                                     a.q_heads, a.kv_heads, a.head_dim, a.pos_offset, a.eps, a.qk_mode);
      return ok_status();
    });
  });
}

ferrum_status split_qkv_norm_rope_into_cache(ferrum_context* ctx,
                                             const ferrum_split_qkv_norm_rope_into_cache_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_split_qkv_norm_rope_into_cache_args& a, bool dry) -> Status {
    uint64_t rows = 0;
    Status s = check_packed_qkv_rope("split_qkv_norm_rope_into_cache", a, rows);
    if (!s.ok() || dry || a.tokens == 0) return s;
    return with_act_and_table(a.qkv->dtype, table_dtype(a.cos), [&](auto t, auto c) -> Status {
      using T = decltype(t);
      using C = decltype(c);
      cpu::split_qkv_norm_rope_into_cache<T, C>(
          data_of<const T>(a.qkv), data_of<const T>(a.q_norm_w), data_of<const T>(a.k_norm_w),
          data_of<const C>(a.cos), data_of<const C>(a.sin), data_of<T>(a.q_out), data_of<T>(a.cache_k),
          data_of<T>(a.cache_v), a.tokens, a.q_heads, a.kv_heads, a.head_dim, a.pos_offset, a.eps, a.qk_mode,
          a.cache_len, a.cache_capacity);
      return ok_status();
    });
  });
}

}  // namespace ferrum::cpu
