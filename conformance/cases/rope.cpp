// Conformance cases: the QK-norm / RoPE family (docs/spec.md §0.7, §4) against the float64 references.
// Matrix: activation dtype × table dtype (the activation dtype, or F32 tables with F16/BF16
// activations) × qk_mode 0..3 × head_dim {8, 16, 64, 80, 128, 256} (+ odd 7 and 1 for mode 0) ×
// shapes (1 token / several, pos_offset 0 / > 0, GQA ratios 1/2/4/8). Class F; mode 0 outputs and
// V copies class E. Fields a mode does not read are passed NULL (docs/spec.md §0.7 allows it).
#include <ferrum/conformance/kit.hpp>

#include "src/case_util.hpp"

using namespace ferrum;
using namespace ferrum::conformance;
using namespace ferrum::conformance::util;

namespace {

constexpr ErrorCode kInvalid = ErrorCode::invalid_argument;
const std::vector<Dtype> kHalfDtypes = {Dtype::f16, Dtype::bf16};

struct Rope {
  vec cos, sin, w1, w2;             // stored values
  Buffer bcos, bsin, bw1, bw2;      // empty where the mode does not read them
  const Buffer* c() const { return bcos ? &bcos : nullptr; }
  const Buffer* s() const { return bsin ? &bsin : nullptr; }
  const Buffer* n1() const { return bw1 ? &bw1 : nullptr; }
  const Buffer* n2() const { return bw2 ? &bw2 : nullptr; }
};

Rope make_rope(Run& run, Dtype tab, int32_t mode, uint64_t rows, uint64_t hd) {
  Rope r;
  if (mode != 0) {
    fr::rope_tables(rows, hd, 10000.0, r.cos, r.sin);
    r.cos = ft::round_to(raw(tab), r.cos);
    r.sin = ft::round_to(raw(tab), r.sin);
    r.bcos = run.upload(r.cos, tab);
    r.bsin = run.upload(r.sin, tab);
  }
  if (mode == 1) {
    r.w1 = run.random(hd, 0.5, 1.5);
    r.w2 = run.random(hd, 0.5, 1.5);
    r.bw1 = run.upload(r.w1);
    r.bw2 = run.upload(r.w2);
  }
  return r;
}

char cls_of(int32_t mode) { return mode == 0 ? 'E' : 'F'; }

// One registration per (mode, head_dim, table dtype); the shapes run inside the case.
struct Cls { int32_t mode; uint64_t hd; bool f32_tab; };
std::vector<Cls> classes(std::initializer_list<uint64_t> hds, bool with_tiny) {
  std::vector<Cls> out;
  for (int32_t mode : {0, 1, 2, 3}) {
    std::vector<uint64_t> all(hds);
    if (mode == 0) {
      all.push_back(7);
      if (with_tiny) all.push_back(1);
    }
    for (uint64_t hd : all) {
      out.push_back({mode, hd, false});
      if (mode != 0) out.push_back({mode, hd, true});
    }
  }
  return out;
}
std::string cls_name(const Cls& c) {
  return fmt("qk_mode %d, hd %llu%s", c.mode, (unsigned long long)c.hd, c.f32_tab ? ", F32 tables" : "");
}
Dtype tab_of(Run& run, const Cls& c) { return c.f32_tab ? Dtype::f32 : run.dtype; }

template <class BodyFn>
bool register_rope(const char* op, std::initializer_list<uint64_t> hds, bool with_tiny, BodyFn body) {
  for (const Cls& c : classes(hds, with_tiny))
    register_case({op, cls_name(c), c.f32_tab ? kHalfDtypes : kActDtypes, [c, body](Run& run) { body(run, c); }});
  return true;
}

const bool kQkNormRope = register_rope("qk_norm_rope", {8, 16, 64, 80, 128, 256}, true, [](Run& run, const Cls& c) {
  struct S { uint64_t tokens, heads, pos; };
  for (const S& s : {S{1, 1, 0}, S{5, 3, 9}, S{1, 4, 17}, S{7, 2, 0}}) {
    const std::string at = fmt(" (%llu tokens, %llu heads, pos_offset %llu)", (unsigned long long)s.tokens,
                               (unsigned long long)s.heads, (unsigned long long)s.pos);
    const float eps = 1e-6f;
    const Rope r = make_rope(run, tab_of(run, c), c.mode, s.pos + s.tokens + 3, c.hd);
    const uint64_t n = s.tokens * s.heads * c.hd;
    const vec in = run.random(n, -2.0, 2.0);
    Buffer bin = run.upload(in), out = run.output(n);
    run.ctx.qk_norm_rope({.input = bin, .norm_w = r.n1(), .cos = r.c(), .sin = r.s(), .output = out, .tokens = s.tokens, .heads = s.heads, .head_dim = c.hd, .pos_offset = s.pos, .eps = eps, .mode = static_cast<ferrum::QkMode>(c.mode)});
    vec ref;
    fr::qk_norm_rope(in, r.w1, r.cos, r.sin, ref, s.tokens, s.heads, c.hd, s.pos, eps, c.mode);
    run.check("output" + at, out, ref, c.hd, cls_of(c.mode));
  }
});

const bool kPerItem = register_rope("qk_norm_rope_batched_per_item", {8, 16, 64, 80, 128}, false,
                                    [](Run& run, const Cls& c) {
  struct S { uint64_t m, heads; Dtype pos; };
  for (const S& s : {S{1, 1, Dtype::u32}, S{5, 3, Dtype::i32}, S{3, 8, Dtype::u32}, S{4, 2, Dtype::i32}}) {
    const std::string at = fmt(" (%llu items, %llu heads, %s positions)", (unsigned long long)s.m,
                               (unsigned long long)s.heads, std::string(to_string(s.pos)).c_str());
    const float eps = 1e-5f;
    const uint64_t rows = 40;
    const Rope r = make_rope(run, tab_of(run, c), c.mode, rows, c.hd);
    const auto p32 = run.random_ids(s.m, static_cast<uint32_t>(rows));
    std::vector<int64_t> pos(p32.begin(), p32.end());
    pos[0] = rows - 1;  // the last table row
    Buffer bp = run.upload(vec(pos.begin(), pos.end()), s.pos);
    const uint64_t n = s.m * s.heads * c.hd;
    const vec in = run.random(n, -2.0, 2.0);
    Buffer bin = run.upload(in), out = run.output(n);
    run.ctx.qk_norm_rope_batched_per_item({.input = bin, .norm_w = r.n1(), .cos = r.c(), .sin = r.s(), .output = out, .positions = bp, .m = s.m, .heads = s.heads, .head_dim = c.hd, .eps = eps, .mode = static_cast<ferrum::QkMode>(c.mode)});
    vec ref;
    fr::qk_norm_rope_batched_per_item(in, r.w1, r.cos, r.sin, ref, pos, s.m, s.heads, c.hd, eps, c.mode);
    run.check("output" + at, out, ref, c.hd, cls_of(c.mode));
  }
});

const bool kSplit = register_rope("split_qkv_norm_rope", {8, 64, 80, 128, 256}, false, [](Run& run, const Cls& c) {
  struct S { uint64_t qh, kvh, tokens, pos; };
  for (const S& s : {S{1, 1, 1, 12}, S{4, 2, 6, 0}, S{4, 1, 3, 5}, S{8, 1, 1, 0}}) {
    const std::string at = fmt(" (heads %llu/%llu, %llu tokens, pos_offset %llu)", (unsigned long long)s.qh,
                               (unsigned long long)s.kvh, (unsigned long long)s.tokens, (unsigned long long)s.pos);
    const float eps = 1e-6f;
    const Rope r = make_rope(run, tab_of(run, c), c.mode, s.pos + s.tokens, c.hd);  // exactly enough rows
    const uint64_t row = (s.qh + 2 * s.kvh) * c.hd;
    const vec qkv = run.random(s.tokens * row, -2.0, 2.0);
    Buffer b = run.upload(qkv);
    const uint64_t nq = s.qh * s.tokens * c.hd, nk = s.kvh * s.tokens * c.hd;
    Buffer q = run.output(nq), k = run.output(nk), v = run.output(nk);
    run.ctx.split_qkv_norm_rope({.qkv = b, .q_norm_w = r.n1(), .k_norm_w = r.n2(), .cos = r.c(), .sin = r.s(), .q_out = q, .k_out = k, .v_out = v, .tokens = s.tokens, .q_heads = s.qh, .kv_heads = s.kvh, .head_dim = c.hd, .pos_offset = s.pos, .eps = eps,
                                .qk_mode = static_cast<ferrum::QkMode>(c.mode)});
    vec rq, rk, rv;
    fr::split_qkv_norm_rope(qkv, r.w1, r.w2, r.cos, r.sin, rq, rk, rv, s.tokens, s.qh, s.kvh, c.hd, s.pos, eps, c.mode);
    run.check("q_out" + at, q, rq, c.hd, cls_of(c.mode));
    run.check("k_out" + at, k, rk, c.hd, cls_of(c.mode));
    run.check("v_out" + at, v, rv, c.hd, 'E');
  }
});

const bool kIntoCache = register_rope("split_qkv_norm_rope_into_cache", {8, 64, 80, 128}, false,
                                      [](Run& run, const Cls& c) {
  struct S { uint64_t qh, kvh, tokens, cache_len, pos; };
  for (const S& s : {S{2, 2, 1, 0, 0}, S{4, 1, 1, 9, 9}, S{8, 2, 5, 3, 3}, S{4, 1, 4, 2, 7}}) {
    const uint64_t cap = s.cache_len + s.tokens + 3;
    const std::string at = fmt(" (heads %llu/%llu, %llu tokens, cache_len %llu, capacity %llu, pos_offset %llu)",
                               (unsigned long long)s.qh, (unsigned long long)s.kvh, (unsigned long long)s.tokens,
                               (unsigned long long)s.cache_len, (unsigned long long)cap, (unsigned long long)s.pos);
    const float eps = 1e-6f;
    const Rope r = make_rope(run, tab_of(run, c), c.mode, s.pos + s.tokens + 1, c.hd);
    const uint64_t row = (s.qh + 2 * s.kvh) * c.hd;
    const vec qkv = run.random(s.tokens * row, -2.0, 2.0);
    Buffer b = run.upload(qkv);
    const uint64_t nq = s.qh * s.tokens * c.hd, ncache = s.kvh * cap * c.hd;
    Buffer q = run.output(nq), ck = run.output(ncache), cv = run.output(ncache);
    run.ctx.split_qkv_norm_rope_into_cache({.qkv = b, .q_norm_w = r.n1(), .k_norm_w = r.n2(), .cos = r.c(), .sin = r.s(), .q_out = q, .cache_k = ck, .cache_v = cv, .tokens = s.tokens, .q_heads = s.qh, .kv_heads = s.kvh, .head_dim = c.hd,
                                           .pos_offset = s.pos, .eps = eps, .qk_mode = static_cast<ferrum::QkMode>(c.mode), .cache_len = s.cache_len, .cache_capacity = cap});
    vec rq, rk, rv;
    fr::split_qkv_norm_rope_into_cache(qkv, r.w1, r.w2, r.cos, r.sin, rq, rk, rv, s.tokens, s.qh, s.kvh, c.hd, s.pos,
                                       eps, c.mode, s.cache_len, cap);
    run.check("q_out" + at, q, rq, c.hd, cls_of(c.mode));
    const vec gk = run.download(ck, ncache), gv = run.download(cv, ncache);
    vec got_k, got_v, ref_k, ref_v;
    for (uint64_t h = 0; h < s.kvh; ++h) {
      const uint64_t base = h * cap * c.hd, off = base + s.cache_len * c.hd, len = s.tokens * c.hd;
      run.check_untouched("cache_k rows before cache_len" + at, ck, base, off);
      run.check_untouched("cache_v rows before cache_len" + at, cv, base, off);
      run.check_untouched("cache_k rows after the new ones" + at, ck, off + len, base + cap * c.hd);
      run.check_untouched("cache_v rows after the new ones" + at, cv, off + len, base + cap * c.hd);
      for (auto [dst, src] : {std::pair{&got_k, &gk}, {&got_v, &gv}, {&ref_k, &rk}, {&ref_v, &rv}}) {
        const vec part = slice(*src, off, len);
        dst->insert(dst->end(), part.begin(), part.end());
      }
    }
    run.check_values("cache_k new rows" + at, got_k, ref_k, c.hd, run.dtype, cls_of(c.mode));
    run.check_values("cache_v new rows" + at, got_v, ref_v, c.hd, run.dtype, 'E');
    run.check_untouched("cache_k guard" + at, ck, ncache, ck.count());
  }
});

}  // namespace

