#include "config.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include <ferrum/error.hpp>

#include "log.hpp"
#include "trust.hpp"

namespace ferrum::detail {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::config_error, "config " + path + ": " + what);
}

const char* json_type(const json& j) { return j.type_name(); }

// "" when `path` is a regular file (following links); "missing" when nothing is there;
// else what it is instead.
std::string not_a_file(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (st.type() == fs::file_type::not_found) return "missing";
  if (ec) return "cannot be read: " + ec.message();
  if (st.type() == fs::file_type::regular) return {};
  if (st.type() == fs::file_type::directory) return "is a directory, not a file";
  return "is not a regular file";
}

// Rejects a key that appears twice in one object (nlohmann keeps the last one silently).
class DuplicateKeys {
 public:
  bool operator()(int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      if (keys_.size() <= static_cast<size_t>(depth)) keys_.resize(static_cast<size_t>(depth) + 1);
      keys_[static_cast<size_t>(depth)].clear();
    } else if (event == json::parse_event_t::key && duplicate_.empty()) {
      // The key event comes at the depth of the object's members.
      const size_t level = depth > 0 ? static_cast<size_t>(depth) - 1 : 0;
      if (keys_.size() <= level) keys_.resize(level + 1);
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!keys_[level].insert(key).second) duplicate_ = key;
    }
    return true;
  }
  const std::string& duplicate() const { return duplicate_; }

 private:
  std::vector<std::set<std::string>> keys_;
  std::string duplicate_;
};

}  // namespace

Config read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot be opened");
  std::stringstream text;
  text << in.rdbuf();

  json doc;
  DuplicateKeys dups;
  try {
    doc = json::parse(text.str(), std::ref(dups));
  } catch (const json::parse_error& e) {
    fail(path, std::string("invalid JSON: ") + e.what());
  }
  if (!dups.duplicate().empty())
    fail(path, "duplicate key \"" + dups.duplicate().substr(0, 128) +
                   "\" (each key may appear once)");
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
  if (std::string explicit_path = code_env("FERRUM_CONFIG"); !explicit_path.empty()) {
    if (std::string why = not_a_file(explicit_path); !why.empty())
      throw Error(ErrorCode::config_error,
                  "FERRUM_CONFIG names " + explicit_path + ", which " +
                      (why == "missing" ? std::string("does not exist") : why));
    return read_config_file(explicit_path);
  }
  std::vector<std::string> defaults;
  if (std::string xdg = code_env("XDG_CONFIG_HOME"); !xdg.empty())
    defaults.push_back(xdg + "/ferrum/config.json");
  else if (std::string home = code_env("HOME"); !home.empty())
    defaults.push_back(home + "/.config/ferrum/config.json");
  defaults.push_back("/etc/ferrum/config.json");
  for (const auto& path : defaults) {
    const std::string why = not_a_file(path);
    if (why.empty()) {
      logger()->debug("config: reading {}", path);
      return read_config_file(path);
    }
    if (why != "missing") fail(path, why);
    logger()->debug("config: no {}", path);
  }
  return {};
}

}  // namespace ferrum::detail
