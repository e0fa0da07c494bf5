// ferrum CUDA plugin — attention path choice, split count, scratch layout and the
// deterministic split-KV combine (see flash.hpp).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "common.cuh"
#include "cuda_check.hpp"
#include "dtype.hpp"

namespace ferrum::cuda::attn {
namespace {

bool use_prefill(const FlashParams& p) {
  return p.dtype != FERRUM_DTYPE_F32 && p.len_source == LenSource::host && p.q_len > kDecodeMaxQLen;
}

// CTAs per SM the split choice aims at. F16/BF16 (tensor-core decode): as many as the
// shared memory holds (228 KiB per SM on Hopper, 1 KiB reserved per CTA), at most 4, so the
// grid is one full wave (no second, partial wave) of CTAs with 2 stages in flight each
// (measured on H200 at hd 128: 1 per SM 90.1 µs, 2 per SM 77.5 µs, 4 per SM 84.3 µs).
// F32 (SIMT decode, ~40 KiB): 4.
uint64_t decode_ctas_per_sm(const FlashParams& p) {
  if (p.dtype == FERRUM_DTYPE_F32) return 4;
  const uint64_t per_cta = decode_mma_smem_bytes(p.head_dim, 2) + 1024;
  return std::clamp<uint64_t>(uint64_t{233472} / per_cta, 1, 4);
}

// Splits of the decode path, from the shapes only (never from device values): enough CTAs
// to fill the SMs once (decode_ctas_per_sm), each split at least 128 keys long.
uint32_t choose_splits(const FlashParams& p, int sm_count) {
  if (use_prefill(p)) return 0;
  const uint64_t group = p.num_heads / p.num_kv_heads;
  const uint64_t chunks = (group + kDecodeHeadChunk - 1) / kDecodeHeadChunk;
  const uint64_t base = std::max<uint64_t>(1, p.batch * p.q_len * p.num_kv_heads * chunks);
  uint64_t bound = p.len_source == LenSource::host ? p.kv_len : p.len_bound;
  const bool causal = p.len_source == LenSource::per_item ? true : p.causal;
  if (causal && p.window) bound = std::min(bound, p.window);
  const uint64_t by_len = std::max<uint64_t>(1, (bound + 127) / 128);
  const uint64_t target = decode_ctas_per_sm(p) * static_cast<uint64_t>(std::max(sm_count, 1));
  const uint64_t by_fill = std::max<uint64_t>(1, (target + base - 1) / base);
  uint64_t splits = std::min<uint64_t>({by_len, by_fill, kMaxSplits});
  if (p.dtype != FERRUM_DTYPE_F32 && splits > 1) {
    // The tensor-core kernel rounds each split up to whole 64-key stages: drop the splits
    // that rounding leaves empty (65 536 keys over 33 → 32 splits of 2 048).
    const uint64_t per = ((bound + splits - 1) / splits + kDecodeMmaKeys - 1) / kDecodeMmaKeys * kDecodeMmaKeys;
    splits = std::max<uint64_t>(1, (bound + per - 1) / per);
  }
  return static_cast<uint32_t>(splits);
}

uint64_t rows_heads(const FlashParams& p) { return p.batch * p.q_len * p.num_heads; }

// out[row, h] = Σ_s w_s·o_s / Σ_s w_s with w_s = 2^(lse_s − max lse). One CTA per (row, head):
// thread (grp, col) sums 4 dims (one float4) over the splits grp, grp + ngrp, ... with up to
// 8 loads in flight, then the ngrp partial sums are added in group order (deterministic, no
// atomics). The partials are ~1 MB at most shapes (L2-resident): the pass is latency-bound,
// so the point is many independent loads per thread rather than a serial chain per dim.
template <class T>
__global__ void __launch_bounds__(128) flash_combine_kernel(const float* __restrict__ part_o,
                                                            const float* __restrict__ part_lse, T* out,
                                                            uint64_t H, uint64_t q_len, uint32_t hd,
                                                            uint32_t splits) {
  __shared__ float w_s[kMaxSplits];
  __shared__ __align__(16) float acc_s[512];  // ngrp·hd <= (128 / ncol)·4·ncol
  __shared__ float total_s;
  const uint64_t rh = blockIdx.x;  // (row, head)
  const uint64_t row = rh / H, h = rh % H;
  const uint64_t b = row / q_len, i = row % q_len;
  const float* lse = part_lse + rh * splits;
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    float mx = -INFINITY;
    for (uint32_t s = lane; s < splits; s += 32) mx = fmaxf(mx, lse[s]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (uint32_t s = lane; s < splits; s += 32) {
      const float w = (mx == -INFINITY || lse[s] == -INFINITY) ? 0.0f : exp2f(lse[s] - mx);
      w_s[s] = w;
      sum += w;
    }
    sum = warp_sum(sum);  // a fixed tree: deterministic
    if (lane == 0) total_s = sum;
  }
  __syncthreads();
  const float total = total_s;
  const float inv = total == 0.0f ? 0.0f : 1.0f / total;  // every split empty: +0.0
  const uint32_t ncol = hd / 4;                            // hd is a multiple of 16
  const uint32_t ngrp = ncol >= 128 ? 1 : (128 / ncol < 8 ? 128 / ncol : 8);
  const uint32_t col = threadIdx.x % ncol, grp = threadIdx.x / ncol;
  if (grp < ngrp) {
    const float4* o4 = reinterpret_cast<const float4*>(part_o + rh * splits * hd) + col;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 8
    for (uint32_t s = grp; s < splits; s += ngrp) {
      const float w = w_s[s];
      const float4 v = o4[static_cast<uint64_t>(s) * ncol];
      acc.x = fmaf(w, v.x, acc.x);
      acc.y = fmaf(w, v.y, acc.y);
      acc.z = fmaf(w, v.z, acc.z);
      acc.w = fmaf(w, v.w, acc.w);
    }
    *reinterpret_cast<float4*>(acc_s + grp * hd + col * 4) = acc;
  }
  __syncthreads();
  T* dst = out + ((b * H + h) * q_len + i) * hd;
  for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float acc = 0.0f;
    for (uint32_t g = 0; g < ngrp; ++g) acc += acc_s[g * hd + d];  // group order
    dst[d] = from_f32<T>(acc * inv);
  }
}

template <class T>
Status launch_head_dim(const FlashParams& p, uint32_t splits, float* po, float* pl, cudaStream_t st) noexcept {
  const bool prefill = use_prefill(p);
  if constexpr (!std::is_same_v<T, float>) {
    if (prefill) {
      switch (p.head_dim) {
        case 64: return launch_prefill<T, 64>(p, st);
        case 80: return launch_prefill<T, 80>(p, st);
        case 96: return launch_prefill<T, 96>(p, st);
        case 112: return launch_prefill<T, 112>(p, st);
        case 128: return launch_prefill<T, 128>(p, st);
        case 192: return launch_prefill<T, 192>(p, st);
        case 256: return launch_prefill<T, 256>(p, st);
        default: break;
      }
      return make_status(FERRUM_STATUS_UNSUPPORTED, "flash_attention: head_dim %llu has no kernel",
                         static_cast<unsigned long long>(p.head_dim));
    }
  }
  switch (p.head_dim) {
    case 64: return launch_decode<T, 64>(p, splits, po, pl, st);
    case 80: return launch_decode<T, 80>(p, splits, po, pl, st);
    case 96: return launch_decode<T, 96>(p, splits, po, pl, st);
    case 112: return launch_decode<T, 112>(p, splits, po, pl, st);
    case 128: return launch_decode<T, 128>(p, splits, po, pl, st);
    case 192: return launch_decode<T, 192>(p, splits, po, pl, st);
    case 256: return launch_decode<T, 256>(p, splits, po, pl, st);
    default: break;
  }
  return make_status(FERRUM_STATUS_UNSUPPORTED, "flash_attention: head_dim %llu has no kernel",
                     static_cast<unsigned long long>(p.head_dim));
}

}  // namespace

