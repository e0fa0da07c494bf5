// libFuzzer harness: backend-spec parsing and selection (ferrum::load_backend, the function
// behind Backend::load, FERRUM_BACKEND and the config's "backend" key).
//
// The input is the spec ("cpu", "cpu:0", "cuda:1", "auto", "./plugins/libferrum-cpu.so", ...).
// It runs against a private plugin directory (FERRUM_PLUGIN_PATH) holding the CPU plugin, an
// empty file and a text file named like plugins, and no config file. Acceptable outcomes: a
// loaded backend that really is the CPU plugin on an existing device, or
// ferrum::Error(load_failed / config_error). Specs that would make dlopen search the system
// (a path outside the scratch directory, a bare "x.so") are skipped: loading arbitrary system
// libraries is not what this harness tests.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include <ferrum/loader.hpp>

#include "fuzz_support.hpp"

#ifndef FERRUM_FUZZ_CPU_PLUGIN
#error "FERRUM_FUZZ_CPU_PLUGIN (the path of libferrum-cpu.so) must be defined"
#endif

namespace {

constexpr const char* kHarness = "fuzz_backend_spec";
namespace fs = std::filesystem;

// Sets up the scratch directory once and keeps the CPU plugin loaded (so that every iteration
// finds it in the loader's registry instead of dlopen-ing it again).
struct Sandbox {
  ferrum::LoadedBackend keep;
  Sandbox() {
    const std::string& dir = ferrum::fuzz::scratch_dir();
    const std::string plugins = dir + "/plugins";
    fs::create_directories(plugins);
    fs::create_symlink(FERRUM_FUZZ_CPU_PLUGIN, plugins + "/libferrum-cpu.so");
    ferrum::fuzz::write_file(plugins + "/libferrum-empty.so", "", 0);
    const char text[] = "not a shared object\n";
    ferrum::fuzz::write_file(plugins + "/libferrum-text.so", text, sizeof text - 1);
    fs::create_directories(dir + "/xdg");
    if (chdir(dir.c_str()) != 0) ferrum::fuzz::unacceptable(kHarness, "cannot chdir to " + dir);
    setenv("FERRUM_PLUGIN_PATH", plugins.c_str(), 1);
    setenv("XDG_CONFIG_HOME", (dir + "/xdg").c_str(), 1);
    setenv("HOME", dir.c_str(), 1);
    setenv("FERRUM_LOG_LEVEL", "off", 1);
    unsetenv("FERRUM_CONFIG");
    unsetenv("FERRUM_BACKEND");
    keep = ferrum::load_backend("cpu");
  }
};

// True when the loader would hand `spec` to dlopen as a path that may leave the scratch
// directory (mirrors the documented rule: a '/' or a ".so" suffix makes a spec a path).
bool may_load_outside(std::string_view spec) {
  const bool pathlike = spec.find('/') != std::string_view::npos ||
                        spec.find(".so") != std::string_view::npos;
  if (!pathlike) return false;
  return spec.substr(0, 2) != "./" || spec.find("..") != std::string_view::npos;
}

void check_loaded(const ferrum::LoadedBackend& b, std::string_view spec) {
  using ferrum::fuzz::unacceptable;
  if (!b.library) unacceptable(kHarness, "load_backend returned no library for '" + std::string(spec) + "'");
  if (ferrum::name_of(*b.library) != "cpu")
    unacceptable(kHarness, "spec '" + std::string(spec) + "' loaded '" + ferrum::name_of(*b.library) +
                               "', which is not the CPU plugin");
  if (b.device != 0)
    unacceptable(kHarness, "spec '" + std::string(spec) + "' selected device " +
                               std::to_string(b.device) + " of the one-device CPU plugin");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Sandbox sandbox;
  const std::string_view spec(reinterpret_cast<const char*>(data), size);
  if (may_load_outside(spec)) return -1;  // not added to the corpus
  ferrum::fuzz::expect_ok_or_error(
      kHarness, [&] { check_loaded(ferrum::load_backend(spec), spec); },
      {ferrum::ErrorCode::load_failed, ferrum::ErrorCode::config_error});
  return 0;
}
