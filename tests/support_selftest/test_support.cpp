// Self-test of conformance/ref: quantisation bit patterns, comparison rules, references, Qwen forward.
#include <catch2/catch.hpp>

#include "ref/compare.hpp"
#include "ref/quantize.hpp"
#include "ref/qwen_ref.hpp"
#include "ref/reference.hpp"
#include "ref/rng.hpp"

#include <bit>
#include <cmath>
#include <limits>
#include <random>

using namespace ferrum;
using testing::round_to;
using V = std::vector<double>;

static constexpr double kInf = std::numeric_limits<double>::infinity();
static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ============================================================ quantize
TEST_CASE("f16 encoding of known values", "[quantize]") {
  using testing::to_f16_bits;
  CHECK(to_f16_bits(1.0) == 0x3C00);
  CHECK(to_f16_bits(-2.0) == 0xC000);
  CHECK(to_f16_bits(0.0) == 0x0000);
  CHECK(to_f16_bits(-0.0) == 0x8000);
  CHECK(to_f16_bits(65504.0) == 0x7BFF);
  CHECK(to_f16_bits(65519.0) == 0x7BFF);   // 65504 < |v| < 65520 -> 65504
  CHECK(to_f16_bits(65520.0) == 0x7C00);   // >= 65520 -> inf
  CHECK(to_f16_bits(-65520.0) == 0xFC00);
  CHECK(to_f16_bits(1e9) == 0x7C00);
  CHECK(to_f16_bits(kInf) == 0x7C00);
  CHECK(to_f16_bits(-kInf) == 0xFC00);
  CHECK(to_f16_bits(0.1) == 0x2E66);
  CHECK(to_f16_bits(1.0 / 3.0) == 0x3555);
  CHECK(to_f16_bits(std::ldexp(1.0, -14)) == 0x0400);          // min normal
  CHECK(to_f16_bits(std::ldexp(1.0, -24)) == 0x0001);          // min subnormal
  CHECK(to_f16_bits(std::ldexp(1.0, -25)) == 0x0000);          // tie -> even (0)
  CHECK(to_f16_bits(std::ldexp(1.5, -25)) == 0x0001);
  CHECK(to_f16_bits(std::ldexp(3.0, -25)) == 0x0002);          // 1.5 units: tie -> even (2)
  CHECK(to_f16_bits(std::ldexp(2047.0, -25)) == 0x0400);       // 1023.5 units: tie -> even (1024 = min normal)
  CHECK(to_f16_bits(1.0 + std::ldexp(1.0, -11)) == 0x3C00);    // tie -> even
  CHECK(to_f16_bits(1.0 + std::ldexp(3.0, -11)) == 0x3C02);    // tie -> even
  CHECK(to_f16_bits(1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -20)) == 0x3C01);
  const uint16_t n = to_f16_bits(kNaN);
  CHECK((n & 0x7C00) == 0x7C00);
  CHECK((n & 0x03FF) != 0);
  CHECK(testing::f16_bits_to_double(0x7BFF) == 65504.0);
  CHECK(testing::f16_bits_to_double(0x0001) == std::ldexp(1.0, -24));
  CHECK(testing::f16_bits_to_double(0x3555) == 0.333251953125);
  CHECK(std::isnan(testing::f16_bits_to_double(0x7E00)));
  CHECK(testing::f16_bits_to_double(0xFC00) == -kInf);
}

TEST_CASE("bf16 encoding of known values", "[quantize]") {
  using testing::to_bf16_bits;
  CHECK(to_bf16_bits(1.0) == 0x3F80);
  CHECK(to_bf16_bits(-2.0) == 0xC000);
  CHECK(to_bf16_bits(1.0 / 3.0) == 0x3EAB);
  CHECK(testing::bf16_bits_to_double(0x3EAB) == 0.333984375);
  CHECK(to_bf16_bits(std::numeric_limits<float>::max()) == 0x7F80);  // rounds past the largest finite -> inf
  CHECK(to_bf16_bits(1.0 + std::ldexp(1.0, -8)) == 0x3F80);          // tie -> even
  CHECK(to_bf16_bits(1.0 + std::ldexp(3.0, -8)) == 0x3F82);          // tie -> even
  const uint16_t n = to_bf16_bits(kNaN);
  CHECK((n & 0x7F80) == 0x7F80);
  CHECK((n & 0x7F) != 0);
  CHECK(to_bf16_bits(std::bit_cast<float>(0x7F800001u)) != 0x7F80);   // signalling NaN stays NaN
  CHECK(round_to(FERRUM_DTYPE_BF16, 1.0 / 3.0) == 0.333984375);
}

TEST_CASE("round_to rules", "[quantize]") {
  CHECK(round_to(FERRUM_DTYPE_F16, 65510.0) == 65504.0);
  CHECK(round_to(FERRUM_DTYPE_F16, 65520.0) == kInf);
  CHECK(round_to(FERRUM_DTYPE_F16, -65520.0) == -kInf);
  CHECK(round_to(FERRUM_DTYPE_F32, 0.1) == static_cast<double>(0.1f));
  CHECK(round_to(FERRUM_DTYPE_INVALID, 0.1) == 0.1);
  CHECK(std::isnan(round_to(FERRUM_DTYPE_F16, kNaN)));
  CHECK(std::isnan(round_to(FERRUM_DTYPE_BF16, kNaN)));
  CHECK(round_to(FERRUM_DTYPE_BF16, -kInf) == -kInf);
  CHECK(std::signbit(round_to(FERRUM_DTYPE_F16, -0.0)));
  CHECK(round_to(FERRUM_DTYPE_F16, 1e-9) == 0.0);
}

