// ferrum conformance kit — runs an op's args struct through the facade's typed method
// (facade_call_gen.cpp, generated from the op registry): the facade's checks, its composition
// for a NULL slot, then the plugin's slot.
#pragma once

#include <ferrum/ferrum.hpp>

#include <cstdint>
#include <type_traits>

namespace ferrum::conformance {

// A facade owner (Buffer, QWeight, Timer) over a handle the caller keeps: released, never
// freed, when it goes out of scope.
template <class Owner>
class Borrowed {
 public:
  template <class H>
  Borrowed(Context& ctx, H* handle)
      : owner_(handle ? Owner(const_cast<std::remove_const_t<H>*>(handle), ctx.library()) : Owner()) {}
  ~Borrowed() { (void)owner_.release(); }
  Borrowed(const Borrowed&) = delete;
  Borrowed& operator=(const Borrowed&) = delete;
  Owner& ref() { return owner_; }
  Owner* ptr() { return owner_ ? &owner_ : nullptr; }

 private:
  Owner owner_;
};

// Calls the facade method of `op` with the fields of `args` (its ferrum_<op>_args). False when
// the facade has no method of that name (ops without a context, context_info); otherwise what
// the method throws escapes (ferrum::Error, or anything else the facade lets out).
bool call_facade(Context& ctx, int32_t op, const void* args);
// Whether call_facade has a method for `op`.
bool has_facade_method(int32_t op);

}  // namespace ferrum::conformance
