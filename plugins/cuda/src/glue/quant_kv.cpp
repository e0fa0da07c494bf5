// CUDA plugin: the quantised KV family — int8 and fp8 e4m3 paged layers: allocation, append (the
// quantisation recipe, bit-exact with the CPU plugin) and single-query paged decode attention
// over the dequantised values (kernels/attention/quant_kv.hpp). The int8 and fp8 slots share
// one implementation per op. Checks follow the CPU plugin's (same messages,
// <ferrum/common/paged_rules.hpp>).
//
// The append takes its block list in host memory (not capturable): the used entries are
// validated on the host, then copied stream-ordered into the context's attention scratch
// (after its arrival counters, where the split partials of a later attention launch go) and
// read there by the kernel. The decode attention reads its block table on the device and is
// capturable.
#include <cmath>
#include <string>

#include <ferrum/common/op_rules.hpp>
#include <ferrum/common/paged_rules.hpp>

#include "kernels/attention/flash.hpp"
#include "kernels/attention/quant_kv.hpp"
#include "memory.hpp"
#include "paged_common.hpp"

namespace ferrum::cuda::glue {
namespace {

using plugin::run_op;
using plugin::rules::check_code_dtype;
using plugin::rules::check_gqa;
using plugin::rules::check_min_count;
using plugin::rules::check_positive;
using plugin::rules::check_quant_pool;
using ull = unsigned long long;

int32_t code_dtype(attn::KvCode k) { return k == attn::KvCode::int8 ? FERRUM_DTYPE_I8 : FERRUM_DTYPE_F8_E4M3; }

// ---- alloc_paged_{int8,fp8}_layer ------------------------------------------------------------

template <class Args>
Status alloc_layer(const char* op, attn::KvCode code, ferrum_context& c, const Args& a, bool dry) {
  Status s = check_positive(op, "max_blocks_per_seq", a.max_blocks_per_seq, true);
  if (s.ok()) s = check_positive(op, "block_size", a.block_size, true);
  if (s.ok()) s = check_positive(op, "num_kv_heads", a.num_kv_heads, true);
  if (s.ok()) s = check_positive(op, "head_dim", a.head_dim, true);
  if (!s.ok()) return s;
  if (a.max_blocks_per_seq > (uint64_t{1} << 31))  // block ids live in a U32 table, below 2^31
    return invalid(plugin::format("%s: argument 'max_blocks_per_seq': expected at most 2^31, given %llu", op,
                                  (ull)a.max_blocks_per_seq));
  if (a.cache->struct_size < FERRUM_KV_CACHE_QUANT_SIZE_V1_0)
    return invalid(plugin::format("%s: argument 'cache': expected struct_size >= %d, given %llu", op,
                                  FERRUM_KV_CACHE_QUANT_SIZE_V1_0, (ull)a.cache->struct_size));
  const uint64_t N = a.max_blocks_per_seq;
  const uint64_t codes = ferrum::common::shape_elems({N, a.block_size, a.num_kv_heads, a.head_dim});
  const uint64_t scales = ferrum::common::shape_elems({N, a.block_size, a.num_kv_heads});
  if (codes == UINT64_MAX || scales == UINT64_MAX || N > UINT64_MAX / a.block_size)
    return {FERRUM_STATUS_OUT_OF_MEMORY, plugin::format("%s: the pool size overflows 64 bits", op)};
  if (dry) return ok_status();

  ferrum_buffer* b[6] = {};
  const int32_t dtypes[6] = {code_dtype(code), code_dtype(code), FERRUM_DTYPE_F32, FERRUM_DTYPE_F32,
                             FERRUM_DTYPE_U32, FERRUM_DTYPE_U32};
  const uint64_t counts[6] = {codes, codes, scales, scales, N, 1};
  for (int i = 0; i < 6 && s.ok(); ++i) s = make_buffer(c, dtypes[i], counts[i], /*zero=*/true, &b[i]);
  if (s.ok())  // identity block table; context_lens stays 0
    s = enqueue(op, c, [&](cudaStream_t st) -> cuda::Status {
      cuda::Status r = attn::iota_u32(static_cast<uint32_t*>(b[4]->data), N, st);
      return r.ok() ? sync(*c.dev) : r;
    });
  if (!s.ok()) {
    for (ferrum_buffer* x : b)
      if (x) (void)free_buffer(x);
    if (s.message.rfind(op, 0) != 0) s.message = std::string(op) + ": " + s.message;
    return s;
  }
  ferrum_kv_cache_quant& q = *a.cache;
  q.k = b[0];
  q.v = b[1];
  q.k_scales = b[2];
  q.v_scales = b[3];
  q.block_table = b[4];
  q.context_lens = b[5];
  q.len = 0;
  q.capacity = N * a.block_size;
  q.block_size = a.block_size;
  q.num_kv_heads = a.num_kv_heads;
  q.head_dim = a.head_dim;
  return ok_status();
}

// ---- {int8,fp8}_kv_append_paged ---------------------------------------------------------------

template <class Args>
Status append(const char* op, attn::KvCode code, ferrum_context& c, const Args& a, bool dry) {
  const bool work = a.tokens != 0;
  Status s = check_positive(op, "block_size", a.block_size, true);
  if (s.ok()) s = check_positive(op, "num_kv_heads", a.num_kv_heads, work);
  if (s.ok()) s = check_positive(op, "head_dim", a.head_dim, work);
  if (s.ok()) s = check_code_dtype(op, "layer_k", a.layer_k, code_dtype(code));
  if (s.ok()) s = check_code_dtype(op, "layer_v", a.layer_v, code_dtype(code));
  if (s.ok() && a.cache_len_before > UINT64_MAX - a.tokens)
    s = invalid(plugin::format("%s: argument 'tokens': expected cache_len_before + tokens < 2^64, given %llu + %llu",
                               op, (ull)a.cache_len_before, (ull)a.tokens));
  if (!s.ok() || !work) return s;
  uint64_t blocks = 0;
  s = check_quant_pool(op, a.layer_k, a.layer_v, a.layer_k_scales, a.layer_v_scales, a.block_size, a.num_kv_heads,
                       a.head_dim, blocks);
  if (!s.ok()) return s;
  const uint64_t end = a.cache_len_before + a.tokens;
  const uint64_t need = end / a.block_size + (end % a.block_size != 0);
  if (a.paged_block_indices_len < need)
    return invalid(plugin::format(
        "%s: argument 'paged_block_indices_len': expected >= ceil((cache_len_before + tokens) / block_size) = "
        "ceil((%llu + %llu) / %llu) = %llu, given %llu",
        op, (ull)a.cache_len_before, (ull)a.tokens, (ull)a.block_size, (ull)need, (ull)a.paged_block_indices_len));
  const uint64_t first = a.cache_len_before / a.block_size;
  for (uint64_t lb = first; lb < need; ++lb)
    if (a.paged_block_indices[lb] >= blocks)
      return invalid(plugin::format(
          "%s: argument 'paged_block_indices': expected entries < N = %llu (the pool's block count), given "
          "paged_block_indices[%llu] = %u",
          op, (ull)blocks, (ull)lb, a.paged_block_indices[lb]));
  s = check_devices(op, c, {{"k_in", a.k_in}, {"v_in", a.v_in}, {"layer_k", a.layer_k}, {"layer_v", a.layer_v},
                            {"layer_k_scales", a.layer_k_scales}, {"layer_v_scales", a.layer_v_scales}});
  if (!s.ok() || dry) return s;
  // The used block ids go to the scratch, after the arrival counters (which stay untouched).
  int sms = 0;
  s = attention_sm_count(c, sms);
  const uint64_t off = attn::flash_counter_bytes(sms), n = need - first;
  void* scratch = nullptr;
  if (s.ok()) s = attention_scratch(c, off + n * sizeof(uint32_t), op, scratch);
  if (!s.ok()) return s;
  uint32_t* dev_blocks = reinterpret_cast<uint32_t*>(static_cast<unsigned char*>(scratch) + off);
  return enqueue(op, c, [&](cudaStream_t st) -> cuda::Status {
    cuda::Status r = h2d_async(*c.dev, dev_blocks, a.paged_block_indices + first, n * sizeof(uint32_t));
    if (!r.ok()) return r;
    return attn::quant_kv_append(a.k_in->dtype, code, a.k_in->data, a.v_in->data, a.layer_k->data, a.layer_v->data,
                                 static_cast<float*>(a.layer_k_scales->data), static_cast<float*>(a.layer_v_scales->data),
                                 dev_blocks, first, a.cache_len_before, a.tokens, a.block_size, a.num_kv_heads,
                                 a.head_dim, st);
  });
}

// ---- {int8,fp8}_paged_decode_attention -----------------------------------------------------------

template <class Args>
Status decode_attention(const char* op, attn::KvCode code, ferrum_context& c, const Args& a, bool dry) {
  Status s = check_gqa(op, a.num_q_heads, a.num_kv_heads, "num_q_heads", "num_kv_heads");
  if (s.ok()) s = check_positive(op, "head_dim", a.head_dim, true);
  if (s.ok()) s = check_positive(op, "block_size", a.block_size, true);
  if (s.ok() && !std::isfinite(a.scale))
    s = invalid(plugin::format("%s: argument 'scale': expected a finite value (0 = 1/sqrt(head_dim)), given %g", op,
                               a.scale));
  if (s.ok()) s = check_code_dtype(op, "layer_k", a.layer_k, code_dtype(code));
  if (s.ok()) s = check_code_dtype(op, "layer_v", a.layer_v, code_dtype(code));
  if (!s.ok()) return s;
  uint64_t blocks = 0;
  if (a.valid_kv_len > 0 || (a.layer_k && a.layer_v && a.layer_k_scales && a.layer_v_scales)) {
    s = check_quant_pool(op, a.layer_k, a.layer_v, a.layer_k_scales, a.layer_v_scales, a.block_size, a.num_kv_heads,
                         a.head_dim, blocks);
    if (!s.ok()) return s;
  }
  const uint64_t cap = ferrum::common::shape_elems({blocks, a.block_size});
  if (a.valid_kv_len > cap)
    return invalid(plugin::format("%s: argument 'valid_kv_len': expected <= N·block_size = %llu·%llu, given %llu", op,
                                  (ull)blocks, (ull)a.block_size, (ull)a.valid_kv_len));
  const uint64_t table_len = a.valid_kv_len / a.block_size + (a.valid_kv_len % a.block_size != 0);
  s = check_min_count(op, "block_table", a.block_table, table_len);
  if (s.ok() && !attn::head_dim_supported(a.head_dim))
    s = unsupported(plugin::format("%s: argument 'head_dim': expected one of 32, 64, 80, 96, 112, 128, 192, 256 (the "
                                   "CUDA attention kernels), given %llu",
                                   op, (ull)a.head_dim));
  if (s.ok())
    s = check_devices(op, c, {{"q", a.q}, {"layer_k", a.layer_k}, {"layer_v", a.layer_v},
                              {"layer_k_scales", a.layer_k_scales}, {"layer_v_scales", a.layer_v_scales},
                              {"block_table", a.block_table}, {"output", a.output}});
  if (!s.ok() || dry) return s;
  attn::QuantDecodeParams p;
  p.act = a.q->dtype;
  p.code = code;
  p.q = a.q->data;
  p.out = a.output->data;
  p.num_blocks = blocks;
  p.block_size = a.block_size;
  p.nq = a.num_q_heads;
  p.nkv = a.num_kv_heads;
  p.head_dim = a.head_dim;
  p.valid_kv_len = a.valid_kv_len;
  p.window = a.sliding_window;
  p.scale = a.scale != 0.0f ? a.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.head_dim)));
  if (a.valid_kv_len > 0) {
    p.k_codes = a.layer_k->data;
    p.v_codes = a.layer_v->data;
    p.k_scales = static_cast<const float*>(a.layer_k_scales->data);
    p.v_scales = static_cast<const float*>(a.layer_v_scales->data);
    p.block_table = a.block_table->data;
    p.bt_i32 = is_i32(a.block_table);
  }
  int sms = 0;
  s = attention_sm_count(c, sms);
  void* scratch = nullptr;
  if (s.ok()) s = attention_scratch(c, attn::quant_decode_scratch_bytes(p, sms), op, scratch);
  if (!s.ok()) return s;
  return enqueue(op, c, [&](cudaStream_t st) { return attn::quant_decode(p, sms, scratch, st); });
}

