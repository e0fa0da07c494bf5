// CPU plugin: context, capability flags and timer (docs/spec.md §2, §9). The CPU executes every op
// in the calling thread before returning, so the "stream" is always drained: sync is a no-op
// and a timer mark is the monotonic clock at the call.
#include <new>

#include <ferrum/common/op_rules.hpp>

#include "cpu_plugin.hpp"

namespace ferrum::cpu {
namespace {

using plugin::run_op;

// Staging limits of docs/spec.md §5.1 (reported even before the batched ops exist).
constexpr uint64_t kBatchedSlots = 128;
constexpr uint64_t kBatchedItems = 64;

ferrum_status new_context(ferrum_context*, const ferrum_new_context_args* a) {
  return plugin::guard(nullptr, "new_context", [&]() -> Status {
    ferrum::common::CheckError err;
    plugin::BufferAccess acc;
    if (ferrum::common::check_args(acc, a, err) != FERRUM_STATUS_OK) return {err.status, err.message};
    if (a->device_ordinal != 0)
      return invalid(plugin::format("new_context: argument 'device_ordinal': expected 0 (the CPU plugin has one device), given %llu",
                                    (unsigned long long)a->device_ordinal));
    if (a->activation_dtype != 0 && !is_float_dtype(a->activation_dtype))
      return invalid(plugin::format("new_context: argument 'activation_dtype': expected 0, f32, f16 or bf16, given %d",
                                    a->activation_dtype));
    if (plugin::dry_run_flag()) return ok_status();
    auto* c = new (std::nothrow) ferrum_context;
    if (!c) return {FERRUM_STATUS_OUT_OF_MEMORY, "new_context: out of host memory"};
    c->activation_dtype = a->activation_dtype ? a->activation_dtype : FERRUM_DTYPE_F32;
    *a->context = c;
    return ok_status();
  });
}

ferrum_status context_destroy(ferrum_context*, const ferrum_context_destroy_args* a) {
  return plugin::guard(nullptr, "context_destroy", [&]() -> Status {
    if (!a || a->struct_size < FERRUM_CONTEXT_DESTROY_ARGS_SIZE_V1_0)
      return invalid("context_destroy: args NULL or struct_size too small");
    delete a->context;  // NULL-safe
    return ok_status();
  });
}

ferrum_status context_info(ferrum_context* ctx, const ferrum_context_info_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_context_info_args& a, bool dry) -> Status {
    if (dry) return ok_status();
    *a.device_ordinal = c.device;
    *a.activation_dtype = c.activation_dtype;
    *a.batched_slots = kBatchedSlots;
    *a.batched_items = kBatchedItems;
    return ok_status();
  });
}

ferrum_status sync(ferrum_context* ctx, const ferrum_sync_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_sync_args&, bool) { return ok_status(); });
}

ferrum_status sync_before_host_readback(ferrum_context* ctx, const ferrum_sync_before_host_readback_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_sync_before_host_readback_args&, bool) { return ok_status(); });
}

ferrum_status activation_elem_size_bytes(ferrum_context* ctx, const ferrum_activation_elem_size_bytes_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_activation_elem_size_bytes_args& a, bool dry) -> Status {
    if (!dry) *a.result = dtype_size(c.activation_dtype);
    return ok_status();
  });
}

ferrum_status supports_device_ordinal_scope(ferrum_context*, const ferrum_supports_device_ordinal_scope_args* a) {
  return plugin::guard(nullptr, "supports_device_ordinal_scope", [&]() -> Status {
    if (!a || a->struct_size < FERRUM_SUPPORTS_DEVICE_ORDINAL_SCOPE_ARGS_SIZE_V1_0 || !a->result)
      return invalid("supports_device_ordinal_scope: args NULL, struct_size too small or result NULL");
    *a->result = 0;  // one device
    return ok_status();
  });
}

