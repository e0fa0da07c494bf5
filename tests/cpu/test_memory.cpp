// tests/cpu — memory and transfer family (OPS.md §1) and context_info / timer (§2, §9).
#include "helpers.hpp"

#include <bit>
#include <limits>

using namespace cputest;

namespace {

const std::vector<Dtype> kAllDtypes = {Dtype::f32, Dtype::f16, Dtype::bf16, Dtype::i32,
                                       Dtype::u32, Dtype::i8,  Dtype::u8,   Dtype::f8_e4m3};

// Edge values of the float conversions (OPS.md §1 from_weight_bytes, §0.2 rule 3), as f32 values.
vec edge_values() {
  const double inf = std::numeric_limits<double>::infinity();
  return {0.0,       -0.0,       1.0,        -1.0,        65504.0,    -65504.0,    65519.0,    -65519.0,
          65519.99,  65520.0,    -65520.0,   65536.0,     1e6,        inf,         -inf,
          std::numeric_limits<double>::quiet_NaN(),
          5.960464477539063e-08 /* f16 min subnormal 2^-24 */, 2.98023223876953125e-08 /* 2^-25: tie -> 0 */,
          4.4703483581542969e-08 /* 1.5·2^-25 -> 2^-24 */, 6.097555160522461e-05 /* f16 subnormal */,
          6.103515625e-05 /* f16 min normal */, 1e-40 /* f32 subnormal */, -1e-45, 1.17549435e-38,
          3.4028234663852886e38 /* f32 max -> bf16 inf */, 3.3895313892515355e38 /* bf16 max */,
          1.00390625 /* bf16 tie */, 1.0009765625 /* f16/bf16 ulp probes */, 1.00048828125, 0.1, -2.5e-3,
          123.456, -7777.77};
}

// Reference for a float conversion src -> dst of values already stored in src.
vec convert_ref(Dtype dst, const vec& src_values) { return ft::round_to(dt(dst), src_values); }

}  // namespace

TEST_CASE("alloc_typed: every dtype, every byte zero", "[memory][alloc_typed]") {
  for (Dtype d : kAllDtypes) {
    for (uint64_t n : {0ull, 1ull, 7ull, 129ull}) {
      INFO("dtype " << name(d) << " n " << n);
      Buffer b = ctx().alloc_typed(d, n);
      CHECK(b.dtype() == d);
      CHECK(b.count() == n);
      const auto bytes = read_bytes(b);
      CHECK(bytes == std::vector<uint8_t>(n * ft::dtype_size(dt(d)), 0));
    }
  }
}

TEST_CASE("alloc / from_slice use the context's default dtype", "[memory][alloc][from_slice]") {
  const Dtype d = ACT_DTYPE();
  INFO("default dtype " << name(d));
  Context c = backend().create_context({}, d);
  CHECK(c.activation_dtype() == d);
  CHECK(c.info().activation_dtype == d);
  CHECK(c.activation_elem_size_bytes() == ft::dtype_size(dt(d)));
  Buffer a = c.alloc(33);
  CHECK(a.dtype() == d);
  CHECK(a.count() == 33);
  Buffer e = c.alloc(0);
  CHECK(e.count() == 0);

  // from_slice: element i = round(data[i]), edge values included.
  vec v = edge_values();
  const vec r = rnd(Dtype::f32, 45, 11, -3.0, 3.0);
  v.insert(v.end(), r.begin(), r.end());
  std::vector<float> host(v.begin(), v.end());
  const vec as_f32(host.begin(), host.end());
  Buffer b = c.from_slice(host);
  CHECK(b.dtype() == d);
  REQUIRE(b.count() == host.size());
  std::vector<uint8_t> bytes(host.size() * ft::dtype_size(dt(d)));
  c.read_typed(b, d, host.size(), bytes.data());
  expect_exact_nan_agnostic(ft::decode(dt(d), bytes), convert_ref(d, as_f32), d, 0, "from_slice");
}

TEST_CASE("from_slice_typed / read_typed: bit copy for every dtype", "[memory][from_slice_typed][read_typed]") {
  for (Dtype d : kAllDtypes) {
    INFO("dtype " << name(d));
    const uint64_t n = 37;
    std::vector<uint8_t> bytes(n * ft::dtype_size(dt(d)));
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>((i * 131 + 7) & 0xFF);  // NaNs too
    Buffer b = upload_bytes(d, bytes);
    CHECK(b.dtype() == d);
    CHECK(b.count() == n);
    CHECK(read_bytes(b) == bytes);
    // a prefix read
    const auto pre = read_bytes(b, 5);
    CHECK(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(pre.size())) == pre);
  }
}

