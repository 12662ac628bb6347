/* row_json.c: JSON text of yajl values and the row id text (row_json.h).
 * Recursion depth is that of the tree, which cdc_event_decode bounds
 * (CDC_JSON_MAX_DEPTH). */
#include "row_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int row_json_put_string(cdc_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case every byte becomes \u00XX: reserve once. */
    if (len > ((size_t)-1 - 2) / 6 || cdc_buf_reserve(out, len * 6 + 2) < 0)
        return -1;
    char *w = out->data + out->len;
    *w++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *w++ = '\\';
            *w++ = (char)c;
        } else if (c < 0x20) {
            *w++ = '\\';
            switch (c) {
            case '\n': *w++ = 'n'; break;
            case '\r': *w++ = 'r'; break;
            case '\t': *w++ = 't'; break;
            case '\b': *w++ = 'b'; break;
            case '\f': *w++ = 'f'; break;
            default:
                *w++ = 'u';
                *w++ = '0';
                *w++ = '0';
                *w++ = hex[c >> 4];
                *w++ = hex[c & 15];
            }
        } else {
            *w++ = (char)c;
        }
    }
    *w++ = '"';
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
    return 0;
}

int row_json_put_value(cdc_buf *out, yajl_val v)
{
    if (!v || YAJL_IS_NULL(v))
        return cdc_buf_puts(out, "null");
    if (YAJL_IS_TRUE(v))
        return cdc_buf_puts(out, "true");
    if (YAJL_IS_FALSE(v))
        return cdc_buf_puts(out, "false");
    if (YAJL_IS_STRING(v))
        return row_json_put_string(out, v->u.string, strlen(v->u.string));
    if (YAJL_IS_NUMBER(v))
        return cdc_buf_puts(out, v->u.number.r);
    if (YAJL_IS_ARRAY(v)) {
        if (cdc_buf_putc(out, '[') < 0)
            return -1;
        for (size_t i = 0; i < v->u.array.len; i++) {
            if ((i && cdc_buf_putc(out, ',') < 0) || row_json_put_value(out, v->u.array.values[i]) < 0)
                return -1;
        }
        return cdc_buf_putc(out, ']');
    }
    if (YAJL_IS_OBJECT(v)) {
        if (cdc_buf_putc(out, '{') < 0)
            return -1;
        for (size_t i = 0; i < v->u.object.len; i++) {
            const char *k = v->u.object.keys[i];
            if ((i && cdc_buf_putc(out, ',') < 0) ||
                row_json_put_string(out, k, strlen(k)) < 0 || cdc_buf_putc(out, ':') < 0 ||
                row_json_put_value(out, v->u.object.values[i]) < 0)
                return -1;
        }
        return cdc_buf_putc(out, '}');
    }
    return -1;
}

yajl_val row_json_member(yajl_val obj, const char *name)
{
    if (!obj || !YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], name) == 0)
            return obj->u.object.values[i];
    return NULL;
}

int row_id_text(yajl_val key, cdc_buf *out, char *err, size_t errlen)
{
    if (!key || !YAJL_IS_OBJECT(key)) {
        snprintf(err, errlen, "cannot make a row id: the key is not a JSON object");
        return -1;
    }
    size_t n = key->u.object.len;
    if (n == 0) {
        snprintf(err, errlen, "cannot make a row id: the key has no column");
        return -1;
    }
    size_t mark = out->len;
    if (n == 1) {
        yajl_val v = key->u.object.values[0];
        if (v && YAJL_IS_STRING(v)) {
            if (cdc_buf_puts(out, v->u.string) < 0)
                goto nomem;
        } else if (row_json_put_value(out, v) < 0) {
            goto nomem;
        }
        return 0;
    }
    if (cdc_buf_putc(out, '[') < 0)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        if ((i && cdc_buf_putc(out, ',') < 0) || row_json_put_value(out, key->u.object.values[i]) < 0)
            goto nomem;
    if (cdc_buf_putc(out, ']') < 0)
        goto nomem;
    return 0;
nomem:
    cdc_buf_truncate(out, mark);
    snprintf(err, errlen, "cannot make a row id: out of memory");
    return -1;
}

int row_json_parse(const char *what, const char *body, size_t len, size_t max_depth,
                   yajl_val *out, char *err, size_t errlen)
{
    *out = NULL;
    const char *nul = len ? memchr(body, '\0', len) : NULL;
    if (nul) {
        /* yajl would stop there and ignore the rest */
        snprintf(err, errlen, "%s is not JSON: NUL byte at offset %zu", what, (size_t)(nul - body));
        return -1;
    }
    size_t depth = 0;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = body[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) {
                snprintf(err, errlen, "%s is not acceptable: nesting deeper than %zu at offset %zu",
                         what, max_depth, i);
                return -1;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    /* yajl_tree_parse wants a NUL-terminated text. */
    char *text = malloc(len + 1);
    if (!text) {
        snprintf(err, errlen, "cannot parse %s: out of memory (%zu bytes)", what, len);
        return -1;
    }
    if (len)
        memcpy(text, body, len);
    text[len] = '\0';
    char yerr[256];
    yerr[0] = '\0';
    *out = yajl_tree_parse(text, yerr, sizeof yerr);
    free(text);
    if (!*out) {
        /* yajl's message spans lines; keep the first. */
        yerr[strcspn(yerr, "\n")] = '\0';
        snprintf(err, errlen, "%s is not JSON: %s", what, yerr[0] ? yerr : "parse error");
        return -1;
    }
    return 0;
}
