// ferrum CPU plugin — paged KV writers and attention (docs/spec.md §0.9–§0.11, §6) and the batched
// per-cache decode kernels (§5.1).
//
// Framework-free: plain pointers, geometry structs and work lists the glue layer builds. All
// device-style indices (block tables, lengths) are read through IdxView, which bounds-checks
// every access; no kernel reads or writes outside the buffers described by its arguments.
// T in {float, f16, bf16} is the activation type; C in {T, float} the RoPE table type.
#ifndef FERRUM_CPU_KERNELS_PAGED_HPP
#define FERRUM_CPU_KERNELS_PAGED_HPP

#include <cstdint>

#include <ferrum/common/dtype.hpp>

namespace ferrum::cpu {

// A device index buffer (U32 or I32) of n elements. at(i) is the value as int64_t, or -1 when i
// is outside the buffer or the value is negative (out of range, §0.11).
struct IdxView {
  const void* data = nullptr;
  bool is_i32 = false;
  uint64_t n = 0;
  int64_t at(uint64_t i) const {
    if (i >= n || !data) return -1;
    if (is_i32) {
      const int32_t v = static_cast<const int32_t*>(data)[i];
      return v < 0 ? -1 : v;
    }
    return static_cast<int64_t>(static_cast<const uint32_t*>(data)[i]);
  }
};

enum class PagedLayout { ferrum, vllm };

// Geometry of a K/V pool pair (§0.10). num_blocks = pool elements / (bs·nkv·D), >= 1; x is the
// vLLM vector width (16 / sizeof(T)), unused for the ferrum layout.
struct PagedPool {
  PagedLayout layout = PagedLayout::ferrum;
  uint64_t num_blocks = 0, block_size = 0, nkv = 0, head_dim = 0, x = 1;
  // Block tables: row s at s·stride, `stride` = max_num_blocks_per_seq.
  IdxView block_tables;
  uint64_t stride = 0;
  // Physical block of position j of sequence s, or -1 when out of range.
  int64_t block_of(uint64_t s, uint64_t j) const {
    const uint64_t lb = j / block_size;
    if (lb >= stride) return -1;
    const int64_t b = block_tables.at(s * stride + lb);
    return (b < 0 || static_cast<uint64_t>(b) >= num_blocks) ? -1 : b;
  }
};

// One query row of a paged attention call: token-major row `row` of q/out, sequence `seq`,
// absolute position `pos` (< 0: zero row, LSE −∞), final KV length `kv_len`.
struct PagedQuery {
  uint64_t row;
  uint64_t seq;
  int64_t pos;
  uint64_t kv_len;
};

// out[row, h, :] = ATTN over 𝒱(pos, kv_len) (causal, sliding_window) for every query of the list
// and every head h < num_heads, keys/values gathered through pool.block_tables (§6.2). A key
// position whose block is out of range is skipped (its rows are unspecified by docs/spec.md).
// lse (may be null) receives lse[h·lse_stride + row] = m + ln Z, −∞ for an empty visible set.
// q, out: [*, num_heads, head_dim] token-major. Parallel over (query, KV head).
template <class T>
void paged_attention(const T* q, const T* k_pool, const T* v_pool, T* out, float* lse, uint64_t lse_stride,
                     const PagedQuery* queries, uint64_t n_queries, const PagedPool& pool, uint64_t num_heads,
                     float scale, uint64_t sliding_window);

// One token of a paged writer: packed row `src_row` of qkv, q_out row `dst_row`, RoPE position
// `pos`, KV slot `slot` of sequence `seq` (its block-table row). write_q / write_kv select the
// outputs (a position past the tables writes a zero q row and no KV; an out-of-range slot skips KV).
struct PagedToken {
  uint64_t src_row, dst_row, pos, slot, seq;
  bool rope_ok;
};

// q_out[dst_row, h] = transform(Q_h, pos) (q_norm_w), K row transform(K_h, pos) (k_norm_w) and V
// row V_h to the pool slot of (seq, slot) (§6.1). qkv rows are (q_heads + 2·kv_heads)·D wide.
template <class T, class C>
void paged_write(const T* qkv, const T* q_norm_w, const T* k_norm_w, const C* cos, const C* sin, T* q_out,
                 T* k_pool, T* v_pool, const PagedToken* tokens, uint64_t n_tokens, const PagedPool& pool,
                 uint64_t q_heads, float eps, int mode);

// §5.1: caches[i][h, cache_lens[i], :] = new_data[i, h, :]; lens >= capacity (or negative) skip.
template <class T>
void kv_append_batched_per_cache(T* const* caches, const T* new_data, IdxView cache_lens, uint64_t capacity,
                                 uint64_t m, uint64_t nkv, uint64_t hd);

// §5.1: out[i, h, :] = ATTN of the decode query q[i, h, :] at p = L − 1, L = min(kv_lens[i],
// capacity), over k_caches[i] / v_caches[i] ([nkv, capacity, hd]); L = 0 gives a zero row.
template <class T>
void flash_attention_batched_per_cache(const T* q, const T* const* k_caches, const T* const* v_caches, IdxView kv_lens,
                                       T* out, uint64_t m, uint64_t nq, uint64_t nkv, uint64_t hd, float scale,
                                       uint64_t capacity, uint64_t sliding_window);

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_PAGED_HPP
