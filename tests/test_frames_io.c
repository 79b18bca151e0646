/* Frame I/O: frame directories and videos (FFmpeg builds), frame output and contact
 * sheets, the synthetic clip. Images, PNG writing and output folders:
 * test_image_io.c. */
#include "test_io_util.h"

#ifdef STEM_HAVE_FFMPEG
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#endif

/* ---- frame directories ------------------------------------------------------------------ */

static void write_frame(const char *path, int w, int h, int seed) {
    stem_image img;
    assert_int_equal(stem_image_new(w, h, &img), STEM_OK);
    fill_pattern(&img, seed);
    assert_int_equal(stem_image_write_png(path, &img), STEM_OK);
    stem_image_free(&img);
}

static void test_frames_dir(void **state) {
    (void)state;
    mkdir(in_dir("clip"), 0755);
    write_frame(in_dir("clip/b.png"), 20, 10, 2);
    write_frame(in_dir("clip/c.PNG"), 20, 10, 3);
    write_frame(in_dir("clip/00.png"), 20, 10, 0);
    size_t len;
    uint8_t *jpg = read_bytes(golden_image("rgb420.jpg"), &len); /* 35x24: another size */
    write_bytes(in_dir("clip/a.JPEG"), jpg, len);
    free(jpg);
    write_bytes(in_dir("clip/notes.txt"), "x", 1);
    write_bytes(in_dir("clip/.DS_Store"), "x", 1);
    mkdir(in_dir("clip/sub.png"), 0755);

    notes n = {0};
    stem_frames_request req = {.path = in_dir("clip"), .n_frames = 0, .width = 16, .height = 12,
                               .note = collect_note, .note_user = &n};
    stem_frames fr;
    assert_int_equal(stem_frames_load(&req, &fr), STEM_OK);
    assert_int_equal(fr.count, 4);
    assert_int_equal(fr.available, 4);
    const char *order[] = {"00.png", "a.JPEG", "b.png", "c.PNG"}; /* byte order */
    for (int i = 0; i < 4; i++) assert_string_equal(fr.names[i], order[i]);
    assert_true(fr.mixed_sizes);
    assert_int_equal(fr.src_width, 20);
    assert_int_equal(fr.src_height, 10);
    assert_int_equal(n.count, 1);
    assert_non_null(strstr(n.last, "skipped 3"));
    assert_non_null(strstr(n.last, "notes.txt"));
    assert_int_equal(fr.pixels.ndim, 4);
    assert_int_equal(fr.pixels.shape[0], 4);
    assert_int_equal(fr.pixels.shape[1], 3);
    assert_int_equal(fr.pixels.shape[2], 12);
    assert_int_equal(fr.pixels.shape[3], 16);
    /* frame 1 = to_pixels(resize(read(a.JPEG))) exactly */
    stem_image img, sized;
    assert_int_equal(stem_image_read(in_dir("clip/a.JPEG"), &img, NULL), STEM_OK);
    assert_int_equal(stem_image_resize(&img, 16, 12, &sized), STEM_OK);
    float want[3 * 12 * 16];
    stem_image_to_pixels(&sized, want);
    assert_memory_equal(want, (float *)fr.pixels.data + 3 * 12 * 16, sizeof want);
    stem_image_free(&img);
    stem_image_free(&sized);
    stem_frames_free(&fr);

    /* the first n; all same-size frames: no mixed flag */
    req.n_frames = 1;
    assert_int_equal(stem_frames_load(&req, &fr), STEM_OK);
    assert_int_equal(fr.count, 1);
    assert_false(fr.mixed_sizes);
    assert_string_equal(fr.names[0], "00.png");
    stem_frames_free(&fr);

    /* more than there are */
    req.n_frames = 5;
    expect_error(stem_frames_load(&req, &fr), STEM_E_ARG, "has 4 frames, but n_frames asks for 5");
    assert_null(fr.pixels.data);

    /* a single image file is a one-frame source */
    stem_frames_request one = {.path = in_dir("clip/b.png"), .width = 20, .height = 10};
    assert_int_equal(stem_frames_load(&one, &fr), STEM_OK);
    assert_int_equal(fr.count, 1);
    stem_frames_free(&fr);
}

