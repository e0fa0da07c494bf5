// CPU plugin: contiguous KV cache and attention (docs/spec.md §0.8, §5) and the batched per-cache
// decode ops with their staging tables (§5.1). The paged family (§6) lives in paged_kv.cpp.
#include <vector>

#include <ferrum/common/attention_rules.hpp>

#include "glue.hpp"
#include "kernels/attention.hpp"
#include "kernels/paged.hpp"
#include "kernels/rope.hpp"

namespace ferrum::cpu {
namespace {

ferrum_status kv_cache_append_head_major(ferrum_context* ctx, const ferrum_kv_cache_append_head_major_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_kv_cache_append_head_major_args& a, bool dry) -> Status {
    Status s = check_sum_le("kv_cache_append_head_major", "cache_len", "cache_len + new_tokens", a.cache_len,
                            a.new_tokens, "cache_capacity", a.cache_capacity);
    if (!s.ok() || dry || a.new_tokens == 0 || a.nkv == 0 || a.hd == 0) return s;
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
    uint64_t S = 0, kv_elems = 0;
    Status s = check_flash_attention("flash_attention", a, false, S, kv_elems);
    if (!s.ok() || dry || !(a.batch && a.q_len)) return s;
    return dispatch_float(a.q->dtype, unsupported("dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      cpu::flash_attention<T>(data_of<const T>(a.q), data_of<const T>(a.k), data_of<const T>(a.v), data_of<T>(a.out),
                              a.batch, a.q_len, a.kv_len, a.pos_offset, a.num_heads, a.num_kv_heads, a.head_dim,
                              a.causal != 0, a.scale, a.kv_seq_stride, a.sliding_window);
      return ok_status();
    });
  });
}

// ---- §5.1 batched per-cache decode -----------------------------------------------------------

ferrum_status populate_batched_pointers(ferrum_context* ctx, const ferrum_populate_batched_pointers_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_populate_batched_pointers_args& a, bool dry) -> Status {
    bool work = false;
    Status s = check_populate_batched_pointers(a, -1, work);
    if (!s.ok() || !work || dry) return s;
    // The CPU executes every op before returning, so no replay can be reading the slots now.
    for (uint64_t l = 0; l < a.num_layers; ++l) {
      auto& ka = c.append_slots[l];
      auto& va = c.append_slots[l + 64];  // arith-ok: l < num_layers <= 64
      auto& at = c.attention_slots[l];
      ka.m = va.m = at.m = a.m;
      for (uint64_t i = 0; i < a.m; ++i) {
        ka.first[i] = at.first[i] = a.k_caches[l * a.m + i];  // arith-ok: < num_layers·m <= 64·batched_items
        va.first[i] = at.second[i] = a.v_caches[l * a.m + i];  // arith-ok: as above
      }
    }
    return ok_status();
  });
}

ferrum_status kv_cache_append_batched_per_cache(ferrum_context* ctx,
                                                const ferrum_kv_cache_append_batched_per_cache_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_kv_cache_append_batched_per_cache_args& a, bool dry) -> Status {
    bool work = false;
    Status s = check_kv_append_batched(a, -1, work);
    if (!s.ok() || !work || dry) return s;
    return dispatch_float(a.new_data->dtype, unsupported("dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      std::vector<T*> caches(a.m);
      for (uint64_t i = 0; i < a.m; ++i) caches[i] = data_of<T>(a.caches[i]);
      const IdxView lens{a.cache_lens->data, a.cache_lens->dtype == FERRUM_DTYPE_I32, a.cache_lens->count};
      cpu::kv_append_batched_per_cache<T>(caches.data(), data_of<const T>(a.new_data), lens, a.capacity, a.m, a.nkv,
                                          a.hd);
      return ok_status();
    });
  });
}

ferrum_status flash_attention_batched_per_cache(ferrum_context* ctx,
                                                const ferrum_flash_attention_batched_per_cache_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_flash_attention_batched_per_cache_args& a, bool dry) -> Status {
    bool work = false;
    Status s = check_flash_batched(a, -1, work);
    if (!s.ok() || !work || dry) return s;
    return dispatch_float(a.q->dtype, unsupported("dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      std::vector<const T*> ks(a.m), vs(a.m);
      for (uint64_t i = 0; i < a.m; ++i) {
        ks[i] = data_of<const T>(a.k_caches[i]);
        vs[i] = data_of<const T>(a.v_caches[i]);
      }
      const IdxView lens{a.kv_lens->data, a.kv_lens->dtype == FERRUM_DTYPE_I32, a.kv_lens->count};
      cpu::flash_attention_batched_per_cache<T>(data_of<const T>(a.q), ks.data(), vs.data(), lens, data_of<T>(a.out), a.m,
                                                a.nq, a.nkv, a.hd, a.scale, a.capacity, a.sliding_window);
      return ok_status();
    });
  });
}

}  // namespace

const ferrum_attention_table kAttentionTable = {
    sizeof(ferrum_attention_table), FERRUM_ATTENTION_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cpu
