# CUDA plugin: quantised matmul (docs/spec.md §11): the GGUF kernels (kernels/gguf.cu) and their
# glue (glue/quant_matmul.cpp). GPTQ is not implemented yet.
set(FERRUM_CUDA_QUANT_KERNELS src/kernels/gguf.cu)
set(FERRUM_CUDA_QUANT_GLUE src/glue/quant_matmul.cpp)
