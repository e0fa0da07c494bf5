// ferrum conformance kit — generic op calls from the registry's fields (op_call.hpp).
#include "src/op_call.hpp"

#include "src/facade_call.hpp"

#include "ref/compare.hpp"
#include "ref/quantize.hpp"

#include <ferrum/common/op_info_gen.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <cxxabi.h>
#include <typeinfo>
#include <string_view>

namespace ferrum::conformance::opcall {

namespace ft = ferrum::testing;

namespace {

// Baseline values of the size fields, by name: small, consistent across the ops that share a
// name (GQA 2:1, head_dim 8 even and a multiple of the vLLM x, 4-token blocks ...).
const std::map<std::string, uint64_t>& defaults() {
  static const std::map<std::string, uint64_t> m = {
      {"len", 8}, {"n", 4}, {"data_len", 8}, {"raw_len", 8}, {"byte_len", 136}, {"m", 2}, {"k", 8},
      {"tokens", 2}, {"dim", 8}, {"rows", 2}, {"cols", 8}, {"q_dim", 16}, {"kv_dim", 8}, {"im", 4},
      {"ids_len", 2}, {"heads", 2}, {"head_dim", 8}, {"hd", 8}, {"num_heads", 2}, {"q_heads", 2},
      {"nq", 2}, {"num_q_heads", 2}, {"num_kv_heads", 1}, {"kv_heads", 1}, {"nkv", 1}, {"batch", 1},
      {"q_len", 1}, {"kv_len", 4}, {"pos_offset", 0}, {"kv_seq_stride", 0}, {"sliding_window", 0},
      {"cache_len", 0}, {"cache_capacity", 8}, {"capacity", 8}, {"new_tokens", 1}, {"slot", 0},
      {"max_valid_kv", 4}, {"num_layers", 1}, {"block_size", 4}, {"max_num_blocks_per_seq", 2},
      {"max_blocks_per_seq", 2}, {"num_seqs", 1}, {"m_total", 1}, {"total_q_tokens", 1},
      {"max_kv_len", 4}, {"max_seq_len", 4}, {"max_q_len", 1}, {"num_tiles", 1},
      {"paged_block_indices_len", 1}, {"cache_len_before", 0}, {"valid_kv_len", 4},
      {"n_rows", 4}, {"n_cols", 32}, {"group_size", 8}, {"num_experts", 2}, {"n_per_expert", 4},
      {"num_tokens", 2}, {"top_k", 1}, {"num_pairs", 2}, {"hidden", 8}, {"intermediate", 4},
      {"num_packed", 2}, {"kv_lora_rank", 8}, {"qk_rope_head_dim", 8}, {"local_len", 4},
      {"device_ordinal", 0}, {"key", 1}, {"bits", 4}, {"world_size", 1}, {"rank", 0}, {"src_rank", 0},
      {"token", 0}, {"step", 0}, {"qkv_byte_offset", 0}, {"q_out_byte_offset", 0},
      // wrap_external (ABI 1.1): the empty wrap (address 0, count 0) is a valid baseline that
      // touches no memory; a hostile address then stays harmless, a hostile count is refused.
      {"address", 0}, {"count", 0}};
  return m;
}

// Per-op baseline changes where a shared name needs another value.
void op_overrides(const std::string& op, std::map<std::string, uint64_t>& v) {
  if (op == "copy_slice") v["len"] = 4;                       // src_offset/dst_offset 2 + 4 <= 8
  if (op == "read_typed" || op == "to_vec" || op == "zero_buffer") v["len"] = 8;
  if (op == "load_gptq" || op == "load_gptq_stacked") {
    v["k"] = 16;
    v["n"] = 8;
    v["n_per_expert"] = 8;
  }
  if (op == "moe_gemm" || op == "fused_moe") v["block_size"] = 2;
  if (op == "mla_attention") v["head_dim"] = v["kv_lora_rank"] + v["qk_rope_head_dim"];
  if (op.rfind("int8_", 0) == 0 || op.rfind("fp8_", 0) == 0) v["tokens"] = 1;
}

bool is_space(char c) { return c == ' ' || c == '\t'; }

struct Parser {
  const std::map<std::string, uint64_t>& vars;
  std::string_view s;
  size_t p = 0;
  bool ok = true;

