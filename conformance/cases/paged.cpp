// Conformance cases: the paged-KV family (docs/spec.md §0.9–§0.11, §6) against the float64 references of
// conformance/ref/ref_paged.hpp. Every activation dtype; both pool layouts; GQA 1/2/4/8; head_dim
// 64…256 plus small odd ones (ferrum layout); block sizes 1, 7, 16, 32; kv lengths that are not a
// multiple of block_size; sequences of unequal length, empty ones (q_len_s = 0) and padded M
// (rows outside every sequence must stay poisoned); sliding windows; multi-query steps; the
// writer → attention round trip; the fa2_ffi LSE (class L); tiled_q4 with partial tiles.
#include <ferrum/conformance/kit.hpp>

#include "ref/ref_paged.hpp"
#include "src/case_util.hpp"

#include <limits>

using namespace ferrum;
using namespace ferrum::conformance;
using namespace ferrum::conformance::util;

namespace {

using fr::PagedLayout;
using idxv = std::vector<int64_t>;
using ull = unsigned long long;

constexpr ErrorCode kInvalid = ErrorCode::invalid_argument;

std::vector<uint32_t> to_u32(const idxv& v) { return std::vector<uint32_t>(v.begin(), v.end()); }
std::vector<int32_t> to_i32(const idxv& v) { return std::vector<int32_t>(v.begin(), v.end()); }

// A varlen step over a paged pool: S sequences, sequence s with pos_offsets[s] cached tokens and
// q_lens[s] new ones (L_s = pos + q_len), M = Σ q_len + pad rows.
struct Shape {
  uint64_t nh, nkv, D, bs;
  std::vector<uint64_t> pos, qlen;
  uint64_t window = 0;
  uint64_t pad = 0;
  bool i32 = false;      // index buffers as I32 (else U32)
};

std::string shape_name(const Shape& s) {
  std::string r = fmt("nh %llu nkv %llu hd %llu bs %llu", (ull)s.nh, (ull)s.nkv, (ull)s.D, (ull)s.bs);
  r += ", seqs [";
  // A uniform shape lists one q_len for every sequence; a varlen shape one per sequence.
  for (size_t i = 0; i < s.pos.size(); ++i)
    r += fmt("%s%llu+%llu", i ? " " : "", (ull)s.pos[i], (ull)s.qlen[s.qlen.size() == 1 ? 0 : i]);
  r += "]";
  if (s.window) r += fmt(", window %llu", (ull)s.window);
  if (s.pad) r += fmt(", pad %llu", (ull)s.pad);
  if (s.i32) r += ", i32 idx";
  return r;
}

// Host side of a step: metadata, block tables over a shuffled pool, q and random pools.
struct Step {
  uint64_t S = 0, M = 0, mbps = 0, num_blocks = 0, pool_elems = 0;
  idxv cu, pos, seq_lens, block_tables;
  vec q, k_pool, v_pool;
};

Step make_step(Run& run, const Shape& sh, bool fill_pools = true) {
  Step st;
  st.S = sh.pos.size();
  st.cu.push_back(0);
  uint64_t need_blocks = 0;
  for (uint64_t s = 0; s < st.S; ++s) {
    st.cu.push_back(st.cu.back() + static_cast<int64_t>(sh.qlen[s]));
    const uint64_t L = sh.pos[s] + sh.qlen[s];
    st.pos.push_back(static_cast<int64_t>(sh.pos[s]));
    st.seq_lens.push_back(static_cast<int64_t>(L));
    const uint64_t nb = (L + sh.bs - 1) / sh.bs;
    st.mbps = std::max(st.mbps, nb);
    need_blocks += nb;
  }
  st.mbps += 1;                       // a spare column (row stride > the blocks in use)
  st.M = static_cast<uint64_t>(st.cu.back()) + sh.pad;
  st.num_blocks = need_blocks + 3;    // spare physical blocks never referenced
  // Physical blocks in a scrambled order: block i of the allocation goes to (i·7 + 3) mod N, a
  // permutation whenever gcd(7, N) = 1 (else the identity shifted by 3).
  const uint64_t N = st.num_blocks;
  const bool coprime = N % 7 != 0;
  uint64_t next = 0;
  st.block_tables.assign(st.S * st.mbps, 0);
  for (uint64_t s = 0; s < st.S; ++s) {
    const uint64_t nb = (static_cast<uint64_t>(st.seq_lens[s]) + sh.bs - 1) / sh.bs;
    for (uint64_t b = 0; b < nb; ++b, ++next)
      st.block_tables[s * st.mbps + b] = static_cast<int64_t>(coprime ? (next * 7 + 3) % N : (next + 3) % N);
    for (uint64_t b = nb; b < st.mbps; ++b) st.block_tables[s * st.mbps + b] = static_cast<int64_t>(N - 1);
  }
  st.pool_elems = N * sh.bs * sh.nkv * sh.D;
  st.q = run.random(st.M * sh.nh * sh.D);
  if (fill_pools) {
    st.k_pool = run.random(st.pool_elems);
    st.v_pool = run.random(st.pool_elems);
  }
  return st;
}

Buffer upload_idx(Run& run, const idxv& v, bool i32) { return i32 ? run.upload_i32(to_i32(v)) : run.upload_u32(to_u32(v)); }

uint64_t x_of(Run& run, PagedLayout layout) {
  return layout == PagedLayout::vllm ? fr::paged::vllm_x(raw(run.dtype)) : 0;
}

// Checks the written rows [0, cu[S]) (per row of nh·D) and that padded rows stayed poisoned.
void check_rows(Run& run, const std::string& what, const Buffer& out, const vec& ref, uint64_t rows_written,
                uint64_t M, uint64_t row_len) {
  const vec got = run.download(out, rows_written * row_len);
  run.check_values(what, got, slice(ref, 0, rows_written * row_len), row_len, run.dtype);
  if (M > rows_written) run.check_untouched(what + " (padded rows)", out, rows_written * row_len, M * row_len);
}

// ------------------------------------------------------------------ varlen attention family
enum class VarlenOp { ferrum, vllm, fa2, tiled };

const char* varlen_op_name(VarlenOp op) {
  switch (op) {
    case VarlenOp::ferrum: return "paged_varlen_attention";
    case VarlenOp::vllm: return "paged_varlen_attention_vllm";
    case VarlenOp::fa2: return "paged_varlen_attention_fa2_ffi";
    case VarlenOp::tiled: return "paged_varlen_attention_vllm_tiled_q4";
  }
  return "";
}

void run_varlen(Run& run, const Shape& sh, VarlenOp op) {
  const PagedLayout layout = (op == VarlenOp::vllm || op == VarlenOp::tiled) ? PagedLayout::vllm : PagedLayout::ferrum;
  Step st = make_step(run, sh);
  const uint64_t x = x_of(run, layout), rl = sh.nh * sh.D;
  const float scale = sh.window ? 0.0f : 0.125f;  // both the default (0) and an explicit scale
  Buffer q = run.upload(st.q), kp = run.upload(st.k_pool), vp = run.upload(st.v_pool);
  Buffer cu = upload_idx(run, st.cu, sh.i32), bt = upload_idx(run, st.block_tables, sh.i32);
  Buffer lens = upload_idx(run, op == VarlenOp::fa2 ? st.seq_lens : st.pos, sh.i32);
  Buffer out = run.output(st.M * rl);
  const uint64_t maxkv = *std::max_element(st.seq_lens.begin(), st.seq_lens.end());
  vec ref(st.M * rl, 0.0), lse_ref;
  const uint64_t written = static_cast<uint64_t>(st.cu.back());
  if (op == VarlenOp::tiled) {
    // Tiles of 4 over every sequence (partial last tiles), listed in reverse; one sequence
    // gets an overlapping extra tile at a start that is not a multiple of 4, one bogus tile
    // (s >= num_seqs) and one past the sequence end do nothing.
    idxv ts, tst;
    for (uint64_t s = st.S; s-- > 0;)
      for (uint64_t j = 0; j < sh.qlen[s]; j += 4) {
        ts.push_back(static_cast<int64_t>(s));
        tst.push_back(static_cast<int64_t>(j));
      }
    if (!sh.qlen.empty() && sh.qlen[0] > 2) {
      ts.push_back(0);
      tst.push_back(1);
    }
    ts.push_back(static_cast<int64_t>(st.S));
    tst.push_back(0);
    ts.push_back(0);
    tst.push_back(static_cast<int64_t>(sh.qlen[0]) + 5);
    Buffer bts = upload_idx(run, ts, sh.i32), btst = upload_idx(run, tst, sh.i32);
    run.ctx.paged_varlen_attention_vllm_tiled_q4({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .cu_seqlens_q = cu, .pos_offsets = lens, .block_tables = bt, .tile_seqs = bts, .tile_starts = btst, .num_tiles = ts.size(), .max_kv_len = maxkv, .num_heads = sh.nh,
                                                 .num_kv_heads = sh.nkv, .head_dim = sh.D, .block_size = sh.bs, .max_num_blocks_per_seq = st.mbps, .num_seqs = st.S, .total_q_tokens = st.M, .scale = scale, .sliding_window = sh.window});
    fr::paged_varlen_attention_vllm_tiled_q4(st.q, st.k_pool, st.v_pool, ref, st.cu, st.pos, st.block_tables, ts, tst,
                                             ts.size(), sh.nh, sh.nkv, sh.D, sh.bs, st.mbps, st.S, st.M, scale,
                                             sh.window, x);
    check_rows(run, "out", out, ref, written, st.M, rl);
    return;
  }
  Buffer lse = run.output(sh.nh * st.M, Dtype::f32);
  if (op == VarlenOp::ferrum)
    run.ctx.paged_varlen_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .cu_seqlens_q = cu, .pos_offsets = lens, .block_tables = bt, .num_seqs = st.S, .total_q_tokens = st.M, .max_kv_len = maxkv, .num_heads = sh.nh, .num_kv_heads = sh.nkv, .head_dim = sh.D, .block_size = sh.bs, .max_num_blocks_per_seq = st.mbps,
                                   .scale = scale, .sliding_window = sh.window});
  else if (op == VarlenOp::vllm)
    run.ctx.paged_varlen_attention_vllm({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .cu_seqlens_q = cu, .pos_offsets = lens, .block_tables = bt, .num_seqs = st.S, .total_q_tokens = st.M, .max_kv_len = maxkv, .num_heads = sh.nh, .num_kv_heads = sh.nkv, .head_dim = sh.D, .block_size = sh.bs,
                                        .max_num_blocks_per_seq = st.mbps, .scale = scale, .sliding_window = sh.window});
  else {
    const uint64_t maxq = *std::max_element(sh.qlen.begin(), sh.qlen.end());
    run.ctx.paged_varlen_attention_fa2_ffi({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .lse = lse, .cu_seqlens_q = cu, .seq_lens = lens, .block_tables = bt, .num_seqs = st.S, .total_q_tokens = st.M, .max_q_len = maxq, .max_kv_len = maxkv, .num_heads = sh.nh, .num_kv_heads = sh.nkv,
                                           .head_dim = sh.D, .block_size = sh.bs, .max_num_blocks_per_seq = st.mbps, .scale = scale, .sliding_window = sh.window});
  }
  fr::paged_attention_varlen(st.q, st.k_pool, st.v_pool, ref, op == VarlenOp::fa2 ? &lse_ref : nullptr, st.cu,
                             op == VarlenOp::fa2 ? st.seq_lens : st.pos, st.block_tables, st.S, st.M, sh.nh, sh.nkv,
                             sh.D, sh.bs, st.mbps, scale, sh.window, op == VarlenOp::fa2, layout, x);
  check_rows(run, "out", out, ref, written, st.M, rl);
  if (op == VarlenOp::fa2) {
    // Class L per written entry; −∞ exactly where the reference is −∞; padded entries untouched.
    const vec got = run.download(lse, sh.nh * st.M);
    const double tol = run.dtype == Dtype::f32 ? 1e-5 : 1e-3;
    for (uint64_t h = 0; h < sh.nh; ++h)
      for (uint64_t g = 0; g < st.M; ++g) {
        const double r = lse_ref[h * st.M + g], o = got[h * st.M + g];
        if (g >= written) {
          if (!std::isnan(o)) run.fail(fmt("lse[%llu, %llu] (padded row) was written: %.9g", (ull)h, (ull)g, o));
          continue;
        }
        if (std::isinf(r) && r < 0) {
          if (!(std::isinf(o) && o < 0)) run.fail(fmt("lse[%llu, %llu]: expected -inf, got %.9g", (ull)h, (ull)g, o));
        } else if (!(std::fabs(o - r) <= tol * std::max(1.0, std::fabs(r)))) {
          run.fail(fmt("lse[%llu, %llu]: expected %.9g, got %.9g (class L)", (ull)h, (ull)g, r, o));
        }
      }
    run.check_untouched("lse guard", lse, sh.nh * st.M, lse.count());
  }
}