TEST_CASE("f16 and bf16: every bit pattern round-trips", "[quantize]") {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const auto h = static_cast<uint16_t>(b);
    const double v = testing::f16_bits_to_double(h);
    if (std::isnan(v)) {
      REQUIRE((testing::to_f16_bits(v) & 0x7C00) == 0x7C00);
      REQUIRE((testing::to_f16_bits(v) & 0x3FF) != 0);
    } else {
      REQUIRE(testing::to_f16_bits(v) == h);
      REQUIRE(testing::f32_bits_to_f16_bits(testing::f16_bits_to_f32_bits(h)) == h);
    }
    const double w = testing::bf16_bits_to_double(h);
    if (std::isnan(w)) REQUIRE(std::isnan(testing::bf16_bits_to_double(testing::to_bf16_bits(w))));
    else REQUIRE(testing::to_bf16_bits(w) == h);
  }
}

TEST_CASE("f16 rounding is nearest-even on random f32 values", "[quantize]") {
  std::mt19937_64 g(7);
  for (int it = 0; it < 300000; ++it) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(g()));
    if (!std::isfinite(x)) continue;
    const uint16_t h = testing::f32_bits_to_f16_bits(std::bit_cast<uint32_t>(x));
#if defined(__FLT16_MAX__)
    REQUIRE(std::bit_cast<uint16_t>(static_cast<_Float16>(x)) == h);  // compiler's conversion agrees
#endif
    const double xd = x, a = std::fabs(xd);
    if (a >= 65520.0) { REQUIRE((h & 0x7FFF) == 0x7C00); continue; }
    // independent check: the chosen magnitude is the nearest, ties to even
    const uint16_t mag = h & 0x7FFF;
    const double d0 = std::fabs(testing::f16_bits_to_double(mag) - a);
    if (mag < 0x7BFF) REQUIRE(d0 <= std::fabs(testing::f16_bits_to_double(static_cast<uint16_t>(mag + 1)) - a));
    if (mag > 0) {
      const double dm = std::fabs(testing::f16_bits_to_double(static_cast<uint16_t>(mag - 1)) - a);
      REQUIRE(d0 <= dm);
      if (d0 == dm) REQUIRE((mag & 1) == 0);
    }
  }
}

TEST_CASE("f8 e4m3 conversions", "[quantize]") {
  CHECK(testing::f32_to_f8e4m3_bits(1.0f) == 0x38);
  CHECK(testing::f32_to_f8e4m3_bits(448.0f) == 0x7E);
  CHECK(testing::f32_to_f8e4m3_bits(460.0f) == 0x7E);
  CHECK(testing::f32_to_f8e4m3_bits(1000.0f) == 0x7E);
  CHECK(testing::f32_to_f8e4m3_bits(-INFINITY) == 0xFE);
  CHECK(testing::f32_to_f8e4m3_bits(NAN) == 0x7F);
  CHECK(testing::f32_to_f8e4m3_bits(std::ldexp(1.0f, -9)) == 0x01);
  CHECK(testing::f32_to_f8e4m3_bits(std::ldexp(1.0f, -10)) == 0x00);  // tie -> even
  for (uint32_t b = 0; b < 256; ++b) {
    const double v = testing::f8e4m3_bits_to_double(static_cast<uint8_t>(b));
    if ((b & 0x7F) == 0x7F) { CHECK(std::isnan(v)); continue; }
    CHECK(testing::f32_to_f8e4m3_bits(static_cast<float>(v)) == b);
  }
}

TEST_CASE("encode/decode little-endian bytes", "[quantize]") {
  CHECK(testing::encode(FERRUM_DTYPE_F16, {1.0, -2.0}) == std::vector<uint8_t>{0x00, 0x3C, 0x00, 0xC0});
  CHECK(testing::encode(FERRUM_DTYPE_BF16, {1.0}) == std::vector<uint8_t>{0x80, 0x3F});
  CHECK(testing::encode(FERRUM_DTYPE_F32, {1.0}) == std::vector<uint8_t>{0x00, 0x00, 0x80, 0x3F});
  CHECK(testing::encode(FERRUM_DTYPE_I32, {-1.0}) == std::vector<uint8_t>{0xFF, 0xFF, 0xFF, 0xFF});
  CHECK(testing::encode(FERRUM_DTYPE_U32, {258.0}) == std::vector<uint8_t>{0x02, 0x01, 0x00, 0x00});
  CHECK_THROWS_AS(testing::encode(FERRUM_DTYPE_U8, {256.0}), std::invalid_argument);
  CHECK_THROWS_AS(testing::encode(FERRUM_DTYPE_I32, {0.5}), std::invalid_argument);
  for (int32_t dt : {FERRUM_DTYPE_F32, FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16}) {
    const V x = testing::normal(1000, 0.0, 3.0, 11);
    const V d = testing::decode(dt, testing::encode(dt, x));
    REQUIRE(d.size() == x.size());
    for (size_t i = 0; i < x.size(); ++i) REQUIRE(d[i] == round_to(dt, x[i]));
  }
  CHECK(testing::decode(FERRUM_DTYPE_I8, {0xFF, 0x7F}) == V{-1.0, 127.0});
  CHECK_THROWS_AS(testing::decode(FERRUM_DTYPE_F16, {0x00}), std::invalid_argument);
}

