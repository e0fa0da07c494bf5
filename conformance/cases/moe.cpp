// Conformance cases: MoE ops (docs/spec.md §13) against the float64 references of conformance/ref/ref_moe.hpp.
// Routing: class R (weights F in F32, ids E on rows whose min(K + 1, E) largest probabilities are
// separated by more than 1e-5 relative, plus an exact-tie case for the lower-id rule). Alignment:
// class E. moe_gemm, fused_moe, moe_combine, weighted_sum_batched: class F of the activation dtype,
// with rows of unrouted pairs / tokens required to be exactly +0.0. GPTQ expert stacks come from
// ref_gptq.hpp's packer and are dequantised by the reference (§12.1).
#include <ferrum/conformance/kit.hpp>

#include "src/case_util.hpp"

#include "ref/ref_gptq.hpp"
#include "ref/ref_moe.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

using namespace ferrum;
using namespace ferrum::conformance;
using namespace ferrum::conformance::util;

namespace {

constexpr ErrorCode kInvalid = ErrorCode::invalid_argument;
using ivec = std::vector<int64_t>;
using ull = unsigned long long;

Buffer upload_idx(Run& run, const ivec& v) { return run.upload_i32(std::vector<int32_t>(v.begin(), v.end())); }
vec as_vec(const ivec& v) { return vec(v.begin(), v.end()); }
ivec slice_i(const ivec& v, uint64_t n) { return ivec(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n)); }

// ------------------------------------------------------------------------------------ routing
// Whether a row's min(K + 1, E) largest softmax probabilities differ pairwise by > 1e-5 relative.
bool row_separated(const double* logits, uint64_t E, uint64_t K) {
  vec p(logits, logits + E);
  const double mx = *std::max_element(p.begin(), p.end());
  for (double& v : p) v = std::exp(v - mx);
  std::sort(p.begin(), p.end(), std::greater<>());
  const uint64_t m = std::min(K + 1, E);
  for (uint64_t i = 0; i + 1 < m; ++i)
    if (p[i] - p[i + 1] <= 1e-5 * p[i]) return false;
  return true;
}

// Logits whose top K + 1 experts per row are well separated (logits 3, 2.875, 2.75, ... on random
// distinct experts; every other expert in [-3, 0]), exactly representable in every act dtype.
vec separated_logits(Run& run, uint64_t T, uint64_t E, uint64_t K) {
  vec l = run.random(T * E, -3.0, 0.0);
  const std::vector<uint32_t> r = run.random_ids(T * E, 0xFFFFFFFFu);
  const uint64_t m = std::min(K + 1, E);
  for (uint64_t t = 0; t < T; ++t) {
    std::vector<uint64_t> perm(E);
    std::iota(perm.begin(), perm.end(), uint64_t{0});
    for (uint64_t j = 0; j < m; ++j) std::swap(perm[j], perm[j + r[t * E + j] % (E - j)]);
    for (uint64_t j = 0; j < m; ++j) l[t * E + perm[j]] = 3.0 - 0.125 * double(j);  // >= 1 for K + 1 <= 17
  }
  return l;
}

// Runs route_topk_softmax on `logits` and checks class R against the reference.
void check_route(Run& run, const vec& logits, uint64_t T, uint64_t E, uint64_t K, bool norm) {
  Buffer bl = run.upload(logits);
  Buffer ids = run.output(T * K, Dtype::i32), w = run.output(T * K, Dtype::f32);
  run.ctx.route_topk_softmax({.logits = bl, .out_ids = ids, .out_weights = w, .num_tokens = T, .num_experts = E, .top_k = K, .norm_topk_prob = norm});
  ivec ref_ids;
  vec ref_w;
  fr::route_topk_softmax(logits, ref_ids, ref_w, T, E, K, norm ? 1 : 0);
  run.check("out_weights", w, ref_w, K);
  const vec got = run.download(ids, T * K);
  vec got_sep, ref_sep;
  uint64_t separated = 0;
  for (uint64_t t = 0; t < T; ++t) {
    for (uint64_t k = 0; k < K; ++k) {  // always: distinct ids in [0, E)
      const double id = got[t * K + k];
      if (!(id >= 0 && id < double(E))) run.fail(fmt("out_ids[%llu, %llu] = %g is outside [0, E)", (ull)t, (ull)k, id));
      for (uint64_t j = 0; j < k; ++j)
        if (got[t * K + j] == id) run.fail(fmt("out_ids row %llu repeats expert %g", (ull)t, id));
    }
    if (!row_separated(logits.data() + t * E, E, K)) continue;
    ++separated;
    for (uint64_t k = 0; k < K; ++k) {
      got_sep.push_back(got[t * K + k]);
      ref_sep.push_back(double(ref_ids[t * K + k]));
    }
  }
  if (T > 0 && separated == 0) run.fail("case bug: no row of the input is free of near-ties");
  run.check_values("out_ids (rows without near-ties)", got_sep, ref_sep, K, Dtype::i32, 'E');
  run.check_untouched("out_ids guard", ids, T * K, ids.count());
}

struct RouteShape {
  uint64_t T, E, K;
  bool norm, separated;
};

const bool kRoute = register_table<RouteShape>(
    "route_topk_softmax", kActDtypes,
    {{5, 4, 1, false, false},   {5, 4, 2, true, false},     {33, 8, 2, false, false}, {33, 8, 2, true, true},
     {17, 64, 8, true, true},   {17, 64, 8, false, true},   {6, 512, 8, true, true},  {6, 512, 8, false, true},
     {3, 512, 1, false, true},  {4, 4, 4, true, false},     {2, 64, 16, true, true},  {9, 8, 8, false, true}},
    [](const RouteShape& s) {
      return fmt("T %llu, E %llu, top_k %llu, norm %d, %s logits", (ull)s.T, (ull)s.E, (ull)s.K, int(s.norm),
                 s.separated ? "separated" : "random");
    },
    [](Run& run, const RouteShape& s) {
      const vec logits = s.separated ? separated_logits(run, s.T, s.E, s.K) : run.random(s.T * s.E, -2.0, 2.0);
      check_route(run, logits, s.T, s.E, s.K, s.norm);
    });

