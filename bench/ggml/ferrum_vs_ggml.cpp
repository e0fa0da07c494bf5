// ferrum-vs-ggml — the CPU plugin and ggml side by side in one process (issue: CPU plugin at or
// above ggml). For every case both libraries get the same inputs (the same random values, the
// same quantised block bytes), the same thread count, and their turns are interleaved: round r
// times ggml then ferrum on every case, and each figure is the median over the rounds of a
// per-round median. Every case also compares the two outputs (rel-L2), so a row measures the
// same computation. Prints one table (ratio = ggml time / ferrum time; > 1: ferrum is faster)
// and, with --json FILE, the rows as JSON. The GGUF rows come in pairs against one ggml time: ferrum
// with exact activations (dtype f32) and with load_quant's act_precision = FERRUM_QUANT_ACT_Q8
// (dtype q8act: 8-bit activations, as ggml computes; docs/spec.md §11.2).
//
//   ferrum-vs-ggml [--threads 2] [--rounds 3] [--quick] [--only GLOB] [--m 1,16,128] [--rotate N] [--json FILE]
//
// --rotate N: the gemm / GGUF cases with m <= 16 (where the weight bytes are the cost) hold N copies
// of their weights in both libraries and use them in turn, so a call does not find its matrix in
// the L3 from the call before (a model's layers never reuse one matrix back to back); default 1.
//
// Not a test and not a CI dependency: scripts/bench-vs-ggml builds and runs it.
#include <fnmatch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <ferrum/ferrum.hpp>

#include "ggml-cpu.h"
#include "ggml.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int threads = 2;
  int rounds = 3;
  int rotate = 1;  // weight copies per m <= 16 case (1: one matrix, reused call after call)
  bool quick = false;
  std::string only = "*";
  std::vector<int64_t> ms;  // --m: the m values of the GGUF and gemm rows (default 1, 16, 128 / 512)
  std::string json;
};

std::vector<float> random_vec(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Median seconds per call of fn: batches of calls sized to ~0.1 s, 5 batches.
double time_call(const std::function<void()>& fn) {
  fn();  // warm-up (first-touch, packing, thread start)
  auto t0 = Clock::now();
  fn();
  const double once = std::chrono::duration<double>(Clock::now() - t0).count();
  const int per = std::max(1, static_cast<int>(0.1 / std::max(once, 1e-7)));
  std::vector<double> v;
  for (int b = 0; b < 5; ++b) {
    t0 = Clock::now();
    for (int i = 0; i < per; ++i) fn();
    v.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / per);
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return a.size() != b.size() ? INFINITY : std::sqrt(num / std::max(den, 1e-300));
}

// One ggml graph with its own context and work buffer (allocated once, reused every call).
struct GgmlGraph {
  ggml_context* ctx = nullptr;
  ggml_cgraph* gf = nullptr;
  ggml_tensor* out = nullptr;
  std::vector<uint8_t> work;
  int threads = 2;
  explicit GgmlGraph(size_t mem) {
    ggml_init_params ip = {mem, nullptr, false};
    ctx = ggml_init(ip);
  }
  ~GgmlGraph() { ggml_free(ctx); }
  GgmlGraph(const GgmlGraph&) = delete;
  GgmlGraph& operator=(const GgmlGraph&) = delete;
  void finish(ggml_tensor* t, int n_threads) {
    out = t;
    threads = n_threads;
    gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, t);
    ggml_cplan plan = ggml_graph_plan(gf, threads, nullptr);
    work.resize(plan.work_size + 1);
  }
  void run() {
    ggml_cplan plan = ggml_graph_plan(gf, threads, nullptr);
    plan.work_data = work.data();
    ggml_graph_compute(gf, &plan);
  }
  std::vector<float> out_f32() const {
    std::vector<float> v(ggml_nelements(out));
    std::memcpy(v.data(), out->data, v.size() * sizeof(float));
    return v;
  }
};

