/* Contact sheets: a grid of frames from several clips, with gray separators. */
#include "io/contact_sheet.h"

#include <string.h>

#include "core/backend.h"
#include "io/bitmap_font.h"
#include "io/resize.h"

/* The largest font scale (1..3) at which every label fits a w-pixel column with a pixel
 * to spare on each side; 1 when one does not fit even then (it is clipped). */
static int label_scale(const char *const *labels, int n_columns, int w) {
    int scale = 3;
    while (scale > 1) {
        bool fit = true;
        for (int c = 0; c < n_columns; c++)
            if (labels[c] && stem_font_text_width(labels[c], scale) + 2 > w) fit = false;
        if (fit) break;
        scale--;
    }
    return scale;
}

stem_status stem_contact_sheet_size(int n_columns, int max_rows, int64_t frames, int64_t h, int64_t w, long *sheet_w,
                                    long *sheet_h) {
    if (n_columns < 1 || max_rows < 1 || frames < 1 || h < 1 || w < 1)
        return stem_fail(STEM_E_ARG, "contact sheet: %d columns, %d rows of %lld frames %lldx%lld", n_columns, max_rows,
                         (long long)frames, (long long)w, (long long)h);
    long rows = max_rows < frames ? max_rows : (long)frames;
    *sheet_w = (long)n_columns * (long)w + (long)(n_columns - 1) * STEM_SHEET_GAP;
    *sheet_h = rows * (long)h + (rows - 1) * STEM_SHEET_GAP;
    if (*sheet_w > STEM_IMAGE_MAX_DIM || *sheet_h > STEM_IMAGE_MAX_DIM)
        return stem_fail(STEM_E_ARG, "contact sheet: %ldx%ld is larger than %d (fewer rows or columns)", *sheet_w,
                         *sheet_h, STEM_IMAGE_MAX_DIM);
    return STEM_OK;
}

stem_status stem_contact_sheet_render(const stem_tensor *const *columns, int n_columns, int max_rows, stem_image *out) {
    return stem_contact_sheet_render_labeled(columns, NULL, n_columns, max_rows, out);
}

stem_status stem_contact_sheet_render_labeled(const stem_tensor *const *columns, const char *const *labels,
                                              int n_columns, int max_rows, stem_image *out) {
    out->rgb = NULL;
    out->width = out->height = 0;
    if (!columns || n_columns < 1) return stem_fail(STEM_E_ARG, "contact sheet: no columns");
    if (max_rows < 1) return stem_fail(STEM_E_ARG, "contact sheet: %d rows", max_rows);
    const stem_tensor *t0 = columns[0];
    for (int c = 0; c < n_columns; c++) {
        const stem_tensor *t = columns[c];
        char b0[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
        if (!t || t->dtype != STEM_F32 || t->ndim != 4 || t->shape[1] != 3 || t->shape[0] < 1 || !t->data ||
            !t->backend || !t->backend->host_memory)
            return stem_fail(STEM_E_SHAPE, "contact sheet: column %d: expected host f32 pixels [F, 3, H, W], got %s", c,
                             t ? stem_shape_str(t, b, sizeof b) : "nothing");
        if (!stem_same_shape(t, t0))
            return stem_fail(STEM_E_SHAPE, "contact sheet: column %d is %s, column 0 is %s", c,
                             stem_shape_str(t, b, sizeof b), stem_shape_str(t0, b0, sizeof b0));
    }
    int f = (int)t0->shape[0], h = (int)t0->shape[2], w = (int)t0->shape[3];
    int rows = max_rows < f ? max_rows : f;
    long sheet_w, sheet_h;
    STEM_TRY(stem_contact_sheet_size(n_columns, max_rows, t0->shape[0], t0->shape[2], t0->shape[3], &sheet_w, &sheet_h));
    /* labels: a dark strip above the columns, each label centred over its column */
    const int scale = labels ? label_scale(labels, n_columns, w) : 0;
    const int strip = labels ? STEM_FONT_H * scale + 2 * (scale + 1) : 0, top = labels ? strip + STEM_SHEET_GAP : 0;
    if (sheet_h + top > STEM_IMAGE_MAX_DIM)
        return stem_fail(STEM_E_ARG, "contact sheet: %ldx%ld is larger than %d (fewer rows)", sheet_w, sheet_h + top,
                         STEM_IMAGE_MAX_DIM);
    sheet_h += top;
    STEM_TRY(stem_image_new((int)sheet_w, (int)sheet_h, out));
    memset(out->rgb, 128, (size_t)sheet_w * (size_t)sheet_h * 3);
    if (labels) {
        memset(out->rgb, 32, (size_t)sheet_w * (size_t)strip * 3);
        static const uint8_t white[3] = {255, 255, 255};
        for (int c = 0; c < n_columns; c++) {
            if (!labels[c]) continue;
            int x0 = c * (w + STEM_SHEET_GAP), tw = stem_font_text_width(labels[c], scale);
            int x = tw + 2 <= w ? x0 + (w - tw) / 2 : x0 + 1;
            stem_font_draw(out, x, scale + 1, x0 + w, labels[c], scale, white);
        }
    }
    size_t plane = (size_t)h * (size_t)w;
    for (int r = 0; r < rows; r++) {
        /* evenly from the first to the last frame, rounded to nearest */
        int frame = rows == 1 ? 0 : (int)(((long)r * (f - 1) * 2 + (rows - 1)) / (2L * (rows - 1)));
        for (int c = 0; c < n_columns; c++) {
            const float *src = (const float *)columns[c]->data + (size_t)frame * 3 * plane;
            int x0 = c * (w + STEM_SHEET_GAP), y0 = top + r * (h + STEM_SHEET_GAP);
            for (int y = 0; y < h; y++) {
                uint8_t *dst = out->rgb + ((size_t)(y0 + y) * (size_t)sheet_w + (size_t)x0) * 3;
                for (int x = 0; x < w; x++)
                    for (int k = 0; k < 3; k++)
                        dst[3 * x + k] = stem_pixel_to_u8(src[(size_t)k * plane + (size_t)y * w + x], STEM_QUANTIZE_ROUND);
            }
        }
    }
    return STEM_OK;
}

stem_status stem_contact_sheet_write(const char *path, const stem_tensor *const *columns, int n_columns, int max_rows) {
    return stem_contact_sheet_write_labeled(path, columns, NULL, n_columns, max_rows);
}

stem_status stem_contact_sheet_write_labeled(const char *path, const stem_tensor *const *columns,
                                             const char *const *labels, int n_columns, int max_rows) {
    stem_image sheet;
    stem_status s = stem_contact_sheet_render_labeled(columns, labels, n_columns, max_rows, &sheet);
    if (s != STEM_OK) return stem_error_context(s, "%s", path ? path : "contact sheet");
    s = stem_image_write_png(path, &sheet);
    stem_image_free(&sheet);
    return s;
}
