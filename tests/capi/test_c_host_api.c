/* The host C API (ferrum/ferrum_host.h) from a C99 program (built with -std=c99 -pedantic):
 * loading, candidate listing, contexts, buffers, ops through the generic ferrum_host_call
 * against float64 references (seeded random inputs, poisoned outputs), and every error path.
 *
 * Usage: test_c_host_api <case>; the cases are listed in kCases below (one CTest test each).
 * FERRUM_PLUGIN_PATH points at the build tree's plugins (cpu, cexample). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferrum/ferrum_host.h>

static int g_failures = 0;

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);        \
      ++g_failures;                                                                   \
    }                                                                                 \
  } while (0)

/* A call that must succeed; on failure prints the API's message. */
#define OK(call)                                                                      \
  do {                                                                                \
    ferrum_status st_ = (call);                                                       \
    if (st_ != FERRUM_STATUS_OK) {                                                    \
      fprintf(stderr, "%s:%d: %s failed (%d %s): %s\n", __FILE__, __LINE__, #call,    \
              (int)st_, ferrum_host_status_name(st_), ferrum_host_last_error_message()); \
      ++g_failures;                                                                   \
      return;                                                                         \
    }                                                                                 \
  } while (0)

/* A call that must fail with `status` and a message holding every one of the NULL-ended
 * fragments. */
static void expect_error(int line, ferrum_status got, ferrum_status want, const char* const* frags) {
  const char* msg = ferrum_host_last_error_message();
  if (got != want) {
    fprintf(stderr, "line %d: expected status %d (%s), got %d (%s): %s\n", line, (int)want,
            ferrum_host_status_name(want), (int)got, ferrum_host_status_name(got), msg);
    ++g_failures;
    return;
  }
  if (ferrum_host_last_error_status() != want) {
    fprintf(stderr, "line %d: last error status %d, expected %d\n", line,
            (int)ferrum_host_last_error_status(), (int)want);
    ++g_failures;
  }
  for (; *frags; ++frags) {
    if (!strstr(msg, *frags)) {
      fprintf(stderr, "line %d: message lacks \"%s\": %s\n", line, *frags, msg);
      ++g_failures;
    }
  }
}
#define EXPECT_ERROR(call, want, ...)                                                 \
  do {                                                                                \
    const char* const frags_[] = {__VA_ARGS__, NULL};                                 \
    expect_error(__LINE__, (call), (want), frags_);                                   \
  } while (0)

/* ---- seeded inputs ------------------------------------------------------------------ */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double next_unit(void) { /* splitmix64 -> [-1, 1) */
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) / 4503599627370496.0 - 1.0;
}
static float* random_f32(size_t n) {
  float* p = (float*)malloc(n * sizeof *p);
  size_t i;
  for (i = 0; i < n; ++i) p[i] = (float)next_unit();
  return p;
}

/* |got - want| <= tol * scale for every element; scale[i] (if given) is the sum of the
 * absolute values of the products behind want[i]. */
static void compare(const char* what, const float* got, const double* want, const double* scale,
                    size_t n, double tol) {
  size_t i;
  for (i = 0; i < n; ++i) {
    const double s = scale ? (scale[i] > 1.0 ? scale[i] : 1.0) : 1.0;
    if (!(fabs((double)got[i] - want[i]) <= tol * s)) {
      fprintf(stderr, "%s: element %lu: got %.9g, expected %.9g\n", what, (unsigned long)i,
              (double)got[i], want[i]);
      ++g_failures;
      return;
    }
  }
}

/* ---- fixtures ------------------------------------------------------------------------ */

static ferrum_host_backend* g_backend = NULL;
static ferrum_host_context* g_ctx = NULL;

static int open_f32(const char* spec) {
  ferrum_status st = ferrum_host_backend_load(spec, &g_backend);
  if (st != FERRUM_STATUS_OK) {
    fprintf(stderr, "cannot load %s: %s\n", spec, ferrum_host_last_error_message());
    return 0;
  }
  st = ferrum_host_context_create(g_backend, FERRUM_HOST_DEFAULT_DEVICE, FERRUM_DTYPE_F32, &g_ctx);
  if (st != FERRUM_STATUS_OK) {
    fprintf(stderr, "cannot create a context on %s: %s\n", spec, ferrum_host_last_error_message());
    return 0;
  }
  return 1;
}

