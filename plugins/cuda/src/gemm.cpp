// Row-major <-> column-major mapping.
//
// cuBLASLt is column-major. A row-major [r, c] matrix is the column-major [c, r] matrix
// with leading dimension c, i.e. its transpose. So
//   out (row-major [m, n])  ==  D = outᵀ, column-major [n, m], ld n
//   a   (row-major [m, k])  ==  aᵀ,       column-major [k, m], ld k
//   b   (row-major [n, k])  ==  bᵀ,       column-major [k, n], ld k
// and out = a·bᵀ  <=>  outᵀ = b·aᵀ = (bᵀ)ᵀ·(aᵀ). With cuBLAS operands
//   A := b buffer, layout [k, n] ld k, opA = T   (op(A) = b,  [n, k])
//   B := a buffer, layout [k, m] ld k, opB = N   (op(B) = aᵀ, [k, m])
//   C = D := out,  layout [n, m] ld n
// the call computes D[n, m] = op(A)·op(B), which is out in row-major. This is the "TN"
// layout cuBLASLt serves best for 16-bit inputs.
#include "gemm.hpp"

#include <algorithm>
#include <limits>

#include "cuda_check.hpp"
#include "dtype.hpp"

namespace ferrum::cuda {

namespace {

struct GemmTypes {
  cudaDataType_t data;
  cublasComputeType_t compute;
  cudaDataType_t scale;
};

Status gemm_types(int32_t dtype, GemmTypes& t) noexcept {
  return dispatch_float(dtype, "gemm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float>) {
      t = {CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F};  // full f32, no TF32 (docs/spec.md §0.2)
    } else if constexpr (std::is_same_v<T, __half>) {
      t = {CUDA_R_16F, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    } else {
      t = {CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    }
    return ok_status();
  });
}

// Largest power of two (capped at 256) dividing the address.
uint32_t pointer_alignment(const void* p) noexcept {
  const auto v = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && v % align != 0) align >>= 1;
  return align;
}

void destroy_plan(GemmPlan& plan) noexcept {
  if (plan.c_layout) (void)cublasLtMatrixLayoutDestroy(plan.c_layout);
  if (plan.b_layout) (void)cublasLtMatrixLayoutDestroy(plan.b_layout);
  if (plan.a_layout) (void)cublasLtMatrixLayoutDestroy(plan.a_layout);
  if (plan.op) (void)cublasLtMatmulDescDestroy(plan.op);
  plan = GemmPlan{};
}

// RAII for the heuristic preference descriptor.
struct PreferenceOwner {
  cublasLtMatmulPreference_t pref = nullptr;
  ~PreferenceOwner() {
    if (pref) (void)cublasLtMatmulPreferenceDestroy(pref);
  }
};

Status build_plan_into(DeviceContext& ctx, const GemmKey& key, const GemmTypes& t, GemmPlan& plan) noexcept {
  const cublasOperation_t op_t = CUBLAS_OP_T;
  const cublasOperation_t op_n = CUBLAS_OP_N;
  FERRUM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.op, t.compute, t.scale));
  FERRUM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t));
  FERRUM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n));
  const auto ld_k = static_cast<int64_t>(key.k);
  const auto ld_n = static_cast<int64_t>(key.ldo);
  FERRUM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.a_layout, t.data, key.k, key.n, ld_k));
  FERRUM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.b_layout, t.data, key.k, key.m, ld_k));
  FERRUM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.c_layout, t.data, key.n, key.m, ld_n));

  PreferenceOwner pref;
  FERRUM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.pref));
  const uint64_t ws = ctx.workspace_bytes;
  FERRUM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                           &ws, sizeof ws));
  // The heuristic otherwise assumes 256-byte aligned operands; tell it the real alignment.
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    const uint32_t align = key.align;
    FERRUM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.pref, attr, &align, sizeof align));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  FERRUM_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx.lt, plan.op, plan.a_layout, plan.b_layout,
                                                     plan.c_layout, plan.c_layout, pref.pref, 1, &result,
                                                     &found));
  if (found < 1 || result.state != CUBLAS_STATUS_SUCCESS) {
    return make_status(FERRUM_STATUS_UNSUPPORTED,
                       "gemm: cuBLASLt found no algorithm for %s m=%llu n=%llu k=%llu (alignment %u): %s",
                       dtype_name(key.dtype), static_cast<unsigned long long>(key.m),
                       static_cast<unsigned long long>(key.n), static_cast<unsigned long long>(key.k),
                       key.align, cublasLtGetStatusName(result.state));
  }
  plan.algo = result.algo;
  return ok_status();
}

