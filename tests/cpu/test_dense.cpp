// tests/cpu — dense ops (OPS.md §3) against the float64 references.
#include "helpers.hpp"

#include <limits>
#include <tuple>

using namespace cputest;

TEST_CASE("gemm", "[dense][gemm]") {
  const Dtype d = ACT_DTYPE();
  const auto [m, n, k] = GENERATE(table<uint64_t, uint64_t, uint64_t>(
      {{1, 1, 1}, {7, 13, 5}, {33, 65, 129}, {64, 64, 64}, {1, 1000, 33}, {17, 3, 1000}, {2, 7, 1}}));
  INFO("dtype " << name(d) << " m " << m << " n " << n << " k " << k);
  const vec a = rnd(d, m * k, 100 + m), b = rnd(d, n * k, 200 + n);
  Buffer ba = upload(d, a), bb = upload(d, b);
  Buffer out = poisoned(d, m * n + 5);
  ctx().gemm(ba, bb, out, m, n, k);
  vec ref;
  fr::gemm(a, b, ref, m, n, k);
  expect_written(out, 0, m * n, "gemm out");
  expect_poison(out, m * n, 5, "gemm beyond [m, n]");
  expect_match(slice(download(out), 0, m * n), ref, d, n, 'F', "gemm");
}

TEST_CASE("gemm: a and b the same handle", "[dense][gemm]") {
  const Dtype d = ACT_DTYPE();
  const uint64_t m = 9, k = 23;
  const vec a = rnd(d, m * k, 7);
  Buffer ba = upload(d, a);
  Buffer out = poisoned(d, m * m);
  ctx().gemm(ba, ba, out, m, m, k);
  vec ref;
  fr::gemm(a, a, ref, m, m, k);
  expect_match(download(out), ref, d, m, 'F', "gemm a==b");
}

TEST_CASE("gemm: k = 0 gives +0.0, m = 0 / n = 0 are no-ops", "[dense][gemm]") {
  const Dtype d = ACT_DTYPE();
  INFO("dtype " << name(d));
  SECTION("k = 0") {
    Buffer a = poisoned(d, 0), b = poisoned(d, 0);
    Buffer out = poisoned(d, 3 * 5);
    ctx().gemm(a, b, out, 3, 5, 0);
    expect_match(download(out), vec(15, 0.0), d, 5, 'E', "gemm k=0");
  }
  SECTION("m = 0") {
    Buffer a = upload(d, rnd(d, 8, 1)), b = upload(d, rnd(d, 8, 2));
    Buffer out = poisoned(d, 4);
    ctx().gemm(a, b, out, 0, 1, 8);
    expect_all_poison(out, "gemm m=0");
  }
  SECTION("n = 0") {
    Buffer a = upload(d, rnd(d, 8, 1)), b = upload(d, rnd(d, 8, 2));
    Buffer out = poisoned(d, 4);
    ctx().gemm(a, b, out, 1, 0, 8);
    expect_all_poison(out, "gemm n=0");
  }
}

TEST_CASE("gemm: deterministic", "[dense][gemm][determinism]") {
  const Dtype d = ACT_DTYPE();
  const uint64_t m = 37, n = 71, k = 300;
  Buffer a = upload(d, rnd(d, m * k, 5)), b = upload(d, rnd(d, n * k, 6));
  Buffer o1 = poisoned(d, m * n), o2 = poisoned(d, m * n);
  ctx().gemm(a, b, o1, m, n, k);
  ctx().gemm(a, b, o2, m, n, k);
  CHECK(read_bytes(o1) == read_bytes(o2));
}

