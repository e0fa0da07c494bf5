// Conformance cases: the large family — shapes big enough to reach the paths small shapes never
// take: tensor-core / blocked gemm (m >= 1024 with a long K), split-K (few rows, very long K) and
// long-context attention (kv_len >= 8192, decode and a causal prefill chunk). Selected only with
// --large or --family large (they take seconds on a CPU; CTest runs them on the CPU plugin with
// one dtype).
#include <ferrum/conformance/kit.hpp>

#include "src/case_util.hpp"

using namespace ferrum;
using namespace ferrum::conformance;
using namespace ferrum::conformance::util;

namespace {

struct Gemm {
  uint64_t m, n, k;
  const char* what;
};

void run_gemm(Run& run, const Gemm& s) {
  const vec a = run.random(s.m * s.k), b = run.random(s.n * s.k);
  Buffer ba = run.upload(a), bb = run.upload(b);
  Buffer out = run.output(s.m * s.n);
  run.ctx.gemm(ba, bb, out, s.m, s.n, s.k);
  vec ref;
  fr::gemm(a, b, ref, s.m, s.n, s.k);
  run.check("out", out, ref, s.n);
}

const bool kGemm = register_table<Gemm>(
    "gemm", kActDtypes,
    {{1024, 96, 1024, "tensor-core tile rows"}, {1031, 40, 2056, "ragged m, long k"}, {8, 64, 16384, "split-K"}},
    [](const Gemm& s) {
      return fmt("large %s: m %llu, n %llu, k %llu", s.what, (unsigned long long)s.m, (unsigned long long)s.n,
                 (unsigned long long)s.k);
    },
    run_gemm, "large");

struct Attn {
  uint64_t q_len, kv_len, pos_offset, nh, nkv, hd;
  const char* what;
};

void run_attention(Run& run, const Attn& c) {
  const uint64_t nq = c.nh * c.q_len * c.hd, nk = c.nkv * c.kv_len * c.hd;
  const vec q = run.random(nq, -2.0, 2.0), k = run.random(nk, -2.0, 2.0), v = run.random(nk, -2.0, 2.0);
  Buffer bq = run.upload(q), bk = run.upload(k), bv = run.upload(v);
  Buffer out = run.output(nq);
  run.ctx.flash_attention(bq, bk, bv, out, 1, c.q_len, c.kv_len, c.pos_offset, c.nh, c.nkv, c.hd, true, 0.0f, 0, 0);
  vec ref;
  fr::flash_attention(q, k, v, ref, 1, c.q_len, c.kv_len, c.pos_offset, c.nh, c.nkv, c.hd, true, 0.0f, 0, 0);
  run.check("out", out, ref, c.hd);
}

const bool kAttention = register_table<Attn>(
    "flash_attention", kActDtypes,
    {{1, 8192, 8191, 8, 2, 128, "long-context decode"}, {16, 9000, 8984, 4, 1, 64, "long-context prefill chunk"}},
    [](const Attn& c) {
      return fmt("large %s: q_len %llu, kv_len %llu, heads %llu/%llu, hd %llu", c.what, (unsigned long long)c.q_len,
                 (unsigned long long)c.kv_len, (unsigned long long)c.nh, (unsigned long long)c.nkv,
                 (unsigned long long)c.hd);
    },
    run_attention, "large");

}  // namespace
