// CUDA plugin: the paged-KV attention ops (decode, batched decode, varlen, FA2 with LSE, the
// vLLM-layout forms and tiled_q4) and the family's slot table.
//
// Every op maps onto one launch of the paged decode kernels (kernels/attention/paged.hpp) with a
// row mapping (uniform q_len, varlen cu_seqlens, FA2 seq_lens, tiles); the device metadata is
// never read on the host, so all ops are capturable. The split-KV scratch is the context's
// attention scratch (glue/attention.cpp): grown eagerly, refused during a capture that would
// need more. Checks follow the CPU plugin's (same messages, <ferrum/common/paged_rules.hpp>).
#include <algorithm>
#include <cmath>

#include <ferrum/common/paged_rules.hpp>

#include "kernels/attention/flash.hpp"
#include "kernels/attention/paged.hpp"
#include "paged_common.hpp"

namespace ferrum::cuda::glue {
namespace {

using ull = unsigned long long;

// The op's buffers, for the device check.
struct Bufs {
  const ferrum_buffer *q, *kp, *vp, *out, *lse, *bt, *lens, *cu, *tseq, *tst;
};

// Shared tail of every op: pool geometry, head-dim support, devices, then the launch.
Status attend(const char* op, ferrum_context& c, bool dry, const Bufs& b, attn::PagedParams p) {
  PagedPoolGeometry g;
  Status s = check_paged_pool(op, "k_pool", b.kp, "v_pool", b.vp, p.vllm, p.block_size, "num_kv_heads", p.num_kv_heads,
                              p.head_dim, g);
  if (s.ok()) s = check_attention_head_dim(op, "head_dim", p.head_dim);
  if (s.ok())
    s = check_devices(op, c, {{"q", b.q}, {"k_pool", b.kp}, {"v_pool", b.vp}, {"out", b.out}, {"lse", b.lse},
                              {"block_tables", b.bt}, {"lens", b.lens}, {"cu_seqlens_q", b.cu}, {"tile_seqs", b.tseq},
                              {"tile_starts", b.tst}});
  if (!s.ok() || dry || attn::paged_grid_rows(p) == 0) return s;
  p.dtype = b.q->dtype;
  p.q = b.q->data;
  p.out = b.out->data;
  p.k_pool = b.kp->data;
  p.v_pool = b.vp->data;
  p.num_blocks = g.num_blocks;
  p.block_tables = b.bt->data;
  p.bt_i32 = is_i32(b.bt);
  p.lens = b.lens->data;
  p.lens_i32 = is_i32(b.lens);
  if (b.cu) {
    p.cu = b.cu->data;
    p.cu_i32 = is_i32(b.cu);
  }
  if (b.lse) p.lse = static_cast<float*>(b.lse->data);
  if (b.tseq) {
    p.tile_seqs = b.tseq->data;
    p.tile_seqs_i32 = is_i32(b.tseq);
    p.tile_starts = b.tst->data;
    p.tile_starts_i32 = is_i32(b.tst);
  }
  p.scale = softmax_scale(p.scale, p.head_dim);
  int sms = 0;
  s = attention_sm_count(c, sms);
  void* scratch = nullptr;
  if (s.ok()) s = attention_scratch(c, attn::paged_scratch_bytes(p, sms), op, scratch);
  if (!s.ok()) return s;
  return launch(op, c, [&](cudaStream_t st) { return attn::paged_attention(p, sms, scratch, st); });
}

attn::PagedParams base_params(bool vllm, uint64_t num_seqs, uint64_t nh, uint64_t nkv, uint64_t D, uint64_t bs,
                              uint64_t mbps, float scale, uint64_t window) {
  attn::PagedParams p;
  p.vllm = vllm;
  p.num_seqs = num_seqs;
  p.num_heads = nh;
  p.num_kv_heads = nkv;
  p.head_dim = D;
  p.block_size = bs;
  p.bt_stride = mbps;
  p.scale = scale;
  p.window = window;
  return p;
}

// Uniform q_len per sequence: rows s·q_len + i at p = lens[s] − q_len + i. `len_bound` is the
// op's bound on lens (the table capacity when the op has none).
Status attend_uniform(const char* op, bool vllm, ferrum_context& c, bool dry, const ferrum_buffer* q,
                      const ferrum_buffer* kp, const ferrum_buffer* vp, ferrum_buffer* out, const ferrum_buffer* bt,
                      const ferrum_buffer* lens, uint64_t num_seqs, uint64_t nh, uint64_t nkv, uint64_t D, uint64_t bs,
                      uint64_t mbps, uint64_t q_len, float scale, uint64_t window, uint64_t len_bound) {
  const bool work = num_seqs != 0 && q_len != 0;
  Status s = check_paged_attention_fields(op, nh, nkv, D, scale, bs, work);
  if (!s.ok() || !work) return s;
  attn::PagedParams p = base_params(vllm, num_seqs, nh, nkv, D, bs, mbps, scale, window);
  p.rows = attn::PagedRows::uniform;
  p.q_len = q_len;
  p.len_bound = len_bound;
  return attend(op, c, dry, {q, kp, vp, out, nullptr, bt, lens, nullptr, nullptr, nullptr}, p);
}

// cu_seqlens forms: varlen (lens = pos_offsets), fa2 (lens = seq_lens, with LSE) and tiled.
Status attend_varlen(const char* op, bool vllm, attn::PagedRows rows, ferrum_context& c, bool dry,
                     const ferrum_buffer* q, const ferrum_buffer* kp, const ferrum_buffer* vp, ferrum_buffer* out,
                     ferrum_buffer* lse, const ferrum_buffer* cu, const ferrum_buffer* lens, const ferrum_buffer* bt,
                     uint64_t num_seqs, uint64_t M, uint64_t nh, uint64_t nkv, uint64_t D, uint64_t bs, uint64_t mbps,
                     float scale, uint64_t window, uint64_t len_bound, uint64_t q_bound,
                     const ferrum_buffer* tseq = nullptr, const ferrum_buffer* tst = nullptr, uint64_t num_tiles = 0) {
  const bool work = num_seqs != 0;
  Status s = check_paged_attention_fields(op, nh, nkv, D, scale, bs, work);
  if (!s.ok() || !work) return s;
  attn::PagedParams p = base_params(vllm, num_seqs, nh, nkv, D, bs, mbps, scale, window);
  p.rows = rows;
  p.total_q = M;
  p.lse_stride = M;
  p.num_tiles = num_tiles;
  p.len_bound = len_bound;
  p.q_len_bound = q_bound;
  return attend(op, c, dry, {q, kp, vp, out, lse, bt, lens, cu, tseq, tst}, p);
}

uint64_t capacity(uint64_t mbps, uint64_t bs) { return ferrum::common::shape_elems({mbps, bs}); }

ferrum_status paged_decode_attention(ferrum_context* ctx, const ferrum_paged_decode_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return attend_uniform("paged_decode_attention", false, c, dry, a.q, a.k_pool, a.v_pool, a.out, a.block_tables,
                          a.context_lens, a.num_seqs, a.num_heads, a.num_kv_heads, a.head_dim, a.block_size,
                          a.max_num_blocks_per_seq, a.q_len, a.scale, a.sliding_window,
                          capacity(a.max_num_blocks_per_seq, a.block_size));
  });
}

