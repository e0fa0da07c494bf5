// ferrum CPU plugin — QK-norm / RoPE family (see rope.hpp).
#include "rope.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "parallel.hpp"

namespace ferrum::cpu {
namespace {

uint64_t grain_for(uint64_t elems_per_index) {
  return std::max<uint64_t>(1, (uint64_t{1} << 14) / std::max<uint64_t>(elems_per_index, 1));
}

thread_local std::vector<float> t_head;  // one head vector in f32 (O(head_dim) scratch)

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
  parallel_for(tokens * heads, grain_for(head_dim), [&](uint64_t b, uint64_t e) {
    for (uint64_t idx = b; idx < e; ++idx) {
      const uint64_t t = idx / heads, h = idx % heads;
      const uint64_t p = pos_offset + t;
      const C* cr = mode == 0 ? nullptr : cos + p * half;
      const C* sr = mode == 0 ? nullptr : sin + p * half;
      qk_transform<T, C>(input + idx * head_dim, output + (h * tokens + t) * head_dim, norm_w, cr, sr, head_dim,
                         eps, mode);
    }
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
      qk_transform<T, C>(input + idx * head_dim, y, norm_w, cr, sr, head_dim, eps, mode);
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
  parallel_for(tokens * heads_all, grain_for(D), [&](uint64_t b, uint64_t e) {
    for (uint64_t idx = b; idx < e; ++idx) {
      const uint64_t t = idx / heads_all, h = idx % heads_all;
      const T* x = qkv + t * row + h * D;
      const uint64_t p = pos_offset + t;
      const C* cr = mode == 0 ? nullptr : cos + p * half;
      const C* sr = mode == 0 ? nullptr : sin + p * half;
      if (h < q_heads) {
        qk_transform<T, C>(x, q_out + (h * tokens + t) * D, q_norm_w, cr, sr, D, eps, mode);
      } else if (h < q_heads + kv_heads) {
        const uint64_t kh = h - q_heads;
        qk_transform<T, C>(x, k_dst + (kh * kv_rows + kv_row0 + t) * D, k_norm_w, cr, sr, D, eps, mode);
      } else {
        const uint64_t vh = h - q_heads - kv_heads;
        std::memcpy(static_cast<void*>(v_dst + (vh * kv_rows + kv_row0 + t) * D), x, D * sizeof(T));
      }
    }
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
