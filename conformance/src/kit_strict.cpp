// ferrum conformance kit — the strict rules: the slots a plugin must fill, what counts as the
// plugin's own pass, and the verdict of a run (kit.hpp).
#include <ferrum/conformance/kit.hpp>

#include <ferrum/common/op_info_gen.hpp>

#include <fnmatch.h>

#include <cstring>
#include <string_view>

namespace ferrum::conformance {

namespace fcm = ferrum::common;

namespace {

bool glob(const std::string& pattern, std::string_view text) {
  const std::string t(text);
  return pattern.empty() || pattern == "*" || fnmatch(pattern.c_str(), t.c_str(), 0) == 0;
}

// The family table pointer of `info`'s family (nullptr: absent, or beyond the table's size).
const void* family_table(const ferrum_plugin_api* api, const fcm::OpInfo& info) {
  if (!api || api->struct_size < info.table_offset + sizeof(void*)) return nullptr;
  const void* table = nullptr;
  std::memcpy(&table, reinterpret_cast<const char*>(api) + info.table_offset, sizeof table);
  return table;
}

}  // namespace

bool slot_filled(const ferrum_plugin_api* api, const std::string& op) {
  const fcm::OpInfo* info = fcm::op_info(std::string_view(op));
  return info && fcm::find_slot(api, info->id) != nullptr;
}

std::vector<Outcome> required_slot_outcomes(const ferrum_plugin_api* api, const Options& options) {
  std::vector<Outcome> out;
  if (!api) return out;
  const std::string plugin = api->plugin_name ? api->plugin_name : "";
  for (const fcm::OpInfo& info : fcm::kOps) {
    if (!glob(options.op_glob, info.name) || !glob(options.family_glob, info.family)) continue;
    if (fcm::find_slot(api, info.id)) continue;
    const bool core_family = info.family == "memory" || info.family == "context";
    const bool table_present = family_table(api, info) != nullptr;
    std::string why;
    if (info.null_slot == fcm::NullSlot::required && (core_family || table_present))
      why = core_family ? "every plugin needs the memory and context families, and this slot has no facade default"
                        : "the plugin provides the " + std::string(info.family) +
                              " family, and this slot of it has no facade default";
    else if ((plugin == "cpu" && info.cpu_required) || (plugin == "cuda" && info.cuda_required))
      why = "the op table requires it of the project's " + plugin + " plugin";
    if (why.empty()) continue;
    Outcome o;
    o.op = std::string(info.name);
    o.name = "required slot present";
    o.family = std::string(info.family);
    o.status = Status::fail;
    o.message = "the slot of " + o.op + " is NULL" + (table_present ? "" : " (no " + o.family + " family table)") +
                ": " + why;
    out.push_back(std::move(o));
  }
  return out;
}

Totals totals(const std::vector<Outcome>& outcomes) {
  Totals t;
  for (const Outcome& o : outcomes) switch (o.status) {
      case Status::pass: ++(o.composed ? t.composed : t.passed); break;
      case Status::fail: ++t.failed; break;
      case Status::crash: ++t.crashed; break;
      case Status::unsupported: ++t.unsupported; break;
    }
  return t;
}

std::string strict_verdict(const Totals& t) {
  if (t.crashed) return std::to_string(t.crashed) + " case(s) crashed the plugin";
  if (t.failed) return std::to_string(t.failed) + " case(s) failed";
  if (t.passed == 0)
    return "no case passed on a slot the plugin fills (" + std::to_string(t.composed) +
           " passed only through the facade's composition, " + std::to_string(t.unsupported) +
           " unsupported): a plugin that passes nothing is not conformant";
  return {};
}

}  // namespace ferrum::conformance
