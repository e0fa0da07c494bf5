// ferrum CPU plugin — flash-attention prefill with 16 query rows per vector (one AVX-512 vector or
// two AVX2 ones) and decode 16 keys at a time (used by flash_attention and paged_attention;
// attention_tiles.cpp).
#ifndef FERRUM_CPU_KERNELS_ATTENTION_TILES_HPP
#define FERRUM_CPU_KERNELS_ATTENTION_TILES_HPP

#include <cstdint>

#include <ferrum/common/dtype.hpp>

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

// Whether this machine runs the tiles for head_dim (AVX-512, or AVX2 + FMA + F16C; head_dim 64 or
// 128). Both instruction sets run the same per-lane operations in the same order (the AVX2 kernels
// take each 16-lane vector as two 8-lane halves and reduce decode dots by the same fixed tree), so
// they give the same bits.
bool available(uint64_t head_dim);

// The instruction set the tiles run on (none: available() is false for every head_dim).
enum class Isa { none, avx2, avx512 };
Isa isa();
// Tests: run the tiles on a lower instruction set than the machine's best (avx2 on an AVX-512
// machine, none to take the row path), or back on the best (the argument is capped by what the CPU
// has). Not for use while kernels run.
void force_isa(Isa want);

// Keys [j0, j0 + nk) (nk <= kKeys; kf / vf their rows in f32, row stride head_dim, kf rows nk up to
// the next multiple of 16 zero) into r: scores scaled by sigma and masked to each lane's range, the
// online softmax, the value rows. s: kKeys·16 floats of scratch (64-byte aligned). Key indices below
// 2^31 (the caller checks).
void block(uint64_t head_dim, const Rows& r, const float* kf, const float* vf, uint64_t nk, uint64_t j0, float sigma,
           float* s);

// Decode: one query row (q in f32, D floats), its visible range [lo, hi), running max m, sum l and
// accumulator acc[D]. decode_block runs keys [j0, j0 + nk) (nk <= kKeys; rows of K / V read in place,
// row stride head_dim, f16 / bf16 widened in registers): 16 keys' dots at a time (FMA along d, the
// 16 sums reduced by one fixed tree), the scores masked and scaled, the online softmax, the value
// rows. s: kKeys floats (64-byte aligned).
struct DecodeRow {
  const float* q;
  int32_t lo, hi;
  float* m;
  float* l;
  float* acc;
};
template <class E>
void decode_block(uint64_t head_dim, const DecodeRow& r, const E* kb, const E* vb, uint64_t nk, uint64_t j0,
                  float sigma, float* s);
// The same with one pointer per key row (krows[j] / vrows[j], j < nk): a paged pool's rows, read
// in place; the same arithmetic, so the same bits as decode_block on a copy of those rows.
template <class E>
void decode_block_rows(uint64_t head_dim, const DecodeRow& r, const E* const* krows, const E* const* vrows,
                       uint64_t nk, uint64_t j0, float sigma, float* s);

}  // namespace ferrum::cpu::attn_tiles

#endif  // FERRUM_CPU_KERNELS_ATTENTION_TILES_HPP
