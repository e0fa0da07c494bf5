// ferrum CUDA plugin — quantised paged KV kernels (see quant_kv.hpp): the append (a lane group
// per (token, head) row, K and V together — or one warp per vector for the other head sizes:
// exact max, IEEE division, round-to-nearest-even codes) and the decode
// attention. F32 activations run the SIMT split-KV kernel of flash_decode.cuh over a source that
// dequantises each 16-byte chunk of f32 (4 codes) into shared memory: k = s_k·code in f32, the
// spec's dequantised value. F16/BF16 run the tensor-core decode over a code-staging source
// (QuantMmaSrc: codes converted to T exactly, scales applied in f32).
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "dtype.hpp"
#include "flash_decode.cuh"
#include "quant_kv.hpp"

namespace ferrum::cuda::attn {
namespace {

__global__ void iota_kernel(uint32_t* dst, uint64_t n) {
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x)
    dst[i] = static_cast<uint32_t>(i);
}

__device__ __forceinline__ float fp8_value(uint8_t c) {
  const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(c), __NV_E4M3);
  return __half2float(__half(h));
}

// The code of a quotient q = x / s.
__device__ __forceinline__ uint8_t code_of(float q, bool fp8) {
  if (fp8) return static_cast<uint8_t>(__nv_cvt_float_to_fp8(q, __NV_SATFINITE, __NV_E4M3));
  const float c = fminf(fmaxf(q, -127.0f), 127.0f);
  return static_cast<uint8_t>(static_cast<int8_t>(c == c ? rintf(c) : 0.0f));
}

// The code of x / s (the recipe of quant_kv.hpp).
__device__ __forceinline__ uint8_t quant_code(float x, float s, bool fp8) { return code_of(__fdiv_rn(x, s), fp8); }

// One warp per (row, K or V): row r = t·nkv + h of the token-major input. E > 0: D = 32·E and
// lane l owns elements l·E .. l·E + E − 1, read once into registers (one vector load when the
// row is aligned) and written as E consecutive codes; E = 0: any D, lanes stride over the row
// (two passes over x).
template <class A, int E>
__global__ void quant_append_kernel(const A* k_in, const A* v_in, uint8_t* k_codes, uint8_t* v_codes,
                                    float* k_scales, float* v_scales, const uint32_t* blocks, uint64_t first_block,
                                    uint64_t cache_len_before, uint64_t tokens, uint64_t bs, uint64_t nkv, uint64_t D,
                                    bool fp8) {
  const int lane = threadIdx.x & 31;
  const uint64_t warps = static_cast<uint64_t>(gridDim.x) * (blockDim.x / 32);
  const uint64_t total = tokens * nkv * 2;
  for (uint64_t v = blockIdx.x * static_cast<uint64_t>(blockDim.x / 32) + (threadIdx.x >> 5); v < total; v += warps) {
    const uint64_t r = v >> 1;
    const bool is_v = v & 1;
    const uint64_t t = r / nkv, h = r % nkv;
    const A* x = (is_v ? v_in : k_in) + r * D;
    float xe[E > 0 ? E : 1];
    float a = 0.0f;
    if constexpr (E > 0) {
      const A* xl = x + lane * E;
      if constexpr (E * sizeof(A) % 4 == 0 && E * sizeof(A) <= 16) {
        using W = std::conditional_t<E * sizeof(A) == 16, uint4, std::conditional_t<E * sizeof(A) == 8, uint2, uint32_t>>;
        const W w = *reinterpret_cast<const W*>(xl);  // aligned: D·sizeof(A) is a multiple of 32·E·sizeof(A)
        const A* e = reinterpret_cast<const A*>(&w);
#pragma unroll
        for (int i = 0; i < E; ++i) xe[i] = to_f32(e[i]);
      } else {
#pragma unroll
        for (int i = 0; i < E; ++i) xe[i] = to_f32(xl[i]);
      }
#pragma unroll
      for (int i = 0; i < E; ++i) a = fmaxf(a, fabsf(xe[i]));
    } else {
      for (uint64_t d = lane; d < D; d += 32) a = fmaxf(a, fabsf(to_f32(x[d])));
    }
    a = warp_max(a);
    const float s = __fdiv_rn(fmaxf(a, 1e-8f), fp8 ? 448.0f : 127.0f);
    const uint64_t L = cache_len_before + t;
    const uint64_t blk = blocks[L / bs - first_block];
    const uint64_t dst = (blk * bs + L % bs) * nkv + h;
    uint8_t* codes = (is_v ? v_codes : k_codes) + dst * D;
    if constexpr (E > 0) {
      uint8_t c[E];
#pragma unroll
      for (int i = 0; i < E; ++i) c[i] = quant_code(xe[i], s, fp8);
      uint8_t* cl = codes + lane * E;
      if constexpr (E == 4) {
        *reinterpret_cast<uint32_t*>(cl) = c[0] | (c[1] << 8) | (c[2] << 16) | (static_cast<uint32_t>(c[3]) << 24);
      } else {
#pragma unroll
        for (int i = 0; i < E; ++i) cl[i] = c[i];
      }
    } else {
      for (uint64_t d = lane; d < D; d += 32) codes[d] = quant_code(to_f32(x[d]), s, fp8);
    }
    if (lane == 0) (is_v ? v_scales : k_scales)[dst] = s;
  }
}

