// ferrum Python bindings (nanobind): the extension module ferrum._ferrum.
//
// Binds the C++ facade (core/include/ferrum): Backend, Context, Buffer, Timer, QWeight,
// KvCacheQuant, the host <-> buffer copies, the loader's search path and ferrum-info's JSON
// report. The op methods are generated (ops_gen.cpp, tools/abigen/gen_python.py); the Python
// layer (ferrum/_ops.py) wraps them with array conversion and shape inference.
//
// Errors: every ferrum::Error becomes a ferrum.Error (ferrum/_errors.py) with .code, the
// ErrorCode's name ("unsupported", "invalid_argument", ...) as a ferrum.ErrorCode, and the
// facade's message; nothing else of the facade throws across this boundary.
#include "bindings.hpp"

#include <Python.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include <ferrum/common/checked.hpp>

#include "info_json.hpp"

namespace ferrum::python {

std::vector<ferrum_buffer*> handles(const char* op, const char* arg,
                                    const std::vector<ferrum::Buffer*>& buffers) {
  std::vector<ferrum_buffer*> out;
  out.reserve(buffers.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    if (!buffers[i] || !*buffers[i])
      throw ferrum::Error(ferrum::ErrorCode::invalid_argument,
                          std::string(op) + ": argument '" + arg + "': entry " +
                              std::to_string(i) + " is None or an empty Buffer, expected a live Buffer");
    out.push_back(buffers[i]->get());
  }
  return out;
}

namespace {

nb::object g_error_class;  // ferrum._errors.Error (set at import)

[[noreturn]] void fail(const std::string& message) {
  throw ferrum::Error(ferrum::ErrorCode::invalid_argument, message);
}

using HostIn = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;
using HostOut = nb::ndarray<nb::c_contig, nb::device::cpu>;

// The array's element size must be the dtype's (the Python layer maps numpy dtypes to ferrum
// dtypes; this is the last check before raw bytes move).
void check_itemsize(const char* fn, const char* arg, size_t itemsize, ferrum::Dtype dtype) {
  const uint64_t want = ferrum::element_size(dtype);
  if (want == 0) fail(std::string(fn) + ": argument 'dtype': expected a valid dtype, got invalid");
  if (itemsize != want)
    fail(std::string(fn) + ": argument '" + arg + "': expected elements of " +
         std::to_string(want) + " bytes (" + std::string(ferrum::to_string(dtype)) + "), got " +
         std::to_string(itemsize) + "-byte elements");
}

// The DLPack device (kDLCPU 1 / kDLCUDA 2, device id) of a buffer: the kind of its device as
// the plugin that made it reports it (device_props). ferrum's GPU plugin is the CUDA plugin.
std::pair<int32_t, int32_t> buffer_dlpack_device(const ferrum::Buffer& b) {
  if (!b || !b.api() || !b.api()->device_props)
    fail("__dlpack_device__: the buffer is empty (released), expected a live Buffer");
  ferrum_device_props p{};
  p.struct_size = sizeof p;
  if (b.api()->device_props(b.device(), &p) != FERRUM_STATUS_OK)
    throw ferrum::Error(ferrum::ErrorCode::internal,
                        "__dlpack_device__: the plugin cannot describe device " +
                            std::to_string(b.device()) + " of its own buffer");
  if (p.kind == FERRUM_DEVICE_KIND_CPU) return {1, 0};
  if (p.kind == FERRUM_DEVICE_KIND_GPU) return {2, static_cast<int32_t>(b.device())};
  throw ferrum::Error(ferrum::ErrorCode::unsupported,
                      "__dlpack_device__: the buffer's device kind " + std::to_string(p.kind) +
                          " has no DLPack device type here (CPU and CUDA only)");
}

#ifdef FERRUM_OP_WRAP_EXTERNAL
// ---- DLPack import of device tensors (wrap_external) -----------------------------------
// The DLPack structs as the DLPack ABI lays them out (DLTensor is nanobind's dltensor).
struct DLManaged {
  nb::dlpack::dltensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManaged*);
};
struct DLManagedVersioned {
  uint32_t major, minor;
  void* manager_ctx;
  void (*deleter)(DLManagedVersioned*);
  uint64_t flags;
  nb::dlpack::dltensor dl_tensor;
};
constexpr uint64_t kDLFlagReadOnly = 1;
constexpr int32_t kDLCPU = 1, kDLCUDA = 2, kDLCUDAManaged = 13;

// What keeps an imported tensor alive while a ferrum buffer uses its memory: the producer's
// managed tensor (its deleter gives the producer's reference back) and the Python object it
// came from. Released by the buffer's release_fn, with the GIL taken (buffer_release may run
// from any thread); skipped while the interpreter is finalizing (the memory is then left).
struct DLPackHold {
  void* managed = nullptr;
  bool versioned = false;
  PyObject* owner = nullptr;
  bool in_wrap = true;    // wrap_external has not returned yet
  bool released = false;  // release_fn ran during wrap_external (the facade's failure path)
};

bool python_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return !Py_IsInitialized() || Py_IsFinalizing();
#else
  return !Py_IsInitialized() || _Py_IsFinalizing();
#endif
}

