// CUDA plugin tests through the C++ facade (core/include/ferrum/ferrum.hpp).
//
// GPU cases call gpu(): without a usable GPU it WARNs "SKIPPED: <reason>", prints
// "cuda tests SKIPPED: <reason>" to stdout and marks the run skipped, and main() then exits
// with 77 (CTest: SKIP_RETURN_CODE 77 -> "Skipped") when nothing failed. The "no GPU" cases
// (FERRUM_BACKEND=cuda fails with the probe reason, discover_plugins diagnosis) run everywhere.
//
// References: float64 on the stored input values (conformance/ref), outputs poisoned with NaN
// before each op, tolerance classes of docs/spec.md §0.13.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <bit>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <cuda_runtime_api.h>

#include <ferrum/ferrum.hpp>

#include <ferrum/cuda/stream_ext.h>

#include "ref/compare.hpp"
#include "ref/ref_gguf.hpp"
#include "ref/ref_gptq.hpp"
#include "ref/ref_mla.hpp"
#include "ref/quantize.hpp"
#include "ref/reference.hpp"
#include "ref/ref_paged.hpp"
#include "ref/ref_quant_kv.hpp"
#include "ref/rng.hpp"

namespace {

namespace ft = ferrum::testing;
using bytes = std::vector<uint8_t>;

bool g_skipped = false;

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

// A probe rejection (no device, no driver, driver too old, no sm_80+ device): the reasons the
// plugin may give on a machine that cannot run it. Anything else is a real failure.
bool is_probe_rejection(const std::string& msg) {
  return contains(msg, "no CUDA device") || contains(msg, "no usable CUDA device") ||
         contains(msg, "CUDA driver too old") || contains(msg, "probe rejected");
}

struct GpuState {
  std::optional<ferrum::Backend> backend;
  std::string skip_reason;  // non-empty: no usable GPU
  std::string load_error;   // the full loader message when load failed
};

GpuState& state() {
  static GpuState s = [] {
    GpuState st;
    try {
      st.backend = ferrum::Backend::load("cuda");
    } catch (const ferrum::Error& e) {
      st.load_error = e.what();
      if (e.code() == ferrum::ErrorCode::load_failed && is_probe_rejection(st.load_error)) {
        // The probe's own reason: from its first words up to the candidate list / line end.
        std::string r = st.load_error;
        for (const char* head : {"no CUDA device", "no usable CUDA device", "CUDA driver too old"}) {
          const auto p = st.load_error.find(head);
          if (p != std::string::npos) {
            r = st.load_error.substr(p);
            break;
          }
        }
        for (const char* tail : {"; candidates", "\n"}) {
          const auto q = r.find(tail);
          if (q != std::string::npos) r.resize(q);
        }
        st.skip_reason = r;
      }
    }
    return st;
  }();
  return s;
}

// The loaded CUDA backend, or nullptr after recording a visible skip. A load failure that is
// not a probe rejection fails the test.
ferrum::Backend* gpu() {
  GpuState& s = state();
  if (s.backend) return &*s.backend;
  if (s.skip_reason.empty()) FAIL("Backend::load(\"cuda\") failed for a reason other than a missing GPU:\n" << s.load_error);
  WARN("SKIPPED: " << s.skip_reason);
  std::printf("cuda tests SKIPPED: %s\n", s.skip_reason.c_str());
  std::fflush(stdout);
  g_skipped = true;
  return nullptr;
}

ferrum::Dtype D(int32_t dt) { return static_cast<ferrum::Dtype>(dt); }

ferrum::Buffer upload(ferrum::Context& ctx, int32_t dt, const bytes& b) {
  return ctx.from_slice_typed(D(dt), b.data(), b.size() / ft::dtype_size(dt));
}

bytes download(ferrum::Context& ctx, const ferrum::Buffer& buf, int32_t dt, uint64_t n) {
  bytes out(n * ft::dtype_size(dt));
  ctx.read_typed({.src = buf, .dtype = D(dt), .len = n, .data = out.data()});
  return out;
}

// A NaN-poisoned buffer of n elements.
ferrum::Buffer poisoned(ferrum::Context& ctx, int32_t dt, uint64_t n) {
  ferrum::Buffer b = ctx.alloc_typed(D(dt), n);
  const bytes p = ft::poison_bytes(dt, n);
  if (n) ctx.write_typed({.dst = b, .dtype = D(dt), .data = p.data(), .data_len = n});
  return b;
}

constexpr int32_t kFloatDtypes[] = {FERRUM_DTYPE_F32, FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16};

// Edge values for the float conversions (finite, overflowing, tiny, signed zero, inf).
std::vector<double> edge_values() {
  const double inf = std::numeric_limits<double>::infinity();
  return {0.0, -0.0, 1.0, -1.5, 65504.0, 65519.0, 65520.0, -65536.0, 3.0e38, -3.4e38, 1.0e-8, -6.0e-8,
          1.0e-40, 0.1, 1.0 / 3.0, 7.0e4, inf, -inf, 1.00048828125, 2.0e-5};
}

}  // namespace

// ---- runs everywhere ------------------------------------------------------------------------

TEST_CASE("cuda backend loads, or the probe says why not", "[cuda][load]") {
  GpuState& s = state();
  if (!s.backend) {
    INFO(s.load_error);
    REQUIRE(!s.skip_reason.empty());  // anything but a probe rejection is a failure
    std::printf("cuda tests SKIPPED: %s\n", s.skip_reason.c_str());
    WARN("SKIPPED: " << s.skip_reason);
    g_skipped = true;
    return;
  }
  CHECK(s.backend->name() == "cuda");
  CHECK(contains(std::string(s.backend->build_info()), "cuda="));
  REQUIRE(s.backend->device_count() >= 1);
  const ferrum::DeviceProps p = s.backend->device_props(0);
  CHECK(p.kind == ferrum::DeviceKind::gpu);
  CHECK(p.compute_major >= 8);
  CHECK(p.total_memory_bytes > 0);
  CHECK(p.multiprocessors > 0);
  CHECK(p.supports_dtype(ferrum::Dtype::bf16));
  CHECK(s.backend->supports_device_ordinal_scope());
}

TEST_CASE("FERRUM_BACKEND=cuda without a GPU fails with the probe reason", "[cuda][load]") {
  const bool have_gpu = state().backend.has_value();
  ::setenv("FERRUM_BACKEND", "cuda", 1);
  struct Unset {
    ~Unset() { ::unsetenv("FERRUM_BACKEND"); }
  } unset;
  if (have_gpu) {
    ferrum::Backend b = ferrum::Backend::load();
    CHECK(b.name() == "cuda");
    return;
  }
  try {
    ferrum::Backend b = ferrum::Backend::load();
    FAIL("FERRUM_BACKEND=cuda loaded '" << b.name() << "' without a GPU (silent fallback)");
  } catch (const ferrum::Error& e) {
    INFO(e.what());
    CHECK(e.code() == ferrum::ErrorCode::load_failed);
    CHECK(is_probe_rejection(e.what()));
    CHECK(contains(e.what(), "cuda"));
  }
}

TEST_CASE("discover_plugins lists the cuda plugin with its probe diagnosis", "[cuda][load]") {
  const std::vector<ferrum::PluginCandidate> all = ferrum::discover_plugins();
  const ferrum::PluginCandidate* cuda = nullptr;
  for (const auto& c : all)
    if (c.name == "cuda") cuda = &c;
  REQUIRE(cuda != nullptr);
  INFO("stage " << ferrum::to_string(cuda->stage) << ", reason: " << cuda->reason);
  CHECK(cuda->abi_major == 1);
  CHECK(contains(cuda->build_info, "sm="));
  if (state().backend) {
    CHECK(cuda->stage >= ferrum::LoadStage::probed);
    CHECK(cuda->score > 0);
  } else {
    CHECK((cuda->stage == ferrum::LoadStage::abi || cuda->stage == ferrum::LoadStage::prefix));
    CHECK(cuda->score == 0);
    CHECK(is_probe_rejection(cuda->reason));
    CHECK(!cuda->usable);
  }
}

// ---- GPU cases ------------------------------------------------------------------------------

TEST_CASE("context info and flags", "[cuda][context]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  ferrum::Context ctx = be->create_context({}, ferrum::Dtype::f16);
  const ferrum::ContextInfo info = ctx.info();
  CHECK(info.device_ordinal == 0);
  CHECK(info.activation_dtype == ferrum::Dtype::f16);
  CHECK(info.batched_slots >= 128);
  CHECK(info.batched_items >= 64);
  CHECK(ctx.activation_elem_size_bytes() == 2);
  ferrum::Context c32 = be->create_context({}, ferrum::Dtype::f32);
  CHECK(c32.activation_elem_size_bytes() == 4);
  ferrum::Context cdef = be->create_context();
  CHECK(cdef.activation_dtype() == ferrum::Dtype::f16);  // CUDA default (docs/spec.md §0.2 rule 4)
  try {
    (void)be->create_context(be->device_count(), ferrum::Dtype::f16);
    FAIL("new_context on ordinal == device_count succeeded");
  } catch (const ferrum::Error& e) {
    CHECK(e.code() == ferrum::ErrorCode::invalid_argument);
  }
  ctx.sync();
  ctx.sync_before_host_readback();
}

