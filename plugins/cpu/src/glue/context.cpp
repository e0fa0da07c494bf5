// CPU plugin: context, capability flags and timer (docs/spec.md §2, §9). The CPU executes every op
// in the calling thread before returning, so the "stream" is always drained: sync is a no-op
// and a timer mark is the monotonic clock at the call (the device layer's Timer).
#include <new>

#include "cpu_plugin.hpp"

namespace ferrum::cpu {
namespace {

ferrum_status new_context(ferrum_context*, const ferrum_new_context_args* a) {
  return plugin::guard(nullptr, "new_context", [&]() -> Status {
    Status s = check_new_context_args(a);
    if (s.ok()) s = check_new_context(*a, 1, "0 (the CPU plugin has one device)");
    if (s.ok() && ferrum_new_context_args_external_stream(a) != 0)
      s = unsupported(plugin::format("new_context: argument 'external_stream': expected 0 (the CPU plugin runs every "
                                     "op on the calling thread and has no streams), given 0x%llx",
                                     (unsigned long long)ferrum_new_context_args_external_stream(a)));
    if (!s.ok() || plugin::dry_run_flag()) return s;
    auto* c = new (std::nothrow) ferrum_context;
    if (!c) return {FERRUM_STATUS_OUT_OF_MEMORY, "new_context: out of host memory"};
    c->activation_dtype = a->activation_dtype ? a->activation_dtype : FERRUM_DTYPE_F32;
    *a->context = c;
    return ok_status();
  });
}

ferrum_status context_destroy(ferrum_context*, const ferrum_context_destroy_args* a) {
  return run_release("context_destroy", a, FERRUM_CONTEXT_DESTROY_ARGS_SIZE_V1_0, [](const ferrum_context_destroy_args& a) {
    delete a.context;  // NULL-safe
    return ok_status();
  });
}

ferrum_status context_info(ferrum_context* ctx, const ferrum_context_info_args* a) { return plugin::rules::context_info(ctx, a); }

ferrum_status sync(ferrum_context* ctx, const ferrum_sync_args* a) { return nothing_to_do(ctx, a); }

ferrum_status sync_before_host_readback(ferrum_context* ctx, const ferrum_sync_before_host_readback_args* a) {
  return nothing_to_do(ctx, a);
}

ferrum_status activation_elem_size_bytes(ferrum_context* ctx, const ferrum_activation_elem_size_bytes_args* a) {
  return plugin::rules::activation_elem_size_bytes(ctx, a);
}

ferrum_status supports_device_ordinal_scope(ferrum_context*, const ferrum_supports_device_ordinal_scope_args* a) {
  return answer_device_ordinal_scope(a, 0);  // one device
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
  return run_release("timer_release", a, FERRUM_TIMER_RELEASE_ARGS_SIZE_V1_0, [](const ferrum_timer_release_args& a) {
    delete a.timer;
    return ok_status();
  });
}

ferrum_status record_start(ferrum_context* ctx, const ferrum_record_start_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_record_start_args& a, bool dry) -> Status {
    Status s = check_timer_given("record_start", a.timer);
    if (s.ok() && !dry) a.timer->t.record_start();
    return s;
  });
}

ferrum_status record_end(ferrum_context* ctx, const ferrum_record_end_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_record_end_args& a, bool dry) -> Status {
    Status s = check_timer_given("record_end", a.timer);
    if (s.ok()) s = check_timer_started(a.timer->t.has_start);
    if (s.ok() && !dry) a.timer->t.record_end();
    return s;
  });
}

ferrum_status elapsed_ms(ferrum_context* ctx, const ferrum_elapsed_ms_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_elapsed_ms_args& a, bool dry) -> Status {
    Status s = check_timer_given("elapsed_ms", a.timer);
    if (s.ok()) s = check_timer_marks(a.timer->t.has_start, a.timer->t.has_end);
    if (s.ok() && !dry) *a.ms = a.timer->t.elapsed_ms();
    return s;
  });
}

