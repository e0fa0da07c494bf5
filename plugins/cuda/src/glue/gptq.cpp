// CUDA plugin: GPTQ int4 quantised matmul (docs/spec.md §12): load_gptq, load_gptq_stacked and
// marlin_gemm over the kernels of kernels/gptq.cuh.
//
// Loading reorders the K rows by group and pads each group to whole 8-row words (the layout shared
// with the CPU plugin, common/gptq_layout.hpp), decodes the zero points and the scales rounded to
// the activation dtype, and uploads the nibbles in the source's [K/8, N] orientation (a plain copy
// when the order is the identity). marlin_gemm with m <= kGptqMatvecMaxM gathers the activations
// into the padded order as f32 and runs the split-K matvec (exact weights, f32 sums); larger m
// dequantises panels of output columns to the activation dtype in the context's scratch (at most
// kPanelBytes each) and multiplies each on tensor cores with cuBLASLt into its columns of out.
// Stacks (load_gptq_stacked) load and release; no CUDA op multiplies them yet (moe_gemm /
// fused_moe answer UNSUPPORTED for a GPTQ stack).
#include <ferrum/common/gptq_layout.hpp>
#include <ferrum/common/quant_rules.hpp>

#include <algorithm>
#include <new>
#include <vector>

#include "cuda_plugin.hpp"
#include "gemm.hpp"
#include "kernels/gptq.cuh"
#include "memory.hpp"
#include "qweight.hpp"

