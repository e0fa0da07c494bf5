// Op-specific argument rules of docs/spec.md that the generated generic checks cannot express, shared
// by the project's plugins so that every plugin rejects the same arguments with the same
// detail text. Both plugins' glue (plugins/*/src/glue/) use it, with the family files beside it (*_rules.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

#include <ferrum/common/checked.hpp>
#include <ferrum/common/plugin_support.hpp>

namespace ferrum::plugin::rules {

using common::checked_add;
using common::checked_mul;
using common::Given;
using common::Size;

// ---- the arithmetic rule: sums and products of caller values -----------------------------------
// Every sum/product a plugin forms from caller values goes through these (or checked.hpp), and a
// value that does not fit in 64 bits is INVALID_ARGUMENT naming the op, the fields, the expected
// relation and the given values — never a wrapped, smaller number.

// `x + y` (the fields named by `text`, e.g. "cache_len + tokens") must fit in 64 bits; `sum` gets it.
inline Status check_sum(const char* op, const char* field, const char* text, uint64_t x, uint64_t y, uint64_t& sum) {
  if (!checked_add(x, y, sum))
    return invalid(format("%s: argument '%s': expected %s < 2^64, given %llu + %llu (the sum wraps past 2^64)", op,
                          field, text, (unsigned long long)x, (unsigned long long)y));
  return ok_status();
}

// `x + y <= limit` without wrapping: "expected cache_len + tokens <= cache_capacity = 8, given 5 + 4".
inline Status check_sum_le(const char* op, const char* field, const char* text, uint64_t x, uint64_t y,
                           const char* limit_text, uint64_t limit) {
  uint64_t sum = 0;
  const bool fits = checked_add(x, y, sum);
  if (!fits || sum > limit)
    return invalid(format("%s: argument '%s': expected %s <= %s = %llu, given %llu + %llu%s", op, field, text,
                          limit_text, (unsigned long long)limit, (unsigned long long)x, (unsigned long long)y,
                          fits ? "" : " (the sum wraps past 2^64)"));
  return ok_status();
}

// The product of the named fields must fit in 64 bits: "arguments 'block_size'/'kv_heads'/'head_dim':
// expected block_size·kv_heads·head_dim < 2^64, given 16·2^63·2 ...". `product` gets it.
inline Status check_product(const char* op, std::initializer_list<Given> factors, uint64_t& product) {
  std::string why;
  if (common::named_product(factors, product, why)) return ok_status();
  return invalid(std::string(op) + ": " + why);
}

// `eps` must be finite and >= 0 (norms, qk-norm).
inline Status check_finite_eps(const char* op, float eps) {
  if (!std::isfinite(eps) || eps < 0)
    return invalid(format("%s: argument 'eps': expected a finite value >= 0, given %g", op, eps));
  return ok_status();
}

// A dimension that must be positive while the op has work (docs/spec.md §0.12 "zero inner dimension").
inline Status check_positive(const char* op, const char* field, uint64_t v, bool work) {
  if (work && v == 0)
    return invalid(format("%s: argument '%s': expected > 0 while there is work, given 0", op, field));
  return ok_status();
}

// A buffer that must hold at least `need` elements (shapes the generated checks cannot name).
inline Status check_min_count(const char* op, const char* field, const ferrum_buffer* b, uint64_t need) {
  if (need == 0) return ok_status();
  if (!b)
    return invalid(format("%s: argument '%s': expected a buffer of %llu elements, given NULL", op, field,
                          (unsigned long long)need));
  if (b->count < need)
    return invalid(format("%s: argument '%s': expected at least %llu elements, given %llu", op, field,
                          (unsigned long long)need, (unsigned long long)b->count));
  return ok_status();
}

// pos_offset + tokens, saturating at 2^64 - 1 (a wrapped sum would pass the table-rows check);
// check_rope rejects the saturated value: no position may reach 2^64.
inline uint64_t pos_end(uint64_t pos_offset, uint64_t tokens) { return common::sat_add(pos_offset, tokens); }

// RoPE / qk-norm rules shared by the §4 ops and the paged writers (docs/spec.md §0.7). `pos_end` =
// largest host position + 1 (0 when positions come from device memory). On success `rows` is
// the table row count (0 in mode 0 or without work).
inline Status check_rope(const char* op, const char* mode_field, int32_t mode, uint64_t D, float eps,
                         const ferrum_buffer* cos, const ferrum_buffer* sin, uint64_t pos_end, bool work,
                         uint64_t& rows) {
  rows = 0;
  if (mode < 0 || mode > 3)
    return invalid(format("%s: argument '%s': expected 0..3, given %d", op, mode_field, mode));
  if (work && pos_end == common::kU64Max)  // every mode: a position must stay representable
    return invalid(format("%s: arguments 'pos_offset'/'tokens': expected pos_offset + tokens < 2^64 - 1, given a "
                          "sum of 2^64 - 1 or more (it reaches or wraps past 2^64)",
                          op));
  Status s = check_finite_eps(op, eps);
  if (s.ok()) s = check_positive(op, "head_dim", D, work);
  if (!s.ok() || mode == 0 || !work) return s;
  if (D % 2)
    return invalid(format("%s: argument 'head_dim': expected an even value for %s %d, given %llu", op, mode_field,
                          mode, (unsigned long long)D));
  if (!cos || !sin)
    return invalid(format("%s: arguments 'cos'/'sin': expected RoPE tables for %s %d, given NULL", op, mode_field,
                          mode));
  rows = std::min(cos->count, sin->count) / (D / 2);
  if (pos_end > rows)
    return invalid(format("%s: arguments 'pos_offset'/'tokens': expected pos_offset + tokens <= %llu (the RoPE "
                          "tables' rows), given %llu",
                          op, (unsigned long long)rows, (unsigned long long)pos_end));
  return ok_status();
}

// The norm weight `name` must be a [head_dim] buffer in mode 1 and NULL in the modes that read
// no weight (0, 2, 3): a weight given with such a mode would be silently ignored, which is
// almost always a host passing the wrong mode.
inline Status check_norm_weight(const char* op, const char* name, const ferrum_buffer* w, int32_t mode, uint64_t D,
                                bool work) {
  if (mode != 1 && w)
    return invalid(format("%s: argument '%s': expected NULL with mode %d (that mode reads no norm weight; "
                          "only mode 1, RMSNorm then NeoX, applies it), given a buffer", op, name, mode));
  return (mode == 1 && work) ? check_min_count(op, name, w, D) : ok_status();
}

// ---- memory family (docs/spec.md §1) -------------------------------------------------------------
// The buffer a transfer reads or writes is mandatory whatever the length: its registry entry has no
// shape, so the generated checks accept NULL, and a zero length is no licence for a NULL handle.
inline Status check_given(const char* op, const char* name, const ferrum_buffer* b) {
  if (!b) return invalid(format("%s: argument '%s': expected a buffer, given NULL", op, name));
  return ok_status();
}

// `len` elements must fit the buffer `name` (which must be given).
inline Status check_len(const char* op, const char* field, uint64_t len, const char* name, const ferrum_buffer* b) {
  Status s = check_given(op, name, b);
  if (s.ok() && len > b->count)
    return invalid(format("%s: argument '%s': expected at most %llu (the buffer's element count), given %llu", op, field,
                          (unsigned long long)b->count, (unsigned long long)len));
  return s;
}

// A typed transfer's `dtype` must equal the buffer `name`'s (which must be given).
inline Status check_dtype_match(const char* op, int32_t given, const char* name, const ferrum_buffer* b) {
  Status s = check_given(op, name, b);
  if (s.ok() && given != b->dtype)
    return invalid(format("%s: argument 'dtype': expected %s (the buffer's dtype), given %s", op, dtype_name(b->dtype),
                          dtype_name(given)));
  return s;
}

// copy_slice with len > 0: both buffers, a legal dtype pair, both ranges inside their buffers,
// no overlap within one buffer.
inline Status check_copy_slice(const ferrum_copy_slice_args& a) {
  if (!a.src || !a.dst) return invalid("copy_slice: arguments 'src' and 'dst': expected buffers, given NULL");
  const int32_t sd = a.src->dtype, dd = a.dst->dtype;
  if (sd != dd && !(is_float_dtype(sd) && is_float_dtype(dd)))
    return invalid(format("copy_slice: arguments 'src'/'dst': expected equal dtypes or two float dtypes, given %s -> %s",
                          dtype_name(sd), dtype_name(dd)));
  if (!common::range_ok(a.src_offset, a.len, a.src->count))
    return invalid(format("copy_slice: argument 'src': expected src_offset + len <= %llu, given %llu + %llu",
                          (unsigned long long)a.src->count, (unsigned long long)a.src_offset, (unsigned long long)a.len));
  if (!common::range_ok(a.dst_offset, a.len, a.dst->count))
    return invalid(format("copy_slice: argument 'dst': expected dst_offset + len <= %llu, given %llu + %llu",
                          (unsigned long long)a.dst->count, (unsigned long long)a.dst_offset, (unsigned long long)a.len));
  if (a.src == a.dst && common::ranges_overlap(a.src_offset, a.dst_offset, a.len))
    return invalid("copy_slice: arguments 'src'/'dst': expected non-overlapping ranges of one buffer, given overlapping ones");
  return ok_status();
}

// buffer_info ([no ctx]): the same for every plugin built on plugin_support's ferrum_buffer.
inline ferrum_status buffer_info(const ferrum_buffer_info_args* a) {
  return guard(nullptr, "buffer_info", [&]() -> Status {
    ferrum::common::CheckError err;
    BufferAccess acc;
    if (ferrum::common::check_args(acc, a, err) != FERRUM_STATUS_OK) return {err.status, err.message};
    if (!a->buf) return invalid("buffer_info: argument 'buf': expected a buffer, given NULL");
    *a->dtype = a->buf->dtype;
    *a->count = a->buf->count;
    return ok_status();
  });
}

// GQA shape (docs/spec.md §0.8): both head counts ≥ 1 and the query heads a multiple of the KV heads.
inline Status check_gqa(const char* op, uint64_t nh, uint64_t nkv, const char* nh_name = "num_heads",
                        const char* nkv_name = "num_kv_heads") {
  if (nh == 0 || nkv == 0 || nh % nkv)
    return invalid(format("%s: arguments '%s'/'%s': expected both >= 1 and %s %% %s == 0, given %llu / %llu", op,
                          nh_name, nkv_name, nh_name, nkv_name, (unsigned long long)nh, (unsigned long long)nkv));
  return ok_status();
}

// A capability flag the plugin answers with a constant (`value` into *result).
template <class Ctx, class Args>
ferrum_status answer_capability(Ctx* ctx, const Args* a, uint32_t value) {
  return run_op(ctx, a, [value](Ctx&, const Args& args, bool dry) -> Status {
    if (!dry) *args.result = value;
    return ok_status();
  });
}

// query_attribute (ABI 1.1): the plugin's answer to FERRUM_ATTRIBUTE_<n> is answers[n] (index 0
// unused), the same value its supports_* slot of that question gives. An attribute beyond the
// ones this header knows is UNSUPPORTED (a newer host asking an older plugin); 0 or less is invalid.
template <class Ctx>
ferrum_status answer_attribute(Ctx* ctx, const ferrum_query_attribute_args* a,
                               const uint64_t (&answers)[FERRUM_ATTRIBUTE_COUNT_V1_1 + 1]) {
  return run_op(ctx, a, [&answers](Ctx&, const ferrum_query_attribute_args& args, bool dry) -> Status {
    if (args.attribute <= 0)
      return invalid(format("query_attribute: argument 'attribute': expected a FERRUM_ATTRIBUTE_* value "
                            "(1..%d), given %d", FERRUM_ATTRIBUTE_COUNT_V1_1, args.attribute));
    if (args.attribute > FERRUM_ATTRIBUTE_COUNT_V1_1)
      return {FERRUM_STATUS_UNSUPPORTED,
              format("query_attribute: argument 'attribute': %d is not an attribute this plugin knows "
                     "(ABI %d.%d: 1..%d)", args.attribute, FERRUM_ABI_VERSION_MAJOR,
                     FERRUM_ABI_VERSION_MINOR, FERRUM_ATTRIBUTE_COUNT_V1_1)};
    if (!dry) *args.value = answers[args.attribute];
    return ok_status();
  });
}

}  // namespace ferrum::plugin::rules
