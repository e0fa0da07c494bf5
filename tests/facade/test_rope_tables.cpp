// Plausible host mistakes in the qk-norm/RoPE family fail loudly (CPU plugin, through the facade):
//   - Hugging Face [positions, head_dim] tables where the ops read [positions, head_dim/2];
//   - QK-norm weights passed with a mode that does not apply them;
//   - the rotation chosen by a bare int (GPT-J vs NeoX): the RopeTables overloads take a QkMode.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <ferrum/ferrum.hpp>

#include "seeded.hpp"

using ferrum::Backend, ferrum::Buffer, ferrum::Context, ferrum::Dtype, ferrum::Error;
using ferrum::ErrorCode, ferrum::QkMode, ferrum::RopeTables;
using Catch::Matchers::Contains;

namespace {

constexpr uint64_t kPos = 6, kD = 8, kHalf = kD / 2, kHeads = 2, kTokens = 3, kPos0 = 2;

// Tables in the ops' layout [kPos, kHalf] and the Hugging Face layout [kPos, kD] (rows doubled).
struct Tables {
  std::vector<float> cos, sin, hf_cos, hf_sin;
};
Tables make_tables() {
  Tables t;
  for (uint64_t p = 0; p < kPos; ++p) {
    for (uint64_t i = 0; i < kHalf; ++i) {
      const double f = std::pow(10000.0, -2.0 * double(i) / double(kD));
      t.cos.push_back(float(std::cos(double(p) * f)));
      t.sin.push_back(float(std::sin(double(p) * f)));
    }
    for (int rep = 0; rep < 2; ++rep)
      for (uint64_t i = 0; i < kHalf; ++i) {
        t.hf_cos.push_back(t.cos[p * kHalf + i]);
        t.hf_sin.push_back(t.sin[p * kHalf + i]);
      }
  }
  return t;
}

// Host reference of modes neox / gptj for qk_norm_rope: token-major in, head-major out.
std::vector<float> reference(const std::vector<float>& x, const Tables& t, QkMode mode) {
  std::vector<float> y(x.size());
  for (uint64_t tok = 0; tok < kTokens; ++tok)
    for (uint64_t h = 0; h < kHeads; ++h) {
      const float* v = &x[(tok * kHeads + h) * kD];
      float* o = &y[(h * kTokens + tok) * kD];
      const uint64_t p = kPos0 + tok;
      for (uint64_t i = 0; i < kHalf; ++i) {
        const double c = t.cos[p * kHalf + i], s = t.sin[p * kHalf + i];
        const uint64_t a = mode == QkMode::neox ? i : 2 * i, b = mode == QkMode::neox ? i + kHalf : 2 * i + 1;
        o[a] = float(v[a] * c - v[b] * s);
        o[b] = float(v[b] * c + v[a] * s);
      }
    }
  return y;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

template <class F>
std::string error_of(F&& f, ErrorCode code) {
  try {
    f();
  } catch (const Error& e) {
    CHECK(e.code() == code);
    return e.what();
  }
  FAIL("expected a ferrum::Error");
  return {};
}

// The mode of the RopeTables overloads is a QkMode: a bare int does not compile.
template <class M>
concept RopeCallableWith = requires(Context& c, const Buffer& in, Buffer& out, const RopeTables& r, M m) {
  c.qk_norm_rope({.input = in, .norm_w = nullptr, .rope = &r, .output = out, .tokens = kTokens, .heads = kHeads, .head_dim = kD, .pos_offset = kPos0, .eps = 1e-6f, .mode = m});
};
static_assert(RopeCallableWith<QkMode>);
static_assert(!RopeCallableWith<int>);
static_assert(!RopeCallableWith<int32_t>);
static_assert(!std::is_convertible_v<int, QkMode>);
// Tables come only from the named constructors (which validate the declared shape).
static_assert(!std::is_constructible_v<RopeTables, Buffer, Buffer, uint64_t, uint64_t>);

}  // namespace

TEST_CASE("RopeTables: Hugging Face tables are refused as the ops' layout, converted when declared",
          "[facade][rope]") {
  Backend cpu = Backend::load("cpu");
  Context ctx = cpu.create_context({}, Dtype::f32);
  const Tables t = make_tables();

  // The mistake: HF [pos, head_dim] tables declared as [pos, head_dim/2].
  const std::string e1 = error_of(
      [&] { (void)RopeTables::from_half(ctx, t.hf_cos, t.hf_sin, kPos, kHalf, Dtype::f32); },
      ErrorCode::invalid_argument);
  CHECK_THAT(e1, Contains("RopeTables::from_half") && Contains("argument 'cos'") &&
                     Contains("expected 24 values") && Contains("[positions, half_dim] = [6, 4]") &&
                     Contains("given 48"));
  // ... or declared with half_dim = head_dim to make the sizes agree: the op refuses tables
  // whose half_dim is not head_dim / 2.
  RopeTables wrong_half = RopeTables::from_half(ctx, t.hf_cos, t.hf_sin, kPos, kD, Dtype::f32);
  const std::vector<float> x = seeded(kTokens * kHeads * kD, 11);
  Buffer in = ctx.from_slice(x), out = ctx.alloc(x.size());
  const std::string e2 = error_of(
      [&] { ctx.qk_norm_rope({.input = in, .norm_w = nullptr, .rope = &wrong_half, .output = out, .tokens = kTokens, .heads = kHeads, .head_dim = kD, .pos_offset = kPos0, .eps = 1e-6f, .mode = QkMode::neox}); },
      ErrorCode::invalid_argument);
  CHECK_THAT(e2, Contains("qk_norm_rope") && Contains("argument 'rope'") &&
                     Contains("half_dim head_dim/2 = 4") && Contains("[6, 8]"));

  // Declared as HF: checked to be duplicated, converted, and then equal to the ops' layout.
  RopeTables half = RopeTables::from_half(ctx, t.cos, t.sin, kPos, kHalf, Dtype::f32);
  RopeTables hf = RopeTables::from_hf_duplicated(ctx, t.hf_cos, t.hf_sin, kPos, kD, Dtype::f32);
  CHECK(hf.positions() == kPos);
  CHECK(hf.half_dim() == kHalf);
  CHECK(ctx.to_vec(hf.cos(), kPos * kHalf) == t.cos);
  CHECK(ctx.to_vec(hf.sin(), kPos * kHalf) == t.sin);
  ctx.qk_norm_rope({.input = in, .norm_w = nullptr, .rope = &half, .output = out, .tokens = kTokens, .heads = kHeads, .head_dim = kD, .pos_offset = kPos0, .eps = 1e-6f, .mode = QkMode::neox});
  const std::vector<float> y_half = ctx.to_vec(out, x.size());
  ctx.qk_norm_rope({.input = in, .norm_w = nullptr, .rope = &hf, .output = out, .tokens = kTokens, .heads = kHeads, .head_dim = kD, .pos_offset = kPos0, .eps = 1e-6f, .mode = QkMode::neox});
  CHECK(ctx.to_vec(out, x.size()) == y_half);
  CHECK(max_abs_diff(y_half, reference(x, t, QkMode::neox)) < 1e-5);

  // Tables that are not duplicated are not HF tables: refused, naming row and column.
  std::vector<float> not_hf = t.hf_cos;
  not_hf[3 * kD + kHalf + 1] += 0.5f;
  const std::string e3 = error_of(
      [&] { (void)RopeTables::from_hf_duplicated(ctx, not_hf, t.hf_sin, kPos, kD, Dtype::f32); },
      ErrorCode::invalid_argument);
  CHECK_THAT(e3, Contains("argument 'cos'") && Contains("row 3 column 1") && Contains("from_half"));
  // Odd head_dim, non-float dtype, empty shape.
  CHECK_THAT(error_of([&] { (void)RopeTables::from_hf_duplicated(ctx, t.hf_cos, t.hf_sin, kPos * 8, 6, Dtype::f32); },
                      ErrorCode::invalid_argument),
             Contains("'head_dim'") || Contains("argument 'cos'"));
  CHECK_THAT(error_of([&] { (void)RopeTables::from_half(ctx, t.cos, t.sin, kPos, kHalf, Dtype::i32); },
                      ErrorCode::invalid_argument),
             Contains("argument 'dtype'"));
  CHECK_THAT(error_of([&] { (void)RopeTables::from_half(ctx, {}, {}, 0, kHalf, Dtype::f32); },
                      ErrorCode::invalid_argument),
             Contains("'positions'"));
  // An empty RopeTables is only for QkMode::copy.
  const RopeTables empty;
  CHECK_THAT(error_of([&] { ctx.qk_norm_rope({.input = in, .norm_w = nullptr, .rope = &empty, .output = out, .tokens = kTokens, .heads = kHeads, .head_dim = kD, .pos_offset = kPos0, .eps = 1e-6f, .mode = QkMode::gptj}); },
                      ErrorCode::invalid_argument),
             Contains("expected RoPE tables for mode gptj"));
}

TEST_CASE("RopeTables: f16 tables are converted from host f32", "[facade][rope]") {
  Backend cpu = Backend::load("cpu");
  Context ctx = cpu.create_context({}, Dtype::f16);
  const Tables t = make_tables();
  RopeTables hf = RopeTables::from_hf_duplicated(ctx, t.hf_cos, t.hf_sin, kPos, kD, Dtype::f16);
  CHECK(hf.dtype() == Dtype::f16);
  const std::vector<float> back = ctx.to_vec(hf.cos(), kPos * kHalf);
  CHECK(max_abs_diff(back, t.cos) < 1e-3);
}

TEST_CASE("Named RoPE arguments: RopeTables or raw cos/sin, not both", "[facade][rope]") {
  Backend cpu = Backend::load("cpu");
  Context ctx = cpu.create_context({}, Dtype::f32);
  const Tables t = make_tables();
  RopeTables rope = RopeTables::from_half(ctx, t.cos, t.sin, kPos, kHalf, Dtype::f32);
  const std::vector<float> x = seeded(kTokens * kHeads * kD, 15);
  Buffer in = ctx.from_slice(x), out = ctx.alloc(x.size());
  const std::string e = error_of(
      [&] {
        ctx.qk_norm_rope({.input = in, .rope = &rope, .cos = &rope.cos(), .output = out, .tokens = kTokens,
                          .heads = kHeads, .head_dim = kD, .pos_offset = kPos0, .mode = QkMode::neox});
      },
      ErrorCode::invalid_argument);
  CHECK_THAT(e, Contains("qk_norm_rope") && Contains("arguments 'rope' and 'cos'/'sin'") &&
                    Contains("given both"));
  // The raw tables give the same numbers as the RopeTables holding them.
  ctx.qk_norm_rope({.input = in, .rope = &rope, .output = out, .tokens = kTokens, .heads = kHeads,
                    .head_dim = kD, .pos_offset = kPos0, .mode = QkMode::neox});
  const std::vector<float> typed = ctx.to_vec(out, x.size());
  Buffer out_raw = ctx.alloc(x.size());
  ctx.qk_norm_rope({.input = in, .cos = &rope.cos(), .sin = &rope.sin(), .output = out_raw, .tokens = kTokens,
                    .heads = kHeads, .head_dim = kD, .pos_offset = kPos0, .mode = QkMode::neox});
  CHECK(ctx.to_vec(out_raw, x.size()) == typed);
  CHECK(max_abs_diff(typed, reference(x, t, QkMode::neox)) < 1e-5);
}

TEST_CASE("QkMode names the rotation: neox and gptj differ and each matches its reference",
          "[facade][rope]") {
  Backend cpu = Backend::load("cpu");
  Context ctx = cpu.create_context({}, Dtype::f32);
  const Tables t = make_tables();
  RopeTables rope = RopeTables::from_half(ctx, t.cos, t.sin, kPos, kHalf, Dtype::f32);
  const std::vector<float> x = seeded(kTokens * kHeads * kD, 12);
  Buffer in = ctx.from_slice(x), out = ctx.alloc(x.size());
  ctx.qk_norm_rope({.input = in, .norm_w = nullptr, .rope = &rope, .output = out, .tokens = kTokens, .heads = kHeads, .head_dim = kD, .pos_offset = kPos0, .eps = 1e-6f, .mode = QkMode::neox});
  const std::vector<float> neox = ctx.to_vec(out, x.size());
  ctx.qk_norm_rope({.input = in, .norm_w = nullptr, .rope = &rope, .output = out, .tokens = kTokens, .heads = kHeads, .head_dim = kD, .pos_offset = kPos0, .eps = 1e-6f, .mode = QkMode::gptj});
  const std::vector<float> gptj = ctx.to_vec(out, x.size());
  CHECK(max_abs_diff(neox, reference(x, t, QkMode::neox)) < 1e-5);
  CHECK(max_abs_diff(gptj, reference(x, t, QkMode::gptj)) < 1e-5);
  CHECK(max_abs_diff(neox, gptj) > 1e-2);
  CHECK(std::string(ferrum::to_string(QkMode::rms_norm_neox)) == "rms_norm_neox");
}

TEST_CASE("QK-norm weights passed with a mode that ignores them are refused", "[facade][rope]") {
  Backend cpu = Backend::load("cpu");
  Context ctx = cpu.create_context({}, Dtype::f32);
  const Tables t = make_tables();
  RopeTables rope = RopeTables::from_half(ctx, t.cos, t.sin, kPos, kHalf, Dtype::f32);
  const std::vector<float> x = seeded(kTokens * kHeads * kD, 13);
  Buffer in = ctx.from_slice(x), out = ctx.alloc(x.size()), w = ctx.from_slice(seeded(kD, 14));
  for (QkMode mode : {QkMode::copy, QkMode::neox, QkMode::gptj}) {
    const std::string e = error_of(
        [&] { ctx.qk_norm_rope({.input = in, .norm_w = &w, .rope = &rope, .output = out, .tokens = kTokens, .heads = kHeads, .head_dim = kD, .pos_offset = kPos0, .eps = 1e-6f, .mode = mode}); },
        ErrorCode::invalid_argument);
    CHECK_THAT(e, Contains("qk_norm_rope: argument 'norm_w'") && Contains("expected NULL with mode " +
                                                                          std::to_string(int(mode))));
    // The same through the int form.
    CHECK_THAT(error_of([&] { ctx.qk_norm_rope({.input = in, .norm_w = &w, .cos = rope.cos_ptr(), .sin = rope.sin_ptr(), .output = out, .tokens = kTokens, .heads = kHeads, .head_dim = kD,
                                               .pos_offset = kPos0, .eps = 1e-6f, .mode = mode}); },
                        ErrorCode::invalid_argument),
               Contains("argument 'norm_w'"));
  }
  // split_qkv_norm_rope: each of the two weights is named.
  const uint64_t qh = 2, kvh = 1, T = kTokens, W = (qh + 2 * kvh) * kD;
  Buffer qkv = ctx.from_slice(seeded(T * W, 15)), q = ctx.alloc(T * qh * kD), k = ctx.alloc(T * kvh * kD),
         v = ctx.alloc(T * kvh * kD);
  CHECK_THAT(error_of([&] { ctx.split_qkv_norm_rope({.qkv = qkv, .q_norm_w = &w, .k_norm_w = nullptr, .rope = &rope, .q_out = q, .k_out = k, .v_out = v, .tokens = T, .q_heads = qh, .kv_heads = kvh, .head_dim = kD, .pos_offset = kPos0, .eps = 1e-6f,
                                                    .qk_mode = QkMode::neox}); },
                      ErrorCode::invalid_argument),
             Contains("split_qkv_norm_rope: argument 'q_norm_w'"));
  CHECK_THAT(error_of([&] { ctx.split_qkv_norm_rope({.qkv = qkv, .q_norm_w = nullptr, .k_norm_w = &w, .rope = &rope, .q_out = q, .k_out = k, .v_out = v, .tokens = T, .q_heads = qh, .kv_heads = kvh, .head_dim = kD, .pos_offset = kPos0, .eps = 1e-6f,
                                                    .qk_mode = QkMode::gptj}); },
                      ErrorCode::invalid_argument),
             Contains("split_qkv_norm_rope: argument 'k_norm_w'"));
  // Mode rms_norm_neox applies the weights and takes them.
  ctx.qk_norm_rope({.input = in, .norm_w = &w, .rope = &rope, .output = out, .tokens = kTokens, .heads = kHeads, .head_dim = kD, .pos_offset = kPos0, .eps = 1e-6f, .mode = QkMode::rms_norm_neox});
  ctx.split_qkv_norm_rope({.qkv = qkv, .q_norm_w = &w, .k_norm_w = &w, .rope = &rope, .q_out = q, .k_out = k, .v_out = v, .tokens = T, .q_heads = qh, .kv_heads = kvh, .head_dim = kD, .pos_offset = kPos0, .eps = 1e-6f, .qk_mode = QkMode::rms_norm_neox});
}
