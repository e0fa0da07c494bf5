// Op-specific argument rules of OPS.md that the generated generic checks cannot express, shared
// by the project's plugins so that every plugin rejects the same arguments with the same
// detail text. Both the CPU glue (plugins/cpu/src/glue.hpp) and the CUDA glue use it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <ferrum/common/plugin_support.hpp>

namespace ferrum::plugin::rules {

// `eps` must be finite and >= 0 (norms, qk-norm).
inline Status check_finite_eps(const char* op, float eps) {
  if (!std::isfinite(eps) || eps < 0)
    return invalid(format("%s: argument 'eps': expected a finite value >= 0, given %g", op, eps));
  return ok_status();
}

// A dimension that must be positive while the op has work (OPS.md §0.12 "zero inner dimension").
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

// pos_offset + tokens, saturating (a wrapped sum would pass the table-rows check).
inline uint64_t pos_end(uint64_t pos_offset, uint64_t tokens) {
  return pos_offset > UINT64_MAX - tokens ? UINT64_MAX : pos_offset + tokens;
}

// RoPE / qk-norm rules shared by the §4 ops and the paged writers (OPS.md §0.7). `pos_end` =
// largest host position + 1 (0 when positions come from device memory). On success `rows` is
// the table row count (0 in mode 0 or without work).
inline Status check_rope(const char* op, const char* mode_field, int32_t mode, uint64_t D, float eps,
                         const ferrum_buffer* cos, const ferrum_buffer* sin, uint64_t pos_end, bool work,
                         uint64_t& rows) {
  rows = 0;
  if (mode < 0 || mode > 3)
    return invalid(format("%s: argument '%s': expected 0..3, given %d", op, mode_field, mode));
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

// The norm weight `name` must be a [head_dim] buffer in mode 1.
inline Status check_norm_weight(const char* op, const char* name, const ferrum_buffer* w, int32_t mode, uint64_t D,
                                bool work) {
  return (mode == 1 && work) ? check_min_count(op, name, w, D) : ok_status();
}

// ---- memory family (OPS.md §1) -------------------------------------------------------------
// `len` elements must fit the buffer.
inline Status check_len(const char* op, const char* field, uint64_t len, const ferrum_buffer* b) {
  if (len > b->count)
    return invalid(format("%s: argument '%s': expected at most %llu (the buffer's element count), given %llu", op, field,
                          (unsigned long long)b->count, (unsigned long long)len));
  return ok_status();
}

// A typed transfer's `dtype` must equal the buffer's.
inline Status check_dtype_match(const char* op, int32_t given, const ferrum_buffer* b) {
  if (given != b->dtype)
    return invalid(format("%s: argument 'dtype': expected %s (the buffer's dtype), given %s", op, dtype_name(b->dtype),
                          dtype_name(given)));
  return ok_status();
}

// copy_slice with len > 0: both buffers, a legal dtype pair, both ranges inside their buffers,
// no overlap within one buffer.
inline Status check_copy_slice(const ferrum_copy_slice_args& a) {
  if (!a.src || !a.dst) return invalid("copy_slice: arguments 'src' and 'dst': expected buffers, given NULL");
  const int32_t sd = a.src->dtype, dd = a.dst->dtype;
  if (sd != dd && !(is_float_dtype(sd) && is_float_dtype(dd)))
    return invalid(format("copy_slice: arguments 'src'/'dst': expected equal dtypes or two float dtypes, given %s -> %s",
                          dtype_name(sd), dtype_name(dd)));
  if (a.src_offset > a.src->count || a.len > a.src->count - a.src_offset)
    return invalid(format("copy_slice: argument 'src': expected src_offset + len <= %llu, given %llu + %llu",
                          (unsigned long long)a.src->count, (unsigned long long)a.src_offset, (unsigned long long)a.len));
  if (a.dst_offset > a.dst->count || a.len > a.dst->count - a.dst_offset)
    return invalid(format("copy_slice: argument 'dst': expected dst_offset + len <= %llu, given %llu + %llu",
                          (unsigned long long)a.dst->count, (unsigned long long)a.dst_offset, (unsigned long long)a.len));
  if (a.src == a.dst && a.src_offset < a.dst_offset + a.len && a.dst_offset < a.src_offset + a.len)
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

// GQA shape (OPS.md §0.8): both head counts ≥ 1 and the query heads a multiple of the KV heads.
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

}  // namespace ferrum::plugin::rules
