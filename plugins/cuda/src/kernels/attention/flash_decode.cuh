// ferrum CUDA plugin — split-KV decode attention (flash-decoding), any float dtype.
// F16/BF16 run flash_decode_mma_kernel (tensor cores, further down); F32 runs the SIMT kernel:
//
// One CTA of 128 threads per (query row, KV head × head chunk, split). It serves up to
// kDecodeHeadChunk query heads that share the KV head (GQA grouping), so each K/V tile it
// streams is used by every query head of the group. Per tile of BN keys:
//   1. cp.async (double-buffered) copies BN rows of K and V into shared memory (row stride
//      padded by 16 bytes: an odd number of 16-byte chunks, so rows read at the same column
//      by neighbouring threads fall into different banks);
//   2. scores: thread ↔ (head, key) pair, a dot over hd with f32 accumulation against the
//      f32 query (pre-scaled by σ·log2 e) in shared memory;
//   3. online softmax: one warp per head updates the running max m and sum l (log2 domain);
//   4. P·V: thread ↔ fixed (head, 2 adjacent dims) outputs, f32 accumulators in registers.
// On-chip storage: 2 stages × BN rows of K and V, the chunk's queries and BN scores per head —
// independent of kv_len. With one split the CTA writes the output; otherwise it writes its
// normalised partial and log2-sum-exp to scratch, and the last CTA of its (query row, KV head
// × head chunk) group to arrive merges the group's splits in split order (merge_splits_if_last:
// deterministic whichever CTA arrives last; integer arrival counters only, no float atomics).
//
// Both kernels are templates over a KV *source* (Src): an object passed by value that maps a
// grid row to its query/output rows, length, position and visible keys, and that copies one
// 16-byte chunk of a key's K or V row into shared memory. FlashSrc below serves the contiguous
// caches of flash_attention (FlashParams); the paged pools use PagedSrc (kernels/paged). The
// interface (all __device__):
//   using Row = ...;                                 per-CTA resolved row
//   bool resolve(uint64_t row, uint64_t kvh, Row&)   false: the row is not produced (the CTA exits)
//   void range(const Row&, uint64_t& lo, uint64_t& hi)    visible keys [lo, hi) (empty: lo >= hi)
//   const T* q(const Row&, uint64_t h)               HD elements (the tensor-core kernel's Q fragments)
//   float q_at(const Row&, uint64_t h, int d)        query element d as f32 (the SIMT kernel)
//   void store(const Row&, uint64_t h, int d, float) rounds and writes output element d
//   void lse(const Row&, uint64_t h, float lse_log2)       LSE sink (a no-op when unused)
//   void load_k(void* smem, const Row&, uint64_t j, int chunk)   async copy (cp.async) or store
//   void load_v(void* smem, const Row&, uint64_t j, int chunk)   (the SIMT kernel)
//   using Loc; Loc locate(const Row&, uint64_t j)    start finding key j (a paged source reads
//                                                    its block table; TileRows, ahead of the copies)
//   bool key_rows(const Row&, uint64_t j, Loc, uint64_t& ko, uint64_t& vo)
//                                                    K and V row offsets of key j (false: zeros)
//   void copy_k / copy_v(void* smem, const Row&, uint64_t ko / vo, int chunk)
//                                                    the copies of the tensor-core kernels
//   uint64_t H, nkv, window; float scale                   fields
//   static constexpr bool kMayVt (+ v_by_dim / load_vt)   V by dimension (the tensor-core kernel)
// The SIMT kernel only needs q_at/store, so its T (the shared-memory K/V type) may differ from
// the query/output type (the quantised-KV source dequantises into f32 rows).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common.cuh"
#include "cuda_check.hpp"

