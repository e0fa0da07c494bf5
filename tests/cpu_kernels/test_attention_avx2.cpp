// The AVX2 + FMA + F16C flash-attention tiles (attention_tiles.cpp, namespace v2): prefill blocks
// (16 query rows as two 8-lane halves) and decode blocks (16 keys' dots at a time), run through
// flash_attention and paged_attention, against a float64 softmax reference at the F tolerances of
// test_kernels.cpp, thread-count independence, exp8 against std::exp, and — on AVX-512 machines —
// the same bits as the AVX-512 tiles. On machines with AVX-512 the tests force the AVX2 tiles
// (attn_tiles::force_isa); on machines without AVX2 they return at once (nothing to test).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <ferrum/common/dtype.hpp>

#include "attention.hpp"
#include "attention_tiles.hpp"
#include "kernel_test_util.hpp"
#include "paged.hpp"
#include "parallel.hpp"
#include "simd.hpp"

using namespace ferrum;
namespace tiles = ferrum::cpu::attn_tiles;

using test::random_vec;
using test::tol;

namespace {

template <class T>
bool same_bits_vec(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Runs the tiles on AVX2 for the scope (forced down on AVX-512 machines), back to the best after.
struct Avx2Scope {
  Avx2Scope() { tiles::force_isa(tiles::Isa::avx2); }
  ~Avx2Scope() { tiles::force_isa(tiles::Isa::avx512); }
};

struct Case {
  uint64_t batch, q_len, kv_len, pos_offset, nh, nkv, hd;
  bool causal;
  uint64_t stride, window;
};

template <class T>
std::vector<T> run(const Case& c, const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v) {
  std::vector<T> out(q.size(), from_float<T>(9.0f));
  cpu::flash_attention(q.data(), k.data(), v.data(), out.data(), c.batch, c.q_len, c.kv_len, c.pos_offset, c.nh, c.nkv,
                       c.hd, c.causal, 0.0f, c.stride, c.window);
  return out;
}

// The float64 reference (kernel_test_util.hpp) at this file's shapes (default scale).
template <class T>
std::vector<double> reference(const Case& c, const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v) {
  return test::attention_reference(
      {c.batch, c.q_len, c.kv_len, c.pos_offset, c.nh, c.nkv, c.hd, c.causal, 0.0, c.stride, c.window}, q, k, v);
}

// docs/spec.md §0.13: ‖out − ref‖₂ / ‖ref‖₂, no NaN / Inf; rows with an empty visible set exactly +0.0.
template <class T>
void check_close(const std::vector<T>& out, const std::vector<double>& ref) {
  REQUIRE(out.size() == ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double o = to_float(out[i]);
    REQUIRE(std::isfinite(o));
    if (ref[i] == 0.0) REQUIRE(o == 0.0);
    num += (o - ref[i]) * (o - ref[i]);
    den += ref[i] * ref[i];
  }
  REQUIRE(den > 0);
  INFO("rel err " << std::sqrt(num / den));
  REQUIRE(std::sqrt(num / den) <= tol<T>());
}

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      // prefill-sized (q_len >= 8: the block tiles), odd kv lengths, GQA, causal / not / windowed
      {1, 17, 17, 0, 4, 2, 64, true, 0, 0},
      {2, 17, 131, 114, 4, 1, 128, true, 0, 0},
      {1, 200, 200, 0, 2, 1, 64, true, 0, 0},
      {1, 200, 333, 133, 8, 2, 128, true, 0, 0},
      {1, 17, 77, 0, 2, 2, 64, false, 0, 0},
      {1, 33, 101, 3, 3, 1, 128, false, 128, 0},           // padded kv stride
      {1, 200, 257, 57, 4, 2, 64, true, 0, 37},            // sliding window
      {2, 17, 37, 40, 2, 1, 128, true, 0, 5},              // window past the keys: some rows see none
      {1, 9, 1, 0, 2, 1, 64, false, 0, 0},                 // one key
      // decode-sized (the decode tiles; q_len 1 and a few rows), GQA, windows, odd lengths
      {2, 1, 1, 0, 8, 2, 64, true, 0, 0},
      {2, 1, 17, 16, 8, 2, 128, true, 0, 0},
      {1, 1, 333, 332, 4, 1, 64, true, 0, 0},
      {3, 1, 200, 199, 8, 8, 128, true, 0, 0},
      {1, 3, 333, 330, 8, 2, 128, true, 0, 100},
      {1, 5, 129, 124, 4, 4, 64, false, 0, 0},
      {1, 1, 1001, 1000, 2, 1, 128, true, 0, 77},
  };
  return c;
}

