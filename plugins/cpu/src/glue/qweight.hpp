// The CPU plugin's quantised weight (docs/spec.md §11, §12) and the internal API other families (MoE)
// use to run GPTQ weights.
//
// A ferrum_qweight is either a GGUF matrix (its raw blocks, kept as uploaded) or a stack of
// num_experts GPTQ matrices in the kernel format of kernels/gptq.hpp (load_gptq makes a stack of 1).
// Weights are immutable after load: any context and thread may read one concurrently.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu_plugin.hpp"
#include "kernels/gguf.hpp"
#include "kernels/gptq.hpp"

struct ferrum_qweight {
  static constexpr uint32_t kLive = 0x54475751u;  // "QWGT"
  static constexpr uint32_t kDead = 0xDEADBEEFu;
  enum class Kind { gguf, gptq };
  uint32_t magic = kLive;
  Kind kind = Kind::gguf;
  // GGUF
  int32_t quant_type = 0;
  uint64_t n_rows = 0, n_cols = 0;
  bool act_q8 = false;  // load_quant's act_precision is FERRUM_QUANT_ACT_Q8 (docs/spec.md §11.2)
  std::vector<uint8_t> blocks;
  // GPTQ
  int32_t act_dtype = 0;
  uint64_t k = 0, n = 0;  // n per expert
  std::vector<ferrum::cpu::GptqMatrix> experts;

  ferrum::cpu::GgufMatrix gguf() const { return {quant_type, blocks.data(), n_rows, n_cols, act_q8}; }
};

namespace ferrum::cpu {

struct GptqInfo {
  uint64_t num_experts /*1 for load_gptq*/, k, n /*per expert*/;
  int32_t act_dtype;
};
bool gptq_info(const ferrum_qweight* w, GptqInfo& info);  // false if w is not a GPTQ weight

// out[r, j] = Σ_p x[r, p]·W_e[p, j] for r < rows (W_e = expert e's dequantised [k, n]); T = the
// weight's activation type. Runs on the thread pool (inline when called from inside a pool job).
template <class T>
void gptq_matmul(const ferrum_qweight* w, uint64_t expert, const T* x, uint64_t rows, T* out);

// True when w is a live weight of this plugin.
inline bool live_qweight(const ferrum_qweight* w) { return w && w->magic == ferrum_qweight::kLive; }

// Slots of the quant_matmul table (gguf.cpp, gptq.cpp; assembled in quant_matmul.cpp).
FERRUM_QUANT_MATMUL_SLOTS(FERRUM_SLOT_DECL)

}  // namespace ferrum::cpu