const std::vector<Shape> kVarlenShapes = {
    {4, 4, 64, 16, {0}, {1}},                                             // 1 token, empty cache
    {8, 2, 128, 16, {37, 0, 5}, {1, 9, 4}},                               // mixed prefill + decodes, gqa 4
    {8, 1, 64, 32, {70, 3}, {3, 17}, 0, 3},                               // gqa 8, padded M
    {4, 2, 256, 16, {20, 0, 11}, {2, 0, 5}, 0, 0, true},                  // hd 256, empty sequence, I32 idx
    {6, 3, 80, 7, {13, 29}, {6, 1}, 5},                                   // bs 7, sliding window
    {2, 2, 96, 1, {4, 0}, {3, 6}, 0, 2},                                  // bs 1, padded
    {4, 4, 32, 16, {50}, {12}, 8},                                        // window with q_len > 1
};
const std::vector<Shape> kVarlenOddShapes = {  // ferrum layout only: any head_dim
    {3, 1, 5, 7, {9, 2}, {4, 3}},
    {2, 2, 1, 16, {17}, {2}, 0, 1},
    {4, 2, 33, 3, {0, 8}, {5, 0}, 4},
};

const bool kVarlenCases = [] {
  for (VarlenOp op : {VarlenOp::ferrum, VarlenOp::vllm, VarlenOp::fa2, VarlenOp::tiled}) {
    register_table<Shape>(varlen_op_name(op), kActDtypes, kVarlenShapes, shape_name,
                          [op](Run& run, const Shape& s) { run_varlen(run, s, op); });
    if (op == VarlenOp::ferrum || op == VarlenOp::fa2)
      register_table<Shape>(varlen_op_name(op), kActDtypes, kVarlenOddShapes, shape_name,
                            [op](Run& run, const Shape& s) { run_varlen(run, s, op); });
  }
  return true;
}();

