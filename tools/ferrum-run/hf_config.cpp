#include "hf_config.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>

#include <nlohmann/json.hpp>

#include "load_error.hpp"

namespace ferrum::run {
namespace {

using json = nlohmann::json;

// Upper bounds that keep every product the model forms far below 2^64.
constexpr uint64_t kMaxDim = 1ull << 20, kMaxLayers = 4096, kMaxHeads = 4096, kMaxVocab = 1ull << 24;

struct Reader {
  const std::string& path;
  const json& j;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw LoadError(path + ": " + key + ": " + what);
  }
  uint64_t u64(const json& obj, const std::string& key, uint64_t lo, uint64_t hi) const {
    if (!obj.contains(key) || obj[key].is_null()) fail(key, "missing");
    const json& v = obj[key];
    if (!v.is_number_integer() || (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0))
      fail(key, "expected a non-negative integer, given " + v.dump());
    const uint64_t x = v.get<uint64_t>();
    if (x < lo || x > hi)
      fail(key, "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", given " + v.dump());
    return x;
  }
  uint64_t u64_or(const json& obj, const std::string& key, uint64_t def, uint64_t lo, uint64_t hi) const {
    if (!obj.contains(key) || obj[key].is_null()) return def;
    return u64(obj, key, lo, hi);
  }
  double number(const json& obj, const std::string& key, double def) const {
    if (!obj.contains(key) || obj[key].is_null()) return def;
    if (!obj[key].is_number()) fail(key, "expected a number, given " + obj[key].dump());
    const double x = obj[key].get<double>();
    if (!std::isfinite(x)) fail(key, "expected a finite number, given " + obj[key].dump());
    return x;
  }
  bool boolean(const json& obj, const std::string& key, bool def) const {
    if (!obj.contains(key) || obj[key].is_null()) return def;
    if (!obj[key].is_boolean()) fail(key, "expected true or false, given " + obj[key].dump());
    return obj[key].get<bool>();
  }
};

// transformers' default RoPE frequencies: 1 / theta^(2i / dim).
std::vector<double> default_inv_freq(double theta, uint64_t dim) {
  std::vector<double> f(dim / 2);
  for (uint64_t i = 0; i < dim / 2; ++i) f[i] = 1.0 / std::pow(theta, double(2 * i) / double(dim));
  return f;
}

// The scaled frequencies of transformers' rope_init functions ("linear", "llama3", "yarn").
void apply_rope_scaling(const Reader& r, const json& s, const std::string& key, HfConfig& c) {
  const double pi = std::numbers::pi;
  std::string type = "default";
  if (s.contains("rope_type") && s["rope_type"].is_string()) type = s["rope_type"].get<std::string>();
  else if (s.contains("type") && s["type"].is_string()) type = s["type"].get<std::string>();
  c.rope_type = type;
  std::vector<double>& f = c.inv_freq;
  if (type == "default") return;
  // The pretraining length: the top-level original_max_position_embeddings wins (as transformers'
  // standardize_rope_params has it), then the scaling's own, then max_position_embeddings.
  const uint64_t orig_ctx = r.u64_or(r.j, "original_max_position_embeddings",
                                     r.u64_or(s, "original_max_position_embeddings", c.max_position_embeddings, 1,
                                              kMaxDim * 1024),
                                     1, kMaxDim * 1024);
  double factor = r.number(s, "factor", 0.0);
  if (type == "yarn" && (!s.contains("factor") || s["factor"].is_null()))
    factor = double(c.max_position_embeddings) / double(orig_ctx);
  if (!(factor > 0)) r.fail(key + ".factor", "expected a positive number for rope_type " + type);
  if (type == "linear") {
    for (double& x : f) x /= factor;
  } else if (type == "llama3") {
    const double low = r.number(s, "low_freq_factor", 1.0), high = r.number(s, "high_freq_factor", 4.0);
    const double old_ctx = double(orig_ctx);
    if (!(high > low)) r.fail(key, "expected high_freq_factor > low_freq_factor");
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    for (double& x : f) {
      const double wavelen = 2 * pi / x;
      const double scaled = wavelen > low_wavelen ? x / factor : x;
      const double smooth = (old_ctx / wavelen - low) / (high - low);
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      x = medium ? (1 - smooth) * scaled / factor + smooth * scaled : scaled;
    }
  } else if (type == "yarn") {
    const double dim = double(c.head_dim), base = c.rope_theta;
    const double orig = double(orig_ctx);
    auto get_mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    double attention = r.number(s, "attention_factor", 0.0);
    if (attention <= 0) {
      const double mscale = r.number(s, "mscale", 0.0), mscale_all = r.number(s, "mscale_all_dim", 0.0);
      attention = mscale != 0 && mscale_all != 0 ? get_mscale(factor, mscale) / get_mscale(factor, mscale_all)
                                                 : get_mscale(factor, 1.0);
    }
    const double beta_fast = r.number(s, "beta_fast", 32.0), beta_slow = r.number(s, "beta_slow", 1.0);
    const bool truncate = r.boolean(s, "truncate", true);
    auto correction_dim = [&](double rot) { return dim * std::log(orig / (rot * 2 * pi)) / (2 * std::log(base)); };
    double lo = correction_dim(beta_fast), hi = correction_dim(beta_slow);
    if (truncate) {
      lo = std::floor(lo);
      hi = std::ceil(hi);
    }
    lo = std::max(lo, 0.0);
    hi = std::min(hi, dim - 1);
    if (lo == hi) hi += 0.001;
    for (size_t i = 0; i < f.size(); ++i) {
      const double extrapolation = f[i], interpolation = f[i] / factor;
      const double ramp = std::clamp((double(i) - lo) / (hi - lo), 0.0, 1.0);
      const double extra_factor = 1 - ramp;
      f[i] = interpolation * (1 - extra_factor) + extrapolation * extra_factor;
    }
    c.rope_attention_factor = attention;
  } else {
    r.fail(key + ".rope_type", "unsupported RoPE scaling '" + type +
                                   "' (ferrum-run supports default, linear, llama3 and yarn)");
  }
}

}  // namespace

HfConfig read_hf_config(const std::string& dir) {
  namespace fs = std::filesystem;
  HfConfig c;
  c.path = (fs::path(dir) / "config.json").string();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw LoadError(dir + ": not a directory (expected a Hugging Face model directory)");
  std::ifstream in(c.path);
  if (!in) throw LoadError(c.path + ": cannot open (a Hugging Face model directory has a config.json)");
  const json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw LoadError(c.path + ": not a JSON object");
  const Reader r{c.path, j};

  std::string model_type = j.contains("model_type") && j["model_type"].is_string() ? j["model_type"].get<std::string>() : "";
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    c.architecture = j["architectures"][0].get<std::string>();
  const std::string& a = c.architecture;
  if (a == "LlamaForCausalLM" || a == "MistralForCausalLM" || (a.empty() && (model_type == "llama" || model_type == "mistral"))) {
    c.arch = Arch::llama;
  } else if (a == "Qwen2ForCausalLM" || (a.empty() && model_type == "qwen2")) {
    c.arch = Arch::qwen2;
  } else if (a == "Qwen3ForCausalLM" || (a.empty() && model_type == "qwen3")) {
    c.arch = Arch::qwen3;
  } else if (a == "Qwen3MoeForCausalLM" || (a.empty() && model_type == "qwen3_moe")) {
    c.arch = Arch::qwen3_moe;
  } else {
    throw LoadError(c.path + ": unsupported architecture '" + (a.empty() ? model_type : a) +
                    "' (ferrum-run runs LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM and "
                    "Qwen3MoeForCausalLM)");
  }
  if (c.architecture.empty()) c.architecture = model_type;

  c.hidden = r.u64(j, "hidden_size", 1, kMaxDim);
  c.layers = r.u64(j, "num_hidden_layers", 1, kMaxLayers);
  c.q_heads = r.u64(j, "num_attention_heads", 1, kMaxHeads);
  c.kv_heads = r.u64_or(j, "num_key_value_heads", c.q_heads, 1, kMaxHeads);
  if (c.q_heads % c.kv_heads)
    r.fail("num_key_value_heads", "expected a divisor of num_attention_heads (" + std::to_string(c.q_heads) +
                                      "), given " + std::to_string(c.kv_heads));
  c.head_dim = r.u64_or(j, "head_dim", c.hidden / c.q_heads, 2, 4096);
  if (c.head_dim % 2) r.fail("head_dim", "expected an even number (RoPE rotates pairs), given " + std::to_string(c.head_dim));
  if (!j.contains("head_dim") && c.hidden % c.q_heads)
    r.fail("hidden_size", "expected a multiple of num_attention_heads when head_dim is not given");
  c.ffn = r.u64(j, "intermediate_size", 1, kMaxDim);
  c.vocab = r.u64(j, "vocab_size", 1, kMaxVocab);
  c.max_position_embeddings = r.u64_or(j, "max_position_embeddings", 4096, 1, kMaxDim * 1024);
  c.rms_eps = r.number(j, "rms_norm_eps", 1e-6);
  if (!(c.rms_eps >= 0)) r.fail("rms_norm_eps", "expected a non-negative number");
  c.tie_embeddings = r.boolean(j, "tie_word_embeddings", false);
  c.attention_bias = c.arch == Arch::qwen2 || r.boolean(j, "attention_bias", false);
  c.qk_norm = c.arch == Arch::qwen3 || c.arch == Arch::qwen3_moe;
  c.moe_layer.assign(c.layers, false);
  if (c.arch == Arch::qwen3_moe) {
    // transformers 5.x writes num_local_experts, 4.x num_experts.
    const char* experts_key = j.contains("num_local_experts") ? "num_local_experts" : "num_experts";
    c.num_experts = r.u64(j, experts_key, 1, 4096);
    c.experts_per_tok = r.u64(j, "num_experts_per_tok", 1, c.num_experts);
    c.moe_ffn = r.u64(j, "moe_intermediate_size", 1, kMaxDim);
    c.norm_topk_prob = r.boolean(j, "norm_topk_prob", false);
    const uint64_t step = r.u64_or(j, "decoder_sparse_step", 1, 1, kMaxLayers);
    std::vector<uint64_t> dense_only;
    if (j.contains("mlp_only_layers") && !j["mlp_only_layers"].is_null()) {
      if (!j["mlp_only_layers"].is_array()) r.fail("mlp_only_layers", "expected a list of layer indices");
      for (const json& v : j["mlp_only_layers"]) {
        if (!v.is_number_unsigned() || v.get<uint64_t>() >= c.layers)
          r.fail("mlp_only_layers", "expected layer indices below num_hidden_layers, given " + v.dump());
        dense_only.push_back(v.get<uint64_t>());
      }
    }
    for (uint64_t l = 0; l < c.layers; ++l)
      c.moe_layer[l] = std::find(dense_only.begin(), dense_only.end(), l) == dense_only.end() && (l + 1) % step == 0;
    if (j.contains("shared_expert_intermediate_size") && !j["shared_expert_intermediate_size"].is_null() &&
        j["shared_expert_intermediate_size"] != 0)
      r.fail("shared_expert_intermediate_size", "unsupported: shared experts");
  }
  if (r.boolean(j, "mlp_bias", false)) r.fail("mlp_bias", "unsupported: MLP biases (expected false)");
  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    r.fail("hidden_act", "unsupported activation " + j["hidden_act"].dump() + " (expected \"silu\")");
  if (c.arch == Arch::llama && model_type == "mistral") c.sliding_window = r.u64_or(j, "sliding_window", 0, 0, kMaxDim * 1024);
  if (c.arch != Arch::llama && r.boolean(j, "use_sliding_window", false))
    r.fail("use_sliding_window", "unsupported: per-layer sliding windows (expected false)");
  for (const char* key : {"torch_dtype", "dtype"})
    if (j.contains(key) && j[key].is_string()) c.dtype = j[key].get<std::string>();

  if (j.contains("eos_token_id")) {
    const json& e = j["eos_token_id"];
    for (const json& v : e.is_array() ? e : json::array({e}))
      if (v.is_number_unsigned() && v.get<uint64_t>() < c.vocab) c.eos_ids.push_back(v.get<uint32_t>());
  }
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_unsigned() && j["bos_token_id"].get<uint64_t>() < c.vocab)
    c.bos_id = j["bos_token_id"].get<int64_t>();
  if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
    const json& q = j["quantization_config"];
    const std::string method = q.is_object() && q.contains("quant_method") && q["quant_method"].is_string()
                                   ? q["quant_method"].get<std::string>() : "";
    if (method != "gptq")
      r.fail("quantization_config.quant_method", "unsupported quantisation '" + method + "' (ferrum-run runs gptq)");
    const std::string format = q.contains("checkpoint_format") && q["checkpoint_format"].is_string()
                                   ? q["checkpoint_format"].get<std::string>() : "gptq";
    if (format != "gptq")
      r.fail("quantization_config.checkpoint_format", "unsupported '" + format + "' (ferrum-run reads the gptq (v1) format)");
    if (r.u64(q, "bits", 1, 64) != 4) r.fail("quantization_config.bits", "unsupported: only 4-bit GPTQ is run");
    const json& gs = q.contains("group_size") ? q["group_size"] : json();
    if (gs.is_number_integer() && gs.get<int64_t>() == -1) c.gptq_group_size = 0;  // one group over all of k
    else c.gptq_group_size = r.u64(q, "group_size", 1, kMaxDim);
    c.gptq_sym = r.boolean(q, "sym", true);
    if (r.boolean(q, "lm_head", false)) r.fail("quantization_config.lm_head", "unsupported: a quantised lm_head");
    c.gptq = true;
  }

  // RoPE: transformers 5.x keeps theta and the scaling under rope_parameters, 4.x writes
  // rope_theta at the top level and the scaling as rope_scaling.
  const json* rope_obj = nullptr;
  std::string rope_key;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    rope_obj = &j["rope_parameters"];
    rope_key = "rope_parameters";
  } else if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    rope_obj = &j["rope_scaling"];
    rope_key = "rope_scaling";
  }
  c.rope_theta = r.number(j, "rope_theta", 10000.0);
  if (rope_obj && rope_obj->contains("rope_theta")) c.rope_theta = r.number(*rope_obj, "rope_theta", c.rope_theta);
  if (!(c.rope_theta > 1)) r.fail("rope_theta", "expected a number greater than 1");
  const double partial = rope_obj ? r.number(*rope_obj, "partial_rotary_factor", r.number(j, "partial_rotary_factor", 1.0))
                                  : r.number(j, "partial_rotary_factor", 1.0);
  if (partial != 1.0) r.fail("partial_rotary_factor", "unsupported: partial rotary embeddings (expected 1)");
  c.inv_freq = default_inv_freq(c.rope_theta, c.head_dim);
  if (rope_obj) apply_rope_scaling(r, *rope_obj, rope_key, c);
  return c;
}

}  // namespace ferrum::run
