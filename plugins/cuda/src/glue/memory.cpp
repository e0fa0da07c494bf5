// CUDA plugin: memory and transfer family (docs/spec.md §1). Buffers are device memory of the
// context's device (cudaMalloc through the device layer), remembering their ordinal.
//
// Conversions: host f32 -> activation dtype (from_slice, write_f32_to_activation) and
// from_weight_bytes convert on the host with ferrum's common converters (exact widening,
// round-to-nearest-even narrowing, no saturation: docs/spec.md §1), then upload; that keeps the
// asynchronous write_f32_to_activation free of temporary device memory. Device-side
// conversions (copy_slice between float dtypes, to_vec of F16/BF16) use convert_async.
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include <ferrum/common/event_rules.hpp>
#include <ferrum/common/op_rules.hpp>

#include "cuda_plugin.hpp"
#include "memory.hpp"

namespace ferrum::cuda::glue {
namespace {

// Converts n elements of float dtype `sd` at `src` (any alignment) into `dd` (exact widening,
// RNE narrowing, F16 <-> BF16 through the exact f32 value). Equal dtypes copy bits.
Status host_convert(const void* src, int32_t sd, int32_t dd, uint64_t n, std::vector<unsigned char>& out) {
  out.resize(n * dtype_size(dd));
  if (n == 0) return ok_status();
  if (sd == dd) {
    std::memcpy(out.data(), src, n * dtype_size(sd));
    return ok_status();
  }
  const auto* in = static_cast<const unsigned char*>(src);
  const bool done = ferrum::dispatch_float(sd, false, [&](auto s) {
    using S = decltype(s);
    return ferrum::dispatch_float(dd, false, [&](auto d) {
      using D = decltype(d);
      for (uint64_t i = 0; i < n; ++i) {
        S v;
        std::memcpy(&v, in + i * sizeof(S), sizeof(S));  // raw weight bytes may be unaligned
        const D r = ferrum::from_float<D>(ferrum::to_float(v));
        std::memcpy(out.data() + i * sizeof(D), &r, sizeof(D));
      }
      return true;
    });
  });
  return done ? ok_status()
              : invalid(plugin::format("convert: %s -> %s is not a float conversion", dtype_name(sd), dtype_name(dd)));
}

// New buffer of `dtype` holding `bytes` (already in that dtype) from host memory; complete on
// return (S ops). The buffer is released again on a failure.
Status upload_new(ferrum_context& c, int32_t dtype, uint64_t n, const void* host, ferrum_buffer** out) {
  ferrum_buffer* b = nullptr;
  Status s = make_buffer(c, dtype, n, false, &b);
  if (!s.ok()) return s;
  DeviceGuard g;
  s = enter_device(g, c);
  if (s.ok() && n) s = from_device(h2d_async(*c.dev, b->data, host, b->bytes()));
  if (s.ok()) s = from_device(sync(*c.dev));
  if (!s.ok()) {
    (void)free_buffer(b);
    return s;
  }
  *out = b;
  return ok_status();
}

ferrum_status alloc(ferrum_context* ctx, const ferrum_alloc_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_alloc_args& a, bool dry) -> Status {
    if (dry) return ok_status();
    return make_buffer(c, c.activation_dtype, a.len, false, a.buffer);
  });
}

ferrum_status alloc_typed(ferrum_context* ctx, const ferrum_alloc_typed_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_alloc_typed_args& a, bool dry) -> Status {
    Status s = check_storable_dtype("alloc_typed", a.dtype);
    if (!s.ok() || dry) return s;
    return make_buffer(c, a.dtype, a.n, true, a.buffer);
  });
}

ferrum_status from_slice(ferrum_context* ctx, const ferrum_from_slice_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_from_slice_args& a, bool dry) -> Status {
    if (dry) return ok_status();
    std::vector<unsigned char> staged;
    Status s = host_convert(a.data, FERRUM_DTYPE_F32, c.activation_dtype, a.data_len, staged);
    if (!s.ok()) return s;
    return upload_new(c, c.activation_dtype, a.data_len, staged.data(), a.buffer);
  });
}

ferrum_status from_slice_typed(ferrum_context* ctx, const ferrum_from_slice_typed_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_from_slice_typed_args& a, bool dry) -> Status {
    Status s = check_storable_dtype("from_slice_typed", a.dtype);
    if (!s.ok() || dry) return s;
    return upload_new(c, a.dtype, a.data_len, a.data, a.buffer);
  });
}