uint64_t flash_scratch_bytes(const FlashParams& p, int sm_count) noexcept {
  const uint32_t splits = choose_splits(p, sm_count);
  if (splits <= 1) return 0;
  return rows_heads(p) * splits * (p.head_dim + 1) * sizeof(float);
}

Status flash_attention(const FlashParams& p, int sm_count, void* scratch, cudaStream_t stream) noexcept {
  if (p.batch == 0 || p.q_len == 0) return ok_status();
  if (!head_dim_supported(p.head_dim))
    return make_status(FERRUM_STATUS_UNSUPPORTED, "flash_attention: head_dim %llu has no kernel",
                       static_cast<unsigned long long>(p.head_dim));
  const uint32_t splits = std::max<uint32_t>(1, choose_splits(p, sm_count));
  float* part_o = nullptr;
  float* part_lse = nullptr;
  if (splits > 1) {
    if (!scratch) return make_status(FERRUM_STATUS_INTERNAL, "flash_attention: split-KV scratch missing");
    part_o = static_cast<float*>(scratch);
    part_lse = part_o + rows_heads(p) * splits * p.head_dim;
  }
  return dispatch_float(p.dtype, "flash_attention", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    FERRUM_RETURN_IF_ERROR(launch_head_dim<T>(p, splits, part_o, part_lse, stream));
    if (splits > 1) {
      const uint64_t blocks = rows_heads(p);
      if (blocks > 0x7FFFFFFFull)
        return make_status(FERRUM_STATUS_UNSUPPORTED, "flash_attention: %llu (row, head) pairs exceed the grid limit",
                           static_cast<unsigned long long>(blocks));
      flash_combine_kernel<T><<<static_cast<unsigned>(blocks), 128, 0, stream>>>(
          part_o, part_lse, static_cast<T*>(p.out), p.num_heads, p.q_len, static_cast<uint32_t>(p.head_dim), splits);
      FERRUM_CUDA_LAUNCH_CHECK("flash_combine_kernel");
    }
    return ok_status();
  });
}

}  // namespace ferrum::cuda::attn
