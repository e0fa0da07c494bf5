// Conformance cases: the overflow family, on every op of the registry (no hand list: the fields
// come from op_fields_gen.hpp). Each size, offset, position, id and count argument is set in
// turn to 0, 1, 2^32, 2^63 and 2^64-1 (u32 fields: 0, 1, 2^31, 2^32-1), and the factors of every
// product the op must compute (a buffer's shape, a host array's length, a paged pool's
// block_size × heads × head_dim) are set so the product wraps past 2^64 to 0 or to a small
// number, the other arguments staying at a valid baseline. The answer must be INVALID_ARGUMENT or
// UNSUPPORTED (OUT_OF_MEMORY for an allocation), with nothing written; OK only where the value is
// genuinely valid (0 or 1, or a bound such as sliding_window), with every guard region intact and
// the inputs unchanged; never a crash (the isolated runner names the case).
#include <ferrum/conformance/kit.hpp>

#include "src/facade_call.hpp"
#include "src/op_call.hpp"

#include <algorithm>
#include <cctype>
#include <set>

using namespace ferrum;
using namespace ferrum::conformance;

namespace {

namespace oc = ferrum::conformance::opcall;

constexpr uint64_t kP32 = 1ull << 32, kP63 = 1ull << 63, kMax = ~0ull;

struct Trial {
  std::vector<std::pair<const gen::Field*, uint64_t>> set;
  bool ok_allowed = false;
  std::string label;
};

// Fields where any value is valid (a bound or a key, not a size the buffers must hold).
bool is_bound(const std::string& f) {
  static const std::set<std::string> k = {"sliding_window", "max_kv_len", "max_seq_len", "max_q_len",
                                          "max_valid_kv", "key", "token", "step"};
  return k.count(f) != 0;
}

// Whether OK is a right answer to field = v: 0 and 1 (no work, or a small valid size), a bound,
// or a query position where no table bounds it (attention) and the last position does not wrap.
bool ok_allowed(const oc::OpCall& c, const std::string& field, uint64_t v) {
  if (v <= 1 || is_bound(field)) return true;
  // The length of a host array is the caller's claim about its own memory: a plugin that reads
  // only the entries it needs may accept it (a plugin that trusts it crashes, which fails).
  if (c.sizes_host_input(field)) return true;
  // A field that sizes no buffer and places nothing in one (an expert count, top_k, ...) may
  // take a large value; only the guards and inputs are judged then.
  if (!c.in_shapes(field) && field.find("offset") == std::string::npos && field.find("cache_len") == std::string::npos &&
      field.find("pos") == std::string::npos && field != "slot" && field != "capacity")
    return true;
  if (field == "pos_offset" && !c.has_field("cos")) {
    const uint64_t n = c.has("q_len") ? c.baseline("q_len") : c.has("tokens") ? c.baseline("tokens") : 1;
    uint64_t last;
    return n == 0 || !__builtin_add_overflow(v, n - 1, &last);
  }
  return false;
}

bool is_size(const gen::Field& f) { return f.kind == gen::Kind::u64 || f.kind == gen::Kind::u32; }

std::string label_of(const std::vector<std::pair<const gen::Field*, uint64_t>>& set) {
  std::string s;
  for (const auto& [f, v] : set) s += (s.empty() ? "" : ", ") + std::string(f->name) + " = " + std::to_string(v);
  return s;
}

// The size fields named in an expression ("(q_heads + 2·kv_heads)·head_dim" -> q_heads, kv_heads,
// head_dim).
std::vector<const gen::Field*> named_fields(const std::string& expr, const oc::OpCall& c) {
  std::vector<const gen::Field*> out;
  size_t i = 0;
  while (i < expr.size()) {
    if (std::isalpha(static_cast<unsigned char>(expr[i])) || expr[i] == '_') {
      size_t j = i;
      while (j < expr.size() && (std::isalnum(static_cast<unsigned char>(expr[j])) || expr[j] == '_')) ++j;
      const std::string id = expr.substr(i, j - i);
      for (const gen::Field* f : c.fields())
        if (is_size(*f) && id == f->name && std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

// The trials of one field (`only` = its name), or of the products (`only` empty).
std::vector<Trial> trials(const oc::OpCall& c, const std::string& only) {
  std::vector<Trial> out;
  std::set<std::string> seen;
  auto add = [&](std::vector<std::pair<const gen::Field*, uint64_t>> set, bool ok_allowed) {
    bool changed = false;
    for (const auto& [f, v] : set) changed |= v != c.baseline(f->name);
    const std::string label = label_of(set);
    if (!changed || !seen.insert(label).second) return;
    out.push_back({std::move(set), ok_allowed, label});
  };
  // One field at a time.
  for (const gen::Field* f : c.fields()) {
    if (!is_size(*f) || only != f->name) continue;
    const bool u64 = f->kind == gen::Kind::u64;
    const std::string name = f->name;
    // A large but possible size of a host array the caller passes, or of an allocation, is not
    // an error the plugin can see (it would read the caller's memory or allocate gigabytes).
    const bool skip_mid = c.sizes_host_input(name) || c.allocates();
    for (uint64_t v : u64 ? std::vector<uint64_t>{0, 1, kP32, kP63, kMax}
                          : std::vector<uint64_t>{0, 1, 1ull << 31, 0xFFFFFFFFull}) {
      if (skip_mid && (v == kP32 || v == (1ull << 31))) continue;
      add({{f, v}}, ok_allowed(c, name, v));
    }
  }
  if (!only.empty()) return out;
  // Products: every shape, host array length and paged pool geometry the op computes.
  std::vector<std::vector<const gen::Field*>> groups;
  for (const gen::Field* f : c.fields()) {
    std::string expr;
    if (f->kind == gen::Kind::buffer) expr = f->shape;
    else if (f->kind == gen::Kind::host) {
      const std::string spec = f->spec;
      const auto lb = spec.rfind('[');
      if (lb != std::string::npos) expr = spec.substr(lb + 1);
    }
    auto g = named_fields(expr, c);
    if (g.size() >= 2) groups.push_back(std::move(g));
  }
  {
    std::vector<const gen::Field*> geometry;
    for (const char* n : {"block_size", "num_kv_heads", "kv_heads", "nkv", "head_dim", "hd"})
      for (const gen::Field* f : c.fields())
        if (is_size(*f) && f->kind == gen::Kind::u64 && std::string(f->name) == n) geometry.push_back(f);
    if (geometry.size() >= 2) groups.push_back(geometry);
  }
  for (const auto& g : groups) {
    for (const gen::Field* f : g) {
      if (f->kind != gen::Kind::u64) continue;
      unsigned __int128 others = 1;
      for (const gen::Field* o : g)
        if (o != f) others *= c.baseline(o->name);
      if (others == 0 || others > kMax) continue;
      // v·others = 2^64 + r with r < others: the product wraps to r (0 for a power of two),
      // and (v+1)·others wraps to r + others, the size the baseline buffers hold.
      const unsigned __int128 v = ((static_cast<unsigned __int128>(1) << 64) + others - 1) / others;
      if (v > kMax) continue;
      add({{f, static_cast<uint64_t>(v)}}, false);
      if (v + 1 <= kMax) add({{f, static_cast<uint64_t>(v + 1)}}, false);
    }
    if (g[0]->kind == gen::Kind::u64 && g[1]->kind == gen::Kind::u64) add({{g[0], kP32}, {g[1], kP32}}, false);
  }
  return out;
}

bool refused(ferrum_status st, bool allocates) {
  return st == FERRUM_STATUS_INVALID_ARGUMENT || st == FERRUM_STATUS_UNSUPPORTED ||
         (allocates && st == FERRUM_STATUS_OUT_OF_MEMORY);
}

std::string status_name(int32_t st) {
  return st == FERRUM_STATUS_OK ? "OK" : to_string(error_code_of(static_cast<ferrum_status>(st)));
}

enum class Path { raw, facade };

// One call of the trial's args: the status (or -1: an exception other than ferrum::Error) and,
// when not OK, the message.
int32_t call(oc::OpCall& c, Path path, const std::vector<uint8_t>& a, std::string& message) {
  if (path == Path::facade) return c.call_facade(a, message);
  const ferrum_status st = c.call_raw(a);
  if (st != FERRUM_STATUS_OK) message = c.detail();
  return st;
}

void overflow(Run& run, const gen::OpFields& op, const std::string& only, Path path) {
  const uint32_t minor = run.backend.api() ? run.backend.api()->abi_minor : 0;
  for (const gen::Field* f : oc::fields_of(op))
    if (only == f->name && f->since > minor)
      throw Error(ErrorCode::unsupported, std::string(op.name) + ": field '" + only + "' is ABI 1." +
                                              std::to_string(f->since) + ", the plugin implements 1." +
                                              std::to_string(minor) + " (it ignores the field)");
  oc::OpCall c(run, op, path == Path::raw);
  const std::string name = op.name;
  const std::string via = path == Path::raw ? " (raw slot)" : " (facade)";
  c.reset();
  const std::vector<uint8_t> base = c.args();
  std::string message, baseline_refused;
  int32_t st = FERRUM_STATUS_OK;
  if (!run.step(name + " baseline call" + via)) {
    // resumed after a crash: the baseline ran before it
  } else if ((st = call(c, path, base, message)) != FERRUM_STATUS_OK) {
    baseline_refused = status_name(st) + ": " + message;
  } else {
    const std::string d = c.damage(true);
    if (!d.empty()) run.fail(name + " baseline call" + via + ": " + d);
    c.release_outputs();
  }
  c.sync();
  size_t tried = 0;
  for (const Trial& t : trials(c, only)) {
    // The facade's method returns that host array as a std::vector: a size of gigabytes would
    // be allocated (and zeroed) before anything can refuse it, which a test run cannot afford.
    bool too_big = false;
    for (const auto& [f, v] : t.set)
      too_big |= path == Path::facade && c.sizes_host_output(f->name) && v > (1ull << 20) && v < (1ull << 61);
    if (too_big) continue;
    c.reset();
    std::vector<uint8_t> a = base;
    for (const auto& [f, v] : t.set) oc::OpCall::set_u64(a, *f, v);
    ++tried;
    const std::string what = name + " with " + t.label + via;
    if (!run.step(what)) continue;
    message.clear();
    st = call(c, path, a, message);
    if (st == FERRUM_STATUS_OK) {
      const ferrum_status s = c.sync();
      if (!t.ok_allowed)
        run.fail(what + ": returned OK (the buffers hold only the baseline sizes); expected INVALID_ARGUMENT or "
                        "UNSUPPORTED");
      const std::string d = c.damage(true);
      if (!d.empty()) run.fail(what + ": returned OK and " + d);
      if (s != FERRUM_STATUS_OK) run.fail(what + ": returned OK, then sync failed: " + status_name(s));
      c.release_outputs();
    } else if (st > 0 && refused(static_cast<ferrum_status>(st), c.allocates())) {
      const std::string d = c.damage(false);
      if (!d.empty()) run.fail(what + ": returned " + status_name(st) + " but " + d);
    } else if (st < 0) {
      run.fail(what + ": the facade let an exception other than ferrum::Error out: " + message);
    } else {
      run.fail(what + ": returned " + status_name(st) + " (" + message +
               "); expected INVALID_ARGUMENT or UNSUPPORTED");
    }
  }
  if (!baseline_refused.empty() && !run.failed())
    throw Error(ErrorCode::unsupported, name + ": the kit's valid baseline call was refused" + via + " (" +
                                            baseline_refused + "), so its " + std::to_string(tried) +
                                            " hostile calls, all refused with nothing written, prove little");
}

// One case per op and size field ("hostile m, raw slot"), and one per op for the products
// ("wrapping products, raw slot"): a crash names the op, the field and (its step) the value.
const bool registered = [] {
  for (const gen::OpFields& op : gen::kOps) {
    int sizes = 0;
    const bool facade = has_facade_method(op.id);
    for (const gen::Field* f : oc::fields_of(op))
      if (is_size(*f)) {
        ++sizes;
        const std::string field = f->name;
        register_case({op.name, "hostile " + field + ", raw slot", kF32Only,
                       [&op, field](Run& run) { overflow(run, op, field, Path::raw); }, "overflow"});
        if (facade)
          register_case({op.name, "hostile " + field + ", facade", kF32Only,
                         [&op, field](Run& run) { overflow(run, op, field, Path::facade); }, "overflow"});
      }
    if (sizes >= 2) {
      register_case({op.name, "wrapping products, raw slot", kF32Only,
                     [&op](Run& run) { overflow(run, op, std::string(), Path::raw); }, "overflow"});
      if (facade)
        register_case({op.name, "wrapping products, facade", kF32Only,
                       [&op](Run& run) { overflow(run, op, std::string(), Path::facade); }, "overflow"});
    }
  }
  return true;
}();

}  // namespace
