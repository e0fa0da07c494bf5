// Unit tests of the CPU kernels (plugins/cpu/src/kernels) and of ferrum/common/dtype.hpp against
// straightforward float64 references on seeded random inputs (docs/spec.md §0.13 class F / E; the
// 8-bit-activation GGUF matmul: class A, against the conformance kit's GGUF decoder).
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <string>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <ferrum/common/dtype.hpp>

#include "attention.hpp"
#include "attention_math.hpp"
#include "attention_tiles.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"
#include "gguf.hpp"
#include "gguf_q8.hpp"
#include "norm.hpp"
#include "kernel_test_util.hpp"
#include "paged.hpp"
#include "parallel.hpp"
#include "rope.hpp"
#include "ref/ref_gguf.hpp"

using namespace ferrum;

using test::random_vec;
using test::tol;

namespace {

template <class T>
std::vector<double> to_d(const std::vector<T>& v) {
  std::vector<double> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = to_float(v[i]);
  return r;
}

// docs/spec.md §0.13: ‖out − ref‖₂ / ‖ref‖₂ (exact equality where ‖ref‖₂ = 0), no NaN/Inf.
template <class T>
void check_close(const std::vector<T>& out, const std::vector<double>& ref, double t = tol<T>()) {
  REQUIRE(out.size() == ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double o = to_float(out[i]);
    REQUIRE(std::isfinite(o));
    num += (o - ref[i]) * (o - ref[i]);
    den += ref[i] * ref[i];
  }
  if (den == 0) {
    REQUIRE(num == 0);
  } else {
    INFO("rel err " << std::sqrt(num / den));
    REQUIRE(std::sqrt(num / den) <= t);
  }
}

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }

template <class T>
bool same_bits(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// Reference RNE narrowing of a >= 0 over codes [0, ncodes) whose values increase with the code:
// binary search, then the nearer neighbour (ties to the even code).
template <class Decode>
uint32_t nearest_code(double a, uint32_t ncodes, Decode decode) {
  uint32_t lo = 0, hi = ncodes - 1;
  if (a >= decode(hi)) return hi;
  while (hi - lo > 1) {  // decode(lo) <= a < decode(hi)
    const uint32_t mid = (lo + hi) / 2;
    if (decode(mid) <= a) lo = mid;
    else hi = mid;
  }
  const double dl = a - decode(lo), dh = decode(hi) - a;
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1) == 0 ? lo : hi;
}

}  // namespace

// -------------------------------------------------------------------------------------------
// dtype.hpp
// -------------------------------------------------------------------------------------------
TEST_CASE("f16 decode is exact for all 65536 codes and round-trips", "[dtype]") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const f16 v{static_cast<uint16_t>(h)};
    const float f = to_float(v);
    const uint32_t e = (h >> 10) & 31, m = h & 1023;
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 31) {
      if (m == 0) REQUIRE(f == sign * std::numeric_limits<double>::infinity());
      else REQUIRE(std::isnan(f));
      if (m != 0) REQUIRE((f16_from_float(f).bits & 0x7E00) == 0x7E00);  // quiet NaN
      continue;
    }
    const double ref = e == 0 ? sign * std::ldexp(m, -24) : sign * std::ldexp(1024 + m, e - 25);
    REQUIRE(static_cast<double>(f) == ref);
    REQUIRE(std::signbit(f) == static_cast<bool>(h & 0x8000));
    REQUIRE(f16_from_float(f).bits == h);
    REQUIRE(detail::f16_bits_to_float(static_cast<uint16_t>(h)) == f);
  }
}

TEST_CASE("f16/bf16/f8 narrowing rounds to nearest even", "[dtype]") {
  std::mt19937 g(7);
  std::vector<float> vals = {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e9f, 5.96046448e-8f,
                             2.98023224e-8f, 2.98023253e-8f, 1e-10f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048,
                             448.0f, 449.0f, 464.0f, 480.0f, 1e6f, 0x1p-10f, 0x1p-9f, 0x3p-11f, 0x1p-11f,
                             -0x1.8p-10f, std::numeric_limits<float>::denorm_min(), 3.0e38f};
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 20000; ++i) {
    float f = std::bit_cast<float>(any(g));
    if (std::isnan(f) || std::isinf(f)) continue;
    vals.push_back(f);
    // Values in the f16/f8 ranges and exact ties.
    vals.push_back(std::ldexp(static_cast<float>(any(g) % 4096) / 4096.0f + 0.5f, static_cast<int>(any(g) % 44) - 28));
    vals.push_back(std::ldexp(static_cast<float>(any(g) % 2048) + 0.5f, static_cast<int>(any(g) % 30) - 35));
  }
  auto f16_val = [](uint32_t c) { return static_cast<double>(to_float(f16{static_cast<uint16_t>(c)})); };
  auto f8_val = [](uint32_t c) { return static_cast<double>(to_float(f8e4m3{static_cast<uint8_t>(c)})); };
  for (float f : vals) {
    for (float v : {f, -f}) {
      // f16: positive codes only; sign handled separately.
      const double a = std::fabs(static_cast<double>(v));
      const uint16_t sign16 = std::signbit(v) ? 0x8000 : 0;
      const uint32_t ref16 = a >= 65520.0 ? 0x7C00u : nearest_code(a, 0x7C00, f16_val);
      INFO("f16 v=" << v);
      REQUIRE(f16_from_float(v).bits == (sign16 | ref16));
      // bf16: candidates are the truncation and the next code up.
      const uint32_t x = bits_of(v);
      const uint32_t lo = x >> 16, hi = lo + 1;
      const double dlo = std::fabs(to_float(bf16{static_cast<uint16_t>(lo)}) - static_cast<double>(v));
      const double hi_val = (hi & 0x7FFF) == 0x7F80 ? std::copysign(std::ldexp(1.0, 128), v)  // the 'next' value past max
                                                   : static_cast<double>(std::bit_cast<float>(hi << 16));
      const double dhi = std::fabs(hi_val - static_cast<double>(v));
      const uint32_t refb = (dlo < dhi || (dlo == dhi && (lo & 1) == 0)) ? lo : hi;
      INFO("bf16 v=" << v);
      REQUIRE(bf16_from_float(v).bits == static_cast<uint16_t>(refb));
      // f8 e4m3: saturating.
      const uint8_t sign8 = std::signbit(v) ? 0x80 : 0;
      const uint32_t ref8 = a >= 448.0 ? 0x7Eu : nearest_code(a, 0x7F, f8_val);
      INFO("f8 v=" << v);
      REQUIRE(f8e4m3_from_float(v).bits == (sign8 | ref8));
    }
  }
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  REQUIRE(f16_from_float(inf).bits == 0x7C00);
  REQUIRE(f16_from_float(-inf).bits == 0xFC00);
  REQUIRE(bf16_from_float(-inf).bits == 0xFF80);
  REQUIRE(std::isnan(to_float(bf16_from_float(nan))));
  REQUIRE(std::isnan(to_float(bf16_from_float(std::bit_cast<float>(0x7F800001u)))));  // sNaN stays NaN
  REQUIRE(bf16_from_float(3.4e38f).bits == 0x7F80);                                  // overflow -> inf
  REQUIRE(f8e4m3_from_float(inf).bits == 0x7E);
  REQUIRE(f8e4m3_from_float(-inf).bits == 0xFE);
  REQUIRE((f8e4m3_from_float(nan).bits & 0x7F) == 0x7F);
  REQUIRE(std::isnan(to_float(f8e4m3{0x7F})));
  REQUIRE(std::isnan(to_float(f8e4m3{0xFF})));
  REQUIRE(to_float(f8e4m3{0x7E}) == 448.0f);
  REQUIRE(to_float(f8e4m3{0x01}) == 0x1p-9f);
  for (uint32_t c = 0; c < 256; ++c) {  // f8 round trip
    const float f = to_float(f8e4m3{static_cast<uint8_t>(c)});
    if (!std::isnan(f)) REQUIRE(f8e4m3_from_float(f).bits == c);
  }
}

TEST_CASE("dtype table and dispatch", "[dtype]") {
  static_assert(dtype_of<float> == FERRUM_DTYPE_F32 && dtype_of<f16> == FERRUM_DTYPE_F16 &&
                dtype_of<bf16> == FERRUM_DTYPE_BF16 && dtype_of<f8e4m3> == FERRUM_DTYPE_F8_E4M3 &&
                dtype_of<int32_t> == FERRUM_DTYPE_I32 && dtype_of<uint32_t> == FERRUM_DTYPE_U32 &&
                dtype_of<int8_t> == FERRUM_DTYPE_I8 && dtype_of<uint8_t> == FERRUM_DTYPE_U8);
  static_assert(dtype_size(FERRUM_DTYPE_BF16) == 2 && dtype_size(FERRUM_DTYPE_F8_E4M3) == 1 && dtype_size(0) == 0 &&
                dtype_size(9) == 0);
  static_assert(is_float_dtype(FERRUM_DTYPE_F16) && !is_float_dtype(FERRUM_DTYPE_I32) && !is_float_dtype(8));
  REQUIRE(std::string(dtype_name(FERRUM_DTYPE_F8_E4M3)) == "f8_e4m3");
  REQUIRE(std::string(dtype_name(42)) == "invalid");
  for (int32_t d = -1; d <= 9; ++d) {
    const int32_t got = dispatch_any(d, int32_t{-7}, [](auto tag) { return dtype_of<decltype(tag)>; });
    REQUIRE(got == (dtype_size(d) ? d : -7));
    int calls = 0;
    const uint64_t sz = dispatch_float(d, uint64_t{0}, [&](auto tag) {
      ++calls;
      return sizeof(tag);
    });
    REQUIRE(sz == (is_float_dtype(d) ? dtype_size(d) : 0));
    REQUIRE(calls == (is_float_dtype(d) ? 1 : 0));
  }
}

