// CPU plugin: memory and transfer family (docs/spec.md §1). Buffers are host memory of the device
// layer (src/memory.hpp: 64-byte aligned, anonymous mappings from 64 MiB up, heap below).
#include <cstring>
#include <new>

#include "cpu_plugin.hpp"
#include "memory.hpp"

namespace ferrum::cpu {
namespace {

ferrum_status alloc(ferrum_context* ctx, const ferrum_alloc_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_alloc_args& a, bool dry) -> Status {
    if (dry) return ok_status();
    return make_buffer(c.activation_dtype, a.len, false, a.buffer);
  });
}

ferrum_status alloc_typed(ferrum_context* ctx, const ferrum_alloc_typed_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_alloc_typed_args& a, bool dry) -> Status {
    Status s = check_storable_dtype("alloc_typed", a.dtype);
    if (!s.ok() || dry) return s;
    return make_buffer(a.dtype, a.n, true, a.buffer);
  });
}

ferrum_status from_slice(ferrum_context* ctx, const ferrum_from_slice_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_from_slice_args& a, bool dry) -> Status {
    if (dry) return ok_status();
    ferrum_buffer* b = nullptr;
    Status s = make_buffer(c.activation_dtype, a.data_len, false, &b);
    if (!s.ok()) return s;
    s = convert_elements(a.data, FERRUM_DTYPE_F32, b->data, b->dtype, a.data_len);
    *a.buffer = b;
    return s;
  });
}

ferrum_status from_slice_typed(ferrum_context* ctx, const ferrum_from_slice_typed_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_from_slice_typed_args& a, bool dry) -> Status {
    Status s = check_storable_dtype("from_slice_typed", a.dtype);
    if (!s.ok() || dry) return s;
    ferrum_buffer* b = nullptr;
    s = make_buffer(a.dtype, a.data_len, false, &b);
    if (!s.ok()) return s;
    if (b->bytes()) std::memcpy(b->data, a.data, b->bytes());
    *a.buffer = b;
    return ok_status();
  });
}

ferrum_status from_weight_bytes(ferrum_context* ctx, const ferrum_from_weight_bytes_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_from_weight_bytes_args& a, bool dry) -> Status {
    int32_t dd = 0;
    uint64_t n = 0;
    Status s = check_from_weight_bytes(a, c.activation_dtype, dd, n);
    if (!s.ok() || dry) return s;
    ferrum_buffer* b = nullptr;
    s = make_buffer(dd, n, false, &b);
    if (!s.ok()) return s;
    s = convert_elements(a.raw, a.src_dtype, b->data, b->dtype, b->count);
    *a.buffer = b;
    return s;
  });
}

ferrum_status write_typed(ferrum_context* ctx, const ferrum_write_typed_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_write_typed_args& a, bool dry) -> Status {
    Status s = check_typed_transfer("write_typed", a.dtype, "data_len", a.data_len, "dst", a.dst);
    if (!s.ok() || dry) return s;
    if (a.data_len) std::memcpy(a.dst->data, a.data, a.data_len * dtype_size(a.dtype));  // arith-ok: <= dst's bytes
    return ok_status();
  });
}

ferrum_status read_typed(ferrum_context* ctx, const ferrum_read_typed_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_read_typed_args& a, bool dry) -> Status {
    Status s = check_typed_transfer("read_typed", a.dtype, "len", a.len, "src", a.src);
    if (!s.ok() || dry) return s;
    // src_offset (ABI 1.1; 0 for a 1.0 caller): src_offset + len <= count (generated checks).
    const uint64_t es = dtype_size(a.dtype);
    const auto* from = static_cast<const unsigned char*>(a.src->data) + ferrum_read_typed_args_src_offset(&a) * es;  // arith-ok: <= src's bytes
    if (a.len) std::memcpy(a.data, from, a.len * es);  // arith-ok: <= src's bytes
    return ok_status();
  });
}

ferrum_status to_vec(ferrum_context* ctx, const ferrum_to_vec_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_to_vec_args& a, bool dry) -> Status {
    Status s = check_len("to_vec", "len", a.len, "buf", a.buf);
    if (!s.ok() || dry) return s;
    widen_to_f32(a.buf->data, a.buf->dtype, a.out, a.len);
    return ok_status();
  });
}

ferrum_status write_f32_to_activation(ferrum_context* ctx, const ferrum_write_f32_to_activation_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_write_f32_to_activation_args& a, bool dry) -> Status {
    if (a.data_len == 0) return ok_status();
    Status s = check_len("write_f32_to_activation", "data_len", a.data_len, "dst", a.dst);
    if (!s.ok() || dry) return s;
    return convert_elements(a.data, FERRUM_DTYPE_F32, a.dst->data, a.dst->dtype, a.data_len);
  });
}

