// ferrum-info [--json]: lists every plugin candidate (discover_plugins(true)) with the
// stage it reached, why it stopped, its versions, devices and op support matrix.
// Exit status: 0 (even when plugins are rejected); 1 for a config error; 2 for bad usage.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <ferrum/common/op_info_gen.hpp>
#include <ferrum/error.hpp>
#include <ferrum/loader.hpp>

namespace {

// The stage a rejected candidate failed at: the one after the last stage it passed (a plugin
// whose probe said no has passed `abi` and was rejected at `probe`).
const char* rejected_at(const ferrum::PluginCandidate& c) {
  switch (c.stage) {
    case ferrum::LoadStage::found: return c.reason.rfind("found", 0) == 0 || c.reason.rfind("not found", 0) == 0 ? "found" : "dlopen";
    case ferrum::LoadStage::opened: return "entry";
    case ferrum::LoadStage::entry: return "prefix";
    case ferrum::LoadStage::prefix: return "abi";
    case ferrum::LoadStage::abi: return "probe";
    case ferrum::LoadStage::probed: return "init";
    case ferrum::LoadStage::initialized: return "none";
  }
  return "unknown";
}

}  // namespace

namespace {

using ordered_json = nlohmann::ordered_json;

const char* kind_name(int32_t kind) {
  switch (kind) {
    case FERRUM_DEVICE_KIND_CPU: return "cpu";
    case FERRUM_DEVICE_KIND_GPU: return "gpu";
    default: return "unknown";
  }
}

std::string dtype_list(uint32_t mask) {
  static const char* names[] = {"", "F32", "F16", "BF16", "I32", "U32", "I8", "U8", "F8_E4M3"};
  std::string out;
  for (int d = 1; d <= 8; ++d)
    if (mask & (1u << d)) out += (out.empty() ? "" : " ") + std::string(names[d]);
  return out.empty() ? "-" : out;
}

struct Device {
  uint64_t ordinal = 0;
  bool ok = false;
  ferrum_device_props props{};
};

std::vector<Device> devices_of(const ferrum::PluginCandidate& c) {
  std::vector<Device> out;
  if (!c.usable || !c.library) return out;
  const ferrum_plugin_api* api = ferrum::api_of(*c.library);
  bool has_props = api->struct_size >= offsetof(ferrum_plugin_api, device_props) + sizeof(void*) &&
                   api->device_props;
  for (uint64_t i = 0; i < c.device_count && i < 256; ++i) {
    Device d;
    d.ordinal = i;
    d.props.struct_size = sizeof d.props;
    d.ok = has_props && api->device_props(i, &d.props) == FERRUM_STATUS_OK;
    d.props.name[sizeof d.props.name - 1] = '\0';
    out.push_back(d);
  }
  return out;
}

bool op_present(const ferrum::PluginCandidate& c, int32_t id) {
  return c.library && ferrum::common::find_slot(ferrum::api_of(*c.library), id) != nullptr;
}

ordered_json to_json(const std::vector<ferrum::PluginCandidate>& cs) {
  ordered_json plugins = ordered_json::array();
  for (const auto& c : cs) {
    ordered_json p;
    p["name"] = c.name;
    p["path"] = c.path;
    p["stage"] = ferrum::to_string(c.stage);  // the last stage the candidate passed
    p["rejected_at"] = c.usable ? nullptr : nlohmann::json(rejected_at(c));
    p["reason"] = c.reason;
    p["abi"] = c.stage >= ferrum::LoadStage::prefix
                   ? std::to_string(c.abi_major) + "." + std::to_string(c.abi_minor)
                   : std::string();
    p["version"] = c.version;
    p["build"] = c.build_info;
    ordered_json devices = ordered_json::array();
    for (const auto& d : devices_of(c)) {
      ordered_json j;
      j["ordinal"] = d.ordinal;
      if (d.ok) {
        j["name"] = d.props.name;
        j["kind"] = kind_name(d.props.kind);
        j["compute_capability"] =
            std::to_string(d.props.compute_major) + "." + std::to_string(d.props.compute_minor);
        j["total_memory_bytes"] = d.props.total_memory_bytes;
        j["multiprocessors"] = d.props.multiprocessors;
        j["dtypes"] = dtype_list(d.props.dtype_mask);
      } else {
        j["error"] = "device_props failed";
      }
      devices.push_back(j);
    }
    p["devices"] = devices;
    ordered_json ops = ordered_json::object();
    for (const auto& op : ferrum::common::kOps) ops[std::string(op.name)] = op_present(c, op.id);
    p["ops"] = ops;
    plugins.push_back(p);
  }
  ordered_json root;
  root["plugins"] = plugins;
  return root;
}

void print_human(const std::vector<ferrum::PluginCandidate>& cs,
                 const std::vector<std::string>& dirs) {
  std::printf("plugin directories:\n");
  for (const auto& d : dirs) std::printf("  %s\n", d.c_str());
  if (cs.empty()) std::printf("\nno libferrum-*.so found\n");
  for (const auto& c : cs) {
    std::printf("\n== %s  %s\n", c.name.c_str(), c.path.c_str());
    if (c.usable)
      std::printf("   stage    %s (usable)\n", ferrum::to_string(c.stage));
    else
      std::printf("   stage    %s, rejected at %s\n", ferrum::to_string(c.stage), rejected_at(c));
    if (!c.reason.empty()) std::printf("   reason   %s\n", c.reason.c_str());
    if (c.stage >= ferrum::LoadStage::prefix) {
      std::printf("   abi      %u.%u   version %s   score %d\n", c.abi_major, c.abi_minor,
                  c.version.c_str(), c.score);
      std::printf("   build    %s\n", c.build_info.c_str());
    }
    if (c.usable) {
      std::printf("   devices  %llu\n", static_cast<unsigned long long>(c.device_count));
      for (const auto& d : devices_of(c)) {
        if (!d.ok) {
          std::printf("     [%llu] (device_props failed)\n", static_cast<unsigned long long>(d.ordinal));
          continue;
        }
        std::printf("     [%llu] %s  kind=%s cc=%d.%d mem=%.1f GiB units=%llu dtypes=%s\n",
                    static_cast<unsigned long long>(d.ordinal), d.props.name,
                    kind_name(d.props.kind), d.props.compute_major, d.props.compute_minor,
                    static_cast<double>(d.props.total_memory_bytes) / (1024.0 * 1024 * 1024),
                    static_cast<unsigned long long>(d.props.multiprocessors),
                    dtype_list(d.props.dtype_mask).c_str());
      }
    }
    if (!c.library) continue;
    // Compact matrix: one block per family, in kOps order of first appearance.
    std::vector<std::string_view> families;
    for (const auto& op : ferrum::common::kOps)
      if (std::find(families.begin(), families.end(), op.family) == families.end())
        families.push_back(op.family);
    std::printf("   ops\n");
    for (auto fam : families) {
      int have = 0, total = 0;
      for (const auto& op : ferrum::common::kOps)
        if (op.family == fam) ++total, have += op_present(c, op.id);
      std::printf("     %-13.*s %3d/%-3d", static_cast<int>(fam.size()), fam.data(), have, total);
      size_t col = 26;
      for (const auto& op : ferrum::common::kOps) {
        if (op.family != fam) continue;
        size_t width = op.name.size() + 3;
        if (col + width > 110) {
          std::printf("\n%26s", "");
          col = 26;
        }
        std::printf(" %s %.*s", op_present(c, op.id) ? "\u2713" : "\u2014",
                    static_cast<int>(op.name.size()), op.name.data());
        col += width;
      }
      std::printf("\n");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--json") {
      json = true;
    } else if (arg == "-h" || arg == "--help") {
      std::printf("usage: ferrum-info [--json]\n"
                  "Lists every ferrum plugin in the search path (FERRUM_PLUGIN_PATH, config\n"
                  "plugin_path, <libdir>/ferrum, build tree), how far it loaded and why it\n"
                  "stopped, its devices and its op matrix.\n");
      return 0;
    } else {
      std::fprintf(stderr, "ferrum-info: unknown argument '%s' (usage: ferrum-info [--json])\n",
                   argv[i]);
      return 2;
    }
  }
  try {
    auto dirs = ferrum::plugin_search_path();
    auto candidates = ferrum::discover_plugins(true);
    if (json) std::cout << to_json(candidates).dump(2) << "\n";
    else print_human(candidates, dirs);
  } catch (const ferrum::Error& e) {
    std::fprintf(stderr, "ferrum-info: %s: %s\n", ferrum::to_string(e.code()), e.what());
    return 1;
  }
  return 0;
}
