// Loader tests: every fixture's diagnosis, precedence, config errors, no fallback,
// several plugins at once, sharing, load/unload cycles, and the C example through the
// raw ABI table.
#include "loader_test_support.hpp"

#include <ferrum/common/op_info_gen.hpp>

using namespace ferrum_test;

// ---------------------------------------------------------------------------------
// Fixture diagnostics
// ---------------------------------------------------------------------------------
TEST_CASE("no_entry: stops at opened, names the missing entry symbol", "[loader][fixture]") {
  auto c = only_candidate("no_entry");
  CHECK(c.stage == ferrum::LoadStage::opened);
  CHECK_FALSE(c.usable);
  CHECK(c.reason == "no entry symbol ferrum_plugin_entry_v1: not a ferrum 1.x plugin");
  CHECK(c.library == nullptr);
  CHECK(c.name == "fixture_no_entry");  // from the file name
}

TEST_CASE("wrong_major: table readable, rejected at the ABI check", "[loader][fixture]") {
  auto c = only_candidate("wrong_major");
  CHECK(c.stage == ferrum::LoadStage::prefix);
  CHECK(c.reason == "ABI major 2, host supports 1");
  CHECK(c.abi_major == 2);
  REQUIRE(c.library != nullptr);  // set from stage prefix on
  CHECK(std::string(ferrum::api_of(*c.library)->plugin_name) == "fixture_wrong_major");
}

TEST_CASE("short_table: rejected at the frozen-prefix check", "[loader][fixture]") {
  auto c = only_candidate("short_table");
  CHECK(c.stage == ferrum::LoadStage::entry);
  CHECK_THAT(c.reason, Contains("struct_size 16 is smaller than the frozen prefix (40 bytes)"));
  CHECK(c.library == nullptr);
}

TEST_CASE("table checks: a missing required family or a short table is rejected at abi",
          "[loader][fixture]") {
  const std::string kAbi = "ABI 1." + std::to_string(FERRUM_ABI_VERSION_MINOR);
  const std::map<std::string, std::string> expected = {
      {"no_memory",
       "memory family missing (the API table's memory is NULL): every plugin must provide it"},
      {"no_context",
       "context family missing (the API table's context is NULL): every plugin must provide it"},
      // the fixtures declare the headers' minor (1.1 set these sizes; 1.2 kept them)
      {"zero_subtable", "memory table struct_size 0 is smaller than " + kAbi + " requires (128 bytes)"},
      {"short_api", "API table struct_size 100 is smaller than " + kAbi + " requires (192 bytes)"},
  };
  for (const auto& [variant, reason] : expected) {
    INFO(variant);
    auto c = only_candidate(variant);
    CHECK(c.stage == ferrum::LoadStage::prefix);
    CHECK_FALSE(c.usable);
    CHECK(c.reason == reason);
    CHECK(c.score == 0);  // never probed
  }
}

TEST_CASE("good: optional families absent are fine (NULL family, NULL slots)", "[loader][fixture]") {
  auto c = only_candidate("good");
  REQUIRE(c.library);
  const ferrum_plugin_api* api = ferrum::api_of(*c.library);
  CHECK(api->dense == nullptr);
  CHECK(ferrum::common::find_slot(api, FERRUM_OP_GEMM) == nullptr);
  CHECK(ferrum::common::find_slot(api, FERRUM_OP_BUFFER_INFO) != nullptr);
  CHECK(ferrum::common::find_slot(api, FERRUM_OP_ALLOC) == nullptr);
  CHECK(c.warnings.empty());
}

TEST_CASE("failing_init: stops at probed with the plugin's error detail", "[loader][fixture]") {
  auto c = only_candidate("failing_init");
  CHECK(c.stage == ferrum::LoadStage::probed);
  CHECK_FALSE(c.usable);
  CHECK(c.reason == "init failed: INTERNAL: fixture: init failed on purpose");

  Isolated iso(fixture_dir("failing_init"));
  auto e = load_error("fixture_failing_init");
  CHECK(e.code() == ferrum::ErrorCode::load_failed);
  CHECK_THAT(e.what(), Contains("fixture: init failed on purpose"));
}

