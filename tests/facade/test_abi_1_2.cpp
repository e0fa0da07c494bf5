// The ABI 1.2 addition on the real plugins of the build tree: load_quant's act_precision on the CPU
// plugin (FERRUM_QUANT_ACT_Q8 lets gguf_matmul quantise the activations, the default and a 1.1
// caller's 56-byte struct — struct_size = FERRUM_LOAD_QUANT_ARGS_SIZE_V1_0, in memory that ends
// there — keep them exact; values other than 0 and 1 are refused naming the argument). The C
// example plugin implements ABI 1.0: the facade's gate answers a non-default act_precision as
// unsupported on it.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <ferrum/ferrum.hpp>

#include "seeded.hpp"

using ferrum::Backend, ferrum::Buffer, ferrum::Context, ferrum::Dtype, ferrum::Op, ferrum::QWeight;
using ferrum::Error, ferrum::ErrorCode;
using Catch::Matchers::Contains;

namespace {

// A Q8_0 weight [rows, 64]: random quants, scale 1/64 per block.
std::vector<uint8_t> q8_0_blocks(uint64_t rows, uint32_t seed) {
  std::vector<uint8_t> b(rows * 2 * 34);
  const std::vector<float> r = seeded(b.size(), seed);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(static_cast<int>(r[i] * 127.0f));
  for (size_t blk = 0; blk < rows * 2; ++blk) {  // d = 2^-6 as f16 (0x2400)
    b[34 * blk] = 0x00;
    b[34 * blk + 1] = 0x24;
  }
  return b;
}

std::vector<float> matmul(Context& ctx, const QWeight& w, const Buffer& a, uint64_t rows) {
  Buffer out = ctx.alloc_typed(Dtype::f32, rows);
  ctx.gguf_matmul({.a = a, .weight = w, .out = out, .m = 1});
  return ctx.read_typed<float>(out, rows);
}

}  // namespace

TEST_CASE("load_quant act_precision on the CPU plugin: Q8 quantises, exact is the default and a 1.1 "
          "caller's",
          "[abi_1_2][cpu]") {
  Backend be = Backend::load("cpu");
  REQUIRE(be.abi_version() == "1." + std::to_string(FERRUM_ABI_VERSION_MINOR));  // 1.2 or later
  Context ctx = be.create_context(0, Dtype::f32);
  const uint64_t rows = 16;
  const std::vector<uint8_t> bytes = q8_0_blocks(rows, 1201);
  const std::span<const uint8_t> span(bytes);
  Buffer a = ctx.from_slice_typed<float>(seeded(64, 1202));

  const QWeight exact = ctx.load_quant({.quant_type = FERRUM_QUANT_Q8_0, .bytes = span, .n_rows = rows, .n_cols = 64});
  const QWeight named = ctx.load_quant({.quant_type = FERRUM_QUANT_Q8_0, .bytes = span, .n_rows = rows, .n_cols = 64,
                                        .act_precision = FERRUM_QUANT_ACT_EXACT});
  const QWeight q8 = ctx.load_quant({.quant_type = FERRUM_QUANT_Q8_0, .bytes = span, .n_rows = rows, .n_cols = 64,
                                     .act_precision = FERRUM_QUANT_ACT_Q8});
  const std::vector<float> r_exact = matmul(ctx, exact, a, rows), r_q8 = matmul(ctx, q8, a, rows);
  CHECK(matmul(ctx, named, a, rows) == r_exact);
  CHECK(r_q8 != r_exact);  // the activations were rounded to 8 bits (class A, not class F)

  // A 1.1 host's struct through the raw slot: exactly 56 bytes of heap memory, act_precision absent
  // (the full struct behind it says Q8): the weight computes exactly.
  const ferrum_plugin_api* api = be.api();
  ferrum_qweight* raw_w = nullptr;
  ferrum_load_quant_args full{};
  full.struct_size = FERRUM_LOAD_QUANT_ARGS_SIZE_V1_0;
  full.quant_type = FERRUM_QUANT_Q8_0;
  full.bytes = bytes.data();
  full.byte_len = bytes.size();
  full.n_rows = rows;
  full.n_cols = 64;
  full.weight = &raw_w;
  full.act_precision = FERRUM_QUANT_ACT_Q8;
  auto raw = std::unique_ptr<unsigned char[]>(new unsigned char[FERRUM_LOAD_QUANT_ARGS_SIZE_V1_0]);
  std::memcpy(raw.get(), &full, FERRUM_LOAD_QUANT_ARGS_SIZE_V1_0);
  REQUIRE(api->quant_matmul->load_quant(ctx.get(), reinterpret_cast<const ferrum_load_quant_args*>(raw.get())) ==
          FERRUM_STATUS_OK);
  {
    ferrum_gguf_matmul_args mm{};
    mm.struct_size = sizeof mm;
    Buffer out = ctx.alloc_typed(Dtype::f32, rows);
    mm.a = a.get();
    mm.weight = raw_w;
    mm.out = out.get();
    mm.m = 1;
    REQUIRE(api->quant_matmul->gguf_matmul(ctx.get(), &mm) == FERRUM_STATUS_OK);
    CHECK(ctx.read_typed<float>(out, rows) == r_exact);
    ferrum_qweight_release_args rel{};
    rel.struct_size = sizeof rel;
    rel.weight = raw_w;
    REQUIRE(api->quant_matmul->qweight_release(ctx.get(), &rel) == FERRUM_STATUS_OK);
  }

  // Values other than EXACT and Q8: INVALID_ARGUMENT naming the op, the argument and the value.
  for (int32_t bad : {2, -1}) {
    try {
      (void)ctx.load_quant({.quant_type = FERRUM_QUANT_Q8_0, .bytes = span, .n_rows = rows, .n_cols = 64,
                            .act_precision = bad});
      FAIL("act_precision " << bad << " should have thrown");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      CHECK_THAT(e.what(), Contains("load_quant") && Contains("argument 'act_precision'") &&
                               Contains("FERRUM_QUANT_ACT_Q8") && Contains("given " + std::to_string(bad)));
    }
  }
  full.struct_size = sizeof full;
  full.act_precision = 2;
  const ferrum::SupportAnswer no = ctx.query_support(Op::load_quant, &full);
  CHECK_FALSE(no.supported);
  CHECK_THAT(no.reason, Contains("argument 'act_precision'"));
}

TEST_CASE("the C example plugin implements ABI 1.0: the gate answers act_precision = Q8 as unsupported",
          "[abi_1_2][cexample]") {
  Backend be = Backend::load("cexample");
  REQUIRE(be.abi_version() == "1.0");
  Context ctx = be.create_context();
  const std::vector<uint8_t> bytes = q8_0_blocks(2, 1203);
  ferrum_qweight* w = nullptr;
  ferrum_load_quant_args a{};
  a.struct_size = sizeof a;
  a.quant_type = FERRUM_QUANT_Q8_0;
  a.bytes = bytes.data();
  a.byte_len = bytes.size();
  a.n_rows = 2;
  a.n_cols = 64;
  a.weight = &w;
  a.act_precision = FERRUM_QUANT_ACT_Q8;
  const ferrum::SupportAnswer no = ctx.query_support(Op::load_quant, &a);
  CHECK_FALSE(no.supported);
  CHECK(no.code == ErrorCode::unsupported);
  CHECK_THAT(no.reason, Contains("load_quant: argument 'act_precision' set to a non-default value needs ABI 1.2, "
                                 "plugin 'cexample' implements 1.0"));
}