static void test_frames_errors(void **state) {
    (void)state;
    stem_frames fr;
    notes n = {0};
    stem_frames_request req = {.width = 8, .height = 8, .note = collect_note, .note_user = &n};
    req.path = in_dir("nowhere");
    expect_error(stem_frames_load(&req, &fr), STEM_E_NOTFOUND, "nowhere");
    mkdir(in_dir("emptyclip"), 0755);
    req.path = in_dir("emptyclip");
    expect_error(stem_frames_load(&req, &fr), STEM_E_FORMAT, "no PNG or JPEG files");
    mkdir(in_dir("textclip"), 0755);
    write_bytes(in_dir("textclip/readme.md"), "x", 1);
    req.path = in_dir("textclip");
    expect_error(stem_frames_load(&req, &fr), STEM_E_FORMAT, "other entries only");
    /* a broken frame in the middle: the error names it */
    mkdir(in_dir("badclip"), 0755);
    write_frame(in_dir("badclip/00000.png"), 8, 8, 0);
    write_bytes(in_dir("badclip/00001.png"), "GIF89a not really", 17);
    write_frame(in_dir("badclip/00002.png"), 8, 8, 2);
    req.path = in_dir("badclip");
    expect_error(stem_frames_load(&req, &fr), STEM_E_FORMAT, "badclip/00001.png");
    assert_non_null(strstr(stem_last_error(), "frame 1"));
    truncated_copy(golden_image("rgb420.jpg"), in_dir("badclip/00001.png"), 0.95);
    expect_error(stem_frames_load(&req, &fr), STEM_E_FORMAT, "badclip/00001.png: truncated JPEG");
    /* sizes */
    write_frame(in_dir("badclip/00001.png"), 8, 8, 1);
    req.width = 0;
    expect_error(stem_frames_load(&req, &fr), STEM_E_ARG, "frame size 0x8");
    req.width = 8;
    req.height = STEM_IMAGE_MAX_DIM + 1;
    expect_error(stem_frames_load(&req, &fr), STEM_E_ARG, "frame size");
    req.height = 8;
    req.n_frames = -2;
    expect_error(stem_frames_load(&req, &fr), STEM_E_ARG, "n_frames -2");
    req.n_frames = 0;
    assert_int_equal(stem_frames_load(&req, &fr), STEM_OK);
    assert_int_equal(fr.count, 3);
    stem_frames_free(&fr);
    req.path = NULL;
    expect_error(stem_frames_load(&req, &fr), STEM_E_ARG, "no input path");
}

/* ---- video ---------------------------------------------------------------------------------- */

