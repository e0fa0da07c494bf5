// ferrum CUDA plugin — device helpers shared by the attention kernels: float conversion,
// cp.async, ldmatrix / mma.sync wrappers, and the visible-key range of docs/spec.md §0.8.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "flash.hpp"
#include "kernels/elementwise.cuh"

namespace ferrum::cuda::attn {

// Float conversion: the dense kernels' helpers (round-to-nearest-even, NaN kept).
template <class X>
__device__ __forceinline__ float to_f32(X x) {
  return kernels::dev::to_f(x);
}
template <class T>
__device__ __forceinline__ T from_f32(float x) {
  return kernels::dev::from_f<T>(x);
}

// Two floats as one 32-bit register of two 16-bit values, `lo` in the low half (the element
// with the smaller column index in an mma fragment).
template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

// Power-of-two rescaling for f16 MMA operands (the quantised decode, flash_decode.cuh kQ).
constexpr int kPow2Max = 100;
// e with x·2^e in [2^14, 2^15) for a normal x > 0 — the largest magnitude of a set entering an
// f16 operand keeps room below 65504 — clamped to ±kPow2Max (x = 0, subnormal, Inf or NaN).
__device__ __forceinline__ int pow2_exponent_for(float x) {
  const int b = static_cast<int>((__float_as_uint(x) >> 23) & 0xffu);  // biased exponent of |x|
  return min(max(141 - b, -kPow2Max), kPow2Max);
}
// x·2^e for |e| <= kPow2Max: exact while the result stays a normal float.
__device__ __forceinline__ float ldexp_exact(float x, int e) {
  return x * __uint_as_float(static_cast<uint32_t>(127 + e) << 23);
}

// 16 bytes of T as floats (8 halves or 4 floats).
template <class T>
struct Vec16 {
  static constexpr int N = 16 / sizeof(T);
};

template <class T>
__device__ __forceinline__ void unpack16(const uint4& raw, float (&f)[16 / sizeof(T)]) {
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < 16 / static_cast<int>(sizeof(T)); ++i) f[i] = to_f32(e[i]);
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy, bypassing L1 (sm_80+).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;\n" ::"r"(smem_u32(smem)), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_u32(smem)), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// mbarrier and tensor-copy (TMA) helpers of the sm_90 decode path (flash_decode.cuh, kTma). The
// bodies exist for sm_90 and later only; the host never launches a kTma kernel on an older device
// or from code built for one (make_kv_maps, launch_decode_src), and mbar_wait traps if it ever did.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define FERRUM_ATTN_SM90 1
#endif
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
#ifdef FERRUM_ATTN_SM90
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count) : "memory");
#endif
}
// Makes the barrier inits visible to the async proxy (the tensor copies complete on them).
__device__ __forceinline__ void mbar_init_fence() {
#ifdef FERRUM_ATTN_SM90
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}
// One arrival that also announces `bytes` of tensor copies completing on the barrier's phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
#ifdef FERRUM_ATTN_SM90
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
#endif
}
// One arrival, made when every cp.async this thread issued before it has landed (the barrier's
// count includes it: .noinc).
__device__ __forceinline__ void mbar_arrive_cp_async(uint64_t* bar) {
#ifdef FERRUM_ATTN_SM90
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_u32(bar)) : "memory");
#endif
}
// Waits until the barrier's phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
#ifdef FERRUM_ATTN_SM90
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_u32(bar)), "r"(parity)
        : "memory");
  } while (!done);
#else
  __trap();
#endif
}
// Orders this thread's earlier generic-proxy shared-memory accesses before later tensor copies.
__device__ __forceinline__ void fence_proxy_async_smem() {
#ifdef FERRUM_ATTN_SM90
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Brings a tensor map (a __grid_constant__ kernel parameter) into the copy engine's cache ahead of use.
__device__ __forceinline__ void tma_prefetch_map(const void* map) {
#ifdef FERRUM_ATTN_SM90
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
#endif
}
// 3-D tiled tensor copy global -> shared (the map's box at coordinates c0, c1, c2), completing on bar.
__device__ __forceinline__ void tma_load_3d(void* smem, const void* map, int32_t c0, int32_t c1, int32_t c2,
                                            uint64_t* bar) {
#ifdef FERRUM_ATTN_SM90
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(
          smem_u32(smem)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(smem_u32(bar))
      : "memory");
#endif
}

// Two 8x8 b16 matrices transposed (addresses from lanes 0..15).
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(smem)));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(smem)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(smem)));
}

// D = A·B + D, m16n8k16, f32 accumulators; A row-major 16x16, B "col" 16x8.
template <class T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Visible keys of a query at position p over L keys (docs/spec.md §0.8): [lo, hi), empty if lo >= hi.
__device__ __forceinline__ void visible_range(uint64_t p, uint64_t L, bool causal, uint64_t W, uint64_t& lo,
                                              uint64_t& hi) {
  hi = causal ? (p + 1 < L ? p + 1 : L) : L;
  lo = (W != 0 && p + 1 > W) ? p + 1 - W : 0;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

}  // namespace ferrum::cuda::attn