ggml_tensor* tensor_from(ggml_context* g, ggml_type type, const std::vector<float>& v, int64_t ne0, int64_t ne1,
                         int64_t ne2 = 1) {
  ggml_tensor* t = ggml_new_tensor_3d(g, type, ne0, ne1, ne2);
  if (type == GGML_TYPE_F32) std::memcpy(t->data, v.data(), v.size() * sizeof(float));
  else if (type == GGML_TYPE_F16) ggml_fp32_to_fp16_row(v.data(), static_cast<ggml_fp16_t*>(t->data), v.size());
  else if (type == GGML_TYPE_BF16) ggml_fp32_to_bf16_row(v.data(), static_cast<ggml_bf16_t*>(t->data), v.size());
  else ggml_quantize_chunk(type, v.data(), t->data, 0, ne1 * ne2, ne0, nullptr);
  return t;
}

struct Row {
  std::string op, shape, dtype;
  double bytes = 0, flops = 0;
  std::vector<double> t_ggml, t_ferrum, t_alt;
  double err = 0, err_alt = 0;
};

struct Case {
  Row row;
  std::unique_ptr<GgmlGraph> g;
  // --rotate: the same graph over further copies of the weights, timed in turn with g (so no call
  // finds its weights in the cache from the call before); the outputs are compared on g only.
  std::vector<std::unique_ptr<GgmlGraph>> g_more;
  size_t turn = 0;
  void run_ggml() {
    const size_t i = turn++ % (g_more.size() + 1);
    (i == 0 ? g : g_more[i - 1])->run();
  }
  std::function<void()> ferrum_run;
  std::function<std::vector<float>()> ferrum_out;
  std::function<std::vector<float>(const std::vector<float>&)> ggml_to_ferrum_layout;  // identity if empty
  // A second ferrum variant timed against the same ggml runs (empty: none), printed as dtype alt_dtype.
  std::string alt_dtype;
  std::function<void()> alt_run;
  std::function<std::vector<float>()> alt_out;
};

ferrum::Dtype dtype_of_ggml(ggml_type t) {
  return t == GGML_TYPE_F16 ? ferrum::Dtype::f16 : t == GGML_TYPE_BF16 ? ferrum::Dtype::bf16 : ferrum::Dtype::f32;
}
const char* dtype_name(ggml_type t) { return ggml_type_name(t); }

