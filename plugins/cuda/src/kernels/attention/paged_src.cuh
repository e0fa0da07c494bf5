// ferrum CUDA plugin — the paged KV source of the decode kernels (flash_decode.cuh's Src
// interface) and launch_paged_decode. See paged.hpp for the row mappings.
//
// Every device value is bounds-checked here: lengths and sequence ids come from buffers the
// glue sized for num_seqs (+1) entries, cu_seqlens entries must describe a consistent sequence
// (0 <= b <= e <= total_q) or the sequence is skipped, L is clamped to the table's capacity, and
// a block id >= num_blocks (or a negative I32) reads a zero K/V chunk instead of pool memory.
#pragma once

#include "flash_decode.cuh"
#include "flash_prefill.cuh"
#include "paged.hpp"

namespace ferrum::cuda::attn {

// Element i of an index buffer (U32 or I32) as int64_t; a negative I32 gives -1.
__device__ __forceinline__ int64_t paged_idx(const void* b, bool i32, uint64_t i) {
  if (i32) {
    const int32_t v = static_cast<const int32_t*>(b)[i];
    return v < 0 ? -1 : v;
  }
  return static_cast<int64_t>(static_cast<const uint32_t*>(b)[i]);
}

// kVllm: the pools are in the vLLM layout (PagedParams::vllm, decided per launch), so the
// ferrum-layout instantiation carries none of the vLLM address arithmetic in its copy loops.
template <class T, int HD, bool kVllm>
struct PagedSrc {
  static constexpr bool kMayVt = kVllm;  // the vLLM V layout is staged by dimension
  static constexpr bool kCodes = false;
  PagedParams p;
  uint64_t H, nkv, window;
  float scale;
  uint64_t cap;  // positions per sequence the table can address (bt_stride · block_size)
  uint64_t blk_elems;  // elements per block of a pool (block_size · nkv · HD)
  bool fast32;         // cap and block_size below 2^31: 32-bit key indices, multiply-shift division
  FastDiv32 bs_div;    // j / block_size (fast32)
  explicit PagedSrc(const PagedParams& pp)
      : p(pp), H(pp.num_heads), nkv(pp.num_kv_heads), window(pp.window), scale(pp.scale),
        cap(pp.bt_stride > UINT64_MAX / pp.block_size ? UINT64_MAX : pp.bt_stride * pp.block_size),
        blk_elems(pp.block_size * pp.num_kv_heads * HD),  // the glue checked this product
        fast32(cap < (uint64_t{1} << 31) && pp.block_size < (uint64_t{1} << 31)) {
    if (fast32) bs_div = FastDiv32(pp.block_size);
  }

  static constexpr int kE = 16 / static_cast<int>(sizeof(T));  // elements per 16-byte chunk (= vLLM x)

  struct Row {
    uint64_t seq, g, L, kvh;
    int64_t pos;         // < 0: zero row
    const uint32_t* bt;  // the sequence's block-table row (4-byte entries, U32 or I32 bits)
    uint64_t head_off;   // the KV head's offset inside a block (elements)
  };
  // Sets the per-sequence / per-head fields of r from r.seq and r.kvh.
  __device__ __forceinline__ void bind(Row& r) const {
    r.bt = static_cast<const uint32_t*>(p.block_tables) + r.seq * p.bt_stride;
    r.head_off = r.kvh * HD * (kVllm ? p.block_size : 1);
  }

  // Sequence s's cu range [b, e) if consistent.
  __device__ __forceinline__ bool seq_range(uint64_t s, int64_t& b, int64_t& e) const {
    b = paged_idx(p.cu, p.cu_i32, s);
    e = paged_idx(p.cu, p.cu_i32, s + 1);
    return b >= 0 && e >= b && static_cast<uint64_t>(e) <= p.total_q;
  }

