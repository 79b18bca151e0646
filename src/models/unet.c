/* UNet2DConditionModel (diffusers 0.20.2, models/unet_2d_condition.py): weight placement
 * and the forward pass. config.json is read in unet_config.c, the blocks are in
 * unet_blocks.c and unet_attention.c, the hook dispatch in unet_hooks.c.
 *
 * Memory plan of one forward (all from the caller's arena, LIFO):
 *   [time embedding, context][ping][pong][skip stack ...][block temporaries]
 * The down path pushes every block output onto the skip stack (the hidden state is
 * the top skip). The mid block and the up path keep the hidden state in two
 * ping-pong buffers sized for the largest of their tensors: concat(h, skip) goes into
 * the buffer h is not in, the resnet writes back into h's buffer, transformers run in
 * place, and each consumed skip is popped. Peak: skips + 2 up-path tensors + the
 * temporaries of one block.
 *
 * Layer-major (stem_unet_forward_sliced): the same plan, with the batch of every
 * module split into slices (see unet_blocks.c): the skips, the ping-pong buffers and
 * the time embedding/context hold all samples, the block temporaries one slice's. */
#include "models/unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host.h"
#include "core/ops.h"
#include "models/unet_internal.h"

/* ---- weights ------------------------------------------------------------------------- */

typedef struct loader {
    stem_unet *u;
    int attn1_next;
} loader;

static stem_status get_weight(loader *L, const char *prefix, const char *leaf, int ndim, int64_t a, int64_t b, int64_t c,
                        int64_t d, stem_tensor *out) {
    char name[256];
    snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", leaf);
    int64_t shape[4] = {a, b, c, d};
    const stem_tensor *t;
    STEM_TRY(stem_weights_get(&L->u->w, name, ndim, shape, &t));
    *out = *t;
    out->owned = false;
    return STEM_OK;
}

static stem_status load_resnet(loader *L, unet_resnet *rn, const char *name, stem_unet_part part, int block, int layer,
                               int level, int64_t c_in, int64_t c_out, float scale) {
    int64_t T = L->u->cfg.time_embed_dim;
    snprintf(rn->name, sizeof rn->name, "%s", name);
    rn->part = part;
    rn->block = block;
    rn->layer = layer;
    rn->level = level;
    rn->c_in = c_in;
    rn->c_out = c_out;
    rn->output_scale_factor = scale;
    STEM_TRY(get_weight(L, name, "norm1.weight", 1, c_in, 0, 0, 0, &rn->norm1_w));
    STEM_TRY(get_weight(L, name, "norm1.bias", 1, c_in, 0, 0, 0, &rn->norm1_b));
    STEM_TRY(get_weight(L, name, "conv1.weight", 4, c_out, c_in, 3, 3, &rn->conv1_w));
    STEM_TRY(get_weight(L, name, "conv1.bias", 1, c_out, 0, 0, 0, &rn->conv1_b));
    STEM_TRY(get_weight(L, name, "time_emb_proj.weight", 2, c_out, T, 0, 0, &rn->temb_w));
    STEM_TRY(get_weight(L, name, "time_emb_proj.bias", 1, c_out, 0, 0, 0, &rn->temb_b));
    STEM_TRY(get_weight(L, name, "norm2.weight", 1, c_out, 0, 0, 0, &rn->norm2_w));
    STEM_TRY(get_weight(L, name, "norm2.bias", 1, c_out, 0, 0, 0, &rn->norm2_b));
    STEM_TRY(get_weight(L, name, "conv2.weight", 4, c_out, c_out, 3, 3, &rn->conv2_w));
    STEM_TRY(get_weight(L, name, "conv2.bias", 1, c_out, 0, 0, 0, &rn->conv2_b));
    rn->shortcut = c_in != c_out;
    if (rn->shortcut) {
        STEM_TRY(get_weight(L, name, "conv_shortcut.weight", 4, c_out, c_in, 1, 1, &rn->short_w));
        STEM_TRY(get_weight(L, name, "conv_shortcut.bias", 1, c_out, 0, 0, 0, &rn->short_b));
    }
    return STEM_OK;
}

/* proj_in / proj_out: Linear [C, C] (use_linear_projection) or 1x1 Conv2d [C, C, 1, 1],
 * kept as a [C, C] view either way. */
static stem_status load_proj(loader *L, const char *prefix, const char *leaf, int64_t C, stem_tensor *view) {
    stem_tensor t;
    if (L->u->cfg.use_linear_projection) STEM_TRY(get_weight(L, prefix, leaf, 2, C, C, 0, 0, &t));
    else STEM_TRY(get_weight(L, prefix, leaf, 4, C, C, 1, 1, &t));
    int64_t s2[2] = {C, C};
    return stem_tensor_reshape(&t, 2, s2, view);
}