static void close_all(void) {
  /* The context outlives the backend on purpose: it keeps its plugin loaded on its own. */
  ferrum_host_backend_destroy(g_backend);
  ferrum_host_context_destroy(g_ctx);
  g_backend = NULL;
  g_ctx = NULL;
}

static ferrum_host_buffer* upload(const float* data, size_t n) {
  ferrum_host_buffer* b = NULL;
  if (ferrum_host_buffer_from_host(g_ctx, FERRUM_DTYPE_F32, data, n, &b) != FERRUM_STATUS_OK) {
    fprintf(stderr, "upload failed: %s\n", ferrum_host_last_error_message());
    ++g_failures;
  }
  return b;
}

/* A buffer of n NaNs: an op that leaves an element unwritten fails the comparison. */
static ferrum_host_buffer* poisoned(size_t n) {
  float* nan = (float*)malloc(n * sizeof *nan);
  ferrum_host_buffer* b;
  size_t i;
  for (i = 0; i < n; ++i) nan[i] = (float)NAN;
  b = upload(nan, n);
  free(nan);
  return b;
}

static float* download(ferrum_host_buffer* b, size_t n) {
  float* out = (float*)malloc(n * sizeof *out);
  if (ferrum_host_buffer_read(g_ctx, b, FERRUM_DTYPE_F32, out, n) != FERRUM_STATUS_OK) {
    fprintf(stderr, "read failed: %s\n", ferrum_host_last_error_message());
    ++g_failures;
    memset(out, 0, n * sizeof *out);
  }
  return out;
}

/* ---- cases ----------------------------------------------------------------------------- */

