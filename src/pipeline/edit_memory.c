/* The memory plan of an edit (see edit.h): what a TokenFlow edit keeps on the device, and
 * how it stays within a budget whatever the frame count.
 *
 * Parts (bytes, the UNet's dtype):
 *   latents   x and the next step's x [Fe, 4, h, w] (2 x), one evaluation's batch, eps and
 *             contexts [3 max(K, B), ...], the guided eps [B, 4, h, w];
 *   caches    per transformer block, keyframe norm1 features [K, N, C] and attn1 outputs
 *             [3 K, N, C] (stem_tokenflow_cache_bytes);
 *   normal    one chunk's evaluation: the UNet arena of 3 B samples;
 *   pivotal   the arena of all 3 K keyframe samples at once, or layer-major: a sliced
 *             forward's arena (skips, up-path buffers and token stream of all samples, one
 *             slice's temporaries) plus attn1's key/value store of all keyframes for the
 *             largest site and, with STEM bases, the bases.
 * The arena sizes come from stem_unet_activation_bytes, a replay of the forward's
 * allocations (src/models/unet_memory.c). Extended attention is fused (the streaming
 * attention op), so no K N x K N matrix appears anywhere. Not counted: the weights and the
 * backends' kernel scratch (on the CPU one cached buffer; a few MiB at SD 1.5 sizes). */
#include <string.h>

#include "edit/tokenflow.h"
#include "pipeline/edit.h"
#include "stem/stem_sa.h"

#define CONTEXT_TOKENS 77

void stem_edit_plan_memory(const stem_pipeline *p, const stem_edit_options *o, int64_t frames, int64_t h, int64_t w,
                           size_t mem_bytes, stem_edit_memory_plan *plan) {
    memset(plan, 0, sizeof *plan);
    const stem_unet *u = p->unet;
    const size_t d = stem_dtype_size(p->dtype);
    const int64_t B = o->batch_size > 0 ? o->batch_size : 1, Fe = stem_edit_frame_count(o, frames);
    const int64_t K = (Fe + B - 1) / B, most = K > B ? K : B, lat = 4 * h * w;
    const int64_t ctx = CONTEXT_TOKENS * (int64_t)stem_unet_get_config(u)->cross_attention_dim[0];
    plan->frames_edited = Fe;
    plan->chunks = plan->keyframes = K;
    plan->latent_bytes = (size_t)(2 * Fe * lat + 2 * 3 * most * lat + 3 * most * ctx + B * lat) * d;
    plan->cache_bytes = stem_tokenflow_cache_bytes(u, K, h, w);
    plan->normal_bytes = stem_unet_activation_bytes(u, 3 * (Fe < B ? Fe : B), h, w, CONTEXT_TOKENS);
    const size_t all_at_once = stem_unet_activation_bytes(u, 3 * K, h, w, CONTEXT_TOKENS);
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
        /* layer-major pivotal pass over slices of s keyframes per branch: the largest s that
         * fits (caches on the device when they still fit beside it) */
        int64_t max_c, kv = 2 * 3 * K * stem_sa_site_elements(u, h, w, &max_c);
        int64_t bases = o->attention == STEM_EDIT_ATTN_STEM ? 2 * 3 * o->em.bases * max_c : 0;
        const size_t store = (size_t)(kv + bases) * d;
        plan->pivotal_sliced = true;
        size_t pivotal_1 = store + stem_unet_activation_bytes_sliced(u, 3 * K, 3, 1, h, w, CONTEXT_TOKENS, true);
        plan->cache_on_host = fixed + plan->cache_bytes + pivotal_1 > mem_bytes;
        const size_t room = mem_bytes - (plan->cache_on_host ? 0 : plan->cache_bytes) - fixed;
        int64_t lo = 1, hi = K - 1 > 1 ? K - 1 : 1; /* binary search: the sliced arena grows with s */
        while (lo < hi) {
            int64_t mid = (lo + hi + 1) / 2;
            if (store + stem_unet_activation_bytes_sliced(u, 3 * K, 3, mid, h, w, CONTEXT_TOKENS, true) <= room)
                lo = mid;
            else
                hi = mid - 1;
        }
        plan->unet_frames = lo;
        plan->pivotal_bytes = store + stem_unet_activation_bytes_sliced(u, 3 * K, 3, lo, h, w, CONTEXT_TOKENS, true);
        plan->fits = fixed + (plan->cache_on_host ? 0 : plan->cache_bytes) + plan->pivotal_bytes <= mem_bytes;
    }
    if (fixed + plan->normal_bytes + (plan->cache_on_host ? 0 : plan->cache_bytes) > mem_bytes) plan->fits = false;
    const size_t pass = plan->pivotal_bytes > plan->normal_bytes ? plan->pivotal_bytes : plan->normal_bytes;
    plan->device_bytes = fixed + pass + (plan->cache_on_host ? 0 : plan->cache_bytes);
    plan->host_bytes = plan->cache_on_host ? plan->cache_bytes : 0;
}

void stem_edit_apply_plan(const stem_edit_memory_plan *plan, stem_edit_options *o) {
    o->unet_frames = plan->pivotal_sliced ? plan->unet_frames : 0;
    o->cache_on_host = plan->cache_on_host;
}