static stem_status load_transformer(loader *L, unet_transformer *tr, const char *name, stem_unet_part part, int block,
                                    int layer, int level, int64_t C, int heads, int n_blocks) {
    const stem_unet_config *cfg = &L->u->cfg;
    int64_t X = cfg->cross_attention_dim[level];
    snprintf(tr->name, sizeof tr->name, "%s", name);
    tr->part = part;
    tr->block = block;
    tr->layer = layer;
    tr->level = level;
    tr->channels = C;
    tr->heads = heads;
    tr->head_dim = C / heads;
    tr->cross_dim = X;
    tr->n_blocks = n_blocks;
    STEM_TRY(get_weight(L, name, "norm.weight", 1, C, 0, 0, 0, &tr->norm_w));
    STEM_TRY(get_weight(L, name, "norm.bias", 1, C, 0, 0, 0, &tr->norm_b));
    STEM_TRY(load_proj(L, name, "proj_in.weight", C, &tr->proj_in_w));
    STEM_TRY(get_weight(L, name, "proj_in.bias", 1, C, 0, 0, 0, &tr->proj_in_b));
    STEM_TRY(load_proj(L, name, "proj_out.weight", C, &tr->proj_out_w));
    STEM_TRY(get_weight(L, name, "proj_out.bias", 1, C, 0, 0, 0, &tr->proj_out_b));
    for (int i = 0; i < n_blocks; i++) {
        unet_tblock *tb = &tr->blocks[i];
        char p[UNET_NAME_LEN + 32];
        snprintf(tb->name, sizeof tb->name, "%s.transformer_blocks.%d", name, i);
        snprintf(tb->attn1_name, sizeof tb->attn1_name, "%s.attn1", tb->name);
        snprintf(tb->attn2_name, sizeof tb->attn2_name, "%s.attn2", tb->name);
        tb->index = i;
        tb->attn1_index = L->attn1_next++;
        L->u->attn1_names[tb->attn1_index] = tb->attn1_name;
        L->u->attn1_levels[tb->attn1_index] = level;
        L->u->attn1_channels[tb->attn1_index] = C;
        snprintf(p, sizeof p, "%s", tb->name);
        STEM_TRY(get_weight(L, p, "norm1.weight", 1, C, 0, 0, 0, &tb->norm1_w));
        STEM_TRY(get_weight(L, p, "norm1.bias", 1, C, 0, 0, 0, &tb->norm1_b));
        STEM_TRY(get_weight(L, p, "attn1.to_q.weight", 2, C, C, 0, 0, &tb->q1));
        STEM_TRY(get_weight(L, p, "attn1.to_k.weight", 2, C, C, 0, 0, &tb->k1));
        STEM_TRY(get_weight(L, p, "attn1.to_v.weight", 2, C, C, 0, 0, &tb->v1));
        STEM_TRY(get_weight(L, p, "attn1.to_out.0.weight", 2, C, C, 0, 0, &tb->o1_w));
        STEM_TRY(get_weight(L, p, "attn1.to_out.0.bias", 1, C, 0, 0, 0, &tb->o1_b));
        STEM_TRY(get_weight(L, p, "norm2.weight", 1, C, 0, 0, 0, &tb->norm2_w));
        STEM_TRY(get_weight(L, p, "norm2.bias", 1, C, 0, 0, 0, &tb->norm2_b));
        STEM_TRY(get_weight(L, p, "attn2.to_q.weight", 2, C, C, 0, 0, &tb->q2));
        STEM_TRY(get_weight(L, p, "attn2.to_k.weight", 2, C, X, 0, 0, &tb->k2));
        STEM_TRY(get_weight(L, p, "attn2.to_v.weight", 2, C, X, 0, 0, &tb->v2));
        STEM_TRY(get_weight(L, p, "attn2.to_out.0.weight", 2, C, C, 0, 0, &tb->o2_w));
        STEM_TRY(get_weight(L, p, "attn2.to_out.0.bias", 1, C, 0, 0, 0, &tb->o2_b));
        STEM_TRY(get_weight(L, p, "norm3.weight", 1, C, 0, 0, 0, &tb->norm3_w));
        STEM_TRY(get_weight(L, p, "norm3.bias", 1, C, 0, 0, 0, &tb->norm3_b));
        STEM_TRY(get_weight(L, p, "ff.net.0.proj.weight", 2, 8 * C, C, 0, 0, &tb->ff1_w));
        STEM_TRY(get_weight(L, p, "ff.net.0.proj.bias", 1, 8 * C, 0, 0, 0, &tb->ff1_b));
        STEM_TRY(get_weight(L, p, "ff.net.2.weight", 2, C, 4 * C, 0, 0, &tb->ff2_w));
        STEM_TRY(get_weight(L, p, "ff.net.2.bias", 1, C, 0, 0, 0, &tb->ff2_b));
    }
    return STEM_OK;
}

