// ABI 1.1 events and external memory/streams (docs/spec.md §2.1, §2.2) on the real plugins of the
// build tree. CPU plugin: events validate every handle and are complete once recorded; ordering
// two contexts through an event gives the right result; an event outlives the context that made
// it; wrap_external is zero-copy both ways (checked through the original pointer and through
// ferrum, and through an op writing in place), its release callback runs exactly once, at the
// buffer's release, and never for a failed wrap; every bad argument is INVALID_ARGUMENT naming
// it; buffer_device_address gives the memory ferrum uses; a non-zero external stream is
// UNSUPPORTED naming the argument. The C example plugin declares ABI 1.0: the facade refuses every
// new op and a non-zero external_stream on it, naming both versions.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <ferrum/ferrum.hpp>

#include "seeded.hpp"

using ferrum::Backend, ferrum::Buffer, ferrum::Context, ferrum::Dtype, ferrum::Event;
using ferrum::Error, ferrum::ErrorCode;
using Catch::Matchers::Contains;

namespace {

// Runs f, which must throw ferrum::Error with `code` and a message containing every `parts`.
template <class F>
void expect_error(F&& f, ErrorCode code, std::initializer_list<const char*> parts) {
  try {
    f();
    FAIL("expected an error containing " << *parts.begin());
  } catch (const Error& e) {
    CHECK(e.code() == code);
    for (const char* p : parts) CHECK_THAT(e.what(), Contains(p));
  }
}

struct ReleaseLog {
  int calls = 0;
  void* last = nullptr;
};
extern "C" void count_release(void* user) {
  auto* log = static_cast<ReleaseLog*>(user);
  ++log->calls;
  log->last = user;
}

uint64_t addr(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }

}  // namespace

TEST_CASE("events on the CPU plugin: record on one context, wait on another, query, synchronize",
          "[abi_1_1][events][cpu]") {
  Backend be = Backend::load("cpu");
  Context a = be.create_context();
  Context b = be.create_context();
  Event ev = a.event_create();
  REQUIRE(ev);
  // Never recorded: complete; waiting on it is a no-op, not an error.
  CHECK(a.event_query(ev) == 1u);
  a.event_synchronize(ev);
  b.event_wait(ev);

  // A computes residual += x; B waits for the event and then reads A's output.
  const std::vector<float> r = seeded(257, 2101), x = seeded(257, 2102);
  Buffer res = a.from_slice(r);
  Buffer xb = a.from_slice(x);
  a.add_inplace(res, xb, r.size());
  a.event_record(ev);
  b.event_wait(ev);
  std::vector<float> want(r.size());
  for (size_t i = 0; i < r.size(); ++i) want[i] = r[i] + x[i];
  CHECK(b.to_vec(res, r.size()) == want);
  CHECK(b.event_query(ev) == 1u);
  b.event_synchronize(ev);

  // The event is not owned by the context that made it.
  a.reset();
  b.event_wait(ev);
  b.event_record(ev);
  CHECK(b.event_query(ev) == 1u);

  // Move leaves the source empty; an empty Event is a NULL handle: INVALID_ARGUMENT.
  Event moved = std::move(ev);
  CHECK(moved);
  CHECK_FALSE(ev);  // NOLINT(bugprone-use-after-move): the moved-from state is the point
  expect_error([&] { b.event_record(ev); }, ErrorCode::invalid_argument,
               {"event_record", "argument 'event'", "given NULL"});
  moved.reset();
  CHECK_FALSE(moved);
}

