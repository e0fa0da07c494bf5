// ferrum CPU plugin — GPTQ int4 (W4A16) kernels (docs/spec.md §12).
//
// gptq_repack turns AutoGPTQ v1 tensors (§12.1) into GptqMatrix, the CPU kernel format:
//   * rows are ordered by group (stable; act-order g_idx folded in) and each group's rows are padded
//     to a multiple of 8, so a group is a contiguous run of 8-row words;
//   * the 4-bit quants are stored column-tile-major: tile t (8 output columns) holds, for every word
//     row, 8 consecutive u32 (one per column, 8 rows per word, row 8w+i in bits 4i..4i+3);
//   * z (zero points) and ŝ (scales rounded to the activation dtype) are f32 [G, N].
// gptq_matmul computes out[r, j] = Σ_p x[r, p]·W[p, j], W = (q − z)·ŝ: per group Σ x·(q − z) in
// f32, then ŝ times that group sum added to the output (accumulated in f32, one rounding to T).
#ifndef FERRUM_CPU_KERNELS_GPTQ_HPP
#define FERRUM_CPU_KERNELS_GPTQ_HPP

#include <cstdint>
#include <vector>

#include <ferrum/common/dtype.hpp>
#include <ferrum/common/gptq_layout.hpp>

namespace ferrum::cpu {

// The shared host layout (rows by group, padding, z and ŝ; common/gptq_layout.hpp) plus the CPU's
// nibble tiling.
using common::GptqSource;
struct GptqMatrix : common::GptqLayout {
  std::vector<uint32_t> q;  // [n/8][kp/8][8]
};

// Builds the kernel format (may throw std::bad_alloc).
void gptq_repack(const GptqSource& src, GptqMatrix& out);

// out[rows, n] = x[rows, k] · W. T in {float, f16, bf16}. Runs on the thread pool (inline when
// called from inside a pool job); deterministic.
template <class T>
void gptq_matmul(const GptqMatrix& w, const T* x, uint64_t rows, T* out);

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_GPTQ_HPP
