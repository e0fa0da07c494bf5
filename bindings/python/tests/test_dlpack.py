"""The device-tensor machinery of the package, driven on the CPU plugin (no GPU needed): the
DLPack import behind CUDA tensors (Context._wrap_dlpack, here with host memory), its checks and
the lifetime of the imported tensor, Buffer.__dlpack__, the routing of device tensors in op
calls and create_context(stream=). test_gpu.py runs the same paths with torch CUDA tensors."""
import gc
import sys

import numpy as np
import pytest

import ferrum
import refs
from ferrum import _ops

F32_TOL = dict(rtol=1e-4, atol=1e-4)


class FakeCuda:
    """Reports a CUDA device through DLPack, exports a host array's capsule (what a confused
    or hostile producer might do)."""

    def __init__(self, arr, device=(2, 0)):
        self.arr, self.device = arr, device
        self.shape = arr.shape

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, **kw):
        return self.arr.__dlpack__()


def wrap_host(ctx, arr, writable=True, where="t: argument 'x'"):
    return ctx._raw._wrap_dlpack(arr.__dlpack__(), arr, where, writable, True)


def test_wrap_dlpack_in_place_and_lifetime(ctx, rng):
    a = rng.standard_normal((6, 16)).astype(np.float32)
    b = rng.standard_normal((5, 16)).astype(np.float32)
    out = np.full((6, 5), np.nan, np.float32)
    before = sys.getrefcount(out)
    ob, shape = wrap_host(ctx, out)
    assert shape == [6, 5] and ob.count == 30 and ob.dtype.name == "f32"
    assert ob.address == out.ctypes.data  # the array's memory, not a copy
    assert sys.getrefcount(out) > before  # held while the buffer lives
    ctx.gemm(a=ctx.upload(a), b=ctx.upload(b), out=ob, m=6, n=5, k=16)
    ctx.sync()
    np.testing.assert_allclose(out, refs.gemm(a, b), **F32_TOL)  # written in place
    del ob
    gc.collect()
    assert sys.getrefcount(out) == before  # released: the reference is given back


def test_wrap_dlpack_checks(ctx):
    a = np.zeros((4, 6), np.float32)
    cases = [
        (a[:, ::2], True, "C-contiguous"),
        (a.T, True, "C-contiguous"),
        (a.astype(np.float64), True, "f32, f16, bf16"),
        (np.zeros(4, np.complex64), True, "f32, f16, bf16"),
        (np.zeros(4, bool), True, "f32, f16, bf16"),
    ]
    for arr, writable, expect in cases:
        with pytest.raises(ferrum.Error) as e:
            wrap_host(ctx, arr, writable)
        assert e.value.code == "invalid_argument"
        assert "argument 'x'" in e.value.message and expect in e.value.message
    # a read-only tensor is refused for an output, taken for an input
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ferrum.Error) as e:
        ctx._raw._wrap_dlpack(ro.__dlpack__(max_version=(1, 1)), ro, "t: argument 'x'", True, True)
    assert "writable" in e.value.message
    buf, _ = ctx._raw._wrap_dlpack(ro.__dlpack__(max_version=(1, 1)), ro, "t: argument 'x'", False, True)
    assert buf.count == 4
    # strides of extent-1 dimensions do not matter; a single element is contiguous
    col = np.zeros((5, 1), np.float32)
    assert wrap_host(ctx, col)[1] == [5, 1]
    # a capsule is used once; anything else is not a capsule
    cap = a.__dlpack__()
    ctx._raw._wrap_dlpack(cap, a, "t: argument 'x'", True, True)
    for bad in (cap, object(), 42):
        with pytest.raises(ferrum.Error) as e:
            ctx._raw._wrap_dlpack(bad, a, "t: argument 'x'", True, True)
        assert "DLPack capsule" in e.value.message and "argument 'x'" in e.value.message
    # host memory where device memory is expected
    with pytest.raises(ferrum.Error) as e:
        ctx._raw._wrap_dlpack(a.__dlpack__(), a, "t: argument 'x'", True, False)
    assert "expected a CUDA tensor on device 0" in e.value.message and "(1, 0)" in e.value.message


def test_failed_wrap_gives_the_tensor_back(ctx):
    a = np.zeros(8, np.float32)
    before = sys.getrefcount(a)
    for _ in range(3):
        with pytest.raises(ferrum.Error):
            wrap_host(ctx, a[::2])
    gc.collect()
    assert sys.getrefcount(a) == before