TEST_CASE("missing_dep: dlopen fails and the dependency is named", "[loader][fixture]") {
  auto c = only_candidate("missing_dep");
  CHECK(c.stage == ferrum::LoadStage::elf);
  CHECK_THAT(c.reason, Contains("dlopen failed: "));
  CHECK_THAT(c.reason, Contains("cannot open shared object file"));
  CHECK_THAT(c.reason, Contains("(missing dependency 'libferrum_fixture_missing.so')"));
  CHECK(c.library == nullptr);
}

TEST_CASE("newer_minor: a larger 1.7 table loads, extra slots are ignored", "[loader][fixture]") {
  auto c = only_candidate("newer_minor");
  CHECK(c.stage == ferrum::LoadStage::initialized);
  CHECK(c.usable);
  CHECK(c.abi_major == 1);
  CHECK(c.abi_minor == 7);
  REQUIRE(c.library);
  const ferrum_plugin_api* api = ferrum::api_of(*c.library);
  CHECK(api->struct_size > sizeof(ferrum_plugin_api));
  CHECK(ferrum::common::find_slot(api, FERRUM_OP_BUFFER_INFO) != nullptr);
  CHECK(ferrum::common::find_slot(api, FERRUM_OP_ALLOC) == nullptr);
}

TEST_CASE("probe_zero: rejected at the probe with its reason", "[loader][fixture]") {
  auto c = only_candidate("probe_zero");
  CHECK(c.stage == ferrum::LoadStage::abi);
  CHECK(c.score == 0);
  CHECK_THAT(c.reason, Contains("fixture: no device"));
  CHECK(c.library != nullptr);
}

TEST_CASE("good: initialised with its score, version, build info and devices", "[loader][fixture]") {
  auto c = only_candidate("good");
  CHECK(c.stage == ferrum::LoadStage::initialized);
  CHECK(c.usable);
  CHECK(c.score == 5);
  CHECK(c.name == "fixture_good");
  CHECK(c.version == "9.9.9");
  CHECK(c.build_info == "fixture fixture_good");
  CHECK(c.device_count == 1);
  CHECK(c.abi_major == FERRUM_ABI_VERSION_MAJOR);
  CHECK(c.abi_minor == FERRUM_ABI_VERSION_MINOR);
}

TEST_CASE("discover without initialize stops at probed", "[loader]") {
  Isolated iso(fixture_dir("good"));
  auto cs = ferrum::discover_plugins(false);
  REQUIRE(cs.size() == 1);
  CHECK(cs[0].stage == ferrum::LoadStage::probed);
  CHECK(cs[0].score == 5);
  CHECK_FALSE(cs[0].usable);
}

TEST_CASE("discovery lists every fixture, each taken as far as it goes", "[loader]") {
  std::string path;
  for (const char* v : {"no_entry", "wrong_major", "short_table", "no_memory", "no_context",
                        "zero_subtable", "short_api", "failing_init", "missing_dep",
                        "newer_minor", "probe_zero", "good"})
    path += (path.empty() ? "" : ":") + fixture_dir(v);
  Isolated iso(path);
  auto cs = ferrum::discover_plugins(true);
  CHECK(cs.size() == 12);
  int usable = 0;
  for (auto& c : cs) usable += c.usable;
  CHECK(usable == 2);  // newer_minor, good

  // auto picks the highest score among the usable ones.
  auto b = ferrum::load_backend();
  CHECK(ferrum::name_of(*b.library) == "fixture_good");
  CHECK(b.selection.source == "auto");
}

