// ferrum CUDA plugin — the QK-norm / RoPE family kernel (declared in rope.cuh).
//
// rope_kernel<T, C, N, K>: T the activation type, C the table type (T or float), N elements per
// chunk (16 bytes, or 1 for the scalar path), K units per lane. A group of G lanes (a power of
// two <= 32) owns one (token, head) vector, and each lane owns whole rotation pairs — both
// halves' chunks (NeoX) or adjacent chunk pairs (GPT-J) — so the rotation needs no shuffle and
// no shared memory; see the kernel's comment.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
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
static_assert(kMaxD / 2 <= 4 * 32, "the scalar path's K = 4 units per lane must cover head_dim / 2");

enum PosKind : int { kPosHost = 0, kPosU32 = 1, kPosI32 = 2, kPosVarlen = 3 };

// Element (U32 or I32) i of a device index buffer as int64_t; a negative I32 gives -1.
__device__ __forceinline__ int64_t load_idx(const void* b, bool i32, uint64_t i) {
  if (i32) {
    const int32_t v = static_cast<const int32_t*>(b)[i];
    return v < 0 ? -1 : v;
  }
  return static_cast<int64_t>(static_cast<const uint32_t*>(b)[i]);
}

// Varlen token g: its sequence s (cu[s] <= g < cu[s+1], binary search over the non-decreasing
// cu), position pos = pos_offsets[s] + g − cu[s]. False when g lies in no consistent sequence
// (negative entries, e < b or e > tokens: the whole sequence is skipped, as on the CPU).
__device__ __forceinline__ bool varlen_token(const RopePaged& v, uint64_t g, uint64_t tokens, uint64_t& seq,
                                             uint64_t& pos) {
  if (v.num_seqs == 0) return false;
  uint64_t lo = 0, hi = v.num_seqs;  // invariant (for a sorted cu): cu[lo] <= g < cu[hi]
  while (hi - lo > 1) {
    const uint64_t mid = lo + (hi - lo) / 2;
    const int64_t c = load_idx(v.cu, v.cu_i32, mid);
    if (c >= 0 && static_cast<uint64_t>(c) <= g) lo = mid; else hi = mid;
  }
  const int64_t b = load_idx(v.cu, v.cu_i32, lo), e = load_idx(v.cu, v.cu_i32, lo + 1);
  const int64_t off = load_idx(v.pos_offsets, v.pos_i32, lo);
  if (b < 0 || e < b || static_cast<uint64_t>(e) > tokens || off < 0) return false;
  if (g < static_cast<uint64_t>(b) || g >= static_cast<uint64_t>(e)) return false;
  seq = lo;
  pos = static_cast<uint64_t>(off) + (g - static_cast<uint64_t>(b));
  return true;
}

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
  // Paged destinations (RopeSegment's paged fields, per segment) and the slot mapping.
  bool paged[3];
  uint64_t blk_stride[3], o_stride[3], x_stride[3], elem_stride[3];
  uint32_t x_shift[3];
  RopePaged pg;
  const C* cos;
  const C* sin;
  uint64_t rows, pos_offset;
  const void* positions;
};

// Loads N consecutive table values (16-byte pieces when N > 1; the caller guarantees the
// alignment) as floats.
template <class C, int N>
__device__ __forceinline__ void load_f(const C* p, float (&f)[N]) {
  if constexpr (N == 1) {
    f[0] = to_f(p[0]);
  } else {
    constexpr int M = kVec<C> < N ? kVec<C> : N;  // elements per load
#pragma unroll
    for (int q = 0; q < N / M; ++q) {
      const Vec<C, M> v = reinterpret_cast<const Vec<C, M>*>(p)[q];
#pragma unroll
      for (int jj = 0; jj < M; ++jj) f[q * M + jj] = to_f(v.v[jj]);
    }
  }
}

