// The ferrum loader: staged plugin loading with a diagnosis at every stage (docs/design.md §2).
#include <ferrum/loader.hpp>

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <system_error>

#include <ferrum/common/op_info_gen.hpp>

#include "config.hpp"
#include "elf_check.hpp"
#include "log.hpp"
#include "reports.hpp"
#include "trust.hpp"

namespace ferrum {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------
// PluginLibrary
// ---------------------------------------------------------------------------------
namespace {
uint64_t next_library_serial() noexcept {
  static std::atomic<uint64_t> serial{0};
  return serial.fetch_add(1, std::memory_order_relaxed) + 1;
}
}  // namespace

class PluginLibrary {
 public:
  PluginLibrary(std::string real_path, std::string file_name, void* handle)
      : path(std::move(real_path)), name(file_name), log_tag(std::move(file_name)),
        handle(handle) {}
  // Never reused in the process: the key of this library's error reports (an address may be
  // reused by a library loaded after this one is gone).
  const uint64_t serial = next_library_serial();
  PluginLibrary(const PluginLibrary&) = delete;
  PluginLibrary& operator=(const PluginLibrary&) = delete;

  std::string path;     // realpath: the registry key
  std::string name;     // from the file name until the prefix is read, then the table's
  const std::string log_tag;  // immutable: read by the log callback from plugin threads
  void* handle = nullptr;
  const ferrum_plugin_api* api = nullptr;
  ferrum_host_info host{};  // borrowed by the plugin until shutdown returns
  bool registered = false;
  bool init_attempted = false;
  bool initialized = false;
  std::string init_error;
};

namespace {

// Loading, the registry and unloading are serialised by one recursive mutex: the last
// shared_ptr of a failed candidate may drop inside a load on the same thread.
std::recursive_mutex& loader_mutex() {
  static std::recursive_mutex m;
  return m;
}
std::map<std::string, std::weak_ptr<PluginLibrary>>& registry() {
  static std::map<std::string, std::weak_ptr<PluginLibrary>> r;
  return r;
}

const char* status_name(ferrum_status status) {
  switch (status) {
    case FERRUM_STATUS_OK: return "OK";
    case FERRUM_STATUS_UNSUPPORTED: return "UNSUPPORTED";
    case FERRUM_STATUS_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case FERRUM_STATUS_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case FERRUM_STATUS_DEVICE_ERROR: return "DEVICE_ERROR";
    case FERRUM_STATUS_ABI_MISMATCH: return "ABI_MISMATCH";
    case FERRUM_STATUS_INTERNAL: return "INTERNAL";
    case FERRUM_STATUS_NOT_REPLAYED: return "NOT_REPLAYED";
    default: return "unknown status";
  }
}

// True when the plugin's table covers the pointer-sized field at `offset` (older minors
// have smaller tables; the host never reads past struct_size).
bool covers(const ferrum_plugin_api* api, size_t offset) {
  return api && api->struct_size >= offset + sizeof(void*);
}
#define FERRUM_LIFECYCLE(api, field) \
  (covers((api), offsetof(ferrum_plugin_api, field)) ? (api)->field : nullptr)

using Progress = void (*)(const char* phase);
void report(Progress progress, const char* phase) {
  if (progress) progress(phase);
}

// A caller-given name or spec for a message: at most 128 bytes of it (cut at a UTF-8
// character boundary), then "... (N bytes)".
std::string echo(std::string_view text) {
  constexpr size_t kMax = 128;
  if (text.size() <= kMax) return std::string(text);
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return std::string(text.substr(0, cut)) + "... (" + std::to_string(text.size()) + " bytes)";
}

// "a, b, c and 4 more" for a warning.
std::string first_names(const std::vector<std::string>& names) {
  std::string out;
  const size_t shown = std::min<size_t>(names.size(), 8);
  for (size_t i = 0; i < shown; ++i) out += (i ? ", " : "") + echo(names[i]);
  if (names.size() > shown) out += " and " + std::to_string(names.size() - shown) + " more";
  return out;
}

// Each op family's sub-table: where the API table points to it and whether every plugin needs it.
// A plugin declaring minor m must fill at least the size min(m, host minor) gives its family
// (family_size_for: the slots of the registry's ops of that family and minor).
struct FamilyTable {
  const char* name;
  size_t offset;
  bool required;  // every plugin needs it: no buffers or no context means nothing can run
};
constexpr FamilyTable kFamilies[] = {
    {"memory", offsetof(ferrum_plugin_api, memory), true},
    {"context", offsetof(ferrum_plugin_api, context), true},
    {"graph", offsetof(ferrum_plugin_api, graph), false},
    {"dense", offsetof(ferrum_plugin_api, dense), false},
    {"attention", offsetof(ferrum_plugin_api, attention), false},
    {"paged_kv", offsetof(ferrum_plugin_api, paged_kv), false},
    {"quant_kv", offsetof(ferrum_plugin_api, quant_kv), false},
    {"quant_matmul", offsetof(ferrum_plugin_api, quant_matmul), false},
    {"moe", offsetof(ferrum_plugin_api, moe), false},
    {"mla", offsetof(ferrum_plugin_api, mla), false},
    {"collective", offsetof(ferrum_plugin_api, collective), false},
};

// The size of family `name`'s table at ABI 1.<minor> (the host's own for newer minors).
uint64_t family_size_for(std::string_view name, uint32_t minor) {
  minor = std::min<uint32_t>(minor, FERRUM_ABI_VERSION_MINOR);
  uint64_t slots = 0;
  for (const common::OpInfo& op : common::kOps)
    if (op.family == name && op.since_minor <= minor) ++slots;
  return sizeof(uint64_t) + slots * sizeof(void*);  // arith-ok: at most kOpCount slots
}

// The API table size the plugin's declared minor requires (the host's own for newer minors):
// 1.1 appended `extensions`.
uint64_t api_size_for(uint32_t minor) {
  return minor >= 1 ? FERRUM_PLUGIN_API_SIZE_V1_1 : FERRUM_PLUGIN_API_SIZE_V1_0;
}

// "" when a table of the host's major is complete for its declared minor: the API table and
// every non-NULL sub-table at least as large as that minor made them, the memory and context
// families present. Reads nothing of a table that is too short.
std::string table_problem(const ferrum_plugin_api* api) {
  const std::string version =
      "ABI " + std::to_string(api->abi_major) + "." + std::to_string(api->abi_minor);
  if (api->struct_size < api_size_for(api->abi_minor))
    return "API table struct_size " + std::to_string(api->struct_size) + " is smaller than " +
           version + " requires (" + std::to_string(api_size_for(api->abi_minor)) + " bytes)";
  for (const FamilyTable& f : kFamilies) {
    const void* table = nullptr;
    std::memcpy(&table, reinterpret_cast<const char*>(api) + f.offset, sizeof table);
    if (!table) {
      if (f.required)
        return std::string(f.name) + " family missing (the API table's " + f.name +
               " is NULL): every plugin must provide it";
      continue;
    }
    uint64_t size = 0;
    std::memcpy(&size, table, sizeof size);
    const uint64_t need = family_size_for(f.name, api->abi_minor);
    if (size < need)
      return std::string(f.name) + " table struct_size " + std::to_string(size) +
             " is smaller than " + version + " requires (" + std::to_string(need) + " bytes)";
  }
  if (!api->context->new_context)
    return "context family has no new_context: every plugin must provide it";
  return {};
}

// Routes plugin log lines to spdlog's "ferrum" logger. Never lets anything escape.
void host_log(void* user_data, int32_t level, const char* message) noexcept {
  try {
    const auto* lib = static_cast<const PluginLibrary*>(user_data);
    spdlog::level::level_enum lvl = spdlog::level::info;
    switch (level) {
      case FERRUM_LOG_TRACE: lvl = spdlog::level::trace; break;
      case FERRUM_LOG_DEBUG: lvl = spdlog::level::debug; break;
      case FERRUM_LOG_INFO: lvl = spdlog::level::info; break;
      case FERRUM_LOG_WARN: lvl = spdlog::level::warn; break;
      case FERRUM_LOG_ERROR: lvl = spdlog::level::err; break;
      default: lvl = level > FERRUM_LOG_ERROR ? spdlog::level::err : spdlog::level::trace;
    }
    detail::logger()->log(lvl, "[{}] {}", lib ? lib->log_tag : std::string("?"),
                          message ? message : "(null)");
  } catch (...) {
  }
}

// ---- reports of failed calls without a context (ABI 1.1; reports.hpp) ----------------------
// This thread's last report of each plugin library, keyed by its serial; a few libraries at most
// (the oldest report goes first beyond kMaxLibraries).
struct Report {
  uint64_t serial = 0;
  ferrum_status status = FERRUM_STATUS_OK;
  std::string message;
};
constexpr size_t kMaxLibraries = 16;
constexpr size_t kMaxReportBytes = 64 * 1024;  // a longer message is cut here
thread_local std::vector<Report> t_reports;

Report* find_report(uint64_t serial) noexcept {
  for (Report& r : t_reports)
    if (r.serial == serial) return &r;
  return nullptr;
}

// ferrum_host_info.report_error: stores the message for this thread. Never lets anything escape.
void host_report_error(void* user_data, ferrum_status status, const char* message) noexcept {
  try {
    const auto* lib = static_cast<const PluginLibrary*>(user_data);
    if (!lib || status == FERRUM_STATUS_OK) return;  // nothing failed: nothing to keep
    std::string text = message ? std::string(message, strnlen(message, kMaxReportBytes))
                               : std::string("(the plugin reported a NULL message)");
    Report* r = find_report(lib->serial);
    if (!r) {
      if (t_reports.size() >= kMaxLibraries) t_reports.erase(t_reports.begin());
      r = &t_reports.emplace_back();
      r->serial = lib->serial;
    }
    r->status = status;
    r->message = std::move(text);
  } catch (...) {  // out of memory: the report is lost, the status still says what failed
  }
}

// The shared_ptr deleter: shutdown (if init succeeded) and dlclose, under the loader lock.
void release_library(PluginLibrary* lib) noexcept {
  try {
    std::lock_guard lock(loader_mutex());
    if (lib->registered) {
      auto it = registry().find(lib->path);
      if (it != registry().end() && it->second.expired()) registry().erase(it);
    }
    if (lib->initialized) {
      if (auto shutdown = FERRUM_LIFECYCLE(lib->api, shutdown)) shutdown();
      detail::logger()->debug("loader: {} shut down", lib->path);
    }
    if (lib->handle) dlclose(lib->handle);
    detail::logger()->debug("loader: {} unloaded", lib->path);
  } catch (...) {
  }
  delete lib;
}

// "libferrum-<name>.so" -> "<name>"; "" if the file name does not follow the convention.
std::string name_from_file(const std::string& path) {
  std::string file = fs::path(path).filename().string();
  const std::string prefix = "libferrum-", suffix = ".so";
  if (file.size() > prefix.size() + suffix.size() && file.rfind(prefix, 0) == 0 &&
      file.compare(file.size() - suffix.size(), suffix.size(), suffix) == 0)
    return file.substr(prefix.size(), file.size() - prefix.size() - suffix.size());
  return file;
}

// dlerror text plus, for "X: cannot open shared object file", the missing dependency.
std::string describe_dlopen_error(const std::string& path, const char* err) {
  std::string text = err ? err : "unknown dlopen error";
  std::string reason = "dlopen failed: " + text;
  const std::string marker = ": cannot open shared object file";
  if (auto pos = text.find(marker); pos != std::string::npos) {
    std::string lib = text.substr(0, pos);
    if (lib != path) reason += " (missing dependency '" + lib + "')";
  }
  return reason;
}

void fill_from_table(PluginCandidate& c, const PluginLibrary& lib) {
  const ferrum_plugin_api* api = lib.api;
  c.name = lib.name;
  c.abi_major = api->abi_major;
  c.abi_minor = api->abi_minor;
  c.version = api->plugin_version ? api->plugin_version : "";
  c.build_info = api->build_info ? api->build_info : "";
}

// Opens the candidate and checks it up to stage `abi`. On success c.library is set.
void open_candidate(PluginCandidate& c, Progress progress) {
  auto& log = *detail::logger();
  c.warnings.clear();
  std::error_code ec;
  fs::path real = fs::canonical(c.path, ec);
  c.stage = LoadStage::found;
  if (ec) {
    c.reason = "not found: " + echo(c.path) + ": " + ec.message();
    return;
  }
  const std::string real_path = real.string();

  if (std::string why = detail::insecurity(c.path, real_path); !why.empty()) {
    if (!detail::insecure_plugins_allowed()) {
      c.reason = "refused: " + why + " (FERRUM_ALLOW_INSECURE_PLUGINS=1 loads it anyway)";
      return;
    }
    c.warnings.push_back("insecure, loaded only because FERRUM_ALLOW_INSECURE_PLUGINS=1: " + why);
    log.warn("loader: SECURITY WARNING: {}: {}", c.path, c.warnings.back());
  }
  c.stage = LoadStage::trusted;

  // Before dlopen: a truncated file would fault inside the dynamic linker.
  detail::ElfCheck elf = detail::check_elf(real_path);
  if (!elf.error.empty()) {
    c.reason = "not a loadable shared object: " + elf.error;
    return;
  }
  if (!elf.extra_exports.empty()) {
    c.warnings.push_back("exports " + std::to_string(elf.extra_exports.size()) +
                         " symbol(s) besides " FERRUM_PLUGIN_ENTRY_SYMBOL ": " +
                         first_names(elf.extra_exports) +
                         " (a plugin should export only its entry symbol)");
    log.warn("loader: {}: {}", c.path, c.warnings.back());
  } else if (!elf.exports_checked) {
    log.debug("loader: {}: no section headers, exported symbols not checked", c.path);
  }
  c.stage = LoadStage::elf;

  std::lock_guard lock(loader_mutex());
  if (auto it = registry().find(real_path); it != registry().end()) {
    if (auto lib = it->second.lock()) {
      log.debug("loader: {} is already loaded, sharing it", real_path);
      fill_from_table(c, *lib);
      c.library = std::move(lib);
      c.stage = LoadStage::abi;
      return;
    }
  }

  dlerror();
  report(progress, "dlopen");
  void* handle = dlopen(real_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    c.reason = describe_dlopen_error(real_path, dlerror());
    return;
  }
  std::shared_ptr<PluginLibrary> lib(new PluginLibrary(real_path, name_from_file(c.path), handle),
                                     release_library);
  c.stage = LoadStage::opened;

  dlerror();
  void* sym = dlsym(handle, FERRUM_PLUGIN_ENTRY_SYMBOL);
  if (!sym) {
    c.reason = "no entry symbol " FERRUM_PLUGIN_ENTRY_SYMBOL ": not a ferrum 1.x plugin";
    return;
  }
  auto entry = reinterpret_cast<ferrum_plugin_entry_fn>(sym);
  lib->host.struct_size = sizeof(ferrum_host_info);
  lib->host.abi_major = FERRUM_ABI_VERSION_MAJOR;
  lib->host.abi_minor = FERRUM_ABI_VERSION_MINOR;
  lib->host.log = host_log;
  lib->host.log_user_data = lib.get();
  lib->host.log_min_level = detail::plugin_min_level();
  lib->host.report_error = host_report_error;  // ABI 1.1: reports of calls without a context
  lib->host.report_error_user_data = lib.get();
  const ferrum_plugin_api* api = nullptr;
  report(progress, "entry");
  ferrum_status st = entry(&lib->host, &api);
  if (st != FERRUM_STATUS_OK) {
    c.reason = std::string("entry " FERRUM_PLUGIN_ENTRY_SYMBOL " returned ") + status_name(st) +
               " (" + std::to_string(st) + ")";
    return;
  }
  if (!api) {
    c.reason = "entry " FERRUM_PLUGIN_ENTRY_SYMBOL " returned OK but no API table";
    return;
  }
  c.stage = LoadStage::entry;

  if (api->struct_size < FERRUM_PLUGIN_API_FROZEN_PREFIX_SIZE) {
    c.reason = "API table struct_size " + std::to_string(api->struct_size) +
               " is smaller than the frozen prefix (" +
               std::to_string(FERRUM_PLUGIN_API_FROZEN_PREFIX_SIZE) + " bytes)";
    return;
  }
  if (!api->plugin_name || !*api->plugin_name) {
    c.reason = "API table has no plugin_name";
    return;
  }
  lib->api = api;
  lib->name = api->plugin_name;
  fill_from_table(c, *lib);
  c.stage = LoadStage::prefix;
  c.library = lib;

  if (api->abi_major != FERRUM_ABI_VERSION_MAJOR) {
    c.reason = "ABI major " + std::to_string(api->abi_major) + ", host supports " +
               std::to_string(FERRUM_ABI_VERSION_MAJOR);
    return;
  }
  if (std::string why = table_problem(api); !why.empty()) {
    c.reason = why;
    return;
  }
  if (api->abi_minor > FERRUM_ABI_VERSION_MINOR)
    log.debug("loader: {} has ABI {}.{}, newer than the host's {}.{}: later slots ignored",
              real_path, api->abi_major, api->abi_minor, FERRUM_ABI_VERSION_MAJOR,
              FERRUM_ABI_VERSION_MINOR);
  c.stage = LoadStage::abi;
  lib->registered = true;
  registry()[real_path] = lib;
}

// Takes `c` as far as `target` goes (at most), filling stage/reason/score/devices.
void take(PluginCandidate& c, LoadStage target, Progress progress = nullptr) {
  auto& log = *detail::logger();
  c.usable = false;
  c.reason.clear();
  open_candidate(c, progress);
  if (!c.reason.empty() || c.stage != LoadStage::abi || target <= LoadStage::abi) {
    log.debug("loader: {}: stage {}{}{}", c.path, to_string(c.stage),
              c.reason.empty() ? "" : ": ", c.reason);
    return;
  }

  std::lock_guard lock(loader_mutex());
  PluginLibrary& lib = *c.library;
  const ferrum_plugin_api* api = lib.api;
  auto probe = FERRUM_LIFECYCLE(api, probe);
  if (!probe) {
    c.reason = "API table has no probe";
  } else {
    char text[512] = {0};
    int32_t score = 0;
    report(progress, "probe");
    detail::clear_report(&lib);
    ferrum_status st = probe(&score, text, sizeof text);
    text[sizeof text - 1] = '\0';
    c.score = score;
    if (st != FERRUM_STATUS_OK) {
      std::string why = *text ? std::string(text) : detail::plugin_detail(lib, nullptr, st);
      c.reason = std::string("probe failed: ") + status_name(st) + (why.empty() ? "" : ": ") + why;
    } else if (score <= 0) {
      c.reason = std::string("probe rejected it (score ") + std::to_string(score) + "): " +
                 (*text ? text : "no reason given");
    } else {
      c.stage = LoadStage::probed;
    }
  }
  if (!c.reason.empty() || target <= LoadStage::probed) {
    log.debug("loader: {}: stage {} (score {}){}{}", c.path, to_string(c.stage), c.score,
              c.reason.empty() ? "" : ": ", c.reason);
    return;
  }

  if (!lib.init_attempted) {
    lib.init_attempted = true;
    auto init = FERRUM_LIFECYCLE(api, init);
    if (!init) {
      lib.init_error = "API table has no init";
    } else {
      report(progress, "init");
      detail::clear_report(&lib);
      ferrum_status st = init();
      if (st == FERRUM_STATUS_OK) {
        lib.initialized = true;
      } else {
        std::string detail = detail::plugin_detail(lib, nullptr, st);
        lib.init_error = std::string("init failed: ") + status_name(st) +
                         (detail.empty() ? "" : ": ") + detail;
      }
    }
  }
  if (!lib.initialized) {
    c.reason = lib.init_error;
  } else if (auto count_fn = FERRUM_LIFECYCLE(api, device_count); !count_fn) {
    c.reason = "API table has no device_count";
  } else {
    uint64_t count = 0;
    report(progress, "device_count");
    detail::clear_report(&lib);
    ferrum_status st = count_fn(&count);
    c.device_count = count;
    if (st != FERRUM_STATUS_OK) {
      std::string detail = detail::plugin_detail(lib, nullptr, st);
      c.reason = std::string("device_count failed: ") + status_name(st) +
                 (detail.empty() ? "" : ": ") + detail;
    } else if (count == 0) {
      c.reason = "initialised but reports 0 devices";
    } else {
      c.stage = LoadStage::initialized;
      c.usable = true;
    }
  }
  log.debug("loader: {}: stage {} (score {}, {} device(s)){}{}", c.path, to_string(c.stage),
            c.score, c.device_count, c.reason.empty() ? "" : ": ", c.reason);
}

std::vector<std::string> split_colon_list(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(':', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string facade_plugin_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<const void*>(&facade_plugin_dir), &info) && info.dli_fname) {
    std::error_code ec;
    fs::path lib = fs::canonical(info.dli_fname, ec);
    if (!ec) return (lib.parent_path() / "ferrum").string();
  }
  return {};
}

std::vector<std::string> search_path_with(const detail::Config& config) {
  std::vector<std::string> raw;
  if (const std::string env = detail::code_env("FERRUM_PLUGIN_PATH"); !env.empty()) {
    raw = split_colon_list(env);
  } else {
    raw = config.plugin_path;
    // <dir of libferrum.so>/ferrum: the install's <libdir>/ferrum, and in a build tree its
    // lib/ferrum (where libferrum.so sits in lib/). No build path is compiled in, so an installed
    // libferrum never searches the tree it was built in.
    if (auto dir = facade_plugin_dir(); !dir.empty()) raw.push_back(dir);
  }
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (auto& dir : raw) {
    std::error_code ec;
    std::string key = fs::weakly_canonical(dir, ec).string();
    if (ec) key = dir;
    if (seen.insert(key).second) out.push_back(dir);
  }
  return out;
}

// Every libferrum-*.so in `dirs` (stage found), first occurrence of a file wins.
std::vector<PluginCandidate> scan(const std::vector<std::string>& dirs) {
  auto& log = *detail::logger();
  std::vector<PluginCandidate> out;
  std::set<std::string> seen;
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      log.debug("loader: searching {}: not a directory, skipped", dir);
      continue;
    }
    log.debug("loader: searching {}", dir);
    std::vector<std::string> files;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::string file = it->path().filename().string();
      if (file.rfind("libferrum-", 0) == 0 && file.size() > 13 &&
          file.compare(file.size() - 3, 3, ".so") == 0)
        files.push_back(it->path().string());
    }
    std::sort(files.begin(), files.end());
    for (auto& file : files) {
      std::string key = fs::weakly_canonical(file, ec).string();
      if (ec) key = file;
      if (!seen.insert(key).second) {
        log.debug("loader: {} already seen in an earlier directory, skipped", file);
        continue;
      }
      log.debug("loader: found {}", file);
      PluginCandidate c;
      c.path = file;
      c.name = name_from_file(file);
      c.stage = LoadStage::found;
      out.push_back(std::move(c));
    }
  }
  return out;
}

