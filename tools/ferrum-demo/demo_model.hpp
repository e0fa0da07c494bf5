// ferrum-demo's model: a small Qwen3-style decoder (seeded random weights) run through the
// facade's dense ops on any backend, with one of three KV caches per layer:
//  - contiguous: [kv_heads, max_positions, head_dim] buffers (split_qkv_norm_rope_into_cache +
//    flash_attention);
//  - paged: block pools [blocks, block_size, kv_heads, head_dim] of the activation dtype whose
//    block table lists the blocks in a seeded random order; the varlen writer
//    (split_qkv_norm_rope_into_paged_cache_varlen) fills them, prefill attends with
//    paged_varlen_attention, eager decode steps with paged_decode_attention and captured ones
//    with paged_batched_decode_attention (so `--graphs both` compares the two decode kernels);
//  - quantised paged (int8 or fp8 codes + f32 scales per token and KV head): split_qkv +
//    qk_norm_rope_batched_per_item give token-major K/V, <q>_kv_append_paged stores them and
//    <q>_paged_decode_attention attends, one call per query token (the ops have no multi-query
//    form). The append takes a host block list, so this cache has no graph path.
//
// Weights are generated exactly as conformance/ref/qwen_ref.hpp documents (splitmix64-based
// weight_value, same tensor ids), so a float64 host reference can check the logits.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ferrum/ferrum.hpp>

namespace ferrum::demo {

enum class KvLayout { contiguous, paged };
enum class KvDtype { activation, int8, fp8 };  // activation: the context's activation dtype

struct ModelConfig {
  uint64_t hidden = 1024, layers = 8, q_heads = 16, kv_heads = 8, head_dim = 128, ffn = 3072, vocab = 32000;
  double rope_theta = 1e6;
  double eps = 1e-6;
  uint64_t max_positions = 4096;  // KV capacity and RoPE table rows
  uint64_t seed = 42;
  KvLayout kv = KvLayout::contiguous;
  KvDtype kv_dtype = KvDtype::activation;  // int8 / fp8 need kv == paged
  uint64_t kv_block_size = 16;             // tokens per block of the paged caches
  // GGUF type of every layer's four projection matrices (qkv, o, gate_up, down), quantised on the
  // host from the same f32 values and run through gguf_matmul: 0 (none: the activation dtype, gemm),
  // 8 (Q8_0) or 2 (Q4_0). The embedding, the norms and the LM head stay in the activation dtype.
  int32_t quant = 0;
  // With quant: load the projections with act_precision FERRUM_QUANT_ACT_Q8 (gguf_matmul may round
  // the activations to 8-bit codes per 32 columns, tolerance class A; ABI 1.2).
  bool quant_act_q8 = false;
  // Tensor parallelism (Megatron-style): this rank holds q_heads / tp_size query heads and
  // kv_heads / tp_size KV heads (their QKV rows, the matching columns of o_proj), ffn / tp_size of
  // the MLP (gate and up rows, down columns); the context's communicator sums the o_proj and down
  // partial products (all_reduce) before each residual add. Embedding, norms and LM head are whole
  // on every rank, so every rank computes the same logits.
  uint64_t tp_size = 1, tp_rank = 0;
};

// The shapes one rank runs: q_heads, kv_heads and ffn divided by tp_size (tp_size 1: cfg itself).
ModelConfig local_config(const ModelConfig& cfg);

// The GGUF blocks of a row-major f32 matrix [rows, cols] (cols a multiple of 32), quantised the
// way GGUF writers do: Q8_0 d = max|x| / 127, q = round(x / d); Q4_0 d = (the value of largest
// magnitude) / −8, q = min(15, trunc(x / d + 8.5)). d is stored as f16.
std::vector<uint8_t> quantize_gguf(int32_t type, const std::vector<float>& w, uint64_t rows, uint64_t cols);

// The ops the configured cache needs beyond the dense ones (empty for contiguous), and those a
// captured decode step needs (empty when the configuration has no graph path: int8 / fp8).
std::vector<Op> kv_ops(const ModelConfig& cfg);
std::vector<Op> graph_ops(const ModelConfig& cfg);
// The first op of `ops` the backend lacks, if any.
std::optional<Op> first_missing(const Backend& backend, const std::vector<Op>& ops);

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
  // captured once (dev-state mode: token, position and KV length come from device memory, docs/spec.md
  // §8.2) and replayed for every later token. Needs the graph family; returns the argmax.
  uint32_t decode_graph(uint32_t token);
  // True when the backend has the ops decode_graph needs for this cache (never for int8 / fp8).
  static bool graphs_supported(const Backend& backend, const ModelConfig& cfg);

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
  // Physical blocks per layer of a paged cache (ceil(max_positions / kv_block_size)), 0 when
  // the cache is contiguous.
  uint64_t kv_blocks() const { return cfg_.kv == KvLayout::contiguous ? 0 : blocks_; }
  // Bytes of every layer's KV cache together (codes and scales for int8 / fp8).
  uint64_t kv_cache_bytes() const { return kv_cache_bytes_; }

