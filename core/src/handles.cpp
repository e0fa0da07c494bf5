// Buffer, Timer, QWeight: adopt, move, release. Destructors log instead of throwing.
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

// ---- Timer -----------------------------------------------------------------------------

Timer::Timer(ferrum_timer* handle, std::shared_ptr<PluginLibrary> library) noexcept
    : handle_(handle), library_(std::move(library)),
      api_(library_ ? api_of(*library_) : nullptr) {}

Timer::Timer(Timer&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)),
      library_(std::move(o.library_)),
      api_(std::exchange(o.api_, nullptr)) {}

Timer& Timer::operator=(Timer&& o) noexcept {
  if (this != &o) {
    reset();
    handle_ = std::exchange(o.handle_, nullptr);
    library_ = std::move(o.library_);
    api_ = std::exchange(o.api_, nullptr);
  }
  return *this;
}

Timer::~Timer() { reset(); }

ferrum_timer* Timer::release() noexcept {
  library_.reset();
  api_ = nullptr;
  return std::exchange(handle_, nullptr);
}

void Timer::reset() noexcept {
  release_handle(api_, FERRUM_OP_TIMER_RELEASE, std::exchange(handle_, nullptr),
                 &ferrum_timer_release_args::timer);
  library_.reset();
  api_ = nullptr;
}

// ---- QWeight ---------------------------------------------------------------------------

QWeight::QWeight(ferrum_qweight* handle, std::shared_ptr<PluginLibrary> library) noexcept
    : handle_(handle), library_(std::move(library)),
      api_(library_ ? api_of(*library_) : nullptr) {}

QWeight::QWeight(QWeight&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)),
      library_(std::move(o.library_)),
      api_(std::exchange(o.api_, nullptr)) {}

QWeight& QWeight::operator=(QWeight&& o) noexcept {
  if (this != &o) {
    reset();
    handle_ = std::exchange(o.handle_, nullptr);
    library_ = std::move(o.library_);
    api_ = std::exchange(o.api_, nullptr);
  }
  return *this;
}

QWeight::~QWeight() { reset(); }

ferrum_qweight* QWeight::release() noexcept {
  library_.reset();
  api_ = nullptr;
  return std::exchange(handle_, nullptr);
}

void QWeight::reset() noexcept {
  release_handle(api_, FERRUM_OP_QWEIGHT_RELEASE, std::exchange(handle_, nullptr),
                 &ferrum_qweight_release_args::weight);
  library_.reset();
  api_ = nullptr;
}

}  // namespace ferrum