/* Builds every module in diffusers' order, simulating the skip stack to get the up
 * path's concat widths (exactly diffusers' prev_output_channel / res_skip_channels). */
static stem_status load_modules(loader *L) {
    stem_unet *u = L->u;
    const stem_unet_config *cfg = &u->cfg;
    int levels = cfg->levels;
    int64_t C0 = cfg->block_out_channels[0], T = cfg->time_embed_dim;
    int kin = cfg->conv_in_kernel, kout = cfg->conv_out_kernel;
    char name[UNET_NAME_LEN];

    STEM_TRY(get_weight(L, "", "conv_in.weight", 4, C0, cfg->in_channels, kin, kin, &u->conv_in_w));
    STEM_TRY(get_weight(L, "", "conv_in.bias", 1, C0, 0, 0, 0, &u->conv_in_b));
    STEM_TRY(get_weight(L, "", "time_embedding.linear_1.weight", 2, T, C0, 0, 0, &u->time_w1));
    STEM_TRY(get_weight(L, "", "time_embedding.linear_1.bias", 1, T, 0, 0, 0, &u->time_b1));
    STEM_TRY(get_weight(L, "", "time_embedding.linear_2.weight", 2, T, T, 0, 0, &u->time_w2));
    STEM_TRY(get_weight(L, "", "time_embedding.linear_2.bias", 1, T, 0, 0, 0, &u->time_b2));

    u->n_skips = 0;
    u->skip_channels[u->n_skips] = C0;
    u->skip_level[u->n_skips++] = 0;
    int64_t c = C0;
    for (int i = 0; i < levels; i++) {
        unet_block *blk = &u->down[i];
        int64_t c_out = cfg->block_out_channels[i];
        blk->n_layers = cfg->layers_per_block[i];
        blk->cross_attn = cfg->down_cross_attn[i];
        for (int j = 0; j < blk->n_layers; j++) {
            snprintf(name, sizeof name, "down_blocks.%d.resnets.%d", i, j);
            STEM_TRY(load_resnet(L, &blk->resnets[j], name, STEM_UNET_DOWN, i, j, i, c, c_out, 1.0f));
            c = c_out;
            if (blk->cross_attn) {
                snprintf(name, sizeof name, "down_blocks.%d.attentions.%d", i, j);
                STEM_TRY(load_transformer(L, &blk->attns[j], name, STEM_UNET_DOWN, i, j, i, c, cfg->heads[i],
                                          cfg->transformer_layers[i]));
            }
            u->skip_channels[u->n_skips] = c;
            u->skip_level[u->n_skips++] = i;
        }
        blk->resample = i < levels - 1;
        if (blk->resample) {
            snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0", i);
            STEM_TRY(get_weight(L, name, "conv.weight", 4, c, c, 3, 3, &blk->resample_w));
            STEM_TRY(get_weight(L, name, "conv.bias", 1, c, 0, 0, 0, &blk->resample_b));
            u->skip_channels[u->n_skips] = c;
            u->skip_level[u->n_skips++] = i + 1;
        }
    }

    int last = levels - 1;
    STEM_TRY(load_resnet(L, &u->mid_resnets[0], "mid_block.resnets.0", STEM_UNET_MID, 0, 0, last, c, c,
                         cfg->mid_block_scale_factor));
    STEM_TRY(load_transformer(L, &u->mid_attn, "mid_block.attentions.0", STEM_UNET_MID, 0, 0, last, c, cfg->heads[last],
                              cfg->transformer_layers[last]));
    STEM_TRY(load_resnet(L, &u->mid_resnets[1], "mid_block.resnets.1", STEM_UNET_MID, 0, 1, last, c, c,
                         cfg->mid_block_scale_factor));

    int top = u->n_skips;
    for (int i = 0; i < levels; i++) {
        int level = levels - 1 - i;
        unet_block *blk = &u->up[i];
        int64_t c_out = cfg->block_out_channels[level];
        blk->n_layers = cfg->layers_per_block[level] + 1;
        blk->cross_attn = cfg->up_cross_attn[i];
        for (int j = 0; j < blk->n_layers; j++) {
            if (top == 0)
                return stem_fail(STEM_E_FORMAT, "unet: the up blocks consume more skip connections than the down "
                                                "blocks make (check layers_per_block)");
            int64_t c_skip = u->skip_channels[--top];
            snprintf(name, sizeof name, "up_blocks.%d.resnets.%d", i, j);
            STEM_TRY(load_resnet(L, &blk->resnets[j], name, STEM_UNET_UP, i, j, level, c + c_skip, c_out, 1.0f));
            c = c_out;
            if (blk->cross_attn) {
                snprintf(name, sizeof name, "up_blocks.%d.attentions.%d", i, j);
                STEM_TRY(load_transformer(L, &blk->attns[j], name, STEM_UNET_UP, i, j, level, c, cfg->heads[level],
                                          cfg->transformer_layers[level]));
            }
        }
        blk->resample = i < levels - 1;
        if (blk->resample) {
            snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0", i);
            STEM_TRY(get_weight(L, name, "conv.weight", 4, c, c, 3, 3, &blk->resample_w));
            STEM_TRY(get_weight(L, name, "conv.bias", 1, c, 0, 0, 0, &blk->resample_b));
        }
    }
    if (top != 0) return stem_fail(STEM_E_FORMAT, "unet: %d skip connections are never consumed", top);

    STEM_TRY(get_weight(L, "", "conv_norm_out.weight", 1, C0, 0, 0, 0, &u->norm_out_w));
    STEM_TRY(get_weight(L, "", "conv_norm_out.bias", 1, C0, 0, 0, 0, &u->norm_out_b));
    STEM_TRY(get_weight(L, "", "conv_out.weight", 4, cfg->out_channels, C0, kout, kout, &u->conv_out_w));
    STEM_TRY(get_weight(L, "", "conv_out.bias", 1, cfg->out_channels, 0, 0, 0, &u->conv_out_b));
    u->n_attn1 = L->attn1_next;
    return STEM_OK;
}

