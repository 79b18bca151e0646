/* Every op stem can run by name — core's tensor ops and the algorithm's (EM bases,
 * STEM attention, DDIM) — for `stem op`, golden files and the tests. Above core and
 * stem so that neither has to know the other's table. */
#ifndef STEM_CHECK_OP_CATALOG_H
#define STEM_CHECK_OP_CATALOG_H

#include "core/op_registry.h"

/* The op called `name`, or NULL. */
const stem_op_def *stem_op_find(const char *name);
/* All ops, NULL-terminated, in --list order (core's, then the algorithm's). */
const stem_op_def *const *stem_op_all(void);

#endif
