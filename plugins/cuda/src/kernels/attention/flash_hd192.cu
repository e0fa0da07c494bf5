// ferrum CUDA plugin — attention kernels instantiated for head_dim 192: DeepSeek-V2/V3 MLA q/k heads (128 nope + 64 rope) run as plain attention.
// One head size per file so nvcc builds the sizes in parallel (docs/spec.md §0.8 lists the set).
#include "flash_decode.cuh"
#include "flash_prefill.cuh"
#include "paged_src.cuh"

namespace ferrum::cuda::attn {

template Status launch_decode<float, 192>(const FlashParams&, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_decode<__half, 192>(const FlashParams&, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_decode<__nv_bfloat16, 192>(const FlashParams&, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_prefill<__half, 192>(const FlashParams&, cudaStream_t) noexcept;
template Status launch_prefill<__nv_bfloat16, 192>(const FlashParams&, cudaStream_t) noexcept;
template Status launch_paged_decode<float, 192>(const PagedParams&, uint64_t, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_paged_decode<__half, 192>(const PagedParams&, uint64_t, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_paged_decode<__nv_bfloat16, 192>(const PagedParams&, uint64_t, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_paged_prefill<__half, 192>(const PagedParams&, cudaStream_t) noexcept;
template Status launch_paged_prefill<__nv_bfloat16, 192>(const PagedParams&, cudaStream_t) noexcept;

}  // namespace ferrum::cuda::attn
