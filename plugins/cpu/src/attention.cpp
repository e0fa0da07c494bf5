// CPU plugin: contiguous KV cache and attention (OPS.md §0.8, §5). The batched per-cache decode
// ops (§5.1) and the paged family (§6) are not implemented yet: their slots stay NULL.
#include "glue.hpp"
#include "kernels/attention.hpp"
#include "kernels/rope.hpp"

namespace ferrum::cpu {
namespace {

using plugin::data_of;
using plugin::run_op;

ferrum_status kv_cache_append_head_major(ferrum_context* ctx, const ferrum_kv_cache_append_head_major_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_kv_cache_append_head_major_args& a, bool dry) -> Status {
    if (a.cache_len + a.new_tokens > a.cache_capacity)
      return invalid(plugin::format(
          "kv_cache_append_head_major: argument 'cache_len': expected cache_len + new_tokens <= cache_capacity = %llu, given %llu + %llu",
          (unsigned long long)a.cache_capacity, (unsigned long long)a.cache_len, (unsigned long long)a.new_tokens));
    if (dry || a.new_tokens == 0 || a.nkv == 0 || a.hd == 0) return ok_status();
    return dispatch_float(a.cache_k->dtype, unsupported("dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      cpu::kv_cache_append_head_major<T>(data_of<T>(a.cache_k), data_of<T>(a.cache_v), a.cache_len, a.cache_capacity,
                                         data_of<const T>(a.new_k_head_major), data_of<const T>(a.new_v_head_major),
                                         a.new_tokens, a.nkv, a.hd);
      return ok_status();
    });
  });
}

ferrum_status flash_attention(ferrum_context* ctx, const ferrum_flash_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_flash_attention_args& a, bool dry) -> Status {
    const char* op = "flash_attention";
    const bool work = a.batch && a.q_len;
    Status s = check_gqa(op, a.num_heads, a.num_kv_heads);
    if (s.ok()) s = check_positive(op, "head_dim", a.head_dim, work);
    if (s.ok() && !std::isfinite(a.scale))
      s = invalid(plugin::format("%s: argument 'scale': expected a finite value (0 = 1/sqrt(head_dim)), given %g", op, a.scale));
    const uint64_t S = a.kv_seq_stride ? a.kv_seq_stride : a.kv_len;
    if (s.ok() && a.kv_len > S)
      s = invalid(plugin::format("%s: argument 'kv_len': expected <= kv_seq_stride = %llu, given %llu", op,
                                 (unsigned long long)S, (unsigned long long)a.kv_len));
    if (!s.ok() || !work) return s;
    const uint64_t kv_elems = ferrum::common::shape_elems({a.batch, a.num_kv_heads, S, a.head_dim});
    if (a.kv_len) {
      s = check_min_count(op, "k", a.k, kv_elems);
      if (s.ok()) s = check_min_count(op, "v", a.v, kv_elems);
    }
    if (!s.ok() || dry) return s;
    return dispatch_float(a.q->dtype, unsupported("dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      cpu::flash_attention<T>(data_of<const T>(a.q), data_of<const T>(a.k), data_of<const T>(a.v), data_of<T>(a.out),
                              a.batch, a.q_len, a.kv_len, a.pos_offset, a.num_heads, a.num_kv_heads, a.head_dim,
                              a.causal != 0, a.scale, a.kv_seq_stride, a.sliding_window);
      return ok_status();
    });
  });
}

}  // namespace

const ferrum_attention_table kAttentionTable = {
    sizeof(ferrum_attention_table), kv_cache_append_head_major, flash_attention,
    /* populate_batched_pointers */ nullptr, /* kv_cache_append_batched_per_cache */ nullptr,
    /* flash_attention_batched_per_cache */ nullptr,
};

}  // namespace ferrum::cpu