TEST_CASE("gemm against a float64 reference", "[cuda][gemm]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = GENERATE(FERRUM_DTYPE_F32, FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16);
  const auto [m, n, k] = GENERATE(table<uint64_t, uint64_t, uint64_t>(
      {{1, 4096, 4096}, {17, 33, 65}, {128, 512, 256}, {3, 5, 0}, {0, 5, 7},
       // decode-sized m (1..4) at odd n and k, short and long rows
       {2, 1000, 264}, {3, 77, 8}, {4, 513, 4104}, {1, 3, 14344}, {4, 2048, 2056}, {2, 6, 60}}));
  INFO(ft::dtype_name(dt) << " m=" << m << " n=" << n << " k=" << k);
  ferrum::Context ctx = be->create_context({}, ferrum::Dtype::f16);  // a BF16/F32 gemm on an F16 context
  const uint64_t seed = 1000 + m * 7 + n * 13 + k * 17 + static_cast<uint64_t>(dt);
  const std::vector<double> a = ft::normal_dtype(dt, m * k, 0.0, 1.0, seed);
  const std::vector<double> b = ft::normal_dtype(dt, n * k, 0.0, 1.0, seed + 1);
  ferrum::Buffer da = upload(ctx, dt, ft::encode(dt, a));
  ferrum::Buffer db = upload(ctx, dt, ft::encode(dt, b));
  constexpr uint64_t kGuard = 16;
  ferrum::Buffer dout = poisoned(ctx, dt, m * n + kGuard);
  ctx.gemm({.a = da, .b = db, .out = dout, .m = m, .n = n, .k = k});
  const bytes got = download(ctx, dout, dt, m * n + kGuard);
  CHECK(ft::all_poison(dt, got, m * n, kGuard));  // nothing past [m, n] written
  std::vector<double> ref;
  ferrum::ref::gemm(a, b, ref, m, n, k);
  const bytes body(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(m * n * ft::dtype_size(dt)));
  const ft::CompareResult r = ft::compare(ft::decode(dt, body), ref, dt, n, 'F');
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("gemm error paths", "[cuda][gemm]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  ferrum::Context ctx = be->create_context({}, ferrum::Dtype::f16);
  ferrum::Buffer a = ctx.alloc_typed(ferrum::Dtype::f16, 4 * 8);
  ferrum::Buffer b = ctx.alloc_typed(ferrum::Dtype::f16, 3 * 8);
  ferrum::Buffer small = ctx.alloc_typed(ferrum::Dtype::f16, 4 * 3 - 1);
  try {
    ctx.gemm({.a = a, .b = b, .out = small, .m = 4, .n = 3, .k = 8});
    FAIL("gemm with a too-small out succeeded");
  } catch (const ferrum::Error& e) {
    INFO(e.what());
    CHECK(e.code() == ferrum::ErrorCode::invalid_argument);
    CHECK(contains(e.what(), "gemm"));
    CHECK(contains(e.what(), "out"));
  }
  ferrum::Buffer out32 = ctx.alloc_typed(ferrum::Dtype::f32, 4 * 3);
  CHECK_THROWS_AS(ctx.gemm({.a = a, .b = b, .out = out32, .m = 4, .n = 3, .k = 8}), ferrum::Error);  // mixed activation dtypes
  ferrum::Buffer out = ctx.alloc_typed(ferrum::Dtype::f16, 4 * 4);
  CHECK_THROWS_AS(ctx.gemm({.a = a, .b = b, .out = a, .m = 4, .n = 3, .k = 8}), ferrum::Error);  // out aliases a
  (void)out;
}

TEST_CASE("copy_slice converts exactly like the host", "[cuda][memory]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t sd = GENERATE(FERRUM_DTYPE_F32, FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16);
  const int32_t dd = GENERATE(FERRUM_DTYPE_F32, FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16);
  INFO(ft::dtype_name(sd) << " -> " << ft::dtype_name(dd));
  ferrum::Context ctx = be->create_context({}, ferrum::Dtype::f16);
  std::vector<double> v = ft::normal(1000, 0.0, 100.0, 42);
  for (double e : edge_values()) v.push_back(e);
  v = ft::round_to(sd, v);
  const uint64_t len = v.size(), so = 3, doff = 5;
  std::vector<double> padded(so, 0.0);
  padded.insert(padded.end(), v.begin(), v.end());
  ferrum::Buffer src = upload(ctx, sd, ft::encode(sd, padded));
  ferrum::Buffer dst = poisoned(ctx, dd, doff + len + 7);
  ctx.copy_slice({.src = src, .src_offset = so, .dst = dst, .dst_offset = doff, .len = len});
  const bytes got = download(ctx, dst, dd, doff + len + 7);
  CHECK(ft::all_poison(dd, got, 0, doff));
  CHECK(ft::all_poison(dd, got, doff + len, 7));
  const bytes body(got.begin() + static_cast<std::ptrdiff_t>(doff * ft::dtype_size(dd)),
                   got.begin() + static_cast<std::ptrdiff_t>((doff + len) * ft::dtype_size(dd)));
  const ft::CompareResult r = ft::compare_bytes(body, ft::encode(dd, v), dd, 0);
  INFO(r.message);
  CHECK(r.ok);

  // NaN stays NaN.
  ferrum::Buffer nan_src = upload(ctx, sd, ft::poison_bytes(sd, 4));
  ferrum::Buffer nan_dst = ctx.alloc_typed(D(dd), 4);
  ctx.copy_slice({.src = nan_src, .src_offset = 0, .dst = nan_dst, .dst_offset = 0, .len = 4});
  for (double x : ft::decode(dd, download(ctx, nan_dst, dd, 4))) CHECK(std::isnan(x));
}

TEST_CASE("copy_slice rules", "[cuda][memory]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  ferrum::Context ctx = be->create_context({}, ferrum::Dtype::f16);
  std::vector<int32_t> ids(64);
  for (int32_t i = 0; i < 64; ++i) ids[static_cast<size_t>(i)] = i * 3 - 50;
  ferrum::Buffer buf = ctx.from_slice_typed(std::span<const int32_t>(ids));
  ctx.copy_slice({.src = buf, .src_offset = 0, .dst = buf, .dst_offset = 32, .len = 32});  // same handle, disjoint ranges: OK
  const std::vector<int32_t> back = ctx.read_typed<int32_t>(buf, 64);
  for (int i = 0; i < 32; ++i) CHECK(back[static_cast<size_t>(32 + i)] == ids[static_cast<size_t>(i)]);
  try {
    ctx.copy_slice({.src = buf, .src_offset = 0, .dst = buf, .dst_offset = 16, .len = 32});
    FAIL("overlapping copy_slice succeeded");
  } catch (const ferrum::Error& e) {
    CHECK(e.code() == ferrum::ErrorCode::invalid_argument);
  }
  ferrum::Buffer f = ctx.alloc_typed(ferrum::Dtype::f32, 64);
  CHECK_THROWS_AS(ctx.copy_slice({.src = buf, .src_offset = 0, .dst = f, .dst_offset = 0, .len = 8}), ferrum::Error);      // I32 -> F32 is not a pair
  CHECK_THROWS_AS(ctx.copy_slice({.src = f, .src_offset = 60, .dst = f, .dst_offset = 0, .len = 8}), ferrum::Error);       // src range past the end
}

TEST_CASE("write_typed / read_typed / to_vec round trips for every dtype", "[cuda][memory]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = GENERATE(FERRUM_DTYPE_F32, FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16, FERRUM_DTYPE_I32,
                              FERRUM_DTYPE_U32, FERRUM_DTYPE_I8, FERRUM_DTYPE_U8, FERRUM_DTYPE_F8_E4M3);
  INFO(ft::dtype_name(dt));
  ferrum::Context ctx = be->create_context({}, ferrum::Dtype::f16);
  const uint64_t n = 777;
  std::vector<double> v;
  switch (dt) {
    case FERRUM_DTYPE_I32: for (uint32_t x : ft::random_ids(n, 1u << 26, 5)) v.push_back(double(x) - double(1u << 25)); break;
    case FERRUM_DTYPE_U32: for (uint32_t x : ft::random_ids(n, 0xFFFFFFFFu, 5)) v.push_back(double(x)); break;
    case FERRUM_DTYPE_I8: for (uint32_t x : ft::random_ids(n, 256, 5)) v.push_back(double(x) - 128.0); break;
    case FERRUM_DTYPE_U8: for (uint32_t x : ft::random_ids(n, 256, 5)) v.push_back(double(x)); break;
    default: v = ft::normal_dtype(dt, n, 0.0, 10.0, 5); break;
  }
  const bytes enc = ft::encode(dt, v);
  ferrum::Buffer buf = ctx.alloc_typed(D(dt), n + 3);
  CHECK(download(ctx, buf, dt, n + 3) == bytes((n + 3) * ft::dtype_size(dt), 0));  // alloc_typed zeroes
  ctx.write_typed({.dst = buf, .dtype = D(dt), .data = enc.data(), .data_len = n});
  const bytes got = download(ctx, buf, dt, n + 3);
  CHECK(bytes(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(enc.size())) == enc);
  const std::vector<float> f = ctx.to_vec(buf, n);
  const std::vector<double> exact = ft::decode(dt, enc);
  uint64_t bad = 0;
  for (uint64_t i = 0; i < n; ++i)
    if (std::bit_cast<uint32_t>(f[i]) != std::bit_cast<uint32_t>(static_cast<float>(exact[i]))) ++bad;
  CHECK(bad == 0);  // exact for every dtype; I32/U32 beyond 2^24 rounded to nearest-even
  CHECK_THROWS_AS(ctx.to_vec(buf, n + 4), ferrum::Error);
}

TEST_CASE("from_slice, from_weight_bytes and write_f32_to_activation round exactly", "[cuda][memory]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  ferrum::Context ctx = be->create_context({}, ferrum::Dtype::f16);
  std::vector<double> v = ft::normal(300, 0.0, 1000.0, 9);
  for (double e : edge_values()) v.push_back(e);
  const std::vector<float> host(v.begin(), v.end());
  {
    ferrum::Buffer b = ctx.from_slice(std::span<const float>(host));
    CHECK(b.dtype() == ferrum::Dtype::f16);
    const ft::CompareResult r = ft::compare_bytes(download(ctx, b, FERRUM_DTYPE_F16, host.size()),
                                                  ft::encode(FERRUM_DTYPE_F16, v), FERRUM_DTYPE_F16, 0);
    INFO(r.message);
    CHECK(r.ok);
  }
  for (int32_t sd : kFloatDtypes)
    for (int32_t dd : kFloatDtypes) {
      INFO(ft::dtype_name(sd) << " -> " << ft::dtype_name(dd));
      const std::vector<double> stored = ft::round_to(sd, v);
      const bytes raw = ft::encode(sd, stored);
      bytes unaligned(raw.size() + 1);  // start at an odd address
      std::copy(raw.begin(), raw.end(), unaligned.begin() + 1);
      ferrum::Buffer b = ctx.from_weight_bytes({.raw = std::span<const uint8_t>(unaligned.data() + 1, raw.size()), .src_dtype = D(sd), .dst_dtype = D(dd)});
      REQUIRE(b.count() == stored.size());
      const ft::CompareResult r = ft::compare_bytes(download(ctx, b, dd, stored.size()), ft::encode(dd, stored), dd, 0);
      INFO(r.message);
      CHECK(r.ok);
    }
  {
    ferrum::Buffer dst = poisoned(ctx, FERRUM_DTYPE_BF16, host.size() + 5);
    ctx.write_f32_to_activation(dst, std::span<const float>(host));
    const bytes got = download(ctx, dst, FERRUM_DTYPE_BF16, host.size() + 5);
    CHECK(ft::all_poison(FERRUM_DTYPE_BF16, got, host.size(), 5));
    const bytes body(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(host.size() * 2));
    CHECK(ft::compare_bytes(body, ft::encode(FERRUM_DTYPE_BF16, v), FERRUM_DTYPE_BF16, 0).ok);
  }
  const uint8_t odd[3] = {1, 2, 3};
  CHECK_THROWS_AS(ctx.from_weight_bytes({.raw = std::span<const uint8_t>(odd, 3), .src_dtype = ferrum::Dtype::f16}), ferrum::Error);
}

TEST_CASE("zero_buffer zeroes exactly the prefix", "[cuda][memory]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  ferrum::Context ctx = be->create_context({}, ferrum::Dtype::f16);
  const int32_t dt = GENERATE(FERRUM_DTYPE_F32, FERRUM_DTYPE_BF16, FERRUM_DTYPE_U8);
  ferrum::Buffer b = poisoned(ctx, dt, 100);
  ctx.zero_buffer(b, 97);
  const bytes got = download(ctx, b, dt, 100);
  CHECK(bytes(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(97 * ft::dtype_size(dt))) ==
        bytes(97 * ft::dtype_size(dt), 0));
  CHECK(ft::all_poison(dt, got, 97, 3));
  CHECK_THROWS_AS(ctx.zero_buffer(b, 101), ferrum::Error);
}

TEST_CASE("timer rules", "[cuda][timer]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  ferrum::Context ctx = be->create_context({}, ferrum::Dtype::f16);
  ferrum::Timer t = ctx.make_timer();
  try {
    ctx.record_end(t);
    FAIL("record_end without record_start succeeded");
  } catch (const ferrum::Error& e) {
    CHECK(e.code() == ferrum::ErrorCode::invalid_argument);
  }
  CHECK_THROWS_AS(ctx.elapsed_ms(t), ferrum::Error);
  ctx.record_start(t);
  CHECK_THROWS_AS(ctx.elapsed_ms(t), ferrum::Error);  // end mark missing
  const std::vector<double> a = ft::normal_dtype(FERRUM_DTYPE_F16, 256 * 256, 0.0, 1.0, 3);
  ferrum::Buffer da = upload(ctx, FERRUM_DTYPE_F16, ft::encode(FERRUM_DTYPE_F16, a));
  ferrum::Buffer out = ctx.alloc_typed(ferrum::Dtype::f16, 256 * 256);
  ctx.gemm({.a = da, .b = da, .out = out, .m = 256, .n = 256, .k = 256});
  ctx.record_end(t);
  const double ms = ctx.elapsed_ms(t);
  CHECK(ms >= 0.0);
  CHECK(std::isfinite(ms));
  ctx.record_start(t);  // reuse: clears the end mark
  CHECK_THROWS_AS(ctx.elapsed_ms(t), ferrum::Error);
}

// ---- paged KV ------------------------------------------------------------------------------

TEST_CASE("paged capability flags", "[cuda][paged]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  ferrum::Context ctx = be->create_context({}, ferrum::Dtype::f16);
  CHECK(ctx.supports_paged_kv() == 1);
  CHECK(ctx.supports_varlen_qkv() == 1);
  CHECK(ctx.supports_vllm_paged_attn() == 1);
}

