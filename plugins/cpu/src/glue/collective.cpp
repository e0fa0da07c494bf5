// CPU plugin: the collective family (docs/spec.md §10) over MPI, between the processes of one MPI
// job (mpirun / srun; one host or several, any transport Open MPI picks: shared memory, TCP, ...).
//
// A world of one rank needs no MPI. For more, the plugin dlopens its MPI shim (src/mpi/cpu_mpi.h:
// libferrum_cpu_mpi.so in the cpu-mpi/ folder beside this plugin, or FERRUM_CPU_MPI_LIB), the only
// part linked against libmpi — so this plugin loads on machines without MPI, and says why when a
// world of several ranks cannot be made. One rank per process: several contexts of one process
// cannot be ranks of one world here (the CUDA plugin's NCCL can). F32 / F16 / BF16 buffers;
// F16 / BF16 reduce in f32 and round once. Every call is blocking, like every CPU op. A peer that
// dies: the MPI job is aborted by its launcher (Open MPI's default), so no call waits forever.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>

#include <ferrum/common/collective_rules.hpp>

#include "glue.hpp"
#include "kernels/scratch.hpp"
#include "mpi/cpu_mpi.h"


namespace ferrum::cpu {
namespace {

// The first bytes of every id this plugin makes (the rest is random).
constexpr char kIdMagic[16] = "ferrum-cpu-mpi1";

struct Shim {
  ferrum_cpu_mpi_init_fn init = nullptr;
  ferrum_cpu_mpi_free_fn free = nullptr;
  ferrum_cpu_mpi_all_reduce_f32_fn all_reduce_f32 = nullptr;
  ferrum_cpu_mpi_all_gather_fn all_gather = nullptr;
  ferrum_cpu_mpi_broadcast_fn broadcast = nullptr;
  std::string why;  // empty: loaded
};

std::string own_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&own_dir), &info) == 0 || !info.dli_fname) return ".";
  std::string p = info.dli_fname;
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

// Loaded once per process and never unloaded (it may have initialised MPI, whose exit handler it
// registered).
const Shim& shim() {
  static Shim s;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("FERRUM_CPU_MPI_LIB");
    const std::string path = env && *env ? std::string(env) : own_dir() + "/cpu-mpi/libferrum_cpu_mpi.so";
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE);
    if (!h) {
      const char* e = dlerror();
      s.why = "the MPI shim " + path + " cannot be loaded (" + (e ? e : "unknown error") +
              "): build ferrum with MPI (Debian: libopenmpi-dev) or set FERRUM_CPU_MPI_LIB";
      return;
    }
    auto version = reinterpret_cast<ferrum_cpu_mpi_version_fn>(dlsym(h, "ferrum_cpu_mpi_version"));
    s.init = reinterpret_cast<ferrum_cpu_mpi_init_fn>(dlsym(h, "ferrum_cpu_mpi_init"));
    s.free = reinterpret_cast<ferrum_cpu_mpi_free_fn>(dlsym(h, "ferrum_cpu_mpi_free"));
    s.all_reduce_f32 = reinterpret_cast<ferrum_cpu_mpi_all_reduce_f32_fn>(dlsym(h, "ferrum_cpu_mpi_all_reduce_f32"));
    s.all_gather = reinterpret_cast<ferrum_cpu_mpi_all_gather_fn>(dlsym(h, "ferrum_cpu_mpi_all_gather"));
    s.broadcast = reinterpret_cast<ferrum_cpu_mpi_broadcast_fn>(dlsym(h, "ferrum_cpu_mpi_broadcast"));
    if (!version || !s.init || !s.free || !s.all_reduce_f32 || !s.all_gather || !s.broadcast ||
        version() != FERRUM_CPU_MPI_VERSION)
      s.why = "the MPI shim " + path + " is not interface version " + std::to_string(FERRUM_CPU_MPI_VERSION);
  });
  return s;
}

// A shim failure as a Status (codes of cpu_mpi.h), prefixed with the op.
Status shim_status(const char* op, int rc, const char* err) {
  const std::string msg = std::string(op) + ": " + err;
  if (rc == 1) return invalid(msg);
  if (rc == 2) return unsupported(msg);
  return {FERRUM_STATUS_INTERNAL, msg};
}

ferrum_status comm_unique_id(ferrum_context* ctx, const ferrum_comm_unique_id_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_comm_unique_id_args& a, bool dry) -> Status {
    if (dry) return ok_status();
    std::memcpy(a.id, kIdMagic, sizeof kIdMagic);
    std::random_device rd;
    for (size_t i = sizeof kIdMagic; i < FERRUM_COMM_UNIQUE_ID_BYTES; ++i) a.id[i] = static_cast<uint8_t>(rd());
    return ok_status();
  });
}

