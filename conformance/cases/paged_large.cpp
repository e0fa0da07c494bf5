// Conformance cases: the paged-KV family at scale, against the float64 references of
// conformance/ref/ref_paged.hpp. What the small cases of paged.cpp cannot show: one sequence of
// more than 32k tokens (split-KV paths, 64-bit index arithmetic), 256+ sequences in one call,
// lengths that are not multiples of the block size, block tables in random order (a seeded
// shuffle of the whole pool), prefix blocks shared by several sequences (as prefix caching
// does: several table rows name the same physical blocks) and long prefill chunks next to
// decodes in one varlen step.
#include <ferrum/conformance/kit.hpp>

#include "ref/ref_paged.hpp"
#include "src/case_util.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

using namespace ferrum;
using namespace ferrum::conformance;
using namespace ferrum::conformance::util;

namespace {

using fr::PagedLayout;
using idxv = std::vector<int64_t>;
using ull = unsigned long long;

// A batch over one shared pool: sequence s has kv length L[s] (after the step) and q_len[s]
// queries; the first `shared` blocks of every sequence are the same physical blocks (a common
// prefix), every other block is private; the pool's blocks are handed out in a seeded random
// order, and table entries past a sequence's last block point at a valid but unrelated block.
struct Batch {
  uint64_t nh, nkv, D, bs;
  std::vector<uint64_t> L, qlen;
  uint64_t shared = 0;  // shared prefix blocks (each L[s] must exceed shared·bs when > 0)
  uint64_t seed = 1;
  uint64_t window = 0;  // sliding window (0: none)
};

std::string batch_name(const Batch& b) {
  const uint64_t maxL = *std::max_element(b.L.begin(), b.L.end());
  const uint64_t toks = std::accumulate(b.L.begin(), b.L.end(), uint64_t{0});
  std::string r = fmt("nh %llu nkv %llu hd %llu bs %llu, %zu seqs, max L %llu, %llu kv tokens, shared prefix %llu blocks",
                      (ull)b.nh, (ull)b.nkv, (ull)b.D, (ull)b.bs, b.L.size(), (ull)maxL, (ull)toks, (ull)b.shared);
  if (b.window) r += fmt(", window %llu", (ull)b.window);
  return r;
}

struct Pools {
  uint64_t S = 0, M = 0, mbps = 0, num_blocks = 0;
  idxv cu, pos, seq_lens, block_tables;
  vec q, k_pool, v_pool;
};

Pools make_pools(Run& run, const Batch& b) {
  Pools p;
  p.S = b.L.size();
  std::vector<uint64_t> nblk(p.S);
  uint64_t priv = 0;
  p.cu.push_back(0);
  for (uint64_t s = 0; s < p.S; ++s) {
    nblk[s] = (b.L[s] + b.bs - 1) / b.bs;
    p.mbps = std::max(p.mbps, nblk[s]);
    priv += nblk[s] - std::min(nblk[s], b.shared);
    p.cu.push_back(p.cu.back() + static_cast<int64_t>(b.qlen[s]));
    p.seq_lens.push_back(static_cast<int64_t>(b.L[s]));
    p.pos.push_back(static_cast<int64_t>(b.L[s]) - static_cast<int64_t>(b.qlen[s]));  // < 0: FA2 rows before the start
  }
  p.M = static_cast<uint64_t>(p.cu.back());
  p.num_blocks = b.shared + priv + 5;  // a few blocks nobody uses
  std::vector<int64_t> order(p.num_blocks);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(b.seed);
  std::shuffle(order.begin(), order.end(), rng);
  uint64_t next = b.shared;  // order[0 .. shared) is the shared prefix
  p.block_tables.assign(p.S * p.mbps, order.back());
  for (uint64_t s = 0; s < p.S; ++s)
    for (uint64_t lb = 0; lb < nblk[s]; ++lb)
      p.block_tables[s * p.mbps + lb] = lb < b.shared ? order[lb] : order[next++];
  const uint64_t pool_elems = p.num_blocks * b.bs * b.nkv * b.D;
  p.k_pool = run.random(pool_elems);
  p.v_pool = run.random(pool_elems);
  p.q = run.random(p.M * b.nh * b.D);
  return p;
}

Buffer upload_idx(Run& run, const idxv& v) { return run.upload_u32(std::vector<uint32_t>(v.begin(), v.end())); }

enum class Op { decode, batched, varlen, fa2, v2 };

void run_batch(Run& run, const Batch& b, Op op) {
  const Pools p = make_pools(run, b);
  const PagedLayout layout = op == Op::v2 ? PagedLayout::vllm : PagedLayout::ferrum;
  const uint64_t x = layout == PagedLayout::vllm ? fr::paged::vllm_x(raw(run.dtype)) : 0;
  const uint64_t rl = b.nh * b.D, maxkv = *std::max_element(b.L.begin(), b.L.end());
  // The vLLM ops read the same random pool values in their own layout: the reference gathers
  // with the same layout, so the pools need no conversion.
  Buffer q = run.upload(p.q), kp = run.upload(p.k_pool), vp = run.upload(p.v_pool);
  Buffer bt = upload_idx(run, p.block_tables), lens = upload_idx(run, p.seq_lens);
  Buffer out = run.output(p.M * rl);
  vec ref(p.M * rl, 0.0), lse_ref;
  switch (op) {
    case Op::decode:
    case Op::batched:
    case Op::v2: {
      if (op == Op::decode)
        run.ctx.paged_decode_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .context_lens = lens, .num_seqs = p.S, .num_heads = b.nh, .num_kv_heads = b.nkv, .head_dim = b.D, .block_size = b.bs, .max_num_blocks_per_seq = p.mbps, .q_len = b.qlen[0], .scale = 0.0f, .sliding_window = b.window});
      else if (op == Op::batched)
        run.ctx.paged_batched_decode_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .valid_kv_lens = lens, .num_seqs = p.S, .max_kv_len = maxkv, .num_heads = b.nh, .num_kv_heads = b.nkv, .head_dim = b.D, .block_size = b.bs, .max_num_blocks_per_seq = p.mbps, .scale = 0.0f,
                                               .sliding_window = b.window});
      else
        run.ctx.paged_decode_attention_v2({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .context_lens = lens, .num_seqs = p.S, .num_heads = b.nh, .num_kv_heads = b.nkv, .head_dim = b.D, .block_size = b.bs, .max_num_blocks_per_seq = p.mbps, .max_seq_len = maxkv, .scale = 0.0f, .sliding_window = b.window});
      fr::paged_attention_uniform(p.q, p.k_pool, p.v_pool, ref, p.block_tables, p.seq_lens, p.S, b.nh, b.nkv, b.D, b.bs,
                                  p.mbps, b.qlen[0], 0.0f, b.window, layout, x);
      run.check("out", out, ref, rl);
      return;
    }
    case Op::varlen:
    case Op::fa2: {
      Buffer cu = upload_idx(run, p.cu);
      const bool fa2 = op == Op::fa2;
      Buffer offs = upload_idx(run, fa2 ? p.seq_lens : p.pos);
      Buffer lse = run.output(b.nh * p.M, Dtype::f32);
      const uint64_t maxq = *std::max_element(b.qlen.begin(), b.qlen.end());
      if (fa2)
        run.ctx.paged_varlen_attention_fa2_ffi({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .lse = lse, .cu_seqlens_q = cu, .seq_lens = offs, .block_tables = bt, .num_seqs = p.S, .total_q_tokens = p.M, .max_q_len = maxq, .max_kv_len = maxkv, .num_heads = b.nh, .num_kv_heads = b.nkv, .head_dim = b.D,
                                               .block_size = b.bs, .max_num_blocks_per_seq = p.mbps, .scale = 0.0f, .sliding_window = b.window});
      else
        run.ctx.paged_varlen_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .cu_seqlens_q = cu, .pos_offsets = offs, .block_tables = bt, .num_seqs = p.S, .total_q_tokens = p.M, .max_kv_len = maxkv, .num_heads = b.nh, .num_kv_heads = b.nkv, .head_dim = b.D, .block_size = b.bs, .max_num_blocks_per_seq = p.mbps,
                                       .scale = 0.0f, .sliding_window = b.window});
      fr::paged_attention_varlen(p.q, p.k_pool, p.v_pool, ref, fa2 ? &lse_ref : nullptr, p.cu, fa2 ? p.seq_lens : p.pos,
                                 p.block_tables, p.S, p.M, b.nh, b.nkv, b.D, b.bs, p.mbps, 0.0f, b.window, fa2, layout, x);
      run.check("out", out, ref, rl);
      if (fa2) {
        const vec got = run.download(lse, b.nh * p.M);
        const double tol = run.dtype == Dtype::f32 ? 1e-5 : 1e-3;
        for (uint64_t i = 0; i < got.size(); ++i) {
          const bool ok = std::isinf(lse_ref[i]) ? got[i] == lse_ref[i]
                                                  : std::fabs(got[i] - lse_ref[i]) <= tol * std::max(1.0, std::fabs(lse_ref[i]));
          if (!ok) run.fail(fmt("lse[%llu]: expected %.9g, got %.9g (class L)", (ull)i, lse_ref[i], got[i]));
        }
      }
      return;
    }
  }
}

