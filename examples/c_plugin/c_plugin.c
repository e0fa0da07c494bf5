/*
 * libferrum-cexample.so — a complete, minimal ferrum plugin in plain C99.
 *
 * It is written against the public headers in abi/ alone and shows everything a vendor
 * needs: the one exported entry symbol, the static API table with its frozen prefix, the
 * lifecycle (probe / init / shutdown / devices), error details, the per-call support
 * query, the memory family, the context family's core, and two dense ops
 * (add_inplace, scaled_add_inplace) for F32. Every other family is NULL (absent).
 *
 * "Device": host memory, one device. Every op runs synchronously, so `sync` is a no-op.
 *
 * Thread contract: calls on different contexts may run concurrently; buffers are plain
 * heap blocks. The error detail of a failed call is kept on its context; a call WITHOUT a
 * context (lifecycle calls, [no ctx] ops, an op given a NULL or foreign ctx) hands its
 * detail to the host's report_error (ABI 1.1 hosts), which keeps it per thread, so this
 * plugin needs no thread-local storage. Only with a host that takes no reports (ABI 1.0)
 * does it keep that detail itself — see "Error details" below for what that costs in C99.
 */
#include <ferrum/ferrum_plugin.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CEX_BUFFER_MAGIC 0x43455842u  /* "CEXB" */
#define CEX_CONTEXT_MAGIC 0x43455843u /* "CEXC" */
#define CEX_ERR_CAP 512

struct ferrum_buffer {
  uint32_t magic;
  int32_t dtype;
  uint64_t count;
  unsigned char* data; /* count * dtype size bytes; NULL when count == 0 */
};

struct ferrum_context {
  uint32_t magic;
  int32_t activation_dtype;
  uint64_t device_ordinal;
  char error[CEX_ERR_CAP]; /* last failure on this context */
};

static const ferrum_host_info* g_host = NULL;
static int g_initialized = 0;

/* ---------------------------------------------------------------------------------
 * Error details
 *
 * A failure on a valid context formats its detail into ctx->error (calls on one context are
 * externally synchronised by the host, so no lock is needed; error_detail(ctx) reads it).
 * A failure without one formats it into a buffer on the caller's stack and ends with
 * report_noctx(), which
 *   - with a host that offers report_error (ferrum_host_info of ABI 1.1 and a non-NULL
 *     report_error: the ferrum loader), reports it there, on the calling thread. The host
 *     keeps it per thread; nothing is stored here and error_detail(NULL) answers "".
 *   - with a host that does not (an ABI 1.0 host: its host info ends before report_error),
 *     copies it into g_noctx_error for error_detail(NULL). The ABI asks for that detail per
 *     thread, which needs thread-local storage: compiled as C11 g_noctx_error is
 *     _Thread_local and per thread; compiled as C99 (as this example is) it is ONE buffer
 *     for the whole process, so two threads failing context-less calls at once race on it
 *     and may read each other's detail. That fallback is the one place where this example
 *     falls short of the ABI, and only with a host that takes no reports.
 * ------------------------------------------------------------------------------- */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
static _Thread_local char g_noctx_error[CEX_ERR_CAP];
#else
static char g_noctx_error[CEX_ERR_CAP]; /* only with a 1.0 host: shared by all threads */
#endif

/* ---------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------- */
static void cex_log(int32_t level, const char* message) {
  if (g_host && g_host->log && level >= g_host->log_min_level)
    g_host->log(g_host->log_user_data, level, message);
}

/* Formats a detail message into `dst` (cap bytes) and returns `status`. */
static ferrum_status fail_into(char* dst, size_t cap, ferrum_status status, const char* fmt, ...) {
  va_list ap;
  if (dst && cap > 0) {
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
  }
  return status;
}

static int valid_context(const ferrum_context* ctx) {
  return ctx != NULL && ctx->magic == CEX_CONTEXT_MAGIC;
}

/* Does the host take reports of failures without a context (ABI 1.1 host info)? */
static int host_takes_reports(void) {
#ifdef FERRUM_HOST_INFO_SIZE_V1_1
  return g_host != NULL && g_host->struct_size >= FERRUM_HOST_INFO_SIZE_V1_1 &&
         g_host->report_error != NULL;
#else
  return 0; /* built against the 1.0 headers: no such field */
#endif
}

/* The end of a failed call without a context: `msg` (formatted on the caller's stack) goes to
 * the host's report_error, or, for a host without one, into g_noctx_error. Returns `status`. */
static ferrum_status report_noctx(ferrum_status status, const char* msg) {
  size_t n;
  if (status == FERRUM_STATUS_OK) return status;
  if (host_takes_reports()) {
#ifdef FERRUM_HOST_INFO_SIZE_V1_1
    g_host->report_error(g_host->report_error_user_data, status, msg);
#endif
    return status;
  }
  n = strlen(msg);
  if (n >= CEX_ERR_CAP) n = CEX_ERR_CAP - 1;
  memcpy(g_noctx_error, msg, n);
  g_noctx_error[n] = '\0';
  return status;
}

/* Where an op on a context formats its detail: the context when it is one of ours, else
 * `local` (CEX_ERR_CAP bytes on the caller's stack), which finish() then reports. */
static char* error_sink(ferrum_context* ctx, char* local) {
  local[0] = '\0';
  return valid_context(ctx) ? ctx->error : local;
}

