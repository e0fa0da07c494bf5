// ferrum CUDA plugin — contiguous-KV attention kernels (docs/spec.md §5): host-side interface.
//
// Framework-free: plain pointers and sizes in, a Status out; no ABI type crosses this header.
// The ABI glue (glue/attention.cpp, glue/graph.cpp) validates every field first; these
// launchers only enqueue on `stream` (never allocate, never synchronise), so they are
// capturable.
//
// Paths (chosen by flash_attention() from the shapes alone):
//   * prefill  — F16/BF16 with q_len > kDecodeMaxQLen and host-known lengths: FlashAttention-2
//                style; one CTA per (64-query tile, head, batch), 4 warps of 16 query rows,
//                mma.sync m16n8k16 with f32 accumulators, online softmax in registers, K/V tiles
//                through shared memory with cp.async double buffering (flash_prefill.cuh).
//   * decode   — everything else (short q_len; the dev-state and batched per-cache forms):
//                split-KV flash-decoding; one CTA per (query row, KV head, split) serving up to
//                8 query heads of that KV head, so each K/V byte is read once per query row;
//                F16/BF16 on tensor cores (the group's heads are the mma rows, each warp a
//                16-key slice of every 64-key stage, 2-3 cp.async stages), F32 on a SIMT f32
//                path (no TF32); with several splits, the last CTA of each (row, KV-head
//                group) to finish merges the group's partials in split order (deterministic;
//                an integer arrival counter per group in the scratch, reset by that CTA)
//                (flash_decode.cuh, flash_dispatch.cu).
// On-chip storage is per tile only (never proportional to kv_len).
#pragma once

#include <cuda.h>  // CUtensorMap (KvMaps)
#include <cuda_runtime_api.h>

#include <cstdint>
#include <type_traits>

#include "status.hpp"

