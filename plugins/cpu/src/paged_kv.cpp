// CPU plugin: the paged_kv family. Not implemented yet: every slot is NULL (reported as
// unsupported by the facade and shown as such in the support matrix).
#include "cpu_plugin.hpp"

namespace ferrum::cpu {

const ferrum_paged_kv_table kPagedKvTable = {sizeof(ferrum_paged_kv_table)};

}  // namespace ferrum::cpu
