// CPU plugin: dense ops (docs/spec.md §3). Thin glue: op-specific checks, dtype dispatch, kernel call.
#include <vector>

#include <ferrum/common/dense_rules.hpp>

#include "glue.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/gemm.hpp"
#include "kernels/norm.hpp"

namespace ferrum::cpu {
namespace {

// Runs `f(T{})` for the op's activation dtype (taken from `b`), or OK when there is no buffer
// (zero work).
template <class F>
Status on_act(const ferrum_buffer* b, F&& f) {
  if (!b) return ok_status();
  return dispatch_float(b->dtype, unsupported("activation dtype"), [&](auto t) -> Status {
    f(t);
    return ok_status();
  });
}

ferrum_status gemm(ferrum_context* ctx, const ferrum_gemm_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_gemm_args& a, bool dry) -> Status {
    if (dry || a.m == 0 || a.n == 0) return ok_status();
    return on_act(a.out, [&](auto t) {
      using T = decltype(t);
      cpu::gemm<T>(data_of<const T>(a.a), data_of<const T>(a.b), data_of<T>(a.out), a.m, a.n, a.k);
    });
  });
}

ferrum_status rms_norm(ferrum_context* ctx, const ferrum_rms_norm_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_rms_norm_args& a, bool dry) -> Status {
    Status s = check_norm("rms_norm", a.eps, a.dim, a.tokens);
    if (!s.ok() || dry || a.tokens == 0) return s;
    return on_act(a.x, [&](auto t) {
      using T = decltype(t);
      cpu::rms_norm<T>(data_of<const T>(a.x), data_of<const T>(a.w), a.eps, data_of<T>(a.out), a.tokens, a.dim);
    });
  });
}

ferrum_status fused_add_rms_norm(ferrum_context* ctx, const ferrum_fused_add_rms_norm_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_fused_add_rms_norm_args& a, bool dry) -> Status {
    Status s = check_norm("fused_add_rms_norm", a.eps, a.dim, a.tokens);
    if (!s.ok() || dry || a.tokens == 0) return s;
    return on_act(a.x, [&](auto t) {
      using T = decltype(t);
      cpu::fused_add_rms_norm<T>(data_of<T>(a.residual), data_of<const T>(a.x), data_of<const T>(a.w), a.eps,
                                 data_of<T>(a.out), a.tokens, a.dim);
    });
  });
}

ferrum_status layer_norm(ferrum_context* ctx, const ferrum_layer_norm_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_layer_norm_args& a, bool dry) -> Status {
    Status s = check_norm("layer_norm", a.eps, a.dim, a.tokens);
    if (!s.ok() || dry || a.tokens == 0) return s;
    return on_act(a.x, [&](auto t) {
      using T = decltype(t);
      cpu::layer_norm<T>(data_of<const T>(a.x), data_of<const T>(a.gamma), data_of<const T>(a.beta), a.eps,
                         data_of<T>(a.out), a.tokens, a.dim);
    });
  });
}

ferrum_status gelu(ferrum_context* ctx, const ferrum_gelu_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_gelu_args& a, bool dry) -> Status {
    if (dry || a.len == 0) return ok_status();
    return on_act(a.x, [&](auto t) {
      using T = decltype(t);
      cpu::gelu<T>(data_of<const T>(a.x), data_of<T>(a.out), a.len);
    });
  });
}

ferrum_status add_inplace(ferrum_context* ctx, const ferrum_add_inplace_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_add_inplace_args& a, bool dry) -> Status {
    if (dry || a.len == 0) return ok_status();
    return on_act(a.residual, [&](auto t) {
      using T = decltype(t);
      cpu::add_inplace<T>(data_of<T>(a.residual), data_of<const T>(a.x), a.len);
    });
  });
}

ferrum_status scaled_add_inplace(ferrum_context* ctx, const ferrum_scaled_add_inplace_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_scaled_add_inplace_args& a, bool dry) -> Status {
    Status s = check_scaled_add(a.scale);
    if (!s.ok() || dry || a.len == 0) return s;
    return on_act(a.dst, [&](auto t) {
      using T = decltype(t);
      cpu::scaled_add_inplace<T>(data_of<T>(a.dst), data_of<const T>(a.src), a.scale, a.len);
    });
  });
}

ferrum_status add_bias(ferrum_context* ctx, const ferrum_add_bias_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_add_bias_args& a, bool dry) -> Status {
    if (dry || a.rows == 0 || a.cols == 0) return ok_status();
    return on_act(a.data, [&](auto t) {
      using T = decltype(t);
      cpu::add_bias<T>(data_of<T>(a.data), data_of<const T>(a.bias), a.rows, a.cols);
    });
  });
}

ferrum_status split_qkv(ferrum_context* ctx, const ferrum_split_qkv_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_split_qkv_args& a, bool dry) -> Status {
    if (dry || a.tokens == 0) return ok_status();
    return on_act(a.qkv, [&](auto t) {
      using T = decltype(t);
      cpu::split_qkv<T>(data_of<const T>(a.qkv), data_of<T>(a.q), data_of<T>(a.k), data_of<T>(a.v), a.tokens,
                        a.q_dim, a.kv_dim);
    });
  });
}

