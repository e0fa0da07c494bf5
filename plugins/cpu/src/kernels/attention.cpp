// ferrum CPU plugin — flash attention over contiguous KV (see attention.hpp).
//
// Work item = (batch, KV head, tile of kQTile query positions): the item serves every query head
// of the KV head's GQA group, so each block of kKBlock keys is read and widened to f32 once for
// the whole group (not once per query head). Then every query (head, position) of the tile
// updates its running max m, running sum l and f32 accumulator acc[head_dim] (flash-attention
// online softmax):
//   m' = max(m, max_j s_j), acc ← acc·e^(m−m') + Σ_j e^(s_j−m')·v_j, l ← l·e^(m−m') + Σ_j e^(s_j−m').
// Prefill-sized calls (q_len >= kTilesMinQ, head_dim 64 / 128, AVX-512 or AVX2 + FMA + F16C) run
// each item through attn_tiles instead: the tile's 16 positions of one head are the 16 lanes of a
// vector (two on AVX2), so the
// scores and the value rows are broadcast-FMA tiles (attention_tiles.cpp); the rest of this file is
// the row-at-a-time path (decode, other head dims, other CPUs).
// Each output's arithmetic is the same whatever the item split, so results do not depend on the
// thread count. Scratch per thread: 2·group·kQTile·head_dim + kKBlock + 2·group·kQTile floats (the
// row path reads K and V in place), independent of kv_len.
#include "attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "attention_math.hpp"
#include "attention_tiles.hpp"
#include "gemm.hpp"  // widen_row
#include "parallel.hpp"
#include "scratch.hpp"

