"""The op methods of ferrum.Context, driven by the generated metadata (_ops_gen.py).

One generic call path serves every bound op: keyword arguments are checked against the op's
fields, tensors (numpy arrays, anything with __dlpack__ on the CPU, or ferrum.Buffer) become
buffers, missing dimensions are inferred from the tensors' shapes, missing outputs are
allocated, the generated binding runs the facade method, and results are written back into the
arrays.

Memory: with Context.zero_copy (the ABI 1.1 op wrap_external in the module and the plugin, a
CPU device) a C-contiguous, aligned, writable host array is wrapped as the buffer, so the op
works in the array's memory and the call syncs before it returns. Otherwise a host array is
COPIED into a buffer before the op and out/inout arrays are copied back after it.

Device tensors (a GPU context): an object with __dlpack__ whose __dlpack_device__ is CUDA
(kDLCUDA 2 or kDLCUDAManaged 13) on the context's device is wrapped in place (wrap_external
over its DLPack capsule; the buffer keeps the tensor alive): ops read and write its memory, no
copy. It must be C-contiguous (else Error naming the argument: pass tensor.contiguous()).
Outputs not given are then allocated by ferrum on the device and returned as torch tensors (when
the tensors given are torch's) or DLPack arrays over the ferrum buffer, again without a copy.
In a call with device tensors a host tensor is an error naming it (no hidden host copies in a
device pipeline). Ordering: see Context (a context on the caller's stream runs in its order
without syncs; a context with its own stream syncs around calls that use device tensors).
"""
import math
import re

import numpy as np

from . import _ferrum
from ._errors import Error, ErrorCode
from ._ops_gen import NOT_BOUND, OPS

try:  # optional: numpy dtypes for bf16 and f8_e4m3
    import ml_dtypes as _mld
except ImportError:  # pragma: no cover - depends on the environment
    _mld = None

_NP_TO_FERRUM = {
    np.dtype(np.float32): "f32",
    np.dtype(np.float16): "f16",
    np.dtype(np.int32): "i32",
    np.dtype(np.uint32): "u32",
    np.dtype(np.int8): "i8",
    np.dtype(np.uint8): "u8",
}
if _mld is not None:
    _NP_TO_FERRUM[np.dtype(_mld.bfloat16)] = "bf16"
    _NP_TO_FERRUM[np.dtype(_mld.float8_e4m3fn)] = "f8_e4m3"
_FERRUM_TO_NP = {v: k for k, v in _NP_TO_FERRUM.items()}
_DCLASS_DTYPE = {"F32": "f32", "I32": "i32", "U32": "u32", "I8": "i8", "U8": "u8",
                 "F8_E4M3": "f8_e4m3"}
_FLOAT_CLASSES = ("act", "X", "tab")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DLPACK_CPU = 1
_DLPACK_CUDA_TYPES = (2, 13)  # kDLCUDA, kDLCUDAManaged


def _invalid(message):
    return Error(ErrorCode.invalid_argument, message)


def dtype_name(value, where):
    """A ferrum dtype name from "bf16", a numpy dtype / type, or a ferrum Dtype."""
    if isinstance(value, _ferrum.Dtype):
        return value.name
    if isinstance(value, str):
        if value in _ferrum.Dtype.__members__ and value != "invalid":
            return value
        raise _invalid(f"{where}: expected a dtype name ({', '.join(_FERRUM_TO_NP) or 'f32'}, "
                       f"bf16, ...), got {value!r}")
    try:
        dt = np.dtype(value)
    except TypeError:
        raise _invalid(f"{where}: expected a dtype, got {value!r}") from None
    if dt not in _NP_TO_FERRUM:
        raise _invalid(f"{where}: numpy dtype {dt} has no ferrum dtype (f32, f16, i32, u32, i8, "
                       f"u8; bf16 and f8_e4m3 through ml_dtypes)")
    return _NP_TO_FERRUM[dt]


def numpy_dtype(name, where):
    if name not in _FERRUM_TO_NP:
        raise _invalid(f"{where}: ferrum dtype {name} has no numpy dtype here"
                       + (" (install ml_dtypes for bf16 / f8_e4m3)" if _mld is None else ""))
    return _FERRUM_TO_NP[name]


def dlpack_device(obj):
    """(device_type, device_id) of an object exporting DLPack other than a numpy array or a
    ferrum.Buffer, else None."""
    if isinstance(obj, (np.ndarray, _ferrum.Buffer)) or not hasattr(obj, "__dlpack_device__") \
            or not hasattr(obj, "__dlpack__"):
        return None
    try:
        dev_type, dev_id = obj.__dlpack_device__()
        return int(dev_type), int(dev_id)
    except Exception:  # not a usable DLPack producer: the host path reports it
        return None


