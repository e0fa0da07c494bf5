// ferrum CPU plugin — GGUF matmul with 8-bit activations: what load_quant's act_precision =
// FERRUM_QUANT_ACT_Q8 permits (docs/spec.md §11.2, tolerance class A of §0.13).
//
// Activations: each row is quantised once per call in blocks of 32 columns (block b = columns
// 32b … 32b + 31): amax_b = max |a| (as f32), d_b = amax_b / 127 and q = a / d_b rounded to the
// nearest integer, ties to even (both divisions in f32; |a / d_b| ≤ 127·(1 + 2^-23), so q is in
// [−127, 127]); d_b = 0 gives q = 0 for the whole block.
//
// Weights stay in their blocks. The dot product of a weight block with an activation block is an
// exact integer: per 32-block (Q6_K: per 16 columns, its scale granularity) I = Σ n·q, n the
// weight's integer code (Q4_0: nibble − 8, Q4_1: nibble, Q8_0: the signed byte, Q4_K: nibble,
// Q5_K: 5-bit code, Q6_K: 6-bit code − 32). Everything else is f32, in this fixed order, so every
// path (AVX-512 VNNI, AVX2 or portable) and every thread count gives the same bits:
//  * columns are taken in groups of 256; lane j of group g is 32-block 8g + j (Q6_K: lane u is the
//    16-column group 16g + u, 16 lanes); a partial last group (32-weight types) has +0 lanes;
//  * per lane and group, in group order, each product and sum rounded to f32 (no FMA):
//      A = d_b · I
//      Q4_0, Q8_0:  acc += d·A                                  (d: the block's f16 scale)
//      Q4_1:        acc += d·A;  acc += m·f                      (f = d_b · Σq over the block)
//      Q4_K, Q5_K:  acc += (d·sc_j)·A;  acc −= (dmin·mn_j)·f
//      Q6_K:        acc += (d·sc_u)·A
//  * out = the lanes summed: 16 lanes first folded to 8 (acc_u + acc_{u+8}), then
//    ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)); rounded once to the output dtype.
#ifndef FERRUM_CPU_KERNELS_GGUF_Q8_HPP
#define FERRUM_CPU_KERNELS_GGUF_Q8_HPP

#include <cstdint>

#include "gguf.hpp"

namespace ferrum::cpu {

// best: the AVX-512 VNNI kernels where the CPU has them, else the AVX2 kernels (all six types)
// where it has AVX2, else the portable code; avx2: the AVX2 kernels where the CPU has AVX2 (VNNI or
// not), else portable; portable: always the portable code (the same bits; tests compare them).
enum class Q8Path { best, avx2, portable };

// out[m, rows] = a[m, cols] · Wᵀ with the activations quantised as above, T in {float, f16, bf16}.
// Any of the six types; m ≥ 1, rows ≥ 1, cols ≥ 1. Runs on the thread pool (weight rows split
// between threads; every output is computed by one thread in the order above).
template <class T>
void gguf_matmul_q8(const GgufMatrix& w, const T* a, T* out, uint64_t m, Q8Path path = Q8Path::best);

// Which kernels gguf_matmul_q8 uses on this machine: "avx512_vnni", "avx2" or "portable".
const char* gguf_q8_kernel_name();

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_GGUF_Q8_HPP
