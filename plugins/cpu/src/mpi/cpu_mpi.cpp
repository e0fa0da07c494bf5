// ferrum CPU plugin — the MPI shim (see cpu_mpi.h). Plain MPI-3 calls over MPI_COMM_WORLD
// duplicates; counts above INT_MAX go in INT_MAX-sized pieces.
#include "cpu_mpi.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#define FERRUM_CPU_MPI_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr int kInvalid = 1, kUnsupported = 2, kMpi = 3;
constexpr size_t kIdBytes = 128;
constexpr uint64_t kPiece = static_cast<uint64_t>(INT_MAX);


int fail(char* err, size_t errlen, int code, const char* fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

// An MPI return code as a message.
int mpi_fail(char* err, size_t errlen, const char* what, int rc) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) std::snprintf(text, sizeof text, "error %d", rc);
  return fail(err, errlen, kMpi, "%s failed: %s", what, text);
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace

FERRUM_CPU_MPI_EXPORT uint32_t ferrum_cpu_mpi_version(void) { return FERRUM_CPU_MPI_VERSION; }

FERRUM_CPU_MPI_EXPORT int ferrum_cpu_mpi_init(uint32_t world, uint32_t rank, const uint8_t* id, void** comm,
                                              char* err, size_t errlen) {
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (finalized) return fail(err, errlen, kUnsupported, "MPI was already finalized in this process");
  if (!inited) {
    int provided = 0;
    const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) return mpi_fail(err, errlen, "MPI_Init_thread", rc);
    std::atexit(finalize_at_exit);  // the shim is never unloaded (RTLD_NODELETE)
  }
  int size = 0, me = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  // Every rank learns whether any rank disagrees before any returns, so none is left waiting.
  int bad = 0;
  if (static_cast<uint64_t>(size) != world) bad |= 1;
  if (static_cast<uint64_t>(me) != rank) bad |= 2;
  uint8_t root_id[kIdBytes];
  std::memcpy(root_id, id, kIdBytes);
  int rc = MPI_Bcast(root_id, static_cast<int>(kIdBytes), MPI_BYTE, 0, MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) return mpi_fail(err, errlen, "MPI_Bcast (unique id)", rc);
  if (std::memcmp(root_id, id, kIdBytes) != 0) bad |= 4;
  int any = 0;
  rc = MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_BOR, MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) return mpi_fail(err, errlen, "MPI_Allreduce (comm_init agreement)", rc);
  if (bad & 1)
    return fail(err, errlen, kInvalid,
                "argument 'world_size': expected the MPI job's size %d (ranks are the processes of one MPI job), given %u",
                size, world);
  if (bad & 2)
    return fail(err, errlen, kInvalid, "argument 'rank': expected this process's MPI rank %d, given %u", me, rank);
  if (bad & 4)
    return fail(err, errlen, kInvalid, "argument 'unique_id': differs from rank 0's id (corrupt or from another job)");
  if (any)
    return fail(err, errlen, kInvalid,
                "argument 'unique_id': another rank's world_size, rank or unique_id disagrees (see that rank's error)");
  MPI_Comm dup = MPI_COMM_NULL;
  rc = MPI_Comm_dup(MPI_COMM_WORLD, &dup);
  if (rc != MPI_SUCCESS) return mpi_fail(err, errlen, "MPI_Comm_dup", rc);
  MPI_Comm* c = new (std::nothrow) MPI_Comm(dup);
  if (!c) {
    MPI_Comm_free(&dup);
    return fail(err, errlen, kMpi, "out of host memory");
  }
  *comm = c;
  return 0;
}

FERRUM_CPU_MPI_EXPORT int ferrum_cpu_mpi_free(void* comm, char* err, size_t errlen) {
  auto* c = static_cast<MPI_Comm*>(comm);
  if (!c) return 0;
  const int rc = MPI_Comm_free(c);
  delete c;
  return rc == MPI_SUCCESS ? 0 : mpi_fail(err, errlen, "MPI_Comm_free", rc);
}

FERRUM_CPU_MPI_EXPORT int ferrum_cpu_mpi_all_reduce_f32(void* comm, float* buf, uint64_t n, int op, char* err,
                                                        size_t errlen) {
  const MPI_Comm c = *static_cast<MPI_Comm*>(comm);
  const MPI_Op mop = op == 1 ? MPI_SUM : op == 2 ? MPI_MAX : MPI_MIN;
  int me = 0;
  MPI_Comm_rank(c, &me);
  for (uint64_t off = 0; off < n; off += kPiece) {
    const int cnt = static_cast<int>(std::min(kPiece, n - off));
    // Reduced on rank 0, then broadcast: every rank ends with rank 0's bits.
    int rc = MPI_Reduce(me == 0 ? MPI_IN_PLACE : buf + off, me == 0 ? buf + off : nullptr, cnt, MPI_FLOAT, mop, 0, c);
    if (rc != MPI_SUCCESS) return mpi_fail(err, errlen, "MPI_Reduce", rc);
    rc = MPI_Bcast(buf + off, cnt, MPI_FLOAT, 0, c);
    if (rc != MPI_SUCCESS) return mpi_fail(err, errlen, "MPI_Bcast", rc);
  }
  return 0;
}

FERRUM_CPU_MPI_EXPORT int ferrum_cpu_mpi_all_gather(void* comm, const void* local, void* global, uint64_t bytes,
                                                    char* err, size_t errlen) {
  const MPI_Comm c = *static_cast<MPI_Comm*>(comm);
  int size = 0;
  MPI_Comm_size(c, &size);
  if (bytes <= kPiece) {
    const int rc = MPI_Allgather(local, static_cast<int>(bytes), MPI_BYTE, global, static_cast<int>(bytes), MPI_BYTE, c);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, errlen, "MPI_Allgather", rc);
  }
  // Larger parts: one broadcast per rank and piece (rank r's part lands at r · bytes).
  auto* g = static_cast<unsigned char*>(global);
  int me = 0;
  MPI_Comm_rank(c, &me);
  std::memmove(g + static_cast<uint64_t>(me) * bytes, local, bytes);
  for (int r = 0; r < size; ++r) {
    for (uint64_t off = 0; off < bytes; off += kPiece) {
      const int rc = MPI_Bcast(g + static_cast<uint64_t>(r) * bytes + off, static_cast<int>(std::min(kPiece, bytes - off)),
                               MPI_BYTE, r, c);
      if (rc != MPI_SUCCESS) return mpi_fail(err, errlen, "MPI_Bcast (all_gather)", rc);
    }
  }
  return 0;
}

FERRUM_CPU_MPI_EXPORT int ferrum_cpu_mpi_broadcast(void* comm, void* buf, uint64_t bytes, uint32_t root, char* err,
                                                   size_t errlen) {
  const MPI_Comm c = *static_cast<MPI_Comm*>(comm);
  auto* b = static_cast<unsigned char*>(buf);
  for (uint64_t off = 0; off < bytes; off += kPiece) {
    const int rc = MPI_Bcast(b + off, static_cast<int>(std::min(kPiece, bytes - off)), MPI_BYTE, static_cast<int>(root), c);
    if (rc != MPI_SUCCESS) return mpi_fail(err, errlen, "MPI_Bcast", rc);
  }
  return 0;
}
