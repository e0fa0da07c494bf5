// ferrum CPU plugin — normalisation kernels (see norm.hpp).
#include "norm.hpp"

#include <algorithm>
#include <cmath>

#include "parallel.hpp"

namespace ferrum::cpu {
namespace {

// Rows per parallel chunk: about 64K elements of work.
uint64_t row_grain(uint64_t dim) { return std::max<uint64_t>(1, (uint64_t{1} << 16) / std::max<uint64_t>(dim, 1)); }

template <class T>
double sum_squares(const T* x, uint64_t dim) {
  double lanes[4] = {0, 0, 0, 0};
  uint64_t i = 0;
  for (; i + 4 <= dim; i += 4) {
    for (int l = 0; l < 4; ++l) {
      const double v = to_float(x[i + l]);
      lanes[l] += v * v;
    }
  }
  for (; i < dim; ++i) {
    const double v = to_float(x[i]);
    lanes[0] += v * v;
  }
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

template <class T>
void rms_row(const T* x, const T* w, float eps, T* out, uint64_t dim) {
  const double ms = sum_squares(x, dim) / static_cast<double>(dim);
  const float inv = static_cast<float>(1.0 / std::sqrt(ms + static_cast<double>(eps)));
  for (uint64_t i = 0; i < dim; ++i) out[i] = from_float<T>(to_float(x[i]) * inv * to_float(w[i]));
}

}  // namespace

template <class T>
void rms_norm(const T* x, const T* w, float eps, T* out, uint64_t tokens, uint64_t dim) {
  if (tokens == 0 || dim == 0) return;
  parallel_for(tokens, row_grain(dim), [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r) rms_row(x + r * dim, w, eps, out + r * dim, dim);
  });
}

template <class T>
void fused_add_rms_norm(T* residual, const T* x, const T* w, float eps, T* out, uint64_t tokens, uint64_t dim) {
  if (tokens == 0 || dim == 0) return;
  parallel_for(tokens, row_grain(dim), [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r) {
      T* res = residual + r * dim;
      const T* xr = x + r * dim;
      for (uint64_t i = 0; i < dim; ++i) res[i] = from_float<T>(to_float(res[i]) + to_float(xr[i]));
      rms_row<T>(res, w, eps, out + r * dim, dim);  // out may alias x: x is no longer read
    }
  });
}

template <class T>
void layer_norm(const T* x, const T* gamma, const T* beta, float eps, T* out, uint64_t tokens, uint64_t dim) {
  if (tokens == 0 || dim == 0) return;
  parallel_for(tokens, row_grain(dim), [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * dim;
      double sum = 0;
      for (uint64_t i = 0; i < dim; ++i) sum += to_float(xr[i]);
      const double mean = sum / static_cast<double>(dim);
      double ssd = 0;
      for (uint64_t i = 0; i < dim; ++i) {
        const double d = to_float(xr[i]) - mean;
        ssd += d * d;
      }
      const double var = ssd / static_cast<double>(dim);
      const float inv = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)));
      const float mu = static_cast<float>(mean);
      T* o = out + r * dim;
      for (uint64_t i = 0; i < dim; ++i) {
        o[i] = from_float<T>((to_float(xr[i]) - mu) * inv * to_float(gamma[i]) + to_float(beta[i]));
      }
    }
  });
}

#define FERRUM_INSTANTIATE_NORM(T)                                                                  \
  template void rms_norm<T>(const T*, const T*, float, T*, uint64_t, uint64_t);                     \
  template void fused_add_rms_norm<T>(T*, const T*, const T*, float, T*, uint64_t, uint64_t);       \
  template void layer_norm<T>(const T*, const T*, const T*, float, T*, uint64_t, uint64_t);
FERRUM_INSTANTIATE_NORM(float)
FERRUM_INSTANTIATE_NORM(f16)
FERRUM_INSTANTIATE_NORM(bf16)
#undef FERRUM_INSTANTIATE_NORM

}  // namespace ferrum::cpu
