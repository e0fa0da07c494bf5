// ferrum — element types shared by the plugins and the facade (header-only, C++20).
//
// Exact conversions between f32 and the storage dtypes of docs/spec.md §0.2, the ABI dtype
// <-> C++ type mapping, and the one dtype-dispatch helper every op uses (docs/design.md §6:
// vLLM dispatch_utils / FlashInfer style, never a switch copied into each op).
//
// Rounding rules (docs/spec.md §0.2 rule 3, §1 from_weight_bytes, §7.1):
//   - widening (f16/bf16/f8 -> f32) is exact;
//   - narrowing rounds to nearest, ties to even; NaN stays (quiet) NaN, ±inf stays ±inf;
//   - f16/bf16 overflow gives ±inf (no saturation); f8_e4m3 saturates to ±448.
// All conversions are pure integer bit manipulation (independent of the FP environment,
// e.g. flush-to-zero), except to_float(f16), which uses F16C when the translation unit is
// compiled with it (F16C conversion is exact as well).
#ifndef FERRUM_COMMON_DTYPE_HPP
#define FERRUM_COMMON_DTYPE_HPP

#include <ferrum/ferrum_base.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace ferrum {

// Storage types. Trivial, 1:1 with their bit patterns.
struct f16 {
  uint16_t bits;
};
struct bf16 {
  uint16_t bits;
};
struct f8e4m3 {
  uint8_t bits;
};

static_assert(sizeof(f16) == 2 && sizeof(bf16) == 2 && sizeof(f8e4m3) == 1);

namespace detail {

// Round the integer `mant` right by `shift` bits (1..31), ties to even.
constexpr uint32_t shift_rne(uint32_t mant, uint32_t shift) {
  if (shift >= 32) return 0;
  const uint32_t q = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  return (rem > half || (rem == half && (q & 1u))) ? q + 1u : q;
}

constexpr float f16_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  uint32_t out;
  if (exp == 0x1F) {
    out = sign | 0x7F800000u | (mant << 13);  // inf / NaN (payload kept)
  } else if (exp != 0) {
    out = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    out = sign;  // ±0
  } else {
    // Subnormal: value = mant · 2^-24; normalise with an integer shift.
    const int lz = std::countl_zero(mant) - 22;  // 9 - (index of the top set bit)
    const uint32_t m = (mant << (lz + 1)) & 0x3FFu;
    out = sign | (static_cast<uint32_t>(113 - 1 - lz) << 23) | (m << 13);
  }
  return std::bit_cast<float>(out);
}

}  // namespace detail

// ---------------------------------------------------------------------------------
// Widening (exact).
// ---------------------------------------------------------------------------------
inline float to_float(float v) { return v; }

inline float to_float(f16 v) {
#if defined(__F16C__)
  return _cvtsh_ss(v.bits);
#else
  return detail::f16_bits_to_float(v.bits);
#endif
}

inline float to_float(bf16 v) { return std::bit_cast<float>(static_cast<uint32_t>(v.bits) << 16); }

inline float to_float(f8e4m3 v) {
  const uint32_t sign = static_cast<uint32_t>(v.bits & 0x80u) << 24;
  const uint32_t exp = (v.bits >> 3) & 0xFu;
  const uint32_t mant = v.bits & 0x7u;
  if (exp == 0xF && mant == 0x7) return std::bit_cast<float>(sign | 0x7FC00000u);  // NaN
  if (exp == 0) {
    const float mag = static_cast<float>(mant) * 0x1p-9f;  // exact
    return sign ? -mag : mag;
  }
  return std::bit_cast<float>(sign | ((exp + 120u) << 23) | (mant << 20));
}