namespace {

// A batched-decode setup over a shuffled pool: sequence s owns blocks perm[...] in order.
struct PagedSetup {
  uint64_t nh = 8, nkv = 2, D = 128, bs = 16, S = 0, mbps = 0, nblocks = 0;
  std::vector<int64_t> tables, lens;
  std::vector<double> q, k, v;
};

PagedSetup paged_setup(int32_t dt, const std::vector<int64_t>& lens, uint64_t mbps, uint64_t seed, uint64_t D = 128,
                       uint64_t bs = 16) {
  PagedSetup p;
  p.D = D;
  p.bs = bs;
  p.S = lens.size();
  p.lens = lens;
  p.mbps = mbps;
  p.nblocks = p.S * mbps + 3;
  const std::vector<uint32_t> perm = ft::random_permutation(static_cast<uint32_t>(p.nblocks), seed);
  p.tables.resize(p.S * mbps);
  for (uint64_t i = 0; i < p.tables.size(); ++i) p.tables[i] = perm[i];
  const uint64_t pool = p.nblocks * p.bs * p.nkv * p.D;
  p.k = ft::normal_dtype(dt, pool, 0.0, 1.0, seed + 1);
  p.v = ft::normal_dtype(dt, pool, 0.0, 1.0, seed + 2);
  p.q = ft::normal_dtype(dt, p.S * p.nh * p.D, 0.0, 1.0, seed + 3);
  return p;
}

ferrum::Buffer upload_u32(ferrum::Context& ctx, const std::vector<int64_t>& v) {
  std::vector<uint32_t> u(v.begin(), v.end());
  return ctx.from_slice_typed(ferrum::Dtype::u32, u.data(), u.size());
}

void check_paged_decode(ferrum::Context& ctx, const PagedSetup& p, int32_t dt, const ferrum::Buffer& out,
                        const std::vector<int64_t>& lens) {
  std::vector<double> ref;
  ferrum::ref::paged_attention_uniform(p.q, p.k, p.v, ref, p.tables, lens, p.S, p.nh, p.nkv, p.D, p.bs, p.mbps, 1, 0.0f,
                                       0);
  const ft::CompareResult r = ft::compare(ft::decode(dt, download(ctx, out, dt, ref.size())), ref, dt, p.nh * p.D, 'F');
  INFO(r.message);
  CHECK(r.ok);
}

}  // namespace

TEST_CASE("paged batched decode: deterministic, and a captured graph reads new device lengths", "[cuda][paged][graph]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = GENERATE(FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16, FERRUM_DTYPE_F32);
  INFO(ft::dtype_name(dt));
  ferrum::Context ctx = be->create_context({}, D(dt));
  const uint64_t mbps = 400;  // 6400 positions per sequence
  PagedSetup p = paged_setup(dt, {5000, 37, 1, 4097}, mbps, 77);
  ferrum::Buffer q = upload(ctx, dt, ft::encode(dt, p.q)), kp = upload(ctx, dt, ft::encode(dt, p.k)),
                 vp = upload(ctx, dt, ft::encode(dt, p.v));
  ferrum::Buffer bt = upload_u32(ctx, p.tables), lens = upload_u32(ctx, p.lens);
  ferrum::Buffer out = poisoned(ctx, dt, p.S * p.nh * p.D), out2 = poisoned(ctx, dt, p.S * p.nh * p.D);
  const uint64_t max_kv = 6000;
  ctx.paged_batched_decode_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .valid_kv_lens = lens, .num_seqs = p.S, .max_kv_len = max_kv, .num_heads = p.nh, .num_kv_heads = p.nkv, .head_dim = p.D, .block_size = p.bs, .max_num_blocks_per_seq = mbps, .scale = 0.0f, .sliding_window = 0});
  ctx.paged_batched_decode_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out2, .block_tables = bt, .valid_kv_lens = lens, .num_seqs = p.S, .max_kv_len = max_kv, .num_heads = p.nh, .num_kv_heads = p.nkv, .head_dim = p.D, .block_size = p.bs, .max_num_blocks_per_seq = mbps, .scale = 0.0f, .sliding_window = 0});
  check_paged_decode(ctx, p, dt, out, p.lens);
  CHECK(download(ctx, out, dt, p.S * p.nh * p.D) == download(ctx, out2, dt, p.S * p.nh * p.D));  // split merge is fixed-order

  // Capture once, then change the device lengths and replay: the graph reads them at replay.
  ctx.begin_graph_capture();
  ctx.paged_batched_decode_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out2, .block_tables = bt, .valid_kv_lens = lens, .num_seqs = p.S, .max_kv_len = max_kv, .num_heads = p.nh, .num_kv_heads = p.nkv, .head_dim = p.D, .block_size = p.bs, .max_num_blocks_per_seq = mbps, .scale = 0.0f, .sliding_window = 0});
  ctx.end_graph_capture(901);
  const std::vector<int64_t> new_lens = {5999, 100, 2, 17};
  std::vector<uint32_t> nl(new_lens.begin(), new_lens.end());
  ctx.write_typed({.dst = lens, .dtype = ferrum::Dtype::u32, .data = nl.data(), .data_len = nl.size()});
  CHECK(ctx.replay_graph(901) == 1);
  ctx.sync();
  check_paged_decode(ctx, p, dt, out2, new_lens);
}

// The sm_90 decode brings whole 16-key boxes with tensor copies (TMA) into swizzled stages and the
// others by cp.async into the same places; the math is the cp.async path's, so with the copies
// forced on (FERRUM_CUDA_DECODE_TMA=1) every output must carry the bits of the forced cp.async path
// (=0): lengths off the box size, boxes past the length, a block id past the pool (zeros), a window,
// head dims 64 / 128 / 256, block sizes 16 and 32, paged and contiguous caches. On a device without
// the copies (before sm_90) both runs take the cp.async path and the test checks the reference only.
TEST_CASE("decode: the tensor-copy path gives the bits of the cp.async path", "[cuda][paged][attention]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = GENERATE(FERRUM_DTYPE_BF16, FERRUM_DTYPE_F16);
  const auto [hd, bs, window] = GENERATE(table<uint64_t, uint64_t, uint64_t>({{128, 16, 0}, {64, 32, 0}, {256, 16, 700}, {128, 32, 333}}));
  INFO(ft::dtype_name(dt) << " head_dim " << hd << " block_size " << bs << " window " << window);
  ferrum::Context ctx = be->create_context({}, D(dt));
  const uint64_t mbps = 6000 / bs + 1;
  PagedSetup p = paged_setup(dt, {4999, 37, 1, 3001, 1040}, mbps, 31 + hd + bs, hd, bs);
  std::vector<int64_t> tables = p.tables;
  tables[4 * mbps + 20] = 1u << 30;  // sequence 4: one block past the pool reads zeros on both paths
  ferrum::Buffer q = upload(ctx, dt, ft::encode(dt, p.q)), kp = upload(ctx, dt, ft::encode(dt, p.k)),
                 vp = upload(ctx, dt, ft::encode(dt, p.v));
  ferrum::Buffer bt = upload_u32(ctx, tables), lens = upload_u32(ctx, p.lens);
  const uint64_t n = p.S * p.nh * p.D;
  std::vector<bytes> got;
  for (const char* mode : {"1", "0"}) {
    ::setenv("FERRUM_CUDA_DECODE_TMA", mode, 1);
    ferrum::Buffer out = poisoned(ctx, dt, n);
    ctx.paged_batched_decode_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .valid_kv_lens = lens, .num_seqs = p.S, .max_kv_len = 6000, .num_heads = p.nh, .num_kv_heads = p.nkv, .head_dim = p.D, .block_size = p.bs, .max_num_blocks_per_seq = mbps, .scale = 0.0f, .sliding_window = window});
    got.push_back(download(ctx, out, dt, n));
  }
  ::unsetenv("FERRUM_CUDA_DECODE_TMA");
  CHECK(got[0] == got[1]);
  // sequences 0..3 against the float64 reference (the reference sees the uncorrupted table)
  std::vector<double> ref;
  ferrum::ref::paged_attention_uniform(p.q, p.k, p.v, ref, p.tables, p.lens, p.S, p.nh, p.nkv, p.D, p.bs, mbps, 1, 0.0f,
                                       window);
  const std::vector<double> all = ft::decode(dt, got[0]);
  const uint64_t rows4 = 4 * p.nh * p.D;
  const ft::CompareResult r = ft::compare(std::vector<double>(all.begin(), all.begin() + rows4),
                                          std::vector<double>(ref.begin(), ref.begin() + rows4), dt, p.D, 'F');
  INFO(r.message);
  CHECK(r.ok);

  // Contiguous caches: one decode row per batch entry over 3001 keys.
  const uint64_t B = 3, L = 3001, H = 8, nkv = 2;
  const std::vector<double> cq = ft::normal_dtype(dt, B * H * hd, 0.0, 1.0, 61 + hd);
  const std::vector<double> ck = ft::normal_dtype(dt, B * nkv * L * hd, 0.0, 1.0, 62 + hd);
  const std::vector<double> cv = ft::normal_dtype(dt, B * nkv * L * hd, 0.0, 1.0, 63 + hd);
  ferrum::Buffer dq = upload(ctx, dt, ft::encode(dt, cq)), dk = upload(ctx, dt, ft::encode(dt, ck)),
                 dv = upload(ctx, dt, ft::encode(dt, cv));
  std::vector<bytes> cgot;
  for (const char* mode : {"1", "0"}) {
    ::setenv("FERRUM_CUDA_DECODE_TMA", mode, 1);
    ferrum::Buffer out = poisoned(ctx, dt, cq.size());
    ctx.flash_attention({.q = dq, .k = dk, .v = dv, .out = out, .batch = B, .q_len = 1, .kv_len = L, .pos_offset = L - 1, .num_heads = H, .num_kv_heads = nkv, .head_dim = hd, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = window});
    cgot.push_back(download(ctx, out, dt, cq.size()));
  }
  ::unsetenv("FERRUM_CUDA_DECODE_TMA");
  CHECK(cgot[0] == cgot[1]);
  std::vector<double> cref;
  ferrum::ref::flash_attention(cq, ck, cv, cref, B, 1, L, L - 1, H, nkv, hd, true, 0.0f, 0, window);
  const ft::CompareResult cr = ft::compare(ft::decode(dt, cgot[0]), cref, dt, hd, 'F');
  INFO(cr.message);
  CHECK(cr.ok);
}

TEST_CASE("paged attention: out-of-range device values never fault", "[cuda][paged]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = FERRUM_DTYPE_F16;
  ferrum::Context ctx = be->create_context({}, D(dt));
  const uint64_t mbps = 8;
  PagedSetup p = paged_setup(dt, {100, 90, 128, 3}, mbps, 5);
  // Sequence 1: a block id far past the pool; sequence 2: a length past the table's capacity
  // (128 > 8·16 is not, 1000 is); sequence 3: fine. Rows of bad sequences are unspecified, the
  // others must stay correct, and nothing may be read or written outside the buffers.
  std::vector<int64_t> tables = p.tables;
  tables[1 * mbps + 2] = 1u << 30;
  std::vector<int64_t> lens = {100, 90, 1000, 3};
  ferrum::Buffer q = upload(ctx, dt, ft::encode(dt, p.q)), kp = upload(ctx, dt, ft::encode(dt, p.k)),
                 vp = upload(ctx, dt, ft::encode(dt, p.v));
  ferrum::Buffer bt = upload_u32(ctx, tables), bl = upload_u32(ctx, lens);
  ferrum::Buffer out = poisoned(ctx, dt, p.S * p.nh * p.D);
  ctx.paged_batched_decode_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .valid_kv_lens = bl, .num_seqs = p.S, .max_kv_len = 1000, .num_heads = p.nh, .num_kv_heads = p.nkv, .head_dim = p.D, .block_size = p.bs, .max_num_blocks_per_seq = mbps, .scale = 0.0f, .sliding_window = 0});
  ctx.paged_varlen_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .cu_seqlens_q = upload_u32(ctx, {0, 1, 2, 9, 4}), .pos_offsets = upload_u32(ctx, {99, 89, 999, 2}), .block_tables = bt,
                             .num_seqs = p.S, .total_q_tokens = p.S, .max_kv_len = 1000, .num_heads = p.nh, .num_kv_heads = p.nkv, .head_dim = p.D, .block_size = p.bs, .max_num_blocks_per_seq = mbps, .scale = 0.0f, .sliding_window = 0});  // cu[3] = 9 > M: skipped
  ctx.sync();
  // Sequence 0 and 3 are intact: compare their rows against the reference.
  std::vector<double> ref;
  ferrum::ref::paged_attention_uniform(p.q, p.k, p.v, ref, p.tables, {100, 90, 128, 3}, p.S, p.nh, p.nkv, p.D, p.bs,
                                       mbps, 1, 0.0f, 0);
  const std::vector<double> got = ft::decode(dt, download(ctx, out, dt, p.S * p.nh * p.D));
  const uint64_t rl = p.nh * p.D;
  const std::vector<double> g0(got.begin(), got.begin() + rl), r0(ref.begin(), ref.begin() + rl);
  const ft::CompareResult c0 = ft::compare(g0, r0, dt, rl, 'F');
  INFO(c0.message);
  CHECK(c0.ok);
}

