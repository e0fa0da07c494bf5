// ferrum Python bindings (nanobind): shared declarations of module.cpp and the generated
// ops_gen.cpp (tools/abigen/gen_python.py).
#pragma once

#include <string>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <ferrum/ferrum.hpp>

namespace nb = nanobind;

namespace ferrum::python {

// The facade's handle classes other than Buffer, QWeight and Timer (GENERATED: ops_gen.cpp).
void bind_handle_classes(nb::module_& m);
// One method `_<op>` per bound facade op (GENERATED: ops_gen.cpp).
void bind_ops(nb::class_<ferrum::Context>& cls);

// The raw handles of a list of Buffers (an op's host array of buffers); a None entry or an empty
// Buffer is an Error(invalid_argument) naming the op and the argument.
std::vector<ferrum_buffer*> handles(const char* op, const char* arg,
                                    const std::vector<ferrum::Buffer*>& buffers);

}  // namespace ferrum::python
