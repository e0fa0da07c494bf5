// CUDA plugin: the collective family (docs/spec.md §10) over NCCL.
//
// NCCL is loaded on first use (FERRUM_CUDA_NCCL_LIB, else libnccl.so.2 through the loader's search
// path, else the library the build found beside nccl.h) and never unloaded, so the plugin loads on hosts without NCCL; there the family answers
// UNSUPPORTED naming the path tried, and a context without a communicator still acts as a world of
// one rank. One communicator per context, on the context's device; the collectives are enqueued on
// the context's stream (capturable into graphs). Ranks may be contexts of one process (one thread
// each during comm_init) or of several processes; the unique id is NCCL's own 128 bytes, good for
// one world (a world of one rank makes its own, so any id serves it, again and again).
//
// No call waits without bound: the communicator is made non-blocking, and comm_init, every
// enqueue, comm_destroy and `sync` (glue/context.cpp) poll NCCL's asynchronous state for at most
// FERRUM_CUDA_COMM_TIMEOUT_S seconds (default 300). A comm_init that forms no world is
// INVALID_ARGUMENT (the context stays as it was). After that, an NCCL error (a peer that died, a
// network failure) or the bound aborts the communicator; the context keeps its world size and
// answers DEVICE_ERROR for every later collective until comm_destroy. NVLink multicast (NVLS) is off unless the process
// chose otherwise: NCCL_NVLS_ENABLE=0 is set before the first communicator when the variable is unset.
#include <dlfcn.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include <ferrum/common/collective_rules.hpp>

#include "cuda_plugin.hpp"
#include "memory.hpp"

static_assert(sizeof(ncclUniqueId) == FERRUM_COMM_UNIQUE_ID_BYTES, "NCCL's unique id is the ABI's 128 bytes");

namespace ferrum::cuda::glue {
namespace {

// NCCL >= 2.14: non-blocking communicators (ncclConfig_t.blocking), ncclCommFinalize.
constexpr int kMinNcclVersion = 21400;

struct Nccl {
  decltype(&ncclGetVersion) get_version = nullptr;
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRankConfig) init_rank = nullptr;
  decltype(&ncclCommGetAsyncError) async_error = nullptr;
  decltype(&ncclCommFinalize) finalize = nullptr;
  decltype(&ncclCommDestroy) destroy = nullptr;
  decltype(&ncclCommAbort) abort = nullptr;
  decltype(&ncclAllReduce) all_reduce = nullptr;
  decltype(&ncclAllGather) all_gather = nullptr;
  decltype(&ncclBroadcast) broadcast = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
  decltype(&ncclGetLastError) last_error = nullptr;
  int version = 0;
  std::string why;  // empty: loaded
};

template <class F>
bool bind(void* h, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(h, name));
  return fn != nullptr;
}

const Nccl& nccl() {
  static Nccl n;
  static std::once_flag once;
  std::call_once(once, [] {
    setenv("NCCL_NVLS_ENABLE", "0", 0);  // NVLink multicast off unless the process chose (once, before NCCL runs)
    // FERRUM_CUDA_NCCL_LIB alone when set; else the loader's search path, then the library the
    // build found beside nccl.h.
    const char* env = std::getenv("FERRUM_CUDA_NCCL_LIB");
    std::string tried, path;
    void* h = nullptr;
    for (const char* cand : {env && *env ? env : "libnccl.so.2", env && *env ? "" : FERRUM_CUDA_NCCL_BUILD_LIB}) {
      if (!*cand) continue;
      path = cand;
      h = dlopen(cand, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
      if (h) break;
      const char* e = dlerror();
      tried += (tried.empty() ? "" : "; ") + path + ": " + (e ? e : "unknown error");
    }
    if (!h) {
      n.why = "NCCL cannot be loaded (" + tried +
              "): install it (the CUDA toolkit's NCCL, or the nvidia-nccl wheel) or set FERRUM_CUDA_NCCL_LIB";
      return;
    }
    const bool all = bind(h, "ncclGetVersion", n.get_version) && bind(h, "ncclGetUniqueId", n.get_unique_id) &&
                     bind(h, "ncclCommInitRankConfig", n.init_rank) && bind(h, "ncclCommGetAsyncError", n.async_error) &&
                     bind(h, "ncclCommFinalize", n.finalize) && bind(h, "ncclCommDestroy", n.destroy) &&
                     bind(h, "ncclCommAbort", n.abort) && bind(h, "ncclAllReduce", n.all_reduce) &&
                     bind(h, "ncclAllGather", n.all_gather) && bind(h, "ncclBroadcast", n.broadcast) &&
                     bind(h, "ncclGetErrorString", n.error_string) && bind(h, "ncclGetLastError", n.last_error);
    if (!all || n.get_version(&n.version) != ncclSuccess || n.version < kMinNcclVersion)
      n.why = "NCCL (" + path + ") is version " + std::to_string(n.version) + " or lacks a symbol; ferrum needs " +
              std::to_string(kMinNcclVersion) + " or later";
  });
  return n;
}

double timeout_s() {
  const char* env = std::getenv("FERRUM_CUDA_COMM_TIMEOUT_S");
  if (!env || !*env) return 300.0;
  char* end = nullptr;
  const double v = std::strtod(env, &end);
  return (end && *end == '\0' && v > 0.0 && v < 1e9) ? v : 300.0;
}

Status nccl_status(const char* op, ncclResult_t r, ncclComm_t comm) {
  const Nccl& n = nccl();
  const char* last = comm ? n.last_error(comm) : nullptr;
  const std::string msg = std::string(op) + ": NCCL: " + n.error_string(r) + (last && *last ? std::string(" (") + last + ")" : "");
  switch (r) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return invalid(msg);
    case ncclInternalError:
      return {FERRUM_STATUS_INTERNAL, msg};
    default:  // ncclUnhandledCudaError, ncclSystemError, ncclRemoteError
      return {FERRUM_STATUS_DEVICE_ERROR, msg};
  }
}

