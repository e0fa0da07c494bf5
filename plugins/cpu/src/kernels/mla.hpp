// ferrum CPU plugin — multi-head latent attention, absorbed (FlashMLA-style) form (docs/spec.md §14).
#ifndef FERRUM_CPU_KERNELS_MLA_HPP
#define FERRUM_CPU_KERNELS_MLA_HPP

#include <cstdint>

#include <ferrum/common/dtype.hpp>

namespace ferrum::cpu {

// q   [batch, num_heads, q_len, R + P]: each row is [latent (R) | rope (P)];
// kv_compressed [batch, S, R], kv_rope [batch, S, P] with S = kv_seq_stride ? kv_seq_stride : kv_len:
//     one latent KV stream per batch item, shared by every head (no head axis);
// out [batch, num_heads, q_len, R].
// Query i of (b, h) sits at p = pos_offset + i and attends j in 𝒱(p, kv_len) (causal, sliding_window
// as in §0.8) with s_j = scale·(q_lat·c_j + q_rope·r_j) and value c_j; an empty 𝒱 gives +0.0.
// Online softmax in f32. Work item = (batch, tile of kRowTile (head, query) rows): every tile widens
// a block of latent keys to f32 once for all of its rows. T in {float, f16, bf16}.
// No validation (scale ≠ 0, kv_len <= S, R, P >= 1): the glue layer checks.
template <class T>
void mla_attention(const T* q, const T* kv_compressed, const T* kv_rope, T* out, uint64_t batch, uint64_t q_len,
                   uint64_t kv_len, uint64_t pos_offset, uint64_t num_heads, bool causal, float scale,
                   uint64_t kv_seq_stride, uint64_t sliding_window, uint64_t kv_lora_rank,
                   uint64_t qk_rope_head_dim);

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_MLA_HPP
