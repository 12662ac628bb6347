/* cdc_json.c: JSON text and UTF-8 (see cdc_json.h): UTF-8 scanning and
 * repair, and the strict allocation-free JSON validator. No I/O. */
#include "cdc_json.h"

#include <stdio.h>
#include <string.h>

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Looks at the sequence starting at s (n > 0 bytes available). Returns 1 and
 * its length in *used when it is one valid UTF-8 character (Unicode table 3-7:
 * no overlong forms, no surrogates, nothing above U+10FFFF); otherwise 0 and
 * in *used the length of the maximal subpart to replace by one U+FFFD (the
 * practice Unicode recommends and Python's "replace" follows). */
int cdc_utf8_scan(const unsigned char *s, size_t n, size_t *used)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    if (c < 0x80) {
        *used = 1;
        return 1;
    }
    if (c < 0xC2 || c > 0xF4) {
        *used = 1;
        return 0;
    }
    if (c < 0xE0) {
        need = 1;
    } else if (c < 0xF0) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    }
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *used = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    *used = i;
    return 1;
}

bool cdc_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0, used;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        if (!cdc_utf8_scan(s + i, n - i, &used))
            return false;
        i += used;
    }
    return true;
}

/* Copies s to out with every maximal invalid subpart replaced by U+FFFD. */
int cdc_utf8_repair(const unsigned char *s, size_t n, cdc_buf *out)
{
    size_t i = 0, used;
    while (i < n) {
        if (cdc_utf8_scan(s + i, n - i, &used)) {
            if (cdc_buf_append(out, s + i, used) < 0)
                return -1;
        } else if (cdc_buf_append(out, "\xEF\xBF\xBD", 3) < 0) {
            return -1;
        }
        i += used;
    }
    return 0;
}

/* ---- JSON validation -------------------------------------------------------- */

/* One forward pass, no allocation: containers are tracked on a byte stack
 * instead of by recursion so the depth bound is a plain array bound. */
typedef struct jscan {
    const unsigned char *s, *p, *end;
    char *err;
    size_t errlen;
} jscan;

static int jfail(jscan *j, const char *what)
{
    if (j->err && j->errlen)
        snprintf(j->err, j->errlen, "at offset %zu: %s", (size_t)(j->p - j->s), what);
    return -1;
}

