# CUDA plugin: contiguous KV + attention, batched per-cache decode, graphs, paged KV (ferrum and
# vLLM layouts) and quantised (int8 / fp8) paged KV.
# One flash_hd<N>.cu per head size (32, 64, 80, 96, 112, 128, 192, 256) so nvcc
# compiles the heavy template sets in parallel; each file's header says which models use it.
set(FERRUM_CUDA_ATTENTION_KERNELS
  src/kernels/attention/flash_dispatch.cu
  src/kernels/attention/flash_hd32.cu
  src/kernels/attention/flash_hd64.cu
  src/kernels/attention/flash_hd80.cu
  src/kernels/attention/flash_hd96.cu
  src/kernels/attention/flash_hd112.cu
  src/kernels/attention/flash_hd128.cu
  src/kernels/attention/flash_hd192.cu
  src/kernels/attention/flash_hd256.cu
  src/kernels/attention/kv_append.cu
  src/kernels/attention/mla.cu
  src/kernels/attention/paged_dispatch.cu
  src/kernels/attention/quant_kv.cu
)
set(FERRUM_CUDA_ATTENTION_GLUE
  src/glue/attention.cpp
  src/glue/graph.cpp
  src/glue/paged_kv.cpp
  src/glue/paged_attention.cpp
  src/glue/quant_kv.cpp
)
