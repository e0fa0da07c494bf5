// ferrum CPU plugin — QK-norm / RoPE family (docs/spec.md §0.7, §4) and the contiguous KV append (§5).
// T in {float, f16, bf16} is the activation type; C in {T, float} the RoPE table type. Tables
// are [rows, D/2] row-major (row p = absolute position p). Each transform runs in f32 and
// is rounded once. No validation (mode range, even D, positions < rows, cache capacity):
// the glue layer checks; only the device-style positions of the batched op are re-checked.
#ifndef FERRUM_CPU_KERNELS_ROPE_HPP
#define FERRUM_CPU_KERNELS_ROPE_HPP

#include <cstdint>

#include <ferrum/common/dtype.hpp>

namespace ferrum::cpu {

// One head vector: y = transform_mode(x) with mode 0 copy, 1 RMSNorm(w, eps) then NeoX,
// 2 NeoX, 3 GPT-J. cos_row/sin_row are the table rows of the position (D/2 values; unread
// in mode 0). w may be null (then 1). y must not overlap x.
template <class T, class C>
void qk_transform(const T* x, T* y, const T* w, const C* cos_row, const C* sin_row, uint64_t D, float eps,
                  int mode);

// output[h, t, :] = transform(input[t, h, :], p = pos_offset + t): token-major in, head-major out.
template <class T, class C>
void qk_norm_rope(const T* input, const T* norm_w, const C* cos, const C* sin, T* output, uint64_t tokens,
                  uint64_t heads, uint64_t head_dim, uint64_t pos_offset, float eps, int mode);

// output[i, h, :] = transform(input[i, h, :], p = positions[i]) (item-major in and out).
// positions are host copies of device values: an item with p >= table_rows (modes 1–3) gets
// a row of +0.0 instead of reading outside the tables.
template <class T, class C>
void qk_norm_rope_batched_per_item(const T* input, const T* norm_w, const C* cos, const C* sin,
                                   uint64_t table_rows, T* output, const uint64_t* positions, uint64_t m,
                                   uint64_t heads, uint64_t head_dim, float eps, int mode);

// Packed qkv [tokens, (q_heads + 2·kv_heads)·head_dim] → head-major outputs, p = pos_offset + t:
// q_out[h, t] = transform(Q_h(t), q_norm_w), k_out[h, t] = transform(K_h(t), k_norm_w),
// v_out[h, t] = V_h(t).
template <class T, class C>
void split_qkv_norm_rope(const T* qkv, const T* q_norm_w, const T* k_norm_w, const C* cos, const C* sin,
                         T* q_out, T* k_out, T* v_out, uint64_t tokens, uint64_t q_heads, uint64_t kv_heads,
                         uint64_t head_dim, uint64_t pos_offset, float eps, int mode);

// As split_qkv_norm_rope, but K and V go to contiguous caches [kv_heads, cache_capacity,
// head_dim] at row cache_len + t (cache_len + tokens <= cache_capacity).
template <class T, class C>
void split_qkv_norm_rope_into_cache(const T* qkv, const T* q_norm_w, const T* k_norm_w, const C* cos,
                                    const C* sin, T* q_out, T* cache_k, T* cache_v, uint64_t tokens,
                                    uint64_t q_heads, uint64_t kv_heads, uint64_t head_dim, uint64_t pos_offset,
                                    float eps, int mode, uint64_t cache_len, uint64_t cache_capacity);

// cache_k[h, cache_len + t, :] = new_k[h, t, :] (likewise V); head-major new rows.
template <class T>
void kv_cache_append_head_major(T* cache_k, T* cache_v, uint64_t cache_len, uint64_t cache_capacity,
                                const T* new_k, const T* new_v, uint64_t new_tokens, uint64_t nkv, uint64_t hd);

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_ROPE_HPP
