// ferrum CUDA plugin — quantised paged KV (int8 and fp8 e4m3 codes with one f32 scale per
// (token, KV head)): the append (quantisation recipe) and the single-query decode attention over
// the dequantised values. Host-side interface; framework-free. Layout: codes
// [N, bs, nkv, D] at ((blk·bs + o)·nkv + h)·D + d, scales F32 [N, bs, nkv] at (blk·bs + o)·nkv + h.
//
// Recipe (bit-exact with the CPU plugin): a = max_d |x[d]| in f32, s = max(a, 1e-8f) / Q with
// Q = 127 (int8) or 448 (fp8) as an IEEE division; int8 code = rint(clamp(x / s, ±127)) (half to
// even), fp8 code = e4m3(x / s) (round to nearest even, saturating to ±448, NaN stays NaN).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "status.hpp"

namespace ferrum::cuda::attn {

enum class KvCode : int32_t { int8 = 0, fp8 = 1 };

// dst[i] = i for i < n (the identity block table of a freshly allocated layer).
[[nodiscard]] Status iota_u32(uint32_t* dst, uint64_t n, cudaStream_t stream) noexcept;

// Token t of k_in/v_in ([tokens, nkv, D], token-major, activation dtype `act`) goes to logical
// position L = cache_len_before + t: block blocks[L / bs − first_block] (device U32, already
// validated < num_blocks by the caller), offset L % bs; both vectors are quantised into codes
// and scales. One group of D / (16 / sizeof(act)) lanes per (token, head), K and V together,
// when that is 8, 16 or 32 lanes, the buffers are 16-byte aligned and the indices fit 32 bits;
// one warp per (token, head, K|V) vector otherwise.
[[nodiscard]] Status quant_kv_append(int32_t act, KvCode code, const void* k_in, const void* v_in, void* k_codes,
                                     void* v_codes, float* k_scales, float* v_scales, const uint32_t* blocks,
                                     uint64_t first_block, uint64_t cache_len_before, uint64_t tokens, uint64_t bs,
                                     uint64_t nkv, uint64_t D, cudaStream_t stream) noexcept;

struct QuantDecodeParams {
  int32_t act = 0;               // dtype of q and out
  KvCode code = KvCode::int8;
  const void* q = nullptr;       // [nq, D]
  void* out = nullptr;           // [nq, D]
  const void* k_codes = nullptr;
  const void* v_codes = nullptr;
  const float* k_scales = nullptr;
  const float* v_scales = nullptr;
  const void* block_table = nullptr;  // idx, ceil(valid_kv_len / bs) entries (at least)
  bool bt_i32 = false;
  uint64_t num_blocks = 0, block_size = 0, nq = 0, nkv = 0, head_dim = 0, valid_kv_len = 0, window = 0;
  float scale = 0.0f;            // resolved (never 0)
};

// Split-KV scratch for these params (same layout as flash_scratch_bytes).
uint64_t quant_decode_scratch_bytes(const QuantDecodeParams& p, int sm_count) noexcept;

// out[h, :] = attention of q[h, :] at p = valid_kv_len − 1 (causal, sliding window) over the
// dequantised keys/values s·code; a block id >= num_blocks reads as zeros. The SIMT split-KV
// decode kernel of flash_decode.cuh over a dequantising source; head_dim must satisfy
// head_dim_supported (flash.hpp).
[[nodiscard]] Status quant_decode(const QuantDecodeParams& p, int sm_count, void* scratch,
                                  cudaStream_t stream) noexcept;

}  // namespace ferrum::cuda::attn