// The CUDA writers resolve tokens in chunks of up to 8 per block once a call has >= 2 048 tokens
// (rope_paged_kernel); below that every block owns one token. The per-vector arithmetic does not
// depend on the chunking, so one large varlen call must write exactly the bits of the same work
// split into calls of < 2 048 tokens (sequence pieces: pos_offset advanced, same table row), which
// the conformance cases check against the float64 reference. Partial last chunk (odd M), a
// one-token sequence, and a table entry past the pool (its slots are not written) included.
TEST_CASE("paged writer: a large varlen call writes the bits of the same work in small calls", "[cuda][paged]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = GENERATE(FERRUM_DTYPE_BF16, FERRUM_DTYPE_F16, FERRUM_DTYPE_F32);
  const int32_t mode = GENERATE(1, 3);
  INFO(ft::dtype_name(dt) << " qk_mode " << mode);
  ferrum::Context ctx = be->create_context({}, D(dt));
  const uint64_t qh = 4, kvh = 2, hd = 64, bs = 16, W = (qh + 2 * kvh) * hd;
  const std::vector<uint64_t> lens = {7001, 1, 5003, 2500, 2000}, offs = {3, 0, 17, 100, 5};
  const uint64_t S = lens.size();
  uint64_t M = 0, mbps = 0;
  for (uint64_t s = 0; s < S; ++s) {
    M += lens[s];
    mbps = std::max<uint64_t>(mbps, (offs[s] + lens[s] + bs - 1) / bs);
  }
  const uint64_t nblocks = S * mbps + 5, rows = 7200;
  const std::vector<uint32_t> perm = ft::random_permutation(static_cast<uint32_t>(nblocks), 31);
  std::vector<int64_t> tables(S * mbps);
  for (uint64_t i = 0; i < tables.size(); ++i) tables[i] = perm[i];
  tables[2 * mbps + 100] = int64_t{1} << 30;  // sequence 2, slots 1600..1615: out of the pool
  std::vector<double> cos, sin;
  ferrum::ref::rope_tables(rows, hd, 10000.0, cos, sin);
  const uint64_t pool_n = nblocks * bs * kvh * hd;
  const bytes qkv = ft::encode(dt, ft::normal_dtype(dt, M * W, 0.0, 1.0, 32));
  const bytes pool0 = ft::encode(dt, ft::normal_dtype(dt, pool_n, 0.0, 1.0, 33));
  ferrum::Buffer bcos = upload(ctx, FERRUM_DTYPE_F32, ft::encode(FERRUM_DTYPE_F32, cos));
  ferrum::Buffer bsin = upload(ctx, FERRUM_DTYPE_F32, ft::encode(FERRUM_DTYPE_F32, sin));
  ferrum::Buffer qw = upload(ctx, dt, ft::encode(dt, ft::uniform_dtype(dt, hd, 0.5, 1.5, 34)));
  ferrum::Buffer kw = upload(ctx, dt, ft::encode(dt, ft::uniform_dtype(dt, hd, 0.5, 1.5, 35)));
  ferrum::Buffer bt = upload_u32(ctx, tables);
  const ferrum::QkMode qk = static_cast<ferrum::QkMode>(mode);
  const ferrum::Buffer* qn = mode == 1 ? &qw : nullptr;
  const ferrum::Buffer* kn = mode == 1 ? &kw : nullptr;
  auto write = [&](const bytes& rows_qkv, uint64_t m, const std::vector<int64_t>& cu, const std::vector<int64_t>& po,
                   const ferrum::Buffer& table, ferrum::Buffer& q_out, ferrum::Buffer& kp, ferrum::Buffer& vp) {
    ferrum::Buffer in = upload(ctx, dt, rows_qkv), bcu = upload_u32(ctx, cu), bpo = upload_u32(ctx, po);
    ctx.split_qkv_norm_rope_into_paged_cache_varlen({.qkv = in, .q_norm_w = qn, .k_norm_w = kn, .cos = &bcos, .sin = &bsin, .q_out = q_out, .cache_k = kp, .cache_v = vp, .cu_seqlens_q = bcu, .pos_offsets = bpo,
                                                     .block_tables = table, .num_seqs = po.size(), .m_total = m, .q_heads = qh, .kv_heads = kvh, .head_dim = hd, .eps = 1e-6f, .qk_mode = qk, .block_size = bs, .max_blocks_per_seq = mbps});
  };
  // One call: all sequences.
  std::vector<int64_t> cu = {0}, po;
  for (uint64_t s = 0; s < S; ++s) {
    cu.push_back(cu.back() + static_cast<int64_t>(lens[s]));
    po.push_back(static_cast<int64_t>(offs[s]));
  }
  ferrum::Buffer q_big = poisoned(ctx, dt, M * qh * hd), k_big = upload(ctx, dt, pool0), v_big = upload(ctx, dt, pool0);
  write(qkv, M, cu, po, bt, q_big, k_big, v_big);
  // The same work in pieces of at most 2 047 tokens: one-sequence calls over the piece's rows,
  // with the piece's sequence's table row as the whole table.
  ferrum::Buffer k_small = upload(ctx, dt, pool0), v_small = upload(ctx, dt, pool0);
  bytes q_small;
  const uint64_t es = ft::dtype_size(dt);
  for (uint64_t s = 0; s < S; ++s) {
    const ferrum::Buffer bt_row = upload_u32(ctx, std::vector<int64_t>(tables.begin() + s * mbps, tables.begin() + (s + 1) * mbps));
    for (uint64_t b = 0; b < lens[s]; b += 2047) {
      const uint64_t n = std::min<uint64_t>(2047, lens[s] - b), g0 = static_cast<uint64_t>(cu[s]) + b;
      ferrum::Buffer q_piece = poisoned(ctx, dt, n * qh * hd);
      write(bytes(qkv.begin() + g0 * W * es, qkv.begin() + (g0 + n) * W * es), n, {0, static_cast<int64_t>(n)},
            {static_cast<int64_t>(offs[s] + b)}, bt_row, q_piece, k_small, v_small);
      const bytes got = download(ctx, q_piece, dt, n * qh * hd);
      q_small.insert(q_small.end(), got.begin(), got.end());
    }
  }
  CHECK(download(ctx, q_big, dt, M * qh * hd) == q_small);
  CHECK(download(ctx, k_big, dt, pool_n) == download(ctx, k_small, dt, pool_n));
  CHECK(download(ctx, v_big, dt, pool_n) == download(ctx, v_small, dt, pool_n));
  CHECK(download(ctx, k_big, dt, pool_n) != pool0);  // the calls did write
}

TEST_CASE("paged ops: bad host fields are rejected before anything runs", "[cuda][paged]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = FERRUM_DTYPE_F16;
  ferrum::Context ctx = be->create_context({}, D(dt));
  PagedSetup p = paged_setup(dt, {20, 3}, 2, 9);
  ferrum::Buffer q = upload(ctx, dt, ft::encode(dt, p.q)), kp = upload(ctx, dt, ft::encode(dt, p.k)),
                 vp = upload(ctx, dt, ft::encode(dt, p.v));
  ferrum::Buffer bt = upload_u32(ctx, p.tables), bl = upload_u32(ctx, p.lens);
  ferrum::Buffer out = poisoned(ctx, dt, p.S * p.nh * p.D);
  auto expect = [&](ferrum::ErrorCode code, const char* field, auto&& f) {
    try {
      f();
      FAIL("the call succeeded");
    } catch (const ferrum::Error& e) {
      INFO(e.what());
      CHECK(e.code() == code);
      CHECK(contains(e.what(), field));
    }
  };
  expect(ferrum::ErrorCode::invalid_argument, "block_size", [&] {
    ctx.paged_batched_decode_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .valid_kv_lens = bl, .num_seqs = p.S, .max_kv_len = 20, .num_heads = p.nh, .num_kv_heads = p.nkv, .head_dim = p.D, .block_size = 0, .max_num_blocks_per_seq = 2, .scale = 0.0f, .sliding_window = 0});
  });
  // 48 has no CUDA kernel (valid on the CPU): pools and outputs sized for head_dim 48, so every
  // argument is valid and the only answer left is UNSUPPORTED naming head_dim.
  ferrum::Buffer q48 = ctx.alloc_typed(D(dt), p.S * 16 * 48), out48 = ctx.alloc_typed(D(dt), p.S * 16 * 48);
  ferrum::Buffer k48 = ctx.alloc_typed(D(dt), p.nblocks * p.bs * 4 * 48), v48 = ctx.alloc_typed(D(dt), p.nblocks * p.bs * 4 * 48);
  expect(ferrum::ErrorCode::unsupported, "head_dim", [&] {
    ctx.paged_batched_decode_attention({.q = q48, .k_pool = k48, .v_pool = v48, .out = out48, .block_tables = bt, .valid_kv_lens = bl, .num_seqs = p.S, .max_kv_len = 20, .num_heads = 16, .num_kv_heads = 4, .head_dim = 48, .block_size = p.bs, .max_num_blocks_per_seq = 2, .scale = 0.0f, .sliding_window = 0});
  });
  expect(ferrum::ErrorCode::invalid_argument, "num_heads", [&] {
    ctx.paged_batched_decode_attention({.q = q, .k_pool = kp, .v_pool = vp, .out = out, .block_tables = bt, .valid_kv_lens = bl, .num_seqs = p.S, .max_kv_len = 20, .num_heads = 6, .num_kv_heads = 4, .head_dim = p.D, .block_size = p.bs, .max_num_blocks_per_seq = 2, .scale = 0.0f, .sliding_window = 0});
  });
  expect(ferrum::ErrorCode::invalid_argument, "v_pool", [&] {  // a V pool smaller than one block
    ferrum::Buffer tiny = ctx.alloc_typed(D(dt), 100);
    ctx.paged_batched_decode_attention({.q = q, .k_pool = kp, .v_pool = tiny, .out = out, .block_tables = bt, .valid_kv_lens = bl, .num_seqs = p.S, .max_kv_len = 20, .num_heads = p.nh, .num_kv_heads = p.nkv, .head_dim = p.D, .block_size = p.bs, .max_num_blocks_per_seq = 2, .scale = 0.0f, .sliding_window = 0});
  });
  expect(ferrum::ErrorCode::invalid_argument, "q", [&] {  // (q_heads + 2·kv_heads)·head_dim wraps 64 bits
    ctx.split_qkv_norm_rope_into_paged_cache_varlen({.qkv = q, .q_norm_w = nullptr, .k_norm_w = nullptr, .cos = nullptr, .sin = nullptr, .q_out = out, .cache_k = kp, .cache_v = vp, .cu_seqlens_q = bl, .pos_offsets = bl, .block_tables = bt, .num_seqs = 1, .m_total = 1,
                                                    .q_heads = uint64_t{1} << 62, .kv_heads = 1, .head_dim = 64, .eps = 0.0f, .qk_mode = ferrum::QkMode::copy, .block_size = p.bs, .max_blocks_per_seq = 2});
  });
  ctx.sync();
  CHECK(ft::all_poison(dt, download(ctx, out, dt, p.S * p.nh * p.D), 0, p.S * p.nh * p.D));  // nothing ran
}

TEST_CASE("flash_attention with head_dim 32 (decode and prefill paths)", "[cuda][attention]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = GENERATE(FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16, FERRUM_DTYPE_F32);
  const auto [q_len, kv_len, causal, window] = GENERATE(table<uint64_t, uint64_t, uint32_t, uint64_t>(
      {{1, 3000, 1, 0}, {5, 77, 1, 0}, {130, 300, 1, 0}, {64, 64, 0, 0}, {100, 500, 1, 33}}));
  INFO(ft::dtype_name(dt) << " q_len " << q_len << " kv_len " << kv_len << " causal " << causal << " window " << window);
  ferrum::Context ctx = be->create_context({}, D(dt));
  const uint64_t B = 2, H = 8, nkv = 2, hd = 32, pos = kv_len - q_len;
  const std::vector<double> q = ft::normal_dtype(dt, B * H * q_len * hd, 0.0, 1.0, 41 + q_len);
  const std::vector<double> k = ft::normal_dtype(dt, B * nkv * kv_len * hd, 0.0, 1.0, 42 + kv_len);
  const std::vector<double> v = ft::normal_dtype(dt, B * nkv * kv_len * hd, 0.0, 1.0, 43 + kv_len);
  ferrum::Buffer dq = upload(ctx, dt, ft::encode(dt, q)), dk = upload(ctx, dt, ft::encode(dt, k)),
                 dv = upload(ctx, dt, ft::encode(dt, v));
  ferrum::Buffer out = poisoned(ctx, dt, q.size());
  ctx.flash_attention({.q = dq, .k = dk, .v = dv, .out = out, .batch = B, .q_len = q_len, .kv_len = kv_len, .pos_offset = pos, .num_heads = H, .num_kv_heads = nkv, .head_dim = hd, .causal = causal != 0, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = window});
  std::vector<double> ref;
  ferrum::ref::flash_attention(q, k, v, ref, B, q_len, kv_len, pos, H, nkv, hd, causal, 0.0f, 0, window);
  const ft::CompareResult r = ft::compare(ft::decode(dt, download(ctx, out, dt, q.size())), ref, dt, hd, 'F');
  INFO(r.message);
  CHECK(r.ok);
}

