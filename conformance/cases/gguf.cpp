// Conformance cases: gguf (see conformance/include/ferrum/conformance/kit.hpp). docs/spec.md §11.
#include <ferrum/conformance/kit.hpp>

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

FERRUM_CONFORMANCE_CASE("gguf_matmul", "errors: a too small, wrong weight kind", kActDtypes) {
  const std::vector<uint8_t> bytes = ft::random_gguf(ft::kQ8_0, 4, 64, run.seed());
  ferrum::QWeight w = run.ctx.load_quant({.quant_type = ft::kQ8_0, .bytes = std::span<const uint8_t>(bytes), .n_rows = 4, .n_cols = 64});
  ferrum::Buffer ba = run.upload(run.random(63));
  ferrum::Buffer out = run.output(4);
  run.expect_error("a too small", ErrorCode::invalid_argument, [&] { run.ctx.gguf_matmul({.a = ba, .weight = w, .out = out, .m = 1}); });
}

}  // namespace