// ---------------------------------------------------------------------------------- routing data
// K distinct experts per token (as a router gives), a `masked_pct` share of them replaced by -1.
ivec random_topk_ids(Run& run, uint64_t T, uint64_t K, uint64_t E, uint32_t masked_pct) {
  const std::vector<uint32_t> r = run.random_ids(T * K, 0xFFFFFFFFu), m = run.random_ids(T * K, 100);
  ivec ids(T * K);
  for (uint64_t t = 0; t < T; ++t) {
    std::vector<uint64_t> perm(E);
    std::iota(perm.begin(), perm.end(), uint64_t{0});
    for (uint64_t j = 0; j < K; ++j) {
      std::swap(perm[j], perm[j + r[t * K + j] % (E - j)]);
      ids[t * K + j] = m[t * K + j] < masked_pct ? -1 : int64_t(perm[j]);
    }
  }
  return ids;
}

// The reference alignment of `topk_ids`, uploaded (buffers of exactly cap / cap_blocks / 1 elements).
struct Routing {
  ivec sorted, eids, nptp;
  Buffer b_sorted, b_eids, b_nptp;
};
Routing make_routing(Run& run, const ivec& topk_ids, uint64_t num_pairs, uint64_t E, uint64_t bs) {
  Routing r;
  fr::moe_align_block_size(topk_ids, r.sorted, r.eids, r.nptp, num_pairs, E, bs);
  r.b_sorted = upload_idx(run, r.sorted);
  r.b_eids = upload_idx(run, r.eids);
  r.b_nptp = upload_idx(run, r.nptp);
  return r;
}

// ------------------------------------------------------------------------------- moe_align_block_size
struct AlignShape {
  uint64_t T, K, E, bs;
  uint32_t masked_pct;
  bool out_of_range;  // also plant ids >= E
};

void run_align(Run& run, const ivec& ids, uint64_t num_pairs, uint64_t E, uint64_t bs) {
  const uint64_t cap = fr::moe_cap(num_pairs, E, bs), capb = fr::moe_cap_blocks(num_pairs, E, bs);
  Buffer bids = upload_idx(run, ids);
  Buffer sorted = run.output(cap, Dtype::i32), eids = run.output(capb, Dtype::i32), nptp = run.output(1, Dtype::i32);
  run.ctx.moe_align_block_size({.topk_ids = bids, .sorted_token_ids = sorted, .expert_ids = eids, .num_tokens_post_padded = nptp, .num_pairs = num_pairs, .num_experts = E, .block_size = bs});
  ivec rs, re, rn;
  fr::moe_align_block_size(ids, rs, re, rn, num_pairs, E, bs);
  run.check("sorted_token_ids", sorted, as_vec(rs), bs, 'E');
  run.check("expert_ids", eids, as_vec(re), 0, 'E');
  run.check("num_tokens_post_padded", nptp, as_vec(rn), 0, 'E');
}

const bool kAlign = register_table<AlignShape>(
    "moe_align_block_size", kF32Only,
    {{1, 1, 4, 16, 0, false},   {7, 2, 4, 16, 0, false},   {33, 2, 8, 32, 10, false}, {64, 8, 64, 64, 5, true},
     {200, 8, 64, 16, 0, false}, {37, 8, 512, 16, 0, false}, {5, 8, 512, 64, 20, true}, {300, 4, 8, 64, 0, false},
     {3, 2, 8, 1, 0, false},    {9, 3, 5, 7, 30, true},    {16, 16, 16, 32, 0, false}},
    [](const AlignShape& s) {
      return fmt("T %llu, top_k %llu, E %llu, block %llu, %u%% masked%s", (ull)s.T, (ull)s.K, (ull)s.E, (ull)s.bs,
                 s.masked_pct, s.out_of_range ? ", ids >= E" : "");
    },
    [](Run& run, const AlignShape& s) {
      ivec ids = random_topk_ids(run, s.T, s.K, s.E, s.masked_pct);
      if (s.out_of_range)
        for (uint64_t p = 0; p < ids.size(); p += 7) ids[p] = int64_t(s.E + p % 3);
      run_align(run, ids, s.T * s.K, s.E, s.bs);
    });

// ------------------------------------------------------------------------------------ GPTQ stacks
struct GptqStack {
  std::vector<ft::GptqTensors> t;
  QWeight w;
  vec dense;  // [E, n, k]: W_e = the transposed dequantised matrix
};

GptqStack make_gptq_stack(Run& run, uint64_t E, uint64_t k, uint64_t n, uint64_t g, bool asym, bool act_order,
                          Dtype scales_dtype, uint64_t salt) {
  GptqStack s;
  std::vector<const int32_t*> q, z, gi;
  std::vector<const void*> sc;
  std::vector<vec> mats;
  for (uint64_t e = 0; e < E; ++e)
    s.t.push_back(ft::random_gptq(k, n, g, asym, act_order, raw(scales_dtype), run.seed() * 131 + salt * 977 + e));
  for (const auto& t : s.t) {
    q.push_back(t.qweight.data());
    sc.push_back(t.scales_bytes.data());
    z.push_back(t.qzeros_ptr());
    gi.push_back(t.g_idx_ptr());
    mats.push_back(fr::gptq_dequantize(t, raw(run.dtype)));
  }
  s.w = run.ctx.load_gptq_stacked({.num_experts = E, .qweights = q.data(), .scales = sc.data(), .qzeros = asym ? z.data() : nullptr, .g_idx = act_order ? gi.data() : nullptr,
                                  .bits = 4, .group_size = g, .k = k, .n_per_expert = n, .scales_dtype = scales_dtype, .act_dtype = run.dtype});
  s.dense = fr::gptq_stack_as_dense(mats, k, n);
  return s;
}

// ------------------------------------------------------------------------------------------ moe_gemm
struct GemmShape {
  uint64_t T, K, E, n, k, bs;
  uint32_t masked_pct;
};

void run_moe_gemm_dense(Run& run, const GemmShape& s, uint64_t num_pairs) {
  const ivec ids = random_topk_ids(run, s.T, s.K, s.E, s.masked_pct);
  Routing r = make_routing(run, ids, num_pairs, s.E, s.bs);
  const vec x = run.random(s.T * s.k), w = run.random(s.E * s.n * s.k);
  Buffer bx = run.upload(x), bw = run.upload(w), out = run.output(num_pairs * s.n);
  run.ctx.moe_gemm({.x = bx, .sorted_token_ids = r.b_sorted, .expert_ids = r.b_eids, .num_tokens_post_padded = r.b_nptp, .w_dense = &bw, .w_quant = nullptr, .out = out, .num_tokens = s.T, .num_pairs = num_pairs, .top_k = s.K, .num_experts = s.E, .n = s.n, .k = s.k, .block_size = s.bs});
  vec ref;
  fr::moe_gemm(x, r.sorted, r.eids, r.nptp, w, ref, s.T, num_pairs, s.K, s.E, s.n, s.k, s.bs);
  run.check("out", out, ref, s.n);
}

