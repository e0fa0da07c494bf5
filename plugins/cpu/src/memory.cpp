// CPU plugin: memory and transfer family (docs/spec.md §1). Buffers are 64-byte aligned host memory
// (anonymous mappings from 64 MiB up, heap below).
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include <sys/mman.h>

#include <ferrum/common/op_rules.hpp>

#include "cpu_plugin.hpp"
#include "kernels/elementwise.hpp"

namespace ferrum::cpu {
namespace {

using plugin::rules::check_dtype_match;
using plugin::rules::check_len;

using plugin::run_op;

constexpr uint64_t kAlign = 64;

// Buffers of kMapBytes or more are anonymous mappings: the kernel hands out zeroed pages on first
// touch, so a large buffer asked zeroed (a quantised KV layer of gigabytes) costs neither a memset
// nor resident memory until it is written. Smaller ones come from the heap (and its sanitizers).
constexpr uint64_t kMapBytes = uint64_t{64} << 20;

// The bytes behind a buffer of n elements, rounded up to kAlign (n bounded by make_buffer).
uint64_t alloc_bytes(int32_t dtype, uint64_t n) {
  return (n * dtype_size(dtype) + kAlign - 1) / kAlign * kAlign;  // arith-ok: n * es <= 2^64 - kAlign (make_buffer)
}

void* host_alloc(uint64_t bytes, bool zero) {
  if (bytes >= kMapBytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : p;  // page-aligned, already zero
  }
  void* p = std::aligned_alloc(kAlign, bytes);
  if (p && zero) std::memset(p, 0, bytes);
  return p;
}

void host_free(void* p, uint64_t bytes) {
  if (!p) return;
  if (bytes >= kMapBytes)
    munmap(p, bytes);
  else
    std::free(p);
}

bool valid_dtype(int32_t d) { return d >= FERRUM_DTYPE_F32 && d <= FERRUM_DTYPE_F8_E4M3; }



ferrum_status alloc(ferrum_context* ctx, const ferrum_alloc_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_alloc_args& a, bool dry) -> Status {
    if (dry) return ok_status();
    return make_buffer(c.activation_dtype, a.len, false, a.buffer);
  });
}

ferrum_status alloc_typed(ferrum_context* ctx, const ferrum_alloc_typed_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_alloc_typed_args& a, bool dry) -> Status {
    if (!valid_dtype(a.dtype))
      return invalid(plugin::format("alloc_typed: argument 'dtype': expected a dtype 1..8, given %d", a.dtype));
    if (dry) return ok_status();
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
    if (!valid_dtype(a.dtype))
      return invalid(plugin::format("from_slice_typed: argument 'dtype': expected a dtype 1..8, given %d", a.dtype));
    if (dry) return ok_status();
    ferrum_buffer* b = nullptr;
    Status s = make_buffer(a.dtype, a.data_len, false, &b);
    if (!s.ok()) return s;
    if (b->bytes()) std::memcpy(b->data, a.data, b->bytes());
    *a.buffer = b;
    return ok_status();
  });
}

ferrum_status from_weight_bytes(ferrum_context* ctx, const ferrum_from_weight_bytes_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_from_weight_bytes_args& a, bool dry) -> Status {
    if (!is_float_dtype(a.src_dtype))
      return invalid(plugin::format("from_weight_bytes: argument 'src_dtype': expected f32, f16 or bf16, given %s",
                                    dtype_name(a.src_dtype)));
    if (a.dst_dtype != 0 && !is_float_dtype(a.dst_dtype))
      return invalid(plugin::format("from_weight_bytes: argument 'dst_dtype': expected 0, f32, f16 or bf16, given %d",
                                    a.dst_dtype));
    const uint64_t es = dtype_size(a.src_dtype);
    if (a.raw_len % es)
      return invalid(plugin::format("from_weight_bytes: argument 'raw_len': expected a multiple of %llu (%s), given %llu",
                                    (unsigned long long)es, dtype_name(a.src_dtype), (unsigned long long)a.raw_len));
    if (dry) return ok_status();
    ferrum_buffer* b = nullptr;
    Status s = make_buffer(a.dst_dtype ? a.dst_dtype : c.activation_dtype, a.raw_len / es, false, &b);
    if (!s.ok()) return s;
    s = convert_elements(a.raw, a.src_dtype, b->data, b->dtype, b->count);
    *a.buffer = b;
    return s;
  });
}

ferrum_status write_typed(ferrum_context* ctx, const ferrum_write_typed_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_write_typed_args& a, bool dry) -> Status {
    Status s = check_dtype_match("write_typed", a.dtype, "dst", a.dst);
    if (s.ok()) s = check_len("write_typed", "data_len", a.data_len, "dst", a.dst);
    if (!s.ok() || dry) return s;
    if (a.data_len) std::memcpy(a.dst->data, a.data, a.data_len * dtype_size(a.dtype));  // arith-ok: <= dst's bytes
    return ok_status();
  });
}

