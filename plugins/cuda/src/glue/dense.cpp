// CUDA plugin: dense ops (OPS.md §3). Only gemm so far (cuBLASLt through the device layer);
// every other dense slot is NULL (the facade reports it unsupported or runs its default).
#include "cuda_plugin.hpp"
#include "gemm.hpp"

namespace ferrum::cuda::glue {
namespace {

using plugin::run_op;

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

}  // namespace

const ferrum_dense_table kDenseTable = {
    sizeof(ferrum_dense_table),
    gemm,
    /* rms_norm */ nullptr,
    /* fused_add_rms_norm */ nullptr,
    /* layer_norm */ nullptr,
    /* gelu */ nullptr,
    /* add_inplace */ nullptr,
    /* scaled_add_inplace: facade default */ nullptr,
    /* add_bias */ nullptr,
    /* split_qkv */ nullptr,
    /* fused_silu_mul_split */ nullptr,
    /* fused_silu_mul_split_strided */ nullptr,
    /* embedding_lookup */ nullptr,
    /* embedding_lookup_dev: facade default */ nullptr,
    /* transpose_head_to_token */ nullptr,
    /* transpose_token_to_head */ nullptr,
    /* argmax_rows_f16: facade default */ nullptr,
    /* qk_norm_rope */ nullptr,
    /* qk_norm_rope_batched_per_item */ nullptr,
    /* split_qkv_norm_rope */ nullptr,
    /* split_qkv_norm_rope_into_cache */ nullptr,
};

}  // namespace ferrum::cuda::glue
