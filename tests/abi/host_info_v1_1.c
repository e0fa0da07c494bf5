/* ABI 1.1 growth of the host info (1.1 is not frozen yet, so no generated layout_v1_1 asserts):
 * report_error and its user data are appended after the 1.0 fields, whose offsets and 40-byte
 * size (asserted in layout_v1_0_gen.c) do not move. */
#include <stddef.h>
#include <ferrum/ferrum_plugin.h>

#define FA(cond) _Static_assert(cond, #cond)
FA(offsetof(ferrum_host_info, report_error) == FERRUM_HOST_INFO_SIZE_V1_0);
FA(offsetof(ferrum_host_info, report_error_user_data) == FERRUM_HOST_INFO_SIZE_V1_0 + 8);
FA(FERRUM_HOST_INFO_SIZE_V1_1 == 56);
FA(sizeof(ferrum_host_info) == FERRUM_HOST_INFO_SIZE_V1_1);
FA(FERRUM_HOST_INFO_SIZE == sizeof(ferrum_host_info));
