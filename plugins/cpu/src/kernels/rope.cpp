// ferrum CPU plugin — QK-norm / RoPE family (see rope.hpp).
#include "rope.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "parallel.hpp"
#include "simd.hpp"

namespace ferrum::cpu {
namespace {

uint64_t grain_for(uint64_t elems_per_index) {
  return std::max<uint64_t>(1, (uint64_t{1} << 14) / std::max<uint64_t>(elems_per_index, 1));
}

thread_local std::vector<float> t_head;  // one head vector in f32 (O(head_dim) scratch)

// Outputs at least this large use non-temporal stores (see elementwise.cpp).
constexpr uint64_t kStreamBytes = uint64_t{64} << 20;

#if FERRUM_SIMD_X86
using namespace simd;

// qk_transform for modes 1–3 on AVX-512; v is O(D) f32 scratch (64-byte aligned not required).
template <bool S, class T, class C>
FERRUM_AVX512 void qk_transform_avx512(const T* x, T* y, const T* w, const C* cos_row, const C* sin_row, uint64_t D,
                                       float eps, int mode, float* v) {
  for (uint64_t off = 0; off < D * sizeof(T); off += 64) _mm_prefetch(reinterpret_cast<const char*>(x) + 4096 + off, _MM_HINT_T0);
  if (mode == 1) {
    __m512d a0 = _mm512_setzero_pd(), a1 = a0;
    for (uint64_t d = 0; d < D; d += 16) {
      const __mmask16 m = tail_mask(D - d);
      const __m512 xv = load16(x + d, m);
      _mm512_mask_storeu_ps(v + d, m, xv);
      sumsq_pd(xv, a0, a1);
    }
    const double ss = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    const __m512 inv = _mm512_set1_ps(
        static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(D) + static_cast<double>(eps))));
    for (uint64_t d = 0; d < D; d += 16) {
      const __mmask16 m = tail_mask(D - d);
      __m512 xv = _mm512_maskz_loadu_ps(m, v + d);
      if (w) xv = _mm512_mul_ps(xv, load16(w + d, m));
      _mm512_mask_storeu_ps(v + d, m, _mm512_mul_ps(xv, inv));
    }
  } else {
    for (uint64_t d = 0; d < D; d += 16) {
      const __mmask16 m = tail_mask(D - d);
      _mm512_mask_storeu_ps(v + d, m, load16(x + d, m));
    }
  }
  const uint64_t half = D / 2;
  if (mode == 3) {
    const __m512i dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    for (uint64_t i = 0; i < half; i += 8) {  // 8 pairs = 16 values per step
      const uint64_t np = std::min<uint64_t>(8, half - i);
      const __mmask16 mp = static_cast<__mmask16>((1u << np) - 1u);
      const __mmask16 mv = tail_mask(2 * np);
      const __m512 c = _mm512_permutexvar_ps(dup, load16(cos_row + i, mp));
      const __m512 sn = _mm512_permutexvar_ps(dup, load16(sin_row + i, mp));
      const __m512 xv = _mm512_maskz_loadu_ps(mv, v + 2 * i);
      const __m512 sw = _mm512_permute_ps(xv, 0xB1);  // (b, a) per pair
      const __m512 r = _mm512_fmaddsub_ps(xv, c, _mm512_mul_ps(sw, sn));
      if (np == 8) put16<S>(y + 2 * i, r);
      else store16(y + 2 * i, r, mv);
    }
  } else {
    for (uint64_t i = 0; i < half; i += 16) {
      const __mmask16 m = tail_mask(half - i);
      const __m512 c = load16(cos_row + i, m), sn = load16(sin_row + i, m);
      const __m512 a = _mm512_maskz_loadu_ps(m, v + i), b = _mm512_maskz_loadu_ps(m, v + i + half);
      const __m512 ya = _mm512_fmsub_ps(a, c, _mm512_mul_ps(b, sn));
      const __m512 yb = _mm512_fmadd_ps(b, c, _mm512_mul_ps(a, sn));
      if (m == 0xFFFF) {
        put16<S>(y + i, ya);
        put16<S>(y + i + half, yb);
      } else {
        store16(y + i, ya, m);
        store16(y + i + half, yb, m);
      }
    }
  }
}

FERRUM_AVX512 inline void sfence() { _mm_sfence(); }
#endif

// y = transform(x); stream: non-temporal stores where possible (caller fences).
template <class T, class C>
inline void transform_one(const T* x, T* y, const T* w, const C* cr, const C* sr, uint64_t D, float eps, int mode,
                          bool stream) {
#if FERRUM_SIMD_X86
  if (stream && mode != 0 && simd::has_avx512()) {
    if (t_head.size() < D) t_head.resize(D);
    qk_transform_avx512<true, T, C>(x, y, w, cr, sr, D, eps, mode, t_head.data());
    return;
  }
#endif
  (void)stream;
  qk_transform<T, C>(x, y, w, cr, sr, D, eps, mode);
}

inline void end_stream(bool stream) {
#if FERRUM_SIMD_X86
  if (stream) sfence();
#else
  (void)stream;
#endif
}

}  // namespace

