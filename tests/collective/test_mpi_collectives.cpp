// The CPU plugin's collective family across MPI processes (docs/spec.md §10), through the facade.
// Run under an MPI launcher (CTest: mpirun -np 2); the rank and size come from the launcher's
// environment, and the unique id travels through a file in the directory given as argv[1] — the
// host's own transport, as §10 asks. Exit 0: every check passed on this rank; 1: a check failed;
// 77: not started by an MPI launcher (skipped). With argv[2] = "die", rank 1 exits (code 3) right
// after joining while rank 0 waits in an all_reduce: the launcher must end the job (no hang).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <ferrum/ferrum.hpp>

namespace {

int g_failed = 0;
int g_rank = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "rank %d: FAIL: %s\n", g_rank, what.c_str());
    ++g_failed;
  }
}

// The error code of f(), or 0 when it does not throw.
template <class F>
int32_t code_of(F&& f, std::string* msg = nullptr) {
  try {
    f();
  } catch (const ferrum::Error& e) {
    if (msg) *msg = e.what();
    return static_cast<int32_t>(e.code());
  }
  return 0;
}
constexpr int32_t kInvalid = static_cast<int32_t>(ferrum::ErrorCode::invalid_argument);

int env_int(const char* a, const char* b) {
  const char* v = std::getenv(a);
  if (!v) v = std::getenv(b);
  return v ? std::atoi(v) : -1;
}

// Rank 0 writes the id to dir/name (renamed into place whole); the others wait for it (30 s bound).
std::vector<uint8_t> share_id(const std::filesystem::path& dir, const std::string& name, std::vector<uint8_t> id) {
  const auto path = dir / name;
  if (g_rank == 0) {
    const auto tmp = dir / (name + ".tmp");
    std::ofstream(tmp, std::ios::binary).write(reinterpret_cast<const char*>(id.data()), static_cast<long>(id.size()));
    std::filesystem::rename(tmp, path);
    return id;
  }
  for (int i = 0; i < 3000 && !std::filesystem::exists(path); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::vector<uint8_t> got(128);
  std::ifstream(path, std::ios::binary).read(reinterpret_cast<char*>(got.data()), 128);
  return got;
}

// Values exact in F16 and BF16 and in their sums over a few ranks: small integers and halves.
float value(int rank, uint64_t i) { return static_cast<float>(static_cast<int>((i * 7 + rank * 13) % 64) - 32) * 0.5f; }

}  // namespace