void drop_hold_contents(DLPackHold* h) noexcept {
  if (python_finalizing()) return;
  nb::gil_scoped_acquire gil;
  if (h->managed) {
    if (h->versioned) {
      auto* m = static_cast<DLManagedVersioned*>(h->managed);
      if (m->deleter) m->deleter(m);
    } else {
      auto* m = static_cast<DLManaged*>(h->managed);
      if (m->deleter) m->deleter(m);
    }
    h->managed = nullptr;
  }
  Py_XDECREF(h->owner);
  h->owner = nullptr;
}

void release_dlpack_hold(void* user_data) noexcept {
  auto* h = static_cast<DLPackHold*>(user_data);
  if (!h) return;
  drop_hold_contents(h);
  if (h->in_wrap)
    h->released = true;  // the wrapping call still owns the struct
  else
    delete h;
}

std::optional<ferrum::Dtype> dlpack_to_dtype(nb::dlpack::dtype dt) {
  using C = nb::dlpack::dtype_code;
  if (dt.lanes != 1) return std::nullopt;
  const auto code = static_cast<C>(dt.code);
  if (code == C::Float && dt.bits == 32) return ferrum::Dtype::f32;
  if (code == C::Float && dt.bits == 16) return ferrum::Dtype::f16;
  if (code == C::Bfloat && dt.bits == 16) return ferrum::Dtype::bf16;
  if (code == C::Int && dt.bits == 32) return ferrum::Dtype::i32;
  if (code == C::UInt && dt.bits == 32) return ferrum::Dtype::u32;
  if (code == C::Int && dt.bits == 8) return ferrum::Dtype::i8;
  if (code == C::UInt && dt.bits == 8) return ferrum::Dtype::u8;
  if (code == C::Float8_E4M3FN && dt.bits == 8) return ferrum::Dtype::f8_e4m3;
  return std::nullopt;
}

std::string dlpack_dtype_text(nb::dlpack::dtype dt) {
  return "DLPack dtype (code " + std::to_string(dt.code) + ", " + std::to_string(dt.bits) +
         " bits, " + std::to_string(dt.lanes) + " lanes)";
}

