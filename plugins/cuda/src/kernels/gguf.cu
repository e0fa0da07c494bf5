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

constexpr int kWarpsPerBlock = 8;
constexpr int kThreadsPerBlock = kWarpsPerBlock * 32;
constexpr int kStages = 4;  // shared-memory stages per warp: kStages − 1 chunks in flight while one is decoded

// A warp works on chunks of 32 consecutive 32-weight groups of one row: whole blocks, contiguous
// bytes (32 blocks of a QK-32 type, 4 blocks of a K-quant). A stage holds the 16-byte-aligned
// units that cover a chunk at any even address, plus one unit of padding (Words reads one word
// past the last one it returns).
template <int QT>
struct Chunk {
  using G = Geometry<QT>;
  static constexpr int kGroupsPerBlock = G::kQK / 32;
  static constexpr int kBytes = 32 / kGroupsPerBlock * G::kBytes;  // bytes of a full chunk (even)
  static constexpr int kUnits = (kBytes + 14 + 15) / 16;          // 16-byte units covering it
  static constexpr int kStage = kUnits * 16 + 16;                 // bytes of one stage
  static constexpr int kRing = kStages * kStage;                  // bytes of a warp's ring
};

// ---- cp.async (sm_80+) ----
__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gmem_src) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem_src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Copies the chunk bytes [src, src + len) (src even) into `stage`: the 16-byte-aligned units
// covering them, unit u at stage + 16u, lane l taking units l, l + 32, … with cp.async. A unit
// not wholly inside the weight [lo, hi) (only the matrix's first and last can be: every chunk
// lies inside it) is read as the 16-bit words of it that are inside, synchronously, so no load
// leaves [lo, hi). The chunk starts at byte (src mod 16) of the stage. Commits nothing.
__device__ __forceinline__ void stage_chunk(unsigned char* stage, const uint8_t* src, int len, uintptr_t lo,
                                            uintptr_t hi, int lane) {
  const uintptr_t s0 = reinterpret_cast<uintptr_t>(src) & ~uintptr_t{15};
  const int units = static_cast<int>((reinterpret_cast<uintptr_t>(src) & 15) + len + 15) >> 4;
  if (s0 >= lo && s0 + 16 * static_cast<uintptr_t>(units) <= hi) {  // every unit inside: the common case
    for (int u = lane; u < units; u += 32)
      cp_async16(stage + 16 * u, reinterpret_cast<const void*>(s0 + 16 * static_cast<uintptr_t>(u)));
    return;
  }
  for (int u = lane; u < units; u += 32) {
    const uintptr_t p = s0 + 16 * static_cast<uintptr_t>(u);
    if (p >= lo && p + 16 <= hi) {
      cp_async16(stage + 16 * u, reinterpret_cast<const void*>(p));
    } else {
#pragma unroll
      for (int h = 0; h < 8; ++h) {
        const uintptr_t q = p + 2 * h;
        if (q >= lo && q < hi)
          *reinterpret_cast<uint16_t*>(stage + 16 * u + 2 * h) = __ldg(reinterpret_cast<const uint16_t*>(q));
      }
    }
  }
}

// 32-bit little-endian words at an even byte offset `off` of a 16-byte-aligned shared buffer:
// word i = bytes off + 4i … off + 4i + 3, from two aligned loads and a funnel shift (reads the
// word after it too).
struct Words {
  const uint32_t* base;
  uint32_t sh;
  __device__ __forceinline__ Words(const unsigned char* buf, int off)
      : base(reinterpret_cast<const uint32_t*>(buf + (off & ~3))), sh(static_cast<uint32_t>(off & 3) * 8u) {}
  __device__ __forceinline__ uint32_t operator[](int i) const { return __funnelshift_r(base[i], base[i + 1], sh); }
  // Words 0 … N − 1 with N + 1 aligned loads (each loaded once).
  template <int N>
  __device__ __forceinline__ void load(uint32_t (&out)[N]) const {
    uint32_t raw[N + 1];
#pragma unroll
    for (int i = 0; i <= N; ++i) raw[i] = base[i];
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = __funnelshift_r(raw[i], raw[i + 1], sh);
  }
};

// An f16 field at an even offset of a shared buffer, widened exactly.
__device__ __forceinline__ float f16_at(const unsigned char* buf, int off) {
  return __half2float(*reinterpret_cast<const __half*>(buf + off));
}