ferrum_status from_weight_bytes(ferrum_context* ctx, const ferrum_from_weight_bytes_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_from_weight_bytes_args& a, bool dry) -> Status {
    int32_t dd = 0;
    uint64_t n = 0;
    Status s = check_from_weight_bytes(a, c.activation_dtype, dd, n);
    if (!s.ok() || dry) return s;
    std::vector<unsigned char> staged;
    s = host_convert(a.raw, a.src_dtype, dd, n, staged);
    if (!s.ok()) return s;
    return upload_new(c, dd, n, staged.data(), a.buffer);
  });
}

ferrum_status write_typed(ferrum_context* ctx, const ferrum_write_typed_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_write_typed_args& a, bool dry) -> Status {
    Status s = check_devices("write_typed", c, {{"dst", a.dst}});
    if (s.ok()) s = check_typed_transfer("write_typed", a.dtype, "data_len", a.data_len, "dst", a.dst);
    if (!s.ok() || dry || a.data_len == 0) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    return from_device(h2d_async(*c.dev, a.dst->data, a.data, a.data_len * dtype_size(a.dtype)));
  });
}

ferrum_status read_typed(ferrum_context* ctx, const ferrum_read_typed_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_read_typed_args& a, bool dry) -> Status {
    Status s = check_devices("read_typed", c, {{"src", a.src}});
    if (s.ok()) s = check_typed_transfer("read_typed", a.dtype, "len", a.len, "src", a.src);
    if (!s.ok() || dry) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    // src_offset (ABI 1.1; 0 for a 1.0 caller): src_offset + len <= count (generated checks).
    const uint64_t es = dtype_size(a.dtype);
    const auto* from = static_cast<const unsigned char*>(a.src->data) + ferrum_read_typed_args_src_offset(&a) * es;  // arith-ok: <= src's bytes
    return from_device(d2h(*c.dev, a.data, from, a.len * es));  // syncs; arith-ok: <= src's bytes
  });
}

ferrum_status to_vec(ferrum_context* ctx, const ferrum_to_vec_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_to_vec_args& a, bool dry) -> Status {
    Status s = check_devices("to_vec", c, {{"buf", a.buf}});
    if (s.ok()) s = check_len("to_vec", "len", a.len, "buf", a.buf);
    if (!s.ok() || dry) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    const int32_t dt = a.buf->dtype;
    if (dt == FERRUM_DTYPE_F32) return from_device(d2h(*c.dev, a.out, a.buf->data, a.len * 4));
    // Every other dtype: read the raw elements (half the bytes of a widened copy for F16/BF16),
    // convert exactly on the host — no device scratch, no allocation per readback.
    std::vector<unsigned char> raw(a.len * dtype_size(dt));
    s = from_device(d2h(*c.dev, raw.data(), a.buf->data, raw.size()));
    if (s.ok()) ferrum::widen_to_f32(raw.data(), dt, a.out, a.len);
    return s;
  });
}

ferrum_status write_f32_to_activation(ferrum_context* ctx, const ferrum_write_f32_to_activation_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_write_f32_to_activation_args& a, bool dry) -> Status {
    if (a.data_len == 0) return ok_status();
    if (!a.dst) return invalid("write_f32_to_activation: argument 'dst': expected a buffer, given NULL");
    Status s = check_devices("write_f32_to_activation", c, {{"dst", a.dst}});
    if (s.ok()) s = check_len("write_f32_to_activation", "data_len", a.data_len, "dst", a.dst);
    if (!s.ok() || dry) return s;
    std::vector<unsigned char> staged;
    s = host_convert(a.data, FERRUM_DTYPE_F32, a.dst->dtype, a.data_len, staged);
    if (!s.ok()) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    return from_device(h2d_async(*c.dev, a.dst->data, staged.data(), staged.size()));  // staged on return
  });
}

ferrum_status zero_buffer(ferrum_context* ctx, const ferrum_zero_buffer_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_zero_buffer_args& a, bool dry) -> Status {
    if (a.len == 0) return ok_status();
    if (!a.buf) return invalid("zero_buffer: argument 'buf': expected a buffer, given NULL");
    Status s = check_devices("zero_buffer", c, {{"buf", a.buf}});
    if (s.ok()) s = check_len("zero_buffer", "len", a.len, "buf", a.buf);
    if (!s.ok() || dry) return s;
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    return from_device(memset_async(*c.dev, a.buf->data, a.len * dtype_size(a.buf->dtype)));
  });
}

