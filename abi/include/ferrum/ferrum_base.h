/*
 * ferrum — stable C ABI for LLM compute-backend plugins: base types.
 *
 * ===================================================================================
 *  VERSIONING AND COMPATIBILITY RULES (read before changing anything in abi/)
 * ===================================================================================
 *  FERRUM_ABI_VERSION_MAJOR changes only for a break. No break is planned, ever: a new
 *  major would get a new entry symbol (ferrum_plugin_entry_v2) so that old plugins are
 *  rejected with a clear diagnosis instead of misbehaving.
 *
 *  FERRUM_ABI_VERSION_MINOR grows for append-only additions:
 *    - new fields at the END of a struct (every struct that crosses the boundary starts
 *      with uint64_t struct_size),
 *    - new slots at the END of a table or sub-table,
 *    - new enum values (numbers are never reused or renumbered),
 *    - new ops (new args structs and new slots at the end of their family's table).
 *  Every minor adds one line to abi/CHANGELOG.md and a FERRUM_<NAME>_ARGS_SIZE_V1_<minor>
 *  constant for each struct it extends (FERRUM_<NAME>_ARGS_SIZE is this header's size);
 *  tests/abi static_asserts all of them. The registry (abi/registry/ops.txt) marks what a
 *  minor added with since=1.<minor>, and each appended field's default; abigen generates
 *  ferrum_<op>_args_<field>(args), which reads such a field from a struct of any caller and
 *  gives the default when the caller's struct_size ends before it.
 *
 *  Any 1.x plugin loads in any 1.y host:
 *    - the host reads only what the plugin's struct_size covers and treats the rest as
 *      absent (a missing slot == a NULL slot == "not implemented");
 *    - the plugin ignores host fields beyond what it knows;
 *    - a receiver of an args struct accepts any struct_size >= the 1.0 size (the size of
 *      the op's first minor, for an op added later) and gives missing trailing fields
 *      (added in later minors) their documented defaults; a smaller struct_size is
 *      FERRUM_STATUS_INVALID_ARGUMENT;
 *    - a caller never relies on a field or slot newer than the receiver's minor: the C++
 *      facade refuses (UNSUPPORTED) an op newer than the plugin's abi_minor and a newer
 *      field set to a non-default value, and passes the plugin's struct_size otherwise.
 *
 *  Rules for every type here: plain C99, only <stdint.h>/<stddef.h>; fixed-width
 *  integers only (enums are stored as int32_t, flags as uint32_t); no bool, bitfields,
 *  long or size_t in structs; every enum value explicit, 0 meaning invalid/unset (except
 *  FERRUM_STATUS_OK, which is 0 by design).
 *
 *  Ownership vocabulary used in comments:
 *    "returns ownership: release with X"  the caller must call X exactly once;
 *    "borrowed: valid while Y lives"      never free it;
 *    "may be NULL"                        NULL is a valid value;
 *    "// out"                             the callee writes this field or pointee.
 *  Nothing allocated by one side is ever freed by the other.
 * ===================================================================================
 */
#ifndef FERRUM_BASE_H
#define FERRUM_BASE_H

#include <stddef.h>
#include <stdint.h>

#define FERRUM_ABI_VERSION_MAJOR 1
#define FERRUM_ABI_VERSION_MINOR 2

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------
 * Export / visibility
 * ------------------------------------------------------------------------------- */
#if defined(_WIN32)
#define FERRUM_PLUGIN_EXPORT __declspec(dllexport)
#else
#define FERRUM_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* ---------------------------------------------------------------------------------
 * Status codes. Stable numbers; 0 is success. Detail text for a failed call is read
 * with ferrum_plugin_api.error_detail.
 * ------------------------------------------------------------------------------- */
typedef int32_t ferrum_status;
#define FERRUM_STATUS_OK 0
#define FERRUM_STATUS_UNSUPPORTED 1      /* valid arguments this plugin cannot serve */
#define FERRUM_STATUS_INVALID_ARGUMENT 2 /* the call is wrong (docs/spec.md §0.12) */
#define FERRUM_STATUS_OUT_OF_MEMORY 3    /* allocation / scratch growth failed */
#define FERRUM_STATUS_DEVICE_ERROR 4     /* the device failed; sticky per context */
#define FERRUM_STATUS_ABI_MISMATCH 5     /* host and plugin cannot talk (entry time) */
#define FERRUM_STATUS_INTERNAL 6         /* a plugin bug */
#define FERRUM_STATUS_NOT_REPLAYED 7     /* reserved; replay_graph reports via its out field */

/* ---------------------------------------------------------------------------------
 * Element types (docs/spec.md §0.2). Stored as int32_t in every struct.
 * ------------------------------------------------------------------------------- */
