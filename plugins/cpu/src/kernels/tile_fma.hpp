// ferrum CPU plugin — decode-once tiles for matmuls with m > 1 rows (AVX-512; used by the GGUF matmul
// and the dense gemm at small m).
//
// out[i, j] = Σ_k x[i, k] · W[j, k] with W given tile by tile: a tile is kTileJ rows of W × kTileK
// columns, produced exactly in f32 by the caller's `fill` (decoded GGUF blocks, widened f16 / bf16
// rows, copied f32 rows) into L1, then used by every activation row before the next tile:
//  * groups of 16 activation rows through a broadcast kernel: the rows transposed once per call
//    into xt[group][k][16] (zero lanes past m), one vector load per k serves 16 rows and each FMA
//    takes one weight as a broadcast operand (28 accumulators; two groups share each broadcast);
//  * the rows left over (fewer than kPadRestMin) through a dot kernel: 3 rows × 7 weight rows of
//    16-lane accumulators along k, each output's lanes reduced once after the last tile.
// An output is one fixed-order f32 FMA chain over k (tile after tile), whatever the thread split, so
// results are bitwise independent of the thread count; with exact weights only the FMA chain rounds.
// Callers check simd::has_avx512() first.
#ifndef FERRUM_CPU_KERNELS_TILE_FMA_HPP
#define FERRUM_CPU_KERNELS_TILE_FMA_HPP

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "parallel.hpp"
#include "scratch.hpp"
#include "simd.hpp"

#if FERRUM_SIMD_X86
#include <immintrin.h>

