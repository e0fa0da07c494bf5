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

// The 1.1 tail of the API table (hand-written, not in the registry): `extensions` right after
// the 1.0 fields, and the extension record's layout.
#include <cstddef>
static_assert(offsetof(ferrum_plugin_api, extensions) == FERRUM_PLUGIN_API_SIZE_V1_0, "1.1 api tail");
static_assert(sizeof(ferrum_plugin_api) == FERRUM_PLUGIN_API_SIZE_V1_1, "1.1 api size");
static_assert(FERRUM_PLUGIN_API_SIZE == FERRUM_PLUGIN_API_SIZE_V1_1, "current api size");
static_assert(sizeof(ferrum_extension) == FERRUM_EXTENSION_SIZE_V1_1, "extension size");
static_assert(offsetof(ferrum_extension, id) == 8 && offsetof(ferrum_extension, version) == 16 &&
                  offsetof(ferrum_extension, next) == 24,
              "extension offsets");

int main(void) {
  ferrum_rms_norm_args a = {};
  a.struct_size = sizeof a;
  if (demo::kContext.new_context != &demo::new_context || demo::kContext.sync != &demo::sync ||
      demo::kContext.elapsed_ms != &demo::elapsed_ms)
    return 2;
  return a.struct_size == FERRUM_RMS_NORM_ARGS_SIZE_V1_0 ? 0 : 1;
}
