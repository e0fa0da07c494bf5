// ferrum CPU plugin — thread pool (see parallel.hpp).
#include "parallel.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ferrum::cpu {
namespace {

thread_local bool t_inside_pool_job = false;  // true on workers and on a caller running a job

unsigned configured_threads() {
  if (const char* env = std::getenv("FERRUM_CPU_THREADS")) {
    char* end = nullptr;
    const unsigned long v = std::strtoul(env, &end, 10);
    if (end != env && *end == '\0' && v > 0) return static_cast<unsigned>(std::min<unsigned long>(v, 1024));
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : hc;
}

class Pool {
 public:
  ~Pool() { stop(); }

  unsigned threads() {
    const unsigned known = count_.load(std::memory_order_acquire);
    if (known != 0) return known;
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    start_locked();
    return static_cast<unsigned>(workers_.size()) + 1;
  }

  void stop() {
    std::lock_guard<std::mutex> run_lock(run_mutex_);  // waits for a job in flight
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) {
      if (w.joinable()) w.join();
    }
    workers_.clear();
    count_.store(0, std::memory_order_release);
    started_ = false;
    stopping_ = false;
  }

  // Returns false when the pool is busy (the caller then runs inline).
  bool run(uint64_t n, uint64_t chunk, const std::function<void(uint64_t, uint64_t)>& fn) {
    std::unique_lock<std::mutex> run_lock(run_mutex_, std::try_to_lock);
    if (!run_lock.owns_lock()) return false;
    start_locked();
    if (workers_.empty()) return false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      n_ = n;
      chunk_ = chunk;
      next_.store(0, std::memory_order_relaxed);
      error_ = nullptr;
      active_ = static_cast<unsigned>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    t_inside_pool_job = true;
    work();
    t_inside_pool_job = false;
    std::exception_ptr error;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return active_ == 0; });
      fn_ = nullptr;
      error = error_;
      error_ = nullptr;
    }
    if (error) std::rethrow_exception(error);
    return true;
  }

 private:
  void start_locked() {  // run_mutex_ held
    if (started_) return;
    started_ = true;
    const unsigned want = configured_threads();
    for (unsigned i = 1; i < want; ++i) {
      try {
        workers_.emplace_back([this] { worker_main(); });
      } catch (...) {
        break;  // fewer threads than asked for is fine
      }
    }
    count_.store(static_cast<unsigned>(workers_.size()) + 1, std::memory_order_release);
  }

  void work() {
    for (;;) {
      const uint64_t begin = next_.fetch_add(chunk_, std::memory_order_relaxed);
      if (begin >= n_) return;
      const uint64_t end = std::min(n_, begin + chunk_);
      try {
        (*fn_)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }

  void worker_main() {
    t_inside_pool_job = true;
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      work();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (--active_ == 0) done_.notify_one();
      }
    }
  }

  std::mutex run_mutex_;  // owned by the one parallel_for using the pool
  std::mutex mutex_;      // guards the job fields below
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  bool started_ = false;
  bool stopping_ = false;
  uint64_t generation_ = 0;
  const std::function<void(uint64_t, uint64_t)>* fn_ = nullptr;
  uint64_t n_ = 0;
  uint64_t chunk_ = 1;
  std::atomic<uint64_t> next_{0};
  std::atomic<unsigned> count_{0};  // workers + 1 once started, 0 when stopped
  unsigned active_ = 0;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool p;  // joined at static destruction
  return p;
}

}  // namespace

unsigned pool_threads() { return pool().threads(); }

void shutdown_pool() { pool().stop(); }

void parallel_for(uint64_t n, uint64_t grain, const std::function<void(uint64_t, uint64_t)>& fn) {
  if (n == 0) return;
  if (grain == 0) grain = 1;
  if (n <= grain || t_inside_pool_job) {
    fn(0, n);
    return;
  }
  Pool& p = pool();
  const uint64_t threads = p.threads();
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  // About four chunks per thread for balance, never smaller than grain.
  const uint64_t target = threads * 4;
  const uint64_t chunk = std::max(grain, (n + target - 1) / target);
  if (chunk >= n || !p.run(n, chunk, fn)) fn(0, n);
}

}  // namespace ferrum::cpu