  void skip() {
    while (p < s.size() && is_space(s[p])) ++p;
  }
  bool eat(std::string_view t) {
    skip();
    if (s.substr(p, t.size()) == t) {
      p += t.size();
      return true;
    }
    return false;
  }
  uint64_t add(uint64_t a, uint64_t b) {
    uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) ok = false;
    return r;
  }
  uint64_t mul(uint64_t a, uint64_t b) {
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) ok = false;
    return r;
  }
  uint64_t expr(bool ceil_div) {
    uint64_t v = term(ceil_div);
    for (;;) {
      if (eat("+")) v = add(v, term(ceil_div));
      else if (eat("-")) {
        const uint64_t r = term(ceil_div);
        if (r > v) ok = false;
        v -= r;
      } else return v;
    }
  }
  uint64_t term(bool ceil_div) {
    uint64_t v = factor();
    for (;;) {
      if (eat("\xC2\xB7") || eat("*")) v = mul(v, factor());
      else if (eat("/")) {
        const uint64_t d = factor();
        if (d == 0) {
          ok = false;
          return 0;
        }
        v = ceil_div ? v / d + (v % d != 0) : v / d;
      } else return v;
    }
  }
  uint64_t factor() {
    skip();
    if (eat("ceil(")) {
      const uint64_t v = expr(true);
      if (!eat(")")) ok = false;
      return v;
    }
    if (eat("(")) {
      const uint64_t v = expr(false);
      if (!eat(")")) ok = false;
      return v;
    }
    size_t q = p;
    if (q < s.size() && s[q] >= '0' && s[q] <= '9') {
      uint64_t v = 0;
      while (q < s.size() && s[q] >= '0' && s[q] <= '9') v = add(mul(v, 10), static_cast<uint64_t>(s[q++] - '0'));
      p = q;
      return v;
    }
    while (q < s.size() && (std::isalnum(static_cast<unsigned char>(s[q])) || s[q] == '_')) ++q;
    if (q == p) {
      ok = false;
      return 0;
    }
    const auto it = vars.find(std::string(s.substr(p, q - p)));
    p = q;
    if (it == vars.end()) {
      ok = false;
      return 0;
    }
    return it->second;
  }
};

// The element size and count expression of a `host T[expr]` / `hostout T[expr]` spec.
struct HostSpec {
  std::string elem;  // f32, u32, u8, i32, bytes, scales_dtype, ferrum_buffer*, (const i32*), ...
  std::string count;
};
HostSpec host_spec(const std::string& spec) {
  std::string t = spec.substr(spec.find(' ') + 1);
  const auto lb = t.rfind('[');
  if (lb == std::string::npos || t.back() != ']') return {t, ""};
  return {t.substr(0, lb), t.substr(lb + 1, t.size() - lb - 2)};
}
uint64_t host_elem_size(const std::string& e) {
  if (e == "u8") return 1;
  if (e == "f64" || e == "u64" || e.find('*') != std::string::npos) return 8;
  return 4;
}

Dtype buffer_dtype(const gen::Field& f, Dtype act) {
  const std::string c = f.cls;
  if (c == "act" || c == "tab") return act;
  if (c == "idx") return Dtype::u32;
  if (c == "I32") return Dtype::i32;
  if (c == "I8") return Dtype::i8;
  if (c == "F8_E4M3") return Dtype::f8_e4m3;
  return Dtype::f32;  // F32, any, X
}

// Contents of an index buffer, by its name (varlen metadata of one sequence with one token).
uint32_t idx_value(const std::string& name, uint64_t i) {
  if (name == "cu_seqlens_q") return static_cast<uint32_t>(i);
  if (name == "context_lens" || name == "valid_kv_lens" || name == "seq_lens" || name == "kv_lens" ||
      name == "cache_lens")
    return 1;
  return 0;
}

template <class T>
void put(std::vector<uint8_t>& bytes, uint32_t offset, T v) {
  std::memcpy(bytes.data() + offset, &v, sizeof v);
}

}  // namespace

