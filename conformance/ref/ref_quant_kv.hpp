// ferrum conformance — references of the quantised KV family (docs/spec.md §7).
//
// Written from docs/spec.md §7.2 alone, independent of every plugin:
// * the recipe is reproduced exactly as specified, in f32 where the entry prescribes f32: a = max|x|
//   (exact), s = max(a, 1e-8f) / Q as an IEEE f32 division (Q = 127 for int8, 448 for fp8), then per
//   element the f32 quotient x / s, and the code: rint(clamp(·, −127, 127)) with round half to even
//   (int8), or the e4m3 value of ferrum::testing::f32_to_f8e4m3_bits (fp8, §7.1);
// * attention is float64 (class Q = F) over the dequantised values fl32(s · code) (§0.13: the
//   prescribed f32 rounding is applied, nothing else).
// Conventions as in reference.hpp: codes are held as doubles (the decoded code values: integers for
// int8, e4m3 values for fp8); misuse that docs/spec.md calls INVALID_ARGUMENT throws std::invalid_argument;
// a device block id out of range throws std::out_of_range (those rows are unspecified).
#pragma once

#include "quantize.hpp"
#include "reference.hpp"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ferrum::ref {

enum class KvQuant { int8, fp8 };

// §7.2 for one (token, head) vector of n values exactly as stored (doubles holding f32-representable
// values). Writes the code values to codes[0, n) and returns the scale s (an f32 value).
inline float quantize_kv_vector(KvQuant kind, const double* x, uint64_t n, double* codes) {
  float a = 0.0f;
  for (uint64_t d = 0; d < n; ++d) {
    const float v = std::fabs(static_cast<float>(x[d]));
    if (v > a) a = v;
  }
  const float floor = 1e-8f;  // the f32 value nearest 10^-8
  const volatile float num = a > floor ? a : floor;
  const volatile float s = num / (kind == KvQuant::int8 ? 127.0f : 448.0f);
  for (uint64_t d = 0; d < n; ++d) {
    const volatile float r = static_cast<float>(x[d]) / s;
    if (kind == KvQuant::int8) {
      float c = r;
      if (c < -127.0f) c = -127.0f;
      if (c > 127.0f) c = 127.0f;
      // Round half to even, written out (no dependence on the FP rounding mode).
      const double fl = std::floor(static_cast<double>(c));
      const double frac = static_cast<double>(c) - fl;
      double q = fl;
      if (frac > 0.5 || (frac == 0.5 && std::fmod(fl, 2.0) != 0.0)) q = fl + 1.0;
      codes[d] = q == 0.0 ? 0.0 : q;  // an integer code has no −0
    } else {
      codes[d] = testing::f8e4m3_bits_to_double(testing::f32_to_f8e4m3_bits(r));
    }
  }
  return s;
}

// The dequantised value of a code: fl32(s · code) (§7.2).
inline double dequantize_kv(float s, double code) {
  return static_cast<double>(s * static_cast<float>(code));
}

// {int8,fp8}_kv_append_paged. Pools: codes [N, bs, nkv, D], scales [N, bs, nkv] (N from the codes'
// size); token t of k_in/v_in ([tokens, nkv, D]) is quantised into the slot of logical position
// cache_len_before + t through paged_block_indices. Other slots are left as given.
inline void quant_kv_append_paged(KvQuant kind, const vec& k_in, const vec& v_in, vec& layer_k, vec& layer_v,
                                  vec& layer_k_scales, vec& layer_v_scales,
                                  const std::vector<uint32_t>& paged_block_indices, uint64_t cache_len_before,
                                  uint64_t tokens, uint64_t block_size, uint64_t num_kv_heads, uint64_t head_dim) {
  const char* op = kind == KvQuant::int8 ? "int8_kv_append_paged" : "fp8_kv_append_paged";
  detail::check(block_size > 0, op, "block_size = 0");
  if (tokens == 0) return;
  detail::check(num_kv_heads > 0 && head_dim > 0, op, "num_kv_heads or head_dim = 0 with tokens");
  const uint64_t D = head_dim, nkv = num_kv_heads, bs = block_size;
  const uint64_t N = layer_k.size() / (bs * nkv * D);
  detail::check(N >= 1, op, "layer_k holds no block");
  detail::need(layer_v, N * bs * nkv * D, op, "layer_v");
  detail::need(layer_k_scales, N * bs * nkv, op, "layer_k_scales");
  detail::need(layer_v_scales, N * bs * nkv, op, "layer_v_scales");
  detail::need(k_in, tokens * nkv * D, op, "k_in");
  detail::need(v_in, tokens * nkv * D, op, "v_in");
  const uint64_t end = cache_len_before + tokens;
  detail::check(paged_block_indices.size() >= (end + bs - 1) / bs, op, "paged_block_indices too short");
  for (uint64_t lb = cache_len_before / bs; lb < (end + bs - 1) / bs; ++lb)
    detail::check(paged_block_indices[lb] < N, op, "block index >= N");
  for (uint64_t t = 0; t < tokens; ++t) {
    const uint64_t L = cache_len_before + t;
    const uint64_t slot = static_cast<uint64_t>(paged_block_indices[L / bs]) * bs + L % bs;
    for (uint64_t h = 0; h < nkv; ++h) {
      const uint64_t src = (t * nkv + h) * D, dst = slot * nkv + h;
      layer_k_scales[dst] = quantize_kv_vector(kind, &k_in[src], D, &layer_k[dst * D]);
      layer_v_scales[dst] = quantize_kv_vector(kind, &v_in[src], D, &layer_v[dst * D]);
    }
  }
}

