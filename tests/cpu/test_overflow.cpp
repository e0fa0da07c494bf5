// tests/cpu — the arithmetic rule: sizes, offsets, products and positions that wrap past 2^64.
//
// Every case calls the CPU plugin twice, through its raw slot (the C ABI, with the plugin's own
// checks only) and through the facade (generated checks, then the slot), with values 0, 1, 2^32,
// 2^63, 2^64 - 1 and combinations whose sums or products wrap to 0 or to a small number. The
// answer must be INVALID_ARGUMENT with a message naming the op and the arguments, the outputs
// (poisoned, with guard elements) must be untouched, and nothing may crash — before this rule
// several of these divided by zero, wrote before a buffer or returned zeros as a success.
#include "helpers.hpp"

#include <array>
#include <cstring>
#include <limits>

using namespace cputest;
using ferrum::ErrorCode;

namespace {

constexpr ErrorCode kInvalid = ErrorCode::invalid_argument;
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr uint64_t k32 = uint64_t{1} << 32;
constexpr uint64_t k63 = uint64_t{1} << 63;
constexpr Dtype D = Dtype::f32;
constexpr uint64_t kGuard = 16;  // poisoned elements past every output's needed size

const ferrum_plugin_api& api() { return *backend().api(); }

// The raw slot's answer and its error detail.
struct Raw {
  ferrum_status status;
  std::string message;
};

template <class Args, class Slot>
Raw call_raw(Slot slot, Args a) {
  a.struct_size = sizeof(Args);
  REQUIRE(slot != nullptr);
  const ferrum_status st = slot(ctx().get(), &a);
  char buf[2048] = {};
  uint64_t needed = 0;
  api().error_detail(ctx().get(), buf, sizeof buf, &needed);
  return {st, st == FERRUM_STATUS_OK ? std::string() : std::string(buf)};
}

// The raw call was refused as INVALID_ARGUMENT and its detail names every needle.
void expect_raw_invalid(const Raw& r, std::initializer_list<std::string> needles) {
  INFO("raw slot message: " << r.message);
  CHECK(r.status == FERRUM_STATUS_INVALID_ARGUMENT);
  for (const std::string& n : needles) {
    INFO("message must contain '" << n << "'");
    CHECK(r.message.find(n) != std::string::npos);
  }
}

// The same through the facade (a ferrum::Error of code invalid_argument).
void expect_facade_invalid(const std::function<void()>& f, std::initializer_list<std::string> needles) {
  expect_error(f, kInvalid, needles);
}

std::string num(uint64_t v) { return std::to_string(v); }

Buffer idx(const std::vector<int64_t>& v) { return upload_idx(Dtype::u32, v); }

// An output of `n` needed elements plus the guard, all poisoned.
Buffer out_buf(uint64_t n, Dtype d = D) { return poisoned(d, n + kGuard); }

}  // namespace

// ============================================================================ dense
TEST_CASE("overflow: gemm sizes 0, 1, 2^32, 2^63, 2^64-1 and m*k wrapping to 0", "[overflow][dense]") {
  Buffer a = upload(D, rnd(D, 2 * 4, 1)), b = upload(D, rnd(D, 3 * 4, 2));
  Buffer out = out_buf(2 * 3);
  const auto gemm = api().dense->gemm;
  for (int field = 0; field < 3; ++field) {
    for (uint64_t v : {uint64_t{0}, uint64_t{1}, k32, k63, kMax}) {
      uint64_t dims[3] = {2, 3, 4};
      dims[field] = v;
      INFO("field " << "mnk"[field] << " = " << v);
      ferrum_gemm_args g{};
      g.a = a.get();
      g.b = b.get();
      g.out = out.get();
      g.m = dims[0];
      g.n = dims[1];
      g.k = dims[2];
      repoison(out);
      const Raw r = call_raw(gemm, g);
      if (v <= 1) {  // fits the buffers: runs, and never past m*n
        CHECK(r.status == FERRUM_STATUS_OK);
        ctx().gemm({.a = a, .b = b, .out = out, .m = dims[0], .n = dims[1], .k = dims[2]});
        expect_poison(out, dims[0] * dims[1], out.count() - dims[0] * dims[1], "past m*n");
      } else {
        expect_raw_invalid(r, {"gemm", num(v)});
        expect_facade_invalid([&] { ctx().gemm({.a = a, .b = b, .out = out, .m = dims[0], .n = dims[1], .k = dims[2]}); }, {"gemm", num(v)});
        expect_all_poison(out);
      }
    }
  }
  SECTION("m*k = 2^64 wraps to 0") {
    ferrum_gemm_args g{};
    g.a = a.get(), g.b = b.get(), g.out = out.get(), g.m = k32, g.n = 1, g.k = k32;
    const std::initializer_list<std::string> needles = {"gemm", "'a'", "m = 4294967296", "k = 4294967296",
                                                        "wraps past 2^64"};
    expect_raw_invalid(call_raw(gemm, g), needles);
    expect_facade_invalid([&] { ctx().gemm({.a = a, .b = b, .out = out, .m = k32, .n = 1, .k = k32}); }, needles);
    expect_all_poison(out);
  }
}

TEST_CASE("overflow: split_qkv_norm_rope row width (q_heads + 2*kv_heads)*head_dim wrapping to 0", "[overflow][rope]") {
  Buffer qkv = upload(D, rnd(D, 32, 3));
  Buffer q = out_buf(8), k = out_buf(8), v = out_buf(8);
  ferrum_split_qkv_norm_rope_args s{};
  s.qkv = qkv.get(), s.q_out = q.get(), s.k_out = k.get(), s.v_out = v.get();
  s.tokens = 1, s.q_heads = kMax - 1, s.kv_heads = 1, s.head_dim = 8, s.qk_mode = 0, s.eps = 1e-6f;
  const std::initializer_list<std::string> needles = {"split_qkv_norm_rope", "'qkv'", "q_heads = " + num(kMax - 1),
                                                      "wraps past 2^64"};
  expect_raw_invalid(call_raw(api().dense->split_qkv_norm_rope, s), needles);
  expect_facade_invalid([&] {
    ctx().split_qkv_norm_rope({.qkv = qkv, .q_norm_w = nullptr, .k_norm_w = nullptr, .cos = nullptr, .sin = nullptr, .q_out = q, .k_out = k, .v_out = v, .tokens = 1, .q_heads = kMax - 1, .kv_heads = 1, .head_dim = 8, .pos_offset = 0, .eps = 1e-6f, .qk_mode = ferrum::QkMode::copy});
  }, needles);
  for (Buffer* b : {&q, &k, &v}) expect_all_poison(*b);
}