// code_of for four quotients of one row, as one little-endian word. Here |q| <= Q · (1 + 2^-23)
// (|x| <= a and s = RN(max(a, 1e-8) / Q)), so for int8 the clamp to ±127 never
// changes rint(q) and __float2int_rn (round half to even, NaN -> 0) is the recipe's code; fp8
// converts pairs (the same cvt.rn.satfinite.e4m3x2.f32 that the single conversion issues with a
// zero partner on sm_89+, two single conversions before that).
__device__ __forceinline__ uint32_t code_word(const float* q, bool fp8) {
  if (fp8) {
    const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(q[0], q[1]), __NV_SATFINITE, __NV_E4M3);
    const uint32_t hi = __nv_cvt_float2_to_fp8x2(make_float2(q[2], q[3]), __NV_SATFINITE, __NV_E4M3);
    return lo | (hi << 16);
  }
  const uint32_t c0 = static_cast<uint32_t>(__float2int_rn(q[0])), c1 = static_cast<uint32_t>(__float2int_rn(q[1]));
  const uint32_t c2 = static_cast<uint32_t>(__float2int_rn(q[2])), c3 = static_cast<uint32_t>(__float2int_rn(q[3]));
  return __byte_perm(__byte_perm(c0, c1, 0x0040u), __byte_perm(c2, c3, 0x0040u), 0x5410u);
}

// x / s rounded to nearest from rs = __frcp_rn(s) (Markstein's correction: q0 = RN(x·rs) is
// within one ulp of x / s, the remainder x − q0·s is exact in one fma, and RN(q0 + r·rs) is the
// correctly rounded quotient) — valid where no intermediate underflows or overflows. Callers use
// it for finite s >= 1e-8 / 448 and |x / s| <= 448 · (1 + 2^-23); a remainder can only underflow
// where |x / s| < 2^-11, which every code maps to a zero of x's sign (int8: rint; fp8: below half
// the smallest subnormal 2^-9), and so does q0. r == 0 keeps q0, so −0 stays −0 (fp8 0x80).
__device__ __forceinline__ float quotient_rn(float x, float s, float rs) {
  const float q0 = __fmul_rn(x, rs);
  const float r = __fmaf_rn(-q0, s, x);
  return r == 0.0f ? q0 : __fmaf_rn(r, rs, q0);
}