namespace ferrum::cuda::attn {

template <class T, int HD>
struct DecodeCfg {
  static constexpr int kThreads = 128;
  static constexpr int kG = kDecodeHeadChunk;
  static constexpr int kRowBytes = HD * static_cast<int>(sizeof(T));
  static constexpr int kStride = kRowBytes + 16;  // bytes per smem row (odd count of 16-byte chunks)
  static constexpr int kChunks = kRowBytes / 16;  // 16-byte chunks per row
  static constexpr int kElemsPerChunk = 16 / static_cast<int>(sizeof(T));
  // About 8 KiB of K per tile: enough bytes in flight per CTA while several CTAs share an SM.
  static constexpr int kBNRaw = 8192 / kRowBytes;
  static constexpr int kBN = kBNRaw >= 64 ? 64 : (kBNRaw < 16 ? 16 : (kBNRaw / 16) * 16);
  static constexpr int kPairs = kG * HD / 2;  // (head, dim pair) outputs of a CTA
  static constexpr int kAcc = (kPairs + kThreads - 1) / kThreads;
  static constexpr size_t kKVBytes = size_t{2} * 2 * kBN * kStride;  // 2 stages × (K, V)
  static constexpr size_t kSmemBytes = kKVBytes + sizeof(float) * (kG * HD + kG * kBN + 3 * kG);
  static_assert(kRowBytes % 16 == 0, "head rows must be whole 16-byte chunks");
  static_assert((kStride / 16) % 2 == 1, "padded stride must be an odd number of chunks");
};

template <class T>
__device__ __forceinline__ float2 load2f(const unsigned char* p);
template <>
__device__ __forceinline__ float2 load2f<float>(const unsigned char* p) {
  return *reinterpret_cast<const float2*>(p);
}
template <>
__device__ __forceinline__ float2 load2f<__half>(const unsigned char* p) {
  return __half22float2(*reinterpret_cast<const __half2*>(p));
}
template <>
__device__ __forceinline__ float2 load2f<__nv_bfloat16>(const unsigned char* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

// One prefill CTA's tile (flash_prefill.cuh): nq (<= 64) consecutive queries of head h at
// positions pos0 + r (a negative position sees no key) over L keys; query and output row r at
// q0 / o0 + r·stride; flat row index g0 + r (for an LSE output); K/V through `row`.
template <class Row, class T>
struct PrefillTile {
  Row row;
  uint64_t h, g0, L, stride;
  int64_t pos0;
  int nq;
  bool causal;
  const T* q0;
  T* o0;
};

// The contiguous-cache source of flash_attention: row = b·q_len + i of the batched head-major
// q/out, K/V rows [nkv, S, HD] per batch entry (or per item, docs/spec.md §5.1).
template <class T, int HD>
struct FlashSrc {
  static constexpr bool kMayVt = false;
  static constexpr bool kCodes = false;  // K/V rows are T (see DecodeMmaCfg's kQ)
  // TileRows: a key's K (V) row is kRowBytes contiguous bytes at k_base + ko · kElemBytes.
  static constexpr bool kFlatRows = true;
  static constexpr int kElemBytes = sizeof(T), kRowBytes = HD * sizeof(T);
  FlashParams p;
  uint64_t H, nkv, window;
  float scale;
  explicit FlashSrc(const FlashParams& fp)
      : p(fp), H(fp.num_heads), nkv(fp.num_kv_heads), window(fp.window), scale(fp.scale) {}

  struct Row {
    uint64_t b, i, L, pos;
    bool causal;
    const T* kb;
    const T* vb;
  };

  __device__ __forceinline__ bool resolve(uint64_t row, uint64_t kvh, Row& r) const {
    r.b = row / p.q_len;
    r.i = row % p.q_len;
    const uint64_t head_off = kvh * p.S * HD;
    r.causal = p.causal;
    if (p.len_source == LenSource::per_item) {
      const uint32_t raw = p.kv_lens[r.b];
      const bool negative = p.kv_lens_i32 && static_cast<int32_t>(raw) < 0;
      r.L = negative ? 0 : (raw < p.S ? raw : p.S);
      r.pos = r.L ? r.L - 1 : 0;
      r.causal = true;
      const void* kbase = p.slot_table ? p.slot_table[2 * r.b] : p.items.p[0][r.b];
      const void* vbase = p.slot_table ? p.slot_table[2 * r.b + 1] : p.items.p[1][r.b];
      r.kb = static_cast<const T*>(kbase) + head_off;
      r.vb = static_cast<const T*>(vbase) + head_off;
      return true;
    }
    const uint64_t batch_off = r.b * p.num_kv_heads * p.S * HD;
    r.kb = static_cast<const T*>(p.k) + batch_off + head_off;
    r.vb = static_cast<const T*>(p.v) + batch_off + head_off;
    if (p.len_source == LenSource::dev_state) {
      const uint32_t kv = p.dev_state[2];
      r.L = kv < p.S ? kv : p.S;
      r.pos = p.dev_state[1];
    } else {
      r.L = p.kv_len;
      r.pos = p.pos_offset + r.i;
    }
    return true;
  }
  __device__ __forceinline__ void range(const Row& r, uint64_t& lo, uint64_t& hi) const {
    visible_range(r.pos, r.L, r.causal, window, lo, hi);
  }
  __device__ __forceinline__ const T* q(const Row& r, uint64_t h) const {
    return static_cast<const T*>(p.q) + ((r.b * H + h) * p.q_len + r.i) * HD;
  }
  __device__ __forceinline__ T* out(const Row& r, uint64_t h) const {
    return static_cast<T*>(p.out) + ((r.b * H + h) * p.q_len + r.i) * HD;
  }
  __device__ __forceinline__ float q_at(const Row& r, uint64_t h, int d) const { return to_f32(q(r, h)[d]); }
  __device__ __forceinline__ void store(const Row& r, uint64_t h, int d, float v) const {
    out(r, h)[d] = from_f32<T>(v);
  }
  __device__ __forceinline__ void lse(const Row&, uint64_t, float) const {}
  __device__ __forceinline__ void lse_row(uint64_t, uint64_t, float) const {}
  // Prefill tile (tile index from the last, head) = bx, batch entry = by.
  __device__ __forceinline__ bool prefill_tile(uint64_t bx, uint64_t by, int bm, PrefillTile<Row, T>& t) const {
    const uint64_t n_qtiles = (p.q_len + bm - 1) / bm;
    const uint64_t i0 = (n_qtiles - 1 - bx / H) * bm;
    t.h = bx % H;
    const uint64_t kvh = t.h / (H / nkv);
    resolve(by * p.q_len + i0, kvh, t.row);
    t.nq = static_cast<int>(p.q_len - i0 < static_cast<uint64_t>(bm) ? p.q_len - i0 : bm);
    t.pos0 = static_cast<int64_t>(t.row.pos);
    t.L = t.row.L;
    t.causal = t.row.causal;
    t.g0 = 0;
    t.stride = HD;
    t.q0 = q(t.row, t.h);
    t.o0 = out(t.row, t.h);
    return true;
  }
  __device__ __forceinline__ void load_k(void* smem, const Row& r, uint64_t j, int chunk) const {
    cp_async16(smem, reinterpret_cast<const unsigned char*>(r.kb + j * HD) + chunk * 16);
  }
  __device__ __forceinline__ void load_v(void* smem, const Row& r, uint64_t j, int chunk) const {
    cp_async16(smem, reinterpret_cast<const unsigned char*>(r.vb + j * HD) + chunk * 16);
  }
  __device__ __forceinline__ const unsigned char* k_base(const Row& r) const {
    return reinterpret_cast<const unsigned char*>(r.kb);
  }
  __device__ __forceinline__ const unsigned char* v_base(const Row& r) const {
    return reinterpret_cast<const unsigned char*>(r.vb);
  }
  // Key location (TileRows): nothing to look up in a contiguous cache.
  struct Loc {};
  __device__ __forceinline__ Loc locate(const Row&, uint64_t) const { return {}; }
  __device__ __forceinline__ bool key_rows(const Row&, uint64_t j, Loc, uint64_t& ko, uint64_t& vo) const {
    ko = vo = j * HD;
    return true;
  }
};

// Key rows of the K/V tiles, resolved once per row and shared through shared memory.
// A paged source must read the block table and compute a row address for every key; done
// inside the copy loop, every thread repeats it for every row it copies (16 threads share a
// row at hd 128) and the copies wait on the table read. Here thread r < kRows resolves row r
// of a tile only: its table read (Src::locate) is issued two tiles ahead into a register
// (fetch), the row's K and V offsets are computed one tile ahead into a two-slot ring in
// shared memory (resolve), and the copy loop reads them back (copy): one resolution per row
// per CTA, no dependent global read in front of any cp.async. Slot discipline (tile X in slot
// X & 1): a kernel resolves tile X after the barrier that follows the copies of tile X − 2 and
// copies it after the next barrier.
// Zero bytes a flat-row TileRows copies for a zero row (one key row of up to 512 bytes): every row
// is then a plain 16-byte copy, no predicate (one copy per translation unit, internal linkage).
static __device__ __align__(16) unsigned char g_zero_row[512] = {};

template <class S, class = void>
struct HasFlatRows : std::false_type {};
template <class S>
struct HasFlatRows<S, std::void_t<decltype(S::kFlatRows)>> : std::bool_constant<S::kFlatRows> {};

template <class Src, int kRows, int kChunks, int kThreads>
struct TileRows {
  static_assert(kRows <= kThreads, "one resolving thread per row");
  static constexpr int kTotal = kRows * kChunks;
  static constexpr int kPer = (kTotal + kThreads - 1) / kThreads;
  static constexpr uint64_t kNone = ~uint64_t{0};  // a zero row
  typename Src::Loc loc{};  // row tid of the tile fetched last
  uint64_t loc_j0 = kNone;  // its first key (kNone: none fetched)
  ulonglong2* slots;        // [2][kRows]: {K offset, V offset}
  __device__ __forceinline__ void fetch(const Src& src, const typename Src::Row& rw, uint64_t j0, uint64_t jend,
                                        int tid) {
    loc_j0 = j0;
    if (tid < kRows && j0 + static_cast<uint64_t>(tid) < jend) loc = src.locate(rw, j0 + static_cast<uint64_t>(tid));
  }
  // The prologue's form: tile j0's location into `l` (kept by the caller), so the table reads
  // of several tiles are in flight together; `use` later makes it the fetched tile.
  __device__ __forceinline__ void fetch_to(const Src& src, const typename Src::Row& rw, uint64_t j0, uint64_t jend,
                                           int tid, typename Src::Loc& l) const {
    if (tid < kRows && j0 + static_cast<uint64_t>(tid) < jend) l = src.locate(rw, j0 + static_cast<uint64_t>(tid));
  }
  __device__ __forceinline__ void use(const typename Src::Loc& l, uint64_t j0) {
    loc = l;
    loc_j0 = j0;
  }
  // Resolves the fetched tile (first key j0 = loc_j0) into slot `slot`: element offsets of the K
  // and V rows (kNone: a zero row) or, for flat rows, byte offsets from k_base / v_base (a zero row
  // points at g_zero_row; unsigned arithmetic, so the offset may wrap).
  __device__ __forceinline__ void resolve(const Src& src, const typename Src::Row& rw, uint64_t jend, int slot,
                                          int tid) {
    if (tid >= kRows) return;
    const uint64_t j = loc_j0 + static_cast<uint64_t>(tid);
    uint64_t ko = kNone, vo = kNone;
    const bool ok = j < jend && src.key_rows(rw, j, loc, ko, vo);
    if constexpr (HasFlatRows<Src>::value) {
      static_assert(Src::kRowBytes <= sizeof(g_zero_row), "a zero row covers one key row");
      const uint64_t zero = reinterpret_cast<uint64_t>(g_zero_row);
      ko = ok ? ko * Src::kElemBytes : zero - reinterpret_cast<uint64_t>(src.k_base(rw));
      vo = ok ? vo * Src::kElemBytes : zero - reinterpret_cast<uint64_t>(src.v_base(rw));
    } else if (!ok) {
      ko = vo = kNone;
    }
    slots[slot * kRows + tid] = make_ulonglong2(ko, vo);
  }
  // Copies the tile of slot `slot` into ks / vs (row stride ld elements of T), K only when
  // k_only; zero rows (past the range, an out-of-range block) are zero-filled, so P = 0 never
  // meets stale NaN/Inf.
  template <class T>
  __device__ __forceinline__ void copy(const Src& src, const typename Src::Row& rw, int slot, T* ks, T* vs, int ld,
                                       bool k_only, int tid) const {
    constexpr int kE = 16 / static_cast<int>(sizeof(T));
    if constexpr (HasFlatRows<Src>::value) {
      // Flat rows (FlashSrc, the ferrum paged layout): a thread copies chunk tid % kChunks of rows
      // tid / kChunks + i·kStep, so its shared-memory addresses are immediates off one base, and a
      // row costs one slot read, two 64-bit adds and two cp.async (zero rows read g_zero_row).
      // (Head dims whose chunk count does not divide the CTA take the general index walk.)
      if constexpr (kThreads % kChunks == 0 && kTotal % kThreads == 0) {
        constexpr int kStep = kThreads / kChunks;
        const int cc = tid % kChunks, r0 = tid / kChunks;
        const unsigned char* kb = src.k_base(rw) + cc * 16;
        const unsigned char* vb = src.v_base(rw) + cc * 16;
        T* kd = ks + r0 * ld + cc * kE;
        T* vd = vs + r0 * ld + cc * kE;
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
          const ulonglong2 o = slots[slot * kRows + r0 + i * kStep];
          cp_async16(kd + i * kStep * ld, kb + o.x);
          if (!k_only) cp_async16(vd + i * kStep * ld, vb + o.y);
        }
      } else {
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
          const int c = tid + i * kThreads;
          if (c >= kTotal) break;
          const int r = c / kChunks, cc = c % kChunks;
          const ulonglong2 o = slots[slot * kRows + r];
          cp_async16(ks + r * ld + cc * kE, src.k_base(rw) + o.x + cc * 16);
          if (!k_only) cp_async16(vs + r * ld + cc * kE, src.v_base(rw) + o.y + cc * 16);
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        const int c = tid + i * kThreads;
        if (c >= kTotal) break;
        const int r = c / kChunks, cc = c % kChunks;
        T* kd = ks + r * ld + cc * kE;
        T* vd = vs + r * ld + cc * kE;
        const ulonglong2 o = slots[slot * kRows + r];
        if (o.x != kNone) {
          src.copy_k(kd, rw, o.x, cc);
          if (!k_only) src.copy_v(vd, rw, o.y, cc);
        } else {
          *reinterpret_cast<uint4*>(kd) = make_uint4(0, 0, 0, 0);
          if (!k_only) *reinterpret_cast<uint4*>(vd) = make_uint4(0, 0, 0, 0);
        }
      }
    }
  }
};

// A decode CTA's place in the (1-D) grid: flat = (row · splits + split) · groups + group, the
// group (KV head × head chunk) fastest, so the CTAs that run together read the KV heads of the
// same keys — for a paged pool, the interleaved rows of the same blocks, with DRAM pages fully
// used. `group` (row · groups + group) indexes the split-merge arrival counters.
struct DecodeCta {
  uint64_t row, kvh, group, h0;  // h0: the chunk's first query head
  uint32_t split, chunk;
  int ga;                        // query heads of the chunk (<= kG)
  __device__ __forceinline__ DecodeCta(uint32_t splits, uint32_t head_chunks, uint64_t nkv, uint64_t H, int kG) {
    const uint64_t groups = nkv * head_chunks;
    const uint64_t flat = blockIdx.x;
    const uint64_t g = flat % groups, rs = flat / groups;
    row = rs / splits;
    split = static_cast<uint32_t>(rs % splits);
    kvh = g / head_chunks;
    chunk = static_cast<uint32_t>(g % head_chunks);
    group = row * groups + g;
    const uint64_t per_kv = H / nkv, first = static_cast<uint64_t>(chunk) * kG;
    h0 = kvh * per_kv + first;
    ga = static_cast<int>(per_kv - first < static_cast<uint64_t>(kG) ? per_kv - first : kG);
  }
};

// The CTA's row (false: not produced, the CTA exits — uniform over its split group) and its
// split's keys [js, je) of the row's visible range, the split length rounded up to `round`.
template <class Src>
__device__ __forceinline__ bool decode_split_keys(const Src& src, const DecodeCta& cta, uint32_t splits,
                                                  uint64_t round, typename Src::Row& rw, uint64_t& js, uint64_t& je) {
  if (!src.resolve(cta.row, cta.kvh, rw)) return false;
  uint64_t lo, hi;
  src.range(rw, lo, hi);
  if (lo >= hi) lo = hi = 0;
  const uint64_t per_split = ((hi - lo + splits - 1) / splits + round - 1) / round * round;
  js = lo + cta.split * per_split < hi ? lo + cta.split * per_split : hi;
  je = js + per_split < hi ? js + per_split : hi;
  return true;
}

// Split-KV merge folded into the decode kernels (replaces a second launch). Called by every
// thread of the CTA after it wrote its partials: part_o[(row·H + h)·splits + split][HD] and
// part_lse[...] for its heads h0 .. h0 + ga − 1. Each thread fences its own writes, then one
// thread counts the CTA in on the group's arrival counter; the CTA that brings it to `splits`
// resets it to 0 (so the next launch and every graph replay start clean) and merges:
//   out[h] = Σ_s w_s·o_s / Σ_s w_s,  w_s = 2^(lse_s − max lse), in split order s = 0, 1, ...
// — the same arithmetic whichever CTA arrives last, so the result is deterministic. Partials
// are read through L2 (ld.global.cg): they were written by other SMs during this launch.
// `smem` needs (8 · kMaxSplits + 8) floats and is free once the first barrier here is passed.
template <class T, int HD, class Src>
__device__ __forceinline__ void merge_splits_if_last(const Src& src, const typename Src::Row& rw, uint32_t splits,
                                                     uint64_t row, uint64_t h0, int ga, const float* part_o,
                                                     const float* part_lse, uint32_t* counter, float* smem) {
  __shared__ int last_s;
  __threadfence();  // this thread's partials are visible device-wide before the CTA arrives
  __syncthreads();
  if (threadIdx.x == 0) {
    const uint32_t prev = atomicAdd(counter, 1u);
    const bool last = prev == splits - 1;
    if (last) atomicExch(counter, 0u);  // every CTA of the group has arrived: reset for the next use
    last_s = last ? 1 : 0;
  }
  __syncthreads();
  if (!last_s) return;
  __threadfence();  // order the reads below after the arrivals

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, nwarps = blockDim.x >> 5;
  const uint64_t H = src.H;
  float* w_s = smem;                   // [8][kMaxSplits]
  float* inv_s = smem + 8 * kMaxSplits;  // [8]
  static_assert(kMaxSplits == 64, "two splits per lane");
  for (int g = warp; g < ga; g += nwarps) {
    const float* lse = part_lse + (row * H + h0 + g) * splits;
    const float l0 = static_cast<uint32_t>(lane) < splits ? __ldcg(lse + lane) : -INFINITY;
    const float l1 = static_cast<uint32_t>(lane) + 32 < splits ? __ldcg(lse + lane + 32) : -INFINITY;
    const float mx = warp_max(fmaxf(l0, l1));
    const float w0 = (mx == -INFINITY || l0 == -INFINITY) ? 0.0f : exp2f(l0 - mx);
    const float w1 = (mx == -INFINITY || l1 == -INFINITY) ? 0.0f : exp2f(l1 - mx);
    w_s[g * kMaxSplits + lane] = w0;
    w_s[g * kMaxSplits + lane + 32] = w1;
    const float total = warp_sum(w0 + w1);  // a fixed tree: deterministic
    if (lane == 0) {
      inv_s[g] = total == 0.0f ? 0.0f : 1.0f / total;  // every split empty: +0.0
      src.lse(rw, h0 + g, total == 0.0f ? -INFINITY : mx + log2f(total));
    }
  }
  __syncthreads();
  constexpr int kC = HD / 4;  // float4 columns per head
  for (int e = tid; e < ga * kC; e += blockDim.x) {
    const int g = e / kC, c = e % kC;
    const float4* o4 = reinterpret_cast<const float4*>(part_o + (row * H + h0 + g) * splits * HD) + c;
    const float* w = w_s + g * kMaxSplits;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 16
    for (uint32_t s = 0; s < splits; ++s) {  // split order (16 loads in flight per thread)
      const float4 v = __ldcg(o4 + static_cast<uint64_t>(s) * kC);
      const float ws = w[s];
      acc.x = fmaf(ws, v.x, acc.x);
      acc.y = fmaf(ws, v.y, acc.y);
      acc.z = fmaf(ws, v.z, acc.z);
      acc.w = fmaf(ws, v.w, acc.w);
    }
    const float inv = inv_s[g];
    src.store(rw, h0 + g, 4 * c, acc.x * inv);
    src.store(rw, h0 + g, 4 * c + 1, acc.y * inv);
    src.store(rw, h0 + g, 4 * c + 2, acc.z * inv);
    src.store(rw, h0 + g, 4 * c + 3, acc.w * inv);
  }
}

template <class T, int HD, class Src>
__global__ void __launch_bounds__(128) flash_decode_kernel(const Src src, uint32_t splits,
                                                           uint32_t head_chunks, float* part_o,
                                                           float* part_lse, uint32_t* counters) {
  using Cfg = DecodeCfg<T, HD>;
  constexpr int kBN = Cfg::kBN, kG = Cfg::kG, kStride = Cfg::kStride;
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* kv_s = smem;                                          // [2][2][kBN][kStride]
  float* q_s = reinterpret_cast<float*>(smem + Cfg::kKVBytes);         // [kG][HD]
  float* s_s = q_s + kG * HD;                                          // [kG][kBN]
  float* m_s = s_s + kG * kBN;                                         // [kG]
  float* l_s = m_s + kG;
  float* a_s = l_s + kG;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const DecodeCta cta(splits, head_chunks, src.nkv, src.H, kG);
  const uint64_t row = cta.row, h0 = cta.h0, H = src.H;
  const uint32_t split = cta.split;
  const int ga = cta.ga;
  typename Src::Row rw;
  uint64_t js, je;
  if (!decode_split_keys(src, cta, splits, 1, rw, js, je)) return;
  const uint64_t ntiles = (je - js + kBN - 1) / kBN;

  const float qscale = src.scale * kLog2e;
  for (int e = tid; e < ga * HD; e += Cfg::kThreads) {
    const int g = e / HD, d = e % HD;
    q_s[e] = src.q_at(rw, h0 + g, d) * qscale;
  }
  if (tid < kG) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
    a_s[tid] = 1.0f;
  }