// ---------------------------------------------------------------------------------
// Narrowing (round to nearest, ties to even).
// ---------------------------------------------------------------------------------
constexpr f16 f16_from_float(float v) {
  const uint32_t x = std::bit_cast<uint32_t>(v);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) {  // NaN: force quiet, keep the top payload bits
    return f16{static_cast<uint16_t>(sign | 0x7E00u | ((ax >> 13) & 0x3FFu))};
  }
  if (ax >= 0x477FF000u) return f16{static_cast<uint16_t>(sign | 0x7C00u)};  // >= 65520 or inf
  if (ax >= 0x38800000u) {                                                   // normal f16 range
    uint32_t r = ax - (112u << 23);
    r += 0xFFFu + ((r >> 13) & 1u);
    return f16{static_cast<uint16_t>(sign | (r >> 13))};
  }
  // f16 subnormal or zero: result = round(value / 2^-24).
  const uint32_t e = ax >> 23;
  if (e < 101u) return f16{sign};  // < 2^-26 (also f32 subnormals): rounds to ±0
  const uint32_t mant = (ax & 0x7FFFFFu) | 0x800000u;
  return f16{static_cast<uint16_t>(sign | detail::shift_rne(mant, 126u - e))};
}

constexpr bf16 bf16_from_float(float v) {
  const uint32_t x = std::bit_cast<uint32_t>(v);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return bf16{static_cast<uint16_t>((x >> 16) | 0x0040u)};
  const uint32_t r = x + 0x7FFFu + ((x >> 16) & 1u);  // overflow carries into inf naturally
  return bf16{static_cast<uint16_t>(r >> 16)};
}

constexpr f8e4m3 f8e4m3_from_float(float v) {
  const uint32_t x = std::bit_cast<uint32_t>(v);
  const uint8_t sign = static_cast<uint8_t>((x >> 24) & 0x80u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) return f8e4m3{static_cast<uint8_t>(sign | 0x7Fu)};  // NaN
  if (ax >= 0x43E00000u) return f8e4m3{static_cast<uint8_t>(sign | 0x7Eu)};  // >= 448, inf: saturate
  if (ax >= 0x3C800000u) {                                                   // >= 2^-6: normal
    uint32_t r = ax - (120u << 23);
    r += 0x7FFFFu + ((r >> 20) & 1u);
    uint32_t code = r >> 20;
    if (code > 0x7Eu) code = 0x7Eu;  // rounding up past 448 (would be the NaN code): saturate
    return f8e4m3{static_cast<uint8_t>(sign | code)};
  }
  // Subnormal or zero: result = round(value / 2^-9).
  const uint32_t e = ax >> 23;
  if (e < 116u) return f8e4m3{sign};  // < 2^-11: rounds to ±0
  const uint32_t mant = (ax & 0x7FFFFFu) | 0x800000u;
  return f8e4m3{static_cast<uint8_t>(sign | detail::shift_rne(mant, 141u - e))};
}

// T in {float, f16, bf16, f8e4m3}.
template <class T>
constexpr T from_float(float v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else if constexpr (std::is_same_v<T, f16>) {
    return f16_from_float(v);
  } else if constexpr (std::is_same_v<T, bf16>) {
    return bf16_from_float(v);
  } else {
    static_assert(std::is_same_v<T, f8e4m3>, "from_float: unsupported type");
    return f8e4m3_from_float(v);
  }
}

// ---------------------------------------------------------------------------------
// ABI dtype <-> C++ type.
// ---------------------------------------------------------------------------------
template <class T>
inline constexpr int32_t dtype_of = FERRUM_DTYPE_INVALID;
template <>
inline constexpr int32_t dtype_of<float> = FERRUM_DTYPE_F32;
template <>
inline constexpr int32_t dtype_of<f16> = FERRUM_DTYPE_F16;
template <>
inline constexpr int32_t dtype_of<bf16> = FERRUM_DTYPE_BF16;
template <>
inline constexpr int32_t dtype_of<f8e4m3> = FERRUM_DTYPE_F8_E4M3;
template <>
inline constexpr int32_t dtype_of<int32_t> = FERRUM_DTYPE_I32;
template <>
inline constexpr int32_t dtype_of<uint32_t> = FERRUM_DTYPE_U32;
template <>
inline constexpr int32_t dtype_of<int8_t> = FERRUM_DTYPE_I8;
template <>
inline constexpr int32_t dtype_of<uint8_t> = FERRUM_DTYPE_U8;