// Byte k (0…3) of `codes` as the exact f32 value 2^23 + byte (one byte permute: 0x4B0000bb).
template <int K>
__device__ __forceinline__ float biased(uint32_t codes) {
  return __int_as_float(static_cast<int>(__byte_perm(codes, 0x4B000000u, 0x7440u | K)));
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

// Exact decoder of group g (columns 32g … 32g + 31 of its block) of the block at even offset
// `off` of a staged chunk. Every weight is scale·(q − kOff) (+ add): q = an unsigned byte code,
// scale·(q − kOff) exact in f32 (f16 scale × ≤ 17-bit integer), so the value is the §11.1 value
// whatever the evaluation order or FMA contraction. codes(i) holds the codes of weights 4i … 4i + 3
// (i = 0 … 7), one per byte.
template <int QT>
struct GroupDecoder {
  static constexpr float kOff = QT == kQ4_0 ? 8.0f : QT == kQ8_0 ? 128.0f : QT == kQ6_K ? 32.0f : 0.0f;
  static constexpr bool kAdd = QT == kQ4_1 || QT == kQ4_K || QT == kQ5_K;
  static constexpr float kBias = 8388608.0f + kOff;  // 2^23 + kOff: biased(q) − kBias = q − kOff exactly
  Words lo, hi;         // code bytes (qs / ql) and the high bits (Q5_K qh, Q6_K qh)
  float s0, s1, add;    // scale of weights 0–15 and 16–31; the added term
  uint32_t shl, shh;    // nibble shift of lo; bit shift of hi

  __device__ __forceinline__ GroupDecoder(const unsigned char* buf, int off, int g)
      : lo(buf, off), hi(buf, off), s0(0.0f), s1(0.0f), add(0.0f), shl(0), shh(0) {
    if constexpr (QT == kQ4_0 || QT == kQ8_0) {
      s0 = s1 = f16_at(buf, off);
      lo = Words(buf, off + 2);
    } else if constexpr (QT == kQ4_1) {
      s0 = s1 = f16_at(buf, off);
      add = f16_at(buf, off + 2);
      lo = Words(buf, off + 4);
    } else if constexpr (QT == kQ4_K || QT == kQ5_K) {
      const float d = f16_at(buf, off), dmin = f16_at(buf, off + 2);
      int sc = 0, mn = 0;
      kquant_scale_min(buf + off + 4, g, sc, mn);
      s0 = s1 = d * static_cast<float>(sc);
      add = -(dmin * static_cast<float>(mn));
      shl = static_cast<uint32_t>(g & 1) * 4u;
      if constexpr (QT == kQ4_K) {
        lo = Words(buf, off + 16 + 32 * (g >> 1));
      } else {
        lo = Words(buf, off + 48 + 32 * (g >> 1));
        hi = Words(buf, off + 16);
        shh = static_cast<uint32_t>(g);
      }
    } else {  // Q6_K: group g = 4n + k of half n
      const int n = g >> 2, k = g & 3;
      lo = Words(buf, off + 64 * n + (k & 1) * 32);  // ql[l] (k even) or ql[l + 32] (k odd)
      hi = Words(buf, off + 128 + 32 * n);
      const signed char* sc = reinterpret_cast<const signed char*>(buf + off + 192 + 8 * n + 2 * k);
      const float d = f16_at(buf, off + 208);
      s0 = d * static_cast<float>(sc[0]);
      s1 = d * static_cast<float>(sc[1]);
      shl = static_cast<uint32_t>(k >> 1) * 4u;
      shh = static_cast<uint32_t>(2 * k);
    }
  }

  // Code words of the group: kLo of lo (weights 4i … 4i + 3 come from lo word i mod kLo), kHi
  // of hi (word i).
  static constexpr int kLo = QT == kQ4_0 || QT == kQ4_1 ? 4 : 8;
  static constexpr int kHi = QT == kQ5_K || QT == kQ6_K ? 8 : 0;

  // The codes of weights 4i … 4i + 3 from their lo word l and hi word h.
  __device__ __forceinline__ uint32_t codes(int i, uint32_t l, uint32_t h) const {
    if constexpr (QT == kQ4_0 || QT == kQ4_1) {
      return i < 4 ? l & 0x0F0F0F0Fu : (l >> 4) & 0x0F0F0F0Fu;
    } else if constexpr (QT == kQ8_0) {
      return l ^ 0x80808080u;  // int8 v → v + 128
    } else if constexpr (QT == kQ4_K) {
      return (l >> shl) & 0x0F0F0F0Fu;
    } else if constexpr (QT == kQ5_K) {
      return ((l >> shl) & 0x0F0F0F0Fu) | (((h >> shh) & 0x01010101u) << 4);
    } else {
      return ((l >> shl) & 0x0F0F0F0Fu) | (((h >> shh) & 0x03030303u) << 4);
    }
  }

  // Weights 4i … 4i + 3 of the group, exactly (reads the two words it needs).
  __device__ __forceinline__ void word(int i, float* w) const {
    word(i, lo[i % kLo], kHi ? hi[i] : 0u, w);
  }

  // All the group's code words, each read once (lw[kLo], hw[max(kHi, 1)]).
  __device__ __forceinline__ void load(uint32_t (&lw)[kLo], uint32_t (&hw)[kHi ? kHi : 1]) const {
    lo.load(lw);
    if constexpr (kHi != 0) hi.load(hw);
    else hw[0] = 0;
  }

  // Weights 4i … 4i + 3 of the group, exactly, from their lo word l and hi word h.
  __device__ __forceinline__ void word(int i, uint32_t l, uint32_t h, float* w) const {
    const uint32_t c = codes(i, l, h);
    const float s = i < 4 ? s0 : s1;
    const float q[4] = {biased<0>(c) - kBias, biased<1>(c) - kBias, biased<2>(c) - kBias, biased<3>(c) - kBias};
#pragma unroll
    for (int k = 0; k < 4; ++k) w[k] = kAdd ? s * q[k] + add : s * q[k];
  }

  // The one-FMA form of scale·(q − kOff) (types with an offset: Q4_0, Q8_0, Q6_K), for the matvec.
  // A byte permute puts code q into the mantissa of 1.0: v = 1 + q·2^−kShift (Q4_0, Q8_0: byte 1,
  // kShift 15; Q6_K, q < 64: byte 2 with the exponent's low bit set, kShift 7). Then
  // scale·(q − kOff) = fma(2^kShift·scale, v, −(2^kShift + kOff)·scale): the product is exact inside
  // the FMA and −(2^kShift + kOff)·scale is exact in f32 (≤ 24 significant bits: 4097·d for Q4_0,
  // 257·d for Q8_0, 5·d·sc for Q6_K), so the FMA's one rounding is of the exact weight, which is
  // representable: the same f32 value as word(), one instruction instead of a subtraction and a
  // multiplication. Differences, both only for degenerate blocks: a zero weight (q = kOff) is
  // +0 where word() gives −0 for a negative scale, and an infinite or NaN scale gives NaN for
  // every weight of the block (word(): ±inf where q ≠ kOff).
  static constexpr bool kFused = QT == kQ4_0 || QT == kQ8_0 || QT == kQ6_K;
  struct Fused {
    float h0, h1, c0, c1;  // 2^kShift·scale and −(2^kShift + kOff)·scale, weights 0–15 / 16–31
  };
  __device__ __forceinline__ Fused fused() const {
    constexpr float kP = QT == kQ6_K ? 128.0f : 32768.0f;  // 2^kShift
    return Fused{kP * s0, kP * s1, -((kP + kOff) * s0), -((kP + kOff) * s1)};
  }
  template <int K>
  __device__ __forceinline__ static float unit(uint32_t c) {  // 1 + (byte K of c)·2^−kShift
    if constexpr (QT == kQ6_K)
      return __int_as_float(static_cast<int>(__byte_perm(c | 0x80808080u, 0x3F000000u, 0x7044u | (K << 8))));
    else
      return __int_as_float(static_cast<int>(__byte_perm(c, 0x3F800000u, 0x7604u | (K << 4))));
  }
  __device__ __forceinline__ void word(int i, uint32_t l, uint32_t h, const Fused& f, float* w) const {
    const uint32_t c = codes(i, l, h);
    const float hs = i < 4 ? f.h0 : f.h1, cs = i < 4 ? f.c0 : f.c1;
    w[0] = fmaf(hs, unit<0>(c), cs);
    w[1] = fmaf(hs, unit<1>(c), cs);
    w[2] = fmaf(hs, unit<2>(c), cs);
    w[3] = fmaf(hs, unit<3>(c), cs);
  }
};

// Activations staged in shared memory as S (the activation type, or f32): group g of row r (32
// values) at byte (r·groups + g)·act_stride<S>: 16 bytes of padding after each group make a
// lane's 16-byte loads of its own group conflict-free across the warp.
template <class T>
__host__ __device__ constexpr int act_stride() { return 32 * static_cast<int>(sizeof(T)) + 16; }

// Σ w[i]·x[i] over 8 activation values of T at p (16-byte aligned), added into acc in order.
template <class T>
__device__ __forceinline__ float dot8(const float* w, const uint4* p, float acc, bool global) {
  constexpr int kPer = 16 / static_cast<int>(sizeof(T));  // values per 16-byte vector
#pragma unroll
  for (int v = 0; v < 8 / kPer; ++v) {
    const uint4 u = global ? __ldg(p + v) : p[v];
    const T* t = reinterpret_cast<const T*>(&u);
#pragma unroll
    for (int i = 0; i < kPer; ++i) acc = fmaf(w[v * kPer + i], to_f(t[i]), acc);
  }
  return acc;
}

// A warp's walk over chunks in row-major order. Rows are contiguous and each chunk's bytes
// follow the previous one's, so the walk is one byte stream: `src` = the chunk's first byte, `c`
// = its index in row `row`.
struct Cursor {
  const uint8_t* src;
  uint64_t row, c;
};

// The row geometry of a kernel's chunks.
template <int QT>
struct Rows {
  using G = Geometry<QT>;
  using C = Chunk<QT>;
  uint64_t groups, chunks_per_row, row_bytes;
  int tail;  // groups of a row's last chunk (1 … 32; K-quants: a multiple of 8)
  __device__ __forceinline__ explicit Rows(uint64_t n_cols)
      : groups(n_cols / 32),
        chunks_per_row((n_cols / 32 + 31) / 32),
        row_bytes(n_cols / G::kQK * G::kBytes),
        tail(static_cast<int>(n_cols / 32 - 32 * ((n_cols / 32 + 31) / 32 - 1))) {}
  __device__ __forceinline__ Cursor at(const uint8_t* w, uint64_t row, uint64_t c) const {
    return Cursor{w + row * row_bytes + c * C::kBytes, row, c};  // chunk c starts at block 32c / groups-per-block
  }
  __device__ __forceinline__ int groups_of(const Cursor& k) const { return k.c + 1 < chunks_per_row ? 32 : tail; }
  __device__ __forceinline__ int bytes_of(const Cursor& k) const {
    return groups_of(k) / C::kGroupsPerBlock * G::kBytes;
  }
  __device__ __forceinline__ void next(Cursor& k) const {
    k.src += bytes_of(k);
    if (++k.c == chunks_per_row) {
      k.c = 0;
      ++k.row;
    }
  }
  // Starts the copy of k's chunk into `stage` and advances k.
  __device__ __forceinline__ void issue(Cursor& k, unsigned char* stage, uintptr_t lo, uintptr_t hi, int lane) const {
    stage_chunk(stage, k.src, bytes_of(k), lo, hi, lane);
    next(k);
  }
};

// Launch bound: blocks of 8 warps per SM (m = 1: 4, ≤ 64 registers; m ≤ 8: 3, or 2 when the
// activations are read from global memory, which needs more registers).
template <int kM, bool kSmemAct>
constexpr int matvec_min_blocks() { return kM == 1 ? 4 : kSmemAct ? 3 : 2; }

// One warp per run of `rows_per_warp` consecutive output features, streamed chunk by chunk
// through the warp's ring of kStages shared-memory stages (cp.async; kStages − 1 chunks in flight
// across row boundaries). In a chunk, lane = group: it decodes its 32 weights 8 at a time and
// multiplies them with each of the m ≤ kM activation rows (the weight is read once for all).
// kSmemAct: the m activation rows are staged in shared memory once per block (when they fit) as
// S values (T, or f32 for 16-bit T when that costs no blocks per SM: no conversion per weight and
// row); otherwise each lane reads its values from global memory (L1/L2).
template <int QT, class T, bool kSmemAct, int kM, class S>
__global__ void __launch_bounds__(kThreadsPerBlock, matvec_min_blocks<kM, kSmemAct>())
    gguf_matvec_kernel(const uint8_t* __restrict__ w, uint64_t n_rows, uint64_t n_cols, const T* __restrict__ a,
                       T* __restrict__ out, int m, uint64_t rows_per_warp) {
  using G = Geometry<QT>;
  using C = Chunk<QT>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned char* ring = smem + warp * C::kRing;
  const unsigned char* abuf = smem + kWarpsPerBlock * C::kRing;
  const Rows<QT> R(n_cols);
  const uint64_t groups = R.groups;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(w), hi = lo + n_rows * R.row_bytes;
  const uint64_t r0 = (static_cast<uint64_t>(blockIdx.x) * kWarpsPerBlock + warp) * rows_per_warp;
  const uint64_t rows = r0 >= n_rows ? 0 : n_rows - r0 < rows_per_warp ? n_rows - r0 : rows_per_warp;
  const uint64_t items = rows * R.chunks_per_row;
  Cursor in = R.at(w, rows ? r0 : 0, 0), at = in;  // the next chunk to copy; the next chunk to decode
  // The first chunks' copies fly while the block stages the activations.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (static_cast<uint64_t>(s) < items) R.issue(in, ring + s * C::kStage, lo, hi, lane);
    cp_async_commit();
  }
  if constexpr (kSmemAct) {
    constexpr int kPer = 16 / static_cast<int>(sizeof(T));  // T values per 16-byte vector of a
    constexpr int kVecs = 32 / kPer;                          // 16-byte vectors of a per group
    unsigned char* dst = smem + kWarpsPerBlock * C::kRing;
    const uint64_t vecs = static_cast<uint64_t>(m) * groups * kVecs;
    for (uint64_t i = threadIdx.x; i < vecs; i += kThreadsPerBlock) {
      const uint64_t rg = i / kVecs, v = i % kVecs;  // rg = r·groups + g: a's group index
      const uint4 u = __ldg(reinterpret_cast<const uint4*>(a + rg * 32) + v);
      unsigned char* d = dst + rg * act_stride<S>() + v * kPer * sizeof(S);
      if constexpr (sizeof(S) == sizeof(T)) {
        *reinterpret_cast<uint4*>(d) = u;
      } else {  // 16-bit T widened to f32 (exact)
        const T* t = reinterpret_cast<const T*>(&u);
#pragma unroll
        for (int h = 0; h < kPer / 4; ++h)
          reinterpret_cast<float4*>(d)[h] =
              make_float4(to_f(t[4 * h]), to_f(t[4 * h + 1]), to_f(t[4 * h + 2]), to_f(t[4 * h + 3]));
      }
    }
    __syncthreads();
  }
  if (items == 0) return;
  const int lane_off = lane / C::kGroupsPerBlock * G::kBytes, lane_g = lane % C::kGroupsPerBlock;
  float acc[kM];
#pragma unroll
  for (int r = 0; r < kM; ++r) acc[r] = 0.0f;
  for (uint64_t it = 0; it < items; ++it) {
    const int st = static_cast<int>(it % kStages);  // the stage of chunk `it`
    __syncwarp();  // every lane is done with the stage refilled now (decoded at it − 1)
    if (it + kStages - 1 < items) R.issue(in, ring + (st + kStages - 1) % kStages * C::kStage, lo, hi, lane);
    cp_async_commit();
    cp_async_wait<kStages - 1>();  // this lane's copies of chunk `it` landed …
    __syncwarp();                  // … and every lane's
    const unsigned char* stage = ring + st * C::kStage;
    if (lane < R.groups_of(at)) {
      using D = GroupDecoder<QT>;
      const D dec(stage, static_cast<int>(reinterpret_cast<uintptr_t>(at.src) & 15) + lane_off, lane_g);
      uint32_t lw[D::kLo], hw[D::kHi ? D::kHi : 1];
      dec.load(lw, hw);
      const uint64_t g = 32 * at.c + lane;
#pragma unroll
      for (int p = 0; p < 4; ++p) {  // weights 8p … 8p + 7
        float wv[8];
        if constexpr (D::kFused) {
          const typename D::Fused f = dec.fused();
          dec.word(2 * p, lw[2 * p % D::kLo], hw[D::kHi ? 2 * p : 0], f, wv);
          dec.word(2 * p + 1, lw[(2 * p + 1) % D::kLo], hw[D::kHi ? 2 * p + 1 : 0], f, wv + 4);
        } else {
          dec.word(2 * p, lw[2 * p % D::kLo], hw[D::kHi ? 2 * p : 0], wv);
          dec.word(2 * p + 1, lw[(2 * p + 1) % D::kLo], hw[D::kHi ? 2 * p + 1 : 0], wv + 4);
        }
#pragma unroll
        for (int r = 0; r < kM; ++r) {
          if (kM == 1 || r < m) {
            if constexpr (kSmemAct)
              acc[r] = dot8<S>(wv,
                               reinterpret_cast<const uint4*>(abuf + (static_cast<uint64_t>(r) * groups + g) *
                                                                         act_stride<S>() +
                                                              8 * p * sizeof(S)),
                               acc[r], false);
            else
              acc[r] = dot8<T>(
                  wv, reinterpret_cast<const uint4*>(a + static_cast<uint64_t>(r) * n_cols + 32 * g + 8 * p), acc[r],
                  true);
          }
        }
      }
    }
    if (at.c + 1 == R.chunks_per_row) {  // the row's last chunk: lanes' partials in a fixed tree order
#pragma unroll
      for (int r = 0; r < kM; ++r) {
        if (kM == 1 || r < m) {
          const float v = warp_sum(acc[r]);
          if (lane == 0) out[static_cast<uint64_t>(r) * n_rows + at.row] = from_f<T>(v);
        }
        acc[r] = 0.0f;
      }
    }
    R.next(at);
  }
}

