// Command-line conventions shared by the ferrum tools, on top of CLI11:
//  - numeric flags are strict: decimal only (no sign, no hex or octal, no trailing characters),
//    range-checked, never truncated or wrapped: `--tokens 12abc`, `--tokens -1`,
//    `--tokens 99999999999999999999` and a value outside the flag's range are usage errors;
//  - a usage error prints "<tool>: <flag>: expected <what>, given '<value>'" plus a hint to
//    stderr and exits 2; --help prints the help to stdout and exits 0.
#pragma once

#include <CLI/CLI.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace ferrum::tools {

inline constexpr int kExitUsage = 2;

// A caller-given value as it is echoed in a message: quoted, at most 40 characters.
inline std::string quoted(std::string_view given) {
  constexpr size_t kMax = 40;
  if (given.size() <= kMax) return "'" + std::string(given) + "'";
  return "'" + std::string(given.substr(0, kMax)) + "...' (" + std::to_string(given.size()) + " characters)";
}

// Parses `text` as a decimal integer in [lo, hi]. On failure returns nullopt and sets `error` to
// "expected an integer from lo to hi, given '<text>'" plus why, when it is not obvious.
template <class T>
std::optional<T> parse_integer(std::string_view text, T lo, T hi, std::string& error) {
  static_assert(std::is_integral_v<T>);
  T v{};
  const char* b = text.data();
  const char* e = b + text.size();
  const auto [p, ec] = std::from_chars(b, e, v);
  if (ec == std::errc() && p == e && v >= lo && v <= hi) return v;
  std::string why;
  if (text.empty()) why = " (empty)";
  else if (ec == std::errc::result_out_of_range) why = " (does not fit in " + std::to_string(sizeof(T) * 8) + " bits)";
  else if (ec != std::errc() || p != e) why = text[0] == '-' && std::is_unsigned_v<T> ? " (negative)" : " (not a decimal integer)";
  error = "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", given " +
          quoted(text) + why;
  return std::nullopt;
}

// Parses `text` as a finite decimal number in (lo, hi] (lo excluded: 0 means "positive").
inline std::optional<double> parse_positive(std::string_view text, double lo, double hi, std::string& error) {
  double v = 0;
  const char* b = text.data();
  const char* e = b + text.size();
  const auto [p, ec] = std::from_chars(b, e, v, std::chars_format::general);
  if (ec == std::errc() && p == e && std::isfinite(v) && v > lo && v <= hi) return v;
  std::string why;
  if (text.empty()) why = " (empty)";
  else if (ec == std::errc::result_out_of_range) why = " (out of the range of a double)";
  else if (ec != std::errc() || p != e) why = " (not a decimal number)";
  else if (!std::isfinite(v)) why = " (not finite)";
  char range[96];
  std::snprintf(range, sizeof range, "a number greater than %.10g and at most %.10g", lo, hi);
  error = std::string("expected ") + range + ", given " + quoted(text) + why;
  return std::nullopt;
}

// CLI11 transform: validates with parse_integer and rewrites the text in canonical decimal, so
// CLI11's own conversion (which would accept 0x.. and 0.. octal) sees only what we accepted.
template <class T>
CLI::Validator integer_in(T lo, T hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        std::string error;
        const auto v = parse_integer<T>(s, lo, hi, error);
        if (!v) return error;
        s = std::to_string(*v);
        return {};
      },
      "", "integer_in");
}

inline CLI::Validator positive_up_to(double hi, double lo = 0) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        std::string error;
        const auto v = parse_positive(s, lo, hi, error);
        if (!v) return error;
        char buf[40];
        std::snprintf(buf, sizeof buf, "%.17g", *v);
        s = buf;
        return {};
      },
      "", "positive_up_to");
}

// A non-empty string flag (a backend spec, a glob).
inline CLI::Validator non_empty(const char* what) {
  return CLI::Validator(
      [what](std::string& s) -> std::string {
        if (!s.empty()) return {};
        return std::string("expected ") + what + ", given ''";
      },
      "", "non_empty");
}

// `--name N`: an integer flag in [lo, hi], stored in `var` (whose value is the default).
template <class T>
CLI::Option* add_integer(CLI::App& app, const std::string& name, T& var, T lo, T hi, const std::string& help) {
  return app.add_option(name, var, help + " [" + std::to_string(lo) + ".." + std::to_string(hi) + "]")
      ->transform(integer_in<T>(lo, hi))
      ->type_name("N")
      ->capture_default_str();
}

// `--name X`: a number flag in (lo, hi], stored in `var`.
inline CLI::Option* add_positive(CLI::App& app, const std::string& name, double& var, double hi,
                                 const std::string& help) {
  char range[48];
  std::snprintf(range, sizeof range, " (0..%.10g]", hi);
  return app.add_option(name, var, help + range)->transform(positive_up_to(hi))->type_name("X");
}

// Prints "<tool>: <message>" and the --help hint to stderr and exits 2.
[[noreturn]] inline void usage_error(const CLI::App& app, const std::string& message) {
  std::fprintf(stderr, "%s: %s\nRun '%s --help' for the options.\n", app.get_name().c_str(), message.c_str(),
               app.get_name().c_str());
  std::fflush(stderr);
  std::exit(kExitUsage);
}

// Parses the command line: --help prints the help and exits 0; any usage error exits 2.
inline void parse_or_exit(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) std::exit(app.exit(e));  // --help
    usage_error(app, e.what());
  }
}

}  // namespace ferrum::tools
