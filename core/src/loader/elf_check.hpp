// Internal: reads a candidate plugin file's ELF headers before dlopen does.
//
// dlopen maps a file's PT_LOAD segments without checking that they lie inside the file; a
// truncated copy then faults (SIGBUS) the first time the dynamic linker touches a page past
// EOF. check_elf() rejects, with a reason, anything that is not a complete shared object for
// this machine, and lists the defined symbols the object exports besides the entry symbol.
#pragma once

#include <string>
#include <vector>

namespace ferrum::detail {

struct ElfCheck {
  std::string error;  // "" when the file is a loadable shared object for this host
  // Defined dynamic symbols other than the entry symbol and the linker's own
  // (_init, _fini, _edata, _end, __bss_start). Empty when none or not checked.
  std::vector<std::string> extra_exports;
  bool exports_checked = false;  // false: the file has no section headers / .dynsym
};

// Reads only `path` (open, fstat, pread): never maps or runs it. Never throws.
ElfCheck check_elf(const std::string& path) noexcept;

}  // namespace ferrum::detail