// The communicator is unusable: abort it (this also ends its kernels still waiting for a peer)
// and keep the world size, so later collectives fail instead of acting as a world of one.
void break_comm(ferrum_context& c, const std::string& why) {
  if (c.nccl_comm) (void)nccl().abort(static_cast<ncclComm_t>(c.nccl_comm));
  c.nccl_comm = nullptr;
  c.comm_broken = why;
}

// Polls a non-blocking communicator until its last call completed: OK, the call's error, or an
// error after `timeout_s()` (the communicator is then aborted).
Status wait_ready(ferrum_context& c, const char* op) {
  const Nccl& n = nccl();
  auto comm = static_cast<ncclComm_t>(c.nccl_comm);
  const auto t0 = std::chrono::steady_clock::now();
  const double bound = timeout_s();
  for (unsigned spins = 0;; ++spins) {
    ncclResult_t st = ncclInProgress;
    const ncclResult_t r = n.async_error(comm, &st);
    if (r != ncclSuccess) st = r;
    if (st == ncclSuccess) return ok_status();
    if (st != ncclInProgress) {
      Status s = nccl_status(op, st, comm);
      break_comm(c, s.message);
      return s;
    }
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > bound) {
      Status s{FERRUM_STATUS_DEVICE_ERROR,
               std::string(op) + ": no answer from the other ranks within " + std::to_string(bound) +
                   " s (FERRUM_CUDA_COMM_TIMEOUT_S): a rank that did not call, died, or holds another id; the communicator is aborted"};
      break_comm(c, s.message);
      return s;
    }
    if (spins > 64) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

// The result of an NCCL call on the context's communicator, waited for when in progress.
Status finish(ferrum_context& c, const char* op, ncclResult_t r) {
  if (r == ncclSuccess) return ok_status();
  if (r == ncclInProgress) return wait_ready(c, op);
  Status s = nccl_status(op, r, static_cast<ncclComm_t>(c.nccl_comm));
  if (s.code == FERRUM_STATUS_DEVICE_ERROR) break_comm(c, s.message);
  return s;
}

// A broken communicator (an earlier NCCL error): every collective says so.
Status check_usable(const ferrum_context& c, const char* op) {
  if (c.comm_broken.empty()) return ok_status();
  return {FERRUM_STATUS_DEVICE_ERROR,
          std::string(op) + ": the communicator was aborted (" + c.comm_broken + "); comm_destroy, then comm_init a new one"};
}

Status nccl_dtype(const char* op, const char* field, int32_t dtype, ncclDataType_t& out) {
  switch (dtype) {
    case FERRUM_DTYPE_F32: out = ncclFloat32; return ok_status();
    case FERRUM_DTYPE_F16: out = ncclFloat16; return ok_status();
    case FERRUM_DTYPE_BF16: out = ncclBfloat16; return ok_status();
    case FERRUM_DTYPE_I32: out = ncclInt32; return ok_status();
    default:
      return invalid(plugin::format("%s: argument '%s': expected F32, F16, BF16 or I32, given dtype %d", op, field, dtype));
  }
}

ferrum_status comm_unique_id(ferrum_context* ctx, const ferrum_comm_unique_id_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_comm_unique_id_args& a, bool dry) -> Status {
    const Nccl& n = nccl();
    if (!n.why.empty()) return unsupported("comm_unique_id: " + n.why);
    if (dry) return ok_status();
    ncclUniqueId id{};
    const ncclResult_t r = n.get_unique_id(&id);
    if (r != ncclSuccess) return nccl_status("comm_unique_id", r, nullptr);
    std::memcpy(a.id, id.internal, sizeof id.internal);
    return ok_status();
  });
}

