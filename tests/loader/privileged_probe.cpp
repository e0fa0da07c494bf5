// Helper for the trust-boundary test: prints what the loader decides from the environment.
// The test runs a setuid copy of it, where FERRUM_PLUGIN_PATH, FERRUM_BACKEND, FERRUM_CONFIG
// and FERRUM_ALLOW_INSECURE_PLUGINS must be ignored.
#include <cstdio>

#include <ferrum/error.hpp>
#include <ferrum/loader.hpp>

int main() {
  try {
    for (const auto& dir : ferrum::plugin_search_path()) std::printf("dir: %s\n", dir.c_str());
    auto b = ferrum::load_backend();
    std::printf("source: %s\n", b.selection.source.c_str());
  } catch (const ferrum::Error& e) {
    std::printf("error: %s\n", e.what());
  }
  return 0;
}
