// ferrum-bench — the GGUF quantised-matmul cases (see cases.cpp for the rest of the table).
//
//   gguf_matmul   Q4_0, Q8_0, Q4_K, Q6_K weights of n × k = 4096 × 4096 and 14336 × 4096 (the
//                 projections of an 8B Llama), m = 1, 16 and 256 rows of activations
//                 ("q4_k.n14336.k4096.m1"; --quick: n 4096, m 1 and 16). The weight's bytes are
//                 valid GGUF blocks (seeded; finite scales), uploaded once per rotating copy.
//   marlin_gemm   GPTQ int4 weights of the same shapes, group size 128, asymmetric, no act-order
//                 ("g128.n14336.k4096.m1"); weight bytes = the nibbles + f16 scales + packed zeros.
//   gemm          the peer on the same shapes: the dense weight in the run's dtype ("dense.n14336.k4096.m1";
//                 on CUDA cuBLASLt, the reference of the GGUF and GPTQ targets).
// Bytes: the weight's block bytes (dense: n·k elements) + a + out.
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bench.hpp"
#include "ref/ref_gguf.hpp"
#include "ref/ref_gptq.hpp"

namespace ferrum::bench {

void add_quant_cases(const Env& env, std::vector<Case>& cs) {
  namespace ft = ferrum::testing;
  const bool quick = env.opt->quick;
  const double e = static_cast<double>(env.esz);
  for (uint64_t n : {uint64_t{4096}, uint64_t{14336}}) {
    if (quick && n > 4096) continue;
    const uint64_t k = 4096;
    for (uint64_t m : {uint64_t{1}, uint64_t{16}, uint64_t{256}}) {
      if (quick && m > 16) continue;
      const double bytes = (double(n) * k + double(m) * k + double(m) * n) * e;
      cs.push_back({"gemm", "dense.n" + std::to_string(n) + ".k" + std::to_string(k) + ".m" + std::to_string(m), bytes,
                    2.0 * m * n * k, bytes, 64, [=](Env& env, uint64_t copies) -> RunFn {
                      auto a = pool(env, copies, m * k), b = pool(env, copies, n * k), o = pool(env, copies, m * n);
                      Context* ctx = env.ctx;
                      return [=](uint64_t i) { ctx->gemm({.a = (*a)[i], .b = (*b)[i], .out = (*o)[i], .m = m, .n = n, .k = k}); };
                    }});
    }
  }
  for (uint64_t n : {uint64_t{4096}, uint64_t{14336}}) {
    if (quick && n > 4096) continue;
    const uint64_t k = 4096, g = 128;
    const double wbytes = double(n) * k / 2 + double(k / g) * n * 2 + double(k / g) * n / 2;
    for (uint64_t m : {uint64_t{1}, uint64_t{16}, uint64_t{256}}) {
      if (quick && m > 16) continue;
      const double bytes = wbytes + (double(m) * k + double(m) * n) * e;
      cs.push_back({"marlin_gemm", "g128.n" + std::to_string(n) + ".k" + std::to_string(k) + ".m" + std::to_string(m),
                    bytes, 2.0 * m * n * k, bytes, 64, [=](Env& env, uint64_t copies) -> RunFn {
                      const ft::GptqTensors t = ft::random_gptq(k, n, g, true, false, FERRUM_DTYPE_F16, 0x6b7e0000u + n);
                      auto ws = std::make_shared<std::vector<QWeight>>();
                      for (uint64_t i = 0; i < copies; ++i)
                        ws->push_back(env.ctx->load_gptq({.qweight = t.qweight.data(), .scales = t.scales_bytes.data(),
                                                          .qzeros = t.qzeros_ptr(), .g_idx = nullptr, .bits = 4,
                                                          .group_size = g, .k = k, .n = n, .scales_dtype = Dtype::f16,
                                                          .act_dtype = env.dt}));
                      auto a = pool(env, copies, m * k), o = pool(env, copies, m * n);
                      Context* ctx = env.ctx;
                      return [=](uint64_t i) { ctx->marlin_gemm({.a = (*a)[i], .weight = (*ws)[i], .out = (*o)[i], .m = m}); };
                    }});
    }
  }
  const int32_t types[] = {ft::kQ4_0, ft::kQ8_0, ft::kQ4_K, ft::kQ6_K};
  for (int32_t t : types) {
    for (uint64_t n : {uint64_t{4096}, uint64_t{14336}}) {
      if (quick && n > 4096) continue;
      const uint64_t k = 4096;
      const double wbytes = double(n) * (k / ft::gguf_qk(t)) * ft::gguf_block_bytes(t);
      for (uint64_t m : {uint64_t{1}, uint64_t{16}, uint64_t{256}}) {
        if (quick && m > 16) continue;
        const std::string name = ft::gguf_type_name(t);
        cs.push_back({"gguf_matmul", name + ".n" + std::to_string(n) + ".k" + std::to_string(k) + ".m" + std::to_string(m),
                      wbytes + (double(m) * k + double(m) * n) * e, 2.0 * m * n * k,
                      wbytes + (double(m) * k + double(m) * n) * e, 64,
                      [=](Env& env, uint64_t copies) -> RunFn {
                        const std::vector<uint8_t> bytes = ft::random_gguf(t, n, k, 0x5eed0000u + uint64_t(t));
                        auto ws = std::make_shared<std::vector<QWeight>>();
                        for (uint64_t i = 0; i < copies; ++i)
                          ws->push_back(env.ctx->load_quant(
                              {.quant_type = t, .bytes = std::span<const uint8_t>(bytes), .n_rows = n, .n_cols = k}));
                        auto a = pool(env, copies, m * k), o = pool(env, copies, m * n);
                        Context* ctx = env.ctx;
                        return [=](uint64_t i) { ctx->gguf_matmul({.a = (*a)[i], .weight = (*ws)[i], .out = (*o)[i], .m = m}); };
                      }});
      }
    }
  }
}

}  // namespace ferrum::bench