  __device__ __forceinline__ bool resolve(uint64_t row, uint64_t kvh, Row& r) const {
    r.kvh = kvh;
    int64_t len = 0;
    if (p.rows == PagedRows::uniform) {
      const uint64_t s = row / p.q_len, i = row % p.q_len;
      len = paged_idx(p.lens, p.lens_i32, s);
      r.seq = s;
      r.g = row;
      r.pos = len < 0 ? -1 : len - static_cast<int64_t>(p.q_len) + static_cast<int64_t>(i);
    } else {
      uint64_t s = 0;
      int64_t b = 0, e = 0, j = 0;
      if (p.rows == PagedRows::tiled) {
        const uint64_t t = row / 4;
        const int64_t ts = paged_idx(p.tile_seqs, p.tile_seqs_i32, t);
        const int64_t st = paged_idx(p.tile_starts, p.tile_starts_i32, t);
        if (ts < 0 || static_cast<uint64_t>(ts) >= p.num_seqs || st < 0) return false;
        s = static_cast<uint64_t>(ts);
        if (!seq_range(s, b, e)) return false;
        j = st + static_cast<int64_t>(row % 4);
        if (j >= e - b) return false;
      } else {  // varlen / fa2: the sequence holding token g = row (binary search over cu)
        uint64_t lo = 0, hi = p.num_seqs;
        while (hi - lo > 1) {
          const uint64_t mid = lo + (hi - lo) / 2;
          const int64_t c = paged_idx(p.cu, p.cu_i32, mid);
          if (c >= 0 && static_cast<uint64_t>(c) <= row) lo = mid; else hi = mid;
        }
        s = lo;
        if (!seq_range(s, b, e) || row < static_cast<uint64_t>(b) || row >= static_cast<uint64_t>(e)) return false;
        j = static_cast<int64_t>(row) - b;
      }
      const int64_t base = paged_idx(p.lens, p.lens_i32, s);
      if (base < 0) return false;  // inconsistent sequence: not written (as on the CPU)
      const int64_t qn = e - b;
      if (static_cast<uint64_t>(qn) > p.decode_max_q) return false;  // the prefill launch's row
      r.seq = s;
      r.g = static_cast<uint64_t>(b + j);
      if (p.rows == PagedRows::fa2) {
        len = base;
        r.pos = base - qn + j;
      } else {
        len = base + qn;
        r.pos = base + j;
      }
    }
    r.L = len < 0 ? 0 : (static_cast<uint64_t>(len) < cap ? static_cast<uint64_t>(len) : cap);
    bind(r);
    return true;
  }
  __device__ __forceinline__ void range(const Row& r, uint64_t& lo, uint64_t& hi) const {
    if (r.pos < 0) {
      lo = hi = 0;
      return;
    }
    visible_range(static_cast<uint64_t>(r.pos), r.L, true, window, lo, hi);
  }
  __device__ __forceinline__ const T* q(const Row& r, uint64_t h) const {
    return static_cast<const T*>(p.q) + (r.g * H + h) * HD;
  }
  __device__ __forceinline__ float q_at(const Row& r, uint64_t h, int d) const { return to_f32(q(r, h)[d]); }
  __device__ __forceinline__ void store(const Row& r, uint64_t h, int d, float v) const {
    static_cast<T*>(p.out)[(r.g * H + h) * HD + d] = from_f32<T>(v);
  }
  __device__ __forceinline__ void lse_row(uint64_t g, uint64_t h, float lse_log2) const {
    if (p.lse) p.lse[h * p.lse_stride + g] = lse_log2 == -INFINITY ? -INFINITY : lse_log2 * kLn2;
  }
  __device__ __forceinline__ void lse(const Row& r, uint64_t h, float lse_log2) const { lse_row(r.g, h, lse_log2); }

