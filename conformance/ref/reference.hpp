// ferrum test support — float64 references of the ops of docs/spec.md §3, §4 and §5.
//
// Written straight from the docs/spec.md formulas, independent of every plugin.
//
// Conventions (all functions, namespace ferrum::ref):
// * Parameters are the fields of the op's args struct in docs/spec.md order; device buffers are vectors of
//   the exact stored values converted to double (see quantize.hpp / rng.hpp *_dtype generators).
//     in X[...]        -> const std::vector<double>&
//     out / inout X    -> std::vector<double>&  — resized to at least the shape the op writes (new
//                         elements 0.0); elements the op does not write are left as given, so pass the
//                         buffer's previous contents where "other rows are untouched" matters.
//     host u32[n]      -> const std::vector<uint32_t>&
//     in idx[n]        -> const std::vector<int64_t>&   (device index buffers; I32 may be negative)
//     hostout u32[n]   -> std::vector<uint32_t>&
//     f32 fields       -> float (the value the plugin receives), flag -> uint32_t, u64 -> uint64_t.
// * Everything is computed in double with no rounding, except the roundings docs/spec.md prescribes
//   (§0.13): ops that store a sum in place (add_inplace, scaled_add_inplace, add_bias, the residual of
//   fused_add_rms_norm) take a trailing `int32_t dtype` and round what they store with
//   ferrum::testing::round_to(dtype, ·) (dtype 0 = no rounding). Outputs are otherwise NOT rounded;
//   compare.hpp's tolerance classes absorb the single output rounding.
// * Misuse that docs/spec.md calls INVALID_ARGUMENT (bad shapes, buffers too small, modes, host positions or
//   ids out of range, capacity overflow, GQA mismatch, non-finite scale/eps) throws
//   std::invalid_argument. A device index whose result docs/spec.md leaves unspecified throws
//   std::out_of_range (a test must not check such rows). Zero work (tokens = 0, ...) is a no-op.
// * Aliasing is allowed (out may be the same vector as an input): results are computed into a
//   temporary first.
#pragma once

#include "quantize.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace ferrum::ref {

using vec = std::vector<double>;

namespace detail {
inline void need(const vec& v, uint64_t n, const char* op, const char* field) {
  if (v.size() < n)
    throw std::invalid_argument(std::string(op) + ": " + field + " holds " + std::to_string(v.size()) +
                                " elements, needs " + std::to_string(n));
}
inline void fit(vec& v, uint64_t n) {
  if (v.size() < n) v.resize(n, 0.0);
}
inline void check(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string(op) + ": " + what);
}
}  // namespace detail

// ================================================================= §3 dense ops

// out[i, j] = Σ_p a[i, p]·b[j, p]; a [m, k], b [n, k], out [m, n]. k = 0 gives +0.0.
inline void gemm(const vec& a, const vec& b, vec& out, uint64_t m, uint64_t n, uint64_t k) {
  detail::need(a, m * k, "gemm", "a");
  detail::need(b, n * k, "gemm", "b");
  vec r(m * n);
  for (uint64_t i = 0; i < m; ++i)
    for (uint64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (uint64_t p = 0; p < k; ++p) s += a[i * k + p] * b[j * k + p];
      r[i * n + j] = s;
    }
  detail::fit(out, m * n);
  std::copy(r.begin(), r.end(), out.begin());
}

// out[r, i] = x[r, i]·w[i] / sqrt(mean_j x[r, j]² + eps)
inline void rms_norm(const vec& x, const vec& w, float eps, vec& out, uint64_t tokens, uint64_t dim) {
  if (tokens == 0) return;
  detail::check(dim > 0, "rms_norm", "dim = 0 with tokens > 0");
  detail::check(std::isfinite(eps) && eps >= 0.0f, "rms_norm", "eps must be finite and >= 0");
  detail::need(x, tokens * dim, "rms_norm", "x");
  detail::need(w, dim, "rms_norm", "w");
  vec r(tokens * dim);
  for (uint64_t t = 0; t < tokens; ++t) {
    double ss = 0.0;
    for (uint64_t i = 0; i < dim; ++i) ss += x[t * dim + i] * x[t * dim + i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + static_cast<double>(eps));
    for (uint64_t i = 0; i < dim; ++i) r[t * dim + i] = x[t * dim + i] * w[i] * inv;
  }
  detail::fit(out, tokens * dim);
  std::copy(r.begin(), r.end(), out.begin());
}

