// ferrum CUDA plugin — the QK-norm / RoPE family (docs/spec.md §0.7, §4) as one kernel.
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
// Launches with a paged segment (the paged writers) on the 16-byte path with host or varlen
// positions run a variant with the same per-vector arithmetic (same bits) whose blocks own up
// to 8 consecutive tokens, each resolved once (sequence, position, slot, block) into shared
// memory instead of once per vector and lane.
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
  uint64_t tok_stride = 0;   // elements between tokens t and t+1 in dst (unused when paged)
  const void* norm_w = nullptr;  // act[D], read in mode 1 only
  int32_t mode = 0;
  // ---- paged destinations (the paged writers; zero-initialised = contiguous) ----
  // With `paged`, token t goes to KV slot L of sequence s (RopePaged below): physical block
  // blk = block_tables[s·bt_stride + L / block_size], offset o = L % block_size, and the row
  // starts at dst + blk·blk_stride + o·o_stride + h·head_stride; a slot whose block is out of
  // range (or whose RoPE position is past the tables) is not written. Inside a row, element d
  // lives at (d >> x_shift)·x_stride + (d & (2^x_shift − 1))·elem_stride — the identity for
  // x_shift = 31, x_stride = 0, elem_stride = 1 (ferrum layout), the vLLM K layout for
  // 2^x_shift = x, x_stride = block_size·x, and the vLLM V layout for elem_stride = block_size.
  bool paged = false;
  uint64_t blk_stride = 0, o_stride = 0;
  uint32_t x_shift = 31;
  uint64_t x_stride = 0, elem_stride = 1;
};

// Token -> KV slot mapping of the paged segments (device block tables, U32 or I32).
//   single sequence (cu == NULL): sequence 0, slot = slot_offset + t, RoPE position as usual
//     (pos_offset + t);
//   varlen (cu != NULL): token g belongs to the sequence s with cu[s] <= g < cu[s+1] (binary
//     search over the num_seqs + 1 entries; a token outside every consistent sequence is not
//     processed at all, Q row included), position = slot = pos_offsets[s] + g − cu[s].
struct RopePaged {
  const void* block_tables = nullptr;
  bool bt_i32 = false;
  uint64_t bt_stride = 0;   // max_num_blocks_per_seq (row stride and logical-block bound)
  uint64_t block_size = 1;
  uint64_t num_blocks = 0;  // physical blocks of the pools
  uint64_t slot_offset = 0;
  const void* cu = nullptr;
  bool cu_i32 = false;
  const void* pos_offsets = nullptr;
  bool pos_i32 = false;
  uint64_t num_seqs = 0;
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
  RopePaged paged;                // read when a segment is paged or paged.cu is set
};

// Enqueues the transform of all tokens × heads vectors on `stream` (its device current).
// No allocation; capturable. Requires head_dim <= kRopeMaxHeadDim (INTERNAL otherwise: the
// glue returns UNSUPPORTED first).
[[nodiscard]] Status rope_heads(const RopeLaunch& launch, cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::kernels
