// tests/cpu — errors (docs/spec.md §0.12): each misuse is a ferrum::Error with the right code and a
// message naming the op and the argument, and a failed call modifies nothing (outputs still poisoned,
// in-out buffers unchanged).
#include "helpers.hpp"

#include <limits>

using namespace cputest;
using ferrum::ErrorCode;

namespace {
constexpr ErrorCode kInvalid = ErrorCode::invalid_argument;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
}  // namespace

TEST_CASE("errors: buffer too small", "[errors]") {
  const Dtype d = ACT_DTYPE();
  INFO("dtype " << name(d));
  Buffer a = upload(d, rnd(d, 3 * 4, 1)), b = upload(d, rnd(d, 5 * 4, 2));
  SECTION("gemm out") {
    Buffer out = poisoned(d, 3 * 5 - 1);
    expect_error([&] { ctx().gemm({.a = a, .b = b, .out = out, .m = 3, .n = 5, .k = 4}); }, kInvalid, {"gemm", "out"});
    expect_all_poison(out);
  }
  SECTION("gemm a") {
    Buffer out = poisoned(d, 4 * 5);
    expect_error([&] { ctx().gemm({.a = a, .b = b, .out = out, .m = 4, .n = 5, .k = 4}); }, kInvalid, {"gemm", "'a'"});
    expect_all_poison(out);
  }
  SECTION("rms_norm w") {
    Buffer x = upload(d, rnd(d, 2 * 8, 3)), w = upload(d, rnd(d, 7, 4)), out = poisoned(d, 16);
    expect_error([&] { ctx().rms_norm({.x = x, .w = w, .eps = 1e-6f, .out = out, .tokens = 2, .dim = 8}); }, kInvalid, {"rms_norm", "w"});
    expect_all_poison(out);
  }
  SECTION("flash_attention k (kv_seq_stride)") {
    Buffer q = upload(d, rnd(d, 2 * 8, 5)), k = upload(d, rnd(d, 4 * 8, 6)), v = upload(d, rnd(d, 8 * 8, 7));
    Buffer out = poisoned(d, 16);
    expect_error([&] { ctx().flash_attention({.q = q, .k = k, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = 4, .pos_offset = 3, .num_heads = 2, .num_kv_heads = 1, .head_dim = 8, .causal = true, .scale = 0.0f, .kv_seq_stride = 8, .sliding_window = 0}); }, kInvalid,
                 {"flash_attention", "'k'"});
    expect_all_poison(out);
  }
  SECTION("split_qkv q") {
    Buffer qkv = upload(d, rnd(d, 2 * 24, 8));
    Buffer q = poisoned(d, 15), k = poisoned(d, 16), v = poisoned(d, 16);
    expect_error([&] { ctx().split_qkv({.qkv = qkv, .q = q, .k = k, .v = v, .tokens = 2, .q_dim = 8, .kv_dim = 8}); }, kInvalid, {"split_qkv", "'q'"});
    expect_all_poison(q);
    expect_all_poison(k);
    expect_all_poison(v);
  }
  SECTION("copy_slice range past the end") {
    Buffer src = upload(d, rnd(d, 10, 9)), dst = poisoned(d, 10);
    expect_error([&] { ctx().copy_slice({.src = src, .src_offset = 4, .dst = dst, .dst_offset = 0, .len = 7}); }, kInvalid, {"copy_slice", "src"});
    expect_error([&] { ctx().copy_slice({.src = src, .src_offset = 0, .dst = dst, .dst_offset = 5, .len = 6}); }, kInvalid, {"copy_slice", "dst"});
    expect_all_poison(dst);
  }
  SECTION("to_vec / read_typed / write_typed / zero_buffer len > count") {
    Buffer buf = poisoned(d, 4);
    expect_error([&] { (void)ctx().to_vec(buf, 5); }, kInvalid, {"to_vec", "len"});
    std::vector<uint8_t> host(5 * ft::dtype_size(dt(d)));
    expect_error([&] { ctx().read_typed({.src = buf, .dtype = d, .len = 5, .data = host.data()}); }, kInvalid, {"read_typed", "len"});
    expect_error([&] { ctx().write_typed({.dst = buf, .dtype = d, .data = host.data(), .data_len = 5}); }, kInvalid, {"write_typed", "data_len"});
    expect_error([&] { ctx().zero_buffer(buf, 5); }, kInvalid, {"zero_buffer", "len"});
    const std::vector<float> f(5, 1.0f);
    expect_error([&] { ctx().write_f32_to_activation(buf, f); }, kInvalid, {"write_f32_to_activation", "data_len"});
    expect_all_poison(buf);
  }
}

