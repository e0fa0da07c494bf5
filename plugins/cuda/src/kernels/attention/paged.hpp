// ferrum CUDA plugin — paged-KV attention (both pool layouts, every row mapping of the paged
// family): host-side interface. Framework-free; the glue (glue/paged_attention.cpp) validates
// every host field first. The launch only enqueues (no allocation, no synchronisation), so it
// is capturable.
//
// Prefill: F16/BF16 steps whose queries per sequence may exceed kDecodeMaxQLen also run the
// FA2-style prefill kernel of flash_prefill.cuh over the same source (tiles of 64 queries of one
// sequence and one head), for the sequences with more than kDecodeMaxQLen queries; the decode
// kernel serves the others (the split is decided per sequence on the device, the launch from the
// shapes).
// Decode: the split-KV decode kernels of flash_decode.cuh (tensor cores for F16/BF16, SIMT f32
// for F32) over a paged KV source (paged_src.cuh): one CTA per (query row, KV head × head
// chunk of up to 8 query heads, split), K/V rows gathered through the block table 16 bytes at
// a time (cp.async; the vLLM V layout is gathered element by element), online softmax in f32,
// and the fixed-order split merge of flash_decode.cuh (deterministic). Device metadata (block
// tables, lengths, cu_seqlens, tiles) are read and bounds-checked on the device: a block id
// out of range reads zeros instead of memory outside the pools, a row outside every sequence is
// not written, and lengths are clamped to the table's capacity (max_num_blocks_per_seq · bs).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "status.hpp"

namespace ferrum::cuda::attn {

// How grid rows map to queries (docs/spec.md's §6.2 summary table):
enum class PagedRows : int32_t {
  uniform = 0,  // row = s·q_len + i, L = lens[s], p = L − q_len + i
  varlen = 1,   // row = token g of sequence s (cu), L = lens[s] + q_len_s, p = lens[s] + j (pos_offsets)
  fa2 = 2,      // like varlen with lens = seq_lens: L = lens[s], p = L − q_len_s + j
  tiled = 3,    // row = 4·t + k: token cu[s] + tile_starts[t] + k of s = tile_seqs[t] (varlen positions)
};

struct PagedParams {
  int32_t dtype = 0;          // F32 / F16 / BF16 (q, pools, out)
  const void* q = nullptr;    // [M, H, hd] token-major
  void* out = nullptr;        // [M, H, hd]
  float* lse = nullptr;       // optional F32 [H, lse_stride]: lse[h·lse_stride + g]
  uint64_t lse_stride = 0;
  const void* k_pool = nullptr;
  const void* v_pool = nullptr;
  bool vllm = false;          // vLLM pool layout (x = 16 / element size)
  uint64_t num_blocks = 0, block_size = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  const void* block_tables = nullptr;  // [num_seqs, bt_stride]
  bool bt_i32 = false;
  uint64_t bt_stride = 0;              // max_num_blocks_per_seq
  PagedRows rows = PagedRows::uniform;
  uint64_t num_seqs = 0, q_len = 0, total_q = 0;  // q_len: uniform; total_q (M): varlen bound of cu
  const void* lens = nullptr;          // context_lens / valid_kv_lens / pos_offsets / seq_lens [num_seqs]
  bool lens_i32 = false;
  const void* cu = nullptr;            // cu_seqlens_q [num_seqs + 1]
  bool cu_i32 = false;
  const void* tile_seqs = nullptr;     // [num_tiles]
  bool tile_seqs_i32 = false;
  const void* tile_starts = nullptr;
  bool tile_starts_i32 = false;
  uint64_t num_tiles = 0;
  // Split between the two kernels (varlen / FA2 rows): the decode kernel serves the sequences
  // with q_len_s <= decode_max_q, the prefill kernel (F16/BF16, tiles of 64 queries of one
  // sequence, at most prefill_q_tiles per sequence) the others. Chosen by paged_attention from
  // the shapes; UINT64_MAX / 0 = decode only.
  uint64_t decode_max_q = UINT64_MAX;
  uint64_t prefill_q_tiles = 0;
  uint64_t q_len_bound = 0;            // host bound on every q_len_s (varlen: min(M, max_kv_len); FA2: max_q_len)
  float scale = 0.0f;                  // resolved (never 0)
  uint64_t window = 0;
  uint64_t len_bound = 0;              // host bound on every L (for the split choice)
};

// The most keys one row can see (the host bound, capped by the table's capacity and the window):
// what the split count and the decode's tensor-copy choice are made from.
uint64_t paged_key_bound(const PagedParams& p) noexcept;

// Grid rows of a launch (num_seqs·q_len, total_q, or 4·num_tiles).
uint64_t paged_grid_rows(const PagedParams& p) noexcept;

// Split-KV scratch (bytes, 0 when unsplit) for these params; same layout and counter rule as
// flash_scratch_bytes (flash.hpp).
uint64_t paged_scratch_bytes(const PagedParams& p, int sm_count) noexcept;

// Enqueues the attention. head_dim must satisfy head_dim_supported (flash.hpp).
[[nodiscard]] Status paged_attention(const PagedParams& p, int sm_count, void* scratch, cudaStream_t stream) noexcept;

// Per-head-dim launchers (explicit instances in flash_hd<N>.cu; the prefill for F16/BF16 only).
template <class T, int HD>
Status launch_paged_decode(const PagedParams& p, uint64_t rows, uint32_t splits, float* part_o, float* part_lse,
                           uint32_t* counters, cudaStream_t stream) noexcept;
template <class T, int HD>
Status launch_paged_prefill(const PagedParams& p, cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::attn
