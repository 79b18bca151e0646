/* `stem edit`'s latents: x_T from the inversion, the per-step files of the edit and the
 * resume point, and the decode of the result; all in chunks of frames, so that device
 * memory does not grow with the frame count (the whole-video tensors are the latents
 * [Fe, 4, h, w] on the device and the decoded frames on the host). */
#ifndef STEM_CLI_EDIT_LATENTS_H
#define STEM_CLI_EDIT_LATENTS_H

#include "cli/edit_inversion.h"
#include "pipeline/edit.h"
#include "pipeline/latent_store.h"

/* The edit's store (pipeline/latent_store.h): "DIR/latents/edit_SSS_tTTTT.safetensors"
 * after each editing step (t descending). */
stem_status edit_latents_store(const char *dir, const stem_ddim *ddim, stem_latent_store *store);

/* x [Fe, 4, h, w] = x_T (stem_edit_initial_latents) for the first Fe frames: z0 from the
 * VAE encoding of the inversion's frames/input, `chunk` frames at a time, and the
 * inversion's last latents through `src`. */
stem_status edit_latents_initial(stem_pipeline *p, const edit_inversion *inv, edit_source *src, int64_t chunk,
                                 stem_tensor *x, double *encode_seconds);

/* The last editing step saved, -1 if none (then x is untouched); its latents go into x.
 * Every saved step file is checked (checksum, metadata, shape), and none may be missing
 * before the last. */
stem_status edit_latents_resume_point(const stem_latent_store *store, stem_tensor *x, int *last);

/* Host f32 pixels [Fe, 3, out_h, out_w] of x [Fe, 4, h, w], decoded `chunk` frames at a time. */
stem_status edit_latents_decode(stem_pipeline *p, const stem_tensor *x, int64_t chunk, int64_t out_h, int64_t out_w,
                                stem_tensor *host);

#endif
