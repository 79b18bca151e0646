/* Registry entries for the STEM algorithm's ops (EM bases, STEM self-attention,
 * DDIM scheduler). Empty until the STEM core lands. */
#include "core/op_registry.h"

const stem_op_def *const stem_algorithm_ops[] = {NULL};