TEST_CASE("zero-length host transfers accept a NULL host pointer", "[memory][from_slice_typed][write_typed][read_typed]") {
  // OPS.md §0.3: a buffer of 0 elements is valid; §0.12: zero work validates and returns OK. A
  // host pointer that is read for 0 elements is never dereferenced, and std::vector / std::span of
  // size 0 hand out NULL (from_slice and from_weight_bytes already accept it).
  for (Dtype d : kAllDtypes) {
    INFO("dtype " << name(d));
    Buffer b;
    CHECK_NOTHROW(b = ctx().from_slice_typed(d, nullptr, 0));
    CHECK(b.count() == 0);
    Buffer c = poisoned(d, 3);
    CHECK_NOTHROW(ctx().write_typed(c, d, nullptr, 0));
    CHECK_NOTHROW(ctx().read_typed(c, d, 0, nullptr));
    expect_all_poison(c);
  }
  CHECK_NOTHROW(ctx().from_slice(std::span<const float>()));
  CHECK_NOTHROW(ctx().from_weight_bytes(std::span<const uint8_t>(), Dtype::f32, Dtype::f16));
}

TEST_CASE("from_weight_bytes: every src -> dst pair, exact, unaligned", "[memory][from_weight_bytes]") {
  const Dtype src = ACT_DTYPE();
  const Dtype dst = GENERATE(Dtype::invalid, Dtype::f32, Dtype::f16, Dtype::bf16);
  const uint64_t misalign = GENERATE(0ull, 1ull, 3ull);
  const Dtype eff = dst == Dtype::invalid ? ctx().activation_dtype() : dst;
  INFO("src " << name(src) << " dst " << name(dst) << " (effective " << name(eff) << ") misalign " << misalign);

  vec v = edge_values();
  const vec r = rnd(Dtype::f32, 77, 21, -100.0, 100.0);
  v.insert(v.end(), r.begin(), r.end());
  const vec stored = ft::round_to(dt(src), v);  // what the raw source bytes hold
  const auto raw = ft::encode(dt(src), stored);
  std::vector<uint8_t> storage(raw.size() + 8);
  std::memcpy(storage.data() + misalign, raw.data(), raw.size());

  Buffer b = ctx().from_weight_bytes(std::span<const uint8_t>(storage.data() + misalign, raw.size()), src, dst);
  CHECK(b.dtype() == eff);
  REQUIRE(b.count() == stored.size());
  expect_exact_nan_agnostic(download(b), convert_ref(eff, stored), eff, 0, "from_weight_bytes");

  // raw_len 0 gives an empty buffer
  Buffer e = ctx().from_weight_bytes(std::span<const uint8_t>(), src, dst);
  CHECK(e.count() == 0);
}

TEST_CASE("write_typed: prefix written, the rest untouched", "[memory][write_typed]") {
  for (Dtype d : kAllDtypes) {
    INFO("dtype " << name(d));
    const uint64_t n = 29, k = 13;
    Buffer b = poisoned(d, n);
    std::vector<uint8_t> data(k * ft::dtype_size(dt(d)));
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i + 1);
    ctx().write_typed(b, d, data.data(), k);
    const auto got = read_bytes(b);
    CHECK(std::vector<uint8_t>(got.begin(), got.begin() + static_cast<long>(data.size())) == data);
    expect_poison(b, k, n - k, "write_typed tail");
    ctx().write_typed(b, d, data.data(), 0);  // no-op
    CHECK(read_bytes(b) == got);
  }
}