ferrum_status copy_slice(ferrum_context* ctx, const ferrum_copy_slice_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_copy_slice_args& a, bool dry) -> Status {
    if (a.len == 0) return ok_status();
    Status s = check_devices("copy_slice", c, {{"src", a.src}, {"dst", a.dst}});
    if (!s.ok()) return s;
    const int32_t sd = a.src ? a.src->dtype : 0, dd = a.dst ? a.dst->dtype : 0;
    if (Status r = check_copy_slice(a); !r.ok()) return r;
    if (dry) return ok_status();
    DeviceGuard g;
    s = enter_device(g, c);
    if (!s.ok()) return s;
    const char* src = static_cast<const char*>(a.src->data) + a.src_offset * dtype_size(sd);
    char* dst = static_cast<char*>(a.dst->data) + a.dst_offset * dtype_size(dd);
    if (sd == dd) return from_device(d2d_async(*c.dev, dst, src, a.len * dtype_size(sd)));
    return from_device(convert_async(src, sd, dst, dd, a.len, c.dev->stream));
  });
}

ferrum_status buffer_info(ferrum_context*, const ferrum_buffer_info_args* a) { return plugin::rules::buffer_info(a); }

ferrum_status buffer_release(ferrum_context*, const ferrum_buffer_release_args* a) {
  return run_release("buffer_release", a, FERRUM_BUFFER_RELEASE_ARGS_SIZE_V1_0, [](const ferrum_buffer_release_args& a) {
    ferrum_buffer* b = a.buf;
    if (!b) return ok_status();  // NULL-safe
    if (!plugin::live(b)) return plugin::released_or_foreign("buffer_release", "buf");
    return free_buffer(b);
  });
}

}  // namespace

Status check_devices(const char* op, const ferrum_context& c, std::initializer_list<NamedBuffer> bufs) {
  for (const NamedBuffer& nb : bufs)
    if (nb.buf && static_cast<uint64_t>(nb.buf->device) != c.device)
      return invalid(plugin::format("%s: argument '%s': expected a buffer of device %llu (the context's), given one of device %d",
                                    op, nb.field, (unsigned long long)c.device, nb.buf->device));
  return ok_status();
}

Status make_buffer(ferrum_context& c, int32_t dtype, uint64_t n, bool zero, ferrum_buffer** out) {
  const uint64_t es = dtype_size(dtype);
  if (es == 0) return invalid(plugin::format("alloc: dtype %d is not a dtype", dtype));
  if (n > UINT64_MAX / es)
    return {FERRUM_STATUS_OUT_OF_MEMORY, plugin::format("alloc: %llu elements overflow the address space", (unsigned long long)n)};
  ferrum_buffer* b = plugin::new_buffer_handle();
  if (!b) return {FERRUM_STATUS_OUT_OF_MEMORY, "alloc: out of host memory"};
  b->dtype = dtype;
  b->count = n;
  b->device = static_cast<int>(c.device);
  Status s = from_device(cuda::alloc(b->device, n * es, &b->data));
  if (s.ok() && zero && n) {
    DeviceGuard g;
    s = enter_device(g, c);
    if (s.ok()) s = from_device(memset_async(*c.dev, b->data, n * es));
    if (s.ok()) s = from_device(sync(*c.dev));  // zero when the call returns (S)
  }
  if (!s.ok()) {
    (void)cuda::free(b->device, b->data);
    (void)plugin::release_buffer_handle(b);
    return s;
  }
  *out = b;
  return ok_status();
}

Status free_buffer(ferrum_buffer* b) {
  // Only the one successful release of the handle frees the device memory (the table answers
  // without dereferencing b, so a concurrent or repeated release is refused, never a double free).
  const int device = b->device;
  void* data = b->data;
  const bool external = b->external;
  const ferrum_release_fn release_fn = b->release_fn;
  void* user_data = b->release_user_data;
  if (!plugin::release_buffer_handle(b)) return plugin::released_or_foreign("buffer_release", "buf");
  if (external) {  // the host's memory (wrap_external): not ours to free; tell the host once
    plugin::run_external_release(release_fn, user_data);
    return ok_status();
  }
  return from_device(cuda::free(device, data));
}

const ferrum_memory_table kMemoryTable = {sizeof(ferrum_memory_table), FERRUM_MEMORY_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cuda::glue
