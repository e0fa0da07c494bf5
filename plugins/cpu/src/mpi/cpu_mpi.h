/* ferrum CPU plugin — the MPI shim's interface (docs/spec.md §10).
 *
 * libferrum_cpu_mpi.so is the only part of the CPU plugin linked against MPI (Debian's Open MPI):
 * the plugin dlopens it (RTLD_GLOBAL, so Open MPI's own components resolve its symbols) the first
 * time a context joins a world of more than one rank, so libferrum-cpu.so loads on machines without
 * MPI. Ranks are processes of one MPI job (mpirun / srun), on one host or several; a communicator
 * is a duplicate of MPI_COMM_WORLD. Every function returns 0 on success, else fills `err` (a
 * NUL-terminated message of at most errlen bytes) and returns a non-zero code: 1 invalid argument,
 * 2 unsupported, 3 MPI error. Counts are elements; calls are blocking and run on the calling thread.
 */
#ifndef FERRUM_CPU_MPI_H
#define FERRUM_CPU_MPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRUM_CPU_MPI_VERSION 1

/* Version of this interface (FERRUM_CPU_MPI_VERSION); the plugin refuses another. */
typedef uint32_t (*ferrum_cpu_mpi_version_fn)(void);
/* Initialises MPI once per process (MPI_THREAD_SERIALIZED), checks that the job has `world` ranks
 * and that this process is `rank`, that every rank passed rank 0's 128-byte id, and returns a
 * communicator in *comm. */
typedef int (*ferrum_cpu_mpi_init_fn)(uint32_t world, uint32_t rank, const uint8_t* id, void** comm, char* err,
                                     size_t errlen);
typedef int (*ferrum_cpu_mpi_free_fn)(void* comm, char* err, size_t errlen);
/* buf[n] f32 reduced in place (op: 1 sum, 2 max, 3 min): reduced on rank 0, then broadcast, so
 * every rank holds identical bits. */
typedef int (*ferrum_cpu_mpi_all_reduce_f32_fn)(void* comm, float* buf, uint64_t n, int op, char* err, size_t errlen);
/* global[world · bytes] = every rank's local[bytes], rank 0 first. */
typedef int (*ferrum_cpu_mpi_all_gather_fn)(void* comm, const void* local, void* global, uint64_t bytes, char* err,
                                           size_t errlen);
/* buf[bytes] of rank `root` on every rank. */
typedef int (*ferrum_cpu_mpi_broadcast_fn)(void* comm, void* buf, uint64_t bytes, uint32_t root, char* err,
                                          size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* FERRUM_CPU_MPI_H */