// "" when a context can be created (and destroyed) on the plugin's device 0; else why not.
std::string context_trial(PluginCandidate& c) {
  std::lock_guard lock(loader_mutex());
  PluginLibrary& lib = *c.library;
  const ferrum_op_fn make = common::find_slot(lib.api, FERRUM_OP_NEW_CONTEXT);
  const ferrum_op_fn destroy = common::find_slot(lib.api, FERRUM_OP_CONTEXT_DESTROY);
  if (!make) return "context creation on device 0 impossible: no new_context";
  if (!destroy) {  // a context_destroy slot may be NULL; a trial would leak the context
    detail::logger()->debug("loader: {}: no context_destroy, context creation not tried",
                            c.path);
    return {};
  }
  ferrum_context* ctx = nullptr;
  ferrum_new_context_args a{};
  a.struct_size = sizeof a;
  a.device_ordinal = 0;
  a.activation_dtype = 0;  // the plugin's default
  a.context = &ctx;
  detail::clear_report(&lib);
  ferrum_status st = make(nullptr, &a);
  if (st != FERRUM_STATUS_OK || !ctx) {
    std::string detail = st == FERRUM_STATUS_OK ? std::string() : detail::plugin_detail(lib, nullptr, st);
    return std::string("context creation on device 0 failed: new_context returned ") +
           (st == FERRUM_STATUS_OK ? "OK without a context" : status_name(st)) +
           (detail.empty() ? "" : ": ") + detail;
  }
  ferrum_context_destroy_args d{};
  d.struct_size = sizeof d;
  d.context = ctx;
  detail::clear_report(&lib);
  st = destroy(nullptr, &d);
  if (st != FERRUM_STATUS_OK) {
    std::string detail = detail::plugin_detail(lib, nullptr, st);
    return std::string("context_destroy on device 0 failed: ") + status_name(st) +
           (detail.empty() ? "" : ": ") + detail;
  }
  return {};
}

