/* How many bytes a UNet forward takes from its arena, computed from the module structure
 * without running it: a replay of the forward's allocations (unet.c, unet_blocks.c,
 * unet_attention.c) as a stack, with each module's temporaries on top of what the forward
 * keeps (time embedding, context, the ping-pong buffers, the skip stack). Tensors are
 * rounded to the arena's 256-byte alignment; the arena's block boundaries are not modelled
 * (a tensor that does not fit a block's rest starts the next one), so a real arena with
 * small blocks can peak somewhat higher. tests/test_unet_memory.c holds the replay to the
 * measured peak of a one-block arena. Keep it in step with those files. */
#include "models/unet_internal.h"

#define ALIGN 256
#define FF_CHUNK_ELEMENTS ((int64_t)32 << 20) /* unet_attention.c's feed-forward row chunks */

typedef struct replay {
    size_t dsize;   /* the UNet's dtype */
    size_t top;     /* bytes held now */
    size_t peak;
    int64_t rows;   /* samples a module's temporaries are for (one slice) */
    bool gathered;  /* slices of several branches: each module gets row copies of x and y */
} replay;

static size_t aligned(int64_t elements, size_t dsize) {
    size_t b = ((size_t)elements * dsize + ALIGN - 1) / ALIGN * ALIGN;
    return b ? b : ALIGN;
}

static void hold(replay *r, int64_t elements) {
    r->top += aligned(elements, r->dsize);
    if (r->top > r->peak) r->peak = r->top;
}

/* A module's temporaries, released when it returns. */
static void transient(replay *r, size_t bytes) {
    if (r->top + bytes > r->peak) r->peak = r->top + bytes;
}

/* The row copies of a gathered slice: x's rows in, y's rows out. */
static size_t gather_bytes(const replay *r, int64_t in_per_row, int64_t out_per_row) {
    return r->gathered ? aligned(r->rows * in_per_row, r->dsize) + aligned(r->rows * out_per_row, r->dsize) : 0;
}

static void resnet(replay *r, const unet_resnet *rn, int64_t hw) {
    const int64_t B = r->rows;
    size_t t = aligned(B * rn->c_in * hw, r->dsize) + 2 * aligned(B * rn->c_out * hw, r->dsize) +
               aligned(B * rn->c_out, r->dsize);
    if (rn->shortcut) t += aligned(B * rn->c_out * hw, r->dsize);
    transient(r, gather_bytes(r, rn->c_in * hw, rn->c_out * hw) + t);
}

/* The largest of a basic block's three parts, on top of the token stream. */
static size_t basic_block(const replay *r, const unet_transformer *tr, const unet_tblock *tb, int64_t N,
                          int64_t ctx) {
    const int64_t B = r->rows, C = tr->channels, inner = tb->ff2_w.shape[1];
    const size_t nc = aligned(B * N * C, r->dsize), kv2 = aligned(B * ctx * C, r->dsize);
    const size_t attn1 = 6 * nc, attn2 = 4 * nc + 2 * kv2;
    int64_t chunk = FF_CHUNK_ELEMENTS / (2 * inner);
    if (chunk < 256) chunk = 256;
    if (chunk > B * N) chunk = B * N;
    const size_t ff = nc + aligned(chunk * 2 * inner, r->dsize) + aligned(chunk * inner, r->dsize) +
                      aligned(chunk * C, r->dsize);
    size_t most = attn1 > attn2 ? attn1 : attn2;
    return most > ff ? most : ff;
}

/* One gathered row copy of a slice (several branches, sliced), else nothing. */
static size_t gather_one(const replay *r, int64_t per_row) {
    return r->gathered ? aligned(r->rows * per_row, r->dsize) : 0;
}

/* Transformer2DModel in place on [B, C, H, W]; two_phase_rows > 0: the token stream of
 * that many rows is kept across the slices (attn1 in two phases). */
static void transformer(replay *r, const unet_transformer *tr, int64_t N, int64_t ctx, int64_t two_phase_rows) {
    const int64_t B = r->rows, C = tr->channels;
    const size_t nc = aligned(B * N * C, r->dsize);
    size_t blocks = 0;
    for (int i = 0; i < tr->n_blocks; i++) {
        size_t b = basic_block(r, tr, &tr->blocks[i], N, ctx);
        if (b > blocks) blocks = b;
    }
    size_t stream, in = 2 * nc, out = 2 * nc; /* gn + tok; po + po_t */
    if (two_phase_rows) { /* the stream of all rows; each phase's slices gathered from it */
        stream = aligned(two_phase_rows * N * C, r->dsize);
        in += gather_bytes(r, C * N, N * C);
        out += gather_bytes(r, N * C, C * N);
        blocks += gather_one(r, N * C);
    } else { /* one slice at a time: its x rows (gathered) and its stream */
        stream = nc + gather_one(r, C * N);
    }
    size_t most = in > out ? in : out;
    transient(r, stream + (most > blocks ? most : blocks));
}

