/* Golden files: a safetensors file with an op's inputs ("in.NAME"), its expected
 * outputs from the PyTorch reference ("out.NAME"), and metadata "op", "attr.KEY",
 * "rtol", "atol". Used by `stem op --check FILE`, the golden tests and the CUDA
 * parity tests. */
#ifndef STEM_CHECK_GOLDEN_H
#define STEM_CHECK_GOLDEN_H

#include "core/op_registry.h"

typedef struct stem_golden {
    char *path;
    const stem_op_def *op;
    stem_tensor_map file;     /* everything in the file (owns the mapping) */
    stem_tensor_map inputs;   /* views of the "in." tensors, names without the prefix */
    stem_tensor_map expected; /* views of the "out." tensors, names without the prefix */
    stem_attrs attrs;         /* from the "attr." metadata */
    double rtol, atol;
} stem_golden;

typedef struct stem_compare {
    int64_t numel, violations, worst_index;
    int64_t nonfinite;       /* elements where got or want is NaN or Inf (each one is also a violation) */
    double max_abs, max_rel; /* max |got-want| and max |got-want| / |want| (over |want| > atol) */
    double worst_got, worst_want;
} stem_compare;

stem_status stem_golden_load(const char *path, stem_golden *g);
void stem_golden_free(stem_golden *g);
/* Rounds every floating-point input to `dt` and back (f16: 11 significant bits), in
 * place, so that a float32 run sees exactly the inputs an f16 run gets: the CUDA f16
 * parity test compares kernels, not the rounding of the inputs (softmax of values
 * near 1e4, whose f16 spacing is 8, would otherwise differ by design). */
stem_status stem_golden_round_inputs(stem_golden *g, stem_dtype dt);
/* Runs the golden's op on `be` in `dt`; outputs come back as host tensors. */
stem_status stem_golden_run(const stem_golden *g, stem_backend *be, stem_dtype dt, stem_tensor_map *outputs);

/* allclose: |got - want| <= atol + rtol * |want| for every element (integers: equal).
 * Shapes and dtypes must match (STEM_E_SHAPE otherwise). Both on the host. A NaN or
 * Inf in got or in want is a violation (NaN vs NaN and Inf vs Inf too). */
stem_status stem_compare_tensors(const stem_tensor *got, const stem_tensor *want, double rtol, double atol,
                                 stem_compare *c);
/* "max abs 1.2e-06, max rel 3.4e-07, 0 of 4096 outside rtol 1e-05 atol 1e-06" */
void stem_compare_describe(const stem_compare *c, double rtol, double atol, char *buf, size_t len);

#endif
