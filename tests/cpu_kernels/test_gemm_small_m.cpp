// ferrum CPU kernels — small-m gemm over f16 / bf16: the dot path's bits.
#include <catch2/catch.hpp>

#include <cstring>
#include <cmath>
#include <random>
#include <vector>

#include <ferrum/common/dtype.hpp>

#include "gemm.hpp"

namespace cpu = ferrum::cpu;
using ferrum::bf16;
using ferrum::f16;
using ferrum::from_float;

namespace {

template <class T>
std::vector<T> random_half(uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<T> v(n);
  for (auto& x : v) x = from_float<T>(d(rng));
  return v;
}

}  // namespace

// f16 / bf16 with m <= 16 stay on the dot path (each b row widened once, one dot per a row; at
// m = 1 the widening fused into the dot where the CPU has AVX2 + F16C or AVX-512): every output
// carries the bits of the m = 1 call of its row, and the fused m = 1 dot equals widening b and
// running the f32 dot (k = 103 and 200: 32-wide steps, 8-wide steps and a scalar tail; odd m and n).
TEMPLATE_TEST_CASE("f16 / bf16 gemm at small m: every row has the m = 1 bits, the fused dot the widened one's",
                   "[gemm]", f16, bf16) {
  using T = TestType;
  for (uint64_t k : {uint64_t{103}, uint64_t{200}}) {
    for (uint64_t m : {uint64_t{2}, uint64_t{5}, uint64_t{16}}) {
      const uint64_t n = 37;
      INFO("m=" << m << " k=" << k);
      auto a = random_half<T>(m * k, 191 + m), b = random_half<T>(n * k, 192 + k);
      std::vector<T> out(m * n, from_float<T>(7.0f)), row(n, from_float<T>(7.0f));
      cpu::gemm(a.data(), b.data(), out.data(), m, n, k);
      for (uint64_t i = 0; i < m; ++i) {
        cpu::gemm(a.data() + i * k, b.data(), row.data(), 1, n, k);
        REQUIRE(std::memcmp(out.data() + i * n, row.data(), n * sizeof(T)) == 0);
      }
    }
    // m = 1 against the f32 gemm of the widened inputs: the same dot, the same order.
    auto a = random_half<T>(k, 301), b = random_half<T>(19 * k, 302);
    std::vector<float> af(k), bf(19 * k), of(19);
    cpu::widen_row(a.data(), af.data(), k);
    cpu::widen_row(b.data(), bf.data(), 19 * k);
    std::vector<T> o(19);
    cpu::gemm(a.data(), b.data(), o.data(), 1, 19, k);
    cpu::gemm(af.data(), bf.data(), of.data(), 1, 19, k);
    for (uint64_t j = 0; j < 19; ++j) {
      const T w = from_float<T>(of[j]);
      REQUIRE(std::memcmp(&o[j], &w, sizeof(T)) == 0);
      // and each output (four rows per step on AVX2, then a remainder) is the single-row dot's
      const T h = from_float<T>(cpu::gemm_dot_half(af.data(), b.data() + j * k, k));
      REQUIRE(std::memcmp(&o[j], &h, sizeof(T)) == 0);
      REQUIRE(of[j] == cpu::gemm_dot(af.data(), bf.data() + j * k, k));
    }
  }
}

// The fused half dot (AVX2 + F16C or AVX-512, where the CPU has one) against the f32 dot of the
// widened row, bit for bit, at f32 precision: every k from 1 to 300 (all step / tail mixes),
// values over a wide dynamic range, signed zeros and subnormal halves.
TEMPLATE_TEST_CASE("f16 / bf16 fused dot: the bits of the widened f32 dot", "[gemm]", f16, bf16) {
  using T = TestType;
  std::mt19937 rng(404);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::uniform_int_distribution<int> e(-12, 12);
  for (uint64_t k = 1; k <= 300; ++k) {
    INFO("k=" << k);
    std::vector<float> x(k), yw(k);
    std::vector<T> y(k);
    for (uint64_t i = 0; i < k; ++i) {
      x[i] = std::ldexp(d(rng), e(rng));
      y[i] = from_float<T>(i % 37 == 5 ? -0.0f : (i % 41 == 7 ? 1e-7f : std::ldexp(d(rng), e(rng))));
    }
    cpu::widen_row(y.data(), yw.data(), k);
    const float fused = cpu::gemm_dot_half(x.data(), y.data(), k), widened = cpu::gemm_dot(x.data(), yw.data(), k);
    REQUIRE(std::memcmp(&fused, &widened, sizeof(float)) == 0);
  }
}
