// Internal: the "ferrum" spdlog logger shared by the loader (and the facade).
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

namespace ferrum::detail {

// The "ferrum" logger (created on first use, stderr). Never throws.
std::shared_ptr<spdlog::logger> logger() noexcept;

// Parses trace|debug|info|warn|error|off; nullopt if it is none of them.
std::optional<spdlog::level::level_enum> parse_log_level(std::string_view text) noexcept;

// FERRUM_LOG_LEVEL (else `config_level`, else warn) applied to logger(). Throws
// Error(config_error) for a value that is not a level.
void apply_log_level(const std::optional<std::string>& config_level,
                     std::string_view config_source);

// The FERRUM_LOG_* value matching the logger's current level (6 = nothing).
int32_t plugin_min_level() noexcept;

}  // namespace ferrum::detail
