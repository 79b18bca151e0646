/* The DDIM noise schedule and steps (doc/algorithm.md §4), as diffusers 0.20.2's DDIMScheduler
 * defines them, configured from a model folder's scheduler/scheduler_config.json.
 *
 *   betas     scaled_linear: beta_i = (sqrt(beta_start) + i/(T-1) (sqrt(beta_end) -
 *             sqrt(beta_start)))^2;  linear: beta_start + i/(T-1) (beta_end - beta_start)
 *   alphas    abar_t = prod_{i<=t} (1 - beta_i), in double (diffusers: f32 cumprod; the
 *             two agree to ~1e-6 relative, see refdata/gen/gen_stem.py)
 *   final     abar_final = 1 if set_alpha_to_one else abar_0
 *   timesteps "leading" (default): delta = T / S (integer division), t_i = i*delta +
 *             steps_offset, i = S-1 .. 0 (descending: SD 1.5, 50 steps: 981, 961, .., 1);
 *             "trailing" and "linspace" as diffusers computes them.
 *   prev(t)   abar_{t - delta} when t - delta >= 0, else abar_final
 *   invert    (ascending t, target t): a = abar_t, a' = prev(t);
 *             x0 = (x - sqrt(1-a') eps) / sqrt(a');  x <- sqrt(a) x0 + sqrt(1-a) eps
 *   sample    (descending t, DDIM eta = 0): a = abar_t, a'' = prev(t);
 *             x0 = (x - sqrt(1-a) eps) / sqrt(a);  x <- sqrt(a'') x0 + sqrt(1-a'') eps
 *   add_noise sqrt(abar_t) z0 + sqrt(1 - abar_t) eps
 * Each step is one fused linear combination c1 x + c2 eps on the tensors' backend, the
 * coefficients formed in double.
 *
 * Refused with a clear error (STEM_E_UNSUPPORTED): prediction_type other than "epsilon"
 * (v_prediction: SD 2.x 768-v models), trained_betas, beta_schedule other than linear /
 * scaled_linear, rescale_betas_zero_snr true. Missing keys take DDIMScheduler's defaults.
 * clip_sample / thresholding are recorded but never applied: the original's inversion and
 * reconstruction use the formulas above directly (no clipping); only its editing loop
 * calls scheduler.step(), and the editing code decides what to do with them. */
#ifndef STEM_STEM_DDIM_H
#define STEM_STEM_DDIM_H

#include <stdbool.h>

#include "core/tensor.h"

typedef enum stem_beta_schedule { STEM_BETAS_SCALED_LINEAR, STEM_BETAS_LINEAR } stem_beta_schedule;
typedef enum stem_timestep_spacing { STEM_SPACING_LEADING, STEM_SPACING_TRAILING, STEM_SPACING_LINSPACE } stem_timestep_spacing;

typedef struct stem_ddim_config {
    int train_steps;              /* num_train_timesteps, T (1000) */
    double beta_start, beta_end;  /* 0.00085, 0.012 */
    stem_beta_schedule schedule;  /* scaled_linear */
    int steps_offset;             /* 1 */
    bool set_alpha_to_one;        /* false */
    stem_timestep_spacing spacing; /* leading */
    bool clip_sample, thresholding; /* recorded only (see above); SD: false */
} stem_ddim_config;

/* The SD 1.x/2.x values above. */
void stem_ddim_config_default(stem_ddim_config *c);
/* Reads scheduler_config.json (json-c); errors name the file and the key. */
stem_status stem_ddim_config_load(const char *path, stem_ddim_config *c);
/* The same from JSON text; `what` names its origin in error messages. */
stem_status stem_ddim_config_parse(const char *json, const char *what, stem_ddim_config *c);
/* "scaled_linear" / "linear"; "leading" / "trailing" / "linspace". */
stem_status stem_beta_schedule_parse(const char *s, stem_beta_schedule *out);
stem_status stem_timestep_spacing_parse(const char *s, stem_timestep_spacing *out);

typedef struct stem_ddim {
    stem_ddim_config cfg;
    double *alphas_cumprod;     /* [train_steps] */
    double final_alpha_cumprod;
    int steps;                  /* S */
    int step_ratio;             /* delta = T / S */
    int *timesteps;             /* [steps], descending (sampling order) */
} stem_ddim;

/* Builds the schedule for S inference steps (1 <= S <= T). */
stem_status stem_ddim_init(stem_ddim *s, const stem_ddim_config *c, int steps);
void stem_ddim_free(stem_ddim *s);

/* abar_t (0 <= t < T). */
double stem_ddim_alpha(const stem_ddim *s, int t);
/* abar_{t - delta}, or abar_final when t - delta < 0. */
double stem_ddim_alpha_prev(const stem_ddim *s, int t);
/* Index of t in s->timesteps, or -1. */
int stem_ddim_index(const stem_ddim *s, int t);

/* The coefficients (c1, c2) of out = c1 x + c2 eps for each step kind, in double. */
typedef enum stem_ddim_kind { STEM_DDIM_INVERT, STEM_DDIM_SAMPLE, STEM_DDIM_ADD_NOISE } stem_ddim_kind;
/* STEM_E_ARG when t is not a valid timestep (invert/sample: one of s->timesteps;
 * add_noise: 0 <= t < T). */
stem_status stem_ddim_coefficients(const stem_ddim *s, stem_ddim_kind kind, int t, double *c1, double *c2);

/* out = c1 x + c2 eps (all the same shape and backend; out may not alias). */
stem_status stem_ddim_invert_step(const stem_ddim *s, int t, const stem_tensor *x, const stem_tensor *eps,
                                  stem_tensor *out);
stem_status stem_ddim_sample_step(const stem_ddim *s, int t, const stem_tensor *x, const stem_tensor *eps,
                                  stem_tensor *out);
stem_status stem_ddim_add_noise(const stem_ddim *s, int t, const stem_tensor *z0, const stem_tensor *eps,
                                stem_tensor *out);

#endif
