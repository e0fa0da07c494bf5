// ferrum facade — value types: dtypes, device properties, context info, support answers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <ferrum/error.hpp>
#include <ferrum/export.hpp>
#include <ferrum/ferrum_base.h>
#include <ferrum/op_gen.hpp>

namespace ferrum {

// Element types (docs/spec.md §0.2); same numbers as FERRUM_DTYPE_*.
enum class Dtype : int32_t {
  invalid = FERRUM_DTYPE_INVALID,
  f32 = FERRUM_DTYPE_F32,
  f16 = FERRUM_DTYPE_F16,
  bf16 = FERRUM_DTYPE_BF16,
  i32 = FERRUM_DTYPE_I32,
  u32 = FERRUM_DTYPE_U32,
  i8 = FERRUM_DTYPE_I8,
  u8 = FERRUM_DTYPE_U8,
  f8_e4m3 = FERRUM_DTYPE_F8_E4M3,
};

// "f32", "f16", ..., "invalid".
FERRUM_API std::string_view to_string(Dtype dtype) noexcept;
// Bytes per element; 0 for Dtype::invalid.
FERRUM_API uint64_t element_size(Dtype dtype) noexcept;

// Host storage types of the 16-bit and 8-bit float dtypes. Declared here, defined by whoever
// provides the storage structs (the project's <ferrum/common/dtype.hpp> inside the build tree);
// the typed helpers of Context only need the mapping below.
struct f16;
struct bf16;
struct f8e4m3;

// The dtype of a host element type: float, int32_t, uint32_t, int8_t, uint8_t, f16, bf16,
// f8e4m3. Specialise DtypeOf for another 2-byte half type of your own if you need one.
template <class T>
struct DtypeOf;
template <> struct DtypeOf<float> { static constexpr Dtype value = Dtype::f32; };
template <> struct DtypeOf<f16> { static constexpr Dtype value = Dtype::f16; };
template <> struct DtypeOf<bf16> { static constexpr Dtype value = Dtype::bf16; };
template <> struct DtypeOf<f8e4m3> { static constexpr Dtype value = Dtype::f8_e4m3; };
template <> struct DtypeOf<int32_t> { static constexpr Dtype value = Dtype::i32; };
template <> struct DtypeOf<uint32_t> { static constexpr Dtype value = Dtype::u32; };
template <> struct DtypeOf<int8_t> { static constexpr Dtype value = Dtype::i8; };
template <> struct DtypeOf<uint8_t> { static constexpr Dtype value = Dtype::u8; };
template <class T>
inline constexpr Dtype dtype_of_v = DtypeOf<T>::value;

// "alloc", "gemm", ...; "unknown" for a value outside the op list.
FERRUM_API std::string_view op_name(Op op) noexcept;
// "memory", "dense", ... (the plugin API sub-table the op's slot lives in).
FERRUM_API std::string_view op_family(Op op) noexcept;

enum class DeviceKind : int32_t { unknown = 0, cpu = FERRUM_DEVICE_KIND_CPU, gpu = FERRUM_DEVICE_KIND_GPU };

// Capability level (c) of docs/design.md §1.6: what the plugin reports for one device.
struct DeviceProps {
  std::string name;
  DeviceKind kind = DeviceKind::unknown;
  int32_t compute_major = 0;  // CUDA compute capability; 0 on CPU
  int32_t compute_minor = 0;
  uint32_t dtype_mask = 0;  // bit (1u << dtype) per supported dtype
  uint64_t total_memory_bytes = 0;
  uint64_t multiprocessors = 0;
  bool supports_dtype(Dtype d) const noexcept {
    return (dtype_mask >> static_cast<uint32_t>(d)) & 1u;
  }
};

// What context_info reports (docs/spec.md §2).
struct ContextInfo {
  uint64_t device_ordinal = 0;
  Dtype activation_dtype = Dtype::invalid;
  uint64_t batched_slots = 0;
  uint64_t batched_items = 0;
};

// One row of Backend::support_matrix(): capability level (a) per op.
struct OpSupport {
  Op op;
  std::string_view name;
  std::string_view family;
  bool slot = false;            // the plugin provides the slot
  bool facade_default = false;  // the facade composes the op when the slot is NULL (docs/spec.md §0.14)
  bool usable() const noexcept { return slot || facade_default; }
};

// Capability level (b): the per-call answer for one op with concrete args.
struct SupportAnswer {
  bool supported = false;
  ErrorCode code = ErrorCode::unsupported;  // meaningful when !supported
  std::string reason;                       // the plugin's reason when !supported
};

}  // namespace ferrum