TEST_CASE("overflow: fused_silu_mul_split_strided row offset + tokens wrapping", "[overflow][dense]") {
  Buffer gu = upload(D, rnd(D, 2 * 8, 4));
  Buffer out = out_buf(2 * 4);
  for (int which = 0; which < 2; ++which) {
    const uint64_t in_off = which == 0 ? kMax : 0, out_off = which == 1 ? kMax : 0;
    INFO((which == 0 ? "in_row_offset" : "out_row_offset") << " = 2^64-1");
    ferrum_fused_silu_mul_split_strided_args s{};
    s.gate_up = gu.get(), s.out = out.get(), s.in_row_offset = in_off, s.out_row_offset = out_off;
    s.tokens = 1, s.intermediate = 4;
    const std::string arg = which == 0 ? "'gate_up'" : "'out'";
    const std::string field = (which == 0 ? "in_row_offset = " : "out_row_offset = ") + num(kMax);
    expect_raw_invalid(call_raw(api().dense->fused_silu_mul_split_strided, s), {"fused_silu_mul_split_strided", arg, field, "wraps"});
    expect_facade_invalid([&] { ctx().fused_silu_mul_split_strided({.gate_up = gu, .in_row_offset = in_off, .out = out, .out_row_offset = out_off, .tokens = 1, .intermediate = 4}); },
                          {"fused_silu_mul_split_strided", arg, field});
    expect_all_poison(out);
  }
}

TEST_CASE("overflow: qk_norm_rope pos_offset + tokens at 2^64, every mode", "[overflow][rope]") {
  Buffer in = upload(D, rnd(D, 8, 5)), out = out_buf(8);
  ferrum_qk_norm_rope_args s{};
  s.input = in.get(), s.output = out.get(), s.tokens = 1, s.heads = 1, s.head_dim = 8, s.pos_offset = kMax;
  s.eps = 1e-6f, s.mode = 0;  // mode 0 reads no table, but a position past 2^64 is still no position
  expect_raw_invalid(call_raw(api().dense->qk_norm_rope, s), {"qk_norm_rope", "pos_offset", "2^64"});
  expect_facade_invalid([&] { ctx().qk_norm_rope({.input = in, .norm_w = nullptr, .cos = nullptr, .sin = nullptr, .output = out, .tokens = 1, .heads = 1, .head_dim = 8, .pos_offset = kMax, .eps = 1e-6f, .mode = ferrum::QkMode::copy}); },
                        {"qk_norm_rope", "pos_offset"});
  expect_all_poison(out);
}

TEST_CASE("overflow: split_qkv_norm_rope_into_cache cache_len + tokens wrapping below the capacity", "[overflow][rope]") {
  Buffer qkv = upload(D, rnd(D, 2 * 24, 6)), q = out_buf(16);
  Buffer ck = poisoned(D, 4 * 8), cv = poisoned(D, 4 * 8);
  ferrum_split_qkv_norm_rope_into_cache_args s{};
  s.qkv = qkv.get(), s.q_out = q.get(), s.cache_k = ck.get(), s.cache_v = cv.get();
  s.tokens = 2, s.q_heads = 1, s.kv_heads = 1, s.head_dim = 8, s.eps = 1e-6f, s.qk_mode = 0;
  s.cache_len = kMax, s.cache_capacity = 4;
  const std::initializer_list<std::string> needles = {"split_qkv_norm_rope_into_cache", "cache_len", "wraps past 2^64"};
  expect_raw_invalid(call_raw(api().dense->split_qkv_norm_rope_into_cache, s), needles);
  expect_facade_invalid([&] {
    ctx().split_qkv_norm_rope_into_cache({.qkv = qkv, .q_norm_w = nullptr, .k_norm_w = nullptr, .cos = nullptr, .sin = nullptr, .q_out = q, .cache_k = ck, .cache_v = cv, .tokens = 2, .q_heads = 1, .kv_heads = 1, .head_dim = 8, .pos_offset = 0, .eps = 1e-6f, .qk_mode = ferrum::QkMode::copy,
                                         .cache_len = kMax, .cache_capacity = 4});
  }, needles);
  for (Buffer* b : {&q, &ck, &cv}) expect_all_poison(*b);
}

TEST_CASE("overflow: argmax and batched qk-norm products wrapping", "[overflow][dense]") {
  Buffer logits = upload(D, rnd(D, 16, 7));
  ferrum_argmax_rows_f16_args am{};
  std::vector<uint32_t> host(4, 0xAAAAAAAAu);
  am.logits = logits.get(), am.m = k32, am.n = k32, am.out = host.data();
  // Raw only: the facade sizes its host result from m before the call (reported separately).
  expect_raw_invalid(call_raw(api().dense->argmax_rows_f16, am), {"argmax_rows_f16", "'logits'", "wraps past 2^64"});
  CHECK(host[0] == 0xAAAAAAAAu);

  Buffer in = upload(D, rnd(D, 16, 8)), out = out_buf(16), pos = idx({0, 1});
  ferrum_qk_norm_rope_batched_per_item_args b{};
  b.input = in.get(), b.output = out.get(), b.positions = pos.get(), b.m = k32, b.heads = k32, b.head_dim = 8;
  b.eps = 1e-6f, b.mode = 0;
  const std::initializer_list<std::string> needles = {"qk_norm_rope_batched_per_item", "'input'", "wraps past 2^64"};
  expect_raw_invalid(call_raw(api().dense->qk_norm_rope_batched_per_item, b), needles);
  expect_facade_invalid([&] { ctx().qk_norm_rope_batched_per_item({.input = in, .norm_w = nullptr, .cos = nullptr, .sin = nullptr, .output = out, .positions = pos, .m = k32, .heads = k32, .head_dim = 8, .eps = 1e-6f, .mode = ferrum::QkMode::copy}); },
                        needles);
  expect_all_poison(out);
}

// ============================================================================ memory
TEST_CASE("overflow: copy_slice / zero_buffer / to_vec offsets and lengths near 2^64", "[overflow][memory]") {
  Buffer src = upload(D, rnd(D, 8, 9)), dst = poisoned(D, 8);
  const std::array<std::array<uint64_t, 3>, 5> cases = {{// src_offset, dst_offset, len
                                                          {kMax, 0, 2},
                                                          {0, kMax, 2},
                                                          {k63, 0, k63},
                                                          {2, 0, kMax - 1},
                                                          {k32, k32, 1}}};
  for (const auto& c : cases) {
    INFO("src_offset " << c[0] << ", dst_offset " << c[1] << ", len " << c[2]);
    ferrum_copy_slice_args s{};
    s.src = src.get(), s.dst = dst.get(), s.src_offset = c[0], s.dst_offset = c[1], s.len = c[2];
    expect_raw_invalid(call_raw(api().memory->copy_slice, s), {"copy_slice", "offset + len"});
    expect_facade_invalid([&] { ctx().copy_slice({.src = src, .src_offset = c[0], .dst = dst, .dst_offset = c[1], .len = c[2]}); }, {"copy_slice", "offset + len"});
    expect_all_poison(dst);
  }
  for (uint64_t len : {k32, k63, kMax}) {
    ferrum_zero_buffer_args z{};
    z.buf = dst.get(), z.len = len;
    expect_raw_invalid(call_raw(api().memory->zero_buffer, z), {"zero_buffer", "len", num(len)});
    expect_facade_invalid([&] { ctx().zero_buffer(dst, len); }, {"zero_buffer", "len"});
    std::vector<float> host(4, 7.0f);
    ferrum_to_vec_args t{};
    t.buf = src.get(), t.len = len, t.out = host.data();
    expect_raw_invalid(call_raw(api().memory->to_vec, t), {"to_vec", "len"});
    CHECK(host[0] == 7.0f);
  }
  expect_all_poison(dst);
}

