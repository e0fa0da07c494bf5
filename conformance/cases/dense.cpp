// Conformance cases: dense (see conformance/include/ferrum/conformance/kit.hpp).
#include <ferrum/conformance/kit.hpp>
