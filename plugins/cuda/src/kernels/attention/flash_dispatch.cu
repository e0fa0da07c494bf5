// ferrum CUDA plugin — attention path choice, split count and scratch layout (see flash.hpp;
// the deterministic split-KV merge runs inside the decode kernels, flash_decode.cuh).
#include <cuda_runtime.h>
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "common.cuh"
#include "cuda_check.hpp"
#include "dtype.hpp"

namespace ferrum::cuda::attn {
namespace {

bool use_prefill(const FlashParams& p) {
  return p.dtype != FERRUM_DTYPE_F32 && p.len_source == LenSource::host && p.q_len > kDecodeMaxQLen;
}

// CTAs per SM the split choice aims at. F16/BF16 (tensor-core decode): as many as the
// shared memory holds (228 KiB per SM on Hopper, 1 KiB reserved per CTA), at most 4, so the
// grid is one full wave (no second, partial wave) of CTAs with 2 stages in flight each
// (measured on H200 at hd 128: 1 per SM 90.1 µs, 2 per SM 77.5 µs, 4 per SM 84.3 µs).
// F32 (SIMT decode, ~40 KiB): 4.
uint64_t decode_ctas_per_sm(int32_t dtype, uint64_t hd) {
  if (dtype == FERRUM_DTYPE_F32) return kMaxDecodeCtasPerSm;
  // dynamic stages + the driver's 1 KiB + the static TileRows ring (2 slots of 16-byte rows) and merge flag
  const uint64_t per_cta = decode_mma_smem_bytes(hd, 2) + 1024 + 2 * kDecodeMmaKeys * 16 + 16;
  return std::clamp<uint64_t>(uint64_t{233472} / per_cta, 1, kMaxDecodeCtasPerSm);
}

// Splits of the decode path, from the shapes only (never from device values): enough CTAs
// to fill the SMs once (decode_ctas_per_sm), each split at least 128 keys long.
uint32_t choose_splits(const FlashParams& p, int sm_count) {
  if (use_prefill(p)) return 0;
  const uint64_t group = p.num_heads / p.num_kv_heads;
  const uint64_t chunks = (group + kDecodeHeadChunk - 1) / kDecodeHeadChunk;
  return decode_split_count(p.dtype, p.head_dim, p.batch * p.q_len * p.num_kv_heads * chunks, decode_key_bound(p),
                            sm_count);
}

// FastDiv32 against the division, at compile time, over divisors and dividends at the edges.
constexpr bool fast_div_ok() {
  const uint64_t ds[] = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 32, 48, 64, 100, 128, 255, 1000, 65537, (1u << 30) + 3, (1u << 31) - 1};
  for (uint64_t d : ds) {
    const FastDiv32 f(d);
    const uint64_t ns[] = {0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, 12345677, (1u << 30), (1u << 31) - 2, (1u << 31) - 1};
    for (uint64_t n : ns)
      if (n < (uint64_t{1} << 31) && f.div(static_cast<uint32_t>(n)) != n / d) return false;
  }
  return true;
}
static_assert(fast_div_ok(), "FastDiv32 must equal the division for n < 2^31");

uint64_t rows_heads(const FlashParams& p) { return p.batch * p.q_len * p.num_heads; }

template <class T>
Status launch_head_dim(const FlashParams& p, uint32_t splits, float* po, float* pl, uint32_t* cnt,
                       cudaStream_t st) noexcept {
  const bool prefill = use_prefill(p);
  return with_head_dim(p.head_dim, "flash_attention", [&](auto hd) -> Status {
    if constexpr (!std::is_same_v<T, float>)
      if (prefill) return launch_prefill<T, decltype(hd)::value>(p, st);
    return launch_decode<T, decltype(hd)::value>(p, splits, po, pl, cnt, st);
  });
}

}  // namespace

uint32_t decode_split_count(int32_t dtype, uint64_t hd, uint64_t groups, uint64_t bound, int sm_count) noexcept {
  const uint64_t base = std::max<uint64_t>(1, groups);
  bound = std::min<uint64_t>(bound, uint64_t{1} << 48);  // a host bound may be UINT64_MAX: no overflow below
  const uint64_t by_len = std::max<uint64_t>(1, (bound / 128) + (bound % 128 != 0));
  const uint64_t target = decode_ctas_per_sm(dtype, hd) * static_cast<uint64_t>(std::max(sm_count, 1));
  // At most one wave: rounding up (5 splits of 64 groups = 320 CTAs for 264 slots) would leave a
  // second, mostly idle wave that costs as much as the first.
  const uint64_t by_fill = std::max<uint64_t>(1, target / base);
  uint64_t splits = std::min<uint64_t>({by_len, by_fill, kMaxSplits});
  if (dtype != FERRUM_DTYPE_F32 && splits > 1) {
    // The tensor-core kernel rounds each split up to whole 64-key stages: drop the splits
    // that rounding leaves empty (65 536 keys over 33 → 32 splits of 2 048).
    const uint64_t per = ((bound + splits - 1) / splits + kDecodeMmaKeys - 1) / kDecodeMmaKeys * kDecodeMmaKeys;
    splits = std::max<uint64_t>(1, (bound + per - 1) / per);
  }
  return static_cast<uint32_t>(splits);
}