def test_plugin_refusal_gives_the_tensor_back(ctx):
    # misaligned f32 memory: the capsule is taken, the plugin refuses it (wrap_external), the
    # tensor is given back and the error names the argument
    raw = bytearray(64)
    a = np.ndarray((8,), np.float32, buffer=raw, offset=1)
    before = sys.getrefcount(a)
    with pytest.raises(ferrum.Error) as e:
        wrap_host(ctx, a)
    assert e.value.code == "invalid_argument"
    assert e.value.message.startswith("t: argument 'x': ") and "aligned" in e.value.message
    del e  # its traceback holds wrap_host's frame, which holds the array
    gc.collect()
    assert sys.getrefcount(a) == before


def test_buffer_dlpack_export(ctx, rng):
    x = rng.standard_normal(12).astype(np.float32)
    buf = ctx.upload(x)
    assert buf.__dlpack_device__() == (1, 0)
    v = np.from_dlpack(buf)
    assert v.ctypes.data == buf.address  # the buffer's memory
    np.testing.assert_array_equal(v, x)
    ctx.write(buf, np.full(12, 7.0, np.float32))
    ctx.sync()
    assert (v == 7.0).all()  # same memory: the write shows through the export
    buf2 = ctx.alloc_typed(dtype="f32", n=3)
    del buf2  # exports of a buffer keep it alive
    v2 = np.from_dlpack(ctx.alloc_typed(dtype="f32", n=3))
    gc.collect()
    assert v2.shape == (3,)


def test_device_tensor_on_cpu_context(ctx):
    fake = FakeCuda(np.zeros((4, 8), np.float32))
    w = np.ones(8, np.float32)
    with pytest.raises(ferrum.Error) as e:
        ctx.rms_norm(x=fake, w=w, eps=1e-6)
    assert e.value.code == "invalid_argument"
    assert "argument 'x'" in e.value.message and "(2, 0)" in e.value.message
    with pytest.raises(ferrum.Error) as e:
        ctx.wrap(fake)
    assert e.value.code == "invalid_argument" and "argument 'tensor'" in e.value.message
    with pytest.raises(ferrum.Error) as e:
        ctx.wrap(np.zeros(3, np.float32))
    assert "expected a CUDA tensor" in e.value.message


def test_device_call_routing(cpu):
    """The checks of a call with device tensors, before any memory is touched: run on a CPU
    context that pretends to be a GPU one."""
    ctx = cpu.create_context(dtype="f32")
    ctx._kind = "gpu"
    x = np.zeros((4, 8), np.float32)
    # a host tensor among device tensors: named, no hidden copy
    with pytest.raises(ferrum.Error) as e:
        ctx.rms_norm(x=x, w=FakeCuda(np.ones(8, np.float32)), eps=1e-6)
    assert "argument 'x'" in e.value.message and "host ndarray" in e.value.message
    # a tensor of another device (id, then type)
    for dev in ((2, 1), (3, 0), (13, 5)):
        with pytest.raises(ferrum.Error) as e:
            ctx.rms_norm(x=FakeCuda(x, dev), w=FakeCuda(np.ones(8, np.float32)), eps=1e-6)
        assert "argument 'x'" in e.value.message
        assert "expected a CUDA tensor on device 0" in e.value.message
        assert f"got a tensor on DLPack device {dev}" in e.value.message
    # a producer lying about its device is caught on the capsule itself
    with pytest.raises(ferrum.Error) as e:
        ctx.rms_norm(x=FakeCuda(x), w=FakeCuda(np.ones(8, np.float32)), eps=1e-6)
    assert "argument 'x'" in e.value.message and "DLPack device (1, 0)" in e.value.message


def test_export_errors_name_the_argument():
    class Refuses:
        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, **kw):
            raise RuntimeError("Can't export tensors that require gradient")

    with pytest.raises(ferrum.Error) as e:
        _ops.export_dlpack(Refuses(), "op: argument 'x'", None)
    assert "argument 'x'" in e.value.message and "require gradient" in e.value.message


def test_create_context_stream(cpu):
    assert cpu.create_context(stream=None).stream is None
    assert cpu.create_context(stream=0).stream is None
    with pytest.raises(ferrum.Error) as e:  # the CPU plugin has no streams
        cpu.create_context(stream=0x7F0000001000)
    assert e.value.code == "unsupported" and "external_stream" in e.value.message
    for bad in ("s", 1.5, True, -1, 2**64):
        with pytest.raises(ferrum.Error) as e:
            cpu.create_context(stream=bad)
        assert e.value.code == "invalid_argument" and "'stream'" in e.value.message

    class Stream:
        def __init__(self, h):
            self.cuda_stream = h

    # torch's default stream has the handle 0: it is the legacy stream, never "own stream"
    assert ferrum._stream_handle(Stream(0)) == 1
    assert ferrum._stream_handle(Stream(0x7F0000001000)) == 0x7F0000001000
    assert ferrum._stream_handle(None) == 0 and ferrum._stream_handle(0) == 0
