// ferrum CPU plugin — quantised paged KV (see quant_kv.hpp).
//
// Decode attention: work item = (KV head, key chunk). Each item keeps, for every query head of its
// GQA group, a running max m, sum l and f32 accumulator acc[D] over its keys (online softmax), in
// blocks of kKBlock keys whose raw codes are widened to f32 once for the whole group. A key's score
// is σ·s_k·(q·code) and its value weight p·s_v, i.e. the dequantised values s·code folded into the
// scalar factors (equal to the f32 products up to f32 rounding). The chunk partials are merged in
// chunk order, so the result does not depend on the thread count.
#include "quant_kv.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "attention_math.hpp"
#include "parallel.hpp"

namespace ferrum::cpu {
namespace {

constexpr uint64_t kKBlock = 32;
constexpr uint64_t kMaxSplits = 16;
constexpr uint64_t kMinChunk = 256;

thread_local std::vector<float> t_scratch;

// f32 value of every e4m3 code (§7.1), built once from the shared conversion.
const std::array<float, 256>& f8_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (unsigned i = 0; i < 256; ++i) t[i] = to_float(f8e4m3{static_cast<uint8_t>(i)});
    return t;
  }();
  return table;
}

inline void widen_codes(const int8_t* c, float* out, uint64_t n) {
  for (uint64_t d = 0; d < n; ++d) out[d] = static_cast<float>(c[d]);
}
inline void widen_codes(const f8e4m3* c, float* out, uint64_t n) {
  const float* t = f8_table().data();
  for (uint64_t d = 0; d < n; ++d) out[d] = t[c[d].bits];
}

template <class Code>
constexpr float kQuantMax = std::is_same_v<Code, int8_t> ? 127.0f : 448.0f;

template <class Idx>
inline bool physical_block(const Idx* table, uint64_t logical, uint64_t num_blocks, uint64_t& blk) {
  const Idx raw = table[logical];
  if constexpr (std::is_signed_v<Idx>)
    if (raw < 0) return false;
  blk = static_cast<uint64_t>(raw);
  return blk < num_blocks;
}

}  // namespace

template <class Code>
float quantize_kv_row(const float* x, uint64_t n, Code* codes) {
  float a = 0.0f;
  for (uint64_t d = 0; d < n; ++d) a = std::max(a, std::fabs(x[d]));
  const float s = std::max(a, 1e-8f) / kQuantMax<Code>;  // IEEE f32 division (no reciprocal)
  for (uint64_t d = 0; d < n; ++d) {
    const float r = x[d] / s;
    if constexpr (std::is_same_v<Code, int8_t>) {
      const float c = std::min(std::max(r, -127.0f), 127.0f);
      codes[d] = c == c ? static_cast<int8_t>(std::nearbyint(c)) : int8_t{0};  // NaN: unspecified (§7.2)
    } else {
      codes[d] = f8e4m3_from_float(r);
    }
  }
  return s;
}

template <class T, class Code>
void quant_kv_append_paged(const T* k_in, const T* v_in, Code* layer_k, Code* layer_v, float* k_scales,
                           float* v_scales, const uint32_t* block_indices, uint64_t cache_len_before,
                           uint64_t tokens, uint64_t block_size, uint64_t nkv, uint64_t head_dim) {
  if (tokens == 0 || nkv == 0 || head_dim == 0) return;
  const uint64_t D = head_dim;
  const uint64_t rows = tokens * nkv;
  const uint64_t grain = std::max<uint64_t>(1, (uint64_t{1} << 14) / (2 * D));
  parallel_for(rows, grain, [&](uint64_t r0, uint64_t r1) {
    if (t_scratch.size() < D) t_scratch.resize(D);
    float* xf = t_scratch.data();
    for (uint64_t r = r0; r < r1; ++r) {
      const uint64_t t = r / nkv, h = r % nkv;
      const uint64_t L = cache_len_before + t;
      const uint64_t slot = static_cast<uint64_t>(block_indices[L / block_size]) * block_size + L % block_size;
      const uint64_t dst = slot * nkv + h;
      for (uint64_t d = 0; d < D; ++d) xf[d] = to_float(k_in[r * D + d]);
      k_scales[dst] = quantize_kv_row(xf, D, layer_k + dst * D);
      for (uint64_t d = 0; d < D; ++d) xf[d] = to_float(v_in[r * D + d]);
      v_scales[dst] = quantize_kv_row(xf, D, layer_v + dst * D);
    }
  });
}

