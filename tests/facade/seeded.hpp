// Seeded random inputs in [-1, 1) for the facade tests against the real plugins.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

inline std::vector<float> seeded(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