// Uploads f32 values as dtype `dt` (the plugin rounds to nearest even, as ggml's row converters do).
ferrum::Buffer upload(ferrum::Context& ctx, ferrum::Dtype dt, const std::vector<float>& v) {
  ferrum::Buffer b = ctx.alloc_typed(dt, v.size());
  ctx.write_f32_to_activation(b, v);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ferrum-vs-ggml: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") opt.threads = std::max(1, std::atoi(next().c_str()));
    else if (a == "--rounds") opt.rounds = std::max(1, std::atoi(next().c_str()));
    else if (a == "--quick") opt.quick = true;
    else if (a == "--rotate") opt.rotate = std::clamp(std::atoi(next().c_str()), 1, 16);
    else if (a == "--only") opt.only = next();
    else if (a == "--json") opt.json = next();
    else if (a == "--m") {
      const std::string list = next();
      for (size_t p = 0; p < list.size();) {
        const size_t q = std::min(list.find(',', p), list.size());
        const long v = std::atol(list.substr(p, q - p).c_str());
        if (v < 1 || v > 4096) {
          std::fprintf(stderr, "ferrum-vs-ggml: --m takes numbers in [1, 4096], got '%s'\n", list.c_str());
          return 2;
        }
        opt.ms.push_back(v);
        p = q + 1;
      }
    } else {
      std::fprintf(stderr, "usage: ferrum-vs-ggml [--threads N] [--rounds N] [--quick] [--only GLOB] [--m LIST] [--rotate N] [--json FILE]\n");
      return 2;
    }
  }
  // Same threads for both: the CPU plugin reads FERRUM_CPU_THREADS when it starts.
  setenv("FERRUM_CPU_THREADS", std::to_string(opt.threads).c_str(), 1);
  ggml_cpu_init();
  ferrum::Backend backend = ferrum::Backend::load("cpu");
  ferrum::Context c32 = backend.create_context({}, ferrum::Dtype::f32);
  ferrum::Context c16 = backend.create_context({}, ferrum::Dtype::f16);
  ferrum::Context cb16 = backend.create_context({}, ferrum::Dtype::bf16);
  auto ctx_for = [&](ggml_type t) -> ferrum::Context& {
    return t == GGML_TYPE_F16 ? c16 : t == GGML_TYPE_BF16 ? cb16 : c32;
  };

  std::vector<Case> cases;
  uint64_t seed = 20261202;
  auto want = [&](const std::string& op, const std::string& shape) {
    const std::string id = op + "/" + shape;
    return fnmatch(opt.only.c_str(), id.c_str(), 0) == 0 || fnmatch(opt.only.c_str(), op.c_str(), 0) == 0;
  };
  const int64_t K = 4096;
  const std::vector<int64_t> Ns = opt.quick ? std::vector<int64_t>{4096} : std::vector<int64_t>{4096, 14336};

  // ---- GGUF quantised matmul: identical block bytes (ggml's quantiser) in both -------------
  for (ggml_type qt : {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K}) {
    for (int64_t N : Ns) {
      for (int64_t m : !opt.ms.empty() ? opt.ms : opt.quick ? std::vector<int64_t>{1, 16} : std::vector<int64_t>{1, 16, 128}) {
        if (m > 1 && N != 4096) continue;
        Case c;
        c.row = {std::string("gguf_matmul.") + ggml_type_name(qt), "m" + std::to_string(m) + ".n" + std::to_string(N) + ".k4096", "f32"};
        if (!want(c.row.op, c.row.shape)) continue;
        const std::vector<float> w = random_vec(N * K, ++seed), x = random_vec(m * K, ++seed);
        const int copies = m <= 16 ? opt.rotate : 1;
        ggml_tensor* W = nullptr;
        for (int cp = 0; cp < copies; ++cp) {
          auto g = std::make_unique<GgmlGraph>(N * K * 2 + m * (K + N) * 8 + (64 << 20));
          ggml_tensor* Wc = tensor_from(g->ctx, qt, w, K, N);
          ggml_tensor* X = tensor_from(g->ctx, GGML_TYPE_F32, x, K, m);
          g->finish(ggml_mul_mat(g->ctx, Wc, X), opt.threads);
          if (cp == 0) W = Wc, c.g = std::move(g);
          else c.g_more.push_back(std::move(g));
        }
        const size_t wbytes = ggml_nbytes(W);
        c.row.bytes = static_cast<double>(wbytes) + 4.0 * m * (K + N);
        c.row.flops = 2.0 * m * N * K;
        auto load = [&](int32_t act) {
          auto v = std::make_shared<std::vector<ferrum::QWeight>>();
          for (int cp = 0; cp < copies; ++cp)
            v->push_back(c32.load_quant({.quant_type = static_cast<int32_t>(qt),
                                         .bytes = std::span<const uint8_t>(static_cast<const uint8_t*>(W->data), wbytes),
                                         .n_rows = static_cast<uint64_t>(N),
                                         .n_cols = static_cast<uint64_t>(K),
                                         .act_precision = act}));
          return v;
        };
        auto qw = load(FERRUM_QUANT_ACT_EXACT), qw8 = load(FERRUM_QUANT_ACT_Q8);
        auto xa = std::make_shared<ferrum::Buffer>(c32.from_slice(x));
        auto ya = std::make_shared<ferrum::Buffer>(c32.alloc_typed(ferrum::Dtype::f32, m * N));
        const uint64_t mu = m, nu = N;
        auto turn = std::make_shared<size_t>(0);
        c.ferrum_run = [&c32, qw, xa, ya, mu, turn] {
          c32.gguf_matmul({.a = *xa, .weight = (*qw)[(*turn)++ % qw->size()], .out = *ya, .m = mu});
          c32.sync();
        };
        c.ferrum_out = [&c32, ya, mu, nu] { return c32.to_vec(*ya, mu * nu); };
        c.alt_dtype = "q8act";
        c.alt_run = [&c32, qw8, xa, ya, mu, turn] {
          c32.gguf_matmul({.a = *xa, .weight = (*qw8)[(*turn)++ % qw8->size()], .out = *ya, .m = mu});
          c32.sync();
        };
        c.alt_out = c.ferrum_out;
        cases.push_back(std::move(c));
      }
    }
  }

  // ---- dense gemm f32 / f16 / bf16, K = N = 4096 -------------------------------------------
  for (ggml_type wt : {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16}) {
    for (int64_t m : !opt.ms.empty() ? opt.ms : opt.quick ? std::vector<int64_t>{1, 16} : std::vector<int64_t>{1, 16, 512}) {
      const int64_t N = 4096;
      Case c;
      c.row = {"gemm", "m" + std::to_string(m) + ".n4096.k4096", dtype_name(wt)};
      if (!want(c.row.op, c.row.shape)) continue;
      const std::vector<float> w = random_vec(N * K, ++seed), x = random_vec(m * K, ++seed);
      const int copies = m <= 16 ? opt.rotate : 1;
      for (int cp = 0; cp < copies; ++cp) {
        auto g = std::make_unique<GgmlGraph>(N * K * 4 + m * (K + N) * 8 + (64 << 20));
        ggml_tensor* W = tensor_from(g->ctx, wt, w, K, N);
        ggml_tensor* X = tensor_from(g->ctx, GGML_TYPE_F32, x, K, m);
        g->finish(ggml_mul_mat(g->ctx, W, X), opt.threads);
        if (cp == 0) c.g = std::move(g);
        else c.g_more.push_back(std::move(g));
      }
      const double esz = wt == GGML_TYPE_F32 ? 4 : 2;
      c.row.bytes = esz * (N * K + m * K + m * N);
      c.row.flops = 2.0 * m * N * K;
      ferrum::Context& fc = ctx_for(wt);
      const ferrum::Dtype dt = dtype_of_ggml(wt);
      auto wb = std::make_shared<std::vector<ferrum::Buffer>>();
      for (int cp = 0; cp < copies; ++cp) wb->push_back(upload(fc, dt, w));
      auto xb = std::make_shared<ferrum::Buffer>(upload(fc, dt, x));
      auto yb = std::make_shared<ferrum::Buffer>(fc.alloc_typed(dt, m * N));
      const uint64_t mu = m, nu = N, ku = K;
      auto turn = std::make_shared<size_t>(0);
      c.ferrum_run = [&fc, wb, xb, yb, mu, nu, ku, turn] {
        fc.gemm({.a = *xb, .b = (*wb)[(*turn)++ % wb->size()], .out = *yb, .m = mu, .n = nu, .k = ku});
        fc.sync();
      };
      c.ferrum_out = [&fc, yb, mu, nu] { return fc.to_vec(*yb, mu * nu); };
      cases.push_back(std::move(c));
    }
  }

  // ---- rms_norm [8192, 4096] f32 (ggml: rms_norm then the weight multiply) -----------------
  {
    const int64_t T = opt.quick ? 1024 : 8192, D = 4096;
    Case c;
    c.row = {"rms_norm", std::to_string(T) + "x" + std::to_string(D), "f32"};
    if (want(c.row.op, c.row.shape)) {
      const std::vector<float> x = random_vec(T * D, ++seed), w = random_vec(D, ++seed, 0.5f, 1.5f);
      c.g = std::make_unique<GgmlGraph>(T * D * 12 + (16 << 20));
      ggml_tensor* X = tensor_from(c.g->ctx, GGML_TYPE_F32, x, D, T);
      ggml_tensor* Wt = tensor_from(c.g->ctx, GGML_TYPE_F32, w, D, 1);
      c.g->finish(ggml_mul(c.g->ctx, ggml_rms_norm(c.g->ctx, X, 1e-6f), Wt), opt.threads);
      c.row.bytes = 8.0 * T * D;
      auto xb = std::make_shared<ferrum::Buffer>(c32.from_slice(x));
      auto wb = std::make_shared<ferrum::Buffer>(c32.from_slice(w));
      auto yb = std::make_shared<ferrum::Buffer>(c32.alloc_typed(ferrum::Dtype::f32, T * D));
      const uint64_t tu = T, du = D;
      c.ferrum_run = [&c32, xb, wb, yb, tu, du] {
        c32.rms_norm({.x = *xb, .w = *wb, .eps = 1e-6f, .out = *yb, .tokens = tu, .dim = du});
        c32.sync();
      };
      c.ferrum_out = [&c32, yb, tu, du] { return c32.to_vec(*yb, tu * du); };
      cases.push_back(std::move(c));
    }
  }

  // ---- flash attention, 32 / 8 heads, hd 128: causal prefill and single-query decode -------
  struct Fa {
    const char* name;
    int64_t q_len, kv_len;
    ggml_type kv;
  };
  std::vector<Fa> fas = {{"prefill", 512, 512, GGML_TYPE_F32}, {"decode", 1, 8192, GGML_TYPE_F32},
                         {"decode", 1, 8192, GGML_TYPE_F16}};
  if (!opt.quick) fas.insert(fas.begin() + 1, Fa{"prefill", 2048, 2048, GGML_TYPE_F32});
  for (const Fa& fa : fas) {
    const int64_t H = 32, Hkv = 8, hd = 128, S = fa.q_len, L = fa.kv_len;
    Case c;
    c.row = {"flash_attention", std::string(fa.name) + ".s" + std::to_string(S) + ".kv" + std::to_string(L),
             dtype_name(fa.kv)};
    if (!want(c.row.op, c.row.shape)) continue;
    const std::vector<float> q = random_vec(H * S * hd, ++seed), k = random_vec(Hkv * L * hd, ++seed),
                             v = random_vec(Hkv * L * hd, ++seed);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    c.g = std::make_unique<GgmlGraph>((H * S + 2 * Hkv * L) * hd * 8 + L * S * 4 + (64 << 20));
    ggml_context* g = c.g->ctx;
    ggml_tensor* Q = tensor_from(g, GGML_TYPE_F32, q, hd, S, H);  // [H][S][hd]: ferrum's head-major layout
    ggml_tensor* Kt = tensor_from(g, fa.kv, k, hd, L, Hkv);
    ggml_tensor* Vt = tensor_from(g, fa.kv, v, hd, L, Hkv);
    ggml_tensor* mask = nullptr;
    if (S > 1) {  // causal: query i (position L − S + i) sees keys 0 .. L − S + i
      mask = ggml_new_tensor_2d(g, GGML_TYPE_F16, L, S);
      std::vector<float> mv(L * S);
      for (int64_t i = 0; i < S; ++i)
        for (int64_t j = 0; j < L; ++j) mv[i * L + j] = j <= L - S + i ? 0.0f : -INFINITY;
      ggml_fp32_to_fp16_row(mv.data(), static_cast<ggml_fp16_t*>(mask->data), mv.size());
    }
    ggml_tensor* o = ggml_flash_attn_ext(g, Q, Kt, Vt, mask, scale, 0.0f, 0.0f);
    c.g->finish(o, opt.threads);  // result [hd, H, S]: token-major
    const double esz = fa.kv == GGML_TYPE_F32 ? 4 : 2;
    c.row.bytes = esz * (2.0 * H * S * hd + 2.0 * Hkv * L * hd);
    c.row.flops = 4.0 * H * hd * (S > 1 ? static_cast<double>(S) * (S + 1) / 2 : static_cast<double>(L));
    c.ggml_to_ferrum_layout = [H, S, hd](const std::vector<float>& t) {  // [S][H][hd] -> [H][S][hd]
      std::vector<float> r(t.size());
      for (int64_t s = 0; s < S; ++s)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t d = 0; d < hd; ++d) r[(h * S + s) * hd + d] = t[(s * H + h) * hd + d];
      return r;
    };
    ferrum::Context& fc = ctx_for(fa.kv);
    const ferrum::Dtype dt = dtype_of_ggml(fa.kv);
    auto qb = std::make_shared<ferrum::Buffer>(upload(fc, dt, q));
    auto kb = std::make_shared<ferrum::Buffer>(upload(fc, dt, k));
    auto vb = std::make_shared<ferrum::Buffer>(upload(fc, dt, v));
    auto ob = std::make_shared<ferrum::Buffer>(fc.alloc_typed(dt, H * S * hd));
    const uint64_t su = S, lu = L;
    c.ferrum_run = [&fc, qb, kb, vb, ob, su, lu, scale] {
      fc.flash_attention({.q = *qb, .k = *kb, .v = *vb, .out = *ob, .batch = 1, .q_len = su, .kv_len = lu,
                          .pos_offset = lu - su, .num_heads = 32, .num_kv_heads = 8, .head_dim = 128, .causal = true,
                          .scale = scale, .kv_seq_stride = 0, .sliding_window = 0});
      fc.sync();
    };
    c.ferrum_out = [&fc, ob, su] { return fc.to_vec(*ob, 32 * su * 128); };
    cases.push_back(std::move(c));
  }

  // ---- the 2-thread read bandwidth (the ceiling of the matvec rows) ------------------------
  double read_gbs = 0;
  {
    std::vector<float> buf(size_t{256} << 20 >> 2, 1.0f);  // 256 MiB
    const int T = opt.threads;
    auto sum = [&] {
      std::vector<std::thread> th;
      std::vector<double> part(T);
      const size_t per = buf.size() / T;
      for (int t = 0; t < T; ++t)
        th.emplace_back([&, t] {
          // 32 independent lanes (vectorised without reassociation: 8 SSE adds per 128 bytes, no
          // dependent chain longer than the loop), so the loads, not the adds, set the rate
          float acc[32] = {};
          const float* p = buf.data() + t * per;
          for (size_t i = 0; i + 32 <= per; i += 32)
            for (int j = 0; j < 32; ++j) acc[j] += p[i + j];
          double s = 0;
          for (float x : acc) s += x;
          part[t] = s;
        });
      for (auto& x : th) x.join();
      if (part[0] < 0) std::printf("%g\n", part[0]);
    };
    read_gbs = buf.size() * 4.0 / time_call(sum) / 1e9;
  }

  // ---- interleaved rounds ----------------------------------------------------------------
  for (Case& c : cases) {  // correctness once
    c.g->run();
    c.ferrum_run();
    std::vector<float> gout = c.g->out_f32();
    if (c.ggml_to_ferrum_layout) gout = c.ggml_to_ferrum_layout(gout);
    c.row.err = rel_l2(c.ferrum_out(), gout);
    if (c.alt_run) {
      c.alt_run();
      c.row.err_alt = rel_l2(c.alt_out(), gout);
    }
  }
  for (int r = 0; r < opt.rounds; ++r)
    for (Case& c : cases) {
      c.row.t_ggml.push_back(time_call([&] { c.run_ggml(); }));
      c.row.t_ferrum.push_back(time_call(c.ferrum_run));
      if (c.alt_run) c.row.t_alt.push_back(time_call(c.alt_run));
    }

  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  double load[3] = {0, 0, 0};
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
    std::fclose(f);
  }
  std::printf("ferrum-vs-ggml: %d threads, %d interleaved rounds, %d weight copies (m <= 16), load %.2f %.2f %.2f, "
              "read bandwidth %.1f GB/s (%d threads)\n",
              opt.threads, opt.rounds, opt.rotate, load[0], load[1], load[2], read_gbs, opt.threads);
  std::printf("%-22s %-24s %-5s %11s %11s %7s %9s %9s %9s\n", "op", "shape", "dtype", "ggml_us", "ferrum_us",
              "ratio", "ferrumGB/s", "GFLOP/s", "rel_l2");
  FILE* js = opt.json.empty() ? nullptr : std::fopen(opt.json.c_str(), "w");
  if (js) std::fprintf(js, "{\"threads\": %d, \"rounds\": %d, \"rotate\": %d, \"load1\": %.2f, \"read_gbs\": %.2f, \"rows\": [\n",
                       opt.threads, opt.rounds, opt.rotate, load[0], read_gbs);
  bool first = true;
  auto print = [&](const Row& row, const std::string& dtype, double tg, double tf, double err) {
    std::printf("%-22s %-24s %-5s %11.1f %11.1f %7.2f %9.1f %9.1f %9.2e\n", row.op.c_str(), row.shape.c_str(),
                dtype.c_str(), tg * 1e6, tf * 1e6, tg / tf, row.bytes / tf / 1e9, row.flops / tf / 1e9, err);
    if (js) {
      std::fprintf(js,
                   "%s  {\"op\": \"%s\", \"shape\": \"%s\", \"dtype\": \"%s\", \"ggml_us\": %.3f, \"ferrum_us\": %.3f, "
                   "\"ratio\": %.4f, \"bytes\": %.0f, \"flops\": %.0f, \"rel_l2\": %.3e}",
                   first ? "" : ",\n", row.op.c_str(), row.shape.c_str(), dtype.c_str(), tg * 1e6, tf * 1e6, tg / tf,
                   row.bytes, row.flops, err);
      first = false;
    }
  };
  for (const Case& c : cases) {
    const double tg = median(c.row.t_ggml);
    print(c.row, c.row.dtype, tg, median(c.row.t_ferrum), c.row.err);
    if (c.alt_run) print(c.row, c.alt_dtype, tg, median(c.row.t_alt), c.row.err_alt);
  }
  if (js) {
    std::fprintf(js, "\n]}\n");
    std::fclose(js);
  }
  return 0;
}
