// Facade tests against facade_mock (mock_plugin.cpp): errors, generated checks, facade
// defaults (against float64 references on seeded random data), support queries, lifetimes and
// move semantics.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <ferrum/common/dtype.hpp>
#include <ferrum/ferrum.hpp>

#include "mock_counters.hpp"

using ferrum::Backend;
using ferrum::Buffer;
using ferrum::Context;
using ferrum::Dtype;
using ferrum::Error;
using ferrum::ErrorCode;
using ferrum::Op;
using Catch::Matchers::Contains;

// Named arguments (args_gen.hpp): the checks below are compile-time. Each concept depends on
// the buffer type so that an ill-formed call makes it false instead of failing the build.
namespace named_args {
using ferrum::Buffer;
template <class B>
concept Positional = requires(Context& c, const B& q, B& o, uint64_t n) {  // positional on purpose
  c.flash_attention(q, q, q, o, n, n, n, n, n, n, n, true, 1.0f, n, n);
};
template <class B>
concept InOrder = requires(Context& c, const B& q, B& o) {
  c.flash_attention({.q = q, .k = q, .v = q, .out = o, .batch = 1, .q_len = 2, .head_dim = 8});
};
template <class B>  // two names in the wrong order (head_dim comes after batch)
concept Swapped = requires(Context& c, const B& q, B& o) {
  c.flash_attention({.q = q, .k = q, .v = q, .out = o, .head_dim = 8, .batch = 1});
};
template <class B>  // a misspelt name
concept Unknown = requires(Context& c, const B& q, B& o) {
  c.flash_attention({.q = q, .k = q, .v = q, .out = o, .casual = true});
};
template <class B>  // the output buffer left out
concept MissingOut = requires(Context& c, const B& q) {
  c.flash_attention({.q = q, .k = q, .v = q, .batch = 1});
};
template <class B>  // a const buffer as the output
concept ConstOut = requires(Context& c, const B& q) { c.flash_attention({.q = q, .k = q, .v = q, .out = q}); };
template <class B>  // a signed int for a uint64_t field (narrowing in a designated initializer)
concept NarrowedInt = requires(Context& c, const B& q, B& o, int n) {
  c.flash_attention({.q = q, .k = q, .v = q, .out = o, .batch = n});
};
template <class B>  // ops with at most 3 parameters and no two of one scalar type stay positional
concept PlainStaysPlain = requires(Context& c, const B& b, B& o, uint64_t n) {
  c.to_vec(b, n);
  c.alloc_typed(Dtype::f32, n);
  c.gelu(b, o, n);
  c.sync();
};
template <class T>  // ... but two of one scalar type in 3 parameters is named (src_dtype, dst_dtype)
concept WeightBytesPositional = requires(Context& c, std::span<const T> raw) {  // positional on purpose
  c.from_weight_bytes(raw, Dtype::f32, Dtype::f16);
};
template <class B>  // the RoPE mode has no default: it must be named
concept RopeModeLeftOut = requires(Context& c, const B& x, B& o) {
  c.qk_norm_rope({.input = x, .output = o, .tokens = 1, .heads = 1, .head_dim = 8});
};
template <class B>
concept RopeModeNamed = requires(Context& c, const B& x, B& o) {
  c.qk_norm_rope({.input = x, .output = o, .tokens = 1, .heads = 1, .head_dim = 8, .mode = ferrum::QkMode::copy});
};
static_assert(!Positional<Buffer>);
static_assert(InOrder<Buffer>);
static_assert(!Swapped<Buffer>);
static_assert(!Unknown<Buffer>);
static_assert(!MissingOut<Buffer>);
static_assert(!ConstOut<Buffer>);
static_assert(!NarrowedInt<Buffer>);
static_assert(PlainStaysPlain<Buffer>);
static_assert(!WeightBytesPositional<uint8_t>);
static_assert(!RopeModeLeftOut<Buffer>);
static_assert(RopeModeNamed<Buffer>);
}  // namespace named_args

