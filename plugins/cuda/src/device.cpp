#include "device.hpp"

#include <cuda_runtime_api.h>

#include "cuda_check.hpp"

namespace ferrum::cuda {

std::string cuda_version_string(int version) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d.%d", version / 1000, (version % 1000) / 10);
  return buf;
}

Status probe(int32_t& score, std::string& reason) noexcept {
  score = 0;
  try {
    reason.clear();
    int driver = 0;
    const cudaError_t drv_err = cudaDriverGetVersion(&driver);
    if (drv_err != cudaSuccess || driver == 0) {
      (void)cudaGetLastError();
      reason = "no CUDA device (no CUDA driver: cudaDriverGetVersion: ";
      reason += drv_err != cudaSuccess ? cudaGetErrorString(drv_err) : "reports no driver installed";
      reason += ")";
      return ok_status();
    }
    if (driver / 1000 < CUDART_VERSION / 1000) {
      reason = "CUDA driver too old: driver supports " + cuda_version_string(driver) +
               ", plugin built for runtime " + cuda_version_string(CUDART_VERSION);
      return ok_status();
    }
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaErrorInsufficientDriver) {
      (void)cudaGetLastError();
      reason = "CUDA driver too old: driver supports " + cuda_version_string(driver) +
               ", plugin built for runtime " + cuda_version_string(CUDART_VERSION) +
               " (cudaGetDeviceCount: " + cudaGetErrorString(err) + ")";
      return ok_status();
    }
    if (err != cudaSuccess || count <= 0) {
      (void)cudaGetLastError();
      reason = "no CUDA device (cudaGetDeviceCount: ";
      reason += err != cudaSuccess ? cudaGetErrorString(err) : "0 devices";
      reason += ")";
      return ok_status();
    }
    int usable = 0;
    int best_major = 0, best_minor = 0;
    for (int d = 0; d < count; ++d) {
      int major = 0, minor = 0;
      if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d) != cudaSuccess ||
          cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, d) != cudaSuccess) {
        (void)cudaGetLastError();
        continue;
      }
      if (major > best_major || (major == best_major && minor > best_minor)) {
        best_major = major;
        best_minor = minor;
      }
      if (major >= kMinComputeMajor) ++usable;
    }
    if (usable == 0) {
      reason = "no usable CUDA device: " + std::to_string(count) +
               " device(s), highest compute capability " + std::to_string(best_major) + "." +
               std::to_string(best_minor) + ", plugin needs " + std::to_string(kMinComputeMajor) +
               ".0 or newer";
      return ok_status();
    }
    score = 100;
    return ok_status();
  } catch (...) {
    score = 0;
    return make_status(FERRUM_STATUS_OUT_OF_MEMORY, "probe: out of host memory");
  }
}

Status device_count(int32_t& count) noexcept {
  count = 0;
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
    (void)cudaGetLastError();
    return ok_status();
  }
  FERRUM_CUDA_CHECK(err);
  count = static_cast<int32_t>(n);
  return ok_status();
}

Status device_props(int32_t ordinal, DeviceProps& props) noexcept {
  int32_t count = 0;
  FERRUM_RETURN_IF_ERROR(device_count(count));
  if (ordinal < 0 || ordinal >= count) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT,
                       "device_props: ordinal %d out of range (%d CUDA device(s))",
                       static_cast<int>(ordinal), static_cast<int>(count));
  }
  cudaDeviceProp p{};
  FERRUM_CUDA_CHECK(cudaGetDeviceProperties(&p, ordinal));
  try {
    props.name = p.name;
  } catch (...) {
    return make_status(FERRUM_STATUS_OUT_OF_MEMORY, "device_props: out of host memory");
  }
  props.cc_major = p.major;
  props.cc_minor = p.minor;
  props.total_memory = static_cast<uint64_t>(p.totalGlobalMem);
  props.sm_count = p.multiProcessorCount;
  return ok_status();
}

}  // namespace ferrum::cuda
