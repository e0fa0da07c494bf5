// Op rules of the paged-KV and quantised-KV families (pool geometry, block size, attention
// fields, writer regions, quantised layers) for the plugins' glue: the same checks and messages
// as the CPU plugin's glue, with every sum and product of caller values checked (op_rules.hpp's
// check_sum / check_product, checked.hpp's Size): a size that does not fit 64 bits is
// INVALID_ARGUMENT naming the fields, never a wrapped, smaller number.
#pragma once

#include <cmath>
#include <cstdint>

#include <ferrum/common/attention_rules.hpp>
#include <ferrum/common/check_support.hpp>
#include <ferrum/common/checked.hpp>
#include <ferrum/common/op_rules.hpp>

namespace ferrum::plugin::rules {

// block_size = 0 is INVALID_ARGUMENT for every paged op.
inline Status check_block_size(const char* op, uint64_t bs) {
  if (bs == 0) return invalid(format("%s: argument 'block_size': expected >= 1, given 0", op));
  return ok_status();
}

// Geometry of a K/V pool pair: both present and of one size, at least one whole block of
// block_size·nkv·D elements (a product that must fit 64 bits); the vLLM layout needs D % x == 0
// with x = 16 / element size. `nkv_name` is the op's field name for the KV heads.
struct PagedPoolGeometry {
  uint64_t num_blocks = 0;
  uint64_t x = 1;  // vLLM vector width (1 for the ferrum layout)
};

inline Status check_paged_pool(const char* op, const char* kname, const ferrum_buffer* k, const char* vname,
                               const ferrum_buffer* v, bool vllm, uint64_t bs, const char* nkv_name, uint64_t nkv,
                               uint64_t D, PagedPoolGeometry& g) {
  using ull = unsigned long long;
  if (!k || !v) return invalid(format("%s: argument '%s': expected a KV pool buffer, given NULL", op, k ? vname : kname));
  if (k->count != v->count)
    return invalid(format("%s: arguments '%s'/'%s': expected K and V pools of the same size, given %llu and %llu "
                          "elements",
                          op, kname, vname, (ull)k->count, (ull)v->count));
  uint64_t per_block = 0;
  Status s = check_product(op, {{"block_size", bs}, {nkv_name, nkv}, {"head_dim", D}}, per_block);
  if (!s.ok()) return s;
  const uint64_t nb = per_block == 0 ? 0 : k->count / per_block;
  if (nb == 0)
    return invalid(format("%s: argument '%s': expected a pool of at least one block (block_size·kv_heads·head_dim "
                          "= %llu elements), given %llu elements",
                          op, vname, (ull)per_block, (ull)k->count));
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
  if (s.ok()) s = check_scale(op, scale);
  if (s.ok()) s = check_block_size(op, bs);
  return s;
}

// The rules every paged writer shares (RoPE mode/tables/eps, block size, kv_heads, norm
// weights). `pos_end_host` is the largest host RoPE position + 1 (0 for device positions); on
// success `rows` is the tables' row count.
template <class Args>
Status check_paged_writer(const char* op, const Args& a, uint64_t pos_end_host, bool work, uint64_t& rows) {
  Status s = check_rope(op, "qk_mode", a.qk_mode, a.head_dim, a.eps, a.cos, a.sin, pos_end_host, work, rows);
  if (s.ok()) s = check_block_size(op, a.block_size);
  if (s.ok()) s = check_positive(op, "kv_heads", a.kv_heads, work);
  if (s.ok()) s = check_norm_weight(op, "q_norm_w", a.q_norm_w, a.qk_mode, a.head_dim, work);
  if (s.ok()) s = check_norm_weight(op, "k_norm_w", a.k_norm_w, a.qk_mode, a.head_dim, work);
  return s;
}

// The single-sequence writer's regions: the packed rows [tokens, (q_heads + 2·kv_heads)·head_dim]
// from qkv_byte_offset in qkv and the token-major [tokens, q_heads, head_dim] from
// q_out_byte_offset in q_out (offsets multiples of the element size). On success the offsets in
// elements.
template <class Args>
Status check_writer_regions(const char* op, const Args& a, uint64_t& qkv_off, uint64_t& q_off) {
  using ull = unsigned long long;
  const common::Size W = (common::Size(a.q_heads) + 2 * common::Size(a.kv_heads)) * common::Size(a.head_dim);
  const common::Size qkv_need = common::Size(a.tokens) * W;
  const common::Size q_need = common::Size(a.tokens) * common::Size(a.q_heads) * common::Size(a.head_dim);
  if (!qkv_need.ok() || !q_need.ok())
    return invalid(format("%s: arguments 'tokens'/'q_heads'/'kv_heads'/'head_dim': expected tokens·(q_heads + "
                          "2·kv_heads)·head_dim < 2^64, given tokens = %llu, q_heads = %llu, kv_heads = %llu, "
                          "head_dim = %llu (the size wraps past 2^64)",
                          op, (ull)a.tokens, (ull)a.q_heads, (ull)a.kv_heads, (ull)a.head_dim));
  if (!a.qkv || !a.q_out)
    return invalid(format("%s: argument '%s': expected a buffer, given NULL", op, a.qkv ? "q_out" : "qkv"));
  const uint64_t es = dtype_size(a.qkv->dtype);
  if (a.qkv_byte_offset % es)
    return invalid(format("%s: argument 'qkv_byte_offset': expected a multiple of the element size %llu, given %llu",
                          op, (ull)es, (ull)a.qkv_byte_offset));
  if (a.q_out_byte_offset % es)
    return invalid(format("%s: argument 'q_out_byte_offset': expected a multiple of the element size %llu, given %llu",
                          op, (ull)es, (ull)a.q_out_byte_offset));
  qkv_off = a.qkv_byte_offset / es;
  q_off = a.q_out_byte_offset / es;
  if (!common::range_ok(qkv_off, qkv_need.value, a.qkv->count))
    return invalid(format("%s: argument 'qkv': expected qkv_byte_offset/%llu + tokens·(q_heads + 2·kv_heads)·head_dim "
                          "= %llu + %llu elements, given %llu",
                          op, (ull)es, (ull)qkv_off, (ull)qkv_need.value, (ull)a.qkv->count));
  if (!common::range_ok(q_off, q_need.value, a.q_out->count))
    return invalid(format("%s: argument 'q_out': expected q_out_byte_offset/%llu + tokens·q_heads·head_dim = %llu + "
                          "%llu elements, given %llu",
                          op, (ull)es, (ull)q_off, (ull)q_need.value, (ull)a.q_out->count));
  return ok_status();
}

// The single-sequence writer's KV end: cache_len + tokens <= max_num_blocks_per_seq·block_size.
template <class Args>
Status check_writer_capacity(const char* op, const Args& a) {
  return check_sum_le(op, "cache_len", "cache_len + tokens", a.cache_len, a.tokens, "max_num_blocks_per_seq·block_size",
                      common::sat_mul(a.max_num_blocks_per_seq, a.block_size));
}

// The varlen writer's packed input [m_total, (q_heads + 2·kv_heads)·head_dim] and token-major
// output [m_total, q_heads, head_dim], sized in checked arithmetic (a row width that wraps 64
// bits must not pass as a small one).
template <class Args>
Status check_writer_varlen_sizes(const char* op, const Args& a) {
  const common::Size W = (common::Size(a.q_heads) + 2 * common::Size(a.kv_heads)) * common::Size(a.head_dim);
  const common::Size qkv_need = common::Size(a.m_total) * W;
  const common::Size q_need = common::Size(a.m_total) * common::Size(a.q_heads) * common::Size(a.head_dim);
  Status s = check_min_count(op, "qkv", a.qkv, qkv_need.ok() ? qkv_need.value : common::kU64Max);
  if (s.ok()) s = check_min_count(op, "q_out", a.q_out, q_need.ok() ? q_need.value : common::kU64Max);
  return s;
}

// ---- quantised paged KV ----------------------------------------------------------------------
// The four pool buffers of a quantised layer (codes [N, bs, nkv, D], scales F32 [N, bs, nkv])
// must be present and agree on N = layer_k.count / (bs·nkv·D) >= 1.
inline Status check_quant_pool(const char* op, const ferrum_buffer* k, const ferrum_buffer* v, const ferrum_buffer* ks,
                               const ferrum_buffer* vs, uint64_t bs, uint64_t nkv, uint64_t D, uint64_t& blocks) {
  using ull = unsigned long long;
  uint64_t per_block = 0, scales_per_block = 0;
  Status s = check_product(op, {{"block_size", bs}, {"num_kv_heads", nkv}, {"head_dim", D}}, per_block);
  if (s.ok()) s = check_product(op, {{"block_size", bs}, {"num_kv_heads", nkv}}, scales_per_block);
  if (!s.ok()) return s;
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
    const uint64_t n = e.per_block == 0 ? 0 : e.b->count / e.per_block;
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

// alloc_paged_{int8,fp8}_layer: every dimension positive, N <= 2^31 (block ids in a U32 table),
// the output struct large enough, the pool sizes within 64 bits. On success the element counts
// of one code pool and one scale pool, and the layer's capacity in positions.
template <class Args>
Status check_quant_alloc(const char* op, const Args& a, uint64_t& codes, uint64_t& scales, uint64_t& capacity) {
  using ull = unsigned long long;
  Status s = check_positive(op, "max_blocks_per_seq", a.max_blocks_per_seq, true);
  if (s.ok()) s = check_positive(op, "block_size", a.block_size, true);
  if (s.ok()) s = check_positive(op, "num_kv_heads", a.num_kv_heads, true);
  if (s.ok()) s = check_positive(op, "head_dim", a.head_dim, true);
  if (!s.ok()) return s;
  if (a.max_blocks_per_seq > (uint64_t{1} << 31))
    return invalid(format("%s: argument 'max_blocks_per_seq': expected at most 2^31, given %llu", op,
                          (ull)a.max_blocks_per_seq));
  if (a.cache->struct_size < FERRUM_KV_CACHE_QUANT_SIZE_V1_0)
    return invalid(format("%s: argument 'cache': expected struct_size >= %d, given %llu", op,
                          FERRUM_KV_CACHE_QUANT_SIZE_V1_0, (ull)a.cache->struct_size));
  const uint64_t N = a.max_blocks_per_seq;
  s = check_product(op, {{"max_blocks_per_seq", N}, {"block_size", a.block_size}, {"num_kv_heads", a.num_kv_heads},
                         {"head_dim", a.head_dim}}, codes);
  if (s.ok())
    s = check_product(op, {{"max_blocks_per_seq", N}, {"block_size", a.block_size}, {"num_kv_heads", a.num_kv_heads}},
                      scales);
  if (s.ok()) s = check_product(op, {{"max_blocks_per_seq", N}, {"block_size", a.block_size}}, capacity);
  return s;
}

// Fills the output struct of a freshly allocated layer: b = {k, v, k_scales, v_scales,
// block_table, context_lens}.
template <class Args>
void fill_quant_layer(const Args& a, ferrum_buffer* const (&b)[6], uint64_t capacity) {
  ferrum_kv_cache_quant& c = *a.cache;
  c.k = b[0];
  c.v = b[1];
  c.k_scales = b[2];
  c.v_scales = b[3];
  c.block_table = b[4];
  c.context_lens = b[5];
  c.len = 0;
  c.capacity = capacity;
  c.block_size = a.block_size;
  c.num_kv_heads = a.num_kv_heads;
  c.head_dim = a.head_dim;
}

// {int8,fp8}_kv_append_paged. With work (tokens > 0) and on success: `blocks` = N of the pool and
// the logical blocks [first, need) are the ones the append writes, every one of their host ids
// checked < N. `work` is false when there is nothing to append (checks of the scalars only).
template <class Args>
Status check_quant_append(const char* op, const Args& a, int32_t code_dtype, bool& work, uint64_t& blocks,
                          uint64_t& first, uint64_t& need) {
  using ull = unsigned long long;
  work = a.tokens != 0;
  Status s = check_positive(op, "block_size", a.block_size, true);
  if (s.ok()) s = check_positive(op, "num_kv_heads", a.num_kv_heads, work);
  if (s.ok()) s = check_positive(op, "head_dim", a.head_dim, work);
  if (s.ok()) s = check_code_dtype(op, "layer_k", a.layer_k, code_dtype);
  if (s.ok()) s = check_code_dtype(op, "layer_v", a.layer_v, code_dtype);
  uint64_t end = 0;
  if (s.ok()) s = check_sum(op, "tokens", "cache_len_before + tokens", a.cache_len_before, a.tokens, end);
  if (!s.ok() || !work) return s;
  s = check_quant_pool(op, a.layer_k, a.layer_v, a.layer_k_scales, a.layer_v_scales, a.block_size, a.num_kv_heads,
                       a.head_dim, blocks);
  if (!s.ok()) return s;
  need = common::ceil_div(end, a.block_size);
  if (a.paged_block_indices_len < need)
    return invalid(format("%s: argument 'paged_block_indices_len': expected >= ceil((cache_len_before + tokens) / "
                          "block_size) = ceil((%llu + %llu) / %llu) = %llu, given %llu",
                          op, (ull)a.cache_len_before, (ull)a.tokens, (ull)a.block_size, (ull)need,
                          (ull)a.paged_block_indices_len));
  first = a.cache_len_before / a.block_size;
  for (uint64_t lb = first; lb < need; ++lb)
    if (a.paged_block_indices[lb] >= blocks)
      return invalid(format("%s: argument 'paged_block_indices': expected entries < N = %llu (the pool's block "
                            "count), given paged_block_indices[%llu] = %u",
                            op, (ull)blocks, (ull)lb, a.paged_block_indices[lb]));
  return ok_status();
}

// {int8,fp8}_paged_decode_attention: GQA, positive head_dim and block_size, a finite scale, the
// code dtypes, the pool geometry (when there are keys or all four pools are given),
// valid_kv_len <= N·block_size and a block table of ceil(valid_kv_len / block_size) entries.
template <class Args>
Status check_quant_decode(const char* op, const Args& a, int32_t code_dtype, uint64_t& blocks) {
  using ull = unsigned long long;
  Status s = check_gqa(op, a.num_q_heads, a.num_kv_heads, "num_q_heads", "num_kv_heads");
  if (s.ok()) s = check_positive(op, "head_dim", a.head_dim, true);
  if (s.ok()) s = check_positive(op, "block_size", a.block_size, true);
  if (s.ok() && !std::isfinite(a.scale))
    s = invalid(format("%s: argument 'scale': expected a finite value (0 = 1/sqrt(head_dim)), given %g", op, a.scale));
  if (s.ok()) s = check_code_dtype(op, "layer_k", a.layer_k, code_dtype);
  if (s.ok()) s = check_code_dtype(op, "layer_v", a.layer_v, code_dtype);
  if (!s.ok()) return s;
  blocks = 0;
  if (a.valid_kv_len > 0 || (a.layer_k && a.layer_v && a.layer_k_scales && a.layer_v_scales)) {
    s = check_quant_pool(op, a.layer_k, a.layer_v, a.layer_k_scales, a.layer_v_scales, a.block_size, a.num_kv_heads,
                         a.head_dim, blocks);
    if (!s.ok()) return s;
  }
  if (a.valid_kv_len > common::sat_mul(blocks, a.block_size))
    return invalid(format("%s: argument 'valid_kv_len': expected <= N·block_size = %llu·%llu, given %llu", op,
                          (ull)blocks, (ull)a.block_size, (ull)a.valid_kv_len));
  return check_min_count(op, "block_table", a.block_table, common::ceil_div(a.valid_kv_len, a.block_size));
}

}  // namespace ferrum::plugin::rules