// The rows kernel: one group of G = D / N lanes (N = 16 / sizeof(A) elements, one 16-byte
// chunk) per (token, head) row r = t·nkv + h, K and V together — both go to the same slot
// (blk·bs + o)·nkv + h of their pools, so the row is resolved once. Lane l owns elements
// l·N .. l·N + N − 1 of both vectors (one 16-byte load from k_in and one from v_in) and stores
// their N codes as one word. A thread serves R rows per pass (rows base + i·per_block) and the
// grid (3 blocks per SM) strides over the passes; the next pass's 2R loads are issued before
// this pass's table reads and math, so each thread keeps 32·R to 64·R bytes in flight. (On an
// H200, 16k tokens × 8 heads at hd 128, bf16: 60 µs with one row per thread and the step test
// of the reciprocal's quotient, 44 µs with quotient_rn; R = 1, 2, 4 with or without the stride
// all within ±1 µs of that except R = 4 with the stride, 52 — docs/perf-notes.md.) The amax is
// a max of |x| >= +0 over the group (fmaxf of non-negative values is order-independent and
// drops NaN whatever the order), so scales and codes equal quant_append_kernel's bit for bit:
// the quotients are the correctly rounded x / s (quotient_rn; a non-finite scale takes the
// division). Index math in 32 bits: the launcher sends only calls whose row indices, logical
// positions and block size fit. The loop bound is block-uniform, so every lane reaches the
// shuffles.
template <class A, int G, bool FP8, int R>
__global__ void __launch_bounds__(256, 3) quant_append_rows_kernel(const A* k_in, const A* v_in, uint8_t* k_codes,
                                                                uint8_t* v_codes, float* k_scales, float* v_scales,
                                                                const uint32_t* blocks, uint64_t first_block,
                                                                uint64_t cache_len_before, uint64_t rows, uint64_t bs,
                                                                uint64_t nkv) {
  constexpr int N = 16 / static_cast<int>(sizeof(A));
  constexpr uint64_t D = static_cast<uint64_t>(G) * N;
  constexpr int per_block = 256 / G;
  constexpr float Q = FP8 ? 448.0f : 127.0f;
  const int lane = threadIdx.x & (G - 1);
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * per_block * R;
  uint4 kw[R], vw[R];
  auto load = [&](uint64_t b, uint4 (&kd)[R], uint4 (&vd)[R]) {
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const uint64_t r = b + static_cast<uint64_t>(i) * per_block;
      kd[i] = vd[i] = make_uint4(0, 0, 0, 0);
      if (r < rows) {
        kd[i] = *reinterpret_cast<const uint4*>(k_in + r * D + lane * N);
        vd[i] = *reinterpret_cast<const uint4*>(v_in + r * D + lane * N);
      }
    }
  };
  uint64_t base = static_cast<uint64_t>(blockIdx.x) * per_block * R + threadIdx.x / G;
  load(base, kw, vw);
  for (; base - threadIdx.x / G < rows; base += stride) {
    uint4 nkw[R], nvw[R];
    load(base + stride, nkw, nvw);  // the next pass's rows stay in flight during this pass's math
    uint64_t dst[R];
#pragma unroll
    for (int i = 0; i < R; ++i) {  // 32-bit: the launcher checked rows, positions and bs against 2^32
      const uint64_t r = base + static_cast<uint64_t>(i) * per_block;
      dst[i] = 0;
      if (r < rows) {
        const uint32_t r32 = static_cast<uint32_t>(r), n32 = static_cast<uint32_t>(nkv);
        const uint32_t t = r32 / n32, h = r32 - t * n32;
        const uint32_t L = static_cast<uint32_t>(cache_len_before) + t, b32 = static_cast<uint32_t>(bs);
        const uint32_t lb = L / b32, o = L - lb * b32;
        const uint64_t blk = blocks[lb - first_block];
        dst[i] = (blk * bs + o) * nkv + h;
      }
    }
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const uint64_t r = base + static_cast<uint64_t>(i) * per_block;
      const A* ke = reinterpret_cast<const A*>(&kw[i]);
      const A* ve = reinterpret_cast<const A*>(&vw[i]);
      float kx[N], vx[N];
      float ka = 0.0f, va = 0.0f;
#pragma unroll
      for (int j = 0; j < N; ++j) {
        kx[j] = to_f32(ke[j]);
        vx[j] = to_f32(ve[j]);
        ka = fmaxf(ka, fabsf(kx[j]));
        va = fmaxf(va, fabsf(vx[j]));
      }
#pragma unroll
      for (int m = G >> 1; m > 0; m >>= 1) {
        ka = fmaxf(ka, __shfl_xor_sync(0xffffffffu, ka, m));
        va = fmaxf(va, __shfl_xor_sync(0xffffffffu, va, m));
      }
      if (r >= rows) continue;
      const float ks = __fdiv_rn(fmaxf(ka, 1e-8f), Q);
      const float vs = __fdiv_rn(fmaxf(va, 1e-8f), Q);
      float kq[N], vq[N];
      if (ks <= 3.402823466e38f && vs <= 3.402823466e38f) {
        const float krs = __frcp_rn(ks), vrs = __frcp_rn(vs);
#pragma unroll
        for (int j = 0; j < N; ++j) {
          kq[j] = quotient_rn(kx[j], ks, krs);
          vq[j] = quotient_rn(vx[j], vs, vrs);
        }
      } else {
#pragma unroll
        for (int j = 0; j < N; ++j) {
          kq[j] = __fdiv_rn(kx[j], ks);
          vq[j] = __fdiv_rn(vx[j], vs);
        }
      }
      uint32_t kc[N / 4], vc[N / 4];
#pragma unroll
      for (int w = 0; w < N / 4; ++w) {
        kc[w] = code_word(&kq[4 * w], FP8);
        vc[w] = code_word(&vq[4 * w], FP8);
      }
      uint8_t* kd = k_codes + dst[i] * D + lane * N;
      uint8_t* vd = v_codes + dst[i] * D + lane * N;
      if constexpr (N == 8) {  // 16-bit activations: 8 codes = one aligned 8-byte word
        *reinterpret_cast<uint2*>(kd) = make_uint2(kc[0], kc[1]);
        *reinterpret_cast<uint2*>(vd) = make_uint2(vc[0], vc[1]);
      } else {  // f32: 4 codes = one aligned 4-byte word
        static_assert(N == 4, "16-byte chunks of 2- or 4-byte activations");
        *reinterpret_cast<uint32_t*>(kd) = kc[0];
        *reinterpret_cast<uint32_t*>(vd) = vc[0];
      }
      if (lane == 0) {
        k_scales[dst[i]] = ks;
        v_scales[dst[i]] = vs;
      }
    }
