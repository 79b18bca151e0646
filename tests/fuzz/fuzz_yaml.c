/* libFuzzer: the original STEM/TokenFlow YAML configs (stem invert --config). */
#include "fuzz_util.h"
#include "io/yaml_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[600];
    fuzz_write(path, sizeof path, "config.yaml", data, n);
    stem_yaml_config c;
    if (stem_yaml_config_load(path, fuzz_no_note, NULL, &c) == STEM_OK) stem_yaml_config_free(&c);
    return 0;
}
