// ferrum-demo's model: a small Qwen3-style decoder (seeded random weights) run through the
// facade's dense ops on any backend, with a contiguous KV cache per layer.
//
// Weights are generated exactly as conformance/ref/qwen_ref.hpp documents (splitmix64-based
// weight_value, same tensor ids), so a float64 host reference can check the logits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ferrum/ferrum.hpp>

namespace ferrum::demo {

struct ModelConfig {
  uint64_t hidden = 1024, layers = 8, q_heads = 16, kv_heads = 8, head_dim = 128, ffn = 3072, vocab = 32000;
  double rope_theta = 1e6;
  double eps = 1e-6;
  uint64_t max_positions = 4096;  // KV capacity and RoPE table rows
  uint64_t seed = 42;
};

// The documented deterministic weight value (see conformance/ref/qwen_ref.hpp).
double weight_value(uint64_t seed, uint64_t tensor_id, uint64_t index, double scale);

class Model {
 public:
  // What Model(ctx, cfg, max_tokens) allocates, in bytes, for activations of `element_size`
  // bytes (computed in double, so it cannot wrap): device memory (weights, KV cache, RoPE tables,
  // scratch) and the largest host staging vector used while generating the weights.
  struct Footprint {
    double weight_bytes = 0, kv_bytes = 0, device_bytes = 0, host_bytes = 0;
  };
  static Footprint footprint(const ModelConfig& cfg, uint64_t element_size, uint64_t max_tokens);

  // Generates and uploads the weights; allocates caches and scratch for up to `max_tokens`
  // tokens per forward call.
  Model(Context& ctx, const ModelConfig& cfg, uint64_t max_tokens);

  // Runs `tokens` at positions len() .. len() + T − 1, appends their K/V, and returns the logits
  // of the LAST token ([vocab], as f32) when `want_logits`; argmax of that row in `next`.
  std::vector<float> forward(const std::vector<uint32_t>& tokens, uint32_t& next, bool want_logits);

  // One decode step of `token` at position len() through a CUDA-graph-style replay: the step is
  // captured once (dev-state mode: token, position and KV length come from device memory, OPS.md
  // §8.2) and replayed for every later token. Needs the graph family; returns the argmax.
  uint32_t decode_graph(uint32_t token);
  // True when the backend has the ops decode_graph needs.
  static bool graphs_supported(const Backend& backend);

  uint64_t len() const { return len_; }
  void reset() { len_ = 0; }
  // Drops captured graphs (call before the context or the buffers go away).
  void reset_graphs();
  uint64_t weight_bytes() const { return weight_bytes_; }
  // Bytes of weights one decode step reads: every weight except the embedding table, of which
  // it reads one row.
  uint64_t decode_weight_bytes() const {
    return weight_bytes_ - (cfg_.vocab - 1) * cfg_.hidden * element_size(ctx_.activation_dtype());
  }
  const Buffer& logits() const { return logits_; }
  uint64_t kv_bytes_per_token() const;

 private:
  struct Layer {
    Buffer input_norm, w_qkv, q_norm, k_norm, w_o, post_norm, w_gate_up, w_down, cache_k, cache_v;
  };
  Buffer upload_matrix(uint64_t id, uint64_t rows, uint64_t cols, double scale);
  Buffer upload_norm(uint64_t id, uint64_t n);

  Context& ctx_;
  ModelConfig cfg_;
  uint64_t max_tokens_;
  uint64_t len_ = 0;
  uint64_t weight_bytes_ = 0;
  Buffer embedding_, final_norm_, lm_head_, cos_, sin_;
  std::vector<Layer> layers_;
  // scratch, sized for max_tokens
  Buffer x_, a_, qkv_, q_, attn_, attn_t_, o_, gate_up_, act_, down_, last_, logits_;
  // decode-graph scratch (one token)
  Buffer q_raw_, k_raw_, v_raw_, k_rot_;
  bool graph_captured_ = false;
  void record_decode_step();
};

}  // namespace ferrum::demo
