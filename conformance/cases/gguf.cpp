// Conformance cases: gguf (see conformance/include/ferrum/conformance/kit.hpp). docs/spec.md §11.
#include <ferrum/conformance/kit.hpp>

#include <cmath>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "ref/quantize.hpp"
#include "ref/ref_gguf.hpp"
#include "src/case_util.hpp"

namespace {

using ferrum::Dtype;
using ferrum::ErrorCode;
using ferrum::conformance::kActDtypes;
using ferrum::conformance::register_case;
using ferrum::conformance::Run;
namespace ft = ferrum::testing;
namespace fr = ferrum::ref;

std::string name_of(int32_t t, const char* what, uint64_t m, uint64_t rows, uint64_t cols) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%s %s m=%llu %llux%llu", ft::gguf_type_name(t), what, (unsigned long long)m,
                (unsigned long long)rows, (unsigned long long)cols);
  return buf;
}

void matmul_case(Run& run, int32_t t, uint64_t m, uint64_t rows, uint64_t cols) {
  const std::vector<uint8_t> bytes = ft::random_gguf(t, rows, cols, run.seed() ^ (uint64_t(t) << 32) ^ (m * 131 + rows));
  ferrum::QWeight w = run.ctx.load_quant({.quant_type = t, .bytes = std::span<const uint8_t>(bytes), .n_rows = rows, .n_cols = cols});
  const auto a = run.random(m * cols);
  ferrum::Buffer ba = run.upload(a);
  ferrum::Buffer out = run.output(m * rows);
  run.ctx.gguf_matmul({.a = ba, .weight = w, .out = out, .m = m});
  const std::vector<double> w_exact = fr::gguf_dequantize(t, bytes, rows, cols);
  const auto product = [&](bool rounded) {
    std::vector<double> r;
    fr::gguf_matmul(run.values(a), rounded ? ft::round_to(static_cast<int32_t>(run.dtype), w_exact) : w_exact, r, m,
                    rows, cols);
    return r;
  };
  ferrum::conformance::util::check_weight_rounding_allowed(run, out, product(false), m * rows, rows, product);
}

// Class A (docs/spec.md §0.13; gguf_matmul with act_precision = FERRUM_QUANT_ACT_Q8): every output
// finite and within (1 + 2^-7)·step + ε·mag of the float64 product (ref/ref_gguf.hpp, ε: class F's
// value of the output dtype); the guard region of an output() buffer untouched.
inline void check_class_a(Run& run, const std::string& what, const ferrum::Buffer& out, const fr::Q8Allowance& al) {
  const uint64_t n = al.ref.size();
  const std::vector<double> got = run.download(out, n);
  const double eps = ft::tolerance(static_cast<int32_t>(out.dtype()));
  for (uint64_t i = 0; i < n; ++i) {
    const double err = std::abs(got[i] - al.ref[i]), allowed = (1 + 0x1p-7) * al.step[i] + eps * al.mag[i];
    if (!std::isfinite(got[i]) || !(err <= allowed)) {
      char buf[256];
      std::snprintf(buf, sizeof buf, ": element %llu is %.9g, the float64 product %.9g (class A allows %.3g, off by %.3g)",
                    (unsigned long long)i, got[i], al.ref[i], allowed, err);
      run.fail(what + buf);
      return;
    }
  }
  if (out.count() > n) run.check_untouched(what + " guard region", out, n, out.count());
}

