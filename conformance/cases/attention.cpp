// Conformance cases: contiguous KV cache and flash_attention (docs/spec.md §0.8, §5) against the
// float64 references. Shape classes: GQA ratios 1/2/4/8, head_dim 64, 80, 96, 112, 128, 192, 256
// plus small odd ones, 1 token (decode), prefill with pos_offset, sliding windows (causal and not),
// kv_seq_stride > kv_len (rows past kv_len hold NaN poison the op must never read), kv_len = 0,
// empty visible sets, batch > 1. Class F; kv_cache_append class E.
#include <ferrum/conformance/kit.hpp>

#include "src/case_util.hpp"

#include <cstring>
#include <limits>

using namespace ferrum;
using namespace ferrum::conformance;
using namespace ferrum::conformance::util;

namespace {

constexpr ErrorCode kInvalid = ErrorCode::invalid_argument;

// ------------------------------------------------------------------------------------ kv_cache_append
struct Append { uint64_t nkv, hd, cache_len, new_tokens, cap; };
std::vector<Append> append_rows() {
  std::vector<Append> out;
  for (auto [nkv, hd] : {std::pair{1ull, 8ull}, {2ull, 64ull}, {4ull, 80ull}, {3ull, 7ull}, {1ull, 128ull}, {2ull, 256ull}})
    for (auto [cl, nt, cap] : {std::tuple{0ull, 1ull, 1ull}, {0ull, 5ull, 9ull}, {7ull, 1ull, 8ull}, {3ull, 4ull, 12ull}})
      out.push_back({nkv, hd, cl, nt, cap});
  return out;
}
const bool kAppend = register_table<Append>(
    "kv_cache_append_head_major", kActDtypes, append_rows(),
    [](const Append& s) {
      return fmt("%llu kv heads, hd %llu, cache_len %llu + %llu new, capacity %llu", (unsigned long long)s.nkv,
                 (unsigned long long)s.hd, (unsigned long long)s.cache_len, (unsigned long long)s.new_tokens,
                 (unsigned long long)s.cap);
    },
    [](Run& run, const Append& s) {
      const uint64_t n_new = s.nkv * s.new_tokens * s.hd, n_cache = s.nkv * s.cap * s.hd;
      const vec nk = run.random(n_new), nv = run.random(n_new);
      Buffer bk = run.upload(nk), bv = run.upload(nv);
      Buffer ck = run.output(n_cache), cv = run.output(n_cache);
      run.ctx.kv_cache_append_head_major({.cache_k = ck, .cache_v = cv, .cache_len = s.cache_len, .cache_capacity = s.cap, .new_k_head_major = bk, .new_v_head_major = bv, .new_tokens = s.new_tokens, .nkv = s.nkv, .hd = s.hd});
      vec rk, rv;
      fr::kv_cache_append_head_major(rk, rv, s.cache_len, s.cap, nk, nv, s.new_tokens, s.nkv, s.hd);
      const vec gk = run.download(ck, n_cache), gv = run.download(cv, n_cache);
      for (uint64_t h = 0; h < s.nkv; ++h) {
        const uint64_t base = h * s.cap * s.hd, off = base + s.cache_len * s.hd, len = s.new_tokens * s.hd;
        const std::string head = fmt(" (kv head %llu)", (unsigned long long)h);
        run.check_untouched("cache_k rows before cache_len" + head, ck, base, off);
        run.check_untouched("cache_v rows before cache_len" + head, cv, base, off);
        run.check_untouched("cache_k rows after the new ones" + head, ck, off + len, base + s.cap * s.hd);
        run.check_untouched("cache_v rows after the new ones" + head, cv, off + len, base + s.cap * s.hd);
        run.check_values("cache_k new rows" + head, slice(gk, off, len), slice(rk, off, len), s.hd, run.dtype, 'E');
        run.check_values("cache_v new rows" + head, slice(gv, off, len), slice(rv, off, len), s.hd, run.dtype, 'E');
      }
      run.check_untouched("cache_k guard", ck, n_cache, ck.count());
      run.check_untouched("cache_v guard", cv, n_cache, cv.count());
    });

// ------------------------------------------------------------------------------------ flash_attention
struct Attn {
  const char* what;
  uint64_t batch, q_len, kv_len, pos_offset, nh, nkv, hd;
  bool causal;
  float scale;
  uint64_t stride, window;
};

// K/V [batch, nkv, S, hd] whose rows >= kv_len hold the NaN poison: the op must never read them.
Buffer upload_kv(Run& run, const vec& values, const Attn& c) {
  const uint64_t S = c.stride ? c.stride : c.kv_len;
  auto bytes = ft::encode(raw(run.dtype), values);
  const auto poison = ft::poison_bytes(raw(run.dtype), 1);
  const uint64_t es = poison.size();
  for (uint64_t blk = 0; blk < c.batch * c.nkv; ++blk)
    for (uint64_t j = c.kv_len; j < S; ++j)
      for (uint64_t x = 0; x < c.hd; ++x) std::memcpy(&bytes[((blk * S + j) * c.hd + x) * es], poison.data(), es);
  static const uint8_t dummy[8] = {};
  return run.ctx.from_slice_typed(run.dtype, bytes.empty() ? dummy : bytes.data(), values.size());
}

void run_attention(Run& run, const Attn& c) {
  const uint64_t S = c.stride ? c.stride : c.kv_len;
  const uint64_t nq = c.batch * c.nh * c.q_len * c.hd, nkv = c.batch * c.nkv * S * c.hd;
  const vec q = run.random(nq, -2.0, 2.0), k = run.random(nkv, -2.0, 2.0), v = run.random(nkv, -2.0, 2.0);
  Buffer bq = run.upload(q), bk = upload_kv(run, k, c), bv = upload_kv(run, v, c);
  Buffer out = run.output(nq);
  run.ctx.flash_attention({.q = bq, .k = bk, .v = bv, .out = out, .batch = c.batch, .q_len = c.q_len, .kv_len = c.kv_len, .pos_offset = c.pos_offset, .num_heads = c.nh, .num_kv_heads = c.nkv, .head_dim = c.hd, .causal = c.causal,
                          .scale = c.scale, .kv_seq_stride = c.stride, .sliding_window = c.window});
  vec ref;
  fr::flash_attention(q, k, v, ref, c.batch, c.q_len, c.kv_len, c.pos_offset, c.nh, c.nkv, c.hd, c.causal, c.scale,
                      c.stride, c.window);
  run.check("out", out, ref, c.hd);
}

std::string attn_name(const Attn& c) {
  return fmt("%s: batch %llu, q_len %llu, kv_len %llu, pos %llu, heads %llu/%llu, hd %llu, %s, scale %g, stride %llu, "
             "window %llu",
             c.what, (unsigned long long)c.batch, (unsigned long long)c.q_len, (unsigned long long)c.kv_len,
             (unsigned long long)c.pos_offset, (unsigned long long)c.nh, (unsigned long long)c.nkv,
             (unsigned long long)c.hd, c.causal ? "causal" : "non-causal", c.scale, (unsigned long long)c.stride,
             (unsigned long long)c.window);
}

std::vector<Attn> attention_rows() {
  std::vector<Attn> rows = {
      {"decode MHA", 1, 1, 17, 16, 4, 4, 64, true, 0.0f, 64, 0},
      {"decode gqa2 batch", 2, 1, 33, 32, 8, 4, 128, true, 0.0f, 40, 0},
      {"prefill gqa4 pos_offset", 3, 5, 40, 35, 8, 2, 80, true, 0.0f, 0, 0},
      {"prefill gqa8", 1, 7, 7, 0, 8, 1, 16, true, 0.0f, 0, 0},
      {"non-causal scale", 2, 4, 19, 0, 4, 2, 8, false, 0.3f, 0, 0},
      {"causal window", 1, 9, 30, 21, 4, 1, 64, true, 0.0f, 32, 5},
      {"non-causal window", 1, 3, 20, 5, 2, 2, 16, false, 0.0f, 0, 4},
      {"window 1", 1, 4, 12, 8, 2, 1, 64, true, 0.0f, 0, 1},
      {"kv_len 0", 2, 3, 0, 0, 4, 2, 64, true, 0.0f, 0, 0},
      {"kv_len 0 with capacity", 1, 1, 0, 0, 2, 1, 128, true, 0.0f, 16, 0},
      {"odd hd", 1, 3, 11, 8, 3, 1, 7, true, 0.0f, 0, 0},
      {"hd 1", 2, 2, 5, 3, 2, 2, 1, false, 0.0f, 0, 0},
      {"window beyond kv_len (empty rows)", 1, 2, 5, 10, 2, 1, 16, true, 0.0f, 8, 3},
      {"some empty rows", 1, 4, 5, 3, 2, 1, 16, true, 0.0f, 0, 2},
      {"q_len > kv_len", 1, 4, 2, 0, 2, 2, 64, true, 0.0f, 0, 0},
      {"long decode over capacity", 1, 2, 300, 298, 2, 1, 64, true, 0.0f, 320, 0},
      {"long prefill non-causal gqa2", 1, 33, 129, 96, 4, 2, 128, false, 0.125f, 0, 0},
      {"decode gqa4 negative scale", 3, 1, 65, 64, 4, 1, 80, true, -0.05f, 0, 0},
  };
  // The matrix: every production head_dim × GQA ratio 1/2/4/8, decode (1 token) over a
  // kv_len that is not a multiple of 16 or 32, with kv_seq_stride > kv_len.
  for (uint64_t hd : {64ull, 80ull, 96ull, 112ull, 128ull, 192ull, 256ull})
    for (uint64_t ratio : {1ull, 2ull, 4ull, 8ull})
      rows.push_back({"decode matrix", 1, 1, 37, 36, 8, 8 / ratio, hd, true, 0.0f, 48, 0});
  // Prefill per head_dim, batch 2, sliding window, GQA 4.
  for (uint64_t hd : {64ull, 96ull, 128ull, 192ull, 256ull})
    rows.push_back({"prefill window batch", 2, 6, 45, 39, 8, 2, hd, true, 0.0f, 0, 13});
  return rows;
}

const bool kAttention = register_table<Attn>("flash_attention", kActDtypes, attention_rows(), attn_name, run_attention);
// The large family: long-context decode and a causal prefill chunk over kv_len >= 8192.
const bool kAttentionLarge = register_table<Attn>(
    "flash_attention", kActDtypes,
    {{"long-context decode", 1, 1, 8192, 8191, 8, 2, 128, true, 0.0f, 0, 0},
     {"long-context prefill chunk", 1, 16, 9000, 8984, 4, 1, 64, true, 0.0f, 0, 0}},
    attn_name, run_attention, "large");

}  // namespace

