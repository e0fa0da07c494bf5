// ferrum CPU plugin — attention over contiguous KV (docs/spec.md §0.8, §5 flash_attention).
#ifndef FERRUM_CPU_KERNELS_ATTENTION_HPP
#define FERRUM_CPU_KERNELS_ATTENTION_HPP

#include <cstdint>

#include <ferrum/common/dtype.hpp>

namespace ferrum::cpu {

// q, out: [batch, num_heads, q_len, head_dim] (batched head-major);
// k, v:   [batch, num_kv_heads, S, head_dim] with S = kv_seq_stride ? kv_seq_stride : kv_len.
// Query i of (b, h) sits at p = pos_offset + i and reads KV head h / (num_heads / num_kv_heads)
// over 𝒱(p, kv_len) = { j < kv_len : (!causal or j <= p), (!window or j >= p − window + 1) }.
// out = softmax(σ · q·kᵀ) · v over 𝒱 with σ = scale ? scale : 1/sqrt(head_dim); an empty 𝒱 gives
// +0.0. Online softmax (running max and sum) in f32; scratch is O(head_dim) per query plus a
// fixed key block; parallel over (batch, head, query tile). T in {float, f16, bf16}.
// No validation (head counts, kv_len <= S, head_dim > 0): the glue layer checks.
template <class T>
void flash_attention(const T* q, const T* k, const T* v, T* out, uint64_t batch, uint64_t q_len, uint64_t kv_len,
                     uint64_t pos_offset, uint64_t num_heads, uint64_t num_kv_heads, uint64_t head_dim, bool causal,
                     float scale, uint64_t kv_seq_stride, uint64_t sliding_window);

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_ATTENTION_HPP
