// Conformance cases: dense ops (docs/spec.md §3) against the float64 references of conformance/ref.
// Every activation dtype; class F for arithmetic, class E for pure data movement (split_qkv,
// embedding lookups, transposes) and for argmax ids.
#include <ferrum/conformance/kit.hpp>

#include "src/case_util.hpp"

#include <limits>

using namespace ferrum;
using namespace ferrum::conformance;
using namespace ferrum::conformance::util;

namespace {

constexpr ErrorCode kInvalid = ErrorCode::invalid_argument;

// ------------------------------------------------------------------------------------ gemm
struct Mnk { uint64_t m, n, k; };

std::string mnk_name(const Mnk& s) {
  return fmt("m %llu, n %llu, k %llu", (unsigned long long)s.m, (unsigned long long)s.n, (unsigned long long)s.k);
}

void run_gemm(Run& run, const Mnk& s) {
  const vec a = run.random(s.m * s.k), b = run.random(s.n * s.k);
  Buffer ba = run.upload(a), bb = run.upload(b);
  Buffer out = run.output(s.m * s.n);
  run.ctx.gemm({.a = ba, .b = bb, .out = out, .m = s.m, .n = s.n, .k = s.k});
  vec ref;
  fr::gemm(a, b, ref, s.m, s.n, s.k);
  run.check("out", out, ref, s.n);
}

// k a multiple of 16 with m = 9 ... 45: the CPU plugin's decode-once tiles (28 rows of b, groups of
// 16 rows of a, a zero-padded last group or 1–11 rows left over), with part tiles and a short last
// column block (k = 272, 528).
const bool kGemm = register_table<Mnk>(
    "gemm", kActDtypes,
    {{1, 1, 1}, {7, 13, 5}, {33, 65, 129}, {64, 64, 64}, {1, 1000, 33}, {17, 3, 1000}, {2, 7, 1}, {16, 61, 272},
     {31, 29, 528}, {45, 57, 256}, {9, 30, 48}, {21, 5, 32}, {10, 3, 16}},
    mnk_name, run_gemm);
// The large family: tensor-core tiles (m >= 1024), a ragged m with a long k, split-K (few rows,
// very long k). Selected only with --large or --family large.
const bool kGemmLarge = register_table<Mnk>("gemm", kActDtypes, {{1024, 96, 1024}, {1031, 40, 2056}, {8, 64, 16384}},
                                            mnk_name, run_gemm, "large");

}  // namespace

FERRUM_CONFORMANCE_CASE("gemm", "a and b the same handle", kActDtypes) {
  const uint64_t m = 9, k = 23;
  const vec a = run.random(m * k);
  Buffer ba = run.upload(a);
  Buffer out = run.output(m * m);
  run.ctx.gemm({.a = ba, .b = ba, .out = out, .m = m, .n = m, .k = k});
  vec ref;
  fr::gemm(a, a, ref, m, m, k);
  run.check("out", out, ref, m);
}

FERRUM_CONFORMANCE_CASE("gemm", "k = 0 gives +0.0; m = 0 and n = 0 are no-ops", kActDtypes) {
  Buffer a0 = run.output(0, Dtype::invalid, 0), b0 = run.output(0, Dtype::invalid, 0);
  Buffer out = run.output(3 * 5);
  run.ctx.gemm({.a = a0, .b = b0, .out = out, .m = 3, .n = 5, .k = 0});
  run.check("out (k = 0)", out, vec(15, 0.0), 5, 'E');
  Buffer a = run.upload(run.random(8)), b = run.upload(run.random(8));
  Buffer o2 = run.output(0, Dtype::invalid, 4);
  run.ctx.gemm({.a = a, .b = b, .out = o2, .m = 0, .n = 1, .k = 8});
  run.check_untouched("out (m = 0)", o2, 0, o2.count());
  run.ctx.gemm({.a = a, .b = b, .out = o2, .m = 1, .n = 0, .k = 8});
  run.check_untouched("out (n = 0)", o2, 0, o2.count());
}

