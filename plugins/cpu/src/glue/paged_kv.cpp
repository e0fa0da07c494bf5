// CPU plugin: the paged-KV family (docs/spec.md §0.9–§0.11, §6): the four writers and the eight
// attention ops, over the ferrum and the vLLM pool layouts. The glue validates the op-specific
// rules (pool geometry, vLLM x, GQA, head_dim, block_size, byte offsets, capacity), then turns
// the device metadata (cu_seqlens, lengths, tiles) into a bounds-checked work list for the
// kernels of kernels/paged.hpp. Device values are never trusted: every index is checked.
#include <vector>

#include <ferrum/common/paged_rules.hpp>

#include "glue.hpp"
#include "kernels/paged.hpp"

namespace ferrum::cpu {
namespace {

using ull = unsigned long long;

IdxView idx_view(const ferrum_buffer* b) {
  if (!b) return {};
  return {b->data, b->dtype == FERRUM_DTYPE_I32, b->count};
}


// Pool geometry (the shared rules: both pools, one size, at least one block of a checked
// block_size·kv_heads·head_dim, vLLM D % x) plus the block tables the kernels read.
Status make_pool(const char* op, const char* kname, const ferrum_buffer* k, const char* vname, const ferrum_buffer* v,
                 PagedLayout layout, uint64_t bs, const char* nkv_name, uint64_t nkv, uint64_t D, uint64_t stride,
                 const ferrum_buffer* bt, PagedPool& pool) {
  plugin::rules::PagedPoolGeometry g;
  Status s = plugin::rules::check_paged_pool(op, kname, k, vname, v, layout == PagedLayout::vllm, bs, nkv_name, nkv, D, g);
  if (!s.ok()) return s;
  pool.layout = layout;
  pool.num_blocks = g.num_blocks;
  pool.block_size = bs;
  pool.nkv = nkv;
  pool.head_dim = D;
  pool.x = g.x;
  pool.block_tables = idx_view(bt);
  pool.stride = stride;
  return ok_status();
}

// Final KV length used for iteration: positions >= stride·bs are out of range anyway (§0.11).
uint64_t clamp_len(int64_t L, const PagedPool& pool) {
  if (L < 0) return 0;
  return std::min<uint64_t>(static_cast<uint64_t>(L), common::sat_mul(pool.stride, pool.block_size));
}

// Runs the attention kernel on a work list.
Status launch_attention(const ferrum_buffer* q, const ferrum_buffer* kp, const ferrum_buffer* vp, ferrum_buffer* out,
                        float* lse, uint64_t lse_stride, const std::vector<PagedQuery>& qs, const PagedPool& pool,
                        uint64_t nh, float scale, uint64_t window) {
  return dispatch_float(q->dtype, unsupported("dtype"), [&](auto t) -> Status {
    using T = decltype(t);
    cpu::paged_attention<T>(data_of<const T>(q), data_of<const T>(kp), data_of<const T>(vp), data_of<T>(out), lse,
                            lse_stride, qs.data(), qs.size(), pool, nh, scale, window);
    return ok_status();
  });
}

// ---- writers ---------------------------------------------------------------------------------

// split_qkv_norm_rope_into_paged_cache and its _vllm twin (same fields).
template <class Args>
Status write_single(const char* op, PagedLayout layout, const Args& a, bool dry) {
  const bool work = a.tokens != 0;
  uint64_t rows = 0;
  Status s = plugin::rules::check_paged_writer(op, a, pos_end(a.pos_offset, a.tokens), work, rows);
  if (!s.ok() || !work) return s;
  const uint64_t D = a.head_dim;
  uint64_t qkv_off = 0, q_off = 0;
  s = plugin::rules::check_writer_regions(op, a, qkv_off, q_off);
  if (!s.ok()) return s;
  PagedPool pool;
  s = make_pool(op, "cache_k", a.cache_k, "cache_v", a.cache_v, layout, a.block_size, "kv_heads", a.kv_heads, D,
                a.max_num_blocks_per_seq, a.block_table, pool);
  if (s.ok()) s = plugin::rules::check_writer_capacity(op, a);
  if (!s.ok() || dry) return s;
  // tokens <= q_out's elements (checked above), and both sums were checked not to wrap.
  std::vector<PagedToken> toks(a.tokens);
  for (uint64_t t = 0; t < a.tokens; ++t)
    toks[t] = {t, t, common::sat_add(a.pos_offset, t), common::sat_add(a.cache_len, t), 0, true};
  return with_act_and_table(a.qkv->dtype, a.cos ? a.cos->dtype : 0, [&](auto t, auto c) -> Status {
    using T = decltype(t);
    using C = decltype(c);
    cpu::paged_write<T, C>(data_of<const T>(a.qkv) + qkv_off,  // arith-ok: range_ok(qkv_off, ...) above
                           data_of<const T>(a.q_norm_w), data_of<const T>(a.k_norm_w), data_of<const C>(a.cos),
                           data_of<const C>(a.sin), data_of<T>(a.q_out) + q_off,  // arith-ok: range_ok(q_off, ...) above
                           data_of<T>(a.cache_k), data_of<T>(a.cache_v), toks.data(), toks.size(), pool, a.q_heads,
                           a.eps, a.qk_mode);
    return ok_status();
  });
}

// split_qkv_norm_rope_into_paged_cache_varlen and its _vllm twin.
template <class Args>
Status write_varlen(const char* op, PagedLayout layout, const Args& a, bool dry) {
  const bool work = a.num_seqs != 0;
  uint64_t rows = 0;
  Status s = plugin::rules::check_paged_writer(op, a, 0, work, rows);
  if (s.ok() && work) s = plugin::rules::check_writer_varlen_sizes(op, a);
  if (!s.ok() || !work) return s;
  PagedPool pool;
  s = make_pool(op, "cache_k", a.cache_k, "cache_v", a.cache_v, layout, a.block_size, "kv_heads", a.kv_heads,
                a.head_dim, a.max_blocks_per_seq, a.block_tables, pool);
  if (!s.ok() || dry) return s;
  const IdxView cu = idx_view(a.cu_seqlens_q), offs = idx_view(a.pos_offsets);
  std::vector<PagedToken> toks;
  for (uint64_t sq = 0; sq < a.num_seqs; ++sq) {
    const int64_t b = cu.at(sq), e = cu.at(sq + 1), off = offs.at(sq);
    if (b < 0 || e < b || static_cast<uint64_t>(e) > a.m_total || off < 0) continue;  // inconsistent: skipped
    for (int64_t g = b; g < e; ++g) {
      const uint64_t p = static_cast<uint64_t>(off) + static_cast<uint64_t>(g - b);
      toks.push_back({uint64_t(g), uint64_t(g), p, p, sq, a.qk_mode == 0 || p < rows});
    }
  }
  return with_act_and_table(a.qkv->dtype, a.cos ? a.cos->dtype : 0, [&](auto t, auto c) -> Status {
    using T = decltype(t);
    using C = decltype(c);
    cpu::paged_write<T, C>(data_of<const T>(a.qkv), data_of<const T>(a.q_norm_w), data_of<const T>(a.k_norm_w),
                           data_of<const C>(a.cos), data_of<const C>(a.sin), data_of<T>(a.q_out), data_of<T>(a.cache_k),
                           data_of<T>(a.cache_v), toks.data(), toks.size(), pool, a.q_heads, a.eps, a.qk_mode);
    return ok_status();
  });
}

ferrum_status split_qkv_norm_rope_into_paged_cache(ferrum_context* ctx,
                                                   const ferrum_split_qkv_norm_rope_into_paged_cache_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const auto& a, bool dry) {
    return write_single("split_qkv_norm_rope_into_paged_cache", PagedLayout::ferrum, a, dry);
  });
}
ferrum_status split_qkv_norm_rope_into_paged_cache_vllm(ferrum_context* ctx,
                                                        const ferrum_split_qkv_norm_rope_into_paged_cache_vllm_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const auto& a, bool dry) {
    return write_single("split_qkv_norm_rope_into_paged_cache_vllm", PagedLayout::vllm, a, dry);
  });
}
ferrum_status split_qkv_norm_rope_into_paged_cache_varlen(
    ferrum_context* ctx, const ferrum_split_qkv_norm_rope_into_paged_cache_varlen_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const auto& a, bool dry) {
    return write_varlen("split_qkv_norm_rope_into_paged_cache_varlen", PagedLayout::ferrum, a, dry);
  });
}
ferrum_status split_qkv_norm_rope_into_paged_cache_varlen_vllm(
    ferrum_context* ctx, const ferrum_split_qkv_norm_rope_into_paged_cache_varlen_vllm_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const auto& a, bool dry) {
    return write_varlen("split_qkv_norm_rope_into_paged_cache_varlen_vllm", PagedLayout::vllm, a, dry);
  });
}

