// ferrum-bench — the MoE cases (see cases.cpp for the rest of the table).
//
// Shapes: Qwen3-30B-A3B ("qwen3_30b_a3b"): 128 experts, top-8, hidden 2048, expert intermediate
// 768, dense expert weights in the run's dtype; num_tokens 1, 16, 64, 512, 4096 (--quick: up to 64).
//   moe_gemm    the gate/up projection alone: w [128, 1536, 2048], out one row per pair
//               ("qwen3_30b_a3b.gate_up.t16")
//   fused_moe   gate/up gemm, SiLU·mul, down gemm (w [128, 2048, 768]) and the weighted combine
//               ("qwen3_30b_a3b.t16")
// Routing: each token picks 8 distinct experts uniformly at random (a partial Fisher-Yates shuffle
// over a splitmix64 stream seeded per token count, so moe_gemm and fused_moe at one token count
// see the same routing and every run the same one). The three routing buffers are built on the
// host exactly as docs/spec.md §13.1 / moe_align_block_size define them and uploaded once, outside
// the timed calls (tools/bench/torch_bench.py's moe_routing draws the same routing for PyTorch's
// peer: keep the two in step). Block size: 16 below 512 tokens (at most ~4 pairs per expert on
// average, so larger blocks are mostly padding), 64 from 512 tokens on (32 and 256 pairs per
// expert on average); the CUDA plugin serves 16, 32 and 64.
// Bytes: the weights of the experts the routing hits (distinct experts × per-expert bytes) + x and
// out (fused_moe: + the F32 routing weights); the routing buffers (< 0.1%) and fused_moe's
// temporaries in the context scratch are not counted. Flops: 2·pairs·n·k per expert gemm.
// Copies: one. The weights alone are 805 MB (gate/up, bf16) and 1.2 GB (both, bf16), far above any
// L2, so rotating copies would only multiply the memory. The one exception to "far": at 1 token
// moe_gemm touches 8 experts = 50 MB (bf16), about an H100/H200's L2, so part of it may stay
// cached between calls and that row can read above the memory roofline.
#include <algorithm>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bench.hpp"

