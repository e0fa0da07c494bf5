// Conformance cases: the memory and transfer family (docs/spec.md §1), context_info, query_attribute
// and the timer (§2, §9). Transfers are bit copies (class E on raw bytes); float conversions are class E against
// quantize.hpp's round-to-nearest-even model, with any NaN accepted where the reference is NaN.
#include <ferrum/conformance/kit.hpp>

#include "src/case_util.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <span>

using namespace ferrum;
using namespace ferrum::conformance;
using namespace ferrum::conformance::util;

namespace {

constexpr ErrorCode kInvalid = ErrorCode::invalid_argument;
const std::vector<Dtype> kAllDtypes = {Dtype::f32, Dtype::f16, Dtype::bf16, Dtype::i32,
                                       Dtype::u32, Dtype::i8,  Dtype::u8,   Dtype::f8_e4m3};
const uint8_t kDummy[8] = {};

// Edge values of the float conversions (docs/spec.md §1 from_weight_bytes, §0.2 rule 3), as f32 values.
vec edge_values() {
  const double inf = std::numeric_limits<double>::infinity();
  return {0.0,       -0.0,       1.0,        -1.0,        65504.0,    -65504.0,    65519.0,    -65519.0,
          65519.99,  65520.0,    -65520.0,   65536.0,     1e6,        inf,         -inf,
          std::numeric_limits<double>::quiet_NaN(),
          5.960464477539063e-08 /* f16 min subnormal 2^-24 */, 2.98023223876953125e-08 /* 2^-25: tie -> 0 */,
          4.4703483581542969e-08 /* 1.5·2^-25 -> 2^-24 */, 6.097555160522461e-05 /* f16 subnormal */,
          6.103515625e-05 /* f16 min normal */, 1e-40 /* f32 subnormal */, -1e-45, 1.17549435e-38,
          3.4028234663852886e38 /* f32 max -> bf16 inf */, 3.3895313892515355e38 /* bf16 max */,
          1.00390625 /* bf16 tie */, 1.0009765625 /* f16/bf16 ulp probes */, 1.00048828125, 0.1, -2.5e-3,
          123.456, -7777.77};
}
vec f32_values(const vec& v) { return ft::round_to(FERRUM_DTYPE_F32, v); }

std::string dn(Dtype d) { return std::string(to_string(d)); }
uint64_t esize(Dtype d) { return ft::dtype_size(raw(d)); }

Buffer upload_bytes(Run& run, Dtype d, const std::vector<uint8_t>& bytes) {
  const uint64_t n = bytes.size() / esize(d);
  return run.ctx.from_slice_typed(d, n ? bytes.data() : kDummy, n);
}
std::vector<uint8_t> read_bytes(Run& run, const Buffer& b, uint64_t n) {
  std::vector<uint8_t> out(n * esize(b.dtype()));
  if (n) run.ctx.read_typed({.src = b, .dtype = b.dtype(), .len = n, .data = out.data()});
  return out;
}
std::vector<uint8_t> read_bytes(Run& run, const Buffer& b) { return read_bytes(run, b, b.count()); }
std::vector<uint8_t> pattern(uint64_t n, uint64_t mul, uint64_t add) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * mul + add) & 0xFF);
  return v;
}
void check_bytes(Run& run, const std::string& what, const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
                 Dtype d) {
  const auto r = ft::compare_bytes(got, want, raw(d), 0);
  if (!r.ok) run.fail(what + ": " + r.message);
}
vec as_vec(const std::vector<float>& v) { return vec(v.begin(), v.end()); }

}  // namespace

FERRUM_CONFORMANCE_CASE("alloc_typed", "every dtype, n 0/1/7/129, every byte zero", kF32Only) {
  for (Dtype d : kAllDtypes)
    for (uint64_t n : {0ull, 1ull, 7ull, 129ull}) {
      const std::string at = fmt(" (%s, n %llu)", dn(d).c_str(), (unsigned long long)n);
      Buffer b = run.ctx.alloc_typed(d, n);
      if (b.dtype() != d || b.count() != n) run.fail("buffer_info" + at + ": wrong dtype or count");
      check_bytes(run, "bytes" + at, read_bytes(run, b), std::vector<uint8_t>(n * esize(d), 0), d);
    }
}