#pragma unroll
    for (int i = 0; i < R; ++i) {
      kw[i] = nkw[i];
      vw[i] = nvw[i];
    }
  }
}

template <class A>
__device__ __forceinline__ float act_at(const void* p, uint64_t i) {
  return to_f32(static_cast<const A*>(p)[i]);
}
template <class A>
__device__ __forceinline__ void act_put(void* p, uint64_t i, float v) {
  static_cast<A*>(p)[i] = from_f32<A>(v);
}

// What both quantised sources share: one row, one query per head at p = valid_kv_len − 1.
struct QuantRows {
  QuantDecodeParams p;
  uint64_t H, nkv, window;
  float scale;
  explicit QuantRows(const QuantDecodeParams& qp)
      : p(qp), H(qp.nq), nkv(qp.nkv), window(qp.window), scale(qp.scale) {}

  struct Row {
    uint64_t kvh;
  };
  __device__ __forceinline__ bool resolve(uint64_t, uint64_t kvh, Row& r) const {
    r.kvh = kvh;
    return true;
  }
  __device__ __forceinline__ void range(const Row&, uint64_t& lo, uint64_t& hi) const {
    if (p.valid_kv_len == 0) {
      lo = hi = 0;
      return;
    }
    visible_range(p.valid_kv_len - 1, p.valid_kv_len, true, window, lo, hi);
  }
};

