// The lifecycle, memory, context and timer rules of docs/spec.md §1, §2, §9 that every plugin of
// the project applies the same way, and the slots that need nothing from the device at all: the
// project's plugins keep only what their device does differently (where memory lives, how a
// context is made, what a timer marks). Same checks, same messages on every plugin.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include <ferrum/common/op_rules.hpp>

namespace ferrum::plugin::rules {

// ---- lifecycle (docs/spec.md §0) ---------------------------------------------------------------
// The output struct of device_props: given and at least the 1.0 size.
inline Status check_device_props_out(const ferrum_device_props* p) {
  if (!p || p->struct_size < FERRUM_DEVICE_PROPS_SIZE_V1_0)
    return invalid("device_props: argument 'props': expected a struct with struct_size >= 168, given NULL or smaller");
  return ok_status();
}

// What a device of the project's plugins reports (every dtype 1..8 can be stored; F32/F16/BF16
// compute). The name is cut to the field's size, NUL-terminated.
struct DeviceDescription {
  std::string name;
  int32_t kind = FERRUM_DEVICE_KIND_CPU;
  int32_t compute_major = 0, compute_minor = 0;
  uint64_t total_memory_bytes = 0;
  uint64_t multiprocessors = 0;
};
inline void fill_device_props(const DeviceDescription& d, ferrum_device_props* p) {
  std::memset(p->name, 0, sizeof p->name);
  std::strncpy(p->name, d.name.c_str(), sizeof p->name - 1);
  p->kind = d.kind;
  p->compute_major = d.compute_major;
  p->compute_minor = d.compute_minor;
  p->dtype_mask = 0x1FEu;
  p->total_memory_bytes = d.total_memory_bytes;
  p->multiprocessors = d.multiprocessors;
}

// The [no ctx] slots that free something (buffer_release, context_destroy, timer_release):
// args given and at least `min_size`, then `release(args)`, every exception a status.
template <class Args, class F>
ferrum_status run_release(const char* op, const Args* a, uint64_t min_size, F&& release) noexcept {
  return guard(nullptr, op, [&]() -> Status {
    if (!a || a->struct_size < min_size) return invalid(std::string(op) + ": args NULL or struct_size too small");
    return release(*a);
  });
}

// ---- memory family (docs/spec.md §1) -------------------------------------------------------------
// A dtype a buffer can hold (alloc_typed, from_slice_typed).
inline Status check_storable_dtype(const char* op, int32_t dtype) {
  if (dtype < FERRUM_DTYPE_F32 || dtype > FERRUM_DTYPE_F8_E4M3)
    return invalid(format("%s: argument 'dtype': expected a dtype 1..8, given %d", op, dtype));
  return ok_status();
}

// from_weight_bytes: float source and destination dtypes, whole source elements. `dst_dtype`
// gets the buffer's dtype (the activation dtype for 0), `n` its element count.
inline Status check_from_weight_bytes(const ferrum_from_weight_bytes_args& a, int32_t activation_dtype,
                                      int32_t& dst_dtype, uint64_t& n) {
  if (!is_float_dtype(a.src_dtype))
    return invalid(format("from_weight_bytes: argument 'src_dtype': expected f32, f16 or bf16, given %s",
                          dtype_name(a.src_dtype)));
  if (a.dst_dtype != 0 && !is_float_dtype(a.dst_dtype))
    return invalid(format("from_weight_bytes: argument 'dst_dtype': expected 0, f32, f16 or bf16, given %d", a.dst_dtype));
  const uint64_t es = dtype_size(a.src_dtype);
  if (a.raw_len % es)
    return invalid(format("from_weight_bytes: argument 'raw_len': expected a multiple of %llu (%s), given %llu",
                          (unsigned long long)es, dtype_name(a.src_dtype), (unsigned long long)a.raw_len));
  dst_dtype = a.dst_dtype ? a.dst_dtype : activation_dtype;
  n = a.raw_len / es;
  return ok_status();
}

// write_typed / read_typed: the buffer given, of the transfer's dtype, holding `len` elements.
inline Status check_typed_transfer(const char* op, int32_t dtype, const char* len_field, uint64_t len, const char* name,
                                   const ferrum_buffer* b) {
  Status s = check_dtype_match(op, dtype, name, b);
  if (s.ok()) s = check_len(op, len_field, len, name, b);
  return s;
}

// ---- context family (docs/spec.md §2, §5.1) --------------------------------------------------------
// The §5.1 staging limits every plugin of the project reports: APPEND slots 0..63 (K) and
// 64..127 (V) per layer, ATTENTION slots 0..63, each of up to kBatchedItems items.
inline constexpr uint64_t kBatchedSlots = 128;
inline constexpr uint64_t kBatchedItems = 64;
inline constexpr uint64_t kMaxLayersForGraph = 64;  // FERRUM_MAX_LAYERS_FOR_GRAPH

// new_context ([no ctx]): the generic checks first (check_new_context_args), then, once the
// plugin knows how many devices it has, an ordinal below `devices` (`expected` words the range,
// e.g. "0 (the CPU plugin has one device)") and an activation dtype of 0 or a float.
inline Status check_new_context_args(const ferrum_new_context_args* a) {
  ferrum::common::CheckError err;
  BufferAccess acc;
  if (ferrum::common::check_args(acc, a, err) != FERRUM_STATUS_OK) return {err.status, err.message};
  return ok_status();
}
inline Status check_new_context(const ferrum_new_context_args& a, uint64_t devices, const std::string& expected) {
  if (a.device_ordinal >= devices)
    return invalid(format("new_context: argument 'device_ordinal': expected %s, given %llu", expected.c_str(),
                          (unsigned long long)a.device_ordinal));
  if (a.activation_dtype != 0 && !is_float_dtype(a.activation_dtype))
    return invalid(format("new_context: argument 'activation_dtype': expected 0, f32, f16 or bf16, given %d",
                          a.activation_dtype));
  return ok_status();
}

// context_info: the context's ordinal and activation dtype, and the §5.1 staging limits.
template <class Ctx>
ferrum_status context_info(Ctx* ctx, const ferrum_context_info_args* a) {
  return run_op(ctx, a, [](Ctx& c, const ferrum_context_info_args& a, bool dry) -> Status {
    if (dry) return ok_status();
    *a.device_ordinal = c.device;
    *a.activation_dtype = c.activation_dtype;
    *a.batched_slots = kBatchedSlots;
    *a.batched_items = kBatchedItems;
    return ok_status();
  });
}

template <class Ctx>
ferrum_status activation_elem_size_bytes(Ctx* ctx, const ferrum_activation_elem_size_bytes_args* a) {
  return run_op(ctx, a, [](Ctx& c, const ferrum_activation_elem_size_bytes_args& a, bool dry) -> Status {
    if (!dry) *a.result = dtype_size(c.activation_dtype);
    return ok_status();
  });
}

// A context op with nothing to do on this device once its args pass (sync_before_host_readback
// where buffers are never host-mapped; sync where every op has finished on return).
template <class Ctx, class Args>
ferrum_status nothing_to_do(Ctx* ctx, const Args* a) {
  return run_op(ctx, a, [](Ctx&, const Args&, bool) { return ok_status(); });
}

// supports_device_ordinal_scope ([no ctx]): `value` into *result.
inline ferrum_status answer_device_ordinal_scope(const ferrum_supports_device_ordinal_scope_args* a, uint32_t value) {
  return guard(nullptr, "supports_device_ordinal_scope", [&]() -> Status {
    if (!a || a->struct_size < FERRUM_SUPPORTS_DEVICE_ORDINAL_SCOPE_ARGS_SIZE_V1_0 || !a->result)
      return invalid("supports_device_ordinal_scope: args NULL, struct_size too small or result NULL");
    *a->result = value;
    return ok_status();
  });
}

// ---- timer (docs/spec.md §9) ---------------------------------------------------------------------
inline Status check_timer_given(const char* op, const void* timer) {
  return timer ? ok_status() : invalid(std::string(op) + ": argument 'timer': expected a timer, given NULL");
}
// record_end needs the start mark, elapsed_ms both marks.
inline Status check_timer_started(bool has_start) {
  if (!has_start)
    return invalid("record_end: argument 'timer': expected a timer with a start mark, given one without (call record_start first)");
  return ok_status();
}
inline Status check_timer_marks(bool has_start, bool has_end) {
  if (!(has_start && has_end))
    return invalid("elapsed_ms: argument 'timer': expected both marks recorded, given a timer missing one");
  return ok_status();
}

}  // namespace ferrum::plugin::rules