// ---------------------------------------------------------------------------------
// Named backends: no fallback, every candidate listed
// ---------------------------------------------------------------------------------
TEST_CASE("a named backend that fails is an error, never a fallback", "[loader]") {
  Isolated iso(fixture_dir("good") + ":" + fixture_dir("probe_zero"));

  SECTION("explicit argument") {
    auto e = load_error("fixture_probe_zero");
    CHECK(e.code() == ferrum::ErrorCode::load_failed);
    CHECK_THAT(e.what(), Contains("backend 'fixture_probe_zero' (from argument) could not be loaded: "));
    CHECK_THAT(e.what(), Contains("fixture: no device"));
    CHECK_THAT(e.what(), Contains("candidates: "));
    CHECK_THAT(e.what(), Contains(fixture_path("good") + ": found: not selected"));
    CHECK_THAT(e.what(), Contains(fixture_path("probe_zero") + ": abi: "));
  }
  SECTION("FERRUM_BACKEND") {
    iso.env.set("FERRUM_BACKEND", "fixture_probe_zero");
    auto e = load_error("");
    CHECK(e.code() == ferrum::ErrorCode::load_failed);
    CHECK_THAT(e.what(), Contains("(from FERRUM_BACKEND)"));
  }
  SECTION("an unknown name") {
    auto e = load_error("nosuch");
    CHECK(e.code() == ferrum::ErrorCode::load_failed);
    CHECK_THAT(e.what(), Contains("no libferrum-nosuch.so in the plugin directories"));
    CHECK_THAT(e.what(), Contains(fixture_dir("good")));
  }
  SECTION("a path that does not exist") {
    auto e = load_error("/nonexistent/libferrum-x.so");
    CHECK_THAT(e.what(), Contains("not found: /nonexistent/libferrum-x.so"));
  }
  SECTION("a device ordinal beyond the device count") {
    auto e = load_error("fixture_good:1");
    CHECK(e.code() == ferrum::ErrorCode::load_failed);
    CHECK_THAT(e.what(), Contains("device 1 requested but plugin 'fixture_good' has 1 device(s)"));
    auto ok = ferrum::load_backend("fixture_good:0");
    CHECK(ok.device == 0);
  }
  SECTION("auto with nothing usable lists every candidate") {
    Isolated only_bad(fixture_dir("probe_zero") + ":" + fixture_dir("no_entry"));
    auto e = load_error("auto");
    CHECK(e.code() == ferrum::ErrorCode::load_failed);
    CHECK_THAT(e.what(), Contains("fixture: no device"));
    CHECK_THAT(e.what(), Contains("no entry symbol"));
  }
}

TEST_CASE("a backend can be named by path, with or without a device", "[loader]") {
  Isolated iso("/nonexistent-dir");
  auto b = ferrum::load_backend(fixture_path("good"));
  CHECK(b.selection.spec == fixture_path("good"));
  CHECK(ferrum::name_of(*b.library) == "fixture_good");
  auto b0 = ferrum::load_backend(fixture_path("good") + ":0");
  CHECK(b0.library == b.library);
}

