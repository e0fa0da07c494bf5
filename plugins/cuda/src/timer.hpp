// ferrum CUDA plugin — stream timer (docs/spec.md §9): two timing events on a context's stream.
//
// Thread contract: externally synchronised on the timer (and on the context it records on).
// Ownership: create_timer fills a Timer that owns two events; destroy_timer frees them and
// is NULL-safe (no-op on a default-constructed or destroyed Timer).
// Not capturable.
#pragma once

#include <cuda_runtime_api.h>

#include "context.hpp"
#include "status.hpp"

namespace ferrum::cuda {

struct Timer {
  int device = -1;              // device of the context that made it
  cudaEvent_t start = nullptr;  // cudaEventDefault (timing enabled)
  cudaEvent_t end = nullptr;
  bool has_start = false;
  bool has_end = false;
};

// Creates the two events on ctx's device.
[[nodiscard]] Status create_timer(DeviceContext& ctx, Timer& timer) noexcept;

Status destroy_timer(Timer& timer) noexcept;

// Marks the start on ctx's stream and clears an earlier end mark. INVALID_ARGUMENT when ctx
// is on another device than the timer.
[[nodiscard]] Status record_start(DeviceContext& ctx, Timer& timer) noexcept;

// Marks the end on ctx's stream. INVALID_ARGUMENT without an earlier record_start, or when
// ctx is on another device than the timer.
[[nodiscard]] Status record_end(DeviceContext& ctx, Timer& timer) noexcept;

// Waits until the stream has passed the end mark and writes the milliseconds between the
// two marks (>= 0). INVALID_ARGUMENT if either mark is missing.
[[nodiscard]] Status elapsed_ms(Timer& timer, double& ms) noexcept;

}  // namespace ferrum::cuda
