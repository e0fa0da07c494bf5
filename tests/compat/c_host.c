/*
 * A ferrum host in plain C, for the compatibility matrix. It drives the plugin named on the
 * command line through dlopen and the entry symbol, with the struct sizes of the headers it is
 * compiled against, in one of three builds (tests/compat/CMakeLists.txt):
 *   compat_host_v1_0          the frozen copy of the released 1.0 headers (tests/abi/v1_0): a host
 *                             released with ABI 1.0 — 40-byte host info, 1.0 args structs;
 *   compat_host_v1_1_noreport the current headers, report_error NULL (a 1.1 host offering no
 *                             error reports): the plugin must keep context-less details itself;
 *   compat_host_v1_1          the current headers, report_error set (HOST_REPORTS): context-less
 *                             details come through the report, as in the C++ host.
 * It checks that the plugin works with every addition the host does not know at its default:
 *   - the host info and the one grown args struct it passes (read_typed, 40 bytes at 1.0) end
 *     exactly at an unreadable page, so a plugin reading a field (report_error, src_offset)
 *     beyond the struct_size it was given faults instead of passing;
 *   - probe, init, device_count, device_props (1.0 props struct), new_context;
 *   - from_slice, add_inplace, read_typed (1.0 size: reads from element 0), to_vec against a
 *     reference computed here from seeded inputs, output buffers poisoned first;
 *   - failures: a context-less one (device_props, new_context, buffer_release) is answered by
 *     error_detail(NULL) on this thread, as 1.0 hosts ask (the plugin gets no report_error from
 *     this host); a context-bound one by error_detail(ctx); query_support agrees with the op.
 * Prints one line per failed check and exits 1 if any failed.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ferrum/ferrum_plugin.h>

#if FERRUM_ABI_VERSION_MINOR == 0 && defined(HOST_REPORTS)
#error "a host built against the 1.0 headers has no report_error"
#endif

static int g_failed = 0;
#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "c_host: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failed;                                                                \
    }                                                                            \
  } while (0)

/* `size` bytes of zeroed memory that end exactly where a PROT_NONE page begins. */
static void* before_guard_page(size_t size) {
  long page = sysconf(_SC_PAGESIZE);
  unsigned char* p;
  if (page <= 0 || size > (size_t)page) return NULL;
  p = (unsigned char*)mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  if (mprotect(p + page, (size_t)page, PROT_NONE) != 0) return NULL;
  return p + page - size;
}

static int g_log_lines = 0;
static void host_log(void* user_data, int32_t level, const char* message) {
  (void)user_data;
  (void)level;
  if (message) ++g_log_lines; /* a host owns output; this one only counts */
}

#ifdef HOST_REPORTS
/* This host's record of the last context-less failure (one thread: no thread-local needed). */
static char g_reported[512];
static ferrum_status g_reported_status = FERRUM_STATUS_OK;
static int g_reports = 0;
static void on_report(void* user_data, ferrum_status status, const char* message) {
  size_t n = message ? strlen(message) : 0;
  CHECK(user_data == (void*)&g_reports);
  if (n >= sizeof g_reported) n = sizeof g_reported - 1;
  if (message) memcpy(g_reported, message, n);
  g_reported[n] = '\0';
  g_reported_status = status;
  ++g_reports;
}
#endif

/* The detail of the last failure: error_detail(ctx) for a context; for none, this host's report
 * (HOST_REPORTS) if the plugin made one, else error_detail(NULL). Into `buf`; "" when none. */
static const char* detail(const ferrum_plugin_api* api, ferrum_context* ctx, char* buf, uint64_t cap) {
  uint64_t needed = 0;
  buf[0] = '\0';
#ifdef HOST_REPORTS
  if (!ctx && g_reported[0]) { /* else a plugin that does not report: error_detail(NULL) */
    size_t n = strlen(g_reported);
    if (n >= cap) n = (size_t)cap - 1;
    memcpy(buf, g_reported, n);
    buf[n] = '\0';
    g_reported[0] = '\0'; /* taken: the next failure must report again */
    return buf;
  }
#endif
  if (!api->error_detail || api->error_detail(ctx, buf, cap, &needed) != FERRUM_STATUS_OK) buf[0] = '\0';
  return buf;
}

