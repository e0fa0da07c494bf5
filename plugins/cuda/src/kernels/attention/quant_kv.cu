// ferrum CUDA plugin — quantised paged KV kernels (see quant_kv.hpp): the append (one warp per
// (token, head) vector: exact max, IEEE division, round-to-nearest-even codes) and the decode
// attention, which runs the SIMT split-KV kernel of flash_decode.cuh over a source that
// dequantises each 16-byte chunk of f32 (4 codes) into shared memory: k = s_k·code in f32, the
// spec's dequantised value, so the scores and the value sums are the f32 attention over it.
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

// The code of x / s (the recipe of quant_kv.hpp).
__device__ __forceinline__ uint8_t quant_code(float x, float s, bool fp8) {
  const float q = __fdiv_rn(x, s);
  if (fp8) return static_cast<uint8_t>(__nv_cvt_float_to_fp8(q, __NV_SATFINITE, __NV_E4M3));
  const float c = fminf(fmaxf(q, -127.0f), 127.0f);
  return static_cast<uint8_t>(static_cast<int8_t>(c == c ? rintf(c) : 0.0f));
}

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

template <class A>
__device__ __forceinline__ float act_at(const void* p, uint64_t i) {
  return to_f32(static_cast<const A*>(p)[i]);
}
template <class A>
__device__ __forceinline__ void act_put(void* p, uint64_t i, float v) {
  static_cast<A*>(p)[i] = from_f32<A>(v);
}

// The dequantising source of the SIMT decode kernel (T = float rows): one row, one query per
// head at p = valid_kv_len − 1.
template <int HD>
struct QuantSrc {
  QuantDecodeParams p;
  uint64_t H, nkv, window;
  float scale;
  explicit QuantSrc(const QuantDecodeParams& qp)
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

uint32_t quant_splits(const QuantDecodeParams& p, int sm_count) {
  const uint64_t chunks = (p.nq / p.nkv + kDecodeHeadChunk - 1) / kDecodeHeadChunk;
  uint64_t bound = p.valid_kv_len;
  if (p.window) bound = std::min(bound, p.window);
  return decode_split_count(FERRUM_DTYPE_F32, p.head_dim, p.nkv * chunks, bound, sm_count);
}

template <int HD>
Status launch_quant(const QuantDecodeParams& p, uint32_t splits, float* po, float* pl, uint32_t* cnt,
                    cudaStream_t st) noexcept {
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