// MLA at DeepSeek's absorbed shape (R 512, P 64; f16 / bf16 run the tensor-core kernel, f32 the SIMT
// one): decode with 128 heads (few head groups, so the keys are split and merged), a causal prefill,
// a window, 65 heads (a second 64-head group of one head) over 33 keys (a partial tile), and one
// sequence of 32k keys; then a split-KV flash decode on the
// same context still matches its reference (the MLA partials follow the decode's arrival counters
// in the shared scratch and must leave them zero).
TEST_CASE("mla_attention: decode with split keys, causal prefill, window, the scratch's counters unharmed", "[cuda][attention][mla]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = GENERATE(FERRUM_DTYPE_BF16, FERRUM_DTYPE_F16, FERRUM_DTYPE_F32);
  const auto [B, H, q_len, kv_len, window] = GENERATE(table<uint64_t, uint64_t, uint64_t, uint64_t, uint64_t>(
      {{1, 128, 1, 4099, 0}, {2, 16, 40, 300, 0}, {1, 24, 7, 2000, 500}, {1, 65, 2, 33, 0}, {1, 64, 1, 32771, 0}}));
  INFO(ft::dtype_name(dt) << " batch " << B << " heads " << H << " q_len " << q_len << " kv_len " << kv_len << " window " << window);
  ferrum::Context ctx = be->create_context({}, D(dt));
  const uint64_t R = 512, P = 64, QD = R + P, S = kv_len + 3, pos = kv_len - q_len;
  const float scale = static_cast<float>(1.0 / std::sqrt(192.0));
  const std::vector<double> q = ft::normal_dtype(dt, B * H * q_len * QD, 0.0, 1.0, 91 + q_len);
  const std::vector<double> c = ft::normal_dtype(dt, B * S * R, 0.0, 1.0, 92 + kv_len);
  const std::vector<double> rp = ft::normal_dtype(dt, B * S * P, 0.0, 1.0, 93 + kv_len);
  ferrum::Buffer dq = upload(ctx, dt, ft::encode(dt, q)), dc = upload(ctx, dt, ft::encode(dt, c)),
                 dr = upload(ctx, dt, ft::encode(dt, rp));
  ferrum::Buffer out = poisoned(ctx, dt, B * H * q_len * R);
  ctx.mla_attention({.q = dq, .kv_compressed = dc, .kv_rope = dr, .out = out, .batch = B, .q_len = q_len, .kv_len = kv_len, .pos_offset = pos, .num_heads = H, .num_kv_heads = 1, .head_dim = QD, .causal = true, .scale = scale, .kv_seq_stride = S, .sliding_window = window, .kv_lora_rank = R, .qk_rope_head_dim = P});
  std::vector<double> ref;
  ferrum::ref::mla_attention(q, c, rp, ref, B, q_len, kv_len, pos, H, 1, QD, true, scale, S, window, R, P);
  const ft::CompareResult r = ft::compare(ft::decode(dt, download(ctx, out, dt, B * H * q_len * R)), ref, dt, R, 'F');
  INFO(r.message);
  CHECK(r.ok);
  // A split-KV flash decode after it, same context.
  const uint64_t fh = 8, fkv = 2, hd = 64, L = 5000;
  const std::vector<double> fq = ft::normal_dtype(dt, fh * hd, 0.0, 1.0, 94), fk = ft::normal_dtype(dt, fkv * L * hd, 0.0, 1.0, 95),
                            fv = ft::normal_dtype(dt, fkv * L * hd, 0.0, 1.0, 96);
  ferrum::Buffer dfq = upload(ctx, dt, ft::encode(dt, fq)), dfk = upload(ctx, dt, ft::encode(dt, fk)),
                 dfv = upload(ctx, dt, ft::encode(dt, fv));
  ferrum::Buffer fout = poisoned(ctx, dt, fh * hd);
  ctx.flash_attention({.q = dfq, .k = dfk, .v = dfv, .out = fout, .batch = 1, .q_len = 1, .kv_len = L, .pos_offset = L - 1, .num_heads = fh, .num_kv_heads = fkv, .head_dim = hd, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0});
  std::vector<double> fref;
  ferrum::ref::flash_attention(fq, fk, fv, fref, 1, 1, L, L - 1, fh, fkv, hd, true, 0.0f, 0, 0);
  const ft::CompareResult fr = ft::compare(ft::decode(dt, download(ctx, fout, dt, fh * hd)), fref, dt, hd, 'F');
  INFO(fr.message);
  CHECK(fr.ok);
}

// gguf_matmul above 8 rows runs on tensor cores: weight panels dequantised into the context's scratch
// (bounded at 64 MiB, so a weight of 64 KiB rows is split into 1024-row panels plus a remainder).
// The scratch block starts with the split-KV arrival counters, which the panels must not overwrite:
// a split-KV decode on the same context after the matmul still matches its reference.
TEST_CASE("gguf_matmul on tensor cores: every type, panels with a remainder, split-KV decode unharmed",
          "[cuda][gguf]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = GENERATE(FERRUM_DTYPE_BF16, FERRUM_DTYPE_F16, FERRUM_DTYPE_F32);
  ferrum::Context ctx = be->create_context({}, D(dt));
  // A split-KV decode (1 query, 3000 keys) before and after, on the same context.
  const uint64_t B = 1, H = 8, nkv = 2, hd = 64, kv_len = 3000;
  const std::vector<double> q = ft::normal_dtype(dt, B * H * hd, 0.0, 1.0, 7);
  const std::vector<double> k = ft::normal_dtype(dt, B * nkv * kv_len * hd, 0.0, 1.0, 8);
  const std::vector<double> v = ft::normal_dtype(dt, B * nkv * kv_len * hd, 0.0, 1.0, 9);
  ferrum::Buffer dq = upload(ctx, dt, ft::encode(dt, q)), dk = upload(ctx, dt, ft::encode(dt, k)),
                 dv = upload(ctx, dt, ft::encode(dt, v));
  std::vector<double> attn_ref;
  ferrum::ref::flash_attention(q, k, v, attn_ref, B, 1, kv_len, kv_len - 1, H, nkv, hd, true, 0.0f, 0, 0);
  const auto decode_ok = [&](const char* when) {
    ferrum::Buffer out = poisoned(ctx, dt, q.size());
    ctx.flash_attention({.q = dq, .k = dk, .v = dv, .out = out, .batch = B, .q_len = 1, .kv_len = kv_len,
                         .pos_offset = kv_len - 1, .num_heads = H, .num_kv_heads = nkv, .head_dim = hd,
                         .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0});
    const ft::CompareResult r = ft::compare(ft::decode(dt, download(ctx, out, dt, q.size())), attn_ref, dt, hd, 'F');
    INFO("split-KV decode " << when << ": " << r.message);
    CHECK(r.ok);
  };
  decode_ok("before gguf_matmul");
  struct Shape {
    uint64_t m, n_rows, n_cols;
  };
  // 8/9: the boundary of the matvec path; 17 and 64: tensor cores in one panel; the last shape
  // has 64 KiB bf16 rows, so its 1300 rows are one 1024-row panel plus a 276-row remainder.
  std::vector<Shape> shapes = {{9, 200, 512}, {17, 96, 1024}, {64, 300, 256}};
  if (dt != FERRUM_DTYPE_F32) shapes.push_back({9, 1300, 32768});
  for (const int32_t t : ft::gguf_types())
    for (const Shape& sh : shapes) {
      if (sh.n_cols % ft::gguf_qk(t)) continue;
      if (sh.n_rows > 1000 && t != ft::kQ4_K && t != ft::kQ8_0) continue;  // the panel split once per scale layout
      INFO(ft::dtype_name(dt) << " " << ft::gguf_type_name(t) << " m " << sh.m << " n_rows " << sh.n_rows << " n_cols "
                              << sh.n_cols);
      const std::vector<uint8_t> wb = ft::random_gguf(t, sh.n_rows, sh.n_cols, 100 + t + sh.m);
      ferrum::QWeight w = ctx.load_quant({.quant_type = t, .bytes = wb, .n_rows = sh.n_rows, .n_cols = sh.n_cols});
      const std::vector<double> a = ft::normal_dtype(dt, sh.m * sh.n_cols, 0.0, 1.0, 200 + t);
      ferrum::Buffer da = upload(ctx, dt, ft::encode(dt, a));
      ferrum::Buffer out = poisoned(ctx, dt, sh.m * sh.n_rows);
      ctx.gguf_matmul({.a = da, .weight = w, .out = out, .m = sh.m});
      std::vector<double> ref;
      ferrum::ref::gguf_matmul(a, ferrum::ref::gguf_dequantize(t, wb, sh.n_rows, sh.n_cols), ref, sh.m, sh.n_rows,
                               sh.n_cols);
      const ft::CompareResult r =
          ft::compare(ft::decode(dt, download(ctx, out, dt, sh.m * sh.n_rows)), ref, dt, sh.n_rows, 'F');
      INFO(r.message);
      CHECK(r.ok);
    }
  decode_ok("after gguf_matmul");
}

// marlin_gemm: m <= 8 runs the split-K matvec (exact weights; many splits on a wide n), larger m the
// tensor-core panels (64 MiB of dequantised columns: with k = 16384 in BF16 that is 2048 columns, so
// n = 2112 leaves a 64-column remainder panel). Act-order on one shape (the activations are gathered
// into the padded group order). Results within class F of the float64 product (for the panels, of
// the weights rounded to the activation dtype, which docs/spec.md §12.2 permits there).
TEST_CASE("marlin_gemm: split-K matvec and tensor-core panels with a remainder", "[cuda][gptq]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = GENERATE(FERRUM_DTYPE_BF16, FERRUM_DTYPE_F16);
  ferrum::Context ctx = be->create_context({}, D(dt));
  struct Shape {
    uint64_t m, k, n, group;
    bool act_order;
  };
  for (const Shape& sh : {Shape{1, 1024, 8192, 128, false}, Shape{8, 2048, 520, 32, true}, Shape{9, 16384, 2112, 128, false},
                          Shape{33, 1024, 264, 64, true}}) {
    INFO(ft::dtype_name(dt) << " m " << sh.m << " k " << sh.k << " n " << sh.n << " g " << sh.group
                            << (sh.act_order ? " act-order" : ""));
    const ft::GptqTensors t = ft::random_gptq(sh.k, sh.n, sh.group, true, sh.act_order, FERRUM_DTYPE_F16, 900 + sh.m);
    ferrum::QWeight w = ctx.load_gptq({.qweight = t.qweight.data(), .scales = t.scales_bytes.data(), .qzeros = t.qzeros_ptr(),
                                       .g_idx = t.g_idx_ptr(), .bits = 4, .group_size = sh.group, .k = sh.k, .n = sh.n,
                                       .scales_dtype = ferrum::Dtype::f16, .act_dtype = D(dt)});
    const std::vector<double> x = ft::normal_dtype(dt, sh.m * sh.k, 0.0, 1.0, 910 + sh.m);
    ferrum::Buffer dx = upload(ctx, dt, ft::encode(dt, x));
    ferrum::Buffer out = poisoned(ctx, dt, sh.m * sh.n);
    ctx.marlin_gemm({.a = dx, .weight = w, .out = out, .m = sh.m});
    const std::vector<double> got = ft::decode(dt, download(ctx, out, dt, sh.m * sh.n));
    std::vector<double> wv = ferrum::ref::gptq_dequantize(t, dt);
    if (sh.m > 8) wv = ft::round_to(dt, wv);
    std::vector<double> ref;
    ferrum::ref::gptq_matmul(x, wv, ref, sh.m, sh.k, sh.n);
    const ft::CompareResult r = ft::compare(got, ref, dt, sh.n, 'F');
    INFO(r.message);
    CHECK(r.ok);
  }
}

