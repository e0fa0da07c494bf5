// ferrum CUDA plugin — attention kernels instantiated for head_dim 128: Llama 2/3, Qwen2/3, Mistral, Mixtral - the common case.
// One head size per file so nvcc builds the sizes in parallel (docs/spec.md §0.8 lists the set).
#include "flash_decode.cuh"
#include "flash_prefill.cuh"
#include "paged_src.cuh"

namespace ferrum::cuda::attn {

template Status launch_decode<float, 128>(const FlashParams&, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_decode<__half, 128>(const FlashParams&, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_decode<__nv_bfloat16, 128>(const FlashParams&, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_prefill<__half, 128>(const FlashParams&, cudaStream_t) noexcept;
template Status launch_prefill<__nv_bfloat16, 128>(const FlashParams&, cudaStream_t) noexcept;
template Status launch_paged_decode<float, 128>(const PagedParams&, uint64_t, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_paged_decode<__half, 128>(const PagedParams&, uint64_t, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_paged_decode<__nv_bfloat16, 128>(const PagedParams&, uint64_t, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_paged_prefill<__half, 128>(const PagedParams&, cudaStream_t) noexcept;
template Status launch_paged_prefill<__nv_bfloat16, 128>(const PagedParams&, cudaStream_t) noexcept;

}  // namespace ferrum::cuda::attn
