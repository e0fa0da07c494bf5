/*
 * ferrum — the plugin API table and the one exported entry symbol.
 *
 * A plugin is a shared object that exports exactly one symbol, FERRUM_PLUGIN_ENTRY_SYMBOL
 * ("ferrum_plugin_entry_v1"), of type ferrum_plugin_entry_fn. Everything else in it has
 * hidden visibility. See ferrum_base.h for the versioning rules.
 */
#ifndef FERRUM_PLUGIN_H
#define FERRUM_PLUGIN_H

#include "ferrum_base.h"
#include "ferrum_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* =================================================================================
 * Extensions (since ABI 1.1)
 * =================================================================================
 * Entry points beyond the core tables, without a core slot: a plugin chains static
 * ferrum_extension records from the API table's `extensions` field, each the first member
 * of the vendor's own struct that holds its functions:
 *
 *   typedef struct acme_stream_ext {
 *     ferrum_extension ext;  // {sizeof(acme_stream_ext), "com.acme.stream", 1, 0, NULL}
 *     ferrum_status (*get_stream)(ferrum_context* ctx, void** stream_out);
 *   } acme_stream_ext;
 *
 * The host finds a record by `id` and checks `version` and struct_size before it casts.
 * Records are static in the plugin, borrowed by the host until the library is unloaded.
 * The host bounds its walk of the chain and skips a record whose id is NULL.
 */
typedef struct ferrum_extension {
  uint64_t struct_size;                 /* sizeof the vendor's whole struct (this is its head) */
  const char* id;                       /* reverse-DNS-ish, e.g. "ferrum.cuda.stream"; static */
  uint32_t version;                     /* grows when the vendor appends entry points */
  uint32_t reserved;                    /* 0 */
  const struct ferrum_extension* next;  /* next record of the chain; NULL ends it */
} ferrum_extension;
#define FERRUM_EXTENSION_SIZE_V1_1 32
/* The host reads at most this many records of a chain (a longer or cyclic one ends here). */
#define FERRUM_EXTENSION_CHAIN_MAX 64

/* =================================================================================
 * The plugin API table
 * =================================================================================
 * Returned by the entry symbol; static in the plugin, borrowed by the host: valid until
 * the library is unloaded. The host reads only what struct_size covers.
 */
