/* `stem op`: run any single op on named tensors, so anyone can check an op against
 * their own reference; list the ops; check golden files. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "backends/backends.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: stem op NAME --in IN.safetensors --out OUT.safetensors [--attr KEY=VALUE]...\n"
            "               [--backend cpu|cuda] [--dtype f32|f16]\n"
            "       stem op --list\n"
            "       stem op NAME --help\n"
            "       stem op --check GOLDEN.safetensors... [--backend cpu|cuda] [--dtype f32|f16]\n"
            "\n"
            "Runs one op. Its inputs are read by name from IN (a tensor named 'x' or 'in.x' is input x);\n"
            "its outputs are written by name to OUT (atomically). Attributes such as stride or eps are\n"
            "given as --attr KEY=VALUE; `stem op NAME --help` lists an op's inputs, attributes and outputs.\n"
            "The CPU backend computes in f32; --backend cuda --dtype f16 runs the production path.\n"
            "\n"
            "--check runs golden files (inputs, PyTorch's outputs and tolerances in one file, as in\n"
            "refdata/golden/ops) and reports each output's error; it exits 1 if any is out of tolerance.\n"
            "\n"
            "example:\n"
            "  stem op conv2d --in x_and_w.safetensors --out y.safetensors --attr stride=2 --attr padding=0,1,0,1\n");
}

static const char *attr_type_name(stem_attr_type t) {
    switch (t) {
    case STEM_ATTR_INT: return "int";
    case STEM_ATTR_FLOAT: return "float";
    case STEM_ATTR_BOOL: return "bool";
    case STEM_ATTR_STRING: return "string";
    case STEM_ATTR_INTS: return "ints";
    }
    return "?";
}

static void print_names(const char *label, const char *const *names) {
    printf("  %-9s", label);
    if (!*names) printf(" (none)");
    for (const char *const *n = names; *n; n++) printf(" %s", *n);
    printf("\n");
}

static void describe_op(const stem_op_def *op, bool verbose) {
    if (!verbose) {
        printf("%-20s %s\n", op->name, op->summary);
        return;
    }
    printf("%s: %s\n", op->name, op->summary);
    print_names("inputs:", op->inputs);
    print_names("outputs:", op->outputs);
    printf("  attributes:%s\n", op->attrs && op->attrs->name ? "" : " (none)");
    for (const stem_attr_spec *a = op->attrs; a && a->name; a++)
        printf("    %-16s %-6s %-10s %s\n", a->name, attr_type_name(a->type),
               a->default_value ? a->default_value : "(required)", a->help);
}

static void list_ops(void) {
    printf("ops (inputs ending in ? are optional; `stem op NAME --help` for attributes):\n\n");
    for (const stem_op_def *const *op = stem_op_all(); *op; op++) {
        describe_op(*op, true);
        printf("\n");
    }
}

static int parse_dtype(const char *s, stem_dtype *dt) {
    if (!strcmp(s, "f32")) *dt = STEM_F32;
    else if (!strcmp(s, "f16")) *dt = STEM_F16;
    else {
        fprintf(stderr, "stem op: --dtype must be f32 or f16, not '%s'\n", s);
        return 2;
    }
    return 0;
}

static int check_goldens(int count, char **paths, stem_backend *be, stem_dtype dt) {
    int failed = 0;
    for (int i = 0; i < count; i++) {
        stem_golden g;
        stem_tensor_map outs;
        stem_tensor_map_init(&outs);
        stem_status s = stem_golden_load(paths[i], &g);
        if (s == STEM_OK) s = stem_golden_run(&g, be, dt, &outs);
        if (s != STEM_OK) {
            fprintf(stderr, "FAIL %s: %s\n", paths[i], stem_last_error());
            failed++;
        }
        for (int j = 0; s == STEM_OK && j < g.expected.count; j++) {
            const char *name = g.expected.items[j].name;
            stem_tensor *got = stem_tensor_map_get(&outs, name);
            stem_compare c;
            char desc[256];
            stem_status cs = got ? stem_compare_tensors(got, &g.expected.items[j].tensor, g.rtol, g.atol, &c)
                                 : stem_fail(STEM_E_NOTFOUND, "the op produced no output '%s'", name);
            if (cs != STEM_OK) {
                printf("FAIL %s [%s]: %s\n", paths[i], name, stem_last_error());
                failed++;
                continue;
            }
            stem_compare_describe(&c, g.rtol, g.atol, desc, sizeof desc);
            printf("%s %s [%s]: %s\n", c.violations ? "FAIL" : "ok  ", paths[i], name, desc);
            failed += c.violations != 0;
        }
        stem_tensor_map_free(&outs);
        stem_golden_free(&g);
    }
    return failed ? 1 : 0;
}

int cmd_op(int argc, char **argv) {
    const char *name = NULL, *in_path = NULL, *out_path = NULL, *backend = "cpu";
    stem_dtype dt = STEM_F32;
    bool list = false, help = false, check = false;
    stem_attrs attrs = {0};
    char *golden_paths[256];
    int golden_count = 0, rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--list")) list = true;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) help = true;
        else if (!strcmp(a, "--check")) check = true;
        else if (!strcmp(a, "--in") && has_value) in_path = argv[++i];
        else if (!strcmp(a, "--out") && has_value) out_path = argv[++i];
        else if (!strcmp(a, "--backend") && has_value) backend = argv[++i];
        else if (!strcmp(a, "--dtype") && has_value) rc = parse_dtype(argv[++i], &dt);
        else if (!strcmp(a, "--attr") && has_value) {
            if (stem_attrs_add(&attrs, argv[++i]) != STEM_OK) {
                fprintf(stderr, "stem op: --attr: %s\n", stem_last_error());
                rc = 2;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "stem op: unknown or incomplete option '%s' (see stem op --help)\n", a);
            rc = 2;
        } else if (check) {
            if (golden_count < 256) golden_paths[golden_count++] = argv[i];
        } else if (!name) name = a;
        else {
            fprintf(stderr, "stem op: unexpected argument '%s'\n", a);
            rc = 2;
        }
    }
    if (rc) goto done;
    if (list) {
        list_ops();
        goto done;
    }
    const stem_op_def *op = NULL;
    if (name && !check) {
        op = stem_op_find(name);
        if (!op) {
            fprintf(stderr, "stem op: unknown op '%s' (stem op --list names them all)\n", name);
            rc = 2;
            goto done;
        }
    }
    if (help) {
        if (op) describe_op(op, true);
        else usage(stdout);
        goto done;
    }
    stem_backend *be = NULL;
    if (check) {
        if (!golden_count) {
            fprintf(stderr, "stem op: --check needs golden files\n");
            rc = 2;
        } else if ((rc = cli_open_backend(backend, &be)) == 0) {
            rc = check_goldens(golden_count, golden_paths, be, dt);
            stem_backend_close(be);
        }
        goto done;
    }
    if (!op || !out_path || (!in_path && op->inputs[0])) {
        fprintf(stderr, "stem op: needs an op name, --in and --out\n\n");
        usage(stderr);
        rc = 2;
        goto done;
    }
    if ((rc = cli_open_backend(backend, &be)) != 0) goto done;
    stem_tensor_map file, inputs, outputs;
    stem_tensor_map_init(&file);
    stem_tensor_map_init(&inputs);
    stem_tensor_map_init(&outputs);
    stem_status s = in_path ? stem_safetensors_load(in_path, -1, &file) : STEM_OK;
    for (int i = 0; s == STEM_OK && i < file.count; i++) {
        const char *tn = file.items[i].name;
        if (!strncmp(tn, "out.", 4)) continue; /* a golden file's expected outputs */
        stem_tensor view = file.items[i].tensor;
        view.owned = false;
        s = stem_tensor_map_put(&inputs, strncmp(tn, "in.", 3) ? tn : tn + 3, view);
    }
    if (s == STEM_OK) s = stem_op_execute(op, be, dt, &inputs, &attrs, &outputs);
    if (s == STEM_OK) {
        s = stem_tensor_map_set_meta(&outputs, "op", op->name);
        for (int i = 0; s == STEM_OK && i < attrs.count; i++) {
            char key[96];
            snprintf(key, sizeof key, "attr.%s", attrs.keys[i]);
            s = stem_tensor_map_set_meta(&outputs, key, attrs.values[i]);
        }
    }
    if (s == STEM_OK) s = stem_safetensors_save(out_path, &outputs);
    if (s != STEM_OK) rc = cli_report(s);
    else fprintf(stderr, "stem op %s: wrote %d tensor%s to %s (%s)\n", op->name, outputs.count,
                 outputs.count == 1 ? "" : "s", out_path, be->ops->describe(be));
    stem_tensor_map_free(&outputs);
    stem_tensor_map_free(&inputs);
    stem_tensor_map_free(&file);
    stem_backend_close(be);
done:
    stem_attrs_free(&attrs);
    return rc;
}
