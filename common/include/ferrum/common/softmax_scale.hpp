// The softmax scale of every attention op (docs/spec.md §0.8): the caller's `scale`, or
// 1/sqrt(head size) when it is 0 (computed in double, rounded once). Shared by the plugins' glue
// and kernels so that every attention path resolves it the same way.
#pragma once

#include <cmath>
#include <cstdint>

namespace ferrum {

inline float softmax_scale(float scale, uint64_t head_dim) {
  return scale != 0.0f ? scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

}  // namespace ferrum
