// ferrum facade — Backend: one loaded plugin (see loader.hpp for how it is chosen).
//
// Thread contract: const methods are thread-safe (they read the plugin's static table or
// call thread-safe ABI functions); create_context may be called from several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <ferrum/context.hpp>
#include <ferrum/export.hpp>
#include <ferrum/ferrum_plugin.h>
#include <ferrum/types.hpp>

namespace ferrum {

class PluginLibrary;

// The record `id` (version >= min_version) of an API table's extension chain, or nullptr: what
// Backend::extension answers for its plugin's table. Reads `extensions` only when the table
// declares ABI 1.1 or later and its struct_size covers the field; walks at most
// FERRUM_EXTENSION_CHAIN_MAX records, skips records with a NULL id, and stops at a record whose
// struct_size is smaller than sizeof(ferrum_extension).
FERRUM_API const ferrum_extension* find_extension(const ferrum_plugin_api* api, std::string_view id,
                                                  uint32_t min_version = 0) noexcept;

class FERRUM_API Backend {
 public:
  // Loads a backend: spec "" (precedence of docs/design.md §2.1), "auto", a name ("cpu", "cuda:1")
  // or a path to a plugin .so. Throws Error(load_failed / config_error) with the loader's
  // diagnosis.
  static Backend load(std::string_view spec = {});

  Backend() noexcept = default;
  Backend(Backend&& other) noexcept;  // `other` is left empty
  Backend& operator=(Backend&& other) noexcept;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  ~Backend() = default;  // objects made from it keep the plugin loaded on their own

  explicit operator bool() const noexcept { return api_ != nullptr; }
  // The plugin's table (borrowed: valid while this Backend or any object made from it lives).
  const ferrum_plugin_api* api() const noexcept { return api_; }
  const std::shared_ptr<PluginLibrary>& library() const noexcept { return library_; }

  std::string_view name() const noexcept;
  std::string_view version() const noexcept;
  std::string abi_version() const;  // the plugin's "major.minor", e.g. "1.0"
  std::string_view build_info() const noexcept;
  const std::string& path() const noexcept;

  uint64_t device_count() const;
  DeviceProps device_props(uint64_t ordinal) const;
  // The ordinal named in the spec ("cuda:1" -> 1), else 0.
  uint64_t selected_device() const noexcept { return device_; }
  // supports_device_ordinal_scope (facade default: false).
  bool supports_device_ordinal_scope() const;

  // Capability level (a): the slot is present, or the facade has a default (docs/spec.md §0.14).
  bool supports(Op op) const noexcept;
  // One row per op of the ABI, in op-id order.
  std::vector<OpSupport> support_matrix() const noexcept;
  // Whether the facade composes `op` from other ops when a plugin's slot is NULL (the same for
  // every plugin; a NULL slot of any other op is reported as unsupported).
  static bool facade_composes(Op op) noexcept;

  // The plugin's extension record `id` (ABI 1.1 extension chain, docs/plugin-guide.md
  // "Extensions") of at least `min_version`; nullptr when the plugin has none of that id and
  // version, or declares ABI 1.0 (its table has no chain). The walk is bounded
  // (FERRUM_EXTENSION_CHAIN_MAX records), so a cyclic chain ends. Borrowed like api().
  const ferrum_extension* extension(std::string_view id, uint32_t min_version = 0) const noexcept;
  // The same record as the vendor's struct T (ferrum_extension its first member), or nullptr
  // when it is absent or its struct_size is smaller than sizeof(T) (an older, shorter record).
  template <class T>
  const T* extension_as(std::string_view id, uint32_t min_version = 0) const noexcept {
    static_assert(std::is_standard_layout_v<T> && sizeof(T) >= sizeof(ferrum_extension),
                  "T starts with a ferrum_extension");
    const ferrum_extension* e = extension(id, min_version);
    return e && e->struct_size >= sizeof(T) ? reinterpret_cast<const T*>(e) : nullptr;
  }

  // A new context on `device` (default: the enclosing with_device_ordinal scope, else
  // selected_device()) with default activation dtype `activation` (invalid: the plugin's).
  Context create_context(std::optional<uint64_t> device = {},
                         Dtype activation = Dtype::invalid) const;
  // The same on a stream the host owns (new_context's external_stream, ABI 1.1, docs/spec.md
  // §2.2; CUDA: a cudaStream_t of that device, cast to an integer): the context enqueues all its
  // work there and never destroys it; the host keeps the stream alive until the Context is
  // destroyed. 0 = the context's own stream, as create_context. Error(unsupported) on a plugin
  // without streams (CPU) or of ABI 1.0, naming the argument (and both versions).
  Context create_context_on_stream(uint64_t external_stream, std::optional<uint64_t> device = {},
                                   Dtype activation = Dtype::invalid) const;

 private:
  std::shared_ptr<PluginLibrary> library_;
  const ferrum_plugin_api* api_ = nullptr;
  uint64_t device_ = 0;
};

}  // namespace ferrum