static void case_load_and_list(void) {
  ferrum_host_candidates* list = NULL;
  ferrum_host_candidate c;
  ferrum_host_backend_info info;
  uint64_t i, n;
  int32_t supported = -1;
  int saw_cpu = 0, saw_cexample = 0;

  OK(ferrum_host_discover(0, &list));
  n = ferrum_host_candidates_count(list);
  CHECK(n >= 2);
  for (i = 0; i < n; ++i) {
    memset(&c, 0, sizeof c);
    c.struct_size = sizeof c;
    OK(ferrum_host_candidates_get(list, i, &c));
    CHECK(c.name && c.path && c.stage && c.reason && c.version);
    if (strcmp(c.name, "cpu") == 0) {
      saw_cpu = 1;
      CHECK(strcmp(c.stage, "probed") == 0);
      CHECK(c.score > 0);
      CHECK(c.abi_major == 1);
      CHECK(strstr(c.path, "libferrum-cpu.so") != NULL);
    }
    if (strcmp(c.name, "cexample") == 0) {
      saw_cexample = 1;
      CHECK(c.abi_major == 1 && c.abi_minor == 0);
    }
  }
  CHECK(saw_cpu && saw_cexample);
  memset(&c, 0, sizeof c);
  c.struct_size = sizeof c;
  EXPECT_ERROR(ferrum_host_candidates_get(list, n, &c), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_candidates_get", "argument 'index'");
  c.struct_size = 8;
  EXPECT_ERROR(ferrum_host_candidates_get(list, 0, &c), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_candidates_get", "argument 'out'", "struct_size");
  ferrum_host_candidates_destroy(list);

  CHECK(open_f32("cpu"));
  memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;
  OK(ferrum_host_backend_get_info(g_backend, &info));
  CHECK(strcmp(info.name, "cpu") == 0);
  CHECK(info.abi_version[0] == '1' && info.abi_version[1] == '.');
  CHECK(info.device_count >= 1);
  CHECK(strstr(info.path, "libferrum-cpu.so") != NULL);
  OK(ferrum_host_backend_supports(g_backend, FERRUM_OP_GEMM, &supported));
  CHECK(supported == 1);
  CHECK(ferrum_host_backend_api(g_backend) != NULL);
  CHECK(ferrum_host_context_activation_dtype(g_ctx) == FERRUM_DTYPE_F32);
  CHECK(ferrum_host_op_count() >= FERRUM_OP_COUNT_V1_0);
  CHECK(strcmp(ferrum_host_op_name(FERRUM_OP_RMS_NORM), "rms_norm") == 0);
  CHECK(ferrum_host_op_name(0) == NULL);
  close_all();
}

static void case_gemm(void) {
  const size_t m = 5, n = 7, k = 13;
  float *a = random_f32(m * k), *b = random_f32(n * k), *got;
  double want[5 * 7], scale[5 * 7];
  ferrum_host_buffer *ba, *bb, *bo;
  ferrum_gemm_args args;
  size_t i, j, p;
  if (!open_f32("cpu")) { ++g_failures; return; }
  ba = upload(a, m * k);
  bb = upload(b, n * k);
  bo = poisoned(m * n);
  memset(&args, 0, sizeof args);
  args.struct_size = sizeof args;
  args.a = ferrum_host_buffer_raw(ba);
  args.b = ferrum_host_buffer_raw(bb);
  args.out = ferrum_host_buffer_raw(bo);
  args.m = m;
  args.n = n;
  args.k = k;
  OK(ferrum_host_call(g_ctx, FERRUM_OP_GEMM, &args));
  got = download(bo, m * n);
  for (i = 0; i < m; ++i)
    for (j = 0; j < n; ++j) {
      double s = 0, sa = 0;
      for (p = 0; p < k; ++p) {
        s += (double)a[i * k + p] * b[j * k + p];
        sa += fabs((double)a[i * k + p] * b[j * k + p]);
      }
      want[i * n + j] = s;
      scale[i * n + j] = sa;
    }
  compare("gemm", got, want, scale, m * n, 1e-5);

  /* A shape the buffers cannot hold: refused by the facade's checks, naming op and argument. */
  args.m = m + 1;
  EXPECT_ERROR(ferrum_host_call(g_ctx, FERRUM_OP_GEMM, &args), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_call", "gemm", "argument 'a'");
  /* out aliasing a */
  args.m = m;
  args.out = ferrum_host_buffer_raw(ba); /* [m, k] holds the [m, n] result: only the alias is wrong */
  EXPECT_ERROR(ferrum_host_call(g_ctx, FERRUM_OP_GEMM, &args), FERRUM_STATUS_INVALID_ARGUMENT,
               "gemm", "arguments 'out' and 'a'", "the same handle");
  free(a);
  free(b);
  free(got);
  ferrum_host_buffer_destroy(ba);
  ferrum_host_buffer_destroy(bb);
  ferrum_host_buffer_destroy(bo);
  close_all();
}

static void case_rms_norm(void) {
  const size_t tokens = 3, dim = 24;
  const float eps = 1e-5f;
  float *x = random_f32(tokens * dim), *w = random_f32(dim), *got;
  double want[3 * 24];
  ferrum_host_buffer *bx, *bw, *bo;
  ferrum_rms_norm_args args;
  size_t r, i;
  if (!open_f32("cpu")) { ++g_failures; return; }
  bx = upload(x, tokens * dim);
  bw = upload(w, dim);
  bo = poisoned(tokens * dim);
  memset(&args, 0, sizeof args);
  args.struct_size = sizeof args;
  args.x = ferrum_host_buffer_raw(bx);
  args.w = ferrum_host_buffer_raw(bw);
  args.out = ferrum_host_buffer_raw(bo);
  args.eps = eps;
  args.tokens = tokens;
  args.dim = dim;
  OK(ferrum_host_call_rms_norm(g_ctx, &args)); /* the typed form of ferrum_host_call */
  got = download(bo, tokens * dim);
  for (r = 0; r < tokens; ++r) {
    double ss = 0;
    for (i = 0; i < dim; ++i) ss += (double)x[r * dim + i] * x[r * dim + i];
    ss = 1.0 / sqrt(ss / (double)dim + (double)eps);
    for (i = 0; i < dim; ++i) want[r * dim + i] = (double)x[r * dim + i] * w[i] * ss;
  }
  compare("rms_norm", got, want, NULL, tokens * dim, 1e-5);

  args.dim = 0; /* dim = 0 with tokens > 0 */
  EXPECT_ERROR(ferrum_host_call(g_ctx, FERRUM_OP_RMS_NORM, &args), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_call", "rms_norm");
  free(x);
  free(w);
  free(got);
  ferrum_host_buffer_destroy(bx);
  ferrum_host_buffer_destroy(bw);
  ferrum_host_buffer_destroy(bo);
  close_all();
}

/* flash_attention: GQA (4 query heads over 2 KV heads), causal, 3 queries at positions 2..4
 * over 5 keys of a cache with room for 6 rows (kv_seq_stride), default scale. */
static void case_flash_attention(void) {
  enum { H = 4, HKV = 2, QL = 3, KVL = 5, S = 6, D = 8, P0 = 2 };
  float *q = random_f32(H * QL * D), *k = random_f32(HKV * S * D), *v = random_f32(HKV * S * D), *got;
  double want[H * QL * D], scale[H * QL * D];
  ferrum_host_buffer *bq, *bk, *bv, *bo;
  ferrum_flash_attention_args args;
  size_t h, i, j, d;
  if (!open_f32("cpu")) { ++g_failures; return; }
  bq = upload(q, H * QL * D);
  bk = upload(k, HKV * S * D);
  bv = upload(v, HKV * S * D);
  bo = poisoned(H * QL * D);
  memset(&args, 0, sizeof args);
  args.struct_size = sizeof args;
  args.q = ferrum_host_buffer_raw(bq);
  args.k = ferrum_host_buffer_raw(bk);
  args.v = ferrum_host_buffer_raw(bv);
  args.out = ferrum_host_buffer_raw(bo);
  args.batch = 1;
  args.q_len = QL;
  args.kv_len = KVL;
  args.pos_offset = P0;
  args.num_heads = H;
  args.num_kv_heads = HKV;
  args.head_dim = D;
  args.causal = 1;
  args.scale = 0.0f;
  args.kv_seq_stride = S;
  OK(ferrum_host_call(g_ctx, FERRUM_OP_FLASH_ATTENTION, &args));
  got = download(bo, H * QL * D);
  for (h = 0; h < H; ++h) {
    const size_t kvh = h / (H / HKV);
    for (i = 0; i < QL; ++i) {
      double s[KVL], mx = -INFINITY, z = 0;
      const size_t pos = P0 + i;
      size_t visible = 0;
      for (j = 0; j < KVL && j <= pos; ++j) {
        double dot = 0;
        for (d = 0; d < D; ++d) dot += (double)q[(h * QL + i) * D + d] * k[(kvh * S + j) * D + d];
        s[j] = dot / sqrt((double)D);
        if (s[j] > mx) mx = s[j];
        visible = j + 1;
      }
      for (j = 0; j < visible; ++j) z += exp(s[j] - mx);
      for (d = 0; d < D; ++d) {
        double o = 0, sa = 0;
        for (j = 0; j < visible; ++j) {
          o += exp(s[j] - mx) / z * v[(kvh * S + j) * D + d];
          sa += fabs(v[(kvh * S + j) * D + d]);
        }
        want[(h * QL + i) * D + d] = o;
        scale[(h * QL + i) * D + d] = sa;
      }
    }
  }
  compare("flash_attention", got, want, scale, H * QL * D, 1e-5);

  args.num_kv_heads = 3; /* 4 query heads are not a multiple of 3 KV heads */
  EXPECT_ERROR(ferrum_host_call(g_ctx, FERRUM_OP_FLASH_ATTENTION, &args),
               FERRUM_STATUS_INVALID_ARGUMENT, "ferrum_host_call", "flash_attention");
  free(q);
  free(k);
  free(v);
  free(got);
  ferrum_host_buffer_destroy(bq);
  ferrum_host_buffer_destroy(bk);
  ferrum_host_buffer_destroy(bv);
  ferrum_host_buffer_destroy(bo);
  close_all();
}

/* Buffers: alloc / write / read / info, a raw handle from the generic alloc_typed adopted, and
 * a 1.0-sized read_typed struct (a caller built with older headers): its src_offset is not
 * read, whatever the bytes after the struct hold. */
static void case_buffers(void) {
  float data[6] = {1.5f, -2.f, 3.25f, 4.f, -5.5f, 6.f}, out[6];
  ferrum_host_buffer *b = NULL, *adopted = NULL;
  ferrum_buffer* raw = NULL;
  ferrum_alloc_typed_args alloc;
  ferrum_read_typed_args rd;
  int32_t dtype = 0;
  uint64_t count = 0;
  size_t i;
  if (!open_f32("cpu")) { ++g_failures; return; }
  OK(ferrum_host_buffer_alloc(g_ctx, FERRUM_DTYPE_F32, 6, &b));
  OK(ferrum_host_buffer_info(b, &dtype, &count));
  CHECK(dtype == FERRUM_DTYPE_F32 && count == 6);
  OK(ferrum_host_buffer_write(g_ctx, b, FERRUM_DTYPE_F32, data, 6));
  for (i = 0; i < 6; ++i) out[i] = (float)NAN;
  OK(ferrum_host_buffer_read(g_ctx, b, FERRUM_DTYPE_F32, out, 6));
  CHECK(memcmp(out, data, sizeof data) == 0);
  EXPECT_ERROR(ferrum_host_buffer_read(g_ctx, b, FERRUM_DTYPE_F32, out, 7),
               FERRUM_STATUS_INVALID_ARGUMENT, "ferrum_host_buffer_read", "read_typed", "len");

  memset(&rd, 0, sizeof rd);
  rd.struct_size = FERRUM_READ_TYPED_ARGS_SIZE_V1_0;
  rd.src = ferrum_host_buffer_raw(b);
  rd.dtype = FERRUM_DTYPE_F32;
  rd.len = 4;
  rd.data = out;
  rd.src_offset = 2; /* beyond struct_size: must be taken as its default, 0 */
  for (i = 0; i < 6; ++i) out[i] = (float)NAN;
  OK(ferrum_host_call(g_ctx, FERRUM_OP_READ_TYPED, &rd));
  CHECK(memcmp(out, data, 4 * sizeof(float)) == 0);
  rd.struct_size = sizeof rd; /* now src_offset counts */
  OK(ferrum_host_call(g_ctx, FERRUM_OP_READ_TYPED, &rd));
  CHECK(memcmp(out, data + 2, 4 * sizeof(float)) == 0);

  memset(&alloc, 0, sizeof alloc);
  alloc.struct_size = sizeof alloc;
  alloc.dtype = FERRUM_DTYPE_F32;
  alloc.n = 3;
  alloc.buffer = &raw;
  OK(ferrum_host_call(g_ctx, FERRUM_OP_ALLOC_TYPED, &alloc));
  CHECK(raw != NULL);
  OK(ferrum_host_buffer_adopt(g_ctx, raw, &adopted));
  CHECK(ferrum_host_buffer_raw(adopted) == raw);
  OK(ferrum_host_buffer_info(adopted, &dtype, &count));
  CHECK(dtype == FERRUM_DTYPE_F32 && count == 3);
  OK(ferrum_host_sync(g_ctx));
  ferrum_host_buffer_destroy(adopted);
  ferrum_host_buffer_destroy(b);
  close_all();
}

/* Every error path of the API's own arguments; each names the function and the argument. */
static void case_errors(void) {
  ferrum_host_backend* be = (ferrum_host_backend*)&g_failures; /* must be overwritten */
  ferrum_host_context* c = NULL;
  ferrum_host_buffer* b = NULL;
  ferrum_host_backend_info info;
  ferrum_gemm_args gemm;
  ferrum_new_context_args nc;
  int32_t supported = 0, dtype = 0;
  uint64_t count = 0;
  char reason[256];
  float x = 0;
  memset(&gemm, 0, sizeof gemm);
  gemm.struct_size = sizeof gemm;

  EXPECT_ERROR(ferrum_host_backend_load("no_such_backend_xyz", &be), FERRUM_HOST_STATUS_LOAD_FAILED,
               "ferrum_host_backend_load", "no_such_backend_xyz");
  CHECK(be == NULL);
  EXPECT_ERROR(ferrum_host_backend_load("/nonexistent/libferrum-nope.so", &be),
               FERRUM_HOST_STATUS_LOAD_FAILED, "ferrum_host_backend_load", "libferrum-nope.so");
  EXPECT_ERROR(ferrum_host_backend_load("cpu", NULL), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_backend_load", "argument 'out'");
  EXPECT_ERROR(ferrum_host_backend_get_info(NULL, &info), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_backend_get_info", "argument 'backend'");
  EXPECT_ERROR(ferrum_host_discover(0, NULL), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_discover", "argument 'out'");
  EXPECT_ERROR(ferrum_host_context_create(NULL, 0, 0, &c), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_context_create", "argument 'backend'");
  EXPECT_ERROR(ferrum_host_call(NULL, FERRUM_OP_GEMM, &gemm), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_call", "argument 'ctx'");
  EXPECT_ERROR(ferrum_host_sync(NULL), FERRUM_STATUS_INVALID_ARGUMENT, "ferrum_host_sync",
               "argument 'ctx'");
  EXPECT_ERROR(ferrum_host_buffer_alloc(NULL, FERRUM_DTYPE_F32, 1, &b),
               FERRUM_STATUS_INVALID_ARGUMENT, "ferrum_host_buffer_alloc", "argument 'ctx'");
  EXPECT_ERROR(ferrum_host_buffer_info(NULL, &dtype, &count), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_buffer_info", "argument 'buf'");
  /* NULL is ignored by every destroy function */
  ferrum_host_backend_destroy(NULL);
  ferrum_host_context_destroy(NULL);
  ferrum_host_buffer_destroy(NULL);
  ferrum_host_candidates_destroy(NULL);
  CHECK(ferrum_host_buffer_raw(NULL) == NULL);
  CHECK(ferrum_host_backend_api(NULL) == NULL);
  CHECK(strcmp(ferrum_host_status_name(FERRUM_HOST_STATUS_LOAD_FAILED), "load_failed") == 0);
  CHECK(strcmp(ferrum_host_status_name(FERRUM_STATUS_INVALID_ARGUMENT), "invalid_argument") == 0);

  if (!open_f32("cpu")) { ++g_failures; return; }
  memset(&info, 0, sizeof info);
  EXPECT_ERROR(ferrum_host_backend_get_info(g_backend, &info), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_backend_get_info", "argument 'info'", "struct_size");
  EXPECT_ERROR(ferrum_host_backend_supports(g_backend, 0, &supported),
               FERRUM_STATUS_INVALID_ARGUMENT, "ferrum_host_backend_supports", "argument 'op_id'");
  EXPECT_ERROR(ferrum_host_call(g_ctx, 0, &gemm), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_call", "argument 'op_id'", "given 0");
  EXPECT_ERROR(ferrum_host_call(g_ctx, 100000, &gemm), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_call", "argument 'op_id'", "given 100000");
  EXPECT_ERROR(ferrum_host_call(g_ctx, FERRUM_OP_GEMM, NULL), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_call", "argument 'args'", "ferrum_gemm_args");
  memset(&gemm, 0, sizeof gemm);
  gemm.struct_size = 8; /* smaller than the ABI 1.0 size */
  EXPECT_ERROR(ferrum_host_call(g_ctx, FERRUM_OP_GEMM, &gemm), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_call", "gemm", "struct_size", "given 8");
  gemm.struct_size = sizeof gemm; /* NULL buffers with m > 0 */
  gemm.m = gemm.n = gemm.k = 2;
  EXPECT_ERROR(ferrum_host_call(g_ctx, FERRUM_OP_GEMM, &gemm), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_call", "gemm", "argument 'a'");
  memset(&nc, 0, sizeof nc);
  nc.struct_size = sizeof nc;
  EXPECT_ERROR(ferrum_host_call(g_ctx, FERRUM_OP_NEW_CONTEXT, &nc), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_call", "new_context", "ferrum_host_context_create");
  EXPECT_ERROR(ferrum_host_buffer_from_host(g_ctx, FERRUM_DTYPE_F32, NULL, 4, &b),
               FERRUM_STATUS_INVALID_ARGUMENT, "ferrum_host_buffer_from_host", "from_slice_typed",
               "argument 'data'");
  CHECK(b == NULL);
  EXPECT_ERROR(ferrum_host_buffer_alloc(g_ctx, 99, 4, &b), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_buffer_alloc", "alloc_typed");
  EXPECT_ERROR(ferrum_host_buffer_write(g_ctx, NULL, FERRUM_DTYPE_F32, &x, 1),
               FERRUM_STATUS_INVALID_ARGUMENT, "ferrum_host_buffer_write", "argument 'buf'");
  EXPECT_ERROR(ferrum_host_buffer_adopt(g_ctx, NULL, &b), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_buffer_adopt", "argument 'raw'");
  EXPECT_ERROR(ferrum_host_query_support(g_ctx, FERRUM_OP_GEMM, &gemm, NULL, reason, sizeof reason),
               FERRUM_STATUS_INVALID_ARGUMENT, "ferrum_host_query_support", "argument 'supported'");
  EXPECT_ERROR(ferrum_host_context_create(g_backend, 0, 99, &c), FERRUM_STATUS_INVALID_ARGUMENT,
               "ferrum_host_context_create");
  CHECK(c == NULL);
  close_all();
}

/* The C example plugin (ABI 1.0, F32 only, a handful of ops): ops it has run, ops it lacks are
 * UNSUPPORTED naming the op, a 1.1 op or field is refused by the facade's gate. */
static void case_cexample(void) {
  float r[5] = {1, 2, 3, 4, 5}, xs[5] = {0.5f, -1, 2, -3, 4}, got[5];
  ferrum_host_buffer *br, *bx;
  ferrum_add_inplace_args add;
  ferrum_gemm_args gemm;
  ferrum_query_attribute_args qa;
  ferrum_read_typed_args rd;
  uint64_t value = 0;
  int32_t supported = -1;
  char reason[512];
  size_t i;
  if (!open_f32("cexample")) { ++g_failures; return; }
  br = upload(r, 5);
  bx = upload(xs, 5);
  memset(&add, 0, sizeof add);
  add.struct_size = sizeof add;
  add.residual = ferrum_host_buffer_raw(br);
  add.x = ferrum_host_buffer_raw(bx);
  add.len = 5;
  OK(ferrum_host_call(g_ctx, FERRUM_OP_ADD_INPLACE, &add));
  OK(ferrum_host_buffer_read(g_ctx, br, FERRUM_DTYPE_F32, got, 5));
  for (i = 0; i < 5; ++i) CHECK(got[i] == r[i] + xs[i]);

  memset(&gemm, 0, sizeof gemm);
  gemm.struct_size = sizeof gemm;
  gemm.a = ferrum_host_buffer_raw(br);
  gemm.b = ferrum_host_buffer_raw(bx);
  gemm.out = ferrum_host_buffer_raw(bx);
  gemm.m = 1;
  gemm.n = 1;
  gemm.k = 5;
  gemm.out = ferrum_host_buffer_raw(br);
  gemm.a = ferrum_host_buffer_raw(bx);
  EXPECT_ERROR(ferrum_host_call(g_ctx, FERRUM_OP_GEMM, &gemm), FERRUM_STATUS_UNSUPPORTED,
               "ferrum_host_call", "gemm", "cexample", "NULL slot");
  OK(ferrum_host_query_support(g_ctx, FERRUM_OP_GEMM, &gemm, &supported, reason, sizeof reason));
  CHECK(supported == 0);
  CHECK(strstr(reason, "not implemented") != NULL);
  OK(ferrum_host_query_support(g_ctx, FERRUM_OP_ADD_INPLACE, &add, &supported, NULL, 0));
  CHECK(supported == 1);

  memset(&qa, 0, sizeof qa);
  qa.struct_size = sizeof qa;
  qa.attribute = FERRUM_ATTRIBUTE_PAGED_KV;
  qa.value = &value;
  EXPECT_ERROR(ferrum_host_call(g_ctx, FERRUM_OP_QUERY_ATTRIBUTE, &qa), FERRUM_STATUS_UNSUPPORTED,
               "ferrum_host_call", "query_attribute", "needs ABI 1.1");

  memset(&rd, 0, sizeof rd);
  rd.struct_size = sizeof rd;
  rd.src = ferrum_host_buffer_raw(br);
  rd.dtype = FERRUM_DTYPE_F32;
  rd.len = 2;
  rd.data = got;
  rd.src_offset = 1; /* a 1.1 field the 1.0 plugin would ignore */
  EXPECT_ERROR(ferrum_host_call(g_ctx, FERRUM_OP_READ_TYPED, &rd), FERRUM_STATUS_UNSUPPORTED,
               "ferrum_host_call", "read_typed", "src_offset");
  rd.src_offset = 0; /* at its default: the 1.0 plugin serves it */
  OK(ferrum_host_call(g_ctx, FERRUM_OP_READ_TYPED, &rd));
  CHECK(got[0] == r[0] + xs[0] && got[1] == r[1] + xs[1]);

  ferrum_host_buffer_destroy(br);
  ferrum_host_buffer_destroy(bx);
  close_all();
}

/* The last error is per thread: a failure on another thread does not show here. */
static void* fail_on_thread(void* arg) {
  (void)arg;
  (void)ferrum_host_sync(NULL);
  return (void*)(size_t)ferrum_host_last_error_status();
}
static void case_thread_errors(void) {
  pthread_t t;
  void* other = NULL;
  EXPECT_ERROR(ferrum_host_call(NULL, 1, NULL), FERRUM_STATUS_INVALID_ARGUMENT, "ferrum_host_call");
  CHECK(pthread_create(&t, NULL, fail_on_thread, NULL) == 0);
  CHECK(pthread_join(t, &other) == 0);
  CHECK((size_t)other == FERRUM_STATUS_INVALID_ARGUMENT);
  /* this thread still holds its own message, not the other thread's */
  CHECK(strstr(ferrum_host_last_error_message(), "ferrum_host_call") != NULL);
  CHECK(strstr(ferrum_host_last_error_message(), "ferrum_host_sync") == NULL);
}

/* spec NULL / "": the loader's precedence; FERRUM_BACKEND names the backend (and a bad name
 * fails naming where it came from, never falling back). */
static void case_env_precedence(void) {
  ferrum_host_backend* be = NULL;
  ferrum_host_backend_info info;
  CHECK(setenv("FERRUM_BACKEND", "cexample", 1) == 0);
  OK(ferrum_host_backend_load(NULL, &be));
  memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;
  OK(ferrum_host_backend_get_info(be, &info));
  CHECK(strcmp(info.name, "cexample") == 0);
  ferrum_host_backend_destroy(be);
  be = NULL;
  OK(ferrum_host_backend_load("", &be)); /* "" is the same as NULL */
  OK(ferrum_host_backend_get_info(be, &info));
  CHECK(strcmp(info.name, "cexample") == 0);
  ferrum_host_backend_destroy(be);
  OK(ferrum_host_backend_load("cpu", &be)); /* an explicit spec wins over the variable */
  OK(ferrum_host_backend_get_info(be, &info));
  CHECK(strcmp(info.name, "cpu") == 0);
  ferrum_host_backend_destroy(be);
  CHECK(setenv("FERRUM_BACKEND", "no_such_backend_env", 1) == 0);
  EXPECT_ERROR(ferrum_host_backend_load(NULL, &be), FERRUM_HOST_STATUS_LOAD_FAILED,
               "ferrum_host_backend_load", "no_such_backend_env", "FERRUM_BACKEND");
  CHECK(unsetenv("FERRUM_BACKEND") == 0);
}

struct test_case {
  const char* name;
  void (*run)(void);
};
static const struct test_case kCases[] = {
    {"load_and_list", case_load_and_list}, {"gemm", case_gemm},
    {"rms_norm", case_rms_norm},           {"flash_attention", case_flash_attention},
    {"buffers", case_buffers},             {"errors", case_errors},
    {"cexample", case_cexample},           {"thread_errors", case_thread_errors},
    {"env_precedence", case_env_precedence},
};

int main(int argc, char** argv) {
  size_t i;
  int ran = 0;
  for (i = 0; i < sizeof kCases / sizeof kCases[0]; ++i) {
    if (argc < 2 || strcmp(argv[1], kCases[i].name) == 0) {
      kCases[i].run();
      ran = 1;
    }
  }
  if (!ran) {
    fprintf(stderr, "unknown case '%s'\n", argv[1]);
    return 2;
  }
  if (g_failures) fprintf(stderr, "%d failure(s)\n", g_failures);
  return g_failures ? 1 : 0;
}