const gen::OpFields* op_fields(const std::string& op) {
  for (const auto& o : gen::kOps)
    if (op == o.name) return &o;
  return nullptr;
}

std::vector<const gen::Field*> fields_of(const gen::OpFields& op, uint32_t minor) {
  std::vector<const gen::Field*> out;
  for (uint32_t i = 0; i < op.count; ++i)
    if (gen::kFields[op.first + i].since <= minor) out.push_back(&gen::kFields[op.first + i]);
  return out;
}

bool eval(const std::string& expr, const std::map<std::string, uint64_t>& vars, uint64_t& out) {
  Parser p{vars, expr};
  out = p.expr(false);
  p.skip();
  return p.ok && p.p == expr.size();
}

OpCall::OpCall(Run& run, const gen::OpFields& op, bool need_slot)
    : run_(run), op_(op), fields_(fields_of(op, run.backend.api() ? run.backend.api()->abi_minor : 0)) {
  fn_ = common::find_slot(run.backend.api(), op.id);
  if (!fn_ && need_slot)
    throw Error(ErrorCode::unsupported, std::string(op.name) + ": the plugin does not implement this op (NULL slot)");
  build();
}

OpCall::~OpCall() = default;

uint64_t OpCall::baseline(const std::string& field) const {
  const auto it = values_.find(field);
  return it == values_.end() ? 0 : it->second;
}

void OpCall::set_u64(std::vector<uint8_t>& args, const gen::Field& f, uint64_t v) {
  if (f.kind == gen::Kind::u64) put<uint64_t>(args, f.offset, v);
  else put<uint32_t>(args, f.offset, static_cast<uint32_t>(v));
}

bool OpCall::sizes_host_input(const std::string& field) const {
  for (const gen::Field* f : fields_)
    if (f->kind == gen::Kind::host) {
      const std::string spec = f->spec;
      if ((spec == "host bytes" && field == "data_len") || host_spec(spec).count.find(field) != std::string::npos)
        return true;
    }
  return false;
}

bool OpCall::sizes_host_output(const std::string& field) const {
  for (const gen::Field* f : fields_)
    if (f->kind == gen::Kind::hostout) {
      const std::string count = host_spec(f->spec).count;
      if (!count.empty() && count.find(field) != std::string::npos) return true;
    }
  return false;
}

bool OpCall::in_shapes(const std::string& field) const {
  for (const gen::Field* f : fields_) {
    if (f->kind != gen::Kind::buffer) continue;
    const std::string shape = f->shape;
    for (size_t p = shape.find(field); p != std::string::npos; p = shape.find(field, p + 1)) {
      const auto ident = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; };
      const bool left = p == 0 || !ident(shape[p - 1]);
      const bool right = p + field.size() >= shape.size() || !ident(shape[p + field.size()]);
      if (left && right) return true;
    }
  }
  return false;
}

