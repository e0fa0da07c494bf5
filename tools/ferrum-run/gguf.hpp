// ferrum-run: GGUF files (versions 2 and 3), memory-mapped and validated before any byte is used.
//
// Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata key/value pairs,
// the tensor infos (name, dims with dims[0] the innermost (column) count, type, offset), then the
// data section at the next multiple of general.alignment (32 by default). Every read goes through a
// bounds-checked cursor over the mapping; counts and string lengths are checked against the bytes
// left before anything is sized from them; each tensor's byte size (checked arithmetic) must lie
// inside the data section. Anything else is a LoadError naming the file (and the key or tensor).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "mapped_file.hpp"

namespace ferrum::run {

// ggml type ids ferrum-run knows (the quantised ones are FERRUM_QUANT_* ids too).
enum class GgmlType : uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, q4_k = 12, q5_k = 13, q6_k = 14, bf16 = 30,
};
// Name of a ggml type id ("Q4_K", ...; "type <n>" for one ferrum-run does not know).
std::string ggml_type_name(uint32_t type);
// Elements per block and bytes per block; {0, 0} for a type ferrum-run does not know.
std::pair<uint64_t, uint64_t> ggml_block(uint32_t type);

struct GgufTensor {
  std::string name;
  uint32_t type = 0;
  std::vector<uint64_t> dims;  // dims[0]: columns (innermost)
  std::span<const uint8_t> bytes;
  uint64_t rows() const;  // product of dims[1..]
  uint64_t cols() const { return dims.empty() ? 1 : dims[0]; }
};

using GgufValue = std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<std::string>,
                               std::vector<int64_t>, std::vector<double>>;

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);
  const std::string& path() const { return file_->path(); }
  const std::map<std::string, GgufValue>& metadata() const { return meta_; }
  const std::map<std::string, GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find(const std::string& name) const;

  // Typed metadata; LoadError naming the file and key when missing (the *_or forms return the
  // default instead) or of another type.
  std::string str(const std::string& key) const;
  uint64_t u64(const std::string& key) const;
  uint64_t u64_or(const std::string& key, uint64_t def) const;
  double f64_or(const std::string& key, double def) const;
  bool has(const std::string& key) const { return meta_.count(key) != 0; }

 private:
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, GgufValue> meta_;
  std::map<std::string, GgufTensor> tensors_;
};

}  // namespace ferrum::run