FERRUM_CONFORMANCE_CASE("qk_norm_rope", "zero tokens is a no-op", kActDtypes) {
  const Rope r = make_rope(run, run.dtype, 1, 4, 8);
  Buffer in = run.output(0, Dtype::invalid, 0), out = run.output(0, Dtype::invalid, 8);
  run.ctx.qk_norm_rope({.input = in, .norm_w = r.n1(), .cos = r.c(), .sin = r.s(), .output = out, .tokens = 0, .heads = 2, .head_dim = 8, .pos_offset = 0, .eps = 1e-6f, .mode = ferrum::QkMode::rms_norm_neox});
  run.check_untouched("output", out, 0, out.count());
}

FERRUM_CONFORMANCE_CASE("split_qkv_norm_rope", "zero tokens is a no-op", kActDtypes) {
  const Rope r = make_rope(run, run.dtype, 1, 4, 8);
  Buffer in = run.output(0, Dtype::invalid, 0);
  Buffer q = run.output(0, Dtype::invalid, 8), k = run.output(0, Dtype::invalid, 8), v = run.output(0, Dtype::invalid, 8);
  run.ctx.split_qkv_norm_rope({.qkv = in, .q_norm_w = r.n1(), .k_norm_w = r.n2(), .cos = r.c(), .sin = r.s(), .q_out = q, .k_out = k, .v_out = v, .tokens = 0, .q_heads = 1, .kv_heads = 1, .head_dim = 8, .pos_offset = 0, .eps = 1e-6f, .qk_mode = ferrum::QkMode::rms_norm_neox});
  run.check_untouched("q_out", q, 0, 8);
  run.check_untouched("k_out", k, 0, 8);
  run.check_untouched("v_out", v, 0, 8);
}