// One warp per run of `chunks_per_warp` consecutive chunks (row-major over the matrix), streamed
// through the warp's ring as in the matvec. Lane l writes bytes 16l … 16l + 15 of each 512-byte
// run of the chunk's output (coalesced 16-byte stores), decoding the 16 / sizeof(T) weights it
// writes.
template <int QT, class T>
__global__ void __launch_bounds__(kThreadsPerBlock, 4)
    gguf_dequantize_kernel(const uint8_t* __restrict__ w, uint64_t n_rows, uint64_t n_cols, T* __restrict__ out,
                           uint64_t chunks_per_warp) {
  using G = Geometry<QT>;
  using C = Chunk<QT>;
  constexpr int kPer = 16 / static_cast<int>(sizeof(T));  // values per 16-byte store
  __shared__ __align__(16) unsigned char smem[kWarpsPerBlock * C::kRing];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned char* ring = smem + warp * C::kRing;
  const Rows<QT> R(n_cols);
  const uintptr_t lo = reinterpret_cast<uintptr_t>(w), hi = lo + n_rows * R.row_bytes;
  const uint64_t total = n_rows * R.chunks_per_row;
  const uint64_t i0 = (static_cast<uint64_t>(blockIdx.x) * kWarpsPerBlock + warp) * chunks_per_warp;
  if (i0 >= total) return;
  const uint64_t items = total - i0 < chunks_per_warp ? total - i0 : chunks_per_warp;
  Cursor in = R.at(w, i0 / R.chunks_per_row, i0 % R.chunks_per_row), at = in;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (static_cast<uint64_t>(s) < items) R.issue(in, ring + s * C::kStage, lo, hi, lane);
    cp_async_commit();
  }
  T* o = out + at.row * n_cols + 32 * 32 * at.c;  // chunk `it`'s output: the chunks' outputs follow each other too
  for (uint64_t it = 0; it < items; ++it) {
    const int st = static_cast<int>(it % kStages);
    __syncwarp();
    if (it + kStages - 1 < items) R.issue(in, ring + (st + kStages - 1) % kStages * C::kStage, lo, hi, lane);
    cp_async_commit();
    cp_async_wait<kStages - 1>();
    __syncwarp();
    const unsigned char* stage = ring + st * C::kStage;
    const int cnt = R.groups_of(at);
    const int delta = static_cast<int>(reinterpret_cast<uintptr_t>(at.src) & 15);
#pragma unroll
    for (int j = 0; j < 32 / kPer; ++j) {  // unit u = 32j + lane: values kPer·u … of the chunk
      const int u = 32 * j + lane, grp = u / (32 / kPer), pos = u % (32 / kPer) * kPer;
      if (grp < cnt) {
        const GroupDecoder<QT> dec(stage, delta + grp / C::kGroupsPerBlock * G::kBytes, grp % C::kGroupsPerBlock);
        float wv[kPer];
#pragma unroll
        for (int i = 0; i < kPer / 4; ++i) dec.word(pos / 4 + i, wv + 4 * i);
        uint4 v;
        T* t = reinterpret_cast<T*>(&v);
#pragma unroll
        for (int i = 0; i < kPer; ++i) t[i] = from_f<T>(wv[i]);
        reinterpret_cast<uint4*>(o)[u] = v;
      }
    }
    o += 32 * cnt;
    R.next(at);
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

// The warps and the work per warp of a launch over `work` equal items (rows, chunks): every
// warp resident at once (`blocks_per_sm` from the occupancy calculator) and the same number of
// items per warp (the last may have fewer), so the warps finish together.
struct Split {
  unsigned grid = 1;
  uint64_t per_warp = 1;
};
Split split_work(uint64_t work, int sms, int blocks_per_sm) {
  const uint64_t warps = static_cast<uint64_t>(sms > 0 ? sms : 1) * (blocks_per_sm > 0 ? blocks_per_sm : 1) *
                         kWarpsPerBlock;  // arith-ok: device counts, small
  Split s;
  s.per_warp = (work + warps - 1) / warps;                        // arith-ok: work <= n_rows·n_cols / 32, checked
  const uint64_t used = (work + s.per_warp - 1) / s.per_warp;     // arith-ok: as above
  s.grid = static_cast<unsigned>((used + kWarpsPerBlock - 1) / kWarpsPerBlock);  // arith-ok: used <= warps
  return s;
}

// Blocks per SM of `kernel` with `smem` bytes of dynamic shared memory on `device`, from the
// occupancy calculator, remembered per kernel for the last (device, smem) asked (one host query
// per shape change instead of one per call).
template <auto kKernel>
Status blocks_per_sm(int device, uint64_t smem, int& per_sm) {
  static std::atomic<uint64_t> last{0};  // (device + 1) << 48 | smem << 8 | blocks
  const uint64_t key = (static_cast<uint64_t>(device) + 1) << 48 | smem << 8;  // arith-ok: device < 2^15, smem < 2^40
  const uint64_t seen = last.load(std::memory_order_relaxed);
  if ((seen & ~uint64_t{0xFF}) == key) {
    per_sm = static_cast<int>(seen & 0xFF);
    return Status{};
  }
  FERRUM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kKernel, kThreadsPerBlock, smem));
  if (per_sm >= 0 && per_sm < 256) last.store(key | static_cast<uint64_t>(per_sm), std::memory_order_relaxed);
  return Status{};
}

}  // namespace

