/* cdc_lsn.c: LSN text form "X/Y" as PostgreSQL prints it (pg_lsn): two
 * hexadecimal halves of at most 8 digits each, upper half first. */
#include "cdc_lsn.h"

#include <stdio.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads 1..8 hex digits; strtoul would accept signs, spaces and "0x". */
static const char *parse_half(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    int n = 0;
    for (int d; (d = hexval(*p)) >= 0; p++) {
        if (++n > 8)
            return NULL;
        v = (v << 4) | (uint32_t)d;
    }
    if (n == 0)
        return NULL;
    *out = v;
    return p;
}

int cdc_lsn_parse(const char *text, uint64_t *lsn)
{
    uint32_t hi, lo;
    const char *p = text ? parse_half(text, &hi) : NULL;
    if (!p || *p != '/')
        return -1;
    p = parse_half(p + 1, &lo);
    if (!p || *p != '\0')
        return -1;
    *lsn = ((uint64_t)hi << 32) | lo;
    return 0;
}

char *cdc_lsn_format(uint64_t lsn, char buf[CDC_LSN_BUFSZ])
{
    snprintf(buf, CDC_LSN_BUFSZ, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xFFFFFFFFu));
    return buf;
}
