// ferrum-run — runs a real checkpoint on any plugin, through the public facade only.
//
//   ferrum-run --model PATH [--backend SPEC] [--dtype f32|f16|bf16] --prompt-ids 1,2,3
//              [--prompt-ids ..., repeatable: one request each] [--prompt TEXT ...] [--max-new-tokens N]
//              [--greedy | --temperature T --top-k K --top-p P --seed S]
//              [--kv auto|contiguous|paged] [--kv-dtype auto|int8|fp8] [--kv-block-size N] [--kv-blocks N]
//              [--graphs off|on|auto|emulate] [--varlen-decode] [--max-batch-tokens N] [--max-seqs N]
//              [--ignore-eos] [--json] [--dump-logits FILE] [--quant-act exact|q8] [--tp N [--tp-id-file PATH]]
//
// PATH is a Hugging Face model directory (config.json + model.safetensors, or shards listed by
// model.safetensors.index.json) of a Llama, Mistral, Qwen2, Qwen3 or Qwen3-MoE model, or a GGUF
// file (llama, qwen2, qwen3; F32/F16/BF16 and Q4_0/Q4_1/Q8_0/Q4_K/Q5_K/Q6_K tensors). Tokens are
// ids in and ids out, plus text through SentencePiece for a model directory with a tokenizer.model
// (--prompt); other models take ids only. With --kv paged (the default when the backend has the
// paged ops) all requests run together: continuous batching with chunked prefill through the
// varlen paged ops, blocks from a block allocator. --kv contiguous runs them one at a time.
// --quant-act q8 (GGUF files) loads the quantised weights with act_precision FERRUM_QUANT_ACT_Q8:
// gguf_matmul may round the activations to 8-bit codes per 32 columns (ABI 1.2, tolerance class A),
// as llama.cpp does.
// --tp N runs the model tensor-parallel over N ranks, one process per rank started by an MPI
// launcher (`mpirun -np N ferrum-run --tp N ...`): each rank loads its slice of a model directory or
// GGUF file (rows of q/k/v and gate/up, columns of o and down — of every expert too, for Qwen3-MoE) on device
// rank mod the device count, the context's communicator sums the partial products, and rank 0
// reports.
// docs/ferrum-run.md describes every flag. Exit 0 on success, 1 when the model cannot be loaded or run, 2 on a usage error.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <ferrum/common/checked.hpp>
#include <ferrum/ferrum.hpp>
#include <nlohmann/json.hpp>

#include "engine.hpp"
#include "ferrum_tool_cli.hpp"
#include "ferrum_tool_tp.hpp"
#include "hf_config.hpp"
#include "load_error.hpp"
#include "gguf.hpp"
#include "safetensors.hpp"
#include "sampler.hpp"
#include "tokenizer.hpp"
#include "weights.hpp"

namespace {

namespace ft = ferrum::tools;
namespace fr = ferrum::run;
using clock_type = std::chrono::steady_clock;

constexpr uint64_t kMaxTokens = 1u << 20;

std::vector<uint32_t> parse_ids(const CLI::App& app, size_t request, const std::string& text) {
  std::vector<uint32_t> ids;
  const std::string flag = "--prompt-ids (request " + std::to_string(request + 1) + ")";
  for (size_t p = 0; p <= text.size();) {
    size_t q = text.find(',', p);
    if (q == std::string::npos) q = text.size();
    std::string error;
    const auto id = ft::parse_integer<uint32_t>(std::string_view(text).substr(p, q - p), 0, UINT32_MAX - 1, error);
    if (!id) ft::usage_error(app, flag + ": token " + std::to_string(ids.size() + 1) + ": " + error);
    if (ids.size() == kMaxTokens)
      ft::usage_error(app, flag + ": expected at most " + std::to_string(kMaxTokens) + " token ids, given more");
    ids.push_back(*id);
    p = q + 1;
  }
  return ids;
}

struct Request {
  std::vector<uint32_t> prompt, out;
  uint64_t fed = 0;  // prompt tokens already run
  std::optional<uint32_t> slot;
  bool done = false;
  std::string finish = "length";
  std::vector<float> prompt_logits;
  double t_first = 0, t_done = 0;
  uint64_t total_len(uint64_t max_new) const { return prompt.size() + max_new; }
};

std::string json_floats(const std::vector<float>& v) {
  std::string s = "[";
  char buf[32];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.9g", i ? ", " : "", double(v[i]));
    s += buf;
  }
  return s + "]";
}

