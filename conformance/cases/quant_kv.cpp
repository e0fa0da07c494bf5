// Conformance cases: quantised KV, int8 and fp8 (docs/spec.md §7). Codes and scales are class E against
// the §7.2 recipe of ref/ref_quant_kv.hpp; decode attention is class F against float64 attention
// over the dequantised values (class Q). Every case runs for both code families.
#include "../src/case_util.hpp"
#include "ref/ref_quant_kv.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace {

using namespace ferrum::conformance;
using namespace ferrum::conformance::util;
using ferrum::Buffer;
using ferrum::Dtype;
using ferrum::ErrorCode;
using ferrum::KvCacheQuant;
using ferrum::ref::KvQuant;

struct Family {
  KvQuant kind;
  const char* prefix;  // "int8" / "fp8"
  Dtype codes;
};
const Family kFamilies[] = {{KvQuant::int8, "int8", Dtype::i8}, {KvQuant::fp8, "fp8", Dtype::f8_e4m3}};

std::string op_name(const Family& f, const char* suffix) { return std::string(f.prefix) + suffix; }

KvCacheQuant alloc_layer(Run& run, const Family& f, uint64_t N, uint64_t bs, uint64_t nkv, uint64_t D) {
  return f.kind == KvQuant::int8 ? run.ctx.alloc_paged_int8_layer({.max_blocks_per_seq = N, .block_size = bs, .num_kv_heads = nkv, .head_dim = D})
                                 : run.ctx.alloc_paged_fp8_layer({.max_blocks_per_seq = N, .block_size = bs, .num_kv_heads = nkv, .head_dim = D});
}

void append(Run& run, const Family& f, const Buffer& k, const Buffer& v, KvCacheQuant& c,
            const std::vector<uint32_t>& blocks, uint64_t before, uint64_t tokens, uint64_t bs, uint64_t nkv,
            uint64_t D) {
  if (f.kind == KvQuant::int8)
    run.ctx.int8_kv_append_paged({.k_in = k, .v_in = v, .layer_k = c.k, .layer_v = c.v, .layer_k_scales = c.k_scales, .layer_v_scales = c.v_scales, .paged_block_indices = blocks, .cache_len_before = before, .tokens = tokens, .block_size = bs, .num_kv_heads = nkv, .head_dim = D});
  else
    run.ctx.fp8_kv_append_paged({.k_in = k, .v_in = v, .layer_k = c.k, .layer_v = c.v, .layer_k_scales = c.k_scales, .layer_v_scales = c.v_scales, .paged_block_indices = blocks, .cache_len_before = before, .tokens = tokens, .block_size = bs, .num_kv_heads = nkv, .head_dim = D});
}

void decode(Run& run, const Family& f, const Buffer& q, const Buffer& k, const Buffer& v, const Buffer& ks,
            const Buffer& vs, const Buffer& table, Buffer& out, uint64_t nq, uint64_t nkv, uint64_t D, uint64_t len,
            uint64_t bs, float scale, uint64_t window) {
  if (f.kind == KvQuant::int8)
    run.ctx.int8_paged_decode_attention({.q = q, .layer_k = k, .layer_v = v, .layer_k_scales = ks, .layer_v_scales = vs, .block_table = table, .output = out, .num_q_heads = nq, .num_kv_heads = nkv, .head_dim = D, .valid_kv_len = len, .block_size = bs, .scale = scale, .sliding_window = window});
  else
    run.ctx.fp8_paged_decode_attention({.q = q, .layer_k = k, .layer_v = v, .layer_k_scales = ks, .layer_v_scales = vs, .block_table = table, .output = out, .num_q_heads = nq, .num_kv_heads = nkv, .head_dim = D, .valid_kv_len = len, .block_size = bs, .scale = scale, .sliding_window = window});
}

Buffer upload_codes(Run& run, const Family& f, const vec& codes) {
  if (f.kind == KvQuant::int8) {
    std::vector<int8_t> c(codes.size());
    for (size_t i = 0; i < codes.size(); ++i) c[i] = static_cast<int8_t>(codes[i]);
    return run.upload_i8(c);
  }
  return run.upload(codes, Dtype::f8_e4m3);
}