typedef int32_t ferrum_dtype;
#define FERRUM_DTYPE_INVALID 0
#define FERRUM_DTYPE_F32 1
#define FERRUM_DTYPE_F16 2
#define FERRUM_DTYPE_BF16 3
#define FERRUM_DTYPE_I32 4
#define FERRUM_DTYPE_U32 5
#define FERRUM_DTYPE_I8 6
#define FERRUM_DTYPE_U8 7
#define FERRUM_DTYPE_F8_E4M3 8

/* GGUF quant type ids (ggml's enum ggml_type values; docs/spec.md §11.1). */
#define FERRUM_QUANT_Q4_0 2
#define FERRUM_QUANT_Q4_1 3
#define FERRUM_QUANT_Q8_0 8
#define FERRUM_QUANT_Q4_K 12
#define FERRUM_QUANT_Q5_K 13
#define FERRUM_QUANT_Q6_K 14

/* load_quant's act_precision (since ABI 1.2; docs/spec.md §11.2): what gguf_matmul may do to the
 * activations it multiplies with the weight. Note: 0 is a valid value here by spec (exact). */
#define FERRUM_QUANT_ACT_EXACT 0 /* activations unquantised (the only behaviour before 1.2) */
#define FERRUM_QUANT_ACT_Q8 1    /* may round them to 8-bit codes per 32 columns (tolerance class A) */

/* all_reduce operations (docs/spec.md §10). */
#define FERRUM_REDUCE_SUM 1
#define FERRUM_REDUCE_MAX 2
#define FERRUM_REDUCE_MIN 3

/* qk_mode values (docs/spec.md §0.7). Note: 0 is a valid mode (copy) here by spec. */
#define FERRUM_QK_MODE_COPY 0
#define FERRUM_QK_MODE_NORM_NEOX 1
#define FERRUM_QK_MODE_NEOX 2
#define FERRUM_QK_MODE_GPTJ 3

/* Attributes of query_attribute (since ABI 1.1): each answers one capability question through
 * one slot; the 1.0 supports_* slots keep answering the same questions. A value unknown to the
 * plugin (a later minor's attribute) answers FERRUM_STATUS_UNSUPPORTED; 0 is invalid. */
#define FERRUM_ATTRIBUTE_DEVICE_ORDINAL_SCOPE 1        /* supports_device_ordinal_scope */
#define FERRUM_ATTRIBUTE_LLAMA_FAMILY_BATCHED_DECODE 2 /* supports_llama_family_batched_decode */
#define FERRUM_ATTRIBUTE_PAGED_KV 3                    /* supports_paged_kv */
#define FERRUM_ATTRIBUTE_VARLEN_QKV 4                  /* supports_varlen_qkv */
#define FERRUM_ATTRIBUTE_VLLM_PAGED_ATTN 5             /* supports_vllm_paged_attn */
#define FERRUM_ATTRIBUTE_COUNT_V1_1 5

/* Limits fixed by the spec. */
#define FERRUM_MAX_LAYERS_FOR_GRAPH 64
#define FERRUM_COMM_UNIQUE_ID_BYTES 128

/* ---------------------------------------------------------------------------------
 * Opaque handles. All are created and destroyed by the plugin that made them.
 * ------------------------------------------------------------------------------- */
typedef struct ferrum_context ferrum_context; /* one stream on one device */
typedef struct ferrum_buffer ferrum_buffer;   /* device memory with dtype + count */
typedef struct ferrum_timer ferrum_timer;     /* two marks on a context's stream */
typedef struct ferrum_qweight ferrum_qweight; /* opaque quantised weight (§11, §12) */
/* since ABI 1.1 */
typedef struct ferrum_event ferrum_event;     /* a point in one context's queue (event_*) */
/* since ABI 1.1: called once by the plugin when a buffer made by wrap_external is released
 * (buffer_release), with the user data given to wrap_external; never from inside another op. */
typedef void (*ferrum_release_fn)(void* user_data);

/* ---------------------------------------------------------------------------------
 * Logging: the host owns all output. Plugins never print; they call host->log.
 * ------------------------------------------------------------------------------- */
#define FERRUM_LOG_TRACE 1
#define FERRUM_LOG_DEBUG 2
#define FERRUM_LOG_INFO 3
#define FERRUM_LOG_WARN 4
#define FERRUM_LOG_ERROR 5

/* Called by the plugin from any thread; must be thread-safe on the host side.
 * `message` is borrowed for the duration of the call. */
typedef void (*ferrum_log_fn)(void* user_data, int32_t level, const char* message);