// ============================================================ rng
TEST_CASE("rng: seeded, in range, never all zero", "[rng]") {
  const V a = testing::uniform(1000, -2.0, 3.0, 5), b = testing::uniform(1000, -2.0, 3.0, 5);
  CHECK(a == b);
  CHECK(a != testing::uniform(1000, -2.0, 3.0, 6));
  for (double x : a) REQUIRE((x >= -2.0 && x < 3.0));
  CHECK(testing::uniform(4, 0.0, 0.0, 1)[0] != 0.0);
  CHECK(testing::uniform_dtype(FERRUM_DTYPE_F16, 3, 0.0, 1e-12, 1)[0] != 0.0);  // all round to 0 otherwise
  const V f = testing::uniform_dtype(FERRUM_DTYPE_BF16, 500, -1.0, 1.0, 3);
  for (double x : f) REQUIRE(round_to(FERRUM_DTYPE_BF16, x) == x);
  const V n = testing::normal(20000, 1.0, 2.0, 9);
  double m = 0, s = 0;
  for (double x : n) m += x;
  m /= static_cast<double>(n.size());
  for (double x : n) s += (x - m) * (x - m);
  s = std::sqrt(s / static_cast<double>(n.size()));
  CHECK(std::fabs(m - 1.0) < 0.05);
  CHECK(std::fabs(s - 2.0) < 0.05);
  const auto ids = testing::random_ids(1000, 17, 4);
  for (auto id : ids) REQUIRE(id < 17u);
  auto perm = testing::random_permutation(50, 2);
  std::sort(perm.begin(), perm.end());
  for (uint32_t i = 0; i < 50; ++i) REQUIRE(perm[i] == i);
}

// ============================================================ compare
static_assert(testing::tolerance(FERRUM_DTYPE_F32) == 1e-5);
static_assert(testing::tolerance(FERRUM_DTYPE_F16) == 2e-3);
static_assert(testing::tolerance(FERRUM_DTYPE_BF16) == 1e-2);
static_assert(testing::tolerance(FERRUM_DTYPE_I32) == 0.0);

TEST_CASE("compare F: rounding passes, a single bad row in a large batch fails", "[compare]") {
  const uint64_t rows = 4096, rl = 64;
  const V ref = testing::normal(rows * rl, 0.0, 1.0, 21);
  for (int32_t dt : {FERRUM_DTYPE_F32, FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16}) {
    const V out = round_to(dt, ref);
    auto r = testing::compare(out, ref, dt, rl, 'F');
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.first_bad_index == testing::kNoIndex);
  }
  V out = round_to(FERRUM_DTYPE_F16, ref);
  for (uint64_t i = 1234 * rl; i < 1235 * rl; ++i) out[i] *= 1.01;  // 1% wrong in one row
  auto r = testing::compare(out, ref, FERRUM_DTYPE_F16, rl, 'F');
  INFO(r.message);
  CHECK_FALSE(r.ok);
  CHECK(r.rel_err < 2e-3);  // the whole-tensor norm alone would not catch it
  CHECK(r.worst_row == 1234);
  CHECK(r.worst_row_rel_err > 2e-3);
  CHECK(r.first_bad_index / rl == 1234);
  CHECK(r.message.find("worst row 1234") != std::string::npos);
  CHECK(r.message.find("FAIL") != std::string::npos);
  // the same corruption is invisible with row_len = 0 (one row): documents why rows matter
  CHECK(testing::compare(out, ref, FERRUM_DTYPE_F16, 0, 'F').ok);
}

