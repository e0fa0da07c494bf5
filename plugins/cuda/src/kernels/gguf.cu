// ferrum CUDA plugin — GGUF quantised matmul kernels (see gguf.cuh).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "cuda_check.hpp"
#include "dtype.hpp"
#include "kernels/elementwise.cuh"
#include "kernels/gguf.cuh"

namespace ferrum::cuda::kernels {
namespace {

using namespace dev;

constexpr int kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14;

template <int QT>
struct Geometry;
template <>
struct Geometry<kQ4_0> { static constexpr int kQK = 32, kBytes = 18; };
template <>
struct Geometry<kQ4_1> { static constexpr int kQK = 32, kBytes = 20; };
template <>
struct Geometry<kQ8_0> { static constexpr int kQK = 32, kBytes = 34; };
template <>
struct Geometry<kQ4_K> { static constexpr int kQK = 256, kBytes = 144; };
template <>
struct Geometry<kQ5_K> { static constexpr int kQK = 256, kBytes = 176; };
template <>
struct Geometry<kQ6_K> { static constexpr int kQK = 256, kBytes = 210; };

// A little-endian f16 field at any alignment, widened exactly.
__device__ __forceinline__ float f16_at(const uint8_t* p) {
  const unsigned short u = static_cast<unsigned short>(p[0] | (p[1] << 8));
  return __half2float(__ushort_as_half(u));
}

// K-quant scale and min of sub-block j (Q4_K, Q5_K; docs/spec.md §11.1).
__device__ __forceinline__ void kquant_scale_min(const uint8_t* scales, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = scales[j] & 63;
    mn = scales[j + 4] & 63;
  } else {
    sc = (scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4);
    mn = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// The 32 weights of group `g` (columns 32g … 32g + 31 of the block) of block `b`, exactly.
template <int QT>
__device__ __forceinline__ void decode32(const uint8_t* b, int g, float w[32]) {
  if constexpr (QT == kQ4_0) {
    const float d = f16_at(b);
    const uint8_t* qs = b + 2;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      w[i] = d * static_cast<float>((qs[i] & 15) - 8);
      w[i + 16] = d * static_cast<float>((qs[i] >> 4) - 8);
    }
  } else if constexpr (QT == kQ4_1) {
    const float d = f16_at(b), m = f16_at(b + 2);
    const uint8_t* qs = b + 4;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      w[i] = d * static_cast<float>(qs[i] & 15) + m;
      w[i + 16] = d * static_cast<float>(qs[i] >> 4) + m;
    }
  } else if constexpr (QT == kQ8_0) {
    const float d = f16_at(b);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
#pragma unroll
    for (int i = 0; i < 32; ++i) w[i] = d * static_cast<float>(qs[i]);
  } else if constexpr (QT == kQ4_K || QT == kQ5_K) {
    const float d = f16_at(b), dmin = f16_at(b + 2);
    int sc = 0, mn = 0;
    kquant_scale_min(b + 4, g, sc, mn);
    const float ds = d * static_cast<float>(sc), dm = dmin * static_cast<float>(mn);
    const int c = g >> 1, shift = (g & 1) * 4;
    if constexpr (QT == kQ4_K) {
      const uint8_t* qs = b + 16 + 32 * c;
#pragma unroll
      for (int l = 0; l < 32; ++l) w[l] = ds * static_cast<float>((qs[l] >> shift) & 15) - dm;
    } else {
      const uint8_t* qh = b + 16;
      const uint8_t* qs = b + 48 + 32 * c;
#pragma unroll
      for (int l = 0; l < 32; ++l) {
        const int q = ((qs[l] >> shift) & 15) + 16 * ((qh[l] >> g) & 1);
        w[l] = ds * static_cast<float>(q) - dm;
      }
    }
  } else {  // Q6_K: group g = 4n + k of half n
    const int n = g >> 2, k = g & 3;
    const uint8_t* L = b + 64 * n + (k & 1) * 32;  // ql[l] (k even) or ql[l + 32] (k odd)
    const uint8_t* H = b + 128 + 32 * n;
    const int8_t* Sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * n + 2 * k;
    const float d = f16_at(b + 208);
    const int lshift = (k >> 1) * 4, hshift = 2 * k;
    const float s0 = d * static_cast<float>(Sc[0]), s1 = d * static_cast<float>(Sc[1]);
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      const int q = ((L[l] >> lshift) & 15) | (((H[l] >> hshift) & 3) << 4);
      w[l] = (l < 16 ? s0 : s1) * static_cast<float>(q - 32);
    }
  }
}

constexpr int kWarpsPerBlock = 8;
constexpr int kThreadsPerBlock = kWarpsPerBlock * 32;

