// Tensor-parallel launch helpers shared by ferrum-demo and ferrum-run (`--tp N`): one process per
// rank started by an MPI launcher, rank 0's communicator id carried to the others through a file.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "ferrum_tool_cli.hpp"

namespace ferrum::tools {

// The launcher's rank / size variables (Open MPI, then PMI: MPICH, Slurm), or -1.
inline int launcher_int(const char* ompi, const char* pmi) {
  const char* v = std::getenv(ompi);
  if (!v) v = std::getenv(pmi);
  return v && *v ? std::atoi(v) : -1;
}

// `--tp N` (N > 1): this process's rank, from the launcher, which must have started N ranks (a
// usage error naming the tool otherwise); `id_file` defaults to /tmp/<tool>-<job id>.id.
inline int tp_rank_of(const CLI::App& app, const std::string& tool, uint64_t tp, std::string& id_file) {
  const int rank = launcher_int("OMPI_COMM_WORLD_RANK", "PMI_RANK");
  const int world = launcher_int("OMPI_COMM_WORLD_SIZE", "PMI_SIZE");
  if (rank < 0 || world != static_cast<int>(tp))
    usage_error(app, "--tp " + std::to_string(tp) + ": expected one process per rank started by an MPI launcher with as "
                     "many ranks (mpirun -np " + std::to_string(tp) + " " + tool + " ...), given " +
                     (rank < 0 ? std::string("no launcher") : std::to_string(world) + " ranks"));
  if (id_file.empty()) {
    const char* job = std::getenv("PMIX_NAMESPACE");
    if (!job) job = std::getenv("SLURM_JOB_ID");
    if (!job) usage_error(app, "--tp-id-file: expected a path (the launcher names no job), given none");
    id_file = "/tmp/" + tool + "-" + job + ".id";
  }
  return rank;
}

// Rank 0's communicator id, through `path`: rank 0 writes it (renamed into place whole), the
// others wait up to 60 s for it.
inline std::vector<uint8_t> share_id(const std::string& path, int rank, std::vector<uint8_t> id) {
  if (rank == 0) {
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f || std::fwrite(id.data(), 1, id.size(), f) != id.size() || std::fclose(f) != 0 ||
        std::rename(tmp.c_str(), path.c_str()) != 0)
      throw std::runtime_error("--tp-id-file: cannot write " + path);
    return id;
  }
  std::vector<uint8_t> got(id.size());
  for (int i = 0; i < 6000; ++i) {
    if (FILE* f = std::fopen(path.c_str(), "rb")) {
      const size_t n = std::fread(got.data(), 1, got.size(), f);
      std::fclose(f);
      if (n == got.size()) return got;
    }
    usleep(10000);
  }
  throw std::runtime_error("--tp-id-file: rank 0's communicator id did not appear in " + path + " within 60 s");
}

}  // namespace ferrum::tools
