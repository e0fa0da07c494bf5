// ferrum CUDA plugin — the QK-norm / RoPE family kernel (declared in rope.cuh).
//
// rope_kernel<T, C, N>: T the activation type, C the table type (T or float), N elements per
// chunk (16 bytes, or 1 for the scalar path). One warp per (token, head) vector, 8 warps per
// block, grid-stride over vectors. Each lane keeps J = 256 / (32·N) chunks (8 values) in f32
// registers; the rotation partner is read from the warp's f32 row in shared memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cuda_check.hpp"
#include "dtype.hpp"
#include "kernels/elementwise.cuh"
#include "kernels/rope.cuh"

namespace ferrum::cuda::kernels {

using namespace dev;

namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kMaxD = static_cast<int>(kRopeMaxHeadDim);

enum PosKind : int { kPosHost = 0, kPosU32 = 1, kPosI32 = 2 };

template <class T, class C>
struct RopeParams {
  const T* in;
  uint64_t in_row_stride, tokens, heads_total, D;
  float eps;
  int pos_kind;
  T* dst[3];
  uint64_t seg_end[3];  // exclusive end head of each segment (cumulative)
  uint64_t head_stride[3], tok_stride[3];
  const T* w[3];
  int mode[3];
  const C* cos;
  const C* sin;
  uint64_t rows, pos_offset;
  const void* positions;
};

template <class T, class C, int N>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) rope_kernel(const RopeParams<T, C> p) {
  using V = Vec<T, N>;
  constexpr int J = (kMaxD / N + 31) / 32;  // chunk slots per lane
  __shared__ float sx[kWarpsPerBlock][kMaxD];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint64_t total = p.tokens * p.heads_total;
  const uint64_t D = p.D, nc = D / N, half = D / 2;
  float* row = sx[warp];
  for (uint64_t v = static_cast<uint64_t>(blockIdx.x) * kWarpsPerBlock + warp; v < total;
       v += static_cast<uint64_t>(gridDim.x) * kWarpsPerBlock) {
    // Everything below down to the loads is uniform across the warp.
    const uint64_t t = v / p.heads_total, j = v - t * p.heads_total;
    const int s = j < p.seg_end[0] ? 0 : (j < p.seg_end[1] ? 1 : 2);
    const uint64_t h = j - (s == 0 ? 0 : p.seg_end[s - 1]);
    const int mode = p.mode[s];
    const V* src = reinterpret_cast<const V*>(p.in + t * p.in_row_stride + j * D);
    V* dst = reinterpret_cast<V*>(p.dst[s] + h * p.head_stride[s] + t * p.tok_stride[s]);
    if (mode == 0) {  // bit copy
#pragma unroll
      for (int k = 0; k < J; ++k) {
        const uint64_t c = lane + 32 * k;
        if (c < nc) dst[c] = src[c];
      }
      continue;
    }
    uint64_t pos;
    if (p.pos_kind == kPosHost) {
      pos = p.pos_offset + t;
    } else if (p.pos_kind == kPosU32) {
      pos = static_cast<const uint32_t*>(p.positions)[t];
    } else {
      const int32_t q = static_cast<const int32_t*>(p.positions)[t];
      pos = q < 0 ? ~uint64_t{0} : static_cast<uint64_t>(q);
    }
    if (pos >= p.rows) {  // device position out of range: a row of +0.0, no table read
      V z;
#pragma unroll
      for (int jj = 0; jj < N; ++jj) z.v[jj] = from_f<T>(0.0f);
#pragma unroll
      for (int k = 0; k < J; ++k) {
        const uint64_t c = lane + 32 * k;
        if (c < nc) dst[c] = z;
      }
      continue;
    }
    float x[J][N];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < J; ++k) {
      const uint64_t c = lane + 32 * k;
      if (c < nc) {
        const V a = src[c];
#pragma unroll
        for (int jj = 0; jj < N; ++jj) {
          x[k][jj] = to_f(a.v[jj]);
          ss += x[k][jj] * x[k][jj];
        }
      } else {
#pragma unroll
        for (int jj = 0; jj < N; ++jj) x[k][jj] = 0.0f;
      }
    }
    if (mode == 1) {
      const float inv = rsqrtf(warp_sum(ss) / static_cast<float>(D) + p.eps);
      const T* w = p.w[s];
#pragma unroll
      for (int k = 0; k < J; ++k) {
        const uint64_t c = lane + 32 * k;
        if (c < nc) {
#pragma unroll
          for (int jj = 0; jj < N; ++jj) x[k][jj] = x[k][jj] * inv * to_f(w[c * N + jj]);
        }
      }
    }
#pragma unroll
    for (int k = 0; k < J; ++k) {
      const uint64_t c = lane + 32 * k;
      if (c < nc) {
#pragma unroll
        for (int jj = 0; jj < N; ++jj) row[c * N + jj] = x[k][jj];
      }
    }
    __syncwarp();
    const C* cr = p.cos + pos * half;
    const C* sr = p.sin + pos * half;
#pragma unroll
    for (int k = 0; k < J; ++k) {
      const uint64_t c = lane + 32 * k;
      if (c < nc) {
        V o;
#pragma unroll
        for (int jj = 0; jj < N; ++jj) {
          const uint64_t e = c * N + jj;
          float y;
          if (mode == 3) {  // GPT-J: pairs (2i, 2i+1)
            const uint64_t i = e >> 1;
            const float ci = to_f(cr[i]), si = to_f(sr[i]);
            y = (e & 1) ? x[k][jj] * ci + row[e - 1] * si : x[k][jj] * ci - row[e + 1] * si;
          } else {  // NeoX: pairs (i, i + half)
            const bool lo = e < half;
            const uint64_t i = lo ? e : e - half;
            const float ci = to_f(cr[i]), si = to_f(sr[i]);
            y = lo ? x[k][jj] * ci - row[e + half] * si : x[k][jj] * ci + row[e - half] * si;
          }
          o.v[jj] = from_f<T>(y);
        }
        dst[c] = o;
      }
    }
    __syncwarp();  // the next vector overwrites `row`
  }
}