// -------------------------------------------------------------------------------------------
// parallel_for
// -------------------------------------------------------------------------------------------
TEST_CASE("parallel_for covers the range once, from several host threads", "[parallel]") {
  for (uint64_t n : {0ull, 1ull, 7ull, 1000ull, 100003ull}) {
    std::vector<std::atomic<int>> hits(n);
    cpu::parallel_for(n, 3, [&](uint64_t b, uint64_t e) {
      for (uint64_t i = b; i < e; ++i) hits[i]++;
    });
    for (auto& h : hits) REQUIRE(h.load() == 1);
  }
  std::atomic<uint64_t> total{0};
  std::vector<std::thread> ths;
  for (int t = 0; t < 4; ++t) {
    ths.emplace_back([&] {
      for (int r = 0; r < 50; ++r) {
        cpu::parallel_for(1000, 1, [&](uint64_t b, uint64_t e) {
          // nested call runs inline
          cpu::parallel_for(e - b, 1, [&](uint64_t b2, uint64_t e2) { total += e2 - b2; });
        });
      }
    });
  }
  for (auto& t : ths) t.join();
  REQUIRE(total.load() == 4u * 50u * 1000u);
  REQUIRE_THROWS_AS(cpu::parallel_for(100, 1, [](uint64_t b, uint64_t) {
                      if (b == 0) throw std::runtime_error("x");
                    }),
                    std::runtime_error);
  cpu::shutdown_pool();
  uint64_t sum = 0;
  std::mutex mu;
  cpu::parallel_for(100, 1, [&](uint64_t b, uint64_t e) {
    std::lock_guard<std::mutex> l(mu);
    sum += e - b;
  });
  REQUIRE(sum == 100);  // pool restarts after shutdown
}

// -------------------------------------------------------------------------------------------
// gemm
// -------------------------------------------------------------------------------------------
TEMPLATE_TEST_CASE("gemm matches float64 (NT)", "[gemm]", float, f16, bf16) {
  using T = TestType;
  const std::vector<std::array<uint64_t, 3>> shapes = {{1, 1, 1},     {1, 7, 33},    {3, 129, 7},   {7, 33, 129},
                                                       {33, 129, 7},  {129, 7, 33},  {5, 17, 300},  {200, 301, 517},
                                                       {37, 4100, 3}, {150, 20, 600},
                                                       // 8-row panels (m = 16; 20 leaves a 4-row edge), k even
                                                       // (bf16 pairs) and past one KC block
                                                       {16, 70, 1000}, {20, 33, 770}};
  for (auto [m, n, k] : shapes) {
    INFO("m=" << m << " n=" << n << " k=" << k);
    auto a = random_vec<T>(m * k, 1 + m), b = random_vec<T>(n * k, 2 + n);
    std::vector<T> out(m * n, from_float<T>(99.0f));
    cpu::gemm(a.data(), b.data(), out.data(), m, n, k);
    auto ad = to_d(a), bd = to_d(b);
    std::vector<double> ref(m * n);
    for (uint64_t i = 0; i < m; ++i)
      for (uint64_t j = 0; j < n; ++j) {
        double s = 0;
        for (uint64_t p = 0; p < k; ++p) s += ad[i * k + p] * bd[j * k + p];
        ref[i * n + j] = s;
      }
    check_close(out, ref);
    // Deterministic: a second run gives the same bits.
    std::vector<T> out2(m * n);
    cpu::gemm(a.data(), b.data(), out2.data(), m, n, k);
    REQUIRE(std::memcmp(out.data(), out2.data(), out.size() * sizeof(T)) == 0);
  }
  std::vector<T> out(6, from_float<T>(5.0f));
  cpu::gemm<T>(nullptr, nullptr, out.data(), 2, 3, 0);
  for (auto v : out) REQUIRE(bits_of(to_float(v)) == 0u);  // +0.0
}

// The f16 / bf16 rows are widened by vector converters (16 or 8 at a time, scalar tails): every
// bit pattern class — subnormals, ±0, the largest finite values — must widen exactly as
// to_float does, in the small-m dot path (m <= 4) and in the packed path, at lengths that leave
// tails. b holds one such value per row at a varying position; a is one-hot, so each output is
// exactly one widened b value (no rounding anywhere).
TEMPLATE_TEST_CASE("gemm widens f16/bf16 rows exactly (subnormals, zeros, extremes, tails)", "[gemm]", f16, bf16) {
  using T = TestType;
  const uint16_t specials[] = {0x0001, 0x03FF, 0x8001, 0x0000, 0x8000, 0x7BFF, 0xFBFF, 0x3C00, 0x0400, 0x4000,
                               0x7B7F, 0x0080, 0x8080, 0x3F80, 0xFB7F, 0x1234};  // finite in both formats
  for (uint64_t m : {uint64_t{1}, uint64_t{6}}) {
    for (uint64_t k : {uint64_t{7}, uint64_t{16}, uint64_t{37}, uint64_t{300}}) {
      const uint64_t n = 16;
      INFO("m=" << m << " k=" << k);
      std::vector<T> a(m * k, from_float<T>(0.0f)), b(n * k, from_float<T>(0.0f));
      std::vector<uint64_t> pos(n);
      for (uint64_t j = 0; j < n; ++j) {
        pos[j] = (j * 7 + 3) % k;
        b[j * k + pos[j]].bits = specials[j];
      }
      // a row i picks column p_i; each output (i, j) is b[j, p_i] (one product with 1.0).
      for (uint64_t i = 0; i < m; ++i) a[i * k + pos[i % n]] = from_float<T>(1.0f);
      std::vector<T> out(m * n, from_float<T>(99.0f));
      cpu::gemm(a.data(), b.data(), out.data(), m, n, k);
      for (uint64_t i = 0; i < m; ++i)
        for (uint64_t j = 0; j < n; ++j) {
          const float want = to_float(b[j * k + pos[i % n]]);
          INFO("i=" << i << " j=" << j);
          // +0.0 / −0.0: a sum that starts at +0.0 gives +0.0 for −0.0 · 1 + (+0.0 terms)
          if (want == 0.0f) REQUIRE(to_float(out[i * n + j]) == 0.0f);
          else REQUIRE(bits_of(to_float(out[i * n + j])) == bits_of(want));
        }
    }
  }
}

// -------------------------------------------------------------------------------------------
// norms
// -------------------------------------------------------------------------------------------
TEMPLATE_TEST_CASE("rms_norm / fused_add_rms_norm / layer_norm", "[norm]", float, f16, bf16) {
  using T = TestType;
  const float eps = 1e-5f;
  for (uint64_t tokens : {1ull, 7ull, 33ull}) {
    for (uint64_t dim : {1ull, 7ull, 129ull, 1000ull}) {
      INFO("tokens=" << tokens << " dim=" << dim);
      auto x = random_vec<T>(tokens * dim, 11), w = random_vec<T>(dim, 12), beta = random_vec<T>(dim, 13);
      auto res = random_vec<T>(tokens * dim, 14, -3, 3);
      auto xd = to_d(x), wd = to_d(w), bd = to_d(beta);
      // rms_norm, in place (out aliases x).
      std::vector<T> io = x;
      cpu::rms_norm(io.data(), w.data(), eps, io.data(), tokens, dim);
      std::vector<double> ref(tokens * dim);
      auto rms_ref = [&](const std::vector<double>& in) {
        for (uint64_t r = 0; r < tokens; ++r) {
          double ss = 0;
          for (uint64_t i = 0; i < dim; ++i) ss += in[r * dim + i] * in[r * dim + i];
          const double inv = 1.0 / std::sqrt(ss / dim + eps);
          for (uint64_t i = 0; i < dim; ++i) ref[r * dim + i] = in[r * dim + i] * wd[i] * inv;
        }
      };
      rms_ref(xd);
      check_close(io, ref);
      // fused_add_rms_norm: stored residual is round(res + x), exactly.
      std::vector<T> r2 = res, out(tokens * dim);
      cpu::fused_add_rms_norm(r2.data(), x.data(), w.data(), eps, out.data(), tokens, dim);
      std::vector<double> sum(tokens * dim);
      for (uint64_t i = 0; i < tokens * dim; ++i) {
        const T rounded = from_float<T>(static_cast<float>(static_cast<double>(to_float(res[i])) + xd[i]));
        REQUIRE(bits_of(to_float(r2[i])) == bits_of(to_float(rounded)));
        sum[i] = to_float(rounded);
      }
      rms_ref(sum);
      check_close(out, ref);
      // layer_norm on data with a large mean (two-pass variance matters).
      auto xs = random_vec<T>(tokens * dim, 15, 100.0f, 101.0f);
      auto xsd = to_d(xs);
      std::vector<T> lo(tokens * dim);
      cpu::layer_norm(xs.data(), w.data(), beta.data(), eps, lo.data(), tokens, dim);
      for (uint64_t r = 0; r < tokens; ++r) {
        double mu = 0, var = 0;
        for (uint64_t i = 0; i < dim; ++i) mu += xsd[r * dim + i];
        mu /= dim;
        for (uint64_t i = 0; i < dim; ++i) var += (xsd[r * dim + i] - mu) * (xsd[r * dim + i] - mu);
        var /= dim;
        for (uint64_t i = 0; i < dim; ++i)
          ref[r * dim + i] = (xsd[r * dim + i] - mu) / std::sqrt(var + eps) * wd[i] + bd[i];
      }
      check_close(lo, ref, dim == 1 ? tol<T>() : tol<T>() * (std::is_same_v<T, float> ? 10 : 1));
    }
  }
}

