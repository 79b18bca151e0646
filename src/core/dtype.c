#include "core/dtype.h"

#include <string.h>
#include <strings.h>

static const struct { const char *name; size_t size; } dtype_info[STEM_DTYPE_COUNT] = {
    [STEM_F32] = {"F32", 4}, [STEM_F16] = {"F16", 2}, [STEM_BF16] = {"BF16", 2},
    [STEM_I32] = {"I32", 4}, [STEM_I64] = {"I64", 8}, [STEM_U8] = {"U8", 1},
};

size_t stem_dtype_size(stem_dtype dt) {
    return (unsigned)dt < STEM_DTYPE_COUNT ? dtype_info[dt].size : 0;
}

const char *stem_dtype_name(stem_dtype dt) {
    return (unsigned)dt < STEM_DTYPE_COUNT ? dtype_info[dt].name : "?";
}

int stem_dtype_parse(const char *name) {
    for (int i = 0; i < STEM_DTYPE_COUNT; i++)
        if (strcasecmp(name, dtype_info[i].name) == 0) return i;
    return -1;
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float stem_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t stem_f32_to_f16(float f) {
    uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000;
    uint32_t absu = u & 0x7fffffffu;
    if (absu >= 0x7f800000u) /* inf or nan (keep nan quiet) */
        return (uint16_t)(sign | 0x7c00 | (absu > 0x7f800000u ? 0x200 : 0));
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (absu < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        float a = bits_f32(absu) * 16777216.0f; /* in units of 2^-24; float rounding is RNE */
        return (uint16_t)(sign | (uint32_t)__builtin_rintf(a));
    }
    /* normal: rebias exponent, round mantissa to 10 bits, nearest even */
    uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u);
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

float stem_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t stem_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet nan */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

void stem_convert(void *dst, stem_dtype dst_dt, const void *src, stem_dtype src_dt, size_t n) {
    if (dst_dt == src_dt) { memcpy(dst, src, n * stem_dtype_size(src_dt)); return; }
    float *df = dst_dt == STEM_F32 ? dst : NULL;
    const float *sf = src_dt == STEM_F32 ? src : NULL;
    const uint16_t *s16 = src;
    uint16_t *d16 = dst;
    for (size_t i = 0; i < n; i++) {
        float v = sf ? sf[i] : src_dt == STEM_F16 ? stem_f16_to_f32(s16[i]) : stem_bf16_to_f32(s16[i]);
        if (df) df[i] = v;
        else d16[i] = dst_dt == STEM_F16 ? stem_f32_to_f16(v) : stem_f32_to_bf16(v);
    }
}
