// Conformance cases: ABI 1.1 events (docs/spec.md §2.1) and external memory (§2.2), on any plugin.
// Events: two contexts of the plugin ordered by an event give the right result without a host
// sync; a never-recorded event is complete; an event outlives the context that made it and may be
// released while pending; released, garbage and NULL handles are INVALID_ARGUMENT. External
// memory, device-independently: a buffer's own memory (buffer_device_address) wrapped a second
// time is the same memory both ways, the release callback runs exactly once, and every bad
// argument of wrap_external is INVALID_ARGUMENT naming it. A plugin of ABI 1.0 has none of these
// slots: the facade's gate answers unsupported (the cases are reported unsupported).
#include <ferrum/conformance/kit.hpp>

#include "src/case_util.hpp"

#include <cstdint>
#include <string>
#include <vector>

using namespace ferrum;
using namespace ferrum::conformance;
using namespace ferrum::conformance::util;

namespace {

constexpr ErrorCode kInvalid = ErrorCode::invalid_argument;

struct ReleaseCount {
  int calls = 0;
};
extern "C" void conformance_count_release(void* user) { ++static_cast<ReleaseCount*>(user)->calls; }

// The plugin's context table when it has the 1.1 event slots (the facade already answered for
// the op when this is reached, so a NULL result means a NULL slot).
const ferrum_context_table* event_table_of(Run& run) {
  const ferrum_plugin_api* api = run.backend.api();
  if (api->abi_minor < 1 || !api->context || api->context->struct_size < FERRUM_CONTEXT_TABLE_SIZE_V1_1)
    return nullptr;
  return api->context;
}

}  // namespace

FERRUM_CONFORMANCE_CASE("event_wait", "two contexts ordered by an event, no host sync", kActDtypes) {
  Context other = run.backend.create_context(run.ctx.device(), run.dtype);
  Event ev = run.ctx.event_create();
  // Never recorded: complete, and waiting on it is a no-op.
  if (run.ctx.event_query(ev) != 1u) run.fail("event_query of a never-recorded event answered 0");
  run.ctx.event_synchronize(ev);
  other.event_wait(ev);

  const uint64_t n = 4099;
  const std::vector<double> r = run.random(n), x = run.random(n);
  Buffer res = run.upload(r);
  Buffer xb = run.upload(x);
  run.ctx.sync();
  for (int rep = 0; rep < 3; ++rep) run.ctx.add_inplace(res, xb, n);  // res = r + 3x on ctx
  run.ctx.event_record(ev);
  other.event_wait(ev);
  Buffer copy = other.alloc_typed(run.dtype, n);
  other.copy_slice({.src = res, .src_offset = 0, .dst = copy, .dst_offset = 0, .len = n});  // on `other`, after the wait
  Buffer ref = run.upload(r);
  for (int rep = 0; rep < 3; ++rep) run.ctx.add_inplace(ref, xb, n);  // the same rounding steps, in order
  const std::vector<double> expect = run.download(ref, n);
  other.sync();  // only for the readback below (through ctx); the copy itself was ordered by the event
  run.check_values("other context's copy after event_wait", run.download(copy, n), expect, n, run.dtype, 'E');
  other.event_synchronize(ev);
  if (other.event_query(ev) != 1u) run.fail("event_query after event_synchronize answered 0");
}

FERRUM_CONFORMANCE_CASE("event_record", "an event outlives its context; release while pending; re-record", kF32Only) {
  Event ev;
  {
    Context maker = run.backend.create_context(run.ctx.device(), run.dtype);
    ev = maker.event_create();
    maker.event_record(ev);
  }  // context_destroy: the event stays valid
  run.ctx.event_wait(ev);
  run.ctx.event_synchronize(ev);
  Buffer b = run.upload(run.random(1000));
  run.ctx.add_inplace(b, b, 1000);
  run.ctx.event_record(ev);  // re-record on another context of the same device
  run.ctx.event_record(ev);
  Event pending = run.ctx.event_create();
  run.ctx.add_inplace(b, b, 1000);
  run.ctx.event_record(pending);
  run.ctx.event_wait(pending);
  pending.reset();  // released while (possibly) pending
  run.ctx.sync();
  if (run.ctx.event_query(ev) != 1u) run.fail("event_query after sync answered 0");
}

