#include "trust.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <system_error>

#include <ferrum/error.hpp>

#include "log.hpp"

namespace ferrum::detail {
namespace {

namespace fs = std::filesystem;

std::string octal_mode(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// "" when `path` (stat, following links) is neither group/other-writable nor owned by a
// user other than root and the effective user; else why, starting with `what path`.
std::string unsafe(const std::string& what, const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return what + " " + path + " cannot be checked: " + std::strerror(errno);
  const bool by_group = st.st_mode & S_IWGRP, by_others = st.st_mode & S_IWOTH;
  if (by_group || by_others)
    return what + " " + path + " is writable by " +
           (by_group && by_others ? "group and others" : by_group ? "group" : "others") +
           " (mode " + octal_mode(st.st_mode) + ")";
  const uid_t me = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != me)
    return what + " " + path + " is owned by uid " + std::to_string(st.st_uid) +
           ", neither root nor this process's user (uid " + std::to_string(me) + ")";
  return {};
}

std::string directory_of(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) parent = ".";
  std::error_code ec;
  fs::path canon = fs::canonical(parent, ec);
  return ec ? parent.string() : canon.string();
}

}  // namespace

std::string code_env(const char* name) {
  if (const char* v = ::secure_getenv(name)) return v;
  if (const char* raw = std::getenv(name); raw && *raw) {
    static std::mutex m;
    static std::set<std::string> warned;
    std::lock_guard lock(m);
    if (warned.insert(name).second)
      logger()->warn("loader: {} is ignored: this is a privileged process (setuid, setgid or "
                     "file capabilities), which loads plugins only from the default locations",
                     name);
  }
  return {};
}

bool insecure_plugins_allowed() {
  const std::string v = code_env("FERRUM_ALLOW_INSECURE_PLUGINS");
  if (v.empty() || v == "0") return false;
  if (v == "1") return true;
  throw Error(ErrorCode::config_error,
              "FERRUM_ALLOW_INSECURE_PLUGINS='" + v.substr(0, 64) + "' must be 0 or 1");
}

std::string insecurity(const std::string& found_path, const std::string& real_path) {
  if (auto why = unsafe("plugin file", real_path); !why.empty()) return why;
  const std::string found_dir = directory_of(found_path), real_dir = directory_of(real_path);
  if (auto why = unsafe("directory", found_dir); !why.empty()) return why;
  if (real_dir != found_dir)
    if (auto why = unsafe("directory", real_dir); !why.empty()) return why;
  return {};
}

}  // namespace ferrum::detail
