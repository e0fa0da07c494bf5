// The ABI 1.1 extension chain through the facade: Backend::extension / extension_as against
// facade_mock's chain (mock_extension.h: a real record, a NULL-id record, a self-cyclic record)
// and against facade_mock_v1_0, whose 1.0-sized table keeps a poison pointer where a 1.1 table
// has `extensions`; find_extension against hand-built tables (chains longer than the bound, a
// short table declaring 1.1, a record too short for its head).
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <ferrum/ferrum.hpp>

#include "mock_counters.hpp"
#include "mock_extension.h"

using ferrum::Backend;

namespace {

Backend load(const char* path) {
  REQUIRE(mock_counters::g_counters_set);
  return Backend::load(path);
}

// A 1.1 table whose chain is `records` (linked in order), everything else NULL.
ferrum_plugin_api table_with(std::vector<ferrum_extension>& records) {
  for (size_t i = 0; i + 1 < records.size(); ++i) records[i].next = &records[i + 1];
  ferrum_plugin_api t{};
  t.struct_size = sizeof t;
  t.abi_major = FERRUM_ABI_VERSION_MAJOR;
  t.abi_minor = 1;
  t.extensions = records.empty() ? nullptr : &records[0];
  return t;
}

std::vector<ferrum_extension> numbered_chain(size_t n, std::vector<std::string>& ids) {
  ids.resize(n);
  std::vector<ferrum_extension> r(n);
  for (size_t i = 0; i < n; ++i) {
    ids[i] = "test.chain." + std::to_string(i);
    r[i] = {sizeof(ferrum_extension), ids[i].c_str(), 1, 0, nullptr};
  }
  return r;
}

}  // namespace

TEST_CASE("extensions: lookup by id and version on the 1.1 mock's chain", "[facade][extensions]") {
  Backend be = load(FACADE_MOCK_PATH);
  REQUIRE(be.abi_version() == "1." + std::to_string(FERRUM_ABI_VERSION_MINOR));  // 1.1 or later

  const ferrum_extension* math = be.extension(MOCK_MATH_EXT_ID);
  REQUIRE(math != nullptr);
  CHECK(std::string(math->id) == MOCK_MATH_EXT_ID);
  CHECK(math->version == 2);
  CHECK(be.extension(MOCK_MATH_EXT_ID, 2) == math);
  CHECK(be.extension(MOCK_MATH_EXT_ID, 3) == nullptr);  // too old a record for the caller

  // Past the NULL-id record; a prefix or an extension of an id is another id.
  const ferrum_extension* loop = be.extension(MOCK_LOOP_EXT_ID, 1);
  REQUIRE(loop != nullptr);
  CHECK(loop->next == loop);
  CHECK(be.extension("test.mock") == nullptr);
  CHECK(be.extension("test.mock.mathematics") == nullptr);
  CHECK(be.extension("") == nullptr);

  // The typed view calls into the plugin; seeded values.
  const mock_math_ext* m = be.extension_as<mock_math_ext>(MOCK_MATH_EXT_ID, 1);
  REQUIRE(m != nullptr);
  REQUIRE(m->mul_add != nullptr);
  std::mt19937 rng(1201);
  std::uniform_int_distribution<int64_t> d(-100000, 100000);
  for (int i = 0; i < 8; ++i) {
    const int64_t a = d(rng), b = d(rng), c = d(rng);
    CHECK(m->mul_add(a, b, c) == a * b + c);
  }
  // A struct larger than the record: refused, not read past the record.
  CHECK(be.extension_as<mock_big_ext>(MOCK_MATH_EXT_ID) == nullptr);
  CHECK(be.extension_as<mock_math_ext>(MOCK_LOOP_EXT_ID) == nullptr);
}

TEST_CASE("extensions: a cyclic chain ends at the bound", "[facade][extensions]") {
  Backend be = load(FACADE_MOCK_PATH);
  // Absent ids and a version no record has walk into the self-cycle and come back.
  CHECK(be.extension("test.absent") == nullptr);
  CHECK(be.extension(MOCK_LOOP_EXT_ID, 2) == nullptr);
  CHECK(be.extension(MOCK_MATH_EXT_ID, 99) == nullptr);
}

TEST_CASE("extensions: a 1.0 plugin has none and its table is not read past struct_size",
          "[facade][extensions]") {
  Backend be = load(FACADE_MOCK_V1_0_PATH);
  REQUIRE(be.abi_version() == "1.0");
  REQUIRE(be.api()->struct_size == FERRUM_PLUGIN_API_SIZE_V1_0);
  // Behind its struct_size sits a poison pointer (0x10): following it would crash.
  CHECK(be.extension(MOCK_MATH_EXT_ID) == nullptr);
  CHECK(be.extension(MOCK_LOOP_EXT_ID) == nullptr);
  CHECK(be.extension_as<mock_math_ext>(MOCK_MATH_EXT_ID) == nullptr);
  CHECK(Backend().extension(MOCK_MATH_EXT_ID) == nullptr);  // an empty Backend
}

TEST_CASE("extensions: find_extension bounds the walk and checks sizes", "[facade][extensions]") {
  std::vector<std::string> ids;
  std::vector<ferrum_extension> r = numbered_chain(FERRUM_EXTENSION_CHAIN_MAX + 6, ids);
  ferrum_plugin_api t = table_with(r);
  // The last record within the bound is found, the first past it is not.
  CHECK(ferrum::find_extension(&t, ids[FERRUM_EXTENSION_CHAIN_MAX - 1]) == &r[FERRUM_EXTENSION_CHAIN_MAX - 1]);
  CHECK(ferrum::find_extension(&t, ids[FERRUM_EXTENSION_CHAIN_MAX]) == nullptr);
  CHECK(ferrum::find_extension(&t, ids[0]) == &r[0]);

  // A table declaring 1.1 with a struct_size that ends before `extensions`; one declaring 1.0
  // whose size covers it: neither chain is read.
  ferrum_plugin_api shorter = t;
  shorter.struct_size = FERRUM_PLUGIN_API_SIZE_V1_0;
  CHECK(ferrum::find_extension(&shorter, ids[0]) == nullptr);
  ferrum_plugin_api old = t;
  old.abi_minor = 0;
  CHECK(ferrum::find_extension(&old, ids[0]) == nullptr);
  CHECK(ferrum::find_extension(nullptr, ids[0]) == nullptr);

  // A record too short for its head ends the walk (its `next` cannot be trusted).
  r[3].struct_size = sizeof(ferrum_extension) - 8;
  CHECK(ferrum::find_extension(&t, ids[2]) == &r[2]);
  CHECK(ferrum::find_extension(&t, ids[3]) == nullptr);
  CHECK(ferrum::find_extension(&t, ids[4]) == nullptr);
  r[3].struct_size = sizeof(ferrum_extension);

  // A NULL id is skipped, the walk goes on.
  r[1].id = nullptr;
  CHECK(ferrum::find_extension(&t, ids[1]) == nullptr);
  CHECK(ferrum::find_extension(&t, ids[2]) == &r[2]);

  // A two-record cycle.
  r[5].next = &r[4];
  CHECK(ferrum::find_extension(&t, ids[4]) == &r[4]);
  CHECK(ferrum::find_extension(&t, ids[6]) == nullptr);
}
