/* Test inputs made inside the suite (a fresh clone has no ../shared), for tests/test_sizes.sh:
 *
 *   make_test_data clip OUT W H F    a synthetic W x H clip of F frames: a video when OUT
 *                                    ends in .mp4 and stem can write videos, else a folder
 *                                    of PNG frames named OUT (what the frame reader takes
 *                                    for a path either way)
 *   make_test_data probe PATH        prints "N WxH" for a frame source (video, folder, PNG)
 *   make_test_data psnr REF TEST     prints the mean PSNR (dB) of TEST's frames against the
 *                                    top-left region of REF's of the same size: stem invert's
 *                                    metrics_region, computed here from the PNGs it wrote
 *   make_test_data vae8 SRC DST      model folder DST: SRC's components (symlinked) with a
 *                                    4-level VAE, downsampling factor 8 as in SD, made from
 *                                    SRC's 3-level one (factor 4) by repeating its levels
 * Exit status 0 on success, 1 with a message otherwise. */
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/video_write.h"
#include "stem.h"

static int die(const char *what) {
    fprintf(stderr, "make_test_data: %s: %s\n", what, stem_last_error());
    return 1;
}

/* ---- clip: a gradient with a square moving right and a disc moving down --------------- */

static void paint(float *px, int f, int W, int H) {
    const size_t plane = (size_t)W * (size_t)H;
    int sq = W / 5 + 1, sx = (f * 7) % (W - sq > 0 ? W - sq : 1), sy = H / 4;
    float cx = (float)W * 0.6f, cy = (float)((f * 5) % H), r = (float)H / 6 + 1;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float v[3] = {2.0f * x / W - 1, 2.0f * y / H - 1, 0.3f * sinf(0.2f * (float)(x + y))};
            if (x >= sx && x < sx + sq && y >= sy && y < sy + sq) v[0] = -0.8f, v[1] = -0.6f, v[2] = 0.9f;
            if ((x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r) v[0] = 0.9f, v[1] = 0.8f, v[2] = -0.7f;
            for (int c = 0; c < 3; c++) px[c * plane + (size_t)y * W + x] = v[c];
        }
}

static int make_clip(const char *out, int W, int H, int F) {
    int64_t shape[4] = {F, 3, H, W};
    stem_tensor t;
    if (stem_tensor_new(stem_cpu_backend(), STEM_F32, 4, shape, &t) != STEM_OK) return die(out);
    for (int f = 0; f < F; f++) paint((float *)t.data + (size_t)f * 3 * W * H, f, W, H);
    size_t n = strlen(out);
    bool video = n > 4 && !strcmp(out + n - 4, ".mp4") && stem_video_write_available();
    stem_status s = video ? stem_video_write(out, &t, 10, STEM_QUANTIZE_ROUND)
                          : stem_frames_write_dir(out, &t, STEM_QUANTIZE_ROUND);
    stem_tensor_free(&t);
    return s == STEM_OK ? 0 : die(out);
}

static int probe(const char *path) {
    stem_frame_source *src;
    if (stem_frame_source_open(path, NULL, NULL, &src) != STEM_OK) return die(path);
    stem_image img = {0};
    int n = 0, w = 0, h = 0;
    bool done = false;
    stem_status s;
    while ((s = stem_frame_source_next(src, &img, &done)) == STEM_OK && !done) {
        if (n == 0) w = img.width, h = img.height;
        n++;
    }
    stem_image_free(&img);
    stem_frame_source_close(src);
    if (s != STEM_OK) return die(path);
    printf("%d %dx%d\n", n, w, h);
    return 0;
}