// act_precision = FERRUM_QUANT_ACT_Q8 (docs/spec.md §11.2): class A. The activations have an outlier
// (|a| of 4 … 8) in every third 32-column block, so the blocks' steps d_b differ widely.
void matmul_q8_case(Run& run, int32_t t, uint64_t m, uint64_t rows, uint64_t cols) {
  const std::vector<uint8_t> bytes = ft::random_gguf(t, rows, cols, run.seed() ^ (uint64_t(t) << 36) ^ (m * 257 + rows));
  ferrum::QWeight w = run.ctx.load_quant({.quant_type = t, .bytes = std::span<const uint8_t>(bytes), .n_rows = rows,
                                          .n_cols = cols, .act_precision = FERRUM_QUANT_ACT_Q8});
  std::vector<double> a = run.random(m * cols);
  for (uint64_t b = 0; b < m * cols / 32; b += 3) a[32 * b + (7 * b) % 32] = (b % 2 ? -1.0 : 1.0) * double(4 + b % 5);
  ferrum::Buffer ba = run.upload(a);
  ferrum::Buffer out = run.output(m * rows);
  run.ctx.gguf_matmul({.a = ba, .weight = w, .out = out, .m = m});
  check_class_a(run, "out", out, fr::gguf_matmul_q8_allowance(run.values(a), fr::gguf_dequantize(t, bytes, rows, cols), m, rows, cols));
}

void dequant_case(Run& run, int32_t t, uint64_t rows, uint64_t cols) {
  const std::vector<uint8_t> bytes = ft::random_gguf(t, rows, cols, run.seed() ^ (uint64_t(t) << 40) ^ rows);
  ferrum::QWeight w = run.ctx.load_quant({.quant_type = t, .bytes = std::span<const uint8_t>(bytes), .n_rows = rows, .n_cols = cols});
  ferrum::Buffer out = run.output(rows * cols);
  run.ctx.gguf_dequantize(w, out);
  // f32 values of §11.1, then rounded once more to the output dtype.
  const std::vector<double> ref = ft::round_to(static_cast<int32_t>(run.dtype), fr::gguf_dequantize(t, bytes, rows, cols));
  run.check("out", out, ref, cols, 'E', /*zero_sign_agnostic=*/true);
}

const bool registered = [] {
  struct Shape {
    uint64_t m, rows, block_cols;  // n_cols = block_cols · QK (odd multiples)
  };
  // m = 8 and 9: the two sides of a plugin's matvec / tiled boundary (the CUDA plugin switches there).
  // m = 2, 16, 31, 33 with 29 / 61 rows: the CPU plugin's decode-once tiles (28 weight rows, groups of
  // 16 activation rows, pairs of groups) with a part tile and a part group.
  const Shape shapes[] = {{1, 3, 1}, {1, 7, 3}, {3, 7, 3}, {8, 5, 3}, {9, 5, 3}, {17, 5, 3}, {1, 67, 5},
                          {2, 29, 9}, {16, 61, 3}, {31, 29, 1}, {33, 61, 9}};
  for (int32_t t : ft::gguf_types()) {
    for (const Shape& s : shapes) {
      const uint64_t cols = s.block_cols * ft::gguf_qk(t);
      register_case({"gguf_matmul", name_of(t, "matmul", s.m, s.rows, cols), kActDtypes,
                     [=](Run& run) { matmul_case(run, t, s.m, s.rows, cols); }});
    }
    for (uint64_t bc : {1ull, 3ull}) {
      const uint64_t cols = bc * ft::gguf_qk(t);
      register_case({"gguf_dequantize", name_of(t, "dequantize", 0, 7, cols), kActDtypes,
                     [=](Run& run) { dequant_case(run, t, 7, cols); }});
    }
  }
  // act_precision = Q8 (class A): m = 1, 3, 16, 33; odd block counts (32-weight types: a partial
  // 256-column group alone, then two full groups and a partial one).
  const Shape q8_shapes[] = {{1, 7, 0}, {3, 29, 1}, {16, 61, 0}, {33, 29, 1}};
  for (int32_t t : ft::gguf_types()) {
    for (const Shape& s : q8_shapes) {
      const bool small = ft::gguf_qk(t) == 32;
      const uint64_t cols = (small ? (s.block_cols ? 19 : 7) : (s.block_cols ? 3 : 1)) * ft::gguf_qk(t);
      register_case({"gguf_matmul", name_of(t, "matmul act_precision=q8", s.m, s.rows, cols), kActDtypes,
                     [=](Run& run) { matmul_q8_case(run, t, s.m, s.rows, cols); }});
    }
  }
  // "large": a wide output (n_rows >= 14336) at m = 1, a long row (n_cols = 8192) through the
  // tiled / tensor-core paths at m = 9 and m = 64.
  const Shape large[] = {{1, 14336, 0}, {9, 256, 0}, {64, 1024, 0}};
  for (int32_t t : ft::gguf_types()) {
    for (const Shape& s : large) {
      const uint64_t cols = s.rows == 14336 ? 512 : 8192;
      register_case({"gguf_matmul", name_of(t, "matmul", s.m, s.rows, cols), kActDtypes,
                     [=](Run& run) { matmul_case(run, t, s.m, s.rows, cols); }, "large"});
    }
  }
  return true;
}();

