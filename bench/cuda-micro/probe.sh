#!/usr/bin/env bash
# Device-machine probe of the decode's memory pipeline (docs/perf-notes.md, "Paged decode round 8"):
# the read ceiling and the ring variants (stream_read.cu), SDPA's decode kernel under ncu, and
# ferrum's paged decode under ncu at the same shape. Run from the repository root with $OUT set.
set -uo pipefail
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version --format=csv
nvcc -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 bench/cuda-micro/stream_read.cu -o /tmp/stream_read && \
  /tmp/stream_read 8 2>&1 | tee "$OUT/stream_read.txt"
python3 bench/cuda-micro/sdpa_decode.py 64 32768 2>&1 | tee "$OUT/sdpa.txt"
python3 bench/cuda-micro/sdpa_decode.py 1 32768 2>&1 | tee -a "$OUT/sdpa.txt"
ncu --clock-control none --kernel-name regex:'(?i)(flash|fmha|attn|sdpa|cudnn|split|combine)' --launch-skip 3 --launch-count 2 \
  --section LaunchStats --section Occupancy --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
  python3 bench/cuda-micro/sdpa_decode.py 64 32768 > "$OUT/ncu-sdpa.txt" 2>&1; tail -c 9000 "$OUT/ncu-sdpa.txt" | grep -v '^ *$' | head -150
