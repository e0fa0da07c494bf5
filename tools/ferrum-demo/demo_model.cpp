#include "demo_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
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

Buffer Model::upload_values(const std::vector<float>& v) {
  Buffer b = ctx_.from_slice(v);
  weight_bytes_ += b.count() * element_size(ctx_.activation_dtype());
  return b;
}

Buffer Model::upload_matrix(uint64_t id, uint64_t rows, uint64_t cols, double scale) {
  std::vector<float> v(rows * cols);
  for (uint64_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(weight_value(cfg_.seed, id, i, scale));
  return upload_values(v);
}

namespace {
// IEEE binary16 bits of f, rounded to nearest even (overflow to ±inf, subnormals kept, NaN quiet).
uint16_t f16_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds above 65504
  if (ax < 0x38800000u) {  // below 2^-14: subnormal (or zero) in f16
    if (ax < 0x33000000u) return static_cast<uint16_t>(sign);  // below half the smallest subnormal
    const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(ax >> 23);  // value / 2^-24 = mant >> shift
    const uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
    return static_cast<uint16_t>(sign | (q + (rem > half || (rem == half && (q & 1u)))));
  }
  const uint32_t r = ax - 0x38000000u;  // rebias the exponent (127 -> 15)
  const uint32_t q = r >> 13, rem = r & 0x1fffu;
  return static_cast<uint16_t>(sign | (q + (rem > 0x1000u || (rem == 0x1000u && (q & 1u)))));
}
}  // namespace

std::vector<uint8_t> quantize_gguf(int32_t type, const std::vector<float>& w, uint64_t rows, uint64_t cols) {
  const bool q8 = type == 8;
  const uint64_t bb = q8 ? 34 : 18, nb = cols / 32;
  std::vector<uint8_t> out(rows * nb * bb);
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t b = 0; b < nb; ++b) {
      const float* x = w.data() + r * cols + b * 32;
      uint8_t* o = out.data() + (r * nb + b) * bb;
      float amax = 0.0f, vmax = 0.0f;
      for (int i = 0; i < 32; ++i)
        if (std::fabs(x[i]) > amax) {
          amax = std::fabs(x[i]);
          vmax = x[i];
        }
      const float d = q8 ? amax / 127.0f : vmax / -8.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      const uint16_t dh = f16_bits(d);
      o[0] = static_cast<uint8_t>(dh & 0xff);
      o[1] = static_cast<uint8_t>(dh >> 8);
      if (q8) {
        for (int i = 0; i < 32; ++i) o[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(x[i] * id)));
      } else {
        for (int i = 0; i < 16; ++i) {
          const int lo = std::min(15, static_cast<int>(x[i] * id + 8.5f));
          const int hi = std::min(15, static_cast<int>(x[i + 16] * id + 8.5f));
          o[2 + i] = static_cast<uint8_t>(lo | (hi << 4));
        }
      }
    }
  return out;
}

ModelConfig local_config(const ModelConfig& cfg) {
  ModelConfig l = cfg;
  if (cfg.tp_size > 1) {
    l.q_heads = cfg.q_heads / cfg.tp_size;
    l.kv_heads = cfg.kv_heads / cfg.tp_size;
    l.ffn = cfg.ffn / cfg.tp_size;
  }
  return l;
}