/* All frames of a source as [0, 1] planes [F][3, h, w] (caller frees). */
static stem_status read_unit_frames(const char *path, float **out, int *n, int *w, int *h) {
    stem_frame_source *src;
    STEM_TRY(stem_frame_source_open(path, NULL, NULL, &src));
    stem_image img = {0};
    bool done = false;
    stem_status s;
    *out = NULL;
    *n = 0;
    while ((s = stem_frame_source_next(src, &img, &done)) == STEM_OK && !done) {
        if (*n == 0) *w = img.width, *h = img.height;
        if (img.width != *w || img.height != *h) { s = stem_fail(STEM_E_SHAPE, "%s: frames differ in size", path); break; }
        size_t plane = (size_t)3 * (size_t)*w * (size_t)*h;
        float *grown = realloc(*out, sizeof *grown * plane * (size_t)(*n + 1));
        if (!grown) { s = stem_fail(STEM_E_NOMEM, "%s: out of memory", path); break; }
        *out = grown;
        float *px = grown + plane * (size_t)*n;
        stem_image_to_pixels(&img, px);
        for (size_t i = 0; i < plane; i++) px[i] = px[i] * 0.5f + 0.5f;
        (*n)++;
    }
    stem_image_free(&img);
    stem_frame_source_close(src);
    return s;
}

static int psnr(const char *ref_path, const char *test_path) {
    float *ref = NULL, *test = NULL;
    int nr = 0, wr = 0, hr = 0, nt = 0, wt = 0, ht = 0, rc = 1;
    if (read_unit_frames(ref_path, &ref, &nr, &wr, &hr) != STEM_OK) rc = die(ref_path);
    else if (read_unit_frames(test_path, &test, &nt, &wt, &ht) != STEM_OK) rc = die(test_path);
    else if (nr != nt || wt > wr || ht > hr || nt == 0)
        fprintf(stderr, "make_test_data: %d frames %dx%d against %d frames %dx%d\n", nt, wt, ht, nr, wr, hr);
    else {
        float *crop = malloc(sizeof *crop * 3 * (size_t)wt * (size_t)ht);
        double sum = 0;
        for (int f = 0; crop && f < nt; f++) {
            const float *r = ref + (size_t)f * 3 * wr * hr;
            for (int c = 0; c < 3; c++) /* top-left ht x wt of each plane */
                for (int y = 0; y < ht; y++)
                    memcpy(crop + ((size_t)c * ht + y) * wt, r + ((size_t)c * hr + y) * wr, sizeof *crop * (size_t)wt);
            sum += stem_psnr(crop, test + (size_t)f * 3 * wt * ht, 3, ht, wt);
        }
        if (crop) {
            printf("%.4f\n", sum / nt);
            rc = 0;
        }
        free(crop);
    }
    free(ref);
    free(test);
    return rc;
}

/* ---- vae8: one more VAE level with 16 channels ---------------------------------------------
 * [8, 16, 16] -> [8, 16, 16, 16]. Encoder: down_blocks.2 gains a downsampler (a copy of
 * down_blocks.1's, 16 -> 16), down_blocks.3 is a copy of down_blocks.2's resnets. Decoder
 * (up_blocks in reverse channel order): up_blocks.0, .1 stay, .2 is a copy of .1 (16 -> 16
 * with an upsampler), the old .2 (16 -> 8, no upsampler) becomes .3. */

