// CPU plugin: the quant_matmul family table (docs/spec.md §11 GGUF in gguf.cpp, §12 GPTQ in gptq.cpp).
#include "qweight.hpp"

namespace ferrum::cpu {

const ferrum_quant_matmul_table kQuantMatmulTable = {
    sizeof(ferrum_quant_matmul_table), FERRUM_QUANT_MATMUL_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cpu
