/* The memory plan of an edit (see edit.h): what a TokenFlow edit keeps on the device, and
 * how it stays within a budget whatever the frame count.
 *
 * Parts (bytes, the UNet's dtype):
 *   latents   x and the next step's x [Fe, 4, h, w] (2 x), one evaluation's batch, eps and
 *             contexts [3 max(K, B), ...], the guided eps [B, 4, h, w];
 *   caches    per transformer block, keyframe norm1 features [K, N, C] and attn1 outputs
 *             [3 K, N, C] (stem_tokenflow_cache_bytes);
 *   normal    one chunk's evaluation: 3 B samples at the one-evaluation rate;
 *   pivotal   all 3 K keyframe samples at once, or layer-major: the all-sample state of a
 *             sliced forward (skips, up-path buffers, token stream), attn1's keys/values of
 *             all keyframes for the largest site, STEM bases, plus one slice.
 * The one-evaluation rate is stem invert's (pipeline/invert.c): ~40 x block_out_channels[0]
 * x h x w values per sample, above the measured arena peak of SD 1.5. Extended attention
 * is fused (the streaming attention op), so no K N x K N matrix appears anywhere. */
#include <string.h>

#include "edit/tokenflow.h"
#include "pipeline/edit.h"
#include "stem/stem_sa.h"

static size_t per_sample_bytes(const stem_pipeline *p, int64_t h, int64_t w) {
    const stem_unet_config *c = stem_unet_get_config(p->unet);
    return (size_t)40 * (size_t)c->block_out_channels[0] * (size_t)(h * w) * stem_dtype_size(p->dtype);
}

void stem_edit_plan_memory(const stem_pipeline *p, const stem_edit_options *o, int64_t frames, int64_t h, int64_t w,
                           size_t mem_bytes, stem_edit_memory_plan *plan) {
    memset(plan, 0, sizeof *plan);
    const size_t d = stem_dtype_size(p->dtype), per = per_sample_bytes(p, h, w);
    const int64_t B = o->batch_size > 0 ? o->batch_size : 1, Fe = stem_edit_frame_count(o, frames);
    const int64_t K = (Fe + B - 1) / B, most = K > B ? K : B, lat = 4 * h * w;
    const int64_t ctx = 77 * (int64_t)stem_unet_get_config(p->unet)->cross_attention_dim[0];
    plan->frames_edited = Fe;
    plan->chunks = plan->keyframes = K;
    plan->latent_bytes = (size_t)(2 * Fe * lat + 2 * 3 * most * lat + 3 * most * ctx + B * lat) * d;
    plan->cache_bytes = stem_tokenflow_cache_bytes(p->unet, K, h, w);
    plan->normal_bytes = (size_t)(3 * (Fe < B ? Fe : B)) * per;
    const size_t all_at_once = (size_t)(3 * K) * per;
    const size_t fixed = plan->latent_bytes;
    const size_t pass_all = all_at_once > plan->normal_bytes ? all_at_once : plan->normal_bytes;
    plan->unet_frames = K;
    plan->pivotal_bytes = all_at_once;
    plan->fits = true;
    if (fixed + plan->cache_bytes + pass_all <= mem_bytes) {
        /* everything on the device */
    } else if (fixed + pass_all <= mem_bytes) {
        plan->cache_on_host = true;
    } else {
        /* layer-major pivotal pass: all-sample state plus slices of s keyframes per branch */
        int64_t max_c, kv = 2 * 3 * K * stem_sa_site_elements(p->unet, h, w, &max_c);
        int64_t bases = o->attention == STEM_EDIT_ATTN_STEM ? 2 * 3 * o->em.bases * max_c : 0;
        const size_t state = ((size_t)(3 * K * stem_unet_sliced_state_elements(p->unet, h, w)) + (size_t)kv +
                              (size_t)bases) * d;
        plan->pivotal_sliced = true;
        plan->cache_on_host = fixed + plan->cache_bytes + state + 3 * per > mem_bytes;
        const size_t taken = fixed + state + (plan->cache_on_host ? 0 : plan->cache_bytes);
        int64_t slice = taken < mem_bytes && per ? (int64_t)((mem_bytes - taken) / (3 * per)) : 0;
        plan->fits = slice >= 1 && fixed + plan->normal_bytes + (plan->cache_on_host ? 0 : plan->cache_bytes) <= mem_bytes;
        plan->unet_frames = slice < 1 ? 1 : slice < K ? slice : K - 1 > 0 ? K - 1 : 1;
        plan->pivotal_bytes = state + (size_t)(3 * plan->unet_frames) * per;
    }
    if (fixed + plan->normal_bytes > mem_bytes) plan->fits = false;
    const size_t pass = plan->pivotal_bytes > plan->normal_bytes ? plan->pivotal_bytes : plan->normal_bytes;
    plan->device_bytes = fixed + pass + (plan->cache_on_host ? 0 : plan->cache_bytes);
    plan->host_bytes = plan->cache_on_host ? plan->cache_bytes : 0;
}

void stem_edit_apply_plan(const stem_edit_memory_plan *plan, stem_edit_options *o) {
    o->unet_frames = plan->pivotal_sliced ? plan->unet_frames : 0;
    o->cache_on_host = plan->cache_on_host;
}
