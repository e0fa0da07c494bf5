// ferrum conformance kit — runs op × dtype × shape-class cases on ANY plugin against the
// independent float64 references of conformance/ref (never against another plugin).
//
// A case is registered once and runs on every plugin:
//
//   FERRUM_CONFORMANCE_CASE("rms_norm", "odd dim, 1 token", kActDtypes) {
//     const uint64_t T = 1, D = 129;
//     auto x = run.random(T * D), w = run.random(D, 0.5, 1.5);
//     ferrum::Buffer bx = run.upload(x), bw = run.upload(w);
//     ferrum::Buffer out = run.output(T * D);                 // poisoned, with a poisoned guard
//     run.ctx.rms_norm({.x = bx, .w = bw, .eps = 1e-6f, .out = out, .tokens = T, .dim = D});
//     std::vector<double> ref;
//     ferrum::ref::rms_norm(run.values(x), run.values(w), 1e-6f, ref, T, D);
//     run.check("out", out, ref, /*row_len=*/D);              // F class of run.dtype, per row too
//   }
//
// Inside the body `run` is a ferrum::conformance::Run&. A ferrum::Error with code `unsupported`
// escaping the body makes the outcome "unsupported" (an honest NULL slot or UNSUPPORTED status);
// any other exception, or a failed check, makes it "fail".
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ferrum/ferrum.hpp>

namespace ferrum::conformance {

inline const std::vector<Dtype> kActDtypes = {Dtype::f32, Dtype::f16, Dtype::bf16};
inline const std::vector<Dtype> kF32Only = {Dtype::f32};

// pass / fail / unsupported as a case body ends; crash: the plugin ended the process running the
// case (signal, abort, exit) — the isolated runner reports it and carries on with the next case.
enum class Status { pass, fail, unsupported, crash };
const char* to_string(Status s) noexcept;

// What a case body works with: the plugin under test, the run's activation dtype, seeded inputs,
// poisoned outputs with guard regions, and the comparison rules of docs/spec.md §0.13.
class Run {
 public:
  Run(Backend& backend, Context& ctx, Dtype dtype, uint64_t seed);

  Backend& backend;
  Context& ctx;   // created with `dtype` as its default activation dtype
  Dtype dtype;    // the activation dtype of this run

  // ---- inputs --------------------------------------------------------------------------------
  // n seeded values in [lo, hi), never all zero, already rounded to `dt` (default: run dtype),
  // i.e. exactly the values the buffer will hold. Each call draws a fresh stream.
  std::vector<double> random(uint64_t n, double lo = -1.0, double hi = 1.0, Dtype dt = Dtype::invalid);
  std::vector<uint32_t> random_ids(uint64_t n, uint32_t bound);
  // n seeded values normal(mean, stddev), rounded to `dt` (default: run dtype), never all zero.
  std::vector<double> normal(uint64_t n, double mean, double stddev, Dtype dt = Dtype::invalid);
  // The values as the reference must see them (identity; documents intent at call sites).
  const std::vector<double>& values(const std::vector<double>& v) const { return v; }
  // A buffer holding v converted exactly to `dt` (default: run dtype); v must be representable.
  Buffer upload(const std::vector<double>& v, Dtype dt = Dtype::invalid);
  Buffer upload_u32(const std::vector<uint32_t>& v);
  Buffer upload_i32(const std::vector<int32_t>& v);
  Buffer upload_i8(const std::vector<int8_t>& v);

  // ---- outputs -------------------------------------------------------------------------------
  // A buffer of n + guard elements of `dt` (default: run dtype), every element poisoned (a NaN
  // pattern for floats, 0xA5 bytes for integers): the op under test writes [0, n); check()
  // verifies the guard [n, n + guard) was not touched.
  Buffer output(uint64_t n, Dtype dt = Dtype::invalid, uint64_t guard = 64);
  // Poisons an existing buffer (all of it).
  void poison(Buffer& b);
  // Elements [0, n) as doubles (exact for every dtype).
  std::vector<double> download(const Buffer& b, uint64_t n);
  std::vector<double> download(const Buffer& b) { return download(b, b.count()); }

