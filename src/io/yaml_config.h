/* The original STEM/TokenFlow YAML configs (configs/config_pnp_*.yaml), read with
 * libyaml so they run unchanged: `stem invert --config X.yaml`.
 *
 * The file must hold one mapping of the keys below to scalars. Types follow what the
 * original's yaml.safe_load + Python code accept:
 *   integer keys   plain (unquoted) decimal integers: "512", "-1"
 *   number keys    plain integers or decimals: "7.5", "7", "1e-3"
 *   string keys    any scalar, quoted or not; its text as written ("1.5" stays "1.5")
 * A quoted number for a numeric key, null/empty values, lists and mappings are errors
 * naming the file, line and key (STEM_E_FORMAT); so are out-of-range values (sizes and
 * counts must be positive, pnp thresholds in [0, 1]). Unknown keys and duplicates
 * are reported through `note` and otherwise ignored (a duplicate: the last one wins,
 * as in PyYAML). Keys the file does not set keep the defaults below (the values every
 * shipped config uses) and are absent from `present`. */
#ifndef STEM_IO_YAML_CONFIG_H
#define STEM_IO_YAML_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"


typedef enum stem_config_key {
    STEM_CFG_SEED,              /* int      default 1 */
    STEM_CFG_DEVICE,            /* string   default "cuda" */
    STEM_CFG_OUTPUT_PATH,       /* string   default NULL */
    STEM_CFG_DATA_PATH,         /* string   default NULL */
    STEM_CFG_WIDTH,             /* int      default 512 */
    STEM_CFG_HEIGHT,            /* int      default 512 */
    STEM_CFG_LATENTS_PATH,      /* string   default NULL */
    STEM_CFG_N_INVERSION_STEPS, /* int      default 50 */
    STEM_CFG_N_FRAMES,          /* int      default 0 (all) */
    STEM_CFG_INVERSION_PROMPT,  /* string   default NULL */
    STEM_CFG_SD_VERSION,        /* string   default "1.5" */
    STEM_CFG_GUIDANCE_SCALE,    /* number   default 7.5 */
    STEM_CFG_N_TIMESTEPS,       /* int      default 50 */
    STEM_CFG_PROMPT,            /* string   default NULL */
    STEM_CFG_NEGATIVE_PROMPT,   /* string   default "ugly, blurry, low res, unrealistic, unaesthetic" */
    STEM_CFG_BATCH_SIZE,        /* int      default 8 */
    STEM_CFG_PNP_ATTN_T,        /* number   default 0.5 */
    STEM_CFG_PNP_F_T,           /* number   default 0.8 */
    STEM_CFG_KEY_COUNT
} stem_config_key;

typedef struct stem_yaml_config {
    char *path;                   /* the file read */
    uint32_t present;             /* bit (1u << key) for every key the file sets */
    int line[STEM_CFG_KEY_COUNT]; /* 1-based line of each key set, 0 otherwise */

    int64_t seed;
    char *device;
    char *output_path;
    char *data_path;
    int width, height;
    char *latents_path;
    int n_inversion_steps;
    int n_frames;
    char *inversion_prompt;
    char *sd_version;
    double guidance_scale;
    int n_timesteps;
    char *prompt;
    char *negative_prompt;
    int batch_size;
    double pnp_attn_t, pnp_f_t;
} stem_yaml_config;

/* The defaults above (strings owned: free with stem_yaml_config_free). */
stem_status stem_yaml_config_defaults(stem_yaml_config *out);
/* Reads `path` over the defaults. STEM_E_IO (cannot open), STEM_E_FORMAT (YAML syntax,
 * not a mapping, wrong type or range: "FILE:LINE: key 'K': ..."). `note` gets the
 * warnings (NULL: stderr). On failure `out` is left empty. */
stem_status stem_yaml_config_load(const char *path, stem_note_fn note, void *note_user, stem_yaml_config *out);
void stem_yaml_config_free(stem_yaml_config *c);

static inline bool stem_yaml_config_has(const stem_yaml_config *c, stem_config_key k) {
    return (c->present >> k) & 1u;
}
/* "seed", "n_frames", ... */
const char *stem_config_key_name(stem_config_key k);
/* The key called `name`, or -1. */
int stem_config_key_find(const char *name);
/* Key k's value in c as text: integers in decimal (seed as the unsigned 64-bit key it
 * becomes: -1 wraps to 18446744073709551615), numbers as %.17g (into buf), strings as they
 * are (NULL when unset). What a command line would have said for it. */
const char *stem_yaml_config_text(const stem_yaml_config *c, stem_config_key k, char *buf, size_t len);

#endif