void Model::upload_projection(uint64_t id, uint64_t full_cols, const Ranges& rows, uint64_t c0, uint64_t c1,
                              double scale, Buffer& w, QWeight& qw) {
  uint64_t n_rows = 0;
  for (const auto& [r0, r1] : rows) n_rows += r1 - r0;
  const uint64_t cols = c1 - c0;
  std::vector<float> v(n_rows * cols);
  uint64_t i = 0;
  for (const auto& [r0, r1] : rows)
    for (uint64_t r = r0; r < r1; ++r)
      for (uint64_t col = c0; col < c1; ++col) v[i++] = static_cast<float>(weight_value(cfg_.seed, id, r * full_cols + col, scale));
  if (cfg_.quant == 0) {
    w = upload_values(v);
    return;
  }
  const std::vector<uint8_t> bytes = quantize_gguf(cfg_.quant, v, n_rows, cols);
  qw = ctx_.load_quant({.quant_type = cfg_.quant, .bytes = std::span<const uint8_t>(bytes), .n_rows = n_rows, .n_cols = cols,
                        .act_precision = cfg_.quant_act_q8 ? FERRUM_QUANT_ACT_Q8 : FERRUM_QUANT_ACT_EXACT});
  weight_bytes_ += bytes.size();
}

void Model::tp_sum(Buffer& partial, uint64_t n) {
  if (cfg_.tp_size > 1) ctx_.all_reduce(partial, n, FERRUM_REDUCE_SUM);
}

void Model::linear(const Buffer& a, const Buffer& w, const QWeight& qw, Buffer& out, uint64_t m, uint64_t n,
                   uint64_t k) {
  if (cfg_.quant != 0) ctx_.gguf_matmul({.a = a, .weight = qw, .out = out, .m = m});
  else ctx_.gemm({.a = a, .b = w, .out = out, .m = m, .n = n, .k = k});
}