TEST_CASE("compare F: floor for tiny rows, global failure, NaN and exact-zero rules", "[compare]") {
  const uint64_t rl = 16;
  V ref = testing::normal(64 * rl, 0.0, 1.0, 3);
  for (uint64_t i = 5 * rl; i < 6 * rl; ++i) ref[i] *= 1e-7;  // a near-zero row
  V out = ref;
  for (uint64_t i = 5 * rl; i < 6 * rl; ++i) out[i] += 1e-9;   // absolute noise below tol·floor (≈2e-6)
  CHECK(testing::compare(out, ref, FERRUM_DTYPE_F16, rl, 'F').ok);

  V bad = ref;
  for (double& x : bad) x *= 1.01;
  auto g = testing::compare(bad, ref, FERRUM_DTYPE_F16, rl, 'F');
  CHECK_FALSE(g.ok);
  CHECK(g.rel_err == Approx(0.01).epsilon(1e-6));
  for (double& x : bad) x *= 0.995;  // ≈ 0.5% everywhere: fine for BF16 (1e-2), not for F16 (2e-3)
  CHECK(testing::compare(bad, ref, FERRUM_DTYPE_BF16, rl, 'F').ok);
  CHECK_FALSE(testing::compare(bad, ref, FERRUM_DTYPE_F16, rl, 'F').ok);

  V nan = ref;
  nan[77] = kNaN;
  auto n = testing::compare(nan, ref, FERRUM_DTYPE_F32, rl, 'F');
  CHECK_FALSE(n.ok);
  CHECK(n.first_bad_index == 77);
  CHECK(n.message.find("non-finite") != std::string::npos);
  V inf_ref = ref, inf_out = ref;
  inf_ref[3] = inf_out[3] = -kInf;
  inf_ref[4] = inf_out[4] = kNaN;
  CHECK(testing::compare(inf_out, inf_ref, FERRUM_DTYPE_F32, rl, 'F').ok);
  inf_out[3] = kInf;
  CHECK_FALSE(testing::compare(inf_out, inf_ref, FERRUM_DTYPE_F32, rl, 'F').ok);

  // zero reference: exact, with the sign of zero unless the caller relaxes it
  const V z(32, 0.0);
  CHECK(testing::compare(z, z, FERRUM_DTYPE_F16, 8, 'F').ok);
  V mz = z;
  mz[9] = -0.0;
  CHECK_FALSE(testing::compare(mz, z, FERRUM_DTYPE_F16, 8, 'F').ok);
  CHECK(testing::compare(mz, z, FERRUM_DTYPE_F16, 8, 'F', true).ok);
  V tiny = z;
  tiny[9] = 1e-30;
  CHECK_FALSE(testing::compare(tiny, z, FERRUM_DTYPE_F16, 8, 'F').ok);
  // an exactly-zero row inside a non-zero tensor must be exact
  V zr = ref, zo = ref;
  for (uint64_t i = 7 * rl; i < 8 * rl; ++i) zr[i] = zo[i] = 0.0;
  CHECK(testing::compare(zo, zr, FERRUM_DTYPE_F16, rl, 'F').ok);
  zo[7 * rl + 2] = 1e-12;
  auto e = testing::compare(zo, zr, FERRUM_DTYPE_F16, rl, 'F');
  CHECK_FALSE(e.ok);
  CHECK(e.worst_row == 7);
  CHECK(e.first_bad_index == 7 * rl + 2);
  CHECK_FALSE(testing::compare(V(3, 1.0), V(4, 1.0), FERRUM_DTYPE_F32, 0, 'F').ok);
}

TEST_CASE("compare E and compare_bytes", "[compare]") {
  V ref = {1.0, 2.0, -0.0, 4.0, kNaN, 6.0};
  V out = ref;
  CHECK(testing::compare(out, ref, FERRUM_DTYPE_F16, 3, 'E').ok);
  out[2] = 0.0;
  CHECK_FALSE(testing::compare(out, ref, FERRUM_DTYPE_F16, 3, 'E').ok);
  CHECK(testing::compare(out, ref, FERRUM_DTYPE_F16, 3, 'E', true).ok);
  out = ref;
  out[5] = 6.0000001;
  auto r = testing::compare(out, ref, FERRUM_DTYPE_F32, 3, 'E');
  CHECK_FALSE(r.ok);
  CHECK(r.first_bad_index == 5);
  CHECK(r.worst_row == 1);
  const auto a = testing::encode(FERRUM_DTYPE_F16, {1.0, 2.0, 3.0});
  auto b = a;
  CHECK(testing::compare_bytes(a, b, FERRUM_DTYPE_F16, 0).ok);
  b[3] ^= 1;
  auto rb = testing::compare_bytes(b, a, FERRUM_DTYPE_F16, 0);
  CHECK_FALSE(rb.ok);
  CHECK(rb.first_bad_index == 1);
}

TEST_CASE("poison helpers", "[compare]") {
  for (int32_t dt : {FERRUM_DTYPE_F32, FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16}) {
    auto p = testing::poison_bytes(dt, 10);
    REQUIRE(p.size() == 10 * testing::dtype_size(dt));
    for (double v : testing::decode(dt, p)) CHECK(std::isnan(v));
    CHECK_FALSE(testing::all_written(dt, p));
    CHECK(testing::all_poison(dt, p));
    const auto w = testing::encode(dt, {1.0, 2.0, 3.0});
    std::copy(w.begin(), w.end(), p.begin() + static_cast<std::ptrdiff_t>(2 * testing::dtype_size(dt)));
    CHECK(testing::all_written(dt, p, 2, 3));
    uint64_t first = 0;
    CHECK_FALSE(testing::all_written(dt, p, 2, 4, &first));
    CHECK(first == 5);
    CHECK(testing::all_poison(dt, p, 5));
    CHECK_FALSE(testing::all_poison(dt, p, 0, 3, &first));
    CHECK(first == 2);
  }
  CHECK(testing::poison_bytes(FERRUM_DTYPE_U32, 1) == std::vector<uint8_t>{0xA5, 0xA5, 0xA5, 0xA5});
  CHECK(testing::poison_bytes(FERRUM_DTYPE_I8, 2) == std::vector<uint8_t>{0xA5, 0xA5});
  CHECK(std::isnan(testing::decode(FERRUM_DTYPE_F8_E4M3, testing::poison_bytes(FERRUM_DTYPE_F8_E4M3, 1))[0]));
}