// Counts heap allocations (operator new is replaced program-wide, libferrum included). The
// replacement pairs malloc/free itself; GCC's inlined new/delete pairing check cannot see that.
// Not under AddressSanitizer, which has its own operator new.
static uint64_t g_allocs = 0;
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCountingAllocs = false;
#else
constexpr bool kCountingAllocs = true;
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED);
  return std::malloc(n ? n : 1);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
#endif

namespace {

using mock_counters::calls;
using mock_counters::g_counters_set;
using mock_counters::live_buffers;

Backend load_mock() {
  REQUIRE(g_counters_set);
  return Backend::load(FACADE_MOCK_PATH);
}

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Values rounded to dtype `dt` and back (what a buffer of that dtype stores).
std::vector<float> stored(Dtype dt, const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (dt == Dtype::f16) r[i] = ferrum::to_float(ferrum::f16_from_float(v[i]));
    else if (dt == Dtype::bf16) r[i] = ferrum::to_float(ferrum::bf16_from_float(v[i]));
    else r[i] = v[i];
  }
  return r;
}

// A buffer of dtype `dt` holding `v` rounded into it.
Buffer upload(Context& ctx, Dtype dt, const std::vector<float>& v) {
  Buffer b = ctx.alloc_typed(dt, v.size());
  if (!v.empty()) ctx.write_f32_to_activation(b, v);
  return b;
}

// docs/spec.md §0.13 class F: relative L2 error against a float64 reference.
double rel_l2(const std::vector<float>& out, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den == 0 ? num : std::sqrt(num / den);
}

double tolerance(Dtype dt) { return dt == Dtype::f32 ? 1e-5 : dt == Dtype::f16 ? 2e-3 : 1e-2; }

}  // namespace

TEST_CASE("Backend describes the plugin", "[facade]") {
  Backend be = load_mock();
  CHECK(be.name() == "facade_mock");
  CHECK(be.version() == "0.1.0");
  CHECK(be.abi_version() == "1." + std::to_string(FERRUM_ABI_VERSION_MINOR));  // the headers' minor
  CHECK(be.build_info() == "facade test mock");
  CHECK_THAT(be.path(), Contains("facade_mock"));
  CHECK(be.device_count() == 1);
  CHECK(be.selected_device() == 0);
  const ferrum::DeviceProps p = be.device_props(0);
  CHECK(p.name == "facade mock device");
  CHECK(p.kind == ferrum::DeviceKind::cpu);
  CHECK(p.supports_dtype(Dtype::bf16));
  CHECK_FALSE(p.supports_dtype(Dtype::i8));
  CHECK_THROWS_AS(be.device_props(3), Error);
  CHECK_FALSE(be.supports_device_ordinal_scope());
  CHECK(ferrum::op_name(Op::gemm) == "gemm");
  CHECK(ferrum::op_family(Op::flash_attention) == "attention");
  CHECK(static_cast<int32_t>(Op::mla_attention) == FERRUM_OP_MLA_ATTENTION);
  CHECK(ferrum::to_string(Dtype::bf16) == "bf16");
  CHECK(ferrum::element_size(Dtype::f16) == 2);
}

TEST_CASE("supports() and support_matrix() never throw", "[facade][support]") {
  Backend be = load_mock();
  STATIC_REQUIRE(noexcept(be.supports(Op::gemm)));
  STATIC_REQUIRE(noexcept(be.support_matrix()));
  CHECK(be.supports(Op::gemm));
  CHECK_FALSE(be.supports(Op::rms_norm));                 // NULL slot, no default
  CHECK(be.supports(Op::scaled_add_inplace));             // facade default
  CHECK(be.supports(Op::world_size));                     // collective family NULL: default
  CHECK_FALSE(be.supports(Op::begin_graph_capture));      // graph family NULL: unsupported
  CHECK_FALSE(be.supports(static_cast<Op>(0)));
  CHECK_FALSE(be.supports(static_cast<Op>(9999)));
  const auto m = be.support_matrix();
  REQUIRE(m.size() == static_cast<size_t>(ferrum::kOpCount));
  for (size_t i = 0; i < m.size(); ++i) {
    CHECK(static_cast<size_t>(m[i].op) == i + 1);
    CHECK(m[i].usable() == be.supports(m[i].op));
  }
  const auto& g = m[static_cast<int>(Op::gemm) - 1];
  CHECK(g.name == "gemm");
  CHECK(g.family == "dense");
  CHECK(g.slot);
  const auto& s = m[static_cast<int>(Op::argmax_rows_f16) - 1];
  CHECK_FALSE(s.slot);
  CHECK(s.facade_default);
  Backend empty;
  CHECK_FALSE(empty.supports(Op::gemm));
  CHECK(empty.support_matrix().size() == static_cast<size_t>(ferrum::kOpCount));
}

