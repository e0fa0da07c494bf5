// facade_mock — a tiny host-memory plugin for the facade tests (not installed).
//
// Implements the memory family (minus from_weight_bytes and write_f32_to_activation), the
// context family (minus the capability flags, activation_elem_size_bytes and
// sync_before_host_readback), and three dense ops: gemm and add_inplace (F32 only; other
// dtypes answer UNSUPPORTED with a reason) and gelu (a no-op that only counts, used to measure
// the facade's per-call overhead). Every other slot and family is NULL, so the tests see the
// facade's NULL-slot errors and defaults.
//
// Call counting: when FACADE_MOCK_COUNTERS holds the hex address of a uint64_t[128] in the
// loading process, the plugin adds 1 to counts[op id] on every call of an op, keeps the
// number of live buffers in counts[127] and the struct_size of the last read_typed call in
// counts[126]. (The plugin exports one symbol only, so the test hands it the address this way.)
//
// Built with FACADE_MOCK_V1_0 (facade_mock_v1_0): a plugin of ABI 1.0 in a 1.1 build: it declares
// abi_minor 0 and a 1.0-sized context table, and reads read_typed's 1.1 field src_offset through
// its accessor only when the caller's struct_size covers it — the forward-compatibility gate's
// test plugin (test_abi_gate.cpp). Its API table is 1.0-sized too (no extension chain); the 1.1
// mock chains the extensions of mock_extension.h.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "mock_extension.h"

#include <ferrum/common/dtype.hpp>
#include <ferrum/ferrum_plugin.h>