/* The status of an op on a context: a failure without a valid context is reported. */
static ferrum_status finish(ferrum_context* ctx, ferrum_status status, const char* e) {
  return status != FERRUM_STATUS_OK && !valid_context(ctx) ? report_noctx(status, e) : status;
}

static int valid_buffer(const ferrum_buffer* buf) {
  return buf != NULL && buf->magic == CEX_BUFFER_MAGIC;
}

static size_t dtype_size(int32_t dtype) {
  switch (dtype) {
    case FERRUM_DTYPE_F32:
    case FERRUM_DTYPE_I32:
    case FERRUM_DTYPE_U32: return 4;
    case FERRUM_DTYPE_F16:
    case FERRUM_DTYPE_BF16: return 2;
    case FERRUM_DTYPE_I8:
    case FERRUM_DTYPE_U8:
    case FERRUM_DTYPE_F8_E4M3: return 1;
    default: return 0;
  }
}

static const char* dtype_name(int32_t dtype) {
  switch (dtype) {
    case FERRUM_DTYPE_F32: return "F32";
    case FERRUM_DTYPE_F16: return "F16";
    case FERRUM_DTYPE_BF16: return "BF16";
    case FERRUM_DTYPE_I32: return "I32";
    case FERRUM_DTYPE_U32: return "U32";
    case FERRUM_DTYPE_I8: return "I8";
    case FERRUM_DTYPE_U8: return "U8";
    case FERRUM_DTYPE_F8_E4M3: return "F8_E4M3";
    default: return "invalid";
  }
}

/* Allocates a zeroed buffer; NULL on out of memory. */
static ferrum_buffer* buffer_new(int32_t dtype, uint64_t count) {
  ferrum_buffer* buf = (ferrum_buffer*)calloc(1, sizeof *buf);
  if (!buf) return NULL;
  buf->magic = CEX_BUFFER_MAGIC;
  buf->dtype = dtype;
  buf->count = count;
  if (count > 0) {
    size_t bytes = (size_t)count * dtype_size(dtype);
    if (bytes / dtype_size(dtype) != count || !(buf->data = (unsigned char*)calloc(1, bytes))) {
      free(buf);
      return NULL;
    }
  }
  return buf;
}

/* Common prologue checks. They write the detail into `e` (CEX_ERR_CAP bytes). */
#define CHECK_ARGS(op, args, min_size)                                                        \
  do {                                                                                        \
    if (!(args))                                                                              \
      return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT, op ": args is NULL");  \
    if ((args)->struct_size < (min_size))                                                     \
      return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,                        \
                       op ": argument 'args->struct_size': expected >= %u, given %llu",                   \
                       (unsigned)(min_size), (unsigned long long)(args)->struct_size);        \
  } while (0)

#define CHECK_CTX(op, ctx)                                                                    \
  do {                                                                                        \
    if (!valid_context(ctx))                                                                  \
      return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,                        \
                       op ": argument 'ctx': expected a context of this plugin, given %s",                \
                       (ctx) ? "an unknown handle" : "NULL");                                 \
  } while (0)

#define CHECK_BUF(op, field, buf)                                                             \
  do {                                                                                        \
    if (!valid_buffer(buf))                                                                   \
      return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,                        \
                       op ": argument '" field "': expected a buffer of this plugin, given %s",           \
                       (buf) ? "an unknown handle" : "NULL");                                 \
  } while (0)

#define CHECK_OUT(op, field, ptr)                                                             \
  do {                                                                                        \
    if (!(ptr))                                                                               \
      return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,                        \
                       op ": argument '" field "': expected a host pointer, given NULL");                 \
  } while (0)

#define CHECK_LEN(op, field, len, have)                                                       \
  do {                                                                                        \
    if ((len) > (have))                                                                       \
      return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,                        \
                       op ": argument '" field "': expected <= %llu (buffer elements), given %llu",       \
                       (unsigned long long)(have), (unsigned long long)(len));                \
  } while (0)

#define CHECK_DTYPE_VALID(op, field, dtype)                                                   \
  do {                                                                                        \
    if (dtype_size(dtype) == 0)                                                               \
      return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,                        \
                       op ": argument '" field "': expected a dtype of 1..8, given %d", (int)(dtype));    \
  } while (0)

/* ---------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------- */
static ferrum_status cex_probe(int32_t* score, char* reason, uint64_t reason_cap) {
  if (!score)
    return report_noctx(FERRUM_STATUS_INVALID_ARGUMENT,
                        "probe: argument 'score': expected a host pointer, given NULL");
  *score = 1; /* usable everywhere, but `auto` prefers any real backend */
  if (reason && reason_cap > 0) reason[0] = '\0';
  return FERRUM_STATUS_OK;
}

static ferrum_status cex_init(void) {
  g_initialized = 1;
  cex_log(FERRUM_LOG_DEBUG, "C example plugin initialised");
  return FERRUM_STATUS_OK;
}

static void cex_shutdown(void) {
  if (g_initialized) cex_log(FERRUM_LOG_DEBUG, "C example plugin shut down");
  g_initialized = 0;
}

static ferrum_status cex_device_count(uint64_t* count) {
  if (!count)
    return report_noctx(FERRUM_STATUS_INVALID_ARGUMENT,
                        "device_count: argument 'count': expected a host pointer, given NULL");
  *count = 1;
  return FERRUM_STATUS_OK;
}