namespace ferrum::cuda::glue {

Status free_gptq(int device, GptqWeight* g) noexcept {
  if (!g) return ok_status();
  Status first = ok_status();
  for (uint64_t e = 0; g->mats && e < g->experts; ++e) {
    GptqMatrixDev& d = g->mats[e];
    for (void* p : {static_cast<void*>(d.q), static_cast<void*>(d.zs), static_cast<void*>(d.wgrp),
                    static_cast<void*>(d.gword), static_cast<void*>(d.src_row)}) {
      const Status s = from_device(cuda::free(device, p));
      if (!s.ok() && first.ok()) first = s;
    }
  }
  delete[] g->mats;
  delete g;
  return first;
}

namespace {


// marlin_gemm's tensor-core panels: at most this many bytes of dequantised columns, whole
// multiples of kPanelCols columns (at least one), at most kMaxPanelCols (the dequantise grid).
constexpr uint64_t kPanelBytes = 64ull << 20;
constexpr uint64_t kPanelCols = 128;
constexpr uint64_t kMaxPanelCols = 1ull << 20;

template <class T>
Status upload(ferrum_context& c, T*& dst, const std::vector<T>& src, const char* op) {
  void* p = nullptr;
  Status s = from_device(cuda::alloc(static_cast<int>(c.device), src.size() * sizeof(T), &p));
  dst = static_cast<T*>(p);
  if (s.ok() && !src.empty()) s = from_device(h2d_async(*c.dev, p, src.data(), src.size() * sizeof(T)));
  if (!s.ok() && s.message.rfind(op, 0) != 0) s.message = std::string(op) + ": " + s.message;
  return s;
}

// One matrix: the shared layout, then the device arrays of kernels/gptq.cuh.
Status upload_matrix(const char* op, ferrum_context& c, const common::GptqSource& src, GptqWeight& g,
                     GptqMatrixDev& d) {
  // The kernels index word rows and groups with 32 bits.
  if (src.k / 8 + (src.group_size ? src.k / src.group_size : 1) >= (uint64_t{1} << 32))  // arith-ok: k/8 + k/g < 2^62
    return unsupported(plugin::format("%s: argument 'k': expected at most 2^35 - 8 rows on CUDA, given %llu", op,
                                      (unsigned long long)src.k));
  common::GptqLayout L;
  common::gptq_layout(src, L);
  const uint64_t N = src.n, kw = L.kp / 8;
  g.kp = L.kp;
  g.groups = L.groups;
  std::vector<uint32_t> q;
  if (L.identity) {
    q.assign(reinterpret_cast<const uint32_t*>(src.qweight), reinterpret_cast<const uint32_t*>(src.qweight) + kw * N);
  } else {
    q.assign(kw * N, 0u);
    for (uint64_t p = 0; p < L.kp; ++p) {
      if (L.src_row[p] < 0) continue;
      const uint32_t shift = 4 * (p % 8);
      uint32_t* row = q.data() + p / 8 * N;
      for (uint64_t col = 0; col < N; ++col) row[col] |= common::gptq_nibble(src, uint64_t(L.src_row[p]), col) << shift;
    }
  }
  std::vector<float2> zs(L.groups * N);
  for (uint64_t i = 0; i < zs.size(); ++i) zs[i] = make_float2(8388608.0f + L.zero[i], L.scale[i]);
  std::vector<uint32_t> wgrp(kw);
  for (uint64_t gi = 0; gi < L.groups; ++gi)
    for (uint64_t w = L.group_word[gi]; w < L.group_word[gi + 1]; ++w) wgrp[w] = static_cast<uint32_t>(gi);
  std::vector<uint32_t> gword(L.groups + 1);
  for (uint64_t gi = 0; gi <= L.groups; ++gi) gword[gi] = static_cast<uint32_t>(L.group_word[gi]);
  Status s = upload(c, d.q, q, op);
  if (s.ok()) s = upload(c, d.zs, zs, op);
  if (s.ok()) s = upload(c, d.wgrp, wgrp, op);
  if (s.ok()) s = upload(c, d.gword, gword, op);
  if (s.ok() && !L.identity) {
    std::vector<int32_t> rows(L.kp);
    for (uint64_t p = 0; p < L.kp; ++p) rows[p] = static_cast<int32_t>(L.src_row[p]);
    s = upload(c, d.src_row, rows, op);
  }
  if (s.ok()) s = from_device(sync(*c.dev));  // the host vectors die here; the weight is usable on return
  return s;
}

// Builds a weight of the matrices of `srcs` (one per expert), uploaded to the context's device.
Status build(const char* op, ferrum_context& c, const std::vector<common::GptqSource>& srcs, ferrum_qweight** out) {
  const uint64_t E = srcs.size();
  auto* g = new (std::nothrow) GptqWeight;
  if (g) g->mats = new (std::nothrow) GptqMatrixDev[E]{};
  if (!g || !g->mats) {
    delete g;
    return {FERRUM_STATUS_OUT_OF_MEMORY, std::string(op) + ": out of host memory"};
  }
  g->k = srcs.front().k;
  g->n = srcs.front().n;
  g->experts = E;
  g->act_dtype = srcs.front().act_dtype;
  DeviceGuard guard;
  Status s = enter_device(guard, c);
  for (uint64_t e = 0; s.ok() && e < E; ++e) {
    try {
      s = upload_matrix(op, c, srcs[e], *g, g->mats[e]);
    } catch (const std::bad_alloc&) {
      s = {FERRUM_STATUS_OUT_OF_MEMORY, std::string(op) + ": out of host memory repacking the weight"};
    }
  }
  ferrum_qweight* w = s.ok() ? qweight_table().acquire() : nullptr;
  if (s.ok() && !w) s = {FERRUM_STATUS_OUT_OF_MEMORY, std::string(op) + ": out of host memory"};
  if (!s.ok()) {
    (void)free_gptq(static_cast<int>(c.device), g);
    return s;
  }
  w->kind = ferrum_qweight::Kind::gptq;
  w->device = static_cast<int>(c.device);
  w->gptq = g;
  *out = w;
  return ok_status();
}

}  // namespace

ferrum_status load_gptq(ferrum_context* ctx, const ferrum_load_gptq_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_load_gptq_args& a, bool dry) -> Status {
    std::vector<common::GptqSource> srcs;
    const Status st = plugin::rules::gptq_sources(a, c.activation_dtype, srcs);
    return !st.ok() || dry ? st : build("load_gptq", c, srcs, a.weight);
  });
}

ferrum_status load_gptq_stacked(ferrum_context* ctx, const ferrum_load_gptq_stacked_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_load_gptq_stacked_args& a, bool dry) -> Status {
    std::vector<common::GptqSource> srcs;
    const Status st = plugin::rules::gptq_sources(a, c.activation_dtype, srcs);
    return !st.ok() || dry ? st : build("load_gptq_stacked", c, srcs, a.weight);
  });
}