// The physical block of KV slot `slot` of sequence `seq` and the slot's offset in it; -1 when
// nothing may be written there: a position past the tables in a rotating Q mode (the Q row of
// such a token is zeroed by its own segment), a logical block past bt_stride, or a table entry
// that is negative or >= num_blocks. 32-bit division whenever the values allow (a 64-bit one
// costs ~70 instructions).
template <class P>
__device__ __forceinline__ int64_t paged_block(const P& p, uint64_t seq, uint64_t slot, uint64_t pos, uint64_t& off) {
  uint64_t lb;
  if (((slot | p.pg.block_size) >> 32) == 0) {
    const uint32_t s32 = static_cast<uint32_t>(slot), b32 = static_cast<uint32_t>(p.pg.block_size);
    lb = s32 / b32;
    off = s32 - static_cast<uint32_t>(lb) * b32;
  } else {
    lb = slot / p.pg.block_size;
    off = slot % p.pg.block_size;
  }
  const int64_t blk = (p.mode[0] != 0 && pos >= p.rows) || lb >= p.pg.bt_stride
                          ? -1
                          : load_idx(p.pg.block_tables, p.pg.bt_i32, seq * p.pg.bt_stride + lb);
  return blk >= 0 && static_cast<uint64_t>(blk) < p.pg.num_blocks ? blk : -1;
}

// Stores chunk c of a row (elements cN .. cN + N − 1, all inside one x-group) at its address:
// element d lives at (d >> xs)·xst + (d & (2^xs − 1))·est from the row start.
template <class T, int N>
__device__ __forceinline__ void store_chunk(T* row, uint32_t c, const Vec<T, N>& val, uint32_t xs, uint64_t xst,
                                            uint64_t est) {
  const uint64_t e0 = static_cast<uint64_t>(c) * N;
  T* q = row + (e0 >> xs) * xst + (e0 & ((uint64_t{1} << xs) - 1)) * est;
  if (est == 1) {
    *reinterpret_cast<Vec<T, N>*>(q) = val;
  } else {
#pragma unroll
    for (int jj = 0; jj < N; ++jj) q[jj * est] = val.v[jj];
  }
}

// The transform of one unit in a rotating mode (1: RMSNorm scale inv and weight w, then NeoX;
// 2: NeoX; 3: GPT-J): raw chunks xa (chunk ca) and xb (chunk cb) -> oa, ob; cr / sr are the
// position's table rows, u the unit (its N table values start at u·N).
template <class T, class C, int N>
__device__ __forceinline__ void rope_unit(int mode, float inv, const T* w, const C* cr, const C* sr, uint32_t u,
                                          uint32_t ca, uint32_t cb, const Vec<T, N>& xa, const Vec<T, N>& xb,
                                          Vec<T, N>& oa, Vec<T, N>& ob) {
  float a[N], b[N], cf[N], sf[N];
#pragma unroll
  for (int jj = 0; jj < N; ++jj) {
    a[jj] = to_f(xa.v[jj]);
    b[jj] = to_f(xb.v[jj]);
  }
  if (mode == 1) {
    float wa[N], wb[N];
    load_f<T, N>(w + ca * N, wa);
    load_f<T, N>(w + cb * N, wb);
#pragma unroll
    for (int jj = 0; jj < N; ++jj) {
      a[jj] = a[jj] * inv * wa[jj];
      b[jj] = b[jj] * inv * wb[jj];
    }
  }
  load_f<C, N>(cr + u * N, cf);
  load_f<C, N>(sr + u * N, sf);
  if (N >= 2 && mode == 3) {  // pairs (2m, 2m+1) of chunk a use table m, of chunk b table N/2 + m
#pragma unroll
    for (int m = 0; m < N / 2; ++m) {
      const float c0 = cf[m], s0 = sf[m], c1 = cf[N / 2 + m], s1 = sf[N / 2 + m];
      oa.v[2 * m] = from_f<T>(a[2 * m] * c0 - a[2 * m + 1] * s0);
      oa.v[2 * m + 1] = from_f<T>(a[2 * m + 1] * c0 + a[2 * m] * s0);
      ob.v[2 * m] = from_f<T>(b[2 * m] * c1 - b[2 * m + 1] * s1);
      ob.v[2 * m + 1] = from_f<T>(b[2 * m + 1] * c1 + b[2 * m] * s1);
    }
  } else {  // NeoX (and GPT-J with N = 1: a is element 2u, b element 2u + 1)
#pragma unroll
    for (int jj = 0; jj < N; ++jj) {
      oa.v[jj] = from_f<T>(a[jj] * cf[jj] - b[jj] * sf[jj]);
      ob.v[jj] = from_f<T>(b[jj] * cf[jj] + a[jj] * sf[jj]);
    }
  }
}

