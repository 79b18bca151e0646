/* The algorithm's ops as the op registry sees them (`stem op em`, `stem_attention`,
 * `ddim`): EM bases, the self-attention modes and DDIM steps runnable from files. */
#ifndef STEM_STEM_STEM_OPS_H
#define STEM_STEM_STEM_OPS_H

#include "core/op_registry.h"

/* NULL-terminated, in --list order. */
extern const stem_op_def *const stem_algorithm_ops[];

#endif