// ------------------------------------------------------------------ uniform-q_len attention family
enum class UniformOp { decode, batched, v2, vllm_layout };

const char* uniform_op_name(UniformOp op) {
  switch (op) {
    case UniformOp::decode: return "paged_decode_attention";
    case UniformOp::batched: return "paged_batched_decode_attention";
    case UniformOp::v2: return "paged_decode_attention_v2";
    case UniformOp::vllm_layout: return "paged_varlen_attention_vllm_layout";
  }
  return "";
}

// Shape.qlen[0] is the uniform q_len (1 for the decode-only ops), Shape.pos the cached lengths.
void run_uniform(Run& run, Shape sh, UniformOp op) {
  if (op == UniformOp::batched || op == UniformOp::v2) sh.qlen.assign(sh.pos.size(), 1);
  else sh.qlen.assign(sh.pos.size(), sh.qlen[0]);
  const uint64_t qlen = sh.qlen[0];
  const PagedLayout layout = (op == UniformOp::v2 || op == UniformOp::vllm_layout) ? PagedLayout::vllm : PagedLayout::ferrum;
  Step st = make_step(run, sh);
  const uint64_t x = x_of(run, layout), rl = sh.nh * sh.D;
  const float scale = 0.0f;
  Buffer q = run.upload(st.q), kp = run.upload(st.k_pool), vp = run.upload(st.v_pool);
  Buffer bt = upload_idx(run, st.block_tables, sh.i32), lens = upload_idx(run, st.seq_lens, sh.i32);
  Buffer out = run.output(st.S * qlen * rl);
  const uint64_t maxkv = *std::max_element(st.seq_lens.begin(), st.seq_lens.end());
  switch (op) {
    case UniformOp::decode:
      run.ctx.paged_decode_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .context_lens = lens, .num_seqs = st.S, .num_heads = sh.nh, .num_kv_heads = sh.nkv, .head_dim = sh.D, .block_size = sh.bs, .max_num_blocks_per_seq = st.mbps, .q_len = qlen, .scale = scale,
                                     .sliding_window = sh.window});
      break;
    case UniformOp::batched:
      run.ctx.paged_batched_decode_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .valid_kv_lens = lens, .num_seqs = st.S, .max_kv_len = maxkv, .num_heads = sh.nh, .num_kv_heads = sh.nkv, .head_dim = sh.D, .block_size = sh.bs, .max_num_blocks_per_seq = st.mbps,
                                             .scale = scale, .sliding_window = sh.window});
      break;
    case UniformOp::v2:
      run.ctx.paged_decode_attention_v2({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .context_lens = lens, .num_seqs = st.S, .num_heads = sh.nh, .num_kv_heads = sh.nkv, .head_dim = sh.D, .block_size = sh.bs, .max_num_blocks_per_seq = st.mbps, .max_seq_len = maxkv,
                                        .scale = scale, .sliding_window = sh.window});
      break;
    case UniformOp::vllm_layout:
      run.ctx.paged_varlen_attention_vllm_layout({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .context_lens = lens, .num_seqs = st.S, .num_heads = sh.nh, .num_kv_heads = sh.nkv, .head_dim = sh.D, .block_size = sh.bs, .max_num_blocks_per_seq = st.mbps,
                                                 .q_len = qlen, .scale = scale, .sliding_window = sh.window});
      break;
  }
  vec ref;
  fr::paged_attention_uniform(st.q, st.k_pool, st.v_pool, ref, st.block_tables, st.seq_lens, st.S, sh.nh, sh.nkv, sh.D,
                              sh.bs, st.mbps, qlen, scale, sh.window, layout, x);
  run.check("out", out, ref, rl);
}

