// Pre-dlopen ELF checks: header identity, program/section header tables and every PT_LOAD /
// PT_DYNAMIC inside the file, then the exported symbols from .dynsym. All offsets come from
// the file, so every end offset is computed with an overflow check before it is compared.
#include "elf_check.hpp"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string_view>

#include <ferrum/common/checked.hpp>
#include <ferrum/ferrum_plugin.h>

namespace ferrum::detail {
namespace {

using common::checked_add;
using common::checked_mul;

using Ehdr = ElfW(Ehdr);
using Phdr = ElfW(Phdr);
using Shdr = ElfW(Shdr);
using Sym = ElfW(Sym);

#if defined(__x86_64__)
constexpr unsigned kHostMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr unsigned kHostMachine = EM_AARCH64;
#elif defined(__i386__)
constexpr unsigned kHostMachine = EM_386;
#elif defined(__arm__)
constexpr unsigned kHostMachine = EM_ARM;
#elif defined(__powerpc64__)
constexpr unsigned kHostMachine = EM_PPC64;
#elif defined(__riscv)
constexpr unsigned kHostMachine = EM_RISCV;
#elif defined(__s390x__)
constexpr unsigned kHostMachine = EM_S390;
#else
constexpr unsigned kHostMachine = EM_NONE;  // unknown host: e_machine is not checked
#endif
constexpr unsigned char kHostClass = sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32;
constexpr unsigned char kHostData =
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB;

std::string machine_text(unsigned m) {
  const char* name = nullptr;
  switch (m) {
    case EM_386: name = "x86 (i386)"; break;
    case EM_X86_64: name = "x86-64"; break;
    case EM_ARM: name = "ARM"; break;
    case EM_AARCH64: name = "AArch64"; break;
    case EM_PPC64: name = "PowerPC64"; break;
    case EM_RISCV: name = "RISC-V"; break;
    case EM_S390: name = "S/390"; break;
    case EM_MIPS: name = "MIPS"; break;
    default: break;
  }
  std::string num = "e_machine " + std::to_string(m);
  return name ? std::string(name) + " (" + num + ")" : num;
}

const char* class_text(unsigned c) {
  return c == ELFCLASS32 ? "32-bit" : c == ELFCLASS64 ? "64-bit" : "invalid";
}
const char* data_text(unsigned d) {
  return d == ELFDATA2LSB ? "little-endian" : d == ELFDATA2MSB ? "big-endian" : "invalid";
}
const char* type_text(unsigned t) {
  switch (t) {
    case ET_NONE: return "NONE";
    case ET_REL: return "REL";
    case ET_EXEC: return "EXEC";
    case ET_DYN: return "DYN";
    case ET_CORE: return "CORE";
    default: return "unknown";
  }
}

// The first bytes of a non-ELF file, printable, for the message.
std::string quoted_start(const unsigned char* p, size_t n, uint64_t file_size) {
  std::string out = "\"";
  for (size_t i = 0; i < n && i < 16; ++i) {
    unsigned char ch = p[i];
    if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
      out += static_cast<char>(ch);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[ch >> 4];
      out += hex[ch & 15];
    }
  }
  return out + (file_size > n || n > 16 ? "...\"" : "\"");
}

class File {
 public:
  explicit File(const std::string& path)
      : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) {}
  ~File() {
    if (fd_ >= 0) ::close(fd_);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  int fd() const { return fd_; }
  uint64_t size = 0;

  // Reads exactly n bytes at off (the caller has checked off + n <= size).
  bool read(uint64_t off, void* dst, size_t n) const {
    auto* out = static_cast<char*>(dst);
    while (n > 0) {
      ssize_t got = ::pread(fd_, out, n, static_cast<off_t>(off));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      out += got;
      off += static_cast<uint64_t>(got);
      n -= static_cast<size_t>(got);
    }
    return true;
  }

 private:
  int fd_;
};

// "" when [off, off + len) lies inside a file of `size` bytes; else why not.
std::string outside(const char* what, uint64_t off, uint64_t len, uint64_t size) {
  uint64_t end = 0;
  if (!checked_add(off, len, end))
    return std::string(what) + " offset " + std::to_string(off) + " + size " +
           std::to_string(len) + " overflows";
  if (end <= size) return {};
  return "truncated: " + std::string(what) + " ends at byte " + std::to_string(end) +
         " (offset " + std::to_string(off) + " + size " + std::to_string(len) +
         "), the file has " + std::to_string(size) + " bytes";
}

// The byte length of `count` entries of `entsize` bytes, or false on overflow.
bool table_bytes(uint64_t count, uint64_t entsize, uint64_t& out) {
  return checked_mul(count, entsize, out);
}

// The entry symbol, the linker's own, and AddressSanitizer's ODR indicators (a sanitized
// build of a plugin exports one per global it defines).
bool is_linker_symbol(std::string_view name) {
  return name == FERRUM_PLUGIN_ENTRY_SYMBOL || name == "_init" || name == "_fini" ||
         name == "_edata" || name == "_end" || name == "__bss_start" ||
         name.rfind("__odr_asan", 0) == 0;
}

// Adds the exported, defined names among `syms` (names in `names`) to check.extra_exports.
void collect_exports(const std::vector<Sym>& syms, const std::string& names, ElfCheck& check) {
  check.exports_checked = true;
  for (const Sym& sym : syms) {
    const unsigned bind = ELF64_ST_BIND(sym.st_info), vis = ELF64_ST_VISIBILITY(sym.st_other);
    if (sym.st_shndx == SHN_UNDEF || sym.st_name == 0 || sym.st_name >= names.size()) continue;
    if (bind != STB_GLOBAL && bind != STB_WEAK && bind != STB_GNU_UNIQUE) continue;
    if (vis != STV_DEFAULT && vis != STV_PROTECTED) continue;
    if (sym.st_shndx == SHN_ABS && sym.st_value == 0 && sym.st_size == 0) continue;  // version name
    const char* start = names.data() + sym.st_name;
    std::string_view name(start, strnlen(start, names.size() - sym.st_name));
    if (!is_linker_symbol(name)) check.extra_exports.emplace_back(name);
  }
  std::sort(check.extra_exports.begin(), check.extra_exports.end());
  check.extra_exports.erase(std::unique(check.extra_exports.begin(), check.extra_exports.end()),
                            check.extra_exports.end());
}

// The file offset of virtual address `addr` when it lies in the file part of a PT_LOAD.
bool file_offset(const std::vector<Phdr>& ph, uint64_t addr, uint64_t& off) {
  for (const Phdr& p : ph)
    if (p.p_type == PT_LOAD && addr >= p.p_vaddr && addr - p.p_vaddr < p.p_filesz)
      return checked_add(p.p_offset, addr - p.p_vaddr, off);  // addr >= p_vaddr: no wrap
  return false;
}

// Reads `count` items of T at `off` when they lie inside the file.
template <class T>
bool read_items(const File& f, uint64_t off, uint64_t count, std::vector<T>& out) {
  uint64_t bytes = 0;
  if (!table_bytes(count, sizeof(T), bytes) || !outside("", off, bytes, f.size).empty())
    return false;
  out.resize(count);
  return count == 0 || f.read(off, out.data(), bytes);
}

// The number of .dynsym entries from DT_GNU_HASH: one past the last symbol of the longest
// chain (symbols below symoffset are not hashed). 0 when the table is unreadable.
uint64_t gnu_hash_symbol_count(const File& f, uint64_t off) {
  std::vector<uint32_t> head, buckets, chain;
  if (!read_items(f, off, 4, head)) return 0;
  const uint64_t nbuckets = head[0], symoffset = head[1], bloom_words = head[2];
  uint64_t bloom_bytes = 0, header_end = 0, buckets_off = 0, bucket_bytes = 0, chain_off = 0;
  if (!table_bytes(bloom_words, sizeof(ElfW(Addr)), bloom_bytes) ||
      !checked_add(off, 4 * sizeof(uint32_t), header_end) ||
      !checked_add(header_end, bloom_bytes, buckets_off) ||
      !read_items(f, buckets_off, nbuckets, buckets) ||
      !table_bytes(nbuckets, sizeof(uint32_t), bucket_bytes) ||
      !checked_add(buckets_off, bucket_bytes, chain_off))
    return 0;
  uint64_t last = 0;
  for (uint32_t b : buckets) last = std::max<uint64_t>(last, b);
  if (last < symoffset) return symoffset;
  // Walk the last chain to its end bit (at most 2^20 entries). last >= symoffset here.
  for (uint64_t k = last - symoffset; k < last - symoffset + (1u << 20); ++k) {
    uint64_t entry_bytes = 0, entry_off = 0;
    if (!table_bytes(k, sizeof(uint32_t), entry_bytes) ||
        !checked_add(chain_off, entry_bytes, entry_off) || !read_items(f, entry_off, 1, chain))
      return 0;
    if (chain[0] & 1) return k + symoffset + 1;  // < 2^32 + 2^20 + 2^32: no wrap
  }
  return 0;
}

// For a file without section headers: .dynsym found through PT_DYNAMIC (DT_SYMTAB, DT_STRTAB,
// DT_STRSZ, and DT_HASH or DT_GNU_HASH for the count). Silent when anything is missing: this
// only feeds a warning, and dlopen itself judges the dynamic section.
void scan_exports_dynamic(const File& f, const std::vector<Phdr>& ph, ElfCheck& check) {
  using Dyn = ElfW(Dyn);
  std::vector<Dyn> dyn;
  for (const Phdr& p : ph)
    if (p.p_type == PT_DYNAMIC && !read_items(f, p.p_offset, p.p_filesz / sizeof(Dyn), dyn))
      return;
  uint64_t symtab = 0, strtab = 0, strsz = 0, syment = 0, hash = 0, gnu_hash = 0;
  for (const Dyn& d : dyn) {
    if (d.d_tag == DT_NULL) break;
    switch (d.d_tag) {
      case DT_SYMTAB: symtab = d.d_un.d_ptr; break;
      case DT_STRTAB: strtab = d.d_un.d_ptr; break;
      case DT_STRSZ: strsz = d.d_un.d_val; break;
      case DT_SYMENT: syment = d.d_un.d_val; break;
      case DT_HASH: hash = d.d_un.d_ptr; break;
      case DT_GNU_HASH: gnu_hash = d.d_un.d_ptr; break;
      default: break;
    }
  }
  uint64_t sym_off = 0, str_off = 0, hash_off = 0, count = 0;
  if (syment != sizeof(Sym) || !file_offset(ph, symtab, sym_off) ||
      !file_offset(ph, strtab, str_off) || !outside("", str_off, strsz, f.size).empty())
    return;
  std::vector<uint32_t> words;
  if (hash && file_offset(ph, hash, hash_off) && read_items(f, hash_off, 2, words))
    count = words[1];  // nchain: the number of symbols
  else if (gnu_hash && file_offset(ph, gnu_hash, hash_off))
    count = gnu_hash_symbol_count(f, hash_off);
  std::vector<Sym> syms;
  std::string names(strsz, '\0');
  if (count == 0 || !read_items(f, sym_off, count, syms) || !f.read(str_off, names.data(), strsz))
    return;
  collect_exports(syms, names, check);
}

// Fills check.extra_exports from the section headers' SHT_DYNSYM (bounds-checked), or through
// PT_DYNAMIC when there are no section headers. Returns an error for a section header table
// that does not fit the file.
std::string scan_exports(const File& f, const Ehdr& eh, const std::vector<Phdr>& ph,
                         ElfCheck& check) {
  if (eh.e_shoff == 0) {  // stripped of section headers (sstrip)
    scan_exports_dynamic(f, ph, check);
    return {};
  }
  if (eh.e_shentsize != sizeof(Shdr))
    return "section header entry size " + std::to_string(eh.e_shentsize) + ", expected " +
           std::to_string(sizeof(Shdr));
  uint64_t shnum = eh.e_shnum;
  if (shnum == 0) {  // extended numbering: the count is in section 0's sh_size
    if (auto e = outside("the section header table", eh.e_shoff, sizeof(Shdr), f.size); !e.empty())
      return e;
    Shdr first{};
    if (!f.read(eh.e_shoff, &first, sizeof first)) return "cannot read section header 0";
    shnum = first.sh_size;
  }
  uint64_t bytes = 0;
  if (!table_bytes(shnum, sizeof(Shdr), bytes))
    return "section header count " + std::to_string(shnum) + " overflows";
  if (auto e = outside("the section header table", eh.e_shoff, bytes, f.size); !e.empty()) return e;
  std::vector<Shdr> sh(shnum);
  if (shnum && !f.read(eh.e_shoff, sh.data(), bytes)) return "cannot read the section headers";

  for (const Shdr& s : sh) {
    if (s.sh_type != SHT_DYNSYM) continue;
    if (s.sh_entsize != sizeof(Sym) || s.sh_link >= shnum) return {};  // unusual: not checked
    const Shdr& str = sh[s.sh_link];
    if (str.sh_type != SHT_STRTAB) return {};
    if (auto e = outside(".dynsym", s.sh_offset, s.sh_size, f.size); !e.empty()) return e;
    if (auto e = outside(".dynstr", str.sh_offset, str.sh_size, f.size); !e.empty()) return e;
    std::vector<Sym> syms(s.sh_size / sizeof(Sym));
    std::string names(str.sh_size, '\0');
    if (!f.read(s.sh_offset, syms.data(), syms.size() * sizeof(Sym)) ||
        !f.read(str.sh_offset, names.data(), names.size()))
      return "cannot read .dynsym";
    collect_exports(syms, names, check);
    return {};
  }
  scan_exports_dynamic(f, ph, check);  // section headers without .dynsym
  return {};
}

std::string check_headers(const File& f, ElfCheck& check) {
  const uint64_t size = f.size;
  if (size == 0) return "empty file (0 bytes)";
  unsigned char ident[EI_NIDENT] = {0};
  const size_t head = size < EI_NIDENT ? static_cast<size_t>(size) : EI_NIDENT;
  if (!f.read(0, ident, head)) return "cannot read the ELF header";
  if (head < SELFMAG || std::memcmp(ident, ELFMAG, SELFMAG) != 0)
    return "not an ELF file (starts with " + quoted_start(ident, head, size) + ")";
  if (size < sizeof(Ehdr))
    return "truncated: " + std::to_string(size) + " bytes, the ELF header alone needs " +
           std::to_string(sizeof(Ehdr));
  if (ident[EI_CLASS] != kHostClass)
    return std::string("ELF class ") + class_text(ident[EI_CLASS]) + ", this host loads " +
           class_text(kHostClass) + " objects";
  if (ident[EI_DATA] != kHostData)
    return std::string("ELF data ") + data_text(ident[EI_DATA]) + ", this host is " +
           data_text(kHostData);
  if (ident[EI_VERSION] != EV_CURRENT)
    return "ELF version " + std::to_string(ident[EI_VERSION]) + ", expected 1";
  Ehdr eh{};
  if (!f.read(0, &eh, sizeof eh)) return "cannot read the ELF header";
  if (kHostMachine != EM_NONE && eh.e_machine != kHostMachine)
    return "built for " + machine_text(eh.e_machine) + ", this host is " +
           machine_text(kHostMachine);
  if (eh.e_type != ET_DYN)
    return std::string("ELF type ") + type_text(eh.e_type) + " (e_type " +
           std::to_string(eh.e_type) + "), expected DYN (a shared object)";

  if (eh.e_phnum == 0 || eh.e_phoff == 0) return "no program headers";
  if (eh.e_phentsize != sizeof(Phdr))
    return "program header entry size " + std::to_string(eh.e_phentsize) + ", expected " +
           std::to_string(sizeof(Phdr));
  uint64_t ph_bytes = 0;
  if (!table_bytes(eh.e_phnum, sizeof(Phdr), ph_bytes)) return "program header count overflows";
  if (auto e = outside("the program header table", eh.e_phoff, ph_bytes, size); !e.empty())
    return e;
  std::vector<Phdr> ph(eh.e_phnum);
  if (!f.read(eh.e_phoff, ph.data(), ph_bytes)) return "cannot read the program headers";
  int loads = 0, dynamics = 0;
  for (size_t i = 0; i < ph.size(); ++i) {
    const Phdr& p = ph[i];
    if (p.p_type != PT_LOAD && p.p_type != PT_DYNAMIC) continue;
    const std::string what = std::string(p.p_type == PT_LOAD ? "PT_LOAD" : "PT_DYNAMIC") +
                             " segment (program header " + std::to_string(i) + ")";
    if (auto e = outside(what.c_str(), p.p_offset, p.p_filesz, size); !e.empty()) return e;
    if (p.p_type == PT_LOAD) {
      ++loads;
      if (p.p_filesz > p.p_memsz)
        return what + ": file size " + std::to_string(p.p_filesz) + " exceeds memory size " +
               std::to_string(p.p_memsz);
    } else {
      ++dynamics;
    }
  }
  if (loads == 0) return "no PT_LOAD segment";
  if (dynamics == 0) return "no PT_DYNAMIC segment (not a dynamically linked shared object)";
  return scan_exports(f, eh, ph, check);
}

}  // namespace

ElfCheck check_elf(const std::string& path) noexcept {
  ElfCheck check;
  try {
    File f(path);
    if (f.fd() < 0) {
      check.error = "cannot be opened: " + std::string(std::strerror(errno));
      return check;
    }
    struct stat st {};
    if (::fstat(f.fd(), &st) != 0) {
      check.error = "cannot stat: " + std::string(std::strerror(errno));
      return check;
    }
    if (!S_ISREG(st.st_mode)) {
      check.error = S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file";
      return check;
    }
    f.size = static_cast<uint64_t>(st.st_size);
    check.error = check_headers(f, check);
    if (!check.error.empty()) check.extra_exports.clear();
  } catch (...) {  // out of memory for the symbol tables
    check.error = "out of memory while reading the ELF headers";
  }
  return check;
}

}  // namespace ferrum::detail
