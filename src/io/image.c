/* PNG (libpng) and JPEG (libjpeg) reading into RGB the way PIL's convert("RGB") does,
 * and atomic PNG writing. See image.h for the conversion rules.
 *
 * Both libraries report fatal errors by longjmp. Each reader keeps everything it
 * allocates in one struct that lives in memory (its address is taken), does the
 * setjmp in a small function and the work in another, so nothing the cleanup needs
 * can be clobbered by the jump. */
#include "io/image.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "io/atomic_file.h"
#include "io/image_limits.h"

stem_status stem_image_new(int width, int height, stem_image *out) {
    out->width = out->height = 0;
    out->rgb = NULL;
    if (width < 1 || height < 1 || width > STEM_IMAGE_MAX_DIM || height > STEM_IMAGE_MAX_DIM)
        return stem_fail(STEM_E_ARG, "image size %dx%d is outside 1x1..%dx%d", width, height, STEM_IMAGE_MAX_DIM,
                         STEM_IMAGE_MAX_DIM);
    out->rgb = calloc((size_t)width * (size_t)height, 3);
    if (!out->rgb) return stem_fail(STEM_E_NOMEM, "out of memory for a %dx%d image", width, height);
    out->width = width;
    out->height = height;
    return STEM_OK;
}

void stem_image_free(stem_image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

stem_image_format stem_image_sniff(const uint8_t *head, size_t len) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 8 && memcmp(head, png_sig, 8) == 0) return STEM_IMAGE_PNG;
    if (len >= 3 && head[0] == 0xff && head[1] == 0xd8 && head[2] == 0xff) return STEM_IMAGE_JPEG;
    return STEM_IMAGE_UNKNOWN;
}

static stem_status check_dims(const char *path, const char *what, unsigned long w, unsigned long h) {
    if (w < 1 || h < 1) return stem_fail(STEM_E_FORMAT, "%s: %s has an empty size %lux%lu", path, what, w, h);
    if (w > STEM_IMAGE_MAX_DIM || h > STEM_IMAGE_MAX_DIM)
        return stem_fail(STEM_E_ARG, "%s: %s is %lux%lu, larger than the %dx%d stem reads", path, what, w, h,
                         STEM_IMAGE_MAX_DIM, STEM_IMAGE_MAX_DIM);
    return STEM_OK;
}

/* ---- PNG ------------------------------------------------------------------------- */

typedef struct png_reader {
    const char *path;
    FILE *fp;
    int64_t file_size;
    png_structp png;
    png_infop info;
    png_bytep *rows;
    uint8_t *buf; /* 16-bit gray rows before clipping */
    stem_image *out;
    stem_image_info *meta;
    stem_status status; /* a failure found by our own checks inside the protected part */
    char msg[256];
} png_reader;