TEST_CASE("overflow: alloc whose byte size wraps past 2^64", "[overflow][memory]") {
  for (uint64_t n : {k63, kMax, (kMax / 4) + 1}) {  // 2^62 + ... f32 elements: 2^64 bytes and more
    INFO("n = " << n);
    ferrum_buffer* h = nullptr;
    ferrum_alloc_typed_args a{};
    a.dtype = FERRUM_DTYPE_F32, a.n = n, a.buffer = &h;
    expect_raw_invalid(call_raw(api().memory->alloc_typed, a), {"alloc", num(n), "wraps past 2^64"});
    CHECK(h == nullptr);
    expect_facade_invalid([&] { (void)ctx().alloc_typed(Dtype::f32, n); }, {"alloc", num(n)});
    if (n != (kMax / 4) + 1)  // alloc uses the context's activation dtype (f16 here): 2 bytes each
      expect_facade_invalid([&] { (void)ctx().alloc(n); }, {"alloc", num(n)});
  }
}

// ============================================================================ attention
TEST_CASE("overflow: kv_cache_append_head_major cache_len + new_tokens wrapping below the capacity", "[overflow][attention]") {
  Buffer ck = poisoned(D, 4 * 8), cv = poisoned(D, 4 * 8);
  Buffer nk = upload(D, rnd(D, 8, 10)), nv = upload(D, rnd(D, 8, 11));
  for (uint64_t cache_len : {kMax, kMax - 1, k63 + (k63 - 1)}) {
    ferrum_kv_cache_append_head_major_args s{};
    s.cache_k = ck.get(), s.cache_v = cv.get(), s.cache_len = cache_len, s.cache_capacity = 4;
    s.new_k_head_major = nk.get(), s.new_v_head_major = nv.get(), s.new_tokens = 2, s.nkv = 1, s.hd = 4;
    const std::initializer_list<std::string> needles = {"kv_cache_append_head_major", "cache_len", num(cache_len)};
    expect_raw_invalid(call_raw(api().attention->kv_cache_append_head_major, s), needles);
    expect_facade_invalid([&] { ctx().kv_cache_append_head_major({.cache_k = ck, .cache_v = cv, .cache_len = cache_len, .cache_capacity = 4, .new_k_head_major = nk, .new_v_head_major = nv, .new_tokens = 2, .nkv = 1, .hd = 4}); }, needles);
  }
  expect_all_poison(ck);
  expect_all_poison(cv);
}

TEST_CASE("overflow: flash_attention positions near 2^64 and a wrapping kv_seq_stride", "[overflow][attention]") {
  const uint64_t L = 4, hd = 8;
  Buffer q = upload(D, rnd(D, 2 * hd, 12)), k = upload(D, rnd(D, L * hd, 13)), v = upload(D, rnd(D, L * hd, 14));
  Buffer out = out_buf(2 * hd);
  auto args = [&](uint64_t pos, uint64_t q_len, uint64_t stride) {
    ferrum_flash_attention_args s{};
    s.q = q.get(), s.k = k.get(), s.v = v.get(), s.out = out.get(), s.batch = 1, s.q_len = q_len, s.kv_len = L;
    s.pos_offset = pos, s.num_heads = 1, s.num_kv_heads = 1, s.head_dim = hd, s.causal = 1, s.kv_seq_stride = stride;
    return s;
  };
  SECTION("pos_offset + q_len past 2^64 (the last position + 1 would wrap to 0 visible keys)") {
    for (uint64_t q_len : {uint64_t{1}, uint64_t{2}}) {
      expect_raw_invalid(call_raw(api().attention->flash_attention, args(kMax, q_len, 0)),
                         {"flash_attention", "pos_offset", "wraps past 2^64"});
      expect_facade_invalid([&] { ctx().flash_attention({.q = q, .k = k, .v = v, .out = out, .batch = 1, .q_len = q_len, .kv_len = L, .pos_offset = kMax, .num_heads = 1, .num_kv_heads = 1, .head_dim = hd, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0}); },
                            {"flash_attention", "pos_offset"});
      expect_all_poison(out);
    }
  }
  SECTION("pos_offset 2^64 - 2 is a real position: every key visible, not zeros") {
    Buffer ref = out_buf(2 * hd);
    ctx().flash_attention({.q = q, .k = k, .v = v, .out = ref, .batch = 1, .q_len = 1, .kv_len = L, .pos_offset = L - 1, .num_heads = 1, .num_kv_heads = 1, .head_dim = hd, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0});
    ctx().flash_attention({.q = q, .k = k, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = L, .pos_offset = kMax - 1, .num_heads = 1, .num_kv_heads = 1, .head_dim = hd, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0});
    CHECK(read_bytes(out, hd) == read_bytes(ref, hd));
    expect_poison(out, hd, out.count() - hd, "past the one query row");
    bool any_nonzero = false;
    for (double x : slice(download(out), 0, hd)) any_nonzero = any_nonzero || x != 0.0;
    CHECK(any_nonzero);
  }
  SECTION("batch*num_kv_heads*kv_seq_stride*head_dim wraps") {
    const uint64_t stride = uint64_t{1} << 62;
    expect_raw_invalid(call_raw(api().attention->flash_attention, args(0, 1, stride)),
                       {"flash_attention", "kv_seq_stride", "wraps past 2^64"});
    expect_facade_invalid([&] { ctx().flash_attention({.q = q, .k = k, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = L, .pos_offset = 0, .num_heads = 1, .num_kv_heads = 1, .head_dim = hd, .causal = true, .scale = 0.0f, .kv_seq_stride = stride, .sliding_window = 0}); },
                          {"flash_attention", "kv_seq_stride", "wraps past 2^64"});
    expect_all_poison(out);
  }
}

TEST_CASE("overflow: kv_cache_append_batched_per_cache nkv*capacity*hd wrapping", "[overflow][attention]") {
  Buffer cache = poisoned(D, 16), nd = upload(D, rnd(D, 4, 15)), lens = idx({0});
  ferrum_buffer* caches[1] = {cache.get()};
  ferrum_kv_cache_append_batched_per_cache_args s{};
  s.caches = caches, s.new_data = nd.get(), s.cache_lens = lens.get(), s.capacity = k63, s.m = 1, s.nkv = 1, s.hd = 4;
  const std::initializer_list<std::string> needles = {"kv_cache_append_batched_per_cache", "capacity", "wraps past 2^64"};
  expect_raw_invalid(call_raw(api().attention->kv_cache_append_batched_per_cache, s), needles);
  expect_facade_invalid([&] { ctx().kv_cache_append_batched_per_cache({.caches = caches, .new_data = nd, .cache_lens = lens, .capacity = k63, .nkv = 1, .hd = 4, .slot = 0}); }, needles);
  expect_all_poison(cache);
}