TEST_CASE("rms_norm", "[dense][rms_norm]") {
  const Dtype d = ACT_DTYPE();
  const uint64_t dim = GENERATE(1ull, 7ull, 33ull, 129ull, 1000ull);
  const uint64_t tokens = GENERATE(1ull, 5ull);
  const bool alias = GENERATE(false, true);
  INFO("dtype " << name(d) << " tokens " << tokens << " dim " << dim << " alias " << alias);
  const float eps = 1e-5f;
  const vec x = rnd(d, tokens * dim, 300 + dim, -2.0, 2.0), w = rnd(d, dim, 400 + dim, 0.5, 1.5);
  Buffer bx = upload(d, x), bw = upload(d, w);
  vec ref;
  fr::rms_norm(x, w, eps, ref, tokens, dim);
  if (alias) {
    ctx().rms_norm(bx, bw, eps, bx, tokens, dim);
    expect_match(download(bx), ref, d, dim, 'F', "rms_norm out==x");
  } else {
    Buffer out = poisoned(d, tokens * dim + 3);
    ctx().rms_norm(bx, bw, eps, out, tokens, dim);
    expect_written(out, 0, tokens * dim);
    expect_poison(out, tokens * dim, 3);
    expect_match(slice(download(out), 0, tokens * dim), ref, d, dim, 'F', "rms_norm");
  }
}

TEST_CASE("fused_add_rms_norm", "[dense][fused_add_rms_norm]") {
  const Dtype d = ACT_DTYPE();
  const uint64_t dim = GENERATE(1ull, 7ull, 33ull, 129ull, 1000ull);
  const uint64_t tokens = GENERATE(1ull, 4ull);
  const bool alias_x = GENERATE(false, true);
  INFO("dtype " << name(d) << " tokens " << tokens << " dim " << dim << " out==x " << alias_x);
  const float eps = 1e-6f;
  vec res = rnd(d, tokens * dim, 500 + dim, -2.0, 2.0);
  const vec x = rnd(d, tokens * dim, 600 + dim, -2.0, 2.0), w = rnd(d, dim, 700 + dim, 0.5, 1.5);
  Buffer br = upload(d, res), bx = upload(d, x), bw = upload(d, w);
  vec ref;
  fr::fused_add_rms_norm(res, x, w, eps, ref, tokens, dim, dt(d));
  if (alias_x) {
    ctx().fused_add_rms_norm(br, bx, bw, eps, bx, tokens, dim);
    expect_match(download(bx), ref, d, dim, 'F', "fused_add_rms_norm out (aliasing x)");
  } else {
    Buffer out = poisoned(d, tokens * dim);
    ctx().fused_add_rms_norm(br, bx, bw, eps, out, tokens, dim);
    expect_match(download(out), ref, d, dim, 'F', "fused_add_rms_norm out");
  }
  expect_match(download(br), res, d, dim, 'F', "fused_add_rms_norm residual");
}

TEST_CASE("layer_norm", "[dense][layer_norm]") {
  const Dtype d = ACT_DTYPE();
  const uint64_t dim = GENERATE(1ull, 7ull, 33ull, 129ull, 1000ull);
  const uint64_t tokens = GENERATE(1ull, 3ull);
  const bool alias = GENERATE(false, true);
  INFO("dtype " << name(d) << " tokens " << tokens << " dim " << dim << " alias " << alias);
  const float eps = 1e-5f;
  const vec x = rnd(d, tokens * dim, 800 + dim, 2.0, 6.0);  // non-zero mean
  const vec g = rnd(d, dim, 900 + dim, 0.5, 1.5), be = rnd(d, dim, 1000 + dim, -0.5, 0.5);
  Buffer bx = upload(d, x), bg = upload(d, g), bb = upload(d, be);
  vec ref;
  fr::layer_norm(x, g, be, eps, ref, tokens, dim);
  if (alias) {
    ctx().layer_norm(bx, bg, bb, eps, bx, tokens, dim);
    expect_match(download(bx), ref, d, dim, 'F', "layer_norm out==x");
  } else {
    Buffer out = poisoned(d, tokens * dim);
    ctx().layer_norm(bx, bg, bb, eps, out, tokens, dim);
    expect_match(download(out), ref, d, dim, 'F', "layer_norm");
  }
}

