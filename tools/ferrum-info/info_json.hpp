// ferrum-info's JSON report (info_json.cpp), shared by the ferrum-info tool and the Python
// package's ferrum.info(), so both print the same thing.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace ferrum::tools {

using ordered_json = nlohmann::ordered_json;

// One entry per libferrum-*.so in the search path. isolate: each plugin is loaded, probed and
// initialised in a child process (a crash, exit or hang there is reported, killed after
// timeout_s); otherwise all are loaded into this process. Throws ferrum::Error (config_error).
ordered_json info_plugins(bool isolate, int timeout_s);
// {"plugins": plugins, "facade_composes": [ops the facade composes when a slot is NULL]}.
ordered_json info_root(const ordered_json& plugins);
// info_root(info_plugins(isolate, timeout_s)), as `ferrum-info --json` prints it.
std::string info_json_text(bool isolate, int timeout_s);

}  // namespace ferrum::tools
