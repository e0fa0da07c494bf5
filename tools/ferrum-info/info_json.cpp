// ferrum-info's report as JSON, shared by the ferrum-info tool and the Python package
// (ferrum.info()): every plugin candidate with the stage it reached, why it stopped, its
// warnings, versions, devices and op support matrix.
//
// Isolated mode loads, probes and initialises each plugin in a child process (fork), so a plugin
// that crashes, aborts, exits or hangs in its constructors, entry, probe, init or shutdown is
// reported as such and the other plugins are still listed.
#include "info_json.hpp"

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
#include <string>
#include <string_view>
#include <vector>

#include <ferrum/common/op_info_gen.hpp>
#include <ferrum/error.hpp>
#include <ferrum/backend.hpp>
#include <ferrum/loader.hpp>

namespace ferrum::tools {
namespace {

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

}  // namespace

ordered_json info_plugins(bool isolate, int timeout_s) {
  ordered_json plugins = ordered_json::array();
  if (isolate) {
    for (const auto& c : ferrum::find_plugins()) plugins.push_back(inspect_isolated(c, timeout_s));
  } else {
    for (const auto& c : ferrum::discover_plugins(true)) plugins.push_back(describe(c, false));
  }
  return plugins;
}

ordered_json info_root(const ordered_json& plugins) {
  ordered_json root;
  root["plugins"] = plugins;
  // The ops the facade composes when a slot is NULL (the same for every plugin).
  ordered_json composed = ordered_json::array();
  for (const auto& op : ferrum::common::kOps)
    if (ferrum::Backend::facade_composes(static_cast<ferrum::Op>(op.id)))
      composed.push_back(std::string(op.name));
  root["facade_composes"] = composed;
  return root;
}

std::string info_json_text(bool isolate, int timeout_s) {
  return info_root(info_plugins(isolate, timeout_s))
      .dump(2, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace ferrum::tools