TEST_CASE("errors: dtype mismatch between activation buffers", "[errors]") {
  const Dtype d = ACT_DTYPE();
  const Dtype other = d == Dtype::f32 ? Dtype::f16 : Dtype::f32;
  INFO("dtype " << name(d) << " vs " << name(other));
  SECTION("rms_norm w") {
    Buffer x = upload(d, rnd(d, 16, 1)), w = upload(other, rnd(other, 8, 2)), out = poisoned(d, 16);
    expect_error([&] { ctx().rms_norm({.x = x, .w = w, .eps = 1e-6f, .out = out, .tokens = 2, .dim = 8}); }, kInvalid, {"rms_norm", "w"});
    expect_all_poison(out);
  }
  SECTION("gemm out") {
    Buffer a = upload(d, rnd(d, 16, 1)), b = upload(d, rnd(d, 16, 2)), out = poisoned(other, 4);
    expect_error([&] { ctx().gemm({.a = a, .b = b, .out = out, .m = 2, .n = 2, .k = 8}); }, kInvalid, {"gemm", "out"});
    expect_all_poison(out);
  }
  SECTION("flash_attention v") {
    Buffer q = upload(d, rnd(d, 8, 1)), k = upload(d, rnd(d, 32, 2)), v = upload(other, rnd(other, 32, 3));
    Buffer out = poisoned(d, 8);
    expect_error([&] { ctx().flash_attention({.q = q, .k = k, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = 4, .pos_offset = 3, .num_heads = 1, .num_kv_heads = 1, .head_dim = 8, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0}); }, kInvalid,
                 {"flash_attention", "'v'"});
    expect_all_poison(out);
  }
  SECTION("int dtype as activation") {
    Buffer x = upload(Dtype::i32, vec(8, 1.0)), out = poisoned(d, 8);
    expect_error([&] { ctx().gelu(x, out, 8); }, kInvalid, {"gelu", "x"});
    expect_all_poison(out);
  }
  SECTION("write_typed / read_typed dtype") {
    Buffer buf = poisoned(d, 4);
    std::vector<uint8_t> host(16);
    expect_error([&] { ctx().write_typed({.dst = buf, .dtype = Dtype::i32, .data = host.data(), .data_len = 1}); }, kInvalid, {"write_typed", "dtype"});
    expect_error([&] { ctx().read_typed({.src = buf, .dtype = Dtype::u8, .len = 1, .data = host.data()}); }, kInvalid, {"read_typed", "dtype"});
    expect_all_poison(buf);
  }
  SECTION("copy_slice int <-> float") {
    Buffer src = upload(Dtype::i32, vec(4, 3.0)), dst = poisoned(d, 4);
    expect_error([&] { ctx().copy_slice({.src = src, .src_offset = 0, .dst = dst, .dst_offset = 0, .len = 4}); }, kInvalid, {"copy_slice"});
    expect_all_poison(dst);
  }
}