namespace {

struct Buf {
  int32_t dtype;
  uint64_t count;
  std::vector<uint8_t> bytes;
};
struct Ctx {
  int32_t act;
  uint64_t device;
  std::string err;
};
struct Tmr {
  double start = -1, end = -1;
};

std::mutex g_mu;
std::set<const Buf*> g_live;
uint64_t* g_counts = nullptr;
thread_local std::string t_err;

constexpr int kLiveSlot = 127;
constexpr int kReadTypedSizeSlot = 126;

void count(int32_t op) {
  if (g_counts) __atomic_add_fetch(&g_counts[op], 1, __ATOMIC_RELAXED);
}

ferrum_status fail(ferrum_context* c, ferrum_status st, std::string msg) {
  (c ? reinterpret_cast<Ctx*>(c)->err : t_err) = std::move(msg);
  return st;
}

Buf* lookup(const ferrum_buffer* h) {
  std::lock_guard lk(g_mu);
  auto* b = reinterpret_cast<const Buf*>(h);
  return g_live.count(b) ? const_cast<Buf*>(b) : nullptr;
}

ferrum_buffer* make_buffer(int32_t dtype, uint64_t n) {
  auto* b = new Buf{dtype, n, std::vector<uint8_t>(n * ferrum::dtype_size(dtype), 0)};
  std::lock_guard lk(g_mu);
  g_live.insert(b);
  if (g_counts) g_counts[kLiveSlot] = g_live.size();
  return reinterpret_cast<ferrum_buffer*>(b);
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

float get_f(const Buf* b, uint64_t i) {
  return ferrum::dispatch_any(b->dtype, 0.0f, [&](auto tag) {
    using T = decltype(tag);
    T t;
    std::memcpy(&t, b->bytes.data() + i * sizeof(T), sizeof(T));
    if constexpr (std::is_integral_v<T>) {
      return static_cast<float>(t);
    } else {
      return ferrum::to_float(t);
    }
  });
}

void set_f(Buf* b, uint64_t i, float v) {
  ferrum::dispatch_float(b->dtype, 0, [&](auto tag) {
    using T = decltype(tag);
    const T t = ferrum::from_float<T>(v);
    std::memcpy(b->bytes.data() + i * sizeof(T), &t, sizeof(T));
    return 0;
  });
}

// ---- memory ------------------------------------------------------------------------------

ferrum_status alloc(ferrum_context* c, const ferrum_alloc_args* a) {
  count(FERRUM_OP_ALLOC);
  *a->buffer = make_buffer(reinterpret_cast<Ctx*>(c)->act, a->len);
  return FERRUM_STATUS_OK;
}

ferrum_status alloc_typed(ferrum_context* c, const ferrum_alloc_typed_args* a) {
  count(FERRUM_OP_ALLOC_TYPED);
  if (ferrum::dtype_size(a->dtype) == 0)
    return fail(c, FERRUM_STATUS_INVALID_ARGUMENT, "alloc_typed: argument 'dtype': invalid");
  *a->buffer = make_buffer(a->dtype, a->n);
  return FERRUM_STATUS_OK;
}

ferrum_status from_slice(ferrum_context* c, const ferrum_from_slice_args* a) {
  count(FERRUM_OP_FROM_SLICE);
  ferrum_buffer* h = make_buffer(reinterpret_cast<Ctx*>(c)->act, a->data_len);
  for (uint64_t i = 0; i < a->data_len; ++i) set_f(reinterpret_cast<Buf*>(h), i, a->data[i]);
  *a->buffer = h;
  return FERRUM_STATUS_OK;
}

ferrum_status from_slice_typed(ferrum_context* c, const ferrum_from_slice_typed_args* a) {
  count(FERRUM_OP_FROM_SLICE_TYPED);
  if (ferrum::dtype_size(a->dtype) == 0)
    return fail(c, FERRUM_STATUS_INVALID_ARGUMENT, "from_slice_typed: argument 'dtype': invalid");
  ferrum_buffer* h = make_buffer(a->dtype, a->data_len);
  auto* b = reinterpret_cast<Buf*>(h);
  if (!b->bytes.empty()) std::memcpy(b->bytes.data(), a->data, b->bytes.size());
  *a->buffer = h;
  return FERRUM_STATUS_OK;
}

ferrum_status write_typed(ferrum_context* c, const ferrum_write_typed_args* a) {
  count(FERRUM_OP_WRITE_TYPED);
  Buf* b = lookup(a->dst);
  if (!b || b->dtype != a->dtype || a->data_len > b->count)
    return fail(c, FERRUM_STATUS_INVALID_ARGUMENT, "write_typed: bad dst, dtype or data_len");
  if (a->data_len) std::memcpy(b->bytes.data(), a->data, a->data_len * ferrum::dtype_size(b->dtype));
  return FERRUM_STATUS_OK;
}

ferrum_status read_typed(ferrum_context* c, const ferrum_read_typed_args* a) {
  count(FERRUM_OP_READ_TYPED);
  if (g_counts) __atomic_store_n(&g_counts[kReadTypedSizeSlot], a->struct_size, __ATOMIC_RELAXED);
  Buf* b = lookup(a->src);
  const uint64_t offset = ferrum_read_typed_args_src_offset(a);  // 0 for a 1.0 caller
  if (!b || b->dtype != a->dtype || offset > b->count || a->len > b->count - offset)
    return fail(c, FERRUM_STATUS_INVALID_ARGUMENT, "read_typed: bad src, dtype, src_offset or len");
  const uint64_t es = ferrum::dtype_size(b->dtype);
  if (a->len) std::memcpy(a->data, b->bytes.data() + offset * es, a->len * es);
  return FERRUM_STATUS_OK;
}

ferrum_status to_vec(ferrum_context* c, const ferrum_to_vec_args* a) {
  count(FERRUM_OP_TO_VEC);
  Buf* b = lookup(a->buf);
  if (!b || a->len > b->count)
    return fail(c, FERRUM_STATUS_INVALID_ARGUMENT, "to_vec: argument 'len': too large");
  for (uint64_t i = 0; i < a->len; ++i) a->out[i] = get_f(b, i);
  return FERRUM_STATUS_OK;
}

ferrum_status zero_buffer(ferrum_context* c, const ferrum_zero_buffer_args* a) {
  count(FERRUM_OP_ZERO_BUFFER);
  Buf* b = lookup(a->buf);
  if (!b || a->len > b->count)
    return fail(c, FERRUM_STATUS_INVALID_ARGUMENT, "zero_buffer: argument 'len': too large");
  std::memset(b->bytes.data(), 0, a->len * ferrum::dtype_size(b->dtype));
  return FERRUM_STATUS_OK;
}

ferrum_status copy_slice(ferrum_context* c, const ferrum_copy_slice_args* a) {
  count(FERRUM_OP_COPY_SLICE);
  Buf* s = lookup(a->src);
  Buf* d = lookup(a->dst);
  if (!s || !d || a->src_offset + a->len > s->count || a->dst_offset + a->len > d->count)
    return fail(c, FERRUM_STATUS_INVALID_ARGUMENT, "copy_slice: a range runs past its buffer");
  if (s->dtype == d->dtype) {
    const uint64_t es = ferrum::dtype_size(s->dtype);
    std::memmove(d->bytes.data() + a->dst_offset * es, s->bytes.data() + a->src_offset * es,
                 a->len * es);
  } else if (ferrum::is_float_dtype(s->dtype) && ferrum::is_float_dtype(d->dtype)) {
    for (uint64_t i = 0; i < a->len; ++i) set_f(d, a->dst_offset + i, get_f(s, a->src_offset + i));
  } else {
    return fail(c, FERRUM_STATUS_INVALID_ARGUMENT, "copy_slice: dtypes cannot be converted");
  }
  return FERRUM_STATUS_OK;
}

ferrum_status buffer_info(ferrum_context*, const ferrum_buffer_info_args* a) {
  Buf* b = lookup(a->buf);
  if (!b) return fail(nullptr, FERRUM_STATUS_INVALID_ARGUMENT, "buffer_info: unknown handle");
  *a->dtype = b->dtype;
  *a->count = b->count;
  return FERRUM_STATUS_OK;
}

ferrum_status buffer_release(ferrum_context*, const ferrum_buffer_release_args* a) {
  if (!a->buf) return FERRUM_STATUS_OK;
  auto* b = reinterpret_cast<Buf*>(a->buf);
  {
    std::lock_guard lk(g_mu);
    if (!g_live.erase(b))
      return fail(nullptr, FERRUM_STATUS_INVALID_ARGUMENT, "buffer_release: unknown handle");
    if (g_counts) g_counts[kLiveSlot] = g_live.size();
  }
  delete b;
  return FERRUM_STATUS_OK;
}

// ---- context -----------------------------------------------------------------------------

ferrum_status new_context(ferrum_context*, const ferrum_new_context_args* a) {
  if (a->device_ordinal >= 1)
    return fail(nullptr, FERRUM_STATUS_INVALID_ARGUMENT,
                "new_context: argument 'device_ordinal': expected < 1 (the device count), given " +
                    std::to_string(a->device_ordinal));
  const int32_t act = a->activation_dtype ? a->activation_dtype : FERRUM_DTYPE_F32;
  if (!ferrum::is_float_dtype(act))
    return fail(nullptr, FERRUM_STATUS_INVALID_ARGUMENT, "new_context: bad activation_dtype");
  *a->context = reinterpret_cast<ferrum_context*>(new Ctx{act, a->device_ordinal, {}});
  return FERRUM_STATUS_OK;
}

ferrum_status context_destroy(ferrum_context*, const ferrum_context_destroy_args* a) {
  delete reinterpret_cast<Ctx*>(a->context);
  return FERRUM_STATUS_OK;
}

ferrum_status context_info(ferrum_context* c, const ferrum_context_info_args* a) {
  auto* x = reinterpret_cast<Ctx*>(c);
  *a->device_ordinal = x->device;
  *a->activation_dtype = x->act;
  *a->batched_slots = 128;
  *a->batched_items = 64;
  return FERRUM_STATUS_OK;
}

ferrum_status sync(ferrum_context*, const ferrum_sync_args*) {
  count(FERRUM_OP_SYNC);
  return FERRUM_STATUS_OK;
}

ferrum_status make_timer(ferrum_context*, const ferrum_make_timer_args* a) {
  count(FERRUM_OP_MAKE_TIMER);
  *a->timer = reinterpret_cast<ferrum_timer*>(new Tmr);
  return FERRUM_STATUS_OK;
}

ferrum_status timer_release(ferrum_context*, const ferrum_timer_release_args* a) {
  delete reinterpret_cast<Tmr*>(a->timer);
  return FERRUM_STATUS_OK;
}

ferrum_status record_start(ferrum_context*, const ferrum_record_start_args* a) {
  auto* t = reinterpret_cast<Tmr*>(a->timer);
  t->start = now_ms();
  t->end = -1;
  return FERRUM_STATUS_OK;
}

ferrum_status record_end(ferrum_context* c, const ferrum_record_end_args* a) {
  auto* t = reinterpret_cast<Tmr*>(a->timer);
  if (t->start < 0) return fail(c, FERRUM_STATUS_INVALID_ARGUMENT, "record_end: no start mark");
  t->end = now_ms();
  return FERRUM_STATUS_OK;
}

ferrum_status elapsed_ms(ferrum_context* c, const ferrum_elapsed_ms_args* a) {
  auto* t = reinterpret_cast<Tmr*>(a->timer);
  if (t->start < 0 || t->end < 0)
    return fail(c, FERRUM_STATUS_INVALID_ARGUMENT, "elapsed_ms: a mark is missing");
  *a->ms = t->end - t->start;
  return FERRUM_STATUS_OK;
}

// ---- dense -------------------------------------------------------------------------------

ferrum_status only_f32(ferrum_context* c, const char* op, const char* arg, const Buf* b) {
  return fail(c, FERRUM_STATUS_UNSUPPORTED,
              std::string(op) + ": argument '" + arg + "': dtype " + ferrum::dtype_name(b->dtype) +
                  " is not supported by facade_mock (f32 only)");
}

ferrum_status gemm(ferrum_context* c, const ferrum_gemm_args* a) {
  count(FERRUM_OP_GEMM);
  if (a->m == 0 || a->n == 0) return FERRUM_STATUS_OK;
  Buf* A = lookup(a->a);
  Buf* B = lookup(a->b);
  Buf* O = lookup(a->out);
  if (A->dtype != FERRUM_DTYPE_F32) return only_f32(c, "gemm", "a", A);
  const auto* pa = reinterpret_cast<const float*>(A->bytes.data());
  const auto* pb = reinterpret_cast<const float*>(B->bytes.data());
  auto* po = reinterpret_cast<float*>(O->bytes.data());
  for (uint64_t i = 0; i < a->m; ++i)
    for (uint64_t j = 0; j < a->n; ++j) {
      float s = 0;
      for (uint64_t p = 0; p < a->k; ++p) s += pa[i * a->k + p] * pb[j * a->k + p];
      po[i * a->n + j] = s;
    }
  return FERRUM_STATUS_OK;
}

ferrum_status add_inplace(ferrum_context* c, const ferrum_add_inplace_args* a) {
  count(FERRUM_OP_ADD_INPLACE);
  if (a->len == 0) return FERRUM_STATUS_OK;
  Buf* r = lookup(a->residual);
  Buf* x = lookup(a->x);
  if (r->dtype != FERRUM_DTYPE_F32) return only_f32(c, "add_inplace", "residual", r);
  for (uint64_t i = 0; i < a->len; ++i) set_f(r, i, get_f(r, i) + get_f(x, i));
  return FERRUM_STATUS_OK;
}

ferrum_status gelu(ferrum_context*, const ferrum_gelu_args*) {
  count(FERRUM_OP_GELU);  // a no-op: the facade overhead benchmark calls it
  return FERRUM_STATUS_OK;
}

// ---- tables ------------------------------------------------------------------------------

const ferrum_memory_table kMemory = [] {
  ferrum_memory_table t{};
  t.struct_size = sizeof t;
  t.alloc = alloc;
  t.alloc_typed = alloc_typed;
  t.from_slice = from_slice;
  t.from_slice_typed = from_slice_typed;
  t.write_typed = write_typed;
  t.read_typed = read_typed;
  t.to_vec = to_vec;
  t.zero_buffer = zero_buffer;
  t.copy_slice = copy_slice;
  t.buffer_info = buffer_info;
  t.buffer_release = buffer_release;
  return t;
}();

const ferrum_context_table kContext = [] {
  ferrum_context_table t{};
#ifdef FACADE_MOCK_V1_0
  t.struct_size = FERRUM_CONTEXT_TABLE_SIZE_V1_0;  // ends before the 1.1 slot query_attribute
#else
  t.struct_size = sizeof t;
#endif
  t.new_context = new_context;
  t.context_destroy = context_destroy;
  t.context_info = context_info;
  t.sync = sync;
  t.make_timer = make_timer;
  t.timer_release = timer_release;
  t.record_start = record_start;
  t.record_end = record_end;
  t.elapsed_ms = elapsed_ms;
  return t;
}();

const ferrum_dense_table kDense = [] {
  ferrum_dense_table t{};
  t.struct_size = sizeof t;
  t.gemm = gemm;
  t.add_inplace = add_inplace;
  t.gelu = gelu;
  return t;
}();

ferrum_status probe(int32_t* score, char* reason, uint64_t cap) {
  *score = 1;
  if (cap) reason[0] = '\0';
  return FERRUM_STATUS_OK;
}
ferrum_status init() { return FERRUM_STATUS_OK; }
void shutdown() {}
ferrum_status device_count(uint64_t* n) {
  *n = 1;
  return FERRUM_STATUS_OK;
}
ferrum_status device_props(uint64_t ordinal, ferrum_device_props* p) {
  if (ordinal >= 1) return fail(nullptr, FERRUM_STATUS_INVALID_ARGUMENT, "device_props: ordinal");
  std::snprintf(p->name, sizeof p->name, "%s", "facade mock device");
  p->kind = FERRUM_DEVICE_KIND_CPU;
  p->dtype_mask = (1u << FERRUM_DTYPE_F32) | (1u << FERRUM_DTYPE_F16) | (1u << FERRUM_DTYPE_BF16);
  p->total_memory_bytes = 1ull << 30;
  p->multiprocessors = 1;
  return FERRUM_STATUS_OK;
}

ferrum_status error_detail(ferrum_context* c, char* buf, uint64_t cap, uint64_t* needed) {
  const std::string& m = c ? reinterpret_cast<Ctx*>(c)->err : t_err;
  if (needed) *needed = m.size() + 1;
  if (buf && cap) {
    const uint64_t n = std::min<uint64_t>(cap - 1, m.size());
    std::memcpy(buf, m.data(), n);
    buf[n] = '\0';
  }
  return FERRUM_STATUS_OK;
}

// gemm: f32 only; other ops: supported iff the slot exists.
ferrum_status query_support(ferrum_context*, int32_t op, const void* args, char* reason,
                            uint64_t cap) {
  auto answer = [&](ferrum_status st, const std::string& why) {
    if (cap) std::snprintf(reason, cap, "%s", why.c_str());
    return st;
  };
  if (op == FERRUM_OP_GEMM) {
    const auto* a = static_cast<const ferrum_gemm_args*>(args);
    const Buf* A = a ? lookup(a->a) : nullptr;
    if (!A) return answer(FERRUM_STATUS_INVALID_ARGUMENT, "gemm: argument 'a': unknown handle");
    if (A->dtype != FERRUM_DTYPE_F32)
      return answer(FERRUM_STATUS_UNSUPPORTED, std::string("gemm: argument 'a': dtype ") +
                                                   ferrum::dtype_name(A->dtype) +
                                                   " is not supported by facade_mock (f32 only)");
    return answer(FERRUM_STATUS_OK, "");
  }
  if (op == FERRUM_OP_ADD_INPLACE || op == FERRUM_OP_GELU) return answer(FERRUM_STATUS_OK, "");
  return answer(FERRUM_STATUS_UNSUPPORTED, "facade_mock does not implement this op");
}

// ---- the extension chain (mock_extension.h) -------------------------------------------------
int64_t mul_add(int64_t a, int64_t b, int64_t c) { return a * b + c; }

const ferrum_extension kLoopExt = {sizeof(ferrum_extension), MOCK_LOOP_EXT_ID, 1, 0, &kLoopExt};  // cyclic
const ferrum_extension kNullIdExt = {sizeof(ferrum_extension), nullptr, 7, 0, &kLoopExt};
const mock_math_ext kMathExt = {{sizeof(mock_math_ext), MOCK_MATH_EXT_ID, 2, 0, &kNullIdExt}, mul_add};

const ferrum_plugin_api kApi = [] {
  ferrum_plugin_api t{};
  t.struct_size = sizeof t;
  t.abi_major = FERRUM_ABI_VERSION_MAJOR;
#ifdef FACADE_MOCK_V1_0
  t.abi_minor = 0;
  t.plugin_name = "facade_mock_v1_0";
#else
  t.abi_minor = FERRUM_ABI_VERSION_MINOR;
  t.plugin_name = "facade_mock";
#endif
  t.plugin_version = "0.1.0";
  t.build_info = "facade test mock";
  t.probe = probe;
  t.init = init;
  t.shutdown = shutdown;
  t.device_count = device_count;
  t.device_props = device_props;
  t.error_detail = error_detail;
  t.query_support = query_support;
  t.memory = &kMemory;
  t.context = &kContext;
  t.dense = &kDense;
#ifdef FACADE_MOCK_V1_0
  // A 1.0 table ends before `extensions`; the poison behind it must never be followed.
  t.struct_size = FERRUM_PLUGIN_API_SIZE_V1_0;
  t.extensions = reinterpret_cast<const ferrum_extension*>(uintptr_t{0x10});
#else
  t.extensions = &kMathExt.ext;
#endif
  return t;
}();

}  // namespace

extern "C" FERRUM_PLUGIN_EXPORT ferrum_status ferrum_plugin_entry_v1(const ferrum_host_info* host,
                                                                     const ferrum_plugin_api** api) {
  if (!host || !api) return FERRUM_STATUS_INVALID_ARGUMENT;
  if (host->abi_major != FERRUM_ABI_VERSION_MAJOR) return FERRUM_STATUS_ABI_MISMATCH;
  if (const char* addr = std::getenv("FACADE_MOCK_COUNTERS"))
    g_counts = reinterpret_cast<uint64_t*>(std::strtoull(addr, nullptr, 16));
  *api = &kApi;
  return FERRUM_STATUS_OK;
}
