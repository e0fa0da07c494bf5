/*
 * ferrum CUDA plugin — its extension "ferrum.cuda.stream" (ABI 1.1 extension chain, see
 * ferrum_extension in ferrum_plugin.h). Public and installed as <ferrum/cuda/stream_ext.h>
 * (with or without the CUDA plugin: plain C99, no CUDA type crosses it). A host that wants the
 * CUDA stream of a context includes it and finds the record with
 *   backend.extension_as<ferrum_cuda_stream_ext>(FERRUM_CUDA_STREAM_EXT_ID, 1)
 * (nullptr from a plugin without it, e.g. the CPU plugin), then casts the void* to cudaStream_t.
 */
#ifndef FERRUM_CUDA_STREAM_EXT_H
#define FERRUM_CUDA_STREAM_EXT_H

#include <ferrum/ferrum_plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRUM_CUDA_STREAM_EXT_ID "ferrum.cuda.stream"
#define FERRUM_CUDA_STREAM_EXT_VERSION 1

typedef struct ferrum_cuda_stream_ext {
  ferrum_extension ext; /* id FERRUM_CUDA_STREAM_EXT_ID, version 1 */
  /* version 1: the context's cudaStream_t (non-blocking, owned by the context: valid until
   * context_destroy; the caller must not destroy it) into *cuda_stream_out. INVALID_ARGUMENT
   * for a NULL ctx or out pointer. Work the caller enqueues on it is ordered with the
   * context's ops. Externally synchronised on ctx. */
  ferrum_status (*get_stream)(ferrum_context* ctx, void** cuda_stream_out);
} ferrum_cuda_stream_ext;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FERRUM_CUDA_STREAM_EXT_H */
