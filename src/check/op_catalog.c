#include "check/op_catalog.h"

#include <string.h>

#include "stem/stem_ops.h"

const stem_op_def *const *stem_op_all(void) {
    static const stem_op_def *all[128];
    if (!all[0]) {
        int n = 0;
        for (const stem_op_def *const *op = stem_core_ops; *op && n < 127; op++) all[n++] = *op;
        for (const stem_op_def *const *op = stem_algorithm_ops; *op && n < 127; op++) all[n++] = *op;
        all[n] = NULL;
    }
    return all;
}

const stem_op_def *stem_op_find(const char *name) {
    for (const stem_op_def *const *op = stem_op_all(); *op; op++)
        if (strcmp((*op)->name, name) == 0) return *op;
    return NULL;
}