def is_device_tensor(obj):
    """Whether obj is a DLPack tensor outside host memory (a CUDA tensor, ...)."""
    dev = dlpack_device(obj)
    return dev is not None and dev[0] != _DLPACK_CPU


def export_dlpack(obj, where, stream):
    """obj.__dlpack__(...) as a capsule: a versioned one where the producer has them; `stream`
    (None: no stream handshake) is the consumer's stream, on which the producer orders its
    pending work first (DLPack's stream semantics)."""
    kw = {} if stream is None else {"stream": stream}
    try:
        try:
            return obj.__dlpack__(max_version=(1, 1), **kw)
        except TypeError:  # a producer older than DLPack 1.0's max_version
            return obj.__dlpack__(**kw)
    except Exception as e:  # requires_grad, conjugated, ... (the producer's own words)
        raise _invalid(f"{where}: the tensor cannot be exported through DLPack "
                       f"({type(e).__name__}: {e})") from None


def is_torch(obj):
    return type(obj).__module__.split(".")[0] == "torch"


def as_host_array(obj, where):
    """A numpy view of a host tensor (no copy): numpy arrays, objects with __dlpack__ on the
    CPU (torch, jax, cupy-on-host, ...), or array-likes (np.asarray)."""
    if isinstance(obj, np.ndarray):
        return obj
    if hasattr(obj, "__dlpack__"):
        if hasattr(obj, "__dlpack_device__"):
            dev_type, dev_id = obj.__dlpack_device__()
            if int(dev_type) != _DLPACK_CPU:
                raise _invalid(
                    f"{where}: expected a host (CPU) tensor here, got a tensor on DLPack device "
                    f"({int(dev_type)}, {dev_id}): device tensors are taken in place only by a "
                    f"context on that device (copy it to the host first)")
        try:
            return np.from_dlpack(obj)
        except (TypeError, BufferError, RuntimeError) as e:
            bf16 = _torch_bf16_view(obj)
            if bf16 is not None:
                return bf16
            raise _invalid(f"{where}: numpy cannot view this tensor ({e})") from None
    arr = np.asarray(obj)
    if arr.dtype == object:
        raise _invalid(f"{where}: expected a tensor (numpy array, __dlpack__ object or "
                       f"ferrum.Buffer), got {type(obj).__name__}")
    return arr


def _torch_bf16_view(obj):
    """torch.bfloat16 CPU tensors as an ml_dtypes.bfloat16 numpy view (numpy's DLPack import
    has no bfloat16)."""
    if _mld is None or type(obj).__module__.split(".")[0] != "torch":
        return None
    import torch

    if obj.dtype != torch.bfloat16:
        return None
    return obj.detach().view(torch.int16).numpy().view(_mld.bfloat16)


def _eval_dim(expr, known):
    """The value of a shape expression of the registry ("q_heads + 2·kv_heads", "ceil(a / b)")
    from known dimensions, or None when a name in it is unknown."""
    names = [n for n in _IDENT.findall(expr) if n != "ceil"]
    if any(n not in known for n in names):
        return None
    py = expr.replace("·", "*")
    value = eval(py, {"__builtins__": {}, "ceil": math.ceil}, dict(known))  # registry text only
    return int(value)


class _Arg:
    """One buffer argument of a call: the caller's array (None for a ferrum.Buffer) and the
    buffer the op gets."""

    def __init__(self, name, field, array, buffer, allocated=False, tensor=None, shape=None):
        self.name, self.field, self.array, self.buffer = name, field, array, buffer
        self.allocated = allocated
        # a device tensor wrapped in place (its object), or the shape of a device output
        # allocated by ferrum (tensor None)
        self.tensor, self.shape = tensor, shape


def _tensor_dtype(op, name, field, arr):
    where = f"{op}: argument '{name}'"
    dt = np.dtype(arr.dtype)
    if dt not in _NP_TO_FERRUM:
        want = _DCLASS_DTYPE.get(field.get("dclass"), None)
        expect = want or {"act": "f32, f16 or bf16", "X": "f32, f16 or bf16",
                          "tab": "f32, f16 or bf16", "idx": "u32 or i32"}.get(field.get("dclass"), "a ferrum dtype")
        raise _invalid(f"{where}: expected {expect} elements, got numpy dtype {dt}")
    return _NP_TO_FERRUM[dt]


def call(ctx, op, kwargs):
    with ctx._lock:  # a context is used by one thread at a time (the facade's contract)
        return _call(ctx, op, kwargs)


