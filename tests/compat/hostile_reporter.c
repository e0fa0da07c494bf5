/*
 * A plugin that misuses ferrum_host_info.report_error, for the host's robustness test
 * (test_hostile_reports.cpp). device_props(ordinal) misbehaves by ordinal:
 *   0 OK;  1 reports a NULL message;  2 reports a 100,000-byte message;  3 reports with status OK,
 *   then fails;  4 reports UNSUPPORTED, returns INVALID_ARGUMENT;  5 reports from another thread;
 *   6 reports twice;  7 reports, then returns OK;  8 fails without reporting and without detail.
 * error_detail(NULL) answers "fallback <ordinal>" for 3..5 (one thread drives it: no TLS needed
 * for the test) and "" otherwise. Every other family is absent.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferrum/ferrum_plugin.h>

static const ferrum_host_info* g_host;
static char g_fallback[64];

static void report(ferrum_status status, const char* message) {
  if (g_host && g_host->struct_size >= FERRUM_HOST_INFO_SIZE_V1_1 && g_host->report_error)
    g_host->report_error(g_host->report_error_user_data, status, message);
}

static void* report_elsewhere(void* unused) {
  (void)unused;
  report(FERRUM_STATUS_INVALID_ARGUMENT, "device_props: reported from another thread 5");
  return NULL;
}

static ferrum_status hr_probe(int32_t* score, char* reason, uint64_t cap) {
  if (score) *score = 1;
  if (reason && cap) reason[0] = '\0';
  return FERRUM_STATUS_OK;
}
static ferrum_status hr_init(void) { return FERRUM_STATUS_OK; }
static void hr_shutdown(void) {}
static ferrum_status hr_device_count(uint64_t* count) {
  if (count) *count = 1;
  return FERRUM_STATUS_OK;
}

static ferrum_status hr_device_props(uint64_t ordinal, ferrum_device_props* props) {
  g_fallback[0] = '\0';
  switch (ordinal) {
    case 0:
      if (props && props->struct_size >= FERRUM_DEVICE_PROPS_SIZE_V1_0) {
        memset((char*)props + 8, 0, sizeof *props - 8);
        strcpy(props->name, "hostile reporter");
        props->kind = FERRUM_DEVICE_KIND_CPU;
      }
      return FERRUM_STATUS_OK;
    case 1: report(FERRUM_STATUS_INVALID_ARGUMENT, NULL); return FERRUM_STATUS_INVALID_ARGUMENT;
    case 2: {
      enum { kLong = 100000 };
      char* text = (char*)malloc(kLong + 1);
      if (!text) return FERRUM_STATUS_OUT_OF_MEMORY;
      memset(text, 'x', kLong);
      memcpy(text, "device_props: long ", 19);
      memcpy(text + kLong - 3, "END", 3);
      text[kLong] = '\0';
      report(FERRUM_STATUS_INVALID_ARGUMENT, text);
      free(text);
      return FERRUM_STATUS_INVALID_ARGUMENT;
    }
    case 3: /* a report that is not this call's (wrong status, wrong thread): the fallback */
    case 4:
    case 5: {
      pthread_t t;
      if (ordinal == 3) report(FERRUM_STATUS_OK, "device_props: reported with status OK 3");
      if (ordinal == 4) report(FERRUM_STATUS_UNSUPPORTED, "device_props: reported UNSUPPORTED 4");
      if (ordinal == 5 && pthread_create(&t, NULL, report_elsewhere, NULL) == 0) pthread_join(t, NULL);
      sprintf(g_fallback, "fallback %d", (int)ordinal);
      return FERRUM_STATUS_INVALID_ARGUMENT;
    }
    case 6:
      report(FERRUM_STATUS_INVALID_ARGUMENT, "device_props: first 6");
      report(FERRUM_STATUS_INVALID_ARGUMENT, "device_props: second 6");
      return FERRUM_STATUS_INVALID_ARGUMENT;
    case 7: report(FERRUM_STATUS_INVALID_ARGUMENT, "device_props: stale 7"); return FERRUM_STATUS_OK;
    default: return FERRUM_STATUS_INVALID_ARGUMENT; /* 8 and beyond: no detail at all */
  }
}

static ferrum_status hr_error_detail(ferrum_context* ctx, char* buf, uint64_t cap, uint64_t* needed) {
  size_t n = strlen(g_fallback);
  if (ctx) return FERRUM_STATUS_INVALID_ARGUMENT;
  if (needed) *needed = n + 1;
  if (buf && cap) {
    if (n >= cap) n = (size_t)cap - 1;
    memcpy(buf, g_fallback, n);
    buf[n] = '\0';
  }
  return FERRUM_STATUS_OK;
}

static ferrum_status hr_new_context(ferrum_context* unused, const ferrum_new_context_args* a) {
  (void)unused;
  (void)a;
  report(FERRUM_STATUS_UNSUPPORTED, "new_context: this plugin makes no contexts");
  return FERRUM_STATUS_UNSUPPORTED;
}

static const ferrum_memory_table k_memory = {.struct_size = sizeof(ferrum_memory_table)};
static const ferrum_context_table k_context = {.struct_size = sizeof(ferrum_context_table),
                                               .new_context = hr_new_context};
static const ferrum_plugin_api k_api = {
    .struct_size = sizeof(ferrum_plugin_api),
    .abi_major = FERRUM_ABI_VERSION_MAJOR,
    .abi_minor = FERRUM_ABI_VERSION_MINOR,
    .plugin_name = "hostile_reporter",
    .plugin_version = "0.0.1",
    .build_info = "test fixture",
    .probe = hr_probe,
    .init = hr_init,
    .shutdown = hr_shutdown,
    .device_count = hr_device_count,
    .device_props = hr_device_props,
    .error_detail = hr_error_detail,
    .memory = &k_memory,
    .context = &k_context,
};

FERRUM_PLUGIN_EXPORT ferrum_status ferrum_plugin_entry_v1(const ferrum_host_info* host,
                                                          const ferrum_plugin_api** api) {
  if (!api) return FERRUM_STATUS_INVALID_ARGUMENT;
  *api = NULL;
  if (!host || host->abi_major != FERRUM_ABI_VERSION_MAJOR) return FERRUM_STATUS_ABI_MISMATCH;
  g_host = host;
  *api = &k_api;
  return FERRUM_STATUS_OK;
}
