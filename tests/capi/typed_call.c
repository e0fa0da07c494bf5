/* Compiled, not run (capi.typed_call_*): the typed call of an op takes that op's args struct;
 * built with -DWRONG_STRUCT it passes another op's, which -Werror must refuse. */
#include <ferrum/ferrum_host.h>

ferrum_status call(ferrum_host_context* ctx);
ferrum_status call(ferrum_host_context* ctx) {
#ifdef WRONG_STRUCT
  ferrum_gemm_args a = {sizeof a};
#else
  ferrum_rms_norm_args a = {sizeof a};
#endif
  return ferrum_host_call_rms_norm(ctx, &a);
}
