// Backend, op names, dtype names, and the one status -> ferrum::Error conversion.
#include <cstddef>
#include <cstring>
#include <string>
#include <utility>

#include <ferrum/backend.hpp>
#include <ferrum/common/dtype.hpp>
#include <ferrum/loader.hpp>

#include "invoke.hpp"
#include "loader/reports.hpp"

namespace ferrum {

// ---- names -----------------------------------------------------------------------------

std::string_view to_string(Dtype dtype) noexcept { return dtype_name(static_cast<int32_t>(dtype)); }

uint64_t element_size(Dtype dtype) noexcept { return dtype_size(static_cast<int32_t>(dtype)); }

std::string_view op_name(Op op) noexcept {
  const common::OpInfo* info = common::op_info(static_cast<int32_t>(op));
  return info ? info->name : std::string_view("unknown");
}

std::string_view op_family(Op op) noexcept {
  const common::OpInfo* info = common::op_info(static_cast<int32_t>(op));
  return info ? info->family : std::string_view("unknown");
}

// ---- errors ----------------------------------------------------------------------------

namespace detail {

void throw_status(ferrum_status status, std::string_view what, const CallSite& site,
                  const char* reason) {
  const ferrum_plugin_api* api = site.api;
  std::string msg(what);
  msg += " on plugin ";
  if (api) {
    msg += api->plugin_name ? api->plugin_name : "?";
    msg += ' ';
    msg += api->plugin_version ? api->plugin_version : "?";
    msg += " (ABI " + std::to_string(api->abi_major) + "." + std::to_string(api->abi_minor) + ")";
  } else {
    msg += "(none)";
  }
  const ErrorCode code = error_code_of(status);
  msg += ": ";
  msg += to_string(code);
  msg += ": ";
  // The plugin's detail (reports.hpp): per context, or this thread's report of a context-less
  // call, else error_detail(NULL).
  std::string detail = reason ? std::string(reason) : std::string();
  if (!reason && site.library) detail = plugin_detail(*site.library, site.ctx, status);
  msg += detail.empty() ? std::string("(the plugin gave no detail)") : detail;
  throw Error(code, msg);
}

std::string newer_reason(const ferrum_plugin_api* api, const char* field, uint32_t since) {
  std::string why = field ? std::string("argument '") + field + "' set to a non-default value" : "the op";
  why += " needs ABI " + std::to_string(FERRUM_ABI_VERSION_MAJOR) + "." + std::to_string(since) +
         ", plugin '" + (api && api->plugin_name ? api->plugin_name : "?") + "' implements " +
         (api ? std::to_string(api->abi_major) + "." + std::to_string(api->abi_minor) : "none");
  if (field) why += " (leave it at its default, or load a newer plugin)";
  return why;
}

void fail_newer(const CallSite& site, std::string_view op, const char* field, uint32_t since) {
  throw_status(FERRUM_STATUS_UNSUPPORTED, op, site, newer_reason(site.api, field, since).c_str());
}

}  // namespace detail

// ---- Backend ---------------------------------------------------------------------------

Backend Backend::load(std::string_view spec) {
  LoadedBackend loaded = load_backend(spec);
  Backend b;
  b.api_ = api_of(*loaded.library);
  b.library_ = std::move(loaded.library);
  b.device_ = loaded.device;
  return b;
}

Backend::Backend(Backend&& o) noexcept
    : library_(std::move(o.library_)),
      api_(std::exchange(o.api_, nullptr)),
      device_(std::exchange(o.device_, 0)) {}

Backend& Backend::operator=(Backend&& o) noexcept {
  if (this != &o) {
    library_ = std::move(o.library_);
    api_ = std::exchange(o.api_, nullptr);
    device_ = std::exchange(o.device_, 0);
  }
  return *this;
}

std::string_view Backend::name() const noexcept {
  return api_ && api_->plugin_name ? api_->plugin_name : "";
}

std::string_view Backend::version() const noexcept {
  return api_ && api_->plugin_version ? api_->plugin_version : "";
}

std::string Backend::abi_version() const {
  if (!api_) return {};
  return std::to_string(api_->abi_major) + "." + std::to_string(api_->abi_minor);
}

std::string_view Backend::build_info() const noexcept {
  return api_ && api_->build_info ? api_->build_info : "";
}

// The extension chain (ABI 1.1): read only when the plugin declares 1.1 and its table covers the
// field; at most FERRUM_EXTENSION_CHAIN_MAX records (a longer or cyclic chain ends there), a
// record too short for its head ends the walk, a record without an id is skipped. An id is
// compared over at most id.size() + 1 bytes, so an unterminated one is never overrun.
const ferrum_extension* find_extension(const ferrum_plugin_api* api, std::string_view id,
                                       uint32_t min_version) noexcept {
  constexpr size_t kField = offsetof(ferrum_plugin_api, extensions);
  if (!api || api->abi_minor < 1 || api->struct_size < kField + sizeof(void*)) return nullptr;
  const ferrum_extension* e = api->extensions;
  for (int i = 0; e && i < FERRUM_EXTENSION_CHAIN_MAX; ++i, e = e->next) {
    if (e->struct_size < sizeof(ferrum_extension)) return nullptr;
    if (!e->id || e->version < min_version) continue;
    if (std::string_view(e->id, strnlen(e->id, id.size() + 1)) == id) return e;
  }
  return nullptr;
}

const ferrum_extension* Backend::extension(std::string_view id, uint32_t min_version) const noexcept {
  return find_extension(api_, id, min_version);
}

const std::string& Backend::path() const noexcept {
  static const std::string empty;
  return library_ ? path_of(*library_) : empty;
}

uint64_t Backend::device_count() const {
  const detail::CallSite site{library_.get(), api_, nullptr};
  if (!api_ || !api_->device_count)
    detail::check(FERRUM_STATUS_UNSUPPORTED, "device_count", site, "no device_count entry");
  uint64_t n = 0;
  detail::clear_report(library_.get());
  detail::check(api_->device_count(&n), "device_count", site);
  return n;
}

DeviceProps Backend::device_props(uint64_t ordinal) const {
  const detail::CallSite site{library_.get(), api_, nullptr};
  if (!api_ || !api_->device_props)
    detail::check(FERRUM_STATUS_UNSUPPORTED, "device_props", site, "no device_props entry");
  ferrum_device_props p{};
  p.struct_size = sizeof p;
  detail::clear_report(library_.get());
  detail::check(api_->device_props(ordinal, &p), "device_props", site);
  DeviceProps d;
  d.name.assign(p.name, strnlen(p.name, sizeof p.name));
  d.kind = static_cast<DeviceKind>(p.kind);
  d.compute_major = p.compute_major;
  d.compute_minor = p.compute_minor;
  d.dtype_mask = p.dtype_mask;
  d.total_memory_bytes = p.total_memory_bytes;
  d.multiprocessors = p.multiprocessors;
  return d;
}

bool Backend::supports_device_ordinal_scope() const {
  const ferrum_op_fn fn = common::find_slot(api_, FERRUM_OP_SUPPORTS_DEVICE_ORDINAL_SCOPE);
  if (!fn) return false;  // facade default (docs/spec.md §0.14)
  uint32_t result = 0;
  ferrum_supports_device_ordinal_scope_args a{};
  a.struct_size = sizeof a;
  a.result = &result;
  detail::clear_report(library_.get());
  detail::check(fn(nullptr, &a), "supports_device_ordinal_scope",
                {library_.get(), api_, nullptr});
  return result != 0;
}

bool Backend::supports(Op op) const noexcept {
  const int32_t id = static_cast<int32_t>(op);
  if (id < 1 || id > kOpCount || !api_) return false;
  return common::find_slot(api_, id) != nullptr || detail::kFacadeDefault[id];
}

bool Backend::facade_composes(Op op) noexcept {
  const int32_t id = static_cast<int32_t>(op);
  return id >= 1 && id <= kOpCount && detail::kFacadeDefault[id];
}

std::vector<OpSupport> Backend::support_matrix() const noexcept {
  std::vector<OpSupport> rows;
  try {
    rows.reserve(kOpCount);
    for (int32_t id = 1; id <= kOpCount; ++id) {
      const common::OpInfo& info = common::kOps[id - 1];
      OpSupport s{static_cast<Op>(id), info.name, info.family};
      s.slot = api_ && common::find_slot(api_, id) != nullptr;
      s.facade_default = detail::kFacadeDefault[id];
      rows.push_back(s);
    }
  } catch (...) {  // out of memory: an empty (or partial) matrix, never an exception
  }
  return rows;
}

Context Backend::create_context(std::optional<uint64_t> device, Dtype activation) const {
  return create_context_on_stream(0, device, activation);
}

Context Backend::create_context_on_stream(uint64_t external_stream, std::optional<uint64_t> device,
                                          Dtype activation) const {
  const detail::CallSite site{library_.get(), api_, nullptr};
  if (!api_)
    detail::check(FERRUM_STATUS_INVALID_ARGUMENT, "new_context", site,
                  "the Backend is empty (moved from or default-constructed)");
  uint64_t ordinal = device_;
  if (device) {
    ordinal = *device;
  } else if (const std::optional<uint64_t> scope = detail::current_device_scope()) {
    ordinal = *scope;
    if (ordinal > 0 && !supports_device_ordinal_scope())
      detail::check(FERRUM_STATUS_UNSUPPORTED, "new_context", site,
                    ("with_device_ordinal(" + std::to_string(ordinal) +
                     "): the plugin does not support device ordinal scopes "
                     "(supports_device_ordinal_scope is 0)")
                        .c_str());
  }
  const ferrum_op_fn fn = common::find_slot(api_, FERRUM_OP_NEW_CONTEXT);
  if (!fn)
    detail::check(FERRUM_STATUS_UNSUPPORTED, "new_context", site,
                  "the plugin does not implement this op (NULL slot)");
  ferrum_context* ctx = nullptr;
  ferrum_new_context_args a{};
  a.struct_size = sizeof a;
  a.device_ordinal = ordinal;
  a.activation_dtype = static_cast<int32_t>(activation);
  a.context = &ctx;
  a.external_stream = external_stream;
  using Growth = common::ArgsGrowth<ferrum_new_context_args>;
  if (api_->abi_minor < FERRUM_ABI_VERSION_MINOR) {
    // The forward-compatibility gate of Context::invoke, for this [no ctx] op: a field of a newer
    // minor set to a non-default value is refused; at its default the older struct is passed.
    uint32_t since = 0;
    if (const char* field = Growth::newer_field(a, api_->abi_minor, since))
      detail::fail_newer(site, "new_context", field, since);
    a.struct_size = Growth::size_at(api_->abi_minor);
  }
  detail::clear_report(library_.get());
  detail::check(fn(nullptr, &a), "new_context", site);
  if (!ctx)
    detail::check(FERRUM_STATUS_INTERNAL, "new_context", site,
                  "the plugin returned OK without a context");
  Context owner;  // owns ctx while the real Context is built
  owner.ctx_ = ctx;
  owner.library_ = library_;
  owner.api_ = api_;
  Context c(ctx, library_, ordinal, activation);
  (void)owner.release();
  return c;
}

}  // namespace ferrum