// Capability flags (docs/spec.md §2): the CPU plugin serves every op of each flag for every
// activation dtype, any head_dim >= 1 and any block_size >= 1, so each flag is 1.
ferrum_status supports_llama_family_batched_decode(ferrum_context* ctx,
                                                   const ferrum_supports_llama_family_batched_decode_args* a) {
  return answer_capability(ctx, a, 1);
}
ferrum_status supports_paged_kv(ferrum_context* ctx, const ferrum_supports_paged_kv_args* a) {
  return answer_capability(ctx, a, 1);
}
ferrum_status supports_varlen_qkv(ferrum_context* ctx, const ferrum_supports_varlen_qkv_args* a) {
  return answer_capability(ctx, a, 1);
}
ferrum_status supports_vllm_paged_attn(ferrum_context* ctx, const ferrum_supports_vllm_paged_attn_args* a) {
  return answer_capability(ctx, a, 1);
}

// query_attribute (ABI 1.1): the answers of the slots above, by FERRUM_ATTRIBUTE_* value.
ferrum_status query_attribute(ferrum_context* ctx, const ferrum_query_attribute_args* a) {
  static constexpr uint64_t kAnswers[FERRUM_ATTRIBUTE_COUNT_V1_1 + 1] = {
      0, /* DEVICE_ORDINAL_SCOPE: one device */ 0, /* LLAMA_FAMILY_BATCHED_DECODE */ 1,
      /* PAGED_KV */ 1, /* VARLEN_QKV */ 1, /* VLLM_PAGED_ATTN */ 1};
  return plugin::rules::answer_attribute(ctx, a, kAnswers);
}

// ---- events (ABI 1.1, docs/spec.md §2.1) -------------------------------------------------------
// Every op has finished when its call returns: record marks the event, wait has nothing to wait
// for, synchronize returns at once and query answers 1. Each still validates its handle.
ferrum_status event_create(ferrum_context* ctx, const ferrum_event_create_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_event_create_args& a, bool dry) -> Status {
    if (dry) return ok_status();
    ferrum_event* e = plugin::new_event_handle<ferrum_event>();
    if (!e) return {FERRUM_STATUS_OUT_OF_MEMORY, "event_create: out of host memory"};
    *a.event = e;
    return ok_status();
  });
}

ferrum_status event_record(ferrum_context* ctx, const ferrum_event_record_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_event_record_args& a, bool dry) -> Status {
    ferrum_event* e = nullptr;
    Status s = plugin::live_event("event_record", a.event, e);
    if (s.ok() && !dry) e->recorded = true;
    return s;
  });
}

ferrum_status event_wait(ferrum_context* ctx, const ferrum_event_wait_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_event_wait_args& a, bool) -> Status {
    ferrum_event* e = nullptr;
    return plugin::live_event("event_wait", a.event, e);
  });
}

ferrum_status event_synchronize(ferrum_context* ctx, const ferrum_event_synchronize_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_event_synchronize_args& a, bool) -> Status {
    ferrum_event* e = nullptr;
    return plugin::live_event("event_synchronize", a.event, e);
  });
}

ferrum_status event_query(ferrum_context* ctx, const ferrum_event_query_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_event_query_args& a, bool dry) -> Status {
    ferrum_event* e = nullptr;
    Status s = plugin::live_event("event_query", a.event, e);
    if (s.ok() && !dry) *a.done = 1;
    return s;
  });
}

ferrum_status event_release(ferrum_context*, const ferrum_event_release_args* a) {
  return run_release("event_release", a, FERRUM_EVENT_RELEASE_ARGS_SIZE_V1_1, [](const ferrum_event_release_args& a) {
    if (!a.event) return ok_status();  // NULL-safe
    if (!plugin::release_event_handle(a.event)) return plugin::event_not_live("event_release", a.event);
    return ok_status();
  });
}

}  // namespace

const ferrum_context_table kContextTable = {sizeof(ferrum_context_table), FERRUM_CONTEXT_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cpu
