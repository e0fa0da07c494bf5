// ferrum CUDA plugin — paged attention: grid rows, split count, scratch layout and the head-dim
// dispatch (see paged.hpp). The split-KV merge runs inside the decode kernels (flash_decode.cuh).
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "dtype.hpp"
#include "flash.hpp"
#include "paged.hpp"

namespace ferrum::cuda::attn {
namespace {

uint64_t head_chunks(const PagedParams& p) {
  const uint64_t group = p.num_heads / p.num_kv_heads;
  return (group + kDecodeHeadChunk - 1) / kDecodeHeadChunk;
}

uint32_t paged_splits(const PagedParams& p, int sm_count) {
  const uint64_t bound = paged_key_bound(p);
  const uint64_t rows = paged_grid_rows(p);
  const uint64_t groups = rows > UINT64_MAX / (p.num_kv_heads * head_chunks(p)) ? UINT64_MAX
                                                                                 : rows * p.num_kv_heads * head_chunks(p);
  return decode_split_count(p.dtype, p.head_dim, groups, bound, sm_count);
}

}  // namespace

uint64_t paged_key_bound(const PagedParams& p) noexcept {
  const uint64_t cap = p.bt_stride > UINT64_MAX / p.block_size ? UINT64_MAX : p.bt_stride * p.block_size;
  uint64_t bound = std::min(p.len_bound, cap);
  if (p.window) bound = std::min(bound, p.window);  // paged attention is always causal
  return bound;
}

uint64_t paged_grid_rows(const PagedParams& p) noexcept {
  switch (p.rows) {
    case PagedRows::uniform: return p.num_seqs > UINT64_MAX / std::max<uint64_t>(p.q_len, 1) ? UINT64_MAX : p.num_seqs * p.q_len;
    case PagedRows::varlen:
    case PagedRows::fa2: return p.total_q;
    case PagedRows::tiled: return p.num_tiles > UINT64_MAX / 4 ? UINT64_MAX : p.num_tiles * 4;
  }
  return 0;
}

uint64_t paged_scratch_bytes(const PagedParams& p, int sm_count) noexcept {
  const uint32_t splits = paged_splits(p, sm_count);
  if (splits <= 1) return 0;
  // Splitting happens only while rows × KV heads × chunks is below the one-wave CTA target, so
  // these products are small.
  return flash_counter_bytes(sm_count) + paged_grid_rows(p) * p.num_heads * splits * (p.head_dim + 1) * sizeof(float);
}

namespace {

// Chooses the prefill/decode split (paged.hpp) from the shapes: F16/BF16, not tiled, and
// sequences that may hold more than kDecodeMaxQLen queries. Uniform steps with q_len > 8 run the
// prefill kernel alone (as flash_attention does); varlen / FA2 steps add a prefill launch only
// when the queries average at least 4 per sequence (M >= 4·S), because its grid holds
// ceil(q_len_bound / 64) tiles for every sequence and a decode-heavy step would mostly launch
// empty tiles.
PagedParams with_split(PagedParams p) {
  p.decode_max_q = UINT64_MAX;
  p.prefill_q_tiles = 0;
  if (p.dtype == FERRUM_DTYPE_F32 || p.rows == PagedRows::tiled || p.num_seqs > 65535) return p;
  if (p.rows == PagedRows::uniform) {
    if (p.q_len > kDecodeMaxQLen) p.prefill_q_tiles = (p.q_len + 63) / 64;
    return p;
  }
  if (p.q_len_bound > kDecodeMaxQLen && p.total_q / 4 >= p.num_seqs) {
    p.decode_max_q = kDecodeMaxQLen;
    p.prefill_q_tiles = (std::min(p.q_len_bound, p.total_q) + 63) / 64;
  }
  return p;
}

bool decode_launch(const PagedParams& p) { return !(p.rows == PagedRows::uniform && p.prefill_q_tiles > 0); }

}  // namespace

Status paged_attention(const PagedParams& params, int sm_count, void* scratch, cudaStream_t stream) noexcept {
  const PagedParams p = with_split(params);
  const uint64_t rows = paged_grid_rows(p);
  if (rows == 0 || p.num_seqs == 0) return ok_status();
  if (p.prefill_q_tiles > 0) {
    Status s = dispatch_float(p.dtype, "paged attention", [&](auto tag) -> Status {
      using T = typename decltype(tag)::type;
      if constexpr (std::is_same_v<T, float>) {
        return make_status(FERRUM_STATUS_INTERNAL, "paged attention: no F32 prefill kernel");
      } else {
        return with_head_dim(p.head_dim, "paged attention",
                             [&](auto hd) -> Status { return launch_paged_prefill<T, decltype(hd)::value>(p, stream); });
      }
    });
    if (!s.ok() || !decode_launch(p)) return s;
  }
  const uint32_t splits = std::max<uint32_t>(1, paged_splits(p, sm_count));
  float* part_o = nullptr;
  float* part_lse = nullptr;
  uint32_t* counters = nullptr;
  if (splits > 1) {
    if (!scratch) return make_status(FERRUM_STATUS_INTERNAL, "paged attention: split-KV scratch missing");
    const uint64_t groups = rows * p.num_kv_heads * head_chunks(p);
    if (groups * sizeof(uint32_t) > flash_counter_bytes(sm_count))
      return make_status(FERRUM_STATUS_INTERNAL, "paged attention: %llu split groups exceed the counter block",
                         static_cast<unsigned long long>(groups));
    counters = static_cast<uint32_t*>(scratch);
    part_o = reinterpret_cast<float*>(static_cast<unsigned char*>(scratch) + flash_counter_bytes(sm_count));
    part_lse = part_o + rows * p.num_heads * splits * p.head_dim;
  }
  return dispatch_float(p.dtype, "paged attention", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    return with_head_dim(p.head_dim, "paged attention", [&](auto hd) -> Status {
      return launch_paged_decode<T, decltype(hd)::value>(p, rows, splits, part_o, part_lse, counters, stream);
    });
  });
}

}  // namespace ferrum::cuda::attn
