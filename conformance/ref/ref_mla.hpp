// ferrum conformance — float64 reference of mla_attention (docs/spec.md §14, absorbed form).
//
// Written from docs/spec.md §14 alone: ATTN of §0.8 with key [c_j | r_j], value c_j and σ = scale, over
// one latent KV stream per batch item shared by all heads. Conventions as in reference.hpp.
#pragma once

#include "reference.hpp"

#include <cstdint>
#include <vector>

namespace ferrum::ref {

// q [batch, num_heads, q_len, R + P], kv_compressed [batch, S, R], kv_rope [batch, S, P],
// out [batch, num_heads, q_len, R]; S = kv_seq_stride > 0 ? kv_seq_stride : kv_len; query i at
// p = pos_offset + i over keys 𝒱(p, kv_len). kv_len = 0 gives zero rows.
inline void mla_attention(const vec& q, const vec& kv_compressed, const vec& kv_rope, vec& out, uint64_t batch,
                          uint64_t q_len, uint64_t kv_len, uint64_t pos_offset, uint64_t num_heads,
                          uint64_t num_kv_heads, uint64_t head_dim, uint32_t causal, float scale,
                          uint64_t kv_seq_stride, uint64_t sliding_window, uint64_t kv_lora_rank,
                          uint64_t qk_rope_head_dim) {
  const char* op = "mla_attention";
  const uint64_t R = kv_lora_rank, P = qk_rope_head_dim, QD = R + P;
  detail::check(causal <= 1, op, "causal must be 0 or 1");
  detail::check(num_heads >= 1, op, "num_heads = 0");
  detail::check(num_kv_heads == 1, op, "num_kv_heads must be 1");
  detail::check(R >= 1 && P >= 1, op, "kv_lora_rank and qk_rope_head_dim must be >= 1");
  detail::check(head_dim == QD, op, "head_dim must equal kv_lora_rank + qk_rope_head_dim");
  detail::check(scale != 0.0f && std::isfinite(scale), op, "scale must be finite and non-zero");
  const uint64_t S = kv_seq_stride > 0 ? kv_seq_stride : kv_len;
  detail::check(kv_len <= S, op, "kv_len > kv_seq_stride");
  if (batch == 0 || q_len == 0) return;
  detail::need(q, batch * num_heads * q_len * QD, op, "q");
  if (kv_len > 0) {
    detail::need(kv_compressed, batch * S * R, op, "kv_compressed");
    detail::need(kv_rope, batch * S * P, op, "kv_rope");
  }
  vec r(batch * num_heads * q_len * R);
  std::vector<double> keys;  // [kv_len, R + P] concatenated keys of one batch item
  for (uint64_t b = 0; b < batch; ++b) {
    keys.assign(kv_len * QD, 0.0);
    for (uint64_t j = 0; j < kv_len; ++j) {
      for (uint64_t d = 0; d < R; ++d) keys[j * QD + d] = kv_compressed[(b * S + j) * R + d];
      for (uint64_t d = 0; d < P; ++d) keys[j * QD + R + d] = kv_rope[(b * S + j) * P + d];
    }
    for (uint64_t h = 0; h < num_heads; ++h)
      for (uint64_t i = 0; i < q_len; ++i) {
        const uint64_t row = (b * num_heads + h) * q_len + i;
        attention_row(
            &q[row * QD], QD, R, static_cast<double>(scale), pos_offset + i, kv_len, causal, sliding_window,
            [&](uint64_t j) { return keys.data() + j * QD; }, [&](uint64_t j) { return keys.data() + j * QD; },
            &r[row * R]);
      }
  }
  detail::fit(out, r.size());
  std::copy(r.begin(), r.end(), out.begin());
}

}  // namespace ferrum::ref