// The dequantising source of the SIMT decode kernel (T = float rows).
template <int HD>
struct QuantSrc : QuantRows {
  explicit QuantSrc(const QuantDecodeParams& qp) : QuantRows(qp) {}
  __device__ __forceinline__ float q_at(const Row&, uint64_t h, int d) const {
    const uint64_t i = h * HD + d;
    return p.act == FERRUM_DTYPE_F32 ? act_at<float>(p.q, i)
           : p.act == FERRUM_DTYPE_F16 ? act_at<__half>(p.q, i)
                                       : act_at<__nv_bfloat16>(p.q, i);
  }
  __device__ __forceinline__ void store(const Row&, uint64_t h, int d, float v) const {
    const uint64_t i = h * HD + d;
    if (p.act == FERRUM_DTYPE_F32) act_put<float>(p.out, i, v);
    else if (p.act == FERRUM_DTYPE_F16) act_put<__half>(p.out, i, v);
    else act_put<__nv_bfloat16>(p.out, i, v);
  }
  __device__ __forceinline__ void lse(const Row&, uint64_t, float) const {}
  // Chunk = 4 dequantised f32 values of key j.
  __device__ __forceinline__ void load(void* smem, const Row& r, uint64_t j, int chunk, const void* codes,
                                       const float* scales) const {
    const uint64_t bs = p.block_size;
    const int64_t raw = p.bt_i32 ? static_cast<int64_t>(static_cast<const int32_t*>(p.block_table)[j / bs])
                                 : static_cast<int64_t>(static_cast<const uint32_t*>(p.block_table)[j / bs]);
    float4 f = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (raw >= 0 && static_cast<uint64_t>(raw) < p.num_blocks) {
      const uint64_t slot = (static_cast<uint64_t>(raw) * bs + j % bs) * nkv + r.kvh;
      const float s = scales[slot];
      const uint32_t c4 = *reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(codes) + slot * HD + chunk * 4);
      float v[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint8_t c = static_cast<uint8_t>(c4 >> (8 * i));
        v[i] = s * (p.code == KvCode::fp8 ? fp8_value(c) : static_cast<float>(static_cast<int8_t>(c)));
      }
      f = make_float4(v[0], v[1], v[2], v[3]);
    }
    *reinterpret_cast<float4*>(smem) = f;
  }
  __device__ __forceinline__ void load_k(void* smem, const Row& r, uint64_t j, int chunk) const {
    load(smem, r, j, chunk, p.k_codes, p.k_scales);
  }
  __device__ __forceinline__ void load_v(void* smem, const Row& r, uint64_t j, int chunk) const {
    load(smem, r, j, chunk, p.v_codes, p.v_scales);
  }
};

// The code-staging source of the tensor-core decode (F16/BF16 activations T; flash_decode.cuh's
// kQ path): one row, one query per head at p = valid_kv_len − 1. The kernel copies each key's
// code rows and scales (TileRows flat rows: one block-table read per key row and CTA, the row's
// byte offset from the pool base, a zero row read from the shared zero row), converts the codes
// to f16 exactly and applies s_k to the scores and s_v to P in f32 — the attention over the
// spec's dequantised values s·code. Both MMAs run in f16 whatever T is (an f16 code conversion
// is 5 instructions per 4 codes, a bf16 one 11): the query enters scaled by a power of two per
// head and P·s_v by one per warp (flash_decode.cuh, kQ), both exact rescalings undone in f32.
// The code type C is a template parameter, so the conversions are straight-line code.
template <class T, int HD, KvCode C>
struct QuantMmaSrc : QuantRows {
  static constexpr bool kMayVt = false;
  static constexpr bool kCodes = true;
  // TileRows: a key's K (V) code row is HD contiguous bytes at k_base + ko (ko: element offset).
  static constexpr bool kFlatRows = true;
  static constexpr int kElemBytes = 1, kRowBytes = HD;
  bool fast32;  // every key index and the block size below 2^31: 32-bit division
  explicit QuantMmaSrc(const QuantDecodeParams& qp)
      : QuantRows(qp), fast32(qp.valid_kv_len < (uint64_t{1} << 31) && qp.block_size < (uint64_t{1} << 31)) {}
  __device__ __forceinline__ const T* q(const Row&, uint64_t h) const { return static_cast<const T*>(p.q) + h * HD; }
  __device__ __forceinline__ void store(const Row&, uint64_t h, int d, float v) const {
    static_cast<T*>(p.out)[h * HD + d] = from_f32<T>(v);
  }
  __device__ __forceinline__ void lse(const Row&, uint64_t, float) const {}
  __device__ __forceinline__ const unsigned char* k_base(const Row&) const {
    return static_cast<const unsigned char*>(p.k_codes);
  }
  __device__ __forceinline__ const unsigned char* v_base(const Row&) const {
    return static_cast<const unsigned char*>(p.v_codes);
  }

