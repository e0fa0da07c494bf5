// CPU plugin: the quantised KV family (docs/spec.md §7): int8 and fp8 e4m3 paged layers — allocation,
// append (the §7.2 recipe) and single-query paged decode attention over the dequantised values.
// The int8 and fp8 slots share one implementation per op, templated on the args struct and the
// code type.
#include <string>

#include <ferrum/common/paged_rules.hpp>

#include "glue.hpp"
#include "kernels/quant_kv.hpp"

namespace ferrum::cpu {
namespace {

template <class Code>
constexpr int32_t kCodeDtype = dtype_of<Code>;

// ---- alloc_paged_{int8,fp8}_layer ------------------------------------------------------------------

void release_all(ferrum_buffer* const* bufs, int n) {
  for (int i = 0; i < n; ++i) {
    if (!bufs[i]) continue;
    ferrum_buffer_release_args r{};
    r.struct_size = sizeof r;
    r.buf = bufs[i];
    kMemoryTable.buffer_release(nullptr, &r);
  }
}

template <class Code, class Args>
Status alloc_layer(const char* op, const Args& a, bool dry) {
  uint64_t codes = 0, scales = 0, capacity = 0;
  Status s = plugin::rules::check_quant_alloc(op, a, codes, scales, capacity);
  if (!s.ok() || dry) return s;
  const uint64_t N = a.max_blocks_per_seq;
  ferrum_buffer* b[6] = {};
  const int32_t dtypes[6] = {kCodeDtype<Code>, kCodeDtype<Code>, FERRUM_DTYPE_F32, FERRUM_DTYPE_F32,
                             FERRUM_DTYPE_U32, FERRUM_DTYPE_U32};
  const uint64_t counts[6] = {codes, codes, scales, scales, N, 1};
  for (int i = 0; i < 6; ++i) {
    s = make_buffer(dtypes[i], counts[i], /*zero=*/true, &b[i]);
    if (!s.ok()) {
      release_all(b, 6);
      s.message = std::string(op) + ": " + s.message;
      return s;
    }
  }
  uint32_t* table = data_of<uint32_t>(b[4]);
  for (uint64_t i = 0; i < N; ++i) table[i] = static_cast<uint32_t>(i);  // identity; context_lens stays 0

  plugin::rules::fill_quant_layer(a, b, capacity);
  return ok_status();
}

// ---- {int8,fp8}_kv_append_paged ---------------------------------------------------------------------

template <class Code, class Args>
Status append(const char* op, const Args& a, bool dry) {
  bool work = false;
  uint64_t blocks = 0, first = 0, need = 0;
  Status s = plugin::rules::check_quant_append(op, a, kCodeDtype<Code>, work, blocks, first, need);
  if (!s.ok() || !work || dry) return s;

  return dispatch_float(a.k_in->dtype, unsupported(std::string(op) + ": activation dtype"), [&](auto t) -> Status {
    using T = decltype(t);
    quant_kv_append_paged<T, Code>(data_of<const T>(a.k_in), data_of<const T>(a.v_in), data_of<Code>(a.layer_k),
                                   data_of<Code>(a.layer_v), data_of<float>(a.layer_k_scales),
                                   data_of<float>(a.layer_v_scales), a.paged_block_indices, a.cache_len_before,
                                   a.tokens, a.block_size, a.num_kv_heads, a.head_dim);
    return ok_status();
  });
}

// ---- {int8,fp8}_paged_decode_attention -----------------------------------------------------------

template <class Code, class Args>
Status decode_attention(const char* op, const Args& a, bool dry) {
  uint64_t blocks = 0;
  Status s = plugin::rules::check_quant_decode(op, a, kCodeDtype<Code>, blocks);
  if (!s.ok() || dry) return s;

  const int32_t idx = a.block_table ? a.block_table->dtype : FERRUM_DTYPE_U32;
  return dispatch_float(a.q->dtype, unsupported(std::string(op) + ": activation dtype"), [&](auto t) -> Status {
    using T = decltype(t);
    auto launch = [&](auto i) -> Status {
      using I = decltype(i);
      quant_paged_decode_attention<T, Code, I>(
          data_of<const T>(a.q), data_of<const Code>(a.layer_k), data_of<const Code>(a.layer_v),
          data_of<const float>(a.layer_k_scales), data_of<const float>(a.layer_v_scales),
          data_of<const I>(a.block_table), blocks, data_of<T>(a.output), a.num_q_heads, a.num_kv_heads,
          a.head_dim, a.valid_kv_len, a.block_size, a.scale, a.sliding_window);
      return ok_status();
    };
    return idx == FERRUM_DTYPE_I32 ? launch(int32_t{}) : launch(uint32_t{});
  });
}

// ---- the six slots ------------------------------------------------------------------------------

ferrum_status alloc_paged_int8_layer(ferrum_context* ctx, const ferrum_alloc_paged_int8_layer_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_alloc_paged_int8_layer_args& a, bool dry) {
    return alloc_layer<int8_t>("alloc_paged_int8_layer", a, dry);
  });
}

ferrum_status int8_kv_append_paged(ferrum_context* ctx, const ferrum_int8_kv_append_paged_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_int8_kv_append_paged_args& a, bool dry) {
    return append<int8_t>("int8_kv_append_paged", a, dry);
  });
}

ferrum_status int8_paged_decode_attention(ferrum_context* ctx, const ferrum_int8_paged_decode_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_int8_paged_decode_attention_args& a, bool dry) {
    return decode_attention<int8_t>("int8_paged_decode_attention", a, dry);
  });
}

ferrum_status alloc_paged_fp8_layer(ferrum_context* ctx, const ferrum_alloc_paged_fp8_layer_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_alloc_paged_fp8_layer_args& a, bool dry) {
    return alloc_layer<f8e4m3>("alloc_paged_fp8_layer", a, dry);
  });
}

ferrum_status fp8_kv_append_paged(ferrum_context* ctx, const ferrum_fp8_kv_append_paged_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_fp8_kv_append_paged_args& a, bool dry) {
    return append<f8e4m3>("fp8_kv_append_paged", a, dry);
  });
}

ferrum_status fp8_paged_decode_attention(ferrum_context* ctx, const ferrum_fp8_paged_decode_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_fp8_paged_decode_attention_args& a, bool dry) {
    return decode_attention<f8e4m3>("fp8_paged_decode_attention", a, dry);
  });
}

}  // namespace

// Every slot of the family, in the registry's order (FERRUM_QUANT_KV_SLOTS is generated).
const ferrum_quant_kv_table kQuantKvTable = {sizeof(ferrum_quant_kv_table), FERRUM_QUANT_KV_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cpu