namespace ferrum::cpu {
namespace {

constexpr uint64_t kQTile = 16;
constexpr uint64_t kKBlock = 64;

thread_local std::vector<float> t_scratch;
thread_local Scratch t_tiles;

// Prefill-sized calls where attn_tiles::available (AVX-512, or AVX2 + FMA + F16C with the same bits;
// head_dim 64 / 128), q_len >= kTilesMinQ, key indices below 2^31:
// each item's group × 16 query rows go through attn_tiles (16 rows per vector, K and V as broadcast
// operands), instead of one query row at a time. Decided by the call's shape only.
constexpr uint64_t kTilesMinQ = 8;

// One work item (batch b, KV head kvh, query positions i0 .. i0 + nq − 1 of every head of the group)
// through attn_tiles. qrow(g, qi): element offset of that query / output row.
template <class T, class QRow>
void item_tiles(const T* q, const T* k, const T* v, T* out, uint64_t kvoff, uint64_t i0, uint64_t nq, uint64_t group,
                uint64_t D, uint64_t kv_len, uint64_t pos_offset, bool causal, uint64_t window, float sigma,
                uint64_t tlo, uint64_t thi, const QRow& qrow) {
  using attn_tiles::kKeys;
  const uint64_t per = 2 * D * 16 + 3 * 16;  // qt, acc, m, l, (lo, hi as one more 16 each)
  float* base = t_tiles.get(group * per + 2 * 16 + kKeys * 16 + 2 * kKeys * D);
  int32_t* lo = reinterpret_cast<int32_t*>(base);
  int32_t* hi = lo + 16;
  float* s = base + 32;
  float* kf = s + kKeys * 16;
  float* vf = kf + kKeys * D;
  float* gbase = vf + kKeys * D;
  for (uint64_t qi = 0; qi < 16; ++qi) {
    uint64_t a = 0, b = 0;
    if (qi < nq) visible_range(pos_offset + i0 + qi, kv_len, causal, window, a, b);
    if (a >= b) a = b = 0;
    lo[qi] = static_cast<int32_t>(a);
    hi[qi] = static_cast<int32_t>(b);
  }
  auto rows = [&](uint64_t g) {
    float* r = gbase + g * per;
    return attn_tiles::Rows{r, lo, hi, r + 2 * D * 16, r + 2 * D * 16 + 16, r + D * 16};
  };
  for (uint64_t g = 0; g < group; ++g) {
    const attn_tiles::Rows r = rows(g);
    float* qt = gbase + g * per;
    std::fill(qt, qt + D * 16, 0.0f);
    for (uint64_t qi = 0; qi < nq; ++qi) {
      widen_row(q + qrow(g, qi), s, D);  // s (score scratch, kKeys·16 >= D floats) is free until the blocks
      for (uint64_t d = 0; d < D; ++d) qt[d * 16 + qi] = s[d];
    }
    std::fill(r.acc, r.acc + D * 16, 0.0f);
    std::fill(r.m, r.m + 16, kNegInf);
    std::fill(r.l, r.l + 16, 0.0f);
  }
  for (uint64_t j0 = tlo; j0 < thi; j0 += kKeys) {
    const uint64_t nk = std::min(kKeys, thi - j0), nk16 = (nk + 15) / 16 * 16;
    const float* kb = kf;
    const float* vb = vf;
    if (std::is_same_v<T, float> && nk == nk16) {  // f32 rows used in place (no rows to zero)
      kb = reinterpret_cast<const float*>(k + kvoff + j0 * D);
      vb = reinterpret_cast<const float*>(v + kvoff + j0 * D);
    } else {
      widen_row(k + kvoff + j0 * D, kf, nk * D);
      widen_row(v + kvoff + j0 * D, vf, nk * D);
      std::fill(kf + nk * D, kf + nk16 * D, 0.0f);
    }
    for (uint64_t g = 0; g < group; ++g) attn_tiles::block(D, rows(g), kb, vb, nk, j0, sigma, s);
  }
  for (uint64_t g = 0; g < group; ++g) {
    const attn_tiles::Rows r = rows(g);
    for (uint64_t qi = 0; qi < nq; ++qi) {
      T* o = out + qrow(g, qi);
      const float l = r.l[qi];
      if (l > 0.0f) {
        const float inv = 1.0f / l;
        for (uint64_t d = 0; d < D; ++d) o[d] = from_float<T>(r.acc[d * 16 + qi] * inv);
      } else if (l == 0.0f) {
        std::memset(static_cast<void*>(o), 0, D * sizeof(T));  // empty visible set: +0.0
      } else {
        for (uint64_t d = 0; d < D; ++d) o[d] = from_float<T>(r.acc[d * 16 + qi] / l);  // NaN propagates
      }
    }
  }
}

}  // namespace

template <class T>
void flash_attention(const T* q, const T* k, const T* v, T* out, uint64_t batch, uint64_t q_len, uint64_t kv_len,
                     uint64_t pos_offset, uint64_t num_heads, uint64_t num_kv_heads, uint64_t head_dim, bool causal,
                     float scale, uint64_t kv_seq_stride, uint64_t sliding_window) {
  if (batch == 0 || q_len == 0 || num_heads == 0 || head_dim == 0) return;
  const uint64_t D = head_dim;
  const uint64_t S = kv_seq_stride ? kv_seq_stride : kv_len;
  const uint64_t group = num_heads / num_kv_heads;
  const float sigma = softmax_scale(scale, D);
  const uint64_t tiles = (q_len + kQTile - 1) / kQTile;
  const uint64_t items = batch * num_kv_heads * tiles;
  // Rough cost per item: group × tile queries × visible keys × head_dim.
  const uint64_t cost = std::max<uint64_t>(1, group * std::min(q_len, kQTile) * std::max<uint64_t>(kv_len, 1) * D);
  const uint64_t grain = std::max<uint64_t>(1, (uint64_t{1} << 16) / cost);
  const uint64_t rows = group * kQTile;  // query rows of an item: head g, position qi -> row g·kQTile + qi
  const bool tiles_path = q_len >= kTilesMinQ && kv_len < (uint64_t{1} << 31) && attn_tiles::available(D);
  // Decode-sized calls on the same machines: each query row runs attn_tiles::decode_block (16 keys'
  // FMA dots at a time) instead of the portable-bits dot / axpy below.
  const bool decode_tiles = !tiles_path && kv_len < (uint64_t{1} << 31) && attn_tiles::available(D);
  static_assert(kKBlock == attn_tiles::kKeys, "decode_block takes one key block");
  static_assert(kQTile == 16, "attn_tiles puts an item's 16 positions of one head in one vector");

  parallel_for(items, grain, [&](uint64_t it0, uint64_t it1) {
    const uint64_t need = rows * D * 2 + kKBlock + 2 * rows;
    if (t_scratch.size() < need) t_scratch.resize(need);
    float* qf = t_scratch.data();         // [rows, D] queries in f32
    float* acc = qf + rows * D;           // [rows, D]
    float* sc = acc + rows * D;           // [kKBlock] scores
    float* mrun = sc + kKBlock;           // [rows]
    float* lrun = mrun + rows;            // [rows]

    for (uint64_t it = it0; it < it1; ++it) {
      const uint64_t tile = it % tiles;
      const uint64_t bk = it / tiles;
      const uint64_t kvh = bk % num_kv_heads;
      const uint64_t b = bk / num_kv_heads;
      const uint64_t i0 = tile * kQTile;
      const uint64_t nq = std::min(kQTile, q_len - i0);
      // Query / output rows of head h = kvh·group + g at position i0 + qi.
      auto qrow = [&](uint64_t g, uint64_t qi) { return ((b * num_heads + kvh * group + g) * q_len + i0 + qi) * D; };
      // Element offset of this (batch, kv head)'s keys; pointers are formed only for keys read
      // (kv_len = 0 reads none: k/v may be NULL and S·D may exceed what they hold).
      const uint64_t kvoff = (b * num_kv_heads + kvh) * S * D;

      // Union of the tile's visible ranges (the same for every head of the group).
      uint64_t tlo = kv_len, thi = 0;
      for (uint64_t qi = 0; qi < nq; ++qi) {
        uint64_t lo, hi;
        visible_range(pos_offset + i0 + qi, kv_len, causal, sliding_window, lo, hi);
        if (lo < hi) {
          tlo = std::min(tlo, lo);
          thi = std::max(thi, hi);
        }
      }
      if (tiles_path) {
        item_tiles(q, k, v, out, kvoff, i0, nq, group, D, kv_len, pos_offset, causal, sliding_window, sigma, tlo, thi,
                   qrow);
        continue;
      }
      for (uint64_t g = 0; g < group; ++g)
        for (uint64_t qi = 0; qi < nq; ++qi) {
          const uint64_t r = g * kQTile + qi;
          widen_row(q + qrow(g, qi), qf + r * D, D);
          std::fill(acc + r * D, acc + (r + 1) * D, 0.0f);
          mrun[r] = kNegInf;
          lrun[r] = 0.0f;
        }

      for (uint64_t j0 = tlo; j0 < thi; j0 += kKBlock) {
        const uint64_t nk = std::min(kKBlock, thi - j0);
        // the keys' rows are contiguous and read in place (f16 / bf16 widened in the dot / axpy
        // registers: the bits of widening them first)
        const T* kb = k + kvoff + j0 * D;
        const T* vb = v + kvoff + j0 * D;
        if (decode_tiles) {
          alignas(64) float sbuf[attn_tiles::kKeys];
          for (uint64_t qi = 0; qi < nq; ++qi) {
            uint64_t lo, hi;
            visible_range(pos_offset + i0 + qi, kv_len, causal, sliding_window, lo, hi);
            if (std::max(lo, j0) >= std::min(hi, j0 + nk)) continue;  // no visible key in this block
            for (uint64_t g = 0; g < group; ++g) {
              const uint64_t r = g * kQTile + qi;
              const attn_tiles::DecodeRow row{qf + r * D, static_cast<int32_t>(lo), static_cast<int32_t>(hi),
                                              mrun + r, lrun + r, acc + r * D};
              attn_tiles::decode_block(D, row, kb, vb, nk, j0, sigma, sbuf);
            }
          }
          continue;
        }
        for (uint64_t qi = 0; qi < nq; ++qi) {
          uint64_t lo, hi;
          visible_range(pos_offset + i0 + qi, kv_len, causal, sliding_window, lo, hi);
          const uint64_t jb = std::max(lo, j0), je = std::min(hi, j0 + nk);
          if (jb >= je) continue;
          for (uint64_t g = 0; g < group; ++g) {
            const uint64_t r = g * kQTile + qi;
            const float* qv = qf + r * D;
            float bmax = kNegInf;
            uint64_t j = jb;
            for (; j + 4 <= je; j += 4) {  // four keys' dots interleaved (the same bits as one by one)
              float d4[4];
              dot4_f32(qv, kb + (j - j0) * D, D, D, d4);
              for (int t = 0; t < 4; ++t) {
                const float s = sigma * d4[t];
                sc[j - j0 + t] = s;
                bmax = std::max(bmax, s);
              }
            }
            for (; j < je; ++j) {
              const float s = sigma * dot_f32(qv, kb + (j - j0) * D, D);
              sc[j - j0] = s;
              bmax = std::max(bmax, s);
            }
            float* a = acc + r * D;
            online_softmax_rescale(mrun[r], lrun[r], a, D, bmax);
            // online_softmax_add for keys jb .. je − 1: p and l in key order, then the value rows
            // in key order per element (the same bits, acc kept in registers across the keys).
            for (uint64_t j = jb; j < je; ++j) {
              const float p = std::exp(sc[j - j0] - mrun[r]);
              lrun[r] += p;
              sc[j - j0] = p;
            }
            axpy_rows_f32(a, sc + (jb - j0), vb + (jb - j0) * D, D, je - jb, D);
          }
        }
      }

      for (uint64_t g = 0; g < group; ++g)
        for (uint64_t qi = 0; qi < nq; ++qi) {
          const uint64_t r = g * kQTile + qi;
          T* o = out + qrow(g, qi);
          const float l = lrun[r];
          if (l > 0.0f) {
            const float inv = 1.0f / l;
            for (uint64_t d = 0; d < D; ++d) o[d] = from_float<T>(acc[r * D + d] * inv);
          } else if (l == 0.0f) {
            std::memset(static_cast<void*>(o), 0, D * sizeof(T));  // empty visible set: +0.0
          } else {
            for (uint64_t d = 0; d < D; ++d) o[d] = from_float<T>(acc[r * D + d] / l);  // NaN propagates
          }
        }
    }
  });
}

template void flash_attention<float>(const float*, const float*, const float*, float*, uint64_t, uint64_t, uint64_t,
                                     uint64_t, uint64_t, uint64_t, uint64_t, bool, float, uint64_t, uint64_t);
template void flash_attention<f16>(const f16*, const f16*, const f16*, f16*, uint64_t, uint64_t, uint64_t, uint64_t,
                                   uint64_t, uint64_t, uint64_t, bool, float, uint64_t, uint64_t);
template void flash_attention<bf16>(const bf16*, const bf16*, const bf16*, bf16*, uint64_t, uint64_t, uint64_t,
                                    uint64_t, uint64_t, uint64_t, uint64_t, bool, float, uint64_t, uint64_t);

}  // namespace ferrum::cpu
