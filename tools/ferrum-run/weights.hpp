// ferrum-run: where the engine's weights come from. The engine asks for tensors by their Hugging
// Face names and shapes ([out, in] for a linear weight); a TensorSource checks each against the
// file (shape, dtype) and uploads it:
//   - SafetensorsSource: a Hugging Face checkpoint; dense weights through from_weight_bytes
//     (f32 / f16 / bf16 converted to the activation dtype), GPTQ int4 linear layers (qweight,
//     qzeros, scales, g_idx) through load_gptq + marlin_gemm;
//   - GgufSource: a GGUF file, names mapped to llama.cpp's (blk.N.attn_q.weight, ...), shapes
//     reversed (GGUF lists the innermost dimension first). F32 / F16 / BF16 tensors are dense;
//     quantised ones (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K) stay quantised for linear layers
//     (load_quant + gguf_matmul) and are dequantised on the device (gguf_dequantize) where a
//     dense table is needed (the embedding, norms).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ferrum/ferrum.hpp>

#include "gguf.hpp"
#include "hf_config.hpp"
#include "safetensors.hpp"

namespace ferrum::run {

// A linear layer's weight: one or more parts whose outputs are packed side by side, each part
// `heads` heads of `head_width` outputs ([M, Σ rows]). One part when all rows could be uploaded
// together (dense, or quantised parts of one type); GGUF files that mix types within a fused
// projection (Q4_K_M's q/k vs v) give several.
struct Linear {
  struct Part {
    Buffer dense;   // [rows, k] of the activation dtype, or
    QWeight quant;  // a GGUF weight (gguf_matmul) or, with gptq, a GPTQ int4 one (marlin_gemm)
    bool gptq = false;
    uint64_t rows = 0;
  };
  std::vector<Part> parts;
  uint64_t head_width = 0;  // the unit the parts are joined in (head_dim for q|k|v, ffn for gate|up)
  uint64_t n = 0, k = 0;    // the whole: [n = Σ rows, k]
  uint64_t bytes = 0;       // bytes uploaded (dense elements or quantised blocks)
  bool quantised() const;
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // The file or directory, for messages.
  virtual const std::string& where() const = 0;
  virtual bool has(const std::string& name) const = 0;
  // True when the tensor is stored quantised (GGUF).
  virtual bool quantised(const std::string& name) const = 0;
  // True when the tensor exists and holds a non-zero byte (a bias that cannot be ignored).
  virtual bool nonzero(const std::string&) const { return false; }
  // The row-wise concatenation of `names` (each checked against its `shapes` entry) as one dense
  // buffer of the activation dtype.
  virtual Buffer dense(Context& ctx, const std::vector<std::string>& names,
                       const std::vector<std::vector<uint64_t>>& shapes) = 0;
  // The same as a linear weight (quantised where the file is).
  virtual Linear linear(Context& ctx, const std::vector<std::string>& names,
                        const std::vector<std::vector<uint64_t>>& shapes, uint64_t head_width) = 0;
  // Tensor parallelism (Megatron split) for rank `rank` of `size`: the engine then asks for this
  // rank's shapes, and the source serves the matching slice of each file tensor — rows of
  // q/k/v_proj (weights and biases) and gate/up_proj (of every expert too), columns of o_proj and
  // down_proj, every other tensor whole.
  void set_tensor_parallel(uint64_t rank, uint64_t size) {
    tp_rank_ = rank;
    tp_size_ = size;
  }

 protected:
  uint64_t tp_rank_ = 0, tp_size_ = 1;
};

class SafetensorsSource : public TensorSource {
 public:
  // Tensor parallelism: F32 / F16 / BF16 tensors (a GPTQ checkpoint is refused before loading).
  SafetensorsSource(const Checkpoint& ckpt, const HfConfig& cfg) : ckpt_(ckpt), cfg_(cfg) {}
  const std::string& where() const override { return ckpt_.dir(); }
  bool has(const std::string& name) const override { return ckpt_.find(name) != nullptr; }
  bool quantised(const std::string& name) const override;
  bool nonzero(const std::string& name) const override;
  Buffer dense(Context& ctx, const std::vector<std::string>& names, const std::vector<std::vector<uint64_t>>& shapes) override;
  Linear linear(Context& ctx, const std::vector<std::string>& names, const std::vector<std::vector<uint64_t>>& shapes,
                uint64_t head_width) override;

 private:
  Linear gptq_linear(Context& ctx, const std::vector<std::string>& names,
                     const std::vector<std::vector<uint64_t>>& shapes, uint64_t head_width);
  const Checkpoint& ckpt_;
  const HfConfig& cfg_;
};

class GgufSource : public TensorSource {
 public:
  // act_precision: load_quant's (ABI 1.2) for the quantised linear weights. Tensor parallelism:
  // rows split by whole rows; columns (o, down) split where each rank's share is a whole number
  // of the type's blocks (32 columns, 256 for the K-quants), else a load error naming the tensor.
  explicit GgufSource(const GgufFile& file, int32_t act_precision = FERRUM_QUANT_ACT_EXACT)
      : file_(file), act_precision_(act_precision) {}
  const std::string& where() const override { return file_.path(); }
  bool has(const std::string& name) const override;
  bool quantised(const std::string& name) const override;
  Buffer dense(Context& ctx, const std::vector<std::string>& names, const std::vector<std::vector<uint64_t>>& shapes) override;
  Linear linear(Context& ctx, const std::vector<std::string>& names, const std::vector<std::vector<uint64_t>>& shapes,
                uint64_t head_width) override;
  // llama.cpp's name of a Hugging Face tensor name ("" when it has none).
  static std::string gguf_name(const std::string& hf_name);

 private:
  const GgufTensor& get(const std::string& hf_name, const std::vector<uint64_t>& shape) const;
  // This rank's part of a tensor whose rank-local shape is `shape`: the tensor, its bytes (a view of
  // the file, or of `store` for a column split) and its rows / columns.
  struct Slice {
    const GgufTensor* t = nullptr;
    std::span<const uint8_t> bytes;
    uint64_t rows = 0, cols = 0;
  };
  Slice slice(const std::string& hf_name, const std::vector<uint64_t>& shape, std::vector<uint8_t>& store) const;
  const GgufFile& file_;
  int32_t act_precision_;
};

// The model shape of a GGUF file's metadata (general.architecture llama, qwen2 or qwen3), in the
// form read_hf_config gives. Its llama architecture stores q/k rows permuted for interleaved
// RoPE (rope_interleaved); rope_freqs.weight, when present, divides the frequencies.
HfConfig read_gguf_config(const GgufFile& file);

}  // namespace ferrum::run