// {int8,fp8}_paged_decode_attention: one query per head at p = valid_kv_len − 1 (causal), keys
// j in 𝒱(p, valid_kv_len) read from block block_table[j / bs], offset j % bs, KV head kvh(h), as
// the dequantised values fl32(s·code). output [num_q_heads, head_dim]. valid_kv_len = 0: zero rows.
inline void quant_paged_decode_attention(const vec& q, const vec& layer_k, const vec& layer_v,
                                         const vec& layer_k_scales, const vec& layer_v_scales,
                                         const std::vector<int64_t>& block_table, vec& output, uint64_t num_q_heads,
                                         uint64_t num_kv_heads, uint64_t head_dim, uint64_t valid_kv_len,
                                         uint64_t block_size, float scale, uint64_t sliding_window) {
  const char* op = "paged_decode_attention (quantised)";
  detail::check(num_q_heads >= 1 && num_kv_heads >= 1 && num_q_heads % num_kv_heads == 0, op,
                "num_q_heads must be a positive multiple of num_kv_heads");
  detail::check(block_size > 0 && head_dim > 0, op, "block_size or head_dim = 0");
  const double sigma = attention_scale(scale, head_dim);
  const uint64_t D = head_dim, nkv = num_kv_heads, bs = block_size;
  const uint64_t N = layer_k.size() / (bs * nkv * D);
  detail::check(valid_kv_len <= N * bs, op, "valid_kv_len > N·block_size");
  detail::need(q, num_q_heads * D, op, "q");
  detail::check(block_table.size() >= (valid_kv_len + bs - 1) / bs, op, "block_table too short");
  vec r(num_q_heads * D);
  std::vector<double> keys, vals;  // dequantised rows of this KV head, position-major
  for (uint64_t kvh = 0; kvh < nkv; ++kvh) {
    keys.assign(valid_kv_len * D, 0.0);
    vals.assign(valid_kv_len * D, 0.0);
    for (uint64_t j = 0; j < valid_kv_len; ++j) {
      const int64_t blk = block_table[j / bs];
      if (blk < 0 || static_cast<uint64_t>(blk) >= N) throw std::out_of_range(std::string(op) + ": block id out of range");
      const uint64_t slot = (static_cast<uint64_t>(blk) * bs + j % bs) * nkv + kvh;
      const float sk = static_cast<float>(layer_k_scales.at(slot)), sv = static_cast<float>(layer_v_scales.at(slot));
      for (uint64_t d = 0; d < D; ++d) {
        keys[j * D + d] = dequantize_kv(sk, layer_k.at(slot * D + d));
        vals[j * D + d] = dequantize_kv(sv, layer_v.at(slot * D + d));
      }
    }
    for (uint64_t h = 0; h < num_q_heads; ++h) {
      if (kv_head_of(h, num_q_heads, nkv) != kvh) continue;
      const uint64_t p = valid_kv_len == 0 ? 0 : valid_kv_len - 1;
      attention_row(
          &q[h * D], D, D, sigma, p, valid_kv_len, /*causal=*/1, sliding_window,
          [&](uint64_t j) { return keys.data() + j * D; }, [&](uint64_t j) { return vals.data() + j * D; },
          &r[h * D]);
    }
  }
  detail::fit(output, r.size());
  std::copy(r.begin(), r.end(), output.begin());
}

}  // namespace ferrum::ref
