// The facade defaults of docs/spec.md §0.14, composed from other ops of the same context.
// They run only when the plugin's slot is NULL, after the generated argument checks; they may
// synchronise and are never capturable. Arithmetic is f32 on the host with one rounding into
// the destination dtype (docs/spec.md §0.2 rule 3), through the shared dtype helpers.
#include <cmath>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <ferrum/common/check_support.hpp>
#include <ferrum/common/dtype.hpp>

#include "invoke.hpp"

namespace ferrum::detail {
namespace {

[[noreturn]] void fail(const Context& c, int32_t op, ferrum_status status, const std::string& why) {
  throw_status(status, op_name_of(op), ContextAccess::site(c), why.c_str());
}

int32_t dtype_of_handle(const Context& c, const ferrum_buffer* h, uint64_t* count = nullptr) {
  int32_t dt = 0;
  uint64_t n = 0;
  if (!ContextAccess::accessor(c).info(h, dt, n)) return FERRUM_DTYPE_INVALID;
  if (count) *count = n;
  return dt;
}

std::string str(uint64_t v) { return std::to_string(v); }

// The arithmetic rule here too: a count formed from caller fields is a checked product, and one
// that wraps is INVALID_ARGUMENT naming the fields (the generated checks that ran first already
// bound each of these by a buffer's element count, so this is the second line of defence).
uint64_t count_of(const Context& c, int32_t op, std::initializer_list<common::Given> factors) {
  uint64_t n = 0;
  std::string why;
  if (!common::named_product(factors, n, why)) fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT, why);
  return n;
}

// A host staging array of n elements, allocated only for validated lengths; a length the host
// cannot hold is OUT_OF_MEMORY as a ferrum::Error, never std::bad_alloc / std::length_error.
template <class T>
std::vector<T> host_vec(const Context& c, int32_t op, uint64_t n, T fill = T{}) {
  std::vector<T> v;
  try {
    if (n > v.max_size()) throw std::length_error("too long");
    v.assign(n, fill);
  } catch (const std::exception&) {
    fail(c, op, FERRUM_STATUS_OUT_OF_MEMORY,
         "cannot allocate a host staging array of " + str(n) + " elements of " + str(sizeof(T)) + " bytes");
  }
  return v;
}

template <class Args>
Args make() {
  Args a{};
  a.struct_size = sizeof a;
  return a;
}

std::vector<float> to_vec(Context& c, int32_t op, const ferrum_buffer* h, uint64_t n) {
  std::vector<float> out = host_vec<float>(c, op, n);
  if (n == 0) return out;
  auto a = make<ferrum_to_vec_args>();
  a.buf = h;
  a.len = n;
  a.out = out.data();
  ContextAccess::invoke(c, a);
  return out;
}

// read_typed of n elements of a 4-byte integer buffer (u32 or i32), as raw 32-bit words.
std::vector<uint32_t> read_words(Context& c, int32_t op, const ferrum_buffer* h, int32_t dtype, uint64_t n) {
  std::vector<uint32_t> out = host_vec<uint32_t>(c, op, n);
  if (n == 0) return out;
  auto a = make<ferrum_read_typed_args>();
  a.src = h;
  a.dtype = dtype;
  a.len = n;
  a.data = out.data();
  ContextAccess::invoke(c, a);
  return out;
}

void write_bytes(Context& c, ferrum_buffer* h, int32_t dtype, const void* data, uint64_t n) {
  auto a = make<ferrum_write_typed_args>();
  a.dst = h;
  a.dtype = dtype;
  a.data = data;
  a.data_len = n;
  ContextAccess::invoke(c, a);
}

void copy_slice(Context& c, const ferrum_buffer* src, uint64_t src_off, ferrum_buffer* dst,
                uint64_t dst_off, uint64_t len) {
  auto a = make<ferrum_copy_slice_args>();
  a.src = src;
  a.src_offset = src_off;
  a.dst = dst;
  a.dst_offset = dst_off;
  a.len = len;
  ContextAccess::invoke(c, a);
}

void sync(Context& c) { ContextAccess::invoke(c, make<ferrum_sync_args>()); }

Buffer from_bytes(Context& c, int32_t dtype, const void* data, uint64_t n) {
  ferrum_buffer* h = nullptr;
  auto a = make<ferrum_from_slice_typed_args>();
  a.dtype = dtype;
  a.data = data;
  a.data_len = n;
  a.buffer = &h;
  ContextAccess::invoke(c, a);
  return ContextAccess::adopt(c, h);
}

Buffer zeros(Context& c, int32_t dtype, uint64_t n) {
  ferrum_buffer* h = nullptr;
  auto a = make<ferrum_alloc_typed_args>();
  a.dtype = dtype;
  a.n = n;
  a.buffer = &h;
  ContextAccess::invoke(c, a);
  return ContextAccess::adopt(c, h);
}

// f32 values rounded once into `dtype` (f32, f16 or bf16), as little-endian bytes.
std::vector<uint8_t> encode(const Context& c, int32_t op, int32_t dtype, std::span<const float> v) {
  std::vector<uint8_t> out = host_vec<uint8_t>(c, op, count_of(c, op, {{"len", v.size()}, {"element size", dtype_size(dtype)}}));
  dispatch_float(dtype, 0, [&](auto tag) {
    using T = decltype(tag);
    for (size_t i = 0; i < v.size(); ++i) {
      const T t = from_float<T>(v[i]);
      std::memcpy(out.data() + i * sizeof(T), &t, sizeof(T));  // arith-ok: i < v.size(), out holds v.size()·sizeof(T)
    }
    return 0;
  });
  return out;
}

// n elements of float dtype `dtype` at any alignment, widened exactly to f32.
std::vector<float> decode(const Context& c, int32_t op, int32_t dtype, const uint8_t* raw, uint64_t n) {
  std::vector<float> out = host_vec<float>(c, op, n);
  dispatch_float(dtype, 0, [&](auto tag) {
    using T = decltype(tag);
    for (uint64_t i = 0; i < n; ++i) {
      T t;
      std::memcpy(&t, raw + i * sizeof(T), sizeof(T));  // arith-ok: n·sizeof(T) = raw_len (a multiple, checked)
      out[i] = to_float(t);
    }
    return 0;
  });
  return out;
}

}  // namespace