// A DLPack capsule of a CUDA tensor (from owner.__dlpack__) as a ferrum buffer over the same
// memory (wrap_external): no copy. Checks, each an Error(invalid_argument) naming `where`:
// a DLPack capsule not yet used, CUDA (or managed) memory of the context's device (`host`:
// host memory, for a CPU context — the tests drive this machinery on the CPU plugin), a dtype
// ferrum has, C-contiguous strides, a writable tensor when `writable`. The capsule is marked
// used; the buffer's release gives the tensor back (its deleter) and drops `owner`.
nb::tuple wrap_dlpack(ferrum::Context& c, nb::handle capsule, nb::handle owner,
                      const std::string& where, bool writable, bool host) {
  PyObject* cap = capsule.ptr();
  bool versioned = false;
  if (PyCapsule_IsValid(cap, "dltensor_versioned"))
    versioned = true;
  else if (!PyCapsule_IsValid(cap, "dltensor"))
    fail(where + ": expected a DLPack capsule from __dlpack__ (\"dltensor\" or "
                 "\"dltensor_versioned\"), got " +
         std::string(Py_TYPE(cap)->tp_name) + (PyCapsule_CheckExact(cap) ? " (an already used or foreign capsule)" : ""));
  void* managed = PyCapsule_GetPointer(cap, versioned ? "dltensor_versioned" : "dltensor");
  if (!managed) {
    PyErr_Clear();
    fail(where + ": the DLPack capsule holds no tensor");
  }
  nb::dlpack::dltensor* t = nullptr;
  uint64_t flags = 0;
  if (versioned) {
    auto* m = static_cast<DLManagedVersioned*>(managed);
    if (m->major != 1)
      fail(where + ": expected a DLPack 1.x tensor, got DLPack version " +
           std::to_string(m->major) + "." + std::to_string(m->minor));
    t = &m->dl_tensor;
    flags = m->flags;
  } else {
    t = &static_cast<DLManaged*>(managed)->dl_tensor;
  }
  const int32_t dev_type = t->device.device_type, dev_id = t->device.device_id;
  if (host ? dev_type != kDLCPU
           : ((dev_type != kDLCUDA && dev_type != kDLCUDAManaged) || dev_id < 0 ||
              static_cast<uint64_t>(dev_id) != c.device()))
    fail(where + ": expected " +
         (host ? std::string("a host (CPU) tensor")
               : "a CUDA tensor on device " + std::to_string(c.device()) + " (the context's)") +
         ", got a tensor on DLPack device (" + std::to_string(dev_type) + ", " +
         std::to_string(dev_id) + ")");
  const std::optional<ferrum::Dtype> dtype = dlpack_to_dtype(t->dtype);
  if (!dtype)
    fail(where + ": expected f32, f16, bf16, i32, u32, i8, u8 or f8_e4m3 (e4m3fn) elements, got " +
         dlpack_dtype_text(t->dtype));
  if (t->ndim < 0 || t->ndim > 64)
    fail(where + ": expected a tensor of 0 to 64 dimensions, got " + std::to_string(t->ndim));
  if (writable && (flags & kDLFlagReadOnly))
    fail(where + ": expected a writable tensor (the op writes it), got a read-only one");
  // element count (checked) and C-contiguity: strides NULL (compact row-major) or, ignoring
  // dimensions of extent 1, each stride the product of the extents after it
  nb::list shape;
  uint64_t count = 1;
  for (int32_t i = 0; i < t->ndim; ++i) {
    if (t->shape[i] < 0) fail(where + ": the tensor has a negative extent");
    count = ferrum::common::sat_mul(count, static_cast<uint64_t>(t->shape[i]));
    shape.append(t->shape[i]);
  }
  if (count == UINT64_MAX) fail(where + ": the tensor has more than 2^64 elements");
  if (t->strides && count > 1) {
    uint64_t want = 1;
    for (int32_t i = t->ndim - 1; i >= 0; --i) {
      const uint64_t extent = static_cast<uint64_t>(t->shape[i]);
      if (extent != 1 && (t->strides[i] < 0 || static_cast<uint64_t>(t->strides[i]) != want)) {
        std::string st;
        for (int32_t j = 0; j < t->ndim; ++j) st += (j ? ", " : "") + std::to_string(t->strides[j]);
        fail(where + ": expected a C-contiguous tensor (ferrum reads it in place), got strides (" +
             st + ") in elements: pass a contiguous tensor (e.g. tensor.contiguous())");
      }
      want = ferrum::common::sat_mul(want, extent);
    }
  }
  const uint64_t address =
      ferrum::common::sat_add(reinterpret_cast<uint64_t>(t->data), t->byte_offset);
  if (address == UINT64_MAX) fail(where + ": the tensor's data pointer + byte_offset overflows");

  auto* hold = new DLPackHold{managed, versioned, owner.ptr(), true, false};
  Py_XINCREF(hold->owner);
  // the managed tensor is ours from here (the producer's capsule destructor skips used capsules)
  if (PyCapsule_SetName(cap, versioned ? "used_dltensor_versioned" : "used_dltensor") != 0) {
    PyErr_Clear();
    hold->managed = nullptr;  // still the capsule's
    drop_hold_contents(hold);
    delete hold;
    throw ferrum::Error(ferrum::ErrorCode::internal, where + ": cannot mark the DLPack capsule used");
  }
  ferrum::Buffer buf;
  try {
    buf = c.wrap_external({.address = address, .dtype = *dtype, .count = count,
                           .device_ordinal = c.device(), .release_fn = &release_dlpack_hold,
                           .release_user_data = hold});
  } catch (const ferrum::Error& e) {  // the plugin's refusal, prefixed with the argument
    if (!hold->released) drop_hold_contents(hold);
    delete hold;
    throw ferrum::Error(e.code(), where + ": " + e.what());
  } catch (...) {
    if (!hold->released) drop_hold_contents(hold);
    delete hold;
    throw;
  }
  hold->in_wrap = false;
  return nb::make_tuple(std::move(buf), shape);
}
#endif  // FERRUM_OP_WRAP_EXTERNAL

