// ferrum facade — move-only owners of the plugin's device objects: Buffer, Timer, QWeight, Event.
//
// Vulkan-Hpp raii style: each owner holds the raw handle and a shared reference to the plugin
// library that made it (so the plugin's code stays loaded while the object lives, even after
// the Backend is gone), `get()` borrows the handle, `release()` gives it up without freeing
// it, there is no implicit conversion to the raw handle, and destructors never throw (a
// failing release is logged on the "ferrum" spdlog logger).
//
// Thread contract: an owner may be destroyed on any thread (the release calls are
// thread-safe in the ABI); one object must not be used from two threads at once.
#pragma once

#include <cstdint>
#include <memory>

#include <ferrum/export.hpp>
#include <ferrum/ferrum_plugin.h>
#include <ferrum/types.hpp>

namespace ferrum {

class PluginLibrary;
class Context;

// A device buffer: dtype + element count, allocated by one plugin on one device. The dtype,
// count and device are read once when the Buffer is made and cached: the facade's argument
// checks read them from here, without a call into the plugin per argument.
class FERRUM_API Buffer {
 public:
  Buffer() noexcept = default;
  // Takes ownership of `handle`, a buffer of the plugin `library` on device ordinal `device`;
  // reads its dtype and count once (Error if the plugin does not know the handle; the handle is
  // then released).
  Buffer(ferrum_buffer* handle, std::shared_ptr<PluginLibrary> library, uint64_t device = 0);
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  // Borrowed: valid while this object owns it.
  ferrum_buffer* get() const noexcept { return handle_; }
  // Gives up ownership: the caller must free it with memory->buffer_release of this plugin.
  [[nodiscard]] ferrum_buffer* release() noexcept;
  // Frees the buffer now (no-op when empty).
  void reset() noexcept;
  explicit operator bool() const noexcept { return handle_ != nullptr; }

  Dtype dtype() const noexcept { return dtype_; }
  uint64_t count() const noexcept { return count_; }
  uint64_t size_bytes() const noexcept { return count_ * element_size(dtype_); }
  // The device ordinal of the context that made it (as given to the constructor).
  uint64_t device() const noexcept { return device_; }
  const std::shared_ptr<PluginLibrary>& library() const noexcept { return library_; }
  // The plugin API table of the plugin that made it (NULL when empty).
  const ferrum_plugin_api* api() const noexcept { return api_; }
  // buffer_device_address (ABI 1.1, docs/spec.md §2.2): the address of the first element as an
  // integer (a host pointer on CPU, a device pointer on CUDA) and the device that holds it, for
  // another library to use in place. The Buffer keeps owning the memory. Error(unsupported) on a
  // 1.0 plugin or a NULL slot, naming the op and both versions; Error(invalid_argument) when empty.
  struct DeviceAddress {
    uint64_t address = 0;
    uint64_t device = 0;
  };
  DeviceAddress device_address() const;

 private:
  ferrum_buffer* handle_ = nullptr;
  std::shared_ptr<PluginLibrary> library_;
  const ferrum_plugin_api* api_ = nullptr;
  Dtype dtype_ = Dtype::invalid;
  uint64_t count_ = 0;
  uint64_t device_ = 0;
};

namespace detail {
// The common body of the owners released by one [no ctx] slot (Timer, Event, QWeight): the raw
// handle and a shared reference to the plugin library that made it; move-only; `reset()` and the
// destructor release it through the plugin (never throwing), `release()` gives it up.
template <class H>
class FERRUM_API OwnedHandle {
 public:
  OwnedHandle() noexcept = default;
  OwnedHandle(H* handle, std::shared_ptr<PluginLibrary> library) noexcept;
  OwnedHandle(OwnedHandle&& other) noexcept;
  OwnedHandle& operator=(OwnedHandle&& other) noexcept;
  OwnedHandle(const OwnedHandle&) = delete;
  OwnedHandle& operator=(const OwnedHandle&) = delete;
  ~OwnedHandle();

  H* get() const noexcept { return handle_; }
  [[nodiscard]] H* release() noexcept;
  void reset() noexcept;
  explicit operator bool() const noexcept { return handle_ != nullptr; }
  const std::shared_ptr<PluginLibrary>& library() const noexcept { return library_; }

 private:
  H* handle_ = nullptr;
  std::shared_ptr<PluginLibrary> library_;
  const ferrum_plugin_api* api_ = nullptr;
};
extern template class FERRUM_API OwnedHandle<ferrum_timer>;
extern template class FERRUM_API OwnedHandle<ferrum_event>;
extern template class FERRUM_API OwnedHandle<ferrum_qweight>;
}  // namespace detail

// Two marks on a context's stream (docs/spec.md §9); released through context->timer_release.
class FERRUM_API Timer : public detail::OwnedHandle<ferrum_timer> {
 public:
  using OwnedHandle::OwnedHandle;
};

// An event (ABI 1.1, docs/spec.md §2.1): a point recorded in one context's queue that other
// contexts wait for on the device (Context::event_record / event_wait / event_synchronize /
// event_query); released through context->event_release. Not owned by the context that made
// it; may be released while its record is still pending.
class FERRUM_API Event : public detail::OwnedHandle<ferrum_event> {
 public:
  using OwnedHandle::OwnedHandle;
};

// An opaque quantised weight (docs/spec.md §11, §12); released through quant_matmul->qweight_release.
class FERRUM_API QWeight : public detail::OwnedHandle<ferrum_qweight> {
 public:
  using OwnedHandle::OwnedHandle;
};

// A quantised paged KV layer (docs/spec.md §7.3): the buffers of ferrum_kv_cache_quant, owned.
struct KvCacheQuant {
  Buffer k, v;                // I8 or F8_E4M3 [N, block_size, num_kv_heads, head_dim]
  Buffer k_scales, v_scales;  // F32 [N, block_size, num_kv_heads]
  Buffer block_table;         // U32 [N], identity
  Buffer context_lens;        // U32 [1]
  uint64_t len = 0;
  uint64_t capacity = 0;
  uint64_t block_size = 0;
  uint64_t num_kv_heads = 0;
  uint64_t head_dim = 0;
};

}  // namespace ferrum