  auto load_tile = [&](int stage, uint64_t j0) {
    const int rows = static_cast<int>(je - j0 < static_cast<uint64_t>(kBN) ? je - j0 : kBN);
    unsigned char* ks = kv_s + static_cast<size_t>(stage) * 2 * kBN * kStride;
    unsigned char* vs = ks + static_cast<size_t>(kBN) * kStride;
    for (int c = tid; c < rows * Cfg::kChunks; c += Cfg::kThreads) {
      const int r = c / Cfg::kChunks, cc = c % Cfg::kChunks;
      src.load_k(ks + r * kStride + cc * 16, rw, j0 + r, cc);
      src.load_v(vs + r * kStride + cc * 16, rw, j0 + r, cc);
    }
  };

  float acc[Cfg::kAcc][2];
#pragma unroll
  for (int a = 0; a < Cfg::kAcc; ++a) acc[a][0] = acc[a][1] = 0.0f;

  if (ntiles > 0) load_tile(0, js);
  cp_async_commit();

  for (uint64_t t = 0; t < ntiles; ++t) {
    cp_async_wait<0>();
    __syncthreads();  // tile t landed; every thread is done with tile t-1 (stage and scores)
    if (t + 1 < ntiles) load_tile(static_cast<int>((t + 1) & 1), js + (t + 1) * kBN);
    cp_async_commit();

    const uint64_t j0 = js + t * kBN;
    const int nvalid = static_cast<int>(je - j0 < static_cast<uint64_t>(kBN) ? je - j0 : kBN);
    const unsigned char* ks = kv_s + static_cast<size_t>(t & 1) * 2 * kBN * kStride;
    const unsigned char* vs = ks + static_cast<size_t>(kBN) * kStride;

    // 2. scores (log2 domain)
    for (int pr = tid; pr < ga * kBN; pr += Cfg::kThreads) {
      const int g = pr / kBN, j = pr % kBN;
      float s = -INFINITY;
      if (j < nvalid) {
        const uint4* krow = reinterpret_cast<const uint4*>(ks + j * kStride);
        const float* qg = q_s + g * HD;
        s = 0.0f;
#pragma unroll
        for (int c = 0; c < Cfg::kChunks; ++c) {
          float f[Cfg::kElemsPerChunk];
          unpack16<T>(krow[c], f);
#pragma unroll
          for (int e = 0; e < Cfg::kElemsPerChunk; ++e) s = fmaf(qg[c * Cfg::kElemsPerChunk + e], f[e], s);
        }
      }
      s_s[g * kBN + j] = s;
    }
    __syncthreads();

    // 3. online softmax, one warp per head
    for (int g = warp; g < ga; g += Cfg::kThreads / 32) {
      float mx = -INFINITY;
      for (int j = lane; j < kBN; j += 32) mx = fmaxf(mx, s_s[g * kBN + j]);
      mx = warp_max(mx);
      const float m_old = m_s[g];
      const float m_new = fmaxf(m_old, mx);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      float sum = 0.0f;
      for (int j = lane; j < kBN; j += 32) {
        const float pj = exp2f(s_s[g * kBN + j] - m_use);
        s_s[g * kBN + j] = pj;
        sum += pj;
      }
      sum = warp_sum(sum);
      __syncwarp();  // every lane has read m_s[g] before lane 0 overwrites it (racecheck)
      if (lane == 0) {
        const float alpha = exp2f(m_old - m_use);
        a_s[g] = alpha;
        l_s[g] = l_s[g] * alpha + sum;
        m_s[g] = m_new;
      }
    }
    __syncthreads();

    // 4. P·V
#pragma unroll
    for (int a = 0; a < Cfg::kAcc; ++a) {
      const int e2 = tid + a * Cfg::kThreads;
      if (e2 < ga * (HD / 2)) {
        const int g = e2 / (HD / 2), d = (e2 % (HD / 2)) * 2;
        const float alpha = a_s[g];
        float x = acc[a][0] * alpha, y = acc[a][1] * alpha;
        const float* pg = s_s + g * kBN;
        const unsigned char* vcol = vs + d * sizeof(T);
        for (int j = 0; j < nvalid; ++j) {
          const float pj = pg[j];
          const float2 vv = load2f<T>(vcol + j * kStride);
          x = fmaf(pj, vv.x, x);
          y = fmaf(pj, vv.y, y);
        }
        acc[a][0] = x;
        acc[a][1] = y;
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // m_s / l_s final (also when there was no tile)

#pragma unroll
  for (int a = 0; a < Cfg::kAcc; ++a) {
    const int e2 = tid + a * Cfg::kThreads;
    if (e2 >= ga * (HD / 2)) continue;
    const int g = e2 / (HD / 2), d = (e2 % (HD / 2)) * 2;
    const float l = l_s[g];
    const float inv = l == 0.0f ? 0.0f : 1.0f / l;  // empty visible set: +0.0; NaN propagates
    const uint64_t h = h0 + g;
    if (splits == 1) {
      src.store(rw, h, d, acc[a][0] * inv);
      src.store(rw, h, d + 1, acc[a][1] * inv);
      if (d == 0) src.lse(rw, h, l == 0.0f ? -INFINITY : m_s[g] + log2f(l));
    } else {
      const uint64_t slot = (row * H + h) * splits + split;
      part_o[slot * HD + d] = acc[a][0] * inv;
      part_o[slot * HD + d + 1] = acc[a][1] * inv;
      if (d == 0) part_lse[slot] = l == 0.0f ? -INFINITY : m_s[g] + log2f(l);
    }
  }
  if (splits > 1)
    merge_splits_if_last<T, HD>(src, rw, splits, row, h0, ga, part_o, part_lse,
                                counters + cta.group, reinterpret_cast<float*>(smem));
}

// ---- tensor-core decode (F16 / BF16) --------------------------------------------------------
// Same grid and outputs as flash_decode_kernel. The chunk's query heads (<= 8) are rows 0..7 of
// an m16n8k16 A operand (rows 8..15 are zero, so only a[0] and a[2] are ever non-zero); every
// 64-key stage is split among the 4 warps, 16 keys each: S = Q·Kᵀ (2 n-fragments), an online
// softmax per warp, O += P·V (V through ldmatrix.trans), exactly the prefill's fragment
// layouts. The stages stream through a kStages-deep cp.async ring, so each CTA keeps 2 stages
// (64 KiB at hd 128) in flight. At the end the 4 warps' (m, l, O) are merged through shared
// memory in warp order (deterministic). Per 64 keys of hd 128 a warp issues 32 mma + 16
// ldmatrix: far under the time the 32 KiB take to arrive, so the kernel runs at the memory rate.
//
// A source whose V rows are stored by dimension (the vLLM V layout [D, block_size]: a 16-byte
// chunk is 8 consecutive keys of one dimension) says so with kMayVt and v_by_dim(row); the stage
// then holds V transposed ([HD][kBN + 8], loaded with load_vt) and P·V reads it with the
// non-transposing ldmatrix, exactly as Q·Kᵀ reads K.
// kQ: the source stores 8-bit codes with one f32 scale per key row (Src::kCodes, the quantised
// pools): a stage holds the K and V codes ([kBN][kCodeLd] bytes each) and their scales. The
// MMAs run in f16 for F16 and BF16 activations alike (a code → f16 conversion costs under half
// the instructions of a code → bf16 one, and this kernel is instruction-bound): the codes become
// f16 in registers as each MMA operand is formed (exactly: |int8| <= 127 and every e4m3 value
// are f16 values): K as one 32-bit word of 4 codes per operand (the head dimensions permuted
// inside each k step, Q alike), V through transposed ldmatrix of code pairs and a byte permute
// (the output dimensions permuted, undone at the merge). The scales are applied to the scores
// (s_k) and to P before P·V (s_v), in f32. Range: the query row enters as q·2^e (its largest
// magnitude in [2^14, 2^15)) and P·s_v as P·s_v·2^fv (the largest s_v seen by the warp in
// [2^14, 2^15)), both powers of two undone in f32 — so neither f16 operand overflows, and P·s_v
// keeps 11 significant bits (BF16 P had 8).
template <class T, int HD, bool kVt = false, bool kQ = false>
struct DecodeMmaCfg {
  static constexpr int kThreads = 128;
  static constexpr int kBN = kDecodeMmaKeys;  // 16 keys per warp
  static constexpr int kCodeLd = (HD / 16) % 2 == 0 ? HD + 16 : HD + 32;  // bytes per code row (odd count of 16-byte chunks)
  static constexpr size_t kCodeStage = size_t{2} * kBN * kCodeLd + size_t{2} * kBN * sizeof(float);
  // kQ: a code stage is about half a T stage; as many stages as fit 110 KiB (two CTAs per SM),
  // 3..6, so as many bytes stay in flight as for T rows.
  static constexpr int kStages =
      kQ ? static_cast<int>(std::clamp<size_t>(110 * 1024 / kCodeStage, 3, 6)) : decode_mma_stages(HD);
  static constexpr int kLd = HD + 8;          // elements per smem row (odd count of 16-byte chunks)
  static constexpr int kLdT = kBN + 8;        // elements per transposed V row (9 chunks)
  static constexpr int kChunks = HD / 8;
  static constexpr int kVElems = kVt && HD * kLdT > kBN * kLd ? HD * kLdT : kBN * kLd;
  static constexpr int kStageElems = kBN * kLd + kVElems;  // K rows then V rows (or V by dimension)
  static constexpr size_t kSmemBytes =
      kQ ? kCodeStage * kStages : sizeof(T) * static_cast<size_t>(kStageElems) * kStages;
  static constexpr int kOwLd = HD + 8;        // floats per row of the end-of-CTA merge buffer
  static_assert(kVt || kQ || kSmemBytes == decode_mma_smem_bytes(HD, sizeof(T)), "flash.hpp's size must match");
  static_assert(!kQ || (kCodeLd / 16) % 2 == 1, "code rows must be an odd number of 16-byte chunks");
  static_assert((kLdT * 2 / 16) % 2 == 1, "transposed V row must be an odd number of 16-byte chunks");
  static_assert(HD % 16 == 0, "mma decode head_dim must be a multiple of 16");
  static_assert((kLd * 2 / 16) % 2 == 1, "padded row must be an odd number of 16-byte chunks");
  static_assert(sizeof(float) * (4 * 8 * kOwLd + 64) <= kSmemBytes, "merge buffer must fit the stages");
};

template <class T, int HD, class Src, bool kTma = false>
__global__ void __launch_bounds__(128) flash_decode_mma_kernel(const Src src, uint32_t splits,
                                                               uint32_t head_chunks, float* part_o,
                                                               float* part_lse, uint32_t* counters,
                                                               const __grid_constant__ KvMaps maps) {
  constexpr bool kQ = Src::kCodes;
  static_assert(!kTma || (!kQ && !Src::kMayVt && HD % 64 == 0 && HasFlatRows<Src>::value),
                "the tensor-copy path serves flat T rows of whole 64-element halves");
  using MT = std::conditional_t<kQ, __half, T>;  // the MMAs' operand type (kQ: f16, see below)
  using Cfg = DecodeMmaCfg<T, HD, Src::kMayVt, kQ>;
  constexpr int kBN = Cfg::kBN, kLd = Cfg::kLd, kStages = Cfg::kStages;
  constexpr int kChunks = kQ ? HD / 16 : Cfg::kChunks;  // 16-byte chunks per copied row (codes or T)
  constexpr int kG = kDecodeHeadChunk;
  static_assert(kG == 8, "the mma decode maps the head chunk onto rows 0..7");
  extern __shared__ __align__(16) unsigned char smem[];
  T* kv_s = reinterpret_cast<T*>(smem);  // [kStages][K rows, V rows][kLd]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const DecodeCta cta(splits, head_chunks, src.nkv, src.H, kG);
  const uint64_t row = cta.row, h0 = cta.h0, H = src.H;
  const uint32_t split = cta.split;
  const int ga = cta.ga;
  typename Src::Row rw;
  uint64_t js, je;  // split length rounded up to whole stages (no split ends in a sliver of a stage)
  if (!decode_split_keys(src, cta, splits, kBN, rw, js, je)) return;
  const int ntiles = static_cast<int>((je - js + kBN - 1) / kBN);

  // Q fragments of row g (head h0 + g): columns 2·t4 (+8) of each 16-wide k step. kQ permutes
  // the dimensions inside each k step (fragment columns 2·t4, +1, +8, +9 hold dimensions
  // 4·t4 .. 4·t4 + 3), so a thread's K operand is one 32-bit word of 4 codes (see below).
  // kQ: the MMAs run in f16 for F16 and BF16 queries alike; the query row enters as
  // q·2^e_g in f16, e_g putting its largest magnitude in [2^14, 2^15) (every BF16 value of the
  // row then keeps its 8 significant bits unless it lies 2^28 below that maximum), and the
  // scores are scaled back by 2^−e_g in f32 (qscale below).
  uint32_t qf[HD / 16][2];
  float qscale = src.scale * kLog2e;
  {
    const T* qrow = src.q(rw, h0 + (g < ga ? g : 0));
    const int c0 = kQ ? 4 * t4 : 2 * t4, c1 = kQ ? 4 * t4 + 2 : 2 * t4 + 8;
    if constexpr (kQ) {
      float qv[HD / 16][4];
      float amax = 0.0f;
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        const float2 a = g < ga ? load2f<T>(reinterpret_cast<const unsigned char*>(qrow + kk * 16 + c0)) : float2{};
        const float2 b = g < ga ? load2f<T>(reinterpret_cast<const unsigned char*>(qrow + kk * 16 + c1)) : float2{};
        qv[kk][0] = a.x, qv[kk][1] = a.y, qv[kk][2] = b.x, qv[kk][3] = b.y;
        amax = fmaxf(amax, fmaxf(fmaxf(fabsf(a.x), fabsf(a.y)), fmaxf(fabsf(b.x), fabsf(b.y))));
      }
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));  // the row's 4 lanes
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
      const int e = pow2_exponent_for(amax);
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        qf[kk][0] = pack2<__half>(ldexp_exact(qv[kk][0], e), ldexp_exact(qv[kk][1], e));
        qf[kk][1] = pack2<__half>(ldexp_exact(qv[kk][2], e), ldexp_exact(qv[kk][3], e));
      }
      qscale = ldexp_exact(qscale, -e);
    } else {
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        qf[kk][0] = g < ga ? *reinterpret_cast<const uint32_t*>(qrow + kk * 16 + c0) : 0u;
        qf[kk][1] = g < ga ? *reinterpret_cast<const uint32_t*>(qrow + kk * 16 + c1) : 0u;
      }
    }
  }

  bool vt = false;  // V staged by dimension (uniform over the CTA)
  if constexpr (Src::kMayVt) vt = src.v_by_dim(rw);
  __shared__ ulonglong2 rows_s[2 * kBN];
  TileRows<Src, kBN, kChunks, Cfg::kThreads> tr;
  tr.slots = rows_s;
  // kTma (sm_90): a stage is K rows then V rows, each [4 boxes of 16 keys][HD / 64 halves][16 rows]
  // [128 bytes] with the 128-byte swizzle (16-byte chunk cc of a 128-byte row at cc ^ (row & 7)),
  // 1024-byte aligned. Box b (keys 16b .. 16b + 15, one paged block: the host asks block_size % 16
  // == 0) is warp b's: its lane 0 issues the box's tensor copies (HD / 64 per K and per V) when all
  // its keys are visible and its block is in range; else the warp copies the rows 16 bytes at a
  // time (zero rows from g_zero_row) into the same swizzled places. Either way the stage's mbarrier
  // completes: its count is the 128 threads' cp.async arrivals plus each warp's lane-0 arrival with
  // its copies' bytes.
  constexpr int kHalves = HD / 64;
  constexpr int kBoxBytes = 16 * 128;
  constexpr int kRegion = kBN * HD * static_cast<int>(sizeof(T));
  __shared__ __align__(8) uint64_t bars[kStages];
  unsigned char* tbase = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem) + 1023) & ~uintptr_t{1023});
  if constexpr (kTma) {
    static_assert(2 * kRegion * kStages + 1024 <= Cfg::kSmemBytes, "swizzled stages must fit the padded ones");
    if (tid == 0) {
#pragma unroll
      for (int st = 0; st < kStages; ++st) mbar_init(&bars[st], Cfg::kThreads + kBN / 16);
      mbar_init_fence();
      tma_prefetch_map(&maps.k);
      tma_prefetch_map(&maps.v);
    }  // visible to the other threads after the prologue's first barrier
  }
  // Byte offset of 16-byte chunk c of stage row r in a K or V region (kTma).
  auto swz = [&](int r, int c) {
    const int tok = r & 15;
    return static_cast<uint32_t>((((r >> 4) * kHalves + (c >> 3)) * 16 + tok) * 128 + (((c & 7) ^ (tok & 7)) << 4));
  };
  // The transposed-V chunks of this thread are keys 8·(tid % 8) .. + 7 of the tile (every d),
  // looked up when the tile is copied.
  // kQ: stage s = K codes, V codes, K scales, V scales; the T buffer after the stages.
  auto code_k = [&](int stage) { return smem + stage * Cfg::kCodeStage; };
  auto scale_k = [&](int stage) {
    return reinterpret_cast<float*>(smem + stage * Cfg::kCodeStage + 2 * kBN * Cfg::kCodeLd);
  };
  auto load_tile = [&](int stage, int tile) {
    const uint64_t j0 = js + static_cast<uint64_t>(tile) * kBN;
    if constexpr (kTma) {
      unsigned char* kst = tbase + stage * 2 * kRegion;
      unsigned char* vst = kst + kRegion;
      const ulonglong2* sl = rows_s + (tile & 1) * kBN;
      const unsigned char* kb = src.k_base(rw);
      const unsigned char* vb = src.v_base(rw);
      const uint64_t zk = reinterpret_cast<uint64_t>(g_zero_row) - reinterpret_cast<uint64_t>(kb);
      static_assert(kBN / 16 == Cfg::kThreads / 32, "one 16-key box per warp");
      // the box's 16 rows must be 16 consecutive rows of the map (a window may start a box inside a
      // block; two blocks at most, as block_size >= 16: the end rows tell)
      const uint64_t f = sl[16 * warp].x, l = sl[16 * warp + 15].x;
      const bool ok = j0 + 16 * warp + 16 <= je && f != zk && l != zk &&
                      l - f == uint64_t{15} * maps.heads * HD * sizeof(T);
      if (!ok) {
#pragma unroll 4
        for (int i = lane; i < 16 * kChunks; i += 32) {
          const int r = warp * 16 + i / kChunks, c = i % kChunks;
          const ulonglong2 o = sl[r];
          cp_async16(kst + swz(r, c), kb + o.x + c * 16);
          cp_async16(vst + swz(r, c), vb + o.y + c * 16);
        }
      }
      mbar_arrive_cp_async(&bars[stage]);
      if (lane == 0) {
        mbar_arrive_expect_tx(&bars[stage], ok ? 2u * kHalves * kBoxBytes : 0u);
        if (ok) {
          fence_proxy_async_smem();
          // flat rows of the box's first key in the maps' [rows][heads][HD] view (< 2^31: host-checked)
          const uint32_t rk = static_cast<uint32_t>(
              (reinterpret_cast<uint64_t>(kb) - reinterpret_cast<uint64_t>(maps.k0) + f) / (HD * sizeof(T)));
          const uint32_t rv = static_cast<uint32_t>(
              (reinterpret_cast<uint64_t>(vb) - reinterpret_cast<uint64_t>(maps.v0) + sl[16 * warp].y) / (HD * sizeof(T)));
          const uint32_t tk = maps.heads_div.div(rk), tv = maps.heads_div.div(rv);
          const int32_t hk = static_cast<int32_t>(rk - tk * maps.heads), hv = static_cast<int32_t>(rv - tv * maps.heads);
#pragma unroll
          for (int h = 0; h < kHalves; ++h) {
            tma_load_3d(kst + (warp * kHalves + h) * kBoxBytes, &maps.k, h * 64, hk, static_cast<int32_t>(tk), &bars[stage]);
            tma_load_3d(vst + (warp * kHalves + h) * kBoxBytes, &maps.v, h * 64, hv, static_cast<int32_t>(tv), &bars[stage]);
          }
        }
      }
      return;
    }
    if constexpr (kQ) {
      unsigned char* ck = code_k(stage);
      tr.copy(src, rw, tile & 1, ck, ck + kBN * Cfg::kCodeLd, Cfg::kCodeLd, false, tid);
      if (tid < kBN) src.copy_scales(scale_k(stage) + tid, scale_k(stage) + kBN + tid, rw, tr.slots[(tile & 1) * kBN + tid].x);
      return;
    }
    T* ks = kv_s + stage * Cfg::kStageElems;
    T* vs = ks + kBN * kLd;
    tr.copy(src, rw, tile & 1, ks, vs, kLd, vt, tid);
    if constexpr (Src::kMayVt) {
      if (vt) {  // [HD][kLdT]: chunk (d, keys 8·kc .. 8·kc + 7); keys past je are zeros
        const int rows = static_cast<int>(je - j0 < static_cast<uint64_t>(kBN) ? je - j0 : kBN);
        const int kc = tid % 8;
        typename Src::Loc l{};
        if (j0 + kc * 8 < je) l = src.locate(rw, j0 + kc * 8);
        for (int c = tid; c < HD * (kBN / 8); c += Cfg::kThreads)
          src.load_vt_at(vs + (c / (kBN / 8)) * Cfg::kLdT + kc * 8, rw, j0 + kc * 8, c / (kBN / 8), rows - kc * 8, l);
      }
    }
  };
  auto tile_j0 = [&](int tile) { return js + static_cast<uint64_t>(tile) * kBN; };

  // Prologue: tiles 0 .. kStages − 2 resolved and copied, tile kStages − 1 resolved, tile
  // kStages fetched (TileRows' slot discipline). The table reads of the first kStages tiles
  // are issued together, so the CTA waits for one read latency, not kStages in a row.
  typename Src::Loc pro[kStages];