def _call(ctx, op, kwargs):
    meta = OPS[op]
    params = meta["params"]
    ptypes = meta["ptypes"]
    fields = {f["name"]: f for f in meta["fields"]}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise _invalid(f"{op}: unknown argument(s) {', '.join(unknown)}; expected keywords: "
                       f"{', '.join(params)}")
    raw = ctx._raw
    dims = {}
    for p in params:
        t = ptypes[p]
        if t in ("uint64_t", "uint32_t") and kwargs.get(p) is not None:
            dims[p] = _integer(op, p, t, kwargs[p])
    # 1. tensors -> host arrays, or device tensors -> buffers over their memory; dimensions
    #    from their shapes
    args, inferred_from = {}, {}
    arrays = {}
    device_call = any(fields.get(p, {}).get("kind") == "buffer" and is_device_tensor(kwargs.get(p))
                      for p in params)
    # one buffer per device tensor, however many arguments name it (x and out of an in-place
    # call are then the same handle, as the ops' aliasing rules expect); writable when any
    # of them is written
    wrapped, written = {}, set()
    if device_call:
        for p in params:
            f = fields.get(p, {})
            if f.get("kind") == "buffer" and f.get("dir") in ("out", "inout") and kwargs.get(p) is not None:
                written.add(id(kwargs[p]))
    for p in params:
        f = fields.get(p, {})
        if f.get("kind") != "buffer" or kwargs.get(p) is None:
            continue
        v = kwargs[p]
        if isinstance(v, _ferrum.Buffer):
            args[p] = _Arg(p, f, None, v)
            continue
        where = f"{op}: argument '{p}'"
        if device_call:
            if not is_device_tensor(v):
                raise _invalid(
                    f"{where}: expected a device tensor or a ferrum.Buffer like the other tensors "
                    f"of this call, got a host {type(v).__name__}: move it to the device "
                    f"(ctx.upload(), tensor.cuda()) — a call with device tensors makes no host copies")
            if id(v) not in wrapped:
                wrapped[id(v)] = ctx._wrap_device(v, where, id(v) in written)
            buf, tshape = wrapped[id(v)]
            args[p] = _Arg(p, f, None, buf, tensor=v, shape=tuple(tshape))
            tshape, tsize = tuple(tshape), buf.count
        else:
            arr = as_host_array(v, where)
            if f.get("dir") in ("out", "inout") and not arr.flags.writeable:
                raise _invalid(f"{op}: argument '{p}' ({f['dir']}): expected a writable tensor, "
                               f"got a read-only one")
            arrays[p] = arr
            tshape, tsize = arr.shape, arr.size
        shape = f.get("shape")
        if not shape:
            continue
        if len(shape) == len(tshape):
            pairs = list(zip(shape, tshape))
        elif len(shape) == 1:
            pairs = [(shape[0], tsize)]
        else:
            pairs = []
        for expr, n in pairs:
            if expr in ptypes and ptypes[expr] in ("uint64_t", "uint32_t") and kwargs.get(expr) is None:
                if expr in dims and dims[expr] != n:
                    raise _invalid(
                        f"{op}: argument '{p}' has {expr} = {n} (its shape {tuple(tshape)}) but "
                        f"argument '{inferred_from[expr]}' has {expr} = {dims[expr]}; pass {expr}= "
                        f"explicitly or fix the shapes")
                dims[expr] = int(n)
                inferred_from[expr] = p
    # 2. scalars: given, inferred, the registry default of a newer field, else required
    call_kwargs = {}
    for p in params:
        t = ptypes[p]
        f = fields.get(p, {})
        v = kwargs.get(p)
        if t in ("uint64_t", "uint32_t", "int32_t", "float", "double", "bool", "Dtype") or p == meta["mode"]:
            if v is None and p in dims:
                v = dims[p]
            if v is None and "default" in f:
                v = f["default"]
                v = 0 if v in ("0", "NULL") else (float(v) if t in ("float", "double") else int(v, 0))
            if v is None and f.get("zero", "").startswith("0 ="):
                v = 0  # the registry documents what 0 stands for (ops_doc.md)
            if v is None:
                raise _invalid(f"{op}: argument '{p}' ({t}) is required: it is not given and "
                               f"could not be inferred from the tensors' shapes")
            if p == meta["mode"]:
                v = _qk_mode(op, p, v)
            elif t == "Dtype":
                v = getattr(_ferrum.Dtype, dtype_name(v, f"{op}: argument '{p}'"))
            elif t in ("uint64_t", "uint32_t", "int32_t"):
                v = _integer(op, p, t, v)
            elif t == "bool":
                v = bool(v)
            else:
                v = float(v)
            call_kwargs[p] = v
    # 3. every tensor holds what its shape asks for (checked here too, before any output is
    #    sized from the dimensions; the facade checks the buffers again)
    for p in params:
        f = fields.get(p, {})
        if f.get("kind") != "buffer" or not f.get("shape") or (p not in arrays and p not in args):
            continue
        need = [_eval_dim(e, dims) for e in f["shape"]]
        if any(n is None for n in need):
            continue
        total = math.prod(need)
        have = arrays[p].size if p in arrays else args[p].buffer.count
        if have < total:
            raise _invalid(f"{op}: argument '{p}': expected at least {total} elements "
                           f"([{', '.join(f['shape'])}] = {need}), got {have}")
    # 4. buffers: upload arrays, allocate missing outputs
    act_dtype = None
    for p in params:
        f = fields.get(p, {})
        if f.get("kind") == "buffer" and f.get("dclass") in _FLOAT_CLASSES:
            if p in arrays:
                act_dtype = act_dtype or _tensor_dtype(op, p, f, arrays[p])
            elif p in args:
                act_dtype = act_dtype or args[p].buffer.dtype.name
    if act_dtype is None:
        act_dtype = raw.activation_dtype.name
    for p in params:
        t = ptypes[p]
        f = fields.get(p, {})
        if f.get("kind") != "buffer":
            if p not in call_kwargs:
                v = kwargs.get(p)
                if v is None and not t.endswith("*"):
                    raise _invalid(f"{op}: argument '{p}' ({t}) is required")
                if t.startswith("std::span<const ") and v is not None:
                    elem = {"float": np.float32, "uint32_t": np.uint32, "uint8_t": np.uint8}[
                        t[len("std::span<const "):-1]]
                    v = _host_vector(op, p, v, elem)
                call_kwargs[p] = v
            continue
        if p in args:
            call_kwargs[p] = args[p].buffer
            continue
        if p in arrays:
            arr = arrays[p]
            dt = _tensor_dtype(op, p, f, arr)
            buf = ctx._to_buffer(arr, dt)
            args[p] = _Arg(p, f, arr, buf)
            call_kwargs[p] = buf
            continue
        # not given
        if f.get("dir") == "out" and f.get("shape") and not f.get("optional"):
            shape = [_eval_dim(e, dims) for e in f["shape"]]
            if all(s is not None for s in shape):
                dclass = f.get("dclass")
                dt = _DCLASS_DTYPE.get(dclass) or (act_dtype if dclass in _FLOAT_CLASSES else
                                                   "u32" if dclass == "idx" else None)
                if dt is not None and device_call:  # on the device, returned without a copy
                    n = math.prod(shape)
                    if n >= 2**64:
                        raise Error(ErrorCode.out_of_memory,
                                    f"{op}: argument '{p}': cannot allocate the output {shape} of "
                                    f"{dt} on the device ({n} elements)")
                    buf = raw._alloc_typed(dtype=getattr(_ferrum.Dtype, dt), n=n)
                    args[p] = _Arg(p, f, None, buf, allocated=True, shape=tuple(shape))
                    call_kwargs[p] = buf
                    continue
                if dt is not None:
                    try:
                        arr = np.empty(shape, dtype=numpy_dtype(dt, f"{op}: argument '{p}'"))
                    except (MemoryError, ValueError) as e:
                        raise Error(ErrorCode.out_of_memory,
                                    f"{op}: argument '{p}': cannot allocate the output "
                                    f"{shape} of {dt} on the host ({e})") from None
                    buf = ctx._new_buffer(arr, dt)
                    args[p] = _Arg(p, f, arr, buf, allocated=True)
                    call_kwargs[p] = buf
                    continue
        if t.endswith("*"):
            call_kwargs[p] = None
            continue
        raise _invalid(f"{op}: argument '{p}' ({f.get('dir')} {f.get('dclass')}"
                       f"{'[' + ', '.join(f['shape']) + ']' if f.get('shape') else ''}) is required"
                       + (": its shape could not be worked out from the other arguments"
                          if f.get("dir") == "out" else ""))
    # 5. run, then copy results back into the caller's arrays
    try:
        result = getattr(raw, "_" + op)(**call_kwargs)
    except TypeError as e:  # an argument of a type the binding cannot take (nanobind's message)
        raise _invalid(f"{op}: {e}") from None
    if any(a.array is not None and ctx._wraps(a.array) for a in args.values()) or \
            (device_call and ctx.stream is None):
        # wrapped host arrays, or device tensors on a context with its own stream: the op
        # (asynchronous) is done with them before we return (the caller may free or read them)
        raw._sync()
    outs = []
    like = next((a.tensor for a in args.values() if a.tensor is not None), None)
    for p in params:
        a = args.get(p)
        if a is None or a.field.get("dir") not in ("out", "inout"):
            continue
        if a.tensor is not None:  # a device tensor, written in place
            if a.field.get("dir") == "out":
                outs.append(a.tensor)
            continue
        if a.array is None:
            if a.allocated:  # a device output ferrum allocated
                outs.append(ctx._device_output(a.buffer, a.shape, like))
            continue
        ctx._from_buffer(a.buffer, a.array)
        if a.field.get("dir") == "out":
            outs.append(a.array)
    if isinstance(result, list):
        result = np.asarray(result, dtype=np.float32 if meta["returns"] == "std::vector<float>"
                            else np.uint32 if meta["returns"] == "std::vector<uint32_t>" else np.uint8)
    if not outs:
        return result
    if result is not None:
        return (result, *outs)
    return outs[0] if len(outs) == 1 else tuple(outs)


