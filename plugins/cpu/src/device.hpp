// ferrum CPU plugin — the device: the host CPU, its memory and the kernels' thread pool
// (the device layer: no ABI types).
//
// Thread contract: every function here is thread-safe except shutdown (the plugin's shutdown).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ferrum::cpu {

struct DeviceProps {
  std::string name;           // /proc/cpuinfo's model name, else "host CPU"
  uint64_t total_memory = 0;  // bytes (/proc/meminfo MemTotal; 0 when unknown)
  uint64_t threads = 0;       // the kernels' pool size
};

DeviceProps device_props();

// Stops the kernels' thread pool (restarted on the next parallel kernel).
void shutdown();

// The host's timer (docs/spec.md §9): every op has run when its call returns, so a mark is the
// monotonic clock at the call.
struct Timer {
  bool has_start = false;
  bool has_end = false;
  std::chrono::steady_clock::time_point start, end;
  void record_start() {
    has_start = true;
    has_end = false;
    start = std::chrono::steady_clock::now();
  }
  void record_end() {
    has_end = true;
    end = std::chrono::steady_clock::now();
  }
  double elapsed_ms() const { return std::chrono::duration<double, std::milli>(end - start).count(); }  // arith-ok: time points
};

}  // namespace ferrum::cpu
