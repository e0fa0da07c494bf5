// Unit tests of ferrum-run's host side: the sampler, and the file readers on every truncation and on
// corrupted headers (each must load or throw LoadError; under ASan a read past a mapping fails).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "gguf.hpp"
#include "load_error.hpp"
#include "safetensors.hpp"
#include "sampler.hpp"

namespace fr = ferrum::run;

namespace {

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string write_tmp(const std::vector<uint8_t>& bytes, size_t n, const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() /
                 ("ferrum_run_test_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(n));
  return p.string();
}

// Removes the test's temporary file when the test case ends.
struct TmpFile {
  std::string path;
  ~TmpFile() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove(path, ec);
  }
};

// Loads with `load`; returns 1 when it loaded, 0 when it threw LoadError (anything else fails).
template <class F>
int loads(F&& load) {
  try {
    load();
    return 1;
  } catch (const fr::LoadError&) {
    return 0;
  }
}

const std::string kModels = FERRUM_RUN_MODELS;

}  // namespace

TEST_CASE("sampler: greedy, top-k 1 and a tiny top-p pick the first largest logit") {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f};
  CHECK(fr::argmax(logits) == 1);
  fr::Sampler greedy({.greedy = true}, 0);
  CHECK(greedy.next(logits) == 1);
  fr::Sampler k1({.greedy = false, .temperature = 3.0, .top_k = 1, .top_p = 1.0, .seed = 7}, 0);
  fr::Sampler p0({.greedy = false, .temperature = 1.0, .top_k = 0, .top_p = 1e-9, .seed = 7}, 0);
  for (int i = 0; i < 100; ++i) {
    CHECK(k1.next(logits) == 1);
    CHECK(p0.next(logits) == 1);
  }
}

TEST_CASE("sampler: draws follow softmax(logits / T) restricted by top-k and top-p") {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  const int n = 40000;
  auto freq = [&](fr::SamplingParams p) {
    fr::Sampler s(p, 3);
    std::vector<double> f(logits.size());
    for (int i = 0; i < n; ++i) f[s.next(logits)] += 1.0 / n;
    return f;
  };
  // plain sampling at T = 1: the probabilities themselves
  auto f = freq({.greedy = false, .temperature = 1.0, .top_k = 0, .top_p = 1.0, .seed = 11});
  const double p1[] = {0.5, 0.3, 0.15, 0.05};
  for (int i = 0; i < 4; ++i) CHECK(std::abs(f[i] - p1[i]) < 0.01);
  // T = 2: p ∝ sqrt(p)
  f = freq({.greedy = false, .temperature = 2.0, .top_k = 0, .top_p = 1.0, .seed = 12});
  double z = 0;
  for (double p : p1) z += std::sqrt(p);
  for (int i = 0; i < 4; ++i) CHECK(std::abs(f[i] - std::sqrt(p1[i]) / z) < 0.01);
  // top-k 2: 0.5 / 0.8 and 0.3 / 0.8
  f = freq({.greedy = false, .temperature = 1.0, .top_k = 2, .top_p = 1.0, .seed = 13});
  CHECK(std::abs(f[0] - 0.625) < 0.01);
  CHECK(std::abs(f[1] - 0.375) < 0.01);
  CHECK(f[2] == 0.0);
  CHECK(f[3] == 0.0);
  // top-p 0.9: the smallest set reaching 0.9 is {0, 1, 2} (0.95)
  f = freq({.greedy = false, .temperature = 1.0, .top_k = 0, .top_p = 0.9, .seed = 14});
  for (int i = 0; i < 3; ++i) CHECK(std::abs(f[i] - p1[i] / 0.95) < 0.01);
  CHECK(f[3] == 0.0);
}

TEST_CASE("sampler: a seed and a request index give one stream, another index another") {
  std::vector<float> logits(64);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = float(std::sin(double(i)));
  const fr::SamplingParams p{.greedy = false, .temperature = 1.5, .top_k = 0, .top_p = 1.0, .seed = 5};
  fr::Sampler a(p, 0), b(p, 0), c(p, 1);
  std::vector<uint32_t> sa, sb, sc;
  for (int i = 0; i < 64; ++i) {
    sa.push_back(a.next(logits));
    sb.push_back(b.next(logits));
    sc.push_back(c.next(logits));
  }
  CHECK(sa == sb);
  CHECK(sa != sc);
}

TEST_CASE("safetensors: every truncation of a file loads or is a LoadError") {
  const auto bytes = read_all(kModels + "/micro-llama/model.safetensors");
  REQUIRE(bytes.size() > 1000);
  int loaded = 0;
  for (size_t n = 0; n <= bytes.size(); ++n) {
    const std::string p = write_tmp(bytes, n, "trunc.safetensors");
    const TmpFile tmp{p};
    loaded += loads([&] { fr::SafetensorsFile f(p); });
  }
  CHECK(loaded == 1);  // only the whole file
}

TEST_CASE("safetensors: corrupted header bytes load or are a LoadError") {
  const auto orig = read_all(kModels + "/micro-llama/model.safetensors");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | orig[size_t(i)];
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 3000; ++trial) {
    auto bytes = orig;
    const int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t at = size_t(rng() % (8 + header_len));
      // digits, brackets and quotes are what a JSON header's meaning hangs on
      static const char kChars[] = "0123456789[]{}\",:-eE ";
      bytes[at] = rng() % 2 ? uint8_t(rng()) : uint8_t(kChars[rng() % (sizeof kChars - 1)]);
    }
    const std::string p = write_tmp(bytes, bytes.size(), "corrupt.safetensors");
    const TmpFile tmp{p};
    loads([&] { fr::SafetensorsFile f(p); });
  }
}

TEST_CASE("GGUF: truncations and corrupted header bytes load or are a LoadError") {
  const auto orig = read_all(kModels + "/gguf/llama-q8q4.gguf");
  REQUIRE(orig.size() > 8192);
  int loaded = 0;
  for (size_t n = 0; n <= orig.size(); n += n < 4096 ? 1 : 509) {
    const std::string p = write_tmp(orig, n, "trunc.gguf");
    const TmpFile tmp{p};
    loaded += loads([&] { fr::GgufFile f(p); });
  }
  CHECK(loaded == 0);  // the last tensor ends at the end of the file
  const TmpFile whole{write_tmp(orig, orig.size(), "whole.gguf")};
  CHECK(loads([&] { fr::GgufFile f(whole.path); }) == 1);
  std::mt19937_64 rng(43);
  for (int trial = 0; trial < 3000; ++trial) {
    auto bytes = orig;
    const int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) bytes[size_t(rng() % 4096)] = uint8_t(rng());
    const std::string p = write_tmp(bytes, bytes.size(), "corrupt.gguf");
    const TmpFile tmp{p};
    loads([&] { fr::GgufFile f(p); });
  }
}
