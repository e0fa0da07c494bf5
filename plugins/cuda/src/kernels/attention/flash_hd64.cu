// ferrum CUDA plugin — attention kernels instantiated for head_dim 64: GPT-2-style and many small models (Phi-1.5/2-small, TinyLlama-class).
// One head size per file so nvcc builds the sizes in parallel (docs/spec.md §0.8 lists the set).
#include "flash_decode.cuh"
#include "flash_prefill.cuh"
#include "paged_src.cuh"

namespace ferrum::cuda::attn {

template Status launch_decode<float, 64>(const FlashParams&, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_decode<__half, 64>(const FlashParams&, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_decode<__nv_bfloat16, 64>(const FlashParams&, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_prefill<__half, 64>(const FlashParams&, cudaStream_t) noexcept;
template Status launch_prefill<__nv_bfloat16, 64>(const FlashParams&, cudaStream_t) noexcept;
template Status launch_paged_decode<float, 64>(const PagedParams&, uint64_t, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_paged_decode<__half, 64>(const PagedParams&, uint64_t, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_paged_decode<__nv_bfloat16, 64>(const PagedParams&, uint64_t, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_paged_prefill<__half, 64>(const PagedParams&, cudaStream_t) noexcept;
template Status launch_paged_prefill<__nv_bfloat16, 64>(const PagedParams&, cudaStream_t) noexcept;

}  // namespace ferrum::cuda::attn
