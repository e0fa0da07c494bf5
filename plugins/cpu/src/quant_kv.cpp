// CPU plugin: the quantised KV family (OPS.md §7): int8 and fp8 e4m3 paged layers — allocation,
// append (the §7.2 recipe) and single-query paged decode attention over the dequantised values.
// The int8 and fp8 slots share one implementation per op, templated on the args struct and the
// code type.
#include <string>

#include "glue.hpp"
#include "kernels/quant_kv.hpp"

namespace ferrum::cpu {
namespace {

using plugin::data_of;
using plugin::run_op;

template <class Code>
constexpr int32_t kCodeDtype = dtype_of<Code>;

// The codes of `field` must be of the family's code dtype. For the int8 ops the generated checks
// already enforce I8; the fp8 ops need this check of their own (F8_E4M3).
template <class Code>
Status check_codes(const char* op, const char* field, const ferrum_buffer* b) {
  if (b && b->dtype != kCodeDtype<Code>)
    return invalid(plugin::format("%s: argument '%s': expected dtype %s (the codes of this family), given %s", op,
                                  field, dtype_name(kCodeDtype<Code>), dtype_name(b->dtype)));
  return ok_status();
}

// Pool geometry shared by append and decode attention (OPS.md §0.10, §7.3): N = layer_k.count /
// (bs·nkv·D) blocks, and the other three pool buffers must agree on N.
struct Pool {
  uint64_t blocks = 0;
};

Status check_pool(const char* op, const ferrum_buffer* k, const ferrum_buffer* v, const ferrum_buffer* ks,
                  const ferrum_buffer* vs, uint64_t bs, uint64_t nkv, uint64_t D, Pool& pool) {
  uint64_t per_block = 0, scales_per_block = 0;
  Status s = check_product(op, {{"block_size", bs}, {"num_kv_heads", nkv}, {"head_dim", D}}, per_block);
  if (s.ok()) s = check_product(op, {{"block_size", bs}, {"num_kv_heads", nkv}}, scales_per_block);
  if (!s.ok()) return s;
  const struct {
    const char* name;
    const ferrum_buffer* b;
    uint64_t per_block;
  } bufs[] = {{"layer_k", k, per_block}, {"layer_v", v, per_block}, {"layer_k_scales", ks, scales_per_block},
              {"layer_v_scales", vs, scales_per_block}};
  for (const auto& e : bufs)
    if (!e.b)
      return invalid(plugin::format("%s: argument '%s': expected a pool buffer, given NULL", op, e.name));
  pool.blocks = k->count / per_block;
  if (pool.blocks == 0)
    return invalid(plugin::format(
        "%s: argument 'layer_k': expected at least one block of block_size·num_kv_heads·head_dim = %llu elements, "
        "given %llu elements",
        op, (unsigned long long)per_block, (unsigned long long)k->count));
  for (const auto& e : bufs) {
    const uint64_t n = e.b->count / e.per_block;
    if (n != pool.blocks)
      return invalid(plugin::format(
          "%s: argument '%s': expected %llu blocks of %llu elements (the block count N of 'layer_k'), given %llu "
          "elements (%llu blocks)",
          op, e.name, (unsigned long long)pool.blocks, (unsigned long long)e.per_block,
          (unsigned long long)e.b->count, (unsigned long long)n));
  }
  return ok_status();
}

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
  Status s = check_positive(op, "max_blocks_per_seq", a.max_blocks_per_seq, true);
  if (s.ok()) s = check_positive(op, "block_size", a.block_size, true);
  if (s.ok()) s = check_positive(op, "num_kv_heads", a.num_kv_heads, true);
  if (s.ok()) s = check_positive(op, "head_dim", a.head_dim, true);
  if (!s.ok()) return s;
  // Block ids are stored in a U32 table and must stay below 2^31 (OPS.md §0.2 rule 5).
  if (a.max_blocks_per_seq > (uint64_t{1} << 31))
    return invalid(plugin::format("%s: argument 'max_blocks_per_seq': expected at most 2^31, given %llu", op,
                                  (unsigned long long)a.max_blocks_per_seq));
  if (a.cache->struct_size < FERRUM_KV_CACHE_QUANT_SIZE_V1_0)
    return invalid(plugin::format("%s: argument 'cache': expected struct_size >= %d, given %llu", op,
                                  FERRUM_KV_CACHE_QUANT_SIZE_V1_0, (unsigned long long)a.cache->struct_size));
  const uint64_t N = a.max_blocks_per_seq;
  uint64_t codes = 0, scales = 0, capacity = 0;
  s = check_product(op, {{"max_blocks_per_seq", N}, {"block_size", a.block_size}, {"num_kv_heads", a.num_kv_heads},
                         {"head_dim", a.head_dim}}, codes);
  if (s.ok())
    s = check_product(op, {{"max_blocks_per_seq", N}, {"block_size", a.block_size}, {"num_kv_heads", a.num_kv_heads}},
                      scales);
  if (s.ok()) s = check_product(op, {{"max_blocks_per_seq", N}, {"block_size", a.block_size}}, capacity);
  if (!s.ok() || dry) return s;

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

