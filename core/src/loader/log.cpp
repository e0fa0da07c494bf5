#include "log.hpp"

#include <cstdlib>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>

#include <ferrum/error.hpp>
#include <ferrum/ferrum_base.h>

namespace ferrum::detail {

std::shared_ptr<spdlog::logger> logger() noexcept {
  static std::shared_ptr<spdlog::logger> instance = []() -> std::shared_ptr<spdlog::logger> {
    try {
      if (auto existing = spdlog::get("ferrum")) return existing;
      auto made = spdlog::stderr_color_mt("ferrum");
      made->set_level(spdlog::level::warn);
      return made;
    } catch (...) {
      // Registered concurrently by someone else (the facade): use theirs.
      if (auto existing = spdlog::get("ferrum")) return existing;
      return std::make_shared<spdlog::logger>("ferrum");  // no sinks: silent
    }
  }();
  return instance;
}

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view text) noexcept {
  if (text == "trace") return spdlog::level::trace;
  if (text == "debug") return spdlog::level::debug;
  if (text == "info") return spdlog::level::info;
  if (text == "warn") return spdlog::level::warn;
  if (text == "error") return spdlog::level::err;
  if (text == "off") return spdlog::level::off;
  return std::nullopt;
}

void apply_log_level(const std::optional<std::string>& config_level,
                     std::string_view config_source) {
  auto level = spdlog::level::warn;
  if (const char* env = std::getenv("FERRUM_LOG_LEVEL"); env && *env) {
    auto parsed = parse_log_level(env);
    if (!parsed)
      throw Error(ErrorCode::config_error,
                  std::string("FERRUM_LOG_LEVEL='") + env +
                      "' is not one of trace|debug|info|warn|error|off");
    level = *parsed;
  } else if (config_level) {
    auto parsed = parse_log_level(*config_level);
    if (!parsed)
      throw Error(ErrorCode::config_error,
                  "config " + std::string(config_source) + ": \"log_level\" is '" +
                      *config_level + "', expected one of trace|debug|info|warn|error|off");
    level = *parsed;
  }
  logger()->set_level(level);
}

int32_t plugin_min_level() noexcept {
  switch (logger()->level()) {
    case spdlog::level::trace: return FERRUM_LOG_TRACE;
    case spdlog::level::debug: return FERRUM_LOG_DEBUG;
    case spdlog::level::info: return FERRUM_LOG_INFO;
    case spdlog::level::warn: return FERRUM_LOG_WARN;
    case spdlog::level::err:
    case spdlog::level::critical: return FERRUM_LOG_ERROR;
    default: return FERRUM_LOG_ERROR + 1;
  }
}

}  // namespace ferrum::detail