  // Prefill tile: sequence s = by (uniform, varlen or FA2 rows; tiles are decode-only), tile
  // index from the last (of prefill_q_tiles) and head = bx. False for a tile past the
  // sequence's queries, a sequence the decode launch serves, or an inconsistent sequence.
  __device__ __forceinline__ bool prefill_tile(uint64_t bx, uint64_t s, int bm, PrefillTile<Row, T>& t) const {
    int64_t b, qn, len, p_first;
    if (p.rows == PagedRows::uniform) {
      b = static_cast<int64_t>(s * p.q_len);
      qn = static_cast<int64_t>(p.q_len);
      len = paged_idx(p.lens, p.lens_i32, s);
      p_first = len < 0 ? INT64_MIN / 2 : len - qn;  // a negative length: zero rows
    } else {
      int64_t e;
      if (!seq_range(s, b, e)) return false;
      const int64_t base = paged_idx(p.lens, p.lens_i32, s);
      if (base < 0) return false;
      qn = e - b;
      if (static_cast<uint64_t>(qn) <= p.decode_max_q) return false;  // the decode launch's rows
      len = p.rows == PagedRows::fa2 ? base : base + qn;
      p_first = p.rows == PagedRows::fa2 ? base - qn : base;
    }
    const uint64_t i0 = (p.prefill_q_tiles - 1 - bx / H) * bm;
    if (i0 >= static_cast<uint64_t>(qn)) return false;
    t.h = bx % H;
    t.row.kvh = t.h / (H / nkv);
    t.row.seq = s;
    bind(t.row);
    t.g0 = static_cast<uint64_t>(b) + i0;
    t.row.g = t.g0;
    t.L = len < 0 ? 0 : (static_cast<uint64_t>(len) < cap ? static_cast<uint64_t>(len) : cap);
    t.row.L = t.L;
    t.pos0 = p_first + static_cast<int64_t>(i0);
    t.row.pos = t.pos0;
    t.nq = static_cast<int>(static_cast<uint64_t>(qn) - i0 < static_cast<uint64_t>(bm) ? static_cast<uint64_t>(qn) - i0 : bm);
    t.causal = true;
    t.stride = H * HD;
    t.q0 = q(t.row, t.h);
    t.o0 = static_cast<T*>(p.out) + (t.g0 * H + t.h) * HD;
    return true;
  }
  // Key location (TileRows): the raw 4-byte block-table entry of key j's block (U32 or I32
  // bits) and the key's offset o in it; o = kNoKey when the logical block is past the table.
  // With fast32 (every key index and block size below 2^31, decided on the host) the block
  // index comes from a multiply-shift division; otherwise o is recomputed by key_rows.
  static constexpr uint32_t kNoKey = 0xffffffffu;
  // TileRows: in the ferrum layout a key's K (V) row is contiguous at pool + ko · kElemBytes.
  static constexpr bool kFlatRows = !kVllm;
  static constexpr int kElemBytes = sizeof(T), kRowBytes = HD * sizeof(T);
  __device__ __forceinline__ const unsigned char* k_base(const Row&) const {
    return static_cast<const unsigned char*>(p.k_pool);
  }
  __device__ __forceinline__ const unsigned char* v_base(const Row&) const {
    return static_cast<const unsigned char*>(p.v_pool);
  }
  struct Loc {
    uint32_t raw, o;
  };
  __device__ __forceinline__ Loc locate(const Row& r, uint64_t j) const {
    if (fast32) {
      const uint32_t j32 = static_cast<uint32_t>(j);
      const uint32_t lb = bs_div.div(j32);
      if (lb >= p.bt_stride) return {0, kNoKey};
      return {__ldg(r.bt + lb), j32 - lb * static_cast<uint32_t>(p.block_size)};
    }
    const uint64_t lb = j / p.block_size;
    if (lb >= p.bt_stride) return {0, kNoKey};
    return {__ldg(r.bt + lb), 0};
  }
  // Element offsets of key j's K row and V row (chunk 0 of the ferrum row; the vLLM K position
  // o of its x-group 0 and the V element (d = 0, o)); false when its block is out of range
  // (logical block past the table, a negative I32 id, an id >= num_blocks).
  __device__ __forceinline__ bool key_rows(const Row& r, uint64_t j, Loc l, uint64_t& ko, uint64_t& vo) const {
    if (l.o == kNoKey) return false;
    const int64_t blk = p.bt_i32 ? static_cast<int64_t>(static_cast<int32_t>(l.raw)) : static_cast<int64_t>(l.raw);
    if (blk < 0 || static_cast<uint64_t>(blk) >= p.num_blocks) return false;
    const uint64_t o = fast32 ? l.o : j % p.block_size;
    const uint64_t base = static_cast<uint64_t>(blk) * blk_elems + r.head_off;
    if constexpr (!kVllm) {
      ko = vo = base + o * (nkv * HD);
    } else {
      ko = base + o * kE;
      vo = base + o;
    }
    return true;
  }
  __device__ __forceinline__ void copy_k(void* smem, const Row&, uint64_t ko, int chunk) const {
    const T* k = static_cast<const T*>(p.k_pool) + ko;
    // vLLM [blk, nkv, HD/x, bs, x]: chunk = x-group d / x, block_size·x elements apart
    if constexpr (kVllm) cp_async16(smem, k + static_cast<uint64_t>(chunk) * (p.block_size * kE));
    else cp_async16(smem, k + chunk * kE);
  }
  __device__ __forceinline__ void copy_v(void* smem, const Row&, uint64_t vo, int chunk) const {
    const T* v = static_cast<const T*>(p.v_pool) + vo;
    if constexpr (!kVllm) {
      cp_async16(smem, v + chunk * kE);
      return;
    }
    // [blk, nkv, HD, bs]: the chunk's kE dims of position o are block_size elements apart.
    const T* base = v + static_cast<uint64_t>(chunk) * kE * p.block_size;
    uint4 rawv;
    T* e = reinterpret_cast<T*>(&rawv);
#pragma unroll
    for (int i = 0; i < kE; ++i) e[i] = base[static_cast<uint64_t>(i) * p.block_size];
    *reinterpret_cast<uint4*>(smem) = rawv;
  }
  // The SIMT (F32) decode kernel copies chunk by chunk, without TileRows.
  __device__ __forceinline__ void load_k(void* smem, const Row& r, uint64_t j, int chunk) const {
    uint64_t ko, vo;
    if (key_rows(r, j, locate(r, j), ko, vo)) copy_k(smem, r, ko, chunk);
    else *reinterpret_cast<uint4*>(smem) = make_uint4(0, 0, 0, 0);
  }
  __device__ __forceinline__ void load_v(void* smem, const Row& r, uint64_t j, int chunk) const {
    uint64_t ko, vo;
    if (key_rows(r, j, locate(r, j), ko, vo)) copy_v(smem, r, vo, chunk);
    else *reinterpret_cast<uint4*>(smem) = make_uint4(0, 0, 0, 0);
  }
  // The tensor-core decode stages the vLLM V layout by dimension (load_vt_at) instead of
  // gathering rows element by element (copy_v).
  __device__ __forceinline__ bool v_by_dim(const Row&) const { return kVllm; }
  // Keys j8 .. j8 + 7 of dimension d of the vLLM V pool (8 elements = 16 bytes; `valid` keys
  // from j8 are in the stage, the rest are zeros): one 16-byte copy when the 8 keys are one
  // aligned run of a block (l = locate(r, j8), looked up ahead), else element by element (an
  // out-of-range block reads zeros).
  __device__ __forceinline__ void load_vt_at(void* smem, const Row& r, uint64_t j8, int d, int valid, Loc l) const {
    const T* v = static_cast<const T*>(p.v_pool);
    const uint64_t bs = p.block_size;
    uint64_t ko, vo;
    if (kE == 8 && valid >= 8 && bs % 8 == 0 && j8 % 8 == 0) {
      if (key_rows(r, j8, l, ko, vo)) cp_async16(smem, v + vo + static_cast<uint64_t>(d) * bs);
      else *reinterpret_cast<uint4*>(smem) = make_uint4(0, 0, 0, 0);
      return;
    }
    uint4 rawv = make_uint4(0, 0, 0, 0);
    T* e = reinterpret_cast<T*>(&rawv);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (i >= valid) break;
      if (key_rows(r, j8 + i, locate(r, j8 + i), ko, vo)) e[i] = v[vo + static_cast<uint64_t>(d) * bs];
    }
    *reinterpret_cast<uint4*>(smem) = rawv;
  }
};

