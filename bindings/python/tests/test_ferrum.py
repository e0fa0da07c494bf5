"""ferrum Python package on the CPU plugin: loading, ops against float64 references, outputs
allocated and passed in, errors, info(), the generated op methods."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

import ferrum
import refs

F32_TOL = dict(rtol=1e-4, atol=1e-4)


def poisoned(shape, dtype=np.float32):
    return np.full(shape, np.nan, dtype=dtype)


# ---- loading -----------------------------------------------------------------------------

def test_load_cpu(cpu):
    assert cpu.name == "cpu"
    assert cpu.abi_version.startswith("1.")
    assert cpu.device_count >= 1
    assert cpu.device_props(0)["kind"] == "cpu"
    assert os.path.basename(cpu.path) == "libferrum-cpu.so"
    rows = cpu.support_matrix()
    names = [r["op"] for r in rows]
    assert [r["id"] for r in rows] == list(range(1, len(rows) + 1))
    assert "gemm" in names and cpu.supports("gemm")
    assert set(ferrum.OPS) <= set(names)


def test_plugins_found_by_the_loader_default(cpu):
    # the package sets no environment variable: the plugin directory next to libferrum.so is
    # the loader's own default (or FERRUM_PLUGIN_PATH when the caller set one)
    assert os.path.dirname(cpu.path) in ferrum.plugin_search_path()
    assert "FERRUM_PLUGIN_PATH" not in os.environ or os.environ["FERRUM_PLUGIN_PATH"]


def test_load_precedence(monkeypatch):
    monkeypatch.setenv("FERRUM_BACKEND", "cpu")
    assert ferrum.Backend.load().name == "cpu"
    assert ferrum.Backend.load(None).name == "cpu"
    monkeypatch.setenv("FERRUM_BACKEND", "no-such-backend")
    with pytest.raises(ferrum.Error) as e:
        ferrum.Backend.load()
    assert e.value.code == ferrum.ErrorCode.load_failed
    assert "no-such-backend" in e.value.message
    assert ferrum.Backend.load("cpu").name == "cpu"  # the argument beats the variable


def test_bad_spec():
    with pytest.raises(ferrum.Error) as e:
        ferrum.Backend.load("no-such-backend")
    assert e.value.code == "load_failed" and "no-such-backend" in str(e.value)
    with pytest.raises(ferrum.Error) as e:
        ferrum.Backend.load(42)
    assert e.value.code == ferrum.ErrorCode.invalid_argument and "spec" in e.value.message


def test_create_context(cpu):
    assert cpu.create_context(dtype="f32").activation_dtype == "f32"
    assert cpu.create_context(dtype=np.float16).activation_dtype == "f16"
    c = cpu.create_context()
    assert c.activation_dtype in ("f32", "f16", "bf16") and c.device == 0
    assert c.info()["device_ordinal"] == 0
    with pytest.raises(ferrum.Error) as e:
        cpu.create_context(dtype="f64")
    assert e.value.code == "invalid_argument" and "dtype" in e.value.message
    with pytest.raises(ferrum.Error) as e:
        cpu.create_context(device=-1)
    assert e.value.code == "invalid_argument"


# ---- ops against float64 references ------------------------------------------------------

def test_gemm_allocated_and_passed_in(ctx, rng):
    a = rng.standard_normal((5, 24)).astype(np.float32)
    b = rng.standard_normal((7, 24)).astype(np.float32)
    ref = refs.gemm(a, b)
    out = ctx.gemm(a=a, b=b)  # m, n, k from the shapes; out allocated
    assert isinstance(out, np.ndarray) and out.shape == (5, 7) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, **F32_TOL)
    mine = poisoned((5, 7))
    got = ctx.gemm(a=a, b=b, out=mine)
    assert got is mine
    np.testing.assert_allclose(mine, ref, **F32_TOL)
    assert np.asarray(got).__array_interface__["data"][0] == mine.__array_interface__["data"][0]


def test_gemm_f16(cpu, rng):
    c = cpu.create_context(dtype="f16")
    a = rng.standard_normal((4, 32)).astype(np.float16)
    b = rng.standard_normal((6, 32)).astype(np.float16)
    out = c.gemm(a=a, b=b)
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float64), refs.gemm(a, b), rtol=2e-2, atol=5e-2)


def test_gemm_explicit_dims_on_flat_buffers(ctx, rng):
    a = rng.standard_normal(3 * 16).astype(np.float32)
    b = rng.standard_normal(2 * 16).astype(np.float32)
    out = poisoned(6)
    ctx.gemm(a=a, b=b, out=out, m=3, n=2, k=16)
    np.testing.assert_allclose(out.reshape(3, 2), refs.gemm(a.reshape(3, 16), b.reshape(2, 16)),
                               **F32_TOL)


def test_rms_norm(ctx, rng):
    x = rng.standard_normal((6, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    out = ctx.rms_norm(x=x, w=w, eps=1e-5)
    np.testing.assert_allclose(out, refs.rms_norm(x, w, 1e-5), **F32_TOL)


@pytest.mark.parametrize("mode", ["neox", "rms_norm_neox"])
def test_qk_norm_rope(ctx, rng, mode):
    tokens, heads, d, pos = 3, 4, 32, 5
    x = rng.standard_normal((tokens, heads, d)).astype(np.float32)
    w = rng.standard_normal(d).astype(np.float32)
    cos, sin = refs.rope_tables(16, d)
    out = ctx.qk_norm_rope(input=x, norm_w=w if mode == "rms_norm_neox" else None, cos=cos,
                           sin=sin, pos_offset=pos, eps=1e-6, mode=mode)
    assert out.shape == (heads, tokens, d)  # head-major
    ref = refs.qk_norm_rope(x, cos, sin, pos, mode, w, 1e-6)
    np.testing.assert_allclose(out, ref, **F32_TOL)


@pytest.mark.parametrize("causal", [True, False])
def test_flash_attention(ctx, rng, causal):
    b, h, kvh, q_len, kv_len, d, pos = 2, 4, 2, 3, 9, 16, 6
    q = rng.standard_normal((b, h, q_len, d)).astype(np.float32)
    k = rng.standard_normal((b, kvh, kv_len, d)).astype(np.float32)
    v = rng.standard_normal((b, kvh, kv_len, d)).astype(np.float32)
    out = poisoned((b, h, q_len, d))
    ctx.flash_attention(q=q, k=k, v=v, out=out, kv_len=kv_len, pos_offset=pos,
                        num_kv_heads=kvh, causal=causal)  # scale, window, stride: 0 defaults
    np.testing.assert_allclose(out, refs.attention(q, k, v, kv_len, pos, causal), **F32_TOL)


def test_elementwise_len_and_inout(ctx, rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    out = ctx.gelu(x=x)  # len = x.size
    assert out.shape == (20,)
    xd = x.astype(np.float64).ravel()
    ref = 0.5 * xd * (1 + np.tanh(np.sqrt(2 / np.pi) * (xd + 0.044715 * xd ** 3)))
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3)
    residual = rng.standard_normal(20).astype(np.float32)
    before = residual.copy()
    assert ctx.add_inplace(residual=residual, x=x) is None  # inout: updated in place
    np.testing.assert_allclose(residual, before + x.ravel(), **F32_TOL)


def test_buffers_and_ops_mixed(ctx, rng):
    a = rng.standard_normal((3, 8)).astype(np.float32)
    b = rng.standard_normal((2, 8)).astype(np.float32)
    ab = ctx.upload(a)
    assert ab.dtype == ferrum.Dtype.f32 and ab.count == 24
    np.testing.assert_array_equal(ctx.read(ab, shape=(3, 8)), a)
    out_buf = ctx.alloc_typed(dtype="f32", n=6)
    assert ctx.gemm(a=ab, b=b, out=out_buf, m=3, n=2, k=8) is None  # a Buffer out: nothing copied
    np.testing.assert_allclose(ctx.read(out_buf, shape=(3, 2)), refs.gemm(a, b), **F32_TOL)
    ctx.write(out_buf, np.zeros(6, np.float32))
    assert not ctx.read(out_buf).any()


def test_buffer_helpers_reject_bad_input(ctx):
    buf = ctx.upload(np.arange(4, dtype=np.float32))
    for call in (lambda: ctx.read("not a buffer"), lambda: ctx.read(buf, offset=-1),
                 lambda: ctx.read(buf, shape=(5,)), lambda: ctx.write(buf, np.zeros(5, np.float32)),
                 lambda: ctx.write(buf, np.zeros(2, np.float16)), lambda: ctx.upload([object()])):
        with pytest.raises(ferrum.Error) as e:
            call()
        assert e.value.code == "invalid_argument", e.value
    buf.release()
    with pytest.raises(ferrum.Error) as e:
        ctx.read(buf)
    assert "released" in e.value.message


def test_one_context_from_several_threads(ctx, rng):
    import threading

    a = rng.standard_normal((16, 32)).astype(np.float32)
    b = rng.standard_normal((8, 32)).astype(np.float32)
    ref = refs.gemm(a, b)
    errors = []

    def worker():
        for _ in range(20):
            out = ctx.gemm(a=a, b=b)
            if not np.allclose(out, ref, **F32_TOL):
                errors.append("wrong result")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_bf16_through_ml_dtypes(cpu, rng):
    mld = pytest.importorskip("ml_dtypes")
    c = cpu.create_context(dtype="bf16")
    x = rng.standard_normal((2, 32)).astype(mld.bfloat16)
    w = rng.standard_normal(32).astype(mld.bfloat16)
    out = c.rms_norm(x=x, w=w, eps=1e-6)
    assert out.dtype == np.dtype(mld.bfloat16)
    np.testing.assert_allclose(out.astype(np.float64), refs.rms_norm(x.astype(np.float64),
                               w.astype(np.float64), 1e-6), rtol=3e-2, atol=3e-2)


# ---- errors ------------------------------------------------------------------------------

def test_error_bad_dtype(ctx, rng):
    a = rng.standard_normal((2, 4))  # float64
    with pytest.raises(ferrum.Error) as e:
        ctx.gemm(a=a, b=a.astype(np.float32))
    assert e.value.code == "invalid_argument"
    assert "gemm" in e.value.message and "'a'" in e.value.message and "float64" in e.value.message


def test_error_mixed_activation_dtypes(ctx, rng):
    a = rng.standard_normal((2, 4)).astype(np.float32)
    with pytest.raises(ferrum.Error) as e:
        ctx.gemm(a=a, b=a.astype(np.float16))
    assert e.value.code == "invalid_argument" and "gemm" in e.value.message


def test_error_wrong_shapes(ctx, rng):
    a = rng.standard_normal((2, 4)).astype(np.float32)
    b = rng.standard_normal((3, 5)).astype(np.float32)
    with pytest.raises(ferrum.Error) as e:
        ctx.gemm(a=a, b=b)
    assert e.value.code == "invalid_argument" and "'b'" in e.value.message and "k" in e.value.message
    # explicit dimensions larger than the tensors: the facade's checks name the argument
    with pytest.raises(ferrum.Error) as e:
        ctx.gemm(a=a, b=a, m=3)
    assert e.value.code == "invalid_argument" and "gemm" in e.value.message
    out = poisoned((2, 2))
    with pytest.raises(ferrum.Error):
        ctx.gemm(a=a, b=a, out=out, n=5)
    assert np.isnan(out).all()  # nothing written on failure
    out.flags.writeable = False
    with pytest.raises(ferrum.Error) as e:
        ctx.gemm(a=a, b=a, out=out)
    assert "'out'" in e.value.message and "writable" in e.value.message


def test_error_huge_dimensions(ctx, rng):
    x = rng.standard_normal(16).astype(np.float32)
    for kwargs in ({"len": 2**40}, {"len": 2**64 - 1}):
        with pytest.raises(ferrum.Error) as e:  # refused before any output is sized from it
            ctx.gelu(x=x, **kwargs)
        assert e.value.code == "invalid_argument" and "'x'" in e.value.message
    a = x.reshape(2, 8)
    with pytest.raises(ferrum.Error) as e:
        ctx.gemm(a=a, b=a, m=2**62, n=2**62)
    assert e.value.code == "invalid_argument"
    with pytest.raises(ferrum.Error) as e:
        ctx.gemm(a=a, b=a, k=2**64)
    assert e.value.code == "invalid_argument" and "'k'" in e.value.message


def test_error_arguments(ctx, rng):
    x = rng.standard_normal((2, 8)).astype(np.float32)
    with pytest.raises(ferrum.Error) as e:
        ctx.rms_norm(x=x, w=x[0])  # eps missing
    assert e.value.code == "invalid_argument" and "'eps'" in e.value.message
    with pytest.raises(ferrum.Error) as e:
        ctx.rms_norm(x=x, w=x[0], eps=1e-6, epsilon=1)
    assert "epsilon" in e.value.message
    with pytest.raises(ferrum.Error) as e:
        ctx.gemm(a=x, b=x, m=-1)
    assert e.value.code == "invalid_argument" and "'m'" in e.value.message
    with pytest.raises(ferrum.Error) as e:
        ctx.gemm(a="not a tensor", b=x)
    assert e.value.code == "invalid_argument"
    with pytest.raises(ferrum.Error) as e:
        ctx.gemm(a=x, b=x, m="three")
    assert e.value.code == "invalid_argument" and "'m'" in e.value.message
    with pytest.raises(ferrum.Error) as e:
        ctx.record_start(timer="not a timer")
    assert e.value.code == "invalid_argument" and "record_start" in e.value.message
    with pytest.raises(ferrum.Error) as e:
        ctx.qk_norm_rope(input=x.reshape(2, 1, 8), cos=x, sin=x, pos_offset=0, eps=0.0,
                         mode="sideways")
    assert "mode" in e.value.message


def test_error_unsupported_op(cpu, ctx):
    missing = [r["op"] for r in cpu.support_matrix() if not r["usable"] and r["op"] in ferrum.OPS
               and not ferrum.OPS[r["op"]]["params"]]
    if not missing:
        pytest.skip("the CPU plugin has every parameterless op")
    with pytest.raises(ferrum.Error) as e:
        getattr(ctx, missing[0])()
    assert e.value.code == ferrum.ErrorCode.unsupported and missing[0] in e.value.message
    with pytest.raises(ferrum.Error) as e:
        ctx.load_gptq()  # not bound (raw host pointers)
    assert e.value.code == "unsupported" and "load_gptq" in e.value.message


# ---- info, generated methods ---------------------------------------------------------------

def test_info():
    info = ferrum.info()
    assert set(info) == {"plugins", "facade_composes"}
    cpu = [p for p in info["plugins"] if p["name"] == "cpu"]
    assert cpu and cpu[0]["stage"] == "initialized" and cpu[0]["rejected_at"] is None
    assert cpu[0]["ops"]["gemm"] is True
    tool = os.environ.get("FERRUM_INFO") or shutil.which("ferrum-info")
    if tool:  # the same report as the tool
        out = json.loads(subprocess.run([tool, "--json"], check=True, capture_output=True,
                                        text=True).stdout)
        assert [p["path"] for p in out["plugins"]] == [p["path"] for p in info["plugins"]]
        assert out["facade_composes"] == info["facade_composes"]
        assert [p["ops"] for p in out["plugins"]] == [p["ops"] for p in info["plugins"]]


def test_every_bound_op_is_a_method():
    for op, meta in ferrum.OPS.items():
        method = getattr(ferrum.Context, op)
        assert method.__name__ == op and op in method.__doc__
        assert hasattr(ferrum._ferrum.Context, "_" + op)
    assert len(ferrum.OPS) > 80
    assert not set(ferrum.OPS) & set(ferrum.NOT_BOUND)


# ---- interchange: torch on the CPU, zero-copy --------------------------------------------

def test_torch_cpu_tensors(ctx):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(3)
    a = torch.randn(4, 16, generator=g)
    b = torch.randn(5, 16, generator=g)
    out = torch.full((4, 5), float("nan"))
    ctx.gemm(a=a, b=b, out=out)  # written into the torch tensor's memory
    np.testing.assert_allclose(out.numpy(), refs.gemm(a.numpy(), b.numpy()), **F32_TOL)
    got = ctx.gemm(a=a, b=b)
    assert torch.from_dlpack(got).shape == (4, 5)


def test_zero_copy_upload(ctx):
    arr = np.arange(8, dtype=np.float32)
    buf = ctx.upload(arr)
    arr[0] = 42.0
    # The CPU plugin has the 1.1 op wrap_external: the buffer is the array's memory.
    assert ctx.zero_copy
    assert ctx.read(buf)[0] == 42.0


def test_readme_example(capsys):
    """The README's Python example runs as printed."""
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parents[3] / "README.md"
    if not readme.exists():
        pytest.skip("README.md not next to the tests")
    text = readme.read_text()
    block = re.search(r"```python\n(.*?)```", text[text.index("## Python"):], re.S).group(1)
    exec(compile(block, "README.md (Python)", "exec"), {})
    assert "invalid_argument" in capsys.readouterr().out


