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
  // int8 / fp8: one byte per code plus one f32 scale per (token, KV head).
  const uint64_t per_head = cfg_.kv_dtype == KvDtype::activation
                                ? cfg_.head_dim * element_size(ctx_.activation_dtype())
                                : cfg_.head_dim + 4;
  return cfg_.layers * 2 * cfg_.kv_heads * per_head;
}

std::vector<Op> kv_ops(const ModelConfig& cfg) {
  if (cfg.kv == KvLayout::contiguous) return {};
  switch (cfg.kv_dtype) {
    case KvDtype::int8:
      return {Op::alloc_paged_int8_layer, Op::int8_kv_append_paged, Op::int8_paged_decode_attention, Op::split_qkv,
              Op::qk_norm_rope_batched_per_item};
    case KvDtype::fp8:
      return {Op::alloc_paged_fp8_layer, Op::fp8_kv_append_paged, Op::fp8_paged_decode_attention, Op::split_qkv,
              Op::qk_norm_rope_batched_per_item};
    case KvDtype::activation:
      break;
  }
  return {Op::split_qkv_norm_rope_into_paged_cache_varlen, Op::paged_varlen_attention, Op::paged_decode_attention};
}

std::vector<Op> graph_ops(const ModelConfig& cfg) {
  if (cfg.kv_dtype != KvDtype::activation) return {};  // the quantised append is host-driven
  std::vector<Op> ops = {Op::begin_graph_capture, Op::end_graph_capture, Op::replay_graph, Op::set_decode_state,
                         Op::set_dev_state_mode, Op::embedding_lookup};
  if (cfg.kv == KvLayout::paged) {
    ops.insert(ops.end(), {Op::split_qkv_norm_rope_into_paged_cache_varlen, Op::paged_batched_decode_attention});
  } else {
    ops.insert(ops.end(), {Op::qk_norm_rope, Op::kv_cache_append_head_major, Op::flash_attention, Op::split_qkv});
  }
  return ops;
}

std::optional<Op> first_missing(const Backend& backend, const std::vector<Op>& ops) {
  for (Op op : ops)
    if (!backend.supports(op)) return op;
  return std::nullopt;
}

Model::Footprint Model::footprint(const ModelConfig& c, uint64_t element_size, uint64_t max_tokens) {
  const double H = double(c.hidden), hd = double(c.head_dim), nq = double(c.q_heads), nkv = double(c.kv_heads),
               ffn = double(c.ffn), vocab = double(c.vocab), L = double(c.layers), T = double(max_tokens),
               P = double(c.max_positions), esz = double(element_size);
  const double qkv_rows = (nq + 2 * nkv) * hd;
  const double per_layer = 2 * H + 2 * hd + qkv_rows * H + H * nq * hd + 2 * ffn * H + H * ffn;
  Footprint f;
  f.weight_bytes = esz * (2 * vocab * H + H + L * per_layer);
  // Paged caches round the positions up to whole blocks; int8 / fp8 store 1-byte codes and an
  // f32 scale per (token, KV head).
  const double bs = double(c.kv_block_size);
  const double slots = c.kv == KvLayout::contiguous ? P : std::ceil(P / bs) * bs;
  const double per_head = c.kv_dtype == KvDtype::activation ? esz * hd : hd + 4.0;
  f.kv_bytes = L * 2 * nkv * slots * per_head;
  const double rope_bytes = 4.0 * P * hd;  // cos + sin, [P, hd/2] f32 each
  double scratch = T * (4 * H + qkv_rows + 3 * nq * hd + 3 * ffn) + H + vocab + (nq + 3 * nkv) * hd;
  if (c.kv_dtype != KvDtype::activation) scratch += T * (nq + 3 * nkv) * hd + 2 * nq * hd;
  const double meta_bytes = 4.0 * (slots / bs + T + 8);  // block table, positions, lengths
  f.device_bytes = f.weight_bytes + f.kv_bytes + rope_bytes + esz * scratch + meta_bytes;
  // upload_matrix stages one f32 matrix at a time; the RoPE tables are staged together.
  f.host_bytes = 4.0 * std::max({vocab * H, qkv_rows * H, H * nq * hd, 2 * ffn * H, P * hd});
  return f;
}

