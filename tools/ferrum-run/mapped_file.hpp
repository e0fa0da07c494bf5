// ferrum-run: a read-only memory mapping of a whole file. Every view handed out is bounds-checked
// against the mapping (range_ok), so a corrupt offset is an error naming the file, never a read
// past the end.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace ferrum::run {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `path`; throws LoadError naming the file when it cannot be opened, stat'ed or mapped.
  explicit MappedFile(const std::string& path);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, static_cast<size_t>(size_)}; }
  // [offset, offset + len) of the file; throws LoadError naming the file and `what` when the
  // range does not lie inside it.
  std::span<const uint8_t> view(uint64_t offset, uint64_t len, const std::string& what) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace ferrum::run