// ---------------------------------------------------------------------------------
// Precedence: argument > FERRUM_BACKEND > config > auto
// ---------------------------------------------------------------------------------
TEST_CASE("backend precedence", "[loader][precedence]") {
  TempDir plugins;
  fs::create_symlink(fixture_path("good"), plugins.path / "libferrum-fixture_good.so");
  fs::create_symlink(kCexample, plugins.path / "libferrum-cexample.so");
  Isolated iso(plugins.str());
  TempDir cfgdir;
  std::string cfg = cfgdir.write("config.json", R"({"backend": "cexample"})");

  auto name = [](const ferrum::LoadedBackend& b) { return ferrum::name_of(*b.library); };

  SECTION("auto: highest probe score (good 5 > cexample 1)") {
    auto b = ferrum::load_backend();
    CHECK(name(b) == "fixture_good");
    CHECK(b.selection.spec == "auto");
    CHECK(b.selection.source == "auto");
    CHECK(b.candidates.size() == 2);
  }
  SECTION("config beats auto") {
    iso.env.set("FERRUM_CONFIG", cfg);
    auto b = ferrum::load_backend();
    CHECK(name(b) == "cexample");
    CHECK(b.selection.source == "config " + cfg);
  }
  SECTION("the default config location ($XDG_CONFIG_HOME/ferrum/config.json)") {
    std::string def = iso.xdg.write("ferrum/config.json", R"({"backend": "cexample"})");
    auto b = ferrum::load_backend();
    CHECK(name(b) == "cexample");
    CHECK(b.selection.source == "config " + def);
  }
  SECTION("FERRUM_BACKEND beats config") {
    iso.env.set("FERRUM_CONFIG", cfg).set("FERRUM_BACKEND", "fixture_good");
    auto b = ferrum::load_backend();
    CHECK(name(b) == "fixture_good");
    CHECK(b.selection.source == "FERRUM_BACKEND");
  }
  SECTION("the argument beats FERRUM_BACKEND") {
    iso.env.set("FERRUM_BACKEND", "fixture_good");
    auto b = ferrum::load_backend("cexample");
    CHECK(name(b) == "cexample");
    CHECK(b.selection.source == "argument");
  }
  SECTION("an explicit 'auto' argument beats FERRUM_BACKEND") {
    iso.env.set("FERRUM_BACKEND", "cexample");
    auto b = ferrum::load_backend("auto");
    CHECK(name(b) == "fixture_good");
    CHECK(b.selection.source == "argument");
  }
}

TEST_CASE("plugin search path", "[loader][config]") {
  Isolated iso(fixture_dir("good") + "::" + fixture_dir("probe_zero"));
  CHECK(ferrum::plugin_search_path() ==
        std::vector<std::string>{fixture_dir("good"), fixture_dir("probe_zero")});

  iso.env.set("FERRUM_PLUGIN_PATH", std::nullopt);
  TempDir cfgdir;
  iso.env.set("FERRUM_CONFIG", cfgdir.write("c.json", R"({"plugin_path": [")" +
                                                          fixture_dir("good") + R"("]})"));
  auto dirs = ferrum::plugin_search_path();
  REQUIRE(dirs.size() >= 2);
  CHECK(dirs.front() == fixture_dir("good"));
  CHECK(fs::equivalent(dirs.back(), kPluginDir));  // the build tree comes last
  auto b = ferrum::load_backend("fixture_good");
  CHECK(ferrum::name_of(*b.library) == "fixture_good");
}

