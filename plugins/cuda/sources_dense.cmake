# CUDA plugin: dense ops and the QK-norm/RoPE family (docs/spec.md §3, §4).
# One .cu per op family (norms, element-wise + argmax, row gathers, QK-norm/RoPE); the glue
# validates the ABI args and calls their launch functions.
set(FERRUM_CUDA_DENSE_KERNELS
  src/kernels/elementwise.cu
  src/kernels/embedding.cu
  src/kernels/norm.cu
  src/kernels/rope.cu
)
set(FERRUM_CUDA_DENSE_GLUE src/glue/dense.cpp)
