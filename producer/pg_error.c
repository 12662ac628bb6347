/* pg_error.c: libpq error messages for logs and error buffers. */
#include "pg_error.h"

#include <stdio.h>
#include <string.h>

#include "cdc_buf.h"
#include "cdc_mask.h"

void pg_error_format(PGconn *pg, const char *what, char *err, size_t errlen)
{
    cdc_buf masked = CDC_BUF_INIT;
    const char *msg = pg ? PQerrorMessage(pg) : "out of memory";
    if (cdc_mask_secrets(msg, &masked) == 0 && masked.data)
        msg = masked.data;
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    snprintf(err, errlen, "%s: %.*s", what, (int)n, msg);
    cdc_buf_free(&masked);
}