// The config, with the log level applied (FERRUM_LOG_LEVEL first: the config read logs too).
detail::Config configure() {
  detail::apply_log_level(std::nullopt, {});
  detail::Config config = detail::read_config();
  detail::apply_log_level(config.log_level, config.path);
  return config;
}

std::string join_dirs(const std::vector<std::string>& dirs) {
  std::string out;
  for (const auto& d : dirs) out += (out.empty() ? "" : ", ") + d;
  return out.empty() ? "(empty)" : out;
}

std::string list_candidates(const std::vector<PluginCandidate>& cs) {
  if (cs.empty()) return "none";
  std::string out;
  for (const auto& c : cs) {
    if (!out.empty()) out += "; ";
    out += echo(c.path) + ": " + to_string(c.stage) + ": " + (c.usable ? "usable" : c.reason);
  }
  return out;
}

struct ParsedSpec {
  std::string target;  // name or path
  bool is_path = false;
  bool has_device = false;
  uint64_t device = 0;
};

ParsedSpec parse_spec(const std::string& spec, const BackendSelection& sel) {
  ParsedSpec p;
  p.target = spec;
  if (auto colon = spec.rfind(':'); colon != std::string::npos && colon > 0) {
    std::string_view digits(spec.data() + colon + 1, spec.size() - colon - 1);
    bool all_digits = !digits.empty() &&
                      std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    if (all_digits) {
      auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), p.device);
      if (ec != std::errc() || ptr != digits.data() + digits.size())
        throw Error(ErrorCode::load_failed, "backend '" + echo(spec) + "' (from " +
                                                sel.source + "): device ordinal out of range");
      p.has_device = true;
      p.target = spec.substr(0, colon);
    }
  }
  p.is_path = p.target.find('/') != std::string::npos ||
              (p.target.size() >= 3 && p.target.compare(p.target.size() - 3, 3, ".so") == 0);
  if (p.target.empty())
    throw Error(ErrorCode::load_failed,
                "backend '" + echo(spec) + "' (from " + sel.source + "): empty backend name");
  return p;
}

