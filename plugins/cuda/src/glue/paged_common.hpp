// Helpers shared by the CUDA glue of the paged-KV and quantised-KV families (paged_kv.cpp,
// paged_attention.cpp, quant_kv.cpp): the enqueue wrapper and index-buffer views.
#pragma once

#include <string>

#include "cuda_plugin.hpp"

namespace ferrum::cuda::glue {

// Makes the context's device current and runs `f(stream)` (a launch function returning a
// device-layer Status); a failure's message is prefixed with the op name.
template <class F>
Status enqueue(const char* op, ferrum_context& c, F&& f) {
  DeviceGuard g;
  Status s = enter_device(g, c);
  if (!s.ok()) return s;
  s = from_device(f(c.dev->stream));
  if (!s.ok() && s.message.rfind(op, 0) != 0) s.message = std::string(op) + ": " + s.message;
  return s;
}

inline const void* cdata(const ferrum_buffer* b) { return b ? b->data : nullptr; }
inline bool is_i32(const ferrum_buffer* b) { return b && b->dtype == FERRUM_DTYPE_I32; }

}  // namespace ferrum::cuda::glue

namespace ferrum::cuda::glue {
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
