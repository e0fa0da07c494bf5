// Internal: the JSON config file (docs/design.md §2.1).
//
// Location: $FERRUM_CONFIG (must be a file), else $XDG_CONFIG_HOME/ferrum/config.json (or
// ~/.config/ferrum/config.json when XDG_CONFIG_HOME is unset), else
// /etc/ferrum/config.json; a missing default file means "no config", a directory there is an
// error. The three variables are read with secure_getenv (ignored in privileged processes).
// Keys: "backend" (string), "plugin_path" (array of strings), "log_level" (string:
// trace|debug|info|warn|error|off), each at most once. Anything else is Error(config_error).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace ferrum::detail {

struct Config {
  std::string path;  // file read; empty when there is none
  std::optional<std::string> backend;
  std::vector<std::string> plugin_path;
  std::optional<std::string> log_level;
};

// Reads the config from the environment's location. Throws Error(config_error).
Config read_config();

// Parses one file (exists or Error(config_error)).
Config read_config_file(const std::string& path);

}  // namespace ferrum::detail
