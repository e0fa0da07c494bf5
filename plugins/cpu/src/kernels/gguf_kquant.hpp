// ferrum CPU plugin — block-field helpers shared by the GGUF kernels (gguf.cpp, gguf_q8.cpp): the
// f16 fields, nibbles and K-quant scale pairs of §11.1, and their AVX-512 decoding (target
// attributes per function, simd.hpp: callers check has_avx512() first).
#ifndef FERRUM_CPU_KERNELS_GGUF_KQUANT_HPP
#define FERRUM_CPU_KERNELS_GGUF_KQUANT_HPP

#include <cstdint>
#include <cstring>

#include <ferrum/common/dtype.hpp>

#include "simd.hpp"

namespace ferrum::cpu {

namespace gguf_fields {
// A little-endian f16 field, widened exactly.
inline float f16le(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return to_float(f16{h});
}
inline int lo(uint8_t b) { return b & 15; }
inline int hi(uint8_t b) { return b >> 4; }
// K-quant scale pair j of a Q4_K / Q5_K block (§11.1).
inline void scale_min(const uint8_t* s, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = s[j] & 63;
    mn = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}
}  // namespace gguf_fields

#if FERRUM_SIMD_X86
// K-quant scale pairs of a Q4_K / Q5_K block into s: s[j] = d·sc_j, s[8 + j] = dmin·mn_j (exact).
FERRUM_AVX512_INLINE void kquant_scales(const uint8_t* b, float* s) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4));  // scales[0..11] + 4 more bytes
  const __m128i p = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
  const __m128i q = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
  const __m128i low = _mm_or_si128(
      _mm_and_si128(p, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0)),
      _mm_and_si128(_mm_srli_epi16(p, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15)));
  const __m128i high = _mm_and_si128(_mm_srli_epi16(q, 2), _mm_set1_epi8(0x30));
  const __m512 sm = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_or_si128(low, high)));
  int32_t dd32;
  std::memcpy(&dd32, b, 4);
  const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(dd32));  // d, dmin
  const __m512 dv = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                          _mm512_castps128_ps512(dd));
  _mm512_store_ps(s, _mm512_mul_ps(sm, dv));
}
#endif

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_GGUF_KQUANT_HPP
