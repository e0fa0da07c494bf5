// A host application built against the installed ferrum package.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <ferrum/cuda/stream_ext.h>  // the CUDA plugin's public extension header
#include <ferrum/ferrum.hpp>

int main() {
  ferrum::Backend backend = ferrum::Backend::load("cpu");
  ferrum::Context ctx = backend.create_context();
  std::vector<float> a = {1.5f, -2.0f, 3.25f}, b = {0.5f, 4.0f, -1.25f};
  ferrum::Buffer x = ctx.from_slice(a), y = ctx.from_slice(b);
  ctx.add_inplace(x, y, 3);
  std::vector<float> out = ctx.to_vec(x, 3);
  for (int i = 0; i < 3; ++i)
    if (std::fabs(out[i] - (a[i] + b[i])) > 0) {
      std::printf("consumer: wrong result at %d: %g\n", i, out[i]);
      return 1;
    }
  // The installed extension header compiles in a host; the CPU plugin has no such extension.
  if (backend.extension_as<ferrum_cuda_stream_ext>(FERRUM_CUDA_STREAM_EXT_ID, FERRUM_CUDA_STREAM_EXT_VERSION)) {
    std::printf("consumer: the CPU plugin answered the extension %s\n", FERRUM_CUDA_STREAM_EXT_ID);
    return 1;
  }
  std::printf("consumer: ok on %s %s\n", std::string(backend.name()).c_str(), std::string(backend.version()).c_str());
  return 0;
}
