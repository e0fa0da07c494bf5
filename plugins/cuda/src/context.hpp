// ferrum CUDA plugin — DeviceContext: one stream on one device, with the library handles,
// scratch and caches the ops of that context share.
//
// Thread contract: a DeviceContext is externally synchronised (one thread at a time), as
// docs/spec.md §0.4 states for every call that takes a context. Different contexts may be used
// from different threads at once.
//
// Ownership: create() fills a DeviceContext that owns its stream, cuBLASLt handle, device
// workspace, pinned staging slots and cached gemm plans; destroy() releases them all and is
// safe on a default-constructed or already-destroyed context.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "status.hpp"

namespace ferrum::cuda {

// Size of the cuBLASLt workspace allocated once per context (NVIDIA's recommendation for
// Hopper; more than enough on Ampere). gemm never allocates, so it is capturable.
inline constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;

// Upper bound on cached gemm plans per context. When it is reached the whole cache is
// dropped and refilled (a plan costs one heuristic query to rebuild); real models use a
// few dozen shapes, so this only bounds pathological callers.
inline constexpr size_t kMaxGemmPlans = 4096;

// Pinned host staging for h2d_async (see memory.hpp): kStagingSlots slots of
// kStagingSlotBytes each, used round-robin; each slot has an event that marks when the
// copy out of it has finished so it can be refilled.
inline constexpr size_t kStagingSlots = 4;
inline constexpr size_t kStagingSlotBytes = size_t{1} << 20;

struct GemmKey {
  int32_t dtype = 0;
  uint32_t align = 0;  // smallest alignment in bytes of a, b, out (power of two, <= 256)
  uint64_t m = 0, n = 0, k = 0;
  uint64_t ldo = 0;  // elements between the starts of two out rows (>= n)
  friend bool operator==(const GemmKey& x, const GemmKey& y) noexcept {
    return x.dtype == y.dtype && x.align == y.align && x.m == y.m && x.n == y.n && x.k == y.k && x.ldo == y.ldo;
  }
};

struct GemmKeyHash {
  size_t operator()(const GemmKey& key) const noexcept {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(key.dtype);
    for (uint64_t v : {static_cast<uint64_t>(key.align), key.m, key.n, key.k, key.ldo}) {
      h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    }
    return static_cast<size_t>(h);
  }
};

// Everything one cublasLtMatmul call needs, built once per key (gemm.cpp).
struct GemmPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a_layout = nullptr;  // cuBLAS "A" = ferrum b, [k, n] col-major, op T
  cublasLtMatrixLayout_t b_layout = nullptr;  // cuBLAS "B" = ferrum a, [k, m] col-major, op N
  cublasLtMatrixLayout_t c_layout = nullptr;  // C = D = ferrum out, [n, m] col-major
  cublasLtMatmulAlgo_t algo{};
};

struct StagingSlot {
  void* host = nullptr;         // pinned, kStagingSlotBytes
  cudaEvent_t done = nullptr;   // recorded after the copy out of `host` is enqueued
  bool pending = false;         // `done` has been recorded at least once
};

struct DeviceContext {
  int device = -1;
  cudaStream_t stream = nullptr;  // created with cudaStreamNonBlocking, owned (unless !owns_stream)
  bool owns_stream = true;        // false: the host's stream (new_context external_stream), never destroyed
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;      // kGemmWorkspaceBytes of device memory
  size_t workspace_bytes = 0;
  std::array<StagingSlot, kStagingSlots> staging{};
  size_t next_staging_slot = 0;
  std::unordered_map<GemmKey, GemmPlan, GemmKeyHash> gemm_plans;  // keyed by (dtype, m, n, k)
};

// Creates a context on `device`: makes it current, creates a non-blocking stream, a
// cuBLASLt handle, the gemm workspace and the pinned staging slots. On failure everything
// created so far is released and `ctx` is left destroyed. INVALID_ARGUMENT for a device
// ordinal outside [0, count). Leaves the calling thread's current device unchanged.
// `external` non-NULL: the context enqueues on that stream (the host's) instead of creating one, and
// destroy() waits for it but never destroys it.
[[nodiscard]] Status create(int device, DeviceContext& ctx, cudaStream_t external = nullptr) noexcept;

// Waits for the context's work, then frees everything it owns. NULL-safe: a context that
// was never created (device == -1) or was already destroyed is a no-op. Returns the first
// error met (teardown continues past errors).
Status destroy(DeviceContext& ctx) noexcept;

// Waits until all work enqueued on the context's stream has completed; DEVICE_ERROR (or
// OUT_OF_MEMORY) with the CUDA message if any of it failed.
[[nodiscard]] Status sync(DeviceContext& ctx) noexcept;

// Drops all cached gemm plans (they are rebuilt on demand).
void clear_gemm_plans(DeviceContext& ctx) noexcept;

// Makes a device current for the lifetime of the guard and restores the previously current
// device on destruction. Use: `DeviceGuard g; FERRUM_RETURN_IF_ERROR(g.enter(ctx.device));`
// No cudaSetDevice call is made when the device is already current.
class DeviceGuard {
 public:
  DeviceGuard() noexcept = default;
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  ~DeviceGuard();

  [[nodiscard]] Status enter(int device) noexcept;

 private:
  int previous_ = -1;  // device to restore; -1 when nothing to restore
};

}  // namespace ferrum::cuda
