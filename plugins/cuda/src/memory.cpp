#include "memory.hpp"

#include <algorithm>
#include <cstring>

#include "cuda_check.hpp"

namespace ferrum::cuda {

namespace {

Status require_context(const DeviceContext& ctx, const char* what) noexcept {
  if (ctx.device < 0 || ctx.stream == nullptr) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "%s: context was not created", what);
  }
  return ok_status();
}

Status require_pointers(const void* dst, const void* src, uint64_t bytes, const char* what) noexcept {
  if (bytes != 0 && (dst == nullptr || src == nullptr)) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "%s: NULL pointer for %llu bytes", what,
                       static_cast<unsigned long long>(bytes));
  }
  return ok_status();
}

}  // namespace

Status alloc(int device, uint64_t bytes, void** ptr) noexcept {
  if (ptr == nullptr) return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "alloc: ptr is NULL");
  *ptr = nullptr;
  if (bytes == 0) return ok_status();
  if (bytes > static_cast<uint64_t>(SIZE_MAX)) {
    return make_status(FERRUM_STATUS_OUT_OF_MEMORY, "alloc: %llu bytes exceed the address space",
                       static_cast<unsigned long long>(bytes));
  }
  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(device));
  const cudaError_t err = cudaMalloc(ptr, static_cast<size_t>(bytes));
  if (err != cudaSuccess) {
    *ptr = nullptr;
    Status st = cuda_error_status(err, "cudaMalloc(ptr, bytes)", __FILE__, __LINE__);
    if (err == cudaErrorMemoryAllocation) {
      return make_status(FERRUM_STATUS_OUT_OF_MEMORY, "alloc of %llu bytes on device %d: %s",
                         static_cast<unsigned long long>(bytes), device, st.message.c_str());
    }
    return st;
  }
  return ok_status();
}

Status free(int device, void* ptr) noexcept {
  if (ptr == nullptr) return ok_status();
  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(device));
  FERRUM_CUDA_CHECK(cudaFree(ptr));
  return ok_status();
}

Status memset_async(DeviceContext& ctx, void* dst, uint64_t bytes) noexcept {
  FERRUM_RETURN_IF_ERROR(require_context(ctx, "memset_async"));
  if (bytes == 0) return ok_status();
  if (dst == nullptr) return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "memset_async: dst is NULL");
  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(ctx.device));
  FERRUM_CUDA_CHECK(cudaMemsetAsync(dst, 0, static_cast<size_t>(bytes), ctx.stream));
  return ok_status();
}

Status h2d_async(DeviceContext& ctx, void* dst, const void* src, uint64_t bytes) noexcept {
  FERRUM_RETURN_IF_ERROR(require_context(ctx, "h2d_async"));
  FERRUM_RETURN_IF_ERROR(require_pointers(dst, src, bytes, "h2d_async"));
  if (bytes == 0) return ok_status();
  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(ctx.device));

  if (bytes > kStagingSlots * kStagingSlotBytes) {
    // Large copy: let the driver stage the pageable source, then wait so that the source
    // may be reused on return.
    FERRUM_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice,
                                      ctx.stream));
    FERRUM_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    return ok_status();
  }

  auto* out = static_cast<char*>(dst);
  const auto* in = static_cast<const char*>(src);
  uint64_t done = 0;
  while (done < bytes) {
    StagingSlot& slot = ctx.staging[ctx.next_staging_slot];
    ctx.next_staging_slot = (ctx.next_staging_slot + 1) % kStagingSlots;
    // The slot may still be the source of an earlier copy: wait until that copy is done.
    if (slot.pending) FERRUM_CUDA_CHECK(cudaEventSynchronize(slot.done));
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(bytes - done, kStagingSlotBytes));
    std::memcpy(slot.host, in + done, chunk);
    FERRUM_CUDA_CHECK(cudaMemcpyAsync(out + done, slot.host, chunk, cudaMemcpyHostToDevice, ctx.stream));
    FERRUM_CUDA_CHECK(cudaEventRecord(slot.done, ctx.stream));
    slot.pending = true;
    done += chunk;
  }
  return ok_status();
}

Status d2h(DeviceContext& ctx, void* dst, const void* src, uint64_t bytes) noexcept {
  FERRUM_RETURN_IF_ERROR(require_context(ctx, "d2h"));
  FERRUM_RETURN_IF_ERROR(require_pointers(dst, src, bytes, "d2h"));
  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(ctx.device));
  if (bytes != 0) {
    FERRUM_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost,
                                      ctx.stream));
  }
  // Always synchronise: a readback reports earlier asynchronous failures (docs/spec.md §0.12).
  FERRUM_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  return ok_status();
}

Status d2d_async(DeviceContext& ctx, void* dst, const void* src, uint64_t bytes) noexcept {
  FERRUM_RETURN_IF_ERROR(require_context(ctx, "d2d_async"));
  FERRUM_RETURN_IF_ERROR(require_pointers(dst, src, bytes, "d2d_async"));
  if (bytes == 0 || dst == src) return ok_status();
  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(ctx.device));
  FERRUM_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice,
                                    ctx.stream));
  return ok_status();
}

}  // namespace ferrum::cuda
