// GGUF matmul with exact (f32) activations, m = 1, on CPUs with AVX2 + FMA + F16C and without
// AVX-512 (gguf_kernel_name() == "avx2_fma"): the fused row dots of Q6_K, Q5_K and Q4_1 must give
// exactly the bits of the path these types took before them, the decode-into-a-tile path (every
// weight decoded to its exact §11.1 f32 value, then per output ONE 8-lane FMA accumulator over k in
// natural order, lanes reduced as (l0+l4, l1+l5, l2+l6, l3+l7) -> ((s0+s2)+(s1+s3)), FMA tail).
// Three independent checks per case:
//  * bitwise against that order re-implemented here in scalar code (std::fma), on weights taken from
//    the conformance kit's float64 decoder (conformance/ref/ref_gguf.hpp; every §11.1 weight is one
//    f32 rounding of its exact value, so float(double weight) is the f32 weight);
//  * bitwise against gguf_matmul at m = 2 (which still runs the tile path on these CPUs);
//  * class F (1e-5 for F32, conformance/ref/compare.hpp) against the float64 product.
// On other CPUs (AVX-512: other m = 1 kernels; generic: no FMA) only the class F check runs.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <ferrum/common/dtype.hpp>

#include "gguf.hpp"
#include "parallel.hpp"
#include "ref/compare.hpp"
#include "ref/ref_gguf.hpp"

using namespace ferrum;

namespace {

namespace ft = ferrum::testing;

bool avx2_kernels() { return std::string(cpu::gguf_kernel_name()) == "avx2_fma"; }

uint32_t bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}

// The tile path's order (dot_rows_avx2 of gguf.cpp), written out in scalar code.
float order_dot(const float* x, const float* w, uint64_t k) {
  float lane[8] = {};
  uint64_t p = 0;
  for (; p + 8 <= k; p += 8)
    for (int l = 0; l < 8; ++l) lane[l] = std::fma(x[p + l], w[p + l], lane[l]);
  float s[4];
  for (int i = 0; i < 4; ++i) s[i] = lane[i] + lane[i + 4];
  float r = (s[0] + s[2]) + (s[1] + s[3]);
  for (; p < k; ++p) r = std::fma(x[p], w[p], r);
  return r;
}

void put_f16(uint8_t* p, uint16_t h) {
  p[0] = static_cast<uint8_t>(h & 0xFF);
  p[1] = static_cast<uint8_t>(h >> 8);
}

// Random blocks (the kit's encoder), then about half of them made extreme: all quant bytes 0xFF
// (every code at its maximum, Q6_K's high bits 3), all 0x00, the largest finite f16 scale(s),
// subnormal f16 scale(s), or the extreme K-quant sub-block scales (Q6_K −128 / 127, Q5_K all bits).
std::vector<uint8_t> blocks(int32_t t, uint64_t n, uint64_t k, uint64_t seed) {
  std::vector<uint8_t> b = ft::random_gguf(t, n, k, seed);
  const uint64_t bb = ft::gguf_block_bytes(t), nb = b.size() / bb;
  std::mt19937_64 g(seed * 7 + 1);
  for (uint64_t i = 0; i < nb; ++i) {
    uint8_t* blk = b.data() + i * bb;
    const int mode = static_cast<int>(g() % 10);
    // quant byte ranges and f16 scale fields of the block
    uint64_t q0 = 0, q1 = 0;
    std::vector<uint64_t> f16s;
    if (t == ft::kQ6_K) { q0 = 0; q1 = 192; f16s = {208}; }
    else if (t == ft::kQ5_K) { q0 = 16; q1 = 176; f16s = {0, 2}; }
    else { q0 = 4; q1 = 20; f16s = {0, 2}; }  // Q4_1
    switch (mode) {
      case 0: std::memset(blk + q0, 0xFF, q1 - q0); break;
      case 1: std::memset(blk + q0, 0x00, q1 - q0); break;
      case 2: for (uint64_t f : f16s) put_f16(blk + f, static_cast<uint16_t>((g() & 1 ? 0x8000 : 0) | 0x7BFF)); break;
      case 3: for (uint64_t f : f16s) put_f16(blk + f, static_cast<uint16_t>(1 + g() % 0x3FF)); break;
      case 4:
        if (t == ft::kQ6_K) for (int j = 0; j < 16; ++j) blk[192 + j] = (g() & 1) ? 0x80 : 0x7F;
        else if (t == ft::kQ5_K) std::memset(blk + 4, 0xFF, 12);
        else std::memset(blk + q0, 0xFF, q1 - q0);
        break;
      default: break;  // as encoded
    }
  }
  return b;
}

// Activations in [-1, 1) with an outlier (|a| up to 64) every 37 columns.
std::vector<float> activations(uint64_t k, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> a(k);
  for (auto& v : a) v = u(g);
  for (uint64_t c = g() % 37; c < k; c += 37) a[c] = u(g) * 64.0f;
  return a;
}

const std::vector<int32_t> kTypes = {ft::kQ6_K, ft::kQ5_K, ft::kQ4_1};

std::vector<uint64_t> ks(int32_t t) {
  if (ft::gguf_qk(t) == 256) return {256, 512, 4096, 256 * 3, 256 * 5};
  return {256, 512, 4096, 32 * 7, 32 * 19};
}

}  // namespace

