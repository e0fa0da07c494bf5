// ferrum-bench — the case table: op, shape, unique bytes, flops, and a setup that allocates
// seeded random inputs in rotating copies and returns the facade call.
//
// Shapes: Qwen3-8B (hidden 4096, 32 q / 8 kv heads, head_dim 128, ffn 12288, vocab 151936) and
// Qwen3-0.6B (hidden 1024, 16 / 8 heads, head_dim 128, ffn 3072, vocab 151936).
//   gemm            projections qkv, o, gate_up, down, lm_head at m = 1, 16 (decode) and
//                   m = 128, 2048 (prefill)
//   norms, activations, rope, split_qkv_norm_rope, embedding, add, copy
//                   "decode" (one token) and "large" (working set >= 256 MB; 16 MB with --quick)
//   flash_attention prefill (S 2048, causal) and decode (q_len 1, kv 65536)
// Shape names: "<model>.<what>" e.g. "8b.qkv.m16", "0.6b.large", "8b.prefill.s2048".
// The paged-KV and quantised-KV cases are in cases_paged.cpp, the GGUF ones in cases_quant.cpp,
// the MoE ones in cases_moe.cpp.
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench.hpp"

namespace ferrum::bench {
namespace {

struct Model {
  const char* name;
  uint64_t hidden, qh, kvh, hd, ffn, vocab;
};
constexpr Model kModels[] = {
    {"8b", 4096, 32, 8, 128, 12288, 151936},
    {"0.6b", 1024, 16, 8, 128, 3072, 151936},
};

// Tokens so that one call's unique bytes reach the "large" target.
uint64_t large_rows(const Env& env, double bytes_per_row) {
  const double target = env.opt->quick ? 16.0e6 : 256.0 * 1024 * 1024;
  uint64_t rows = 1;
  while (rows * bytes_per_row < target) rows *= 2;
  return rows;
}

struct Sized {
  const char* label;
  uint64_t rows;
};

}  // namespace

PoolPtr pool(Env& env, uint64_t copies, uint64_t n, Dtype dtype) {
  auto p = std::make_shared<Pool>();
  p->reserve(copies);
  for (uint64_t i = 0; i < copies; ++i) p->push_back(env.random(n, dtype));
  return p;
}

std::vector<Case> make_cases(const Env& env) {
  std::vector<Case> cs;
  const double e = static_cast<double>(env.esz);
  const bool quick = env.opt->quick;
  const float eps = 1e-6f;

  auto add = [&](Case c) {
    if (c.footprint < c.bytes) c.footprint = c.bytes;
    cs.push_back(std::move(c));
  };

  // ---- copy (the ceiling's op, at model shapes) -------------------------------------------
  for (const Model& md : kModels) {
    const uint64_t d = md.hidden;
    for (Sized s : {Sized{"decode", 1}, Sized{"large", large_rows(env, 2.0 * d * e)}}) {
      const uint64_t n = s.rows * d;
      add({"copy_slice", std::string(md.name) + "." + s.label, 2.0 * n * e, 0, 2.0 * n * e, 4096,
           [n](Env& env, uint64_t copies) -> RunFn {
             auto src = pool(env, copies, n), dst = pool(env, copies, n);
             Context* ctx = env.ctx;
             return [=](uint64_t i) { ctx->copy_slice({.src = (*src)[i], .src_offset = 0, .dst = (*dst)[i], .dst_offset = 0, .len = n}); };
           }});
    }
  }

  // ---- norms -------------------------------------------------------------------------------
  for (const Model& md : kModels) {
    const uint64_t d = md.hidden;
    for (Sized s : {Sized{"decode", 1}, Sized{"large", large_rows(env, 2.0 * d * e)}}) {
      const uint64_t t = s.rows;
      const std::string shape = std::string(md.name) + "." + s.label;
      add({"rms_norm", shape, (2.0 * t * d + d) * e, 4.0 * t * d, 0, 4096,
           [=](Env& env, uint64_t copies) -> RunFn {
             auto x = pool(env, copies, t * d), o = pool(env, copies, t * d);
             auto w = pool(env, 1, d);
             Context* ctx = env.ctx;
             return [=](uint64_t i) { ctx->rms_norm({.x = (*x)[i], .w = (*w)[0], .eps = eps, .out = (*o)[i], .tokens = t, .dim = d}); };
           }});
      const uint64_t tf = std::max<uint64_t>(1, s.rows * 2 / 3);  // 4 tensors instead of 2
      const std::string shape_f = std::string(md.name) + "." + s.label;
      add({"fused_add_rms_norm", shape_f, (4.0 * tf * d + d) * e, 5.0 * tf * d, 0, 4096,
           [=](Env& env, uint64_t copies) -> RunFn {
             auto r = pool(env, copies, tf * d), x = pool(env, copies, tf * d),
                  o = pool(env, copies, tf * d);
             auto w = pool(env, 1, d);
             Context* ctx = env.ctx;
             return [=](uint64_t i) {
               ctx->fused_add_rms_norm({.residual = (*r)[i], .x = (*x)[i], .w = (*w)[0], .eps = eps, .out = (*o)[i], .tokens = tf, .dim = d});
             };
           }});
      add({"layer_norm", shape, (2.0 * t * d + 2.0 * d) * e, 7.0 * t * d, 0, 4096,
           [=](Env& env, uint64_t copies) -> RunFn {
             auto x = pool(env, copies, t * d), o = pool(env, copies, t * d);
             auto g = pool(env, 1, d), b = pool(env, 1, d);
             Context* ctx = env.ctx;
             return [=](uint64_t i) {
               ctx->layer_norm({.x = (*x)[i], .gamma = (*g)[0], .beta = (*b)[0], .eps = eps, .out = (*o)[i], .tokens = t, .dim = d});
             };
           }});
      add({"add_inplace", shape, 3.0 * t * d * e, 1.0 * t * d, 0, 4096,
           [=](Env& env, uint64_t copies) -> RunFn {
             auto r = pool(env, copies, t * d), x = pool(env, copies, t * d);
             Context* ctx = env.ctx;
             return [=](uint64_t i) { ctx->add_inplace((*r)[i], (*x)[i], t * d); };
           }});
    }
  }

  // ---- activations over the ffn width ------------------------------------------------------
  for (const Model& md : kModels) {
    const uint64_t im = md.ffn;
    for (Sized s : {Sized{"decode", 1}, Sized{"large", large_rows(env, 3.0 * im * e)}}) {
      const uint64_t t = s.rows;
      const std::string shape = std::string(md.name) + "." + s.label;
      add({"fused_silu_mul_split", shape, 3.0 * t * im * e, 5.0 * t * im, 0, 4096,
           [=](Env& env, uint64_t copies) -> RunFn {
             auto gu = pool(env, copies, 2 * t * im), o = pool(env, copies, t * im);
             Context* ctx = env.ctx;
             return [=](uint64_t i) { ctx->fused_silu_mul_split({.gate_up = (*gu)[i], .out = (*o)[i], .tokens = t, .im = im}); };
           }});
      const uint64_t len = t * im * 3 / 2;  // same bytes as silu: 2 tensors of 1.5x
      add({"gelu", shape, 2.0 * len * e, 8.0 * len, 0, 4096,
           [=](Env& env, uint64_t copies) -> RunFn {
             auto x = pool(env, copies, len), o = pool(env, copies, len);
             Context* ctx = env.ctx;
             return [=](uint64_t i) { ctx->gelu((*x)[i], (*o)[i], len); };
           }});
    }
  }

  // ---- rope family -------------------------------------------------------------------------
  for (const Model& md : kModels) {
    const uint64_t hd = md.hd, qh = md.qh, kvh = md.kvh, w = (qh + 2 * kvh) * hd;
    for (Sized s : {Sized{"decode", 1}, Sized{"large", large_rows(env, 2.0 * w * e)}}) {
      const uint64_t t = s.rows;
      const uint64_t pos = s.rows == 1 ? 4095 : 0;  // decode at position 4095
      const uint64_t rows = pos + t;
      const double tab = 2.0 * t * (hd / 2) * e;   // cos + sin rows actually read
      const std::string shape = std::string(md.name) + "." + s.label;
      add({"qk_norm_rope", shape, 2.0 * t * qh * hd * e + tab + hd * e, 10.0 * t * qh * hd,
           2.0 * t * qh * hd * e + 2.0 * rows * (hd / 2) * e, 4096,
           [=](Env& env, uint64_t copies) -> RunFn {
             auto x = pool(env, copies, t * qh * hd), o = pool(env, copies, t * qh * hd);
             auto nw = pool(env, 1, hd), cs = pool(env, 1, rows * hd / 2),
                  sn = pool(env, 1, rows * hd / 2);
             Context* ctx = env.ctx;
             return [=](uint64_t i) {
               ctx->qk_norm_rope({.input = (*x)[i], .norm_w = &(*nw)[0], .cos = &(*cs)[0], .sin = &(*sn)[0], .output = (*o)[i], .tokens = t, .heads = qh, .head_dim = hd,
                                 .pos_offset = pos, .eps = eps, .mode = ferrum::QkMode::rms_norm_neox});
             };
           }});
      add({"split_qkv_norm_rope", shape, 2.0 * t * w * e + tab + 2.0 * hd * e,
           10.0 * t * (qh + kvh) * hd, 2.0 * t * w * e + 2.0 * rows * (hd / 2) * e, 4096,
           [=](Env& env, uint64_t copies) -> RunFn {
             auto qkv = pool(env, copies, t * w), q = pool(env, copies, t * qh * hd),
                  k = pool(env, copies, t * kvh * hd), v = pool(env, copies, t * kvh * hd);
             auto qn = pool(env, 1, hd), kn = pool(env, 1, hd), cs = pool(env, 1, rows * hd / 2),
                  sn = pool(env, 1, rows * hd / 2);
             Context* ctx = env.ctx;
             return [=](uint64_t i) {
               ctx->split_qkv_norm_rope({.qkv = (*qkv)[i], .q_norm_w = &(*qn)[0], .k_norm_w = &(*kn)[0], .cos = &(*cs)[0], .sin = &(*sn)[0],
                                        .q_out = (*q)[i], .k_out = (*k)[i], .v_out = (*v)[i], .tokens = t, .q_heads = qh, .kv_heads = kvh, .head_dim = hd, .pos_offset = pos, .eps = eps, .qk_mode = ferrum::QkMode::rms_norm_neox});
             };
           }});
    }
  }

  // ---- embedding ---------------------------------------------------------------------------
  for (const Model& md : kModels) {
    const uint64_t d = md.hidden, vocab = quick ? 8192 : md.vocab;
    for (Sized s : {Sized{"decode", 1}, Sized{"large", large_rows(env, 2.0 * d * e)}}) {
      const uint64_t n = s.rows;
      add({"embedding_lookup", std::string(md.name) + "." + s.label, 2.0 * n * d * e, 0,
           2.0 * n * d * e + double(vocab) * d * e, 4096,
           [=](Env& env, uint64_t copies) -> RunFn {
             auto table = pool(env, 1, vocab * d), o = pool(env, copies, n * d);
             auto ids = std::make_shared<std::vector<std::vector<uint32_t>>>(copies);
             for (auto& v : *ids) {
               v.resize(n);
               for (auto& id : v) id = static_cast<uint32_t>(env.next() % vocab);
             }
             Context* ctx = env.ctx;
             return [=](uint64_t i) {
               ctx->embedding_lookup({.table = (*table)[0], .ids = std::span<const uint32_t>((*ids)[i]), .out = (*o)[i], .dim = d});
             };
           }});
      // The same gather with the ids already on the device: the kernel-only floor of the
      // host-id op above (no host check, staging or copy).
      add({"embedding_lookup_dev", std::string(md.name) + "." + s.label, 2.0 * n * d * e, 0,
           2.0 * n * d * e + double(vocab) * d * e, 4096,
           [=](Env& env, uint64_t copies) -> RunFn {
             auto table = pool(env, 1, vocab * d), o = pool(env, copies, n * d);
             auto ids = std::make_shared<Pool>();
             for (uint64_t c = 0; c < copies; ++c) {
               std::vector<uint32_t> v(n);
               for (auto& id : v) id = static_cast<uint32_t>(env.next() % vocab);
               ids->push_back(env.ctx->from_slice_typed<uint32_t>(v));
             }
             Context* ctx = env.ctx;
             return [=](uint64_t i) { ctx->embedding_lookup_dev({.table = (*table)[0], .ids = (*ids)[i], .out = (*o)[i], .batch = n, .dim = d}); };
           }});
    }
  }

  // ---- gemm projections --------------------------------------------------------------------
  for (const Model& md : kModels) {
    struct Proj {
      const char* name;
      uint64_t n, k;
    };
    const Proj projs[] = {
        {"qkv", (md.qh + 2 * md.kvh) * md.hd, md.hidden},
        {"o", md.hidden, md.qh * md.hd},
        {"gate_up", 2 * md.ffn, md.hidden},
        {"down", md.hidden, md.ffn},
        {"lm_head", md.vocab, md.hidden},
    };
    for (const Proj& p : projs) {
      for (uint64_t m : {1, 16, 128, 2048}) {
        if (quick && m > 128) continue;
        const uint64_t n = quick ? std::min<uint64_t>(p.n, 4096) : p.n, k = p.k;
        add({"gemm", std::string(md.name) + "." + p.name + ".m" + std::to_string(m),
             (double(m) * k + double(n) * k + double(m) * n) * e, 2.0 * m * n * k, 0, 4096,
             [=](Env& env, uint64_t copies) -> RunFn {
               auto a = pool(env, copies, m * k), b = pool(env, copies, n * k),
                    o = pool(env, copies, m * n);
               Context* ctx = env.ctx;
               return [=](uint64_t i) { ctx->gemm({.a = (*a)[i], .b = (*b)[i], .out = (*o)[i], .m = m, .n = n, .k = k}); };
             }});
      }
    }
  }

  // ---- flash attention ---------------------------------------------------------------------
  for (const Model& md : kModels) {
    const uint64_t h = md.qh, kvh = md.kvh, hd = md.hd;
    {  // prefill: S = 2048, causal, batch 1
      const uint64_t S = quick ? 256 : 2048;
      const double bytes = (2.0 * h * S * hd + 2.0 * kvh * S * hd) * e;
      const double flops = 4.0 * h * hd * (double(S) * (S + 1) / 2);  // causal: half the pairs
      add({"flash_attention", std::string(md.name) + ".prefill.s" + std::to_string(S), bytes, flops,
           0, 4096, [=](Env& env, uint64_t copies) -> RunFn {
             auto q = pool(env, copies, h * S * hd), k = pool(env, copies, kvh * S * hd),
                  v = pool(env, copies, kvh * S * hd), o = pool(env, copies, h * S * hd);
             Context* ctx = env.ctx;
             return [=](uint64_t i) {
               ctx->flash_attention({.q = (*q)[i], .k = (*k)[i], .v = (*v)[i], .out = (*o)[i], .batch = 1, .q_len = S, .kv_len = S, .pos_offset = 0, .num_heads = h, .num_kv_heads = kvh, .head_dim = hd,
                                    .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0});
             };
           }});
    }
    {  // decode: one query over kv_len keys (sum of kv >= 64k)
      const uint64_t L = quick ? 4096 : 65536;
      const double bytes = (2.0 * h * hd + 2.0 * kvh * L * hd) * e;
      const double flops = 4.0 * h * hd * double(L);
      add({"flash_attention", std::string(md.name) + ".decode.kv" + std::to_string(L), bytes,
           flops, 0, 4096, [=](Env& env, uint64_t copies) -> RunFn {
             auto q = pool(env, copies, h * hd), k = pool(env, copies, kvh * L * hd),
                  v = pool(env, copies, kvh * L * hd), o = pool(env, copies, h * hd);
             Context* ctx = env.ctx;
             return [=](uint64_t i) {
               ctx->flash_attention({.q = (*q)[i], .k = (*k)[i], .v = (*v)[i], .out = (*o)[i], .batch = 1, .q_len = 1, .kv_len = L, .pos_offset = L - 1, .num_heads = h, .num_kv_heads = kvh, .head_dim = hd,
                                    .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0});
             };
           }});
    }
  }
  // ---- MLA, absorbed (DeepSeek-V3 shape: 128 heads, kv_lora_rank 512, rope 64) ---------------
  {
    const uint64_t H = 128, R = 512, P = 64, QD = R + P;
    const float scale = 0.0723f;  // 1/sqrt(192), the pre-absorption head size
    const std::pair<uint64_t, uint64_t> shapes[] = {{1, 4096}, {1, 32768}, {16, 4096}, {64, 4096}};
    for (const auto& [B, L] : shapes) {
      if (quick && (L > 4096 || B > 1)) continue;
      const double bytes = double(B) * (double(L) * QD + double(H) * QD + double(H) * R) * e;
      const std::string name = B == 1 ? "dsv3.decode.kv" + std::to_string(L)
                                      : "dsv3.decode.b" + std::to_string(B) + ".kv" + std::to_string(L);
      add({"mla_attention", name, bytes, 2.0 * double(B) * H * double(L) * (QD + R), 0, 4096,
           [=](Env& env, uint64_t copies) -> RunFn {
             auto q = pool(env, copies, B * H * QD), c = pool(env, copies, B * L * R), r = pool(env, copies, B * L * P),
                  o = pool(env, copies, B * H * R);
             Context* ctx = env.ctx;
             return [=](uint64_t i) {
               ctx->mla_attention({.q = (*q)[i], .kv_compressed = (*c)[i], .kv_rope = (*r)[i], .out = (*o)[i], .batch = B, .q_len = 1, .kv_len = L, .pos_offset = L - 1, .num_heads = H, .num_kv_heads = 1, .head_dim = QD,
                                  .causal = true, .scale = scale, .kv_seq_stride = 0, .sliding_window = 0, .kv_lora_rank = R, .qk_rope_head_dim = P});
             };
           }});
    }
  }
  add_paged_cases(env, cs);
  add_quant_cases(env, cs);
  add_moe_cases(env, cs);
  return cs;
}

}  // namespace ferrum::bench
