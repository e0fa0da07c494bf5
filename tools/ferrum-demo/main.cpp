// ferrum-demo — the main job: a small Qwen3-style decoder with seeded random weights that
// prefills a prompt and greedily decodes N tokens on the selected backend.
//
//   ferrum-demo [--backend SPEC] [--dtype f32|f16|bf16] [--prompt 1,2,3 | --prompt-len N]
//               [--tokens N] [--hidden N] [--layers N] [--q-heads N] [--kv-heads N]
//               [--head-dim N] [--ffn N] [--vocab N] [--seed N] [--json]
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
               "[--head-dim N] [--ffn N] [--vocab N] [--seed N] [--json]\n",
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
    else if (a == "-h" || a == "--help") usage("help");
    else usage(("unknown argument " + a).c_str());
  }
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
    uint32_t next = 0;
    auto t0 = clock::now();
    std::vector<float> logits = model.forward(prompt, next, true);
    ctx.sync();
    auto t1 = clock::now();
    std::vector<uint32_t> generated{next};
    while (generated.size() < n_tokens) {
      logits = model.forward({next}, next, generated.size() + 1 == n_tokens);
      generated.push_back(next);
    }
    ctx.sync();
    auto t2 = clock::now();
    const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
    const double decode_s = std::chrono::duration<double>(t2 - t1).count();
    const double prefill_tps = double(prompt.size()) / prefill_s;
    const double decode_tps = n_tokens > 1 ? double(n_tokens - 1) / decode_s : 0.0;
    double checksum = 0;
    for (size_t i = 0; i < logits.size(); ++i) checksum += double(logits[i]) * double((i % 7) + 1);

    const ferrum::DeviceProps props = backend.device_props(ctx.device());
    std::string ids;
    for (uint32_t g : generated) ids += (ids.empty() ? "" : ",") + std::to_string(g);
    const std::string dt_s(ferrum::to_string(ctx.activation_dtype()));
    const char* dt = dt_s.c_str();
    if (json) {
      std::printf("{\"backend\": \"%s\", \"version\": \"%s\", \"device\": \"%s\", \"dtype\": \"%s\", "
                  "\"prompt_tokens\": %zu, \"generated_tokens\": %llu, \"prefill_tokens_per_s\": %.3f, "
                  "\"decode_tokens_per_s\": %.3f, \"weight_bytes\": %llu, \"generated\": [%s], "
                  "\"logits_checksum\": %.9g}\n",
                  std::string(backend.name()).c_str(), std::string(backend.version()).c_str(), props.name.c_str(), dt,
                  prompt.size(), (unsigned long long)n_tokens, prefill_tps, decode_tps,
                  (unsigned long long)model.weight_bytes(), ids.c_str(), checksum);
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
      std::printf("decode:    %llu tokens in %.3f s = %.2f tokens/s (%.1f GB/s of weights)\n",
                  (unsigned long long)(n_tokens - 1), decode_s, decode_tps, decode_tps * model.weight_bytes() / 1e9);
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