// ---- alloc ----------------------------------------------------------------------------------------

struct AllocRow {
  uint64_t N, bs, nkv, D;
};

const bool kAlloc = [] {
  for (const Family& f : kFamilies) {
    const std::string op = std::string("alloc_paged_") + f.prefix + "_layer";
    register_table(
        op.c_str(), kF32Only, std::vector<AllocRow>{{4, 16, 2, 64}, {3, 1, 1, 7}, {2, 32, 8, 128}},
        [](const AllocRow& r) {
          return fmt("N %llu, bs %llu, nkv %llu, hd %llu", (unsigned long long)r.N, (unsigned long long)r.bs,
                     (unsigned long long)r.nkv, (unsigned long long)r.D);
        },
        [f](Run& run, const AllocRow& r) {
          KvCacheQuant c = alloc_layer(run, f, r.N, r.bs, r.nkv, r.D);
          const uint64_t codes = r.N * r.bs * r.nkv * r.D, scales = r.N * r.bs * r.nkv;
          auto expect = [&](const char* what, const Buffer& b, Dtype dt, uint64_t n) {
            if (b.dtype() != dt || b.count() != n)
              run.fail(fmt("%s: expected %s[%llu], given %s[%llu]", what, std::string(ferrum::to_string(dt)).c_str(),
                           (unsigned long long)n, std::string(ferrum::to_string(b.dtype())).c_str(),
                           (unsigned long long)b.count()));
          };
          expect("k", c.k, f.codes, codes);
          expect("v", c.v, f.codes, codes);
          expect("k_scales", c.k_scales, Dtype::f32, scales);
          expect("v_scales", c.v_scales, Dtype::f32, scales);
          expect("block_table", c.block_table, Dtype::u32, r.N);
          expect("context_lens", c.context_lens, Dtype::u32, 1);
          if (run.failed()) return;
          run.check_values("k zeroed", run.download(c.k), vec(codes, 0.0), 0, f.codes, 'E');
          run.check_values("v zeroed", run.download(c.v), vec(codes, 0.0), 0, f.codes, 'E');
          run.check_values("k_scales zeroed", run.download(c.k_scales), vec(scales, 0.0), 0, Dtype::f32, 'E');
          run.check_values("v_scales zeroed", run.download(c.v_scales), vec(scales, 0.0), 0, Dtype::f32, 'E');
          vec ident(r.N);
          std::iota(ident.begin(), ident.end(), 0.0);
          run.check_values("block_table identity", run.download(c.block_table), ident, 0, Dtype::u32, 'E');
          run.check_values("context_lens", run.download(c.context_lens), vec{0.0}, 0, Dtype::u32, 'E');
          if (c.len != 0 || c.capacity != r.N * r.bs || c.block_size != r.bs || c.num_kv_heads != r.nkv ||
              c.head_dim != r.D)
            run.fail("alloc: len/capacity/dimensions of the layer struct are wrong");
        });
  }
  return true;
}();

// ---- append: codes and scales, class E ----------------------------------------------------------

struct AppendRow {
  const char* name;
  uint64_t N, bs, nkv, D, before, tokens;
  std::vector<uint32_t> blocks;
};

const std::vector<AppendRow> kAppendRows = {
    {"decode, 1 token", 4, 16, 2, 64, 0, 1, {0, 1, 2, 3}},
    {"decode, 1 token after 21, non-identity blocks", 4, 16, 2, 128, 21, 1, {3, 0, 2, 1}},
    {"prefill 37 tokens crossing blocks, non-identity blocks", 6, 16, 2, 64, 0, 37, {4, 1, 3}},
    {"37 tokens after 21 (unaligned), bs 32", 5, 32, 4, 64, 21, 37, {2, 4, 0}},
    {"bs 1, 5 tokens after 3, permuted", 10, 1, 1, 7, 3, 5, {9, 8, 7, 2, 5, 1, 0, 3}},
    {"hd 256, 3 tokens, gqa 8 heads", 2, 16, 8, 256, 14, 3, {1, 0}},
    {"odd hd 13, 40 tokens after 5, bs 16", 4, 16, 3, 13, 5, 40, {3, 2, 1, 0}},
};

