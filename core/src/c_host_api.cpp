// The host C API (ferrum/ferrum_host.h) over the C++ facade: every function forwards to
// ferrum::Backend / Context / Buffer / the loader and turns what they throw into a status and
// this thread's last error. Nothing here checks an op's arguments: ferrum_host_call dispatches
// the op id to the facade's own call path (Context::invoke: generated checks, the
// forward-compatibility gate, slot or facade default), so the C and C++ APIs refuse exactly the
// same calls with the same messages.
#include <algorithm>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <ferrum/backend.hpp>
#include <ferrum/ferrum_host.h>
#include <ferrum/loader.hpp>

#include "invoke.hpp"

struct ferrum_host_backend {
  ferrum::Backend backend;
  std::string abi_version;  // storage for ferrum_host_backend_info::abi_version
};

struct ferrum_host_context {
  ferrum::Context context;
};

struct ferrum_host_buffer {
  ferrum::Buffer buffer;
};

struct ferrum_host_candidates {
  std::vector<ferrum::PluginCandidate> list;
};

namespace {

struct LastError {
  ferrum_status status = FERRUM_STATUS_OK;
  std::string message;
};
thread_local LastError t_error;

// Stores a failure as this thread's last error, "<function>: <what()>", and returns its
// status. Never throws: without memory for the message, the message is cleared and the status
// still tells.
template <class What>
ferrum_status fail_with(ferrum_status status, const char* function, What&& what) noexcept {
  t_error.status = status;
  try {
    t_error.message = std::string(function) + ": " + what();
  } catch (...) {
    t_error.message.clear();
  }
  return status;
}

ferrum_status fail(ferrum_status status, const char* function, const char* what) noexcept {
  return fail_with(status, function, [&] { return std::string(what); });
}

// Runs `body` (returns void), mapping every exception to a status: nothing crosses the C ABI.
template <class F>
ferrum_status guarded(const char* function, F&& body) noexcept {
  try {
    body();
    return FERRUM_STATUS_OK;
  } catch (const ferrum::Error& e) {
    return fail(static_cast<ferrum_status>(e.code()), function, e.what());
  } catch (const std::bad_alloc&) {
    return fail(FERRUM_STATUS_OUT_OF_MEMORY, function, "out of host memory");
  } catch (const std::exception& e) {
    return fail(FERRUM_STATUS_INTERNAL, function, e.what());
  } catch (...) {
    return fail(FERRUM_STATUS_INTERNAL, function, "unknown exception");
  }
}

ferrum_status null_arg(const char* function, const char* arg, const char* expected) noexcept {
  return fail_with(FERRUM_STATUS_INVALID_ARGUMENT, function, [&] {
    return std::string("argument '") + arg + "': expected " + expected + ", given NULL";
  });
}

ferrum_status bad_struct_size(const char* function, const char* arg, uint64_t expected,
                              uint64_t given) noexcept {
  return fail_with(FERRUM_STATUS_INVALID_ARGUMENT, function, [&] {
    return std::string("argument '") + arg + "': struct_size: expected at least " +
           std::to_string(expected) + ", given " + std::to_string(given);
  });
}

// One op through the facade's call path. A struct shorter than this build's (a caller built
// with older headers) is copied into a full one whose missing fields are zero, the registry
// default of every grown field (tests/capi checks that each `default=` in ops.txt is 0), so the
// checks and the gate never read past the caller's struct; struct_size stays the caller's.
template <class Args>
void invoke(ferrum::Context& c, const Args& a) {
  if constexpr (std::is_same_v<Args, ferrum_supports_device_ordinal_scope_args>) {
    // The one [no ctx] op whose facade default lives in Backend, not in Context::invoke: the
    // generated checks, then the slot, else the default 0 (Backend::supports_device_ordinal_scope).
    const ferrum::detail::CallSite site = ferrum::detail::ContextAccess::site(c);
    ferrum::detail::PluginAccessor acc = ferrum::detail::ContextAccess::accessor(c);
    ferrum::common::CheckError err;
    if (ferrum::common::check_args(acc, &a, err) != FERRUM_STATUS_OK)
      ferrum::detail::check(err.status, "supports_device_ordinal_scope", site, err.message.c_str());
    const ferrum_op_fn fn = ferrum::common::find_slot(site.api, FERRUM_OP_SUPPORTS_DEVICE_ORDINAL_SCOPE);
    if (!fn) {
      *a.result = 0;
      return;
    }
    ferrum::detail::check(fn(nullptr, &a), "supports_device_ordinal_scope", site);
  } else {
    ferrum::detail::ContextAccess::invoke(c, a);
  }
}

template <class Args>
void call_typed(ferrum::Context& c, const void* p) {
  const auto* a = static_cast<const Args*>(p);
  uint64_t size = 0;
  std::memcpy(&size, a, sizeof size);
  if (size < sizeof(Args)) {
    Args full{};
    std::memcpy(&full, a, static_cast<size_t>(size < sizeof(uint64_t) ? sizeof(uint64_t) : size));
    invoke(c, full);
  } else {
    invoke(c, *a);
  }
}

using CallFn = void (*)(ferrum::Context&, const void*);

// The call path of each op id (index id - 1), from the registry's X-macro: an op appended to
// the registry comes along without an edit here.
#define FERRUM_HOST_CALL_ENTRY(id, name, family) &call_typed<ferrum_##name##_args>,
constexpr CallFn kCall[] = {FERRUM_OP_LIST(FERRUM_HOST_CALL_ENTRY)};
#undef FERRUM_HOST_CALL_ENTRY
static_assert(sizeof kCall / sizeof kCall[0] == static_cast<size_t>(ferrum::kOpCount),
              "FERRUM_OP_LIST and the facade's op count disagree");


bool known_op(int32_t id) noexcept { return id >= 1 && id <= ferrum::kOpCount; }

ferrum_status bad_op(const char* function, int32_t id) noexcept {
  return fail_with(FERRUM_STATUS_INVALID_ARGUMENT, function, [&] {
    return "argument 'op_id': expected an op id in 1.." + std::to_string(ferrum::kOpCount) +
           " (FERRUM_OP_*), given " + std::to_string(id);
  });
}

}  // namespace