template <class T, class Code, class Idx>
void quant_paged_decode_attention(const T* q, const Code* layer_k, const Code* layer_v, const float* k_scales,
                                  const float* v_scales, const Idx* block_table, uint64_t num_blocks, T* out,
                                  uint64_t nq, uint64_t nkv, uint64_t head_dim, uint64_t valid_kv_len,
                                  uint64_t block_size, float scale, uint64_t sliding_window) {
  if (nq == 0 || head_dim == 0) return;
  const uint64_t D = head_dim;
  const uint64_t G = nq / nkv;
  const float sigma = softmax_scale(scale, D);
  // Visible keys of the one query at p = valid_kv_len − 1 (causal): [lo, hi).
  const uint64_t hi = valid_kv_len;
  const uint64_t lo = (sliding_window != 0 && hi > sliding_window) ? hi - sliding_window : 0;
  if (hi <= lo) {
    std::memset(static_cast<void*>(out), 0, nq * D * sizeof(T));
    return;
  }
  const uint64_t n = hi - lo;
  const uint64_t splits = std::min(kMaxSplits, (n + kMinChunk - 1) / kMinChunk);
  const uint64_t chunk = (n + splits - 1) / splits;
  const uint64_t stride = D + 2;  // per (item, group query): acc[D], m, l
  std::vector<float> partial(nkv * splits * G * stride);

  const uint64_t grain = 1;
  parallel_for(nkv * splits, grain, [&](uint64_t it0, uint64_t it1) {
    const uint64_t need = G * D + 2 * kKBlock * D + G * kKBlock + 2 * kKBlock;
    if (t_scratch.size() < need) t_scratch.resize(need);
    float* qf = t_scratch.data();     // [G, D]
    float* kf = qf + G * D;           // [kKBlock, D] raw K codes
    float* vf = kf + kKBlock * D;     // [kKBlock, D] raw V codes
    float* sc = vf + kKBlock * D;     // [G, kKBlock] scores
    float* ks = sc + G * kKBlock;     // [kKBlock] σ·s_k (0 for a skipped key)
    float* vs = ks + kKBlock;         // [kKBlock] s_v
    for (uint64_t it = it0; it < it1; ++it) {
      const uint64_t kvh = it / splits, sp = it % splits;
      const uint64_t jb = lo + sp * chunk, je = std::min(hi, jb + chunk);
      float* part = partial.data() + it * G * stride;
      for (uint64_t g = 0; g < G; ++g) {
        const T* qr = q + ((kvh * G + g) * D);
        for (uint64_t d = 0; d < D; ++d) qf[g * D + d] = to_float(qr[d]);
        std::fill(part + g * stride, part + g * stride + D, 0.0f);
        part[g * stride + D] = kNegInf;
        part[g * stride + D + 1] = 0.0f;
      }
      for (uint64_t j0 = jb; j0 < je; j0 += kKBlock) {
        const uint64_t nk = std::min(kKBlock, je - j0);
        uint64_t valid = 0;  // keys of the block whose physical block is in range, packed
        for (uint64_t jj = 0; jj < nk; ++jj) {
          const uint64_t j = j0 + jj;
          uint64_t blk = 0;
          if (!physical_block(block_table, j / block_size, num_blocks, blk)) continue;
          const uint64_t slot = (blk * block_size + j % block_size) * nkv + kvh;
          widen_codes(layer_k + slot * D, kf + valid * D, D);
          widen_codes(layer_v + slot * D, vf + valid * D, D);
          ks[valid] = sigma * k_scales[slot];
          vs[valid] = v_scales[slot];
          ++valid;
        }
        if (valid == 0) continue;
        for (uint64_t g = 0; g < G; ++g) {
          float* acc = part + g * stride;
          float& m = acc[D];
          float& l = acc[D + 1];
          float* s = sc + g * kKBlock;
          float bmax = kNegInf;
          for (uint64_t jj = 0; jj < valid; ++jj) {
            s[jj] = ks[jj] * dot_f32(qf + g * D, kf + jj * D, D);
            bmax = std::max(bmax, s[jj]);
          }
          online_softmax_rescale(m, l, acc, D, bmax);
          for (uint64_t jj = 0; jj < valid; ++jj) online_softmax_add(s[jj], m, vf + jj * D, D, l, acc, vs[jj]);
        }
      }
    }
  });

  // Merge the chunk partials of every query head, in chunk order.
  parallel_for(nq, std::max<uint64_t>(1, 4096 / D), [&](uint64_t h0, uint64_t h1) {
    for (uint64_t h = h0; h < h1; ++h) {
      const uint64_t kvh = h / G, g = h % G;
      auto part_of = [&](uint64_t sp) { return partial.data() + ((kvh * splits + sp) * G + g) * stride; };
      float M = kNegInf;
      for (uint64_t sp = 0; sp < splits; ++sp)
        if (part_of(sp)[D + 1] > 0.0f || std::isnan(part_of(sp)[D + 1])) M = std::max(M, part_of(sp)[D]);
      T* o = out + h * D;
      float L = 0.0f;
      if (t_scratch.size() < D) t_scratch.resize(D);
      float* acc = t_scratch.data();
      std::fill(acc, acc + D, 0.0f);
      for (uint64_t sp = 0; sp < splits; ++sp) {
        const float* p = part_of(sp);
        if (!(p[D + 1] > 0.0f) && !std::isnan(p[D + 1])) continue;  // no key in this chunk
        const float f = std::exp(p[D] - M);
        L += p[D + 1] * f;
        for (uint64_t d = 0; d < D; ++d) acc[d] += p[d] * f;
      }
      if (L == 0.0f) {
        std::memset(static_cast<void*>(o), 0, D * sizeof(T));  // empty visible set: +0.0
      } else {
        for (uint64_t d = 0; d < D; ++d) o[d] = from_float<T>(acc[d] / L);
      }
    }
  });
}

