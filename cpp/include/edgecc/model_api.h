/* The stable C API every model compiled by `edgecc compile` implements (model.so).
 *
 * C99, no C++ types: an application (or edgecc's Python runtime) dlopens model.so or
 * links it, opens a handle, and runs it on caller-owned buffers:
 *
 *   edgecc_model* m = NULL;
 *   if (edgecc_model_open(&m, NULL, 0) != EDGECC_OK) puts(edgecc_model_open_error());
 *   const void* in[1] = {x};  void* out[1] = {y};
 *   if (edgecc_model_run(m, in, out) != EDGECC_OK) puts(edgecc_model_last_error(m));
 *   edgecc_model_close(m);
 *
 * Shapes are static; the generated model.h repeats them as macros together with the
 * activation workspace size (EDGECC_MODEL_WORKSPACE_BYTES), so an application can
 * place the arena itself (open with a buffer of at least that many bytes, 64-byte
 * aligned) or let open allocate it. Opening checks the CPU features the library was
 * built for and the SHA-256 of the embedded weights, and names what is missing or wrong.
 *
 * Handles: every function taking a handle first checks that it is open (returned by
 * edgecc_model_open and not yet closed), so NULL, closed or made-up handles give
 * EDGECC_ERROR_INVALID_ARGUMENT instead of a crash (a closed handle's address may be
 * reused by a later open, as with file descriptors). One handle runs one call at a time:
 * concurrent edgecc_model_run calls on it are serialized by a lock; open one handle per
 * thread (each with its own workspace) to run in parallel.
 *
 * Testing hook: EDGECC_MODEL_PRETEND_MISSING_CPU_FLAGS="avx512f,avx2" (comma separated
 * edgecc::CpuFeatures names) makes open treat those flags as missing, to exercise the
 * unsupported-CPU path on a machine that has them.
 */
#ifndef EDGECC_MODEL_API_H
#define EDGECC_MODEL_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a declaration below changes incompatibly. */
#define EDGECC_MODEL_ABI_VERSION 1u

#if defined(__GNUC__)
#define EDGECC_MODEL_EXPORT __attribute__((visibility("default")))
#else
#define EDGECC_MODEL_EXPORT
#endif

typedef enum edgecc_status {
  EDGECC_OK = 0,
  EDGECC_ERROR_INVALID_ARGUMENT = 1, /* null pointer, bad thread count, small workspace */
  EDGECC_ERROR_UNSUPPORTED_CPU = 2,  /* the CPU lacks flags the library was built for */
  EDGECC_ERROR_CORRUPT = 3,          /* the embedded weights fail their SHA-256 check */
  EDGECC_ERROR_OUT_OF_MEMORY = 4,
  EDGECC_ERROR_KERNEL = 5            /* a kernel failed; the last error names node and op */
} edgecc_status;

typedef enum edgecc_dtype { EDGECC_DTYPE_F32 = 0 } edgecc_dtype;

typedef struct edgecc_tensor_desc {
  const char* name;
  edgecc_dtype dtype;
  int32_t rank;
  const int64_t* shape; /* rank entries */
  size_t bytes;         /* size of the whole dense C-order buffer */
} edgecc_tensor_desc;

typedef struct edgecc_model edgecc_model; /* opaque */

EDGECC_MODEL_EXPORT uint32_t edgecc_model_abi_version(void);
/* "edgecc 0.1.0; model NAME; target T; march M; kernels ..." */
EDGECC_MODEL_EXPORT const char* edgecc_model_build_info(void);
/* Hex SHA-256 of the embedded weights section (also in model.json). */
EDGECC_MODEL_EXPORT const char* edgecc_model_weights_sha256(void);
EDGECC_MODEL_EXPORT size_t edgecc_model_workspace_size(void);

EDGECC_MODEL_EXPORT int32_t edgecc_model_num_inputs(void);
EDGECC_MODEL_EXPORT int32_t edgecc_model_num_outputs(void);
/* NULL when the index is out of range. */
EDGECC_MODEL_EXPORT const edgecc_tensor_desc* edgecc_model_input(int32_t index);
EDGECC_MODEL_EXPORT const edgecc_tensor_desc* edgecc_model_output(int32_t index);

/* workspace: NULL (open allocates it) or a caller buffer of at least
 * edgecc_model_workspace_size() bytes, 64-byte aligned, that outlives the handle. */
EDGECC_MODEL_EXPORT edgecc_status edgecc_model_open(edgecc_model** out, void* workspace,
                                                    size_t workspace_bytes);
/* Why the last edgecc_model_open on this thread failed ("" if it did not). */
EDGECC_MODEL_EXPORT const char* edgecc_model_open_error(void);
EDGECC_MODEL_EXPORT void edgecc_model_close(edgecc_model* model);

/* 1 <= threads <= EDGECC_MODEL_MAX_THREADS, or 0 = the OpenMP default. */
EDGECC_MODEL_EXPORT edgecc_status edgecc_model_set_threads(edgecc_model* model, int32_t threads);
EDGECC_MODEL_EXPORT int32_t edgecc_model_threads(const edgecc_model* model);

/* inputs[i] / outputs[i]: dense C-order buffers of the described dtype and shape.
 * Outputs must not overlap inputs. Concurrent calls on one handle are serialized (the
 * arena is shared); see edgecc_model_run_checked for a variant that checks sizes. */
EDGECC_MODEL_EXPORT edgecc_status edgecc_model_run(edgecc_model* model, const void* const* inputs,
                                                   void* const* outputs);
/* Text of the last failure on this handle, naming the node and op ("" if none); valid
 * until the next call on the handle. */
EDGECC_MODEL_EXPORT const char* edgecc_model_last_error(const edgecc_model* model);

/* Like edgecc_model_run, also checking that input_bytes[i] / output_bytes[i] equal the
 * described sizes and that no output overlaps an input or another output. */
EDGECC_MODEL_EXPORT edgecc_status edgecc_model_run_checked(edgecc_model* model, const void* const* inputs,
                                                           const size_t* input_bytes, void* const* outputs,
                                                           const size_t* output_bytes);

/* Upper bound of edgecc_model_set_threads. */
#define EDGECC_MODEL_MAX_THREADS 1024

/* ---- per-step profiling ------------------------------------------------------------
 * A run is a fixed sequence of steps: step i < edgecc_model_num_steps() - 1 is layer i of
 * model.json "layers" (same order), the last step copies outputs not written in place.
 * Off by default; when off, runs read no clock. */
typedef struct edgecc_step_profile {
  const char* node; /* graph node name ("" for the final output copies) */
  const char* op;   /* IR op ("copy_outputs" for the final step) */
  uint64_t runs;    /* successful runs timed since profiling was (re)enabled */
  double last_ms;   /* wall time of this step in the last timed run that reached it */
  double total_ms;  /* summed over `runs` */
} edgecc_step_profile;

EDGECC_MODEL_EXPORT int32_t edgecc_model_num_steps(void);
/* enabled != 0: time every step of the following runs; 0: stop timing. Both reset the counters. */
EDGECC_MODEL_EXPORT edgecc_status edgecc_model_set_profiling(edgecc_model* model, int32_t enabled);
/* The counters of step `index`; EDGECC_ERROR_INVALID_ARGUMENT for a bad index or NULL out. */
EDGECC_MODEL_EXPORT edgecc_status edgecc_model_step_profile(const edgecc_model* model, int32_t index,
                                                            edgecc_step_profile* out);

#ifdef __cplusplus
}
#endif

#endif /* EDGECC_MODEL_API_H */
