// CUDA plugin: the quantised weight behind a ferrum_qweight handle (docs/spec.md §11, §12), shared by
// glue/quant_matmul.cpp (GGUF, the family table, qweight_release) and glue/gptq.cpp (GPTQ).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include <ferrum/common/handle_table.hpp>

#include "cuda_plugin.hpp"

namespace ferrum::cuda::glue {

// One GPTQ matrix on the device (kernels/gptq.cuh has the format).
struct GptqMatrixDev {
  uint32_t* q = nullptr;        // [kw, n]
  float2* zs = nullptr;         // [groups, n]
  uint32_t* wgrp = nullptr;     // [kw]
  uint32_t* gword = nullptr;    // [groups + 1]
  int32_t* src_row = nullptr;   // [kp]; NULL when the padded order is the identity (kp == k)
};

// A GPTQ weight: `experts` matrices of the same shape (1 for load_gptq).
struct GptqWeight {
  uint64_t k = 0, n = 0, kp = 0, groups = 0, experts = 0;
  int32_t act_dtype = 0;
  GptqMatrixDev* mats = nullptr;  // host array of `experts`
};

}  // namespace ferrum::cuda::glue

// The CUDA plugin's quantised weight: a GGUF matrix's blocks, or a GPTQ weight, on one device.
// (Kept trivially destructible: the handle table reuses slots without running destructors.)
struct ferrum_qweight {
  enum class Kind : int { gguf, gptq };
  Kind kind = Kind::gguf;
  int device = 0;
  // GGUF
  int32_t quant_type = 0;
  uint64_t n_rows = 0, n_cols = 0;
  uint64_t bytes = 0;
  uint8_t* blocks = nullptr;  // device memory of `device`
  // GPTQ (heap, owned; freed by free_gptq)
  ferrum::cuda::glue::GptqWeight* gptq = nullptr;
};

namespace ferrum::cuda::glue {

// The plugin's live weights (same scheme as its buffers: a handle is checked without touching
// freed memory).
common::HandleTable<ferrum_qweight>& qweight_table();

// The weight argument must be a live weight of this plugin, of `kind`, on the context's device.
Status find_weight(const char* op, const ferrum_context& c, const ferrum_qweight* h, ferrum_qweight::Kind kind,
                   ferrum_qweight*& w);

// Frees a GPTQ weight's device arrays on `device` and the weight itself; NULL is a no-op.
Status free_gptq(int device, GptqWeight* g) noexcept;

// The GPTQ slots (glue/gptq.cpp), listed in the family table of glue/quant_matmul.cpp.
ferrum_status load_gptq(ferrum_context* ctx, const ferrum_load_gptq_args* a);
ferrum_status load_gptq_stacked(ferrum_context* ctx, const ferrum_load_gptq_stacked_args* a);
ferrum_status marlin_gemm(ferrum_context* ctx, const ferrum_marlin_gemm_args* a);

}  // namespace ferrum::cuda::glue
