// Sanitizer defaults of every harness, linked into each (a reproducer replays with the same
// ones). A request for more memory than the harness allows is the library's to refuse
// (OUT_OF_MEMORY, or ferrum::Error from the facade), not a sanitizer report.
#define FERRUM_FUZZ_EXPORT extern "C" __attribute__((used, visibility("default")))

FERRUM_FUZZ_EXPORT const char* __asan_default_options() {
  return "allocator_may_return_null=1:max_allocation_size_mb=1024:detect_leaks=1";
}
FERRUM_FUZZ_EXPORT const char* __ubsan_default_options() {
  return "print_stacktrace=1:halt_on_error=1";
}