const bool kAppend = [] {
  for (const Family& f : kFamilies)
    register_table(
        op_name(f, "_kv_append_paged").c_str(), kActDtypes, kAppendRows, [](const AppendRow& r) { return std::string(r.name); },
        [f](Run& run, const AppendRow& r) {
          const uint64_t n_in = r.tokens * r.nkv * r.D;
          vec k = run.random(n_in, -2.0, 2.0), v = run.random(n_in, -0.5, 0.5);
          KvCacheQuant c = alloc_layer(run, f, r.N, r.bs, r.nkv, r.D);
          append(run, f, run.upload(k), run.upload(v), c, r.blocks, r.before, r.tokens, r.bs, r.nkv, r.D);
          const uint64_t codes = r.N * r.bs * r.nkv * r.D, scales = r.N * r.bs * r.nkv;
          vec rk(codes, 0.0), rv(codes, 0.0), rks(scales, 0.0), rvs(scales, 0.0);
          ferrum::ref::quant_kv_append_paged(f.kind, k, v, rk, rv, rks, rvs, r.blocks, r.before, r.tokens, r.bs,
                                             r.nkv, r.D);
          run.check_values("k codes", run.download(c.k), rk, r.D, f.codes, 'E');
          run.check_values("v codes", run.download(c.v), rv, r.D, f.codes, 'E');
          run.check_values("k scales", run.download(c.k_scales), rks, r.nkv, Dtype::f32, 'E');
          run.check_values("v scales", run.download(c.v_scales), rvs, r.nkv, Dtype::f32, 'E');
        });
  return true;
}();

// Edge vectors (one token, 4 KV heads of 8): an all-tiny/zero vector (the 1e-8 floor), exact ties
// for int8 (max 127 -> s = 1), exact ties for fp8 (max 448 -> s = 1), and a vector whose largest
// magnitude is negative (the saturation boundary of both codes).
void edge_case(Run& run, const Family& f) {
  const uint64_t nkv = 4, D = 8, bs = 16;
  vec k = {3e-9, -2e-9, 0.0, 1e-9, -0.0, 5e-10, 0.0, 2e-9,                  // tiny: a < 1e-8 (or 0 in f16)
           127.0, 0.5, 1.5, 2.5, -0.5, -2.5, 126.5, -3.5,                  // int8 ties (s = 1)
           448.0, 1.0625, 1.1875, -1.0625, 0.0078125 * 1.5, 3.25, -208.0, 17.0,  // fp8 ties (s = 1)
           -0.75, 0.7, 0.25, -0.7490234375, 0.5, 0.1, -0.3, 0.6};          // negative max, near-max
  for (double& x : k) x = ft::round_to(raw(run.dtype), x);
  vec v = k;
  std::reverse(v.begin(), v.end());
  KvCacheQuant c = alloc_layer(run, f, 2, bs, nkv, D);
  const std::vector<uint32_t> blocks = {1};
  append(run, f, run.upload(k), run.upload(v), c, blocks, 7, 1, bs, nkv, D);
  vec rk(2 * bs * nkv * D, 0.0), rv = rk, rks(2 * bs * nkv, 0.0), rvs = rks;
  ferrum::ref::quant_kv_append_paged(f.kind, k, v, rk, rv, rks, rvs, blocks, 7, 1, bs, nkv, D);
  run.check_values("k codes", run.download(c.k), rk, D, f.codes, 'E');
  run.check_values("v codes", run.download(c.v), rv, D, f.codes, 'E');
  run.check_values("k scales", run.download(c.k_scales), rks, nkv, Dtype::f32, 'E');
  run.check_values("v scales", run.download(c.v_scales), rvs, nkv, Dtype::f32, 'E');
}

