// ferrum CPU plugin — the device (see device.hpp).
#include "device.hpp"

#include <fstream>

#include "kernels/parallel.hpp"

namespace ferrum::cpu {
namespace {

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      if (p != std::string::npos) return line.substr(p + 2);
    }
  return "host CPU";
}

uint64_t total_memory_bytes() {
  std::ifstream mi("/proc/meminfo");
  std::string key;
  unsigned long long kb = 0;
  if (mi >> key >> kb && key == "MemTotal:") return kb * 1024ull;  // arith-ok: kernel-reported kB
  return 0;
}

}  // namespace

DeviceProps device_props() {
  DeviceProps p;
  p.name = cpu_model_name();
  p.total_memory = total_memory_bytes();
  p.threads = pool_threads();
  return p;
}

void shutdown() { shutdown_pool(); }

}  // namespace ferrum::cpu