template <class T, class C>
Status launch_rope(const RopeLaunch& L, cudaStream_t stream) {
  RopeParams<T, C> p{};
  p.in = static_cast<const T*>(L.in);
  p.in_row_stride = L.in_row_stride;
  p.tokens = L.tokens;
  p.D = L.head_dim;
  p.eps = L.eps;
  uint64_t end = 0;
  for (int s = 0; s < 3; ++s) {
    const RopeSegment& g = L.seg[s < L.nseg ? s : 0];
    const bool used = s < L.nseg;
    end += used ? g.heads : 0;
    p.seg_end[s] = end;
    p.dst[s] = used ? static_cast<T*>(g.dst) : nullptr;
    p.head_stride[s] = used ? g.head_stride : 0;
    p.tok_stride[s] = used ? g.tok_stride : 0;
    p.w[s] = used ? static_cast<const T*>(g.norm_w) : nullptr;
    p.mode[s] = used ? g.mode : 0;
  }
  p.heads_total = end;
  p.cos = static_cast<const C*>(L.cos);
  p.sin = static_cast<const C*>(L.sin);
  p.rows = L.table_rows;
  p.pos_offset = L.pos_offset;
  p.positions = L.positions;
  p.pos_kind = L.positions == nullptr ? kPosHost : (L.positions_dtype == FERRUM_DTYPE_I32 ? kPosI32 : kPosU32);

  const uint64_t total = p.tokens * p.heads_total;
  if (total == 0 || p.D == 0) return ok_status();
  constexpr int NV = kVec<T>;
  bool vec = p.D % NV == 0 && aligned16(p.in) && p.in_row_stride % NV == 0;
  for (int s = 0; s < L.nseg; ++s) vec = vec && aligned16(p.dst[s]);
  const unsigned blocks =
      static_cast<unsigned>(std::clamp<uint64_t>((total + kWarpsPerBlock - 1) / kWarpsPerBlock, 1, uint64_t{1} << 20));
  (void)cudaGetLastError();
  if (vec) {
    rope_kernel<T, C, NV><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(p);
  } else {
    rope_kernel<T, C, 1><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(p);
  }
  FERRUM_CUDA_LAUNCH_CHECK("rope_kernel");
  return ok_status();
}

}  // namespace

Status rope_heads(const RopeLaunch& L, cudaStream_t stream) noexcept {
  if (L.head_dim > kRopeMaxHeadDim)
    return make_status(FERRUM_STATUS_INTERNAL, "rope_heads: head_dim %llu > %llu reached the kernel",
                       static_cast<unsigned long long>(L.head_dim), static_cast<unsigned long long>(kRopeMaxHeadDim));
  if (L.nseg < 1 || L.nseg > 3)
    return make_status(FERRUM_STATUS_INTERNAL, "rope_heads: %d segments", L.nseg);
  return dispatch_float(L.act_dtype, "qk_norm_rope", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, float>)
      if (L.tab_dtype == FERRUM_DTYPE_F32) return launch_rope<T, float>(L, stream);
    return launch_rope<T, T>(L, stream);
  });
}

}  // namespace ferrum::cuda::kernels