// -------------------------------------------------------------------------------------------
// element-wise
// -------------------------------------------------------------------------------------------
TEMPLATE_TEST_CASE("element-wise kernels", "[elementwise]", float, f16, bf16) {
  using T = TestType;
  for (uint64_t len : {1ull, 7ull, 33ull, 129ull, 70001ull}) {
    INFO("len=" << len);
    auto x = random_vec<T>(len, 21, -4, 4), y = random_vec<T>(len, 22, -4, 4);
    auto xd = to_d(x), yd = to_d(y);
    std::vector<double> ref(len);
    std::vector<T> out(len);
    cpu::gelu(x.data(), out.data(), len);
    for (uint64_t i = 0; i < len; ++i) ref[i] = 0.5 * xd[i] * (1 + std::erf(xd[i] / std::sqrt(2.0)));
    check_close(out, ref);
    std::vector<T> r = x;
    cpu::add_inplace(r.data(), y.data(), len);
    for (uint64_t i = 0; i < len; ++i) ref[i] = xd[i] + yd[i];
    check_close(r, ref);
    r = x;
    cpu::add_inplace(r.data(), r.data(), len);  // x == residual
    for (uint64_t i = 0; i < len; ++i) REQUIRE(to_float(r[i]) == static_cast<float>(2 * xd[i]));
    r = x;
    cpu::scaled_add_inplace(r.data(), y.data(), -0.375f, len);
    for (uint64_t i = 0; i < len; ++i) ref[i] = xd[i] - 0.375 * yd[i];
    check_close(r, ref);
  }
  for (uint64_t rows : {1ull, 7ull, 33ull}) {
    for (uint64_t cols : {1ull, 7ull, 129ull}) {
      auto d = random_vec<T>(rows * cols, 31), b = random_vec<T>(cols, 32);
      auto dd = to_d(d), bd = to_d(b);
      cpu::add_bias(d.data(), b.data(), rows, cols);
      std::vector<double> ref(rows * cols);
      for (uint64_t i = 0; i < rows * cols; ++i) ref[i] = dd[i] + bd[i % cols];
      check_close(d, ref);
      // silu-mul, plain and strided
      const uint64_t im = cols;
      auto gu = random_vec<T>((rows + 2) * 2 * im, 33, -6, 6);
      auto gd = to_d(gu);
      std::vector<T> o(rows * im);
      cpu::fused_silu_mul_split(gu.data(), o.data(), rows, im);
      std::vector<double> sref(rows * im);
      for (uint64_t t = 0; t < rows; ++t)
        for (uint64_t i = 0; i < im; ++i) {
          const double g = gd[t * 2 * im + i], u = gd[t * 2 * im + im + i];
          sref[t * im + i] = g / (1 + std::exp(-g)) * u;
        }
      check_close(o, sref);
      std::vector<T> o2((rows + 3) * im, from_float<T>(7.0f));
      cpu::fused_silu_mul_split_strided(gu.data() - 0, 0, o2.data(), 3, rows, im);
      for (uint64_t i = 0; i < 3 * im; ++i) REQUIRE(to_float(o2[i]) == 7.0f);
      REQUIRE(std::memcmp(o2.data() + 3 * im, o.data(), rows * im * sizeof(T)) == 0);
      cpu::fused_silu_mul_split_strided(gu.data(), 2, o2.data(), 0, rows, im);
      for (uint64_t t = 0; t < rows; ++t)
        for (uint64_t i = 0; i < im; ++i) {
          const double g = gd[(t + 2) * 2 * im + i], u = gd[(t + 2) * 2 * im + im + i];
          sref[t * im + i] = g / (1 + std::exp(-g)) * u;
        }
      check_close(std::vector<T>(o2.begin(), o2.begin() + rows * im), sref);
    }
  }
}

TEMPLATE_TEST_CASE("copies, gathers, transposes, argmax, convert", "[elementwise]", float, f16, bf16) {
  using T = TestType;
  const uint64_t tokens = 7, qd = 33, kvd = 5;
  auto qkv = random_vec<T>(tokens * (qd + 2 * kvd), 41);
  std::vector<T> q(tokens * qd), k(tokens * kvd), v(tokens * kvd);
  cpu::split_qkv(qkv.data(), q.data(), k.data(), v.data(), tokens, qd, kvd);
  for (uint64_t t = 0; t < tokens; ++t) {
    const T* row = qkv.data() + t * (qd + 2 * kvd);
    REQUIRE(std::memcmp(q.data() + t * qd, row, qd * sizeof(T)) == 0);
    REQUIRE(std::memcmp(k.data() + t * kvd, row + qd, kvd * sizeof(T)) == 0);
    REQUIRE(std::memcmp(v.data() + t * kvd, row + qd + kvd, kvd * sizeof(T)) == 0);
  }
  const uint64_t heads = 3, dim = 129;
  auto src = random_vec<T>(tokens * heads * dim, 42);
  std::vector<T> tt(src.size()), back(src.size());
  cpu::transpose_head_to_token(src.data(), tt.data(), tokens, heads, dim);
  for (uint64_t t = 0; t < tokens; ++t)
    for (uint64_t h = 0; h < heads; ++h)
      for (uint64_t d = 0; d < dim; ++d)
        REQUIRE(same_bits(tt[(t * heads + h) * dim + d], src[(h * tokens + t) * dim + d]));
  cpu::transpose_token_to_head(tt.data(), back.data(), tokens, heads, dim);
  REQUIRE(std::memcmp(back.data(), src.data(), src.size() * sizeof(T)) == 0);

  const uint64_t vocab = 33;
  auto table = random_vec<T>(vocab * dim, 43);
  std::vector<uint64_t> ids = {0, 32, 5, 33, 1000, 7};
  std::vector<T> emb(ids.size() * dim, from_float<T>(3.0f));
  cpu::embedding_rows(table.data(), vocab, ids.data(), ids.size(), emb.data(), dim, true);
  for (size_t i = 0; i < ids.size(); ++i)
    for (uint64_t d = 0; d < dim; ++d)
      REQUIRE(bits_of(to_float(emb[i * dim + d])) ==
              (ids[i] < vocab ? bits_of(to_float(table[ids[i] * dim + d])) : 0u));
  std::vector<T> emb2(ids.size() * dim, from_float<T>(3.0f));
  cpu::embedding_rows(table.data(), vocab, ids.data(), ids.size(), emb2.data(), dim, false);
  REQUIRE(to_float(emb2[3 * dim]) == 3.0f);

  // argmax rules (docs/spec.md §3 argmax_rows_f16).
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<std::vector<float>> rows = {{1, 3, 3, 2},       {nan, -1, nan, -0.5f}, {-0.0f, 0.0f, -1, 0},
                                                {0.0f, -0.0f, -1, 0}, {nan, nan, nan, nan},  {-inf, -inf, -inf, -inf},
                                                {1, inf, nan, inf}, {-inf, nan, -5, -inf}};
  const std::vector<uint32_t> want = {1, 3, 0, 0, 0, 0, 1, 2};
  std::vector<T> lg;
  for (auto& r : rows)
    for (float f : r) lg.push_back(from_float<T>(f));
  std::vector<uint32_t> am(rows.size(), 99);
  cpu::argmax_rows(lg.data(), rows.size(), 4, am.data());
  REQUIRE(am == want);

  // convert, through every float pair.
  std::vector<float> vals = {0.0f, -0.0f, 1.0f, 65519.0f, 65520.0f, 1e30f, -1e-30f, 3.14159f, inf, -inf, nan};
  std::vector<T> s(vals.size());
  for (size_t i = 0; i < vals.size(); ++i) s[i] = from_float<T>(vals[i]);
  std::vector<float> f32(vals.size());
  std::vector<f16> h(vals.size());
  std::vector<bf16> bh(vals.size());
  cpu::convert(s.data(), f32.data(), s.size());
  cpu::convert(s.data(), h.data(), s.size());
  cpu::convert(s.data(), bh.data(), s.size());
  for (size_t i = 0; i < vals.size(); ++i) {
    const float x = to_float(s[i]);
    REQUIRE(bits_of(f32[i]) == bits_of(x));
    REQUIRE(h[i].bits == f16_from_float(x).bits);
    REQUIRE(bh[i].bits == bf16_from_float(x).bits);
  }
}

