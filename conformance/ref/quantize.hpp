// ferrum test support — host-side dtype rounding, encoding and decoding.
//
// Independent of every plugin: the conversions here are written from docs/spec.md §0.2 / §1
// (`from_weight_bytes`) / §7.1 with plain bit manipulation, so tests can cross-check a plugin's own
// conversions against them.
//
// Rounding model (docs/spec.md §0.2 rule 3, §0.13): a value `v` (double) becomes what a dtype stores by
//   1. rounding it to f32, round-to-nearest-even (the hardware conversion double -> float), then
//   2. rounding that f32 value to the dtype, round-to-nearest-even (F16 / BF16 / F8_E4M3).
// Step 2 is exactly the plugin's f32 -> dtype conversion; step 1 is what a plugin computing in f32
// would hold. For F16/BF16 the two-step result can differ from a direct f64 -> f16 rounding only on
// values within 2^-29 relative of a tie, which is irrelevant to generated data.
//
// Overflow: F16/BF16 give ±inf with no saturation (into F16, |v| >= 65520 -> ±inf, 65504 < |v| < 65520
// -> ±65504); NaN stays NaN (quiet; F16/BF16 keep the top payload bits); ±inf stays ±inf.
// F8_E4M3 (e4m3fn) saturates to ±448 (±inf too) and maps NaN to 0x7F/0xFF (§7.1).
//
// Integer dtypes (I32, U32, I8, U8): round_to() returns the value unchanged and encode() requires an
// exactly representable integer in range (else std::invalid_argument).
//
// All multi-byte encodings are little-endian.
#pragma once

#include <ferrum/ferrum_base.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace ferrum::testing {

// ---------------------------------------------------------------- dtype metadata
constexpr uint64_t dtype_size(int32_t dtype) {
  switch (dtype) {
    case FERRUM_DTYPE_F32: case FERRUM_DTYPE_I32: case FERRUM_DTYPE_U32: return 4;
    case FERRUM_DTYPE_F16: case FERRUM_DTYPE_BF16: return 2;
    case FERRUM_DTYPE_I8: case FERRUM_DTYPE_U8: case FERRUM_DTYPE_F8_E4M3: return 1;
    default: return 0;
  }
}
constexpr bool is_float_dtype(int32_t dtype) {
  return dtype == FERRUM_DTYPE_F32 || dtype == FERRUM_DTYPE_F16 || dtype == FERRUM_DTYPE_BF16 ||
         dtype == FERRUM_DTYPE_F8_E4M3;
}
constexpr bool is_act_dtype(int32_t dtype) {
  return dtype == FERRUM_DTYPE_F32 || dtype == FERRUM_DTYPE_F16 || dtype == FERRUM_DTYPE_BF16;
}
inline const char* dtype_name(int32_t dtype) {
  switch (dtype) {
    case FERRUM_DTYPE_F32: return "F32";
    case FERRUM_DTYPE_F16: return "F16";
    case FERRUM_DTYPE_BF16: return "BF16";
    case FERRUM_DTYPE_I32: return "I32";
    case FERRUM_DTYPE_U32: return "U32";
    case FERRUM_DTYPE_I8: return "I8";
    case FERRUM_DTYPE_U8: return "U8";
    case FERRUM_DTYPE_F8_E4M3: return "F8_E4M3";
    default: return "INVALID";
  }
}

