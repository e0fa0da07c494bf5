// CPU plugin: the API table, lifecycle and the one exported entry symbol.
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "cpu_plugin.hpp"
#include "kernels/parallel.hpp"

#ifndef FERRUM_GIT_COMMIT
#define FERRUM_GIT_COMMIT "unknown"
#endif
#ifndef FERRUM_VERSION
#define FERRUM_VERSION "0.0.0"
#endif

namespace ferrum::cpu {
namespace {

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      if (p != std::string::npos) return line.substr(p + 2);
    }
  return "host CPU";
}

ferrum_status probe(int32_t* score, char* reason, uint64_t cap) {
  if (score) *score = 10;  // always usable; any device plugin that can run scores higher
  plugin::copy_out("", reason, cap, nullptr);
  return FERRUM_STATUS_OK;
}

ferrum_status init() { return FERRUM_STATUS_OK; }

void shutdown() { shutdown_pool(); }

ferrum_status device_count(uint64_t* count) {
  if (!count) return plugin::record(nullptr, FERRUM_STATUS_INVALID_ARGUMENT, "device_count: argument 'count' is NULL");
  *count = 1;
  return FERRUM_STATUS_OK;
}

ferrum_status device_props(uint64_t ordinal, ferrum_device_props* p) {
  return plugin::guard(nullptr, "device_props", [&]() -> Status {
    if (!p || p->struct_size < FERRUM_DEVICE_PROPS_SIZE_V1_0)
      return invalid("device_props: argument 'props': expected a struct with struct_size >= 168, given NULL or smaller");
    if (ordinal != 0)
      return invalid(plugin::format("device_props: argument 'ordinal': expected 0, given %llu", (unsigned long long)ordinal));
    const std::string name = cpu_model_name();
    std::memset(p->name, 0, sizeof p->name);
    std::strncpy(p->name, name.c_str(), sizeof p->name - 1);
    p->kind = FERRUM_DEVICE_KIND_CPU;
    p->compute_major = p->compute_minor = 0;
    p->dtype_mask = 0x1FEu;  // every dtype 1..8 can be stored; F32/F16/BF16 compute
    p->total_memory_bytes = 0;
    std::ifstream mi("/proc/meminfo");
    std::string key;
    unsigned long long kb = 0;
    if (mi >> key >> kb && key == "MemTotal:") p->total_memory_bytes = kb * 1024ull;
    p->multiprocessors = pool_threads();
    return ok_status();
  });
}

ferrum_status error_detail(ferrum_context* ctx, char* buf, uint64_t cap, uint64_t* needed) {
  return plugin::error_detail(ctx, buf, cap, needed);
}

ferrum_status query_support(ferrum_context* ctx, int32_t op, const void* args, char* reason, uint64_t cap);

const ferrum_plugin_api kApi = {
    sizeof(ferrum_plugin_api),
    FERRUM_ABI_VERSION_MAJOR,
    FERRUM_ABI_VERSION_MINOR,
    "cpu",
    FERRUM_VERSION,
    "commit=" FERRUM_GIT_COMMIT " compiler=gcc-" __VERSION__ " simd=avx2-fma(runtime)+portable",
    probe,
    init,
    shutdown,
    device_count,
    device_props,
    error_detail,
    query_support,
    &kMemoryTable,
    &kContextTable,
    /* graph: optional on CPU (docs/spec.md §8.1), not implemented */ nullptr,
    &kDenseTable,
    &kAttentionTable,
    &kPagedKvTable,
    &kQuantKvTable,
    &kQuantMatmulTable,
    &kMoeTable,
    &kMlaTable,
    /* collective: optional on CPU; the facade's single-rank default applies */ nullptr,
};

ferrum_status query_support(ferrum_context* ctx, int32_t op, const void* args, char* reason, uint64_t cap) {
  return plugin::query_support(&kApi, ctx, op, args, reason, cap);
}

}  // namespace
}  // namespace ferrum::cpu

extern "C" FERRUM_PLUGIN_EXPORT ferrum_status ferrum_plugin_entry_v1(const ferrum_host_info* host,
                                                                    const ferrum_plugin_api** api) {
  return ferrum::plugin::enter(host, &ferrum::cpu::kApi, api);
}