// residual ← round_dtype(residual + x); out = rms_norm(stored residual, w, eps).
inline void fused_add_rms_norm(vec& residual, const vec& x, const vec& w, float eps, vec& out, uint64_t tokens,
                               uint64_t dim, int32_t dtype) {
  if (tokens == 0) return;
  detail::check(dim > 0, "fused_add_rms_norm", "dim = 0 with tokens > 0");
  detail::need(residual, tokens * dim, "fused_add_rms_norm", "residual");
  detail::need(x, tokens * dim, "fused_add_rms_norm", "x");
  for (uint64_t i = 0; i < tokens * dim; ++i) residual[i] = testing::round_to(dtype, residual[i] + x[i]);
  rms_norm(residual, w, eps, out, tokens, dim);
}

// Two-pass population statistics: out = (x − μ)/sqrt(v + eps)·gamma + beta.
inline void layer_norm(const vec& x, const vec& gamma, const vec& beta, float eps, vec& out, uint64_t tokens,
                       uint64_t dim) {
  if (tokens == 0) return;
  detail::check(dim > 0, "layer_norm", "dim = 0 with tokens > 0");
  detail::check(std::isfinite(eps) && eps >= 0.0f, "layer_norm", "eps must be finite and >= 0");
  detail::need(x, tokens * dim, "layer_norm", "x");
  detail::need(gamma, dim, "layer_norm", "gamma");
  detail::need(beta, dim, "layer_norm", "beta");
  vec r(tokens * dim);
  const double d = static_cast<double>(dim);
  for (uint64_t t = 0; t < tokens; ++t) {
    const double* xr = &x[t * dim];
    double mu = 0.0;
    for (uint64_t i = 0; i < dim; ++i) mu += xr[i];
    mu /= d;
    double var = 0.0;
    for (uint64_t i = 0; i < dim; ++i) var += (xr[i] - mu) * (xr[i] - mu);
    var /= d;
    const double inv = 1.0 / std::sqrt(var + static_cast<double>(eps));
    for (uint64_t i = 0; i < dim; ++i) r[t * dim + i] = (xr[i] - mu) * inv * gamma[i] + beta[i];
  }
  detail::fit(out, tokens * dim);
  std::copy(r.begin(), r.end(), out.begin());
}

inline double gelu_scalar(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
inline double silu_scalar(double g) { return g / (1.0 + std::exp(-g)); }

// out = 0.5·x·(1 + erf(x/√2)).
inline void gelu(const vec& x, vec& out, uint64_t len) {
  detail::need(x, len, "gelu", "x");
  vec r(len);
  for (uint64_t i = 0; i < len; ++i) r[i] = gelu_scalar(x[i]);
  detail::fit(out, len);
  std::copy(r.begin(), r.end(), out.begin());
}

// residual[i] ← round_dtype(residual[i] + x[i]).
inline void add_inplace(vec& residual, const vec& x, uint64_t len, int32_t dtype) {
  detail::need(residual, len, "add_inplace", "residual");
  detail::need(x, len, "add_inplace", "x");
  const vec xs(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(len));  // x may be residual
  for (uint64_t i = 0; i < len; ++i) residual[i] = testing::round_to(dtype, residual[i] + xs[i]);
}

// dst[i] ← round_dtype(dst[i] + scale·src[i]).
inline void scaled_add_inplace(vec& dst, const vec& src, float scale, uint64_t len, int32_t dtype) {
  detail::check(std::isfinite(scale), "scaled_add_inplace", "scale must be finite");
  detail::need(dst, len, "scaled_add_inplace", "dst");
  detail::need(src, len, "scaled_add_inplace", "src");
  const vec s(src.begin(), src.begin() + static_cast<std::ptrdiff_t>(len));
  for (uint64_t i = 0; i < len; ++i) dst[i] = testing::round_to(dtype, dst[i] + static_cast<double>(scale) * s[i]);
}

// data[r, c] ← round_dtype(data[r, c] + bias[c]).
inline void add_bias(vec& data, const vec& bias, uint64_t rows, uint64_t cols, int32_t dtype) {
  detail::need(data, rows * cols, "add_bias", "data");
  detail::need(bias, cols, "add_bias", "bias");
  const vec b(bias.begin(), bias.begin() + static_cast<std::ptrdiff_t>(cols));
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t c = 0; c < cols; ++c) data[r * cols + c] = testing::round_to(dtype, data[r * cols + c] + b[c]);
}

