// Internal: the host's side of ferrum_host_info.report_error (ABI 1.1) — the detail of a plugin's
// failed call without a context, kept per thread and per plugin library by the host, so that a
// plugin needs no thread-local storage of its own (a C99 plugin has none).
//
// Every host call of a plugin that has no context (lifecycle calls, [no ctx] ops) is bracketed:
//   detail::clear_report(lib);            // forget this thread's earlier report of lib
//   ferrum_status st = slot(nullptr, ..); // the plugin may call report_error(lib, st, "...")
//   if (st != OK) msg = detail::plugin_detail(lib, nullptr, st);
// plugin_detail's precedence (docs/plugin-guide.md §4):
//   ctx == NULL: this thread's report of that call (status equal to the returned one), else the
//                plugin's error_detail(NULL) (a 1.0 plugin, or a plugin given no report_error),
//                else "".
//   ctx != NULL: error_detail(ctx) (the per-context detail), else a report of that call, else "".
// Thread-safe: the reports live in thread-local storage; nothing is locked.
#pragma once

#include <string>

#include <ferrum/ferrum_plugin.h>

namespace ferrum {
class PluginLibrary;
}

namespace ferrum::detail {

// Forgets this thread's report of `lib` (call before a context-less call into it). Never throws.
void clear_report(const PluginLibrary* lib) noexcept;

// The detail of `lib`'s failed call that returned `status` (0: whichever was last), by the
// precedence above. "" when there is none.
std::string plugin_detail(const PluginLibrary& lib, ferrum_context* ctx, ferrum_status status);

}  // namespace ferrum::detail