TEST_CASE("layer_norm: large mean, small variance (no E[x^2] - mu^2)", "[dense][layer_norm]") {
  const uint64_t tokens = 3, dim = 257;
  // mean/std = 100: a two-pass f32 implementation stays inside 1e-5 (the mean's f32 rounding costs
  // <= 3.8e-6 relative), E[x^2] - mu^2 in f32 does not (it loses ~4 digits of the variance).
  vec x = ft::normal_dtype(FERRUM_DTYPE_F32, tokens * dim, 100.0, 1.0, 77);
  const vec g = rnd(Dtype::f32, dim, 78, 0.5, 1.5), be = rnd(Dtype::f32, dim, 79, -0.5, 0.5);
  Buffer bx = upload(Dtype::f32, x), bg = upload(Dtype::f32, g), bb = upload(Dtype::f32, be);
  Buffer out = poisoned(Dtype::f32, tokens * dim);
  ctx().layer_norm(bx, bg, bb, 1e-6f, out, tokens, dim);
  vec ref;
  fr::layer_norm(x, g, be, 1e-6f, ref, tokens, dim);
  expect_match(download(out), ref, Dtype::f32, dim, 'F', "layer_norm large mean");
}

TEST_CASE("gelu", "[dense][gelu]") {
  const Dtype d = ACT_DTYPE();
  const uint64_t len = GENERATE(1ull, 7ull, 33ull, 1000ull);
  const bool alias = GENERATE(false, true);
  INFO("dtype " << name(d) << " len " << len << " alias " << alias);
  const vec x = rnd(d, len, 1100 + len, -6.0, 6.0);
  Buffer bx = upload(d, x);
  vec ref;
  fr::gelu(x, ref, len);
  if (alias) {
    ctx().gelu(bx, bx, len);
    expect_match(download(bx), ref, d, 0, 'F', "gelu out==x");
  } else {
    Buffer out = poisoned(d, len + 2);
    ctx().gelu(bx, out, len);
    expect_poison(out, len, 2);
    expect_match(slice(download(out), 0, len), ref, d, 0, 'F', "gelu");
  }
}

TEST_CASE("add_inplace", "[dense][add_inplace]") {
  const Dtype d = ACT_DTYPE();
  const uint64_t len = GENERATE(1ull, 7ull, 33ull, 1000ull);
  INFO("dtype " << name(d) << " len " << len);
  vec r = rnd(d, len, 1200 + len, -4.0, 4.0);
  const vec x = rnd(d, len, 1300 + len, -4.0, 4.0);
  SECTION("distinct") {
    // one element past len must stay as it was
    vec rr = r;
    rr.push_back(0.5);
    Buffer br = upload(d, rr), bx = upload(d, x);
    ctx().add_inplace(br, bx, len);
    fr::add_inplace(r, x, len, dt(d));
    const vec got = download(br);
    expect_match(slice(got, 0, len), r, d, 0, 'F', "add_inplace");
    CHECK(got[len] == 0.5);
  }
  SECTION("x is residual") {
    Buffer br = upload(d, r);
    ctx().add_inplace(br, br, len);
    fr::add_inplace(r, r, len, dt(d));
    expect_match(download(br), r, d, 0, 'F', "add_inplace x==residual");
  }
}

TEST_CASE("scaled_add_inplace", "[dense][scaled_add_inplace]") {
  const Dtype d = ACT_DTYPE();
  const uint64_t len = GENERATE(1ull, 7ull, 129ull, 1000ull);
  const float scale = GENERATE(0.37f, -2.5f, 0.0f);
  INFO("dtype " << name(d) << " len " << len << " scale " << scale);
  vec dst = rnd(d, len, 1400 + len, -4.0, 4.0);
  const vec src = rnd(d, len, 1500 + len, -4.0, 4.0);
  Buffer bd = upload(d, dst), bs = upload(d, src);
  ctx().scaled_add_inplace(bd, bs, scale, len);
  fr::scaled_add_inplace(dst, src, scale, len, dt(d));
  expect_match(download(bd), dst, d, 0, 'F', "scaled_add_inplace");
}

