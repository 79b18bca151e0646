/* The named option table of the command line (src/cli/options.c): every kind of value,
 * both "--name VALUE" and "--name=VALUE", usage errors, the original YAML's keys filling
 * only the rows the command line left unset (through the same range checks), and the
 * help printed from the rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/options.h"

typedef struct args {
    bool quiet;
    const char *prompt;
    int steps, n_frames;
    int64_t batch;
    uint64_t seed;
    float guidance;
    size_t mem;
    stem_dtype dtype;
    char prompt_buf[64], n_frames_name[128];
} args;

static void table(cli_table *t, args *a) {
    memset(t, 0, sizeof *t);
    memset(a, 0, sizeof *a);
    a->steps = 50;
    cli_section(t, "test:");
    cli_add(t, (cli_option){.name = "--quiet", .kind = CLI_BOOL, .to.b = &a->quiet, .help = "no progress"});
    cli_add(t, (cli_option){.name = "--prompt", .value = "TEXT", .kind = CLI_STRING, .to.s = &a->prompt,
                            .yaml = "inversion_prompt", .store = a->prompt_buf, .store_len = sizeof a->prompt_buf,
                            .help = "what the video shows"});
    cli_add(t, (cli_option){.name = "--steps", .value = "S", .kind = CLI_INT, .to.i = &a->steps, .lo = 1, .hi = 1000,
                            .yaml = "n_inversion_steps", .help = "DDIM steps\nsecond line"});
    cli_add(t, (cli_option){.name = "--n-frames", .value = "N", .kind = CLI_INT, .to.i = &a->n_frames, .lo = 1,
                            .hi = 100, .yaml = "n_frames", .origin = a->n_frames_name,
                            .origin_len = sizeof a->n_frames_name, .help = "frames"});
    cli_add(t, (cli_option){.name = "--batch-size", .value = "N", .kind = CLI_INT64, .to.i64 = &a->batch, .lo = 1,
                            .hi = 4096, .yaml = "batch_size", .help = "chunk"});
    cli_add(t, (cli_option){.name = "--seed", .value = "N", .kind = CLI_U64, .to.u64 = &a->seed, .yaml = "seed",
                            .help = "seed"});
    cli_add(t, (cli_option){.name = "--guidance", .value = "G", .kind = CLI_FLOAT, .to.f = &a->guidance, .flo = 0,
                            .fhi = 30, .yaml = "guidance_scale", .help = "guidance"});
    cli_add(t, (cli_option){.name = "--mem-limit", .value = "SIZE", .kind = CLI_SIZE, .to.size = &a->mem,
                            .help = "memory"});
    cli_add(t, (cli_option){.name = "--dtype", .value = "f32|f16", .kind = CLI_CHOICE, .to.any = &a->dtype,
                            .choice = cli_choice_dtype, .help = "dtype"});
}

static int parse(cli_table *t, int n, ...) {
    char *argv[32] = {"test"};
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) argv[i + 1] = va_arg(ap, char *);
    va_end(ap);
    return cli_parse("test", n + 1, argv, t);
}

static void every_kind(void **state) {
    (void)state;
    cli_table t;
    args a;
    table(&t, &a);
    assert_int_equal(parse(&t, 14, "--quiet", "--prompt", "a cat", "--steps=7", "--n-frames", "3", "--batch-size", "9",
                           "--seed", "18446744073709551615", "--guidance=7.5", "--mem-limit", "1.5G", "--dtype=f16"),
                     0);
    assert_true(a.quiet);
    assert_string_equal(a.prompt, "a cat");
    assert_int_equal(a.steps, 7);
    assert_int_equal(a.n_frames, 3);
    assert_string_equal(a.n_frames_name, "--n-frames");
    assert_int_equal(a.batch, 9);
    assert_true(a.seed == UINT64_MAX);
    assert_true(a.guidance == 7.5f);
    assert_true(a.mem == (size_t)(1.5 * 1024 * 1024 * 1024));
    assert_int_equal(a.dtype, STEM_F16);
    assert_true(cli_given(&t, "--steps"));
    assert_false(cli_given(&t, "--nope"));
    assert_non_null(cli_find(&t, "--seed"));
    assert_null(cli_find(&t, "test:")); /* a heading is not an option */
}

static void usage_errors(void **state) {
    (void)state;
    cli_table t;
    args a;
    table(&t, &a);
    assert_int_equal(parse(&t, 1, "--help"), -1);
    assert_int_equal(parse(&t, 1, "-h"), -1);
    assert_int_equal(parse(&t, 1, "--bogus"), 2);
    assert_int_equal(parse(&t, 1, "positional"), 2);
    assert_int_equal(parse(&t, 1, "--steps"), 2);          /* needs a value */
    assert_int_equal(parse(&t, 2, "--steps", "0"), 2);     /* out of 1..1000 */
    assert_int_equal(parse(&t, 2, "--steps", "5x"), 2);
    assert_int_equal(parse(&t, 1, "--quiet=yes"), 2);      /* takes no value */
    assert_int_equal(parse(&t, 2, "--seed", "-1"), 2);
    assert_int_equal(parse(&t, 2, "--guidance", "31"), 2);
    assert_int_equal(parse(&t, 2, "--mem-limit", "0"), 2);
    assert_int_equal(parse(&t, 2, "--mem-limit", "8X"), 2);
    assert_int_equal(parse(&t, 2, "--dtype", "f64"), 2);
    assert_int_equal(a.steps, 50); /* a bad value leaves the default */
}

static const char *write_yaml(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/stem_test_options_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void yaml_fills_unset_rows(void **state) {
    (void)state;
    const char *path = write_yaml("n_inversion_steps: 20\nn_frames: 5\ninversion_prompt: 'a dog'\nseed: 3\n"
                                  "guidance_scale: 7.5\nbatch_size: 4\n");
    stem_yaml_config c;
    assert_int_equal(stem_yaml_config_load(path, NULL, NULL, &c), STEM_OK);
    cli_table t;
    args a;
    table(&t, &a);
    assert_int_equal(parse(&t, 2, "--steps", "9"), 0);
    assert_int_equal(cli_apply_yaml("test", &c, &t), 0);
    assert_int_equal(a.steps, 9); /* the flag wins */
    assert_int_equal(a.n_frames, 5);
    char want[128];
    snprintf(want, sizeof want, "n_frames (%s)", path);
    assert_string_equal(a.n_frames_name, want);
    assert_string_equal(a.prompt, "a dog");
    assert_ptr_equal(a.prompt, a.prompt_buf); /* copied: the config is freed next */
    assert_true(a.seed == 3 && a.batch == 4 && a.guidance == 7.5f);
    assert_true(cli_given(&t, "--seed"));
    stem_yaml_config_free(&c);
    unlink(path);

    /* a value the flag would refuse is refused from the YAML too; an unset key is left alone */
    path = write_yaml("n_frames: 500\n");
    assert_int_equal(stem_yaml_config_load(path, NULL, NULL, &c), STEM_OK);
    table(&t, &a);
    assert_int_equal(cli_apply_yaml("test", &c, &t), 2);
    assert_int_equal(a.n_frames, 0);
    assert_int_equal(a.steps, 50);
    stem_yaml_config_free(&c);
    unlink(path);
}

static void help_from_the_rows(void **state) {
    (void)state;
    cli_table t;
    args a;
    table(&t, &a);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    cli_print_options(f, &t);
    fclose(f);
    assert_non_null(strstr(text, "test:\n"));
    assert_non_null(strstr(text, "\n  --steps S              DDIM steps\n                         second line\n"));
    assert_non_null(strstr(text, "\n  --quiet                no progress\n"));
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_kind),
        cmocka_unit_test(usage_errors),
        cmocka_unit_test(yaml_fills_unset_rows),
        cmocka_unit_test(help_from_the_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
