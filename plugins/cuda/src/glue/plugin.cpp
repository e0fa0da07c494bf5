// CUDA plugin: the API table, lifecycle and the one exported entry symbol.
#include <cuda_runtime_api.h>  // CUDART_VERSION (compile-time only; no CUDA type crosses the ABI)

#include <string>

#include "cuda_plugin.hpp"
#include "device.hpp"
#include <ferrum/cuda/stream_ext.h>

#ifndef FERRUM_GIT_COMMIT
#define FERRUM_GIT_COMMIT "unknown"
#endif
#ifndef FERRUM_VERSION
#define FERRUM_VERSION "0.0.0"
#endif
#ifndef FERRUM_CUDA_SM_LIST
#define FERRUM_CUDA_SM_LIST "80,90"
#endif

namespace ferrum::cuda::glue {
namespace {

// "commit=<git> compiler=gcc-<ver> cuda=<major.minor of CUDART_VERSION> sm=<list>", built at
// compile time so the table stays a constant.
struct BuildInfo {
  char text[256] = {};
};

constexpr BuildInfo make_build_info() {
  BuildInfo b;
  unsigned n = 0;
  auto put = [&](const char* s) {
    for (; *s && n + 1 < sizeof b.text; ++s) b.text[n++] = *s;
  };
  auto put_int = [&](int v) {
    char digits[12] = {};
    int len = 0;
    do {
      digits[len++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v && len < 11);
    while (len && n + 1 < sizeof b.text) b.text[n++] = digits[--len];
  };
  put("commit=" FERRUM_GIT_COMMIT " compiler=gcc-" __VERSION__ " cuda=");
  put_int(CUDART_VERSION / 1000);
  put(".");
  put_int((CUDART_VERSION % 1000) / 10);
  put(" sm=" FERRUM_CUDA_SM_LIST);
  return b;
}

constexpr BuildInfo kBuildInfo = make_build_info();

ferrum_status probe(int32_t* score, char* reason, uint64_t cap) {
  return plugin::guard(nullptr, "probe", [&]() -> Status {
    int32_t sc = 0;
    std::string why;
    Status s = from_device(cuda::probe(sc, why));
    if (!s.ok()) return s;
    if (score) *score = sc;
    plugin::copy_out(why, reason, cap, nullptr);
    return ok_status();
  });
}

ferrum_status init() {
  return plugin::guard(nullptr, "init", [&]() -> Status {
    int32_t count = 0;
    Status s = from_device(cuda::device_count(count));
    if (!s.ok()) return s;
    if (count <= 0) return {FERRUM_STATUS_DEVICE_ERROR, "init: no CUDA device"};
    return ok_status();
  });
}

// Contexts, buffers and timers are freed by their owners; the static CUDA runtime tears itself
// down at process exit.
void shutdown() {}

ferrum_status device_count(uint64_t* count) {
  return plugin::guard(nullptr, "device_count", [&]() -> Status {
    if (!count) return invalid("device_count: argument 'count': expected a pointer, given NULL");
    int32_t n = 0;
    Status s = from_device(cuda::device_count(n));
    if (!s.ok()) return s;
    *count = static_cast<uint64_t>(n);
    return ok_status();
  });
}

ferrum_status device_props(uint64_t ordinal, ferrum_device_props* p) {
  return plugin::guard(nullptr, "device_props", [&]() -> Status {
    Status s = check_device_props_out(p);
    int32_t n = 0;
    if (s.ok()) s = from_device(cuda::device_count(n));
    if (!s.ok()) return s;
    if (ordinal >= static_cast<uint64_t>(n))
      return invalid(plugin::format("device_props: argument 'ordinal': expected < %d (the CUDA device count), given %llu",
                                    n, (unsigned long long)ordinal));
    DeviceProps dp;
    s = from_device(cuda::device_props(static_cast<int32_t>(ordinal), dp));
    if (!s.ok()) return s;
    fill_device_props({dp.name, FERRUM_DEVICE_KIND_GPU, dp.cc_major, dp.cc_minor, dp.total_memory,
                       static_cast<uint64_t>(dp.sm_count)},
                      p);
    return ok_status();
  });
}

// ---- extension "ferrum.cuda.stream" (<ferrum/cuda/stream_ext.h>) ----------------------------------------------
ferrum_status get_stream(ferrum_context* ctx, void** out) {
  return plugin::guard(ctx, "ferrum.cuda.stream.get_stream", [&]() -> Status {
    if (!ctx) return invalid("ferrum.cuda.stream.get_stream: argument 'ctx': expected a context, given NULL");
    if (!out)
      return invalid("ferrum.cuda.stream.get_stream: argument 'cuda_stream_out': expected a pointer, given NULL");
    if (!ctx->dev) return invalid("ferrum.cuda.stream.get_stream: argument 'ctx': expected a live context, given one without a device");
    *out = static_cast<void*>(ctx->dev->stream);
    return ok_status();
  });
}

constexpr ferrum_cuda_stream_ext kStreamExt = {
    {sizeof(ferrum_cuda_stream_ext), FERRUM_CUDA_STREAM_EXT_ID, FERRUM_CUDA_STREAM_EXT_VERSION, 0, nullptr},
    get_stream};

// quant_matmul has its GGUF and GPTQ ops, moe its expert ops, mla its one op; collective is
// NCCL (glue/collective.cpp) where nccl.h was found at build time, else the facade's single-rank
// default serves it.
constinit const ferrum_plugin_api kApi = plugin::make_api<ferrum_context, &kApi>({
    .plugin_name = "cuda",
    .plugin_version = FERRUM_VERSION,
    .build_info = kBuildInfo.text,
    .probe = probe,
    .init = init,
    .shutdown = shutdown,
    .device_count = device_count,
    .device_props = device_props,
    .memory = &kMemoryTable,
    .context = &kContextTable,
    .graph = &kGraphTable,
    .dense = &kDenseTable,
    .attention = &kAttentionTable,
    .paged_kv = &kPagedKvTable,
    .quant_kv = &kQuantKvTable,
    .quant_matmul = &kQuantMatmulTable,
    .moe = &kMoeTable,
    .mla = &kMlaTable,
#if FERRUM_CUDA_HAVE_NCCL
    .collective = &kCollectiveTable,
#endif
    .extensions = &kStreamExt.ext,
});

}  // namespace
}  // namespace ferrum::cuda::glue

extern "C" FERRUM_PLUGIN_EXPORT ferrum_status ferrum_plugin_entry_v1(const ferrum_host_info* host,
                                                                    const ferrum_plugin_api** api) {
  return ferrum::plugin::enter(host, &ferrum::cuda::glue::kApi, api);
}