FERRUM_CONFORMANCE_CASE("from_slice", "alloc / from_slice use the context's default dtype; edge values", kActDtypes) {
  const Dtype d = run.dtype;
  if (run.ctx.activation_dtype() != d || run.ctx.info().activation_dtype != d)
    run.fail("context_info: activation_dtype is not the one requested");
  if (run.ctx.activation_elem_size_bytes() != esize(d)) run.fail("activation_elem_size_bytes is wrong");
  Buffer a = run.ctx.alloc(33), e = run.ctx.alloc(0);
  if (a.dtype() != d || a.count() != 33 || e.count() != 0) run.fail("alloc: wrong dtype or count");
  vec v = edge_values();
  const vec r = run.random(45, -3.0, 3.0, Dtype::f32);
  v.insert(v.end(), r.begin(), r.end());
  const std::vector<float> host(v.begin(), v.end());
  Buffer b = run.ctx.from_slice(host);
  if (b.dtype() != d || b.count() != host.size()) run.fail("from_slice: wrong dtype or count");
  check_exact_nan_agnostic(run, "from_slice values", run.download(b), ft::round_to(raw(d), as_vec(host)), d);
}

FERRUM_CONFORMANCE_CASE("from_slice_typed", "bit copy for every dtype, prefix read", kF32Only) {
  for (Dtype d : kAllDtypes) {
    const uint64_t n = 37;
    const auto bytes = pattern(n * esize(d), 131, 7);  // NaN patterns too
    Buffer b = upload_bytes(run, d, bytes);
    if (b.dtype() != d || b.count() != n) run.fail("buffer_info (" + dn(d) + "): wrong dtype or count");
    check_bytes(run, "read_typed (" + dn(d) + ")", read_bytes(run, b), bytes, d);
    check_bytes(run, "read_typed prefix (" + dn(d) + ")", read_bytes(run, b, 5),
                std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(5 * esize(d))), d);
  }
}

FERRUM_CONFORMANCE_CASE("from_slice_typed", "zero-length transfers accept a NULL host pointer", kF32Only) {
  for (Dtype d : kAllDtypes) {
    Buffer b = run.ctx.from_slice_typed(d, nullptr, 0);
    if (b.count() != 0) run.fail("from_slice_typed(NULL, 0) (" + dn(d) + "): count must be 0");
    Buffer c = run.output(3, d, 0);
    run.ctx.write_typed({.dst = c, .dtype = d, .data = nullptr, .data_len = 0});
    run.ctx.read_typed({.src = c, .dtype = d, .len = 0, .data = nullptr});
    run.check_untouched("write_typed(NULL, 0) (" + dn(d) + ")", c, 0, 3);
  }
  (void)run.ctx.from_slice(std::span<const float>());
  (void)run.ctx.from_weight_bytes({.raw = std::span<const uint8_t>(), .src_dtype = Dtype::f32, .dst_dtype = Dtype::f32});
}

namespace {

struct Fwb { Dtype dst; uint64_t misalign; };
const bool kFwb = register_table<Fwb>(
    "from_weight_bytes", kActDtypes,
    [] {
      std::vector<Fwb> rows;
      for (Dtype d : {Dtype::invalid, Dtype::f32, Dtype::f16, Dtype::bf16})
        for (uint64_t m : {0ull, 1ull, 3ull}) rows.push_back({d, m});
      return rows;
    }(),
    [](const Fwb& s) {
      return fmt("run dtype -> %s, source misaligned by %llu", s.dst == Dtype::invalid ? "default" : dn(s.dst).c_str(),
                 (unsigned long long)s.misalign);
    },
    [](Run& run, const Fwb& s) {
      const Dtype src = run.dtype, eff = s.dst == Dtype::invalid ? run.ctx.activation_dtype() : s.dst;
      vec v = edge_values();
      const vec r = run.random(77, -100.0, 100.0, Dtype::f32);
      v.insert(v.end(), r.begin(), r.end());
      const vec stored = ft::round_to(raw(src), v);
      const auto bytes = ft::encode(raw(src), stored);
      std::vector<uint8_t> storage(bytes.size() + 8);
      std::memcpy(storage.data() + s.misalign, bytes.data(), bytes.size());
      Buffer b = run.ctx.from_weight_bytes({.raw = std::span<const uint8_t>(storage.data() + s.misalign, bytes.size()), .src_dtype = src,
                                           .dst_dtype = s.dst});
      if (b.dtype() != eff || b.count() != stored.size()) run.fail("buffer: wrong dtype or count");
      else check_exact_nan_agnostic(run, "values", run.download(b), ft::round_to(raw(eff), stored), eff);
      Buffer e = run.ctx.from_weight_bytes({.raw = std::span<const uint8_t>(), .src_dtype = src, .dst_dtype = s.dst});
      if (e.count() != 0) run.fail("raw_len 0 must give an empty buffer");
    });

}  // namespace