const bool kEdge = [] {
  for (const Family& f : kFamilies)
    register_case({op_name(f, "_kv_append_paged"), "edge vectors: 1e-8 floor, ties, saturation", kActDtypes,
                   [f](Run& run) { edge_case(run, f); }});
  return true;
}();

// ---- decode attention: class F over the dequantised values ------------------------------------

struct DecodeRow {
  const char* name;
  uint64_t nq, nkv, D, bs, len, window, N;
  float scale;
  bool i32_table;
  // Magnitudes: q times q_mag; key j's K and V rows times 10^(lo + (hi − lo)·j / (len − 1)).
  double q_mag = 1.0, lo = 0.0, hi = 0.0;
};

const std::vector<DecodeRow> kDecodeRows = {
    {"gqa 1 (mha), hd 64, bs 16", 8, 8, 64, 16, 50, 0, 5, 0.0f, false},
    {"gqa 2, hd 128, bs 16", 8, 4, 128, 16, 33, 0, 4, 0.0f, false},
    {"gqa 4, hd 128, bs 32, i32 table", 8, 2, 128, 32, 70, 0, 4, 0.0f, true},
    {"gqa 8, hd 256, bs 16", 8, 1, 256, 16, 17, 0, 3, 0.0f, false},
    {"hd 7, bs 1, scale 0.3", 4, 2, 7, 1, 9, 0, 12, 0.3f, false},
    {"hd 13, bs 16, 1 key", 2, 1, 13, 16, 1, 0, 2, 0.0f, false},
    {"sliding window 20, hd 64", 4, 2, 64, 16, 60, 20, 5, 0.0f, false},
    {"window larger than len", 4, 4, 64, 16, 10, 100, 2, 0.0f, false},
    {"long 1100 keys (split chunks), gqa 4", 8, 2, 64, 16, 1100, 0, 70, 0.0f, false},
    {"valid_kv_len 0: zero rows", 4, 2, 64, 16, 0, 0, 2, 0.0f, false},
    // Range: a query beyond the f16 range, V rows far below it, scales rising by 9 decades over
    // the keys (a tensor-core decode running f16 operands must rescale, not overflow or flush).
    {"q at 3e5 (beyond f16), scale 1e-5, gqa 4, hd 128", 8, 2, 128, 16, 300, 0, 20, 1e-5f, false, 3e5},
    {"K and V rows at 1e-3 (P·s_v below the f16 normal range), gqa 4, hd 128", 8, 2, 128, 16, 300, 0, 20, 0.0f, false, 1.0, -3.0, -3.0},
    {"K and V rows from 1e-6 to 1e3 over 2000 keys, gqa 8, hd 128", 8, 1, 128, 16, 2000, 0, 126, 0.0f, false, 1.0, -6.0, 3.0},
};

