// Conformance cases: batched per-cache decode and pointer staging (docs/spec.md §5.1) against the float64
// references of conformance/ref/ref_paged.hpp. Every activation dtype; several items of unequal
// length (L = 0 included), GQA 1/2/4/8, sliding windows, appends that overflow the capacity (no
// write), the staging limits (slot, num_layers, m).
#include <ferrum/conformance/kit.hpp>

#include "ref/ref_paged.hpp"
#include "src/case_util.hpp"

#include <limits>

using namespace ferrum;
using namespace ferrum::conformance;
using namespace ferrum::conformance::util;

namespace {

using idxv = std::vector<int64_t>;
using ull = unsigned long long;

struct BatchShape {
  uint64_t nq, nkv, hd, capacity;
  std::vector<int64_t> lens;  // kv_lens (post-append) for attention; cache_lens (pre-append) for append
  uint64_t window = 0;
  bool i32 = false;
};

std::string batch_name(const BatchShape& s) {
  std::string r = fmt("nq %llu nkv %llu hd %llu cap %llu, lens [", (ull)s.nq, (ull)s.nkv, (ull)s.hd, (ull)s.capacity);
  for (size_t i = 0; i < s.lens.size(); ++i) r += fmt("%s%lld", i ? " " : "", (long long)s.lens[i]);
  r += "]";
  if (s.window) r += fmt(", window %llu", (ull)s.window);
  if (s.i32) r += ", i32 idx";
  return r;
}

Buffer upload_idx(Run& run, const idxv& v, bool i32) {
  if (i32) return run.upload_i32(std::vector<int32_t>(v.begin(), v.end()));
  return run.upload_u32(std::vector<uint32_t>(v.begin(), v.end()));
}

void run_attention(Run& run, const BatchShape& s) {
  const uint64_t m = s.lens.size(), per = s.nkv * s.capacity * s.hd;
  const vec q = run.random(m * s.nq * s.hd);
  std::vector<vec> kc, vc;
  std::vector<Buffer> kb, vb;
  std::vector<ferrum_buffer*> kh, vh;
  for (uint64_t i = 0; i < m; ++i) {
    kc.push_back(run.random(per));
    vc.push_back(run.random(per));
    kb.push_back(run.upload(kc.back()));
    vb.push_back(run.upload(vc.back()));
    kh.push_back(kb.back().get());
    vh.push_back(vb.back().get());
  }
  Buffer bq = run.upload(q), lens = upload_idx(run, s.lens, s.i32);
  Buffer out = run.output(m * s.nq * s.hd);
  const uint64_t maxv = s.capacity;
  const float scale = s.window ? 0.0f : 0.1f;
  run.ctx.flash_attention_batched_per_cache({.q = bq, .k_caches = kh, .v_caches = vh, .kv_lens = lens, .out = out, .nq = s.nq, .nkv = s.nkv, .hd = s.hd, .scale = scale, .max_valid_kv = maxv, .capacity = s.capacity, .slot = 3,
                                            .sliding_window = s.window});
  vec ref;
  fr::flash_attention_batched_per_cache(q, kc, vc, m, s.lens, ref, s.nq, s.nkv, s.hd, scale, maxv, s.capacity, s.window);
  run.check("out", out, ref, s.nq * s.hd);
}

void run_append(Run& run, const BatchShape& s) {
  const uint64_t m = s.lens.size(), per = s.nkv * s.capacity * s.hd;
  const vec nd = run.random(m * s.nkv * s.hd);
  std::vector<vec> caches;
  std::vector<Buffer> cb;
  std::vector<ferrum_buffer*> ch;
  for (uint64_t i = 0; i < m; ++i) {
    caches.push_back(run.random(per));
    cb.push_back(run.upload(caches.back()));
    ch.push_back(cb.back().get());
  }
  Buffer bnd = run.upload(nd), lens = upload_idx(run, s.lens, s.i32);
  run.ctx.kv_cache_append_batched_per_cache({.caches = ch, .new_data = bnd, .cache_lens = lens, .capacity = s.capacity, .nkv = s.nkv, .hd = s.hd, .slot = 64 + 5});
  fr::kv_cache_append_batched_per_cache(caches, nd, s.lens, s.capacity, m, s.nkv, s.hd);
  for (uint64_t i = 0; i < m; ++i) run.check(fmt("caches[%llu]", (ull)i), cb[i], caches[i], s.hd, 'E');
}

const std::vector<BatchShape> kAttention = {
    {4, 4, 64, 16, {1}},
    {8, 2, 128, 64, {37, 1, 64, 0}},
    {8, 1, 64, 40, {40, 13}, 0, true},
    {6, 3, 80, 33, {33, 20, 7}, 5},
    {4, 2, 256, 20, {19, 2}},
    {3, 3, 7, 9, {9, 4}, 2},
    {2, 1, 1, 5, {5}},
};
const std::vector<BatchShape> kAppend = {
    {0, 4, 64, 16, {0, 15, 16, 3}},       // item 2 is full (cache_len == capacity): not written
    {0, 2, 7, 9, {8, 0}, 0, true},
    {0, 1, 128, 4, {2}},
};

const bool kCases = [] {
  register_table<BatchShape>("flash_attention_batched_per_cache", kActDtypes, kAttention, batch_name, run_attention);
  register_table<BatchShape>("kv_cache_append_batched_per_cache", kActDtypes, kAppend, batch_name, run_append);
  return true;
}();

}  // namespace