  ferrum_kv_cache_quant& c = *a.cache;
  c.k = b[0];
  c.v = b[1];
  c.k_scales = b[2];
  c.v_scales = b[3];
  c.block_table = b[4];
  c.context_lens = b[5];
  c.len = 0;
  c.capacity = capacity;
  c.block_size = a.block_size;
  c.num_kv_heads = a.num_kv_heads;
  c.head_dim = a.head_dim;
  return ok_status();
}

// ---- {int8,fp8}_kv_append_paged ---------------------------------------------------------------------

template <class Code, class Args>
Status append(const char* op, const Args& a, bool dry) {
  const bool work = a.tokens != 0;
  Status s = check_positive(op, "block_size", a.block_size, true);
  if (s.ok()) s = check_positive(op, "num_kv_heads", a.num_kv_heads, work);
  if (s.ok()) s = check_positive(op, "head_dim", a.head_dim, work);
  if (s.ok()) s = check_codes<Code>(op, "layer_k", a.layer_k);
  if (s.ok()) s = check_codes<Code>(op, "layer_v", a.layer_v);
  uint64_t end = 0;
  if (s.ok()) s = check_sum(op, "tokens", "cache_len_before + tokens", a.cache_len_before, a.tokens, end);
  if (!s.ok() || !work) return s;

  Pool pool;
  s = check_pool(op, a.layer_k, a.layer_v, a.layer_k_scales, a.layer_v_scales, a.block_size, a.num_kv_heads,
                 a.head_dim, pool);
  if (!s.ok()) return s;
  const uint64_t need = common::ceil_div(end, a.block_size);
  if (a.paged_block_indices_len < need)
    return invalid(plugin::format(
        "%s: argument 'paged_block_indices_len': expected >= ceil((cache_len_before + tokens) / block_size) = "
        "ceil((%llu + %llu) / %llu) = %llu, given %llu",
        op, (unsigned long long)a.cache_len_before, (unsigned long long)a.tokens, (unsigned long long)a.block_size,
        (unsigned long long)need, (unsigned long long)a.paged_block_indices_len));
  for (uint64_t lb = a.cache_len_before / a.block_size; lb < need; ++lb)
    if (a.paged_block_indices[lb] >= pool.blocks)
      return invalid(plugin::format(
          "%s: argument 'paged_block_indices': expected entries < N = %llu (the pool's block count), given "
          "paged_block_indices[%llu] = %u",
          op, (unsigned long long)pool.blocks, (unsigned long long)lb, a.paged_block_indices[lb]));
  if (dry) return ok_status();

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
  Status s = check_gqa(op, a.num_q_heads, a.num_kv_heads, "num_q_heads", "num_kv_heads");
  if (s.ok()) s = check_positive(op, "head_dim", a.head_dim, true);
  if (s.ok()) s = check_positive(op, "block_size", a.block_size, true);
  if (s.ok() && !std::isfinite(a.scale))
    s = invalid(plugin::format("%s: argument 'scale': expected a finite value (0 = 1/sqrt(head_dim)), given %g", op,
                               a.scale));
  if (s.ok()) s = check_codes<Code>(op, "layer_k", a.layer_k);
  if (s.ok()) s = check_codes<Code>(op, "layer_v", a.layer_v);
  if (!s.ok()) return s;

  Pool pool;
  if (a.valid_kv_len > 0 || (a.layer_k && a.layer_v && a.layer_k_scales && a.layer_v_scales)) {
    s = check_pool(op, a.layer_k, a.layer_v, a.layer_k_scales, a.layer_v_scales, a.block_size, a.num_kv_heads,
                   a.head_dim, pool);
    if (!s.ok()) return s;
  }
  if (a.valid_kv_len > common::sat_mul(pool.blocks, a.block_size))
    return invalid(plugin::format("%s: argument 'valid_kv_len': expected <= N·block_size = %llu·%llu, given %llu", op,
                                  (unsigned long long)pool.blocks, (unsigned long long)a.block_size,
                                  (unsigned long long)a.valid_kv_len));
  const uint64_t table_len = common::ceil_div(a.valid_kv_len, a.block_size);
  s = check_min_count(op, "block_table", a.block_table, table_len);
  if (!s.ok() || dry) return s;

  const int32_t idx = a.block_table ? a.block_table->dtype : FERRUM_DTYPE_U32;
  return dispatch_float(a.q->dtype, unsupported(std::string(op) + ": activation dtype"), [&](auto t) -> Status {
    using T = decltype(t);
    auto launch = [&](auto i) -> Status {
      using I = decltype(i);
      quant_paged_decode_attention<T, Code, I>(
          data_of<const T>(a.q), data_of<const Code>(a.layer_k), data_of<const Code>(a.layer_v),
          data_of<const float>(a.layer_k_scales), data_of<const float>(a.layer_v_scales),
          data_of<const I>(a.block_table), pool.blocks, data_of<T>(a.output), a.num_q_heads, a.num_kv_heads,
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

const ferrum_quant_kv_table kQuantKvTable = {
    sizeof(ferrum_quant_kv_table), alloc_paged_int8_layer, int8_kv_append_paged, int8_paged_decode_attention,
    alloc_paged_fp8_layer,         fp8_kv_append_paged,    fp8_paged_decode_attention,
};

}  // namespace ferrum::cpu