// ---------------------------------------------------------------- f32 <-> f16 (bit level)
// f32 bits -> f16 bits, round-to-nearest-even, overflow -> ±inf, NaN -> quiet NaN (payload top bits kept).
constexpr uint16_t f32_bits_to_f16_bits(uint32_t f) {
  const uint16_t sign = static_cast<uint16_t>((f >> 16) & 0x8000u);
  const uint32_t exp = (f >> 23) & 0xFFu;
  const uint32_t mant = f & 0x7FFFFFu;
  if (exp == 0xFFu) {
    if (mant == 0) return static_cast<uint16_t>(sign | 0x7C00u);                  // ±inf
    return static_cast<uint16_t>(sign | 0x7E00u | (mant >> 13));                 // quiet NaN
  }
  const int32_t e = static_cast<int32_t>(exp) - 127;  // unbiased (f32 subnormals: e = -127, -> 0)
  if (e > 15) return static_cast<uint16_t>(sign | 0x7C00u);                      // overflow -> inf
  if (e >= -14) {                                                                // f16 normal range
    uint32_t h = (static_cast<uint32_t>(e + 15) << 10) | (mant >> 13);
    const uint32_t rest = mant & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // carry may reach 0x7C00 = inf: correct
    return static_cast<uint16_t>(sign | h);
  }
  if (e < -25 || exp == 0) return sign;                                          // below half the min subnormal
  // f16 subnormal: value = m·2^(e-23) with the 24-bit significand m; unit 2^-24 -> h = m·2^(e+1).
  const uint32_t m = mant | 0x800000u;
  const uint32_t shift = static_cast<uint32_t>(-(e + 1));                        // 14 .. 24
  uint32_t h = m >> shift;
  const uint32_t rest = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rest > half || (rest == half && (h & 1u))) ++h;  // may become 0x400 (min normal): correct
  return static_cast<uint16_t>(sign | h);
}

// f16 bits -> f32 bits, exact (NaN payload shifted into the f32 payload).
constexpr uint32_t f16_bits_to_f32_bits(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1Fu) return sign | 0x7F800000u | (mant << 13);
  if (exp == 0) {
    if (mant == 0) return sign;
    int32_t e = -14;                       // normalise the subnormal
    while ((mant & 0x400u) == 0) { mant <<= 1; --e; }
    mant &= 0x3FFu;
    return sign | (static_cast<uint32_t>(e + 127) << 23) | (mant << 13);
  }
  return sign | ((exp - 15u + 127u) << 23) | (mant << 13);
}

// ---------------------------------------------------------------- f32 <-> bf16 (bit level)
constexpr uint16_t f32_bits_to_bf16_bits(uint32_t f) {
  if ((f & 0x7F800000u) == 0x7F800000u && (f & 0x7FFFFFu) != 0)
    return static_cast<uint16_t>((f >> 16) | 0x0040u);                          // quiet NaN
  const uint32_t lsb = (f >> 16) & 1u;
  return static_cast<uint16_t>((f + 0x7FFFu + lsb) >> 16);                       // RNE; overflow -> inf
}
constexpr uint32_t bf16_bits_to_f32_bits(uint16_t b) { return static_cast<uint32_t>(b) << 16; }

// ---------------------------------------------------------------- f8 e4m3fn (§7.1)
inline uint8_t f32_to_f8e4m3_bits(float x) {
  const uint32_t f = std::bit_cast<uint32_t>(x);
  const uint8_t sign = static_cast<uint8_t>((f >> 24) & 0x80u);
  if (std::isnan(x)) return static_cast<uint8_t>(sign | 0x7Fu);
  const double a = std::fabs(static_cast<double>(x));
  if (a >= 448.0) return static_cast<uint8_t>(sign | 0x7Eu);                     // saturate (incl. inf)
  uint32_t code;
  if (a < 0.015625) {                                                            // < 2^-6: subnormal grid 2^-9
    code = static_cast<uint32_t>(std::nearbyint(a * 512.0));                     // exact scaling, RNE; 8 -> 2^-6
  } else {
    int ex = 0;
    const double fr = std::frexp(a, &ex);                                        // a = fr·2^ex, fr in [0.5,1)
    const int e = ex - 1;                                                        // a = (2fr)·2^e
    uint32_t q = static_cast<uint32_t>(std::nearbyint((2.0 * fr - 1.0) * 8.0));  // exact, RNE
    int ee = e;
    if (q == 8) { q = 0; ++ee; }
    code = (static_cast<uint32_t>(ee + 7) << 3) | q;
    if (code > 0x7Eu) code = 0x7Eu;                                              // 448 < a < 464 -> 448
  }
  return static_cast<uint8_t>(sign | code);
}
inline double f8e4m3_bits_to_double(uint8_t b) {
  const double s = (b & 0x80u) ? -1.0 : 1.0;
  const uint32_t e = (b >> 3) & 0xFu, m = b & 7u;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  if (e == 0) return s * std::ldexp(static_cast<double>(m) / 8.0, -6);
  return s * std::ldexp(1.0 + static_cast<double>(m) / 8.0, static_cast<int>(e) - 7);
}

