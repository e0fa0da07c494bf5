// ferrum CPU plugin — dense GEMM (docs/spec.md §3 gemm, §0.6).
#ifndef FERRUM_CPU_KERNELS_GEMM_HPP
#define FERRUM_CPU_KERNELS_GEMM_HPP

#include <cstdint>

#include <ferrum/common/dtype.hpp>

namespace ferrum::cpu {

// out[i, j] = Σ_p a[i, p] · b[j, p]   ("NT": a is [m, k], b is [n, k], out is [m, n], all
// dense row-major). T in {float, f16, bf16}. Inputs convert exactly to f32, the sum runs in
// full f32 precision with FMA, and each output is rounded once. k = 0 writes +0.0 everywhere;
// m = 0 or n = 0 does nothing. out must not overlap a or b (a and b may be the same).
// Runs on the thread pool; deterministic (the summation order of an element never depends on
// the thread count or the tile it falls in).
template <class T>
void gemm(const T* a, const T* b, T* out, uint64_t m, uint64_t n, uint64_t k);

// n values widened to f32, exactly as to_float (vector converters chosen at run time: AVX-512,
// F16C / AVX2, or portable). For kernels that stream half-precision rows into f32 buffers.
void widen_row(const f16* src, float* dst, uint64_t n);
void widen_row(const bf16* src, float* dst, uint64_t n);
inline void widen_row(const float* src, float* dst, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) dst[i] = src[i];
}

// The small-m path's dot products, as f32 (for tests): x · y over k with the machine's dot
// (gemm_dot), and x · (y widened) through the fused half kernel where the CPU has one (AVX2 + F16C,
// AVX-512), else by widening y first — the same bits either way.
float gemm_dot(const float* x, const float* y, uint64_t k);
float gemm_dot_half(const float* x, const f16* y, uint64_t k);
float gemm_dot_half(const float* x, const bf16* y, uint64_t k);

// Which micro-kernel gemm uses on this machine.
const char* gemm_kernel_name();  // "avx512_bf16" (14 × 32 tile, bf16 pairs by vdpbf16ps), "avx512" (14 × 32), "avx2_fma" (6 × 16) or "generic"

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_GEMM_HPP
