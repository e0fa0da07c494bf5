"""The CUDA plugin through the Python package (marker `gpu`; skipped, with the reason, without a
usable CUDA backend). Each op runs on the same f16 tensors as the float64 reference and, when torch
with CUDA is installed, as torch; per-op results and timings are printed (no timing asserts).

Timings: ferrum on Buffers already on the device (ctx.upload), so no host copies are timed,
between two ferrum timer marks on the context's stream; torch on CUDA tensors between two CUDA
events; both the mean of ITERS back-to-back calls (a host-bound small op shows the Python call
overhead, which both sides pay).
FERRUM_TEST_GPU_SPEC (default "cuda") picks the backend, e.g. "cuda:1"; "cpu" dry-runs the file
on the CPU plugin.
"""
import os

import numpy as np
import pytest

import ferrum
import refs

pytestmark = pytest.mark.gpu
F16_TOL = dict(rtol=2e-2, atol=2e-2)
ITERS = 20


@pytest.fixture(scope="module")
def gpu():
    spec = os.environ.get("FERRUM_TEST_GPU_SPEC", "cuda")
    try:
        backend = ferrum.Backend.load(spec)
    except ferrum.Error as e:
        pytest.skip(f"no usable CUDA backend ({spec}): {e.message.splitlines()[0][:300]}")
    if backend.device_count < 1:
        pytest.skip(f"backend {spec} reports no device")
    return backend


@pytest.fixture(scope="module")
def gctx(gpu):
    return gpu.create_context(dtype="f16")


@pytest.fixture(scope="module")
def torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def report(capsys, op, err_ref, err_torch, t_ferrum, t_torch):
    with capsys.disabled():
        tt = f"{t_torch * 1e3:8.3f} ms" if t_torch is not None else "   (no torch)"
        et = f"{err_torch:.3e}" if err_torch is not None else "-"
        print(f"\n[gpu] {op:16s} max|ferrum-ref| {err_ref:.3e}  max|ferrum-torch| {et}  "
              f"ferrum {t_ferrum * 1e3:8.3f} ms  torch {tt}")


def time_ferrum(ctx, fn):
    """Seconds per call between two marks on the context's stream (ferrum timers)."""
    fn()
    timer = ctx.make_timer()
    ctx.record_start(timer=timer)
    for _ in range(ITERS):
        fn()
    ctx.record_end(timer=timer)
    return ctx.elapsed_ms(timer=timer) / 1e3 / ITERS


def time_torch(torch, fn):
    """Seconds per call between two CUDA events on torch's stream."""
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(ITERS):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / ITERS


def check(capsys, op, got, ref, torch_out, t_ferrum, t_torch):
    got = np.asarray(got).astype(np.float64)
    np.testing.assert_allclose(got, ref, **F16_TOL)
    err_t = None
    if torch_out is not None:
        err_t = float(np.abs(got - torch_out.float().cpu().numpy().astype(np.float64)).max())
    report(capsys, op, float(np.abs(got - ref).max()), err_t, t_ferrum, t_torch)


def test_gemm_gpu(gctx, torch_cuda, capsys):
    rng = np.random.default_rng(1)
    m, n, k = 64, 256, 512
    a = (rng.standard_normal((m, k)) * 0.1).astype(np.float16)
    b = (rng.standard_normal((n, k)) * 0.1).astype(np.float16)
    out = gctx.gemm(a=a, b=b)
    ab, bb = gctx.upload(a), gctx.upload(b)
    ob = gctx.alloc_typed(dtype="f16", n=m * n)
    t_f = time_ferrum(gctx, lambda: gctx.gemm(a=ab, b=bb, out=ob, m=m, n=n, k=k))
    np.testing.assert_array_equal(gctx.read(ob, shape=(m, n)), out)  # same op, same result
    t_out = t_t = None
    if torch_cuda:
        ta, tb = (torch_cuda.from_numpy(x).cuda() for x in (a, b))
        t_out = ta @ tb.T
        t_t = time_torch(torch_cuda, lambda: ta @ tb.T)
    check(capsys, "gemm", out, refs.gemm(a, b), t_out, t_f, t_t)