// ---------------------------------------------------------------------------------
// Config errors
// ---------------------------------------------------------------------------------
TEST_CASE("config errors", "[loader][config]") {
  Isolated iso(fixture_dir("good"));
  TempDir dir;
  auto config_error = [&](const std::string& text) {
    std::string path = dir.write("config.json", text);
    iso.env.set("FERRUM_CONFIG", path);
    auto e = load_error("");
    CHECK(e.code() == ferrum::ErrorCode::config_error);
    CHECK_THAT(e.what(), Contains(path));
    return std::string(e.what());
  };

  SECTION("unknown key") {
    CHECK_THAT(config_error(R"({"backend": "cpu", "bakend": "cuda"})"),
               Contains("unknown key \"bakend\""));
  }
  SECTION("wrong type") {
    auto m = config_error(R"({"backend": 3})");
    CHECK_THAT(m, Contains("\"backend\" must be a string, given number"));
    CHECK_THAT(config_error(R"({"plugin_path": "/usr/lib"})"),
               Contains("\"plugin_path\" must be an array of strings, given string"));
    CHECK_THAT(config_error(R"({"plugin_path": ["/a", 1]})"), Contains("element 1 is number"));
    CHECK_THAT(config_error(R"({"log_level": true})"),
               Contains("\"log_level\" must be a string, given boolean"));
  }
  SECTION("bad log level") {
    CHECK_THAT(config_error(R"({"log_level": "loud"})"), Contains("'loud'"));
  }
  SECTION("invalid JSON") {
    CHECK_THAT(config_error(R"({"backend": )"), Contains("invalid JSON"));
    CHECK_THAT(config_error(R"({"backend": 1e400})"), Contains("number overflow"));  // found by fuzz_config
  }
  SECTION("not an object") { CHECK_THAT(config_error("[1, 2]"), Contains("must be an object")); }
  SECTION("a missing FERRUM_CONFIG file") {
    iso.env.set("FERRUM_CONFIG", dir.str() + "/nope.json");
    auto e = load_error("");
    CHECK(e.code() == ferrum::ErrorCode::config_error);
    CHECK_THAT(e.what(), Contains("nope.json"));
    CHECK_THAT(e.what(), Contains("does not exist"));
  }
  SECTION("a directory given as FERRUM_CONFIG is named as a directory") {
    iso.env.set("FERRUM_CONFIG", dir.str());
    auto e = load_error("");
    CHECK(e.code() == ferrum::ErrorCode::config_error);
    CHECK(std::string(e.what()) ==
          "FERRUM_CONFIG names " + dir.str() + ", which is a directory, not a file");
  }
  SECTION("a directory at the default location is an error, not 'no config'") {
    fs::create_directories(iso.xdg.path / "ferrum" / "config.json");
    auto e = load_error("");
    CHECK(e.code() == ferrum::ErrorCode::config_error);
    CHECK(std::string(e.what()) ==
          "config " + iso.xdg.str() + "/ferrum/config.json: is a directory, not a file");
  }
  SECTION("duplicate keys are rejected, naming the key and the file") {
    std::string path = dir.write("config.json", R"({"backend": "cpu", "log_level": "warn", "backend": "cuda"})");
    iso.env.set("FERRUM_CONFIG", path);
    auto e = load_error("");
    CHECK(e.code() == ferrum::ErrorCode::config_error);
    CHECK(std::string(e.what()) ==
          "config " + path + ": duplicate key \"backend\" (each key may appear once)");
    // The same key in different objects is not a duplicate (the nested object is then
    // rejected for its type, not for the key).
    CHECK_THAT(config_error(R"({"backend": {"backend": 1}})"),
               Contains("\"backend\" must be a string, given object"));
  }
  SECTION("a missing default file is fine") {
    auto b = ferrum::load_backend();
    CHECK(ferrum::name_of(*b.library) == "fixture_good");
  }
  SECTION("a bad FERRUM_LOG_LEVEL") {
    iso.env.set("FERRUM_LOG_LEVEL", "chatty");
    auto e = load_error("");
    CHECK(e.code() == ferrum::ErrorCode::config_error);
    CHECK_THAT(e.what(), Contains("FERRUM_LOG_LEVEL"));
  }
  SECTION("FERRUM_LOG_LEVEL=debug loads normally") {
    iso.env.set("FERRUM_LOG_LEVEL", "debug");
    CHECK_NOTHROW(ferrum::load_backend("fixture_good"));
    iso.env.set("FERRUM_LOG_LEVEL", "off");
    CHECK_NOTHROW(ferrum::load_backend("fixture_good"));
  }
}

// ---------------------------------------------------------------------------------
// Lifetime: sharing, several plugins, load/unload cycles
// ---------------------------------------------------------------------------------
TEST_CASE("loading the same file twice shares one PluginLibrary", "[loader][lifetime]") {
  TempDir links;
  fs::create_symlink(fixture_path("good"), links.path / "libferrum-fixture_good.so");
  Isolated iso(fixture_dir("good"));
  auto a = ferrum::load_backend("fixture_good");
  auto b = ferrum::load_backend(fixture_path("good"));
  auto c = ferrum::load_backend((links.path / "libferrum-fixture_good.so").string());
  CHECK(a.library == b.library);
  CHECK(a.library == c.library);
  CHECK(ferrum::path_of(*a.library) == fs::canonical(fixture_path("good")).string());
}

