// ferrum-run's engine: a Llama / Mistral / Qwen2 / Qwen3 / Qwen3-MoE decoder whose weights come
// from a TensorSource (a safetensors checkpoint or a GGUF file, weights.hpp), run through the
// facade's ops with one of two KV caches:
//
//  - paged: per layer one K and one V pool [blocks, block_size, kv_heads, head_dim] shared by all
//    sequences; a BlockAllocator hands blocks to sequences as they grow and takes them back when
//    they finish. A step is a packed varlen batch (any mix of prefill chunks and decode tokens of
//    several sequences): split_qkv_norm_rope_into_paged_cache_varlen writes K/V into each
//    sequence's blocks and paged_varlen_attention attends, so continuous batching and chunked
//    prefill are one code path (a step of decode tokens only attends with
//    paged_batched_decode_attention, the decode kernel).
//    With int8 / fp8 pools (--kv-dtype) the step instead splits q/k/v, rotates them per token
//    (qk_norm_rope_batched_per_item), appends each sequence's K/V with <q>_kv_append_paged and
//    attends one query at a time with <q>_paged_decode_attention (the ops have no varlen form).
//  - contiguous: one sequence at a time, [kv_heads, capacity, head_dim] caches
//    (split_qkv_norm_rope_into_cache + flash_attention), for plugins without the paged ops.
//
// A linear layer is a gemm on a dense weight, a gguf_matmul on a GGUF one or a marlin_gemm on a
// GPTQ one; a projection whose parts cannot be stacked into one weight (GGUF types, GPTQ g_idx
// that differ) runs one matmul per part and joins the outputs (transpose_token_to_head,
// copy_slice, transpose_head_to_token).
//
// Per layer: rms_norm → gemm(q|k|v fused) [+ add_bias for Qwen2] → QK-norm (Qwen3) + RoPE →
// attention → gemm(o) → fused_add_rms_norm → gemm(gate|up fused) → fused_silu_mul_split →
// gemm(down) → fused_add_rms_norm (a Qwen3-MoE sparse layer: gemm(router) →
// route_topk_softmax → moe_align_block_size → fused_moe instead of the dense MLP); final norm;
// lm_head (the embedding when tied) on the last token of each sequence in the step. Decode
// steps can run as captured graphs (EngineOptions::graphs). With tensor parallelism
// (EngineOptions::tp_size) an all_reduce follows the o and down projections.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <ferrum/ferrum.hpp>

#include "hf_config.hpp"
#include "weights.hpp"

namespace ferrum::run {

enum class KvLayout { contiguous, paged };
// The paged cache's element type: the activation dtype, or int8 / fp8 codes with an f32 scale per
// (token, KV head) through the quantised-KV ops.
enum class KvDtype { activation, int8, fp8 };

// The ops each cache needs beyond the dense ones, and those the model's layers need beyond the
// dense ones (the MoE ops for Qwen3-MoE).
std::vector<Op> kv_ops(KvLayout kv, KvDtype dtype = KvDtype::activation);
std::vector<Op> model_ops(const HfConfig& cfg);
// The graph family ops captured decode steps need (set_decode_state marks the family: a plugin
// without it has no graphs even where the facade composes the others).
std::vector<Op> graph_ops();

// Fixed-size blocks of the paged pools, handed out and taken back. Ids are u32 (the block
// tables' index type).
class BlockAllocator {
 public:
  explicit BlockAllocator(uint64_t blocks);
  uint64_t total() const { return total_; }
  uint64_t free_count() const { return free_.size(); }
  // A free block id; std::nullopt when none is left.
  std::optional<uint32_t> allocate();
  void release(uint32_t block);

 private:
  uint64_t total_ = 0;
  std::vector<uint32_t> free_;
};

struct EngineOptions {
  KvLayout kv = KvLayout::paged;
  KvDtype kv_dtype = KvDtype::activation;  // int8 / fp8 need kv == paged
  uint64_t block_size = 16;
  uint64_t max_positions = 0;    // longest sequence (prompt + new tokens): RoPE rows, table width
  uint64_t max_step_tokens = 0;  // rows of one step (the chunked-prefill budget)
  uint64_t max_seqs = 1;         // sequences in one step (paged); contiguous: 1
  uint64_t kv_blocks = 0;        // paged: blocks per layer pool
  // Decode steps (one token per sequence) through captured graphs, one per batch size, replayed
  // with the step's ids and varlen metadata written to device buffers first; paged activation-
  // dtype caches only (the quantised append takes a host block list).
  bool graphs = false;
  bool graphs_emulate = false;  // with graphs: run that form eagerly, without capturing (a test mode)
  // Paged activation-dtype decode steps (one token per sequence) through
  // paged_batched_decode_attention instead of paged_varlen_attention, when the backend has it.
  bool decode_kernel = true;
  // Tensor parallelism: this engine is one of tp_size ranks (the context joined their world with
  // comm_init; the config and the source give this rank's share of the heads and the MLP); the
  // attention output projection and the MLP down projection are summed across ranks (all_reduce).
  uint64_t tp_size = 1;
};

class Engine {
 public:
  // Checks every tensor against the config (shape, dtype) and uploads it; LoadError naming the
  // file and tensor on a mismatch.
  Engine(Context& ctx, const HfConfig& cfg, TensorSource& src, const EngineOptions& opt);
  ~Engine();  // drops the captured graphs
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // One sequence's new tokens in a step.
  struct Chunk {
    uint32_t seq = 0;                  // a slot from open_sequence
    std::span<const uint32_t> tokens;  // at positions len(seq) .. len(seq) + size - 1
  };
  // Runs one step over the chunks (at most max_seqs, together at most max_step_tokens tokens;
  // distinct slots) and appends their K/V. Returns, for each chunk's last token in chunk order,
  // the index of its largest logit (argmax_rows_f16 on the device: lowest index on ties) and,
  // when `want_logits`, the f32 logits themselves ([chunks.size() × vocab]; read back to the
  // host, which a greedy step without them avoids). Paged: blocks are allocated as sequences
  // grow; the caller checks blocks_for() against free_blocks() first.
  struct StepResult {
    std::vector<uint32_t> argmax;
    std::vector<float> logits;  // empty unless asked for
  };
  StepResult step(const std::vector<Chunk>& chunks, bool want_logits);

