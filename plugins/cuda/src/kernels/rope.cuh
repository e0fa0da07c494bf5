// ferrum CUDA plugin — the QK-norm / RoPE family (OPS.md §0.7, §4) as one kernel.
//
// Every op of the family maps token-major head vectors of length D through a per-head
// transform (mode 0 copy, 1 RMSNorm + NeoX, 2 NeoX, 3 GPT-J) into some output layout. The
// input is `tokens` rows of `in_heads` head vectors (row stride in_row_stride elements); its
// heads are split into up to three consecutive segments (Q, K, V of a packed projection, or
// one segment for all heads), each with its own destination, strides, mode and norm weight:
//   head j of segment s, token t  ->  seg[s].dst + h·seg[s].head_stride + t·seg[s].tok_stride
// (h = j − first head of s, strides in elements). That covers head-major outputs ([H, T, D]:
// head_stride = T·D, tok_stride = D), item-major outputs (D, H·D) and contiguous caches
// (cap·D, D, dst advanced by cache_len·D).
//
// Positions: p = pos_offset + t (host), or p = positions[t] read on the device (U32 or I32;
// dev-state mode passes &dev_state[1] with tokens = 1). A device position >= table_rows (or a
// negative I32) gives a row of +0.0 in modes 1–3 (never an out-of-bounds table read); host
// positions were validated by the glue. Mode 0 reads no table and no weight.
//
// Kernel: a group of G lanes (power of two <= 32) per head vector, 256 / G vectors per block;
// each lane owns whole rotation pairs as 16-byte chunks — chunk u and u + D/2N (NeoX) or
// chunks 2u, 2u+1 (GPT-J) — and the N matching cos/sin values, so the rotation needs no data
// exchange; the RMS statistic is a group shuffle sum. Scalar chunks when D is not a multiple
// of two 16-byte chunks or a base/stride is not 16-byte aligned. Any D <= kRopeMaxHeadDim.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "status.hpp"

namespace ferrum::cuda::kernels {

inline constexpr uint64_t kRopeMaxHeadDim = 256;

struct RopeSegment {
  void* dst = nullptr;
  uint64_t heads = 0;        // heads of this segment
  uint64_t head_stride = 0;  // elements between heads h and h+1 in dst
  uint64_t tok_stride = 0;   // elements between tokens t and t+1 in dst
  const void* norm_w = nullptr;  // act[D], read in mode 1 only
  int32_t mode = 0;
};

struct RopeLaunch {
  int32_t act_dtype = 0;          // F32 / F16 / BF16
  int32_t tab_dtype = 0;          // act_dtype or F32 (0: no tables, mode 0 only)
  const void* in = nullptr;
  uint64_t in_row_stride = 0;     // elements between tokens of `in`
  uint64_t tokens = 0;
  uint64_t head_dim = 0;
  float eps = 0.0f;
  RopeSegment seg[3];
  int nseg = 1;
  const void* cos = nullptr;      // tab[table_rows, D/2]
  const void* sin = nullptr;
  uint64_t table_rows = 0;
  uint64_t pos_offset = 0;        // host positions: p = pos_offset + t
  const void* positions = nullptr;  // device positions (non-NULL: used instead of pos_offset)
  int32_t positions_dtype = 0;    // FERRUM_DTYPE_U32 or FERRUM_DTYPE_I32
};

// Enqueues the transform of all tokens × heads vectors on `stream` (its device current).
// No allocation; capturable. Requires head_dim <= kRopeMaxHeadDim (INTERNAL otherwise: the
// glue returns UNSUPPORTED first).
[[nodiscard]] Status rope_heads(const RopeLaunch& launch, cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::kernels
