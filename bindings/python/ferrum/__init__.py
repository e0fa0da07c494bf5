"""ferrum: Python bindings of the ferrum C++ facade (nanobind).

    import numpy as np, ferrum
    backend = ferrum.Backend.load("cpu")
    ctx = backend.create_context(dtype="f32")
    a = np.random.rand(4, 8).astype(np.float32)
    b = np.random.rand(3, 8).astype(np.float32)
    out = ctx.gemm(a=a, b=b)          # m, n, k from the shapes; out allocated: a @ b.T

Every op of the registry the facade binds is a method of Context taking keyword arguments
(ctx.rms_norm(x=..., w=..., eps=1e-6)); see Context.<op>.__doc__ and docs/ops.md.

On the CUDA plugin, torch CUDA tensors (any DLPack CUDA tensor) are used in place, outputs come
back as torch tensors over ferrum buffers, and a context can run on torch's stream:

    ctx = ferrum.Backend.load("cuda").create_context(dtype="f16",
                                                     stream=torch.cuda.current_stream())
    ctx.rms_norm(x=x, w=w, eps=1e-6, out=y)   # y written in place, in torch's stream order

The plugins built with the package are installed inside it (ferrum/lib/ferrum) and found by the
loader's default search directory (next to libferrum.so); FERRUM_PLUGIN_PATH, when set, replaces
that search path as it does for every ferrum host.
"""
import json as _json
import threading as _threading

from ._errors import Error, ErrorCode
from . import _ferrum
from . import _ops
from ._ops_gen import HANDLES as _HANDLES, NOT_BOUND, OPS

Buffer = _ferrum.Buffer
Dtype = _ferrum.Dtype
QkMode = _ferrum.QkMode
Timer = _ferrum.Timer
QWeight = _ferrum.QWeight
KvCacheQuant = _ferrum.KvCacheQuant
plugin_search_path = _ferrum.plugin_search_path
for _h in _HANDLES:  # the facade's handle classes (Buffer, QWeight, Timer, ...)
    globals()[_h] = getattr(_ferrum, _h)

__all__ = ["Backend", "Context", "Buffer", "Dtype", "QkMode", "Error", "ErrorCode", "info",
           "plugin_search_path", "OPS", "NOT_BOUND"]


class Backend:
    """One loaded plugin (ferrum::Backend)."""

    def __init__(self, raw):
        self._raw = raw

    @staticmethod
    def load(spec=None):
        """Loads a backend. spec None or "": the facade's precedence (FERRUM_BACKEND, then the
        config file, then auto); "auto"; a name ("cpu", "cuda:1"); or a path to a plugin .so.
        Raises ferrum.Error (load_failed / config_error) with the loader's diagnosis."""
        if spec is not None and not isinstance(spec, str):
            raise Error(ErrorCode.invalid_argument,
                        f"Backend.load: argument 'spec': expected a string or None, got "
                        f"{type(spec).__name__}")
        return Backend(_ferrum.Backend._load(spec or ""))

    name = property(lambda self: self._raw.name)
    version = property(lambda self: self._raw.version)
    abi_version = property(lambda self: self._raw.abi_version)
    build_info = property(lambda self: self._raw.build_info)
    path = property(lambda self: self._raw.path)
    device_count = property(lambda self: self._raw.device_count)
    selected_device = property(lambda self: self._raw.selected_device)

    def device_props(self, ordinal=0):
        return self._raw.device_props(ordinal)

    def support_matrix(self):
        """One dict per op of the ABI: op, id, family, slot, facade_default, usable."""
        return self._raw.support_matrix()

    def supports(self, op):
        """Whether the plugin has the op's slot or the facade composes it."""
        for row in self._raw.support_matrix():
            if row["op"] == op:
                return row["usable"]
        raise Error(ErrorCode.invalid_argument, f"Backend.supports: argument 'op': no op named {op!r}")

    def create_context(self, dtype=None, device=None, stream=None):
        """A new context (one stream on one device). dtype: the default activation dtype
        ("f32", "f16", "bf16"; None: the plugin's); device: the ordinal (None: the spec's).

        stream: None or 0 = the context creates and owns its own stream. Otherwise a stream the
        caller owns, on which the context enqueues all its work (new_context's external_stream,
        ABI 1.1), so ferrum ops and the caller's kernels run in issue order without syncs:
        an object with .cuda_stream (torch.cuda.Stream, e.g. torch.cuda.current_stream()) or
        the raw cudaStream_t as an int. The stream must outlive the context: the context never
        destroys it; a stream object passed here is kept referenced by the Context, a raw int is
        the caller's to keep alive. torch's default stream has the handle 0: pass the Stream
        object (mapped to cudaStreamLegacy, 1) or 1, since the int 0 means "own stream".
        A CPU plugin answers a stream with Error(unsupported) naming the argument."""
        d = _ferrum.Dtype.invalid if dtype is None else getattr(
            _ferrum.Dtype, _ops.dtype_name(dtype, "Backend.create_context: argument 'dtype'"))
        if device is not None:
            device = _ops._integer("Backend.create_context", "device", "uint64_t", device)
        handle = _stream_handle(stream)
        if not handle:
            return Context(self, self._raw._create_context(device, d))
        ctx = Context(self, self._raw._create_context_on_stream(handle, device, d))
        ctx._stream, ctx._stream_obj = handle, stream
        return ctx

    def __repr__(self):
        return f"<ferrum.Backend {self.name} {self.version} (ABI {self.abi_version}) {self.path}>"