[[noreturn]] void fail_named(const BackendSelection& sel, const std::string& reason,
                             const std::vector<PluginCandidate>& cs) {
  throw Error(ErrorCode::load_failed, "backend '" + echo(sel.spec) + "' (from " + sel.source +
                                          ") could not be loaded: " + reason +
                                          "; candidates: " + list_candidates(cs));
}

}  // namespace

// ---------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------
const char* to_string(LoadStage stage) noexcept {
  switch (stage) {
    case LoadStage::found: return "found";
    case LoadStage::trusted: return "trusted";
    case LoadStage::elf: return "elf";
    case LoadStage::opened: return "opened";
    case LoadStage::entry: return "entry";
    case LoadStage::prefix: return "prefix";
    case LoadStage::abi: return "abi";
    case LoadStage::probed: return "probed";
    case LoadStage::initialized: return "initialized";
  }
  return "unknown";
}

const ferrum_plugin_api* api_of(const PluginLibrary& library) noexcept { return library.api; }
const std::string& path_of(const PluginLibrary& library) noexcept { return library.path; }
const std::string& name_of(const PluginLibrary& library) noexcept { return library.name; }

namespace {
// The plugin's own error_detail(ctx); "" when it has none or it fails.
std::string plugin_error_detail(const PluginLibrary& library, ferrum_context* ctx) {
  auto fn = FERRUM_LIFECYCLE(library.api, error_detail);
  if (!fn) return {};
  std::string buf(256, '\0');
  uint64_t needed = 0;
  if (fn(ctx, buf.data(), buf.size(), &needed) != FERRUM_STATUS_OK) return {};
  if (needed > buf.size() && needed < (1u << 20)) {
    buf.assign(needed, '\0');
    if (fn(ctx, buf.data(), buf.size(), &needed) != FERRUM_STATUS_OK) return {};
  }
  buf.resize(strnlen(buf.data(), buf.size()));
  return buf;
}
}  // namespace

