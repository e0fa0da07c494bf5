// ferrum conformance kit — the Run helpers, the case registry and the runner (kit.hpp).
//
// Everything a case checks goes through conformance/ref: inputs are generated and rounded by
// rng.hpp / quantize.hpp, uploaded bit for bit (encode -> from_slice_typed), read back bit for bit
// (read_typed -> decode) and judged by compare.hpp against the float64 references. The plugin
// under test is never used as its own reference.
#include <ferrum/conformance/kit.hpp>

#include "ref/compare.hpp"
#include "ref/quantize.hpp"
#include "ref/rng.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <unordered_map>

namespace ferrum::conformance {

namespace ft = ferrum::testing;

namespace {

int32_t raw(Dtype d) { return static_cast<int32_t>(d); }

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  uint64_t z = x;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s, uint64_t h = 0xCBF29CE484222325ull) {
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return (h ^ 0xFF) * 0x100000001B3ull;  // separator, so ("ab","c") != ("a","bc")
}

// A valid host pointer for transfers of 0 elements (an empty std::vector hands out NULL; how the
// facade treats NULL with length 0 is a memory-family case of its own).
const uint8_t kDummy[16] = {};
const void* host_ptr(const void* p) { return p ? p : kDummy; }

bool glob_match(const std::string& pattern, const std::string& text) {
  return pattern.empty() || pattern == "*" || fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

std::vector<Case>& registry() {
  static std::vector<Case> all;  // function-local: safe from static-initialisation order
  return all;
}

}  // namespace

const char* to_string(Status s) noexcept {
  switch (s) {
    case Status::pass: return "pass";
    case Status::fail: return "fail";
    case Status::unsupported: return "unsupported";
    case Status::crash: return "crash";
  }
  return "unknown";
}

// ============================================================================ Run

Run::Run(Backend& backend_, Context& ctx_, Dtype dtype_, uint64_t seed)
    : backend(backend_), ctx(ctx_), dtype(dtype_), seed_(seed) {}

std::vector<double> Run::random(uint64_t n, double lo, double hi, Dtype dt) {
  const Dtype d = dt == Dtype::invalid ? dtype : dt;
  if (!ft::is_float_dtype(raw(d)))
    throw std::invalid_argument("Run::random: " + std::string(ferrum::to_string(d)) + " is not a float dtype");
  return ft::uniform_dtype(raw(d), n, lo, hi, splitmix64(seed_ ^ splitmix64(++stream_)));
}

std::vector<double> Run::normal(uint64_t n, double mean, double stddev, Dtype dt) {
  const Dtype d = dt == Dtype::invalid ? dtype : dt;
  if (!ft::is_float_dtype(raw(d)))
    throw std::invalid_argument("Run::normal: " + std::string(ferrum::to_string(d)) + " is not a float dtype");
  return ft::normal_dtype(raw(d), n, mean, stddev, splitmix64(seed_ ^ splitmix64(++stream_)));
}

std::vector<uint32_t> Run::random_ids(uint64_t n, uint32_t bound) {
  return ft::random_ids(n, bound, splitmix64(seed_ ^ splitmix64(++stream_)));
}

Buffer Run::upload(const std::vector<double>& v, Dtype dt) {
  const Dtype d = dt == Dtype::invalid ? dtype : dt;
  if (ft::is_float_dtype(raw(d))) {
    for (size_t i = 0; i < v.size(); ++i) {
      const double r = ft::round_to(raw(d), v[i]);
      if (!(r == v[i] || (std::isnan(r) && std::isnan(v[i]))))
        throw std::invalid_argument("Run::upload: element " + std::to_string(i) + " (" + std::to_string(v[i]) +
                                    ") is not exactly representable in " + std::string(ferrum::to_string(d)) +
                                    " (a case bug: generate inputs with run.random or round them first)");
    }
  }
  const auto bytes = ft::encode(raw(d), v);  // integers: throws unless exact and in range
  return ctx.from_slice_typed(d, host_ptr(bytes.data()), v.size());
}

Buffer Run::upload_u32(const std::vector<uint32_t>& v) {
  return ctx.from_slice_typed(Dtype::u32, host_ptr(v.data()), v.size());
}
Buffer Run::upload_i32(const std::vector<int32_t>& v) {
  return ctx.from_slice_typed(Dtype::i32, host_ptr(v.data()), v.size());
}
Buffer Run::upload_i8(const std::vector<int8_t>& v) {
  return ctx.from_slice_typed(Dtype::i8, host_ptr(v.data()), v.size());
}

Buffer Run::output(uint64_t n, Dtype dt, uint64_t guard) {
  const Dtype d = dt == Dtype::invalid ? dtype : dt;
  const auto bytes = ft::poison_bytes(raw(d), n + guard);
  Buffer b = ctx.from_slice_typed(d, host_ptr(bytes.data()), n + guard);
  guarded_[b.get()] = n;
  return b;
}

void Run::poison(Buffer& b) {
  if (b.count() == 0) return;
  const auto bytes = ft::poison_bytes(raw(b.dtype()), b.count());
  ctx.write_typed({.dst = b, .dtype = b.dtype(), .data = bytes.data(), .data_len = b.count()});
}

std::vector<double> Run::download(const Buffer& b, uint64_t n) {
  if (n == 0) return {};
  std::vector<uint8_t> bytes(n * ft::dtype_size(raw(b.dtype())));
  ctx.read_typed({.src = b, .dtype = b.dtype(), .len = n, .data = bytes.data()});
  return ft::decode(raw(b.dtype()), bytes);
}

void Run::check(const std::string& what, const Buffer& out, const std::vector<double>& ref, uint64_t row_len, char cls,
                bool zero_sign_agnostic) {
  if (ref.size() > out.count()) {
    fail(what + ": the reference has " + std::to_string(ref.size()) + " elements, the buffer only " +
         std::to_string(out.count()) + " (a case bug)");
    return;
  }
  check_values(what, download(out, ref.size()), ref, row_len, out.dtype(), cls, zero_sign_agnostic);
  // The guard of a buffer made by output(): stale entries (a released handle reused by a later
  // allocation) are told apart by the element count.
  const auto it = guarded_.find(out.get());
  if (it != guarded_.end() && it->second <= out.count()) {
    const uint64_t from = std::max<uint64_t>(it->second, ref.size());
    if (from < out.count()) check_untouched(what + " guard region", out, from, out.count());
  }
}

void Run::check_values(const std::string& what, const std::vector<double>& out, const std::vector<double>& ref,
                       uint64_t row_len, Dtype dt, char cls, bool zero_sign_agnostic) {
  try {
    const auto r = ft::compare(out, ref, raw(dt), row_len, cls, zero_sign_agnostic);
    if (!r.ok) fail(what + ": " + r.message);
  } catch (const std::exception& e) {
    fail(what + ": cannot compare: " + e.what());
  }
}

void Run::check_untouched(const std::string& what, const Buffer& b, uint64_t from, uint64_t to) {
  if (to > b.count() || from > to) {
    fail(what + ": range [" + std::to_string(from) + ", " + std::to_string(to) + ") outside the buffer of " +
         std::to_string(b.count()) + " elements (a case bug)");
    return;
  }
  if (from == to) return;
  std::vector<uint8_t> bytes(b.count() * ft::dtype_size(raw(b.dtype())));
  ctx.read_typed({.src = b, .dtype = b.dtype(), .len = b.count(), .data = bytes.data()});
  uint64_t first = 0;
  if (!ft::all_poison(raw(b.dtype()), bytes, from, to - from, &first)) {
    char bits[32];
    std::snprintf(bits, sizeof bits, "0x%x", ft::element_bits(raw(b.dtype()), bytes, first));
    fail(what + ": element " + std::to_string(first) + " of [" + std::to_string(from) + ", " + std::to_string(to) +
         ") was overwritten (bits " + bits + ", must still hold the poison)");
  }
}

void Run::expect_error(const std::string& what, ErrorCode code, const std::function<void()>& fn,
                       const std::string& needle) {
  try {
    fn();
  } catch (const Error& e) {
    // A plugin without the op at all (NULL slot) cannot be judged on its argument checks,
    // not even on an expected "unsupported" answer that must name an argument.
    if (e.code() == ErrorCode::unsupported &&
        std::string(e.what()).find("does not implement this op") != std::string::npos)
      throw;
    if (e.code() == code) {
      if (!needle.empty() && std::string(e.what()).find(needle) == std::string::npos)
        fail(what + ": the " + ferrum::to_string(code) + " message must name '" + needle + "', got: " + e.what());
      return;
    }
    // A plugin that cannot run the op at all cannot be judged on its argument checks.
    if (e.code() == ErrorCode::unsupported) throw;
    fail(what + ": expected ferrum::Error " + ferrum::to_string(code) + ", got " + ferrum::to_string(e.code()) + ": " +
         e.what());
    return;
  } catch (const std::exception& e) {
    fail(what + ": expected ferrum::Error " + ferrum::to_string(code) + ", got another exception: " + e.what());
    return;
  }
  fail(what + ": expected ferrum::Error " + ferrum::to_string(code) + ", the call succeeded");
}

void Run::fail(const std::string& message) { failures_.push_back(message); }

namespace {
std::function<void(uint64_t, const std::string&)>& step_hook() {
  static std::function<void(uint64_t, const std::string&)> hook;
  return hook;
}
}  // namespace

void set_step_hook(std::function<void(uint64_t, const std::string&)> hook) { step_hook() = std::move(hook); }

bool Run::step(const std::string& what) {
  if (++steps_ <= skip_) return false;
  if (step_hook()) step_hook()(steps_, what);
  return true;
}

// ============================================================================ registry

bool register_case(Case c) {
  registry().push_back(std::move(c));
  return true;
}

const std::vector<Case>& cases() { return registry(); }

std::string family_of(const std::string& op) {
  static const std::unordered_map<std::string, std::string> families = [] {
    std::unordered_map<std::string, std::string> m;
    for (int32_t id = 1; id < 4096; ++id) {
      const std::string_view name = op_name(static_cast<Op>(id));
      if (name == "unknown") {
        if (id > 1 && m.size() > 0) break;  // the op ids are dense
        continue;
      }
      m.emplace(std::string(name), std::string(op_family(static_cast<Op>(id))));
    }
    return m;
  }();
  const auto it = families.find(op);
  return it == families.end() ? "other" : it->second;
}

std::string family_of(const Case& c) { return c.family.empty() ? family_of(c.op) : c.family; }

std::vector<const Case*> select_cases(const Options& options) {
  std::vector<const Case*> out;
  for (const Case& c : cases()) {
    const std::string family = family_of(c);
    // The large family is slow on a CPU: only when asked for (--large, or a glob without '*'
    // that names it).
    if (family == "large" && !options.large && options.family_glob.find('*') != std::string::npos) continue;
    if (glob_match(options.op_glob, c.op) && glob_match(options.family_glob, family) &&
        glob_match(options.name_glob, c.name))
      out.push_back(&c);
  }
  return out;
}

// ============================================================================ runner

Outcome run_case(Backend& backend, const Case& c, Dtype dtype, uint64_t seed, uint64_t skip_steps) {
  Outcome o;
  o.op = c.op;
  o.name = c.name;
  o.family = family_of(c);
  o.dtype = dtype;
  const auto t0 = std::chrono::steady_clock::now();
  std::string unsupported;
  std::vector<std::string> failures;
  try {
    Context ctx = backend.create_context({}, dtype);
    const uint64_t case_seed =
        splitmix64(seed ^ fnv1a(std::string(ferrum::to_string(dtype)), fnv1a(c.name, fnv1a(c.op))));
    Run run(backend, ctx, dtype, case_seed);
    run.skip_steps(skip_steps);
    try {
      c.body(run);
      ctx.sync();  // asynchronous failures surface here
    } catch (const Error& e) {
      if (e.code() == ErrorCode::unsupported) unsupported = e.what();
      else run.fail(std::string("ferrum::Error ") + ferrum::to_string(e.code()) + ": " + e.what());
    } catch (const std::exception& e) {
      run.fail(std::string("exception: ") + e.what());
    }
    failures = run.failures();
  } catch (const Error& e) {  // the context itself
    if (e.code() == ErrorCode::unsupported) unsupported = std::string("context: ") + e.what();
    else failures.push_back(std::string("context: ferrum::Error ") + ferrum::to_string(e.code()) + ": " + e.what());
  } catch (const std::exception& e) {
    failures.push_back(std::string("exception: ") + e.what());
  }
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!failures.empty()) {
    o.status = Status::fail;
    o.message = join(failures, "; ");
  } else if (!unsupported.empty()) {
    o.status = Status::unsupported;
    o.message = unsupported;
  } else {
    o.status = Status::pass;
  }
  // A case of an op whose slot is NULL ran the facade's composition (or only its checks).
  o.composed = family_of(c.op) != "other" && !slot_filled(backend.api(), c.op);
  return o;
}

std::vector<Outcome> run_cases(Backend& backend, const Options& options,
                               const std::function<void(const Outcome&)>& on_outcome) {
  std::vector<Outcome> out;
  for (const Case* c : select_cases(options)) {
    for (Dtype d : c->dtypes) {
      if (!options.dtypes.empty() && std::find(options.dtypes.begin(), options.dtypes.end(), d) == options.dtypes.end())
        continue;
      out.push_back(run_case(backend, *c, d, options.seed));
      if (on_outcome) on_outcome(out.back());
    }
  }
  return out;
}

std::vector<Outcome> run_cases(Backend& backend, const Options& options) { return run_cases(backend, options, {}); }

}  // namespace ferrum::conformance