stem_status stem_unet_load_weights(const stem_unet_config *cfg, stem_weights *w, stem_unet **out) {
    *out = NULL;
    stem_unet *u = calloc(1, sizeof *u);
    if (!u) {
        stem_weights_close(w);
        return stem_fail(STEM_E_NOMEM, "unet: out of memory");
    }
    u->cfg = *cfg;
    u->w = *w;
    memset(w, 0, sizeof *w);
    u->be = u->w.be;
    u->dtype = u->w.dtype;
    loader L = {.u = u};
    stem_status s = load_modules(&L);
    /* after the modules: a data-less weight set (stem_weights_open_shapes) counts what
     * they asked for; before finish, which releases the host mappings */
    u->params = stem_weights_param_count(&u->w);
    if (s == STEM_OK) s = stem_weights_finish(&u->w);
    if (s != STEM_OK) {
        stem_unet_free(u);
        return s;
    }
    *out = u;
    return STEM_OK;
}

stem_status stem_unet_load(const char *unet_dir, stem_backend *be, stem_dtype dtype, stem_unet **out) {
    *out = NULL;
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", unet_dir);
    stem_unet_config cfg;
    STEM_TRY(stem_unet_config_load(path, &cfg));
    stem_weights w;
    STEM_TRY(stem_weights_open(unet_dir, "unet", be, dtype, &w));
    return stem_unet_load_weights(&cfg, &w, out);
}

stem_status stem_unet_load_shapes(const char *unet_dir, stem_backend *be, stem_dtype dtype, stem_unet **out) {
    *out = NULL;
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", unet_dir);
    stem_unet_config cfg;
    STEM_TRY(stem_unet_config_load(path, &cfg));
    stem_weights w;
    STEM_TRY(stem_weights_open_shapes(unet_dir, "unet", be, dtype, &w));
    return stem_unet_load_weights(&cfg, &w, out);
}

void stem_unet_free(stem_unet *u) {
    if (!u) return;
    stem_weights_close(&u->w);
    free(u);
}

const stem_unet_config *stem_unet_get_config(const stem_unet *u) { return &u->cfg; }
stem_backend *stem_unet_backend(const stem_unet *u) { return u->be; }
stem_dtype stem_unet_dtype(const stem_unet *u) { return u->dtype; }
int64_t stem_unet_param_count(const stem_unet *u) { return u->params; }
int stem_unet_attn1_count(const stem_unet *u) { return u->n_attn1; }
const char *stem_unet_attn1_name(const stem_unet *u, int index) {
    return index >= 0 && index < u->n_attn1 ? u->attn1_names[index] : NULL;
}
int stem_unet_attn1_level(const stem_unet *u, int index) {
    return index >= 0 && index < u->n_attn1 ? u->attn1_levels[index] : -1;
}
int64_t stem_unet_attn1_channels(const stem_unet *u, int index) {
    return index >= 0 && index < u->n_attn1 ? u->attn1_channels[index] : 0;
}