// ---- attention -------------------------------------------------------------------------------

// Uniform q_len per sequence: rows s·q_len + i at p = lens[s] − q_len + i (paged_decode_attention,
// paged_varlen_attention_vllm_layout; q_len = 1 for the batched decode and v2 ops).
Status attend_uniform(const char* op, PagedLayout layout, const ferrum_buffer* q, const ferrum_buffer* kp,
                      const ferrum_buffer* vp, ferrum_buffer* out, const ferrum_buffer* bt, const ferrum_buffer* lens,
                      uint64_t num_seqs, uint64_t nh, uint64_t nkv, uint64_t D, uint64_t bs, uint64_t mbps,
                      uint64_t q_len, float scale, uint64_t window, bool dry) {
  const bool work = num_seqs != 0 && q_len != 0;
  Status s = check_paged_attention_fields(op, nh, nkv, D, scale, bs, work);
  if (!s.ok() || !work) return s;
  PagedPool pool;
  s = make_pool(op, "k_pool", kp, "v_pool", vp, layout, bs, "num_kv_heads", nkv, D, mbps, bt, pool);
  if (!s.ok() || dry) return s;
  const IdxView L = idx_view(lens);
  std::vector<PagedQuery> qs;
  qs.reserve(common::sat_mul(num_seqs, q_len));  // the q rows: <= q's elements (generated check)
  for (uint64_t sq = 0; sq < num_seqs; ++sq) {
    const int64_t len = L.at(sq);
    const uint64_t kv = clamp_len(len, pool);
    for (uint64_t i = 0; i < q_len; ++i) {
      // arith-ok: len is an I32/U32 device value and q_len < 2^63 (rows of q); int64 cannot wrap
      const int64_t p = len < 0 ? -1 : len - static_cast<int64_t>(q_len) + static_cast<int64_t>(i);
      qs.push_back({sq * q_len + i, sq, p, kv});  // arith-ok: < num_seqs·q_len, checked against q
    }
  }
  return launch_attention(q, kp, vp, out, nullptr, 0, qs, pool, nh, scale, window);
}