void OpCall::build() {
  const std::string name = op_.name;
  const Dtype act = run_.dtype;
  args_.assign(op_.size, 0);
  put<uint64_t>(args_, 0, op_.size);  // struct_size
  for (const gen::Field* f : fields_)
    if (f->kind == gen::Kind::u64 || f->kind == gen::Kind::u32) {
      const auto it = defaults().find(f->name);
      values_[f->name] = it == defaults().end() ? 2 : it->second;
    }
  op_overrides(name, values_);
  // Symbols of the shapes that are not fields of the op.
  std::map<std::string, uint64_t> vars = values_;
  if (!vars.count("S") && vars.count("kv_len")) vars["S"] = vars["kv_len"];
  if (vars.count("kv_lora_rank")) vars["R"] = vars["kv_lora_rank"];
  if (vars.count("qk_rope_head_dim")) vars["P"] = vars["qk_rope_head_dim"];
  if (vars.count("group_size") && vars.count("k") && vars["group_size"]) vars["G"] = vars["k"] / vars["group_size"];
  // N: the block count of a shapeless paged pool of kShapeless + kGuard elements.
  for (const char* heads : {"num_kv_heads", "kv_heads", "nkv"})
    if (vars.count("block_size") && vars.count(heads) && vars.count("head_dim")) {
      const uint64_t per_block = vars["block_size"] * vars[heads] * vars["head_dim"];
      if (per_block) vars["N"] = (kShapeless + kGuard) / per_block;
    }

  const bool any_handle_out = [&] {
    for (const gen::Field* f : fields_)
      if (f->kind == gen::Kind::hostout && std::string(f->spec).find("ferrum_") != std::string::npos) return true;
    return false;
  }();
  allocates_ = any_handle_out;

  for (const gen::Field* f : fields_) {
    const std::string fname = f->name;
    switch (f->kind) {
      case gen::Kind::u64:
      case gen::Kind::u32: set_u64(args_, *f, values_[fname]); break;
      case gen::Kind::flag: put<uint32_t>(args_, f->offset, 0); break;
      case gen::Kind::i32: {
        int32_t v = 0;
        if (fname == "quant_type") v = FERRUM_QUANT_Q8_0;
        else if (fname == "qk_mode" || fname == "mode") v = 2;
        else if (fname == "op") v = 1;  // all_reduce: SUM  // NeoX: reads the RoPE tables, needs no norm weight
        else if (fname == "attribute") v = FERRUM_ATTRIBUTE_PAGED_KV;  // query_attribute
        else if (fname.find("dtype") != std::string::npos && fname != "activation_dtype")
          v = static_cast<int32_t>(fname == "scales_dtype" ? Dtype::f32 : act);
        put<int32_t>(args_, f->offset, v);
        break;
      }
      case gen::Kind::f32: put<float>(args_, f->offset, fname == "eps" ? 1e-5f : 0.25f); break;
      case gen::Kind::f64: put<double>(args_, f->offset, 0.0); break;
      case gen::Kind::buffer: {
        DeviceBuf b;
        b.field = f;
        uint64_t body = 1;
        bool known = std::string(f->shape).size() > 0;
        if (known) {
          std::string shape = f->shape;
          size_t start = 0;
          // dims are comma separated at the top level (no commas inside the registry's dims)
          while (known && start <= shape.size()) {
            const size_t comma = shape.find(',', start);
            const std::string dim = shape.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
            uint64_t d = 0;
            known = eval(dim, vars, d) && !__builtin_mul_overflow(body, d, &body);
            if (comma == std::string::npos) break;
            start = comma + 1;
          }
        }
        b.body = known ? body : kShapeless;
        // Buffers sized by the pool's block count must match it exactly: their guard lies
        // inside that count.
        const bool exact = known && std::string(f->shape).find('N') != std::string::npos;
        if (exact) b.body = body > kGuard ? body - kGuard : 0;
        const Dtype d = buffer_dtype(*f, act);
        const int32_t rd = static_cast<int32_t>(d);
        std::vector<uint8_t> bytes;
        if (d == Dtype::u32) {
          std::vector<uint32_t> v(b.body);
          for (uint64_t i = 0; i < b.body; ++i) v[i] = idx_value(fname, i);
          bytes.resize(b.body * 4);
          std::memcpy(bytes.data(), v.data(), bytes.size());
        } else if (d == Dtype::i32) {
          bytes.assign(b.body * 4, 0);
        } else if (d == Dtype::i8) {
          bytes.resize(b.body);
          for (uint64_t i = 0; i < b.body; ++i) bytes[i] = static_cast<uint8_t>(i % 7);
        } else if (d == Dtype::f8_e4m3) {
          bytes.assign(b.body, 0x30);
        } else {
          bytes = ft::encode(rd, run_.random(b.body, 0.25, 1.0, d));
        }
        const auto guard = ft::poison_bytes(rd, kGuard);
        bytes.insert(bytes.end(), guard.begin(), guard.end());
        b.initial = bytes;
        b.buf = run_.ctx.from_slice_typed(d, bytes.data(), b.body + kGuard);
        put<ferrum_buffer*>(args_, f->offset, b.buf.get());
        dev_.push_back(std::move(b));
        break;
      }
      case gen::Kind::host: {
        const HostSpec hs = host_spec(f->spec);
        if (hs.elem == "ferrum_release_fn" || hs.elem == "userdata") {
          // wrap_external's callback and its user data (ABI 1.1): code and an opaque value, never
          // host memory the kit could size; NULL (no callback) is their valid baseline.
          put<const void*>(args_, f->offset, nullptr);
        } else if (hs.elem == "ferrum_buffer*") {
          uint64_t n = 0;
          if (!eval(hs.count, vars, n) || n > 64) n = 1;
          auto arr = std::make_unique<std::vector<const void*>>();
          for (uint64_t i = 0; i < n; ++i) {
            std::vector<double> v = run_.random(kShapeless, 0.25, 1.0, act);
            auto bytes = ft::encode(static_cast<int32_t>(act), v);
            const auto guard = ft::poison_bytes(static_cast<int32_t>(act), kGuard);
            bytes.insert(bytes.end(), guard.begin(), guard.end());
            extra_.push_back(run_.ctx.from_slice_typed(act, bytes.data(), kShapeless + kGuard));
            arr->push_back(extra_.back().get());
          }
          put<const void*>(args_, f->offset, arr->data());
          ptr_arrays_.push_back(std::move(arr));
        } else if (hs.elem.find('*') != std::string::npos) {  // (const i32*)[n], (const void*)[n]
          uint64_t n = 0;
          if (!eval(hs.count, vars, n) || n > 64) n = 1;
          auto arr = std::make_unique<std::vector<const void*>>();
          for (uint64_t i = 0; i < n; ++i) {
            blocks_.emplace_back(1 << 16, 0);
            arr->push_back(blocks_.back().data());
          }
          put<const void*>(args_, f->offset, arr->data());
          ptr_arrays_.push_back(std::move(arr));
        } else {
          uint64_t bytes = 0;
          if (hs.elem == "bytes") bytes = values_.count("data_len") ? values_["data_len"] * 4 : 0;
          else if (uint64_t n = 0; eval(hs.count, vars, n)) bytes = n * host_elem_size(hs.elem);
          HostBuf h;
          h.field = f;
          h.body = bytes;
          h.bytes.assign(bytes + (1 << 16), 0);
          if (hs.elem == "f32")
            for (uint64_t i = 0; i < bytes / 4; ++i) {
              const float x = 0.5f;
              std::memcpy(h.bytes.data() + i * 4, &x, 4);
            }
          if (name == "load_quant") {  // Q8_0 blocks: f16 scale 1.0 then 32 codes
            for (uint64_t b = 0; b + 34 <= bytes; b += 34) {
              h.bytes[b] = 0x00;
              h.bytes[b + 1] = 0x3C;
            }
          }
          host_.push_back(std::move(h));
          put<const void*>(args_, f->offset, host_.back().bytes.data());
        }
        break;
      }
      case gen::Kind::hostout: {
        const HostSpec hs = host_spec(f->spec);
        uint64_t body = 8;
        if (hs.elem == "ferrum_kv_cache_quant") body = sizeof(ferrum_kv_cache_quant);
        else if (hs.elem == "bytes") body = values_.count("len") ? values_["len"] * 4 : 0;
        else if (uint64_t n = 0; !hs.count.empty() && eval(hs.count, vars, n)) body = n * host_elem_size(hs.elem);
        else if (!hs.count.empty()) body = 128;
        else body = host_elem_size(hs.elem);
        HostBuf h;
        h.field = f;
        h.body = body;
        h.bytes.assign(body + 4096, 0xA5);
        if (hs.elem == "ferrum_kv_cache_quant") {
          std::memset(h.bytes.data(), 0, body);
          put<uint64_t>(h.bytes, 0, sizeof(ferrum_kv_cache_quant));
        } else if (hs.elem.find("ferrum_") != std::string::npos) {
          std::memset(h.bytes.data(), 0, 8);
        }
        host_.push_back(std::move(h));
        put<void*>(args_, f->offset, host_.back().bytes.data());
        break;
      }
      case gen::Kind::qweight: {
        if (f->optional) break;  // NULL
        if (name == "marlin_gemm") {  // a GPTQ int4 weight: k 32, n 8, one group, zero points 8
          try {
            std::vector<int32_t> qw(32 / 8 * 8, 0x11111111);
            std::vector<float> sc(8, 0.5f);
            qweight_ = run_.ctx.load_gptq({.qweight = qw.data(), .scales = sc.data(), .qzeros = nullptr, .g_idx = nullptr, .bits = 4, .group_size = 32, .k = 32, .n = 8, .scales_dtype = Dtype::f32, .act_dtype = act});
          } catch (const Error&) {
          }
          put<const void*>(args_, f->offset, qweight_.get());
          break;
        }
        try {
          std::vector<uint8_t> q(4 * 34, 0);
          for (size_t b = 0; b < q.size(); b += 34) q[b + 1] = 0x3C;
          qweight_ = run_.ctx.load_quant({.quant_type = FERRUM_QUANT_Q8_0, .bytes = q, .n_rows = 4, .n_cols = 32});
        } catch (const Error&) {
          // no weight: the baseline is then not valid, which the case reports
        }
        put<const void*>(args_, f->offset, qweight_.get());
        break;
      }
      case gen::Kind::handle: break;  // ops on handles alone have no size field
    }
  }
}

