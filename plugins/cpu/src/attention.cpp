// CPU plugin: contiguous KV cache and attention (docs/spec.md §0.8, §5) and the batched per-cache
// decode ops with their staging tables (§5.1). The paged family (§6) lives in paged_kv.cpp.
#include <vector>

#include "glue.hpp"
#include "kernels/attention.hpp"
#include "kernels/paged.hpp"
#include "kernels/rope.hpp"

namespace ferrum::cpu {
namespace {

using plugin::data_of;
using plugin::run_op;

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
    const char* op = "flash_attention";
    const bool work = a.batch && a.q_len;
    Status s = check_gqa(op, a.num_heads, a.num_kv_heads);
    if (s.ok()) s = check_positive(op, "head_dim", a.head_dim, work);
    if (s.ok() && !std::isfinite(a.scale))
      s = invalid(plugin::format("%s: argument 'scale': expected a finite value (0 = 1/sqrt(head_dim)), given %g", op, a.scale));
    uint64_t pos_last = 0;  // the last query position + 1 must be representable
    if (s.ok()) s = check_sum(op, "pos_offset", "pos_offset + q_len", a.pos_offset, a.q_len, pos_last);
    const uint64_t S = a.kv_seq_stride ? a.kv_seq_stride : a.kv_len;
    if (s.ok() && a.kv_len > S)
      s = invalid(plugin::format("%s: argument 'kv_len': expected <= kv_seq_stride = %llu, given %llu", op,
                                 (unsigned long long)S, (unsigned long long)a.kv_len));
    if (!s.ok() || !work) return s;
    uint64_t kv_elems = 0;
    s = check_product(op, {{"batch", a.batch}, {"num_kv_heads", a.num_kv_heads}, {"kv_seq_stride", S}, {"head_dim", a.head_dim}},
                      kv_elems);
    if (s.ok() && a.kv_len) {
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

// ---- §5.1 batched per-cache decode -----------------------------------------------------------

using ull = unsigned long long;
constexpr uint64_t kSlots = ferrum_context::kBatchedSlots;
constexpr uint64_t kItems = ferrum_context::kBatchedItems;

Status check_slot_and_items(const char* op, uint64_t slot, uint64_t m) {
  if (slot >= kSlots)
    return invalid(plugin::format("%s: argument 'slot': expected < batched_slots = %llu, given %llu", op, (ull)kSlots,
                                  (ull)slot));
  if (m > kItems)
    return unsupported(plugin::format("%s: argument 'm': this plugin stages at most batched_items = %llu items, given %llu",
                                      op, (ull)kItems, (ull)m));
  return ok_status();
}

// Every cache handle of a host array: live, of `dtype`, holding [nkv, capacity, hd], and not one
// of the op's other buffers.
Status check_caches(const char* op, const char* field, ferrum_buffer* const* caches, uint64_t m, int32_t dtype,
                    uint64_t need, const ferrum_buffer* other1, const ferrum_buffer* other2) {
  for (uint64_t i = 0; i < m; ++i) {
    const ferrum_buffer* c = caches[i];
    if (!plugin::live(c))
      return invalid(plugin::format("%s: argument '%s[%llu]': expected a live buffer, given %s", op, field, (ull)i,
                                    c ? "a released or foreign handle" : "NULL"));
    if (c->dtype != dtype)
      return invalid(plugin::format("%s: argument '%s[%llu]': expected dtype %s (the activation dtype), given %s", op,
                                    field, (ull)i, dtype_name(dtype), dtype_name(c->dtype)));
    if (c->count < need)
      return invalid(plugin::format("%s: argument '%s[%llu]': expected at least %llu elements ([nkv, capacity, hd]), given %llu",
                                    op, field, (ull)i, (ull)need, (ull)c->count));
    if (c == other1 || c == other2)
      return invalid(plugin::format("%s: argument '%s[%llu]': expected a cache distinct from the op's other buffers, "
                                    "given an aliasing handle",
                                    op, field, (ull)i));
  }
  return ok_status();
}

ferrum_status populate_batched_pointers(ferrum_context* ctx, const ferrum_populate_batched_pointers_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_populate_batched_pointers_args& a, bool dry) -> Status {
    const char* op = "populate_batched_pointers";
    if (a.num_layers > 64)
      return invalid(plugin::format("%s: argument 'num_layers': expected <= FERRUM_MAX_LAYERS_FOR_GRAPH = 64, given %llu", op,
                                    (ull)a.num_layers));
    if (a.m > kItems)
      return unsupported(plugin::format("%s: argument 'm': this plugin stages at most batched_items = %llu items, given %llu",
                                        op, (ull)kItems, (ull)a.m));
    if (a.m == 0 || a.num_layers == 0) return ok_status();
    for (uint64_t i = 0; i < a.num_layers * a.m; ++i) {  // arith-ok: <= 64 * batched_items (checked above)
      for (int kv = 0; kv < 2; ++kv) {
        const ferrum_buffer* b = (kv ? a.v_caches : a.k_caches)[i];
        if (!plugin::live(b) || !is_float_dtype(b->dtype))
          return invalid(plugin::format("%s: argument '%s[%llu]': expected a live F32/F16/BF16 cache buffer, given %s", op,
                                        kv ? "v_caches" : "k_caches", (ull)i, b ? "another handle" : "NULL"));
      }
    }
    if (dry) return ok_status();
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
    const char* op = "kv_cache_append_batched_per_cache";
    Status s = check_slot_and_items(op, a.slot, a.m);
    if (!s.ok() || a.m == 0) return s;
    // Rows of zero width have no meaning with items to append (and leave new_data free to be NULL).
    s = check_positive(op, "nkv", a.nkv, true);
    if (s.ok()) s = check_positive(op, "hd", a.hd, true);
    uint64_t need = 0;
    if (s.ok()) s = check_product(op, {{"nkv", a.nkv}, {"capacity", a.capacity}, {"hd", a.hd}}, need);
    if (s.ok()) s = check_caches(op, "caches", a.caches, a.m, a.new_data->dtype, need, a.new_data, a.cache_lens);
    if (!s.ok() || dry) return s;
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
    const char* op = "flash_attention_batched_per_cache";
    const bool work = a.m != 0;
    Status s = check_gqa(op, a.nq, a.nkv, "nq", "nkv");
    if (s.ok()) s = check_positive(op, "hd", a.hd, work);
    if (s.ok() && !std::isfinite(a.scale))
      s = invalid(plugin::format("%s: argument 'scale': expected a finite value (0 = 1/sqrt(hd)), given %g", op, a.scale));
    if (s.ok() && a.max_valid_kv > a.capacity)
      s = invalid(plugin::format("%s: argument 'max_valid_kv': expected <= capacity = %llu, given %llu", op,
                                 (ull)a.capacity, (ull)a.max_valid_kv));
    if (s.ok()) s = check_slot_and_items(op, a.slot, a.m);
    if (!s.ok() || !work) return s;
    uint64_t need = 0;
    s = check_product(op, {{"nkv", a.nkv}, {"capacity", a.capacity}, {"hd", a.hd}}, need);
    if (s.ok()) s = check_caches(op, "k_caches", a.k_caches, a.m, a.q->dtype, need, a.out, a.kv_lens);
    if (s.ok()) s = check_caches(op, "v_caches", a.v_caches, a.m, a.q->dtype, need, a.out, a.kv_lens);
    if (!s.ok() || dry) return s;
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
    sizeof(ferrum_attention_table), kv_cache_append_head_major, flash_attention,
    populate_batched_pointers, kv_cache_append_batched_per_cache, flash_attention_batched_per_cache,
};

}  // namespace ferrum::cpu