FERRUM_CONFORMANCE_CASE("flash_attention_batched_per_cache", "append then attend (decode step)", kActDtypes) {
  // Two layers' worth of a decode step for 3 items: append K and V, then attend over the result.
  const uint64_t m = 3, nq = 4, nkv = 2, hd = 32, cap = 24;
  const idxv before = {5, 0, 23};
  idxv after;
  for (int64_t b : before) after.push_back(b + 1);
  std::vector<vec> kc, vc;
  std::vector<Buffer> kb, vb;
  std::vector<ferrum_buffer*> kh, vh;
  for (uint64_t i = 0; i < m; ++i) {
    kc.push_back(run.random(nkv * cap * hd));
    vc.push_back(run.random(nkv * cap * hd));
    kb.push_back(run.upload(kc.back()));
    vb.push_back(run.upload(vc.back()));
    kh.push_back(kb.back().get());
    vh.push_back(vb.back().get());
  }
  run.ctx.populate_batched_pointers({.k_caches = kh.data(), .v_caches = vh.data(), .num_layers = 1, .m = m});
  const vec nk = run.random(m * nkv * hd), nv = run.random(m * nkv * hd), q = run.random(m * nq * hd);
  Buffer bnk = run.upload(nk), bnv = run.upload(nv), bq = run.upload(q);
  Buffer lb = run.upload_u32({5, 0, 23}), la = run.upload_u32({6, 1, 24});
  run.ctx.kv_cache_append_batched_per_cache({.caches = kh, .new_data = bnk, .cache_lens = lb, .capacity = cap, .nkv = nkv, .hd = hd, .slot = 0});
  run.ctx.kv_cache_append_batched_per_cache({.caches = vh, .new_data = bnv, .cache_lens = lb, .capacity = cap, .nkv = nkv, .hd = hd, .slot = 64});
  Buffer out = run.output(m * nq * hd);
  run.ctx.flash_attention_batched_per_cache({.q = bq, .k_caches = kh, .v_caches = vh, .kv_lens = la, .out = out, .nq = nq, .nkv = nkv, .hd = hd, .scale = 0.0f, .max_valid_kv = cap, .capacity = cap, .slot = 0, .sliding_window = 0});
  fr::kv_cache_append_batched_per_cache(kc, nk, before, cap, m, nkv, hd);
  fr::kv_cache_append_batched_per_cache(vc, nv, before, cap, m, nkv, hd);
  vec ref;
  fr::flash_attention_batched_per_cache(q, kc, vc, m, after, ref, nq, nkv, hd, 0.0f, cap, cap, 0);
  run.check("out", out, ref, nq * hd);
  for (uint64_t i = 0; i < m; ++i) run.check(fmt("k_caches[%llu]", (ull)i), kb[i], kc[i], hd, 'E');
}

