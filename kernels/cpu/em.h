/* The CPU kernel of the em_block op (core/backend.h, stem_em_block_params): f32,
 * raw host pointers; scratch as the other kernels take it (kernels/cpu/kernels.h). */
#ifndef STEM_KERNELS_CPU_EM_H
#define STEM_KERNELS_CPU_EM_H

#include <stddef.h>

#include "core/backend.h"

/* Bytes of scratch for the current OpenMP thread count. */
size_t stem_cpu_em_block_scratch(const stem_em_block_params *p);
void stem_cpu_em_block_f32(const stem_em_block_params *p, void *scratch);

#endif
