// CUDA plugin: the GGUF ops of the quant_matmul family (docs/spec.md §11): load_quant,
// gguf_matmul, gguf_dequantize, and qweight_release (of either kind). The GPTQ ops (load_gptq,
// load_gptq_stacked, marlin_gemm) are in glue/gptq.cpp; the table of the family is here.
//
// A weight keeps the file's block bytes unchanged in device memory (kernels/gguf.cuh decodes
// them). gguf_matmul with m <= kGgufMatvecMaxM runs the matvec kernel (exact f32 weights, the
// weight read once for all rows). Larger m goes through tensor cores: panels of weight rows are
// dequantised into the context's scratch in the activation dtype (the rounding docs/spec.md §11
// permits; F32 activations keep exact weights and run the f32 gemm), and each panel is one
// cuBLASLt gemm into its columns of out. A panel holds at most kPanelBytes (whole multiples of
// kPanelRows rows), so the scratch stays bounded whatever the weight; it is grown eagerly like
// the attention scratch (UNSUPPORTED during a capture that would need more).
#include <ferrum/common/handle_table.hpp>
#include <ferrum/common/quant_rules.hpp>

#include <cuda_runtime_api.h>

#include <algorithm>

#include "cuda_plugin.hpp"
#include "gemm.hpp"
#include "memory.hpp"
#include "kernels/gguf.cuh"
#include "qweight.hpp"

namespace ferrum::cuda::glue {

common::HandleTable<ferrum_qweight>& qweight_table() {
  using Table = common::HandleTable<ferrum_qweight>;
  alignas(Table) static unsigned char storage[sizeof(Table)];
  static Table* table = ::new (static_cast<void*>(storage)) Table;
  return *table;
}

Status find_weight(const char* op, const ferrum_context& c, const ferrum_qweight* h, ferrum_qweight::Kind kind,
                   ferrum_qweight*& w) {
  using ull = unsigned long long;
  w = qweight_table().find(h);
  if (!w)
    return invalid(plugin::format("%s: argument 'weight': expected a live quantised weight of this plugin, given %s", op,
                                  h ? "an unknown or released handle" : "NULL"));
  if (w->kind != kind)
    return invalid(plugin::format("%s: argument 'weight': expected a %s weight (%s), given a %s weight", op,
                                  kind == ferrum_qweight::Kind::gguf ? "GGUF" : "GPTQ",
                                  kind == ferrum_qweight::Kind::gguf ? "load_quant" : "load_gptq",
                                  w->kind == ferrum_qweight::Kind::gguf ? "GGUF" : "GPTQ"));
  if (static_cast<uint64_t>(w->device) != c.device)
    return invalid(plugin::format("%s: argument 'weight': expected a weight on the context's device %llu, given one on "
                                  "device %d", op, (ull)c.device, w->device));
  return ok_status();
}

namespace {

const struct QweightTableReaper {
  ~QweightTableReaper() { qweight_table().free_if_unused(); }
} qweight_table_reaper{};

using ull = unsigned long long;

// gguf_matmul's tensor-core panels: at most this many bytes of dequantised weight rows (the
// scratch it needs), in whole multiples of kPanelRows rows (at least one).
constexpr uint64_t kPanelBytes = 64ull << 20;
constexpr uint64_t kPanelRows = 256;

ferrum_status load_quant(ferrum_context* ctx, const ferrum_load_quant_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_load_quant_args& a, bool dry) -> Status {
    Status s = plugin::rules::check_load_quant(a);
    if (!s.ok() || dry) return s;
    ferrum_qweight* w = qweight_table().acquire();
    if (!w) return {FERRUM_STATUS_OUT_OF_MEMORY, "load_quant: out of host memory"};
    w->kind = ferrum_qweight::Kind::gguf;
    w->quant_type = a.quant_type;
    w->n_rows = a.n_rows;
    w->n_cols = a.n_cols;
    w->bytes = a.byte_len;
    w->device = static_cast<int>(c.device);
    void* p = nullptr;
    s = from_device(cuda::alloc(w->device, a.byte_len, &p));
    w->blocks = static_cast<uint8_t*>(p);
    if (s.ok() && a.byte_len) {
      DeviceGuard g;
      s = enter_device(g, c);
      if (s.ok()) s = from_device(h2d_async(*c.dev, p, a.bytes, a.byte_len));
      if (s.ok()) s = from_device(sync(*c.dev));  // S: the weight is usable when the call returns
    }
    if (!s.ok()) {
      (void)cuda::free(w->device, p);
      (void)qweight_table().release(w);
      if (s.message.rfind("load_quant", 0) != 0) s.message = "load_quant: " + s.message;
      return s;
    }
    *a.weight = w;
    return ok_status();
  });
}

