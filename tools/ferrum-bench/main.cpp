// ferrum-bench — per-op benchmark of a ferrum plugin through the facade.
//
//   ferrum-bench [--plugin SPEC] [--op GLOB[,GLOB...]] [--dtype f32|f16|bf16] [--json] [--quick]
//                [--batches N] [--batch-ms MS] [--max-call-ms MS] [--max-mem-gb GB]
//                [--ws-mb MB] [--no-ceilings] [--list]
//
// For every case of the table (cases.cpp, cases_paged.cpp) whose op or "op/shape" matches one of
// the comma-separated GLOBs: allocates
// seeded random inputs in rotating copies (working set >= 4x the last-level cache on CPU,
// >= 128 MB on GPU), warms up (every copy once), then times >= 10 batches of calls with the
// plugin's timer (CUDA events on GPU) and reports the median per call, achieved GB/s (unique
// bytes read + written), TFLOP/s, and % of the ceiling that bounds the op (roofline: the larger
// of bytes / copy bandwidth and flops / matmul rate, over the measured time). Ceilings and the
// facade's dispatch overhead are measured in the same run (ceilings.cpp). Ops the plugin does not
// implement are reported as "unsupported" rows. Never asserts timings; exit 0 unless the
// plugin cannot be loaded (1) or the command line is wrong (2: the flag, what it takes and what
// was given; `--help` lists the ranges). On a terminal a progress line on stderr says which
// case runs; in a pipe nothing but the results is printed.
#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <new>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench.hpp"
#include "ferrum_tool_cli.hpp"

namespace ferrum::bench {

// ---- Env ------------------------------------------------------------------------------------

uint64_t Env::next() {
  seed ^= seed << 13;
  seed ^= seed >> 7;
  seed ^= seed << 17;
  return seed;
}

void Env::init_chunks() {
  std::vector<float> host(kChunk);
  for (int c = 0; c < 4; ++c) {
    for (float& v : host) {
      // uniform in [-1, 1), never zero
      float f = static_cast<float>(static_cast<int64_t>(next() >> 40) - (1 << 23)) / float(1 << 23);
      v = f == 0.0f ? 0.5f : f;
    }
    chunks.push_back(ctx->from_slice_typed(Dtype::f32, host.data(), host.size()));
  }
}

Buffer Env::random(uint64_t n, Dtype dtype) {
  if (dtype == Dtype::invalid) dtype = dt;
  if (chunks.empty()) init_chunks();
  Buffer b = ctx->alloc_typed(dtype, n);
  for (uint64_t pos = 0; pos < n;) {
    const uint64_t off = next() % (kChunk / 2);
    const uint64_t len = std::min(n - pos, kChunk - off);
    ctx->copy_slice({.src = chunks[next() % chunks.size()], .src_offset = off, .dst = b, .dst_offset = pos, .len = len});
    pos += len;
  }
  return b;
}

// ---- timing ---------------------------------------------------------------------------------

void time_case(Env& env, const RunFn& run, uint64_t copies, Result& r) {
  Context& ctx = *env.ctx;
  const Options& o = *env.opt;
  for (uint64_t c = 0; c < copies; ++c) run(c);  // warm-up: every copy once
  ctx.sync();
  Timer t = ctx.make_timer();
  uint64_t idx = 0;
  auto batch = [&](uint64_t calls) {
    ctx.record_start(t);
    for (uint64_t i = 0; i < calls; ++i) run(idx++ % copies);
    ctx.record_end(t);
    return ctx.elapsed_ms(t);
  };
  const double t1 = batch(1);
  r.copies = copies;
  if (t1 > o.max_call_ms) {
    r.status = "too_slow";
    r.note = "one call took " + std::to_string(int(t1)) + " ms > --max-call-ms; not repeated";
    r.median_us = r.min_us = r.max_us = t1 * 1e3;
    r.batches = r.calls_per_batch = 1;
    return;
  }
  auto calls_for = [&](double ms_per_call) {
    const double c = std::ceil(o.batch_ms / std::max(ms_per_call, 1e-5));
    return static_cast<uint64_t>(std::clamp(c, 1.0, 1e6));
  };
  uint64_t calls = calls_for(t1);
  calls = calls_for(batch(calls) / double(calls));  // recalibrate past the first-call effects
  std::vector<double> us;
  for (int b = 0; b < std::max(o.batches, 10); ++b) us.push_back(batch(calls) * 1e3 / double(calls));
  std::sort(us.begin(), us.end());
  r.median_us = us[us.size() / 2];
  r.min_us = us.front();
  r.max_us = us.back();
  r.batches = us.size();
  r.calls_per_batch = calls;
}

namespace {

// One status line on stderr, rewritten in place, only when stderr is a terminal: progress for a
// person watching, nothing in a pipe or a log file.
class Progress {
 public:
  Progress() : enabled_(isatty(STDERR_FILENO) == 1) {}
  void show(const std::string& line) {
    if (!enabled_) return;
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void clear() {
    if (!enabled_ || !shown_) return;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    shown_ = false;
  }

 private:
  bool enabled_;
  bool shown_ = false;
};

std::string first_line(const std::string& s) {
  const auto p = s.find('\n');
  return p == std::string::npos ? s : s.substr(0, p);
}

std::string fmt(double v, int prec) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

std::string fmt_us(double us) {
  return us >= 100 ? fmt(us, 1) : us >= 1 ? fmt(us, 2) : fmt(us, 3);
}

// "a,b,c" -> {"a", "b", "c"} (pieces may be empty; the --op check rejects those).
std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  for (size_t p = 0;;) {
    const size_t q = s.find(',', p);
    out.push_back(s.substr(p, q == std::string::npos ? std::string::npos : q - p));
    if (q == std::string::npos) return out;
    p = q + 1;
  }
}

}  // namespace
}  // namespace ferrum::bench

