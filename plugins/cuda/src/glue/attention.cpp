// CUDA plugin: contiguous KV and attention, batched per-cache decode (docs/spec.md §5, §5.1).
//
// The op-specific checks mirror the CPU plugin's (same messages); the kernels live in
// src/kernels/attention (flash.hpp says which path runs when).
//
// Per-context state (behind ferrum_context::staging, created on first use, freed by
// release_attention_state from context_destroy):
//   * split-KV scratch: one device block at a stable address, grown eagerly (to at least twice
//     its size) outside captures and zeroed once when allocated (it starts with the decode's
//     arrival counters, which every launch leaves zero); a capture that would need more gets UNSUPPORTED with the
//     size (§0.4). Outgrown blocks are kept until the context dies, because a stored graph may
//     still write to them.
//   * the §5.1 staging tables: APPEND [128 slots][64] cache pointers and ATTENTION [128][64]
//     (K, V) pairs in device memory (read by captured launches when they replay), with host
//     mirrors of the handles (compared during a capture). Eager batched calls pass their
//     cache pointers by value as a kernel parameter (attn::ItemPtrs, 1 KiB): the launch copies
//     them, so an eager call needs neither staging memory nor any host/device ordering.
#include <array>
#include <cmath>
#include <new>
#include <vector>

#include <ferrum/common/attention_rules.hpp>

#include "cuda_check.hpp"
#include "cuda_plugin.hpp"
#include "kernels/attention/flash.hpp"
#include "kernels/attention/mla.hpp"
#include "memory.hpp"

namespace ferrum::cuda::glue {
namespace {

constexpr uint64_t kSlots = kBatchedSlots;
constexpr uint64_t kItems = kBatchedItems;
static_assert(kItems == attn::kMaxItems, "the kernels' item table holds batched_items items");

struct AttnState {
  int sm_count = 0;
  void* scratch = nullptr;
  uint64_t scratch_bytes = 0;
  std::vector<void*> retired;  // outgrown scratch blocks (a stored graph may still use them)
  void** append_dev = nullptr;  // device [kSlots][kItems]
  void** attn_dev = nullptr;    // device [kSlots][kItems][2]
  std::array<uint64_t, kSlots> append_m{};
  std::array<uint64_t, kSlots> attn_m{};
  std::vector<const ferrum_buffer*> append_h = std::vector<const ferrum_buffer*>(kSlots * kItems, nullptr);
  std::vector<const ferrum_buffer*> attn_h = std::vector<const ferrum_buffer*>(kSlots * kItems * 2, nullptr);
  std::vector<void*> append_ptr = std::vector<void*>(kSlots * kItems, nullptr);   // host copy of append_dev
  std::vector<void*> attn_ptr = std::vector<void*>(kSlots * kItems * 2, nullptr);  // host copy of attn_dev
};

// The context's state, created on first use (host memory only; safe during a capture).
Status state_of(ferrum_context& c, AttnState*& out) {
  if (!c.staging) {
    auto* st = new (std::nothrow) AttnState;
    if (!st) return {FERRUM_STATUS_OUT_OF_MEMORY, "attention: out of host memory"};
    int sms = 0;
    const cudaError_t err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, static_cast<int>(c.device));
    if (err != cudaSuccess) {
      delete st;
      return from_device(cuda_error_status(err, "cudaDeviceGetAttribute(multiProcessorCount)", __FILE__, __LINE__));
    }
    st->sm_count = sms;
    c.staging = st;
  }
  out = static_cast<AttnState*>(c.staging);
  return ok_status();
}

// ---- checks (the rules shared with the CPU plugin come from common/*_rules.hpp) ---------------
// Grows the split-KV scratch to `bytes` (never during a capture: §0.4).
Status ensure_scratch(ferrum_context& c, AttnState& st, uint64_t bytes, const char* op) {
  if (bytes <= st.scratch_bytes) return ok_status();
  if (c.capturing)
    return unsupported(plugin::format("%s: needs %llu bytes of scratch (split-KV partials, temporaries) but the context has %llu and cannot "
                                      "grow it during a graph capture (run the op once eagerly before capturing)",
                                      op, (unsigned long long)bytes, (unsigned long long)st.scratch_bytes));
  const uint64_t grow = bytes > 2 * st.scratch_bytes ? bytes : 2 * st.scratch_bytes;
  void* p = nullptr;
  Status s = from_device(cuda::alloc(static_cast<int>(c.device), grow, &p));
  if (!s.ok()) {
    s.message = std::string(op) + ": split-KV scratch: " + s.message;
    return s;
  }
  // The block starts with the split groups' arrival counters, which must be zero before the
  // first launch (each launch leaves them zero): clear the whole block once, stream-ordered
  // before any kernel that uses it (never during a capture: growth is refused above).
  s = from_device(memset_async(*c.dev, p, grow));
  if (!s.ok()) {
    (void)cuda::free(static_cast<int>(c.device), p);
    s.message = std::string(op) + ": split-KV scratch: " + s.message;
    return s;
  }
  if (st.scratch) st.retired.push_back(st.scratch);
  st.scratch = p;
  st.scratch_bytes = grow;
  return ok_status();
}

// Checks scratch for `p`, then launches.
Status run_flash(ferrum_context& c, const attn::FlashParams& p, const char* op) {
  AttnState* st = nullptr;
  Status s = state_of(c, st);
  if (!s.ok()) return s;
  s = ensure_scratch(c, *st, attn::flash_scratch_bytes(p, st->sm_count), op);
  if (!s.ok()) return s;
  return from_device(attn::flash_attention(p, st->sm_count, st->scratch, c.dev->stream));
}

// ---- ops ------------------------------------------------------------------------------------------
ferrum_status kv_cache_append_head_major(ferrum_context* ctx, const ferrum_kv_cache_append_head_major_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_kv_cache_append_head_major_args& a, bool dry) -> Status {
    const char* op = "kv_cache_append_head_major";
    const bool dev_state = c.dev_state_mode && a.new_tokens == 1;  // §8.2: cache_len is not read
    if (!dev_state) {
      Status s = check_sum_le(op, "cache_len", "cache_len + new_tokens", a.cache_len, a.new_tokens, "cache_capacity",
                              a.cache_capacity);
      if (!s.ok()) return s;
    }
    Status s = check_devices(op, c, {{"cache_k", a.cache_k}, {"cache_v", a.cache_v},
                                     {"new_k_head_major", a.new_k_head_major}, {"new_v_head_major", a.new_v_head_major}});
    if (!s.ok() || dry || a.new_tokens == 0 || a.nkv == 0 || a.hd == 0) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    return from_device(attn::kv_append_head_major(a.cache_k->data, a.cache_v->data, a.new_k_head_major->data,
                                                  a.new_v_head_major->data, dtype_size(a.cache_k->dtype), a.cache_len,
                                                  a.cache_capacity, a.new_tokens, a.nkv, a.hd,
                                                  dev_state ? c.dev_state : nullptr, c.dev->stream));
  });
}

