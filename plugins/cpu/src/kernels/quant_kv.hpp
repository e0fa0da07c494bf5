// ferrum CPU plugin — quantised paged KV: int8 and fp8 e4m3 codes with one f32 scale per
// (token, KV head) (docs/spec.md §7).
//
// Layout (docs/spec.md §0.10, "quantised paged"): codes [N, bs, nkv, D] at ((blk·bs + o)·nkv + h)·D + d,
// scales F32 [N, bs, nkv] at (blk·bs + o)·nkv + h. `Code` is int8_t (I8) or f8e4m3 (F8_E4M3); T in
// {float, f16, bf16} is the activation type; Idx in {uint32_t, int32_t} the block-table type.
//
// No validation of host fields (head counts, block lists, capacities): the glue layer checks.
// Device-resident block-table entries are bounds-checked here: a key whose physical block is
// out of range (>= num_blocks, or negative) is left out of the softmax (docs/spec.md §0.11 leaves the
// row unspecified; nothing outside the buffers is read).
#ifndef FERRUM_CPU_KERNELS_QUANT_KV_HPP
#define FERRUM_CPU_KERNELS_QUANT_KV_HPP

#include <cstdint>

#include <ferrum/common/dtype.hpp>

namespace ferrum::cpu {

// The §7.2 recipe for one vector of n f32 values: a = max|x| (exact), s = max(a, 1e-8f) / Q with
// Q = 127 (int8) or 448 (fp8) as an IEEE f32 division, code[d] = rint(clamp(x[d] / s, ±127)) (int8,
// round half to even) or e4m3(x[d] / s) (fp8, §7.1 rounding and saturation). Returns s.
template <class Code>
float quantize_kv_row(const float* x, uint64_t n, Code* codes);

// Token t of k_in/v_in ([tokens, nkv, D], token-major) goes to logical position
// L = cache_len_before + t: block block_indices[L / bs], offset L % bs; each (token, head) vector
// is quantised by quantize_kv_row into the codes and the scale at that slot. Parallel over tokens.
template <class T, class Code>
void quant_kv_append_paged(const T* k_in, const T* v_in, Code* layer_k, Code* layer_v, float* k_scales,
                           float* v_scales, const uint32_t* block_indices, uint64_t cache_len_before,
                           uint64_t tokens, uint64_t block_size, uint64_t nkv, uint64_t head_dim);

// One query per head q [nq, D] at p = valid_kv_len − 1, causal, over keys j in 𝒱(p, valid_kv_len)
// (sliding_window as in §0.8); key j is read from block block_table[j / bs], offset j % bs, KV head
// h / (nq / nkv), dequantised as s·code in f32. out [nq, D]; an empty visible set (valid_kv_len = 0)
// gives +0.0. σ = scale ? scale : 1/sqrt(D). Online softmax in f32; the key range is split into at
// most 16 chunks chosen from the shapes alone (deterministic), merged in order.
template <class T, class Code, class Idx>
void quant_paged_decode_attention(const T* q, const Code* layer_k, const Code* layer_v, const float* k_scales,
                                  const float* v_scales, const Idx* block_table, uint64_t num_blocks, T* out,
                                  uint64_t nq, uint64_t nkv, uint64_t head_dim, uint64_t valid_kv_len,
                                  uint64_t block_size, float scale, uint64_t sliding_window);

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_QUANT_KV_HPP
