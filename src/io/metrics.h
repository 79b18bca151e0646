/* Reconstruction quality: per-frame PSNR and SSIM, and a temporal-consistency number.
 *
 * All metrics work on images in [0, 1] (data range 1.0), planar [C, H, W] float, and
 * compute in double. stem's pixel tensors are in [-1, 1]: stem_video_metrics maps
 * both clips with v = clamp(x / 2 + 0.5, 0, 1) first (the float output before 8-bit
 * quantisation).
 *
 * PSNR = 10 log10(1 / MSE), MSE over all C*H*W values (skimage.metrics.
 *   peak_signal_noise_ratio with data_range=1). Identical images: +infinity.
 * SSIM = skimage.metrics.structural_similarity(a, b, channel_axis=<C>, data_range=1.0,
 *   gaussian_weights=True, sigma=1.5, use_sample_covariance=False) — Wang et al. 2004:
 *   per channel, local statistics under an 11-tap Gaussian (sigma 1.5, scipy's
 *   'reflect' borders), K1 = 0.01, K2 = 0.03, the SSIM map averaged over the interior
 *   (5 pixels cropped at each border); the mean over channels. Needs H, W >= 11.
 *   Matches scikit-image 0.26.0 to ~1e-12 (refdata/golden/io/metrics.safetensors).
 * Temporal = mean over t = 1..F-1 and all values of |(out_t - out_{t-1}) - (in_t - in_{t-1})|:
 *   how much the output's frame-to-frame change differs from the input's (0 = the
 *   output flickers exactly as much as the input; lower is better). 0 when F < 2. */
#ifndef STEM_IO_METRICS_H
#define STEM_IO_METRICS_H

#include "core/tensor.h"

/* PSNR in dB of two [c, h, w] images in [0, 1]. */
double stem_psnr(const float *a, const float *b, int c, int h, int w);

/* SSIM of two [c, h, w] images in [0, 1]. STEM_E_ARG when h or w < 11. */
stem_status stem_ssim(const float *a, const float *b, int c, int h, int w, double *out);

/* Temporal consistency of `out` against `in`, both [f, c, h, w] in [0, 1]. */
double stem_temporal_mad(const float *in, const float *out, int f, int c, int h, int w);

typedef struct stem_video_metrics {
    int frames;
    double *psnr;     /* [frames], dB */
    double *ssim;     /* [frames] */
    double mean_psnr; /* mean of the per-frame values (inf if any frame is identical) */
    double mean_ssim;
    double temporal;  /* stem_temporal_mad */
} stem_video_metrics;

/* Compares `test` (e.g. the reconstruction) with `ref` (the input): host f32 pixels
 * [F, 3, H, W] in [-1, 1], equal shapes. Errors name the mismatching shapes. */
stem_status stem_video_metrics_compute(const stem_tensor *ref, const stem_tensor *test, stem_video_metrics *out);
void stem_video_metrics_free(stem_video_metrics *m);

#endif
