// CUDA plugin: dense ops and the QK-norm/RoPE family (docs/spec.md §3, §4).
//
// Thin glue: generic generated checks (plugin::run_op), then the op rules of docs/spec.md with the
// CPU plugin's messages (<ferrum/common/op_rules.hpp>), then the device check, the dry-run
// stop, and one launch function of src/kernels/ on the context's stream. gemm goes through
// cuBLASLt in the device layer. Every op here is asynchronous and allocation-free (hence
// capturable) except argmax_rows_f16, the one synchronising op.
//
// Dev-state mode (docs/spec.md §8.2): with the mode on, embedding_lookup with ids_len = 1 gathers
// the decode-state token dev_state[0] and qk_norm_rope with tokens = 1 rotates at dev_state[1];
// both read them on the device, so the calls are capturable.
#include <ferrum/common/dense_rules.hpp>

#include <cuda_runtime_api.h>

#include "cuda_check.hpp"
#include "cuda_plugin.hpp"
#include "gemm.hpp"
#include "memory.hpp"
#include "kernels/elementwise.cuh"
#include "kernels/embedding.cuh"
#include "kernels/norm.cuh"
#include "kernels/rope.cuh"

namespace ferrum::cuda::glue {
namespace {

using common::sat_mul;
// Products below (row strides, head sizes, cache offsets) are of dimensions the generated checks
// bounded by a buffer's element count; sat_mul keeps them under the arithmetic rule all the same.

// Byte address of element `off` of buffer `b` (NULL stays NULL).
void* elem_ptr(const ferrum_buffer* b, uint64_t off) {
  return b ? static_cast<char*>(b->data) + sat_mul(off, dtype_size(b->dtype)) : nullptr;  // arith-ok: off inside b
}

const void* data(const ferrum_buffer* b) { return b ? b->data : nullptr; }
void* mdata(ferrum_buffer* b) { return b ? b->data : nullptr; }

// The decode-state buffer of a context in dev-state mode (never NULL while the mode is on:
// the graph family allocates it before the mode can be switched on).
Status dev_state_of(const char* op, const ferrum_context& c, const uint32_t*& p) {
  p = c.dev_state;
  if (!p)
    return {FERRUM_STATUS_INTERNAL,
            std::string(op) + ": dev-state mode is on but the context has no decode-state buffer"};
  return ok_status();
}


int32_t table_dtype(const ferrum_buffer* cos) { return cos ? cos->dtype : 0; }

// ---- §3 dense ops ---------------------------------------------------------------------------

ferrum_status gemm(ferrum_context* ctx, const ferrum_gemm_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_gemm_args& a, bool dry) -> Status {
    Status s = check_devices("gemm", c, {{"a", a.a}, {"b", a.b}, {"out", a.out}});
    if (!s.ok() || dry || a.m == 0 || a.n == 0) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    s = from_device(cuda::gemm(*c.dev, a.out->dtype, a.k ? a.a->data : nullptr, a.k ? a.b->data : nullptr,
                               a.out->data, a.m, a.n, a.k));
    if (!s.ok() && s.message.rfind("gemm", 0) != 0) s.message = "gemm: " + s.message;
    return s;
  });
}

ferrum_status rms_norm(ferrum_context* ctx, const ferrum_rms_norm_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_rms_norm_args& a, bool dry) -> Status {
    const char* op = "rms_norm";
    Status s = check_norm(op, a.eps, a.dim, a.tokens);
    if (s.ok()) s = check_devices(op, c, {{"x", a.x}, {"w", a.w}, {"out", a.out}});
    if (!s.ok() || dry || a.tokens == 0) return s;
    return launch(op, c, [&](cudaStream_t st) {
      return kernels::rms_norm(a.x->dtype, a.x->data, a.w->data, a.eps, a.out->data, a.tokens, a.dim, st);
    });
  });
}

ferrum_status fused_add_rms_norm(ferrum_context* ctx, const ferrum_fused_add_rms_norm_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_fused_add_rms_norm_args& a, bool dry) -> Status {
    const char* op = "fused_add_rms_norm";
    Status s = check_norm(op, a.eps, a.dim, a.tokens);
    if (s.ok()) s = check_devices(op, c, {{"residual", a.residual}, {"x", a.x}, {"w", a.w}, {"out", a.out}});
    if (!s.ok() || dry || a.tokens == 0) return s;
    return launch(op, c, [&](cudaStream_t st) {
      return kernels::fused_add_rms_norm(a.x->dtype, a.residual->data, a.x->data, a.w->data, a.eps, a.out->data,
                                         a.tokens, a.dim, st);
    });
  });
}

