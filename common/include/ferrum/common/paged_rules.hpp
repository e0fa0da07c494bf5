// Op rules of the paged-KV family (pool geometry, block size, attention fields, byte offsets),
// shared by the plugins' glue so that they reject the same arguments with the same detail text
// (the CPU glue's messages). Every product of caller values is overflow-checked: a geometry
// whose size does not fit 64 bits can match no buffer and is reported as such.
#pragma once

#include <cmath>
#include <cstdint>

#include <ferrum/common/check_support.hpp>
#include <ferrum/common/op_rules.hpp>

namespace ferrum::plugin::rules {

// a + b, saturating at UINT64_MAX.
inline uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

// block_size = 0 is INVALID_ARGUMENT for every paged op.
inline Status check_block_size(const char* op, uint64_t bs) {
  if (bs == 0) return invalid(format("%s: argument 'block_size': expected >= 1, given 0", op));
  return ok_status();
}

// Geometry of a K/V pool pair: both present and of one size, at least one whole block of
// block_size·nkv·D elements; the vLLM layout needs D % x == 0 with x = 16 / element size.
struct PagedPoolGeometry {
  uint64_t num_blocks = 0;
  uint64_t x = 1;  // vLLM vector width (1 for the ferrum layout)
};

inline Status check_paged_pool(const char* op, const char* kname, const ferrum_buffer* k, const char* vname,
                               const ferrum_buffer* v, bool vllm, uint64_t bs, uint64_t nkv, uint64_t D,
                               PagedPoolGeometry& g) {
  using ull = unsigned long long;
  if (!k || !v) return invalid(format("%s: argument '%s': expected a KV pool buffer, given NULL", op, k ? vname : kname));
  if (k->count != v->count)
    return invalid(format("%s: arguments '%s'/'%s': expected K and V pools of the same size, given %llu and %llu "
                          "elements",
                          op, kname, vname, (ull)k->count, (ull)v->count));
  const uint64_t per_block = ferrum::common::shape_elems({bs, nkv, D});  // saturates: then no block fits
  const uint64_t nb = per_block == 0 ? 0 : k->count / per_block;
  if (nb == 0)
    return invalid(format("%s: argument '%s': expected a pool of at least one block (block_size·kv_heads·head_dim "
                          "= %llu elements), given %llu elements",
                          op, kname, (ull)per_block, (ull)k->count));
  g.num_blocks = nb;
  g.x = 1;
  if (vllm) {
    g.x = 16 / dtype_size(k->dtype);
    if (D % g.x)
      return invalid(format("%s: argument 'head_dim': expected a multiple of x = %llu for the vLLM layout (16 bytes "
                            "of %s), given %llu",
                            op, (ull)g.x, dtype_name(k->dtype), (ull)D));
  }
  return ok_status();
}

// GQA, head_dim > 0 while there is work, a finite scale, block_size >= 1.
inline Status check_paged_attention_fields(const char* op, uint64_t nh, uint64_t nkv, uint64_t D, float scale,
                                           uint64_t bs, bool work) {
  Status s = check_gqa(op, nh, nkv);
  if (s.ok()) s = check_positive(op, "head_dim", D, work);
  if (s.ok() && !std::isfinite(scale))
    s = invalid(format("%s: argument 'scale': expected a finite value (0 = 1/sqrt(head_dim)), given %g", op, scale));
  if (s.ok()) s = check_block_size(op, bs);
  return s;
}

// A byte offset into `b` (element size es) that must be a multiple of es, followed by `need`
// elements inside the buffer. On success `elem_off` is the offset in elements.
inline Status check_byte_region(const char* op, const char* buf_name, const char* off_name, const ferrum_buffer* b,
                                uint64_t byte_off, uint64_t need, const char* need_text, uint64_t& elem_off) {
  using ull = unsigned long long;
  if (!b) return invalid(format("%s: argument '%s': expected a buffer, given NULL", op, buf_name));
  const uint64_t es = dtype_size(b->dtype);
  if (es == 0 || byte_off % es)
    return invalid(format("%s: argument '%s': expected a multiple of the element size %llu, given %llu", op, off_name,
                          (ull)es, (ull)byte_off));
  elem_off = byte_off / es;
  if (elem_off > b->count || b->count - elem_off < need)
    return invalid(format("%s: argument '%s': expected %s/%llu + %s = %llu + %llu elements, given %llu", op, buf_name,
                          off_name, (ull)es, need_text, (ull)elem_off, (ull)need, (ull)b->count));
  return ok_status();
}

// The host-known KV end of a single-sequence writer: cache_len + tokens must fit the table's
// max_num_blocks_per_seq·block_size positions.
inline Status check_paged_capacity(const char* op, uint64_t cache_len, uint64_t tokens, uint64_t mbps, uint64_t bs) {
  using ull = unsigned long long;
  const uint64_t cap = ferrum::common::shape_elems({mbps, bs});
  if (pos_end(cache_len, tokens) > cap)
    return invalid(format("%s: argument 'cache_len': expected cache_len + tokens <= max_num_blocks_per_seq·block_size "
                          "= %llu, given %llu + %llu",
                          op, (ull)cap, (ull)cache_len, (ull)tokens));
  return ok_status();
}

// ---- quantised paged KV ----------------------------------------------------------------------
// The four pool buffers of a quantised layer (codes [N, bs, nkv, D], scales F32 [N, bs, nkv])
// must be present and agree on N = layer_k.count / (bs·nkv·D) >= 1.
inline Status check_quant_pool(const char* op, const ferrum_buffer* k, const ferrum_buffer* v, const ferrum_buffer* ks,
                               const ferrum_buffer* vs, uint64_t bs, uint64_t nkv, uint64_t D, uint64_t& blocks) {
  using ull = unsigned long long;
  const uint64_t per_block = ferrum::common::shape_elems({bs, nkv, D});
  const uint64_t scales_per_block = ferrum::common::shape_elems({bs, nkv});
  const struct {
    const char* name;
    const ferrum_buffer* b;
    uint64_t per_block;
  } bufs[] = {{"layer_k", k, per_block}, {"layer_v", v, per_block}, {"layer_k_scales", ks, scales_per_block},
              {"layer_v_scales", vs, scales_per_block}};
  for (const auto& e : bufs)
    if (!e.b) return invalid(format("%s: argument '%s': expected a pool buffer, given NULL", op, e.name));
  blocks = per_block == 0 ? 0 : k->count / per_block;
  if (blocks == 0)
    return invalid(format("%s: argument 'layer_k': expected at least one block of block_size·num_kv_heads·head_dim = "
                          "%llu elements, given %llu elements",
                          op, (ull)per_block, (ull)k->count));
  for (const auto& e : bufs) {
    const uint64_t n = e.b->count / e.per_block;
    if (n != blocks)
      return invalid(format("%s: argument '%s': expected %llu blocks of %llu elements (the block count N of "
                            "'layer_k'), given %llu elements (%llu blocks)",
                            op, e.name, (ull)blocks, (ull)e.per_block, (ull)e.b->count, (ull)n));
  }
  return ok_status();
}

// The codes of `field` must be of the family's code dtype (I8 or F8_E4M3).
inline Status check_code_dtype(const char* op, const char* field, const ferrum_buffer* b, int32_t code_dtype) {
  if (b && b->dtype != code_dtype)
    return invalid(format("%s: argument '%s': expected dtype %s (the codes of this family), given %s", op, field,
                          dtype_name(code_dtype), dtype_name(b->dtype)));
  return ok_status();
}

}  // namespace ferrum::plugin::rules
