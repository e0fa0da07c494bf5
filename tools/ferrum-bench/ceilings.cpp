// ferrum-bench — the machine's ceilings, measured in the same run, and the facade's
// host-side dispatch overhead.
//
//   copy bandwidth   plugin copy_slice device to device over a buffer far larger than the
//                    last-level cache; bytes read + written per second
//   matmul rate      GPU: plugin gemm at 4096^3 in the activation dtype;
//                    CPU: single-core FMA peak of the hand-written loop below (widest ISA the
//                    CPU has: AVX-512 / AVX2+FMA / scalar fallback) times the plugin's threads
//   dispatch         ns per facade call of a zero-work op on the host clock, next to the raw
//                    ABI slot call of the same op
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FERRUM_BENCH_X86 1
#endif

#include "bench.hpp"

namespace ferrum::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

volatile float g_sink = 0;

// 12 independent FMA chains: enough to cover latency (4-5 cycles) x 2 FMA pipes.
#ifdef FERRUM_BENCH_X86
__attribute__((target("avx2,fma"))) double fma_avx2(uint64_t iters) {
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
  __m256 c0 = _mm256_set1_ps(0.1f), c1 = _mm256_set1_ps(0.2f), c2 = _mm256_set1_ps(0.3f),
         c3 = _mm256_set1_ps(0.4f), c4 = _mm256_set1_ps(0.5f), c5 = _mm256_set1_ps(0.6f),
         c6 = _mm256_set1_ps(0.7f), c7 = _mm256_set1_ps(0.8f), c8 = _mm256_set1_ps(0.9f),
         c9 = _mm256_set1_ps(1.1f), c10 = _mm256_set1_ps(1.2f), c11 = _mm256_set1_ps(1.3f);
  for (uint64_t i = 0; i < iters; ++i) {
    c0 = _mm256_fmadd_ps(c0, a, b); c1 = _mm256_fmadd_ps(c1, a, b);
    c2 = _mm256_fmadd_ps(c2, a, b); c3 = _mm256_fmadd_ps(c3, a, b);
    c4 = _mm256_fmadd_ps(c4, a, b); c5 = _mm256_fmadd_ps(c5, a, b);
    c6 = _mm256_fmadd_ps(c6, a, b); c7 = _mm256_fmadd_ps(c7, a, b);
    c8 = _mm256_fmadd_ps(c8, a, b); c9 = _mm256_fmadd_ps(c9, a, b);
    c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                           _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
  float out[8];
  _mm256_storeu_ps(out, s);
  g_sink = out[0] + out[7];
  return double(iters) * 12 * 8 * 2;
}

__attribute__((target("avx512f"))) double fma_avx512(uint64_t iters) {
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  __m512 c0 = _mm512_set1_ps(0.1f), c1 = _mm512_set1_ps(0.2f), c2 = _mm512_set1_ps(0.3f),
         c3 = _mm512_set1_ps(0.4f), c4 = _mm512_set1_ps(0.5f), c5 = _mm512_set1_ps(0.6f),
         c6 = _mm512_set1_ps(0.7f), c7 = _mm512_set1_ps(0.8f), c8 = _mm512_set1_ps(0.9f),
         c9 = _mm512_set1_ps(1.1f), c10 = _mm512_set1_ps(1.2f), c11 = _mm512_set1_ps(1.3f);
  for (uint64_t i = 0; i < iters; ++i) {
    c0 = _mm512_fmadd_ps(c0, a, b); c1 = _mm512_fmadd_ps(c1, a, b);
    c2 = _mm512_fmadd_ps(c2, a, b); c3 = _mm512_fmadd_ps(c3, a, b);
    c4 = _mm512_fmadd_ps(c4, a, b); c5 = _mm512_fmadd_ps(c5, a, b);
    c6 = _mm512_fmadd_ps(c6, a, b); c7 = _mm512_fmadd_ps(c7, a, b);
    c8 = _mm512_fmadd_ps(c8, a, b); c9 = _mm512_fmadd_ps(c9, a, b);
    c10 = _mm512_fmadd_ps(c10, a, b); c11 = _mm512_fmadd_ps(c11, a, b);
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                           _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
  g_sink = _mm512_reduce_add_ps(s);
  return double(iters) * 12 * 16 * 2;
}
#endif

// Portable fallback: 8 scalar chains of fmaf (the compiler may vectorise it; it is only the
// fallback for CPUs without AVX2).
double fma_scalar(uint64_t iters) {
  float c[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
  const float a = 0.999f, b = 0.001f;
  for (uint64_t i = 0; i < iters; ++i)
    for (float& x : c) x = x * a + b;
  g_sink = c[0] + c[7];
  return double(iters) * 8 * 2;
}

// Best of 5 runs of ~50 ms each, in GFLOP/s.
template <class F>
double fma_rate(F&& f, uint64_t iters) {
  f(iters / 10);  // warm-up (clock ramp)
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    const double flops = f(iters);
    best = std::max(best, flops / seconds_since(t0) / 1e9);
  }
  return best;
}

// Median of `batches` timed batches of `calls` copy_slice calls with the plugin's timer.
double copy_gbs(Env& env, uint64_t n, int batches) {
  Context& ctx = *env.ctx;
  Buffer src = env.random(n), dst = env.random(n);
  ctx.copy_slice({.src = src, .src_offset = 0, .dst = dst, .dst_offset = 0, .len = n});
  ctx.sync();
  Timer t = ctx.make_timer();
  std::vector<double> ms;
  for (int b = 0; b < batches; ++b) {
    ctx.record_start(t);
    ctx.copy_slice({.src = src, .src_offset = 0, .dst = dst, .dst_offset = 0, .len = n});
    ctx.record_end(t);
    ms.push_back(ctx.elapsed_ms(t));
  }
  std::sort(ms.begin(), ms.end());
  return 2.0 * double(n) * double(env.esz) / (ms[ms.size() / 2] * 1e-3) / 1e9;
}

// memcpy of `bytes` split over `threads` host threads; best of 5, (read + write) / s.
double host_copy_gbs(uint64_t bytes, uint64_t threads) {
  std::vector<char> src(bytes, 1), dst(bytes, 2);
  double best = 0;
  for (int rep = 0; rep < 6; ++rep) {
    std::vector<std::thread> pool;
    const auto t0 = Clock::now();
    const uint64_t part = bytes / threads;
    for (uint64_t t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const uint64_t n = t + 1 == threads ? bytes - t * part : part;
        std::memcpy(dst.data() + t * part, src.data() + t * part, n);
      });
    for (auto& th : pool) th.join();
    const double s = seconds_since(t0);
    if (rep > 0) best = std::max(best, 2.0 * double(bytes) / s / 1e9);
  }
  g_sink = float(dst[bytes / 2]);
  return best;
}

double gemm_tflops(Env& env, uint64_t s, int batches) {
  Context& ctx = *env.ctx;
  Buffer a0 = env.random(s * s), b0 = env.random(s * s), a1 = env.random(s * s),
         b1 = env.random(s * s), o = env.random(s * s);
  for (int i = 0; i < 3; ++i) ctx.gemm({.a = a0, .b = b0, .out = o, .m = s, .n = s, .k = s});
  ctx.sync();
  Timer t = ctx.make_timer();
  std::vector<double> ms;
  const int calls = 4;
  for (int b = 0; b < batches; ++b) {
    ctx.record_start(t);
    for (int c = 0; c < calls; ++c) ctx.gemm({.a = c & 1 ? a1 : a0, .b = c & 1 ? b1 : b0, .out = o, .m = s, .n = s, .k = s});
    ctx.record_end(t);
    ms.push_back(ctx.elapsed_ms(t) / calls);
  }
  std::sort(ms.begin(), ms.end());
  return 2.0 * double(s) * s * s / (ms[ms.size() / 2] * 1e-3) / 1e12;
}

}  // namespace