TEST_CASE("to_vec: every dtype converted by value", "[memory][to_vec]") {
  SECTION("float dtypes, edge values") {
    const Dtype d = ACT_DTYPE();
    INFO("dtype " << name(d));
    const vec v = ft::round_to(dt(d), edge_values());
    Buffer b = upload(d, v);
    const auto got = ctx().to_vec(b, v.size());
    expect_exact_nan_agnostic(vec(got.begin(), got.end()), v, Dtype::f32, 0, "to_vec");
    const auto pre = ctx().to_vec(b, 3);
    REQUIRE(pre.size() == 3);
    CHECK(std::bit_cast<uint32_t>(pre[1]) == std::bit_cast<uint32_t>(static_cast<float>(v[1])));  // -0.0 kept
  }
  SECTION("F8_E4M3, every code") {
    std::vector<uint8_t> codes(256);
    vec ref(256);
    for (int i = 0; i < 256; ++i) {
      codes[i] = static_cast<uint8_t>(i);
      ref[i] = ft::f8e4m3_bits_to_double(static_cast<uint8_t>(i));
    }
    Buffer b = upload_bytes(Dtype::f8_e4m3, codes);
    const auto got = ctx().to_vec(b, 256);
    expect_exact_nan_agnostic(vec(got.begin(), got.end()), ref, Dtype::f32, 0, "to_vec f8");
  }
  SECTION("I8 / U8") {
    std::vector<uint8_t> codes(256);
    vec ri(256), ru(256);
    for (int i = 0; i < 256; ++i) {
      codes[i] = static_cast<uint8_t>(i);
      ri[i] = static_cast<int8_t>(i);
      ru[i] = i;
    }
    Buffer bi = upload_bytes(Dtype::i8, codes), bu = upload_bytes(Dtype::u8, codes);
    auto gi = ctx().to_vec(bi, 256), gu = ctx().to_vec(bu, 256);
    expect_match(vec(gi.begin(), gi.end()), ri, Dtype::f32, 0, 'E', "to_vec i8");
    expect_match(vec(gu.begin(), gu.end()), ru, Dtype::f32, 0, 'E', "to_vec u8");
  }
  SECTION("I32 / U32, rounding above 2^24") {
    const std::vector<int64_t> iv = {0, 1, -1, 16777215, 16777216, 16777217, 16777218, 16777219, -16777217,
                                     -16777219, 33554435, 2147483647, -2147483647 - 1, 123456789, -987654321};
    const std::vector<int64_t> uv = {0, 1, 16777217, 16777219, 33554433, 33554434, 33554435, 2147483647,
                                     2147483648ll, 4294967295ll, 4294967168ll, 4294967167ll, 3000000001ll};
    vec ri, ru;
    for (int64_t x : iv) ri.push_back(static_cast<double>(static_cast<float>(static_cast<int32_t>(x))));
    for (int64_t x : uv) ru.push_back(static_cast<double>(static_cast<float>(static_cast<uint32_t>(x))));
    Buffer bi = upload_idx(Dtype::i32, iv), bu = upload_idx(Dtype::u32, uv);
    auto gi = ctx().to_vec(bi, iv.size()), gu = ctx().to_vec(bu, uv.size());
    expect_match(vec(gi.begin(), gi.end()), ri, Dtype::f32, 0, 'E', "to_vec i32");
    expect_match(vec(gu.begin(), gu.end()), ru, Dtype::f32, 0, 'E', "to_vec u32");
    // spot checks of the round-to-nearest-even rule
    CHECK(gi[5] == 16777216.0f);  // 2^24 + 1 -> 2^24 (tie to even)
    CHECK(gi[7] == 16777220.0f);  // 2^24 + 3 -> 2^24 + 4 (tie to even)
    CHECK(gu[9] == 4294967296.0f);
  }
  SECTION("len 0") {
    Buffer b = upload(Dtype::f32, {1.0, 2.0});
    CHECK(ctx().to_vec(b, 0).empty());
  }
}

TEST_CASE("write_f32_to_activation: prefix rounded, the rest untouched", "[memory][write_f32_to_activation]") {
  const Dtype d = ACT_DTYPE();
  INFO("dtype " << name(d));
  const uint64_t n = 41, k = 23;
  vec v = edge_values();
  v.resize(k, 0.75);
  const std::vector<float> data(v.begin(), v.end());
  Buffer b = poisoned(d, n);
  ctx().write_f32_to_activation(b, data);
  const vec got = download(b);
  expect_exact_nan_agnostic(slice(got, 0, k), convert_ref(d, vec(data.begin(), data.end())), d, 0,
                            "write_f32_to_activation");
  expect_poison(b, k, n - k, "write_f32_to_activation tail");
  const auto before = read_bytes(b);
  ctx().write_f32_to_activation(b, std::span<const float>());
  CHECK(read_bytes(b) == before);
}