const bool kGemmDense = register_table<GemmShape>(
    "moe_gemm", kActDtypes,
    {{1, 1, 4, 16, 32, 16, 0},    {5, 2, 4, 24, 40, 16, 0},    {33, 2, 8, 64, 48, 32, 10},
     {17, 8, 64, 32, 64, 64, 0},  {64, 8, 64, 40, 96, 16, 5},  {6, 8, 512, 16, 32, 16, 0},
     {3, 1, 8, 7, 13, 16, 30},    {40, 4, 8, 128, 1, 32, 0},
     // CUDA tensor-core path: odd n with k % 8 == 0 (scalar stores); several 64-row blocks per
     // expert, runs starting on odd blocks (two-block CTAs), a k tail of 8
     {5, 2, 4, 23, 40, 16, 0},    {160, 4, 4, 40, 72, 64, 10}},
    [](const GemmShape& s) {
      return fmt("dense, T %llu, top_k %llu, E %llu, n %llu, k %llu, block %llu, %u%% masked", (ull)s.T, (ull)s.K,
                 (ull)s.E, (ull)s.n, (ull)s.k, (ull)s.bs, s.masked_pct);
    },
    [](Run& run, const GemmShape& s) { run_moe_gemm_dense(run, s, s.T * s.K); });

struct GptqGemmShape {
  uint64_t T, K, E, n, k, g, bs;
  bool asym, act_order;
};

const bool kGemmGptq = register_table<GptqGemmShape>(
    "moe_gemm", kActDtypes,
    {{5, 2, 4, 64, 128, 32, 16, false, false}, {9, 2, 8, 32, 128, 64, 32, true, false},
     {17, 4, 8, 48, 256, 128, 64, true, true}, {3, 1, 4, 16, 64, 0, 16, false, false},
     {6, 8, 64, 16, 64, 32, 16, true, false}},
    [](const GptqGemmShape& s) {
      return fmt("gptq, T %llu, top_k %llu, E %llu, n %llu, k %llu, group %llu, block %llu%s%s", (ull)s.T, (ull)s.K,
                 (ull)s.E, (ull)s.n, (ull)s.k, (ull)s.g, (ull)s.bs, s.asym ? ", asym" : "",
                 s.act_order ? ", act-order" : "");
    },
    [](Run& run, const GptqGemmShape& s) {
      GptqStack st = make_gptq_stack(run, s.E, s.k, s.n, s.g, s.asym, s.act_order, Dtype::f16, 1);
      const uint64_t P = s.T * s.K;
      const ivec ids = random_topk_ids(run, s.T, s.K, s.E, 10);
      Routing r = make_routing(run, ids, P, s.E, s.bs);
      const vec x = run.random(s.T * s.k);
      Buffer bx = run.upload(x), out = run.output(P * s.n);
      run.ctx.moe_gemm({.x = bx, .sorted_token_ids = r.b_sorted, .expert_ids = r.b_eids, .num_tokens_post_padded = r.b_nptp, .w_dense = nullptr, .w_quant = &st.w, .out = out, .num_tokens = s.T, .num_pairs = P, .top_k = s.K, .num_experts = s.E, .n = s.n, .k = s.k, .block_size = s.bs});
      vec ref;
      fr::moe_gemm(x, r.sorted, r.eids, r.nptp, st.dense, ref, s.T, P, s.K, s.E, s.n, s.k, s.bs);
      run.check("out", out, ref, s.n);
    });

// ----------------------------------------------------------------------------------------- fused_moe
struct FusedShape {
  uint64_t T, hidden, I, E, K, bs;
  uint32_t masked_pct;
};

void run_fused(Run& run, const FusedShape& s, const Buffer* gu_dense, const QWeight* gu_quant, const vec& gu_ref,
               const Buffer* d_dense, const QWeight* d_quant, const vec& d_ref) {
  const ivec ids = random_topk_ids(run, s.T, s.K, s.E, s.masked_pct);
  Routing r = make_routing(run, ids, s.T * s.K, s.E, s.bs);
  const vec x = run.random(s.T * s.hidden), tw = run.random(s.T * s.K, 0.05, 1.0, Dtype::f32);
  Buffer bx = run.upload(x), btw = run.upload(tw, Dtype::f32), out = run.output(s.T * s.hidden);
  run.ctx.fused_moe({.x = bx, .topk_weights = btw, .sorted_token_ids = r.b_sorted, .expert_ids = r.b_eids, .num_tokens_post_padded = r.b_nptp, .w_gate_up_dense = gu_dense, .w_gate_up_quant = gu_quant, .w_down_dense = d_dense, .w_down_quant = d_quant, .out = out, .num_tokens = s.T, .hidden = s.hidden,
                    .intermediate = s.I, .num_experts = s.E, .top_k = s.K, .block_size = s.bs});
  vec ref;
  fr::fused_moe(x, tw, r.sorted, r.eids, r.nptp, gu_ref, d_ref, ref, s.T, s.hidden, s.I, s.E, s.K, s.bs);
  run.check("out", out, ref, s.hidden);
}

void run_fused_dense(Run& run, const FusedShape& s) {
  const vec gu = run.random(s.E * 2 * s.I * s.hidden), d = run.random(s.E * s.hidden * s.I);
  Buffer bgu = run.upload(gu), bd = run.upload(d);
  run_fused(run, s, &bgu, nullptr, gu, &bd, nullptr, d);
}

const bool kFusedDense = register_table<FusedShape>(
    "fused_moe", kActDtypes,
    {{1, 32, 16, 4, 1, 16, 0},  {5, 64, 32, 4, 2, 16, 0},   {33, 48, 24, 8, 2, 32, 10}, {17, 64, 32, 64, 8, 64, 5},
     {6, 32, 16, 512, 8, 16, 0}, {64, 40, 24, 8, 4, 16, 0}, {4, 16, 8, 8, 2, 16, 60},  {3, 32, 16, 4, 2, 16, 100}},
    [](const FusedShape& s) {
      return fmt("dense, T %llu, hidden %llu, I %llu, E %llu, top_k %llu, block %llu, %u%% masked", (ull)s.T,
                 (ull)s.hidden, (ull)s.I, (ull)s.E, (ull)s.K, (ull)s.bs, s.masked_pct);
    },
    run_fused_dense);

struct FusedGptqShape {
  FusedShape s;
  uint64_t g;
  bool asym, act_order, quant_gate_up, quant_down;
};

