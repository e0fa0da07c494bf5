// Internal: the facade defaults of docs/spec.md §0.14 — what Context runs when a slot is NULL.
//
// One overload of facade_default per op that has a default; has_facade_default<Args> (and the
// generated kFacadeDefault table behind Backend::supports) is derived from this overload set,
// so there is one list only. Ops whose §0.14 default is "unsupported" (begin/end_graph_capture,
// set_decode_state, set_dev_state_mode) have no overload: a NULL slot reports unsupported.
// The args were already checked by the generated checks when these run.
#pragma once

#include <ferrum/context.hpp>
#include <ferrum/ferrum_plugin.h>

namespace ferrum::detail {

// memory
void facade_default(Context& c, const ferrum_from_weight_bytes_args& a);
void facade_default(Context& c, const ferrum_write_f32_to_activation_args& a);
// context: capability flags, readback, element size
void facade_default(Context& c, const ferrum_sync_before_host_readback_args& a);
void facade_default(Context& c, const ferrum_activation_elem_size_bytes_args& a);
void facade_default(Context& c, const ferrum_supports_llama_family_batched_decode_args& a);
void facade_default(Context& c, const ferrum_supports_paged_kv_args& a);
void facade_default(Context& c, const ferrum_supports_varlen_qkv_args& a);
void facade_default(Context& c, const ferrum_supports_vllm_paged_attn_args& a);
// dense
void facade_default(Context& c, const ferrum_scaled_add_inplace_args& a);
void facade_default(Context& c, const ferrum_embedding_lookup_dev_args& a);
void facade_default(Context& c, const ferrum_argmax_rows_f16_args& a);
// moe
void facade_default(Context& c, const ferrum_moe_combine_args& a);
// graph family
void facade_default(Context& c, const ferrum_replay_graph_args& a);
void facade_default(Context& c, const ferrum_reset_graph_args& a);
void facade_default(Context& c, const ferrum_reset_all_graphs_args& a);
void facade_default(Context& c, const ferrum_graph_capture_in_flight_args& a);
// collective family (a single rank)
void facade_default(Context& c, const ferrum_comm_unique_id_args& a);
void facade_default(Context& c, const ferrum_comm_init_args& a);
void facade_default(Context& c, const ferrum_comm_destroy_args& a);
void facade_default(Context& c, const ferrum_world_size_args& a);
void facade_default(Context& c, const ferrum_rank_args& a);
void facade_default(Context& c, const ferrum_all_reduce_args& a);
void facade_default(Context& c, const ferrum_all_gather_args& a);
void facade_default(Context& c, const ferrum_broadcast_args& a);

template <class Args>
inline constexpr bool has_facade_default =
    requires(Context& c, const Args& a) { facade_default(c, a); };

// supports_device_ordinal_scope is [no ctx]: its default (0) lives in Backend.
template <>
inline constexpr bool has_facade_default<ferrum_supports_device_ordinal_scope_args> = true;

// Indexed by op id (generated in context_ops_gen.cpp).
extern const bool kFacadeDefault[kOpCount + 1];

}  // namespace ferrum::detail
