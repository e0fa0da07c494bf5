// ferrum facade — RoPE tables and the qk-norm/RoPE mode, made explicit so that a plausible
// host mistake fails with an Error instead of giving wrong numbers:
//   - tables in the Hugging Face layout ([positions, head_dim], each row cat(freqs, freqs)) where
//     the ops expect [positions, head_dim / 2];
//   - the GPT-J (interleaved) rotation where the model uses NeoX (halves), or the reverse;
//   - QK-norm weights passed with a mode that does not apply them (the plugins refuse those).
//
// The ops of the qk-norm/RoPE family take `.rope = &tables` (a `const RopeTables*`) and a `QkMode`
// in their named arguments (args_gen.hpp); the tables are checked against head_dim before the op runs.
#pragma once

#include <cstdint>
#include <span>

#include <ferrum/export.hpp>
#include <ferrum/ferrum_base.h>
#include <ferrum/handles.hpp>
#include <ferrum/types.hpp>

namespace ferrum {

class Context;

// What an op of the qk-norm/RoPE family does to each head vector x of length head_dim = D at
// position p. No default: the rotation style must be chosen by name. Same values as
// FERRUM_QK_MODE_*.
enum class QkMode : int32_t {
  copy = FERRUM_QK_MODE_COPY,                // y = x; reads no table and no weight
  rms_norm_neox = FERRUM_QK_MODE_NORM_NEOX,  // RMSNorm with the [D] weight, then NeoX rotation
  neox = FERRUM_QK_MODE_NEOX,                // NeoX ("rotate_half"): pairs x[i], x[i + D/2]
                                             // (Llama, Qwen, Mistral; Hugging Face's default)
  gptj = FERRUM_QK_MODE_GPTJ,                // GPT-J: interleaved pairs x[2i], x[2i + 1]
};

// "copy", "rms_norm_neox", "neox", "gptj"; "invalid" otherwise.
FERRUM_API const char* to_string(QkMode mode) noexcept;

// The cos and sin tables of the qk-norm/RoPE ops, in the one layout they read:
// [positions, half_dim] row-major, row p holding the values for absolute position p, with
// half_dim = head_dim / 2 (cos[p, i] = cos(p · inv_freq[i]) for the host's frequencies).
// Made only through the named constructors, which validate the declared shape against the host
// data. Move-only (owns two Buffers).
class FERRUM_API RopeTables {
 public:
  RopeTables() noexcept = default;  // empty: only for QkMode::copy

  // Tables already in the ops' layout: `cos` and `sin` hold exactly positions × half_dim values.
  // `dtype` is the table dtype on the device (f32, or the context's activation dtype).
  static RopeTables from_half(Context& ctx, std::span<const float> cos, std::span<const float> sin,
                              uint64_t positions, uint64_t half_dim, Dtype dtype);

  // Hugging Face layout: positions × head_dim values, each row the frequencies twice
  // (cat(freqs, freqs), as transformers' rotary embedding returns them). Every row is checked
  // to be duplicated, then its first half is kept. A table that is not duplicated is an Error
  // (it is not an HF table, or head_dim is wrong).
  static RopeTables from_hf_duplicated(Context& ctx, std::span<const float> cos,
                                       std::span<const float> sin, uint64_t positions,
                                       uint64_t head_dim, Dtype dtype);

  explicit operator bool() const noexcept { return static_cast<bool>(cos_); }
  uint64_t positions() const noexcept { return positions_; }
  uint64_t half_dim() const noexcept { return half_; }
  uint64_t head_dim() const noexcept { return 2 * half_; }
  Dtype dtype() const noexcept { return cos_.dtype(); }
  const Buffer& cos() const noexcept { return cos_; }
  const Buffer& sin() const noexcept { return sin_; }
  // The buffers as op arguments: NULL when empty.
  const Buffer* cos_ptr() const noexcept { return cos_ ? &cos_ : nullptr; }
  const Buffer* sin_ptr() const noexcept { return sin_ ? &sin_ : nullptr; }

 private:
  RopeTables(Buffer cos, Buffer sin, uint64_t positions, uint64_t half) noexcept;
  Buffer cos_, sin_;
  uint64_t positions_ = 0;
  uint64_t half_ = 0;
};

}  // namespace ferrum
