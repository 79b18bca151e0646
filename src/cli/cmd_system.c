/* `stem system`: what runs here, so that numbers and bug reports say which kernels produced them. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "backends/backends.h"
#include "core/cpu_info.h"
#include "io/video_write.h"

int cmd_system(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: stem system\n\nPrints the CPU kernel level (STEM_ISA can lower it), threads\n"
               "(OMP_NUM_THREADS), the OpenBLAS core in use (OPENBLAS_CORETYPE overrides the one stem\n"
               "picks) and the CUDA device, if any.\n");
        return 0;
    }
    stem_backend *cpu = stem_cpu_backend();
    printf("stem %s\n", STEM_VERSION);
    const stem_cpu_features *f = stem_cpu_features_get();
    printf("cpu: %s (%s, family %d model %d)\n", f->model, f->vendor, f->family, f->model_number);
    printf("%s\n", cpu->ops->describe(cpu));
    printf("video: %s\n", stem_video_write_available() ? "read and write (FFmpeg)" : "no (built without FFmpeg)");
    stem_backend *cuda = NULL;
    if (stem_backend_open("cuda", &cuda) == STEM_OK) {
        printf("%s\n", cuda->ops->describe(cuda));
        stem_backend_close(cuda);
    } else {
        printf("cuda: unavailable: %s\n", stem_last_error());
    }
    return 0;
}
