"""The CUDA plugin through the Python package (marker `gpu`; skipped, with the reason, without a
usable CUDA backend). Each op runs on the same f16 tensors as the float64 reference and, when torch
with CUDA is installed, as torch; per-op results and timings are printed (no timing asserts).

torch interop (skipped, with the reason, without torch + CUDA): CUDA tensors used in place
(wrap_external over DLPack: the op writes into torch's own tensor), ferrum buffers exported to
torch without a copy (same device address), a context on torch's stream interleaving with torch
kernels with one sync at the end, the errors for strided / host / other-device / grad tensors, and
per-op results and timings on torch tensors (timed with torch's CUDA events on the shared stream).

Timings: ferrum on Buffers already on the device (ctx.upload), so no host copies are timed,
between two ferrum timer marks on the context's stream; torch on CUDA tensors between two CUDA
events; both the mean of ITERS back-to-back calls (a host-bound small op shows the Python call
overhead, which both sides pay).
FERRUM_TEST_GPU_SPEC (default "cuda") picks the backend, e.g. "cuda:1"; "cpu" dry-runs the file
on the CPU plugin.
"""
import gc
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


# ---- torch interop: CUDA tensors in place, buffers out, a shared stream ---------------------

@pytest.fixture(scope="module")
def tcuda(gpu):
    try:
        import torch
    except ImportError as e:
        pytest.skip(f"torch is not installed ({e})")
    if not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} sees no CUDA device")
    if gpu.selected_device >= torch.cuda.device_count():
        pytest.skip(f"ferrum's device {gpu.selected_device} is not one of torch's "
                    f"{torch.cuda.device_count()}")
    return torch


def tdev(gpu):
    return f"cuda:{gpu.selected_device}"


def trandn(torch, gpu, *shape, seed, scale=1.0, dtype=None):
    g = torch.Generator(device=tdev(gpu)).manual_seed(seed)
    return torch.randn(*shape, generator=g, device=tdev(gpu),
                       dtype=dtype or torch.float16) * scale


def host(t):
    return t.detach().float().cpu().numpy()


def test_torch_tensors_in_place(gpu, gctx, tcuda):
    torch = tcuda
    x = trandn(torch, gpu, 32, 1024, seed=11)
    w = trandn(torch, gpu, 1024, seed=12)
    out = torch.full_like(x, float("nan"))  # poisoned
    ptr = out.data_ptr()
    got = gctx.rms_norm(x=x, w=w, eps=1e-6, out=out)
    assert got is out and out.data_ptr() == ptr  # ferrum wrote into torch's own memory
    np.testing.assert_allclose(host(out), refs.rms_norm(host(x), host(w), 1e-6), **F16_TOL)
    # the buffer ferrum makes of a tensor is the tensor's memory
    buf = gctx.wrap(x)
    assert buf.address == x.data_ptr() and buf.count == x.numel() and buf.dtype.name == "f16"
    # an inout tensor, updated in place
    r = trandn(torch, gpu, 4096, seed=13)
    d = trandn(torch, gpu, 4096, seed=14)
    r0 = r.clone()
    gctx.add_inplace(residual=r, x=d)
    np.testing.assert_allclose(host(r), host(r0) + host(d), **F16_TOL)
    # one tensor as x and out: one buffer (the same handle), normalised in place
    x2 = x.clone()
    assert gctx.rms_norm(x=x2, w=w, eps=1e-6, out=x2) is x2
    np.testing.assert_allclose(host(x2), refs.rms_norm(host(x), host(w), 1e-6), **F16_TOL)
    # bf16 and i32 tensors keep their dtype
    xb = x.to(torch.bfloat16)
    assert gctx.wrap(xb).dtype.name == "bf16"
    assert gctx.wrap(torch.arange(10, device=tdev(gpu), dtype=torch.int32)).dtype.name == "i32"


