/* Errors are values: every fallible function returns a stem_status and, on failure,
 * leaves a message naming the culprit (file, tensor, flag, shape) in a thread-local
 * buffer that stem_last_error() returns. Callers may prepend context with
 * stem_error_context() as the error travels up ("loading unet: tensor x: ..."). */
#ifndef STEM_CORE_ERROR_H
#define STEM_CORE_ERROR_H

typedef enum stem_status {
    STEM_OK = 0,
    STEM_E_ARG,         /* bad argument or flag */
    STEM_E_SHAPE,       /* tensor shapes do not fit the op */
    STEM_E_DTYPE,       /* unsupported or mismatched dtype */
    STEM_E_IO,          /* a file could not be opened, read or written */
    STEM_E_FORMAT,      /* a file is corrupt or not what it claims to be */
    STEM_E_NOMEM,       /* an allocation failed */
    STEM_E_BACKEND,     /* the backend (driver, cuBLAS) reported a failure */
    STEM_E_UNSUPPORTED, /* valid request this build or backend cannot do */
    STEM_E_NOTFOUND,    /* a named thing (tensor, op, file) does not exist */
    STEM_E_NODEVICE,    /* no GPU present, or stem built without CUDA */
} stem_status;

#if defined(__GNUC__)
#define STEM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define STEM_PRINTF(a, b)
#endif

/* Records a formatted message and returns `code`, so callers can `return stem_fail(...)`. */
stem_status stem_fail(stem_status code, const char *fmt, ...) STEM_PRINTF(2, 3);

/* Prepends "context: " to the current message; returns `code` unchanged. */
stem_status stem_error_context(stem_status code, const char *fmt, ...) STEM_PRINTF(2, 3);

const char *stem_last_error(void);
const char *stem_status_name(stem_status code);
void stem_clear_error(void);

/* Receives non-fatal remarks ("skipped 2 non-image files in DIR: a.txt, b.json"). */
typedef void (*stem_note_fn)(void *user, const char *message);

/* Formats a remark and hands it to fn, or, when fn is NULL, prints it to stderr as
 * "stem: KIND: message" (kind: "note", "warning"). */
void stem_remark(stem_note_fn fn, void *user, const char *kind, const char *fmt, ...) STEM_PRINTF(4, 5);

#define STEM_TRY(expr)                                   \
    do {                                                 \
        stem_status stem_try_status_ = (expr);           \
        if (stem_try_status_ != STEM_OK) return stem_try_status_; \
    } while (0)

#endif