uint64_t flash_scratch_bytes(const FlashParams& p, int sm_count) noexcept {
  const uint32_t splits = choose_splits(p, sm_count);
  if (splits <= 1) return 0;
  return flash_counter_bytes(sm_count) + rows_heads(p) * splits * (p.head_dim + 1) * sizeof(float);
}

Status flash_attention(const FlashParams& p, int sm_count, void* scratch, cudaStream_t stream) noexcept {
  if (p.batch == 0 || p.q_len == 0) return ok_status();
  const uint32_t splits = std::max<uint32_t>(1, choose_splits(p, sm_count));
  float* part_o = nullptr;
  float* part_lse = nullptr;
  uint32_t* counters = nullptr;
  if (splits > 1) {
    if (!scratch) return make_status(FERRUM_STATUS_INTERNAL, "flash_attention: split-KV scratch missing");
    // One counter per (row, KV head, head chunk); choose_splits splits only while that count
    // is below the one-wave CTA target, so it always fits the fixed counter block.
    const uint64_t group = p.num_heads / p.num_kv_heads;
    const uint64_t groups = p.batch * p.q_len * p.num_kv_heads * ((group + kDecodeHeadChunk - 1) / kDecodeHeadChunk);
    if (groups * sizeof(uint32_t) > flash_counter_bytes(sm_count))
      return make_status(FERRUM_STATUS_INTERNAL, "flash_attention: %llu split groups exceed the counter block",
                         static_cast<unsigned long long>(groups));
    counters = static_cast<uint32_t*>(scratch);
    part_o = reinterpret_cast<float*>(static_cast<unsigned char*>(scratch) + flash_counter_bytes(sm_count));
    part_lse = part_o + rows_heads(p) * splits * p.head_dim;
  }
  return dispatch_float(p.dtype, "flash_attention", [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    return launch_head_dim<T>(p, splits, part_o, part_lse, counters, stream);
  });
}

uint64_t decode_key_bound(const FlashParams& p) noexcept {
  uint64_t bound = p.len_source == LenSource::host ? p.kv_len : p.len_bound;
  const bool causal = p.len_source == LenSource::per_item ? true : p.causal;
  if (causal && p.window) bound = std::min(bound, p.window);
  return bound;
}

DecodeTma decode_tma_mode() noexcept {
  const char* e = std::getenv("FERRUM_CUDA_DECODE_TMA");
  if (e != nullptr && std::strcmp(e, "0") == 0) return DecodeTma::off;
  if (e != nullptr && std::strcmp(e, "1") == 0) return DecodeTma::on;
  return DecodeTma::automatic;
}

bool make_kv_maps(KvMaps& m, const void* k, const void* v, uint64_t head_dim, uint64_t heads, uint64_t rows) noexcept {
  // The driver's encoder, looked up once through the runtime (no link against libcuda).
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      fn = nullptr;
    (void)cudaGetLastError();
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  if (encode == nullptr || k == nullptr || v == nullptr) return false;
  if (head_dim % 64 != 0 || head_dim > 256 || heads == 0 || rows == 0 || heads >= (uint64_t{1} << 31) ||
      rows >= (uint64_t{1} << 31) / heads)
    return false;
  if ((reinterpret_cast<uintptr_t>(k) | reinterpret_cast<uintptr_t>(v)) % 16 != 0) return false;
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  if (major < 9) return false;
  const cuuint64_t dims[3] = {head_dim, heads, rows};
  const cuuint64_t strides[2] = {head_dim * 2, heads * head_dim * 2};
  const cuuint32_t box[3] = {64, 1, 16};
  const cuuint32_t estr[3] = {1, 1, 1};
  for (int i = 0; i < 2; ++i) {
    if (encode(i == 0 ? &m.k : &m.v, CU_TENSOR_MAP_DATA_TYPE_UINT16, 3, const_cast<void*>(i == 0 ? k : v), dims, strides,
               box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
      return false;
  }
  m.k0 = k;
  m.v0 = v;
  m.heads = static_cast<uint32_t>(heads);
  m.heads_div = FastDiv32(heads);
  return true;
}

}  // namespace ferrum::cuda::attn
