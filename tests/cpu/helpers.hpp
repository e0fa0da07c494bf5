// tests/cpu — shared helpers for the CPU plugin op tests.
//
// Every op test follows the same recipe (docs/spec.md §0.13):
//   1. seeded random inputs, rounded to the activation dtype before the reference sees them
//      (ferrum::testing::*_dtype generators), uploaded bit for bit (encode -> from_slice_typed);
//   2. outputs poisoned (ferrum::testing::poison_bytes) before the call;
//   3. after the call: every element the op must write was written (no poison left), every element
//      it must not touch still holds the poison / its previous bits, and the written elements meet
//      their tolerance class against the float64 reference (ferrum::ref), per tensor and per row.
#pragma once

#include <catch2/catch.hpp>

#include <ferrum/ferrum.hpp>

#include "ref/compare.hpp"
#include "ref/quantize.hpp"
#include "ref/reference.hpp"
#include "ref/rng.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

namespace cputest {

namespace ft = ferrum::testing;
namespace fr = ferrum::ref;
using ferrum::Buffer;
using ferrum::Context;
using ferrum::Dtype;
using vec = std::vector<double>;

inline int32_t dt(Dtype d) { return static_cast<int32_t>(d); }
inline std::string name(Dtype d) { return ft::dtype_name(dt(d)); }

// The backend and one context (default F16, so every op's dtype really comes from its buffers,
// docs/spec.md §0.2 rule 4). Loaded once per process; a load failure fails every test that needs it.
inline ferrum::Backend& backend() {
  static ferrum::Backend b = ferrum::Backend::load("cpu");
  return b;
}
inline Context& ctx() {
  static Context c = backend().create_context({}, Dtype::f16);
  return c;
}

// ---------------------------------------------------------------- upload / download
inline Buffer upload_bytes(Dtype d, const std::vector<uint8_t>& bytes) {
  const uint64_t n = bytes.size() / ft::dtype_size(dt(d));
  // An empty std::vector has data() == NULL; pass a valid pointer for 0 elements so that the
  // op tests do not depend on how the facade treats NULL with data_len 0 (test_memory.cpp checks
  // that separately).
  static const uint8_t dummy[8] = {};
  return ctx().from_slice_typed(d, n ? bytes.data() : dummy, n);
}
// A buffer of dtype d holding v (encode rounds to d; pass values already rounded for inputs).
inline Buffer upload(Dtype d, const vec& v) { return upload_bytes(d, ft::encode(dt(d), v)); }
// Index buffer (U32 or I32) from int64 values.
inline Buffer upload_idx(Dtype d, const std::vector<int64_t>& v) {
  vec dv(v.begin(), v.end());
  return upload(d, dv);
}
// A buffer of n poison elements.
inline Buffer poisoned(Dtype d, uint64_t n) { return upload_bytes(d, ft::poison_bytes(dt(d), n)); }
// Overwrite the whole buffer with poison (before each call that reuses an output).
inline void repoison(Buffer& b) {
  const auto p = ft::poison_bytes(dt(b.dtype()), b.count());
  ctx().write_typed({.dst = b, .dtype = b.dtype(), .data = p.data(), .data_len = b.count()});
}

inline std::vector<uint8_t> read_bytes(const Buffer& b, uint64_t n) {
  std::vector<uint8_t> out(n * ft::dtype_size(dt(b.dtype())));
  if (n) ctx().read_typed({.src = b, .dtype = b.dtype(), .len = n, .data = out.data()});
  return out;
}
inline std::vector<uint8_t> read_bytes(const Buffer& b) { return read_bytes(b, b.count()); }
inline vec download(const Buffer& b) { return ft::decode(dt(b.dtype()), read_bytes(b)); }
inline vec slice(const vec& v, uint64_t off, uint64_t n) {
  return vec(v.begin() + static_cast<std::ptrdiff_t>(off), v.begin() + static_cast<std::ptrdiff_t>(off + n));
}

// ---------------------------------------------------------------- random inputs
inline vec rnd(Dtype d, uint64_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  return ft::uniform_dtype(dt(d), n, lo, hi, seed);
}

// ---------------------------------------------------------------- checks
// Class F / E comparison with the message in the failure report.
inline void expect_match(const vec& out, const vec& ref, Dtype d, uint64_t row_len, char cls,
                         const std::string& what = "") {
  const auto r = ft::compare(out, ref, dt(d), row_len, cls);
  INFO(what << (what.empty() ? "" : ": ") << r.message);
  CHECK(r.ok);
}

// Class E that treats any NaN as equal to any NaN (docs/spec.md keeps "NaN stays NaN" but does not fix
// the payload); every other element bitwise, zero signs included.
inline void expect_exact_nan_agnostic(vec out, vec ref, Dtype d, uint64_t row_len, const std::string& what = "") {
  REQUIRE(out.size() == ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(ref[i])) {
      INFO(what << ": element " << i << " must be NaN, got " << out[i]);
      CHECK(std::isnan(out[i]));
      out[i] = ref[i] = 0.0;
    }
  }
  expect_match(out, ref, d, row_len, 'E', what);
}

// Elements [off, off + n) of b were all written (no poison left).
inline void expect_written(const Buffer& b, uint64_t off, uint64_t n, const std::string& what = "") {
  uint64_t first = 0;
  const bool ok = ft::all_written(dt(b.dtype()), read_bytes(b), off, n, &first);
  INFO(what << ": element " << first << " of [" << off << ", " << off + n << ") still holds the poison");
  CHECK(ok);
}
// Elements [off, off + n) of b still hold the poison.
inline void expect_poison(const Buffer& b, uint64_t off, uint64_t n, const std::string& what = "") {
  uint64_t first = 0;
  const bool ok = ft::all_poison(dt(b.dtype()), read_bytes(b), off, n, &first);
  INFO(what << ": element " << first << " of [" << off << ", " << off + n << ") was overwritten");
  CHECK(ok);
}
inline void expect_all_poison(const Buffer& b, const std::string& what = "") { expect_poison(b, 0, b.count(), what); }

// Runs f, which must throw ferrum::Error with `code` and a message containing every needle.
inline void expect_error(const std::function<void()>& f, ferrum::ErrorCode code,
                         std::initializer_list<std::string> needles) {
  bool thrown = false;
  try {
    f();
  } catch (const ferrum::Error& e) {
    thrown = true;
    const std::string msg = e.what();
    INFO("message: " << msg);
    CHECK(e.code() == code);
    for (const std::string& n : needles) {
      INFO("message must contain '" << n << "'");
      CHECK(msg.find(n) != std::string::npos);
    }
  }
  INFO("expected a ferrum::Error with code " << ferrum::to_string(code));
  CHECK(thrown);
}


}  // namespace cputest

// The three activation dtypes, for GENERATE.
#define ACT_DTYPE() GENERATE(::ferrum::Dtype::f32, ::ferrum::Dtype::f16, ::ferrum::Dtype::bf16)