// Lengths of `n` sequences drawn from [lo, hi], never a multiple of bs.
std::vector<uint64_t> ragged(uint64_t n, uint64_t lo, uint64_t hi, uint64_t bs, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint64_t> dist(lo, hi);
  std::vector<uint64_t> L(n);
  for (auto& l : L) {
    l = dist(rng);
    if (l % bs == 0) ++l;
  }
  return L;
}

const std::vector<Batch> kLongDecode = {
    // One sequence of 32 771 keys (2 048 blocks of 16 + 3), a query per step; GQA 4.
    {4, 1, 64, 16, {32771}, {1}, 0, 11},
    // The same length with hd 128 and 4 queries per sequence (speculative step), next to a short one.
    {8, 2, 128, 16, {32800, 45}, {4, 4}, 0, 12},
    // A 130-query step (prefill tiles) at the end of a 5 000-key sequence and of a 131-key one.
    {8, 1, 64, 16, {5000, 131}, {130, 130}, 0, 14},
    // Sliding windows whose first key falls inside a block (a 16-key run of keys then spans two
    // blocks): 32 771 and 5 001 keys under a 2 333-key window; block size 32 under a 1 000-key one.
    {8, 2, 128, 16, {32771, 5001}, {1, 1}, 0, 15, 2333},
    {4, 2, 64, 32, {9001, 1000}, {1, 1}, 0, 16, 1000},
};
const std::vector<Batch> kManySeqs = {
    // 256 sequences of 17..700 keys, 8 shared prefix blocks (128 tokens), GQA 4.
    {8, 2, 128, 16, ragged(256, 150, 700, 16, 21), std::vector<uint64_t>(256, 1), 8, 22},
    // 300 sequences, hd 64, block size 32, no sharing.
    {4, 4, 64, 32, ragged(300, 1, 400, 32, 23), std::vector<uint64_t>(300, 1), 0, 24},
};