uint64_t last_level_cache_bytes() {
  uint64_t best = 0;
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream type(dir + "type"), size(dir + "size");
    if (!type || !size) continue;
    std::string ty, sz;
    type >> ty;
    size >> sz;
    if (ty == "Instruction" || sz.empty()) continue;
    uint64_t v = std::strtoull(sz.c_str(), nullptr, 10);
    const char unit = sz.back();
    if (unit == 'K') v <<= 10;
    else if (unit == 'M') v <<= 20;
    best = std::max(best, v);
  }
  return best ? best : (32ull << 20);
}

uint64_t cpu_threads() {
  if (const char* env = std::getenv("FERRUM_CPU_THREADS")) {
    const long v = std::strtol(env, nullptr, 10);
    if (v > 0) return static_cast<uint64_t>(v);
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? hc : 1;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  return "unknown CPU";
}

Ceilings measure_ceilings(Env& env) {
  Ceilings c;
  const bool quick = env.opt->quick;
  // Copy: >= 4x LLC on CPU (and >= 256 MB), 1 GiB of source on GPU; 64 MB with --quick.
  uint64_t copy_bytes = env.opt->gpu ? (1ull << 30)
                                     : std::max<uint64_t>(4 * last_level_cache_bytes(), 256ull << 20);
  if (quick) copy_bytes = 64ull << 20;
  c.plugin_copy_gbs = copy_gbs(env, copy_bytes / env.esz, quick ? 5 : 11);
  c.copy_gbs = c.plugin_copy_gbs;

  if (env.opt->gpu) {
    const uint64_t s = quick ? 2048 : 4096;
    c.matmul_tflops = gemm_tflops(env, s, quick ? 5 : 11);
    c.matmul_source = "plugin gemm " + std::to_string(s) + "^3 " + std::string(to_string(env.dt));
    return c;
  }
  c.threads = cpu_threads();
  c.host_copy_gbs = host_copy_gbs(copy_bytes, c.threads);
  c.copy_gbs = std::max(c.plugin_copy_gbs, c.host_copy_gbs);
  const uint64_t iters = quick ? 2'000'000 : 10'000'000;
  c.fma_scalar_gflops = fma_rate(fma_scalar, iters / 4);
  c.fma_1core_gflops = c.fma_scalar_gflops;
  c.fma_isa = "scalar";
#ifdef FERRUM_BENCH_X86
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    c.fma_avx2_gflops = fma_rate(fma_avx2, iters);
    if (c.fma_avx2_gflops > c.fma_1core_gflops) {
      c.fma_1core_gflops = c.fma_avx2_gflops;
      c.fma_isa = "avx2";
    }
  }
  if (__builtin_cpu_supports("avx512f")) {
    c.fma_avx512_gflops = fma_rate(fma_avx512, iters / 2);
    if (c.fma_avx512_gflops > c.fma_1core_gflops) {
      c.fma_1core_gflops = c.fma_avx512_gflops;
      c.fma_isa = "avx512";
    }
  }
#endif
  c.matmul_tflops = c.fma_1core_gflops * double(c.threads) / 1e3;
  c.matmul_source = "f32 FMA peak (" + c.fma_isa + ") x " + std::to_string(c.threads) + " thread(s)";
  return c;
}

