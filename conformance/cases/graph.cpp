// Conformance cases: graph (see conformance/include/ferrum/conformance/kit.hpp).
#include <ferrum/conformance/kit.hpp>