TEST_CASE("add_bias", "[dense][add_bias]") {
  const Dtype d = ACT_DTYPE();
  const auto [rows, cols] = GENERATE(table<uint64_t, uint64_t>({{1, 1}, {3, 7}, {5, 129}, {2, 1000}, {1, 33}}));
  INFO("dtype " << name(d) << " rows " << rows << " cols " << cols);
  vec data = rnd(d, rows * cols, 1600 + cols, -3.0, 3.0);
  const vec bias = rnd(d, cols, 1700 + cols, -1.0, 1.0);
  Buffer bd = upload(d, data), bb = upload(d, bias);
  ctx().add_bias(bd, bb, rows, cols);
  fr::add_bias(data, bias, rows, cols, dt(d));
  expect_match(download(bd), data, d, cols, 'F', "add_bias");
}

TEST_CASE("split_qkv", "[dense][split_qkv]") {
  const Dtype d = ACT_DTYPE();
  const auto [tokens, q_dim, kv_dim] =
      GENERATE(table<uint64_t, uint64_t, uint64_t>({{1, 8, 8}, {3, 7, 3}, {5, 33, 65}, {2, 128, 32}, {1, 1, 1}}));
  INFO("dtype " << name(d) << " tokens " << tokens << " q_dim " << q_dim << " kv_dim " << kv_dim);
  const vec qkv = rnd(d, tokens * (q_dim + 2 * kv_dim), 1800 + q_dim, -3.0, 3.0);
  Buffer b = upload(d, qkv);
  Buffer q = poisoned(d, tokens * q_dim + 1), k = poisoned(d, tokens * kv_dim + 1), v = poisoned(d, tokens * kv_dim + 1);
  ctx().split_qkv(b, q, k, v, tokens, q_dim, kv_dim);
  vec rq, rk, rv;
  fr::split_qkv(qkv, rq, rk, rv, tokens, q_dim, kv_dim);
  expect_match(slice(download(q), 0, tokens * q_dim), rq, d, q_dim, 'E', "split_qkv q");
  expect_match(slice(download(k), 0, tokens * kv_dim), rk, d, kv_dim, 'E', "split_qkv k");
  expect_match(slice(download(v), 0, tokens * kv_dim), rv, d, kv_dim, 'E', "split_qkv v");
  expect_poison(q, tokens * q_dim, 1);
  expect_poison(k, tokens * kv_dim, 1);
  expect_poison(v, tokens * kv_dim, 1);
}

TEST_CASE("fused_silu_mul_split", "[dense][fused_silu_mul_split]") {
  const Dtype d = ACT_DTYPE();
  const uint64_t im = GENERATE(1ull, 7ull, 129ull, 1000ull);
  const uint64_t tokens = GENERATE(1ull, 4ull);
  INFO("dtype " << name(d) << " tokens " << tokens << " im " << im);
  const vec gu = rnd(d, tokens * 2 * im, 1900 + im, -6.0, 6.0);
  Buffer b = upload(d, gu);
  Buffer out = poisoned(d, tokens * im + 2);
  ctx().fused_silu_mul_split(b, out, tokens, im);
  vec ref;
  fr::fused_silu_mul_split(gu, ref, tokens, im);
  expect_poison(out, tokens * im, 2);
  expect_match(slice(download(out), 0, tokens * im), ref, d, im, 'F', "fused_silu_mul_split");
}

TEST_CASE("fused_silu_mul_split_strided: row range, other rows untouched", "[dense][fused_silu_mul_split_strided]") {
  const Dtype d = ACT_DTYPE();
  const uint64_t im = GENERATE(1ull, 33ull, 129ull);
  const auto [in_off, out_off, tokens] = GENERATE(table<uint64_t, uint64_t, uint64_t>({{0, 0, 3}, {2, 5, 3}, {4, 1, 1}}));
  INFO("dtype " << name(d) << " im " << im << " in_off " << in_off << " out_off " << out_off << " tokens " << tokens);
  const uint64_t in_rows = in_off + tokens + 2, out_rows = out_off + tokens + 2;
  const vec gu = rnd(d, in_rows * 2 * im, 2000 + im, -6.0, 6.0);
  Buffer b = upload(d, gu);
  Buffer out = poisoned(d, out_rows * im);
  ctx().fused_silu_mul_split_strided(b, in_off, out, out_off, tokens, im);
  vec ref;
  fr::fused_silu_mul_split_strided(gu, in_off, ref, out_off, tokens, im);
  expect_poison(out, 0, out_off * im, "rows before out_row_offset");
  expect_poison(out, (out_off + tokens) * im, (out_rows - out_off - tokens) * im, "rows after the range");
  expect_match(slice(download(out), out_off * im, tokens * im), slice(ref, out_off * im, tokens * im), d, im, 'F',
               "fused_silu_mul_split_strided");
}

