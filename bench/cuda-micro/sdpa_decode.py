"""SDPA decode on a contiguous KV cache (the peer of ferrum's paged decode rows): times it with
CUDA events and names the kernels it launches (torch.profiler), so ncu can be pointed at them.
Usage: python3 sdpa_decode.py [batch] [keys] [q_heads] [kv_heads]"""
import sys

import torch
import torch.nn.functional as F

b = int(sys.argv[1]) if len(sys.argv) > 1 else 64
s = int(sys.argv[2]) if len(sys.argv) > 2 else 32768
hq = int(sys.argv[3]) if len(sys.argv) > 3 else 32
hkv = int(sys.argv[4]) if len(sys.argv) > 4 else 8
d = 128
g = torch.Generator(device="cuda").manual_seed(1)
q = torch.randn(b, hq, 1, d, device="cuda", dtype=torch.bfloat16, generator=g)
k = torch.randn(b, hkv, s, d, device="cuda", dtype=torch.bfloat16, generator=g)
v = torch.randn(b, hkv, s, d, device="cuda", dtype=torch.bfloat16, generator=g)
for _ in range(3):
    F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
torch.cuda.synchronize()
e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
best = 1e30
for _ in range(10):
    e0.record()
    F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    e1.record()
    torch.cuda.synchronize()
    best = min(best, e0.elapsed_time(e1))
nbytes = 2 * b * hkv * s * d * 2
print(f"sdpa b{b} x {s} gqa{hq}/{hkv}: {best * 1e3:.1f} us, {nbytes / best / 1e6:.0f} GB/s")
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
    F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    torch.cuda.synchronize()
for e in prof.key_averages():
    print("kernel:", e.key[:200], f"{e.device_time_total:.1f} us" if hasattr(e, "device_time_total") else "")