void OpCall::reset() {
  for (auto& b : dev_) run_.ctx.write_typed({.dst = b.buf, .dtype = b.buf.dtype(), .data = b.initial.data(), .data_len = b.buf.count()});
  for (auto& h : host_)
    if (h.field->kind == gen::Kind::hostout) {
      const HostSpec hs = host_spec(h.field->spec);
      std::fill(h.bytes.begin(), h.bytes.end(), 0xA5);
      if (hs.elem == "ferrum_kv_cache_quant") {
        std::memset(h.bytes.data(), 0, h.body);
        put<uint64_t>(h.bytes, 0, sizeof(ferrum_kv_cache_quant));
      } else if (hs.elem.find("ferrum_") != std::string::npos) {
        std::memset(h.bytes.data(), 0, 8);
      }
    }
}

ferrum_status OpCall::call_raw(const std::vector<uint8_t>& args) {
  return fn_(op_.takes_context ? run_.ctx.get() : nullptr, args.data());
}

int32_t OpCall::call_facade(const std::vector<uint8_t>& args, std::string& message) {
  try {
    if (!conformance::call_facade(run_.ctx, op_.id, args.data())) {
      message = "the facade has no method for this op";
      return FERRUM_STATUS_UNSUPPORTED;
    }
    return FERRUM_STATUS_OK;
  } catch (const Error& e) {
    message = e.what();
    const int32_t code = static_cast<int32_t>(e.code());
    return code < 100 ? code : FERRUM_STATUS_INTERNAL;
  } catch (const std::exception& e) {
    const char* mangled = typeid(e).name();
    int st = 0;
    char* name = abi::__cxa_demangle(mangled, nullptr, nullptr, &st);
    message = std::string(st == 0 && name ? name : mangled) + ": " + e.what();
    std::free(name);
    return -1;
  }
}