FERRUM_AVX2 void exp8_of(const float* x, float* y) { _mm256_storeu_ps(y, cpu::simd::exp8(_mm256_loadu_ps(x))); }
FERRUM_AVX512 void exp16_of(const float* x, float* y) { _mm512_storeu_ps(y, cpu::simd::exp16(_mm512_loadu_ps(x))); }

}  // namespace

TEST_CASE("the attention tiles run on AVX2 on AVX2 machines", "[attention][avx2]") {
  if (!cpu::simd::has_avx2()) {
    WARN("no AVX2 + FMA + F16C: nothing to test");
    return;
  }
  if (!cpu::simd::has_avx512()) REQUIRE(tiles::isa() == tiles::Isa::avx2);
  Avx2Scope avx2;
  REQUIRE(tiles::isa() == tiles::Isa::avx2);
  REQUIRE(tiles::available(64));
  REQUIRE(tiles::available(128));
  REQUIRE(!tiles::available(96));
}

TEST_CASE("exp8 matches std::exp and carries exp16's bits", "[attention][avx2]") {
  if (!cpu::simd::has_avx2()) {
    WARN("no AVX2 + FMA + F16C: nothing to test");
    return;
  }
  std::vector<float> x;
  for (float t = -160.0f; t <= 100.0f; t += 0.01171875f) x.push_back(t);
  for (float t : {-87.5f, -103.9f, -104.0f, -126.0f, -149.0f, 88.7f, 88.8f, 0.0f, -0.0f}) x.push_back(t);
  x.push_back(std::numeric_limits<float>::infinity());
  x.push_back(-std::numeric_limits<float>::infinity());
  while (x.size() % 16) x.push_back(0.5f);
  std::vector<float> y(x.size()), z(x.size());
  for (size_t i = 0; i < x.size(); i += 8) exp8_of(x.data() + i, y.data() + i);
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = std::exp(static_cast<double>(x[i]));
    INFO("x = " << x[i] << " exp8 = " << y[i] << " exp = " << e);
    if (e > 3.4028234663852886e38) REQUIRE(std::isinf(y[i]));
    else if (e < 1.1754943508222875e-38) REQUIRE(std::fabs(y[i] - e) <= 1.5e-45);  // denormals: absolute
    else REQUIRE(std::fabs(y[i] - e) <= 2e-7 * e);
  }
  float nan_in[8], nan_out[8];
  std::fill(nan_in, nan_in + 8, std::numeric_limits<float>::quiet_NaN());
  exp8_of(nan_in, nan_out);
  for (float o : nan_out) REQUIRE(std::isnan(o));
  if (cpu::simd::has_avx512()) {
    for (size_t i = 0; i < x.size(); i += 16) exp16_of(x.data() + i, z.data() + i);
    REQUIRE(std::memcmp(y.data(), z.data(), y.size() * sizeof(float)) == 0);
  }
}

TEMPLATE_TEST_CASE("AVX2 attention tiles match float64 softmax attention", "[attention][avx2]", float, f16, bf16) {
  using T = TestType;
  if (!cpu::simd::has_avx2()) {
    WARN("no AVX2 + FMA + F16C: nothing to test");
    return;
  }
  Avx2Scope avx2;
  for (const Case& c : cases()) {
    INFO("b=" << c.batch << " q=" << c.q_len << " kv=" << c.kv_len << " pos=" << c.pos_offset << " h=" << c.nh << "/"
              << c.nkv << " hd=" << c.hd << " causal=" << c.causal << " win=" << c.window);
    const uint64_t S = c.stride ? c.stride : c.kv_len;
    auto q = random_vec<T>(c.batch * c.nh * c.q_len * c.hd, 11 + c.q_len, -2, 2);
    auto k = random_vec<T>(c.batch * c.nkv * S * c.hd, 12 + c.kv_len, -2, 2);
    auto v = random_vec<T>(c.batch * c.nkv * S * c.hd, 13 + c.hd);
    check_close(run(c, q, k, v), reference(c, q, k, v));
  }
}

