#include "demo_model.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace ferrum::demo {
namespace {

constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  uint64_t z = x;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Tensor ids of the documented weight scheme.
constexpr uint64_t kEmbedding = 1, kFinalNorm = 2, kLmHead = 3;
enum LayerTensor : uint64_t { kInputNorm = 0, kWqkv, kQNorm, kKNorm, kWo, kPostNorm, kWGateUp, kWDown };
constexpr uint64_t layer_id(uint64_t l, uint64_t t) { return 100 * (l + 1) + t; }

}  // namespace

double weight_value(uint64_t seed, uint64_t tensor_id, uint64_t index, double scale) {
  const uint64_t h = splitmix64(splitmix64(splitmix64(seed) ^ tensor_id) ^ index);
  const double u = static_cast<double>(h >> 11) * 0x1.0p-53;
  return scale * (2.0 * u - 1.0);
}

Buffer Model::upload_matrix(uint64_t id, uint64_t rows, uint64_t cols, double scale) {
  std::vector<float> v(rows * cols);
  for (uint64_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(weight_value(cfg_.seed, id, i, scale));
  Buffer b = ctx_.from_slice(v);
  weight_bytes_ += b.count() * element_size(ctx_.activation_dtype());
  return b;
}

Buffer Model::upload_norm(uint64_t id, uint64_t n) {
  std::vector<float> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = static_cast<float>(1.0 + weight_value(cfg_.seed, id, i, 0.1));
  Buffer b = ctx_.from_slice(v);
  weight_bytes_ += b.count() * element_size(ctx_.activation_dtype());
  return b;
}

uint64_t Model::kv_bytes_per_token() const {
  return cfg_.layers * 2 * cfg_.kv_heads * cfg_.head_dim * element_size(ctx_.activation_dtype());
}

Model::Footprint Model::footprint(const ModelConfig& c, uint64_t element_size, uint64_t max_tokens) {
  const double H = double(c.hidden), hd = double(c.head_dim), nq = double(c.q_heads), nkv = double(c.kv_heads),
               ffn = double(c.ffn), vocab = double(c.vocab), L = double(c.layers), T = double(max_tokens),
               P = double(c.max_positions), esz = double(element_size);
  const double qkv_rows = (nq + 2 * nkv) * hd;
  const double per_layer = 2 * H + 2 * hd + qkv_rows * H + H * nq * hd + 2 * ffn * H + H * ffn;
  Footprint f;
  f.weight_bytes = esz * (2 * vocab * H + H + L * per_layer);
  f.kv_bytes = esz * L * 2 * nkv * P * hd;
  const double rope_bytes = 4.0 * P * hd;  // cos + sin, [P, hd/2] f32 each
  const double scratch = T * (4 * H + qkv_rows + 3 * nq * hd + 3 * ffn) + H + vocab + (nq + 3 * nkv) * hd;
  f.device_bytes = f.weight_bytes + f.kv_bytes + rope_bytes + esz * scratch;
  // upload_matrix stages one f32 matrix at a time; the RoPE tables are staged together.
  f.host_bytes = 4.0 * std::max({vocab * H, qkv_rows * H, H * nq * hd, 2 * ffn * H, P * hd});
  return f;
}

Model::Model(Context& ctx, const ModelConfig& c, uint64_t max_tokens) : ctx_(ctx), cfg_(c), max_tokens_(max_tokens) {
  if (c.q_heads % c.kv_heads || c.head_dim % 2 || max_tokens == 0 || max_tokens > c.max_positions)
    throw std::invalid_argument("ferrum-demo: invalid model configuration");
  const uint64_t H = c.hidden, hd = c.head_dim, qkv_rows = (c.q_heads + 2 * c.kv_heads) * hd;
  const double inv_h = 1.0 / std::sqrt(double(H));
  embedding_ = upload_matrix(kEmbedding, c.vocab, H, 1.0);
  for (uint64_t l = 0; l < c.layers; ++l) {
    Layer L;
    L.input_norm = upload_norm(layer_id(l, kInputNorm), H);
    L.w_qkv = upload_matrix(layer_id(l, kWqkv), qkv_rows, H, inv_h);
    L.q_norm = upload_norm(layer_id(l, kQNorm), hd);
    L.k_norm = upload_norm(layer_id(l, kKNorm), hd);
    L.w_o = upload_matrix(layer_id(l, kWo), H, c.q_heads * hd, 1.0 / std::sqrt(double(c.q_heads * hd)));
    L.post_norm = upload_norm(layer_id(l, kPostNorm), H);
    L.w_gate_up = upload_matrix(layer_id(l, kWGateUp), 2 * c.ffn, H, inv_h);
    L.w_down = upload_matrix(layer_id(l, kWDown), H, c.ffn, 1.0 / std::sqrt(double(c.ffn)));
    L.cache_k = ctx.alloc(c.kv_heads * c.max_positions * hd);
    L.cache_v = ctx.alloc(c.kv_heads * c.max_positions * hd);
    layers_.push_back(std::move(L));
  }
  final_norm_ = upload_norm(kFinalNorm, H);
  lm_head_ = upload_matrix(kLmHead, c.vocab, H, inv_h);

  // RoPE tables [max_positions, hd/2] in f32 (OPS.md §0.7 allows f32 tables with any activation).
  std::vector<float> cs(c.max_positions * hd / 2), sn(cs.size());
  for (uint64_t p = 0; p < c.max_positions; ++p)
    for (uint64_t i = 0; i < hd / 2; ++i) {
      const double ang = double(p) * std::pow(c.rope_theta, -2.0 * double(i) / double(hd));
      cs[p * hd / 2 + i] = static_cast<float>(std::cos(ang));
      sn[p * hd / 2 + i] = static_cast<float>(std::sin(ang));
    }
  cos_ = ctx.from_slice_typed<float>(cs);
  sin_ = ctx.from_slice_typed<float>(sn);

  const uint64_t T = max_tokens;
  x_ = ctx.alloc(T * H);
  a_ = ctx.alloc(T * H);
  qkv_ = ctx.alloc(T * qkv_rows);
  q_ = ctx.alloc(T * c.q_heads * hd);
  attn_ = ctx.alloc(T * c.q_heads * hd);
  attn_t_ = ctx.alloc(T * c.q_heads * hd);
  o_ = ctx.alloc(T * H);
  gate_up_ = ctx.alloc(T * 2 * c.ffn);
  act_ = ctx.alloc(T * c.ffn);
  down_ = ctx.alloc(T * H);
  last_ = ctx.alloc(H);
  logits_ = ctx.alloc(c.vocab);
  q_raw_ = ctx.alloc(c.q_heads * hd);
  k_raw_ = ctx.alloc(c.kv_heads * hd);
  v_raw_ = ctx.alloc(c.kv_heads * hd);
  k_rot_ = ctx.alloc(c.kv_heads * hd);
}

bool Model::graphs_supported(const Backend& backend) {
  for (Op op : {Op::begin_graph_capture, Op::end_graph_capture, Op::replay_graph, Op::set_decode_state,
                Op::set_dev_state_mode, Op::embedding_lookup, Op::qk_norm_rope, Op::kv_cache_append_head_major,
                Op::flash_attention, Op::split_qkv})
    if (!backend.supports(op)) return false;
  return true;
}

void Model::reset_graphs() {
  if (graph_captured_) ctx_.reset_graph(1);
  graph_captured_ = false;
}

// The ops of one decode step (T = 1) in the form dev-state mode can replay: the token, the RoPE
// position and the KV length are read from the context's decode state, so one recording serves
// every step. For T = 1 token-major and head-major layouts coincide, so no transposes are needed.
void Model::record_decode_step() {
  const ModelConfig& c = cfg_;
  const uint64_t H = c.hidden, hd = c.head_dim, cap = c.max_positions;
  const float eps = static_cast<float>(c.eps);
  const uint32_t unused_id[1] = {0};  // not read in dev-state mode
  ctx_.embedding_lookup({.table = embedding_, .ids = unused_id, .out = x_, .dim = H});
  ctx_.rms_norm({.x = x_, .w = layers_[0].input_norm, .eps = eps, .out = a_, .tokens = 1, .dim = H});
  for (uint64_t l = 0; l < c.layers; ++l) {
    Layer& L = layers_[l];
    ctx_.gemm({.a = a_, .b = L.w_qkv, .out = qkv_, .m = 1, .n = (c.q_heads + 2 * c.kv_heads) * hd, .k = H});
    ctx_.split_qkv({.qkv = qkv_, .q = q_raw_, .k = k_raw_, .v = v_raw_, .tokens = 1, .q_dim = c.q_heads * hd, .kv_dim = c.kv_heads * hd});
    ctx_.qk_norm_rope({.input = q_raw_, .norm_w = &L.q_norm, .cos = &cos_, .sin = &sin_, .output = q_, .tokens = 1, .heads = c.q_heads, .head_dim = hd, .pos_offset = 0, .eps = eps, .mode = ferrum::QkMode::rms_norm_neox});
    ctx_.qk_norm_rope({.input = k_raw_, .norm_w = &L.k_norm, .cos = &cos_, .sin = &sin_, .output = k_rot_, .tokens = 1, .heads = c.kv_heads, .head_dim = hd, .pos_offset = 0, .eps = eps, .mode = ferrum::QkMode::rms_norm_neox});
    ctx_.kv_cache_append_head_major({.cache_k = L.cache_k, .cache_v = L.cache_v, .cache_len = 0, .cache_capacity = cap, .new_k_head_major = k_rot_, .new_v_head_major = v_raw_, .new_tokens = 1, .nkv = c.kv_heads, .hd = hd});
    ctx_.flash_attention({.q = q_, .k = L.cache_k, .v = L.cache_v, .out = attn_, .batch = 1, .q_len = 1, .kv_len = 1, .pos_offset = 0, .num_heads = c.q_heads, .num_kv_heads = c.kv_heads, .head_dim = hd, .causal = true, .scale = 0.0f, .kv_seq_stride = cap, .sliding_window = 0});
    ctx_.gemm({.a = attn_, .b = L.w_o, .out = o_, .m = 1, .n = H, .k = c.q_heads * hd});
    ctx_.fused_add_rms_norm({.residual = x_, .x = o_, .w = L.post_norm, .eps = eps, .out = a_, .tokens = 1, .dim = H});
    ctx_.gemm({.a = a_, .b = L.w_gate_up, .out = gate_up_, .m = 1, .n = 2 * c.ffn, .k = H});
    ctx_.fused_silu_mul_split({.gate_up = gate_up_, .out = act_, .tokens = 1, .im = c.ffn});
    ctx_.gemm({.a = act_, .b = L.w_down, .out = down_, .m = 1, .n = H, .k = c.ffn});
    const Buffer& next_norm = l + 1 < c.layers ? layers_[l + 1].input_norm : final_norm_;
    ctx_.fused_add_rms_norm({.residual = x_, .x = down_, .w = next_norm, .eps = eps, .out = a_, .tokens = 1, .dim = H});
  }
  ctx_.gemm({.a = a_, .b = lm_head_, .out = logits_, .m = 1, .n = c.vocab, .k = H});
}

uint32_t Model::decode_graph(uint32_t token) {
  if (len_ + 1 > cfg_.max_positions)
    throw std::invalid_argument("ferrum-demo: decode beyond the configured positions");
  constexpr uint64_t kKey = 1;
  ctx_.set_decode_state({.token = token, .step = static_cast<uint32_t>(len_)});
  if (!graph_captured_) {
    // Warm-up: run the step eagerly once in dev-state mode so every plugin scratch is grown
    // before the capture (OPS.md §0.4), then record it.
    ctx_.set_dev_state_mode(true);
    record_decode_step();
    ctx_.set_decode_state({.token = token, .step = static_cast<uint32_t>(len_)});
    ctx_.begin_graph_capture();
    record_decode_step();
    ctx_.end_graph_capture(kKey);
    ctx_.set_dev_state_mode(false);
    graph_captured_ = true;
  }
  if (!ctx_.replay_graph(kKey)) throw std::runtime_error("ferrum-demo: the decode graph was not replayed");
  len_ += 1;
  return ctx_.argmax_rows_f16({.logits = logits_, .m = 1, .n = cfg_.vocab})[0];
}

std::vector<float> Model::forward(const std::vector<uint32_t>& tokens, uint32_t& next, bool want_logits) {
  const ModelConfig& c = cfg_;
  const uint64_t T = tokens.size(), H = c.hidden, hd = c.head_dim, p0 = len_;
  if (T == 0 || T > max_tokens_ || p0 + T > c.max_positions)
    throw std::invalid_argument("ferrum-demo: forward beyond the configured token/position limits");
  const float eps = static_cast<float>(c.eps);

  ctx_.embedding_lookup({.table = embedding_, .ids = tokens, .out = x_, .dim = H});
  ctx_.rms_norm({.x = x_, .w = layers_[0].input_norm, .eps = eps, .out = a_, .tokens = T, .dim = H});
  for (uint64_t l = 0; l < c.layers; ++l) {
    Layer& L = layers_[l];
    ctx_.gemm({.a = a_, .b = L.w_qkv, .out = qkv_, .m = T, .n = (c.q_heads + 2 * c.kv_heads) * hd, .k = H});
    // q head-major [nq, T, hd]; K/V rotated/copied straight into the contiguous caches.
    ctx_.split_qkv_norm_rope_into_cache({.qkv = qkv_, .q_norm_w = &L.q_norm, .k_norm_w = &L.k_norm, .cos = &cos_, .sin = &sin_, .q_out = q_, .cache_k = L.cache_k, .cache_v = L.cache_v, .tokens = T,
                                        .q_heads = c.q_heads, .kv_heads = c.kv_heads, .head_dim = hd, .pos_offset = p0, .eps = eps, .qk_mode = ferrum::QkMode::rms_norm_neox, .cache_len = p0,
                                        .cache_capacity = c.max_positions});
    ctx_.flash_attention({.q = q_, .k = L.cache_k, .v = L.cache_v, .out = attn_, .batch = 1, .q_len = T, .kv_len = p0 + T, .pos_offset = p0, .num_heads = c.q_heads, .num_kv_heads = c.kv_heads, .head_dim = hd, .causal = true, .scale = 0.0f,
                         .kv_seq_stride = c.max_positions, .sliding_window = 0});
    ctx_.transpose_head_to_token({.src = attn_, .dst = attn_t_, .tokens = T, .heads = c.q_heads, .dim = hd});
    ctx_.gemm({.a = attn_t_, .b = L.w_o, .out = o_, .m = T, .n = H, .k = c.q_heads * hd});
    ctx_.fused_add_rms_norm({.residual = x_, .x = o_, .w = L.post_norm, .eps = eps, .out = a_, .tokens = T, .dim = H});  // x += o; a = norm(x)
    ctx_.gemm({.a = a_, .b = L.w_gate_up, .out = gate_up_, .m = T, .n = 2 * c.ffn, .k = H});
    ctx_.fused_silu_mul_split({.gate_up = gate_up_, .out = act_, .tokens = T, .im = c.ffn});
    ctx_.gemm({.a = act_, .b = L.w_down, .out = down_, .m = T, .n = H, .k = c.ffn});
    const Buffer& next_norm = l + 1 < c.layers ? layers_[l + 1].input_norm : final_norm_;
    ctx_.fused_add_rms_norm({.residual = x_, .x = down_, .w = next_norm, .eps = eps, .out = a_, .tokens = T, .dim = H});  // x += d; a = norm(x)
  }
  len_ = p0 + T;
  // logits of the last token only
  ctx_.copy_slice({.src = a_, .src_offset = (T - 1) * H, .dst = last_, .dst_offset = 0, .len = H});
  ctx_.gemm({.a = last_, .b = lm_head_, .out = logits_, .m = 1, .n = c.vocab, .k = H});
  next = ctx_.argmax_rows_f16({.logits = logits_, .m = 1, .n = c.vocab})[0];
  return want_logits ? ctx_.to_vec(logits_, c.vocab) : std::vector<float>{};
}

}  // namespace ferrum::demo
