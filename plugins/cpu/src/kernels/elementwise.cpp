// ferrum CPU plugin — element-wise, copy and gather kernels (see elementwise.hpp).
#include "elementwise.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "parallel.hpp"
#include "simd.hpp"

namespace ferrum::cpu {
namespace {

constexpr uint64_t kGrain = uint64_t{1} << 15;  // elements per parallel chunk at least

uint64_t row_grain(uint64_t row_elems) { return std::max<uint64_t>(1, kGrain / std::max<uint64_t>(row_elems, 1)); }

// Copies n elements; a zero-size segment touches neither pointer (either may be NULL then: a
// zero-width output such as split_qkv's k/v with kv_dim = 0 need not exist).
template <class T>
void copy_elems(T* dst, const T* src, uint64_t n) {
  if (n != 0) std::memcpy(static_cast<void*>(dst), src, n * sizeof(T));
}

// Applies out[i] = op(i) over [0, len) in parallel chunks.
template <class F>
void for_each_index(uint64_t len, F&& op) {
  parallel_for(len, kGrain, [&](uint64_t b, uint64_t e) {
    for (uint64_t i = b; i < e; ++i) op(i);
  });
}

inline float silu_mul(float g, float u) { return g / (1.0f + std::exp(-g)) * u; }

// Outputs at least this large use non-temporal stores (they cannot stay in the LLC anyway, and
// streaming saves the read-for-ownership of every output line).
constexpr uint64_t kStreamBytes = uint64_t{64} << 20;

#if FERRUM_SIMD_X86
using namespace simd;

FERRUM_AVX512_INLINE __m512 gelu16(__m512 v) {
  const __m512 ope = one_plus_erf16(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752440f)));
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), ope);
}

template <bool S, class T>
FERRUM_AVX512 void gelu_avx512(const T* x, T* out, uint64_t n) {
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    prefetch_ahead(x + i);
    put16<S>(out + i, gelu16(load16(x + i)));
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    store16(out + i, gelu16(load16(x + i, m)), m);
  }
  if constexpr (S) _mm_sfence();
}

// silu(g)·u = g·u / (1 + e^{−g}); e^{−g} = +inf gives −0/+0 as the scalar form.
FERRUM_AVX512_INLINE __m512 silu_mul16(__m512 g, __m512 u) {
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

template <bool S, class T>
FERRUM_AVX512 void silu_mul_row_avx512(const T* g, const T* u, T* o, uint64_t n) {
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    prefetch_ahead(g + i);
    prefetch_ahead(u + i);
    put16<S>(o + i, silu_mul16(load16(g + i), load16(u + i)));
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    store16(o + i, silu_mul16(load16(g + i, m), load16(u + i, m)), m);
  }
}

