// CUDA plugin: events and external memory (ABI 1.1, docs/spec.md §2.1, §2.2). An event is a
// cudaEvent_t (timing disabled) of the device of the context that made it; record and wait
// enqueue on the context's stream (inside a graph capture as external event nodes, so each
// replay records and waits again). wrap_external makes a buffer over device or managed memory the
// host owns; buffer_release then calls the host's callback instead of cudaFree.
#include <cuda_runtime_api.h>

#include <ferrum/common/event_rules.hpp>

#include "cuda_check.hpp"
#include "cuda_plugin.hpp"
#include "device.hpp"

namespace ferrum::cuda::glue {
namespace {

Status cuda_failed(const char* op, cudaError_t err, const char* stmt) {
  Status s = from_device(cuda_error_status(err, stmt, __FILE__, __LINE__));
  s.message = std::string(op) + ": " + s.message;
  return s;
}

// Whether the context's stream is being captured (by begin_graph_capture, or by the host on an
// external stream): record and wait then use the external-node flags.
Status stream_capturing(const char* op, cudaStream_t stream, bool& capturing) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  const cudaError_t err = cudaStreamIsCapturing(stream, &st);
  if (err != cudaSuccess) return cuda_failed(op, err, "cudaStreamIsCapturing(ctx.stream)");
  capturing = st == cudaStreamCaptureStatusActive;
  return ok_status();
}

// The live event `h` with its own device made current for the guard (host waits and queries).
Status event_on_its_device(const char* op, const ferrum_event* h, DeviceGuard& g, ferrum_event*& e) {
  Status s = plugin::live_event(op, h, e);
  return s.ok() ? from_device(g.enter(e->device)) : s;
}

}  // namespace

ferrum_status event_create(ferrum_context* ctx, const ferrum_event_create_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_event_create_args& a, bool dry) -> Status {
    if (dry) return ok_status();
    DeviceGuard g;
    Status s = enter_device(g, c);
    if (!s.ok()) return s;
    cudaEvent_t ev = nullptr;
    const cudaError_t err = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (err != cudaSuccess) return cuda_failed("event_create", err, "cudaEventCreateWithFlags(DisableTiming)");
    ferrum_event* e = plugin::new_event_handle<ferrum_event>();
    if (!e) {
      (void)cudaEventDestroy(ev);
      return {FERRUM_STATUS_OUT_OF_MEMORY, "event_create: out of host memory"};
    }
    e->device = static_cast<int>(c.device);
    e->ev = ev;
    *a.event = e;
    return ok_status();
  });
}

ferrum_status event_record(ferrum_context* ctx, const ferrum_event_record_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_event_record_args& a, bool dry) -> Status {
    ferrum_event* e = nullptr;
    Status s = plugin::live_event("event_record", a.event, e);
    if (!s.ok()) return s;
    if (static_cast<uint64_t>(e->device) != c.device)
      return invalid(plugin::format("event_record: argument 'event': expected an event of device %llu (the context's), "
                                    "given one of device %d (record on a context of the event's device; waiting "
                                    "works across devices)",
                                    (unsigned long long)c.device, e->device));
    if (dry) return ok_status();
    DeviceGuard g;
    s = enter_device(g, c);
    bool capturing = false;
    if (s.ok()) s = stream_capturing("event_record", c.dev->stream, capturing);
    if (!s.ok()) return s;
    const cudaError_t err = capturing ? cudaEventRecordWithFlags(e->ev, c.dev->stream, cudaEventRecordExternal)
                                      : cudaEventRecord(e->ev, c.dev->stream);
    if (err != cudaSuccess) return cuda_failed("event_record", err, "cudaEventRecord(event, ctx.stream)");
    return ok_status();
  });
}

ferrum_status event_wait(ferrum_context* ctx, const ferrum_event_wait_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_event_wait_args& a, bool dry) -> Status {
    ferrum_event* e = nullptr;
    Status s = plugin::live_event("event_wait", a.event, e);
    if (!s.ok() || dry) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    bool capturing = false;
    if (s.ok()) s = stream_capturing("event_wait", c.dev->stream, capturing);
    if (!s.ok()) return s;
    const cudaError_t err =
        cudaStreamWaitEvent(c.dev->stream, e->ev, capturing ? cudaEventWaitExternal : cudaEventWaitDefault);
    if (err != cudaSuccess) return cuda_failed("event_wait", err, "cudaStreamWaitEvent(ctx.stream, event)");
    return ok_status();
  });
}

ferrum_status event_synchronize(ferrum_context* ctx, const ferrum_event_synchronize_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_event_synchronize_args& a, bool dry) -> Status {
    ferrum_event* e = nullptr;
    if (dry) return plugin::live_event("event_synchronize", a.event, e);
    DeviceGuard g;
    Status s = event_on_its_device("event_synchronize", a.event, g, e);
    if (!s.ok()) return s;
    const cudaError_t err = cudaEventSynchronize(e->ev);
    if (err != cudaSuccess) return cuda_failed("event_synchronize", err, "cudaEventSynchronize(event)");
    return ok_status();
  });
}