ferrum_status make_timer(ferrum_context* ctx, const ferrum_make_timer_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_make_timer_args& a, bool dry) -> Status {
    if (dry) return ok_status();
    auto* t = new (std::nothrow) ferrum_timer;
    if (!t) return {FERRUM_STATUS_OUT_OF_MEMORY, "make_timer: out of host memory"};
    *a.timer = t;
    return ok_status();
  });
}

ferrum_status timer_release(ferrum_context*, const ferrum_timer_release_args* a) {
  return plugin::guard(nullptr, "timer_release", [&]() -> Status {
    if (!a || a->struct_size < FERRUM_TIMER_RELEASE_ARGS_SIZE_V1_0)
      return invalid("timer_release: args NULL or struct_size too small");
    delete a->timer;
    return ok_status();
  });
}

Status need_timer(const char* op, const ferrum_timer* t) {
  return t ? ok_status() : invalid(std::string(op) + ": argument 'timer': expected a timer, given NULL");
}

ferrum_status record_start(ferrum_context* ctx, const ferrum_record_start_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_record_start_args& a, bool dry) -> Status {
    Status s = need_timer("record_start", a.timer);
    if (!s.ok() || dry) return s;
    a.timer->has_start = true;
    a.timer->has_end = false;
    a.timer->start = std::chrono::steady_clock::now();
    return ok_status();
  });
}

ferrum_status record_end(ferrum_context* ctx, const ferrum_record_end_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_record_end_args& a, bool dry) -> Status {
    Status s = need_timer("record_end", a.timer);
    if (s.ok() && !a.timer->has_start)
      s = invalid("record_end: argument 'timer': expected a timer with a start mark, given one without (call record_start first)");
    if (!s.ok() || dry) return s;
    a.timer->has_end = true;
    a.timer->end = std::chrono::steady_clock::now();
    return ok_status();
  });
}

ferrum_status elapsed_ms(ferrum_context* ctx, const ferrum_elapsed_ms_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_elapsed_ms_args& a, bool dry) -> Status {
    Status s = need_timer("elapsed_ms", a.timer);
    if (s.ok() && !(a.timer->has_start && a.timer->has_end))
      s = invalid("elapsed_ms: argument 'timer': expected both marks recorded, given a timer missing one");
    if (!s.ok() || dry) return s;
    // arith-ok: time points, not sizes
    *a.ms = std::chrono::duration<double, std::milli>(a.timer->end - a.timer->start).count();
    return ok_status();
  });
}

// Capability flags (docs/spec.md §2): the CPU plugin serves every op of each flag for every
// activation dtype, any head_dim >= 1 and any block_size >= 1, so each flag is 1.
template <class Args>
ferrum_status capability_one(ferrum_context* ctx, const Args* a) {
  return plugin::rules::answer_capability(ctx, a, 1);
}
ferrum_status supports_llama_family_batched_decode(ferrum_context* ctx,
                                                   const ferrum_supports_llama_family_batched_decode_args* a) {
  return capability_one(ctx, a);
}
ferrum_status supports_paged_kv(ferrum_context* ctx, const ferrum_supports_paged_kv_args* a) {
  return capability_one(ctx, a);
}
ferrum_status supports_varlen_qkv(ferrum_context* ctx, const ferrum_supports_varlen_qkv_args* a) {
  return capability_one(ctx, a);
}
ferrum_status supports_vllm_paged_attn(ferrum_context* ctx, const ferrum_supports_vllm_paged_attn_args* a) {
  return capability_one(ctx, a);
}

}  // namespace

const ferrum_context_table kContextTable = {
    sizeof(ferrum_context_table), new_context, context_destroy, context_info, sync,
    sync_before_host_readback, activation_elem_size_bytes, supports_device_ordinal_scope,
    supports_llama_family_batched_decode, supports_paged_kv, supports_varlen_qkv, supports_vllm_paged_attn,
    make_timer, timer_release, record_start, record_end, elapsed_ms,
};

}  // namespace ferrum::cpu
