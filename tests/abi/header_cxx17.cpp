/* Compiles every public ABI header as C++17 with -Wall -Wextra -pedantic -Werror, and fills a
 * family table the way a C++ plugin does with the generated slot lists. */
#include <ferrum/ferrum.h>
#include <ferrum/ferrum_base.h>
#include <ferrum/ferrum_ops.h>
#include <ferrum/ferrum_plugin.h>

namespace demo {
FERRUM_CONTEXT_SLOTS(FERRUM_SLOT_DECL)  // `sync` and friends, declared inside the namespace

#define DEFINE_SLOT(op) \
  ferrum_status op(ferrum_context*, const ferrum_##op##_args*) { return FERRUM_STATUS_OK; }
FERRUM_CONTEXT_SLOTS(DEFINE_SLOT)
#undef DEFINE_SLOT

#define SLOT(op) op,
const ferrum_context_table kContext = {sizeof(ferrum_context_table), FERRUM_CONTEXT_SLOTS(SLOT)};
#undef SLOT
}  // namespace demo

int main(void) {
  ferrum_rms_norm_args a = {};
  a.struct_size = sizeof a;
  if (demo::kContext.new_context != &demo::new_context || demo::kContext.sync != &demo::sync ||
      demo::kContext.elapsed_ms != &demo::elapsed_ms)
    return 2;
  return a.struct_size == FERRUM_RMS_NORM_ARGS_SIZE_V1_0 ? 0 : 1;
}
