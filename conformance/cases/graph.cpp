// Conformance cases: graph capture and replay, decode state and dev-state mode (docs/spec.md §8).
//
// A plugin whose graph family (or an op a case records) is NULL reports "unsupported". The
// capture cases need a plugin that really captures (CUDA); the CPU plugin leaves the family NULL.
#include <ferrum/conformance/kit.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "src/case_util.hpp"

namespace {

using namespace ferrum::conformance;
using namespace ferrum::conformance::util;
using ferrum::Buffer;
using ferrum::Context;
using ferrum::Dtype;
using ferrum::ErrorCode;

// RoPE tables rounded to f32 (so the F32 upload is exact).
void f32_rope_tables(uint64_t rows, uint64_t hd, vec& cos, vec& sin) {
  fr::rope_tables(rows, hd, 10000.0, cos, sin);
  for (double& x : cos) x = static_cast<double>(static_cast<float>(x));
  for (double& x : sin) x = static_cast<double>(static_cast<float>(x));
}

// One single-sequence decode step as a host records it in dev-state mode: token embedding ->
// RoPE on q and k -> KV append at `pos` -> attention over `kv` keys. Host fields the mode
// replaces are passed as 0 (they must not be read).
struct DecodeStep {
  uint64_t vocab = 8, H = 4, nkv = 2, hd = 64, cap = 16;
  Buffer emb_q, emb_k, emb_v, cos, sin;  // tables
  Buffer xq, xk, xv, q, k, out;          // per-step activations

  DecodeStep(Run& run) {
    emb_q = run.upload(run.random(vocab * H * hd));
    emb_k = run.upload(run.random(vocab * nkv * hd));
    emb_v = run.upload(run.random(vocab * nkv * hd));
    vec c, s;
    f32_rope_tables(cap, hd, c, s);
    cos = run.upload(c, Dtype::f32);
    sin = run.upload(s, Dtype::f32);
    xq = run.output(H * hd);
    xk = run.output(nkv * hd);
    xv = run.output(nkv * hd);
    q = run.output(H * hd);
    k = run.output(nkv * hd);
    out = run.output(H * hd);
  }