FERRUM_CONFORMANCE_CASE("populate_batched_pointers", "staging limits", kActDtypes) {
  Buffer k = run.upload(run.random(8)), v = run.upload(run.random(8));
  std::vector<ferrum_buffer*> kh(65, k.get()), vh(65, v.get());
  run.ctx.populate_batched_pointers({.k_caches = kh.data(), .v_caches = vh.data(), .num_layers = 64, .m = 1});  // every layer slot
  run.expect_error("num_layers 65", ErrorCode::invalid_argument,
                   [&] { run.ctx.populate_batched_pointers({.k_caches = kh.data(), .v_caches = vh.data(), .num_layers = 65, .m = 1}); }, "num_layers");
  run.expect_error("m 65 (> batched_items)", ErrorCode::unsupported,
                   [&] { run.ctx.populate_batched_pointers({.k_caches = kh.data(), .v_caches = vh.data(), .num_layers = 1, .m = 65}); }, "m");
}

FERRUM_CONFORMANCE_CASE("flash_attention_batched_per_cache", "argument errors write nothing", kActDtypes) {
  const uint64_t nq = 4, nkv = 2, hd = 8, cap = 4;
  Buffer k = run.upload(run.random(nkv * cap * hd)), v = run.upload(run.random(nkv * cap * hd));
  Buffer q = run.upload(run.random(nq * hd)), lens = run.upload_u32({2});
  Buffer out = run.output(nq * hd);
  std::vector<ferrum_buffer*> kh = {k.get()}, vh = {v.get()};
  run.expect_error("slot 128", ErrorCode::invalid_argument, [&] {
    run.ctx.flash_attention_batched_per_cache({.q = q, .k_caches = kh, .v_caches = vh, .kv_lens = lens, .out = out, .nq = nq, .nkv = nkv, .hd = hd, .scale = 0.0f, .max_valid_kv = cap, .capacity = cap, .slot = 128, .sliding_window = 0});
  }, "slot");
  run.expect_error("max_valid_kv > capacity", ErrorCode::invalid_argument, [&] {
    run.ctx.flash_attention_batched_per_cache({.q = q, .k_caches = kh, .v_caches = vh, .kv_lens = lens, .out = out, .nq = nq, .nkv = nkv, .hd = hd, .scale = 0.0f, .max_valid_kv = cap + 1, .capacity = cap, .slot = 0, .sliding_window = 0});
  }, "max_valid_kv");
  run.expect_error("gqa 4 / 3", ErrorCode::invalid_argument, [&] {
    run.ctx.flash_attention_batched_per_cache({.q = q, .k_caches = kh, .v_caches = vh, .kv_lens = lens, .out = out, .nq = nq, .nkv = 3, .hd = hd, .scale = 0.0f, .max_valid_kv = cap, .capacity = cap, .slot = 0, .sliding_window = 0});
  });
  run.expect_error("cache too small", ErrorCode::invalid_argument, [&] {
    run.ctx.flash_attention_batched_per_cache({.q = q, .k_caches = kh, .v_caches = vh, .kv_lens = lens, .out = out, .nq = nq, .nkv = nkv, .hd = hd, .scale = 0.0f, .max_valid_kv = cap, .capacity = cap * 2, .slot = 0, .sliding_window = 0});
  }, "k_caches[0]");
  run.check_untouched("out", out, 0, out.count());
}
