/* cdc_buf.c: growable byte buffer (see cdc_buf.h). Growth is geometric so
 * appending N bytes one at a time stays O(N). */
#include "cdc_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cdc_buf_reserve(cdc_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    if (need < b->len) /* overflow */
        return -1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > (size_t)-1 / 2)
            return -1;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int cdc_buf_append(cdc_buf *b, const void *data, size_t len)
{
    if (cdc_buf_reserve(b, len) < 0)
        return -1;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int cdc_buf_puts(cdc_buf *b, const char *s)
{
    return cdc_buf_append(b, s, strlen(s));
}

int cdc_buf_putc(cdc_buf *b, char c)
{
    return cdc_buf_append(b, &c, 1);
}

int cdc_buf_vprintf(cdc_buf *b, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0 || cdc_buf_reserve(b, (size_t)n) < 0)
        return -1;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int cdc_buf_printf(cdc_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = cdc_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void cdc_buf_reset(cdc_buf *b)
{
    cdc_buf_truncate(b, 0);
}

void cdc_buf_truncate(cdc_buf *b, size_t len)
{
    b->len = len;
    if (b->data)
        b->data[len] = '\0';
}

void cdc_buf_free(cdc_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *cdc_buf_steal(cdc_buf *b)
{
    char *p = b->data;
    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
