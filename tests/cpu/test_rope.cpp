// tests/cpu — the QK-norm / RoPE family (OPS.md §0.7, §4) against the float64 references.
//
// Matrix: activation dtype × table dtype (the activation dtype, or F32 tables with F16/BF16
// activations) × qk_mode 0..3 × head_dim {8, 16, 64, 80, 128} (+ odd 7 and 1 for mode 0) × shapes
// (1 token / several, pos_offset 0 / > 0, GQA ratios). Tolerance F, mode 0 outputs and V copies E.
#include "helpers.hpp"

#include <tuple>

using namespace cputest;

namespace {

struct Rope {
  vec cos, sin;        // stored values (rounded to the table dtype)
  Buffer bcos, bsin;   // empty for mode 0
  vec w1, w2;          // norm weights (stored values)
  Buffer bw1, bw2;     // empty unless mode 1
  const Buffer* c() const { return bcos ? &bcos : nullptr; }
  const Buffer* s() const { return bsin ? &bsin : nullptr; }
  const Buffer* n1() const { return bw1 ? &bw1 : nullptr; }
  const Buffer* n2() const { return bw2 ? &bw2 : nullptr; }
};

// Tables of `rows` positions and norm weights for `mode`. Fields a mode does not read stay NULL
// (OPS.md §0.7 allows it), so the test also proves the op does not touch them.
Rope make_rope(Dtype act, Dtype tab, int32_t mode, uint64_t rows, uint64_t hd, uint64_t seed) {
  Rope r;
  if (mode != 0) {
    fr::rope_tables(rows, hd, 10000.0, r.cos, r.sin);
    r.cos = ft::round_to(dt(tab), r.cos);
    r.sin = ft::round_to(dt(tab), r.sin);
    r.bcos = upload(tab, r.cos);
    r.bsin = upload(tab, r.sin);
  }
  if (mode == 1) {
    r.w1 = rnd(act, hd, seed, 0.5, 1.5);
    r.w2 = rnd(act, hd, seed + 1, 0.5, 1.5);
    r.bw1 = upload(act, r.w1);
    r.bw2 = upload(act, r.w2);
  }
  return r;
}

Dtype table_dtype(Dtype act, bool f32_tables) { return f32_tables ? Dtype::f32 : act; }

char cls_of(int32_t mode) { return mode == 0 ? 'E' : 'F'; }

}  // namespace

TEST_CASE("qk_norm_rope: token-major in, head-major out", "[rope][qk_norm_rope]") {
  const Dtype d = ACT_DTYPE();
  const bool f32_tab = GENERATE(false, true);
  const int32_t mode = GENERATE(0, 1, 2, 3);
  const uint64_t hd = GENERATE(8ull, 16ull, 64ull, 80ull, 128ull, 7ull, 1ull);
  const auto [tokens, heads, pos_offset] =
      GENERATE(table<uint64_t, uint64_t, uint64_t>({{1, 1, 0}, {5, 3, 9}, {1, 4, 17}, {7, 2, 0}}));
  if (hd % 2 && mode != 0) return;  // odd head_dim only for mode 0 (RoPE needs even)
  if (f32_tab && (d == Dtype::f32 || mode == 0)) return;  // same as the act-dtype case
  const Dtype tab = table_dtype(d, f32_tab);
  INFO("dtype " << name(d) << " tables " << name(tab) << " mode " << mode << " hd " << hd << " tokens " << tokens
                << " heads " << heads << " pos_offset " << pos_offset);
  const float eps = 1e-6f;
  const Rope r = make_rope(d, tab, mode, pos_offset + tokens + 3, hd, 3000 + hd);
  const uint64_t n = tokens * heads * hd;
  const vec in = rnd(d, n, 3100 + n, -2.0, 2.0);
  Buffer bin = upload(d, in);
  Buffer out = poisoned(d, n + 2);
  ctx().qk_norm_rope(bin, r.n1(), r.c(), r.s(), out, tokens, heads, hd, pos_offset, eps, mode);
  vec ref;
  fr::qk_norm_rope(in, r.w1, r.cos, r.sin, ref, tokens, heads, hd, pos_offset, eps, mode);
  expect_written(out, 0, n);
  expect_poison(out, n, 2, "beyond the output");
  expect_match(slice(download(out), 0, n), ref, d, hd, cls_of(mode), "qk_norm_rope");
}