// ---- explicit instances: 3 activation types × 2 code types (× 2 block-table types) ------------
template float quantize_kv_row<int8_t>(const float*, uint64_t, int8_t*);
template float quantize_kv_row<f8e4m3>(const float*, uint64_t, f8e4m3*);

#define FERRUM_QKV_APPEND(T, C)                                                                            \
  template void quant_kv_append_paged<T, C>(const T*, const T*, C*, C*, float*, float*, const uint32_t*, \
                                            uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
#define FERRUM_QKV_DECODE(T, C, I)                                                                          \
  template void quant_paged_decode_attention<T, C, I>(const T*, const C*, const C*, const float*,           \
                                                      const float*, const I*, uint64_t, T*, uint64_t,       \
                                                      uint64_t, uint64_t, uint64_t, uint64_t, float, uint64_t);
#define FERRUM_QKV_ALL(T, C) \
  FERRUM_QKV_APPEND(T, C)    \
  FERRUM_QKV_DECODE(T, C, uint32_t) FERRUM_QKV_DECODE(T, C, int32_t)
FERRUM_QKV_ALL(float, int8_t)
FERRUM_QKV_ALL(f16, int8_t)
FERRUM_QKV_ALL(bf16, int8_t)
FERRUM_QKV_ALL(float, f8e4m3)
FERRUM_QKV_ALL(f16, f8e4m3)
FERRUM_QKV_ALL(bf16, f8e4m3)
#undef FERRUM_QKV_ALL
#undef FERRUM_QKV_DECODE
#undef FERRUM_QKV_APPEND

}  // namespace ferrum::cpu
