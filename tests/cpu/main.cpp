// tests/cpu — Catch2 main of the CPU plugin conformance tests.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