ferrum_status zero_buffer(ferrum_context* ctx, const ferrum_zero_buffer_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_zero_buffer_args& a, bool dry) -> Status {
    if (a.len == 0) return ok_status();
    Status s = check_len("zero_buffer", "len", a.len, "buf", a.buf);
    if (!s.ok() || dry) return s;
    std::memset(a.buf->data, 0, a.len * dtype_size(a.buf->dtype));  // arith-ok: len <= count (check_len)
    return ok_status();
  });
}

ferrum_status copy_slice(ferrum_context* ctx, const ferrum_copy_slice_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_copy_slice_args& a, bool dry) -> Status {
    if (a.len == 0) return ok_status();
    const int32_t sd = a.src ? a.src->dtype : 0, dd = a.dst ? a.dst->dtype : 0;
    if (Status r = check_copy_slice(a); !r.ok()) return r;
    if (dry) return ok_status();
    // arith-ok: offsets inside their buffers (check_copy_slice's range_ok)
    const char* s = static_cast<const char*>(a.src->data) + a.src_offset * dtype_size(sd);
    char* d = static_cast<char*>(a.dst->data) + a.dst_offset * dtype_size(dd);  // arith-ok: as above
    return convert_elements(s, sd, d, dd, a.len);
  });
}

ferrum_status buffer_info(ferrum_context*, const ferrum_buffer_info_args* a) { return plugin::rules::buffer_info(a); }

ferrum_status buffer_release(ferrum_context*, const ferrum_buffer_release_args* a) {
  return run_release("buffer_release", a, FERRUM_BUFFER_RELEASE_ARGS_SIZE_V1_0, [](const ferrum_buffer_release_args& a) {
    ferrum_buffer* b = a.buf;
    if (!b) return ok_status();  // NULL-safe
    // The table answers without dereferencing b; only the one successful release frees the data.
    void* data = nullptr;
    uint64_t bytes = 0;
    bool external = false;
    ferrum_release_fn release_fn = nullptr;
    void* user_data = nullptr;
    if (plugin::live(b)) {
      data = b->data, bytes = alloc_bytes(b->dtype, b->count);
      external = b->external, release_fn = b->release_fn, user_data = b->release_user_data;
    }
    if (!plugin::release_buffer_handle(b)) return plugin::released_or_foreign("buffer_release", "buf");
    if (external)  // the host's memory (wrap_external): not ours to free; tell the host once
      plugin::run_external_release(release_fn, user_data);
    else
      host_free(data, bytes);
    return ok_status();
  });
}

// wrap_external (ABI 1.1, docs/spec.md §2.2): a buffer over host memory the caller owns.
ferrum_status wrap_external(ferrum_context* ctx, const ferrum_wrap_external_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_wrap_external_args& a, bool dry) -> Status {
    uint64_t bytes = 0;
    Status s = plugin::check_wrap_external(a, 1, c.device, bytes);
    if (!s.ok() || dry) return s;
    return plugin::make_external_buffer(a, 0);
  });
}

ferrum_status buffer_device_address(ferrum_context*, const ferrum_buffer_device_address_args* a) {
  return plugin::buffer_device_address(a);
}

}  // namespace

Status make_buffer(int32_t dtype, uint64_t n, bool zero, ferrum_buffer** out) {
  const uint64_t es = dtype_size(dtype);
  if (n > max_elements(dtype))
    return invalid(plugin::format("alloc: argument 'len': expected an element count whose byte size (%llu bytes each) "
                                  "fits in 64 bits, given %llu (the size wraps past 2^64)",
                                  (unsigned long long)es, (unsigned long long)n));
  const uint64_t bytes = alloc_bytes(dtype, n);
  void* p = nullptr;
  if (bytes) {
    p = host_alloc(bytes, zero);
    if (!p)
      return {FERRUM_STATUS_OUT_OF_MEMORY, plugin::format("alloc: cannot allocate %llu bytes of host memory", (unsigned long long)bytes)};
  }
  ferrum_buffer* b = plugin::new_buffer_handle();
  if (!b) {
    host_free(p, bytes);
    return {FERRUM_STATUS_OUT_OF_MEMORY, "alloc: out of host memory"};
  }
  b->dtype = dtype;
  b->count = n;
  b->data = p;
  *out = b;
  return ok_status();
}

Status convert_elements(const void* src, int32_t sd, void* dst, int32_t dd, uint64_t n) {
  if (convert(src, sd, dst, dd, n)) return ok_status();
  return invalid(plugin::format("convert: %s -> %s is not a float conversion", dtype_name(sd), dtype_name(dd)));
}

const ferrum_memory_table kMemoryTable = {sizeof(ferrum_memory_table), FERRUM_MEMORY_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cpu
