// CUDA plugin: the paged-KV writers (fused split + QK-norm + RoPE into a paged pool), both pool
// layouts, single-sequence and varlen forms. The attention half of the family lives in
// paged_attention.cpp; both fill kPagedKvTable (declared in cuda_plugin.hpp).
//
// The writers run the QK-norm/RoPE kernel of kernels/rope.cuh with paged K and V destinations:
// the kernel reads the block tables (and for varlen the cu_seqlens / pos_offsets) on the device,
// bounds-checks every entry and skips the KV row of a slot whose block is out of range, so the
// calls are capturable and never touch memory outside the named buffers. The checks follow the
// CPU plugin's (same messages, <ferrum/common/paged_rules.hpp>), with every size product
// overflow-checked.
#include <ferrum/common/op_rules.hpp>
#include <ferrum/common/paged_rules.hpp>

#include "kernels/rope.cuh"
#include "paged_common.hpp"

namespace ferrum::cuda::glue {
namespace {

using ull = unsigned long long;

uint32_t log2_exact(uint64_t x) {
  uint32_t s = 0;
  while ((uint64_t{1} << s) < x) ++s;
  return s;
}

// The RoPE launch of a writer: Q segment token-major into q_out, K and V paged.
kernels::RopeLaunch writer_launch(const void* qkv, const void* q_out, ferrum_buffer* cache_k, ferrum_buffer* cache_v,
                                  const ferrum_buffer* q_norm_w, const ferrum_buffer* k_norm_w,
                                  const ferrum_buffer* cos, const ferrum_buffer* sin, int32_t act, uint64_t tokens,
                                  uint64_t q_heads, uint64_t kv_heads, uint64_t D, float eps, int32_t mode,
                                  uint64_t rows, bool vllm, uint64_t bs, const PagedPoolGeometry& g,
                                  const ferrum_buffer* block_tables, uint64_t bt_stride) {
  kernels::RopeLaunch L;
  L.act_dtype = act;
  L.tab_dtype = cos ? cos->dtype : 0;
  L.in = qkv;
  // Strides below: products the glue validated before (row width via the regions / varlen sizes,
  // block_size·kv_heads·head_dim via the pool geometry), so the saturating forms are exact.
  L.in_row_stride = common::sat_mul(common::sat_add(q_heads, common::sat_mul(2, kv_heads)), D);
  L.tokens = tokens;
  L.head_dim = D;
  L.eps = eps;
  L.cos = cdata(cos);
  L.sin = cdata(sin);
  L.table_rows = rows;
  L.nseg = 3;
  L.seg[0] = {const_cast<void*>(q_out), q_heads, D, common::sat_mul(q_heads, D), cdata(q_norm_w), mode};  // token-major
  kernels::RopeSegment k{}, v{};
  k.dst = cache_k->data;
  v.dst = cache_v->data;
  k.heads = v.heads = kv_heads;
  k.norm_w = cdata(k_norm_w);
  k.mode = mode;
  v.mode = 0;  // V: copy
  k.paged = v.paged = true;
  k.blk_stride = v.blk_stride = common::sat_mul({bs, kv_heads, D});
  if (!vllm) {  // [num_blocks, bs, nkv, D]
    k.o_stride = v.o_stride = common::sat_mul(kv_heads, D);
    k.head_stride = v.head_stride = D;
  } else {  // K [num_blocks, nkv, D/x, bs, x], V [num_blocks, nkv, D, bs]
    k.head_stride = v.head_stride = common::sat_mul(D, bs);
    k.o_stride = g.x;
    k.x_shift = log2_exact(g.x);
    k.x_stride = common::sat_mul(bs, g.x);
    v.o_stride = 1;
    v.elem_stride = bs;
  }
  L.seg[1] = k;
  L.seg[2] = v;
  L.paged.block_tables = block_tables->data;
  L.paged.bt_i32 = is_i32(block_tables);
  L.paged.bt_stride = bt_stride;
  L.paged.block_size = bs;
  L.paged.num_blocks = g.num_blocks;
  return L;
}

// The writer rules shared with the CPU plugin, then the CUDA head_dim bound.
template <class Args>
Status check_writer_common(const char* op, const Args& a, uint64_t pos_end_host, bool work, uint64_t& rows) {
  Status s = plugin::rules::check_paged_writer(op, a, pos_end_host, work, rows);
  if (s.ok()) s = check_rope_head_dim(op, a.head_dim, work);
  return s;
}

// split_qkv_norm_rope_into_paged_cache and its _vllm twin (same fields).
template <class Args>
Status write_single(const char* op, bool vllm, ferrum_context& c, const Args& a, bool dry) {
  const bool work = a.tokens != 0;
  uint64_t rows = 0;
  Status s = check_writer_common(op, a, pos_end(a.pos_offset, a.tokens), work, rows);
  if (!s.ok() || !work) return s;
  const uint64_t D = a.head_dim;
  uint64_t qkv_off = 0, q_off = 0;
  s = plugin::rules::check_writer_regions(op, a, qkv_off, q_off);
  PagedPoolGeometry g;
  if (s.ok())
    s = check_paged_pool(op, "cache_k", a.cache_k, "cache_v", a.cache_v, vllm, a.block_size, "kv_heads", a.kv_heads, D,
                         g);
  if (s.ok()) s = plugin::rules::check_writer_capacity(op, a);
  if (s.ok())
    s = check_devices(op, c, {{"qkv", a.qkv}, {"q_norm_w", a.q_norm_w}, {"k_norm_w", a.k_norm_w}, {"cos", a.cos},
                              {"sin", a.sin}, {"q_out", a.q_out}, {"cache_k", a.cache_k}, {"cache_v", a.cache_v},
                              {"block_table", a.block_table}});
  if (!s.ok() || dry) return s;
  // arith-ok: the byte offsets are element multiples inside their buffers (check_writer_regions)
  const void* qkv = static_cast<const char*>(a.qkv->data) + a.qkv_byte_offset;
  // arith-ok: as above
  void* q_out = static_cast<char*>(a.q_out->data) + a.q_out_byte_offset;
  kernels::RopeLaunch L =
      writer_launch(qkv, q_out, a.cache_k, a.cache_v, a.q_norm_w, a.k_norm_w,
                    a.cos, a.sin, a.qkv->dtype, a.tokens, a.q_heads, a.kv_heads, D, a.eps, a.qk_mode, rows, vllm,
                    a.block_size, g, a.block_table, a.max_num_blocks_per_seq);
  L.pos_offset = a.pos_offset;
  L.paged.slot_offset = a.cache_len;
  return launch(op, c, [&](cudaStream_t st) { return kernels::rope_heads(L, st); });
}

// split_qkv_norm_rope_into_paged_cache_varlen and its _vllm twin.
template <class Args>
Status write_varlen(const char* op, bool vllm, ferrum_context& c, const Args& a, bool dry) {
  const bool work = a.num_seqs != 0;
  uint64_t rows = 0;
  Status s = check_writer_common(op, a, 0, work, rows);
  if (!s.ok() || !work) return s;
  PagedPoolGeometry g;
  s = plugin::rules::check_writer_varlen_sizes(op, a);
  if (s.ok())
    s = check_paged_pool(op, "cache_k", a.cache_k, "cache_v", a.cache_v, vllm, a.block_size, "kv_heads", a.kv_heads,
                         a.head_dim, g);
  if (s.ok())
    s = check_devices(op, c, {{"qkv", a.qkv}, {"q_norm_w", a.q_norm_w}, {"k_norm_w", a.k_norm_w}, {"cos", a.cos},
                              {"sin", a.sin}, {"q_out", a.q_out}, {"cache_k", a.cache_k}, {"cache_v", a.cache_v},
                              {"cu_seqlens_q", a.cu_seqlens_q}, {"pos_offsets", a.pos_offsets},
                              {"block_tables", a.block_tables}});
  if (!s.ok() || dry || a.m_total == 0) return s;
  kernels::RopeLaunch L = writer_launch(a.qkv->data, a.q_out->data, a.cache_k, a.cache_v, a.q_norm_w, a.k_norm_w,
                                        a.cos, a.sin, a.qkv->dtype, a.m_total, a.q_heads, a.kv_heads, a.head_dim,
                                        a.eps, a.qk_mode, rows, vllm, a.block_size, g, a.block_tables,
                                        a.max_blocks_per_seq);
  L.paged.cu = a.cu_seqlens_q->data;
  L.paged.cu_i32 = is_i32(a.cu_seqlens_q);
  L.paged.pos_offsets = a.pos_offsets->data;
  L.paged.pos_i32 = is_i32(a.pos_offsets);
  L.paged.num_seqs = a.num_seqs;
  return launch(op, c, [&](cudaStream_t st) { return kernels::rope_heads(L, st); });
}

}  // namespace

ferrum_status split_qkv_norm_rope_into_paged_cache(ferrum_context* ctx,
                                                   const ferrum_split_qkv_norm_rope_into_paged_cache_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return write_single("split_qkv_norm_rope_into_paged_cache", false, c, a, dry);
  });
}
ferrum_status split_qkv_norm_rope_into_paged_cache_vllm(ferrum_context* ctx,
                                                        const ferrum_split_qkv_norm_rope_into_paged_cache_vllm_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return write_single("split_qkv_norm_rope_into_paged_cache_vllm", true, c, a, dry);
  });
}
ferrum_status split_qkv_norm_rope_into_paged_cache_varlen(
    ferrum_context* ctx, const ferrum_split_qkv_norm_rope_into_paged_cache_varlen_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return write_varlen("split_qkv_norm_rope_into_paged_cache_varlen", false, c, a, dry);
  });
}
ferrum_status split_qkv_norm_rope_into_paged_cache_varlen_vllm(
    ferrum_context* ctx, const ferrum_split_qkv_norm_rope_into_paged_cache_varlen_vllm_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return write_varlen("split_qkv_norm_rope_into_paged_cache_varlen_vllm", true, c, a, dry);
  });
}

}  // namespace ferrum::cuda::glue
