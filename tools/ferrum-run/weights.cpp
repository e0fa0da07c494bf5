#include "weights.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <regex>

#include <ferrum/common/checked.hpp>

#include "load_error.hpp"

namespace ferrum::run {
namespace {

std::string shape_string(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Dtype safetensors_weight_dtype(const TensorView& t) {
  if (t.dtype == "F32") return Dtype::f32;
  if (t.dtype == "F16") return Dtype::f16;
  if (t.dtype == "BF16") return Dtype::bf16;
  throw LoadError(t.file->path() + ": tensor '" + t.name + "': unsupported dtype " + t.dtype +
                  " (expected F32, F16 or BF16)");
}

// A dense GGUF type as a ferrum dtype; Dtype::invalid for a quantised one.
Dtype gguf_dense_dtype(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::f32: return Dtype::f32;
    case GgmlType::f16: return Dtype::f16;
    case GgmlType::bf16: return Dtype::bf16;
    default: return Dtype::invalid;
  }
}

// A Linear with no parts yet, of the stacked shapes' size: [Σ rows, columns].
Linear empty_linear(const std::vector<std::vector<uint64_t>>& shapes, uint64_t head_width) {
  common::Size n(0);
  for (const auto& s : shapes) n = n + common::Size(s.empty() ? 1 : s[0]);
  Linear w;
  w.head_width = head_width;
  w.n = n.value;
  w.k = shapes[0].size() > 1 ? shapes[0][1] : 1;
  return w;
}

}  // namespace

bool Linear::quantised() const {
  for (const Part& p : parts)
    if (p.quant) return true;
  return false;
}

// ---- safetensors -------------------------------------------------------------------------------

namespace {

// How tensor parallelism splits a tensor (Megatron): by output rows, by input columns, or not.
enum class TpSplit { none, rows, cols };
TpSplit tp_split_of(const std::string& name) {
  auto ends = [&](const char* suffix) {
    const size_t n = std::strlen(suffix);
    return name.size() >= n && name.compare(name.size() - n, n, suffix) == 0;
  };
  // The MLP's projections, dense (mlp.gate_proj) or one expert's (mlp.experts.E.gate_proj).
  for (const char* s : {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                        "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias", ".gate_proj.weight",
                        ".up_proj.weight"})
    if (ends(s)) return TpSplit::rows;
  if (ends("self_attn.o_proj.weight") || ends(".down_proj.weight")) return TpSplit::cols;
  return TpSplit::none;
}

}  // namespace

Buffer SafetensorsSource::dense(Context& ctx, const std::vector<std::string>& names,
                                const std::vector<std::vector<uint64_t>>& shapes) {
  std::vector<uint8_t> joined;
  std::span<const uint8_t> raw;
  Dtype dt = Dtype::invalid;
  const TensorView* first = nullptr;
  bool sliced = false;
  for (size_t i = 0; i < names.size(); ++i) {
    const TensorView& t = ckpt_.get(names[i]);
    if (tp_size_ > 1 && (t.name.ends_with("mlp.experts.gate_up_proj") || t.name.ends_with("mlp.experts.down_proj")))
      throw LoadError(t.file->path() + ": tensor '" + t.name + "': --tp " + std::to_string(tp_size_) +
                      " cannot split stacked expert tensors yet (per-expert gate_proj / up_proj / down_proj tensors split)");
    // The file's shape: this rank's shape times the ranks along the split dimension.
    const TpSplit split = tp_size_ > 1 ? tp_split_of(names[i]) : TpSplit::none;
    std::vector<uint64_t> full = shapes[i];
    const size_t dim = split == TpSplit::cols ? 1 : 0;
    if (split != TpSplit::none && dim < full.size()) full[dim] = (common::Size(full[dim]) * common::Size(tp_size_)).value;
    if (t.shape != full)
      throw LoadError(t.file->path() + ": tensor '" + t.name + "': shape " + shape_string(t.shape) +
                      " disagrees with " + cfg_.path + ", which implies " + shape_string(full));
    const Dtype d = safetensors_weight_dtype(t);
    if (first && d != dt)
      throw LoadError(t.file->path() + ": tensor '" + t.name + "': dtype " + t.dtype + " differs from '" + first->name +
                      "' (" + first->dtype + "), which it is fused with");
    if (!first) first = &t;
    dt = d;
    if (split == TpSplit::none) {
      if (names.size() == 1) raw = t.bytes;
      else joined.insert(joined.end(), t.bytes.begin(), t.bytes.end());
      continue;
    }
    // This rank's slice (sizes fit: t.bytes holds the whole tensor, whose shape was just checked).
    sliced = true;
    const uint64_t es = safetensors_dtype_size(t.dtype);
    const uint64_t rows = full[0], cols = full.size() > 1 ? full[1] : 1;
    if (split == TpSplit::rows) {
      const uint64_t local = rows / tp_size_, row_bytes = cols * es;  // arith-ok: within t.bytes
      const auto b = t.bytes.begin() + static_cast<std::ptrdiff_t>(tp_rank_ * local * row_bytes);
      joined.insert(joined.end(), b, b + static_cast<std::ptrdiff_t>(local * row_bytes));
    } else {
      const uint64_t local = cols / tp_size_;  // arith-ok: within t.bytes
      for (uint64_t r = 0; r < rows; ++r) {
        const auto b = t.bytes.begin() + static_cast<std::ptrdiff_t>((r * cols + tp_rank_ * local) * es);
        joined.insert(joined.end(), b, b + static_cast<std::ptrdiff_t>(local * es));
      }
    }
  }
  if (names.size() > 1 || sliced) raw = joined;
  return ctx.from_weight_bytes({.raw = raw, .src_dtype = dt, .dst_dtype = Dtype::invalid});
}

namespace {

// "x.q_proj.weight" -> "x.q_proj"
std::string base_name(const std::string& name) {
  const std::string suffix = ".weight";
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0
             ? name.substr(0, name.size() - suffix.size())
             : name;
}

}  // namespace

bool SafetensorsSource::quantised(const std::string& name) const {
  return cfg_.gptq && ckpt_.find(base_name(name) + ".qweight") != nullptr;
}

bool SafetensorsSource::nonzero(const std::string& name) const {
  const TensorView* t = ckpt_.find(name);
  if (!t) return false;
  for (uint8_t b : t->bytes)
    if (b) return true;
  return false;
}

// GPTQ int4 layers: each part's qweight [K/8, N] (I32), scales [G, N], qzeros [G, N/8] (I32) and
// g_idx [K] (I32, optional) checked against the shape; parts with the same g_idx (q|k|v, gate|up
// quantised on the same inputs) are concatenated column-wise into one load_gptq weight, others
// become separate parts.
Linear SafetensorsSource::gptq_linear(Context& ctx, const std::vector<std::string>& names,
                                      const std::vector<std::vector<uint64_t>>& shapes, uint64_t head_width) {
  Linear w = empty_linear(shapes, head_width);
  struct Src {
    const TensorView *qweight, *qzeros, *scales, *g_idx;
    uint64_t n;
  };
  const uint64_t K = w.k, g = cfg_.gptq_group_size;
  const uint64_t G = g ? K / g : 1;
  if (K % 8 || (g && K % g))
    throw LoadError(cfg_.path + ": GPTQ: input features " + std::to_string(K) + " of '" + names[0] +
                    "' are not a multiple of 8 and of group_size " + std::to_string(g));
  auto check = [&](const std::string& name, const std::vector<uint64_t>& shape, const char* dtype) -> const TensorView& {
    const TensorView& t = ckpt_.get(name);
    if (t.shape != shape)
      throw LoadError(t.file->path() + ": tensor '" + name + "': shape " + shape_string(t.shape) + " disagrees with " +
                      cfg_.path + " (GPTQ, group_size " + std::to_string(g) + "), which implies " + shape_string(shape));
    if (dtype && t.dtype != dtype)
      throw LoadError(t.file->path() + ": tensor '" + name + "': dtype " + t.dtype + ", expected " + dtype);
    return t;
  };
  std::vector<Src> srcs;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string b = base_name(names[i]);
    const uint64_t N = shapes[i][0];
    if (N % 8)
      throw LoadError(cfg_.path + ": GPTQ: output features " + std::to_string(N) + " of '" + b + "' are not a multiple of 8");
    Src s{&check(b + ".qweight", {K / 8, N}, "I32"), nullptr, &check(b + ".scales", {G, N}, nullptr), nullptr, N};
    if (s.scales->dtype != "F16" && s.scales->dtype != "BF16" && s.scales->dtype != "F32")
      throw LoadError(s.scales->file->path() + ": tensor '" + b + ".scales': dtype " + s.scales->dtype +
                      ", expected F16, BF16 or F32");
    if (ckpt_.find(b + ".qzeros")) s.qzeros = &check(b + ".qzeros", {G, N / 8}, "I32");
    else if (!cfg_.gptq_sym) throw LoadError(ckpt_.dir() + ": the checkpoint has no tensor '" + b + ".qzeros'");
    if (ckpt_.find(b + ".g_idx")) s.g_idx = &check(b + ".g_idx", {K}, "I32");
    srcs.push_back(s);
  }
  auto same_g_idx = [](const Src& a, const Src& b) {
    if (!a.g_idx || !b.g_idx) return !a.g_idx && !b.g_idx;
    return std::equal(a.g_idx->bytes.begin(), a.g_idx->bytes.end(), b.g_idx->bytes.begin(), b.g_idx->bytes.end());
  };
  for (size_t i = 0; i < srcs.size();) {
    size_t j = i + 1;
    while (j < srcs.size() && same_g_idx(srcs[i], srcs[j]) && srcs[j].scales->dtype == srcs[i].scales->dtype &&
           !srcs[j].qzeros == !srcs[i].qzeros)
      ++j;
    // Column-wise concatenation of [rows, cols] row-major tensors of `esz`-byte elements.
    auto join = [&](auto member, uint64_t rows, uint64_t esz, uint64_t div) {
      std::vector<uint8_t> out;
      for (uint64_t r = 0; r < rows; ++r)
        for (size_t k = i; k < j; ++k) {
          const TensorView* t = srcs[k].*member;
          const uint64_t row_bytes = srcs[k].n / div * esz;
          const auto* p = t->bytes.data() + r * row_bytes;  // arith-ok: r < rows, row_bytes · rows = the checked size
          out.insert(out.end(), p, p + row_bytes);
        }
      return out;
    };
    uint64_t N = 0;
    for (size_t k = i; k < j; ++k) N += srcs[k].n;  // arith-ok: at most 3 parts of config-bounded widths
    const uint64_t sz = safetensors_dtype_size(srcs[i].scales->dtype);
    const std::vector<uint8_t> qw = join(&Src::qweight, K / 8, 4, 1), sc = join(&Src::scales, G, sz, 1);
    const std::vector<uint8_t> qz = srcs[i].qzeros ? join(&Src::qzeros, G, 4, 8) : std::vector<uint8_t>{};
    std::vector<int32_t> qw32(qw.size() / 4), qz32(qz.size() / 4), gidx;
    std::memcpy(qw32.data(), qw.data(), qw.size());
    std::memcpy(qz32.data(), qz.data(), qz.size());
    if (srcs[i].g_idx) {
      gidx.resize(K);
      std::memcpy(gidx.data(), srcs[i].g_idx->bytes.data(), srcs[i].g_idx->bytes.size());
    }
    const Dtype sdt = srcs[i].scales->dtype == "F16" ? Dtype::f16 : srcs[i].scales->dtype == "BF16" ? Dtype::bf16 : Dtype::f32;
    Linear::Part part;
    part.gptq = true;
    part.rows = N;
    part.quant = ctx.load_gptq({.qweight = qw32.data(), .scales = sc.data(), .qzeros = qz32.empty() ? nullptr : qz32.data(),
                                .g_idx = gidx.empty() ? nullptr : gidx.data(), .bits = 4, .group_size = g, .k = K, .n = N,
                                .scales_dtype = sdt, .act_dtype = Dtype::invalid});
    w.bytes += qw.size() + sc.size() + qz.size();
    w.parts.push_back(std::move(part));
    i = j;
  }
  return w;
}

