// Op rules of the dense family (docs/spec.md §3) and the QK-norm/RoPE family (§4, §0.7) shared by
// the project's plugins: the same checks, in the same order, with the same messages. A plugin
// adds only what its device needs (the CUDA plugin: buffers on the context's device, the head
// sizes its kernels serve, the dev-state positions of §8.2).
#pragma once

#include <cmath>
#include <cstdint>

#include <ferrum/common/op_rules.hpp>

namespace ferrum::plugin::rules {

// rms_norm, fused_add_rms_norm, layer_norm: a finite eps >= 0 and rows of nonzero width while
// there are tokens.
inline Status check_norm(const char* op, float eps, uint64_t dim, uint64_t tokens) {
  Status s = check_finite_eps(op, eps);
  if (s.ok()) s = check_positive(op, "dim", dim, tokens);
  return s;
}

// scaled_add_inplace: a finite scale.
inline Status check_scaled_add(float scale) {
  if (!std::isfinite(scale))
    return invalid(format("scaled_add_inplace: argument 'scale': expected a finite value, given %g", scale));
  return ok_status();
}

// embedding_lookup / embedding_lookup_dev with ids to gather: rows of nonzero width and a table.
inline Status check_embedding(const char* op, uint64_t dim, const ferrum_buffer* table) {
  Status s = check_positive(op, "dim", dim, true);
  if (s.ok() && !table) s = invalid(std::string(op) + ": argument 'table': expected a buffer, given NULL");
  return s;
}

// embedding_lookup's host ids: each below the table's rows. `vocab` gets the row count.
inline Status check_host_ids(const uint32_t* ids, uint64_t n, const ferrum_buffer& table, uint64_t dim,
                             uint64_t& vocab) {
  vocab = table.count / dim;
  for (uint64_t i = 0; i < n; ++i)
    if (ids[i] >= vocab)
      return invalid(format("embedding_lookup: argument 'ids': expected ids < vocab = %llu, given ids[%llu] = %u",
                            (unsigned long long)vocab, (unsigned long long)i, ids[i]));
  return ok_status();
}

// qk_norm_rope and qk_norm_rope_batched_per_item (field `mode`, weight `norm_w`): check_rope
// with `pos_end` the largest host position + 1 (0 for device positions), then the norm weight.
// On success `rows` is the tables' row count.
template <class Args>
Status check_qk_norm_rope(const char* op, const Args& a, uint64_t pos_end, bool work, uint64_t& rows) {
  Status s = check_rope(op, "mode", a.mode, a.head_dim, a.eps, a.cos, a.sin, pos_end, work, rows);
  if (s.ok()) s = check_norm_weight(op, "norm_w", a.norm_w, a.mode, a.head_dim, work);
  return s;
}

// split_qkv_norm_rope and split_qkv_norm_rope_into_cache (packed [tokens, (q_heads + 2·kv_heads)·D]
// input, field `qk_mode`): RoPE over host positions pos_offset.., KV heads, both norm weights, and
// for the cache variant the new rows inside the cache. `rows` as for check_qk_norm_rope.
template <class Args>
Status check_packed_qkv_rope(const char* op, const Args& a, uint64_t& rows) {
  const bool work = a.tokens != 0;
  Status s = check_rope(op, "qk_mode", a.qk_mode, a.head_dim, a.eps, a.cos, a.sin, pos_end(a.pos_offset, a.tokens),
                        work, rows);
  if (s.ok()) s = check_positive(op, "kv_heads", a.kv_heads, work);
  if (s.ok()) s = check_norm_weight(op, "q_norm_w", a.q_norm_w, a.qk_mode, a.head_dim, work);
  if (s.ok()) s = check_norm_weight(op, "k_norm_w", a.k_norm_w, a.qk_mode, a.head_dim, work);
  if constexpr (requires { a.cache_capacity; })
    if (s.ok())
      s = check_sum_le(op, "cache_len", "cache_len + tokens", a.cache_len, a.tokens, "cache_capacity", a.cache_capacity);
  return s;
}

}  // namespace ferrum::plugin::rules
