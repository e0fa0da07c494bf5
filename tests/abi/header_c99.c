/* Compiles every public ABI header as C99 with -Wall -Wextra -pedantic -Werror. */
#include <ferrum/ferrum.h>
#include <ferrum/ferrum_base.h>
#include <ferrum/ferrum_ops.h>
#include <ferrum/ferrum_plugin.h>

int main(void) {
  ferrum_rms_norm_args a = {0};
  a.struct_size = sizeof a;
  return a.struct_size == FERRUM_RMS_NORM_ARGS_SIZE_V1_0 ? 0 : 1;
}