FERRUM_CONFORMANCE_CASE("write_typed", "prefix written, the rest untouched, every dtype", kF32Only) {
  for (Dtype d : kAllDtypes) {
    const uint64_t n = 29, k = 13;
    Buffer b = run.output(n, d, 0);
    const auto data = pattern(k * esize(d), 1, 1);
    run.ctx.write_typed({.dst = b, .dtype = d, .data = data.data(), .data_len = k});
    const auto got = read_bytes(run, b);
    check_bytes(run, "prefix (" + dn(d) + ")", std::vector<uint8_t>(got.begin(), got.begin() + static_cast<long>(data.size())),
                data, d);
    run.check_untouched("tail (" + dn(d) + ")", b, k, n);
  }
}

FERRUM_CONFORMANCE_CASE("to_vec", "float dtypes: edge values by value, -0.0 kept; len 0", kActDtypes) {
  const vec v = ft::round_to(raw(run.dtype), edge_values());
  Buffer b = run.upload(v);
  check_exact_nan_agnostic(run, "values", as_vec(run.ctx.to_vec(b, v.size())), f32_values(v), Dtype::f32);
  const auto pre = run.ctx.to_vec(b, 3);
  if (pre.size() != 3 || std::bit_cast<uint32_t>(pre[1]) != 0x80000000u) run.fail("prefix of 3: -0.0 must stay -0.0");
  if (!run.ctx.to_vec(b, 0).empty()) run.fail("len 0 must give no values");
}

FERRUM_CONFORMANCE_CASE("to_vec", "F8_E4M3 every code, I8 / U8 every code", kF32Only) {
  const auto codes = pattern(256, 1, 0);
  vec rf(256), ri(256), ru(256);
  for (int i = 0; i < 256; ++i) {
    rf[i] = ft::f8e4m3_bits_to_double(static_cast<uint8_t>(i));
    ri[i] = static_cast<int8_t>(i);
    ru[i] = i;
  }
  Buffer bf = upload_bytes(run, Dtype::f8_e4m3, codes), bi = upload_bytes(run, Dtype::i8, codes),
         bu = upload_bytes(run, Dtype::u8, codes);
  check_exact_nan_agnostic(run, "f8_e4m3", as_vec(run.ctx.to_vec(bf, 256)), rf, Dtype::f32);
  run.check_values("i8", as_vec(run.ctx.to_vec(bi, 256)), ri, 0, Dtype::f32, 'E');
  run.check_values("u8", as_vec(run.ctx.to_vec(bu, 256)), ru, 0, Dtype::f32, 'E');
}

FERRUM_CONFORMANCE_CASE("to_vec", "I32 / U32 rounding above 2^24 (nearest even)", kF32Only) {
  const std::vector<int64_t> iv = {0, 1, -1, 16777215, 16777216, 16777217, 16777218, 16777219, -16777217,
                                   -16777219, 33554435, 2147483647, -2147483647 - 1, 123456789, -987654321};
  const std::vector<int64_t> uv = {0, 1, 16777217, 16777219, 33554433, 33554434, 33554435, 2147483647,
                                   2147483648ll, 4294967295ll, 4294967168ll, 4294967167ll, 3000000001ll};
  vec ri, ru;
  for (int64_t x : iv) ri.push_back(static_cast<double>(static_cast<float>(static_cast<int32_t>(x))));
  for (int64_t x : uv) ru.push_back(static_cast<double>(static_cast<float>(static_cast<uint32_t>(x))));
  Buffer bi = run.upload(vec(iv.begin(), iv.end()), Dtype::i32), bu = run.upload(vec(uv.begin(), uv.end()), Dtype::u32);
  run.check_values("i32", as_vec(run.ctx.to_vec(bi, iv.size())), ri, 0, Dtype::f32, 'E');
  run.check_values("u32", as_vec(run.ctx.to_vec(bu, uv.size())), ru, 0, Dtype::f32, 'E');
}