extern "C" {

// ---- errors ------------------------------------------------------------------------------

ferrum_status ferrum_host_last_error_status(void) { return t_error.status; }

const char* ferrum_host_last_error_message(void) { return t_error.message.c_str(); }

const char* ferrum_host_status_name(ferrum_status status) {
  if (status == FERRUM_STATUS_OK) return "ok";
  if (status == FERRUM_STATUS_NOT_REPLAYED) return "not_replayed";
  if (status == FERRUM_HOST_STATUS_LOAD_FAILED || status == FERRUM_HOST_STATUS_CONFIG_ERROR)
    return ferrum::to_string(static_cast<ferrum::ErrorCode>(status));
  if (status >= FERRUM_STATUS_UNSUPPORTED && status <= FERRUM_STATUS_INTERNAL)
    return ferrum::to_string(ferrum::error_code_of(status));
  return "unknown";
}

// ---- ops ---------------------------------------------------------------------------------

int32_t ferrum_host_op_count(void) { return ferrum::kOpCount; }

const char* ferrum_host_op_name(int32_t op_id) {
  const ferrum::common::OpInfo* info = ferrum::common::op_info(op_id);
  return info ? info->name.data() : nullptr;  // the registry's names are string literals
}

// ---- backend -----------------------------------------------------------------------------

ferrum_status ferrum_host_backend_load(const char* spec, ferrum_host_backend** out) {
  static constexpr const char* fn = "ferrum_host_backend_load";
  if (!out) return null_arg(fn, "out", "a place for the backend");
  *out = nullptr;
  return guarded(fn, [&] {
    auto b = std::make_unique<ferrum_host_backend>();
    b->backend = ferrum::Backend::load(spec ? std::string_view(spec) : std::string_view());
    b->abi_version = b->backend.abi_version();
    *out = b.release();
  });
}

void ferrum_host_backend_destroy(ferrum_host_backend* backend) { delete backend; }

ferrum_status ferrum_host_backend_get_info(const ferrum_host_backend* backend,
                                           ferrum_host_backend_info* info) {
  static constexpr const char* fn = "ferrum_host_backend_get_info";
  if (!backend) return null_arg(fn, "backend", "a loaded backend");
  if (!info) return null_arg(fn, "info", "a ferrum_host_backend_info to fill");
  if (info->struct_size < sizeof *info)
    return bad_struct_size(fn, "info", sizeof *info, info->struct_size);
  return guarded(fn, [&] {
    const ferrum::Backend& b = backend->backend;
    const uint64_t devices = b.device_count();
    info->name = b.name().data();  // the plugin table's NUL-terminated strings
    info->version = b.version().data();
    info->abi_version = backend->abi_version.c_str();
    info->build_info = b.build_info().data();
    info->path = b.path().c_str();
    info->device_count = devices;
    info->selected_device = b.selected_device();
  });
}

ferrum_status ferrum_host_backend_supports(const ferrum_host_backend* backend, int32_t op_id,
                                           int32_t* supported) {
  static constexpr const char* fn = "ferrum_host_backend_supports";
  if (!backend) return null_arg(fn, "backend", "a loaded backend");
  if (!supported) return null_arg(fn, "supported", "a place for the answer");
  if (!known_op(op_id)) return bad_op(fn, op_id);
  *supported = backend->backend.supports(static_cast<ferrum::Op>(op_id)) ? 1 : 0;
  return FERRUM_STATUS_OK;
}

const ferrum_plugin_api* ferrum_host_backend_api(const ferrum_host_backend* backend) {
  return backend ? backend->backend.api() : nullptr;
}

// ---- candidates --------------------------------------------------------------------------

ferrum_status ferrum_host_discover(int32_t initialize, ferrum_host_candidates** out) {
  static constexpr const char* fn = "ferrum_host_discover";
  if (!out) return null_arg(fn, "out", "a place for the candidate list");
  *out = nullptr;
  return guarded(fn, [&] {
    auto l = std::make_unique<ferrum_host_candidates>();
    l->list = ferrum::discover_plugins(initialize != 0);
    *out = l.release();
  });
}

void ferrum_host_candidates_destroy(ferrum_host_candidates* list) { delete list; }

uint64_t ferrum_host_candidates_count(const ferrum_host_candidates* list) {
  return list ? list->list.size() : 0;
}

ferrum_status ferrum_host_candidates_get(const ferrum_host_candidates* list, uint64_t index,
                                         ferrum_host_candidate* out) {
  static constexpr const char* fn = "ferrum_host_candidates_get";
  if (!list) return null_arg(fn, "list", "a candidate list");
  if (!out) return null_arg(fn, "out", "a ferrum_host_candidate to fill");
  if (out->struct_size < sizeof *out)
    return bad_struct_size(fn, "out", sizeof *out, out->struct_size);
  if (index >= list->list.size())
    return fail_with(FERRUM_STATUS_INVALID_ARGUMENT, fn, [&] {
      return "argument 'index': expected less than " + std::to_string(list->list.size()) +
             " (the candidate count), given " + std::to_string(index);
    });
  const ferrum::PluginCandidate& c = list->list[static_cast<size_t>(index)];
  out->name = c.name.c_str();
  out->path = c.path.c_str();
  out->stage = ferrum::to_string(c.stage);
  out->reason = c.reason.c_str();
  out->version = c.version.c_str();
  out->usable = c.usable ? 1 : 0;
  out->score = c.score;
  out->abi_major = c.abi_major;
  out->abi_minor = c.abi_minor;
  out->device_count = c.device_count;
  return FERRUM_STATUS_OK;
}

// ---- context -----------------------------------------------------------------------------

ferrum_status ferrum_host_context_create(const ferrum_host_backend* backend, uint64_t device,
                                         int32_t activation_dtype, ferrum_host_context** out) {
  static constexpr const char* fn = "ferrum_host_context_create";
  if (!out) return null_arg(fn, "out", "a place for the context");
  *out = nullptr;
  if (!backend) return null_arg(fn, "backend", "a loaded backend");
  return guarded(fn, [&] {
    auto c = std::make_unique<ferrum_host_context>();
    std::optional<uint64_t> dev;
    if (device != FERRUM_HOST_DEFAULT_DEVICE) dev = device;
    c->context = backend->backend.create_context(dev, static_cast<ferrum::Dtype>(activation_dtype));
    *out = c.release();
  });
}

void ferrum_host_context_destroy(ferrum_host_context* ctx) { delete ctx; }

int32_t ferrum_host_context_activation_dtype(const ferrum_host_context* ctx) {
  return ctx ? static_cast<int32_t>(ctx->context.activation_dtype()) : FERRUM_DTYPE_INVALID;
}

ferrum_status ferrum_host_sync(ferrum_host_context* ctx) {
  static constexpr const char* fn = "ferrum_host_sync";
  if (!ctx) return null_arg(fn, "ctx", "a context");
  return guarded(fn, [&] { ctx->context.sync(); });
}

ferrum_status ferrum_host_call(ferrum_host_context* ctx, int32_t op_id, const void* args) {
  static constexpr const char* fn = "ferrum_host_call";
  if (!ctx) return null_arg(fn, "ctx", "a context");
  if (!known_op(op_id)) return bad_op(fn, op_id);
  if (op_id == FERRUM_OP_NEW_CONTEXT || op_id == FERRUM_OP_CONTEXT_DESTROY)
    return fail_with(FERRUM_STATUS_INVALID_ARGUMENT, fn, [&] {
      return std::string("argument 'op_id': ") + ferrum_host_op_name(op_id) +
             " is not called through ferrum_host_call: use ferrum_host_context_create / "
             "ferrum_host_context_destroy";
    });
  if (!args)
    return fail_with(FERRUM_STATUS_INVALID_ARGUMENT, fn, [&] {
      return "argument 'args': expected a pointer to ferrum_" +
             std::string(ferrum::detail::op_name_of(op_id)) + "_args, given NULL";
    });
  return guarded(fn, [&] { kCall[op_id - 1](ctx->context, args); });
}

ferrum_status ferrum_host_query_support(ferrum_host_context* ctx, int32_t op_id, const void* args,
                                        int32_t* supported, char* reason, size_t reason_cap) {
  static constexpr const char* fn = "ferrum_host_query_support";
  if (!ctx) return null_arg(fn, "ctx", "a context");
  if (!supported) return null_arg(fn, "supported", "a place for the answer");
  if (!known_op(op_id)) return bad_op(fn, op_id);
  if (!reason && reason_cap != 0) return null_arg(fn, "reason", "a buffer of reason_cap bytes");
  if (reason_cap != 0) reason[0] = '\0';
  return guarded(fn, [&] {
    const ferrum::SupportAnswer ans = ctx->context.query_support(static_cast<ferrum::Op>(op_id), args);
    *supported = ans.supported ? 1 : 0;
    if (!ans.supported && reason_cap != 0) {
      const size_t n = std::min(reason_cap - 1, ans.reason.size());
      std::memcpy(reason, ans.reason.data(), n);
      reason[n] = '\0';
    }
  });
}

// ---- buffers -----------------------------------------------------------------------------

ferrum_status ferrum_host_buffer_alloc(ferrum_host_context* ctx, int32_t dtype, uint64_t n,
                                       ferrum_host_buffer** out) {
  static constexpr const char* fn = "ferrum_host_buffer_alloc";
  if (!out) return null_arg(fn, "out", "a place for the buffer");
  *out = nullptr;
  if (!ctx) return null_arg(fn, "ctx", "a context");
  return guarded(fn, [&] {
    auto b = std::make_unique<ferrum_host_buffer>();
    b->buffer = ctx->context.alloc_typed(static_cast<ferrum::Dtype>(dtype), n);
    *out = b.release();
  });
}

ferrum_status ferrum_host_buffer_from_host(ferrum_host_context* ctx, int32_t dtype, const void* data,
                                           uint64_t n, ferrum_host_buffer** out) {
  static constexpr const char* fn = "ferrum_host_buffer_from_host";
  if (!out) return null_arg(fn, "out", "a place for the buffer");
  *out = nullptr;
  if (!ctx) return null_arg(fn, "ctx", "a context");
  return guarded(fn, [&] {
    auto b = std::make_unique<ferrum_host_buffer>();
    b->buffer = ctx->context.from_slice_typed(static_cast<ferrum::Dtype>(dtype), data, n);
    *out = b.release();
  });
}

ferrum_status ferrum_host_buffer_write(ferrum_host_context* ctx, ferrum_host_buffer* buf,
                                       int32_t dtype, const void* data, uint64_t n) {
  static constexpr const char* fn = "ferrum_host_buffer_write";
  if (!ctx) return null_arg(fn, "ctx", "a context");
  if (!buf) return null_arg(fn, "buf", "a buffer");
  return guarded(fn, [&] {
    ctx->context.write_typed(
        {.dst = buf->buffer, .dtype = static_cast<ferrum::Dtype>(dtype), .data = data, .data_len = n});
  });
}

ferrum_status ferrum_host_buffer_read(ferrum_host_context* ctx, const ferrum_host_buffer* buf,
                                      int32_t dtype, void* data, uint64_t n) {
  static constexpr const char* fn = "ferrum_host_buffer_read";
  if (!ctx) return null_arg(fn, "ctx", "a context");
  if (!buf) return null_arg(fn, "buf", "a buffer");
  return guarded(fn, [&] {
    ctx->context.read_typed(
        {.src = buf->buffer, .dtype = static_cast<ferrum::Dtype>(dtype), .len = n, .data = data});
  });
}

ferrum_status ferrum_host_buffer_adopt(ferrum_host_context* ctx, ferrum_buffer* raw,
                                       ferrum_host_buffer** out) {
  static constexpr const char* fn = "ferrum_host_buffer_adopt";
  if (!out) return null_arg(fn, "out", "a place for the buffer");
  *out = nullptr;
  if (!ctx) return null_arg(fn, "ctx", "a context");
  if (!raw) return null_arg(fn, "raw", "a buffer handle returned by an op on ctx's plugin");
  return guarded(fn, [&] {
    auto b = std::make_unique<ferrum_host_buffer>();
    b->buffer = ferrum::Buffer(raw, ctx->context.library(), ctx->context.device());
    *out = b.release();
  });
}

void ferrum_host_buffer_destroy(ferrum_host_buffer* buf) { delete buf; }

ferrum_buffer* ferrum_host_buffer_raw(const ferrum_host_buffer* buf) {
  return buf ? buf->buffer.get() : nullptr;
}

ferrum_status ferrum_host_buffer_info(const ferrum_host_buffer* buf, int32_t* dtype, uint64_t* count) {
  static constexpr const char* fn = "ferrum_host_buffer_info";
  if (!buf) return null_arg(fn, "buf", "a buffer");
  if (!dtype) return null_arg(fn, "dtype", "a place for the dtype");
  if (!count) return null_arg(fn, "count", "a place for the element count");
  *dtype = static_cast<int32_t>(buf->buffer.dtype());
  *count = buf->buffer.count();
  return FERRUM_STATUS_OK;
}

}  // extern "C"