// q = qkv[:, 0:q_dim], k = qkv[:, q_dim:q_dim+kv_dim], v = qkv[:, q_dim+kv_dim:]; token-major.
inline void split_qkv(const vec& qkv, vec& q, vec& k, vec& v, uint64_t tokens, uint64_t q_dim, uint64_t kv_dim) {
  const uint64_t row = q_dim + 2 * kv_dim;
  detail::need(qkv, tokens * row, "split_qkv", "qkv");
  vec rq(tokens * q_dim), rk(tokens * kv_dim), rv(tokens * kv_dim);
  for (uint64_t t = 0; t < tokens; ++t) {
    for (uint64_t i = 0; i < q_dim; ++i) rq[t * q_dim + i] = qkv[t * row + i];
    for (uint64_t i = 0; i < kv_dim; ++i) {
      rk[t * kv_dim + i] = qkv[t * row + q_dim + i];
      rv[t * kv_dim + i] = qkv[t * row + q_dim + kv_dim + i];
    }
  }
  detail::fit(q, rq.size()); std::copy(rq.begin(), rq.end(), q.begin());
  detail::fit(k, rk.size()); std::copy(rk.begin(), rk.end(), k.begin());
  detail::fit(v, rv.size()); std::copy(rv.begin(), rv.end(), v.begin());
}

// out[out_row_offset + t, i] = silu(gate_up[in_row_offset + t, i])·gate_up[in_row_offset + t, im + i].
inline void fused_silu_mul_split_strided(const vec& gate_up, uint64_t in_row_offset, vec& out,
                                         uint64_t out_row_offset, uint64_t tokens, uint64_t intermediate) {
  if (tokens == 0) return;
  const uint64_t im = intermediate;
  detail::need(gate_up, (in_row_offset + tokens) * 2 * im, "fused_silu_mul_split", "gate_up");
  vec r(tokens * im);
  for (uint64_t t = 0; t < tokens; ++t)
    for (uint64_t i = 0; i < im; ++i) {
      const double g = gate_up[(in_row_offset + t) * 2 * im + i];
      const double u = gate_up[(in_row_offset + t) * 2 * im + im + i];
      r[t * im + i] = silu_scalar(g) * u;
    }
  detail::fit(out, (out_row_offset + tokens) * im);
  std::copy(r.begin(), r.end(), out.begin() + static_cast<std::ptrdiff_t>(out_row_offset * im));
}
inline void fused_silu_mul_split(const vec& gate_up, vec& out, uint64_t tokens, uint64_t im) {
  fused_silu_mul_split_strided(gate_up, 0, out, 0, tokens, im);
}

// out[i, :] = table[ids[i], :]; vocab = table.size()/dim; id >= vocab is INVALID_ARGUMENT.
inline void embedding_lookup(const vec& table, const std::vector<uint32_t>& ids, uint64_t ids_len, vec& out,
                             uint64_t dim) {
  if (ids_len == 0) return;
  detail::check(dim > 0, "embedding_lookup", "dim = 0 with ids_len > 0");
  detail::check(ids.size() >= ids_len, "embedding_lookup", "ids shorter than ids_len");
  const uint64_t vocab = table.size() / dim;
  detail::fit(out, ids_len * dim);
  for (uint64_t i = 0; i < ids_len; ++i) {
    detail::check(ids[i] < vocab, "embedding_lookup", "id " + std::to_string(ids[i]) + " >= vocab");
    std::copy_n(table.begin() + static_cast<std::ptrdiff_t>(ids[i] * dim), dim,
                out.begin() + static_cast<std::ptrdiff_t>(i * dim));
  }
}