template <class T, class C>
void qk_transform(const T* x, T* y, const T* w, const C* cos_row, const C* sin_row, uint64_t D, float eps,
                  int mode) {
  if (mode == 0) {
    std::memcpy(static_cast<void*>(y), x, D * sizeof(T));
    return;
  }
  if (t_head.size() < D) t_head.resize(D);
  float* v = t_head.data();
#if FERRUM_SIMD_X86
  if (simd::has_avx512()) {
    qk_transform_avx512<false, T, C>(x, y, w, cos_row, sin_row, D, eps, mode, v);
    return;
  }
#endif
  for (uint64_t d = 0; d < D; ++d) v[d] = to_float(x[d]);
  if (mode == 1) {
    double ss = 0;
    for (uint64_t d = 0; d < D; ++d) ss += static_cast<double>(v[d]) * v[d];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(D) + static_cast<double>(eps)));
    for (uint64_t d = 0; d < D; ++d) v[d] = v[d] * (w ? to_float(w[d]) : 1.0f) * inv;
  }
  const uint64_t half = D / 2;
  if (mode == 3) {
    for (uint64_t i = 0; i < half; ++i) {
      const float c = to_float(cos_row[i]), s = to_float(sin_row[i]);
      const float a = v[2 * i], b = v[2 * i + 1];
      y[2 * i] = from_float<T>(a * c - b * s);
      y[2 * i + 1] = from_float<T>(b * c + a * s);
    }
  } else {  // 1, 2: NeoX
    for (uint64_t i = 0; i < half; ++i) {
      const float c = to_float(cos_row[i]), s = to_float(sin_row[i]);
      const float a = v[i], b = v[i + half];
      y[i] = from_float<T>(a * c - b * s);
      y[i + half] = from_float<T>(b * c + a * s);
    }
  }
}

template <class T, class C>
void qk_norm_rope(const T* input, const T* norm_w, const C* cos, const C* sin, T* output, uint64_t tokens,
                  uint64_t heads, uint64_t head_dim, uint64_t pos_offset, float eps, int mode) {
  const uint64_t half = head_dim / 2;
  const bool stream = tokens * heads * head_dim * sizeof(T) >= kStreamBytes;
  parallel_for(tokens * heads, grain_for(head_dim), [&](uint64_t b, uint64_t e) {
    for (uint64_t idx = b; idx < e; ++idx) {
      const uint64_t t = idx / heads, h = idx % heads;
      const uint64_t p = pos_offset + t;
      const C* cr = mode == 0 ? nullptr : cos + p * half;
      const C* sr = mode == 0 ? nullptr : sin + p * half;
      transform_one<T, C>(input + idx * head_dim, output + (h * tokens + t) * head_dim, norm_w, cr, sr, head_dim,
                          eps, mode, stream);
    }
    end_stream(stream);
  });
}

template <class T, class C>
void qk_norm_rope_batched_per_item(const T* input, const T* norm_w, const C* cos, const C* sin,
                                   uint64_t table_rows, T* output, const uint64_t* positions, uint64_t m,
                                   uint64_t heads, uint64_t head_dim, float eps, int mode) {
  const uint64_t half = head_dim / 2;
  parallel_for(m * heads, grain_for(head_dim), [&](uint64_t b, uint64_t e) {
    for (uint64_t idx = b; idx < e; ++idx) {
      const uint64_t p = positions[idx / heads];
      T* y = output + idx * head_dim;
      if (mode != 0 && p >= table_rows) {
        std::memset(static_cast<void*>(y), 0, head_dim * sizeof(T));
        continue;
      }
      const C* cr = mode == 0 ? nullptr : cos + p * half;
      const C* sr = mode == 0 ? nullptr : sin + p * half;
      transform_one<T, C>(input + idx * head_dim, y, norm_w, cr, sr, head_dim, eps, mode, false);
    }
  });
}

namespace {

// Shared body: q rows → q_out (head-major, `tokens` rows per head); k/v rows → k_dst/v_dst
// with `kv_rows` rows per head starting at row `kv_row0`.
template <class T, class C>
void split_qkv_rope_impl(const T* qkv, const T* q_norm_w, const T* k_norm_w, const C* cos, const C* sin,
                         T* q_out, T* k_dst, T* v_dst, uint64_t kv_rows, uint64_t kv_row0, uint64_t tokens,
                         uint64_t q_heads, uint64_t kv_heads, uint64_t D, uint64_t pos_offset, float eps,
                         int mode) {
  const uint64_t half = D / 2;
  const uint64_t heads_all = q_heads + 2 * kv_heads;
  const uint64_t row = heads_all * D;
  const bool stream = tokens * row * sizeof(T) >= kStreamBytes;
  parallel_for(tokens * heads_all, grain_for(D), [&](uint64_t b, uint64_t e) {
    for (uint64_t idx = b; idx < e; ++idx) {
      const uint64_t t = idx / heads_all, h = idx % heads_all;
      const T* x = qkv + t * row + h * D;
      const uint64_t p = pos_offset + t;
      const C* cr = mode == 0 ? nullptr : cos + p * half;
      const C* sr = mode == 0 ? nullptr : sin + p * half;
      if (h < q_heads) {
        transform_one<T, C>(x, q_out + (h * tokens + t) * D, q_norm_w, cr, sr, D, eps, mode, stream);
      } else if (h < q_heads + kv_heads) {
        const uint64_t kh = h - q_heads;
        transform_one<T, C>(x, k_dst + (kh * kv_rows + kv_row0 + t) * D, k_norm_w, cr, sr, D, eps, mode, stream);
      } else {
        const uint64_t vh = h - q_heads - kv_heads;
        std::memcpy(static_cast<void*>(v_dst + (vh * kv_rows + kv_row0 + t) * D), x, D * sizeof(T));
      }
    }
    end_stream(stream);
  });
}

}  // namespace