def _stream_handle(stream):
    """The integer handle of create_context's `stream` (0: the context's own stream)."""
    where = "Backend.create_context: argument 'stream'"
    if stream is None:
        return 0
    if hasattr(stream, "cuda_stream"):  # torch.cuda.Stream and look-alikes
        handle = _ops._integer("Backend.create_context", "stream", "uint64_t", stream.cuda_stream)
        return handle or 1  # torch's default stream (handle 0) is the legacy stream, cudaStreamLegacy
    if isinstance(stream, bool) or not isinstance(stream, int):
        raise Error(ErrorCode.invalid_argument,
                    f"{where}: expected None, an int (a cudaStream_t) or a stream object with "
                    f".cuda_stream, got {type(stream).__name__}")
    return _ops._integer("Backend.create_context", "stream", "uint64_t", stream)


class Context:
    """One stream on one device of one plugin; every op is a method (keyword arguments).

    Tensors may be numpy arrays, host tensors with __dlpack__ (torch on CPU, ...), device
    tensors with __dlpack__ (torch on CUDA, ...) or ferrum.Buffer. With zero_copy (ABI 1.1
    wrap_external in the module and the plugin, a CPU device) contiguous host arrays are the
    buffers' memory; otherwise host arrays are copied into buffers for the call and results
    copied back. On a CUDA context, CUDA tensors of its device are always used in place
    (wrap_external; C-contiguous only), and outputs not given come back as device tensors over
    ferrum buffers (torch.from_dlpack-able, no copy).

    Ordering with the tensors' producer (torch): on a context created with
    stream=torch.cuda.current_stream() every op is enqueued on that stream, after torch's
    pending work and before torch's next kernels — no syncs (the DLPack export is asked for that
    stream, so a tensor made on another torch stream is waited for there). A tensor wrapped in
    place must not go back to torch's allocator before the op ran: the buffer holds a reference
    to it until it is released, and torch's caching allocator orders reuse on the tensor's
    allocation stream, so allocate the tensors on the context's stream (or record_stream them).
    On a context with its own stream, a call with device tensors first synchronizes torch's
    current stream of the device (other producers: finish their work first) and syncs the
    context before it returns."""

    def __init__(self, backend, raw):
        self.backend = backend
        self._raw = raw
        # ops release the GIL; the facade's Context is used by one thread at a time, so calls
        # from several Python threads on one Context are serialised here
        self._lock = _threading.RLock()
        self._zero_copy = None
        self._kind = None
        self._device_wrap = None
        self._stream, self._stream_obj = None, None

    activation_dtype = property(lambda self: self._raw.activation_dtype.name)
    device = property(lambda self: self._raw.device)
    stream = property(lambda self: self._stream,
                      doc="The caller's stream handle the context runs on (create_context's "
                          "stream), or None for a context with its own stream.")

    @property
    def device_kind(self):
        """"cpu" or "gpu": the kind of the context's device (device_props)."""
        if self._kind is None:
            self._kind = self.backend.device_props(self.device)["kind"]
        return self._kind

    @property
    def zero_copy(self):
        """Whether host arrays are used in place: the module was built with the ABI 1.1 op
        wrap_external, the plugin has it, and the context's device is the host (CPU plugin).
        False: arrays are copied into buffers for every call and results copied back."""
        if self._zero_copy is None:
            self._zero_copy = bool(
                self._raw._zero_copy_compiled() and self.backend.supports("wrap_external")
                and self.backend.device_props(self.device)["kind"] == "cpu")
        return self._zero_copy

    def info(self):
        d = self._raw.info()
        d["activation_dtype"] = d["activation_dtype"].name
        return d

    def upload(self, array, dtype=None):
        """A Buffer of a host tensor (dtype: the array's): a copy, or with zero_copy the
        array's own memory (the Buffer keeps the array alive). A device tensor of this context's
        device is wrapped in place (as wrap(); dtype, when given, must be its own)."""
        if _ops.is_device_tensor(array):
            buf = self.wrap(array)
            if dtype is not None and _ops.dtype_name(dtype, "upload: argument 'dtype'") != buf.dtype.name:
                raise Error(ErrorCode.invalid_argument,
                            f"upload: argument 'dtype': a device tensor is used in place, so "
                            f"expected its own dtype {buf.dtype.name}, got {dtype}")
            return buf
        arr = _ops.as_host_array(array, "upload: argument 'array'")
        dt = _ops.dtype_name(dtype if dtype is not None else arr.dtype, "upload: argument 'dtype'")
        with self._lock:
            return self._to_buffer(arr, dt)

    def write(self, buffer, array):
        """Copies a host tensor into the start of `buffer` (same dtype)."""
        _check_buffer("write", buffer)
        arr = _ops.as_host_array(array, "write: argument 'array'")
        with self._lock:
            self._raw._write(buffer, _raw_bytes(arr))

    def read(self, buffer, shape=None, offset=0):
        """A numpy array with a copy of `buffer`'s elements (shape: default [count - offset])."""
        _check_buffer("read", buffer)
        offset = _ops._integer("read", "offset", "uint64_t", offset)
        dt = _ops.numpy_dtype(buffer.dtype.name, "read: argument 'buffer'")
        if shape is None:
            shape = (max(buffer.count - offset, 0),)
        out = _np.empty(shape, dtype=dt)
        with self._lock:
            self._raw._read(buffer, _raw_bytes(out), offset)
        return out

    def view(self, buffer, shape=None):
        """The buffer's own memory without a copy: a numpy array on the CPU (it keeps the buffer
        alive), an array with __dlpack__ on a GPU (torch.from_dlpack uses it in place). Needs the ABI
        1.1 op buffer_device_address in this module and the plugin; Error(unsupported)
        otherwise (use read(), which copies). Work queued on the buffer is synced first."""
        _check_buffer("view", buffer)
        if not hasattr(buffer, "_view"):
            raise Error(ErrorCode.unsupported,
                        "view: this build of ferrum has no buffer_device_address (ABI 1.1): "
                        "use Context.read, which copies")
        shape = (buffer.count,) if shape is None else tuple(
            _ops._integer("view", "shape", "uint64_t", s) for s in shape)
        kind = self.device_kind
        with self._lock:
            self._raw._sync()
            if kind != "cpu":  # a device array: for torch.from_dlpack & co.
                return buffer._view(list(shape), 2, False)
            dt = _ops.numpy_dtype(buffer.dtype.name, "view: argument 'buffer'")
            return _np.from_dlpack(buffer._view(list(shape), 1, True)).view(dt)

    def wrap(self, tensor, writable=True):
        """A Buffer over a device tensor's own memory, never a copy (ABI 1.1 wrap_external): a
        C-contiguous CUDA tensor (DLPack kDLCUDA / kDLCUDAManaged) of this context's device, of
        a ferrum dtype. The Buffer keeps the tensor alive until it is released. Anything else
        (a host tensor, another device, strides, a read-only tensor when writable) is
        Error(invalid_argument) naming the argument. See the class doc for ordering."""
        if not _ops.is_device_tensor(tensor):
            raise Error(ErrorCode.invalid_argument,
                        f"wrap: argument 'tensor': expected a CUDA tensor (__dlpack__ on device "
                        f"{self.device}), got {type(tensor).__name__}"
                        f"{' on the host' if _ops.dlpack_device(tensor) or hasattr(tensor, 'shape') else ''}"
                        f": use upload() to copy host data")
        with self._lock:
            buf, _ = self._wrap_device(tensor, "wrap: argument 'tensor'", bool(writable))
        return buf

    # -- device tensors: wrapped in place (wrap_external over DLPack) ----------------------
    def _wrap_device(self, obj, where, writable):
        dev_type, dev_id = _ops.dlpack_device(obj)
        if self.device_kind == "cpu":
            raise Error(ErrorCode.invalid_argument,
                        f"{where}: expected a host (CPU) tensor (the context's device is the CPU), "
                        f"got a tensor on DLPack device ({dev_type}, {dev_id}): copy it to the "
                        f"host, or use a context of the CUDA backend")
        if dev_type not in _ops._DLPACK_CUDA_TYPES or dev_id != self.device:
            raise Error(ErrorCode.invalid_argument,
                        f"{where}: expected a CUDA tensor on device {self.device} (the context's), "
                        f"got a tensor on DLPack device ({dev_type}, {dev_id})")
        if self._device_wrap is None:  # once per context: support_matrix builds every row
            self._device_wrap = (hasattr(self._raw, "_wrap_dlpack")
                                 and self.backend.supports("wrap_external"))
        if not self._device_wrap:
            raise Error(ErrorCode.unsupported,
                        f"{where}: device tensors need the ABI 1.1 op wrap_external, which this "
                        f"{'module' if not hasattr(self._raw, '_wrap_dlpack') else 'plugin'} lacks")
        if self._stream is None and _ops.is_torch(obj):
            import torch  # its pending work on the tensor is done before our own stream reads it
            torch.cuda.current_stream(obj.device).synchronize()
        capsule = _ops.export_dlpack(obj, where, self._stream)
        return self._raw._wrap_dlpack(capsule, obj, where, bool(writable))

    def _device_output(self, buf, shape, like):
        """A device output ferrum allocated, shaped, without a copy: a torch tensor when the
        call's tensors are torch's, else a DLPack array (torch.from_dlpack & co. take it)."""
        view = buf._view(list(shape), 2, False)
        if like is not None and _ops.is_torch(like):
            import torch
            return torch.from_dlpack(view)
        return view

    # -- array <-> buffer: wrapped in place when zero_copy, else copied ----------------------
    def _wraps(self, arr):
        return (self.zero_copy and arr.flags.c_contiguous and arr.flags.aligned
                and arr.flags.writeable)

    def _to_buffer(self, arr, dt):
        if self._wraps(arr):
            return self._raw._wrap_host(_raw_bytes(arr), getattr(_ferrum.Dtype, dt))
        return self._raw._upload(_raw_bytes(arr), getattr(_ferrum.Dtype, dt))

    def _new_buffer(self, arr, dt):
        if self._wraps(arr):
            return self._raw._wrap_host(_raw_bytes(arr), getattr(_ferrum.Dtype, dt))
        return self._raw._alloc_typed(dtype=getattr(_ferrum.Dtype, dt), n=arr.size)

    def _from_buffer(self, buf, arr):
        """Makes `arr` hold `buf`'s elements after the op (a copy unless it is wrapped)."""
        if self._wraps(arr):
            return  # the array is the buffer's memory (the call has synced)
        if arr.flags.c_contiguous and arr.flags.writeable:
            self._raw._read(buf, _raw_bytes(arr), 0)
        else:
            tmp = _np.empty(arr.shape, dtype=arr.dtype)
            self._raw._read(buf, _raw_bytes(tmp), 0)
            arr[...] = tmp

    def __repr__(self):
        return (f"<ferrum.Context {self.backend.name} device {self.device} "
                f"activation {self.activation_dtype}>")


import numpy as _np  # noqa: E402


def _check_buffer(fn, buffer):
    if not isinstance(buffer, _ferrum.Buffer) or not buffer:
        raise Error(ErrorCode.invalid_argument,
                    f"{fn}: argument 'buffer': expected a live ferrum.Buffer, got "
                    f"{type(buffer).__name__}{' (released)' if isinstance(buffer, _ferrum.Buffer) else ''}")


def _raw_bytes(arr):
    """A flat C-contiguous view of the array's elements as unsigned integers of the same size
    (what the byte-level copies take; bf16 / f8 numpy dtypes have no DLPack code). Copies only
    a non-contiguous array."""
    arr = arr if arr.flags.c_contiguous else _np.ascontiguousarray(arr)
    return arr.reshape(-1).view(_np.dtype(f"u{arr.dtype.itemsize}"))


_ops.install(Context)


def info(isolate=True, timeout_s=60):
    """What `ferrum-info --json` prints, as a dict: every plugin in the search path, how far it
    loaded and why it stopped, its devices and op matrix, and the ops the facade composes.
    isolate: load each plugin in a child process (a crashing plugin is reported, not fatal)."""
    return _json.loads(_ferrum._info_json(bool(isolate), int(timeout_s)))
