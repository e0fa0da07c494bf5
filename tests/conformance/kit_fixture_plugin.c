/*
 * Plugins that the strict conformance kit must reject, built from the C example plugin
 * (examples/c_plugin/c_plugin.c, included whole) with one change each, selected by -D flag:
 *
 *   KIT_HOLLOW    no memory and no context family (the table has neither)
 *   KIT_NOTHING   no dense family: every dense case is unsupported or runs only through the
 *                 facade's composition (scaled_add_inplace), so the plugin passes nothing there
 *   KIT_CRASH     add_inplace raises SIGSEGV, scaled_add_inplace aborts, zero_buffer calls exit(3)
 *   KIT_HANG      to_vec never returns
 *   KIT_WRAP      copy_slice checks offset + len with a sum that wraps past 2^64 (the bug the
 *                 overflow family exists to find)
 *
 * KIT_NAME is the plugin name.
 */
#define ferrum_plugin_entry_v1 cex_example_entry /* the example's entry, renamed (not exported) */
#include "../../examples/c_plugin/c_plugin.c"
#undef ferrum_plugin_entry_v1

#include <signal.h>
#include <stdlib.h>

#ifndef KIT_NAME
#error "KIT_NAME must be defined"
#endif

#ifdef KIT_CRASH
static ferrum_status kit_add_inplace(ferrum_context* ctx, const ferrum_add_inplace_args* a) {
  (void)ctx;
  (void)a;
  raise(SIGSEGV);
  return FERRUM_STATUS_INTERNAL;
}
static ferrum_status kit_scaled_add_inplace(ferrum_context* ctx, const ferrum_scaled_add_inplace_args* a) {
  (void)ctx;
  (void)a;
  abort();
}
static ferrum_status kit_zero_buffer(ferrum_context* ctx, const ferrum_zero_buffer_args* a) {
  (void)ctx;
  (void)a;
  exit(3);
}
static ferrum_memory_table k_kit_memory;
static ferrum_dense_table k_kit_dense;
#endif

#ifdef KIT_HANG
#include <unistd.h>
static ferrum_status kit_to_vec(ferrum_context* ctx, const ferrum_to_vec_args* a) {
  (void)ctx;
  (void)a;
  for (;;) {
    if (pause() != 0 && a == NULL) break; /* pause() returns only after a signal */
  }
  return FERRUM_STATUS_INTERNAL;
}
static ferrum_memory_table k_kit_memory;
#endif

#ifdef KIT_WRAP
static ferrum_status kit_copy_slice(ferrum_context* ctx, const ferrum_copy_slice_args* a) {
  size_t es;
  (void)ctx;
  if (!a || a->struct_size < FERRUM_COPY_SLICE_ARGS_SIZE_V1_0 || !a->src || !a->dst ||
      a->src->dtype != a->dst->dtype)
    return FERRUM_STATUS_INVALID_ARGUMENT;
  /* The bug under test: these sums wrap, so an offset near 2^64 passes. */
  if (a->src_offset + a->len > a->src->count || a->dst_offset + a->len > a->dst->count)
    return FERRUM_STATUS_INVALID_ARGUMENT;
  if (a->len == 0) return FERRUM_STATUS_OK;
  es = dtype_size(a->src->dtype);
  memmove(a->dst->data + a->dst_offset * es, a->src->data + a->src_offset * es, (size_t)a->len * es);
  return FERRUM_STATUS_OK;
}
static ferrum_memory_table k_kit_memory;
#endif

static ferrum_plugin_api k_kit_api;

FERRUM_PLUGIN_EXPORT ferrum_status ferrum_plugin_entry_v1(const ferrum_host_info* host,
                                                          const ferrum_plugin_api** api);
FERRUM_PLUGIN_EXPORT ferrum_status ferrum_plugin_entry_v1(const ferrum_host_info* host,
                                                          const ferrum_plugin_api** api) {
  const ferrum_plugin_api* inner = NULL;
  ferrum_status st = cex_example_entry(host, &inner);
  if (st != FERRUM_STATUS_OK) return st;
  k_kit_api = *inner;
  k_kit_api.plugin_name = KIT_NAME;
#if defined(KIT_HOLLOW)
  k_kit_api.memory = NULL;
  k_kit_api.context = NULL;
#elif defined(KIT_NOTHING)
  k_kit_api.dense = NULL;
#elif defined(KIT_CRASH)
  k_kit_memory = *inner->memory;
  k_kit_memory.zero_buffer = kit_zero_buffer;
  k_kit_dense = *inner->dense;
  k_kit_dense.add_inplace = kit_add_inplace;
  k_kit_dense.scaled_add_inplace = kit_scaled_add_inplace;
  k_kit_api.memory = &k_kit_memory;
  k_kit_api.dense = &k_kit_dense;
#elif defined(KIT_WRAP)
  k_kit_memory = *inner->memory;
  k_kit_memory.copy_slice = kit_copy_slice;
  k_kit_api.memory = &k_kit_memory;
#elif defined(KIT_HANG)
  k_kit_memory = *inner->memory;
  k_kit_memory.to_vec = kit_to_vec;
  k_kit_api.memory = &k_kit_memory;
#endif
  *api = &k_kit_api;
  return FERRUM_STATUS_OK;
}