Linear SafetensorsSource::linear(Context& ctx, const std::vector<std::string>& names,
                                 const std::vector<std::vector<uint64_t>>& shapes, uint64_t head_width) {
  if (quantised(names[0])) return gptq_linear(ctx, names, shapes, head_width);
  Linear w = empty_linear(shapes, head_width);
  w.parts.push_back({.dense = dense(ctx, names, shapes), .quant = {}, .rows = w.n});
  w.bytes = w.parts[0].dense.size_bytes();
  return w;
}

// ---- GGUF --------------------------------------------------------------------------------------

std::string GgufSource::gguf_name(const std::string& hf) {
  static const std::pair<const char*, const char*> kGlobal[] = {
      {"model.embed_tokens.weight", "token_embd.weight"}, {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"}};
  for (const auto& [a, b] : kGlobal)
    if (hf == a) return b;
  static const std::pair<const char*, const char*> kLayer[] = {
      {"input_layernorm.weight", "attn_norm.weight"},     {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},       {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},           {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},           {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},  {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"}, {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},            {"mlp.down_proj.weight", "ffn_down.weight"}};
  static const std::regex kLayerRe(R"(model\.layers\.([0-9]+)\.(.+))");
  std::smatch m;
  if (std::regex_match(hf, m, kLayerRe))
    for (const auto& [a, b] : kLayer)
      if (m[2] == a) return "blk." + m[1].str() + "." + b;
  return "";
}

bool GgufSource::has(const std::string& name) const {
  const std::string g = gguf_name(name);
  return !g.empty() && file_.find(g);
}

bool GgufSource::quantised(const std::string& name) const {
  const std::string g = gguf_name(name);
  const GgufTensor* t = g.empty() ? nullptr : file_.find(g);
  return t && gguf_dense_dtype(t->type) == Dtype::invalid;
}

const GgufTensor& GgufSource::get(const std::string& hf, const std::vector<uint64_t>& shape) const {
  const std::string g = gguf_name(hf);
  const GgufTensor* t = g.empty() ? nullptr : file_.find(g);
  if (!t) throw LoadError(file_.path() + ": the file has no tensor '" + (g.empty() ? hf : g) + "'");
  const std::vector<uint64_t> want(shape.rbegin(), shape.rend());  // GGUF: innermost first
  if (t->dims != want)
    throw LoadError(file_.path() + ": tensor '" + g + "': dims " + shape_string(t->dims) +
                    " disagree with the metadata, which implies " + shape_string(want));
  return *t;
}

GgufSource::Slice GgufSource::slice(const std::string& hf, const std::vector<uint64_t>& shape,
                                    std::vector<uint8_t>& store) const {
  const TpSplit split = tp_size_ > 1 ? tp_split_of(hf) : TpSplit::none;
  std::vector<uint64_t> full = shape;  // the file's shape: this rank's times the ranks along the split
  const size_t dim = split == TpSplit::cols ? 1 : 0;
  if (split != TpSplit::none && dim < full.size()) full[dim] = (common::Size(full[dim]) * common::Size(tp_size_)).value;
  const GgufTensor& t = get(hf, full);
  Slice out{&t, t.bytes, t.rows(), t.cols()};
  if (split == TpSplit::none) return out;
  // Sizes fit: t.bytes holds the whole tensor, whose dims were just checked.
  if (split == TpSplit::rows && shape.size() > 1) {  // whole rows: a view of the file
    const uint64_t local = out.rows / tp_size_, row_bytes = t.bytes.size() / out.rows;  // arith-ok: within t.bytes
    out.bytes = t.bytes.subspan(tp_rank_ * local * row_bytes, local * row_bytes);       // arith-ok: within t.bytes
    out.rows = local;
    return out;
  }
  // Columns of every row (a 1-D bias split by rows is one row's columns): whole blocks only.
  const auto [qk, block_bytes] = ggml_block(t.type);
  const uint64_t local = out.cols / tp_size_;  // arith-ok: within t.bytes
  if (qk == 0 || local % qk != 0)
    throw LoadError(file_.path() + ": tensor '" + t.name + "': --tp " + std::to_string(tp_size_) + " gives each rank " +
                    std::to_string(local) + " of its " + std::to_string(out.cols) + " columns, not a whole number of " +
                    ggml_type_name(t.type) + " blocks of " + std::to_string(qk));
  const uint64_t row_bytes = out.cols / qk * block_bytes, local_bytes = local / qk * block_bytes;  // arith-ok: within t.bytes
  store.clear();
  store.reserve(out.rows * local_bytes);  // arith-ok: within t.bytes
  for (uint64_t r = 0; r < out.rows; ++r) {
    const auto b = t.bytes.begin() + static_cast<std::ptrdiff_t>(r * row_bytes + tp_rank_ * local_bytes);  // arith-ok: within t.bytes
    store.insert(store.end(), b, b + static_cast<std::ptrdiff_t>(local_bytes));
  }
  out.bytes = store;
  out.cols = local;
  return out;
}

Buffer GgufSource::dense(Context& ctx, const std::vector<std::string>& names, const std::vector<std::vector<uint64_t>>& shapes) {
  std::vector<uint8_t> store;
  if (names.size() != 1) {
    // Concatenations are only asked for biases (q|k|v), which GGUF keeps in F32.
    std::vector<uint8_t> joined;
    for (size_t i = 0; i < names.size(); ++i) {
      const Slice sl = slice(names[i], shapes[i], store);
      if (sl.t->type != uint32_t(GgmlType::f32))
        throw LoadError(file_.path() + ": tensor '" + sl.t->name + "': type " + ggml_type_name(sl.t->type) +
                        ", expected F32 for a fused bias");
      joined.insert(joined.end(), sl.bytes.begin(), sl.bytes.end());
    }
    return ctx.from_weight_bytes({.raw = joined, .src_dtype = Dtype::f32, .dst_dtype = Dtype::invalid});
  }
  const Slice sl = slice(names[0], shapes[0], store);
  if (const Dtype d = gguf_dense_dtype(sl.t->type); d != Dtype::invalid)
    return ctx.from_weight_bytes({.raw = sl.bytes, .src_dtype = d, .dst_dtype = Dtype::invalid});
  // Quantised: upload the blocks, dequantise on the device into an activation-dtype table.
  const QWeight q = ctx.load_quant({.quant_type = int32_t(sl.t->type), .bytes = sl.bytes, .n_rows = sl.rows, .n_cols = sl.cols});
  Buffer out = ctx.alloc((common::Size(sl.rows) * common::Size(sl.cols)).value);
  ctx.gguf_dequantize(q, out);
  return out;
}

Linear GgufSource::linear(Context& ctx, const std::vector<std::string>& names,
                          const std::vector<std::vector<uint64_t>>& shapes, uint64_t head_width) {
  Linear w = empty_linear(shapes, head_width);
  std::vector<Slice> ts;
  std::vector<std::vector<uint8_t>> stores(names.size());
  for (size_t i = 0; i < names.size(); ++i) ts.push_back(slice(names[i], shapes[i], stores[i]));
  // Runs of one type become one part (rows are independent, so their blocks concatenate).
  for (size_t i = 0; i < ts.size();) {
    size_t j = i + 1;
    while (j < ts.size() && ts[j].t->type == ts[i].t->type) ++j;
    std::vector<uint8_t> joined;
    std::span<const uint8_t> raw = ts[i].bytes;
    uint64_t rows = 0;
    for (size_t k = i; k < j; ++k) rows += ts[k].rows;  // arith-ok: each fits the file, at most 3 parts
    if (j - i > 1) {
      for (size_t k = i; k < j; ++k) joined.insert(joined.end(), ts[k].bytes.begin(), ts[k].bytes.end());
      raw = joined;
    }
    Linear::Part part;
    part.rows = rows;
    if (const Dtype d = gguf_dense_dtype(ts[i].t->type); d != Dtype::invalid) {
      part.dense = ctx.from_weight_bytes({.raw = raw, .src_dtype = d, .dst_dtype = Dtype::invalid});
      w.bytes += part.dense.size_bytes();
    } else {
      w.bytes += raw.size();
      part.quant = ctx.load_quant({.quant_type = int32_t(ts[i].t->type), .bytes = raw, .n_rows = rows, .n_cols = ts[i].cols,
                                   .act_precision = act_precision_});
    }
    w.parts.push_back(std::move(part));
    i = j;
  }
  return w;
}

HfConfig read_gguf_config(const GgufFile& f) {
  HfConfig c;
  c.path = f.path();
  const std::string arch = f.str("general.architecture");
  c.architecture = "gguf:" + arch;
  if (arch == "llama") {
    c.arch = Arch::llama;
    c.rope_interleaved = true;  // llama.cpp's converter permutes q/k rows for interleaved RoPE
  } else if (arch == "qwen2") {
    c.arch = Arch::qwen2;
  } else if (arch == "qwen3") {
    c.arch = Arch::qwen3;
  } else {
    throw LoadError(f.path() + ": metadata 'general.architecture': unsupported architecture '" + arch +
                    "' (ferrum-run runs GGUF llama, qwen2 and qwen3)");
  }
  const std::string a = arch + ".";
  auto bounded = [&](const std::string& key, uint64_t v, uint64_t lo, uint64_t hi) {
    if (v < lo || v > hi)
      throw LoadError(f.path() + ": metadata '" + key + "': expected an integer from " + std::to_string(lo) + " to " +
                      std::to_string(hi) + ", given " + std::to_string(v));
    return v;
  };
  constexpr uint64_t kMaxDim = 1ull << 20;
  c.hidden = bounded(a + "embedding_length", f.u64(a + "embedding_length"), 1, kMaxDim);
  c.layers = bounded(a + "block_count", f.u64(a + "block_count"), 1, 4096);
  c.q_heads = bounded(a + "attention.head_count", f.u64(a + "attention.head_count"), 1, 4096);
  c.kv_heads = bounded(a + "attention.head_count_kv", f.u64_or(a + "attention.head_count_kv", c.q_heads), 1, c.q_heads);
  if (c.q_heads % c.kv_heads)
    throw LoadError(f.path() + ": metadata '" + a + "attention.head_count_kv': expected a divisor of the head count");
  c.head_dim = bounded(a + "attention.key_length", f.u64_or(a + "attention.key_length", c.hidden / c.q_heads), 2, 4096);
  if (c.head_dim % 2) throw LoadError(f.path() + ": metadata '" + a + "attention.key_length': expected an even head size");
  if (f.u64_or(a + "rope.dimension_count", c.head_dim) != c.head_dim)
    throw LoadError(f.path() + ": metadata '" + a + "rope.dimension_count': unsupported partial rotary embeddings");
  c.ffn = bounded(a + "feed_forward_length", f.u64(a + "feed_forward_length"), 1, kMaxDim);
  const GgufTensor* emb = f.find("token_embd.weight");
  if (!emb) throw LoadError(f.path() + ": the file has no tensor 'token_embd.weight'");
  c.vocab = bounded(a + "vocab_size", f.u64_or(a + "vocab_size", emb->dims.size() == 2 ? emb->dims[1] : 0), 1, 1ull << 24);
  c.max_position_embeddings = f.u64_or(a + "context_length", 4096);
  c.rms_eps = f.f64_or(a + "attention.layer_norm_rms_epsilon", 1e-6);
  c.tie_embeddings = f.find("output.weight") == nullptr;
  c.attention_bias = f.find("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = arch == "qwen3";
  c.moe_layer.assign(c.layers, false);
  c.rope_theta = f.f64_or(a + "rope.freq_base", 10000.0);
  if (!(c.rope_theta > 1)) throw LoadError(f.path() + ": metadata '" + a + "rope.freq_base': expected a number greater than 1");
  c.inv_freq.resize(c.head_dim / 2);
  for (uint64_t i = 0; i < c.head_dim / 2; ++i)
    c.inv_freq[i] = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(c.head_dim));
  const std::string scaling = f.has(a + "rope.scaling.type") ? f.str(a + "rope.scaling.type") : "none";
  if (scaling == "linear") {
    const double factor = f.f64_or(a + "rope.scaling.factor", 0.0);
    if (!(factor > 0)) throw LoadError(f.path() + ": metadata '" + a + "rope.scaling.factor': expected a positive number");
    for (double& x : c.inv_freq) x /= factor;
    c.rope_type = "linear";
  } else if (scaling != "none") {
    throw LoadError(f.path() + ": metadata '" + a + "rope.scaling.type': unsupported RoPE scaling '" + scaling +
                    "' (ferrum-run supports none and linear in GGUF files)");
  }
  // llama3-style scaling as llama.cpp stores it: per-frequency divisors.
  if (const GgufTensor* rf = f.find("rope_freqs.weight")) {
    if (rf->type != uint32_t(GgmlType::f32) || rf->dims != std::vector<uint64_t>{c.head_dim / 2})
      throw LoadError(f.path() + ": tensor 'rope_freqs.weight': expected F32 [" + std::to_string(c.head_dim / 2) + "]");
    for (uint64_t i = 0; i < c.head_dim / 2; ++i) {
      float d;
      std::memcpy(&d, rf->bytes.data() + 4 * i, 4);  // arith-ok: i < head_dim / 2, the checked length
      if (!(d > 0)) throw LoadError(f.path() + ": tensor 'rope_freqs.weight': expected positive factors");
      c.inv_freq[i] /= d;
    }
    c.rope_type = "rope_freqs";
  }
  if (f.has("tokenizer.ggml.eos_token_id")) {
    const uint64_t eos = f.u64("tokenizer.ggml.eos_token_id");
    if (eos < c.vocab) c.eos_ids.push_back(static_cast<uint32_t>(eos));
  }
  return c;
}

}  // namespace ferrum::run
