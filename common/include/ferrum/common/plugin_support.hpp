// Shared boundary machinery of the project's own C++ plugins (CPU, CUDA): the buffer handle,
// error details per context and per thread, host logging, and `run_op`, which turns every op
// into "generic checks -> op checks -> (dry run stops here) -> enqueue" behind a catch-all.
//
// Vendors do not need this: they build against abi/ alone (see examples/c_plugin).
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <ferrum/common/checks_gen.hpp>
#include <ferrum/common/dtype.hpp>
#include <ferrum/common/handle_table.hpp>
#include <ferrum/common/op_info_gen.hpp>
#include <ferrum/ferrum_plugin.h>

// The buffer handle of the project's plugins: host memory on CPU, device memory on CUDA.
// Handles are views in the plugin's buffer_table() (handle_table.hpp), so a released, foreign or
// garbage handle is recognised without reading freed memory; `magic` is kept for debuggers.
struct ferrum_buffer {
  static constexpr uint32_t kLive = 0x46425546u;  // "FUBF"
  static constexpr uint32_t kDead = 0xDEADBEEFu;
  uint32_t magic = kLive;
  int32_t dtype = FERRUM_DTYPE_INVALID;
  uint64_t count = 0;
  void* data = nullptr;
  int device = 0;
  // wrap_external (ABI 1.1): the memory belongs to the host; buffer_release frees nothing and
  // calls release_fn(release_user_data) once instead.
  bool external = false;
  ferrum_release_fn release_fn = nullptr;
  void* release_user_data = nullptr;
  uint64_t bytes() const { return count * ferrum::dtype_size(dtype); }
};

// A family table of the project's plugins is filled from the generated slot list, its slot
// functions named after their ops:
//   const ferrum_dense_table kDenseTable = {sizeof(ferrum_dense_table), FERRUM_DENSE_SLOTS(FERRUM_SLOT_FN)};
// An op the plugin does not implement is a null constant of that name in the same namespace,
//   constexpr std::nullptr_t supports_llama_family_batched_decode = nullptr;  // NULL slot
// so the table still names every slot in order and a newly appended op is a compile error
// until the plugin implements it or says it does not (docs/plugin-guide.md §1).
#define FERRUM_SLOT_FN(op) op,

