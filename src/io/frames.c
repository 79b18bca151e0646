/* Frame sources (directory of PNG/JPEG, single image, FFmpeg video) and whole-clip
 * loading into model pixels. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* strdup, strcasecmp */
#endif
#include "config.h" /* STEM_HAVE_FFMPEG */
#include "io/frames.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/backend.h"
#include "core/host.h"
#include "io/atomic_file.h"

#ifdef STEM_HAVE_FFMPEG
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>
#endif

#define note(fn, user, ...) stem_remark(fn, user, "note", __VA_ARGS__)

static bool has_image_extension(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* ---- the source ------------------------------------------------------------------ */

typedef enum { SRC_DIR, SRC_IMAGE, SRC_VIDEO } source_kind;

struct stem_frame_source {
    source_kind kind;
    char *path;
    char **files; /* SRC_DIR: sorted names; SRC_IMAGE: the path */
    int n_files, next;
    char name[64];   /* video: "frame N" */
    const char *last; /* name of the frame returned last */
#ifdef STEM_HAVE_FFMPEG
    AVFormatContext *fmt;
    AVCodecContext *dec;
    struct SwsContext *sws;
    AVPacket *pkt;
    AVFrame *frame;
    uint8_t *scratch; /* RGB24 rows from swscale, aligned and padded */
    size_t scratch_size;
    int stream;
    bool flushing, finished;
#endif
};

static stem_status open_dir(stem_frame_source *src, stem_note_fn nfn, void *user) {
    DIR *d = opendir(src->path);
    if (!d) return stem_fail(STEM_E_IO, "frames directory '%s': cannot open: %s", src->path, strerror(errno));
    int cap = 0, skipped = 0;
    char skipped_names[256] = "";
    struct dirent *e;
    stem_status s = STEM_OK;
    size_t plen = strlen(src->path);
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        bool image = has_image_extension(e->d_name);
        if (image) {
            /* a directory (or a dangling link) named like an image is skipped too */
            size_t n = plen + strlen(e->d_name) + 2;
            char *full = malloc(n);
            struct stat st;
            if (!full) {
                s = stem_fail(STEM_E_NOMEM, "frames directory '%s': out of memory", src->path);
                break;
            }
            snprintf(full, n, "%s/%s", src->path, e->d_name);
            image = stat(full, &st) == 0 && S_ISREG(st.st_mode);
            free(full);
        }
        if (!image) {
            if (skipped < 3) {
                size_t used = strlen(skipped_names);
                snprintf(skipped_names + used, sizeof skipped_names - used, "%s'%s'", skipped ? ", " : "", e->d_name);
            }
            skipped++;
            continue;
        }
        if (src->n_files == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(src->files, sizeof *grown * (size_t)cap);
            if (!grown) {
                s = stem_fail(STEM_E_NOMEM, "frames directory '%s': out of memory", src->path);
                break;
            }
            src->files = grown;
        }
        if (!(src->files[src->n_files] = strdup(e->d_name))) {
            s = stem_fail(STEM_E_NOMEM, "frames directory '%s': out of memory", src->path);
            break;
        }
        src->n_files++;
    }
    closedir(d);
    if (s != STEM_OK) return s;
    if (src->n_files == 0)
        return stem_fail(STEM_E_FORMAT, "frames directory '%s' holds no PNG or JPEG files (.png, .jpg, .jpeg)%s",
                         src->path, skipped ? "; it has other entries only" : "; it is empty");
    if (skipped)
        note(nfn, user, "frames directory '%s': skipped %d entr%s that %s not PNG/JPEG files: %s%s", src->path, skipped,
             skipped == 1 ? "y" : "ies", skipped == 1 ? "is" : "are", skipped_names, skipped > 3 ? ", ..." : "");
    qsort(src->files, (size_t)src->n_files, sizeof *src->files, cmp_names);
    return STEM_OK;
}

#ifdef STEM_HAVE_FFMPEG
static const char *av_error_text(int err, char *buf, size_t len) {
    if (av_strerror(err, buf, len) < 0) snprintf(buf, len, "error %d", err);
    return buf;
}

