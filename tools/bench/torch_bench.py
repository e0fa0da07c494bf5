#!/usr/bin/env python3
"""PyTorch on the shapes of ferrum-bench, for the ratio column of scripts/gpu-bench.

    python3 tools/bench/torch_bench.py [--dtype bf16|f16|f32] [--op GLOB[,GLOB...]] [--quick]
                                       [--no-compile] [--out FILE]

Rows are keyed "op/shape/dtype" exactly like ferrum-bench's JSON rows (tools/ferrum-bench/
cases.cpp defines the shapes; keep the two in step). Method as ferrum-bench: seeded random
inputs (never zeros) in rotating copies so the working set is >= 128 MB (>= 2x the L2 of an
H100/H200), warm-up over every copy, CUDA events around batches of calls (~20 ms each), median
of >= 10 batches. The fused forms (fused_add_rms_norm, silu*mul, qk_norm_rope,
split_qkv_norm_rope) are timed as torch.compile'd functions ("impl": "compile") and eagerly
("eager_us"); the others are the single torch op named in "impl".

Paged-KV peers (tools/ferrum-bench/cases_paged.cpp): SDPA on the same K/V gathered contiguous
([batch, kv_heads, keys, head_dim]; the gather is not timed), enable_gqa=True:
  * decode, one query per sequence, batch 1-256 x context 1k-32k, GQA 32/8 and 64/8: one
    measurement, reported under paged_batched_decode_attention and paged_decode_attention (and,
    at batch 1, under int8_/fp8_paged_decode_attention: SDPA in the run's dtype next to ferrum's
    quantised cache);
  * causal prefill of 8 sequences x 2k tokens: reported under paged_varlen_attention,
    paged_varlen_attention_fa2_ffi and flash_attention (the dense baseline of the same tokens).

MoE peers (tools/ferrum-bench/cases_moe.cpp): Qwen3-30B-A3B shapes (128 experts, top-8, hidden
2048, expert intermediate 768) at 1, 16, 64, 512, 4096 tokens, on the same seeded routing as
ferrum-bench (the same splitmix64 stream and partial Fisher-Yates shuffle: each token picks 8
distinct experts uniformly at random); the (token, choice) pairs are grouped per expert in
ascending pair id, as ferrum's sorted_token_ids, without the padding:
  * moe_gemm (gate/up alone): torch._grouped_mm(mat_a, mat_b, offs=offs) with mat_a the token rows
    gathered per expert [pairs, 2048] (the gather is not timed), mat_b = w.transpose(-2, -1)
    [128, 2048, 1536] of w [128, 1536, 2048], offs the int32 cumulative per-expert counts on the
    device ("impl": "grouped_mm");
  * fused_moe: the whole block from x [tokens, 2048] to out: gather, grouped_mm gate/up,
    silu(gate)·up, grouped_mm down, then the routing-weighted index_add_ into an f32 [tokens, 2048]
    cast to the run's dtype ("impl": "grouped_mm").
  What _grouped_mm requires (PyTorch >= 2.8, its docs and input checks): 2D mat_a x 3D mat_b
  with 1D int32 offs on the device, one end offset per expert (here offs[-1] = pairs); mat_a's and
  mat_b's strides multiples of 16 bytes and their data 16-byte aligned (rows of 2048, 1536 and 768
  elements are); mat_b [experts, k, n] may be the transposed view of a contiguous [experts, n, k].
  There is no rule on group sizes (empty groups included), so nothing is padded. Its fast path is
  bf16 on sm90+; other dtypes run torch's own per-group loop inside _grouped_mm where the
  installed version accepts them. A tiny probe at the first MoE case decides: when
  torch._grouped_mm is missing, fails or rejects the dtype, both peers run a per-expert loop of
  torch.mm instead ("impl": "mm_loop").

Differences to keep in mind when reading ratios:
  * embedding_lookup: ferrum takes host ids (includes the upload); torch gets device ids.
  * flash_attention decode and the paged decode peers: SDPA with is_causal=False (one query at
    the last position sees every key, the same set ferrum's causal decode sees).
  * paged rows: ferrum reads K/V through shuffled block tables, torch reads them contiguous.
  * moe_gemm: ferrum gathers x's rows through sorted_token_ids inside the op; torch gets them
    gathered. fused_moe: ferrum sums the top-8 rows per token in f32 in a fixed order, torch with
    index_add_ (atomics).
"""
import argparse
import fnmatch
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

