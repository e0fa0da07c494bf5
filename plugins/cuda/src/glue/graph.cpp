// CUDA plugin: graph capture and replay, decode state and dev-state mode (docs/spec.md §8).
//
// Capture is CUDA stream capture on the context's stream, in cudaStreamCaptureModeRelaxed.
// Why Relaxed rather than ThreadLocal (or Global): the plugin itself enforces what may happen
// during a capture — plugin::run_op rejects every non-G op and no G op allocates or
// synchronises (scratch refusal, §0.4) — so CUDA's own guard adds nothing for our stream,
// while it would hurt the host: under ThreadLocal, a "potentially unsafe" call made by the
// capturing thread for *another* purpose (buffer_release → cudaFree, work on a second context
// driven from the same thread, §0.4 allows both) invalidates this capture. Relaxed keeps those
// legal; illegal use of the captured stream itself (a synchronisation of it) still fails.
//
// Graph cache (behind ferrum_context::graph_state): key → (cudaGraphExec_t, event recorded
// after its latest replay). Replacing or resetting a graph whose last replay has not finished
// moves it to a retired list; retired graphs are destroyed once their event has completed
// (checked at every later graph call outside a capture) or at context_destroy after a stream
// sync — release is deferred until in-flight replays finish (§8.3).
#include <unordered_map>
#include <vector>

#include "cuda_check.hpp"
#include "cuda_plugin.hpp"
#include "kernels/attention/flash.hpp"

namespace ferrum::cuda::glue {
namespace {

struct GraphEntry {
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t done = nullptr;  // recorded after each replay
  bool launched = false;
};

struct GraphState {
  std::unordered_map<uint64_t, GraphEntry> graphs;
  std::vector<GraphEntry> retired;
};

GraphState& state_of(ferrum_context& c) {
  if (!c.graph_state) c.graph_state = new GraphState;  // bad_alloc → OUT_OF_MEMORY via guard
  return *static_cast<GraphState*>(c.graph_state);
}

void destroy_entry(GraphEntry& e) noexcept {
  if (e.exec) (void)cudaGraphExecDestroy(e.exec);
  if (e.done) (void)cudaEventDestroy(e.done);
  e = GraphEntry{};
}

// Destroys now if no replay may be running, else defers to the retired list.
void release_entry(GraphState& gs, GraphEntry e) {
  if (!e.launched) {
    destroy_entry(e);
    return;
  }
  const cudaError_t q = cudaEventQuery(e.done);
  if (q == cudaErrorNotReady) {
    gs.retired.push_back(e);
    return;
  }
  if (q != cudaSuccess) (void)cudaGetLastError();  // a sticky error surfaces at the next S call
  destroy_entry(e);
}

// Destroys retired graphs whose last replay has completed (never during a capture).
void sweep(ferrum_context& c) {
  if (c.capturing || !c.graph_state) return;
  GraphState& gs = state_of(c);
  std::vector<GraphEntry> keep;
  for (GraphEntry& e : gs.retired) {
    const cudaError_t q = cudaEventQuery(e.done);
    if (q == cudaErrorNotReady) {
      keep.push_back(e);
    } else {
      if (q != cudaSuccess) (void)cudaGetLastError();
      destroy_entry(e);
    }
  }
  gs.retired.swap(keep);
}

ferrum_status begin_graph_capture(ferrum_context* ctx, const ferrum_begin_graph_capture_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_begin_graph_capture_args&, bool dry) -> Status {
    if (c.capturing)
      return invalid("begin_graph_capture: expected no graph capture in flight on this context, given one already in "
                     "flight (call end_graph_capture first)");
    if (dry) return ok_status();
    DeviceGuard g;
    Status s = enter_device(g, c);
    if (!s.ok()) return s;
    sweep(c);
    const cudaError_t err = cudaStreamBeginCapture(c.dev->stream, cudaStreamCaptureModeRelaxed);
    if (err != cudaSuccess)
      return from_device(cuda_error_status(err, "cudaStreamBeginCapture(ctx.stream, Relaxed)", __FILE__, __LINE__));
    c.capturing = true;
    return ok_status();
  });
}

ferrum_status end_graph_capture(ferrum_context* ctx, const ferrum_end_graph_capture_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_end_graph_capture_args& a, bool dry) -> Status {
    if (!c.capturing)
      return invalid("end_graph_capture: expected a graph capture in flight on this context, given none (call "
                     "begin_graph_capture first)");
    if (dry) return ok_status();
    DeviceGuard g;
    Status s = enter_device(g, c);
    if (!s.ok()) return s;
    GraphState& gs = state_of(c);  // before ending: a bad_alloc leaves the capture open
    gs.graphs.reserve(gs.graphs.size() + 1);
    gs.retired.reserve(gs.retired.size() + 1);
    cudaGraph_t graph = nullptr;
    cudaError_t err = cudaStreamEndCapture(c.dev->stream, &graph);
    c.capturing = false;
    if (err != cudaSuccess) {
      Status st = from_device(cuda_error_status(err, "cudaStreamEndCapture(ctx.stream)", __FILE__, __LINE__));
      st.code = FERRUM_STATUS_DEVICE_ERROR;
      st.message = "end_graph_capture: the capture was invalidated (nothing stored): " + st.message;
      if (graph) (void)cudaGraphDestroy(graph);
      return st;
    }
    GraphEntry e;
    err = cudaGraphInstantiate(&e.exec, graph, 0);
    (void)cudaGraphDestroy(graph);
    if (err != cudaSuccess) {
      Status st = from_device(cuda_error_status(err, "cudaGraphInstantiate", __FILE__, __LINE__));
      st.code = FERRUM_STATUS_OUT_OF_MEMORY;  // §8.1: instantiation failure
      st.message = "end_graph_capture: " + st.message;
      return st;
    }
    err = cudaEventCreateWithFlags(&e.done, cudaEventDisableTiming);
    if (err != cudaSuccess) {
      destroy_entry(e);
      return from_device(cuda_error_status(err, "cudaEventCreateWithFlags", __FILE__, __LINE__));
    }
    auto it = gs.graphs.find(a.key);
    if (it != gs.graphs.end()) {
      release_entry(gs, it->second);
      it->second = e;
    } else {
      gs.graphs.emplace(a.key, e);
    }
    return ok_status();
  });
}

