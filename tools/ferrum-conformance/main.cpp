// ferrum-conformance — runs the conformance kit (conformance/) on one plugin, ours or a vendor's
// .so: every reference case (op × dtype × shape class) against the float64 references, the
// overflow family (hostile size arguments), the ABI-contract family and, with --large, the large
// shapes. Cases run in child processes, so a plugin that crashes is reported with the case.
//
// Exit status: 0 the plugin passed the strict kit; 1 a case failed or crashed, a required slot
// is missing, or nothing passed on the plugin's own slots; 2 a usage or load error; 77 (with
// --ctest only) the plugin is not usable here, has no table for the family, or no case matches.
#include <ferrum/conformance/kit.hpp>
#include <ferrum/ferrum.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace fc = ferrum::conformance;

namespace {

constexpr int kExitFail = 1, kExitUsage = 2, kExitSkip = 77;

const ferrum::Dtype kDtypes[] = {ferrum::Dtype::f32, ferrum::Dtype::f16, ferrum::Dtype::bf16,
                                 ferrum::Dtype::i32, ferrum::Dtype::u32, ferrum::Dtype::i8,
                                 ferrum::Dtype::u8,  ferrum::Dtype::f8_e4m3};

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

const char* tag(const fc::Outcome& o) {
  switch (o.status) {
    case fc::Status::pass: return o.composed ? "PASS*" : "PASS ";
    case fc::Status::fail: return "FAIL ";
    case fc::Status::unsupported: return "UNSUP";
    case fc::Status::crash: return "CRASH";
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

// --ctest: the family names one ABI family whose table the plugin does not provide and no slot
// of it is required of the plugin (e.g. graph on the CPU plugin): nothing to judge.
bool family_absent(const ferrum_plugin_api* api, const fc::Options& opt) {
  static const char* kFamilies[] = {"memory", "context", "graph", "dense", "attention", "paged_kv",
                                    "quant_kv", "quant_matmul", "moe", "mla", "collective"};
  for (const char* f : kFamilies)
    if (opt.family_glob == f) {
      for (const fc::Case& c : fc::cases())
        if (fc::family_of(c.op) == f && fc::slot_filled(api, c.op)) return false;
      return fc::required_slot_outcomes(api, opt).empty();
    }
  return false;
}

// A decimal or 0x-hex unsigned 64-bit number, the whole string, no sign, no overflow.
std::string check_u64(const std::string& s) {
  const bool hex = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
  const std::string digits = hex ? s.substr(2) : s;
  if (digits.empty()) return "expected an unsigned 64-bit number, got '" + s + "'";
  unsigned __int128 v = 0;
  for (char ch : digits) {
    int d;
    if (ch >= '0' && ch <= '9') d = ch - '0';
    else if (hex && ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
    else if (hex && ch >= 'A' && ch <= 'F') d = ch - 'A' + 10;
    else return "expected an unsigned 64-bit number, got '" + s + "'";
    v = v * (hex ? 16 : 10) + static_cast<unsigned>(d);
    if (v > UINT64_MAX) return "'" + s + "' does not fit in 64 bits (at most 18446744073709551615)";
  }
  return {};
}

uint64_t to_u64(const std::string& s) { return std::stoull(s, nullptr, 0); }

}  // namespace

int main(int argc, char** argv) {
  fc::Options opt;
  std::string plugin;
  std::vector<std::string> dtype_names;
  bool json = false, list = false, ctest = false, verbose = false;

  CLI::App app{"ferrum-conformance: runs the conformance kit on one plugin (ours or a vendor's .so)"};
  app.footer(
      "families: the ABI families (memory, context, dense, attention, paged_kv, quant_kv, quant_matmul,\n"
      "moe, mla, graph, collective), overflow (hostile size arguments on every op), contract (ABI-contract\n"
      "rules) and large (big shapes; only with --large or --family large).\n"
      "exit status: 0 passed the strict kit; 1 a case failed or crashed, a required slot is missing, or\n"
      "nothing passed on the plugin's own slots; 2 usage or load error; 77 skipped (--ctest only)");
  const auto non_empty = [](const std::string& s) { return s.empty() ? std::string("must not be empty") : std::string(); };
  app.add_option("--plugin", plugin,
                 "the plugin under test: a name (cpu, cuda, cuda:1) or a path to any libferrum-*.so "
                 "(default: FERRUM_BACKEND / config / auto)")
      ->check(non_empty);
  app.add_option("--op", opt.op_glob, "only cases of ops matching this shell glob (e.g. 'rms_norm', '*attention*')")
      ->check(non_empty);
  app.add_option("--family", opt.family_glob, "only cases of families matching this shell glob")->check(non_empty);
  app.add_option("--name", opt.name_glob, "only cases whose shape-class name matches this shell glob")
      ->check(non_empty);
  std::vector<std::string> dtype_choices;
  for (auto d : kDtypes) dtype_choices.emplace_back(ferrum::to_string(d));
  app.add_option("--dtype", dtype_names, "activation dtypes to run, comma separated (default: every dtype a case lists)")
      ->delimiter(',')
      ->check(CLI::IsMember(dtype_choices));
  std::string seed_text;
  app.add_option("--seed", seed_text, "base seed of the random inputs (an unsigned 64-bit number; default 20261126)")
      ->check(check_u64);
  app.add_option("--timeout", opt.timeout_s,
                 "seconds a case may run without a result before it is killed and reported as hung (1..86400)")
      ->check(CLI::Range(1u, 86400u))
      ->capture_default_str();
  app.add_flag("--large", opt.large, "also run the large family (big gemm, long-context attention)");
  app.add_flag("--json", json, "machine-readable outcomes on stdout");
  app.add_flag("--list", list, "list the matching cases and exit");
  app.add_flag("--verbose,-v", verbose, "print a line for every case, passes included");
  app.add_flag("--ctest", ctest,
               "exit 77 with 'SKIPPED: <reason>' when the plugin is not usable here, lacks the family, or no "
               "case matches (CTest's SKIP_RETURN_CODE)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "ferrum-conformance: %s\nRun with --help for usage.\n", e.what());
    return kExitUsage;
  }
  if (!seed_text.empty()) opt.seed = to_u64(seed_text);
  for (const auto& n : dtype_names)
    for (auto d : kDtypes)
      if (n == ferrum::to_string(d)) opt.dtypes.push_back(d);

  const auto selected = fc::select_cases(opt);
  if (list) {
    for (const fc::Case* c : selected)
      std::printf("%-40s %-12s %-16s %s\n", c->op.c_str(), fc::family_of(*c).c_str(), dtype_list(c->dtypes).c_str(),
                  c->name.c_str());
    std::printf("%zu cases\n", selected.size());
    return 0;
  }

  if (ctest) {
    if (!plugin.empty() && plugin.find('/') == std::string::npos) {
      const auto all = ferrum::discover_plugins(true);
      const auto* c = find_candidate(all, plugin);
      if (c && !c->usable) {
        std::printf("SKIPPED: plugin %s is not usable here (stopped after stage %s): %s\n", c->name.c_str(),
                    ferrum::to_string(c->stage), c->reason.c_str());
        return kExitSkip;
      }
      if (c && c->library && family_absent(ferrum::api_of(*c->library), opt)) {
        std::printf("SKIPPED: plugin %s has no %s family and no slot of it is required of it\n", c->name.c_str(),
                    opt.family_glob.c_str());
        return kExitSkip;
      }
    }
    if (selected.empty()) {
      std::printf("SKIPPED: no conformance case matches op '%s', family '%s', name '%s'\n", opt.op_glob.c_str(),
                  opt.family_glob.c_str(), opt.name_glob.c_str());
      return kExitSkip;
    }
  }

  const bool progress = !json && ::isatty(STDERR_FILENO);
  std::map<std::string, std::array<int, 5>> per_op;  // op -> pass, fail, unsupported, crash, composed
  auto print_line = [&](const fc::Outcome& o) {
    std::string line = std::string(tag(o)) + "  " + o.op + "  " +
                       (o.dtype == ferrum::Dtype::invalid ? std::string("-") : std::string(ferrum::to_string(o.dtype))) +
                       "  " + o.name + "  (" + ms(o.seconds) + ")";
    if (o.status != fc::Status::pass) line += "\n       " + (verbose ? o.message : first_message(o.message));
    if (progress) std::fprintf(stderr, "\r\033[K");
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  };
  fc::PluginInfo info;
  std::vector<fc::Outcome> outcomes;
  try {
    outcomes = fc::run_isolated(
        plugin, opt,
        [&](const fc::Outcome& o, size_t done, size_t total) {
          auto& t = per_op[o.op];
          ++t[o.status == fc::Status::pass && o.composed ? 4 : static_cast<int>(o.status)];
          if (json) return;
          if (verbose || o.status != fc::Status::pass || o.composed) print_line(o);
          if (progress) std::fprintf(stderr, "\r\033[K[%zu/%zu] %s  %s", done, total, o.op.c_str(), o.name.c_str());
        },
        &info);
  } catch (const std::exception& e) {
    if (progress) std::fprintf(stderr, "\r\033[K");
    std::fprintf(stderr, "ferrum-conformance: cannot load plugin '%s': %s\n", plugin.c_str(), e.what());
    return kExitUsage;
  }
  if (progress) std::fprintf(stderr, "\r\033[K");
  const fc::Totals t = fc::totals(outcomes);
  const std::string verdict = fc::strict_verdict(t);
  const std::string who = info.name + " " + info.version;

  if (json) {
    nlohmann::json j;
    j["plugin"] = {{"name", info.name}, {"version", info.version}, {"abi", info.abi}, {"path", info.path},
                   {"device", info.device}};
    j["seed"] = opt.seed;
    auto& arr = j["outcomes"] = nlohmann::json::array();
    for (const auto& o : outcomes)
      arr.push_back({{"op", o.op},
                     {"family", o.family},
                     {"name", o.name},
                     {"dtype", ferrum::to_string(o.dtype)},
                     {"status", fc::to_string(o.status)},
                     {"facade_composed", o.composed},
                     {"message", o.message},
                     {"ms", o.seconds * 1e3}});
    j["totals"] = {{"passed", t.passed},     {"failed", t.failed},           {"crashed", t.crashed},
                   {"unsupported", t.unsupported}, {"facade_composed", t.composed}};
    j["verdict"] = verdict.empty() ? "pass" : verdict;
    std::cout << j.dump(2) << "\n";
  } else {
    std::printf("\nper op (passed on the plugin's slots / failed / unsupported / crashed / passed via the facade):\n");
    for (const auto& [op, c] : per_op)
      std::printf("  %-40s %4d passed %4d failed %4d unsupported %4d crashed %4d facade\n", op.c_str(), c[0], c[1],
                  c[2], c[3], c[4]);
    std::printf("conformance: %d passed, %d failed, %d crashed, %d unsupported (plugin %s, device %s)\n", t.passed,
                t.failed, t.crashed, t.unsupported, who.c_str(), info.device.c_str());
    if (t.composed)
      std::printf("conformance: %d more passed only through the facade's composition (PASS*: the plugin's slot is "
                  "NULL; not counted for the plugin)\n",
                  t.composed);
    std::printf("conformance: %s\n", verdict.empty() ? "PASS" : ("FAIL: " + verdict).c_str());
  }
  return verdict.empty() ? 0 : kExitFail;
}