void decode_case(Run& run, const Family& f, const DecodeRow& r) {
  const uint64_t slots = r.N * r.bs * r.nkv;
  // Random K/V per slot, quantised by the reference recipe (independent of the plugin's append).
  vec kraw = run.random(slots * r.D, -1.0, 1.0, Dtype::f32), vraw = run.random(slots * r.D, -1.0, 1.0, Dtype::f32);
  if (r.lo != 0.0 || r.hi != 0.0) {  // slot s holds key (N − 1 − block)·bs + offset (the reversed table below)
    for (uint64_t s = 0; s < slots; ++s) {
      const uint64_t blk = s / (r.bs * r.nkv), j = (r.N - 1 - blk) * r.bs + s / r.nkv % r.bs;
      const double mag = std::pow(10.0, r.lo + (r.hi - r.lo) * static_cast<double>(j) / static_cast<double>(std::max<uint64_t>(r.len, 2) - 1));
      for (uint64_t d = 0; d < r.D; ++d) {
        kraw[s * r.D + d] = static_cast<float>(kraw[s * r.D + d] * mag);
        vraw[s * r.D + d] = static_cast<float>(vraw[s * r.D + d] * mag);
      }
    }
  }
  vec kc(slots * r.D), vc(slots * r.D), ks(slots), vs(slots);
  for (uint64_t s = 0; s < slots; ++s) {
    ks[s] = ferrum::ref::quantize_kv_vector(f.kind, &kraw[s * r.D], r.D, &kc[s * r.D]);
    vs[s] = ferrum::ref::quantize_kv_vector(f.kind, &vraw[s * r.D], r.D, &vc[s * r.D]);
  }
  // A non-identity block table: reversed pool order.
  const uint64_t nblk = (r.len + r.bs - 1) / r.bs;
  std::vector<uint32_t> table(std::max<uint64_t>(nblk, 1));
  std::vector<int64_t> table64(table.size());
  for (uint64_t i = 0; i < table.size(); ++i) table64[i] = table[i] = static_cast<uint32_t>(r.N - 1 - i);
  vec q = run.random(r.nq * r.D);
  const double q_mag = run.dtype == Dtype::f16 ? std::min(r.q_mag, 6e4) : r.q_mag;  // F16 tops out at 65504
  for (double& x : q) x = ft::round_to(raw(run.dtype), x * q_mag);
  Buffer bt;
  if (r.i32_table) {
    std::vector<int32_t> t32(table.begin(), table.end());
    bt = run.upload_i32(t32);
  } else {
    bt = run.upload_u32(table);
  }
  Buffer out = run.output(r.nq * r.D);
  decode(run, f, run.upload(q), upload_codes(run, f, kc), upload_codes(run, f, vc), run.upload(ks, Dtype::f32),
         run.upload(vs, Dtype::f32), bt, out, r.nq, r.nkv, r.D, r.len, r.bs, r.scale, r.window);
  vec ref;
  ferrum::ref::quant_paged_decode_attention(q, kc, vc, ks, vs, table64, ref, r.nq, r.nkv, r.D, r.len, r.bs, r.scale,
                                            r.window);
  run.check("output", out, ref, r.D);
}

const bool kDecode = [] {
  for (const Family& f : kFamilies)
    register_table(
        op_name(f, "_paged_decode_attention").c_str(), kActDtypes, kDecodeRows,
        [](const DecodeRow& r) { return std::string(r.name); },
        [f](Run& run, const DecodeRow& r) { decode_case(run, f, r); });
  return true;
}();

// Append (plugin) then decode (plugin) over the same layer, against the reference of both.
void append_then_decode(Run& run, const Family& f) {
  const uint64_t N = 6, bs = 16, nkv = 2, D = 64, nq = 8, before = 0, tokens = 45;
  const std::vector<uint32_t> blocks = {5, 0, 3};
  vec k = run.random(tokens * nkv * D), v = run.random(tokens * nkv * D), q = run.random(nq * D);
  KvCacheQuant c = alloc_layer(run, f, N, bs, nkv, D);
  append(run, f, run.upload(k), run.upload(v), c, blocks, before, tokens, bs, nkv, D);
  Buffer table = run.upload_u32(blocks);
  Buffer out = run.output(nq * D);
  decode(run, f, run.upload(q), c.k, c.v, c.k_scales, c.v_scales, table, out, nq, nkv, D, tokens, bs, 0.0f, 0);
  vec rk(N * bs * nkv * D, 0.0), rv = rk, rks(N * bs * nkv, 0.0), rvs = rks, ref;
  ferrum::ref::quant_kv_append_paged(f.kind, k, v, rk, rv, rks, rvs, blocks, before, tokens, bs, nkv, D);
  ferrum::ref::quant_paged_decode_attention(q, rk, rv, rks, rvs, {5, 0, 3}, ref, nq, nkv, D, tokens, bs, 0.0f, 0);
  run.check("output", out, ref, D);
}

// ---- errors: INVALID_ARGUMENT, nothing written ---------------------------------------------------