// ------------------------------------------------------------------------------------ error paths

FERRUM_CONFORMANCE_CASE("qk_norm_rope", "error: qk_mode out of range, odd head_dim with RoPE, positions past the tables",
                        kActDtypes) {
  const Rope r = make_rope(run, run.dtype, 1, 4, 8);
  Buffer in = run.upload(run.random(2 * 8)), out = run.output(16, Dtype::invalid, 0);
  for (int32_t mode : {4, -1})
    run.expect_error(fmt("qk_mode %d", mode), kInvalid,
                     [&] { run.ctx.qk_norm_rope({.input = in, .norm_w = r.n1(), .cos = r.c(), .sin = r.s(), .output = out, .tokens = 2, .heads = 1, .head_dim = 8, .pos_offset = 0, .eps = 1e-6f, .mode = static_cast<ferrum::QkMode>(mode)}); },
                     "qk_norm_rope");
  Buffer in7 = run.upload(run.random(2 * 7)), w7 = run.upload(run.random(7, 0.5, 1.5));
  run.expect_error("odd head_dim with qk_mode 2", kInvalid,
                   [&] { run.ctx.qk_norm_rope({.input = in7, .norm_w = &w7, .cos = r.c(), .sin = r.s(), .output = out, .tokens = 2, .heads = 1, .head_dim = 7, .pos_offset = 0, .eps = 1e-6f, .mode = ferrum::QkMode::neox}); }, "qk_norm_rope");
  run.expect_error("pos_offset + tokens > table rows", kInvalid,
                   [&] { run.ctx.qk_norm_rope({.input = in, .norm_w = r.n1(), .cos = r.c(), .sin = r.s(), .output = out, .tokens = 2, .heads = 1, .head_dim = 8, .pos_offset = 3, .eps = 1e-6f, .mode = ferrum::QkMode::rms_norm_neox}); }, "qk_norm_rope");
  run.check_untouched("output", out, 0, out.count());
}

