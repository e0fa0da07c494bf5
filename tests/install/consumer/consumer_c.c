/* A C99 host application built against the installed ferrum package: the host C API
 * (ferrum/ferrum_host.h) loads the installed CPU plugin and runs add_inplace through the
 * generic ferrum_host_call. */
#include <stdio.h>

#include <ferrum/ferrum_host.h>

static int fail(const char* what) {
  printf("consumer_c: %s failed: %s\n", what, ferrum_host_last_error_message());
  return 1;
}

int main(void) {
  float a[3] = {1.5f, -2.0f, 3.25f}, b[3] = {0.5f, 4.0f, -1.25f}, out[3];
  ferrum_host_backend* backend = NULL;
  ferrum_host_context* ctx = NULL;
  ferrum_host_buffer *x = NULL, *y = NULL;
  ferrum_add_inplace_args add = {0};
  int i, rc = 0;
  if (ferrum_host_backend_load("cpu", &backend)) return fail("ferrum_host_backend_load");
  if (ferrum_host_context_create(backend, FERRUM_HOST_DEFAULT_DEVICE, FERRUM_DTYPE_F32, &ctx))
    return fail("ferrum_host_context_create");
  if (ferrum_host_buffer_from_host(ctx, FERRUM_DTYPE_F32, a, 3, &x) ||
      ferrum_host_buffer_from_host(ctx, FERRUM_DTYPE_F32, b, 3, &y))
    return fail("ferrum_host_buffer_from_host");
  add.struct_size = sizeof add;
  add.residual = ferrum_host_buffer_raw(x);
  add.x = ferrum_host_buffer_raw(y);
  add.len = 3;
  if (ferrum_host_call(ctx, FERRUM_OP_ADD_INPLACE, &add)) return fail("ferrum_host_call");
  if (ferrum_host_buffer_read(ctx, x, FERRUM_DTYPE_F32, out, 3)) return fail("ferrum_host_buffer_read");
  for (i = 0; i < 3; ++i)
    if (out[i] != a[i] + b[i]) {
      printf("consumer_c: wrong result at %d: %g\n", i, (double)out[i]);
      rc = 1;
    }
  ferrum_host_buffer_destroy(x);
  ferrum_host_buffer_destroy(y);
  ferrum_host_context_destroy(ctx);
  ferrum_host_backend_destroy(backend);
  if (!rc) printf("consumer_c: ok\n");
  return rc;
}