TEST_CASE("errors: forbidden aliasing", "[errors]") {
  const Dtype d = ACT_DTYPE();
  SECTION("fused_add_rms_norm out == residual") {
    const vec r = rnd(d, 16, 1);
    Buffer res = upload(d, r), x = upload(d, rnd(d, 16, 2)), w = upload(d, rnd(d, 8, 3));
    const auto before = read_bytes(res);
    expect_error([&] { ctx().fused_add_rms_norm({.residual = res, .x = x, .w = w, .eps = 1e-6f, .out = res, .tokens = 2, .dim = 8}); }, kInvalid,
                 {"fused_add_rms_norm", "residual", "out"});
    CHECK(read_bytes(res) == before);
  }
  SECTION("gemm out == a") {
    Buffer a = upload(d, rnd(d, 16, 1));
    const auto before = read_bytes(a);
    expect_error([&] { ctx().gemm({.a = a, .b = a, .out = a, .m = 4, .n = 4, .k = 4}); }, kInvalid, {"gemm", "out"});
    CHECK(read_bytes(a) == before);
  }
  SECTION("copy_slice overlapping ranges of one buffer") {
    Buffer a = upload(d, rnd(d, 16, 1));
    const auto before = read_bytes(a);
    expect_error([&] { ctx().copy_slice({.src = a, .src_offset = 0, .dst = a, .dst_offset = 4, .len = 8}); }, kInvalid, {"copy_slice"});
    CHECK(read_bytes(a) == before);
  }
  SECTION("split_qkv_norm_rope_into_cache cache_k == cache_v") {
    Buffer qkv = upload(d, rnd(d, 3 * 8, 1)), q = poisoned(d, 8), c = poisoned(d, 4 * 8);
    expect_error(
        [&] {
          ctx().split_qkv_norm_rope_into_cache({.qkv = qkv, .q_norm_w = nullptr, .k_norm_w = nullptr, .cos = nullptr, .sin = nullptr, .q_out = q, .cache_k = c, .cache_v = c, .tokens = 1, .q_heads = 1, .kv_heads = 1, .head_dim = 8, .pos_offset = 0, .eps = 1e-6f,
                                               .qk_mode = ferrum::QkMode::copy, .cache_len = 0, .cache_capacity = 4});
        },
        kInvalid, {"split_qkv_norm_rope_into_cache", "cache_k", "cache_v"});
    expect_all_poison(q);
    expect_all_poison(c);
  }
}

