// ferrum-demo — the main job: a small Qwen3-style decoder with seeded random weights that
// prefills a prompt and greedily decodes N tokens on the selected backend.
//
//   ferrum-demo [--backend SPEC] [--dtype f32|f16|bf16] [--prompt 1,2,3 | --prompt-len N]
//               [--tokens N] [--hidden N] [--layers N] [--q-heads N] [--kv-heads N]
//               [--head-dim N] [--ffn N] [--vocab N] [--seed N] [--graphs auto|on|off|both]
//               [--kv contiguous|paged] [--kv-dtype auto|int8|fp8] [--quant none|q8_0|q4_0 [--quant-act exact|q8]]
//               [--tp N [--tp-id-file PATH]] [--json]
//
// --quant q8_0|q4_0 quantises every layer's four projection matrices on the host (GGUF blocks of the
// same seeded values) and runs them through gguf_matmul (load_quant); the embedding, norms and LM
// head stay in the activation dtype. No graph path with --quant (the captured step is written with
// gemm). --quant-act q8 loads them with act_precision FERRUM_QUANT_ACT_Q8: gguf_matmul may round
// the activations to 8-bit codes per 32 columns (integer dot products on the CPU plugin).
// --kv paged decodes through the paged-KV ops (block pools of 16 tokens, block table in random
// order), --kv-dtype int8|fp8 (with --kv paged) through the quantised-KV ops; a backend without
// one of those ops is a usage error naming the op (there is no fallback).
//
// --tp N runs the model tensor-parallel over N ranks, one process per rank, started by an MPI
// launcher (`mpirun -np N ferrum-demo --tp N ...`; the rank comes from the launcher's environment):
// each rank holds 1/N of the heads and of the MLP, and the context's communicator (comm_init;
// the backend's collective family) sums the partial products. Rank 0 writes the communicator id to
// --tp-id-file (default: /tmp/ferrum-demo-<job id>.id; on several hosts give a shared path) and the
// others read it there; only rank 0 prints. Rank r uses device r mod the plugin's device count
// (CUDA: one GPU per rank, collectives over NCCL).
//
// --backend: a name (cpu, cuda, cuda:1), a path to a plugin .so, or auto; without it
// FERRUM_BACKEND, then the config file, then auto decide (see README). `--help` lists the
// ranges; a bad value (or a model that cannot fit in memory) is a usage error: exit 2.
#include <algorithm>
#include <optional>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>


#include "demo_model.hpp"
#include "ferrum_tool_cli.hpp"
#include "ferrum_tool_tp.hpp"

