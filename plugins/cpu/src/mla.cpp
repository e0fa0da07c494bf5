// CPU plugin: the mla family. Not implemented yet: every slot is NULL (reported as
// unsupported by the facade and shown as such in the support matrix).
#include "cpu_plugin.hpp"

namespace ferrum::cpu {

const ferrum_mla_table kMlaTable = {sizeof(ferrum_mla_table)};

}  // namespace ferrum::cpu