TEST_CASE("events on the CPU plugin: released, foreign and garbage handles, bad args", "[abi_1_1][events][cpu]") {
  Backend be = Backend::load("cpu");
  Context ctx = be.create_context();
  const ferrum_context_table* t = be.api()->context;
  REQUIRE(t->struct_size >= FERRUM_CONTEXT_TABLE_SIZE_V1_1);

  ferrum_event* raw = nullptr;
  ferrum_event_create_args c{};
  c.struct_size = sizeof c;
  c.event = &raw;
  REQUIRE(t->event_create(ctx.get(), &c) == FERRUM_STATUS_OK);
  REQUIRE(raw != nullptr);
  ferrum_event_release_args rel{};
  rel.struct_size = sizeof rel;
  rel.event = raw;
  REQUIRE(t->event_release(nullptr, &rel) == FERRUM_STATUS_OK);
  // Double release: refused, never a double free.
  CHECK(t->event_release(nullptr, &rel) == FERRUM_STATUS_INVALID_ARGUMENT);
  // NULL is a no-op.
  rel.event = nullptr;
  CHECK(t->event_release(nullptr, &rel) == FERRUM_STATUS_OK);
  CHECK(t->event_release(nullptr, nullptr) == FERRUM_STATUS_INVALID_ARGUMENT);

  // A released handle, a garbage pointer and a handle of another kind (a timer) on every op.
  int garbage = 42;
  ferrum::Timer timer = ctx.make_timer();
  ferrum_event* bad[] = {raw, reinterpret_cast<ferrum_event*>(&garbage), reinterpret_cast<ferrum_event*>(timer.get())};
  for (ferrum_event* h : bad) {
    ferrum_event_record_args r{sizeof(ferrum_event_record_args), h};
    ferrum_event_wait_args w{sizeof(ferrum_event_wait_args), h};
    ferrum_event_synchronize_args s{sizeof(ferrum_event_synchronize_args), h};
    uint32_t done = 7;
    ferrum_event_query_args q{sizeof(ferrum_event_query_args), h, &done};
    ferrum_event_release_args r2{sizeof(ferrum_event_release_args), h};
    CHECK(t->event_record(ctx.get(), &r) == FERRUM_STATUS_INVALID_ARGUMENT);
    CHECK(t->event_wait(ctx.get(), &w) == FERRUM_STATUS_INVALID_ARGUMENT);
    CHECK(t->event_synchronize(ctx.get(), &s) == FERRUM_STATUS_INVALID_ARGUMENT);
    CHECK(t->event_query(ctx.get(), &q) == FERRUM_STATUS_INVALID_ARGUMENT);
    CHECK(done == 7u);  // nothing written on failure
    CHECK(t->event_release(nullptr, &r2) == FERRUM_STATUS_INVALID_ARGUMENT);
  }
  // The message names the op and the argument.
  char msg[512] = {};
  ferrum_event_record_args r{sizeof(ferrum_event_record_args), reinterpret_cast<ferrum_event*>(&garbage)};
  REQUIRE(t->event_record(ctx.get(), &r) == FERRUM_STATUS_INVALID_ARGUMENT);
  REQUIRE(be.api()->error_detail(ctx.get(), msg, sizeof msg, nullptr) == FERRUM_STATUS_OK);
  CHECK_THAT(msg, Contains("event_record") && Contains("argument 'event'") && Contains("released or foreign"));

  // Struct too small, missing out pointer, NULL context.
  Event ev = ctx.event_create();
  ferrum_event_query_args q{sizeof(ferrum_event_query_args), ev.get(), nullptr};
  CHECK(t->event_query(ctx.get(), &q) == FERRUM_STATUS_INVALID_ARGUMENT);
  ferrum_event_record_args small{8, ev.get()};
  CHECK(t->event_record(ctx.get(), &small) == FERRUM_STATUS_INVALID_ARGUMENT);
  ferrum_event_record_args ok{sizeof(ferrum_event_record_args), ev.get()};
  CHECK(t->event_record(nullptr, &ok) == FERRUM_STATUS_INVALID_ARGUMENT);
  ferrum_event_create_args no_out{sizeof(ferrum_event_create_args), nullptr};
  CHECK(t->event_create(ctx.get(), &no_out) == FERRUM_STATUS_INVALID_ARGUMENT);
  CHECK(t->event_record(ctx.get(), &ok) == FERRUM_STATUS_OK);
}

TEST_CASE("wrap_external on the CPU plugin is zero-copy both ways and releases once", "[abi_1_1][external][cpu]") {
  Backend be = Backend::load("cpu");
  Context ctx = be.create_context();
  std::vector<float> host = seeded(300, 2201);
  ReleaseLog log;
  {
    Buffer w = ctx.wrap_external({.address = addr(host.data()), .dtype = Dtype::f32, .count = host.size(),
                                  .device_ordinal = 0, .release_fn = count_release, .release_user_data = &log});
    CHECK(w.dtype() == Dtype::f32);
    CHECK(w.count() == host.size());
    CHECK(ctx.to_vec(w, host.size()) == host);
    // Host writes through the original pointer: ferrum reads them.
    host[0] = 1234.5f;
    host[299] = -7.25f;
    CHECK(ctx.read_typed<float>(w, host.size()) == host);
    // ferrum writes (a transfer and an in-place op): the original memory holds them.
    const std::vector<float> fresh = seeded(300, 2202), x = seeded(300, 2203);
    ctx.write_typed<float>(w, fresh);
    ctx.sync();
    CHECK(host == fresh);
    Buffer xb = ctx.from_slice(x);
    ctx.add_inplace(w, xb, host.size());
    ctx.sync();
    for (size_t i = 0; i < host.size(); ++i) CHECK(host[i] == fresh[i] + x[i]);
    // Exported address: the very memory.
    const Buffer::DeviceAddress da = w.device_address();
    CHECK(da.address == addr(host.data()));
    CHECK(da.device == 0u);
    CHECK(log.calls == 0);  // not before the release
  }
  CHECK(log.calls == 1);
  CHECK(log.last == &log);
  CHECK(host.size() == 300u);  // the host still owns (and may use) its memory

  // A raw double release calls the callback once in all.
  ReleaseLog log2;
  Buffer w2 = ctx.wrap_external({.address = addr(host.data()), .dtype = Dtype::u8, .count = 5, .device_ordinal = 0,
                                 .release_fn = count_release, .release_user_data = &log2});
  ferrum_buffer* h = w2.release();
  ferrum_buffer_release_args rel{sizeof(ferrum_buffer_release_args), h};
  CHECK(be.api()->memory->buffer_release(nullptr, &rel) == FERRUM_STATUS_OK);
  CHECK(be.api()->memory->buffer_release(nullptr, &rel) == FERRUM_STATUS_INVALID_ARGUMENT);
  CHECK(log2.calls == 1);

  // No callback: fine; empty wrap (address 0, count 0): a valid empty buffer.
  Buffer plain = ctx.wrap_external({.address = addr(host.data()), .dtype = Dtype::f32, .count = 4});
  CHECK(ctx.to_vec(plain, 4) == std::vector<float>(host.begin(), host.begin() + 4));
  Buffer empty = ctx.wrap_external({.address = 0, .dtype = Dtype::f32, .count = 0});
  CHECK(empty.count() == 0u);
}

