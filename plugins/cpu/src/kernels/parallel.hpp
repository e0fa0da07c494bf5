// ferrum CPU plugin — a tiny process-wide thread pool for the kernels.
//
// parallel_for splits [0, n) into contiguous chunks of at least `grain` indices and runs
// fn(begin, end) on each, on the pool's workers plus the calling thread, and returns when
// every chunk is done. Chunks never overlap and cover [0, n) exactly once, so a kernel whose
// chunks write disjoint outputs is deterministic whatever the thread count.
//
// Thread contract: safe to call from several host threads at once. One call at a time owns
// the pool; a concurrent call (or a nested call from inside fn) runs inline on its own
// thread. Small work (n <= grain, or a pool of one thread) runs inline.
// Errors: never exits or aborts. An exception thrown by fn is caught and the first one is
// rethrown on the calling thread after all chunks have finished.
#ifndef FERRUM_CPU_KERNELS_PARALLEL_HPP
#define FERRUM_CPU_KERNELS_PARALLEL_HPP

#include <cstdint>
#include <functional>

namespace ferrum::cpu {

void parallel_for(uint64_t n, uint64_t grain, const std::function<void(uint64_t begin, uint64_t end)>& fn);

// Number of threads a parallel_for may use (workers + the caller), >= 1. Starts the pool.
// FERRUM_CPU_THREADS (a positive integer) overrides std::thread::hardware_concurrency().
unsigned pool_threads();

// Stops and joins the workers (the plugin's shutdown calls it; static destruction does it
// too). Waits for a parallel_for in flight. Later parallel_for calls start a fresh pool.
void shutdown_pool();

}  // namespace ferrum::cpu

#endif  // FERRUM_CPU_KERNELS_PARALLEL_HPP