#ifdef FERRUM_OP_BUFFER_DEVICE_ADDRESS
// The buffer's own memory as a DLPack array of `shape` (no copy; the array keeps `self`, the
// Buffer, alive), on DLPack device (device_type, the buffer's device).
nb::ndarray<nb::array_api> buffer_view(nb::handle self, const std::vector<size_t>& shape,
                                     int32_t device_type, bool as_uint) {
  const ferrum::Buffer& b = nb::cast<const ferrum::Buffer&>(self);
  uint64_t n = 1;
  for (size_t d : shape) n = ferrum::common::sat_mul(n, static_cast<uint64_t>(d));
  if (n > b.count())
    fail("view: argument 'shape': expected at most " + std::to_string(b.count()) +
         " elements (the buffer's count), got a shape of " +
         (n == UINT64_MAX ? std::string("more than 2^64") : std::to_string(n)));
  const ferrum::Buffer::DeviceAddress a = b.device_address();
  nb::dlpack::dtype dt{};
  dt.lanes = 1;
  dt.bits = static_cast<uint8_t>(8 * ferrum::element_size(b.dtype()));
  switch (b.dtype()) {
    case ferrum::Dtype::f32: case ferrum::Dtype::f16: dt.code = uint8_t(nb::dlpack::dtype_code::Float); break;
    case ferrum::Dtype::bf16: dt.code = uint8_t(nb::dlpack::dtype_code::Bfloat); break;
    case ferrum::Dtype::i32: case ferrum::Dtype::i8: dt.code = uint8_t(nb::dlpack::dtype_code::Int); break;
    case ferrum::Dtype::u32: case ferrum::Dtype::u8: dt.code = uint8_t(nb::dlpack::dtype_code::UInt); break;
    case ferrum::Dtype::f8_e4m3: dt.code = uint8_t(nb::dlpack::dtype_code::Float8_E4M3FN); break;
    default: fail("view: the buffer has no valid dtype");
  }
  if (as_uint) dt.code = uint8_t(nb::dlpack::dtype_code::UInt);
  return nb::ndarray<nb::array_api>(reinterpret_cast<void*>(a.address), shape.size(),
                                    shape.data(), self, nullptr, dt, device_type,
                                    static_cast<int>(a.device));
}
#endif

nb::dict device_props_dict(const ferrum::DeviceProps& p) {
  nb::dict d;
  d["name"] = p.name;
  d["kind"] = p.kind == ferrum::DeviceKind::cpu   ? "cpu"
              : p.kind == ferrum::DeviceKind::gpu ? "gpu"
                                                  : "unknown";
  d["compute_capability"] = std::to_string(p.compute_major) + "." + std::to_string(p.compute_minor);
  d["total_memory_bytes"] = p.total_memory_bytes;
  d["multiprocessors"] = p.multiprocessors;
  nb::list dtypes;
  for (int i = 1; i <= 8; ++i)
    if (p.supports_dtype(static_cast<ferrum::Dtype>(i)))
      dtypes.append(std::string(ferrum::to_string(static_cast<ferrum::Dtype>(i))));
  d["dtypes"] = dtypes;
  return d;
}

}  // namespace
}  // namespace ferrum::python

using namespace ferrum::python;