// Varlen (cu_seqlens_q): fa2 = false -> `lens` are pos_offsets (p = off + j, L = off + q_len_s);
// fa2 = true -> `lens` are seq_lens (L = seq_lens[s], p = L − q_len_s + j). `mask` (size M) limits
// the written rows (tiled_q4). Rows outside every sequence are not written.
Status attend_varlen(const char* op, PagedLayout layout, const ferrum_buffer* q, const ferrum_buffer* kp,
                     const ferrum_buffer* vp, ferrum_buffer* out, ferrum_buffer* lse, const ferrum_buffer* cu_b,
                     const ferrum_buffer* lens_b, const ferrum_buffer* bt, uint64_t num_seqs, uint64_t M, uint64_t nh,
                     uint64_t nkv, uint64_t D, uint64_t bs, uint64_t mbps, float scale, uint64_t window, bool fa2,
                     bool dry, const std::vector<uint8_t>* mask = nullptr) {
  Status s = check_paged_attention_fields(op, nh, nkv, D, scale, bs, num_seqs != 0);
  // No sequences or no query rows (M = total_q_tokens = 0): nothing is written, and q/out/lse
  // may be NULL (their shapes have no elements), so return before any handle is touched.
  if (!s.ok() || num_seqs == 0 || M == 0) return s;
  PagedPool pool;
  s = make_pool(op, "k_pool", kp, "v_pool", vp, layout, bs, "num_kv_heads", nkv, D, mbps, bt, pool);
  if (!s.ok() || dry) return s;
  const IdxView cu = idx_view(cu_b), lens = idx_view(lens_b);
  std::vector<PagedQuery> qs;
  for (uint64_t sq = 0; sq < num_seqs; ++sq) {
    const int64_t b = cu.at(sq), e = cu.at(sq + 1), base = lens.at(sq);
    if (b < 0 || e < b || static_cast<uint64_t>(e) > M || base < 0) continue;  // inconsistent: not written
    const int64_t qn = e - b;
    const int64_t L = fa2 ? base : base + qn;
    const uint64_t kv = clamp_len(L, pool);
    for (int64_t j = 0; j < qn; ++j) {
      const uint64_t g = static_cast<uint64_t>(b + j);
      if (mask && !(*mask)[g]) continue;
      qs.push_back({g, sq, fa2 ? L - qn + j : base + j, kv});  // arith-ok: int64 of I32/U32 device values
    }
  }
  return launch_attention(q, kp, vp, out, lse ? data_of<float>(lse) : nullptr, M, qs, pool, nh, scale, window);
}

