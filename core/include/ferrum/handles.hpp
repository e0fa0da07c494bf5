// ferrum facade — move-only owners of the plugin's device objects: Buffer, Timer, QWeight.
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

 private:
  ferrum_buffer* handle_ = nullptr;
  std::shared_ptr<PluginLibrary> library_;
  const ferrum_plugin_api* api_ = nullptr;
  Dtype dtype_ = Dtype::invalid;
  uint64_t count_ = 0;
  uint64_t device_ = 0;
};

// Two marks on a context's stream (docs/spec.md §9); released through context->timer_release.
class FERRUM_API Timer {
 public:
  Timer() noexcept = default;
  Timer(ferrum_timer* handle, std::shared_ptr<PluginLibrary> library) noexcept;
  Timer(Timer&& other) noexcept;
  Timer& operator=(Timer&& other) noexcept;
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer();

  ferrum_timer* get() const noexcept { return handle_; }
  [[nodiscard]] ferrum_timer* release() noexcept;
  void reset() noexcept;
  explicit operator bool() const noexcept { return handle_ != nullptr; }
  const std::shared_ptr<PluginLibrary>& library() const noexcept { return library_; }

 private:
  ferrum_timer* handle_ = nullptr;
  std::shared_ptr<PluginLibrary> library_;
  const ferrum_plugin_api* api_ = nullptr;
};

// An opaque quantised weight (docs/spec.md §11, §12); released through quant_matmul->qweight_release.
class FERRUM_API QWeight {
 public:
  QWeight() noexcept = default;
  QWeight(ferrum_qweight* handle, std::shared_ptr<PluginLibrary> library) noexcept;
  QWeight(QWeight&& other) noexcept;
  QWeight& operator=(QWeight&& other) noexcept;
  QWeight(const QWeight&) = delete;
  QWeight& operator=(const QWeight&) = delete;
  ~QWeight();

  ferrum_qweight* get() const noexcept { return handle_; }
  [[nodiscard]] ferrum_qweight* release() noexcept;
  void reset() noexcept;
  explicit operator bool() const noexcept { return handle_ != nullptr; }
  const std::shared_ptr<PluginLibrary>& library() const noexcept { return library_; }

 private:
  ferrum_qweight* handle_ = nullptr;
  std::shared_ptr<PluginLibrary> library_;
  const ferrum_plugin_api* api_ = nullptr;
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
