// ferrum CUDA plugin — GPTQ int4 (W4A16) kernels (docs/spec.md §12).
//
// Device format of one matrix (built by glue/gptq.cpp from common/gptq_layout.hpp): the K input
// rows ordered by group and padded per group to a multiple of 8 (kp rows, kw = kp/8 word rows; a
// word never straddles two groups), then
//   q     u32 [kw, N]: word (w, n) holds rows 8w … 8w+7 of column n, row 8w+i in bits 4i … 4i+3
//         (the source's orientation: a warp's 32 columns are 128 contiguous bytes);
//   zs    float2 [G, N]: (2^23 + z, ŝ) — z the zero point, ŝ the scale rounded to the
//         activation dtype; 2^23 + z lets a nibble become the exact float q − z with one OR and one
//         subtraction (the bit pattern 0x4B000000 | q is the float 2^23 + q);
//   wgrp  u32 [kw]: the group of each word row;
//   gword u32 [G + 1]: the first word row of each group (gword[G] = kw).
//
//   gptq_gather      x [m, kp]: the activations in the padded group order (padding rows 0), from
//                    a [m, K] of T (src_row[p] = the source column of padded row p, −1 pad; NULL:
//                    the identity), as f32 (the matvec's input) or as T (the gemm's).
//   gptq_matvec      out [m, N] = x · W for m <= kGptqMatvecMaxM: four adjacent output columns per
//                    thread (one 16-byte load per word row), 8 word rows' loads in flight per
//                    thread, split-K over `splits` ranges of word rows (grid: column tiles ×
//                    splits, ≈ 8 blocks per SM; N must be a multiple of 4, which §12.1's multiple
//                    of 8 is); per
//                    group Σ x·(q − z) in f32, then ŝ times that sum added to the column's total
//                    (the CPU plugin's order). splits == 1 writes out (one rounding to T); more
//                    write f32 partials [splits, m, N] that gptq_reduce adds in split order
//                    (deterministic).
//   gptq_dequant_t   Wt [cols, kp] of T: W's columns c0 … c0+cols−1 transposed (row = output
//                    column, k contiguous), (q − z)·ŝ rounded once to T — the panel a cuBLASLt gemm
//                    multiplies (docs/spec.md §12.2 allows that rounding). Tiles of 32 word rows ×
//                    32 columns go through shared memory so the reads of q and the writes of Wt
//                    are both coalesced.
// Launch functions: raw device pointers, enqueued on `stream` (its device current), no allocation,
// capturable. The glue validated sizes and shapes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "status.hpp"

namespace ferrum::cuda::kernels {

inline constexpr uint64_t kGptqMatvecMaxM = 8;

[[nodiscard]] Status gptq_gather(int32_t dtype, const void* a, const int32_t* src_row, void* x, uint64_t m,
                                 uint64_t k, uint64_t kp, bool to_f32, cudaStream_t stream) noexcept;

// Split count for gptq_matvec on a device of `sms` SMs (≥ 1; each split at least 16 word rows).
uint32_t gptq_matvec_splits(uint64_t n, uint64_t kw, int sms) noexcept;

[[nodiscard]] Status gptq_matvec(int32_t dtype, const uint32_t* q, const float2* zs, const uint32_t* wgrp,
                                 const uint32_t* gword, const float* x, void* out, float* partial, uint64_t m,
                                 uint64_t kw, uint64_t n, uint32_t splits, cudaStream_t stream) noexcept;

[[nodiscard]] Status gptq_dequant_t(int32_t dtype, const uint32_t* q, const float2* zs, const uint32_t* wgrp,
                                    void* wt, uint64_t kw, uint64_t n, uint64_t c0, uint64_t cols,
                                    cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::kernels