ferrum_status comm_init(ferrum_context* ctx, const ferrum_comm_init_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_comm_init_args& a, bool dry) -> Status {
    const char* op = "comm_init";
    Status s = plugin::rules::check_comm_world(op, a.world_size, a.rank);
    if (s.ok() && c.comm.joined)
      s = invalid(plugin::format("%s: argument 'ctx': expected a context without a communicator, given one of %u ranks "
                                 "(comm_destroy first)", op, c.comm.world));
    if (s.ok() && a.world_size > 1 && std::memcmp(a.unique_id, kIdMagic, sizeof kIdMagic) != 0)
      s = invalid(plugin::format("%s: argument 'unique_id': expected an id made by this plugin's comm_unique_id, "
                                 "given bytes that do not start with its mark", op));
    const Shim* sh = nullptr;
    if (s.ok() && a.world_size > 1) {
      sh = &shim();
      if (!sh->why.empty()) s = unsupported(std::string(op) + ": world_size " + std::to_string(a.world_size) + ": " + sh->why);
    }
    if (!s.ok() || dry) return s;
    void* comm = nullptr;
    if (a.world_size > 1) {
      char err[512] = {};
      const int rc = sh->init(a.world_size, a.rank, a.unique_id, &comm, err, sizeof err);
      if (rc != 0) return shim_status(op, rc, err);
    }
    c.comm.joined = true;
    c.comm.world = a.world_size;
    c.comm.rank = a.rank;
    c.comm.mpi = comm;
    return ok_status();
  });
}

ferrum_status comm_destroy(ferrum_context* ctx, const ferrum_comm_destroy_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_comm_destroy_args&, bool dry) -> Status {
    if (dry || !c.comm.joined) return ok_status();
    void* comm = c.comm.mpi;
    c.comm.joined = false;
    c.comm.world = 1;
    c.comm.rank = 0;
    c.comm.mpi = nullptr;
    if (comm) {
      char err[512] = {};
      const int rc = shim().free(comm, err, sizeof err);
      if (rc != 0) return shim_status("comm_destroy", rc, err);
    }
    return ok_status();
  });
}

ferrum_status world_size(ferrum_context* ctx, const ferrum_world_size_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_world_size_args& a, bool dry) -> Status {
    if (!dry) *a.result = c.comm.world;
    return ok_status();
  });
}

ferrum_status rank(ferrum_context* ctx, const ferrum_rank_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_rank_args& a, bool dry) -> Status {
    if (!dry) *a.result = c.comm.rank;
    return ok_status();
  });
}

ferrum_status all_reduce(ferrum_context* ctx, const ferrum_all_reduce_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_all_reduce_args& a, bool dry) -> Status {
    const char* op = "all_reduce";
    Status s = plugin::rules::check_reduce_op(op, a.op);
    // (buf's dtype class and length: the generated checks, before this body)
    if (!s.ok() || a.len == 0 || dry || !c.comm.mpi) return s;  // one rank: the data is the result
    char err[512] = {};
    if (a.buf->dtype == FERRUM_DTYPE_F32) {
      const int rc = shim().all_reduce_f32(c.comm.mpi, data_of<float>(a.buf), a.len, a.op, err, sizeof err);
      return rc != 0 ? shim_status(op, rc, err) : ok_status();
    }
    // F16 / BF16: reduced in f32 (a per-thread scratch, kept between calls), rounded once.
    thread_local Scratch wide;
    float* w = wide.get(a.len);
    s = convert_elements(a.buf->data, a.buf->dtype, w, FERRUM_DTYPE_F32, a.len);
    if (!s.ok()) return s;
    const int rc = shim().all_reduce_f32(c.comm.mpi, w, a.len, a.op, err, sizeof err);
    if (rc != 0) return shim_status(op, rc, err);
    return convert_elements(w, FERRUM_DTYPE_F32, a.buf->data, a.buf->dtype, a.len);
  });
}

ferrum_status all_gather(ferrum_context* ctx, const ferrum_all_gather_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_all_gather_args& a, bool dry) -> Status {
    const char* op = "all_gather";
    if (a.local_len == 0) return ok_status();
    Status s = plugin::rules::check_gather_global(op, c.comm.world, a.local_len, a.global);
    if (!s.ok() || dry) return s;
    // arith-ok: local_len <= local's element count (checked above), whose bytes exist
    const uint64_t bytes = a.local_len * ferrum::dtype_size(a.local->dtype);
    if (!c.comm.mpi) {
      std::memmove(a.global->data, a.local->data, bytes);
      return ok_status();
    }
    char err[512] = {};
    const int rc = shim().all_gather(c.comm.mpi, a.local->data, a.global->data, bytes, err, sizeof err);
    return rc != 0 ? shim_status(op, rc, err) : ok_status();
  });
}

ferrum_status broadcast(ferrum_context* ctx, const ferrum_broadcast_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_broadcast_args& a, bool dry) -> Status {
    const char* op = "broadcast";
    Status s = plugin::rules::check_src_rank(op, a.src_rank, c.comm.world);
    // (buf's dtype class and length: the generated checks)
    if (!s.ok() || a.len == 0 || dry || !c.comm.mpi) return s;
    char err[512] = {};
    // arith-ok: len <= buf's element count (checked above), whose bytes exist
    const uint64_t bytes = a.len * ferrum::dtype_size(a.buf->dtype);
    const int rc = shim().broadcast(c.comm.mpi, a.buf->data, bytes, a.src_rank, err, sizeof err);
    return rc != 0 ? shim_status(op, rc, err) : ok_status();
  });
}

}  // namespace

const ferrum_collective_table kCollectiveTable = {sizeof(ferrum_collective_table),
                                                  FERRUM_COLLECTIVE_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cpu

// A context destroyed with its communicator frees it (no error path: the context is going away).
ferrum_context::Comm::~Comm() {
  if (!mpi) return;
  char err[512] = {};
  (void)ferrum::cpu::shim().free(mpi, err, sizeof err);
}