// rope_kernel<T, C, N, K>: a group of G = 2^lg lanes (G <= 32, aligned within the warp) owns one
// (token, head) vector; the vector's nc = D / N chunks form U = ceil(nc / 2) "units" of two
// chunks each, and lane r of the group owns units r + k·G (k < K). A unit holds both members of
// every rotation pair it touches, so the rotation needs no data exchange:
//   NeoX / copy: chunks u and u + U (elements uN.. and half + uN..: pairs (i, i + half));
//   GPT-J:       chunks 2u and 2u + 1 (elements 2uN .. 2uN + 2N − 1: pairs (2i, 2i + 1)).
// In both layouts the unit's pairs are i = uN .. uN + N − 1, so it reads N consecutive cos and
// N sin values (16-byte loads). The RMS statistic is a sum over the group (xor shuffles inside
// the aligned group). Blocks of 256 threads walk 256 / G vectors, token-major; the loop bound
// is block-uniform, so every lane reaches the shuffles.
template <class T, class C, int N, int K>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) rope_kernel(const RopeParams<T, C> p, int lg, uint32_t U) {
  using V = Vec<T, N>;
  const int G = 1 << lg;
  const int r = threadIdx.x & (G - 1);
  const uint64_t per_block = (kWarpsPerBlock * 32) >> lg;
  const uint64_t total = p.tokens * p.heads_total;
  const uint64_t D = p.D, half = D / 2;
  const uint32_t nc = static_cast<uint32_t>(D / N);
  const bool idx32 = total <= 0xffffffffull;
  for (uint64_t base = static_cast<uint64_t>(blockIdx.x) * per_block; base < total;
       base += static_cast<uint64_t>(gridDim.x) * per_block) {
    // Token-major: a block's groups cover consecutive heads of consecutive tokens (contiguous
    // reads; the token's cos/sin row is reused from L1 by all its heads).
    const uint64_t v = base + (threadIdx.x >> lg);
    const bool active = v < total;
    uint64_t t, j;
    if (idx32) {
      const uint32_t v32 = static_cast<uint32_t>(v), h32 = static_cast<uint32_t>(p.heads_total);
      t = v32 / h32;
      j = v32 - static_cast<uint32_t>(t) * h32;
    } else {
      t = v / p.heads_total;
      j = v - t * p.heads_total;
    }
    const int s = j < p.seg_end[0] ? 0 : (j < p.seg_end[1] ? 1 : 2);
    const uint64_t h = j - (s == 0 ? 0 : p.seg_end[s - 1]);
    // Load both chunks of every owned unit first (raw, so that mode 0 stays a bit copy): the
    // source row exists for every active vector, and issuing these loads before the position
    // and block-table lookups below overlaps their latencies instead of chaining them.
    const bool gptj_seg = p.mode[s] == 3;
    const V* src = reinterpret_cast<const V*>(p.in + t * p.in_row_stride + j * D);
    V ra[K], rb[K];
    uint32_t ca[K], cb[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const uint32_t u = static_cast<uint32_t>(r + k * G);
      ca[k] = gptj_seg ? 2 * u : u;
      cb[k] = gptj_seg ? 2 * u + 1 : u + U;
      if (active && u < U) ra[k] = src[ca[k]];
      if (active && u < U && cb[k] < nc) rb[k] = src[cb[k]];
    }
    uint64_t pos = 0, seq = 0, slot = 0;
    bool live = active;  // false: this vector writes nothing (varlen token outside every sequence)
    if (active && (p.mode[s] != 0 || p.paged[s] || p.pos_kind == kPosVarlen)) {  // mode 0 reads no position
      if (p.pos_kind == kPosVarlen) {
        live = varlen_token(p.pg, t, p.tokens, seq, pos);
        slot = pos;
      } else if (p.pos_kind == kPosHost) {
        pos = p.pos_offset + t;
      } else if (p.pos_kind == kPosU32) {
        pos = static_cast<const uint32_t*>(p.positions)[t];
      } else {
        const int32_t q = static_cast<const int32_t*>(p.positions)[t];
        pos = q < 0 ? ~uint64_t{0} : static_cast<uint64_t>(q);
      }
      if (p.pos_kind != kPosVarlen) slot = p.pg.slot_offset + t;
    }
    const int mode = live ? p.mode[s] : 0;
    T* dst = nullptr;
    if (live && !p.paged[s]) {
      dst = p.dst[s] + h * p.head_stride[s] + t * p.tok_stride[s];
    } else if (live) {
      // Paged row: nothing is written where paged_block finds no block.
      uint64_t off = 0;
      const int64_t blk = paged_block(p, seq, slot, pos, off);
      if (blk >= 0)
        dst = p.dst[s] + static_cast<uint64_t>(blk) * p.blk_stride[s] + off * p.o_stride[s] +
              h * p.head_stride[s];
    }
    live = live && dst != nullptr;
    const bool zero = mode != 0 && pos >= p.rows;  // device position out of range: +0.0 row
    const uint32_t xs = p.x_shift[s];
    const uint64_t xst = p.x_stride[s], est = p.elem_stride[s];
    auto store = [&](uint32_t c, const V& val) { store_chunk<T, N>(dst, c, val, xs, xst, est); };
    // ha / hb: the unit's chunks hold data to transform (a live, in-range row).
    bool ha[K], hb[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      ha[k] = live && static_cast<uint32_t>(r + k * G) < U && !zero;
      hb[k] = ha[k] && cb[k] < nc;
    }
    float ss = 0.0f;
    if (mode == 1) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
#pragma unroll
        for (int jj = 0; jj < N; ++jj) {
          const float a = ha[k] ? to_f(ra[k].v[jj]) : 0.0f, b = hb[k] ? to_f(rb[k].v[jj]) : 0.0f;
          ss += a * a + b * b;
        }
      }
    }
    // Group sum (every lane of the warp executes the shuffles; groups are aligned).
    for (int o = G >> 1; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if (!live) continue;
    if (zero || mode == 0) {
      V z;
#pragma unroll
      for (int jj = 0; jj < N; ++jj) z.v[jj] = from_f<T>(0.0f);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const uint32_t u = static_cast<uint32_t>(r + k * G);
        if (u < U) {
          store(ca[k], zero ? z : ra[k]);
          if (cb[k] < nc) store(cb[k], zero ? z : rb[k]);
        }
      }
      continue;
    }
    const float inv = rsqrtf(ss / static_cast<float>(D) + p.eps);
    const T* w = p.w[s];
    const C* cr = p.cos + pos * half;
    const C* sr = p.sin + pos * half;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (!ha[k]) continue;  // rope modes: D even, so a unit's chunk b exists with chunk a
      const uint32_t u = static_cast<uint32_t>(r + k * G);
      V oa, ob;
      rope_unit<T, C, N>(mode, inv, w, cr, sr, u, ca[k], cb[k], ra[k], rb[k], oa, ob);
      store(ca[k], oa);
      store(cb[k], ob);
    }
  }
}