NB_MODULE(_ferrum, m) {
  m.doc() = "ferrum C++ facade bindings (use the ferrum package, not this module)";

  g_error_class = nb::module_::import_("ferrum._errors").attr("Error");
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const ferrum::Error& e) {
      nb::object exc = g_error_class(ferrum::to_string(e.code()), e.what());
      PyErr_SetObject(g_error_class.ptr(), exc.ptr());
    }
  });

  nb::enum_<ferrum::Dtype>(m, "Dtype")
      .value("invalid", ferrum::Dtype::invalid)
      .value("f32", ferrum::Dtype::f32)
      .value("f16", ferrum::Dtype::f16)
      .value("bf16", ferrum::Dtype::bf16)
      .value("i32", ferrum::Dtype::i32)
      .value("u32", ferrum::Dtype::u32)
      .value("i8", ferrum::Dtype::i8)
      .value("u8", ferrum::Dtype::u8)
      .value("f8_e4m3", ferrum::Dtype::f8_e4m3);
  nb::enum_<ferrum::QkMode>(m, "QkMode")
      .value("copy", ferrum::QkMode::copy)
      .value("rms_norm_neox", ferrum::QkMode::rms_norm_neox)
      .value("neox", ferrum::QkMode::neox)
      .value("gptj", ferrum::QkMode::gptj);

  auto buffer_cls = nb::class_<ferrum::Buffer>(
      m, "Buffer", "A buffer of one plugin on one device (dtype + element count).");
  buffer_cls
      .def_prop_ro("dtype", [](const ferrum::Buffer& b) { return b.dtype(); })
      .def_prop_ro("count", [](const ferrum::Buffer& b) { return b.count(); })
      .def_prop_ro("size_bytes", [](const ferrum::Buffer& b) { return b.size_bytes(); })
      .def_prop_ro("device", [](const ferrum::Buffer& b) { return b.device(); })
      .def("__bool__", [](const ferrum::Buffer& b) { return static_cast<bool>(b); })
      .def("release", [](ferrum::Buffer& b) { b.reset(); }, "Frees the buffer now.")
      .def("__repr__", [](const ferrum::Buffer& b) {
        return "<ferrum.Buffer " + std::string(ferrum::to_string(b.dtype())) + "[" +
               std::to_string(b.count()) + "] device " + std::to_string(b.device()) + ">";
      });
#ifdef FERRUM_OP_BUFFER_DEVICE_ADDRESS
  // The buffer's own memory as a DLPack / buffer-protocol array (ABI 1.1
  // buffer_device_address): no copy; the array keeps the Buffer alive. `device_type` is the
  // DLPack device type of the plugin's device (kDLCPU 1, kDLCUDA 2), given by the Python layer.
  // as_uint: the elements as unsigned integers of the same size (numpy has no bf16 / f8 DLPack
  // codes; the Python layer views them as ml_dtypes types).
  buffer_cls.def("_view", &buffer_view, nb::arg("shape"), nb::arg("device_type"), nb::arg("as_uint"));
  // DLPack export of the whole buffer (count elements, 1-D) on its own device:
  // torch.from_dlpack(buf) uses the memory in place. The stream argument is accepted and
  // ignored: ferrum does not know which context queued work on the buffer; order it (ctx.sync(),
  // or a context on the consumer's stream) before the consumer reads.
  buffer_cls.def("__dlpack_device__", [](const ferrum::Buffer& b) {
    const auto [type, id] = buffer_dlpack_device(b);
    return nb::make_tuple(type, id);
  });
  buffer_cls.def("__dlpack__", [](nb::handle self, nb::kwargs kwargs) {
    const ferrum::Buffer& b = nb::cast<const ferrum::Buffer&>(self);
    const int32_t type = buffer_dlpack_device(b).first;
    nb::object view = nb::cast(buffer_view(self, {static_cast<size_t>(b.count())}, type, false));
    return view.attr("__dlpack__")(**kwargs);
  });
  buffer_cls.def_prop_ro("address", [](const ferrum::Buffer& b) { return b.device_address().address; },
                         "The address of the first element (buffer_device_address): a host pointer "
                         "on the CPU, a device pointer on CUDA.");

