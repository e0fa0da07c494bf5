// Conformance cases: gptq (see conformance/include/ferrum/conformance/kit.hpp).
#include <ferrum/conformance/kit.hpp>