static ferrum_status check_device_props(uint64_t ordinal, const ferrum_device_props* props, char* e) {
  if (ordinal != 0)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "device_props: argument 'ordinal': expected 0 (1 device), given %llu",
                     (unsigned long long)ordinal);
  if (!props)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "device_props: argument 'props': expected a struct, given NULL");
  /* Every 1.x caller's struct is at least the 1.0 size: anything smaller is not a props struct. */
  if (props->struct_size < FERRUM_DEVICE_PROPS_SIZE_V1_0)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "device_props: argument 'props->struct_size': expected >= %d, given %llu",
                     FERRUM_DEVICE_PROPS_SIZE_V1_0, (unsigned long long)props->struct_size);
  return FERRUM_STATUS_OK;
}

static ferrum_status cex_device_props(uint64_t ordinal, ferrum_device_props* props) {
  char e[CEX_ERR_CAP];
  ferrum_device_props full;
  size_t n;
  ferrum_status st = check_device_props(ordinal, props, e);
  if (st != FERRUM_STATUS_OK) return report_noctx(st, e);
  memset(&full, 0, sizeof full);
  strncpy(full.name, "C example CPU device", sizeof full.name - 1);
  full.kind = FERRUM_DEVICE_KIND_CPU;
  full.dtype_mask = 1u << FERRUM_DTYPE_F32;
  full.total_memory_bytes = 0; /* unknown */
  full.multiprocessors = 1;
  /* Write only what the caller's struct_size covers, and never struct_size itself. */
  n = props->struct_size < sizeof full ? (size_t)props->struct_size : sizeof full;
  memcpy((char*)props + sizeof(uint64_t), (const char*)&full + sizeof(uint64_t),
         n - sizeof(uint64_t));
  return FERRUM_STATUS_OK;
}

static ferrum_status cex_error_detail(ferrum_context* ctx, char* buf, uint64_t buf_cap,
                                      uint64_t* needed) {
  const char* src;
  size_t len;
  if (ctx && !valid_context(ctx)) return FERRUM_STATUS_INVALID_ARGUMENT;
  if (!buf && buf_cap > 0) return FERRUM_STATUS_INVALID_ARGUMENT;
  src = ctx ? ctx->error : g_noctx_error; /* "" when the host takes reports */
  len = strlen(src);
  if (needed) *needed = (uint64_t)len + 1;
  if (buf && buf_cap > 0) {
    size_t n = len < buf_cap - 1 ? len : (size_t)(buf_cap - 1);
    memcpy(buf, src, n);
    buf[n] = '\0';
  }
  return FERRUM_STATUS_OK;
}

/* ---------------------------------------------------------------------------------
 * Memory family. Each op has a check_ function (validation only, detail into `e`) and
 * the op itself, so query_support gives the same answer as the op without running it.
 * ------------------------------------------------------------------------------- */