// ---- memory ----------------------------------------------------------------------------

void facade_default(Context& c, const ferrum_from_weight_bytes_args& a) {
  constexpr int32_t op = FERRUM_OP_FROM_WEIGHT_BYTES;
  if (!is_float_dtype(a.src_dtype))
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT,
         std::string("argument 'src_dtype': expected f32, f16 or bf16, given ") +
             dtype_name(a.src_dtype));
  const int32_t dst =
      a.dst_dtype != 0 ? a.dst_dtype : static_cast<int32_t>(c.activation_dtype());
  if (!is_float_dtype(dst))
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT,
         std::string("argument 'dst_dtype': expected 0, f32, f16 or bf16, given ") +
             dtype_name(dst));
  const uint64_t size = dtype_size(a.src_dtype);
  if (a.raw_len % size != 0)
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT,
         "argument 'raw_len': expected a multiple of " + str(size) + " (the size of " +
             dtype_name(a.src_dtype) + "), given " + str(a.raw_len));
  if (!a.buffer)
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT, "argument 'buffer': expected an out pointer, given NULL");
  if (!a.raw && a.raw_len > 0)
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT, "argument 'raw': expected host memory, given NULL");
  const uint64_t n = a.raw_len / size;
  Buffer out = a.src_dtype == dst ? from_bytes(c, dst, a.raw, n)
                                  : [&] {
                                      const std::vector<float> v = decode(c, op, a.src_dtype, a.raw, n);
                                      const std::vector<uint8_t> bytes = encode(c, op, dst, v);
                                      return from_bytes(c, dst, bytes.data(), n);
                                    }();
  *a.buffer = out.release();
}

void facade_default(Context& c, const ferrum_write_f32_to_activation_args& a) {
  constexpr int32_t op = FERRUM_OP_WRITE_F32_TO_ACTIVATION;
  if (a.data_len == 0) return;
  uint64_t count = 0;
  const int32_t dt = dtype_of_handle(c, a.dst, &count);
  if (a.data_len > count)
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT,
         "argument 'data_len': expected at most " + str(count) + " (the elements of 'dst'), given " +
             str(a.data_len));
  if (!a.data)
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT, "argument 'data': expected host memory, given NULL");
  const std::vector<uint8_t> bytes = encode(c, op, dt, std::span<const float>(a.data, a.data_len));
  Buffer tmp = from_bytes(c, dt, bytes.data(), a.data_len);
  copy_slice(c, tmp.get(), 0, a.dst, 0, a.data_len);
  sync(c);  // before the temporary is released
}

// ---- context ---------------------------------------------------------------------------

void facade_default(Context&, const ferrum_sync_before_host_readback_args&) {}

void facade_default(Context& c, const ferrum_activation_elem_size_bytes_args& a) {
  *a.result = element_size(c.info().activation_dtype);
}