// Element size in bytes; 0 for an invalid dtype.
constexpr uint64_t dtype_size(int32_t dtype) {
  switch (dtype) {
    case FERRUM_DTYPE_F32:
    case FERRUM_DTYPE_I32:
    case FERRUM_DTYPE_U32:
      return 4;
    case FERRUM_DTYPE_F16:
    case FERRUM_DTYPE_BF16:
      return 2;
    case FERRUM_DTYPE_I8:
    case FERRUM_DTYPE_U8:
    case FERRUM_DTYPE_F8_E4M3:
      return 1;
    default:
      return 0;
  }
}

constexpr const char* dtype_name(int32_t dtype) {
  switch (dtype) {
    case FERRUM_DTYPE_F32: return "f32";
    case FERRUM_DTYPE_F16: return "f16";
    case FERRUM_DTYPE_BF16: return "bf16";
    case FERRUM_DTYPE_I32: return "i32";
    case FERRUM_DTYPE_U32: return "u32";
    case FERRUM_DTYPE_I8: return "i8";
    case FERRUM_DTYPE_U8: return "u8";
    case FERRUM_DTYPE_F8_E4M3: return "f8_e4m3";
    default: return "invalid";
  }
}

// The activation dtypes (docs/spec.md §0.2 rule 1).
constexpr bool is_float_dtype(int32_t dtype) {
  return dtype == FERRUM_DTYPE_F32 || dtype == FERRUM_DTYPE_F16 || dtype == FERRUM_DTYPE_BF16;
}

// ---------------------------------------------------------------------------------
// Dispatch: calls f(T{}) with the C++ type of `dtype` and returns its result (converted
// to R); for a dtype outside the set, returns `otherwise` without calling f.
//
//   ferrum_status st = dispatch_float(dtype, FERRUM_STATUS_UNSUPPORTED, [&](auto tag) {
//     using T = decltype(tag);
//     cpu::rms_norm<T>(...);
//     return FERRUM_STATUS_OK;
//   });
// ---------------------------------------------------------------------------------
template <class F, class R>
R dispatch_float(int32_t dtype, R otherwise, F&& f) {
  switch (dtype) {
    case FERRUM_DTYPE_F32: return static_cast<R>(std::forward<F>(f)(float{}));
    case FERRUM_DTYPE_F16: return static_cast<R>(std::forward<F>(f)(f16{}));
    case FERRUM_DTYPE_BF16: return static_cast<R>(std::forward<F>(f)(bf16{}));
    default: return otherwise;
  }
}

template <class F, class R>
R dispatch_any(int32_t dtype, R otherwise, F&& f) {
  switch (dtype) {
    case FERRUM_DTYPE_F32: return static_cast<R>(std::forward<F>(f)(float{}));
    case FERRUM_DTYPE_F16: return static_cast<R>(std::forward<F>(f)(f16{}));
    case FERRUM_DTYPE_BF16: return static_cast<R>(std::forward<F>(f)(bf16{}));
    case FERRUM_DTYPE_I32: return static_cast<R>(std::forward<F>(f)(int32_t{}));
    case FERRUM_DTYPE_U32: return static_cast<R>(std::forward<F>(f)(uint32_t{}));
    case FERRUM_DTYPE_I8: return static_cast<R>(std::forward<F>(f)(int8_t{}));
    case FERRUM_DTYPE_U8: return static_cast<R>(std::forward<F>(f)(uint8_t{}));
    case FERRUM_DTYPE_F8_E4M3: return static_cast<R>(std::forward<F>(f)(f8e4m3{}));
    default: return otherwise;
  }
}

// to_vec's widening (docs/spec.md §1): n elements of any dtype at `src` (any alignment) as f32 —
// floats exactly, integers converted (I32/U32 beyond 2^24 round to nearest-even). Unknown dtypes
// write nothing.
inline void widen_to_f32(const void* src, int32_t dtype, float* out, uint64_t n) {
  dispatch_any(dtype, 0, [&](auto tag) {
    using T = decltype(tag);
    const auto* in = static_cast<const unsigned char*>(src);
    for (uint64_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, in + i * sizeof(T), sizeof(T));  // arith-ok: i < n elements of an existing buffer
      if constexpr (std::is_integral_v<T>)
        out[i] = static_cast<float>(v);
      else
        out[i] = to_float(v);
    }
    return 0;
  });
}

}  // namespace ferrum

#endif  // FERRUM_COMMON_DTYPE_HPP
