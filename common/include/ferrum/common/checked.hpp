// The one arithmetic rule of ferrum's checks: every size, offset, product, end position and
// element count computed from caller values goes through these helpers, never through a raw
// `+`, `*` or `-` (tools/lint/raw_arith.py fails the build otherwise).
//
//   checked_add / checked_mul / checked_sub   overflow-reporting: false (and no result) when the
//                                             exact value does not fit in 64 bits (or is < 0)
//   sat_add / sat_mul                         saturating at UINT64_MAX, which no buffer can hold,
//                                             so a saturated size always fails a later size check
//   Size                                      a value with a sticky "wrapped" bit and checked
//                                             operators, for whole expressions such as
//                                             (q_heads + 2*kv_heads) * head_dim
//   ceil_div                                  ceil(a / b) without forming a + b - 1
//   range_ok / ranges_overlap                 [off, off + len) inside a count / two ranges
//                                             overlapping, without forming off + len
//
// A value that would wrap is INVALID_ARGUMENT naming the op, the arguments, what was expected and
// what was given — never a smaller number, a division by zero or a silently empty result.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace ferrum::common {

inline constexpr uint64_t kU64Max = UINT64_MAX;

[[nodiscard]] constexpr bool checked_add(uint64_t a, uint64_t b, uint64_t& out) {
  return !__builtin_add_overflow(a, b, &out);
}
[[nodiscard]] constexpr bool checked_mul(uint64_t a, uint64_t b, uint64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}
// a - b, false when b > a.
[[nodiscard]] constexpr bool checked_sub(uint64_t a, uint64_t b, uint64_t& out) {
  return !__builtin_sub_overflow(a, b, &out);
}

constexpr uint64_t sat_add(uint64_t a, uint64_t b) {
  uint64_t r = 0;
  return checked_add(a, b, r) ? r : kU64Max;
}
constexpr uint64_t sat_mul(uint64_t a, uint64_t b) {
  uint64_t r = 0;
  return checked_mul(a, b, r) ? r : kU64Max;
}
constexpr uint64_t sat_mul(std::initializer_list<uint64_t> factors) {
  uint64_t r = 1;
  for (uint64_t f : factors) {
    if (f == 0) return 0;
    r = sat_mul(r, f);
  }
  return r;
}
// [off, off + len) lies inside [0, count), without forming off + len.
constexpr bool range_ok(uint64_t off, uint64_t len, uint64_t count) {
  return off <= count && len <= count - off;
}

// [a_off, a_off + len) and [b_off, b_off + len) overlap (both ranges already inside a buffer).
constexpr bool ranges_overlap(uint64_t a_off, uint64_t b_off, uint64_t len) {
  return len != 0 && (a_off < b_off ? b_off - a_off < len : a_off - b_off < len);
}

// ceil(a / b) for b >= 1, without the a + b - 1 that wraps near 2^64. b == 0 gives 0.
constexpr uint64_t ceil_div(uint64_t a, uint64_t b) { return b == 0 ? 0 : a / b + (a % b != 0); }

// A 64-bit size whose arithmetic never wraps: an operation whose exact result does not fit sets
// the sticky `wrapped` bit (the value is then meaningless and saturated at UINT64_MAX).
struct Size {
  uint64_t value = 0;
  bool wrapped = false;

  constexpr Size() = default;
  constexpr Size(uint64_t v) : value(v) {}  // NOLINT: implicit, so caller values read naturally
  constexpr Size(uint64_t v, bool w) : value(v), wrapped(w) {}

  friend constexpr Size operator+(Size a, Size b) {
    uint64_t r = 0;
    const bool ok = !a.wrapped && !b.wrapped && checked_add(a.value, b.value, r);
    return ok ? Size(r) : Size(kU64Max, true);
  }
  friend constexpr Size operator*(Size a, Size b) {
    uint64_t r = 0;
    const bool ok = !a.wrapped && !b.wrapped && checked_mul(a.value, b.value, r);
    return ok ? Size(r) : Size(kU64Max, true);
  }
  friend constexpr Size operator-(Size a, Size b) {
    uint64_t r = 0;
    const bool ok = !a.wrapped && !b.wrapped && checked_sub(a.value, b.value, r);
    return ok ? Size(r) : Size(kU64Max, true);
  }
  // Division by zero is reported as a wrap too (the expression has no value).
  friend constexpr Size operator/(Size a, Size b) {
    return (a.wrapped || b.wrapped || b.value == 0) ? Size(kU64Max, true) : Size(a.value / b.value);
  }
  constexpr bool ok() const { return !wrapped; }
};

// The element count of a shape: 0 when a dimension is 0 (nothing to hold), otherwise the checked
// product; `wrapped` when a dimension wrapped or the product does not fit.
constexpr Size shape_size(std::initializer_list<Size> dims) {
  bool any_wrapped = false;
  for (const Size& d : dims) {
    if (d.wrapped) any_wrapped = true;
  }
  if (any_wrapped) return Size(kU64Max, true);
  Size n(1);
  for (const Size& d : dims) {
    if (d.value == 0) return Size(0);
  }
  for (const Size& d : dims) n = n * d;
  return n;
}

}  // namespace ferrum::common
