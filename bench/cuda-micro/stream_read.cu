// stream_read — read-bandwidth probes for the memory pipeline of the CUDA decode kernels
// (docs/perf-notes.md, "Paged decode round 8"). Not part of the build: compiled and run by hand on
// the GPU machine (`nvcc -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 stream_read.cu`).
//
// Every probe reads the same bytes as a decode over a contiguous KV cache: `groups` CTAs, each
// streaming its own K region and V region (rows of 256 bytes = hd 128 in bf16), nothing written
// but one float per thread. Probes:
//   ld    : plain 16-byte loads, U in flight per thread, grid-stride over the whole buffer (the
//           read ceiling of this card);
//   ring  : the decode's pipeline: a cp.async ring of S stages of KEYS K rows + KEYS V rows per
//           CTA of 128 threads (wait, barrier, issue the next stage, then W dependent 16-byte
//           shared-memory reads per thread standing in for the tile's math);
//   bulk  : the same ring filled by one thread with two cp.async.bulk copies per stage (the K and
//           V tiles are contiguous in this layout), completing on a per-stage mbarrier.
// Output: one line per probe, GB/s of bytes read.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CK(x)                                                                              \
  do {                                                                                     \
    cudaError_t e_ = (x);                                                                  \
    if (e_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wait_group() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ---- ld -------------------------------------------------------------------------------------
template <int U>
__global__ void __launch_bounds__(256) ld_kernel(const uint4* __restrict__ p, size_t n16, float* out) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  uint32_t acc = 0;
  for (; i + (U - 1) * stride < n16; i += U * stride) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) v[u] = __ldcs(p + i + u * stride);
#pragma unroll
    for (int u = 0; u < U; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n16; i += stride) acc ^= p[i].x;
  if (acc == 0x12345678u) out[0] = 1.0f;
}

// ---- ring (cp.async) -------------------------------------------------------------------------
constexpr int kRow = 256;           // bytes per K or V row
constexpr int kLd = kRow + 16;      // padded smem row
template <int KEYS, int S>
__global__ void __launch_bounds__(128) ring_kernel(const unsigned char* __restrict__ K,
                                                   const unsigned char* __restrict__ V, size_t rows,
                                                   int work, float* out) {
  extern __shared__ __align__(128) unsigned char sm[];
  constexpr int kStage = 2 * KEYS * kLd;
  const int tid = threadIdx.x;
  const unsigned char* kb = K + static_cast<size_t>(blockIdx.x) * rows * kRow;
  const unsigned char* vb = V + static_cast<size_t>(blockIdx.x) * rows * kRow;
  const int ntiles = static_cast<int>(rows / KEYS);
  auto issue = [&](int tile) {
    unsigned char* st = sm + (tile % S) * kStage;
    const size_t r0 = static_cast<size_t>(tile) * KEYS;
#pragma unroll
    for (int c = tid; c < KEYS * 16; c += 128) {  // 16 chunks per row
      const int r = c >> 4, ch = c & 15;
      cp16(st + r * kLd + ch * 16, kb + (r0 + r) * kRow + ch * 16);
      cp16(st + (KEYS + r) * kLd + ch * 16, vb + (r0 + r) * kRow + ch * 16);
    }
  };
#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    if (s < ntiles) issue(s);
    commit();
  }
  uint32_t acc = 0;
  for (int t = 0; t < ntiles; ++t) {
    wait_group<S - 2>();
    __syncthreads();
    if (t + S - 1 < ntiles) issue(t + S - 1);
    commit();
    const unsigned char* st = sm + (t % S) * kStage;
    int off = (tid * 16) % (2 * KEYS * kLd - 16);
    for (int w = 0; w < work; ++w) {  // dependent reads: the address depends on the last value
      const uint4 v = *reinterpret_cast<const uint4*>(st + (off & ~15));
      acc += v.x;
      off = (off + 272 + (v.y & 16)) % (2 * KEYS * kLd - 16);
    }
  }
  if (acc == 0x12345678u) out[tid] = 1.0f;
}

