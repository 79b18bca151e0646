/* A contact sheet: one PNG that shows a few frames side by side, e.g.
 *
 *     input | VAE round trip | reconstruction      <- frame 0
 *     input | VAE round trip | reconstruction      <- frame F/3
 *     ...                                          <- ... frame F-1
 *
 * Columns are clips of host f32 pixels [F, 3, H, W] in [-1, 1] with equal shapes
 * (8-bit by rounding); rows are up to `max_rows` frames spread evenly from the first
 * to the last (row r shows frame round(r * (F - 1) / (rows - 1))). Cells are separated
 * by STEM_SHEET_GAP pixels of gray 128. Written atomically.
 *
 * The _labeled forms put a dark strip above the columns with each column's label (NULL:
 * none) in white, centred, in the built-in 5x7 font (io/bitmap_font.h) at the largest
 * scale up to 3 where all labels fit (clipped to the column when none does). */
#ifndef STEM_IO_CONTACT_SHEET_H
#define STEM_IO_CONTACT_SHEET_H

#include "core/tensor.h"
#include "io/image.h"

#define STEM_SHEET_GAP 4

/* The sheet's size for n_columns clips of `frames` h x w frames; STEM_E_ARG when it
 * would be larger than STEM_IMAGE_MAX_DIM (known before any clip exists). */
stem_status stem_contact_sheet_size(int n_columns, int max_rows, int64_t frames, int64_t h, int64_t w, long *sheet_w,
                                    long *sheet_h);
/* The sheet as an image (caller frees). */
stem_status stem_contact_sheet_render(const stem_tensor *const *columns, int n_columns, int max_rows, stem_image *out);
/* Renders and writes it to `path` (PNG). */
stem_status stem_contact_sheet_write(const char *path, const stem_tensor *const *columns, int n_columns, int max_rows);
stem_status stem_contact_sheet_render_labeled(const stem_tensor *const *columns, const char *const *labels,
                                              int n_columns, int max_rows, stem_image *out);
stem_status stem_contact_sheet_write_labeled(const char *path, const stem_tensor *const *columns,
                                             const char *const *labels, int n_columns, int max_rows);

#endif