// ============================================================================ paged KV
TEST_CASE("overflow: paged pool geometry block_size*num_kv_heads*head_dim wrapping to 0 or to a small number",
          "[overflow][paged_kv]") {
  const uint64_t nh = 4, hd = 4;
  Buffer q = upload(D, rnd(D, nh * hd, 16)), kp = upload(D, rnd(D, 64, 17)), vp = upload(D, rnd(D, 64, 18));
  Buffer out = out_buf(nh * hd), bt = idx({0}), lens = idx({1});
  // 2^62 * 4 * 4 = 2^66 wraps to 0 (was a division by zero); (2^62 + 1) * 16 wraps to 16 (was an
  // out-of-bounds read reported as success).
  for (uint64_t bs : {uint64_t{1} << 62, (uint64_t{1} << 62) + 1, kMax}) {
    INFO("block_size = " << bs);
    ferrum_paged_decode_attention_args s{};
    s.q = q.get(), s.k_pool = kp.get(), s.v_pool = vp.get(), s.out = out.get(), s.block_tables = bt.get();
    s.context_lens = lens.get(), s.num_seqs = 1, s.num_heads = nh, s.num_kv_heads = nh, s.head_dim = hd;
    s.block_size = bs, s.max_num_blocks_per_seq = 1, s.q_len = 1;
    const std::initializer_list<std::string> needles = {"paged_decode_attention", "'block_size'/'num_kv_heads'/'head_dim'",
                                                        num(bs), "wraps past 2^64"};
    expect_raw_invalid(call_raw(api().paged_kv->paged_decode_attention, s), needles);
    expect_facade_invalid([&] { ctx().paged_decode_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .context_lens = lens, .num_seqs = 1, .num_heads = nh, .num_kv_heads = nh, .head_dim = hd, .block_size = bs, .max_num_blocks_per_seq = 1, .q_len = 1, .scale = 0.0f, .sliding_window = 0}); },
                          needles);
    expect_all_poison(out);
  }
}

TEST_CASE("overflow: paged writer cache_len + tokens and the qkv row width wrapping", "[overflow][paged_kv]") {
  const uint64_t hd = 8, bs = 4;
  Buffer qkv = upload(D, rnd(D, 3 * hd, 19)), q = out_buf(hd);
  Buffer ck = poisoned(D, 2 * bs * hd), cv = poisoned(D, 2 * bs * hd), bt = idx({0, 1});
  auto args = [&](uint64_t cache_len, uint64_t q_heads, uint64_t kv_heads) {
    ferrum_split_qkv_norm_rope_into_paged_cache_args s{};
    s.qkv = qkv.get(), s.q_out = q.get(), s.cache_k = ck.get(), s.cache_v = cv.get(), s.block_table = bt.get();
    s.tokens = 1, s.q_heads = q_heads, s.kv_heads = kv_heads, s.head_dim = hd, s.eps = 1e-6f, s.qk_mode = 0;
    s.cache_len = cache_len, s.block_size = bs, s.max_num_blocks_per_seq = 2;
    return s;
  };
  SECTION("cache_len = 2^64 - 1") {
    expect_raw_invalid(call_raw(api().paged_kv->split_qkv_norm_rope_into_paged_cache, args(kMax, 1, 1)),
                       {"split_qkv_norm_rope_into_paged_cache", "cache_len", "wraps past 2^64"});
    expect_facade_invalid([&] {
      ctx().split_qkv_norm_rope_into_paged_cache({.qkv = &qkv, .qkv_byte_offset = 0, .q_norm_w = nullptr, .k_norm_w = nullptr, .cos = nullptr, .sin = nullptr, .q_out = &q, .q_out_byte_offset = 0, .cache_k = ck, .cache_v = cv, .block_table = bt, .tokens = 1, .q_heads = 1, .kv_heads = 1, .head_dim = hd,
                                                 .pos_offset = 0, .eps = 1e-6f, .qk_mode = ferrum::QkMode::copy, .cache_len = kMax, .block_size = bs, .max_num_blocks_per_seq = 2});
    }, {"split_qkv_norm_rope_into_paged_cache", "cache_len"});
  }
  SECTION("(q_heads + 2*kv_heads)*head_dim = 3*2^62*8 wraps") {
    const uint64_t h = uint64_t{1} << 62;
    expect_raw_invalid(call_raw(api().paged_kv->split_qkv_norm_rope_into_paged_cache, args(0, h, h)),
                       {"split_qkv_norm_rope_into_paged_cache", "q_heads = " + num(h), "wraps past 2^64"});
    expect_facade_invalid([&] {
      ctx().split_qkv_norm_rope_into_paged_cache({.qkv = &qkv, .qkv_byte_offset = 0, .q_norm_w = nullptr, .k_norm_w = nullptr, .cos = nullptr, .sin = nullptr, .q_out = &q, .q_out_byte_offset = 0, .cache_k = ck, .cache_v = cv, .block_table = bt, .tokens = 1, .q_heads = h, .kv_heads = h, .head_dim = hd,
                                                 .pos_offset = 0, .eps = 1e-6f, .qk_mode = ferrum::QkMode::copy, .cache_len = 0, .block_size = bs, .max_num_blocks_per_seq = 2});
    }, {"split_qkv_norm_rope_into_paged_cache", "wraps past 2^64"});
  }
  for (Buffer* b : {&q, &ck, &cv}) expect_all_poison(*b);
}

