// Shared by the libFuzzer harnesses: the input reader, saturating size arithmetic, a private
// scratch directory, the sanitizer defaults and the one "unacceptable outcome" report.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <system_error>

#include <ferrum/error.hpp>

namespace ferrum::fuzz {

// Prints what went wrong and aborts, so libFuzzer records the input as a crash.
[[noreturn]] inline void unacceptable(std::string_view harness, std::string_view what) {
  std::fprintf(stderr, "\n%.*s: UNACCEPTABLE OUTCOME: %.*s\n", static_cast<int>(harness.size()),
               harness.data(), static_cast<int>(what.size()), what.data());
  std::fflush(stderr);
  std::abort();
}

// Runs body(); OK or ferrum::Error are the only acceptable outcomes. `allowed` lists the
// ErrorCodes an Error may carry (empty: any). True when body() returned.
template <class F>
bool expect_ok_or_error(std::string_view harness, F&& body,
                        std::initializer_list<ErrorCode> allowed = {}) {
  try {
    body();
    return true;
  } catch (const Error& e) {
    if (allowed.size() == 0) return false;
    for (ErrorCode c : allowed)
      if (e.code() == c) return false;
    unacceptable(harness, std::string("ferrum::Error with unexpected code ") + to_string(e.code()) +
                              ": " + e.what());
  } catch (const std::exception& e) {
    unacceptable(harness, std::string("exception other than ferrum::Error: ") + e.what());
  } catch (...) {
    unacceptable(harness, "non-standard exception");
  }
}

// Sequential little-endian reader over the fuzz input; reads past the end give 0.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  uint8_t byte() { return p_ < end_ ? *p_++ : 0; }
  uint64_t raw(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{byte()} << (8 * i);
    return v;
  }
  const uint8_t* rest() const { return p_; }
  size_t left() const { return static_cast<size_t>(end_ - p_); }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// Saturating unsigned arithmetic for the harness's own size bounds (never wraps).
struct S {
  uint64_t v;
  explicit S(uint64_t x) : v(x) {}
  friend S operator+(S a, S b) { return S(a.v > UINT64_MAX - b.v ? UINT64_MAX : a.v + b.v); }
  friend S operator*(S a, S b) {
    if (a.v == 0 || b.v == 0) return S(0);
    return S(a.v > UINT64_MAX / b.v ? UINT64_MAX : a.v * b.v);
  }
  friend S operator/(S a, S b) { return S(b.v == 0 ? a.v : a.v / b.v); }
};

// A private directory under $TMPDIR (else /dev/shm, else /tmp), made once per process, kept for
// its lifetime. tmpfs matters: ext4 flushes a rewritten file on close, 100x slower.
inline const std::string& scratch_dir() {
  struct Dir {
    std::string path;
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir{[] {
    const char* env = std::getenv("TMPDIR");
    std::string base = env && *env ? env : access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/ferrum-fuzz-XXXXXX";
    if (!mkdtemp(tmpl.data())) unacceptable("fuzz", "cannot create a scratch directory");
    return tmpl;
  }()};
  return dir.path;
}

// Writes `size` bytes to `path` (truncating). False on failure.
inline bool write_file(const std::string& path, const void* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const bool ok = std::fwrite(data, 1, size, f) == size;
  return std::fclose(f) == 0 && ok;
}

}  // namespace ferrum::fuzz