TEST_CASE("zero_buffer: partial length, every dtype", "[memory][zero_buffer]") {
  for (Dtype d : kAllDtypes) {
    INFO("dtype " << name(d));
    const uint64_t n = 29, k = 13;
    Buffer b = poisoned(d, n);
    ctx().zero_buffer(b, k);
    const auto got = read_bytes(b);
    const uint64_t es = ft::dtype_size(dt(d));
    CHECK(std::vector<uint8_t>(got.begin(), got.begin() + static_cast<long>(k * es)) == std::vector<uint8_t>(k * es, 0));
    expect_poison(b, k, n - k, "zero_buffer tail");
    ctx().zero_buffer(b, 0);
    CHECK(read_bytes(b) == got);
    ctx().zero_buffer(b, n);
    CHECK(read_bytes(b) == std::vector<uint8_t>(n * es, 0));
  }
}

TEST_CASE("copy_slice: offsets and float conversions", "[memory][copy_slice]") {
  const Dtype sd = ACT_DTYPE();
  const Dtype dd = GENERATE(Dtype::f32, Dtype::f16, Dtype::bf16);
  INFO("src " << name(sd) << " dst " << name(dd));
  vec v = edge_values();
  const vec r = rnd(Dtype::f32, 40, 31, -70000.0, 70000.0);
  v.insert(v.end(), r.begin(), r.end());
  const vec stored = ft::round_to(dt(sd), v);
  Buffer src = upload(sd, stored);
  const uint64_t n = stored.size(), src_off = 3, len = n - 7, dst_off = 5, dst_n = len + 11;
  Buffer dst = poisoned(dd, dst_n);
  ctx().copy_slice(src, src_off, dst, dst_off, len);
  const vec got = download(dst);
  expect_exact_nan_agnostic(slice(got, dst_off, len), convert_ref(dd, slice(stored, src_off, len)), dd, 0,
                            "copy_slice");
  expect_poison(dst, 0, dst_off, "copy_slice head");
  expect_poison(dst, dst_off + len, dst_n - dst_off - len, "copy_slice tail");

  // len 0: no-op
  const auto before = read_bytes(dst);
  ctx().copy_slice(src, 0, dst, 0, 0);
  CHECK(read_bytes(dst) == before);
}

TEST_CASE("copy_slice: bit copy of equal dtypes, same-handle disjoint ranges", "[memory][copy_slice]") {
  for (Dtype d : kAllDtypes) {
    INFO("dtype " << name(d));
    const uint64_t es = ft::dtype_size(dt(d)), n = 40;
    std::vector<uint8_t> bytes(n * es);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>((i * 37 + 11) & 0xFF);
    Buffer src = upload_bytes(d, bytes);
    Buffer dst = poisoned(d, n + 4);
    ctx().copy_slice(src, 2, dst, 1, n - 2);
    const auto got = read_bytes(dst);
    CHECK(std::vector<uint8_t>(got.begin() + static_cast<long>(es), got.begin() + static_cast<long>((n - 1) * es)) ==
          std::vector<uint8_t>(bytes.begin() + static_cast<long>(2 * es), bytes.end()));
    expect_poison(dst, 0, 1);
    expect_poison(dst, n - 1, 5);

    // same handle, disjoint ranges: [0, 10) -> [20, 30)
    ctx().copy_slice(src, 0, src, 20, 10);
    auto expect = bytes;
    std::memcpy(expect.data() + 20 * es, bytes.data(), 10 * es);
    CHECK(read_bytes(src) == expect);
  }
}

TEST_CASE("context_info and timer", "[context][timer]") {
  const auto info = ctx().info();
  CHECK(info.device_ordinal == 0);
  CHECK(info.activation_dtype == Dtype::f16);
  CHECK(info.batched_slots >= 128);
  CHECK(info.batched_items >= 64);

  ferrum::Timer t = ctx().make_timer();
  REQUIRE(t);
  ctx().record_start(t);
  Buffer b = upload(Dtype::f32, rnd(Dtype::f32, 64, 1));
  Buffer o = poisoned(Dtype::f32, 64);
  ctx().gemm(b, b, o, 8, 8, 8);
  ctx().record_end(t);
  const double ms = ctx().elapsed_ms(t);
  CHECK(std::isfinite(ms));
  CHECK(ms >= 0.0);
  ctx().sync();
}