Dispatch measure_dispatch(Env& env) {
  Dispatch d;
  Context& ctx = *env.ctx;
  const ferrum_plugin_api* api = env.backend->api();
  Buffer r = env.random(16), x = env.random(16);
  const uint64_t n = env.opt->quick ? 20'000 : 200'000;

  auto per_call_ns = [&](auto&& call) {
    for (uint64_t i = 0; i < n / 10; ++i) call();
    ctx.sync();
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = Clock::now();
      for (uint64_t i = 0; i < n; ++i) call();
      ctx.sync();
      best = std::min(best, seconds_since(t0) * 1e9 / double(n));
    }
    return best;
  };
  volatile uint64_t counter = 0;
  d.loop_ns = per_call_ns([&] { counter = counter + 1; });

  // add_inplace with len 0 (the checks run, nothing is enqueued), then len 1. Plugins without
  // add_inplace fall back to gemm with m = 0 / 1x1x1.
  bool have_add = true;
  try {
    ctx.add_inplace(r, x, 0);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::unsupported) throw;
    have_add = false;
  }
  if (have_add) {
    d.op = "add_inplace";
    d.facade_len0_ns = per_call_ns([&] { ctx.add_inplace(r, x, 0); }) - d.loop_ns;
    d.facade_len1_ns = per_call_ns([&] { ctx.add_inplace(r, x, 1); }) - d.loop_ns;
    if (api->dense && api->dense->add_inplace) {
      ferrum_add_inplace_args a{};
      a.struct_size = sizeof a;
      a.residual = r.get();
      a.x = x.get();
      a.len = 0;
      auto slot = api->dense->add_inplace;
      ferrum_context* raw = ctx.get();
      d.slot_len0_ns = per_call_ns([&] { (void)slot(raw, &a); }) - d.loop_ns;
    } else {
      d.note = "add_inplace runs a facade default (no slot)";
    }
  } else {
    d.op = "gemm";
    d.note = "add_inplace unsupported by this plugin; gemm with m = 0 and 1x1x1 instead";
    Buffer o = env.random(16);
    d.facade_len0_ns = per_call_ns([&] { ctx.gemm({.a = r, .b = x, .out = o, .m = 0, .n = 1, .k = 1}); }) - d.loop_ns;
    d.facade_len1_ns = per_call_ns([&] { ctx.gemm({.a = r, .b = x, .out = o, .m = 1, .n = 1, .k = 1}); }) - d.loop_ns;
    if (api->dense && api->dense->gemm) {
      ferrum_gemm_args a{};
      a.struct_size = sizeof a;
      a.a = r.get();
      a.b = x.get();
      a.out = o.get();
      a.m = 0;
      a.n = 1;
      a.k = 1;
      auto slot = api->dense->gemm;
      ferrum_context* raw = ctx.get();
      d.slot_len0_ns = per_call_ns([&] { (void)slot(raw, &a); }) - d.loop_ns;
    }
  }
  return d;
}

}  // namespace ferrum::bench