Model::Model(Context& ctx, const ModelConfig& c, uint64_t max_tokens) : ctx_(ctx), cfg_(c), max_tokens_(max_tokens) {
  if (c.q_heads % c.kv_heads || c.head_dim % 2 || max_tokens == 0 || max_tokens > c.max_positions ||
      c.kv_block_size == 0 || (c.kv == KvLayout::contiguous && c.kv_dtype != KvDtype::activation) ||
      c.max_positions > UINT32_MAX - c.kv_block_size)
    throw std::invalid_argument("ferrum-demo: invalid model configuration");
  if (c.kv == KvLayout::paged) {
    // The block table: every physical block once, in a seeded random order (Fisher-Yates), so
    // consecutive positions never sit in consecutive blocks by accident.
    blocks_ = (c.max_positions + c.kv_block_size - 1) / c.kv_block_size;
    block_ids_.resize(blocks_);
    for (uint64_t i = 0; i < blocks_; ++i) block_ids_[i] = static_cast<uint32_t>(i);
    uint64_t state = c.seed ^ 0xB10C7AB1Eull;
    for (uint64_t i = blocks_; i > 1; --i) {
      state = splitmix64(state);
      std::swap(block_ids_[i - 1], block_ids_[state % i]);
    }
    block_table_ = ctx.from_slice_typed<uint32_t>(block_ids_);
    const uint32_t zero2[2] = {0, 0}, cu_one[2] = {0, 1};
    cu_seqlens_ = ctx.from_slice_typed<uint32_t>(zero2);
    cu_one_ = ctx.from_slice_typed<uint32_t>(cu_one);
    pos_offsets_ = ctx.from_slice_typed<uint32_t>(std::span<const uint32_t>(zero2, 1));
    kv_lens_ = ctx.from_slice_typed<uint32_t>(std::span<const uint32_t>(zero2, 1));
  }
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
    if (c.kv_dtype == KvDtype::int8) {
      L.quant = ctx.alloc_paged_int8_layer(blocks_, c.kv_block_size, c.kv_heads, hd);
    } else if (c.kv_dtype == KvDtype::fp8) {
      L.quant = ctx.alloc_paged_fp8_layer(blocks_, c.kv_block_size, c.kv_heads, hd);
    } else {
      const uint64_t slots = c.kv == KvLayout::paged ? blocks_ * c.kv_block_size : c.max_positions;
      L.cache_k = ctx.alloc(c.kv_heads * slots * hd);
      L.cache_v = ctx.alloc(c.kv_heads * slots * hd);
      kv_cache_bytes_ += L.cache_k.size_bytes() + L.cache_v.size_bytes();
    }
    if (L.quant.k)
      kv_cache_bytes_ += L.quant.k.size_bytes() + L.quant.v.size_bytes() + L.quant.k_scales.size_bytes() +
                         L.quant.v_scales.size_bytes();
    layers_.push_back(std::move(L));
  }
  final_norm_ = upload_norm(kFinalNorm, H);
  lm_head_ = upload_matrix(kLmHead, c.vocab, H, inv_h);

  // RoPE tables [max_positions, hd/2] in f32 (docs/spec.md §0.7 allows f32 tables with any activation).
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
  if (c.kv_dtype != KvDtype::activation) {
    q_tm_ = ctx.alloc(T * c.q_heads * hd);
    k_tm_ = ctx.alloc(T * c.kv_heads * hd);
    v_tm_ = ctx.alloc(T * c.kv_heads * hd);
    k_rot_tm_ = ctx.alloc(T * c.kv_heads * hd);
    positions_ = ctx.alloc_typed(Dtype::u32, T);
    q_row_ = ctx.alloc(c.q_heads * hd);
    o_row_ = ctx.alloc(c.q_heads * hd);
  }
}

