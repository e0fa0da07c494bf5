// Buffer, Timer, QWeight, Event: adopt, move, release. Destructors log instead of throwing.
#include <utility>

#include <ferrum/handles.hpp>
#include <ferrum/loader.hpp>

#include "invoke.hpp"

namespace ferrum {
namespace {

// Frees `handle` through `op` (a [no ctx] release slot); logs what goes wrong. Never throws.
template <class Args, class Field, class Handle>
void release_handle(const ferrum_plugin_api* api, int32_t op, Handle* handle,
                    Field Args::*field) noexcept {
  if (!handle) return;
  const ferrum_op_fn fn = common::find_slot(api, op);
  try {
    if (!fn) {
      detail::logger()->warn("ferrum: plugin {} has no {} slot: a handle is leaked",
                             api && api->plugin_name ? api->plugin_name : "?",
                             detail::op_name_of(op));
      return;
    }
    Args a{};
    a.struct_size = sizeof a;
    a.*field = handle;
    const ferrum_status st = fn(nullptr, &a);
    if (st != FERRUM_STATUS_OK)
      detail::logger()->warn("ferrum: {} failed on plugin {} with status {} ({})",
                             detail::op_name_of(op), api->plugin_name ? api->plugin_name : "?", st,
                             to_string(error_code_of(st)));
  } catch (...) {  // logging itself failed: nothing more to do in a destructor
  }
}

}  // namespace

// ---- Buffer ----------------------------------------------------------------------------

Buffer::Buffer(ferrum_buffer* handle, std::shared_ptr<PluginLibrary> library, uint64_t device)
    : handle_(handle), library_(std::move(library)), device_(device) {
  if (!handle_) return;
  if (!library_) {
    detail::check(FERRUM_STATUS_INVALID_ARGUMENT, "Buffer", {nullptr, nullptr, nullptr},
                  "a buffer handle needs the plugin library that made it, given none");
  }
  api_ = api_of(*library_);
  int32_t dt = 0;
  uint64_t n = 0;
  if (!detail::PluginAccessor{common::find_slot(api_, FERRUM_OP_BUFFER_INFO)}.info(handle_, dt, n)) {
    reset();
    detail::check(FERRUM_STATUS_INTERNAL, "buffer_info", {nullptr, api_, nullptr},
                  "the plugin cannot describe a buffer it just returned");
  }
  dtype_ = static_cast<Dtype>(dt);
  count_ = n;
}

Buffer::Buffer(Buffer&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)),
      library_(std::move(o.library_)),
      api_(std::exchange(o.api_, nullptr)),
      dtype_(std::exchange(o.dtype_, Dtype::invalid)),
      count_(std::exchange(o.count_, 0)),
      device_(std::exchange(o.device_, 0)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    handle_ = std::exchange(o.handle_, nullptr);
    library_ = std::move(o.library_);
    api_ = std::exchange(o.api_, nullptr);
    dtype_ = std::exchange(o.dtype_, Dtype::invalid);
    count_ = std::exchange(o.count_, 0);
    device_ = std::exchange(o.device_, 0);
  }
  return *this;
}

Buffer::~Buffer() { reset(); }

ferrum_buffer* Buffer::release() noexcept {
  library_.reset();
  api_ = nullptr;
  dtype_ = Dtype::invalid;
  count_ = 0;
  device_ = 0;
  return std::exchange(handle_, nullptr);
}

void Buffer::reset() noexcept {
  release_handle(api_, FERRUM_OP_BUFFER_RELEASE, std::exchange(handle_, nullptr),
                 &ferrum_buffer_release_args::buf);
  library_.reset();  // after the release: the plugin's code must still be loaded for it
  api_ = nullptr;
  dtype_ = Dtype::invalid;
  count_ = 0;
  device_ = 0;
}

Buffer::DeviceAddress Buffer::device_address() const {
  constexpr int32_t id = FERRUM_OP_BUFFER_DEVICE_ADDRESS;
  const detail::CallSite site{library_.get(), api_, nullptr};
  if (!handle_)
    detail::check(FERRUM_STATUS_INVALID_ARGUMENT, "buffer_device_address", site,
                  "argument 'buf': expected a buffer, given an empty Buffer (moved from or released)");
  const ferrum_op_fn fn = common::find_slot(api_, id);
  if (!fn) {
    const uint32_t since = common::kOps[id - 1].since_minor;
    if (api_->abi_minor < since) detail::fail_newer(site, "buffer_device_address", nullptr, since);
    detail::check(FERRUM_STATUS_UNSUPPORTED, "buffer_device_address", site,
                  "the plugin does not implement this op (NULL slot)");
  }
  DeviceAddress out;
  ferrum_buffer_device_address_args a{};
  a.struct_size = sizeof a;
  a.buf = handle_;
  a.address = &out.address;
  a.device_ordinal = &out.device;
  detail::check(fn(nullptr, &a), "buffer_device_address", site);
  return out;
}

// ---- Timer, Event, QWeight -------------------------------------------------------------------

namespace {
// The [no ctx] slot that releases each owned handle type, and its handle field.
template <class H>
struct ReleaseOf;
template <>
struct ReleaseOf<ferrum_timer> {
  static constexpr int32_t op = FERRUM_OP_TIMER_RELEASE;
  static constexpr auto field = &ferrum_timer_release_args::timer;
};
template <>
struct ReleaseOf<ferrum_event> {
  static constexpr int32_t op = FERRUM_OP_EVENT_RELEASE;
  static constexpr auto field = &ferrum_event_release_args::event;
};
template <>
struct ReleaseOf<ferrum_qweight> {
  static constexpr int32_t op = FERRUM_OP_QWEIGHT_RELEASE;
  static constexpr auto field = &ferrum_qweight_release_args::weight;
};
}  // namespace

namespace detail {

template <class H>
OwnedHandle<H>::OwnedHandle(H* handle, std::shared_ptr<PluginLibrary> library) noexcept
    : handle_(handle), library_(std::move(library)),
      api_(library_ ? api_of(*library_) : nullptr) {}

template <class H>
OwnedHandle<H>::OwnedHandle(OwnedHandle&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)),
      library_(std::move(o.library_)),
      api_(std::exchange(o.api_, nullptr)) {}

template <class H>
OwnedHandle<H>& OwnedHandle<H>::operator=(OwnedHandle&& o) noexcept {
  if (this != &o) {
    reset();
    handle_ = std::exchange(o.handle_, nullptr);
    library_ = std::move(o.library_);
    api_ = std::exchange(o.api_, nullptr);
  }
  return *this;
}

template <class H>
OwnedHandle<H>::~OwnedHandle() {
  reset();
}

template <class H>
H* OwnedHandle<H>::release() noexcept {
  library_.reset();
  api_ = nullptr;
  return std::exchange(handle_, nullptr);
}

template <class H>
void OwnedHandle<H>::reset() noexcept {
  release_handle(api_, ReleaseOf<H>::op, std::exchange(handle_, nullptr), ReleaseOf<H>::field);
  library_.reset();  // after the release: the plugin's code must still be loaded for it
  api_ = nullptr;
}

// Exported by the FERRUM_API of their extern declarations in handles.hpp: the handle types are
// hidden (-fvisibility=hidden) incomplete C structs, which would otherwise hide them too.
template class OwnedHandle<ferrum_timer>;
template class OwnedHandle<ferrum_event>;
template class OwnedHandle<ferrum_qweight>;

}  // namespace detail

}  // namespace ferrum
