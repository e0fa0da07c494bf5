// ferrum-run: a Hugging Face config.json read into the model shape ferrum-run runs.
//
// Architectures: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM (q/k/v bias),
// Qwen3ForCausalLM (QK-norm) and Qwen3MoeForCausalLM (QK-norm, routed experts). Both the transformers 4.x and 5.x spellings are read: rope_theta at
// the top level or under rope_parameters, rope_scaling or rope_parameters for the scaling,
// torch_dtype or dtype. RoPE scalings: default, linear, llama3, yarn; any other rope_type is a
// LoadError naming it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ferrum::run {

enum class Arch { llama, qwen2, qwen3, qwen3_moe };

struct HfConfig {
  std::string path;          // the config.json read
  std::string architecture;  // as config.json names it, e.g. "Qwen3ForCausalLM"
  Arch arch = Arch::llama;
  uint64_t hidden = 0, layers = 0, q_heads = 0, kv_heads = 0, head_dim = 0, ffn = 0, vocab = 0;
  uint64_t max_position_embeddings = 0;
  double rms_eps = 1e-6;
  bool tie_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2, or attention_bias: true)
  bool qk_norm = false;         // Qwen3: RMSNorm of each q/k head before RoPE
  bool rope_interleaved = false;  // GGUF llama: q/k rows permuted for GPT-J-style (interleaved) RoPE
  // Qwen3-MoE: experts, experts per token, expert MLP width, renormalised top-k weights, and
  // which layers are sparse (moe_layer[l]; the others are dense MLPs of width ffn).
  uint64_t num_experts = 0, experts_per_tok = 0, moe_ffn = 0;
  bool norm_topk_prob = false;
  std::vector<bool> moe_layer;
  uint64_t sliding_window = 0;  // 0 = none (Mistral's, when set)
  std::string dtype;            // torch_dtype / dtype ("float32", "bfloat16", ...); may be empty
  std::vector<uint32_t> eos_ids;  // eos_token_id (an id or a list); may be empty
  int64_t bos_id = -1;            // bos_token_id; -1 when none
  // GPTQ int4 (quantization_config quant_method "gptq", AutoGPTQ v1 format): the decoder's linear
  // layers are stored as qweight / qzeros / scales / g_idx; group_size 0 = one group.
  bool gptq = false;
  uint64_t gptq_group_size = 0;
  bool gptq_sym = false;
  // RoPE: the per-pair inverse frequencies after scaling ([head_dim / 2]) and the factor that
  // multiplies cos and sin (yarn's attention factor; 1 otherwise).
  double rope_theta = 10000.0;
  std::string rope_type = "default";
  std::vector<double> inv_freq;
  double rope_attention_factor = 1.0;
};

// Reads and checks <dir>/config.json; LoadError naming the file and the key on any problem.
HfConfig read_hf_config(const std::string& dir);

}  // namespace ferrum::run