const bool kFusedGptq = register_table<FusedGptqShape>(
    "fused_moe", kActDtypes,
    {{{5, 128, 64, 4, 2, 16, 0}, 32, false, false, true, true},
     {{9, 64, 32, 8, 2, 32, 10}, 32, true, false, true, true},
     {{7, 128, 64, 8, 4, 16, 0}, 64, true, true, true, true},
     {{6, 64, 32, 8, 2, 16, 0}, 0, false, false, true, false},
     {{6, 64, 32, 8, 2, 16, 0}, 32, true, false, false, true},
     {{4, 64, 32, 64, 8, 64, 5}, 32, false, false, true, true}},
    [](const FusedGptqShape& c) {
      return fmt("gptq %s%s, T %llu, hidden %llu, I %llu, E %llu, top_k %llu, group %llu%s%s",
                 c.quant_gate_up ? "gate_up" : "", c.quant_down ? (c.quant_gate_up ? "+down" : "down") : "",
                 (ull)c.s.T, (ull)c.s.hidden, (ull)c.s.I, (ull)c.s.E, (ull)c.s.K, (ull)c.g, c.asym ? ", asym" : "",
                 c.act_order ? ", act-order" : "");
    },
    [](Run& run, const FusedGptqShape& c) {
      const FusedShape& s = c.s;
      GptqStack gu, d;
      vec gu_ref, d_ref;
      Buffer bgu, bd;
      if (c.quant_gate_up) {  // one [hidden, 2I] stack per expert: gate columns first
        gu = make_gptq_stack(run, s.E, s.hidden, 2 * s.I, c.g, c.asym, c.act_order, Dtype::f16, 2);
        gu_ref = gu.dense;
      } else {
        gu_ref = run.random(s.E * 2 * s.I * s.hidden);
        bgu = run.upload(gu_ref);
      }
      if (c.quant_down) {
        d = make_gptq_stack(run, s.E, s.I, s.hidden, c.g, c.asym, c.act_order, Dtype::bf16, 3);
        d_ref = d.dense;
      } else {
        d_ref = run.random(s.E * s.hidden * s.I);
        bd = run.upload(d_ref);
      }
      run_fused(run, s, c.quant_gate_up ? nullptr : &bgu, c.quant_gate_up ? &gu.w : nullptr, gu_ref,
                c.quant_down ? nullptr : &bd, c.quant_down ? &d.w : nullptr, d_ref);
    });

// --------------------------------------------------------------------------------------- moe_combine
struct CombineShape {
  uint64_t T, hidden, K, packed;
};

const bool kCombine = register_table<CombineShape>(
    "moe_combine", kActDtypes, {{1, 16, 1, 1}, {5, 64, 2, 7}, {33, 40, 8, 100}, {17, 128, 4, 3}, {3, 8, 2, 0}},
    [](const CombineShape& s) {
      return fmt("T %llu, hidden %llu, top_k %llu, num_packed %llu", (ull)s.T, (ull)s.hidden, (ull)s.K, (ull)s.packed);
    },
    [](Run& run, const CombineShape& s) {
      // Rows in [-2, packed + 2): some negative and some past the end (skipped).
      const std::vector<uint32_t> r = run.random_ids(s.T * s.K, uint32_t(s.packed + 4));
      ivec rows(s.T * s.K);
      for (uint64_t i = 0; i < rows.size(); ++i) rows[i] = int64_t(r[i]) - 2;
      const vec packed = s.packed ? run.random(s.packed * s.hidden) : vec{};
      const vec pw = run.random(s.T * s.K, -1.0, 1.0, Dtype::f32);
      Buffer bp = s.packed ? run.upload(packed) : run.output(0, Dtype::invalid, 0);
      Buffer brows = upload_idx(run, rows), bw = run.upload(pw, Dtype::f32), out = run.output(s.T * s.hidden);
      run.ctx.moe_combine({.packed_down = bp, .pairs_by_token = brows, .pair_weights = bw, .out = out, .num_tokens = s.T, .hidden = s.hidden, .top_k = s.K, .num_packed = s.packed});
      vec ref;
      fr::moe_combine(packed, rows, pw, ref, s.T, s.hidden, s.K, s.packed);
      run.check("out", out, ref, s.hidden);
    });

// ------------------------------------------------------------------------------ weighted_sum_batched
struct WsumShape {
  uint64_t T, K, hidden;
};

const bool kWsum = register_table<WsumShape>(
    "weighted_sum_batched", kActDtypes, {{1, 1, 16}, {5, 2, 64}, {33, 8, 40}, {64, 4, 129}, {2, 16, 7}},
    [](const WsumShape& s) { return fmt("T %llu, top_k %llu, hidden %llu", (ull)s.T, (ull)s.K, (ull)s.hidden); },
    [](Run& run, const WsumShape& s) {
      const vec slots = run.random(s.T * s.K * s.hidden), w = run.random(s.T * s.K, -1.0, 1.0, Dtype::f32);
      Buffer bs = run.upload(slots), bw = run.upload(w, Dtype::f32), out = run.output(s.T * s.hidden);
      run.ctx.weighted_sum_batched({.slots = bs, .weights = bw, .out = out, .num_tokens = s.T, .top_k = s.K, .hidden = s.hidden});
      vec ref;
      fr::weighted_sum_batched(slots, w, ref, s.T, s.K, s.hidden);
      run.check("out", out, ref, s.hidden);
    });

}  // namespace

// ====================================================================================== single cases

FERRUM_CONFORMANCE_CASE("route_topk_softmax", "exact ties go to the lower expert id", kActDtypes) {
  const uint64_t E = 6, T = 4;
  // Row 0: 5 at {1, 3}; row 1: all equal; row 2: 2 at {4, 5}, 1 at {0, 2}; row 3: 0.5 at {2, 3, 5}.
  const vec logits = {0, 5, 2, 5, 1, 2,  1, 1, 1, 1, 1, 1,  1, -1, 1, -2, 2, 2,  -1, 0, 0.5, 0.5, -1, 0.5};
  for (uint64_t K : {1, 2, 3, 6}) {
    Buffer bl = run.upload(logits), ids = run.output(T * K, Dtype::i32), w = run.output(T * K, Dtype::f32);
    run.ctx.route_topk_softmax({.logits = bl, .out_ids = ids, .out_weights = w, .num_tokens = T, .num_experts = E, .top_k = K, .norm_topk_prob = true});
    ivec ref_ids;
    vec ref_w;
    fr::route_topk_softmax(logits, ref_ids, ref_w, T, E, K, 1);
    run.check(fmt("out_ids (top_k %llu)", (ull)K), ids, as_vec(ref_ids), K, 'E');
    run.check(fmt("out_weights (top_k %llu)", (ull)K), w, ref_w, K);
  }
}