#endif
  nb::class_<ferrum::Timer>(m, "Timer");
  nb::class_<ferrum::QWeight>(m, "QWeight");
  bind_handle_classes(m);
  nb::class_<ferrum::KvCacheQuant>(m, "KvCacheQuant")
      .def_prop_ro("k", [](ferrum::KvCacheQuant& c) -> ferrum::Buffer& { return c.k; }, nb::rv_policy::reference_internal)
      .def_prop_ro("v", [](ferrum::KvCacheQuant& c) -> ferrum::Buffer& { return c.v; }, nb::rv_policy::reference_internal)
      .def_prop_ro("k_scales", [](ferrum::KvCacheQuant& c) -> ferrum::Buffer& { return c.k_scales; }, nb::rv_policy::reference_internal)
      .def_prop_ro("v_scales", [](ferrum::KvCacheQuant& c) -> ferrum::Buffer& { return c.v_scales; }, nb::rv_policy::reference_internal)
      .def_prop_ro("block_table", [](ferrum::KvCacheQuant& c) -> ferrum::Buffer& { return c.block_table; }, nb::rv_policy::reference_internal)
      .def_prop_ro("context_lens", [](ferrum::KvCacheQuant& c) -> ferrum::Buffer& { return c.context_lens; }, nb::rv_policy::reference_internal)
      .def_ro("len", &ferrum::KvCacheQuant::len)
      .def_ro("capacity", &ferrum::KvCacheQuant::capacity)
      .def_ro("block_size", &ferrum::KvCacheQuant::block_size)
      .def_ro("num_kv_heads", &ferrum::KvCacheQuant::num_kv_heads)
      .def_ro("head_dim", &ferrum::KvCacheQuant::head_dim);

  auto ctx = nb::class_<ferrum::Context>(m, "Context");
  ctx.def_prop_ro("activation_dtype", &ferrum::Context::activation_dtype)
      .def_prop_ro("device", &ferrum::Context::device)
      .def("info", [](const ferrum::Context& c) {
        const ferrum::ContextInfo i = c.info();
        nb::dict d;
        d["device_ordinal"] = i.device_ordinal;
        d["activation_dtype"] = i.activation_dtype;
        d["batched_slots"] = i.batched_slots;
        d["batched_items"] = i.batched_items;
        return d;
      })
      // Host -> a new buffer (a copy: from_slice_typed). `data` is C-contiguous host memory.
      .def("_upload", [](ferrum::Context& c, HostIn data, ferrum::Dtype dtype) {
        check_itemsize("upload", "data", data.itemsize(), dtype);
        return c.from_slice_typed(dtype, data.data(), data.size());
      }, nb::arg("data"), nb::arg("dtype"))
      // Host -> the start of an existing buffer (write_typed, its dtype).
      .def("_write", [](ferrum::Context& c, ferrum::Buffer& dst, HostIn data) {
        check_itemsize("write", "data", data.itemsize(), dst.dtype());
        c.write_typed({.dst = dst, .dtype = dst.dtype(), .data = data.data(), .data_len = data.size()});
      }, nb::arg("dst"), nb::arg("data"))
      // A buffer's first out.size elements (starting at `offset`) -> host memory (read_typed).
      .def("_read", [](ferrum::Context& c, const ferrum::Buffer& src, HostOut out, uint64_t offset) {
        check_itemsize("read", "out", out.itemsize(), src.dtype());
        c.read_typed({.src = src, .dtype = src.dtype(), .len = out.size(), .data = out.data(),
                      .src_offset = offset});
      }, nb::arg("src"), nb::arg("out"), nb::arg("offset") = 0)
