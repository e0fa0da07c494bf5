// ferrum CUDA plugin — paged attention: grid rows, split count, scratch layout and the head-dim
// dispatch (see paged.hpp). The split-KV merge runs inside the decode kernels (flash_decode.cuh).
#include <cuda_runtime.h>

#include <algorithm>

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
  const uint64_t cap = p.bt_stride > UINT64_MAX / p.block_size ? UINT64_MAX : p.bt_stride * p.block_size;
  uint64_t bound = std::min(p.len_bound, cap);
  if (p.window) bound = std::min(bound, p.window);  // paged attention is always causal
  const uint64_t rows = paged_grid_rows(p);
  const uint64_t groups = rows > UINT64_MAX / (p.num_kv_heads * head_chunks(p)) ? UINT64_MAX
                                                                                 : rows * p.num_kv_heads * head_chunks(p);
  return decode_split_count(p.dtype, p.head_dim, groups, bound, sm_count);
}

template <class T>
Status launch_hd(const PagedParams& p, uint64_t rows, uint32_t splits, float* po, float* pl, uint32_t* cnt,
                 cudaStream_t st) noexcept {
  switch (p.head_dim) {
    case 32: return launch_paged_decode<T, 32>(p, rows, splits, po, pl, cnt, st);
    case 64: return launch_paged_decode<T, 64>(p, rows, splits, po, pl, cnt, st);
    case 80: return launch_paged_decode<T, 80>(p, rows, splits, po, pl, cnt, st);
    case 96: return launch_paged_decode<T, 96>(p, rows, splits, po, pl, cnt, st);
    case 112: return launch_paged_decode<T, 112>(p, rows, splits, po, pl, cnt, st);
    case 128: return launch_paged_decode<T, 128>(p, rows, splits, po, pl, cnt, st);
    case 192: return launch_paged_decode<T, 192>(p, rows, splits, po, pl, cnt, st);
    case 256: return launch_paged_decode<T, 256>(p, rows, splits, po, pl, cnt, st);
    default: break;
  }
  return make_status(FERRUM_STATUS_UNSUPPORTED, "paged attention: head_dim %llu has no kernel",
                     static_cast<unsigned long long>(p.head_dim));
}

}  // namespace

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

Status paged_attention(const PagedParams& p, int sm_count, void* scratch, cudaStream_t stream) noexcept {
  const uint64_t rows = paged_grid_rows(p);
  if (rows == 0 || p.num_seqs == 0) return ok_status();
  if (!head_dim_supported(p.head_dim))
    return make_status(FERRUM_STATUS_UNSUPPORTED, "paged attention: head_dim %llu has no kernel",
                       static_cast<unsigned long long>(p.head_dim));
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
    return launch_hd<T>(p, rows, splits, part_o, part_lse, counters, stream);
  });
}

}  // namespace ferrum::cuda::attn