// Device ids: an id >= vocab or < 0 gives a row of +0.0. vocab = table.size()/dim.
inline void embedding_lookup_dev(const vec& table, const std::vector<int64_t>& ids, vec& out, uint64_t batch,
                                 uint64_t dim) {
  if (batch == 0) return;
  detail::check(dim > 0, "embedding_lookup_dev", "dim = 0 with batch > 0");
  detail::check(ids.size() >= batch, "embedding_lookup_dev", "ids shorter than batch");
  const auto vocab = static_cast<int64_t>(table.size() / dim);
  detail::fit(out, batch * dim);
  for (uint64_t i = 0; i < batch; ++i)
    for (uint64_t d = 0; d < dim; ++d)
      out[i * dim + d] = (ids[i] >= 0 && ids[i] < vocab) ? table[static_cast<uint64_t>(ids[i]) * dim + d] : 0.0;
}

// dst[(t·heads + h)·dim + d] = src[(h·tokens + t)·dim + d]
inline void transpose_head_to_token(const vec& src, vec& dst, uint64_t tokens, uint64_t heads, uint64_t dim) {
  detail::need(src, tokens * heads * dim, "transpose_head_to_token", "src");
  vec r(tokens * heads * dim);
  for (uint64_t h = 0; h < heads; ++h)
    for (uint64_t t = 0; t < tokens; ++t)
      for (uint64_t d = 0; d < dim; ++d) r[(t * heads + h) * dim + d] = src[(h * tokens + t) * dim + d];
  detail::fit(dst, r.size());
  std::copy(r.begin(), r.end(), dst.begin());
}

// dst[(h·tokens + t)·dim + d] = src[(t·heads + h)·dim + d]
inline void transpose_token_to_head(const vec& src, vec& dst, uint64_t tokens, uint64_t heads, uint64_t dim) {
  detail::need(src, tokens * heads * dim, "transpose_token_to_head", "src");
  vec r(tokens * heads * dim);
  for (uint64_t h = 0; h < heads; ++h)
    for (uint64_t t = 0; t < tokens; ++t)
      for (uint64_t d = 0; d < dim; ++d) r[(h * tokens + t) * dim + d] = src[(t * heads + h) * dim + d];
  detail::fit(dst, r.size());
  std::copy(r.begin(), r.end(), dst.begin());
}

// Smallest index of a non-NaN maximum (values compare as stored: −0.0 == +0.0, +inf wins);
// a row with no non-NaN element gives 0 (an all −inf row gives 0 too: index 0 is its first maximum).
inline uint32_t argmax_row(const double* row, uint64_t n) {
  uint32_t best = 0;
  bool have = false;
  for (uint64_t i = 0; i < n; ++i) {
    if (std::isnan(row[i])) continue;
    if (!have || row[i] > row[best]) { best = static_cast<uint32_t>(i); have = true; }
  }
  return best;
}
inline void argmax_rows(const vec& logits, uint64_t m, uint64_t n, std::vector<uint32_t>& out) {
  if (m == 0) return;
  detail::check(n > 0, "argmax_rows_f16", "n = 0 with m > 0");
  detail::need(logits, m * n, "argmax_rows_f16", "logits");
  if (out.size() < m) out.resize(m, 0);
  for (uint64_t r = 0; r < m; ++r) out[r] = argmax_row(&logits[r * n], n);
}
inline void argmax_rows_f16(const vec& logits, uint64_t m, uint64_t n, std::vector<uint32_t>& out) {
  argmax_rows(logits, m, n, out);
}

// ================================================================= §0.7 RoPE / qk transforms

// Number of positions a table holds: count / (head_dim/2).
inline uint64_t rope_rows(const vec& table, uint64_t head_dim) {
  return head_dim / 2 == 0 ? 0 : table.size() / (head_dim / 2);
}

// Standard tables (a host choice, not part of any op): cos/sin[p, i] = cos/sin(p · theta^(−2i/head_dim)).
inline void rope_tables(uint64_t rows, uint64_t head_dim, double theta, vec& cos, vec& sin) {
  const uint64_t half = head_dim / 2;
  cos.assign(rows * half, 0.0);
  sin.assign(rows * half, 0.0);
  for (uint64_t i = 0; i < half; ++i) {
    const double inv_freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    for (uint64_t p = 0; p < rows; ++p) {
      const double a = static_cast<double>(p) * inv_freq;
      cos[p * half + i] = std::cos(a);
      sin[p * half + i] = std::sin(a);
    }
  }
}

