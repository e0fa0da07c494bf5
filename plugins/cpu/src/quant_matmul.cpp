// CPU plugin: the quant_matmul family. Not implemented yet: every slot is NULL (reported as
// unsupported by the facade and shown as such in the support matrix).
#include "cpu_plugin.hpp"

namespace ferrum::cpu {

const ferrum_quant_matmul_table kQuantMatmulTable = {sizeof(ferrum_quant_matmul_table)};

}  // namespace ferrum::cpu
