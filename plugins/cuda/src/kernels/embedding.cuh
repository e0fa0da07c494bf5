// ferrum CUDA plugin — row gathers (docs/spec.md §3): embedding_lookup (host ids, or the decode-state
// token in dev-state mode) and embedding_lookup_dev (device ids).
//
// out[i, :] = table[id_i, :] as bit copies, or +0.0 for an id outside [0, vocab) where the ids
// come from device memory. Threads over all rows' output 16-byte vectors, four per thread
// (scalar path when dim or a base is not 16-byte aligned). Launch functions enqueue
// on `stream` (its device current) and allocate nothing.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "status.hpp"

namespace ferrum::cuda::kernels {

// Ids from host memory, already checked < vocab by the caller. They travel as kernel
// parameters (chunks of kHostIdsPerLaunch per launch; a small parameter block for <= 16 ids),
// so the host array may be reused as soon as the call returns and no device scratch or
// staging copy is needed. Not capturable only because the ids are host values frozen at
// launch (docs/spec.md §3). The glue uses this for n <= kHostIdsPerLaunch (one launch); larger
// calls copy the ids into a pinned staging slot and use embedding_mapped_ids (one launch), or,
// beyond one slot, stage them into device scratch and use embedding_dev_ids.
inline constexpr uint64_t kHostIdsPerLaunch = 960;
[[nodiscard]] Status embedding_host_ids(int32_t dtype, const void* table, const uint32_t* ids, uint64_t n,
                                        void* out, uint64_t dim, cudaStream_t stream) noexcept;

// Ids (U32, already checked < vocab by the caller) in pinned host memory that the device
// reads directly (`ids` the device-side address of a mapped/UVA pinned allocation): no copy
// is enqueued before the gather, so the stream goes from the previous kernel straight to this
// one. The caller keeps the host memory unchanged until the launch has completed (an event
// recorded behind it). One launch for any n.
[[nodiscard]] Status embedding_mapped_ids(int32_t dtype, const void* table, const uint32_t* ids, uint64_t n,
                                          void* out, uint64_t dim, cudaStream_t stream) noexcept;

// Ids from device memory (`ids_dtype` FERRUM_DTYPE_U32 or FERRUM_DTYPE_I32, n of them); an id
// >= vocab or negative gives a row of +0.0. Capturable. The dev-state token is this with
// ids = &dev_state[0], U32, n = 1.
[[nodiscard]] Status embedding_dev_ids(int32_t dtype, const void* table, uint64_t vocab, const void* ids,
                                       int32_t ids_dtype, uint64_t n, void* out, uint64_t dim,
                                       cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::kernels
