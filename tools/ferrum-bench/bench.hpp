// ferrum-bench — shared declarations: options, the benchmark environment, the case table,
// ceilings and the timing loop. See main.cpp for the command line.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ferrum/ferrum.hpp>

namespace ferrum::bench {

struct Options {
  std::string plugin;          // "" = FERRUM_BACKEND / config / auto
  std::string op_glob = "*";   // matched against "op" and "op/shape"
  Dtype dtype = Dtype::invalid;  // invalid = the context's default activation dtype
  bool json = false;
  bool quick = false;
  bool gpu = false;            // set from the device kind
  int batches = 10;            // timed batches per case (median over them); >= 10
  double batch_ms = 20;        // target duration of one timed batch
  double max_call_ms = 0;      // a case whose one call takes longer is reported, not timed
                               // (0 = default: CPU 500, GPU 2000)
  double max_mem_gb = 0;       // 0 = default (CPU 3, GPU 24); larger cases are skipped
  double ws_bytes = 0;         // rotating working-set target (0 = from the caches)
  bool no_ceilings = false;
};

// One plugin context plus the helpers every case setup uses.
struct Env {
  Backend* backend = nullptr;
  Context* ctx = nullptr;
  Dtype dt = Dtype::f32;
  uint64_t esz = 4;  // element size of dt
  const Options* opt = nullptr;
  std::vector<Buffer> chunks;  // seeded random f32 sources, kChunk elements each
  static constexpr uint64_t kChunk = 1u << 20;
  uint64_t seed = 0x9e3779b97f4a7c15ull;

  // A buffer of n elements of dtype `dt` (or `dtype`) filled with seeded random values in
  // [-1, 1) that are never zero (device copies from the f32 chunks, converting).
  Buffer random(uint64_t n, Dtype dtype = Dtype::invalid);
  void init_chunks();
  uint64_t next();  // the env's xorshift stream
};

using RunFn = std::function<void(uint64_t copy)>;

struct Case {
  std::string op, shape;
  double bytes = 0;        // unique bytes read + written by one call
  double flops = 0;        // floating-point operations of one call (multiply-add = 2)
  double footprint = 0;    // bytes allocated per rotating copy (>= bytes)
  uint64_t max_copies = 4096;
  // Allocates `copies` rotating input/output sets and returns the call of set i.
  std::function<RunFn(Env&, uint64_t copies)> setup;
};

struct Ceilings {
  double copy_gbs = 0;          // the memory ceiling used for % (max of the two below)
  double plugin_copy_gbs = 0;   // plugin copy_slice, device to device, (read + write) / s
  double host_copy_gbs = 0;     // CPU only: memcpy on `threads` host threads (copy_slice may
                                // run on one thread while the ops run on all of them)
  double matmul_tflops = 0;     // GPU: plugin gemm 4096^3; CPU: fma_peak * threads
  double fma_1core_gflops = 0;  // CPU: hand-written FMA loop, one thread (widest ISA)
  double fma_avx2_gflops = 0;
  double fma_avx512_gflops = 0;
  double fma_scalar_gflops = 0;
  std::string fma_isa;
  uint64_t threads = 1;
  std::string matmul_source;
};

struct Result {
  std::string op, shape, dtype, status = "ok", note;
  double median_us = 0, min_us = 0, max_us = 0;
  uint64_t batches = 0, calls_per_batch = 0, copies = 0;
  double working_set = 0, bytes = 0, flops = 0;
  double gbs = 0, tflops = 0, pct = 0;
  std::string bound;  // "mem" or "flop"
};

struct Dispatch {
  std::string op;
  double facade_len0_ns = 0, facade_len1_ns = 0, slot_len0_ns = 0, loop_ns = 0;
  std::string note;
};

// cases.cpp
std::vector<Case> make_cases(const Env& env);
// `copies` buffers of n seeded random elements of `dtype` (invalid: the env's dtype), shared by
// the calls a setup returns.
using Pool = std::vector<Buffer>;
using PoolPtr = std::shared_ptr<Pool>;
PoolPtr pool(Env& env, uint64_t copies, uint64_t n, Dtype dtype = Dtype::invalid);

// cases_paged.cpp: the paged-KV family (decode, varlen prefill next to dense flash_attention,
// the varlen writer) and quantised KV (int8 / fp8 append and decode), appended to `cs`.
void add_paged_cases(const Env& env, std::vector<Case>& cs);

// cases_quant.cpp: GGUF gguf_matmul (Q4_0, Q8_0, Q4_K, Q6_K at 8B-Llama projection shapes).
void add_quant_cases(const Env& env, std::vector<Case>& cs);

// cases_moe.cpp: moe_gemm (gate/up) and fused_moe at Qwen3-30B-A3B shapes, seeded random routing.
void add_moe_cases(const Env& env, std::vector<Case>& cs);

// ceilings.cpp
Ceilings measure_ceilings(Env& env);
Dispatch measure_dispatch(Env& env);
uint64_t last_level_cache_bytes();
uint64_t cpu_threads();
std::string cpu_model();

// main.cpp: times `run` over rotating copies; fills the timing fields of r.
void time_case(Env& env, const RunFn& run, uint64_t copies, Result& r);

}  // namespace ferrum::bench
