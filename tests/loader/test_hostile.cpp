// Loader tests for hostile and broken files: what is refused before dlopen (ELF checks,
// ownership/mode rule), extra exports, `auto` and context creation, long names, and
// ferrum-info's isolation of plugins that crash or exit.
#include "loader_test_support.hpp"

#include <elf.h>
#include <link.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

using namespace ferrum_test;

namespace {

using Ehdr = ElfW(Ehdr);
using Phdr = ElfW(Phdr);

Ehdr header_of(const std::string& bytes) {
  Ehdr eh{};
  REQUIRE(bytes.size() >= sizeof eh);
  std::memcpy(&eh, bytes.data(), sizeof eh);
  return eh;
}

// The candidate for a file written into a fresh 0700 directory from `bytes`.
struct Written {
  TempDir dir;
  std::string path;
  explicit Written(const std::string& bytes, const std::string& name = "libferrum-hostile.so") {
    path = dir.copy(fixture_path("good"), name, 0644);
    write_file(path, bytes);
  }
};

const std::string kNotLoadable = "not a loadable shared object: ";

// A cut inside the last PT_LOAD segment (where dlopen used to SIGBUS), and the reason the
// loader gives for it: the first PT_LOAD/PT_DYNAMIC, in header order, that ends past it.
struct LoadCut {
  size_t keep = 0;
  std::string reason;
};
LoadCut cut_inside_segments(const std::string& bytes) {
  const Ehdr eh = header_of(bytes);
  std::vector<Phdr> ph(eh.e_phnum);
  REQUIRE(eh.e_phoff + ph.size() * sizeof(Phdr) <= bytes.size());
  std::memcpy(ph.data(), bytes.data() + eh.e_phoff, ph.size() * sizeof(Phdr));
  LoadCut cut;
  for (const Phdr& p : ph)
    if (p.p_type == PT_LOAD && p.p_filesz > 0) cut.keep = p.p_offset + p.p_filesz / 2;
  REQUIRE(cut.keep > 0);
  for (size_t i = 0; i < ph.size(); ++i) {
    const Phdr& p = ph[i];
    if ((p.p_type != PT_LOAD && p.p_type != PT_DYNAMIC) || p.p_offset + p.p_filesz <= cut.keep)
      continue;
    cut.reason = kNotLoadable + "truncated: " + (p.p_type == PT_LOAD ? "PT_LOAD" : "PT_DYNAMIC") +
                 " segment (program header " + std::to_string(i) + ") ends at byte " +
                 std::to_string(p.p_offset + p.p_filesz) + " (offset " +
                 std::to_string(p.p_offset) + " + size " + std::to_string(p.p_filesz) +
                 "), the file has " + std::to_string(cut.keep) + " bytes";
    break;
  }
  return cut;
}

ferrum::PluginCandidate inspect(const std::string& path) {
  Isolated iso("/nonexistent-dir");
  return ferrum::inspect_plugin(path);
}

}  // namespace

