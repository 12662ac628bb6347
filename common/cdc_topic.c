/* cdc_topic.c: the table-to-topic name mapping (see cdc_topic.h). No I/O. */
#include "cdc_topic.h"

#include <stdint.h>
#include <string.h>

#include "cdc_json.h"

#define TOPIC_MAX 249

static bool topic_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

static int topic_append_part(cdc_buf *out, const char *part, bool *changed)
{
    const unsigned char *s = (const unsigned char *)part;
    size_t n = strlen(part), i = 0, used;
    while (i < n) {
        if (topic_char_ok(s[i])) {
            if (cdc_buf_putc(out, (char)s[i]) < 0)
                return -1;
            i++;
            continue;
        }
        *changed = true;
        if (cdc_buf_putc(out, '_') < 0)
            return -1;
        i += cdc_utf8_scan(s + i, n - i, &used) ? used : 1;
    }
    return 0;
}

static uint32_t fnv1a(uint32_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

int cdc_topic_name(const char *prefix, const char *schema, const char *table,
                   cdc_buf *out, bool *changed)
{
    bool alt = false;
    size_t start = out->len;
    if (changed)
        *changed = false;
    if (!schema || !table)
        return -1;
    if (prefix && !*prefix)
        prefix = NULL;

    if ((prefix && (topic_append_part(out, prefix, &alt) < 0 ||
                    cdc_buf_putc(out, '.') < 0)) ||
        topic_append_part(out, schema, &alt) < 0 || cdc_buf_putc(out, '.') < 0 ||
        topic_append_part(out, table, &alt) < 0)
        goto fail;

    size_t n = out->len - start;
    if (n > TOPIC_MAX) {
        uint32_t h = 2166136261u;
        if (prefix)
            h = fnv1a(fnv1a(h, prefix), ".");
        h = fnv1a(fnv1a(fnv1a(h, schema), "."), table);
        out->len = start + TOPIC_MAX - 9;
        if (cdc_buf_printf(out, "-%08x", (unsigned)h) < 0)
            goto fail;
        alt = true;
    } else if ((n == 1 && out->data[start] == '.') ||
               (n == 2 && memcmp(out->data + start, "..", 2) == 0)) {
        memset(out->data + start, '_', n);
        alt = true;
    }
    if (changed)
        *changed = alt;
    return 0;

fail:
    cdc_buf_truncate(out, start);
    return -1;
}
