// ferrum-conformance — runs every conformance case (op × dtype × shape class) on one plugin
// against the float64 references of the kit and reports pass / fail / unsupported.
//
//   ferrum-conformance [--plugin NAME|PATH] [--op GLOB] [--family GLOB] [--name GLOB]
//                      [--dtype LIST] [--seed N] [--json] [--list] [--ctest]
//
// Exit status: 0 when nothing failed, 1 on any failure, 2 on a usage or load error, 77 (with
// --ctest only) when the plugin is not usable on this machine or no case matches the filters.
#include <ferrum/conformance/kit.hpp>
#include <ferrum/ferrum.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace fc = ferrum::conformance;

namespace {

constexpr int kExitFail = 1, kExitUsage = 2, kExitSkip = 77;

const char* kUsage =
    "usage: ferrum-conformance [options]\n"
    "  --plugin NAME|PATH  the plugin under test: a name (cpu, cuda, cuda:1) or a path to any\n"
    "                      libferrum-*.so (default: FERRUM_BACKEND / config / auto)\n"
    "  --op GLOB           only cases of ops matching GLOB (e.g. 'rms_norm', '*attention*')\n"
    "  --family GLOB       only cases of ops in ABI families matching GLOB (dense, attention, ...)\n"
    "  --name GLOB         only cases whose shape-class name matches GLOB\n"
    "  --dtype LIST        activation dtypes to run, comma separated (f32,f16,bf16; default: all)\n"
    "  --seed N            base seed of the random inputs (default 20261126)\n"
    "  --json              machine-readable outcomes on stdout\n"
    "  --list              list the matching cases and exit\n"
    "  --ctest             exit 77 with 'SKIPPED: <reason>' when the plugin is not usable here or\n"
    "                      no case matches (for CTest's SKIP_RETURN_CODE)\n"
    "exit status: 0 all passed or unsupported, 1 any failure, 2 usage or load error\n";

bool parse_dtype(const std::string& s, ferrum::Dtype& out) {
  for (ferrum::Dtype d : {ferrum::Dtype::f32, ferrum::Dtype::f16, ferrum::Dtype::bf16, ferrum::Dtype::i32,
                          ferrum::Dtype::u32, ferrum::Dtype::i8, ferrum::Dtype::u8, ferrum::Dtype::f8_e4m3})
    if (s == ferrum::to_string(d)) {
      out = d;
      return true;
    }
  return false;
}

std::string dtype_list(const std::vector<ferrum::Dtype>& ds) {
  std::string s;
  for (auto d : ds) s += (s.empty() ? "" : ",") + std::string(ferrum::to_string(d));
  return s;
}

// The first failure message only (the kit joins them with "; "), for the one-line report.
std::string first_message(const std::string& m) {
  const auto p = m.find("; ");
  return p == std::string::npos ? m : m.substr(0, p) + " (+ more)";
}

const char* tag(fc::Status s) {
  switch (s) {
    case fc::Status::pass: return "PASS ";
    case fc::Status::fail: return "FAIL ";
    case fc::Status::unsupported: return "UNSUP";
  }
  return "?";
}

std::string ms(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", seconds * 1e3);
  return buf;
}

// The plugin as the loader reports it on this machine, for --ctest (nullptr: not found by name).
const ferrum::PluginCandidate* find_candidate(const std::vector<ferrum::PluginCandidate>& all, const std::string& spec) {
  const std::string name = spec.substr(0, spec.find(':'));
  for (const auto& c : all)
    if (c.name == name) return &c;
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  fc::Options opt;
  std::string plugin;
  bool json = false, list = false, ctest = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* what) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ferrum-conformance: %s needs a value\n%s", what, kUsage);
        std::exit(kExitUsage);
      }
      return argv[++i];
    };
    if (a == "--plugin") plugin = value("--plugin");
    else if (a == "--op") opt.op_glob = value("--op");
    else if (a == "--family") opt.family_glob = value("--family");
    else if (a == "--name") opt.name_glob = value("--name");
    else if (a == "--seed") opt.seed = std::strtoull(value("--seed").c_str(), nullptr, 0);
    else if (a == "--dtype") {
      std::stringstream ss(value("--dtype"));
      std::string item;
      while (std::getline(ss, item, ',')) {
        ferrum::Dtype d;
        if (!parse_dtype(item, d)) {
          std::fprintf(stderr, "ferrum-conformance: unknown dtype '%s'\n", item.c_str());
          return kExitUsage;
        }
        opt.dtypes.push_back(d);
      }
    } else if (a == "--json") json = true;
    else if (a == "--list") list = true;
    else if (a == "--ctest") ctest = true;
    else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "ferrum-conformance: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return kExitUsage;
    }
  }

  const auto selected = fc::select_cases(opt);
  if (list) {
    for (const fc::Case* c : selected)
      std::printf("%-40s %-10s %-16s %s\n", c->op.c_str(), fc::family_of(c->op).c_str(), dtype_list(c->dtypes).c_str(),
                  c->name.c_str());
    std::printf("%zu cases\n", selected.size());
    return 0;
  }
  if (ctest && selected.empty()) {
    std::printf("SKIPPED: no conformance case matches op '%s', family '%s', name '%s'\n", opt.op_glob.c_str(),
                opt.family_glob.c_str(), opt.name_glob.c_str());
    return kExitSkip;
  }
  if (ctest && !plugin.empty() && plugin.find('/') == std::string::npos) {
    const auto all = ferrum::discover_plugins(true);
    const auto* c = find_candidate(all, plugin);
    if (c && !c->usable) {
      std::printf("SKIPPED: plugin %s is not usable here (stopped after stage %s): %s\n", c->name.c_str(),
                  ferrum::to_string(c->stage), c->reason.c_str());
      return kExitSkip;
    }
  }

  ferrum::Backend backend;
  std::string device;
  try {
    backend = ferrum::Backend::load(plugin);
    device = backend.device_props(backend.selected_device()).name;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferrum-conformance: cannot load plugin '%s': %s\n", plugin.c_str(), e.what());
    return kExitUsage;
  }
  const std::string who = std::string(backend.name()) + " " + std::string(backend.version());

  std::map<std::string, std::array<int, 3>> per_op;  // op -> pass, fail, unsupported
  std::array<int, 3> total{};
  auto count = [&](const fc::Outcome& o) {
    const int k = static_cast<int>(o.status);
    ++per_op[o.op][k];
    ++total[k];
  };
  auto print_line = [&](const fc::Outcome& o) {
    std::string line = std::string(tag(o.status)) + "  " + o.op + "  " + std::string(ferrum::to_string(o.dtype)) +
                       "  " + o.name + "  (" + ms(o.seconds) + ")";
    if (o.status != fc::Status::pass) line += "\n       " + first_message(o.message);
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  };
  const auto outcomes = fc::run_cases(backend, opt, [&](const fc::Outcome& o) {
    count(o);
    if (!json) print_line(o);
  });

  if (json) {
    nlohmann::json j;
    j["plugin"] = {{"name", backend.name()},   {"version", backend.version()}, {"abi", backend.abi_version()},
                   {"path", backend.path()},   {"device", device}};
    j["seed"] = opt.seed;
    auto& arr = j["outcomes"] = nlohmann::json::array();
    for (const auto& o : outcomes)
      arr.push_back({{"op", o.op},
                     {"family", fc::family_of(o.op)},
                     {"name", o.name},
                     {"dtype", ferrum::to_string(o.dtype)},
                     {"status", fc::to_string(o.status)},
                     {"message", o.message},
                     {"ms", o.seconds * 1e3}});
    j["totals"] = {{"passed", total[0]}, {"failed", total[1]}, {"unsupported", total[2]}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::printf("\nper op:\n");
    for (const auto& [op, t] : per_op)
      std::printf("  %-40s %4d passed %4d failed %4d unsupported\n", op.c_str(), t[0], t[1], t[2]);
    std::printf("conformance: %d passed, %d failed, %d unsupported (plugin %s, device %s)\n", total[0], total[1],
                total[2], who.c_str(), device.c_str());
  }
  return total[1] ? kExitFail : 0;
}