// ---------------------------------------------------------------------------------
// ELF checks before dlopen
// ---------------------------------------------------------------------------------
TEST_CASE("files that are not shared objects for this machine are refused before dlopen",
          "[loader][elf]") {
  const std::string good = read_file(fixture_path("good"));
  const Ehdr eh = header_of(good);
  auto refused = [](const std::string& bytes) {
    Written w(bytes);
    auto c = inspect(w.path);
    CHECK(c.stage == ferrum::LoadStage::trusted);
    CHECK_FALSE(c.usable);
    CHECK(c.library == nullptr);
    return c.reason;
  };

  SECTION("empty") { CHECK(refused("") == kNotLoadable + "empty file (0 bytes)"); }
  SECTION("text") {
    CHECK(refused("hello, I am not a plugin\n") ==
          kNotLoadable + "not an ELF file (starts with \"hello, I am not ...\")");
    CHECK(refused("#!") == kNotLoadable + "not an ELF file (starts with \"#!\")");
  }
  SECTION("truncated inside the ELF header") {
    CHECK(refused(good.substr(0, 10)) ==
          kNotLoadable + "truncated: 10 bytes, the ELF header alone needs " +
              std::to_string(sizeof(Ehdr)));
  }
  SECTION("truncated inside the program header table") {
    const uint64_t bytes = uint64_t{eh.e_phnum} * sizeof(Phdr);
    const size_t keep = eh.e_phoff + 8;
    CHECK(refused(good.substr(0, keep)) ==
          kNotLoadable + "truncated: the program header table ends at byte " +
              std::to_string(eh.e_phoff + bytes) + " (offset " + std::to_string(eh.e_phoff) +
              " + size " + std::to_string(bytes) + "), the file has " + std::to_string(keep) +
              " bytes");
  }
  SECTION("truncated inside a PT_LOAD segment (dlopen would SIGBUS)") {
    const LoadCut cut = cut_inside_segments(good);
    CHECK_THAT(cut.reason, Catch::StartsWith(kNotLoadable + "truncated: PT_LOAD segment"));
    CHECK(refused(good.substr(0, cut.keep)) == cut.reason);
  }
  SECTION("truncated in the section header table (the last bytes)") {
    REQUIRE(eh.e_shoff != 0);
    const uint64_t bytes = uint64_t{eh.e_shnum} * eh.e_shentsize;
    REQUIRE(eh.e_shoff + bytes == good.size());  // the table ends the file
    const size_t keep = good.size() - 10;
    CHECK(refused(good.substr(0, keep)) ==
          kNotLoadable + "truncated: the section header table ends at byte " +
              std::to_string(good.size()) + " (offset " + std::to_string(eh.e_shoff) +
              " + size " + std::to_string(bytes) + "), the file has " + std::to_string(keep) +
              " bytes");
  }
  SECTION("another architecture") {
    std::string foreign = good;
#if defined(__x86_64__)
    const uint16_t other = EM_AARCH64;
    const std::string expected = "built for AArch64 (e_machine 183), this host is x86-64 (e_machine 62)";
#else
    const uint16_t other = EM_X86_64;
    const std::string expected = "built for x86-64 (e_machine 62), this host is";
#endif
    std::memcpy(foreign.data() + offsetof(Ehdr, e_machine), &other, sizeof other);
#if defined(__x86_64__)
    CHECK(refused(foreign) == kNotLoadable + expected);
#else
    CHECK_THAT(refused(foreign), Catch::StartsWith(kNotLoadable + expected));
#endif
  }
  SECTION("another class, byte order, type") {
    std::string other = good;
    other[EI_CLASS] = ELFCLASS32;
    CHECK(refused(other) == kNotLoadable + "ELF class 32-bit, this host loads 64-bit objects");
    other = good;
    other[EI_DATA] = ELFDATA2MSB;
    CHECK(refused(other) == kNotLoadable + "ELF data big-endian, this host is little-endian");
    other = good;
    const uint16_t exec = ET_EXEC;
    std::memcpy(other.data() + offsetof(Ehdr, e_type), &exec, sizeof exec);
    CHECK(refused(other) == kNotLoadable + "ELF type EXEC (e_type 2), expected DYN (a shared object)");
  }
  SECTION("a directory named like a plugin") {
    TempDir d;
    fs::create_directory(d.path / "libferrum-dir.so");
    ::chmod((d.path / "libferrum-dir.so").c_str(), 0755);
    auto c = inspect((d.path / "libferrum-dir.so").string());
    CHECK(c.stage == ferrum::LoadStage::trusted);
    CHECK(c.reason == kNotLoadable + "is a directory");
  }
}

TEST_CASE("a truncated plugin in a search directory no longer breaks auto", "[loader][elf]") {
  TempDir dir;
  const std::string good = read_file(fixture_path("good"));
  const std::string bad = dir.copy(fixture_path("good"), "libferrum-broken.so", 0644);
  const LoadCut cut = cut_inside_segments(good);
  write_file(bad, good.substr(0, cut.keep));
  fs::create_symlink(fixture_path("good"), dir.path / "libferrum-fixture_good.so");
  Isolated iso(dir.str());
  auto b = ferrum::load_backend();
  CHECK(ferrum::name_of(*b.library) == "fixture_good");
  REQUIRE(b.candidates.size() == 2);
  CHECK(b.candidates[0].path == bad);
  CHECK(b.candidates[0].stage == ferrum::LoadStage::trusted);
  CHECK(b.candidates[0].reason == cut.reason);
  auto all = ferrum::discover_plugins(true);
  REQUIRE(all.size() == 2);
  CHECK(all[1].usable);
}