typedef struct ferrum_plugin_api {
  /* ---- frozen prefix: these fields never move, in any major ------------------- */
  uint64_t struct_size;         /* sizeof(ferrum_plugin_api) as the plugin was built */
  uint32_t abi_major;           /* FERRUM_ABI_VERSION_MAJOR the plugin was built with */
  uint32_t abi_minor;           /* FERRUM_ABI_VERSION_MINOR the plugin was built with */
  const char* plugin_name;      /* e.g. "cpu", "cuda"; borrowed, static */
  const char* plugin_version;   /* e.g. "0.1.0"; borrowed, static */
  const char* build_info;       /* "commit=.. compiler=.. cuda=.. sm=80,90"; static */

  /* ---- lifecycle ---------------------------------------------------------------- */

  /* Can this plugin run here? Never fails for "no device": it sets *score = 0 and a
   * reason instead. score > 0: usable, higher is preferred by `auto` (CPU 10, GPU 100).
   * reason: caller memory of reason_cap bytes, always NUL-terminated on return.
   * Thread-safe. Does not require init. */
  ferrum_status (*probe)(int32_t* score /* out */, char* reason /* out */,
                         uint64_t reason_cap);

  /* Initialises the plugin (driver, device enumeration). Called once after a probe with
   * score > 0 and before any other call below. On failure host->report_error (1.1 hosts)
   * or error_detail(NULL, ..) says why. Not thread-safe with other lifecycle calls. */
  ferrum_status (*init)(void);

  /* Releases everything init acquired. The host calls it after every object of the
   * plugin is gone and before dlclose. NULL-safe to call without init. */
  void (*shutdown)(void);

  /* Number of devices (>= 1 after a successful init). Thread-safe. */
  ferrum_status (*device_count)(uint64_t* count /* out */);

  /* Properties of device `ordinal`; props->struct_size set by the caller. Thread-safe. */
  ferrum_status (*device_props)(uint64_t ordinal, ferrum_device_props* props /* out */);

  /* Copies the detail message of the last failed call into caller memory.
   * ctx != NULL: the last failure on that context (externally synchronised on ctx).
   * ctx == NULL: the last failure of a call without a context (or before a context
   * existed) on the calling thread. Since ABI 1.1 a host may take those reports itself
   * (ferrum_host_info.report_error): a plugin that reported a failure there need not keep
   * it, and may answer "" here; the host reads its own report first. buf may be NULL when
   * buf_cap is 0; *needed (may be NULL) receives strlen(message) + 1. The message is
   * truncated, NUL-terminated. */
  ferrum_status (*error_detail)(ferrum_context* ctx, char* buf /* out */, uint64_t buf_cap,
                                uint64_t* needed /* out */);

  /* Capability level b: would `op` (a FERRUM_OP_* value) with `args` (a pointer to its
   * ferrum_<op>_args) run on ctx? Returns OK, UNSUPPORTED or INVALID_ARGUMENT with the
   * reason in caller memory; never enqueues anything and never reads device contents.
   * A NULL slot answers UNSUPPORTED. May itself be NULL: the host then treats a
   * present slot as supported. Externally synchronised on ctx. */
  ferrum_status (*query_support)(ferrum_context* ctx, int32_t op, const void* args,
                                 char* reason /* out */, uint64_t reason_cap);

  /* ---- op families: NULL = whole family absent; NULL slot = op absent ---------- */
  const ferrum_memory_table* memory;
  const ferrum_context_table* context;
  const ferrum_graph_table* graph;
  const ferrum_dense_table* dense;
  const ferrum_attention_table* attention;
  const ferrum_paged_kv_table* paged_kv;
  const ferrum_quant_kv_table* quant_kv;
  const ferrum_quant_matmul_table* quant_matmul;
  const ferrum_moe_table* moe;
  const ferrum_mla_table* mla;
  const ferrum_collective_table* collective;

  /* ---- appended in later minors only, below this line -------------------------- */
  /* since ABI 1.1: a table of an older plugin ends before these (the host reads them only
   * when struct_size covers them) */

  /* Head of the plugin's extension chain (see ferrum_extension); NULL: none. */
  const ferrum_extension* extensions;
} ferrum_plugin_api;
#define FERRUM_PLUGIN_API_SIZE_V1_0 184
#define FERRUM_PLUGIN_API_SIZE_V1_1 192
#define FERRUM_PLUGIN_API_SIZE 192
/* The frozen prefix ends here (struct_size .. build_info). */
#define FERRUM_PLUGIN_API_FROZEN_PREFIX_SIZE 40

/* The entry symbol. The host passes its info (borrowed: valid until shutdown returns);
 * the plugin stores it, checks host->abi_major, and returns its static table.
 * Returns ABI_MISMATCH (and no table) if it cannot serve that host. Never throws,
 * never aborts, does no device work (that is probe/init). */
typedef ferrum_status (*ferrum_plugin_entry_fn)(const ferrum_host_info* host,
                                                const ferrum_plugin_api** api /* out */);

#define FERRUM_PLUGIN_ENTRY_SYMBOL "ferrum_plugin_entry_v1"

/* Plugins define it with:  FERRUM_PLUGIN_EXPORT ferrum_status ferrum_plugin_entry_v1(...) */
FERRUM_PLUGIN_EXPORT ferrum_status ferrum_plugin_entry_v1(const ferrum_host_info* host,
                                                          const ferrum_plugin_api** api);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FERRUM_PLUGIN_H */