  // Key location: the raw table entry of key j's block and j's offset in it.
  struct Loc {
    uint32_t raw, o;
  };
  __device__ __forceinline__ Loc locate(const Row&, uint64_t j) const {
    uint64_t lb, o;
    if (fast32) {
      const uint32_t j32 = static_cast<uint32_t>(j), b32 = static_cast<uint32_t>(p.block_size);
      lb = j32 / b32;
      o = j32 - static_cast<uint32_t>(lb) * b32;
    } else {
      lb = j / p.block_size;
      o = j % p.block_size;
    }
    return {__ldg(static_cast<const uint32_t*>(p.block_table) + lb), static_cast<uint32_t>(o)};
  }
  // Element offset of key j's K and V code rows, row·HD with row = (blk·bs + o)·nkv + kvh (the
  // row's scale index); false for a block id out of range.
  __device__ __forceinline__ bool key_rows(const Row& r, uint64_t j, Loc l, uint64_t& ko, uint64_t& vo) const {
    const int64_t blk = p.bt_i32 ? static_cast<int64_t>(static_cast<int32_t>(l.raw)) : static_cast<int64_t>(l.raw);
    if (blk < 0 || static_cast<uint64_t>(blk) >= p.num_blocks) return false;
    const uint64_t o = fast32 ? l.o : j % p.block_size;
    ko = vo = ((static_cast<uint64_t>(blk) * p.block_size + o) * nkv + r.kvh) * HD;
    return true;
  }
  // The scales of the row whose K byte offset (TileRows slot .x) is ko; a zero row (the offset
  // of the shared zero row) has scales 0.
  __device__ __forceinline__ void copy_scales(float* sk, float* sv, const Row& r, uint64_t ko) const {
    if (ko == reinterpret_cast<uint64_t>(g_zero_row) - reinterpret_cast<uint64_t>(k_base(r))) {
      *sk = 0.0f;
      *sv = 0.0f;
      return;
    }
    cp_async4(sk, p.k_scales + ko / HD);
    cp_async4(sv, p.v_scales + ko / HD);
  }
  // Four codes (one 32-bit word) → two f16 pairs, exactly (the decode's MMAs run in f16 for
  // both activation dtypes: |int8| <= 127 and every e4m3 value are f16 values).
  __device__ __forceinline__ void word_to_h(uint32_t w, uint32_t& p01, uint32_t& p23) const {
    if constexpr (C == KvCode::int8) {
      // 0x64XX as f16 is 1024 + XX (spacing 1 in [1024, 2048)): code + 128 as an unsigned byte
      // in the low half, then subtract 1024 + 128.
      const uint32_t x = w ^ 0x80808080u;
      const __half2 bias = __float2half2_rn(1152.0f);
      const uint32_t u01 = __byte_perm(x, 0x64646464u, 0x5140u), u23 = __byte_perm(x, 0x64646464u, 0x5342u);
      __half2 a = __hsub2(*reinterpret_cast<const __half2*>(&u01), bias);
      __half2 b = __hsub2(*reinterpret_cast<const __half2*>(&u23), bias);
      p01 = *reinterpret_cast<uint32_t*>(&a);
      p23 = *reinterpret_cast<uint32_t*>(&b);
    } else {
      const __half2_raw h01 = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(w & 0xffffu), __NV_E4M3);
      const __half2_raw h23 = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(w >> 16), __NV_E4M3);
      p01 = static_cast<uint32_t>(h01.x) | (static_cast<uint32_t>(h01.y) << 16);
      p23 = static_cast<uint32_t>(h23.x) | (static_cast<uint32_t>(h23.y) << 16);
    }
  }
};

// F16/BF16 activations take the tensor-core path (QuantMmaSrc); false sends them to the SIMT
// kernel like F32 (kept as a switch for A/B measurements).
constexpr bool kQuantTensorCores = true;