// The append at hd 128 (the lane-group kernel, quotients from one reciprocal per row with a
// correction step that makes them the division's): codes and scales must equal the §7.2 recipe bit for bit, also on
// exact ties of the code (s a power of two, x a half-integer or e4m3 midpoint times s) and on
// values a few ulps to 2^-7 away from them, next to rows of normal data at three scales and
// tiny rows (the 1e-8 scale floor, ±0, subnormal inputs).
TEST_CASE("int8 / fp8 append at hd 128: codes and scales are the recipe's on ties and near-ties", "[cuda][paged]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const bool fp8 = GENERATE(false, true);
  const int32_t dt = GENERATE(FERRUM_DTYPE_BF16, FERRUM_DTYPE_F16, FERRUM_DTYPE_F32);
  INFO((fp8 ? "fp8 " : "int8 ") << ft::dtype_name(dt));
  ferrum::Context ctx = be->create_context({}, D(dt));
  const uint64_t N = 8, bs = 16, nkv = 2, hd = 128, tokens = 48, before = 5;
  const ferrum::ref::KvQuant kind = fp8 ? ferrum::ref::KvQuant::fp8 : ferrum::ref::KvQuant::int8;
  const int32_t code_dt = fp8 ? FERRUM_DTYPE_F8_E4M3 : FERRUM_DTYPE_I8;
  // Rounding boundaries of the code in units of s: half-integers (int8) or midpoints of
  // consecutive non-negative e4m3 values below 448 (fp8).
  std::vector<double> steps;
  if (fp8) {
    for (uint8_t b = 0; b < 0x7e; ++b)
      steps.push_back((ft::f8e4m3_bits_to_double(b) + ft::f8e4m3_bits_to_double(static_cast<uint8_t>(b + 1))) / 2);
  } else {
    for (int j = 0; j < 127; ++j) steps.push_back(j + 0.5);
  }
  const double s = fp8 ? 1.0 / 16 : 1.0 / 8, a = (fp8 ? 448.0 : 127.0) * s;  // s = a / Q exactly
  const double rel[] = {0.0, 0x1p-7, -0x1p-9, 0x1p-12, -0x1p-12, 0x1p-20, -0x1p-20, 0x1p-9};
  std::vector<double> in[2];
  for (int kv = 0; kv < 2; ++kv) {
    for (uint64_t v = 0; v < tokens * nkv; ++v) {
      std::vector<double> x;
      if (v % 3 != 2) {  // near-tie row: ±a first, then boundaries · s · (1 + rel)
        x.push_back(((v + kv) & 1) ? -a : a);
        for (uint64_t d = 1; d < hd; ++d) {
          const double m = steps[(d * 7 + v * 13 + kv) % steps.size()] * s * (1.0 + rel[(d + v + kv) % 8]);
          x.push_back(ft::round_to(dt, (d + v) % 5 == 0 ? -m : m));
        }
      } else if (v % 9 == 8) {  // a tiny row: the scale's 1e-8 floor, signed zeros, subnormals
        const double tiny[] = {1e-8, -0.0, 0.0, -1e-40, 1e-40, 1e-30, -2e-12, 5e-9, -7.5e-9, 3e-38};
        for (uint64_t d = 0; d < hd; ++d) x.push_back(ft::round_to(dt, tiny[(d * 3 + v) % 10] * (1.0 + 0x1p-9 * (d % 7))));
      } else {  // normal data at 1e-3, 1 and 100
        const double sd = v % 9 == 2 ? 1e-3 : (v % 9 == 5 ? 1.0 : 100.0);
        x = ft::normal_dtype(dt, hd, 0.0, sd, 70 + v + 1000 * kv);
      }
      in[kv].insert(in[kv].end(), x.begin(), x.end());
    }
  }
  ferrum::KvCacheQuant c = fp8 ? ctx.alloc_paged_fp8_layer({.max_blocks_per_seq = N, .block_size = bs, .num_kv_heads = nkv, .head_dim = hd}) : ctx.alloc_paged_int8_layer({.max_blocks_per_seq = N, .block_size = bs, .num_kv_heads = nkv, .head_dim = hd});
  const std::vector<uint32_t> perm = ft::random_permutation(static_cast<uint32_t>(N), 71);
  ferrum::Buffer dk = upload(ctx, dt, ft::encode(dt, in[0])), dv = upload(ctx, dt, ft::encode(dt, in[1]));
  if (fp8)
    ctx.fp8_kv_append_paged({.k_in = dk, .v_in = dv, .layer_k = c.k, .layer_v = c.v, .layer_k_scales = c.k_scales, .layer_v_scales = c.v_scales, .paged_block_indices = perm, .cache_len_before = before, .tokens = tokens, .block_size = bs, .num_kv_heads = nkv, .head_dim = hd});
  else
    ctx.int8_kv_append_paged({.k_in = dk, .v_in = dv, .layer_k = c.k, .layer_v = c.v, .layer_k_scales = c.k_scales, .layer_v_scales = c.v_scales, .paged_block_indices = perm, .cache_len_before = before, .tokens = tokens, .block_size = bs, .num_kv_heads = nkv, .head_dim = hd});
  const uint64_t codes = N * bs * nkv * hd, scales = N * bs * nkv;
  std::vector<double> rk(codes, 0.0), rv(codes, 0.0), rks(scales, 0.0), rvs(scales, 0.0);
  ferrum::ref::quant_kv_append_paged(kind, in[0], in[1], rk, rv, rks, rvs, perm, before, tokens, bs, nkv, hd);
  CHECK(download(ctx, c.k, code_dt, codes) == ft::encode(code_dt, rk));
  CHECK(download(ctx, c.v, code_dt, codes) == ft::encode(code_dt, rv));
  CHECK(download(ctx, c.k_scales, FERRUM_DTYPE_F32, scales) == ft::encode(FERRUM_DTYPE_F32, rks));
  CHECK(download(ctx, c.v_scales, FERRUM_DTYPE_F32, scales) == ft::encode(FERRUM_DTYPE_F32, rvs));
}

TEST_CASE("int8 / fp8 paged KV: append, eager decode and a captured decode agree bitwise", "[cuda][paged][graph]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const bool fp8 = GENERATE(false, true);
  const int32_t dt = GENERATE(FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16);
  INFO((fp8 ? "fp8 " : "int8 ") << ft::dtype_name(dt));
  ferrum::Context ctx = be->create_context({}, D(dt));
  const uint64_t N = 300, bs = 16, nkv = 2, nq = 8, hd = 128, tokens = 3001;
  ferrum::KvCacheQuant c = fp8 ? ctx.alloc_paged_fp8_layer({.max_blocks_per_seq = N, .block_size = bs, .num_kv_heads = nkv, .head_dim = hd}) : ctx.alloc_paged_int8_layer({.max_blocks_per_seq = N, .block_size = bs, .num_kv_heads = nkv, .head_dim = hd});
  // A permuted block list; one append of the whole prefix.
  const std::vector<uint32_t> perm = ft::random_permutation(static_cast<uint32_t>(N), 61);
  const std::vector<double> kin = ft::normal_dtype(dt, tokens * nkv * hd, 0.0, 1.0, 62);
  const std::vector<double> vin = ft::normal_dtype(dt, tokens * nkv * hd, 0.0, 1.0, 63);
  ferrum::Buffer dk = upload(ctx, dt, ft::encode(dt, kin)), dv = upload(ctx, dt, ft::encode(dt, vin));
  auto append = [&](const ferrum::Buffer& k, const ferrum::Buffer& v, uint64_t before, uint64_t n) {
    if (fp8)
      ctx.fp8_kv_append_paged({.k_in = k, .v_in = v, .layer_k = c.k, .layer_v = c.v, .layer_k_scales = c.k_scales, .layer_v_scales = c.v_scales, .paged_block_indices = perm, .cache_len_before = before, .tokens = n, .block_size = bs, .num_kv_heads = nkv, .head_dim = hd});
    else
      ctx.int8_kv_append_paged({.k_in = k, .v_in = v, .layer_k = c.k, .layer_v = c.v, .layer_k_scales = c.k_scales, .layer_v_scales = c.v_scales, .paged_block_indices = perm, .cache_len_before = before, .tokens = n, .block_size = bs, .num_kv_heads = nkv, .head_dim = hd});
  };
  append(dk, dv, 0, tokens);
  std::vector<int64_t> table(perm.begin(), perm.end());
  ferrum::Buffer bt = upload_u32(ctx, table);
  const std::vector<double> q = ft::normal_dtype(dt, nq * hd, 0.0, 1.0, 64);
  ferrum::Buffer dq = upload(ctx, dt, ft::encode(dt, q));
  ferrum::Buffer out1 = poisoned(ctx, dt, nq * hd), out2 = poisoned(ctx, dt, nq * hd);
  auto decode = [&](ferrum::Buffer& out) {
    if (fp8)
      ctx.fp8_paged_decode_attention({.q = dq, .layer_k = c.k, .layer_v = c.v, .layer_k_scales = c.k_scales, .layer_v_scales = c.v_scales, .block_table = bt, .output = out, .num_q_heads = nq, .num_kv_heads = nkv, .head_dim = hd, .valid_kv_len = tokens, .block_size = bs, .scale = 0.0f, .sliding_window = 0});
    else
      ctx.int8_paged_decode_attention({.q = dq, .layer_k = c.k, .layer_v = c.v, .layer_k_scales = c.k_scales, .layer_v_scales = c.v_scales, .block_table = bt, .output = out, .num_q_heads = nq, .num_kv_heads = nkv, .head_dim = hd, .valid_kv_len = tokens, .block_size = bs, .scale = 0.0f, .sliding_window = 0});
  };
  decode(out1);
  ctx.begin_graph_capture();
  decode(out2);
  ctx.end_graph_capture(902);
  CHECK(ctx.replay_graph(902) == 1);
  ctx.sync();
  const bytes a = download(ctx, out1, dt, nq * hd), b = download(ctx, out2, dt, nq * hd);
  CHECK(a == b);
  CHECK(ft::all_written(dt, a, 0, nq * hd));
}

int main(int argc, char* argv[]) {
  const int rc = Catch::Session().run(argc, argv);
  // Every executed test skipped or passed, and at least one skipped: report "skipped" to CTest.
  if (rc == 0 && g_skipped) return 77;
  return rc;
}

TEST_CASE("extension ferrum.cuda.stream gives each context's own live stream", "[cuda][extension]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const auto* ext = be->extension_as<ferrum_cuda_stream_ext>(FERRUM_CUDA_STREAM_EXT_ID, FERRUM_CUDA_STREAM_EXT_VERSION);
  REQUIRE(ext != nullptr);
  CHECK(ext->ext.version >= 1);
  REQUIRE(ext->get_stream != nullptr);
  CHECK(be->extension(FERRUM_CUDA_STREAM_EXT_ID, FERRUM_CUDA_STREAM_EXT_VERSION + 1) == nullptr);
  CHECK(be->extension("ferrum.cuda.no-such-extension") == nullptr);
  ferrum::Context a = be->create_context({}, ferrum::Dtype::bf16);
  ferrum::Context b = be->create_context({}, ferrum::Dtype::bf16);
  void* sa = nullptr;
  void* sa2 = nullptr;
  void* sb = nullptr;
  REQUIRE(ext->get_stream(a.get(), &sa) == FERRUM_STATUS_OK);
  REQUIRE(ext->get_stream(a.get(), &sa2) == FERRUM_STATUS_OK);
  REQUIRE(ext->get_stream(b.get(), &sb) == FERRUM_STATUS_OK);
  CHECK(sa != nullptr);
  CHECK(sa == sa2);  // the context's one stream
  CHECK(sa != sb);   // contexts do not share streams
  // A real stream of this process: work enqueued on it by the host is ordered after the context's
  // ops (a gemm), and a host-side wait on it returns once both are done.
  const uint64_t n = 256;
  const std::vector<double> x = ft::normal_dtype(FERRUM_DTYPE_BF16, n * n, 0.0, 1.0, 77);
  ferrum::Buffer dx = upload(a, FERRUM_DTYPE_BF16, ft::encode(FERRUM_DTYPE_BF16, x));
  ferrum::Buffer dy = a.alloc_typed(ferrum::Dtype::bf16, n * n);
  a.gemm({.a = dx, .b = dx, .out = dy, .m = n, .n = n, .k = n});
  cudaEvent_t ev = nullptr;
  REQUIRE(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) == cudaSuccess);
  CHECK(cudaEventRecord(ev, static_cast<cudaStream_t>(sa)) == cudaSuccess);
  CHECK(cudaEventSynchronize(ev) == cudaSuccess);
  CHECK(cudaStreamQuery(static_cast<cudaStream_t>(sa)) == cudaSuccess);
  CHECK(cudaEventDestroy(ev) == cudaSuccess);
  // Errors name the argument; nothing is written on failure.
  int marker = 0;
  void* untouched = &marker;
  CHECK(ext->get_stream(nullptr, &untouched) == FERRUM_STATUS_INVALID_ARGUMENT);
  CHECK(untouched == &marker);
  CHECK(ext->get_stream(a.get(), nullptr) == FERRUM_STATUS_INVALID_ARGUMENT);
}