// ---- the paged writers ------------------------------------------------------------------------

constexpr uint32_t kPagedMaxTokens = 8;  // tokens per block of rope_paged_kernel

// One token of a writer chunk, resolved once (shared memory): the element offset of its row in
// each segment's destination (h·head_stride still to add), its RoPE position, and which segments
// write it (bit s; bit 3: the position is past the tables).
struct PagedTok {
  uint64_t row[3];
  uint64_t pos;
  uint32_t flags;
};
constexpr uint32_t kTokOob = 1u << 3;

// Resolves token t exactly as rope_kernel does per vector: position and slot (host: pos_offset + t
// and slot_offset + t; varlen: the binary search — a token outside every consistent sequence
// writes nothing), then for the paged segments the block of the slot (none when the position is
// past the tables in a rotating Q mode, the logical block is past bt_stride, or the table entry
// is negative or >= num_blocks).
template <class T, class C>
__device__ __forceinline__ PagedTok resolve_token(const RopeParams<T, C>& p, uint64_t t) {
  PagedTok k{};
  uint64_t pos = 0, seq = 0, slot = 0;
  bool live = true;
  if (p.pos_kind == kPosVarlen) {
    live = varlen_token(p.pg, t, p.tokens, seq, pos);
    slot = pos;
  } else {
    pos = p.pos_offset + t;
    slot = p.pg.slot_offset + t;
  }
  bool blk_ok = false;
  uint64_t blk = 0, off = 0;
  if (live && (p.paged[0] || p.paged[1] || p.paged[2])) {
    const int64_t b = paged_block(p, seq, slot, pos, off);
    blk_ok = b >= 0;
    blk = blk_ok ? static_cast<uint64_t>(b) : 0;
  }
#pragma unroll
  for (int s = 0; s < 3; ++s) {
    if (!p.paged[s]) {
      k.row[s] = t * p.tok_stride[s];
      if (live) k.flags |= 1u << s;
    } else {
      k.row[s] = blk * p.blk_stride[s] + off * p.o_stride[s];
      if (live && blk_ok) k.flags |= 1u << s;
    }
  }
  k.pos = pos;
  if (pos >= p.rows) k.flags |= kTokOob;
  return k;
}