// Shared memory a matvec block needs: the warps' rings, plus `m` staged activation rows of
// `n_cols` S values when act.
template <int QT, class S>
uint64_t matvec_smem(uint64_t m, uint64_t n_cols, bool act) {
  const uint64_t rings = kWarpsPerBlock * Chunk<QT>::kRing;
  return act ? rings + m * (n_cols / 32) * act_stride<S>() : rings;  // arith-ok: m <= 8, n_cols checked
}

// The largest dynamic shared memory an instance has been allowed so far: the attribute is raised
// only when a call needs more (it is a per-function setting, not per launch).
template <int QT, class T, int kM, class S>
std::atomic<int>& matvec_smem_allowed() {
  static std::atomic<int> allowed{0};
  return allowed;
}

// Allows an instance `smem` bytes of dynamic shared memory (<= optin) and returns its blocks per SM.
template <int QT, class T, bool kAct, int kM, class S>
Status matvec_occupancy(int device, uint64_t smem, int optin, int& per_sm) {
  auto kernel = gguf_matvec_kernel<QT, T, kAct, kM, S>;
  std::atomic<int>& allowed = matvec_smem_allowed<QT, T, kM, S>();
  if (kAct && static_cast<int>(smem) > allowed.load(std::memory_order_relaxed)) {
    FERRUM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
    allowed.store(optin, std::memory_order_relaxed);
  }
  return blocks_per_sm<gguf_matvec_kernel<QT, T, kAct, kM, S>>(device, smem, per_sm);
}

