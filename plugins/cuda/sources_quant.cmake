# CUDA plugin: quantised matmul (docs/spec.md §11) and MoE (§13): the GGUF kernels (kernels/gguf.cu)
# and their glue (glue/quant_matmul.cpp), GPTQ int4 (kernels/gptq.cu, glue/gptq.cpp), the MoE
# kernels (kernels/moe.cu, dense experts) and theirs (glue/moe.cpp).
set(FERRUM_CUDA_QUANT_KERNELS src/kernels/gguf.cu src/kernels/gptq.cu src/kernels/moe.cu)
set(FERRUM_CUDA_QUANT_GLUE src/glue/quant_matmul.cpp src/glue/gptq.cpp src/glue/moe.cpp)
