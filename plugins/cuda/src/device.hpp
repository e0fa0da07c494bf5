// ferrum CUDA plugin — device discovery: probe, count and properties.
//
// Thread contract: every function here is thread-safe. None of them creates a CUDA context
// (they use cudaGetDeviceCount, cudaDriverGetVersion and cudaDeviceGetAttribute /
// cudaGetDeviceProperties, which initialise the driver but not a primary context).
#pragma once

#include <cstdint>
#include <string>

#include "status.hpp"

namespace ferrum::cuda {

// Lowest compute capability the plugin's kernels are built for (CMake CUDA_ARCHITECTURES
// "80;90", each as SASS + PTX, so later architectures run through PTX JIT).
inline constexpr int kMinComputeMajor = 8;

// Scores whether this plugin can run here. Always returns OK (a probe that finds nothing is
// not an error): score 100 and an empty reason when at least one usable device exists,
// otherwise score 0 and a human-readable reason, e.g.
//   "no CUDA device (cudaGetDeviceCount: no CUDA-capable device is detected)"
//   "CUDA driver too old: driver supports 12.4, plugin built for runtime 13.0"
// The driver check compares major versions: CUDA minor-version compatibility lets a 13.x
// runtime run on any 13.y driver. `reason` is written on every path.
[[nodiscard]] Status probe(int32_t& score, std::string& reason) noexcept;

// Number of CUDA devices (0 when there is no driver or no device; that is not an error).
[[nodiscard]] Status device_count(int32_t& count) noexcept;

struct DeviceProps {
  std::string name;
  int32_t cc_major = 0;
  int32_t cc_minor = 0;
  uint64_t total_memory = 0;  // bytes
  int32_t sm_count = 0;
};

// Properties of device `ordinal`; INVALID_ARGUMENT when ordinal is outside [0, count).
[[nodiscard]] Status device_props(int32_t ordinal, DeviceProps& props) noexcept;

// "13.0" style text for a CUDA version number (1000 * major + 10 * minor).
[[nodiscard]] std::string cuda_version_string(int version);

}  // namespace ferrum::cuda
