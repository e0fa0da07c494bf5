/* ferrum host C API — load a backend plugin and run its ops from C (C99) or any language with a
 * C FFI (the Rust crate in bindings/rust is built on it).
 *
 * This API is a thin layer over the C++ facade in libferrum (ferrum::Backend, ferrum::Context,
 * ferrum::Buffer): the same loader (backend precedence, candidate diagnostics, trust boundary),
 * the same generated argument checks and facade defaults, the same errors. Nothing is checked
 * twice or differently: a call that the C++ facade refuses is refused here with the same status
 * and the same message, prefixed with the name of the C function.
 *
 * Errors: every function that can fail returns a ferrum_status (FERRUM_STATUS_OK == 0, the
 * FERRUM_STATUS_* codes of ferrum_base.h, plus FERRUM_HOST_STATUS_LOAD_FAILED and
 * FERRUM_HOST_STATUS_CONFIG_ERROR below). A failure also stores its status and message as the
 * calling THREAD's last error (ferrum_host_last_error_status / _message); a successful call
 * leaves it unchanged. So the error of a call is read on the thread that made it, and threads
 * never see each other's errors. No C++ exception ever crosses this API.
 *
 * Structs the caller passes to be filled (ferrum_host_backend_info, ferrum_host_candidate) start
 * with struct_size = sizeof the struct as the caller knows it; a later version of this API may
 * append fields and then fills only what struct_size covers. A size below this version's is
 * refused (INVALID_ARGUMENT).
 *
 * Ownership: every ferrum_host_* object made by a *_create / *_load / *_alloc / *_adopt /
 * ferrum_host_discover function is freed by its *_destroy function (NULL is ignored). Objects
 * are independent: a context or buffer keeps its plugin loaded on its own, so they may be
 * destroyed in any order. A buffer must be used with a context of the same plugin.
 *
 * Thread contract (that of the facade): a backend may be shared between threads (creating
 * contexts from several threads is fine); a context and the buffers used on it are used by one
 * thread at a time. Ops run asynchronously until ferrum_host_sync or a readback.
 */
#ifndef FERRUM_HOST_H
#define FERRUM_HOST_H

#include <stddef.h>
#include <stdint.h>

#include <ferrum/ferrum_plugin.h>

#if defined(_WIN32)
#if defined(FERRUM_BUILDING_LIBRARY)
#define FERRUM_HOST_API __declspec(dllexport)
#else
#define FERRUM_HOST_API __declspec(dllimport)
#endif
#else
#define FERRUM_HOST_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this host API (grows by appending functions; never changes one). */
#define FERRUM_HOST_API_VERSION 1

/* Statuses beyond ferrum_base.h's (the same numbers as ferrum::ErrorCode). */
#define FERRUM_HOST_STATUS_LOAD_FAILED 100  /* no plugin could be loaded as asked */
#define FERRUM_HOST_STATUS_CONFIG_ERROR 101 /* FERRUM_CONFIG / config file / env value malformed */

/* Device ordinal "the default" for ferrum_host_context_create (the spec's ":N", else 0). */
#define FERRUM_HOST_DEFAULT_DEVICE UINT64_MAX

typedef struct ferrum_host_backend ferrum_host_backend;
typedef struct ferrum_host_context ferrum_host_context;
typedef struct ferrum_host_buffer ferrum_host_buffer;
typedef struct ferrum_host_candidates ferrum_host_candidates;

/* ---- errors ----------------------------------------------------------------------------- */

/* The status of this thread's last failed call (FERRUM_STATUS_OK if none yet). */
FERRUM_HOST_API ferrum_status ferrum_host_last_error_status(void);
/* The message of this thread's last failed call ("" if none yet). Valid until the next failing
 * call on this thread. It names the C function, and for op calls the op, the plugin, the
 * argument, what was expected and what was given. */
FERRUM_HOST_API const char* ferrum_host_last_error_message(void);
/* "ok", "unsupported", "invalid_argument", ..., "load_failed", "config_error" (static). */
FERRUM_HOST_API const char* ferrum_host_status_name(ferrum_status status);

/* ---- ops of this library's registry ------------------------------------------------------ */

/* Number of ops this libferrum knows (ids 1 .. count). */
FERRUM_HOST_API int32_t ferrum_host_op_count(void);
/* The op's name ("gemm"), or NULL for an unknown id (static storage). */
FERRUM_HOST_API const char* ferrum_host_op_name(int32_t op_id);

/* ---- backend ------------------------------------------------------------------------------ */

