// tests/cpu — the checked size helpers of <ferrum/common/checked.hpp> that every check and glue
// layer uses (the arithmetic rule): exact results where they fit, a report where they do not.
#include <catch2/catch.hpp>

#include <ferrum/common/check_support.hpp>
#include <ferrum/common/checked.hpp>

#include <cstdint>
#include <limits>

using namespace ferrum::common;

namespace {
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr uint64_t k32 = uint64_t{1} << 32;
constexpr uint64_t k63 = uint64_t{1} << 63;
}  // namespace

TEST_CASE("checked: add / mul / sub report what does not fit", "[checked]") {
  uint64_t r = 12345;
  CHECK(checked_add(kMax - 1, 1, r));
  CHECK(r == kMax);
  CHECK_FALSE(checked_add(kMax, 1, r));
  CHECK_FALSE(checked_add(k63, k63, r));  // 2^64 would wrap to 0
  CHECK(checked_mul(k32 - 1, k32 + 1, r));
  CHECK(r == kMax);
  CHECK_FALSE(checked_mul(k32, k32, r));  // 2^64 would wrap to 0
  CHECK_FALSE(checked_mul((uint64_t{1} << 62) + 1, 16, r));  // would wrap to 16
  CHECK(checked_mul(0, kMax, r));
  CHECK(r == 0);
  CHECK(checked_sub(5, 5, r));
  CHECK(r == 0);
  CHECK_FALSE(checked_sub(4, 5, r));
}

TEST_CASE("checked: saturating forms stop at 2^64 - 1", "[checked]") {
  CHECK(sat_add(kMax, 1) == kMax);
  CHECK(sat_add(3, 4) == 7);
  CHECK(sat_mul(k32, k32) == kMax);
  CHECK(sat_mul(6, 7) == 42);
  CHECK(sat_mul({4, k63, 0}) == 0);  // a zero dimension: nothing to hold, however large the rest
  CHECK(sat_mul({4, k63}) == kMax);
  CHECK(sat_mul({2, 3, 7}) == 42);
}

TEST_CASE("checked: Size expressions carry a sticky wrap", "[checked]") {
  const Size w = (Size(kMax - 1) + 2 * Size(1)) * Size(8);  // (q_heads + 2*kv_heads)*head_dim
  CHECK_FALSE(w.ok());
  CHECK(w.value == kMax);
  const Size fine = (Size(4) + 2 * Size(2)) * Size(8);
  CHECK(fine.ok());
  CHECK(fine.value == 64);
  CHECK_FALSE((Size(1) - Size(2)).ok());
  CHECK_FALSE((Size(7) / Size(0)).ok());
  CHECK((Size(k63) / Size(8) * Size(8)).value == k63);  // k/8*n, the GPTQ host array
  CHECK_FALSE((Size(k63) / Size(8) * Size(16)).ok());   // 2^60 * 16 = 2^64
  CHECK_FALSE((Size(kMax) + Size(1) - Size(5)).ok());  // a wrap is never undone
  CHECK(shape_size({Size(0), Size(kMax) * Size(2)}).wrapped);  // a wrapped dimension, even beside a 0
  CHECK(shape_size({Size(0), Size(kMax)}).value == 0);
  CHECK_FALSE(shape_size({Size(k32), Size(k32)}).ok());
  CHECK(shape_size({Size(k32), Size(k32 - 1)}).value == k32 * (k32 - 1));
}

TEST_CASE("checked: ranges and ceil_div without forming the sum", "[checked]") {
  CHECK(range_ok(2, 6, 8));
  CHECK_FALSE(range_ok(2, 7, 8));
  CHECK_FALSE(range_ok(kMax, 2, 8));   // kMax + 2 would wrap to 1
  CHECK_FALSE(range_ok(2, kMax - 1, 8));  // 2 + (2^64 - 2) would wrap to 0
  CHECK(range_ok(8, 0, 8));
  CHECK(ranges_overlap(0, 3, 4));
  CHECK_FALSE(ranges_overlap(0, 4, 4));
  CHECK_FALSE(ranges_overlap(0, kMax, 0));
  CHECK(ceil_div(kMax, 2) == k63);
  CHECK(ceil_div(9, 4) == 3);
  CHECK(ceil_div(8, 4) == 2);
  CHECK(ceil_div(5, 0) == 0);
}

TEST_CASE("checked: named_product names the fields of a wrapping product", "[checked]") {
  uint64_t p = 0;
  std::string why;
  CHECK(named_product({{"block_size", 16}, {"num_kv_heads", 4}, {"head_dim", 128}}, p, why));
  CHECK(p == 8192);
  CHECK(named_product({{"a", k63}, {"b", 4}, {"c", 0}}, p, why));  // 0 however large the others
  CHECK(p == 0);
  CHECK_FALSE(named_product({{"block_size", uint64_t{1} << 62}, {"num_kv_heads", 4}, {"head_dim", 4}}, p, why));
  CHECK(why ==
        "arguments 'block_size'/'num_kv_heads'/'head_dim': expected block_size·num_kv_heads·head_dim < 2^64, "
        "given 4611686018427387904·4·4 (the product wraps past 2^64)");
}