uint32_t quant_splits(const QuantDecodeParams& p, int sm_count) {
  const uint64_t chunks = (p.nq / p.nkv + kDecodeHeadChunk - 1) / kDecodeHeadChunk;
  uint64_t bound = p.valid_kv_len;
  if (p.window) bound = std::min(bound, p.window);
  // F16/BF16 run the tensor-core decode (its stage rounding), F32 the SIMT one.
  return decode_split_count(kQuantTensorCores ? p.act : FERRUM_DTYPE_F32, p.head_dim, p.nkv * chunks, bound, sm_count);
}

template <class T, int HD, KvCode C>
Status launch_quant_mma(const QuantDecodeParams& p, uint32_t splits, float* po, float* pl, uint32_t* cnt,
                        cudaStream_t st) noexcept {
  return launch_decode_src<T, HD>(QuantMmaSrc<T, HD, C>(p), 1, splits, po, pl, cnt, st, "quantised paged decode");
}

template <int HD>
Status launch_quant(const QuantDecodeParams& p, uint32_t splits, float* po, float* pl, uint32_t* cnt,
                    cudaStream_t st) noexcept {
  const bool fp8 = p.code == KvCode::fp8;
  if (kQuantTensorCores && p.act == FERRUM_DTYPE_F16)
    return fp8 ? launch_quant_mma<__half, HD, KvCode::fp8>(p, splits, po, pl, cnt, st)
               : launch_quant_mma<__half, HD, KvCode::int8>(p, splits, po, pl, cnt, st);
  if (kQuantTensorCores && p.act == FERRUM_DTYPE_BF16)
    return fp8 ? launch_quant_mma<__nv_bfloat16, HD, KvCode::fp8>(p, splits, po, pl, cnt, st)
               : launch_quant_mma<__nv_bfloat16, HD, KvCode::int8>(p, splits, po, pl, cnt, st);
  return launch_decode_src<float, HD>(QuantSrc<HD>(p), 1, splits, po, pl, cnt, st, "quantised paged decode");
}

}  // namespace

Status iota_u32(uint32_t* dst, uint64_t n, cudaStream_t stream) noexcept {
  if (n == 0) return ok_status();
  const unsigned blocks = static_cast<unsigned>(std::min<uint64_t>((n + 255) / 256, 4096));
  iota_kernel<<<blocks, 256, 0, stream>>>(dst, n);
  FERRUM_CUDA_LAUNCH_CHECK("iota_kernel");
  return ok_status();
}

// Rows per thread and pass of quant_append_rows_kernel.
constexpr int kAppendRowsPerThread = 2;