// ---------------------------------------------------------------- scalar conversions
inline uint16_t to_f16_bits(double v) { return f32_bits_to_f16_bits(std::bit_cast<uint32_t>(static_cast<float>(v))); }
inline uint16_t to_bf16_bits(double v) { return f32_bits_to_bf16_bits(std::bit_cast<uint32_t>(static_cast<float>(v))); }
inline double f16_bits_to_double(uint16_t h) { return static_cast<double>(std::bit_cast<float>(f16_bits_to_f32_bits(h))); }
inline double bf16_bits_to_double(uint16_t b) { return static_cast<double>(std::bit_cast<float>(bf16_bits_to_f32_bits(b))); }

// The value `dtype` stores for `v` (see the rounding model at the top). dtype 0 (INVALID) means
// "no rounding" and returns v unchanged — handy for optional rounding parameters.
inline double round_to(int32_t dtype, double v) {
  switch (dtype) {
    case FERRUM_DTYPE_INVALID: return v;
    case FERRUM_DTYPE_F32: return static_cast<double>(static_cast<float>(v));
    case FERRUM_DTYPE_F16: return f16_bits_to_double(to_f16_bits(v));
    case FERRUM_DTYPE_BF16: return bf16_bits_to_double(to_bf16_bits(v));
    case FERRUM_DTYPE_F8_E4M3: return f8e4m3_bits_to_double(f32_to_f8e4m3_bits(static_cast<float>(v)));
    case FERRUM_DTYPE_I32: case FERRUM_DTYPE_U32: case FERRUM_DTYPE_I8: case FERRUM_DTYPE_U8: return v;
    default: throw std::invalid_argument("round_to: invalid dtype " + std::to_string(dtype));
  }
}
inline std::vector<double> round_to(int32_t dtype, std::vector<double> v) {
  for (double& x : v) x = round_to(dtype, x);
  return v;
}

// ---------------------------------------------------------------- encode / decode
namespace detail {
template <class T>
inline void put_le(std::vector<uint8_t>& out, uint64_t i, T value) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, std::conditional_t<sizeof(T) == 2, uint16_t, uint8_t>>;
  const U u = std::bit_cast<U>(value);
  for (uint64_t b = 0; b < sizeof(U); ++b) out[i * sizeof(U) + b] = static_cast<uint8_t>((u >> (8 * b)) & 0xFFu);
}
template <class U>
inline U get_le(const std::vector<uint8_t>& in, uint64_t i) {
  U u = 0;
  for (uint64_t b = 0; b < sizeof(U); ++b) u = static_cast<U>(u | (static_cast<U>(in[i * sizeof(U) + b]) << (8 * b)));
  return u;
}
template <class I>
inline I checked_int(double v, int32_t dtype) {
  if (!(v == std::floor(v)) || v < static_cast<double>(std::numeric_limits<I>::min()) ||
      v > static_cast<double>(std::numeric_limits<I>::max()))
    throw std::invalid_argument(std::string("encode: value not representable in ") + dtype_name(dtype) + ": " +
                                std::to_string(v));
  return static_cast<I>(v);
}
}  // namespace detail

