/* Built against an installed stem (`pkg-config --cflags --libs stem`) by
 * scripts/check-install.sh: includes the public header, runs one op through the op
 * registry's front end on the CPU backend and checks its result. */
#include <math.h>
#include <stdio.h>

#include <stem.h>

int main(void) {
    const int64_t shape[2] = {2, 3};
    stem_tensor a, b, y;
    if (stem_tensor_new(stem_cpu_backend(), STEM_F32, 2, shape, &a) != STEM_OK ||
        stem_tensor_new(stem_cpu_backend(), STEM_F32, 2, shape, &b) != STEM_OK ||
        stem_tensor_new(stem_cpu_backend(), STEM_F32, 2, shape, &y) != STEM_OK) {
        fprintf(stderr, "use_stem: %s\n", stem_last_error());
        return 1;
    }
    float *pa = a.data, *pb = b.data, *py = y.data;
    for (int i = 0; i < 6; i++) {
        pa[i] = (float)i;
        pb[i] = 0.5f * (float)i;
    }
    if (stem_binary(STEM_BINARY_ADD, &a, &b, &y) != STEM_OK) {
        fprintf(stderr, "use_stem: add: %s\n", stem_last_error());
        return 1;
    }
    for (int i = 0; i < 6; i++)
        if (fabsf(py[i] - 1.5f * (float)i) > 0.0f) {
            fprintf(stderr, "use_stem: y[%d] = %g, want %g\n", i, py[i], 1.5 * i);
            return 1;
        }
    printf("use_stem: stem %s, add of two [2, 3] tensors on the cpu backend: ok\n", STEM_VERSION);
    stem_tensor_free(&a);
    stem_tensor_free(&b);
    stem_tensor_free(&y);
    return 0;
}