ferrum_status comm_init(ferrum_context* ctx, const ferrum_comm_init_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_comm_init_args& a, bool dry) -> Status {
    const char* op = "comm_init";
    Status s = check_comm_world(op, a.world_size, a.rank);
    if (!s.ok()) return s;
    if (c.comm_joined)
      return invalid(plugin::format("%s: argument 'ctx': expected a context without a communicator, given one of %u ranks "
                                    "(comm_destroy first)", op, c.comm_world));
    const Nccl& n = nccl();
    if (!n.why.empty()) return unsupported(std::string(op) + ": " + n.why);
    if (dry) return ok_status();
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    // A world of one rank needs nobody's id: a fresh one of its own, so the caller may join with the
    // same id again after comm_destroy (NCCL's id names a bootstrap root that serves one world).
    ncclUniqueId id{};
    if (a.world_size == 1) {
      const ncclResult_t r = n.get_unique_id(&id);
      if (r != ncclSuccess) return nccl_status(op, r, nullptr);
    } else {
      std::memcpy(id.internal, a.unique_id, sizeof id.internal);
    }
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclComm_t comm = nullptr;
    const ncclResult_t r = n.init_rank(&comm, static_cast<int>(a.world_size), id, static_cast<int>(a.rank), &cfg);
    if (r != ncclSuccess && r != ncclInProgress) {
      if (comm) (void)n.abort(comm);
      return nccl_status(op, r, nullptr);
    }
    c.nccl_comm = comm;
    c.comm_broken.clear();
    s = finish(c, op, r);
    if (!s.ok()) {  // aborted: no world was formed, and the context stays usable without one
      if (c.nccl_comm) (void)n.abort(static_cast<ncclComm_t>(c.nccl_comm));
      c.nccl_comm = nullptr;
      c.comm_broken.clear();
      if (s.code == FERRUM_STATUS_INVALID_ARGUMENT) return s;
      return invalid(std::string(op) + ": arguments 'unique_id'/'world_size'/'rank': no world of " +
                     std::to_string(a.world_size) + " ranks was formed (" + s.message +
                     "): every rank must call comm_init with rank 0's id, the same world_size and its own rank");
    }
    c.comm_joined = true;
    c.comm_world = a.world_size;
    c.comm_rank = a.rank;
    return ok_status();
  });
}

ferrum_status world_size(ferrum_context* ctx, const ferrum_world_size_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_world_size_args& a, bool dry) -> Status {
    if (!dry) *a.result = c.comm_world;
    return ok_status();
  });
}

ferrum_status rank(ferrum_context* ctx, const ferrum_rank_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_rank_args& a, bool dry) -> Status {
    if (!dry) *a.result = c.comm_rank;
    return ok_status();
  });
}

ferrum_status all_reduce(ferrum_context* ctx, const ferrum_all_reduce_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_all_reduce_args& a, bool dry) -> Status {
    const char* op = "all_reduce";
    Status s = check_reduce_op(op, a.op);
    if (s.ok()) s = check_devices(op, c, {{"buf", a.buf}});
    ncclDataType_t dt{};
    if (s.ok()) s = nccl_dtype(op, "buf", a.buf->dtype, dt);
    if (s.ok()) s = check_usable(c, op);
    if (!s.ok() || dry || a.len == 0 || !c.comm_joined) return s;  // no communicator: one rank, the data is the result
    const ncclRedOp_t rop = a.op == FERRUM_REDUCE_SUM ? ncclSum : a.op == FERRUM_REDUCE_MAX ? ncclMax : ncclMin;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    return finish(c, op, nccl().all_reduce(a.buf->data, a.buf->data, a.len, dt, rop, static_cast<ncclComm_t>(c.nccl_comm),
                                           c.dev->stream));
  });
}