// Raw little-endian bytes of `dtype` holding round_to(dtype, v[i]) (integers: v[i] exactly).
inline std::vector<uint8_t> encode(int32_t dtype, const std::vector<double>& v) {
  const uint64_t es = dtype_size(dtype);
  if (es == 0) throw std::invalid_argument("encode: invalid dtype " + std::to_string(dtype));
  std::vector<uint8_t> out(v.size() * es);
  for (uint64_t i = 0; i < v.size(); ++i) {
    switch (dtype) {
      case FERRUM_DTYPE_F32: detail::put_le(out, i, static_cast<float>(v[i])); break;
      case FERRUM_DTYPE_F16: detail::put_le(out, i, to_f16_bits(v[i])); break;
      case FERRUM_DTYPE_BF16: detail::put_le(out, i, to_bf16_bits(v[i])); break;
      case FERRUM_DTYPE_F8_E4M3: out[i] = f32_to_f8e4m3_bits(static_cast<float>(v[i])); break;
      case FERRUM_DTYPE_I32: detail::put_le(out, i, detail::checked_int<int32_t>(v[i], dtype)); break;
      case FERRUM_DTYPE_U32: detail::put_le(out, i, detail::checked_int<uint32_t>(v[i], dtype)); break;
      case FERRUM_DTYPE_I8: out[i] = std::bit_cast<uint8_t>(detail::checked_int<int8_t>(v[i], dtype)); break;
      case FERRUM_DTYPE_U8: out[i] = detail::checked_int<uint8_t>(v[i], dtype); break;
    }
  }
  return out;
}

// Exact values of the little-endian `dtype` elements in `bytes` (size must be a multiple of the element size).
inline std::vector<double> decode(int32_t dtype, const std::vector<uint8_t>& bytes) {
  const uint64_t es = dtype_size(dtype);
  if (es == 0) throw std::invalid_argument("decode: invalid dtype " + std::to_string(dtype));
  if (bytes.size() % es != 0) throw std::invalid_argument("decode: byte count not a multiple of the element size");
  const uint64_t n = bytes.size() / es;
  std::vector<double> out(n);
  for (uint64_t i = 0; i < n; ++i) {
    switch (dtype) {
      case FERRUM_DTYPE_F32: out[i] = static_cast<double>(std::bit_cast<float>(detail::get_le<uint32_t>(bytes, i))); break;
      case FERRUM_DTYPE_F16: out[i] = f16_bits_to_double(detail::get_le<uint16_t>(bytes, i)); break;
      case FERRUM_DTYPE_BF16: out[i] = bf16_bits_to_double(detail::get_le<uint16_t>(bytes, i)); break;
      case FERRUM_DTYPE_F8_E4M3: out[i] = f8e4m3_bits_to_double(bytes[i]); break;
      case FERRUM_DTYPE_I32: out[i] = static_cast<double>(std::bit_cast<int32_t>(detail::get_le<uint32_t>(bytes, i))); break;
      case FERRUM_DTYPE_U32: out[i] = static_cast<double>(detail::get_le<uint32_t>(bytes, i)); break;
      case FERRUM_DTYPE_I8: out[i] = static_cast<double>(std::bit_cast<int8_t>(bytes[i])); break;
      case FERRUM_DTYPE_U8: out[i] = static_cast<double>(bytes[i]); break;
    }
  }
  return out;
}

// Raw bits of element i of an encoded buffer (zero-extended), for bit-exact checks and messages.
inline uint32_t element_bits(int32_t dtype, const std::vector<uint8_t>& bytes, uint64_t i) {
  switch (dtype_size(dtype)) {
    case 4: return detail::get_le<uint32_t>(bytes, i);
    case 2: return detail::get_le<uint16_t>(bytes, i);
    case 1: return bytes[i];
    default: throw std::invalid_argument("element_bits: invalid dtype");
  }
}

}  // namespace ferrum::testing