FERRUM_CONFORMANCE_CASE("gemm", "deterministic (two runs bitwise equal)", kActDtypes) {
  const uint64_t m = 37, n = 71, k = 300;
  Buffer a = run.upload(run.random(m * k)), b = run.upload(run.random(n * k));
  Buffer o1 = run.output(m * n), o2 = run.output(m * n);
  run.ctx.gemm({.a = a, .b = b, .out = o1, .m = m, .n = n, .k = k});
  run.ctx.gemm({.a = a, .b = b, .out = o2, .m = m, .n = n, .k = k});
  run.check_values("second run vs first", run.download(o2, m * n), run.download(o1, m * n), n, run.dtype, 'E');
}

FERRUM_CONFORMANCE_CASE("gemm", "NaN in one row of a poisons that row only", kActDtypes) {
  const uint64_t m = 3, n = 4, k = 5;
  vec a = run.random(m * k), b = run.random(n * k);
  a[1 * k + 2] = std::numeric_limits<double>::quiet_NaN();
  Buffer ba = run.upload(a), bb = run.upload(b), out = run.output(m * n);
  run.ctx.gemm({.a = ba, .b = bb, .out = out, .m = m, .n = n, .k = k});
  vec ref;
  fr::gemm(a, b, ref, m, n, k);
  run.check("out", out, ref, n);
}

namespace {

// ------------------------------------------------------------------------------------ norms
struct TokDim { uint64_t tokens, dim; };
std::vector<TokDim> tok_dims(std::initializer_list<uint64_t> tokens) {
  std::vector<TokDim> out;
  for (uint64_t t : tokens)
    for (uint64_t d : {1ull, 7ull, 33ull, 129ull, 1000ull}) out.push_back({t, d});
  return out;
}
std::string tok_dim_name(const TokDim& s) {
  return fmt("%llu token%s, dim %llu (+ out == x)", (unsigned long long)s.tokens, s.tokens == 1 ? "" : "s",
             (unsigned long long)s.dim);
}

const bool kRms = register_table<TokDim>("rms_norm", kActDtypes, tok_dims({1, 5}), tok_dim_name,
                                         [](Run& run, const TokDim& s) {
  const float eps = 1e-5f;
  const vec x = run.random(s.tokens * s.dim, -2.0, 2.0), w = run.random(s.dim, 0.5, 1.5);
  Buffer bx = run.upload(x), bw = run.upload(w);
  vec ref;
  fr::rms_norm(x, w, eps, ref, s.tokens, s.dim);
  Buffer out = run.output(s.tokens * s.dim);
  run.ctx.rms_norm({.x = bx, .w = bw, .eps = eps, .out = out, .tokens = s.tokens, .dim = s.dim});
  run.check("out", out, ref, s.dim);
  run.ctx.rms_norm({.x = bx, .w = bw, .eps = eps, .out = bx, .tokens = s.tokens, .dim = s.dim});
  run.check("out == x", bx, ref, s.dim);
});

const bool kFusedRms = register_table<TokDim>("fused_add_rms_norm", kActDtypes, tok_dims({1, 4}), tok_dim_name,
                                              [](Run& run, const TokDim& s) {
  const float eps = 1e-6f;
  const uint64_t n = s.tokens * s.dim;
  const vec res0 = run.random(n, -2.0, 2.0), x = run.random(n, -2.0, 2.0), w = run.random(s.dim, 0.5, 1.5);
  vec res = res0, ref;
  fr::fused_add_rms_norm(res, x, w, eps, ref, s.tokens, s.dim, raw(run.dtype));
  {
    Buffer br = run.upload(res0), bx = run.upload(x), bw = run.upload(w);
    Buffer out = run.output(n);
    run.ctx.fused_add_rms_norm({.residual = br, .x = bx, .w = bw, .eps = eps, .out = out, .tokens = s.tokens, .dim = s.dim});
    run.check("out", out, ref, s.dim);
    run.check("residual", br, res, s.dim);
  }
  {
    Buffer br = run.upload(res0), bx = run.upload(x), bw = run.upload(w);
    run.ctx.fused_add_rms_norm({.residual = br, .x = bx, .w = bw, .eps = eps, .out = bx, .tokens = s.tokens, .dim = s.dim});
    run.check("out == x", bx, ref, s.dim);
    run.check("residual (out == x)", br, res, s.dim);
  }
});

const bool kLayerNorm = register_table<TokDim>("layer_norm", kActDtypes, tok_dims({1, 3}), tok_dim_name,
                                               [](Run& run, const TokDim& s) {
  const float eps = 1e-5f;
  const vec x = run.random(s.tokens * s.dim, 2.0, 6.0);  // non-zero mean
  const vec g = run.random(s.dim, 0.5, 1.5), be = run.random(s.dim, -0.5, 0.5);
  Buffer bx = run.upload(x), bg = run.upload(g), bb = run.upload(be);
  vec ref;
  fr::layer_norm(x, g, be, eps, ref, s.tokens, s.dim);
  Buffer out = run.output(s.tokens * s.dim);
  run.ctx.layer_norm({.x = bx, .gamma = bg, .beta = bb, .eps = eps, .out = out, .tokens = s.tokens, .dim = s.dim});
  run.check("out", out, ref, s.dim);
  run.ctx.layer_norm({.x = bx, .gamma = bg, .beta = bb, .eps = eps, .out = bx, .tokens = s.tokens, .dim = s.dim});
  run.check("out == x", bx, ref, s.dim);
});

}  // namespace

