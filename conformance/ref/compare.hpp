// ferrum test support — tolerance classes (docs/spec.md §0.13, docs/design.md §4.1) and poison helpers.
//
// compare(out, ref, dtype, row_len, tol_class[, zero_sign_agnostic]):
//   out, ref   the op's output as stored (decoded to double) and the float64 reference, over exactly
//              the elements the op writes, same order and size.
//   dtype      the output dtype: selects the class F tolerance (tolerance(dtype)).
//   row_len    elements per row for the per-row check (0 = the whole tensor is one row; a trailing
//              partial row counts as a row).
//   tol_class  'F' or 'E'.
//
// Class F, checked in this order; the result fails on the first failing rule but reports all numbers:
//   1. Non-finite: where ref is finite, out must be finite; where ref is NaN, out must be NaN; where
//      ref is ±inf, out must be the same infinity. Non-finite ref elements are left out of the norms.
//   2. Whole tensor: e = ‖out − ref‖₂ / ‖ref‖₂ ≤ tol (1e-5 F32, 2e-3 F16, 1e-2 BF16). Where
//      ‖ref‖₂ = 0, out must equal ref exactly (see "exact equality" below).
//   3. Per row r (docs/design.md §4.1), so that a bug confined to one row of a large batch cannot hide under
//      the whole-tensor norm:
//         ‖out_r − ref_r‖₂ ≤ tol · max(‖ref_r‖₂, floor),  floor = 1e-3 · ‖ref‖₂ / sqrt(rows)
//      i.e. each row is judged relative to its own norm, but never relative to less than 1/1000 of
//      the RMS row norm of the whole tensor (rows whose reference is tiny compared with the rest,
//      e.g. near-cancelling sums, are judged on that absolute floor instead of their own noise).
//      A row whose reference is exactly zero (while the tensor's is not) — e.g. an attention row
//      with an empty visible set, an out-of-range id — must equal its reference exactly.
//      worst_row_rel_err = max_r ‖out_r − ref_r‖₂ / max(‖ref_r‖₂, floor) (inf for a wrong exact row).
//   Output rounding alone stays far inside these bounds (at most half an ulp per element: 2^-24,
//   2^-11, 2^-8 relative for F32, F16, BF16).
// Class E: every element bitwise equal (as doubles: the decoded values of the stored bits, so NaN
//   payloads compare as far as decoding keeps them). −0.0 == +0.0 only with zero_sign_agnostic.
//   worst_row is the row of the first mismatch, worst_row_rel_err the number of mismatching elements.
// Exact equality (class E, and the zero-norm cases of class F) is bitwise, −0.0 vs +0.0 included
//   unless zero_sign_agnostic is true.
//
// first_bad_index: the first element violating an elementwise rule (non-finite, exact); otherwise the
//   element with the largest |out − ref| in the worst row (or in the tensor if only rule 2 fails);
//   UINT64_MAX when ok. The message names class, dtype, errors, the worst row, the index (row, col),
//   the value and the expected value.
#pragma once

#include "quantize.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace ferrum::testing {

struct CompareResult {
  bool ok;
  double rel_err;            // whole-tensor ‖out − ref‖₂ / ‖ref‖₂ (finite-ref elements; 0 if both zero)
  double worst_row_rel_err;  // see header comment
  uint64_t worst_row;
  uint64_t first_bad_index;  // UINT64_MAX when ok
  std::string message;
};

// Class F tolerance of an output dtype; 0 for non-float dtypes.
constexpr double tolerance(int32_t dtype) {
  switch (dtype) {
    case FERRUM_DTYPE_F32: return 1e-5;
    case FERRUM_DTYPE_F16: return 2e-3;
    case FERRUM_DTYPE_BF16: return 1e-2;
    default: return 0.0;
  }
}

constexpr uint64_t kNoIndex = std::numeric_limits<uint64_t>::max();

namespace detail {
inline std::string fmt(const char* f, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a);
  return buf;
}
inline std::string num(double v) { return fmt("%.9g", v); }
inline bool same_exact(double a, double b, bool zero_sign_agnostic) {
  if (zero_sign_agnostic && a == 0.0 && b == 0.0) return true;
  return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
}
inline bool nonfinite_ok(double o, double r) {
  if (std::isnan(r)) return std::isnan(o);
  if (std::isinf(r)) return o == r;
  return std::isfinite(o);
}
inline std::string where(uint64_t i, uint64_t rl) {
  return "index " + std::to_string(i) + " (row " + std::to_string(i / rl) + ", col " + std::to_string(i % rl) + ")";
}
}  // namespace detail