static ferrum_status check_alloc(ferrum_context* ctx, const ferrum_alloc_args* a, char* e) {
  CHECK_ARGS("alloc", a, FERRUM_ALLOC_ARGS_SIZE_V1_0);
  CHECK_CTX("alloc", ctx);
  CHECK_OUT("alloc", "buffer", a->buffer);
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_alloc(ferrum_context* ctx, const ferrum_alloc_args* a) {
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  ferrum_status st = check_alloc(ctx, a, e);
  if (st != FERRUM_STATUS_OK) return finish(ctx, st, e);
  if (!(*a->buffer = buffer_new(ctx->activation_dtype, a->len)))
    return fail_into(ctx->error, CEX_ERR_CAP, FERRUM_STATUS_OUT_OF_MEMORY,
                     "alloc: %llu elements could not be allocated", (unsigned long long)a->len);
  return FERRUM_STATUS_OK;
}

static ferrum_status check_alloc_typed(ferrum_context* ctx, const ferrum_alloc_typed_args* a, char* e) {
  CHECK_ARGS("alloc_typed", a, FERRUM_ALLOC_TYPED_ARGS_SIZE_V1_0);
  CHECK_CTX("alloc_typed", ctx);
  CHECK_DTYPE_VALID("alloc_typed", "dtype", a->dtype);
  CHECK_OUT("alloc_typed", "buffer", a->buffer);
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_alloc_typed(ferrum_context* ctx, const ferrum_alloc_typed_args* a) {
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  ferrum_status st = check_alloc_typed(ctx, a, e);
  if (st != FERRUM_STATUS_OK) return finish(ctx, st, e);
  if (!(*a->buffer = buffer_new(a->dtype, a->n)))
    return fail_into(ctx->error, CEX_ERR_CAP, FERRUM_STATUS_OUT_OF_MEMORY,
                     "alloc_typed: %llu elements could not be allocated", (unsigned long long)a->n);
  return FERRUM_STATUS_OK;
}

static ferrum_status check_from_slice(ferrum_context* ctx, const ferrum_from_slice_args* a, char* e) {
  CHECK_ARGS("from_slice", a, FERRUM_FROM_SLICE_ARGS_SIZE_V1_0);
  CHECK_CTX("from_slice", ctx);
  if (a->data_len > 0) CHECK_OUT("from_slice", "data", a->data);
  CHECK_OUT("from_slice", "buffer", a->buffer);
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_from_slice(ferrum_context* ctx, const ferrum_from_slice_args* a) {
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  ferrum_status st = check_from_slice(ctx, a, e);
  if (st != FERRUM_STATUS_OK) return finish(ctx, st, e);
  if (!(*a->buffer = buffer_new(FERRUM_DTYPE_F32, a->data_len)))
    return fail_into(ctx->error, CEX_ERR_CAP, FERRUM_STATUS_OUT_OF_MEMORY,
                     "from_slice: %llu elements could not be allocated",
                     (unsigned long long)a->data_len);
  if (a->data_len > 0) memcpy((*a->buffer)->data, a->data, (size_t)a->data_len * sizeof(float));
  return FERRUM_STATUS_OK;
}

static ferrum_status check_from_slice_typed(ferrum_context* ctx, const ferrum_from_slice_typed_args* a,
                                            char* e) {
  CHECK_ARGS("from_slice_typed", a, FERRUM_FROM_SLICE_TYPED_ARGS_SIZE_V1_0);
  CHECK_CTX("from_slice_typed", ctx);
  CHECK_DTYPE_VALID("from_slice_typed", "dtype", a->dtype);
  if (a->data_len > 0) CHECK_OUT("from_slice_typed", "data", a->data);
  CHECK_OUT("from_slice_typed", "buffer", a->buffer);
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_from_slice_typed(ferrum_context* ctx, const ferrum_from_slice_typed_args* a) {
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  ferrum_status st = check_from_slice_typed(ctx, a, e);
  if (st != FERRUM_STATUS_OK) return finish(ctx, st, e);
  if (!(*a->buffer = buffer_new(a->dtype, a->data_len)))
    return fail_into(ctx->error, CEX_ERR_CAP, FERRUM_STATUS_OUT_OF_MEMORY,
                     "from_slice_typed: %llu elements could not be allocated",
                     (unsigned long long)a->data_len);
  if (a->data_len > 0)
    memcpy((*a->buffer)->data, a->data, (size_t)a->data_len * dtype_size(a->dtype));
  return FERRUM_STATUS_OK;
}

static ferrum_status check_write_typed(ferrum_context* ctx, const ferrum_write_typed_args* a, char* e) {
  CHECK_ARGS("write_typed", a, FERRUM_WRITE_TYPED_ARGS_SIZE_V1_0);
  CHECK_CTX("write_typed", ctx);
  CHECK_BUF("write_typed", "dst", a->dst);
  if (a->dtype != a->dst->dtype)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "write_typed: argument 'dtype': expected %s (dst's dtype), given %s",
                     dtype_name(a->dst->dtype), dtype_name(a->dtype));
  CHECK_LEN("write_typed", "data_len", a->data_len, a->dst->count);
  if (a->data_len > 0) CHECK_OUT("write_typed", "data", a->data);
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_write_typed(ferrum_context* ctx, const ferrum_write_typed_args* a) {
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  ferrum_status st = check_write_typed(ctx, a, e);
  if (st != FERRUM_STATUS_OK) return finish(ctx, st, e);
  if (a->data_len > 0) memcpy(a->dst->data, a->data, (size_t)a->data_len * dtype_size(a->dtype));
  return FERRUM_STATUS_OK;
}

static ferrum_status check_read_typed(ferrum_context* ctx, const ferrum_read_typed_args* a, char* e) {
  CHECK_ARGS("read_typed", a, FERRUM_READ_TYPED_ARGS_SIZE_V1_0);
  CHECK_CTX("read_typed", ctx);
  CHECK_BUF("read_typed", "src", a->src);
  if (a->dtype != a->src->dtype)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "read_typed: argument 'dtype': expected %s (src's dtype), given %s",
                     dtype_name(a->src->dtype), dtype_name(a->dtype));
  CHECK_LEN("read_typed", "len", a->len, a->src->count);
  if (a->len > 0) CHECK_OUT("read_typed", "data", a->data);
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_read_typed(ferrum_context* ctx, const ferrum_read_typed_args* a) {
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  ferrum_status st = check_read_typed(ctx, a, e);
  if (st != FERRUM_STATUS_OK) return finish(ctx, st, e);
  if (a->len > 0) memcpy(a->data, a->src->data, (size_t)a->len * dtype_size(a->dtype));
  return FERRUM_STATUS_OK;
}

static ferrum_status check_to_vec(ferrum_context* ctx, const ferrum_to_vec_args* a, char* e) {
  CHECK_ARGS("to_vec", a, FERRUM_TO_VEC_ARGS_SIZE_V1_0);
  CHECK_CTX("to_vec", ctx);
  CHECK_BUF("to_vec", "buf", a->buf);
  CHECK_LEN("to_vec", "len", a->len, a->buf->count);
  if (a->len > 0) CHECK_OUT("to_vec", "out", a->out);
  if (a->buf->dtype != FERRUM_DTYPE_F32)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_UNSUPPORTED,
                     "to_vec: buf dtype %s is not supported by the C example (F32 only)",
                     dtype_name(a->buf->dtype));
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_to_vec(ferrum_context* ctx, const ferrum_to_vec_args* a) {
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  ferrum_status st = check_to_vec(ctx, a, e);
  if (st != FERRUM_STATUS_OK) return finish(ctx, st, e);
  if (a->len > 0) memcpy(a->out, a->buf->data, (size_t)a->len * sizeof(float));
  return FERRUM_STATUS_OK;
}

static ferrum_status check_zero_buffer(ferrum_context* ctx, const ferrum_zero_buffer_args* a, char* e) {
  CHECK_ARGS("zero_buffer", a, FERRUM_ZERO_BUFFER_ARGS_SIZE_V1_0);
  CHECK_CTX("zero_buffer", ctx);
  if (a->len == 0 && !a->buf) return FERRUM_STATUS_OK;
  CHECK_BUF("zero_buffer", "buf", a->buf);
  CHECK_LEN("zero_buffer", "len", a->len, a->buf->count);
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_zero_buffer(ferrum_context* ctx, const ferrum_zero_buffer_args* a) {
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  ferrum_status st = check_zero_buffer(ctx, a, e);
  if (st != FERRUM_STATUS_OK) return finish(ctx, st, e);
  if (a->len > 0) memset(a->buf->data, 0, (size_t)a->len * dtype_size(a->buf->dtype));
  return FERRUM_STATUS_OK;
}

static int is_float_dtype(int32_t d) {
  return d == FERRUM_DTYPE_F32 || d == FERRUM_DTYPE_F16 || d == FERRUM_DTYPE_BF16;
}

static ferrum_status check_copy_slice(ferrum_context* ctx, const ferrum_copy_slice_args* a, char* e) {
  CHECK_ARGS("copy_slice", a, FERRUM_COPY_SLICE_ARGS_SIZE_V1_0);
  CHECK_CTX("copy_slice", ctx);
  if (a->len == 0 && (!a->src || !a->dst)) return FERRUM_STATUS_OK;
  CHECK_BUF("copy_slice", "src", a->src);
  CHECK_BUF("copy_slice", "dst", a->dst);
  if (a->src->dtype != a->dst->dtype) {
    if (is_float_dtype(a->src->dtype) && is_float_dtype(a->dst->dtype))
      return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_UNSUPPORTED,
                       "copy_slice: converting %s to %s is not supported by the C example "
                       "(equal dtypes only)", dtype_name(a->src->dtype), dtype_name(a->dst->dtype));
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "copy_slice: argument 'dst': expected dtype %s (src's dtype) or another float dtype, "
                     "given %s", dtype_name(a->src->dtype), dtype_name(a->dst->dtype));
  }
  if (a->src_offset > a->src->count || a->len > a->src->count - a->src_offset)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "copy_slice: arguments 'src_offset'/'len': expected src_offset + len <= %llu (src elements), given %llu + %llu",
                     (unsigned long long)a->src->count, (unsigned long long)a->src_offset,
                     (unsigned long long)a->len);
  if (a->dst_offset > a->dst->count || a->len > a->dst->count - a->dst_offset)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "copy_slice: arguments 'dst_offset'/'len': expected dst_offset + len <= %llu (dst elements), given %llu + %llu",
                     (unsigned long long)a->dst->count, (unsigned long long)a->dst_offset,
                     (unsigned long long)a->len);
  if (a->src == a->dst && a->len > 0 && a->src_offset < a->dst_offset + a->len &&
      a->dst_offset < a->src_offset + a->len)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "copy_slice: arguments 'src'/'dst': expected non-overlapping ranges, given the same buffer with overlapping ranges");
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_copy_slice(ferrum_context* ctx, const ferrum_copy_slice_args* a) {
  size_t es;
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  ferrum_status st = check_copy_slice(ctx, a, e);
  if (st != FERRUM_STATUS_OK) return finish(ctx, st, e);
  if (a->len == 0) return FERRUM_STATUS_OK;
  es = dtype_size(a->src->dtype);
  memcpy(a->dst->data + a->dst_offset * es, a->src->data + a->src_offset * es, (size_t)a->len * es);
  return FERRUM_STATUS_OK;
}

static ferrum_status check_buffer_info(const ferrum_buffer_info_args* a, char* e) {
  CHECK_ARGS("buffer_info", a, FERRUM_BUFFER_INFO_ARGS_SIZE_V1_0);
  CHECK_BUF("buffer_info", "buf", a->buf);
  CHECK_OUT("buffer_info", "dtype", a->dtype);
  CHECK_OUT("buffer_info", "count", a->count);
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_buffer_info(ferrum_context* ctx, const ferrum_buffer_info_args* a) {
  char e[CEX_ERR_CAP];
  ferrum_status st = check_buffer_info(a, e);
  (void)ctx; /* [no ctx] */
  if (st != FERRUM_STATUS_OK) return report_noctx(st, e);
  *a->dtype = a->buf->dtype;
  *a->count = a->buf->count;
  return FERRUM_STATUS_OK;
}

static ferrum_status check_buffer_release(const ferrum_buffer_release_args* a, char* e) {
  CHECK_ARGS("buffer_release", a, FERRUM_BUFFER_RELEASE_ARGS_SIZE_V1_0);
  if (!a->buf) return FERRUM_STATUS_OK; /* NULL-safe */
  CHECK_BUF("buffer_release", "buf", a->buf);
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_buffer_release(ferrum_context* ctx, const ferrum_buffer_release_args* a) {
  char e[CEX_ERR_CAP];
  ferrum_status st = check_buffer_release(a, e);
  (void)ctx; /* [no ctx] */
  if (st != FERRUM_STATUS_OK) return report_noctx(st, e);
  if (!a->buf) return FERRUM_STATUS_OK;
  a->buf->magic = 0;
  free(a->buf->data);
  free(a->buf);
  return FERRUM_STATUS_OK;
}

/* ---------------------------------------------------------------------------------
 * Context family
 * ------------------------------------------------------------------------------- */
static ferrum_status check_new_context(const ferrum_new_context_args* a, char* e) {
  CHECK_ARGS("new_context", a, FERRUM_NEW_CONTEXT_ARGS_SIZE_V1_0);
  CHECK_OUT("new_context", "context", a->context);
  if (a->device_ordinal != 0)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "new_context: argument 'device_ordinal': expected 0 (1 device), given %llu",
                     (unsigned long long)a->device_ordinal);
  if (a->activation_dtype != 0 && a->activation_dtype != FERRUM_DTYPE_F32) {
    if (is_float_dtype(a->activation_dtype))
      return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_UNSUPPORTED,
                       "new_context: activation_dtype %s is not supported by the C example (F32 only)",
                       dtype_name(a->activation_dtype));
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "new_context: argument 'activation_dtype': expected 0, F32, F16 or BF16, given %d",
                     (int)a->activation_dtype);
  }
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_new_context(ferrum_context* unused, const ferrum_new_context_args* a) {
  char e[CEX_ERR_CAP];
  ferrum_context* ctx;
  ferrum_status st = check_new_context(a, e);
  (void)unused; /* [no ctx] */
  if (st != FERRUM_STATUS_OK) return report_noctx(st, e);
  ctx = (ferrum_context*)calloc(1, sizeof *ctx);
  if (!ctx) return report_noctx(FERRUM_STATUS_OUT_OF_MEMORY, "new_context: out of host memory");
  ctx->magic = CEX_CONTEXT_MAGIC;
  ctx->activation_dtype = FERRUM_DTYPE_F32;
  ctx->device_ordinal = 0;
  *a->context = ctx;
  return FERRUM_STATUS_OK;
}

static ferrum_status check_context_destroy(const ferrum_context_destroy_args* a, char* e) {
  CHECK_ARGS("context_destroy", a, FERRUM_CONTEXT_DESTROY_ARGS_SIZE_V1_0);
  if (!a->context) return FERRUM_STATUS_OK; /* NULL-safe */
  if (!valid_context(a->context))
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "context_destroy: argument 'context': expected a context of this plugin, given an unknown handle");
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_context_destroy(ferrum_context* unused, const ferrum_context_destroy_args* a) {
  char e[CEX_ERR_CAP];
  ferrum_status st = check_context_destroy(a, e);
  (void)unused; /* [no ctx] */
  if (st != FERRUM_STATUS_OK) return report_noctx(st, e);
  if (!a->context) return FERRUM_STATUS_OK;
  a->context->magic = 0;
  free(a->context);
  return FERRUM_STATUS_OK;
}

static ferrum_status check_context_info(ferrum_context* ctx, const ferrum_context_info_args* a, char* e) {
  CHECK_ARGS("context_info", a, FERRUM_CONTEXT_INFO_ARGS_SIZE_V1_0);
  CHECK_CTX("context_info", ctx);
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_context_info(ferrum_context* ctx, const ferrum_context_info_args* a) {
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  ferrum_status st = check_context_info(ctx, a, e);
  if (st != FERRUM_STATUS_OK) return finish(ctx, st, e);
  /* Each out pointer may be NULL: that value is then not reported. */
  if (a->device_ordinal) *a->device_ordinal = ctx->device_ordinal;
  if (a->activation_dtype) *a->activation_dtype = ctx->activation_dtype;
  if (a->batched_slots) *a->batched_slots = 128;
  if (a->batched_items) *a->batched_items = 64;
  return FERRUM_STATUS_OK;
}

static ferrum_status check_sync(ferrum_context* ctx, const ferrum_sync_args* a, char* e) {
  CHECK_ARGS("sync", a, FERRUM_SYNC_ARGS_SIZE_V1_0);
  CHECK_CTX("sync", ctx);
  return FERRUM_STATUS_OK;
}
static ferrum_status cex_sync(ferrum_context* ctx, const ferrum_sync_args* a) {
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  return finish(ctx, check_sync(ctx, a, e), e); /* every op already ran synchronously */
}

/* ---------------------------------------------------------------------------------
 * Dense ops (F32 only)
 * ------------------------------------------------------------------------------- */
static ferrum_status check_binary(const char* op, ferrum_context* ctx, const ferrum_buffer* dst,
                                  const char* dst_name, const ferrum_buffer* src,
                                  const char* src_name, uint64_t len, char* e) {
  if (!valid_context(ctx))
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "%s: argument 'ctx': expected a context of this plugin, given %s", op,
                     ctx ? "an unknown handle" : "NULL");
  if (len == 0) {
    /* Zero work: validate dtypes of non-NULL handles only. */
    if (dst && valid_buffer(dst) && dst->dtype != FERRUM_DTYPE_F32 && !is_float_dtype(dst->dtype))
      return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                       "%s: argument '%s': expected an act dtype (F32, F16, BF16), given %s", op, dst_name,
                       dtype_name(dst->dtype));
    return FERRUM_STATUS_OK;
  }
  if (!valid_buffer(dst))
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "%s: argument '%s': expected a buffer of this plugin, given %s", op, dst_name,
                     dst ? "an unknown handle" : "NULL");
  if (!valid_buffer(src))
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "%s: argument '%s': expected a buffer of this plugin, given %s", op, src_name,
                     src ? "an unknown handle" : "NULL");
  if (!is_float_dtype(dst->dtype))
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "%s: argument '%s': expected an act dtype (F32, F16, BF16), given %s", op, dst_name,
                     dtype_name(dst->dtype));
  if (src->dtype != dst->dtype)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "%s: argument '%s': expected dtype %s (the dtype of %s), given %s", op, src_name,
                     dtype_name(dst->dtype), dst_name, dtype_name(src->dtype));
  if (len > dst->count)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "%s: argument '%s': expected >= %llu elements (len), given %llu", op, dst_name,
                     (unsigned long long)len, (unsigned long long)dst->count);
  if (len > src->count)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "%s: argument '%s': expected >= %llu elements (len), given %llu", op, src_name,
                     (unsigned long long)len, (unsigned long long)src->count);
  if (dst->dtype != FERRUM_DTYPE_F32)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_UNSUPPORTED,
                     "%s: dtype %s is not supported by the C example (F32 only)", op,
                     dtype_name(dst->dtype));
  return FERRUM_STATUS_OK;
}

