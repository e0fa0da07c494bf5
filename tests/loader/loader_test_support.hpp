// Shared helpers of the loader tests: fixture paths, temporary 0700 directories, scoped
// environment variables, an environment isolated from the user's.
#pragma once

#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <iterator>
#include <string_view>
#include <sys/stat.h>
#include <vector>

#include <ferrum/error.hpp>
#include <ferrum/loader.hpp>

namespace ferrum_test {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

inline const std::string kFixtureDir = FERRUM_TEST_FIXTURE_DIR;
inline const std::string kPluginDir = FERRUM_TEST_PLUGIN_DIR;
inline const std::string kCexample = kPluginDir + "/libferrum-cexample.so";

inline std::string fixture_dir(const std::string& variant) { return kFixtureDir + "/" + variant; }
inline std::string fixture_path(const std::string& variant) {
  return fixture_dir(variant) + "/libferrum-fixture_" + variant + ".so";
}

// A fresh temporary directory (mode 0700, as mkdtemp makes it: the loader refuses plugins in
// directories that group or others can write), removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ferrum-loader-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
  std::string write(const std::string& name, const std::string& text) const {
    fs::path p = path / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
  // A copy of the file `src` as `name` in this directory, with permission bits `mode`.
  std::string copy(const std::string& src, const std::string& name, mode_t mode = 0755) const {
    fs::path p = path / name;
    fs::copy_file(src, p, fs::copy_options::overwrite_existing);
    REQUIRE(::chmod(p.c_str(), mode) == 0);
    return p.string();
  }
};

// The whole file.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Sets (or unsets, with nullopt) environment variables; restores them at scope exit.
class Env {
 public:
  Env& set(const std::string& name, std::optional<std::string> value) {
    if (!saved_.count(name)) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    if (value) setenv(name.c_str(), value->c_str(), 1);
    else unsetenv(name.c_str());
    return *this;
  }
  ~Env() {
    for (auto& [name, value] : saved_) {
      if (value) setenv(name.c_str(), value->c_str(), 1);
      else unsetenv(name.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

// An environment isolated from the user's: no backend, no config, the given plugin path.
struct Isolated {
  TempDir xdg;
  Env env;
  explicit Isolated(const std::string& plugin_path) {
    env.set("FERRUM_BACKEND", std::nullopt)
        .set("FERRUM_CONFIG", std::nullopt)
        .set("FERRUM_LOG_LEVEL", std::nullopt)
        .set("FERRUM_ALLOW_INSECURE_PLUGINS", std::nullopt)
        .set("XDG_CONFIG_HOME", xdg.str())
        .set("FERRUM_PLUGIN_PATH", plugin_path);
  }
};

inline ferrum::PluginCandidate only_candidate(const std::string& variant) {
  Isolated iso(fixture_dir(variant));
  auto cs = ferrum::discover_plugins(true);
  REQUIRE(cs.size() == 1);
  CHECK(cs[0].path == fixture_path(variant));
  return cs[0];
}

inline ferrum::Error load_error(std::string_view spec) {
  try {
    (void)ferrum::load_backend(spec);
  } catch (const ferrum::Error& e) {
    return e;
  }
  FAIL("load_backend('" << std::string(spec) << "') did not throw");
  return ferrum::Error(ferrum::ErrorCode::internal, "unreachable");
}

inline bool is_loaded(const std::string& path) {
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (!h) return false;
  dlclose(h);
  return true;
}

}  // namespace ferrum_test
