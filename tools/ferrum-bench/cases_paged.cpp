// ferrum-bench — the paged-KV and quantised-KV cases (see cases.cpp for the rest of the table).
//
// Shapes: GQA 32/8 and 64/8 query/KV heads ("gqa32_8", "gqa64_8"), head_dim 128, block size 16,
// ferrum pool layout [blocks, 16, kv_heads, 128]; every block table lists the pool's blocks in a
// seeded random order, so no two consecutive blocks of a sequence are adjacent in memory.
//   paged_batched_decode_attention, paged_decode_attention (q_len 1)
//                   one query per sequence, batch 1, 8, 64, 256 x context 1k, 4k, 32k keys
//                   ("gqa32_8.b8.kv4k"); combinations whose K + V exceed 40 GB are not listed
//                   (with --quick: batch 1, 4 x context 256, 1k)
//   int8_paged_decode_attention, fp8_paged_decode_attention
//                   the same at batch 1 (the ops decode one sequence per call); the pools are
//                   filled by the quantised append from random activations
//   int8_kv_append_paged, fp8_kv_append_paged
//                   16k tokens, 8 KV heads ("kv8.t16k"; --quick: 1k)
//   paged_varlen_attention, paged_varlen_attention_fa2_ffi, and flash_attention (dense,
//                   head-major) on the same tokens: 8 sequences x 2k causal prefill = 16k
//                   tokens per call ("gqa32_8.8x2k"; --quick: 2 x 256)
//   split_qkv_norm_rope_into_paged_cache_varlen
//                   decode (256 sequences x 1 token at position 1023: "gqa32_8.decode.b256")
//                   and prefill (8 x 2k tokens: "gqa32_8.prefill.8x2k")
// Bytes: K/V read once (codes + f32 scales for int8 / fp8) + q and out (prefill: + the K/V the
// queries read, each once); block tables and lengths are not counted (< 0.1%).
#include <algorithm>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "bench.hpp"

