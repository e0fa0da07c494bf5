// ferrum CUDA plugin — row gathers (declared in embedding.cuh).
//
// gather_kernel<T, N, Src, Idx>: 1-D grid-stride over all rows' output vectors, four per
// thread (gather_staged_kernel: the same with the tile's ids first copied from mapped pinned
// host memory into shared memory). Src yields row r's id as a 64-bit value (~0 for a negative I32). Every row is a bit
// copy (no float conversion), so the op is exact.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_check.hpp"
#include "dtype.hpp"
#include "kernels/elementwise.cuh"
#include "kernels/embedding.cuh"

namespace ferrum::cuda::kernels {

using namespace dev;

namespace {

// Host ids passed by value (M of them at most); kernel parameter space is read through the
// constant cache (__grid_constant__ keeps the array in parameter space even when indexed at run
// time). A small M keeps the decode-size launch's parameter block small.
template <int M>
struct HostIds {
  uint32_t id[M];
  __device__ uint64_t operator()(uint64_t r) const { return id[r]; }
};
static_assert(sizeof(HostIds<kHostIdsPerLaunch>) + 64 <= 4096, "kernel parameters must stay within the portable 4 KB");
constexpr uint64_t kSmallHostIds = 16;

struct DevU32 {
  const uint32_t* p;
  __device__ uint64_t operator()(uint64_t r) const { return p[r]; }
};
struct DevI32 {
  const int32_t* p;
  __device__ uint64_t operator()(uint64_t r) const {
    const int32_t v = p[r];
    return v < 0 ? ~uint64_t{0} : static_cast<uint64_t>(v);
  }
};

// Each block copies tiles of kGatherUnroll · blockDim output vectors; thread x of a tile owns
// vectors tile + x + k·blockDim (k < kGatherUnroll) and issues all their loads before the
// stores (64 bytes in flight per thread). The flat index g = r·dv + c is split with a division
// in Idx (32 bits when the vector count allows); the id read is a broadcast within the row's
// threads (constant cache or L1).
constexpr int kGatherUnroll = 4;

template <class T, int N, class Src, class Idx>
__global__ void gather_kernel(const T* __restrict__ table, uint64_t vocab, T* __restrict__ out, Idx dv, Idx total,
                              const __grid_constant__ Src src) {
  using V = Vec<T, N>;
  const Idx tile = static_cast<Idx>(blockDim.x) * kGatherUnroll;
  for (Idx base = static_cast<Idx>(blockIdx.x) * tile; base < total; base += static_cast<Idx>(gridDim.x) * tile) {
    V x[kGatherUnroll];
#pragma unroll
    for (int k = 0; k < kGatherUnroll; ++k) {
      const Idx g = base + threadIdx.x + static_cast<Idx>(k) * blockDim.x;
      if (g < total) {
        const Idx r = g / dv, c = g - r * dv;
        const uint64_t id = src(r);
        if (id < vocab) {
          x[k] = reinterpret_cast<const V*>(table)[id * dv + c];
        } else {
#pragma unroll
          for (int j = 0; j < N; ++j) x[k].v[j] = from_f<T>(0.0f);  // +0.0
        }
      }
    }
#pragma unroll
    for (int k = 0; k < kGatherUnroll; ++k) {
      const Idx g = base + threadIdx.x + static_cast<Idx>(k) * blockDim.x;
      if (g < total) reinterpret_cast<V*>(out)[g] = x[k];
    }
  }
}

template <class T, class Src>
Status launch_gather(const void* table, uint64_t vocab, void* out, uint64_t dim, uint64_t rows, const Src& src,
                     cudaStream_t stream) {
  constexpr int NV = kVec<T>;
  const bool vec = dim % NV == 0 && aligned16(table) && aligned16(out);
  const uint64_t dv = vec ? dim / NV : dim, total = rows * dv;
  const auto* t = static_cast<const T*>(table);
  auto* o = static_cast<T*>(out);
  const unsigned blocks = blocks_for(total, uint64_t{kThreads} * kGatherUnroll);
  (void)cudaGetLastError();
  if (total < (uint64_t{1} << 31)) {
    if (vec) gather_kernel<T, NV, Src, uint32_t><<<blocks, kThreads, 0, stream>>>(t, vocab, o, uint32_t(dv), uint32_t(total), src);
    else gather_kernel<T, 1, Src, uint32_t><<<blocks, kThreads, 0, stream>>>(t, vocab, o, uint32_t(dv), uint32_t(total), src);
  } else {
    if (vec) gather_kernel<T, NV, Src, uint64_t><<<blocks, kThreads, 0, stream>>>(t, vocab, o, dv, total, src);
    else gather_kernel<T, 1, Src, uint64_t><<<blocks, kThreads, 0, stream>>>(t, vocab, o, dv, total, src);
  }
  FERRUM_CUDA_LAUNCH_CHECK("gather_kernel");
  return ok_status();
}

// Ids in pinned host memory read by the device (mapped; the glue's staging slot): each block
// first copies the ids of its tile's rows into shared memory (one coalesced read over the
// bus per 32 ids instead of one per warp-vector), then gathers like gather_kernel. The ids
// were checked on the host (< vocab), so no range check here.
constexpr int kStagedTile = kThreads * kGatherUnroll;  // vectors per tile = max rows per tile
template <class T, int N, class Idx>
__global__ void __launch_bounds__(kThreads) gather_staged_kernel(const T* __restrict__ table, T* __restrict__ out,
                                                                 Idx dv, Idx total, const uint32_t* __restrict__ ids) {
  using V = Vec<T, N>;
  __shared__ uint32_t sid[kStagedTile];
  const Idx tile = static_cast<Idx>(kStagedTile);
  for (Idx base = static_cast<Idx>(blockIdx.x) * tile; base < total; base += static_cast<Idx>(gridDim.x) * tile) {
    const Idx end = total - base < tile ? total : base + tile;
    const Idx r0 = base / dv, nr = (end - 1) / dv - r0 + 1;  // nr <= tile
    for (Idx i = threadIdx.x; i < nr; i += kThreads) sid[i] = ids[r0 + i];
    __syncthreads();
    V x[kGatherUnroll];
#pragma unroll
    for (int k = 0; k < kGatherUnroll; ++k) {
      const Idx g = base + threadIdx.x + static_cast<Idx>(k) * kThreads;
      if (g < end) {
        const Idx r = g / dv, c = g - r * dv;
        x[k] = reinterpret_cast<const V*>(table)[static_cast<uint64_t>(sid[r - r0]) * dv + c];
      }
    }
#pragma unroll
    for (int k = 0; k < kGatherUnroll; ++k) {
      const Idx g = base + threadIdx.x + static_cast<Idx>(k) * kThreads;
      if (g < end) reinterpret_cast<V*>(out)[g] = x[k];
    }
    __syncthreads();  // sid is rewritten by the next tile
  }
}

template <class T, int M>
Status launch_host_chunk(const void* table, const uint32_t* ids, uint64_t cnt, void* out, uint64_t dim,
                         cudaStream_t stream) {
  HostIds<M> chunk;
  std::copy(ids, ids + cnt, chunk.id);
  std::fill(chunk.id + cnt, chunk.id + M, 0u);  // unread; defined bytes
  // vocab = ~0: the ids were checked on the host.
  return launch_gather<T>(table, ~uint64_t{0}, out, dim, cnt, chunk, stream);
}

}  // namespace

Status embedding_host_ids(int32_t dtype, const void* table, const uint32_t* ids, uint64_t n, void* out,
                          uint64_t dim, cudaStream_t stream) noexcept {
  if (n == 0 || dim == 0) return ok_status();
  return dispatch_float(dtype, "embedding_lookup", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    if (n <= kSmallHostIds) return launch_host_chunk<T, kSmallHostIds>(table, ids, n, out, dim, stream);
    for (uint64_t i0 = 0; i0 < n; i0 += kHostIdsPerLaunch) {
      const uint64_t cnt = std::min<uint64_t>(kHostIdsPerLaunch, n - i0);
      Status st = launch_host_chunk<T, kHostIdsPerLaunch>(table, ids + i0, cnt, static_cast<T*>(out) + i0 * dim,
                                                          dim, stream);
      if (!st.ok()) return st;
    }
    return ok_status();
  });
}