FERRUM_CONFORMANCE_CASE("route_topk_softmax", "NaN row gives distinct ids in range", kActDtypes) {
  const uint64_t T = 3, E = 8, K = 4;
  vec logits = separated_logits(run, T, E, K);
  logits[1 * E + 5] = std::numeric_limits<double>::quiet_NaN();
  Buffer bl = run.upload(logits), ids = run.output(T * K, Dtype::i32), w = run.output(T * K, Dtype::f32);
  run.ctx.route_topk_softmax({.logits = bl, .out_ids = ids, .out_weights = w, .num_tokens = T, .num_experts = E, .top_k = K, .norm_topk_prob = true});
  const vec got = run.download(ids, T * K);
  for (uint64_t k = 0; k < K; ++k) {
    if (!(got[K + k] >= 0 && got[K + k] < double(E))) run.fail(fmt("NaN row: id %g outside [0, E)", got[K + k]));
    for (uint64_t j = 0; j < k; ++j)
      if (got[K + j] == got[K + k]) run.fail(fmt("NaN row: id %g repeated", got[K + k]));
  }
  // The other rows are unaffected.
  ivec ref_ids;
  vec ref_w;
  fr::route_topk_softmax(logits, ref_ids, ref_w, T, E, K, 1);
  for (uint64_t t : {0, 2}) {
    run.check_values(fmt("out_ids row %llu", (ull)t), slice(got, t * K, K), slice(as_vec(ref_ids), t * K, K), K,
                     Dtype::i32, 'E');
    run.check_values(fmt("out_weights row %llu", (ull)t), slice(run.download(w, T * K), t * K, K),
                     slice(ref_w, t * K, K), K, Dtype::f32);
  }
}

FERRUM_CONFORMANCE_CASE("route_topk_softmax", "errors: top_k 0 or > num_experts; num_tokens 0 is a no-op", kActDtypes) {
  const uint64_t T = 2, E = 4;
  Buffer bl = run.upload(run.random(T * E)), ids = run.output(T * 8, Dtype::i32), w = run.output(T * 8, Dtype::f32);
  run.expect_error("top_k = 0", kInvalid, [&] { run.ctx.route_topk_softmax({.logits = bl, .out_ids = ids, .out_weights = w, .num_tokens = T, .num_experts = E, .top_k = 0, .norm_topk_prob = false}); }, "top_k");
  run.expect_error("top_k > num_experts", kInvalid, [&] { run.ctx.route_topk_softmax({.logits = bl, .out_ids = ids, .out_weights = w, .num_tokens = T, .num_experts = E, .top_k = 5, .norm_topk_prob = false}); },
                   "top_k");
  run.check_untouched("out_ids after errors", ids, 0, ids.count());
  run.check_untouched("out_weights after errors", w, 0, w.count());
  Buffer fw = run.output(T * 2, Dtype::f32);
  run.expect_error("out_ids not I32", kInvalid, [&] { run.ctx.route_topk_softmax({.logits = bl, .out_ids = fw, .out_weights = w, .num_tokens = T, .num_experts = E, .top_k = 2, .norm_topk_prob = false}); },
                   "out_ids");
  run.ctx.route_topk_softmax({.logits = bl, .out_ids = ids, .out_weights = w, .num_tokens = 0, .num_experts = E, .top_k = 2, .norm_topk_prob = true});
  run.check_untouched("out_ids (num_tokens = 0)", ids, 0, ids.count());
}

FERRUM_CONFORMANCE_CASE("moe_align_block_size", "plugin routing end to end (route -> align)", kActDtypes) {
  const uint64_t T = 40, E = 64, K = 8, bs = 16;
  const vec logits = run.random(T * E, -3.0, 3.0);
  Buffer bl = run.upload(logits), ids = run.output(T * K, Dtype::i32), w = run.output(T * K, Dtype::f32);
  run.ctx.route_topk_softmax({.logits = bl, .out_ids = ids, .out_weights = w, .num_tokens = T, .num_experts = E, .top_k = K, .norm_topk_prob = true});
  const vec got = run.download(ids, T * K);
  run_align(run, ivec(got.begin(), got.end()), T * K, E, bs);
}

FERRUM_CONFORMANCE_CASE("moe_align_block_size", "num_pairs 0 still writes num_tokens_post_padded", kF32Only) {
  Buffer ids = run.output(0, Dtype::i32, 0), sorted = run.output(0, Dtype::i32), eids = run.output(0, Dtype::i32);
  Buffer nptp = run.output(1, Dtype::i32);
  run.ctx.moe_align_block_size({.topk_ids = ids, .sorted_token_ids = sorted, .expert_ids = eids, .num_tokens_post_padded = nptp, .num_pairs = 0, .num_experts = 8, .block_size = 16});
  run.check("num_tokens_post_padded", nptp, {0.0}, 0, 'E');
  run.check_untouched("sorted_token_ids", sorted, 0, sorted.count());
  run.check_untouched("expert_ids", eids, 0, eids.count());
}

FERRUM_CONFORMANCE_CASE("moe_align_block_size", "every pair masked: total 0, all sentinel / -1", kF32Only) {
  const uint64_t P = 12, E = 4, bs = 16;
  run_align(run, ivec(P, -1), P, E, bs);
}