int stem_unet_level_sizes(const stem_unet *u, int64_t h, int64_t w, int64_t *hs, int64_t *ws) {
    int lo = u->cfg.downsample_padding ? 1 : 0, hi = 1;
    hs[0] = h;
    ws[0] = w;
    for (int i = 1; i < u->cfg.levels; i++) {
        hs[i] = stem_conv_out_size(hs[i - 1], 3, 2, lo, hi);
        ws[i] = stem_conv_out_size(ws[i - 1], 3, 2, lo, hi);
    }
    return u->cfg.levels;
}

/* ---- forward ------------------------------------------------------------------------- */

/* A [B, c, h, w] view at the start of a ping-pong buffer. */
static stem_tensor buffer_view(const stem_tensor *buf, int64_t B, int64_t c, int64_t h, int64_t w) {
    int64_t s[4] = {B, c, h, w};
    return stem_tensor_wrap(buf->backend, buf->dtype, 4, s, buf->data);
}

/* Elements of the largest tensor the mid block and up path keep in a ping-pong buffer. */
static int64_t pingpong_elements(const stem_unet *u, int64_t B, const int64_t *hs, const int64_t *ws) {
    const stem_unet_config *cfg = &u->cfg;
    int last = cfg->levels - 1;
    int64_t c = cfg->block_out_channels[last];
    int64_t most = c * hs[last] * ws[last];
    int top = u->n_skips;
    for (int i = 0; i < cfg->levels; i++) {
        int level = last - i;
        int64_t hw = hs[level] * ws[level];
        for (int j = 0; j < u->up[i].n_layers; j++) {
            int64_t cat = c + u->skip_channels[--top];
            c = cfg->block_out_channels[level];
            if (cat * hw > most) most = cat * hw;
            if (c * hw > most) most = c * hw;
        }
        if (u->up[i].resample && c * hs[level - 1] * ws[level - 1] > most) most = c * hs[level - 1] * ws[level - 1];
    }
    return B * most;
}

static stem_status check_inputs(const stem_unet *u, const stem_tensor *sample, int64_t n_t, const stem_tensor *context,
                                const stem_tensor *out) {
    char a[STEM_SHAPE_STR_LEN], b[STEM_SHAPE_STR_LEN];
    const stem_unet_config *cfg = &u->cfg;
    const stem_tensor *ts[3] = {sample, context, out};
    const char *names[3] = {"sample", "context", "out"};
    for (int i = 0; i < 3; i++) {
        if (ts[i]->backend != u->be)
            return stem_fail(STEM_E_ARG, "unet: %s is on backend %s, the UNet on %s", names[i],
                             ts[i]->backend ? ts[i]->backend->name : "(none)", u->be->name);
        if (ts[i]->dtype != u->dtype)
            return stem_fail(STEM_E_DTYPE, "unet: %s is %s, the UNet computes in %s", names[i],
                             stem_dtype_name(ts[i]->dtype), stem_dtype_name(u->dtype));
    }
    if (sample->ndim != 4 || sample->shape[1] != cfg->in_channels || sample->shape[0] < 1 || sample->shape[2] < 1 ||
        sample->shape[3] < 1)
        return stem_fail(STEM_E_SHAPE, "unet: sample has shape %s, expected [B, %d, h, w]",
                         stem_shape_str(sample, a, sizeof a), cfg->in_channels);
    int64_t B = sample->shape[0];
    if (context->ndim != 3 || (context->shape[0] != B && context->shape[0] != 1) || context->shape[1] < 1 ||
        context->shape[2] != cfg->cross_attention_dim[0])
        return stem_fail(STEM_E_SHAPE, "unet: context has shape %s, expected [%lld or 1, tokens, %d] for sample %s",
                         stem_shape_str(context, a, sizeof a), (long long)B, cfg->cross_attention_dim[0],
                         stem_shape_str(sample, b, sizeof b));
    if (out->ndim != 4 || out->shape[0] != B || out->shape[1] != cfg->out_channels ||
        out->shape[2] != sample->shape[2] || out->shape[3] != sample->shape[3])
        return stem_fail(STEM_E_SHAPE, "unet: out has shape %s, expected [%lld, %d, %lld, %lld]",
                         stem_shape_str(out, a, sizeof a), (long long)B, cfg->out_channels, (long long)sample->shape[2],
                         (long long)sample->shape[3]);
    if (n_t != 1 && n_t != B)
        return stem_fail(STEM_E_SHAPE, "unet: %lld timesteps for a batch of %lld (give 1 or %lld)", (long long)n_t,
                         (long long)B, (long long)B);
    return STEM_OK;
}

