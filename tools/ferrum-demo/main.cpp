// ferrum-demo — the main job: a small Qwen3-style decoder with seeded random weights that
// prefills a prompt and greedily decodes N tokens on the selected backend.
//
//   ferrum-demo [--backend SPEC] [--dtype f32|f16|bf16] [--prompt 1,2,3 | --prompt-len N]
//               [--tokens N] [--hidden N] [--layers N] [--q-heads N] [--kv-heads N]
//               [--head-dim N] [--ffn N] [--vocab N] [--seed N] [--graphs auto|on|off|both] [--json]
//
// --backend: a name (cpu, cuda, cuda:1), a path to a plugin .so, or auto; without it
// FERRUM_BACKEND, then the config file, then auto decide (see README).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "demo_model.hpp"

namespace {

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "ferrum-demo: %s\nusage: ferrum-demo [--backend SPEC] [--dtype f32|f16|bf16] [--prompt 1,2,3 | "
               "--prompt-len N] [--tokens N] [--hidden N] [--layers N] [--q-heads N] [--kv-heads N] "
               "[--head-dim N] [--ffn N] [--vocab N] [--seed N] [--graphs auto|on|off|both] [--json]\n",
               msg);
  std::exit(2);
}

uint64_t parse_u64(const char* flag, const char* v) {
  char* end = nullptr;
  unsigned long long x = std::strtoull(v, &end, 10);
  if (!*v || *end) usage((std::string("bad number for ") + flag + ": " + v).c_str());
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  ferrum::demo::ModelConfig cfg;
  std::string backend_spec, dtype_name;
  std::vector<uint32_t> prompt;
  uint64_t prompt_len = 16, n_tokens = 32;
  bool json = false;
  std::string graphs = "auto";  // decode through captured graphs when the backend has them
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--backend") backend_spec = val();
    else if (a == "--dtype") dtype_name = val();
    else if (a == "--prompt") {
      std::string s = val();
      for (size_t p = 0; p < s.size();) {
        size_t q = s.find(',', p);
        prompt.push_back(static_cast<uint32_t>(parse_u64("--prompt", s.substr(p, q - p).c_str())));
        p = q == std::string::npos ? s.size() : q + 1;
      }
    } else if (a == "--prompt-len") prompt_len = parse_u64("--prompt-len", val());
    else if (a == "--tokens") n_tokens = parse_u64("--tokens", val());
    else if (a == "--hidden") cfg.hidden = parse_u64("--hidden", val());
    else if (a == "--layers") cfg.layers = parse_u64("--layers", val());
    else if (a == "--q-heads") cfg.q_heads = parse_u64("--q-heads", val());
    else if (a == "--kv-heads") cfg.kv_heads = parse_u64("--kv-heads", val());
    else if (a == "--head-dim") cfg.head_dim = parse_u64("--head-dim", val());
    else if (a == "--ffn") cfg.ffn = parse_u64("--ffn", val());
    else if (a == "--vocab") cfg.vocab = parse_u64("--vocab", val());
    else if (a == "--seed") cfg.seed = parse_u64("--seed", val());
    else if (a == "--json") json = true;
    else if (a == "--graphs") graphs = val();
    else if (a == "-h" || a == "--help") usage("help");
    else usage(("unknown argument " + a).c_str());
  }
  if (graphs != "auto" && graphs != "on" && graphs != "off" && graphs != "both") usage("--graphs takes auto, on, off or both");
  ferrum::Dtype dtype = ferrum::Dtype::invalid;
  if (dtype_name == "f32") dtype = ferrum::Dtype::f32;
  else if (dtype_name == "f16") dtype = ferrum::Dtype::f16;
  else if (dtype_name == "bf16") dtype = ferrum::Dtype::bf16;
  else if (!dtype_name.empty()) usage(("unknown dtype " + dtype_name).c_str());
  if (prompt.empty())
    for (uint64_t i = 0; i < prompt_len; ++i)
      prompt.push_back(static_cast<uint32_t>(
          (ferrum::demo::weight_value(cfg.seed, 9, i, 0.5) + 0.5) * double(cfg.vocab)) % cfg.vocab);
  for (uint32_t id : prompt)
    if (id >= cfg.vocab) usage("prompt id out of the vocabulary");
  if (prompt.empty() || n_tokens == 0) usage("need a prompt and --tokens >= 1");
  cfg.max_positions = std::max<uint64_t>(prompt.size() + n_tokens + 1, 64);

  try {
    ferrum::Backend backend = ferrum::Backend::load(backend_spec);
    ferrum::Context ctx = backend.create_context({}, dtype);
    ferrum::demo::Model model(ctx, cfg, prompt.size());

    using clock = std::chrono::steady_clock;
    const bool can_graph = ferrum::demo::Model::graphs_supported(backend);
    if ((graphs == "on" || graphs == "both") && !can_graph)
      usage(("--graphs " + graphs + ": this backend has no graph family").c_str());
    const bool run_eager = graphs == "off" || graphs == "both" || (graphs == "auto" && !can_graph);
    const bool run_graph = graphs == "on" || graphs == "both" || (graphs == "auto" && can_graph);

    // Prefill, then N − 1 decode steps; returns {prefill s, decode s, generated ids, last logits}.
    struct Result { double prefill_s = 0, decode_s = 0; std::vector<uint32_t> ids; std::vector<float> logits; };
    auto generate = [&](bool with_graphs) {
      Result r;
      model.reset();
      uint32_t next = 0;
      auto t0 = clock::now();
      r.logits = model.forward(prompt, next, n_tokens == 1);
      ctx.sync();
      auto t1 = clock::now();
      r.ids.push_back(next);
      while (r.ids.size() < n_tokens) {
        const bool last = r.ids.size() + 1 == n_tokens;
        if (with_graphs) {
          next = model.decode_graph(next);
        } else {
          r.logits = model.forward({next}, next, last);
        }
        r.ids.push_back(next);
      }
      ctx.sync();
      auto t2 = clock::now();
      if (with_graphs && n_tokens > 1) r.logits = ctx.to_vec(model.logits(), cfg.vocab);
      r.prefill_s = std::chrono::duration<double>(t1 - t0).count();
      r.decode_s = std::chrono::duration<double>(t2 - t1).count();
      return r;
    };
    Result eager, graph;
    if (run_eager) eager = generate(false);
    if (run_graph) {
      if (run_eager) generate(true);  // a first pass captures the graph; time the second
      graph = generate(true);
      model.reset_graphs();
    }
    const Result& best = run_graph ? graph : eager;
    if (run_eager && run_graph && eager.ids != graph.ids)
      std::fprintf(stderr, "ferrum-demo: warning: eager and graph decoding generated different tokens\n");
    const std::vector<uint32_t>& generated = best.ids;
    const std::vector<float>& logits = best.logits;
    const double prefill_s = best.prefill_s, decode_s = best.decode_s;
    const double prefill_tps = double(prompt.size()) / prefill_s;
    const double decode_tps = n_tokens > 1 ? double(n_tokens - 1) / decode_s : 0.0;
    const double eager_tps = run_eager && n_tokens > 1 ? double(n_tokens - 1) / eager.decode_s : 0.0;
    const double graph_tps = run_graph && n_tokens > 1 ? double(n_tokens - 1) / graph.decode_s : 0.0;
    double checksum = 0;
    for (size_t i = 0; i < logits.size(); ++i) checksum += double(logits[i]) * double((i % 7) + 1);

    // Bandwidth roofline: each decode token streams every weight once (the embedding table: one
    // row) plus its KV history; the ceiling is the backend's own copy bandwidth, measured here
    // (bytes read + written). A read-only stream can beat a copy, so > 100% is possible on CPUs.
    double copy_gbs = 0;
    {
      const uint64_t n = 64ull << 20;  // 64 Mi elements of the activation dtype
      ferrum::Buffer src = ctx.alloc(n), dst = ctx.alloc(n);
      ctx.copy_slice(src, 0, dst, 0, n);
      ctx.sync();
      ferrum::Timer timer = ctx.make_timer();
      double best_ms = 1e30;
      for (int rep = 0; rep < 5; ++rep) {
        ctx.record_start(timer);
        ctx.copy_slice(src, 0, dst, 0, n);
        ctx.record_end(timer);
        best_ms = std::min(best_ms, ctx.elapsed_ms(timer));
      }
      copy_gbs = 2.0 * double(n) * double(ferrum::element_size(ctx.activation_dtype())) / (best_ms * 1e6);
    }
    const double bytes_per_token = double(model.decode_weight_bytes()) +
                                   double(model.kv_bytes_per_token()) * double(prompt.size() + n_tokens / 2);
    const double roofline_tps = copy_gbs * 1e9 / bytes_per_token;
    const double roofline_pct = roofline_tps > 0 ? 100.0 * decode_tps / roofline_tps : 0.0;

    const ferrum::DeviceProps props = backend.device_props(ctx.device());
    std::string ids;
    for (uint32_t g : generated) ids += (ids.empty() ? "" : ",") + std::to_string(g);
    const std::string dt_s(ferrum::to_string(ctx.activation_dtype()));
    const char* dt = dt_s.c_str();
    if (json) {
      std::printf("{\"backend\": \"%s\", \"version\": \"%s\", \"device\": \"%s\", \"dtype\": \"%s\", "
                  "\"prompt_tokens\": %zu, \"generated_tokens\": %llu, \"prefill_tokens_per_s\": %.3f, "
                  "\"decode_tokens_per_s\": %.3f, \"weight_bytes\": %llu, \"generated\": [%s], "
                  "\"logits_checksum\": %.9g, \"decode_mode\": \"%s\", \"eager_decode_tokens_per_s\": %.3f, "
                  "\"graph_decode_tokens_per_s\": %.3f, \"copy_gb_per_s\": %.1f, \"roofline_pct\": %.1f}\n",
                  std::string(backend.name()).c_str(), std::string(backend.version()).c_str(), props.name.c_str(), dt,
                  prompt.size(), (unsigned long long)n_tokens, prefill_tps, decode_tps,
                  (unsigned long long)model.weight_bytes(), ids.c_str(), checksum, run_graph ? "graph" : "eager",
                  eager_tps, graph_tps, copy_gbs, roofline_pct);
    } else {
      std::printf("backend:   %s %s (ABI %s), device %llu: %s\n", std::string(backend.name()).c_str(),
                  std::string(backend.version()).c_str(), backend.abi_version().c_str(),
                  (unsigned long long)ctx.device(), props.name.c_str());
      std::printf("model:     hidden %llu, %llu layers, %llu/%llu heads, head_dim %llu, ffn %llu, vocab %llu, %s, "
                  "%.1f MB of weights\n",
                  (unsigned long long)cfg.hidden, (unsigned long long)cfg.layers, (unsigned long long)cfg.q_heads,
                  (unsigned long long)cfg.kv_heads, (unsigned long long)cfg.head_dim, (unsigned long long)cfg.ffn,
                  (unsigned long long)cfg.vocab, dt, model.weight_bytes() / 1e6);
      std::printf("prefill:   %zu tokens in %.3f s = %.1f tokens/s\n", prompt.size(), prefill_s, prefill_tps);
      std::printf("decode:    %llu tokens in %.3f s = %.2f tokens/s (%s; %.1f GB/s of weights + KV read)\n",
                  (unsigned long long)(n_tokens - 1), decode_s, decode_tps, run_graph ? "graph replay" : "eager",
                  decode_tps * bytes_per_token / 1e9);
      if (run_eager && run_graph)
        std::printf("           eager %.2f tokens/s, graph %.2f tokens/s: %.2fx\n", eager_tps, graph_tps,
                    eager_tps > 0 ? graph_tps / eager_tps : 0.0);
      std::printf("roofline:  copy bandwidth %.1f GB/s, %.2f MB per token -> %.1f tokens/s; decode at %.1f%% of it\n",
                  copy_gbs, bytes_per_token / 1e6, roofline_tps, roofline_pct);
      std::printf("generated: %s\n", ids.c_str());
      std::printf("logits checksum: %.9g\n", checksum);
    }
  } catch (const ferrum::Error& e) {
    std::fprintf(stderr, "ferrum-demo: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferrum-demo: %s\n", e.what());
    return 1;
  }
  return 0;
}
