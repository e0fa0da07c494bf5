// A plugin misusing ferrum_host_info.report_error (hostile_reporter.c) cannot make the host crash,
// grow without bound, or show a detail that is not the failed call's: a NULL message, a 100 kB
// one, a report with status OK or with another status than the call returned, a report from
// another thread, two reports, and a report of a call that then succeeded.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

#include <ferrum/ferrum.hpp>

using ferrum::Backend, ferrum::Error, ferrum::ErrorCode;
using Catch::Matchers::Contains;

namespace {
// The message of device_props(ordinal), which must fail with INVALID_ARGUMENT.
std::string failure(const Backend& be, uint64_t ordinal) {
  try {
    (void)be.device_props(ordinal);
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    return e.what();
  }
  FAIL("device_props(" << ordinal << ") should have thrown");
  return {};
}
}  // namespace

TEST_CASE("a plugin misusing report_error: bounded, never a wrong detail", "[compat][errors][hostile]") {
  Backend be = Backend::load(HOSTILE_REPORTER_PATH);
  CHECK(be.device_props(0).name == "hostile reporter");

  CHECK_THAT(failure(be, 1), Contains("(the plugin reported a NULL message)"));

  const std::string longest = failure(be, 2);
  CHECK_THAT(longest, Contains("device_props: long"));
  CHECK_THAT(longest, !Contains("END"));     // cut at 64 KiB ...
  CHECK(longest.size() < 64 * 1024 + 256);  // ... plus the facade's prefix

  // Not the failed call's report: the plugin's error_detail(NULL) instead.
  const std::string ok_status = failure(be, 3);
  CHECK_THAT(ok_status, Contains("fallback 3") && !Contains("status OK 3"));
  const std::string other_status = failure(be, 4);
  CHECK_THAT(other_status, Contains("fallback 4") && !Contains("UNSUPPORTED 4"));
  const std::string other_thread = failure(be, 5);
  CHECK_THAT(other_thread, Contains("fallback 5") && !Contains("another thread"));

  CHECK_THAT(failure(be, 6), Contains("second 6") && !Contains("first 6"));  // the last one

  // A report of a call that then succeeded is forgotten before the next context-less call.
  CHECK(be.device_props(7).name.empty());  // OK (props left as zeroed by the facade)
  const std::string none = failure(be, 8);
  CHECK_THAT(none, Contains("(the plugin gave no detail)") && !Contains("stale 7"));

  try {
    (void)be.create_context();
    FAIL("new_context should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("this plugin makes no contexts"));
  }
}