// ============================================================ dense references
TEST_CASE("dense references on hand examples", "[reference]") {
  V out;
  ref::gemm({1, 2, 3, 4, 5, 6}, {1, 0, 1, 0, 1, 1}, out, 2, 2, 3);  // a [2,3], b [2,3]
  CHECK(out == V{4, 5, 10, 11});
  ref::gemm({}, {}, out, 2, 2, 0);
  CHECK(out == V{0, 0, 0, 0});

  ref::rms_norm({3, 4}, {1, 2}, 0.0f, out, 1, 2);
  CHECK(out[0] == Approx(3 / std::sqrt(12.5)));
  CHECK(out[1] == Approx(8 / std::sqrt(12.5)));
  CHECK_THROWS_AS(ref::rms_norm({1}, {1}, 0.0f, out, 1, 0), std::invalid_argument);

  ref::layer_norm({1, 2, 3, 4}, {1, 1, 1, 1}, {0, 0, 0, 1}, 0.0f, out, 1, 4);
  CHECK(out[0] == Approx(-1.5 / std::sqrt(1.25)));
  CHECK(out[3] == Approx(1.5 / std::sqrt(1.25) + 1));
  // two-pass: a large common offset does not destroy the variance
  ref::layer_norm({1e8 + 1, 1e8 + 2, 1e8 + 3, 1e8 + 4}, {1, 1, 1, 1}, {0, 0, 0, 0}, 0.0f, out, 1, 4);
  CHECK(out[0] == Approx(-1.5 / std::sqrt(1.25)));

  ref::gelu({0.0, 1.0, -1.0}, out, 3);
  CHECK(out[0] == 0.0);
  CHECK(out[1] == Approx(0.8413447460685429));
  CHECK(out[2] == Approx(-0.15865525393145707));

  V res = {1.0, 2.0};
  ref::fused_add_rms_norm(res, {std::ldexp(1.0, -12), 0.0}, {1, 1}, 0.0f, out, 1, 2, FERRUM_DTYPE_F16);
  CHECK(res == V{1.0, 2.0});  // 1 + 2^-12 is stored as 1.0 in F16
  CHECK(out[0] == Approx(1.0 / std::sqrt(2.5)));
  res = {1.0, 2.0};
  ref::fused_add_rms_norm(res, {std::ldexp(1.0, -12), 0.0}, {1, 1}, 0.0f, out, 1, 2, FERRUM_DTYPE_F32);
  CHECK(res[0] == 1.0 + std::ldexp(1.0, -12));

  V r2 = {1.0, 65504.0};
  ref::add_inplace(r2, {1.0, 16.0}, 2, FERRUM_DTYPE_F16);
  CHECK(r2 == V{2.0, kInf});
  V d = {1.0, 1.0};
  ref::scaled_add_inplace(d, {2.0, 4.0}, 0.5f, 2, FERRUM_DTYPE_F32);
  CHECK(d == V{2.0, 3.0});
  V data = {1, 2, 3, 4};
  ref::add_bias(data, {10, 20}, 2, 2, 0);
  CHECK(data == V{11, 22, 13, 24});

  V q, k, v;
  ref::split_qkv({1, 2, 3, 4, 5, 6, 7, 8}, q, k, v, 2, 2, 1);
  CHECK(q == V{1, 2, 5, 6});
  CHECK(k == V{3, 7});
  CHECK(v == V{4, 8});

  V act(4 * 2, -7.0);  // rows 0 and 3 must stay untouched
  ref::fused_silu_mul_split_strided({9, 9, 9, 9, 1, 2, 3, 4, -1, 0, 2, 5}, 1, act, 1, 2, 2);
  CHECK(act[0] == -7.0);
  CHECK(act[2] == Approx(1 / (1 + std::exp(-1.0)) * 3));
  CHECK(act[3] == Approx(2 / (1 + std::exp(-2.0)) * 4));
  CHECK(act[4] == Approx(-1 / (1 + std::exp(1.0)) * 2));
  CHECK(act[5] == 0.0);
  CHECK(act[6] == -7.0);

  ref::embedding_lookup({0, 1, 10, 11, 20, 21}, {2, 0}, 2, out, 2);
  CHECK(out == V{20, 21, 0, 1});
  CHECK_THROWS_AS(ref::embedding_lookup({0, 1}, {1}, 1, out, 2), std::invalid_argument);
  ref::embedding_lookup_dev({0, 1, 10, 11}, {1, -1, 2}, out, 3, 2);
  CHECK(out == V{10, 11, 0, 0, 0, 0});

  const V src = testing::uniform(3 * 5 * 4, -1, 1, 8);
  V t, back;
  ref::transpose_head_to_token(src, t, 5, 3, 4);
  CHECK(t[(2 * 3 + 1) * 4 + 3] == src[(1 * 5 + 2) * 4 + 3]);
  ref::transpose_token_to_head(t, back, 5, 3, 4);
  CHECK(back == src);
}

TEST_CASE("argmax_rows rules of §3", "[reference]") {
  std::vector<uint32_t> o;
  const V l = {kNaN, 1, 3, 3,            // first maximum after a NaN -> 2
               -0.0, 0.0, -1, -2,        // −0 == +0: first -> 0
               0.0, -0.0, kNaN, -1,      // -> 0
               -kInf, -kInf, -kInf, -kInf,  // all −inf -> 0
               kNaN, kNaN, kNaN, kNaN,   // no non-NaN -> 0
               1, kInf, kNaN, kInf,      // +inf wins, first -> 1
               kNaN, -kInf, kNaN, kNaN}; // only non-NaN is −inf -> 1
  ref::argmax_rows(l, 7, 4, o);
  CHECK(o == std::vector<uint32_t>{2, 0, 0, 0, 0, 1, 1});
}

