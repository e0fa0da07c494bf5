// ferrum-info: lists every plugin candidate with the stage it reached, why it stopped, its
// warnings, versions, devices and op support matrix.
//
// By default each plugin is loaded, probed and initialised in a child process (--isolate), so
// a plugin that crashes, aborts, exits or hangs in its constructors, entry, probe, init or
// shutdown is reported as such and the other plugins are still listed. --no-isolate loads
// them all in this process (discover_plugins(true)).
// Exit status: 0 (even when plugins are rejected); 1 for a config error; 2 for bad usage.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <ferrum/common/op_info_gen.hpp>
#include <ferrum/error.hpp>
#include <ferrum/backend.hpp>
#include <ferrum/loader.hpp>

#include "ferrum_tool_cli.hpp"

namespace {

using ordered_json = nlohmann::ordered_json;

// The stage a rejected candidate failed at: the one after the last stage it passed (a plugin
// whose probe said no has passed `abi` and was rejected at `probe`).
const char* rejected_at(const ferrum::PluginCandidate& c) {
  switch (c.stage) {
    case ferrum::LoadStage::found: return c.reason.rfind("not found", 0) == 0 ? "found" : "trust";
    case ferrum::LoadStage::trusted: return "elf";
    case ferrum::LoadStage::elf: return "dlopen";
    case ferrum::LoadStage::opened: return "entry";
    case ferrum::LoadStage::entry: return "prefix";
    case ferrum::LoadStage::prefix: return "abi";
    case ferrum::LoadStage::abi: return "probe";
    case ferrum::LoadStage::probed: return "init";
    case ferrum::LoadStage::initialized: return "none";
  }
  return "unknown";
}

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

ordered_json devices_of(const ferrum::PluginCandidate& c) {
  ordered_json out = ordered_json::array();
  if (!c.usable || !c.library) return out;
  const ferrum_plugin_api* api = ferrum::api_of(*c.library);
  const bool has_props = api->device_props != nullptr;  // usable: the table is complete
  for (uint64_t i = 0; i < c.device_count && i < 256; ++i) {
    ferrum_device_props props{};
    props.struct_size = sizeof props;
    ordered_json j;
    j["ordinal"] = i;
    if (has_props && api->device_props(i, &props) == FERRUM_STATUS_OK) {
      props.name[sizeof props.name - 1] = '\0';
      j["name"] = props.name;
      j["kind"] = kind_name(props.kind);
      j["compute_capability"] =
          std::to_string(props.compute_major) + "." + std::to_string(props.compute_minor);
      j["total_memory_bytes"] = props.total_memory_bytes;
      j["multiprocessors"] = props.multiprocessors;
      j["dtypes"] = dtype_list(props.dtype_mask);
    } else {
      j["error"] = "device_props failed";
    }
    out.push_back(j);
  }
  return out;
}

// Everything ferrum-info says about one candidate. The op matrix is read only from a table
// the loader accepted at stage `abi` (same major, complete for its minor): a table of another
// major is never interpreted with this host's layout.
ordered_json describe(const ferrum::PluginCandidate& c, bool isolated) {
  ordered_json p;
  p["name"] = c.name;
  p["path"] = c.path;
  p["stage"] = ferrum::to_string(c.stage);  // the last stage the candidate passed
  p["rejected_at"] = c.usable ? nullptr : ordered_json(rejected_at(c));
  p["reason"] = c.reason;
  p["warnings"] = c.warnings;
  p["isolated"] = isolated;
  p["abi"] = c.stage >= ferrum::LoadStage::prefix
                 ? std::to_string(c.abi_major) + "." + std::to_string(c.abi_minor)
                 : std::string();
  p["version"] = c.version;
  p["build"] = c.build_info;
  p["score"] = c.score;
  p["device_count"] = c.device_count;
  p["devices"] = devices_of(c);
  if (c.library && c.stage >= ferrum::LoadStage::abi) {
    ordered_json ops = ordered_json::object();
    const ferrum_plugin_api* api = ferrum::api_of(*c.library);
    for (const auto& op : ferrum::common::kOps)
      ops[std::string(op.name)] = ferrum::common::find_slot(api, op.id) != nullptr;
    p["ops"] = ops;
  } else {
    p["ops"] = nullptr;
  }
  return p;
}

// ---- isolation: one child process per plugin ------------------------------------------

int g_report_fd = -1;  // the child's end of the pipe

bool write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

void child_progress(const char* phase) {
  write_all(g_report_fd, std::string("phase ") + phase + "\n");
}

[[noreturn]] void run_child(const std::string& path) {
  ::dup2(STDERR_FILENO, STDOUT_FILENO);  // what the plugin prints must not mix with our stdout
  // A plugin's fault must end the child with its signal, whatever handlers this process
  // (or a sanitizer runtime) installed.
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) ::signal(sig, SIG_DFL);
  int rc = 0;
  try {
    ferrum::PluginCandidate c = ferrum::inspect_plugin(path, ferrum::LoadStage::initialized,
                                                       child_progress);
    child_progress("query");
    const std::string result = "result " + describe(c, true).dump(-1, ' ', false, ordered_json::error_handler_t::replace) + "\n";
    child_progress("shutdown");
    c = {};  // shutdown and dlclose, here in the child
    write_all(g_report_fd, result);
  } catch (const std::exception& e) {
    write_all(g_report_fd, std::string("error ") + e.what() + "\n");
    rc = 1;
  }
  std::fflush(stderr);
  ::_exit(rc);
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGTRAP: return "SIGTRAP";
    case SIGSYS: return "SIGSYS";
    default: return nullptr;
  }
}

