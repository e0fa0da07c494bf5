// The test side of facade_mock's call counters (mock_plugin.cpp): the mock adds 1 to
// g_calls[op id] per call, keeps its live buffer count in g_calls[127] and the struct_size of the
// last read_typed call in g_calls[126]. Include once per test executable, before loading the mock.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include <ferrum/ferrum.hpp>

namespace mock_counters {

inline uint64_t g_calls[128];
inline const bool g_counters_set = [] {
  char addr[32];
  std::snprintf(addr, sizeof addr, "%llx",
                static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(&g_calls[0])));
  setenv("FACADE_MOCK_COUNTERS", addr, 1);
  return true;
}();

inline uint64_t calls(ferrum::Op op) {
  return __atomic_load_n(&g_calls[static_cast<int>(op)], __ATOMIC_RELAXED);
}
inline uint64_t live_buffers() { return __atomic_load_n(&g_calls[127], __ATOMIC_RELAXED); }
inline uint64_t last_read_typed_size() { return __atomic_load_n(&g_calls[126], __ATOMIC_RELAXED); }

}  // namespace mock_counters