// ============================================================ qk transforms
TEST_CASE("qk transforms of §0.7", "[reference]") {
  const uint64_t D = 4;
  const V x = {1, 2, 3, 4};
  const V c1 = {1, 1}, s0 = {0, 0}, c0 = {0, 0}, s1 = {1, 1};
  CHECK(ref::qk_transform(x, 0, {}, {}, {}, 0.0f, 0) == x);
  CHECK(ref::qk_transform(x, 0, {}, c1, s0, 0.0f, 2) == x);
  CHECK(ref::qk_transform(x, 0, {}, c0, s1, 0.0f, 2) == V{-3, -4, 1, 2});  // neox pairs (i, i+half)
  CHECK(ref::qk_transform(x, 0, {}, c0, s1, 0.0f, 3) == V{-2, 1, -4, 3});  // gptj pairs (2i, 2i+1)
  const V w = {1, 2, 1, 1};
  const V y = ref::qk_transform(x, 0, w, c1, s0, 0.0f, 1);
  const double inv = 1 / std::sqrt(30.0 / 4);
  CHECK(y[0] == Approx(1 * inv));
  CHECK(y[1] == Approx(4 * inv));
  CHECK_THROWS_AS(ref::qk_transform(x, 1, {}, c1, s0, 0.0f, 2), std::invalid_argument);  // p >= rows
  CHECK_THROWS_AS(ref::qk_transform(x, 0, {}, c1, s0, 0.0f, 4), std::invalid_argument);
  CHECK_THROWS_AS(ref::qk_transform(V{1, 2, 3}, 0, {}, c1, s0, 0.0f, 2), std::invalid_argument);
  // real tables: rotation preserves the norm, position 0 is the identity
  V cs, sn;
  ref::rope_tables(8, D, 1e4, cs, sn);
  CHECK(ref::rope_rows(cs, D) == 8);
  CHECK(ref::qk_transform(x, 0, {}, cs, sn, 0.0f, 2) == x);
  const V r5 = ref::qk_transform(x, 5, {}, cs, sn, 0.0f, 2);
  CHECK(r5[0] * r5[0] + r5[1] * r5[1] + r5[2] * r5[2] + r5[3] * r5[3] == Approx(30.0));
}

TEST_CASE("qk family layouts", "[reference]") {
  const uint64_t T = 3, qh = 4, kvh = 2, D = 8, P0 = 2, cap = 9, cl = 4;
  V cs, sn;
  ref::rope_tables(16, D, 1e4, cs, sn);
  const V qw = testing::uniform(D, 0.5, 1.5, 1), kw = testing::uniform(D, 0.5, 1.5, 2);
  const V qkv = testing::normal(T * (qh + 2 * kvh) * D, 0, 1, 3);
  V qo, ko, vo;
  ref::split_qkv_norm_rope(qkv, qw, kw, cs, sn, qo, ko, vo, T, qh, kvh, D, P0, 1e-6f, 1);
  for (uint64_t t = 0; t < T; ++t) {
    const double* row = &qkv[t * (qh + 2 * kvh) * D];
    V e(D);
    ref::qk_transform(row + 3 * D, e.data(), D, P0 + t, qw, cs, sn, 1e-6f, 1);
    for (uint64_t d = 0; d < D; ++d) REQUIRE(qo[(3 * T + t) * D + d] == e[d]);
    ref::qk_transform(row + (qh + 1) * D, e.data(), D, P0 + t, kw, cs, sn, 1e-6f, 1);
    for (uint64_t d = 0; d < D; ++d) REQUIRE(ko[(1 * T + t) * D + d] == e[d]);
    for (uint64_t d = 0; d < D; ++d) REQUIRE(vo[(1 * T + t) * D + d] == row[(qh + kvh + 1) * D + d]);
  }
  // qk_norm_rope: token-major in, head-major out (same as the q part above)
  V qin(T * qh * D), qn;
  for (uint64_t t = 0; t < T; ++t) std::copy_n(&qkv[t * (qh + 2 * kvh) * D], qh * D, &qin[t * qh * D]);
  ref::qk_norm_rope(qin, qw, cs, sn, qn, T, qh, D, P0, 1e-6f, 1);
  CHECK(qn == qo);
  CHECK_THROWS_AS(ref::qk_norm_rope(qin, qw, cs, sn, qn, T, qh, D, 14, 1e-6f, 1), std::invalid_argument);
  // per item with positions P0+t: token-major result = transpose of the head-major one
  V qi, qt;
  ref::qk_norm_rope_batched_per_item(qin, qw, cs, sn, qi, {2, 3, 4}, T, qh, D, 1e-6f, 1);
  ref::transpose_head_to_token(qo, qt, T, qh, D);
  CHECK(qi == qt);
  CHECK_THROWS_AS(ref::qk_norm_rope_batched_per_item(qin, qw, cs, sn, qi, {2, 16, 4}, T, qh, D, 1e-6f, 1),
                  std::out_of_range);
  // into cache == split + append; other rows untouched
  V ck(kvh * cap * D, -5.0), cv(kvh * cap * D, -5.0), ck2 = ck, cv2 = cv, qo2;
  ref::split_qkv_norm_rope_into_cache(qkv, qw, kw, cs, sn, qo2, ck, cv, T, qh, kvh, D, P0, 1e-6f, 1, cl, cap);
  ref::kv_cache_append_head_major(ck2, cv2, cl, cap, ko, vo, T, kvh, D);
  CHECK(qo2 == qo);
  CHECK(ck == ck2);
  CHECK(cv == cv2);
  CHECK(ck[(1 * cap + cl - 1) * D] == -5.0);
  CHECK(ck[(1 * cap + cl + T) * D] == -5.0);
  CHECK(ck[(1 * cap + cl + 1) * D + 2] == ko[(1 * T + 1) * D + 2]);
  CHECK_THROWS_AS(ref::kv_cache_append_head_major(ck2, cv2, 7, cap, ko, vo, T, kvh, D), std::invalid_argument);
}