std::vector<Batch> varlen_batches() {
  // 260 sequences: most decode one token, every 16th prefills a chunk of 1..40 tokens; two
  // shared prefix blocks; plus one 33k-token sequence with a 9-token chunk at its end.
  std::vector<Batch> r;
  Batch b{8, 2, 64, 16, ragged(260, 40, 500, 16, 31), {}, 2, 32};
  std::mt19937_64 rng(33);
  for (uint64_t s = 0; s < b.L.size(); ++s) b.qlen.push_back(s % 16 == 0 ? 1 + rng() % 40 : 1);
  r.push_back(b);
  r.push_back({4, 2, 128, 16, {33001, 70}, {9, 17}, 0, 34});
  // Prefill chunks (tiles of 64 queries, partial last tiles) next to decodes and short chunks,
  // one chunk longer than its cached prefix.
  r.push_back({8, 2, 128, 16, {700, 301, 1500, 9, 77}, {200, 250, 513, 1, 5}, 1, 35});
  // Decode rows under a window whose first key falls inside a block.
  r.push_back({8, 2, 128, 16, {20003, 4001}, {1, 1}, 0, 38, 1111});
  return r;
}

const bool kLargeCases = [] {
  register_table<Batch>("paged_decode_attention", kActDtypes, kLongDecode, batch_name,
                        [](Run& run, const Batch& b) { run_batch(run, b, Op::decode); });
  register_table<Batch>("paged_batched_decode_attention", kActDtypes, kManySeqs, batch_name,
                        [](Run& run, const Batch& b) { run_batch(run, b, Op::batched); });
  register_table<Batch>("paged_decode_attention_v2", kActDtypes, {kManySeqs[0], {4, 1, 64, 16, {32771}, {1}, 0, 13}},
                        batch_name, [](Run& run, const Batch& b) { run_batch(run, b, Op::v2); });
  const std::vector<Batch> vb = varlen_batches();
  register_table<Batch>("paged_varlen_attention", kActDtypes, vb, batch_name,
                        [](Run& run, const Batch& b) { run_batch(run, b, Op::varlen); });
  register_table<Batch>("paged_varlen_attention_fa2_ffi", kActDtypes, vb, batch_name,
                        [](Run& run, const Batch& b) { run_batch(run, b, Op::fa2); });
  // FA2 only: chunks longer than their sequence (queries before the start: zero rows, LSE −∞),
  // on the prefill path (20 queries) and the decode path (3 queries over 2 keys).
  register_table<Batch>("paged_varlen_attention_fa2_ffi", kActDtypes, {{8, 2, 64, 16, {5, 40, 2}, {20, 12, 3}, 0, 36}},
                        batch_name, [](Run& run, const Batch& b) { run_batch(run, b, Op::fa2); });
  return true;
}();

}  // namespace
