// ferrum CPU plugin — host memory and float conversion (the device layer: no ABI types).
//
// Buffers are 64-byte aligned host memory: anonymous mappings from kMapBytes up (the kernel
// hands out zeroed pages on first touch, so a large buffer asked zeroed — a quantised KV layer
// of gigabytes — costs neither a memset nor resident memory until it is written), the heap
// (and its sanitizers) below.
//
// Thread contract: every function here is thread-safe.
#pragma once

#include <cstdint>

namespace ferrum::cpu {

inline constexpr uint64_t kAlign = 64;
inline constexpr uint64_t kMapBytes = uint64_t{64} << 20;

// The largest element count of `dtype` whose byte size, rounded up to kAlign, fits in 64 bits.
uint64_t max_elements(int32_t dtype) noexcept;

// The bytes behind a buffer of n elements of `dtype`, rounded up to kAlign (n <= max_elements).
uint64_t alloc_bytes(int32_t dtype, uint64_t n) noexcept;

// `bytes` of host memory aligned to kAlign, every byte zero when `zero` (a mapping is always
// zero); nullptr when out of memory.
void* host_alloc(uint64_t bytes, bool zero) noexcept;

// Frees what host_alloc(bytes, ...) returned; NULL-safe.
void host_free(void* p, uint64_t bytes) noexcept;

// dst[i] = convert(src[i]) for i < n between F32 / F16 / BF16 (exact widening, round-to-nearest-
// even narrowing); equal dtypes copy bits (any dtype). `src` may be unaligned. False for any
// other dtype pair (nothing written).
bool convert(const void* src, int32_t src_dtype, void* dst, int32_t dst_dtype, uint64_t n);

}  // namespace ferrum::cpu