FERRUM_CONFORMANCE_CASE("gguf_matmul", "m=0 is a no-op", kActDtypes) {
  const std::vector<uint8_t> bytes = ft::random_gguf(ft::kQ4_0, 4, 64, run.seed());
  ferrum::QWeight w = run.ctx.load_quant({.quant_type = ft::kQ4_0, .bytes = std::span<const uint8_t>(bytes), .n_rows = 4, .n_cols = 64});
  ferrum::Buffer ba = run.upload(run.random(64));
  ferrum::Buffer out = run.output(4);
  run.ctx.gguf_matmul({.a = ba, .weight = w, .out = out, .m = 0});
  run.check_untouched("out", out, 0, 4);
}

FERRUM_CONFORMANCE_CASE("load_quant", "errors: n_cols % QK, byte_len, unknown type", kActDtypes) {
  const std::vector<uint8_t> bytes = ft::random_gguf(ft::kQ4_K, 2, 256, run.seed());
  run.expect_error("n_cols % QK", ErrorCode::invalid_argument, [&] {
    run.ctx.load_quant({.quant_type = ft::kQ4_K, .bytes = std::span<const uint8_t>(bytes), .n_rows = 2, .n_cols = 128});
  }, "n_cols");
  run.expect_error("byte_len mismatch", ErrorCode::invalid_argument, [&] {
    run.ctx.load_quant({.quant_type = ft::kQ4_K, .bytes = std::span<const uint8_t>(bytes.data(), bytes.size() - 1), .n_rows = 2, .n_cols = 256});
  }, "byte_len");
  run.expect_error("unknown type", ErrorCode::unsupported, [&] {
    run.ctx.load_quant({.quant_type = 7, .bytes = std::span<const uint8_t>(bytes), .n_rows = 2, .n_cols = 256});
  }, "quant_type");
}

FERRUM_CONFORMANCE_CASE("load_quant", "errors: act_precision other than EXACT (0) and Q8 (1)", kActDtypes) {
  const std::vector<uint8_t> bytes = ft::random_gguf(ft::kQ8_0, 2, 64, run.seed());
  for (int32_t bad : {2, -1}) {
    run.expect_error("act_precision " + std::to_string(bad), ErrorCode::invalid_argument, [&] {
      run.ctx.load_quant({.quant_type = ft::kQ8_0, .bytes = std::span<const uint8_t>(bytes), .n_rows = 2, .n_cols = 64,
                          .act_precision = bad});
    }, "act_precision");
  }
}

FERRUM_CONFORMANCE_CASE("gguf_matmul", "errors: a too small, wrong weight kind", kActDtypes) {
  const std::vector<uint8_t> bytes = ft::random_gguf(ft::kQ8_0, 4, 64, run.seed());
  ferrum::QWeight w = run.ctx.load_quant({.quant_type = ft::kQ8_0, .bytes = std::span<const uint8_t>(bytes), .n_rows = 4, .n_cols = 64});
  ferrum::Buffer ba = run.upload(run.random(63));
  ferrum::Buffer out = run.output(4);
  run.expect_error("a too small", ErrorCode::invalid_argument, [&] { run.ctx.gguf_matmul({.a = ba, .weight = w, .out = out, .m = 1}); });
}

}  // namespace