const std::vector<Shape> kUniformShapes = {
    {4, 4, 64, 16, {0}, {1}},                             // first token
    {8, 2, 128, 16, {40, 7, 100}, {1}},                   // gqa 4, unequal lengths
    {8, 1, 64, 32, {33, 64}, {3}},                        // gqa 8, multi-query
    {4, 1, 256, 16, {15, 2}, {2}, 0, 0, true},            // hd 256, I32 idx
    {6, 3, 96, 7, {20, 41}, {4}, 6},                      // bs 7, window
    {2, 1, 32, 1, {9}, {5}, 3},                           // bs 1, window < q_len
};

const bool kUniformCases = [] {
  for (UniformOp op : {UniformOp::decode, UniformOp::batched, UniformOp::v2, UniformOp::vllm_layout})
    register_table<Shape>(uniform_op_name(op), kActDtypes, kUniformShapes, shape_name,
                          [op](Run& run, const Shape& s) { run_uniform(run, s, op); });
  register_table<Shape>("paged_decode_attention", kActDtypes, {{3, 3, 7, 5, {11, 4}, {2}}, {2, 1, 3, 16, {20}, {1}, 4}},
                        shape_name, [](Run& run, const Shape& s) { run_uniform(run, s, UniformOp::decode); });
  return true;
}();

// ------------------------------------------------------------------ writers (+ round trip)
struct WriterShape {
  uint64_t qh, kvh, D, bs;
  int32_t mode;
  std::vector<uint64_t> pos, qlen;  // varlen: per sequence; single: one entry
  uint64_t pad = 0;
  bool i32 = false;
};

std::string writer_name(const WriterShape& w) {
  std::string r = fmt("qh %llu kvh %llu hd %llu bs %llu mode %d, seqs [", (ull)w.qh, (ull)w.kvh, (ull)w.D, (ull)w.bs,
                      w.mode);
  for (size_t i = 0; i < w.pos.size(); ++i) r += fmt("%s%llu+%llu", i ? " " : "", (ull)w.pos[i], (ull)w.qlen[i]);
  r += "]";
  if (w.pad) r += fmt(", pad %llu", (ull)w.pad);
  if (w.i32) r += ", i32 idx";
  return r;
}

struct Tables {
  vec cos, sin, qw, kw;
  Buffer bcos, bsin, bqw, bkw;
  // The norm weights as op arguments: only mode 1 reads them (the others refuse non-NULL).
  const Buffer* qn(int32_t mode) const { return mode == 1 ? &bqw : nullptr; }
  const Buffer* kn(int32_t mode) const { return mode == 1 ? &bkw : nullptr; }
};

Tables make_tables(Run& run, uint64_t rows, uint64_t D) {
  Tables t;
  fr::rope_tables(rows, D, 10000.0, t.cos, t.sin);
  t.cos = ft::round_to(FERRUM_DTYPE_F32, t.cos);
  t.sin = ft::round_to(FERRUM_DTYPE_F32, t.sin);
  t.qw = run.random(D, 0.5, 1.5);
  t.kw = run.random(D, 0.5, 1.5);
  t.bcos = run.upload(t.cos, Dtype::f32);
  t.bsin = run.upload(t.sin, Dtype::f32);
  t.bqw = run.upload(t.qw);
  t.bkw = run.upload(t.kw);
  return t;
}

