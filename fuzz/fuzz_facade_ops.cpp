// libFuzzer harness: every op of the ABI, with hostile arguments, through the facade's one call
// path (Context::invoke: the generated argument checks, then the CPU plugin's slot and glue, or
// the facade default for a NULL slot).
//
// Input layout (fuzz/make_seeds.py writes seeds in it):
//   byte 0        op id - 1 (mod the op count): which op
//   byte 1        struct_size variant (see call())
//   byte 2        L: the last L bytes of the input are copied over the start of every host input
//                 region (ids, raw weights, ...)
//   then          one or more bytes per field, in the order of fuzz/gen_op_table.py (scalars,
//                 buffers, weights and handles, then host pointers) — see Filler
// Buffer fields take NULL or one of a fixed pool of live CPU-plugin buffers of assorted dtypes
// and sizes (refilled with the same contents before every input, so an input replays alike).
// Host pointers are NULL, or memory large enough for the elements the op's own fields imply
// (the library cannot check host memory; the harness does not lie about it).
// The only acceptable outcomes are OK and ferrum::Error; anything else is a finding.
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include <ferrum/ferrum.hpp>
#include <ferrum/common/op_info_gen.hpp>

#include "fuzz_support.hpp"
#include "invoke.hpp"
#include "op_table_gen.hpp"

#ifndef FERRUM_FUZZ_CPU_PLUGIN
#error "FERRUM_FUZZ_CPU_PLUGIN (the path of libferrum-cpu.so) must be defined"
#endif

