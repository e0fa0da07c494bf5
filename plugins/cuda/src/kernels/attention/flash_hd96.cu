// ferrum CUDA plugin — attention kernels instantiated for head_dim 96: Phi-3-mini / Phi-3.5 (32 heads x 96).
// One head size per file so nvcc builds the sizes in parallel (docs/spec.md §0.8 lists the set).
#include "flash_decode.cuh"
#include "flash_prefill.cuh"
#include "paged_src.cuh"

namespace ferrum::cuda::attn {

template Status launch_decode<float, 96>(const FlashParams&, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_decode<__half, 96>(const FlashParams&, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_decode<__nv_bfloat16, 96>(const FlashParams&, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_prefill<__half, 96>(const FlashParams&, cudaStream_t) noexcept;
template Status launch_prefill<__nv_bfloat16, 96>(const FlashParams&, cudaStream_t) noexcept;
template Status launch_paged_decode<float, 96>(const PagedParams&, uint64_t, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_paged_decode<__half, 96>(const PagedParams&, uint64_t, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_paged_decode<__nv_bfloat16, 96>(const PagedParams&, uint64_t, uint32_t, float*, float*, uint32_t*, cudaStream_t) noexcept;
template Status launch_paged_prefill<__half, 96>(const PagedParams&, cudaStream_t) noexcept;
template Status launch_paged_prefill<__nv_bfloat16, 96>(const PagedParams&, cudaStream_t) noexcept;

}  // namespace ferrum::cuda::attn
