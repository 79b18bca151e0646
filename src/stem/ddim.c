/* DDIM schedule and steps; see ddim.h for the formulas and what is refused. */
#include "stem/ddim.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops.h"

void stem_ddim_config_default(stem_ddim_config *c) {
    memset(c, 0, sizeof *c);
    c->train_steps = 1000;
    c->beta_start = 0.00085;
    c->beta_end = 0.012;
    c->schedule = STEM_BETAS_SCALED_LINEAR;
    c->steps_offset = 1;
    c->set_alpha_to_one = false;
    c->spacing = STEM_SPACING_LEADING;
}

stem_status stem_beta_schedule_parse(const char *s, stem_beta_schedule *out) {
    if (!strcmp(s, "scaled_linear")) *out = STEM_BETAS_SCALED_LINEAR;
    else if (!strcmp(s, "linear")) *out = STEM_BETAS_LINEAR;
    else return stem_fail(STEM_E_UNSUPPORTED, "beta_schedule '%s' is not supported (scaled_linear or linear)", s);
    return STEM_OK;
}

stem_status stem_timestep_spacing_parse(const char *s, stem_timestep_spacing *out) {
    if (!strcmp(s, "leading")) *out = STEM_SPACING_LEADING;
    else if (!strcmp(s, "trailing")) *out = STEM_SPACING_TRAILING;
    else if (!strcmp(s, "linspace")) *out = STEM_SPACING_LINSPACE;
    else return stem_fail(STEM_E_UNSUPPORTED, "timestep_spacing '%s' is not supported (leading, trailing or linspace)", s);
    return STEM_OK;
}

/* ---- scheduler_config.json ---------------------------------------------------------- */

static stem_status get_number(json_object *root, const char *what, const char *key, double *out, bool *found) {
    json_object *v;
    *found = false;
    if (!json_object_object_get_ex(root, key, &v) || json_object_is_type(v, json_type_null)) return STEM_OK;
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return stem_fail(STEM_E_FORMAT, "%s: \"%s\" must be a number", what, key);
    *out = json_object_get_double(v);
    *found = true;
    return STEM_OK;
}

static stem_status get_int(json_object *root, const char *what, const char *key, int lo, int hi, int *out) {
    double x;
    bool found;
    STEM_TRY(get_number(root, what, key, &x, &found));
    if (!found) return STEM_OK;
    if (x != floor(x) || x < lo || x > hi)
        return stem_fail(STEM_E_FORMAT, "%s: \"%s\" must be an integer in %d..%d (got %g)", what, key, lo, hi, x);
    *out = (int)x;
    return STEM_OK;
}

static stem_status get_bool(json_object *root, const char *what, const char *key, bool *out) {
    json_object *v;
    if (!json_object_object_get_ex(root, key, &v) || json_object_is_type(v, json_type_null)) return STEM_OK;
    if (!json_object_is_type(v, json_type_boolean))
        return stem_fail(STEM_E_FORMAT, "%s: \"%s\" must be true or false", what, key);
    *out = json_object_get_boolean(v);
    return STEM_OK;
}

static stem_status get_string(json_object *root, const char *what, const char *key, const char **out) {
    json_object *v;
    if (!json_object_object_get_ex(root, key, &v) || json_object_is_type(v, json_type_null)) return STEM_OK;
    if (!json_object_is_type(v, json_type_string)) return stem_fail(STEM_E_FORMAT, "%s: \"%s\" must be a string", what, key);
    *out = json_object_get_string(v);
    return STEM_OK;
}

