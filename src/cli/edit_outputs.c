/* `stem edit`'s frames, sheet and temporal numbers (see edit_outputs.h). */
#include "cli/edit_outputs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/host.h"
#include "io/bitmap_font.h"
#include "io/contact_sheet.h"
#include "io/frames.h"
#include "io/video_write.h"

const char *edit_outputs_no_video(int out_w, int out_h) {
    if (!stem_video_write_available()) return "built without FFmpeg";
    if (out_w % 2 || out_h % 2) return "odd frame size";
    return NULL;
}

static double unit(float x) {
    double v = (double)x / 2.0 + 0.5;
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

/* Sums of the temporal numbers over one pair of consecutive frames (n values each). */
typedef struct sums {
    double temporal_edit, temporal_rec, flicker_in, flicker_rec, flicker_edit;
} sums;

static void add_pair(sums *s, const float *in0, const float *in1, const float *rec0, const float *rec1, const float *ed0,
                     const float *ed1, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double din = unit(in1[i]) - unit(in0[i]), drec = unit(rec1[i]) - unit(rec0[i]), ded = unit(ed1[i]) - unit(ed0[i]);
        s->temporal_edit += fabs(ded - din);
        s->temporal_rec += fabs(drec - din);
        s->flicker_in += fabs(din);
        s->flicker_rec += fabs(drec);
        s->flicker_edit += fabs(ded);
    }
}

/* The next frame of `fs` as pixels [3, h, w]: its top-left h x w region (the input is at
 * least that large; frames/recon is exactly that size). */
static stem_status next_frame(stem_frame_source *fs, const char *dir, int h, int w, stem_image *img, float *buf,
                              float *out) {
    bool done = false;
    STEM_TRY(stem_frame_source_next(fs, img, &done));
    if (done) return stem_fail(STEM_E_FORMAT, "%s: fewer frames than the inversion's manifest says", dir);
    if (img->width < w || img->height < h)
        return stem_fail(STEM_E_FORMAT, "%s/%s is %dx%d, smaller than the %dx%d output", dir, stem_frame_source_name(fs),
                         img->width, img->height, w, h);
    stem_image_to_pixels(img, buf);
    const size_t plane = (size_t)img->width * (size_t)img->height;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < h; y++)
            memcpy(out + ((size_t)c * h + y) * (size_t)w, buf + c * plane + (size_t)y * img->width, sizeof(float) * (size_t)w);
    return STEM_OK;
}

stem_status edit_outputs_compare(const edit_inversion *inv, const stem_tensor *edit, const char *sheet_path,
                                 edit_metrics *m) {
    memset(m, 0, sizeof *m);
    const int Fe = (int)edit->shape[0], h = (int)edit->shape[2], w = (int)edit->shape[3];
    const size_t n = (size_t)3 * (size_t)h * (size_t)w;
    const int rows = Fe < EDIT_SHEET_ROWS ? Fe : EDIT_SHEET_ROWS;
    char in_dir[PATH_MAX + 16], rec_dir[PATH_MAX + 16];
    snprintf(in_dir, sizeof in_dir, "%s/frames/input", inv->dir);
    snprintf(rec_dir, sizeof rec_dir, "%s/frames/recon", inv->dir);
    stem_frame_source *fin = NULL, *frec = NULL;
    stem_image img = {0};
    float *buf = NULL, *cur = NULL;
    stem_tensor col[3] = {{0}};
    int64_t cshape[4] = {rows, 3, h, w};
    stem_status s = stem_frame_source_open(in_dir, NULL, NULL, &fin);
    if (s == STEM_OK) s = stem_frame_source_open(rec_dir, NULL, NULL, &frec);
    for (int c = 0; c < 3 && s == STEM_OK; c++) s = stem_tensor_new(stem_host(), STEM_F32, 4, cshape, &col[c]);
    /* buf: one input frame at its own size; cur: [input, recon] x [previous, current] */
    if (s == STEM_OK && (!(buf = malloc(sizeof(float) * 3 * (size_t)inv->width * (size_t)inv->height)) ||
                         !(cur = malloc(sizeof(float) * 4 * n))))
        s = stem_fail(STEM_E_NOMEM, "comparing the edit with the input: out of memory");
    sums acc = {0};
    int row = 0;
    for (int f = 0; f < Fe && s == STEM_OK; f++) {
        float *in_now = cur + (size_t)(f % 2) * n, *in_prev = cur + (size_t)((f + 1) % 2) * n;
        float *rec_now = cur + (size_t)(2 + f % 2) * n, *rec_prev = cur + (size_t)(2 + (f + 1) % 2) * n;
        const float *ed_now = (const float *)edit->data + (size_t)f * n;
        s = next_frame(fin, in_dir, h, w, &img, buf, in_now);
        if (s == STEM_OK) s = next_frame(frec, rec_dir, h, w, &img, buf, rec_now);
        if (s != STEM_OK) break;
        if (f > 0) add_pair(&acc, in_prev, in_now, rec_prev, rec_now, ed_now - n, ed_now, n);
        /* sheet row r shows frame round(r (Fe - 1) / (rows - 1)), as io/contact_sheet.h spreads them */
        int want = rows == 1 ? 0 : (int)(((long)row * (Fe - 1) * 2 + (rows - 1)) / (2L * (rows - 1)));
        if (row < rows && f == want) {
            memcpy((float *)col[0].data + (size_t)row * n, in_now, sizeof(float) * n);
            memcpy((float *)col[1].data + (size_t)row * n, rec_now, sizeof(float) * n);
            memcpy((float *)col[2].data + (size_t)row * n, ed_now, sizeof(float) * n);
            row++;
        }
    }
    if (s == STEM_OK) {
        const double pairs = Fe > 1 ? (double)(Fe - 1) * (double)n : 1.0;
        m->frames = Fe;
        m->temporal_edit = acc.temporal_edit / pairs;
        m->temporal_reconstruction = acc.temporal_rec / pairs;
        m->flicker_input = acc.flicker_in / pairs;
        m->flicker_reconstruction = acc.flicker_rec / pairs;
        m->flicker_edit = acc.flicker_edit / pairs;
        /* "reconstruction" when it fits the column at the font's smallest scale */
        const char *labels[3] = {"input", stem_font_text_width("reconstruction", 1) + 2 <= w ? "reconstruction" : "recon",
                                 "edit"};
        const stem_tensor *cols[3] = {&col[0], &col[1], &col[2]};
        s = stem_contact_sheet_write_labeled(sheet_path, cols, labels, 3, rows);
    }
    stem_image_free(&img);
    free(buf);
    free(cur);
    for (int c = 0; c < 3; c++) stem_tensor_free(&col[c]);
    if (fin) stem_frame_source_close(fin);
    if (frec) stem_frame_source_close(frec);
    return s;
}