namespace ferrum::cuda::attn {

// Head sizes with compiled kernels (docs/spec.md §0.8; one flash_hd<N>.cu per size):
//   32 (small models: SmolLM-135M-class, TinyStories), 64 (GPT-2/Phi-2-small, many small models), 80 (Phi-2), 96 (Phi-3-mini), 112 (some
//   Falcon/StarCoder variants), 128 (Llama, Qwen, Mistral — the common case),
//   192 (DeepSeek MLA-style q/k with rope part), 256 (Gemma).
inline constexpr bool head_dim_supported(uint64_t hd) {
  return hd == 32 || hd == 64 || hd == 80 || hd == 96 || hd == 112 || hd == 128 || hd == 192 || hd == 256;
}

// Calls f(std::integral_constant<int, HD>{}) for the compiled head size HD == hd and returns
// its Status; UNSUPPORTED naming `what` for any other hd.
template <class F>
Status with_head_dim(uint64_t hd, const char* what, F&& f) {
  switch (hd) {
    case 32: return f(std::integral_constant<int, 32>{});
    case 64: return f(std::integral_constant<int, 64>{});
    case 80: return f(std::integral_constant<int, 80>{});
    case 96: return f(std::integral_constant<int, 96>{});
    case 112: return f(std::integral_constant<int, 112>{});
    case 128: return f(std::integral_constant<int, 128>{});
    case 192: return f(std::integral_constant<int, 192>{});
    case 256: return f(std::integral_constant<int, 256>{});
    default: break;
  }
  return make_status(FERRUM_STATUS_UNSUPPORTED, "%s: head_dim %llu has no kernel", what,
                     static_cast<unsigned long long>(hd));
}

// Decode path below this many queries per row-set (tensor-core tiles of 64 queries would
// waste > 7/8 of the MMA work).
inline constexpr uint64_t kDecodeMaxQLen = 8;
// Query heads one decode CTA serves (GQA group chunk).
inline constexpr int kDecodeHeadChunk = 8;
// Largest split count of the split-KV decode.
inline constexpr uint32_t kMaxSplits = 64;
// Tensor-core decode (F16/BF16, flash_decode.cuh): keys per shared-memory stage (16 per warp)
// and cp.async stages; its dynamic shared memory, which bounds the CTAs per SM that the split
// choice aims to fill in one wave.
inline constexpr int kDecodeMmaKeys = 64;
inline constexpr int decode_mma_stages(uint64_t hd) { return hd <= 128 ? 3 : 2; }
inline constexpr uint64_t decode_mma_smem_bytes(uint64_t hd, uint64_t elem_bytes) {
  return elem_bytes * 2 * kDecodeMmaKeys * (hd + 8) * static_cast<uint64_t>(decode_mma_stages(hd));
}
// Batched per-cache decode: items per launch (docs/spec.md §5.1 batched_items).
inline constexpr int kMaxItems = 64;

// Per-item cache pointers passed by value as a kernel parameter (eager batched calls): the
// launch copies them, so no staging memory and no host/device ordering is involved.
struct ItemPtrs {
  const void* p[2][kMaxItems];  // [0] = K (or the append target), [1] = V
};

// Where the attention of one launch reads its per-row length and position.
enum class LenSource : int32_t {
  host = 0,       // kv_len / pos_offset fields
  dev_state = 1,  // L = min(dev_state[2], S), p = dev_state[1] (docs/spec.md §8.2; batch = q_len = 1)
  per_item = 2,   // L = min(kv_lens[b], S), p = L - 1, causal (docs/spec.md §5.1)
};

struct FlashParams {
  int32_t dtype = 0;                 // FERRUM_DTYPE_F32 / F16 / BF16
  const void* q = nullptr;           // [batch, H, q_len, hd]
  const void* k = nullptr;           // [batch, nkv, S, hd] (host / dev_state sources)
  const void* v = nullptr;
  void* out = nullptr;               // [batch, H, q_len, hd]
  uint64_t batch = 0, q_len = 0, kv_len = 0, pos_offset = 0;
  uint64_t num_heads = 0, num_kv_heads = 0, head_dim = 0;
  bool causal = true;
  float scale = 0.0f;                // already resolved (never 0)
  uint64_t S = 0;                    // row stride of k/v per head (kv_seq_stride or kv_len; capacity)
  uint64_t window = 0;               // sliding_window (0 = none)
  LenSource len_source = LenSource::host;
  const uint32_t* dev_state = nullptr;     // dev_state source: {token, pos, kv}
  const uint32_t* kv_lens = nullptr;       // per_item source (U32 or I32 bits)
  bool kv_lens_i32 = false;
  ItemPtrs items{};                        // per_item source, eager: K/V base of each item
  const void* const* slot_table = nullptr; // per_item source, captured: device [kMaxItems][2]
  uint64_t len_bound = 0;            // host bound on L (S, or max_valid_kv) for the split choice
};

// Most decode CTAs per SM the split choice aims at; bounds the (row, KV-head group) count of
// any split launch below kMaxDecodeCtasPerSm · sm_count.
inline constexpr uint64_t kMaxDecodeCtasPerSm = 4;
// The split-KV scratch starts with the groups' arrival counters (uint32, at a fixed place for
// a given device, whatever the shapes); the partials follow. The counters must be ZERO when
// the scratch is first used (the owner clears a new block once, outside any capture); every
// launch leaves them zero again.
inline constexpr uint64_t flash_counter_bytes(int sm_count) {
  return (kMaxDecodeCtasPerSm * static_cast<uint64_t>(sm_count > 0 ? sm_count : 1) * 4 + 255) / 256 * 256;
}

// Split count of the decode kernels for `groups` CTA groups (rows × KV heads × head chunks)
// whose visible keys are bounded by `bound`: enough CTAs to fill the SMs once, each split at
// least 128 keys, at most kMaxSplits; 1 when groups alone fill the device. Shapes only.
uint32_t decode_split_count(int32_t dtype, uint64_t hd, uint64_t groups, uint64_t bound, int sm_count) noexcept;

// Split-KV scratch needed by flash_attention for these params (bytes, 0 when no split is
// used; else counters + partials). Deterministic in the shapes; `sm_count` is the device's
// multiprocessor count.
uint64_t flash_scratch_bytes(const FlashParams& p, int sm_count) noexcept;

// Enqueues the attention. `scratch` must hold flash_scratch_bytes(p, sm_count) bytes (may be
// NULL when that is 0), its first flash_counter_bytes(sm_count) bytes zero (see above). head_dim must satisfy head_dim_supported.
[[nodiscard]] Status flash_attention(const FlashParams& p, int sm_count, void* scratch,
                                     cudaStream_t stream) noexcept;

// ---- KV append ------------------------------------------------------------------------------
// cache_{k,v}[h, row0 + t, :] = new_{k,v}[h, t, :] for h < nkv, t < tokens. With `dev_state`
// non-NULL, row0 = dev_state[1] (read on the device) and nothing is written when
// row0 + t >= capacity. Any element size (2 or 4 bytes), any hd.
[[nodiscard]] Status kv_append_head_major(void* cache_k, void* cache_v, const void* new_k, const void* new_v,
                                          uint64_t elem_bytes, uint64_t row0, uint64_t capacity,
                                          uint64_t tokens, uint64_t nkv, uint64_t hd,
                                          const uint32_t* dev_state, cudaStream_t stream) noexcept;

// caches[i][h, cache_lens[i], :] = new_data[i, h, :]; an item whose length is >= capacity
// (or negative as I32) writes nothing. Cache bases from `items.p[0]` (eager) or from the
// device table `slot_table` ([kMaxItems] pointers) when it is non-NULL.
[[nodiscard]] Status kv_append_batched(const ItemPtrs& items, const void* const* slot_table,
                                       const void* new_data, const uint32_t* cache_lens, bool lens_i32,
                                       uint64_t elem_bytes, uint64_t capacity, uint64_t m, uint64_t nkv,
                                       uint64_t hd, cudaStream_t stream) noexcept;

// dev_state[0..2] = {token, step, step + 1}, enqueued (a 1-thread kernel; no host memory).
[[nodiscard]] Status write_decode_state(uint32_t* dev_state, uint32_t token, uint32_t step,
                                        cudaStream_t stream) noexcept;

// n / d by multiply-shift for 1 <= d < 2^31 and n < 2^31 (Granlund–Montgomery: l = ceil(log2 d),
// m = floor(2^32·(2^l − d) / d) + 1, n / d = (umulhi(n, m) + n) >> l): set up on the host, applied in
// the kernels (the paged source's block index, the tensor-copy decode's head coordinate).
#ifdef __CUDACC__
#define FERRUM_ATTN_HD __host__ __device__
#else
#define FERRUM_ATTN_HD
#endif
struct FastDiv32 {
  uint32_t m = 1, l = 0;  // d = 1
  constexpr FastDiv32() = default;
  constexpr explicit FastDiv32(uint64_t d) {
    while ((uint64_t{1} << l) < d) ++l;
    m = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << l) - d)) / d + 1);
  }
  FERRUM_ATTN_HD constexpr uint32_t div(uint32_t n) const {
    return static_cast<uint32_t>((((static_cast<uint64_t>(n) * m) >> 32) + n) >> l);
  }
};