template <class T, int HD>
Status launch_paged_prefill(const PagedParams& p, cudaStream_t stream) noexcept {
  if (p.vllm)
    return launch_prefill_src<T, HD>(PagedSrc<T, HD, true>(p), p.prefill_q_tiles, p.num_seqs, stream, "paged attention");
  return launch_prefill_src<T, HD>(PagedSrc<T, HD, false>(p), p.prefill_q_tiles, p.num_seqs, stream, "paged attention");
}

template <class T, int HD>
Status launch_paged_decode(const PagedParams& p, uint64_t rows, uint32_t splits, float* part_o, float* part_lse,
                           uint32_t* counters, cudaStream_t stream) noexcept {
  if (p.vllm)
    return launch_decode_src<T, HD>(PagedSrc<T, HD, true>(p), rows, splits, part_o, part_lse, counters, stream,
                                    "paged attention");
  // sm_90 tensor copies of whole 16-key boxes (one box inside one block: block_size % 16 == 0)
  // (long splits only unless FERRUM_CUDA_DECODE_TMA says otherwise)
  KvMaps maps;
  const bool tma = !std::is_same_v<T, float> && HD % 64 == 0 && p.block_size % 16 == 0 &&
                   want_decode_tma(paged_key_bound(p), splits) &&
                   p.num_blocks <= UINT64_MAX / p.block_size &&
                   make_kv_maps(maps, p.k_pool, p.v_pool, HD, p.num_kv_heads, p.num_blocks * p.block_size);
  return launch_decode_src<T, HD>(PagedSrc<T, HD, false>(p), rows, splits, part_o, part_lse, counters, stream,
                                  "paged attention", tma ? &maps : nullptr);
}

}  // namespace ferrum::cuda::attn
