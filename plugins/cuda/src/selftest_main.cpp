// ferrum CUDA plugin — device-layer self-test.
//
// With a usable GPU: gemm (f32/f16/bf16 against a float64 host reference), convert (every
// float pair, edge values, aligned and unaligned pointers) and the timer. Without one:
// prints "SKIPPED: <probe reason>" and exits 0. Always ends with
// "cuda selftest: N passed, M failed"; exit status 1 if anything failed.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "context.hpp"
#include "device.hpp"
#include "dtype.hpp"
#include "gemm.hpp"
#include "memory.hpp"
#include "timer.hpp"

namespace fc = ferrum::cuda;

namespace {

int g_passed = 0;
int g_failed = 0;

void report(bool ok, const std::string& name, const std::string& detail = {}) {
  if (ok) {
    ++g_passed;
    std::printf("  ok    %s%s%s\n", name.c_str(), detail.empty() ? "" : "  ", detail.c_str());
  } else {
    ++g_failed;
    std::printf("  FAIL  %s%s%s\n", name.c_str(), detail.empty() ? "" : "  ", detail.c_str());
  }
}

bool check_status(const fc::Status& st, const std::string& what) {
  if (st.ok()) return true;
  report(false, what, "status " + std::to_string(st.code) + ": " + st.message);
  return false;
}

// ---- host reference conversions (independent of the CUDA headers) ----------------------

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16_rne(float f) {
  const uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u); // >= 65520 (and inf) -> inf
  if (ax < 0x38800000u) {                                              // below 2^-14: subnormal/zero
    const double scaled = static_cast<double>(std::fabs(f)) * 16777216.0;  // units of 2^-24, exact
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  const uint32_t exp = (ax >> 23) - 127 + 15;
  const uint32_t mant = ax & 0x7fffffu;
  uint32_t h = (exp << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

uint16_t f32_to_bf16_rne(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

double f16_to_double(uint16_t h) {
  const int sign = (h >> 15) & 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  double v;
  if (exp == 0) v = std::ldexp(static_cast<double>(mant), -24);
  else if (exp == 31) v = mant ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else v = std::ldexp(static_cast<double>(mant | 0x400), exp - 25);
  return sign ? -v : v;
}

double bf16_to_double(uint16_t b) { return static_cast<double>(bits_f32(static_cast<uint32_t>(b) << 16)); }

bool is_nan_bits(int32_t dtype, uint32_t bits) {
  if (dtype == FERRUM_DTYPE_F32) return (bits & 0x7fffffffu) > 0x7f800000u;
  if (dtype == FERRUM_DTYPE_F16) return (bits & 0x7fffu) > 0x7c00u;
  return (bits & 0x7fffu) > 0x7f80u;
}

// Host values of a device-format array (raw bytes) as doubles.
std::vector<double> decode(int32_t dtype, const std::vector<unsigned char>& raw, uint64_t n) {
  std::vector<double> out(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (dtype == FERRUM_DTYPE_F32) {
      float f;
      std::memcpy(&f, raw.data() + 4 * i, 4);
      out[i] = f;
    } else {
      uint16_t h;
      std::memcpy(&h, raw.data() + 2 * i, 2);
      out[i] = dtype == FERRUM_DTYPE_F16 ? f16_to_double(h) : bf16_to_double(h);
    }
  }
  return out;
}

// ---- device buffer helper ------------------------------------------------------------------

struct DevBuf {
  int device = 0;
  void* ptr = nullptr;
  ~DevBuf() { (void)fc::free(device, ptr); }
};

// Uploads f32 values and converts them on the device to `dtype`; returns the stored values.
bool upload_as(fc::DeviceContext& ctx, int32_t dtype, const std::vector<float>& host, DevBuf& out,
               std::vector<double>& stored, const std::string& what) {
  const uint64_t n = host.size();
  DevBuf staging{ctx.device, nullptr};
  out.device = ctx.device;
  if (!check_status(fc::alloc(ctx.device, n * 4 + 4, &staging.ptr), what + " alloc")) return false;
  if (!check_status(fc::alloc(ctx.device, n * fc::dtype_size(dtype) + 4, &out.ptr), what + " alloc")) return false;
  if (!check_status(fc::h2d_async(ctx, staging.ptr, host.data(), n * 4), what + " h2d")) return false;
  if (!check_status(fc::convert_async(staging.ptr, FERRUM_DTYPE_F32, out.ptr, dtype, n, ctx.stream),
                    what + " convert"))
    return false;
  std::vector<unsigned char> raw(n * fc::dtype_size(dtype) + 1);
  if (!check_status(fc::d2h(ctx, raw.data(), out.ptr, n * fc::dtype_size(dtype)), what + " d2h")) return false;
  stored = decode(dtype, raw, n);
  return true;
}

// ---- gemm ---------------------------------------------------------------------------------

void test_gemm(fc::DeviceContext& ctx, int32_t dtype, uint64_t m, uint64_t n, uint64_t k, uint64_t seed) {
  char name[128];
  std::snprintf(name, sizeof name, "gemm %s (m=%llu n=%llu k=%llu)", fc::dtype_name(dtype),
                static_cast<unsigned long long>(m), static_cast<unsigned long long>(n),
                static_cast<unsigned long long>(k));
  const uint64_t es = fc::dtype_size(dtype);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> ha(m * k), hb(n * k);
  for (float& v : ha) v = dist(rng);
  for (float& v : hb) v = dist(rng);

  DevBuf a, b, out;
  std::vector<double> sa, sb;
  if (!upload_as(ctx, dtype, ha, a, sa, name) || !upload_as(ctx, dtype, hb, b, sb, name)) return;
  out.device = ctx.device;
  if (!check_status(fc::alloc(ctx.device, m * n * es, &out.ptr), std::string(name) + " alloc out")) return;
  // Poison the output with NaN (all-ones bytes are NaN in every float dtype).
  std::vector<unsigned char> poison(m * n * es, 0xff);
  if (!check_status(fc::h2d_async(ctx, out.ptr, poison.data(), poison.size()), std::string(name) + " poison"))
    return;
  if (!check_status(fc::gemm(ctx, dtype, a.ptr, b.ptr, out.ptr, m, n, k), name)) return;
  std::vector<unsigned char> raw(m * n * es + 1);
  if (!check_status(fc::d2h(ctx, raw.data(), out.ptr, m * n * es), std::string(name) + " d2h")) return;

  const std::vector<double> got = decode(dtype, raw, m * n);
  double err2 = 0.0, ref2 = 0.0;
  uint64_t nonfinite = 0;
  for (uint64_t i = 0; i < m; ++i) {
    for (uint64_t j = 0; j < n; ++j) {
      double ref = 0.0;
      for (uint64_t p = 0; p < k; ++p) ref += sa[i * k + p] * sb[j * k + p];
      const double g = got[i * n + j];
      if (!std::isfinite(g)) ++nonfinite;
      err2 += (g - ref) * (g - ref);
      ref2 += ref * ref;
    }
  }
  char detail[160];
  if (k == 0) {
    bool all_zero = true;
    for (uint64_t i = 0; i < m * n * es; ++i) all_zero = all_zero && raw[i] == 0;
    report(all_zero, name, all_zero ? "out is +0.0" : "out is not all +0.0");
    return;
  }
  const double tol = dtype == FERRUM_DTYPE_F32 ? 1e-5 : dtype == FERRUM_DTYPE_F16 ? 2e-3 : 1e-2;
  const double rel = std::sqrt(err2) / std::sqrt(ref2);
  std::snprintf(detail, sizeof detail, "rel L2 %.3g (tol %.0e), non-finite %llu", rel, tol,
                static_cast<unsigned long long>(nonfinite));
  report(nonfinite == 0 && rel <= tol, name, detail);

  // A repeat (plan cache hit) must be bitwise identical.
  if (!check_status(fc::h2d_async(ctx, out.ptr, poison.data(), poison.size()), std::string(name) + " poison")) return;
  if (!check_status(fc::gemm(ctx, dtype, a.ptr, b.ptr, out.ptr, m, n, k), std::string(name) + " repeat")) return;
  std::vector<unsigned char> raw2(m * n * es + 1);
  if (!check_status(fc::d2h(ctx, raw2.data(), out.ptr, m * n * es), std::string(name) + " d2h")) return;
  report(std::memcmp(raw.data(), raw2.data(), m * n * es) == 0, std::string(name) + " repeat is bitwise identical");
}

void test_gemm_edges(fc::DeviceContext& ctx) {
  // m == 0 / n == 0: no-op, NULL pointers accepted, output untouched.
  DevBuf out{ctx.device, nullptr};
  if (!check_status(fc::alloc(ctx.device, 16, &out.ptr), "gemm edge alloc")) return;
  std::vector<unsigned char> poison(16, 0xff), back(16, 0);
  if (!check_status(fc::h2d_async(ctx, out.ptr, poison.data(), 16), "gemm edge poison")) return;
  fc::Status s1 = fc::gemm(ctx, FERRUM_DTYPE_F32, nullptr, nullptr, nullptr, 0, 4, 4);
  fc::Status s2 = fc::gemm(ctx, FERRUM_DTYPE_F16, nullptr, nullptr, out.ptr, 4, 0, 4);
  if (!check_status(fc::d2h(ctx, back.data(), out.ptr, 16), "gemm edge d2h")) return;
  report(s1.ok() && s2.ok() && back == poison, "gemm m == 0 / n == 0 is a no-op");
  fc::Status s3 = fc::gemm(ctx, FERRUM_DTYPE_I32, out.ptr, out.ptr, out.ptr, 1, 1, 1);
  report(s3.code == FERRUM_STATUS_INVALID_ARGUMENT, "gemm rejects I32", s3.message);
  fc::Status s4 = fc::gemm(ctx, FERRUM_DTYPE_F32, nullptr, out.ptr, out.ptr, 1, 1, 1);
  report(s4.code == FERRUM_STATUS_INVALID_ARGUMENT, "gemm rejects NULL a", s4.message);
}

// ---- convert --------------------------------------------------------------------------------

uint32_t host_convert_bits(float v, int32_t dst) {
  if (dst == FERRUM_DTYPE_F32) return f32_bits(v);
  if (dst == FERRUM_DTYPE_F16) return f32_to_f16_rne(v);
  return f32_to_bf16_rne(v);
}

// Source values as f32 (exactly representable in the source dtype by construction).
float source_value(int32_t src, float v) {
  if (src == FERRUM_DTYPE_F16) return static_cast<float>(f16_to_double(f32_to_f16_rne(v)));
  if (src == FERRUM_DTYPE_BF16) return static_cast<float>(bf16_to_double(f32_to_bf16_rne(v)));
  return v;
}

void test_convert_pair(fc::DeviceContext& ctx, int32_t src, int32_t dst, uint64_t n, uint64_t offset) {
  const std::string name = std::string("convert ") + fc::dtype_name(src) + " -> " + fc::dtype_name(dst) +
                           " n=" + std::to_string(n) + " offset=" + std::to_string(offset);
  const uint64_t ss = fc::dtype_size(src), ds = fc::dtype_size(dst);
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e6f,
                            6.0e-8f, 2.9e-8f, 3.0e-8f, 1e-40f, 3.3895e38f, 3.4028235e38f, -3.4028235e38f,
                            inf, -inf, std::numeric_limits<float>::quiet_NaN(), 1.00048828125f,
                            1.00146484375f, 1.00390625f, 1.01171875f, 0.333333343f};
  std::mt19937_64 rng(1234 + 7 * static_cast<uint64_t>(src) + static_cast<uint64_t>(dst) + n);
  std::uniform_real_distribution<float> dist(-70000.0f, 70000.0f);
  std::vector<float> vals(n);
  for (uint64_t i = 0; i < n; ++i) {
    const float v = i < sizeof specials / sizeof specials[0] ? specials[i] : dist(rng) * ((i % 3) ? 1e-3f : 1.0f);
    vals[i] = source_value(src, v);
  }
  // Host source bytes in the source dtype.
  std::vector<unsigned char> src_raw((n + offset) * ss, 0);
  for (uint64_t i = 0; i < n; ++i) {
    const uint32_t bits = host_convert_bits(vals[i], src);
    std::memcpy(src_raw.data() + (i + offset) * ss, &bits, ss);  // little-endian
  }
  DevBuf dsrc{ctx.device, nullptr}, ddst{ctx.device, nullptr};
  if (!check_status(fc::alloc(ctx.device, (n + offset) * ss, &dsrc.ptr), name)) return;
  if (!check_status(fc::alloc(ctx.device, (n + offset) * ds, &ddst.ptr), name)) return;
  if (!check_status(fc::h2d_async(ctx, dsrc.ptr, src_raw.data(), src_raw.size()), name + " h2d")) return;
  const void* sp = static_cast<const char*>(dsrc.ptr) + offset * ss;
  void* dp = static_cast<char*>(ddst.ptr) + offset * ds;
  if (!check_status(fc::convert_async(sp, src, dp, dst, n, ctx.stream), name)) return;
  std::vector<unsigned char> got(n * ds + 1);
  if (!check_status(fc::d2h(ctx, got.data(), dp, n * ds), name + " d2h")) return;
  uint64_t bad = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t g = 0;
    std::memcpy(&g, got.data() + i * ds, ds);
    const uint32_t want = host_convert_bits(vals[i], dst);
    const bool ok = std::isnan(vals[i]) ? is_nan_bits(dst, g) : g == want;
    if (!ok && bad++ < 3) {
      std::printf("        element %llu: value %.9g got 0x%x want 0x%x\n", static_cast<unsigned long long>(i),
                  static_cast<double>(vals[i]), g, want);
    }
  }
  report(bad == 0, name, bad ? std::to_string(bad) + " mismatches" : "bit exact");
}

void test_convert(fc::DeviceContext& ctx) {
  const int32_t dts[] = {FERRUM_DTYPE_F32, FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16};
  for (int32_t s : dts) {
    for (int32_t d : dts) {
      test_convert_pair(ctx, s, d, 100003, 0);  // vector path plus a tail
      test_convert_pair(ctx, s, d, 1001, 1);    // unaligned: scalar path
    }
  }
  fc::Status st = fc::convert_async(nullptr, FERRUM_DTYPE_I32, nullptr, FERRUM_DTYPE_F32, 4, ctx.stream);
  report(st.code == FERRUM_STATUS_INVALID_ARGUMENT, "convert rejects I32 -> F32", st.message);
  st = fc::convert_async(nullptr, FERRUM_DTYPE_F16, nullptr, FERRUM_DTYPE_F32, 0, ctx.stream);
  report(st.ok(), "convert n == 0 is a no-op");
}

// ---- timer ----------------------------------------------------------------------------------

void test_timer(fc::DeviceContext& ctx) {
  fc::Timer timer;
  if (!check_status(fc::create_timer(ctx, timer), "timer create")) return;
  double ms = -1.0;
  fc::Status st = fc::elapsed_ms(timer, ms);
  report(st.code == FERRUM_STATUS_INVALID_ARGUMENT, "timer elapsed without marks is INVALID_ARGUMENT");
  st = fc::record_end(ctx, timer);
  report(st.code == FERRUM_STATUS_INVALID_ARGUMENT, "timer end without start is INVALID_ARGUMENT");

  DevBuf a{ctx.device, nullptr}, out{ctx.device, nullptr};
  const uint64_t dim = 2048;
  if (!check_status(fc::alloc(ctx.device, dim * dim * 2, &a.ptr), "timer alloc")) return;
  if (!check_status(fc::alloc(ctx.device, dim * dim * 2, &out.ptr), "timer alloc")) return;
  if (!check_status(fc::memset_async(ctx, a.ptr, dim * dim * 2), "timer memset")) return;
  // Warm-up builds the gemm plan so the timed region holds only GPU work.
  bool ok = check_status(fc::gemm(ctx, FERRUM_DTYPE_F16, a.ptr, a.ptr, out.ptr, dim, dim, dim), "timer warm-up");
  ok = ok && check_status(fc::record_start(ctx, timer), "timer start");
  for (int i = 0; ok && i < 10; ++i) ok = check_status(fc::gemm(ctx, FERRUM_DTYPE_F16, a.ptr, a.ptr, out.ptr, dim, dim, dim), "timer gemm");
  ok = ok && check_status(fc::record_end(ctx, timer), "timer end");
  ok = ok && check_status(fc::elapsed_ms(timer, ms), "timer elapsed");
  if (ok) {
    char detail[96];
    std::snprintf(detail, sizeof detail, "10 x f16 gemm 2048^3: %.3f ms (%.1f TFLOP/s)", ms,
                  ms > 0 ? 10.0 * 2.0 * dim * dim * dim / (ms * 1e-3) / 1e12 : 0.0);
    report(std::isfinite(ms) && ms > 0.0, "timer measures gemm", detail);
  }
  st = fc::record_start(ctx, timer);
  st = st.ok() ? fc::elapsed_ms(timer, ms) : st;
  report(st.code == FERRUM_STATUS_INVALID_ARGUMENT, "timer start clears the end mark");
  report(fc::destroy_timer(timer).ok() && fc::destroy_timer(timer).ok(), "timer destroy is NULL-safe");
}

// ---- staging and capture -------------------------------------------------------------------

// h2d_async must have consumed the host source when it returns: overwrite it at once.
void test_h2d_reuse(fc::DeviceContext& ctx) {
  const uint64_t chunk = 3000, rounds = 40;  // 40 small writes cycle through every staging slot
  DevBuf dev{ctx.device, nullptr};
  if (!check_status(fc::alloc(ctx.device, chunk * rounds * 4, &dev.ptr), "h2d reuse alloc")) return;
  std::vector<uint32_t> host(chunk);
  for (uint64_t r = 0; r < rounds; ++r) {
    for (uint64_t i = 0; i < chunk; ++i) host[i] = static_cast<uint32_t>(r * chunk + i);
    if (!check_status(fc::h2d_async(ctx, static_cast<char*>(dev.ptr) + r * chunk * 4, host.data(), chunk * 4),
                      "h2d reuse"))
      return;
    std::fill(host.begin(), host.end(), 0xdeadbeefu);  // the caller reuses its memory at once
  }
  // One large write (> staging capacity) takes the synchronous path.
  std::vector<uint32_t> big(3u << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint32_t>(i * 2654435761u);
  DevBuf dbig{ctx.device, nullptr};
  if (!check_status(fc::alloc(ctx.device, big.size() * 4, &dbig.ptr), "h2d big alloc")) return;
  if (!check_status(fc::h2d_async(ctx, dbig.ptr, big.data(), big.size() * 4), "h2d big")) return;
  std::vector<uint32_t> back(chunk * rounds), back_big(big.size());
  if (!check_status(fc::d2h(ctx, back.data(), dev.ptr, back.size() * 4), "h2d reuse d2h")) return;
  if (!check_status(fc::d2h(ctx, back_big.data(), dbig.ptr, big.size() * 4), "h2d big d2h")) return;
  bool ok = true;
  for (uint64_t i = 0; i < back.size(); ++i) ok = ok && back[i] == static_cast<uint32_t>(i);
  report(ok, "h2d_async: host source reusable on return (staged path)");
  report(back_big == big, "h2d_async: 12 MiB copy (direct path)");
}

// gemm and convert enqueue nothing that breaks stream capture, and the graph replays them.
void test_capture(fc::DeviceContext& ctx) {
  const uint64_t m = 8, n = 64, k = 96;
  std::vector<float> ha(m * k), hb(n * k);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& v : ha) v = dist(rng);
  for (float& v : hb) v = dist(rng);
  DevBuf a, b, out{ctx.device, nullptr}, out16{ctx.device, nullptr};
  std::vector<double> sa, sb;
  if (!upload_as(ctx, FERRUM_DTYPE_F32, ha, a, sa, "capture") || !upload_as(ctx, FERRUM_DTYPE_F32, hb, b, sb, "capture"))
    return;
  if (!check_status(fc::alloc(ctx.device, m * n * 4, &out.ptr), "capture alloc")) return;
  if (!check_status(fc::alloc(ctx.device, m * n * 2, &out16.ptr), "capture alloc")) return;
  if (!check_status(fc::memset_async(ctx, out.ptr, m * n * 4), "capture memset")) return;
  // Expected result, computed eagerly; this shape's plan is deliberately NOT cached before
  // capture for the second gemm below (k - 1), so the heuristic query runs inside capture.
  std::vector<float> want(m * n), got(m * n);
  if (!check_status(fc::gemm(ctx, FERRUM_DTYPE_F32, a.ptr, b.ptr, out.ptr, m, n, k), "capture eager")) return;
  if (!check_status(fc::d2h(ctx, want.data(), out.ptr, m * n * 4), "capture d2h")) return;
  if (!check_status(fc::memset_async(ctx, out.ptr, m * n * 4), "capture memset")) return;
  if (!check_status(fc::sync(ctx), "capture sync")) return;

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  bool ok = cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
  fc::Status s1 = fc::gemm(ctx, FERRUM_DTYPE_F32, a.ptr, b.ptr, out16.ptr, m, n / 2, k - 1);  // new plan
  fc::Status s2 = fc::gemm(ctx, FERRUM_DTYPE_F32, a.ptr, b.ptr, out.ptr, m, n, k);
  fc::Status s3 = fc::convert_async(out.ptr, FERRUM_DTYPE_F32, out16.ptr, FERRUM_DTYPE_F16, m * n, ctx.stream);
  ok = cudaStreamEndCapture(ctx.stream, &graph) == cudaSuccess && ok;
  report(ok && s1.ok() && s2.ok() && s3.ok(), "capture of gemm (cached and new plan) + convert",
         s1.message + s2.message + s3.message);
  if (!ok || !s1.ok() || !s2.ok() || !s3.ok()) return;
  ok = cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess && cudaGraphLaunch(exec, ctx.stream) == cudaSuccess;
  std::vector<uint16_t> got16(m * n);
  ok = ok && fc::d2h(ctx, got.data(), out.ptr, m * n * 4).ok() && fc::d2h(ctx, got16.data(), out16.ptr, m * n * 2).ok();
  bool same = ok && std::memcmp(got.data(), want.data(), m * n * 4) == 0;
  for (uint64_t i = 0; same && i < m * n; ++i) same = got16[i] == f32_to_f16_rne(want[i]);
  report(same, "graph replay reproduces eager gemm + convert bitwise");
  if (exec) (void)cudaGraphExecDestroy(exec);
  if (graph) (void)cudaGraphDestroy(graph);
}

}  // namespace

int main() {
  int32_t score = 0;
  std::string reason;
  fc::Status st = fc::probe(score, reason);
  if (!st.ok()) {
    std::printf("cuda selftest: probe failed: %s\n", st.message.c_str());
    std::printf("cuda selftest: 0 passed, 1 failed\n");
    return 1;
  }
  if (score == 0) {
    std::printf("SKIPPED: %s\n", reason.c_str());
    std::printf("cuda selftest: 0 passed, 0 failed\n");
    return 0;
  }
  int32_t count = 0;
  (void)fc::device_count(count);
  fc::DeviceProps props;
  if (fc::device_props(0, props).ok()) {
    std::printf("device 0: %s, cc %d.%d, %d SMs, %.1f GiB (%d device(s))\n", props.name.c_str(), props.cc_major,
                props.cc_minor, props.sm_count, static_cast<double>(props.total_memory) / (1ull << 30), count);
  }
  fc::DeviceContext ctx;
  if (!check_status(fc::create(0, ctx), "context create")) {
    std::printf("cuda selftest: %d passed, %d failed\n", g_passed, g_failed);
    return 1;
  }
  fc::DeviceContext bad;
  report(fc::create(count, bad).code == FERRUM_STATUS_INVALID_ARGUMENT, "create on ordinal == count is INVALID_ARGUMENT");

  struct Shape { uint64_t m, n, k; };
  const Shape shapes[] = {{1, 4096, 4096}, {17, 33, 65}, {128, 512, 256}, {5, 7, 0}};
  uint64_t seed = 42;
  for (int32_t dtype : {FERRUM_DTYPE_F32, FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16}) {
    for (const Shape& s : shapes) test_gemm(ctx, dtype, s.m, s.n, s.k, seed++);
  }
  test_gemm_edges(ctx);
  test_convert(ctx);
  test_h2d_reuse(ctx);
  test_capture(ctx);
  test_timer(ctx);
  report(fc::sync(ctx).ok(), "final sync");
  report(fc::destroy(ctx).ok() && fc::destroy(ctx).ok(), "context destroy (twice: NULL-safe)");

  std::printf("cuda selftest: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