ferrum_status fused_silu_mul_split(ferrum_context* ctx, const ferrum_fused_silu_mul_split_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_fused_silu_mul_split_args& a, bool dry) -> Status {
    if (dry || a.tokens == 0 || a.im == 0) return ok_status();
    return on_act(a.gate_up, [&](auto t) {
      using T = decltype(t);
      cpu::fused_silu_mul_split<T>(data_of<const T>(a.gate_up), data_of<T>(a.out), a.tokens, a.im);
    });
  });
}

ferrum_status fused_silu_mul_split_strided(ferrum_context* ctx, const ferrum_fused_silu_mul_split_strided_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_fused_silu_mul_split_strided_args& a, bool dry) -> Status {
    if (dry || a.tokens == 0 || a.intermediate == 0) return ok_status();
    return on_act(a.gate_up, [&](auto t) {
      using T = decltype(t);
      cpu::fused_silu_mul_split_strided<T>(data_of<const T>(a.gate_up), a.in_row_offset, data_of<T>(a.out),
                                           a.out_row_offset, a.tokens, a.intermediate);
    });
  });
}

ferrum_status embedding_lookup(ferrum_context* ctx, const ferrum_embedding_lookup_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_embedding_lookup_args& a, bool dry) -> Status {
    if (a.ids_len == 0) return ok_status();
    Status s = check_embedding("embedding_lookup", a.dim, a.table);
    uint64_t vocab = 0;
    if (s.ok()) s = check_host_ids(a.ids, a.ids_len, *a.table, a.dim, vocab);
    if (!s.ok() || dry) return s;
    std::vector<uint64_t> ids(a.ids_len);  // ids_len <= out's rows (generated check), dim > 0
    std::copy_n(a.ids, a.ids_len, ids.begin());
    return on_act(a.table, [&](auto t) {
      using T = decltype(t);
      cpu::embedding_rows<T>(data_of<const T>(a.table), vocab, ids.data(), a.ids_len, data_of<T>(a.out), a.dim, false);
    });
  });
}

// Device ids (U32 or I32) as host u64 values; a negative I32 becomes an out-of-range id.
std::vector<uint64_t> read_ids(const ferrum_buffer* ids, uint64_t n) {
  std::vector<uint64_t> out(n);
  for (uint64_t i = 0; i < n; ++i)
    out[i] = ids->dtype == FERRUM_DTYPE_I32 ? (data_of<const int32_t>(ids)[i] < 0 ? UINT64_MAX : uint64_t(data_of<const int32_t>(ids)[i]))
                                            : data_of<const uint32_t>(ids)[i];
  return out;
}

ferrum_status embedding_lookup_dev(ferrum_context* ctx, const ferrum_embedding_lookup_dev_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_embedding_lookup_dev_args& a, bool dry) -> Status {
    if (a.batch == 0) return ok_status();
    Status s = check_embedding("embedding_lookup_dev", a.dim, a.table);
    if (!s.ok() || dry) return s;
    const std::vector<uint64_t> ids = read_ids(a.ids, a.batch);
    return on_act(a.table, [&](auto t) {
      using T = decltype(t);
      cpu::embedding_rows<T>(data_of<const T>(a.table), a.table->count / a.dim, ids.data(), a.batch,
                             data_of<T>(a.out), a.dim, true);
    });
  });
}

ferrum_status transpose_head_to_token(ferrum_context* ctx, const ferrum_transpose_head_to_token_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_transpose_head_to_token_args& a, bool dry) -> Status {
    if (dry || a.tokens == 0 || a.heads == 0 || a.dim == 0) return ok_status();
    return on_act(a.src, [&](auto t) {
      using T = decltype(t);
      cpu::transpose_head_to_token<T>(data_of<const T>(a.src), data_of<T>(a.dst), a.tokens, a.heads, a.dim);
    });
  });
}

ferrum_status transpose_token_to_head(ferrum_context* ctx, const ferrum_transpose_token_to_head_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_transpose_token_to_head_args& a, bool dry) -> Status {
    if (dry || a.tokens == 0 || a.heads == 0 || a.dim == 0) return ok_status();
    return on_act(a.src, [&](auto t) {
      using T = decltype(t);
      cpu::transpose_token_to_head<T>(data_of<const T>(a.src), data_of<T>(a.dst), a.tokens, a.heads, a.dim);
    });
  });
}

ferrum_status argmax_rows_f16(ferrum_context* ctx, const ferrum_argmax_rows_f16_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_argmax_rows_f16_args& a, bool dry) -> Status {
    if (a.m == 0) return ok_status();
    Status s = check_positive("argmax_rows_f16", "n", a.n, true);
    if (!s.ok() || dry) return s;
    return on_act(a.logits, [&](auto t) {
      using T = decltype(t);
      cpu::argmax_rows<T>(data_of<const T>(a.logits), a.m, a.n, a.out);
    });
  });
}

}  // namespace

// The §4 slots (qk_norm_rope ...) live in rope.cpp.
ferrum_status qk_norm_rope(ferrum_context*, const ferrum_qk_norm_rope_args*);
ferrum_status qk_norm_rope_batched_per_item(ferrum_context*, const ferrum_qk_norm_rope_batched_per_item_args*);
ferrum_status split_qkv_norm_rope(ferrum_context*, const ferrum_split_qkv_norm_rope_args*);
ferrum_status split_qkv_norm_rope_into_cache(ferrum_context*, const ferrum_split_qkv_norm_rope_into_cache_args*);

const ferrum_dense_table kDenseTable = {sizeof(ferrum_dense_table), FERRUM_DENSE_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cpu