namespace ferrum::cpu::tile {

constexpr uint64_t kTileJ = 28, kTileK = 256;
// Rows left over after the groups of 16 from which one more (zero-padded) group runs through the
// broadcast kernel instead of the dot kernel (measured: m = 15 faster as a padded group).
constexpr uint64_t kPadRestMin = 12;

// acc[NR] (16 activation rows each) over kn columns: C[j][16] in and out (zero in when `first`).
template <int NR>
FERRUM_AVX512 inline void tile_fma1(const float* W, const float* xt, uint64_t kn, float* C, bool first) {
  __m512 acc[NR];
#pragma GCC unroll 32
  for (int j = 0; j < NR; ++j) acc[j] = first ? _mm512_setzero_ps() : _mm512_load_ps(C + 16 * j);
  for (uint64_t k = 0; k < kn; ++k) {
    const __m512 xv = _mm512_load_ps(xt + 16 * k);
#pragma GCC unroll 32
    for (int j = 0; j < NR; ++j) acc[j] = _mm512_fmadd_ps(xv, _mm512_set1_ps(W[j * kTileK + k]), acc[j]);
  }
#pragma GCC unroll 32
  for (int j = 0; j < NR; ++j) _mm512_store_ps(C + 16 * j, acc[j]);
}
// Two groups of 16 rows (xt0, xt1) over NR weight rows: 2·NR accumulators, one broadcast per weight.
template <int NR>
FERRUM_AVX512 inline void tile_fma2(const float* W, const float* xt0, const float* xt1, uint64_t kn, float* C0, float* C1,
                             bool first) {
  __m512 a0[NR], a1[NR];
#pragma GCC unroll 32
  for (int j = 0; j < NR; ++j) {
    a0[j] = first ? _mm512_setzero_ps() : _mm512_load_ps(C0 + 16 * j);
    a1[j] = first ? _mm512_setzero_ps() : _mm512_load_ps(C1 + 16 * j);
  }
  for (uint64_t k = 0; k < kn; ++k) {
    const __m512 x0 = _mm512_load_ps(xt0 + 16 * k), x1 = _mm512_load_ps(xt1 + 16 * k);
#pragma GCC unroll 32
    for (int j = 0; j < NR; ++j) {
      const __m512 wv = _mm512_set1_ps(W[j * kTileK + k]);
      a0[j] = _mm512_fmadd_ps(x0, wv, a0[j]);
      a1[j] = _mm512_fmadd_ps(x1, wv, a1[j]);
    }
  }
#pragma GCC unroll 32
  for (int j = 0; j < NR; ++j) {
    _mm512_store_ps(C0 + 16 * j, a0[j]);
    _mm512_store_ps(C1 + 16 * j, a1[j]);
  }
}

// Rows of x in natural order (stride K, kn a multiple of 16) against NJ weight rows: MI·NJ
// accumulators of 16 k-lanes each, C[i][j][16] in and out (zero in when `first`); each output's
// lanes are reduced once, after the last tile. For the rows that do not fill a group of 16.
template <int MI, int NJ>
FERRUM_AVX512 inline void tile_dot(const float* W, const float* x, uint64_t K, uint64_t kn, float* C, bool first) {
  __m512 acc[MI][NJ];
#pragma GCC unroll 32
  for (int i = 0; i < MI; ++i)
#pragma GCC unroll 32
    for (int j = 0; j < NJ; ++j) acc[i][j] = first ? _mm512_setzero_ps() : _mm512_load_ps(C + (i * kTileJ + j) * 16);
  for (uint64_t k = 0; k < kn; k += 16) {
    __m512 xv[MI];
#pragma GCC unroll 32
    for (int i = 0; i < MI; ++i) xv[i] = _mm512_load_ps(x + i * K + k);
#pragma GCC unroll 32
    for (int j = 0; j < NJ; ++j) {
      const __m512 wv = _mm512_load_ps(W + j * kTileK + k);
#pragma GCC unroll 32
      for (int i = 0; i < MI; ++i) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
#pragma GCC unroll 32
  for (int i = 0; i < MI; ++i)
#pragma GCC unroll 32
    for (int j = 0; j < NJ; ++j) _mm512_store_ps(C + (i * kTileJ + j) * 16, acc[i][j]);
}
template <int MI>
FERRUM_AVX512 inline void tile_dot_rows(const float* W, const float* x, uint64_t K, uint64_t kn, float* C, bool first) {
  for (uint64_t j = 0; j < kTileJ; j += 7) tile_dot<MI, 7>(W + j * kTileK, x, K, kn, C + j * 16, first);
}

// Per-thread buffers of matmul: the arranged activations (the calling thread's) and each worker's
// weight tile, accumulators and results.
inline thread_local Scratch t_activations, t_tile;

// The activations of one call, arranged once: rows [0, grouped) transposed into xt[group][k][16],
// rows [grouped, m) copied into xa (natural order, 64-byte aligned rows; K a multiple of 16), in
// `store` (the calling thread's t_activations).
struct Activations {
  uint64_t m = 0, K = 0, full = 0, grouped = 0, rest = 0;
  float* xt = nullptr;
  float* xa = nullptr;
  Activations(const float* x, uint64_t m_, uint64_t K_, Scratch& store) : m(m_), K(K_) {
    full = m / 16 + (m % 16 >= kPadRestMin ? 1 : 0);
    grouped = std::min(m, 16 * full);
    rest = m - grouped;
    xt = store.get(full * K * 16 + rest * K);
    xa = xt + full * K * 16;
    for (uint64_t ib = 0; ib < full; ++ib) {
      float* g = xt + ib * K * 16;
      for (uint64_t k = 0; k < K; ++k)
        for (uint64_t l = 0; l < 16; ++l) {
          const uint64_t i = 16 * ib + l;
          g[k * 16 + l] = i < grouped ? x[i * K + k] : 0.0f;
        }
    }
    std::memcpy(xa, x + grouped * K, rest * K * sizeof(float));
  }
};

// Runs the FMA kernels of one tile's columns [k0, k0 + kn) (kn a multiple of 16, W filled) into C.
FERRUM_AVX512 inline void tile_columns(const Activations& A, const float* W, uint64_t k0, uint64_t kn, float* C) {
  const uint64_t K = A.K, full = A.full;
  const bool first = k0 == 0;
  float* Cd = C + full * kTileJ * 16;
  uint64_t ib = 0;
  for (; ib + 2 <= full; ib += 2) {
    const float* x0 = A.xt + ib * K * 16 + k0 * 16;
    float* c0 = C + ib * kTileJ * 16;
    tile_fma2<kTileJ / 2>(W, x0, x0 + K * 16, kn, c0, c0 + kTileJ * 16, first);
    tile_fma2<kTileJ / 2>(W + kTileJ / 2 * kTileK, x0, x0 + K * 16, kn, c0 + kTileJ / 2 * 16,
                          c0 + kTileJ * 16 + kTileJ / 2 * 16, first);
  }
  if (ib < full) tile_fma1<kTileJ>(W, A.xt + ib * K * 16 + k0 * 16, kn, C + ib * kTileJ * 16, first);
  const uint64_t rest = A.rest;
  uint64_t i = 0;
  for (; i + 3 <= rest; i += 3) tile_dot_rows<3>(W, A.xa + i * K + k0, K, kn, Cd + i * kTileJ * 16, first);
  if (rest - i == 2) tile_dot_rows<2>(W, A.xa + i * K + k0, K, kn, Cd + i * kTileJ * 16, first);
  if (rest - i == 1) tile_dot_rows<1>(W, A.xa + i * K + k0, K, kn, Cd + i * kTileJ * 16, first);
}

// The finished tile's outputs: res[i][j] = out_f32[i][j0 + j], j < r.
FERRUM_AVX512 inline void tile_results(const Activations& A, const float* C, uint64_t r, float* res) {
  const uint64_t g = A.grouped;
  for (uint64_t i = 0; i < g; ++i)
    for (uint64_t j = 0; j < r; ++j) res[i * kTileJ + j] = C[(i / 16) * kTileJ * 16 + j * 16 + i % 16];
  const float* Cd = C + A.full * kTileJ * 16;
  for (uint64_t i = 0; i < A.rest; ++i)
    for (uint64_t j = 0; j < r; ++j)
      res[(g + i) * kTileJ + j] = _mm512_reduce_add_ps(_mm512_load_ps(Cd + (i * kTileJ + j) * 16));
}

// Activation rows per pass over the weight (bounds the per-thread accumulators at kRowBlock·kTileJ·16
// floats, 896 KiB; a larger m fills every weight tile once per block of rows).
constexpr uint64_t kRowBlock = 512;

// out[i·N + j] = Σ_k x[i·K + k] · W[j, k] for N weight rows, K a multiple of 16. fill(j0, r, k0, kn,
// W) writes rows [j0, j0 + r) × columns [k0, k0 + kn) of W exactly as f32 into W[j − j0][k − k0]
// (row stride kTileK; kn = min(kTileK, K − k0)); store(i, j, v) receives each f32 output once. Runs
// the weight tiles on the thread pool.
template <class Fill, class Store>
void matmul(const float* x, uint64_t m, uint64_t N, uint64_t K, const Fill& fill, const Store& store) {
  for (uint64_t i0 = 0; i0 < m; i0 += kRowBlock) {
    const uint64_t mb = std::min(kRowBlock, m - i0);
    const Activations A(x + i0 * K, mb, K, t_activations);
    const uint64_t tiles = (N + kTileJ - 1) / kTileJ;
    parallel_for(tiles, 1, [&](uint64_t t0, uint64_t t1) {
      float* W = t_tile.get(kTileJ * kTileK + mb * kTileJ * 16 + mb * kTileJ);
      float* C = W + kTileJ * kTileK;
      float* res = C + mb * kTileJ * 16;
      for (uint64_t t = t0; t < t1; ++t) {
        const uint64_t j0 = t * kTileJ, r = std::min(kTileJ, N - j0);
        for (uint64_t k0 = 0; k0 < K; k0 += kTileK) {
          const uint64_t kn = std::min(kTileK, K - k0);
          fill(j0, r, k0, kn, W);
          // a part tile's unused rows: zeros, not a previous call's values (their sums are not stored)
          if (r < kTileJ)
            for (uint64_t j = r; j < kTileJ; ++j) std::memset(W + j * kTileK, 0, kn * sizeof(float));
          tile_columns(A, W, k0, kn, C);
        }
        tile_results(A, C, r, res);
        for (uint64_t i = 0; i < mb; ++i)
          for (uint64_t j = 0; j < r; ++j) store(i0 + i, j0 + j, res[i * kTileJ + j]);
      }
    });
  }
}

}  // namespace ferrum::cpu::tile

#endif  // FERRUM_SIMD_X86
#endif  // FERRUM_CPU_KERNELS_TILE_FMA_HPP
