// ferrum-demo's model on the CPU plugin against the float64 host reference of the same model
// (conformance/ref/qwen_ref.hpp): last-token logits of the prefill and of every decode step, and
// the greedy tokens.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "demo_model.hpp"
#include "ref/compare.hpp"
#include "ref/qwen_ref.hpp"

namespace {

struct Shape {
  uint64_t hidden, layers, q_heads, kv_heads, head_dim, ffn, vocab;
};

void run_case(const Shape& s, ferrum::Dtype dtype, uint64_t seed) {
  ferrum::demo::ModelConfig cfg;
  cfg.hidden = s.hidden; cfg.layers = s.layers; cfg.q_heads = s.q_heads; cfg.kv_heads = s.kv_heads;
  cfg.head_dim = s.head_dim; cfg.ffn = s.ffn; cfg.vocab = s.vocab; cfg.seed = seed; cfg.max_positions = 64;
  ferrum::ref::QwenConfig rc;
  rc.hidden = s.hidden; rc.layers = s.layers; rc.q_heads = s.q_heads; rc.kv_heads = s.kv_heads;
  rc.head_dim = s.head_dim; rc.ffn = s.ffn; rc.vocab = s.vocab;
  const int32_t dt = static_cast<int32_t>(dtype);

  ferrum::Backend backend = ferrum::Backend::load("cpu");
  ferrum::Context ctx = backend.create_context({}, dtype);
  const std::vector<uint32_t> prompt = {3, 17, 5, 0, uint32_t(s.vocab - 1), uint32_t(42 % s.vocab), 9};
  ferrum::demo::Model model(ctx, cfg, prompt.size());
  const ferrum::ref::QwenWeights w = ferrum::ref::make_weights(rc, seed, dt);
  ferrum::ref::ForwardOptions opt;
  opt.tab_dtype = FERRUM_DTYPE_F32;  // the demo uploads f32 RoPE tables
  if (dt != FERRUM_DTYPE_F32) opt.act_dtype = dt;  // follow the stored 16-bit intermediates
  ferrum::ref::KvCache cache;

  std::vector<uint32_t> step = prompt;
  for (int iter = 0; iter < 5; ++iter) {
    uint32_t next = 0;
    std::vector<float> got = model.forward(step, next, true);
    std::vector<double> ref_all = ferrum::ref::forward(rc, w, step, cache, opt);
    std::vector<double> ref(ref_all.end() - s.vocab, ref_all.end());
    std::vector<double> out(got.begin(), got.end());
    // A whole model compounds per-op rounding: allow 20x the per-op F32 class (documented).
    const double tol = dt == FERRUM_DTYPE_F32 ? 2e-4 : 5e-2;
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      REQUIRE(std::isfinite(out[i]));
      num += (out[i] - ref[i]) * (out[i] - ref[i]);
      den += ref[i] * ref[i];
    }
    INFO("step " << iter << " relative L2 error " << std::sqrt(num / den));
    CHECK(std::sqrt(num / den) <= tol);
    if (dt == FERRUM_DTYPE_F32) CHECK(next == ferrum::ref::argmax_row(ref.data(), s.vocab));
    step = {next};
  }
}

}  // namespace

TEST_CASE("demo model matches the float64 reference on the CPU plugin (f32)", "[demo][cpu]") {
  SECTION("GQA 2, head_dim 16") { run_case({64, 2, 4, 2, 16, 128, 97}, ferrum::Dtype::f32, 7); }
  SECTION("MHA, odd sizes") { run_case({48, 3, 3, 3, 8, 72, 61}, ferrum::Dtype::f32, 11); }
  SECTION("GQA 4") { run_case({96, 2, 8, 2, 12, 160, 101}, ferrum::Dtype::f32, 5); }
}

TEST_CASE("demo model runs close to the reference in bf16 and f16", "[demo][cpu]") {
  run_case({64, 2, 4, 2, 16, 128, 97}, ferrum::Dtype::bf16, 3);
  run_case({64, 2, 4, 2, 16, 128, 97}, ferrum::Dtype::f16, 3);
}