TEST_CASE("errors: qk_mode / head_dim / positions / capacity", "[errors][rope]") {
  const Dtype d = ACT_DTYPE();
  INFO("dtype " << name(d));
  vec cs, sn;
  fr::rope_tables(8, 8, 10000.0, cs, sn);
  Buffer cos = upload(d, cs), sin = upload(d, sn), w = upload(d, rnd(d, 8, 1, 0.5, 1.5));
  Buffer in = upload(d, rnd(d, 2 * 2 * 8, 2));

  SECTION("qk_norm_rope mode 4 / -1") {
    Buffer out = poisoned(d, 32);
    expect_error([&] { ctx().qk_norm_rope({.input = in, .norm_w = &w, .cos = &cos, .sin = &sin, .output = out, .tokens = 2, .heads = 2, .head_dim = 8, .pos_offset = 0, .eps = 1e-6f, .mode = static_cast<ferrum::QkMode>(4)}); }, kInvalid,
                 {"qk_norm_rope", "'mode'"});
    expect_error([&] { ctx().qk_norm_rope({.input = in, .norm_w = &w, .cos = &cos, .sin = &sin, .output = out, .tokens = 2, .heads = 2, .head_dim = 8, .pos_offset = 0, .eps = 1e-6f, .mode = static_cast<ferrum::QkMode>(-1)}); }, kInvalid,
                 {"qk_norm_rope", "'mode'"});
    expect_all_poison(out);
  }
  SECTION("split_qkv_norm_rope qk_mode 4") {
    Buffer qkv = upload(d, rnd(d, 2 * 3 * 8, 3)), q = poisoned(d, 16), k = poisoned(d, 16), v = poisoned(d, 16);
    expect_error(
        [&] { ctx().split_qkv_norm_rope({.qkv = qkv, .q_norm_w = &w, .k_norm_w = &w, .cos = &cos, .sin = &sin, .q_out = q, .k_out = k, .v_out = v, .tokens = 2, .q_heads = 1, .kv_heads = 1, .head_dim = 8, .pos_offset = 0, .eps = 1e-6f, .qk_mode = static_cast<ferrum::QkMode>(4)}); }, kInvalid,
        {"split_qkv_norm_rope", "qk_mode"});
    expect_all_poison(q);
    expect_all_poison(k);
    expect_all_poison(v);
  }
  SECTION("odd head_dim with mode 1") {
    Buffer in7 = upload(d, rnd(d, 2 * 7, 4)), w7 = upload(d, rnd(d, 7, 5)), out = poisoned(d, 14);
    vec c7, s7;
    fr::rope_tables(8, 6, 10000.0, c7, s7);  // 3 columns: any table works, the head_dim is the error
    Buffer bc = upload(d, c7), bs = upload(d, s7);
    expect_error([&] { ctx().qk_norm_rope({.input = in7, .norm_w = &w7, .cos = &bc, .sin = &bs, .output = out, .tokens = 2, .heads = 1, .head_dim = 7, .pos_offset = 0, .eps = 1e-6f, .mode = ferrum::QkMode::rms_norm_neox}); }, kInvalid,
                 {"qk_norm_rope", "head_dim"});
    expect_all_poison(out);
  }
  SECTION("pos_offset + tokens > rows") {
    Buffer out = poisoned(d, 32);
    // tables hold 8 rows: positions 7 and 8 -> invalid
    expect_error([&] { ctx().qk_norm_rope({.input = in, .norm_w = nullptr, .cos = &cos, .sin = &sin, .output = out, .tokens = 2, .heads = 2, .head_dim = 8, .pos_offset = 7, .eps = 1e-6f, .mode = ferrum::QkMode::neox}); }, kInvalid,
                 {"qk_norm_rope", "pos_offset"});
    expect_all_poison(out);
    // exactly fitting is fine
    ctx().qk_norm_rope({.input = in, .norm_w = nullptr, .cos = &cos, .sin = &sin, .output = out, .tokens = 2, .heads = 2, .head_dim = 8, .pos_offset = 6, .eps = 1e-6f, .mode = ferrum::QkMode::neox});
    expect_written(out, 0, 32);
  }
  SECTION("cache_len + tokens > capacity") {
    Buffer qkv = upload(d, rnd(d, 2 * 3 * 8, 3)), q = poisoned(d, 16), ck = poisoned(d, 4 * 8), cv = poisoned(d, 4 * 8);
    expect_error(
        [&] {
          ctx().split_qkv_norm_rope_into_cache({.qkv = qkv, .q_norm_w = &w, .k_norm_w = &w, .cos = &cos, .sin = &sin, .q_out = q, .cache_k = ck, .cache_v = cv, .tokens = 2, .q_heads = 1, .kv_heads = 1, .head_dim = 8, .pos_offset = 3, .eps = 1e-6f, .qk_mode = ferrum::QkMode::rms_norm_neox, .cache_len = 3, .cache_capacity = 4});
        },
        kInvalid, {"split_qkv_norm_rope_into_cache", "cache_len"});
    expect_all_poison(q);
    expect_all_poison(ck);
    expect_all_poison(cv);
    Buffer nk = upload(d, rnd(d, 2 * 8, 6)), nv = upload(d, rnd(d, 2 * 8, 7));
    expect_error([&] { ctx().kv_cache_append_head_major({.cache_k = ck, .cache_v = cv, .cache_len = 3, .cache_capacity = 4, .new_k_head_major = nk, .new_v_head_major = nv, .new_tokens = 2, .nkv = 1, .hd = 8}); }, kInvalid,
                 {"kv_cache_append_head_major", "cache_len"});
    expect_all_poison(ck);
    expect_all_poison(cv);
  }
  SECTION("flash_attention kv_len > kv_seq_stride") {
    Buffer q = upload(d, rnd(d, 8, 1)), k = upload(d, rnd(d, 64, 2)), v = upload(d, rnd(d, 64, 3));
    Buffer out = poisoned(d, 8);
    expect_error([&] { ctx().flash_attention({.q = q, .k = k, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = 6, .pos_offset = 5, .num_heads = 1, .num_kv_heads = 1, .head_dim = 8, .causal = true, .scale = 0.0f, .kv_seq_stride = 4, .sliding_window = 0}); }, kInvalid,
                 {"flash_attention", "kv_len"});
    expect_all_poison(out);
  }
}