// Varlen writer, then paged_varlen_attention(_vllm) over what it wrote (round trip).
void run_writer_varlen(Run& run, const WriterShape& w, PagedLayout layout) {
  Shape sh{w.qh, w.kvh, w.D, w.bs, w.pos, w.qlen, 0, w.pad, w.i32};
  Step st = make_step(run, sh);
  const uint64_t x = x_of(run, layout), Wd = (w.qh + 2 * w.kvh) * w.D;
  const uint64_t rows = *std::max_element(st.seq_lens.begin(), st.seq_lens.end()) + 2;
  Tables tb = make_tables(run, rows, w.D);
  const vec qkv = run.random(st.M * Wd);
  Buffer bqkv = run.upload(qkv), kp = run.upload(st.k_pool), vp = run.upload(st.v_pool);
  Buffer cu = upload_idx(run, st.cu, w.i32), offs = upload_idx(run, st.pos, w.i32), bt = upload_idx(run, st.block_tables, w.i32);
  Buffer q_out = run.output(st.M * w.qh * w.D);
  const bool vllm = layout == PagedLayout::vllm;
  if (vllm)
    run.ctx.split_qkv_norm_rope_into_paged_cache_varlen_vllm({.qkv = bqkv, .q_norm_w = tb.qn(w.mode), .k_norm_w = tb.kn(w.mode), .cos = &tb.bcos, .sin = &tb.bsin, .q_out = q_out, .cache_k = kp, .cache_v = vp, .cu_seqlens_q = cu,
                                                             .pos_offsets = offs, .block_tables = bt, .num_seqs = st.S, .m_total = st.M, .q_heads = w.qh, .kv_heads = w.kvh, .head_dim = w.D, .eps = 1e-6f, .qk_mode = static_cast<ferrum::QkMode>(w.mode), .block_size = w.bs,
                                                             .max_blocks_per_seq = st.mbps});
  else
    run.ctx.split_qkv_norm_rope_into_paged_cache_varlen({.qkv = bqkv, .q_norm_w = tb.qn(w.mode), .k_norm_w = tb.kn(w.mode), .cos = &tb.bcos, .sin = &tb.bsin, .q_out = q_out, .cache_k = kp, .cache_v = vp, .cu_seqlens_q = cu, .pos_offsets = offs,
                                                        .block_tables = bt, .num_seqs = st.S, .m_total = st.M, .q_heads = w.qh, .kv_heads = w.kvh, .head_dim = w.D, .eps = 1e-6f, .qk_mode = static_cast<ferrum::QkMode>(w.mode), .block_size = w.bs, .max_blocks_per_seq = st.mbps});
  vec rq(st.M * w.qh * w.D, 0.0), rk = st.k_pool, rv = st.v_pool;
  fr::split_qkv_norm_rope_into_paged_cache_varlen(qkv, tb.qw, tb.kw, tb.cos, tb.sin, rq, rk, rv, st.cu, st.pos,
                                                  st.block_tables, st.S, st.M, w.qh, w.kvh, w.D, 1e-6f, w.mode, w.bs,
                                                  st.mbps, layout, x);
  const uint64_t written = static_cast<uint64_t>(st.cu.back());
  check_rows(run, "q_out", q_out, rq, written, st.M, w.qh * w.D);
  run.check("cache_k", kp, rk, w.D);
  run.check("cache_v", vp, rv, w.D, w.mode == 0 ? 'E' : 'F');
  // Round trip: attention over the plugin's own pools and queries must match the reference on
  // exactly those stored values (the layout the writer used is the layout the reader expects).
  const vec qs = run.download(q_out, written * w.qh * w.D), ks = run.download(kp), vs = run.download(vp);
  vec qfull(st.M * w.qh * w.D, 0.0);
  std::copy(qs.begin(), qs.end(), qfull.begin());
  Buffer q2 = run.upload(qfull);
  Buffer out = run.output(st.M * w.qh * w.D);
  const uint64_t maxkv = *std::max_element(st.seq_lens.begin(), st.seq_lens.end());
  if (vllm)
    run.ctx.paged_varlen_attention_vllm({.q = q2, .k_pool = kp, .v_pool = vp, .out = out, .cu_seqlens_q = cu, .pos_offsets = offs, .block_tables = bt, .num_seqs = st.S, .total_q_tokens = st.M, .max_kv_len = maxkv, .num_heads = w.qh, .num_kv_heads = w.kvh, .head_dim = w.D, .block_size = w.bs,
                                        .max_num_blocks_per_seq = st.mbps, .scale = 0.0f, .sliding_window = 0});
  else
    run.ctx.paged_varlen_attention({.q = q2, .k_pool = kp, .v_pool = vp, .out = out, .cu_seqlens_q = cu, .pos_offsets = offs, .block_tables = bt, .num_seqs = st.S, .total_q_tokens = st.M, .max_kv_len = maxkv, .num_heads = w.qh, .num_kv_heads = w.kvh, .head_dim = w.D, .block_size = w.bs, .max_num_blocks_per_seq = st.mbps,
                                   .scale = 0.0f, .sliding_window = 0});
  vec ref(st.M * w.qh * w.D, 0.0);
  fr::paged_attention_varlen(qfull, ks, vs, ref, nullptr, st.cu, st.pos, st.block_tables, st.S, st.M, w.qh, w.kvh, w.D,
                             w.bs, st.mbps, 0.0f, 0, false, layout, x);
  check_rows(run, "round-trip out", out, ref, written, st.M, w.qh * w.D);
}

