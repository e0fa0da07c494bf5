// ferrum CPU plugin — dense GEMM: out = a · bᵀ (see gemm.hpp).
//
// Structure (BLIS-style): the output is split between pool threads along its larger
// dimension; each thread runs a blocked loop nest
//   jc (NC columns: B packed once, all of k) → ic (MC rows) → pc (KC of k: A packed)
//     → NR-column panels → MR-row panels → micro-kernel (MR × NR tile, kc FMAs deep).
// Packed panels are f32 (f16/bf16 convert while packing). The f32 partial sums of an output
// element are added in the same order whatever the tiling, so results do not depend on the
// thread count. For f32 output the partial sums live in `out`; for f16/bf16 they live in an
// f32 block buffer and each element is rounded once at the end.
// Small m (decode-like) takes a dot-product path that reads b once without packing.
#include "gemm.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FERRUM_GEMM_X86 1
#endif

#include "parallel.hpp"

namespace ferrum::cpu {
namespace {

constexpr uint64_t kMR = 6;
constexpr uint64_t kNR = 16;
constexpr uint64_t kKC = 256;
constexpr uint64_t kMC = 144;                      // 24 MR panels; A block ≈ 144 KiB (L2)
constexpr uint64_t kBPackBudget = 4u << 20;        // bytes of packed B per thread (NC × k)
constexpr uint64_t kNCMax = 4096;
constexpr uint64_t kSmallM = 4;                    // m <= this: dot-product path

// 64-byte aligned, growable, per-thread scratch.
struct Scratch {
  float* data = nullptr;
  uint64_t cap = 0;
  ~Scratch() { ::operator delete[](data, std::align_val_t(64)); }
  float* get(uint64_t n) {
    if (n > cap) {
      ::operator delete[](data, std::align_val_t(64));
      data = nullptr;
      cap = 0;
      data = static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t(64)));
      cap = n;
    }
    return data;
  }
};

thread_local Scratch t_apack, t_bpack, t_cbuf;

// C[MR × NR] (row stride ldc) = (accumulate ? C : 0) + Σ_p A[p, :]ᵀ · B[p, :].
using MicroKernel = void (*)(uint64_t kc, const float* A, const float* B, float* C, uint64_t ldc, bool accumulate);

void micro_generic(uint64_t kc, const float* A, const float* B, float* C, uint64_t ldc, bool accumulate) {
  float acc[kMR][kNR] = {};
  for (uint64_t p = 0; p < kc; ++p) {
    const float* ap = A + p * kMR;
    const float* bp = B + p * kNR;
    for (uint64_t i = 0; i < kMR; ++i) {
      const float av = ap[i];
      for (uint64_t j = 0; j < kNR; ++j) acc[i][j] += av * bp[j];
    }
  }
  for (uint64_t i = 0; i < kMR; ++i) {
    float* c = C + i * ldc;
    if (accumulate) {
      for (uint64_t j = 0; j < kNR; ++j) c[j] += acc[i][j];
    } else {
      for (uint64_t j = 0; j < kNR; ++j) c[j] = acc[i][j];
    }
  }
}

#if FERRUM_GEMM_X86
__attribute__((target("avx2,fma"), always_inline)) inline void store_row_avx2(float* c, __m256 v0, __m256 v1,
                                                                            bool accumulate) {
  if (accumulate) {
    v0 = _mm256_add_ps(_mm256_loadu_ps(c), v0);
    v1 = _mm256_add_ps(_mm256_loadu_ps(c + 8), v1);
  }
  _mm256_storeu_ps(c, v0);
  _mm256_storeu_ps(c + 8, v1);
}

__attribute__((target("avx2,fma"))) void micro_avx2(uint64_t kc, const float* A, const float* B, float* C,
                                                    uint64_t ldc, bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (uint64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(B);
    const __m256 b1 = _mm256_load_ps(B + 8);
    __m256 a = _mm256_broadcast_ss(A + 0);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(A + 1);
    c10 = _mm256_fmadd_ps(a, b0, c10);
    c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(A + 2);
    c20 = _mm256_fmadd_ps(a, b0, c20);
    c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(A + 3);
    c30 = _mm256_fmadd_ps(a, b0, c30);
    c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(A + 4);
    c40 = _mm256_fmadd_ps(a, b0, c40);
    c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(A + 5);
    c50 = _mm256_fmadd_ps(a, b0, c50);
    c51 = _mm256_fmadd_ps(a, b1, c51);
    A += kMR;
    B += kNR;
  }
  store_row_avx2(C + 0 * ldc, c00, c01, accumulate);
  store_row_avx2(C + 1 * ldc, c10, c11, accumulate);
  store_row_avx2(C + 2 * ldc, c20, c21, accumulate);
  store_row_avx2(C + 3 * ldc, c30, c31, accumulate);
  store_row_avx2(C + 4 * ldc, c40, c41, accumulate);
  store_row_avx2(C + 5 * ldc, c50, c51, accumulate);
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* x, const float* y, uint64_t k) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  uint64_t p = 0;
  for (; p + 32 <= k; p += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_loadu_ps(y + p), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 8), _mm256_loadu_ps(y + p + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 16), _mm256_loadu_ps(y + p + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 24), _mm256_loadu_ps(y + p + 24), s3);
  }
  for (; p + 8 <= k; p += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_loadu_ps(y + p), s0);
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float r = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
  for (; p < k; ++p) r = __builtin_fmaf(x[p], y[p], r);
  return r;
}
#endif