ferrum_status layer_norm(ferrum_context* ctx, const ferrum_layer_norm_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_layer_norm_args& a, bool dry) -> Status {
    const char* op = "layer_norm";
    Status s = check_norm(op, a.eps, a.dim, a.tokens);
    if (s.ok()) s = check_devices(op, c, {{"x", a.x}, {"gamma", a.gamma}, {"beta", a.beta}, {"out", a.out}});
    if (!s.ok() || dry || a.tokens == 0) return s;
    return launch(op, c, [&](cudaStream_t st) {
      return kernels::layer_norm(a.x->dtype, a.x->data, a.gamma->data, a.beta->data, a.eps, a.out->data, a.tokens,
                                 a.dim, st);
    });
  });
}

ferrum_status gelu(ferrum_context* ctx, const ferrum_gelu_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_gelu_args& a, bool dry) -> Status {
    Status s = check_devices("gelu", c, {{"x", a.x}, {"out", a.out}});
    if (!s.ok() || dry || a.len == 0) return s;
    return launch("gelu", c, [&](cudaStream_t st) {
      return kernels::gelu(a.x->dtype, a.x->data, a.out->data, a.len, st);
    });
  });
}

ferrum_status add_inplace(ferrum_context* ctx, const ferrum_add_inplace_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_add_inplace_args& a, bool dry) -> Status {
    Status s = check_devices("add_inplace", c, {{"residual", a.residual}, {"x", a.x}});
    if (!s.ok() || dry || a.len == 0) return s;
    return launch("add_inplace", c, [&](cudaStream_t st) {
      return kernels::add_inplace(a.residual->dtype, a.residual->data, a.x->data, a.len, st);
    });
  });
}

ferrum_status scaled_add_inplace(ferrum_context* ctx, const ferrum_scaled_add_inplace_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_scaled_add_inplace_args& a, bool dry) -> Status {
    Status s = check_scaled_add(a.scale);
    if (s.ok()) s = check_devices("scaled_add_inplace", c, {{"dst", a.dst}, {"src", a.src}});
    if (!s.ok() || dry || a.len == 0) return s;
    return launch("scaled_add_inplace", c, [&](cudaStream_t st) {
      return kernels::scaled_add_inplace(a.dst->dtype, a.dst->data, a.src->data, a.scale, a.len, st);
    });
  });
}

ferrum_status add_bias(ferrum_context* ctx, const ferrum_add_bias_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_add_bias_args& a, bool dry) -> Status {
    Status s = check_devices("add_bias", c, {{"data", a.data}, {"bias", a.bias}});
    if (!s.ok() || dry || a.rows == 0 || a.cols == 0) return s;
    return launch("add_bias", c, [&](cudaStream_t st) {
      return kernels::add_bias(a.data->dtype, a.data->data, a.bias->data, a.rows, a.cols, st);
    });
  });
}

ferrum_status split_qkv(ferrum_context* ctx, const ferrum_split_qkv_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_split_qkv_args& a, bool dry) -> Status {
    Status s = check_devices("split_qkv", c, {{"qkv", a.qkv}, {"q", a.q}, {"k", a.k}, {"v", a.v}});
    if (!s.ok() || dry || a.tokens == 0) return s;
    return launch("split_qkv", c, [&](cudaStream_t st) {
      return kernels::split_qkv(a.qkv->dtype, a.qkv->data, mdata(a.q), mdata(a.k), mdata(a.v), a.tokens, a.q_dim,
                                a.kv_dim, st);
    });
  });
}

ferrum_status fused_silu_mul_split(ferrum_context* ctx, const ferrum_fused_silu_mul_split_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_fused_silu_mul_split_args& a, bool dry) -> Status {
    Status s = check_devices("fused_silu_mul_split", c, {{"gate_up", a.gate_up}, {"out", a.out}});
    if (!s.ok() || dry || a.tokens == 0 || a.im == 0) return s;
    return launch("fused_silu_mul_split", c, [&](cudaStream_t st) {
      return kernels::silu_mul_split(a.gate_up->dtype, a.gate_up->data, 0, a.out->data, 0, a.tokens, a.im, st);
    });
  });
}