template <int QT, class T, bool kAct, int kM, class S>
Status matvec_launch(const uint8_t* w, uint64_t n_rows, uint64_t n_cols, const T* a, T* out, uint64_t rows,
                     uint64_t smem, int sms, int per_sm, cudaStream_t stream) {
  const Split s = split_work(n_rows, sms, per_sm);
  gguf_matvec_kernel<QT, T, kAct, kM, S><<<s.grid, kThreadsPerBlock, smem, stream>>>(
      w, n_rows, n_cols, a, out, static_cast<int>(rows), s.per_warp);
  FERRUM_CUDA_LAUNCH_CHECK("gguf_matvec_kernel");
  return Status{};
}

// One matvec pass of `rows` (<= kM) activation rows.
template <int QT, class T, int kM>
Status matvec_pass(const uint8_t* w, uint64_t n_rows, uint64_t n_cols, const T* a, T* out, uint64_t rows, int device,
                   int sms, int optin, cudaStream_t stream) {
  int per_sm = 0;
  const uint64_t need = matvec_smem<QT, T>(rows, n_cols, true);
  if (need > static_cast<uint64_t>(optin)) {  // the activations do not fit: read from global memory
    const uint64_t smem = matvec_smem<QT, T>(rows, n_cols, false);
    Status s = matvec_occupancy<QT, T, false, kM, T>(device, smem, optin, per_sm);
    if (!s.ok()) return s;
    return matvec_launch<QT, T, false, kM, T>(w, n_rows, n_cols, a, out, rows, smem, sms, per_sm, stream);
  }
  Status s = matvec_occupancy<QT, T, true, kM, T>(device, need, optin, per_sm);
  if (!s.ok()) return s;
  if constexpr (sizeof(T) == 2) {  // f32 staging when it fits with as many blocks per SM
    const uint64_t need_f = matvec_smem<QT, float>(rows, n_cols, true);
    if (need_f <= static_cast<uint64_t>(optin)) {
      int per_sm_f = 0;
      s = matvec_occupancy<QT, T, true, kM, float>(device, need_f, optin, per_sm_f);
      if (!s.ok()) return s;
      if (per_sm_f >= per_sm)
        return matvec_launch<QT, T, true, kM, float>(w, n_rows, n_cols, a, out, rows, need_f, sms, per_sm_f, stream);
    }
  }
  return matvec_launch<QT, T, true, kM, T>(w, n_rows, n_cols, a, out, rows, need, sms, per_sm, stream);
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
    if (n_cols == 0) {  // empty sums: +0.0 (the kernel walks no chunk, so it would write nothing)
      FERRUM_CUDA_CHECK(cudaMemsetAsync(out, 0, m * n_rows * sizeof(T), stream));  // arith-ok: out's size, checked by the glue
      return Status{};
    }
    return dispatch_quant(quant_type, "gguf_matvec", [&](auto qt) -> Status {
      constexpr int QT = decltype(qt)::value;
      // Passes of kGgufMatvecMaxM activation rows (each pass reads the weight once); a pass of
      // one row runs the one-accumulator instance.
      for (uint64_t r0 = 0; r0 < m; r0 += kGgufMatvecMaxM) {
        const uint64_t rows = m - r0 < kGgufMatvecMaxM ? m - r0 : kGgufMatvecMaxM;
        const T* ap = static_cast<const T*>(a) + r0 * n_cols;  // arith-ok: r0 < m, inside a (checked by the glue)
        T* op = static_cast<T*>(out) + r0 * n_rows;              // arith-ok: inside out
        const Status s =
            rows == 1
                ? matvec_pass<QT, T, 1>(w, n_rows, n_cols, ap, op, rows, device, sms, optin, stream)
                : matvec_pass<QT, T, static_cast<int>(kGgufMatvecMaxM)>(w, n_rows, n_cols, ap, op, rows, device, sms,
                                                                       optin, stream);
        if (!s.ok()) return s;
      }
      return Status{};
    });
  });
}