// ---- ABI 1.1: events, external memory, external streams (docs/spec.md §2.1, §2.2) ------------

namespace {

uint64_t addr_of(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }

struct ExtRelease {
  int calls = 0;
};
extern "C" void ext_release_count(void* user) { ++static_cast<ExtRelease*>(user)->calls; }

// Enqueues ~20 large F32 gemms on ctx (tens of milliseconds of device work on any current GPU):
// the queue is then busy long after the host returns, so later work of another context that is
// not ordered after it would read stale data.
void enqueue_long_work(ferrum::Context& ctx, ferrum::Buffer& big, ferrum::Buffer& scratch, uint64_t n) {
  for (int i = 0; i < 20; ++i) ctx.gemm({.a = big, .b = big, .out = scratch, .m = n, .n = n, .k = n});
}

}  // namespace

TEST_CASE("events order two contexts without a host sync", "[cuda][events]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  ferrum::Context a = be->create_context({}, ferrum::Dtype::f32);
  ferrum::Context b = be->create_context({}, ferrum::Dtype::f32);
  const uint64_t big_n = 4096, n = 1 << 16;
  ferrum::Buffer big = upload(a, FERRUM_DTYPE_F32, ft::encode(FERRUM_DTYPE_F32, ft::normal_dtype(FERRUM_DTYPE_F32, big_n * big_n, 0.0, 1.0, 3101)));
  ferrum::Buffer scratch = a.alloc_typed(ferrum::Dtype::f32, big_n * big_n);
  const std::vector<double> x = ft::normal_dtype(FERRUM_DTYPE_F32, n, 0.0, 1.0, 3102);
  ferrum::Buffer xb = upload(a, FERRUM_DTYPE_F32, ft::encode(FERRUM_DTYPE_F32, x));
  ferrum::Buffer out = poisoned(a, FERRUM_DTYPE_F32, n);
  ferrum::Buffer out_b = poisoned(b, FERRUM_DTYPE_F32, n);
  a.sync();
  b.sync();
  ferrum::Event ev = b.event_create();  // made on B, recorded on A: same device
  for (int round = 0; round < 2; ++round) {
    enqueue_long_work(a, big, scratch, big_n);
    a.copy_slice({.src = xb, .src_offset = 0, .dst = out, .dst_offset = 0, .len = n});  // after the long work
    a.event_record(ev);
    b.event_wait(ev);  // no host sync between A's work and B's read
    b.copy_slice({.src = out, .src_offset = 0, .dst = out_b, .dst_offset = 0, .len = n});
    const bytes got = download(b, out_b, FERRUM_DTYPE_F32, n);
    CHECK(got == ft::encode(FERRUM_DTYPE_F32, x));
    b.event_synchronize(ev);
    CHECK(b.event_query(ev) == 1u);
    // Poison again for the second round (ordered on B, then A waits for B before reusing `out`).
    const bytes p = ft::poison_bytes(FERRUM_DTYPE_F32, n);
    b.write_typed({.dst = out_b, .dtype = ferrum::Dtype::f32, .data = p.data(), .data_len = n});
    b.write_typed({.dst = out, .dtype = ferrum::Dtype::f32, .data = p.data(), .data_len = n});
    b.sync();
  }
  // A never-recorded event: complete; waiting on it is a no-op.
  ferrum::Event fresh = a.event_create();
  CHECK(a.event_query(fresh) == 1u);
  b.event_wait(fresh);
  b.event_synchronize(fresh);
  // Released while pending: allowed; the wait already enqueued keeps its ordering.
  enqueue_long_work(a, big, scratch, big_n);
  a.copy_slice({.src = xb, .src_offset = 0, .dst = out, .dst_offset = 0, .len = n});
  a.event_record(fresh);
  b.event_wait(fresh);
  fresh.reset();
  b.copy_slice({.src = out, .src_offset = 0, .dst = out_b, .dst_offset = 0, .len = n});
  CHECK(download(b, out_b, FERRUM_DTYPE_F32, n) == ft::encode(FERRUM_DTYPE_F32, x));
  // An event outlives its context.
  ferrum::Event kept;
  {
    ferrum::Context c = be->create_context({}, ferrum::Dtype::f32);
    kept = c.event_create();
    c.event_record(kept);
  }
  b.event_wait(kept);
  b.event_synchronize(kept);
  // event_synchronize / event_query are refused during a capture on the calling context.
  a.begin_graph_capture();
  a.copy_slice({.src = xb, .src_offset = 0, .dst = out, .dst_offset = 0, .len = n});
  try {
    a.event_synchronize(kept);
    FAIL("event_synchronize during a capture should have thrown");
  } catch (const ferrum::Error& e) {
    CHECK(e.code() == ferrum::ErrorCode::invalid_argument);
    CHECK(contains(e.what(), "capturable"));
  }
  a.end_graph_capture(3101);
  a.reset_graph(3101);
}

TEST_CASE("event record and wait inside a graph capture are replayed", "[cuda][events][graph]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  ferrum::Context a = be->create_context({}, ferrum::Dtype::f32);
  ferrum::Context b = be->create_context({}, ferrum::Dtype::f32);
  const uint64_t big_n = 4096, n = 4096;
  ferrum::Buffer big = upload(a, FERRUM_DTYPE_F32, ft::encode(FERRUM_DTYPE_F32, ft::normal_dtype(FERRUM_DTYPE_F32, big_n * big_n, 0.0, 1.0, 3201)));
  ferrum::Buffer scratch = a.alloc_typed(ferrum::Dtype::f32, big_n * big_n);
  ferrum::Buffer xb = a.alloc_typed(ferrum::Dtype::f32, n);
  ferrum::Buffer out = poisoned(a, FERRUM_DTYPE_F32, n);
  ferrum::Buffer out_b = poisoned(b, FERRUM_DTYPE_F32, n);
  a.sync();
  b.sync();
  ferrum::Event ev = a.event_create();
  a.begin_graph_capture();
  enqueue_long_work(a, big, scratch, big_n);
  a.copy_slice({.src = xb, .src_offset = 0, .dst = out, .dst_offset = 0, .len = n});
  a.event_record(ev);  // captured as an external event record node
  a.end_graph_capture(3202);
  for (int rep = 0; rep < 2; ++rep) {
    const std::vector<double> x = ft::normal_dtype(FERRUM_DTYPE_F32, n, 0.0, 1.0, 3203 + rep);
    const bytes xe = ft::encode(FERRUM_DTYPE_F32, x);
    a.write_typed({.dst = xb, .dtype = ferrum::Dtype::f32, .data = xe.data(), .data_len = n});
    REQUIRE(a.replay_graph(3202) == 1u);
    b.event_wait(ev);  // waits for the replay's record
    b.copy_slice({.src = out, .src_offset = 0, .dst = out_b, .dst_offset = 0, .len = n});
    CHECK(download(b, out_b, FERRUM_DTYPE_F32, n) == xe);
    a.sync();
  }
}