static stem_status open_video(stem_frame_source *src) {
    char eb[128];
    /* FFmpeg's own messages would duplicate ours (which name the file and frame) */
    if (av_log_get_level() > AV_LOG_FATAL) av_log_set_level(AV_LOG_FATAL);
    int ret = avformat_open_input(&src->fmt, src->path, NULL, NULL);
    if (ret < 0)
        return stem_fail(STEM_E_FORMAT, "'%s' is neither a directory of frames, a PNG/JPEG file nor a video FFmpeg can open (%s)",
                         src->path, av_error_text(ret, eb, sizeof eb));
    if ((ret = avformat_find_stream_info(src->fmt, NULL)) < 0)
        return stem_fail(STEM_E_FORMAT, "video '%s': cannot read stream information (%s)", src->path,
                         av_error_text(ret, eb, sizeof eb));
    const AVCodec *codec = NULL;
    src->stream = av_find_best_stream(src->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (src->stream < 0)
        return stem_fail(STEM_E_FORMAT, "'%s' has no video stream FFmpeg can decode (%s)", src->path,
                         av_error_text(src->stream, eb, sizeof eb));
    src->dec = avcodec_alloc_context3(codec);
    src->pkt = av_packet_alloc();
    src->frame = av_frame_alloc();
    if (!src->dec || !src->pkt || !src->frame) return stem_fail(STEM_E_NOMEM, "video '%s': out of memory", src->path);
    if ((ret = avcodec_parameters_to_context(src->dec, src->fmt->streams[src->stream]->codecpar)) < 0 ||
        (ret = avcodec_open2(src->dec, codec, NULL)) < 0)
        return stem_fail(STEM_E_FORMAT, "video '%s': cannot start the %s decoder (%s)", src->path, codec->name,
                         av_error_text(ret, eb, sizeof eb));
    return STEM_OK;
}

static stem_status next_video(stem_frame_source *src, stem_image *out, bool *done) {
    char eb[128];
    int index = src->next;
    for (;;) {
        if (src->finished) {
            *done = true;
            return STEM_OK;
        }
        int ret = avcodec_receive_frame(src->dec, src->frame);
        if (ret == AVERROR_EOF) {
            src->finished = true;
            continue;
        }
        if (ret == 0) break;
        if (ret != AVERROR(EAGAIN))
            return stem_fail(STEM_E_FORMAT, "video '%s': frame %d: decoding failed (%s)", src->path, index,
                             av_error_text(ret, eb, sizeof eb));
        if (src->flushing) { /* should not happen: a flushed decoder ends with EOF */
            src->finished = true;
            continue;
        }
        ret = av_read_frame(src->fmt, src->pkt);
        if (ret == AVERROR_EOF) {
            src->flushing = true;
            ret = avcodec_send_packet(src->dec, NULL);
        } else if (ret < 0) {
            return stem_fail(STEM_E_FORMAT, "video '%s': frame %d: reading failed (%s)", src->path, index,
                             av_error_text(ret, eb, sizeof eb));
        } else {
            ret = src->pkt->stream_index == src->stream ? avcodec_send_packet(src->dec, src->pkt) : 0;
            av_packet_unref(src->pkt);
        }
        if (ret < 0 && ret != AVERROR(EAGAIN) && ret != AVERROR_EOF)
            return stem_fail(STEM_E_FORMAT, "video '%s': frame %d: corrupt data (%s)", src->path, index,
                             av_error_text(ret, eb, sizeof eb));
    }
    AVFrame *f = src->frame;
    stem_status s = stem_image_new(f->width, f->height, out);
    if (s != STEM_OK) {
        av_frame_unref(f);
        return stem_error_context(s, "video '%s': frame %d", src->path, index);
    }
    /* Like torchvision.io.read_video (PyAV's to_rgb()): swscale, bilinear, its default
     * BT.601 coefficients and the frame's own range. */
    src->sws = sws_getCachedContext(src->sws, f->width, f->height, (enum AVPixelFormat)f->format, f->width, f->height,
                                    AV_PIX_FMT_RGB24, SWS_BILINEAR, NULL, NULL, NULL);
    if (!src->sws) {
        av_frame_unref(f);
        stem_image_free(out);
        return stem_fail(STEM_E_UNSUPPORTED, "video '%s': frame %d: cannot convert pixel format %d to RGB", src->path,
                         index, f->format);
    }
    /* swscale's SIMD stores run past the end of a tight buffer: convert into an
     * aligned, padded scratch buffer and copy the rows out. */
    int stride = (out->width * 3 + 63) & ~63;
    size_t need = (size_t)stride * (size_t)(out->height + 1) + 64;
    if (need > src->scratch_size) {
        av_free(src->scratch);
        src->scratch = av_malloc(need);
        src->scratch_size = src->scratch ? need : 0;
    }
    if (!src->scratch) {
        av_frame_unref(f);
        stem_image_free(out);
        return stem_fail(STEM_E_NOMEM, "video '%s': frame %d: out of memory", src->path, index);
    }
    uint8_t *dst[4] = {src->scratch, NULL, NULL, NULL};
    int dst_stride[4] = {stride, 0, 0, 0};
    sws_scale(src->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, dst_stride);
    for (int y = 0; y < out->height; y++)
        memcpy(out->rgb + (size_t)y * (size_t)out->width * 3, src->scratch + (size_t)y * (size_t)stride, (size_t)out->width * 3);
    av_frame_unref(f);
    *done = false;
    return STEM_OK;
}
#endif

stem_status stem_frame_source_open(const char *path, stem_note_fn nfn, void *user, stem_frame_source **out) {
    *out = NULL;
    if (!path || !*path) return stem_fail(STEM_E_ARG, "frames: no input path given");
    struct stat st;
    if (stat(path, &st) != 0)
        return stem_fail(errno == ENOENT ? STEM_E_NOTFOUND : STEM_E_IO, "input frames '%s': %s", path, strerror(errno));
    stem_frame_source *src = calloc(1, sizeof *src);
    if (!src || !(src->path = strdup(path))) {
        free(src);
        return stem_fail(STEM_E_NOMEM, "input frames '%s': out of memory", path);
    }
    stem_status s = STEM_OK;
    if (S_ISDIR(st.st_mode)) {
        src->kind = SRC_DIR;
        s = open_dir(src, nfn, user);
    } else if (has_image_extension(path)) {
        src->kind = SRC_IMAGE;
        src->files = malloc(sizeof *src->files);
        if (!src->files || !(src->files[0] = strdup(path)))
            s = stem_fail(STEM_E_NOMEM, "input frames '%s': out of memory", path);
        else
            src->n_files = 1;
    } else {
        src->kind = SRC_VIDEO;
#ifdef STEM_HAVE_FFMPEG
        s = open_video(src);
#else
        s = stem_fail(STEM_E_UNSUPPORTED,
                      "'%s' looks like a video, but this stem was built without FFmpeg (install libavformat-dev "
                      "libavcodec-dev libswscale-dev libavutil-dev and re-run configure), or pass a directory of "
                      "PNG/JPEG frames",
                      path);
#endif
    }
    if (s != STEM_OK) {
        stem_frame_source_close(src);
        return s;
    }
    *out = src;
    return STEM_OK;
}

int stem_frame_source_count(const stem_frame_source *src) { return src->kind == SRC_VIDEO ? -1 : src->n_files; }

const char *stem_frame_source_name(const stem_frame_source *src) { return src->last ? src->last : ""; }

stem_status stem_frame_source_next(stem_frame_source *src, stem_image *frame, bool *done) {
    stem_image_free(frame);
    *done = false;
    if (src->kind == SRC_VIDEO) {
#ifdef STEM_HAVE_FFMPEG
        STEM_TRY(next_video(src, frame, done));
        if (!*done) {
            snprintf(src->name, sizeof src->name, "frame %d", src->next);
            src->last = src->name;
            src->next++;
        }
        return STEM_OK;
#else
        return stem_fail(STEM_E_UNSUPPORTED, "'%s': built without FFmpeg", src->path);
#endif
    }
    if (src->next >= src->n_files) {
        *done = true;
        return STEM_OK;
    }
    const char *name = src->files[src->next];
    src->last = name;
    stem_status s;
    if (src->kind == SRC_DIR) {
        size_t n = strlen(src->path) + strlen(name) + 2;
        char *full = malloc(n);
        if (!full) return stem_fail(STEM_E_NOMEM, "frames directory '%s': out of memory", src->path);
        snprintf(full, n, "%s/%s", src->path, name);
        s = stem_image_read(full, frame, NULL);
        free(full);
    } else {
        s = stem_image_read(name, frame, NULL);
    }
    if (s != STEM_OK) return stem_error_context(s, "frame %d", src->next);
    src->next++;
    return STEM_OK;
}

void stem_frame_source_close(stem_frame_source *src) {
    if (!src) return;
    for (int i = 0; i < src->n_files; i++) free(src->files[i]);
    free(src->files);
#ifdef STEM_HAVE_FFMPEG
    sws_freeContext(src->sws);
    av_free(src->scratch);
    av_frame_free(&src->frame);
    av_packet_free(&src->pkt);
    avcodec_free_context(&src->dec);
    avformat_close_input(&src->fmt);
#endif
    free(src->path);
    free(src);
}

/* ---- whole clips ----------------------------------------------------------------- */

void stem_frames_free(stem_frames *f) {
    if (!f) return;
    stem_tensor_free(&f->pixels);
    if (f->names)
        for (int i = 0; i < f->count; i++) free(f->names[i]);
    free(f->names);
    memset(f, 0, sizeof *f);
}

stem_status stem_frames_load(const stem_frames_request *req, stem_frames *out) {
    memset(out, 0, sizeof *out);
    if (!req || !req->path || !*req->path) return stem_fail(STEM_E_ARG, "frames: no input path given");
    if (req->width < 1 || req->height < 1 || req->width > STEM_IMAGE_MAX_DIM || req->height > STEM_IMAGE_MAX_DIM)
        return stem_fail(STEM_E_ARG, "frame size %dx%d (width x height): each must be 1..%d", req->width, req->height,
                         STEM_IMAGE_MAX_DIM);
    if (req->n_frames < 0) return stem_fail(STEM_E_ARG, "n_frames %d: must be positive (or 0 for all)", req->n_frames);

    const char *count_name = req->n_frames_name && *req->n_frames_name ? req->n_frames_name : "n_frames";
    stem_frame_source *src;
    STEM_TRY(stem_frame_source_open(req->path, req->note, req->note_user, &src));
    int known = stem_frame_source_count(src);
    if (req->n_frames > 0 && known >= 0 && req->n_frames > known) {
        stem_frame_source_close(src);
        return stem_fail(STEM_E_ARG, "'%s' has %d frame%s, but %s asks for %d", req->path, known,
                         known == 1 ? "" : "s", count_name, req->n_frames);
    }
    int want = req->n_frames > 0 ? req->n_frames : known; /* -1: a whole video, count unknown */
    size_t plane = (size_t)req->width * (size_t)req->height * 3;
    int cap = want > 0 ? want : 16, count = 0;
    /* A known count goes straight into the tensor; a whole video grows a buffer. */
    float *buf = NULL;
    stem_status s = STEM_OK;
    if (want > 0) {
        int64_t shape[4] = {want, 3, req->height, req->width};
        s = stem_tensor_new(stem_host(), STEM_F32, 4, shape, &out->pixels);
        if (s == STEM_OK) buf = out->pixels.data;
    } else {
        buf = malloc(sizeof *buf * plane * (size_t)cap);
    }
    char **names = calloc((size_t)cap, sizeof *names);
    stem_image frame = {0}, sized = {0};
    if (s == STEM_OK && (!buf || !names)) s = stem_fail(STEM_E_NOMEM, "'%s': out of memory for %d frames", req->path, cap);
    while (s == STEM_OK && (want < 0 || count < want)) {
        bool done;
        s = stem_frame_source_next(src, &frame, &done);
        if (s != STEM_OK || done) break;
        if (count == 0) {
            out->src_width = frame.width;
            out->src_height = frame.height;
        } else if (frame.width != out->src_width || frame.height != out->src_height) {
            out->mixed_sizes = true;
        }
        if (count == cap) {
            int ncap = 2 * cap;
            float *nb = realloc(buf, sizeof *buf * plane * (size_t)ncap);
            char **nn = nb ? realloc(names, sizeof *names * (size_t)ncap) : NULL;
            if (nb) buf = nb;
            if (nn) names = nn;
            if (!nb || !nn) {
                s = stem_fail(STEM_E_NOMEM, "'%s': out of memory for %d frames", req->path, ncap);
                break;
            }
            memset(names + cap, 0, sizeof *names * (size_t)(ncap - cap));
            cap = ncap;
        }
        s = stem_image_resize(&frame, req->width, req->height, &sized);
        if (s != STEM_OK) {
            stem_error_context(s, "'%s': %s", req->path, stem_frame_source_name(src));
            break;
        }
        stem_image_to_pixels(&sized, buf + plane * (size_t)count);
        stem_image_free(&sized);
        if (!(names[count] = strdup(stem_frame_source_name(src)))) {
            s = stem_fail(STEM_E_NOMEM, "'%s': out of memory", req->path);
            break;
        }
        count++;
    }
    stem_image_free(&frame);
    if (s == STEM_OK && count == 0) s = stem_fail(STEM_E_FORMAT, "'%s': no frames could be read", req->path);
    if (s == STEM_OK && req->n_frames > 0 && count < req->n_frames)
        s = stem_fail(STEM_E_ARG, "'%s' has %d frame%s, but %s asks for %d", req->path, count, count == 1 ? "" : "s",
                      count_name, req->n_frames);
    if (s == STEM_OK && want < 0) {
        int64_t shape[4] = {count, 3, req->height, req->width};
        s = stem_tensor_new(stem_host(), STEM_F32, 4, shape, &out->pixels);
        if (s == STEM_OK) memcpy(out->pixels.data, buf, sizeof *buf * plane * (size_t)count);
    }
    int available = known >= 0 ? known : count;
    stem_frame_source_close(src);
    if (want < 0) free(buf);
    if (s != STEM_OK) {
        if (names)
            for (int i = 0; i < cap; i++) free(names[i]);
        free(names);
        stem_tensor_free(&out->pixels);
        memset(out, 0, sizeof *out);
        return s;
    }
    out->names = names;
    out->available = available;
    out->count = count;
    out->width = req->width;
    out->height = req->height;
    return STEM_OK;
}

static stem_status check_pixels(const stem_tensor *p, const char *what) {
    if (!p || p->dtype != STEM_F32 || p->ndim != 4 || p->shape[1] != 3 || !p->data || !p->backend ||
        !p->backend->host_memory) {
        char b[STEM_SHAPE_STR_LEN];
        return stem_fail(STEM_E_SHAPE, "%s: expected host f32 pixels [F, 3, H, W], got %s", what,
                         p ? stem_shape_str(p, b, sizeof b) : "nothing");
    }
    if (p->shape[2] < 1 || p->shape[3] < 1 || p->shape[2] > STEM_IMAGE_MAX_DIM || p->shape[3] > STEM_IMAGE_MAX_DIM)
        return stem_fail(STEM_E_SHAPE, "%s: frame size %lldx%lld is outside 1..%d", what, (long long)p->shape[3],
                         (long long)p->shape[2], STEM_IMAGE_MAX_DIM);
    return STEM_OK;
}

stem_status stem_pixels_frame_to_image(const stem_tensor *pixels, int index, stem_quantize q, stem_image *out) {
    out->rgb = NULL;
    out->width = out->height = 0;
    STEM_TRY(check_pixels(pixels, "pixels to image"));
    if (index < 0 || index >= pixels->shape[0])
        return stem_fail(STEM_E_ARG, "pixels to image: frame %d of %lld", index, (long long)pixels->shape[0]);
    int h = (int)pixels->shape[2], w = (int)pixels->shape[3];
    STEM_TRY(stem_image_new(w, h, out));
    stem_pixels_to_image((const float *)pixels->data + (size_t)index * 3 * (size_t)h * (size_t)w, q, out);
    return STEM_OK;
}

stem_status stem_frames_write_dir(const char *dir, const stem_tensor *pixels, stem_quantize q) {
    STEM_TRY(check_pixels(pixels, dir ? dir : "frames"));
    STEM_TRY(stem_mkdirs(dir));
    size_t n = strlen(dir) + 32;
    char *path = malloc(n);
    if (!path) return stem_fail(STEM_E_NOMEM, "%s: out of memory", dir);
    stem_status s = STEM_OK;
    for (int i = 0; s == STEM_OK && i < pixels->shape[0]; i++) {
        stem_image img;
        s = stem_pixels_frame_to_image(pixels, i, q, &img);
        if (s != STEM_OK) break;
        snprintf(path, n, "%s/%05d.png", dir, i);
        s = stem_image_write_png(path, &img);
        stem_image_free(&img);
    }
    free(path);
    return s;
}

stem_status stem_pixels_crop(const stem_tensor *pixels, int64_t height, int64_t width, stem_tensor *out) {
    memset(out, 0, sizeof *out);
    STEM_TRY(check_pixels(pixels, "crop"));
    const int64_t F = pixels->shape[0], H = pixels->shape[2], W = pixels->shape[3];
    if (height < 1 || width < 1 || height > H || width > W)
        return stem_fail(STEM_E_ARG, "crop: %lldx%lld is not within the %lldx%lld frames", (long long)width,
                         (long long)height, (long long)W, (long long)H);
    int64_t shape[4] = {F, 3, height, width};
    STEM_TRY(stem_tensor_new(stem_host(), STEM_F32, 4, shape, out));
    const float *src = pixels->data;
    float *dst = out->data;
    for (int64_t plane = 0; plane < F * 3; plane++) /* each [H, W] plane: its first rows, first columns */
        for (int64_t y = 0; y < height; y++)
            memcpy(dst + (plane * height + y) * width, src + (plane * H + y) * W, sizeof *dst * (size_t)width);
    return STEM_OK;
}
