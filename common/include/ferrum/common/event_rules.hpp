// The event and external-memory rules of docs/spec.md §2.1, §2.2 (ABI 1.1) that the project's
// plugins apply the same way: the table of live events (so a released, foreign or garbage event
// handle is recognised without reading freed memory), the handle checks and their messages, and
// the argument checks of wrap_external. Each plugin keeps only what its device does differently
// (what an event is, where wrapped memory may live).
#pragma once

#include <cstdint>
#include <new>
#include <string>

#include <ferrum/common/checked.hpp>
#include <ferrum/common/handle_table.hpp>
#include <ferrum/common/plugin_support.hpp>

namespace ferrum::plugin {

// ---- events (docs/spec.md §2.1) --------------------------------------------------------------
// The plugin's table of live events of its own `ferrum_event` type E (one per plugin library),
// kept like buffer_table(): never destroyed, its chunks given back at unload when none is live.
template <class E>
ferrum::common::HandleTable<E>& event_table() {
  using Table = ferrum::common::HandleTable<E>;
  alignas(Table) static unsigned char storage[sizeof(Table)];
  static Table* table = ::new (static_cast<void*>(storage)) Table;
  static const struct Reaper {
    ~Reaper() { table->free_if_unused(); }
  } reaper{};
  (void)reaper;
  return *table;
}

// The live event behind `h`, or nullptr (NULL, released, foreign, garbage); never dereferences h.
template <class E>
E* find_event(const E* h) noexcept {
  return event_table<E>().find(h);
}

// The error for an event argument that is not a live event of this plugin.
inline Status event_not_live(const char* op, const void* h) {
  if (!h) return invalid(format("%s: argument 'event': expected an event, given NULL", op));
  return invalid(format("%s: argument 'event': expected a live event of this plugin, given a released or "
                        "foreign event handle",
                        op));
}

// The live event `h` into `out`, or the error naming the op.
template <class E>
Status live_event(const char* op, const E* h, E*& out) {
  out = find_event(h);
  return out ? ok_status() : event_not_live(op, h);
}

// A new event handle (value-initialised); nullptr when out of host memory.
template <class E>
E* new_event_handle() noexcept {
  return event_table<E>().acquire();
}

// Gives the handle's slot back; false when `h` was not a live event (double or foreign release).
template <class E>
bool release_event_handle(E* h) noexcept {
  return event_table<E>().release(h);
}

// ---- external memory (docs/spec.md §2.2) -------------------------------------------------------
// wrap_external's device-independent checks: a storable dtype, count·size(dtype) within 64 bits,
// a non-zero address when count > 0, the address aligned to the dtype's size, and a device
// ordinal below `devices` equal to the context's `ctx_device`. `bytes` receives the byte size.
inline Status check_wrap_external(const ferrum_wrap_external_args& a, uint64_t devices, uint64_t ctx_device,
                                  uint64_t& bytes) {
  if (a.dtype < FERRUM_DTYPE_F32 || a.dtype > FERRUM_DTYPE_F8_E4M3)
    return invalid(format("wrap_external: argument 'dtype': expected a dtype 1..8, given %d", a.dtype));
  const uint64_t es = dtype_size(a.dtype);
  if (!ferrum::common::checked_mul(a.count, es, bytes))
    return invalid(format("wrap_external: argument 'count': expected an element count whose byte size (%llu bytes "
                          "each) fits in 64 bits, given %llu (the size wraps past 2^64)",
                          (unsigned long long)es, (unsigned long long)a.count));
  if (a.address == 0 && a.count > 0)
    return invalid(format("wrap_external: argument 'address': expected the address of %llu elements, given 0 (NULL)",
                          (unsigned long long)a.count));
  if (a.address % es != 0)
    return invalid(format("wrap_external: argument 'address': expected an address aligned to %llu bytes (the size "
                          "of %s), given 0x%llx",
                          (unsigned long long)es, dtype_name(a.dtype), (unsigned long long)a.address));
  if (a.device_ordinal >= devices)
    return invalid(format("wrap_external: argument 'device_ordinal': expected a device ordinal below %llu (the "
                          "plugin's device count), given %llu",
                          (unsigned long long)devices, (unsigned long long)a.device_ordinal));
  if (a.device_ordinal != ctx_device)
    return invalid(format("wrap_external: argument 'device_ordinal': expected %llu (the context's device), given %llu",
                          (unsigned long long)ctx_device, (unsigned long long)a.device_ordinal));
  return ok_status();
}

// The buffer handle of a wrap_external call that passed its checks: the host's memory, marked
// external (buffer_release then calls the callback instead of freeing it), on `device`.
inline Status make_external_buffer(const ferrum_wrap_external_args& a, int device) {
  ferrum_buffer* b = new_buffer_handle();
  if (!b) return {FERRUM_STATUS_OUT_OF_MEMORY, "wrap_external: out of host memory"};
  b->dtype = a.dtype;
  b->count = a.count;
  b->device = device;
  b->data = reinterpret_cast<void*>(static_cast<uintptr_t>(a.address));
  b->external = true;
  b->release_fn = a.release_fn;
  b->release_user_data = a.release_user_data;
  *a.buffer = b;
  return ok_status();
}

// A wrapped buffer's release: the handle is already invalid; calls the host's callback once.
inline void run_external_release(ferrum_release_fn fn, void* user_data) noexcept {
  if (fn) fn(user_data);
}

// buffer_device_address ([no ctx]): the generic checks, then the buffer's data pointer and device.
inline ferrum_status buffer_device_address(const ferrum_buffer_device_address_args* a) {
  return guard(nullptr, "buffer_device_address", [&]() -> Status {
    ferrum::common::CheckError err;
    BufferAccess acc;
    if (ferrum::common::check_args(acc, a, err) != FERRUM_STATUS_OK) return {err.status, err.message};
    if (!a->buf) return invalid("buffer_device_address: argument 'buf': expected a buffer, given NULL");
    *a->address = reinterpret_cast<uintptr_t>(a->buf->data);
    *a->device_ordinal = static_cast<uint64_t>(a->buf->device);
    return ok_status();
  });
}

}  // namespace ferrum::plugin
