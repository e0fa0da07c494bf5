// ferrum test support — float64 host forward of a small Qwen3-style decoder (checks the demo).
//
// Block (standard Qwen3, pre-norm):
//   x  = embedding[token]
//   per layer:  a   = rms_norm(x, input_norm)
//               qkv = a · w_qkvᵀ                       ([T, (q + 2kv)·hd], §0.5 packing)
//               q_h = qk1(Q_h, q_norm, p), k_h = qk1(K_h, k_norm, p), v_h = V_h
//                     (qk_mode 1: per-head RMSNorm then NeoX RoPE, §0.7, p = absolute position)
//               attn = causal GQA attention over the cache, σ = 1/sqrt(hd)
//               h   = x + attn · w_oᵀ
//               g|u = rms_norm(h, post_norm) · w_gate_upᵀ   (gate rows 0..ffn−1, up rows ffn..2ffn−1)
//               x   = h + (silu(g)·u) · w_downᵀ
//   logits = rms_norm(x, final_norm) · lm_headᵀ          ([T, vocab])
// RoPE: cos/sin[p, i] = cos/sin(p · theta^(−2i/hd)), i < hd/2. All rms_norms use eps as the f32 value a
// plugin receives: (float)cfg.eps.
//
// ---- Deterministic weights (the demo program must generate IDENTICAL values) ----
//   splitmix64(x):  x += 0x9E3779B97F4A7C15;  z = x;
//                   z = (z ^ (z >> 30)) · 0xBF58476D1CE4E5B9;  z = (z ^ (z >> 27)) · 0x94D049BB133111EB;
//                   return z ^ (z >> 31)                       (all arithmetic mod 2^64)
//   weight_value(seed, tensor_id, index, scale):
//                   h = splitmix64(splitmix64(splitmix64(seed) ^ tensor_id) ^ index)
//                   u = (h >> 11) · 2^-53                       (exact, in [0, 1))
//                   return scale · (2u − 1)                     (2u − 1 exact; one IEEE double multiply)
//   tensor ids:     embedding 1, final_norm 2, lm_head 3;
//                   layer l (0-based): 100·(l+1) + {0 input_norm, 1 w_qkv, 2 q_norm, 3 k_norm, 4 w_o,
//                                                   5 post_norm, 6 w_gate_up, 7 w_down}
//   index:          the row-major flat element index within the tensor.
//   values:         matrices [out, in]: weight_value(seed, id, i, 1/sqrt(in))   (1.0/std::sqrt(double(in)))
//                   embedding [vocab, hidden]: weight_value(seed, id, i, 1.0)
//                   norm weights: 1.0 + weight_value(seed, id, i, 0.1)
//   then each value is rounded to the model dtype with ferrum::testing::round_to(dtype, ·) (via f32,
//   RNE; dtype 0 = keep the doubles), i.e. what from_slice/from_weight_bytes of the f32 value stores.
//   Shapes: embedding [vocab, hidden]; input_norm [hidden]; w_qkv [(q+2kv)·hd, hidden]; q_norm, k_norm
//   [hd]; w_o [hidden, q·hd]; post_norm [hidden]; w_gate_up [2·ffn, hidden]; w_down [hidden, ffn];
//   final_norm [hidden]; lm_head [vocab, hidden].
//
// forward() processes `tokens` at positions cache.len .. cache.len + T − 1 (T > 1: prefill or a chunk;
// T = 1: a decode step), appends their K/V to the cache and returns logits [T, vocab].
// ForwardOptions::act_dtype != 0 rounds every stored intermediate (each op output of an unfused
// pipeline: norm outputs, projections, rotated q/k, attention output, residual sums, silu·up, logits)
// to that dtype, to follow a low-precision plugin run more closely; tab_dtype rounds the RoPE tables.
#pragma once

#include "quantize.hpp"
#include "reference.hpp"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace ferrum::ref {

constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  uint64_t z = x;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline double weight_value(uint64_t seed, uint64_t tensor_id, uint64_t index, double scale) {
  const uint64_t h = splitmix64(splitmix64(splitmix64(seed) ^ tensor_id) ^ index);
  const double u = static_cast<double>(h >> 11) * 0x1.0p-53;
  return scale * (2.0 * u - 1.0);
}

struct QwenConfig {
  uint64_t hidden = 64;
  uint64_t layers = 2;
  uint64_t q_heads = 4;
  uint64_t kv_heads = 2;
  uint64_t head_dim = 16;
  uint64_t ffn = 128;
  uint64_t vocab = 256;
  double rope_theta = 1e6;
  double eps = 1e-6;
};

namespace qwen_tensor {
constexpr uint64_t kEmbedding = 1, kFinalNorm = 2, kLmHead = 3;
constexpr uint64_t kInputNorm = 0, kWqkv = 1, kQNorm = 2, kKNorm = 3, kWo = 4, kPostNorm = 5, kWGateUp = 6,
                   kWDown = 7;
constexpr uint64_t layer_id(uint64_t layer, uint64_t k) { return 100 * (layer + 1) + k; }
}  // namespace qwen_tensor