ferrum_status fused_silu_mul_split_strided(ferrum_context* ctx, const ferrum_fused_silu_mul_split_strided_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_fused_silu_mul_split_strided_args& a, bool dry) -> Status {
    Status s = check_devices("fused_silu_mul_split_strided", c, {{"gate_up", a.gate_up}, {"out", a.out}});
    if (!s.ok() || dry || a.tokens == 0 || a.intermediate == 0) return s;
    return launch("fused_silu_mul_split_strided", c, [&](cudaStream_t st) {
      return kernels::silu_mul_split(a.gate_up->dtype, a.gate_up->data, a.in_row_offset, a.out->data,
                                     a.out_row_offset, a.tokens, a.intermediate, st);
    });
  });
}

// Largest id of ids[0, n) (0 for n = 0); with `copy`, also copies them there in the same pass
// (one read of the host array instead of a check pass plus a memcpy; the loop vectorizes).
uint32_t max_id(const uint32_t* ids, uint64_t n, uint32_t* copy) {
  uint32_t m = 0;
  if (copy) {
    for (uint64_t i = 0; i < n; ++i) {
      const uint32_t v = ids[i];
      copy[i] = v;
      m = v > m ? v : m;
    }
  } else {
    for (uint64_t i = 0; i < n; ++i) m = ids[i] > m ? ids[i] : m;
  }
  return m;
}

Status embedding_lookup_impl(ferrum_context& c, const ferrum_embedding_lookup_args& a, bool dry) {
  const char* op = "embedding_lookup";
  if (a.ids_len == 0) return ok_status();
  Status s = check_embedding(op, a.dim, a.table);
  if (!s.ok()) return s;
  uint64_t vocab = a.table->count / a.dim;
  const bool dev = c.dev_state_mode && a.ids_len == 1;  // docs/spec.md §8.2: ids[0] is not read
  // Large calls whose ids fit one pinned staging slot: the ids are checked while they are
  // copied into the slot (one host pass), and the gather reads them from there (mapped), so no
  // copy precedes it on the stream. The slot is taken (waiting for its previous use) before
  // the other checks; a failed call leaves it free.
  cuda::StagingSlot* slot = nullptr;
  const bool mapped = !dev && !dry && c.dev && a.ids_len > kernels::kHostIdsPerLaunch &&
                      a.ids_len <= cuda::kStagingSlotBytes / sizeof(uint32_t);
  if (mapped) {
    cuda::DeviceContext& d = *c.dev;
    cuda::StagingSlot& sl = d.staging[d.next_staging_slot];
    if (sl.host && (!sl.pending || cudaEventSynchronize(sl.done) == cudaSuccess)) {
      d.next_staging_slot = (d.next_staging_slot + 1) % cuda::kStagingSlots;
      slot = &sl;
    }
  }
  if (!dev && max_id(a.ids, a.ids_len, slot ? static_cast<uint32_t*>(slot->host) : nullptr) >= vocab)
    return check_host_ids(a.ids, a.ids_len, *a.table, a.dim, vocab);  // names the first id out of range
  const uint32_t* state = nullptr;
  if (dev) s = dev_state_of(op, c, state);
  if (s.ok()) s = check_devices(op, c, {{"table", a.table}, {"out", a.out}});
  if (!s.ok() || dry) return s;
  return launch(op, c, [&](cudaStream_t st) -> cuda::Status {
    if (dev)  // the token dev_state[0]; >= vocab gives a +0.0 row
      return kernels::embedding_dev_ids(a.table->dtype, a.table->data, vocab, state, FERRUM_DTYPE_U32, 1,
                                        a.out->data, a.dim, st);
    if (slot) {
      void* ids_dev = nullptr;
      if (cudaHostGetDevicePointer(&ids_dev, slot->host, 0) == cudaSuccess) {
        cuda::Status cs = kernels::embedding_mapped_ids(a.table->dtype, a.table->data,
                                                        static_cast<const uint32_t*>(ids_dev), a.ids_len,
                                                        a.out->data, a.dim, st);
        if (!cs.ok()) return cs;
        FERRUM_CUDA_CHECK(cudaEventRecord(slot->done, st));  // the slot is read until the gather ends
        slot->pending = true;
        return cuda::ok_status();
      }
      (void)cudaGetLastError();  // not mapped: fall through to the copied path
    }
    // More ids than one parameter block holds: stage them (pinned slots, asynchronous copy)
    // into the context's gemm workspace, which is stream-ordered scratch like every use of it,
    // and gather in ONE launch per chunk of staging capacity (1 Mi ids).
    cuda::DeviceContext& d = *c.dev;
    const uint64_t cap = std::min<uint64_t>(d.workspace ? d.workspace_bytes : 0,
                                            cuda::kStagingSlots * cuda::kStagingSlotBytes) / sizeof(uint32_t);
    if (a.ids_len <= kernels::kHostIdsPerLaunch || cap == 0)  // ids as kernel parameters
      return kernels::embedding_host_ids(a.table->dtype, a.table->data, a.ids, a.ids_len, a.out->data, a.dim, st);
    const uint64_t esz = dtype_size(a.table->dtype);
    for (uint64_t i0 = 0; i0 < a.ids_len; i0 += cap) {
      // arith-ok: i0 < ids_len; cnt <= cap (a staging size); i0·dim < ids_len·dim = out's elements (generated check)
      const uint64_t cnt = std::min<uint64_t>(cap, a.ids_len - i0);
      cuda::Status cs = cuda::h2d_async(d, d.workspace, a.ids + i0, cnt * sizeof(uint32_t));  // arith-ok: as above
      if (cs.ok())
        cs = kernels::embedding_dev_ids(a.table->dtype, a.table->data, vocab, d.workspace, FERRUM_DTYPE_U32, cnt,
                                        static_cast<char*>(a.out->data) + sat_mul({i0, a.dim, esz}),  // arith-ok: as above
                                        a.dim, st);
      if (!cs.ok()) return cs;
    }
    return cuda::ok_status();
  });
}