TEST_CASE("two plugins loaded at once", "[loader][lifetime]") {
  Isolated iso(fixture_dir("good") + ":" + kPluginDir);
  auto good = ferrum::load_backend("fixture_good");
  auto cex = ferrum::load_backend("cexample");
  REQUIRE(good.library != cex.library);
  CHECK(std::string(ferrum::api_of(*good.library)->plugin_name) == "fixture_good");
  CHECK(std::string(ferrum::api_of(*cex.library)->plugin_name) == "cexample");
  CHECK(is_loaded(ferrum::path_of(*good.library)));
  CHECK(is_loaded(ferrum::path_of(*cex.library)));
}

TEST_CASE("load/unload cycles: the library goes when the last reference goes", "[loader][lifetime]") {
  Isolated iso(kPluginDir);
  const std::string real = fs::canonical(kCexample).string();
  for (int i = 0; i < 25; ++i) {
    {
      auto b = ferrum::load_backend("cexample");
      REQUIRE(b.library);
      auto keep = b.library;
      b = {};
      CHECK(is_loaded(real));  // `keep` holds it
    }
    REQUIRE_FALSE(is_loaded(real));
  }
  // discovery results hold their libraries too, and release them.
  {
    Isolated fx(fixture_dir("good") + ":" + fixture_dir("wrong_major") + ":" +
                fixture_dir("probe_zero"));
    auto cs = ferrum::discover_plugins(true);
    CHECK(is_loaded(fixture_path("wrong_major")));
  }
  CHECK_FALSE(is_loaded(fixture_path("good")));
  CHECK_FALSE(is_loaded(fixture_path("wrong_major")));
  CHECK_FALSE(is_loaded(fixture_path("probe_zero")));
}