static ferrum_status check_add_inplace(ferrum_context* ctx, const ferrum_add_inplace_args* a, char* e) {
  CHECK_ARGS("add_inplace", a, FERRUM_ADD_INPLACE_ARGS_SIZE_V1_0);
  return check_binary("add_inplace", ctx, a->residual, "residual", a->x, "x", a->len, e);
}
static ferrum_status cex_add_inplace(ferrum_context* ctx, const ferrum_add_inplace_args* a) {
  uint64_t i;
  float* r;
  const float* x;
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  ferrum_status st = check_add_inplace(ctx, a, e);
  if (st != FERRUM_STATUS_OK) return finish(ctx, st, e);
  if (a->len == 0) return FERRUM_STATUS_OK;
  r = (float*)(void*)a->residual->data;
  x = (const float*)(const void*)a->x->data; /* may be the same handle as residual */
  for (i = 0; i < a->len; ++i) r[i] = r[i] + x[i];
  return FERRUM_STATUS_OK;
}

static ferrum_status check_scaled_add_inplace(ferrum_context* ctx,
                                              const ferrum_scaled_add_inplace_args* a, char* e) {
  ferrum_status st;
  CHECK_ARGS("scaled_add_inplace", a, FERRUM_SCALED_ADD_INPLACE_ARGS_SIZE_V1_0);
  if (!(a->scale - a->scale == 0.0f)) /* NaN or inf, without C99 isfinite on float */
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "scaled_add_inplace: argument 'scale': expected a finite value, given %g", (double)a->scale);
  st = check_binary("scaled_add_inplace", ctx, a->dst, "dst", a->src, "src", a->len, e);
  if (st == FERRUM_STATUS_OK && a->len > 0 && a->dst == a->src)
    return fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                     "scaled_add_inplace: arguments 'dst'/'src': expected different buffers, given the same handle");
  return st;
}
static ferrum_status cex_scaled_add_inplace(ferrum_context* ctx, const ferrum_scaled_add_inplace_args* a) {
  uint64_t i;
  float* d;
  const float* s;
  char local[CEX_ERR_CAP];
  char* e = error_sink(ctx, local);
  ferrum_status st = check_scaled_add_inplace(ctx, a, e);
  if (st != FERRUM_STATUS_OK) return finish(ctx, st, e);
  if (a->len == 0) return FERRUM_STATUS_OK;
  d = (float*)(void*)a->dst->data;
  s = (const float*)(const void*)a->src->data;
  for (i = 0; i < a->len; ++i) d[i] = d[i] + a->scale * s[i];
  return FERRUM_STATUS_OK;
}

