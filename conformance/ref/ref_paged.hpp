// ferrum test support — float64 references of the paged-KV family (docs/spec.md §0.9, §0.10, §6) and of
// the batched per-cache decode ops (§5.1).
//
// Written straight from the docs/spec.md formulas, independent of every plugin; conventions as in
// reference.hpp (device index buffers are std::vector<int64_t>; misuse docs/spec.md calls
// INVALID_ARGUMENT throws std::invalid_argument; a device value whose result docs/spec.md leaves
// unspecified throws std::out_of_range, so a test never checks such rows).
//
// Pools are vectors holding the whole [pool] buffer. `layout` selects the ferrum layout
// `[num_blocks, bs, nkv, D]` or the vLLM one (K `[num_blocks, nkv, D/x, bs, x]`, V
// `[num_blocks, nkv, D, bs]`); `x` = 16 / element size of the activation dtype (vLLM only).
// Outputs the op does not write keep the values passed in (pass the poison where it matters).
#pragma once

#include "reference.hpp"

namespace ferrum::ref {

enum class PagedLayout { ferrum, vllm };

namespace paged {

// x of the vLLM layout for an activation dtype (§0.10).
inline uint64_t vllm_x(int32_t dtype) { return 16 / ferrum::testing::dtype_size(dtype); }

struct Pool {
  PagedLayout layout = PagedLayout::ferrum;
  uint64_t bs = 0, nkv = 0, D = 0, x = 0, num_blocks = 0;