/* temb_act = SiLU(linear_2(SiLU(linear_1(timestep_embedding(t)))))   [B, T] */
static stem_status time_embedding(unet_run *r, const float *timesteps, int64_t n_t) {
    stem_unet *u = r->u;
    int64_t B = r->batch, C0 = u->cfg.block_out_channels[0], T = u->cfg.time_embed_dim;
    float *host = malloc((size_t)B * sizeof *host);
    if (!host) return stem_fail(STEM_E_NOMEM, "unet: out of memory");
    for (int64_t i = 0; i < B; i++) host[i] = timesteps[n_t == 1 ? 0 : i];
    stem_tensor th = stem_tensor_wrap(stem_host(), STEM_F32, 1, &B, host), t, e0, e1;
    stem_status s = stem_arena_tensor(r->arena, STEM_F32, 1, &B, &t);
    if (s == STEM_OK) s = stem_tensor_copy(&th, &t);
    free(host);
    int64_t s0[2] = {B, C0}, s1[2] = {B, T};
    if (s == STEM_OK) s = unet_tmp(r, 2, s0, &e0);
    if (s == STEM_OK) s = stem_timestep_embedding(&t, u->cfg.flip_sin_to_cos, u->cfg.freq_shift, 10000.0f, &e0);
    if (s == STEM_OK) s = unet_tmp(r, 2, s1, &e1);
    if (s == STEM_OK) s = stem_linear(&e0, &u->time_w1, &u->time_b1, &e1);
    if (s == STEM_OK) s = stem_unary(STEM_UNARY_SILU, &e1, &e1);
    if (s == STEM_OK) s = unet_tmp(r, 2, s1, &r->temb_act);
    if (s == STEM_OK) s = stem_linear(&e1, &u->time_w2, &u->time_b2, &r->temb_act);
    if (s == STEM_OK) s = stem_unary(STEM_UNARY_SILU, &r->temb_act, &r->temb_act);
    if (s != STEM_OK) return stem_error_context(s, "unet time embedding");
    return STEM_OK;
}

/* context [1, S, X] is repeated for every sample. */
static stem_status batch_context(unet_run *r, const stem_tensor *context) {
    if (context->shape[0] == r->batch) {
        r->context = *context;
        r->context.owned = false;
        return STEM_OK;
    }
    int64_t s[3] = {r->batch, context->shape[1], context->shape[2]};
    STEM_TRY(unet_tmp(r, 3, s, &r->context));
    for (int64_t b = 0; b < r->batch; b++) {
        stem_tensor row;
        STEM_TRY(stem_tensor_narrow0(&r->context, b, 1, &row));
        STEM_TRY(stem_tensor_copy(context, &row));
    }
    return STEM_OK;
}

typedef struct skip_stack {
    stem_tensor t[UNET_MAX_SKIPS];
    size_t mark[UNET_MAX_SKIPS]; /* arena position before t[i] */
    int n;
} skip_stack;

/* A new [B, c, h, w] tensor on top of the skip stack. */
static stem_status push_skip(unet_run *r, skip_stack *st, int64_t c, int64_t h, int64_t w) {
    if (st->n == UNET_MAX_SKIPS) return stem_fail(STEM_E_ARG, "unet: skip stack overflow");
    int64_t s[4] = {r->batch, c, h, w};
    st->mark[st->n] = stem_arena_mark(r->arena);
    STEM_TRY(unet_tmp(r, 4, s, &st->t[st->n]));
    st->n++;
    return STEM_OK;
}

/* conv_in on one slice: [n, in, h, w] -> [n, C0, h, w] */
static stem_status conv_in_slice(unet_run *r, const void *module, const stem_tensor *x, stem_tensor *y) {
    const stem_unet *u = module;
    int k = u->cfg.conv_in_kernel / 2, pad[4] = {k, k, k, k};
    (void)r;
    return stem_conv2d(x, &u->conv_in_w, &u->conv_in_b, 1, 1, pad, y);
}

/* conv_out(SiLU(GroupNorm(h))) on one slice: [n, C0, h, w] -> [n, out, h, w] */
static stem_status conv_out_slice(unet_run *r, const void *module, const stem_tensor *h, stem_tensor *y) {
    const stem_unet *u = module;
    const stem_unet_config *cfg = &u->cfg;
    int k = cfg->conv_out_kernel / 2, pad[4] = {k, k, k, k};
    stem_tensor g;
    STEM_TRY(unet_tmp(r, 4, h->shape, &g));
    STEM_TRY(stem_group_norm(h, &u->norm_out_w, &u->norm_out_b, cfg->norm_num_groups, cfg->norm_eps, true, &g));
    return stem_conv2d(&g, &u->conv_out_w, &u->conv_out_b, 1, 1, pad, y);
}

