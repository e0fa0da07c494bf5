#include "context.hpp"

#include "cuda_check.hpp"
#include "device.hpp"

namespace ferrum::cuda {

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) {
    if (cudaSetDevice(previous_) != cudaSuccess) (void)cudaGetLastError();
  }
}

Status DeviceGuard::enter(int device) noexcept {
  int current = -1;
  FERRUM_CUDA_CHECK(cudaGetDevice(&current));
  if (current == device) return ok_status();
  FERRUM_CUDA_CHECK(cudaSetDevice(device));
  if (previous_ < 0) previous_ = current;
  return ok_status();
}

namespace {

Status create_resources(int device, DeviceContext& ctx, cudaStream_t external) noexcept {
  if (external) {
    ctx.stream = external;
    ctx.owns_stream = false;
  } else {
    FERRUM_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking));
  }
  FERRUM_CUBLAS_CHECK(cublasLtCreate(&ctx.lt));
  FERRUM_CUDA_CHECK(cudaMalloc(&ctx.workspace, kGemmWorkspaceBytes));
  ctx.workspace_bytes = kGemmWorkspaceBytes;
  for (StagingSlot& slot : ctx.staging) {
    FERRUM_CUDA_CHECK(cudaHostAlloc(&slot.host, kStagingSlotBytes, cudaHostAllocPortable));
    FERRUM_CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
    slot.pending = false;
  }
  ctx.next_staging_slot = 0;
  (void)device;
  return ok_status();
}

}  // namespace

Status create(int device, DeviceContext& ctx, cudaStream_t external) noexcept {
  int32_t count = 0;
  FERRUM_RETURN_IF_ERROR(device_count(count));
  if (device < 0 || device >= count) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT,
                       "create context: device ordinal %d out of range (%d CUDA device(s))", device,
                       static_cast<int>(count));
  }
  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(device));
  ctx = DeviceContext{};
  ctx.device = device;
  Status st = create_resources(device, ctx, external);
  if (!st.ok()) (void)destroy(ctx);
  return st;
}

void clear_gemm_plans(DeviceContext& ctx) noexcept {
  for (auto& [key, plan] : ctx.gemm_plans) {
    (void)key;
    if (plan.c_layout) (void)cublasLtMatrixLayoutDestroy(plan.c_layout);
    if (plan.b_layout) (void)cublasLtMatrixLayoutDestroy(plan.b_layout);
    if (plan.a_layout) (void)cublasLtMatrixLayoutDestroy(plan.a_layout);
    if (plan.op) (void)cublasLtMatmulDescDestroy(plan.op);
  }
  ctx.gemm_plans.clear();
}

Status destroy(DeviceContext& ctx) noexcept {
  if (ctx.device < 0) return ok_status();
  Status first;
  auto note = [&first](Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  auto check_cuda = [&](cudaError_t err, const char* stmt) {
    if (err != cudaSuccess) note(cuda_error_status(err, stmt, __FILE__, __LINE__));
  };

  DeviceGuard guard;
  note(guard.enter(ctx.device));
  if (ctx.stream) check_cuda(cudaStreamSynchronize(ctx.stream), "cudaStreamSynchronize(ctx.stream)");
  clear_gemm_plans(ctx);
  for (StagingSlot& slot : ctx.staging) {
    if (slot.done) check_cuda(cudaEventDestroy(slot.done), "cudaEventDestroy(slot.done)");
    if (slot.host) check_cuda(cudaFreeHost(slot.host), "cudaFreeHost(slot.host)");
    slot = StagingSlot{};
  }
  if (ctx.workspace) check_cuda(cudaFree(ctx.workspace), "cudaFree(ctx.workspace)");
  if (ctx.lt) {
    const cublasStatus_t st = cublasLtDestroy(ctx.lt);
    if (st != CUBLAS_STATUS_SUCCESS) note(cublas_error_status(st, "cublasLtDestroy(ctx.lt)", __FILE__, __LINE__));
  }
  if (ctx.stream && ctx.owns_stream) check_cuda(cudaStreamDestroy(ctx.stream), "cudaStreamDestroy(ctx.stream)");
  ctx.stream = nullptr;
  ctx.owns_stream = true;
  ctx.lt = nullptr;
  ctx.workspace = nullptr;
  ctx.workspace_bytes = 0;
  ctx.next_staging_slot = 0;
  ctx.device = -1;
  return first;
}

Status sync(DeviceContext& ctx) noexcept {
  if (ctx.device < 0 || ctx.stream == nullptr) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "sync: context was not created");
  }
  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(ctx.device));
  const cudaError_t err = cudaStreamSynchronize(ctx.stream);
  if (err != cudaSuccess) {
    Status st = cuda_error_status(err, "cudaStreamSynchronize(ctx.stream)", __FILE__, __LINE__);
    st.code = FERRUM_STATUS_DEVICE_ERROR;  // asynchronous failures are device errors (§0.12)
    return st;
  }
  return ok_status();
}

}  // namespace ferrum::cuda
