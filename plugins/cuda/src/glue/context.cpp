// CUDA plugin: context and timer (docs/spec.md §2, §9). A context owns one heap DeviceContext (one
// non-blocking stream on one device, its cuBLASLt handle, workspace and staging). Timers are two
// timing events on the device of the context that made them.
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <new>

#include "cuda_plugin.hpp"
#include "device.hpp"
#include "memory.hpp"

namespace ferrum::cuda::glue {
namespace {

// Whether `v` can be a cudaStream_t at all, asked without touching it: the two special handles
// (cudaStreamLegacy, cudaStreamPerThread), or an 8-byte-aligned user-space address (below 2^48,
// above the first 64 KiB) whose first 8 bytes are mapped readable (process_vm_readv on this
// process answers EFAULT instead of faulting). The CUDA runtime dereferences a stream handle, so
// anything else would crash it. A readable address that is not a stream is still the host's
// contract (docs/spec.md §2.2).
std::string stream_handle_problem(uint64_t v) {
  if (v == 1 || v == 2) return {};
  if (v < 0x10000 || v >= (1ull << 48)) return "not a user-space address";
  if (v % 8 != 0) return "not 8-byte aligned";
  uint64_t probe = 0;
  iovec local{&probe, sizeof probe};
  iovec remote{reinterpret_cast<void*>(static_cast<uintptr_t>(v)), sizeof probe};
  const ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
  if (got < 0 && errno == EFAULT) return "not mapped memory";
  return {};  // readable, or the probe is not permitted here (EPERM, ENOSYS): let CUDA judge it
}

ferrum_status new_context(ferrum_context*, const ferrum_new_context_args* a) {
  return plugin::guard(nullptr, "new_context", [&]() -> Status {
    Status s = check_new_context_args(a);
    int32_t count = 0;
    if (s.ok()) s = from_device(device_count(count));
    if (s.ok())
      s = check_new_context(*a, count > 0 ? static_cast<uint64_t>(count) : 0,
                            plugin::format("< %d (the CUDA device count)", count));
    // external_stream (ABI 1.1, docs/spec.md §2.2): the host's cudaStream_t, on the context's device.
    const uint64_t external = s.ok() ? ferrum_new_context_args_external_stream(a) : 0;
    cudaStream_t stream = reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(external));
    if (s.ok() && external) {
      const std::string problem = stream_handle_problem(external);
      if (!problem.empty())
        s = invalid(plugin::format("new_context: argument 'external_stream': expected a live CUDA stream, given "
                                   "0x%llx (%s)",
                                   (unsigned long long)external, problem.c_str()));
    }
#if CUDART_VERSION >= 12080
    if (s.ok() && external) {
      int stream_device = -1;
      const cudaError_t err = cudaStreamGetDevice(stream, &stream_device);
      if (err != cudaSuccess) {
        (void)cudaGetLastError();
        s = invalid(plugin::format("new_context: argument 'external_stream': expected a live CUDA stream, given "
                                   "0x%llx (cudaStreamGetDevice: %s)",
                                   (unsigned long long)external, cudaGetErrorName(err)));
      } else if (static_cast<uint64_t>(stream_device) != a->device_ordinal) {
        s = invalid(plugin::format("new_context: argument 'external_stream': expected a stream of device %llu "
                                   "(device_ordinal), given one of device %d",
                                   (unsigned long long)a->device_ordinal, stream_device));
      }
    }
#endif
    if (!s.ok()) return s;
    if (plugin::dry_run_flag()) return ok_status();
    auto* c = new (std::nothrow) ferrum_context;
    auto* dev = new (std::nothrow) DeviceContext;
    if (!c || !dev) {
      delete c;
      delete dev;
      return {FERRUM_STATUS_OUT_OF_MEMORY, "new_context: out of host memory"};
    }
    s = from_device(create(static_cast<int>(a->device_ordinal), *dev, stream));
    if (!s.ok()) {
      delete dev;
      delete c;
      s.message = "new_context: " + s.message;
      return s;
    }
    // Decode state (docs/spec.md §8.2): device u32[3] = {token, pos, kv}, zero until set_decode_state.
    void* state = nullptr;
    s = from_device(cuda::alloc(static_cast<int>(a->device_ordinal), 3 * sizeof(uint32_t), &state));
    if (s.ok()) s = from_device(memset_async(*dev, state, 3 * sizeof(uint32_t)));
    if (s.ok()) s = from_device(cuda::sync(*dev));
    if (!s.ok()) {
      (void)cuda::free(static_cast<int>(a->device_ordinal), state);
      (void)destroy(*dev);
      delete dev;
      delete c;
      s.message = "new_context: " + s.message;
      return s;
    }
    c->dev_state = static_cast<uint32_t*>(state);
    c->dev = dev;
    c->device = a->device_ordinal;
    c->activation_dtype = a->activation_dtype ? a->activation_dtype : FERRUM_DTYPE_F16;
    *a->context = c;
    return ok_status();
  });
}

ferrum_status context_destroy(ferrum_context*, const ferrum_context_destroy_args* a) {
  return run_release("context_destroy", a, FERRUM_CONTEXT_DESTROY_ARGS_SIZE_V1_0, [](const ferrum_context_destroy_args& a) {
    ferrum_context* c = a.context;
    if (!c) return ok_status();  // NULL-safe
    Status s = release_comm(*c);  // a bounded wait for its collectives, frees the communicator
    release_graph_state(*c);      // ends a capture left open, waits, frees the graphs
    release_attention_state(*c);  // waits, frees scratch and staging tables
    if (c->dev) {
      Status d = from_device(destroy(*c->dev));  // waits for the stream, frees everything
      if (s.ok()) s = d;
    }
    if (c->dev_state) {
      Status f = from_device(cuda::free(static_cast<int>(c->device), c->dev_state));
      if (s.ok()) s = f;
      c->dev_state = nullptr;
    }
    delete c->dev;
    delete c;
    return s;
  });
}

ferrum_status context_info(ferrum_context* ctx, const ferrum_context_info_args* a) {
  return plugin::rules::context_info(ctx, a);
}

ferrum_status sync(ferrum_context* ctx, const ferrum_sync_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_sync_args&, bool dry) -> Status {
    if (dry) return ok_status();
    DeviceGuard g;
    Status s = enter_device(g, c);
    if (!s.ok()) return s;
    return c.comm_joined ? sync_with_comm(c) : from_device(cuda::sync(*c.dev));
  });
}

