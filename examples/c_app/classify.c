/* classify: run a model compiled by `edgecc compile` from plain C99 through its C API.
 *
 *   classify [-t THREADS] [-p] INPUT0.f32 [INPUT1.f32 ...]
 *
 * Each INPUTi.f32 holds input i as raw float32, little-endian, dense C order, exactly
 * the bytes the model describes (model.h: EDGECC_MODEL_INPUT_i_ELEMENTS * 4). The program
 * opens the model with its own 64-byte aligned workspace, runs it once, and prints every
 * output's values with %.9g (enough digits to round-trip a float32 exactly) and, for the
 * first output, the top class of each row (batch item); -p also prints the wall time of
 * every step (layer) of the run (the C API's profiling). Exit status 0 on success, 1 on a
 * usage or file error, 2 when the model reports a failure (its error text is printed).
 */
#define _POSIX_C_SOURCE 200112L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h" /* generated next to model.so; includes model_api.h */

/* Reads exactly `bytes` bytes of little-endian float32 into dst (host order). */
static int read_f32_file(const char* path, float* dst, size_t bytes) {
  FILE* f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "classify: cannot open %s\n", path);
    return 0;
  }
  unsigned char* raw = (unsigned char*)malloc(bytes ? bytes : 1);
  size_t got = raw ? fread(raw, 1, bytes, f) : 0;
  int extra = fgetc(f) != EOF;
  fclose(f);
  if (!raw || got != bytes || extra) {
    fprintf(stderr, "classify: %s holds %s bytes than the %zu the model's input takes\n", path,
            got != bytes ? "fewer" : "more", bytes);
    free(raw);
    return 0;
  }
  for (size_t i = 0; i < bytes / 4; ++i) { /* little-endian on any host */
    const unsigned char* b = raw + 4 * i;
    uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    memcpy(&dst[i], &u, 4);
  }
  free(raw);
  return 1;
}

static void print_shape(const edgecc_tensor_desc* d) {
  printf("[");
  for (int32_t r = 0; r < d->rank; ++r) printf("%s%lld", r ? ", " : "", (long long)d->shape[r]);
  printf("]");
}

/* Rows = first dimension (batch); the top class is the argmax within each row. */
static void print_top_classes(const edgecc_tensor_desc* d, const float* y) {
  const size_t n = d->bytes / 4;
  const size_t rows = d->rank >= 2 ? (size_t)d->shape[0] : 1;
  const size_t cols = rows ? n / rows : 0;
  for (size_t r = 0; r < rows && cols; ++r) {
    size_t best = 0;
    for (size_t c = 1; c < cols; ++c)
      if (y[r * cols + c] > y[r * cols + best]) best = c;
    printf("top class[%zu]: %zu (%.9g)\n", r, best, y[r * cols + best]);
  }
}

