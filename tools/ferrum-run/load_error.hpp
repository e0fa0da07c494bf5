// ferrum-run: the error of anything read from a model file or directory (a missing file, a
// corrupt header, a tensor that disagrees with the config, an unsupported architecture). The
// message names the file and, where there is one, the tensor.
#pragma once

#include <stdexcept>
#include <string>

namespace ferrum::run {

class LoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace ferrum::run