TEST_CASE("wrap_external: cudaMalloc memory used by a gemm in place, released once", "[cuda][external]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  ferrum::Context ctx = be->create_context({}, ferrum::Dtype::f16);
  const int32_t dt = FERRUM_DTYPE_F16;
  const uint64_t m = 37, n = 64, k = 96;
  const std::vector<double> av = ft::normal_dtype(dt, m * k, 0.0, 1.0, 3301), bv = ft::normal_dtype(dt, n * k, 0.0, 1.0, 3302);
  const bytes ae = ft::encode(dt, av), bev = ft::encode(dt, bv);
  void *da = nullptr, *db = nullptr, *dout = nullptr;
  REQUIRE(cudaMalloc(&da, ae.size()) == cudaSuccess);
  REQUIRE(cudaMalloc(&db, bev.size()) == cudaSuccess);
  REQUIRE(cudaMalloc(&dout, m * n * 2) == cudaSuccess);
  REQUIRE(cudaMemcpy(da, ae.data(), ae.size(), cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(db, bev.data(), bev.size(), cudaMemcpyHostToDevice) == cudaSuccess);
  const bytes poison = ft::poison_bytes(dt, m * n);
  REQUIRE(cudaMemcpy(dout, poison.data(), poison.size(), cudaMemcpyHostToDevice) == cudaSuccess);
  ExtRelease rel;
  {
    auto wrap = [&](void* p, uint64_t count) {
      return ctx.wrap_external({.address = addr_of(p), .dtype = ferrum::Dtype::f16, .count = count,
                                .device_ordinal = ctx.device(), .release_fn = ext_release_count, .release_user_data = &rel});
    };
    ferrum::Buffer wa = wrap(da, m * k), wb = wrap(db, n * k), wout = wrap(dout, m * n);
    CHECK(wa.device_address().address == addr_of(da));
    ctx.gemm({.a = wa, .b = wb, .out = wout, .m = m, .n = n, .k = k});
    ctx.sync();
    bytes got(m * n * 2);
    REQUIRE(cudaMemcpy(got.data(), dout, got.size(), cudaMemcpyDeviceToHost) == cudaSuccess);  // the host's own copy
    std::vector<double> ref;
    ferrum::ref::gemm(av, bv, ref, m, n, k);
    const ft::CompareResult r = ft::compare(ft::decode(dt, got), ref, dt, n, 'F');
    INFO(r.message);
    CHECK(r.ok);
    CHECK(rel.calls == 0);
  }
  CHECK(rel.calls == 3);  // once per wrapped buffer, at its release
  // The host still owns the memory: it is intact and the host frees it.
  bytes again(ae.size());
  REQUIRE(cudaMemcpy(again.data(), da, again.size(), cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(again == ae);
  // An exported address of a ferrum buffer is device memory of the context's device.
  ferrum::Buffer own = ctx.alloc_typed(ferrum::Dtype::f16, 16);
  const ferrum::Buffer::DeviceAddress oa = own.device_address();
  cudaPointerAttributes attr{};
  REQUIRE(cudaPointerGetAttributes(&attr, reinterpret_cast<void*>(static_cast<uintptr_t>(oa.address))) == cudaSuccess);
  CHECK(attr.type == cudaMemoryTypeDevice);
  CHECK(static_cast<uint64_t>(attr.device) == oa.device);
  // Host memory (pageable or page-locked), misalignment and a foreign device are refused, naming the argument.
  std::vector<uint16_t> pageable(8);
  void* pinned = nullptr;
  REQUIRE(cudaMallocHost(&pinned, 64) == cudaSuccess);
  for (void* host : {static_cast<void*>(pageable.data()), pinned}) {
    try {
      (void)ctx.wrap_external({.address = addr_of(host), .dtype = ferrum::Dtype::f16, .count = 8, .device_ordinal = ctx.device(),
                               .release_fn = ext_release_count, .release_user_data = &rel});
      FAIL("wrapping host memory should have thrown");
    } catch (const ferrum::Error& e) {
      CHECK(e.code() == ferrum::ErrorCode::invalid_argument);
      CHECK(contains(e.what(), "argument 'address'"));
      CHECK(contains(e.what(), "host memory"));
    }
  }
  // More elements than the allocation holds behind the address (da holds m·k f16 values).
  for (const uint64_t skip : {uint64_t{0}, m * k - 4}) {
    try {
      (void)ctx.wrap_external({.address = addr_of(da) + 2 * skip, .dtype = ferrum::Dtype::f16, .count = m * k - skip + 4096,
                               .device_ordinal = ctx.device(), .release_fn = ext_release_count, .release_user_data = &rel});
      FAIL("a count past the end of the allocation should have thrown");
    } catch (const ferrum::Error& e) {
      CHECK(e.code() == ferrum::ErrorCode::invalid_argument);
      CHECK(contains(e.what(), "argument 'count'"));
      CHECK(contains(e.what(), "the allocation holding 'address'"));
    }
  }
  try {
    (void)ctx.wrap_external({.address = addr_of(da) + 1, .dtype = ferrum::Dtype::f16, .count = 8, .device_ordinal = ctx.device()});
    FAIL("a misaligned address should have thrown");
  } catch (const ferrum::Error& e) {
    CHECK(e.code() == ferrum::ErrorCode::invalid_argument);
    CHECK(contains(e.what(), "aligned to 2 bytes"));
  }
  try {
    (void)ctx.wrap_external({.address = addr_of(da), .dtype = ferrum::Dtype::f16, .count = 8, .device_ordinal = be->device_count()});
    FAIL("a device ordinal past the device count should have thrown");
  } catch (const ferrum::Error& e) {
    CHECK(e.code() == ferrum::ErrorCode::invalid_argument);
    CHECK(contains(e.what(), "argument 'device_ordinal'"));
  }
  CHECK(rel.calls == 3);  // refused wraps call nothing
  CHECK(cudaFreeHost(pinned) == cudaSuccess);
  CHECK(cudaFree(da) == cudaSuccess);
  CHECK(cudaFree(db) == cudaSuccess);
  CHECK(cudaFree(dout) == cudaSuccess);
}

TEST_CASE("a context on a host cudaStream_t interleaves with the host's copies in stream order", "[cuda][external][stream]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  const uint64_t n = 1 << 20;
  const std::vector<double> x = ft::normal_dtype(FERRUM_DTYPE_F32, n, 0.0, 1.0, 3401);
  const bytes xe = ft::encode(FERRUM_DTYPE_F32, x);
  void* pinned = nullptr;
  REQUIRE(cudaMallocHost(&pinned, xe.size()) == cudaSuccess);
  __builtin_memcpy(pinned, xe.data(), xe.size());
  void* dev = nullptr;
  REQUIRE(cudaMalloc(&dev, xe.size()) == cudaSuccess);
  {
    ferrum::Context ctx = be->create_context_on_stream(addr_of(s), {}, ferrum::Dtype::f32);
    const auto* ext = be->extension_as<ferrum_cuda_stream_ext>(FERRUM_CUDA_STREAM_EXT_ID, FERRUM_CUDA_STREAM_EXT_VERSION);
    REQUIRE(ext != nullptr);
    void* got_stream = nullptr;
    REQUIRE(ext->get_stream(ctx.get(), &got_stream) == FERRUM_STATUS_OK);
    CHECK(got_stream == static_cast<void*>(s));  // the host's stream, not a new one
    ferrum::Buffer w = ctx.wrap_external({.address = addr_of(dev), .dtype = ferrum::Dtype::f32, .count = n, .device_ordinal = ctx.device()});
    ferrum::Buffer out = poisoned(ctx, FERRUM_DTYPE_F32, n);
    // Host copy then ferrum op on the same stream, no sync between: the op sees the copy.
    REQUIRE(cudaMemcpyAsync(dev, pinned, xe.size(), cudaMemcpyHostToDevice, s) == cudaSuccess);
    ctx.copy_slice({.src = w, .src_offset = 0, .dst = out, .dst_offset = 0, .len = n});
    CHECK(download(ctx, out, FERRUM_DTYPE_F32, n) == xe);
    // Ferrum op then host copy on the same stream: the host copy sees the op's result.
    ferrum::Buffer y = ctx.from_slice_typed(ferrum::Dtype::f32, xe.data(), n);
    ctx.add_inplace(y, w, n);  // y = 2x, exact in f32
    bytes back(xe.size());
    REQUIRE(cudaMemcpyAsync(pinned, reinterpret_cast<void*>(static_cast<uintptr_t>(y.device_address().address)), xe.size(),
                            cudaMemcpyDeviceToHost, s) == cudaSuccess);
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    __builtin_memcpy(back.data(), pinned, back.size());
    std::vector<double> twice(n);
    for (uint64_t i = 0; i < n; ++i) twice[i] = 2.0 * x[i];
    CHECK(back == ft::encode(FERRUM_DTYPE_F32, twice));
  }
  // context_destroy left the host's stream alive.
  CHECK(cudaStreamQuery(s) == cudaSuccess);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
  CHECK(cudaFree(dev) == cudaSuccess);
  CHECK(cudaFreeHost(pinned) == cudaSuccess);
}

// ---- collectives over NCCL (docs/spec.md §10) ------------------------------------------------------

namespace {

// Small integers: exact in F32 / F16 / BF16, so sums of a few of them are exact in any order.
bytes small_ints(int32_t dt, uint64_t n, uint64_t seed) {
  std::vector<double> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = static_cast<double>(static_cast<int>((i * 7 + seed * 13) % 17) - 8);
  return ft::encode(dt, v);
}

// The comm_unique_id of `ctx`, or nullopt after a visible skip when NCCL cannot be loaded here.
std::optional<std::vector<uint8_t>> nccl_id(ferrum::Context& ctx) {
  try {
    return ctx.comm_unique_id();
  } catch (const ferrum::Error& e) {
    REQUIRE(e.code() == ferrum::ErrorCode::unsupported);
    WARN("SKIPPED: NCCL unavailable: " << e.what());
    std::printf("cuda collective tests SKIPPED: %s\n", e.what());
    return std::nullopt;
  }
}

}  // namespace

// One rank through NCCL: every op is the identity (all_gather a copy) on real communicators,
// eager and captured in a graph; the refused calls name their argument.
TEST_CASE("collectives over NCCL: a world of one rank, eager and in a graph, refused calls", "[cuda][collective]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = GENERATE(FERRUM_DTYPE_F32, FERRUM_DTYPE_F16, FERRUM_DTYPE_BF16);
  INFO(ft::dtype_name(dt));
  ferrum::Context ctx = be->create_context({}, D(dt));
  CHECK(ctx.world_size() == 1);  // no communicator yet: a world of one
  const auto id = nccl_id(ctx);
  if (!id) return;
  REQUIRE(id->size() == FERRUM_COMM_UNIQUE_ID_BYTES);
  ctx.comm_init({.unique_id = id->data(), .world_size = 1, .rank = 0});
  CHECK(ctx.world_size() == 1);
  CHECK(ctx.rank() == 0);
  const uint64_t n = 3001;
  const bytes x = small_ints(dt, n, 5);
  for (int32_t op : {FERRUM_REDUCE_SUM, FERRUM_REDUCE_MAX, FERRUM_REDUCE_MIN}) {
    ferrum::Buffer b = upload(ctx, dt, x);
    ctx.all_reduce(b, n, op);
    CHECK(download(ctx, b, dt, n) == x);
  }
  ferrum::Buffer local = upload(ctx, dt, x), global = poisoned(ctx, dt, n + 5);
  ctx.all_gather(local, global, n);
  bytes g = download(ctx, global, dt, n + 5);
  CHECK(bytes(g.begin(), g.begin() + static_cast<std::ptrdiff_t>(x.size())) == x);
  CHECK(bytes(g.begin() + static_cast<std::ptrdiff_t>(x.size()), g.end()) == ft::poison_bytes(dt, 5));  // nothing past n
  ferrum::Buffer bc = upload(ctx, dt, x);
  ctx.broadcast(bc, n, 0);
  CHECK(download(ctx, bc, dt, n) == x);
  // Captured: the all_reduce replays.
  ferrum::Buffer gb = upload(ctx, dt, x);
  ctx.begin_graph_capture();
  ctx.all_reduce(gb, n, FERRUM_REDUCE_SUM);
  ctx.end_graph_capture(77);
  CHECK(ctx.replay_graph(77) == 1);
  ctx.sync();
  CHECK(download(ctx, gb, dt, n) == x);
  // Refused: a second comm_init, a bad op, src_rank beyond the world, a short global.
  auto code_msg = [](auto&& f) -> std::pair<ferrum::ErrorCode, std::string> {
    try {
      f();
    } catch (const ferrum::Error& e) {
      return {e.code(), e.what()};
    }
    return {ferrum::ErrorCode::internal, "no error"};
  };
  auto [c1, m1] = code_msg([&] { ctx.comm_init({.unique_id = id->data(), .world_size = 1, .rank = 0}); });
  CHECK(c1 == ferrum::ErrorCode::invalid_argument);
  CHECK(m1.find("comm_init") != std::string::npos);
  auto [c2, m2] = code_msg([&] { ctx.all_reduce(gb, n, 9); });
  CHECK(c2 == ferrum::ErrorCode::invalid_argument);
  CHECK(m2.find("'op'") != std::string::npos);
  auto [c3, m3] = code_msg([&] { ctx.broadcast(gb, n, 1); });
  CHECK(c3 == ferrum::ErrorCode::invalid_argument);
  CHECK(m3.find("src_rank") != std::string::npos);
  ferrum::Buffer shortg = ctx.alloc_typed(D(dt), n - 1);
  auto [c4, m4] = code_msg([&] { ctx.all_gather(local, shortg, n); });
  CHECK(c4 == ferrum::ErrorCode::invalid_argument);
  CHECK(m4.find("global") != std::string::npos);
  ctx.comm_destroy();
  CHECK(ctx.world_size() == 1);
  // A fresh world after comm_destroy.
  const auto id2 = nccl_id(ctx);
  REQUIRE(id2);
  ctx.comm_init({.unique_id = id2->data(), .world_size = 1, .rank = 0});
  ferrum::Buffer b2 = upload(ctx, dt, x);
  ctx.all_reduce(b2, n, FERRUM_REDUCE_SUM);
  CHECK(download(ctx, b2, dt, n) == x);
}

// Two ranks in one process (a thread each, as docs/spec.md §10 allows): with two GPUs a real
// world — sums, maxima, all_gather, broadcast; with one GPU both ranks sit on the same device,
// which NCCL refuses: both comm_init calls must fail with a message, within the bound, no hang.
TEST_CASE("collectives over NCCL: two ranks, one thread each", "[cuda][collective]") {
  ferrum::Backend* be = gpu();
  if (!be) return;
  const int32_t dt = FERRUM_DTYPE_BF16;
  const bool two_gpus = be->device_count() >= 2;
  INFO((two_gpus ? "two GPUs" : "one GPU: both ranks on device 0"));
  ferrum::Context c0 = be->create_context(0, D(dt));
  ferrum::Context c1 = be->create_context(two_gpus ? 1 : 0, D(dt));
  const auto id = nccl_id(c0);
  if (!id) return;
  setenv("FERRUM_CUDA_COMM_TIMEOUT_S", "60", 0);
  std::string err[2];
  auto join = [&](ferrum::Context& c, uint32_t r) {
    try {
      c.comm_init({.unique_id = id->data(), .world_size = 2, .rank = r});
    } catch (const ferrum::Error& e) {
      err[r] = e.what();
      if (err[r].empty()) err[r] = "error without a message";
    }
  };
  std::thread t1([&] { join(c1, 1); });
  join(c0, 0);
  t1.join();
  if (!two_gpus) {
    INFO(err[0] << " | " << err[1]);
    CHECK(!err[0].empty());
    CHECK(!err[1].empty());
    CHECK(err[0].find("comm_init") != std::string::npos);
    return;
  }
  REQUIRE(err[0].empty());
  REQUIRE(err[1].empty());
  CHECK(c0.rank() == 0);
  CHECK(c1.rank() == 1);
  CHECK(c1.world_size() == 2);
  const uint64_t n = 1 << 20;
  const bytes x0 = small_ints(dt, n, 1), x1 = small_ints(dt, n, 2);
  const std::vector<double> v0 = ft::decode(dt, x0), v1 = ft::decode(dt, x1);
  std::vector<double> sum(n), mx(n);
  for (uint64_t i = 0; i < n; ++i) {
    sum[i] = v0[i] + v1[i];
    mx[i] = std::max(v0[i], v1[i]);
  }
  ferrum::Buffer b0 = upload(c0, dt, x0), b1 = upload(c1, dt, x1), m0 = upload(c0, dt, x0), m1 = upload(c1, dt, x1);
  std::thread w([&] {
    c1.all_reduce(b1, n, FERRUM_REDUCE_SUM);
    c1.all_reduce(m1, n, FERRUM_REDUCE_MAX);
    c1.sync();
  });
  c0.all_reduce(b0, n, FERRUM_REDUCE_SUM);
  c0.all_reduce(m0, n, FERRUM_REDUCE_MAX);
  c0.sync();
  w.join();
  CHECK(download(c0, b0, dt, n) == ft::encode(dt, sum));
  CHECK(download(c1, b1, dt, n) == ft::encode(dt, sum));
  CHECK(download(c1, m1, dt, n) == ft::encode(dt, mx));
  ferrum::Buffer l0 = upload(c0, dt, x0), l1 = upload(c1, dt, x1), g0 = poisoned(c0, dt, 2 * n), g1 = poisoned(c1, dt, 2 * n);
  std::thread w2([&] {
    c1.all_gather(l1, g1, n);
    c1.broadcast(l1, n, 0);
    c1.sync();
  });
  c0.all_gather(l0, g0, n);
  c0.broadcast(l0, n, 0);
  c0.sync();
  w2.join();
  bytes both = x0;
  both.insert(both.end(), x1.begin(), x1.end());
  CHECK(download(c0, g0, dt, 2 * n) == both);
  CHECK(download(c1, g1, dt, 2 * n) == both);
  CHECK(download(c1, l1, dt, n) == x0);  // rank 0's data
  std::thread w3([&] { c1.comm_destroy(); });
  c0.comm_destroy();
  w3.join();
}