Buffer Model::upload_norm(uint64_t id, uint64_t n) {
  std::vector<float> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = static_cast<float>(1.0 + weight_value(cfg_.seed, id, i, 0.1));
  return upload_values(v);
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
  // (the quantised projections' ops are checked by the caller: quant_ops)
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
  if (cfg.quant != 0) return {};                         // the graph step is written with gemm
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
  const double proj = qkv_rows * H + H * nq * hd + 2 * ffn * H + H * ffn;  // the four projections
  const double proj_bytes = c.quant == 8 ? 34.0 / 32 : c.quant == 2 ? 18.0 / 32 : esz;  // per weight
  Footprint f;
  f.weight_bytes = esz * (2 * vocab * H + H + L * (2 * H + 2 * hd)) + L * proj * proj_bytes;
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

Model::Model(Context& ctx, const ModelConfig& full, uint64_t max_tokens)
    : ctx_(ctx), cfg_(local_config(full)), max_tokens_(max_tokens) {
  const ModelConfig& c = cfg_;
  if (full.tp_size == 0 || full.tp_rank >= full.tp_size || full.q_heads % full.tp_size ||
      full.kv_heads % full.tp_size || full.ffn % full.tp_size)
    throw std::invalid_argument("ferrum-demo: invalid tensor-parallel configuration");
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
  // This rank's slices of the full matrices (tp_rank r of N): its query heads' rows of W_q, its KV
  // heads' rows of W_k and W_v, the matching columns of W_o; its share of the gate and up rows and
  // of W_down's columns. Scales are the full model's, so every weight has its tp_size 1 value.
  const uint64_t r = full.tp_rank, qd = c.q_heads * hd, kvd = c.kv_heads * hd, f = c.ffn;
  const uint64_t full_qd = full.q_heads * hd, full_kvd = full.kv_heads * hd;
  const Ranges qkv_sel = {{r * qd, (r + 1) * qd},
                          {full_qd + r * kvd, full_qd + (r + 1) * kvd},
                          {full_qd + full_kvd + r * kvd, full_qd + full_kvd + (r + 1) * kvd}};
  const Ranges gate_up_sel = {{r * f, (r + 1) * f}, {full.ffn + r * f, full.ffn + (r + 1) * f}};
  const Ranges all_h = {{0, H}};
  embedding_ = upload_matrix(kEmbedding, c.vocab, H, 1.0);
  for (uint64_t l = 0; l < c.layers; ++l) {
    Layer L;
    L.input_norm = upload_norm(layer_id(l, kInputNorm), H);
    upload_projection(layer_id(l, kWqkv), H, qkv_sel, 0, H, inv_h, L.w_qkv, L.qw_qkv);
    L.q_norm = upload_norm(layer_id(l, kQNorm), hd);
    L.k_norm = upload_norm(layer_id(l, kKNorm), hd);
    upload_projection(layer_id(l, kWo), full_qd, all_h, r * qd, (r + 1) * qd, 1.0 / std::sqrt(double(full_qd)), L.w_o,
                      L.qw_o);
    L.post_norm = upload_norm(layer_id(l, kPostNorm), H);
    upload_projection(layer_id(l, kWGateUp), H, gate_up_sel, 0, H, inv_h, L.w_gate_up, L.qw_gate_up);
    upload_projection(layer_id(l, kWDown), full.ffn, all_h, r * f, (r + 1) * f, 1.0 / std::sqrt(double(full.ffn)),
                      L.w_down, L.qw_down);
    if (c.kv_dtype == KvDtype::int8) {
      L.quant = ctx.alloc_paged_int8_layer({.max_blocks_per_seq = blocks_, .block_size = c.kv_block_size, .num_kv_heads = c.kv_heads, .head_dim = hd});
    } else if (c.kv_dtype == KvDtype::fp8) {
      L.quant = ctx.alloc_paged_fp8_layer({.max_blocks_per_seq = blocks_, .block_size = c.kv_block_size, .num_kv_heads = c.kv_heads, .head_dim = hd});
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
  ctx_.embedding_lookup({.table = embedding_, .ids = unused_id, .out = x_, .dim = H});
  ctx_.rms_norm({.x = x_, .w = layers_[0].input_norm, .eps = eps, .out = a_, .tokens = 1, .dim = H});
  for (uint64_t l = 0; l < c.layers; ++l) {
    Layer& L = layers_[l];
    ctx_.gemm({.a = a_, .b = L.w_qkv, .out = qkv_, .m = 1, .n = (c.q_heads + 2 * c.kv_heads) * hd, .k = H});
    if (c.kv == KvLayout::paged) {
      // Position and KV length come from pos_offsets_ / kv_lens_, written before each replay;
      // max_kv_len is frozen at capture, so it is the cache's capacity.
      ctx_.split_qkv_norm_rope_into_paged_cache_varlen({.qkv = qkv_, .q_norm_w = &L.q_norm, .k_norm_w = &L.k_norm, .cos = &cos_, .sin = &sin_, .q_out = q_, .cache_k = L.cache_k,
                                                       .cache_v = L.cache_v, .cu_seqlens_q = cu_one_, .pos_offsets = pos_offsets_, .block_tables = block_table_, .num_seqs = 1, .m_total = 1,
                                                       .q_heads = c.q_heads, .kv_heads = c.kv_heads, .head_dim = hd, .eps = eps, .qk_mode = ferrum::QkMode::rms_norm_neox,
                                                       .block_size = c.kv_block_size, .max_blocks_per_seq = blocks_});
      ctx_.paged_batched_decode_attention({.q = q_, .k_pool = L.cache_k, .v_pool = L.cache_v, .out = attn_, .block_tables = block_table_, .valid_kv_lens = kv_lens_, .num_seqs = 1, .max_kv_len = cap,
                                          .num_heads = c.q_heads, .num_kv_heads = c.kv_heads, .head_dim = hd, .block_size = c.kv_block_size, .max_num_blocks_per_seq = blocks_, .scale = 0.0f, .sliding_window = 0});
    } else {
      ctx_.split_qkv({.qkv = qkv_, .q = q_raw_, .k = k_raw_, .v = v_raw_, .tokens = 1, .q_dim = c.q_heads * hd, .kv_dim = c.kv_heads * hd});
      ctx_.qk_norm_rope({.input = q_raw_, .norm_w = &L.q_norm, .cos = &cos_, .sin = &sin_, .output = q_, .tokens = 1, .heads = c.q_heads, .head_dim = hd, .pos_offset = 0, .eps = eps, .mode = ferrum::QkMode::rms_norm_neox});
      ctx_.qk_norm_rope({.input = k_raw_, .norm_w = &L.k_norm, .cos = &cos_, .sin = &sin_, .output = k_rot_, .tokens = 1, .heads = c.kv_heads, .head_dim = hd, .pos_offset = 0, .eps = eps,
                        .mode = ferrum::QkMode::rms_norm_neox});
      ctx_.kv_cache_append_head_major({.cache_k = L.cache_k, .cache_v = L.cache_v, .cache_len = 0, .cache_capacity = cap, .new_k_head_major = k_rot_, .new_v_head_major = v_raw_, .new_tokens = 1, .nkv = c.kv_heads, .hd = hd});
      ctx_.flash_attention({.q = q_, .k = L.cache_k, .v = L.cache_v, .out = attn_, .batch = 1, .q_len = 1, .kv_len = 1, .pos_offset = 0, .num_heads = c.q_heads, .num_kv_heads = c.kv_heads, .head_dim = hd, .causal = true, .scale = 0.0f, .kv_seq_stride = cap,
                           .sliding_window = 0});
    }
    ctx_.gemm({.a = attn_, .b = L.w_o, .out = o_, .m = 1, .n = H, .k = c.q_heads * hd});
    tp_sum(o_, H);
    ctx_.fused_add_rms_norm({.residual = x_, .x = o_, .w = L.post_norm, .eps = eps, .out = a_, .tokens = 1, .dim = H});
    ctx_.gemm({.a = a_, .b = L.w_gate_up, .out = gate_up_, .m = 1, .n = 2 * c.ffn, .k = H});
    ctx_.fused_silu_mul_split({.gate_up = gate_up_, .out = act_, .tokens = 1, .im = c.ffn});
    ctx_.gemm({.a = act_, .b = L.w_down, .out = down_, .m = 1, .n = H, .k = c.ffn});
    tp_sum(down_, H);
    const Buffer& next_norm = l + 1 < c.layers ? layers_[l + 1].input_norm : final_norm_;
    ctx_.fused_add_rms_norm({.residual = x_, .x = down_, .w = next_norm, .eps = eps, .out = a_, .tokens = 1, .dim = H});
  }
  ctx_.gemm({.a = a_, .b = lm_head_, .out = logits_, .m = 1, .n = c.vocab, .k = H});
}

uint32_t Model::decode_graph(uint32_t token) {
  if (len_ + 1 > cfg_.max_positions)
    throw std::invalid_argument("ferrum-demo: decode beyond the configured positions");
  if (cfg_.kv_dtype != KvDtype::activation)
    throw std::invalid_argument("ferrum-demo: int8 / fp8 KV caches have no graph path");
  constexpr uint64_t kKey = 1;
  if (cfg_.kv == KvLayout::paged) write_step_lengths(len_, 1);
  ctx_.set_decode_state({.token = token, .step = static_cast<uint32_t>(len_)});
  if (!graph_captured_) {
    // Warm-up: run the step eagerly once in dev-state mode so every plugin scratch is grown
    // before the capture (docs/spec.md §0.4), then record it.
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
    linear(a_, L.w_qkv, L.qw_qkv, qkv_, T, (c.q_heads + 2 * c.kv_heads) * hd, H);
    if (c.kv == KvLayout::paged) {
      // Token-major attention output [T, nq, hd]: no transpose before the output projection.
      if (c.kv_dtype == KvDtype::activation) attention_paged(L, T, p0);
      else attention_quant(L, T, p0);
      linear(attn_, L.w_o, L.qw_o, o_, T, H, c.q_heads * hd);
      tp_sum(o_, T * H);
    } else {
      // q head-major [nq, T, hd]; K/V rotated/copied straight into the contiguous caches.
      ctx_.split_qkv_norm_rope_into_cache({.qkv = qkv_, .q_norm_w = &L.q_norm, .k_norm_w = &L.k_norm, .cos = &cos_, .sin = &sin_, .q_out = q_, .cache_k = L.cache_k, .cache_v = L.cache_v, .tokens = T,
                                          .q_heads = c.q_heads, .kv_heads = c.kv_heads, .head_dim = hd, .pos_offset = p0, .eps = eps, .qk_mode = ferrum::QkMode::rms_norm_neox, .cache_len = p0,
                                          .cache_capacity = c.max_positions});
      ctx_.flash_attention({.q = q_, .k = L.cache_k, .v = L.cache_v, .out = attn_, .batch = 1, .q_len = T, .kv_len = p0 + T, .pos_offset = p0, .num_heads = c.q_heads, .num_kv_heads = c.kv_heads, .head_dim = hd, .causal = true, .scale = 0.0f,
                           .kv_seq_stride = c.max_positions, .sliding_window = 0});
      ctx_.transpose_head_to_token({.src = attn_, .dst = attn_t_, .tokens = T, .heads = c.q_heads, .dim = hd});
      linear(attn_t_, L.w_o, L.qw_o, o_, T, H, c.q_heads * hd);
      tp_sum(o_, T * H);
    }
    ctx_.fused_add_rms_norm({.residual = x_, .x = o_, .w = L.post_norm, .eps = eps, .out = a_, .tokens = T, .dim = H});  // x += o; a = norm(x)
    linear(a_, L.w_gate_up, L.qw_gate_up, gate_up_, T, 2 * c.ffn, H);
    ctx_.fused_silu_mul_split({.gate_up = gate_up_, .out = act_, .tokens = T, .im = c.ffn});
    linear(act_, L.w_down, L.qw_down, down_, T, H, c.ffn);
    tp_sum(down_, T * H);
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
  ctx_.split_qkv_norm_rope_into_paged_cache_varlen({.qkv = qkv_, .q_norm_w = &L.q_norm, .k_norm_w = &L.k_norm, .cos = &cos_, .sin = &sin_, .q_out = q_, .cache_k = L.cache_k, .cache_v = L.cache_v,
                                                   .cu_seqlens_q = cu, .pos_offsets = pos_offsets_, .block_tables = block_table_, .num_seqs = 1, .m_total = T, .q_heads = c.q_heads, .kv_heads = c.kv_heads,
                                                   .head_dim = c.head_dim, .eps = eps, .qk_mode = ferrum::QkMode::rms_norm_neox, .block_size = c.kv_block_size,
                                                   .max_blocks_per_seq = blocks_});
  if (T == 1)
    ctx_.paged_decode_attention({.q = q_, .k_pool = L.cache_k, .v_pool = L.cache_v, .out = attn_, .block_tables = block_table_, .context_lens = kv_lens_, .num_seqs = 1, .num_heads = c.q_heads, .num_kv_heads = c.kv_heads,
                                .head_dim = c.head_dim, .block_size = c.kv_block_size, .max_num_blocks_per_seq = blocks_, .q_len = 1, .scale = 0.0f, .sliding_window = 0});
  else
    ctx_.paged_varlen_attention({.q = q_, .k_pool = L.cache_k, .v_pool = L.cache_v, .out = attn_, .cu_seqlens_q = cu, .pos_offsets = pos_offsets_, .block_tables = block_table_, .num_seqs = 1, .total_q_tokens = T, .max_kv_len = p0 + T,
                                .num_heads = c.q_heads, .num_kv_heads = c.kv_heads, .head_dim = c.head_dim, .block_size = c.kv_block_size, .max_num_blocks_per_seq = blocks_, .scale = 0.0f, .sliding_window = 0});
}

// int8 / fp8 paged cache: token-major q and K rotated at positions p0 + t, K/V quantised into
// the pool through the host block list, then one decode-attention call per query token over
// the first p0 + t + 1 positions (rows copied in and out of one-row buffers when T > 1).
void Model::attention_quant(Layer& L, uint64_t T, uint64_t p0) {
  const ModelConfig& c = cfg_;
  const uint64_t hd = c.head_dim, qd = c.q_heads * hd;
  const float eps = static_cast<float>(c.eps);
  const bool int8 = c.kv_dtype == KvDtype::int8;
  ctx_.split_qkv({.qkv = qkv_, .q = q_tm_, .k = k_tm_, .v = v_tm_, .tokens = T, .q_dim = qd, .kv_dim = c.kv_heads * hd});
  ctx_.qk_norm_rope_batched_per_item({.input = q_tm_, .norm_w = &L.q_norm, .cos = &cos_, .sin = &sin_, .output = q_, .positions = positions_, .m = T, .heads = c.q_heads, .head_dim = hd, .eps = eps,
                                     .mode = ferrum::QkMode::rms_norm_neox});
  ctx_.qk_norm_rope_batched_per_item({.input = k_tm_, .norm_w = &L.k_norm, .cos = &cos_, .sin = &sin_, .output = k_rot_tm_, .positions = positions_, .m = T, .heads = c.kv_heads, .head_dim = hd, .eps = eps,
                                     .mode = ferrum::QkMode::rms_norm_neox});
  KvCacheQuant& kv = L.quant;
  if (int8)
    ctx_.int8_kv_append_paged({.k_in = k_rot_tm_, .v_in = v_tm_, .layer_k = kv.k, .layer_v = kv.v, .layer_k_scales = kv.k_scales, .layer_v_scales = kv.v_scales, .paged_block_indices = block_ids_, .cache_len_before = p0, .tokens = T,
                              .block_size = c.kv_block_size, .num_kv_heads = c.kv_heads, .head_dim = hd});
  else
    ctx_.fp8_kv_append_paged({.k_in = k_rot_tm_, .v_in = v_tm_, .layer_k = kv.k, .layer_v = kv.v, .layer_k_scales = kv.k_scales, .layer_v_scales = kv.v_scales, .paged_block_indices = block_ids_, .cache_len_before = p0, .tokens = T,
                             .block_size = c.kv_block_size, .num_kv_heads = c.kv_heads, .head_dim = hd});
  for (uint64_t t = 0; t < T; ++t) {
    const Buffer& q = T == 1 ? q_ : q_row_;
    Buffer& o = T == 1 ? attn_ : o_row_;
    if (T > 1) ctx_.copy_slice({.src = q_, .src_offset = t * qd, .dst = q_row_, .dst_offset = 0, .len = qd});
    if (int8)
      ctx_.int8_paged_decode_attention({.q = q, .layer_k = kv.k, .layer_v = kv.v, .layer_k_scales = kv.k_scales, .layer_v_scales = kv.v_scales, .block_table = block_table_, .output = o, .num_q_heads = c.q_heads,
                                       .num_kv_heads = c.kv_heads, .head_dim = hd, .valid_kv_len = p0 + t + 1, .block_size = c.kv_block_size, .scale = 0.0f, .sliding_window = 0});
    else
      ctx_.fp8_paged_decode_attention({.q = q, .layer_k = kv.k, .layer_v = kv.v, .layer_k_scales = kv.k_scales, .layer_v_scales = kv.v_scales, .block_table = block_table_, .output = o, .num_q_heads = c.q_heads,
                                      .num_kv_heads = c.kv_heads, .head_dim = hd, .valid_kv_len = p0 + t + 1, .block_size = c.kv_block_size, .scale = 0.0f, .sliding_window = 0});
    if (T > 1) ctx_.copy_slice({.src = o_row_, .src_offset = 0, .dst = attn_, .dst_offset = t * qd, .len = qd});
  }
}

}  // namespace ferrum::demo