ferrum_status paged_batched_decode_attention(ferrum_context* ctx, const ferrum_paged_batched_decode_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return attend_uniform("paged_batched_decode_attention", false, c, dry, a.q, a.k_pool, a.v_pool, a.out,
                          a.block_tables, a.valid_kv_lens, a.num_seqs, a.num_heads, a.num_kv_heads, a.head_dim,
                          a.block_size, a.max_num_blocks_per_seq, 1, a.scale, a.sliding_window, a.max_kv_len);
  });
}

ferrum_status paged_decode_attention_v2(ferrum_context* ctx, const ferrum_paged_decode_attention_v2_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return attend_uniform("paged_decode_attention_v2", true, c, dry, a.q, a.k_pool, a.v_pool, a.out, a.block_tables,
                          a.context_lens, a.num_seqs, a.num_heads, a.num_kv_heads, a.head_dim, a.block_size,
                          a.max_num_blocks_per_seq, 1, a.scale, a.sliding_window, a.max_seq_len);
  });
}

ferrum_status paged_varlen_attention_vllm_layout(ferrum_context* ctx,
                                                 const ferrum_paged_varlen_attention_vllm_layout_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return attend_uniform("paged_varlen_attention_vllm_layout", true, c, dry, a.q, a.k_pool, a.v_pool, a.out,
                          a.block_tables, a.context_lens, a.num_seqs, a.num_heads, a.num_kv_heads, a.head_dim,
                          a.block_size, a.max_num_blocks_per_seq, a.q_len, a.scale, a.sliding_window,
                          capacity(a.max_num_blocks_per_seq, a.block_size));
  });
}

