# CUDA plugin: dense ops and the QK-norm/RoPE family (OPS.md §3, §4).
set(FERRUM_CUDA_DENSE_KERNELS)
set(FERRUM_CUDA_DENSE_GLUE src/glue/dense.cpp)