namespace ferrum::bench {
namespace {

struct Gqa {
  const char* name;
  uint64_t qh, kvh, hd;
};
constexpr Gqa kGqa[] = {{"gqa32_8", 32, 8, 128}, {"gqa64_8", 64, 8, 128}};
constexpr uint64_t kBlock = 16;
constexpr double kMaxKvBytes = 40e9;
constexpr float kEps = 1e-6f;
constexpr int32_t kNeox = 1;  // qk_mode: RMS norm + NeoX RoPE

std::string tokens_label(uint64_t n) {
  return n % 1024 == 0 ? std::to_string(n / 1024) + "k" : std::to_string(n);
}

// The block tables [seqs, blocks_per_seq] of a pool of seqs * blocks_per_seq blocks: every
// block once, in seeded random order (Fisher-Yates over the env's stream).
std::vector<uint32_t> shuffled_blocks(Env& env, uint64_t seqs, uint64_t blocks_per_seq) {
  std::vector<uint32_t> t(seqs * blocks_per_seq);
  std::iota(t.begin(), t.end(), 0u);
  for (uint64_t i = t.size(); i > 1; --i) std::swap(t[i - 1], t[env.next() % i]);
  return t;
}

// One shuffled table per rotating copy, on the device.
PoolPtr shuffled_tables(Env& env, uint64_t copies, uint64_t seqs, uint64_t blocks_per_seq) {
  auto p = std::make_shared<Pool>();
  for (uint64_t c = 0; c < copies; ++c)
    p->push_back(env.ctx->from_slice_typed<uint32_t>(shuffled_blocks(env, seqs, blocks_per_seq)));
  return p;
}

// A U32 device buffer holding `values`.
PoolPtr indices(Env& env, const std::vector<uint32_t>& values) {
  auto p = std::make_shared<Pool>();
  p->push_back(env.ctx->from_slice_typed<uint32_t>(values));
  return p;
}

// cu_seqlens {0, len, 2·len, ...} of `seqs` sequences of `len` tokens.
std::vector<uint32_t> uniform_cu(uint64_t seqs, uint64_t len) {
  std::vector<uint32_t> cu(seqs + 1);
  for (uint64_t s = 0; s <= seqs; ++s) cu[s] = static_cast<uint32_t>(s * len);
  return cu;
}

bool is_int8(const std::string& op) { return op.rfind("int8_", 0) == 0; }

// A quantised layer of `blocks` blocks and its shuffled block list (host and device).
struct QuantSet {
  KvCacheQuant layer;
  std::vector<uint32_t> ids;
  Buffer table;
};

// A zeroed quantised layer of `blocks` blocks and a shuffled list of them.
QuantSet make_quant_set(Env& env, bool int8, uint64_t blocks, uint64_t kvh, uint64_t hd) {
  QuantSet s;
  s.layer = int8 ? env.ctx->alloc_paged_int8_layer({.max_blocks_per_seq = blocks, .block_size = kBlock, .num_kv_heads = kvh, .head_dim = hd})
                 : env.ctx->alloc_paged_fp8_layer({.max_blocks_per_seq = blocks, .block_size = kBlock, .num_kv_heads = kvh, .head_dim = hd});
  s.ids = shuffled_blocks(env, 1, blocks);
  return s;
}

// Quantises `tokens` rows of k_in / v_in into `s`'s layer at positions 0 .. tokens - 1.
void append_quant(Context& ctx, bool int8, const Buffer& k_in, const Buffer& v_in, QuantSet& s, uint64_t tokens,
                  uint64_t kvh, uint64_t hd) {
  KvCacheQuant& l = s.layer;
  if (int8)
    ctx.int8_kv_append_paged({.k_in = k_in, .v_in = v_in, .layer_k = l.k, .layer_v = l.v, .layer_k_scales = l.k_scales, .layer_v_scales = l.v_scales, .paged_block_indices = s.ids, .cache_len_before = 0, .tokens = tokens, .block_size = kBlock, .num_kv_heads = kvh, .head_dim = hd});
  else
    ctx.fp8_kv_append_paged({.k_in = k_in, .v_in = v_in, .layer_k = l.k, .layer_v = l.v, .layer_k_scales = l.k_scales, .layer_v_scales = l.v_scales, .paged_block_indices = s.ids, .cache_len_before = 0, .tokens = tokens, .block_size = kBlock, .num_kv_heads = kvh, .head_dim = hd});
}

}  // namespace

void add_paged_cases(const Env& env, std::vector<Case>& cs) {
  const double e = static_cast<double>(env.esz);
  const bool quick = env.opt->quick;
  const std::vector<uint64_t> batches = quick ? std::vector<uint64_t>{1, 4} : std::vector<uint64_t>{1, 8, 64, 256};
  const std::vector<uint64_t> contexts =
      quick ? std::vector<uint64_t>{256, 1024} : std::vector<uint64_t>{1024, 4096, 32768};
  auto add = [&](Case c) {
    c.footprint = std::max(c.footprint, c.bytes);
    cs.push_back(std::move(c));
  };

  // ---- paged decode: one query per sequence ----------------------------------------------
  for (const Gqa& g : kGqa) {
    const uint64_t qh = g.qh, kvh = g.kvh, hd = g.hd;
    for (uint64_t B : batches) {
      for (uint64_t L : contexts) {
        const double kv_bytes = 2.0 * B * L * kvh * hd * e;
        if (kv_bytes > kMaxKvBytes) continue;
        const double bytes = kv_bytes + 2.0 * B * qh * hd * e;
        const double flops = 4.0 * B * qh * hd * L;
        const double footprint = bytes + 4.0 * B * (L / kBlock + 1);
        const uint64_t nb = L / kBlock;
        const std::string shape = std::string(g.name) + ".b" + std::to_string(B) + ".kv" + tokens_label(L);
        for (const char* op : {"paged_batched_decode_attention", "paged_decode_attention"}) {
          const bool batched = std::string(op) == "paged_batched_decode_attention";
          add({op, shape, bytes, flops, footprint, 4096, [=](Env& env, uint64_t copies) -> RunFn {
                 auto k = pool(env, copies, B * L * kvh * hd), v = pool(env, copies, B * L * kvh * hd);
                 auto q = pool(env, copies, B * qh * hd), o = pool(env, copies, B * qh * hd);
                 auto tables = shuffled_tables(env, copies, B, nb);
                 auto lens = indices(env, std::vector<uint32_t>(B, static_cast<uint32_t>(L)));
                 Context* ctx = env.ctx;
                 if (batched)
                   return [=](uint64_t i) {
                     ctx->paged_batched_decode_attention({.q = (*q)[i], .k_pool = (*k)[i], .v_pool = (*v)[i], .out = (*o)[i], .block_tables = (*tables)[i], .valid_kv_lens = (*lens)[0],
                                                         .num_seqs = B, .max_kv_len = L, .num_heads = qh, .num_kv_heads = kvh, .head_dim = hd, .block_size = kBlock, .max_num_blocks_per_seq = nb, .scale = 0.0f, .sliding_window = 0});
                   };
                 return [=](uint64_t i) {
                   ctx->paged_decode_attention({.q = (*q)[i], .k_pool = (*k)[i], .v_pool = (*v)[i], .out = (*o)[i], .block_tables = (*tables)[i], .context_lens = (*lens)[0], .num_seqs = B, .num_heads = qh,
                                               .num_kv_heads = kvh, .head_dim = hd, .block_size = kBlock, .max_num_blocks_per_seq = nb, .q_len = 1, .scale = 0.0f, .sliding_window = 0});
                 };
               }});
        }
      }
    }
  }

  // ---- int8 / fp8 decode at batch 1 ------------------------------------------------------
  for (const Gqa& g : kGqa) {
    const uint64_t qh = g.qh, kvh = g.kvh, hd = g.hd;
    for (uint64_t L : contexts) {
      const uint64_t nb = L / kBlock;
      const double bytes = 2.0 * L * kvh * (hd + 4.0) + 2.0 * qh * hd * e;
      const std::string shape = std::string(g.name) + ".b1.kv" + tokens_label(L);
      for (const char* op : {"int8_paged_decode_attention", "fp8_paged_decode_attention"}) {
        const bool i8 = is_int8(op);
        add({op, shape, bytes, 4.0 * qh * hd * L, bytes + 4.0 * nb, 4096, [=](Env& env, uint64_t copies) -> RunFn {
               Context* ctx = env.ctx;
               // Codes and scales come from the quantised append of random activations.
               Buffer k_in = env.random(L * kvh * hd), v_in = env.random(L * kvh * hd);
               auto sets = std::make_shared<std::vector<QuantSet>>();
               for (uint64_t c = 0; c < copies; ++c) {
                 QuantSet s = make_quant_set(env, i8, nb, kvh, hd);
                 append_quant(*ctx, i8, k_in, v_in, s, L, kvh, hd);
                 s.table = ctx->from_slice_typed<uint32_t>(s.ids);
                 sets->push_back(std::move(s));
               }
               ctx->sync();  // k_in / v_in are released on return
               auto q = pool(env, copies, qh * hd), o = pool(env, copies, qh * hd);
               return [=](uint64_t i) {
                 const KvCacheQuant& l = (*sets)[i].layer;
                 if (i8)
                   ctx->int8_paged_decode_attention({.q = (*q)[i], .layer_k = l.k, .layer_v = l.v, .layer_k_scales = l.k_scales, .layer_v_scales = l.v_scales, .block_table = (*sets)[i].table,
                                                    .output = (*o)[i], .num_q_heads = qh, .num_kv_heads = kvh, .head_dim = hd, .valid_kv_len = L, .block_size = kBlock, .scale = 0.0f, .sliding_window = 0});
                 else
                   ctx->fp8_paged_decode_attention({.q = (*q)[i], .layer_k = l.k, .layer_v = l.v, .layer_k_scales = l.k_scales, .layer_v_scales = l.v_scales, .block_table = (*sets)[i].table,
                                                   .output = (*o)[i], .num_q_heads = qh, .num_kv_heads = kvh, .head_dim = hd, .valid_kv_len = L, .block_size = kBlock, .scale = 0.0f, .sliding_window = 0});
               };
             }});
      }
    }
  }

  // ---- int8 / fp8 append (prefill-sized) ---------------------------------------------------
  {
    const uint64_t kvh = 8, hd = 128, T = quick ? 1024 : 16384, nb = T / kBlock;
    const double bytes = 2.0 * T * kvh * hd * e + 2.0 * T * kvh * (hd + 4.0);
    for (const char* op : {"int8_kv_append_paged", "fp8_kv_append_paged"}) {
      const bool i8 = is_int8(op);
      add({op, "kv8.t" + tokens_label(T), bytes, 0, bytes, 4096, [=](Env& env, uint64_t copies) -> RunFn {
             Context* ctx = env.ctx;
             auto k_in = pool(env, copies, T * kvh * hd), v_in = pool(env, copies, T * kvh * hd);
             auto sets = std::make_shared<std::vector<QuantSet>>();
             for (uint64_t c = 0; c < copies; ++c) sets->push_back(make_quant_set(env, i8, nb, kvh, hd));
             return [=](uint64_t i) { append_quant(*ctx, i8, (*k_in)[i], (*v_in)[i], (*sets)[i], T, kvh, hd); };
           }});
    }
  }

  // ---- varlen paged prefill next to dense flash_attention on the same tokens ---------------
  for (const Gqa& g : kGqa) {
    const uint64_t qh = g.qh, kvh = g.kvh, hd = g.hd;
    const uint64_t N = quick ? 2 : 8, S = quick ? 256 : 2048, M = N * S, nb = S / kBlock;
    const double bytes = (2.0 * M * qh * hd + 2.0 * M * kvh * hd) * e;
    const double flops = 4.0 * qh * hd * N * (double(S) * (S + 1) / 2);  // causal: half the pairs
    const std::string shape = std::string(g.name) + "." + std::to_string(N) + "x" + tokens_label(S);
    for (const char* op : {"paged_varlen_attention", "paged_varlen_attention_fa2_ffi"}) {
      const bool fa2 = std::string(op) == "paged_varlen_attention_fa2_ffi";
      add({op, shape, bytes, flops, bytes + (fa2 ? 4.0 * qh * M : 0.0), 4096,
           [=](Env& env, uint64_t copies) -> RunFn {
             auto k = pool(env, copies, M * kvh * hd), v = pool(env, copies, M * kvh * hd);
             auto q = pool(env, copies, M * qh * hd), o = pool(env, copies, M * qh * hd);
             auto lse = fa2 ? pool(env, copies, qh * M, Dtype::f32) : std::make_shared<Pool>();
             auto tables = shuffled_tables(env, copies, N, nb);
             auto cu = indices(env, uniform_cu(N, S));
             // varlen: KV length before the step (0); FA2 form: after it (S).
             auto lens = indices(env, std::vector<uint32_t>(N, fa2 ? static_cast<uint32_t>(S) : 0u));
             Context* ctx = env.ctx;
             if (fa2)
               return [=](uint64_t i) {
                 ctx->paged_varlen_attention_fa2_ffi({.q = (*q)[i], .k_pool = (*k)[i], .v_pool = (*v)[i], .out = (*o)[i], .lse = (*lse)[i], .cu_seqlens_q = (*cu)[0],
                                                     .seq_lens = (*lens)[0], .block_tables = (*tables)[i], .num_seqs = N, .total_q_tokens = M, .max_q_len = S, .max_kv_len = S, .num_heads = qh, .num_kv_heads = kvh, .head_dim = hd, .block_size = kBlock, .max_num_blocks_per_seq = nb,
                                                     .scale = 0.0f, .sliding_window = 0});
               };
             return [=](uint64_t i) {
               ctx->paged_varlen_attention({.q = (*q)[i], .k_pool = (*k)[i], .v_pool = (*v)[i], .out = (*o)[i], .cu_seqlens_q = (*cu)[0], .pos_offsets = (*lens)[0], .block_tables = (*tables)[i], .num_seqs = N,
                                           .total_q_tokens = M, .max_kv_len = S, .num_heads = qh, .num_kv_heads = kvh, .head_dim = hd, .block_size = kBlock, .max_num_blocks_per_seq = nb, .scale = 0.0f, .sliding_window = 0});
             };
           }});
    }
    add({"flash_attention", shape, bytes, flops, bytes, 4096, [=](Env& env, uint64_t copies) -> RunFn {
           auto q = pool(env, copies, M * qh * hd), k = pool(env, copies, M * kvh * hd),
                v = pool(env, copies, M * kvh * hd), o = pool(env, copies, M * qh * hd);
           Context* ctx = env.ctx;
           return [=](uint64_t i) {
             ctx->flash_attention({.q = (*q)[i], .k = (*k)[i], .v = (*v)[i], .out = (*o)[i], .batch = N, .q_len = S, .kv_len = S, .pos_offset = 0, .num_heads = qh, .num_kv_heads = kvh, .head_dim = hd, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0});
           };
         }});
  }

  // ---- the varlen writer: split + QK-norm + RoPE into the paged pools -----------------------
  for (const Gqa& g : kGqa) {
    const uint64_t qh = g.qh, kvh = g.kvh, hd = g.hd, w = (qh + 2 * kvh) * hd;
    struct Form {
      std::string label;
      uint64_t seqs, tokens, pos;  // tokens per sequence, written at positions pos ...
    };
    const Form forms[] = {
        {quick ? "decode.b16" : "decode.b256", quick ? 16u : 256u, 1, quick ? 255u : 1023u},
        {quick ? "prefill.2x256" : "prefill.8x2k", quick ? 2u : 8u, quick ? 256u : 2048u, 0},
    };
    for (const Form& f : forms) {
      const uint64_t N = f.seqs, T = f.tokens, m = N * T, pos = f.pos, cap = pos + T;
      const uint64_t nb = (cap + kBlock - 1) / kBlock;
      const double bytes = (double(m) * w + double(m) * qh * hd + 2.0 * m * kvh * hd + 2.0 * m * (hd / 2) + 2.0 * hd) * e;
      const double footprint = (double(m) * w + double(m) * qh * hd + 2.0 * N * nb * kBlock * kvh * hd) * e;
      add({"split_qkv_norm_rope_into_paged_cache_varlen", std::string(g.name) + "." + f.label, bytes,
           10.0 * m * (qh + kvh) * hd, footprint, 4096, [=](Env& env, uint64_t copies) -> RunFn {
             auto qkv = pool(env, copies, m * w), qo = pool(env, copies, m * qh * hd);
             auto kp = pool(env, copies, N * nb * kBlock * kvh * hd), vp = pool(env, copies, N * nb * kBlock * kvh * hd);
             auto qn = pool(env, 1, hd), kn = pool(env, 1, hd), cs = pool(env, 1, cap * hd / 2),
                  sn = pool(env, 1, cap * hd / 2);
             auto tables = shuffled_tables(env, copies, N, nb);
             auto cu = indices(env, uniform_cu(N, T));
             auto pos_offsets = indices(env, std::vector<uint32_t>(N, static_cast<uint32_t>(pos)));
             Context* ctx = env.ctx;
             return [=](uint64_t i) {
               ctx->split_qkv_norm_rope_into_paged_cache_varlen({.qkv = (*qkv)[i], .q_norm_w = &(*qn)[0], .k_norm_w = &(*kn)[0], .cos = &(*cs)[0], .sin = &(*sn)[0],
                                                                .q_out = (*qo)[i], .cache_k = (*kp)[i], .cache_v = (*vp)[i], .cu_seqlens_q = (*cu)[0],
                                                                .pos_offsets = (*pos_offsets)[0], .block_tables = (*tables)[i], .num_seqs = N, .m_total = m, .q_heads = qh, .kv_heads = kvh, .head_dim = hd,
                                                                .eps = kEps, .qk_mode = static_cast<ferrum::QkMode>(kNeox), .block_size = kBlock, .max_blocks_per_seq = nb});
             };
           }});
    }
  }
}

}  // namespace ferrum::bench