  Pool(PagedLayout l, uint64_t pool_elems, uint64_t block_size, uint64_t num_kv_heads, uint64_t head_dim,
       uint64_t vx, const char* op)
      : layout(l), bs(block_size), nkv(num_kv_heads), D(head_dim), x(vx) {
    detail::check(bs >= 1, op, "block_size = 0");
    detail::check(nkv >= 1 && D >= 1, op, "num_kv_heads and head_dim must be >= 1");
    num_blocks = pool_elems / (bs * nkv * D);
    detail::check(num_blocks >= 1, op, "pool holds no whole block");
    if (layout == PagedLayout::vllm) detail::check(x >= 1 && D % x == 0, op, "vLLM layout needs head_dim % x == 0");
  }
  // Element index of (blk, o, h, d) in the K and the V pool (§0.10).
  uint64_t k_at(uint64_t blk, uint64_t o, uint64_t h, uint64_t d) const {
    if (layout == PagedLayout::ferrum) return ((blk * bs + o) * nkv + h) * D + d;
    return blk * (nkv * D * bs) + h * (D * bs) + (d / x) * (bs * x) + o * x + d % x;
  }
  uint64_t v_at(uint64_t blk, uint64_t o, uint64_t h, uint64_t d) const {
    if (layout == PagedLayout::ferrum) return ((blk * bs + o) * nkv + h) * D + d;
    return blk * (nkv * D * bs) + h * (D * bs) + d * bs + o;
  }
};

// Physical block of position j of sequence s, or -1 when out of range (§0.11: a position
// >= mbps·bs, a negative id, an id >= num_blocks).
inline int64_t block_of(const std::vector<int64_t>& block_tables, uint64_t s, uint64_t j, uint64_t mbps,
                        const Pool& pool) {
  const uint64_t lb = j / pool.bs;
  if (lb >= mbps) return -1;
  const int64_t blk = block_tables.at(s * mbps + lb);
  if (blk < 0 || static_cast<uint64_t>(blk) >= pool.num_blocks) return -1;
  return blk;
}

// One query row: ATTN over 𝒱(p, L) (causal) with keys/values gathered through the block table.
// p < 0 gives a zero row and LSE −∞. Throws out_of_range if a visible key is out of range.
inline double attend(const double* q, double* out, int64_t p, uint64_t L, uint64_t s, uint64_t h, uint64_t nh,
                     const vec& k_pool, const vec& v_pool, const std::vector<int64_t>& block_tables, uint64_t mbps,
                     const Pool& pool, double sigma, uint64_t window) {
  const uint64_t D = pool.D;
  if (p < 0) {
    for (uint64_t d = 0; d < D; ++d) out[d] = 0.0;
    return -std::numeric_limits<double>::infinity();
  }
  const uint64_t kvh = kv_head_of(h, nh, pool.nkv);
  vec kr(D), vr(D);
  auto gather = [&](uint64_t j, bool key) -> const double* {
    const int64_t blk = block_of(block_tables, s, j, mbps, pool);
    if (blk < 0) throw std::out_of_range("paged attention: key position " + std::to_string(j) + " is out of range");
    const uint64_t o = j % pool.bs;
    vec& r = key ? kr : vr;
    for (uint64_t d = 0; d < D; ++d)
      r[d] = key ? k_pool.at(pool.k_at(blk, o, kvh, d)) : v_pool.at(pool.v_at(blk, o, kvh, d));
    return r.data();
  };
  return attention_row(q, D, D, sigma, static_cast<uint64_t>(p), L, 1, window,
                       [&](uint64_t j) { return gather(j, true); }, [&](uint64_t j) { return gather(j, false); }, out);
}

inline void check_attention(const char* op, uint64_t nh, uint64_t nkv, uint64_t hd, float scale) {
  detail::check(nh >= 1 && nkv >= 1 && nh % nkv == 0, op, "num_heads must be a positive multiple of num_kv_heads");
  detail::check(hd >= 1, op, "head_dim = 0");
  detail::check(std::isfinite(scale), op, "non-finite scale");
}

inline uint64_t idx_at(const std::vector<int64_t>& v, uint64_t i, const char* what) {
  const int64_t x = v.at(i);
  if (x < 0) throw std::out_of_range(std::string(what) + " holds a negative value");
  return static_cast<uint64_t>(x);
}

}  // namespace paged

// ================================================================= §6.1 writers

// One sequence: token t at RoPE position pos_offset + t goes to KV slot cache_len + t.
// `qkv_off` / `q_out_off` are the byte offsets already divided by the element size.
inline void split_qkv_norm_rope_into_paged_cache(
    const vec& qkv, uint64_t qkv_off, const vec& q_norm_w, const vec& k_norm_w, const vec& cos, const vec& sin,
    vec& q_out, uint64_t q_out_off, vec& cache_k, vec& cache_v, const std::vector<int64_t>& block_table,
    uint64_t tokens, uint64_t q_heads, uint64_t kv_heads, uint64_t head_dim, uint64_t pos_offset, float eps,
    int32_t qk_mode, uint64_t cache_len, uint64_t block_size, uint64_t max_num_blocks_per_seq,
    PagedLayout layout = PagedLayout::ferrum, uint64_t x = 0) {
  const char* op = "split_qkv_norm_rope_into_paged_cache";
  check_qk_mode(op, qk_mode, head_dim, eps, qk_mode == 1 ? q_norm_w : vec(head_dim, 1.0), cos, sin);
  if (tokens == 0) return;
  const paged::Pool pool(layout, std::min(cache_k.size(), cache_v.size()), block_size, kv_heads, head_dim, x, op);
  detail::check(cache_len + tokens <= max_num_blocks_per_seq * block_size, op,
                "cache_len + tokens > max_num_blocks_per_seq·block_size");
  if (qk_mode != 0)
    detail::check(pos_offset + tokens <= std::min(rope_rows(cos, head_dim), rope_rows(sin, head_dim)), op,
                  "pos_offset + tokens > table rows");
  const uint64_t D = head_dim, W = (q_heads + 2 * kv_heads) * D;
  detail::need(qkv, qkv_off + tokens * W, op, "qkv");
  detail::fit(q_out, q_out_off + tokens * q_heads * D);
  for (uint64_t t = 0; t < tokens; ++t) {
    const double* row = &qkv[qkv_off + t * W];
    const uint64_t p = pos_offset + t, slot = cache_len + t;
    for (uint64_t h = 0; h < q_heads; ++h)
      qk_transform(row + h * D, &q_out[q_out_off + (t * q_heads + h) * D], D, p, q_norm_w, cos, sin, eps, qk_mode);
    const int64_t blk = paged::block_of(block_table, 0, slot, max_num_blocks_per_seq, pool);
    if (blk < 0) continue;  // out-of-range block id: the row is skipped (§6)
    vec kr(D);
    for (uint64_t h = 0; h < kv_heads; ++h) {
      qk_transform(row + (q_heads + h) * D, kr.data(), D, p, k_norm_w, cos, sin, eps, qk_mode);
      for (uint64_t d = 0; d < D; ++d) {
        cache_k[pool.k_at(blk, slot % block_size, h, d)] = kr[d];
        cache_v[pool.v_at(blk, slot % block_size, h, d)] = row[(q_heads + kv_heads + h) * D + d];
      }
    }
  }
}

// Varlen: token g = cu[s] + j at position p = pos_offsets[s] + j (RoPE and KV slot of sequence s).
inline void split_qkv_norm_rope_into_paged_cache_varlen(
    const vec& qkv, const vec& q_norm_w, const vec& k_norm_w, const vec& cos, const vec& sin, vec& q_out,
    vec& cache_k, vec& cache_v, const std::vector<int64_t>& cu_seqlens_q, const std::vector<int64_t>& pos_offsets,
    const std::vector<int64_t>& block_tables, uint64_t num_seqs, uint64_t m_total, uint64_t q_heads,
    uint64_t kv_heads, uint64_t head_dim, float eps, int32_t qk_mode, uint64_t block_size,
    uint64_t max_blocks_per_seq, PagedLayout layout = PagedLayout::ferrum, uint64_t x = 0) {
  const char* op = "split_qkv_norm_rope_into_paged_cache_varlen";
  check_qk_mode(op, qk_mode, head_dim, eps, qk_mode == 1 ? q_norm_w : vec(head_dim, 1.0), cos, sin);
  if (num_seqs == 0) return;
  const paged::Pool pool(layout, std::min(cache_k.size(), cache_v.size()), block_size, kv_heads, head_dim, x, op);
  const uint64_t D = head_dim, W = (q_heads + 2 * kv_heads) * D;
  detail::need(qkv, m_total * W, op, "qkv");
  detail::fit(q_out, m_total * q_heads * D);
  const uint64_t rows = qk_mode == 0 ? UINT64_MAX : std::min(rope_rows(cos, head_dim), rope_rows(sin, head_dim));
  for (uint64_t s = 0; s < num_seqs; ++s) {
    const uint64_t b = paged::idx_at(cu_seqlens_q, s, "cu_seqlens_q"), e = paged::idx_at(cu_seqlens_q, s + 1, "cu_seqlens_q");
    if (b > e || e > m_total) throw std::out_of_range(std::string(op) + ": inconsistent cu_seqlens_q");
    const uint64_t off = paged::idx_at(pos_offsets, s, "pos_offsets");
    for (uint64_t g = b; g < e; ++g) {
      const uint64_t p = off + (g - b);
      if (p >= rows) throw std::out_of_range(std::string(op) + ": position >= table rows");
      const double* row = &qkv[g * W];
      for (uint64_t h = 0; h < q_heads; ++h)
        qk_transform(row + h * D, &q_out[(g * q_heads + h) * D], D, p, q_norm_w, cos, sin, eps, qk_mode);
      const int64_t blk = paged::block_of(block_tables, s, p, max_blocks_per_seq, pool);
      if (blk < 0) continue;  // not written (§6.1)
      vec kr(D);
      for (uint64_t h = 0; h < kv_heads; ++h) {
        qk_transform(row + (q_heads + h) * D, kr.data(), D, p, k_norm_w, cos, sin, eps, qk_mode);
        for (uint64_t d = 0; d < D; ++d) {
          cache_k[pool.k_at(blk, p % block_size, h, d)] = kr[d];
          cache_v[pool.v_at(blk, p % block_size, h, d)] = row[(q_heads + kv_heads + h) * D + d];
        }
      }
    }
  }
}

// ================================================================= §6.2 attention

// Uniform q_len per sequence (paged_decode_attention, paged_varlen_attention_vllm_layout, and with
// q_len = 1 paged_batched_decode_attention / paged_decode_attention_v2): rows s·q_len + i,
// L = lens[s], p = L − q_len + i.
inline void paged_attention_uniform(const vec& q, const vec& k_pool, const vec& v_pool, vec& out,
                                    const std::vector<int64_t>& block_tables, const std::vector<int64_t>& lens,
                                    uint64_t num_seqs, uint64_t num_heads, uint64_t num_kv_heads, uint64_t head_dim,
                                    uint64_t block_size, uint64_t max_num_blocks_per_seq, uint64_t q_len, float scale,
                                    uint64_t sliding_window, PagedLayout layout = PagedLayout::ferrum,
                                    uint64_t x = 0) {
  const char* op = "paged_attention";
  paged::check_attention(op, num_heads, num_kv_heads, head_dim, scale);
  if (num_seqs == 0 || q_len == 0) return;
  const paged::Pool pool(layout, std::min(k_pool.size(), v_pool.size()), block_size, num_kv_heads, head_dim, x, op);
  const uint64_t D = head_dim, nh = num_heads;
  const double sigma = attention_scale(scale, D);
  detail::need(q, num_seqs * q_len * nh * D, op, "q");
  detail::fit(out, num_seqs * q_len * nh * D);
  for (uint64_t s = 0; s < num_seqs; ++s) {
    const uint64_t L = paged::idx_at(lens, s, "lens");
    for (uint64_t i = 0; i < q_len; ++i) {
      const uint64_t row = s * q_len + i;
      const int64_t p = static_cast<int64_t>(L) - static_cast<int64_t>(q_len) + static_cast<int64_t>(i);
      for (uint64_t h = 0; h < nh; ++h)
        paged::attend(&q[(row * nh + h) * D], &out[(row * nh + h) * D], p, L, s, h, nh, k_pool, v_pool, block_tables,
                      max_num_blocks_per_seq, pool, sigma, sliding_window);
    }
  }
}

// Varlen (paged_varlen_attention, _vllm, and with `lse` + seq_lens semantics the fa2_ffi op).
// fa2 = false: `lens` are pos_offsets, p = pos_offsets[s] + j, L = pos_offsets[s] + q_len_s.
// fa2 = true:  `lens` are seq_lens, L = seq_lens[s], p = L − q_len_s + j; lse[h·M + g] = LSE.
// `rows_mask` (optional, size M): only rows with a non-zero entry are written (tiled_q4).
inline void paged_attention_varlen(const vec& q, const vec& k_pool, const vec& v_pool, vec& out, vec* lse,
                                   const std::vector<int64_t>& cu_seqlens_q, const std::vector<int64_t>& lens,
                                   const std::vector<int64_t>& block_tables, uint64_t num_seqs,
                                   uint64_t total_q_tokens, uint64_t num_heads, uint64_t num_kv_heads,
                                   uint64_t head_dim, uint64_t block_size, uint64_t max_num_blocks_per_seq,
                                   float scale, uint64_t sliding_window, bool fa2,
                                   PagedLayout layout = PagedLayout::ferrum, uint64_t x = 0,
                                   const std::vector<uint8_t>* rows_mask = nullptr) {
  const char* op = "paged_varlen_attention";
  paged::check_attention(op, num_heads, num_kv_heads, head_dim, scale);
  if (num_seqs == 0) return;
  const paged::Pool pool(layout, std::min(k_pool.size(), v_pool.size()), block_size, num_kv_heads, head_dim, x, op);
  const uint64_t D = head_dim, nh = num_heads, M = total_q_tokens;
  const double sigma = attention_scale(scale, D);
  detail::need(q, M * nh * D, op, "q");
  detail::fit(out, M * nh * D);
  if (lse) detail::fit(*lse, nh * M);
  for (uint64_t s = 0; s < num_seqs; ++s) {
    const uint64_t b = paged::idx_at(cu_seqlens_q, s, "cu_seqlens_q"), e = paged::idx_at(cu_seqlens_q, s + 1, "cu_seqlens_q");
    if (b > e || e > M) throw std::out_of_range(std::string(op) + ": inconsistent cu_seqlens_q");
    const uint64_t qn = e - b, base = paged::idx_at(lens, s, fa2 ? "seq_lens" : "pos_offsets");
    const uint64_t L = fa2 ? base : base + qn;
    for (uint64_t g = b; g < e; ++g) {
      if (rows_mask && !(*rows_mask)[g]) continue;
      const int64_t j = static_cast<int64_t>(g - b);
      const int64_t p = fa2 ? static_cast<int64_t>(L) - static_cast<int64_t>(qn) + j : static_cast<int64_t>(base) + j;
      for (uint64_t h = 0; h < nh; ++h) {
        const double l = paged::attend(&q[(g * nh + h) * D], &out[(g * nh + h) * D], p, L, s, h, nh, k_pool, v_pool,
                                       block_tables, max_num_blocks_per_seq, pool, sigma, sliding_window);
        if (lse) (*lse)[h * M + g] = l;
      }
    }
  }
}

// tiled_q4: rows covered by the tiles (tile t: s = tile_seqs[t], local queries
// [tile_starts[t], min(tile_starts[t] + 4, q_len_s))) get the paged_varlen_attention_vllm value.
inline void paged_varlen_attention_vllm_tiled_q4(
    const vec& q, const vec& k_pool, const vec& v_pool, vec& out, const std::vector<int64_t>& cu_seqlens_q,
    const std::vector<int64_t>& pos_offsets, const std::vector<int64_t>& block_tables,
    const std::vector<int64_t>& tile_seqs, const std::vector<int64_t>& tile_starts, uint64_t num_tiles,
    uint64_t num_heads, uint64_t num_kv_heads, uint64_t head_dim, uint64_t block_size,
    uint64_t max_num_blocks_per_seq, uint64_t num_seqs, uint64_t total_q_tokens, float scale,
    uint64_t sliding_window, uint64_t x) {
  std::vector<uint8_t> mask(total_q_tokens, 0);
  for (uint64_t t = 0; t < num_tiles; ++t) {
    const int64_t s = tile_seqs.at(t), st = tile_starts.at(t);
    if (s < 0 || static_cast<uint64_t>(s) >= num_seqs || st < 0) continue;
    const uint64_t b = paged::idx_at(cu_seqlens_q, s, "cu_seqlens_q"), e = paged::idx_at(cu_seqlens_q, s + 1, "cu_seqlens_q");
    if (b > e || e > total_q_tokens) throw std::out_of_range("tiled_q4: inconsistent cu_seqlens_q");
    for (uint64_t j = static_cast<uint64_t>(st); j < std::min<uint64_t>(st + 4, e - b); ++j) mask[b + j] = 1;
  }
  paged_attention_varlen(q, k_pool, v_pool, out, nullptr, cu_seqlens_q, pos_offsets, block_tables, num_seqs,
                         total_q_tokens, num_heads, num_kv_heads, head_dim, block_size, max_num_blocks_per_seq, scale,
                         sliding_window, false, PagedLayout::vllm, x, &mask);
}

// ================================================================= §5.1 batched per-cache decode

// caches[i][h, cache_lens[i], :] = new_data[i, h, :]; cache_lens[i] >= capacity writes nothing.
inline void kv_cache_append_batched_per_cache(std::vector<vec>& caches, const vec& new_data,
                                              const std::vector<int64_t>& cache_lens, uint64_t capacity, uint64_t m,
                                              uint64_t nkv, uint64_t hd) {
  for (uint64_t i = 0; i < m; ++i) {
    const int64_t L = cache_lens.at(i);
    if (L < 0 || static_cast<uint64_t>(L) >= capacity) continue;
    detail::fit(caches.at(i), nkv * capacity * hd);
    for (uint64_t h = 0; h < nkv; ++h)
      for (uint64_t d = 0; d < hd; ++d)
        caches[i][(h * capacity + static_cast<uint64_t>(L)) * hd + d] = new_data.at((i * nkv + h) * hd + d);
  }
}

// One causal decode query per item at p = L − 1 over k_caches[i] / v_caches[i] ([nkv, capacity, hd]).
inline void flash_attention_batched_per_cache(const vec& q, const std::vector<vec>& k_caches,
                                              const std::vector<vec>& v_caches, uint64_t m,
                                              const std::vector<int64_t>& kv_lens, vec& out, uint64_t nq,
                                              uint64_t nkv, uint64_t hd, float scale, uint64_t max_valid_kv,
                                              uint64_t capacity, uint64_t sliding_window) {
  const char* op = "flash_attention_batched_per_cache";
  paged::check_attention(op, nq, nkv, std::max<uint64_t>(hd, 1), scale);
  detail::check(max_valid_kv <= capacity, op, "max_valid_kv > capacity");
  if (m == 0) return;
  detail::check(hd >= 1, op, "hd = 0");
  const double sigma = attention_scale(scale, hd);
  detail::fit(out, m * nq * hd);
  for (uint64_t i = 0; i < m; ++i) {
    const uint64_t L = paged::idx_at(kv_lens, i, "kv_lens");
    if (L > max_valid_kv) throw std::out_of_range(std::string(op) + ": kv_lens above max_valid_kv");
    for (uint64_t h = 0; h < nq; ++h) {
      const uint64_t kvh = kv_head_of(h, nq, nkv);
      const double* kb = k_caches.at(i).data() + kvh * capacity * hd;
      const double* vb = v_caches.at(i).data() + kvh * capacity * hd;
      attention_row(&q[(i * nq + h) * hd], hd, hd, sigma, L == 0 ? 0 : L - 1, L, 1, sliding_window,
                    [&](uint64_t j) { return kb + j * hd; }, [&](uint64_t j) { return vb + j * hd; },
                    &out[(i * nq + h) * hd]);
    }
  }
}

}  // namespace ferrum::ref