namespace {

namespace ft = ferrum::tools;

// Upper bounds of the shape flags: generous for a demo, and small enough that every size the
// model computes from them (products of at most four of them) stays far below 2^64.
constexpr uint64_t kMaxTokens = 1u << 20, kMaxHidden = 1u << 16, kMaxLayers = 1024, kMaxHeads = 1024,
                   kMaxHeadDim = 1024, kMaxFfn = 1u << 18, kMaxVocab = 1u << 22;

// --prompt: comma-separated token ids, each checked like a numeric flag.
std::vector<uint32_t> parse_prompt(const CLI::App& app, const std::string& text) {
  std::vector<uint32_t> ids;
  for (size_t p = 0; p <= text.size();) {
    size_t q = text.find(',', p);
    if (q == std::string::npos) q = text.size();
    std::string error;
    const auto id = ft::parse_integer<uint32_t>(std::string_view(text).substr(p, q - p), 0, kMaxVocab - 1, error);
    if (!id) ft::usage_error(app, "--prompt: token " + std::to_string(ids.size() + 1) + ": " + error);
    if (ids.size() == kMaxTokens)
      ft::usage_error(app, "--prompt: expected at most " + std::to_string(kMaxTokens) + " token ids, given more");
    ids.push_back(*id);
    p = q + 1;
  }
  return ids;
}

std::string dtype_name_of(const ferrum::Context& ctx) { return std::string(ferrum::to_string(ctx.activation_dtype())); }

std::string gigabytes(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GB", bytes / 1e9);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  ferrum::demo::ModelConfig cfg;
  std::string backend_spec, dtype_name, prompt_text;
  uint64_t prompt_len = 16, n_tokens = 32;
  bool json = false;
  std::string graphs = "auto";  // decode through captured graphs when the backend has them
  std::string kv_layout = "contiguous", kv_dtype = "auto", quant = "none", quant_act = "exact", tp_id_file;

  CLI::App app{"ferrum-demo: a small Qwen3-style decoder with seeded random weights; prefills a prompt and "
               "greedily decodes N tokens on the selected backend.",
               "ferrum-demo"};
  app.add_option("--backend", backend_spec,
                 "a backend name (cpu, cuda, cuda:1), a path to a plugin .so, or auto; default: FERRUM_BACKEND, "
                 "then the config file, then auto")
      ->check(ft::non_empty("a backend name, a plugin path or auto"))
      ->type_name("SPEC");
  app.add_option("--dtype", dtype_name, "activation dtype (default: the backend's)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->type_name("f32|f16|bf16");
  auto* prompt_opt = app.add_option("--prompt", prompt_text, "the prompt as comma-separated token ids, e.g. 1,2,3")
                         ->type_name("IDS");
  ft::add_integer(app, "--prompt-len", prompt_len, uint64_t{1}, kMaxTokens,
                  "length of the seeded random prompt used without --prompt")
      ->excludes(prompt_opt);
  ft::add_integer(app, "--tokens", n_tokens, uint64_t{1}, kMaxTokens, "tokens to generate");
  ft::add_integer(app, "--hidden", cfg.hidden, uint64_t{1}, kMaxHidden, "hidden size");
  ft::add_integer(app, "--layers", cfg.layers, uint64_t{1}, kMaxLayers, "decoder layers");
  ft::add_integer(app, "--q-heads", cfg.q_heads, uint64_t{1}, kMaxHeads, "query heads");
  ft::add_integer(app, "--kv-heads", cfg.kv_heads, uint64_t{1}, kMaxHeads, "KV heads (divides --q-heads)");
  ft::add_integer(app, "--head-dim", cfg.head_dim, uint64_t{2}, kMaxHeadDim, "head dimension (even)");
  ft::add_integer(app, "--ffn", cfg.ffn, uint64_t{1}, kMaxFfn, "MLP intermediate size");
  ft::add_integer(app, "--vocab", cfg.vocab, uint64_t{1}, kMaxVocab, "vocabulary size");
  ft::add_integer(app, "--seed", cfg.seed, uint64_t{0}, UINT64_MAX, "weight seed");
  app.add_option("--graphs", graphs,
                 "decode through captured graphs: auto (when the backend has them), on, off, or both (eager and "
                 "graph, compared)")
      ->check(CLI::IsMember({"auto", "on", "off", "both"}))
      ->capture_default_str();
  app.add_option("--kv", kv_layout,
                 "KV cache: contiguous (one buffer per layer) or paged (pools of 16-token blocks, block table in "
                 "random order, through the paged-KV ops)")
      ->check(CLI::IsMember({"contiguous", "paged"}))
      ->capture_default_str();
  app.add_option("--kv-dtype", kv_dtype,
                 "KV element type: auto (the activation dtype), int8 or fp8 (quantised codes + f32 scales, through "
                 "the quantised-KV ops; needs --kv paged; no graph path)")
      ->check(CLI::IsMember({"auto", "int8", "fp8"}))
      ->capture_default_str();
  app.add_option("--quant", quant,
                 "projection weights: none (the activation dtype, gemm), q8_0 or q4_0 (GGUF blocks quantised on the "
                 "host, through load_quant / gguf_matmul; no graph path)")
      ->check(CLI::IsMember({"none", "q8_0", "q4_0"}))
      ->capture_default_str();
  app.add_option("--quant-act", quant_act,
                 "with --quant: exact (activations as they are) or q8 (load_quant act_precision Q8: gguf_matmul may "
                 "round the activations to 8-bit codes per 32 columns)")
      ->check(CLI::IsMember({"exact", "q8"}))
      ->capture_default_str();
  ft::add_integer(app, "--tp", cfg.tp_size, uint64_t{1}, uint64_t{kMaxHeads},
                  "tensor-parallel ranks, one process each, started by an MPI launcher (mpirun -np N); divides "
                  "--q-heads, --kv-heads and --ffn");
  app.add_option("--tp-id-file", tp_id_file,
                 "where rank 0 leaves the communicator id for the other ranks (default /tmp/ferrum-demo-<job id>.id; "
                 "a shared path across hosts)")
      ->type_name("PATH");
  app.add_flag("--json", json, "one JSON object on stdout instead of the text report");
  ft::parse_or_exit(app, argc, argv);

  // Checks across flags.
  if (cfg.q_heads % cfg.kv_heads)
    ft::usage_error(app, "--kv-heads: expected a divisor of --q-heads (" + std::to_string(cfg.q_heads) +
                             "), given " + std::to_string(cfg.kv_heads));
  if (cfg.head_dim % 2)
    ft::usage_error(app, "--head-dim: expected an even number (RoPE rotates pairs), given " +
                             std::to_string(cfg.head_dim));
  if (kv_dtype != "auto" && kv_layout != "paged")
    ft::usage_error(app, "--kv-dtype: expected auto with --kv contiguous (int8 and fp8 caches are paged: add --kv "
                         "paged), given " + kv_dtype);
  cfg.kv = kv_layout == "paged" ? ferrum::demo::KvLayout::paged : ferrum::demo::KvLayout::contiguous;
  cfg.kv_dtype = kv_dtype == "int8"  ? ferrum::demo::KvDtype::int8
                 : kv_dtype == "fp8" ? ferrum::demo::KvDtype::fp8
                                     : ferrum::demo::KvDtype::activation;
  if (cfg.kv_dtype != ferrum::demo::KvDtype::activation && graphs != "auto" && graphs != "off")
    ft::usage_error(app, "--graphs: expected auto or off with --kv-dtype " + kv_dtype +
                             " (the quantised append reads a host block list, so it cannot be captured), given " +
                             graphs);
  cfg.quant = quant == "q8_0" ? 8 : quant == "q4_0" ? 2 : 0;
  if (quant_act != "exact" && cfg.quant == 0)
    ft::usage_error(app, "--quant-act: expected exact without --quant (it applies to the GGUF projections), given " +
                             quant_act);
  cfg.quant_act_q8 = quant_act == "q8";
  if (cfg.quant != 0 && graphs != "auto" && graphs != "off")
    ft::usage_error(app, "--graphs: expected auto or off with --quant " + quant +
                             " (the captured decode step is written with gemm), given " + graphs);
  if (cfg.quant != 0 && (cfg.hidden % 32 || cfg.ffn % 32 || (cfg.q_heads * cfg.head_dim) % 32))
    ft::usage_error(app, "--quant " + quant + ": expected --hidden, --ffn and --q-heads x --head-dim multiples of 32 "
                         "(the GGUF block width), given " + std::to_string(cfg.hidden) + ", " + std::to_string(cfg.ffn) +
                         " and " + std::to_string(cfg.q_heads * cfg.head_dim));
  // Tensor parallelism: every split must be whole, and this process must be one of tp ranks.
  int tp_rank = 0;
  if (cfg.tp_size > 1) {
    for (const auto& [flag, n] : {std::pair<const char*, uint64_t>{"--q-heads", cfg.q_heads}, {"--kv-heads", cfg.kv_heads},
                                  {"--ffn", cfg.ffn}})
      if (n % cfg.tp_size)
        ft::usage_error(app, std::string(flag) + ": expected a multiple of --tp (" + std::to_string(cfg.tp_size) +
                                 "), given " + std::to_string(n));
    tp_rank = ft::tp_rank_of(app, "ferrum-demo", cfg.tp_size, tp_id_file);
    cfg.tp_rank = static_cast<uint64_t>(tp_rank);
  }
  if (cfg.quant != 0 && cfg.tp_size > 1 &&
      ((cfg.q_heads / cfg.tp_size * cfg.head_dim) % 32 || (cfg.ffn / cfg.tp_size) % 32))
    ft::usage_error(app, "--tp " + std::to_string(cfg.tp_size) + ": expected each rank's share of --q-heads x --head-dim "
                         "and of --ffn to be a multiple of 32 with --quant (the GGUF block width)");
  std::vector<uint32_t> prompt;
  if (prompt_opt->count()) {
    prompt = parse_prompt(app, prompt_text);
    for (size_t i = 0; i < prompt.size(); ++i)
      if (prompt[i] >= cfg.vocab)
        ft::usage_error(app, "--prompt: token " + std::to_string(i + 1) + ": expected an id below --vocab (" +
                                 std::to_string(cfg.vocab) + "), given " + std::to_string(prompt[i]));
  } else {
    for (uint64_t i = 0; i < prompt_len; ++i)
      prompt.push_back(static_cast<uint32_t>(
          (ferrum::demo::weight_value(cfg.seed, 9, i, 0.5) + 0.5) * double(cfg.vocab)) % cfg.vocab);
  }
  cfg.max_positions = std::max<uint64_t>(prompt.size() + n_tokens + 1, 64);
  ferrum::Dtype dtype = ferrum::Dtype::invalid;  // the backend's default
  if (dtype_name == "f32") dtype = ferrum::Dtype::f32;
  else if (dtype_name == "f16") dtype = ferrum::Dtype::f16;
  else if (dtype_name == "bf16") dtype = ferrum::Dtype::bf16;

  try {
    ferrum::Backend backend = ferrum::Backend::load(backend_spec);
    // With --tp, rank r runs on device r mod the plugin's device count (a GPU per rank on CUDA).
    std::optional<uint64_t> device;
    if (cfg.tp_size > 1) device = static_cast<uint64_t>(tp_rank) % std::max<uint64_t>(1, backend.device_count());
    ferrum::Context ctx = backend.create_context(device, dtype);
    if (cfg.tp_size > 1) {
      const std::vector<uint8_t> id =
          ft::share_id(tp_id_file, tp_rank, tp_rank == 0 ? ctx.comm_unique_id() : std::vector<uint8_t>(128));
      ctx.comm_init({.unique_id = id.data(), .world_size = static_cast<uint32_t>(cfg.tp_size),
                     .rank = static_cast<uint32_t>(tp_rank)});
      if (tp_rank == 0) std::remove(tp_id_file.c_str());  // every rank has joined: the id is spent
    }
    // A shape that cannot fit is a usage error, found before anything is allocated.
    {
      const auto need = ferrum::demo::Model::footprint(ferrum::demo::local_config(cfg),
                                                       ferrum::element_size(ctx.activation_dtype()), prompt.size());
      const ferrum::DeviceProps dev = backend.device_props(ctx.device());
      const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
      const double host_bytes = pages > 0 && page > 0 ? double(pages) * double(page) : 0;
      const bool on_host = dev.kind != ferrum::DeviceKind::gpu;
      const double device_need = need.device_bytes + (on_host ? need.host_bytes : 0);
      const double device_have = on_host ? host_bytes : double(dev.total_memory_bytes);
      std::string what;
      if (device_have > 0 && device_need > device_have)
        what = gigabytes(device_need) + " (weights " + gigabytes(need.weight_bytes) + ", KV cache " +
               gigabytes(need.kv_bytes) + ") but " + (on_host ? "this machine" : "device " + dev.name) + " has " +
               gigabytes(device_have);
      else if (!on_host && host_bytes > 0 && need.host_bytes > host_bytes)
        what = gigabytes(need.host_bytes) + " of host memory to generate its weights but this machine has " +
               gigabytes(host_bytes);
      if (!what.empty())
        ft::usage_error(app, "the model does not fit in memory (" + dtype_name_of(ctx) + "): it needs " + what +
                                 "; lower --hidden, --layers, --ffn, --vocab, --kv-heads, --head-dim, --tokens or "
                                 "the prompt length");
    }
    // The cache's ops must all be there: no fallback to another cache.
    if (const auto op = ferrum::demo::first_missing(backend, ferrum::demo::kv_ops(cfg))) {
      const bool quant = cfg.kv_dtype != ferrum::demo::KvDtype::activation;
      ft::usage_error(app, std::string(quant ? "--kv-dtype: expected auto" : "--kv: expected contiguous") +
                               " for backend " + std::string(backend.name()) + " (it has no " +
                               std::string(ferrum::op_name(*op)) + "), given " + (quant ? kv_dtype : kv_layout));
    }
    if (cfg.quant != 0)
      if (const auto op = ferrum::demo::first_missing(backend, {ferrum::Op::load_quant, ferrum::Op::gguf_matmul}))
        ft::usage_error(app, "--quant: expected none for backend " + std::string(backend.name()) + " (it has no " +
                                 std::string(ferrum::op_name(*op)) + "), given " + quant);
    const bool can_graph = ferrum::demo::Model::graphs_supported(backend, cfg);
    if ((graphs == "on" || graphs == "both") && !can_graph)
      ft::usage_error(app, "--graphs: expected auto or off for backend " + std::string(backend.name()) +
                               " (it has no graph family), given " + graphs);
    ferrum::demo::Model model(ctx, cfg, prompt.size());

    using clock = std::chrono::steady_clock;
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
      ctx.copy_slice({.src = src, .src_offset = 0, .dst = dst, .dst_offset = 0, .len = n});
      ctx.sync();
      ferrum::Timer timer = ctx.make_timer();
      double best_ms = 1e30;
      for (int rep = 0; rep < 5; ++rep) {
        ctx.record_start(timer);
        ctx.copy_slice({.src = src, .src_offset = 0, .dst = dst, .dst_offset = 0, .len = n});
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
    const std::string kv_dtype_s = kv_dtype == "auto" ? dt_s : kv_dtype;
    if (tp_rank != 0) return 0;  // every rank computed the same tokens; rank 0 reports them
    if (json) {
      std::printf("{\"backend\": \"%s\", \"version\": \"%s\", \"device\": \"%s\", \"dtype\": \"%s\", "
                  "\"prompt_tokens\": %zu, \"generated_tokens\": %llu, \"prefill_tokens_per_s\": %.3f, "
                  "\"decode_tokens_per_s\": %.3f, \"weight_bytes\": %llu, \"generated\": [%s], "
                  "\"logits_checksum\": %.9g, \"decode_mode\": \"%s\", \"eager_decode_tokens_per_s\": %.3f, "
                  "\"graph_decode_tokens_per_s\": %.3f, \"copy_gb_per_s\": %.1f, \"roofline_pct\": %.1f, "
                  "\"kv\": \"%s\", \"kv_dtype\": \"%s\", \"kv_bytes\": %llu, \"quant\": \"%s\", \"quant_act\": \"%s\", "
                  "\"tp\": %llu}\n",
                  std::string(backend.name()).c_str(), std::string(backend.version()).c_str(), props.name.c_str(), dt,
                  prompt.size(), (unsigned long long)n_tokens, prefill_tps, decode_tps,
                  (unsigned long long)model.weight_bytes(), ids.c_str(), checksum, run_graph ? "graph" : "eager",
                  eager_tps, graph_tps, copy_gbs, roofline_pct, kv_layout.c_str(), kv_dtype_s.c_str(),
                  (unsigned long long)model.kv_cache_bytes(), quant.c_str(), quant_act.c_str(), (unsigned long long)cfg.tp_size);
    } else {
      std::printf("backend:   %s %s (ABI %s), device %llu: %s\n", std::string(backend.name()).c_str(),
                  std::string(backend.version()).c_str(), backend.abi_version().c_str(),
                  (unsigned long long)ctx.device(), props.name.c_str());
      if (cfg.tp_size > 1)
        std::printf("parallel:  tensor-parallel over %llu ranks (this report: rank 0; weights, KV cache and roofline per rank)\n",
                    (unsigned long long)cfg.tp_size);
      std::printf("model:     hidden %llu, %llu layers, %llu/%llu heads, head_dim %llu, ffn %llu, vocab %llu, %s%s%s, "
                  "%.1f MB of weights\n",
                  (unsigned long long)cfg.hidden, (unsigned long long)cfg.layers, (unsigned long long)cfg.q_heads,
                  (unsigned long long)cfg.kv_heads, (unsigned long long)cfg.head_dim, (unsigned long long)cfg.ffn,
                  (unsigned long long)cfg.vocab, dt, cfg.quant ? ", projections " : "",
                  cfg.quant ? (quant + (cfg.quant_act_q8 ? " (q8 activations)" : "")).c_str() : "",
                  model.weight_bytes() / 1e6);
      if (cfg.kv == ferrum::demo::KvLayout::paged)
        std::printf("kv cache:  paged %s, %llu blocks of %llu tokens per layer, block table in random order, %.2f MB\n",
                    kv_dtype_s.c_str(), (unsigned long long)model.kv_blocks(), (unsigned long long)cfg.kv_block_size,
                    model.kv_cache_bytes() / 1e6);
      else
        std::printf("kv cache:  contiguous %s, %llu positions per layer, %.2f MB\n", kv_dtype_s.c_str(),
                    (unsigned long long)cfg.max_positions, model.kv_cache_bytes() / 1e6);
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