  void record(Context& ctx, Buffer& ck, Buffer& cv) {
    const std::vector<uint32_t> unused_id = {0};
    ctx.embedding_lookup({.table = emb_q, .ids = unused_id, .out = xq, .dim = H * hd});
    ctx.embedding_lookup({.table = emb_k, .ids = unused_id, .out = xk, .dim = nkv * hd});
    ctx.embedding_lookup({.table = emb_v, .ids = unused_id, .out = xv, .dim = nkv * hd});
    ctx.qk_norm_rope({.input = xq, .norm_w = nullptr, .cos = &cos, .sin = &sin, .output = q, .tokens = 1, .heads = H, .head_dim = hd, .pos_offset = 0, .eps = 0.0f, .mode = ferrum::QkMode::neox});
    ctx.qk_norm_rope({.input = xk, .norm_w = nullptr, .cos = &cos, .sin = &sin, .output = k, .tokens = 1, .heads = nkv, .head_dim = hd, .pos_offset = 0, .eps = 0.0f, .mode = ferrum::QkMode::neox});
    ctx.kv_cache_append_head_major({.cache_k = ck, .cache_v = cv, .cache_len = 0, .cache_capacity = cap, .new_k_head_major = k, .new_v_head_major = xv, .new_tokens = 1, .nkv = nkv, .hd = hd});
    ctx.flash_attention({.q = q, .k = ck, .v = cv, .out = out, .batch = 1, .q_len = 1, .kv_len = 0, .pos_offset = 0, .num_heads = H, .num_kv_heads = nkv, .head_dim = hd, .causal = true, .scale = 0.0f, .kv_seq_stride = cap, .sliding_window = 0});
  }
};

FERRUM_CONFORMANCE_CASE("replay_graph", "decode step captured once, replayed per token == eager (dev-state)",
                        kActDtypes) {
  DecodeStep st(run);
  const uint64_t cache_elems = st.nkv * st.cap * st.hd;
  const vec init_k = run.random(cache_elems), init_v = run.random(cache_elems);
  Buffer ek = run.upload(init_k), ev = run.upload(init_v);  // eager caches
  Buffer gk = run.upload(init_k), gv = run.upload(init_v);  // graph caches, same start
  const std::vector<uint32_t> tokens = {3, 1, 7, 0, 5, 2};
  const uint64_t steps = tokens.size();

  run.ctx.set_dev_state_mode(true);
  std::vector<vec> eager(steps);
  vec last_q;
  for (uint64_t s = 0; s < steps; ++s) {
    run.ctx.set_decode_state({.token = tokens[s], .step = static_cast<uint32_t>(s)});
    st.record(run.ctx, ek, ev);
    eager[s] = run.download(st.out, st.H * st.hd);
    if (s + 1 == steps) last_q = run.download(st.q, st.H * st.hd);
  }
  // The last eager step against float64 attention over what the step actually read
  // (its q and the caches after its append): kv = steps keys at position steps - 1.
  {
    vec ck = run.download(ek, cache_elems), cv = run.download(ev, cache_elems), ref;
    fr::flash_attention(last_q, ck, cv, ref, 1, 1, steps, steps - 1, st.H, st.nkv, st.hd, 1, 0.0f, st.cap, 0);
    run.check_values("eager dev-state attention, last step", eager[steps - 1], ref, st.hd, run.dtype);
  }

  const uint64_t key = 0x5EED0001;
  run.ctx.begin_graph_capture();
  if (run.ctx.graph_capture_in_flight() != 1) run.fail("graph_capture_in_flight: expected 1 during a capture");
  st.record(run.ctx, gk, gv);
  run.ctx.end_graph_capture(key);
  if (run.ctx.graph_capture_in_flight() != 0) run.fail("graph_capture_in_flight: expected 0 after end_graph_capture");

  for (uint64_t s = 0; s < steps; ++s) {
    run.ctx.set_decode_state({.token = tokens[s], .step = static_cast<uint32_t>(s)});
    if (run.ctx.replay_graph(key) != 1) run.fail(fmt("replay_graph(step %llu): expected replayed = 1", (unsigned long long)s));
    const vec got = run.download(st.out, st.H * st.hd);
    check_exact_nan_agnostic(run, fmt("replayed step %llu vs eager", (unsigned long long)s), got, eager[s], run.dtype);
  }
  check_exact_nan_agnostic(run, "graph K cache vs eager", run.download(gk, cache_elems), run.download(ek, cache_elems),
                           run.dtype);
  check_exact_nan_agnostic(run, "graph V cache vs eager", run.download(gv, cache_elems), run.download(ev, cache_elems),
                           run.dtype);
  run.ctx.reset_graph(key);
  if (run.ctx.replay_graph(key) != 0) run.fail("replay_graph after reset_graph: expected replayed = 0");
  run.ctx.set_dev_state_mode(false);
}

FERRUM_CONFORMANCE_CASE("replay_graph", "missing key: replayed 0, resets are no-ops", kF32Only) {
  if (run.ctx.replay_graph(0xABCDEF) != 0) run.fail("replay_graph of a key never captured: expected replayed = 0");
  run.ctx.reset_graph(0xABCDEF);
  run.ctx.reset_all_graphs();
  if (run.ctx.graph_capture_in_flight() != 0) run.fail("graph_capture_in_flight: expected 0 without a capture");
}

FERRUM_CONFORMANCE_CASE("begin_graph_capture", "non-G op during a capture: invalid_argument, capture stays open",
                        kF32Only) {
  const uint64_t n = 64;
  Buffer dst = run.output(n);
  const std::vector<float> host(n, 1.0f);
  Buffer a = run.upload(run.random(n));
  Buffer b = run.output(n);
  run.ctx.begin_graph_capture();
  run.expect_error("sync during a capture", ErrorCode::invalid_argument, [&] { run.ctx.sync(); });
  run.expect_error("write_typed during a capture", ErrorCode::invalid_argument,
                   [&] { run.ctx.write_typed({.dst = dst, .dtype = Dtype::f32, .data = host.data(), .data_len = n}); });
  run.expect_error("a second begin_graph_capture", ErrorCode::invalid_argument, [&] { run.ctx.begin_graph_capture(); });
  run.expect_error("replay_graph during a capture", ErrorCode::invalid_argument, [&] { (void)run.ctx.replay_graph(1); });
  run.expect_error("reset_all_graphs during a capture", ErrorCode::invalid_argument, [&] { run.ctx.reset_all_graphs(); });
  run.expect_error("set_decode_state during a capture", ErrorCode::invalid_argument,
                   [&] { run.ctx.set_decode_state({.token = 1, .step = 1}); });
  if (run.ctx.graph_capture_in_flight() != 1) run.fail("the capture must stay open after rejected ops");
  run.ctx.set_dev_state_mode(false);              // G: allowed during a capture
  run.ctx.copy_slice({.src = a, .src_offset = 0, .dst = b, .dst_offset = 0, .len = n});              // A G: recorded, not executed
  run.ctx.end_graph_capture(1);
  if (run.ctx.graph_capture_in_flight() != 0) run.fail("graph_capture_in_flight: expected 0 after end_graph_capture");
  run.check_untouched("copy_slice recorded during the capture must not run before replay", b, 0, n);
  if (run.ctx.replay_graph(1) != 1) run.fail("replay_graph of the stored key: expected replayed = 1");
  run.check("copy_slice after replay", b, run.download(a, n), n, 'E');
  run.expect_error("end_graph_capture without a capture", ErrorCode::invalid_argument,
                   [&] { run.ctx.end_graph_capture(2); });
  // An empty capture stores an empty graph.
  run.ctx.begin_graph_capture();
  run.ctx.end_graph_capture(3);
  if (run.ctx.replay_graph(3) != 1) run.fail("replay_graph of an empty graph: expected replayed = 1");
  run.ctx.reset_all_graphs();
  run.ctx.sync();
}

FERRUM_CONFORMANCE_CASE("reset_graph", "reset and replace while replays are in flight (gemm capture)", kActDtypes) {
  const uint64_t m = 96, n = 160, k = 256;
  Buffer a = run.upload(run.random(m * k)), b = run.upload(run.random(n * k));
  Buffer eager = run.output(m * n), graph = run.output(m * n);
  run.ctx.gemm({.a = a, .b = b, .out = eager, .m = m, .n = n, .k = k});  // also warms the plan cache before the capture
  const vec want = run.download(eager, m * n);

  run.ctx.begin_graph_capture();
  run.ctx.gemm({.a = a, .b = b, .out = graph, .m = m, .n = n, .k = k});  // cuBLASLt inside a capture
  run.ctx.end_graph_capture(10);
  for (int r = 0; r < 64; ++r)
    if (run.ctx.replay_graph(10) != 1) run.fail("replay_graph(10): expected replayed = 1");
  run.ctx.reset_graph(10);  // replays still in flight: release must be deferred
  if (run.ctx.replay_graph(10) != 0) run.fail("replay_graph after reset_graph: expected replayed = 0");

  run.ctx.begin_graph_capture();
  run.ctx.gemm({.a = a, .b = b, .out = graph, .m = m, .n = n, .k = k});
  run.ctx.end_graph_capture(11);
  for (int r = 0; r < 32; ++r) (void)run.ctx.replay_graph(11);
  run.ctx.begin_graph_capture();  // replace key 11 while its replays are in flight
  run.ctx.gemm({.a = a, .b = b, .out = graph, .m = m, .n = n, .k = k});
  run.ctx.end_graph_capture(11);
  for (int r = 0; r < 32; ++r) (void)run.ctx.replay_graph(11);
  run.ctx.reset_all_graphs();  // again with replays in flight
  run.ctx.sync();
  check_exact_nan_agnostic(run, "gemm replayed vs eager", run.download(graph, m * n), want, run.dtype);
  run.check("gemm replayed (guard)", graph, want, n, 'E');
}

FERRUM_CONFORMANCE_CASE("set_decode_state", "dev-state bounds: step 2^32-1, stride 0, position past capacity",
                        kActDtypes) {
  const uint64_t nkv = 2, hd = 64, cap = 8, H = 4;
  run.expect_error("set_decode_state(step = 2^32 - 1)", ErrorCode::invalid_argument,
                   [&] { run.ctx.set_decode_state({.token = 0, .step = 0xFFFFFFFFu}); });
  Buffer ck = run.output(nkv * cap * hd, Dtype::invalid, 0), cv = run.output(nkv * cap * hd, Dtype::invalid, 0);
  const vec nk = run.random(nkv * hd), nv = run.random(nkv * hd);
  Buffer bk = run.upload(nk), bv = run.upload(nv);
  run.ctx.set_dev_state_mode(true);

  // pos = cap: nothing written.
  run.ctx.set_decode_state({.token = 0, .step = static_cast<uint32_t>(cap)});
  run.ctx.kv_cache_append_head_major({.cache_k = ck, .cache_v = cv, .cache_len = 0, .cache_capacity = cap, .new_k_head_major = bk, .new_v_head_major = bv, .new_tokens = 1, .nkv = nkv, .hd = hd});
  run.ctx.sync();
  run.check_untouched("append at pos = capacity (K)", ck, 0, nkv * cap * hd);
  run.check_untouched("append at pos = capacity (V)", cv, 0, nkv * cap * hd);

  // pos = 5: row 5 of every head, nothing else.
  run.ctx.set_decode_state({.token = 0, .step = 5});
  run.ctx.kv_cache_append_head_major({.cache_k = ck, .cache_v = cv, .cache_len = /*cache_len, not read*/ 0, .cache_capacity = cap, .new_k_head_major = bk, .new_v_head_major = bv, .new_tokens = 1, .nkv = nkv, .hd = hd});
  const vec got_k = run.download(ck, nkv * cap * hd), got_v = run.download(cv, nkv * cap * hd);
  for (uint64_t h = 0; h < nkv; ++h) {
    check_exact_nan_agnostic(run, fmt("K row 5 of head %llu", (unsigned long long)h),
                             slice(got_k, (h * cap + 5) * hd, hd), slice(nk, h * hd, hd), run.dtype);
    check_exact_nan_agnostic(run, fmt("V row 5 of head %llu", (unsigned long long)h),
                             slice(got_v, (h * cap + 5) * hd, hd), slice(nv, h * hd, hd), run.dtype);
    run.check_untouched(fmt("K rows 0..4 of head %llu", (unsigned long long)h), ck, h * cap * hd, (h * cap + 5) * hd);
    run.check_untouched(fmt("K rows 6.. of head %llu", (unsigned long long)h), ck, (h * cap + 6) * hd, (h + 1) * cap * hd);
  }

  // flash_attention in dev-state mode needs kv_seq_stride > 0 (it bounds the device kv).
  Buffer q = run.upload(run.random(H * hd)), out = run.output(H * hd);
  run.expect_error("flash_attention dev-state with kv_seq_stride 0", ErrorCode::invalid_argument,
                   [&] { run.ctx.flash_attention({.q = q, .k = ck, .v = cv, .out = out, .batch = 1, .q_len = 1, .kv_len = 0, .pos_offset = 0, .num_heads = H, .num_kv_heads = nkv, .head_dim = hd, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0}); });
  run.ctx.set_dev_state_mode(false);
}

}  // namespace