ferrum_status event_query(ferrum_context* ctx, const ferrum_event_query_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_event_query_args& a, bool dry) -> Status {
    ferrum_event* e = nullptr;
    if (dry) return plugin::live_event("event_query", a.event, e);
    DeviceGuard g;
    Status s = event_on_its_device("event_query", a.event, g, e);
    if (!s.ok()) return s;
    const cudaError_t err = cudaEventQuery(e->ev);
    if (err == cudaSuccess || err == cudaErrorNotReady) {
      // "not ready" is an answer, not an error: never leave it as the thread's last error, where a
      // later launch check would read it.
      if (err == cudaErrorNotReady && cudaPeekAtLastError() == cudaErrorNotReady) (void)cudaGetLastError();
      *a.done = err == cudaSuccess ? 1u : 0u;
      return ok_status();
    }
    return cuda_failed("event_query", err, "cudaEventQuery(event)");
  });
}

ferrum_status event_release(ferrum_context*, const ferrum_event_release_args* a) {
  return run_release("event_release", a, FERRUM_EVENT_RELEASE_ARGS_SIZE_V1_1, [](const ferrum_event_release_args& a) {
    if (!a.event) return ok_status();  // NULL-safe
    // The table answers without dereferencing the handle; only the one successful release
    // destroys the CUDA event (which CUDA defers until a pending record has completed).
    ferrum_event* e = plugin::find_event(a.event);
    if (!e) return plugin::event_not_live("event_release", a.event);
    const int device = e->device;
    cudaEvent_t ev = e->ev;
    if (!plugin::release_event_handle(a.event)) return plugin::event_not_live("event_release", a.event);
    DeviceGuard g;
    Status s = from_device(g.enter(device));
    if (!s.ok()) return s;
    const cudaError_t err = cudaEventDestroy(ev);
    if (err != cudaSuccess) return cuda_failed("event_release", err, "cudaEventDestroy(event)");
    return ok_status();
  });
}

// ---- external memory (docs/spec.md §2.2) -----------------------------------------------------------
// The start and size of the allocation holding device address `p`, asked of the driver
// (cuPointerGetAttribute, RANGE_START_ADDR / RANGE_SIZE, reached through the runtime's entry-point
// query so the plugin does not link libcuda). False when the driver cannot say (then only the
// first byte is checked).
bool allocation_range(uint64_t p, uint64_t& start, uint64_t& size) {
  using GetAttr = int (*)(void* data, int attribute, unsigned long long ptr);
  static const GetAttr get = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050
    const cudaError_t err = cudaGetDriverEntryPointByVersion("cuPointerGetAttribute", &fn, 12000, cudaEnableDefault, &found);
#else
    const cudaError_t err = cudaGetDriverEntryPoint("cuPointerGetAttribute", &fn, cudaEnableDefault, &found);
#endif
    if (err != cudaSuccess || found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return GetAttr{nullptr};
    }
    return reinterpret_cast<GetAttr>(fn);
  }();
  constexpr int kRangeStart = 11, kRangeSize = 12;  // CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, _RANGE_SIZE
  unsigned long long s = 0;
  size_t n = 0;
  if (!get || get(&s, kRangeStart, p) != 0 || get(&n, kRangeSize, p) != 0) return false;
  if (s > p || n == 0) return false;
  start = s;
  size = n;
  return true;
}

ferrum_status wrap_external(ferrum_context* ctx, const ferrum_wrap_external_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_wrap_external_args& a, bool dry) -> Status {
    int32_t devices = 0;
    Status s = from_device(device_count(devices));
    uint64_t bytes = 0;
    if (s.ok()) s = plugin::check_wrap_external(a, devices > 0 ? static_cast<uint64_t>(devices) : 0, c.device, bytes);
    if (!s.ok()) return s;
    if (a.address != 0) {  // where the memory lives: device or managed memory of this device only
      cudaPointerAttributes attr{};
      const cudaError_t err = cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(a.address));
      if (err != cudaSuccess) {
        (void)cudaGetLastError();
        attr.type = cudaMemoryTypeUnregistered;
      }
      if (attr.type == cudaMemoryTypeHost || attr.type == cudaMemoryTypeUnregistered)
        return invalid(plugin::format("wrap_external: argument 'address': expected device or managed memory of device "
                                      "%llu, given host memory (%s) at 0x%llx",
                                      (unsigned long long)a.device_ordinal,
                                      attr.type == cudaMemoryTypeHost ? "page-locked" : "pageable or unknown",
                                      (unsigned long long)a.address));
      if (attr.type == cudaMemoryTypeDevice && static_cast<uint64_t>(attr.device) != a.device_ordinal)
        return invalid(plugin::format("wrap_external: argument 'address': expected memory of device %llu "
                                      "(device_ordinal), given memory of device %d",
                                      (unsigned long long)a.device_ordinal, attr.device));
      // The allocation holding the address must hold all `count` elements behind it.
      uint64_t range_start = 0, range_bytes = 0;
      if (allocation_range(a.address, range_start, range_bytes)) {
        const uint64_t before = a.address - range_start;  // arith-ok: the range contains address
        const uint64_t room = range_bytes > before ? range_bytes - before : 0;  // arith-ok: guarded
        if (bytes > room)
          return invalid(plugin::format("wrap_external: argument 'count': expected at most %llu elements (the "
                                        "allocation holding 'address' ends %llu bytes after it), given %llu (%llu bytes)",
                                        (unsigned long long)(room / dtype_size(a.dtype)), (unsigned long long)room,
                                        (unsigned long long)a.count, (unsigned long long)bytes));
      }
    }
    if (dry) return ok_status();
    return plugin::make_external_buffer(a, static_cast<int>(a.device_ordinal));
  });
}

ferrum_status buffer_device_address(ferrum_context*, const ferrum_buffer_device_address_args* a) {
  return plugin::buffer_device_address(a);
}

}  // namespace ferrum::cuda::glue