TEST_CASE("overflow: varlen metadata [num_seqs + 1] with num_seqs = 2^64 - 1", "[overflow][paged_kv]") {
  const uint64_t hd = 8, bs = 4;
  Buffer qkv = upload(D, rnd(D, 3 * hd, 20)), qo = out_buf(hd), ck = poisoned(D, bs * hd), cv = poisoned(D, bs * hd);
  Buffer cu = idx({0, 1}), offs = idx({0}), bt = idx({0});
  const std::initializer_list<std::string> needles = {"'cu_seqlens_q'", "num_seqs = " + num(kMax), "wraps past 2^64"};
  ferrum_split_qkv_norm_rope_into_paged_cache_varlen_args w{};
  w.qkv = qkv.get(), w.q_out = qo.get(), w.cache_k = ck.get(), w.cache_v = cv.get(), w.cu_seqlens_q = cu.get();
  w.pos_offsets = offs.get(), w.block_tables = bt.get(), w.num_seqs = kMax, w.m_total = 1, w.q_heads = 1;
  w.kv_heads = 1, w.head_dim = hd, w.eps = 1e-6f, w.qk_mode = 0, w.block_size = bs, w.max_blocks_per_seq = 1;
  expect_raw_invalid(call_raw(api().paged_kv->split_qkv_norm_rope_into_paged_cache_varlen, w), needles);
  expect_facade_invalid([&] {
    ctx().split_qkv_norm_rope_into_paged_cache_varlen({.qkv = qkv, .q_norm_w = nullptr, .k_norm_w = nullptr, .cos = nullptr, .sin = nullptr, .q_out = qo, .cache_k = ck, .cache_v = cv, .cu_seqlens_q = cu, .pos_offsets = offs, .block_tables = bt, .num_seqs = kMax,
                                                      .m_total = 1, .q_heads = 1, .kv_heads = 1, .head_dim = hd, .eps = 1e-6f, .qk_mode = ferrum::QkMode::copy, .block_size = bs, .max_blocks_per_seq = 1});
  }, needles);

  Buffer q = upload(D, rnd(D, hd, 21)), out = out_buf(hd);
  ferrum_paged_varlen_attention_args p{};
  p.q = q.get(), p.k_pool = ck.get(), p.v_pool = cv.get(), p.out = out.get(), p.cu_seqlens_q = cu.get();
  p.pos_offsets = offs.get(), p.block_tables = bt.get(), p.num_seqs = kMax, p.total_q_tokens = 1, p.max_kv_len = 1;
  p.num_heads = 1, p.num_kv_heads = 1, p.head_dim = hd, p.block_size = bs, p.max_num_blocks_per_seq = 1;
  expect_raw_invalid(call_raw(api().paged_kv->paged_varlen_attention, p), needles);
  expect_facade_invalid([&] {
    ctx().paged_varlen_attention({.q = q, .k_pool = ck, .v_pool = cv, .out = out, .cu_seqlens_q = cu, .pos_offsets = offs, .block_tables = bt, .num_seqs = kMax, .total_q_tokens = 1, .max_kv_len = 1, .num_heads = 1, .num_kv_heads = 1, .head_dim = hd, .block_size = bs, .max_num_blocks_per_seq = 1, .scale = 0.0f, .sliding_window = 0});
  }, needles);
  for (Buffer* b : {&qo, &ck, &cv, &out}) expect_all_poison(*b);
}

TEST_CASE("overflow: tiled_q4 validates before sizing its row mask from total_q_tokens", "[overflow][paged_kv]") {
  // head_dim = 0 makes every shape 0 elements, so only the op's own rules can refuse
  // total_q_tokens = 2^64 - 1 — and they must, before a host mask of that length is allocated.
  Buffer q = upload(D, rnd(D, 8, 22)), kp = upload(D, rnd(D, 64, 23)), vp = upload(D, rnd(D, 64, 24));
  Buffer out = out_buf(8), cu = idx({0, 1}), offs = idx({0}), bt = idx({0}), ts = idx({0}), st = idx({0});
  ferrum_paged_varlen_attention_vllm_tiled_q4_args s{};
  s.q = q.get(), s.k_pool = kp.get(), s.v_pool = vp.get(), s.out = out.get(), s.cu_seqlens_q = cu.get();
  s.pos_offsets = offs.get(), s.block_tables = bt.get(), s.tile_seqs = ts.get(), s.tile_starts = st.get();
  s.num_tiles = 1, s.max_kv_len = 1, s.num_heads = 1, s.num_kv_heads = 1, s.head_dim = 0, s.block_size = 4;
  s.max_num_blocks_per_seq = 1, s.num_seqs = 1, s.total_q_tokens = kMax;
  expect_raw_invalid(call_raw(api().paged_kv->paged_varlen_attention_vllm_tiled_q4, s),
                     {"paged_varlen_attention_vllm_tiled_q4", "head_dim"});
  expect_all_poison(out);
}

// ============================================================================ quantised KV
TEST_CASE("overflow: quantised KV pool sizes, cache_len_before + tokens and pool geometry", "[overflow][quant_kv]") {
  SECTION("alloc_paged_int8_layer: max_blocks_per_seq*block_size*num_kv_heads*head_dim wraps") {
    ferrum_kv_cache_quant cache{};
    cache.struct_size = sizeof cache;
    ferrum_alloc_paged_int8_layer_args a{};
    a.max_blocks_per_seq = uint64_t{1} << 31, a.block_size = k32, a.num_kv_heads = k32, a.head_dim = 8;
    a.cache = &cache;
    const std::initializer_list<std::string> needles = {"alloc_paged_int8_layer", "max_blocks_per_seq", "wraps past 2^64"};
    expect_raw_invalid(call_raw(api().quant_kv->alloc_paged_int8_layer, a), needles);
    CHECK(cache.k == nullptr);
    expect_facade_invalid([&] { (void)ctx().alloc_paged_int8_layer({.max_blocks_per_seq = uint64_t{1} << 31, .block_size = k32, .num_kv_heads = k32, .head_dim = 8}); }, needles);
  }
  const uint64_t bs = 4, hd = 8, blocks = 2;
  Buffer lk = poisoned(Dtype::i8, blocks * bs * hd), lv = poisoned(Dtype::i8, blocks * bs * hd);
  Buffer ks = poisoned(D, blocks * bs), vs = poisoned(D, blocks * bs);
  SECTION("int8_kv_append_paged: cache_len_before + tokens wraps") {
    Buffer kin = upload(D, rnd(D, hd, 25)), vin = upload(D, rnd(D, hd, 26));
    const std::vector<uint32_t> pbi = {0, 1};
    ferrum_int8_kv_append_paged_args a{};
    a.k_in = kin.get(), a.v_in = vin.get(), a.layer_k = lk.get(), a.layer_v = lv.get(), a.layer_k_scales = ks.get();
    a.layer_v_scales = vs.get(), a.paged_block_indices = pbi.data(), a.paged_block_indices_len = 2;
    a.cache_len_before = kMax, a.tokens = 1, a.block_size = bs, a.num_kv_heads = 1, a.head_dim = hd;
    const std::initializer_list<std::string> needles = {"int8_kv_append_paged", "cache_len_before + tokens", "wraps past 2^64"};
    expect_raw_invalid(call_raw(api().quant_kv->int8_kv_append_paged, a), needles);
    expect_facade_invalid([&] { ctx().int8_kv_append_paged({.k_in = kin, .v_in = vin, .layer_k = lk, .layer_v = lv, .layer_k_scales = ks, .layer_v_scales = vs, .paged_block_indices = pbi, .cache_len_before = kMax, .tokens = 1, .block_size = bs, .num_kv_heads = 1, .head_dim = hd}); }, needles);
  }
  SECTION("int8_paged_decode_attention: block_size*num_kv_heads*head_dim wraps") {
    Buffer q = upload(D, rnd(D, hd, 27)), out = out_buf(hd), bt = idx({0});
    const uint64_t big = uint64_t{1} << 61;
    ferrum_int8_paged_decode_attention_args a{};
    a.q = q.get(), a.layer_k = lk.get(), a.layer_v = lv.get(), a.layer_k_scales = ks.get(), a.layer_v_scales = vs.get();
    a.block_table = bt.get(), a.output = out.get(), a.num_q_heads = 1, a.num_kv_heads = 1, a.head_dim = hd;
    a.valid_kv_len = 1, a.block_size = big;
    const std::initializer_list<std::string> needles = {"int8_paged_decode_attention", "block_size", "wraps past 2^64"};
    expect_raw_invalid(call_raw(api().quant_kv->int8_paged_decode_attention, a), needles);
    expect_facade_invalid([&] { ctx().int8_paged_decode_attention({.q = q, .layer_k = lk, .layer_v = lv, .layer_k_scales = ks, .layer_v_scales = vs, .block_table = bt, .output = out, .num_q_heads = 1, .num_kv_heads = 1, .head_dim = hd, .valid_kv_len = 1, .block_size = big, .scale = 0.0f, .sliding_window = 0}); },
                          needles);
    expect_all_poison(out);
  }
  for (Buffer* b : {&lk, &lv, &ks, &vs}) expect_all_poison(*b);
}

