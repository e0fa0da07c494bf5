// ferrum CPU plugin — MLA attention (see mla.hpp).
//
// For each block of kKBlock keys the latent rows c_j [R] and rope rows r_j [P] are widened to f32
// once per tile, then every (head, query) row of the tile updates its running max m, sum l and
// accumulator acc[R] (flash-attention online softmax, as in attention.cpp). Scratch per thread:
// kRowTile·(2R + P) + kKBlock·(R + P + 1) + 2·kRowTile floats, independent of kv_len.
#include "mla.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "attention_math.hpp"
#include "parallel.hpp"

namespace ferrum::cpu {
namespace {

constexpr uint64_t kRowTile = 16;
constexpr uint64_t kKBlock = 32;

thread_local std::vector<float> t_scratch;

}  // namespace

template <class T>
void mla_attention(const T* q, const T* kv_compressed, const T* kv_rope, T* out, uint64_t batch, uint64_t q_len,
                   uint64_t kv_len, uint64_t pos_offset, uint64_t num_heads, bool causal, float scale,
                   uint64_t kv_seq_stride, uint64_t sliding_window, uint64_t kv_lora_rank,
                   uint64_t qk_rope_head_dim) {
  if (batch == 0 || q_len == 0 || num_heads == 0) return;
  const uint64_t R = kv_lora_rank, P = qk_rope_head_dim, QD = R + P;
  const uint64_t S = kv_seq_stride ? kv_seq_stride : kv_len;
  const uint64_t rows = num_heads * q_len;  // per batch item, row r = h·q_len + i
  if (kv_len == 0) {  // no keys (the KV buffers may be absent): zero rows
    std::memset(static_cast<void*>(out), 0, batch * rows * R * sizeof(T));
    return;
  }
  const uint64_t tiles = (rows + kRowTile - 1) / kRowTile;
  const uint64_t items = batch * tiles;
  const uint64_t cost = std::max<uint64_t>(1, std::min(rows, kRowTile) * std::max<uint64_t>(kv_len, 1) * QD);
  const uint64_t grain = std::max<uint64_t>(1, (uint64_t{1} << 16) / cost);

  parallel_for(items, grain, [&](uint64_t it0, uint64_t it1) {
    const uint64_t need = kRowTile * (QD + R) + kKBlock * (QD + 1) + 2 * kRowTile;
    if (t_scratch.size() < need) t_scratch.resize(need);
    float* qf = t_scratch.data();      // [kRowTile, R + P]
    float* acc = qf + kRowTile * QD;   // [kRowTile, R]
    float* cf = acc + kRowTile * R;    // [kKBlock, R] latent keys (= values)
    float* rf = cf + kKBlock * R;      // [kKBlock, P] rope keys
    float* sc = rf + kKBlock * P;      // [kKBlock]
    float* mrun = sc + kKBlock;        // [kRowTile]
    float* lrun = mrun + kRowTile;     // [kRowTile]

    for (uint64_t it = it0; it < it1; ++it) {
      const uint64_t b = it / tiles, tile = it % tiles;
      const uint64_t r0 = tile * kRowTile, nr = std::min(kRowTile, rows - r0);
      const T* cbase = kv_compressed + b * S * R;
      const T* rbase = kv_rope + b * S * P;
      uint64_t tlo = kv_len, thi = 0;
      for (uint64_t ri = 0; ri < nr; ++ri) {
        uint64_t lo, hi;
        visible_range(pos_offset + (r0 + ri) % q_len, kv_len, causal, sliding_window, lo, hi);
        if (lo < hi) {
          tlo = std::min(tlo, lo);
          thi = std::max(thi, hi);
        }
        const T* qr = q + (b * rows + r0 + ri) * QD;
        for (uint64_t d = 0; d < QD; ++d) qf[ri * QD + d] = to_float(qr[d]);
        std::fill(acc + ri * R, acc + (ri + 1) * R, 0.0f);
        mrun[ri] = kNegInf;
        lrun[ri] = 0.0f;
      }

      for (uint64_t j0 = tlo; j0 < thi; j0 += kKBlock) {
        const uint64_t nk = std::min(kKBlock, thi - j0);
        for (uint64_t e = 0; e < nk * R; ++e) cf[e] = to_float(cbase[j0 * R + e]);
        for (uint64_t e = 0; e < nk * P; ++e) rf[e] = to_float(rbase[j0 * P + e]);
        for (uint64_t ri = 0; ri < nr; ++ri) {
          uint64_t lo, hi;
          visible_range(pos_offset + (r0 + ri) % q_len, kv_len, causal, sliding_window, lo, hi);
          const uint64_t jb = std::max(lo, j0), je = std::min(hi, j0 + nk);
          if (jb >= je) continue;
          const float* ql = qf + ri * QD;
          const float* qr = ql + R;
          float bmax = kNegInf;
          for (uint64_t j = jb; j < je; ++j) {
            const float s = scale * (dot_f32(ql, cf + (j - j0) * R, R) + dot_f32(qr, rf + (j - j0) * P, P));
            sc[j - j0] = s;
            bmax = std::max(bmax, s);
          }
          float* a = acc + ri * R;
          online_softmax_rescale(mrun[ri], lrun[ri], a, R, bmax);
          for (uint64_t j = jb; j < je; ++j) online_softmax_add(sc[j - j0], mrun[ri], cf + (j - j0) * R, R, lrun[ri], a);
        }
      }

      for (uint64_t ri = 0; ri < nr; ++ri) {
        T* o = out + (b * rows + r0 + ri) * R;
        const float l = lrun[ri];
        if (l == 0.0f) {
          std::memset(static_cast<void*>(o), 0, R * sizeof(T));  // empty visible set: +0.0
        } else {
          for (uint64_t d = 0; d < R; ++d) o[d] = from_float<T>(acc[ri * R + d] / l);
        }
      }
    }
  });
}

// One instance per activation type.
template void mla_attention<float>(const float*, const float*, const float*, float*, uint64_t, uint64_t, uint64_t,
                                   uint64_t, uint64_t, bool, float, uint64_t, uint64_t, uint64_t, uint64_t);
template void mla_attention<f16>(const f16*, const f16*, const f16*, f16*, uint64_t, uint64_t, uint64_t, uint64_t,
                                 uint64_t, bool, float, uint64_t, uint64_t, uint64_t, uint64_t);
template void mla_attention<bf16>(const bf16*, const bf16*, const bf16*, bf16*, uint64_t, uint64_t, uint64_t,
                                  uint64_t, uint64_t, bool, float, uint64_t, uint64_t, uint64_t, uint64_t);

}  // namespace ferrum::cpu
