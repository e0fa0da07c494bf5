// The machinery behind the generated per-op checks (checks_gen.hpp).
//
// `Acc` is whatever can describe a buffer handle: the facade (from its Buffer objects) or a
// plugin (from its own buffer struct). It provides
//     bool info(const ferrum_buffer* handle, int32_t& dtype, uint64_t& count);
// returning false for a handle it does not know (released, or from another plugin).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include <ferrum/common/checked.hpp>
#include <ferrum/common/dtype.hpp>
#include <ferrum/ferrum_base.h>

namespace ferrum::common {

// The first failure of a check: status + a message naming op, argument, expected, given.
struct CheckError {
  ferrum_status status = FERRUM_STATUS_OK;
  std::string message;
};

enum class DtypeClass : uint8_t { act, idx, tab, any, x, exact };

// Product of shape dimensions, saturating at UINT64_MAX (which no buffer can hold).
inline uint64_t shape_elems(std::initializer_list<uint64_t> dims) { return sat_mul(dims); }

// A caller field and its value, listed in the message when a shape expression wraps.
struct Given {
  const char* name;
  uint64_t value;
};

// The product of the named fields (checked). False when it wraps past 2^64, with `message` set to
// "arguments 'a'/'b': expected a·b < 2^64, given 3·4 (the product wraps past 2^64)".
inline bool named_product(std::initializer_list<Given> factors, uint64_t& product, std::string& message) {
  bool zero = false;  // a zero factor: the product is 0, however large the others
  for (const Given& f : factors) zero = zero || f.value == 0;
  Size p(zero ? 0 : 1);
  if (!zero)
    for (const Given& f : factors) p = p * Size(f.value);
  product = p.value;
  if (p.ok()) return true;
  std::string names, expr, vals;
  for (const Given& f : factors) {
    names += (names.empty() ? "'" : "/'") + std::string(f.name) + "'";
    expr += (expr.empty() ? "" : "·") + std::string(f.name);
    vals += (vals.empty() ? "" : "·") + std::to_string(f.value);
  }
  message = "arguments " + names + ": expected " + expr + " < 2^64, given " + vals + " (the product wraps past 2^64)";
  return false;
}

// "a = 1, b = 2" for a wrap message.
inline std::string given_list(std::initializer_list<Given> given) {
  std::string out;
  for (const Given& g : given)
    out += (out.empty() ? "" : ", ") + std::string(g.name) + " = " + std::to_string(g.value);
  return out;
}

template <class Acc>
class Checker {
 public:
  Checker(Acc& acc, CheckError& err, const char* op) : acc_(acc), err_(err), op_(op) {}

  ferrum_status status() const { return err_.status; }
  int32_t act_dtype() const { return act_; }

  // min_size: the struct's size at `since`, the minor that added the op (any larger struct_size
  // is accepted: its fields of later minors are read through the generated accessors).
  template <class Args>
  bool header(const Args* a, uint64_t min_size, const char* since = "1.0") {
    if (!a) return fail("args is NULL");
    if (a->struct_size < min_size)
      return fail("struct_size: expected at least " + std::to_string(min_size) +
                  " (the ABI " + since + " size), given " + std::to_string(a->struct_size));
    return true;
  }

  void flag(const char* name, uint32_t v) {
    if (ok() && v > 1)
      fail(std::string("argument '") + name + "': expected a flag (0 or 1), given " +
           std::to_string(v));
  }

  // `dims` are the shape's dimensions computed with checked arithmetic (Size); `given` lists the
  // caller fields the shape reads, named in the message when a dimension or the element count
  // wraps past 2^64 (always INVALID_ARGUMENT, work or not: such a shape describes no buffer).
  void buffer(const char* name, const ferrum_buffer* h, DtypeClass cls, int32_t exact,
              bool required, bool has_shape, std::initializer_list<Size> dims,
              const char* dims_text, std::initializer_list<Given> given = {}) {
    if (!ok()) return;
    const Size total = has_shape ? shape_size(dims) : Size(0);
    if (!total.ok()) {
      wrapped(name, "a shape", dims_text, given);
      return;
    }
    const uint64_t need = total.value;
    if (!h) {
      if (required && need > 0)
        fail(std::string("argument '") + name + "': expected a buffer of shape " + dims_text +
             " (" + std::to_string(need) + " elements), given NULL");
      return;
    }
    int32_t dt = 0;
    uint64_t count = 0;
    if (!acc_.info(h, dt, count)) {
      fail(std::string("argument '") + name +
           "': expected a live buffer of this plugin, given a released or foreign buffer handle");
      return;
    }
    if (!dtype_ok(name, cls, exact, dt)) return;
    if (has_shape && count < need) {
      std::string dims_val;
      for (const Size& d : dims) dims_val += (dims_val.empty() ? "" : ", ") + std::to_string(d.value);
      fail(std::string("argument '") + name + "': expected at least " + std::to_string(need) +
           " elements for shape " + dims_text + " = [" + dims_val + "], given a buffer of " +
           std::to_string(count) + " " + dtype_name(dt) + " elements");
    }
  }

