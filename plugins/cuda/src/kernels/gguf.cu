// ferrum CUDA plugin — GGUF quantised matmul kernels (see gguf.cuh).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

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

template <int QT, class T>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gguf_matvec_kernel(const uint8_t* __restrict__ w, uint64_t n_rows, uint64_t n_cols, const T* __restrict__ a,
                       T* __restrict__ out, int m) {
  using G = Geometry<QT>;
  constexpr int kGroups = G::kQK / 32;
  const int lane = threadIdx.x & 31;
  const uint64_t groups = n_cols / 32;
  const uint64_t row_bytes = n_cols / G::kQK * G::kBytes;
  for (uint64_t row = static_cast<uint64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); row < n_rows;
       row += static_cast<uint64_t>(gridDim.x) * kWarpsPerBlock) {
    const uint8_t* wr = w + row * row_bytes;
    float acc[kGgufMatvecMaxM];
#pragma unroll
    for (int r = 0; r < static_cast<int>(kGgufMatvecMaxM); ++r) acc[r] = 0.0f;
    for (uint64_t it = lane; it < groups; it += 32) {
      float wv[32];
      decode32<QT>(wr + (it / kGroups) * G::kBytes, static_cast<int>(it % kGroups), wv);
#pragma unroll
      for (int r = 0; r < static_cast<int>(kGgufMatvecMaxM); ++r) {
        if (r < m) {
          const T* ar = a + static_cast<uint64_t>(r) * n_cols + it * 32;
          float s = 0.0f;
#pragma unroll
          for (int i = 0; i < 32; ++i) s = fmaf(wv[i], to_f(ar[i]), s);
          acc[r] += s;
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

template <int QT, class T>
__global__ void gguf_dequantize_kernel(const uint8_t* __restrict__ w, uint64_t n_rows, uint64_t n_cols,
                                       T* __restrict__ out) {
  using G = Geometry<QT>;
  constexpr int kGroups = G::kQK / 32;
  const uint64_t groups = n_cols / 32, total = n_rows * groups;
  const uint64_t row_bytes = n_cols / G::kQK * G::kBytes;
  for (uint64_t t = global_tid(); t < total; t += grid_stride()) {
    const uint64_t row = t / groups, it = t % groups;
    float wv[32];
    decode32<QT>(w + row * row_bytes + (it / kGroups) * G::kBytes, static_cast<int>(it % kGroups), wv);
    T* o = out + row * n_cols + it * 32;
#pragma unroll
    for (int i = 0; i < 32; ++i) o[i] = from_f<T>(wv[i]);
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

Status gguf_matvec(int32_t dtype, int32_t quant_type, const uint8_t* w, uint64_t n_rows, uint64_t n_cols,
                   const void* a, void* out, uint64_t m, cudaStream_t stream) noexcept {
  if (n_rows == 0 || m == 0) return Status{};
  if (m > kGgufMatvecMaxM)
    return make_status(FERRUM_STATUS_INTERNAL, "gguf_matvec: m = %llu exceeds %llu", (unsigned long long)m,
                       (unsigned long long)kGgufMatvecMaxM);
  return dispatch_float(dtype, "gguf_matvec", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    return dispatch_quant(quant_type, "gguf_matvec", [&](auto qt) -> Status {
      const uint64_t blocks = (n_rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
      const unsigned grid = static_cast<unsigned>(blocks < 2147483647u ? blocks : 2147483647u);
      gguf_matvec_kernel<decltype(qt)::value, T><<<grid, kWarpsPerBlock * 32, 0, stream>>>(
          w, n_rows, n_cols, static_cast<const T*>(a), static_cast<T*>(out), static_cast<int>(m));
      FERRUM_CUDA_LAUNCH_CHECK("gguf_matvec_kernel");
      return Status{};
    });
  });
}

Status gguf_dequantize(int32_t dtype, int32_t quant_type, const uint8_t* w, uint64_t n_rows, uint64_t n_cols,
                       void* out, cudaStream_t stream) noexcept {
  const uint64_t work = n_rows * (n_cols / 32);  // <= n_rows·n_cols, checked by the glue
  if (work == 0) return Status{};
  return dispatch_float(dtype, "gguf_dequantize", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    return dispatch_quant(quant_type, "gguf_dequantize", [&](auto qt) -> Status {
      gguf_dequantize_kernel<decltype(qt)::value, T><<<blocks_for(work), kThreads, 0, stream>>>(
          w, n_rows, n_cols, static_cast<T*>(out));
      FERRUM_CUDA_LAUNCH_CHECK("gguf_dequantize_kernel");
      return Status{};
    });
  });
}

}  // namespace ferrum::cuda::kernels