def _integer(op, p, t, v):
    try:
        v = int(v)
    except (TypeError, ValueError):
        raise _invalid(f"{op}: argument '{p}': expected an integer ({t}), got {v!r}") from None
    lo, hi = {"uint64_t": (0, 2**64 - 1), "uint32_t": (0, 2**32 - 1),
              "int32_t": (-2**31, 2**31 - 1)}[t]
    if not lo <= v <= hi:
        raise _invalid(f"{op}: argument '{p}': expected an integer in [{lo}, {hi}] ({t}), got {v}")
    return v


def _host_vector(op, p, v, elem):
    arr = as_host_array(v, f"{op}: argument '{p}'")
    if arr.dtype != np.dtype(elem) and not np.can_cast(arr.dtype, elem, casting="same_kind"):
        raise _invalid(f"{op}: argument '{p}': expected {np.dtype(elem)} values, got {arr.dtype}")
    return np.asarray(arr, dtype=elem).ravel().tolist()


def _qk_mode(op, p, v):
    if isinstance(v, _ferrum.QkMode):
        return v
    if isinstance(v, str) and v in _ferrum.QkMode.__members__:
        return getattr(_ferrum.QkMode, v)
    if isinstance(v, int) and not isinstance(v, bool):
        for m in _ferrum.QkMode.__members__.values():
            if int(m) == v:
                return m
    raise _invalid(f"{op}: argument '{p}': expected a QK mode ({', '.join(_ferrum.QkMode.__members__)}), "
                   f"got {v!r}")