// Validates the fields of a qk transform (mode range, even D, eps, weight / table presence).
inline void check_qk_mode(const char* op, int32_t mode, uint64_t head_dim, float eps, const vec& norm_w,
                          const vec& cos, const vec& sin) {
  detail::check(mode >= 0 && mode <= 3, op, "qk_mode " + std::to_string(mode) + " outside 0..3");
  if (mode == 0) return;
  detail::check(head_dim % 2 == 0, op, "odd head_dim with RoPE");
  detail::check(cos.size() == sin.size() || rope_rows(cos, head_dim) == rope_rows(sin, head_dim), op,
                "cos and sin differ in rows");
  if (mode == 1) {
    detail::check(std::isfinite(eps) && eps >= 0.0f, op, "eps must be finite and >= 0");
    detail::need(norm_w, head_dim, op, "norm_w");
  }
}

// y = transform_mode(x, p) for one head vector of length head_dim (docs/spec.md §0.7). y may equal x.
// Throws std::invalid_argument for p >= rows (modes 1–3).
inline void qk_transform(const double* x, double* y, uint64_t head_dim, uint64_t p, const vec& norm_w,
                         const vec& cos, const vec& sin, float eps, int32_t mode) {
  check_qk_mode("qk_transform", mode, head_dim, eps, norm_w, cos, sin);
  vec xv(x, x + head_dim);
  if (mode == 0) { std::copy(xv.begin(), xv.end(), y); return; }
  const uint64_t half = head_dim / 2;
  const uint64_t rows = std::min(rope_rows(cos, head_dim), rope_rows(sin, head_dim));
  detail::check(p < rows, "qk_transform", "position " + std::to_string(p) + " >= table rows " + std::to_string(rows));
  if (mode == 1) {
    double ss = 0.0;
    for (double v : xv) ss += v * v;
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(head_dim) + static_cast<double>(eps));
    for (uint64_t d = 0; d < head_dim; ++d) xv[d] = xv[d] * norm_w[d] * inv;
  }
  const double* c = &cos[p * half];
  const double* s = &sin[p * half];
  if (mode == 1 || mode == 2) {  // NeoX
    for (uint64_t i = 0; i < half; ++i) {
      y[i] = xv[i] * c[i] - xv[i + half] * s[i];
      y[i + half] = xv[i + half] * c[i] + xv[i] * s[i];
    }
  } else {  // GPT-J interleaved
    for (uint64_t i = 0; i < half; ++i) {
      y[2 * i] = xv[2 * i] * c[i] - xv[2 * i + 1] * s[i];
      y[2 * i + 1] = xv[2 * i + 1] * c[i] + xv[2 * i] * s[i];
    }
  }
}
inline vec qk_transform(const vec& x, uint64_t p, const vec& norm_w, const vec& cos, const vec& sin, float eps,
                        int32_t mode) {
  vec y(x.size());
  qk_transform(x.data(), y.data(), x.size(), p, norm_w, cos, sin, eps, mode);
  return y;
}

// ================================================================= §4 QK-norm / RoPE family

// Token-major in [tokens, heads, hd], head-major out [heads, tokens, hd]; p = pos_offset + t.
inline void qk_norm_rope(const vec& input, const vec& norm_w, const vec& cos, const vec& sin, vec& output,
                         uint64_t tokens, uint64_t heads, uint64_t head_dim, uint64_t pos_offset, float eps,
                         int32_t mode) {
  check_qk_mode("qk_norm_rope", mode, head_dim, eps, norm_w, cos, sin);
  if (tokens == 0 || heads == 0) return;
  detail::check(head_dim > 0, "qk_norm_rope", "head_dim = 0");
  detail::need(input, tokens * heads * head_dim, "qk_norm_rope", "input");
  vec r(tokens * heads * head_dim);
  for (uint64_t t = 0; t < tokens; ++t)
    for (uint64_t h = 0; h < heads; ++h)
      qk_transform(&input[(t * heads + h) * head_dim], &r[(h * tokens + t) * head_dim], head_dim, pos_offset + t,
                   norm_w, cos, sin, eps, mode);
  detail::fit(output, r.size());
  std::copy(r.begin(), r.end(), output.begin());
}