void facade_default(Context& c, const ferrum_supports_llama_family_batched_decode_args& a) {
  const ferrum_plugin_api* api = ContextAccess::api(c);
  const bool all = common::find_slot(api, FERRUM_OP_QK_NORM_ROPE_BATCHED_PER_ITEM) &&
                   common::find_slot(api, FERRUM_OP_KV_CACHE_APPEND_BATCHED_PER_CACHE) &&
                   common::find_slot(api, FERRUM_OP_FLASH_ATTENTION_BATCHED_PER_CACHE) &&
                   common::find_slot(api, FERRUM_OP_POPULATE_BATCHED_POINTERS);
  *a.result = all ? 1u : 0u;
}

void facade_default(Context&, const ferrum_supports_paged_kv_args& a) { *a.result = 0; }
void facade_default(Context&, const ferrum_supports_varlen_qkv_args& a) { *a.result = 0; }
void facade_default(Context&, const ferrum_supports_vllm_paged_attn_args& a) { *a.result = 0; }

// ---- dense -----------------------------------------------------------------------------

void facade_default(Context& c, const ferrum_scaled_add_inplace_args& a) {
  constexpr int32_t op = FERRUM_OP_SCALED_ADD_INPLACE;
  if (!std::isfinite(a.scale))
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT,
         "argument 'scale': expected a finite value, given " + std::to_string(a.scale));
  if (a.len == 0) return;
  const int32_t dt = dtype_of_handle(c, a.dst);
  std::vector<float> d = to_vec(c, op, a.dst, a.len);
  const std::vector<float> s = to_vec(c, op, a.src, a.len);
  for (uint64_t i = 0; i < a.len; ++i) d[i] = std::fma(a.scale, s[i], d[i]);
  const std::vector<uint8_t> bytes = encode(c, op, dt, d);
  write_bytes(c, a.dst, dt, bytes.data(), a.len);
  sync(c);  // the staged host data must not outlive this call
}

void facade_default(Context& c, const ferrum_embedding_lookup_dev_args& a) {
  constexpr int32_t op = FERRUM_OP_EMBEDDING_LOOKUP_DEV;
  if (a.batch == 0) return;
  if (a.dim == 0)
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT, "argument 'dim': expected > 0 with batch > 0, given 0");
  if (!a.table)
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT, "argument 'table': expected a buffer, given NULL");
  uint64_t table_count = 0;
  dtype_of_handle(c, a.table, &table_count);
  const uint64_t vocab = table_count / a.dim;
  const int32_t ids_dt = dtype_of_handle(c, a.ids);
  count_of(c, op, {{"batch", a.batch}, {"dim", a.dim}});  // the rows of 'out' (i·dim below fits)
  const std::vector<uint32_t> ids = read_words(c, op, a.ids, ids_dt, a.batch);
  Buffer zero_row;
  for (uint64_t i = 0; i < a.batch; ++i) {
    const bool negative = ids_dt == FERRUM_DTYPE_I32 && static_cast<int32_t>(ids[i]) < 0;
    const uint64_t row = i * a.dim;  // arith-ok: < batch·dim, checked just above
    if (!negative && ids[i] < vocab) {
      copy_slice(c, a.table, ids[i] * a.dim, a.out, row, a.dim);  // arith-ok: ids[i] < vocab = count / dim
    } else {
      if (!zero_row) zero_row = zeros(c, dtype_of_handle(c, a.out), a.dim);
      copy_slice(c, zero_row.get(), 0, a.out, row, a.dim);
    }
  }
  if (zero_row) sync(c);  // no enqueued copy may still read the row when it is released
}

void facade_default(Context& c, const ferrum_argmax_rows_f16_args& a) {
  constexpr int32_t op = FERRUM_OP_ARGMAX_ROWS_F16;
  if (a.m == 0) return;
  if (a.n == 0)
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT, "argument 'n': expected > 0 with m > 0, given 0");
  if (!a.out)
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT, "argument 'out': expected host memory, given NULL");
  const std::vector<float> v = to_vec(c, op, a.logits, count_of(c, op, {{"m", a.m}, {"n", a.n}}));
  for (uint64_t r = 0; r < a.m; ++r) {
    const float* row = v.data() + r * a.n;  // arith-ok: r·n < m·n, checked by count_of
    uint32_t best = 0;
    bool found = false;
    for (uint64_t i = 0; i < a.n; ++i) {
      if (std::isnan(row[i])) continue;
      if (!found || row[i] > row[best]) {  // strict: the smallest index wins ties (-0 == +0)
        best = static_cast<uint32_t>(i);
        found = true;
      }
    }
    a.out[r] = best;
  }
}

// ---- moe -------------------------------------------------------------------------------