// Single-sequence writer with byte offsets into larger buffers, then paged_decode_attention.
void run_writer_single(Run& run, const WriterShape& w, PagedLayout layout) {
  Shape sh{w.qh, w.kvh, w.D, w.bs, w.pos, w.qlen, 0, 0, w.i32};
  Step st = make_step(run, sh);
  const uint64_t x = x_of(run, layout), Wd = (w.qh + 2 * w.kvh) * w.D, T = w.qlen[0], cache_len = w.pos[0];
  const uint64_t es = element_size(run.dtype);
  Tables tb = make_tables(run, cache_len + T + 3, w.D);
  const uint64_t lead = 2;  // rows before this item in the batch buffers
  const vec qkv = run.random((lead + T + 1) * Wd);
  Buffer bqkv = run.upload(qkv), kp = run.upload(st.k_pool), vp = run.upload(st.v_pool);
  const idxv row0(st.block_tables.begin(), st.block_tables.begin() + static_cast<std::ptrdiff_t>(st.mbps));
  Buffer bt = upload_idx(run, row0, w.i32);
  const uint64_t q_lead = lead * w.qh * w.D;
  Buffer q_out = run.output(q_lead + T * w.qh * w.D);
  const bool vllm = layout == PagedLayout::vllm;
  if (vllm)
    run.ctx.split_qkv_norm_rope_into_paged_cache_vllm({.qkv = &bqkv, .qkv_byte_offset = lead * Wd * es, .q_norm_w = tb.qn(w.mode), .k_norm_w = tb.kn(w.mode), .cos = &tb.bcos, .sin = &tb.bsin, .q_out = &q_out,
                                                      .q_out_byte_offset = q_lead * es, .cache_k = kp, .cache_v = vp, .block_table = bt, .tokens = T, .q_heads = w.qh, .kv_heads = w.kvh, .head_dim = w.D, .pos_offset = cache_len, .eps = 1e-6f,
                                                      .qk_mode = static_cast<ferrum::QkMode>(w.mode), .cache_len = cache_len, .block_size = w.bs, .max_num_blocks_per_seq = st.mbps});
  else
    run.ctx.split_qkv_norm_rope_into_paged_cache({.qkv = &bqkv, .qkv_byte_offset = lead * Wd * es, .q_norm_w = tb.qn(w.mode), .k_norm_w = tb.kn(w.mode), .cos = &tb.bcos, .sin = &tb.bsin, .q_out = &q_out,
                                                 .q_out_byte_offset = q_lead * es, .cache_k = kp, .cache_v = vp, .block_table = bt, .tokens = T, .q_heads = w.qh, .kv_heads = w.kvh, .head_dim = w.D, .pos_offset = cache_len, .eps = 1e-6f, .qk_mode = static_cast<ferrum::QkMode>(w.mode),
                                                 .cache_len = cache_len, .block_size = w.bs, .max_num_blocks_per_seq = st.mbps});
  vec rq(q_lead + T * w.qh * w.D, 0.0), rk = st.k_pool, rv = st.v_pool;
  fr::split_qkv_norm_rope_into_paged_cache(qkv, lead * Wd, tb.qw, tb.kw, tb.cos, tb.sin, rq, q_lead, rk, rv, row0, T, w.qh,
                                           w.kvh, w.D, cache_len, 1e-6f, w.mode, cache_len, w.bs, st.mbps, layout, x);
  run.check_untouched("q_out (rows before the offset)", q_out, 0, q_lead);
  const vec qs = run.download(q_out, q_lead + T * w.qh * w.D);
  run.check_values("q_out", slice(qs, q_lead, T * w.qh * w.D), slice(rq, q_lead, T * w.qh * w.D), w.qh * w.D, run.dtype);
  run.check("cache_k", kp, rk, w.D);
  run.check("cache_v", vp, rv, w.D, w.mode == 0 ? 'E' : 'F');
  if (vllm) return;
  // Round trip with the multi-query decode op (q_len = T, context_len = cache_len + T).
  const vec qtok = slice(qs, q_lead, T * w.qh * w.D), ks = run.download(kp), vs = run.download(vp);
  Buffer q2 = run.upload(qtok), lens = upload_idx(run, {static_cast<int64_t>(cache_len + T)}, w.i32);
  Buffer out = run.output(T * w.qh * w.D);
  run.ctx.paged_decode_attention({.q = q2, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .context_lens = lens, .num_seqs = 1, .num_heads = w.qh, .num_kv_heads = w.kvh, .head_dim = w.D, .block_size = w.bs, .max_num_blocks_per_seq = st.mbps, .q_len = T, .scale = 0.0f, .sliding_window = 0});
  vec ref;
  fr::paged_attention_uniform(qtok, ks, vs, ref, row0, {static_cast<int64_t>(cache_len + T)}, 1, w.qh, w.kvh, w.D, w.bs,
                              st.mbps, T, 0.0f, 0, layout, x);
  run.check("round-trip out", out, ref, w.qh * w.D);
}

const std::vector<WriterShape> kWriterVarlen = {
    {8, 2, 64, 16, 1, {0, 21, 5}, {7, 1, 0}},
    {4, 4, 128, 32, 2, {40}, {3}, 2},
    {8, 1, 32, 7, 3, {3, 9}, {5, 2}, 0, true},
    {4, 2, 16, 1, 0, {2, 0}, {1, 4}},
};
const std::vector<WriterShape> kWriterSingle = {
    {8, 2, 64, 16, 1, {13}, {5}},
    {4, 1, 128, 32, 2, {0}, {1}},
    {6, 3, 32, 7, 3, {20}, {9}, 0, true},
    {2, 2, 8, 1, 0, {4}, {3}},
};

const bool kWriterCases = [] {
  register_table<WriterShape>("split_qkv_norm_rope_into_paged_cache_varlen", kActDtypes, kWriterVarlen, writer_name,
                              [](Run& run, const WriterShape& w) { run_writer_varlen(run, w, PagedLayout::ferrum); });
  register_table<WriterShape>("split_qkv_norm_rope_into_paged_cache_varlen_vllm", kActDtypes, kWriterVarlen, writer_name,
                              [](Run& run, const WriterShape& w) { run_writer_varlen(run, w, PagedLayout::vllm); });
  register_table<WriterShape>("split_qkv_norm_rope_into_paged_cache", kActDtypes, kWriterSingle, writer_name,
                              [](Run& run, const WriterShape& w) { run_writer_single(run, w, PagedLayout::ferrum); });
  register_table<WriterShape>("split_qkv_norm_rope_into_paged_cache_vllm", kActDtypes, kWriterSingle, writer_name,
                              [](Run& run, const WriterShape& w) { run_writer_single(run, w, PagedLayout::vllm); });
  // Odd head_dim with mode 0 (copy) in the ferrum layout.
  register_table<WriterShape>("split_qkv_norm_rope_into_paged_cache_varlen", kActDtypes,
                              {{3, 1, 5, 3, 0, {4, 1}, {2, 3}, 1}}, writer_name,
                              [](Run& run, const WriterShape& w) { run_writer_varlen(run, w, PagedLayout::ferrum); });
  return true;
}();

}  // namespace

