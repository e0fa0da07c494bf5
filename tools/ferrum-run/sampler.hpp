// ferrum-run: next-token choice from f32 logits on the host.
//   greedy: the first index of the largest logit;
//   sampled: logits / temperature, then top-k (keep the k largest; 0 = all), then top-p (keep the
//   smallest set of most likely tokens whose probability reaches p; 1 = all), softmax over what
//   is kept, one draw from a per-request std::mt19937_64 seeded from --seed and the request index.
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace ferrum::run {

struct SamplingParams {
  bool greedy = true;
  double temperature = 1.0;
  uint64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(const SamplingParams& p, uint64_t request_index);
  uint32_t next(std::span<const float> logits);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

uint32_t argmax(std::span<const float> logits);

}  // namespace ferrum::run
