// Helpers shared by the CPU kernel tests: per-dtype tolerances and seeded random inputs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include <ferrum/common/dtype.hpp>

namespace ferrum::test {

// Relative tolerance of one output of dtype T (F-class: f32 1e-5, f16 2e-3, bf16 1e-2).
template <class T>
double tol() {
  if constexpr (std::is_same_v<T, float>) return 1e-5;
  else if constexpr (std::is_same_v<T, f16>) return 2e-3;
  else return 1e-2;
}

// n values uniform in [lo, hi), rounded to T, from a fixed seed.
template <class T>
std::vector<T> random_vec(uint64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = from_float<T>(u(g));
  return v;
}

// flash_attention's shape: q [batch, nh, q_len, hd], K/V [batch, nkv, S, hd] with S = stride or kv_len.
struct AttnShape {
  uint64_t batch, q_len, kv_len, pos_offset, nh, nkv, hd;
  bool causal;
  double scale;  // 0: 1/sqrt(hd)
  uint64_t stride, window;
};

// float64 softmax attention of the T inputs (query i at position pos_offset + i sees keys j <= it when
// causal and j > it − window when windowed; a row that sees none is 0).
template <class T>
std::vector<double> attention_reference(const AttnShape& c, const std::vector<T>& q, const std::vector<T>& k,
                                        const std::vector<T>& v) {
  const uint64_t S = c.stride ? c.stride : c.kv_len;
  const double sigma = c.scale != 0 ? c.scale : 1 / std::sqrt(static_cast<double>(c.hd));
  std::vector<double> ref(q.size(), 0.0);
  for (uint64_t b = 0; b < c.batch; ++b)
    for (uint64_t h = 0; h < c.nh; ++h) {
      const uint64_t kvh = h / (c.nh / c.nkv);
      for (uint64_t i = 0; i < c.q_len; ++i) {
        const int64_t p = static_cast<int64_t>(c.pos_offset + i);
        const uint64_t qo = ((b * c.nh + h) * c.q_len + i) * c.hd;
        std::vector<double> s;
        std::vector<uint64_t> js;
        for (uint64_t j = 0; j < c.kv_len; ++j) {
          if (c.causal && static_cast<int64_t>(j) > p) continue;
          if (c.window && static_cast<int64_t>(j) < p - static_cast<int64_t>(c.window) + 1) continue;
          double dot = 0;
          for (uint64_t d = 0; d < c.hd; ++d)
            dot += static_cast<double>(to_float(q[qo + d])) * to_float(k[((b * c.nkv + kvh) * S + j) * c.hd + d]);
          s.push_back(sigma * dot);
          js.push_back(j);
        }
        if (s.empty()) continue;
        const double m = *std::max_element(s.begin(), s.end());
        double z = 0;
        for (double x : s) z += std::exp(x - m);
        for (size_t t = 0; t < s.size(); ++t) {
          const double pr = std::exp(s[t] - m) / z;
          for (uint64_t d = 0; d < c.hd; ++d) ref[qo + d] += pr * to_float(v[((b * c.nkv + kvh) * S + js[t]) * c.hd + d]);
        }
      }
    }
  return ref;
}

}  // namespace ferrum::test