float dot_generic(const float* x, const float* y, uint64_t k) {
  float lanes[8] = {};
  uint64_t p = 0;
  for (; p + 8 <= k; p += 8) {
    for (int l = 0; l < 8; ++l) lanes[l] += x[p + l] * y[p + l];
  }
  float r = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
  for (; p < k; ++p) r += x[p] * y[p];
  return r;
}

struct Kernels {
  MicroKernel micro = micro_generic;
  float (*dot)(const float*, const float*, uint64_t) = dot_generic;
  const char* name = "generic";
};

const Kernels& kernels() {
  static const Kernels k = [] {
    Kernels r;
#if FERRUM_GEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      r.micro = micro_avx2;
      r.dot = dot_avx2;
      r.name = "avx2_fma";
    }
#endif
    return r;
  }();
  return k;
}

template <class T>
inline void load_row_f32(const T* src, float* dst, uint64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(dst, src, n * sizeof(float));
  } else {
    for (uint64_t i = 0; i < n; ++i) dst[i] = to_float(src[i]);
  }
}

// Packs rows [0, rows) × cols [0, kc) of a (row stride lda) into MR-row panels, zero-padded.
template <class T>
void pack_a(const T* a, uint64_t lda, uint64_t rows, uint64_t kc, float* dst) {
  for (uint64_t r0 = 0; r0 < rows; r0 += kMR) {
    const uint64_t mr = std::min(kMR, rows - r0);
    float* panel = dst + r0 * kc;
    for (uint64_t i = 0; i < mr; ++i) {
      const T* row = a + (r0 + i) * lda;
      for (uint64_t p = 0; p < kc; ++p) panel[p * kMR + i] = to_float(row[p]);
    }
    for (uint64_t i = mr; i < kMR; ++i) {
      for (uint64_t p = 0; p < kc; ++p) panel[p * kMR + i] = 0.0f;
    }
  }
}

// Packs rows [0, cols) of b (row stride ldb) over all of k into KC blocks of NR-column
// panels: block pc starts at pc · ncp, panel q of it at pc · ncp + q · NR · kc.
template <class T>
void pack_b(const T* b, uint64_t ldb, uint64_t cols, uint64_t ncp, uint64_t k, float* dst) {
  for (uint64_t pc = 0; pc < k; pc += kKC) {
    const uint64_t kc = std::min(kKC, k - pc);
    float* block = dst + pc * ncp;
    for (uint64_t j0 = 0; j0 < ncp; j0 += kNR) {
      float* panel = block + j0 * kc;
      const uint64_t nr = j0 < cols ? std::min(kNR, cols - j0) : 0;
      for (uint64_t j = 0; j < nr; ++j) {
        const T* row = b + (j0 + j) * ldb + pc;
        for (uint64_t p = 0; p < kc; ++p) panel[p * kNR + j] = to_float(row[p]);
      }
      for (uint64_t j = nr; j < kNR; ++j) {
        for (uint64_t p = 0; p < kc; ++p) panel[p * kNR + j] = 0.0f;
      }
    }
  }
}