TEST_CASE("symbols exported besides the entry symbol are warned about", "[loader][elf]") {
  Isolated iso(kFixtureDir + "-exports/extra_export");
  auto cs = ferrum::discover_plugins(true);
  REQUIRE(cs.size() == 1);
  CHECK(cs[0].usable);
  CHECK(cs[0].warnings ==
        std::vector<std::string>{"exports 2 symbol(s) besides ferrum_plugin_entry_v1: "
                                 "fixture_extra_data, fixture_extra_function (a plugin should "
                                 "export only its entry symbol)"});
  // Without section headers (as sstrip leaves a file) .dynsym is found through PT_DYNAMIC.
  TempDir dir;
  const std::string copy = dir.copy(cs[0].path, "libferrum-stripped.so", 0755);
  std::string bytes = read_file(copy);
  Ehdr eh = header_of(bytes);
  eh.e_shoff = 0;
  eh.e_shnum = 0;
  eh.e_shstrndx = 0;
  std::memcpy(bytes.data(), &eh, sizeof eh);
  write_file(copy, bytes);
  auto stripped = ferrum::inspect_plugin(copy);
  CHECK(stripped.usable);
  CHECK(stripped.warnings == cs[0].warnings);

  // Our own plugins export only the entry symbol.
  for (const std::string& path : {kCexample, fixture_path("good")}) {
    auto c = ferrum::inspect_plugin(path);
    CHECK(c.usable);
    CHECK(c.warnings.empty());
  }
}

// ---------------------------------------------------------------------------------
// Ownership and mode
// ---------------------------------------------------------------------------------
TEST_CASE("a plugin file or directory others can write is refused unless opted in",
          "[loader][trust]") {
  TempDir dir;
  const std::string optin = " (FERRUM_ALLOW_INSECURE_PLUGINS=1 loads it anyway)";
  auto refused = [&](const std::string& path) {
    auto c = inspect(path);
    CHECK(c.stage == ferrum::LoadStage::found);
    CHECK_FALSE(c.usable);
    CHECK(c.library == nullptr);
    return c.reason;
  };

  SECTION("group-writable file") {
    auto p = dir.copy(fixture_path("good"), "libferrum-g.so", 0664);
    CHECK(refused(p) == "refused: plugin file " + p + " is writable by group (mode 0664)" + optin);
  }
  SECTION("world-writable file") {
    auto p = dir.copy(fixture_path("good"), "libferrum-o.so", 0646);
    CHECK(refused(p) == "refused: plugin file " + p + " is writable by others (mode 0646)" + optin);
  }
  SECTION("group- and world-writable directory, also through a symlink and discovery") {
    fs::create_directory(dir.path / "open");
    REQUIRE(::chmod((dir.path / "open").c_str(), 0777) == 0);
    auto p = dir.copy(fixture_path("good"), "open/libferrum-d.so", 0755);
    const std::string why = "directory " + (dir.path / "open").string() +
                            " is writable by group and others (mode 0777)";
    CHECK(refused(p) == "refused: " + why + optin);

    // A symlink in a safe directory to the file in the open one: the real directory counts.
    fs::create_directory(dir.path / "safe");
    REQUIRE(::chmod((dir.path / "safe").c_str(), 0700) == 0);
    fs::create_symlink(p, dir.path / "safe" / "libferrum-d.so");
    Isolated iso((dir.path / "safe").string());
    auto cs = ferrum::discover_plugins(true);
    REQUIRE(cs.size() == 1);
    CHECK(cs[0].reason == "refused: " + why + optin);

    SECTION("FERRUM_ALLOW_INSECURE_PLUGINS=1 loads it, with a warning") {
      iso.env.set("FERRUM_ALLOW_INSECURE_PLUGINS", "1");
      auto ok = ferrum::discover_plugins(true);
      REQUIRE(ok.size() == 1);
      CHECK(ok[0].usable);
      CHECK(ok[0].warnings ==
            std::vector<std::string>{
                "insecure, loaded only because FERRUM_ALLOW_INSECURE_PLUGINS=1: " + why});
      CHECK(ferrum::name_of(*ferrum::load_backend().library) == "fixture_good");
    }
    SECTION("FERRUM_ALLOW_INSECURE_PLUGINS=0 is the default") {
      iso.env.set("FERRUM_ALLOW_INSECURE_PLUGINS", "0");
      CHECK_FALSE(ferrum::discover_plugins(true)[0].usable);
    }
    SECTION("any other value is a config error") {
      iso.env.set("FERRUM_ALLOW_INSECURE_PLUGINS", "yes");
      auto e = load_error("");
      CHECK(e.code() == ferrum::ErrorCode::config_error);
      CHECK(std::string(e.what()) == "FERRUM_ALLOW_INSECURE_PLUGINS='yes' must be 0 or 1");
    }
  }
  SECTION("group-writable directory named on FERRUM_PLUGIN_PATH") {
    fs::create_directory(dir.path / "g");
    REQUIRE(::chmod((dir.path / "g").c_str(), 0770) == 0);
    dir.copy(fixture_path("good"), "g/libferrum-fixture_good.so", 0755);
    Isolated iso((dir.path / "g").string());
    auto e = load_error("fixture_good");
    CHECK_THAT(e.what(), Contains("refused: directory " + (dir.path / "g").string() +
                                  " is writable by group (mode 0770)" + optin));
  }
  SECTION("a file owned by another non-root user (needs root to set up)") {
    if (::geteuid() != 0) {
      WARN("not root: cannot chown a file to another user; part skipped");
      return;
    }
    auto p = dir.copy(fixture_path("good"), "libferrum-u.so", 0755);
    REQUIRE(::chown(p.c_str(), 65534, 65534) == 0);
    CHECK(refused(p) == "refused: plugin file " + p +
                            " is owned by uid 65534, neither root nor this process's user (uid 0)" +
                            optin);
  }
}

