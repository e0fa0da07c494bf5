#include "config.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
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

// A SAX pass that stops at the first key appearing twice in one object (the DOM parser keeps
// the last one silently). Malformed JSON just ends the pass: the DOM parse reports it.
class DuplicateKeys final : public nlohmann::json_sax<json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    open_.emplace_back();
    return true;
  }
  bool key(string_t& k) override {
    if (open_.back().insert(k).second) return true;
    duplicate = k;
    return false;
  }
  bool end_object() override {
    open_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

  std::string duplicate;  // "" when none

 private:
  std::vector<std::set<std::string>> open_;  // the keys of each object being parsed
};

// The first key given twice in one object of `text`, or "".
std::string duplicate_key(const std::string& text) {
  DuplicateKeys sax;
  try {
    json::sax_parse(text, &sax);
  } catch (const std::exception&) {  // malformed or too deep: the DOM parse says why
  }
  return sax.duplicate;
}

}  // namespace

Config read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot be opened");
  std::stringstream text;
  text << in.rdbuf();
  if (std::string dup = duplicate_key(text.str()); !dup.empty())
    fail(path, "duplicate key \"" + dup.substr(0, 128) + "\" (each key may appear once)");

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