ferrum_status embedding_lookup(ferrum_context* ctx, const ferrum_embedding_lookup_args* a) {
  // Capturable only in dev-state mode with ids_len = 1 (docs/spec.md §8.2): plugin::capturable_call.
  return run_op(ctx, a, embedding_lookup_impl);
}

ferrum_status embedding_lookup_dev(ferrum_context* ctx, const ferrum_embedding_lookup_dev_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_embedding_lookup_dev_args& a, bool dry) -> Status {
    const char* op = "embedding_lookup_dev";
    if (a.batch == 0) return ok_status();
    Status s = check_embedding(op, a.dim, a.table);
    if (s.ok()) s = check_devices(op, c, {{"table", a.table}, {"ids", a.ids}, {"out", a.out}});
    if (!s.ok() || dry) return s;
    return launch(op, c, [&](cudaStream_t st) {
      return kernels::embedding_dev_ids(a.table->dtype, a.table->data, a.table->count / a.dim, a.ids->data,
                                        a.ids->dtype, a.batch, a.out->data, a.dim, st);
    });
  });
}

// Both transposes: src [A, B, dim] -> dst [B, A, dim].
template <class Args>
Status swap_outer_dims(const char* op, ferrum_context& c, const Args& a, bool dry, uint64_t A, uint64_t B) {
  Status s = check_devices(op, c, {{"src", a.src}, {"dst", a.dst}});
  if (!s.ok() || dry || a.tokens == 0 || a.heads == 0 || a.dim == 0) return s;
  return launch(op, c, [&](cudaStream_t st) {
    return kernels::swap_outer(a.src->dtype, a.src->data, a.dst->data, A, B, a.dim, st);
  });
}

ferrum_status transpose_head_to_token(ferrum_context* ctx, const ferrum_transpose_head_to_token_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_transpose_head_to_token_args& a, bool dry) {
    return swap_outer_dims("transpose_head_to_token", c, a, dry, a.heads, a.tokens);  // [heads, tokens, dim] in
  });
}

ferrum_status transpose_token_to_head(ferrum_context* ctx, const ferrum_transpose_token_to_head_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_transpose_token_to_head_args& a, bool dry) {
    return swap_outer_dims("transpose_token_to_head", c, a, dry, a.tokens, a.heads);  // [tokens, heads, dim] in
  });
}

ferrum_status argmax_rows_f16(ferrum_context* ctx, const ferrum_argmax_rows_f16_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_argmax_rows_f16_args& a, bool dry) -> Status {
    if (a.m == 0) return ok_status();
    Status s = check_positive("argmax_rows_f16", "n", a.n, true);
    if (s.ok()) s = check_devices("argmax_rows_f16", c, {{"logits", a.logits}});
    if (!s.ok() || dry) return s;
    return launch("argmax_rows_f16", c, [&](cudaStream_t st) {
      return kernels::argmax_rows(a.logits->dtype, a.logits->data, a.m, a.n, a.out, st);
    });
  });
}