static stem_status parse_root(json_object *root, const char *what, stem_ddim_config *c) {
    if (!json_object_is_type(root, json_type_object)) return stem_fail(STEM_E_FORMAT, "%s: not a JSON object", what);
    /* DDIMScheduler's own defaults for absent keys */
    c->train_steps = 1000;
    c->beta_start = 0.0001;
    c->beta_end = 0.02;
    c->schedule = STEM_BETAS_LINEAR;
    c->steps_offset = 0;
    c->set_alpha_to_one = true;
    c->spacing = STEM_SPACING_LEADING;
    c->clip_sample = true;
    c->thresholding = false;
    bool found;
    STEM_TRY(get_int(root, what, "num_train_timesteps", 1, 1000000, &c->train_steps));
    STEM_TRY(get_number(root, what, "beta_start", &c->beta_start, &found));
    STEM_TRY(get_number(root, what, "beta_end", &c->beta_end, &found));
    STEM_TRY(get_int(root, what, "steps_offset", 0, 1000000, &c->steps_offset));
    STEM_TRY(get_bool(root, what, "set_alpha_to_one", &c->set_alpha_to_one));
    STEM_TRY(get_bool(root, what, "clip_sample", &c->clip_sample));
    STEM_TRY(get_bool(root, what, "thresholding", &c->thresholding));
    const char *schedule = NULL, *spacing = NULL, *prediction = NULL;
    STEM_TRY(get_string(root, what, "beta_schedule", &schedule));
    STEM_TRY(get_string(root, what, "timestep_spacing", &spacing));
    STEM_TRY(get_string(root, what, "prediction_type", &prediction));
    stem_status s;
    if (schedule && (s = stem_beta_schedule_parse(schedule, &c->schedule)) != STEM_OK)
        return stem_error_context(s, "%s", what);
    if (spacing && (s = stem_timestep_spacing_parse(spacing, &c->spacing)) != STEM_OK)
        return stem_error_context(s, "%s", what);
    if (prediction && strcmp(prediction, "epsilon") != 0)
        return stem_fail(STEM_E_UNSUPPORTED,
                         "%s: prediction_type \"%s\" is not supported: stem's inversion needs an epsilon-prediction "
                         "model (SD 1.x, SD 2.x base); v_prediction models (SD 2.x 768-v) are refused",
                         what, prediction);
    json_object *v;
    if (json_object_object_get_ex(root, "trained_betas", &v) && !json_object_is_type(v, json_type_null))
        return stem_fail(STEM_E_UNSUPPORTED, "%s: trained_betas is not supported (use beta_start/beta_end)", what);
    bool rescale = false;
    STEM_TRY(get_bool(root, what, "rescale_betas_zero_snr", &rescale));
    if (rescale) return stem_fail(STEM_E_UNSUPPORTED, "%s: rescale_betas_zero_snr = true is not supported", what);
    if (!(c->beta_start > 0.0 && c->beta_start < 1.0 && c->beta_end > 0.0 && c->beta_end < 1.0))
        return stem_fail(STEM_E_FORMAT, "%s: beta_start and beta_end must be in (0, 1) (got %g, %g)", what,
                         c->beta_start, c->beta_end);
    return STEM_OK;
}

stem_status stem_ddim_config_parse(const char *json, const char *what, stem_ddim_config *c) {
    enum json_tokener_error err = json_tokener_success;
    json_object *root = json_tokener_parse_verbose(json, &err);
    if (!root) return stem_fail(STEM_E_FORMAT, "%s: not valid JSON (%s)", what, json_tokener_error_desc(err));
    stem_ddim_config tmp;
    stem_status s = parse_root(root, what, &tmp);
    json_object_put(root);
    if (s == STEM_OK) *c = tmp;
    return s;
}