#ifdef STEM_HAVE_FFMPEG
/* Encodes `n` RGB frames with `codec_id` into `path` (container from the name). */
static bool write_video(const char *path, enum AVCodecID codec_id, enum AVPixelFormat pix, int n, const stem_image *frames) {
    const AVCodec *codec = avcodec_find_encoder(codec_id);
    if (!codec) return false;
    AVFormatContext *oc = NULL;
    assert_true(avformat_alloc_output_context2(&oc, NULL, NULL, path) >= 0);
    AVStream *st = avformat_new_stream(oc, NULL);
    AVCodecContext *c = avcodec_alloc_context3(codec);
    c->width = frames[0].width;
    c->height = frames[0].height;
    c->pix_fmt = pix;
    c->time_base = (AVRational){1, 10};
    c->framerate = (AVRational){10, 1};
    c->gop_size = 4;
    c->bit_rate = 4000000;
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    assert_true(avcodec_open2(c, codec, NULL) >= 0);
    assert_true(avcodec_parameters_from_context(st->codecpar, c) >= 0);
    st->time_base = c->time_base;
    assert_true(avio_open(&oc->pb, path, AVIO_FLAG_WRITE) >= 0);
    assert_true(avformat_write_header(oc, NULL) >= 0);
    AVPacket *pkt = av_packet_alloc();
    AVFrame *rgb = av_frame_alloc();
    for (int i = 0; i <= n; i++) {
        AVFrame *f = NULL;
        if (i < n) {
            f = av_frame_alloc();
            f->format = pix;
            f->width = c->width;
            f->height = c->height;
            assert_true(av_frame_get_buffer(f, 0) >= 0);
            for (int y = 0; y < c->height; y++) {
                const uint8_t *src = frames[i].rgb + (size_t)y * c->width * 3;
                if (pix == AV_PIX_FMT_RGB24) {
                    memcpy(f->data[0] + (size_t)y * f->linesize[0], src, (size_t)c->width * 3);
                } else { /* yuv420p/yuv444p: BT.601 limited range, rough */
                    for (int x = 0; x < c->width; x++) {
                        double r = src[3 * x], g = src[3 * x + 1], b = src[3 * x + 2];
                        f->data[0][y * f->linesize[0] + x] = (uint8_t)(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255 + 0.5);
                        int cy = pix == AV_PIX_FMT_YUV420P ? y / 2 : y, cx = pix == AV_PIX_FMT_YUV420P ? x / 2 : x;
                        f->data[1][cy * f->linesize[1] + cx] = (uint8_t)(128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255 + 0.5);
                        f->data[2][cy * f->linesize[2] + cx] = (uint8_t)(128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255 + 0.5);
                    }
                }
            }
            f->pts = i;
        }
        assert_true(avcodec_send_frame(c, f) >= 0);
        av_frame_free(&f);
        while (avcodec_receive_packet(c, pkt) == 0) {
            av_packet_rescale_ts(pkt, c->time_base, st->time_base);
            pkt->stream_index = st->index;
            assert_true(av_interleaved_write_frame(oc, pkt) >= 0);
        }
    }
    av_write_trailer(oc);
    av_frame_free(&rgb);
    av_packet_free(&pkt);
    avcodec_free_context(&c);
    avio_closep(&oc->pb);
    avformat_free_context(oc);
    return true;
}
#endif