TEST_CASE("wrap_external on the CPU plugin: ops run in place on memory aligned to the element only",
          "[abi_1_1][external][cpu]") {
  // Vectors offset by one element: 4-byte aligned, not 16/32/64 (a fresh ferrum buffer is 64).
  Backend be = Backend::load("cpu");
  Context ctx = be.create_context();
  const uint64_t m = 5, n = 33, k = 19;
  std::vector<float> a = seeded(m * k + 1, 2401), b = seeded(n * k + 1, 2402), out(m * n + 2, -7.0f);
  auto wrap = [&](std::vector<float>& v, uint64_t count) {
    return ctx.wrap_external({.address = addr(v.data() + 1), .dtype = Dtype::f32, .count = count});
  };
  Buffer wa = wrap(a, m * k), wb = wrap(b, n * k), wo = wrap(out, m * n);
  ctx.gemm({.a = wa, .b = wb, .out = wo, .m = m, .n = n, .k = k});
  ctx.sync();
  CHECK(out[0] == -7.0f);          // nothing before the wrapped range
  CHECK(out[m * n + 1] == -7.0f);  // nothing after it
  for (uint64_t i = 0; i < m; ++i)
    for (uint64_t j = 0; j < n; ++j) {
      double ref = 0;  // out[i, j] = sum_p a[i, p] * b[j, p] (b is [n, k])
      for (uint64_t p = 0; p < k; ++p) ref += double(a[1 + i * k + p]) * double(b[1 + j * k + p]);
      CHECK(std::abs(out[1 + i * n + j] - ref) <= 1e-4 * (1.0 + std::abs(ref)));
    }
}

TEST_CASE("wrap_external on the CPU plugin: every bad argument is named, nothing is released",
          "[abi_1_1][external][cpu]") {
  Backend be = Backend::load("cpu");
  Context ctx = be.create_context();
  alignas(16) static unsigned char mem[64] = {};
  ReleaseLog log;
  auto wrap = [&](uint64_t address, Dtype dt, uint64_t count, uint64_t device) {
    return ctx.wrap_external({.address = address, .dtype = dt, .count = count, .device_ordinal = device,
                              .release_fn = count_release, .release_user_data = &log});
  };
  expect_error([&] { (void)wrap(0, Dtype::f32, 4, 0); }, ErrorCode::invalid_argument,
               {"wrap_external", "argument 'address'", "given 0"});
  expect_error([&] { (void)wrap(addr(mem), Dtype::f32, UINT64_MAX / 2, 0); }, ErrorCode::invalid_argument,
               {"wrap_external", "argument 'count'", "wraps"});
  expect_error([&] { (void)wrap(addr(mem), Dtype::invalid, 4, 0); }, ErrorCode::invalid_argument,
               {"wrap_external", "argument 'dtype'", "given 0"});
  expect_error([&] { (void)wrap(addr(mem), static_cast<Dtype>(99), 4, 0); }, ErrorCode::invalid_argument,
               {"argument 'dtype'", "given 99"});
  expect_error([&] { (void)wrap(addr(mem) + 1, Dtype::f32, 4, 0); }, ErrorCode::invalid_argument,
               {"argument 'address'", "aligned to 4 bytes"});
  expect_error([&] { (void)wrap(addr(mem) + 1, Dtype::bf16, 4, 0); }, ErrorCode::invalid_argument,
               {"argument 'address'", "aligned to 2 bytes"});
  expect_error([&] { (void)wrap(addr(mem), Dtype::f32, 4, 1); }, ErrorCode::invalid_argument,
               {"argument 'device_ordinal'", "below 1", "given 1"});
  CHECK(log.calls == 0);  // a failed wrap creates nothing and calls nothing
  // Alignment is per dtype: a U8 buffer may start anywhere.
  Buffer u8 = wrap(addr(mem) + 1, Dtype::u8, 3, 0);
  CHECK(u8.count() == 3u);
  u8.reset();
  CHECK(log.calls == 1);
}