Status gguf_dequantize(int32_t dtype, int32_t quant_type, const uint8_t* w, uint64_t n_rows, uint64_t n_cols,
                       void* out, cudaStream_t stream) noexcept {
  const uint64_t chunks = n_rows * ((n_cols / 32 + 31) / 32);  // arith-ok: <= n_rows·n_cols, checked by the glue
  if (chunks == 0) return Status{};
  int device = 0, sms = 0;
  FERRUM_CUDA_CHECK(cudaGetDevice(&device));
  FERRUM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return dispatch_float(dtype, "gguf_dequantize", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    return dispatch_quant(quant_type, "gguf_dequantize", [&](auto qt) -> Status {
      constexpr auto kernel = gguf_dequantize_kernel<decltype(qt)::value, T>;
      int per_sm = 0;
      const Status st = blocks_per_sm<kernel>(device, 0, per_sm);
      if (!st.ok()) return st;
      const Split s = split_work(chunks, sms, per_sm);
      kernel<<<s.grid, kThreadsPerBlock, 0, stream>>>(w, n_rows, n_cols, static_cast<T*>(out), s.per_warp);
      FERRUM_CUDA_LAUNCH_CHECK("gguf_dequantize_kernel");
      return Status{};
    });
  });
}

}  // namespace ferrum::cuda::kernels
