/* `stem invert`'s memory budget: how many frames the UNet's modules may take at once, and
 * a clear message (before any frame is decoded at full size) when even that does not fit. */
#ifndef STEM_CLI_INVERT_MEMORY_H
#define STEM_CLI_INVERT_MEMORY_H

#include <stdbool.h>
#include <stddef.h>

#include "pipeline/invert.h"

/* "512 KiB", "143 MiB", "12.5 GiB": sizes in messages, readable at any scale. */
typedef struct cli_size_text {
    char s[32];
} cli_size_text;
cli_size_text cli_size_str(double bytes);

/* 70 % of what the backend can still allocate (RAM: MemAvailable; GPU: cudaMemGetInfo). */
size_t cli_default_mem_limit(stem_backend *be);

/* Plans `frames` frames of width x height under `limit` bytes: sets inv->unet_frames, or
 * STEM_E_ARG saying how much is needed against the limit. `announce`: say on stderr how
 * the work is split when it is. */
stem_status cli_invert_plan(const stem_pipeline *p, stem_invert_options *inv, int frames, int width, int height,
                            size_t limit, bool announce);

#endif
