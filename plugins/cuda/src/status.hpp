// ferrum CUDA plugin — Status: the error value every device-layer function returns.
//
// The device layer never throws, exits or aborts. A Status carries one of the
// FERRUM_STATUS_* codes of abi/include/ferrum/ferrum_base.h and, on failure, a detail
// message that the ABI glue hands to the host through error_detail.
#pragma once

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

#include "ferrum/ferrum_base.h"

namespace ferrum::cuda {

struct Status {
  int32_t code = FERRUM_STATUS_OK;
  std::string message;

  [[nodiscard]] bool ok() const noexcept { return code == FERRUM_STATUS_OK; }
};

[[nodiscard]] inline Status ok_status() noexcept { return Status{}; }

// printf-style error constructor. noexcept: if the message cannot be allocated the status
// keeps its code and an empty message.
[[nodiscard]] inline Status make_status(int32_t code, const char* fmt, ...) noexcept
    __attribute__((format(printf, 2, 3)));

inline Status make_status(int32_t code, const char* fmt, ...) noexcept {
  Status s;
  s.code = code;
  char small[512];
  va_list args;
  va_start(args, fmt);
  va_list copy;
  va_copy(copy, args);
  const int len = std::vsnprintf(small, sizeof small, fmt, args);
  va_end(args);
  try {
    if (len < 0) {
      s.message = "(unformattable error message)";
    } else if (static_cast<size_t>(len) < sizeof small) {
      s.message.assign(small, static_cast<size_t>(len));
    } else {
      s.message.resize(static_cast<size_t>(len) + 1);
      std::vsnprintf(s.message.data(), s.message.size(), fmt, copy);
      s.message.resize(static_cast<size_t>(len));
    }
  } catch (...) {
    s.message.clear();
  }
  va_end(copy);
  return s;
}

}  // namespace ferrum::cuda

// Propagates a non-OK Status to the caller.
#define FERRUM_RETURN_IF_ERROR(expr)                   \
  do {                                                 \
    ::ferrum::cuda::Status ferrum_status_ = (expr);    \
    if (!ferrum_status_.ok()) return ferrum_status_;   \
  } while (0)
