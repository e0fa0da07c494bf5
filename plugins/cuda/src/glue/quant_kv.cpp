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

using ull = unsigned long long;

int32_t code_dtype(attn::KvCode k) { return k == attn::KvCode::int8 ? FERRUM_DTYPE_I8 : FERRUM_DTYPE_F8_E4M3; }

// ---- alloc_paged_{int8,fp8}_layer ------------------------------------------------------------

template <class Args>
Status alloc_layer(const char* op, attn::KvCode code, ferrum_context& c, const Args& a, bool dry) {
  uint64_t codes = 0, scales = 0, capacity = 0;
  Status s = plugin::rules::check_quant_alloc(op, a, codes, scales, capacity);
  if (!s.ok() || dry) return s;
  const uint64_t N = a.max_blocks_per_seq;
  ferrum_buffer* b[6] = {};
  const int32_t dtypes[6] = {code_dtype(code), code_dtype(code), FERRUM_DTYPE_F32, FERRUM_DTYPE_F32,
                             FERRUM_DTYPE_U32, FERRUM_DTYPE_U32};
  const uint64_t counts[6] = {codes, codes, scales, scales, N, 1};
  for (int i = 0; i < 6 && s.ok(); ++i) s = make_buffer(c, dtypes[i], counts[i], /*zero=*/true, &b[i]);
  if (s.ok())  // identity block table; context_lens stays 0
    s = launch(op, c, [&](cudaStream_t st) -> cuda::Status {
      cuda::Status r = attn::iota_u32(static_cast<uint32_t*>(b[4]->data), N, st);
      return r.ok() ? sync(*c.dev) : r;
    });
  if (!s.ok()) {
    for (ferrum_buffer* x : b)
      if (x) (void)free_buffer(x);
    if (s.message.rfind(op, 0) != 0) s.message = std::string(op) + ": " + s.message;
    return s;
  }
  plugin::rules::fill_quant_layer(a, b, capacity);
  return ok_status();
}

// ---- {int8,fp8}_kv_append_paged ---------------------------------------------------------------

template <class Args>
Status append(const char* op, attn::KvCode code, ferrum_context& c, const Args& a, bool dry) {
  bool work = false;
  uint64_t blocks = 0, first = 0, need = 0;
  Status s = plugin::rules::check_quant_append(op, a, code_dtype(code), work, blocks, first, need);
  if (!s.ok() || !work) return s;
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
  return launch(op, c, [&](cudaStream_t st) -> cuda::Status {
    // arith-ok: first < need <= paged_block_indices_len (check_quant_append)
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
  uint64_t blocks = 0;
  Status s = plugin::rules::check_quant_decode(op, a, code_dtype(code), blocks);
  if (s.ok()) s = check_attention_head_dim(op, "head_dim", a.head_dim);
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
  p.scale = softmax_scale(a.scale, a.head_dim);
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
  return launch(op, c, [&](cudaStream_t st) { return attn::quant_decode(p, sms, scratch, st); });
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

// Every slot of the family, in the registry's order (FERRUM_QUANT_KV_SLOTS is generated).
const ferrum_quant_kv_table kQuantKvTable = {sizeof(ferrum_quant_kv_table), FERRUM_QUANT_KV_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cuda::glue