int main(int argc, char** argv) {
  using namespace ferrum;
  using namespace ferrum::bench;
  using Json = nlohmann::ordered_json;
  Options opt;
  bool list_only = false;
  double ws_mb = 0;
  namespace ft = ferrum::tools;
  CLI::App app{"ferrum-bench: per-op benchmark of a ferrum plugin through the facade (median time, GB/s, TFLOP/s, "
               "% of the ceilings it measures itself). Shows progress on a terminal, stays quiet in a pipe.",
               "ferrum-bench"};
  app.add_option("--plugin,--backend", opt.plugin,
                 "the plugin: a name (cpu, cuda, cuda:1) or a path to a libferrum-*.so (default: FERRUM_BACKEND, "
                 "then the config file, then auto)")
      ->check(ft::non_empty("a backend name, a plugin path or auto"))
      ->type_name("SPEC");
  app.add_option("--op", opt.op_glob,
                 "only cases whose op or op/shape matches GLOB, or one of several comma-separated GLOBs (e.g. "
                 "'gemm', 'rms_norm/*', 'paged_*,int8_*')")
      ->check(ft::non_empty("a glob"))
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            for (const std::string& g : split_commas(s))
              if (g.empty()) return "expected comma-separated non-empty globs, given " + ft::quoted(s);
            return {};
          },
          "", "glob_list"))
      ->type_name("GLOB")
      ->capture_default_str();
  std::string dtype_name;
  app.add_option("--dtype", dtype_name, "activation dtype (default: the context's)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->type_name("f32|f16|bf16");
  app.add_flag("--json", opt.json, "JSON results on stdout (the table goes to stderr)");
  app.add_flag("--quick", opt.quick, "short batches and a small working set (a smoke run)");
  ft::add_integer(app, "--batches", opt.batches, 1, 10000, "timed batches per case (at least 10 are run)");
  ft::add_positive(app, "--batch-ms", opt.batch_ms, 60000, "target duration of one timed batch, ms (default 20; CPU 50)");
  ft::add_positive(app, "--max-call-ms", opt.max_call_ms, 3.6e6,
                   "a case whose one call takes longer is reported, not timed, ms (default: CPU 500, GPU 2000)");
  ft::add_positive(app, "--max-mem-gb", opt.max_mem_gb, 65536,
                   "cases needing more memory are skipped, GB (default: CPU 3, GPU 24)");
  ft::add_positive(app, "--ws-mb", ws_mb, 1048576,
                   "rotating working set per case, MB (default: 4x the last-level cache on CPU, 128 on GPU)");
  app.add_flag("--no-ceilings", opt.no_ceilings, "skip measuring the copy / matmul ceilings");
  app.add_flag("--list", list_only, "list the matching cases and exit");
  ft::parse_or_exit(app, argc, argv);
  if (dtype_name == "f32") opt.dtype = Dtype::f32;
  else if (dtype_name == "f16") opt.dtype = Dtype::f16;
  else if (dtype_name == "bf16") opt.dtype = Dtype::bf16;
  if (opt.quick) {
    opt.batch_ms = std::min(opt.batch_ms, 2.0);
  }

  Backend backend;
  Context ctx;
  DeviceProps props;
  try {
    backend = Backend::load(opt.plugin);
    props = backend.device_props(backend.selected_device());
    opt.gpu = props.kind == DeviceKind::gpu;
    ctx = backend.create_context({}, opt.dtype);
  } catch (const Error& e) {
    std::fprintf(stderr, "ferrum-bench: %s\n", e.what());
    return 1;
  }
  if (opt.max_mem_gb == 0) opt.max_mem_gb = opt.gpu ? 24 : 3;
  if (opt.max_call_ms == 0) opt.max_call_ms = opt.gpu ? 2000 : 500;
  if (!opt.gpu) opt.batch_ms = std::max(opt.batch_ms, opt.quick ? 2.0 : 50.0);

  Env env;
  env.backend = &backend;
  env.ctx = &ctx;
  env.opt = &opt;
  env.dt = opt.dtype != Dtype::invalid ? opt.dtype : ctx.activation_dtype();
  env.esz = element_size(env.dt);
  const std::string dtname(to_string(env.dt));
  opt.ws_bytes = ws_mb > 0 ? ws_mb * 1e6
                 : opt.gpu ? 128e6
                           : 4.0 * double(last_level_cache_bytes());
  if (opt.quick && ws_mb == 0) opt.ws_bytes = std::min(opt.ws_bytes, 16e6);

  std::vector<Case> cases = make_cases(env);
  const std::vector<std::string> globs = split_commas(opt.op_glob);
  auto selected = [&](const Case& c) {
    const std::string full = c.op + "/" + c.shape;
    return std::any_of(globs.begin(), globs.end(), [&](const std::string& g) {
      return fnmatch(g.c_str(), c.op.c_str(), 0) == 0 || fnmatch(g.c_str(), full.c_str(), 0) == 0;
    });
  };
  if (list_only) {
    for (const Case& c : cases)
      if (selected(c)) std::printf("%s/%s\n", c.op.c_str(), c.shape.c_str());
    return 0;
  }

  const std::string device_name = opt.gpu ? props.name : cpu_model();
  std::FILE* human = opt.json ? stderr : stdout;
  std::fprintf(human, "ferrum-bench: plugin %s %s on %s, dtype %s%s\n", std::string(backend.name()).c_str(),
               std::string(backend.version()).c_str(), device_name.c_str(), dtname.c_str(),
               opt.quick ? " (quick)" : "");

  Progress progress;
  Ceilings ceil;
  Dispatch disp;
  progress.show(opt.no_ceilings ? "measuring dispatch overhead..." : "measuring ceilings and dispatch overhead...");
  try {
    if (!opt.no_ceilings) ceil = measure_ceilings(env);
    disp = measure_dispatch(env);
  } catch (const Error& e) {
    std::fprintf(stderr, "ferrum-bench: ceiling/dispatch measurement failed: %s\n", e.what());
  }
  progress.clear();
  std::fprintf(human, "ceilings: copy %.1f GB/s (read+write; plugin copy_slice %.1f, host memcpy x%llu threads %.1f); matmul %.3f TFLOP/s (%s)\n",
               ceil.copy_gbs, ceil.plugin_copy_gbs, static_cast<unsigned long long>(ceil.threads),
               ceil.host_copy_gbs, ceil.matmul_tflops, ceil.matmul_source.c_str());
  if (!opt.gpu)
    std::fprintf(human, "          FMA peak per core: %.1f GFLOP/s (avx512 %.1f, avx2 %.1f, scalar %.1f); threads %llu\n",
                 ceil.fma_1core_gflops, ceil.fma_avx512_gflops, ceil.fma_avx2_gflops,
                 ceil.fma_scalar_gflops, static_cast<unsigned long long>(ceil.threads));
  std::fprintf(human, "dispatch, facade vs raw slot: %s len 0: %.1f ns/call through the facade, %.1f ns raw slot (facade adds %.1f); len 1: %.1f ns/call%s%s\n",
               disp.op.c_str(), disp.facade_len0_ns, disp.slot_len0_ns,
               disp.facade_len0_ns - disp.slot_len0_ns, disp.facade_len1_ns,
               disp.note.empty() ? "" : "; ", disp.note.c_str());
  std::fprintf(human, "working-set target %.0f MB per case (rotating copies); median of >= %d batches\n\n",
               opt.ws_bytes / 1e6, std::max(opt.batches, 10));
  // Columns as wide as the longest selected op and shape name (at least 22 and 20).
  int op_w = 22, shape_w = 20;
  for (const Case& c : cases)
    if (selected(c)) {
      op_w = std::max(op_w, static_cast<int>(c.op.size()));
      shape_w = std::max(shape_w, static_cast<int>(c.shape.size()));
    }
  std::fprintf(human, "%-*s %-*s %-5s %11s %9s %9s %7s %-5s %s\n", op_w, "op", shape_w, "shape", "dtype",
               "median_us", "GB/s", "TFLOP/s", "%ceil", "bound", "status");
  std::fflush(human);

  const size_t n_selected = static_cast<size_t>(std::count_if(cases.begin(), cases.end(), selected));
  std::vector<Result> results;
  for (const Case& c : cases) {
    if (!selected(c)) continue;
    progress.show("[" + std::to_string(results.size() + 1) + "/" + std::to_string(n_selected) + "] " + c.op + "/" +
                  c.shape + " ...");
    Result r;
    r.op = c.op;
    r.shape = c.shape;
    r.dtype = dtname;
    r.bytes = c.bytes;
    r.flops = c.flops;
    const double t_mem = ceil.copy_gbs > 0 ? c.bytes / (ceil.copy_gbs * 1e9) : 0;
    const double t_flop = ceil.matmul_tflops > 0 ? c.flops / (ceil.matmul_tflops * 1e12) : 0;
    r.bound = t_flop > t_mem ? "flop" : "mem";
    uint64_t copies = static_cast<uint64_t>(std::ceil(opt.ws_bytes / std::max(c.footprint, 1.0)));
    copies = std::clamp<uint64_t>(copies, 1, c.max_copies);
    const double max_mem = opt.max_mem_gb * 1e9;
    if (c.footprint * copies > max_mem) copies = static_cast<uint64_t>(max_mem / c.footprint);
    const double est_ms = std::max(t_mem, t_flop) * 1e3;
    if (copies == 0) {
      r.status = "skipped";
      r.note = "needs " + fmt(c.footprint / 1e9, 2) + " GB > --max-mem-gb";
    } else if (est_ms > opt.max_call_ms) {
      r.status = "skipped";
      r.note = "roofline estimate " + fmt(est_ms, 0) + " ms/call > --max-call-ms";
    } else {
      try {
        RunFn run = c.setup(env, copies);
        r.working_set = c.footprint * copies;
        time_case(env, run, copies, r);
      } catch (const Error& e) {
        r.status = e.code() == ErrorCode::unsupported ? "unsupported" : "error";
        r.note = first_line(e.what());
        try {
          ctx.sync();
        } catch (const Error&) {
        }
      } catch (const std::bad_alloc&) {
        r.status = "error";
        r.note = "host out of memory";
      }
    }
    if (r.median_us > 0 && (r.status == "ok" || r.status == "too_slow")) {
      const double s = r.median_us * 1e-6;
      r.gbs = c.bytes / s / 1e9;
      r.tflops = c.flops / s / 1e12;
      r.pct = 100.0 * std::max(t_mem, t_flop) / s;
    }
    const bool timed = r.median_us > 0;
    progress.clear();
    std::fprintf(human, "%-*s %-*s %-5s %11s %9s %9s %7s %-5s %s%s%s\n", op_w, r.op.c_str(), shape_w, r.shape.c_str(),
                 r.dtype.c_str(), timed ? fmt_us(r.median_us).c_str() : "-",
                 timed ? fmt(r.gbs, 1).c_str() : "-", timed ? fmt(r.tflops, 3).c_str() : "-",
                 timed && r.pct > 0 ? fmt(r.pct, 1).c_str() : "-", r.bound.c_str(), r.status.c_str(),
                 r.note.empty() ? "" : ": ", r.note.c_str());
    std::fflush(human);
    results.push_back(std::move(r));
  }

  if (opt.json) {
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    Json j;
    j["tool"] = "ferrum-bench";
    j["date"] = date;
    j["plugin"] = {{"name", backend.name()}, {"version", backend.version()},
                   {"abi", backend.abi_version()}, {"path", backend.path()},
                   {"build_info", backend.build_info()}};
    j["device"] = {{"name", device_name}, {"kind", opt.gpu ? "gpu" : "cpu"}};
    j["dtype"] = dtname;
    j["quick"] = opt.quick;
    j["working_set_target_bytes"] = opt.ws_bytes;
    j["ceilings"] = {{"copy_gbs", ceil.copy_gbs},
                     {"plugin_copy_gbs", ceil.plugin_copy_gbs},
                     {"host_copy_gbs", ceil.host_copy_gbs},
                     {"matmul_tflops", ceil.matmul_tflops},
                     {"matmul_source", ceil.matmul_source},
                     {"fma_1core_gflops", ceil.fma_1core_gflops},
                     {"fma_isa", ceil.fma_isa},
                     {"fma_avx512_gflops", ceil.fma_avx512_gflops},
                     {"fma_avx2_gflops", ceil.fma_avx2_gflops},
                     {"fma_scalar_gflops", ceil.fma_scalar_gflops},
                     {"threads", ceil.threads}};
    j["dispatch"] = {{"op", disp.op},
                     {"facade_len0_ns", disp.facade_len0_ns},
                     {"slot_len0_ns", disp.slot_len0_ns},
                     {"facade_overhead_ns", disp.facade_len0_ns - disp.slot_len0_ns},
                     {"facade_len1_ns", disp.facade_len1_ns},
                     {"loop_ns", disp.loop_ns},
                     {"note", disp.note}};
    Json rows = Json::array();
    for (const Result& r : results)
      rows.push_back({{"key", r.op + "/" + r.shape + "/" + r.dtype},
                      {"op", r.op},
                      {"shape", r.shape},
                      {"dtype", r.dtype},
                      {"status", r.status},
                      {"note", r.note},
                      {"median_us", r.median_us},
                      {"min_us", r.min_us},
                      {"max_us", r.max_us},
                      {"batches", r.batches},
                      {"calls_per_batch", r.calls_per_batch},
                      {"copies", r.copies},
                      {"working_set_bytes", r.working_set},
                      {"bytes", r.bytes},
                      {"flops", r.flops},
                      {"gbs", r.gbs},
                      {"tflops", r.tflops},
                      {"bound", r.bound},
                      {"pct_of_ceiling", r.pct}});
    j["rows"] = std::move(rows);
    std::printf("%s\n", j.dump(1).c_str());
  }
  return 0;
}