TEST_CASE("a NULL slot is an unsupported Error naming op and plugin", "[facade][errors]") {
  Backend be = load_mock();
  Context ctx = be.create_context();
  Buffer x = ctx.from_slice(std::vector<float>(8, 1.0f));
  Buffer w = ctx.from_slice(std::vector<float>(4, 1.0f));
  Buffer out = ctx.alloc(8);
  try {
    ctx.rms_norm({.x = x, .w = w, .eps = 1e-6f, .out = out, .tokens = 2, .dim = 4});
    FAIL("rms_norm should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("rms_norm"));
    CHECK_THAT(e.what(), Contains("facade_mock 0.1.0 (ABI 1." + std::to_string(FERRUM_ABI_VERSION_MINOR) + ")"));
    CHECK_THAT(e.what(), Contains("NULL slot"));
  }
  // A whole family NULL (graph): the same error.
  try {
    ctx.begin_graph_capture();
    FAIL("begin_graph_capture should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("begin_graph_capture"));
  }
}

TEST_CASE("a slot returning UNSUPPORTED carries the plugin's reason", "[facade][errors]") {
  Backend be = load_mock();
  Context ctx = be.create_context();
  Buffer a = ctx.alloc_typed(Dtype::f16, 6);
  Buffer b = ctx.alloc_typed(Dtype::f16, 6);
  Buffer out = ctx.alloc_typed(Dtype::f16, 4);
  const uint64_t before = calls(Op::gemm);
  try {
    ctx.gemm({.a = a, .b = b, .out = out, .m = 2, .n = 2, .k = 3});
    FAIL("gemm f16 should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("gemm on plugin facade_mock 0.1.0 (ABI 1." + std::to_string(FERRUM_ABI_VERSION_MINOR) + ")"));
    CHECK_THAT(e.what(), Contains("dtype f16 is not supported by facade_mock (f32 only)"));
  }
  CHECK(calls(Op::gemm) == before + 1);  // the plugin decided
}

TEST_CASE("generated checks reject bad calls before the plugin runs", "[facade][checks]") {
  Backend be = load_mock();
  Context ctx = be.create_context();
  const uint64_t m = 2, n = 3, k = 4;
  Buffer a = ctx.alloc(m * k);
  Buffer b = ctx.alloc(n * k);
  Buffer out = ctx.alloc(m * n);

  SECTION("too small a buffer") {
    Buffer small = ctx.alloc(m * k - 1);
    const uint64_t before = calls(Op::gemm);
    try {
      ctx.gemm({.a = small, .b = b, .out = out, .m = m, .n = n, .k = k});
      FAIL("gemm should have thrown");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      const std::string msg = e.what();
      CHECK_THAT(msg, Contains("gemm"));
      CHECK_THAT(msg, Contains("argument 'a'"));
      CHECK_THAT(msg, Contains("expected at least 8 elements"));
      CHECK_THAT(msg, Contains("[m, k] = [2, 4]"));
      CHECK_THAT(msg, Contains("given a buffer of 7 f32 elements"));
      CHECK_THAT(msg, Contains("facade_mock 0.1.0 (ABI 1." + std::to_string(FERRUM_ABI_VERSION_MINOR) + ")"));
    }
    CHECK(calls(Op::gemm) == before);
  }
  SECTION("mismatched activation dtypes") {
    Buffer r = ctx.alloc_typed(Dtype::f32, 8);
    Buffer x16 = ctx.alloc_typed(Dtype::f16, 8);
    const uint64_t before = calls(Op::add_inplace);
    try {
      ctx.add_inplace(r, x16, 8);
      FAIL("add_inplace should have thrown");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      CHECK_THAT(e.what(), Contains("argument 'x': expected dtype f32"));
      CHECK_THAT(e.what(), Contains("given f16"));
    }
    CHECK(calls(Op::add_inplace) == before);
  }
  SECTION("forbidden aliasing") {
    const uint64_t before = calls(Op::gemm);
    Buffer sq = ctx.alloc(16);
    try {
      ctx.gemm({.a = sq, .b = b, .out = sq, .m = 2, .n = 3, .k = 4});
      FAIL("gemm with out == a should have thrown");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      CHECK_THAT(e.what(), Contains("arguments 'out' and 'a'"));
    }
    CHECK(calls(Op::gemm) == before);
    // add_inplace allows x == residual (docs/spec.md §3): doubles in place.
    Buffer r = ctx.from_slice(std::vector<float>{1, 2, 3});
    ctx.add_inplace(r, r, 3);
    CHECK(ctx.to_vec(r, 3) == std::vector<float>{2, 4, 6});
  }
  SECTION("a released handle") {
    Buffer tmp = ctx.alloc(8);
    ferrum_buffer* raw = tmp.get();
    tmp.reset();
    ferrum_gemm_args args{};  // via query_support: the raw path cannot fake a Buffer
    args.struct_size = sizeof args;
    args.a = raw;
    const auto ans = ctx.query_support(Op::gemm, &args);
    CHECK_FALSE(ans.supported);
    CHECK(ans.code == ErrorCode::invalid_argument);
  }
}

TEST_CASE("gemm and add_inplace run on the plugin (f32)", "[facade][ops]") {
  Backend be = load_mock();
  Context ctx = be.create_context();
  const uint64_t m = 3, n = 5, k = 7;
  const auto av = random_floats(m * k, 1), bv = random_floats(n * k, 2);
  Buffer a = ctx.from_slice(av), b = ctx.from_slice(bv), out = ctx.alloc(m * n);
  ctx.gemm({.a = a, .b = b, .out = out, .m = m, .n = n, .k = k});
  std::vector<double> ref(m * n);
  for (uint64_t i = 0; i < m; ++i)
    for (uint64_t j = 0; j < n; ++j)
      for (uint64_t p = 0; p < k; ++p) ref[i * n + j] += double(av[i * k + p]) * bv[j * k + p];
  CHECK(rel_l2(ctx.to_vec(out, m * n), ref) <= 1e-5);
}

TEST_CASE("facade default: scaled_add_inplace", "[facade][defaults]") {
  const Dtype dt = GENERATE(Dtype::f32, Dtype::f16, Dtype::bf16);
  Backend be = load_mock();
  Context ctx = be.create_context({}, dt);
  REQUIRE(ctx.activation_dtype() == dt);
  const uint64_t len = 257;
  const auto d0 = stored(dt, random_floats(len, 10)), s0 = stored(dt, random_floats(len, 11));
  Buffer dst = upload(ctx, dt, d0), src = upload(ctx, dt, s0);
  const float scale = 0.37f;
  ctx.scaled_add_inplace({.dst = dst, .src = src, .scale = scale, .len = len});
  std::vector<double> ref(len);
  for (uint64_t i = 0; i < len; ++i) ref[i] = double(d0[i]) + double(scale) * s0[i];
  CHECK(rel_l2(ctx.to_vec(dst, len), ref) <= tolerance(dt));
  CHECK_THROWS_AS(ctx.scaled_add_inplace({.dst = dst, .src = src, .scale = std::numeric_limits<float>::infinity(), .len = len}),
                  Error);
}

TEST_CASE("facade default: write_f32_to_activation", "[facade][defaults]") {
  const Dtype dt = GENERATE(Dtype::f32, Dtype::f16, Dtype::bf16);
  Backend be = load_mock();
  Context ctx = be.create_context();
  const auto init = random_floats(20, 3), data = random_floats(12, 4);
  Buffer dst = ctx.alloc_typed(dt, 20);
  ctx.write_f32_to_activation(dst, init);
  ctx.write_f32_to_activation(dst, data);  // writes the first 12 only
  const auto got = ctx.to_vec(dst, 20);
  const auto want_head = stored(dt, data), want_tail = stored(dt, init);
  for (size_t i = 0; i < 20; ++i) CHECK(got[i] == (i < 12 ? want_head[i] : want_tail[i]));
  ctx.write_f32_to_activation(dst, std::span<const float>());  // no-op
  CHECK_THROWS_AS(ctx.write_f32_to_activation(dst, std::vector<float>(21, 0.0f)), Error);
}

TEST_CASE("facade default: argmax_rows_f16", "[facade][defaults]") {
  const Dtype dt = GENERATE(Dtype::f32, Dtype::f16, Dtype::bf16);
  Backend be = load_mock();
  Context ctx = be.create_context();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const uint64_t m = 6, n = 5;
  std::vector<float> v = {
      1, 3, 3, 2, 0,            // tie: the smallest index
      nan, -1, nan, -0.5f, -2,  // NaN skipped
      nan, nan, nan, nan, nan,  // all NaN: 0
      -inf, -inf, -inf, -inf, -inf,  // all -inf: 0
      -0.0f, 0.0f, -1, -2, -3,  // -0 == +0: index 0
      1, 2, inf, 4, inf};       // +inf wins
  Buffer logits = upload(ctx, dt, v);
  CHECK(ctx.argmax_rows_f16({.logits = logits, .m = m, .n = n}) == std::vector<uint32_t>{1, 3, 0, 0, 0, 2});
  // Random rows against a float64 scan.
  const auto r = stored(dt, random_floats(40 * 33, 5));
  Buffer big = upload(ctx, dt, r);
  const auto got = ctx.argmax_rows_f16({.logits = big, .m = 40, .n = 33});
  for (uint64_t row = 0; row < 40; ++row) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < 33; ++i)
      if (double(r[row * 33 + i]) > double(r[row * 33 + best])) best = i;
    CHECK(got[row] == best);
  }
  CHECK(ctx.argmax_rows_f16({.logits = logits, .m = 0, .n = n}).empty());
  CHECK_THROWS_AS(ctx.argmax_rows_f16({.logits = logits, .m = 1, .n = 0}), Error);
}

TEST_CASE("facade default: embedding_lookup_dev", "[facade][defaults]") {
  const Dtype ids_dt = GENERATE(Dtype::u32, Dtype::i32);
  Backend be = load_mock();
  Context ctx = be.create_context({}, Dtype::f16);
  const uint64_t vocab = 11, dim = 6, batch = 5;
  const auto table_v = stored(Dtype::f16, random_floats(vocab * dim, 6));
  Buffer table = upload(ctx, Dtype::f16, table_v);
  const std::vector<uint32_t> ids = {3, 0, 11, 10, 0xFFFFFFFFu};  // 11 and -1/2^32-1 are out of range
  Buffer ids_buf = ctx.from_slice_typed<uint32_t>(ids);
  if (ids_dt == Dtype::i32) {
    std::vector<int32_t> sids(ids.begin(), ids.end());
    ids_buf = ctx.from_slice_typed<int32_t>(sids);
  }
  Buffer out = ctx.alloc_typed(Dtype::f16, batch * dim);
  ctx.write_f32_to_activation(out, std::vector<float>(batch * dim, 9.0f));
  ctx.embedding_lookup_dev({.table = table, .ids = ids_buf, .out = out, .batch = batch, .dim = dim});
  const auto got = ctx.to_vec(out, batch * dim);
  for (uint64_t i = 0; i < batch; ++i)
    for (uint64_t d = 0; d < dim; ++d) {
      const double want = ids[i] < vocab ? table_v[ids[i] * dim + d] : 0.0;
      CHECK(got[i * dim + d] == want);
    }
}

TEST_CASE("facade default: from_weight_bytes", "[facade][defaults]") {
  Backend be = load_mock();
  Context ctx = be.create_context({}, Dtype::bf16);
  const auto v = random_floats(33, 7, -70000.0f, 70000.0f);
  SECTION("f32 -> f16 rounds to nearest even, overflow to inf") {
    std::vector<uint8_t> raw(v.size() * 4 + 1);  // +1: an odd start offset (any alignment)
    std::memcpy(raw.data() + 1, v.data(), v.size() * 4);
    Buffer b = ctx.from_weight_bytes({.raw = std::span<const uint8_t>(raw).subspan(1), .src_dtype = Dtype::f32,
                                     .dst_dtype = Dtype::f16});
    CHECK(b.dtype() == Dtype::f16);
    REQUIRE(b.count() == v.size());
    const auto bits = ctx.read_typed<ferrum::f16>(b, v.size());
    for (size_t i = 0; i < v.size(); ++i) CHECK(bits[i].bits == ferrum::f16_from_float(v[i]).bits);
  }
  SECTION("bf16 -> f16 goes through the exact f32 value; dst 0 = the context's dtype") {
    std::vector<ferrum::bf16> src(v.size());
    for (size_t i = 0; i < v.size(); ++i) src[i] = ferrum::bf16_from_float(v[i] / 8);
    std::span<const uint8_t> raw(reinterpret_cast<const uint8_t*>(src.data()), src.size() * 2);
    Buffer b16 = ctx.from_weight_bytes({.raw = raw, .src_dtype = Dtype::bf16, .dst_dtype = Dtype::f16});
    const auto got = ctx.read_typed<ferrum::f16>(b16, v.size());
    for (size_t i = 0; i < v.size(); ++i)
      CHECK(got[i].bits == ferrum::f16_from_float(ferrum::to_float(src[i])).bits);
    Buffer same = ctx.from_weight_bytes({.raw = raw, .src_dtype = Dtype::bf16});  // default: context's bf16
    CHECK(same.dtype() == Dtype::bf16);
    const auto same_bits = ctx.read_typed<ferrum::bf16>(same, v.size());
    for (size_t i = 0; i < v.size(); ++i) CHECK(same_bits[i].bits == src[i].bits);
  }
  SECTION("bad arguments") {
    const std::vector<uint8_t> raw(7);
    try {
      (void)ctx.from_weight_bytes({.raw = raw, .src_dtype = Dtype::f32});
      FAIL("raw_len 7 should be rejected");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      CHECK_THAT(e.what(), Contains("raw_len"));
    }
    CHECK_THROWS_AS(ctx.from_weight_bytes({.raw = raw, .src_dtype = Dtype::i32}), Error);
  }
}

TEST_CASE("facade default: moe_combine", "[facade][defaults]") {
  const Dtype dt = GENERATE(Dtype::f32, Dtype::bf16);
  Backend be = load_mock();
  Context ctx = be.create_context({}, dt);
  const uint64_t T = 4, H = 9, K = 3, P = 7;
  const auto packed = stored(dt, random_floats(P * H, 8));
  const auto w = random_floats(T * K, 9, 0.0f, 1.0f);
  std::vector<int32_t> pairs = {0, 6, 2, -1, 3, 3, 7, 1, 5, 4, 2, 0};  // -1 and 7 skipped
  Buffer pd = upload(ctx, dt, packed), pb = ctx.from_slice_typed<int32_t>(pairs),
         wb = ctx.from_slice_typed<float>(w), out = ctx.alloc_typed(dt, T * H);
  ctx.moe_combine({.packed_down = pd, .pairs_by_token = pb, .pair_weights = wb, .out = out, .num_tokens = T, .hidden = H, .top_k = K, .num_packed = P});
  std::vector<double> ref(T * H, 0.0);
  for (uint64_t t = 0; t < T; ++t)
    for (uint64_t k = 0; k < K; ++k) {
      const int32_t r = pairs[t * K + k];
      if (r < 0 || r >= static_cast<int32_t>(P)) continue;
      for (uint64_t h = 0; h < H; ++h) ref[t * H + h] += double(w[t * K + k]) * packed[r * H + h];
    }
  CHECK(rel_l2(ctx.to_vec(out, T * H), ref) <= tolerance(dt));
}

TEST_CASE("facade defaults: flags, element size, collectives, graphs", "[facade][defaults]") {
  Backend be = load_mock();
  Context f32 = be.create_context();
  Context f16 = be.create_context({}, Dtype::f16);
  CHECK(f32.activation_elem_size_bytes() == 4);
  CHECK(f16.activation_elem_size_bytes() == 2);
  CHECK(f32.supports_llama_family_batched_decode() == 0);  // the mock lacks those slots
  CHECK(f32.supports_paged_kv() == 0);
  CHECK(f32.supports_varlen_qkv() == 0);
  CHECK(f32.supports_vllm_paged_attn() == 0);
  f32.sync_before_host_readback();

  CHECK(f32.world_size() == 1);
  CHECK(f32.rank() == 0);
  CHECK(f32.comm_unique_id() == std::vector<uint8_t>(128, 0));
  const std::array<uint8_t, 128> id{};
  f32.comm_init({.unique_id = id.data(), .world_size = 1, .rank = 0});
  try {
    f32.comm_init({.unique_id = id.data(), .world_size = 2, .rank = 0});
    FAIL("comm_init with 2 ranks should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("comm_init"));
  }
  f32.comm_destroy();
  const auto v = random_floats(10, 12);
  Buffer buf = f32.from_slice(v);
  f32.all_reduce(buf, 10, FERRUM_REDUCE_SUM);
  f32.broadcast(buf, 10, 0);
  CHECK(f32.to_vec(buf, 10) == v);
  CHECK_THROWS_AS(f32.broadcast(buf, 10, 1), Error);
  CHECK_THROWS_AS(f32.all_reduce(buf, 10, 9), Error);
  Buffer global = f32.alloc(10);
  f32.all_gather(buf, global, 10);
  CHECK(f32.to_vec(global, 10) == v);

  CHECK(f32.graph_capture_in_flight() == 0);
  CHECK(f32.replay_graph(42) == 0);
  f32.reset_graph(42);
  f32.reset_all_graphs();
  CHECK_THROWS_AS(f32.end_graph_capture(1), Error);
  CHECK_THROWS_AS(f32.set_decode_state({.token = 1, .step = 2}), Error);
  CHECK_THROWS_AS(f32.set_dev_state_mode(true), Error);
}

TEST_CASE("query_support: plugin answers, NULL slots, facade defaults", "[facade][support]") {
  Backend be = load_mock();
  Context ctx = be.create_context();
  Buffer a32 = ctx.alloc(4), a16 = ctx.alloc_typed(Dtype::f16, 4);
  ferrum_gemm_args g{};
  g.struct_size = sizeof g;
  g.a = a32.get();
  CHECK(ctx.query_support(Op::gemm, &g).supported);
  g.a = a16.get();
  const auto no = ctx.query_support(Op::gemm, &g);
  CHECK_FALSE(no.supported);
  CHECK(no.code == ErrorCode::unsupported);
  CHECK_THAT(no.reason, Contains("f32 only"));
  CHECK_FALSE(ctx.query_support(Op::rms_norm, nullptr).supported);
  CHECK(ctx.query_support(Op::scaled_add_inplace, nullptr).supported);
}

TEST_CASE("objects keep the plugin loaded and release cleanly", "[facade][lifetime]") {
  const uint64_t live0 = live_buffers();
  {
    Buffer keep;
    ferrum::Timer timer;
    {
      Backend be = load_mock();
      Context ctx = be.create_context();
      keep = ctx.from_slice(std::vector<float>{1, 2, 3});
      timer = ctx.make_timer();
      ctx.record_start(timer);
      ctx.record_end(timer);
      CHECK(ctx.elapsed_ms(timer) >= 0.0);
      CHECK(live_buffers() == live0 + 1);
    }  // Backend and Context gone first
    CHECK(keep);
    CHECK(keep.dtype() == Dtype::f32);
    CHECK(keep.count() == 3);
    CHECK(keep.library() != nullptr);
  }  // Buffer and Timer released through the still-loaded plugin
  CHECK(live_buffers() == live0);
}

TEST_CASE("move semantics: moved-from objects are empty, release() gives the handle up",
          "[facade][lifetime]") {
  Backend be = load_mock();
  Backend be2 = std::move(be);
  CHECK_FALSE(be);
  CHECK(be2);
  Context ctx = be2.create_context();
  Context ctx2 = std::move(ctx);
  CHECK_FALSE(ctx);
  CHECK(ctx.get() == nullptr);
  try {
    (void)ctx.alloc(4);
    FAIL("an empty Context should throw");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
  }
  const uint64_t live0 = live_buffers();
  Buffer a = ctx2.alloc(4);
  ferrum_buffer* raw = a.get();
  Buffer b = std::move(a);
  CHECK_FALSE(a);
  CHECK(a.get() == nullptr);
  CHECK(a.count() == 0);
  CHECK(b.get() == raw);
  CHECK(a.release() == nullptr);
  b = ctx2.alloc(2);  // move-assign releases the old buffer
  CHECK(live_buffers() == live0 + 1);
  ferrum_buffer* given = b.release();
  CHECK_FALSE(b);
  CHECK(live_buffers() == live0 + 1);  // not freed by release()
  Buffer again(given, be2.library());  // adopt it back: freed by this owner
  CHECK(again.count() == 2);
  again.reset();
  CHECK(live_buffers() == live0);
  ferrum_context* raw_ctx = ctx2.release();
  CHECK(raw_ctx != nullptr);
  ferrum_context_destroy_args d{};
  d.struct_size = sizeof d;
  d.context = raw_ctx;
  CHECK(be2.api()->context->context_destroy(nullptr, &d) == FERRUM_STATUS_OK);
}

TEST_CASE("with_device_ordinal scopes contexts", "[facade][device]") {
  Backend be = load_mock();
  CHECK(ferrum::with_device_ordinal(0, [&] { return be.create_context().device(); }) == 0);
  // The mock does not support ordinal scopes: i > 0 is refused by the facade.
  try {
    ferrum::with_device_ordinal(1, [&] { (void)be.create_context(); });
    FAIL("scope 1 should be refused");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("with_device_ordinal(1)"));
  }
  CHECK_FALSE(ferrum::detail::current_device_scope().has_value());  // restored
  // An explicit ordinal goes to the plugin, which names the reason.
  try {
    (void)be.create_context(5);
    FAIL("device 5 should be rejected");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK_THAT(e.what(), Contains("device_ordinal"));
  }
}

TEST_CASE("op calls do not allocate on the success path", "[facade][overhead]") {
  if (!kCountingAllocs) {
    WARN("allocation counting is off under AddressSanitizer");
    return;
  }
  Backend be = load_mock();
  Context ctx = be.create_context();
  Buffer a = ctx.alloc(6), b = ctx.alloc(6), out = ctx.alloc(4), x = ctx.alloc(64), y = ctx.alloc(64);
  ctx.gemm({.a = a, .b = b, .out = out, .m = 2, .n = 2, .k = 3});  // warm up (thread-local state, lazy init)
  const uint64_t before = __atomic_load_n(&g_allocs, __ATOMIC_RELAXED);
  for (int i = 0; i < 100; ++i) {
    ctx.gemm({.a = a, .b = b, .out = out, .m = 2, .n = 2, .k = 3});
    ctx.gelu(x, y, 64);
    ctx.add_inplace(x, y, 64);
  }
  CHECK(__atomic_load_n(&g_allocs, __ATOMIC_RELAXED) == before);
}

TEST_CASE("host overhead per op", "[.bench][facade]") {
  Backend be = load_mock();
  Context ctx = be.create_context();
  Buffer x = ctx.alloc(1024), out = ctx.alloc(1024);
  const int iters = 2000000;
  for (int i = 0; i < 1000; ++i) ctx.gelu(x, out, 1024);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) ctx.gelu(x, out, 1024);
  const auto t1 = std::chrono::steady_clock::now();
  const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / iters;
  WARN("Context::gelu (2 buffers, no-op slot): " << ns << " ns per call, facade + mock lookups");
  const auto t2 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) ctx.sync();
  const auto t3 = std::chrono::steady_clock::now();
  const double ns_sync = std::chrono::duration<double, std::nano>(t3 - t2).count() / iters;
  WARN("Context::sync (no buffers, counting slot): " << ns_sync << " ns per call");
  CHECK(ns < 1000.0);
}