namespace {

using namespace ferrum;
using fuzz::Handle;
using fuzz::Reader;
using fuzz::S;
using fuzz::unacceptable;

constexpr const char* kHarness = "fuzz_facade_ops";
static_assert(fuzz::kGeneratedOps == common::kOpCount, "the op table is stale: regenerate");

constexpr size_t kArena = 64 * 1024;     // bytes per host region
constexpr size_t kSlack = 4096;          // bytes a host region keeps beyond the bound
constexpr size_t kRegions = 6;           // host regions per call (most host fields of one op)
constexpr size_t kMaxItems = 256;        // entries of a host array of handles / pointers

// The pool: (dtype, elements, fill). make_seeds.py mirrors this order.
enum class Fill { wave, ramp, mod4, zero };
struct PoolEntry {
  Dtype dtype;
  uint64_t n;
  Fill fill;
};
constexpr PoolEntry kPool[] = {
    {Dtype::f32, 4096, Fill::wave}, {Dtype::f32, 4096, Fill::wave}, {Dtype::f32, 4096, Fill::wave},
    {Dtype::f32, 4096, Fill::wave}, {Dtype::f32, 4096, Fill::wave}, {Dtype::f32, 4096, Fill::wave},
    {Dtype::f16, 4096, Fill::wave}, {Dtype::bf16, 4096, Fill::wave},
    {Dtype::i32, 4096, Fill::ramp}, {Dtype::i32, 4096, Fill::ramp}, {Dtype::i32, 4096, Fill::ramp},
    {Dtype::u32, 4096, Fill::ramp}, {Dtype::u32, 4096, Fill::mod4}, {Dtype::i32, 64, Fill::zero},
    {Dtype::i8, 4096, Fill::wave},  {Dtype::i8, 4096, Fill::wave},
    {Dtype::f8_e4m3, 4096, Fill::wave}, {Dtype::f8_e4m3, 4096, Fill::wave},
    {Dtype::u8, 4096, Fill::wave},  {Dtype::f32, 64, Fill::wave}, {Dtype::f32, 1, Fill::wave},
    {Dtype::f16, 64, Fill::wave},
};

// Hostile and boundary values the selectors pick from.
constexpr uint64_t kU64[] = {
    1ull << 8, 1ull << 10, 1ull << 12, 1ull << 16, 1ull << 20, 1ull << 21, 1ull << 24, 1ull << 28,
    1ull << 30, 1ull << 31, (1ull << 32) - 1, 1ull << 32, (1ull << 32) + 1, 1ull << 33, 1ull << 40,
    1ull << 48, 1ull << 56, 1ull << 62, (1ull << 63) - 1, 1ull << 63, (1ull << 63) + 1,
    UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 2, UINT64_MAX - 3, UINT64_MAX - 7, UINT64_MAX - 15,
    UINT64_MAX - 63, UINT64_MAX - 255, UINT64_MAX - 4095, UINT64_MAX - 65535,
    UINT64_MAX - (1ull << 32) + 1, UINT64_MAX / 2, UINT64_MAX / 3, UINT64_MAX / 4, UINT64_MAX / 5,
    UINT64_MAX / 7, UINT64_MAX / 8, UINT64_MAX / 16, UINT64_MAX / 4096, 0x5555555555555556ull,
    (1ull << 32) / 3, 65537, 4097, 4095, 1023, 1025, 257, 255, 511, 513, 127, 129, 3000, 10000,
    100000, 1000000, 16777217, 2147483647, 2147483648ull, 4294967294ull, 6148914691236517206ull,
    12297829382473034411ull, 9223372039002259456ull,
};
constexpr int32_t kI32[] = {-1, -2, -128, -32768, INT32_MIN, INT32_MAX, INT32_MIN + 1,
                            INT32_MAX - 1, 255, 256, 65535, 65536, 1 << 30, 100, 1000, 127};
constexpr uint32_t kF32Bits[] = {
    0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x3f000000, 0x3727c5ac /*1e-5*/,
    0x358637bd /*1e-6*/, 0x3e000000 /*0.125*/, 0x7fc00000 /*NaN*/, 0xffc00000 /*-NaN*/,
    0x7f800001 /*sNaN*/, 0x7f800000 /*Inf*/, 0xff800000 /*-Inf*/, 0x7f7fffff /*FLT_MAX*/,
    0xff7fffff, 0x00800000 /*FLT_MIN*/, 0x00000001 /*denormal*/, 0x80000001, 0x7149f2ca /*1e30*/,
    0x0da24260 /*1e-30*/, 0x40000000, 0x461c4000 /*1e4*/, 0x4f800000 /*2^32*/, 0x5f800000 /*2^64*/,
};

uint64_t read_u64(Reader& r) {
  const uint8_t b = r.byte();
  if (b < 0xA0) return b;
  if (b < 0xE0) return kU64[(b - 0xA0) % std::size(kU64)];
  return r.raw(8);
}
uint32_t read_u32(Reader& r) {
  const uint8_t b = r.byte();
  if (b < 0xA0) return b;
  if (b < 0xE0) return static_cast<uint32_t>(kU64[(b - 0xA0) % std::size(kU64)]);
  return static_cast<uint32_t>(r.raw(4));
}
int32_t read_i32(Reader& r) {
  const uint8_t b = r.byte();
  if (b < 0x40) return b;                          // dtype ids, modes, quant types
  if (b < 0x80) return -static_cast<int32_t>(b - 0x3F);
  if (b < 0xE0) return kI32[(b - 0x80) % std::size(kI32)];
  return static_cast<int32_t>(r.raw(4));
}
float bits_f32(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
float read_f32(Reader& r) {
  const uint8_t b = r.byte();
  if (b < std::size(kF32Bits)) return bits_f32(kF32Bits[b]);
  if (b < 0xE0) return static_cast<float>(static_cast<int>(b) - 0x60) / 16.0f;
  return bits_f32(static_cast<uint32_t>(r.raw(4)));
}
double read_f64(Reader& r) {
  const uint8_t b = r.byte();
  if (b < std::size(kF32Bits)) return bits_f32(kF32Bits[b]);
  if (b < 0xE0) return (static_cast<int>(b) - 0x60) / 16.0;
  const uint64_t bits = r.raw(8);
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

// Everything that lives across inputs: the context, the buffer pool, timers, weights.
struct World {
  Backend backend;
  Context ctx;
  std::vector<Buffer> pool;
  std::vector<std::vector<unsigned char>> contents;  // what each pool buffer is reset to
  std::vector<Timer> timers;
  std::vector<QWeight> qweights;
  alignas(64) std::array<unsigned char, kArena> pattern{};  // the host input arena's base
  alignas(64) std::array<std::array<unsigned char, kArena>, kRegions> regions{};
  std::array<std::array<void*, kMaxItems>, kRegions> items{};

  World() {
    backend = Backend::load(FERRUM_FUZZ_CPU_PLUGIN);
    ctx = backend.create_context();
    for (const PoolEntry& e : kPool) {
      pool.push_back(ctx.alloc_typed(e.dtype, e.n));
      contents.push_back(fill(e));
    }
    timers.push_back(ctx.make_timer());
    timers.push_back(ctx.make_timer());
    for (size_t i = 0; i < kArena; ++i) pattern[i] = static_cast<unsigned char>(i % 4 == 0 ? (i / 4) % 4 : 0);
    make_weights();
    reset();
  }

  static std::vector<unsigned char> fill(const PoolEntry& e) {
    const size_t es = ferrum::dtype_size(static_cast<int32_t>(e.dtype));
    std::vector<unsigned char> bytes(e.n * es);
    for (uint64_t i = 0; i < e.n; ++i) {
      unsigned char* p = bytes.data() + i * es;
      if (e.dtype == Dtype::i32 || e.dtype == Dtype::u32) {
        const uint32_t v = e.fill == Fill::ramp ? static_cast<uint32_t>(i)
                           : e.fill == Fill::mod4 ? static_cast<uint32_t>(i % 4) : 0u;
        std::memcpy(p, &v, 4);
      } else if (e.dtype == Dtype::f32) {
        const float v = std::sin(static_cast<float>(i) * 0.37f);
        std::memcpy(p, &v, 4);
      } else if (e.dtype == Dtype::f16 || e.dtype == Dtype::bf16) {
        const uint16_t v = e.dtype == Dtype::f16 ? (i % 2 ? 0x3800 : 0xB400) : (i % 2 ? 0x3F00 : 0xBE80);
        std::memcpy(p, &v, 2);
      } else {
        *p = static_cast<unsigned char>((i * 37) % 251);
      }
    }
    return bytes;
  }

  // A GGUF Q8_0 weight, 4 x 32.
  QWeight make_q8_0() {
    std::vector<uint8_t> q8(4 * 34);
    for (size_t row = 0; row < 4; ++row) {
      q8[row * 34] = 0x00;
      q8[row * 34 + 1] = 0x3C;  // f16 1.0
      for (size_t j = 0; j < 32; ++j) q8[row * 34 + 2 + j] = static_cast<uint8_t>((row + j) % 7);
    }
    return ctx.load_quant({.quant_type = FERRUM_QUANT_Q8_0, .bytes = q8, .n_rows = 4, .n_cols = 32});
  }

  // The Q8_0 weight and a GPTQ 4-bit weight (k 32, n 8), when the plugin has them.
  void make_weights() {
    try {
      qweights.push_back(make_q8_0());
    } catch (const Error&) {
    }
    std::vector<int32_t> qw(32 / 8 * 8, 0x12345678);
    std::vector<float> scales(8, 0.01f);
    try {
      qweights.push_back(ctx.load_gptq({.qweight = qw.data(), .scales = scales.data(), .qzeros = nullptr, .g_idx = nullptr, .bits = 4, .group_size = 32, .k = 32, .n = 8,
                                       .scales_dtype = Dtype::f32, .act_dtype = Dtype::invalid}));
    } catch (const Error&) {
    }
  }

  // Before every input: the pool's contents and the host input arena as they were.
  void reset() {
    for (size_t i = 0; i < pool.size(); ++i)
      ctx.write_typed({.dst = pool[i], .dtype = kPool[i].dtype, .data = contents[i].data(), .data_len = kPool[i].n});
  }
};

World& world() {
  static World* w = new World();  // never destroyed: the plugin outlives every input
  return *w;
}

const ferrum_plugin_api* api() { return detail::ContextAccess::api(world().ctx); }

template <class Args, class H>
void release_through(int32_t op, void* h) {
  Args a{sizeof a, static_cast<H*>(h)};
  if (auto fn = common::find_slot(api(), op)) fn(nullptr, &a);
}

// Releases a handle the harness owns, through the plugin's own slot (errors ignored).
void release(Handle kind, void* h) {
  if (!h) return;
  switch (kind) {
    case Handle::buffer:
      return release_through<ferrum_buffer_release_args, ferrum_buffer>(FERRUM_OP_BUFFER_RELEASE, h);
    case Handle::timer:
      return release_through<ferrum_timer_release_args, ferrum_timer>(FERRUM_OP_TIMER_RELEASE, h);
    case Handle::qweight:
      return release_through<ferrum_qweight_release_args, ferrum_qweight>(FERRUM_OP_QWEIGHT_RELEASE, h);
    case Handle::context:
      return release_through<ferrum_context_destroy_args, ferrum_context>(FERRUM_OP_CONTEXT_DESTROY, h);
    case Handle::event:
      return release_through<ferrum_event_release_args, ferrum_event>(FERRUM_OP_EVENT_RELEASE, h);
  }
}

// Decodes one input into the fields of one op (called by the generated visit_op), runs it and
// cleans up what it produced.
class Filler {
 public:
  Filler(World& w, Reader& r, int32_t id, uint8_t variant, const uint8_t* tail, size_t tail_size)
      : w_(w), r_(r), id_(id), variant_(variant), tail_(tail), tail_size_(tail_size) {}
  ~Filler() {
    for (auto& o : outs_) release(o.kind, *o.slot);
    for (auto& f : fresh_) release(f.kind, f.handle);
  }

  uint64_t largest() const { return largest_; }

  void scalar_u64(uint64_t& x, const char* n) { show(n, "%llu", (unsigned long long)(x = read_u64(r_))); note(x); }
  void scalar_u32(uint32_t& x, const char* n) { show(n, "%u", x = read_u32(r_)); note(x); }
  void scalar_flag(uint32_t& x, const char* n) { show(n, "%u", x = read_u32(r_)); note(x); }
  void scalar_i32(int32_t& x, const char* n) { show(n, "%d", x = read_i32(r_)); }
  void scalar_f32(float& x, const char* n) { show(n, "%g", static_cast<double>(x = read_f32(r_))); }
  void scalar_f64(double& x, const char* n) { show(n, "%g", x = read_f64(r_)); }

  template <class P>
  void buffer(P& b, const char* n, const char*) {
    const uint8_t s = r_.byte();
    const size_t i = (s - 1) % w_.pool.size();
    b = s == 0 ? nullptr : w_.pool[i].get();
    if (s == 0) show(n, "%s", "NULL");
    else show(n, "pool[%zu] (%s x %llu)", i, to_string(kPool[i].dtype).data(), (unsigned long long)kPool[i].n);
  }

  template <class P>
  void qweight(P& q, const char*) {
    const uint8_t s = r_.byte();
    q = (s == 0 || w_.qweights.empty()) ? nullptr : w_.qweights[(s - 1) % w_.qweights.size()].get();
  }

  // A handle argument. `consumed`: the op releases it (buffer_release, context_destroy, ...), so
  // it gets a fresh object of its own, never one of the pool.
  template <class P>
  void handle(P& h, const char*, Handle kind, bool consumed) {
    consumes_ = consumes_ || consumed;
    const uint8_t s = r_.byte();
    h = nullptr;
    if (s == 0) return;
    if (!consumed && kind != Handle::event) {  // events: a fresh one per call (released below)
      if (kind == Handle::timer) h = static_cast<P>(static_cast<void*>(w_.timers[(s - 1) % w_.timers.size()].get()));
      if (kind == Handle::buffer) h = static_cast<P>(static_cast<void*>(w_.pool[(s - 1) % w_.pool.size()].get()));
      return;
    }
    void* fresh = nullptr;
    try {
      switch (kind) {
        case Handle::buffer: fresh = w_.ctx.alloc_typed(Dtype::f32, s % 64).release(); break;
        case Handle::timer: fresh = w_.ctx.make_timer().release(); break;
        case Handle::context: fresh = w_.backend.create_context().release(); break;
        case Handle::qweight: fresh = w_.make_q8_0().release(); break;
        case Handle::event: fresh = w_.ctx.event_create().release(); break;
      }
    } catch (const Error& e) {
      unacceptable(kHarness, std::string("cannot make a fresh handle: ") + e.what());
    }
    fresh_.push_back({kind, fresh});
    h = static_cast<P>(fresh);
  }

  template <class P>
  void host_in(P& p, const char* n, uint64_t elem_bytes, uint64_t count) {
    unsigned char* region = next_region(elem_bytes, count);
    show(n, "%s", region ? "host memory" : "NULL");
    if (region) std::memcpy(region, w_.pattern.data(), kArena);
    if (region && tail_) std::memcpy(region, tail_, tail_size_);
    p = reinterpret_cast<P>(region);
  }
  template <class P>
  void host_out(P& p, const char* n, uint64_t elem_bytes, uint64_t count) {
    unsigned char* region = next_region(elem_bytes, count);
    show(n, "%s", region ? "host memory" : "NULL");
    if (region) std::memset(region, 0xA5, 256);
    p = reinterpret_cast<P>(region);
  }
  // A host array of buffer handles: entries from the pool or NULL (pattern from one byte).
  template <class P>
  void host_buffers(P& p, const char*, uint64_t count) {
    const uint8_t s = r_.byte(), t = r_.byte();
    p = nullptr;
    if (s == 0 || count > kMaxItems || used_ == kRegions) return;
    auto& items = w_.items[used_++];
    for (size_t i = 0; i < kMaxItems; ++i)
      items[i] = (t == 0xFF || (t & 0x80 && i % 2)) ? nullptr : w_.pool[(t + i) % w_.pool.size()].get();
    p = reinterpret_cast<P>(items.data());
  }
  // A host array of per-item host pointers (stacked weights): each item gets the largest plane
  // any of the op's fields could ask for, or the array is NULL.
  template <class P>
  void host_pointers(P& p, const char*, uint64_t count) {
    const uint8_t s = r_.byte();
    p = nullptr;
    const S plane = S(largest_) * S(largest_) * S(8);
    if (s == 0 || count > kMaxItems || plane.v + kSlack > kArena || used_ == kRegions) return;
    auto& items = w_.items[used_++];
    for (auto& item : items) item = w_.pattern.data();
    p = reinterpret_cast<P>(items.data());
  }
  template <class P>
  void out_handle(P& p, const char*, Handle kind) {
    const uint8_t s = r_.byte();
    p = nullptr;
    if (s == 0) return;
    auto& slot = slots_[nslots_++];
    slot = nullptr;
    outs_.push_back({kind, &slot});
    p = reinterpret_cast<P>(&slot);
  }
  void out_kv_cache(ferrum_kv_cache_quant*& p, const char*) {
    const uint8_t s = r_.byte();
    p = nullptr;
    if (s == 0) return;
    kv_ = ferrum_kv_cache_quant{};
    kv_.struct_size = sizeof kv_;
    for (ferrum_buffer** b : {&kv_.k, &kv_.v, &kv_.k_scales, &kv_.v_scales, &kv_.block_table,
                              &kv_.context_lens})
      outs_.push_back({Handle::buffer, reinterpret_cast<void**>(b)});
    p = &kv_;
  }

  // Runs the op with one of the struct_size variants, then waits for it.
  template <class Args>
  void call(Args& a) {
    const common::OpInfo* info = common::op_info(id_);
    // The harness's memory budget (-rss_limit_mb=2048): a quantised layer that is valid but
    // larger than the budget is a request the plugin must honour, not a finding — such inputs
    // are left out (counted by -print_final_stats as not interesting), everything else runs.
    if constexpr (requires { a.max_blocks_per_seq; a.block_size; a.num_kv_heads; a.head_dim; a.cache; }) {
      const common::Size rows = common::Size(a.max_blocks_per_seq) * a.block_size;
      const common::Size bytes = rows * a.num_kv_heads * a.head_dim * 2 + rows * a.num_kv_heads * 8 +
                                 common::Size(a.max_blocks_per_seq) * 4;
      if (bytes.wrapped || bytes.value > (uint64_t{512} << 20)) return;
    }
    alignas(16) unsigned char bigger[sizeof(Args) + 64] = {};
    Args* args = &a;
    switch (variant_ % 8) {
      case 4: a.struct_size = info->args_size_v1_0; break;
      case 5: a.struct_size = info->args_size_v1_0 - 8; break;
      case 6:  // a newer caller: a longer struct, the tail zero
        a.struct_size = sizeof(Args) + 16;
        std::memcpy(bigger, &a, sizeof(Args));
        args = reinterpret_cast<Args*>(bigger);
        break;
      case 7: a.struct_size = 0; break;
      default: a.struct_size = sizeof(Args); break;
    }
    const bool ok = fuzz::expect_ok_or_error(kHarness, [&] {
      try {
        if constexpr (std::is_same_v<Args, ferrum_supports_device_ordinal_scope_args>)
          (void)w_.backend.supports_device_ordinal_scope();  // [no ctx]: the facade asks via Backend
        else
          detail::ContextAccess::invoke(w_.ctx, *args);
        if (verbose()) std::fprintf(stderr, "%s: OK\n", info->name.data());
      } catch (const Error& e) {
        if (verbose()) std::fprintf(stderr, "%s: %s\n", info->name.data(), e.what());
        throw;
      }
    });
    fuzz::expect_ok_or_error(kHarness, [&] { w_.ctx.sync(); });
    if (ok)  // consumed by the op (release/destroy): not ours any more; an event lent to another op stays ours
      std::erase_if(fresh_, [this](const auto& f) { return f.kind != Handle::event || consumes_; });
  }

 private:
  bool consumes_ = false;  // the op releases its handle argument (a *_release op)
  struct Out {
    Handle kind;
    void** slot;
  };
  struct Fresh {
    Handle kind;
    void* handle;
  };

  void note(uint64_t v) { largest_ = std::max(largest_, v); }

  // FERRUM_FUZZ_VERBOSE: each decoded field on stderr (to read a reproducer).
  template <class... T>
  static void show(const char* name, const char* fmt, T... v) {
    if (!verbose()) return;
    std::fprintf(stderr, "  %s = ", name);
    std::fprintf(stderr, fmt, v...);
    std::fprintf(stderr, "\n");
  }
  static bool verbose() {
    static const bool v = std::getenv("FERRUM_FUZZ_VERBOSE") != nullptr;
    return v;
  }

  unsigned char* next_region(uint64_t elem_bytes, uint64_t count) {
    const uint8_t s = r_.byte();
    if (s == 0 || used_ == kRegions) return nullptr;
    if ((S(count) * S(elem_bytes)).v + kSlack > kArena) return nullptr;
    return w_.regions[used_++].data();
  }

  World& w_;
  Reader& r_;
  int32_t id_;
  uint8_t variant_;
  uint64_t largest_ = 0;
  size_t used_ = 0;
  const uint8_t* tail_;
  size_t tail_size_;
  std::array<void*, 8> slots_{};
  size_t nslots_ = 0;
  ferrum_kv_cache_quant kv_{};
  std::vector<Out> outs_;
  std::vector<Fresh> fresh_;
};


// FERRUM_FUZZ_SKIP_OPS=name,name,...: ops this run leaves out (to look past a known finding
// that every input reaches within seconds; a run that skips ops must say so).
bool skipped(int32_t id) {
  static const std::string list = [] {
    const char* v = std::getenv("FERRUM_FUZZ_SKIP_OPS");
    return "," + std::string(v ? v : "") + ",";
  }();
  return list.find("," + std::string(common::op_info(id)->name) + ",") != std::string::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader head(data, size);
  const int32_t id = 1 + head.byte() % common::kOpCount;
  if (skipped(id)) return -1;
  World& w = world();
  w.reset();
  const uint8_t variant = head.byte();
  const size_t tail = std::min<size_t>(head.byte(), head.left());
  Reader fields(head.rest(), head.left() - tail);
  Filler filler(w, fields, id, variant, head.rest() + head.left() - tail, tail);
  if (!fuzz::visit_op(id, filler)) unacceptable(kHarness, "op id without a table entry");
  return 0;
}