template <class T>
FERRUM_AVX512 void add_avx512(T* r, const T* x, uint64_t n) {
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16) store16(r + i, _mm512_add_ps(load16(r + i), load16(x + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    store16(r + i, _mm512_add_ps(load16(r + i, m), load16(x + i, m)), m);
  }
}

template <class T>
FERRUM_AVX512 void scaled_add_avx512(T* d, const T* s, float scale, uint64_t n) {
  const __m512 sc = _mm512_set1_ps(scale);
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16) store16(d + i, _mm512_fmadd_ps(sc, load16(s + i), load16(d + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    store16(d + i, _mm512_fmadd_ps(sc, load16(s + i, m), load16(d + i, m)), m);
  }
}
#endif

}  // namespace

template <class T>
void gelu(const T* x, T* out, uint64_t len) {
#if FERRUM_SIMD_X86
  if (simd::has_avx512()) {
    const bool stream = len * sizeof(T) >= kStreamBytes && out != x;
    parallel_for(len, kGrain, [&](uint64_t b, uint64_t e) {
      if (stream) gelu_avx512<true>(x + b, out + b, e - b);
      else gelu_avx512<false>(x + b, out + b, e - b);
    });
    return;
  }
#endif
  constexpr float kInvSqrt2 = 0.70710678118654752440f;
  for_each_index(len, [&](uint64_t i) {
    const float v = to_float(x[i]);
    // 1 + erf(v/√2) = erfc(−v/√2), without the cancellation for negative v.
    out[i] = from_float<T>(0.5f * v * std::erfc(-v * kInvSqrt2));
  });
}

template <class T>
void add_inplace(T* residual, const T* x, uint64_t len) {
#if FERRUM_SIMD_X86
  if (simd::has_avx512()) {
    parallel_for(len, kGrain, [&](uint64_t b, uint64_t e) { add_avx512(residual + b, x + b, e - b); });
    return;
  }
#endif
  for_each_index(len, [&](uint64_t i) { residual[i] = from_float<T>(to_float(residual[i]) + to_float(x[i])); });
}

template <class T>
void scaled_add_inplace(T* dst, const T* src, float scale, uint64_t len) {
#if FERRUM_SIMD_X86
  if (simd::has_avx512()) {
    parallel_for(len, kGrain, [&](uint64_t b, uint64_t e) { scaled_add_avx512(dst + b, src + b, scale, e - b); });
    return;
  }
#endif
  for_each_index(len, [&](uint64_t i) { dst[i] = from_float<T>(std::fma(scale, to_float(src[i]), to_float(dst[i]))); });
}

template <class T>
void add_bias(T* data, const T* bias, uint64_t rows, uint64_t cols) {
  if (cols == 0) return;
  parallel_for(rows, row_grain(cols), [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r) {
      T* row = data + r * cols;
      for (uint64_t c = 0; c < cols; ++c) row[c] = from_float<T>(to_float(row[c]) + to_float(bias[c]));
    }
  });
}

template <class T>
void fused_silu_mul_split_strided(const T* gate_up, uint64_t in_row_offset, T* out, uint64_t out_row_offset,
                                  uint64_t tokens, uint64_t im) {
  if (im == 0) return;
#if FERRUM_SIMD_X86
  const bool simd_ok = simd::has_avx512();
  const bool stream = tokens * im * sizeof(T) >= kStreamBytes;
#endif
  parallel_for(tokens, row_grain(im), [&](uint64_t t0, uint64_t t1) {
    for (uint64_t t = t0; t < t1; ++t) {
      const T* g = gate_up + (in_row_offset + t) * 2 * im;
      const T* u = g + im;
      T* o = out + (out_row_offset + t) * im;
#if FERRUM_SIMD_X86
      if (simd_ok) {
        if (stream) silu_mul_row_avx512<true>(g, u, o, im);
        else silu_mul_row_avx512<false>(g, u, o, im);
        continue;
      }
#endif
      for (uint64_t i = 0; i < im; ++i) o[i] = from_float<T>(silu_mul(to_float(g[i]), to_float(u[i])));
    }
#if FERRUM_SIMD_X86
    if (simd_ok && stream) _mm_sfence();
#endif
  });
}

template <class T>
void fused_silu_mul_split(const T* gate_up, T* out, uint64_t tokens, uint64_t im) {
  fused_silu_mul_split_strided(gate_up, 0, out, 0, tokens, im);
}

template <class T>
void split_qkv(const T* qkv, T* q, T* k, T* v, uint64_t tokens, uint64_t q_dim, uint64_t kv_dim) {
  const uint64_t row = q_dim + 2 * kv_dim;
  if (row == 0) return;
  parallel_for(tokens, row_grain(row), [&](uint64_t t0, uint64_t t1) {
    for (uint64_t t = t0; t < t1; ++t) {
      const T* src = qkv + t * row;
      if (q_dim) copy_elems(q + t * q_dim, src, q_dim);
      if (kv_dim) {
        copy_elems(k + t * kv_dim, src + q_dim, kv_dim);
        copy_elems(v + t * kv_dim, src + q_dim + kv_dim, kv_dim);
      }
    }
  });
}

template <class T>
void transpose_head_to_token(const T* src, T* dst, uint64_t tokens, uint64_t heads, uint64_t dim) {
  if (dim == 0 || heads == 0) return;
  parallel_for(tokens, row_grain(heads * dim), [&](uint64_t t0, uint64_t t1) {
    for (uint64_t t = t0; t < t1; ++t) {
      for (uint64_t h = 0; h < heads; ++h) {
        copy_elems(dst + (t * heads + h) * dim, src + (h * tokens + t) * dim, dim);
      }
    }
  });
}

