# CUDA plugin: contiguous KV + attention, batched per-cache decode, graphs (OPS.md §5, §8).
set(FERRUM_CUDA_ATTENTION_KERNELS)
set(FERRUM_CUDA_ATTENTION_GLUE)