// ---- the six slots ------------------------------------------------------------------------------

ferrum_status alloc_paged_int8_layer(ferrum_context* ctx, const ferrum_alloc_paged_int8_layer_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return alloc_layer("alloc_paged_int8_layer", attn::KvCode::int8, c, a, dry);
  });
}
ferrum_status int8_kv_append_paged(ferrum_context* ctx, const ferrum_int8_kv_append_paged_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return append("int8_kv_append_paged", attn::KvCode::int8, c, a, dry);
  });
}
ferrum_status int8_paged_decode_attention(ferrum_context* ctx, const ferrum_int8_paged_decode_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return decode_attention("int8_paged_decode_attention", attn::KvCode::int8, c, a, dry);
  });
}
ferrum_status alloc_paged_fp8_layer(ferrum_context* ctx, const ferrum_alloc_paged_fp8_layer_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return alloc_layer("alloc_paged_fp8_layer", attn::KvCode::fp8, c, a, dry);
  });
}
ferrum_status fp8_kv_append_paged(ferrum_context* ctx, const ferrum_fp8_kv_append_paged_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return append("fp8_kv_append_paged", attn::KvCode::fp8, c, a, dry);
  });
}
ferrum_status fp8_paged_decode_attention(ferrum_context* ctx, const ferrum_fp8_paged_decode_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const auto& a, bool dry) {
    return decode_attention("fp8_paged_decode_attention", attn::KvCode::fp8, c, a, dry);
  });
}

}  // namespace

const ferrum_quant_kv_table kQuantKvTable = {
    sizeof(ferrum_quant_kv_table), alloc_paged_int8_layer, int8_kv_append_paged, int8_paged_decode_attention,
    alloc_paged_fp8_layer,         fp8_kv_append_paged,    fp8_paged_decode_attention,
};

}  // namespace ferrum::cuda::glue