template <class T>
void transpose_token_to_head(const T* src, T* dst, uint64_t tokens, uint64_t heads, uint64_t dim) {
  if (dim == 0 || heads == 0) return;
  parallel_for(tokens, row_grain(heads * dim), [&](uint64_t t0, uint64_t t1) {
    for (uint64_t t = t0; t < t1; ++t) {
      for (uint64_t h = 0; h < heads; ++h) {
        copy_elems(dst + (h * tokens + t) * dim, src + (t * heads + h) * dim, dim);
      }
    }
  });
}

template <class T>
void embedding_rows(const T* table, uint64_t vocab, const uint64_t* ids, uint64_t n, T* out, uint64_t dim,
                    bool zero_if_oob) {
  if (dim == 0) return;
  parallel_for(n, row_grain(dim), [&](uint64_t i0, uint64_t i1) {
    for (uint64_t i = i0; i < i1; ++i) {
      const uint64_t id = ids[i];
      if (id < vocab) {
        copy_elems(out + i * dim, table + id * dim, dim);
      } else if (zero_if_oob) {
        std::memset(static_cast<void*>(out + i * dim), 0, dim * sizeof(T));  // +0.0 in every float dtype
      }
    }
  });
}

template <class T>
void argmax_rows(const T* logits, uint64_t m, uint64_t n, uint32_t* out) {
  parallel_for(m, row_grain(n), [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r) {
      const T* row = logits + r * n;
      uint64_t best = 0;
      float best_v = 0.0f;
      bool found = false;
      for (uint64_t i = 0; i < n; ++i) {
        const float v = to_float(row[i]);
        if (std::isnan(v)) continue;
        if (!found || v > best_v) {  // strict: the first of equal values (−0 == +0) wins
          best = i;
          best_v = v;
          found = true;
        }
      }
      out[r] = static_cast<uint32_t>(best);
    }
  });
}

template <class S, class D>
void convert(const S* src, D* dst, uint64_t n) {
  if constexpr (std::is_same_v<S, D>) {
    copy_elems(dst, src, n);
  } else {
    for_each_index(n, [&](uint64_t i) { dst[i] = from_float<D>(to_float(src[i])); });
  }
}

#define FERRUM_INSTANTIATE_EW(T)                                                                          \
  template void gelu<T>(const T*, T*, uint64_t);                                                          \
  template void add_inplace<T>(T*, const T*, uint64_t);                                                   \
  template void scaled_add_inplace<T>(T*, const T*, float, uint64_t);                                     \
  template void add_bias<T>(T*, const T*, uint64_t, uint64_t);                                            \
  template void fused_silu_mul_split<T>(const T*, T*, uint64_t, uint64_t);                                \
  template void fused_silu_mul_split_strided<T>(const T*, uint64_t, T*, uint64_t, uint64_t, uint64_t);    \
  template void split_qkv<T>(const T*, T*, T*, T*, uint64_t, uint64_t, uint64_t);                         \
  template void transpose_head_to_token<T>(const T*, T*, uint64_t, uint64_t, uint64_t);                   \
  template void transpose_token_to_head<T>(const T*, T*, uint64_t, uint64_t, uint64_t);                   \
  template void embedding_rows<T>(const T*, uint64_t, const uint64_t*, uint64_t, T*, uint64_t, bool);     \
  template void argmax_rows<T>(const T*, uint64_t, uint64_t, uint32_t*);                                  \
  template void convert<T, float>(const T*, float*, uint64_t);                                            \
  template void convert<T, f16>(const T*, f16*, uint64_t);                                                \
  template void convert<T, bf16>(const T*, bf16*, uint64_t);
FERRUM_INSTANTIATE_EW(float)
FERRUM_INSTANTIATE_EW(f16)
FERRUM_INSTANTIATE_EW(bf16)
#undef FERRUM_INSTANTIATE_EW

}  // namespace ferrum::cpu
