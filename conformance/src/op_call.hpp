// ferrum conformance kit — generic calls of any op from the registry's field list
// (op_fields_gen.hpp): a baseline args struct with small valid sizes and buffers from the plugin
// (each with a poisoned guard region after its body), trials that patch fields, and the checks
// after a call (guards intact, inputs unchanged, nothing written by a refused call). Used by the
// overflow family and the ABI-contract family.
#pragma once

#include <ferrum/conformance/kit.hpp>

#include "src/op_fields_gen.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ferrum::conformance::opcall {

inline constexpr uint64_t kGuard = 64;        // guard elements after each buffer's body
inline constexpr uint64_t kShapeless = 4096;  // body of a buffer whose shape the kit cannot evaluate

// The registry's fields of `op` (nullptr: unknown op).
const gen::OpFields* op_fields(const std::string& op);
// minor: only the fields a plugin of ABI 1.<minor> knows (a later minor's fields stay at their
// default 0 in the kit's structs: the plugin ignores them, the facade refuses other values).
std::vector<const gen::Field*> fields_of(const gen::OpFields& op, uint32_t minor = ~0u);

// Evaluates a registry shape expression ("q_dim + 2·kv_dim", "ceil(valid_kv_len / block_size)")
// over `vars`; false when it names an unknown symbol or overflows.
bool eval(const std::string& expr, const std::map<std::string, uint64_t>& vars, uint64_t& out);

struct DeviceBuf {
  const gen::Field* field = nullptr;
  Buffer buf;
  uint64_t body = 0;              // elements the op may touch with the baseline sizes
  std::vector<uint8_t> initial;   // every byte of the buffer before each call
};

struct HostBuf {
  const gen::Field* field = nullptr;
  std::vector<uint8_t> bytes;
  uint64_t body = 0;              // bytes the op may write (hostout) with the baseline sizes
};

// One op ready to call: the baseline args and everything they point to.
class OpCall {
 public:
  // Builds the baseline for `op` on run.ctx (activation dtype run.dtype). Throws
  // ferrum::Error(unsupported) when the plugin's slot is NULL and `need_slot` (a raw call).
  OpCall(Run& run, const gen::OpFields& op, bool need_slot = true);
  ~OpCall();
  OpCall(const OpCall&) = delete;
  OpCall& operator=(const OpCall&) = delete;

  const gen::OpFields& op() const { return op_; }
  const std::vector<const gen::Field*>& fields() const { return fields_; }
  uint64_t baseline(const std::string& field) const;
  bool has(const std::string& field) const { return values_.count(field) != 0; }
  // Fields that size a host array an op returns (the facade's method allocates it).
  bool sizes_host_output(const std::string& field) const;
  // Whether a device buffer's shape names the field.
  bool in_shapes(const std::string& field) const;
  bool has_field(const std::string& field) const {
    for (const gen::Field* f : fields_)
      if (field == f->name) return true;
    return false;
  }
  // A copy of the baseline args struct (struct_size set), to patch.
  std::vector<uint8_t> args() const { return args_; }
  static void set_u64(std::vector<uint8_t>& args, const gen::Field& f, uint64_t v);

  // Restores every buffer and host area to its initial bytes.
  void reset();
  // Calls the plugin's raw slot with `args` (bytes of the args struct); the status.
  ferrum_status call_raw(const std::vector<uint8_t>& args);
  // Calls the facade's method of the op with `args`: OK, or the status of the ferrum::Error it
  // threw (its message in `message`); -1 when it let another exception out (named in `message`).
  int32_t call_facade(const std::vector<uint8_t>& args, std::string& message);
  // The plugin's detail message of the last failure on the context.
  std::string detail();
  // What the call did wrong, or "" when nothing: ok == true checks the guards, the inputs and
  // the host outputs' guards; ok == false checks that nothing at all was written.
  std::string damage(bool ok);
  // Releases whatever a successful call returned through hostout handles.
  void release_outputs();
  // Sync on the context (asynchronous failures); OK or the failure.
  ferrum_status sync();

  // Allocation ops may answer OUT_OF_MEMORY to a size nobody can allocate.
  bool allocates() const { return allocates_; }
  // Fields that size a host array the caller passes: a large but valid-looking value there is
  // the caller's lie (the plugin may read that many bytes), so only impossible values are tried.
  bool sizes_host_input(const std::string& field) const;

 private:
  void build();
  Run& run_;
  const gen::OpFields& op_;
  std::vector<const gen::Field*> fields_;
  ferrum_op_fn fn_ = nullptr;
  std::map<std::string, uint64_t> values_;
  std::vector<uint8_t> args_;
  std::vector<DeviceBuf> dev_;
  std::vector<HostBuf> host_;
  std::vector<Buffer> extra_;                 // buffers behind host handle arrays
  std::vector<std::vector<uint8_t>> blocks_;  // host blocks behind host pointer arrays
  std::vector<const void*> ptr_arrays_storage_;
  std::vector<std::unique_ptr<std::vector<const void*>>> ptr_arrays_;
  QWeight qweight_;
  bool allocates_ = false;
};

}  // namespace ferrum::conformance::opcall