// ---------------------------------------------------------------------------------
// auto: only a plugin that can create a context
// ---------------------------------------------------------------------------------
TEST_CASE("auto skips a plugin whose context creation fails", "[loader][auto]") {
  const std::string why =
      "context creation on device 0 failed: new_context returned DEVICE_ERROR: fixture: no "
      "context today";
  SECTION("a lower-scored plugin is chosen instead") {
    Isolated iso(fixture_dir("context_fails") + ":" + fixture_dir("good"));
    auto b = ferrum::load_backend();
    CHECK(ferrum::name_of(*b.library) == "fixture_good");
    REQUIRE(b.candidates.size() == 2);
    CHECK(b.candidates[0].name == "fixture_context_fails");
    CHECK(b.candidates[0].score == 50);  // the better score, passed over
    CHECK_FALSE(b.candidates[0].usable);
    CHECK(b.candidates[0].reason == why);
  }
  SECTION("none left: the error lists each candidate and why") {
    Isolated iso(fixture_dir("context_fails") + ":" + fixture_dir("probe_zero"));
    auto e = load_error("auto");
    CHECK(e.code() == ferrum::ErrorCode::load_failed);
    CHECK_THAT(e.what(), Contains(fixture_path("context_fails") + ": initialized: " + why));
    CHECK_THAT(e.what(), Contains(fixture_path("probe_zero") +
                                  ": abi: probe rejected it (score 0): fixture: no device"));
  }
  SECTION("named explicitly it still loads (the caller asked for it)") {
    Isolated iso(fixture_dir("context_fails"));
    CHECK(ferrum::name_of(*ferrum::load_backend("fixture_context_fails").library) ==
          "fixture_context_fails");
  }
}

// ---------------------------------------------------------------------------------
// Long names are echoed truncated
// ---------------------------------------------------------------------------------
TEST_CASE("a huge backend name is echoed truncated", "[loader][messages]") {
  Isolated iso(fixture_dir("good"));
  const std::string huge(1 << 20, 'x');
  const std::string shown = std::string(128, 'x') + "... (1048576 bytes)";
  auto e = load_error(huge);
  const std::string msg = e.what();
  CHECK(msg.size() < 2000);
  CHECK_THAT(msg, Catch::StartsWith("backend '" + shown + "' (from argument) could not be loaded: "
                                    "no libferrum-" + shown + ".so in the plugin directories"));
  CHECK_THAT(msg, Contains("asked for '" + shown + "'"));

  iso.env.set("FERRUM_BACKEND", huge + ":7");
  CHECK_THAT(load_error("").what(),
             Catch::StartsWith("backend '" + std::string(128, 'x') +
                               "... (1048578 bytes)' (from FERRUM_BACKEND)"));

  // A multi-byte character at the cut is not split.
  const std::string accents = std::string(127, 'a') + "\xc3\xa9" + std::string(100, 'b');
  CHECK_THAT(load_error(accents).what(),
             Catch::StartsWith("backend '" + std::string(127, 'a') + "... (229 bytes)'"));
  // A path that long: "not found" is truncated too.
  const std::string long_path = load_error("/" + huge + ".so").what();
  CHECK(long_path.size() < 2000);
  CHECK_THAT(long_path, Contains("not found: /" + std::string(127, 'x') + "... (1048580 bytes)"));
}