/* Loads a backend: spec NULL or "" = the precedence FERRUM_BACKEND > config file > auto;
 * "auto"; a name ("cpu", "cuda:1"); or a path to a plugin .so. On failure (status
 * FERRUM_HOST_STATUS_LOAD_FAILED / _CONFIG_ERROR) the message lists every candidate and why
 * it was not chosen. *out is set to NULL on failure. */
FERRUM_HOST_API ferrum_status ferrum_host_backend_load(const char* spec, ferrum_host_backend** out);
FERRUM_HOST_API void ferrum_host_backend_destroy(ferrum_host_backend* backend);

/* What a loaded backend is. Strings are owned by the backend (valid while it lives). */
typedef struct ferrum_host_backend_info {
  uint64_t struct_size;        /* in: sizeof(ferrum_host_backend_info) */
  const char* name;            /* "cpu" */
  const char* version;         /* the plugin's version */
  const char* abi_version;     /* "1.1" */
  const char* build_info;
  const char* path;            /* real path of the .so */
  uint64_t device_count;
  uint64_t selected_device;    /* ":N" of the spec, else 0 */
} ferrum_host_backend_info;
FERRUM_HOST_API ferrum_status ferrum_host_backend_get_info(const ferrum_host_backend* backend,
                                                           ferrum_host_backend_info* info);
/* *supported = 1 when the plugin has a slot for op_id or the facade composes it, else 0. */
FERRUM_HOST_API ferrum_status ferrum_host_backend_supports(const ferrum_host_backend* backend,
                                                           int32_t op_id, int32_t* supported);
/* The plugin's table (borrowed: valid while the backend or an object made from it lives). */
FERRUM_HOST_API const ferrum_plugin_api* ferrum_host_backend_api(const ferrum_host_backend* backend);

/* ---- plugin candidates (what the loader finds in the search path) ---------------------- */

/* Every libferrum-*.so in the plugin search path, each taken as far as it goes: up to stage
 * "probed" (initialize == 0) or "initialized" (initialize != 0). */
FERRUM_HOST_API ferrum_status ferrum_host_discover(int32_t initialize, ferrum_host_candidates** out);
FERRUM_HOST_API void ferrum_host_candidates_destroy(ferrum_host_candidates* list);
FERRUM_HOST_API uint64_t ferrum_host_candidates_count(const ferrum_host_candidates* list);

typedef struct ferrum_host_candidate {
  uint64_t struct_size;  /* in: sizeof(ferrum_host_candidate) */
  const char* name;      /* plugin name (from its table, else from the file name) */
  const char* path;
  const char* stage;     /* the last stage passed: "found", "trusted", "elf", "opened", "entry",
                            "prefix", "abi", "probed", "initialized" */
  const char* reason;    /* why it stopped ("" when usable) */
  const char* version;
  int32_t usable;        /* 1: initialised and ready */
  int32_t score;         /* probe score */
  uint32_t abi_major, abi_minor;
  uint64_t device_count;
} ferrum_host_candidate;
/* Strings are owned by `list` (valid while it lives). */
FERRUM_HOST_API ferrum_status ferrum_host_candidates_get(const ferrum_host_candidates* list,
                                                         uint64_t index, ferrum_host_candidate* out);

/* ---- context ------------------------------------------------------------------------------ */

/* A new context on `device` (FERRUM_HOST_DEFAULT_DEVICE: the backend's selected device) with
 * default activation dtype `activation_dtype` (FERRUM_DTYPE_INVALID: the plugin's). */
FERRUM_HOST_API ferrum_status ferrum_host_context_create(const ferrum_host_backend* backend,
                                                         uint64_t device, int32_t activation_dtype,
                                                         ferrum_host_context** out);
/* Waits for the context's work, then frees it. */
FERRUM_HOST_API void ferrum_host_context_destroy(ferrum_host_context* ctx);
/* The context's activation dtype (FERRUM_DTYPE_*; FERRUM_DTYPE_INVALID for NULL). */
FERRUM_HOST_API int32_t ferrum_host_context_activation_dtype(const ferrum_host_context* ctx);
/* Waits for every op enqueued on the context (the sync op). */
FERRUM_HOST_API ferrum_status ferrum_host_sync(ferrum_host_context* ctx);

