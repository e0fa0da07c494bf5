// ferrum CUDA plugin — error-checking macros for CUDA runtime and cuBLASLt calls.
//
// FERRUM_CUDA_CHECK(expr) / FERRUM_CUBLAS_CHECK(expr) evaluate `expr` once and, on failure,
// RETURN a Status from the enclosing function (which must return Status) naming the
// statement, file, line and the library's error string. FERRUM_CUDA_LAUNCH_CHECK(what) is
// placed after every kernel launch.
//
// Code mapping:
//   CUDA:   cudaErrorMemoryAllocation -> OUT_OF_MEMORY, anything else -> DEVICE_ERROR.
//   cuBLAS: ALLOC_FAILED -> OUT_OF_MEMORY; NOT_SUPPORTED / ARCH_MISMATCH -> UNSUPPORTED
//           (no kernel for this shape/dtype/alignment on this device); INVALID_VALUE /
//           NOT_INITIALIZED -> INTERNAL (arguments are validated before cuBLAS sees them,
//           so cuBLAS rejecting them is a plugin bug); anything else -> DEVICE_ERROR.
//
// On a CUDA failure the helper also calls cudaGetLastError() so that a non-sticky error
// (e.g. a failed cudaMalloc) does not linger in the thread's last-error slot and get
// blamed on the next, unrelated kernel launch. Sticky errors cannot be cleared and keep
// surfacing, as docs/spec.md §0.12 requires.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "status.hpp"

namespace ferrum::cuda {

[[nodiscard]] inline int32_t cuda_error_code(cudaError_t err) noexcept {
  return err == cudaErrorMemoryAllocation ? FERRUM_STATUS_OUT_OF_MEMORY : FERRUM_STATUS_DEVICE_ERROR;
}

[[nodiscard]] inline Status cuda_error_status(cudaError_t err, const char* stmt, const char* file,
                                              int line) noexcept {
  (void)cudaGetLastError();  // drop a non-sticky error so it is reported once
  return make_status(cuda_error_code(err), "%s failed at %s:%d: %s (%s)", stmt, file, line,
                     cudaGetErrorString(err), cudaGetErrorName(err));
}

[[nodiscard]] inline int32_t cublas_error_code(cublasStatus_t st) noexcept {
  switch (st) {
    case CUBLAS_STATUS_ALLOC_FAILED:
      return FERRUM_STATUS_OUT_OF_MEMORY;
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return FERRUM_STATUS_UNSUPPORTED;
    case CUBLAS_STATUS_INVALID_VALUE:
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return FERRUM_STATUS_INTERNAL;
    default:
      return FERRUM_STATUS_DEVICE_ERROR;
  }
}

[[nodiscard]] inline Status cublas_error_status(cublasStatus_t st, const char* stmt, const char* file,
                                                int line) noexcept {
  return make_status(cublas_error_code(st), "%s failed at %s:%d: %s (%s)", stmt, file, line,
                     cublasLtGetStatusString(st), cublasLtGetStatusName(st));
}

// Checks the launch of the kernel just enqueued (configuration errors, missing kernel
// image for this device, or a sticky error from earlier work).
[[nodiscard]] inline Status launch_status(const char* what, const char* file, int line) noexcept {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return ok_status();
  return make_status(cuda_error_code(err), "launch of %s failed at %s:%d: %s (%s)", what, file, line,
                     cudaGetErrorString(err), cudaGetErrorName(err));
}

}  // namespace ferrum::cuda

#define FERRUM_CUDA_CHECK(expr)                                                      \
  do {                                                                               \
    const cudaError_t ferrum_cuda_err_ = (expr);                                     \
    if (ferrum_cuda_err_ != cudaSuccess)                                             \
      return ::ferrum::cuda::cuda_error_status(ferrum_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define FERRUM_CUBLAS_CHECK(expr)                                                        \
  do {                                                                                   \
    const cublasStatus_t ferrum_cublas_st_ = (expr);                                     \
    if (ferrum_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                      \
      return ::ferrum::cuda::cublas_error_status(ferrum_cublas_st_, #expr, __FILE__, __LINE__); \
  } while (0)

// Use right after `kernel<<<...>>>(...)`; `what` names the kernel (a string literal).
#define FERRUM_CUDA_LAUNCH_CHECK(what) \
  FERRUM_RETURN_IF_ERROR(::ferrum::cuda::launch_status(what, __FILE__, __LINE__))
