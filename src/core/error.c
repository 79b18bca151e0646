#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define STEM_ERROR_LEN 1024
static _Thread_local char last_error[STEM_ERROR_LEN];

stem_status stem_fail(stem_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

stem_status stem_error_context(stem_status code, const char *fmt, ...) {
    char joined[STEM_ERROR_LEN];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(joined, sizeof joined, fmt, ap);
    va_end(ap);
    if (n < 0) return code;
    size_t used = (size_t)n < sizeof joined - 1 ? (size_t)n : sizeof joined - 1;
    size_t room = sizeof joined - used;
    if (room > 2) {
        memcpy(joined + used, ": ", 2);
        used += 2;
        room -= 2;
        size_t keep = strlen(last_error);
        if (keep > room - 1) keep = room - 1;
        memcpy(joined + used, last_error, keep);
        used += keep;
    }
    joined[used] = '\0';
    memcpy(last_error, joined, sizeof last_error);
    return code;
}

const char *stem_last_error(void) { return last_error[0] ? last_error : "no error"; }

void stem_clear_error(void) { last_error[0] = '\0'; }

void stem_remark(stem_note_fn fn, void *user, const char *kind, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (fn)
        fn(user, msg);
    else
        fprintf(stderr, "stem: %s: %s\n", kind, msg);
}

const char *stem_status_name(stem_status code) {
    switch (code) {
    case STEM_OK: return "ok";
    case STEM_E_ARG: return "bad argument";
    case STEM_E_SHAPE: return "shape mismatch";
    case STEM_E_DTYPE: return "dtype error";
    case STEM_E_IO: return "i/o error";
    case STEM_E_FORMAT: return "corrupt or invalid file";
    case STEM_E_NOMEM: return "out of memory";
    case STEM_E_BACKEND: return "backend failure";
    case STEM_E_UNSUPPORTED: return "unsupported";
    case STEM_E_NOTFOUND: return "not found";
    case STEM_E_NODEVICE: return "no device";
    }
    return "unknown error";
}