// ------------------------------------------------------------------ out-of-range and error rules

FERRUM_CONFORMANCE_CASE("split_qkv_norm_rope_into_paged_cache_varlen", "out-of-range block id skips the row",
                        kActDtypes) {
  const uint64_t qh = 2, kvh = 1, D = 8, bs = 4, N = 3, mbps = 2;
  const vec qkv = run.random(3 * (qh + 2 * kvh) * D);
  const vec pool = run.random(N * bs * kvh * D);
  Buffer bqkv = run.upload(qkv), kp = run.upload(pool), vp = run.upload(pool);
  // Sequence 0: positions 3..5 -> logical blocks 0 (phys 1) and 1 (phys 99: out of range).
  Buffer cu = run.upload_u32({0, 3}), offs = run.upload_u32({3}), bt = run.upload_u32({1, 99});
  Buffer q_out = run.output(3 * qh * D);
  run.ctx.split_qkv_norm_rope_into_paged_cache_varlen({.qkv = bqkv, .q_norm_w = nullptr, .k_norm_w = nullptr, .cos = nullptr, .sin = nullptr, .q_out = q_out, .cache_k = kp, .cache_v = vp, .cu_seqlens_q = cu, .pos_offsets = offs,
                                                      .block_tables = bt, .num_seqs = 1, .m_total = 3, .q_heads = qh, .kv_heads = kvh, .head_dim = D, .eps = 0.0f, .qk_mode = ferrum::QkMode::copy, .block_size = bs, .max_blocks_per_seq = mbps});
  vec rq, rk = pool, rv = pool;
  fr::split_qkv_norm_rope_into_paged_cache_varlen(qkv, {}, {}, {}, {}, rq, rk, rv, {0, 3}, {3}, {1, 99}, 1, 3, qh, kvh, D,
                                                  0.0f, 0, bs, mbps);
  run.check("q_out", q_out, rq, qh * D, 'E');
  run.check("cache_k", kp, rk, D, 'E');
  run.check("cache_v", vp, rv, D, 'E');
}

FERRUM_CONFORMANCE_CASE("paged_varlen_attention", "argument errors write nothing", kActDtypes) {
  const uint64_t nh = 4, nkv = 2, D = 8, bs = 4, N = 2;
  Buffer q = run.upload(run.random(2 * nh * D)), kp = run.upload(run.random(N * bs * nkv * D)),
         vp = run.upload(run.random(N * bs * nkv * D));
  Buffer cu = run.upload_u32({0, 2}), offs = run.upload_u32({0}), bt = run.upload_u32({0, 1});
  Buffer out = run.output(2 * nh * D);
  auto call = [&](uint64_t nh_, uint64_t nkv_, uint64_t D_, uint64_t bs_, float scale) {
    run.ctx.paged_varlen_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .cu_seqlens_q = cu, .pos_offsets = offs, .block_tables = bt, .num_seqs = 1, .total_q_tokens = 2, .max_kv_len = 8, .num_heads = nh_, .num_kv_heads = nkv_, .head_dim = D_, .block_size = bs_, .max_num_blocks_per_seq = 2, .scale = scale, .sliding_window = 0});
  };
  run.expect_error("block_size 0", kInvalid, [&] { call(nh, nkv, D, 0, 0.0f); }, "block_size");
  run.expect_error("gqa 4 / 3", kInvalid, [&] { call(nh, 3, D, bs, 0.0f); });
  run.expect_error("non-finite scale", kInvalid, [&] { call(nh, nkv, D, bs, std::numeric_limits<float>::infinity()); },
                   "scale");
  run.expect_error("pool smaller than one block", kInvalid, [&] { call(nh, nkv, D, 64, 0.0f); }, "pool");
  Buffer vp_big = run.upload(run.random((N + 1) * bs * nkv * D));
  run.expect_error("K and V pools of different sizes", kInvalid, [&] {
    run.ctx.paged_varlen_attention({.q = q, .k_pool = kp, .v_pool = vp_big, .out = out, .cu_seqlens_q = cu, .pos_offsets = offs, .block_tables = bt, .num_seqs = 1, .total_q_tokens = 2, .max_kv_len = 8, .num_heads = nh, .num_kv_heads = nkv, .head_dim = D, .block_size = bs, .max_num_blocks_per_seq = 2, .scale = 0.0f, .sliding_window = 0});
  }, "same size");
  run.check_untouched("out", out, 0, out.count());
}

FERRUM_CONFORMANCE_CASE("paged_varlen_attention_vllm", "head_dim not a multiple of x is invalid", kActDtypes) {
  const uint64_t nh = 2, nkv = 1, D = 6, bs = 4;
  Buffer q = run.upload(run.random(nh * D)), kp = run.upload(run.random(bs * nkv * D)),
         vp = run.upload(run.random(bs * nkv * D));
  Buffer cu = run.upload_u32({0, 1}), offs = run.upload_u32({0}), bt = run.upload_u32({0});
  Buffer out = run.output(nh * D);
  run.expect_error("D % x", kInvalid, [&] {
    run.ctx.paged_varlen_attention_vllm({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .cu_seqlens_q = cu, .pos_offsets = offs, .block_tables = bt, .num_seqs = 1, .total_q_tokens = 1, .max_kv_len = 1, .num_heads = nh, .num_kv_heads = nkv, .head_dim = D, .block_size = bs, .max_num_blocks_per_seq = 1, .scale = 0.0f, .sliding_window = 0});
  }, "head_dim");
  run.check_untouched("out", out, 0, out.count());
}

