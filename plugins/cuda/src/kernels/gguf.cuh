// ferrum CUDA plugin — GGUF quantised matmul kernels (docs/spec.md §11).
//
// Weights stay in their GGUF blocks, on the device exactly as the file stores them (row after
// row; the block pointer may be only 2-byte aligned). Every weight is decoded exactly to its f32
// value (§11.1: scale·(q − offset) (+ min term), each product exact in f32, so the value does not
// depend on evaluation order or FMA contraction); the integer codes become f32 by a byte permute
// into 2^23 + q and one exact subtraction. The matvec forms the weights of the types with an
// offset (Q4_0, Q8_0, Q6_K) with one FMA of exact operands instead (gguf.cu, GroupDecoder::
// Fused): the same f32 values, except +0 for −0 and NaN for a block with an infinite or NaN
// scale. Activations are not quantised.
//
// Both kernels stream the weight in chunks of 32 groups of 32 weights of one row (whole blocks,
// contiguous bytes). Each warp owns a contiguous run of chunks and copies them with 16-byte
// cp.async into its own ring of 4 shared-memory stages (the 16-byte-aligned span covering the
// chunk; decoding starts at the chunk's offset in it), 3 chunks in flight while one is decoded,
// across row boundaries; the grid is sized from the occupancy so every warp is resident and
// gets the same amount of work. A 16-byte unit not wholly inside the weight (only its first and
// last can be) is read with 16-bit loads, so no load leaves the weight. Code words are read from
// shared memory as 32-bit words (aligned loads + funnel shift).
//
//   gguf_matvec      out[r, j] = Σ_c a[r, c]·W[j, c], m rows in passes of kGgufMatvecMaxM: a warp
//                    owns a run of consecutive output features (rows_per_warp each, so no sum is
//                    split across warps); in a chunk, lane = group: it decodes its 32 weights 8 at
//                    a time and multiplies them with every activation row (the weight is read once
//                    for all m rows; a one-row pass runs a one-accumulator instance). The m
//                    activation rows are staged in shared memory once per block when they fit
//                    (padded so each lane's 16-byte loads of its group are conflict-free; 16-bit
//                    activations are widened to f32 there when that keeps the blocks per SM),
//                    else read from global memory. f32 sums in a fixed order per lane; the lanes'
//                    partials added in a fixed tree order (deterministic); each output rounded once.
//   gguf_dequantize  out[j, c] = W[j, c] rounded once to T: lane i writes bytes 16i … 16i + 15 of
//                    each 512-byte run of a chunk's output (coalesced 16-byte stores), decoding the
//                    16 / sizeof(T) weights it writes.
//
// Launch functions: raw device pointers, T = the float dtype, enqueued on `stream` (its device
// current), no allocation, capturable. The glue validated sizes, types and shapes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "status.hpp"

namespace ferrum::cuda::kernels {

// Activation rows one matvec pass serves (the per-lane accumulators); gguf_matvec runs larger m
// in passes of this many rows.
inline constexpr uint64_t kGgufMatvecMaxM = 8;

[[nodiscard]] Status gguf_matvec(int32_t dtype, int32_t quant_type, const uint8_t* w, uint64_t n_rows,
                                 uint64_t n_cols, const void* a, void* out, uint64_t m, cudaStream_t stream) noexcept;

[[nodiscard]] Status gguf_dequantize(int32_t dtype, int32_t quant_type, const uint8_t* w, uint64_t n_rows,
                                     uint64_t n_cols, void* out, cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::kernels
