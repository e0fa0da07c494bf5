// ferrum CPU plugin — element-wise, copy and gather kernels (docs/spec.md §3, copy_slice of §1).
// T in {float, f16, bf16}; dense row-major; f32 arithmetic, one rounding per output.
// No argument validation: the glue layer checks shapes, aliasing and ranges.
#ifndef FERRUM_CPU_KERNELS_ELEMENTWISE_HPP
#define FERRUM_CPU_KERNELS_ELEMENTWISE_HPP

#include <cstdint>

#include <ferrum/common/dtype.hpp>

namespace ferrum::cpu {

// out = 0.5·x·(1 + erf(x/√2)) (exact erf form). out may alias x.
template <class T>
void gelu(const T* x, T* out, uint64_t len);

// residual[i] ← round(residual[i] + x[i]). x may equal residual.
template <class T>
void add_inplace(T* residual, const T* x, uint64_t len);

// dst[i] ← round(dst[i] + scale·src[i]) (fused multiply-add).
template <class T>
void scaled_add_inplace(T* dst, const T* src, float scale, uint64_t len);

// data[r, c] ← round(data[r, c] + bias[c]).
template <class T>
void add_bias(T* data, const T* bias, uint64_t rows, uint64_t cols);

// out[t, i] = silu(gate_up[t, i]) · gate_up[t, im + i], silu(g) = g / (1 + exp(−g)).
template <class T>
void fused_silu_mul_split(const T* gate_up, T* out, uint64_t tokens, uint64_t im);

// As above on rows gate_up[in_row_offset + t] → out[out_row_offset + t], t < tokens.
template <class T>
void fused_silu_mul_split_strided(const T* gate_up, uint64_t in_row_offset, T* out, uint64_t out_row_offset,
                                  uint64_t tokens, uint64_t im);

// q[t] = qkv[t, 0:q_dim], k[t] = qkv[t, q_dim:q_dim+kv_dim], v[t] = qkv[t, q_dim+kv_dim:q_dim+2kv_dim].
template <class T>
void split_qkv(const T* qkv, T* q, T* k, T* v, uint64_t tokens, uint64_t q_dim, uint64_t kv_dim);

// dst[(t·heads + h)·dim + d] = src[(h·tokens + t)·dim + d].
template <class T>
void transpose_head_to_token(const T* src, T* dst, uint64_t tokens, uint64_t heads, uint64_t dim);

// dst[(h·tokens + t)·dim + d] = src[(t·heads + h)·dim + d].
template <class T>
void transpose_token_to_head(const T* src, T* dst, uint64_t tokens, uint64_t heads, uint64_t dim);

// out[i, :] = table[ids[i], :] for i < n. An id >= vocab gives a row of +0.0 when
// zero_if_oob, else leaves out row i untouched (the glue rejects such host ids first).
template <class T>
void embedding_rows(const T* table, uint64_t vocab, const uint64_t* ids, uint64_t n, T* out, uint64_t dim,
                    bool zero_if_oob);

// out[r] = smallest i with logits[r, i] not NaN and >= every non-NaN element of the row
// (−0 == +0, +inf wins); 0 for a row without a non-NaN element. n must be > 0.
template <class T>
void argmax_rows(const T* logits, uint64_t m, uint64_t n, uint32_t* out);

// dst[i] = src[i] converted (exact widening, RNE narrowing; f16 <-> bf16 via the exact f32
// value; NaN/inf kept, overflow -> inf). S, D in {float, f16, bf16}; equal types copy bits.
template <class S, class D>
void convert(const S* src, D* dst, uint64_t n);

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_ELEMENTWISE_HPP