static void test_video(void **state) {
    (void)state;
#ifdef STEM_HAVE_FFMPEG
    enum { N = 5, W = 24, H = 16 };
    stem_image frames[N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(stem_image_new(W, H, &frames[i]), STEM_OK);
        fill_pattern(&frames[i], i);
    }
    /* lossless RGB: every frame must come back exactly */
    assert_true(write_video(in_dir("clip.nut"), AV_CODEC_ID_RAWVIDEO, AV_PIX_FMT_RGB24, N, frames));
    stem_frame_source *src;
    assert_int_equal(stem_frame_source_open(in_dir("clip.nut"), NULL, NULL, &src), STEM_OK);
    assert_int_equal(stem_frame_source_count(src), -1);
    stem_image img = {0};
    bool done = false;
    int got = 0;
    for (;;) {
        assert_int_equal(stem_frame_source_next(src, &img, &done), STEM_OK);
        if (done) break;
        assert_true(got < N);
        assert_int_equal(img.width, W);
        assert_int_equal(img.height, H);
        assert_memory_equal(img.rgb, frames[got].rgb, W * H * 3);
        char name[32];
        snprintf(name, sizeof name, "frame %d", got);
        assert_string_equal(stem_frame_source_name(src), name);
        got++;
    }
    assert_int_equal(got, N);
    stem_image_free(&img);
    stem_frame_source_close(src);

    stem_frames fr;
    stem_frames_request req = {.path = in_dir("clip.nut"), .n_frames = 3, .width = W, .height = H};
    assert_int_equal(stem_frames_load(&req, &fr), STEM_OK);
    assert_int_equal(fr.count, 3);
    float want[3 * W * H];
    stem_image_to_pixels(&frames[2], want);
    assert_memory_equal(want, (float *)fr.pixels.data + 2 * 3 * W * H, sizeof want);
    stem_frames_free(&fr);
    req.n_frames = 0;
    assert_int_equal(stem_frames_load(&req, &fr), STEM_OK);
    assert_int_equal(fr.count, N);
    assert_int_equal(fr.available, N);
    stem_frames_free(&fr);
    req.n_frames = N + 1;
    expect_error(stem_frames_load(&req, &fr), STEM_E_ARG, "has 5 frames, but n_frames asks for 6");

    /* a lossy YUV codec on smooth frames: decodes, and close to the input */
    for (int i = 0; i < N; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++) frames[i].rgb[(y * W + x) * 3 + c] = (uint8_t)(40 + 4 * x + 3 * y + 40 * c + 2 * i);
    if (write_video(in_dir("clip.avi"), AV_CODEC_ID_MPEG4, AV_PIX_FMT_YUV420P, N, frames)) {
        stem_frames_request lossy = {.path = in_dir("clip.avi"), .width = W, .height = H};
        assert_int_equal(stem_frames_load(&lossy, &fr), STEM_OK);
        assert_int_equal(fr.count, N);
        double mad = 0;
        for (int i = 0; i < N; i++) {
            stem_image_to_pixels(&frames[i], want);
            for (int k = 0; k < 3 * W * H; k++) mad += fabs(want[k] - ((float *)fr.pixels.data)[i * 3 * W * H + k]);
        }
        mad /= (double)N * 3 * W * H;
        fprintf(stderr, "mpeg4 round trip: mean |difference| %.4f (pixels in [-1, 1])\n", mad);
        assert_true(mad < 0.03); /* about 4 levels of 255 */
        stem_frames_free(&fr);
    }
    for (int i = 0; i < N; i++) stem_image_free(&frames[i]);

    /* not a video */
    write_bytes(in_dir("fake.mp4"), "definitely not a video file", 27);
    req.path = in_dir("fake.mp4");
    req.n_frames = 0;
    expect_error(stem_frames_load(&req, &fr), STEM_E_FORMAT, "fake.mp4");
#else
    write_bytes(in_dir("fake.mp4"), "x", 1);
    stem_frames fr;
    stem_frames_request req = {.path = in_dir("fake.mp4"), .width = 8, .height = 8};
    expect_error(stem_frames_load(&req, &fr), STEM_E_UNSUPPORTED, "built without FFmpeg");
#endif
}

/* ---- frames out, contact sheets ------------------------------------------------------------ */

static void make_clip(stem_tensor *t, int f, int h, int w, float offset) {
    int64_t shape[4] = {f, 3, h, w};
    assert_int_equal(stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, shape, t), STEM_OK);
    float *p = t->data;
    for (int64_t i = 0; i < stem_numel(t); i++) p[i] = (float)((i * 37 % 211) / 105.0 - 1.0) + offset;
}

static void test_frames_write_dir(void **state) {
    (void)state;
    stem_tensor clip;
    make_clip(&clip, 3, 5, 7, 0.0f);
    assert_int_equal(stem_frames_write_dir(in_dir("written/frames"), &clip, STEM_QUANTIZE_TRUNCATE), STEM_OK);
    assert_int_equal(count_entries(in_dir("written/frames")), 3);
    stem_image back, want;
    assert_int_equal(stem_image_read(in_dir("written/frames/00002.png"), &back, NULL), STEM_OK);
    assert_int_equal(stem_pixels_frame_to_image(&clip, 2, STEM_QUANTIZE_TRUNCATE, &want), STEM_OK);
    assert_memory_equal(back.rgb, want.rgb, 5 * 7 * 3);
    stem_image_free(&back);
    stem_image_free(&want);
    expect_error(stem_pixels_frame_to_image(&clip, 3, STEM_QUANTIZE_ROUND, &want), STEM_E_ARG, "frame 3 of 3");
    write_bytes(in_dir("written/file"), "x", 1);
    expect_error(stem_frames_write_dir(in_dir("written/file/sub"), &clip, STEM_QUANTIZE_ROUND), STEM_E_IO, "written/file");
    stem_tensor_free(&clip);
}