ferrum_status flash_attention(ferrum_context* ctx, const ferrum_flash_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_flash_attention_args& a, bool dry) -> Status {
    const char* op = "flash_attention";
    const bool work = a.batch && a.q_len;
    const bool dev_state = c.dev_state_mode && a.q_len == 1 && a.batch == 1;  // §8.2: kv_len, pos_offset not read
    uint64_t S = 0, kv_elems = 0, out_bytes = 0;
    Status s = check_flash_attention(op, a, dev_state, S, kv_elems);
    if (!s.ok() || !work) return s;
    s = check_product(op, {{"batch", a.batch}, {"num_heads", a.num_heads}, {"q_len", a.q_len}, {"head_dim", a.head_dim},
                           {"element size", a.out ? dtype_size(a.out->dtype) : 0}},
                      out_bytes);
    if (s.ok()) s = check_devices(op, c, {{"q", a.q}, {"k", a.k}, {"v", a.v}, {"out", a.out}});
    if (s.ok()) s = check_attention_head_dim(op, "head_dim", a.head_dim);
    if (!s.ok() || dry) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    if (!dev_state && a.kv_len == 0)  // no keys: +0.0 rows
      return from_device(memset_async(*c.dev, a.out->data, out_bytes));
    attn::FlashParams p;
    p.dtype = a.q->dtype;
    p.q = a.q->data;
    p.k = a.k->data;
    p.v = a.v->data;
    p.out = a.out->data;
    p.batch = a.batch;
    p.q_len = a.q_len;
    p.kv_len = a.kv_len;
    p.pos_offset = a.pos_offset;
    p.num_heads = a.num_heads;
    p.num_kv_heads = a.num_kv_heads;
    p.head_dim = a.head_dim;
    p.causal = a.causal != 0;
    p.scale = softmax_scale(a.scale, a.head_dim);
    p.S = S;
    p.window = a.sliding_window;
    p.len_source = dev_state ? attn::LenSource::dev_state : attn::LenSource::host;
    p.dev_state = c.dev_state;
    p.len_bound = S;
    return run_flash(c, p, op);
  });
}

