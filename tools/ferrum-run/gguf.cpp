#include "gguf.hpp"

#include <cstring>

#include <ferrum/common/checked.hpp>

#include "load_error.hpp"

namespace ferrum::run {
namespace {

// A bounds-checked reader over the mapping.
class Cursor {
 public:
  explicit Cursor(const MappedFile& f) : f_(f) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return f_.size() - pos_; }
  std::span<const uint8_t> take(uint64_t n, const std::string& what) {
    auto v = f_.view(pos_, n, what);
    pos_ += n;  // arith-ok: view checked pos_ + n <= size
    return v;
  }
  template <class T>
  T get(const std::string& what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what).data(), sizeof(T));
    return v;
  }
  std::string str(const std::string& what) {
    const uint64_t n = get<uint64_t>(what + " (string length)");
    const auto b = take(n, what);
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }
  // A count of elements of at least `min_bytes` each: checked against the bytes left, so nothing
  // is sized from a corrupt count.
  uint64_t count(const std::string& what, uint64_t min_bytes) {
    const uint64_t n = get<uint64_t>(what);
    if (min_bytes && n > left() / min_bytes)
      throw LoadError(f_.path() + ": " + what + " " + std::to_string(n) + " exceeds what the file can hold (" +
                      std::to_string(left()) + " bytes left; truncated or corrupt)");
    return n;
  }

 private:
  const MappedFile& f_;
  uint64_t pos_ = 0;
};

enum : uint32_t { kU8, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64 };

uint64_t scalar_size(uint32_t t) {
  switch (t) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: return 8;
    default: return 0;
  }
}

// One scalar as unsigned / signed / double / bool.
GgufValue read_scalar(Cursor& c, uint32_t t, const std::string& what) {
  switch (t) {
    case kU8: return uint64_t(c.get<uint8_t>(what));
    case kI8: return int64_t(c.get<int8_t>(what));
    case kU16: return uint64_t(c.get<uint16_t>(what));
    case kI16: return int64_t(c.get<int16_t>(what));
    case kU32: return uint64_t(c.get<uint32_t>(what));
    case kI32: return int64_t(c.get<int32_t>(what));
    case kF32: return double(c.get<float>(what));
    case kBool: return c.get<uint8_t>(what) != 0;
    case kU64: return c.get<uint64_t>(what);
    case kI64: return c.get<int64_t>(what);
    case kF64: return c.get<double>(what);
    default: break;
  }
  return uint64_t{0};
}

}  // namespace

std::string ggml_type_name(uint32_t t) {
  switch (static_cast<GgmlType>(t)) {
    case GgmlType::f32: return "F32";
    case GgmlType::f16: return "F16";
    case GgmlType::bf16: return "BF16";
    case GgmlType::q4_0: return "Q4_0";
    case GgmlType::q4_1: return "Q4_1";
    case GgmlType::q8_0: return "Q8_0";
    case GgmlType::q4_k: return "Q4_K";
    case GgmlType::q5_k: return "Q5_K";
    case GgmlType::q6_k: return "Q6_K";
  }
  return "type " + std::to_string(t);
}

std::pair<uint64_t, uint64_t> ggml_block(uint32_t t) {
  switch (static_cast<GgmlType>(t)) {
    case GgmlType::f32: return {1, 4};
    case GgmlType::f16: return {1, 2};
    case GgmlType::bf16: return {1, 2};
    case GgmlType::q4_0: return {32, 18};
    case GgmlType::q4_1: return {32, 20};
    case GgmlType::q8_0: return {32, 34};
    case GgmlType::q4_k: return {256, 144};
    case GgmlType::q5_k: return {256, 176};
    case GgmlType::q6_k: return {256, 210};
  }
  return {0, 0};
}

uint64_t GgufTensor::rows() const {
  common::Size r(1);
  for (size_t i = 1; i < dims.size(); ++i) r = r * common::Size(dims[i]);
  return r.value;  // bounded when the file was read (the tensor's bytes fit in it)
}