// 16 raw bytes as a Vec (a bit copy).
template <class V>
__device__ __forceinline__ V as_vec(const uint4& u) {
  V v;
  memcpy(&v, &u, sizeof(V));
  return v;
}

// rope_paged_kernel<T, C, N>: the paged writers on the 16-byte path (N = kVec<T>, one unit per
// lane; the path requires D % 2N == 0, so U = D / 2N exactly and a lane with a unit has both of
// its chunks). Same lanes, units, loads, arithmetic and shuffle order per (token, head) vector
// as rope_kernel<T, C, N, 1> — so the same bits — but a block owns TB consecutive tokens:
// threads 0..TB−1 resolve them into shared memory (resolve_token) while the first loads are in
// flight, and the block walks the chunk's vectors token-major with (token, head) advanced by a
// constant step (no division per vector). The raw chunks stay 16-byte words, and the next
// vector's two chunks are loaded before the current one is transformed (64 bytes in flight per
// thread). Loop bounds are block-uniform, so every lane reaches the shuffles and barriers.
template <class T, class C, int N>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, 4) rope_paged_kernel(const RopeParams<T, C> p, int lg, uint32_t U,
                                                                         uint32_t TB) {
  using V = Vec<T, N>;
  static_assert(sizeof(V) == 16, "16-byte chunks");
  __shared__ PagedTok tok[kPagedMaxTokens];
  const int G = 1 << lg;
  const uint32_t r = threadIdx.x & (G - 1);
  const bool unit = r < U;  // this lane owns unit r (chunks ca, cb) of its group's vector
  const uint32_t per_iter = (kWarpsPerBlock * 32) >> lg;
  const uint32_t grp = threadIdx.x >> lg;
  const uint32_t H = static_cast<uint32_t>(p.heads_total);  // the launcher checked TB·H < 2^31
  const uint64_t D = p.D, half = D / 2;
  const uint32_t step_t = per_iter / H, step_j = per_iter - step_t * H;
  const uint32_t first_t = grp / H, first_j = grp - first_t * H;
  const uint32_t se0 = static_cast<uint32_t>(p.seg_end[0]), se1 = static_cast<uint32_t>(p.seg_end[1]);
  const uint64_t chunks = (p.tokens + TB - 1) / TB;
  auto seg_of = [&](uint32_t j) { return j < se0 ? 0 : (j < se1 ? 1 : 2); };
  // The unit's chunk pair in segment s (NeoX / copy: r, r + U; GPT-J: 2r, 2r + 1).
  auto chunk_a = [&](int s) { return p.mode[s] == 3 ? 2 * r : r; };
  auto chunk_b = [&](int s) { return p.mode[s] == 3 ? 2 * r + 1 : r + U; };
  for (uint64_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
    const uint64_t t0 = chunk * TB;
    const uint32_t nt = static_cast<uint32_t>(p.tokens - t0 < TB ? p.tokens - t0 : TB);
    const uint32_t nv = nt * H;
    const T* in0 = p.in + t0 * p.in_row_stride;
    uint32_t tl = first_t, j = first_j;
    // Loads of the first vector (raw: mode 0 stays a bit copy).
    uint4 ra = make_uint4(0, 0, 0, 0), rb = ra;
    if (grp < nv && unit) {
      const int s = seg_of(j);
      const uint4* src = reinterpret_cast<const uint4*>(in0 + tl * p.in_row_stride + j * D);
      ra = src[chunk_a(s)];
      rb = src[chunk_b(s)];
    }
    if (threadIdx.x < nt) tok[threadIdx.x] = resolve_token(p, t0 + threadIdx.x);
    __syncthreads();
    for (uint32_t v0 = 0; v0 < nv; v0 += per_iter) {
      const bool active = v0 + grp < nv;
      const int s = seg_of(j);
      const uint32_t h = j - (s == 0 ? 0 : (s == 1 ? se0 : se1));
      const uint32_t ca = chunk_a(s), cb = chunk_b(s);
      const uint4 ua = ra, ub = rb;
      const uint32_t cur_t = tl;
      // Advance to this group's next vector and issue its loads now.
      j += step_j;
      tl += step_t;
      if (j >= H) {
        j -= H;
        ++tl;
      }
      if (v0 + per_iter + grp < nv && unit) {
        const int sn = seg_of(j);
        const uint4* src = reinterpret_cast<const uint4*>(in0 + tl * p.in_row_stride + j * D);
        ra = src[chunk_a(sn)];
        rb = src[chunk_b(sn)];
      }
      const PagedTok& tk = tok[active ? cur_t : 0];
      const bool live = active && ((tk.flags >> s) & 1u);
      const int mode = live ? p.mode[s] : 0;
      const bool zero = mode != 0 && (tk.flags & kTokOob);  // position past the tables: +0.0 row
      const bool ha = live && unit && !zero;  // (rope_kernel's hb equals ha on this path)
      float ss = 0.0f;
      if (mode == 1 && ha) {  // a lane without data adds +0.0 terms there: ss stays +0.0
        const V xa = as_vec<V>(ua), xb = as_vec<V>(ub);
#pragma unroll
        for (int jj = 0; jj < N; ++jj) {
          const float a = to_f(xa.v[jj]), b = to_f(xb.v[jj]);
          ss += a * a + b * b;
        }
      }
      for (int o = G >> 1; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
      if (!live || !unit) continue;
      T* dst = p.dst[s] + tk.row[s] + static_cast<uint64_t>(h) * p.head_stride[s];
      const uint32_t xs = p.x_shift[s];
      const uint64_t xst = p.x_stride[s], est = p.elem_stride[s];
      if (zero) {
        V z;
#pragma unroll
        for (int jj = 0; jj < N; ++jj) z.v[jj] = from_f<T>(0.0f);
        store_chunk<T, N>(dst, ca, z, xs, xst, est);
        store_chunk<T, N>(dst, cb, z, xs, xst, est);
        continue;
      }
      if (mode == 0) {
        store_chunk<T, N>(dst, ca, as_vec<V>(ua), xs, xst, est);
        store_chunk<T, N>(dst, cb, as_vec<V>(ub), xs, xst, est);
        continue;
      }
      const float inv = rsqrtf(ss / static_cast<float>(D) + p.eps);
      V oa, ob;
      rope_unit<T, C, N>(mode, inv, p.w[s], p.cos + tk.pos * half, p.sin + tk.pos * half, r, ca, cb, as_vec<V>(ua),
                         as_vec<V>(ub), oa, ob);
      store_chunk<T, N>(dst, ca, oa, xs, xst, est);
      store_chunk<T, N>(dst, cb, ob, xs, xst, est);
    }
    __syncthreads();  // tok[] is rewritten by the next chunk
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
    p.paged[s] = used && g.paged;
    p.blk_stride[s] = g.blk_stride;
    p.o_stride[s] = g.o_stride;
    p.x_shift[s] = used ? g.x_shift : 31;
    p.x_stride[s] = used ? g.x_stride : 0;
    p.elem_stride[s] = used ? g.elem_stride : 1;
  }
  p.pg = L.paged;
  p.heads_total = end;
  p.cos = static_cast<const C*>(L.cos);
  p.sin = static_cast<const C*>(L.sin);
  p.rows = L.table_rows;
  p.pos_offset = L.pos_offset;
  p.positions = L.positions;
  p.pos_kind = L.paged.cu != nullptr  ? kPosVarlen
               : L.positions == nullptr ? kPosHost
                                        : (L.positions_dtype == FERRUM_DTYPE_I32 ? kPosI32 : kPosU32);

  const uint64_t total = p.tokens * p.heads_total;
  if (total == 0 || p.D == 0) return ok_status();
  constexpr int NV = kVec<T>;
  // Vector path: both halves (NeoX) / chunk pairs (GPT-J) in whole 16-byte chunks, every base,
  // stride and table row 16-byte aligned.
  bool vec = p.D % (2 * NV) == 0 && aligned16(p.in) && p.in_row_stride % NV == 0;
  for (int s = 0; s < L.nseg; ++s) {
    vec = vec && aligned16(p.dst[s]) && p.head_stride[s] % NV == 0 && p.tok_stride[s] % NV == 0;
    // Paged rows: every row base and x-group 16-byte aligned, an x-group a whole number of
    // chunks (the vLLM K layout has x = NV); scattered elements (elem_stride > 1) need nothing.
    if (p.paged[s] && p.elem_stride[s] == 1)
      vec = vec && p.blk_stride[s] % NV == 0 && p.o_stride[s] % NV == 0 && p.x_stride[s] % NV == 0 &&
            (uint64_t{1} << p.x_shift[s]) % NV == 0;
    if (p.mode[s] == 1) vec = vec && aligned16(p.w[s]);
    if (p.mode[s] != 0) vec = vec && aligned16(p.cos) && aligned16(p.sin);
  }
  const int n = vec ? NV : 1;
  const uint64_t nc = p.D / n;
  const uint32_t U = static_cast<uint32_t>((nc + 1) / 2);  // rope modes: D even, U = nc / 2
  int lg = 0;
  while ((1u << lg) < U && lg < 5) ++lg;
  const uint64_t per_block = (kWarpsPerBlock * 32) >> lg;
  const unsigned blocks =
      static_cast<unsigned>(std::clamp<uint64_t>((total + per_block - 1) / per_block, 1, uint64_t{1} << 20));
  (void)cudaGetLastError();
  // The paged writers (a paged segment, host or varlen positions) on the 16-byte path:
  // rope_paged_kernel, TB tokens per block (fewer when that would leave < 2 048 blocks).
  const bool any_paged = p.paged[0] || p.paged[1] || p.paged[2];
  if (vec && any_paged && (p.pos_kind == kPosHost || p.pos_kind == kPosVarlen) &&
      p.heads_total <= (uint64_t{1} << 31) / kPagedMaxTokens) {
    const uint32_t TB = static_cast<uint32_t>(std::clamp<uint64_t>(p.tokens / 2048, 1, kPagedMaxTokens));
    const uint64_t chunks = (p.tokens + TB - 1) / TB;
    const unsigned grid = static_cast<unsigned>(std::min<uint64_t>(chunks, uint64_t{1} << 20));
    rope_paged_kernel<T, C, NV><<<grid, kWarpsPerBlock * 32, 0, stream>>>(p, lg, U, TB);
    FERRUM_CUDA_LAUNCH_CHECK("rope_paged_kernel");
    return ok_status();
  }
  if (vec) {  // U <= 256 / 16 (16-bit) or 256 / 8 (f32): one unit per lane
    rope_kernel<T, C, NV, 1><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(p, lg, U);
  } else if (U <= 32) {
    rope_kernel<T, C, 1, 1><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(p, lg, U);
  } else {  // U <= kMaxD / 2 = 128 = 4 · 32
    rope_kernel<T, C, 1, 4><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(p, lg, U);
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