// ---------------------------------------------------------------------------------
// ferrum-info: isolation, other majors, usage
// ---------------------------------------------------------------------------------
#ifdef FERRUM_TEST_INFO_TOOL
namespace {

struct ToolRun {
  int status = -1;
  std::string out;
};

// Runs ferrum-info with `args` (stdout captured, stderr dropped) in the isolated environment.
ToolRun ferrum_info(const std::string& args) {
  ToolRun r;
  const std::string cmd = std::string("'") + FERRUM_TEST_INFO_TOOL + "' " + args + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

nlohmann::json plugins_of(const std::string& args) {
  auto r = ferrum_info(args);
  REQUIRE(r.status == 0);
  return nlohmann::json::parse(r.out).at("plugins");
}

}  // namespace

TEST_CASE("ferrum-info isolates plugins that crash or exit, and carries on", "[loader][info]") {
  Isolated iso(fixture_dir("probe_crash") + ":" + fixture_dir("ctor_abort") + ":" +
               fixture_dir("ctor_exit") + ":" + fixture_dir("good") + ":" +
               fixture_dir("wrong_major"));
  for (const char* mode : {"--json", "--json --isolate --timeout 30"}) {
    INFO(mode);
    auto plugins = plugins_of(mode);
    REQUIRE(plugins.size() == 5);
    std::map<std::string, nlohmann::json> by_name;
    for (auto& p : plugins) by_name[p.at("name").get<std::string>()] = p;

    auto& crash = by_name.at("fixture_probe_crash");
    CHECK(crash.at("reason") == "crashed with SIGSEGV during probe");
    CHECK(crash.at("rejected_at") == "probe");
    CHECK(crash.at("stage") == "abi");
    auto& abort_ = by_name.at("fixture_ctor_abort");
    CHECK(abort_.at("reason") == "crashed with SIGABRT during dlopen (the plugin's constructors)");
    CHECK(abort_.at("rejected_at") == "dlopen");
    auto& exit_ = by_name.at("fixture_ctor_exit");
    CHECK(exit_.at("reason") == "exited with status 3 during dlopen (the plugin's constructors)");

    auto& good = by_name.at("fixture_good");
    CHECK(good.at("rejected_at").is_null());
    CHECK(good.at("isolated") == true);
    CHECK(good.at("devices").size() == 1);
    CHECK(good.at("ops").at("buffer_info") == true);
    CHECK(good.at("ops").at("gemm") == false);

    // A table of another major: its prefix is shown, its op matrix never read.
    auto& major = by_name.at("fixture_wrong_major");
    CHECK(major.at("reason") == "ABI major 2, host supports 1");
    CHECK(major.at("abi") == "2." + std::to_string(FERRUM_ABI_VERSION_MINOR));  // the fixture keeps its minor
    CHECK(major.at("ops").is_null());
  }
}

TEST_CASE("ferrum-info kills an isolated plugin that hangs", "[loader][info]") {
  Isolated iso(fixture_dir("probe_hang") + ":" + fixture_dir("good"));
  auto plugins = plugins_of("--json --timeout 1");
  REQUIRE(plugins.size() == 2);
  CHECK(plugins[0].at("name") == "fixture_probe_hang");
  CHECK(plugins[0].at("reason") == "did not finish within 1 s during probe (killed)");
  CHECK(plugins[0].at("rejected_at") == "probe");
  CHECK(plugins[1].at("rejected_at").is_null());
}

TEST_CASE("ferrum-info --no-isolate: same answers in process, no matrix for another major",
          "[loader][info]") {
  Isolated iso(fixture_dir("good") + ":" + fixture_dir("wrong_major") + ":" +
               fixture_dir("no_memory") + ":" + kFixtureDir + "-exports/extra_export");
  auto plugins = plugins_of("--json --no-isolate");
  REQUIRE(plugins.size() == 4);
  CHECK(plugins[0].at("name") == "fixture_good");
  CHECK(plugins[0].at("isolated") == false);
  CHECK(plugins[0].at("ops").at("buffer_info") == true);
  CHECK(plugins[1].at("name") == "fixture_wrong_major");
  CHECK(plugins[1].at("ops").is_null());
  CHECK(plugins[2].at("rejected_at") == "abi");
  CHECK(plugins[2].at("ops").is_null());
  CHECK(plugins[3].at("warnings").size() == 1);

  auto text = ferrum_info("--no-isolate");
  CHECK(text.status == 0);
  CHECK_THAT(text.out, Contains("   WARNING  exports 2 symbol(s) besides ferrum_plugin_entry_v1"));
  CHECK_THAT(text.out, Contains("   reason   ABI major 2, host supports 1"));
}

TEST_CASE("ferrum-info usage", "[loader][info]") {
  Isolated iso(fixture_dir("good"));
  auto help = ferrum_info("--help");
  CHECK(help.status == 0);
  CHECK_THAT(help.out, Contains("--no-isolate"));
  CHECK_THAT(help.out, Contains("--timeout"));
  CHECK(ferrum_info("--bogus").status == 2);
  CHECK(ferrum_info("--timeout 0").status == 2);
  CHECK(ferrum_info("--timeout 99999999999999999999").status == 2);
  CHECK(ferrum_info("--timeout abc").status == 2);
  CHECK(ferrum_info("--timeout -5").status == 2);
  CHECK(ferrum_info("--timeout 0x10").status == 2);
  CHECK(ferrum_info("--timeout 3601").status == 2);
  CHECK(ferrum_info("--timeout 3600").status == 0);
  CHECK(ferrum_info("--json extra").status == 2);
  auto text = ferrum_info("");
  CHECK(text.status == 0);
  CHECK_THAT(text.out, Contains("== fixture_good"));
  CHECK_THAT(text.out, Contains("stage    initialized (usable)"));
}
#endif

// ---------------------------------------------------------------------------------
// Privileged processes ignore the variables that choose code to load
// ---------------------------------------------------------------------------------
TEST_CASE("a setuid process ignores FERRUM_PLUGIN_PATH, FERRUM_BACKEND, FERRUM_CONFIG",
          "[loader][trust]") {
  if (::geteuid() != 0) {
    WARN("not root: cannot make a setuid copy owned by another user; test skipped");
    return;
  }
  TempDir cfg;
  const std::string config = cfg.write("c.json", R"({"backend": "cexample"})");
  Isolated iso(fixture_dir("good"));
  iso.env.set("FERRUM_BACKEND", "fixture_good").set("FERRUM_CONFIG", config);
  // A directory under the build tree: /tmp may be mounted nosuid.
  const fs::path dir = fs::path(FERRUM_TEST_PRIVILEGED_PROBE).parent_path() / "setuid-probe";
  fs::remove_all(dir);
  fs::create_directories(dir);
  REQUIRE(::chmod(dir.c_str(), 0755) == 0);
  auto run = [&](const std::string& exe) {
    const std::string cmd = "'" + exe + "' 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ::pclose(p);
    return out;
  };

  // Control: an ordinary copy honours the variables.
  const std::string plain = (dir / "plain").string();
  fs::copy_file(FERRUM_TEST_PRIVILEGED_PROBE, plain);
  REQUIRE(::chmod(plain.c_str(), 0755) == 0);
  const std::string normal = run(plain);
  CHECK_THAT(normal, Contains("dir: " + fixture_dir("good") + "\n"));
  CHECK_THAT(normal, Contains("source: FERRUM_BACKEND\n"));

  // setuid to uid 65534: AT_SECURE, so secure_getenv returns NULL for all of them.
  const std::string suid = (dir / "suid").string();
  fs::copy_file(FERRUM_TEST_PRIVILEGED_PROBE, suid);
  REQUIRE(::chown(suid.c_str(), 65534, 65534) == 0);
  REQUIRE(::chmod(suid.c_str(), 04755) == 0);
  const std::string privileged = run(suid);
  INFO(privileged);
  CHECK_THAT(privileged, !Contains(fixture_dir("good")));
  CHECK_THAT(privileged, !Contains("source: FERRUM_BACKEND"));
  CHECK_THAT(privileged, !Contains("config " + config));
  for (const char* var : {"FERRUM_PLUGIN_PATH", "FERRUM_BACKEND", "FERRUM_CONFIG"})
    CHECK_THAT(privileged, Contains(std::string("loader: ") + var +
                                    " is ignored: this is a privileged process (setuid, setgid "
                                    "or file capabilities), which loads plugins only from the "
                                    "default locations"));
  fs::remove_all(dir);
}
