// The compatibility matrix, "1.0 plugin x 1.1 host": the C example plugin built from the frozen
// copy of the released 1.0 headers (tests/abi/v1_0; its API table is 184 bytes and ends before
// every 1.1 field) loaded by the current host through the facade:
//   - it runs (memory and dense ops against a reference on seeded inputs, outputs poisoned);
//   - a 1.1 op is unsupported naming both versions; a 1.1 field set to a non-default value is
//     unsupported naming the field (and nothing is written); at its default the call runs;
//   - its extension chain is never read; Backend::supports answers false for the 1.1 op;
//   - context-less failures carry the plugin's own error_detail(NULL) (it knows no report_error).
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include <ferrum/ferrum.hpp>

#include "../facade/seeded.hpp"

using ferrum::Backend, ferrum::Buffer, ferrum::Context, ferrum::Dtype, ferrum::Error, ferrum::ErrorCode;
using Catch::Matchers::Contains;

namespace {
Backend frozen() { return Backend::load(FROZEN_V1_0_CEXAMPLE_PATH); }
}  // namespace

TEST_CASE("1.0-header plugin in the 1.1 host: loads and declares 1.0", "[compat][v1_0_plugin]") {
  Backend be = frozen();
  REQUIRE(be.name() == "cexample");
  CHECK(be.abi_version() == "1.0");
  CHECK(be.api()->struct_size == FERRUM_PLUGIN_API_SIZE_V1_0);
  CHECK(be.api()->context->struct_size == FERRUM_CONTEXT_TABLE_SIZE_V1_0);
  CHECK(be.device_count() == 1);
  CHECK(!be.supports(ferrum::Op::query_attribute));
  CHECK(be.supports(ferrum::Op::add_inplace));
  CHECK(be.extension("ferrum.cuda.stream") == nullptr);  // the table ends before `extensions`
}

TEST_CASE("1.0-header plugin in the 1.1 host: ops run against a reference", "[compat][v1_0_plugin]") {
  Backend be = frozen();
  Context ctx = be.create_context();
  const std::vector<float> a = seeded(53, 2101), b = seeded(53, 2102);
  Buffer x = ctx.from_slice(a), y = ctx.from_slice(b);
  ctx.add_inplace(x, y, 53);
  ctx.scaled_add_inplace({.dst = y, .src = x, .scale = 0.5f, .len = 53});
  std::vector<float> want_x(53), want_y(53);
  for (size_t i = 0; i < 53; ++i) {
    want_x[i] = a[i] + b[i];
    want_y[i] = b[i] + 0.5f * want_x[i];
  }
  CHECK(ctx.to_vec(x, 53) == want_x);
  CHECK(ctx.to_vec(y, 53) == want_y);
  // read_typed with src_offset at its default: the facade passes the 1.0 struct_size; it runs.
  std::vector<float> out(53, -7.0f);
  ctx.read_typed({.src = x, .dtype = Dtype::f32, .len = 53, .data = out.data()});
  CHECK(out == want_x);
}

TEST_CASE("1.0-header plugin in the 1.1 host: 1.1 op and field refused by name", "[compat][v1_0_plugin]") {
  Backend be = frozen();
  Context ctx = be.create_context();
  try {
    (void)ctx.query_attribute(FERRUM_ATTRIBUTE_PAGED_KV);
    FAIL("query_attribute on a 1.0 plugin should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("query_attribute") && Contains("needs ABI 1.1") &&
                             Contains("plugin 'cexample' implements 1.0"));
  }
  const std::vector<float> v = seeded(9, 2103);
  Buffer b = ctx.from_slice(v);
  std::vector<float> out(3, -7.0f);
  try {
    ctx.read_typed({.src = b, .dtype = Dtype::f32, .len = 3, .data = out.data(), .src_offset = 6});
    FAIL("a non-default src_offset on a 1.0 plugin should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("read_typed") && Contains("argument 'src_offset'") &&
                             Contains("needs ABI 1.1") && Contains("implements 1.0"));
  }
  CHECK(out == std::vector<float>(3, -7.0f));  // nothing written
}

TEST_CASE("1.0-header plugin in the 1.1 host: context-less errors from error_detail(NULL)",
          "[compat][v1_0_plugin][errors]") {
  Backend be = frozen();
  try {
    (void)be.device_props(9);
    FAIL("device_props(9) should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK_THAT(e.what(), Contains("device_props on plugin cexample") && Contains("'ordinal'") &&
                             Contains("given 9"));
  }
  try {
    (void)be.create_context(std::uint64_t{5});
    FAIL("new_context on device 5 should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK_THAT(e.what(), Contains("new_context") && Contains("'device_ordinal'") && Contains("given 5"));
  }
  // The plugin kept it itself (no report_error in its headers): error_detail(NULL) has it.
  char buf[256] = "poison";
  REQUIRE(be.api()->error_detail(nullptr, buf, sizeof buf, nullptr) == FERRUM_STATUS_OK);
  CHECK_THAT(std::string(buf), Contains("given 5"));
}
