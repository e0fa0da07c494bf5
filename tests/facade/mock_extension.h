// facade_mock's extension chain (ABI 1.1, mock_plugin.cpp), shared with the tests that look it up.
// The chain: "test.mock.math" version 2 (a real entry point) -> a record with a NULL id ->
// "test.mock.loop" version 1, whose `next` points at itself (a cyclic chain the host must bound).
// facade_mock_v1_0 declares ABI 1.0: its table ends before `extensions`, where it keeps a poison
// pointer that a host reading past struct_size would follow.
#pragma once

#include <cstdint>

#include <ferrum/ferrum_plugin.h>

#define MOCK_MATH_EXT_ID "test.mock.math"
#define MOCK_LOOP_EXT_ID "test.mock.loop"

struct mock_math_ext {
  ferrum_extension ext;  // id MOCK_MATH_EXT_ID, version 2
  int64_t (*mul_add)(int64_t a, int64_t b, int64_t c);  // a * b + c
};

// A struct larger than any record of the chain: extension_as<mock_big_ext> must refuse it.
struct mock_big_ext {
  ferrum_extension ext;
  void* entries[16];
};
