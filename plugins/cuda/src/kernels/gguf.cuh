// ferrum CUDA plugin — GGUF quantised matmul kernels (docs/spec.md §11).
//
// Weights stay in their GGUF blocks, on the device exactly as the file stores them (row after
// row, blocks of any alignment: fields are read byte by byte). Every weight is decoded exactly to
// its f32 value (§11.1; each formula's products are exact in f32, so the value does not depend on
// evaluation order or FMA contraction). Activations are not quantised.
//
//   gguf_matvec      out[r, j] = Σ_c a[r, c]·W[j, c], m rows in passes of kGgufMatvecMaxM: one warp per
//                    output feature j at a time (two 8-warp blocks per SM, grid-stride over rows).
//                    The warp reads its row in chunks of 32 groups of 32 weights (whole blocks,
//                    contiguous bytes) with coalesced 16-bit loads, the next chunk's loads in flight
//                    while the current one — staged in shared memory — is decoded, one group per
//                    lane, into registers and multiplied with every activation row (the weight is
//                    read once for all m rows). The m activation rows are staged in shared memory
//                    once per block when they fit (padded so each lane's 16-byte loads of its group
//                    are conflict-free), else read from global memory. f32 sums; the lanes'
//                    partials added in a fixed tree order (deterministic); each output rounded once.
//   gguf_dequantize  out[j, c] = W[j, c] rounded once to T: each warp owns a contiguous run of
//                    chunks (the grid sized from the occupancy, every warp resident, equal runs) and
//                    copies them with 16-byte cp.async into its ring of 4 shared-memory stages (the
//                    16-byte-aligned span covering a chunk; units not wholly inside the weight read
//                    with 16-bit loads), 3 chunks in flight while one is decoded; lane i writes
//                    bytes 16i … 16i + 15 of each 512-byte run of the chunk's output (coalesced
//                    16-byte stores), decoding the 16 / sizeof(T) weights it writes from 32-bit code
//                    words (codes → f32 by a byte permute into 2^23 + q and one exact subtraction).
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