void facade_default(Context& c, const ferrum_moe_combine_args& a) {
  constexpr int32_t op = FERRUM_OP_MOE_COMBINE;
  if (a.num_tokens == 0) return;
  const uint64_t T = a.num_tokens, H = a.hidden, K = a.top_k, P = a.num_packed;
  const uint64_t packed_n = count_of(c, op, {{"num_packed", P}, {"hidden", H}});
  const uint64_t pairs_n = count_of(c, op, {{"num_tokens", T}, {"top_k", K}});
  const uint64_t out_n = count_of(c, op, {{"num_tokens", T}, {"hidden", H}});
  const std::vector<float> packed = to_vec(c, op, a.packed_down, packed_n);
  const std::vector<uint32_t> pairs = read_words(c, op, a.pairs_by_token, FERRUM_DTYPE_I32, pairs_n);
  const std::vector<float> w = to_vec(c, op, a.pair_weights, pairs_n);
  std::vector<float> out = host_vec<float>(c, op, out_n, 0.0f);
  // Every index below stays under a product checked above (t < T, k < K, r < P, h < H).
  for (uint64_t t = 0; t < T; ++t) {
    float* o = out.data() + t * H;  // arith-ok: < T·H
    for (uint64_t k = 0; k < K; ++k) {
      const uint64_t pk = t * K + k;  // arith-ok: < T·K
      const int64_t r = static_cast<int32_t>(pairs[pk]);
      if (r < 0 || static_cast<uint64_t>(r) >= P) continue;
      const float wk = w[pk];
      const float* src = packed.data() + static_cast<uint64_t>(r) * H;  // arith-ok: < P·H
      for (uint64_t h = 0; h < H; ++h) o[h] += wk * src[h];  // arith-ok: float sums, not sizes
    }
  }
  const int32_t dt = dtype_of_handle(c, a.out);
  const std::vector<uint8_t> bytes = encode(c, op, dt, out);
  write_bytes(c, a.out, dt, bytes.data(), out_n);
  sync(c);
}

// ---- graph family ----------------------------------------------------------------------

void facade_default(Context&, const ferrum_replay_graph_args& a) { *a.replayed = 0; }
void facade_default(Context&, const ferrum_reset_graph_args&) {}
void facade_default(Context&, const ferrum_reset_all_graphs_args&) {}
void facade_default(Context&, const ferrum_graph_capture_in_flight_args& a) { *a.result = 0; }

// ---- collective family: one rank, no communicator --------------------------------------

void facade_default(Context&, const ferrum_comm_unique_id_args& a) {
  std::memset(a.id, 0, FERRUM_COMM_UNIQUE_ID_BYTES);
}

void facade_default(Context& c, const ferrum_comm_init_args& a) {
  constexpr int32_t op = FERRUM_OP_COMM_INIT;
  if (a.world_size == 0 || a.rank >= a.world_size)
    fail(c, op, FERRUM_STATUS_INVALID_ARGUMENT,
         "arguments 'world_size'/'rank': expected world_size >= 1 and rank < world_size, given " +
             str(a.world_size) + "/" + str(a.rank));
  if (a.world_size > 1)
    fail(c, op, FERRUM_STATUS_UNSUPPORTED,
         "argument 'world_size': the plugin has no collective family, so only world_size 1 is "
         "supported, given " + str(a.world_size));
}

void facade_default(Context&, const ferrum_comm_destroy_args&) {}
void facade_default(Context&, const ferrum_world_size_args& a) { *a.result = 1; }
void facade_default(Context&, const ferrum_rank_args& a) { *a.result = 0; }

void facade_default(Context& c, const ferrum_all_reduce_args& a) {
  if (a.op < FERRUM_REDUCE_SUM || a.op > FERRUM_REDUCE_MIN)
    fail(c, FERRUM_OP_ALL_REDUCE, FERRUM_STATUS_INVALID_ARGUMENT,
         "argument 'op': expected SUM (1), MAX (2) or MIN (3), given " + std::to_string(a.op));
}

void facade_default(Context& c, const ferrum_all_gather_args& a) {
  if (a.local_len == 0) return;
  uint64_t global_count = 0;
  if (!a.global || dtype_of_handle(c, a.global, &global_count) == FERRUM_DTYPE_INVALID ||
      global_count < a.local_len)
    fail(c, FERRUM_OP_ALL_GATHER, FERRUM_STATUS_INVALID_ARGUMENT,
         "argument 'global': expected at least " + str(a.local_len) +
             " elements (world_size 1 x local_len), given " + str(global_count));
  copy_slice(c, a.local, 0, a.global, 0, a.local_len);
}

void facade_default(Context& c, const ferrum_broadcast_args& a) {
  if (a.src_rank != 0)
    fail(c, FERRUM_OP_BROADCAST, FERRUM_STATUS_INVALID_ARGUMENT,
         "argument 'src_rank': expected < world_size (1), given " + str(a.src_rank));
}

}  // namespace ferrum::detail
