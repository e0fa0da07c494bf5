// Conformance cases: quant_kv (see conformance/include/ferrum/conformance/kit.hpp).
#include <ferrum/conformance/kit.hpp>