inline CompareResult compare(const std::vector<double>& out, const std::vector<double>& ref, int32_t dtype,
                             uint64_t row_len, char tol_class, bool zero_sign_agnostic = false) {
  CompareResult res{true, 0.0, 0.0, 0, kNoIndex, {}};
  const std::string head = std::string("compare ") + tol_class + " (" + dtype_name(dtype) + "): ";
  if (out.size() != ref.size()) {
    res.ok = false;
    res.first_bad_index = std::min(out.size(), ref.size());
    res.message = head + "size mismatch: out has " + std::to_string(out.size()) + " elements, ref " +
                  std::to_string(ref.size());
    return res;
  }
  const uint64_t n = ref.size();
  const uint64_t rl = (row_len == 0 || row_len > n) ? (n == 0 ? 1 : n) : row_len;
  const uint64_t rows = n == 0 ? 0 : (n + rl - 1) / rl;

  if (tol_class == 'E') {
    uint64_t mism = 0;
    for (uint64_t i = 0; i < n; ++i)
      if (!detail::same_exact(out[i], ref[i], zero_sign_agnostic)) {
        if (mism++ == 0) res.first_bad_index = i;
      }
    double num = 0, den = 0;
    for (uint64_t i = 0; i < n; ++i)
      if (std::isfinite(ref[i]) && std::isfinite(out[i])) { num += (out[i] - ref[i]) * (out[i] - ref[i]); den += ref[i] * ref[i]; }
    res.rel_err = den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
    if (mism == 0) {
      res.message = head + "ok (" + std::to_string(n) + " elements bitwise equal)";
      return res;
    }
    const uint64_t i = res.first_bad_index;
    res.ok = false;
    res.worst_row = i / rl;
    res.worst_row_rel_err = static_cast<double>(mism);
    res.message = head + "FAIL: " + std::to_string(mism) + " of " + std::to_string(n) +
                  " elements differ; first at " + detail::where(i, rl) + ": got " + detail::num(out[i]) + " (" +
                  detail::fmt("%a", out[i]) + ") expected " + detail::num(ref[i]) + " (" + detail::fmt("%a", ref[i]) +
                  ")";
    return res;
  }
  if (tol_class != 'F') throw std::invalid_argument("compare: tol_class must be 'F' or 'E'");
  const double tol = tolerance(dtype);
  if (tol == 0.0) throw std::invalid_argument(std::string("compare: class F needs a float dtype, got ") + dtype_name(dtype));

  // Rule 1 + norms.
  uint64_t first_nonfinite = kNoIndex, nonfinite_count = 0;
  double num = 0.0, den = 0.0;
  std::vector<double> rnum(rows, 0.0), rden(rows, 0.0);
  for (uint64_t i = 0; i < n; ++i) {
    if (!detail::nonfinite_ok(out[i], ref[i])) {
      if (nonfinite_count++ == 0) first_nonfinite = i;
      continue;
    }
    if (!std::isfinite(ref[i])) continue;
    const double d = out[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
    rnum[i / rl] += d * d;
    rden[i / rl] += ref[i] * ref[i];
  }
  res.rel_err = den > 0 ? std::sqrt(num) / std::sqrt(den) : (num > 0 ? INFINITY : 0.0);
  const double floor = rows ? 1e-3 * std::sqrt(den) / std::sqrt(static_cast<double>(rows)) : 0.0;

  // Rule 2/3 + exact-zero rows.
  uint64_t first_exact_bad = kNoIndex;
  uint64_t worst_row = 0, first_bad_row = kNoIndex;
  double worst = -1.0;
  for (uint64_t r = 0; r < rows; ++r) {
    double e;
    if (rden[r] == 0.0) {  // exact row (also covers ‖ref‖ = 0 for the whole tensor)
      e = 0.0;
      for (uint64_t i = r * rl; i < std::min(n, (r + 1) * rl); ++i)
        if (std::isfinite(ref[i]) && !detail::same_exact(out[i], ref[i], zero_sign_agnostic)) {
          e = INFINITY;
          if (first_exact_bad == kNoIndex) first_exact_bad = i;
          break;
        }
    } else {
      e = std::sqrt(rnum[r]) / std::max(std::sqrt(rden[r]), floor);
    }
    if (e > worst) { worst = e; worst_row = r; }
    if (e > tol && first_bad_row == kNoIndex) first_bad_row = r;
  }
  res.worst_row = worst_row;
  res.worst_row_rel_err = rows ? worst : 0.0;
  const bool global_bad = den > 0 ? res.rel_err > tol : false;
  res.ok = nonfinite_count == 0 && !global_bad && first_bad_row == kNoIndex;

  // Worst element of the worst row (or of the tensor).
  auto argmax_diff = [&](uint64_t b, uint64_t e) {
    uint64_t best = b;
    double bd = -1.0;
    for (uint64_t i = b; i < e; ++i) {
      if (!std::isfinite(ref[i])) continue;
      const double d = std::isfinite(out[i]) ? std::fabs(out[i] - ref[i]) : INFINITY;
      if (d > bd) { bd = d; best = i; }
    }
    return best;
  };
  const uint64_t worst_elem =
      n == 0 ? 0 : argmax_diff(worst_row * rl, std::min(n, (worst_row + 1) * rl));
  if (!res.ok) {
    if (first_nonfinite != kNoIndex) res.first_bad_index = first_nonfinite;
    else if (first_exact_bad != kNoIndex) res.first_bad_index = first_exact_bad;
    else if (first_bad_row != kNoIndex) res.first_bad_index = worst_elem;
    else res.first_bad_index = argmax_diff(0, n);
  }

  std::string m = head + (res.ok ? "ok" : "FAIL") + ": rel err " + detail::fmt("%.3g", res.rel_err) + " (tol " +
                  detail::fmt("%g", tol) + "); worst row " + std::to_string(worst_row) + " of " +
                  std::to_string(rows) + " (row_len " + std::to_string(rl) + "): rel err " +
                  detail::fmt("%.3g", res.worst_row_rel_err) + " (row norm " +
                  detail::fmt("%.4g", rows ? std::sqrt(rden[worst_row]) : 0.0) + ", floor " +
                  detail::fmt("%.3g", floor) + ")";
  if (n) m += "; worst element " + detail::where(worst_elem, rl) + ": got " + detail::num(out[worst_elem]) +
              " expected " + detail::num(ref[worst_elem]);
  if (nonfinite_count)
    m += "; " + std::to_string(nonfinite_count) + " non-finite mismatch(es), first at " +
         detail::where(first_nonfinite, rl) + ": got " + detail::num(out[first_nonfinite]) + " expected " +
         detail::num(ref[first_nonfinite]);
  if (first_exact_bad != kNoIndex)
    m += "; exact (zero-reference) row violated at " + detail::where(first_exact_bad, rl) + ": got " +
         detail::num(out[first_exact_bad]) + " expected " + detail::num(ref[first_exact_bad]);
  res.message = m;
  return res;
}

// Class E on raw bytes of one dtype (bit patterns, NaN payloads and zero signs included).
inline CompareResult compare_bytes(const std::vector<uint8_t>& out, const std::vector<uint8_t>& ref, int32_t dtype,
                                   uint64_t row_len) {
  CompareResult res{true, 0.0, 0.0, 0, kNoIndex, {}};
  const uint64_t es = dtype_size(dtype);
  if (es == 0) throw std::invalid_argument("compare_bytes: invalid dtype");
  const std::string head = std::string("compare_bytes E (") + dtype_name(dtype) + "): ";
  if (out.size() != ref.size() || out.size() % es) {
    res.ok = false;
    res.first_bad_index = 0;
    res.message = head + "size mismatch: " + std::to_string(out.size()) + " vs " + std::to_string(ref.size()) + " bytes";
    return res;
  }
  const uint64_t n = out.size() / es, rl = row_len == 0 ? (n ? n : 1) : row_len;
  uint64_t mism = 0;
  for (uint64_t i = 0; i < n; ++i)
    if (element_bits(dtype, out, i) != element_bits(dtype, ref, i) && mism++ == 0) res.first_bad_index = i;
  if (mism == 0) { res.message = head + "ok"; return res; }
  const uint64_t i = res.first_bad_index;
  char buf[96];
  std::snprintf(buf, sizeof buf, ": got bits 0x%x expected 0x%x", element_bits(dtype, out, i), element_bits(dtype, ref, i));
  res.ok = false;
  res.worst_row = i / rl;
  res.worst_row_rel_err = static_cast<double>(mism);
  res.message = head + "FAIL: " + std::to_string(mism) + " of " + std::to_string(n) + " elements differ; first at " +
                detail::where(i, rl) + buf;
  return res;
}

// ---------------------------------------------------------------- poison / guard regions
// Poison element bit patterns: quiet NaNs with a recognisable payload for the float dtypes
// (F32 0x7FE5A5A5, F16 0x7EA5, BF16 0x7FE5, F8_E4M3 0x7F — its only NaN), 0xA5 bytes for integers
// (I32/U32 0xA5A5A5A5, I8/U8 0xA5). Fill outputs and guard regions with poison before an op; then
// all_written() says the op wrote every element of a range and all_poison() that it left a range alone.
// (An integer output that legitimately equals 0xA5.. is indistinguishable from poison: choose inputs
// that avoid it.)
constexpr uint32_t poison_bits(int32_t dtype) {
  switch (dtype) {
    case FERRUM_DTYPE_F32: return 0x7FE5A5A5u;
    case FERRUM_DTYPE_F16: return 0x7EA5u;
    case FERRUM_DTYPE_BF16: return 0x7FE5u;
    case FERRUM_DTYPE_F8_E4M3: return 0x7Fu;
    case FERRUM_DTYPE_I32: case FERRUM_DTYPE_U32: return 0xA5A5A5A5u;
    case FERRUM_DTYPE_I8: case FERRUM_DTYPE_U8: return 0xA5u;
    default: return 0;
  }
}

inline std::vector<uint8_t> poison_bytes(int32_t dtype, uint64_t n) {
  const uint64_t es = dtype_size(dtype);
  if (es == 0) throw std::invalid_argument("poison_bytes: invalid dtype");
  const uint32_t bits = poison_bits(dtype);
  std::vector<uint8_t> out(n * es);
  for (uint64_t i = 0; i < n; ++i)
    for (uint64_t b = 0; b < es; ++b) out[i * es + b] = static_cast<uint8_t>((bits >> (8 * b)) & 0xFFu);
  return out;
}

namespace detail {
inline uint64_t clamp_range(int32_t dtype, const std::vector<uint8_t>& bytes, uint64_t offset, uint64_t& count) {
  const uint64_t es = dtype_size(dtype);
  if (es == 0) throw std::invalid_argument("poison check: invalid dtype");
  const uint64_t n = bytes.size() / es;
  if (offset > n) offset = n;
  if (count > n - offset) count = n - offset;
  return offset;
}
}  // namespace detail

// True when no element of [offset, offset + count) still holds the poison pattern. Optionally reports
// the first element that does.
inline bool all_written(int32_t dtype, const std::vector<uint8_t>& bytes, uint64_t offset = 0,
                        uint64_t count = kNoIndex, uint64_t* first_unwritten = nullptr) {
  offset = detail::clamp_range(dtype, bytes, offset, count);
  for (uint64_t i = offset; i < offset + count; ++i)
    if (element_bits(dtype, bytes, i) == poison_bits(dtype)) {
      if (first_unwritten) *first_unwritten = i;
      return false;
    }
  return true;
}

// True when every element of [offset, offset + count) still holds the poison pattern (guard regions,
// rows an op must leave untouched). Optionally reports the first overwritten element.
inline bool all_poison(int32_t dtype, const std::vector<uint8_t>& bytes, uint64_t offset = 0,
                       uint64_t count = kNoIndex, uint64_t* first_written = nullptr) {
  offset = detail::clamp_range(dtype, bytes, offset, count);
  for (uint64_t i = offset; i < offset + count; ++i)
    if (element_bits(dtype, bytes, i) != poison_bits(dtype)) {
      if (first_written) *first_written = i;
      return false;
    }
  return true;
}

}  // namespace ferrum::testing