struct Phase {
  const char* marker;   // what the child reports before calling into the plugin
  const char* during;   // for the message
  const char* passed;   // the last loader stage passed when it stopped there
};
constexpr Phase kPhases[] = {
    {"", "the pre-dlopen checks", "found"},
    {"dlopen", "dlopen (the plugin's constructors)", "elf"},
    {"entry", "the entry call", "opened"},
    {"probe", "probe", "abi"},
    {"init", "init", "probed"},
    {"device_count", "device_count", "probed"},
    {"query", "device_props / op table", "initialized"},
    {"shutdown", "shutdown / dlclose", "initialized"},
};

const Phase& phase_named(const std::string& marker) {
  for (const Phase& p : kPhases)
    if (marker == p.marker) return p;
  return kPhases[0];
}

// Loads `c` in a child process and returns its description, or one saying how the child died.
ordered_json inspect_isolated(const ferrum::PluginCandidate& c, int timeout_s) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw ferrum::Error(ferrum::ErrorCode::internal,
                        std::string("ferrum-info: pipe: ") + std::strerror(errno));
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw ferrum::Error(ferrum::ErrorCode::internal,
                        std::string("ferrum-info: fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[0]);
    g_report_fd = fds[1];
    run_child(c.path);
  }
  ::close(fds[1]);

  std::string text;
  bool timed_out = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    int ready = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child is gone (or closed its end)
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  std::string last_phase, result, error;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) break;  // an incomplete line: the child died mid-write
    std::string_view line(text.data() + start, end - start);
    if (line.rfind("phase ", 0) == 0) last_phase = line.substr(6);
    else if (line.rfind("result ", 0) == 0) result = line.substr(7);
    else if (line.rfind("error ", 0) == 0) error = line.substr(6);
    start = end + 1;
  }
  if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0 && !result.empty()) {
    try {
      return ordered_json::parse(result);
    } catch (const std::exception&) {
      error = "unreadable result from the child process";
    }
  }

  const Phase& phase = phase_named(last_phase);
  std::string reason;
  if (timed_out) {
    reason = "did not finish within " + std::to_string(timeout_s) + " s during " + phase.during +
             " (killed)";
  } else if (WIFSIGNALED(status)) {
    const char* name = signal_name(WTERMSIG(status));
    reason = std::string("crashed with ") +
             (name ? name : "signal " + std::to_string(WTERMSIG(status))) + " during " +
             phase.during;
  } else if (!error.empty()) {
    reason = error;
  } else {
    reason = "exited with status " + std::to_string(WEXITSTATUS(status)) + " during " +
             phase.during;
  }
  ordered_json p;
  p["name"] = c.name;
  p["path"] = c.path;
  p["stage"] = phase.passed;
  p["rejected_at"] = *phase.marker ? phase.marker : "loading";
  p["reason"] = reason;
  p["warnings"] = ordered_json::array();
  p["isolated"] = true;
  p["abi"] = "";
  p["version"] = "";
  p["build"] = "";
  p["score"] = 0;
  p["device_count"] = 0;
  p["devices"] = ordered_json::array();
  p["ops"] = nullptr;
  return p;
}

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
    ordered_json plugins = ordered_json::array();
    if (isolate) {
      for (const auto& c : ferrum::find_plugins()) plugins.push_back(inspect_isolated(c, timeout_s));
    } else {
      for (const auto& c : ferrum::discover_plugins(true)) plugins.push_back(describe(c, false));
    }
    if (json) {
      ordered_json root;
      root["plugins"] = plugins;
      // The ops the facade composes when a slot is NULL (the same for every plugin).
      ordered_json composed = ordered_json::array();
      for (const auto& op : ferrum::common::kOps)
        if (ferrum::Backend::facade_composes(static_cast<ferrum::Op>(op.id))) composed.push_back(std::string(op.name));
      root["facade_composes"] = composed;
      std::cout << root.dump(2, ' ', false, ordered_json::error_handler_t::replace) << "\n";
    } else {
      print_human(plugins, dirs, isolate);
    }
  } catch (const ferrum::Error& e) {
    std::fprintf(stderr, "ferrum-info: %s: %s\n", ferrum::to_string(e.code()), e.what());
    return 1;
  }
  return 0;
}
