#include "safetensors.hpp"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include <ferrum/common/checked.hpp>

#include "load_error.hpp"

namespace ferrum::run {
namespace {

using json = nlohmann::json;

std::string shape_string(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// A non-negative integer of a JSON value (json's unsigned or non-negative signed numbers).
bool as_u64(const json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

}  // namespace

uint64_t safetensors_dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  const MappedFile& f = *file_;
  if (f.size() < 8)
    throw LoadError(path + ": not a safetensors file: " + std::to_string(f.size()) +
                    " bytes, expected at least the 8-byte header length");
  uint64_t header_len = 0;
  const auto len_bytes = f.view(0, 8, "header length");
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[static_cast<size_t>(i)];
  if (header_len > f.size() - 8)
    throw LoadError(path + ": header length " + std::to_string(header_len) + " exceeds the file (" +
                    std::to_string(f.size()) + " bytes; truncated or not a safetensors file)");
  const auto header = f.view(8, header_len, "header");
  const uint64_t data_start = 8 + header_len;  // arith-ok: header_len <= size - 8 was checked
  const uint64_t data_len = f.size() - data_start;
  json h = json::parse(header.begin(), header.end(), nullptr, /*allow_exceptions=*/false);
  if (h.is_discarded() || !h.is_object())
    throw LoadError(path + ": the header is not a JSON object (corrupt file?)");
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const json& e = it.value();
    const std::string where = path + ": tensor '" + name + "': ";
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw LoadError(where + "expected an object with dtype, shape and data_offsets");
    if (!e["dtype"].is_string()) throw LoadError(where + "dtype is not a string");
    TensorView t;
    t.name = name;
    t.dtype = e["dtype"].get<std::string>();
    t.file = file_.get();
    const uint64_t esz = safetensors_dtype_size(t.dtype);
    if (esz == 0) throw LoadError(where + "unknown dtype '" + t.dtype + "'");
    if (!e["shape"].is_array()) throw LoadError(where + "shape is not an array");
    common::Size count(1);
    for (const json& d : e["shape"]) {
      uint64_t v = 0;
      if (!as_u64(d, v)) throw LoadError(where + "shape " + e["shape"].dump() + " has a non-integer or negative dimension");
      t.shape.push_back(v);
      count = count * common::Size(v);
    }
    const json& off = e["data_offsets"];
    uint64_t begin = 0, end = 0;
    if (!off.is_array() || off.size() != 2 || !as_u64(off[0], begin) || !as_u64(off[1], end) || begin > end)
      throw LoadError(where + "data_offsets " + off.dump() + ": expected [begin, end] with 0 <= begin <= end");
    const common::Size bytes = count * common::Size(esz);
    if (!bytes.ok() || bytes.value != end - begin)
      throw LoadError(where + "data_offsets " + off.dump() + " hold " + std::to_string(end - begin) +
                      " bytes, but shape " + shape_string(t.shape) + " of " + t.dtype + " needs " +
                      (bytes.ok() ? std::to_string(bytes.value) : std::string("more than 2^64")));
    if (end > data_len)
      throw LoadError(where + "data_offsets " + off.dump() + " end past the data section (" +
                      std::to_string(data_len) + " bytes; the file is truncated or corrupt)");
    t.bytes = f.view(data_start + begin, end - begin, "tensor '" + name + "'");  // arith-ok: begin <= data_len
    tensors_.emplace(name, std::move(t));
  }
}

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  namespace fs = std::filesystem;
  const fs::path d(dir);
  const fs::path single = d / "model.safetensors", index = d / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::exists(index, ec)) {
    std::ifstream in(index);
    json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw LoadError(index.string() + ": expected a JSON object with a \"weight_map\" object");
    std::map<std::string, size_t> shard_of_file;
    std::set<std::string> names;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw LoadError(index.string() + ": weight_map entry '" + it.key() + "' is not a file name");
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
        throw LoadError(index.string() + ": weight_map entry '" + it.key() + "' names '" + shard +
                        "', expected a file name inside the directory");
      if (!shard_of_file.count(shard)) {
        if (!fs::is_regular_file(d / shard, ec))
          throw LoadError(index.string() + ": weight_map puts tensor '" + it.key() + "' in " + shard +
                          ", which is not a file in the directory");
        shard_of_file[shard] = files_.size();
        files_.push_back(std::make_unique<SafetensorsFile>((d / shard).string()));
      }
      const SafetensorsFile& sf = *files_[shard_of_file[shard]];
      const auto t = sf.tensors().find(it.key());
      if (t == sf.tensors().end())
        throw LoadError(index.string() + ": weight_map puts tensor '" + it.key() + "' in " + shard +
                        ", which has no tensor of that name");
      index_[it.key()] = &t->second;
    }
  } else if (fs::exists(single, ec)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    for (const auto& [name, t] : files_[0]->tensors()) index_[name] = &t;
  } else {
    throw LoadError(dir + ": no model.safetensors or model.safetensors.index.json in the directory");
  }
}

const TensorView* Checkpoint::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& Checkpoint::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) throw LoadError(dir_ + ": the checkpoint has no tensor '" + name + "'");
  return *t;
}

}  // namespace ferrum::run