// ---- §4 QK-norm / RoPE family -------------------------------------------------------------

ferrum_status qk_norm_rope(ferrum_context* ctx, const ferrum_qk_norm_rope_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_qk_norm_rope_args& a, bool dry) -> Status {
    const char* op = "qk_norm_rope";
    const bool work = a.tokens && a.heads;
    const bool dev = c.dev_state_mode && a.tokens == 1;  // docs/spec.md §8.2: p = dev_state[1]
    uint64_t rows = 0;
    Status s = check_qk_norm_rope(op, a, dev ? 0 : pos_end(a.pos_offset, a.tokens), work, rows);
    if (s.ok()) s = check_rope_head_dim(op, a.head_dim, work);
    const uint32_t* state = nullptr;
    if (s.ok() && dev && work && a.mode != 0) s = dev_state_of(op, c, state);
    if (s.ok())
      s = check_devices(op, c, {{"input", a.input}, {"norm_w", a.norm_w}, {"cos", a.cos}, {"sin", a.sin},
                                {"output", a.output}});
    if (!s.ok() || dry || !work) return s;
    kernels::RopeLaunch L;
    L.act_dtype = a.input->dtype;
    L.tab_dtype = table_dtype(a.cos);
    L.in = a.input->data;
    L.in_row_stride = sat_mul(a.heads, a.head_dim);
    L.tokens = a.tokens;
    L.head_dim = a.head_dim;
    L.eps = a.eps;
    L.seg[0] = {a.output->data, a.heads, sat_mul(a.tokens, a.head_dim), a.head_dim, data(a.norm_w), a.mode};
    L.nseg = 1;
    L.cos = data(a.cos);
    L.sin = data(a.sin);
    L.table_rows = rows;
    L.pos_offset = a.pos_offset;
    if (state) {
      L.positions = state + 1;
      L.positions_dtype = FERRUM_DTYPE_U32;
    }
    return launch(op, c, [&](cudaStream_t st) { return kernels::rope_heads(L, st); });
  });
}

ferrum_status qk_norm_rope_batched_per_item(ferrum_context* ctx, const ferrum_qk_norm_rope_batched_per_item_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_qk_norm_rope_batched_per_item_args& a, bool dry) -> Status {
    const char* op = "qk_norm_rope_batched_per_item";
    const bool work = a.m && a.heads;
    uint64_t rows = 0;
    Status s = check_qk_norm_rope(op, a, 0, work, rows);
    if (s.ok()) s = check_rope_head_dim(op, a.head_dim, work);
    if (s.ok())
      s = check_devices(op, c, {{"input", a.input}, {"norm_w", a.norm_w}, {"cos", a.cos}, {"sin", a.sin},
                                {"output", a.output}, {"positions", a.positions}});
    if (!s.ok() || dry || !work) return s;
    kernels::RopeLaunch L;
    L.act_dtype = a.input->dtype;
    L.tab_dtype = table_dtype(a.cos);
    L.in = a.input->data;
    L.in_row_stride = sat_mul(a.heads, a.head_dim);
    L.tokens = a.m;
    L.head_dim = a.head_dim;
    L.eps = a.eps;
    L.seg[0] = {a.output->data, a.heads, a.head_dim, sat_mul(a.heads, a.head_dim), data(a.norm_w), a.mode};
    L.nseg = 1;
    L.cos = data(a.cos);
    L.sin = data(a.sin);
    L.table_rows = rows;
    L.positions = a.positions->data;
    L.positions_dtype = a.positions->dtype;
    return launch(op, c, [&](cudaStream_t st) { return kernels::rope_heads(L, st); });
  });
}

// Shared by the two packed-qkv ops: the input, Q segment and tables; K and V destinations are
// filled by the caller.
kernels::RopeLaunch packed_qkv_launch(const ferrum_buffer* qkv, const ferrum_buffer* q_norm_w, const ferrum_buffer* cos,
                                      const ferrum_buffer* sin, ferrum_buffer* q_out, uint64_t tokens, uint64_t q_heads,
                                      uint64_t kv_heads, uint64_t head_dim, uint64_t pos_offset, float eps, int32_t mode,
                                      uint64_t rows) {
  kernels::RopeLaunch L;
  L.act_dtype = qkv->dtype;
  L.tab_dtype = table_dtype(cos);
  L.in = qkv->data;
  L.in_row_stride = ((common::Size(q_heads) + 2 * common::Size(kv_heads)) * common::Size(head_dim)).value;
  L.tokens = tokens;
  L.head_dim = head_dim;
  L.eps = eps;
  L.seg[0] = {mdata(q_out), q_heads, sat_mul(tokens, head_dim), head_dim, data(q_norm_w), mode};
  L.nseg = 3;
  L.cos = data(cos);
  L.sin = data(sin);
  L.table_rows = rows;
  L.pos_offset = pos_offset;
  return L;
}