static void png_error_fn(png_structp png, png_const_charp msg) {
    png_reader *r = png_get_error_ptr(png);
    snprintf(r->msg, sizeof r->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_warning_fn(png_structp png, png_const_charp msg) {
    (void)png; /* warnings (unknown chunks, odd ICC profiles) do not change the pixels */
    (void)msg;
}

/* The protected part: every allocation goes into `r` so the caller can free it. */
static void png_read_body(png_reader *r) {
    png_structp png = r->png;
    png_infop info = r->info;
    png_init_io(png, r->fp);
    png_set_sig_bytes(png, 0);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    int ct = png_get_color_type(png, info);
    r->status = check_dims(r->path, "PNG image", w, h);
    if (r->status == STEM_OK) r->status = stem_image_check_pixels(r->path, "PNG image", w, h);
    if (r->status == STEM_OK)
        r->status = stem_png_check_file_size(r->path, r->file_size, w, h, png_get_channels(png, info), bit_depth);
    if (r->status != STEM_OK) return;

    bool has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    bool gray16 = ct == PNG_COLOR_TYPE_GRAY && bit_depth == 16;
    stem_image_info *m = r->meta;
    m->format = STEM_IMAGE_PNG;
    m->bit_depth = bit_depth;
    m->had_alpha = (ct & PNG_COLOR_MASK_ALPHA) != 0 || has_trns;
    switch (ct) {
    case PNG_COLOR_TYPE_GRAY: m->mode = bit_depth == 1 ? "1" : bit_depth == 16 ? "I;16" : "L"; break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: m->mode = bit_depth == 16 ? "RGBA" : "LA"; break; /* PIL: LA;16B -> RGBA */
    case PNG_COLOR_TYPE_PALETTE: m->mode = "P"; break;
    case PNG_COLOR_TYPE_RGB: m->mode = "RGB"; break;
    default: m->mode = "RGBA"; break;
    }

    /* PIL: palette -> RGB lookup, alpha dropped; low-bit gray scaled by replication;
     * 16 -> 8 bits by taking the high byte; tRNS never becomes alpha for gray/RGB. */
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16 && !gray16) png_set_strip_16(png);
    if (ct & PNG_COLOR_MASK_ALPHA || ct == PNG_COLOR_TYPE_PALETTE) png_set_strip_alpha(png);
    if ((ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) && !gray16) png_set_gray_to_rgb(png);
    if (gray16) png_set_swap(png); /* little-endian samples on every host we build for: read below as lo | hi<<8 */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t rowbytes = png_get_rowbytes(png, info);
    size_t want = gray16 ? (size_t)w * 2 : (size_t)w * 3;
    if (rowbytes != want) {
        r->status = stem_fail(STEM_E_FORMAT, "%s: PNG (colour type %d, %d-bit) decodes to %zu bytes a row, expected %zu",
                              r->path, ct, bit_depth, rowbytes, want);
        return;
    }
    r->status = stem_image_new((int)w, (int)h, r->out);
    if (r->status != STEM_OK) return;
    r->rows = malloc(sizeof *r->rows * h);
    if (gray16) r->buf = malloc(rowbytes * h);
    if (!r->rows || (gray16 && !r->buf)) {
        r->status = stem_fail(STEM_E_NOMEM, "%s: out of memory for a %ux%u PNG", r->path, (unsigned)w, (unsigned)h);
        return;
    }
    for (png_uint_32 y = 0; y < h; y++)
        r->rows[y] = gray16 ? r->buf + rowbytes * y : r->out->rgb + (size_t)w * 3 * y;
    png_read_image(png, r->rows);
    /* No png_read_end: trailing chunks after the image data are not needed (PIL does
     * not read them either), so a missing IEND is not an error. */
    if (gray16) {
        for (size_t i = 0; i < (size_t)w * h; i++) {
            unsigned v = (unsigned)r->buf[2 * i] | (unsigned)r->buf[2 * i + 1] << 8;
            uint8_t c = v > 255 ? 255 : (uint8_t)v;
            if (v > 255) m->clipped16 = true;
            r->out->rgb[3 * i] = r->out->rgb[3 * i + 1] = r->out->rgb[3 * i + 2] = c;
        }
    }
}

static stem_status read_png(FILE *fp, int64_t file_size, const char *path, stem_image *out, stem_image_info *meta) {
    png_reader r = {.path = path, .fp = fp, .file_size = file_size, .out = out, .meta = meta, .status = STEM_OK};
    r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, png_error_fn, png_warning_fn);
    if (r.png) r.info = png_create_info_struct(r.png);
    if (!r.png || !r.info) {
        png_destroy_read_struct(r.png ? &r.png : NULL, NULL, NULL);
        return stem_fail(STEM_E_NOMEM, "%s: out of memory starting libpng", path);
    }
    stem_status s;
    if (setjmp(png_jmpbuf(r.png)) == 0) {
        png_read_body(&r);
        s = r.status;
    } else {
        s = stem_fail(STEM_E_FORMAT, "%s: corrupt or truncated PNG (%s)", path, r.msg[0] ? r.msg : "libpng error");
    }
    png_destroy_read_struct(&r.png, &r.info, NULL);
    free(r.rows);
    free(r.buf);
    if (s != STEM_OK) stem_image_free(out);
    return s;
}

/* ---- JPEG ------------------------------------------------------------------------ */

typedef struct jpeg_reader {
    struct jpeg_error_mgr pub; /* first: libjpeg hands back a pointer to it */
    jmp_buf jump;
    bool truncated; /* the data ran out (libjpeg's end-of-file warning) */
    char msg[JMSG_LENGTH_MAX];
    const char *path;
    FILE *fp;
    int64_t file_size;
    struct jpeg_decompress_struct cinfo;
    bool created;
    uint8_t *row; /* one CMYK scanline */
    stem_image *out;
    stem_image_info *meta;
    stem_status status;
} jpeg_reader;

static void jpeg_error_exit_fn(j_common_ptr cinfo) {
    jpeg_reader *r = (jpeg_reader *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, r->msg);
    longjmp(r->jump, 1);
}

/* Warnings after which libjpeg goes on with made-up (zero) coefficients: missing or corrupt
 * scan data. PIL ignores all but running out of data; stem stops at each of them, so a file
 * with no scan data is an error, not a gray picture (issue 14). Harmless warnings (extraneous
 * bytes before a marker, an unknown JFIF revision, a bad ICC marker) are still ignored. */
static bool jpeg_warning_is_fatal(int code) {
    return code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE ||
           code == JWRN_ARITH_BAD_CODE || code == JWRN_MUST_RESYNC || code == JWRN_BOGUS_PROGRESSION ||
           code == JWRN_NOT_SEQUENTIAL;
}

