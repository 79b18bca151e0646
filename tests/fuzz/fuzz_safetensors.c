/* libFuzzer: the safetensors reader (weights, latents, goldens), as stored and as f32. */
#include "core/tensor_map.h"
#include "fuzz_util.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[600];
    fuzz_write(path, sizeof path, "x.safetensors", data, n);
    stem_tensor_map m;
    if (stem_safetensors_load(path, -1, &m) == STEM_OK) stem_tensor_map_free(&m);
    if (stem_safetensors_load(path, STEM_F32, &m) == STEM_OK) stem_tensor_map_free(&m);
    if (stem_safetensors_inspect(path, &m) == STEM_OK) stem_tensor_map_free(&m);
    return 0;
}