// Large scores (|q·k|·σ up to ~100): the online softmax's rescaling and exp8's range reduction.
TEST_CASE("AVX2 attention tiles on peaked softmaxes", "[attention][avx2]") {
  if (!cpu::simd::has_avx2()) {
    WARN("no AVX2 + FMA + F16C: nothing to test");
    return;
  }
  Avx2Scope avx2;
  for (const Case& c : {Case{1, 40, 300, 260, 2, 1, 64, true, 0, 0}, Case{1, 1, 300, 299, 2, 1, 128, true, 0, 0}}) {
    INFO("q=" << c.q_len << " hd=" << c.hd);
    auto q = random_vec<float>(c.nh * c.q_len * c.hd, 21, -4, 4);
    auto k = random_vec<float>(c.nkv * c.kv_len * c.hd, 22, -4, 4);
    auto v = random_vec<float>(c.nkv * c.kv_len * c.hd, 23);
    check_close(run(c, q, k, v), reference(c, q, k, v));
  }
}

TEMPLATE_TEST_CASE("AVX2 attention tiles give the same bits on 1 and 2 threads", "[attention][avx2]", float, f16,
                   bf16) {
  using T = TestType;
  if (!cpu::simd::has_avx2()) {
    WARN("no AVX2 + FMA + F16C: nothing to test");
    return;
  }
  Avx2Scope avx2;
  const std::vector<Case> cs = {{2, 37, 300, 263, 8, 2, 64, true, 0, 0},
                                {1, 200, 333, 133, 4, 2, 128, true, 0, 57},
                                {2, 1, 1001, 1000, 8, 2, 128, true, 0, 0},
                                {3, 2, 333, 331, 4, 4, 64, true, 0, 100}};
  const char* old = std::getenv("FERRUM_CPU_THREADS");
  const std::string saved = old ? old : "";
  std::vector<std::vector<std::vector<T>>> outs;
  for (const char* threads : {"1", "2"}) {
    setenv("FERRUM_CPU_THREADS", threads, 1);
    cpu::shutdown_pool();
    REQUIRE(cpu::pool_threads() == static_cast<unsigned>(std::atoi(threads)));
    std::vector<std::vector<T>> o;
    for (const Case& c : cs) {
      auto q = random_vec<T>(c.batch * c.nh * c.q_len * c.hd, 31 + c.q_len, -2, 2);
      auto k = random_vec<T>(c.batch * c.nkv * c.kv_len * c.hd, 32, -2, 2), v = random_vec<T>(c.batch * c.nkv * c.kv_len * c.hd, 33);
      o.push_back(run(c, q, k, v));
    }
    outs.push_back(o);
  }
  if (old) setenv("FERRUM_CPU_THREADS", saved.c_str(), 1);
  else unsetenv("FERRUM_CPU_THREADS");
  cpu::shutdown_pool();
  for (size_t i = 0; i < cs.size(); ++i) REQUIRE(same_bits_vec(outs[0][i], outs[1][i]));
}

// The row path (force_isa(none)) agrees with the tiles within the F tolerance; on AVX-512 machines
// the AVX2 tiles give the AVX-512 tiles' bits (the same per-lane operations in the same order).
TEMPLATE_TEST_CASE("AVX2 attention tiles against the row path and the AVX-512 tiles", "[attention][avx2]", float, f16,
                   bf16) {
  using T = TestType;
  if (!cpu::simd::has_avx2()) {
    WARN("no AVX2 + FMA + F16C: nothing to test");
    return;
  }
  for (const Case& c : cases()) {
    INFO("q=" << c.q_len << " kv=" << c.kv_len << " hd=" << c.hd << " win=" << c.window);
    const uint64_t S = c.stride ? c.stride : c.kv_len;
    auto q = random_vec<T>(c.batch * c.nh * c.q_len * c.hd, 41 + c.q_len, -2, 2);
    auto k = random_vec<T>(c.batch * c.nkv * S * c.hd, 42 + c.kv_len, -2, 2);
    auto v = random_vec<T>(c.batch * c.nkv * S * c.hd, 43 + c.hd);
    tiles::force_isa(tiles::Isa::none);
    REQUIRE(!tiles::available(c.hd));
    const auto row = run(c, q, k, v);
    tiles::force_isa(tiles::Isa::avx2);
    const auto a2 = run(c, q, k, v);
    tiles::force_isa(tiles::Isa::avx512);
    for (size_t i = 0; i < row.size(); ++i)
      REQUIRE(std::fabs(to_float(a2[i]) - to_float(row[i])) <= 8 * tol<T>() * (1 + std::fabs(to_float(row[i]))));
    if (cpu::simd::has_avx512()) REQUIRE(same_bits_vec(a2, run(c, q, k, v)));
  }
}