std::string json_ids(const std::vector<uint32_t>& v, const char* sep = ", ") {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + std::to_string(v[i]);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path, backend_spec, dtype_name, kv_layout = "auto", kv_dtype = "auto", dump_path, graphs = "auto",
              quant_act = "exact";
  std::vector<std::string> prompt_ids, prompt_texts;
  uint64_t max_new = 16, top_k = 0, seed = 0, block_size = 16, kv_blocks = 0, max_batch_tokens = 512, max_seqs = 64;
  uint64_t tp = 1;
  std::string tp_id_file;
  double temperature = 1.0, top_p = 1.0;
  bool greedy = false, json = false, ignore_eos = false, varlen_decode = false;

  CLI::App app{"ferrum-run: runs a Hugging Face checkpoint (config.json + safetensors; Llama, Mistral, Qwen2, "
               "Qwen3, Qwen3-MoE) or a GGUF file (llama, qwen2, qwen3; quantised or not) on any ferrum plugin. "
               "Token ids in, token ids out. Text (--prompt) only for a model directory with a SentencePiece "
               "tokenizer.model: for tokenizer.json and GGUF models ferrum-run has no tokenizer, so tokenize with "
               "the model's own tokenizer elsewhere and pass ids.",
               "ferrum-run"};
  app.add_option("--model", model_path, "a Hugging Face model directory (config.json + model.safetensors or "
                                        "model.safetensors.index.json and its shards), or a GGUF file")
      ->required()
      ->type_name("PATH");
  app.add_option("--backend,--plugin", backend_spec,
                 "a backend name (cpu, cuda, cuda:1), a path to a plugin .so, or auto; default: FERRUM_BACKEND, "
                 "then the config file, then auto")
      ->check(ft::non_empty("a backend name, a plugin path or auto"))
      ->type_name("SPEC");
  app.add_option("--dtype", dtype_name, "activation and weight dtype on the device (default: the backend's)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->type_name("f32|f16|bf16");
  auto* ids_opt = app.add_option("--prompt-ids,--ids", prompt_ids,
                                 "a prompt as comma-separated token ids, e.g. 1,2,3; repeat for several requests "
                                 "(run together with --kv paged)")
                      ->type_name("IDS")
                      ->take_all();
  auto* text_opt = app.add_option("--prompt", prompt_texts,
                                  "a prompt as text, repeatable (requests after the --prompt-ids ones): only for a "
                                  "model directory with a SentencePiece tokenizer.model; other models take ids only")
                       ->type_name("TEXT")
                       ->take_all();
  ft::add_integer(app, "--max-new-tokens", max_new, uint64_t{0}, kMaxTokens,
                  "tokens to generate per request (0: only the prompt's logits)");
  auto* greedy_opt = app.add_flag("--greedy", greedy, "greedy decoding (the default)");
  auto* temp_opt = ft::add_positive(app, "--temperature", temperature, 100.0, "sampling temperature");
  auto* topk_opt = ft::add_integer(app, "--top-k", top_k, uint64_t{0}, uint64_t{1} << 24,
                                   "sample among the K most likely tokens (0: all)");
  auto* topp_opt = ft::add_positive(app, "--top-p", top_p, 1.0, "sample from the smallest set of tokens whose "
                                                                 "probability reaches P");
  auto* seed_opt = ft::add_integer(app, "--seed", seed, uint64_t{0}, UINT64_MAX, "sampling seed");
  for (auto* o : {temp_opt, topk_opt, topp_opt, seed_opt}) greedy_opt->excludes(o);
  app.add_option("--kv", kv_layout,
                 "KV cache: paged (block pools shared by all requests, continuous batching), contiguous (one "
                 "request at a time), or auto (paged when the backend has the paged ops)")
      ->check(CLI::IsMember({"auto", "contiguous", "paged"}))
      ->capture_default_str();
  app.add_option("--kv-dtype", kv_dtype,
                 "KV element type: auto (the activation dtype), int8 or fp8 (codes + an f32 scale per token and KV "
                 "head, through the quantised-KV ops: paged only, one query per attention call)")
      ->check(CLI::IsMember({"auto", "int8", "fp8"}))
      ->capture_default_str();
  app.add_option("--graphs", graphs,
                 "decode steps through captured graphs (one per batch size; paged activation-dtype KV): on, off, or "
                 "auto (on when the backend has the graph family); emulate runs the captured form eagerly (a test of "
                 "that form on any backend)")
      ->check(CLI::IsMember({"auto", "on", "off", "emulate"}))
      ->capture_default_str();
  app.add_flag("--varlen-decode", varlen_decode,
               "attend decode steps with paged_varlen_attention too (default: paged_batched_decode_attention, "
               "the decode kernel, when the backend has it)");
  ft::add_integer(app, "--kv-block-size", block_size, uint64_t{1}, uint64_t{4096}, "tokens per KV block (paged)");
  ft::add_integer(app, "--kv-blocks", kv_blocks, uint64_t{0}, uint64_t{UINT32_MAX},
                  "blocks per layer pool (paged; 0: enough for every request at once)");
  ft::add_integer(app, "--max-batch-tokens", max_batch_tokens, uint64_t{1}, kMaxTokens,
                  "tokens per step: longer prompts are prefilled in chunks of at most this many");
  ft::add_integer(app, "--max-seqs", max_seqs, uint64_t{1}, uint64_t{4096}, "requests in one step (paged)");
  app.add_flag("--ignore-eos", ignore_eos, "generate --max-new-tokens tokens even past config.json's eos_token_id");
  app.add_option("--quant-act", quant_act,
                 "GGUF files: exact (activations as they are) or q8 (the quantised weights loaded with act_precision "
                 "Q8: gguf_matmul may round the activations to 8-bit codes per 32 columns, as llama.cpp does)")
      ->check(CLI::IsMember({"exact", "q8"}))
      ->capture_default_str();
  ft::add_integer(app, "--tp", tp, uint64_t{1}, uint64_t{1024},
                  "tensor-parallel ranks: one process per rank started by an MPI launcher (mpirun -np N ferrum-run --tp N "
                  "...); a GGUF file or a model directory with F32 / F16 / BF16 weights, dense or Qwen3-MoE; rank 0 reports");
  app.add_option("--tp-id-file", tp_id_file,
                 "with --tp: where rank 0 leaves the communicator id for the other ranks (default "
                 "/tmp/ferrum-run-<job id>.id; on several hosts give a shared path)")
      ->type_name("PATH");
  app.add_flag("--json", json, "one JSON object on stdout instead of the text report");
  app.add_option("--dump-logits", dump_path,
                 "write {\"logits\": [[...], ...]}: the f32 logits at the last prompt position of each request")
      ->type_name("FILE");
  ft::parse_or_exit(app, argc, argv);

  if (!ids_opt->count() && !text_opt->count())
    ft::usage_error(app, "--prompt-ids: expected at least one request (--prompt-ids or --prompt), given none");
  if (kv_dtype != "auto" && kv_layout == "contiguous")
    ft::usage_error(app, "--kv-dtype: expected auto with --kv contiguous (int8 and fp8 caches are paged), given " +
                             kv_dtype);
  const fr::KvDtype kv_dt = kv_dtype == "int8" ? fr::KvDtype::int8 : kv_dtype == "fp8" ? fr::KvDtype::fp8
                                                                                         : fr::KvDtype::activation;
  fr::SamplingParams sampling;
  sampling.greedy = !(temp_opt->count() || topk_opt->count() || topp_opt->count() || seed_opt->count());
  sampling.temperature = temperature;
  sampling.top_k = top_k;
  sampling.top_p = top_p;
  sampling.seed = seed;

  std::vector<Request> reqs;
  for (size_t i = 0; i < prompt_ids.size(); ++i) {
    Request r;
    r.prompt = parse_ids(app, i, prompt_ids[i]);
    reqs.push_back(std::move(r));
  }
  ferrum::Dtype dtype = ferrum::Dtype::invalid;
  if (dtype_name == "f32") dtype = ferrum::Dtype::f32;
  else if (dtype_name == "f16") dtype = ferrum::Dtype::f16;
  else if (dtype_name == "bf16") dtype = ferrum::Dtype::bf16;

  try {
    std::error_code ec;
    if (!std::filesystem::exists(model_path, ec)) throw fr::LoadError(model_path + ": no such file or directory");
    // A regular file is a GGUF file; a directory a Hugging Face checkpoint.
    const bool is_gguf = std::filesystem::is_regular_file(model_path, ec);
    std::unique_ptr<fr::GgufFile> gguf;
    std::unique_ptr<fr::Checkpoint> ckpt;
    std::unique_ptr<fr::TensorSource> source;
    fr::HfConfig cfg;
    if (is_gguf) {
      gguf = std::make_unique<fr::GgufFile>(model_path);
      cfg = fr::read_gguf_config(*gguf);
    } else {
      cfg = fr::read_hf_config(model_path);
    }
    // Text prompts: SentencePiece tokenizer.model of a model directory, nothing else.
    std::unique_ptr<fr::Tokenizer> tok = is_gguf ? nullptr : fr::open_tokenizer(model_path, cfg.bos_id);
    if (text_opt->count() && !tok)
      ft::usage_error(app, "--prompt: expected token ids (--prompt-ids) for " + model_path +
                               ": ferrum-run tokenizes only with a SentencePiece tokenizer.model in a model "
                               "directory, and this model has none");
    for (const std::string& text : prompt_texts) {
      Request r;
      r.prompt = tok->encode(text);
      if (r.prompt.empty()) ft::usage_error(app, "--prompt: expected text that encodes to at least one token, given ''");
      reqs.push_back(std::move(r));
    }
    for (size_t i = 0; i < reqs.size(); ++i)
      for (size_t t = 0; t < reqs[i].prompt.size(); ++t)
        if (reqs[i].prompt[t] >= cfg.vocab)
          ft::usage_error(app, "--prompt-ids (request " + std::to_string(i + 1) + "): token " + std::to_string(t + 1) +
                                   ": expected an id below vocab_size (" + std::to_string(cfg.vocab) + ") of " +
                                   cfg.path + ", given " + std::to_string(reqs[i].prompt[t]));
    if (quant_act != "exact" && !is_gguf)
      ft::usage_error(app, "--quant-act: expected exact for a model directory (it applies to GGUF files' quantised "
                           "tensors), given " + quant_act);
    // Tensor parallelism: a dense model directory whose heads and MLP split evenly.
    int tp_rank = 0;
    fr::HfConfig local = cfg;  // this rank's share of the model (all of it without --tp)
    if (tp > 1) {
      if (cfg.gptq)
        ft::usage_error(app, "--tp: expected a GGUF file or a Hugging Face model directory with F32 / F16 / BF16 "
                             "weights (dense or Qwen3-MoE), given a GPTQ checkpoint (its slices are not served yet)");
      std::vector<std::pair<const char*, uint64_t>> even = {
          {"num_attention_heads", cfg.q_heads}, {"num_key_value_heads", cfg.kv_heads}, {"intermediate_size", cfg.ffn}};
      if (cfg.arch == fr::Arch::qwen3_moe) even.emplace_back("moe_intermediate_size", cfg.moe_ffn);
      for (const auto& [key, n] : even)
        if (n % tp)
          ft::usage_error(app, "--tp: expected " + cfg.path + "'s " + key + " (" + std::to_string(n) +
                                   ") to be a multiple of it, given " + std::to_string(tp));
      tp_rank = ft::tp_rank_of(app, "ferrum-run", tp, tp_id_file);
      local.q_heads /= tp;
      local.kv_heads /= tp;
      local.ffn /= tp;
      local.moe_ffn /= tp;
    }
    if (is_gguf) {
      source = std::make_unique<fr::GgufSource>(*gguf, quant_act == "q8" ? FERRUM_QUANT_ACT_Q8 : FERRUM_QUANT_ACT_EXACT);
      source->set_tensor_parallel(static_cast<uint64_t>(tp_rank), tp);
    } else {
      ckpt = std::make_unique<fr::Checkpoint>(model_path);
      auto st = std::make_unique<fr::SafetensorsSource>(*ckpt, cfg);
      st->set_tensor_parallel(static_cast<uint64_t>(tp_rank), tp);
      source = std::move(st);
    }

    ferrum::Backend backend = ferrum::Backend::load(backend_spec);
    // With --tp, rank r runs on device r mod the device count (a GPU per rank on CUDA).
    std::optional<uint64_t> device;
    if (tp > 1) device = static_cast<uint64_t>(tp_rank) % std::max<uint64_t>(1, backend.device_count());
    ferrum::Context ctx = backend.create_context(device, dtype);
    if (tp > 1) {
      const std::vector<uint8_t> id =
          ft::share_id(tp_id_file, tp_rank, tp_rank == 0 ? ctx.comm_unique_id() : std::vector<uint8_t>(128));
      ctx.comm_init({.unique_id = id.data(), .world_size = static_cast<uint32_t>(tp), .rank = static_cast<uint32_t>(tp_rank)});
      if (tp_rank == 0) std::remove(tp_id_file.c_str());  // every rank has joined: the id is spent
    }
    std::vector<ferrum::Op> needed = fr::model_ops(cfg);
    if (gguf) {
      bool quantised = false;
      for (const auto& [name, t] : gguf->tensors()) quantised |= fr::ggml_block(t.type).first > 1;
      if (quantised)
        needed.insert(needed.end(), {ferrum::Op::load_quant, ferrum::Op::gguf_matmul, ferrum::Op::gguf_dequantize,
                                     ferrum::Op::transpose_token_to_head});
    }
    for (ferrum::Op op : needed)
      if (!backend.supports(op))
        throw fr::LoadError(cfg.path + ": " + cfg.architecture + (gguf ? " with quantised tensors" : "") +
                            " needs the op " + std::string(ferrum::op_name(op)) + ", which backend " +
                            std::string(backend.name()) + " does not have");
    fr::KvLayout kv = fr::KvLayout::paged;
    const auto missing = [&](fr::KvLayout k) -> std::optional<ferrum::Op> {
      for (ferrum::Op op : fr::kv_ops(k, k == fr::KvLayout::paged ? kv_dt : fr::KvDtype::activation))
        if (!backend.supports(op)) return op;
      return std::nullopt;
    };
    const std::string bname(backend.name());
    if (kv_layout == "auto" && kv_dt != fr::KvDtype::activation) {
      if (const auto op = missing(kv))
        ft::usage_error(app, "--kv-dtype: expected auto for backend " + bname + " (it has no " +
                                 std::string(ferrum::op_name(*op)) + "), given " + kv_dtype);
    } else if (kv_layout == "auto") {
      const auto paged_missing = missing(fr::KvLayout::paged);
      if (paged_missing) kv = fr::KvLayout::contiguous;
      if (paged_missing && missing(fr::KvLayout::contiguous))
        throw fr::LoadError("backend " + bname + " cannot hold a KV cache: it has neither " +
                            std::string(ferrum::op_name(*paged_missing)) + " (paged) nor " +
                            std::string(ferrum::op_name(*missing(fr::KvLayout::contiguous))) + " (contiguous)");
    } else {
      kv = kv_layout == "paged" ? fr::KvLayout::paged : fr::KvLayout::contiguous;
      if (const auto op = missing(kv))
        ft::usage_error(app, "--kv: expected a cache backend " + bname + " supports (it has no " +
                                 std::string(ferrum::op_name(*op)) + "), given " + kv_layout);
    }
    std::optional<ferrum::Op> graph_missing;
    for (ferrum::Op op : fr::graph_ops())
      if (!graph_missing && !backend.supports(op)) graph_missing = op;
    if (graphs == "on" && graph_missing)
      ft::usage_error(app, "--graphs: expected off or auto for backend " + bname + " (it has no " +
                               std::string(ferrum::op_name(*graph_missing)) + "), given on");
    if ((graphs == "on" || graphs == "emulate") && (kv != fr::KvLayout::paged || kv_dt != fr::KvDtype::activation))
      ft::usage_error(app, "--graphs: expected off or auto with " +
                               std::string(kv != fr::KvLayout::paged ? "--kv contiguous" : "--kv-dtype " + kv_dtype) +
                               " (graphs capture the paged activation-dtype cache), given " + graphs);
    fr::EngineOptions opt;
    opt.graphs = graphs == "on" || graphs == "emulate" || (graphs == "auto" && !graph_missing);
    opt.graphs_emulate = graphs == "emulate";
    opt.kv = kv;
    opt.kv_dtype = kv_dt;
    opt.decode_kernel = backend.supports(ferrum::Op::paged_batched_decode_attention) && !varlen_decode;
    opt.block_size = block_size;
    opt.max_step_tokens = max_batch_tokens;
    opt.max_seqs = kv == fr::KvLayout::paged ? max_seqs : 1;
    uint64_t all_blocks = 0;
    for (const Request& r : reqs) {
      opt.max_positions = std::max(opt.max_positions, r.total_len(max_new));
      all_blocks += ferrum::common::ceil_div(r.total_len(max_new), block_size);
    }
    opt.kv_blocks = kv_blocks ? kv_blocks : all_blocks;
    if (kv == fr::KvLayout::paged && opt.kv_blocks < ferrum::common::ceil_div(opt.max_positions, block_size))
      ft::usage_error(app, "--kv-blocks: expected at least " +
                               std::to_string(ferrum::common::ceil_div(opt.max_positions, block_size)) +
                               " (the longest request's prompt + new tokens), given " + std::to_string(kv_blocks));
    opt.tp_size = tp;
    fr::Engine engine(ctx, local, *source, opt);

    // The scheduler: each step takes one decode token of every running request that has
    // finished its prompt, then prompt chunks (running requests first, then newly admitted ones)
    // while the step's token budget lasts. A request is admitted when a sequence slot and the
    // blocks of its whole length (prompt + new tokens) are free, so it never waits mid-way.
    std::vector<fr::Sampler> samplers;
    for (size_t i = 0; i < reqs.size(); ++i) samplers.emplace_back(sampling, i);
    const auto t0 = clock_type::now();
    const auto since = [&] { return std::chrono::duration<double>(clock_type::now() - t0).count(); };
    uint64_t steps = 0;
    const auto reserve = [&](const Request& r) {
      return kv == fr::KvLayout::paged ? engine.blocks_for(r.total_len(max_new)) - engine.blocks_held(*r.slot) : 0;
    };
    for (size_t remaining = reqs.size(); remaining > 0;) {
      std::vector<fr::Engine::Chunk> chunks;
      std::vector<size_t> owner;
      uint64_t budget = max_batch_tokens, reserved = 0;
      for (const Request& r : reqs)
        if (r.slot && !r.done) reserved += reserve(r);
      for (size_t i = 0; i < reqs.size() && budget > 0 && chunks.size() < opt.max_seqs; ++i) {
        Request& r = reqs[i];
        if (r.done || !r.slot || r.fed < r.prompt.size()) continue;
        chunks.push_back({*r.slot, std::span<const uint32_t>(&r.out.back(), 1)});
        owner.push_back(i);
        budget -= 1;
      }
      for (size_t i = 0; i < reqs.size() && budget > 0 && chunks.size() < opt.max_seqs; ++i) {
        Request& r = reqs[i];
        if (r.done || r.fed >= r.prompt.size()) continue;
        if (!r.slot) {
          const uint64_t need = kv == fr::KvLayout::paged ? engine.blocks_for(r.total_len(max_new)) : 0;
          if (need > engine.free_blocks() - std::min(reserved, engine.free_blocks())) continue;
          r.slot = engine.open_sequence();
          if (!r.slot) continue;
          reserved += need;
        }
        const uint64_t n = std::min<uint64_t>(budget, r.prompt.size() - r.fed);
        chunks.push_back({*r.slot, std::span<const uint32_t>(r.prompt).subspan(r.fed, n)});
        owner.push_back(i);
        budget -= n;
      }
      if (chunks.empty()) throw std::runtime_error("ferrum-run: the scheduler found no work (KV pool too small?)");
      // Logits come back to the host only when sampling, or for --dump-logits at a prompt's end;
      // greedy steps read just the device argmax.
      bool want_logits = !sampling.greedy;
      for (size_t c = 0; c < chunks.size(); ++c) {
        const Request& r = reqs[owner[c]];
        want_logits |= !dump_path.empty() && r.fed < r.prompt.size() && r.fed + chunks[c].tokens.size() == r.prompt.size();
      }
      const fr::Engine::StepResult result = engine.step(chunks, want_logits);
      ++steps;
      for (size_t c = 0; c < chunks.size(); ++c) {
        Request& r = reqs[owner[c]];
        const std::span<const float> row =
            want_logits ? std::span<const float>(result.logits.data() + c * cfg.vocab, cfg.vocab) : std::span<const float>();
        const bool prefill = r.fed < r.prompt.size();
        if (prefill) {
          r.fed += chunks[c].tokens.size();
          if (r.fed < r.prompt.size()) continue;
          if (!dump_path.empty()) r.prompt_logits.assign(row.begin(), row.end());
          r.t_first = since();
        }
        if (r.out.size() < max_new) {
          const uint32_t next = sampling.greedy ? result.argmax[c] : samplers[owner[c]].next(row);
          r.out.push_back(next);
          if (!ignore_eos && std::find(cfg.eos_ids.begin(), cfg.eos_ids.end(), next) != cfg.eos_ids.end()) {
            r.finish = "eos";
            r.done = true;
          }
        }
        if (r.out.size() >= max_new) r.done = true;
        if (r.done) {
          r.t_done = since();
          engine.close_sequence(*r.slot);
          --remaining;
        }
      }
    }
    ctx.sync();
    const double total_s = since();
    if (tp_rank != 0) return 0;  // rank 0 reports

    if (!dump_path.empty()) {
      std::FILE* f = std::fopen(dump_path.c_str(), "w");
      if (!f) throw std::runtime_error(dump_path + ": cannot write the logits");
      std::fprintf(f, "{\"logits\": [");
      for (size_t i = 0; i < reqs.size(); ++i)
        std::fprintf(f, "%s%s", i ? ",\n  " : "\n  ", json_floats(reqs[i].prompt_logits).c_str());
      std::fprintf(f, "\n]}\n");
      if (std::fclose(f) != 0) throw std::runtime_error(dump_path + ": cannot write the logits");
    }
    const ferrum::DeviceProps props = backend.device_props(ctx.device());
    const std::string dt(ferrum::to_string(ctx.activation_dtype()));
    const char* kv_name = kv == fr::KvLayout::paged ? "paged" : "contiguous";
    uint64_t generated = 0;
    for (const Request& r : reqs) generated += r.out.size();
    if (json) {
      const auto q = [](const std::string& v) { return nlohmann::json(v).dump(); };  // a JSON string
      std::printf("{\"backend\": %s, \"version\": %s, \"device\": %s, \"model\": %s, "
                  "\"architecture\": %s, \"dtype\": \"%s\", \"kv\": \"%s\", \"kv_dtype\": \"%s\", \"kv_blocks\": %llu, "
                  "\"kv_block_size\": %llu, \"graphs\": %s, \"quant_act\": \"%s\", \"weight_bytes\": %llu, \"steps\": %llu, "
                  "\"total_s\": %.6f, "
                  "\"generated_tokens_per_s\": %.3f, \"requests\": [",
                  q(std::string(backend.name())).c_str(), q(std::string(backend.version())).c_str(), q(props.name).c_str(),
                  q(model_path).c_str(), q(cfg.architecture).c_str(), dt.c_str(), kv_name,
                  kv_dt == fr::KvDtype::activation ? dt.c_str() : kv_dtype.c_str(),
                  (unsigned long long)(kv == fr::KvLayout::paged ? opt.kv_blocks : 0ull), (unsigned long long)block_size,
                  engine.options().graphs ? "true" : "false", quant_act.c_str(), (unsigned long long)engine.weight_bytes(),
                  (unsigned long long)steps, total_s,
                  total_s > 0 ? double(generated) / total_s : 0.0);
      for (size_t i = 0; i < reqs.size(); ++i) {
        const Request& r = reqs[i];
        const double dec_s = r.t_done - r.t_first;
        const std::string text = tok ? ", \"text\": " + nlohmann::json(tok->decode(r.out)).dump() : "";
        std::printf("%s{\"prompt_tokens\": %zu, \"prompt_ids\": [%s], \"generated\": [%s]%s, \"finish\": \"%s\", "
                    "\"ttft_s\": %.6f, \"decode_s\": %.6f, \"decode_tokens_per_s\": %.3f}",
                    i ? ", " : "", r.prompt.size(), json_ids(r.prompt).c_str(), json_ids(r.out).c_str(), text.c_str(),
                    r.finish.c_str(), r.t_first, dec_s,
                    r.out.size() > 1 && dec_s > 0 ? double(r.out.size() - 1) / dec_s : 0.0);
      }
      std::printf("]}\n");
    } else {
      std::printf("backend:   %s %s, device %llu: %s\n", std::string(backend.name()).c_str(),
                  std::string(backend.version()).c_str(), (unsigned long long)ctx.device(), props.name.c_str());
      std::printf("model:     %s (%s): hidden %llu, %llu layers, %llu/%llu heads, head_dim %llu, ffn %llu, vocab %llu, "
                  "%s%s, %.1f MB of weights\n",
                  model_path.c_str(), cfg.architecture.c_str(), (unsigned long long)cfg.hidden,
                  (unsigned long long)cfg.layers, (unsigned long long)cfg.q_heads, (unsigned long long)cfg.kv_heads,
                  (unsigned long long)cfg.head_dim, (unsigned long long)cfg.ffn, (unsigned long long)cfg.vocab, dt.c_str(),
                  quant_act == "q8" ? ", 8-bit activations for the quantised weights" : "",
                  double(engine.weight_bytes()) / 1e6);
      if (kv == fr::KvLayout::paged)
        std::printf("kv cache:  paged %s, %llu blocks of %llu tokens per layer, %.2f MB\n",
                    kv_dt == fr::KvDtype::activation ? dt.c_str() : kv_dtype.c_str(), (unsigned long long)opt.kv_blocks,
                    (unsigned long long)block_size, double(engine.kv_cache_bytes()) / 1e6);
      else
        std::printf("kv cache:  contiguous, %llu positions per layer, %.2f MB\n", (unsigned long long)opt.max_positions,
                    double(engine.kv_cache_bytes()) / 1e6);
      std::printf("run:       %zu requests in %llu steps, %.3f s, %.1f generated tokens/s\n", reqs.size(),
                  (unsigned long long)steps, total_s, total_s > 0 ? double(generated) / total_s : 0.0);
      for (size_t i = 0; i < reqs.size(); ++i) {
        const Request& r = reqs[i];
        std::printf("request %zu: %zu prompt tokens, first token after %.3f s, finish %s, generated: %s\n", i + 1,
                    r.prompt.size(), r.t_first, r.finish.c_str(), json_ids(r.out, ",").c_str());
        if (tok) std::printf("  text: %s\n", nlohmann::json(tok->decode(r.out)).dump().c_str());
      }
    }
  } catch (const fr::LoadError& e) {
    std::fprintf(stderr, "ferrum-run: %s\n", e.what());
    return 1;
  } catch (const ferrum::Error& e) {
    std::fprintf(stderr, "ferrum-run: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferrum-run: %s\n", e.what());
    return 1;
  }
  return 0;
}