TEST_CASE("qk_norm_rope_batched_per_item: device positions, item-major", "[rope][qk_norm_rope_batched_per_item]") {
  const Dtype d = ACT_DTYPE();
  const bool f32_tab = GENERATE(false, true);
  const int32_t mode = GENERATE(0, 1, 2, 3);
  const uint64_t hd = GENERATE(8ull, 16ull, 64ull, 80ull, 128ull, 7ull);
  const Dtype pdt = GENERATE(Dtype::u32, Dtype::i32);
  const auto [m, heads] = GENERATE(table<uint64_t, uint64_t>({{1, 1}, {5, 3}, {3, 8}}));
  if (hd % 2 && mode != 0) return;
  if (f32_tab && (d == Dtype::f32 || mode == 0)) return;
  const Dtype tab = table_dtype(d, f32_tab);
  INFO("dtype " << name(d) << " tables " << name(tab) << " mode " << mode << " hd " << hd << " positions "
                << name(pdt) << " m " << m << " heads " << heads);
  const float eps = 1e-5f;
  const uint64_t rows = 40;
  const Rope r = make_rope(d, tab, mode, rows, hd, 3200 + hd);
  const auto pos32 = ft::random_ids(m, static_cast<uint32_t>(rows), 3300 + m);
  std::vector<int64_t> pos(pos32.begin(), pos32.end());
  pos[0] = rows - 1;  // the last table row
  Buffer bp = upload_idx(pdt, pos);
  const uint64_t n = m * heads * hd;
  const vec in = rnd(d, n, 3400 + n, -2.0, 2.0);
  Buffer bin = upload(d, in);
  Buffer out = poisoned(d, n + 1);
  ctx().qk_norm_rope_batched_per_item(bin, r.n1(), r.c(), r.s(), out, bp, m, heads, hd, eps, mode);
  vec ref;
  fr::qk_norm_rope_batched_per_item(in, r.w1, r.cos, r.sin, ref, pos, m, heads, hd, eps, mode);
  expect_written(out, 0, n);
  expect_poison(out, n, 1);
  expect_match(slice(download(out), 0, n), ref, d, hd, cls_of(mode), "qk_norm_rope_batched_per_item");
}

TEST_CASE("split_qkv_norm_rope: packed rows to head-major Q/K/V", "[rope][split_qkv_norm_rope]") {
  const Dtype d = ACT_DTYPE();
  const bool f32_tab = GENERATE(false, true);
  const int32_t mode = GENERATE(0, 1, 2, 3);
  const uint64_t hd = GENERATE(8ull, 64ull, 80ull, 128ull, 7ull);
  const auto [qh, kvh] = GENERATE(table<uint64_t, uint64_t>({{1, 1}, {4, 2}, {4, 1}, {8, 1}}));
  const auto [tokens, pos_offset] = GENERATE(table<uint64_t, uint64_t>({{1, 12}, {6, 0}, {3, 5}}));
  if (hd % 2 && mode != 0) return;
  if (f32_tab && (d == Dtype::f32 || mode == 0)) return;
  const Dtype tab = table_dtype(d, f32_tab);
  INFO("dtype " << name(d) << " tables " << name(tab) << " mode " << mode << " hd " << hd << " q_heads " << qh
                << " kv_heads " << kvh << " tokens " << tokens << " pos_offset " << pos_offset);
  const float eps = 1e-6f;
  const Rope r = make_rope(d, tab, mode, pos_offset + tokens, hd, 3500 + hd);  // exactly enough rows
  const uint64_t row = (qh + 2 * kvh) * hd;
  const vec qkv = rnd(d, tokens * row, 3600 + row, -2.0, 2.0);
  Buffer b = upload(d, qkv);
  const uint64_t nq = qh * tokens * hd, nk = kvh * tokens * hd;
  Buffer q = poisoned(d, nq + 1), k = poisoned(d, nk + 1), v = poisoned(d, nk + 1);
  ctx().split_qkv_norm_rope(b, r.n1(), r.n2(), r.c(), r.s(), q, k, v, tokens, qh, kvh, hd, pos_offset, eps, mode);
  vec rq, rk, rv;
  fr::split_qkv_norm_rope(qkv, r.w1, r.w2, r.cos, r.sin, rq, rk, rv, tokens, qh, kvh, hd, pos_offset, eps, mode);
  expect_poison(q, nq, 1);
  expect_poison(k, nk, 1);
  expect_poison(v, nk, 1);
  expect_match(slice(download(q), 0, nq), rq, d, hd, cls_of(mode), "split_qkv_norm_rope q_out");
  expect_match(slice(download(k), 0, nk), rk, d, hd, cls_of(mode), "split_qkv_norm_rope k_out");
  expect_match(slice(download(v), 0, nk), rv, d, hd, 'E', "split_qkv_norm_rope v_out");
}