static int contains(const char* text, const char* part) { return strstr(text, part) != NULL; }

/* Seeded inputs in [-1, 1) (a 32-bit LCG). */
static void seeded(float* out, size_t n, uint32_t seed) {
  size_t i;
  for (i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    out[i] = (float)((double)(seed >> 8) / 8388608.0 - 1.0);
  }
}

int main(int argc, char** argv) {
  enum { N = 37 };
  void* lib;
  void* sym;
  ferrum_plugin_entry_fn entry;
  ferrum_host_info* host;
  const ferrum_plugin_api* api = NULL;
  int32_t score = 0;
  char reason[256], msg[512];
  uint64_t count = 0, i;
  ferrum_device_props props;
  ferrum_context* ctx = NULL;
  ferrum_buffer *x = NULL, *y = NULL;
  float a[N], b[N], want[N], got[N + 1];
  ferrum_status st;

  if (argc != 2 && argc != 3) {
    fprintf(stderr, "usage: %s <libferrum-name.so> [reports expected (HOST_REPORTS builds)]\n", argv[0]);
    return 2;
  }
  lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "c_host: dlopen failed: %s\n", dlerror());
    return 1;
  }
  sym = dlsym(lib, FERRUM_PLUGIN_ENTRY_SYMBOL);
  if (!sym) {
    fprintf(stderr, "c_host: no %s\n", FERRUM_PLUGIN_ENTRY_SYMBOL);
    return 1;
  }
  memcpy(&entry, &sym, sizeof entry); /* object -> function pointer, as POSIX allows */

  /* The host info of these headers (40 bytes at 1.0), then an unreadable page. */
  host = (ferrum_host_info*)before_guard_page(sizeof(ferrum_host_info));
  if (!host) {
    fprintf(stderr, "c_host: no guard page\n");
    return 1;
  }
#if FERRUM_ABI_VERSION_MINOR == 0
  CHECK(sizeof(ferrum_host_info) == FERRUM_HOST_INFO_SIZE_V1_0);
#else
  CHECK(sizeof(ferrum_host_info) == FERRUM_HOST_INFO_SIZE_V1_1);
#ifdef HOST_REPORTS
  host->report_error = on_report;
  host->report_error_user_data = &g_reports;
#else
  host->report_error = NULL; /* a 1.1 host that takes no reports */
#endif
#endif
  host->struct_size = sizeof(ferrum_host_info);
  host->abi_major = FERRUM_ABI_VERSION_MAJOR;
  host->abi_minor = FERRUM_ABI_VERSION_MINOR;
  host->log = host_log;
  host->log_user_data = NULL;
  host->log_min_level = FERRUM_LOG_TRACE;

  st = entry(host, &api);
  if (st != FERRUM_STATUS_OK || !api) {
    fprintf(stderr, "c_host: entry returned %d\n", (int)st);
    return 1;
  }
  CHECK(api->struct_size >= FERRUM_PLUGIN_API_SIZE_V1_0);
  CHECK(api->abi_major == FERRUM_ABI_VERSION_MAJOR);
  CHECK(api->plugin_name != NULL);
  printf("c_host: plugin '%s' declares ABI %u.%u, API table %llu bytes (1.0: %d)\n",
         api->plugin_name ? api->plugin_name : "?", (unsigned)api->abi_major, (unsigned)api->abi_minor,
         (unsigned long long)api->struct_size, FERRUM_PLUGIN_API_SIZE_V1_0);

  /* ---- lifecycle --------------------------------------------------------------- */
  reason[0] = 'x';
  CHECK(api->probe(&score, reason, sizeof reason) == FERRUM_STATUS_OK);
  CHECK(score > 0);
  CHECK(memchr(reason, '\0', sizeof reason) != NULL);
  CHECK(api->init() == FERRUM_STATUS_OK);
  CHECK(api->device_count(&count) == FERRUM_STATUS_OK && count >= 1);
  memset(&props, 0x5a, sizeof props); /* poisoned */
  props.struct_size = sizeof props;   /* the 1.0 size */
  CHECK(props.struct_size == FERRUM_DEVICE_PROPS_SIZE_V1_0);
  CHECK(api->device_props(0, &props) == FERRUM_STATUS_OK);
  CHECK(props.struct_size == FERRUM_DEVICE_PROPS_SIZE_V1_0);
  CHECK(memchr(props.name, '\0', sizeof props.name) != NULL && props.name[0] != '\0');
  CHECK(props.kind == FERRUM_DEVICE_KIND_CPU || props.kind == FERRUM_DEVICE_KIND_GPU);

  /* ---- failures without a context: error_detail(NULL) on this thread ------------- */
  CHECK(api->device_props(4242, &props) == FERRUM_STATUS_INVALID_ARGUMENT);
  detail(api, NULL, msg, sizeof msg);
  CHECK(contains(msg, "device_props") && contains(msg, "ordinal") && contains(msg, "4242"));