stem_status stem_ddim_config_load(const char *path, stem_ddim_config *c) {
    FILE *f = fopen(path, "rb");
    if (!f) return stem_fail(STEM_E_IO, "%s: cannot open (%s)", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            if (cap > ((size_t)16 << 20)) {
                free(buf);
                fclose(f);
                return stem_fail(STEM_E_FORMAT, "%s: larger than 16 MiB, not a scheduler config", path);
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return stem_fail(STEM_E_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, 4096, f);
        len += got;
        if (got < 4096) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return stem_fail(STEM_E_IO, "%s: read error", path);
    }
    buf[len] = '\0';
    stem_status s = stem_ddim_config_parse(buf, path, c);
    free(buf);
    return s;
}

/* ---- the schedule ------------------------------------------------------------------- */

void stem_ddim_free(stem_ddim *s) {
    free(s->alphas_cumprod);
    free(s->timesteps);
    memset(s, 0, sizeof *s);
}

stem_status stem_ddim_init(stem_ddim *s, const stem_ddim_config *c, int steps) {
    memset(s, 0, sizeof *s);
    const int T = c->train_steps;
    if (T < 1) return stem_fail(STEM_E_ARG, "ddim: num_train_timesteps must be >= 1");
    if (steps < 1 || steps > T)
        return stem_fail(STEM_E_ARG, "ddim: %d inference steps is outside 1..%d (num_train_timesteps)", steps, T);
    s->cfg = *c;
    s->steps = steps;
    s->step_ratio = T / steps;
    s->alphas_cumprod = malloc((size_t)T * sizeof(double));
    s->timesteps = malloc((size_t)steps * sizeof(int));
    if (!s->alphas_cumprod || !s->timesteps) {
        stem_ddim_free(s);
        return stem_fail(STEM_E_NOMEM, "ddim: out of memory");
    }
    double prod = 1.0;
    for (int i = 0; i < T; i++) {
        double f = T > 1 ? (double)i / (double)(T - 1) : 0.0, beta;
        if (c->schedule == STEM_BETAS_SCALED_LINEAR) {
            double r = sqrt(c->beta_start) + f * (sqrt(c->beta_end) - sqrt(c->beta_start));
            beta = r * r;
        } else {
            beta = c->beta_start + f * (c->beta_end - c->beta_start);
        }
        prod *= 1.0 - beta;
        s->alphas_cumprod[i] = prod;
    }
    s->final_alpha_cumprod = c->set_alpha_to_one ? 1.0 : s->alphas_cumprod[0];

    /* as numpy computes them in diffusers' set_timesteps (np.round: half to even) */
    for (int i = 0; i < steps; i++) {
        double t;
        if (c->spacing == STEM_SPACING_LEADING) {
            t = (double)(steps - 1 - i) * s->step_ratio + c->steps_offset;
        } else if (c->spacing == STEM_SPACING_TRAILING) {
            double ratio = (double)T / steps; /* np.arange(T, 0, -ratio)[i] - 1 */
            t = nearbyint((double)T + (double)i * -ratio) - 1.0;
        } else { /* np.linspace(0, T-1, steps)[::-1] */
            int j = steps - 1 - i;
            double v = steps > 1 ? (double)j * ((double)(T - 1) / (double)(steps - 1)) : 0.0;
            if (steps > 1 && j == steps - 1) v = (double)(T - 1);
            t = nearbyint(v);
        }
        if (t < 0 || t >= T) {
            stem_ddim_free(s);
            return stem_fail(STEM_E_ARG, "ddim: timestep %g of %d steps is outside 0..%d (check steps_offset)", t,
                             steps, T - 1);
        }
        s->timesteps[i] = (int)t;
    }
    return STEM_OK;
}

double stem_ddim_alpha(const stem_ddim *s, int t) { return s->alphas_cumprod[t]; }

double stem_ddim_alpha_prev(const stem_ddim *s, int t) {
    int prev = t - s->step_ratio;
    return prev >= 0 ? s->alphas_cumprod[prev] : s->final_alpha_cumprod;
}

int stem_ddim_index(const stem_ddim *s, int t) {
    for (int i = 0; i < s->steps; i++)
        if (s->timesteps[i] == t) return i;
    return -1;
}

stem_status stem_ddim_coefficients(const stem_ddim *s, stem_ddim_kind kind, int t, double *c1, double *c2) {
    if (t < 0 || t >= s->cfg.train_steps)
        return stem_fail(STEM_E_ARG, "ddim: timestep %d is outside 0..%d", t, s->cfg.train_steps - 1);
    if (kind != STEM_DDIM_ADD_NOISE && stem_ddim_index(s, t) < 0)
        return stem_fail(STEM_E_ARG, "ddim: timestep %d is not one of the %d-step schedule's (%d, %d, ..., %d)", t,
                         s->steps, s->timesteps[0], s->steps > 1 ? s->timesteps[1] : s->timesteps[0],
                         s->timesteps[s->steps - 1]);
    double a = stem_ddim_alpha(s, t);
    if (kind == STEM_DDIM_ADD_NOISE) {
        *c1 = sqrt(a);
        *c2 = sqrt(1.0 - a);
    } else if (kind == STEM_DDIM_INVERT) { /* from the less noisy a' to a */
        double ap = stem_ddim_alpha_prev(s, t);
        *c1 = sqrt(a) / sqrt(ap);
        *c2 = sqrt(1.0 - a) - sqrt(a) * sqrt(1.0 - ap) / sqrt(ap);
    } else { /* from a to the less noisy a'' */
        double app = stem_ddim_alpha_prev(s, t);
        *c1 = sqrt(app) / sqrt(a);
        *c2 = sqrt(1.0 - app) - sqrt(app) * sqrt(1.0 - a) / sqrt(a);
    }
    return STEM_OK;
}

/* out = c1 x + c2 eps, on the tensors' backend: out = c2 eps, tmp = c1 x, out += tmp. */
static stem_status combine(const char *what, double c1, double c2, const stem_tensor *x, const stem_tensor *eps,
                           stem_tensor *out) {
    char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
    if (!stem_same_shape(x, eps) || !stem_same_shape(x, out))
        return stem_fail(STEM_E_SHAPE, "ddim %s: x %s, eps %s and out must have one shape", what,
                         stem_shape_str(x, a, sizeof a), stem_shape_str(eps, b, sizeof b));
    if (out->data == x->data || out->data == eps->data)
        return stem_fail(STEM_E_ARG, "ddim %s: out must not alias x or eps", what);
    stem_tensor tmp;
    STEM_TRY(stem_tensor_new(x->backend, x->dtype, x->ndim, x->shape, &tmp));
    stem_status s = stem_affine(eps, (float)c2, 0.0f, out);
    if (s == STEM_OK) s = stem_affine(x, (float)c1, 0.0f, &tmp);
    if (s == STEM_OK) s = stem_binary(STEM_BINARY_ADD, out, &tmp, out);
    stem_tensor_free(&tmp);
    return s;
}

static stem_status step(const stem_ddim *s, stem_ddim_kind kind, const char *what, int t, const stem_tensor *x,
                        const stem_tensor *eps, stem_tensor *out) {
    double c1 = 0.0, c2 = 0.0;
    STEM_TRY(stem_ddim_coefficients(s, kind, t, &c1, &c2));
    return combine(what, c1, c2, x, eps, out);
}

stem_status stem_ddim_invert_step(const stem_ddim *s, int t, const stem_tensor *x, const stem_tensor *eps,
                                  stem_tensor *out) {
    return step(s, STEM_DDIM_INVERT, "invert", t, x, eps, out);
}

stem_status stem_ddim_sample_step(const stem_ddim *s, int t, const stem_tensor *x, const stem_tensor *eps,
                                  stem_tensor *out) {
    return step(s, STEM_DDIM_SAMPLE, "sample", t, x, eps, out);
}

stem_status stem_ddim_add_noise(const stem_ddim *s, int t, const stem_tensor *z0, const stem_tensor *eps,
                                stem_tensor *out) {
    return step(s, STEM_DDIM_ADD_NOISE, "add_noise", t, z0, eps, out);
}
