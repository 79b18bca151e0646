/* The latents saved after every inversion / reconstruction step, checked when read back.
 *
 * One safetensors file per step: tensor "latents" [F, 4, h, w] in the run's dtype, and
 * metadata "phase" (inversion | reconstruction | editing), "step", "timestep" and
 * "checksum_fnv1a64": 16 hex digits of FNV-1a 64 over the tensor's bytes as stored.
 * FNV-1a changes its state bijectively with every byte, so any single changed byte
 * (a flipped bit) changes the checksum; --resume refuses a file whose data, checksum or
 * step metadata do not match instead of carrying it into the finished folder. */
#ifndef STEM_PIPELINE_LATENT_FILE_H
#define STEM_PIPELINE_LATENT_FILE_H

#include <stdint.h>

#include "core/tensor.h"
#include "pipeline/sampler.h" /* stem_phase_name: the "phase" metadata */

/* FNV-1a 64 of n bytes, as 16 hex digits (+ NUL) into hex[17]. */
void stem_fnv1a64_hex(const void *data, size_t n, char hex[17]);

/* Writes x (any backend; copied to the host) atomically with the metadata above. */
stem_status stem_latent_file_save(const char *path, const stem_tensor *x, stem_phase phase, int step, int t);

/* Reads `path`, checks its checksum and that its metadata say (phase, step, t), and copies
 * the latents into `x` (its shape; converted to x's dtype and backend), or only checks
 * when x is NULL. STEM_E_FORMAT naming the file and what does not match. */
stem_status stem_latent_file_load(const char *path, stem_phase phase, int step, int t, stem_tensor *x);

/* The same for frames [f0, f0 + x->shape[0]) of the saved [F, 4, h, w] (the whole file is
 * checked): x must match the saved shape but in its first dimension. */
stem_status stem_latent_file_load_frames(const char *path, stem_phase phase, int step, int t, int64_t f0,
                                         stem_tensor *x);

#endif