def test_torch_outputs_without_copy(gpu, gctx, tcuda):
    torch = tcuda
    x = trandn(torch, gpu, 16, 512, seed=21)
    w = trandn(torch, gpu, 512, seed=22)
    y = gctx.rms_norm(x=x, w=w, eps=1e-6)  # out allocated by ferrum, returned as a torch tensor
    assert isinstance(y, torch.Tensor) and y.device == x.device and y.dtype == torch.float16
    assert tuple(y.shape) == (16, 512)
    expect = refs.rms_norm(host(x), host(w), 1e-6)
    gc.collect()  # the tensor keeps the ferrum buffer alive
    np.testing.assert_allclose(host(y), expect, **F16_TOL)
    # torch.from_dlpack(Buffer): the buffer's memory, both ways
    buf = gctx.alloc_typed(dtype="f16", n=64)
    assert buf.__dlpack_device__() == (2, gpu.selected_device)
    t = torch.from_dlpack(buf)
    assert t.data_ptr() == buf.address and t.device == x.device and t.numel() == 64
    gctx.write(buf, np.arange(64, dtype=np.float16))
    gctx.sync()
    assert torch.equal(t.cpu(), torch.arange(64).to(torch.float16))
    t.fill_(3)
    torch.cuda.synchronize()
    assert (gctx.read(buf) == 3).all()
    v = torch.from_dlpack(gctx.view(buf, shape=(8, 8)))
    assert v.data_ptr() == buf.address and tuple(v.shape) == (8, 8)


def test_context_on_torch_stream_orders_without_syncs(gpu, tcuda):
    torch = tcuda
    n, iters = 2048, 4
    with torch.cuda.device(gpu.selected_device):
        s = torch.cuda.Stream()
        a = trandn(torch, gpu, n, n, seed=31, scale=0.05)
        b = trandn(torch, gpu, n, n, seed=32, scale=0.05)
        w = trandn(torch, gpu, n, seed=33)
        torch.cuda.synchronize()
        with torch.cuda.stream(s):
            ctx = gpu.create_context(dtype="f16", stream=torch.cuda.current_stream())
            assert ctx.stream == s.cuda_stream
            # all enqueued on s: torch writes x (a long matmul), ferrum reads x and writes y,
            # torch reads y; x and y are reused, so an op out of stream order reads the wrong
            # (or NaN-poisoned) values
            x = torch.full((n, n), float("nan"), device=a.device, dtype=torch.float16)
            y = torch.full_like(x, float("nan"))
            outs = []
            for i in range(iters):
                torch.matmul(a, b, out=x)
                x.add_(i)
                ctx.rms_norm(x=x, w=w, eps=1e-6, out=y)
                outs.append(y.float() * 2)
                y.fill_(float("nan"))
            z = ctx.rms_norm(x=x, w=w, eps=1e-6)  # a ferrum-allocated output, read by torch
            last = z.float() * 2
        s.synchronize()  # the only sync
        for i, got in enumerate(outs):
            xr = (a @ b + i).float()
            ref = xr * torch.rsqrt(xr.pow(2).mean(-1, keepdim=True) + 1e-6) * w.float() * 2
            np.testing.assert_allclose(host(got), host(ref), rtol=3e-2, atol=3e-2)
        np.testing.assert_allclose(host(last), host(outs[-1]), rtol=1e-3, atol=1e-3)
        del ctx
    # torch's default stream (handle 0) is taken as the legacy stream, not as "own stream"
    with torch.cuda.device(gpu.selected_device):
        ctx = gpu.create_context(dtype="f16", stream=torch.cuda.default_stream())
        assert ctx.stream == 1
        x = trandn(torch, gpu, 64, 256, seed=34)
        y = ctx.rms_norm(x=x * 2, w=w[:256], eps=1e-6)
        got = host(y * 1)  # torch's copy to the host syncs its stream, after ferrum's op
        np.testing.assert_allclose(got, refs.rms_norm(host(x * 2), host(w[:256]), 1e-6), **F16_TOL)


