// Context: lifetime, info, the support query, adoption of returned handles.
#include <string>
#include <utility>

#include <ferrum/context.hpp>
#include <ferrum/loader.hpp>

#include "invoke.hpp"

namespace ferrum {

Context::Context(ferrum_context* ctx, std::shared_ptr<PluginLibrary> library, uint64_t device,
                 Dtype requested)
    : ctx_(ctx),
      library_(std::move(library)),
      api_(api_of(*library_)),
      buffer_info_(common::find_slot(api_, FERRUM_OP_BUFFER_INFO)),
      activation_(requested),
      device_(device) {
  if (common::find_slot(api_, FERRUM_OP_CONTEXT_INFO)) {
    const ContextInfo ci = info();  // on failure the destructor of *this is not run:
    activation_ = ci.activation_dtype;  // Backend::create_context owns ctx until we return
    device_ = ci.device_ordinal;
  }
}

Context::Context(Context&& o) noexcept
    : ctx_(std::exchange(o.ctx_, nullptr)),
      library_(std::move(o.library_)),
      api_(std::exchange(o.api_, nullptr)),
      buffer_info_(std::exchange(o.buffer_info_, nullptr)),
      activation_(std::exchange(o.activation_, Dtype::invalid)),
      device_(std::exchange(o.device_, 0)) {}

Context& Context::operator=(Context&& o) noexcept {
  if (this != &o) {
    reset();
    ctx_ = std::exchange(o.ctx_, nullptr);
    library_ = std::move(o.library_);
    api_ = std::exchange(o.api_, nullptr);
    buffer_info_ = std::exchange(o.buffer_info_, nullptr);
    activation_ = std::exchange(o.activation_, Dtype::invalid);
    device_ = std::exchange(o.device_, 0);
  }
  return *this;
}

Context::~Context() { reset(); }

ferrum_context* Context::release() noexcept {
  library_.reset();
  api_ = nullptr;
  buffer_info_ = nullptr;
  return std::exchange(ctx_, nullptr);
}

void Context::reset() noexcept {
  if (ferrum_context* ctx = std::exchange(ctx_, nullptr)) {
    try {
      const ferrum_op_fn fn = common::find_slot(api_, FERRUM_OP_CONTEXT_DESTROY);
      ferrum_context_destroy_args a{};
      a.struct_size = sizeof a;
      a.context = ctx;
      const ferrum_status st = fn ? fn(nullptr, &a) : FERRUM_STATUS_UNSUPPORTED;
      if (st != FERRUM_STATUS_OK)
        detail::logger()->warn("ferrum: context_destroy failed on plugin {} with status {} ({})",
                               api_->plugin_name ? api_->plugin_name : "?", st,
                               to_string(error_code_of(st)));
    } catch (...) {  // logging failed: nothing more to do in a destructor
    }
  }
  library_.reset();
  api_ = nullptr;
  buffer_info_ = nullptr;
}

ContextInfo Context::info() const {
  const detail::CallSite site{library_.get(), api_, ctx_};
  if (!ctx_)
    detail::check(FERRUM_STATUS_INVALID_ARGUMENT, "context_info", site,
                  "the Context is empty (moved from or released)");
  const ferrum_op_fn fn = common::find_slot(api_, FERRUM_OP_CONTEXT_INFO);
  if (!fn)
    detail::check(FERRUM_STATUS_UNSUPPORTED, "context_info", site,
                  "the plugin does not implement this op (NULL slot)");
  ContextInfo ci;
  int32_t dt = 0;
  ferrum_context_info_args a{};
  a.struct_size = sizeof a;
  a.device_ordinal = &ci.device_ordinal;
  a.activation_dtype = &dt;
  a.batched_slots = &ci.batched_slots;
  a.batched_items = &ci.batched_items;
  detail::check(fn(ctx_, &a), "context_info", site);
  ci.activation_dtype = static_cast<Dtype>(dt);
  return ci;
}

SupportAnswer Context::query_support(Op op, const void* args) const {
  const int32_t id = static_cast<int32_t>(op);
  const bool slot = common::find_slot(api_, id) != nullptr;
  const bool fallback = !slot && id >= 1 && id <= kOpCount && detail::kFacadeDefault[id];
  SupportAnswer ans;
  // The forward-compatibility gate, as an answer: an op or a non-default field of a minor newer
  // than the plugin's is unsupported (the call would be refused), never asked of a plugin that
  // would ignore the field.
  if (api_ && api_->abi_minor < FERRUM_ABI_VERSION_MINOR && !fallback) {
    uint32_t since = id >= 1 && id <= kOpCount ? common::kOps[id - 1].since_minor : 0;
    const char* field = since > api_->abi_minor ? nullptr : common::newer_field(id, args, api_->abi_minor, since);
    if (since > api_->abi_minor || field) {
      ans.reason = std::string(detail::op_name_of(id)) + ": " + detail::newer_reason(api_, field, since);
      return ans;
    }
  }
  if (!api_ || !api_->query_support || fallback) {
    ans.supported = slot || fallback;
    if (!ans.supported)
      ans.reason = std::string(detail::op_name_of(id)) + ": the plugin does not implement this op";
    return ans;
  }
  char reason[1024] = {0};
  const ferrum_status st = api_->query_support(ctx_, id, args, reason, sizeof reason);
  if (st == FERRUM_STATUS_OK) {
    ans.supported = true;
    return ans;
  }
  if (st == FERRUM_STATUS_UNSUPPORTED || st == FERRUM_STATUS_INVALID_ARGUMENT) {
    ans.code = error_code_of(st);
    ans.reason = reason;
    return ans;
  }
  detail::check(st, "query_support", {library_.get(), api_, ctx_}, reason[0] ? reason : nullptr);
  return ans;
}

void Context::fail_span_sizes(Op op, const char* first, const char* second) const {
  const std::string why = std::string("arguments '") + first + "' and '" + second +
                          "': expected spans of the same size (they fill one length field)";
  detail::throw_status(FERRUM_STATUS_INVALID_ARGUMENT, op_name(op), {library_.get(), api_, ctx_},
                       why.c_str());
}

void Context::check_len(Op op, const char* arg, uint64_t len, const Buffer& buf) const {
  if (len <= buf.count()) return;
  const std::string why = std::string("argument '") + arg + "': expected at most " +
                          std::to_string(buf.count()) + " (the buffer's element count), given " +
                          std::to_string(len);
  detail::throw_status(FERRUM_STATUS_INVALID_ARGUMENT, op_name(op), {library_.get(), api_, ctx_},
                       why.c_str());
}

void Context::fail_host_alloc(Op op, const char* arg, uint64_t n, uint64_t elem_size) const {
  const std::string why = std::string("argument '") + arg + "': " + std::to_string(n) +
                          " elements of " + std::to_string(elem_size) +
                          " bytes do not fit in host memory (the result could not be allocated)";
  detail::throw_status(FERRUM_STATUS_OUT_OF_MEMORY, op_name(op), {library_.get(), api_, ctx_},
                       why.c_str());
}

Buffer Context::adopt(ferrum_buffer* handle) const {
  if (!handle)
    detail::check(FERRUM_STATUS_INTERNAL, "buffer", {library_.get(), api_, ctx_},
                  "the plugin returned OK without a buffer");
  return Buffer(handle, library_, device_);
}

Timer Context::adopt(ferrum_timer* handle) const {
  if (!handle)
    detail::check(FERRUM_STATUS_INTERNAL, "make_timer", {library_.get(), api_, ctx_},
                  "the plugin returned OK without a timer");
  return Timer(handle, library_);
}

Event Context::adopt(ferrum_event* handle) const {
  if (!handle)
    detail::check(FERRUM_STATUS_INTERNAL, "event_create", {library_.get(), api_, ctx_},
                  "the plugin returned OK without an event");
  return Event(handle, library_);
}

QWeight Context::adopt(ferrum_qweight* handle) const {
  if (!handle)
    detail::check(FERRUM_STATUS_INTERNAL, "qweight", {library_.get(), api_, ctx_},
                  "the plugin returned OK without a quantised weight");
  return QWeight(handle, library_);
}

KvCacheQuant Context::adopt(ferrum_kv_cache_quant& c) const {
  KvCacheQuant r;
  // Adopt every handle first (so all are released if one is bad), then check them.
  auto own = [&](ferrum_buffer*& h, Buffer& into) {
    if (h) into = Buffer(std::exchange(h, nullptr), library_, device_);
  };
  own(c.k, r.k);
  own(c.v, r.v);
  own(c.k_scales, r.k_scales);
  own(c.v_scales, r.v_scales);
  own(c.block_table, r.block_table);
  own(c.context_lens, r.context_lens);
  if (!r.k || !r.v || !r.k_scales || !r.v_scales || !r.block_table || !r.context_lens)
    detail::check(FERRUM_STATUS_INTERNAL, "alloc_paged_layer", {library_.get(), api_, ctx_},
                  "the plugin returned OK with a missing buffer in the KV layer");
  r.len = c.len;
  r.capacity = c.capacity;
  r.block_size = c.block_size;
  r.num_kv_heads = c.num_kv_heads;
  r.head_dim = c.head_dim;
  return r;
}

// ---- with_device_ordinal scope -----------------------------------------------------------

namespace {
thread_local std::optional<uint64_t> t_device_scope;
}

namespace detail {
std::optional<uint64_t> exchange_device_scope(std::optional<uint64_t> ordinal) noexcept {
  return std::exchange(t_device_scope, ordinal);
}
std::optional<uint64_t> current_device_scope() noexcept { return t_device_scope; }
}  // namespace detail

Buffer transfer(Context& src_ctx, const Buffer& src, Context& dst_ctx) {
  // Staged through host memory (docs/design.md §1.8): a bit copy, so any dtype travels unchanged.
  const uint64_t es = element_size(src.dtype());
  std::vector<unsigned char> host;
  if (es != 0 && src.count() > std::vector<unsigned char>().max_size() / es)
    src_ctx.fail_host_alloc(Op::read_typed, "src", src.count(), es);
  try {
    host.resize(static_cast<size_t>(src.count() * es));
  } catch (const std::bad_alloc&) {
    src_ctx.fail_host_alloc(Op::read_typed, "src", src.count(), es);
  }
  src_ctx.read_typed({.src = src, .dtype = src.dtype(), .len = src.count(), .data = host.data()});
  return dst_ctx.from_slice_typed(src.dtype(), host.data(), src.count());
}

}  // namespace ferrum