// Finds or builds the plan for `key`. The returned pointer stays valid until the next
// insertion or clear of ctx.gemm_plans.
Status find_plan(DeviceContext& ctx, const GemmKey& key, const GemmTypes& t, const GemmPlan*& out) noexcept {
  auto it = ctx.gemm_plans.find(key);
  if (it != ctx.gemm_plans.end()) {
    out = &it->second;
    return ok_status();
  }
  GemmPlan plan;
  Status st = build_plan_into(ctx, key, t, plan);
  if (!st.ok()) {
    destroy_plan(plan);
    return st;
  }
  if (ctx.gemm_plans.size() >= kMaxGemmPlans) clear_gemm_plans(ctx);
  try {
    out = &ctx.gemm_plans.emplace(key, plan).first->second;
  } catch (...) {
    destroy_plan(plan);
    return make_status(FERRUM_STATUS_OUT_OF_MEMORY, "gemm: out of host memory caching a plan");
  }
  return ok_status();
}

bool mul_overflows(uint64_t x, uint64_t y, uint64_t& r) noexcept { return __builtin_mul_overflow(x, y, &r); }

}  // namespace

Status gemm(DeviceContext& ctx, int32_t dtype, const void* a, const void* b, void* out, uint64_t m, uint64_t n,
            uint64_t k) noexcept {
  return gemm_ldo(ctx, dtype, a, b, out, m, n, k, n);
}

Status gemm_ldo(DeviceContext& ctx, int32_t dtype, const void* a, const void* b, void* out, uint64_t m, uint64_t n,
                uint64_t k, uint64_t ldo) noexcept {
  GemmTypes types{};
  FERRUM_RETURN_IF_ERROR(gemm_types(dtype, types));
  if (ctx.device < 0 || ctx.stream == nullptr || ctx.lt == nullptr) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "gemm: context was not created");
  }
  if (m == 0 || n == 0) return ok_status();

  const uint64_t elem = dtype_size(dtype);
  uint64_t out_elems = 0, out_bytes = 0, a_elems = 0, b_elems = 0, tmp = 0;
  constexpr auto kMaxDim = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (ldo < n) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "gemm: ldo %llu < n %llu", static_cast<unsigned long long>(ldo),
                       static_cast<unsigned long long>(n));
  }
  // The output's extent: (m - 1)·ldo + n elements (m·ldo bounds it).
  if (m > kMaxDim || n > kMaxDim || k > kMaxDim || ldo > kMaxDim || mul_overflows(m, ldo, out_elems) ||
      mul_overflows(out_elems, elem, out_bytes) || mul_overflows(m, k, a_elems) || mul_overflows(a_elems, elem, tmp) ||
      mul_overflows(n, k, b_elems) || mul_overflows(b_elems, elem, tmp) || out_bytes > SIZE_MAX) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "gemm: sizes overflow (m=%llu n=%llu k=%llu)",
                       static_cast<unsigned long long>(m), static_cast<unsigned long long>(n),
                       static_cast<unsigned long long>(k));
  }
  if (out == nullptr || (k != 0 && (a == nullptr || b == nullptr))) {
    return make_status(FERRUM_STATUS_INVALID_ARGUMENT, "gemm: NULL operand (a=%p b=%p out=%p)", a, b, out);
  }

  DeviceGuard guard;
  FERRUM_RETURN_IF_ERROR(guard.enter(ctx.device));

  if (k == 0) {  // empty sum: +0.0 everywhere (all-zero bits in every float dtype)
    if (ldo == n) {
      FERRUM_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(out_bytes), ctx.stream));
    } else {
      // arith-ok: ldo and n are at most out_elems, whose byte size did not overflow
      const size_t pitch = static_cast<size_t>(ldo * elem), width = static_cast<size_t>(n * elem);
      FERRUM_CUDA_CHECK(cudaMemset2DAsync(out, pitch, 0, width, static_cast<size_t>(m), ctx.stream));
    }
    return ok_status();
  }

  GemmKey key;
  key.dtype = dtype;
  key.align = std::min({pointer_alignment(a), pointer_alignment(b), pointer_alignment(out)});
  key.m = m;
  key.n = n;
  key.k = k;
  key.ldo = ldo;
  const GemmPlan* plan = nullptr;
  FERRUM_RETURN_IF_ERROR(find_plan(ctx, key, types, plan));

  const float alpha = 1.0f;
  const float beta = 0.0f;
  // cuBLAS A is ferrum b, cuBLAS B is ferrum a (see the mapping at the top of this file).
  FERRUM_CUBLAS_CHECK(cublasLtMatmul(ctx.lt, plan->op, &alpha, b, plan->a_layout, a, plan->b_layout, &beta, out,
                                     plan->c_layout, out, plan->c_layout, &plan->algo, ctx.workspace,
                                     ctx.workspace_bytes, ctx.stream));
  return ok_status();
}

}  // namespace ferrum::cuda
