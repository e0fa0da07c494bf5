#include <ferrum/error.hpp>
#include <ferrum/export.hpp>

// error.hpp declares these without FERRUM_API; the definitions carry it so that
// libferrum.so (built with hidden visibility) exports them.

namespace ferrum {

FERRUM_API const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::unsupported: return "unsupported";
    case ErrorCode::invalid_argument: return "invalid_argument";
    case ErrorCode::out_of_memory: return "out_of_memory";
    case ErrorCode::device_error: return "device_error";
    case ErrorCode::abi_mismatch: return "abi_mismatch";
    case ErrorCode::internal: return "internal";
    case ErrorCode::load_failed: return "load_failed";
    case ErrorCode::config_error: return "config_error";
  }
  return "unknown";
}

FERRUM_API ErrorCode error_code_of(ferrum_status status) noexcept {
  switch (status) {
    case FERRUM_STATUS_UNSUPPORTED: return ErrorCode::unsupported;
    case FERRUM_STATUS_INVALID_ARGUMENT: return ErrorCode::invalid_argument;
    case FERRUM_STATUS_OUT_OF_MEMORY: return ErrorCode::out_of_memory;
    case FERRUM_STATUS_DEVICE_ERROR: return ErrorCode::device_error;
    case FERRUM_STATUS_ABI_MISMATCH: return ErrorCode::abi_mismatch;
    default: return ErrorCode::internal;
  }
}

}  // namespace ferrum
