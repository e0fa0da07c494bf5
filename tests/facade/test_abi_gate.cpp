// The forward-compatibility gate of the 1.1 facade (core/src/invoke.hpp) against a plugin that
// declares ABI 1.0 (facade_mock_v1_0: mock_plugin.cpp built with FACADE_MOCK_V1_0): a 1.1 op
// and a 1.1 field set to a non-default value are ferrum::Error unsupported naming the op or field
// and both versions, the plugin is never called for them, and a call whose 1.1 fields are at
// their defaults runs with the 1.0 struct_size. The same calls on the 1.1 mock run.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

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

namespace {

using mock_counters::calls;
using mock_counters::last_read_typed_size;

Backend load(const char* path) {
  REQUIRE(mock_counters::g_counters_set);
  return Backend::load(path);
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-4.0f, 4.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace

TEST_CASE("gate: the 1.0 mock declares ABI 1.0 and a 1.0 context table", "[facade][abi_gate]") {
  Backend be = load(FACADE_MOCK_V1_0_PATH);
  CHECK(be.abi_version() == "1.0");
  CHECK_FALSE(be.supports(Op::query_attribute));  // a slot of a later minor: absent
  CHECK(be.supports(Op::read_typed));
  Context ctx = be.create_context();
  const ferrum::SupportAnswer ans = ctx.query_support(Op::query_attribute, nullptr);
  CHECK_FALSE(ans.supported);
  CHECK_THAT(ans.reason, Contains("query_attribute: the op needs ABI 1.1, plugin 'facade_mock_v1_0' implements 1.0"));
}

TEST_CASE("gate: a 1.1 op on a 1.0 plugin is unsupported, naming the op and both versions",
          "[facade][abi_gate]") {
  Backend be = load(FACADE_MOCK_V1_0_PATH);
  Context ctx = be.create_context();
  try {
    (void)ctx.query_attribute(FERRUM_ATTRIBUTE_PAGED_KV);
    FAIL("query_attribute should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("query_attribute on plugin facade_mock_v1_0"));
    CHECK_THAT(e.what(), Contains("needs ABI 1.1, plugin 'facade_mock_v1_0' implements 1.0"));
  }
  CHECK(calls(Op::query_attribute) == 0);
}

TEST_CASE("gate: a non-default 1.1 field on a 1.0 plugin is unsupported, never ignored",
          "[facade][abi_gate]") {
  Backend be = load(FACADE_MOCK_V1_0_PATH);
  Context ctx = be.create_context();
  const std::vector<float> v = random_floats(16, 1101);
  Buffer b = ctx.from_slice_typed<float>(v);
  std::vector<float> out(4, -7.0f);  // poisoned: must stay untouched
  const uint64_t before = calls(Op::read_typed);
  try {
    ctx.read_typed({.src = b, .dtype = Dtype::f32, .len = 4, .data = out.data(), .src_offset = 8});
    FAIL("read_typed with src_offset 8 should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("read_typed on plugin facade_mock_v1_0"));
    CHECK_THAT(e.what(), Contains("argument 'src_offset' set to a non-default value needs ABI 1.1, "
                                  "plugin 'facade_mock_v1_0' implements 1.0"));
  }
  CHECK(calls(Op::read_typed) == before);  // refused before the plugin saw it
  for (float x : out) CHECK(x == -7.0f);

  // query_support gives the same answer without calling anything; at the default it asks the plugin.
  ferrum_read_typed_args a{};
  a.struct_size = sizeof a;
  a.src = b.get();
  a.dtype = FERRUM_DTYPE_F32;
  a.len = 4;
  a.data = out.data();
  a.src_offset = 8;
  const ferrum::SupportAnswer no = ctx.query_support(Op::read_typed, &a);
  CHECK_FALSE(no.supported);
  CHECK(no.code == ErrorCode::unsupported);
  CHECK_THAT(no.reason, Contains("read_typed: argument 'src_offset' set to a non-default value needs "
                                 "ABI 1.1, plugin 'facade_mock_v1_0' implements 1.0"));
  a.src_offset = 0;
  CHECK_FALSE(ctx.query_support(Op::read_typed, &a).reason.find("src_offset") != std::string::npos);
}

TEST_CASE("gate: 1.1 fields at their defaults run on a 1.0 plugin with the 1.0 struct_size",
          "[facade][abi_gate]") {
  Backend be = load(FACADE_MOCK_V1_0_PATH);
  Context ctx = be.create_context();
  const std::vector<float> v = random_floats(16, 1102);
  Buffer b = ctx.from_slice_typed<float>(v);
  std::vector<float> out(16, -7.0f);
  ctx.read_typed({.src = b, .dtype = Dtype::f32, .len = 16, .data = out.data()});  // src_offset 0
  CHECK(last_read_typed_size() == FERRUM_READ_TYPED_ARGS_SIZE_V1_0);
  CHECK(out == v);
  // The typed helper (context.hpp) takes the same path.
  CHECK(ctx.read_typed<float>(b, 16) == v);
  CHECK(last_read_typed_size() == FERRUM_READ_TYPED_ARGS_SIZE_V1_0);
}

TEST_CASE("gate: the same calls on a 1.1 plugin pass the 1.1 struct and read the slice",
          "[facade][abi_gate]") {
  Backend be = load(FACADE_MOCK_PATH);
  REQUIRE(be.abi_version() == "1." + std::to_string(FERRUM_ABI_VERSION_MINOR));
  Context ctx = be.create_context();
  const std::vector<float> v = random_floats(16, 1103);
  Buffer b = ctx.from_slice_typed<float>(v);
  std::vector<float> out(4, -7.0f);
  ctx.read_typed({.src = b, .dtype = Dtype::f32, .len = 4, .data = out.data(), .src_offset = 8});
  CHECK(last_read_typed_size() == FERRUM_READ_TYPED_ARGS_SIZE_V1_1);
  CHECK(out == std::vector<float>(v.begin() + 8, v.begin() + 12));
  // The generated checks bound src_offset + len by the buffer's count, before the plugin runs.
  const uint64_t before = calls(Op::read_typed);
  try {
    ctx.read_typed({.src = b, .dtype = Dtype::f32, .len = 4, .data = out.data(), .src_offset = 13});
    FAIL("src_offset 13 + len 4 > 16 should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK_THAT(e.what(), Contains("src_offset + len"));
  }
  CHECK(calls(Op::read_typed) == before);
}