// The most keys one row of a decode launch can see (host lengths or the host bound, capped by a
// causal window): what the split count and the tensor-copy choice are made from.
uint64_t decode_key_bound(const FlashParams& p) noexcept;

// ---- per-head-dim launchers (explicit instances in flash_hd<N>.cu) ---------------------------
// Tensor maps of the sm_90 decode path (flash_decode.cuh, kTma): the K and V caches as 3-D
// tensors {head_dim, heads, rows} of 2-byte elements — element d of head h in row r at
// base + ((r·heads + h)·head_dim + d)·2 — read in boxes of 64 × 1 × 16 (64 dimensions of 16 rows)
// with the 128-byte swizzle. heads = the pool's KV heads (paged ferrum layout, rows = token slots)
// or 1 (contiguous caches, rows = batch·kv_heads·S).
struct KvMaps {
  CUtensorMap k, v;
  const void* k0 = nullptr;
  const void* v0 = nullptr;
  uint32_t heads = 1;
  FastDiv32 heads_div;  // r / heads for r < 2^31
};
// Fills m for the caches at k / v: true on an sm_90+ device whose driver encodes tensor maps, for
// head_dim 64 / 128 / 192 / 256, 16-byte-aligned bases and rows·heads < 2^31; false (the cp.async
// path then runs) otherwise.
bool make_kv_maps(KvMaps& m, const void* k, const void* v, uint64_t head_dim, uint64_t heads, uint64_t rows) noexcept;
// Keys per split from which the decode uses the tensor copies (shapes only). Below it the CTA's
// few tiles are latency-bound and the cp.async path measured 0.5 µs faster (H200, batch 1 × 1k / 4k
// keys); from it on the copies measured 0.5–5 % faster (docs/perf-notes.md, "Paged decode round 8").
inline constexpr uint64_t kDecodeTmaMinKeys = 1024;
// FERRUM_CUDA_DECODE_TMA, read at each launch: unset (or any other value) = the tensor copies for
// splits of at least kDecodeTmaMinKeys keys, "0" = never (the cp.async path), "1" = wherever they
// apply (tests and A/B measurements).
enum class DecodeTma { automatic, off, on };
DecodeTma decode_tma_mode() noexcept;
inline bool want_decode_tma(uint64_t bound, uint32_t splits) noexcept {
  const DecodeTma m = decode_tma_mode();
  return m == DecodeTma::on || (m == DecodeTma::automatic && bound / (splits ? splits : 1) >= kDecodeTmaMinKeys);
}

template <class T, int HD>
Status launch_decode(const FlashParams& p, uint32_t splits, float* part_o, float* part_lse,
                     uint32_t* counters, cudaStream_t stream) noexcept;
template <class T, int HD>
Status launch_prefill(const FlashParams& p, cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::attn