/* ---------------------------------------------------------------------------------
 * Capability level b: the per-call support query. It runs each op's check_ function
 * into the caller's reason buffer, so its answer equals the op's.
 * ------------------------------------------------------------------------------- */
static ferrum_status cex_query_support(ferrum_context* ctx, int32_t op, const void* args,
                                       char* reason, uint64_t reason_cap) {
  char e[CEX_ERR_CAP];
  ferrum_status st;
  e[0] = '\0';
  switch (op) {
    case FERRUM_OP_ALLOC: st = check_alloc(ctx, (const ferrum_alloc_args*)args, e); break;
    case FERRUM_OP_ALLOC_TYPED: st = check_alloc_typed(ctx, (const ferrum_alloc_typed_args*)args, e); break;
    case FERRUM_OP_FROM_SLICE: st = check_from_slice(ctx, (const ferrum_from_slice_args*)args, e); break;
    case FERRUM_OP_FROM_SLICE_TYPED:
      st = check_from_slice_typed(ctx, (const ferrum_from_slice_typed_args*)args, e);
      break;
    case FERRUM_OP_WRITE_TYPED: st = check_write_typed(ctx, (const ferrum_write_typed_args*)args, e); break;
    case FERRUM_OP_READ_TYPED: st = check_read_typed(ctx, (const ferrum_read_typed_args*)args, e); break;
    case FERRUM_OP_TO_VEC: st = check_to_vec(ctx, (const ferrum_to_vec_args*)args, e); break;
    case FERRUM_OP_ZERO_BUFFER: st = check_zero_buffer(ctx, (const ferrum_zero_buffer_args*)args, e); break;
    case FERRUM_OP_COPY_SLICE: st = check_copy_slice(ctx, (const ferrum_copy_slice_args*)args, e); break;
    case FERRUM_OP_BUFFER_INFO: st = check_buffer_info((const ferrum_buffer_info_args*)args, e); break;
    case FERRUM_OP_NEW_CONTEXT: st = check_new_context((const ferrum_new_context_args*)args, e); break;
    case FERRUM_OP_CONTEXT_INFO: st = check_context_info(ctx, (const ferrum_context_info_args*)args, e); break;
    case FERRUM_OP_BUFFER_RELEASE:
    case FERRUM_OP_CONTEXT_DESTROY:
    case FERRUM_OP_SYNC: st = FERRUM_STATUS_OK; break;
    case FERRUM_OP_ADD_INPLACE: st = check_add_inplace(ctx, (const ferrum_add_inplace_args*)args, e); break;
    case FERRUM_OP_SCALED_ADD_INPLACE:
      st = check_scaled_add_inplace(ctx, (const ferrum_scaled_add_inplace_args*)args, e);
      break;
    default:
      if (op < 1 || op > FERRUM_OP_COUNT_V1_0)
        st = fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_INVALID_ARGUMENT,
                       "query_support: argument 'op': expected 1..%d, given %d", FERRUM_OP_COUNT_V1_0, (int)op);
      else
        st = fail_into(e, CEX_ERR_CAP, FERRUM_STATUS_UNSUPPORTED,
                       "op %d is not implemented by the C example plugin", (int)op);
  }
  if (reason && reason_cap > 0) {
    size_t n = strlen(e);
    if (n >= reason_cap) n = (size_t)(reason_cap - 1);
    memcpy(reason, e, n);
    reason[n] = '\0';
  }
  return st;
}

