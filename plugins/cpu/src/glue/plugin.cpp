// CPU plugin: the API table, lifecycle and the one exported entry symbol.
#include "cpu_plugin.hpp"

#ifndef FERRUM_GIT_COMMIT
#define FERRUM_GIT_COMMIT "unknown"
#endif
#ifndef FERRUM_VERSION
#define FERRUM_VERSION "0.0.0"
#endif

namespace ferrum::cpu {
namespace {

ferrum_status probe(int32_t* score, char* reason, uint64_t cap) {
  if (score) *score = 10;  // always usable; any device plugin that can run scores higher
  plugin::copy_out("", reason, cap, nullptr);
  return FERRUM_STATUS_OK;
}

ferrum_status init() { return FERRUM_STATUS_OK; }

void shutdown() { cpu::shutdown(); }

ferrum_status device_count(uint64_t* count) {
  if (!count) return plugin::record(nullptr, FERRUM_STATUS_INVALID_ARGUMENT, "device_count: argument 'count' is NULL");
  *count = 1;
  return FERRUM_STATUS_OK;
}

ferrum_status device_props(uint64_t ordinal, ferrum_device_props* p) {
  return plugin::guard(nullptr, "device_props", [&]() -> Status {
    Status s = check_device_props_out(p);
    if (!s.ok()) return s;
    if (ordinal != 0)
      return invalid(plugin::format("device_props: argument 'ordinal': expected 0, given %llu", (unsigned long long)ordinal));
    const DeviceProps dp = cpu::device_props();
    fill_device_props({dp.name, FERRUM_DEVICE_KIND_CPU, 0, 0, dp.total_memory, dp.threads}, p);
    return ok_status();
  });
}

// graph is optional on the CPU (docs/spec.md §8.1): absent, NULL. The collective family runs over
// MPI between processes (glue/collective.cpp), loaded only when a world of several ranks is made.
constinit const ferrum_plugin_api kApi = plugin::make_api<ferrum_context, &kApi>({
    .plugin_name = "cpu",
    .plugin_version = FERRUM_VERSION,
    .build_info = "commit=" FERRUM_GIT_COMMIT " compiler=gcc-" __VERSION__ " simd=avx2-fma(runtime)+portable",
    .probe = probe,
    .init = init,
    .shutdown = shutdown,
    .device_count = device_count,
    .device_props = device_props,
    .memory = &kMemoryTable,
    .context = &kContextTable,
    .dense = &kDenseTable,
    .attention = &kAttentionTable,
    .paged_kv = &kPagedKvTable,
    .quant_kv = &kQuantKvTable,
    .quant_matmul = &kQuantMatmulTable,
    .moe = &kMoeTable,
    .mla = &kMlaTable,
    .collective = &kCollectiveTable,
});

}  // namespace
}  // namespace ferrum::cpu

extern "C" FERRUM_PLUGIN_EXPORT ferrum_status ferrum_plugin_entry_v1(const ferrum_host_info* host,
                                                                    const ferrum_plugin_api** api) {
  return ferrum::plugin::enter(host, &ferrum::cpu::kApi, api);
}