class _DLPackOnly:
    """A tensor known only through the DLPack protocol (like a framework's CPU tensor)."""

    def __init__(self, array, device=None):
        self._a, self._device = array, device

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device or self._a.__dlpack_device__()


def test_dlpack_tensors(ctx, rng):
    a = rng.standard_normal((3, 8)).astype(np.float32)
    b = rng.standard_normal((2, 8)).astype(np.float32)
    out = np.full((3, 2), np.nan, np.float32)
    ctx.gemm(a=_DLPackOnly(a), b=_DLPackOnly(b), out=_DLPackOnly(out))
    np.testing.assert_allclose(out, refs.gemm(a, b), **F32_TOL)  # written through the view
    with pytest.raises(ferrum.Error) as e:
        ctx.gemm(a=_DLPackOnly(a, device=(2, 0)), b=b)  # (kDLCUDA, 0)
    assert e.value.code == "invalid_argument" and "'a'" in e.value.message


def test_zero_copy_view(ctx):
    buf = ctx.upload(np.arange(6, dtype=np.float32))
    view = ctx.view(buf, shape=(2, 3))  # the CPU plugin has the 1.1 op buffer_device_address
    arr = np.asarray(view)
    assert arr.shape == (2, 3) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr.ravel(), np.arange(6, dtype=np.float32))
    ctx.write(buf, np.full(6, 7.0, np.float32))
    ctx.sync()
    assert (arr == 7.0).all()  # the same memory, not a copy
    del buf  # the view keeps the buffer alive
    assert (np.asarray(view) == 7.0).all()
    with pytest.raises(ferrum.Error):
        ctx.view(ctx.upload(np.zeros(2, np.float32)), shape=(3,))


def test_handles_and_returns(ctx, rng):
    timer = ctx.make_timer()
    assert isinstance(timer, ferrum.Timer)
    ctx.record_start(timer=timer)
    ctx.gemm(a=rng.standard_normal((8, 8)).astype(np.float32),
             b=rng.standard_normal((8, 8)).astype(np.float32))
    ctx.record_end(timer=timer)
    ms = ctx.elapsed_ms(timer=timer)
    assert isinstance(ms, float) and ms >= 0.0
    assert ctx.activation_elem_size_bytes() == 4
    buf = ctx.from_slice(data=np.arange(5, dtype=np.float32))  # a host span: len from its size
    np.testing.assert_array_equal(ctx.to_vec(buf=buf, len=5), np.arange(5, dtype=np.float32))
