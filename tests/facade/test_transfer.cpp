// Cross-plugin transfer through the facade (docs/design.md §1.8): CPU plugin -> C example plugin -> CPU.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include <ferrum/ferrum.hpp>

TEST_CASE("transfer stages a buffer between two different plugins", "[facade][transfer]") {
  ferrum::Backend cpu = ferrum::Backend::load("cpu");
  ferrum::Backend cex = ferrum::Backend::load("cexample");
  ferrum::Context a = cpu.create_context({}, ferrum::Dtype::f32);
  ferrum::Context b = cex.create_context();
  const std::vector<float> host = {1.5f, -2.25f, 3.0e-8f, 65504.0f, -0.0f, 7.0f, 1e30f};
  ferrum::Buffer src = a.from_slice(host);
  ferrum::Buffer mid = ferrum::transfer(a, src, b);
  CHECK(mid.dtype() == ferrum::Dtype::f32);
  CHECK(mid.count() == host.size());
  ferrum::Buffer back = ferrum::transfer(b, mid, a);
  const std::vector<float> got = a.to_vec(back, host.size());
  for (size_t i = 0; i < host.size(); ++i) CHECK(std::memcmp(&got[i], &host[i], 4) == 0);
  ferrum::Buffer empty = a.alloc(0);
  CHECK(ferrum::transfer(a, empty, b).count() == 0);
}