TEST_CASE("embedding_lookup", "[dense][embedding_lookup]") {
  const Dtype d = ACT_DTYPE();
  const uint64_t dim = GENERATE(1ull, 7ull, 129ull);
  INFO("dtype " << name(d) << " dim " << dim);
  const uint32_t vocab = 11;
  const vec tbl = rnd(d, vocab * dim, 2100 + dim, -3.0, 3.0);
  Buffer bt = upload(d, tbl);
  const std::vector<uint32_t> ids = {0, 10, 3, 3, 7, 10, 1};
  Buffer out = poisoned(d, ids.size() * dim + 1);
  ctx().embedding_lookup(bt, ids, out, dim);
  vec ref;
  fr::embedding_lookup(tbl, ids, ids.size(), ref, dim);
  expect_poison(out, ids.size() * dim, 1);
  expect_match(slice(download(out), 0, ids.size() * dim), ref, d, dim, 'E', "embedding_lookup");

  // a single token
  Buffer one = poisoned(d, dim);
  const std::vector<uint32_t> id1 = {vocab - 1};
  ctx().embedding_lookup(bt, id1, one, dim);
  expect_match(download(one), slice(tbl, (vocab - 1) * dim, dim), d, dim, 'E', "embedding_lookup 1 id");
}

TEST_CASE("embedding_lookup_dev: device ids, out-of-range rows +0.0", "[dense][embedding_lookup_dev]") {
  const Dtype d = ACT_DTYPE();
  const Dtype idt = GENERATE(Dtype::u32, Dtype::i32);
  const uint64_t dim = GENERATE(1ull, 7ull, 129ull);
  INFO("dtype " << name(d) << " ids " << name(idt) << " dim " << dim);
  const uint32_t vocab = 9;
  const vec tbl = rnd(d, vocab * dim, 2200 + dim, -3.0, 3.0);
  Buffer bt = upload(d, tbl);
  std::vector<int64_t> ids = {0, 8, 4, 9, 4, 1000, 2};
  if (idt == Dtype::i32) ids.push_back(-1);
  Buffer bi = upload_idx(idt, ids);
  Buffer out = poisoned(d, ids.size() * dim + 1);
  ctx().embedding_lookup_dev(bt, bi, out, ids.size(), dim);
  vec ref;
  fr::embedding_lookup_dev(tbl, ids, ref, ids.size(), dim);
  expect_poison(out, ids.size() * dim, 1);
  expect_match(slice(download(out), 0, ids.size() * dim), ref, d, dim, 'E', "embedding_lookup_dev");
}

TEST_CASE("transpose_head_to_token / transpose_token_to_head", "[dense][transpose]") {
  const Dtype d = ACT_DTYPE();
  const auto [tokens, heads, dim] =
      GENERATE(table<uint64_t, uint64_t, uint64_t>({{1, 1, 1}, {1, 4, 64}, {5, 3, 7}, {33, 2, 80}, {7, 8, 128}}));
  INFO("dtype " << name(d) << " tokens " << tokens << " heads " << heads << " dim " << dim);
  const uint64_t n = tokens * heads * dim;
  const vec src = rnd(d, n, 2300 + n, -3.0, 3.0);
  Buffer bs = upload(d, src);
  SECTION("head_to_token") {
    Buffer out = poisoned(d, n + 1);
    ctx().transpose_head_to_token(bs, out, tokens, heads, dim);
    vec ref;
    fr::transpose_head_to_token(src, ref, tokens, heads, dim);
    expect_poison(out, n, 1);
    expect_match(slice(download(out), 0, n), ref, d, dim, 'E', "transpose_head_to_token");
  }
  SECTION("token_to_head") {
    Buffer out = poisoned(d, n + 1);
    ctx().transpose_token_to_head(bs, out, tokens, heads, dim);
    vec ref;
    fr::transpose_token_to_head(src, ref, tokens, heads, dim);
    expect_poison(out, n, 1);
    expect_match(slice(download(out), 0, n), ref, d, dim, 'E', "transpose_token_to_head");
  }
}