static void jpeg_emit_message_fn(j_common_ptr cinfo, int level) {
    jpeg_reader *r = (jpeg_reader *)cinfo->err;
    if (level >= 0) return; /* trace messages */
    cinfo->err->num_warnings++;
    if (!jpeg_warning_is_fatal(cinfo->err->msg_code)) return;
    r->truncated = cinfo->err->msg_code == JWRN_JPEG_EOF;
    (*cinfo->err->format_message)(cinfo, r->msg);
    longjmp(r->jump, 1); /* as error_exit does: libjpeg allows leaving through a longjmp */
}

static void jpeg_output_message_fn(j_common_ptr cinfo) { (void)cinfo; }

/* PIL: CMYK JPEG samples are read inverted ("CMYK;I", Adobe's convention), then
 * cmyk2rgb: nk = 255 - k; r = clip8(nk - (c * nk) / 255) with PIL's rounding divide. */
static uint8_t pil_cmyk_channel(int c, int nk) {
    int tmp = c * nk + 128;
    int v = nk - (((tmp >> 8) + tmp) >> 8);
    return (uint8_t)(v <= 0 ? 0 : v < 256 ? v : 255);
}

static void jpeg_read_body(jpeg_reader *r) {
    struct jpeg_decompress_struct *ci = &r->cinfo;
    jpeg_create_decompress(ci);
    r->created = true;
    jpeg_stdio_src(ci, r->fp);
    jpeg_read_header(ci, TRUE);
    r->status = check_dims(r->path, "JPEG image", ci->image_width, ci->image_height);
    if (r->status == STEM_OK) r->status = stem_image_check_pixels(r->path, "JPEG image", ci->image_width, ci->image_height);
    if (r->status == STEM_OK) {
        /* before jpeg_start_decompress, which allocates (progressive: whole-image) buffers */
        stem_jpeg_sampling comp[MAX_COMPONENTS];
        int n = ci->num_components < MAX_COMPONENTS ? ci->num_components : MAX_COMPONENTS;
        for (int c = 0; c < n; c++) comp[c] = (stem_jpeg_sampling){ci->comp_info[c].h_samp_factor, ci->comp_info[c].v_samp_factor};
        r->status = stem_jpeg_check_file_size(r->path, r->file_size, ci->image_width, ci->image_height, comp, n,
                                              ci->arith_code);
    }
    if (r->status != STEM_OK) return;
    stem_image_info *m = r->meta;
    m->format = STEM_IMAGE_JPEG;
    m->bit_depth = ci->data_precision;
    switch (ci->num_components) {
    case 1: ci->out_color_space = JCS_GRAYSCALE; m->mode = "L"; break;
    case 3: ci->out_color_space = JCS_RGB; m->mode = "RGB"; break;
    case 4: ci->out_color_space = JCS_CMYK; m->mode = "CMYK"; break;
    default:
        r->status = stem_fail(STEM_E_UNSUPPORTED, "%s: JPEG with %d components (stem reads 1, 3 or 4)", r->path,
                              ci->num_components);
        return;
    }
    jpeg_start_decompress(ci);
    int w = (int)ci->output_width, h = (int)ci->output_height, nc = ci->output_components;
    r->status = stem_image_new(w, h, r->out);
    if (r->status != STEM_OK) return;
    r->row = malloc((size_t)w * (size_t)nc);
    if (!r->row) {
        r->status = stem_fail(STEM_E_NOMEM, "%s: out of memory for a %dx%d JPEG", r->path, w, h);
        return;
    }
    while ((int)ci->output_scanline < h) {
        int y = (int)ci->output_scanline;
        uint8_t *dst = r->out->rgb + (size_t)y * (size_t)w * 3;
        JSAMPROW row = nc == 3 ? dst : r->row;
        if (jpeg_read_scanlines(ci, &row, 1) != 1) {
            r->truncated = true;
            break;
        }
        if (nc == 1) {
            for (int x = w - 1; x >= 0; x--) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = r->row[x];
        } else if (nc == 4) {
            for (int x = 0; x < w; x++) {
                const uint8_t *p = r->row + 4 * x;
                int nk = p[3]; /* 255 - (255 - k_raw) */
                dst[3 * x + 0] = pil_cmyk_channel(255 - p[0], nk);
                dst[3 * x + 1] = pil_cmyk_channel(255 - p[1], nk);
                dst[3 * x + 2] = pil_cmyk_channel(255 - p[2], nk);
            }
        }
    }
    if (r->truncated) r->status = stem_fail(STEM_E_FORMAT, "%s: truncated JPEG (the data ends before the image does)", r->path);
}