#pragma unroll
  for (int st = 0; st < kStages; ++st) {
    pro[st] = typename Src::Loc{};
    if (st < ntiles) tr.fetch_to(src, rw, tile_j0(st), je, tid, pro[st]);
  }
#pragma unroll
  for (int st = 0; st < kStages; ++st) {
    if (st < ntiles) {
      tr.use(pro[st], tile_j0(st));
      tr.resolve(src, rw, je, st & 1, tid);
    }
    __syncthreads();
    if (st < kStages - 1) {
      if (st < ntiles) load_tile(st, st);
      cp_async_commit();
    }
  }
  if (kStages < ntiles) tr.fetch(src, rw, tile_j0(kStages), je, tid);

  float o[HD / 8][4];
#pragma unroll
  for (int d = 0; d < HD / 8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
  float m_run = -INFINITY, l_run = 0.0f;
  // kQ: o accumulates P·s_v·2^fv·code; fv (uniform over the warp) only decreases, so that
  // s_v·2^fv stays below 2^15 for every key seen (P <= 1: the f16 operand cannot overflow).
  int fv = kPow2Max;

  for (int t = 0; t < ntiles; ++t) {
    if constexpr (kTma) mbar_wait(&bars[t % kStages], static_cast<uint32_t>((t / kStages) & 1));
    else cp_async_wait<kStages - 2>();
    __syncthreads();  // tile t landed; every warp is done with the stage refilled below
    {
      const int tn = t + kStages - 1;
      if (tn < ntiles) load_tile(tn % kStages, tn);
      cp_async_commit();
      if (tn + 1 < ntiles) tr.resolve(src, rw, je, (tn + 1) & 1, tid);  // fetched last iteration
      if (tn + 2 < ntiles) tr.fetch(src, rw, tile_j0(tn + 2), je, tid);   // lands during this tile's math
    }
    const T* ks = kv_s + (t % kStages) * Cfg::kStageElems;
    const T* vs = ks + kBN * kLd;
    // kQ: the tile's K codes, V codes ([kBN][kCodeLd] bytes each) and their scales; the codes
    // become T (exactly) in registers, right before the MMAs that use them.
    const unsigned char* ck = nullptr;
    const float* sk = nullptr;
    if constexpr (kQ) {
      ck = code_k(t % kStages);
      sk = scale_k(t % kStages);
    }
    const uint64_t jw = js + static_cast<uint64_t>(t) * kBN + warp * 16;  // this warp's first key
    if (jw >= je) continue;

    float s[2][4];
#pragma unroll
    for (int nn = 0; nn < 2; ++nn) s[nn][0] = s[nn][1] = s[nn][2] = s[nn][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      const uint32_t a[4] = {qf[kk][0], 0u, qf[kk][1], 0u};
      if constexpr (kQ) {  // key warp·16 + nn·8 + g, dimensions kk·16 + 4·t4 .. + 3 (Q permuted alike)
#pragma unroll
        for (int nn = 0; nn < 2; ++nn) {
          const uint32_t w =
              *reinterpret_cast<const uint32_t*>(ck + (warp * 16 + nn * 8 + g) * Cfg::kCodeLd + kk * 16 + 4 * t4);
          uint32_t b0, b1;
          src.word_to_h(w, b0, b1);
          mma16816<MT>(s[nn], a, b0, b1);
        }
      } else {
        uint32_t bb[4];
        if constexpr (kTma)
          ldmatrix_x4(bb, tbase + (t % kStages) * 2 * kRegion +
                              swz(warp * 16 + (lane & 7) + (lane >> 4) * 8, kk * 2 + ((lane >> 3) & 1)));
        else
          ldmatrix_x4(bb, ks + (warp * 16 + (lane & 7) + (lane >> 4) * 8) * kLd + kk * 16 + ((lane >> 3) & 1) * 8);
        mma16816<T>(s[0], a, bb[0], bb[1]);
        mma16816<T>(s[1], a, bb[2], bb[3]);
      }
    }

    float mx = -INFINITY;
    const bool full = jw + 16 <= je;
#pragma unroll
    for (int nn = 0; nn < 2; ++nn) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float x = s[nn][r] * qscale;
        if constexpr (kQ) x *= sk[warp * 16 + nn * 8 + 2 * t4 + r];  // s_k of the key
        if (!full && jw + nn * 8 + 2 * t4 + r >= je) x = -INFINITY;
        s[nn][r] = x;
        mx = fmaxf(mx, x);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m_run, mx);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = exp2f(m_run - m_use);
    m_run = m_new;
    l_run *= alpha;
    float alpha_o = alpha;
    if constexpr (kQ) {  // the V exponent: the largest s_v of this warp's 16 keys (zero rows: 0)
      float vmax = 0.0f;
#pragma unroll
      for (int nn = 0; nn < 2; ++nn)
#pragma unroll
        for (int r = 0; r < 2; ++r) vmax = fmaxf(vmax, sk[kBN + warp * 16 + nn * 8 + 2 * t4 + r]);
      vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, 1));
      vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, 2));
      const int fv_t = pow2_exponent_for(vmax);
      if (fv_t < fv) {  // rare: o rescaled with the softmax correction
        alpha_o *= exp2f(static_cast<float>(fv_t - fv));
        fv = fv_t;
      }
    }
