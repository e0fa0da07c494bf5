// ferrum CUDA plugin — the one ABI dtype -> C++ device type dispatch helper.
//
// The host-side storage types and the dtype metadata are ferrum's common ones
// (<ferrum/common/dtype.hpp>); this helper maps the float dtypes to the CUDA types that
// device code computes with.
//
// dispatch_float(dtype, what, f) calls f(TypeTag<T>{}) with T = float, __half or
// __nv_bfloat16 for FERRUM_DTYPE_F32 / F16 / BF16 and returns what f returns (a Status);
// any other dtype gives INVALID_ARGUMENT naming `what`. Every op that is generic over the
// activation dtype goes through this helper instead of its own switch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include <ferrum/common/dtype.hpp>

#include "status.hpp"

namespace ferrum::cuda {

// The dtype metadata is common's (one definition for the whole project); the using-
// declarations keep `ferrum::cuda::dtype_size` etc. valid for qualified callers.
using ferrum::dtype_name;
using ferrum::dtype_size;
using ferrum::is_float_dtype;

// Carries a type through a generic lambda: `using T = typename decltype(tag)::type;`
template <class T>
struct TypeTag {
  using type = T;
};

template <class F>
[[nodiscard]] Status dispatch_float(int32_t dtype, const char* what, F&& f) {
  switch (dtype) {
    case FERRUM_DTYPE_F32:
      return f(TypeTag<float>{});
    case FERRUM_DTYPE_F16:
      return f(TypeTag<__half>{});
    case FERRUM_DTYPE_BF16:
      return f(TypeTag<__nv_bfloat16>{});
    default:
      return make_status(FERRUM_STATUS_INVALID_ARGUMENT,
                         "%s: dtype %d (%s) is not a float dtype (F32, F16, BF16)", what,
                         static_cast<int>(dtype), dtype_name(dtype));
  }
}

}  // namespace ferrum::cuda