// ============================================================================ GGUF / GPTQ
TEST_CASE("overflow: GGUF n_rows*n_cols and m*n_cols wrapping", "[overflow][gguf]") {
  constexpr int32_t kQ8_0 = 8;  // QK 32, 34 bytes per block
  SECTION("load_quant: n_rows*(n_cols/QK)*34 wraps") {
    std::vector<uint8_t> bytes(34, 0);
    ferrum_qweight* w = nullptr;
    ferrum_load_quant_args a{};
    a.quant_type = kQ8_0, a.bytes = bytes.data(), a.byte_len = 34, a.n_rows = k63, a.n_cols = 32, a.weight = &w;
    const std::initializer_list<std::string> needles = {"load_quant", "n_rows = " + num(k63), "wraps past 2^64"};
    expect_raw_invalid(call_raw(api().quant_matmul->load_quant, a), needles);
    CHECK(w == nullptr);
    expect_facade_invalid([&] { (void)ctx().load_quant({.quant_type = kQ8_0, .bytes = bytes, .n_rows = k63, .n_cols = 32}); }, needles);
  }
  SECTION("gguf_matmul: m*n_cols = 2^59*32 wraps to 0") {
    std::vector<uint8_t> bytes(32 * 34);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>((i * 37 + 11) & 0x3f);
    ferrum::QWeight w = ctx().load_quant({.quant_type = kQ8_0, .bytes = bytes, .n_rows = 32, .n_cols = 32});
    Buffer a = upload(D, rnd(D, 32, 28)), out = out_buf(32);
    const uint64_t m = uint64_t{1} << 59;
    ferrum_gguf_matmul_args g{};
    g.a = a.get(), g.weight = w.get(), g.out = out.get(), g.m = m;
    const std::initializer_list<std::string> needles = {"gguf_matmul", "'m'/'weight.n_cols'", "wraps past 2^64"};
    expect_raw_invalid(call_raw(api().quant_matmul->gguf_matmul, g), needles);
    expect_facade_invalid([&] { ctx().gguf_matmul({.a = a, .weight = w, .out = out, .m = m}); }, needles);
    expect_all_poison(out);
  }
}

TEST_CASE("overflow: GPTQ k*n and m*k wrapping", "[overflow][gptq]") {
  std::vector<int32_t> qweight(64, 0x12345678);
  std::vector<uint16_t> scales(8, 0x3C00);  // f16 1.0
  SECTION("load_gptq: k*n = 2^62*16 wraps (k/8*n still fits)") {
    const uint64_t k = uint64_t{1} << 62;
    ferrum_qweight* w = nullptr;
    ferrum_load_gptq_args a{};
    a.qweight = qweight.data(), a.scales = scales.data(), a.bits = 4, a.group_size = 0, a.k = k, a.n = 16;
    a.scales_dtype = FERRUM_DTYPE_F16, a.act_dtype = FERRUM_DTYPE_F32, a.weight = &w;
    const std::initializer_list<std::string> needles = {"load_gptq", "'k'/'n'", "wraps past 2^64"};
    expect_raw_invalid(call_raw(api().quant_matmul->load_gptq, a), needles);
    CHECK(w == nullptr);
    expect_facade_invalid([&] {
      (void)ctx().load_gptq({.qweight = qweight.data(), .scales = scales.data(), .qzeros = nullptr, .g_idx = nullptr, .bits = 4, .group_size = 0, .k = k, .n = 16, .scales_dtype = Dtype::f16, .act_dtype = Dtype::f32});
    }, needles);
  }
  SECTION("load_gptq: the host array [k/8*n] itself wraps") {
    ferrum_qweight* w = nullptr;
    ferrum_load_gptq_args a{};
    a.qweight = qweight.data(), a.scales = scales.data(), a.bits = 4, a.k = k63, a.n = 256;
    a.scales_dtype = FERRUM_DTYPE_F16, a.act_dtype = FERRUM_DTYPE_F32, a.weight = &w;
    expect_raw_invalid(call_raw(api().quant_matmul->load_gptq, a), {"load_gptq", "'qweight'", "wraps past 2^64"});
  }
  SECTION("marlin_gemm: m*k = 2^61*32 and m*n = 2^61*8 wrap to 0") {
    ferrum::QWeight w = ctx().load_gptq({.qweight = qweight.data(), .scales = scales.data(), .qzeros = nullptr, .g_idx = nullptr, .bits = 4, .group_size = 0, .k = 32, .n = 8, .scales_dtype = Dtype::f16, .act_dtype = Dtype::f32});
    Buffer a = upload(D, rnd(D, 32, 29)), out = out_buf(8);
    const uint64_t m = uint64_t{1} << 61;
    ferrum_marlin_gemm_args g{};
    g.a = a.get(), g.weight = w.get(), g.out = out.get(), g.m = m;
    const std::initializer_list<std::string> needles = {"marlin_gemm", "'m'/'weight.k'", "wraps past 2^64"};
    expect_raw_invalid(call_raw(api().quant_matmul->marlin_gemm, g), needles);
    expect_facade_invalid([&] { ctx().marlin_gemm({.a = a, .weight = w, .out = out, .m = m}); }, needles);
    expect_all_poison(out);
  }
}