// ============================================================ attention
static V naive_attention(const V& q, const std::vector<V>& ks, const std::vector<V>& vs, double scale) {
  V s;
  for (const V& k : ks) {
    double d = 0;
    for (size_t i = 0; i < q.size(); ++i) d += q[i] * k[i];
    s.push_back(d * scale);
  }
  V w;
  double z = 0;
  for (double x : s) { w.push_back(std::exp(x)); z += std::exp(x); }
  V o(vs[0].size(), 0.0);
  for (size_t j = 0; j < vs.size(); ++j)
    for (size_t i = 0; i < o.size(); ++i) o[i] += w[j] / z * vs[j][i];
  return o;
}

TEST_CASE("attention reference equals a naive softmax on a tiny hand example", "[attention]") {
  // 1 batch, 1 head, hd 2, kv_len 3, one query at p = 2 (sees all), scale 0 -> 1/sqrt(2)
  const V q = {1, 0};
  const V k = {1, 0, 0, 1, 1, 1}, v = {1, 2, 3, 4, 5, 6};
  V out;
  ref::flash_attention(q, k, v, out, 1, 1, 3, 2, 1, 1, 2, 1, 0.0f, 0, 0);
  const V e = naive_attention(q, {{1, 0}, {0, 1}, {1, 1}}, {{1, 2}, {3, 4}, {5, 6}}, 1 / std::sqrt(2.0));
  CHECK(out[0] == Approx(e[0]).epsilon(1e-14));
  CHECK(out[1] == Approx(e[1]).epsilon(1e-14));
  // causal at p = 0 sees only key 0
  ref::flash_attention(q, k, v, out, 1, 1, 3, 0, 1, 1, 2, 1, 0.0f, 0, 0);
  CHECK(out == V{1, 2});
  // sliding window 2 at p = 2 sees keys 1, 2; explicit scale
  ref::flash_attention(q, k, v, out, 1, 1, 3, 2, 1, 1, 2, 1, 0.25f, 0, 2);
  const V e2 = naive_attention(q, {{0, 1}, {1, 1}}, {{3, 4}, {5, 6}}, 0.25);
  CHECK(out[0] == Approx(e2[0]).epsilon(1e-14));
  CHECK(out[1] == Approx(e2[1]).epsilon(1e-14));
  // non-causal window at p = 10 over L = 3 sees nothing -> +0.0 and LSE −inf
  V lse;
  ref::flash_attention(q, k, v, out, 1, 1, 3, 10, 1, 1, 2, 0, 0.0f, 0, 2, &lse);
  CHECK(out == V{0, 0});
  CHECK_FALSE(std::signbit(out[0]));
  CHECK(lse[0] == -kInf);
  // kv_len = 0: zero rows
  ref::flash_attention(q, {}, {}, out, 1, 1, 0, 0, 1, 1, 2, 1, 0.0f, 0, 0);
  CHECK(out == V{0, 0});
  CHECK_THROWS_AS(ref::flash_attention(q, k, v, out, 1, 1, 3, 2, 3, 2, 2, 1, 0.0f, 0, 0), std::invalid_argument);
  CHECK_THROWS_AS(ref::flash_attention(q, k, v, out, 1, 1, 3, 2, 1, 1, 2, 1, NAN, 0, 0), std::invalid_argument);
  CHECK_THROWS_AS(ref::flash_attention(q, k, v, out, 1, 1, 3, 2, 1, 1, 2, 1, 0.0f, 2, 0), std::invalid_argument);
}

