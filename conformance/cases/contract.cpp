// Conformance cases: the contract family — rules of the C ABI every plugin is held to, whatever
// ops it serves. Per op (every op of the registry whose slot the plugin fills, from the generated
// field list): an args struct_size below the 1.0 size is INVALID_ARGUMENT with nothing written; a
// valid call leaves its inputs unchanged and its guard regions intact; a larger struct_size (a
// newer host) is accepted with the extra bytes ignored; query_support agrees with the call.
// Plugin-wide: activation_dtype 0 means the plugin's default, error_detail truncates and reports
// the size it needs, device_props refuses a smaller struct and leaves a larger one's tail alone,
// and contexts on several threads at once give the single-thread answers.
#include <ferrum/conformance/kit.hpp>

#include "src/case_util.hpp"
#include "src/op_call.hpp"

#include <ferrum/common/op_info_gen.hpp>

#include <cstring>
#include <thread>

using namespace ferrum;
using namespace ferrum::conformance;
using namespace ferrum::conformance::util;

namespace {

namespace oc = ferrum::conformance::opcall;

std::string status_name(ferrum_status st) { return st == FERRUM_STATUS_OK ? "OK" : to_string(error_code_of(st)); }

const ferrum_plugin_api* api_of_run(Run& run) { return run.backend.api(); }

// query_support of `args`, or -1 when the plugin has no query_support entry.
int32_t query(Run& run, const gen::OpFields& op, const std::vector<uint8_t>& args, std::string& reason) {
  const ferrum_plugin_api* api = api_of_run(run);
  if (!api->query_support) return -1;
  char buf[512] = {};
  const ferrum_status st = api->query_support(run.ctx.get(), op.id, args.data(), buf, sizeof buf);
  buf[sizeof buf - 1] = 0;
  reason = buf;
  return st;
}

// Judges a query_support answer `q` (asked BEFORE the call, so a call that changes the context's
// state — a capture begun, a timer started — cannot change the answer) against the call's status.
void check_query(Run& run, const gen::OpFields& op, const std::string& what, int32_t q, const std::string& reason,
                 ferrum_status call_status) {
  if (q < 0) return;
  const std::string head = std::string(op.name) + " " + what + ": query_support answered " +
                           status_name(static_cast<ferrum_status>(q)) + " but the call returned " +
                           status_name(call_status);
  if (q == FERRUM_STATUS_OK && call_status == FERRUM_STATUS_UNSUPPORTED) run.fail(head);
  if (q == FERRUM_STATUS_UNSUPPORTED && call_status != FERRUM_STATUS_UNSUPPORTED) run.fail(head + " (" + reason + ")");
  if (q == FERRUM_STATUS_INVALID_ARGUMENT && call_status != FERRUM_STATUS_INVALID_ARGUMENT)
    run.fail(head + " (" + reason + ")");
  if (q != FERRUM_STATUS_OK && q != FERRUM_STATUS_UNSUPPORTED && q != FERRUM_STATUS_INVALID_ARGUMENT)
    run.fail(std::string(op.name) + " " + what + ": query_support returned " +
             status_name(static_cast<ferrum_status>(q)) + "; it answers OK, UNSUPPORTED or INVALID_ARGUMENT");
}

void op_contract(Run& run, const gen::OpFields& op) {
  oc::OpCall c(run, op);  // NULL slot: unsupported
  const std::string name = op.name;
  const common::OpInfo* info = common::op_info(op.id);
  const uint64_t v1_0 = info ? info->args_size_v1_0 : op.size;
  const std::vector<uint8_t> base = c.args();

  // struct_size below the 1.0 size: INVALID_ARGUMENT, nothing written.
  for (uint64_t small : {v1_0 - 8, uint64_t{0}}) {
    if (!run.step(name + " with struct_size " + std::to_string(small))) continue;
    c.reset();
    std::vector<uint8_t> a = base;
    std::memcpy(a.data(), &small, sizeof small);
    std::string reason;
    const int32_t q = query(run, op, a, reason);
    const ferrum_status st = c.call_raw(a);
    if (st != FERRUM_STATUS_INVALID_ARGUMENT)
      run.fail(name + " with struct_size " + std::to_string(small) + " (the 1.0 size is " + std::to_string(v1_0) +
               "): returned " + status_name(st) + ", expected INVALID_ARGUMENT");
    else if (const std::string d = c.damage(false); !d.empty())
      run.fail(name + " with struct_size " + std::to_string(small) + ": " + d);
    if (st == FERRUM_STATUS_OK) c.release_outputs();
    check_query(run, op, "with struct_size " + std::to_string(small), q, reason, st);
  }

  // The baseline: inputs unchanged, guards intact.
  if (!run.step(name + " baseline call")) return;  // resumed after a crash in it or later: done
  c.reset();
  std::string reason;
  const int32_t q = query(run, op, base, reason);
  const ferrum_status st = c.call_raw(base);
  check_query(run, op, "baseline", q, reason, st);
  if (st != FERRUM_STATUS_OK) {
    if (run.failed()) return;
    throw Error(ErrorCode::unsupported, name + ": the kit's baseline call was refused (" + status_name(st) + ": " +
                                            c.detail() + "); only the struct_size floor was judged");
  }
  c.sync();
  if (const std::string d = c.damage(true); !d.empty()) run.fail(name + " baseline call: " + d);
  c.release_outputs();

  // A newer host's larger struct: accepted, the extra bytes (all 0xFF) ignored.
  std::vector<uint8_t> big = base;
  big.resize(base.size() + 64, 0xFF);
  const uint64_t big_size = big.size();
  std::memcpy(big.data(), &big_size, sizeof big_size);
  if (!run.step(name + " with struct_size " + std::to_string(big_size))) return;
  c.reset();
  const ferrum_status st_big = c.call_raw(big);
  if (st_big != FERRUM_STATUS_OK)
    run.fail(name + " with a larger struct_size " + std::to_string(big_size) + " (extra bytes 0xFF): returned " +
             status_name(st_big) + " (" + c.detail() + "), expected OK with the extra bytes ignored");
  else {
    c.sync();
    if (const std::string d = c.damage(true); !d.empty()) run.fail(name + " with a larger struct_size: " + d);
    c.release_outputs();
  }
}

// Ops on a live object of their own (release, destroy, timers) are left to their families' cases.
bool handle_only(const gen::OpFields& op) {
  const std::string name = op.name;
  if (name.size() > 8 && name.compare(name.size() - 8, 8, "_release") == 0) return true;
  // The capture brackets change the context's state for every later call (the graph family's
  // own cases cover them, in order).
  if (name == "begin_graph_capture" || name == "end_graph_capture") return true;
  // comm_init gives the context a communicator, and a second one is refused (§10): its family's
  // own cases (cases/collective.cpp) cover it.
  if (name == "comm_init") return true;
  for (const gen::Field* f : oc::fields_of(op))
    if (f->kind == gen::Kind::handle) return true;
  return false;
}

const bool registered = [] {
  for (const gen::OpFields& op : gen::kOps) {
    if (handle_only(op)) continue;
    register_case({op.name, "struct_size floor and growth, inputs unchanged, query_support agrees", kF32Only,
                   [&op](Run& run) { op_contract(run, op); }, "contract"});
  }
  return true;
}();

// ------------------------------------------------------------------------------ plugin-wide

FERRUM_CONFORMANCE_CASE_IN("contract", "new_context", "activation_dtype 0 means the plugin's default", kF32Only) {
  const ferrum_plugin_api* api = run.backend.api();
  const ferrum_op_fn nc = common::find_slot(api, FERRUM_OP_NEW_CONTEXT);
  const ferrum_op_fn info = common::find_slot(api, FERRUM_OP_CONTEXT_INFO);
  const ferrum_op_fn destroy = common::find_slot(api, FERRUM_OP_CONTEXT_DESTROY);
  if (!nc || !destroy) throw Error(ErrorCode::unsupported, "new_context / context_destroy slot NULL");
  ferrum_context* ctx = nullptr;
  ferrum_new_context_args a{};
  a.struct_size = sizeof a;
  a.device_ordinal = run.backend.selected_device();
  a.activation_dtype = 0;
  a.context = &ctx;
  const ferrum_status st = nc(nullptr, &a);
  if (st != FERRUM_STATUS_OK || !ctx) {
    run.fail(std::string("new_context with activation_dtype 0: returned ") + status_name(st) +
             ", expected OK (0 means the plugin's default)");
    return;
  }
  if (info) {
    uint64_t ordinal = 0, slots = 0, items = 0;
    int32_t dt = -1;
    ferrum_context_info_args ia{};
    ia.struct_size = sizeof ia;
    ia.device_ordinal = &ordinal;
    ia.activation_dtype = &dt;
    ia.batched_slots = &slots;
    ia.batched_items = &items;
    const ferrum_status s2 = info(ctx, &ia);
    if (s2 != FERRUM_STATUS_OK) run.fail("context_info on a default-dtype context: " + status_name(s2));
    else if (dt != FERRUM_DTYPE_F32 && dt != FERRUM_DTYPE_F16 && dt != FERRUM_DTYPE_BF16)
      run.fail("context_info of a context made with activation_dtype 0 reports activation dtype " +
               std::to_string(dt) + ", expected the plugin's default (F32, F16 or BF16), never 0");
  }
  ferrum_context_destroy_args d{};
  d.struct_size = sizeof d;
  d.context = ctx;
  destroy(nullptr, &d);
}

FERRUM_CONFORMANCE_CASE_IN("contract", "error_detail", "truncation, NUL termination and the needed size", kF32Only) {
  const ferrum_plugin_api* api = run.backend.api();
  const ferrum_op_fn alloc = common::find_slot(api, FERRUM_OP_ALLOC_TYPED);
  if (!api->error_detail || !alloc) throw Error(ErrorCode::unsupported, "no error_detail or alloc_typed");
  // A call that must fail on the context: dtype 0 is never valid.
  ferrum_buffer* out = nullptr;
  ferrum_alloc_typed_args a{};
  a.struct_size = sizeof a;
  a.dtype = 0;
  a.n = 4;
  a.buffer = &out;
  const ferrum_status st = alloc(run.ctx.get(), &a);
  if (st != FERRUM_STATUS_INVALID_ARGUMENT) {
    run.fail("alloc_typed with dtype 0: returned " + status_name(st) + ", expected INVALID_ARGUMENT");
    return;
  }
  std::vector<char> full(4096, 'x');
  uint64_t needed = 0;
  if (api->error_detail(run.ctx.get(), full.data(), full.size(), &needed) != FERRUM_STATUS_OK) {
    run.fail("error_detail with a 4096-byte buffer failed");
    return;
  }
  const std::string msg(full.data(), strnlen(full.data(), full.size()));
  if (msg.empty()) run.fail("error_detail after a failed alloc_typed: empty message");
  if (needed != msg.size() + 1)
    run.fail(fmt("error_detail: needed = %llu, expected strlen(message) + 1 = %zu", (unsigned long long)needed,
                 msg.size() + 1));
  if (msg.find("alloc_typed") == std::string::npos)
    run.fail("error_detail: the message does not name the op alloc_typed: " + msg);
  // Truncated to 5 bytes: the first 4 characters and a NUL, nothing written after.
  char small[16];
  std::memset(small, 'Z', sizeof small);
  uint64_t needed2 = 0;
  if (api->error_detail(run.ctx.get(), small, 5, &needed2) != FERRUM_STATUS_OK) run.fail("error_detail with cap 5 failed");
  if (std::string(small, 4) != msg.substr(0, 4) || small[4] != '\0')
    run.fail("error_detail with cap 5: expected the first 4 characters of the message and a NUL");
  for (size_t i = 5; i < sizeof small; ++i)
    if (small[i] != 'Z') {
      run.fail(fmt("error_detail with cap 5 wrote byte %zu past the buffer", i));
      break;
    }
  if (needed2 != needed) run.fail("error_detail with cap 5: needed differs from the full call's");
  // No buffer at all: only the needed size.
  uint64_t needed3 = 0;
  if (api->error_detail(run.ctx.get(), nullptr, 0, &needed3) != FERRUM_STATUS_OK || needed3 != needed)
    run.fail("error_detail(buf NULL, cap 0) must succeed and report the same needed size");
}

FERRUM_CONFORMANCE_CASE_IN("contract", "device_props", "a smaller struct is refused, a larger one's tail untouched", kF32Only) {
  const ferrum_plugin_api* api = run.backend.api();
  if (!api->device_props) throw Error(ErrorCode::unsupported, "no device_props");
  const uint64_t ordinal = run.backend.selected_device();
  for (uint64_t size : {uint64_t{FERRUM_DEVICE_PROPS_SIZE_V1_0 - 8}, uint64_t{8}}) {
    std::vector<uint8_t> bytes(sizeof(ferrum_device_props) + 64, 0xA5);
    std::memcpy(bytes.data(), &size, sizeof size);
    const ferrum_status st = api->device_props(ordinal, reinterpret_cast<ferrum_device_props*>(bytes.data()));
    if (st != FERRUM_STATUS_INVALID_ARGUMENT)
      run.fail(fmt("device_props with struct_size %llu (the 1.0 size is %d): returned %s, expected "
                   "INVALID_ARGUMENT",
                   (unsigned long long)size, FERRUM_DEVICE_PROPS_SIZE_V1_0, status_name(st).c_str()));
    for (size_t i = size; i < bytes.size(); ++i)
      if (bytes[i] != 0xA5) {
        run.fail(fmt("device_props with struct_size %llu wrote byte %zu, past the struct", (unsigned long long)size, i));
        break;
      }
  }
  std::vector<uint8_t> bytes(sizeof(ferrum_device_props) + 64, 0xA5);
  const uint64_t size = bytes.size();
  std::memcpy(bytes.data(), &size, sizeof size);
  const ferrum_status st = api->device_props(ordinal, reinterpret_cast<ferrum_device_props*>(bytes.data()));
  if (st != FERRUM_STATUS_OK) run.fail("device_props with a larger struct_size: returned " + status_name(st));
  for (size_t i = sizeof(ferrum_device_props); i < bytes.size(); ++i)
    if (bytes[i] != 0xA5) {
      run.fail(fmt("device_props with a larger struct wrote byte %zu, past the fields of its ABI", i));
      break;
    }
}

// Four threads, each on a context of its own: uploads, copy_slice and (where the plugin has it)
// add_inplace, read back and compared with the same work done on one thread.
FERRUM_CONFORMANCE_CASE_IN("contract", "new_context", "contexts on 4 threads at once give the single-thread answers", kF32Only) {
  constexpr int kThreads = 4, kRounds = 16;
  constexpr uint64_t n = 1031;
  const bool add = common::find_slot(run.backend.api(), FERRUM_OP_ADD_INPLACE) != nullptr;
  std::vector<vec> xs, ys;
  for (int t = 0; t < kThreads; ++t) {
    xs.push_back(run.random(n, -1.0, 1.0));
    ys.push_back(run.random(n, -1.0, 1.0));
  }
  // The single-thread answers, on the run's context.
  std::vector<vec> want(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    Buffer x = run.upload(xs[t]), y = run.upload(ys[t]);
    Buffer o = run.output(n, Dtype::invalid, 0);
    run.ctx.copy_slice({.src = x, .src_offset = 0, .dst = o, .dst_offset = 0, .len = n});
    if (add) run.ctx.add_inplace(o, y, n);
    want[t] = run.download(o, n);
  }
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      try {
        Context ctx = run.backend.create_context({}, run.dtype);
        for (int r = 0; r < kRounds; ++r) {
          const auto xb = ft::encode(raw(run.dtype), xs[t]), yb = ft::encode(raw(run.dtype), ys[t]);
          Buffer x = ctx.from_slice_typed(run.dtype, xb.data(), n), y = ctx.from_slice_typed(run.dtype, yb.data(), n);
          Buffer o = ctx.alloc_typed(run.dtype, n);
          ctx.copy_slice({.src = x, .src_offset = 0, .dst = o, .dst_offset = 0, .len = n});
          if (add) ctx.add_inplace(o, y, n);
          std::vector<uint8_t> got(n * ft::dtype_size(raw(run.dtype)));
          ctx.read_typed({.src = o, .dtype = run.dtype, .len = n, .data = got.data()});
          if (got != ft::encode(raw(run.dtype), want[t])) {
            errors[t] = fmt("thread %d round %d: the result differs from the single-thread answer", t, r);
            return;
          }
        }
      } catch (const std::exception& e) {
        errors[t] = fmt("thread %d: %s", t, e.what());
      }
    });
  for (auto& th : threads) th.join();
  for (const auto& e : errors)
    if (!e.empty()) run.fail(e);
}

}  // namespace