FERRUM_CONFORMANCE_CASE("layer_norm", "large mean, small variance (two-pass statistics)", kF32Only) {
  // mean/std = 100: a two-pass f32 implementation stays inside 1e-5, E[x^2] - mu^2 in f32 does not.
  const uint64_t tokens = 3, dim = 257;
  const vec x = run.normal(tokens * dim, 100.0, 1.0);
  const vec g = run.random(dim, 0.5, 1.5), be = run.random(dim, -0.5, 0.5);
  Buffer bx = run.upload(x), bg = run.upload(g), bb = run.upload(be);
  Buffer out = run.output(tokens * dim);
  run.ctx.layer_norm({.x = bx, .gamma = bg, .beta = bb, .eps = 1e-6f, .out = out, .tokens = tokens, .dim = dim});
  vec ref;
  fr::layer_norm(x, g, be, 1e-6f, ref, tokens, dim);
  run.check("out", out, ref, dim);
}

namespace {

// ------------------------------------------------------------------------------------ elementwise
const std::vector<uint64_t> kLens = {1, 7, 33, 1000};
std::string len_name(uint64_t len) { return fmt("len %llu", (unsigned long long)len); }

const bool kGelu = register_table<uint64_t>("gelu", kActDtypes, kLens,
                                            [](uint64_t l) { return len_name(l) + " (+ out == x)"; },
                                            [](Run& run, uint64_t len) {
  // One element alone must not land in the F16 subnormal range (gelu(-6) ~ -6e-9), where the
  // output rounding alone exceeds the relative tolerance.
  const vec x = run.random(len, len == 1 ? -3.0 : -6.0, 6.0);
  Buffer bx = run.upload(x);
  vec ref;
  fr::gelu(x, ref, len);
  Buffer out = run.output(len);
  run.ctx.gelu(bx, out, len);
  run.check("out", out, ref, 0);
  run.ctx.gelu(bx, bx, len);
  run.check("out == x", bx, ref, 0);
});

const bool kAdd = register_table<uint64_t>("add_inplace", kActDtypes, kLens,
                                           [](uint64_t l) { return len_name(l) + " (+ x == residual)"; },
                                           [](Run& run, uint64_t len) {
  vec r = run.random(len, -4.0, 4.0);
  const vec x = run.random(len, -4.0, 4.0);
  vec rr = r;
  rr.push_back(0.5);  // one element past len must stay as it was
  Buffer br = run.upload(rr), bx = run.upload(x);
  run.ctx.add_inplace(br, bx, len);
  vec ref = r;
  fr::add_inplace(ref, x, len, raw(run.dtype));
  const vec got = run.download(br);
  run.check_values("residual", slice(got, 0, len), ref, 0, run.dtype);
  run.check_values("element past len", {got[len]}, {0.5}, 0, run.dtype, 'E');
  Buffer b2 = run.upload(r);
  run.ctx.add_inplace(b2, b2, len);
  vec ref2 = r;
  fr::add_inplace(ref2, ref2, len, raw(run.dtype));
  run.check("residual (x == residual)", b2, ref2, 0);
});

struct LenScale { uint64_t len; float scale; };
std::vector<LenScale> len_scales() {
  std::vector<LenScale> out;
  for (uint64_t l : {1ull, 7ull, 129ull, 1000ull})
    for (float s : {0.37f, -2.5f, 0.0f}) out.push_back({l, s});
  return out;
}
const bool kScaledAdd = register_table<LenScale>(
    "scaled_add_inplace", kActDtypes, len_scales(),
    [](const LenScale& s) { return fmt("len %llu, scale %g", (unsigned long long)s.len, s.scale); },
    [](Run& run, const LenScale& s) {
      vec dst = run.random(s.len, -4.0, 4.0);
      const vec src = run.random(s.len, -4.0, 4.0);
      Buffer bd = run.upload(dst), bs = run.upload(src);
      run.ctx.scaled_add_inplace({.dst = bd, .src = bs, .scale = s.scale, .len = s.len});
      fr::scaled_add_inplace(dst, src, s.scale, s.len, raw(run.dtype));
      run.check("dst", bd, dst, 0);
    });

struct RowsCols { uint64_t rows, cols; };
const bool kAddBias = register_table<RowsCols>(
    "add_bias", kActDtypes, {{1, 1}, {3, 7}, {5, 129}, {2, 1000}, {1, 33}},
    [](const RowsCols& s) { return fmt("%llu x %llu", (unsigned long long)s.rows, (unsigned long long)s.cols); },
    [](Run& run, const RowsCols& s) {
      vec data = run.random(s.rows * s.cols, -3.0, 3.0);
      const vec bias = run.random(s.cols, -1.0, 1.0);
      Buffer bd = run.upload(data), bb = run.upload(bias);
      run.ctx.add_bias({.data = bd, .bias = bb, .rows = s.rows, .cols = s.cols});
      fr::add_bias(data, bias, s.rows, s.cols, raw(run.dtype));
      run.check("data", bd, data, s.cols);
    });

// ------------------------------------------------------------------------------------ data movement
struct Qkv { uint64_t tokens, q_dim, kv_dim; };
const bool kSplitQkv = register_table<Qkv>(
    "split_qkv", kActDtypes, {{1, 8, 8}, {3, 7, 3}, {5, 33, 65}, {2, 128, 32}, {1, 1, 1}},
    [](const Qkv& s) { return fmt("%llu tokens, q_dim %llu, kv_dim %llu", (unsigned long long)s.tokens,
                                  (unsigned long long)s.q_dim, (unsigned long long)s.kv_dim); },
    [](Run& run, const Qkv& s) {
      const vec qkv = run.random(s.tokens * (s.q_dim + 2 * s.kv_dim), -3.0, 3.0);
      Buffer b = run.upload(qkv);
      Buffer q = run.output(s.tokens * s.q_dim), k = run.output(s.tokens * s.kv_dim), v = run.output(s.tokens * s.kv_dim);
      run.ctx.split_qkv({.qkv = b, .q = q, .k = k, .v = v, .tokens = s.tokens, .q_dim = s.q_dim, .kv_dim = s.kv_dim});
      vec rq, rk, rv;
      fr::split_qkv(qkv, rq, rk, rv, s.tokens, s.q_dim, s.kv_dim);
      run.check("q", q, rq, s.q_dim, 'E');
      run.check("k", k, rk, s.kv_dim, 'E');
      run.check("v", v, rv, s.kv_dim, 'E');
    });

struct TokIm { uint64_t tokens, im; };
std::vector<TokIm> tok_ims() {
  std::vector<TokIm> out;
  for (uint64_t t : {1ull, 4ull})
    for (uint64_t im : {1ull, 7ull, 129ull, 1000ull}) out.push_back({t, im});
  return out;
}
const bool kSilu = register_table<TokIm>(
    "fused_silu_mul_split", kActDtypes, tok_ims(),
    [](const TokIm& s) { return fmt("%llu tokens, intermediate %llu", (unsigned long long)s.tokens,
                                    (unsigned long long)s.im); },
    [](Run& run, const TokIm& s) {
      const vec gu = run.random(s.tokens * 2 * s.im, -6.0, 6.0);
      Buffer b = run.upload(gu);
      Buffer out = run.output(s.tokens * s.im);
      run.ctx.fused_silu_mul_split({.gate_up = b, .out = out, .tokens = s.tokens, .im = s.im});
      vec ref;
      fr::fused_silu_mul_split(gu, ref, s.tokens, s.im);
      run.check("out", out, ref, s.im);
    });

struct Strided { uint64_t im, in_off, out_off, tokens; };
std::vector<Strided> strided_rows() {
  std::vector<Strided> out;
  for (uint64_t im : {1ull, 33ull, 129ull})
    for (auto [a, b, t] : {std::tuple{0ull, 0ull, 3ull}, std::tuple{2ull, 5ull, 3ull}, std::tuple{4ull, 1ull, 1ull}})
      out.push_back({im, a, b, t});
  return out;
}
const bool kSiluStrided = register_table<Strided>(
    "fused_silu_mul_split_strided", kActDtypes, strided_rows(),
    [](const Strided& s) { return fmt("intermediate %llu, rows %llu -> %llu, %llu tokens", (unsigned long long)s.im,
                                      (unsigned long long)s.in_off, (unsigned long long)s.out_off,
                                      (unsigned long long)s.tokens); },
    [](Run& run, const Strided& s) {
      const uint64_t in_rows = s.in_off + s.tokens + 2, out_rows = s.out_off + s.tokens + 2;
      const vec gu = run.random(in_rows * 2 * s.im, -6.0, 6.0);
      Buffer b = run.upload(gu);
      Buffer out = run.output(out_rows * s.im, Dtype::invalid, 0);
      run.ctx.fused_silu_mul_split_strided({.gate_up = b, .in_row_offset = s.in_off, .out = out, .out_row_offset = s.out_off, .tokens = s.tokens, .intermediate = s.im});
      vec ref;
      fr::fused_silu_mul_split_strided(gu, s.in_off, ref, s.out_off, s.tokens, s.im);
      run.check_untouched("rows before out_row_offset", out, 0, s.out_off * s.im);
      run.check_untouched("rows after the range", out, (s.out_off + s.tokens) * s.im, out_rows * s.im);
      run.check_values("out rows", slice(run.download(out), s.out_off * s.im, s.tokens * s.im),
                       slice(ref, s.out_off * s.im, s.tokens * s.im), s.im, run.dtype);
    });

const bool kEmb = register_table<uint64_t>(
    "embedding_lookup", kActDtypes, {1, 7, 129}, [](uint64_t d) { return fmt("dim %llu (+ 1 id)", (unsigned long long)d); },
    [](Run& run, uint64_t dim) {
      const uint32_t vocab = 11;
      const vec tbl = run.random(vocab * dim, -3.0, 3.0);
      Buffer bt = run.upload(tbl);
      const std::vector<uint32_t> ids = {0, 10, 3, 3, 7, 10, 1};
      Buffer out = run.output(ids.size() * dim);
      run.ctx.embedding_lookup({.table = bt, .ids = ids, .out = out, .dim = dim});
      vec ref;
      fr::embedding_lookup(tbl, ids, ids.size(), ref, dim);
      run.check("out", out, ref, dim, 'E');
      Buffer one = run.output(dim);
      const std::vector<uint32_t> id1 = {vocab - 1};
      run.ctx.embedding_lookup({.table = bt, .ids = id1, .out = one, .dim = dim});
      run.check("out (1 id)", one, slice(tbl, (vocab - 1) * dim, dim), dim, 'E');
    });

struct EmbDev { Dtype ids; uint64_t dim; };
const bool kEmbDev = register_table<EmbDev>(
    "embedding_lookup_dev", kActDtypes,
    {{Dtype::u32, 1}, {Dtype::u32, 7}, {Dtype::u32, 129}, {Dtype::i32, 1}, {Dtype::i32, 7}, {Dtype::i32, 129}},
    [](const EmbDev& s) { return fmt("%s ids, dim %llu, out-of-range ids give +0.0 rows",
                                     std::string(to_string(s.ids)).c_str(), (unsigned long long)s.dim); },
    [](Run& run, const EmbDev& s) {
      const uint32_t vocab = 9;
      const vec tbl = run.random(vocab * s.dim, -3.0, 3.0);
      Buffer bt = run.upload(tbl);
      std::vector<int64_t> ids = {0, 8, 4, 9, 4, 1000, 2};
      if (s.ids == Dtype::i32) ids.push_back(-1);
      Buffer bi = run.upload(vec(ids.begin(), ids.end()), s.ids);
      Buffer out = run.output(ids.size() * s.dim);
      run.ctx.embedding_lookup_dev({.table = bt, .ids = bi, .out = out, .batch = ids.size(), .dim = s.dim});
      vec ref;
      fr::embedding_lookup_dev(tbl, ids, ref, ids.size(), s.dim);
      run.check("out", out, ref, s.dim, 'E');
    });

struct Thd { uint64_t tokens, heads, dim; };
const std::vector<Thd> kThd = {{1, 1, 1}, {1, 4, 64}, {5, 3, 7}, {33, 2, 80}, {7, 8, 128}};
std::string thd_name(const Thd& s) {
  return fmt("%llu tokens, %llu heads, dim %llu", (unsigned long long)s.tokens, (unsigned long long)s.heads,
             (unsigned long long)s.dim);
}
const bool kT2H = register_table<Thd>("transpose_head_to_token", kActDtypes, kThd, thd_name, [](Run& run, const Thd& s) {
  const uint64_t n = s.tokens * s.heads * s.dim;
  const vec src = run.random(n, -3.0, 3.0);
  Buffer bs = run.upload(src), out = run.output(n);
  run.ctx.transpose_head_to_token({.src = bs, .dst = out, .tokens = s.tokens, .heads = s.heads, .dim = s.dim});
  vec ref;
  fr::transpose_head_to_token(src, ref, s.tokens, s.heads, s.dim);
  run.check("dst", out, ref, s.dim, 'E');
});
const bool kH2T = register_table<Thd>("transpose_token_to_head", kActDtypes, kThd, thd_name, [](Run& run, const Thd& s) {
  const uint64_t n = s.tokens * s.heads * s.dim;
  const vec src = run.random(n, -3.0, 3.0);
  Buffer bs = run.upload(src), out = run.output(n);
  run.ctx.transpose_token_to_head({.src = bs, .dst = out, .tokens = s.tokens, .heads = s.heads, .dim = s.dim});
  vec ref;
  fr::transpose_token_to_head(src, ref, s.tokens, s.heads, s.dim);
  run.check("dst", out, ref, s.dim, 'E');
});

// ------------------------------------------------------------------------------------ argmax
struct Mn { uint64_t m, n; };
const bool kArgmax = register_table<Mn>(
    "argmax_rows_f16", kActDtypes, {{1, 1}, {1, 1000}, {7, 33}, {3, 32001}},
    [](const Mn& s) { return fmt("%llu rows of %llu", (unsigned long long)s.m, (unsigned long long)s.n); },
    [](Run& run, const Mn& s) {
      const vec logits = run.random(s.m * s.n, -10.0, 10.0);
      Buffer b = run.upload(logits);
      const auto got = run.ctx.argmax_rows_f16({.logits = b, .m = s.m, .n = s.n});
      std::vector<uint32_t> ref;
      fr::argmax_rows_f16(logits, s.m, s.n, ref);
      run.check_values("ids", vec(got.begin(), got.end()), vec(ref.begin(), ref.end()), 0, Dtype::u32, 'E');
    });

}  // namespace