FERRUM_CONFORMANCE_CASE("write_f32_to_activation", "prefix rounded, the rest untouched; empty is a no-op", kActDtypes) {
  const uint64_t n = 41, k = 23;
  vec v = edge_values();
  v.resize(k, 0.75);
  const std::vector<float> data(v.begin(), v.end());
  Buffer b = run.output(n, Dtype::invalid, 0);
  run.ctx.write_f32_to_activation(b, data);
  check_exact_nan_agnostic(run, "prefix", run.download(b, k), ft::round_to(raw(run.dtype), as_vec(data)), run.dtype);
  run.check_untouched("tail", b, k, n);
  const auto before = read_bytes(run, b);
  run.ctx.write_f32_to_activation(b, std::span<const float>());
  check_bytes(run, "after an empty write", read_bytes(run, b), before, run.dtype);
}

FERRUM_CONFORMANCE_CASE("zero_buffer", "partial length, 0, whole buffer; every dtype", kF32Only) {
  for (Dtype d : kAllDtypes) {
    const uint64_t n = 29, k = 13, es = esize(d);
    Buffer b = run.output(n, d, 0);
    run.ctx.zero_buffer(b, k);
    const auto got = read_bytes(run, b);
    check_bytes(run, "prefix (" + dn(d) + ")", std::vector<uint8_t>(got.begin(), got.begin() + static_cast<long>(k * es)),
                std::vector<uint8_t>(k * es, 0), d);
    run.check_untouched("tail (" + dn(d) + ")", b, k, n);
    run.ctx.zero_buffer(b, 0);
    check_bytes(run, "len 0 (" + dn(d) + ")", read_bytes(run, b), got, d);
    run.ctx.zero_buffer(b, n);
    check_bytes(run, "whole (" + dn(d) + ")", read_bytes(run, b), std::vector<uint8_t>(n * es, 0), d);
  }
}

namespace {

const bool kCopyConv = register_table<Dtype>(
    "copy_slice", kActDtypes, {Dtype::f32, Dtype::f16, Dtype::bf16},
    [](Dtype dd) { return "offsets, run dtype -> " + dn(dd) + " conversion, edge values"; },
    [](Run& run, Dtype dd) {
      vec v = edge_values();
      const vec r = run.random(40, -70000.0, 70000.0, Dtype::f32);
      v.insert(v.end(), r.begin(), r.end());
      const vec stored = ft::round_to(raw(run.dtype), v);
      Buffer src = run.upload(stored);
      const uint64_t n = stored.size(), src_off = 3, len = n - 7, dst_off = 5, dst_n = len + 11;
      Buffer dst = run.output(dst_n, dd, 0);
      run.ctx.copy_slice({.src = src, .src_offset = src_off, .dst = dst, .dst_offset = dst_off, .len = len});
      check_exact_nan_agnostic(run, "copied range", slice(run.download(dst), dst_off, len),
                               ft::round_to(raw(dd), slice(stored, src_off, len)), dd);
      run.check_untouched("head", dst, 0, dst_off);
      run.check_untouched("tail", dst, dst_off + len, dst_n);
      const auto before = read_bytes(run, dst);
      run.ctx.copy_slice({.src = src, .src_offset = 0, .dst = dst, .dst_offset = 0, .len = 0});
      check_bytes(run, "after len 0", read_bytes(run, dst), before, dd);
    });

}  // namespace

FERRUM_CONFORMANCE_CASE("copy_slice", "bit copy of equal dtypes, same-handle disjoint ranges, every dtype", kF32Only) {
  for (Dtype d : kAllDtypes) {
    const uint64_t es = esize(d), n = 40;
    const auto bytes = pattern(n * es, 37, 11);
    Buffer src = upload_bytes(run, d, bytes);
    Buffer dst = run.output(n + 4, d, 0);
    run.ctx.copy_slice({.src = src, .src_offset = 2, .dst = dst, .dst_offset = 1, .len = n - 2});
    const auto got = read_bytes(run, dst);
    check_bytes(run, "copied range (" + dn(d) + ")",
                std::vector<uint8_t>(got.begin() + static_cast<long>(es), got.begin() + static_cast<long>((n - 1) * es)),
                std::vector<uint8_t>(bytes.begin() + static_cast<long>(2 * es), bytes.end()), d);
    run.check_untouched("head (" + dn(d) + ")", dst, 0, 1);
    run.check_untouched("tail (" + dn(d) + ")", dst, n - 1, n + 4);
    run.ctx.copy_slice({.src = src, .src_offset = 0, .dst = src, .dst_offset = 20, .len = 10});  // same handle, [0, 10) -> [20, 30)
    auto expect = bytes;
    std::memcpy(expect.data() + 20 * es, bytes.data(), 10 * es);
    check_bytes(run, "same handle (" + dn(d) + ")", read_bytes(run, src), expect, d);
  }
}