FERRUM_CONFORMANCE_CASE("event_record", "error: NULL, released and garbage event handles", kF32Only) {
  Event empty;
  run.expect_error("event_record of an empty Event", kInvalid, [&] { run.ctx.event_record(empty); }, "event");
  run.expect_error("event_wait of an empty Event", kInvalid, [&] { run.ctx.event_wait(empty); }, "event");
  run.expect_error("event_query of an empty Event", kInvalid, [&] { (void)run.ctx.event_query(empty); }, "event");
  Event live = run.ctx.event_create();
  const ferrum_context_table* t = event_table_of(run);
  if (!t || !t->event_record || !t->event_release) {
    run.fail("event_create worked but the context table has no event_record/event_release slot");
    return;
  }
  ferrum_event* released = live.get();
  ferrum_event_release_args rel{sizeof rel, released};
  if (t->event_release(nullptr, &rel) != FERRUM_STATUS_OK) run.fail("event_release of a live event failed");
  (void)live.release();
  if (t->event_release(nullptr, &rel) != FERRUM_STATUS_INVALID_ARGUMENT)
    run.fail("a second event_release of one handle was not INVALID_ARGUMENT");
  static uint64_t garbage[8] = {};
  for (ferrum_event* h : {released, reinterpret_cast<ferrum_event*>(garbage)}) {
    ferrum_event_record_args r{sizeof r, h};
    ferrum_event_wait_args w{sizeof w, h};
    uint32_t done = 7;
    ferrum_event_query_args q{sizeof q, h, &done};
    if (t->event_record(run.ctx.get(), &r) != FERRUM_STATUS_INVALID_ARGUMENT)
      run.fail("event_record of a released or garbage handle was not INVALID_ARGUMENT");
    if (t->event_wait && t->event_wait(run.ctx.get(), &w) != FERRUM_STATUS_INVALID_ARGUMENT)
      run.fail("event_wait of a released or garbage handle was not INVALID_ARGUMENT");
    if (t->event_query && (t->event_query(run.ctx.get(), &q) != FERRUM_STATUS_INVALID_ARGUMENT || done != 7u))
      run.fail("event_query of a released or garbage handle was not INVALID_ARGUMENT (or wrote `done`)");
  }
  rel.event = nullptr;
  if (t->event_release(nullptr, &rel) != FERRUM_STATUS_OK) run.fail("event_release(NULL) was not a no-op");
}

FERRUM_CONFORMANCE_CASE("wrap_external", "a buffer's own memory wrapped again: zero copy both ways, one release",
                        kActDtypes) {
  const uint64_t n = 777;
  Buffer owner = run.upload(run.random(n));
  const Buffer::DeviceAddress da = owner.device_address();
  if (da.device != run.ctx.device()) run.fail("buffer_device_address reported another device than the context's");
  ReleaseCount count;
  {
    Buffer w = run.ctx.wrap_external({.address = da.address, .dtype = run.dtype, .count = n,
                                      .device_ordinal = da.device, .release_fn = conformance_count_release,
                                      .release_user_data = &count});
    if (w.dtype() != run.dtype || w.count() != n) run.fail("the wrapped buffer's dtype or count differs from the call");
    if (w.device_address().address != da.address) run.fail("the wrapped buffer's address differs from the wrapped one");
    run.check_values("read through the wrapper", run.download(w, n), run.download(owner, n), n, run.dtype, 'E');
    const std::vector<double> fresh = run.random(n);
    Buffer src = run.upload(fresh);
    run.ctx.copy_slice({.src = src, .src_offset = 0, .dst = w, .dst_offset = 0, .len = n});
    run.check_values("written through the wrapper, read through the owner", run.download(owner, n), fresh, n,
                     run.dtype, 'E');
    const std::vector<double> again = run.random(n);
    Buffer src2 = run.upload(again);
    run.ctx.copy_slice({.src = src2, .src_offset = 0, .dst = owner, .dst_offset = 0, .len = n});
    run.check_values("written through the owner, read through the wrapper", run.download(w, n), again, n, run.dtype,
                     'E');
    run.ctx.sync();
    if (count.calls != 0) run.fail("the release callback ran before the buffer was released");
  }
  if (count.calls != 1) run.fail(fmt("the release callback ran %d times at the release, expected 1", count.calls));
  run.download(owner, n);  // the owner's memory is untouched by the wrapper's release
}

FERRUM_CONFORMANCE_CASE("wrap_external", "error: NULL address, wrapping size, dtype, alignment, device", kF32Only) {
  Buffer owner = run.upload(run.random(64));
  const Buffer::DeviceAddress da = owner.device_address();
  ReleaseCount count;
  auto wrap = [&](uint64_t address, Dtype dt, uint64_t n, uint64_t device) {
    (void)run.ctx.wrap_external({.address = address, .dtype = dt, .count = n, .device_ordinal = device,
                                 .release_fn = conformance_count_release, .release_user_data = &count});
  };
  run.expect_error("address 0 with count 4", kInvalid, [&] { wrap(0, Dtype::f32, 4, da.device); }, "address");
  run.expect_error("count * 4 wraps past 2^64", kInvalid, [&] { wrap(da.address, Dtype::f32, UINT64_MAX / 2, da.device); },
                   "count");
  run.expect_error("dtype 0", kInvalid, [&] { wrap(da.address, Dtype::invalid, 4, da.device); }, "dtype");
  run.expect_error("dtype 99", kInvalid, [&] { wrap(da.address, static_cast<Dtype>(99), 4, da.device); }, "dtype");
  run.expect_error("f32 at an odd address", kInvalid, [&] { wrap(da.address + 1, Dtype::f32, 4, da.device); }, "address");
  run.expect_error("device ordinal = device count", kInvalid,
                   [&] { wrap(da.address, Dtype::f32, 4, run.backend.device_count()); }, "device_ordinal");
  if (count.calls != 0) run.fail("a refused wrap_external called the release callback");
}
