// ferrum CPU plugin — GGUF quantised matmul kernels (docs/spec.md §11).
//
// Weights stay in their GGUF blocks (§11.1, row by row, little-endian). No call dequantises the
// whole matrix: the matmul decodes one block (m = 1) or one tile of a few rows (m > 1, decoded once
// and used by every activation row) at a time.
//
// Precision (docs/spec.md §11.2 wins over the "quantise the activation to 8 bits" recipe of GGUF
// engines): activations are NOT quantised, unless the weight was loaded with act_precision =
// FERRUM_QUANT_ACT_Q8 (GgufMatrix::act_q8; then gguf_q8.hpp's kernels run). Weights are decoded exactly to their f32 values and
// multiplied with the f32-converted activations in f32 (FMA), so every activation dtype meets its
// F-class tolerance (1e-5 for F32). The m = 1 paths (AVX-512: all six types; AVX2: all six types)
// turn the quants into f32 in registers; some apply the block scale once per block / sub-block (a
// reassociation within the F tolerance; the AVX2 Q6_K / Q5_K / Q4_1 rows do not: they give the bits
// of the AVX2 decode-into-a-tile path).
#ifndef FERRUM_CPU_KERNELS_GGUF_HPP
#define FERRUM_CPU_KERNELS_GGUF_HPP

#include <cstdint>

#include <ferrum/common/dtype.hpp>

namespace ferrum::cpu {

// Weights per block (QK) and bytes per block of a GGUF type id; 0 for an unknown id.
uint64_t gguf_qk(int32_t type);
uint64_t gguf_block_bytes(int32_t type);

// A GGUF matrix [rows, cols] in its blocks (borrowed; any alignment). act_q8: the weight was loaded
// with act_precision = FERRUM_QUANT_ACT_Q8, so gguf_matmul may quantise the activations (gguf_q8.hpp).
struct GgufMatrix {
  int32_t type = 0;
  const uint8_t* data = nullptr;
  uint64_t rows = 0, cols = 0;
  bool act_q8 = false;
  uint64_t row_bytes() const { return cols / gguf_qk(type) * gguf_block_bytes(type); }
};

// The exact f32 weights of one row (§11.1) into out[0, cols).
void gguf_dequantize_row(int32_t type, const uint8_t* row, float* out, uint64_t cols);

// out[rows, cols] = W, each f32 weight rounded once more to T. T in {float, f16, bf16}.
template <class T>
void gguf_dequantize(const GgufMatrix& w, T* out);

// out[m, rows] = a[m, cols] · Wᵀ, accumulated in f32, each output rounded once to T. Runs on the
// thread pool; deterministic (an output's summation order never depends on the thread count).
// With w.act_q8 the activations are quantised to 8 bits (gguf_matmul_q8, gguf_q8.hpp).
template <class T>
void gguf_matmul(const GgufMatrix& w, const T* a, T* out, uint64_t m);

// Which m = 1 kernel gguf_matmul uses on this machine: "avx512_vbmi", "avx512", "avx2_fma" or
// "generic".
const char* gguf_kernel_name();

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_GGUF_HPP