FERRUM_CONFORMANCE_CASE("argmax_rows_f16", "ties, NaN, signed zeros, infinities; m = 0", kActDtypes) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const uint64_t n = 5;
  const vec logits = {
      1.0,  3.0,  3.0,  2.0,  -1.0,  // tie: first index 1
      nan,  -2.0, nan,  -1.0, -3.0,  // NaN skipped: 3
      -0.0, 0.0,  -0.0, -1.0, -2.0,  // -0.0 == +0.0: 0
      -inf, -inf, -inf, -inf, -inf,  // all -inf: 0
      nan,  nan,  nan,  nan,  nan,   // all NaN: 0
      1.0,  inf,  2.0,  inf,  nan,   // +inf wins, first: 1
      -5.0, -4.0, -3.0, -2.0, -1.0,  // last: 4
      nan,  -inf, -inf, nan,  -inf,  // first non-NaN -inf: 1
  };
  const uint64_t m = logits.size() / n;
  Buffer b = run.upload(logits);
  const auto got = run.ctx.argmax_rows_f16({.logits = b, .m = m, .n = n});
  const vec expect = {1, 3, 0, 0, 0, 1, 4, 1};
  run.check_values("ids", vec(got.begin(), got.end()), expect, 0, Dtype::u32, 'E');
  if (!run.ctx.argmax_rows_f16({.logits = b, .m = 0, .n = n}).empty()) run.fail("m = 0 must give no ids");
}