MODELS = [
    dict(name="8b", hidden=4096, qh=32, kvh=8, hd=128, ffn=12288, vocab=151936),
    dict(name="0.6b", hidden=1024, qh=16, kvh=8, hd=128, ffn=3072, vocab=151936),
]
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
EPS = 1e-6
# The paged suite's shapes: (name, q heads, kv heads, head_dim), as in cases_paged.cpp.
GQAS = [("gqa32_8", 32, 8, 128), ("gqa64_8", 64, 8, 128)]
MAX_KV_BYTES = 40e9  # larger decode combinations are not listed (ferrum-bench skips them too)
# The MoE suite (cases_moe.cpp): Qwen3-30B-A3B.
MOE = dict(name="qwen3_30b_a3b", experts=128, top_k=8, hidden=2048, inter=768)
MOE_TOKENS = (1, 16, 64, 512, 4096)
MASK64 = (1 << 64) - 1


def tokens_label(n):
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def matches(pattern, op, shape):
    """True when op or op/shape matches one of the comma-separated globs (as ferrum-bench --op)."""
    return any(fnmatch.fnmatch(op, g) or fnmatch.fnmatch(f"{op}/{shape}", g) for g in pattern.split(","))


class Bench:
    def __init__(self, args):
        self.args = args
        self.dev = torch.device("cuda")
        self.dt = DTYPES[args.dtype]
        self.esz = torch.tensor([], dtype=self.dt).element_size()
        self.gen = torch.Generator(device=self.dev)
        self.gen.manual_seed(1234)
        self.ws = 16e6 if args.quick else 128e6
        self.batch_ms = 2.0 if args.quick else 20.0
        self.rows = []

    def rand(self, *shape, dtype=None):
        t = torch.rand(*shape, generator=self.gen, device=self.dev, dtype=torch.float32) * 2 - 1
        t = torch.where(t == 0, torch.full_like(t, 0.5), t)  # never zero
        return t.to(dtype or self.dt)

    def rand_inplace(self, *shape):
        """rand() filled in place in the run's dtype: no f32 temporaries (the paged decode KV
        reaches 34 GB)."""
        t = torch.empty(*shape, device=self.dev, dtype=self.dt).uniform_(-1, 1, generator=self.gen)
        return t.masked_fill_(t == 0, 0.5)

    def copies(self, footprint):
        return int(min(4096, max(1, math.ceil(self.ws / max(footprint, 1)))))

    def time(self, fn, n):
        """Median µs per call of fn(i), i rotating over n copies."""
        for i in range(n):
            fn(i)
        torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        idx = 0

        def batch(calls):
            nonlocal idx
            s.record()
            for _ in range(calls):
                fn(idx % n)
                idx += 1
            e.record()
            e.synchronize()
            return s.elapsed_time(e)

        t1 = batch(1)
        calls = max(1, min(100000, math.ceil(self.batch_ms / max(t1, 1e-5))))
        calls = max(1, min(100000, math.ceil(self.batch_ms / max(batch(calls) / calls, 1e-5))))
        us = sorted(batch(calls) * 1e3 / calls for _ in range(10))
        return us[len(us) // 2]

    def case(self, op, shape, footprint, setup, impl, eager=None, aliases=()):
        """Times setup's call once; the row is reported under op and under each alias op (the
        torch peer of several ferrum ops), for those of them that --op selects."""
        ops = [o for o in (op, *aliases) if matches(self.args.op, o, shape)]
        if not ops:
            return
        key = f"{ops[0]}/{shape}/{self.args.dtype}"
        row = dict(key=key, op=ops[0], shape=shape, dtype=self.args.dtype, impl=impl, status="ok")
        t0 = time.time()
        try:
            n = self.copies(footprint)
            fn, eager_fn = setup(n)
            row["median_us"] = self.time(fn, n)
            if eager_fn is not None:
                row["eager_us"] = self.time(eager_fn, n)
            row["copies"] = n
        except Exception as ex:  # report, never stop
            row["status"] = "error"
            row["note"] = f"{type(ex).__name__}: {str(ex).splitlines()[0] if str(ex) else ''}"[:300]
        row["wall_s"] = round(time.time() - t0, 2)
        torch.cuda.empty_cache()
        for o in ops:
            r = dict(row, key=f"{o}/{shape}/{self.args.dtype}", op=o)
            self.rows.append(r)
            print(f"{r['key']:60s} {r.get('median_us', float('nan')):12.2f} us  {r['status']} {r.get('note', '')}",
                  file=sys.stderr, flush=True)

    def compiled(self, fn):
        if self.args.no_compile:
            return fn
        return torch.compile(fn, dynamic=False)

    def large_rows(self, bytes_per_row):
        target = 16e6 if self.args.quick else 256 * 1024 * 1024
        rows = 1
        while rows * bytes_per_row < target:
            rows *= 2
        return rows


def rms(x, w):
    return F.rms_norm(x, (x.shape[-1],), w, EPS)


def neox(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    c, s = cos.float(), sin.float()
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def run(b):
    e, quick, dt = b.esz, b.args.quick, b.dt
    # fused forms (torch.compile) ------------------------------------------------------------
    def f_add_rms(r, x, w):
        r.add_(x)
        return rms(r, w)

    def f_silu(gu):
        g, u = gu.chunk(2, dim=-1)
        return F.silu(g) * u

    def f_qk(x, w, cos, sin):  # x [T, H, D] -> head-major [H, T, D]
        y = neox(rms(x.float(), w.float()), cos[:, None, :], sin[:, None, :])
        return y.to(x.dtype).transpose(0, 1).contiguous()

    def f_split(qkv, qw, kw, cos, sin, qh, kvh, hd):
        t = qkv.shape[0]
        q, k, v = qkv.view(t, qh + 2 * kvh, hd).split([qh, kvh, kvh], dim=1)
        c, s = cos[:, None, :], sin[:, None, :]
        qo = neox(rms(q.float(), qw.float()), c, s).to(qkv.dtype).transpose(0, 1).contiguous()
        ko = neox(rms(k.float(), kw.float()), c, s).to(qkv.dtype).transpose(0, 1).contiguous()
        return qo, ko, v.transpose(0, 1).contiguous()

    c_add_rms, c_silu, c_qk, c_split = (b.compiled(f) for f in (f_add_rms, f_silu, f_qk, f_split))

    for md in MODELS:
        d = md["hidden"]
        for label, rows in (("decode", 1), ("large", b.large_rows(2 * d * e))):
            n = rows * d
            shape = f"{md['name']}.{label}"

            def s_copy(c, n=n):
                src = [b.rand(n) for _ in range(c)]
                dst = [b.rand(n) for _ in range(c)]
                return (lambda i: dst[i].copy_(src[i])), None
            b.case("copy_slice", shape, 2 * n * e, s_copy, "Tensor.copy_")

    for md in MODELS:
        d = md["hidden"]
        for label, rows in (("decode", 1), ("large", b.large_rows(2 * d * e))):
            t = rows
            tf = max(1, rows * 2 // 3)
            shape = f"{md['name']}.{label}"

            def s_rms(c, t=t, d=d):
                x = [b.rand(t, d) for _ in range(c)]
                w = b.rand(d)
                return (lambda i: rms(x[i], w)), None
            b.case("rms_norm", shape, 2 * t * d * e, s_rms, "F.rms_norm")

            def s_frms(c, t=tf, d=d):
                r = [b.rand(t, d) for _ in range(c)]
                x = [b.rand(t, d) for _ in range(c)]
                w = b.rand(d)
                return (lambda i: c_add_rms(r[i], x[i], w)), (lambda i: f_add_rms(r[i], x[i], w))
            b.case("fused_add_rms_norm", shape, 4 * tf * d * e, s_frms, "compile(add_ + rms_norm)")

            def s_ln(c, t=t, d=d):
                x = [b.rand(t, d) for _ in range(c)]
                g, bb = b.rand(d), b.rand(d)
                return (lambda i: F.layer_norm(x[i], (d,), g, bb, EPS)), None
            b.case("layer_norm", shape, 2 * t * d * e, s_ln, "F.layer_norm")

            def s_add(c, n=t * d):
                r = [b.rand(n) for _ in range(c)]
                x = [b.rand(n) for _ in range(c)]
                return (lambda i: r[i].add_(x[i])), None
            b.case("add_inplace", shape, 3 * t * d * e, s_add, "Tensor.add_")

    for md in MODELS:
        im = md["ffn"]
        for label, rows in (("decode", 1), ("large", b.large_rows(3 * im * e))):
            t = rows
            shape = f"{md['name']}.{label}"

            def s_silu(c, t=t, im=im):
                gu = [b.rand(t, 2 * im) for _ in range(c)]
                return (lambda i: c_silu(gu[i])), (lambda i: f_silu(gu[i]))
            b.case("fused_silu_mul_split", shape, 3 * t * im * e, s_silu, "compile(silu(g) * u)")
            ln = t * im * 3 // 2

            def s_gelu(c, ln=ln):
                x = [b.rand(ln) for _ in range(c)]
                return (lambda i: F.gelu(x[i])), None
            b.case("gelu", shape, 2 * ln * e, s_gelu, "F.gelu (erf)")

    for md in MODELS:
        hd, qh, kvh = md["hd"], md["qh"], md["kvh"]
        w = (qh + 2 * kvh) * hd
        for label, rows in (("decode", 1), ("large", b.large_rows(2 * w * e))):
            t = rows
            pos = 4095 if rows == 1 else 0
            shape = f"{md['name']}.{label}"

            def s_qk(c, t=t, pos=pos, qh=qh, hd=hd):
                x = [b.rand(t, qh, hd) for _ in range(c)]
                nw = b.rand(hd)
                cos, sin = b.rand(pos + t, hd // 2), b.rand(pos + t, hd // 2)
                cs, sn = cos[pos:pos + t], sin[pos:pos + t]
                return (lambda i: c_qk(x[i], nw, cs, sn)), (lambda i: f_qk(x[i], nw, cs, sn))
            b.case("qk_norm_rope", shape, 2 * t * qh * hd * e, s_qk, "compile(rms_norm + neox + transpose)")

            def s_split(c, t=t, pos=pos, qh=qh, kvh=kvh, hd=hd, w=w):
                qkv = [b.rand(t, w) for _ in range(c)]
                qn, kn = b.rand(hd), b.rand(hd)
                cos, sin = b.rand(pos + t, hd // 2), b.rand(pos + t, hd // 2)
                cs, sn = cos[pos:pos + t], sin[pos:pos + t]
                return ((lambda i: c_split(qkv[i], qn, kn, cs, sn, qh, kvh, hd)),
                        (lambda i: f_split(qkv[i], qn, kn, cs, sn, qh, kvh, hd)))
            b.case("split_qkv_norm_rope", shape, 2 * t * w * e, s_split, "compile(split + rms_norm + neox)")

    for md in MODELS:
        d = md["hidden"]
        vocab = 8192 if quick else md["vocab"]
        for label, rows in (("decode", 1), ("large", b.large_rows(2 * d * e))):
            shape = f"{md['name']}.{label}"

            def s_emb(c, n=rows, d=d, vocab=vocab):
                table = b.rand(vocab, d)
                ids = [torch.randint(0, vocab, (n,), generator=b.gen, device=b.dev) for _ in range(c)]
                return (lambda i: F.embedding(ids[i], table)), None
            b.case("embedding_lookup", shape, 2 * rows * d * e, s_emb, "F.embedding (device ids)")

    for md in MODELS:
        projs = [("qkv", (md["qh"] + 2 * md["kvh"]) * md["hd"], md["hidden"]),
                 ("o", md["hidden"], md["qh"] * md["hd"]),
                 ("gate_up", 2 * md["ffn"], md["hidden"]),
                 ("down", md["hidden"], md["ffn"]),
                 ("lm_head", md["vocab"], md["hidden"])]
        for name, n, k in projs:
            for m in (1, 16, 128, 2048):
                if quick and m > 128:
                    continue
                nn = min(n, 4096) if quick else n

                def s_gemm(c, m=m, n=nn, k=k):
                    a = [b.rand(m, k) for _ in range(c)]
                    w = [b.rand(n, k) for _ in range(c)]
                    return (lambda i: torch.matmul(a[i], w[i].t())), None
                b.case("gemm", f"{md['name']}.{name}.m{m}", (m * k + nn * k + m * nn) * e, s_gemm,
                       "torch.matmul(a, b.T)")

    for md in MODELS:
        h, kvh, hd = md["qh"], md["kvh"], md["hd"]
        S = 256 if quick else 2048

        def s_pre(c, S=S, h=h, kvh=kvh, hd=hd):
            q = [b.rand(1, h, S, hd) for _ in range(c)]
            k = [b.rand(1, kvh, S, hd) for _ in range(c)]
            v = [b.rand(1, kvh, S, hd) for _ in range(c)]
            return (lambda i: F.scaled_dot_product_attention(q[i], k[i], v[i], is_causal=True,
                                                             enable_gqa=True)), None
        b.case("flash_attention", f"{md['name']}.prefill.s{S}", (2 * h * S * hd + 2 * kvh * S * hd) * e,
               s_pre, "F.sdpa(causal, enable_gqa)")
        L = 4096 if quick else 65536

        def s_dec(c, L=L, h=h, kvh=kvh, hd=hd):
            q = [b.rand(1, h, 1, hd) for _ in range(c)]
            k = [b.rand(1, kvh, L, hd) for _ in range(c)]
            v = [b.rand(1, kvh, L, hd) for _ in range(c)]
            return (lambda i: F.scaled_dot_product_attention(q[i], k[i], v[i], is_causal=False,
                                                             enable_gqa=True)), None
        b.case("flash_attention", f"{md['name']}.decode.kv{L}", (2 * h * hd + 2 * kvh * L * hd) * e,
               s_dec, "F.sdpa(enable_gqa)")

    # MLA, absorbed (DeepSeek-V3 shape): scores = q·[c | r]^T, softmax in f32, out = P·c — batched matmuls
    # (cuBLAS) as DeepSeek's reference inference code computes it (SDPA cannot take K and V head sizes
    # of 576 / 512 other than on its math path, which is slower).
    H, R, P = 128, 512, 64
    for B, L in (((1, 4096),) if quick else ((1, 4096), (1, 32768), (16, 4096), (64, 4096))):
        def s_mla(c, B=B, L=L):
            q = [b.rand(B, H, R + P) for _ in range(c)]
            k = [b.rand(B, L, R + P) for _ in range(c)]

            def run(i):
                s = torch.bmm(q[i], k[i].transpose(1, 2)).float() * 0.0723
                return torch.bmm(torch.softmax(s, dim=-1).to(q[i].dtype), k[i][..., :R])
            return run, None
        name = f"dsv3.decode.kv{L}" if B == 1 else f"dsv3.decode.b{B}.kv{L}"
        b.case("mla_attention", name, B * (L * (R + P) + H * (R + P) + H * R) * e, s_mla,
               "bmm(q, [c | r]^T), softmax f32, bmm(P, c)")

    run_paged(b)
    run_moe(b)


def run_paged(b):
    """SDPA peers of the paged-KV suite (see the module docstring)."""
    e, quick = b.esz, b.args.quick
    batches = (1, 4) if quick else (1, 8, 64, 256)
    contexts = (256, 1024) if quick else (1024, 4096, 32768)
    for name, h, kvh, hd in GQAS:
        for B in batches:
            for L in contexts:
                kv_bytes = 2 * B * L * kvh * hd * e
                if kv_bytes > MAX_KV_BYTES:
                    continue

                def s_dec(c, B=B, L=L, h=h, kvh=kvh, hd=hd):
                    q = [b.rand_inplace(B, h, 1, hd) for _ in range(c)]
                    k = [b.rand_inplace(B, kvh, L, hd) for _ in range(c)]
                    v = [b.rand_inplace(B, kvh, L, hd) for _ in range(c)]
                    return (lambda i: F.scaled_dot_product_attention(q[i], k[i], v[i], is_causal=False,
                                                                     enable_gqa=True)), None
                aliases = ["paged_decode_attention"]
                if B == 1:
                    aliases += ["int8_paged_decode_attention", "fp8_paged_decode_attention"]
                b.case("paged_batched_decode_attention", f"{name}.b{B}.kv{tokens_label(L)}",
                       kv_bytes + 2 * B * h * hd * e, s_dec, "F.sdpa(enable_gqa), K/V contiguous", aliases=aliases)
        N, S = (2, 256) if quick else (8, 2048)

        def s_pre(c, N=N, S=S, h=h, kvh=kvh, hd=hd):
            q = [b.rand_inplace(N, h, S, hd) for _ in range(c)]
            k = [b.rand_inplace(N, kvh, S, hd) for _ in range(c)]
            v = [b.rand_inplace(N, kvh, S, hd) for _ in range(c)]
            return (lambda i: F.scaled_dot_product_attention(q[i], k[i], v[i], is_causal=True,
                                                             enable_gqa=True)), None
        b.case("paged_varlen_attention", f"{name}.{N}x{tokens_label(S)}", (2 * h + 2 * kvh) * N * S * hd * e, s_pre,
               "F.sdpa(causal, enable_gqa), K/V contiguous",
               aliases=["paged_varlen_attention_fa2_ffi", "flash_attention"])


def splitmix64(state):
    """(new state, output) of the splitmix64 step ferrum-bench's cases_moe.cpp uses."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def moe_routing(tokens, experts=MOE["experts"], top_k=MOE["top_k"]):
    """The seeded routing of cases_moe.cpp: the expert of each pair p = t*top_k + k (the first
    top_k places of a partial Fisher-Yates shuffle per token), as a list of per-expert lists of
    pair ids in ascending order. Plain Python: the same numbers as the C++ side."""
    state = 0x30B0A3B000000000 + tokens
    perm = list(range(experts))
    groups = [[] for _ in range(experts)]
    for t in range(tokens):
        for k in range(top_k):
            state, r = splitmix64(state)
            j = k + r % (experts - k)
            perm[k], perm[j] = perm[j], perm[k]
            groups[perm[k]].append(t * top_k + k)
    return groups


def grouped_mm_works(b):
    """True when torch._grouped_mm exists and accepts the run's dtype here (a tiny probe: 2
    experts, one of them empty)."""
    gmm = getattr(torch, "_grouped_mm", None)
    if gmm is None:
        print("torch_bench: no torch._grouped_mm in this PyTorch; MoE peers use mm_loop", file=sys.stderr)
        return False
    try:
        a = b.rand(16, 32)
        w = b.rand(2, 16, 32)  # [experts, n, k]
        offs = torch.tensor([16, 16], dtype=torch.int32, device=b.dev)
        out = gmm(a, w.transpose(-2, -1), offs=offs)
        ref = a.float() @ w[0].float().t()
        if torch.allclose(out.float(), ref, rtol=2e-2, atol=2e-2 * math.sqrt(32)):
            return True
        print("torch_bench: torch._grouped_mm gave a wrong product in the probe; MoE peers use mm_loop",
              file=sys.stderr)
    except Exception as ex:  # unavailable for this dtype / device: the mm loop
        why = str(ex).splitlines()[0] if str(ex) else ""
        print(f"torch_bench: torch._grouped_mm unusable ({type(ex).__name__}: {why}); MoE peers use mm_loop",
              file=sys.stderr)
    return False


def run_moe(b):
    """Grouped-GEMM peers of the MoE suite (see the module docstring)."""
    e, quick, dt = b.esz, b.args.quick, b.dt
    E, K, H, I = MOE["experts"], MOE["top_k"], MOE["hidden"], MOE["inter"]
    N = 2 * I
    use_gmm = None  # probed on the first selected case

    def gmm(mat_a, w, offs, counts, out_cols):
        """mat_a [pairs, k] grouped by expert times each expert's w [n, k] transposed."""
        if use_gmm:
            return torch._grouped_mm(mat_a, w.transpose(-2, -1), offs=offs)
        out = torch.empty(mat_a.shape[0], out_cols, device=b.dev, dtype=mat_a.dtype)
        s = 0
        for x, c in enumerate(counts):
            if c:
                torch.mm(mat_a[s:s + c], w[x].t(), out=out[s:s + c])
            s += c
        return out

    for T in MOE_TOKENS:
        if quick and T > 64:
            continue
        shape_g, shape_f = f"{MOE['name']}.gate_up.t{T}", f"{MOE['name']}.t{T}"
        if not (matches(b.args.op, "moe_gemm", shape_g) or matches(b.args.op, "fused_moe", shape_f)):
            continue
        if use_gmm is None:
            use_gmm = grouped_mm_works(b)
        impl = "grouped_mm" if use_gmm else "mm_loop"
        groups = moe_routing(T)
        counts = [len(g) for g in groups]
        pairs_sorted = torch.tensor([p for g in groups for p in g], dtype=torch.long, device=b.dev)
        tok = pairs_sorted // K  # the token of each grouped row
        offs = torch.tensor(counts, dtype=torch.int32, device=b.dev).cumsum(0, dtype=torch.int32)
        P = T * K

        def s_gemm(c, T=T, P=P, tok=tok, offs=offs, counts=counts):
            w = b.rand_inplace(E, N, H)
            x = b.rand(T, H)
            mat_a = x.index_select(0, tok).contiguous()  # not timed
            return (lambda i: gmm(mat_a, w, offs, counts, N)), None
        b.case("moe_gemm", shape_g, E * N * H * e + (T * H + P * N) * e, s_gemm, impl)

        def s_fused(c, T=T, tok=tok, offs=offs, counts=counts, pairs_sorted=pairs_sorted):
            w_gu = b.rand_inplace(E, N, H)
            w_d = b.rand_inplace(E, H, I)
            x = b.rand(T, H)
            wts = b.rand(T, K, dtype=torch.float32).reshape(-1).index_select(0, pairs_sorted)[:, None]

            def block(i):
                xs = x.index_select(0, tok)
                gu = gmm(xs, w_gu, offs, counts, N)
                act = F.silu(gu[:, :I]) * gu[:, I:]
                y = gmm(act.contiguous(), w_d, offs, counts, H)
                out = torch.zeros(T, H, device=b.dev, dtype=torch.float32)
                return out.index_add_(0, tok, y.float() * wts).to(dt)
            return block, None
        b.case("fused_moe", shape_f, E * (N * H + H * I) * e + 2 * T * H * e, s_fused, impl)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--op", default="*")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", default="-")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_bench: no CUDA device", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False  # f32 matmul in full precision, as ferrum
    torch.backends.cudnn.allow_tf32 = False
    b = Bench(args)
    t0 = time.time()
    run(b)
    doc = dict(tool="torch_bench", torch=torch.__version__, cuda=torch.version.cuda,
               device=torch.cuda.get_device_name(), dtype=args.dtype, quick=args.quick,
               compile=not args.no_compile, wall_s=round(time.time() - t0, 1), rows=b.rows)
    text = json.dumps(doc, indent=1)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
