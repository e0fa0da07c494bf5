// Conformance cases: MLA attention, absorbed form (docs/spec.md §14), class F against ref/ref_mla.hpp.
#include "../src/case_util.hpp"
#include "ref/ref_mla.hpp"

#include <cmath>
#include <limits>

namespace {

using namespace ferrum::conformance;
using namespace ferrum::conformance::util;
using ferrum::Buffer;
using ferrum::Dtype;
using ferrum::ErrorCode;

struct MlaRow {
  const char* name;
  uint64_t batch, q_len, kv_len, pos_offset, heads, R, P;
  uint32_t causal;
  uint64_t stride, window;
};

const std::vector<MlaRow> kRows = {
    {"R 512, P 64, decode, 16 heads, batch 2", 2, 1, 40, 39, 16, 512, 64, 1, 0, 0},
    {"R 512, P 64, prefill 9 causal", 1, 9, 9, 0, 4, 512, 64, 1, 0, 0},
    {"R 512, P 64, decode, 128 heads, 1000 keys (split keys)", 1, 1, 1000, 999, 128, 512, 64, 1, 0, 0},
    {"R 512, P 64, 70 heads, q_len 3 over 77 keys, stride 80", 2, 3, 77, 74, 70, 512, 64, 1, 80, 0},
    {"small odd R 7, P 3, q_len 5 after 11, causal", 2, 5, 16, 11, 3, 7, 3, 1, 0, 0},
    {"R 5, P 1, non-causal, q_len 3", 3, 3, 13, 0, 2, 5, 1, 0, 0, 0},
    {"kv_seq_stride 50 > kv_len 37, batch 2", 2, 4, 37, 33, 5, 32, 16, 1, 50, 0},
    {"sliding window 8, causal, q_len 6", 2, 6, 30, 24, 4, 16, 8, 1, 0, 8},
    {"sliding window 5, non-causal", 1, 4, 20, 10, 2, 16, 8, 0, 0, 5},
    {"kv_len 0: zero rows", 2, 2, 0, 0, 3, 16, 8, 1, 0, 0},
    {"long 300 keys, 20 heads (tiles)", 1, 2, 300, 298, 20, 64, 32, 1, 0, 0},
};

void mla_case(Run& run, const MlaRow& r) {
  const uint64_t QD = r.R + r.P, S = r.stride ? r.stride : r.kv_len;
  vec q = run.random(r.batch * r.heads * r.q_len * QD);
  vec c = run.random(std::max<uint64_t>(r.batch * S * r.R, 1)), rp = run.random(std::max<uint64_t>(r.batch * S * r.P, 1));
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(128 + r.P)));
  Buffer out = run.output(r.batch * r.heads * r.q_len * r.R);
  run.ctx.mla_attention({.q = run.upload(q), .kv_compressed = run.upload(c), .kv_rope = run.upload(rp), .out = out, .batch = r.batch, .q_len = r.q_len, .kv_len = r.kv_len, .pos_offset = r.pos_offset,
                        .num_heads = r.heads, .num_kv_heads = 1, .head_dim = QD, .causal = r.causal != 0, .scale = scale, .kv_seq_stride = r.stride, .sliding_window = r.window, .kv_lora_rank = r.R, .qk_rope_head_dim = r.P});
  vec ref;
  ferrum::ref::mla_attention(q, c, rp, ref, r.batch, r.q_len, r.kv_len, r.pos_offset, r.heads, 1, QD, r.causal, scale,
                             r.stride, r.window, r.R, r.P);
  run.check("out", out, ref, r.R);
}

const bool kCases = register_table(
    "mla_attention", kActDtypes, kRows, [](const MlaRow& r) { return std::string(r.name); }, mla_case);

FERRUM_CONFORMANCE_CASE("mla_attention", "errors: scale 0, num_kv_heads, head_dim, kv_len > stride", kF32Only) {
  const uint64_t B = 1, L = 2, K = 4, H = 2, R = 8, P = 4, QD = R + P;
  Buffer q = run.upload(run.random(B * H * L * QD)), c = run.upload(run.random(B * K * R)),
         rp = run.upload(run.random(B * K * P));
  Buffer out = run.output(B * H * L * R);
  run.expect_error("scale 0", ErrorCode::invalid_argument,
                   [&] { run.ctx.mla_attention({.q = q, .kv_compressed = c, .kv_rope = rp, .out = out, .batch = B, .q_len = L, .kv_len = K, .pos_offset = 2, .num_heads = H, .num_kv_heads = 1, .head_dim = QD, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0, .kv_lora_rank = R, .qk_rope_head_dim = P}); }, "scale");
  run.expect_error("scale inf", ErrorCode::invalid_argument, [&] {
    run.ctx.mla_attention({.q = q, .kv_compressed = c, .kv_rope = rp, .out = out, .batch = B, .q_len = L, .kv_len = K, .pos_offset = 2, .num_heads = H, .num_kv_heads = 1, .head_dim = QD, .causal = true, .scale = std::numeric_limits<float>::infinity(), .kv_seq_stride = 0, .sliding_window = 0, .kv_lora_rank = R, .qk_rope_head_dim = P});
  }, "scale");
  run.expect_error("num_kv_heads 2", ErrorCode::invalid_argument,
                   [&] { run.ctx.mla_attention({.q = q, .kv_compressed = c, .kv_rope = rp, .out = out, .batch = B, .q_len = L, .kv_len = K, .pos_offset = 2, .num_heads = H, .num_kv_heads = 2, .head_dim = QD, .causal = true, .scale = 0.1f, .kv_seq_stride = 0, .sliding_window = 0, .kv_lora_rank = R, .qk_rope_head_dim = P}); },
                   "num_kv_heads");
  run.expect_error("head_dim != R + P", ErrorCode::invalid_argument,
                   [&] { run.ctx.mla_attention({.q = q, .kv_compressed = c, .kv_rope = rp, .out = out, .batch = B, .q_len = L, .kv_len = K, .pos_offset = 2, .num_heads = H, .num_kv_heads = 1, .head_dim = QD + 1, .causal = true, .scale = 0.1f, .kv_seq_stride = 0, .sliding_window = 0, .kv_lora_rank = R, .qk_rope_head_dim = P}); },
                   "head_dim");
  run.expect_error("kv_len > kv_seq_stride", ErrorCode::invalid_argument,
                   [&] { run.ctx.mla_attention({.q = q, .kv_compressed = c, .kv_rope = rp, .out = out, .batch = B, .q_len = L, .kv_len = K, .pos_offset = 2, .num_heads = H, .num_kv_heads = 1, .head_dim = QD, .causal = true, .scale = 0.1f, .kv_seq_stride = 3, .sliding_window = 0, .kv_lora_rank = R, .qk_rope_head_dim = P}); }, "kv_len");
  run.expect_error("kv_compressed too small", ErrorCode::invalid_argument,
                   [&] { run.ctx.mla_attention({.q = q, .kv_compressed = c, .kv_rope = rp, .out = out, .batch = B, .q_len = L, .kv_len = K, .pos_offset = 2, .num_heads = H, .num_kv_heads = 1, .head_dim = QD, .causal = true, .scale = 0.1f, .kv_seq_stride = 8, .sliding_window = 0, .kv_lora_rank = R, .qk_rope_head_dim = P}); },
                   "kv_compressed");
  run.check_untouched("out untouched", out, 0, B * H * L * R);
}

}  // namespace