// Item-major in and out; p = positions[i]. A position outside the tables throws std::out_of_range
// (the plugin's output for that item is unspecified, §0.11).
inline void qk_norm_rope_batched_per_item(const vec& input, const vec& norm_w, const vec& cos, const vec& sin,
                                          vec& output, const std::vector<int64_t>& positions, uint64_t m,
                                          uint64_t heads, uint64_t head_dim, float eps, int32_t mode) {
  check_qk_mode("qk_norm_rope_batched_per_item", mode, head_dim, eps, norm_w, cos, sin);
  if (m == 0 || heads == 0) return;
  detail::need(input, m * heads * head_dim, "qk_norm_rope_batched_per_item", "input");
  detail::check(positions.size() >= m, "qk_norm_rope_batched_per_item", "positions shorter than m");
  const uint64_t rows = std::min(rope_rows(cos, head_dim), rope_rows(sin, head_dim));
  vec r(m * heads * head_dim);
  for (uint64_t i = 0; i < m; ++i) {
    if (mode != 0 && (positions[i] < 0 || static_cast<uint64_t>(positions[i]) >= rows))
      throw std::out_of_range("qk_norm_rope_batched_per_item: position of item " + std::to_string(i) +
                              " outside the tables (output unspecified)");
    const uint64_t p = positions[i] < 0 ? 0 : static_cast<uint64_t>(positions[i]);
    for (uint64_t h = 0; h < heads; ++h)
      qk_transform(&input[(i * heads + h) * head_dim], &r[(i * heads + h) * head_dim], head_dim, p, norm_w, cos,
                   sin, eps, mode);
  }
  detail::fit(output, r.size());
  std::copy(r.begin(), r.end(), output.begin());
}

// Packed qkv rows -> head-major q_out [q_heads, tokens, hd], k_out / v_out [kv_heads, tokens, hd].
inline void split_qkv_norm_rope(const vec& qkv, const vec& q_norm_w, const vec& k_norm_w, const vec& cos,
                                const vec& sin, vec& q_out, vec& k_out, vec& v_out, uint64_t tokens,
                                uint64_t q_heads, uint64_t kv_heads, uint64_t head_dim, uint64_t pos_offset,
                                float eps, int32_t qk_mode) {
  check_qk_mode("split_qkv_norm_rope", qk_mode, head_dim, eps, q_norm_w, cos, sin);
  check_qk_mode("split_qkv_norm_rope", qk_mode, head_dim, eps, k_norm_w, cos, sin);
  if (tokens == 0) return;
  const uint64_t D = head_dim, row = (q_heads + 2 * kv_heads) * D;
  detail::need(qkv, tokens * row, "split_qkv_norm_rope", "qkv");
  vec rq(q_heads * tokens * D), rk(kv_heads * tokens * D), rv(kv_heads * tokens * D);
  for (uint64_t t = 0; t < tokens; ++t) {
    const double* src = &qkv[t * row];
    for (uint64_t h = 0; h < q_heads; ++h)
      qk_transform(src + h * D, &rq[(h * tokens + t) * D], D, pos_offset + t, q_norm_w, cos, sin, eps, qk_mode);
    for (uint64_t h = 0; h < kv_heads; ++h) {
      qk_transform(src + (q_heads + h) * D, &rk[(h * tokens + t) * D], D, pos_offset + t, k_norm_w, cos, sin, eps,
                   qk_mode);
      std::copy_n(src + (q_heads + kv_heads + h) * D, D, &rv[(h * tokens + t) * D]);
    }
  }
  detail::fit(q_out, rq.size()); std::copy(rq.begin(), rq.end(), q_out.begin());
  detail::fit(k_out, rk.size()); std::copy(rk.begin(), rk.end(), k_out.begin());
  detail::fit(v_out, rv.size()); std::copy(rv.begin(), rv.end(), v_out.begin());
}