struct QwenLayerWeights {
  std::vector<double> input_norm, w_qkv, q_norm, k_norm, w_o, post_norm, w_gate_up, w_down;
};

struct QwenWeights {
  std::vector<double> embedding;
  std::vector<QwenLayerWeights> layers;
  std::vector<double> final_norm, lm_head;
};

inline void validate(const QwenConfig& c) {
  if (!c.hidden || !c.layers || !c.q_heads || !c.kv_heads || !c.head_dim || !c.ffn || !c.vocab)
    throw std::invalid_argument("QwenConfig: every dimension must be > 0");
  if (c.q_heads % c.kv_heads) throw std::invalid_argument("QwenConfig: q_heads % kv_heads != 0");
  if (c.head_dim % 2) throw std::invalid_argument("QwenConfig: head_dim must be even");
}

namespace detail {
inline std::vector<double> gen_matrix(uint64_t seed, uint64_t id, uint64_t rows, uint64_t cols, double scale,
                                      int32_t dtype) {
  std::vector<double> v(rows * cols);
  for (uint64_t i = 0; i < v.size(); ++i) v[i] = testing::round_to(dtype, weight_value(seed, id, i, scale));
  return v;
}
inline std::vector<double> gen_norm(uint64_t seed, uint64_t id, uint64_t n, int32_t dtype) {
  std::vector<double> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = testing::round_to(dtype, 1.0 + weight_value(seed, id, i, 0.1));
  return v;
}
inline double inv_sqrt_fan_in(uint64_t in) { return 1.0 / std::sqrt(static_cast<double>(in)); }
}  // namespace detail

// Weights per the scheme in the header comment; dtype 0 keeps the unrounded doubles.
inline QwenWeights make_weights(const QwenConfig& c, uint64_t seed, int32_t dtype = FERRUM_DTYPE_INVALID) {
  validate(c);
  using namespace qwen_tensor;
  const uint64_t hd = c.head_dim, qkv_rows = (c.q_heads + 2 * c.kv_heads) * hd;
  QwenWeights w;
  w.embedding = detail::gen_matrix(seed, kEmbedding, c.vocab, c.hidden, 1.0, dtype);
  for (uint64_t l = 0; l < c.layers; ++l) {
    QwenLayerWeights L;
    L.input_norm = detail::gen_norm(seed, layer_id(l, kInputNorm), c.hidden, dtype);
    L.w_qkv = detail::gen_matrix(seed, layer_id(l, kWqkv), qkv_rows, c.hidden, detail::inv_sqrt_fan_in(c.hidden), dtype);
    L.q_norm = detail::gen_norm(seed, layer_id(l, kQNorm), hd, dtype);
    L.k_norm = detail::gen_norm(seed, layer_id(l, kKNorm), hd, dtype);
    L.w_o = detail::gen_matrix(seed, layer_id(l, kWo), c.hidden, c.q_heads * hd, detail::inv_sqrt_fan_in(c.q_heads * hd), dtype);
    L.post_norm = detail::gen_norm(seed, layer_id(l, kPostNorm), c.hidden, dtype);
    L.w_gate_up = detail::gen_matrix(seed, layer_id(l, kWGateUp), 2 * c.ffn, c.hidden, detail::inv_sqrt_fan_in(c.hidden), dtype);
    L.w_down = detail::gen_matrix(seed, layer_id(l, kWDown), c.hidden, c.ffn, detail::inv_sqrt_fan_in(c.ffn), dtype);
    w.layers.push_back(std::move(L));
  }
  w.final_norm = detail::gen_norm(seed, kFinalNorm, c.hidden, dtype);
  w.lm_head = detail::gen_matrix(seed, kLmHead, c.vocab, c.hidden, detail::inv_sqrt_fan_in(c.hidden), dtype);
  return w;
}

// RoPE tables [max_pos, hd/2] with inv_freq_i = theta^(−2i/hd) (dtype 0 = unrounded).
inline void qwen_rope_tables(const QwenConfig& c, uint64_t max_pos, std::vector<double>& cos, std::vector<double>& sin,
                             int32_t dtype = FERRUM_DTYPE_INVALID) {
  rope_tables(max_pos, c.head_dim, c.rope_theta, cos, sin);
  for (double& x : cos) x = testing::round_to(dtype, x);
  for (double& x : sin) x = testing::round_to(dtype, x);
}

// Per layer K and V of every processed position, token-major [len, kv_heads, head_dim].
struct KvCache {
  uint64_t len = 0;
  std::vector<std::vector<double>> k, v;
  void reset() { len = 0; k.clear(); v.clear(); }
};

struct ForwardOptions {
  int32_t act_dtype = FERRUM_DTYPE_INVALID;  // round stored intermediates to this dtype (0 = none)
  int32_t tab_dtype = FERRUM_DTYPE_INVALID;  // round the RoPE tables to this dtype (0 = none)
};