/* ---------------------------------------------------------------------------------
 * Tables and the entry symbol
 * ------------------------------------------------------------------------------- */
static const ferrum_memory_table k_memory = {
    sizeof(ferrum_memory_table),
    cex_alloc,
    cex_alloc_typed,
    cex_from_slice,
    cex_from_slice_typed,
    NULL, /* from_weight_bytes: the facade composes it */
    cex_write_typed,
    cex_read_typed,
    cex_to_vec,
    NULL, /* write_f32_to_activation: the facade composes it */
    cex_zero_buffer,
    cex_copy_slice,
    cex_buffer_info,
    cex_buffer_release,
};

static const ferrum_context_table k_context = {
    sizeof(ferrum_context_table),
    cex_new_context,
    cex_context_destroy,
    cex_context_info,
    cex_sync,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, /* sync_before_host_readback .. supports_vllm_paged_attn */
    NULL, NULL, NULL, NULL, NULL,             /* timers */
#if FERRUM_ABI_VERSION_MINOR >= 1
    NULL, /* query_attribute: ABI 1.1, beyond the minor this plugin implements (CEX_ABI_MINOR) */
#endif
};

/* C99 designated initialisers: every slot not named is NULL (absent). */
static const ferrum_dense_table k_dense = {
    .struct_size = sizeof(ferrum_dense_table),
    .add_inplace = cex_add_inplace,
    .scaled_add_inplace = cex_scaled_add_inplace,
};