// -------------------------------------------------------------------------------------------
// RoPE family
// -------------------------------------------------------------------------------------------
namespace {

// float64 reference of one per-head transform (docs/spec.md §0.7).
std::vector<double> transform_ref(const std::vector<double>& x, const double* w, const double* c, const double* s,
                                  int mode, double eps) {
  const size_t D = x.size(), half = D / 2;
  std::vector<double> xp = x, y(D);
  if (mode == 0) return x;
  if (mode == 1) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double inv = 1 / std::sqrt(ss / D + eps);
    for (size_t d = 0; d < D; ++d) xp[d] = x[d] * w[d] * inv;
  }
  for (size_t i = 0; i < half; ++i) {
    if (mode == 3) {
      y[2 * i] = xp[2 * i] * c[i] - xp[2 * i + 1] * s[i];
      y[2 * i + 1] = xp[2 * i + 1] * c[i] + xp[2 * i] * s[i];
    } else {
      y[i] = xp[i] * c[i] - xp[i + half] * s[i];
      y[i + half] = xp[i + half] * c[i] + xp[i] * s[i];
    }
  }
  return y;
}

}  // namespace

TEMPLATE_TEST_CASE("qk_norm_rope family", "[rope]", float, f16, bf16) {
  using T = TestType;
  using C = float;  // f32 tables; T tables exercised in split_qkv below
  const float eps = 1e-6f;
  const uint64_t tokens = 7, qh = 4, kvh = 2, rows = 40, pos0 = 5;
  for (uint64_t D : {2ull, 8ull, 66ull}) {
    for (int mode = 0; mode <= 3; ++mode) {
      INFO("D=" << D << " mode=" << mode);
      const uint64_t half = D / 2;
      std::vector<C> cs(rows * half), sn(rows * half);
      for (uint64_t p = 0; p < rows; ++p)
        for (uint64_t i = 0; i < half; ++i) {
          const double th = p * std::pow(10000.0, -2.0 * i / D);
          cs[p * half + i] = static_cast<float>(std::cos(th));
          sn[p * half + i] = static_cast<float>(std::sin(th));
        }
      std::vector<double> csd(cs.begin(), cs.end()), snd(sn.begin(), sn.end());
      auto w = random_vec<T>(D, 51, 0.5f, 1.5f);
      auto wd = to_d(w);
      // qk_norm_rope: token-major in, head-major out.
      auto in = random_vec<T>(tokens * qh * D, 52);
      auto ind = to_d(in);
      std::vector<T> out(in.size());
      cpu::qk_norm_rope<T, C>(in.data(), w.data(), cs.data(), sn.data(), out.data(), tokens, qh, D, pos0, eps, mode);
      std::vector<double> ref(in.size());
      for (uint64_t t = 0; t < tokens; ++t)
        for (uint64_t h = 0; h < qh; ++h) {
          std::vector<double> x(ind.begin() + (t * qh + h) * D, ind.begin() + (t * qh + h + 1) * D);
          const uint64_t p = pos0 + t;
          auto y = transform_ref(x, wd.data(), csd.data() + p * half, snd.data() + p * half, mode, eps);
          std::copy(y.begin(), y.end(), ref.begin() + (h * tokens + t) * D);
        }
      if (mode == 0) {
        for (size_t i = 0; i < ref.size(); ++i) REQUIRE(to_float(out[i]) == ref[i]);
      } else {
        check_close(out, ref);
      }
      // batched per item: item-major, positions per item; an out-of-range position gives zeros.
      std::vector<uint64_t> pos = {3, 0, 39, 12, 40, 7, 1};
      std::vector<T> ob(in.size());
      cpu::qk_norm_rope_batched_per_item<T, C>(in.data(), w.data(), cs.data(), sn.data(), rows, ob.data(), pos.data(),
                                               tokens, qh, D, eps, mode);
      std::vector<double> refb(in.size());
      for (uint64_t i = 0; i < tokens; ++i)
        for (uint64_t h = 0; h < qh; ++h) {
          const uint64_t off = (i * qh + h) * D;
          std::vector<double> x(ind.begin() + off, ind.begin() + off + D);
          if (mode != 0 && pos[i] >= rows) {
            std::fill(refb.begin() + off, refb.begin() + off + D, 0.0);
            continue;
          }
          const uint64_t p = std::min(pos[i], rows - 1);
          auto y = transform_ref(x, wd.data(), csd.data() + p * half, snd.data() + p * half, mode, eps);
          std::copy(y.begin(), y.end(), refb.begin() + off);
        }
      check_close(ob, refb);

      // split_qkv_norm_rope and the into-cache form, T-typed tables.
      std::vector<T> cst(cs.size()), snt(sn.size());
      for (size_t i = 0; i < cs.size(); ++i) {
        cst[i] = from_float<T>(cs[i]);
        snt[i] = from_float<T>(sn[i]);
      }
      std::vector<double> cstd = to_d(cst), sntd = to_d(snt);
      auto kw = random_vec<T>(D, 53, 0.5f, 1.5f);
      auto kwd = to_d(kw);
      const uint64_t row = (qh + 2 * kvh) * D;
      auto qkv = random_vec<T>(tokens * row, 54);
      auto qkvd = to_d(qkv);
      std::vector<T> qo(qh * tokens * D), ko(kvh * tokens * D), vo(kvh * tokens * D);
      cpu::split_qkv_norm_rope<T, T>(qkv.data(), w.data(), kw.data(), cst.data(), snt.data(), qo.data(), ko.data(),
                                     vo.data(), tokens, qh, kvh, D, pos0, eps, mode);
      const uint64_t cap = 20, clen = 9;
      std::vector<T> ck(kvh * cap * D, from_float<T>(5.0f)), cv(kvh * cap * D, from_float<T>(5.0f)),
          qo2(qo.size());
      cpu::split_qkv_norm_rope_into_cache<T, T>(qkv.data(), w.data(), kw.data(), cst.data(), snt.data(), qo2.data(),
                                                ck.data(), cv.data(), tokens, qh, kvh, D, pos0, eps, mode, clen, cap);
      REQUIRE(std::memcmp(qo.data(), qo2.data(), qo.size() * sizeof(T)) == 0);
      std::vector<double> rq(qo.size()), rk(ko.size());
      for (uint64_t t = 0; t < tokens; ++t) {
        const uint64_t p = pos0 + t;
        for (uint64_t h = 0; h < qh + 2 * kvh; ++h) {
          std::vector<double> x(qkvd.begin() + t * row + h * D, qkvd.begin() + t * row + (h + 1) * D);
          if (h < qh) {
            auto y = transform_ref(x, wd.data(), cstd.data() + p * half, sntd.data() + p * half, mode, eps);
            std::copy(y.begin(), y.end(), rq.begin() + (h * tokens + t) * D);
          } else if (h < qh + kvh) {
            auto y = transform_ref(x, kwd.data(), cstd.data() + p * half, sntd.data() + p * half, mode, eps);
            std::copy(y.begin(), y.end(), rk.begin() + ((h - qh) * tokens + t) * D);
          } else {
            const uint64_t vh = h - qh - kvh;
            REQUIRE(std::memcmp(vo.data() + (vh * tokens + t) * D, qkv.data() + t * row + h * D, D * sizeof(T)) == 0);
            REQUIRE(std::memcmp(cv.data() + (vh * cap + clen + t) * D, qkv.data() + t * row + h * D, D * sizeof(T)) ==
                    0);
          }
        }
      }
      check_close(qo, rq);
      check_close(ko, rk);
      for (uint64_t h = 0; h < kvh; ++h) {
        for (uint64_t r = 0; r < cap; ++r) {
          for (uint64_t d = 0; d < D; ++d) {
            const T got = ck[(h * cap + r) * D + d];
            if (r < clen || r >= clen + tokens) REQUIRE(to_float(got) == 5.0f);
            else REQUIRE(same_bits(got, ko[(h * tokens + r - clen) * D + d]));
          }
        }
      }
      // kv_cache_append_head_major
      std::vector<T> ck2(kvh * cap * D, from_float<T>(5.0f)), cv2(ck2);
      cpu::kv_cache_append_head_major(ck2.data(), cv2.data(), clen, cap, ko.data(), vo.data(), tokens, kvh, D);
      REQUIRE(std::memcmp(ck2.data(), ck.data(), ck.size() * sizeof(T)) == 0);
      REQUIRE(std::memcmp(cv2.data(), cv.data(), cv.size() * sizeof(T)) == 0);
    }
  }
}