static stem_status forward_down(unet_run *r, skip_stack *st, const stem_tensor *x, const int64_t *hs,
                                const int64_t *ws) {
    stem_unet *u = r->u;
    const stem_unet_config *cfg = &u->cfg;
    /* conv_in: [B, in, h, w] -> [B, C0, h, w], the first skip */
    STEM_TRY(push_skip(r, st, cfg->block_out_channels[0], hs[0], ws[0]));
    STEM_TRY(unet_over_slices(r, conv_in_slice, u, x, &st->t[st->n - 1]));
    for (int i = 0; i < cfg->levels; i++) {
        const unet_block *blk = &u->down[i];
        for (int j = 0; j < blk->n_layers; j++) {
            /* resnet: [B, c, H, W] -> [B, C_i, H, W]; transformer in place */
            STEM_TRY(push_skip(r, st, blk->resnets[j].c_out, hs[i], ws[i]));
            STEM_TRY(unet_resnet_forward(r, &blk->resnets[j], &st->t[st->n - 2], &st->t[st->n - 1]));
            if (blk->cross_attn) STEM_TRY(unet_transformer_forward(r, &blk->attns[j], &st->t[st->n - 1]));
        }
        if (blk->resample) {
            /* Downsample2D: [B, C_i, H, W] -> [B, C_i, ceil(H/2), ceil(W/2)] */
            STEM_TRY(push_skip(r, st, cfg->block_out_channels[i], hs[i + 1], ws[i + 1]));
            STEM_TRY(unet_downsample_forward(r, blk, &st->t[st->n - 2], &st->t[st->n - 1]));
        }
    }
    return STEM_OK;
}

/* Mid block and up path; the result [B, C0, h, w] is left in *h. */
static stem_status forward_mid_up(unet_run *r, skip_stack *st, stem_tensor *ping, stem_tensor *pong, const int64_t *hs,
                                  const int64_t *ws, stem_tensor *h) {
    stem_unet *u = r->u;
    const stem_unet_config *cfg = &u->cfg;
    int64_t B = r->batch;
    int last = cfg->levels - 1;
    int64_t c = cfg->block_out_channels[last];
    stem_tensor *cur = ping, *other = pong;

    /* mid: resnet -> transformer -> resnet, [B, C_last, H, W] */
    stem_tensor a = buffer_view(ping, B, c, hs[last], ws[last]);
    stem_tensor b = buffer_view(pong, B, c, hs[last], ws[last]);
    STEM_TRY(unet_resnet_forward(r, &u->mid_resnets[0], &st->t[st->n - 1], &a));
    STEM_TRY(unet_transformer_forward(r, &u->mid_attn, &a));
    STEM_TRY(unet_resnet_forward(r, &u->mid_resnets[1], &a, &b));
    cur = pong;
    other = ping;
    *h = b;

    for (int i = 0; i < cfg->levels; i++) {
        int level = last - i;
        const unet_block *blk = &u->up[i];
        for (int j = 0; j < blk->n_layers; j++) {
            stem_tensor *skip = &st->t[st->n - 1];
            /* the UP_CONCAT tap, then cat = [h | skip] along channels in the other buffer
             * [B, c + c_skip, H, W], for every slice before the resnet (y below overlaps h) */
            const unet_resnet *rn = &blk->resnets[j];
            char name[UNET_NAME_LEN];
            snprintf(name, sizeof name, "up_blocks.%d.resnets.%d", i, j);
            stem_tensor cat = buffer_view(other, B, rn->c_in, hs[level], ws[level]);
            stem_status s = unet_up_concat(r, name, i, j, level, h, skip, &cat);
            if (s != STEM_OK) return stem_error_context(s, "unet %s (skip concat)", name);
            /* resnet back into h's buffer; transformer in place   [B, C_level, H, W] */
            stem_tensor y = buffer_view(cur, B, rn->c_out, hs[level], ws[level]);
            STEM_TRY(unet_resnet_forward(r, rn, &cat, &y));
            if (blk->cross_attn) STEM_TRY(unet_transformer_forward(r, &blk->attns[j], &y));
            *h = y;
            /* pop the consumed skip */
            st->n--;
            stem_arena_reset(r->arena, st->mark[st->n]);
        }
        if (blk->resample) {
            /* Upsample2D to the next skip's size: [B, C, H, W] -> [B, C, H', W'] */
            const stem_tensor *next = &st->t[st->n - 1];
            stem_tensor y = buffer_view(other, B, h->shape[1], next->shape[2], next->shape[3]);
            STEM_TRY(unet_upsample_forward(r, blk, h, &y));
            *h = y;
            stem_tensor *t = cur;
            cur = other;
            other = t;
        }
    }
    return STEM_OK;
}