def test_rms_norm_gpu(gctx, torch_cuda, capsys):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 1024)).astype(np.float16)
    w = rng.standard_normal(1024).astype(np.float16)
    out = gctx.rms_norm(x=x, w=w, eps=1e-6)
    xb, wb = gctx.upload(x), gctx.upload(w)
    ob = gctx.alloc_typed(dtype="f16", n=x.size)
    t_f = time_ferrum(gctx, lambda: gctx.rms_norm(x=xb, w=wb, eps=1e-6, out=ob, tokens=32, dim=1024))
    t_out = t_t = None
    if torch_cuda:
        tx, tw = (torch_cuda.from_numpy(v).cuda() for v in (x, w))

        def torch_rms():
            xf = tx.float()
            return (xf * torch_cuda.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6) * tw.float()).half()

        t_out = torch_rms()
        t_t = time_torch(torch_cuda, torch_rms)
    check(capsys, "rms_norm", out, refs.rms_norm(x, w, 1e-6), t_out, t_f, t_t)


def test_qk_norm_rope_gpu(gctx, torch_cuda, capsys):
    rng = np.random.default_rng(3)
    tokens, heads, d, pos = 16, 8, 64, 3
    x = rng.standard_normal((tokens, heads, d)).astype(np.float16)
    cos, sin = refs.rope_tables(64, d)
    out = gctx.qk_norm_rope(input=x, cos=cos, sin=sin, pos_offset=pos, eps=0.0, mode="neox")
    xb, cb, sb = gctx.upload(x), gctx.upload(cos), gctx.upload(sin)
    ob = gctx.alloc_typed(dtype="f16", n=x.size)
    t_f = time_ferrum(gctx, lambda: gctx.qk_norm_rope(
        input=xb, cos=cb, sin=sb, output=ob, tokens=tokens, heads=heads, head_dim=d,
        pos_offset=pos, eps=0.0, mode="neox"))
    t_out = t_t = None
    if torch_cuda:
        tx = torch_cuda.from_numpy(x).cuda()
        tc = torch_cuda.from_numpy(cos[pos:pos + tokens]).cuda()[:, None, :]
        ts = torch_cuda.from_numpy(sin[pos:pos + tokens]).cuda()[:, None, :]

        def torch_rope():
            xf = tx.float()
            x1, x2 = xf[..., : d // 2], xf[..., d // 2:]
            y = torch_cuda.cat([x1 * tc - x2 * ts, x2 * tc + x1 * ts], dim=-1)
            return y.transpose(0, 1).contiguous().half()

        t_out = torch_rope()
        t_t = time_torch(torch_cuda, torch_rope)
    check(capsys, "qk_norm_rope", out, refs.qk_norm_rope(x, cos, sin, pos, "neox"), t_out, t_f, t_t)


def test_flash_attention_gpu(gctx, torch_cuda, capsys):
    rng = np.random.default_rng(4)
    b, h, kvh, q_len, kv_len, d = 1, 8, 2, 16, 128, 64
    pos = kv_len - q_len
    q = rng.standard_normal((b, h, q_len, d)).astype(np.float16)
    k = rng.standard_normal((b, kvh, kv_len, d)).astype(np.float16)
    v = rng.standard_normal((b, kvh, kv_len, d)).astype(np.float16)
    kw = dict(kv_len=kv_len, pos_offset=pos, num_kv_heads=kvh, causal=True)
    out = gctx.flash_attention(q=q, k=k, v=v, **kw)
    qb, kb, vb = gctx.upload(q), gctx.upload(k), gctx.upload(v)
    ob = gctx.alloc_typed(dtype="f16", n=q.size)
    t_f = time_ferrum(gctx, lambda: gctx.flash_attention(
        q=qb, k=kb, v=vb, out=ob, batch=b, q_len=q_len, num_heads=h, head_dim=d, **kw))
    t_out = t_t = None
    if torch_cuda:
        F = torch_cuda.nn.functional
        tq, tk, tv = (torch_cuda.from_numpy(t).cuda() for t in (q, k, v))
        tk, tv = (t.repeat_interleave(h // kvh, dim=1) for t in (tk, tv))
        qpos = torch_cuda.arange(q_len, device="cuda")[:, None] + pos
        mask = torch_cuda.arange(kv_len, device="cuda")[None, :] <= qpos
        t_out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask)
        t_t = time_torch(torch_cuda, lambda: F.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask))
    check(capsys, "flash_attention", out, refs.attention(q, k, v, kv_len, pos, True), t_out, t_f, t_t)
