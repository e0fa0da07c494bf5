// Thread contract (docs/spec.md §0.4, docs/design.md §4.4): different contexts may be driven from different
// threads at the same time; allocation, release and info calls are thread-safe. Built and run
// under ThreadSanitizer by scripts/test (FERRUM_TSAN), and normally everywhere else.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include <ferrum/ferrum.hpp>

TEST_CASE("contexts of one plugin driven from several threads at once", "[facade][threads]") {
  ferrum::Backend backend = ferrum::Backend::load("cpu");
  constexpr int kThreads = 4;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        ferrum::Context ctx = backend.create_context({}, ferrum::Dtype::f32);
        const uint64_t n = 4096, m = 16, k = 64;
        std::vector<float> a(m * k), b(n / 64 * k);
        for (size_t i = 0; i < a.size(); ++i) a[i] = float((i * 7 + t) % 13) - 6.0f;
        for (size_t i = 0; i < b.size(); ++i) b[i] = float((i * 5 + t) % 11) - 5.0f;
        for (int iter = 0; iter < 20; ++iter) {
          ferrum::Buffer x = ctx.from_slice(a), w = ctx.from_slice(b), out = ctx.alloc(m * (n / 64));
          ctx.gemm({.a = x, .b = w, .out = out, .m = m, .n = n / 64, .k = k});
          ferrum::Buffer y = ctx.from_slice(a);
          ctx.add_inplace(y, x, m * k);
          const std::vector<float> got = ctx.to_vec(y, m * k);
          for (size_t i = 0; i < got.size(); ++i)
            if (got[i] != 2.0f * a[i]) ++failures;
          const std::vector<float> g = ctx.to_vec(out, m * (n / 64));
          double ref = 0;  // out[0, 0]
          for (uint64_t p = 0; p < k; ++p) ref += double(a[p]) * double(b[p]);
          if (g[0] != float(ref)) ++failures;
        }
      } catch (...) {
        ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
}