GgufFile::GgufFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  const MappedFile& f = *file_;
  Cursor c(f);
  if (f.size() < 24) throw LoadError(path + ": not a GGUF file (" + std::to_string(f.size()) + " bytes)");
  const auto magic = c.take(4, "magic");
  if (std::memcmp(magic.data(), "GGUF", 4) != 0) throw LoadError(path + ": not a GGUF file (no GGUF magic)");
  const uint32_t version = c.get<uint32_t>("version");
  if (version != 2 && version != 3)
    throw LoadError(path + ": GGUF version " + std::to_string(version) + " (ferrum-run reads versions 2 and 3)");
  const uint64_t n_tensors = c.count("tensor count", 24);  // name length + dims count + type + offset
  const uint64_t n_kv = c.count("metadata count", 12);     // key length + type
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = c.str("metadata key " + std::to_string(i));
    const std::string what = "metadata '" + key + "'";
    const uint32_t t = c.get<uint32_t>(what + " (type)");
    if (t == kString) {
      meta_[key] = c.str(what);
    } else if (t == kArray) {
      const uint32_t et = c.get<uint32_t>(what + " (element type)");
      if (et == kString) {
        const uint64_t n = c.count(what + " (element count)", 8);
        std::vector<std::string> v;
        v.reserve(n);
        for (uint64_t k = 0; k < n; ++k) v.push_back(c.str(what));
        meta_[key] = std::move(v);
      } else if (const uint64_t es = scalar_size(et)) {
        const uint64_t n = c.count(what + " (element count)", es);
        if (et == kF32 || et == kF64) {
          std::vector<double> v;
          v.reserve(n);
          for (uint64_t k = 0; k < n; ++k) v.push_back(std::get<double>(read_scalar(c, et, what)));
          meta_[key] = std::move(v);
        } else {
          std::vector<int64_t> v;
          v.reserve(n);
          for (uint64_t k = 0; k < n; ++k) {
            const GgufValue x = read_scalar(c, et, what);
            v.push_back(std::holds_alternative<uint64_t>(x) ? int64_t(std::get<uint64_t>(x))
                        : std::holds_alternative<int64_t>(x) ? std::get<int64_t>(x)
                                                             : int64_t(std::get<bool>(x)));
          }
          meta_[key] = std::move(v);
        }
      } else {
        throw LoadError(path + ": " + what + ": unknown array element type " + std::to_string(et));
      }
    } else if (scalar_size(t)) {
      meta_[key] = read_scalar(c, t, what);
    } else {
      throw LoadError(path + ": " + what + ": unknown value type " + std::to_string(t));
    }
  }
  struct Info { std::string name; uint32_t type; std::vector<uint64_t> dims; uint64_t offset; };
  std::vector<Info> infos;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    Info in;
    in.name = c.str("tensor info " + std::to_string(i) + " (name)");
    const std::string what = "tensor '" + in.name + "'";
    const uint32_t nd = c.get<uint32_t>(what + " (dims count)");
    if (nd == 0 || nd > 4) throw LoadError(path + ": " + what + ": " + std::to_string(nd) + " dimensions, expected 1 to 4");
    for (uint32_t d = 0; d < nd; ++d) in.dims.push_back(c.get<uint64_t>(what + " (dims)"));
    in.type = c.get<uint32_t>(what + " (type)");
    in.offset = c.get<uint64_t>(what + " (offset)");
    infos.push_back(std::move(in));
  }
  uint64_t alignment = 32;
  if (const auto it = meta_.find("general.alignment"); it != meta_.end()) {
    if (!std::holds_alternative<uint64_t>(it->second) || std::get<uint64_t>(it->second) == 0 ||
        std::get<uint64_t>(it->second) > (1u << 20))
      throw LoadError(path + ": metadata 'general.alignment': expected a positive integer up to 2^20");
    alignment = std::get<uint64_t>(it->second);
  }
  const uint64_t data_start = common::ceil_div(c.pos(), alignment) * alignment;  // arith-ok: pos <= size, alignment <= 2^20
  if (data_start > f.size()) throw LoadError(path + ": the data section starts past the end of the file (truncated)");
  const uint64_t data_len = f.size() - data_start;
  for (Info& in : infos) {
    const std::string where = path + ": tensor '" + in.name + "': ";
    const auto [qk, bytes_per_block] = ggml_block(in.type);
    if (qk == 0) throw LoadError(where + "unsupported type " + ggml_type_name(in.type) +
                                 " (ferrum-run reads F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K)");
    if (in.dims[0] % qk)
      throw LoadError(where + std::to_string(in.dims[0]) + " columns, not a multiple of " + ggml_type_name(in.type) +
                      "'s block of " + std::to_string(qk));
    common::Size n(in.dims[0] / qk);
    for (size_t d = 1; d < in.dims.size(); ++d) n = n * common::Size(in.dims[d]);
    const common::Size bytes = n * common::Size(bytes_per_block);
    if (!bytes.ok() || !common::range_ok(in.offset, bytes.value, data_len))
      throw LoadError(where + "data [" + std::to_string(in.offset) + ", +" +
                      (bytes.ok() ? std::to_string(bytes.value) : std::string("more than 2^64")) +
                      ") lies outside the data section (" + std::to_string(data_len) +
                      " bytes; the file is truncated or corrupt)");
    GgufTensor t;
    t.name = in.name;
    t.type = in.type;
    t.dims = in.dims;
    t.bytes = f.view(data_start + in.offset, bytes.value, "tensor '" + in.name + "'");  // arith-ok: offset <= data_len
    if (!tensors_.emplace(in.name, std::move(t)).second) throw LoadError(where + "named twice");
  }
}

const GgufTensor* GgufFile::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::string GgufFile::str(const std::string& key) const {
  const auto it = meta_.find(key);
  if (it == meta_.end()) throw LoadError(path() + ": metadata '" + key + "' missing");
  if (!std::holds_alternative<std::string>(it->second)) throw LoadError(path() + ": metadata '" + key + "': expected a string");
  return std::get<std::string>(it->second);
}

uint64_t GgufFile::u64(const std::string& key) const {
  const auto it = meta_.find(key);
  if (it == meta_.end()) throw LoadError(path() + ": metadata '" + key + "' missing");
  if (std::holds_alternative<uint64_t>(it->second)) return std::get<uint64_t>(it->second);
  if (std::holds_alternative<int64_t>(it->second) && std::get<int64_t>(it->second) >= 0)
    return uint64_t(std::get<int64_t>(it->second));
  throw LoadError(path() + ": metadata '" + key + "': expected a non-negative integer");
}

uint64_t GgufFile::u64_or(const std::string& key, uint64_t def) const { return has(key) ? u64(key) : def; }

double GgufFile::f64_or(const std::string& key, double def) const {
  const auto it = meta_.find(key);
  if (it == meta_.end()) return def;
  if (std::holds_alternative<double>(it->second)) return std::get<double>(it->second);
  if (std::holds_alternative<uint64_t>(it->second)) return double(std::get<uint64_t>(it->second));
  if (std::holds_alternative<int64_t>(it->second)) return double(std::get<int64_t>(it->second));
  throw LoadError(path() + ": metadata '" + key + "': expected a number");
}

}  // namespace ferrum::run