ferrum_status marlin_gemm(ferrum_context* ctx, const ferrum_marlin_gemm_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_marlin_gemm_args& a, bool dry) -> Status {
    const char* op = "marlin_gemm";
    ferrum_qweight* w = nullptr;
    Status s = find_weight(op, c, a.weight, ferrum_qweight::Kind::gptq, w);
    if (!s.ok()) return s;
    const GptqWeight& g = *w->gptq;
    s = plugin::rules::check_marlin_gemm(a, g.experts, g.k, g.n, g.act_dtype);
    if (s.ok()) s = check_devices(op, c, {{"a", a.a}, {"out", a.out}});
    if (!s.ok() || a.m == 0) return s;
    const int32_t dt = g.act_dtype;
    const uint64_t es = dtype_size(dt), kw = g.kp / 8;
    const GptqMatrixDev& d = g.mats[0];
    if (a.m <= kernels::kGptqMatvecMaxM) {
      int sms = 0;
      s = attention_sm_count(c, sms);
      const uint32_t splits = kernels::gptq_matvec_splits(g.n, kw, sms);
      uint64_t x_elems = 0, part_elems = 0, bytes = 0;
      if (s.ok()) s = check_product(op, {{"m", a.m}, {"padded k", g.kp}}, x_elems);
      if (s.ok()) s = check_product(op, {{"splits", splits}, {"m", a.m}, {"weight.n", g.n}}, part_elems);
      if (s.ok()) s = check_product(op, {{"scratch floats", x_elems + (splits > 1 ? part_elems : 0)}, {"float", 4}}, bytes);  // arith-ok: both < 2^62 (m <= 8, sizes of device arrays)
      if (!s.ok() || dry) return s;
      void* scratch = nullptr;
      s = work_scratch(c, bytes, op, scratch);
      if (!s.ok()) return s;
      float* x = static_cast<float*>(scratch);
      float* partial = splits > 1 ? x + x_elems : nullptr;  // arith-ok: inside the scratch bytes checked above
      return launch(op, c, [&](cudaStream_t st) -> cuda::Status {
        cuda::Status r = kernels::gptq_gather(dt, a.a->data, d.src_row, x, a.m, g.k, g.kp, true, st);
        if (r.ok()) r = kernels::gptq_matvec(dt, d.q, d.zs, d.wgrp, d.gword, x, a.out->data, partial, a.m, kw, g.n, splits, st);
        return r;
      });
    }
    // Tensor cores: panels of output columns dequantised to the activation dtype, one gemm each.
    uint64_t col_bytes = 0, x_bytes = 0, panel_bytes = 0, total = 0;
    s = check_product(op, {{"padded k", g.kp}, {"dtype size", es}}, col_bytes);
    const uint64_t fit = col_bytes ? kPanelBytes / col_bytes : 0;
    uint64_t cols = std::max<uint64_t>(kPanelCols, fit - fit % kPanelCols);
    cols = std::min({cols, g.n, kMaxPanelCols});
    const bool gather = d.src_row != nullptr;
    if (s.ok() && gather) s = check_product(op, {{"m", a.m}, {"padded k", g.kp}, {"dtype size", es}}, x_bytes);
    if (s.ok()) s = check_product(op, {{"panel columns", cols}, {"column bytes", col_bytes}}, panel_bytes);
    if (s.ok()) s = check_sum(op, "scratch", "activations + panel", x_bytes, panel_bytes, total);
    if (!s.ok() || dry) return s;
    void* scratch = nullptr;
    s = work_scratch(c, total, op, scratch);
    if (!s.ok()) return s;
    // The gathered activations first (a multiple of 16 bytes: kp is a multiple of 8), then the panel.
    void* xg = scratch;
    void* panel = static_cast<char*>(scratch) + x_bytes;  // arith-ok: inside the scratch bytes checked above
    return launch(op, c, [&](cudaStream_t st) -> cuda::Status {
      cuda::Status r;
      if (gather) r = kernels::gptq_gather(dt, a.a->data, d.src_row, xg, a.m, g.k, g.kp, false, st);
      const void* xa = gather ? xg : a.a->data;
      for (uint64_t c0 = 0; r.ok() && c0 < g.n; c0 += cols) {
        const uint64_t nc = std::min(cols, g.n - c0);                // arith-ok: c0 < n
        char* dst = static_cast<char*>(a.out->data) + c0 * es;       // arith-ok: c0 < n; out holds m·n (checked)
        r = kernels::gptq_dequant_t(dt, d.q, d.zs, d.wgrp, panel, kw, g.n, c0, nc, st);
        if (r.ok()) r = cuda::gemm_ldo(*c.dev, dt, xa, panel, dst, a.m, nc, g.kp, g.n);
      }
      return r;
    });
  });
}

}  // namespace ferrum::cuda::glue
