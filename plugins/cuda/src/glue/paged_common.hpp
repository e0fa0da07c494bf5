// Helpers shared by the CUDA glue of the paged-KV and quantised-KV families (paged_kv.cpp,
// paged_attention.cpp, quant_kv.cpp): buffer views and the writers' declarations.
#pragma once

#include "cuda_plugin.hpp"

namespace ferrum::cuda::glue {

inline const void* cdata(const ferrum_buffer* b) { return b ? b->data : nullptr; }
inline bool is_i32(const ferrum_buffer* b) { return b && b->dtype == FERRUM_DTYPE_I32; }

// The paged writers (paged_kv.cpp), assembled with the attention ops into kPagedKvTable by
// paged_attention.cpp.
ferrum_status split_qkv_norm_rope_into_paged_cache(ferrum_context*, const ferrum_split_qkv_norm_rope_into_paged_cache_args*);
ferrum_status split_qkv_norm_rope_into_paged_cache_vllm(ferrum_context*,
                                                        const ferrum_split_qkv_norm_rope_into_paged_cache_vllm_args*);
ferrum_status split_qkv_norm_rope_into_paged_cache_varlen(
    ferrum_context*, const ferrum_split_qkv_norm_rope_into_paged_cache_varlen_args*);
ferrum_status split_qkv_norm_rope_into_paged_cache_varlen_vllm(
    ferrum_context*, const ferrum_split_qkv_norm_rope_into_paged_cache_varlen_vllm_args*);
}  // namespace ferrum::cuda::glue