Status embedding_mapped_ids(int32_t dtype, const void* table, const uint32_t* ids, uint64_t n, void* out,
                            uint64_t dim, cudaStream_t stream) noexcept {
  if (n == 0 || dim == 0) return ok_status();
  return dispatch_float(dtype, "embedding_lookup", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    constexpr int NV = kVec<T>;
    const bool vec = dim % NV == 0 && aligned16(table) && aligned16(out);
    const uint64_t dv = vec ? dim / NV : dim, total = n * dv;
    const auto* t = static_cast<const T*>(table);
    auto* o = static_cast<T*>(out);
    const unsigned blocks = blocks_for(total, uint64_t{kStagedTile});
    (void)cudaGetLastError();
    if (total < (uint64_t{1} << 31)) {
      if (vec) gather_staged_kernel<T, NV, uint32_t><<<blocks, kThreads, 0, stream>>>(t, o, uint32_t(dv), uint32_t(total), ids);
      else gather_staged_kernel<T, 1, uint32_t><<<blocks, kThreads, 0, stream>>>(t, o, uint32_t(dv), uint32_t(total), ids);
    } else {
      if (vec) gather_staged_kernel<T, NV, uint64_t><<<blocks, kThreads, 0, stream>>>(t, o, dv, total, ids);
      else gather_staged_kernel<T, 1, uint64_t><<<blocks, kThreads, 0, stream>>>(t, o, dv, total, ids);
    }
    FERRUM_CUDA_LAUNCH_CHECK("gather_staged_kernel");
    return ok_status();
  });
}

Status embedding_dev_ids(int32_t dtype, const void* table, uint64_t vocab, const void* ids, int32_t ids_dtype,
                         uint64_t n, void* out, uint64_t dim, cudaStream_t stream) noexcept {
  if (n == 0 || dim == 0) return ok_status();
  return dispatch_float(dtype, "embedding_lookup_dev", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    if (ids_dtype == FERRUM_DTYPE_I32)
      return launch_gather<T>(table, vocab, out, dim, n, DevI32{static_cast<const int32_t*>(ids)}, stream);
    if (ids_dtype == FERRUM_DTYPE_U32)
      return launch_gather<T>(table, vocab, out, dim, n, DevU32{static_cast<const uint32_t*>(ids)}, stream);
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "embedding_lookup_dev: ids dtype %d is not U32 or I32",
                       static_cast<int>(ids_dtype));
  });
}

}  // namespace ferrum::cuda::kernels