FERRUM_CONFORMANCE_CASE("context_info", "device, dtype, batched capacities", kActDtypes) {
  const auto info = run.ctx.info();
  if (info.device_ordinal != run.backend.selected_device()) run.fail("device_ordinal is not the selected device");
  if (info.activation_dtype != run.dtype) run.fail("activation_dtype is not the one requested");
  if (info.batched_slots < 128 || info.batched_items < 64)
    run.fail(fmt("batched_slots %llu / batched_items %llu below the minimum 128 / 64",
                 (unsigned long long)info.batched_slots, (unsigned long long)info.batched_items));
}

FERRUM_CONFORMANCE_CASE("make_timer", "record_start / record_end / elapsed_ms around a copy", kF32Only) {
  Timer t = run.ctx.make_timer();
  if (!t) {
    run.fail("make_timer returned no timer");
    return;
  }
  Buffer b = run.upload(run.random(64)), o = run.output(64);
  run.ctx.record_start(t);
  run.ctx.copy_slice({.src = b, .src_offset = 0, .dst = o, .dst_offset = 0, .len = 64});
  run.ctx.record_end(t);
  const double ms = run.ctx.elapsed_ms(t);
  if (!std::isfinite(ms) || ms < 0.0) run.fail(fmt("elapsed_ms %g is not a finite value >= 0", ms));
  run.ctx.sync();
}

// ------------------------------------------------------------------------------------ ABI 1.1
// A plugin of ABI 1.0 has neither: the facade's gate answers unsupported (reported unsupported).

FERRUM_CONFORMANCE_CASE("read_typed", "src_offset: every slice of every dtype, bounded by the count", kF32Only) {
  for (Dtype d : kAllDtypes) {
    const uint64_t n = 37, es = esize(d);
    const std::vector<uint8_t> bytes = pattern(n * es, 29, static_cast<uint64_t>(d) + 3);
    Buffer b = upload_bytes(run, d, bytes);
    for (uint64_t off : {uint64_t{0}, uint64_t{1}, uint64_t{16}, n - 5, n}) {
      const uint64_t len = std::min<uint64_t>(5, n - off);
      std::vector<uint8_t> got(5 * es, 0xCD);
      run.ctx.read_typed({.src = b, .dtype = d, .len = len, .data = got.data(), .src_offset = off});
      const std::vector<uint8_t> want(bytes.begin() + off * es, bytes.begin() + (off + len) * es);
      got.resize(len * es);
      check_bytes(run, "read_typed src_offset " + std::to_string(off) + " (" + dn(d) + ")", got, want, d);
    }
    std::vector<uint8_t> host(8 * es, 0xCD);
    run.expect_error("read_typed src_offset " + std::to_string(n - 2) + " + len 3 of " + std::to_string(n), kInvalid,
                     [&] { run.ctx.read_typed({.src = b, .dtype = d, .len = 3, .data = host.data(), .src_offset = n - 2}); },
                     "src_offset");
    if (host != std::vector<uint8_t>(8 * es, 0xCD)) run.fail("read_typed wrote host memory on a refused src_offset");
  }
}

FERRUM_CONFORMANCE_CASE("query_attribute", "the supports_* answers through one slot; unknown attributes", kF32Only) {
  const struct {
    int32_t attribute;
    uint64_t slot;
    const char* name;
  } answers[] = {
      {FERRUM_ATTRIBUTE_DEVICE_ORDINAL_SCOPE, run.backend.supports_device_ordinal_scope() ? 1u : 0u,
       "supports_device_ordinal_scope"},
      {FERRUM_ATTRIBUTE_LLAMA_FAMILY_BATCHED_DECODE, run.ctx.supports_llama_family_batched_decode(),
       "supports_llama_family_batched_decode"},
      {FERRUM_ATTRIBUTE_PAGED_KV, run.ctx.supports_paged_kv(), "supports_paged_kv"},
      {FERRUM_ATTRIBUTE_VARLEN_QKV, run.ctx.supports_varlen_qkv(), "supports_varlen_qkv"},
      {FERRUM_ATTRIBUTE_VLLM_PAGED_ATTN, run.ctx.supports_vllm_paged_attn(), "supports_vllm_paged_attn"},
  };
  for (const auto& a : answers) {
    const uint64_t got = run.ctx.query_attribute(a.attribute);
    if (got != a.slot)
      run.fail(fmt("query_attribute(%d) = %llu, but %s answers %llu", a.attribute, (unsigned long long)got, a.name,
                   (unsigned long long)a.slot));
  }
  run.expect_error("query_attribute(0)", kInvalid, [&] { (void)run.ctx.query_attribute(0); }, "attribute");
  run.expect_error("query_attribute of a later minor", ErrorCode::unsupported,
                   [&] { (void)run.ctx.query_attribute(FERRUM_ATTRIBUTE_COUNT_V1_1 + 1); }, "attribute");
}