static void skip_ws(jscan *j)
{
    while (j->p < j->end &&
           (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
}

static int hex4(const unsigned char *p, unsigned *v)
{
    unsigned x = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        x <<= 4;
        if (c >= '0' && c <= '9')
            x |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            x |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            x |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *v = x;
    return 0;
}

/* Bytes that stand for themselves inside a string: printable ASCII but the
 * quote and the backslash. A table keeps the inner loop to one load. */
static const bool plain_char[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static int scan_string(jscan *j)
{
    j->p++;
    for (;;) {
        while (j->p < j->end && plain_char[*j->p])
            j->p++;
        if (j->p >= j->end)
            return jfail(j, "unterminated string");
        unsigned char c = *j->p;
        if (c == '"') {
            j->p++;
            return 0;
        }
        if (c == '\\') {
            size_t left = (size_t)(j->end - j->p);
            if (left < 2)
                return jfail(j, "unterminated string");
            c = j->p[1];
            if (c == 'u') {
                unsigned u, lo;
                if (left < 6 || hex4(j->p + 2, &u) < 0)
                    return jfail(j, "invalid \\u escape in string");
                if (u >= 0xDC00 && u <= 0xDFFF)
                    return jfail(j, "\\u escape of a low surrogate without a high one");
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (left < 12 || j->p[6] != '\\' || j->p[7] != 'u' ||
                        hex4(j->p + 8, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                        return jfail(j, "\\u escape of a high surrogate without a low one");
                    j->p += 12;
                } else {
                    j->p += 6;
                }
            } else if (c && strchr("\"\\/bfnrt", c)) {
                j->p += 2;
            } else {
                return jfail(j, "invalid escape in string");
            }
            continue;
        }
        if (c < 0x20)
            return jfail(j, "unescaped control character in string");
        size_t used;
        if (!cdc_utf8_scan(j->p, (size_t)(j->end - j->p), &used))
            return jfail(j, "invalid UTF-8 in string");
        j->p += used;
    }
}

static bool is_digit(const jscan *j)
{
    return j->p < j->end && *j->p >= '0' && *j->p <= '9';
}

static int scan_number(jscan *j)
{
    if (*j->p == '-')
        j->p++;
    if (!is_digit(j))
        return jfail(j, "invalid number: expected a digit");
    if (*j->p == '0')
        j->p++;
    else
        while (is_digit(j))
            j->p++;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!is_digit(j))
            return jfail(j, "invalid number: expected a digit after '.'");
        while (is_digit(j))
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!is_digit(j))
            return jfail(j, "invalid number: expected a digit in the exponent");
        while (is_digit(j))
            j->p++;
    }
    return 0;
}

static int scan_literal(jscan *j, const char *lit, size_t n)
{
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return jfail(j, "expected a value");
    j->p += n;
    return 0;
}

int cdc_json_validate(const char *s, size_t len, char *err, size_t errlen)
{
    if (!s)
        s = "";
    jscan j = {(const unsigned char *)s, (const unsigned char *)s,
               (const unsigned char *)s + len, err, errlen};
    unsigned char stack[CDC_JSON_MAX_DEPTH];
    size_t depth = 0;

value:
    skip_ws(&j);
    if (j.p >= j.end)
        return jfail(&j, depth ? "unexpected end of text, expected a value"
                               : "expected a value, found the end of the text");
    switch (*j.p) {
    case '{':
    case '[':
        if (depth == CDC_JSON_MAX_DEPTH)
            return jfail(&j, "arrays/objects nested deeper than 1024 levels");
        stack[depth++] = *j.p;
        j.p++;
        skip_ws(&j);
        if (j.p < j.end && *j.p == (stack[depth - 1] == '{' ? '}' : ']')) {
            j.p++;
            depth--;
            goto after;
        }
        if (stack[depth - 1] == '{')
            goto key;
        goto value;
    case '"':
        if (scan_string(&j) < 0)
            return -1;
        goto after;
    case 't':
        if (scan_literal(&j, "true", 4) < 0)
            return -1;
        goto after;
    case 'f':
        if (scan_literal(&j, "false", 5) < 0)
            return -1;
        goto after;
    case 'n':
        if (scan_literal(&j, "null", 4) < 0)
            return -1;
        goto after;
    default:
        if (*j.p == '-' || (*j.p >= '0' && *j.p <= '9')) {
            if (scan_number(&j) < 0)
                return -1;
            goto after;
        }
        return jfail(&j, "expected a value");
    }

key:
    skip_ws(&j);
    if (j.p >= j.end || *j.p != '"')
        return jfail(&j, "expected a string as object key");
    if (scan_string(&j) < 0)
        return -1;
    skip_ws(&j);
    if (j.p >= j.end || *j.p != ':')
        return jfail(&j, "expected ':' after object key");
    j.p++;
    goto value;

after:
    skip_ws(&j);
    if (depth == 0) {
        if (j.p != j.end)
            return jfail(&j, "trailing data after the JSON value");
        return 0;
    }
    {
        unsigned char open = stack[depth - 1];
        if (j.p < j.end && *j.p == ',') {
            j.p++;
            if (open == '{')
                goto key;
            goto value;
        }
        if (j.p < j.end && *j.p == (open == '{' ? '}' : ']')) {
            j.p++;
            depth--;
            goto after;
        }
        return jfail(&j, open == '{' ? "expected ',' or '}' in object"
                                     : "expected ',' or ']' in array");
    }
}