// ============================================================================ MoE
TEST_CASE("overflow: MoE routing cap and token*top_k products wrapping", "[overflow][moe]") {
  SECTION("moe_align_block_size: num_pairs + min(E, pairs)*(block_size - 1) wraps") {
    Buffer ids = upload_idx(Dtype::i32, {0, 1}), sorted = poisoned(Dtype::i32, 8), eids = poisoned(Dtype::i32, 8);
    Buffer nptp = poisoned(Dtype::i32, 1);
    ferrum_moe_align_block_size_args a{};
    a.topk_ids = ids.get(), a.sorted_token_ids = sorted.get(), a.expert_ids = eids.get();
    a.num_tokens_post_padded = nptp.get(), a.num_pairs = 2, a.num_experts = 2, a.block_size = k63;
    const std::initializer_list<std::string> needles = {"moe_align_block_size", "block_size = " + num(k63), "wraps past 2^64"};
    expect_raw_invalid(call_raw(api().moe->moe_align_block_size, a), needles);
    expect_facade_invalid([&] { ctx().moe_align_block_size({.topk_ids = ids, .sorted_token_ids = sorted, .expert_ids = eids, .num_tokens_post_padded = nptp, .num_pairs = 2, .num_experts = 2, .block_size = k63}); }, needles);
    for (Buffer* b : {&sorted, &eids, &nptp}) expect_all_poison(*b);
  }
  SECTION("weighted_sum_batched / moe_combine: num_tokens*top_k = 2^64 wraps to 0") {
    Buffer slots = upload(D, rnd(D, 8, 30)), w = upload(D, rnd(D, 8, 31)), out = out_buf(8);
    Buffer pairs = upload_idx(Dtype::i32, {0, 1, 2, 3});
    ferrum_weighted_sum_batched_args s{};
    s.slots = slots.get(), s.weights = w.get(), s.out = out.get(), s.num_tokens = k32, s.top_k = k32, s.hidden = 1;
    expect_raw_invalid(call_raw(api().moe->weighted_sum_batched, s), {"weighted_sum_batched", "'slots'", "wraps past 2^64"});
    expect_facade_invalid([&] { ctx().weighted_sum_batched({.slots = slots, .weights = w, .out = out, .num_tokens = k32, .top_k = k32, .hidden = 1}); }, {"weighted_sum_batched", "wraps"});
    ferrum_moe_combine_args c{};
    c.packed_down = slots.get(), c.pairs_by_token = pairs.get(), c.pair_weights = w.get(), c.out = out.get();
    c.num_tokens = k32, c.hidden = 1, c.top_k = k32, c.num_packed = 4;
    expect_raw_invalid(call_raw(api().moe->moe_combine, c), {"moe_combine", "'pairs_by_token'", "wraps past 2^64"});
    expect_facade_invalid([&] { ctx().moe_combine({.packed_down = slots, .pairs_by_token = pairs, .pair_weights = w, .out = out, .num_tokens = k32, .hidden = 1, .top_k = k32, .num_packed = 4}); }, {"moe_combine", "wraps"});
    expect_all_poison(out);
  }
}

// ============================================================================ MLA
TEST_CASE("overflow: mla_attention kv_lora_rank + qk_rope_head_dim and pos_offset + q_len", "[overflow][mla]") {
  const uint64_t R = 4, P = 2;
  Buffer q = upload(D, rnd(D, R + P, 32)), kc = upload(D, rnd(D, 2 * R, 33)), kr = upload(D, rnd(D, 2 * P, 34));
  Buffer out = out_buf(R);
  auto args = [&](uint64_t pos, uint64_t r, uint64_t p) {
    ferrum_mla_attention_args s{};
    s.q = q.get(), s.kv_compressed = kc.get(), s.kv_rope = kr.get(), s.out = out.get(), s.batch = 1, s.q_len = 1;
    s.kv_len = 2, s.pos_offset = pos, s.num_heads = 1, s.num_kv_heads = 1, s.head_dim = r + p, s.causal = 1;
    s.scale = 0.5f, s.kv_lora_rank = r, s.qk_rope_head_dim = p;
    return s;
  };
  expect_raw_invalid(call_raw(api().mla->mla_attention, args(kMax, R, P)), {"mla_attention", "pos_offset", "wraps past 2^64"});
  expect_facade_invalid([&] { ctx().mla_attention({.q = q, .kv_compressed = kc, .kv_rope = kr, .out = out, .batch = 1, .q_len = 1, .kv_len = 2, .pos_offset = kMax, .num_heads = 1, .num_kv_heads = 1, .head_dim = R + P, .causal = true, .scale = 0.5f, .kv_seq_stride = 0, .sliding_window = 0, .kv_lora_rank = R, .qk_rope_head_dim = P}); },
                        {"mla_attention", "pos_offset"});
  // R + P = 2^64 wraps to 0 (head_dim given as that wrapped 0).
  expect_raw_invalid(call_raw(api().mla->mla_attention, args(0, kMax, 1)), {"mla_attention", "kv_lora_rank", "wraps past 2^64"});
  expect_facade_invalid([&] { ctx().mla_attention({.q = q, .kv_compressed = kc, .kv_rope = kr, .out = out, .batch = 1, .q_len = 1, .kv_len = 2, .pos_offset = 0, .num_heads = 1, .num_kv_heads = 1, .head_dim = 0, .causal = true, .scale = 0.5f, .kv_seq_stride = 0, .sliding_window = 0, .kv_lora_rank = kMax, .qk_rope_head_dim = 1}); },
                        {"mla_attention", "kv_lora_rank", "wraps past 2^64"});
  expect_all_poison(out);
}

// ============================================================================ zero work and NULL
// The fuzz campaign's reproducers (fuzz/regressions/fuzz_facade_ops): a call with zero work or a
// zero-size dimension must neither read through a NULL handle nor form pointers from one. A
// mandatory buffer that is NULL is INVALID_ARGUMENT naming it, whatever the length.
TEST_CASE("zero work: write_typed / read_typed / to_vec with a NULL buffer and length 0", "[overflow][memory]") {
  ferrum_write_typed_args w{};
  w.dtype = dt(D);
  expect_raw_invalid(call_raw(api().memory->write_typed, w), {"write_typed", "'dst'", "given NULL"});
  ferrum_read_typed_args r{};
  r.dtype = dt(D);
  expect_raw_invalid(call_raw(api().memory->read_typed, r), {"read_typed", "'src'", "given NULL"});
  ferrum_to_vec_args t{};
  expect_raw_invalid(call_raw(api().memory->to_vec, t), {"to_vec", "'buf'", "given NULL"});
  SECTION("a given buffer and length 0 stays a no-op") {
    Buffer b = out_buf(0);
    w.dst = b.get(), r.src = b.get(), t.buf = b.get();
    CHECK(call_raw(api().memory->write_typed, w).status == FERRUM_STATUS_OK);
    CHECK(call_raw(api().memory->read_typed, r).status == FERRUM_STATUS_OK);
    CHECK(call_raw(api().memory->to_vec, t).status == FERRUM_STATUS_OK);
    expect_all_poison(b);
  }
}

