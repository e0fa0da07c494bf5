// Conformance cases: the collective family on one rank (docs/spec.md §10). A context joins a world
// of one rank (the only world one process can check alone); the collectives then leave the data
// as it is (all_reduce, broadcast) or copy it (all_gather), bit for bit, for every activation
// dtype. Worlds of several ranks are tested by the plugins' own multi-process suites (the CPU
// plugin's: tests/collective under mpirun).
#include "../src/case_util.hpp"

#include <vector>

namespace {

using namespace ferrum::conformance;
using namespace ferrum::conformance::util;
using ferrum::Buffer;
using ferrum::ErrorCode;

FERRUM_CONFORMANCE_CASE("comm_init", "one rank: id, join, world_size / rank, collectives keep the data, leave, join again",
                        kActDtypes) {
  const std::vector<uint8_t> id = run.ctx.comm_unique_id();
  if (id.size() != 128) run.fail("comm_unique_id: expected 128 bytes, given " + std::to_string(id.size()));
  run.ctx.comm_init({.unique_id = id.data(), .world_size = 1, .rank = 0});
  if (run.ctx.world_size() != 1 || run.ctx.rank() != 0) run.fail("world_size / rank of a world of one: expected 1 / 0");
  const uint64_t n = 37;
  const std::vector<double> v = run.random(n, -4.0, 4.0);
  for (int32_t op : {FERRUM_REDUCE_SUM, FERRUM_REDUCE_MAX, FERRUM_REDUCE_MIN}) {
    Buffer b = run.upload(v);
    run.ctx.all_reduce(b, n, op);
    run.check_values("all_reduce op " + std::to_string(op) + " on one rank", run.download(b, n), v, 0, run.dtype, 'E');
  }
  Buffer local = run.upload(v), global = run.output(n);
  run.ctx.all_gather(local, global, n);
  run.check("all_gather on one rank", global, v, 0, 'E');
  Buffer b = run.upload(v);
  run.ctx.broadcast(b, n, 0);
  run.check_values("broadcast from rank 0 on one rank", run.download(b, n), v, 0, run.dtype, 'E');
  Buffer empty = run.output(4);
  run.ctx.all_reduce(empty, 0, FERRUM_REDUCE_SUM);  // len 0: no work
  run.check_untouched("all_reduce len 0 writes nothing", empty, 0, 4);
  run.ctx.comm_destroy();
  run.ctx.comm_destroy();  // none left: does nothing
  if (run.ctx.world_size() != 1 || run.ctx.rank() != 0) run.fail("world_size / rank after comm_destroy: expected 1 / 0");
  run.ctx.comm_init({.unique_id = id.data(), .world_size = 1, .rank = 0});
  run.ctx.comm_destroy();
}

FERRUM_CONFORMANCE_CASE("comm_init", "errors: world_size 0, rank >= world_size, op 9, src_rank beyond the world",
                        kF32Only) {
  const std::vector<uint8_t> id = run.ctx.comm_unique_id();
  run.expect_error("world_size 0", ErrorCode::invalid_argument,
                   [&] { run.ctx.comm_init({.unique_id = id.data(), .world_size = 0, .rank = 0}); }, "world_size");
  run.expect_error("rank 1 of 1", ErrorCode::invalid_argument,
                   [&] { run.ctx.comm_init({.unique_id = id.data(), .world_size = 1, .rank = 1}); }, "rank");
  const std::vector<double> v = run.random(8);
  Buffer b = run.upload(v);
  run.expect_error("all_reduce op 9", ErrorCode::invalid_argument, [&] { run.ctx.all_reduce(b, 8, 9); }, "op");
  run.expect_error("broadcast src_rank 1 of 1", ErrorCode::invalid_argument, [&] { run.ctx.broadcast(b, 8, 1); },
                   "src_rank");
  run.check_values("data untouched by the refused calls", run.download(b, 8), v, 0, run.dtype, 'E');
}

}  // namespace
