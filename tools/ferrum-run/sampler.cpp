#include "sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace ferrum::run {

uint32_t argmax(std::span<const float> logits) {
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<uint32_t>(best);
}

Sampler::Sampler(const SamplingParams& p, uint64_t request_index)
    : p_(p), rng_(p.seed ^ (0x9E3779B97F4A7C15ull * (request_index + 1))) {}

uint32_t Sampler::next(std::span<const float> logits) {
  if (p_.greedy || logits.size() == 1) return argmax(logits);
  std::vector<uint32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0u);
  // Most likely first (ties: lower id first, so the result does not depend on the sort).
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  size_t keep = order.size();
  if (p_.top_k > 0 && p_.top_k < keep) keep = static_cast<size_t>(p_.top_k);
  std::vector<double> prob(keep);
  const double top = double(logits[order[0]]) / p_.temperature;
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += prob[i] = std::exp(double(logits[order[i]]) / p_.temperature - top);
  if (p_.top_p < 1.0) {
    double cum = 0;
    size_t n = 0;
    while (n < keep) {
      cum += prob[n++] / sum;
      if (cum >= p_.top_p) break;
    }
    keep = std::max<size_t>(n, 1);
    sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += prob[i];
  }
  std::uniform_real_distribution<double> u(0.0, sum);
  double r = u(rng_), acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += prob[i];
    if (r < acc) return order[i];
  }
  return order[keep - 1];
}

}  // namespace ferrum::run
