// ferrum CPU plugin — host memory and float conversion (see memory.hpp).
#include "memory.hpp"

#include <cstdlib>
#include <cstring>
#include <vector>

#include <sys/mman.h>

#include <ferrum/common/dtype.hpp>

#include "kernels/elementwise.hpp"

namespace ferrum::cpu {

uint64_t max_elements(int32_t dtype) noexcept { return (UINT64_MAX - kAlign) / dtype_size(dtype); }

uint64_t alloc_bytes(int32_t dtype, uint64_t n) noexcept {
  return (n * dtype_size(dtype) + kAlign - 1) / kAlign * kAlign;  // arith-ok: n <= max_elements(dtype)
}

void* host_alloc(uint64_t bytes, bool zero) noexcept {
  if (bytes >= kMapBytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : p;  // page-aligned, already zero
  }
  void* p = std::aligned_alloc(kAlign, bytes);
  if (p && zero) std::memset(p, 0, bytes);
  return p;
}

void host_free(void* p, uint64_t bytes) noexcept {
  if (!p) return;
  if (bytes >= kMapBytes)
    munmap(p, bytes);
  else
    std::free(p);
}

bool convert(const void* src, int32_t sd, void* dst, int32_t dd, uint64_t n) {
  if (n == 0) return true;
  if (sd == dd) {
    std::memmove(dst, src, n * dtype_size(sd));  // arith-ok: n elements of an existing buffer
    return true;
  }
  std::vector<unsigned char> aligned;
  if (reinterpret_cast<uintptr_t>(src) % dtype_size(sd)) {  // unaligned raw weight bytes
    // arith-ok: n elements of an existing buffer (its byte size fits)
    aligned.assign(static_cast<const unsigned char*>(src), static_cast<const unsigned char*>(src) + n * dtype_size(sd));
    src = aligned.data();
  }
  return dispatch_float(sd, false, [&](auto s) {
    using S = decltype(s);
    return dispatch_float(dd, false, [&](auto d) {
      using D = decltype(d);
      cpu::convert<S, D>(static_cast<const S*>(src), static_cast<D*>(dst), n);
      return true;
    });
  });
}

}  // namespace ferrum::cpu
