// GGUF block geometry (docs/spec.md §11.1): weights and bytes per block of each type id the
// project's plugins serve (the ids are FERRUM_QUANT_*, ggml's tensor type numbers). Header-only,
// no ABI dependency, usable from host code and kernels' host side alike.
#pragma once

#include <cstdint>

namespace ferrum::common {

// Weights per block (QK) of a GGUF type id (§11.1); 0 for an id no plugin serves.
constexpr uint64_t gguf_qk(int32_t type) {
  switch (type) {
    case 2 /* Q4_0 */: case 3 /* Q4_1 */: case 8 /* Q8_0 */: return 32;
    case 12 /* Q4_K */: case 13 /* Q5_K */: case 14 /* Q6_K */: return 256;
    default: return 0;
  }
}

// Bytes per block of a GGUF type id (§11.1); 0 for an unknown id.
constexpr uint64_t gguf_block_bytes(int32_t type) {
  switch (type) {
    case 2 /* Q4_0 */: return 18;
    case 3 /* Q4_1 */: return 20;
    case 8 /* Q8_0 */: return 34;
    case 12 /* Q4_K */: return 144;
    case 13 /* Q5_K */: return 176;
    case 14 /* Q6_K */: return 210;
    default: return 0;
  }
}

}  // namespace ferrum::common
