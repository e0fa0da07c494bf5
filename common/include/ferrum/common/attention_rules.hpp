// Op rules of the contiguous-KV attention family (docs/spec.md §0.8, §5) and its batched per-cache
// decode ops with their staging tables (§5.1), shared by the project's plugins: the same checks
// and messages on every plugin, every sum and product of caller values checked. A plugin adds
// only what its device needs (the CUDA plugin: buffers on the context's device, the head sizes
// its kernels serve, the dev-state mode of §8.2).
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>

#include <ferrum/common/family_rules.hpp>
#include <ferrum/common/op_rules.hpp>
#include <ferrum/common/softmax_scale.hpp>

namespace ferrum::plugin::rules {

// A finite softmax scale (0 = 1/sqrt(head size); `hd_name` is the op's field for it).
inline Status check_scale(const char* op, float scale, const char* hd_name = "head_dim") {
  if (!std::isfinite(scale))
    return invalid(format("%s: argument 'scale': expected a finite value (0 = 1/sqrt(%s)), given %g", op, hd_name, scale));
  return ok_status();
}

// flash_attention (§5): GQA heads, head_dim, scale, a representable last position, kv_len within
// the stride, and K/V holding [batch, num_kv_heads, S, head_dim] when keys are read. In the
// dev-state mode of §8.2 (`dev_state`) kv_len and pos_offset are read on the device: the stride
// must then be given (it bounds the device kv) and K/V are always read. `S` gets the sequence
// stride, `kv_elems` the K/V element count (0 without work).
template <class Args>
Status check_flash_attention(const char* op, const Args& a, bool dev_state, uint64_t& S, uint64_t& kv_elems) {
  const bool work = a.batch && a.q_len;
  Status s = check_gqa(op, a.num_heads, a.num_kv_heads);
  if (s.ok()) s = check_positive(op, "head_dim", a.head_dim, work);
  if (s.ok()) s = check_scale(op, a.scale);
  uint64_t pos_last = 0;  // the last query position + 1 must be representable
  if (s.ok() && !dev_state) s = check_sum(op, "pos_offset", "pos_offset + q_len", a.pos_offset, a.q_len, pos_last);
  S = a.kv_seq_stride ? a.kv_seq_stride : a.kv_len;
  if (s.ok() && dev_state && a.kv_seq_stride == 0)
    s = invalid(format("%s: argument 'kv_seq_stride': expected > 0 in dev-state mode (it bounds the device kv), given 0",
                       op));
  if (s.ok() && !dev_state && a.kv_len > S)
    s = invalid(format("%s: argument 'kv_len': expected <= kv_seq_stride = %llu, given %llu", op, (unsigned long long)S,
                       (unsigned long long)a.kv_len));
  kv_elems = 0;
  if (!s.ok() || !work) return s;
  s = check_product(op, {{"batch", a.batch}, {"num_kv_heads", a.num_kv_heads}, {"kv_seq_stride", S}, {"head_dim", a.head_dim}},
                    kv_elems);
  if (s.ok() && (dev_state || a.kv_len)) {
    s = check_min_count(op, "k", a.k, kv_elems);
    if (s.ok()) s = check_min_count(op, "v", a.v, kv_elems);
  }
  return s;
}

// mla_attention (§14): one latent KV stream, head_dim = kv_lora_rank + qk_rope_head_dim (both
// >= 1), a finite non-zero scale (the op cannot derive a default), a representable last position,
// kv_len within the stride, and the buffers' element counts. `S` gets the sequence stride;
// `work` says whether there are queries.
inline Status check_mla_attention(const ferrum_mla_attention_args& a, uint64_t& S, bool& work) {
  const char* op = "mla_attention";
  const uint64_t R = a.kv_lora_rank, P = a.qk_rope_head_dim;
  Status s = check_positive(op, "num_heads", a.num_heads, true);
  if (s.ok() && a.num_kv_heads != 1)
    s = invalid(format("%s: argument 'num_kv_heads': expected 1 (one latent KV stream), given %llu", op,
                       (unsigned long long)a.num_kv_heads));
  if (s.ok()) s = check_positive(op, "kv_lora_rank", R, true);
  if (s.ok()) s = check_positive(op, "qk_rope_head_dim", P, true);
  uint64_t RP = 0;
  if (s.ok()) s = check_sum(op, "kv_lora_rank", "kv_lora_rank + qk_rope_head_dim", R, P, RP);
  if (s.ok() && a.head_dim != RP)
    s = invalid(format("%s: argument 'head_dim': expected kv_lora_rank + qk_rope_head_dim = %llu + %llu, given %llu", op,
                       (unsigned long long)R, (unsigned long long)P, (unsigned long long)a.head_dim));
  uint64_t pos_last = 0;  // the last query position + 1 must be representable
  if (s.ok()) s = check_sum(op, "pos_offset", "pos_offset + q_len", a.pos_offset, a.q_len, pos_last);
  if (s.ok() && (a.scale == 0.0f || !std::isfinite(a.scale)))
    s = invalid(format("%s: argument 'scale': expected a finite non-zero value (MLA cannot derive a default), given %g",
                       op, a.scale));
  S = a.kv_seq_stride ? a.kv_seq_stride : a.kv_len;
  if (s.ok() && a.kv_len > S)
    s = invalid(format("%s: argument 'kv_len': expected <= kv_seq_stride = %llu, given %llu", op, (unsigned long long)S,
                       (unsigned long long)a.kv_len));
  work = a.batch && a.q_len;
  if (!s.ok() || !work) return s;
  uint64_t q_need = 0, out_need = 0, c_need = 0, r_need = 0;
  s = check_product(op, {{"batch", a.batch}, {"num_heads", a.num_heads}, {"q_len", a.q_len}, {"head_dim", a.head_dim}}, q_need);
  if (s.ok()) s = check_product(op, {{"batch", a.batch}, {"num_heads", a.num_heads}, {"q_len", a.q_len}, {"kv_lora_rank", R}}, out_need);
  if (s.ok()) s = check_product(op, {{"batch", a.batch}, {"kv_seq_stride", S}, {"kv_lora_rank", R}}, c_need);
  if (s.ok()) s = check_product(op, {{"batch", a.batch}, {"kv_seq_stride", S}, {"qk_rope_head_dim", P}}, r_need);
  if (s.ok()) s = check_min_count(op, "q", a.q, q_need);
  if (s.ok()) s = check_min_count(op, "out", a.out, out_need);
  if (s.ok() && a.kv_len) s = check_min_count(op, "kv_compressed", a.kv_compressed, c_need);
  if (s.ok() && a.kv_len) s = check_min_count(op, "kv_rope", a.kv_rope, r_need);
  return s;
}

// ---- §5.1 batched per-cache decode ---------------------------------------------------------------
// A staging slot below batched_slots, and at most batched_items items (UNSUPPORTED beyond).
inline Status check_batched_slot(const char* op, uint64_t slot) {
  if (slot >= kBatchedSlots)
    return invalid(format("%s: argument 'slot': expected < batched_slots = %llu, given %llu", op,
                          (unsigned long long)kBatchedSlots, (unsigned long long)slot));
  return ok_status();
}
inline Status check_batched_items(const char* op, uint64_t m) {
  if (m > kBatchedItems)
    return unsupported(format("%s: argument 'm': this plugin stages at most batched_items = %llu items, given %llu", op,
                              (unsigned long long)kBatchedItems, (unsigned long long)m));
  return ok_status();
}

// Item `i` of a per-item cache array `field`: a live buffer, of `dtype` (0: any float dtype, for
// populate_batched_pointers), holding `need` elements ([nkv, capacity, hd]), and none of the op's
// `others`. `device` (the context's ordinal; negative: not checked) is where it must live.
inline Status check_batched_cache(const char* op, const char* field, uint64_t i, const ferrum_buffer* b, int32_t dtype,
                                  uint64_t need, std::initializer_list<const ferrum_buffer*> others,
                                  int64_t device = -1) {
  using ull = unsigned long long;
  if (!live(b))
    return invalid(format("%s: argument '%s[%llu]': expected a live buffer, given %s", op, field, (ull)i,
                          b ? "a released or foreign handle" : "NULL"));
  if (device >= 0 && b->device != device)
    return invalid(format("%s: argument '%s[%llu]': expected a buffer of device %lld (the context's), given one of "
                          "device %d",
                          op, field, (ull)i, (long long)device, b->device));
  if (dtype && b->dtype != dtype)
    return invalid(format("%s: argument '%s[%llu]': expected dtype %s (the activation dtype), given %s", op, field, (ull)i,
                          dtype_name(dtype), dtype_name(b->dtype)));
  if (!dtype && !is_float_dtype(b->dtype))
    return invalid(format("%s: argument '%s[%llu]': expected a live F32/F16/BF16 cache buffer, given another handle", op,
                          field, (ull)i));
  if (b->count < need)
    return invalid(format("%s: argument '%s[%llu]': expected at least %llu elements ([nkv, capacity, hd]), given %llu", op,
                          field, (ull)i, (ull)need, (ull)b->count));
  for (const ferrum_buffer* o : others)
    if (o && o == b)
      return invalid(format("%s: argument '%s[%llu]': expected a cache distinct from the op's other buffers, given an "
                            "aliasing handle",
                            op, field, (ull)i));
  return ok_status();
}

// populate_batched_pointers: at most FERRUM_MAX_LAYERS_FOR_GRAPH layers of at most batched_items
// items, every K and V handle a live float cache (on `device` when >= 0). `work` is false when
// there is nothing to stage.
inline Status check_populate_batched_pointers(const ferrum_populate_batched_pointers_args& a, int64_t device,
                                              bool& work) {
  const char* op = "populate_batched_pointers";
  work = false;
  if (a.num_layers > kMaxLayersForGraph)
    return invalid(format("%s: argument 'num_layers': expected <= FERRUM_MAX_LAYERS_FOR_GRAPH = 64, given %llu", op,
                          (unsigned long long)a.num_layers));
  Status s = check_batched_items(op, a.m);
  if (!s.ok() || a.m == 0 || a.num_layers == 0) return s;
  for (uint64_t e = 0; e < a.num_layers * a.m; ++e) {  // arith-ok: <= 64 · batched_items (checked above)
    s = check_batched_cache(op, "k_caches", e, a.k_caches[e], 0, 0, {}, device);
    if (s.ok()) s = check_batched_cache(op, "v_caches", e, a.v_caches[e], 0, 0, {}, device);
    if (!s.ok()) return s;
  }
  work = true;
  return ok_status();
}

// kv_cache_append_batched_per_cache: slot and items; with items, rows of nonzero width (they
// leave new_data free to be NULL otherwise) and every cache of new_data's dtype holding
// [nkv, capacity, hd] (on `device` when >= 0). `work` is false without items.
inline Status check_kv_append_batched(const ferrum_kv_cache_append_batched_per_cache_args& a, int64_t device,
                                      bool& work) {
  const char* op = "kv_cache_append_batched_per_cache";
  work = false;
  Status s = check_batched_slot(op, a.slot);
  if (s.ok()) s = check_batched_items(op, a.m);
  if (!s.ok() || a.m == 0) return s;
  s = check_positive(op, "nkv", a.nkv, true);
  if (s.ok()) s = check_positive(op, "hd", a.hd, true);
  uint64_t need = 0;
  if (s.ok()) s = check_product(op, {{"nkv", a.nkv}, {"capacity", a.capacity}, {"hd", a.hd}}, need);
  const int32_t dt = a.new_data ? a.new_data->dtype : 0;
  for (uint64_t i = 0; s.ok() && i < a.m; ++i)
    s = check_batched_cache(op, "caches", i, a.caches[i], dt, need, {a.new_data, a.cache_lens}, device);
  work = s.ok();
  return s;
}

// flash_attention_batched_per_cache: GQA heads (nq, nkv), hd, scale, max_valid_kv within the
// capacity, slot and items; with items, every K and V cache of q's dtype holding
// [nkv, capacity, hd] (on `device` when >= 0). `work` is false without items.
inline Status check_flash_batched(const ferrum_flash_attention_batched_per_cache_args& a, int64_t device, bool& work) {
  const char* op = "flash_attention_batched_per_cache";
  work = false;
  const bool items = a.m != 0;
  Status s = check_gqa(op, a.nq, a.nkv, "nq", "nkv");
  if (s.ok()) s = check_positive(op, "hd", a.hd, items);
  if (s.ok()) s = check_scale(op, a.scale, "hd");
  if (s.ok() && a.max_valid_kv > a.capacity)
    s = invalid(format("%s: argument 'max_valid_kv': expected <= capacity = %llu, given %llu", op,
                       (unsigned long long)a.capacity, (unsigned long long)a.max_valid_kv));
  if (s.ok()) s = check_batched_slot(op, a.slot);
  if (s.ok()) s = check_batched_items(op, a.m);
  if (!s.ok() || !items) return s;
  uint64_t need = 0;
  s = check_product(op, {{"nkv", a.nkv}, {"capacity", a.capacity}, {"hd", a.hd}}, need);
  const int32_t dt = a.q ? a.q->dtype : 0;
  for (uint64_t i = 0; s.ok() && i < a.m; ++i) {
    s = check_batched_cache(op, "k_caches", i, a.k_caches[i], dt, need, {a.out, a.kv_lens}, device);
    if (s.ok()) s = check_batched_cache(op, "v_caches", i, a.v_caches[i], dt, need, {a.out, a.kv_lens}, device);
  }
  work = s.ok();
  return s;
}

}  // namespace ferrum::plugin::rules