ferrum_status split_qkv_norm_rope(ferrum_context* ctx, const ferrum_split_qkv_norm_rope_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_split_qkv_norm_rope_args& a, bool dry) -> Status {
    const char* op = "split_qkv_norm_rope";
    const bool work = a.tokens != 0;
    uint64_t rows = 0;
    Status s = check_packed_qkv_rope(op, a, rows);
    if (s.ok()) s = check_rope_head_dim(op, a.head_dim, work);
    if (s.ok())
      s = check_devices(op, c, {{"qkv", a.qkv}, {"q_norm_w", a.q_norm_w}, {"k_norm_w", a.k_norm_w}, {"cos", a.cos},
                                {"sin", a.sin}, {"q_out", a.q_out}, {"k_out", a.k_out}, {"v_out", a.v_out}});
    if (!s.ok() || dry || !work) return s;
    kernels::RopeLaunch L = packed_qkv_launch(a.qkv, a.q_norm_w, a.cos, a.sin, a.q_out, a.tokens, a.q_heads,
                                              a.kv_heads, a.head_dim, a.pos_offset, a.eps, a.qk_mode, rows);
    const uint64_t hs = sat_mul(a.tokens, a.head_dim);
    L.seg[1] = {a.k_out->data, a.kv_heads, hs, a.head_dim, data(a.k_norm_w), a.qk_mode};
    L.seg[2] = {a.v_out->data, a.kv_heads, hs, a.head_dim, nullptr, 0};  // V: copy
    return launch(op, c, [&](cudaStream_t st) { return kernels::rope_heads(L, st); });
  });
}

ferrum_status split_qkv_norm_rope_into_cache(ferrum_context* ctx,
                                             const ferrum_split_qkv_norm_rope_into_cache_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_split_qkv_norm_rope_into_cache_args& a, bool dry) -> Status {
    const char* op = "split_qkv_norm_rope_into_cache";
    const bool work = a.tokens != 0;
    uint64_t rows = 0;
    Status s = check_packed_qkv_rope(op, a, rows);
    if (s.ok()) s = check_rope_head_dim(op, a.head_dim, work);
    if (s.ok())
      s = check_devices(op, c, {{"qkv", a.qkv}, {"q_norm_w", a.q_norm_w}, {"k_norm_w", a.k_norm_w}, {"cos", a.cos},
                                {"sin", a.sin}, {"q_out", a.q_out}, {"cache_k", a.cache_k}, {"cache_v", a.cache_v}});
    if (!s.ok() || dry || !work) return s;
    kernels::RopeLaunch L = packed_qkv_launch(a.qkv, a.q_norm_w, a.cos, a.sin, a.q_out, a.tokens, a.q_heads,
                                              a.kv_heads, a.head_dim, a.pos_offset, a.eps, a.qk_mode, rows);
    // Contiguous caches [kv_heads, cache_capacity, head_dim], new rows from cache_len.
    const uint64_t hs = sat_mul(a.cache_capacity, a.head_dim), off = sat_mul(a.cache_len, a.head_dim);
    L.seg[1] = {elem_ptr(a.cache_k, off), a.kv_heads, hs, a.head_dim, data(a.k_norm_w), a.qk_mode};
    L.seg[2] = {elem_ptr(a.cache_v, off), a.kv_heads, hs, a.head_dim, nullptr, 0};  // V: copy
    return launch(op, c, [&](cudaStream_t st) { return kernels::rope_heads(L, st); });
  });
}

}  // namespace

Status check_rope_head_dim(const char* op, uint64_t head_dim, bool work) {
  if (work && head_dim > kernels::kRopeMaxHeadDim)
    return unsupported(plugin::format("%s: argument 'head_dim': the CUDA plugin supports head_dim <= %llu, given %llu",
                                      op, (unsigned long long)kernels::kRopeMaxHeadDim,
                                      (unsigned long long)head_dim));
  return ok_status();
}

const ferrum_dense_table kDenseTable = {sizeof(ferrum_dense_table), FERRUM_DENSE_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cuda::glue