// ---- bulk (cp.async.bulk + mbarrier) ---------------------------------------------------------
template <int KEYS, int S>
__global__ void __launch_bounds__(128) bulk_kernel(const unsigned char* __restrict__ K,
                                                   const unsigned char* __restrict__ V, size_t rows,
                                                   int work, float* out) {
  extern __shared__ __align__(128) unsigned char smb[];
  constexpr int kBytes = KEYS * kRow;  // one K or V tile, unpadded
  constexpr int kStage = 2 * kBytes;
  __shared__ __align__(8) uint64_t bar[S];
  const int tid = threadIdx.x;
  const unsigned char* kb = K + static_cast<size_t>(blockIdx.x) * rows * kRow;
  const unsigned char* vb = V + static_cast<size_t>(blockIdx.x) * rows * kRow;
  const int ntiles = static_cast<int>(rows / KEYS);
  if (tid == 0) {
    for (int s = 0; s < S; ++s)
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(smem_u32(&bar[s])));
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  auto issue = [&](int tile) {  // thread 0 only
    const int s = tile % S;
    unsigned char* st = smb + s * kStage;
    const size_t r0 = static_cast<size_t>(tile) * KEYS;
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(&bar[s])), "r"(kStage)
                 : "memory");
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(smem_u32(st)),
        "l"(kb + r0 * kRow), "r"(kBytes), "r"(smem_u32(&bar[s]))
        : "memory");
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
            smem_u32(st + kBytes)),
        "l"(vb + r0 * kRow), "r"(kBytes), "r"(smem_u32(&bar[s]))
        : "memory");
  };
  if (tid == 0)
    for (int s = 0; s < S - 1 && s < ntiles; ++s) issue(s);
  uint32_t acc = 0;
  for (int t = 0; t < ntiles; ++t) {
    const int s = t % S;
    const uint32_t phase = static_cast<uint32_t>((t / S) & 1);
    uint32_t done = 0;
    while (!done) {
      asm volatile(
          "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
          : "=r"(done)
          : "r"(smem_u32(&bar[s])), "r"(phase)
          : "memory");
    }
    __syncthreads();  // every thread is done with stage (t - 1) % S: refill it
    if (tid == 0 && t + S - 1 < ntiles) issue(t + S - 1);
    const unsigned char* st = smb + s * kStage;
    int off = (tid * 16) % (kStage - 16);
    for (int w = 0; w < work; ++w) {
      const uint4 v = *reinterpret_cast<const uint4*>(st + (off & ~15));
      acc += v.x;
      off = (off + 272 + (v.y & 16)) % (kStage - 16);
    }
  }
  if (acc == 0x12345678u) out[tid] = 1.0f;
}

template <class F>
double time_ms(F&& launch, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  launch();
  CK(cudaDeviceSynchronize());
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(a));
    launch();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    if (ms < best) best = ms;
  }
  CK(cudaGetLastError());
  return best;
}

template <int KEYS, int S>
void run_ring(bool bulk, const unsigned char* K, const unsigned char* V, size_t rows_total, int groups, int work,
              float* out, int sms) {
  const size_t rows = rows_total / groups / KEYS * KEYS;
  const size_t smem = bulk ? static_cast<size_t>(S) * 2 * KEYS * kRow : static_cast<size_t>(S) * 2 * KEYS * kLd;
  auto kern = bulk ? bulk_kernel<KEYS, S> : ring_kernel<KEYS, S>;
  CK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  int occ = 0;
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kern, 128, smem));
  const double ms = time_ms([&] { kern<<<groups, 128, smem>>>(K, V, rows, work, out); }, 5);
  const double bytes = 2.0 * static_cast<double>(rows) * kRow * groups;
  std::printf("%-4s keys %3d stages %d groups %5d work %3d  smem %6zu  ctas/sm %d  waves %.2f  %8.1f us  %7.1f GB/s\n",
              bulk ? "bulk" : "ring", KEYS, S, groups, work, smem, occ, static_cast<double>(groups) / (occ * sms),
              ms * 1e3, bytes / ms / 1e6);
}

int main(int argc, char** argv) {
  const double gb = argc > 1 ? std::atof(argv[1]) : 8.0;
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  const size_t bytes = static_cast<size_t>(gb * 1e9) / (2 * kRow * 4096) * (2 * kRow * 4096);
  unsigned char* buf = nullptr;
  float* out = nullptr;
  CK(cudaMalloc(&buf, bytes));
  CK(cudaMalloc(&out, 1 << 20));
  CK(cudaMemset(buf, 1, bytes));
  std::printf("%s, %d SMs, %.2f GB read per probe\n", prop.name, sms, bytes / 1e9);
  // ld ceiling
  for (int blocks_per_sm : {4, 8, 16}) {
    const size_t n16 = bytes / 16;
    const double ms = time_ms([&] { ld_kernel<8><<<sms * blocks_per_sm, 256>>>(reinterpret_cast<const uint4*>(buf), n16, out); }, 5);
    std::printf("ld   U 8 blocks/sm %2d (256 thr)                               %8.1f us  %7.1f GB/s\n", blocks_per_sm,
                ms * 1e3, bytes / ms / 1e6);
  }
  const size_t half = bytes / 2;
  const unsigned char* K = buf;
  const unsigned char* V = buf + half;
  const size_t rows_total = half / kRow;
  for (int work : {0, 32, 96}) {
    for (int groups : {512, 528, 2048}) {
      run_ring<64, 3>(false, K, V, rows_total, groups, work, out, sms);
      run_ring<64, 3>(true, K, V, rows_total, groups, work, out, sms);
    }
    run_ring<64, 2>(false, K, V, rows_total, 528, work, out, sms);
    run_ring<32, 4>(false, K, V, rows_total, 528, work, out, sms);
    run_ring<32, 6>(false, K, V, rows_total, 528, work, out, sms);
    run_ring<128, 2>(false, K, V, rows_total, 528, work, out, sms);
    run_ring<64, 4>(true, K, V, rows_total, 528, work, out, sms);
    run_ring<32, 6>(true, K, V, rows_total, 528, work, out, sms);
    run_ring<32, 3>(true, K, V, rows_total, 792, work, out, sms);
    run_ring<32, 3>(false, K, V, rows_total, 792, work, out, sms);
  }
  CK(cudaFree(buf));
  return 0;
}
