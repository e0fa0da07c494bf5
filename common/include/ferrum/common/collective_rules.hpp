// The argument rules of the collective family (docs/spec.md §10) that every plugin of the project
// applies the same way, whatever moves the data (MPI on the CPU, NCCL on CUDA): same checks, same
// messages. The generated per-op checks (dtype classes, buffer lengths, distinct handles) run
// before these.
#pragma once

#include <cstdint>

#include <ferrum/common/op_rules.hpp>

namespace ferrum::plugin::rules {

// comm_init: 1 <= world_size <= 2^31 - 1 (the transports count ranks in an int) and rank < world_size.
inline Status check_comm_world(const char* op, uint32_t world, uint32_t rank) {
  if (world == 0 || world > 0x7FFFFFFFu || rank >= world)
    return invalid(format("%s: arguments 'world_size'/'rank': expected 1 <= world_size <= 2^31 - 1 and rank < "
                          "world_size, given %u/%u", op, world, rank));
  return ok_status();
}

// all_reduce: SUM, MAX or MIN.
inline Status check_reduce_op(const char* op, int32_t reduce) {
  if (reduce < FERRUM_REDUCE_SUM || reduce > FERRUM_REDUCE_MIN)
    return invalid(format("%s: argument 'op': expected SUM (1), MAX (2) or MIN (3), given %d", op, reduce));
  return ok_status();
}

// broadcast: a rank of the context's world (1 without a communicator).
inline Status check_src_rank(const char* op, uint32_t src, uint32_t world) {
  if (src >= world) return invalid(format("%s: argument 'src_rank': expected < world_size = %u, given %u", op, world, src));
  return ok_status();
}

// all_gather: global holds world_size · local_len elements (its length depends on the communicator,
// so the generated checks cannot see it).
inline Status check_gather_global(const char* op, uint32_t world, uint64_t local_len, const ferrum_buffer* global) {
  uint64_t total = 0;
  Status s = check_product(op, {{"world_size", world}, {"local_len", local_len}}, total);
  if (s.ok()) s = check_min_count(op, "global", global, total);
  return s;
}

}  // namespace ferrum::plugin::rules
