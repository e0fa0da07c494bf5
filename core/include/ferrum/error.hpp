// ferrum::Error — the one exception type of the C++ facade and loader.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <ferrum/export.hpp>
#include <ferrum/ferrum_base.h>

namespace ferrum {

enum class ErrorCode : int32_t {
  unsupported = FERRUM_STATUS_UNSUPPORTED,
  invalid_argument = FERRUM_STATUS_INVALID_ARGUMENT,
  out_of_memory = FERRUM_STATUS_OUT_OF_MEMORY,
  device_error = FERRUM_STATUS_DEVICE_ERROR,
  abi_mismatch = FERRUM_STATUS_ABI_MISMATCH,
  internal = FERRUM_STATUS_INTERNAL,
  load_failed = 100,   // no plugin could be loaded as asked (message lists every candidate)
  config_error = 101,  // FERRUM_CONFIG / config file / env value is malformed
};

// Name of a code ("unsupported", "invalid_argument", ...).
FERRUM_API const char* to_string(ErrorCode code) noexcept;

// Maps a ferrum_status (non-zero) to its ErrorCode; unknown values map to internal.
FERRUM_API ErrorCode error_code_of(ferrum_status status) noexcept;

class FERRUM_API Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace ferrum