size_t stem_unet_activation_bytes_sliced(const stem_unet *u, int64_t batch, int64_t branches, int64_t slice_frames,
                                         int64_t h, int64_t w, int64_t context_len, bool two_phase) {
    const stem_unet_config *cfg = &u->cfg;
    int64_t hs[STEM_UNET_MAX_LEVELS], ws[STEM_UNET_MAX_LEVELS];
    stem_unet_level_sizes(u, h, w, hs, ws);
    const int64_t R = branches > 1 ? branches : 1, F = batch / R;
    const int64_t slice = slice_frames > 0 && slice_frames < F ? slice_frames : F;
    replay r = {.dsize = stem_dtype_size(u->dtype), .rows = R * slice, .gathered = R > 1 && slice < F};
    const int64_t B = batch, C0 = cfg->block_out_channels[0], T = cfg->time_embed_dim;
    const int64_t X = cfg->cross_attention_dim[0], two = two_phase && slice < F ? B : 0;
    /* time embedding (t in f32), the batch's context, the ping-pong buffers */
    r.top = aligned(B, 4) + aligned(B * C0, r.dsize) + 2 * aligned(B * T, r.dsize);
    if (r.gathered) r.top += aligned(r.rows * T, r.dsize) + aligned(r.rows * context_len * X, r.dsize);
    hold(&r, B * context_len * X);
    if (cfg->center_input_sample) hold(&r, B * cfg->in_channels * h * w);
    int64_t pp = 0; /* unet.c's pingpong_elements for one sample */
    {
        const int last = cfg->levels - 1;
        int64_t c = cfg->block_out_channels[last];
        pp = c * hs[last] * ws[last];
        int top = u->n_skips;
        for (int i = 0; i < cfg->levels; i++) {
            const int level = last - i;
            const int64_t hw = hs[level] * ws[level];
            for (int j = 0; j < u->up[i].n_layers; j++) {
                const int64_t cat = c + u->skip_channels[--top];
                c = cfg->block_out_channels[level];
                if (cat * hw > pp) pp = cat * hw;
                if (c * hw > pp) pp = c * hw;
            }
            if (u->up[i].resample && c * hs[level - 1] * ws[level - 1] > pp) pp = c * hs[level - 1] * ws[level - 1];
        }
    }
    hold(&r, B * pp);
    hold(&r, B * pp);
    /* down path: the skips stay until the up path pops them */
    size_t skip_bytes[UNET_MAX_SKIPS];
    int n = 0;
    skip_bytes[n++] = aligned(B * C0 * hs[0] * ws[0], r.dsize);
    r.top += skip_bytes[0];
    transient(&r, gather_bytes(&r, cfg->in_channels * hs[0] * ws[0], C0 * hs[0] * ws[0]));
    for (int i = 0; i < cfg->levels; i++) {
        const unet_block *blk = &u->down[i];
        const int64_t hw = hs[i] * ws[i];
        for (int j = 0; j < blk->n_layers; j++) {
            skip_bytes[n] = aligned(B * blk->resnets[j].c_out * hw, r.dsize);
            r.top += skip_bytes[n++];
            resnet(&r, &blk->resnets[j], hw);
            if (blk->cross_attn) transformer(&r, &blk->attns[j], hw, context_len, two);
        }
        if (blk->resample) {
            skip_bytes[n] = aligned(B * cfg->block_out_channels[i] * hs[i + 1] * ws[i + 1], r.dsize);
            r.top += skip_bytes[n++];
        }
        if (r.top > r.peak) r.peak = r.top;
    }
    /* mid block */
    const int last = cfg->levels - 1;
    const int64_t hw_last = hs[last] * ws[last];
    resnet(&r, &u->mid_resnets[0], hw_last);
    transformer(&r, &u->mid_attn, hw_last, context_len, two);
    resnet(&r, &u->mid_resnets[1], hw_last);
    /* up path: each resnet consumes (and releases) a skip */
    for (int i = 0; i < cfg->levels; i++) {
        const int level = last - i;
        const unet_block *blk = &u->up[i];
        const int64_t hw = hs[level] * ws[level];
        for (int j = 0; j < blk->n_layers; j++) {
            const unet_resnet *rn = &blk->resnets[j];
            transient(&r, gather_bytes(&r, (rn->c_in - rn->c_in / 2) * hw, rn->c_in * hw) +
                              (r.gathered ? aligned(r.rows * rn->c_in * hw, r.dsize) : 0)); /* concat, skip rows */
            resnet(&r, rn, hw);
            if (blk->cross_attn) transformer(&r, &blk->attns[j], hw, context_len, two);
            if (n > 0) r.top -= skip_bytes[--n];
        }
        if (blk->resample && level > 0) {
            const int64_t c = blk->resnets[blk->n_layers - 1].c_out;
            transient(&r, aligned(r.rows * c * hs[level - 1] * ws[level - 1], r.dsize) +
                              gather_bytes(&r, c * hw, c * hs[level - 1] * ws[level - 1]));
        }
    }
    /* conv_out's group norm */
    transient(&r, aligned(r.rows * C0 * hs[0] * ws[0], r.dsize) +
                      gather_bytes(&r, C0 * hs[0] * ws[0], cfg->out_channels * hs[0] * ws[0]));
    return r.peak;
}

size_t stem_unet_activation_bytes(const stem_unet *u, int64_t batch, int64_t h, int64_t w, int64_t context_len) {
    return stem_unet_activation_bytes_sliced(u, batch, 1, batch, h, w, context_len, false);
}