namespace ferrum::plugin {

// Every plugin's `struct ferrum_context` derives from this.
struct ContextBase {
  std::string last_error;
};

// A status with its detail message; the currency of the plugins' internal layers.
struct Status {
  ferrum_status code = FERRUM_STATUS_OK;
  std::string message;
  bool ok() const { return code == FERRUM_STATUS_OK; }
};
inline Status ok_status() { return {}; }
inline Status invalid(std::string msg) { return {FERRUM_STATUS_INVALID_ARGUMENT, std::move(msg)}; }
inline Status unsupported(std::string msg) { return {FERRUM_STATUS_UNSUPPORTED, std::move(msg)}; }

// printf-style formatting into a std::string (messages only; never on a success path).
inline std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

// ---- host info and logging ---------------------------------------------------------------
inline const ferrum_host_info*& host_info() {
  static const ferrum_host_info* info = nullptr;
  return info;
}

inline void log(int32_t level, const std::string& msg) noexcept {
  const ferrum_host_info* h = host_info();
  if (!h || h->struct_size < offsetof(ferrum_host_info, log_min_level) + 4 || !h->log) return;
  if (level < h->log_min_level) return;
  h->log(h->log_user_data, level, msg.c_str());
}

// Common part of every entry symbol: stores the host info and checks the major.
inline ferrum_status enter(const ferrum_host_info* host, const ferrum_plugin_api* table,
                           const ferrum_plugin_api** api) noexcept {
  if (!api) return FERRUM_STATUS_INVALID_ARGUMENT;
  *api = nullptr;
  if (!host || host->struct_size < offsetof(ferrum_host_info, abi_minor) + 4)
    return FERRUM_STATUS_INVALID_ARGUMENT;
  if (host->abi_major != FERRUM_ABI_VERSION_MAJOR) return FERRUM_STATUS_ABI_MISMATCH;
  host_info() = host;
  *api = table;
  return FERRUM_STATUS_OK;
}

// ---- error details -----------------------------------------------------------------------
// A failure on a context is kept on it (error_detail(ctx)). A failure without one is kept in
// thread_error() (error_detail(NULL), for a host that takes no reports) and, when the host info
// offers report_error (ABI 1.1 hosts), also reported to the host on the calling thread.
inline std::string& thread_error() {
  thread_local std::string msg;
  return msg;
}

// query_support sets this for the duration of its call: ops then check and stop before enqueueing
// (and report nothing to the host: the reason goes to query_support's caller).
inline bool& dry_run_flag() {
  thread_local bool dry = false;
  return dry;
}

// The host's report_error (ABI 1.1), when its host info is long enough to have one and sets it.
inline void report_to_host(ferrum_status code, const std::string& msg) noexcept {
  const ferrum_host_info* h = host_info();
  if (!h || h->struct_size < offsetof(ferrum_host_info, report_error_user_data) + sizeof(void*) ||
      !h->report_error)
    return;
  h->report_error(h->report_error_user_data, code, msg.c_str());
}

inline ferrum_status record(ContextBase* ctx, ferrum_status code, const std::string& msg) noexcept {
  try {
    if (ctx) {
      ctx->last_error = msg;
    } else {
      thread_error() = msg;
      if (!dry_run_flag() && code != FERRUM_STATUS_OK) report_to_host(code, msg);
    }
    log(code == FERRUM_STATUS_UNSUPPORTED ? FERRUM_LOG_DEBUG : FERRUM_LOG_INFO, msg);
  } catch (...) {
  }
  return code;
}
inline ferrum_status record(ContextBase* ctx, const Status& s) noexcept {
  return s.ok() ? FERRUM_STATUS_OK : record(ctx, s.code, s.message);
}

inline void copy_out(const std::string& msg, char* buf, uint64_t cap, uint64_t* needed) noexcept {
  if (needed) *needed = msg.size() + 1;
  if (!buf || cap == 0) return;
  const uint64_t n = msg.size() < cap - 1 ? msg.size() : cap - 1;  // arith-ok: cap >= 1 (checked above)
  std::memcpy(buf, msg.data(), n);
  buf[n] = '\0';
}

inline ferrum_status error_detail(ContextBase* ctx, char* buf, uint64_t cap, uint64_t* needed) noexcept {
  copy_out(ctx ? ctx->last_error : thread_error(), buf, cap, needed);
  return FERRUM_STATUS_OK;
}

// Runs `fn` (returning Status) with every exception turned into a status.
template <class F>
ferrum_status guard(ContextBase* ctx, const char* what, F&& fn) noexcept {
  try {
    return record(ctx, fn());
  } catch (const std::bad_alloc&) {
    return record(ctx, FERRUM_STATUS_OUT_OF_MEMORY, std::string(what) + ": out of host memory");
  } catch (const std::length_error&) {  // a host container longer than the address space allows
    return record(ctx, FERRUM_STATUS_OUT_OF_MEMORY, std::string(what) + ": out of host memory");
  } catch (const std::exception& e) {
    return record(ctx, FERRUM_STATUS_INTERNAL, std::string(what) + ": internal error: " + e.what());
  } catch (...) {
    return record(ctx, FERRUM_STATUS_INTERNAL, std::string(what) + ": internal error");
  }
}

// ---- buffers -------------------------------------------------------------------------------
// The plugin's table of live buffers (one per plugin library). The table object is never
// destroyed, so a release during static destruction still finds it; its chunks are given back
// when the library is unloaded (or the process exits) with no buffer live.
inline ferrum::common::HandleTable<ferrum_buffer>& buffer_table() {
  using Table = ferrum::common::HandleTable<ferrum_buffer>;
  alignas(Table) static unsigned char storage[sizeof(Table)];
  static Table* table = ::new (static_cast<void*>(storage)) Table;
  return *table;
}
inline const struct BufferTableReaper {
  ~BufferTableReaper() { buffer_table().free_if_unused(); }
} buffer_table_reaper{};

// A live buffer of this plugin (false for NULL, released, foreign and garbage handles; the handle
// itself is never dereferenced to find out).
inline bool live(const ferrum_buffer* b) { return buffer_table().find(b) != nullptr; }

// A new buffer handle (value-initialised fields); nullptr when out of host memory.
inline ferrum_buffer* new_buffer_handle() noexcept { return buffer_table().acquire(); }

// The error for a handle that is not a live buffer of this plugin (the generic checks say the same).
inline Status released_or_foreign(const char* op, const char* field) {
  return invalid(format("%s: argument '%s': expected a live buffer of this plugin, given a released or foreign "
                        "buffer handle", op, field));
}

// Gives the handle's slot back; false when `b` was not a live buffer of this plugin.
inline bool release_buffer_handle(ferrum_buffer* b) noexcept {
  if (!buffer_table().release(b)) return false;
  b->magic = ferrum_buffer::kDead;  // the view stays unused for the next kViews - 1 generations
  return true;
}

// The accessor the generated checks use.
struct BufferAccess {
  bool info(const ferrum_buffer* h, int32_t& dtype, uint64_t& count) const {
    if (!live(h)) return false;
    dtype = h->dtype;
    count = h->count;
    return true;
  }
};

template <class T>
T* data_of(const ferrum_buffer* b) {
  return b ? static_cast<T*>(b->data) : nullptr;
}

// ---- the op runner ---------------------------------------------------------------------------

// Whether this call may run while a graph capture is in flight: the op's G flag, plus the one
// exception of docs/spec.md §8.2 — embedding_lookup with ids_len = 1 in dev-state mode reads the token
// from device memory and is then capturable.
template <class Ctx, class Args>
bool capturable_call(const Ctx& ctx, const Args& args) {
  if constexpr (std::is_same_v<Args, ferrum_embedding_lookup_args>) {
    if constexpr (requires { ctx.dev_state_mode; })
      if (ctx.dev_state_mode && args.ids_len == 1) return true;
  }
  return ferrum::common::kOps[ferrum::common::OpId<Args>::value - 1].capturable();
}

// The one way every context op of the project's plugins is entered ([no ctx] ops use guard):
//   generic generated checks -> impl(ctx, args, dry) -> status recorded on the context.
// impl does its op-specific checks, returns early with ok_status() when `dry` is true, and
// otherwise enqueues the work. Nothing is enqueued when a check fails (docs/spec.md §0.4).
template <class Ctx, class Args, class Impl>
ferrum_status run_op(Ctx* ctx, const Args* args, Impl&& impl) noexcept {
  constexpr int32_t id = ferrum::common::OpId<Args>::value;
  const char* name = ferrum::common::kOps[id - 1].name.data();
  return guard(ctx, name, [&]() -> Status {
    if (!ctx) return invalid(std::string(name) + ": context is NULL");
    BufferAccess acc;
    ferrum::common::CheckError err;
    if (ferrum::common::check_args(acc, args, err) != FERRUM_STATUS_OK)
      return {err.status, err.message};
    // docs/spec.md §0.4: while a graph capture is in flight only capturable (G) ops may run.
    if constexpr (requires { ctx->capturing; })
      if (ctx->capturing && !capturable_call(*ctx, *args))
        return invalid(std::string(name) + ": expected a capturable (G) op while a graph capture is in flight on "
                       "this context, given a non-capturable one (nothing was enqueued; the capture stays open)");
    return impl(*ctx, *args, dry_run_flag());
  });
}

// query_support for a plugin table: runs the slot in dry-run mode.
template <class Ctx>
ferrum_status query_support(const ferrum_plugin_api* api, Ctx* ctx, int32_t op, const void* args,
                            char* reason, uint64_t cap) noexcept {
  try {
    const ferrum::common::OpInfo* info = ferrum::common::op_info(op);
    if (!info) {
      copy_out("query_support: unknown op id " + std::to_string(op), reason, cap, nullptr);
      return FERRUM_STATUS_INVALID_ARGUMENT;
    }
    ferrum_op_fn fn = ferrum::common::find_slot(api, op);
    if (!fn) {
      copy_out(std::string(info->name) + ": not implemented by this plugin", reason, cap, nullptr);
      return FERRUM_STATUS_UNSUPPORTED;
    }
    ContextBase* base = ctx;
    std::string saved = base ? base->last_error : thread_error();
    dry_run_flag() = true;
    const ferrum_status st = fn(ctx, args);  // slots never throw (run_op / guard)
    dry_run_flag() = false;
    std::string& slot = base ? base->last_error : thread_error();
    copy_out(st == FERRUM_STATUS_OK ? std::string() : slot, reason, cap, nullptr);
    slot = std::move(saved);
    return st;
  } catch (...) {
    dry_run_flag() = false;
    copy_out("query_support: out of host memory", reason, cap, nullptr);
    return FERRUM_STATUS_OUT_OF_MEMORY;
  }
}


// The two lifecycle slots every plugin of the project answers alike.
template <class Ctx>
ferrum_status error_detail_slot(Ctx* ctx, char* buf, uint64_t cap, uint64_t* needed) noexcept {
  return error_detail(ctx, buf, cap, needed);
}
template <class Ctx, const ferrum_plugin_api* Api>
ferrum_status query_support_slot(Ctx* ctx, int32_t op, const void* args, char* reason, uint64_t cap) noexcept {
  return query_support(Api, ctx, op, args, reason, cap);
}

// What a plugin's API table holds of its own: identity, lifecycle functions and family tables
// (an absent family is left out: NULL).
struct ApiParts {
  const char* plugin_name = nullptr;
  const char* plugin_version = nullptr;
  const char* build_info = nullptr;
  decltype(ferrum_plugin_api::probe) probe = nullptr;
  decltype(ferrum_plugin_api::init) init = nullptr;
  decltype(ferrum_plugin_api::shutdown) shutdown = nullptr;
  decltype(ferrum_plugin_api::device_count) device_count = nullptr;
  decltype(ferrum_plugin_api::device_props) device_props = nullptr;
  const ferrum_memory_table* memory = nullptr;
  const ferrum_context_table* context = nullptr;
  const ferrum_graph_table* graph = nullptr;
  const ferrum_dense_table* dense = nullptr;
  const ferrum_attention_table* attention = nullptr;
  const ferrum_paged_kv_table* paged_kv = nullptr;
  const ferrum_quant_kv_table* quant_kv = nullptr;
  const ferrum_quant_matmul_table* quant_matmul = nullptr;
  const ferrum_moe_table* moe = nullptr;
  const ferrum_mla_table* mla = nullptr;
  const ferrum_collective_table* collective = nullptr;
  const ferrum_extension* extensions = nullptr;  // since 1.1: head of the extension chain
};

// A plugin's API table: the ABI head and the shared error_detail / query_support slots around
// the plugin's `parts`. `Self` is the table itself:
//   constinit const ferrum_plugin_api kApi = plugin::make_api<ferrum_context, &kApi>({
//       .plugin_name = "cpu", ..., .probe = probe, ..., .memory = &kMemoryTable, ...});
template <class Ctx, const ferrum_plugin_api* Self>
constexpr ferrum_plugin_api make_api(const ApiParts& p) {
  return {sizeof(ferrum_plugin_api), FERRUM_ABI_VERSION_MAJOR, FERRUM_ABI_VERSION_MINOR,
          p.plugin_name, p.plugin_version, p.build_info,
          p.probe, p.init, p.shutdown, p.device_count, p.device_props,
          error_detail_slot<Ctx>, query_support_slot<Ctx, Self>,
          p.memory, p.context, p.graph, p.dense, p.attention, p.paged_kv, p.quant_kv, p.quant_matmul, p.moe, p.mla,
          p.collective, p.extensions};
}

}  // namespace ferrum::plugin
