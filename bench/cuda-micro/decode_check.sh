#!/usr/bin/env bash
# Device-machine check of the decode after "Paged decode round 8" (docs/perf-notes.md): build (sm_90),
# all of test_cuda, conformance (every family; attention and paged_kv again with the tensor copies
# forced on), racecheck + memcheck of test_cuda's attention / paged cases, then ferrum-bench's decode
# rows with the default (automatic) tensor-copy choice and SDPA (tools/bench/torch_bench.py) on the
# same shapes in the same call. AB=1 adds the same rows with FERRUM_CUDA_DECODE_TMA=1 and =0 (the
# A/B of the perf notes). Run from the repository root: bench/cuda-micro/decode_check.sh
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH NCCL_NVLS_ENABLE=0
t0=$SECONDS; note() { printf '\n===== %s (t=%ds) =====\n' "$*" $((SECONDS - t0)); }
args=(-S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=${ARCHS:-90})
[[ -d .deps/usr ]] && { args+=(-DCMAKE_PREFIX_PATH="$PWD/.deps/usr"); export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu"; }
note build
cmake "${args[@]}" > /tmp/configure.log 2>&1 || tail -20 /tmp/configure.log
cmake --build build-gpu -j "$(nproc)" --target test_cuda ferrum-conformance ferrum-bench ferrum-cuda ferrum-cpu > /tmp/build.log 2>&1 \
  || { grep -E 'error' /tmp/build.log | head -30; exit 1; }
export FERRUM_PLUGIN_PATH="$PWD/build-gpu/lib/ferrum"
note "test_cuda (all)"
timeout 240 build-gpu/bin/test_cuda 2>&1 | tail -3
note "conformance --plugin cuda (every family)"
timeout 150 build-gpu/bin/ferrum-conformance --plugin cuda > "$OUT/conformance.txt" 2>&1; echo "rc=$?"
grep -E '^FAIL' -A3 "$OUT/conformance.txt" | head -20; grep -E '^conformance:' "$OUT/conformance.txt"
FERRUM_CUDA_DECODE_TMA=1 timeout 90 build-gpu/bin/ferrum-conformance --plugin cuda --family attention > /tmp/c1.txt 2>&1; echo "attention, copies forced on: rc=$? $(grep -E '^conformance:' /tmp/c1.txt)"
FERRUM_CUDA_DECODE_TMA=1 timeout 90 build-gpu/bin/ferrum-conformance --plugin cuda --family paged_kv > /tmp/c2.txt 2>&1; echo "paged_kv, copies forced on: rc=$? $(grep -E '^conformance:' /tmp/c2.txt)"
note "ferrum-bench decode rows (automatic choice) + SDPA"
ops='paged_decode_attention/gqa*,flash_attention/8b.decode*,flash_attention/0.6b.decode*'
timeout 150 build-gpu/bin/ferrum-bench --plugin cuda --dtype bf16 --json --op "$ops" --max-mem-gb 40 > "$OUT/ferrum-bench-bf16.json" 2> /tmp/bench.txt
if [[ ${AB:-0} == 1 ]]; then
  for m in 1 0; do
    FERRUM_CUDA_DECODE_TMA=$m timeout 150 build-gpu/bin/ferrum-bench --plugin cuda --dtype bf16 --json --op "$ops" \
      --max-mem-gb 40 --no-ceilings > "$OUT/ferrum-bench-tma$m.json" 2> /tmp/bench-$m.txt
  done
fi
timeout 120 python3 tools/bench/torch_bench.py --dtype bf16 --op "$ops" --out "$OUT/torch-bench-bf16.json" > /tmp/torch.txt 2>&1
python3 - "$OUT" <<'PY'
import json, sys
d = sys.argv[1]
def load(n):
    try:
        j = json.load(open(f"{d}/{n}"))
    except Exception as e:
        print(n, "unreadable", e); return {}, {}
    return {r["key"]: r for r in j.get("rows", [])}, j.get("ceilings", {})
a, ceil = load("ferrum-bench-bf16.json")
t, _ = load("torch-bench-bf16.json")
on, _ = load("ferrum-bench-tma1.json") if __import__("os").path.exists(f"{d}/ferrum-bench-tma1.json") else ({}, {})
off, _ = load("ferrum-bench-tma0.json") if on else ({}, {})
print("copy ceiling", ceil.get("copy_gbs"), "GB/s")
print(f"{'case':52s} {'ferrum us':>9s} {'sdpa us':>9s} {'sdpa/ferrum':>11s} {'GB/s':>6s}")
for k, r in a.items():
    ta, tt = r.get("median_us") or 0, t.get(k, {}).get("median_us") or 0
    ab = f"  tma {on.get(k, {}).get('median_us') or 0:9.2f} cp.async {off.get(k, {}).get('median_us') or 0:9.2f}" if on else ""
    print(f"{k:52s} {ta:9.2f} {tt:9.2f} {(tt / ta) if (tt and ta) else 0:11.2f} {r.get('gbs') or 0:6.0f}{ab}")
PY
note "racecheck + memcheck: test_cuda [attention],[paged]"
timeout 170 compute-sanitizer --tool racecheck build-gpu/bin/test_cuda '[attention],[paged]' > /tmp/racecheck.log 2>&1; echo "racecheck rc=$?"
grep -E 'RACECHECK SUMMARY|Race reported' /tmp/racecheck.log | head -5; tail -n 2 /tmp/racecheck.log
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 1 build-gpu/bin/test_cuda '[attention],[paged]' > /tmp/memcheck.log 2>&1; echo "memcheck rc=$?"
grep -E 'ERROR SUMMARY|Invalid' /tmp/memcheck.log | head -5; tail -n 2 /tmp/memcheck.log
note done