std::string OpCall::detail() {
  const ferrum_plugin_api* api = run_.backend.api();
  if (!api->error_detail) return "(no error_detail)";
  char buf[512] = {};
  uint64_t needed = 0;
  if (api->error_detail(op_.takes_context ? run_.ctx.get() : nullptr, buf, sizeof buf, &needed) != FERRUM_STATUS_OK)
    return "(error_detail failed)";
  buf[sizeof buf - 1] = 0;
  return buf;
}

ferrum_status OpCall::sync() {
  const ferrum_op_fn s = common::find_slot(run_.backend.api(), FERRUM_OP_SYNC);
  if (!s) return FERRUM_STATUS_OK;
  ferrum_sync_args a{};
  a.struct_size = sizeof a;
  return s(run_.ctx.get(), &a);
}

std::string OpCall::damage(bool ok) {
  for (auto& b : dev_) {
    std::vector<uint8_t> now(b.initial.size());
    try {
      run_.ctx.read_typed({.src = b.buf, .dtype = b.buf.dtype(), .len = b.buf.count(), .data = now.data()});
    } catch (const std::exception& e) {
      return std::string("cannot read back ") + b.field->name + ": " + e.what();
    }
    const uint64_t es = ft::dtype_size(static_cast<int32_t>(b.buf.dtype()));
    const bool input = b.field->dir == gen::Dir::in;
    const uint64_t from = (!ok || input) ? 0 : b.body * es;
    for (uint64_t i = from; i < now.size(); ++i)
      if (now[i] != b.initial[i]) {
        const uint64_t e = i / es;
        if (!ok) return std::string("wrote ") + b.field->name + "[" + std::to_string(e) + "] although it refused the call";
        if (input) return std::string("changed its input ") + b.field->name + "[" + std::to_string(e) + "]";
        return std::string("wrote ") + b.field->name + "[" + std::to_string(e) + "], past the " +
               std::to_string(b.body) + " elements the baseline shape allows (guard region)";
      }
  }
  for (auto& h : host_) {
    if (h.field->kind != gen::Kind::hostout) continue;
    // A handle or cache struct may be written (or cleared) even by a refused call; other host
    // outputs only by a successful one, and never past their body.
    const bool handle_slot = host_spec(h.field->spec).elem.find("ferrum_") != std::string::npos;
    const uint64_t from = (ok || handle_slot) ? h.body : 0;
    for (uint64_t i = from; i < h.bytes.size(); ++i)
      if (h.bytes[i] != 0xA5)
        return std::string("wrote host byte ") + std::to_string(i) + " of " + h.field->name +
               (i >= h.body ? ", past the " + std::to_string(h.body) + " bytes the baseline shape allows"
                            : std::string(" although it refused the call"));
  }
  for (auto& b : extra_) {
    std::vector<uint8_t> now(b.size_bytes());
    run_.ctx.read_typed({.src = b, .dtype = b.dtype(), .len = b.count(), .data = now.data()});
    const uint64_t es = ft::dtype_size(static_cast<int32_t>(b.dtype()));
    const auto guard = ft::poison_bytes(static_cast<int32_t>(b.dtype()), kGuard);
    if (std::memcmp(now.data() + kShapeless * es, guard.data(), guard.size()) != 0)
      return "wrote past the end of a cache buffer passed in a host handle array";
  }
  return {};
}