  // ---- checks (a failed check records a message and marks the outcome "fail") ---------------
  // Compares out[0, ref.size()) with ref: class 'F' (relative L2 per tensor and per row of
  // row_len, tolerance of out's dtype, no NaN/Inf where ref is finite) or 'E' (bitwise; -0 == +0
  // when zero_sign_agnostic). Then checks the guard region after ref.size() (if the buffer has
  // one) is still poisoned.
  void check(const std::string& what, const Buffer& out, const std::vector<double>& ref, uint64_t row_len,
             char cls = 'F', bool zero_sign_agnostic = false);
  // The same on values already downloaded (no guard check).
  void check_values(const std::string& what, const std::vector<double>& out, const std::vector<double>& ref,
                    uint64_t row_len, Dtype dt, char cls = 'F', bool zero_sign_agnostic = false);
  // Elements [from, to) of `b` still hold the poison (untouched by the op).
  void check_untouched(const std::string& what, const Buffer& b, uint64_t from, uint64_t to);
  // `fn` must throw ferrum::Error with `code` (and, when non-empty, a message containing `needle`).
  void expect_error(const std::string& what, ErrorCode code, const std::function<void()>& fn,
                    const std::string& needle = {});
  void fail(const std::string& message);
  // Names the step the case is about to take (e.g. "m = 2^64-1, raw slot"): when the plugin
  // ends the process inside it, the isolated runner reports the case with this step and runs
  // the case again in a fresh process, skipping every step up to that one. False: skip this
  // step (it ran before the crash); the case must then not take it.
  [[nodiscard]] bool step(const std::string& what);
  bool failed() const noexcept { return !failures_.empty(); }
  const std::vector<std::string>& failures() const noexcept { return failures_; }
  uint64_t seed() const noexcept { return seed_; }
  // Steps to skip (a run resumed after a crash; set by run_case).
  void skip_steps(uint64_t n) noexcept { skip_ = n; }

