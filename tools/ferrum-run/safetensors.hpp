// ferrum-run: safetensors checkpoints, memory-mapped and validated before any byte is used.
//
// A file is [u64 little-endian header length N][N bytes of JSON header][data]. The header maps
// each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
// data section) plus an optional "__metadata__" object. Checked here: N fits in the file, the
// header is a JSON object, every entry has a known dtype string, a shape of non-negative
// integers and offsets with begin <= end inside the data section, and end - begin equals the
// shape's element count times the dtype's size (checked arithmetic: no wrap). Anything else is a
// LoadError naming the file and the tensor.
//
// A model directory holds either model.safetensors or model.safetensors.index.json whose
// "weight_map" names the shard of every tensor; each shard is mapped once and the map is checked
// against the shards' own headers.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mapped_file.hpp"

namespace ferrum::run {

struct TensorView {
  std::string name;
  std::string dtype;             // as the header spells it: F32, F16, BF16, I8, ...
  std::vector<uint64_t> shape;
  std::span<const uint8_t> bytes;  // inside the mapping of `file`
  const MappedFile* file = nullptr;
};

// Size in bytes of one element of a safetensors dtype string; 0 for an unknown string.
uint64_t safetensors_dtype_size(const std::string& dtype);

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const MappedFile& file() const { return *file_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }

 private:
  std::unique_ptr<MappedFile> file_;  // stable address: the views point at it
  std::map<std::string, TensorView> tensors_;
};

// Every tensor of a model directory (single file or sharded).
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);
  // The tensor, or nullptr when the checkpoint has none of that name.
  const TensorView* find(const std::string& name) const;
  // The tensor; LoadError naming the directory and the tensor when it is missing.
  const TensorView& get(const std::string& name) const;
  const std::string& dir() const { return dir_; }
  size_t size() const { return index_.size(); }
  const std::map<std::string, const TensorView*>& all() const { return index_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

}  // namespace ferrum::run