// ------------------------------------------------------------------------------------ error paths

FERRUM_CONFORMANCE_CASE("read_typed", "error: len > count, dtype mismatch (read/write/to_vec/zero_buffer)", kActDtypes) {
  const Dtype d = run.dtype;
  Buffer buf = run.output(4, Dtype::invalid, 0);
  std::vector<uint8_t> host(5 * 4);
  run.expect_error("to_vec len 5 of 4", kInvalid, [&] { (void)run.ctx.to_vec(buf, 5); }, "to_vec");
  run.expect_error("read_typed len 5 of 4", kInvalid, [&] { run.ctx.read_typed({.src = buf, .dtype = d, .len = 5, .data = host.data()}); }, "read_typed");
  run.expect_error("write_typed 5 of 4", kInvalid, [&] { run.ctx.write_typed({.dst = buf, .dtype = d, .data = host.data(), .data_len = 5}); }, "write_typed");
  run.expect_error("zero_buffer len 5 of 4", kInvalid, [&] { run.ctx.zero_buffer(buf, 5); }, "zero_buffer");
  const std::vector<float> f(5, 1.0f);
  run.expect_error("write_f32_to_activation 5 of 4", kInvalid, [&] { run.ctx.write_f32_to_activation(buf, f); },
                   "write_f32_to_activation");
  run.expect_error("write_typed as I32", kInvalid, [&] { run.ctx.write_typed({.dst = buf, .dtype = Dtype::i32, .data = host.data(), .data_len = 1}); },
                   "dtype");
  run.expect_error("read_typed as U8", kInvalid, [&] { run.ctx.read_typed({.src = buf, .dtype = Dtype::u8, .len = 1, .data = host.data()}); }, "dtype");
  run.check_untouched("buffer", buf, 0, 4);
}

FERRUM_CONFORMANCE_CASE("copy_slice", "error: ranges past the end, int <-> float, overlapping same-handle ranges",
                        kActDtypes) {
  const vec sv = run.random(10);
  Buffer src = run.upload(sv), dst = run.output(10, Dtype::invalid, 0);
  run.expect_error("src range past the end", kInvalid, [&] { run.ctx.copy_slice({.src = src, .src_offset = 4, .dst = dst, .dst_offset = 0, .len = 7}); }, "src");
  run.expect_error("dst range past the end", kInvalid, [&] { run.ctx.copy_slice({.src = src, .src_offset = 0, .dst = dst, .dst_offset = 5, .len = 6}); }, "dst");
  Buffer isrc = run.upload(vec(4, 3.0), Dtype::i32);
  run.expect_error("I32 -> float", kInvalid, [&] { run.ctx.copy_slice({.src = isrc, .src_offset = 0, .dst = dst, .dst_offset = 0, .len = 4}); }, "copy_slice");
  run.check_untouched("dst", dst, 0, 10);
  run.expect_error("overlapping ranges of one buffer", kInvalid, [&] { run.ctx.copy_slice({.src = src, .src_offset = 0, .dst = src, .dst_offset = 4, .len = 6}); },
                   "copy_slice");
  run.check_values("src unchanged", run.download(src), sv, 0, run.dtype, 'E');
}

FERRUM_CONFORMANCE_CASE("from_weight_bytes", "error: raw_len not a multiple, non-float source", kActDtypes) {
  const std::vector<uint8_t> raw3(3 * esize(run.dtype) + 1, 0x11);
  run.expect_error("raw_len not a multiple of the element size", kInvalid,
                   [&] { (void)run.ctx.from_weight_bytes({.raw = raw3, .src_dtype = run.dtype, .dst_dtype = Dtype::f32}); }, "raw_len");
  const std::vector<uint8_t> raw4(16, 0x11);
  run.expect_error("I32 source", kInvalid, [&] { (void)run.ctx.from_weight_bytes({.raw = raw4, .src_dtype = Dtype::i32, .dst_dtype = run.dtype}); },
                   "src_dtype");
}
