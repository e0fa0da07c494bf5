#include "engine.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <ferrum/common/checked.hpp>

#include "load_error.hpp"

namespace ferrum::run {
namespace {

// An element count from dimensions (config values are bounded when read, so this cannot wrap in
// practice; the check keeps it so).
uint64_t elems(std::initializer_list<common::Size> dims) {
  const common::Size n = common::shape_size(dims);
  if (!n.ok()) throw std::length_error("ferrum-run: a buffer size does not fit in 64 bits");
  return n.value;
}

std::string layer_name(uint64_t l, const char* rest) { return "model.layers." + std::to_string(l) + "." + rest; }

}  // namespace

std::vector<Op> kv_ops(KvLayout kv, KvDtype dtype) {
  if (kv == KvLayout::paged && dtype == KvDtype::int8)
    return {Op::split_qkv, Op::qk_norm_rope_batched_per_item, Op::alloc_paged_int8_layer, Op::int8_kv_append_paged,
            Op::int8_paged_decode_attention};
  if (kv == KvLayout::paged && dtype == KvDtype::fp8)
    return {Op::split_qkv, Op::qk_norm_rope_batched_per_item, Op::alloc_paged_fp8_layer, Op::fp8_kv_append_paged,
            Op::fp8_paged_decode_attention};
  if (kv == KvLayout::paged) return {Op::split_qkv_norm_rope_into_paged_cache_varlen, Op::paged_varlen_attention};
  return {Op::split_qkv_norm_rope_into_cache, Op::flash_attention, Op::transpose_head_to_token};
}

std::vector<Op> graph_ops() {
  return {Op::begin_graph_capture, Op::end_graph_capture, Op::replay_graph, Op::reset_all_graphs, Op::set_decode_state,
          Op::embedding_lookup_dev};
}

std::vector<Op> model_ops(const HfConfig& cfg) {
  std::vector<Op> ops;
  if (cfg.arch == Arch::qwen3_moe) ops = {Op::route_topk_softmax, Op::moe_align_block_size, Op::fused_moe};
  if (cfg.gptq) ops.insert(ops.end(), {Op::load_gptq, Op::marlin_gemm, Op::transpose_token_to_head});
  return ops;
}

BlockAllocator::BlockAllocator(uint64_t blocks) : total_(blocks) {
  if (blocks > UINT32_MAX) throw std::invalid_argument("ferrum-run: more KV blocks than u32 ids");
  free_.reserve(blocks);
  // Handed out from the back: block 0 first.
  for (uint64_t i = blocks; i > 0; --i) free_.push_back(static_cast<uint32_t>(i - 1));
}

std::optional<uint32_t> BlockAllocator::allocate() {
  if (free_.empty()) return std::nullopt;
  const uint32_t b = free_.back();
  free_.pop_back();
  return b;
}

void BlockAllocator::release(uint32_t block) { free_.push_back(block); }

Buffer Engine::dense(const std::vector<std::string>& names, const std::vector<std::vector<uint64_t>>& shapes) {
  Buffer b = src_.dense(ctx_, names, shapes);
  weight_bytes_ += b.size_bytes();
  return b;
}

Buffer Engine::dense(const std::string& name, std::vector<uint64_t> shape) {
  return dense(std::vector<std::string>{name}, std::vector<std::vector<uint64_t>>{std::move(shape)});
}

Linear Engine::linear(const std::vector<std::string>& names, const std::vector<std::vector<uint64_t>>& shapes,
                      uint64_t head_width) {
  Linear w = src_.linear(ctx_, names, shapes, head_width);
  weight_bytes_ += w.bytes;
  if (w.parts.size() > 1) max_join_rows_ = std::max(max_join_rows_, w.n);
  return w;
}

Engine::Engine(Context& ctx, const HfConfig& cfg, TensorSource& src, const EngineOptions& opt)
    : ctx_(ctx), cfg_(cfg), src_(src), opt_(opt) {
  const HfConfig& c = cfg_;
  const uint64_t H = c.hidden, hd = c.head_dim, nq = c.q_heads, nkv = c.kv_heads, F = c.ffn, V = c.vocab;
  if (opt_.max_positions == 0 || opt_.max_step_tokens == 0 || opt_.max_seqs == 0 || opt_.block_size == 0 ||
      opt_.max_positions > UINT32_MAX - opt_.block_size)
    throw std::invalid_argument("ferrum-run: invalid engine options");
  if (opt_.kv == KvLayout::contiguous) opt_.max_seqs = 1;
  if (opt_.kv != KvLayout::paged || opt_.kv_dtype != KvDtype::activation) opt_.graphs = false;

  embedding_ = dense("model.embed_tokens.weight", {V, H});
  for (uint64_t l = 0; l < c.layers; ++l) {
    Layer L;
    auto name = [&](const std::string& rest) { return layer_name(l, rest.c_str()); };
    L.input_norm = dense(name("input_layernorm.weight"), {H});
    L.w_qkv = linear({name("self_attn.q_proj.weight"), name("self_attn.k_proj.weight"), name("self_attn.v_proj.weight")},
                     {{nq * hd, H}, {nkv * hd, H}, {nkv * hd, H}}, hd);
    if (c.attention_bias)
      L.b_qkv = dense({name("self_attn.q_proj.bias"), name("self_attn.k_proj.bias"), name("self_attn.v_proj.bias")},
                      {{nq * hd}, {nkv * hd}, {nkv * hd}});
    if (c.qk_norm) {
      L.q_norm = dense(name("self_attn.q_norm.weight"), {hd});
      L.k_norm = dense(name("self_attn.k_norm.weight"), {hd});
    }
    L.w_o = linear({name("self_attn.o_proj.weight")}, {{H, nq * hd}}, H);
    L.post_norm = dense(name("post_attention_layernorm.weight"), {H});
    L.moe = c.moe_layer[l];
    if (L.moe) {
      const uint64_t E = c.num_experts, I = c.moe_ffn;
      L.router = dense(name("mlp.gate.weight"), {E, H});
      if (src.has(name("mlp.experts.gate_up_proj"))) {
        // transformers 5.x's stacked in-memory layout, should a checkpoint carry it
        L.experts_gate_up = dense(name("mlp.experts.gate_up_proj"), {E, 2 * I, H});
        L.experts_down = dense(name("mlp.experts.down_proj"), {E, H, I});
      } else {
        std::vector<std::string> gu, dn;
        std::vector<std::vector<uint64_t>> gu_shapes, dn_shapes;
        for (uint64_t e = 0; e < E; ++e) {
          const std::string pre = "mlp.experts." + std::to_string(e) + ".";
          gu.insert(gu.end(), {name(pre + "gate_proj.weight"), name(pre + "up_proj.weight")});
          dn.push_back(name(pre + "down_proj.weight"));
          gu_shapes.insert(gu_shapes.end(), {{I, H}, {I, H}});
          dn_shapes.push_back({H, I});
        }
        L.experts_gate_up = dense(gu, gu_shapes);
        L.experts_down = dense(dn, dn_shapes);
      }
    } else {
      L.w_gate_up = linear({name("mlp.gate_proj.weight"), name("mlp.up_proj.weight")}, {{F, H}, {F, H}}, F);
      L.w_down = linear({name("mlp.down_proj.weight")}, {{H, F}}, H);
    }
    layers_.push_back(std::move(L));
  }
  // GPTQ checkpoints carry a bias per quantised layer (zeros where the model has none); one the
  // model does not apply must be zero.
  if (c.gptq)
    for (uint64_t l = 0; l < c.layers; ++l)
      for (const char* proj : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
        const std::string bias = layer_name(l, proj) + ".bias";
        const bool applied = c.attention_bias && std::string(proj).find("self_attn.") == 0 && std::string(proj) != "self_attn.o_proj";
        if (!applied && src.nonzero(bias))
          throw LoadError(src.where() + ": tensor '" + bias + "' is not zero, and " + c.architecture + " has no such bias");
      }
  final_norm_ = dense("model.norm.weight", {H});
  if (!c.tie_embeddings) {
    if (!src.has("lm_head.weight"))
      throw LoadError(src.where() + ": the checkpoint has no tensor 'lm_head.weight' and " + c.path +
                      " does not tie the embeddings (tie_word_embeddings is false)");
    lm_head_ = linear({"lm_head.weight"}, {{V, H}}, V);
  } else if (src.quantised("model.embed_tokens.weight")) {
    lm_head_ = linear({"model.embed_tokens.weight"}, {{V, H}}, V);  // the quantised table as the head
  }

  // RoPE tables [max_positions, hd / 2] in f32: cos(p · inv_freq[i]) · attention factor.
  const uint64_t P = opt_.max_positions, half = hd / 2;
  std::vector<float> cos(elems({P, half})), sin(cos.size());
  for (uint64_t p = 0; p < P; ++p)
    for (uint64_t i = 0; i < half; ++i) {
      const double ang = double(p) * c.inv_freq[i];
      cos[p * half + i] = static_cast<float>(std::cos(ang) * c.rope_attention_factor);
      sin[p * half + i] = static_cast<float>(std::sin(ang) * c.rope_attention_factor);
    }
  rope_ = RopeTables::from_half(ctx, cos, sin, P, half, Dtype::f32);

  // KV caches.
  const uint64_t bs = opt_.block_size;
  max_blocks_per_seq_ = common::ceil_div(P, bs);
  if (opt_.kv == KvLayout::paged) {
    if (opt_.kv_blocks == 0) throw std::invalid_argument("ferrum-run: a paged cache needs blocks");
    alloc_ = BlockAllocator(opt_.kv_blocks);
  }
  const uint64_t slots = opt_.kv == KvLayout::paged ? elems({opt_.kv_blocks, bs}) : P;
  if (opt_.kv_dtype != KvDtype::activation && opt_.kv != KvLayout::paged)
    throw std::invalid_argument("ferrum-run: int8 / fp8 KV caches are paged");
  for (Layer& L : layers_) {
    if (opt_.kv_dtype == KvDtype::int8) {
      L.quant = ctx.alloc_paged_int8_layer({.max_blocks_per_seq = opt_.kv_blocks, .block_size = bs, .num_kv_heads = nkv, .head_dim = hd});
    } else if (opt_.kv_dtype == KvDtype::fp8) {
      L.quant = ctx.alloc_paged_fp8_layer({.max_blocks_per_seq = opt_.kv_blocks, .block_size = bs, .num_kv_heads = nkv, .head_dim = hd});
    } else {
      L.cache_k = ctx.alloc(elems({slots, nkv, hd}));
      L.cache_v = ctx.alloc(elems({slots, nkv, hd}));
      kv_cache_bytes_ += L.cache_k.size_bytes() + L.cache_v.size_bytes();
    }
    if (L.quant.k)
      kv_cache_bytes_ += L.quant.k.size_bytes() + L.quant.v.size_bytes() + L.quant.k_scales.size_bytes() +
                         L.quant.v_scales.size_bytes();
  }
  seqs_.resize(opt_.max_seqs);

  // Scratch.
  const uint64_t M = opt_.max_step_tokens, S = opt_.max_seqs;
  x_ = ctx.alloc(elems({M, H}));
  a_ = ctx.alloc(elems({M, H}));
  qkv_ = ctx.alloc(elems({M, nq + 2 * nkv, hd}));
  q_ = ctx.alloc(elems({M, nq, hd}));
  attn_ = ctx.alloc(elems({M, nq, hd}));
  if (opt_.kv == KvLayout::contiguous) attn_t_ = ctx.alloc(elems({M, nq, hd}));
  o_ = ctx.alloc(elems({M, H}));
  gate_up_ = ctx.alloc(elems({M, 2, F}));
  act_ = ctx.alloc(elems({M, F}));
  if (c.arch == Arch::qwen3_moe) {
    const uint64_t E = c.num_experts, pairs = elems({M, c.experts_per_tok});
    const uint64_t cap = (common::Size(pairs) + common::Size(std::min(E, pairs)) * common::Size(kMoeBlock - 1)).value;
    router_logits_ = ctx.alloc(elems({M, E}));
    topk_ids_ = ctx.alloc_typed(Dtype::i32, pairs);
    topk_weights_ = ctx.alloc_typed(Dtype::f32, pairs);
    sorted_ids_ = ctx.alloc_typed(Dtype::i32, cap);
    expert_ids_ = ctx.alloc_typed(Dtype::i32, common::ceil_div(cap, kMoeBlock));
    num_post_padded_ = ctx.alloc_typed(Dtype::i32, 1);
  }
  down_ = ctx.alloc(elems({M, H}));
  last_ = ctx.alloc(elems({S, H}));
  if (max_join_rows_) {
    part_out_ = ctx.alloc(elems({M, max_join_rows_}));
    part_t_ = ctx.alloc(elems({M, max_join_rows_}));
    joined_ = ctx.alloc(elems({M, max_join_rows_}));
  }
  logits_ = ctx.alloc(elems({S, V}));
  if (opt_.kv_dtype != KvDtype::activation) {
    q_tm_ = ctx.alloc(elems({M, nq, hd}));
    k_tm_ = ctx.alloc(elems({M, nkv, hd}));
    v_tm_ = ctx.alloc(elems({M, nkv, hd}));
    k_rot_ = ctx.alloc(elems({M, nkv, hd}));
    k_seq_ = ctx.alloc(elems({M, nkv, hd}));
    v_seq_ = ctx.alloc(elems({M, nkv, hd}));
    positions_ = ctx.alloc_typed(Dtype::u32, M);
    q_row_ = ctx.alloc(elems({nq, hd}));
    o_row_ = ctx.alloc(elems({nq, hd}));
    for (uint64_t i = 0; i < S; ++i) slot_tables_.push_back(ctx.alloc_typed(Dtype::u32, max_blocks_per_seq_));
  }
  if (opt_.graphs) ids_dev_ = ctx.alloc_typed(Dtype::u32, S);
  decode_kernel_ = opt_.kv == KvLayout::paged && opt_.kv_dtype == KvDtype::activation && opt_.decode_kernel;
  if (decode_kernel_) kv_lens_ = ctx.alloc_typed(Dtype::u32, S);
  if (opt_.kv == KvLayout::paged) {
    cu_seqlens_ = ctx.alloc_typed(Dtype::u32, S + 1);
    pos_offsets_ = ctx.alloc_typed(Dtype::u32, S);
    block_tables_ = ctx.alloc_typed(Dtype::u32, elems({S, max_blocks_per_seq_}));
  }
}

uint64_t Engine::blocks_for(uint64_t len) const { return common::ceil_div(len, opt_.block_size); }

std::optional<uint32_t> Engine::open_sequence() {
  for (size_t i = 0; i < seqs_.size(); ++i)
    if (!seqs_[i].open) {
      seqs_[i] = Seq{.open = true, .len = 0, .blocks = {}};
      return static_cast<uint32_t>(i);
    }
  return std::nullopt;
}

void Engine::close_sequence(uint32_t seq) {
  Seq& s = seqs_.at(seq);
  for (uint32_t b : s.blocks) alloc_.release(b);
  s = Seq{};
}

Engine::StepResult Engine::step(const std::vector<Chunk>& chunks, bool want_logits) {
  const HfConfig& c = cfg_;
  const uint64_t H = c.hidden, V = c.vocab;
  const uint64_t S = chunks.size();
  if (S == 0 || S > opt_.max_seqs) throw std::invalid_argument("ferrum-run: a step of no or too many sequences");
  // Packed ids, varlen metadata, and (paged) blocks for the positions the step writes.
  std::vector<uint32_t> ids, cu{0}, pos, table(elems({S, max_blocks_per_seq_}), 0);
  uint64_t max_kv = 0;
  for (uint64_t s = 0; s < S; ++s) {
    const Chunk& ch = chunks[s];
    Seq& q = seqs_.at(ch.seq);
    if (!q.open || ch.tokens.empty()) throw std::invalid_argument("ferrum-run: a step chunk of a closed sequence or no tokens");
    const uint64_t end = q.len + ch.tokens.size();
    if (end > opt_.max_positions) throw std::invalid_argument("ferrum-run: a sequence beyond the configured positions");
    for (uint32_t t : ch.tokens) {
      if (t >= V) throw std::invalid_argument("ferrum-run: token id " + std::to_string(t) + " is not below the vocabulary");
      ids.push_back(t);
    }
    cu.push_back(static_cast<uint32_t>(ids.size()));
    pos.push_back(static_cast<uint32_t>(q.len));
    max_kv = std::max(max_kv, end);
    if (opt_.kv == KvLayout::paged) {
      while (q.blocks.size() < blocks_for(end)) {
        const auto b = alloc_.allocate();
        if (!b) throw std::runtime_error("ferrum-run: the paged KV pool is out of blocks");
        q.blocks.push_back(*b);
      }
      std::copy(q.blocks.begin(), q.blocks.end(), table.begin() + static_cast<ptrdiff_t>(s * max_blocks_per_seq_));
    }
  }
  const uint64_t M = ids.size();
  if (M > opt_.max_step_tokens) throw std::invalid_argument("ferrum-run: a step beyond the token budget");
  if (opt_.kv == KvLayout::contiguous && S != 1) throw std::invalid_argument("ferrum-run: contiguous KV runs one sequence");
  if (opt_.kv == KvLayout::paged) {
    ctx_.write_typed<uint32_t>(cu_seqlens_, cu);
    ctx_.write_typed<uint32_t>(pos_offsets_, pos);
    ctx_.write_typed<uint32_t>(block_tables_, table);
    if (M == S && decode_kernel_) {
      std::vector<uint32_t> lens(pos);
      for (uint32_t& n : lens) n += 1;
      ctx_.write_typed<uint32_t>(kv_lens_, lens);
    }
  }
  if (opt_.kv_dtype != KvDtype::activation) {
    std::vector<uint32_t> positions;
    for (uint64_t s = 0; s < S; ++s) {
      for (uint32_t j = 0; j < cu[s + 1] - cu[s]; ++j) positions.push_back(pos[s] + j);
      const auto& blocks = seqs_[chunks[s].seq].blocks;
      ctx_.write_typed<uint32_t>(slot_tables_[chunks[s].seq], blocks);
    }
    ctx_.write_typed<uint32_t>(positions_, positions);
  }

  const bool graph = opt_.graphs && opt_.kv == KvLayout::paged && opt_.kv_dtype == KvDtype::activation && M == S;
  if (graph) {
    // A decode step of S sequences: ids from device memory, every shape fixed by S, the KV bound
    // at the cache's capacity, so one recording per S serves every later step of that size.
    ctx_.write_typed<uint32_t>(ids_dev_, ids);
    auto record = [&] {
      ctx_.embedding_lookup_dev({.table = embedding_, .ids = ids_dev_, .out = x_, .batch = S, .dim = H});
      layers_forward(chunks, cu, pos, opt_.max_positions);
      head(a_, S);
    };
    if (opt_.graphs_emulate) {
      record();  // the captured form, run eagerly
    } else if (!captured_.count(S)) {
      record();  // warm-up: every plugin scratch grows before the capture
      ctx_.begin_graph_capture();
      record();
      ctx_.end_graph_capture(S);
      captured_.insert(S);
    }
    if (!opt_.graphs_emulate && !ctx_.replay_graph(S))
      throw std::runtime_error("ferrum-run: the decode graph was not replayed");
  } else {
    ctx_.embedding_lookup({.table = embedding_, .ids = ids, .out = x_, .dim = H});
    layers_forward(chunks, cu, pos, max_kv);
    for (uint64_t s = 0; s < S; ++s)
      ctx_.copy_slice({.src = a_, .src_offset = (uint64_t(cu[s + 1]) - 1) * H, .dst = last_, .dst_offset = s * H, .len = H});
    head(last_, S);
  }
  for (uint64_t s = 0; s < S; ++s) seqs_[chunks[s].seq].len += chunks[s].tokens.size();
  StepResult r;
  r.argmax = ctx_.argmax_rows_f16({.logits = logits_, .m = S, .n = V});
  if (want_logits) r.logits = ctx_.to_vec(logits_, S * V);
  return r;
}

void Engine::matmul(const Linear& w, const Buffer& x, Buffer& out, uint64_t M) {
  auto one = [&](const Linear::Part& p, Buffer& dst) {
    if (p.gptq) ctx_.marlin_gemm({.a = x, .weight = p.quant, .out = dst, .m = M});
    else if (p.quant) ctx_.gguf_matmul({.a = x, .weight = p.quant, .out = dst, .m = M});
    else ctx_.gemm({.a = x, .b = p.dense, .out = dst, .m = M, .n = p.rows, .k = w.k});
  };
  if (w.parts.size() == 1) return one(w.parts[0], out);
  // Each part's [M, rows] output, viewed as [M, heads, head_width], goes head-major into its
  // place in joined_ ([Σ heads, M, head_width]); one transpose back gives the packed rows.
  const uint64_t hw = w.head_width;
  uint64_t off = 0;
  for (const Linear::Part& p : w.parts) {
    one(p, part_out_);
    const uint64_t heads = p.rows / hw;
    const Buffer* src = &part_out_;
    if (heads > 1) {
      ctx_.transpose_token_to_head({.src = part_out_, .dst = part_t_, .tokens = M, .heads = heads, .dim = hw});
      src = &part_t_;
    }
    ctx_.copy_slice({.src = *src, .src_offset = 0, .dst = joined_, .dst_offset = off * M, .len = M * p.rows});
    off += p.rows;
  }
  ctx_.transpose_head_to_token({.src = joined_, .dst = out, .tokens = M, .heads = w.n / hw, .dim = hw});
}

// The MLP of `a_` into `down_`: dense SwiGLU, or for a sparse layer the router, top-k softmax
// routing, and the fused expert MLP with its weighted combine.
void Engine::mlp(Layer& L, uint64_t M) {
  const HfConfig& c = cfg_;
  const uint64_t H = c.hidden, F = c.ffn;
  if (!L.moe) {
    matmul(L.w_gate_up, a_, gate_up_, M);
    ctx_.fused_silu_mul_split({.gate_up = gate_up_, .out = act_, .tokens = M, .im = F});
    matmul(L.w_down, act_, down_, M);
    if (opt_.tp_size > 1) ctx_.all_reduce(down_, M * H, FERRUM_REDUCE_SUM);  // the ranks' partial sums
    return;
  }
  const uint64_t E = c.num_experts, K = c.experts_per_tok;
  ctx_.gemm({.a = a_, .b = L.router, .out = router_logits_, .m = M, .n = E, .k = H});
  ctx_.route_topk_softmax({.logits = router_logits_, .out_ids = topk_ids_, .out_weights = topk_weights_, .num_tokens = M,
                           .num_experts = E, .top_k = K, .norm_topk_prob = c.norm_topk_prob});
  ctx_.moe_align_block_size({.topk_ids = topk_ids_, .sorted_token_ids = sorted_ids_, .expert_ids = expert_ids_,
                             .num_tokens_post_padded = num_post_padded_, .num_pairs = M * K, .num_experts = E,
                             .block_size = kMoeBlock});
  ctx_.fused_moe({.x = a_, .topk_weights = topk_weights_, .sorted_token_ids = sorted_ids_, .expert_ids = expert_ids_,
                  .num_tokens_post_padded = num_post_padded_, .w_gate_up_dense = &L.experts_gate_up,
                  .w_down_dense = &L.experts_down, .out = down_, .num_tokens = M, .hidden = H, .intermediate = c.moe_ffn,
                  .num_experts = E, .top_k = K, .block_size = kMoeBlock});
  // Each rank holds every expert's slice of the intermediate dimension (gate / up rows, down
  // columns); the routing is the same on every rank (same input, same router), so the weighted
  // combine of the partial down projections sums to the whole.
  if (opt_.tp_size > 1) ctx_.all_reduce(down_, M * H, FERRUM_REDUCE_SUM);
}

// Paged: K/V of every token into its sequence's blocks, token-major rotated queries, then one
// varlen attention over the packed batch (prefill chunks and decode tokens alike).
void Engine::attention_paged(Layer& L, uint64_t M, uint64_t S, uint64_t max_kv) {
  const HfConfig& c = cfg_;
  const QkMode mode = c.qk_norm ? QkMode::rms_norm_neox : c.rope_interleaved ? QkMode::gptj : QkMode::neox;
  ctx_.split_qkv_norm_rope_into_paged_cache_varlen(
      {.qkv = qkv_, .q_norm_w = c.qk_norm ? &L.q_norm : nullptr, .k_norm_w = c.qk_norm ? &L.k_norm : nullptr,
       .rope = &rope_, .q_out = q_, .cache_k = L.cache_k, .cache_v = L.cache_v, .cu_seqlens_q = cu_seqlens_,
       .pos_offsets = pos_offsets_, .block_tables = block_tables_, .num_seqs = S, .m_total = M, .q_heads = c.q_heads,
       .kv_heads = c.kv_heads, .head_dim = c.head_dim, .eps = static_cast<float>(c.rms_eps), .qk_mode = mode,
       .block_size = opt_.block_size, .max_blocks_per_seq = max_blocks_per_seq_});
  if (M == S && decode_kernel_) {
    // A pure decode step (one token per sequence): the batched decode kernel, over each
    // sequence's length after the step.
    ctx_.paged_batched_decode_attention({.q = q_, .k_pool = L.cache_k, .v_pool = L.cache_v, .out = attn_,
                                         .block_tables = block_tables_, .valid_kv_lens = kv_lens_, .num_seqs = S,
                                         .max_kv_len = max_kv, .num_heads = c.q_heads, .num_kv_heads = c.kv_heads,
                                         .head_dim = c.head_dim, .block_size = opt_.block_size,
                                         .max_num_blocks_per_seq = max_blocks_per_seq_, .scale = 0.0f,
                                         .sliding_window = c.sliding_window});
    return;
  }
  ctx_.paged_varlen_attention({.q = q_, .k_pool = L.cache_k, .v_pool = L.cache_v, .out = attn_, .cu_seqlens_q = cu_seqlens_,
                               .pos_offsets = pos_offsets_, .block_tables = block_tables_, .num_seqs = S, .total_q_tokens = M,
                               .max_kv_len = max_kv, .num_heads = c.q_heads, .num_kv_heads = c.kv_heads, .head_dim = c.head_dim,
                               .block_size = opt_.block_size, .max_num_blocks_per_seq = max_blocks_per_seq_, .scale = 0.0f,
                               .sliding_window = c.sliding_window});
}

// The layers over the M tokens of the step in x_ (embedded): the final-normed rows end in a_.
void Engine::layers_forward(const std::vector<Chunk>& chunks, const std::vector<uint32_t>& cu,
                            const std::vector<uint32_t>& pos, uint64_t max_kv) {
  const HfConfig& c = cfg_;
  const uint64_t H = c.hidden, M = cu.back(), S = chunks.size();
  const uint64_t qkv_cols = (c.q_heads + 2 * c.kv_heads) * c.head_dim;
  const float eps = static_cast<float>(c.rms_eps);
  ctx_.rms_norm({.x = x_, .w = layers_[0].input_norm, .eps = eps, .out = a_, .tokens = M, .dim = H});
  for (uint64_t l = 0; l < c.layers; ++l) {
    Layer& L = layers_[l];
    matmul(L.w_qkv, a_, qkv_, M);
    if (c.attention_bias) ctx_.add_bias({.data = qkv_, .bias = L.b_qkv, .rows = M, .cols = qkv_cols});
    if (opt_.kv == KvLayout::paged) {
      if (opt_.kv_dtype == KvDtype::activation) attention_paged(L, M, S, max_kv);
      else attention_quant(L, chunks, cu, pos);
      matmul(L.w_o, attn_, o_, M);
    } else {
      attention_contiguous(L, M, pos[0]);
      matmul(L.w_o, attn_t_, o_, M);
    }
    if (opt_.tp_size > 1) ctx_.all_reduce(o_, M * H, FERRUM_REDUCE_SUM);  // the ranks' partial sums
    ctx_.fused_add_rms_norm({.residual = x_, .x = o_, .w = L.post_norm, .eps = eps, .out = a_, .tokens = M, .dim = H});
    mlp(L, M);
    const Buffer& next_norm = l + 1 < c.layers ? layers_[l + 1].input_norm : final_norm_;
    ctx_.fused_add_rms_norm({.residual = x_, .x = down_, .w = next_norm, .eps = eps, .out = a_, .tokens = M, .dim = H});
  }
}

// logits_[S, vocab] from S final-normed rows.
void Engine::head(const Buffer& rows, uint64_t S) {
  if (lm_head_.parts.empty())
    ctx_.gemm({.a = rows, .b = embedding_, .out = logits_, .m = S, .n = cfg_.vocab, .k = cfg_.hidden});
  else
    matmul(lm_head_, rows, logits_, S);
}

Engine::~Engine() {
  if (captured_.empty()) return;
  try {
    ctx_.reset_all_graphs();
  } catch (const std::exception&) {
  }
}

// int8 / fp8 pools: token-major q and K rotated at their positions, each sequence's K/V quantised
// into its blocks (a host block list), then one decode-attention call per query token over that
// sequence's first pos + j + 1 positions.
void Engine::attention_quant(Layer& L, const std::vector<Chunk>& chunks, const std::vector<uint32_t>& cu,
                             const std::vector<uint32_t>& pos) {
  const HfConfig& c = cfg_;
  const uint64_t hd = c.head_dim, qd = c.q_heads * hd, kvd = c.kv_heads * hd, M = cu.back();
  const float eps = static_cast<float>(c.rms_eps);
  const QkMode mode = c.qk_norm ? QkMode::rms_norm_neox : c.rope_interleaved ? QkMode::gptj : QkMode::neox;
  const bool int8 = opt_.kv_dtype == KvDtype::int8;
  ctx_.split_qkv({.qkv = qkv_, .q = q_tm_, .k = k_tm_, .v = v_tm_, .tokens = M, .q_dim = qd, .kv_dim = kvd});
  ctx_.qk_norm_rope_batched_per_item({.input = q_tm_, .norm_w = c.qk_norm ? &L.q_norm : nullptr, .rope = &rope_, .output = q_,
                                      .positions = positions_, .m = M, .heads = c.q_heads, .head_dim = hd, .eps = eps, .mode = mode});
  ctx_.qk_norm_rope_batched_per_item({.input = k_tm_, .norm_w = c.qk_norm ? &L.k_norm : nullptr, .rope = &rope_, .output = k_rot_,
                                      .positions = positions_, .m = M, .heads = c.kv_heads, .head_dim = hd, .eps = eps, .mode = mode});
  KvCacheQuant& kv = L.quant;
  for (size_t s = 0; s < chunks.size(); ++s) {
    const uint64_t r0 = cu[s], n = cu[s + 1] - cu[s];
    const Buffer* k_in = &k_rot_;
    const Buffer* v_in = &v_tm_;
    if (r0 != 0) {  // the append reads rows from the start of its inputs
      ctx_.copy_slice({.src = k_rot_, .src_offset = r0 * kvd, .dst = k_seq_, .dst_offset = 0, .len = n * kvd});
      ctx_.copy_slice({.src = v_tm_, .src_offset = r0 * kvd, .dst = v_seq_, .dst_offset = 0, .len = n * kvd});
      k_in = &k_seq_;
      v_in = &v_seq_;
    }
    const std::vector<uint32_t>& blocks = seqs_[chunks[s].seq].blocks;
    if (int8)
      ctx_.int8_kv_append_paged({.k_in = *k_in, .v_in = *v_in, .layer_k = kv.k, .layer_v = kv.v, .layer_k_scales = kv.k_scales,
                                 .layer_v_scales = kv.v_scales, .paged_block_indices = blocks, .cache_len_before = pos[s],
                                 .tokens = n, .block_size = opt_.block_size, .num_kv_heads = c.kv_heads, .head_dim = hd});
    else
      ctx_.fp8_kv_append_paged({.k_in = *k_in, .v_in = *v_in, .layer_k = kv.k, .layer_v = kv.v, .layer_k_scales = kv.k_scales,
                                .layer_v_scales = kv.v_scales, .paged_block_indices = blocks, .cache_len_before = pos[s],
                                .tokens = n, .block_size = opt_.block_size, .num_kv_heads = c.kv_heads, .head_dim = hd});
    const Buffer& table = slot_tables_[chunks[s].seq];
    for (uint64_t j = 0; j < n; ++j) {
      const uint64_t row = r0 + j;
      const bool direct = M == 1;
      if (!direct) ctx_.copy_slice({.src = q_, .src_offset = row * qd, .dst = q_row_, .dst_offset = 0, .len = qd});
      const Buffer& q = direct ? q_ : q_row_;
      Buffer& o = direct ? attn_ : o_row_;
      if (int8)
        ctx_.int8_paged_decode_attention({.q = q, .layer_k = kv.k, .layer_v = kv.v, .layer_k_scales = kv.k_scales,
                                          .layer_v_scales = kv.v_scales, .block_table = table, .output = o,
                                          .num_q_heads = c.q_heads, .num_kv_heads = c.kv_heads, .head_dim = hd,
                                          .valid_kv_len = pos[s] + j + 1, .block_size = opt_.block_size, .scale = 0.0f,
                                          .sliding_window = c.sliding_window});
      else
        ctx_.fp8_paged_decode_attention({.q = q, .layer_k = kv.k, .layer_v = kv.v, .layer_k_scales = kv.k_scales,
                                         .layer_v_scales = kv.v_scales, .block_table = table, .output = o,
                                         .num_q_heads = c.q_heads, .num_kv_heads = c.kv_heads, .head_dim = hd,
                                         .valid_kv_len = pos[s] + j + 1, .block_size = opt_.block_size, .scale = 0.0f,
                                         .sliding_window = c.sliding_window});
      if (!direct) ctx_.copy_slice({.src = o_row_, .src_offset = 0, .dst = attn_, .dst_offset = row * qd, .len = qd});
    }
  }
}

// Contiguous: head-major queries, K/V straight into the caches at rows p0 .., causal flash
// attention over the first p0 + T rows, then back to token-major.
void Engine::attention_contiguous(Layer& L, uint64_t T, uint64_t p0) {
  const HfConfig& c = cfg_;
  const QkMode mode = c.qk_norm ? QkMode::rms_norm_neox : c.rope_interleaved ? QkMode::gptj : QkMode::neox;
  const uint64_t cap = opt_.max_positions;
  ctx_.split_qkv_norm_rope_into_cache({.qkv = qkv_, .q_norm_w = c.qk_norm ? &L.q_norm : nullptr,
                                       .k_norm_w = c.qk_norm ? &L.k_norm : nullptr, .rope = &rope_, .q_out = q_,
                                       .cache_k = L.cache_k, .cache_v = L.cache_v, .tokens = T, .q_heads = c.q_heads,
                                       .kv_heads = c.kv_heads, .head_dim = c.head_dim, .pos_offset = p0,
                                       .eps = static_cast<float>(c.rms_eps), .qk_mode = mode, .cache_len = p0,
                                       .cache_capacity = cap});
  ctx_.flash_attention({.q = q_, .k = L.cache_k, .v = L.cache_v, .out = attn_, .batch = 1, .q_len = T, .kv_len = p0 + T,
                        .pos_offset = p0, .num_heads = c.q_heads, .num_kv_heads = c.kv_heads, .head_dim = c.head_dim,
                        .causal = true, .scale = 0.0f, .kv_seq_stride = cap, .sliding_window = c.sliding_window});
  ctx_.transpose_head_to_token({.src = attn_, .dst = attn_t_, .tokens = T, .heads = c.q_heads, .dim = c.head_dim});
}

}  // namespace ferrum::run