namespace {

// Releases `handle` through the plugin's release op `op` (whose args hold it in `member`).
template <class Args, class H>
void release_with(const ferrum_plugin_api* api, int32_t op, H* Args::*member, void* handle) {
  if (!handle) return;
  if (ferrum_op_fn r = common::find_slot(api, op)) {
    Args a{};
    a.struct_size = sizeof a;
    a.*member = static_cast<H*>(handle);
    r(nullptr, &a);
  }
}

}  // namespace

void OpCall::release_outputs() {
  const ferrum_plugin_api* api = run_.backend.api();
  for (auto& h : host_) {
    if (h.field->kind != gen::Kind::hostout) continue;
    const HostSpec hs = host_spec(h.field->spec);
    void* p = nullptr;
    std::memcpy(&p, h.bytes.data(), sizeof p);
    if (hs.elem == "ferrum_buffer*")
      release_with(api, FERRUM_OP_BUFFER_RELEASE, &ferrum_buffer_release_args::buf, p);
    else if (hs.elem == "ferrum_qweight*")
      release_with(api, FERRUM_OP_QWEIGHT_RELEASE, &ferrum_qweight_release_args::weight, p);
    else if (hs.elem == "ferrum_timer*")
      release_with(api, FERRUM_OP_TIMER_RELEASE, &ferrum_timer_release_args::timer, p);
    else if (hs.elem == "ferrum_context*")
      release_with(api, FERRUM_OP_CONTEXT_DESTROY, &ferrum_context_destroy_args::context, p);
    else if (hs.elem == "ferrum_kv_cache_quant") {
      ferrum_kv_cache_quant c;
      std::memcpy(&c, h.bytes.data(), sizeof c);
      for (ferrum_buffer* b : {c.k, c.v, c.k_scales, c.v_scales, c.block_table, c.context_lens})
        release_with(api, FERRUM_OP_BUFFER_RELEASE, &ferrum_buffer_release_args::buf, b);
    }
    std::memset(h.bytes.data(), 0, std::min<uint64_t>(h.body, 8));
  }
}

}  // namespace ferrum::conformance::opcall
