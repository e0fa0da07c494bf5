// ferrum test support — seeded random inputs.
//
// All generators use std::mt19937_64 seeded with `seed` and convert its raw 64-bit outputs with the
// explicit formulas below (no std::*_distribution), so the values are identical on every standard
// library:
//   unit(x)   = (x >> 11) · 2^-53                                  in [0, 1)
//   uniform   = lo + (hi − lo) · unit(x)
//   normal    = mean + stddev · sqrt(−2 ln(1 − u1)) · cos(2π u2)   (Box–Muller, one value per pair)
//   ids       = (x · bound) >> 64 (128-bit product)                 in [0, bound)
// "Never all zeros" (docs/spec.md §0.13): if every generated value is zero (after rounding, for the *_dtype
// variants), element 0 is replaced by a non-zero value (hi, or lo, or 1).
#pragma once

#include "quantize.hpp"

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

namespace ferrum::testing {

__extension__ typedef unsigned __int128 u128_t;

inline double unit_from_bits(uint64_t x) { return static_cast<double>(x >> 11) * 0x1.0p-53; }

namespace detail {
inline void never_all_zero(std::vector<double>& v, double lo, double hi, int32_t dtype) {
  if (v.empty()) return;
  for (double x : v)
    if (x != 0.0) return;
  double r = round_to(dtype, hi);
  if (r == 0.0) r = round_to(dtype, lo);
  if (r == 0.0) r = 1.0;
  v[0] = r;
}
}  // namespace detail

// n values uniform in [lo, hi).
inline std::vector<double> uniform(uint64_t n, double lo, double hi, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<double> v(n);
  for (auto& x : v) x = lo + (hi - lo) * unit_from_bits(g());
  detail::never_all_zero(v, lo, hi, FERRUM_DTYPE_INVALID);
  return v;
}

// n values normal(mean, stddev).
inline std::vector<double> normal(uint64_t n, double mean, double stddev, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<double> v(n);
  for (auto& x : v) {
    const double u1 = unit_from_bits(g()), u2 = unit_from_bits(g());
    x = mean + stddev * std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
  detail::never_all_zero(v, mean - stddev, mean + stddev, FERRUM_DTYPE_INVALID);
  return v;
}

// As uniform()/normal(), then each value rounded to what `dtype` stores (docs/spec.md §0.13: references see
// the stored values). Use these for every float input of an op test.
inline std::vector<double> uniform_dtype(int32_t dtype, uint64_t n, double lo, double hi, uint64_t seed) {
  auto v = round_to(dtype, uniform(n, lo, hi, seed));
  detail::never_all_zero(v, lo, hi, dtype);
  return v;
}
inline std::vector<double> normal_dtype(int32_t dtype, uint64_t n, double mean, double stddev, uint64_t seed) {
  auto v = round_to(dtype, normal(n, mean, stddev, seed));
  detail::never_all_zero(v, mean - stddev, mean + stddev, dtype);
  return v;
}

// n ids in [0, bound). bound must be > 0.
inline std::vector<uint32_t> random_ids(uint64_t n, uint32_t bound, uint64_t seed) {
  if (bound == 0) throw std::invalid_argument("random_ids: bound must be > 0");
  std::mt19937_64 g(seed);
  std::vector<uint32_t> v(n);
  for (auto& x : v) x = static_cast<uint32_t>((static_cast<u128_t>(g()) * bound) >> 64);
  return v;
}

// A random permutation of [0, n) (Fisher–Yates driven by the same id formula), e.g. for block tables.
inline std::vector<uint32_t> random_permutation(uint32_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<uint32_t> v(n);
  for (uint32_t i = 0; i < n; ++i) v[i] = i;
  for (uint32_t i = n; i > 1; --i) {
    const auto j = static_cast<uint32_t>((static_cast<u128_t>(g()) * i) >> 64);
    std::swap(v[i - 1], v[j]);
  }
  return v;
}

// Element-wise conversions for host index arrays.
inline std::vector<double> to_double(const std::vector<uint32_t>& v) { return {v.begin(), v.end()}; }

}  // namespace ferrum::testing