TEST_CASE("split_qkv_norm_rope_into_cache: K/V rows into a contiguous cache", "[rope][split_qkv_norm_rope_into_cache]") {
  const Dtype d = ACT_DTYPE();
  const bool f32_tab = GENERATE(false, true);
  const int32_t mode = GENERATE(0, 1, 2, 3);
  const uint64_t hd = GENERATE(8ull, 64ull, 80ull, 128ull, 7ull);
  const auto [qh, kvh] = GENERATE(table<uint64_t, uint64_t>({{2, 2}, {4, 1}, {8, 2}}));
  const auto [tokens, cache_len, pos_offset] =
      GENERATE(table<uint64_t, uint64_t, uint64_t>({{1, 0, 0}, {1, 9, 9}, {5, 3, 3}, {4, 2, 7}}));
  if (hd % 2 && mode != 0) return;
  if (f32_tab && (d == Dtype::f32 || mode == 0)) return;
  const Dtype tab = table_dtype(d, f32_tab);
  const uint64_t cap = cache_len + tokens + 3;
  INFO("dtype " << name(d) << " tables " << name(tab) << " mode " << mode << " hd " << hd << " q_heads " << qh
                << " kv_heads " << kvh << " tokens " << tokens << " cache_len " << cache_len << " capacity " << cap
                << " pos_offset " << pos_offset);
  const float eps = 1e-6f;
  const Rope r = make_rope(d, tab, mode, pos_offset + tokens + 1, hd, 3700 + hd);
  const uint64_t row = (qh + 2 * kvh) * hd;
  const vec qkv = rnd(d, tokens * row, 3800 + row, -2.0, 2.0);
  Buffer b = upload(d, qkv);
  const uint64_t nq = qh * tokens * hd, ncache = kvh * cap * hd;
  Buffer q = poisoned(d, nq), ck = poisoned(d, ncache), cv = poisoned(d, ncache);
  ctx().split_qkv_norm_rope_into_cache(b, r.n1(), r.n2(), r.c(), r.s(), q, ck, cv, tokens, qh, kvh, hd, pos_offset,
                                       eps, mode, cache_len, cap);
  vec rq, rk, rv;
  fr::split_qkv_norm_rope_into_cache(qkv, r.w1, r.w2, r.cos, r.sin, rq, rk, rv, tokens, qh, kvh, hd, pos_offset, eps,
                                     mode, cache_len, cap);
  expect_match(download(q), rq, d, hd, cls_of(mode), "q_out");
  const vec gk = download(ck), gv = download(cv);
  vec ok_k, ok_v, rk_rows, rv_rows;
  for (uint64_t h = 0; h < kvh; ++h) {
    const uint64_t base = (h * cap) * hd;
    expect_poison(ck, base, cache_len * hd, "cache_k rows before cache_len");
    expect_poison(cv, base, cache_len * hd, "cache_v rows before cache_len");
    const uint64_t after = base + (cache_len + tokens) * hd, n_after = (cap - cache_len - tokens) * hd;
    expect_poison(ck, after, n_after, "cache_k rows after the new ones");
    expect_poison(cv, after, n_after, "cache_v rows after the new ones");
    const uint64_t off = base + cache_len * hd, len = tokens * hd;
    const vec a = slice(gk, off, len), bb = slice(gv, off, len), ra = slice(rk, off, len), rb = slice(rv, off, len);
    ok_k.insert(ok_k.end(), a.begin(), a.end());
    ok_v.insert(ok_v.end(), bb.begin(), bb.end());
    rk_rows.insert(rk_rows.end(), ra.begin(), ra.end());
    rv_rows.insert(rv_rows.end(), rb.begin(), rb.end());
  }
  expect_match(ok_k, rk_rows, d, hd, cls_of(mode), "cache_k new rows");
  expect_match(ok_v, rv_rows, d, hd, 'E', "cache_v new rows");
}

TEST_CASE("qk family: zero tokens is a no-op", "[rope]") {
  const Dtype d = ACT_DTYPE();
  const Rope r = make_rope(d, d, 1, 4, 8, 1);
  Buffer in = poisoned(d, 0), out = poisoned(d, 8);
  ctx().qk_norm_rope(in, r.n1(), r.c(), r.s(), out, 0, 2, 8, 0, 1e-6f, 1);
  expect_all_poison(out, "qk_norm_rope tokens=0");
  Buffer q = poisoned(d, 8), k = poisoned(d, 8), v = poisoned(d, 8);
  ctx().split_qkv_norm_rope(in, r.n1(), r.n2(), r.c(), r.s(), q, k, v, 0, 1, 1, 8, 0, 1e-6f, 1);
  expect_all_poison(q);
  expect_all_poison(k);
  expect_all_poison(v);
}