FERRUM_CONFORMANCE_CASE("split_qkv_norm_rope_into_cache", "error: cache overflow, cache_k == cache_v", kActDtypes) {
  Buffer qkv = run.upload(run.random(2 * 3 * 8)), q = run.output(2 * 8, Dtype::invalid, 0);
  Buffer ck = run.output(4 * 8, Dtype::invalid, 0), cv = run.output(4 * 8, Dtype::invalid, 0);
  run.expect_error("cache_len + tokens > capacity", kInvalid,
                   [&] {
                     run.ctx.split_qkv_norm_rope_into_cache({.qkv = qkv, .q_norm_w = nullptr, .k_norm_w = nullptr, .cos = nullptr, .sin = nullptr, .q_out = q, .cache_k = ck, .cache_v = cv, .tokens = 2, .q_heads = 1, .kv_heads = 1,
                                                            .head_dim = 8, .pos_offset = 0, .eps = 1e-6f, .qk_mode = ferrum::QkMode::copy, .cache_len = 3, .cache_capacity = 4});
                   },
                   "split_qkv_norm_rope_into_cache");
  run.expect_error("cache_k == cache_v", kInvalid,
                   [&] {
                     run.ctx.split_qkv_norm_rope_into_cache({.qkv = qkv, .q_norm_w = nullptr, .k_norm_w = nullptr, .cos = nullptr, .sin = nullptr, .q_out = q, .cache_k = ck, .cache_v = ck, .tokens = 1, .q_heads = 1, .kv_heads = 1,
                                                            .head_dim = 8, .pos_offset = 0, .eps = 1e-6f, .qk_mode = ferrum::QkMode::copy, .cache_len = 0, .cache_capacity = 4});
                   },
                   "cache_v");
  run.check_untouched("q_out", q, 0, q.count());
  run.check_untouched("cache_k", ck, 0, ck.count());
  run.check_untouched("cache_v", cv, 0, cv.count());
}