// -------------------------------------------------------------------------------------------
// attention
// -------------------------------------------------------------------------------------------
// The vector dot / axpy of the attention kernels (chosen at run time) must give the portable
// code's bits exactly — same lanes, a multiply then an add per step, no FMA.
TEST_CASE("attention dot_f32 / dot4_f32 / axpy_f32 equal the portable code bit for bit", "[attention]") {
  for (uint64_t n : {uint64_t{0}, uint64_t{1}, uint64_t{7}, uint64_t{8}, uint64_t{17}, uint64_t{64}, uint64_t{128},
                     uint64_t{131}}) {
    INFO("n=" << n);
    auto a = random_vec<float>(n, 91 + n, -3, 3), b = random_vec<float>(n, 92 + n, -3, 3);
    REQUIRE(bits_of(cpu::dot_f32(a.data(), b.data(), n)) == bits_of(cpu::dot_f32_portable(a.data(), b.data(), n)));
    auto rows = random_vec<float>(4 * n + 4, 94 + n, -3, 3);
    float d4[4];
    cpu::dot4_f32(a.data(), rows.data(), n + 1, n, d4);  // row stride n + 1 (rows not adjacent)
    for (uint64_t r = 0; r < 4; ++r)
      REQUIRE(bits_of(d4[r]) == bits_of(cpu::dot_f32_portable(a.data(), rows.data() + r * (n + 1), n)));
    auto acc1 = random_vec<float>(n, 93 + n), acc2 = acc1;
    cpu::axpy_f32(acc1.data(), 0.3712f, b.data(), n);
    cpu::axpy_f32_portable(acc2.data(), 0.3712f, b.data(), n);
    for (uint64_t i = 0; i < n; ++i) REQUIRE(bits_of(acc1[i]) == bits_of(acc2[i]));
    // 5 key rows of stride n + 3 into an accumulator of n (the 128-wide blocks and the tail)
    for (uint64_t width : {n, n + 130}) {
      auto ps = random_vec<float>(5, 95 + n), vr = random_vec<float>(5 * (width + 3), 96 + n, -3, 3);
      auto r1 = random_vec<float>(width, 97 + n), r2 = r1;
      cpu::axpy_rows_f32(r1.data(), ps.data(), vr.data(), width + 3, 5, width);
      for (uint64_t j = 0; j < 5; ++j) cpu::axpy_f32_portable(r2.data(), ps[j], vr.data() + j * (width + 3), width);
      for (uint64_t i = 0; i < width; ++i) REQUIRE(bits_of(r1[i]) == bits_of(r2[i]));
    }
  }
}

// f16 / bf16 rows are widened in the vector registers: the same bits as widening them first and
// running the f32 forms (which equal the portable code, above).
TEMPLATE_TEST_CASE("attention dot_f32 / dot4_f32 / axpy_rows_f32 on half rows equal the widened f32 rows", "[attention]",
                   f16, bf16) {
  using T = TestType;
  for (uint64_t n : {uint64_t{1}, uint64_t{7}, uint64_t{8}, uint64_t{17}, uint64_t{64}, uint64_t{128}, uint64_t{131}}) {
    INFO("n=" << n);
    auto a = random_vec<float>(n, 191 + n, -3, 3);
    auto rows = random_vec<T>(4 * n + 4, 194 + n, -3, 3);
    std::vector<float> wide(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) wide[i] = to_float(rows[i]);
    REQUIRE(bits_of(cpu::dot_f32(a.data(), rows.data(), n)) == bits_of(cpu::dot_f32(a.data(), wide.data(), n)));
    float d4[4], w4[4];
    cpu::dot4_f32(a.data(), rows.data(), n + 1, n, d4);
    cpu::dot4_f32(a.data(), wide.data(), n + 1, n, w4);
    for (int r = 0; r < 4; ++r) REQUIRE(bits_of(d4[r]) == bits_of(w4[r]));
    for (uint64_t width : {n, n + 130}) {
      auto ps = random_vec<float>(5, 195 + n);
      auto vr = random_vec<T>(5 * (width + 3), 196 + n, -3, 3);
      std::vector<float> vw(vr.size());
      for (size_t i = 0; i < vr.size(); ++i) vw[i] = to_float(vr[i]);
      auto r1 = random_vec<float>(width, 197 + n), r2 = r1;
      cpu::axpy_rows_f32(r1.data(), ps.data(), vr.data(), width + 3, 5, width);
      cpu::axpy_rows_f32(r2.data(), ps.data(), vw.data(), width + 3, 5, width);
      for (uint64_t i = 0; i < width; ++i) REQUIRE(bits_of(r1[i]) == bits_of(r2[i]));
    }
  }
}

// The kernels split work between pool threads (flash attention by (batch, KV head, query tile),
// gemm by output columns or rows): every output must carry the same bits whatever the thread
// count. The pool reads FERRUM_CPU_THREADS when it (re)starts.
// f32 with 2 <= m <= 16 takes 2 × 2 blocks of dot products: each output must carry the bits of
// the m = 1 dot of its row (k = 103 and 200: 64-wide steps, 16-wide steps and a masked tail; odd
// m and n leave 1 × 2, 2 × 1 and 1 × 1 blocks), whatever the thread count.
TEST_CASE("f32 gemm at small m: dot blocks give the m = 1 bits", "[gemm]") {
  for (uint64_t k : {uint64_t{103}, uint64_t{200}}) {
    for (uint64_t m : {uint64_t{2}, uint64_t{3}, uint64_t{16}}) {
      const uint64_t n = 37;
      INFO("m=" << m << " k=" << k);
      auto a = random_vec<float>(m * k, 91 + m), b = random_vec<float>(n * k, 92 + k);
      std::vector<float> out(m * n, 7.0f), row(n, 7.0f);
      cpu::gemm(a.data(), b.data(), out.data(), m, n, k);
      for (uint64_t i = 0; i < m; ++i) {
        cpu::gemm(a.data() + i * k, b.data(), row.data(), 1, n, k);
        REQUIRE(std::memcmp(out.data() + i * n, row.data(), n * sizeof(float)) == 0);
      }
    }
  }
}

TEMPLATE_TEST_CASE("flash_attention and gemm give the same bits on 1, 2 and 5 threads", "[attention][gemm]", float,
                   f16, bf16) {
  using T = TestType;
  const uint64_t B = 2, H = 8, HKV = 2, QL = 37, L = 300, D = 64, M = 70, N = 150, K = 96;
  auto q = random_vec<T>(B * H * QL * D, 81, -2, 2), k = random_vec<T>(B * HKV * L * D, 82, -2, 2),
       v = random_vec<T>(B * HKV * L * D, 83);
  auto a = random_vec<T>(M * K, 84), bw = random_vec<T>(N * K, 85);
  std::vector<std::vector<T>> att, mm;
  const char* old = std::getenv("FERRUM_CPU_THREADS");
  const std::string saved = old ? old : "";
  for (const char* threads : {"1", "2", "5"}) {
    setenv("FERRUM_CPU_THREADS", threads, 1);
    cpu::shutdown_pool();
    REQUIRE(cpu::pool_threads() == static_cast<unsigned>(std::atoi(threads)));
    std::vector<T> o(q.size(), from_float<T>(7.0f)), g(M * N, from_float<T>(7.0f)), g1(N, from_float<T>(7.0f)),
        g16(16 * N, from_float<T>(7.0f));
    cpu::flash_attention(q.data(), k.data(), v.data(), o.data(), B, QL, L, L - QL, H, HKV, D, true, 0.0f, 0, 0);
    cpu::gemm(a.data(), bw.data(), g.data(), M, N, K);
    cpu::gemm(a.data(), bw.data(), g1.data(), 1, N, K);    // the small-m path
    cpu::gemm(a.data(), bw.data(), g16.data(), 16, N, K);  // f32: dot blocks; f16/bf16: packed
    att.push_back(o);
    g.insert(g.end(), g1.begin(), g1.end());
    g.insert(g.end(), g16.begin(), g16.end());
    mm.push_back(g);
  }
  if (old) setenv("FERRUM_CPU_THREADS", saved.c_str(), 1);
  else unsetenv("FERRUM_CPU_THREADS");
  cpu::shutdown_pool();
  for (size_t i = 1; i < att.size(); ++i) {
    REQUIRE(std::memcmp(att[0].data(), att[i].data(), att[0].size() * sizeof(T)) == 0);
    REQUIRE(std::memcmp(mm[0].data(), mm[i].data(), mm[0].size() * sizeof(T)) == 0);
  }
}