TEST_CASE("gguf_matmul exact, m = 1, AVX2 fused Q6_K / Q5_K / Q4_1 rows: the tile path's bits", "[gguf][exact]") {
  INFO("kernel: " << cpu::gguf_kernel_name());
  const bool avx2 = avx2_kernels();
  for (int32_t t : kTypes)
    for (uint64_t k : ks(t))
      for (uint64_t n : {uint64_t{1}, uint64_t{7}, uint64_t{33}}) {
        INFO(ft::gguf_type_name(t) << " k=" << k << " n=" << n);
        const std::vector<uint8_t> bytes = blocks(t, n, k, 100 * t + k + n);
        const std::vector<double> wd = ref::gguf_dequantize(t, bytes, n, k);
        std::vector<float> wf(wd.size());
        for (size_t i = 0; i < wd.size(); ++i) {
          wf[i] = static_cast<float>(wd[i]);
          if (t == ft::kQ6_K) REQUIRE(static_cast<double>(wf[i]) == wd[i]);  // Q6_K weights are exact in f32
        }
        // row 0: the activations under test; row 1 (m = 2 only): different ones
        std::vector<float> a = activations(k, static_cast<uint32_t>(t * 1000 + k + n));
        const std::vector<float> a1 = activations(k, static_cast<uint32_t>(t * 1000 + k + n + 1));
        a.insert(a.end(), a1.begin(), a1.end());
        const cpu::GgufMatrix W{t, bytes.data(), n, k};
        std::vector<float> one(n, 7.0f), two(2 * n, 7.0f);
        cpu::gguf_matmul(W, a.data(), one.data(), 1);
        cpu::gguf_matmul(W, a.data(), two.data(), 2);

        // class F against the float64 product
        std::vector<double> ref, got(one.begin(), one.end());
        ref::gguf_matmul(std::vector<double>(a.begin(), a.begin() + k), wd, ref, 1, n, k);
        const ft::CompareResult cr = ft::compare(got, ref, FERRUM_DTYPE_F32, n, 'F');
        INFO(cr.message);
        REQUIRE(cr.ok);
        if (!avx2) continue;
        for (uint64_t j = 0; j < n; ++j) {
          const float want = order_dot(a.data(), wf.data() + j * k, k);
          INFO("output " << j << ": got " << one[j] << " want " << want << " (tile path, m = 2: " << two[j] << ")");
          REQUIRE(bits(one[j]) == bits(want));
          REQUIRE(bits(two[j]) == bits(want));
        }
      }
}

TEMPLATE_TEST_CASE("gguf_matmul exact, m = 1, AVX2 fused rows: f16 / bf16 activations give the tile path's bits",
                   "[gguf][exact]", f16, bf16) {
  if (!avx2_kernels()) SUCCEED("not the AVX2 kernels");
  else
    for (int32_t t : kTypes) {
      const uint64_t k = ft::gguf_qk(t) == 256 ? 256 * 3 : 32 * 19, n = 13;
      INFO(ft::gguf_type_name(t));
      const std::vector<uint8_t> bytes = blocks(t, n, k, 31 + t);
      std::vector<float> af = activations(2 * k, static_cast<uint32_t>(t));
      std::vector<TestType> a(2 * k);
      for (uint64_t i = 0; i < 2 * k; ++i) a[i] = from_float<TestType>(af[i]);
      const cpu::GgufMatrix W{t, bytes.data(), n, k};
      std::vector<TestType> one(n, from_float<TestType>(7.0f)), two(2 * n, from_float<TestType>(7.0f));
      cpu::gguf_matmul(W, a.data(), one.data(), 1);
      cpu::gguf_matmul(W, a.data(), two.data(), 2);
      REQUIRE(std::memcmp(one.data(), two.data(), n * sizeof(TestType)) == 0);
    }
}

TEST_CASE("gguf_matmul exact, m = 1, fused Q6_K / Q5_K / Q4_1 rows: the same bits on 1 and 2 threads", "[gguf][exact]") {
  const char* old = std::getenv("FERRUM_CPU_THREADS");
  const std::string saved = old ? old : "";
  for (int32_t t : kTypes) {
    const uint64_t k = ft::gguf_qk(t) == 256 ? 256 * 3 : 32 * 19, n = 301;
    INFO(ft::gguf_type_name(t));
    const std::vector<uint8_t> bytes = blocks(t, n, k, 77 + t);
    const std::vector<float> a = activations(k, static_cast<uint32_t>(t + 5));
    const cpu::GgufMatrix W{t, bytes.data(), n, k};
    std::vector<std::vector<float>> outs;
    for (const char* threads : {"1", "2"}) {
      setenv("FERRUM_CPU_THREADS", threads, 1);
      cpu::shutdown_pool();
      REQUIRE(cpu::pool_threads() == static_cast<unsigned>(std::atoi(threads)));
      outs.emplace_back(n, 7.0f);
      cpu::gguf_matmul(W, a.data(), outs.back().data(), 1);
    }
    REQUIRE(std::memcmp(outs[0].data(), outs[1].data(), n * sizeof(float)) == 0);
  }
  if (old) setenv("FERRUM_CPU_THREADS", saved.c_str(), 1);
  else unsetenv("FERRUM_CPU_THREADS");
  cpu::shutdown_pool();
}