// ---------------------------------------------------------------------------------
// The C example plugin through the raw ABI table
// ---------------------------------------------------------------------------------
TEST_CASE("C example: loads, add_inplace and scaled_add_inplace give the right numbers",
          "[loader][cexample]") {
  Isolated iso(kPluginDir);
  auto b = ferrum::load_backend("cexample");
  const ferrum_plugin_api* api = ferrum::api_of(*b.library);
  REQUIRE(api->memory);
  REQUIRE(api->context);
  REQUIRE(api->dense);
  CHECK(api->graph == nullptr);
  CHECK(api->attention == nullptr);

  ferrum_device_props props{};
  props.struct_size = sizeof props;
  REQUIRE(api->device_props(0, &props) == FERRUM_STATUS_OK);
  CHECK(std::string(props.name) == "C example CPU device");
  CHECK(props.kind == FERRUM_DEVICE_KIND_CPU);

  ferrum_context* ctx = nullptr;
  ferrum_new_context_args nc{};
  nc.struct_size = sizeof nc;
  nc.context = &ctx;
  REQUIRE(api->context->new_context(nullptr, &nc) == FERRUM_STATUS_OK);
  REQUIRE(ctx);

  const std::vector<float> r0{1.f, 2.f, 3.f, -4.f, 0.5f}, x0{10.f, 20.f, 30.f, 40.f, 0.25f};
  ferrum_buffer *r = nullptr, *x = nullptr;
  ferrum_from_slice_args fs1{sizeof(ferrum_from_slice_args), r0.data(), r0.size(), &r};
  ferrum_from_slice_args fs2{sizeof(ferrum_from_slice_args), x0.data(), x0.size(), &x};
  REQUIRE(api->memory->from_slice(ctx, &fs1) == FERRUM_STATUS_OK);
  REQUIRE(api->memory->from_slice(ctx, &fs2) == FERRUM_STATUS_OK);

  ferrum_add_inplace_args add{sizeof(ferrum_add_inplace_args), r, x, 5};
  REQUIRE(api->dense->add_inplace(ctx, &add) == FERRUM_STATUS_OK);
  ferrum_scaled_add_inplace_args sadd{};
  sadd.struct_size = sizeof sadd;
  sadd.dst = r;
  sadd.src = x;
  sadd.scale = -0.5f;
  sadd.len = 5;
  REQUIRE(api->dense->scaled_add_inplace(ctx, &sadd) == FERRUM_STATUS_OK);
  ferrum_sync_args sy{sizeof(ferrum_sync_args)};
  REQUIRE(api->context->sync(ctx, &sy) == FERRUM_STATUS_OK);

  std::vector<float> out(5);
  ferrum_to_vec_args tv{sizeof(ferrum_to_vec_args), r, 5, out.data()};
  REQUIRE(api->memory->to_vec(ctx, &tv) == FERRUM_STATUS_OK);
  for (size_t i = 0; i < 5; ++i) CHECK(out[i] == r0[i] + x0[i] - 0.5f * x0[i]);

  SECTION("argument errors name the op, the argument, expected and given") {
    ferrum_add_inplace_args bad{sizeof(ferrum_add_inplace_args), r, x, 6};
    CHECK(api->dense->add_inplace(ctx, &bad) == FERRUM_STATUS_INVALID_ARGUMENT);
    CHECK(ferrum::last_plugin_error(*b.library, ctx) ==
          "add_inplace: argument 'residual': expected >= 6 elements (len), given 5");
    ferrum_add_inplace_args small{8, r, x, 5};
    CHECK(api->dense->add_inplace(ctx, &small) == FERRUM_STATUS_INVALID_ARGUMENT);
    CHECK(ferrum::last_plugin_error(*b.library, ctx) ==
          "add_inplace: argument 'args->struct_size': expected >= 32, given 8");
    ferrum_add_inplace_args nul{sizeof(ferrum_add_inplace_args), r, nullptr, 5};
    CHECK(api->dense->add_inplace(ctx, &nul) == FERRUM_STATUS_INVALID_ARGUMENT);
    CHECK_THAT(ferrum::last_plugin_error(*b.library, ctx), Contains("argument 'x': expected a buffer"));
  }
  SECTION("other dtypes are UNSUPPORTED with a reason, also through query_support") {
    const uint16_t h[3] = {0x3c00, 0x4000, 0x4200};
    ferrum_buffer *h1 = nullptr, *h2 = nullptr;
    ferrum_from_slice_typed_args t1{sizeof(ferrum_from_slice_typed_args), FERRUM_DTYPE_F16, 0, h, 3, &h1};
    ferrum_from_slice_typed_args t2{sizeof(ferrum_from_slice_typed_args), FERRUM_DTYPE_F16, 0, h, 3, &h2};
    REQUIRE(api->memory->from_slice_typed(ctx, &t1) == FERRUM_STATUS_OK);
    REQUIRE(api->memory->from_slice_typed(ctx, &t2) == FERRUM_STATUS_OK);
    ferrum_add_inplace_args a16{sizeof(ferrum_add_inplace_args), h1, h2, 3};
    CHECK(api->dense->add_inplace(ctx, &a16) == FERRUM_STATUS_UNSUPPORTED);
    CHECK_THAT(ferrum::last_plugin_error(*b.library, ctx), Contains("F16"));
    char reason[256] = {0};
    CHECK(api->query_support(ctx, FERRUM_OP_ADD_INPLACE, &a16, reason, sizeof reason) ==
          FERRUM_STATUS_UNSUPPORTED);
    CHECK_THAT(std::string(reason), Contains("F32 only"));
    CHECK(api->query_support(ctx, FERRUM_OP_ADD_INPLACE, &add, reason, sizeof reason) ==
          FERRUM_STATUS_OK);
    CHECK(api->query_support(ctx, FERRUM_OP_GEMM, nullptr, reason, sizeof reason) ==
          FERRUM_STATUS_UNSUPPORTED);
    ferrum_buffer_release_args rel{sizeof(ferrum_buffer_release_args), h1};
    CHECK(api->memory->buffer_release(nullptr, &rel) == FERRUM_STATUS_OK);
    rel.buf = h2;
    CHECK(api->memory->buffer_release(nullptr, &rel) == FERRUM_STATUS_OK);
  }
  SECTION("typed round trip, copy_slice, zero_buffer, buffer_info") {
    ferrum_buffer* ib = nullptr;
    ferrum_alloc_typed_args at{sizeof(ferrum_alloc_typed_args), FERRUM_DTYPE_I32, 0, 4, &ib};
    REQUIRE(api->memory->alloc_typed(ctx, &at) == FERRUM_STATUS_OK);
    const int32_t vals[4] = {7, -8, 9, 10};
    ferrum_write_typed_args wt{sizeof(ferrum_write_typed_args), ib, FERRUM_DTYPE_I32, 0, vals, 4};
    REQUIRE(api->memory->write_typed(ctx, &wt) == FERRUM_STATUS_OK);
    ferrum_copy_slice_args cs{sizeof(ferrum_copy_slice_args), ib, 0, ib, 2, 2};
    REQUIRE(api->memory->copy_slice(ctx, &cs) == FERRUM_STATUS_OK);
    ferrum_zero_buffer_args zb{sizeof(ferrum_zero_buffer_args), ib, 1};
    REQUIRE(api->memory->zero_buffer(ctx, &zb) == FERRUM_STATUS_OK);
    int32_t back[4] = {0};
    ferrum_read_typed_args rt{sizeof(ferrum_read_typed_args), ib, FERRUM_DTYPE_I32, 0, 4, back};
    REQUIRE(api->memory->read_typed(ctx, &rt) == FERRUM_STATUS_OK);
    CHECK(back[0] == 0);
    CHECK(back[1] == -8);
    CHECK(back[2] == 7);
    CHECK(back[3] == -8);
    int32_t dt = 0;
    uint64_t count = 0;
    ferrum_buffer_info_args bi{sizeof(ferrum_buffer_info_args), ib, &dt, &count};
    REQUIRE(api->memory->buffer_info(nullptr, &bi) == FERRUM_STATUS_OK);
    CHECK(dt == FERRUM_DTYPE_I32);
    CHECK(count == 4);
    ferrum_read_typed_args wrong{sizeof(ferrum_read_typed_args), ib, FERRUM_DTYPE_F32, 0, 4, back};
    CHECK(api->memory->read_typed(ctx, &wrong) == FERRUM_STATUS_INVALID_ARGUMENT);
    CHECK(ferrum::last_plugin_error(*b.library, ctx) ==
          "read_typed: argument 'dtype': expected I32 (src's dtype), given F32");
    ferrum_buffer_release_args rel{sizeof(ferrum_buffer_release_args), ib};
    CHECK(api->memory->buffer_release(nullptr, &rel) == FERRUM_STATUS_OK);
  }

  ferrum_buffer_release_args rel{sizeof(ferrum_buffer_release_args), r};
  CHECK(api->memory->buffer_release(nullptr, &rel) == FERRUM_STATUS_OK);
  rel.buf = x;
  CHECK(api->memory->buffer_release(nullptr, &rel) == FERRUM_STATUS_OK);
  ferrum_context_destroy_args cd{sizeof(ferrum_context_destroy_args), ctx};
  CHECK(api->context->context_destroy(nullptr, &cd) == FERRUM_STATUS_OK);
}

TEST_CASE("LoadStage names", "[loader]") {
  CHECK(std::string(ferrum::to_string(ferrum::LoadStage::found)) == "found");
  CHECK(std::string(ferrum::to_string(ferrum::LoadStage::initialized)) == "initialized");
  CHECK(std::string(ferrum::to_string(ferrum::ErrorCode::load_failed)) == "load_failed");
  CHECK(ferrum::error_code_of(FERRUM_STATUS_UNSUPPORTED) == ferrum::ErrorCode::unsupported);
  CHECK(ferrum::error_code_of(12345) == ferrum::ErrorCode::internal);
}
