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
  buffer_cls.def("_view", [](nb::handle self, const std::vector<size_t>& shape, int32_t device_type,
                             bool as_uint) {
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
  }, nb::arg("shape"), nb::arg("device_type"), nb::arg("as_uint"));
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
           nb::arg("device").none(), nb::arg("dtype"));

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