 private:
  struct Layer {
    // contiguous: cache_k / cache_v [kv_heads, max_positions, head_dim]; paged (activation
    // dtype): pools [blocks, block_size, kv_heads, head_dim]; int8 / fp8: `quant`.
    Buffer input_norm, w_qkv, q_norm, k_norm, w_o, post_norm, w_gate_up, w_down, cache_k, cache_v;
    KvCacheQuant quant;
    QWeight qw_qkv, qw_o, qw_gate_up, qw_down;  // cfg.quant != 0: the projections (w_* stay empty)
  };
  // out[m, n] = a[m, k] · Wᵀ through gemm (w) or, with cfg.quant, gguf_matmul (qw).
  void linear(const Buffer& a, const Buffer& w, const QWeight& qw, Buffer& out, uint64_t m, uint64_t n, uint64_t k);
  // A projection matrix: rows `rows` (ranges of row indices) and columns [c0, c1) of the full
  // [*, full_cols] matrix `id`, dense or, with cfg.quant, quantised into qw.
  using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;
  void upload_projection(uint64_t id, uint64_t full_cols, const Ranges& rows, uint64_t c0, uint64_t c1, double scale,
                         Buffer& w, QWeight& qw);
  // Sums this rank's partial product across the tensor-parallel ranks (nothing at tp_size 1).
  void tp_sum(Buffer& partial, uint64_t n);
  void attention_paged(Layer& L, uint64_t T, uint64_t p0);
  void attention_quant(Layer& L, uint64_t T, uint64_t p0);
  void write_step_lengths(uint64_t p0, uint64_t T);
  Buffer upload_matrix(uint64_t id, uint64_t rows, uint64_t cols, double scale);
  // Uploads f32 values (converted to the activation dtype) and counts their bytes as weights.
  Buffer upload_values(const std::vector<float>& v);
  Buffer upload_norm(uint64_t id, uint64_t n);

  Context& ctx_;
  ModelConfig cfg_;  // this rank's shapes (local_config of the whole model)
  uint64_t max_tokens_;
  uint64_t len_ = 0;
  uint64_t weight_bytes_ = 0;
  Buffer embedding_, final_norm_, lm_head_, cos_, sin_;
  std::vector<Layer> layers_;
  // scratch, sized for max_tokens
  Buffer x_, a_, qkv_, q_, attn_, attn_t_, o_, gate_up_, act_, down_, last_, logits_;
  // decode-graph scratch (one token)
  Buffer q_raw_, k_raw_, v_raw_, k_rot_;
  // paged caches: the block table (U32 [blocks], a seeded permutation, also kept on the host for
  // the quantised append) and the one-sequence varlen metadata (U32): cu_seqlens {0, T} of the
  // last forward, {0, 1} for decode steps, pos_offsets {len}, KV lengths {len + 1}.
  uint64_t blocks_ = 0;
  uint64_t kv_cache_bytes_ = 0;
  std::vector<uint32_t> block_ids_;
  Buffer block_table_, cu_seqlens_, cu_one_, pos_offsets_, kv_lens_;
  // int8 / fp8 scratch: token-major split q / k / v, rotated k, RoPE positions, and one query
  // row in and out for the per-token attention calls.
  Buffer q_tm_, k_tm_, v_tm_, k_rot_tm_, positions_, q_row_, o_row_;
  bool graph_captured_ = false;
  void record_decode_step();
};

}  // namespace ferrum::demo