template <class T, class C>
void split_qkv_norm_rope(const T* qkv, const T* q_norm_w, const T* k_norm_w, const C* cos, const C* sin,
                         T* q_out, T* k_out, T* v_out, uint64_t tokens, uint64_t q_heads, uint64_t kv_heads,
                         uint64_t head_dim, uint64_t pos_offset, float eps, int mode) {
  split_qkv_rope_impl<T, C>(qkv, q_norm_w, k_norm_w, cos, sin, q_out, k_out, v_out, tokens, 0, tokens, q_heads,
                            kv_heads, head_dim, pos_offset, eps, mode);
}

template <class T, class C>
void split_qkv_norm_rope_into_cache(const T* qkv, const T* q_norm_w, const T* k_norm_w, const C* cos,
                                    const C* sin, T* q_out, T* cache_k, T* cache_v, uint64_t tokens,
                                    uint64_t q_heads, uint64_t kv_heads, uint64_t head_dim, uint64_t pos_offset,
                                    float eps, int mode, uint64_t cache_len, uint64_t cache_capacity) {
  split_qkv_rope_impl<T, C>(qkv, q_norm_w, k_norm_w, cos, sin, q_out, cache_k, cache_v, cache_capacity, cache_len,
                            tokens, q_heads, kv_heads, head_dim, pos_offset, eps, mode);
}

template <class T>
void kv_cache_append_head_major(T* cache_k, T* cache_v, uint64_t cache_len, uint64_t cache_capacity,
                                const T* new_k, const T* new_v, uint64_t new_tokens, uint64_t nkv, uint64_t hd) {
  if (new_tokens == 0 || hd == 0) return;
  const uint64_t bytes = new_tokens * hd * sizeof(T);  // the new rows of one head are contiguous
  parallel_for(nkv, grain_for(new_tokens * hd), [&](uint64_t h0, uint64_t h1) {
    for (uint64_t h = h0; h < h1; ++h) {
      std::memcpy(static_cast<void*>(cache_k + (h * cache_capacity + cache_len) * hd), new_k + h * new_tokens * hd, bytes);
      std::memcpy(static_cast<void*>(cache_v + (h * cache_capacity + cache_len) * hd), new_v + h * new_tokens * hd, bytes);
    }
  });
}

#define FERRUM_INSTANTIATE_ROPE(T, C)                                                                          \
  template void qk_transform<T, C>(const T*, T*, const T*, const C*, const C*, uint64_t, float, int);          \
  template void qk_norm_rope<T, C>(const T*, const T*, const C*, const C*, T*, uint64_t, uint64_t, uint64_t,   \
                                   uint64_t, float, int);                                                      \
  template void qk_norm_rope_batched_per_item<T, C>(const T*, const T*, const C*, const C*, uint64_t, T*,      \
                                                    const uint64_t*, uint64_t, uint64_t, uint64_t, float, int); \
  template void split_qkv_norm_rope<T, C>(const T*, const T*, const T*, const C*, const C*, T*, T*, T*,        \
                                          uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, float, int);       \
  template void split_qkv_norm_rope_into_cache<T, C>(const T*, const T*, const T*, const C*, const C*, T*, T*, \
                                                     T*, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,     \
                                                     float, int, uint64_t, uint64_t);
FERRUM_INSTANTIATE_ROPE(float, float)
FERRUM_INSTANTIATE_ROPE(f16, f16)
FERRUM_INSTANTIATE_ROPE(f16, float)
FERRUM_INSTANTIATE_ROPE(bf16, bf16)
FERRUM_INSTANTIATE_ROPE(bf16, float)
#undef FERRUM_INSTANTIATE_ROPE

template void kv_cache_append_head_major<float>(float*, float*, uint64_t, uint64_t, const float*, const float*,
                                                uint64_t, uint64_t, uint64_t);
template void kv_cache_append_head_major<f16>(f16*, f16*, uint64_t, uint64_t, const f16*, const f16*, uint64_t,
                                              uint64_t, uint64_t);
template void kv_cache_append_head_major<bf16>(bf16*, bf16*, uint64_t, uint64_t, const bf16*, const bf16*,
                                               uint64_t, uint64_t, uint64_t);

}  // namespace ferrum::cpu