TEST_CASE("argmax_rows_f16: every dtype, ties, NaN, signed zeros, infinities", "[dense][argmax_rows_f16]") {
  const Dtype d = ACT_DTYPE();
  INFO("dtype " << name(d));
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  SECTION("edge rows") {
    const uint64_t n = 5;
    const vec logits = {
        1.0,  3.0,  3.0,  2.0,  -1.0,   // tie: first index 1
        nan,  -2.0, nan,  -1.0, -3.0,   // NaN skipped: 3
        -0.0, 0.0,  -0.0, -1.0, -2.0,   // -0.0 == +0.0: 0
        -inf, -inf, -inf, -inf, -inf,   // all -inf: 0
        nan,  nan,  nan,  nan,  nan,    // all NaN: 0
        1.0,  inf,  2.0,  inf,  nan,    // +inf wins, first: 1
        -5.0, -4.0, -3.0, -2.0, -1.0,   // last: 4
        nan,  -inf, -inf, nan,  -inf,   // first non-NaN -inf: 1
    };
    const uint64_t m = logits.size() / n;
    Buffer b = upload(d, logits);
    const auto got = ctx().argmax_rows_f16(b, m, n);
    std::vector<uint32_t> ref;
    fr::argmax_rows_f16(logits, m, n, ref);
    REQUIRE(got.size() == m);
    CHECK(got == ref);
    CHECK(ref == std::vector<uint32_t>{1, 3, 0, 0, 0, 1, 4, 1});
  }
  SECTION("random rows") {
    const auto [m, n] = GENERATE(table<uint64_t, uint64_t>({{1, 1}, {1, 1000}, {7, 33}, {3, 32001}}));
    INFO("m " << m << " n " << n);
    const vec logits = rnd(d, m * n, 2400 + n, -10.0, 10.0);
    Buffer b = upload(d, logits);
    const auto got = ctx().argmax_rows_f16(b, m, n);
    std::vector<uint32_t> ref;
    fr::argmax_rows_f16(logits, m, n, ref);
    CHECK(got == ref);
  }
  SECTION("m = 0") {
    Buffer b = upload(d, {1.0});
    CHECK(ctx().argmax_rows_f16(b, 0, 1).empty());
  }
}

TEST_CASE("NaN propagates, overflow gives inf (OPS.md §0.2 rule 3)", "[dense][nan]") {
  const Dtype d = ACT_DTYPE();
  INFO("dtype " << name(d));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  SECTION("gemm: a NaN in row 1 of a poisons row 1 of out only") {
    const uint64_t m = 3, n = 4, k = 5;
    vec a = rnd(d, m * k, 1), b = rnd(d, n * k, 2);
    a[1 * k + 2] = nan;
    Buffer ba = upload(d, a), bb = upload(d, b), out = poisoned(d, m * n);
    ctx().gemm(ba, bb, out, m, n, k);
    vec ref;
    fr::gemm(a, b, ref, m, n, k);
    expect_match(download(out), ref, d, n, 'F', "gemm NaN row");
  }
  SECTION("add_inplace: overflow to +-inf") {
    const double big = d == Dtype::f16 ? 65504.0 : 3.0e38;
    vec r = ft::round_to(dt(d), vec{big, -big, 1.0, nan});
    const vec x = ft::round_to(dt(d), vec{big, -big, 2.0, 1.0});
    Buffer br = upload(d, r), bx = upload(d, x);
    ctx().add_inplace(br, bx, 4);
    fr::add_inplace(r, x, 4, dt(d));
    CHECK(std::isinf(r[0]));
    expect_match(download(br), r, d, 0, 'F', "add_inplace overflow");
  }
}