/* Error reporting for calls without a context (since ABI 1.1). The plugin calls it on the
 * thread of a failing call that has no context to keep the detail in (probe, init,
 * device_count, device_props, every [no ctx] op such as new_context or buffer_release, and
 * an op given a NULL or foreign ctx), once, just before that call returns `status` (!= OK).
 * The host keeps `message` (borrowed for the duration of the call, NUL-terminated) per
 * thread, so the plugin needs no thread-local storage of its own. Thread-safe on the host
 * side; never called for a failure whose detail the plugin keeps on a context. */
typedef void (*ferrum_report_error_fn)(void* user_data, ferrum_status status,
                                       const char* message);

/* Passed by the host to the entry symbol. Borrowed by the plugin: the host keeps it
 * alive (and unchanged) until the plugin's shutdown returns. A plugin reads a field only
 * when struct_size covers it (a 1.0 host's struct ends at FERRUM_HOST_INFO_SIZE_V1_0). */
typedef struct ferrum_host_info {
  uint64_t struct_size;      /* sizeof(ferrum_host_info) as the host knows it */
  uint32_t abi_major;        /* FERRUM_ABI_VERSION_MAJOR of the host */
  uint32_t abi_minor;        /* FERRUM_ABI_VERSION_MINOR of the host */
  ferrum_log_fn log;         /* may be NULL: then the plugin logs nothing */
  void* log_user_data;       /* passed back to log; may be NULL */
  int32_t log_min_level;     /* FERRUM_LOG_*: messages below it need not be sent */
  uint32_t reserved0;        /* 0 */
  /* ---- since ABI 1.1 (present when struct_size >= FERRUM_HOST_INFO_SIZE_V1_1) ---- */
  ferrum_report_error_fn report_error; /* may be NULL: the plugin then keeps the detail of a
                                        * call without a context itself, for error_detail(NULL) */
  void* report_error_user_data;        /* passed back to report_error; may be NULL */
} ferrum_host_info;
#define FERRUM_HOST_INFO_SIZE_V1_0 40
#define FERRUM_HOST_INFO_SIZE_V1_1 56
#define FERRUM_HOST_INFO_SIZE 56

/* ---------------------------------------------------------------------------------
 * Device properties (capability level c). The caller sets struct_size; the plugin
 * writes only the fields that struct_size covers.
 * ------------------------------------------------------------------------------- */
#define FERRUM_DEVICE_KIND_CPU 1
#define FERRUM_DEVICE_KIND_GPU 2

typedef struct ferrum_device_props {
  uint64_t struct_size;
  char name[128];               /* out: NUL-terminated, e.g. "NVIDIA H100 80GB HBM3" */
  int32_t kind;                 /* out: FERRUM_DEVICE_KIND_* */
  int32_t compute_major;        /* out: CUDA compute capability; 0 on CPU */
  int32_t compute_minor;        /* out */
  uint32_t dtype_mask;          /* out: bit (1u << FERRUM_DTYPE_X) per supported dtype */
  uint64_t total_memory_bytes;  /* out */
  uint64_t multiprocessors;     /* out: SMs on CUDA, hardware threads used on CPU */
} ferrum_device_props;
#define FERRUM_DEVICE_PROPS_SIZE_V1_0 168

/* ---------------------------------------------------------------------------------
 * A quantised KV layer (docs/spec.md §7.3): the seed's KvCacheQuant, an output struct of
 * alloc_paged_int8_layer / alloc_paged_fp8_layer. The caller sets struct_size; every
 * handle it receives is an ordinary buffer: returns ownership, release with
 * memory->buffer_release.
 * ------------------------------------------------------------------------------- */
typedef struct ferrum_kv_cache_quant {
  uint64_t struct_size;
  ferrum_buffer* k;            /* out: I8 or F8_E4M3 [N, block_size, num_kv_heads, head_dim] */
  ferrum_buffer* v;            /* out: same as k */
  ferrum_buffer* k_scales;     /* out: F32 [N, block_size, num_kv_heads] */
  ferrum_buffer* v_scales;     /* out: F32 [N, block_size, num_kv_heads] */
  ferrum_buffer* block_table;  /* out: U32 [N], identity */
  ferrum_buffer* context_lens; /* out: U32 [1], 0 */
  uint64_t len;                /* out: 0 */
  uint64_t capacity;           /* out: N * block_size */
  uint64_t block_size;         /* out */
  uint64_t num_kv_heads;       /* out */
  uint64_t head_dim;           /* out */
} ferrum_kv_cache_quant;
#define FERRUM_KV_CACHE_QUANT_SIZE_V1_0 96

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FERRUM_BASE_H */