bool Model::graphs_supported(const Backend& backend, const ModelConfig& cfg) {
  const std::vector<Op> ops = graph_ops(cfg);
  return !ops.empty() && !first_missing(backend, ops);
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
  ctx_.embedding_lookup(embedding_, unused_id, x_, H);
  ctx_.rms_norm(x_, layers_[0].input_norm, eps, a_, 1, H);
  for (uint64_t l = 0; l < c.layers; ++l) {
    Layer& L = layers_[l];
    ctx_.gemm(a_, L.w_qkv, qkv_, 1, (c.q_heads + 2 * c.kv_heads) * hd, H);
    if (c.kv == KvLayout::paged) {
      // Position and KV length come from pos_offsets_ / kv_lens_, written before each replay;
      // max_kv_len is frozen at capture, so it is the cache's capacity.
      ctx_.split_qkv_norm_rope_into_paged_cache_varlen(qkv_, &L.q_norm, &L.k_norm, &cos_, &sin_, q_, L.cache_k,
                                                       L.cache_v, cu_one_, pos_offsets_, block_table_, 1, 1,
                                                       c.q_heads, c.kv_heads, hd, eps, FERRUM_QK_MODE_NORM_NEOX,
                                                       c.kv_block_size, blocks_);
      ctx_.paged_batched_decode_attention(q_, L.cache_k, L.cache_v, attn_, block_table_, kv_lens_, 1, cap,
                                          c.q_heads, c.kv_heads, hd, c.kv_block_size, blocks_, 0.0f, 0);
    } else {
      ctx_.split_qkv(qkv_, q_raw_, k_raw_, v_raw_, 1, c.q_heads * hd, c.kv_heads * hd);
      ctx_.qk_norm_rope(q_raw_, &L.q_norm, &cos_, &sin_, q_, 1, c.q_heads, hd, 0, eps, FERRUM_QK_MODE_NORM_NEOX);
      ctx_.qk_norm_rope(k_raw_, &L.k_norm, &cos_, &sin_, k_rot_, 1, c.kv_heads, hd, 0, eps,
                        FERRUM_QK_MODE_NORM_NEOX);
      ctx_.kv_cache_append_head_major(L.cache_k, L.cache_v, 0, cap, k_rot_, v_raw_, 1, c.kv_heads, hd);
      ctx_.flash_attention(q_, L.cache_k, L.cache_v, attn_, 1, 1, 1, 0, c.q_heads, c.kv_heads, hd, true, 0.0f, cap,
                           0);
    }
    ctx_.gemm(attn_, L.w_o, o_, 1, H, c.q_heads * hd);
    ctx_.fused_add_rms_norm(x_, o_, L.post_norm, eps, a_, 1, H);
    ctx_.gemm(a_, L.w_gate_up, gate_up_, 1, 2 * c.ffn, H);
    ctx_.fused_silu_mul_split(gate_up_, act_, 1, c.ffn);
    ctx_.gemm(act_, L.w_down, down_, 1, H, c.ffn);
    const Buffer& next_norm = l + 1 < c.layers ? layers_[l + 1].input_norm : final_norm_;
    ctx_.fused_add_rms_norm(x_, down_, next_norm, eps, a_, 1, H);
  }
  ctx_.gemm(a_, lm_head_, logits_, 1, c.vocab, H);
}

uint32_t Model::decode_graph(uint32_t token) {
  if (len_ + 1 > cfg_.max_positions)
    throw std::invalid_argument("ferrum-demo: decode beyond the configured positions");
  if (cfg_.kv_dtype != KvDtype::activation)
    throw std::invalid_argument("ferrum-demo: int8 / fp8 KV caches have no graph path");
  constexpr uint64_t kKey = 1;
  if (cfg_.kv == KvLayout::paged) write_step_lengths(len_, 1);
  ctx_.set_decode_state(token, static_cast<uint32_t>(len_));
  if (!graph_captured_) {
    // Warm-up: run the step eagerly once in dev-state mode so every plugin scratch is grown
    // before the capture (docs/spec.md §0.4), then record it.
    ctx_.set_dev_state_mode(true);
    record_decode_step();
    ctx_.set_decode_state(token, static_cast<uint32_t>(len_));
    ctx_.begin_graph_capture();
    record_decode_step();
    ctx_.end_graph_capture(kKey);
    ctx_.set_dev_state_mode(false);
    graph_captured_ = true;
  }
  if (!ctx_.replay_graph(kKey)) throw std::runtime_error("ferrum-demo: the decode graph was not replayed");
  len_ += 1;
  return ctx_.argmax_rows_f16(logits_, 1, cfg_.vocab)[0];
}

