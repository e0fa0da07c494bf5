// Released, foreign and garbage buffer handles given to the CPU plugin (through its raw slots and
// through the facade): every one is INVALID_ARGUMENT naming the argument, and none is
// dereferenced (run under AddressSanitizer by the FERRUM_SANITIZE build: a read of freed memory
// fails the run there; a garbage address such as 0x10 would crash any build).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <ferrum/ferrum.hpp>

#include "seeded.hpp"

using ferrum::Backend, ferrum::Buffer, ferrum::Context, ferrum::Dtype;
using ferrum::Error, ferrum::ErrorCode;
using Catch::Matchers::Contains;

namespace {

// The plugin's detail message of the last failed [no ctx] call on this thread.
std::string detail(const ferrum_plugin_api* api, ferrum_context* ctx = nullptr) {
  char buf[512] = {0};
  uint64_t needed = 0;
  REQUIRE(api->error_detail(ctx, buf, sizeof buf, &needed) == FERRUM_STATUS_OK);
  return buf;
}

ferrum_status raw_release(const ferrum_plugin_api* api, const ferrum_buffer* h) {
  ferrum_buffer_release_args a{};
  a.struct_size = sizeof a;
  a.buf = const_cast<ferrum_buffer*>(h);
  return api->memory->buffer_release(nullptr, &a);
}

ferrum_status raw_info(const ferrum_plugin_api* api, const ferrum_buffer* h) {
  int32_t dt = 0;
  uint64_t n = 0;
  ferrum_buffer_info_args a{};
  a.struct_size = sizeof a;
  a.buf = h;
  a.dtype = &dt;
  a.count = &n;
  return api->memory->buffer_info(nullptr, &a);
}

ferrum_status raw_add(const ferrum_plugin_api* api, ferrum_context* ctx, ferrum_buffer* residual,
                      const ferrum_buffer* x, uint64_t len) {
  ferrum_add_inplace_args a{};
  a.struct_size = sizeof a;
  a.residual = residual;
  a.x = x;
  a.len = len;
  return api->dense->add_inplace(ctx, &a);
}

// Every way of using `bad` as a buffer is refused with the argument named.
void expect_refused(const ferrum_plugin_api* api, Context& ctx, Buffer& good, const ferrum_buffer* bad) {
  CHECK(raw_info(api, bad) == FERRUM_STATUS_INVALID_ARGUMENT);
  CHECK_THAT(detail(api), Contains("buffer_info: argument 'buf'") &&
                              Contains("released or foreign buffer handle"));
  CHECK(raw_release(api, bad) == FERRUM_STATUS_INVALID_ARGUMENT);
  CHECK_THAT(detail(api), Contains("buffer_release: argument 'buf'") &&
                              Contains("released or foreign buffer handle"));
  CHECK(raw_add(api, ctx.get(), good.get(), bad, 4) == FERRUM_STATUS_INVALID_ARGUMENT);
  CHECK_THAT(detail(api, ctx.get()), Contains("add_inplace: argument 'x'") &&
                                         Contains("released or foreign buffer handle"));
  CHECK(raw_add(api, ctx.get(), const_cast<ferrum_buffer*>(bad), good.get(), 4) ==
        FERRUM_STATUS_INVALID_ARGUMENT);
  CHECK_THAT(detail(api, ctx.get()), Contains("add_inplace: argument 'residual'"));
}

}  // namespace

TEST_CASE("CPU plugin: a released handle is refused, never read", "[facade][handles]") {
  Backend cpu = Backend::load("cpu");
  const ferrum_plugin_api* api = cpu.api();
  Context ctx = cpu.create_context({}, Dtype::f32);
  Buffer good = ctx.from_slice(seeded(4, 1));
  ferrum_buffer* h = ctx.from_slice(seeded(4, 2)).release();
  REQUIRE(raw_info(api, h) == FERRUM_STATUS_OK);
  REQUIRE(raw_release(api, h) == FERRUM_STATUS_OK);
  expect_refused(api, ctx, good, h);  // double release, info and use after release
  CHECK(raw_release(api, nullptr) == FERRUM_STATUS_OK);  // NULL stays a no-op
  // The good buffer was not touched by any of it.
  CHECK(ctx.to_vec(good, 4) == seeded(4, 1));
}

TEST_CASE("CPU plugin: a stale handle stays refused while its slot is reused", "[facade][handles]") {
  Backend cpu = Backend::load("cpu");
  const ferrum_plugin_api* api = cpu.api();
  Context ctx = cpu.create_context({}, Dtype::f32);
  Buffer good = ctx.from_slice(seeded(4, 3));
  // Allocate and release repeatedly, past the quarantine of freed slots (2048) so that slots
  // come back under newer generations: every earlier handle must stay dead while a newer one on
  // its slot is live (checked for the first handles, the ones whose slots are reused first).
  std::vector<ferrum_buffer*> stale;
  for (int i = 0; i < 2600; ++i) {
    ferrum_buffer* live = ctx.from_slice(seeded(4, 100 + i)).release();
    const size_t probe = std::min<size_t>(stale.size(), 16);
    for (size_t j = 0; j < probe; ++j) {
      ferrum_buffer* s = stale[j];
      CHECK(s != live);
      REQUIRE(raw_info(api, s) == FERRUM_STATUS_INVALID_ARGUMENT);
      REQUIRE(raw_release(api, s) == FERRUM_STATUS_INVALID_ARGUMENT);
    }
    if (i < 4 || i % 500 == 0) {  // the live one still holds its own data
      Buffer owner(live, cpu.library());
      CHECK(ctx.to_vec(owner, 4) == seeded(4, 100 + i));
      live = owner.release();
    }
    stale.push_back(live);
    REQUIRE(raw_release(api, live) == FERRUM_STATUS_OK);
  }
  (void)good;
}