// out block [m × n] (row stride ldo) = a[m × k] · b[n × k]ᵀ, on the calling thread.
template <class T>
void gemm_blocked(const T* a, const T* b, T* out, uint64_t m, uint64_t n, uint64_t k, uint64_t ldo) {
  const MicroKernel micro = kernels().micro;
  uint64_t nc_max = kBPackBudget / (sizeof(float) * k);
  nc_max = std::clamp<uint64_t>(nc_max / kNR * kNR, kNR, kNCMax);
  float* bpack = t_bpack.get(std::min(nc_max, (n + kNR - 1) / kNR * kNR) * k);
  float* apack = t_apack.get(kMC * kKC);
  float* cbuf = nullptr;
  if constexpr (!std::is_same_v<T, float>) cbuf = t_cbuf.get(kMC * nc_max);
  alignas(64) float edge[kMR * kNR];

  for (uint64_t jc = 0; jc < n; jc += nc_max) {
    const uint64_t nc = std::min(nc_max, n - jc);
    const uint64_t ncp = (nc + kNR - 1) / kNR * kNR;
    pack_b(b + jc * k, k, nc, ncp, k, bpack);
    for (uint64_t ic = 0; ic < m; ic += kMC) {
      const uint64_t mc = std::min(kMC, m - ic);
      float* cblock;
      uint64_t ldc;
      if constexpr (std::is_same_v<T, float>) {
        cblock = out + ic * ldo + jc;
        ldc = ldo;
      } else {
        cblock = cbuf;
        ldc = ncp;
      }
      for (uint64_t pc = 0; pc < k; pc += kKC) {
        const uint64_t kc = std::min(kKC, k - pc);
        const bool accumulate = pc != 0;
        pack_a(a + ic * k + pc, k, mc, kc, apack);
        const float* bblock = bpack + pc * ncp;
        for (uint64_t j0 = 0; j0 < nc; j0 += kNR) {
          const uint64_t nr = std::min(kNR, nc - j0);
          const float* bp = bblock + j0 * kc;
          for (uint64_t i0 = 0; i0 < mc; i0 += kMR) {
            const uint64_t mr = std::min(kMR, mc - i0);
            const float* ap = apack + i0 * kc;
            float* c = cblock + i0 * ldc + j0;
            if (mr == kMR && nr == kNR) {
              micro(kc, ap, bp, c, ldc, accumulate);
            } else {
              micro(kc, ap, bp, edge, kNR, false);
              for (uint64_t i = 0; i < mr; ++i) {
                for (uint64_t j = 0; j < nr; ++j) {
                  c[i * ldc + j] = accumulate ? c[i * ldc + j] + edge[i * kNR + j] : edge[i * kNR + j];
                }
              }
            }
          }
        }
      }
      if constexpr (!std::is_same_v<T, float>) {
        for (uint64_t i = 0; i < mc; ++i) {
          T* orow = out + (ic + i) * ldo + jc;
          const float* crow = cbuf + i * ldc;
          for (uint64_t j = 0; j < nc; ++j) orow[j] = from_float<T>(crow[j]);
        }
      }
    }
  }
}

// Small m: each output is one dot product; b is read once, rows converted to f32 on the fly.
template <class T>
void gemm_small_m(const T* a, const T* b, T* out, uint64_t m, uint64_t n, uint64_t k) {
  const auto dot = kernels().dot;
  const uint64_t grain = std::max<uint64_t>(1, (uint64_t{1} << 16) / std::max<uint64_t>(k, 1));
  parallel_for(n, grain, [&](uint64_t j_begin, uint64_t j_end) {
    float* buf = t_apack.get((m + 1) * k);
    float* arows = buf;
    float* brow = buf + m * k;
    for (uint64_t i = 0; i < m; ++i) load_row_f32(a + i * k, arows + i * k, k);
    for (uint64_t j = j_begin; j < j_end; ++j) {
      const float* bj;
      if constexpr (std::is_same_v<T, float>) {
        bj = b + j * k;
      } else {
        load_row_f32(b + j * k, brow, k);
        bj = brow;
      }
      for (uint64_t i = 0; i < m; ++i) out[i * n + j] = from_float<T>(dot(arows + i * k, bj, k));
    }
  });
}

}  // namespace

const char* gemm_kernel_name() { return kernels().name; }

template <class T>
void gemm(const T* a, const T* b, T* out, uint64_t m, uint64_t n, uint64_t k) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::memset(static_cast<void*>(out), 0, m * n * sizeof(T));
    return;
  }
  if (m <= kSmallM) {
    gemm_small_m(a, b, out, m, n, k);
    return;
  }
  const uint64_t threads = pool_threads();
  const uint64_t flops = 2 * m * n * k;
  // Split the larger output dimension into one part per thread (whole MR/NR tiles).
  const bool split_n = n >= m;
  const uint64_t unit = split_n ? kNR : kMR;
  const uint64_t extent = split_n ? n : m;
  const uint64_t units = (extent + unit - 1) / unit;
  uint64_t parts = std::min<uint64_t>(threads, units);
  if (flops < (uint64_t{1} << 21)) parts = 1;  // not worth waking the pool
  const uint64_t per = (units + parts - 1) / parts * unit;
  parallel_for(parts, 1, [&](uint64_t p_begin, uint64_t p_end) {
    for (uint64_t p = p_begin; p < p_end; ++p) {
      const uint64_t lo = p * per;
      if (lo >= extent) continue;
      const uint64_t hi = std::min(extent, lo + per);
      if (split_n) {
        gemm_blocked(a, b + lo * k, out + lo, m, hi - lo, k, n);
      } else {
        gemm_blocked(a + lo * k, b, out + lo * n, hi - lo, n, k, n);
      }
    }
  });
}

template void gemm<float>(const float*, const float*, float*, uint64_t, uint64_t, uint64_t);
template void gemm<f16>(const f16*, const f16*, f16*, uint64_t, uint64_t, uint64_t);
template void gemm<bf16>(const bf16*, const bf16*, bf16*, uint64_t, uint64_t, uint64_t);

}  // namespace ferrum::cpu