FERRUM_CONFORMANCE_CASE("moe_align_block_size", "errors: block_size 0, buffers below cap / cap_blocks", kF32Only) {
  const uint64_t T = 6, K = 2, E = 8, bs = 16, P = T * K;
  const uint64_t cap = fr::moe_cap(P, E, bs), capb = fr::moe_cap_blocks(P, E, bs);
  Buffer ids = upload_idx(run, random_topk_ids(run, T, K, E, 0));
  Buffer sorted = run.output(cap, Dtype::i32), eids = run.output(capb, Dtype::i32), nptp = run.output(1, Dtype::i32);
  Buffer small_sorted = run.output(cap - 1, Dtype::i32, 0), small_eids = run.output(capb - 1, Dtype::i32, 0);
  run.expect_error("block_size 0", kInvalid, [&] { run.ctx.moe_align_block_size({.topk_ids = ids, .sorted_token_ids = sorted, .expert_ids = eids, .num_tokens_post_padded = nptp, .num_pairs = P, .num_experts = E, .block_size = 0}); },
                   "block_size");
  run.expect_error("sorted_token_ids < cap", kInvalid,
                   [&] { run.ctx.moe_align_block_size({.topk_ids = ids, .sorted_token_ids = small_sorted, .expert_ids = eids, .num_tokens_post_padded = nptp, .num_pairs = P, .num_experts = E, .block_size = bs}); }, "sorted_token_ids");
  run.expect_error("expert_ids < cap_blocks", kInvalid,
                   [&] { run.ctx.moe_align_block_size({.topk_ids = ids, .sorted_token_ids = sorted, .expert_ids = small_eids, .num_tokens_post_padded = nptp, .num_pairs = P, .num_experts = E, .block_size = bs}); }, "expert_ids");
  Buffer f32_ids = run.upload(run.random(P), Dtype::f32);
  run.expect_error("topk_ids not I32", kInvalid,
                   [&] { run.ctx.moe_align_block_size({.topk_ids = f32_ids, .sorted_token_ids = sorted, .expert_ids = eids, .num_tokens_post_padded = nptp, .num_pairs = P, .num_experts = E, .block_size = bs}); }, "topk_ids");
  run.check_untouched("sorted_token_ids after errors", sorted, 0, sorted.count());
  run.check_untouched("expert_ids after errors", eids, 0, eids.count());
  run.check_untouched("num_tokens_post_padded after errors", nptp, 0, nptp.count());
}

FERRUM_CONFORMANCE_CASE("moe_gemm", "top_k 1 with rows pre-gathered per pair", kActDtypes) {
  const uint64_t P = 37, E = 8, n = 48, k = 64, bs = 16;
  const ivec ids = random_topk_ids(run, P, 1, E, 10);
  Routing r = make_routing(run, ids, P, E, bs);
  const vec x = run.random(P * k), w = run.random(E * n * k);
  Buffer bx = run.upload(x), bw = run.upload(w), out = run.output(P * n);
  run.ctx.moe_gemm({.x = bx, .sorted_token_ids = r.b_sorted, .expert_ids = r.b_eids, .num_tokens_post_padded = r.b_nptp, .w_dense = &bw, .w_quant = nullptr, .out = out, .num_tokens = P, .num_pairs = P, .top_k = 1, .num_experts = E, .n = n, .k = k, .block_size = bs});
  vec ref;
  fr::moe_gemm(x, r.sorted, r.eids, r.nptp, w, ref, P, P, 1, E, n, k, bs);
  run.check("out", out, ref, n);
}

FERRUM_CONFORMANCE_CASE("moe_gemm", "num_pairs below num_tokens*top_k; num_pairs 0 is a no-op", kActDtypes) {
  run_moe_gemm_dense(run, {9, 4, 8, 32, 40, 16, 0}, 21);
  const uint64_t E = 4, n = 8, k = 8;
  Buffer x = run.upload(run.random(3 * k)), w = run.upload(run.random(E * n * k));
  Buffer sorted = run.output(0, Dtype::i32, 0), eids = run.output(0, Dtype::i32, 0), nptp = upload_idx(run, {0});
  Buffer out = run.output(0, Dtype::invalid, 8);
  run.ctx.moe_gemm({.x = x, .sorted_token_ids = sorted, .expert_ids = eids, .num_tokens_post_padded = nptp, .w_dense = &w, .w_quant = nullptr, .out = out, .num_tokens = 3, .num_pairs = 0, .top_k = 2, .num_experts = E, .n = n, .k = k, .block_size = 16});
  run.check_untouched("out (num_pairs = 0)", out, 0, out.count());
}

FERRUM_CONFORMANCE_CASE("moe_gemm", "hand-made routing: out-of-range experts, pair ids and short total", kActDtypes) {
  // 4 tokens, top_k 2 -> 8 pairs, block 4. Block 0: expert 1, pairs {0, 3, 8 (sentinel), -5};
  // block 1: expert -1 (skipped); block 2: expert 7 >= E (skipped); block 3: expert 0, pairs {5, 6};
  // block 4: expert 2 but beyond total (skipped).
  const uint64_t T = 4, K = 2, P = 8, E = 4, n = 16, k = 24, bs = 4;
  ivec sorted = {0, 3, 8, -5, 1, 2, 4, 7, 1, 2, 4, 7, 5, 6, 8, 8, 1, 2, 4, 7};
  const uint64_t cap = fr::moe_cap(P, E, bs);
  sorted.resize(cap, int64_t(P));
  ivec eids = {1, -1, 7, 0, 2};
  eids.resize(fr::moe_cap_blocks(P, E, bs), -1);
  const ivec nptp = {16};
  const vec x = run.random(T * k), w = run.random(E * n * k);
  Buffer bx = run.upload(x), bw = run.upload(w), out = run.output(P * n);
  Buffer bs_ = upload_idx(run, sorted), be = upload_idx(run, eids), bn = upload_idx(run, nptp);
  run.ctx.moe_gemm({.x = bx, .sorted_token_ids = bs_, .expert_ids = be, .num_tokens_post_padded = bn, .w_dense = &bw, .w_quant = nullptr, .out = out, .num_tokens = T, .num_pairs = P, .top_k = K, .num_experts = E, .n = n, .k = k, .block_size = bs});
  vec ref;
  fr::moe_gemm(x, sorted, eids, nptp, w, ref, T, P, K, E, n, k, bs);
  run.check("out", out, ref, n);
}

FERRUM_CONFORMANCE_CASE("moe_gemm", "deterministic (two runs bitwise equal)", kActDtypes) {
  const uint64_t T = 48, K = 4, E = 16, n = 96, k = 160, bs = 16, P = T * K;
  Routing r = make_routing(run, random_topk_ids(run, T, K, E, 0), P, E, bs);
  Buffer x = run.upload(run.random(T * k)), w = run.upload(run.random(E * n * k));
  Buffer o1 = run.output(P * n), o2 = run.output(P * n);
  run.ctx.moe_gemm({.x = x, .sorted_token_ids = r.b_sorted, .expert_ids = r.b_eids, .num_tokens_post_padded = r.b_nptp, .w_dense = &w, .w_quant = nullptr, .out = o1, .num_tokens = T, .num_pairs = P, .top_k = K, .num_experts = E, .n = n, .k = k, .block_size = bs});
  run.ctx.moe_gemm({.x = x, .sorted_token_ids = r.b_sorted, .expert_ids = r.b_eids, .num_tokens_post_padded = r.b_nptp, .w_dense = &w, .w_quant = nullptr, .out = o2, .num_tokens = T, .num_pairs = P, .top_k = K, .num_experts = E, .n = n, .k = k, .block_size = bs});
  run.check_values("second run vs first", run.download(o2, P * n), run.download(o1, P * n), n, run.dtype, 'E');
}