// Decode-sized calls on half-precision caches read the keys exactly as widened f32 values and round
// the output once: each output carries the bits of the f32 call on the widened inputs, rounded to
// the dtype (GQA groups share one widening of each key block; group 1 widens in registers).
TEMPLATE_TEST_CASE("flash_attention decode on f16 / bf16 gives the bits of the f32 call on the widened inputs",
                   "[attention]", f16, bf16) {
  using T = TestType;
  for (uint64_t hd : {uint64_t{64}, uint64_t{128}}) {
    for (uint64_t ql : {uint64_t{1}, uint64_t{3}}) {
      for (uint64_t nkv : {uint64_t{1}, uint64_t{2}}) {
        const uint64_t B = 2, H = 8, L = 333;
        INFO("hd=" << hd << " q_len=" << ql << " nkv=" << nkv);
        auto q = random_vec<T>(B * H * ql * hd, 71 + hd, -2, 2), k = random_vec<T>(B * nkv * L * hd, 72 + ql, -2, 2),
             v = random_vec<T>(B * nkv * L * hd, 73 + nkv);
        auto widen = [](const std::vector<T>& x) {
          std::vector<float> w(x.size());
          for (size_t i = 0; i < x.size(); ++i) w[i] = to_float(x[i]);
          return w;
        };
        const auto qf = widen(q), kf = widen(k), vf = widen(v);
        std::vector<T> o(q.size(), from_float<T>(7.0f));
        std::vector<float> of(q.size(), 7.0f);
        cpu::flash_attention(q.data(), k.data(), v.data(), o.data(), B, ql, L, L - ql, H, nkv, hd, true, 0.0f, 0, 0);
        cpu::flash_attention(qf.data(), kf.data(), vf.data(), of.data(), B, ql, L, L - ql, H, nkv, hd, true, 0.0f, 0, 0);
        for (size_t i = 0; i < o.size(); ++i) REQUIRE(same_bits(o[i], from_float<T>(of[i])));
      }
    }
  }
}

// A paged decode (ferrum layout, a shuffled block table, every key resolved) visits the same 64-key
// blocks as flash_attention's decode and runs the same tile on the same f32 values: on the machines
// with the decode tiles (AVX-512, head_dim 64 / 128) each output carries the bits of the contiguous
// call; elsewhere both are checked against each other at the F tolerance only by conformance.
TEMPLATE_TEST_CASE("paged decode gives the bits of the contiguous decode on the same keys", "[attention][paged]", float,
                   f16, bf16) {
  using T = TestType;
  // The machine's best tiles, and the AVX2 tiles too where the best are AVX-512.
  namespace tiles = cpu::attn_tiles;
  const tiles::Isa best = tiles::isa();
  std::vector<tiles::Isa> isas{best};
  if (best == tiles::Isa::avx512) isas.push_back(tiles::Isa::avx2);  // AVX-512 machines have AVX2
  for (const tiles::Isa isa : isas) {
  tiles::force_isa(isa);
  for (uint64_t hd : {uint64_t{64}, uint64_t{128}}) {
    for (uint64_t window : {uint64_t{0}, uint64_t{100}}) {
      const uint64_t B = 3, H = 8, KV = 2, bs = 16, L = 333, nb = (L + bs - 1) / bs;
      INFO("isa=" << static_cast<int>(isa) << " hd=" << hd << " window=" << window);
      auto q = random_vec<T>(B * H * hd, 301 + hd, -2, 2);
      auto k = random_vec<T>(B * KV * L * hd, 302 + hd, -2, 2), v = random_vec<T>(B * KV * L * hd, 303 + hd);
      // pool: block table row b, logical block lb -> physical perm[b·nb + lb]
      std::vector<uint32_t> perm(B * nb);
      for (uint32_t i = 0; i < perm.size(); ++i) perm[i] = i;
      std::mt19937 rng(7);
      std::shuffle(perm.begin(), perm.end(), rng);
      std::vector<T> kp(perm.size() * bs * KV * hd, from_float<T>(0.0f)), vp(kp.size(), from_float<T>(0.0f));
      for (uint64_t b = 0; b < B; ++b)
        for (uint64_t j = 0; j < L; ++j)
          for (uint64_t h = 0; h < KV; ++h) {
            const uint64_t dst = ((perm[b * nb + j / bs] * bs + j % bs) * KV + h) * hd, src = ((b * KV + h) * L + j) * hd;
            std::copy(k.begin() + src, k.begin() + src + hd, kp.begin() + dst);
            std::copy(v.begin() + src, v.begin() + src + hd, vp.begin() + dst);
          }
      cpu::PagedPool pool;
      pool.num_blocks = perm.size();
      pool.block_size = bs;
      pool.nkv = KV;
      pool.head_dim = hd;
      pool.block_tables = {perm.data(), false, perm.size()};
      pool.stride = nb;
      std::vector<cpu::PagedQuery> qs;
      for (uint64_t b = 0; b < B; ++b) qs.push_back({b, b, static_cast<int64_t>(L - 1), L});
      std::vector<T> op(q.size(), from_float<T>(7.0f)), oc(q.size(), from_float<T>(9.0f));
      cpu::paged_attention(q.data(), kp.data(), vp.data(), op.data(), nullptr, 0, qs.data(), qs.size(), pool, H, 0.0f,
                           window);
      cpu::flash_attention(q.data(), k.data(), v.data(), oc.data(), B, 1, L, L - 1, H, KV, hd, true, 0.0f, 0, window);
      if (cpu::attn_tiles::available(hd)) {
        for (size_t i = 0; i < op.size(); ++i) REQUIRE(same_bits(op[i], oc[i]));
      } else {
        for (size_t i = 0; i < op.size(); ++i) REQUIRE(std::fabs(to_float(op[i]) - to_float(oc[i])) <= 1e-2f);
      }
    }
  }
  }
  tiles::force_isa(best);
}

TEMPLATE_TEST_CASE("flash_attention matches float64 softmax attention", "[attention]", float, f16, bf16) {
  using T = TestType;
  struct Case {
    uint64_t batch, q_len, kv_len, pos_offset, nh, nkv, hd;
    bool causal;
    float scale;
    uint64_t stride, window;
  };
  const std::vector<Case> cases = {
      {1, 1, 1, 0, 1, 1, 1, true, 0, 0, 0},          {2, 7, 7, 0, 4, 2, 33, true, 0, 0, 0},
      {1, 33, 40, 7, 3, 1, 16, true, 0.3f, 64, 0},   {2, 5, 129, 124, 2, 2, 7, false, 0, 0, 0},
      {1, 17, 129, 112, 4, 4, 8, true, 0, 130, 16},  {1, 9, 20, 3, 2, 1, 5, false, 0, 0, 4},
      {1, 4, 0, 0, 2, 1, 8, true, 0, 0, 0},          {1, 3, 10, 20, 1, 1, 4, true, 0, 0, 5},  // window past the keys
      {1, 70, 200, 130, 2, 1, 64, true, 0, 0, 0},
      // decode-sized GQA at hd 64 / 128 (the decode tiles; f16 / bf16 widen each key block once)
      {2, 3, 300, 297, 8, 2, 128, true, 0, 0, 0},    {1, 1, 200, 199, 4, 1, 64, true, 0, 0, 0},
  };
  for (const Case& c : cases) {
    INFO("b=" << c.batch << " q=" << c.q_len << " kv=" << c.kv_len << " pos=" << c.pos_offset << " h=" << c.nh << "/"
              << c.nkv << " hd=" << c.hd << " causal=" << c.causal << " win=" << c.window);
    const uint64_t S = c.stride ? c.stride : c.kv_len;
    auto q = random_vec<T>(c.batch * c.nh * c.q_len * c.hd, 61, -2, 2);
    auto k = random_vec<T>(c.batch * c.nkv * S * c.hd, 62, -2, 2);
    auto v = random_vec<T>(c.batch * c.nkv * S * c.hd, 63);
    std::vector<T> out(q.size(), from_float<T>(9.0f));
    cpu::flash_attention(q.data(), k.data(), v.data(), out.data(), c.batch, c.q_len, c.kv_len, c.pos_offset, c.nh,
                         c.nkv, c.hd, c.causal, c.scale, c.stride, c.window);
    const std::vector<double> ref = test::attention_reference(
        {c.batch, c.q_len, c.kv_len, c.pos_offset, c.nh, c.nkv, c.hd, c.causal, c.scale, c.stride, c.window}, q, k, v);
    check_close(out, ref);
    for (size_t i = 0; i < ref.size(); ++i) {
      if (ref[i] == 0.0) {
        // rows with an empty visible set are exactly +0.0 (elements of non-empty rows are never exactly 0 here)
        REQUIRE(to_float(out[i]) == 0.0f);
      }
    }
  }
}

