// ferrum-demo's model on the CPU plugin against the float64 host reference of the same model
// (conformance/ref/qwen_ref.hpp): last-token logits of the prefill and of every decode step, and
// the greedy tokens, with each of its KV caches (contiguous, paged, int8 / fp8 paged); the f32
// paged cache generates exactly the contiguous cache's tokens.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "demo_model.hpp"
#include "ref/compare.hpp"
#include "ref/qwen_ref.hpp"
#include "ref/ref_gguf.hpp"

namespace {

struct Shape {
  uint64_t hidden, layers, q_heads, kv_heads, head_dim, ffn, vocab;
};

using ferrum::demo::KvDtype;
using ferrum::demo::KvLayout;

struct Kv {
  KvLayout layout = KvLayout::contiguous;
  KvDtype dtype = KvDtype::activation;
  uint64_t block_size = 16;
  int32_t quant = 0;  // GGUF type of the projections (ModelConfig::quant)
};

// The reference's projection matrix as the demo's quantised weight holds it: the f32 values
// quantised by quantize_gguf, then dequantised exactly (§11.1).
void requantize(std::vector<double>& m, int32_t type, uint64_t rows, uint64_t cols) {
  if (type == 0) return;
  std::vector<float> v(m.begin(), m.end());
  m = ferrum::ref::gguf_dequantize(type, ferrum::demo::quantize_gguf(type, v, rows, cols), rows, cols);
}

ferrum::demo::ModelConfig make_config(const Shape& s, uint64_t seed, Kv kv, uint64_t max_positions) {
  ferrum::demo::ModelConfig cfg;
  cfg.hidden = s.hidden; cfg.layers = s.layers; cfg.q_heads = s.q_heads; cfg.kv_heads = s.kv_heads;
  cfg.head_dim = s.head_dim; cfg.ffn = s.ffn; cfg.vocab = s.vocab; cfg.seed = seed;
  cfg.max_positions = max_positions;
  cfg.kv = kv.layout;
  cfg.kv_dtype = kv.dtype;
  cfg.kv_block_size = kv.block_size;
  cfg.quant = kv.quant;
  return cfg;
}

// Runs the prompt and four decode steps against the reference; returns the worst relative L2
// error of the logits over the steps.
double run_case(const Shape& s, ferrum::Dtype dtype, uint64_t seed, Kv kv = {}) {
  const ferrum::demo::ModelConfig cfg = make_config(s, seed, kv, 64);
  ferrum::ref::QwenConfig rc;
  rc.hidden = s.hidden; rc.layers = s.layers; rc.q_heads = s.q_heads; rc.kv_heads = s.kv_heads;
  rc.head_dim = s.head_dim; rc.ffn = s.ffn; rc.vocab = s.vocab;
  const int32_t dt = static_cast<int32_t>(dtype);

  ferrum::Backend backend = ferrum::Backend::load("cpu");
  ferrum::Context ctx = backend.create_context({}, dtype);
  const std::vector<uint32_t> prompt = {3, 17, 5, 0, uint32_t(s.vocab - 1), uint32_t(42 % s.vocab), 9};
  ferrum::demo::Model model(ctx, cfg, prompt.size());
  ferrum::ref::QwenWeights w = ferrum::ref::make_weights(rc, seed, dt);
  for (auto& L : w.layers) {
    const uint64_t hd = s.head_dim;
    requantize(L.w_qkv, kv.quant, (s.q_heads + 2 * s.kv_heads) * hd, s.hidden);
    requantize(L.w_o, kv.quant, s.hidden, s.q_heads * hd);
    requantize(L.w_gate_up, kv.quant, 2 * s.ffn, s.hidden);
    requantize(L.w_down, kv.quant, s.hidden, s.ffn);
  }
  ferrum::ref::ForwardOptions opt;
  opt.tab_dtype = FERRUM_DTYPE_F32;  // the demo uploads f32 RoPE tables
  if (dt != FERRUM_DTYPE_F32) opt.act_dtype = dt;  // follow the stored 16-bit intermediates
  ferrum::ref::KvCache cache;
  const bool quant = kv.dtype != KvDtype::activation;

  double worst = 0;
  std::vector<uint32_t> step = prompt;
  for (int iter = 0; iter < 5; ++iter) {
    uint32_t next = 0;
    std::vector<float> got = model.forward(step, next, true);
    std::vector<double> ref_all = ferrum::ref::forward(rc, w, step, cache, opt);
    std::vector<double> ref(ref_all.end() - s.vocab, ref_all.end());
    std::vector<double> out(got.begin(), got.end());
    // A whole model compounds per-op rounding: allow 20x the per-op F32 class (documented).
    // int8 / fp8 KV add a quantisation error of about 2^-8 (int8) / 2^-4 (fp8) per element.
    const double tol = quant ? (kv.dtype == KvDtype::int8 ? 1e-2 : 5e-2) : dt == FERRUM_DTYPE_F32 ? 2e-4 : 5e-2;
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      REQUIRE(std::isfinite(out[i]));
      num += (out[i] - ref[i]) * (out[i] - ref[i]);
      den += ref[i] * ref[i];
    }
    INFO("step " << iter << " relative L2 error " << std::sqrt(num / den));
    CHECK(std::sqrt(num / den) <= tol);
    worst = std::max(worst, std::sqrt(num / den));
    if (dt == FERRUM_DTYPE_F32 && !quant) CHECK(next == ferrum::ref::argmax_row(ref.data(), s.vocab));
    step = {next};
  }
  return worst;
}