ferrum_status populate_batched_pointers(ferrum_context* ctx, const ferrum_populate_batched_pointers_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_populate_batched_pointers_args& a, bool dry) -> Status {
    bool work = false;
    Status s = check_populate_batched_pointers(a, static_cast<int64_t>(c.device), work);
    if (!s.ok() || !work) return s;
    if (dry) return ok_status();
    AttnState* st = nullptr;
    s = state_of(c, st);
    if (!s.ok()) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    s = from_device(cuda::sync(*c.dev));  // a replay may be reading the slots
    if (!s.ok()) return s;
    if (!st->append_dev) {
      void* p = nullptr;
      s = from_device(cuda::alloc(static_cast<int>(c.device), kSlots * kItems * sizeof(void*), &p));
      if (!s.ok()) return s;
      st->append_dev = static_cast<void**>(p);
    }
    if (!st->attn_dev) {
      void* p = nullptr;
      s = from_device(cuda::alloc(static_cast<int>(c.device), kSlots * kItems * 2 * sizeof(void*), &p));
      if (!s.ok()) return s;
      st->attn_dev = static_cast<void**>(p);
    }
    for (uint64_t l = 0; l < a.num_layers; ++l) {
      const uint64_t ks = l, vs = l + kMaxLayersForGraph;
      st->append_m[ks] = st->append_m[vs] = st->attn_m[l] = a.m;
      for (uint64_t i = 0; i < kItems; ++i) {
        // arith-ok: l < num_layers <= 64 and i < m <= batched_items (checked above)
        const ferrum_buffer* kb = i < a.m ? a.k_caches[l * a.m + i] : nullptr;
        const ferrum_buffer* vb = i < a.m ? a.v_caches[l * a.m + i] : nullptr;  // arith-ok: as above
        st->append_h[ks * kItems + i] = kb;
        st->append_h[vs * kItems + i] = vb;
        st->attn_h[(l * kItems + i) * 2] = kb;
        st->attn_h[(l * kItems + i) * 2 + 1] = vb;
        st->append_ptr[ks * kItems + i] = kb ? kb->data : nullptr;
        st->append_ptr[vs * kItems + i] = vb ? vb->data : nullptr;
        st->attn_ptr[(l * kItems + i) * 2] = kb ? kb->data : nullptr;
        st->attn_ptr[(l * kItems + i) * 2 + 1] = vb ? vb->data : nullptr;
      }
    }
    const uint64_t rows = a.num_layers * kItems;  // arith-ok: num_layers <= 64
    s = from_device(h2d_async(*c.dev, st->append_dev, st->append_ptr.data(), rows * sizeof(void*)));
    if (s.ok())
      s = from_device(h2d_async(*c.dev, st->append_dev + kMaxLayersForGraph * kItems,
                                st->append_ptr.data() + kMaxLayersForGraph * kItems, rows * sizeof(void*)));
    if (s.ok()) s = from_device(h2d_async(*c.dev, st->attn_dev, st->attn_ptr.data(), rows * 2 * sizeof(void*)));
    if (s.ok()) s = from_device(cuda::sync(*c.dev));  // finished when it returns
    return s;
  });
}

