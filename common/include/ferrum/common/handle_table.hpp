// A table of plugin objects whose opaque handles can be checked without touching freed memory:
// a released handle, a double release, a handle of another plugin or a garbage pointer is
// recognised by address arithmetic and atomic loads on memory the table does not free while
// any object is live.
//
// Layout. Objects live in slots; slots live in chunks that are allocated on demand (chunk i holds
// kFirstChunkSlots << i slots, at most kMaxChunks chunks) and are not freed while the plugin is
// in use (released slots are kept and reused, never returned to the heap). A slot
// holds kViews copies ("views") of the object side by side plus an atomic generation; the
// handle of generation g is the address of view g % kViews. So the handle itself encodes the
// slot (which chunk, which slot) and the generation (modulo kViews), and plugin code can keep
// dereferencing it as an ordinary `T*`.
//
// find(h) never dereferences h: it checks that h lies inside one of this table's chunks at the
// address of a view, then reads that slot's atomic state. A handle is live only while its slot
// is allocated *and* the slot's generation still selects that view.
//
// Reuse. Freed slots wait in a first-in first-out queue and are reused only while more than
// kQuarantine of them are waiting, so a stale handle can only be mistaken for a live one after
// its slot has been reused a multiple of kViews times, which takes more than
// kViews × kQuarantine (16384) allocations after the release. Within that window every misuse
// is reported; the price is at most kQuarantine idle slots (about 0.5 MiB for buffers).
//
// Unload. free_if_unused() gives the chunks back when no object is live (the plugins call it
// when their library is unloaded or the process exits); with live objects left it frees
// nothing, so a late release still finds valid memory.
//
// Threads. find() is lock-free (atomic acquire loads only). acquire() and release() take a
// mutex; release() succeeds for exactly one of several concurrent releases of one handle.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <type_traits>

namespace ferrum::common {

template <class T>
class HandleTable {
 public:
  static constexpr uint32_t kViews = 8;
  static constexpr uint64_t kFirstChunkSlots = 256;
  static constexpr uint32_t kMaxChunks = 32;  // 256 * (2^32 - 1) slots in all
  static constexpr uint64_t kQuarantine = 2048;

  HandleTable() = default;
  HandleTable(const HandleTable&) = delete;
  HandleTable& operator=(const HandleTable&) = delete;
  ~HandleTable() = default;  // chunks are freed only by free_if_unused (see above)

  // The live object behind `handle`, or nullptr (NULL, released, foreign or garbage).
  // Never reads memory the table does not own.
  T* find(const void* handle) const noexcept {
    uint32_t view = 0;
    Slot* s = locate(handle, view);
    if (!s || s->live.load(std::memory_order_acquire) != view + 1) return nullptr;
    return &s->views[view];
  }

  // A fresh object (value-initialised T) in a free slot; nullptr when out of host memory.
  T* acquire() noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    Slot* s = pop_free();
    if (!s) s = take_new();
    if (!s) s = pop_any();  // no memory for a new chunk: shorten the quarantine instead
    if (!s) return nullptr;
    const uint32_t view = s->generation % kViews;
    T* obj = &s->views[view];
    obj->~T();
    ::new (static_cast<void*>(obj)) T();
    s->live.store(view + 1, std::memory_order_release);
    ++nlive_;
    return obj;
  }

  // Frees every chunk when no object is live (see "Unload"); false when some are.
  bool free_if_unused() noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    if (nlive_) return false;
    const uint32_t n = nchunks_.exchange(0, std::memory_order_acq_rel);
    for (uint32_t i = 0; i < n; ++i) delete[] chunks_[i].exchange(nullptr, std::memory_order_acq_rel);
    used_in_last_ = 0;
    free_head_ = free_tail_ = nullptr;
    nfree_ = 0;
    return true;
  }

  // Marks `handle` released (its slot's generation moves on). False when it was not live (a
  // double release, a foreign or garbage handle): nothing is changed then.
  bool release(const void* handle) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    uint32_t view = 0;
    Slot* s = locate(handle, view);
    uint32_t expected = view + 1;
    if (!s || !s->live.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) return false;
    ++s->generation;
    s->next_free = nullptr;
    if (free_tail_) free_tail_->next_free = s; else free_head_ = s;
    free_tail_ = s;
    ++nfree_;
    --nlive_;
    return true;
  }

 private:
  struct Slot {
    T views[kViews];                 // first member: view v is at offset v * sizeof(T)
    std::atomic<uint32_t> live{0};   // 0 = free, v + 1 = view v is the live object
    uint32_t generation = 0;         // guarded by mu_
    Slot* next_free = nullptr;       // guarded by mu_
  };
  static_assert(offsetof(Slot, views) == 0);

  static constexpr uint64_t chunk_slots(uint32_t i) { return kFirstChunkSlots << i; }

  // The slot whose view `view` is at address `handle`, or nullptr when `handle` is not the
  // address of a view in one of this table's chunks. Reads only the chunk list.
  Slot* locate(const void* handle, uint32_t& view) const noexcept {
    if (!handle) return nullptr;
    const uintptr_t p = reinterpret_cast<uintptr_t>(handle);
    const uint32_t n = nchunks_.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < n; ++i) {
      Slot* base = chunks_[i].load(std::memory_order_acquire);
      const uintptr_t b = reinterpret_cast<uintptr_t>(base);
      if (p < b || p - b >= chunk_slots(i) * sizeof(Slot)) continue;
      const uint64_t off = p - b, in_slot = off % sizeof(Slot);
      if (in_slot % sizeof(T) != 0 || in_slot / sizeof(T) >= kViews) return nullptr;
      view = static_cast<uint32_t>(in_slot / sizeof(T));
      return &base[off / sizeof(Slot)];
    }
    return nullptr;
  }

  // The oldest freed slot, once more than kQuarantine are waiting.
  Slot* pop_free() noexcept { return nfree_ > kQuarantine ? pop_any() : nullptr; }

  Slot* pop_any() noexcept {
    if (nfree_ == 0) return nullptr;
    Slot* s = free_head_;
    --nfree_;
    free_head_ = s->next_free;
    if (!free_head_) free_tail_ = nullptr;
    s->next_free = nullptr;
    return s;
  }

  Slot* take_new() noexcept {
    uint32_t n = nchunks_.load(std::memory_order_relaxed);
    if (n == 0 || used_in_last_ == chunk_slots(n - 1)) {
      if (n == kMaxChunks) return nullptr;
      Slot* c = new (std::nothrow) Slot[chunk_slots(n)];
      if (!c) return nullptr;
      chunks_[n].store(c, std::memory_order_release);
      nchunks_.store(++n, std::memory_order_release);
      used_in_last_ = 0;
    }
    return &chunks_[n - 1].load(std::memory_order_relaxed)[used_in_last_++];
  }

  std::atomic<Slot*> chunks_[kMaxChunks] = {};
  std::atomic<uint32_t> nchunks_{0};
  std::mutex mu_;
  uint64_t used_in_last_ = 0;  // guarded by mu_
  Slot* free_head_ = nullptr;  // guarded by mu_
  Slot* free_tail_ = nullptr;
  uint64_t nfree_ = 0;         // guarded by mu_
  uint64_t nlive_ = 0;         // guarded by mu_
};

}  // namespace ferrum::common