ferrum_status gguf_matmul(ferrum_context* ctx, const ferrum_gguf_matmul_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_gguf_matmul_args& a, bool dry) -> Status {
    const char* op = "gguf_matmul";
    ferrum_qweight* w = nullptr;
    Status s = find_weight(op, c, a.weight, ferrum_qweight::Kind::gguf, w);
    uint64_t out_elems = 0;
    if (s.ok()) s = plugin::rules::check_gguf_matmul(a, w->n_rows, w->n_cols, out_elems);
    if (s.ok()) s = check_devices(op, c, {{"a", a.a}, {"out", a.out}});
    if (!s.ok() || a.m == 0 || w->n_rows == 0) return s;
    const int32_t dt = a.out->dtype;
    if (w->n_cols == 0) {  // empty sums: +0.0
      if (dry) return s;
      return launch(op, c, [&](cudaStream_t) {
        return memset_async(*c.dev, a.out->data, common::sat_mul(out_elems, dtype_size(dt)));
      });
    }
    if (a.m <= kernels::kGgufMatvecMaxM) {
      if (dry) return s;
      return launch(op, c, [&](cudaStream_t st) {
        return kernels::gguf_matvec(dt, w->quant_type, w->blocks, w->n_rows, w->n_cols, a.a->data, a.out->data, a.m,
                                    st);
      });
    }
    // Tensor cores: panels of `rows` weight rows dequantised into the scratch, one gemm each.
    const uint64_t es = dtype_size(dt);
    uint64_t row_bytes = 0, block_row = 0, panel_bytes = 0;
    s = check_product(op, {{"weight.n_cols", w->n_cols}, {"dtype size", es}}, row_bytes);
    if (s.ok()) block_row = w->bytes / w->n_rows;  // the blocks of one weight row (load_quant checked the total)
    const uint64_t fit = row_bytes ? kPanelBytes / row_bytes : 0;
    uint64_t rows = std::max<uint64_t>(kPanelRows, fit - fit % kPanelRows);
    rows = std::min(rows, w->n_rows);
    if (s.ok()) s = check_product(op, {{"panel rows", rows}, {"weight row bytes", row_bytes}}, panel_bytes);
    if (!s.ok() || dry) return s;
    void* panel = nullptr;
    s = work_scratch(c, panel_bytes, op, panel);
    if (!s.ok()) return s;
    return launch(op, c, [&](cudaStream_t st) -> cuda::Status {
      for (uint64_t r0 = 0; r0 < w->n_rows; r0 += rows) {
        const uint64_t n = std::min(rows, w->n_rows - r0);  // arith-ok: r0 < n_rows
        const uint8_t* blocks = w->blocks + r0 * block_row;  // arith-ok: r0·block_row < bytes
        cuda::Status ds = kernels::gguf_dequantize(dt, w->quant_type, blocks, n, w->n_cols, panel, st);
        char* cols = static_cast<char*>(a.out->data) + r0 * es;  // arith-ok: r0 < n_rows; out holds m·n_rows (checked)
        if (ds.ok()) ds = cuda::gemm_ldo(*c.dev, dt, a.a->data, panel, cols, a.m, n, w->n_cols, w->n_rows);
        if (!ds.ok()) return ds;
      }
      return cuda::Status{};
    });
  });
}

ferrum_status gguf_dequantize(ferrum_context* ctx, const ferrum_gguf_dequantize_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_gguf_dequantize_args& a, bool dry) -> Status {
    const char* op = "gguf_dequantize";
    ferrum_qweight* w = nullptr;
    Status s = find_weight(op, c, a.weight, ferrum_qweight::Kind::gguf, w);
    uint64_t elems = 0;
    if (s.ok()) s = check_product(op, {{"weight.n_rows", w->n_rows}, {"weight.n_cols", w->n_cols}}, elems);
    if (s.ok()) s = check_min_count(op, "out", a.out, elems);
    if (s.ok()) s = check_devices(op, c, {{"out", a.out}});
    if (!s.ok() || dry || elems == 0) return s;
    return launch(op, c, [&](cudaStream_t st) {
      return kernels::gguf_dequantize(a.out->dtype, w->quant_type, w->blocks, w->n_rows, w->n_cols, a.out->data, st);
    });
  });
}

ferrum_status qweight_release(ferrum_context*, const ferrum_qweight_release_args* a) {
  return plugin::guard(nullptr, "qweight_release", [&]() -> Status {
    if (!a || a->struct_size < FERRUM_QWEIGHT_RELEASE_ARGS_SIZE_V1_0)
      return invalid("qweight_release: args NULL or struct_size too small");
    if (!a->weight) return ok_status();  // NULL-safe
    ferrum_qweight* w = qweight_table().find(a->weight);
    if (!w)
      return invalid("qweight_release: argument 'weight': expected a live quantised weight, given a released or "
                     "unknown one");
    const int dev = w->device;
    void* p = w->blocks;
    GptqWeight* g = w->gptq;
    if (!qweight_table().release(w))  // a concurrent release of the same handle won
      return invalid("qweight_release: argument 'weight': expected a live quantised weight, given a released one");
    Status s = from_device(cuda::free(dev, p));
    const Status sg = free_gptq(dev, g);
    return s.ok() ? sg : s;
  });
}

}  // namespace

const ferrum_quant_matmul_table kQuantMatmulTable = {
    sizeof(ferrum_quant_matmul_table), FERRUM_QUANT_MATMUL_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cuda::glue