def _doc(op, meta):
    lines = [f"{op}({', '.join(meta['params'])}) — registry op {meta['id']} ({meta['family']}; "
             f"flags {meta['flags']})", "", "Keyword arguments (see docs/ops.md for their meaning):"]
    fields = {f["name"]: f for f in meta["fields"]}
    for p in meta["params"]:
        f = fields.get(p, {})
        if f.get("kind") == "buffer":
            shape = "[" + ", ".join(f["shape"]) + "]" if f.get("shape") else ""
            head = f"  {p}: {f['dir']} {f['dclass']}{shape} tensor"
        else:
            head = f"  {p}: {meta['ptypes'][p]}"
        if f.get("zero"):
            head += f" (optional: {f['zero']})" if f["zero"].startswith("0 =") else f" ({f['zero']})"
        lines.append(head)
        if f.get("doc"):
            lines.append(f"      {f['doc']}")
    lines.append("")
    lines.append("Dimensions not given are inferred from the tensors' shapes where a shape names "
                 "them; outputs not given are allocated (when their shape is known) and returned.")
    return "\n".join(lines)


def _make_method(op):
    meta = OPS[op]

    def method(self, **kwargs):
        return call(self, op, kwargs)

    method.__name__ = op
    method.__qualname__ = f"Context.{op}"
    method.__doc__ = _doc(op, meta)
    return method


def install(cls):
    """Adds one method per bound op to ferrum.Context."""
    for op in OPS:
        if not hasattr(cls, op):
            setattr(cls, op, _make_method(op))
    for op, why in NOT_BOUND.items():
        if hasattr(cls, op):
            continue

        def missing(self, _op=op, _why=why, **kwargs):
            raise Error(ErrorCode.unsupported, f"{_op}: not available from Python: {_why}")

        missing.__name__ = op
        missing.__doc__ = f"{op}: not available from Python ({why})."
        setattr(cls, op, missing)