// A warp works on chunks of 32 consecutive 32-weight groups of one row: whole blocks, contiguous
// bytes (32 blocks of a QK-32 type, 4 blocks of a K-quant).
template <int QT>
struct Chunk {
  using G = Geometry<QT>;
  static constexpr int kGroupsPerBlock = G::kQK / 32;
  static constexpr int kBytes = 32 / kGroupsPerBlock * G::kBytes;  // bytes of a full chunk (even)
  static constexpr int kHalves = kBytes / 2;                       // 16-bit words
  static constexpr int kPerLane = (kHalves + 31) / 32;             // 16-bit words per lane
  static constexpr int kSmem = (kBytes + 15) / 16 * 16;            // staging bytes per warp
};

// Loads the 16-bit words of the chunk of `groups` groups starting at group g0 of a row (every
// block size is even and rows start at even offsets, so the words are aligned): lane l takes
// words l, l + 32, … — one coalesced pass over the chunk's bytes.
template <int QT>
__device__ __forceinline__ void load_chunk(const uint8_t* row, uint64_t g0, int groups, int lane,
                                           uint32_t (&pf)[Chunk<QT>::kPerLane]) {
  using C = Chunk<QT>;
  const uint16_t* src = reinterpret_cast<const uint16_t*>(row + g0 / C::kGroupsPerBlock * Geometry<QT>::kBytes);
  const int halves = groups / C::kGroupsPerBlock * Geometry<QT>::kBytes / 2;
#pragma unroll
  for (int j = 0; j < C::kPerLane; ++j) {
    const int i = lane + 32 * j;
    pf[j] = i < halves ? __ldg(src + i) : 0u;
  }
}

template <int QT>
__device__ __forceinline__ void store_chunk(unsigned char* buf, int lane, const uint32_t (&pf)[Chunk<QT>::kPerLane]) {
  using C = Chunk<QT>;
  uint16_t* dst = reinterpret_cast<uint16_t*>(buf);
#pragma unroll
  for (int j = 0; j < C::kPerLane; ++j) {
    const int i = lane + 32 * j;
    if (i < C::kHalves) dst[i] = static_cast<uint16_t>(pf[j]);
  }
}

// Activations staged in shared memory: group g of row r (32 values of T) at byte
// (r·groups + g)·act_stride<T>: 16 bytes of padding after each group make a lane's 16-byte
// loads of its own group conflict-free across the warp.
template <class T>
__host__ __device__ constexpr int act_stride() { return 32 * static_cast<int>(sizeof(T)) + 16; }

template <class T>
__device__ __forceinline__ float dot32_smem(const float (&wv)[32], const unsigned char* g) {
  constexpr int kVecs = 32 * static_cast<int>(sizeof(T)) / 16;
  float s = 0.0f;
#pragma unroll
  for (int v = 0; v < kVecs; ++v) {
    const uint4 u = *reinterpret_cast<const uint4*>(g + 16 * v);
    const T* t = reinterpret_cast<const T*>(&u);
#pragma unroll
    for (int i = 0; i < 16 / static_cast<int>(sizeof(T)); ++i)
      s = fmaf(wv[v * (16 / sizeof(T)) + i], to_f(t[i]), s);
  }
  return s;
}

template <class T>
__device__ __forceinline__ float dot32_global(const float (&wv)[32], const T* ar) {
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 32; ++i) s = fmaf(wv[i], to_f(ar[i]), s);
  return s;
}

