#include "timer.hpp"

#include "cuda_check.hpp"

namespace ferrum::cuda {

namespace {

Status check_pair(const DeviceContext& ctx, const Timer& timer, const char* what) noexcept {
  if (timer.start == nullptr || timer.end == nullptr) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "%s: timer was not created", what);
  }
  if (ctx.device < 0 || ctx.stream == nullptr) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "%s: context was not created", what);
  }
  if (ctx.device != timer.device) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT,
                       "%s: timer belongs to device %d, context is on device %d", what, timer.device,
                       ctx.device);
  }
  return ok_status();
}

}  // namespace

Status create_timer(DeviceContext& ctx, Timer& timer) noexcept {
  if (ctx.device < 0) return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "make_timer: context was not created");
  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(ctx.device));
  timer = Timer{};
  timer.device = ctx.device;
  cudaError_t err = cudaEventCreateWithFlags(&timer.start, cudaEventDefault);
  if (err == cudaSuccess) err = cudaEventCreateWithFlags(&timer.end, cudaEventDefault);
  if (err != cudaSuccess) {
    Status st = cuda_error_status(err, "cudaEventCreateWithFlags(&event, cudaEventDefault)", __FILE__, __LINE__);
    (void)destroy_timer(timer);
    return st;
  }
  return ok_status();
}

Status destroy_timer(Timer& timer) noexcept {
  if (timer.start == nullptr && timer.end == nullptr) return ok_status();
  Status first;
  DeviceGuard guard;
  first = guard.enter(timer.device);
  for (cudaEvent_t* ev : {&timer.start, &timer.end}) {
    if (*ev == nullptr) continue;
    const cudaError_t err = cudaEventDestroy(*ev);
    if (err != cudaSuccess && first.ok()) first = cuda_error_status(err, "cudaEventDestroy(event)", __FILE__, __LINE__);
    *ev = nullptr;
  }
  timer = Timer{};
  return first;
}

Status record_start(DeviceContext& ctx, Timer& timer) noexcept {
  FERRUM_RETURN_IF_ERROR(check_pair(ctx, timer, "record_start"));
  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(ctx.device));
  timer.has_end = false;  // a new start clears an earlier end mark
  timer.has_start = false;
  FERRUM_CUDA_CHECK(cudaEventRecord(timer.start, ctx.stream));
  timer.has_start = true;
  return ok_status();
}

Status record_end(DeviceContext& ctx, Timer& timer) noexcept {
  FERRUM_RETURN_IF_ERROR(check_pair(ctx, timer, "record_end"));
  if (!timer.has_start) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "record_end: no earlier record_start on this timer");
  }
  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(ctx.device));
  FERRUM_CUDA_CHECK(cudaEventRecord(timer.end, ctx.stream));
  timer.has_end = true;
  return ok_status();
}

Status elapsed_ms(Timer& timer, double& ms) noexcept {
  ms = 0.0;
  if (timer.start == nullptr || timer.end == nullptr) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "elapsed_ms: timer was not created");
  }
  if (!timer.has_start || !timer.has_end) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "elapsed_ms: %s mark missing",
                       !timer.has_start ? "start" : "end");
  }
  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(timer.device));
  // The marks may sit on different streams of the device: wait for both.
  FERRUM_CUDA_CHECK(cudaEventSynchronize(timer.end));
  FERRUM_CUDA_CHECK(cudaEventSynchronize(timer.start));
  float elapsed = 0.0f;
  FERRUM_CUDA_CHECK(cudaEventElapsedTime(&elapsed, timer.start, timer.end));
  ms = elapsed > 0.0f ? static_cast<double>(elapsed) : 0.0;
  return ok_status();
}

}  // namespace ferrum::cuda
