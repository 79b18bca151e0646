/* Element types and the scalar conversions between them. CPU compute is f32;
 * f16/bf16 exist for weights on disk and for the CUDA f16 path. */
#ifndef STEM_CORE_DTYPE_H
#define STEM_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum stem_dtype {
    STEM_F32 = 0,
    STEM_F16,
    STEM_BF16,
    STEM_I32,
    STEM_I64,
    STEM_U8,
    STEM_DTYPE_COUNT
} stem_dtype;

size_t stem_dtype_size(stem_dtype dt);
/* Safetensors spelling: "F32", "F16", "BF16", "I32", "I64", "U8". */
const char *stem_dtype_name(stem_dtype dt);
/* Accepts the safetensors names and lower-case "f32"/"f16"/"bf16"; -1 if unknown. */
int stem_dtype_parse(const char *name);

float stem_f16_to_f32(uint16_t h);
uint16_t stem_f32_to_f16(float f); /* round to nearest even, like torch .half() */
float stem_bf16_to_f32(uint16_t b);
uint16_t stem_f32_to_bf16(float f); /* round to nearest even, like torch .bfloat16() */

/* Converts n elements between any two of f32/f16/bf16 (same type: memcpy). */
void stem_convert(void *dst, stem_dtype dst_dt, const void *src, stem_dtype src_dt, size_t n);

#endif