ferrum_status kv_cache_append_batched_per_cache(ferrum_context* ctx,
                                                const ferrum_kv_cache_append_batched_per_cache_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_kv_cache_append_batched_per_cache_args& a, bool dry) -> Status {
    const char* op = "kv_cache_append_batched_per_cache";
    bool work = false;
    if (Status s = check_kv_append_batched(a, static_cast<int64_t>(c.device), work); !s.ok() || !work) return s;
    const int32_t dt = a.new_data ? a.new_data->dtype : 0;
    Status s = check_devices(op, c, {{"new_data", a.new_data}, {"cache_lens", a.cache_lens}});
    if (!s.ok()) return s;
    AttnState* st = nullptr;
    if (c.capturing) {
      s = state_of(c, st);
      if (!s.ok()) return s;
      bool same = st->append_m[a.slot] == a.m;
      for (uint64_t i = 0; same && i < a.m; ++i) same = st->append_h[a.slot * kItems + i] == a.caches[i];  // arith-ok: slot < batched_slots (checked)
      if (!same)
        return invalid(plugin::format("%s: argument 'caches': expected the %llu handles of APPEND slot %llu (as set by "
                                      "populate_batched_pointers) while a graph capture is in flight, given different ones",
                                      op, (unsigned long long)st->append_m[a.slot], (unsigned long long)a.slot));
    }
    if (dry) return ok_status();
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    attn::ItemPtrs items{};
    const void* const* table = nullptr;
    if (c.capturing) {
      table = const_cast<const void* const*>(st->append_dev + a.slot * kItems);  // arith-ok: slot < batched_slots (checked)
    } else {
      for (uint64_t i = 0; i < a.m; ++i) items.p[0][i] = a.caches[i]->data;
    }
    return from_device(attn::kv_append_batched(items, table, a.new_data->data,
                                               static_cast<const uint32_t*>(a.cache_lens->data),
                                               a.cache_lens->dtype == FERRUM_DTYPE_I32, dtype_size(dt), a.capacity,
                                               a.m, a.nkv, a.hd, c.dev->stream));
  });
}

ferrum_status flash_attention_batched_per_cache(ferrum_context* ctx,
                                                const ferrum_flash_attention_batched_per_cache_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_flash_attention_batched_per_cache_args& a, bool dry) -> Status {
    const char* op = "flash_attention_batched_per_cache";
    bool work = false;
    Status s = check_flash_batched(a, static_cast<int64_t>(c.device), work);
    if (!s.ok() || !work) return s;
    const int32_t dt = a.q->dtype;
    s = check_devices(op, c, {{"q", a.q}, {"kv_lens", a.kv_lens}, {"out", a.out}});
    if (s.ok()) s = check_attention_head_dim(op, "hd", a.hd);
    if (!s.ok()) return s;
    AttnState* st = nullptr;
    if (c.capturing) {
      s = state_of(c, st);
      if (!s.ok()) return s;
      bool same = st->attn_m[a.slot] == a.m;
      for (uint64_t i = 0; same && i < a.m; ++i)
        same = st->attn_h[(a.slot * kItems + i) * 2] == a.k_caches[i] &&  // arith-ok: slot < batched_slots (checked)
               st->attn_h[(a.slot * kItems + i) * 2 + 1] == a.v_caches[i];  // arith-ok: slot < batched_slots (checked)
      if (!same)
        return invalid(plugin::format("%s: arguments 'k_caches'/'v_caches': expected the %llu (K, V) handles of "
                                      "ATTENTION slot %llu (as set by populate_batched_pointers) while a graph capture "
                                      "is in flight, given different ones",
                                      op, (unsigned long long)st->attn_m[a.slot], (unsigned long long)a.slot));
    }
    if (dry) return ok_status();
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    attn::FlashParams p;
    p.dtype = dt;
    p.q = a.q->data;
    p.out = a.out->data;
    p.batch = a.m;
    p.q_len = 1;
    p.num_heads = a.nq;
    p.num_kv_heads = a.nkv;
    p.head_dim = a.hd;
    p.causal = true;
    p.scale = softmax_scale(a.scale, a.hd);
    p.S = a.capacity;
    p.window = a.sliding_window;
    p.len_source = attn::LenSource::per_item;
    p.kv_lens = static_cast<const uint32_t*>(a.kv_lens->data);
    p.kv_lens_i32 = a.kv_lens->dtype == FERRUM_DTYPE_I32;
    p.len_bound = a.max_valid_kv;
    if (c.capturing) {
      p.slot_table = const_cast<const void* const*>(st->attn_dev + a.slot * kItems * 2);  // arith-ok: slot < batched_slots (checked)
    } else {
      for (uint64_t i = 0; i < a.m; ++i) {
        p.items.p[0][i] = a.k_caches[i]->data;
        p.items.p[1][i] = a.v_caches[i]->data;
      }
    }
    return run_flash(c, p, op);
  });
}

}  // namespace

Status check_attention_head_dim(const char* op, const char* field, uint64_t hd) {
  if (!attn::head_dim_supported(hd))
    return unsupported(plugin::format("%s: argument '%s': expected one of 32, 64, 80, 96, 112, 128, 192, 256 (the CUDA "
                                      "attention kernels), given %llu",
                                      op, field, (unsigned long long)hd));
  return ok_status();
}

