// ferrum CPU plugin — GPTQ int4 (W4A16) kernels (see gptq.hpp).
#include "gptq.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FERRUM_GPTQ_X86 1
#endif

#include "parallel.hpp"

namespace ferrum::cpu {
namespace {

constexpr uint64_t kRowBlock = 4;    // activation rows per register block
constexpr uint64_t kRowChunk = 32;   // activation rows kept hot (L2) while all column tiles pass

// One column tile (8 columns at c0) × `r` activation rows (≤ kRowBlock) starting at xp (row stride kp).
void tile_generic(const GptqMatrix& w, uint64_t t, const float* xp, uint64_t r, float* acc /*[r][8]*/) {
  const uint64_t n = w.n, c0 = 8 * t, kw = w.kp / 8;
  const uint32_t* qt = w.q.data() + t * kw * 8;
  for (uint64_t i = 0; i < r * 8; ++i) acc[i] = 0;
  for (uint64_t g = 0; g < w.groups; ++g) {
    const uint64_t w0 = w.group_word[g], w1 = w.group_word[g + 1];
    if (w0 == w1) continue;
    const float* zv = w.zero.data() + g * n + c0;
    const float* sv = w.scale.data() + g * n + c0;
    float gacc[kRowBlock][8] = {};
    for (uint64_t wr = w0; wr < w1; ++wr) {
      const uint32_t* words = qt + wr * 8;
      for (int s = 0; s < 8; ++s) {
        float qf[8];
        for (int c = 0; c < 8; ++c) qf[c] = float((words[c] >> (4 * s)) & 15u) - zv[c];
        for (uint64_t i = 0; i < r; ++i) {
          const float xv = xp[i * w.kp + 8 * wr + s];
          for (int c = 0; c < 8; ++c) gacc[i][c] = (xv) * (qf[c]) + (gacc[i][c]);
        }
      }
    }
    for (uint64_t i = 0; i < r; ++i)
      for (int c = 0; c < 8; ++c) acc[i * 8 + c] = (sv[c]) * (gacc[i][c]) + (acc[i * 8 + c]);
  }
}

#ifdef FERRUM_GPTQ_X86
template <int R>
__attribute__((target("avx2,fma"))) void tile_avx2_r(const GptqMatrix& w, uint64_t t, const float* xp, float* acc) {
  const uint64_t n = w.n, c0 = 8 * t, kw = w.kp / 8, kp = w.kp;
  const uint32_t* qt = w.q.data() + t * kw * 8;
  const __m256i m4 = _mm256_set1_epi32(15);
  __m256 o[R];
  for (int i = 0; i < R; ++i) o[i] = _mm256_setzero_ps();
  for (uint64_t g = 0; g < w.groups; ++g) {
    const uint64_t w0 = w.group_word[g], w1 = w.group_word[g + 1];
    if (w0 == w1) continue;
    const __m256 zv = _mm256_loadu_ps(w.zero.data() + g * n + c0);
    __m256 ga[R];
    for (int i = 0; i < R; ++i) ga[i] = _mm256_setzero_ps();
    for (uint64_t wr = w0; wr < w1; ++wr) {
      const __m256i words = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qt + wr * 8));
      const float* xr = xp + 8 * wr;
#define FERRUM_GPTQ_STEP(S)                                                                              \
  {                                                                                                      \
    const __m256 qf = _mm256_sub_ps(                                                                     \
        _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(words, 4 * (S)), m4)), zv);                \
    for (int i = 0; i < R; ++i) ga[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(xr + i * kp + (S)), qf, ga[i]); \
  }
      FERRUM_GPTQ_STEP(0) FERRUM_GPTQ_STEP(1) FERRUM_GPTQ_STEP(2) FERRUM_GPTQ_STEP(3)
      FERRUM_GPTQ_STEP(4) FERRUM_GPTQ_STEP(5) FERRUM_GPTQ_STEP(6) FERRUM_GPTQ_STEP(7)
#undef FERRUM_GPTQ_STEP
    }
    const __m256 sv = _mm256_loadu_ps(w.scale.data() + g * n + c0);
    for (int i = 0; i < R; ++i) o[i] = _mm256_fmadd_ps(sv, ga[i], o[i]);
  }
  for (int i = 0; i < R; ++i) _mm256_storeu_ps(acc + 8 * i, o[i]);
}

void tile_avx2(const GptqMatrix& w, uint64_t t, const float* xp, uint64_t r, float* acc) {
  switch (r) {
    case 1: return tile_avx2_r<1>(w, t, xp, acc);
    case 2: return tile_avx2_r<2>(w, t, xp, acc);
    case 3: return tile_avx2_r<3>(w, t, xp, acc);
    default: return tile_avx2_r<4>(w, t, xp, acc);
  }
}

bool has_avx2() {
  static const bool v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return v;
}
#endif

}  // namespace

void gptq_repack(const GptqSource& s, GptqMatrix& w) {
  common::gptq_layout(s, w);
  const uint64_t N = s.n, kw = w.kp / 8, tiles = N / 8;
  w.q.assign(tiles * kw * 8, 0);
  for (uint64_t p = 0; p < w.kp; ++p) {
    const int64_t src = w.src_row[p];
    if (src < 0) continue;
    const uint32_t dshift = 4 * (p % 8);
    for (uint64_t col = 0; col < N; ++col)
      w.q[((col / 8) * kw + p / 8) * 8 + col % 8] |= common::gptq_nibble(s, uint64_t(src), col) << dshift;
  }
}

template <class T>
void gptq_matmul(const GptqMatrix& w, const T* x, uint64_t rows, T* out) {
  if (rows == 0 || w.n == 0) return;
  const uint64_t K = w.k, kp = w.kp, N = w.n, tiles = N / 8;
  // Activations as f32 in the padded group order (padding rows read 0).
  std::vector<float> store;
  const float* xp;
  if (std::is_same_v<T, float> && w.identity) {
    xp = reinterpret_cast<const float*>(x);
  } else {
    store.assign(rows * kp, 0.0f);
    for (uint64_t r = 0; r < rows; ++r)
      for (uint64_t p = 0; p < kp; ++p)
        if (w.src_row[p] >= 0) store[r * kp + p] = to_float(x[r * K + uint64_t(w.src_row[p])]);
    xp = store.data();
  }
  auto tile = tile_generic;
#ifdef FERRUM_GPTQ_X86
  if (has_avx2()) tile = tile_avx2;
#endif
  for (uint64_t rc = 0; rc < rows; rc += kRowChunk) {
    const uint64_t rc1 = std::min(rows, rc + kRowChunk);
    parallel_for(tiles, 1, [&](uint64_t t0, uint64_t t1) {
      float acc[kRowBlock * 8];
      for (uint64_t t = t0; t < t1; ++t)
        for (uint64_t r = rc; r < rc1; r += kRowBlock) {
          const uint64_t rb = std::min(kRowBlock, rc1 - r);
          tile(w, t, xp + r * kp, rb, acc);
          for (uint64_t i = 0; i < rb; ++i)
            for (int c = 0; c < 8; ++c) out[(r + i) * N + 8 * t + c] = from_float<T>(acc[i * 8 + c]);
        }
    });
  }
}

template void gptq_matmul<float>(const GptqMatrix&, const float*, uint64_t, float*);
template void gptq_matmul<f16>(const GptqMatrix&, const f16*, uint64_t, f16*);
template void gptq_matmul<bf16>(const GptqMatrix&, const bf16*, uint64_t, bf16*);

}  // namespace ferrum::cpu
