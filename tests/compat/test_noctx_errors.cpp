// Errors of calls without a context (ABI 1.1, ferrum_host_info.report_error): the plugin reports
// the detail to the host on the failing thread and the host keeps it per thread, so a plain C99
// plugin (the C example, no thread-local storage) gives every thread its own message.
//   - many threads fail context-less calls through the facade at once, each with an argument of
//     its own, and each ferrum::Error names that thread's argument (run under ThreadSanitizer by
//     scripts/test: a detail kept in one plugin-global buffer is a data race there);
//   - a forced interleaving (thread A fails, thread B fails, A reads) gives A its own detail;
//   - with the host taking reports the C example stores nothing itself (error_detail(NULL) "");
//   - the same on the CPU plugin (C++, which keeps a thread-local copy as well).
#include <catch2/catch.hpp>

#include <atomic>
#include <barrier>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <ferrum/ferrum.hpp>
#include <ferrum/loader.hpp>

using ferrum::Backend, ferrum::Error, ferrum::ErrorCode;
using Catch::Matchers::Contains;

namespace {

// The plugin's own error_detail(NULL): what it stored itself for this thread.
std::string own_noctx_detail(const Backend& be) {
  char buf[512] = "poison";
  uint64_t needed = 0;
  REQUIRE(be.api()->error_detail(nullptr, buf, sizeof buf, &needed) == FERRUM_STATUS_OK);
  return buf;
}

// A distinct, thread-specific ordinal no plugin here has (each has one device).
uint64_t ordinal_for(int thread, int iter) { return 1000u * uint64_t(thread + 1) + uint64_t(iter) + 7; }

// Fails device_props and new_context with thread-specific ordinals from `threads` threads at once;
// returns how many messages did not name the caller's own ordinal.
int concurrent_mismatches(const Backend& be, int threads, int iters, bool new_context) {
  std::atomic<int> wrong{0}, thrown{0};
  std::barrier start(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < iters; ++i) {
        const uint64_t ord = ordinal_for(t, i);
        const std::string want = "given " + std::to_string(ord);
        try {
          (void)be.device_props(ord);
        } catch (const Error& e) {
          ++thrown;
          const std::string what = e.what();
          if (e.code() != ErrorCode::invalid_argument || what.find("device_props") == std::string::npos ||
              what.find(want) == std::string::npos)
            ++wrong;
        }
        if (!new_context) continue;
        try {
          (void)be.create_context(ord);
        } catch (const Error& e) {
          ++thrown;
          const std::string what = e.what();
          if (what.find("new_context") == std::string::npos || what.find(want) == std::string::npos) ++wrong;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(thrown.load() == threads * iters * (new_context ? 2 : 1));
  return wrong.load();
}

}  // namespace

TEST_CASE("C example: concurrent context-less failures each get their own message", "[compat][errors][threads]") {
  Backend be = Backend::load("cexample");
  REQUIRE(be.api()->struct_size >= FERRUM_PLUGIN_API_SIZE_V1_0);
  CHECK(concurrent_mismatches(be, 8, 200, true) == 0);
  // The host took every report: the plugin kept nothing of its own (no shared global written).
  CHECK(own_noctx_detail(be).empty());
}

TEST_CASE("C example: a forced interleaving keeps each thread's detail", "[compat][errors][threads]") {
  Backend be = Backend::load("cexample");
  const ferrum_plugin_api* api = be.api();
  std::barrier step(2);
  std::string seen_a, seen_b;
  ferrum_status st_a = FERRUM_STATUS_OK, st_b = FERRUM_STATUS_OK;
  std::thread a([&] {
    ferrum_device_props p{};
    p.struct_size = sizeof p;
    st_a = api->device_props(111, &p);  // raw call: the plugin reports "... given 111"
    step.arrive_and_wait();              // B fails now
    step.arrive_and_wait();
    seen_a = ferrum::last_plugin_error(*be.library(), nullptr);
  });
  std::thread b([&] {
    step.arrive_and_wait();
    ferrum_device_props p{};
    p.struct_size = sizeof p;
    st_b = api->device_props(222, &p);
    seen_b = ferrum::last_plugin_error(*be.library(), nullptr);
    step.arrive_and_wait();
  });
  a.join();
  b.join();
  CHECK(st_a == FERRUM_STATUS_INVALID_ARGUMENT);
  CHECK(st_b == FERRUM_STATUS_INVALID_ARGUMENT);
  CHECK_THAT(seen_a, Contains("device_props") && Contains("'ordinal'") && Contains("given 111"));
  CHECK_THAT(seen_b, Contains("given 222"));
  // A thread that made no failing call has no report (and the plugin stored none).
  CHECK(ferrum::last_plugin_error(*be.library(), nullptr).empty());
}

TEST_CASE("C example: facade errors of [no ctx] ops carry the reported detail", "[compat][errors]") {
  Backend be = Backend::load("cexample");
  try {
    (void)be.create_context(std::uint64_t{3});
    FAIL("new_context on device 3 should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK_THAT(e.what(), Contains("new_context on plugin cexample") && Contains("'device_ordinal'") &&
                             Contains("given 3") && !Contains("gave no detail"));
  }
  // An unsupported activation dtype: UNSUPPORTED with the plugin's reason.
  try {
    (void)be.create_context(std::uint64_t{0}, ferrum::Dtype::bf16);
    FAIL("a BF16 context should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("activation_dtype BF16 is not supported"));
  }
  // A later successful call leaves no stale detail behind for the next failure to borrow: the
  // host forgets this thread's report before each context-less call.
  (void)be.device_props(0);
  ferrum_device_props p{};
  p.struct_size = 8;  // below the 1.0 size
  CHECK(be.api()->device_props(0, &p) == FERRUM_STATUS_INVALID_ARGUMENT);
  CHECK_THAT(ferrum::last_plugin_error(*be.library(), nullptr), Contains("props->struct_size"));
}

TEST_CASE("CPU plugin: concurrent context-less failures each get their own message", "[compat][errors][threads]") {
  Backend be = Backend::load("cpu");
  CHECK(concurrent_mismatches(be, 8, 200, false) == 0);
}