FERRUM_CONFORMANCE_CASE("moe_gemm", "errors: weights, num_pairs, routing sizes, GPTQ stack mismatch", kActDtypes) {
  const uint64_t T = 5, K = 2, E = 4, n = 16, k = 32, bs = 16, P = T * K;
  Routing r = make_routing(run, random_topk_ids(run, T, K, E, 0), P, E, bs);
  Buffer x = run.upload(run.random(T * k)), w = run.upload(run.random(E * n * k)), out = run.output(P * n);
  GptqStack st = make_gptq_stack(run, E, k, n, 32, false, false, Dtype::f16, 4);
  auto call = [&](const Buffer* wd, const QWeight* wq, uint64_t pairs, uint64_t nn, uint64_t kk, const Buffer& sorted,
                  const Buffer& eids, uint64_t block) {
    run.ctx.moe_gemm({.x = x, .sorted_token_ids = sorted, .expert_ids = eids, .num_tokens_post_padded = r.b_nptp, .w_dense = wd, .w_quant = wq, .out = out, .num_tokens = T, .num_pairs = pairs, .top_k = K, .num_experts = E, .n = nn, .k = kk, .block_size = block});
  };
  run.expect_error("both weights", kInvalid, [&] { call(&w, &st.w, P, n, k, r.b_sorted, r.b_eids, bs); }, "w_dense");
  run.expect_error("no weight", kInvalid, [&] { call(nullptr, nullptr, P, n, k, r.b_sorted, r.b_eids, bs); },
                   "w_dense");
  run.expect_error("num_pairs > num_tokens*top_k", kInvalid,
                   [&] { call(&w, nullptr, P + 1, n, k, r.b_sorted, r.b_eids, bs); }, "num_pairs");
  run.expect_error("block_size 0", kInvalid, [&] { call(&w, nullptr, P, n, k, r.b_sorted, r.b_eids, 0); },
                   "block_size");
  Buffer small_sorted = upload_idx(run, slice_i(r.sorted, r.sorted.size() - 1));
  Buffer small_eids = upload_idx(run, slice_i(r.eids, r.eids.size() - 1));
  run.expect_error("sorted_token_ids < cap", kInvalid, [&] { call(&w, nullptr, P, n, k, small_sorted, r.b_eids, bs); },
                   "sorted_token_ids");
  run.expect_error("expert_ids < cap_blocks", kInvalid, [&] { call(&w, nullptr, P, n, k, r.b_sorted, small_eids, bs); },
                   "expert_ids");
  run.expect_error("GPTQ stack n != n", kInvalid, [&] { call(nullptr, &st.w, P, n / 2, k, r.b_sorted, r.b_eids, bs); },
                   "w_quant");
  const Dtype other = run.dtype == Dtype::f16 ? Dtype::bf16 : Dtype::f16;
  std::vector<const int32_t*> q;
  std::vector<const void*> sc;
  for (const auto& t : st.t) {
    q.push_back(t.qweight.data());
    sc.push_back(t.scales_bytes.data());
  }
  QWeight wrong_act = run.ctx.load_gptq_stacked({.num_experts = E, .qweights = q.data(), .scales = sc.data(), .qzeros = nullptr, .g_idx = nullptr, .bits = 4, .group_size = 32, .k = k, .n_per_expert = n, .scales_dtype = Dtype::f16, .act_dtype = other});
  run.expect_error("GPTQ stack of another act dtype", kInvalid,
                   [&] { call(nullptr, &wrong_act, P, n, k, r.b_sorted, r.b_eids, bs); }, "w_quant");
  run.check_untouched("out after errors", out, 0, out.count());
}

FERRUM_CONFORMANCE_CASE("fused_moe", "deterministic (two runs bitwise equal)", kActDtypes) {
  const uint64_t T = 24, H = 64, I = 48, E = 8, K = 2, bs = 16, P = T * K;
  Routing r = make_routing(run, random_topk_ids(run, T, K, E, 0), P, E, bs);
  Buffer x = run.upload(run.random(T * H)), tw = run.upload(run.random(P, 0.0, 1.0, Dtype::f32), Dtype::f32);
  Buffer gu = run.upload(run.random(E * 2 * I * H)), d = run.upload(run.random(E * H * I));
  Buffer o1 = run.output(T * H), o2 = run.output(T * H);
  for (Buffer* o : {&o1, &o2})
    run.ctx.fused_moe({.x = x, .topk_weights = tw, .sorted_token_ids = r.b_sorted, .expert_ids = r.b_eids, .num_tokens_post_padded = r.b_nptp, .w_gate_up_dense = &gu, .w_gate_up_quant = nullptr, .w_down_dense = &d, .w_down_quant = nullptr, .out = *o, .num_tokens = T, .hidden = H, .intermediate = I, .num_experts = E, .top_k = K, .block_size = bs});
  run.check_values("second run vs first", run.download(o2, T * H), run.download(o1, T * H), H, run.dtype, 'E');
}

FERRUM_CONFORMANCE_CASE("fused_moe", "errors: weights, routing sizes, GPTQ stack mismatch", kActDtypes) {
  const uint64_t T = 4, H = 64, I = 32, E = 4, K = 2, bs = 16, P = T * K;
  Routing r = make_routing(run, random_topk_ids(run, T, K, E, 0), P, E, bs);
  Buffer x = run.upload(run.random(T * H)), tw = run.upload(run.random(P, 0.0, 1.0, Dtype::f32), Dtype::f32);
  Buffer gu = run.upload(run.random(E * 2 * I * H)), d = run.upload(run.random(E * H * I));
  Buffer out = run.output(T * H);
  GptqStack gq = make_gptq_stack(run, E, H, 2 * I, 32, false, false, Dtype::f16, 5);
  auto call = [&](const Buffer* gud, const QWeight* guq, const Buffer* dd, const QWeight* dq, const Buffer& sorted,
                  uint64_t block) {
    run.ctx.fused_moe({.x = x, .topk_weights = tw, .sorted_token_ids = sorted, .expert_ids = r.b_eids, .num_tokens_post_padded = r.b_nptp, .w_gate_up_dense = gud, .w_gate_up_quant = guq, .w_down_dense = dd, .w_down_quant = dq, .out = out, .num_tokens = T, .hidden = H, .intermediate = I, .num_experts = E, .top_k = K, .block_size = block});
  };
  run.expect_error("both gate_up", kInvalid, [&] { call(&gu, &gq.w, &d, nullptr, r.b_sorted, bs); }, "w_gate_up");
  run.expect_error("no down", kInvalid, [&] { call(&gu, nullptr, nullptr, nullptr, r.b_sorted, bs); }, "w_down");
  run.expect_error("gate_up stack used as down", kInvalid, [&] { call(&gu, nullptr, nullptr, &gq.w, r.b_sorted, bs); },
                   "w_down_quant");
  run.expect_error("block_size 0", kInvalid, [&] { call(&gu, nullptr, &d, nullptr, r.b_sorted, 0); }, "block_size");
  Buffer small_sorted = upload_idx(run, slice_i(r.sorted, r.sorted.size() - 1));
  run.expect_error("sorted_token_ids < cap", kInvalid, [&] { call(&gu, nullptr, &d, nullptr, small_sorted, bs); },
                   "sorted_token_ids");
  run.check_untouched("out after errors", out, 0, out.count());
}

