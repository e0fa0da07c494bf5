// Internal: the one call path of every op (checks -> slot or facade default -> status ->
// ferrum::Error) and the one status check used by every facade call into a plugin.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include <ferrum/common/checks_gen.hpp>
#include <ferrum/common/op_info_gen.hpp>
#include <ferrum/context.hpp>
#include <ferrum/error.hpp>
#include <ferrum/ferrum_plugin.h>

namespace ferrum::detail {

// The "ferrum" logger (defined in core/src/loader/log.cpp; never throws).
std::shared_ptr<spdlog::logger> logger() noexcept;

// Where a failed call happened: enough to name the plugin and fetch its detail message.
struct CallSite {
  const PluginLibrary* library;
  const ferrum_plugin_api* api;
  ferrum_context* ctx;  // NULL for calls without a context
};

// Throws Error(code of `status`) with "<what> on plugin <name> <version> (ABI x.y): <code>:
// <reason>". reason == nullptr: the plugin's own detail (error_detail on site.ctx).
[[noreturn]] void throw_status(ferrum_status status, std::string_view what, const CallSite& site,
                               const char* reason);

// The forward-compatibility gate's error: UNSUPPORTED naming the op (and `field`, when the call
// set a field of a newer minor to a non-default value), the minor it needs and the plugin's.
[[noreturn]] void fail_newer(const CallSite& site, std::string_view op, const char* field,
                             uint32_t since);
// Its reason text: "<the op | argument 'f' set to a non-default value> needs ABI 1.<since>,
// plugin '<name>' implements <major>.<minor>".
std::string newer_reason(const ferrum_plugin_api* api, const char* field, uint32_t since);

// THE status check: OK returns at once (nothing built on the success path).
inline void check(ferrum_status status, std::string_view what, const CallSite& site,
                  const char* reason = nullptr) {
  if (status != FERRUM_STATUS_OK) [[unlikely]]
    throw_status(status, what, site, reason);
}

inline std::string_view op_name_of(int32_t id) noexcept {
  const common::OpInfo* info = common::op_info(id);
  return info ? info->name : std::string_view("unknown op");
}

// Describes buffer handles for the generated checks through the plugin's buffer_info.
struct PluginAccessor {
  ferrum_op_fn buffer_info;
  bool info(const ferrum_buffer* handle, int32_t& dtype, uint64_t& count) const noexcept {
    if (!buffer_info) return false;
    ferrum_buffer_info_args a{};
    a.struct_size = sizeof a;
    a.buf = handle;
    a.dtype = &dtype;
    a.count = &count;
    return buffer_info(nullptr, &a) == FERRUM_STATUS_OK;
  }
};

// Describes buffer handles for the generated checks from the op's own Buffer arguments (dtype
// and count cached in each Buffer at creation): no call into the plugin on the hot path. A
// Buffer made by another plugin is reported as unknown (the checks then name the argument as a
// released or foreign handle). A handle that is none of `bufs` (a raw handle placed in the args
// by a facade default) is described by the plugin's buffer_info.
struct BufferArgsAccessor {
  std::initializer_list<const Buffer*> bufs;
  const ferrum_plugin_api* api;
  ferrum_op_fn buffer_info;
  bool info(const ferrum_buffer* handle, int32_t& dtype, uint64_t& count) const noexcept {
    for (const Buffer* b : bufs) {
      if (b && b->get() == handle) {
        if (b->api() != api) return false;
        dtype = static_cast<int32_t>(b->dtype());
        count = b->count();
        return true;
      }
    }
    return PluginAccessor{buffer_info}.info(handle, dtype, count);
  }
};

// A non-NULL stand-in for a hostout pointer while the checks run (never dereferenced): the
// result's host memory is sized only after the arguments passed.
template <class T>
T* probe_ptr() noexcept {
  alignas(16) static unsigned char probe[16];
  return reinterpret_cast<T*>(probe);
}

// Friend of Context: what the facade defaults and the call path need of it.
struct ContextAccess {
  static ferrum_context* raw(const Context& c) noexcept { return c.ctx_; }
  static const ferrum_plugin_api* api(const Context& c) noexcept { return c.api_; }
  static const PluginLibrary* library(const Context& c) noexcept { return c.library_.get(); }
  static PluginAccessor accessor(const Context& c) noexcept { return {c.buffer_info_}; }
  static CallSite site(const Context& c) noexcept { return {c.library_.get(), c.api_, c.ctx_}; }
  template <class Args>
  static void invoke(Context& c, const Args& args) { c.invoke(args); }
  static Buffer adopt(const Context& c, ferrum_buffer* h) { return c.adopt(h); }
};

}  // namespace ferrum::detail

#include "defaults.hpp"

namespace ferrum {

template <class Args>
void Context::check(const Args& args, std::initializer_list<const Buffer*> bufs) const {
  constexpr int32_t id = common::OpId<Args>::value;
  if (!ctx_) [[unlikely]]
    detail::check(FERRUM_STATUS_INVALID_ARGUMENT, detail::op_name_of(id),
                  {library_.get(), api_, ctx_}, "the Context is empty (moved from or released)");
  detail::BufferArgsAccessor acc{bufs, api_, buffer_info_};
  common::CheckError err;
  if (common::check_args(acc, &args, err) != FERRUM_STATUS_OK) [[unlikely]]
    detail::check(err.status, detail::op_name_of(id), {library_.get(), api_, ctx_},
                  err.message.c_str());
}

template <class Args>
void Context::invoke(const Args& args, std::initializer_list<const Buffer*> bufs) {
  constexpr int32_t id = common::OpId<Args>::value;
  check(args, bufs);
  const detail::CallSite site{library_.get(), api_, ctx_};
  const ferrum_op_fn fn = common::find_slot(api_, id);
  if (!fn) [[unlikely]] {
    if constexpr (detail::has_facade_default<Args>) {
      detail::facade_default(*this, args);
      return;
    } else {
      // The forward-compatibility gate (a): an op of a newer minor than the plugin's.
      const uint32_t since = common::kOps[id - 1].since_minor;
      if (api_ && api_->abi_minor < since)
        detail::fail_newer(site, detail::op_name_of(id), nullptr, since);
      detail::check(FERRUM_STATUS_UNSUPPORTED, detail::op_name_of(id), site,
                    "the plugin does not implement this op (NULL slot) and the facade has no "
                    "default for it");
    }
  }
  if constexpr (common::ArgsGrowth<Args>::grown) {
    // The gate (b): a plugin of an older minor than this header's knows fewer fields. A newer
    // field at its default is fine (the plugin's struct_size ends before it); any other value
    // would be silently ignored, so it is refused.
    const uint32_t minor = api_->abi_minor;
    if (minor < FERRUM_ABI_VERSION_MINOR) [[unlikely]] {
      uint32_t since = 0;
      if (const char* field = common::ArgsGrowth<Args>::newer_field(args, minor, since))
        detail::fail_newer(site, detail::op_name_of(id), field, since);
      Args older = args;
      older.struct_size = common::ArgsGrowth<Args>::size_at(minor);
      detail::check(fn(ctx_, &older), detail::op_name_of(id), site);
      return;
    }
  }
  detail::check(fn(ctx_, &args), detail::op_name_of(id), site);
}

}  // namespace ferrum
