// ferrum test support — GGUF block formats (docs/spec.md §11.1): an independent decoder, written from the
// spec's formulas alone, and an encoder of random valid blocks for tests.
//
// Decoding (namespace ferrum::ref): every weight is computed from the exact f16 fields in double and
// rounded once to f32, which is the value §11.1 defines (each product is exact; the one rounding is
// the final addition or subtraction). `gguf_dequantize` returns those f32 values as doubles.
// `gguf_matmul` is the float64 `out = a · Wᵀ` over them (no further rounding; §0.13).
//
// Encoding (namespace ferrum::testing): `random_gguf` fills n_rows × n_cols/QK blocks with random
// quants and scales and with f16 `d`/`dmin` fields drawn from ranges that keep the weights O(0.1..1).
// Misuse (unknown type, n_cols % QK, wrong byte count) throws std::invalid_argument.
#pragma once

#include "quantize.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace ferrum::testing {

enum GgufType : int32_t { kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14 };

inline const std::vector<int32_t>& gguf_types() {
  static const std::vector<int32_t> t = {kQ4_0, kQ4_1, kQ8_0, kQ4_K, kQ5_K, kQ6_K};
  return t;
}

inline const char* gguf_type_name(int32_t t) {
  switch (t) {
    case kQ4_0: return "q4_0";
    case kQ4_1: return "q4_1";
    case kQ8_0: return "q8_0";
    case kQ4_K: return "q4_k";
    case kQ5_K: return "q5_k";
    case kQ6_K: return "q6_k";
    default: return "unknown";
  }
}

// Weights per block (QK), 0 for an unknown type.
inline uint64_t gguf_qk(int32_t t) {
  switch (t) {
    case kQ4_0: case kQ4_1: case kQ8_0: return 32;
    case kQ4_K: case kQ5_K: case kQ6_K: return 256;
    default: return 0;
  }
}

// Bytes per block, 0 for an unknown type.
inline uint64_t gguf_block_bytes(int32_t t) {
  switch (t) {
    case kQ4_0: return 18;
    case kQ4_1: return 20;
    case kQ8_0: return 34;
    case kQ4_K: return 144;
    case kQ5_K: return 176;
    case kQ6_K: return 210;
    default: return 0;
  }
}

inline uint64_t gguf_byte_len(int32_t t, uint64_t n_rows, uint64_t n_cols) {
  const uint64_t qk = gguf_qk(t);
  if (qk == 0) throw std::invalid_argument("gguf: unknown type " + std::to_string(t));
  if (n_cols % qk) throw std::invalid_argument("gguf: n_cols % QK != 0");
  return n_rows * (n_cols / qk) * gguf_block_bytes(t);
}

// unit_from_bits of rng.hpp; a local copy keeps this header self-contained.
inline double unit_from_bits_local(uint64_t x) { return static_cast<double>(x >> 11) * 0x1.0p-53; }

// Random valid blocks for a [n_rows, n_cols] matrix of type t.
inline std::vector<uint8_t> random_gguf(int32_t t, uint64_t n_rows, uint64_t n_cols, uint64_t seed) {
  const uint64_t len = gguf_byte_len(t, n_rows, n_cols);
  std::mt19937_64 g(seed);
  std::vector<uint8_t> b(len);
  for (auto& x : b) x = static_cast<uint8_t>(g() >> 56);
  const uint64_t bb = gguf_block_bytes(t), nb = len / bb;
  auto unit = [&] { return unit_from_bits_local(g()); };
  auto put_f16 = [&](uint8_t* p, double v) {
    const uint16_t h = to_f16_bits(v);
    p[0] = static_cast<uint8_t>(h & 0xFF);
    p[1] = static_cast<uint8_t>(h >> 8);
  };
  for (uint64_t i = 0; i < nb; ++i) {
    uint8_t* blk = b.data() + i * bb;
    const double sgn = (g() & 1) ? -1.0 : 1.0;
    switch (t) {
      case kQ4_0: put_f16(blk, sgn * (0.02 + 0.1 * unit())); break;
      case kQ4_1: put_f16(blk, 0.02 + 0.1 * unit()); put_f16(blk + 2, -0.8 + 0.6 * unit()); break;
      case kQ8_0: put_f16(blk, sgn * (0.001 + 0.01 * unit())); break;
      case kQ4_K:
      case kQ5_K:
        put_f16(blk, 0.0005 + 0.002 * unit());
        put_f16(blk + 2, 0.0005 + 0.002 * unit());
        break;
      case kQ6_K: {
        put_f16(blk + 208, sgn * (0.0005 + 0.001 * unit()));
        break;
      }
    }
  }
  return b;
}

}  // namespace ferrum::testing