#pragma unroll
    for (int d = 0; d < HD / 8; ++d) {
      o[d][0] *= alpha_o;
      o[d][1] *= alpha_o;
    }
#pragma unroll
    for (int nn = 0; nn < 2; ++nn) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float pv = exp2f(s[nn][r] - m_use);
        s[nn][r] = pv;
        l_run += pv;
      }
    }
    if constexpr (kQ) {  // P·s_v·2^fv: the value rows are codes (l_run keeps the plain sum of P)
#pragma unroll
      for (int nn = 0; nn < 2; ++nn)
#pragma unroll
        for (int r = 0; r < 2; ++r) s[nn][r] *= ldexp_exact(sk[kBN + warp * 16 + nn * 8 + 2 * t4 + r], fv);
    }
    const uint32_t a[4] = {pack2<MT>(s[0][0], s[0][1]), 0u, pack2<MT>(s[1][0], s[1][1]), 0u};
    if constexpr (kQ) {
      // V codes by transposed 8x8 b16 matrices (a b16 = the codes of 2 adjacent dimensions):
      // lane (g, t4) receives keys 2·t4, +1 (r[0]) and +8, +9 (r[1]) at dimensions 16·db + 2g, +1;
      // a byte permute splits them into the B operands of dimension 16·db + 2g (o[2·db]) and
      // 16·db + 2g + 1 (o[2·db + 1]) — output columns permuted, undone at the merge below.
      const unsigned char* cv = ck + kBN * Cfg::kCodeLd;
#pragma unroll
      for (int db = 0; db < HD / 16; ++db) {
        uint32_t r[2];
        ldmatrix_x2_trans(r, cv + (warp * 16 + (lane & 15)) * Cfg::kCodeLd + db * 16);
        uint32_t b0, b1;
        src.word_to_h(__byte_perm(r[0], r[1], 0x6420u), b0, b1);
        mma16816<MT>(o[2 * db], a, b0, b1);
        src.word_to_h(__byte_perm(r[0], r[1], 0x7531u), b0, b1);
        mma16816<MT>(o[2 * db + 1], a, b0, b1);
      }
    } else if (!vt) {
#pragma unroll
      for (int dn = 0; dn < HD / 16; ++dn) {
        uint32_t bb[4];
        if constexpr (kTma)
          ldmatrix_x4_trans(bb, tbase + (t % kStages) * 2 * kRegion + kRegion +
                                    swz(warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, dn * 2 + (lane >> 4)));
        else
          ldmatrix_x4_trans(bb, vs + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kLd + dn * 16 + (lane >> 4) * 8);
        mma16816<T>(o[2 * dn], a, bb[0], bb[1]);
        mma16816<T>(o[2 * dn + 1], a, bb[2], bb[3]);
      }
    } else {
#pragma unroll
      for (int dn = 0; dn < HD / 16; ++dn) {  // rows = dimensions, columns = this warp's 16 keys
        uint32_t bb[4];
        ldmatrix_x4(bb, vs + (dn * 16 + (lane & 7) + (lane >> 4) * 8) * Cfg::kLdT + warp * 16 + ((lane >> 3) & 1) * 8);
        mma16816<T>(o[2 * dn], a, bb[0], bb[1]);
        mma16816<T>(o[2 * dn + 1], a, bb[2], bb[3]);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the stages are free: reuse them for the merge

  constexpr int kOwLd = Cfg::kOwLd;
  float* ow = reinterpret_cast<float*>(smem);  // [4 warps][8 heads][kOwLd]
  float* mw = ow + 4 * 8 * kOwLd;              // [4][8]
  float* lw = mw + 32;                         // [4][8]
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);
  if constexpr (kQ) {  // o[2·db] holds dimensions 16·db + 4·t4 (+2), o[2·db + 1] the odd ones between
    const float u = ldexp_exact(1.0f, -fv);  // undo 2^fv
#pragma unroll
    for (int db = 0; db < HD / 16; ++db)
      *reinterpret_cast<float4*>(ow + (warp * 8 + g) * kOwLd + db * 16 + 4 * t4) =
          make_float4(o[2 * db][0] * u, o[2 * db + 1][0] * u, o[2 * db][1] * u, o[2 * db + 1][1] * u);
  } else {
#pragma unroll
    for (int d = 0; d < HD / 8; ++d)
      *reinterpret_cast<float2*>(ow + (warp * 8 + g) * kOwLd + d * 8 + 2 * t4) = make_float2(o[d][0], o[d][1]);
  }
  if (t4 == 0) {
    mw[warp * 8 + g] = m_run;
    lw[warp * 8 + g] = l_run;
  }
  __syncthreads();

  for (int e = tid; e < ga * HD; e += Cfg::kThreads) {
    const int gg = e / HD, d = e % HD;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < 4; ++w) M = fmaxf(M, mw[w * 8 + gg]);
    const float Mu = M == -INFINITY ? 0.0f : M;
    float num = 0.0f, den = 0.0f;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const float c = exp2f(mw[w * 8 + gg] - Mu);
      num = fmaf(c, ow[(w * 8 + gg) * kOwLd + d], num);
      den = fmaf(c, lw[w * 8 + gg], den);
    }
    const float inv = den == 0.0f ? 0.0f : 1.0f / den;  // empty visible set: +0.0; NaN propagates
    const uint64_t h = h0 + gg;
    if (splits == 1) {
      src.store(rw, h, d, num * inv);
      if (d == 0) src.lse(rw, h, den == 0.0f ? -INFINITY : Mu + log2f(den));
    } else {
      const uint64_t slot = (row * H + h) * splits + split;
      part_o[slot * HD + d] = num * inv;
      if (d == 0) part_lse[slot] = den == 0.0f ? -INFINITY : Mu + log2f(den);
    }
  }
  if (splits > 1)
    merge_splits_if_last<T, HD>(src, rw, splits, row, h0, ga, part_o, part_lse,
                                counters + cta.group, reinterpret_cast<float*>(smem));
}

