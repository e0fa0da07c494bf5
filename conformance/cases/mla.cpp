// Conformance cases: mla (see conformance/include/ferrum/conformance/kit.hpp).
#include <ferrum/conformance/kit.hpp>