static bool has_prefix(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static stem_status put_view(stem_tensor_map *m, const char *name, const stem_tensor *t) {
    stem_tensor v = *t;
    v.owned = false; /* a view of the source file's mapping, which outlives m */
    return stem_tensor_map_put(m, name, v);
}

/* `name` with prefix `from` replaced by `to`. */
static void reprefix(char *buf, size_t len, const char *name, const char *from, const char *to) {
    snprintf(buf, len, "%s%s", to, name + strlen(from));
}

static stem_status vae8_weights(const char *src, const char *dst) {
    stem_tensor_map in, out;
    STEM_TRY(stem_safetensors_load(src, -1, &in));
    stem_tensor_map_init(&out);
    stem_status s = STEM_OK;
    char name[512];
    for (int i = 0; i < in.count && s == STEM_OK; i++) {
        const char *n = in.items[i].name;
        const stem_tensor *t = &in.items[i].tensor;
        if (has_prefix(n, "decoder.up_blocks.2.")) {
            reprefix(name, sizeof name, n, "decoder.up_blocks.2.", "decoder.up_blocks.3.");
            s = put_view(&out, name, t);
            continue;
        }
        s = put_view(&out, n, t);
        if (s == STEM_OK && has_prefix(n, "decoder.up_blocks.1.")) {
            reprefix(name, sizeof name, n, "decoder.up_blocks.1.", "decoder.up_blocks.2.");
            s = put_view(&out, name, t);
        }
        if (s == STEM_OK && has_prefix(n, "encoder.down_blocks.2.")) {
            reprefix(name, sizeof name, n, "encoder.down_blocks.2.", "encoder.down_blocks.3.");
            s = put_view(&out, name, t);
        }
        if (s == STEM_OK && has_prefix(n, "encoder.down_blocks.1.downsamplers.")) {
            reprefix(name, sizeof name, n, "encoder.down_blocks.1.", "encoder.down_blocks.2.");
            s = put_view(&out, name, t);
        }
    }
    if (s == STEM_OK) s = stem_safetensors_save(dst, &out);
    stem_tensor_map_free(&out);
    stem_tensor_map_free(&in);
    return s;
}

static stem_status vae8_config(const char *src, const char *dst) {
    json_object *root = json_object_from_file(src);
    if (!root) return stem_fail(STEM_E_FORMAT, "%s: cannot read", src);
    json_object *ch = json_object_new_array(), *down = json_object_new_array(), *up = json_object_new_array();
    static const int channels[4] = {8, 16, 16, 16};
    for (int i = 0; i < 4; i++) {
        json_object_array_add(ch, json_object_new_int(channels[i]));
        json_object_array_add(down, json_object_new_string("DownEncoderBlock2D"));
        json_object_array_add(up, json_object_new_string("UpDecoderBlock2D"));
    }
    json_object_object_add(root, "block_out_channels", ch);
    json_object_object_add(root, "down_block_types", down);
    json_object_object_add(root, "up_block_types", up);
    int r = json_object_to_file_ext(dst, root, JSON_C_TO_STRING_PRETTY);
    json_object_put(root);
    return r == 0 ? STEM_OK : stem_fail(STEM_E_IO, "%s: cannot write", dst);
}

static int make_vae8(const char *src, const char *dst) {
    char abs_src[PATH_MAX], a[PATH_MAX + 64], b[PATH_MAX + 64];
    if (!realpath(src, abs_src)) {
        stem_fail(STEM_E_NOTFOUND, "no such model folder");
        return die(src);
    }
    snprintf(a, sizeof a, "%s/vae", dst);
    if (stem_mkdirs(a) != STEM_OK) return die(a);
    static const char *const linked[] = {"model_index.json", "unet", "text_encoder", "tokenizer", "scheduler"};
    for (size_t i = 0; i < sizeof linked / sizeof *linked; i++) {
        snprintf(a, sizeof a, "%s/%s", abs_src, linked[i]);
        snprintf(b, sizeof b, "%s/%s", dst, linked[i]);
        if (symlink(a, b) != 0) {
            stem_fail(STEM_E_IO, "cannot link it to %s", a);
            return die(b);
        }
    }
    snprintf(a, sizeof a, "%s/vae/config.json", abs_src);
    snprintf(b, sizeof b, "%s/vae/config.json", dst);
    if (vae8_config(a, b) != STEM_OK) return die(b);
    snprintf(a, sizeof a, "%s/vae/diffusion_pytorch_model.safetensors", abs_src);
    snprintf(b, sizeof b, "%s/vae/diffusion_pytorch_model.safetensors", dst);
    if (vae8_weights(a, b) != STEM_OK) return die(b);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "clip")) return make_clip(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc == 3 && !strcmp(argv[1], "probe")) return probe(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "psnr")) return psnr(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "vae8")) return make_vae8(argv[2], argv[3]);
    fprintf(stderr, "usage: make_test_data clip OUT W H F | probe PATH | psnr REF TEST | vae8 SRC_MODEL DST_MODEL\n");
    return 2;
}