std::vector<float> Model::forward(const std::vector<uint32_t>& tokens, uint32_t& next, bool want_logits) {
  const ModelConfig& c = cfg_;
  const uint64_t T = tokens.size(), H = c.hidden, hd = c.head_dim, p0 = len_;
  if (T == 0 || T > max_tokens_ || p0 + T > c.max_positions)
    throw std::invalid_argument("ferrum-demo: forward beyond the configured token/position limits");
  const float eps = static_cast<float>(c.eps);

  ctx_.embedding_lookup(embedding_, tokens, x_, H);
  ctx_.rms_norm(x_, layers_[0].input_norm, eps, a_, T, H);
  if (c.kv == KvLayout::paged) {
    if (c.kv_dtype == KvDtype::activation) {
      write_step_lengths(p0, T);
    } else {
      std::vector<uint32_t> pos(T);
      for (uint64_t t = 0; t < T; ++t) pos[t] = static_cast<uint32_t>(p0 + t);
      ctx_.write_typed<uint32_t>(positions_, pos);
    }
  }
  for (uint64_t l = 0; l < c.layers; ++l) {
    Layer& L = layers_[l];
    ctx_.gemm(a_, L.w_qkv, qkv_, T, (c.q_heads + 2 * c.kv_heads) * hd, H);
    if (c.kv == KvLayout::paged) {
      // Token-major attention output [T, nq, hd]: no transpose before the output projection.
      if (c.kv_dtype == KvDtype::activation) attention_paged(L, T, p0);
      else attention_quant(L, T, p0);
      ctx_.gemm(attn_, L.w_o, o_, T, H, c.q_heads * hd);
    } else {
      // q head-major [nq, T, hd]; K/V rotated/copied straight into the contiguous caches.
      ctx_.split_qkv_norm_rope_into_cache(qkv_, &L.q_norm, &L.k_norm, &cos_, &sin_, q_, L.cache_k, L.cache_v, T,
                                          c.q_heads, c.kv_heads, hd, p0, eps, FERRUM_QK_MODE_NORM_NEOX, p0,
                                          c.max_positions);
      ctx_.flash_attention(q_, L.cache_k, L.cache_v, attn_, 1, T, p0 + T, p0, c.q_heads, c.kv_heads, hd, true, 0.0f,
                           c.max_positions, 0);
      ctx_.transpose_head_to_token(attn_, attn_t_, T, c.q_heads, hd);
      ctx_.gemm(attn_t_, L.w_o, o_, T, H, c.q_heads * hd);
    }
    ctx_.fused_add_rms_norm(x_, o_, L.post_norm, eps, a_, T, H);  // x += o; a = norm(x)
    ctx_.gemm(a_, L.w_gate_up, gate_up_, T, 2 * c.ffn, H);
    ctx_.fused_silu_mul_split(gate_up_, act_, T, c.ffn);
    ctx_.gemm(act_, L.w_down, down_, T, H, c.ffn);
    const Buffer& next_norm = l + 1 < c.layers ? layers_[l + 1].input_norm : final_norm_;
    ctx_.fused_add_rms_norm(x_, down_, next_norm, eps, a_, T, H);  // x += d; a = norm(x)
  }
  len_ = p0 + T;
  // logits of the last token only
  ctx_.copy_slice(a_, (T - 1) * H, last_, 0, H);
  ctx_.gemm(last_, lm_head_, logits_, 1, c.vocab, H);
  next = ctx_.argmax_rows_f16(logits_, 1, c.vocab)[0];
  return want_logits ? ctx_.to_vec(logits_, c.vocab) : std::vector<float>{};
}

// The one-sequence varlen metadata of a step of T tokens at positions p0 .. p0 + T - 1.
void Model::write_step_lengths(uint64_t p0, uint64_t T) {
  const uint32_t cu[2] = {0, static_cast<uint32_t>(T)};
  const uint32_t pos[1] = {static_cast<uint32_t>(p0)};
  const uint32_t kv[1] = {static_cast<uint32_t>(p0 + T)};
  if (T != 1) ctx_.write_typed<uint32_t>(cu_seqlens_, cu);
  ctx_.write_typed<uint32_t>(pos_offsets_, pos);
  ctx_.write_typed<uint32_t>(kv_lens_, kv);
}

