// Helpers shared by the CPU kernel tests: per-dtype tolerances and seeded random inputs.
#pragma once

#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include <ferrum/common/dtype.hpp>

namespace ferrum::test {

// Relative tolerance of one output of dtype T (F-class: f32 1e-5, f16 2e-3, bf16 1e-2).
template <class T>
double tol() {
  if constexpr (std::is_same_v<T, float>) return 1e-5;
  else if constexpr (std::is_same_v<T, f16>) return 2e-3;
  else return 1e-2;
}

// n values uniform in [lo, hi), rounded to T, from a fixed seed.
template <class T>
std::vector<T> random_vec(uint64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = from_float<T>(u(g));
  return v;
}

}  // namespace ferrum::test
