// Internal: the loader's trust boundary.
//
// 1. Environment variables that choose code to load (FERRUM_BACKEND, FERRUM_PLUGIN_PATH,
//    FERRUM_CONFIG, XDG_CONFIG_HOME, HOME, FERRUM_ALLOW_INSECURE_PLUGINS) are read with
//    secure_getenv: a setuid/setgid process or one with file capabilities (AT_SECURE) ignores
//    them, as the dynamic linker ignores LD_LIBRARY_PATH there. Each ignored variable is
//    logged once.
// 2. A plugin file, or the directory it was found in (or the directory of its real path),
//    that is writable by group or others, or owned by a user other than root and this
//    process's effective user, is refused — unless FERRUM_ALLOW_INSECURE_PLUGINS=1, which
//    loads it with a warning.
#pragma once

#include <string>

namespace ferrum::detail {

// The variable's value ("" when unset), or "" in a privileged process (logged once).
std::string code_env(const char* name);

// FERRUM_ALLOW_INSECURE_PLUGINS: "1" true; unset, "" or "0" false; anything else
// Error(config_error). Read with code_env.
bool insecure_plugins_allowed();

// "" when the plugin at `found_path` (as found or named) whose canonical path is
// `real_path` passes the ownership/mode rule; else the reason, naming the file or directory,
// its mode or owner.
std::string insecurity(const std::string& found_path, const std::string& real_path);

}  // namespace ferrum::detail
