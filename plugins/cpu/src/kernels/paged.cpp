// ferrum CPU plugin — paged KV writers and attention, batched per-cache decode (see paged.hpp).
//
// Attention work item = (query row, KV head): the `group` query heads that share the KV head are
// processed together, so every key/value row is read once per item. Keys are visited in blocks
// of kKBlock with the flash-attention online softmax of attention.cpp (running max m, running sum
// l, f32 accumulator); scratch per thread is O(group·head_dim + kKBlock·head_dim), independent of
// the KV length. On AVX-512 machines at head_dim 64 / 128 a block whose keys all resolved runs the
// contiguous decode's tile (attn_tiles::decode_block_rows: 16 keys' dots at a time, rows read in
// place through one pointer per key and widened in registers) for each head of the group; a block
// holding an unresolved key (a bad block id) takes the per-key path below. Blocks of 64 keys from
// the range start, as flash_attention's decode: a paged cache gives the bits of the same keys in a
// contiguous cache.
#include "paged.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "attention_math.hpp"
#include "attention_tiles.hpp"
#include "gemm.hpp"  // widen_row
#include "parallel.hpp"
#include "rope.hpp"

namespace ferrum::cpu {
namespace {

constexpr uint64_t kKBlock = 64;
static_assert(kKBlock == attn_tiles::kKeys, "a block is one decode tile call");

thread_local std::vector<float> t_scratch;
template <class T>
thread_local std::vector<T> t_rows;  // a block's gathered K and V rows, in the pool's element type

// Attention of `group` query heads (q rows qrow[g·D], outputs orow[g·D]) at position p over keys
// [0, L). load(j0, nk, kr, vr, kp, vp, valid) provides keys j0 .. j0 + nk − 1: kp[jj] / vp[jj]
// point at their K and V rows (D elements of T: in the cache when a row is contiguous there, else
// a row it gathered into kr / vr), valid[jj] is 1 / 0 (0: out of range, skipped; its pointers
// unused) and it returns whether any key is valid. lse_out[g] (may be null) receives the per-head
// LSE. The rows are read in place by the tile, which widens them in registers for each head as
// the contiguous decode does; the per-key path widens the block once.
template <class T, class Load>
void attend_group(const T* qrow, T* orow, float* lse_out, uint64_t lse_step, uint64_t group, uint64_t D, float sigma,
                  int64_t p, uint64_t L, uint64_t window, Load&& load) {
  if (p < 0) {  // query before the sequence start: zero row, LSE −∞
    std::memset(static_cast<void*>(orow), 0, group * D * sizeof(T));
    if (lse_out)
      for (uint64_t g = 0; g < group; ++g) lse_out[g * lse_step] = kNegInf;
    return;
  }
  const uint64_t up = static_cast<uint64_t>(p);
  const uint64_t hi = std::min(L, up + 1);
  const uint64_t lo = (window != 0 && up + 1 > window) ? up + 1 - window : 0;
  const bool tiles = hi < (uint64_t{1} << 31) && attn_tiles::available(D);

  const uint64_t need = 2 * group * D + 2 * kKBlock * D + kKBlock + 2 * group + kKBlock;
  if (t_scratch.size() < need) t_scratch.resize(need);
  float* qf = t_scratch.data();      // [group, D]
  float* acc = qf + group * D;       // [group, D]
  float* kf = acc + group * D;       // [kKBlock, D]
  float* vf = kf + kKBlock * D;      // [kKBlock, D]
  float* sc = vf + kKBlock * D;      // [kKBlock]
  float* mrun = sc + kKBlock;        // [group]
  float* lrun = mrun + group;        // [group]
  float* valid = lrun + group;       // [kKBlock] 1 = key in range
  std::vector<T>& rows = t_rows<T>;
  if (rows.size() < 2 * kKBlock * D) rows.resize(2 * kKBlock * D);
  T* kr = rows.data();               // [kKBlock, D] gathered rows (layouts whose rows are split)
  T* vr = kr + kKBlock * D;          // [kKBlock, D]
  const T* kp[kKBlock];              // the block's K / V row of each key
  const T* vp[kKBlock];

  for (uint64_t i = 0; i < group * D; ++i) {
    qf[i] = to_float(qrow[i]);
    acc[i] = 0.0f;
  }
  for (uint64_t g = 0; g < group; ++g) {
    mrun[g] = kNegInf;
    lrun[g] = 0.0f;
  }
  for (uint64_t j0 = lo; j0 < hi; j0 += kKBlock) {
    const uint64_t nk = std::min(kKBlock, hi - j0);
    if (!load(j0, nk, kr, vr, kp, vp, valid)) continue;
    bool all = true;
    for (uint64_t jj = 0; jj < nk; ++jj) all &= valid[jj] != 0.0f;
    if (tiles && all) {
      alignas(64) float sbuf[attn_tiles::kKeys];
      for (uint64_t g = 0; g < group; ++g) {
        const attn_tiles::DecodeRow row{qf + g * D, static_cast<int32_t>(lo), static_cast<int32_t>(hi), mrun + g,
                                        lrun + g, acc + g * D};
        attn_tiles::decode_block_rows<T>(D, row, kp, vp, nk, j0, sigma, sbuf);
      }
      continue;
    }
    for (uint64_t jj = 0; jj < nk; ++jj)
      if (valid[jj] != 0.0f) {
        widen_row(kp[jj], kf + jj * D, D);
        widen_row(vp[jj], vf + jj * D, D);
      }
    for (uint64_t g = 0; g < group; ++g) {
      const float* qv = qf + g * D;
      float bmax = kNegInf;
      for (uint64_t jj = 0; jj < nk; ++jj) {
        if (valid[jj] == 0.0f) continue;
        const float s = sigma * dot_f32(qv, kf + jj * D, D);
        sc[jj] = s;
        bmax = std::max(bmax, s);
      }
      float* a = acc + g * D;
      online_softmax_rescale(mrun[g], lrun[g], a, D, bmax);
      for (uint64_t jj = 0; jj < nk; ++jj)
        if (valid[jj] != 0.0f) online_softmax_add(sc[jj], mrun[g], vf + jj * D, D, lrun[g], a);
    }
  }
  for (uint64_t g = 0; g < group; ++g) {
    T* o = orow + g * D;
    const float l = lrun[g];
    if (l == 0.0f) {
      std::memset(static_cast<void*>(o), 0, D * sizeof(T));  // empty visible set: +0.0
      if (lse_out) lse_out[g * lse_step] = kNegInf;
      continue;
    }
    const float inv = 1.0f / l;  // l > 0, or NaN which propagates
    for (uint64_t d = 0; d < D; ++d) o[d] = from_float<T>(acc[g * D + d] * inv);
    if (lse_out) lse_out[g * lse_step] = mrun[g] + std::log(l);
  }
}

// Work-splitting grain for items of about `cost` multiply-adds each.
inline uint64_t grain_for(uint64_t cost) { return std::max<uint64_t>(1, (uint64_t{1} << 15) / std::max<uint64_t>(cost, 1)); }

}  // namespace

template <class T>
void paged_attention(const T* q, const T* k_pool, const T* v_pool, T* out, float* lse, uint64_t lse_stride,
                     const PagedQuery* queries, uint64_t n_queries, const PagedPool& pool, uint64_t num_heads,
                     float scale, uint64_t sliding_window) {
  if (n_queries == 0 || num_heads == 0) return;
  const uint64_t D = pool.head_dim, nkv = pool.nkv, bs = pool.block_size;
  const uint64_t group = num_heads / nkv;
  const float sigma = softmax_scale(scale, D);
  const uint64_t avg_kv = std::max<uint64_t>(1, queries[0].kv_len);
  const uint64_t items = n_queries * nkv;
  parallel_for(items, grain_for(avg_kv * D * group * 2), [&](uint64_t b, uint64_t e) {
    for (uint64_t it = b; it < e; ++it) {
      const PagedQuery& qq = queries[it / nkv];
      const uint64_t kvh = it % nkv;
      const uint64_t h0 = kvh * group;
      // Keys j0 .. j0 + nk − 1: one table lookup per paged block; ferrum-layout rows are read in
      // place (nkv·D elements apart), vLLM-layout rows gathered into kr / vr.
      auto load = [&](uint64_t j0, uint64_t nk, T* kr, T* vr, const T** kp, const T** vp, float* valid) -> bool {
        bool any = false;
        for (uint64_t jj = 0; jj < nk;) {
          const uint64_t j = j0 + jj, o0 = j % bs, run = std::min(bs - o0, nk - jj);
          const int64_t blk = pool.block_of(qq.seq, j);
          for (uint64_t r = 0; r < run; ++r) valid[jj + r] = blk < 0 ? 0.0f : 1.0f;
          if (blk >= 0) {
            any = true;
            const uint64_t ub = static_cast<uint64_t>(blk);
            if (pool.layout == PagedLayout::ferrum) {
              const uint64_t base = ((ub * bs + o0) * nkv + kvh) * D, step = nkv * D;
              for (uint64_t r = 0; r < run; ++r) {
                kp[jj + r] = k_pool + base + r * step;
                vp[jj + r] = v_pool + base + r * step;
              }
            } else {
              const uint64_t x = pool.x;
              const uint64_t base = ub * (nkv * D * bs) + kvh * (D * bs);
              for (uint64_t r = 0; r < run; ++r) {
                const uint64_t o = o0 + r;
                T* kd = kr + (jj + r) * D;
                T* vd = vr + (jj + r) * D;
                for (uint64_t d0 = 0; d0 < D; d0 += x)
                  std::memcpy(static_cast<void*>(kd + d0), k_pool + base + (d0 / x) * (bs * x) + o * x, x * sizeof(T));
                const T* vc = v_pool + base + o;
                for (uint64_t d = 0; d < D; ++d) vd[d] = vc[d * bs];
                kp[jj + r] = kd;
                vp[jj + r] = vd;
              }
            }
          }
          jj += run;
        }
        // ferrum layout: prefetch the rows of the next block (scattered rows nkv·D apart, which the
        // hardware prefetchers do not follow), so they arrive while this block is computed
        if (pool.layout == PagedLayout::ferrum) {
          const uint64_t end = std::min(j0 + nk + kKBlock, qq.kv_len), rb = D * sizeof(T);
          for (uint64_t j = j0 + nk; j < end;) {
            const uint64_t o0 = j % bs, run = std::min(bs - o0, end - j);
            const int64_t blk = pool.block_of(qq.seq, j);
            if (blk >= 0) {
              const uint64_t base = ((static_cast<uint64_t>(blk) * bs + o0) * nkv + kvh) * D, step = nkv * D;
              for (uint64_t r = 0; r < run; ++r)
                for (uint64_t b = 0; b < rb; b += 64) {
                  __builtin_prefetch(reinterpret_cast<const char*>(k_pool + base + r * step) + b);
                  __builtin_prefetch(reinterpret_cast<const char*>(v_pool + base + r * step) + b);
                }
            }
            j += run;
          }
        }
        return any;
      };
      const uint64_t off = (qq.row * num_heads + h0) * D;
      attend_group<T>(q + off, out + off, lse ? lse + h0 * lse_stride + qq.row : nullptr, lse_stride, group, D, sigma,
                      qq.pos, qq.kv_len, sliding_window, load);
    }
  });
}

template <class T, class C>
void paged_write(const T* qkv, const T* q_norm_w, const T* k_norm_w, const C* cos, const C* sin, T* q_out,
                 T* k_pool, T* v_pool, const PagedToken* tokens, uint64_t n_tokens, const PagedPool& pool,
                 uint64_t q_heads, float eps, int mode) {
  if (n_tokens == 0) return;
  const uint64_t D = pool.head_dim, nkv = pool.nkv, bs = pool.block_size, half = D / 2;
  const uint64_t W = (q_heads + 2 * nkv) * D;
  parallel_for(n_tokens, grain_for(W * 4), [&](uint64_t b, uint64_t e) {
    std::vector<T> tmp(D);
    for (uint64_t i = b; i < e; ++i) {
      const PagedToken& tk = tokens[i];
      const T* row = qkv + tk.src_row * W;
      const C* cr = mode != 0 && cos ? cos + tk.pos * half : nullptr;
      const C* sr = mode != 0 && sin ? sin + tk.pos * half : nullptr;
      T* qo = q_out + tk.dst_row * q_heads * D;
      if (!tk.rope_ok) {  // position past the tables: outputs unspecified; write zeros, no KV
        std::memset(static_cast<void*>(qo), 0, q_heads * D * sizeof(T));
        continue;
      }
      for (uint64_t h = 0; h < q_heads; ++h) qk_transform<T, C>(row + h * D, qo + h * D, q_norm_w, cr, sr, D, eps, mode);
      const int64_t blk = pool.block_of(tk.seq, tk.slot);
      if (blk < 0) continue;  // out-of-range slot or block id: the row is skipped (§6)
      const uint64_t ub = static_cast<uint64_t>(blk), o = tk.slot % bs;
      for (uint64_t h = 0; h < nkv; ++h) {
        const T* ksrc = row + (q_heads + h) * D;
        const T* vsrc = row + (q_heads + nkv + h) * D;
        if (pool.layout == PagedLayout::ferrum) {
          const uint64_t base = ((ub * bs + o) * nkv + h) * D;
          qk_transform<T, C>(ksrc, k_pool + base, k_norm_w, cr, sr, D, eps, mode);
          std::memcpy(static_cast<void*>(v_pool + base), vsrc, D * sizeof(T));
        } else {
          const uint64_t x = pool.x;
          const uint64_t base = ub * (nkv * D * bs) + h * (D * bs);
          qk_transform<T, C>(ksrc, tmp.data(), k_norm_w, cr, sr, D, eps, mode);
          for (uint64_t d0 = 0; d0 < D; d0 += x)
            std::memcpy(static_cast<void*>(k_pool + base + (d0 / x) * (bs * x) + o * x), tmp.data() + d0, x * sizeof(T));
          for (uint64_t d = 0; d < D; ++d) v_pool[base + d * bs + o] = vsrc[d];
        }
      }
    }
  });
}

template <class T>
void kv_append_batched_per_cache(T* const* caches, const T* new_data, IdxView cache_lens, uint64_t capacity,
                                 uint64_t m, uint64_t nkv, uint64_t hd) {
  for (uint64_t i = 0; i < m; ++i) {
    const int64_t L = cache_lens.at(i);
    if (L < 0 || static_cast<uint64_t>(L) >= capacity || !caches[i]) continue;
    for (uint64_t h = 0; h < nkv; ++h)
      std::memcpy(static_cast<void*>(caches[i] + (h * capacity + static_cast<uint64_t>(L)) * hd),
                  new_data + (i * nkv + h) * hd, hd * sizeof(T));
  }
}

template <class T>
void flash_attention_batched_per_cache(const T* q, const T* const* k_caches, const T* const* v_caches, IdxView kv_lens,
                                       T* out, uint64_t m, uint64_t nq, uint64_t nkv, uint64_t hd, float scale,
                                       uint64_t capacity, uint64_t sliding_window) {
  if (m == 0 || nq == 0 || hd == 0) return;
  const uint64_t group = nq / nkv;
  const float sigma = softmax_scale(scale, hd);
  parallel_for(m * nkv, grain_for(capacity * hd * group), [&](uint64_t b, uint64_t e) {
    for (uint64_t it = b; it < e; ++it) {
      const uint64_t i = it / nkv, kvh = it % nkv;
      const int64_t raw = kv_lens.at(i);
      const uint64_t L = raw < 0 ? 0 : std::min<uint64_t>(static_cast<uint64_t>(raw), capacity);
      const T* kb = k_caches[i] + kvh * capacity * hd;
      const T* vb = v_caches[i] + kvh * capacity * hd;
      // contiguous rows: read in place
      auto load = [&](uint64_t j0, uint64_t nk, T*, T*, const T** kp, const T** vp, float* valid) -> bool {
        for (uint64_t jj = 0; jj < nk; ++jj) {
          valid[jj] = 1.0f;
          kp[jj] = kb + (j0 + jj) * hd;
          vp[jj] = vb + (j0 + jj) * hd;
        }
        return true;
      };
      const uint64_t off = (i * nq + kvh * group) * hd;
      attend_group<T>(q + off, out + off, nullptr, 0, group, hd, sigma, static_cast<int64_t>(L) - 1, L, sliding_window,
                      load);
    }
  });
}

#define FERRUM_INSTANTIATE_PAGED(T)                                                                              \
  template void paged_attention<T>(const T*, const T*, const T*, T*, float*, uint64_t, const PagedQuery*, uint64_t, \
                                   const PagedPool&, uint64_t, float, uint64_t);                                 \
  template void kv_append_batched_per_cache<T>(T* const*, const T*, IdxView, uint64_t, uint64_t, uint64_t,        \
                                               uint64_t);                                                        \
  template void flash_attention_batched_per_cache<T>(const T*, const T* const*, const T* const*, IdxView, T*,     \
                                                     uint64_t, uint64_t, uint64_t, uint64_t, float, uint64_t,     \
                                                     uint64_t);
FERRUM_INSTANTIATE_PAGED(float)
FERRUM_INSTANTIATE_PAGED(f16)
FERRUM_INSTANTIATE_PAGED(bf16)
#undef FERRUM_INSTANTIATE_PAGED

#define FERRUM_INSTANTIATE_PAGED_WRITE(T, C)                                                                    \
  template void paged_write<T, C>(const T*, const T*, const T*, const C*, const C*, T*, T*, T*, const PagedToken*, \
                                  uint64_t, const PagedPool&, uint64_t, float, int);
FERRUM_INSTANTIATE_PAGED_WRITE(float, float)
FERRUM_INSTANTIATE_PAGED_WRITE(f16, f16)
FERRUM_INSTANTIATE_PAGED_WRITE(f16, float)
FERRUM_INSTANTIATE_PAGED_WRITE(bf16, bf16)
FERRUM_INSTANTIATE_PAGED_WRITE(bf16, float)
#undef FERRUM_INSTANTIATE_PAGED_WRITE

}  // namespace ferrum::cpu