FERRUM_CONFORMANCE_CASE("split_qkv_norm_rope_into_paged_cache", "capacity overflow and misaligned offsets are invalid",
                        kActDtypes) {
  const uint64_t qh = 2, kvh = 1, D = 8, bs = 4, mbps = 2, T = 3;
  const vec pool = run.random(2 * bs * kvh * D);
  Buffer qkv = run.upload(run.random(T * (qh + 2 * kvh) * D + 8)), kp = run.upload(pool), vp = run.upload(pool);
  Buffer bt = run.upload_u32({0, 1});
  Buffer q_out = run.output(T * qh * D + 8);
  run.expect_error("cache_len + tokens > capacity", kInvalid, [&] {
    run.ctx.split_qkv_norm_rope_into_paged_cache({.qkv = &qkv, .qkv_byte_offset = 0, .q_norm_w = nullptr, .k_norm_w = nullptr, .cos = nullptr, .sin = nullptr, .q_out = &q_out, .q_out_byte_offset = 0, .cache_k = kp, .cache_v = vp, .block_table = bt, .tokens = T,
                                                 .q_heads = qh, .kv_heads = kvh, .head_dim = D, .pos_offset = 6, .eps = 0.0f, .qk_mode = ferrum::QkMode::copy, .cache_len = 6, .block_size = bs, .max_num_blocks_per_seq = mbps});
  }, "cache_len");
  run.expect_error("misaligned qkv_byte_offset", kInvalid, [&] {
    run.ctx.split_qkv_norm_rope_into_paged_cache({.qkv = &qkv, .qkv_byte_offset = 1, .q_norm_w = nullptr, .k_norm_w = nullptr, .cos = nullptr, .sin = nullptr, .q_out = &q_out, .q_out_byte_offset = 0, .cache_k = kp, .cache_v = vp, .block_table = bt, .tokens = T,
                                                 .q_heads = qh, .kv_heads = kvh, .head_dim = D, .pos_offset = 0, .eps = 0.0f, .qk_mode = ferrum::QkMode::copy, .cache_len = 0, .block_size = bs, .max_num_blocks_per_seq = mbps});
  }, "qkv_byte_offset");
  run.check_untouched("q_out", q_out, 0, q_out.count());
  run.check("cache_k", kp, pool, D, 'E');
}

FERRUM_CONFORMANCE_CASE("paged_varlen_attention_fa2_ffi", "queries before the sequence start: zero rows, lse -inf",
                        kActDtypes) {
  // seq 0: q_len 3 but seq_len 1 -> positions -2, -1, 0; seq 1: q_len 2, seq_len 4 -> 2, 3; row 5 padded.
  const uint64_t nh = 4, nkv = 2, D = 16, bs = 4, N = 2, M = 6, mbps = 1;
  const vec q = run.random(M * nh * D), k = run.random(N * bs * nkv * D), v = run.random(N * bs * nkv * D);
  const std::vector<int64_t> cu = {0, 3, 5}, lens = {1, 4}, bt = {1, 0};
  Buffer bq = run.upload(q), kp = run.upload(k), vp = run.upload(v);
  Buffer bcu = run.upload_u32({0, 3, 5}), bl = run.upload_u32({1, 4}), bbt = run.upload_u32({1, 0});
  Buffer out = run.output(M * nh * D), lse = run.output(nh * M, Dtype::f32);
  run.ctx.paged_varlen_attention_fa2_ffi({.q = bq, .k_pool = kp, .v_pool = vp, .out = out, .lse = lse, .cu_seqlens_q = bcu, .seq_lens = bl, .block_tables = bbt, .num_seqs = 2, .total_q_tokens = M, .max_q_len = 3, .max_kv_len = 4, .num_heads = nh, .num_kv_heads = nkv, .head_dim = D, .block_size = bs, .max_num_blocks_per_seq = mbps, .scale = 0.0f, .sliding_window = 0});
  vec ref(M * nh * D, 0.0), lref;
  fr::paged_attention_varlen(q, k, v, ref, &lref, cu, lens, bt, 2, M, nh, nkv, D, bs, mbps, 0.0f, 0, true);
  const vec got = run.download(out, 5 * nh * D);
  run.check_values("out (zero rows)", slice(got, 0, 2 * nh * D), slice(ref, 0, 2 * nh * D), nh * D, run.dtype, 'E');
  run.check_values("out", slice(got, 2 * nh * D, 3 * nh * D), slice(ref, 2 * nh * D, 3 * nh * D), nh * D, run.dtype);
  run.check_untouched("out (padded row)", out, 5 * nh * D, M * nh * D);
  const vec gl = run.download(lse, nh * M);
  const double tol = run.dtype == Dtype::f32 ? 1e-5 : 1e-3;
  for (uint64_t h = 0; h < nh; ++h)
    for (uint64_t g = 0; g < 5; ++g) {
      const double r = lref[h * M + g], o = gl[h * M + g];
      const bool ok = std::isinf(r) ? (std::isinf(o) && o < 0) : std::fabs(o - r) <= tol * std::max(1.0, std::fabs(r));
      if (!ok) run.fail(fmt("lse[%llu, %llu]: expected %.9g, got %.9g", (ull)h, (ull)g, r, o));
    }
  for (uint64_t h = 0; h < nh; ++h)
    if (!std::isnan(gl[h * M + 5])) run.fail(fmt("lse[%llu, 5] (padded row) was written", (ull)h));
}