int main(int argc, char** argv) {
  int threads = 0, profile = 0, arg = 1;
  for (;;) {
    if (argc > arg + 1 && strcmp(argv[arg], "-t") == 0) {
      threads = atoi(argv[arg + 1]);
      arg += 2;
    } else if (argc > arg && strcmp(argv[arg], "-p") == 0) {
      profile = 1;
      arg += 1;
    } else {
      break;
    }
  }
  const int32_t n_in = edgecc_model_num_inputs(), n_out = edgecc_model_num_outputs();
  if (argc - arg != n_in) {
    fprintf(stderr, "usage: %s [-t THREADS] [-p] INPUT0.f32 ... (%d input file(s): raw float32 little-endian)\n",
            argv[0], (int)n_in);
    return 1;
  }
  /* The header we compiled against must describe the library we linked. */
  if (edgecc_model_abi_version() != EDGECC_MODEL_ABI_VERSION ||
      strcmp(edgecc_model_weights_sha256(), EDGECC_MODEL_WEIGHTS_SHA256) != 0 ||
      edgecc_model_workspace_size() != EDGECC_MODEL_WORKSPACE_BYTES) {
    fprintf(stderr, "classify: model.so does not match the model.h it was built with\n");
    return 1;
  }
  printf("model: %s\n", edgecc_model_build_info());

  void* inputs[EDGECC_MODEL_NUM_INPUTS];
  void* outputs[EDGECC_MODEL_NUM_OUTPUTS];
  size_t in_bytes[EDGECC_MODEL_NUM_INPUTS], out_bytes[EDGECC_MODEL_NUM_OUTPUTS];
  void* workspace = NULL;
  edgecc_model* model = NULL;
  int rc = 1;
  memset(inputs, 0, sizeof inputs);
  memset(outputs, 0, sizeof outputs);

  for (int32_t i = 0; i < n_in; ++i) {
    in_bytes[i] = edgecc_model_input(i)->bytes;
    inputs[i] = malloc(in_bytes[i] ? in_bytes[i] : 1);
    if (!inputs[i] || !read_f32_file(argv[arg + i], (float*)inputs[i], in_bytes[i])) goto done;
  }
  for (int32_t i = 0; i < n_out; ++i) {
    out_bytes[i] = edgecc_model_output(i)->bytes;
    outputs[i] = malloc(out_bytes[i] ? out_bytes[i] : 1);
    if (!outputs[i]) goto done;
  }
  /* Our own arena: at least EDGECC_MODEL_WORKSPACE_BYTES, 64-byte aligned. */
  if (posix_memalign(&workspace, 64, EDGECC_MODEL_WORKSPACE_BYTES ? EDGECC_MODEL_WORKSPACE_BYTES : 64) != 0) {
    workspace = NULL;
    fprintf(stderr, "classify: out of memory for the workspace\n");
    goto done;
  }

  rc = 2;
  edgecc_status s = edgecc_model_open(&model, workspace, EDGECC_MODEL_WORKSPACE_BYTES);
  if (s != EDGECC_OK) {
    fprintf(stderr, "classify: open failed (status %d): %s\n", (int)s, edgecc_model_open_error());
    goto done;
  }
  s = edgecc_model_set_threads(model, threads);
  if (s != EDGECC_OK) {
    fprintf(stderr, "classify: set_threads failed (status %d): %s\n", (int)s, edgecc_model_last_error(model));
    goto done;
  }
  if (profile && (s = edgecc_model_set_profiling(model, 1)) != EDGECC_OK) {
    fprintf(stderr, "classify: set_profiling failed (status %d): %s\n", (int)s, edgecc_model_last_error(model));
    goto done;
  }
  s = edgecc_model_run_checked(model, (const void* const*)inputs, in_bytes, outputs, out_bytes);
  if (s != EDGECC_OK) {
    fprintf(stderr, "classify: run failed (status %d): %s\n", (int)s, edgecc_model_last_error(model));
    goto done;
  }
  for (int32_t i = 0; i < n_out; ++i) {
    const edgecc_tensor_desc* d = edgecc_model_output(i);
    const float* y = (const float*)outputs[i];
    printf("output %s ", d->name);
    print_shape(d);
    printf(":");
    for (size_t k = 0; k < d->bytes / 4; ++k) printf(" %.9g", y[k]);
    printf("\n");
  }
  print_top_classes(edgecc_model_output(0), (const float*)outputs[0]);
  for (int32_t k = 0; profile && k < edgecc_model_num_steps(); ++k) {
    edgecc_step_profile p;
    s = edgecc_model_step_profile(model, k, &p);
    if (s != EDGECC_OK) {
      fprintf(stderr, "classify: step_profile failed (status %d): %s\n", (int)s, edgecc_model_last_error(model));
      goto done;
    }
    printf("step %d %s (%s): %.3f ms\n", (int)k, p.node[0] ? p.node : "-", p.op, p.last_ms);
  }
  rc = 0;

done:
  edgecc_model_close(model); /* NULL is fine */
  free(workspace);
  for (int32_t i = 0; i < n_in; ++i) free(inputs[i]);
  for (int32_t i = 0; i < n_out; ++i) free(outputs[i]);
  return rc;
}