Status attention_sm_count(ferrum_context& c, int& sm_count) {
  AttnState* st = nullptr;
  Status s = state_of(c, st);
  if (s.ok()) sm_count = st->sm_count;
  return s;
}

Status attention_scratch(ferrum_context& c, uint64_t bytes, const char* op, void*& scratch) {
  AttnState* st = nullptr;
  Status s = state_of(c, st);
  if (s.ok()) s = ensure_scratch(c, *st, bytes, op);
  if (s.ok()) scratch = st->scratch;
  return s;
}

Status work_scratch(ferrum_context& c, uint64_t bytes, const char* op, void*& scratch) {
  AttnState* st = nullptr;
  Status s = state_of(c, st);
  uint64_t off = 0, total = 0;
  if (s.ok()) off = attn::flash_counter_bytes(st->sm_count);
  if (s.ok()) s = check_sum(op, "scratch bytes", "arrival counters + temporaries", off, bytes, total);
  if (s.ok()) s = ensure_scratch(c, *st, total, op);
  if (s.ok()) scratch = static_cast<unsigned char*>(st->scratch) + off;
  return s;
}

void release_attention_state(ferrum_context& c) noexcept {
  auto* st = static_cast<AttnState*>(c.staging);
  if (!st) return;
  const int dev = static_cast<int>(c.device);
  if (c.dev && c.dev->stream) (void)cudaStreamSynchronize(c.dev->stream);
  (void)cuda::free(dev, st->scratch);
  for (void* p : st->retired) (void)cuda::free(dev, p);
  (void)cuda::free(dev, st->append_dev);
  (void)cuda::free(dev, st->attn_dev);
  delete st;
  c.staging = nullptr;
}

// ---- MLA (§14) ------------------------------------------------------------------------------------
namespace {

ferrum_status mla_attention(ferrum_context* ctx, const ferrum_mla_attention_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_mla_attention_args& a, bool dry) -> Status {
    const char* op = "mla_attention";
    uint64_t S = 0, out_bytes = 0;
    bool work = false;
    Status s = check_mla_attention(a, S, work);
    if (!s.ok() || !work) return s;
    s = check_product(op, {{"batch", a.batch}, {"num_heads", a.num_heads}, {"q_len", a.q_len}, {"kv_lora_rank", a.kv_lora_rank},
                           {"element size", a.out ? dtype_size(a.out->dtype) : 0}},
                      out_bytes);
    if (s.ok() && a.kv_len) s = check_devices(op, c, {{"q", a.q}, {"kv_compressed", a.kv_compressed}, {"kv_rope", a.kv_rope}, {"out", a.out}});
    if (s.ok() && !a.kv_len) s = check_devices(op, c, {{"q", a.q}, {"out", a.out}});
    attn::MlaParams p;
    p.dtype = a.q->dtype;
    p.q = a.q->data;
    p.c = a.kv_len ? a.kv_compressed->data : nullptr;
    p.r = a.kv_len ? a.kv_rope->data : nullptr;
    p.out = a.out->data;
    p.batch = a.batch;
    p.q_len = a.q_len;
    p.kv_len = a.kv_len;
    p.pos_offset = a.pos_offset;
    p.heads = a.num_heads;
    p.R = a.kv_lora_rank;
    p.P = a.qk_rope_head_dim;
    p.S = S;
    p.window = a.sliding_window;
    p.causal = a.causal != 0;
    p.scale = a.scale;
    if (s.ok() && a.kv_len) s = from_device(attn::mla_supported(p));
    if (!s.ok() || dry) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    if (a.kv_len == 0)  // no keys (the KV buffers may be absent): +0.0 rows
      return from_device(memset_async(*c.dev, a.out->data, out_bytes));
    AttnState* st = nullptr;
    s = state_of(c, st);
    void* scratch = nullptr;
    const uint64_t bytes = s.ok() ? attn::mla_scratch_bytes(p, st->sm_count) : 0;
    if (s.ok() && bytes) s = work_scratch(c, bytes, op, scratch);
    if (!s.ok()) return s;
    return from_device(attn::mla_attention(p, st->sm_count, scratch, c.dev->stream));
  });
}

}  // namespace

const ferrum_mla_table kMlaTable = {sizeof(ferrum_mla_table), FERRUM_MLA_SLOTS(FERRUM_SLOT_FN)};

const ferrum_attention_table kAttentionTable = {
    sizeof(ferrum_attention_table), FERRUM_ATTENTION_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cuda::glue