#ifdef FERRUM_OP_WRAP_EXTERNAL
      // Host memory as a buffer without a copy (ABI 1.1 wrap_external): the returned Buffer
      // keeps the array alive (keep_alive), and the memory is the array's, so ops read and
      // write it in place. `data` must be C-contiguous, aligned host memory of `dtype`.
      .def("_wrap_host", [](ferrum::Context& c, HostIn data, ferrum::Dtype dtype) {
        check_itemsize("wrap_host", "data", data.itemsize(), dtype);
        return c.wrap_external({.address = reinterpret_cast<uint64_t>(data.data()), .dtype = dtype,
                                .count = data.size(), .device_ordinal = c.device()});
      }, nb::arg("data"), nb::arg("dtype"), nb::keep_alive<0, 2>())
      // A CUDA tensor's DLPack capsule (owner.__dlpack__(...)) as a buffer over its memory, no
      // copy: returns (Buffer, shape). The Buffer keeps the tensor (and `owner`) alive until it is
      // released. `where` names the argument in errors; `writable`: the op writes the tensor;
      // `host`: expect host memory instead (a CPU context; the tests use it).
      .def("_wrap_dlpack", &wrap_dlpack, nb::arg("capsule"), nb::arg("owner"), nb::arg("where"),
           nb::arg("writable"), nb::arg("host") = false)
#endif
      .def("_zero_copy_compiled", [](const ferrum::Context&) {
#ifdef FERRUM_OP_WRAP_EXTERNAL
        return true;
#else
        return false;
#endif
      }, "Whether this module was built with the ABI 1.1 external-memory op wrap_external.");
  bind_ops(ctx);

  nb::class_<ferrum::Backend>(m, "Backend")
      .def_static("_load", [](const std::string& spec) { return ferrum::Backend::load(spec); },
                  nb::arg("spec") = "")
      .def_prop_ro("name", [](const ferrum::Backend& b) { return std::string(b.name()); })
      .def_prop_ro("version", [](const ferrum::Backend& b) { return std::string(b.version()); })
      .def_prop_ro("abi_version", &ferrum::Backend::abi_version)
      .def_prop_ro("build_info", [](const ferrum::Backend& b) { return std::string(b.build_info()); })
      .def_prop_ro("path", [](const ferrum::Backend& b) { return b.path(); })
      .def_prop_ro("device_count", &ferrum::Backend::device_count)
      .def_prop_ro("selected_device", &ferrum::Backend::selected_device)
      .def("device_props", [](const ferrum::Backend& b, uint64_t ordinal) {
        return device_props_dict(b.device_props(ordinal));
      }, nb::arg("ordinal") = 0)
      .def("_supports", [](const ferrum::Backend& b, int32_t op) {
        return b.supports(static_cast<ferrum::Op>(op));
      })
      .def("support_matrix", [](const ferrum::Backend& b) {
        nb::list rows;
        for (const ferrum::OpSupport& s : b.support_matrix()) {
          nb::dict d;
          d["op"] = std::string(s.name);
          d["id"] = static_cast<int32_t>(s.op);
          d["family"] = std::string(s.family);
          d["slot"] = s.slot;
          d["facade_default"] = s.facade_default;
          d["usable"] = s.usable();
          rows.append(d);
        }
        return rows;
      }, "One dict per op of the ABI: op, id, family, slot (the plugin has it), facade_default, usable.")
      .def("_create_context", [](const ferrum::Backend& b, std::optional<uint64_t> device,
                                 ferrum::Dtype dtype) { return b.create_context(device, dtype); },
           nb::arg("device").none(), nb::arg("dtype"))
      // The same on a stream the host owns (new_context's external_stream; the caller keeps it
      // alive until the context is gone).
      .def("_create_context_on_stream", [](const ferrum::Backend& b, uint64_t stream,
                                           std::optional<uint64_t> device, ferrum::Dtype dtype) {
        return b.create_context_on_stream(stream, device, dtype);
      }, nb::arg("stream"), nb::arg("device").none(), nb::arg("dtype"));

  m.def("plugin_search_path", &ferrum::plugin_search_path,
        "The plugin directories the loader searches, in order.");
  m.def("_info_json", &ferrum::tools::info_json_text, nb::arg("isolate"), nb::arg("timeout_s"));
  m.def("_error_code_names", [] {
    nb::dict d;
    for (auto c : {ferrum::ErrorCode::unsupported, ferrum::ErrorCode::invalid_argument,
                   ferrum::ErrorCode::out_of_memory, ferrum::ErrorCode::device_error,
                   ferrum::ErrorCode::abi_mismatch, ferrum::ErrorCode::internal,
                   ferrum::ErrorCode::load_failed, ferrum::ErrorCode::config_error})
      d[ferrum::to_string(c)] = static_cast<int32_t>(c);
    return d;
  });
}