FERRUM_CONFORMANCE_CASE("add_inplace", "overflow gives +-inf, NaN propagates", kActDtypes) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double big = run.dtype == Dtype::f16 ? 65504.0 : 3.0e38;
  vec r = ft::round_to(raw(run.dtype), vec{big, -big, 1.0, nan});
  const vec x = ft::round_to(raw(run.dtype), vec{big, -big, 2.0, 1.0});
  Buffer br = run.upload(r), bx = run.upload(x);
  run.ctx.add_inplace(br, bx, 4);
  fr::add_inplace(r, x, 4, raw(run.dtype));
  run.check("residual", br, r, 0);
}

// ------------------------------------------------------------------------------------ error paths
// Every conforming plugin rejects these with INVALID_ARGUMENT naming the op and the argument, and
// modifies nothing (docs/spec.md §0.12).

FERRUM_CONFORMANCE_CASE("gemm", "error: buffers too small, dtype mismatch, out aliasing a", kActDtypes) {
  const Dtype other = run.dtype == Dtype::f32 ? Dtype::f16 : Dtype::f32;
  Buffer a = run.upload(run.random(3 * 4)), b = run.upload(run.random(5 * 4));
  Buffer small = run.output(3 * 5 - 1, Dtype::invalid, 0);
  run.expect_error("out too small", kInvalid, [&] { run.ctx.gemm({.a = a, .b = b, .out = small, .m = 3, .n = 5, .k = 4}); }, "gemm");
  run.check_untouched("out too small: out", small, 0, small.count());
  Buffer out = run.output(4 * 5, Dtype::invalid, 0);
  run.expect_error("a too small", kInvalid, [&] { run.ctx.gemm({.a = a, .b = b, .out = out, .m = 4, .n = 5, .k = 4}); }, "'a'");
  run.check_untouched("a too small: out", out, 0, out.count());
  Buffer wrong = run.output(3 * 5, other, 0);
  run.expect_error("out of another dtype", kInvalid, [&] { run.ctx.gemm({.a = a, .b = b, .out = wrong, .m = 3, .n = 5, .k = 4}); }, "out");
  run.check_untouched("out of another dtype: out", wrong, 0, wrong.count());
  const vec av = run.random(16);
  Buffer sq = run.upload(av);
  run.expect_error("out == a", kInvalid, [&] { run.ctx.gemm({.a = sq, .b = sq, .out = sq, .m = 4, .n = 4, .k = 4}); }, "out");
  run.check_values("out == a: a unchanged", run.download(sq), av, 0, run.dtype, 'E');
}