ferrum_status all_gather(ferrum_context* ctx, const ferrum_all_gather_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_all_gather_args& a, bool dry) -> Status {
    const char* op = "all_gather";
    Status s = check_devices(op, c, {{"local", a.local}, {"global", a.global}});
    ncclDataType_t dt{};
    if (s.ok()) s = nccl_dtype(op, "local", a.local->dtype, dt);
    if (s.ok()) s = check_gather_global(op, c.comm_world, a.local_len, a.global);
    if (s.ok()) s = check_usable(c, op);
    if (!s.ok() || dry || a.local_len == 0) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    // arith-ok: local_len <= local's element count (checked above), whose bytes exist
    const uint64_t bytes = a.local_len * ferrum::dtype_size(a.local->dtype);
    if (!c.comm_joined) return from_device(d2d_async(*c.dev, a.global->data, a.local->data, bytes));
    return finish(c, op, nccl().all_gather(a.local->data, a.global->data, a.local_len, dt,
                                           static_cast<ncclComm_t>(c.nccl_comm), c.dev->stream));
  });
}

ferrum_status broadcast(ferrum_context* ctx, const ferrum_broadcast_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_broadcast_args& a, bool dry) -> Status {
    const char* op = "broadcast";
    Status s = check_src_rank(op, a.src_rank, c.comm_world);
    if (s.ok()) s = check_devices(op, c, {{"buf", a.buf}});
    ncclDataType_t dt{};
    if (s.ok()) s = nccl_dtype(op, "buf", a.buf->dtype, dt);
    if (s.ok()) s = check_usable(c, op);
    if (!s.ok() || dry || a.len == 0 || !c.comm_joined) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    return finish(c, op, nccl().broadcast(a.buf->data, a.buf->data, a.len, dt, static_cast<int>(a.src_rank),
                                          static_cast<ncclComm_t>(c.nccl_comm), c.dev->stream));
  });
}

ferrum_status comm_destroy(ferrum_context* ctx, const ferrum_comm_destroy_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_comm_destroy_args&, bool dry) -> Status {
    if (dry || !c.comm_joined) return ok_status();
    return release_comm(c);
  });
}

}  // namespace

// Finalises (bounded: pending collectives complete or the wait times out and aborts) and frees
// the context's communicator; the context is a world of one rank again. NULL-safe.
Status release_comm(ferrum_context& c) noexcept {
  Status s;
  if (c.nccl_comm) {
    DeviceGuard g;
    s = enter_device(g, c);
    if (s.ok()) s = finish(c, "comm_destroy", nccl().finalize(static_cast<ncclComm_t>(c.nccl_comm)));
    if (c.nccl_comm) {  // finalised (or the device could not be entered): free it
      const ncclResult_t r = s.ok() ? nccl().destroy(static_cast<ncclComm_t>(c.nccl_comm))
                                    : nccl().abort(static_cast<ncclComm_t>(c.nccl_comm));
      if (s.ok() && r != ncclSuccess) s = nccl_status("comm_destroy", r, nullptr);
    }
  }
  c.nccl_comm = nullptr;
  c.comm_broken.clear();
  c.comm_joined = false;
  c.comm_world = 1;
  c.comm_rank = 0;
  return s;
}

// `sync` of a context with a communicator: the stream polled, NCCL's asynchronous error checked
// between polls, bounded by FERRUM_CUDA_COMM_TIMEOUT_S (a collective waiting for a peer that died
// would otherwise keep the stream busy forever). The device must be current.
Status sync_with_comm(ferrum_context& c) noexcept {
  const auto t0 = std::chrono::steady_clock::now();
  const double bound = timeout_s();
  for (unsigned spins = 0;; ++spins) {
    const cudaError_t q = cudaStreamQuery(c.dev->stream);
    if (q == cudaSuccess) return ok_status();
    if (q != cudaErrorNotReady) return from_device(cuda::sync(*c.dev));  // the device layer's message
    if (c.nccl_comm) {
      ncclResult_t st = ncclSuccess;
      const ncclResult_t r = nccl().async_error(static_cast<ncclComm_t>(c.nccl_comm), &st);
      if (r != ncclSuccess) st = r;
      if (st != ncclSuccess && st != ncclInProgress) {
        Status s = nccl_status("sync", st, static_cast<ncclComm_t>(c.nccl_comm));
        break_comm(c, s.message);  // ends the collective kernels still waiting
        (void)cuda::sync(*c.dev);
        return {FERRUM_STATUS_DEVICE_ERROR, s.message};
      }
    }
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > bound) {
      std::string why = "sync: the stream did not finish within " + std::to_string(bound) +
                        " s (FERRUM_CUDA_COMM_TIMEOUT_S) while the context has a communicator: a collective may be waiting "
                        "for a rank that died; the communicator is aborted";
      break_comm(c, why);
      (void)cuda::sync(*c.dev);
      return {FERRUM_STATUS_DEVICE_ERROR, why};
    }
    if (spins > 64) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

const ferrum_collective_table kCollectiveTable = {sizeof(ferrum_collective_table),
                                                  FERRUM_COLLECTIVE_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cuda::glue