int main(int argc, char** argv) {
  g_rank = env_int("OMPI_COMM_WORLD_RANK", "PMI_RANK");
  const int world = env_int("OMPI_COMM_WORLD_SIZE", "PMI_SIZE");
  if (g_rank < 0 || world < 2 || argc < 2) {
    std::printf("skipped: not started by an MPI launcher with >= 2 ranks and an id directory\n");
    return 77;
  }
  const std::filesystem::path dir = argv[1];
  const uint32_t W = static_cast<uint32_t>(world), R = static_cast<uint32_t>(g_rank);
  try {
    ferrum::Backend be = ferrum::Backend::load("cpu");
    ferrum::Context ctx = be.create_context();
    const std::vector<uint8_t> id = share_id(dir, "id", ctx.comm_unique_id());
    ctx.comm_init({.unique_id = id.data(), .world_size = W, .rank = R});
    check(ctx.world_size() == W && ctx.rank() == R, "world_size / rank after comm_init");
    if (argc > 2 && std::string(argv[2]) == "die") {
      if (g_rank == 1) std::_Exit(3);  // a peer lost mid-job
      std::vector<float> x(1 << 20, 1.0f);
      ferrum::Buffer b = ctx.from_slice(x);
      ctx.all_reduce(b, x.size(), FERRUM_REDUCE_SUM);  // never completes: rank 1 is gone
      std::fprintf(stderr, "rank 0: all_reduce returned without rank 1\n");
      return 1;
    }
    check(code_of([&] { ctx.comm_init({.unique_id = id.data(), .world_size = W, .rank = R}); }) ==
              kInvalid,
          "a second comm_init is INVALID_ARGUMENT");

    ctx.comm_destroy();

    // Per dtype, a context of its own joins a world: all_reduce (every op, a short and a long
    // buffer), all_gather, broadcast, the refused calls, and leaving.
    for (ferrum::Dtype dt : {ferrum::Dtype::f32, ferrum::Dtype::f16, ferrum::Dtype::bf16}) {
      ferrum::Context c = be.create_context({}, dt);
      const std::vector<uint8_t> id2 = share_id(dir, "id-" + std::string(ferrum::to_string(dt)), c.comm_unique_id());
      c.comm_init({.unique_id = id2.data(), .world_size = W, .rank = R});
      for (uint64_t n : {uint64_t{5}, uint64_t{1} << 18}) {
        for (int32_t op : {FERRUM_REDUCE_SUM, FERRUM_REDUCE_MAX, FERRUM_REDUCE_MIN}) {
          std::vector<float> mine(n), want(n);
          for (uint64_t i = 0; i < n; ++i) {
            mine[i] = value(g_rank, i);
            float acc = value(0, i);
            for (int r = 1; r < world; ++r) {
              const float v = value(r, i);
              acc = op == FERRUM_REDUCE_SUM ? acc + v : op == FERRUM_REDUCE_MAX ? std::max(acc, v) : std::min(acc, v);
            }
            want[i] = acc;
          }
          ferrum::Buffer b = c.from_slice(mine);
          c.all_reduce(b, n, op);
          check(c.to_vec(b, n) == want, "all_reduce " + std::string(ferrum::to_string(dt)) + " op " + std::to_string(op) +
                                            " n " + std::to_string(n));
        }
      }
      // all_gather: rank r's part lands at r·n.
      const uint64_t n = 9;
      std::vector<float> part(n), all(n * W);
      for (uint64_t i = 0; i < n; ++i) part[i] = value(g_rank, i);
      for (uint32_t r = 0; r < W; ++r)
        for (uint64_t i = 0; i < n; ++i) all[r * n + i] = value(static_cast<int>(r), i);
      ferrum::Buffer local = c.from_slice(part), global = c.alloc(n * W);
      c.all_gather(local, global, n);
      check(c.to_vec(global, n * W) == all, "all_gather " + std::string(ferrum::to_string(dt)));
      // broadcast from the last rank.
      ferrum::Buffer b = c.from_slice(part);
      c.broadcast(b, n, W - 1);
      std::vector<float> last(n);
      for (uint64_t i = 0; i < n; ++i) last[i] = value(world - 1, i);
      check(c.to_vec(b, n) == last, "broadcast " + std::string(ferrum::to_string(dt)));
      // Bad input, refused on this rank before any communication.
      check(code_of([&] { c.broadcast(b, n, W); }) == kInvalid, "broadcast src_rank >= world");
      check(code_of([&] { c.all_reduce(b, n, 9); }) == kInvalid, "all_reduce op 9");
      check(code_of([&] { c.all_gather(b, b, n); }) == kInvalid, "all_gather local == global");
      c.comm_destroy();
      check(c.world_size() == 1 && c.rank() == 0, "comm_destroy leaves a world of one");
    }

    // comm_init refused on every rank, with the reason, when one rank disagrees (all still return).
    ferrum::Context bad = be.create_context();
    std::vector<uint8_t> bid = share_id(dir, "id-bad", bad.comm_unique_id());
    if (g_rank == 1) bid[100] ^= 0x5a;  // rank 1 got a corrupt copy
    std::string msg;
    check(code_of([&] { bad.comm_init({.unique_id = bid.data(), .world_size = W, .rank = R}); }, &msg) ==
              kInvalid,
          "comm_init with a corrupt id on rank 1");
    check(msg.find("unique_id") != std::string::npos, "the corrupt-id error names unique_id: " + msg);
    check(code_of([&] { bad.comm_init({.unique_id = bid.data(), .world_size = W + 1, .rank = R}); }, &msg) ==
              kInvalid,
          "comm_init with the wrong world_size");
    check(msg.find("world_size") != std::string::npos, "the world-size error names world_size: " + msg);
    std::vector<uint8_t> junk(128, 0x11);
    check(code_of([&] { bad.comm_init({.unique_id = junk.data(), .world_size = W, .rank = R}); }, &msg) ==
              kInvalid,
          "comm_init with bytes that are no id");
    check(code_of([&] { bad.comm_init({.unique_id = bid.data(), .world_size = W, .rank = W}); }) ==
              kInvalid,
          "comm_init with rank >= world_size");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: FAIL: unexpected exception: %s\n", g_rank, e.what());
    return 1;
  }
  std::printf("rank %d of %d: %s\n", g_rank, world, g_failed ? "FAILED" : "all collective checks passed");
  return g_failed ? 1 : 0;
}