TEST_CASE("attention: GQA, kv_seq_stride, batches, prefill vs decode", "[attention]") {
  const uint64_t B = 2, nh = 4, nkv = 2, D = 8, L = 6, S = 10;
  const V k = testing::normal(B * nkv * S * D, 0, 1, 1), v = testing::normal(B * nkv * S * D, 0, 1, 2);
  V kp = k, vp = v;
  for (uint64_t b = 0; b < B; ++b)  // rows >= kv_len must never be read
    for (uint64_t h = 0; h < nkv; ++h)
      for (uint64_t j = L; j < S; ++j)
        for (uint64_t d = 0; d < D; ++d) kp[((b * nkv + h) * S + j) * D + d] = vp[((b * nkv + h) * S + j) * D + d] = kNaN;
  const V q = testing::normal(B * nh * L * D, 0, 1, 3);
  V prefill;
  ref::flash_attention(q, kp, vp, prefill, B, L, L, 0, nh, nkv, D, 1, 0.0f, S, 0);
  for (double x : prefill) REQUIRE(std::isfinite(x));
  // batch 1, head 3 (kv head 1), query 4 against a naive softmax over keys 0..4
  std::vector<V> ks, vs;
  for (uint64_t j = 0; j <= 4; ++j) {
    ks.emplace_back(&k[((1 * nkv + 1) * S + j) * D], &k[((1 * nkv + 1) * S + j) * D] + D);
    vs.emplace_back(&v[((1 * nkv + 1) * S + j) * D], &v[((1 * nkv + 1) * S + j) * D] + D);
  }
  const V qq(&q[((1 * nh + 3) * L + 4) * D], &q[((1 * nh + 3) * L + 4) * D] + D);
  const V e = naive_attention(qq, ks, vs, 1 / std::sqrt(double(D)));
  for (uint64_t d = 0; d < D; ++d) CHECK(prefill[((1 * nh + 3) * L + 4) * D + d] == Approx(e[d]).epsilon(1e-12));
  // decode of the last query (q_len 1, pos_offset L-1) equals the last prefill row
  V qd(B * nh * D), dec;
  for (uint64_t b = 0; b < B; ++b)
    for (uint64_t h = 0; h < nh; ++h) std::copy_n(&q[((b * nh + h) * L + L - 1) * D], D, &qd[(b * nh + h) * D]);
  ref::flash_attention(qd, kp, vp, dec, B, 1, L, L - 1, nh, nkv, D, 1, 0.0f, S, 0);
  for (uint64_t b = 0; b < B; ++b)
    for (uint64_t h = 0; h < nh; ++h)
      for (uint64_t d = 0; d < D; ++d) REQUIRE(dec[(b * nh + h) * D + d] == prefill[((b * nh + h) * L + L - 1) * D + d]);
  // compare() accepts the reference against itself rounded to BF16
  CHECK(testing::compare(round_to(FERRUM_DTYPE_BF16, prefill), prefill, FERRUM_DTYPE_BF16, D, 'F').ok);
}

// ============================================================ Qwen reference
TEST_CASE("qwen weight generator is pinned", "[qwen]") {
  CHECK(ref::splitmix64(0) == 0xE220A8397B1DCDAFull);  // SplitMix64's first output for state 0
  const double a = ref::weight_value(42, 7, 3, 0.5);
  CHECK(a == ref::weight_value(42, 7, 3, 0.5));
  CHECK(a != ref::weight_value(42, 7, 4, 0.5));
  CHECK(a != ref::weight_value(43, 7, 3, 0.5));
  CHECK(std::fabs(a) < 0.5);
  const uint64_t h = ref::splitmix64(ref::splitmix64(ref::splitmix64(42) ^ 7) ^ 3);
  CHECK(a == 0.5 * (2.0 * (static_cast<double>(h >> 11) * 0x1.0p-53) - 1.0));
  const ref::QwenConfig c;
  const auto w = ref::make_weights(c, 1, FERRUM_DTYPE_F16);
  CHECK(w.layers.size() == c.layers);
  CHECK(w.layers[1].w_qkv.size() == (c.q_heads + 2 * c.kv_heads) * c.head_dim * c.hidden);
  CHECK(w.layers[0].w_gate_up.size() == 2 * c.ffn * c.hidden);
  CHECK(w.lm_head[5] == round_to(FERRUM_DTYPE_F16, ref::weight_value(1, 3, 5, 1.0 / 8.0)));
  CHECK(w.layers[1].q_norm[2] == round_to(FERRUM_DTYPE_F16, 1.0 + ref::weight_value(1, 202, 2, 0.1)));
  CHECK(w.layers[0].w_down[9] == round_to(FERRUM_DTYPE_F16, ref::weight_value(1, 107, 9, 1.0 / std::sqrt(128.0))));
}

TEST_CASE("qwen forward: prefill equals chunked decode", "[qwen]") {
  ref::QwenConfig c;
  c.layers = 2;
  const auto w = ref::make_weights(c, 5);
  const std::vector<uint32_t> toks = {3, 17, 255, 0, 42, 9};
  ref::KvCache full;
  const V lf = ref::forward(c, w, toks, full);
  REQUIRE(lf.size() == toks.size() * c.vocab);
  CHECK(full.len == toks.size());
  for (double x : lf) REQUIRE(std::isfinite(x));
  ref::KvCache inc;
  V li = ref::forward(c, w, {3, 17}, inc);
  for (size_t t = 2; t < toks.size(); ++t) {
    const V s = ref::forward(c, w, {toks[t]}, inc);
    li.insert(li.end(), s.begin(), s.end());
  }
  CHECK(inc.len == toks.size());
  auto r = testing::compare(li, lf, FERRUM_DTYPE_F32, c.vocab, 'F');
  INFO(r.message);
  CHECK(r.rel_err < 1e-12);
  // logits are not degenerate
  double mx = 0;
  for (double x : lf) mx = std::max(mx, std::fabs(x));
  CHECK(mx > 0.1);
  // low-precision simulation stays close to float64
  ref::KvCache h;
  const V lh = ref::forward(c, w, toks, h, {FERRUM_DTYPE_F16, FERRUM_DTYPE_F32});
  auto rh = testing::compare(lh, lf, FERRUM_DTYPE_BF16, c.vocab, 'F');
  INFO(rh.message);
  CHECK(rh.ok);
  const auto g1 = ref::greedy_generate(c, w, {1, 2, 3}, 5), g2 = ref::greedy_generate(c, w, {1, 2, 3}, 5);
  CHECK(g1 == g2);
  CHECK(g1.size() == 5);
  for (auto t : g1) CHECK(t < c.vocab);
}
