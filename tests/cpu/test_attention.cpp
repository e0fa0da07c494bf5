// tests/cpu — contiguous KV cache and flash_attention (OPS.md §0.8, §5).
#include "helpers.hpp"

#include <tuple>

using namespace cputest;

TEST_CASE("kv_cache_append_head_major: new rows written, others untouched", "[attention][kv_cache_append_head_major]") {
  const Dtype d = ACT_DTYPE();
  const auto [nkv, hd] = GENERATE(table<uint64_t, uint64_t>({{1, 8}, {2, 64}, {4, 80}, {3, 7}, {1, 128}}));
  const auto [cache_len, new_tokens, cap] =
      GENERATE(table<uint64_t, uint64_t, uint64_t>({{0, 1, 1}, {0, 5, 9}, {7, 1, 8}, {3, 4, 12}}));
  INFO("dtype " << name(d) << " nkv " << nkv << " hd " << hd << " cache_len " << cache_len << " new " << new_tokens
                << " capacity " << cap);
  const vec nk = rnd(d, nkv * new_tokens * hd, 4000 + hd), nv = rnd(d, nkv * new_tokens * hd, 4100 + hd);
  Buffer bk = upload(d, nk), bv = upload(d, nv);
  Buffer ck = poisoned(d, nkv * cap * hd), cv = poisoned(d, nkv * cap * hd);
  ctx().kv_cache_append_head_major(ck, cv, cache_len, cap, bk, bv, new_tokens, nkv, hd);
  vec rk, rv;
  fr::kv_cache_append_head_major(rk, rv, cache_len, cap, nk, nv, new_tokens, nkv, hd);
  const vec gk = download(ck), gv = download(cv);
  for (uint64_t h = 0; h < nkv; ++h) {
    const uint64_t base = h * cap * hd, off = base + cache_len * hd, len = new_tokens * hd;
    expect_poison(ck, base, cache_len * hd, "cache_k before");
    expect_poison(cv, base, cache_len * hd, "cache_v before");
    expect_poison(ck, off + len, (cap - cache_len - new_tokens) * hd, "cache_k after");
    expect_poison(cv, off + len, (cap - cache_len - new_tokens) * hd, "cache_v after");
    expect_match(slice(gk, off, len), slice(rk, off, len), d, hd, 'E', "cache_k head " + std::to_string(h));
    expect_match(slice(gv, off, len), slice(rv, off, len), d, hd, 'E', "cache_v head " + std::to_string(h));
  }
}

namespace {

struct AttnCase {
  uint64_t batch, q_len, kv_len, pos_offset, nh, nkv, hd;
  bool causal;
  float scale;
  uint64_t stride, window;
};

std::ostream& operator<<(std::ostream& os, const AttnCase& c) {
  return os << "batch " << c.batch << " q_len " << c.q_len << " kv_len " << c.kv_len << " pos_offset " << c.pos_offset
            << " heads " << c.nh << "/" << c.nkv << " hd " << c.hd << " causal " << c.causal << " scale " << c.scale
            << " kv_seq_stride " << c.stride << " sliding_window " << c.window;
}

// K/V buffers [batch, nkv, S, hd] whose rows >= kv_len hold NaN poison: the op must never read them.
struct KV {
  vec k, v;
  Buffer bk, bv;
};
KV make_kv(Dtype d, const AttnCase& c, uint64_t seed) {
  const uint64_t S = c.stride ? c.stride : c.kv_len;
  const uint64_t n = c.batch * c.nkv * S * c.hd;
  KV kv;
  kv.k = rnd(d, n, seed, -2.0, 2.0);
  kv.v = rnd(d, n, seed + 1, -2.0, 2.0);
  auto kb = ft::encode(dt(d), kv.k), vb = ft::encode(dt(d), kv.v);
  const auto poison = ft::poison_bytes(dt(d), 1);
  const uint64_t es = ft::dtype_size(dt(d));
  for (uint64_t blk = 0; blk < c.batch * c.nkv; ++blk)
    for (uint64_t j = c.kv_len; j < S; ++j)
      for (uint64_t x = 0; x < c.hd; ++x) {
        const uint64_t i = (blk * S + j) * c.hd + x;
        std::memcpy(&kb[i * es], poison.data(), es);
        std::memcpy(&vb[i * es], poison.data(), es);
      }
  kv.bk = upload_bytes(d, kb);
  kv.bv = upload_bytes(d, vb);
  return kv;
}

void run_attention(Dtype d, const AttnCase& c) {
  INFO("dtype " << name(d) << " " << c);
  const uint64_t nq = c.batch * c.nh * c.q_len * c.hd;
  const vec q = rnd(d, nq, 4200 + nq, -2.0, 2.0);
  Buffer bq = upload(d, q);
  KV kv = make_kv(d, c, 4300 + nq);
  Buffer out = poisoned(d, nq + 3);
  ctx().flash_attention(bq, kv.bk, kv.bv, out, c.batch, c.q_len, c.kv_len, c.pos_offset, c.nh, c.nkv, c.hd, c.causal,
                        c.scale, c.stride, c.window);
  vec ref;
  fr::flash_attention(q, kv.k, kv.v, ref, c.batch, c.q_len, c.kv_len, c.pos_offset, c.nh, c.nkv, c.hd, c.causal,
                      c.scale, c.stride, c.window);
  expect_written(out, 0, nq, "flash_attention out");
  expect_poison(out, nq, 3, "beyond the output");
  expect_match(slice(download(out), 0, nq), ref, d, c.hd, 'F', "flash_attention");
}

}  // namespace