// ---- GGUF matmul with 8-bit activations (gguf_q8.hpp; docs/spec.md §11.2, tolerance class A) -----
// Weights from the conformance kit's random block encoder, the reference from its independent
// float64 decoder (conformance/ref/ref_gguf.hpp), never from the plugin's own code.
namespace {

namespace ft = ferrum::testing;

// Uniform activations in [-1, 1) with an outlier (|a| in 4 … 8) in every third 32-column block, so
// that some blocks have a coarse d_b and others a fine one; never all zero.
template <class T>
std::vector<T> q8_activations(uint64_t m, uint64_t k, uint32_t seed) {
  std::vector<T> v = random_vec<T>(m * k, seed);
  std::mt19937 g(seed ^ 0x5eedu);
  for (uint64_t b = 0; b < m * k / 32; b += 3)
    v[32 * b + g() % 32] = from_float<T>(((g() & 1) ? -1.0f : 1.0f) * static_cast<float>(4 + g() % 5));
  return v;
}

// Class A per element: |out − ref| ≤ (1 + 2^-7)·Σ_k |W_k|·d_b(k)/2 + ε·Σ_k |W_k·a_k|, with ref the
// float64 product of the exact decoded weights and the activations as stored, d_b = amax_b / 127 of
// the activation block holding column k and ε the F-class value of T. Returns whether any output
// is at least a quantisation step's worth away from the reference, i.e. whether the activations
// were really rounded (a bound that is never approached would prove nothing).
template <class T>
bool check_class_a(const std::vector<T>& out, const std::vector<double>& w, const std::vector<T>& a, uint64_t m,
                   uint64_t n, uint64_t k) {
  bool rounded = false;
  for (uint64_t i = 0; i < m; ++i) {
    std::vector<double> x(k), d(k / 32);
    for (uint64_t c = 0; c < k; ++c) x[c] = to_float(a[i * k + c]);
    for (uint64_t b = 0; b < k / 32; ++b) {
      double amax = 0;
      for (int c = 0; c < 32; ++c) amax = std::max(amax, std::fabs(x[32 * b + c]));
      d[b] = amax / 127.0;
    }
    for (uint64_t r = 0; r < n; ++r) {
      double ref = 0, bound = 0, mag = 0;
      for (uint64_t c = 0; c < k; ++c) {
        const double wc = w[r * k + c];
        ref += wc * x[c];
        bound += std::fabs(wc) * d[c / 32] / 2;
        mag += std::fabs(wc * x[c]);
      }
      const double got = to_float(out[i * n + r]), err = std::fabs(got - ref);
      INFO("row " << i << ", output " << r << ": got " << got << ", ref " << ref << ", bound " << bound);
      REQUIRE(std::isfinite(got));
      REQUIRE(err <= (1 + 0x1p-7) * bound + tol<T>() * mag);
      rounded = rounded || err > 1e-3 * bound;
    }
  }
  return rounded;
}

}  // namespace

TEMPLATE_TEST_CASE("gguf_matmul with 8-bit activations: class A, the same bits on the VNNI, AVX2 and portable paths",
                   "[gguf][q8]", float, f16, bf16) {
  using T = TestType;
  INFO("q8 kernels: " << cpu::gguf_q8_kernel_name());
  for (int32_t t : ft::gguf_types()) {
    const bool small = ft::gguf_qk(t) == 32;
    // 32-weight types: 7 blocks (a partial group only) and 19 (two full groups and a partial one)
    const std::vector<uint64_t> widths = small ? std::vector<uint64_t>{32 * 7, 32 * 19} : std::vector<uint64_t>{256 * 3};
    bool rounded = false;
    for (uint64_t k : widths) {
      const uint64_t n = 37;  // an odd count: a partial tile of weight rows at m > 1
      const std::vector<uint8_t> bytes = ft::random_gguf(t, n, k, 1000 + t + k);
      const std::vector<double> w = ref::gguf_dequantize(t, bytes, n, k);
      for (uint64_t m : {uint64_t{1}, uint64_t{3}, uint64_t{16}, uint64_t{33}}) {
        INFO(ft::gguf_type_name(t) << " m=" << m << " k=" << k);
        const std::vector<T> a = q8_activations<T>(m, k, static_cast<uint32_t>(7 * m + k + t));
        const cpu::GgufMatrix W{t, bytes.data(), n, k, true};
        const T poison = from_float<T>(std::numeric_limits<float>::quiet_NaN());
        std::vector<T> best(m * n, poison), portable(m * n, poison), avx2(m * n, poison);
        cpu::gguf_matmul(W, a.data(), best.data(), m);  // dispatches on act_q8
        cpu::gguf_matmul_q8(W, a.data(), portable.data(), m, cpu::Q8Path::portable);
        cpu::gguf_matmul_q8(W, a.data(), avx2.data(), m, cpu::Q8Path::avx2);
        REQUIRE(std::memcmp(best.data(), portable.data(), best.size() * sizeof(T)) == 0);
        REQUIRE(std::memcmp(avx2.data(), portable.data(), avx2.size() * sizeof(T)) == 0);
        rounded = check_class_a(best, w, a, m, n, k) || rounded;
        // each activation row alone gives the bits it gives inside the batch
        std::vector<T> one(n, poison);
        cpu::gguf_matmul(W, a.data() + (m - 1) * k, one.data(), 1);
        REQUIRE(std::memcmp(one.data(), best.data() + (m - 1) * n, n * sizeof(T)) == 0);
      }
    }
    INFO(ft::gguf_type_name(t));
    CHECK(rounded);  // the activations were quantised: some outputs are measurably off the exact product
  }
}

// The AVX2 K-quant tiles (8 weight rows per tile, passes of 8, 4, 2, 1 activation rows, 4 groups
// per pass over the units): a width of 9 groups (4 + 4 + 1), a partial last tile (19 rows), every
// kind of activation-row remainder, and extreme codes and activations (the int16 partial sums at
// their bound) give the portable bits.
TEST_CASE("gguf_matmul with 8-bit activations: AVX2 K-quant tiles over chunks and remainders", "[gguf][q8]") {
  INFO("q8 kernels: " << cpu::gguf_q8_kernel_name());
  for (int32_t t : {int32_t{ft::kQ4_K}, int32_t{ft::kQ5_K}, int32_t{ft::kQ6_K}}) {
    const uint64_t k = 256 * 9, n = 19;
    for (bool extreme : {false, true}) {
      std::vector<uint8_t> bytes = ft::random_gguf(t, n, k, 500 + t);
      const uint64_t bb = cpu::gguf_block_bytes(t);
      if (extreme)  // every code at its largest value (all quant bits set; the scales stay random)
        for (uint64_t b = 0; b < n * k / 256; ++b) {
          uint8_t* blk = bytes.data() + b * bb;
          if (t == ft::kQ6_K) std::memset(blk, 0xFF, 192);           // ql, qh
          else std::memset(blk + 16, 0xFF, t == ft::kQ5_K ? 160 : 128);  // (qh,) qs
        }
      const std::vector<double> w = ref::gguf_dequantize(t, bytes, n, k);
      const cpu::GgufMatrix W{t, bytes.data(), n, k, true};
      for (uint64_t m : {uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{4}, uint64_t{5}, uint64_t{7}, uint64_t{9}}) {
        INFO(ft::gguf_type_name(t) << " m=" << m << (extreme ? " extreme" : ""));
        std::vector<float> a = q8_activations<float>(m, k, static_cast<uint32_t>(31 * m + t));
        if (extreme)  // codes ±127 everywhere: alternating signs per 32-block, one value per block
          for (uint64_t c = 0; c < m * k; ++c) a[c] = (c / 32) % 2 ? -0.5f : 0.5f;
        std::vector<float> avx2(m * n, NAN), portable(m * n, NAN);
        cpu::gguf_matmul_q8(W, a.data(), avx2.data(), m, cpu::Q8Path::avx2);
        cpu::gguf_matmul_q8(W, a.data(), portable.data(), m, cpu::Q8Path::portable);
        REQUIRE(std::memcmp(avx2.data(), portable.data(), avx2.size() * sizeof(float)) == 0);
        check_class_a(avx2, w, a, m, n, k);
      }
    }
  }
}

