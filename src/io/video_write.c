#include "io/video_write.h"

#include "config.h" /* STEM_HAVE_FFMPEG */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "io/atomic_file.h"

#ifdef STEM_HAVE_FFMPEG
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

bool stem_video_write_available(void) { return true; }

static stem_status av_fail(const char *path, const char *what, int err) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = "";
    av_strerror(err, buf, sizeof buf);
    return stem_fail(STEM_E_IO, "%s: %s: %s", path, what, buf);
}

/* Sends one frame (or NULL to flush) and writes every packet the encoder returns. */
static stem_status encode(const char *path, AVCodecContext *enc, AVFormatContext *fmt, AVStream *st, AVFrame *frame,
                          AVPacket *pkt) {
    int r = avcodec_send_frame(enc, frame);
    if (r < 0) return av_fail(path, "encoding", r);
    for (;;) {
        r = avcodec_receive_packet(enc, pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return STEM_OK;
        if (r < 0) return av_fail(path, "encoding", r);
        if (pkt->duration == 0) pkt->duration = 1; /* one frame; else mp4 drops the last from its edit list */
        av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
        pkt->stream_index = st->index;
        r = av_interleaved_write_frame(fmt, pkt);
        if (r < 0) return av_fail(path, "writing", r);
    }
}

/* The container (from the file name) with one stream and its encoder opened for w x h
 * at fps: everything that can refuse a size or a name, before any frame exists. */
typedef struct video_out {
    AVFormatContext *fmt;
    AVStream *st;
    AVCodecContext *enc;
} video_out;

static void video_out_free(video_out *v) {
    avcodec_free_context(&v->enc);
    avformat_free_context(v->fmt);
    memset(v, 0, sizeof *v);
}

static stem_status video_out_open(const char *path, int w, int h, int fps, video_out *v) {
    memset(v, 0, sizeof *v);
    if (w < 1 || h < 1 || fps < 1) return stem_fail(STEM_E_ARG, "%s: %dx%d frames at %d fps", path, w, h, fps);
    if (h % 2 || w % 2)
        return stem_fail(STEM_E_ARG, "%s: %dx%d frames: video output needs even sizes (yuv420p)", path, w, h);
    av_log_set_level(AV_LOG_ERROR); /* x264's statistics would flood stderr */
    const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
    if (!codec) codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
    if (!codec) return stem_fail(STEM_E_UNSUPPORTED, "%s: this FFmpeg has neither libx264 nor an MPEG-4 encoder", path);
    stem_status s = STEM_OK;
    int r = avformat_alloc_output_context2(&v->fmt, NULL, NULL, path);
    if (r < 0 || !v->fmt) { s = av_fail(path, "no container for this file name", r); goto done; }
    v->st = avformat_new_stream(v->fmt, NULL);
    v->enc = avcodec_alloc_context3(codec);
    if (!v->st || !v->enc) { s = stem_fail(STEM_E_NOMEM, "%s: out of memory", path); goto done; }
    AVCodecContext *enc = v->enc;
    enc->width = w;
    enc->height = h;
    enc->pix_fmt = AV_PIX_FMT_YUV420P;
    enc->time_base = (AVRational){1, fps};
    enc->framerate = (AVRational){fps, 1};
    enc->gop_size = 12;
    enc->max_b_frames = 0; /* no reordering: every reader gets every frame back, in order */
    if (v->fmt->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (codec->id == AV_CODEC_ID_H264) av_opt_set(enc->priv_data, "crf", "18", 0);
    else {
        enc->flags |= AV_CODEC_FLAG_QSCALE;
        enc->global_quality = FF_QP2LAMBDA * 2;
    }
    if ((r = avcodec_open2(enc, codec, NULL)) < 0) { s = av_fail(path, "opening the encoder", r); goto done; }
    if ((r = avcodec_parameters_from_context(v->st->codecpar, enc)) < 0) { s = av_fail(path, "stream parameters", r); goto done; }
    v->st->time_base = enc->time_base;
done:
    if (s != STEM_OK) video_out_free(v);
    return s;
}

stem_status stem_video_write_check(const char *path, int width, int height, int fps) {
    video_out v;
    STEM_TRY(video_out_open(path, width, height, fps, &v));
    video_out_free(&v);
    return STEM_OK;
}

stem_status stem_video_write(const char *path, const stem_tensor *pixels, int fps, stem_quantize q) {
    if (pixels->ndim != 4 || pixels->shape[1] != 3 || pixels->dtype != STEM_F32 || !pixels->backend->host_memory)
        return stem_fail(STEM_E_ARG, "%s: video frames must be host f32 [F, 3, H, W]", path);
    int frames = (int)pixels->shape[0], h = (int)pixels->shape[2], w = (int)pixels->shape[3];
    if (frames < 1 || fps < 1) return stem_fail(STEM_E_ARG, "%s: no frames or fps < 1", path);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());

    video_out v;
    STEM_TRY(video_out_open(path, w, h, fps, &v));
    AVFormatContext *fmt = v.fmt;
    AVCodecContext *enc = v.enc;
    AVStream *st = v.st;
    AVFrame *frame = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    struct SwsContext *sws = NULL;
    stem_image img = {0};
    stem_status s = STEM_OK;
    bool opened = false;
    int r;
    if (!frame || !pkt) { s = stem_fail(STEM_E_NOMEM, "%s: out of memory", path); goto done; }
    /* the container comes from the final name, the bytes go to the temporary one */
    if ((r = avio_open(&fmt->pb, tmp, AVIO_FLAG_WRITE)) < 0) { s = av_fail(path, "cannot create the file", r); goto done; }
    opened = true;
    if ((r = avformat_write_header(fmt, NULL)) < 0) { s = av_fail(path, "writing the header", r); goto done; }
    frame->format = enc->pix_fmt;
    frame->width = w;
    frame->height = h;
    if ((r = av_frame_get_buffer(frame, 0)) < 0) { s = av_fail(path, "frame buffer", r); goto done; }
    sws = sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, AV_PIX_FMT_YUV420P, SWS_BICUBIC, NULL, NULL, NULL);
    if (!sws) { s = stem_fail(STEM_E_UNSUPPORTED, "%s: no RGB -> yuv420p conversion", path); goto done; }
    /* sws_scale's vector loads read up to 16 bytes past the last RGB row (valgrind: an
     * invalid read past a 3*w*h buffer), so the frame gets FFmpeg's input padding. */
    img.width = w;
    img.height = h;
    img.rgb = av_mallocz((size_t)3 * w * h + AV_INPUT_BUFFER_PADDING_SIZE);
    if (!img.rgb) { s = stem_fail(STEM_E_NOMEM, "%s: out of memory for a %dx%d frame", path, w, h); goto done; }
    const float *px = pixels->data;
    for (int f = 0; f < frames && s == STEM_OK; f++) {
        stem_pixels_to_image(px + (size_t)f * 3 * h * w, q, &img);
        if ((r = av_frame_make_writable(frame)) < 0) { s = av_fail(path, "frame buffer", r); break; }
        const uint8_t *src[1] = {img.rgb};
        int src_stride[1] = {3 * w};
        sws_scale(sws, src, src_stride, 0, h, frame->data, frame->linesize);
        frame->pts = f;
        s = encode(path, enc, fmt, st, frame, pkt);
    }
    if (s == STEM_OK) s = encode(path, enc, fmt, st, NULL, pkt);
    if (s == STEM_OK && (r = av_write_trailer(fmt)) < 0) s = av_fail(path, "writing the trailer", r);
done:
    if (opened) avio_closep(&fmt->pb);
    if (s == STEM_OK && rename(tmp, path) != 0) s = stem_fail(STEM_E_IO, "%s: cannot rename %s into place", path, tmp);
    if (s == STEM_OK) stem_sync_parent_dir(path);
    else if (opened) unlink(tmp);
    av_free(img.rgb); /* not stem_image_free: FFmpeg's allocator */
    sws_freeContext(sws);
    av_packet_free(&pkt);
    av_frame_free(&frame);
    video_out_free(&v);
    return s;
}

#else

bool stem_video_write_available(void) { return false; }

stem_status stem_video_write_check(const char *path, int width, int height, int fps) {
    (void)width;
    (void)height;
    (void)fps;
    return stem_fail(STEM_E_UNSUPPORTED, "%s: this stem was built without FFmpeg's libraries (no video output)", path);
}

stem_status stem_video_write(const char *path, const stem_tensor *pixels, int fps, stem_quantize q) {
    (void)pixels;
    (void)fps;
    (void)q;
    return stem_fail(STEM_E_UNSUPPORTED, "%s: this stem was built without FFmpeg's libraries (no video output)", path);
}

#endif