ferrum_status read_typed(ferrum_context* ctx, const ferrum_read_typed_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_read_typed_args& a, bool dry) -> Status {
    Status s = check_dtype_match("read_typed", a.dtype, "src", a.src);
    if (s.ok()) s = check_len("read_typed", "len", a.len, "src", a.src);
    if (!s.ok() || dry) return s;
    if (a.len) std::memcpy(a.data, a.src->data, a.len * dtype_size(a.dtype));  // arith-ok: <= src's bytes
    return ok_status();
  });
}

ferrum_status to_vec(ferrum_context* ctx, const ferrum_to_vec_args* a) {
  return run_op(ctx, a, [](ferrum_context&, const ferrum_to_vec_args& a, bool dry) -> Status {
    Status s = check_len("to_vec", "len", a.len, "buf", a.buf);
    if (!s.ok() || dry) return s;
    dispatch_any(a.buf->dtype, 0, [&](auto tag) {
      using T = decltype(tag);
      const T* src = plugin::data_of<const T>(a.buf);
      for (uint64_t i = 0; i < a.len; ++i) {
        if constexpr (std::is_integral_v<T>)
          a.out[i] = static_cast<float>(src[i]);
        else
          a.out[i] = to_float(src[i]);
      }
      return 0;
    });
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
    if (Status r = plugin::rules::check_copy_slice(a); !r.ok()) return r;
    if (dry) return ok_status();
    // arith-ok: offsets inside their buffers (check_copy_slice's range_ok)
    const char* s = static_cast<const char*>(a.src->data) + a.src_offset * dtype_size(sd);
    char* d = static_cast<char*>(a.dst->data) + a.dst_offset * dtype_size(dd);  // arith-ok: as above
    return convert_elements(s, sd, d, dd, a.len);
  });
}

ferrum_status buffer_info(ferrum_context*, const ferrum_buffer_info_args* a) { return plugin::rules::buffer_info(a); }

ferrum_status buffer_release(ferrum_context*, const ferrum_buffer_release_args* a) {
  return plugin::guard(nullptr, "buffer_release", [&]() -> Status {
    if (!a || a->struct_size < FERRUM_BUFFER_RELEASE_ARGS_SIZE_V1_0)
      return invalid("buffer_release: args NULL or struct_size too small");
    ferrum_buffer* b = a->buf;
    if (!b) return ok_status();  // NULL-safe
    // The table answers without dereferencing b; only the one successful release frees the data.
    void* data = nullptr;
    uint64_t bytes = 0;
    if (plugin::live(b)) data = b->data, bytes = alloc_bytes(b->dtype, b->count);
    if (!plugin::release_buffer_handle(b)) return plugin::released_or_foreign("buffer_release", "buf");
    host_free(data, bytes);
    return ok_status();
  });
}

}  // namespace

Status make_buffer(int32_t dtype, uint64_t n, bool zero, ferrum_buffer** out) {
  const uint64_t es = dtype_size(dtype);
  if (n > (UINT64_MAX - kAlign) / es)
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
  if (n == 0) return ok_status();
  if (sd == dd) {
    std::memmove(dst, src, n * dtype_size(sd));  // arith-ok: n elements of an existing buffer
    return ok_status();
  }
  std::vector<unsigned char> aligned;
  if (reinterpret_cast<uintptr_t>(src) % dtype_size(sd)) {  // unaligned raw weight bytes
    // arith-ok: n elements of an existing buffer (its byte size fits)
    aligned.assign(static_cast<const unsigned char*>(src), static_cast<const unsigned char*>(src) + n * dtype_size(sd));
    src = aligned.data();
  }
  const bool done = dispatch_float(sd, false, [&](auto s) {
    using S = decltype(s);
    return dispatch_float(dd, false, [&](auto d) {
      using D = decltype(d);
      convert<S, D>(static_cast<const S*>(src), static_cast<D*>(dst), n);
      return true;
    });
  });
  return done ? ok_status() : invalid(plugin::format("convert: %s -> %s is not a float conversion", dtype_name(sd), dtype_name(dd)));
}

const ferrum_memory_table kMemoryTable = {
    sizeof(ferrum_memory_table), alloc, alloc_typed, from_slice, from_slice_typed, from_weight_bytes,
    write_typed, read_typed, to_vec,
    write_f32_to_activation,
    zero_buffer, copy_slice, buffer_info, buffer_release,
};

}  // namespace ferrum::cpu
