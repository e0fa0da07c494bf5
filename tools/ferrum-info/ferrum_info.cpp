// ferrum-info: lists every plugin candidate with the stage it reached, why it stopped, its
// warnings, versions, devices and op support matrix.
//
// By default each plugin is loaded, probed and initialised in a child process (--isolate), so
// a plugin that crashes, aborts, exits or hangs in its constructors, entry, probe, init or
// shutdown is reported as such and the other plugins are still listed. --no-isolate loads
// them all in this process (discover_plugins(true)).
// Exit status: 0 (even when plugins are rejected); 1 for a config error; 2 for bad usage.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <ferrum/common/op_info_gen.hpp>
#include <ferrum/error.hpp>
#include <ferrum/loader.hpp>

#include "ferrum_tool_cli.hpp"
#include "info_json.hpp"

namespace {

using ferrum::tools::ordered_json;

// ---- output -------------------------------------------------------------------------

void print_ops(const ordered_json& ops) {
  std::vector<std::string_view> families;
  for (const auto& op : ferrum::common::kOps)
    if (std::find(families.begin(), families.end(), op.family) == families.end())
      families.push_back(op.family);
  auto present = [&](std::string_view name) {
    auto it = ops.find(std::string(name));
    return it != ops.end() && it->is_boolean() && it->get<bool>();
  };
  std::printf("   ops\n");
  for (auto fam : families) {
    int have = 0, total = 0;
    for (const auto& op : ferrum::common::kOps)
      if (op.family == fam) ++total, have += present(op.name);
    std::printf("     %-13.*s %3d/%-3d", static_cast<int>(fam.size()), fam.data(), have, total);
    size_t col = 26;
    for (const auto& op : ferrum::common::kOps) {
      if (op.family != fam) continue;
      size_t width = op.name.size() + 3;
      if (col + width > 110) {
        std::printf("\n%26s", "");
        col = 26;
      }
      std::printf(" %s %.*s", present(op.name) ? "\u2713" : "\u2014",
                  static_cast<int>(op.name.size()), op.name.data());
      col += width;
    }
    std::printf("\n");
  }
}

void print_human(const ordered_json& plugins, const std::vector<std::string>& dirs,
                 bool isolated) {
  std::printf("plugin directories:\n");
  for (const auto& d : dirs) std::printf("  %s\n", d.c_str());
  if (plugins.empty()) std::printf("\nno libferrum-*.so found\n");
  else std::printf("(each plugin %s)\n", isolated ? "loaded in its own child process"
                                                  : "loaded in this process");
  for (const auto& p : plugins) {
    const std::string stage = p["stage"].get<std::string>();
    std::printf("\n== %s  %s\n", p["name"].get<std::string>().c_str(),
                p["path"].get<std::string>().c_str());
    if (p["rejected_at"].is_null())
      std::printf("   stage    %s (usable)\n", stage.c_str());
    else
      std::printf("   stage    %s, rejected at %s\n", stage.c_str(),
                  p["rejected_at"].get<std::string>().c_str());
    if (!p["reason"].get<std::string>().empty())
      std::printf("   reason   %s\n", p["reason"].get<std::string>().c_str());
    for (const auto& w : p["warnings"])
      std::printf("   WARNING  %s\n", w.get<std::string>().c_str());
    if (!p["abi"].get<std::string>().empty()) {
      std::printf("   abi      %s   version %s   score %d\n", p["abi"].get<std::string>().c_str(),
                  p["version"].get<std::string>().c_str(), p["score"].get<int>());
      std::printf("   build    %s\n", p["build"].get<std::string>().c_str());
    }
    if (p["rejected_at"].is_null()) {
      std::printf("   devices  %llu\n", p["device_count"].get<unsigned long long>());
      for (const auto& d : p["devices"]) {
        const auto ordinal = d["ordinal"].get<unsigned long long>();
        if (d.contains("error")) {
          std::printf("     [%llu] (device_props failed)\n", ordinal);
          continue;
        }
        std::printf("     [%llu] %s  kind=%s cc=%s mem=%.1f GiB units=%llu dtypes=%s\n", ordinal,
                    d["name"].get<std::string>().c_str(), d["kind"].get<std::string>().c_str(),
                    d["compute_capability"].get<std::string>().c_str(),
                    static_cast<double>(d["total_memory_bytes"].get<uint64_t>()) /
                        (1024.0 * 1024 * 1024),
                    d["multiprocessors"].get<unsigned long long>(),
                    d["dtypes"].get<std::string>().c_str());
      }
    }
    if (p["ops"].is_object()) print_ops(p["ops"]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Lists every ferrum plugin in the search path (FERRUM_PLUGIN_PATH, else the config's\n"
      "plugin_path and the ferrum/ directory next to libferrum.so), how far it loaded and why it\n"
      "stopped, its warnings, its devices and its op matrix. Exit status 0 even when plugins are rejected; 1 for a config\n"
      "error; 2 for bad usage.",
      "ferrum-info"};
  bool json = false, isolate = true;
  int timeout_s = 60;
  app.add_flag("--json", json, "print JSON instead of text");
  app.add_flag("--isolate,!--no-isolate", isolate,
               "load and probe each plugin in its own child process, so a plugin that crashes, "
               "exits or hangs is reported and the others still listed (default: on; "
               "--no-isolate loads them all into this process)");
  ferrum::tools::add_integer(app, "--timeout", timeout_s, 1, 3600,
                             "seconds an isolated plugin may take to load, probe and "
                             "initialise before it is killed");
  ferrum::tools::parse_or_exit(app, argc, argv);

  try {
    const auto dirs = ferrum::plugin_search_path();
    const ordered_json plugins = ferrum::tools::info_plugins(isolate, timeout_s);
    if (json) {
      std::cout << ferrum::tools::info_root(plugins).dump(2, ' ', false,
                                                          ordered_json::error_handler_t::replace)
                << "\n";
    } else {
      print_human(plugins, dirs, isolate);
    }
  } catch (const ferrum::Error& e) {
    std::fprintf(stderr, "ferrum-info: %s: %s\n", ferrum::to_string(e.code()), e.what());
    return 1;
  }
  return 0;
}
