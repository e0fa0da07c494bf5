// The ABI 1.1 additions on the real plugins of the build tree: query_attribute on the CPU plugin
// answers what the 1.0 supports_* slots answer, refuses unknown attributes; read_typed's src_offset
// reads a slice, is bounded by the buffer, and a 1.0 caller's 40-byte struct (struct_size =
// FERRUM_READ_TYPED_ARGS_SIZE_V1_0, in memory that ends there) still runs as src_offset = 0. The C
// example plugin implements ABI 1.0: the facade's gate refuses both additions on it.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <ferrum/ferrum.hpp>

#include "seeded.hpp"

using ferrum::Backend, ferrum::Buffer, ferrum::Context, ferrum::Dtype;
using ferrum::Error, ferrum::ErrorCode;
using Catch::Matchers::Contains;

TEST_CASE("query_attribute on the CPU plugin answers like the supports_* slots", "[abi_1_1][cpu]") {
  Backend be = Backend::load("cpu");
  REQUIRE(be.abi_version() == "1." + std::to_string(FERRUM_ABI_VERSION_MINOR));  // 1.1 or later
  Context ctx = be.create_context();
  CHECK(ctx.query_attribute(FERRUM_ATTRIBUTE_DEVICE_ORDINAL_SCOPE) ==
        (be.supports_device_ordinal_scope() ? 1u : 0u));
  CHECK(ctx.query_attribute(FERRUM_ATTRIBUTE_LLAMA_FAMILY_BATCHED_DECODE) ==
        ctx.supports_llama_family_batched_decode());
  CHECK(ctx.query_attribute(FERRUM_ATTRIBUTE_PAGED_KV) == ctx.supports_paged_kv());
  CHECK(ctx.query_attribute(FERRUM_ATTRIBUTE_VARLEN_QKV) == ctx.supports_varlen_qkv());
  CHECK(ctx.query_attribute(FERRUM_ATTRIBUTE_VLLM_PAGED_ATTN) == ctx.supports_vllm_paged_attn());
  // An attribute of a later minor: UNSUPPORTED (a newer host may ask); 0 and negatives: invalid.
  try {
    (void)ctx.query_attribute(FERRUM_ATTRIBUTE_COUNT_V1_1 + 1);
    FAIL("an unknown attribute should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("query_attribute") && Contains("argument 'attribute'") &&
                             Contains("6 is not an attribute this plugin knows"));
  }
  for (int32_t bad : {0, -1}) {
    try {
      (void)ctx.query_attribute(bad);
      FAIL("attribute " << bad << " should have thrown");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      CHECK_THAT(e.what(), Contains("argument 'attribute'") && Contains("given " + std::to_string(bad)));
    }
  }
}

TEST_CASE("read_typed src_offset on the CPU plugin: a slice, bounded, and 1.0 callers unchanged",
          "[abi_1_1][cpu]") {
  Backend be = Backend::load("cpu");
  Context ctx = be.create_context();
  const std::vector<float> v = seeded(32, 1105);
  Buffer b = ctx.from_slice_typed<float>(v);

  std::vector<float> out(5, -7.0f);
  ctx.read_typed({.src = b, .dtype = Dtype::f32, .len = 5, .data = out.data(), .src_offset = 27});
  CHECK(out == std::vector<float>(v.begin() + 27, v.end()));

  // src_offset + len beyond the count: INVALID_ARGUMENT naming both, nothing written.
  std::vector<float> poisoned(5, -7.0f);
  try {
    ctx.read_typed({.src = b, .dtype = Dtype::f32, .len = 5, .data = poisoned.data(), .src_offset = 28});
    FAIL("src_offset 28 + len 5 > 32 should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK_THAT(e.what(), Contains("read_typed") && Contains("'src'") && Contains("src_offset + len"));
  }
  // A sum that wraps past 2^64 is named as such, not read as a small number.
  try {
    ctx.read_typed({.src = b, .dtype = Dtype::f32, .len = 5, .data = poisoned.data(), .src_offset = ~0ull - 2});
    FAIL("a wrapping src_offset + len should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_argument);
    CHECK_THAT(e.what(), Contains("src_offset"));
  }
  CHECK(poisoned == std::vector<float>(5, -7.0f));

  // A 1.0 host's struct through the raw slot: exactly 40 bytes of heap memory, src_offset absent.
  const ferrum_plugin_api* api = be.api();
  auto raw = std::unique_ptr<unsigned char[]>(new unsigned char[FERRUM_READ_TYPED_ARGS_SIZE_V1_0]);
  ferrum_read_typed_args full{};
  full.struct_size = FERRUM_READ_TYPED_ARGS_SIZE_V1_0;
  full.src = b.get();
  full.dtype = FERRUM_DTYPE_F32;
  full.len = 3;
  std::vector<float> head(3, -7.0f);
  full.data = head.data();
  std::memcpy(raw.get(), &full, FERRUM_READ_TYPED_ARGS_SIZE_V1_0);
  REQUIRE(api->memory->read_typed(ctx.get(), reinterpret_cast<const ferrum_read_typed_args*>(raw.get())) ==
          FERRUM_STATUS_OK);
  CHECK(head == std::vector<float>(v.begin(), v.begin() + 3));
  // A struct_size below the 1.0 size is still refused.
  full.struct_size = FERRUM_READ_TYPED_ARGS_SIZE_V1_0 - 8;
  CHECK(api->memory->read_typed(ctx.get(), &full) == FERRUM_STATUS_INVALID_ARGUMENT);
}

TEST_CASE("the C example plugin implements ABI 1.0: the gate refuses the 1.1 additions on it",
          "[abi_1_1][cexample]") {
  Backend be = Backend::load("cexample");
  REQUIRE(be.abi_version() == "1.0");
  Context ctx = be.create_context();
  try {
    (void)ctx.query_attribute(FERRUM_ATTRIBUTE_PAGED_KV);
    FAIL("query_attribute should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("query_attribute") &&
                             Contains("needs ABI 1.1, plugin 'cexample' implements 1.0"));
  }
  const std::vector<float> v = seeded(8, 1106);
  Buffer b = ctx.from_slice_typed<float>(v);
  std::vector<float> out(2, -7.0f);
  try {
    ctx.read_typed({.src = b, .dtype = Dtype::f32, .len = 2, .data = out.data(), .src_offset = 6});
    FAIL("src_offset on a 1.0 plugin should have thrown");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::unsupported);
    CHECK_THAT(e.what(), Contains("argument 'src_offset'") && Contains("implements 1.0"));
  }
  CHECK(out == std::vector<float>(2, -7.0f));
  CHECK(ctx.read_typed<float>(b, 8) == v);  // src_offset at its default: runs
}

TEST_CASE("extension chain: the CPU plugin declares none, the 1.0 C example plugin has no chain",
          "[abi_1_1][cpu][cexample]") {
  Backend cpu = Backend::load("cpu");
  REQUIRE(cpu.api()->struct_size >= FERRUM_PLUGIN_API_SIZE_V1_1);
  CHECK(cpu.api()->extensions == nullptr);
  CHECK(cpu.extension("ferrum.cuda.stream") == nullptr);
  Backend cex = Backend::load("cexample");
  REQUIRE(cex.abi_version() == "1.0");
  CHECK(cex.extension("ferrum.cuda.stream") == nullptr);
}