ferrum_status paged_decode_attention(ferrum_context* ctx, const ferrum_paged_decode_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const auto& a, bool dry) {
    return attend_uniform("paged_decode_attention", PagedLayout::ferrum, a.q, a.k_pool, a.v_pool, a.out, a.block_tables,
                          a.context_lens, a.num_seqs, a.num_heads, a.num_kv_heads, a.head_dim, a.block_size,
                          a.max_num_blocks_per_seq, a.q_len, a.scale, a.sliding_window, dry);
  });
}

ferrum_status paged_batched_decode_attention(ferrum_context* ctx, const ferrum_paged_batched_decode_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const auto& a, bool dry) {
    return attend_uniform("paged_batched_decode_attention", PagedLayout::ferrum, a.q, a.k_pool, a.v_pool, a.out,
                          a.block_tables, a.valid_kv_lens, a.num_seqs, a.num_heads, a.num_kv_heads, a.head_dim,
                          a.block_size, a.max_num_blocks_per_seq, 1, a.scale, a.sliding_window, dry);
  });
}

ferrum_status paged_decode_attention_v2(ferrum_context* ctx, const ferrum_paged_decode_attention_v2_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const auto& a, bool dry) {
    return attend_uniform("paged_decode_attention_v2", PagedLayout::vllm, a.q, a.k_pool, a.v_pool, a.out, a.block_tables,
                          a.context_lens, a.num_seqs, a.num_heads, a.num_kv_heads, a.head_dim, a.block_size,
                          a.max_num_blocks_per_seq, 1, a.scale, a.sliding_window, dry);
  });
}

ferrum_status paged_varlen_attention_vllm_layout(ferrum_context* ctx,
                                                 const ferrum_paged_varlen_attention_vllm_layout_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const auto& a, bool dry) {
    return attend_uniform("paged_varlen_attention_vllm_layout", PagedLayout::vllm, a.q, a.k_pool, a.v_pool, a.out,
                          a.block_tables, a.context_lens, a.num_seqs, a.num_heads, a.num_kv_heads, a.head_dim,
                          a.block_size, a.max_num_blocks_per_seq, a.q_len, a.scale, a.sliding_window, dry);
  });
}

ferrum_status paged_varlen_attention(ferrum_context* ctx, const ferrum_paged_varlen_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const auto& a, bool dry) {
    return attend_varlen("paged_varlen_attention", PagedLayout::ferrum, a.q, a.k_pool, a.v_pool, a.out, nullptr,
                         a.cu_seqlens_q, a.pos_offsets, a.block_tables, a.num_seqs, a.total_q_tokens, a.num_heads,
                         a.num_kv_heads, a.head_dim, a.block_size, a.max_num_blocks_per_seq, a.scale, a.sliding_window,
                         false, dry);
  });
}