/* The minor this plugin implements (not the headers' FERRUM_ABI_VERSION_MINOR): 1.0. A newer
 * host then refuses what 1.0 lacks (a newer op, a newer field set to a non-default value) instead
 * of this plugin silently ignoring it, and passes the struct_size of 1.0. */
#define CEX_ABI_MINOR 0

static const ferrum_plugin_api k_api = {
    sizeof(ferrum_plugin_api),
    FERRUM_ABI_VERSION_MAJOR,
    CEX_ABI_MINOR,
    "cexample",
    "0.1.0",
    "commit=unknown compiler=C99 example plugin",
    cex_probe,
    cex_init,
    cex_shutdown,
    cex_device_count,
    cex_device_props,
    cex_error_detail,
    cex_query_support,
    &k_memory,
    &k_context,
    NULL, /* graph */
    &k_dense,
    NULL, /* attention */
    NULL, /* paged_kv */
    NULL, /* quant_kv */
    NULL, /* quant_matmul */
    NULL, /* moe */
    NULL, /* mla */
    NULL, /* collective */
#if FERRUM_ABI_VERSION_MINOR >= 1
    NULL, /* extensions (ABI 1.1): none; read only from a table declaring 1.1 anyway */
#endif
};

FERRUM_PLUGIN_EXPORT ferrum_status ferrum_plugin_entry_v1(const ferrum_host_info* host,
                                                          const ferrum_plugin_api** api) {
  if (!api) return FERRUM_STATUS_INVALID_ARGUMENT;
  *api = NULL;
  if (!host || host->struct_size < FERRUM_HOST_INFO_SIZE_V1_0) return FERRUM_STATUS_INVALID_ARGUMENT;
  if (host->abi_major != FERRUM_ABI_VERSION_MAJOR) return FERRUM_STATUS_ABI_MISMATCH;
  g_host = host;
  cex_log(FERRUM_LOG_DEBUG, "C example plugin: entry");
  *api = &k_api;
  return FERRUM_STATUS_OK;
}
