// ferrum CUDA plugin — device memory, transfers and float conversion.
//
// Thread contract: alloc and free are thread-safe. Functions that take a DeviceContext are
// externally synchronised on that context. convert_async is thread-safe per stream.
//
// Transfer semantics:
//   h2d_async  The host source is read before the call returns, so the caller may reuse or
//              free it at once (docs/spec.md §0.4 "host memory is read before the call returns").
//              Chosen design: copies of up to kStagingSlots * kStagingSlotBytes (4 MiB) are
//              staged through the context's pinned bounce slots (memcpy into a slot, then a
//              truly asynchronous cudaMemcpyAsync from it; a slot is reused only after the
//              event recorded behind its previous copy has completed). Small per-step writes
//              (token ids, positions) therefore do not stall the stream. Larger copies
//              (weights) use cudaMemcpyAsync from the pageable source followed by
//              cudaStreamSynchronize, so they are complete on return.
//   d2h        Synchronous: waits for earlier work on the stream, returns with the data.
//   d2d_async, memset_async, convert_async  Enqueued on the stream; capturable.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "context.hpp"
#include "status.hpp"

namespace ferrum::cuda {

// cudaMalloc on `device` (made current for the call). 0 bytes gives *ptr = nullptr and OK.
// OUT_OF_MEMORY on allocation failure. Not capturable (docs/spec.md §1).
[[nodiscard]] Status alloc(int device, uint64_t bytes, void** ptr) noexcept;

// cudaFree on `device`; NULL-safe. The caller guarantees no enqueued work uses `ptr`.
Status free(int device, void* ptr) noexcept;

// Sets `bytes` bytes at `dst` to zero, enqueued on the context's stream.
[[nodiscard]] Status memset_async(DeviceContext& ctx, void* dst, uint64_t bytes) noexcept;

// Host -> device copy; `src` may be pageable and is reusable on return (see above).
[[nodiscard]] Status h2d_async(DeviceContext& ctx, void* dst, const void* src,
                               uint64_t bytes) noexcept;

// Device -> host copy after earlier work on the context's stream; complete on return.
[[nodiscard]] Status d2h(DeviceContext& ctx, void* dst, const void* src, uint64_t bytes) noexcept;

// Device -> device copy on the same device, enqueued on the context's stream. The ranges
// must not overlap.
[[nodiscard]] Status d2d_async(DeviceContext& ctx, void* dst, const void* src,
                               uint64_t bytes) noexcept;

// dst[i] = convert(src[i]) for i < n, enqueued on `stream`, whose device must be current.
//   - src_dtype == dst_dtype: a bit copy (any dtype of dtype.hpp's dtype_size).
//   - every pair of F32 / F16 / BF16: widening is exact; narrowing rounds to nearest-even,
//     overflows to +-inf (no saturation), keeps NaN a NaN (F16 <-> BF16 goes through the
//     exact f32 value).
//   - any other pair: INVALID_ARGUMENT, nothing enqueued.
// 16-byte vector loads/stores when both pointers are suitably aligned; 64-bit indexing.
// src and dst must not overlap. n == 0 is a no-op (NULL pointers accepted).
[[nodiscard]] Status convert_async(const void* src, int32_t src_dtype, void* dst, int32_t dst_dtype,
                                   uint64_t n, cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda
