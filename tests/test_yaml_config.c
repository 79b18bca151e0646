/* The original's YAML configs (refdata/configs, values from doc/algorithm.md §8) and the errors
 * for broken ones: each names the file, the line and the key. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* mkdtemp, nftw */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/yaml_config.h"
#include "test_util.h"

static char g_dir[1024];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static int setup(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/stem_test_yaml_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct notes {
    int count;
    char all[4096];
} notes;

static void collect(void *user, const char *msg) {
    notes *n = user;
    n->count++;
    size_t used = strlen(n->all);
    snprintf(n->all + used, sizeof n->all - used, "%s\n", msg);
}

static const char *write_config(const char *name, const char *text) {
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

typedef struct shipped {
    const char *file;
    int width, height, n_frames;
    const char *data_path, *inversion_prompt, *prompt;
} shipped;

static const shipped SHIPPED[] = {
    {"config_pnp_mallard.yaml", 512, 512, 60, "data/mallard.mp4", "A mallard floats on the sparkling pond",
     "A white swan floats effortlessly on the sparkling pond"},
    {"config_pnp_taylor.yaml", 640, 360, 48, "data/taylor.mp4", "A beautiful girl tilted her head",
     "A beautiful girl tilted her head, Miyazaki Hayao style"},
    {"config_pnp_tennis.yaml", 854, 480, 50, "data/tennis.mp4", "A man is playing tennis.", "Spider-Man is playing tennis"},
    {"config_pnp_woman_running.yaml", 512, 512, 120, "data/woman-running.mp4", "A woman is running",
     "Wonder woman is running"},
};

static void test_shipped_configs(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof SHIPPED / sizeof *SHIPPED; i++) {
        const shipped *e = &SHIPPED[i];
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/configs/%s", test_refdata_dir(), e->file);
        notes n = {0};
        stem_yaml_config c;
        stem_status s = stem_yaml_config_load(path, collect, &n, &c);
        if (s != STEM_OK) fprintf(stderr, "%s\n", stem_last_error());
        assert_int_equal(s, STEM_OK);
        assert_int_equal(n.count, 0);
        assert_int_equal(c.present, (1u << STEM_CFG_KEY_COUNT) - 1); /* every key */
        assert_int_equal(c.seed, 1);
        assert_string_equal(c.device, "cuda");
        assert_string_equal(c.output_path, "STEM_TF_results");
        assert_string_equal(c.data_path, e->data_path);
        assert_int_equal(c.width, e->width);
        assert_int_equal(c.height, e->height);
        assert_string_equal(c.latents_path, "Stem_Inv_Latents/base_256_iter_5");
        assert_int_equal(c.n_inversion_steps, 50);
        assert_int_equal(c.n_frames, e->n_frames);
        assert_string_equal(c.inversion_prompt, e->inversion_prompt);
        assert_string_equal(c.sd_version, "1.5");
        assert_true(c.guidance_scale == 7.5);
        assert_int_equal(c.n_timesteps, 50);
        assert_string_equal(c.prompt, e->prompt);
        assert_string_equal(c.negative_prompt, "ugly, blurry, low res, unrealistic, unaesthetic");
        assert_int_equal(c.batch_size, 8);
        assert_true(c.pnp_attn_t == 0.5);
        assert_true(c.pnp_f_t == 0.8);
        assert_int_equal(c.line[STEM_CFG_SEED], 2);
        assert_int_equal(c.line[STEM_CFG_WIDTH], 8);
        assert_true(stem_yaml_config_has(&c, STEM_CFG_PNP_F_T));
        stem_yaml_config_free(&c);
    }
}

static void test_defaults_and_unknown_keys(void **state) {
    (void)state;
    notes n = {0};
    stem_yaml_config c;
    const char *path = write_config("partial.yaml",
                                    "# only a few keys\n"
                                    "data_path: frames/\n"
                                    "num_bases: 256\n"
                                    "width: 854\n"
                                    "width: 640\n"
                                    "sd_version: 2.1\n"
                                    "guidance_scale: 7\n"
                                    "prompt: ''\n");
    assert_int_equal(stem_yaml_config_load(path, collect, &n, &c), STEM_OK);
    assert_int_equal(n.count, 2);
    assert_non_null(strstr(n.all, "partial.yaml:3: unknown key 'num_bases'"));
    assert_non_null(strstr(n.all, "partial.yaml:5: key 'width' is set again (first on line 4)"));
    assert_int_equal(c.width, 640); /* the last one wins, as in PyYAML */
    assert_int_equal(c.height, 512); /* default */
    assert_false(stem_yaml_config_has(&c, STEM_CFG_HEIGHT));
    assert_true(stem_yaml_config_has(&c, STEM_CFG_WIDTH));
    assert_string_equal(c.data_path, "frames/");
    assert_string_equal(c.sd_version, "2.1"); /* a plain number is fine for a string key */
    assert_true(c.guidance_scale == 7.0);     /* an integer is fine for a number key */
    assert_string_equal(c.prompt, "");
    assert_null(c.inversion_prompt);
    assert_int_equal(c.n_inversion_steps, 50);
    assert_string_equal(c.negative_prompt, "ugly, blurry, low res, unrealistic, unaesthetic");
    assert_string_equal(stem_config_key_name(STEM_CFG_PNP_ATTN_T), "pnp_attn_t");
    stem_yaml_config_free(&c);
}

typedef struct bad_case {
    const char *text;
    const char *must_contain;
} bad_case;

static void test_errors(void **state) {
    (void)state;
    const bad_case cases[] = {
        {"seed: 1\nwidth: '512'\n", "bad.yaml:2: key 'width': expected an integer, got the quoted string '512'"},
        {"width: 512.0\n", "bad.yaml:1: key 'width': expected an integer, got '512.0'"},
        {"width: abc\n", "key 'width': expected an integer, got 'abc'"},
        {"n_frames: 010\n", "key 'n_frames': expected an integer"},
        {"height: 0\n", "bad.yaml:1: key 'height': 0 must be 1..16384"},
        {"width: 100000\n", "key 'width': 100000 must be 1..16384"},
        {"n_frames: -5\n", "key 'n_frames': -5 must be positive"},
        {"batch_size: 0\n", "key 'batch_size'"},
        {"n_inversion_steps: 5000\n", "key 'n_inversion_steps': 5000 must be 1..1000"},
        {"guidance_scale: high\n", "key 'guidance_scale': expected a number, got 'high'"},
        {"guidance_scale: .inf\n", "key 'guidance_scale': expected a number"},
        {"guidance_scale: \"7.5\"\n", "expected a number, got the quoted string '7.5'"},
        {"pnp_attn_t: 1.5\n", "key 'pnp_attn_t': 1.5 must be in [0, 1]"},
        {"seed: 99999999999999999999999\n", "key 'seed': expected an integer"},
        {"# comment\n\nprompt:\n", "bad.yaml:3: key 'prompt': expected a string, got no value (null)"},
        {"prompt: ~\n", "got no value (null)"},
        {"prompt:\n  - a\n  - b\n", "bad.yaml:2: key 'prompt': expected a string, got a list"},
        {"width:\n  a: 1\n", "key 'width': expected an integer, got a mapping"},
        {"[1, 2]: 3\n", "bad.yaml:1: a key must be a plain name, not a list"},
        {"- seed: 1\n", "must be a mapping of keys to values, not a list"},
        {"just a string\n", "not a single value"},
        {"", "empty config"},
        {"# only comments\n", "empty config"},
        {"seed: 1\nwidth: [512\n", "bad.yaml:3:"},
        {"seed: 1\n  width: 512\n", "not valid YAML"},
        {"prompt: 'unterminated\n", "not valid YAML"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *path = write_config("bad.yaml", cases[i].text);
        stem_yaml_config c;
        stem_status s = stem_yaml_config_load(path, NULL, NULL, &c);
        if (s != STEM_E_FORMAT || !strstr(stem_last_error(), cases[i].must_contain))
            fprintf(stderr, "case %zu: status %s, message: %s\n  (want it to contain: %s)\n", i, stem_status_name(s),
                    stem_last_error(), cases[i].must_contain);
        assert_int_equal(s, STEM_E_FORMAT);
        assert_non_null(strstr(stem_last_error(), cases[i].must_contain));
        assert_null(c.path); /* left empty */
        assert_null(c.device);
    }
    stem_yaml_config c;
    char missing[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/missing.yaml", g_dir);
    assert_int_equal(stem_yaml_config_load(missing, NULL, NULL, &c), STEM_E_IO);
    assert_non_null(strstr(stem_last_error(), "missing.yaml"));
    assert_int_equal(stem_yaml_config_load(g_dir, NULL, NULL, &c), STEM_E_IO); /* a directory */
    assert_non_null(strstr(stem_last_error(), "is a directory"));
    assert_int_equal(stem_yaml_config_load(NULL, NULL, NULL, &c), STEM_E_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_configs),
        cmocka_unit_test(test_defaults_and_unknown_keys),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
