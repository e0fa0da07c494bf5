// libFuzzer harness: the JSON config file parser (core/src/loader/config.cpp).
//
// The input is written to a file and read by read_config_file, the function behind
// $FERRUM_CONFIG and the default config locations. Acceptable outcomes: a Config, or
// ferrum::Error(config_error). Anything else (another exception, a crash, a sanitizer report)
// is a finding. A returned Config must also be what the documented keys allow.
#include <cstdint>
#include <string>

#include "config.hpp"
#include "fuzz_support.hpp"
#include "log.hpp"

namespace {

constexpr const char* kHarness = "fuzz_config";

void check_config(const ferrum::detail::Config& c, const std::string& path) {
  using ferrum::fuzz::unacceptable;
  if (c.path != path) unacceptable(kHarness, "Config::path is not the file read");
  if (c.log_level && !ferrum::detail::parse_log_level(*c.log_level))
    unacceptable(kHarness, "accepted a log_level that is not a level: " + *c.log_level);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = ferrum::fuzz::scratch_dir() + "/config.json";
  if (!ferrum::fuzz::write_file(path, data, size))
    ferrum::fuzz::unacceptable(kHarness, "cannot write " + path);
  ferrum::fuzz::expect_ok_or_error(
      kHarness, [&] { check_config(ferrum::detail::read_config_file(path), path); },
      {ferrum::ErrorCode::config_error});
  return 0;
}
