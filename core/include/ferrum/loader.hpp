// ferrum loader — finds, opens, checks, probes and initialises backend plugins (docs/design.md §2).
//
// Precedence of the backend choice: explicit argument > FERRUM_BACKEND > JSON config file
// (FERRUM_CONFIG, else $XDG_CONFIG_HOME/ferrum/config.json or ~/.config/ferrum/config.json,
// then /etc/ferrum/config.json) > auto. A backend that was named (by any of the first three)
// loads or the call fails with the reason; only `auto` chooses, by the probe score.
//
// Plugin directories (plugin_search_path): FERRUM_PLUGIN_PATH (colon list) replaces the
// defaults when set and non-empty; otherwise the config's "plugin_path" entries, then
// <dir of libferrum.so>/ferrum (build/lib/ferrum in a build tree).
//
// Trust boundary: in a privileged process (setuid/setgid or file capabilities) the variables
// that choose code to load (FERRUM_BACKEND, FERRUM_PLUGIN_PATH, FERRUM_CONFIG,
// XDG_CONFIG_HOME, HOME, FERRUM_ALLOW_INSECURE_PLUGINS) are ignored (secure_getenv). A plugin
// file or directory writable by group/others or owned by another non-root user is refused
// (stage `found`) unless FERRUM_ALLOW_INSECURE_PLUGINS=1. Before dlopen the file's ELF
// headers are checked (stage `trusted`), so a truncated, empty, text or foreign file is
// refused with a reason instead of faulting inside the dynamic linker.
//
// Thread contract: every function here is thread-safe (loading is serialised internally).
// Ownership: a PluginLibrary stays loaded while any shared_ptr to it lives; the plugin's
// init runs at most once per process load, and shutdown + dlclose run when the last
// shared_ptr goes. Loading the same file twice (by any path) shares one PluginLibrary.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <ferrum/error.hpp>
#include <ferrum/export.hpp>
#include <ferrum/ferrum_plugin.h>

namespace ferrum {

// The last stage a candidate PASSED.
enum class LoadStage {
  found = 1,    // the file exists in the search path (or was named by path)
  trusted,      // the file and its directory pass the ownership/mode rule (see above)
  elf,          // an ELF shared object for this machine, every header and segment in the file
  opened,       // dlopen succeeded
  entry,        // ferrum_plugin_entry_v1 found, called, returned a table
  prefix,       // the table's frozen prefix is readable (struct_size, name)
  abi,          // ABI major equals the host's; the table and every sub-table are as large as
                // the declared minor requires; the memory and context families are present
  probed,       // probe said usable (score > 0)
  initialized,  // init succeeded: ready
};

// "found", "trusted", "elf", "opened", "entry", "prefix", "abi", "probed", "initialized".
FERRUM_API const char* to_string(LoadStage stage) noexcept;

// One dlopen'd plugin (opaque). See the ownership note above.
class PluginLibrary;

struct PluginCandidate {
  std::string name;  // plugin_name from its table, else from the file name libferrum-<name>.so
  std::string path;
  LoadStage stage = LoadStage::found;  // last stage passed
  bool usable = false;                 // initialized and ready
  std::string reason;                  // why it stopped (empty if usable)
  int32_t score = 0;
  uint32_t abi_major = 0, abi_minor = 0;
  std::string version, build_info;
  uint64_t device_count = 0;
  // Things that did not stop the load but should be looked at (also logged at warn):
  // symbols exported besides the entry symbol; an insecure file loaded by opt-in.
  std::vector<std::string> warnings;
  // Set from stage `prefix` on (the table is readable even if the probe said no).
  std::shared_ptr<PluginLibrary> library;
};

struct BackendSelection {
  std::string spec;    // what was asked: "auto", "cpu", "cuda:1", "/path/libferrum-x.so"
  std::string source;  // "argument", "FERRUM_BACKEND", "config <path>", "auto"
};

struct LoadedBackend {
  std::shared_ptr<PluginLibrary> library;  // initialised
  uint64_t device = 0;                     // ordinal from "name:N" (0 if none)
  BackendSelection selection;
  std::vector<PluginCandidate> candidates;  // every candidate considered, as far as it went
};

// `auto` takes every candidate up to `probed`, then, best score first, initialises it and
// creates and destroys a context on its device 0; the first for which all of that succeeds
// is chosen. Failing that, the error lists every candidate and why it was not chosen.
// spec: "" = decide by precedence; "auto"; a name "cpu" / "cuda" / "cuda:1" (device ordinal
// after ':'); or a path to a .so (contains '/' or ends in ".so"; may also end in ":N").
// Throws Error(load_failed) with a message listing every candidate and its reason, and
// Error(config_error) for a malformed config file / environment value. Never falls back
// from a named backend.
FERRUM_API LoadedBackend load_backend(std::string_view spec = {});

// Every libferrum-*.so in the search path, each taken as far as it goes: up to `probed`
// without `initialize`, up to `initialized` with it.
FERRUM_API std::vector<PluginCandidate> discover_plugins(bool initialize = false);

// The libferrum-*.so files in the search path (stage `found`), opening none of them.
FERRUM_API std::vector<PluginCandidate> find_plugins();

// One plugin file taken as far as `target` goes (at most), exactly as discover_plugins
// takes each file it finds. `progress` (optional) is called with "dlopen", "entry",
// "probe", "init" and "device_count" just before each of those calls into plugin code, so
// a caller running this in a child process can tell where a plugin crashed.
FERRUM_API PluginCandidate inspect_plugin(const std::string& path,
                                          LoadStage target = LoadStage::initialized,
                                          void (*progress)(const char* phase) = nullptr);

// The plugin directories, in search order (see the top of this file).
FERRUM_API std::vector<std::string> plugin_search_path();

// The plugin's API table (borrowed: valid while the library lives).
FERRUM_API const ferrum_plugin_api* api_of(const PluginLibrary& library) noexcept;
// The real path of the .so.
FERRUM_API const std::string& path_of(const PluginLibrary& library) noexcept;
// The plugin's name (from its table).
FERRUM_API const std::string& name_of(const PluginLibrary& library) noexcept;
// The detail text of the plugin's last failure on ctx (NULL: this thread's last failure
// outside a context: what the plugin reported through ferrum_host_info.report_error (ABI 1.1)
// since the host's last context-less call into it on this thread, else its
// error_detail(NULL)); "" when there is none.
FERRUM_API std::string last_plugin_error(const PluginLibrary& library, ferrum_context* ctx);

}  // namespace ferrum