inline std::vector<double> forward(const QwenConfig& c, const QwenWeights& w, const std::vector<uint32_t>& tokens,
                                   KvCache& cache, const ForwardOptions& opt = {}) {
  validate(c);
  const uint64_t T = tokens.size();
  if (T == 0) return {};
  const uint64_t H = c.hidden, hd = c.head_dim, nq = c.q_heads, nkv = c.kv_heads, F = c.ffn;
  const uint64_t qkv_dim = (nq + 2 * nkv) * hd, p0 = cache.len;
  const float eps = static_cast<float>(c.eps);
  auto rnd = [&](std::vector<double>& v) {
    if (opt.act_dtype != FERRUM_DTYPE_INVALID)
      for (double& x : v) x = testing::round_to(opt.act_dtype, x);
  };
  if (cache.k.size() != c.layers) { cache.k.assign(c.layers, {}); cache.v.assign(c.layers, {}); }
  std::vector<double> cos, sin;
  qwen_rope_tables(c, p0 + T, cos, sin, opt.tab_dtype);

  std::vector<double> x;
  embedding_lookup(w.embedding, tokens, T, x, H);
  std::vector<double> a, qkv, o, h, g, act, d, attn(T * nq * hd), qh(hd);
  for (uint64_t l = 0; l < c.layers; ++l) {
    const QwenLayerWeights& L = w.layers[l];
    rms_norm(x, L.input_norm, eps, a, T, H); rnd(a);
    gemm(a, L.w_qkv, qkv, T, qkv_dim, H); rnd(qkv);
    std::vector<double> qrot(T * nq * hd);  // token-major [T, nq, hd]
    auto& K = cache.k[l];
    auto& V = cache.v[l];
    K.resize((p0 + T) * nkv * hd);
    V.resize((p0 + T) * nkv * hd);
    for (uint64_t t = 0; t < T; ++t) {
      const double* row = &qkv[t * qkv_dim];
      for (uint64_t hh = 0; hh < nq; ++hh)
        qk_transform(row + hh * hd, &qrot[(t * nq + hh) * hd], hd, p0 + t, L.q_norm, cos, sin, eps, 1);
      for (uint64_t hh = 0; hh < nkv; ++hh) {
        double* kd = &K[((p0 + t) * nkv + hh) * hd];
        qk_transform(row + (nq + hh) * hd, kd, hd, p0 + t, L.k_norm, cos, sin, eps, 1);
        std::copy_n(row + (nq + nkv + hh) * hd, hd, &V[((p0 + t) * nkv + hh) * hd]);
        if (opt.act_dtype) for (uint64_t i = 0; i < hd; ++i) kd[i] = testing::round_to(opt.act_dtype, kd[i]);
      }
    }
    rnd(qrot);
    const double sigma = 1.0 / std::sqrt(static_cast<double>(hd));
    for (uint64_t t = 0; t < T; ++t)
      for (uint64_t hh = 0; hh < nq; ++hh) {
        const uint64_t kvh = kv_head_of(hh, nq, nkv);
        attention_row(
            &qrot[(t * nq + hh) * hd], hd, hd, sigma, p0 + t, p0 + T, 1, 0,
            [&](uint64_t j) { return &K[(j * nkv + kvh) * hd]; }, [&](uint64_t j) { return &V[(j * nkv + kvh) * hd]; },
            &attn[(t * nq + hh) * hd]);
      }
    rnd(attn);
    gemm(attn, L.w_o, o, T, H, nq * hd); rnd(o);
    h = x;
    add_inplace(h, o, T * H, opt.act_dtype);
    rms_norm(h, L.post_norm, eps, a, T, H); rnd(a);
    gemm(a, L.w_gate_up, g, T, 2 * F, H); rnd(g);
    fused_silu_mul_split(g, act, T, F); rnd(act);
    gemm(act, L.w_down, d, T, H, F); rnd(d);
    add_inplace(h, d, T * H, opt.act_dtype);
    x = h;
  }
  cache.len = p0 + T;
  rms_norm(x, w.final_norm, eps, a, T, H); rnd(a);
  std::vector<double> logits;
  gemm(a, w.lm_head, logits, T, c.vocab, H); rnd(logits);
  return logits;
}

// Greedy decoding: prefill `prompt`, then `n_new` single-token steps; returns the generated ids
// (argmax with the §3 argmax_rows rules on the last logits row of each step).
inline std::vector<uint32_t> greedy_generate(const QwenConfig& c, const QwenWeights& w,
                                             const std::vector<uint32_t>& prompt, uint64_t n_new,
                                             const ForwardOptions& opt = {}) {
  KvCache cache;
  std::vector<uint32_t> out;
  if (prompt.empty() || n_new == 0) return out;
  std::vector<double> logits = forward(c, w, prompt, cache, opt);
  uint32_t next = argmax_row(&logits[(prompt.size() - 1) * c.vocab], c.vocab);
  out.push_back(next);
  while (out.size() < n_new) {
    logits = forward(c, w, {next}, cache, opt);
    next = argmax_row(logits.data(), c.vocab);
    out.push_back(next);
  }
  return out;
}

}  // namespace ferrum::ref