FERRUM_CONFORMANCE_CASE("flash_attention", "deterministic (two runs bitwise equal)", kActDtypes) {
  const Attn c{"", 2, 9, 200, 191, 8, 2, 64, true, 0.0f, 256, 0};
  const uint64_t nq = c.batch * c.nh * c.q_len * c.hd, nkv = c.batch * c.nkv * c.stride * c.hd;
  Buffer bq = run.upload(run.random(nq)), bk = upload_kv(run, run.random(nkv), c), bv = upload_kv(run, run.random(nkv), c);
  Buffer o1 = run.output(nq), o2 = run.output(nq);
  for (Buffer* o : {&o1, &o2})
    run.ctx.flash_attention({.q = bq, .k = bk, .v = bv, .out = *o, .batch = c.batch, .q_len = c.q_len, .kv_len = c.kv_len, .pos_offset = c.pos_offset, .num_heads = c.nh, .num_kv_heads = c.nkv, .head_dim = c.hd, .causal = c.causal,
                            .scale = c.scale, .kv_seq_stride = c.stride, .sliding_window = c.window});
  run.check_values("second run vs first", run.download(o2, nq), run.download(o1, nq), c.hd, run.dtype, 'E');
}

FERRUM_CONFORMANCE_CASE("flash_attention", "batch 0 / q_len 0 are no-ops", kActDtypes) {
  Buffer q = run.output(0, Dtype::invalid, 0), k = run.upload(run.random(64)), v = run.upload(run.random(64));
  Buffer out = run.output(0, Dtype::invalid, 8);
  run.ctx.flash_attention({.q = q, .k = k, .v = v, .out = out, .batch = 0, .q_len = 1, .kv_len = 8, .pos_offset = 0, .num_heads = 1, .num_kv_heads = 1, .head_dim = 8, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0});
  run.check_untouched("out (batch 0)", out, 0, out.count());
  run.ctx.flash_attention({.q = q, .k = k, .v = v, .out = out, .batch = 1, .q_len = 0, .kv_len = 8, .pos_offset = 0, .num_heads = 1, .num_kv_heads = 1, .head_dim = 8, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0});
  run.check_untouched("out (q_len 0)", out, 0, out.count());
}

