/* STEM self-attention as a UNet hook set (doc/algorithm.md §5, §6): every attn1 of the
 * UNet computes what stem_self_attention() does for the chosen mode and scope, and its
 * EM's Philox counter carries (layer, phase, step, chunk) the same way whichever way the
 * frames go through the UNet:
 *
 *   frame-major  one evaluation holds whole scopes (all frames, or whole chunks): the
 *                core hook runs stem_self_attention on q, k, v of those frames;
 *   layer-major  scope video over a sliced forward (stem_unet_forward_sliced): the collect
 *                hook keeps every slice's k, v in a store of all F frames; after the last
 *                slice it computes the EM bases of all of them (stem) or keeps their
 *                tokens (inflated); then every slice's queries attend to that scope.
 *
 * Memory: nothing is allocated on the device inside a forward. The layer-major store
 * and the non-finite check buffer come from the arena given at creation (taken once,
 * before the first evaluation); the EM's temporaries come from each site's arena. The
 * EM's non-finite checks are deferred into the check buffer and read back once, at the
 * end of the forward (forward_end): one device-to-host copy per evaluation, the error
 * naming the site, step, tensor, head and channel.
 *
 * One branch only: the hooks refuse a batch of several branches (each would need its
 * own EM problem). */
#ifndef STEM_STEM_SA_H
#define STEM_STEM_SA_H

#include "models/unet.h"
#include "stem/em.h"
#include "stem/stem_attention.h"

typedef struct stem_sa_hooks stem_sa_hooks;

/* Whether every attn1 needs the keys/values of all frames at once (stem or inflated
 * with scope video). */
bool stem_sa_spans_video(const stem_sa_options *sa);

/* The hooks of one phase (inversion, reconstruction) of a run of `frames` frames of
 * h x w latents through `u`. layer_major: the forwards will be sliced over frames (needs
 * stem_sa_spans_video). The store and check buffer come from `arena` (released by the
 * caller's reset after the last evaluation); *out is freed with stem_sa_hooks_free. */
stem_status stem_sa_hooks_create(const stem_sa_options *sa, stem_phase phase, stem_unet *u, stem_arena *arena,
                                 int64_t frames, int64_t h, int64_t w, bool layer_major, stem_sa_hooks **out);
void stem_sa_hooks_free(stem_sa_hooks *hooks);

/* Before each UNet evaluation: its step index and the chunk index of its first frame
 * (0 with scope video); the EM counter words of doc/algorithm.md §6. */
void stem_sa_hooks_set_step(stem_sa_hooks *hooks, int step, uint32_t chunk);

/* The hook set to put in a forward's list. */
stem_unet_hook_set stem_sa_hook_set(stem_sa_hooks *hooks);

/* The largest attn1 token stream N * C on an h x w latent (an upper bound over levels)
 * and the largest C: per frame, what the layer-major store keeps of one site. */
int64_t stem_sa_site_elements(const stem_unet *u, int64_t h, int64_t w, int64_t *max_channels);

#endif
