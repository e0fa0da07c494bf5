// CPU plugin: the quant_matmul family table (docs/spec.md §11 GGUF in gguf.cpp, §12 GPTQ in gptq.cpp).
#include "qweight.hpp"

namespace ferrum::cpu {

const ferrum_quant_matmul_table kQuantMatmulTable = {
    sizeof(ferrum_quant_matmul_table), load_quant, gguf_matmul, gguf_dequantize, qweight_release,
    load_gptq, load_gptq_stacked, marlin_gemm,
};

}  // namespace ferrum::cpu