FERRUM_CONFORMANCE_CASE("rms_norm", "error: w too small / of another dtype, bad eps, dim = 0", kActDtypes) {
  const Dtype other = run.dtype == Dtype::f32 ? Dtype::f16 : Dtype::f32;
  Buffer x = run.upload(run.random(2 * 8)), w7 = run.upload(run.random(7)), out = run.output(16, Dtype::invalid, 0);
  run.expect_error("w too small", kInvalid, [&] { run.ctx.rms_norm({.x = x, .w = w7, .eps = 1e-6f, .out = out, .tokens = 2, .dim = 8}); }, "rms_norm");
  Buffer wo = run.upload(run.random(8, -1.0, 1.0, other), other);
  run.expect_error("w of another dtype", kInvalid, [&] { run.ctx.rms_norm({.x = x, .w = wo, .eps = 1e-6f, .out = out, .tokens = 2, .dim = 8}); }, "w");
  Buffer w = run.upload(run.random(8));
  for (float eps : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), -1e-6f})
    run.expect_error(fmt("eps %g", eps), kInvalid, [&] { run.ctx.rms_norm({.x = x, .w = w, .eps = eps, .out = out, .tokens = 2, .dim = 8}); }, "eps");
  run.expect_error("dim = 0 with tokens > 0", kInvalid, [&] { run.ctx.rms_norm({.x = x, .w = w, .eps = 1e-6f, .out = out, .tokens = 2, .dim = 0}); }, "rms_norm");
  run.check_untouched("out", out, 0, out.count());
}