 private:
  uint64_t seed_;
  uint64_t steps_ = 0, skip_ = 0;
  uint64_t stream_ = 0;
  std::vector<std::string> failures_;
  // Buffers made by output(): handle -> elements the op may write (the guard follows).
  std::map<const void*, uint64_t> guarded_;
};

struct Case {
  std::string op;              // op name of the ABI (filters, reports)
  std::string name;            // shape class, e.g. "gqa4 decode hd128 window"
  std::vector<Dtype> dtypes;   // activation dtypes it runs with
  std::function<void(Run&)> body;
  // The family the case is selected by (--family): empty = the op's ABI family (family_of);
  // "overflow" (hostile size arguments), "contract" (ABI-contract rules every plugin is held
  // to) or "large" (shapes that reach tensor-core, split-K and long-context paths; selected
  // only with Options::large or when the family glob names it).
  std::string family;
};

// Registers a case (used by FERRUM_CONFORMANCE_CASE at static-initialisation time).
bool register_case(Case c);
const std::vector<Case>& cases();

#define FERRUM_CONFORMANCE_CAT2(a, b) a##b
#define FERRUM_CONFORMANCE_CAT(a, b) FERRUM_CONFORMANCE_CAT2(a, b)
#define FERRUM_CONFORMANCE_CASE(op, name, dtypes) FERRUM_CONFORMANCE_CASE_IN("", op, name, dtypes)
// The same in a family of the kit's own ("contract", "large", ...).
#define FERRUM_CONFORMANCE_CASE_IN(family, op, name, dtypes)                                        \
  static void FERRUM_CONFORMANCE_CAT(ferrum_conformance_case_, __LINE__)(::ferrum::conformance::Run&); \
  static const bool FERRUM_CONFORMANCE_CAT(ferrum_conformance_reg_, __LINE__) =                     \
      ::ferrum::conformance::register_case(                                                         \
          {op, name, dtypes, &FERRUM_CONFORMANCE_CAT(ferrum_conformance_case_, __LINE__), family}); \
  static void FERRUM_CONFORMANCE_CAT(ferrum_conformance_case_, __LINE__)(::ferrum::conformance::Run & run)

// The ABI family of an op name ("dense", "attention", "paged_kv", ...; ferrum::op_family), or
// "other" for a name that is not an op of the ABI.
std::string family_of(const std::string& op);

// The family a case is selected by (Case::family, else family_of(op)).
std::string family_of(const Case& c);

struct Options {
  std::string op_glob = "*";       // shell glob over op names
  std::string family_glob = "*";   // shell glob over family_of(case)
  std::string name_glob = "*";     // shell glob over case names
  std::vector<Dtype> dtypes;       // empty = every dtype a case lists
  uint64_t seed = 20261126;
  bool large = false;              // also the "large" family when the family glob is "*"
  uint32_t timeout_s = 300;        // run_isolated: a case silent this long is killed (a hang)
};

struct Outcome {
  std::string op, name, family;
  Dtype dtype = Dtype::invalid;
  Status status = Status::pass;
  std::string message;             // failures joined, or the unsupported / crash reason
  double seconds = 0;
  // The op's slot is NULL in the plugin: what ran was the facade's composition of other ops,
  // which is not the plugin's own pass (reported apart, never counted for the plugin).
  bool composed = false;
};

// The cases matching the op / family / name globs (registration order).
std::vector<const Case*> select_cases(const Options& options);

// One case on one dtype in this process (a fresh context; never throws for a plugin failure);
// `skip_steps`: Run::step answers false for the first that many steps (a resumed case).
Outcome run_case(Backend& backend, const Case& c, Dtype dtype, uint64_t seed, uint64_t skip_steps = 0);

// ---- strictness (kit_strict.cpp) -------------------------------------------------------------
// The slots a plugin must fill: for every plugin, each slot of the memory and context families
// whose NULL-slot rule is "required" in the op registry, and the "required" slots of any other
// family whose table the plugin provides; for the project's own plugins (named cpu / cuda) also
// every slot marked `req` for them. One failed outcome (name "required slot present") per missing
// slot whose op matches the options' op and family globs.
std::vector<Outcome> required_slot_outcomes(const ferrum_plugin_api* api, const Options& options);
// True when the op's slot is filled in the plugin's table (ferrum::common::find_slot).
bool slot_filled(const ferrum_plugin_api* api, const std::string& op);

// Totals of a run, and the verdict of the strict kit.
struct Totals {
  int passed = 0;        // passes on slots the plugin fills
  int composed = 0;      // passes of ops the facade composed (slot NULL): not the plugin's
  int failed = 0;        // failed outcomes (required slots included)
  int crashed = 0;
  int unsupported = 0;
};
Totals totals(const std::vector<Outcome>& outcomes);
// Empty when the run passes the strict kit, else why not: a failure or crash, or no pass at all
// on the plugin's own slots (a hollow plugin passes nothing).
std::string strict_verdict(const Totals& t);

// Where Run::step reports each step it lets run: its number (from 1) and name (the isolated
// runner's child sets it; empty: nowhere).
void set_step_hook(std::function<void(uint64_t, const std::string&)> hook);

// ---- isolation (kit_isolate.cpp) -------------------------------------------------------------
// Runs the matching cases in child processes: each child loads the plugin (`spec` as for
// Backend::load) and runs cases until done or the plugin kills it; the case that was running
// is then reported with Status::crash (signal or exit status; a case that reports nothing for
// Options::timeout_s seconds is killed and reported as hung) and a fresh child carries on with
// the next one. `required_slot_outcomes` are included. Throws ferrum::Error(load_failed) when
// the plugin cannot be loaded at all (the child's message), with the crash named when loading
// itself kills the child.
struct PluginInfo {
  std::string name, version, abi, path, device;
};
std::vector<Outcome> run_isolated(const std::string& spec, const Options& options,
                                  const std::function<void(const Outcome&, size_t done, size_t total)>& on_outcome,
                                  PluginInfo* info);

// Runs every matching case on `backend` (a fresh context per case and dtype). `on_outcome`, when
// set, is called after each outcome (progress output). Never throws for a plugin failure.
std::vector<Outcome> run_cases(Backend& backend, const Options& options);
std::vector<Outcome> run_cases(Backend& backend, const Options& options,
                               const std::function<void(const Outcome&)>& on_outcome);

}  // namespace ferrum::conformance