// ------------------------------------------------------------------------------------ error paths

FERRUM_CONFORMANCE_CASE("flash_attention", "error: k too small, v of another dtype, GQA, scale, stride", kActDtypes) {
  const Dtype other = run.dtype == Dtype::f32 ? Dtype::f16 : Dtype::f32;
  Buffer q = run.upload(run.random(2 * 8)), k = run.upload(run.random(4 * 8)), v = run.upload(run.random(8 * 8));
  Buffer out = run.output(16, Dtype::invalid, 0);
  run.expect_error("k smaller than kv_seq_stride rows", kInvalid,
                   [&] { run.ctx.flash_attention({.q = q, .k = k, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = 4, .pos_offset = 3, .num_heads = 2, .num_kv_heads = 1, .head_dim = 8, .causal = true, .scale = 0.0f, .kv_seq_stride = 8, .sliding_window = 0}); }, "'k'");
  Buffer k8 = run.upload(run.random(8 * 8)), vo = run.upload(run.random(8 * 8, -1.0, 1.0, other), other);
  run.expect_error("v of another dtype", kInvalid,
                   [&] { run.ctx.flash_attention({.q = q, .k = k8, .v = vo, .out = out, .batch = 1, .q_len = 1, .kv_len = 4, .pos_offset = 3, .num_heads = 1, .num_kv_heads = 1, .head_dim = 8, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0}); }, "'v'");
  run.expect_error("num_heads % num_kv_heads != 0", kInvalid,
                   [&] { run.ctx.flash_attention({.q = q, .k = k8, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = 4, .pos_offset = 3, .num_heads = 3, .num_kv_heads = 2, .head_dim = 8, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0}); },
                   "flash_attention");
  run.expect_error("num_kv_heads = 0", kInvalid,
                   [&] { run.ctx.flash_attention({.q = q, .k = k8, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = 4, .pos_offset = 3, .num_heads = 1, .num_kv_heads = 0, .head_dim = 8, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0}); },
                   "flash_attention");
  for (float s : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()})
    run.expect_error(fmt("scale %g", s), kInvalid,
                     [&] { run.ctx.flash_attention({.q = q, .k = k8, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = 4, .pos_offset = 3, .num_heads = 1, .num_kv_heads = 1, .head_dim = 8, .causal = true, .scale = s, .kv_seq_stride = 0, .sliding_window = 0}); }, "scale");
  run.expect_error("kv_len > kv_seq_stride", kInvalid,
                   [&] { run.ctx.flash_attention({.q = q, .k = k8, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = 6, .pos_offset = 5, .num_heads = 1, .num_kv_heads = 1, .head_dim = 8, .causal = true, .scale = 0.0f, .kv_seq_stride = 4, .sliding_window = 0}); },
                   "flash_attention");
  run.check_untouched("out", out, 0, out.count());
}

FERRUM_CONFORMANCE_CASE("kv_cache_append_head_major", "error: cache_len + new_tokens > capacity", kActDtypes) {
  Buffer nk = run.upload(run.random(2 * 8)), nv = run.upload(run.random(2 * 8));
  Buffer ck = run.output(4 * 8, Dtype::invalid, 0), cv = run.output(4 * 8, Dtype::invalid, 0);
  run.expect_error("overflow", kInvalid,
                   [&] { run.ctx.kv_cache_append_head_major({.cache_k = ck, .cache_v = cv, .cache_len = 3, .cache_capacity = 4, .new_k_head_major = nk, .new_v_head_major = nv, .new_tokens = 2, .nkv = 1, .hd = 8}); },
                   "kv_cache_append_head_major");
  run.check_untouched("cache_k", ck, 0, ck.count());
  run.check_untouched("cache_v", cv, 0, cv.count());
}
