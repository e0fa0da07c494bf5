// ferrum CUDA plugin — row gathers (declared in embedding.cuh).
//
// gather_kernel<T, N, Src>: grid.y walks output rows (stride gridDim.y), grid.x × threads walk
// the row's vectors. Src yields row r's id as a 64-bit value (~0 for a negative I32), read once
// per row. Every row is a bit copy (no float conversion), so the op is exact.
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

// Host ids passed by value; kernel parameter space is read through the constant cache
// (__grid_constant__ keeps the array in parameter space even when indexed at run time).
struct HostIds {
  uint32_t id[kHostIdsPerLaunch];
  __device__ uint64_t operator()(uint64_t r) const { return id[r]; }
};
static_assert(sizeof(HostIds) + 64 <= 4096, "kernel parameters must stay within the portable 4 KB");

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

template <class T, int N, class Src>
__global__ void gather_kernel(const T* __restrict__ table, uint64_t vocab, T* __restrict__ out, uint64_t dv,
                              uint64_t rows, const __grid_constant__ Src src) {
  using V = Vec<T, N>;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const uint64_t id = src(r);
    V* dst = reinterpret_cast<V*>(out) + r * dv;
    if (id < vocab) {
      const V* row = reinterpret_cast<const V*>(table) + id * dv;
      for (uint64_t c = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < dv; c += stride)
        dst[c] = row[c];
    } else {
      V z;
#pragma unroll
      for (int j = 0; j < N; ++j) z.v[j] = from_f<T>(0.0f);  // +0.0
      for (uint64_t c = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < dv; c += stride)
        dst[c] = z;
    }
  }
}

template <class T, class Src>
Status launch_gather(const void* table, uint64_t vocab, void* out, uint64_t dim, uint64_t rows, const Src& src,
                     cudaStream_t stream) {
  constexpr int NV = kVec<T>;
  const bool vec = dim % NV == 0 && aligned16(table) && aligned16(out);
  const uint64_t dv = vec ? dim / NV : dim;
  const dim3 grid(static_cast<unsigned>(std::clamp<uint64_t>((dv + kThreads - 1) / kThreads, 1, 1024)),
                  static_cast<unsigned>(std::min<uint64_t>(rows, kMaxBlocks)));
  const auto* t = static_cast<const T*>(table);
  auto* o = static_cast<T*>(out);
  (void)cudaGetLastError();
  if (vec) {
    gather_kernel<T, NV, Src><<<grid, kThreads, 0, stream>>>(t, vocab, o, dv, rows, src);
  } else {
    gather_kernel<T, 1, Src><<<grid, kThreads, 0, stream>>>(t, vocab, o, dv, rows, src);
  }
  FERRUM_CUDA_LAUNCH_CHECK("gather_kernel");
  return ok_status();
}

}  // namespace

Status embedding_host_ids(int32_t dtype, const void* table, const uint32_t* ids, uint64_t n, void* out,
                          uint64_t dim, cudaStream_t stream) noexcept {
  if (n == 0 || dim == 0) return ok_status();
  return dispatch_float(dtype, "embedding_lookup", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    HostIds chunk;
    for (uint64_t i0 = 0; i0 < n; i0 += kHostIdsPerLaunch) {
      const uint64_t cnt = std::min<uint64_t>(kHostIdsPerLaunch, n - i0);
      std::copy(ids + i0, ids + i0 + cnt, chunk.id);
      std::fill(chunk.id + cnt, chunk.id + kHostIdsPerLaunch, 0u);  // unread; defined bytes
      // vocab = ~0: the ids were checked on the host.
      FERRUM_RETURN_IF_ERROR(launch_gather<T>(table, ~uint64_t{0}, static_cast<T*>(out) + i0 * dim, dim, cnt,
                                              chunk, stream));
    }
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