namespace ferrum::ref {

namespace gguf_detail {
inline double f16le(const uint8_t* p) {
  return testing::f16_bits_to_double(static_cast<uint16_t>(p[0] | (p[1] << 8)));
}
inline int lo(uint8_t b) { return b & 15; }
inline int hi(uint8_t b) { return b >> 4; }
inline double f32(double v) { return static_cast<double>(static_cast<float>(v)); }
// K-quant scale pair j (Q4_K, Q5_K).
inline void scale_min(const uint8_t* s, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = s[j] & 63;
    mn = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Decodes one block into w[0, QK).
inline void decode_block(int32_t t, const uint8_t* b, double* w) {
  switch (t) {
    case testing::kQ4_0: {
      const double d = f16le(b);
      for (int i = 0; i < 16; ++i) {
        w[i] = f32(d * (lo(b[2 + i]) - 8));
        w[i + 16] = f32(d * (hi(b[2 + i]) - 8));
      }
      break;
    }
    case testing::kQ4_1: {
      const double d = f16le(b), m = f16le(b + 2);
      for (int i = 0; i < 16; ++i) {
        w[i] = f32(d * lo(b[4 + i]) + m);
        w[i + 16] = f32(d * hi(b[4 + i]) + m);
      }
      break;
    }
    case testing::kQ8_0: {
      const double d = f16le(b);
      for (int i = 0; i < 32; ++i) w[i] = f32(d * static_cast<int8_t>(b[2 + i]));
      break;
    }
    case testing::kQ4_K:
    case testing::kQ5_K: {
      const bool five = t == testing::kQ5_K;
      const double d = f16le(b), dmin = f16le(b + 2);
      const uint8_t* scales = b + 4;
      const uint8_t* qh = b + 16;
      const uint8_t* qs = five ? b + 48 : b + 16;
      for (int c = 0; c < 4; ++c) {
        int sc0, mn0, sc1, mn1;
        scale_min(scales, 2 * c, sc0, mn0);
        scale_min(scales, 2 * c + 1, sc1, mn1);
        for (int l = 0; l < 32; ++l) {
          int q0 = lo(qs[32 * c + l]), q1 = hi(qs[32 * c + l]);
          if (five) {
            q0 += 16 * ((qh[l] >> (2 * c)) & 1);
            q1 += 16 * ((qh[l] >> (2 * c + 1)) & 1);
          }
          w[64 * c + l] = f32((d * sc0) * q0 - dmin * mn0);
          w[64 * c + 32 + l] = f32((d * sc1) * q1 - dmin * mn1);
        }
      }
      break;
    }
    case testing::kQ6_K: {
      const double d = f16le(b + 208);
      for (int n = 0; n < 2; ++n) {
        const uint8_t* L = b + 64 * n;
        const uint8_t* H = b + 128 + 32 * n;
        const int8_t* Sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * n;
        for (int l = 0; l < 32; ++l) {
          const int u = l / 16;
          w[128 * n + l] = f32((d * Sc[u]) * ((lo(L[l]) | ((H[l] & 3) << 4)) - 32));
          w[128 * n + 32 + l] = f32((d * Sc[u + 2]) * ((lo(L[l + 32]) | (((H[l] >> 2) & 3) << 4)) - 32));
          w[128 * n + 64 + l] = f32((d * Sc[u + 4]) * ((hi(L[l]) | (((H[l] >> 4) & 3) << 4)) - 32));
          w[128 * n + 96 + l] = f32((d * Sc[u + 6]) * ((hi(L[l + 32]) | (((H[l] >> 6) & 3) << 4)) - 32));
        }
      }
      break;
    }
    default: throw std::invalid_argument("gguf: unknown type " + std::to_string(t));
  }
}
}  // namespace gguf_detail

// W[n_rows, n_cols]: the f32 weights of §11.1 (as doubles).
inline std::vector<double> gguf_dequantize(int32_t t, const std::vector<uint8_t>& bytes, uint64_t n_rows,
                                           uint64_t n_cols) {
  if (bytes.size() != testing::gguf_byte_len(t, n_rows, n_cols))
    throw std::invalid_argument("gguf_dequantize: byte_len mismatch");
  const uint64_t qk = testing::gguf_qk(t), bb = testing::gguf_block_bytes(t), nb = n_rows * (n_cols / qk);
  std::vector<double> w(n_rows * n_cols);
  for (uint64_t i = 0; i < nb; ++i) gguf_detail::decode_block(t, bytes.data() + i * bb, w.data() + i * qk);
  return w;
}

// out[m, n_rows] = a[m, n_cols] · Wᵀ in float64 (W the f32 weights of §11.1).
inline void gguf_matmul(const std::vector<double>& a, const std::vector<double>& w, std::vector<double>& out,
                        uint64_t m, uint64_t n_rows, uint64_t n_cols) {
  if (a.size() < m * n_cols || w.size() < n_rows * n_cols) throw std::invalid_argument("gguf_matmul: sizes");
  std::vector<double> r(m * n_rows);
  for (uint64_t i = 0; i < m; ++i)
    for (uint64_t j = 0; j < n_rows; ++j) {
      double s = 0;
      for (uint64_t p = 0; p < n_cols; ++p) s += a[i * n_cols + p] * w[j * n_cols + p];
      r[i * n_rows + j] = s;
    }
  if (out.size() < r.size()) out.resize(r.size());
  std::copy(r.begin(), r.end(), out.begin());
}

// Tolerance class A of gguf_matmul on a weight loaded with act_precision = FERRUM_QUANT_ACT_Q8
// (docs/spec.md §0.13, §11.2), per output [m, n_rows]: `ref` the float64 product of the activations
// as stored and the f32 weights of §11.1, `step` = Σ_k |W_k|·d_b(k)/2 with d_b = amax_b / 127 over
// the 32 activations of block b(k) = k / 32 of the row, and `mag` = Σ_k |W_k·a_k|. An output
// passes when |out − ref| ≤ (1 + 2^-7)·step + ε·mag, ε being class F's value of the output dtype.
struct Q8Allowance {
  std::vector<double> ref, step, mag;
};

inline Q8Allowance gguf_matmul_q8_allowance(const std::vector<double>& a, const std::vector<double>& w, uint64_t m,
                                            uint64_t n_rows, uint64_t n_cols) {
  if (a.size() < m * n_cols || w.size() < n_rows * n_cols || n_cols % 32)
    throw std::invalid_argument("gguf_matmul_q8_allowance: sizes");
  Q8Allowance r{std::vector<double>(m * n_rows), std::vector<double>(m * n_rows), std::vector<double>(m * n_rows)};
  std::vector<double> d(n_cols / 32);
  for (uint64_t i = 0; i < m; ++i) {
    const double* x = a.data() + i * n_cols;
    for (uint64_t b = 0; b < n_cols / 32; ++b) {
      double amax = 0;
      for (uint64_t k = 32 * b; k < 32 * b + 32; ++k) amax = std::max(amax, std::abs(x[k]));
      d[b] = amax / 127;
    }
    for (uint64_t j = 0; j < n_rows; ++j) {
      const double* wj = w.data() + j * n_cols;
      double s = 0, step = 0, mag = 0;
      for (uint64_t k = 0; k < n_cols; ++k) {
        s += x[k] * wj[k];
        step += std::abs(wj[k]) * d[k / 32] / 2;
        mag += std::abs(x[k] * wj[k]);
      }
      r.ref[i * n_rows + j] = s;
      r.step[i * n_rows + j] = step;
      r.mag[i * n_rows + j] = mag;
    }
  }
  return r;
}

}  // namespace ferrum::ref