namespace ferrum::bench {
namespace {

constexpr const char* kModel = "qwen3_30b_a3b";
constexpr uint64_t kExperts = 128, kTopK = 8, kHidden = 2048, kInter = 768;

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// One routing of `tokens` tokens (docs/spec.md §13.1), on the host.
struct Routing {
  uint64_t tokens = 0, pairs = 0, block = 0, distinct = 0;
  std::vector<int32_t> sorted;      // [cap]: pair ids grouped by expert, padded with `pairs`
  std::vector<int32_t> expert_ids;  // [cap_blocks]: expert of each block, -1 past the used ones
  int32_t total = 0;                // num_tokens_post_padded
};

Routing make_routing(uint64_t tokens) {
  Routing r;
  r.tokens = tokens;
  r.pairs = tokens * kTopK;
  r.block = tokens >= 512 ? 64 : 16;
  // Expert of each pair p = t·top_k + k: the first 8 places of a partial Fisher-Yates shuffle,
  // which gives every ordered choice of 8 distinct experts the same chance.
  uint64_t s = 0x30b0a3b000000000ull + tokens;
  std::vector<int32_t> perm(kExperts);
  for (uint64_t e = 0; e < kExperts; ++e) perm[e] = static_cast<int32_t>(e);
  std::vector<std::vector<int32_t>> groups(kExperts);  // each expert's pairs, ascending
  for (uint64_t t = 0; t < tokens; ++t)
    for (uint64_t k = 0; k < kTopK; ++k) {
      std::swap(perm[k], perm[k + splitmix64(s) % (kExperts - k)]);
      groups[perm[k]].push_back(static_cast<int32_t>(t * kTopK + k));
    }
  const uint64_t cap = r.pairs + std::min(kExperts, r.pairs) * (r.block - 1);
  r.sorted.assign(cap, static_cast<int32_t>(r.pairs));
  r.expert_ids.assign((cap + r.block - 1) / r.block, -1);
  uint64_t pos = 0;
  for (uint64_t e = 0; e < kExperts; ++e) {
    const std::vector<int32_t>& g = groups[e];
    if (g.empty()) continue;
    ++r.distinct;
    std::copy(g.begin(), g.end(), r.sorted.begin() + static_cast<std::ptrdiff_t>(pos));
    const uint64_t blocks = (g.size() + r.block - 1) / r.block;
    for (uint64_t b = 0; b < blocks; ++b) r.expert_ids[pos / r.block + b] = static_cast<int32_t>(e);
    pos += blocks * r.block;
  }
  r.total = static_cast<int32_t>(pos);
  return r;
}

// The routing on the device, uploaded once per case.
struct DeviceRouting {
  Buffer sorted, expert_ids, total;
};

std::shared_ptr<DeviceRouting> upload(Env& env, const Routing& r) {
  auto d = std::make_shared<DeviceRouting>();
  d->sorted = env.ctx->from_slice_typed<int32_t>(std::span<const int32_t>(r.sorted));
  d->expert_ids = env.ctx->from_slice_typed<int32_t>(std::span<const int32_t>(r.expert_ids));
  const int32_t total[1] = {r.total};
  d->total = env.ctx->from_slice_typed<int32_t>(std::span<const int32_t>(total));
  return d;
}

}  // namespace

void add_moe_cases(const Env& env, std::vector<Case>& cs) {
  const double e = static_cast<double>(env.esz);
  const bool quick = env.opt->quick;
  const uint64_t E = kExperts, K = kTopK, H = kHidden, I = kInter, N = 2 * kInter;
  const double w_gu = double(N) * H * e, w_d = double(H) * I * e;  // per expert
  for (uint64_t T : {uint64_t{1}, uint64_t{16}, uint64_t{64}, uint64_t{512}, uint64_t{4096}}) {
    if (quick && T > 64) continue;
    auto rt = std::make_shared<const Routing>(make_routing(T));
    const uint64_t P = rt->pairs;
    const double routing_bytes = 4.0 * (rt->sorted.size() + rt->expert_ids.size() + 1);
    const std::string t = ".t" + std::to_string(T);
    {
      const double act = (double(T) * H + double(P) * N) * e;
      cs.push_back({"moe_gemm", std::string(kModel) + ".gate_up" + t, double(rt->distinct) * w_gu + act,
                    2.0 * P * N * H, double(E) * w_gu + act + routing_bytes, 1,
                    [=](Env& env, uint64_t) -> RunFn {
                      auto w = pool(env, 1, E * N * H), x = pool(env, 1, T * H), o = pool(env, 1, P * N);
                      auto r = upload(env, *rt);
                      Context* ctx = env.ctx;
                      return [=](uint64_t) {
                        ctx->moe_gemm({.x = (*x)[0], .sorted_token_ids = r->sorted, .expert_ids = r->expert_ids, .num_tokens_post_padded = r->total, .w_dense = &(*w)[0],
                                       .out = (*o)[0], .num_tokens = T, .num_pairs = P, .top_k = K, .num_experts = E, .n = N, .k = H, .block_size = rt->block});
                      };
                    }});
    }
    {
      const double act = 2.0 * T * H * e + 4.0 * T * K;
      const double scratch = double(P) * (3 * I + H) * e;  // the op's temporaries (§13)
      cs.push_back({"fused_moe", std::string(kModel) + t, double(rt->distinct) * (w_gu + w_d) + act,
                    2.0 * P * N * H + 2.0 * P * H * I, double(E) * (w_gu + w_d) + act + scratch + routing_bytes, 1,
                    [=](Env& env, uint64_t) -> RunFn {
                      auto wgu = pool(env, 1, E * N * H), wd = pool(env, 1, E * H * I);
                      auto x = pool(env, 1, T * H), tw = pool(env, 1, T * K, Dtype::f32), o = pool(env, 1, T * H);
                      auto r = upload(env, *rt);
                      Context* ctx = env.ctx;
                      return [=](uint64_t) {
                        ctx->fused_moe({.x = (*x)[0], .topk_weights = (*tw)[0], .sorted_token_ids = r->sorted, .expert_ids = r->expert_ids, .num_tokens_post_padded = r->total,
                                        .w_gate_up_dense = &(*wgu)[0], .w_down_dense = &(*wd)[0], .out = (*o)[0], .num_tokens = T, .hidden = H, .intermediate = I, .num_experts = E,
                                        .top_k = K, .block_size = rt->block});
                      };
                    }});
    }
  }
}

}  // namespace ferrum::bench