// Buffers are device memory, never host-mapped: every readback already synchronises.
ferrum_status sync_before_host_readback(ferrum_context* ctx, const ferrum_sync_before_host_readback_args* a) {
  return nothing_to_do(ctx, a);
}

ferrum_status activation_elem_size_bytes(ferrum_context* ctx, const ferrum_activation_elem_size_bytes_args* a) {
  return plugin::rules::activation_elem_size_bytes(ctx, a);
}

ferrum_status supports_device_ordinal_scope(ferrum_context*, const ferrum_supports_device_ordinal_scope_args* a) {
  return answer_device_ordinal_scope(a, 1);  // contexts on any ordinal < device_count
}

// ---- timer ----------------------------------------------------------------------------------
Status check_timer(const char* op, const ferrum_context& c, const ferrum_timer* t) {
  Status s = check_timer_given(op, t);
  if (!s.ok()) return s;
  if (static_cast<uint64_t>(t->t.device) != c.device)
    return invalid(plugin::format("%s: argument 'timer': expected a timer of device %llu (the context's), given one of device %d",
                                  op, (unsigned long long)c.device, t->t.device));
  return ok_status();
}

ferrum_status make_timer(ferrum_context* ctx, const ferrum_make_timer_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_make_timer_args& a, bool dry) -> Status {
    if (dry) return ok_status();
    auto* t = new (std::nothrow) ferrum_timer;
    if (!t) return {FERRUM_STATUS_OUT_OF_MEMORY, "make_timer: out of host memory"};
    DeviceGuard g;
    Status s = enter_device(g, c);
    if (s.ok()) s = from_device(create_timer(*c.dev, t->t));
    if (!s.ok()) {
      delete t;
      return s;
    }
    *a.timer = t;
    return ok_status();
  });
}

ferrum_status timer_release(ferrum_context*, const ferrum_timer_release_args* a) {
  return run_release("timer_release", a, FERRUM_TIMER_RELEASE_ARGS_SIZE_V1_0, [](const ferrum_timer_release_args& a) {
    if (!a.timer) return ok_status();  // NULL-safe
    Status s = from_device(destroy_timer(a.timer->t));
    delete a.timer;
    return s;
  });
}

ferrum_status record_start(ferrum_context* ctx, const ferrum_record_start_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_record_start_args& a, bool dry) -> Status {
    Status s = check_timer("record_start", c, a.timer);
    if (!s.ok() || dry) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    return s.ok() ? from_device(cuda::record_start(*c.dev, a.timer->t)) : s;
  });
}

ferrum_status record_end(ferrum_context* ctx, const ferrum_record_end_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_record_end_args& a, bool dry) -> Status {
    Status s = check_timer("record_end", c, a.timer);
    if (s.ok()) s = check_timer_started(a.timer->t.has_start);
    if (!s.ok() || dry) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    return s.ok() ? from_device(cuda::record_end(*c.dev, a.timer->t)) : s;
  });
}

ferrum_status elapsed_ms(ferrum_context* ctx, const ferrum_elapsed_ms_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_elapsed_ms_args& a, bool dry) -> Status {
    Status s = check_timer("elapsed_ms", c, a.timer);
    if (s.ok()) s = check_timer_marks(a.timer->t.has_start, a.timer->t.has_end);
    if (!s.ok() || dry) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    double ms = 0.0;
    if (s.ok()) s = from_device(cuda::elapsed_ms(a.timer->t, ms));
    if (s.ok()) *a.ms = ms;
    return s;
  });
}

// query_attribute (ABI 1.1), by FERRUM_ATTRIBUTE_* value: contexts on any ordinal; the llama
// batched-decode answer is the one the facade derives for the NULL flag slot below (this plugin
// fills all four batched per-cache slots); the paged flags as in glue/paged_attention.cpp.
ferrum_status query_attribute(ferrum_context* ctx, const ferrum_query_attribute_args* a) {
  static constexpr uint64_t kAnswers[FERRUM_ATTRIBUTE_COUNT_V1_1 + 1] = {
      0, /* DEVICE_ORDINAL_SCOPE */ 1, /* LLAMA_FAMILY_BATCHED_DECODE */ 1,
      /* PAGED_KV */ 1, /* VARLEN_QKV */ 1, /* VLLM_PAGED_ATTN */ 1};
  return plugin::rules::answer_attribute(ctx, a, kAnswers);
}

}  // namespace

// supports_llama_family_batched_decode stays NULL: the facade derives it from the slots. The
// paged-family flags live with that family (glue/paged_attention.cpp).
constexpr std::nullptr_t supports_llama_family_batched_decode = nullptr;

const ferrum_context_table kContextTable = {sizeof(ferrum_context_table), FERRUM_CONTEXT_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cuda::glue