/* THE generic op call: `args` points to the op's ferrum_<op>_args struct (ferrum_ops.h /
 * ferrum_args_*.h) with struct_size set; op_id is its FERRUM_OP_* id. Runs exactly what the
 * C++ facade's method for the op runs: the generated argument checks (struct_size, buffer
 * handles, dtypes, sizes, aliasing), the forward-compatibility gate, the plugin's slot or the
 * facade default for a NULL slot. Buffer fields take raw handles (ferrum_host_buffer_raw).
 * Handles an op returns through its args (alloc, make_timer, load_quant, ...) are the
 * caller's: wrap a buffer with ferrum_host_buffer_adopt, or free it with the op's release op
 * (FERRUM_OP_BUFFER_RELEASE, ...) through this call. FERRUM_OP_NEW_CONTEXT and
 * FERRUM_OP_CONTEXT_DESTROY are refused (use ferrum_host_context_create / _destroy).
 * A struct_size smaller than this header's (a caller built with older headers) is accepted
 * down to the op's ABI 1.0 size: the fields it lacks take their registry defaults. */
FERRUM_HOST_API ferrum_status ferrum_host_call(ferrum_host_context* ctx, int32_t op_id,
                                               const void* args);

/* Typed forms of ferrum_host_call, one per op of the registry (from FERRUM_OP_LIST, so new ops
 * come along): ferrum_host_call_<op>(ctx, const ferrum_<op>_args*), e.g.
 * ferrum_host_call_gemm(ctx, &gemm_args). The compiler then refuses another op's struct. */
#define FERRUM_HOST_TYPED_CALL_(id, name, family)                                              \
  static inline ferrum_status ferrum_host_call_##name(ferrum_host_context* ctx,                \
                                                      const ferrum_##name##_args* args) {       \
    return ferrum_host_call(ctx, id, args);                                                     \
  }
FERRUM_OP_LIST(FERRUM_HOST_TYPED_CALL_)
#undef FERRUM_HOST_TYPED_CALL_

/* Would ferrum_host_call(ctx, op_id, args) run (capability level (b))? *supported = 1 or 0;
 * when 0, the reason is copied into reason[0 .. reason_cap) (NUL-terminated, truncated; reason
 * may be NULL when reason_cap is 0). Returns non-OK only when the question itself fails. */
FERRUM_HOST_API ferrum_status ferrum_host_query_support(ferrum_host_context* ctx, int32_t op_id,
                                                        const void* args, int32_t* supported,
                                                        char* reason, size_t reason_cap);

/* ---- buffers ------------------------------------------------------------------------------ */

/* A new buffer of n elements of `dtype` (FERRUM_DTYPE_*), contents unspecified. */
FERRUM_HOST_API ferrum_status ferrum_host_buffer_alloc(ferrum_host_context* ctx, int32_t dtype,
                                                       uint64_t n, ferrum_host_buffer** out);
/* A new buffer holding n elements of `dtype` copied from host memory `data`. */
FERRUM_HOST_API ferrum_status ferrum_host_buffer_from_host(ferrum_host_context* ctx, int32_t dtype,
                                                           const void* data, uint64_t n,
                                                           ferrum_host_buffer** out);
/* Writes n elements of `dtype` from `data` into the buffer (from element 0). */
FERRUM_HOST_API ferrum_status ferrum_host_buffer_write(ferrum_host_context* ctx, ferrum_host_buffer* buf,
                                                       int32_t dtype, const void* data, uint64_t n);
/* Reads the first n elements into `data` (room for n elements of `dtype`), by the read_typed
 * op's rules for `dtype` against the buffer's dtype; waits for the context's work first. */
FERRUM_HOST_API ferrum_status ferrum_host_buffer_read(ferrum_host_context* ctx,
                                                      const ferrum_host_buffer* buf, int32_t dtype,
                                                      void* data, uint64_t n);
/* Takes ownership of a raw buffer handle a ferrum_host_call returned on ctx's plugin. On
 * failure the handle is released and *out is NULL. */
FERRUM_HOST_API ferrum_status ferrum_host_buffer_adopt(ferrum_host_context* ctx, ferrum_buffer* raw,
                                                       ferrum_host_buffer** out);
/* Frees the buffer (its plugin stays loaded until then). */
FERRUM_HOST_API void ferrum_host_buffer_destroy(ferrum_host_buffer* buf);
/* The raw handle, for the buffer fields of args structs (borrowed; NULL for NULL). */
FERRUM_HOST_API ferrum_buffer* ferrum_host_buffer_raw(const ferrum_host_buffer* buf);
/* The buffer's dtype (FERRUM_DTYPE_*) and element count, as the plugin described it. */
FERRUM_HOST_API ferrum_status ferrum_host_buffer_info(const ferrum_host_buffer* buf, int32_t* dtype,
                                                      uint64_t* count);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FERRUM_HOST_H */