void append_errors(Run& run, const Family& f) {
  const uint64_t N = 3, bs = 16, nkv = 2, D = 8;
  KvCacheQuant c = alloc_layer(run, f, N, bs, nkv, D);
  vec k = run.random(20 * nkv * D), v = run.random(20 * nkv * D);
  Buffer bk = run.upload(k), bv = run.upload(v);
  run.expect_error("paged_block_indices too short", ErrorCode::invalid_argument,
                   [&] { append(run, f, bk, bv, c, {0}, 0, 20, bs, nkv, D); }, "paged_block_indices_len");
  run.expect_error("block index >= N", ErrorCode::invalid_argument,
                   [&] { append(run, f, bk, bv, c, {0, 3}, 0, 20, bs, nkv, D); }, "paged_block_indices");
  run.expect_error("block_size 0", ErrorCode::invalid_argument,
                   [&] { append(run, f, bk, bv, c, {0, 1}, 0, 20, 0, nkv, D); }, "block_size");
  // Nothing was written by the failed calls.
  run.check_values("k untouched", run.download(c.k), vec(N * bs * nkv * D, 0.0), 0, f.codes, 'E');
  run.check_values("k_scales untouched", run.download(c.k_scales), vec(N * bs * nkv, 0.0), 0, Dtype::f32, 'E');
  // Wrong code dtype for the family: a pool of the other family.
  const Family& other = f.kind == KvQuant::int8 ? kFamilies[1] : kFamilies[0];
  KvCacheQuant o = alloc_layer(run, other, N, bs, nkv, D);
  run.expect_error("codes of the other family", ErrorCode::invalid_argument,
                   [&] { append(run, f, bk, bv, o, {0, 1}, 0, 20, bs, nkv, D); }, "layer_k");
}

void decode_errors(Run& run, const Family& f) {
  const uint64_t N = 2, bs = 16, nkv = 2, D = 8;
  KvCacheQuant c = alloc_layer(run, f, N, bs, nkv, D);
  Buffer q = run.upload(run.random(6 * D));
  Buffer out = run.output(6 * D);
  run.expect_error("valid_kv_len > N·block_size", ErrorCode::invalid_argument,
                   [&] { decode(run, f, q, c.k, c.v, c.k_scales, c.v_scales, c.block_table, out, 4, nkv, D, 33, bs, 0.0f, 0); },
                   "valid_kv_len");
  run.expect_error("num_q_heads % num_kv_heads", ErrorCode::invalid_argument,
                   [&] { decode(run, f, q, c.k, c.v, c.k_scales, c.v_scales, c.block_table, out, 3, nkv, D, 8, bs, 0.0f, 0); },
                   "num_q_heads");
  Buffer short_table = run.upload_u32({0});
  run.expect_error("block_table too short", ErrorCode::invalid_argument,
                   [&] { decode(run, f, q, c.k, c.v, c.k_scales, c.v_scales, short_table, out, 4, nkv, D, 20, bs, 0.0f, 0); },
                   "block_table");
  run.expect_error("non-finite scale", ErrorCode::invalid_argument,
                   [&] { decode(run, f, q, c.k, c.v, c.k_scales, c.v_scales, c.block_table, out, 4, nkv, D, 8, bs,
                                std::numeric_limits<float>::infinity(), 0); },
                   "scale");
  run.check_untouched("output untouched", out, 0, 6 * D);
}

const bool kMisc = [] {
  for (const Family& f : kFamilies) {
    register_case({op_name(f, "_paged_decode_attention"), "append 45 tokens then decode (both plugin)", kActDtypes,
                   [f](Run& run) { append_then_decode(run, f); }});
    register_case({op_name(f, "_kv_append_paged"), "errors: block list, block index, block_size, code dtype",
                   kF32Only, [f](Run& run) { append_errors(run, f); }});
    register_case({op_name(f, "_paged_decode_attention"), "errors: length, gqa, block_table, scale", kF32Only,
                   [f](Run& run) { decode_errors(run, f); }});
  }
  return true;
}();

}  // namespace
