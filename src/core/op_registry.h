/* Every op by name, with its inputs, attributes and outputs: what `stem op` runs,
 * what `stem op --list` prints, and what the golden and parity tests iterate over.
 *
 * Golden files (refdata/golden/ops/OP__CASE.safetensors) use this registry's names:
 * tensors "in.NAME" and "out.NAME", metadata "op", "attr.KEY" and the tolerances
 * "rtol"/"atol" (allclose: |got - want| <= atol + rtol * |want|). */
#ifndef STEM_CORE_OP_REGISTRY_H
#define STEM_CORE_OP_REGISTRY_H

#include "core/backend.h"
#include "core/tensor_map.h"

typedef enum stem_attr_type { STEM_ATTR_INT, STEM_ATTR_FLOAT, STEM_ATTR_BOOL, STEM_ATTR_STRING, STEM_ATTR_INTS } stem_attr_type;

typedef struct stem_attr_spec {
    const char *name;
    stem_attr_type type;
    const char *default_value; /* NULL: required */
    const char *help;
} stem_attr_spec;

#define STEM_MAX_ATTRS 32

/* User-given attribute values (strings, parsed on use against the op's specs). */
typedef struct stem_attrs {
    int count;
    const char *keys[STEM_MAX_ATTRS];
    const char *values[STEM_MAX_ATTRS];
} stem_attrs;

typedef struct stem_op_def stem_op_def;

/* Inputs live on `be` in the compute dtype (integer tensors stay integer); outputs
 * must be put into `out` as owned tensors on `be`. */
typedef stem_status (*stem_op_run_fn)(const stem_op_def *op, stem_backend *be,
                                      const stem_tensor_map *in, const stem_attrs *attrs,
                                      stem_tensor_map *out);

struct stem_op_def {
    const char *name;
    const char *summary;
    const char *const *inputs;  /* NULL-terminated; a trailing '?' marks optional */
    const char *const *outputs; /* NULL-terminated */
    const stem_attr_spec *attrs; /* terminated by an entry with name NULL */
    stem_op_run_fn run;
};

/* core's own ops (tensor ops), NULL-terminated; every op by name, core's and the
 * algorithm's, is in check/op_catalog.h (above core). */
extern const stem_op_def *const stem_core_ops[];

/* Adds "key=value" (as given on the command line); STEM_E_ARG if malformed or full. */
stem_status stem_attrs_add(stem_attrs *attrs, const char *key_eq_value);
/* Frees the keys stem_attrs_add copied. */
void stem_attrs_free(stem_attrs *attrs);
/* Checks every given key is an attribute of `op` and every required one is given. */
stem_status stem_attrs_validate(const stem_op_def *op, const stem_attrs *attrs);
/* Typed getters: the given value, else the spec default; STEM_E_ARG naming the
 * attribute when unparseable. */
stem_status stem_attr_int(const stem_op_def *op, const stem_attrs *a, const char *name, int64_t *out);
stem_status stem_attr_float(const stem_op_def *op, const stem_attrs *a, const char *name, double *out);
stem_status stem_attr_bool(const stem_op_def *op, const stem_attrs *a, const char *name, bool *out);
stem_status stem_attr_string(const stem_op_def *op, const stem_attrs *a, const char *name, const char **out);
/* Comma-separated integers, at most `max`; *count receives how many. */
stem_status stem_attr_ints(const stem_op_def *op, const stem_attrs *a, const char *name,
                           int64_t *out, int max, int *count);

/* For an op's run function: input `name` of `in` (STEM_E_NOTFOUND naming op and
 * input when missing), and a new output on `be` registered in `out` under `name`
 * (*t points into the map). */
stem_status stem_op_input(const stem_op_def *op, const stem_tensor_map *in, const char *name,
                          const stem_tensor **out);
stem_status stem_op_output(stem_backend *be, stem_tensor_map *out, const char *name, stem_dtype dt, int ndim,
                           const int64_t *shape, stem_tensor **t);

/* Runs `op` on host tensors: validates inputs by name, moves them to `be` in
 * `dtype` (f32 or f16; integer inputs unchanged), runs, and returns the outputs as
 * host f32 (or integer) tensors in `out`. */
stem_status stem_op_execute(const stem_op_def *op, stem_backend *be, stem_dtype dtype,
                            const stem_tensor_map *host_in, const stem_attrs *attrs,
                            stem_tensor_map *host_out);

#endif
