// ferrum conformance kit — small helpers shared by the case files (not part of the kit's API).
#pragma once

#include <ferrum/conformance/kit.hpp>

#include "ref/compare.hpp"
#include "ref/quantize.hpp"
#include "ref/reference.hpp"
#include "ref/rng.hpp"

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace ferrum::conformance::util {

namespace ft = ferrum::testing;
namespace fr = ferrum::ref;
using vec = std::vector<double>;

inline int32_t raw(Dtype d) { return static_cast<int32_t>(d); }

inline vec slice(const vec& v, uint64_t off, uint64_t n) {
  return vec(v.begin() + static_cast<std::ptrdiff_t>(off), v.begin() + static_cast<std::ptrdiff_t>(off + n));
}

// Checks a matmul whose definition permits rounding the decoded weights to the activation dtype
// before multiplying (gguf_matmul, marlin_gemm): `ref` is the product of the exact weights,
// `product(rounded)` forms the product of weights rounded to the run's dtype. The output passes when
// it is within class F of either (docs/spec.md §0.13): on short rows a BF16 weight rounding is of
// the order of the tolerance itself. F32 runs: only the exact product.
template <class Product>
void check_weight_rounding_allowed(Run& run, const Buffer& out, const vec& ref, uint64_t n_out, uint64_t row_len,
                                   Product&& product) {
  if (run.dtype != Dtype::f32) {
    const vec got = run.download(out, n_out);
    if (!ft::compare(got, ref, raw(run.dtype), row_len, 'F').ok) {
      const vec ref_rounded = product(true);
      if (ft::compare(got, ref_rounded, raw(run.dtype), row_len, 'F').ok) {
        run.check("out (weights rounded to the activation dtype)", out, ref_rounded, row_len);
        return;
      }
    }
  }
  run.check("out", out, ref, row_len);
}

// printf-style case names: "5 tokens, dim 129".
inline std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
inline std::string fmt(const char* f, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// Registers one case per row of a shape table: name(row) names it, body(run, row) runs it;
// `family` as Case::family (empty: the op's).
template <class Row, class NameFn, class BodyFn>
bool register_table(const char* op, const std::vector<Dtype>& dtypes, const std::vector<Row>& rows, NameFn name,
                    BodyFn body, const std::string& family = {}) {
  for (const Row& r : rows) register_case({op, name(r), dtypes, [r, body](Run& run) { body(run, r); }, family});
  return true;
}

// Class E that accepts any NaN where the reference is NaN (docs/spec.md keeps "NaN stays NaN" but does
// not fix the payload); every other element bitwise, zero signs included.
inline void check_exact_nan_agnostic(Run& run, const std::string& what, vec out, vec ref, Dtype dt) {
  if (out.size() == ref.size())
    for (size_t i = 0; i < ref.size(); ++i)
      if (std::isnan(ref[i])) {
        if (!std::isnan(out[i])) run.fail(what + fmt(": element %zu must be NaN, got %.9g", i, out[i]));
        out[i] = ref[i] = 0.0;
      }
  run.check_values(what, out, ref, 0, dt, 'E');
}

}  // namespace ferrum::conformance::util