// As split_qkv_norm_rope for q_out; K and V rows go to cache_k/cache_v [kv_heads, cache_capacity, hd]
// at rows cache_len + t; other cache rows untouched.
inline void split_qkv_norm_rope_into_cache(const vec& qkv, const vec& q_norm_w, const vec& k_norm_w, const vec& cos,
                                           const vec& sin, vec& q_out, vec& cache_k, vec& cache_v, uint64_t tokens,
                                           uint64_t q_heads, uint64_t kv_heads, uint64_t head_dim,
                                           uint64_t pos_offset, float eps, int32_t qk_mode, uint64_t cache_len,
                                           uint64_t cache_capacity) {
  detail::check(cache_len + tokens <= cache_capacity, "split_qkv_norm_rope_into_cache",
                "cache_len + tokens > cache_capacity");
  vec k, v;
  split_qkv_norm_rope(qkv, q_norm_w, k_norm_w, cos, sin, q_out, k, v, tokens, q_heads, kv_heads, head_dim,
                      pos_offset, eps, qk_mode);
  if (tokens == 0) return;
  const uint64_t D = head_dim;
  detail::fit(cache_k, kv_heads * cache_capacity * D);
  detail::fit(cache_v, kv_heads * cache_capacity * D);
  for (uint64_t h = 0; h < kv_heads; ++h)
    for (uint64_t t = 0; t < tokens; ++t)
      for (uint64_t d = 0; d < D; ++d) {
        cache_k[(h * cache_capacity + cache_len + t) * D + d] = k[(h * tokens + t) * D + d];
        cache_v[(h * cache_capacity + cache_len + t) * D + d] = v[(h * tokens + t) * D + d];
      }
}

// ================================================================= §5 contiguous KV and attention

// cache_k[h, cache_len + t, :] = new_k_head_major[h, t, :], likewise V.
inline void kv_cache_append_head_major(vec& cache_k, vec& cache_v, uint64_t cache_len, uint64_t cache_capacity,
                                       const vec& new_k_head_major, const vec& new_v_head_major,
                                       uint64_t new_tokens, uint64_t nkv, uint64_t hd) {
  detail::check(cache_len + new_tokens <= cache_capacity, "kv_cache_append_head_major",
                "cache_len + new_tokens > cache_capacity");
  if (new_tokens == 0) return;
  detail::need(new_k_head_major, nkv * new_tokens * hd, "kv_cache_append_head_major", "new_k_head_major");
  detail::need(new_v_head_major, nkv * new_tokens * hd, "kv_cache_append_head_major", "new_v_head_major");
  detail::fit(cache_k, nkv * cache_capacity * hd);
  detail::fit(cache_v, nkv * cache_capacity * hd);
  for (uint64_t h = 0; h < nkv; ++h)
    for (uint64_t t = 0; t < new_tokens; ++t)
      for (uint64_t d = 0; d < hd; ++d) {
        cache_k[(h * cache_capacity + cache_len + t) * hd + d] = new_k_head_major[(h * new_tokens + t) * hd + d];
        cache_v[(h * cache_capacity + cache_len + t) * hd + d] = new_v_head_major[(h * new_tokens + t) * hd + d];
      }
}

// §0.8 visible set: 0 <= j < L, (causal = 0 or j <= p), (W = 0 or j >= p − W + 1).
constexpr bool visible(uint64_t j, uint64_t p, uint64_t L, uint32_t causal, uint64_t window) {
  if (j >= L) return false;
  if (causal && j > p) return false;
  if (window != 0 && j + window < p + 1) return false;
  return true;
}