TEST_CASE("flash_attention", "[attention][flash_attention]") {
  const Dtype d = ACT_DTYPE();
  const AttnCase c = GENERATE(values<AttnCase>({
      // decode, MHA, cache of capacity 64 holding 17 rows
      {1, 1, 17, 16, 4, 4, 64, true, 0.0f, 64, 0},
      // decode, GQA 2, batch 2, hd 128
      {2, 1, 33, 32, 8, 4, 128, true, 0.0f, 40, 0},
      // prefill with pos_offset, GQA 4, hd 80, batch 3
      {3, 5, 40, 35, 8, 2, 80, true, 0.0f, 0, 0},
      // plain causal prefill, GQA 8, hd 16
      {1, 7, 7, 0, 8, 1, 16, true, 0.0f, 0, 0},
      // non-causal, explicit scale, hd 8
      {2, 4, 19, 0, 4, 2, 8, false, 0.3f, 0, 0},
      // causal sliding window, capacity > kv_len
      {1, 9, 30, 21, 4, 1, 64, true, 0.0f, 32, 5},
      // non-causal sliding window
      {1, 3, 20, 5, 2, 2, 16, false, 0.0f, 0, 4},
      // window 1: each query sees only its own position
      {1, 4, 12, 8, 2, 1, 64, true, 0.0f, 0, 1},
      // kv_len = 0: zero rows
      {2, 3, 0, 0, 4, 2, 64, true, 0.0f, 0, 0},
      // kv_len = 0 with a capacity
      {1, 1, 0, 0, 2, 1, 128, true, 0.0f, 16, 0},
      // odd head_dim
      {1, 3, 11, 8, 3, 1, 7, true, 0.0f, 0, 0},
      {2, 2, 5, 3, 2, 2, 1, false, 0.0f, 0, 0},
      // queries whose window lies beyond kv_len: empty visible sets -> zero rows
      {1, 2, 5, 10, 2, 1, 16, true, 0.0f, 8, 3},
      // some rows with an empty visible set, others not
      {1, 4, 5, 3, 2, 1, 16, true, 0.0f, 0, 2},
      // q_len > kv_len with pos_offset 0 (queries see every key)
      {1, 4, 2, 0, 2, 2, 64, true, 0.0f, 0, 0},
      // long KV (tiles), decode over a capacity
      {1, 2, 300, 298, 2, 1, 64, true, 0.0f, 320, 0},
      // long prefill, non-causal, GQA 2, hd 128
      {1, 33, 129, 96, 4, 2, 128, false, 0.125f, 0, 0},
      // GQA 4 decode, batch 3, hd 80, negative scale
      {3, 1, 65, 64, 4, 1, 80, true, -0.05f, 0, 0},
  }));
  run_attention(d, c);
}

TEST_CASE("flash_attention: deterministic", "[attention][flash_attention][determinism]") {
  const Dtype d = ACT_DTYPE();
  const AttnCase c{2, 9, 200, 191, 8, 2, 64, true, 0.0f, 256, 0};
  const uint64_t nq = c.batch * c.nh * c.q_len * c.hd;
  Buffer bq = upload(d, rnd(d, nq, 4400));
  KV kv = make_kv(d, c, 4500);
  Buffer o1 = poisoned(d, nq), o2 = poisoned(d, nq);
  ctx().flash_attention(bq, kv.bk, kv.bv, o1, c.batch, c.q_len, c.kv_len, c.pos_offset, c.nh, c.nkv, c.hd, c.causal,
                        c.scale, c.stride, c.window);
  ctx().flash_attention(bq, kv.bk, kv.bv, o2, c.batch, c.q_len, c.kv_len, c.pos_offset, c.nh, c.nkv, c.hd, c.causal,
                        c.scale, c.stride, c.window);
  CHECK(read_bytes(o1) == read_bytes(o2));
}

TEST_CASE("flash_attention: batch 0 / q_len 0 are no-ops", "[attention][flash_attention]") {
  const Dtype d = ACT_DTYPE();
  Buffer q = poisoned(d, 0), k = upload(d, rnd(d, 64, 1)), v = upload(d, rnd(d, 64, 2));
  Buffer out = poisoned(d, 8);
  ctx().flash_attention(q, k, v, out, 0, 1, 8, 0, 1, 1, 8, true, 0.0f, 0, 0);
  expect_all_poison(out, "batch 0");
  ctx().flash_attention(q, k, v, out, 1, 0, 8, 0, 1, 1, 8, true, 0.0f, 0, 0);
  expect_all_poison(out, "q_len 0");
}