stem_status stem_unet_forward(stem_unet *u, stem_arena *arena, const stem_tensor *sample, const float *timesteps,
                              int64_t n_timesteps, const stem_tensor *context, const stem_unet_hooks *hooks,
                              stem_tensor *out) {
    return stem_unet_forward_sliced(u, arena, sample, timesteps, n_timesteps, context, hooks, sample->shape[0], out);
}

stem_status stem_unet_forward_sliced(stem_unet *u, stem_arena *arena, const stem_tensor *sample,
                                     const float *timesteps, int64_t n_timesteps, const stem_tensor *context,
                                     const stem_unet_hooks *hooks, int64_t slice_frames, stem_tensor *out) {
    static const stem_unet_hooks no_hooks = {.branches = 1};
    if (u->w.shapes_only) return stem_fail(STEM_E_ARG, "unet: loaded from its config alone (no weights: a plan, stem_unet_load_shapes): it cannot run");
    STEM_TRY(check_inputs(u, sample, n_timesteps, context, out));
    if (slice_frames < 1)
        return stem_fail(STEM_E_ARG, "unet: slice_frames = %lld (must be >= 1)", (long long)slice_frames);
    if (!hooks) hooks = &no_hooks;
    const stem_unet_config *cfg = &u->cfg;
    int64_t B = sample->shape[0];
    STEM_TRY(unet_hooks_check(hooks, B));
    /* the batch: R branches of F frames, every module over slices of frames */
    const int64_t R = hooks->branches > 1 ? hooks->branches : 1, F = B / R;
    unet_run r = {.u = u, .arena = arena, .hooks = hooks, .batch = B,
                  .span = {.branches = R, .frame0 = 0, .frames = F, .frames_total = F},
                  .slice = slice_frames < F ? slice_frames : F};
    int64_t hs[STEM_UNET_MAX_LEVELS], ws[STEM_UNET_MAX_LEVELS];
    stem_unet_level_sizes(u, sample->shape[2], sample->shape[3], hs, ws);
    size_t mark0 = stem_arena_mark(arena);
    skip_stack *st = calloc(1, sizeof *st);
    if (!st) return stem_fail(STEM_E_NOMEM, "unet: out of memory");
    stem_tensor x = *sample, ping, pong, h;
    stem_status s;
#define TRY(e) do { if ((s = (e)) != STEM_OK) goto done; } while (0)
    TRY(time_embedding(&r, timesteps, n_timesteps));
    TRY(batch_context(&r, context));
    if (cfg->center_input_sample) {
        TRY(unet_tmp(&r, 4, sample->shape, &x));
        TRY(stem_affine(sample, 2.0f, -1.0f, &x));
    }
    int64_t pp = pingpong_elements(u, B, hs, ws);
    TRY(unet_tmp(&r, 1, &pp, &ping));
    TRY(unet_tmp(&r, 1, &pp, &pong));

    TRY(forward_down(&r, st, &x, hs, ws));
    TRY(forward_mid_up(&r, st, &ping, &pong, hs, ws, &h));
    /* conv_out(SiLU(GroupNorm(h)))   [B, C0, h, w] -> [B, out, h, w] */
    TRY(unet_over_slices(&r, conv_out_slice, u, &h, out));
    TRY(unet_forward_end(hooks));
#undef TRY
done:
    stem_arena_reset(arena, mark0);
    free(st);
    return s;
}

int64_t stem_unet_sliced_state_elements(const stem_unet *u, int64_t h, int64_t w) {
    int64_t hs[STEM_UNET_MAX_LEVELS], ws[STEM_UNET_MAX_LEVELS];
    stem_unet_level_sizes(u, h, w, hs, ws);
    int64_t skips = 0, tokens = 0;
    for (int i = 0; i < u->n_skips; i++) skips += u->skip_channels[i] * hs[u->skip_level[i]] * ws[u->skip_level[i]];
    for (int l = 0; l < u->cfg.levels; l++) {
        int64_t nc = (int64_t)u->cfg.block_out_channels[l] * hs[l] * ws[l];
        if (nc > tokens) tokens = nc;
    }
    return skips + 2 * pingpong_elements(u, 1, hs, ws) + tokens;
}