def test_torch_tensor_errors(gpu, gctx, cpu, tcuda):
    torch = tcuda
    x = trandn(torch, gpu, 64, 32, seed=41)
    w = trandn(torch, gpu, 32, seed=42)

    def expect(fn, *words):
        with pytest.raises(ferrum.Error) as e:
            fn()
        assert e.value.code == "invalid_argument", e.value
        for word in words:
            assert word in e.value.message, e.value.message

    expect(lambda: gctx.rms_norm(x=x.t(), w=trandn(torch, gpu, 64, seed=1), eps=1e-6),
           "argument 'x'", "C-contiguous")
    expect(lambda: gctx.rms_norm(x=x[:, :16], w=w[:16], eps=1e-6), "argument 'x'", "C-contiguous")
    expect(lambda: gctx.rms_norm(x=x, w=w.cpu(), eps=1e-6), "argument 'w'", "host")
    expect(lambda: gctx.rms_norm(x=x, w=w.double(), eps=1e-6), "argument 'w'", "64 bits")
    expect(lambda: gctx.rms_norm(x=x.requires_grad_(False).float().requires_grad_(True), w=w.float(),
                                 eps=1e-6), "argument 'x'", "DLPack")
    expect(lambda: gctx.wrap(x.cpu()), "argument 'tensor'")
    cctx = cpu.create_context(dtype="f32")
    expect(lambda: cctx.rms_norm(x=x.float(), w=w.float().cpu(), eps=1e-6), "argument 'x'",
           f"(2, {gpu.selected_device})")
    expect(lambda: cctx.wrap(x), "argument 'tensor'")


def test_torch_tensor_on_another_device(gpu, gctx, tcuda):
    torch = tcuda
    if torch.cuda.device_count() < 2:
        pytest.skip("one CUDA device: no tensor of another device to pass")
    other = 1 if gpu.selected_device == 0 else 0
    x = torch.ones(8, 8, device=f"cuda:{other}", dtype=torch.float16)
    w = torch.ones(8, device=tdev(gpu), dtype=torch.float16)
    with pytest.raises(ferrum.Error) as e:
        gctx.rms_norm(x=x, w=w, eps=1e-6)
    assert e.value.code == "invalid_argument" and "argument 'x'" in e.value.message
    assert f"(2, {other})" in e.value.message


def test_ops_on_torch_tensors_vs_torch(gpu, tcuda, capsys):
    """ferrum ops on torch tensors in place, on torch's stream, against torch and float64:
    both timed with torch's CUDA events on that stream (ferrum's include the call's DLPack
    wrapping, a host cost a small op shows)."""
    torch = tcuda
    F = torch.nn.functional
    with torch.cuda.device(gpu.selected_device):
        ctx = gpu.create_context(dtype="f16", stream=torch.cuda.current_stream())
        tokens, dim, im = 64, 4096, 4096
        x = trandn(torch, gpu, tokens, dim, seed=51)
        w = trandn(torch, gpu, dim, seed=52)
        wt = trandn(torch, gpu, im, dim, seed=53, scale=0.02)
        gu = trandn(torch, gpu, tokens, 2 * im, seed=54)
        cases = {
            "rms_norm": (lambda out: ctx.rms_norm(x=x, w=w, eps=1e-6, out=out),
                         lambda: (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True)
                                                          + 1e-6) * w.float()).half(),
                         lambda: refs.rms_norm(host(x), host(w), 1e-6), (tokens, dim)),
            "gemm": (lambda out: ctx.gemm(a=x, b=wt, out=out),
                     lambda: x @ wt.T,
                     lambda: refs.gemm(host(x), host(wt)), (tokens, im)),
            "silu_mul": (lambda out: ctx.fused_silu_mul_split(gate_up=gu, out=out),
                         lambda: F.silu(gu[:, :im]) * gu[:, im:],
                         lambda: (lambda g, u: g / (1 + np.exp(-g)) * u)(
                             host(gu)[:, :im].astype(np.float64), host(gu)[:, im:].astype(np.float64)),
                         (tokens, im)),
        }
        for name, (fer, tor, ref, shape) in cases.items():
            out = torch.full(shape, float("nan"), device=x.device, dtype=torch.float16)
            fer(out)
            t_out = tor()
            t_f = time_torch(torch, lambda: fer(out))
            t_t = time_torch(torch, tor)
            check(capsys, f"{name}(torch)", host(out), ref(), t_out, t_f, t_t)