TEST_CASE("errors: GQA, non-finite eps / scale, zero inner dimension", "[errors]") {
  const Dtype d = ACT_DTYPE();
  INFO("dtype " << name(d));
  Buffer q = upload(d, rnd(d, 3 * 8, 1)), k = upload(d, rnd(d, 2 * 4 * 8, 2)), v = upload(d, rnd(d, 2 * 4 * 8, 3));
  SECTION("num_heads % num_kv_heads != 0") {
    Buffer out = poisoned(d, 3 * 8);
    expect_error([&] { ctx().flash_attention({.q = q, .k = k, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = 4, .pos_offset = 3, .num_heads = 3, .num_kv_heads = 2, .head_dim = 8, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0}); }, kInvalid,
                 {"flash_attention", "num_heads", "num_kv_heads"});
    expect_all_poison(out);
  }
  SECTION("num_kv_heads = 0") {
    Buffer out = poisoned(d, 3 * 8);
    expect_error([&] { ctx().flash_attention({.q = q, .k = k, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = 4, .pos_offset = 3, .num_heads = 3, .num_kv_heads = 0, .head_dim = 8, .causal = true, .scale = 0.0f, .kv_seq_stride = 0, .sliding_window = 0}); }, kInvalid,
                 {"flash_attention", "num_kv_heads"});
    expect_all_poison(out);
  }
  SECTION("non-finite scale") {
    Buffer out = poisoned(d, 8);
    for (float s : {kNaN, kInf, -kInf}) {
      INFO("scale " << s);
      expect_error([&] { ctx().flash_attention({.q = q, .k = k, .v = v, .out = out, .batch = 1, .q_len = 1, .kv_len = 4, .pos_offset = 3, .num_heads = 1, .num_kv_heads = 1, .head_dim = 8, .causal = true, .scale = s, .kv_seq_stride = 0, .sliding_window = 0}); }, kInvalid,
                   {"flash_attention", "scale"});
    }
    expect_all_poison(out);
    Buffer dst = upload(d, rnd(d, 8, 9));
    const auto before = read_bytes(dst);
    expect_error([&] { ctx().scaled_add_inplace({.dst = dst, .src = q, .scale = kInf, .len = 8}); }, kInvalid, {"scaled_add_inplace", "scale"});
    CHECK(read_bytes(dst) == before);
  }
  SECTION("non-finite / negative eps") {
    Buffer x = upload(d, rnd(d, 16, 4)), w = upload(d, rnd(d, 8, 5)), b = upload(d, rnd(d, 8, 6));
    Buffer out = poisoned(d, 16);
    for (float e : {kNaN, kInf, -1e-6f}) {
      INFO("eps " << e);
      expect_error([&] { ctx().rms_norm({.x = x, .w = w, .eps = e, .out = out, .tokens = 2, .dim = 8}); }, kInvalid, {"rms_norm", "eps"});
      expect_error([&] { ctx().layer_norm({.x = x, .gamma = w, .beta = b, .eps = e, .out = out, .tokens = 2, .dim = 8}); }, kInvalid, {"layer_norm", "eps"});
      Buffer res = upload(d, rnd(d, 16, 7));
      const auto before = read_bytes(res);
      expect_error([&] { ctx().fused_add_rms_norm({.residual = res, .x = x, .w = w, .eps = e, .out = out, .tokens = 2, .dim = 8}); }, kInvalid, {"fused_add_rms_norm", "eps"});
      CHECK(read_bytes(res) == before);
      expect_error([&] { ctx().qk_norm_rope({.input = x, .norm_w = &w, .cos = nullptr, .sin = nullptr, .output = out, .tokens = 2, .heads = 1, .head_dim = 8, .pos_offset = 0, .eps = e, .mode = ferrum::QkMode::copy}); }, kInvalid,
                   {"qk_norm_rope", "eps"});
    }
    expect_all_poison(out);
  }
  SECTION("dim = 0 with tokens > 0") {
    Buffer x = upload(d, rnd(d, 16, 4)), w = upload(d, rnd(d, 8, 5)), out = poisoned(d, 16);
    expect_error([&] { ctx().rms_norm({.x = x, .w = w, .eps = 1e-6f, .out = out, .tokens = 2, .dim = 0}); }, kInvalid, {"rms_norm", "dim"});
    expect_all_poison(out);
  }
}