static stem_status read_jpeg(FILE *fp, int64_t file_size, const char *path, stem_image *out, stem_image_info *meta) {
    jpeg_reader r;
    memset(&r, 0, sizeof r);
    r.path = path;
    r.fp = fp;
    r.file_size = file_size;
    r.out = out;
    r.meta = meta;
    r.cinfo.err = jpeg_std_error(&r.pub);
    r.pub.error_exit = jpeg_error_exit_fn;
    r.pub.emit_message = jpeg_emit_message_fn;
    r.pub.output_message = jpeg_output_message_fn;
    stem_status s;
    if (setjmp(r.jump) == 0) {
        jpeg_read_body(&r);
        s = r.status;
    } else if (r.truncated && out->rgb) { /* ran out inside the image data, not the header */
        s = stem_fail(STEM_E_FORMAT, "%s: truncated JPEG (the data ends before the image does)", path);
    } else {
        s = stem_fail(STEM_E_FORMAT, "%s: corrupt or truncated JPEG (%s)", path, r.msg);
    }
    if (r.created) jpeg_destroy_decompress(&r.cinfo);
    free(r.row);
    if (s != STEM_OK) stem_image_free(out);
    return s;
}

/* ---- entry points ---------------------------------------------------------------- */

stem_status stem_image_read(const char *path, stem_image *out, stem_image_info *info) {
    stem_image_info scratch;
    if (!info) info = &scratch;
    memset(info, 0, sizeof *info);
    out->width = out->height = 0;
    out->rgb = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return stem_fail(STEM_E_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t head[8];
    size_t n = fread(head, 1, sizeof head, fp);
    if (ferror(fp)) {
        int e = errno;
        fclose(fp);
        return stem_fail(STEM_E_IO, "%s: cannot read: %s", path, strerror(e));
    }
    stem_image_format f = stem_image_sniff(head, n);
    struct stat st;
    int64_t file_size = fstat(fileno(fp), &st) == 0 ? (int64_t)st.st_size : -1;
    stem_status s;
    if (f == STEM_IMAGE_UNKNOWN) {
        s = n == 0 ? stem_fail(STEM_E_FORMAT, "%s: empty file, not a PNG or JPEG image", path)
                   : stem_fail(STEM_E_FORMAT, "%s: not a PNG or JPEG image (unrecognised first bytes)", path);
    } else if (fseek(fp, 0, SEEK_SET) != 0) {
        s = stem_fail(STEM_E_IO, "%s: cannot seek: %s", path, strerror(errno));
    } else {
        s = f == STEM_IMAGE_PNG ? read_png(fp, file_size, path, out, info) : read_jpeg(fp, file_size, path, out, info);
    }
    fclose(fp);
    return s;
}

typedef struct png_writer {
    png_structp png;
    png_infop info;
    png_bytep *rows;
    char msg[256];
} png_writer;

static void png_write_error_fn(png_structp png, png_const_charp msg) {
    png_writer *w = png_get_error_ptr(png);
    snprintf(w->msg, sizeof w->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_write_body(png_writer *w, FILE *fp, const stem_image *img) {
    png_init_io(w->png, fp);
    png_set_IHDR(w->png, w->info, (png_uint_32)img->width, (png_uint_32)img->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(w->png, w->info);
    for (int y = 0; y < img->height; y++) w->rows[y] = img->rgb + (size_t)y * (size_t)img->width * 3;
    png_write_image(w->png, w->rows);
    png_write_end(w->png, NULL);
}

stem_status stem_image_write_png(const char *path, const stem_image *img) {
    if (!img || !img->rgb || img->width < 1 || img->height < 1 || img->width > STEM_IMAGE_MAX_DIM ||
        img->height > STEM_IMAGE_MAX_DIM)
        return stem_fail(STEM_E_ARG, "%s: no image to write (size %dx%d)", path, img ? img->width : 0, img ? img->height : 0);
    png_writer w;
    memset(&w, 0, sizeof w);
    w.rows = malloc(sizeof *w.rows * (size_t)img->height);
    if (!w.rows) return stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
    stem_atomic_file af;
    stem_status s = stem_atomic_open(path, &af);
    if (s != STEM_OK) {
        free(w.rows);
        return s;
    }
    w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w, png_write_error_fn, png_warning_fn);
    if (w.png) w.info = png_create_info_struct(w.png);
    if (!w.png || !w.info) {
        s = stem_fail(STEM_E_NOMEM, "%s: out of memory starting libpng", path);
    } else if (setjmp(png_jmpbuf(w.png)) == 0) {
        png_write_body(&w, af.fp, img);
    } else {
        s = stem_fail(STEM_E_IO, "%s: writing PNG failed (%s)", path, w.msg);
    }
    if (w.png) png_destroy_write_struct(&w.png, w.info ? &w.info : NULL);
    free(w.rows);
    if (s != STEM_OK) {
        stem_atomic_abort(&af);
        return s;
    }
    return stem_atomic_commit(&af);
}