// Launches the decode kernel of T over `rows` grid rows of `src` (grid rows × splits, KV heads
// × head chunks): tensor cores for F16/BF16, the SIMT kernel for F32.
template <class T, int HD, class Src>
Status launch_decode_src(const Src& src, uint64_t rows, uint32_t splits, float* part_o, float* part_lse,
                         uint32_t* counters, cudaStream_t stream, const char* what,
                         const KvMaps* maps = nullptr) noexcept {
  const uint64_t group = src.H / src.nkv;
  const uint32_t head_chunks = static_cast<uint32_t>((group + kDecodeHeadChunk - 1) / kDecodeHeadChunk);
  const uint64_t gx = rows * splits, gy = src.nkv * head_chunks;
  if (gx > 0x7FFFFFFFull / gy)  // one flat grid dimension (DecodeCta)
    return make_status(FERRUM_STATUS_UNSUPPORTED, "%s: decode grid %llu x %llu exceeds the CUDA limits", what,
                       static_cast<unsigned long long>(gx), static_cast<unsigned long long>(gy));
  if constexpr (!std::is_same_v<T, float>) {
    using Cfg = DecodeMmaCfg<T, HD, Src::kMayVt, Src::kCodes>;
    auto kernel = flash_decode_mma_kernel<T, HD, Src, false>;
    if constexpr (!Src::kCodes && !Src::kMayVt && HD % 64 == 0 && HasFlatRows<Src>::value) {
      // Only code built for sm_90 has the tensor copies (an sm_80 build JIT-compiled on a Hopper
      // card would trap): the kernel's PTX version says which one the device runs.
      static const bool sm90_code = [] {
        cudaFuncAttributes fa{};
        const bool ok = cudaFuncGetAttributes(&fa, flash_decode_mma_kernel<T, HD, Src, true>) == cudaSuccess &&
                        fa.ptxVersion >= 90;
        (void)cudaGetLastError();
        return ok;
      }();
      if (maps != nullptr && sm90_code) kernel = flash_decode_mma_kernel<T, HD, Src, true>;
    }
    static const KvMaps kNoMaps{};
    FERRUM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(Cfg::kSmemBytes)));
    kernel<<<static_cast<unsigned>(gx * gy), Cfg::kThreads, Cfg::kSmemBytes, stream>>>(
        src, splits, head_chunks, part_o, part_lse, counters, maps != nullptr ? *maps : kNoMaps);
    FERRUM_CUDA_LAUNCH_CHECK("flash_decode_mma_kernel");
  } else {
    using Cfg = DecodeCfg<T, HD>;
    auto kernel = flash_decode_kernel<T, HD, Src>;
    FERRUM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(Cfg::kSmemBytes)));
    kernel<<<static_cast<unsigned>(gx * gy), Cfg::kThreads, Cfg::kSmemBytes, stream>>>(
        src, splits, head_chunks, part_o, part_lse, counters);
    FERRUM_CUDA_LAUNCH_CHECK("flash_decode_kernel");
  }
  return ok_status();
}

template <class T, int HD>
Status launch_decode(const FlashParams& p, uint32_t splits, float* part_o, float* part_lse,
                     uint32_t* counters, cudaStream_t stream) noexcept {
  // sm_90 tensor copies for the one-allocation caches [batch, nkv, S, HD] (not the per-item forms),
  // long splits only unless FERRUM_CUDA_DECODE_TMA says otherwise
  KvMaps maps;
  const bool tma = !std::is_same_v<T, float> && HD % 64 == 0 && p.len_source != LenSource::per_item &&
                   want_decode_tma(decode_key_bound(p), splits) &&
                   make_kv_maps(maps, p.k, p.v, HD, 1, p.batch * p.num_kv_heads * p.S);
  return launch_decode_src<T, HD>(FlashSrc<T, HD>(p), p.batch * p.q_len, splits, part_o, part_lse, counters, stream,
                                  "flash_attention", tma ? &maps : nullptr);
}

}  // namespace ferrum::cuda::attn