FERRUM_CONFORMANCE_CASE("fused_moe", "plugin routing end to end (route -> align -> fused_moe)", kActDtypes) {
  const uint64_t T = 20, H = 64, I = 32, E = 16, K = 4, bs = 16, P = T * K;
  const vec logits = run.random(T * E, -3.0, 3.0);
  Buffer bl = run.upload(logits), ids = run.output(P, Dtype::i32), w = run.output(P, Dtype::f32);
  run.ctx.route_topk_softmax({.logits = bl, .out_ids = ids, .out_weights = w, .num_tokens = T, .num_experts = E, .top_k = K, .norm_topk_prob = true});
  const uint64_t cap = fr::moe_cap(P, E, bs), capb = fr::moe_cap_blocks(P, E, bs);
  Buffer sorted = run.output(cap, Dtype::i32), eids = run.output(capb, Dtype::i32), nptp = run.output(1, Dtype::i32);
  run.ctx.moe_align_block_size({.topk_ids = ids, .sorted_token_ids = sorted, .expert_ids = eids, .num_tokens_post_padded = nptp, .num_pairs = P, .num_experts = E, .block_size = bs});
  const vec x = run.random(T * H), gu = run.random(E * 2 * I * H), d = run.random(E * H * I);
  Buffer bx = run.upload(x), bgu = run.upload(gu), bd = run.upload(d), out = run.output(T * H);
  run.ctx.fused_moe({.x = bx, .topk_weights = w, .sorted_token_ids = sorted, .expert_ids = eids, .num_tokens_post_padded = nptp, .w_gate_up_dense = &bgu, .w_gate_up_quant = nullptr, .w_down_dense = &bd, .w_down_quant = nullptr, .out = out, .num_tokens = T, .hidden = H, .intermediate = I, .num_experts = E, .top_k = K, .block_size = bs});
  // The reference runs on the routing the plugin produced (its ids and weights are checked elsewhere).
  const vec got_sorted = run.download(sorted, cap), got_eids = run.download(eids, capb), got_n = run.download(nptp, 1);
  vec ref;
  fr::fused_moe(x, run.download(w, P), ivec(got_sorted.begin(), got_sorted.end()), ivec(got_eids.begin(), got_eids.end()),
                ivec(got_n.begin(), got_n.end()), gu, d, ref, T, H, I, E, K, bs);
  run.check("out", out, ref, H);
}

FERRUM_CONFORMANCE_CASE("fused_moe", "num_tokens 0 is a no-op", kActDtypes) {
  const uint64_t H = 16, I = 8, E = 4;
  Buffer none = run.output(0, Dtype::invalid, 0), none_f = run.output(0, Dtype::f32, 0);
  Buffer none_i = run.output(0, Dtype::i32, 0), nptp = upload_idx(run, {0});
  Buffer gu = run.upload(run.random(E * 2 * I * H)), d = run.upload(run.random(E * H * I));
  Buffer out = run.output(0, Dtype::invalid, 8);
  run.ctx.fused_moe({.x = none, .topk_weights = none_f, .sorted_token_ids = none_i, .expert_ids = none_i, .num_tokens_post_padded = nptp, .w_gate_up_dense = &gu, .w_gate_up_quant = nullptr, .w_down_dense = &d, .w_down_quant = nullptr, .out = out, .num_tokens = 0, .hidden = H, .intermediate = I, .num_experts = E, .top_k = 2, .block_size = 16});
  run.check_untouched("out", out, 0, out.count());
}

FERRUM_CONFORMANCE_CASE("weighted_sum_batched", "num_tokens 0 is a no-op", kActDtypes) {
  Buffer s = run.output(0, Dtype::invalid, 0), w = run.output(0, Dtype::f32, 0), out = run.output(0, Dtype::invalid, 8);
  run.ctx.weighted_sum_batched({.slots = s, .weights = w, .out = out, .num_tokens = 0, .top_k = 2, .hidden = 16});
  run.check_untouched("out", out, 0, out.count());
}

// "large": 128 experts, top-8 routing of up to 300 tokens (uneven expert loads, some experts empty),
// k = 1024 (expert weights kept small enough for the float64 reference: 128 × 256 × 1024).
namespace {
const bool kMoeLarge = [] {
  register_table<GemmShape>(
      "moe_gemm", kActDtypes, {{64, 8, 128, 256, 1024, 16, 0}, {300, 8, 128, 256, 1024, 64, 10}},
      [](const GemmShape& s) {
        return fmt("dense, T %llu, top_k %llu, E %llu, n %llu, k %llu, block %llu, %u%% masked", (ull)s.T, (ull)s.K,
                   (ull)s.E, (ull)s.n, (ull)s.k, (ull)s.bs, s.masked_pct);
      },
      [](Run& run, const GemmShape& s) { run_moe_gemm_dense(run, s, s.T * s.K); }, "large");
  register_table<FusedShape>(
      "fused_moe", kActDtypes, {{32, 512, 256, 128, 8, 16, 0}},
      [](const FusedShape& s) {
        return fmt("dense, T %llu, hidden %llu, I %llu, E %llu, top_k %llu, block %llu, %u%% masked", (ull)s.T,
                   (ull)s.hidden, (ull)s.I, (ull)s.E, (ull)s.K, (ull)s.bs, s.masked_pct);
      },
      run_fused_dense, "large");
  return true;
}();
}  // namespace