TEST_CASE("errors: embedding id >= vocab, argmax n = 0, from_weight_bytes raw_len", "[errors]") {
  const Dtype d = ACT_DTYPE();
  INFO("dtype " << name(d));
  SECTION("embedding_lookup id >= vocab") {
    Buffer tbl = upload(d, rnd(d, 5 * 4, 1)), out = poisoned(d, 3 * 4);
    const std::vector<uint32_t> ids = {0, 4, 5};  // vocab 5: the last id is out of range
    expect_error([&] { ctx().embedding_lookup({.table = tbl, .ids = ids, .out = out, .dim = 4}); }, kInvalid, {"embedding_lookup", "ids"});
    expect_all_poison(out, "a failed lookup writes no row, not even the valid ones");
  }
  SECTION("embedding_lookup dim = 0") {
    Buffer tbl = upload(d, rnd(d, 8, 1)), out = poisoned(d, 8);
    const std::vector<uint32_t> ids = {0};
    expect_error([&] { ctx().embedding_lookup({.table = tbl, .ids = ids, .out = out, .dim = 0}); }, kInvalid, {"embedding_lookup", "dim"});
    expect_all_poison(out);
  }
  SECTION("argmax_rows_f16 n = 0 with m > 0") {
    Buffer logits = upload(d, rnd(d, 4, 1));
    expect_error([&] { (void)ctx().argmax_rows_f16({.logits = logits, .m = 2, .n = 0}); }, kInvalid, {"argmax_rows_f16", "'n'"});
  }
  SECTION("from_weight_bytes raw_len not a multiple of the element size") {
    const std::vector<uint8_t> raw(7, 0x3c);
    expect_error([&] { (void)ctx().from_weight_bytes({.raw = raw, .src_dtype = d, .dst_dtype = Dtype::f32}); }, kInvalid, {"from_weight_bytes", "raw_len"});
  }
  SECTION("from_weight_bytes non-float src") {
    const std::vector<uint8_t> raw(8, 1);
    expect_error([&] { (void)ctx().from_weight_bytes({.raw = raw, .src_dtype = Dtype::i32, .dst_dtype = d}); }, kInvalid, {"from_weight_bytes", "src_dtype"});
  }
}

TEST_CASE("errors: load_quant act_precision outside {EXACT, Q8}", "[errors][gguf]") {
  // 32 Q8_0 weights (one block), all zero bytes: any value of act_precision but 0 and 1 is refused
  // naming the op, the argument, the accepted values and the value given; no weight is made.
  const std::vector<uint8_t> bytes(34, 0);
  for (int32_t bad : {2, -1, 1 << 30}) {
    INFO("act_precision " << bad);
    expect_error([&] { (void)ctx().load_quant({.quant_type = FERRUM_QUANT_Q8_0, .bytes = bytes, .n_rows = 1, .n_cols = 32, .act_precision = bad}); },
                 kInvalid, {"load_quant", "argument 'act_precision'", "0 (FERRUM_QUANT_ACT_EXACT) or 1 (FERRUM_QUANT_ACT_Q8)",
                            "given " + std::to_string(bad)});
  }
  for (int32_t ok : {FERRUM_QUANT_ACT_EXACT, FERRUM_QUANT_ACT_Q8})
    CHECK(ctx().load_quant({.quant_type = FERRUM_QUANT_Q8_0, .bytes = bytes, .n_rows = 1, .n_cols = 32, .act_precision = ok}).get() != nullptr);
}

TEST_CASE("errors: ops whose CPU slot is NULL are unsupported", "[errors][unsupported]") {
  // The CPU plugin leaves the optional graph family NULL (docs/spec.md §8.1); the facade's default for
  // begin_graph_capture is "unsupported", and nothing is enqueued.
  SECTION("begin_graph_capture") {
    expect_error([&] { ctx().begin_graph_capture(); }, ErrorCode::unsupported, {"begin_graph_capture", "cpu"});
    CHECK(ctx().graph_capture_in_flight() == 0);
  }
  SECTION("set_decode_state") {
    expect_error([&] { ctx().set_decode_state({.token = 1, .step = 2}); }, ErrorCode::unsupported, {"set_decode_state", "cpu"});
  }
  SECTION("support matrix agrees") {
    CHECK_FALSE(backend().supports(ferrum::Op::begin_graph_capture));
    CHECK(backend().supports(ferrum::Op::gemm));
    CHECK(backend().supports(ferrum::Op::paged_decode_attention));
    CHECK(backend().supports(ferrum::Op::gguf_matmul));
    CHECK(backend().supports(ferrum::Op::all_reduce));  // facade default: single rank
  }
}

