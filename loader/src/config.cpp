#include "config.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include <nlohmann/json.hpp>

#include <ferrum/error.hpp>

#include "log.hpp"

namespace ferrum::detail {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::config_error, "config " + path + ": " + what);
}

const char* json_type(const json& j) { return j.type_name(); }

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

}  // namespace

Config read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot be opened");
  std::stringstream text;
  text << in.rdbuf();

  json doc;
  try {
    doc = json::parse(text.str());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e400
    fail(path, std::string("invalid JSON: ") + e.what());
  }
  if (!doc.is_object())
    fail(path, std::string("the top level must be an object, given ") + json_type(doc));

  Config config;
  config.path = path;
  for (const auto& [key, value] : doc.items()) {
    if (key == "backend") {
      if (!value.is_string())
        fail(path, std::string("key \"backend\" must be a string, given ") + json_type(value));
      config.backend = value.get<std::string>();
    } else if (key == "log_level") {
      if (!value.is_string())
        fail(path, std::string("key \"log_level\" must be a string, given ") + json_type(value));
      config.log_level = value.get<std::string>();
      if (!parse_log_level(*config.log_level))
        fail(path, "key \"log_level\" is '" + *config.log_level +
                       "', expected one of trace|debug|info|warn|error|off");
    } else if (key == "plugin_path") {
      if (!value.is_array())
        fail(path, std::string("key \"plugin_path\" must be an array of strings, given ") +
                       json_type(value));
      for (size_t i = 0; i < value.size(); ++i) {
        if (!value[i].is_string())
          fail(path, "key \"plugin_path\" must be an array of strings, element " +
                         std::to_string(i) + " is " + json_type(value[i]));
        config.plugin_path.push_back(value[i].get<std::string>());
      }
    } else {
      fail(path, "unknown key \"" + key + "\" (known: backend, plugin_path, log_level)");
    }
  }
  return config;
}

Config read_config() {
  if (std::string explicit_path = env("FERRUM_CONFIG"); !explicit_path.empty()) {
    if (!exists(explicit_path))
      throw Error(ErrorCode::config_error,
                  "FERRUM_CONFIG names " + explicit_path + ", which does not exist");
    return read_config_file(explicit_path);
  }
  std::vector<std::string> defaults;
  if (std::string xdg = env("XDG_CONFIG_HOME"); !xdg.empty())
    defaults.push_back(xdg + "/ferrum/config.json");
  else if (std::string home = env("HOME"); !home.empty())
    defaults.push_back(home + "/.config/ferrum/config.json");
  defaults.push_back("/etc/ferrum/config.json");
  for (const auto& path : defaults) {
    if (exists(path)) {
      logger()->debug("config: reading {}", path);
      return read_config_file(path);
    }
    logger()->debug("config: no {}", path);
  }
  return {};
}

}  // namespace ferrum::detail