ferrum_status paged_varlen_attention(ferrum_context* ctx, const ferrum_paged_varlen_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return attend_varlen("paged_varlen_attention", false, attn::PagedRows::varlen, c, dry, a.q, a.k_pool, a.v_pool,
                         a.out, nullptr, a.cu_seqlens_q, a.pos_offsets, a.block_tables, a.num_seqs, a.total_q_tokens,
                         a.num_heads, a.num_kv_heads, a.head_dim, a.block_size, a.max_num_blocks_per_seq, a.scale,
                         a.sliding_window, a.max_kv_len, std::min(a.total_q_tokens, a.max_kv_len));
  });
}

ferrum_status paged_varlen_attention_vllm(ferrum_context* ctx, const ferrum_paged_varlen_attention_vllm_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return attend_varlen("paged_varlen_attention_vllm", true, attn::PagedRows::varlen, c, dry, a.q, a.k_pool,
                         a.v_pool, a.out, nullptr, a.cu_seqlens_q, a.pos_offsets, a.block_tables, a.num_seqs,
                         a.total_q_tokens, a.num_heads, a.num_kv_heads, a.head_dim, a.block_size,
                         a.max_num_blocks_per_seq, a.scale, a.sliding_window, a.max_kv_len,
                         std::min(a.total_q_tokens, a.max_kv_len));
  });
}

ferrum_status paged_varlen_attention_fa2_ffi(ferrum_context* ctx, const ferrum_paged_varlen_attention_fa2_ffi_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return attend_varlen("paged_varlen_attention_fa2_ffi", false, attn::PagedRows::fa2, c, dry, a.q, a.k_pool,
                         a.v_pool, a.out, a.lse, a.cu_seqlens_q, a.seq_lens, a.block_tables, a.num_seqs,
                         a.total_q_tokens, a.num_heads, a.num_kv_heads, a.head_dim, a.block_size,
                         a.max_num_blocks_per_seq, a.scale, a.sliding_window, a.max_kv_len, a.max_q_len);
  });
}

ferrum_status paged_varlen_attention_vllm_tiled_q4(ferrum_context* ctx,
                                                   const ferrum_paged_varlen_attention_vllm_tiled_q4_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) -> Status {
    const char* op = "paged_varlen_attention_vllm_tiled_q4";
    if (a.num_tiles == 0)  // no tiles: zero work
      return check_paged_attention_fields(op, a.num_heads, a.num_kv_heads, a.head_dim, a.scale, a.block_size, false);
    return attend_varlen(op, true, attn::PagedRows::tiled, c, dry, a.q, a.k_pool, a.v_pool, a.out, nullptr,
                         a.cu_seqlens_q, a.pos_offsets, a.block_tables, a.num_seqs, a.total_q_tokens, a.num_heads,
                         a.num_kv_heads, a.head_dim, a.block_size, a.max_num_blocks_per_seq, a.scale,
                         a.sliding_window, a.max_kv_len, 4, a.tile_seqs, a.tile_starts, a.num_tiles);
  });
}

// Capability flags: the paged, varlen and vLLM-layout ops all serve every activation dtype,
// every block_size >= 1 and the head sizes of flash.hpp, so each flag is 1.
}  // namespace

ferrum_status supports_paged_kv(ferrum_context* ctx, const ferrum_supports_paged_kv_args* a) {
  return plugin::rules::answer_capability(ctx, a, 1);
}
ferrum_status supports_varlen_qkv(ferrum_context* ctx, const ferrum_supports_varlen_qkv_args* a) {
  return plugin::rules::answer_capability(ctx, a, 1);
}
ferrum_status supports_vllm_paged_attn(ferrum_context* ctx, const ferrum_supports_vllm_paged_attn_args* a) {
  return plugin::rules::answer_capability(ctx, a, 1);
}

// Every slot of the family, in the registry's order (FERRUM_PAGED_KV_SLOTS is generated).
const ferrum_paged_kv_table kPagedKvTable = {sizeof(ferrum_paged_kv_table), FERRUM_PAGED_KV_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cuda::glue