TEST_CASE("CPU plugin: handles of another plugin and garbage pointers are refused",
          "[facade][handles]") {
  Backend cpu = Backend::load("cpu");
  Backend other = Backend::load("cexample");
  const ferrum_plugin_api* api = cpu.api();
  Context ctx = cpu.create_context({}, Dtype::f32);
  Context octx = other.create_context();
  Buffer good = ctx.from_slice(seeded(4, 4));
  Buffer foreign = octx.from_slice(seeded(4, 5));
  expect_refused(api, ctx, good, foreign.get());

  // An address nothing is mapped at, and host memory filled with random bytes (which would pass
  // a magic-number check with probability ~0 but is still not ours).
  expect_refused(api, ctx, good, reinterpret_cast<const ferrum_buffer*>(uintptr_t{0x10}));
  std::vector<uint64_t> junk(16);
  std::mt19937_64 rng(7);
  for (auto& w : junk) w = rng();
  expect_refused(api, ctx, good, reinterpret_cast<const ferrum_buffer*>(junk.data()));
  // One byte inside a live handle is not a handle either.
  expect_refused(api, ctx, good,
                 reinterpret_cast<const ferrum_buffer*>(reinterpret_cast<const char*>(good.get()) + 8));
  CHECK(ctx.to_vec(good, 4) == seeded(4, 4));
  CHECK(octx.to_vec(foreign, 4) == seeded(4, 5));
}

TEST_CASE("facade: a buffer of another plugin is refused before the plugin is called",
          "[facade][handles]") {
  Backend cpu = Backend::load("cpu");
  Backend other = Backend::load("cexample");
  Context ctx = cpu.create_context({}, Dtype::f32);
  Context octx = other.create_context();
  Buffer good = ctx.from_slice(seeded(4, 6));
  Buffer foreign = octx.from_slice(seeded(4, 7));
  try {
    ctx.add_inplace(good, foreign, 4);
    FAIL("expected an Error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK_THAT(e.what(), Contains("add_inplace") && Contains("argument 'x'") &&
                             Contains("released or foreign buffer handle"));
  }
  CHECK(ctx.to_vec(good, 4) == seeded(4, 6));
}

TEST_CASE("facade: a Buffer whose handle was released behind its back is refused by the plugin",
          "[facade][handles]") {
  Backend cpu = Backend::load("cpu");
  Context ctx = cpu.create_context({}, Dtype::f32);
  Buffer good = ctx.from_slice(seeded(4, 8));
  Buffer victim = ctx.from_slice(seeded(4, 9));
  REQUIRE(raw_release(cpu.api(), victim.get()) == FERRUM_STATUS_OK);
  try {
    ctx.add_inplace(good, victim, 4);
    FAIL("expected an Error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK_THAT(e.what(), Contains("add_inplace: argument 'x'") &&
                             Contains("released or foreign buffer handle"));
  }
  CHECK(ctx.to_vec(good, 4) == seeded(4, 8));
  // victim's destructor releases the handle once more: refused (logged), nothing freed twice.
}

TEST_CASE("facade: result lengths beyond the buffer are an Error before host memory is sized",
          "[facade][handles][lengths]") {
  Backend cpu = Backend::load("cpu");
  Context ctx = cpu.create_context({}, Dtype::f32);
  Buffer buf = ctx.from_slice(seeded(4, 10));
  // Each of these lengths would make std::vector throw std::length_error or std::bad_alloc if
  // it were allocated before the check.
  for (uint64_t len : {uint64_t{5}, uint64_t{1} << 40, uint64_t{1} << 62, UINT64_MAX}) {
    INFO("len " << len);
    try {
      (void)ctx.to_vec(buf, len);
      FAIL("expected an Error");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      CHECK_THAT(e.what(), Contains("to_vec") && Contains("argument 'len'") &&
                               Contains("expected at most 4 (the buffer's element count)"));
    }
    try {
      (void)ctx.read_typed<float>(buf, len);
      FAIL("expected an Error");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      CHECK_THAT(e.what(), Contains("read_typed") && Contains("argument 'len'"));
    }
  }
  // argmax_rows_f16: m rows of the logits shape are checked before the [m] result exists.
  try {
    (void)ctx.argmax_rows_f16({.logits = buf, .m = uint64_t{1} << 62, .n = 2});
    FAIL("expected an Error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK_THAT(e.what(), Contains("argmax_rows_f16") && Contains("argument 'logits'"));
  }
  CHECK(ctx.to_vec(buf, 4) == seeded(4, 10));
}