// Greedy ids: the prompt's prediction, then `n - 1` decode steps.
std::vector<uint32_t> generate(const Shape& s, uint64_t seed, Kv kv, const std::vector<uint32_t>& prompt, size_t n) {
  const ferrum::demo::ModelConfig cfg = make_config(s, seed, kv, prompt.size() + n + 1);
  ferrum::Backend backend = ferrum::Backend::load("cpu");
  ferrum::Context ctx = backend.create_context({}, ferrum::Dtype::f32);
  ferrum::demo::Model model(ctx, cfg, prompt.size());
  std::vector<uint32_t> ids;
  uint32_t next = 0;
  model.forward(prompt, next, false);
  ids.push_back(next);
  while (ids.size() < n) {
    model.forward({next}, next, false);
    ids.push_back(next);
  }
  return ids;
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

TEST_CASE("demo model with a paged KV cache matches the float64 reference (f32)", "[demo][cpu][paged]") {
  SECTION("GQA 2, block 16") { run_case({64, 2, 4, 2, 16, 128, 97}, ferrum::Dtype::f32, 7, {KvLayout::paged}); }
  SECTION("MHA, odd sizes, block 3") {
    run_case({48, 3, 3, 3, 8, 72, 61}, ferrum::Dtype::f32, 11, {KvLayout::paged, KvDtype::activation, 3});
  }
  SECTION("GQA 4, block 1") {
    run_case({96, 2, 8, 2, 12, 160, 101}, ferrum::Dtype::f32, 5, {KvLayout::paged, KvDtype::activation, 1});
  }
  SECTION("bf16") { run_case({64, 2, 4, 2, 16, 128, 97}, ferrum::Dtype::bf16, 3, {KvLayout::paged}); }
}

TEST_CASE("demo model with Q8_0 / Q4_0 projections matches the reference on the dequantised weights", "[demo][cpu][quant]") {
  // hidden, ffn and q_heads x head_dim multiples of 32 (the GGUF block width); gguf_matmul keeps
  // the activations in f32, so the F32 tolerance and the greedy tokens hold against the reference
  // run on the dequantised projections.
  for (int32_t q : {8, 2}) {
    INFO("quant type " << q);
    run_case({64, 2, 4, 2, 16, 128, 97}, ferrum::Dtype::f32, 7, {KvLayout::contiguous, KvDtype::activation, 16, q});
    run_case({96, 2, 4, 2, 32, 160, 101}, ferrum::Dtype::f32, 5, {KvLayout::paged, KvDtype::activation, 16, q});
  }
  // And the quantised weights change the model (the test would pass vacuously otherwise).
  const Shape s{64, 2, 4, 2, 16, 128, 97};
  std::vector<uint32_t> prompt = {3, 17, 5, 9};
  ferrum::Backend backend = ferrum::Backend::load("cpu");
  std::vector<float> logits[2];
  for (int i = 0; i < 2; ++i) {
    ferrum::Context ctx = backend.create_context({}, ferrum::Dtype::f32);
    ferrum::demo::Model model(ctx, make_config(s, 7, {KvLayout::contiguous, KvDtype::activation, 16, i ? 2 : 0}, 16),
                              prompt.size());
    uint32_t next = 0;
    logits[i] = model.forward(prompt, next, true);
  }
  CHECK(logits[0] != logits[1]);
}

TEST_CASE("demo model: f32 paged tokens equal contiguous tokens", "[demo][cpu][paged]") {
  // A 37-token prompt and 40 new tokens cross several blocks whose table is shuffled.
  const Shape s{64, 2, 4, 2, 16, 128, 97};
  std::vector<uint32_t> prompt;
  for (uint32_t i = 0; i < 37; ++i) prompt.push_back((i * 31 + 7) % 97);
  const auto contiguous = generate(s, 19, {}, prompt, 40);
  for (uint64_t bs : {16u, 7u}) {
    INFO("block size " << bs);
    const auto paged = generate(s, 19, {KvLayout::paged, KvDtype::activation, bs}, prompt, 40);
    CHECK(paged == contiguous);
  }
  // The tokens are not constant (a comparison of two stuck generators would prove nothing).
  CHECK(std::count(contiguous.begin(), contiguous.end(), contiguous[0]) < 20);
}

TEST_CASE("demo model with int8 / fp8 paged KV runs close to the reference", "[demo][cpu][paged][quant]") {
  const Shape s{64, 2, 4, 2, 16, 128, 97};
  for (KvDtype q : {KvDtype::int8, KvDtype::fp8}) {
    for (uint64_t bs : {16u, 5u}) {
      const double err = run_case(s, ferrum::Dtype::f32, 13, {KvLayout::paged, q, bs});
      // Reported, and bounded above by run_case's tolerance; a quantised cache is not exact.
      WARN((q == KvDtype::int8 ? "int8" : "fp8") << " KV, block " << bs << ": worst relative L2 error of the logits "
                                                 << err);
      CHECK(err > 0);
    }
  }
  std::vector<uint32_t> prompt;
  for (uint32_t i = 0; i < 21; ++i) prompt.push_back((i * 13 + 2) % 97);
  const auto exact = generate(s, 23, {}, prompt, 16);
  for (KvDtype q : {KvDtype::int8, KvDtype::fp8}) {
    const auto ids = generate(s, 23, {KvLayout::paged, q}, prompt, 16);
    size_t same = 0;
    for (size_t i = 0; i < ids.size(); ++i) same += ids[i] == exact[i];
    WARN((q == KvDtype::int8 ? "int8" : "fp8") << " KV: " << same << " of " << ids.size()
                                               << " greedy tokens equal the f32 contiguous tokens");
    CHECK(ids.size() == exact.size());
  }
}
