/* cdc_buf.h: a growable byte buffer, the one way pgcdc builds strings and
 * payloads. Always NUL-terminated so text can be handed to C APIs as is. */
#ifndef PGCDC_CDC_BUF_H
#define PGCDC_CDC_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct cdc_buf {
    char *data;   /* NUL-terminated; NULL until the first append */
    size_t len;   /* bytes used, without the terminating NUL */
    size_t cap;   /* bytes allocated */
} cdc_buf;

#define CDC_BUF_INIT {NULL, 0, 0}

/* Each returns 0, or -1 when memory runs out (the buffer is left as it was). */
int cdc_buf_reserve(cdc_buf *b, size_t extra);
int cdc_buf_append(cdc_buf *b, const void *data, size_t len);
int cdc_buf_puts(cdc_buf *b, const char *s);
int cdc_buf_putc(cdc_buf *b, char c);
int cdc_buf_printf(cdc_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int cdc_buf_vprintf(cdc_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Empties the buffer but keeps its memory for reuse. */
void cdc_buf_reset(cdc_buf *b);
/* Cuts the buffer back to its first len bytes (len <= b->len): how a
 * writer undoes what it appended before one of its appends failed. */
void cdc_buf_truncate(cdc_buf *b, size_t len);
/* Frees the memory; the buffer may be used again afterwards. */
void cdc_buf_free(cdc_buf *b);
/* Hands the contents to the caller (to free()) and empties the buffer. */
char *cdc_buf_steal(cdc_buf *b);

#endif