Status quant_kv_append(int32_t act, KvCode code, const void* k_in, const void* v_in, void* k_codes, void* v_codes,
                       float* k_scales, float* v_scales, const uint32_t* blocks, uint64_t first_block,
                       uint64_t cache_len_before, uint64_t tokens, uint64_t bs, uint64_t nkv, uint64_t D,
                       cudaStream_t stream) noexcept {
  const uint64_t vectors = tokens * nkv * 2;
  if (vectors == 0 || D == 0) return ok_status();
  const unsigned blocks_n = static_cast<unsigned>(std::min<uint64_t>((vectors + 7) / 8, 65535));
  return dispatch_float(act, "quantised KV append", [&](auto tag) -> Status {
    using A = typename decltype(tag)::type;
    auto launch = [&](auto kernel) {
      kernel<<<blocks_n, 256, 0, stream>>>(static_cast<const A*>(k_in), static_cast<const A*>(v_in),
                                           static_cast<uint8_t*>(k_codes), static_cast<uint8_t*>(v_codes), k_scales,
                                           v_scales, blocks, first_block, cache_len_before, tokens, bs, nkv, D,
                                           code == KvCode::fp8);
    };
    // The register path for D = 32·E; the codes of a row start at dst·D, so E-byte stores and
    // the E-element loads are aligned (the inputs are whole rows of D elements).
    const bool al = (reinterpret_cast<uintptr_t>(k_in) | reinterpret_cast<uintptr_t>(v_in) |
                     reinterpret_cast<uintptr_t>(k_codes) | reinterpret_cast<uintptr_t>(v_codes)) % 16 == 0;
    // The rows kernel (quant_append_rows_kernel) for D = G·N, N = 16 / sizeof(A) elements per
    // 16-byte chunk and G in {8, 16, 32} (16-bit: hd 64 / 128 / 256; f32: 32 / 64 / 128), when
    // every row index t·nkv + h, logical position and the block size fit 32 bits.
    constexpr uint64_t N = 16 / sizeof(A);
    const uint64_t G = D / N;
    const uint64_t rows = tokens * nkv;  // the glue validated tokens·nkv·D elements of k_in
    const bool fit32 = rows <= 0xffffffffull && cache_len_before <= 0xffffffffull &&
                       tokens <= 0xffffffffull - cache_len_before && bs <= 0xffffffffull;
    if (al && fit32 && D % N == 0 && (G == 8 || G == 16 || G == 32)) {
      const uint64_t per_pass = 256 / G * kAppendRowsPerThread;
      int dev = 0, sms = 0;
      FERRUM_CUDA_CHECK(cudaGetDevice(&dev));
      FERRUM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
      const unsigned grid = static_cast<unsigned>(
          std::min<uint64_t>((rows + per_pass - 1) / per_pass, static_cast<uint64_t>(std::max(sms, 1)) * 3));
      auto rows_launch = [&](auto kernel) {
        kernel<<<grid, 256, 0, stream>>>(static_cast<const A*>(k_in), static_cast<const A*>(v_in),
                                         static_cast<uint8_t*>(k_codes), static_cast<uint8_t*>(v_codes), k_scales,
                                         v_scales, blocks, first_block, cache_len_before, rows, bs, nkv);
      };
      auto by_code = [&](auto g) {
        constexpr int GG = decltype(g)::value;
        if (code == KvCode::fp8) rows_launch(quant_append_rows_kernel<A, GG, true, kAppendRowsPerThread>);
        else rows_launch(quant_append_rows_kernel<A, GG, false, kAppendRowsPerThread>);
      };
      if (G == 8) by_code(std::integral_constant<int, 8>{});
      else if (G == 16) by_code(std::integral_constant<int, 16>{});
      else by_code(std::integral_constant<int, 32>{});
      FERRUM_CUDA_LAUNCH_CHECK("quant_append_rows_kernel");
      return ok_status();
    }
    if (!al) launch(quant_append_kernel<A, 0>);
    else if (D == 128) launch(quant_append_kernel<A, 4>);
    else if (D == 64) launch(quant_append_kernel<A, 2>);
    else if (D == 256) launch(quant_append_kernel<A, 8>);
    else if (D == 32) launch(quant_append_kernel<A, 1>);
    else launch(quant_append_kernel<A, 0>);
    FERRUM_CUDA_LAUNCH_CHECK("quant_append_kernel");
    return ok_status();
  });
}

uint64_t quant_decode_scratch_bytes(const QuantDecodeParams& p, int sm_count) noexcept {
  const uint32_t splits = quant_splits(p, sm_count);
  if (splits <= 1) return 0;
  return flash_counter_bytes(sm_count) + p.nq * splits * (p.head_dim + 1) * sizeof(float);
}

Status quant_decode(const QuantDecodeParams& p, int sm_count, void* scratch, cudaStream_t stream) noexcept {
  if (p.nq == 0) return ok_status();
  const uint32_t splits = std::max<uint32_t>(1, quant_splits(p, sm_count));
  float* po = nullptr;
  float* pl = nullptr;
  uint32_t* cnt = nullptr;
  if (splits > 1) {
    if (!scratch) return make_status(FERRUM_STATUS_INTERNAL, "quantised paged decode: split-KV scratch missing");
    cnt = static_cast<uint32_t*>(scratch);
    po = reinterpret_cast<float*>(static_cast<unsigned char*>(scratch) + flash_counter_bytes(sm_count));
    pl = po + p.nq * splits * p.head_dim;
  }
  return with_head_dim(p.head_dim, "quantised paged decode", [&](auto hd) -> Status {
    return launch_quant<decltype(hd)::value>(p, splits, po, pl, cnt, stream);
  });
}

}  // namespace ferrum::cuda::attn