ferrum_status paged_varlen_attention_vllm(ferrum_context* ctx, const ferrum_paged_varlen_attention_vllm_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const auto& a, bool dry) {
    return attend_varlen("paged_varlen_attention_vllm", PagedLayout::vllm, a.q, a.k_pool, a.v_pool, a.out, nullptr,
                         a.cu_seqlens_q, a.pos_offsets, a.block_tables, a.num_seqs, a.total_q_tokens, a.num_heads,
                         a.num_kv_heads, a.head_dim, a.block_size, a.max_num_blocks_per_seq, a.scale, a.sliding_window,
                         false, dry);
  });
}

ferrum_status paged_varlen_attention_fa2_ffi(ferrum_context* ctx, const ferrum_paged_varlen_attention_fa2_ffi_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const auto& a, bool dry) {
    return attend_varlen("paged_varlen_attention_fa2_ffi", PagedLayout::ferrum, a.q, a.k_pool, a.v_pool, a.out, a.lse,
                         a.cu_seqlens_q, a.seq_lens, a.block_tables, a.num_seqs, a.total_q_tokens, a.num_heads,
                         a.num_kv_heads, a.head_dim, a.block_size, a.max_num_blocks_per_seq, a.scale, a.sliding_window,
                         true, dry);
  });
}

ferrum_status paged_varlen_attention_vllm_tiled_q4(ferrum_context* ctx,
                                                   const ferrum_paged_varlen_attention_vllm_tiled_q4_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const auto& a, bool dry) -> Status {
    const char* op = "paged_varlen_attention_vllm_tiled_q4";
    if (a.num_tiles == 0)  // no tiles: zero work
      return check_paged_attention_fields(op, a.num_heads, a.num_kv_heads, a.head_dim, a.scale, a.block_size, false);
    // Validate everything (dry run) before the row mask is sized from total_q_tokens.
    Status s = attend_varlen(op, PagedLayout::vllm, a.q, a.k_pool, a.v_pool, a.out, nullptr, a.cu_seqlens_q,
                             a.pos_offsets, a.block_tables, a.num_seqs, a.total_q_tokens, a.num_heads,
                             a.num_kv_heads, a.head_dim, a.block_size, a.max_num_blocks_per_seq, a.scale,
                             a.sliding_window, false, /*dry=*/true);
    if (!s.ok() || dry) return s;
    std::vector<uint8_t> mask;
    if (a.num_seqs != 0) {
      // Rows covered by some tile (a row covered twice is computed once).
      mask.assign(a.total_q_tokens, 0);
      const IdxView seqs = idx_view(a.tile_seqs), starts = idx_view(a.tile_starts), cu = idx_view(a.cu_seqlens_q);
      for (uint64_t t = 0; t < a.num_tiles; ++t) {
        const int64_t sq = seqs.at(t), st = starts.at(t);
        if (sq < 0 || static_cast<uint64_t>(sq) >= a.num_seqs || st < 0) continue;
        const int64_t b = cu.at(sq), e = cu.at(sq + 1);
        if (b < 0 || e < b || static_cast<uint64_t>(e) > a.total_q_tokens) continue;
        for (int64_t j = st; j < std::min<int64_t>(st + 4, e - b); ++j) mask[b + j] = 1;
      }
    }
    return attend_varlen(op, PagedLayout::vllm, a.q, a.k_pool, a.v_pool, a.out, nullptr, a.cu_seqlens_q, a.pos_offsets,
                         a.block_tables, a.num_seqs, a.total_q_tokens, a.num_heads, a.num_kv_heads, a.head_dim,
                         a.block_size, a.max_num_blocks_per_seq, a.scale, a.sliding_window, false, false, &mask);
  });
}

}  // namespace

// Every slot of the family, in the registry's order (FERRUM_PAGED_KV_SLOTS is generated).
const ferrum_paged_kv_table kPagedKvTable = {sizeof(ferrum_paged_kv_table), FERRUM_PAGED_KV_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cpu