void detail::clear_report(const PluginLibrary* lib) noexcept {
  if (!lib) return;
  for (auto it = t_reports.begin(); it != t_reports.end(); ++it)
    if (it->serial == lib->serial) {
      t_reports.erase(it);
      return;
    }
}

std::string detail::plugin_detail(const PluginLibrary& lib, ferrum_context* ctx, ferrum_status status) {
  auto reported = [&]() -> std::string {
    const Report* r = find_report(lib.serial);
    return r && (status == FERRUM_STATUS_OK || r->status == status) ? r->message : std::string();
  };
  if (ctx) {  // the per-context detail first; a report only if the plugin kept none there
    std::string text = plugin_error_detail(lib, ctx);
    return text.empty() ? reported() : text;
  }
  std::string text = reported();
  return text.empty() ? plugin_error_detail(lib, nullptr) : text;
}

std::string last_plugin_error(const PluginLibrary& library, ferrum_context* ctx) {
  return detail::plugin_detail(library, ctx, FERRUM_STATUS_OK);
}

std::vector<PluginCandidate> find_plugins() {
  detail::Config config = configure();
  return scan(search_path_with(config));
}

PluginCandidate inspect_plugin(const std::string& path, LoadStage target,
                               void (*progress)(const char* phase)) {
  (void)configure();  // the log level, and a config error, as for discovery
  PluginCandidate c;
  c.path = path;
  c.name = name_from_file(path);
  take(c, target, progress);
  return c;
}