// kSmemAct: the m activation rows are staged in shared memory once per block (when they fit);
// otherwise each lane reads its 32 values from global memory (L1/L2).
template <int QT, class T, bool kSmemAct>
__global__ void __launch_bounds__(kThreadsPerBlock, 2)
    gguf_matvec_kernel(const uint8_t* __restrict__ w, uint64_t n_rows, uint64_t n_cols, const T* __restrict__ a,
                       T* __restrict__ out, int m) {
  using G = Geometry<QT>;
  using C = Chunk<QT>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned char* wbuf = smem + warp * C::kSmem;
  const unsigned char* abuf = smem + kWarpsPerBlock * C::kSmem;
  const uint64_t groups = n_cols / 32;
  const uint64_t row_bytes = n_cols / G::kQK * G::kBytes;
  if constexpr (kSmemAct) {
    constexpr int kVecs = 32 * static_cast<int>(sizeof(T)) / 16;  // 16-byte vectors per group
    unsigned char* dst = smem + kWarpsPerBlock * C::kSmem;
    const uint64_t vecs = static_cast<uint64_t>(m) * groups * kVecs;
    for (uint64_t i = threadIdx.x; i < vecs; i += kThreadsPerBlock) {
      const uint64_t rg = i / kVecs, v = i % kVecs;  // rg = r·groups + g: a's group index
      *reinterpret_cast<uint4*>(dst + rg * act_stride<T>() + 16 * v) =
          __ldg(reinterpret_cast<const uint4*>(a + rg * 32) + v);
    }
    __syncthreads();
  }
  for (uint64_t row = static_cast<uint64_t>(blockIdx.x) * kWarpsPerBlock + warp; row < n_rows;
       row += static_cast<uint64_t>(gridDim.x) * kWarpsPerBlock) {
    const uint8_t* wr = w + row * row_bytes;
    float acc[kGgufMatvecMaxM];
#pragma unroll
    for (int r = 0; r < static_cast<int>(kGgufMatvecMaxM); ++r) acc[r] = 0.0f;
    uint32_t pf[C::kPerLane];
    load_chunk<QT>(wr, 0, static_cast<int>(groups < 32 ? groups : 32), lane, pf);
    for (uint64_t g0 = 0; g0 < groups; g0 += 32) {
      const int cnt = static_cast<int>(groups - g0 < 32 ? groups - g0 : 32);
      __syncwarp();
      store_chunk<QT>(wbuf, lane, pf);
      __syncwarp();
      if (g0 + 32 < groups) {  // the next chunk's loads fly while this one is decoded
        const uint64_t left = groups - g0 - 32;
        load_chunk<QT>(wr, g0 + 32, static_cast<int>(left < 32 ? left : 32), lane, pf);
      }
      if (lane < cnt) {
        float wv[32];
        decode32<QT>(wbuf + (lane / C::kGroupsPerBlock) * G::kBytes, lane % C::kGroupsPerBlock, wv);
        const uint64_t g = g0 + lane;
#pragma unroll
        for (int r = 0; r < static_cast<int>(kGgufMatvecMaxM); ++r) {
          if (r < m) {
            if constexpr (kSmemAct)
              acc[r] += dot32_smem<T>(wv, abuf + (static_cast<uint64_t>(r) * groups + g) * act_stride<T>());
            else
              acc[r] += dot32_global<T>(wv, a + static_cast<uint64_t>(r) * n_cols + g * 32);
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < static_cast<int>(kGgufMatvecMaxM); ++r) {
      if (r < m) {
        const float v = warp_sum(acc[r]);
        if (lane == 0) out[static_cast<uint64_t>(r) * n_rows + row] = from_f<T>(v);
      }
    }
  }
}

// One warp per chunk of 32 groups: the chunk's bytes staged through shared memory (coalesced),
// each lane decodes one group and writes its 32 values as 16-byte vectors.
template <int QT, class T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    gguf_dequantize_kernel(const uint8_t* __restrict__ w, uint64_t n_rows, uint64_t n_cols, T* __restrict__ out) {
  using G = Geometry<QT>;
  using C = Chunk<QT>;
  __shared__ __align__(16) unsigned char smem[kWarpsPerBlock * C::kSmem];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned char* wbuf = smem + warp * C::kSmem;
  const uint64_t groups = n_cols / 32, chunks_per_row = (groups + 31) / 32, chunks = n_rows * chunks_per_row;
  const uint64_t row_bytes = n_cols / G::kQK * G::kBytes;
  for (uint64_t ch = static_cast<uint64_t>(blockIdx.x) * kWarpsPerBlock + warp; ch < chunks;
       ch += static_cast<uint64_t>(gridDim.x) * kWarpsPerBlock) {
    const uint64_t row = ch / chunks_per_row, g0 = ch % chunks_per_row * 32;
    const int cnt = static_cast<int>(groups - g0 < 32 ? groups - g0 : 32);
    uint32_t pf[C::kPerLane];
    load_chunk<QT>(w + row * row_bytes, g0, cnt, lane, pf);
    __syncwarp();
    store_chunk<QT>(wbuf, lane, pf);
    __syncwarp();
    if (lane < cnt) {
      float wv[32];
      decode32<QT>(wbuf + (lane / C::kGroupsPerBlock) * G::kBytes, lane % C::kGroupsPerBlock, wv);
      T* o = out + row * n_cols + (g0 + lane) * 32;
      constexpr int kPer = 16 / static_cast<int>(sizeof(T));
#pragma unroll
      for (int v = 0; v < 32 / kPer; ++v) {
        uint4 u;
        T* t = reinterpret_cast<T*>(&u);
#pragma unroll
        for (int i = 0; i < kPer; ++i) t[i] = from_f<T>(wv[v * kPer + i]);
        reinterpret_cast<uint4*>(o)[v] = u;
      }
    }
  }
}

// Calls f(std::integral_constant<int, QT>{}) for the six served types.
template <class F>
Status dispatch_quant(int32_t quant_type, const char* what, F&& f) {
  switch (quant_type) {
    case kQ4_0: return f(std::integral_constant<int, kQ4_0>{});
    case kQ4_1: return f(std::integral_constant<int, kQ4_1>{});
    case kQ8_0: return f(std::integral_constant<int, kQ8_0>{});
    case kQ4_K: return f(std::integral_constant<int, kQ4_K>{});
    case kQ5_K: return f(std::integral_constant<int, kQ5_K>{});
    case kQ6_K: return f(std::integral_constant<int, kQ6_K>{});
    default:
      return make_status(FERRUM_STATUS_UNSUPPORTED, "%s: quant type %d is not served", what, static_cast<int>(quant_type));
  }
}

}  // namespace

// Shared memory a matvec block needs to stage `m` activation rows of `n_cols` T values.
template <int QT, class T>
uint64_t matvec_smem(uint64_t m, uint64_t n_cols) {
  return kWarpsPerBlock * Chunk<QT>::kSmem + m * (n_cols / 32) * act_stride<T>();  // arith-ok: m <= 8, n_cols checked
}

// The largest dynamic shared memory gguf_matvec_kernel<QT, T, true> has been allowed so far: the
// attribute is raised only when a call needs more (it is a per-function setting, not per launch).
template <int QT, class T>
std::atomic<int>& matvec_smem_allowed() {
  static std::atomic<int> allowed{0};
  return allowed;
}

Status gguf_matvec(int32_t dtype, int32_t quant_type, const uint8_t* w, uint64_t n_rows, uint64_t n_cols,
                   const void* a, void* out, uint64_t m, cudaStream_t stream) noexcept {
  if (n_rows == 0 || m == 0) return Status{};
  int device = 0, sms = 0, optin = 0;
  FERRUM_CUDA_CHECK(cudaGetDevice(&device));
  FERRUM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  FERRUM_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return dispatch_float(dtype, "gguf_matvec", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    return dispatch_quant(quant_type, "gguf_matvec", [&](auto qt) -> Status {
      constexpr int QT = decltype(qt)::value;
      // Two blocks per SM (the launch bound), at most one per 8 rows.
      const uint64_t by_rows = (n_rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
      const unsigned grid = static_cast<unsigned>(by_rows < 2ull * sms ? by_rows : 2ull * sms);
      // Passes of kGgufMatvecMaxM activation rows (each pass reads the weight once).
      for (uint64_t r0 = 0; r0 < m; r0 += kGgufMatvecMaxM) {
        const uint64_t rows = m - r0 < kGgufMatvecMaxM ? m - r0 : kGgufMatvecMaxM;
        const T* ap = static_cast<const T*>(a) + r0 * n_cols;  // arith-ok: r0 < m, inside a (checked by the glue)
        T* op = static_cast<T*>(out) + r0 * n_rows;              // arith-ok: inside out
        const uint64_t need = matvec_smem<QT, T>(rows, n_cols);
        if (need <= static_cast<uint64_t>(optin)) {
          auto kernel = gguf_matvec_kernel<QT, T, true>;
          std::atomic<int>& allowed = matvec_smem_allowed<QT, T>();
          if (static_cast<int>(need) > allowed.load(std::memory_order_relaxed)) {
            FERRUM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
            allowed.store(optin, std::memory_order_relaxed);
          }
          kernel<<<grid, kThreadsPerBlock, need, stream>>>(w, n_rows, n_cols, ap, op, static_cast<int>(rows));
        } else {
          const uint64_t wonly = kWarpsPerBlock * Chunk<QT>::kSmem;
          gguf_matvec_kernel<QT, T, false><<<grid, kThreadsPerBlock, wonly, stream>>>(w, n_rows, n_cols, ap, op,
                                                                                      static_cast<int>(rows));
        }
        FERRUM_CUDA_LAUNCH_CHECK("gguf_matvec_kernel");
      }
      return Status{};
    });
  });
}

Status gguf_dequantize(int32_t dtype, int32_t quant_type, const uint8_t* w, uint64_t n_rows, uint64_t n_cols,
                       void* out, cudaStream_t stream) noexcept {
  const uint64_t chunks = n_rows * ((n_cols / 32 + 31) / 32);  // arith-ok: <= n_rows·n_cols, checked by the glue
  if (chunks == 0) return Status{};
  return dispatch_float(dtype, "gguf_dequantize", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    return dispatch_quant(quant_type, "gguf_dequantize", [&](auto qt) -> Status {
      gguf_dequantize_kernel<decltype(qt)::value, T>
          <<<blocks_for(chunks, kWarpsPerBlock), kThreadsPerBlock, 0, stream>>>(w, n_rows, n_cols, static_cast<T*>(out));
      FERRUM_CUDA_LAUNCH_CHECK("gguf_dequantize_kernel");
      return Status{};
    });
  });
}

}  // namespace ferrum::cuda::kernels
