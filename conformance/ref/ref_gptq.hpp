// ferrum test support — GPTQ int4 (AutoGPTQ v1 tensors, docs/spec.md §12.1): a packer that makes the
// checkpoint tensors from chosen q / z / scales / g_idx, and the float64 dequantisation and matmul.
// Independent of every plugin; written from §12.1 alone.
//
//   GptqTensors t = testing::random_gptq(K, N, g, asym, act_order, scales_dtype, seed);
//   std::vector<double> W = ref::gptq_dequantize(t, act_dtype);     // [K, N]
//   ref::gptq_matmul(x, W, out, m, K, N);                            // out[m, N] = x · W
#pragma once

#include "quantize.hpp"

#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

namespace ferrum::testing {

// The logical contents and the packed AutoGPTQ v1 tensors of one [K, N] matrix.
struct GptqTensors {
  uint64_t k = 0, n = 0, group_size = 0, groups = 0;  // group_size 0 = per-channel
  int32_t scales_dtype = FERRUM_DTYPE_F16;
  bool symmetric = true, has_g_idx = false;
  // logical values
  std::vector<int> q;                 // [K, N], 0..15
  std::vector<int> z;                 // [G, N], 1..16 (8 everywhere when symmetric)
  std::vector<double> scale;          // [G, N], exactly representable in scales_dtype
  std::vector<int32_t> grp;           // [K]
  // packed tensors
  std::vector<int32_t> qweight;       // [K/8, N]
  std::vector<uint8_t> scales_bytes;  // [G, N] encoded in scales_dtype
  std::vector<int32_t> qzeros;        // [G, N/8]; empty when symmetric
  std::vector<int32_t> g_idx;         // [K]; empty when !has_g_idx

  const int32_t* qzeros_ptr() const { return symmetric ? nullptr : qzeros.data(); }
  const int32_t* g_idx_ptr() const { return has_g_idx ? g_idx.data() : nullptr; }
};

// Packs t.q / t.z / t.scale / t.grp (already filled) into the AutoGPTQ v1 tensors.
inline void pack_gptq(GptqTensors& t) {
  const uint64_t K = t.k, N = t.n, G = t.groups;
  if (K % 8 || N % 8) throw std::invalid_argument("pack_gptq: K and N must be multiples of 8");
  t.qweight.assign(K / 8 * N, 0);
  for (uint64_t k = 0; k < K; ++k)
    for (uint64_t n = 0; n < N; ++n) {
      const uint32_t nib = static_cast<uint32_t>(t.q[k * N + n]) & 15u;
      uint32_t& w = reinterpret_cast<uint32_t&>(t.qweight[k / 8 * N + n]);
      w |= nib << (4 * (k % 8));
    }
  t.qzeros.clear();
  if (!t.symmetric) {
    t.qzeros.assign(G * N / 8, 0);
    for (uint64_t g = 0; g < G; ++g)
      for (uint64_t n = 0; n < N; ++n) {
        const uint32_t nib = static_cast<uint32_t>(t.z[g * N + n] - 1) & 15u;
        uint32_t& w = reinterpret_cast<uint32_t&>(t.qzeros[g * (N / 8) + n / 8]);
        w |= nib << (4 * (n % 8));
      }
  }
  t.scales_bytes = encode(t.scales_dtype, t.scale);
  t.g_idx.clear();
  if (t.has_g_idx) t.g_idx = t.grp;
}

// Random tensors: q uniform 0..15; z 1..16 (asymmetric) or 8; scales in ±[0.002, 0.02] rounded to
// scales_dtype; act_order gives a random (not sorted) group per row with every group used as often as
// with k/g; otherwise g_idx is left NULL (grp = k/g), or written out explicitly when explicit_g_idx.
inline GptqTensors random_gptq(uint64_t K, uint64_t N, uint64_t group_size, bool asym, bool act_order,
                               int32_t scales_dtype, uint64_t seed, bool explicit_g_idx = false) {
  GptqTensors t;
  t.k = K;
  t.n = N;
  t.group_size = group_size;
  t.groups = group_size ? K / group_size : 1;
  if (group_size && K % group_size) throw std::invalid_argument("random_gptq: K % group_size != 0");
  t.scales_dtype = scales_dtype;
  t.symmetric = !asym;
  t.has_g_idx = act_order || explicit_g_idx;
  std::mt19937_64 g(seed);
  auto unit = [&] { return static_cast<double>(g() >> 11) * 0x1.0p-53; };
  t.q.resize(K * N);
  for (auto& v : t.q) v = static_cast<int>(g() >> 60);
  t.z.assign(t.groups * N, 8);
  if (asym)
    for (auto& v : t.z) v = 1 + static_cast<int>(g() >> 60);
  t.scale.resize(t.groups * N);
  for (auto& v : t.scale) v = round_to(scales_dtype, ((g() & 1) ? -1 : 1) * (0.002 + 0.018 * unit()));
  t.grp.resize(K);
  for (uint64_t k = 0; k < K; ++k) t.grp[k] = group_size ? static_cast<int32_t>(k / group_size) : 0;
  if (act_order)  // Fisher–Yates with the raw generator (no std distributions)
    for (uint64_t i = K - 1; i > 0; --i) std::swap(t.grp[i], t.grp[g() % (i + 1)]);
  pack_gptq(t);
  return t;
}

}  // namespace ferrum::testing

namespace ferrum::ref {

// W[K, N] = (q − z[grp(k)]) · ŝ[grp(k)], ŝ = scale rounded to act_dtype (§12.1).
inline std::vector<double> gptq_dequantize(const testing::GptqTensors& t, int32_t act_dtype) {
  std::vector<double> w(t.k * t.n);
  for (uint64_t k = 0; k < t.k; ++k) {
    const uint64_t g = static_cast<uint64_t>(t.grp[k]);
    for (uint64_t n = 0; n < t.n; ++n) {
      const double s = testing::round_to(act_dtype, t.scale[g * t.n + n]);
      w[k * t.n + n] = (t.q[k * t.n + n] - t.z[g * t.n + n]) * s;
    }
  }
  return w;
}

// out[m, N] = x[m, K] · W[K, N] in float64.
inline void gptq_matmul(const std::vector<double>& x, const std::vector<double>& w, std::vector<double>& out,
                        uint64_t m, uint64_t K, uint64_t N) {
  if (x.size() < m * K || w.size() < K * N) throw std::invalid_argument("gptq_matmul: sizes");
  std::vector<double> r(m * N, 0.0);
  for (uint64_t i = 0; i < m; ++i)
    for (uint64_t p = 0; p < K; ++p) {
      const double xv = x[i * K + p];
      for (uint64_t j = 0; j < N; ++j) r[i * N + j] += xv * w[p * N + j];
    }
  if (out.size() < r.size()) out.resize(r.size());
  for (uint64_t i = 0; i < r.size(); ++i) out[i] = r[i];
}

}  // namespace ferrum::ref