TEST_CASE("buffer_device_address on the CPU plugin: the memory ferrum reads, bad handles refused",
          "[abi_1_1][external][cpu]") {
  Backend be = Backend::load("cpu");
  Context ctx = be.create_context();
  const std::vector<float> v = seeded(40, 2301);
  Buffer b = ctx.from_slice(v);
  const Buffer::DeviceAddress da = b.device_address();
  REQUIRE(da.address != 0u);
  CHECK(da.address % 4 == 0u);
  CHECK(da.device == 0u);
  // On the CPU plugin the address is host memory: write through it, read through ferrum.
  auto* p = reinterpret_cast<float*>(static_cast<uintptr_t>(da.address));
  CHECK(std::vector<float>(p, p + v.size()) == v);
  p[3] = 99.0f;
  CHECK(ctx.to_vec(b, v.size())[3] == 99.0f);

  const ferrum_memory_table* m = be.api()->memory;
  uint64_t a = 5, d = 5;
  int garbage = 0;
  ferrum_buffer_device_address_args args{sizeof args, reinterpret_cast<ferrum_buffer*>(&garbage), &a, &d};
  CHECK(m->buffer_device_address(nullptr, &args) == FERRUM_STATUS_INVALID_ARGUMENT);
  CHECK(a == 5u);
  args.buf = b.get();
  args.address = nullptr;
  CHECK(m->buffer_device_address(nullptr, &args) == FERRUM_STATUS_INVALID_ARGUMENT);
  args.address = &a;
  args.struct_size = 16;
  CHECK(m->buffer_device_address(nullptr, &args) == FERRUM_STATUS_INVALID_ARGUMENT);
  Buffer none;
  expect_error([&] { (void)none.device_address(); }, ErrorCode::invalid_argument, {"buffer_device_address", "'buf'"});
}

TEST_CASE("external_stream on the CPU plugin: UNSUPPORTED naming the argument, 0 and 1.0 structs run",
          "[abi_1_1][external][cpu]") {
  Backend be = Backend::load("cpu");
  expect_error([&] { (void)be.create_context_on_stream(0x1234); }, ErrorCode::unsupported,
               {"new_context", "argument 'external_stream'", "no streams"});
  Context c = be.create_context_on_stream(0);
  CHECK(c);
  // A 1.0 caller's 32-byte struct: external_stream absent, read as 0.
  ferrum_new_context_args a{};
  ferrum_context* raw = nullptr;
  a.struct_size = FERRUM_NEW_CONTEXT_ARGS_SIZE_V1_0;
  a.context = &raw;
  a.external_stream = 0xDEAD;  // beyond the 1.0 struct: must not be read
  REQUIRE(be.api()->context->new_context(nullptr, &a) == FERRUM_STATUS_OK);
  ferrum_context_destroy_args d{sizeof d, raw};
  CHECK(be.api()->context->context_destroy(nullptr, &d) == FERRUM_STATUS_OK);
}

TEST_CASE("the C example plugin (ABI 1.0): the facade refuses events and external memory, naming both versions",
          "[abi_1_1][events][external][cexample]") {
  Backend be = Backend::load("cexample");
  REQUIRE(be.abi_version() == "1.0");
  Context ctx = be.create_context();
  expect_error([&] { (void)ctx.event_create(); }, ErrorCode::unsupported,
               {"event_create", "needs ABI 1.1, plugin 'cexample' implements 1.0"});
  Event none;
  expect_error([&] { ctx.event_wait(none); }, ErrorCode::unsupported, {"event_wait", "implements 1.0"});
  std::vector<float> host(4, 1.0f);
  expect_error([&] { (void)ctx.wrap_external({.address = addr(host.data()), .dtype = Dtype::f32, .count = 4}); },
               ErrorCode::unsupported, {"wrap_external", "needs ABI 1.1"});
  Buffer b = ctx.from_slice(host);
  expect_error([&] { (void)b.device_address(); }, ErrorCode::unsupported,
               {"buffer_device_address", "needs ABI 1.1, plugin 'cexample' implements 1.0"});
  expect_error([&] { (void)be.create_context_on_stream(0x1234); }, ErrorCode::unsupported,
               {"new_context", "argument 'external_stream'", "needs ABI 1.1", "implements 1.0"});
  Context plain = be.create_context_on_stream(0);  // at its default the 1.0 struct is passed
  CHECK(plain);
}
