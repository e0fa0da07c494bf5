// RopeTables: validated uploads of RoPE tables; the check of tables against an op's head_dim.
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <ferrum/common/check_support.hpp>
#include <ferrum/rope.hpp>

#include "invoke.hpp"

namespace ferrum {
namespace {

[[noreturn]] void fail(const Context& ctx, const char* what, const std::string& why) {
  detail::throw_status(FERRUM_STATUS_INVALID_ARGUMENT, what, detail::ContextAccess::site(ctx),
                       why.c_str());
}

std::string num(uint64_t v) { return std::to_string(v); }

// cos and sin must each hold exactly rows × cols values (an overflowing product holds none).
void check_shape(const Context& ctx, const char* what, std::span<const float> cos,
                 std::span<const float> sin, uint64_t rows, uint64_t cols, const char* shape) {
  if (rows == 0 || cols == 0)
    fail(ctx, what, std::string("arguments 'positions' and the row length: expected a shape ") +
                        shape + " with both sizes >= 1, given [" + num(rows) + ", " + num(cols) +
                        "]");
  const uint64_t need = common::shape_elems({rows, cols});
  for (auto [name, span] : {std::pair{"cos", cos}, std::pair{"sin", sin}}) {
    if (span.size() != need)
      fail(ctx, what, std::string("argument '") + name + "': expected " +
                          (need == UINT64_MAX ? std::string("2^64 (overflow)") : num(need)) +
                          " values for the shape " + shape + " = [" + num(rows) + ", " +
                          num(cols) + "], given " + num(span.size()));
  }
}

void check_dtype(const Context& ctx, const char* what, Dtype dtype) {
  if (dtype != Dtype::f32 && dtype != Dtype::f16 && dtype != Dtype::bf16)
    fail(ctx, what, std::string("argument 'dtype': expected f32, f16 or bf16 (a RoPE table), given ") +
                        std::string(to_string(dtype)));
}

Buffer upload(Context& ctx, std::span<const float> v, Dtype dtype) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(v.data());
  return ctx.from_weight_bytes({.raw = std::span<const uint8_t>(bytes, v.size_bytes()), .src_dtype = Dtype::f32, .dst_dtype = dtype});
}

}  // namespace

const char* to_string(QkMode mode) noexcept {
  switch (mode) {
    case QkMode::copy: return "copy";
    case QkMode::rms_norm_neox: return "rms_norm_neox";
    case QkMode::neox: return "neox";
    case QkMode::gptj: return "gptj";
  }
  return "invalid";
}

RopeTables::RopeTables(Buffer cos, Buffer sin, uint64_t positions, uint64_t half) noexcept
    : cos_(std::move(cos)), sin_(std::move(sin)), positions_(positions), half_(half) {}

RopeTables RopeTables::from_half(Context& ctx, std::span<const float> cos,
                                 std::span<const float> sin, uint64_t positions,
                                 uint64_t half_dim, Dtype dtype) {
  constexpr const char* what = "RopeTables::from_half";
  check_dtype(ctx, what, dtype);
  check_shape(ctx, what, cos, sin, positions, half_dim, "[positions, half_dim]");
  return RopeTables(upload(ctx, cos, dtype), upload(ctx, sin, dtype), positions, half_dim);
}

RopeTables RopeTables::from_hf_duplicated(Context& ctx, std::span<const float> cos,
                                          std::span<const float> sin, uint64_t positions,
                                          uint64_t head_dim, Dtype dtype) {
  constexpr const char* what = "RopeTables::from_hf_duplicated";
  check_dtype(ctx, what, dtype);
  if (head_dim % 2)
    fail(ctx, what, "argument 'head_dim': expected an even value, given " + num(head_dim));
  check_shape(ctx, what, cos, sin, positions, head_dim, "[positions, head_dim]");
  const uint64_t half = head_dim / 2;
  // Validated above: positions × head_dim values exist, so positions × half fit in memory too.
  std::vector<float> hc(static_cast<size_t>(positions * half)), hs(hc.size());
  for (auto [name, src, dst] : {std::tuple{"cos", cos, &hc}, std::tuple{"sin", sin, &hs}}) {
    for (uint64_t p = 0; p < positions; ++p) {
      const float* row = src.data() + p * head_dim;
      for (uint64_t i = 0; i < half; ++i) {
        if (std::memcmp(&row[i], &row[i + half], sizeof(float)) != 0)
          fail(ctx, what,
               std::string("argument '") + name + "': expected Hugging Face duplicated-half rows (" +
                   name + "[p, i] == " + name + "[p, i + head_dim/2]), given row " + num(p) +
                   " column " + num(i) + ": " + std::to_string(row[i]) + " vs column " +
                   num(i + half) + ": " + std::to_string(row[i + half]) +
                   " (tables already in [positions, head_dim/2] layout go to from_half)");
        (*dst)[p * half + i] = row[i];
      }
    }
  }
  return RopeTables(upload(ctx, hc, dtype), upload(ctx, hs, dtype), positions, half);
}

void Context::check_rope(Op op, const RopeTables& rope, uint64_t head_dim, QkMode mode) const {
  if (mode != QkMode::copy && !rope)
    detail::throw_status(FERRUM_STATUS_INVALID_ARGUMENT, op_name(op), {library_.get(), api_, ctx_},
                         (std::string("argument 'rope': expected RoPE tables for mode ") +
                          to_string(mode) + ", given empty tables")
                             .c_str());
  if (rope && rope.head_dim() != head_dim)
    detail::throw_status(
        FERRUM_STATUS_INVALID_ARGUMENT, op_name(op), {library_.get(), api_, ctx_},
        (std::string("argument 'rope': expected tables of half_dim head_dim/2 = ") +
         std::to_string(head_dim / 2) + ", given tables of shape [positions, half_dim] = [" +
         std::to_string(rope.positions()) + ", " + std::to_string(rope.half_dim()) + "]")
            .c_str());
}

void Context::check_rope(Op op, const RopeTables* rope, const Buffer* cos, const Buffer* sin,
                         uint64_t head_dim, QkMode mode) const {
  if (!rope) return;  // raw tables (or none): the plugin checks them
  if (cos || sin)
    detail::throw_status(FERRUM_STATUS_INVALID_ARGUMENT, op_name(op), {library_.get(), api_, ctx_},
                         "arguments 'rope' and 'cos'/'sin': expected the tables one way, given both "
                         "RopeTables and raw cos/sin buffers");
  check_rope(op, *rope, head_dim, mode);
}

}  // namespace ferrum