TEST_CASE("zero work: flash_attention with kv_len = 0 reads no key", "[overflow][attention]") {
  const uint64_t hd = 8, nh = 2;
  Buffer q = upload(D, rnd(D, nh * hd, 30)), out = out_buf(nh * hd);
  ferrum_flash_attention_args s{};
  s.q = q.get(), s.out = out.get(), s.batch = 1, s.q_len = 1, s.kv_len = 0, s.pos_offset = 7, s.num_heads = nh;
  s.num_kv_heads = 1, s.head_dim = hd;
  SECTION("k and v NULL (no key is read)") {
    s.kv_seq_stride = 22;
    REQUIRE(call_raw(api().attention->flash_attention, s).status == FERRUM_STATUS_OK);
  }
  SECTION("a kv_seq_stride far past the small k and v (its product fits in 64 bits)") {
    Buffer k = upload(D, rnd(D, hd, 31)), v = upload(D, rnd(D, hd, 32));
    s.k = k.get(), s.v = v.get(), s.kv_seq_stride = uint64_t{1} << 40;
    REQUIRE(call_raw(api().attention->flash_attention, s).status == FERRUM_STATUS_OK);
  }
  // No visible key: every query row is +0.0, nothing past the rows is written.
  CHECK(slice(download(out), 0, nh * hd) == vec(nh * hd, 0.0));
  expect_poison(out, nh * hd, kGuard, "past the query rows");
}

TEST_CASE("zero work: split_qkv with kv_dim = 0 and NULL k / v", "[overflow][dense]") {
  const uint64_t tokens = 3, qd = 4;
  const vec x = rnd(D, tokens * qd, 33);
  Buffer qkv = upload(D, x), q = out_buf(tokens * qd);
  ferrum_split_qkv_args s{};
  s.qkv = qkv.get(), s.q = q.get(), s.tokens = tokens, s.q_dim = qd, s.kv_dim = 0;
  REQUIRE(call_raw(api().dense->split_qkv, s).status == FERRUM_STATUS_OK);
  CHECK(slice(download(q), 0, tokens * qd) == x);  // the rows are q alone
  expect_poison(q, tokens * qd, kGuard, "past q");
  SECTION("q_dim = 0 with a NULL q copies k and v") {
    Buffer k = out_buf(tokens * 2), v = out_buf(tokens * 2);
    ferrum_split_qkv_args z{};
    z.qkv = qkv.get(), z.k = k.get(), z.v = v.get(), z.tokens = tokens, z.q_dim = 0, z.kv_dim = 2;
    REQUIRE(call_raw(api().dense->split_qkv, z).status == FERRUM_STATUS_OK);
    const vec kd = download(k), vd = download(v);
    for (uint64_t t = 0; t < tokens; ++t)
      for (uint64_t i = 0; i < 2; ++i) {
        CHECK(kd[t * 2 + i] == x[t * 4 + i]);
        CHECK(vd[t * 2 + i] == x[t * 4 + 2 + i]);
      }
  }
}

TEST_CASE("zero work: kv_cache_append_batched_per_cache with nkv = 0 or hd = 0 and items", "[overflow][attention]") {
  Buffer cache = poisoned(D, 16), lens = idx({0});
  ferrum_buffer* caches[1] = {cache.get()};
  ferrum_kv_cache_append_batched_per_cache_args s{};
  s.caches = caches, s.cache_lens = lens.get(), s.capacity = 4, s.m = 1, s.nkv = 0, s.hd = 4;
  expect_raw_invalid(call_raw(api().attention->kv_cache_append_batched_per_cache, s),
                     {"kv_cache_append_batched_per_cache", "'nkv'", "given 0"});
  s.nkv = 1, s.hd = 0;
  expect_raw_invalid(call_raw(api().attention->kv_cache_append_batched_per_cache, s),
                     {"kv_cache_append_batched_per_cache", "'hd'", "given 0"});
  Buffer nd = upload(D, rnd(D, 4, 34));
  expect_facade_invalid([&] { ctx().kv_cache_append_batched_per_cache({.caches = caches, .new_data = nd, .cache_lens = lens, .capacity = 4, .nkv = 0, .hd = 4, .slot = 0}); },
                        {"kv_cache_append_batched_per_cache", "'nkv'"});
  expect_all_poison(cache);
}

TEST_CASE("zero work: paged_varlen_attention with total_q_tokens = 0 and a NULL q", "[overflow][paged_kv]") {
  Buffer kp = upload(D, rnd(D, 64, 35)), vp = upload(D, rnd(D, 64, 36)), out = out_buf(0);
  Buffer cu = idx({0, 0, 0}), offs = idx({1, 2}), bt = idx({0, 0});
  auto fill = [&](auto& s) {  // q = NULL: [0, num_heads, head_dim] has no element
    s.k_pool = kp.get(), s.v_pool = vp.get(), s.out = out.get(), s.cu_seqlens_q = cu.get(), s.pos_offsets = offs.get();
    s.block_tables = bt.get(), s.num_seqs = 2, s.total_q_tokens = 0, s.max_kv_len = 4, s.num_heads = 2;
    s.num_kv_heads = 2, s.head_dim = 4, s.block_size = 4, s.max_num_blocks_per_seq = 1;
  };
  ferrum_paged_varlen_attention_args s{};
  ferrum_paged_varlen_attention_vllm_args sv{};
  fill(s), fill(sv);
  CHECK(call_raw(api().paged_kv->paged_varlen_attention, s).status == FERRUM_STATUS_OK);
  CHECK(call_raw(api().paged_kv->paged_varlen_attention_vllm, sv).status == FERRUM_STATUS_OK);
  expect_all_poison(out);
}

// Buffers of 64 MiB or more are anonymous mappings (zero on first touch): a large zeroed cache
// must read back zero at both ends, take writes there and be released (fuzz: a 1.8 GB quantised
// KV layer used to be memset page by page, past the harness's memory limit).
TEST_CASE("alloc: a mapped buffer of 64 MiB or more is zero, writable at both ends and released", "[overflow][memory]") {
  const uint64_t n = (uint64_t{64} << 20) + 5;
  for (int round = 0; round < 2; ++round) {  // twice: the release must give the mapping back cleanly
    Buffer big = ctx().alloc_typed(Dtype::u8, n);
    REQUIRE(big.count() == n);
    Buffer tail = poisoned(Dtype::u8, 64), head = poisoned(Dtype::u8, 64);
    ctx().copy_slice({.src = big, .src_offset = n - 64, .dst = tail, .dst_offset = 0, .len = 64});
    ctx().copy_slice({.src = big, .src_offset = 0, .dst = head, .dst_offset = 0, .len = 64});
    CHECK(read_bytes(tail) == std::vector<uint8_t>(64, 0));
    CHECK(read_bytes(head) == std::vector<uint8_t>(64, 0));
    std::vector<uint8_t> bytes(64);
    for (uint64_t i = 0; i < 64; ++i) bytes[i] = static_cast<uint8_t>(1 + (i * 37 + 11) % 251);  // never 0
    Buffer src = upload_bytes(Dtype::u8, bytes);
    ctx().copy_slice({.src = src, .src_offset = 0, .dst = big, .dst_offset = n - 64, .len = 64});
    ctx().copy_slice({.src = big, .src_offset = n - 64, .dst = tail, .dst_offset = 0, .len = 64});
    CHECK(read_bytes(tail) == bytes);
  }
}
