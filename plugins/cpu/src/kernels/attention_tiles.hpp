// ferrum CPU plugin — flash-attention prefill with 16 query rows per AVX-512 vector (used by
// flash_attention for prefill-sized calls; attention_tiles.cpp).
#ifndef FERRUM_CPU_KERNELS_ATTENTION_TILES_HPP
#define FERRUM_CPU_KERNELS_ATTENTION_TILES_HPP

#include <cstdint>

namespace ferrum::cpu::attn_tiles {

// Keys per block a caller hands to block() (its score buffer holds kKeys·16 floats).
constexpr uint64_t kKeys = 64;

// One group of 16 query rows, all arrays 64-byte aligned: qt[d·16 + lane] the queries transposed
// (zero lanes past the tile), lo / hi each lane's visible key range [lo, hi) (lo = hi = 0: none),
// running max m (−inf at the start), sum l (0) and accᵀ[d·16 + lane] (0).
struct Rows {
  const float* qt;
  const int32_t* lo;
  const int32_t* hi;
  float* m;
  float* l;
  float* acc;
};

// Whether this machine runs the tiles for head_dim (AVX-512; head_dim 64 or 128).
bool available(uint64_t head_dim);

// Keys [j0, j0 + nk) (nk <= kKeys; kf / vf their rows in f32, row stride head_dim, kf rows nk up to
// the next multiple of 16 zero) into r: scores scaled by sigma and masked to each lane's range, the
// online softmax, the value rows. s: kKeys·16 floats of scratch (64-byte aligned). Key indices below
// 2^31 (the caller checks).
void block(uint64_t head_dim, const Rows& r, const float* kf, const float* vf, uint64_t nk, uint64_t j0, float sigma,
           float* s);

}  // namespace ferrum::cpu::attn_tiles

#endif  // FERRUM_CPU_KERNELS_ATTENTION_TILES_HPP
