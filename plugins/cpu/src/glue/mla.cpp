// CPU plugin: multi-head latent attention, absorbed form (docs/spec.md §14). Any R, P >= 1.
#include <ferrum/common/attention_rules.hpp>

#include "glue.hpp"
#include "kernels/mla.hpp"

namespace ferrum::cpu {
namespace {

ferrum_status mla_attention(ferrum_context* ctx, const ferrum_mla_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_mla_attention_args& a, bool dry) -> Status {
    const uint64_t R = a.kv_lora_rank, P = a.qk_rope_head_dim;
    uint64_t S = 0;
    bool work = false;
    Status s = plugin::rules::check_mla_attention(a, S, work);
    if (!s.ok() || !work || dry) return s;
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