  // A new empty sequence slot (nullopt when every slot is taken), and its release (its blocks
  // go back to the allocator).
  std::optional<uint32_t> open_sequence();
  void close_sequence(uint32_t seq);
  uint64_t len(uint32_t seq) const { return seqs_.at(seq).len; }
  // Blocks a sequence of `len` tokens needs in total, and those still free.
  uint64_t blocks_for(uint64_t len) const;
  uint64_t free_blocks() const { return alloc_.free_count(); }
  uint64_t blocks_held(uint32_t seq) const { return seqs_.at(seq).blocks.size(); }

  uint64_t weight_bytes() const { return weight_bytes_; }
  uint64_t kv_cache_bytes() const { return kv_cache_bytes_; }
  const EngineOptions& options() const { return opt_; }

 private:
  struct Layer {
    Buffer input_norm, b_qkv, q_norm, k_norm, post_norm, cache_k, cache_v;
    KvCacheQuant quant;  // int8 / fp8 pools
    Linear w_qkv, w_o, w_gate_up, w_down;
    // Qwen3-MoE sparse layers: router [E, H], experts' gate|up [E, 2·I, H] and down [E, H, I].
    bool moe = false;
    Buffer router, experts_gate_up, experts_down;
  };
  void mlp(Layer& L, uint64_t M);
  void layers_forward(const std::vector<Chunk>& chunks, const std::vector<uint32_t>& cu, const std::vector<uint32_t>& pos,
                      uint64_t max_kv);
  void head(const Buffer& rows, uint64_t S);
  struct Seq {
    bool open = false;
    uint64_t len = 0;
    std::vector<uint32_t> blocks;
  };
  Buffer dense(const std::string& name, std::vector<uint64_t> shape);
  Buffer dense(const std::vector<std::string>& names, const std::vector<std::vector<uint64_t>>& shapes);
  Linear linear(const std::vector<std::string>& names, const std::vector<std::vector<uint64_t>>& shapes, uint64_t head_width);
  // out[M, w.n] = x[M, w.k] · wᵀ
  void matmul(const Linear& w, const Buffer& x, Buffer& out, uint64_t M);
  void attention_paged(Layer& L, uint64_t M, uint64_t S, uint64_t max_kv);
  void attention_contiguous(Layer& L, uint64_t T, uint64_t p0);
  void attention_quant(Layer& L, const std::vector<Chunk>& chunks, const std::vector<uint32_t>& cu,
                       const std::vector<uint32_t>& pos);

  Context& ctx_;
  HfConfig cfg_;
  TensorSource& src_;
  EngineOptions opt_;
  uint64_t weight_bytes_ = 0, kv_cache_bytes_ = 0, max_blocks_per_seq_ = 0;
  BlockAllocator alloc_{0};
  std::vector<Seq> seqs_;
  Buffer embedding_, final_norm_;
  Linear lm_head_;  // empty when the dense embedding table serves as the head (tied)
  RopeTables rope_;
  std::vector<Layer> layers_;
  // scratch, sized for max_step_tokens rows and max_seqs sequences
  Buffer x_, a_, qkv_, q_, attn_, attn_t_, o_, gate_up_, act_, down_, last_, logits_;
  Buffer cu_seqlens_, pos_offsets_, block_tables_;
  Buffer ids_dev_;               // graphs: the step's token ids on the device
  Buffer kv_lens_;               // decode kernel: each sequence's KV length after the step
  bool decode_kernel_ = false;
  std::set<uint64_t> captured_;  // graph keys (batch sizes) recorded
  // int8 / fp8 caches: token-major split q / k / v, rotated k, RoPE positions [M], one sequence's
  // K/V rows, one query row in and out, and each sequence slot's block table on the device
  Buffer q_tm_, k_tm_, v_tm_, k_rot_, positions_, k_seq_, v_seq_, q_row_, o_row_;
  std::vector<Buffer> slot_tables_;
  // joining the parts of a multi-part linear: one part's output, its head-major copy, all parts
  Buffer part_out_, part_t_, joined_;
  uint64_t max_join_rows_ = 0;
  // MoE scratch: router logits [M, E], top-k ids (I32) and weights (F32) [M, K], the routing.
  Buffer router_logits_, topk_ids_, topk_weights_, sorted_ids_, expert_ids_, num_post_padded_;
  static constexpr uint64_t kMoeBlock = 16;
};

}  // namespace ferrum::run