std::vector<std::string> plugin_search_path() {
  return search_path_with(detail::read_config());
}

std::vector<PluginCandidate> discover_plugins(bool initialize) {
  detail::Config config = configure();
  auto candidates = scan(search_path_with(config));
  for (auto& c : candidates) take(c, initialize ? LoadStage::initialized : LoadStage::probed);
  return candidates;
}

LoadedBackend load_backend(std::string_view spec_arg) {
  detail::Config config = configure();
  auto& log = *detail::logger();

  BackendSelection sel;
  const std::string env = detail::code_env("FERRUM_BACKEND");
  if (!spec_arg.empty()) {
    sel = {std::string(spec_arg), "argument"};
  } else if (!env.empty()) {
    sel = {env, "FERRUM_BACKEND"};
  } else if (config.backend && !config.backend->empty()) {
    sel = {*config.backend, "config " + config.path};
  } else {
    sel = {"auto", "auto"};
  }
  log.debug("loader: backend '{}' chosen by {}", echo(sel.spec), sel.source);

  const auto dirs = search_path_with(config);
  LoadedBackend out;
  out.selection = sel;

  if (sel.spec == "auto") {
    out.candidates = scan(dirs);
    for (auto& c : out.candidates) take(c, LoadStage::probed);
    std::vector<size_t> order;
    for (size_t i = 0; i < out.candidates.size(); ++i)
      if (out.candidates[i].stage == LoadStage::probed && out.candidates[i].reason.empty())
        order.push_back(i);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return out.candidates[a].score > out.candidates[b].score;
    });
    const PluginCandidate* chosen = nullptr;
    for (size_t i : order) {
      auto& c = out.candidates[i];
      if (chosen) {
        c.reason = "not chosen by auto (score " + std::to_string(c.score) + "; '" +
                   chosen->name + "' has " + std::to_string(chosen->score) + ")";
        continue;
      }
      take(c, LoadStage::initialized);
      if (!c.usable) continue;
      if (std::string why = context_trial(c); !why.empty()) {
        c.usable = false;
        c.reason = why;
        log.debug("loader: auto: {}: {}", c.path, why);
        continue;
      }
      chosen = &c;
    }
    if (!chosen)
      throw Error(ErrorCode::load_failed,
                  "no backend could be loaded (auto; plugin directories: " + join_dirs(dirs) +
                      "); candidates: " + list_candidates(out.candidates));
    out.library = chosen->library;
    log.debug("loader: auto chose '{}' ({}), score {}", chosen->name, chosen->path,
              chosen->score);
    return out;
  }

  ParsedSpec p = parse_spec(sel.spec, sel);
  const PluginCandidate* chosen = nullptr;
  if (p.is_path) {
    PluginCandidate c;
    c.path = p.target;
    c.name = name_from_file(p.target);
    take(c, LoadStage::initialized);
    out.candidates.push_back(std::move(c));
    if (!out.candidates.back().usable) fail_named(sel, out.candidates.back().reason, out.candidates);
    chosen = &out.candidates.back();
  } else {
    out.candidates = scan(dirs);
    PluginCandidate* match = nullptr;
    for (auto& c : out.candidates) {
      if (c.name != p.target) {
        c.reason = "not selected (name '" + c.name + "', asked for '" + echo(p.target) + "')";
      } else if (match) {
        c.reason = "shadowed by " + match->path;
      } else {
        match = &c;
        take(c, LoadStage::initialized);
      }
    }
    if (!match)
      fail_named(sel,
                 "no libferrum-" + echo(p.target) + ".so in the plugin directories (" + join_dirs(dirs) + ")",
                 out.candidates);
    if (!match->usable) fail_named(sel, match->reason, out.candidates);
    chosen = match;
  }

  if (p.has_device && p.device >= chosen->device_count)
    throw Error(ErrorCode::load_failed,
                "backend '" + echo(sel.spec) + "' (from " + sel.source + ") could not be loaded: device " +
                    std::to_string(p.device) + " requested but plugin '" + chosen->name + "' has " +
                    std::to_string(chosen->device_count) + " device(s)");
  out.library = chosen->library;
  out.device = p.device;
  log.debug("loader: loaded '{}' ({}), device {}", chosen->name, chosen->path, out.device);
  return out;
}

}  // namespace ferrum
