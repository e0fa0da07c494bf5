// ferrum CPU plugin — 64-byte aligned, growable scratch for per-thread (thread_local) buffers of the
// kernels: grown on demand, never shrunk, contents not kept across get() calls that grow it.
#ifndef FERRUM_CPU_KERNELS_SCRATCH_HPP
#define FERRUM_CPU_KERNELS_SCRATCH_HPP

#include <cstdint>
#include <new>

namespace ferrum::cpu {

struct Scratch {
  float* data = nullptr;
  uint64_t cap = 0;
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { ::operator delete[](data, std::align_val_t(64)); }
  // At least n floats, 64-byte aligned.
  float* get(uint64_t n) {
    if (n > cap) {
      ::operator delete[](data, std::align_val_t(64));
      data = nullptr;
      cap = 0;
      data = static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t(64)));
      cap = n;
    }
    return data;
  }
};

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_SCRATCH_HPP