#ifndef HOST_REPORTS
  {
    uint64_t needed = 0;
    CHECK(api->error_detail(NULL, NULL, 0, &needed) == FERRUM_STATUS_OK);
    CHECK(needed == strlen(msg) + 1);
  }
#endif
  {
    ferrum_new_context_args nc;
    memset(&nc, 0, sizeof nc);
    nc.struct_size = sizeof nc;
    nc.device_ordinal = 77;
    nc.context = &ctx;
    CHECK(api->context->new_context(NULL, &nc) == FERRUM_STATUS_INVALID_ARGUMENT);
    CHECK(ctx == NULL);
    detail(api, NULL, msg, sizeof msg);
    CHECK(contains(msg, "new_context") && contains(msg, "77"));

    nc.device_ordinal = 0;
    CHECK(api->context->new_context(NULL, &nc) == FERRUM_STATUS_OK);
    CHECK(ctx != NULL);
  }
  if (!ctx) {
    fprintf(stderr, "c_host: no context, stopping\n");
    return 1;
  }

  /* ---- ops with 1.0 args ----------------------------------------------------------- */
  seeded(a, N, 1234u);
  seeded(b, N, 5678u);
  for (i = 0; i < N; ++i) want[i] = a[i] + b[i];
  {
    ferrum_from_slice_args fs;
    memset(&fs, 0, sizeof fs);
    fs.struct_size = sizeof fs;
    fs.data = a;
    fs.data_len = N;
    fs.buffer = &x;
    CHECK(api->memory->from_slice(ctx, &fs) == FERRUM_STATUS_OK);
    fs.data = b;
    fs.buffer = &y;
    CHECK(api->memory->from_slice(ctx, &fs) == FERRUM_STATUS_OK);
  }
  if (!x || !y) {
    fprintf(stderr, "c_host: no buffers, stopping\n");
    return 1;
  }
  {
    ferrum_add_inplace_args add;
    char why[256];
    memset(&add, 0, sizeof add);
    add.struct_size = sizeof add;
    add.residual = x;
    add.x = y;
    add.len = N;
    CHECK(api->query_support == NULL ||
          api->query_support(ctx, FERRUM_OP_ADD_INPLACE, &add, why, sizeof why) == FERRUM_STATUS_OK);
    CHECK(api->dense->add_inplace(ctx, &add) == FERRUM_STATUS_OK);

    /* A failure on a context: error_detail(ctx); the support query says the same first. */
    add.len = N + 1;
    if (api->query_support) {
      CHECK(api->query_support(ctx, FERRUM_OP_ADD_INPLACE, &add, why, sizeof why) ==
            FERRUM_STATUS_INVALID_ARGUMENT);
      CHECK(contains(why, "add_inplace"));
    }
    CHECK(api->dense->add_inplace(ctx, &add) == FERRUM_STATUS_INVALID_ARGUMENT);
    detail(api, ctx, msg, sizeof msg);
    CHECK(contains(msg, "add_inplace") && contains(msg, "38"));
  }
  {
    /* read_typed grew in 1.1 (src_offset): a 1.0 host's struct ends at the guard page, and the
     * plugin must read it as src_offset = 0 (a 1.1 host's has src_offset = 0 itself). */
    ferrum_read_typed_args* rt = (ferrum_read_typed_args*)before_guard_page(sizeof(ferrum_read_typed_args));
#if FERRUM_ABI_VERSION_MINOR == 0
    CHECK(sizeof(ferrum_read_typed_args) == FERRUM_READ_TYPED_ARGS_SIZE_V1_0);
#endif
    if (rt) {
      for (i = 0; i <= N; ++i) got[i] = -7.0f;
      rt->struct_size = sizeof *rt;
      rt->src = x;
      rt->dtype = FERRUM_DTYPE_F32;
      rt->len = N;
      rt->data = got;
      CHECK(api->memory->read_typed(ctx, rt) == FERRUM_STATUS_OK);
      CHECK(memcmp(got, want, sizeof want) == 0);
      CHECK(got[N] == -7.0f); /* nothing beyond len */
      rt->len = N - 5;
      for (i = 0; i <= N; ++i) got[i] = -7.0f;
      CHECK(api->memory->read_typed(ctx, rt) == FERRUM_STATUS_OK);
      CHECK(memcmp(got, want, (N - 5) * sizeof(float)) == 0 && got[N - 5] == -7.0f);
    }
  }
  {
    ferrum_to_vec_args tv;
    memset(&tv, 0, sizeof tv);
    for (i = 0; i <= N; ++i) got[i] = -7.0f;
    tv.struct_size = sizeof tv;
    tv.buf = y;
    tv.len = N;
    tv.out = got;
    CHECK(api->memory->to_vec(ctx, &tv) == FERRUM_STATUS_OK);
    CHECK(memcmp(got, b, sizeof b) == 0 && got[N] == -7.0f);
  }

  /* ---- release ----------------------------------------------------------------------- */
  {
    ferrum_buffer_release_args rel;
    ferrum_context_destroy_args cd;
    memset(&rel, 0, sizeof rel);
    rel.struct_size = 8; /* below the 1.0 size: a context-less failure */
    rel.buf = x;
    CHECK(api->memory->buffer_release(NULL, &rel) == FERRUM_STATUS_INVALID_ARGUMENT);
    detail(api, NULL, msg, sizeof msg);
    CHECK(contains(msg, "buffer_release") && contains(msg, "struct_size"));
    rel.struct_size = sizeof rel;
    CHECK(api->memory->buffer_release(NULL, &rel) == FERRUM_STATUS_OK);
    rel.buf = y;
    CHECK(api->memory->buffer_release(NULL, &rel) == FERRUM_STATUS_OK);
    memset(&cd, 0, sizeof cd);
    cd.struct_size = sizeof cd;
    cd.context = ctx;
    CHECK(api->context->context_destroy(NULL, &cd) == FERRUM_STATUS_OK);
  }
  api->shutdown();
  dlclose(lib);
#ifdef HOST_REPORTS
  /* Three context-less failures above (device_props, new_context, buffer_release), and no other:
   * a plugin that reports reports each once, with the status the call returned (argv[2]: 3); a
   * 1.0 plugin reports none (argv[2]: 0). */
  CHECK(argc == 3 && g_reports == atoi(argv[2]));
  CHECK(g_reports == 0 || g_reported_status == FERRUM_STATUS_INVALID_ARGUMENT);
#endif
  printf("host (ABI 1.%d headers%s): %s, %d failed check(s), %d log line(s)\n", FERRUM_ABI_VERSION_MINOR,
#ifdef HOST_REPORTS
         ", report_error set",
#else
         FERRUM_ABI_VERSION_MINOR ? ", report_error NULL" : "",
#endif
         g_failed ? "FAILED" : "ok", g_failed, g_log_lines);
  return g_failed ? 1 : 0;
}