ferrum_status replay_graph(ferrum_context* ctx, const ferrum_replay_graph_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_replay_graph_args& a, bool dry) -> Status {
    if (c.capturing)
      return invalid("replay_graph: expected no graph capture in flight on this context, given one in flight");
    if (dry) return ok_status();
    *a.replayed = 0;
    if (!c.graph_state) return ok_status();
    GraphState& gs = state_of(c);
    auto it = gs.graphs.find(a.key);
    if (it == gs.graphs.end()) return ok_status();
    DeviceGuard g;
    Status s = enter_device(g, c);
    if (!s.ok()) return s;
    sweep(c);
    s = from_device([&]() -> cuda::Status {
      FERRUM_CUDA_CHECK(cudaGraphLaunch(it->second.exec, c.dev->stream));
      FERRUM_CUDA_CHECK(cudaEventRecord(it->second.done, c.dev->stream));
      return cuda::ok_status();
    }());
    if (!s.ok()) return s;
    it->second.launched = true;
    *a.replayed = 1;
    return ok_status();
  });
}

ferrum_status reset_graph(ferrum_context* ctx, const ferrum_reset_graph_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_reset_graph_args& a, bool dry) -> Status {
    if (c.capturing)
      return invalid("reset_graph: expected no graph capture in flight on this context, given one in flight");
    if (dry || !c.graph_state) return ok_status();
    DeviceGuard g;
    Status s = enter_device(g, c);
    if (!s.ok()) return s;
    GraphState& gs = state_of(c);
    auto it = gs.graphs.find(a.key);
    if (it != gs.graphs.end()) {
      release_entry(gs, it->second);
      gs.graphs.erase(it);
    }
    sweep(c);
    return ok_status();
  });
}

ferrum_status reset_all_graphs(ferrum_context* ctx, const ferrum_reset_all_graphs_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_reset_all_graphs_args&, bool dry) -> Status {
    if (c.capturing)
      return invalid("reset_all_graphs: expected no graph capture in flight on this context, given one in flight");
    if (dry || !c.graph_state) return ok_status();
    DeviceGuard g;
    Status s = enter_device(g, c);
    if (!s.ok()) return s;
    GraphState& gs = state_of(c);
    gs.retired.reserve(gs.retired.size() + gs.graphs.size());
    for (auto& [key, e] : gs.graphs) {
      (void)key;
      release_entry(gs, e);
    }
    gs.graphs.clear();
    sweep(c);
    return ok_status();
  });
}

ferrum_status graph_capture_in_flight(ferrum_context* ctx, const ferrum_graph_capture_in_flight_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_graph_capture_in_flight_args& a, bool dry) -> Status {
    if (!dry) *a.result = c.capturing ? 1u : 0u;
    return ok_status();
  });
}

ferrum_status set_decode_state(ferrum_context* ctx, const ferrum_set_decode_state_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_set_decode_state_args& a, bool dry) -> Status {
    if (a.step == UINT32_MAX)
      return invalid("set_decode_state: argument 'step': expected < 2^32 - 1 (kv = step + 1 must fit in u32), given "
                     "4294967295");
    if (c.capturing)
      return invalid("set_decode_state: expected no graph capture in flight on this context, given one in flight");
    if (!c.dev_state)
      return {FERRUM_STATUS_INTERNAL, "set_decode_state: the context has no decode state"};
    if (dry) return ok_status();
    DeviceGuard g;
    Status s = enter_device(g, c);
    if (!s.ok()) return s;
    return from_device(attn::write_decode_state(c.dev_state, a.token, a.step, c.dev->stream));
  });
}

ferrum_status set_dev_state_mode(ferrum_context* ctx, const ferrum_set_dev_state_mode_args* a) {
  return run_op(ctx, a, [](ferrum_context& c, const ferrum_set_dev_state_mode_args& a, bool dry) -> Status {
    if (!dry) c.dev_state_mode = a.enable != 0;
    return ok_status();
  });
}

}  // namespace

void release_graph_state(ferrum_context& c) noexcept {
  DeviceGuard g;
  (void)g.enter(static_cast<int>(c.device));
  if (c.capturing && c.dev && c.dev->stream) {  // destroyed mid-capture: end and drop it
    cudaGraph_t graph = nullptr;
    if (cudaStreamEndCapture(c.dev->stream, &graph) == cudaSuccess && graph) (void)cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    c.capturing = false;
  }
  auto* gs = static_cast<GraphState*>(c.graph_state);
  if (!gs) return;
  if (c.dev && c.dev->stream) (void)cudaStreamSynchronize(c.dev->stream);
  for (auto& [key, e] : gs->graphs) {
    (void)key;
    destroy_entry(e);
  }
  for (GraphEntry& e : gs->retired) destroy_entry(e);
  delete gs;
  c.graph_state = nullptr;
}

const ferrum_graph_table kGraphTable = {sizeof(ferrum_graph_table), FERRUM_GRAPH_SLOTS(FERRUM_SLOT_FN)};

}  // namespace ferrum::cuda::glue
