// CPU plugin: the moe family. Not implemented yet: every slot is NULL (reported as
// unsupported by the facade and shown as such in the support matrix).
#include "cpu_plugin.hpp"

namespace ferrum::cpu {

const ferrum_moe_table kMoeTable = {sizeof(ferrum_moe_table)};

}  // namespace ferrum::cpu
