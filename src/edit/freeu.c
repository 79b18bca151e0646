/* FreeU's hook: the backbone scale and the skip's Fourier filter (see freeu.h). */
#include "edit/freeu.h"

#include "core/ops.h"

/* tap->x [rows, C, H, W] (hidden state), tap->skip [rows, C_s, H, W] */
static stem_status freeu_tap(void *user, const stem_unet_tap *tap) {
    stem_freeu_hooks *h = user;
    const int64_t C = tap->x->shape[1];
    float b, s;
    if (C == h->gate1) {
        b = h->b1;
        s = h->s1;
    } else if (C == h->gate2) {
        b = h->b2;
        s = h->s2;
    } else {
        return STEM_OK;
    }
    const int64_t plane = tap->x->shape[2] * tap->x->shape[3], rows = tap->x->shape[0];
    for (int64_t r = 0; r < rows; r++) { /* h[r, :C/2] *= b: the first C/2 planes of each row */
        stem_tensor row, flat, half;
        int64_t n = C * plane;
        STEM_TRY(stem_tensor_narrow0(tap->x, r, 1, &row));
        STEM_TRY(stem_tensor_reshape(&row, 1, &n, &flat));
        STEM_TRY(stem_tensor_narrow0(&flat, 0, C / 2 * plane, &half));
        STEM_TRY(stem_affine(&half, b, 0.0f, &half));
    }
    stem_tensor filtered;
    STEM_TRY(stem_arena_tensor(tap->arena, tap->skip->dtype, tap->skip->ndim, tap->skip->shape, &filtered));
    STEM_TRY(stem_freeu_filter(tap->skip, s, &filtered));
    STEM_TRY(stem_tensor_copy(&filtered, tap->skip));
    h->fired++;
    return STEM_OK;
}

stem_unet_hook_set stem_freeu_hook_set(stem_freeu_hooks *h) {
    return (stem_unet_hook_set){.user = h, .tap = freeu_tap, .tap_mask = STEM_TAP_BIT(STEM_TAP_UP_CONCAT)};
}