FERRUM_CONFORMANCE_CASE("fused_add_rms_norm", "error: out == residual", kActDtypes) {
  const vec r = run.random(16);
  Buffer res = run.upload(r), x = run.upload(run.random(16)), w = run.upload(run.random(8));
  run.expect_error("out == residual", kInvalid, [&] { run.ctx.fused_add_rms_norm({.residual = res, .x = x, .w = w, .eps = 1e-6f, .out = res, .tokens = 2, .dim = 8}); },
                   "residual");
  run.check_values("residual unchanged", run.download(res), r, 0, run.dtype, 'E');
}

FERRUM_CONFORMANCE_CASE("gelu", "error: integer x", kActDtypes) {
  Buffer x = run.upload(vec(8, 1.0), Dtype::i32), out = run.output(8, Dtype::invalid, 0);
  run.expect_error("x of dtype I32", kInvalid, [&] { run.ctx.gelu(x, out, 8); }, "gelu");
  run.check_untouched("out", out, 0, 8);
}

FERRUM_CONFORMANCE_CASE("split_qkv", "error: q too small", kActDtypes) {
  Buffer qkv = run.upload(run.random(2 * 24));
  Buffer q = run.output(15, Dtype::invalid, 0), k = run.output(16, Dtype::invalid, 0), v = run.output(16, Dtype::invalid, 0);
  run.expect_error("q too small", kInvalid, [&] { run.ctx.split_qkv({.qkv = qkv, .q = q, .k = k, .v = v, .tokens = 2, .q_dim = 8, .kv_dim = 8}); }, "'q'");
  run.check_untouched("q", q, 0, 15);
  run.check_untouched("k", k, 0, 16);
  run.check_untouched("v", v, 0, 16);
}

FERRUM_CONFORMANCE_CASE("embedding_lookup", "error: id >= vocab", kActDtypes) {
  Buffer tbl = run.upload(run.random(4 * 8)), out = run.output(2 * 8, Dtype::invalid, 0);
  const std::vector<uint32_t> ids = {1, 4};
  run.expect_error("id 4 of vocab 4", kInvalid, [&] { run.ctx.embedding_lookup({.table = tbl, .ids = ids, .out = out, .dim = 8}); }, "embedding_lookup");
  run.check_untouched("out", out, 0, out.count());
}

FERRUM_CONFORMANCE_CASE("argmax_rows_f16", "error: n = 0 with m > 0", kActDtypes) {
  Buffer b = run.upload(run.random(4));
  run.expect_error("n = 0", kInvalid, [&] { (void)run.ctx.argmax_rows_f16({.logits = b, .m = 1, .n = 0}); }, "argmax_rows_f16");
}
