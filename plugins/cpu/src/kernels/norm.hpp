// ferrum CPU plugin — normalisation kernels (docs/spec.md §3 rms_norm, fused_add_rms_norm, layer_norm).
// T in {float, f16, bf16}; rows are [tokens, dim] dense row-major; weights are [dim].
// Statistics run in f64 (docs/spec.md §0.2: "f32 or wider"), the normalisation in f32, and each
// output is rounded once. dim must be > 0 when tokens > 0 (the glue layer checks).
#ifndef FERRUM_CPU_KERNELS_NORM_HPP
#define FERRUM_CPU_KERNELS_NORM_HPP

#include <cstdint>

#include <ferrum/common/dtype.hpp>

namespace ferrum::cpu {

// out[r, i] = x[r, i] · w[i] / sqrt(mean_j x[r, j]² + eps). out may alias x.
template <class T>
void rms_norm(const T* x, const T* w, float eps, T* out, uint64_t tokens, uint64_t dim);

// residual[r, i] ← round(residual[r, i] + x[r, i]); then out = rms_norm(residual) computed
// from the stored, rounded residual. out may alias x, not residual.
template <class T>
void fused_add_rms_norm(T* residual, const T* x, const T* w, float eps, T* out, uint64_t tokens, uint64_t dim);

// out[r, i] = (x[r, i] − μ) / sqrt(v + eps) · gamma[i] + beta[i], population variance from
// two passes (never E[x²] − μ²). out may alias x.
template <class T>
void layer_norm(const T* x, const T* gamma, const T* beta, float eps, T* out, uint64_t tokens, uint64_t dim);

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_NORM_HPP
