// CPU plugin: multi-head latent attention, absorbed form (docs/spec.md §14). Any R, P >= 1.
#include "glue.hpp"
#include "kernels/mla.hpp"

namespace ferrum::cpu {
namespace {

ferrum_status mla_attention(ferrum_context* ctx, const ferrum_mla_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_mla_attention_args& a, bool dry) -> Status {
    const char* op = "mla_attention";
    const uint64_t R = a.kv_lora_rank, P = a.qk_rope_head_dim;
    Status s = check_positive(op, "num_heads", a.num_heads, true);
    if (s.ok() && a.num_kv_heads != 1)
      s = invalid(plugin::format("%s: argument 'num_kv_heads': expected 1 (one latent KV stream), given %llu", op,
                                 (unsigned long long)a.num_kv_heads));
    if (s.ok()) s = check_positive(op, "kv_lora_rank", R, true);
    if (s.ok()) s = check_positive(op, "qk_rope_head_dim", P, true);
    uint64_t RP = 0;
    if (s.ok()) s = check_sum(op, "kv_lora_rank", "kv_lora_rank + qk_rope_head_dim", R, P, RP);
    if (s.ok() && a.head_dim != RP)
      s = invalid(plugin::format(
          "%s: argument 'head_dim': expected kv_lora_rank + qk_rope_head_dim = %llu + %llu, given %llu", op,
          (unsigned long long)R, (unsigned long long)P, (unsigned long long)a.head_dim));
    uint64_t pos_last = 0;  // the last query position + 1 must be representable
    if (s.ok()) s = check_sum(op, "pos_offset", "pos_offset + q_len", a.pos_offset, a.q_len, pos_last);
    if (s.ok() && (a.scale == 0.0f || !std::isfinite(a.scale)))
      s = invalid(plugin::format(
          "%s: argument 'scale': expected a finite non-zero value (MLA cannot derive a default), given %g", op,
          a.scale));
    const uint64_t S = a.kv_seq_stride ? a.kv_seq_stride : a.kv_len;
    if (s.ok() && a.kv_len > S)
      s = invalid(plugin::format("%s: argument 'kv_len': expected <= kv_seq_stride = %llu, given %llu", op,
                                 (unsigned long long)S, (unsigned long long)a.kv_len));
    const bool work = a.batch && a.q_len;
    if (!s.ok() || !work) return s;
    uint64_t q_need = 0, out_need = 0, c_need = 0, r_need = 0;
    s = check_product(op, {{"batch", a.batch}, {"num_heads", a.num_heads}, {"q_len", a.q_len}, {"head_dim", a.head_dim}}, q_need);
    if (s.ok()) s = check_product(op, {{"batch", a.batch}, {"num_heads", a.num_heads}, {"q_len", a.q_len}, {"kv_lora_rank", R}}, out_need);
    if (s.ok()) s = check_product(op, {{"batch", a.batch}, {"kv_seq_stride", S}, {"kv_lora_rank", R}}, c_need);
    if (s.ok()) s = check_product(op, {{"batch", a.batch}, {"kv_seq_stride", S}, {"qk_rope_head_dim", P}}, r_need);
    if (s.ok()) s = check_min_count(op, "q", a.q, q_need);
    if (s.ok()) s = check_min_count(op, "out", a.out, out_need);
    if (s.ok() && a.kv_len) s = check_min_count(op, "kv_compressed", a.kv_compressed, c_need);
    if (s.ok() && a.kv_len) s = check_min_count(op, "kv_rope", a.kv_rope, r_need);
    if (!s.ok() || dry) return s;
    return dispatch_float(a.q->dtype, unsupported("mla_attention: activation dtype"), [&](auto t) -> Status {
      using T = decltype(t);
      cpu::mla_attention<T>(data_of<const T>(a.q), data_of<const T>(a.kv_compressed), data_of<const T>(a.kv_rope),
                            data_of<T>(a.out), a.batch, a.q_len, a.kv_len, a.pos_offset, a.num_heads,
                            a.causal != 0, a.scale, a.kv_seq_stride, a.sliding_window, R, P);
      return ok_status();
    });
  });
}

}  // namespace

const ferrum_mla_table kMlaTable = {sizeof(ferrum_mla_table), FERRUM_MLA_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cpu