// §0.8 scale: σ = scale if scale != 0, else 1/sqrt(head_dim).
inline double attention_scale(float scale, uint64_t head_dim) {
  if (!std::isfinite(scale)) throw std::invalid_argument("attention: non-finite scale");
  return scale != 0.0f ? static_cast<double>(scale) : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

// GQA: query head h reads KV head h / (num_heads / num_kv_heads).
inline uint64_t kv_head_of(uint64_t h, uint64_t num_heads, uint64_t num_kv_heads) {
  return h / (num_heads / num_kv_heads);
}

// Generic single-query attention (§0.8) for every attention layout: krow(j) / vrow(j) return pointers
// to key j (qk_dim values) and value j (v_dim values). Keys j in 𝒱(p, L) are used; writes ATTN to
// out[0 .. v_dim) and returns LSE (natural log over scaled scores; −inf for an empty set, with out all +0.0).
template <class KRow, class VRow>
double attention_row(const double* q, uint64_t qk_dim, uint64_t v_dim, double sigma, uint64_t p, uint64_t L,
                     uint32_t causal, uint64_t window, KRow&& krow, VRow&& vrow, double* out) {
  std::vector<double> s;
  std::vector<uint64_t> idx;
  for (uint64_t j = 0; j < L; ++j) {
    if (!visible(j, p, L, causal, window)) continue;
    const double* k = krow(j);
    double dot = 0.0;
    for (uint64_t d = 0; d < qk_dim; ++d) dot += q[d] * k[d];
    s.push_back(sigma * dot);
    idx.push_back(j);
  }
  for (uint64_t d = 0; d < v_dim; ++d) out[d] = 0.0;
  if (s.empty()) return -std::numeric_limits<double>::infinity();
  double m = -std::numeric_limits<double>::infinity();
  for (double x : s) m = std::max(m, x);
  double z = 0.0;
  std::vector<double> acc(v_dim, 0.0);
  for (size_t n = 0; n < s.size(); ++n) {
    const double e = std::exp(s[n] - m);
    z += e;
    const double* v = vrow(idx[n]);
    for (uint64_t d = 0; d < v_dim; ++d) acc[d] += e * v[d];
  }
  for (uint64_t d = 0; d < v_dim; ++d) out[d] = acc[d] / z;
  return m + std::log(z);
}

// q/out batched head-major [batch, num_heads, q_len, hd]; k/v [batch, num_kv_heads, S, hd] with
// S = kv_seq_stride > 0 ? kv_seq_stride : kv_len; query i at p = pos_offset + i over keys 𝒱(p, kv_len).
// Optional `lse` receives [batch, num_heads, q_len] (not an output of this op; for other kits).
inline void flash_attention(const vec& q, const vec& k, const vec& v, vec& out, uint64_t batch, uint64_t q_len,
                            uint64_t kv_len, uint64_t pos_offset, uint64_t num_heads, uint64_t num_kv_heads,
                            uint64_t head_dim, uint32_t causal, float scale, uint64_t kv_seq_stride,
                            uint64_t sliding_window, vec* lse = nullptr) {
  const char* op = "flash_attention";
  detail::check(causal <= 1, op, "causal must be 0 or 1");
  detail::check(num_heads >= 1 && num_kv_heads >= 1 && num_heads % num_kv_heads == 0, op,
                "num_heads must be a positive multiple of num_kv_heads");
  const double sigma = attention_scale(scale, std::max<uint64_t>(head_dim, 1));
  const uint64_t S = kv_seq_stride > 0 ? kv_seq_stride : kv_len;
  detail::check(kv_len <= S, op, "kv_len > kv_seq_stride");
  if (batch == 0 || q_len == 0) return;
  detail::check(head_dim > 0, op, "head_dim = 0 with queries present");
  const uint64_t D = head_dim;
  detail::need(q, batch * num_heads * q_len * D, op, "q");
  detail::need(k, batch * num_kv_heads * S * D, op, "k");
  detail::need(v, batch * num_kv_heads * S * D, op, "v");
  vec r(batch * num_heads * q_len * D);
  if (lse) lse->assign(batch * num_heads * q_len, 0.0);
  for (uint64_t b = 0; b < batch; ++b)
    for (uint64_t h = 0; h < num_heads; ++h) {
      const uint64_t kvh = kv_head_of(h, num_heads, num_kv_heads);
      const double* kb = k.data() + (b * num_kv_heads + kvh) * S * D;  // k may be empty (kv_len = 0)
      const double* vb = v.data() + (b * num_kv_heads + kvh) * S * D;
      for (uint64_t i = 0; i < q_len; ++i) {
        const uint64_t row = (b * num_heads + h) * q_len + i;
        const double l = attention_row(
            &q[row * D], D, D, sigma, pos_offset + i, kv_len, causal, sliding_window,
            [&](uint64_t j) { return kb + j * D; }, [&](uint64_t j) { return vb + j * D; }, &r[row * D]);
        if (lse) (*lse)[row] = l;
      }
    }
  detail::fit(out, r.size());
  std::copy(r.begin(), r.end(), out.begin());
}

}  // namespace ferrum::ref