static void test_contact_sheet(void **state) {
    (void)state;
    enum { F = 7, H = 6, W = 5 };
    stem_tensor a, b, c;
    make_clip(&a, F, H, W, 0.0f);
    make_clip(&b, F, H, W, 0.1f);
    make_clip(&c, F, H, W, -0.1f);
    const stem_tensor *cols[3] = {&a, &b, &c};
    stem_image sheet;
    assert_int_equal(stem_contact_sheet_render(cols, 3, 4, &sheet), STEM_OK);
    assert_int_equal(sheet.width, 3 * W + 2 * STEM_SHEET_GAP);
    assert_int_equal(sheet.height, 4 * H + 3 * STEM_SHEET_GAP);
    /* rows show frames 0, 2, 4, 6; cell (row 2, column 1) is frame 4 of b */
    stem_image cell;
    assert_int_equal(stem_pixels_frame_to_image(&b, 4, STEM_QUANTIZE_ROUND, &cell), STEM_OK);
    int x0 = W + STEM_SHEET_GAP, y0 = 2 * (H + STEM_SHEET_GAP);
    for (int y = 0; y < H; y++)
        assert_memory_equal(sheet.rgb + ((size_t)(y0 + y) * sheet.width + x0) * 3, cell.rgb + (size_t)y * W * 3, W * 3);
    stem_image_free(&cell);
    /* separators are gray */
    assert_int_equal(sheet.rgb[((size_t)0 * sheet.width + W) * 3], 128);
    assert_int_equal(sheet.rgb[((size_t)H * sheet.width + 0) * 3], 128);
    stem_image_free(&sheet);
    /* more rows than frames: one row per frame */
    assert_int_equal(stem_contact_sheet_render(cols, 3, 100, &sheet), STEM_OK);
    assert_int_equal(sheet.height, F * H + (F - 1) * STEM_SHEET_GAP);
    stem_image_free(&sheet);
    /* written and read back */
    assert_int_equal(stem_contact_sheet_write(in_dir("sheet.png"), cols, 3, 3), STEM_OK);
    stem_image back;
    assert_int_equal(stem_image_read(in_dir("sheet.png"), &back, NULL), STEM_OK);
    assert_int_equal(stem_contact_sheet_render(cols, 3, 3, &sheet), STEM_OK);
    assert_memory_equal(back.rgb, sheet.rgb, (size_t)sheet.width * sheet.height * 3);
    stem_image_free(&back);
    stem_image_free(&sheet);
    /* mismatched columns */
    stem_tensor d;
    make_clip(&d, F, H, W + 1, 0.0f);
    const stem_tensor *bad[2] = {&a, &d};
    expect_error(stem_contact_sheet_write(in_dir("bad_sheet.png"), bad, 2, 3), STEM_E_SHAPE, "column 1");
    assert_non_null(strstr(stem_last_error(), "bad_sheet.png"));
    assert_false(exists(in_dir("bad_sheet.png")));
    stem_tensor_free(&a);
    stem_tensor_free(&b);
    stem_tensor_free(&c);
    stem_tensor_free(&d);
}

/* The embedded default clip is present and readable. */
static void test_synthetic_clip(void **state) {
    (void)state;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/clips/synthetic", test_refdata_dir());
    stem_frames fr;
    stem_frames_request req = {.path = path, .width = 64, .height = 64};
    assert_int_equal(stem_frames_load(&req, &fr), STEM_OK);
    assert_int_equal(fr.count, 8);
    assert_false(fr.mixed_sizes);
    assert_int_equal(fr.src_width, 64);
    assert_string_equal(fr.names[0], "00000.png");
    stem_frames_free(&fr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_dir),
        cmocka_unit_test(test_frames_errors),
        cmocka_unit_test(test_video),
        cmocka_unit_test(test_frames_write_dir),
        cmocka_unit_test(test_contact_sheet),
        cmocka_unit_test(test_synthetic_clip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
