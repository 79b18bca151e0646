/* FreeU in the up path (doc/algorithm.md §7), as the original's TokenFlow code applies it:
 * before every up-block resnet's skip concat, a hidden state h of gate1 channels gets
 * h[:, :C/2] *= b1 and its skip connection the Fourier filter with s1 (four DFT
 * coefficients of every plane scaled, the `freeu_filter` op); gate2 channels likewise with
 * b2, s2; other widths pass untouched (so on a UNet without those widths FreeU is silent). */
#ifndef STEM_EDIT_FREEU_H
#define STEM_EDIT_FREEU_H

#include "models/unet_hooks.h"

typedef struct stem_freeu_hooks {
    float b1, b2, s1, s2;
    int64_t gate1, gate2; /* hidden-state channels: SD 1.5's 1280 and 640 */
    int fired;            /* calls it acted on since the count was last reset */
} stem_freeu_hooks;

stem_unet_hook_set stem_freeu_hook_set(stem_freeu_hooks *h);

#endif
