// ferrum CUDA plugin — contiguous KV-cache appends (docs/spec.md §5, §5.1) and the decode-state
// write (§8.2). Rows are copied as raw bytes with the widest vector (16/8/4/2 bytes) that
// divides the row size and every base address; rows whose device-supplied position is out of
// range are skipped (§0.11).
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "cuda_check.hpp"
#include "flash.hpp"

namespace ferrum::cuda::attn {
namespace {

template <int B>
struct VecOf;
template <>
struct VecOf<16> {
  using type = uint4;
};
template <>
struct VecOf<8> {
  using type = uint2;
};
template <>
struct VecOf<4> {
  using type = uint32_t;
};
template <>
struct VecOf<2> {
  using type = uint16_t;
};

// blockIdx.y: 0 = K, 1 = V. Work item = (head, token) row; threads stride over its vectors.
template <int B>
__global__ void __launch_bounds__(256) append_head_major_kernel(void* cache_k, void* cache_v, const void* new_k,
                                                                const void* new_v, uint64_t row0, uint64_t capacity,
                                                                uint64_t tokens, uint64_t rows, uint64_t vecs_per_row,
                                                                const uint32_t* dev_state) {
  using V = typename VecOf<B>::type;
  V* cache = static_cast<V*>(blockIdx.y == 0 ? cache_k : cache_v);
  const V* src = static_cast<const V*>(blockIdx.y == 0 ? new_k : new_v);
  const uint64_t start = dev_state ? dev_state[1] : row0;
  const uint64_t total = rows * vecs_per_row;
  for (uint64_t e = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const uint64_t r = e / vecs_per_row, c = e % vecs_per_row;
    const uint64_t h = r / tokens, t = r % tokens;
    const uint64_t dst_row = start + t;
    if (dst_row >= capacity) continue;  // dev-state position out of range: nothing written
    cache[(h * capacity + dst_row) * vecs_per_row + c] = src[r * vecs_per_row + c];
  }
}

// blockIdx.x = item, blockIdx.y = head.
template <int B>
__global__ void __launch_bounds__(128) append_batched_kernel(const ItemPtrs items, const void* const* slot_table,
                                                             const void* new_data, const uint32_t* cache_lens,
                                                             bool lens_i32, uint64_t capacity, uint64_t nkv,
                                                             uint64_t vecs_per_row) {
  using V = typename VecOf<B>::type;
  const uint64_t i = blockIdx.x, h = blockIdx.y;
  const uint32_t raw = cache_lens[i];
  if (lens_i32 && static_cast<int32_t>(raw) < 0) return;
  const uint64_t len = raw;
  if (len >= capacity) return;
  V* cache = static_cast<V*>(const_cast<void*>(slot_table ? slot_table[i] : items.p[0][i]));
  const V* src = static_cast<const V*>(new_data) + (i * nkv + h) * vecs_per_row;
  V* dst = cache + (h * capacity + len) * vecs_per_row;
  for (uint64_t c = threadIdx.x; c < vecs_per_row; c += blockDim.x) dst[c] = src[c];
}

__global__ void write_decode_state_kernel(uint32_t* s, uint32_t token, uint32_t step) {
  s[0] = token;
  s[1] = step;
  s[2] = step + 1;
}

// Widest vector width dividing the row and every address.
int vector_bytes(uint64_t row_bytes, std::initializer_list<const void*> ptrs) {
  for (int w : {16, 8, 4}) {
    bool ok = row_bytes % w == 0;
    for (const void* p : ptrs) ok = ok && reinterpret_cast<uintptr_t>(p) % w == 0;
    if (ok) return w;
  }
  return 2;
}

template <int B>
Status launch_head_major(void* ck, void* cv, const void* nk, const void* nv, uint64_t row_bytes, uint64_t row0,
                         uint64_t capacity, uint64_t tokens, uint64_t nkv, const uint32_t* dev_state,
                         cudaStream_t stream) {
  const uint64_t vecs = row_bytes / B, rows = nkv * tokens;
  const uint64_t total = rows * vecs;
  const uint64_t blocks = (total + 255) / 256 < 65535 ? (total + 255) / 256 : 65535;
  append_head_major_kernel<B><<<dim3(static_cast<unsigned>(blocks), 2), 256, 0, stream>>>(
      ck, cv, nk, nv, row0, capacity, tokens, rows, vecs, dev_state);
  FERRUM_CUDA_LAUNCH_CHECK("append_head_major_kernel");
  return ok_status();
}

template <int B>
Status launch_batched(const ItemPtrs& items, const void* const* table, const void* nd, const uint32_t* lens,
                      bool i32, uint64_t row_bytes, uint64_t capacity, uint64_t m, uint64_t nkv, cudaStream_t stream) {
  const uint64_t vecs = row_bytes / B;
  const unsigned threads = vecs >= 128 ? 128 : (vecs >= 64 ? 64 : 32);
  append_batched_kernel<B><<<dim3(static_cast<unsigned>(m), static_cast<unsigned>(nkv)), threads, 0, stream>>>(
      items, table, nd, lens, i32, capacity, nkv, vecs);
  FERRUM_CUDA_LAUNCH_CHECK("append_batched_kernel");
  return ok_status();
}

}  // namespace

Status kv_append_head_major(void* cache_k, void* cache_v, const void* new_k, const void* new_v, uint64_t elem_bytes,
                            uint64_t row0, uint64_t capacity, uint64_t tokens, uint64_t nkv, uint64_t hd,
                            const uint32_t* dev_state, cudaStream_t stream) noexcept {
  if (tokens == 0 || nkv == 0 || hd == 0) return ok_status();
  const uint64_t row_bytes = hd * elem_bytes;
  switch (vector_bytes(row_bytes, {cache_k, cache_v, new_k, new_v})) {
    case 16: return launch_head_major<16>(cache_k, cache_v, new_k, new_v, row_bytes, row0, capacity, tokens, nkv, dev_state, stream);
    case 8: return launch_head_major<8>(cache_k, cache_v, new_k, new_v, row_bytes, row0, capacity, tokens, nkv, dev_state, stream);
    case 4: return launch_head_major<4>(cache_k, cache_v, new_k, new_v, row_bytes, row0, capacity, tokens, nkv, dev_state, stream);
    default: return launch_head_major<2>(cache_k, cache_v, new_k, new_v, row_bytes, row0, capacity, tokens, nkv, dev_state, stream);
  }
}

Status kv_append_batched(const ItemPtrs& items, const void* const* slot_table, const void* new_data,
                         const uint32_t* cache_lens, bool lens_i32, uint64_t elem_bytes, uint64_t capacity, uint64_t m,
                         uint64_t nkv, uint64_t hd, cudaStream_t stream) noexcept {
  if (m == 0 || nkv == 0 || hd == 0) return ok_status();
  if (m > static_cast<uint64_t>(kMaxItems) || nkv > 65535)
    return make_status(FERRUM_STATUS_UNSUPPORTED, "kv_cache_append_batched_per_cache: m %llu / nkv %llu too large",
                       static_cast<unsigned long long>(m), static_cast<unsigned long long>(nkv));
  const uint64_t row_bytes = hd * elem_bytes;
  // Cache bases come from cudaMalloc (256-byte aligned); only the row size and new_data matter.
  switch (vector_bytes(row_bytes, {new_data})) {
    case 16: return launch_batched<16>(items, slot_table, new_data, cache_lens, lens_i32, row_bytes, capacity, m, nkv, stream);
    case 8: return launch_batched<8>(items, slot_table, new_data, cache_lens, lens_i32, row_bytes, capacity, m, nkv, stream);
    case 4: return launch_batched<4>(items, slot_table, new_data, cache_lens, lens_i32, row_bytes, capacity, m, nkv, stream);
    default: return launch_batched<2>(items, slot_table, new_data, cache_lens, lens_i32, row_bytes, capacity, m, nkv, stream);
  }
}

Status write_decode_state(uint32_t* dev_state, uint32_t token, uint32_t step, cudaStream_t stream) noexcept {
  write_decode_state_kernel<<<1, 1, 0, stream>>>(dev_state, token, step);
  FERRUM_CUDA_LAUNCH_CHECK("write_decode_state_kernel");
  return ok_status();
}

}  // namespace ferrum::cuda::attn