  // A shape or length expression whose value wraps past 2^64.
  void wrapped(const char* name, const char* what, const char* text, std::initializer_list<Given> given) {
    fail(std::string("argument '") + name + "': expected " + what + " " + text +
         " whose element count fits in 64 bits, given " + given_list(given) +
         " (the size wraps past 2^64)");
  }

  // A host pointer the op reads (`host`) or fills (`hostout`): NULL only when nothing is needed.
  void host_ptr(const char* name, const void* p, Size need, bool out, const char* text = "",
                std::initializer_list<Given> given = {}) {
    if (ok() && !need.ok()) return wrapped(name, "a host array", text, given);
    if (ok() && !p && need.value > 0)
      fail(std::string("argument '") + name + "': expected a host pointer " +
           (out ? "to receive the result" : "to read from") + ", given NULL");
  }

  void no_alias(const char* wname, const ferrum_buffer* w, const char* oname,
                const ferrum_buffer* o) {
    if (ok() && w && w == o)
      fail(std::string("arguments '") + wname + "' and '" + oname +
           "': expected different buffers (this op may not write a buffer it also reads "
           "through another argument), given the same handle");
  }

  bool fail(const std::string& what) {
    if (ok()) {
      err_.status = FERRUM_STATUS_INVALID_ARGUMENT;
      err_.message = std::string(op_) + ": " + what;
    }
    return false;
  }

 private:
  bool ok() const { return err_.status == FERRUM_STATUS_OK; }

  bool dtype_ok(const char* name, DtypeClass cls, int32_t exact, int32_t dt) {
    auto bad = [&](const std::string& expected) {
      return fail(std::string("argument '") + name + "': expected dtype " + expected +
                  ", given " + dtype_name(dt));
    };
    switch (cls) {
      case DtypeClass::any:
        return dt != FERRUM_DTYPE_INVALID || bad("a valid dtype");
      case DtypeClass::exact:
        return dt == exact || bad(dtype_name(exact));
      case DtypeClass::idx:
        return dt == FERRUM_DTYPE_U32 || dt == FERRUM_DTYPE_I32 || bad("u32 or i32");
      case DtypeClass::act:
        if (!is_float_dtype(dt)) return bad("f32, f16 or bf16 (an activation dtype)");
        if (act_ == 0) {
          act_ = dt;
          act_from_ = name;
          return true;
        }
        return dt == act_ || bad(std::string(dtype_name(act_)) +
                                 " (the op's activation dtype, set by '" + act_from_ + "')");
      case DtypeClass::x:
        if (!is_float_dtype(dt)) return bad("f32, f16 or bf16");
        if (x_ == 0) x_ = dt;
        return dt == x_ || bad(std::string(dtype_name(x_)) + " (all buffers of the op share it)");
      case DtypeClass::tab:
        if (!is_float_dtype(dt) || (act_ != 0 && dt != act_ && dt != FERRUM_DTYPE_F32))
          return bad("the activation dtype or f32 (a RoPE table)");
        if (tab_ == 0) tab_ = dt;
        return dt == tab_ || bad(std::string(dtype_name(tab_)) + " (cos and sin share a dtype)");
    }
    return true;
  }

  Acc& acc_;
  CheckError& err_;
  const char* op_;
  int32_t act_ = 0, x_ = 0, tab_ = 0;
  const char* act_from_ = "";  // an argument name: a string literal of the generated checks
};

}  // namespace ferrum::common