// Paged cache of the activation dtype: the varlen writer stores K/V of the T tokens at their
// slots and emits token-major rotated queries; a prefill (T > 1) attends with
// paged_varlen_attention, an eager decode step with paged_decode_attention.
void Model::attention_paged(Layer& L, uint64_t T, uint64_t p0) {
  const ModelConfig& c = cfg_;
  const float eps = static_cast<float>(c.eps);
  const Buffer& cu = T == 1 ? cu_one_ : cu_seqlens_;
  ctx_.split_qkv_norm_rope_into_paged_cache_varlen(qkv_, &L.q_norm, &L.k_norm, &cos_, &sin_, q_, L.cache_k, L.cache_v,
                                                   cu, pos_offsets_, block_table_, 1, T, c.q_heads, c.kv_heads,
                                                   c.head_dim, eps, FERRUM_QK_MODE_NORM_NEOX, c.kv_block_size,
                                                   blocks_);
  if (T == 1)
    ctx_.paged_decode_attention(q_, L.cache_k, L.cache_v, attn_, block_table_, kv_lens_, 1, c.q_heads, c.kv_heads,
                                c.head_dim, c.kv_block_size, blocks_, 1, 0.0f, 0);
  else
    ctx_.paged_varlen_attention(q_, L.cache_k, L.cache_v, attn_, cu, pos_offsets_, block_table_, 1, T, p0 + T,
                                c.q_heads, c.kv_heads, c.head_dim, c.kv_block_size, blocks_, 0.0f, 0);
}

// int8 / fp8 paged cache: token-major q and K rotated at positions p0 + t, K/V quantised into
// the pool through the host block list, then one decode-attention call per query token over
// the first p0 + t + 1 positions (rows copied in and out of one-row buffers when T > 1).
void Model::attention_quant(Layer& L, uint64_t T, uint64_t p0) {
  const ModelConfig& c = cfg_;
  const uint64_t hd = c.head_dim, qd = c.q_heads * hd;
  const float eps = static_cast<float>(c.eps);
  const bool int8 = c.kv_dtype == KvDtype::int8;
  ctx_.split_qkv(qkv_, q_tm_, k_tm_, v_tm_, T, qd, c.kv_heads * hd);
  ctx_.qk_norm_rope_batched_per_item(q_tm_, &L.q_norm, &cos_, &sin_, q_, positions_, T, c.q_heads, hd, eps,
                                     FERRUM_QK_MODE_NORM_NEOX);
  ctx_.qk_norm_rope_batched_per_item(k_tm_, &L.k_norm, &cos_, &sin_, k_rot_tm_, positions_, T, c.kv_heads, hd, eps,
                                     FERRUM_QK_MODE_NORM_NEOX);
  KvCacheQuant& kv = L.quant;
  if (int8)
    ctx_.int8_kv_append_paged(k_rot_tm_, v_tm_, kv.k, kv.v, kv.k_scales, kv.v_scales, block_ids_, p0, T,
                              c.kv_block_size, c.kv_heads, hd);
  else
    ctx_.fp8_kv_append_paged(k_rot_tm_, v_tm_, kv.k, kv.v, kv.k_scales, kv.v_scales, block_ids_, p0, T,
                             c.kv_block_size, c.kv_heads, hd);
  for (uint64_t t = 0; t < T; ++t) {
    const Buffer& q = T == 1 ? q_ : q_row_;
    Buffer& o = T == 1 ? attn_ : o_row_;
    if (T > 1) ctx_.copy_slice(q_, t * qd, q_row_, 0, qd);
    if (int8)
      ctx_.int8_paged_decode_attention(q, kv.k, kv.v, kv.k_scales, kv.v_scales, block_table_, o, c.q_heads,
                                       c.kv_heads, hd, p0 + t + 1, c.kv_block_size, 0.0f, 0);
    else
      ctx_.fp8_paged_decode_attention(q, kv.k, kv.v, kv.k_scales, kv.v_scales, block_table_, o, c.q_heads,
                                      c.kv_heads, hd, p0 + t + 1, c.kv_block_size, 0.0f, 0);
    if (T > 1) ctx_.copy_slice(o_row_, 0, attn_, t * qd, qd);
  }
}

}  // namespace ferrum::demo