// The AVX2 direct block kernels (every type at m = 1; Q4_0 / Q4_1 / Q8_0 at every m, 4, 2, 1
// activation rows per pass; the arranged Q4 activation order): widths with partial last groups
// (32-weight types) or one to five groups, activation-row counts around the pass sizes, an odd
// number of weight rows, and extreme weights and activations (every int16 partial sum at its
// bound) all give the portable bits.
TEST_CASE("gguf_matmul with 8-bit activations: AVX2 direct block kernels give the portable bits", "[gguf][q8]") {
  INFO("q8 kernels: " << cpu::gguf_q8_kernel_name());
  const uint64_t n = 13;
  for (int32_t t : ft::gguf_types()) {
    const bool small = ft::gguf_qk(t) == 32;
    const uint64_t bb = cpu::gguf_block_bytes(t);
    const std::vector<uint64_t> widths =
        small ? std::vector<uint64_t>{32, 32 * 7, 256, 32 * 19, 32 * 33} : std::vector<uint64_t>{256, 256 * 3, 256 * 5};
    // weights: 0 random; 1 every quant bit set (largest codes; K-quant scale / min bytes 0xFF too:
    // sc = mn = 63); 2 smallest codes (Q4 nibbles 0: −8 for Q4_0; Q8_0 −128; Q6_K codes 0: −32,
    // scales −128); 3 Q8_0 alternating −128 / 127, the others random again with other seeds
    for (int wk = 0; wk < 4; ++wk)
      for (uint64_t k : widths) {
        std::vector<uint8_t> bytes = ft::random_gguf(t, n, k, 4000 + 10 * t + wk + k);
        const uint64_t nb = n * k / ft::gguf_qk(t);
        for (uint64_t b = 0; b < nb && (wk == 1 || wk == 2 || (wk == 3 && t == ft::kQ8_0)); ++b) {
          uint8_t* blk = bytes.data() + b * bb;
          const uint8_t fill = wk == 1 ? 0xFF : 0x00;
          switch (t) {
            case ft::kQ4_0: std::memset(blk + 2, fill, 16); break;
            case ft::kQ4_1: std::memset(blk + 4, fill, 16); break;
            case ft::kQ8_0:
              for (int i = 0; i < 32; ++i)
                blk[2 + i] = wk == 1 ? 0x7F : wk == 2 ? 0x80 : (i % 2 ? 0x7F : 0x80);
              break;
            case ft::kQ6_K:
              std::memset(blk, fill, 192);                       // ql, qh
              std::memset(blk + 192, wk == 1 ? 0x7F : 0x80, 16);  // scales 127 / −128
              break;
            default:  // Q4_K, Q5_K: scales and mins, (qh,) qs
              std::memset(blk + 4, fill, (t == ft::kQ5_K ? 176 : 144) - 4);
          }
        }
        const cpu::GgufMatrix W{t, bytes.data(), n, k, true};
        for (uint64_t m : {uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{7}, uint64_t{8}, uint64_t{9}, uint64_t{17}}) {
          for (int ak = 0; ak < 2; ++ak) {
            INFO(ft::gguf_type_name(t) << " k=" << k << " m=" << m << " weights " << wk << " activations " << ak);
            std::vector<float> a = q8_activations<float>(m, k, static_cast<uint32_t>(91 * m + k + t + wk));
            if (ak == 1)  // codes ±127 everywhere, one sign per 32-block (alternating; runs of 2 and 3 blocks)
              for (uint64_t c = 0; c < m * k; ++c) a[c] = ((c / 32) % 5 < 2) ? -0.75f : 0.75f;
            std::vector<float> avx2(m * n, NAN), portable(m * n, NAN);
            cpu::gguf_matmul_q8(W, a.data(), avx2.data(), m, cpu::Q8Path::avx2);
            cpu::gguf_matmul_q8(W, a.data(), portable.data(), m, cpu::Q8Path::portable);
            REQUIRE(std::memcmp(avx2.data(), portable.data(), avx2.size() * sizeof(float)) == 0);
            if (wk == 0 && ak == 0) {  // and the exact product within class A
              const std::vector<double> wd = ref::gguf_dequantize(t, bytes, n, k);
              check_class_a(avx2, wd, a, m, n, k);
            }
          }
        }
        // f16 / bf16 activations (the AVX2 quantiser widens them first)
        const uint64_t m = 3;
        const std::vector<f16> ah = q8_activations<f16>(m, k, static_cast<uint32_t>(k + t));
        const std::vector<bf16> ab = q8_activations<bf16>(m, k, static_cast<uint32_t>(k + t + 1));
        std::vector<f16> oh(m * n), ph(m * n);
        std::vector<bf16> ob(m * n), pb(m * n);
        for (uint64_t mm : {uint64_t{1}, m}) {
          INFO(ft::gguf_type_name(t) << " k=" << k << " m=" << mm << " weights " << wk << " f16 / bf16");
          cpu::gguf_matmul_q8(W, ah.data(), oh.data(), mm, cpu::Q8Path::avx2);
          cpu::gguf_matmul_q8(W, ah.data(), ph.data(), mm, cpu::Q8Path::portable);
          REQUIRE(std::memcmp(oh.data(), ph.data(), mm * n * sizeof(f16)) == 0);
          cpu::gguf_matmul_q8(W, ab.data(), ob.data(), mm, cpu::Q8Path::avx2);
          cpu::gguf_matmul_q8(W, ab.data(), pb.data(), mm, cpu::Q8Path::portable);
          REQUIRE(std::memcmp(ob.data(), pb.data(), mm * n * sizeof(bf16)) == 0);
        }
      }
  }
}

// Activations with zero, tiny, huge, infinite and NaN values: the AVX2 quantiser keeps the
// portable codes and scales (NaNs skipped in the block maximum, a zero block all codes 0), so the
// outputs have the same bits (NaN outputs compared as NaN).
TEST_CASE("gguf_matmul with 8-bit activations: the AVX2 quantiser on special values", "[gguf][q8]") {
  const uint64_t k = 256 * 2, n = 5, m = 9;
  for (int32_t t : ft::gguf_types()) {
    const std::vector<uint8_t> bytes = ft::random_gguf(t, n, k, 8800 + t);
    const cpu::GgufMatrix W{t, bytes.data(), n, k, true};
    std::vector<float> a = q8_activations<float>(m, k, static_cast<uint32_t>(t));
    for (uint64_t c = 0; c < 32; ++c) a[c] = 0.0f;                              // row 0, block 0: all zero
    for (uint64_t c = 32; c < 64; ++c) a[c] = (c % 2 ? -1.0f : 1.0f) * 1e-40f;  // denormals
    a[k + 3] = 6.0f;                                                            // row 1: the block maximum,
    a[k + 27] = std::numeric_limits<float>::quiet_NaN();                        // then a NaN (same lane of 8)
    a[k + 32 + 30] = std::numeric_limits<float>::quiet_NaN();                   // a NaN, then the maximum
    a[k + 32 + 31] = -5.0f;
    a[2 * k + 40] = 3e38f;                                                      // row 2: huge
    a[3 * k + 70] = -std::numeric_limits<float>::infinity();                    // row 3: −inf
    for (uint64_t c = 4 * k; c < 4 * k + 32; ++c) a[c] = 127.5f * static_cast<float>(c % 3);  // exact halves
    for (uint64_t mm : {uint64_t{1}, m}) {
      INFO(ft::gguf_type_name(t) << " m=" << mm);
      std::vector<float> avx2(mm * n, 7.0f), portable(mm * n, 7.0f);
      cpu::gguf_matmul_q8(W, a.data(), avx2.data(), mm, cpu::Q8Path::avx2);
      cpu::gguf_matmul_q8(W, a.data(), portable.data(), mm, cpu::Q8Path::portable);
      for (uint64_t i = 0; i < mm * n; ++i) {
        INFO("output " << i << ": " << avx2[i] << " vs " << portable[i]);
        if (std::isnan(portable[i])) REQUIRE(std::isnan(avx2[i]));
        else REQUIRE(std::memcmp(&avx2[i], &portable[i], sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("gguf_matmul with 8-bit activations gives the same bits on 1 and 2 threads", "[gguf][q8]") {
  const char* old = std::getenv("FERRUM_CPU_THREADS");
  const std::string saved = old ? old : "";
  for (int32_t t : ft::gguf_types()) {
    const uint64_t k = ft::gguf_qk(t) == 32 ? 32 * 19 : 256 * 3, n = 301;
    const std::vector<uint8_t> bytes = ft::random_gguf(t, n, k, 77 + t);
    const cpu::GgufMatrix W{t, bytes.data(), n, k, true};
    for (uint64_t m : {uint64_t{1}, uint64_t{16}}) {
      INFO(ft::gguf_type_name(t) << " m=" << m);
      const std::vector<bf16> a = q8_activations<bf16>(m, k, static_cast<uint32_t>(t + m));
      std::vector<std::vector<bf16>> outs;
      for (const char* threads : {"1", "2"}) {
        setenv("FERRUM_CPU_THREADS", threads, 1);
        cpu::shutdown_pool();
        REQUIRE(cpu::pool_threads() == static_cast<unsigned>(std::atoi(threads)));
        outs.emplace_back(m * n, from_float<bf16>(7.0f));
        cpu::gguf_matmul(W, a.data(), outs.back().data(), m);
      }
      REQUIRE(std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * sizeof(bf16)) == 0);
    }
  }
  if (old) setenv("FERRUM_CPU_THREADS", saved.c_str(), 1);
  else unsetenv("FERRUM_CPU_THREADS");
  cpu::shutdown_pool();
}

TEST_CASE("gguf_matmul with 8-bit activations: 300 rows (two chunks of quantised rows) give each row's own bits",
          "[gguf][q8]") {
  for (int32_t t : {int32_t{ft::kQ4_0}, int32_t{ft::kQ6_K}}) {
    const uint64_t k = ft::gguf_qk(t) == 32 ? 32 * 9 : 256, n = 7, m = 300;
    INFO(ft::gguf_type_name(t));
    const std::vector<uint8_t> bytes = ft::random_gguf(t, n, k, 300 + t);
    const cpu::GgufMatrix W{t, bytes.data(), n, k, true};
    const std::vector<float> a = q8_activations<float>(m, k, static_cast<uint32_t>(t));
    std::vector<float> all(m * n, 7.0f), one(n, 7.0f);
    cpu::gguf_matmul(W, a.data(), all.data(), m);
    for (uint64_t i : {uint64_t{0}, uint64_t{255}, uint64_t{256}, uint64_t{299}}) {
      cpu::gguf_matmul(W, a.data() + i * k, one.data(), 1);
      REQUIRE(std::memcmp(one.data(), all.data() + i * n, n * sizeof(float)) == 0);
    }
  }
}
