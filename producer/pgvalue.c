/* pgvalue.c: PostgreSQL text output to JSON, by type (see pgvalue.h).
 * Runs for every column of every row, so the common paths append runs of
 * bytes straight into the output buffer and never allocate per value. */
#include "pgvalue.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- built-in types ------------------------------------------------- */

typedef struct builtin {
    uint32_t oid;
    uint32_t array_oid;
    pgvalue_class cls;
} builtin;

/* Built-ins whose mapping is not plain text, and the arrays of every
 * built-in base type (from pg_type of PostgreSQL 15; OIDs below 10000 are
 * fixed across versions). int2vector and oidvector print as "1 2 3", not as
 * array literals, so they are text. */
static const builtin builtins[] = {
    {16, 1000, PGVALUE_BOOL},
    {17, 1001, PGVALUE_BYTEA},
    {18, 1002, PGVALUE_TEXT},      /* "char" */
    {19, 1003, PGVALUE_TEXT},      /* name */
    {20, 1016, PGVALUE_INT},
    {21, 1005, PGVALUE_INT},
    {22, 1006, PGVALUE_TEXT},      /* int2vector */
    {23, 1007, PGVALUE_INT},
    {24, 1008, PGVALUE_TEXT},      /* regproc */
    {25, 1009, PGVALUE_TEXT},
    {26, 1028, PGVALUE_INT},       /* oid */
    {27, 1010, PGVALUE_TEXT},      /* tid */
    {28, 1011, PGVALUE_TEXT},      /* xid */
    {29, 1012, PGVALUE_TEXT},      /* cid */
    {30, 1013, PGVALUE_TEXT},      /* oidvector */
    {114, 199, PGVALUE_JSON},
    {142, 143, PGVALUE_TEXT},      /* xml */
    {600, 1017, PGVALUE_TEXT},     /* point */
    {601, 1018, PGVALUE_TEXT},     /* lseg */
    {602, 1019, PGVALUE_TEXT},     /* path */
    {603, 1020, PGVALUE_TEXT},     /* box: array delimiter ';' */
    {604, 1027, PGVALUE_TEXT},     /* polygon */
    {628, 629, PGVALUE_TEXT},      /* line */
    {650, 651, PGVALUE_TEXT},      /* cidr */
    {700, 1021, PGVALUE_FLOAT},
    {701, 1022, PGVALUE_FLOAT},
    {718, 719, PGVALUE_TEXT},      /* circle */
    {774, 775, PGVALUE_TEXT},      /* macaddr8 */
    {790, 791, PGVALUE_TEXT},      /* money */
    {829, 1040, PGVALUE_TEXT},     /* macaddr */
    {869, 1041, PGVALUE_TEXT},     /* inet */
    {1033, 1034, PGVALUE_TEXT},    /* aclitem */
    {1042, 1014, PGVALUE_TEXT},    /* bpchar */
    {1043, 1015, PGVALUE_TEXT},    /* varchar */
    {1082, 1182, PGVALUE_DATE},
    {1083, 1183, PGVALUE_TEXT},    /* time */
    {1114, 1115, PGVALUE_TIMESTAMP},
    {1184, 1185, PGVALUE_TIMESTAMPTZ},
    {1186, 1187, PGVALUE_TEXT},    /* interval */
    {1266, 1270, PGVALUE_TEXT},    /* timetz */
    {1560, 1561, PGVALUE_TEXT},    /* bit */
    {1562, 1563, PGVALUE_TEXT},    /* varbit */
    {1700, 1231, PGVALUE_NUMERIC},
    {1790, 2201, PGVALUE_TEXT},    /* refcursor */
    {2202, 2207, PGVALUE_TEXT},    /* regprocedure */
    {2203, 2208, PGVALUE_TEXT},    /* regoper */
    {2204, 2209, PGVALUE_TEXT},    /* regoperator */
    {2205, 2210, PGVALUE_TEXT},    /* regclass */
    {2206, 2211, PGVALUE_TEXT},    /* regtype */
    {2275, 1263, PGVALUE_TEXT},    /* cstring */
    {2950, 2951, PGVALUE_TEXT},    /* uuid */
    {2970, 2949, PGVALUE_TEXT},    /* txid_snapshot */
    {3220, 3221, PGVALUE_TEXT},    /* pg_lsn */
    {3614, 3643, PGVALUE_TEXT},    /* tsvector */
    {3615, 3645, PGVALUE_TEXT},    /* tsquery */
    {3642, 3644, PGVALUE_TEXT},    /* gtsvector */
    {3734, 3735, PGVALUE_TEXT},    /* regconfig */
    {3769, 3770, PGVALUE_TEXT},    /* regdictionary */
    {3802, 3807, PGVALUE_JSON},    /* jsonb */
    {3904, 3905, PGVALUE_TEXT},    /* int4range */
    {3906, 3907, PGVALUE_TEXT},    /* numrange */
    {3908, 3909, PGVALUE_TEXT},    /* tsrange */
    {3910, 3911, PGVALUE_TEXT},    /* tstzrange */
    {3912, 3913, PGVALUE_TEXT},    /* daterange */
    {3926, 3927, PGVALUE_TEXT},    /* int8range */
    {4072, 4073, PGVALUE_TEXT},    /* jsonpath: its own syntax, not JSON */
    {4089, 4090, PGVALUE_TEXT},    /* regnamespace */
    {4096, 4097, PGVALUE_TEXT},    /* regrole */
    {4191, 4192, PGVALUE_TEXT},    /* regcollation */
    {4451, 6150, PGVALUE_TEXT},    /* int4multirange */
    {4532, 6151, PGVALUE_TEXT},    /* nummultirange */
    {4533, 6152, PGVALUE_TEXT},    /* tsmultirange */
    {4534, 6153, PGVALUE_TEXT},    /* tstzmultirange */
    {4535, 6155, PGVALUE_TEXT},    /* datemultirange */
    {4536, 6157, PGVALUE_TEXT},    /* int8multirange */
    {5038, 5039, PGVALUE_TEXT},    /* pg_snapshot */
    {5069, 271, PGVALUE_TEXT},     /* xid8 */
};

bool pgvalue_builtin_type(uint32_t oid, pgvalue_type *out)
{
    /* Resolution is cached per relation column, so a linear scan is fine. */
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        const builtin *b = &builtins[i];
        if (b->oid == oid || b->array_oid == oid) {
            out->is_array = b->array_oid == oid;
            out->cls = b->cls;
            out->delim = b->oid == 603 ? ';' : ',';
            out->elem_oid = out->is_array ? b->oid : 0;
            return true;
        }
    }
    /* Other well-known text-like scalars (text-typed pseudo types, unknown,
     * void, ...) need no catalog trip either. */
    if (oid == 705 /* unknown */ || oid == 2278 /* void */) {
        out->is_array = false;
        out->cls = PGVALUE_TEXT;
        out->delim = ',';
        out->elem_oid = 0;
        return true;
    }
    return false;
}

/* ---- JSON strings ----------------------------------------------------- */

/* 1: the byte can be copied as is inside a JSON string. */
static const unsigned char plain[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0),                       /* 0x00-0x1f: controls */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20-0x2f: '"' */
    R16(1), R16(1),                       /* 0x30-0x4f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50-0x5f: '\\' */
    R16(1),                               /* 0x60-0x6f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, /* 0x70-0x7f: DEL */
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0),
#undef R16
};

/* Length of the well-formed UTF-8 sequence at p (Unicode table 3-7), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f))
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
            (p[3] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))
            return 0;
        return 4;
    }
    return 0;
}

static int append_escaped(cdc_buf *out, const unsigned char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && plain[s[run]])
            run++;
        if (run > i && cdc_buf_append(out, s + i, run - i) < 0)
            return -1;
        i = run;
        if (i >= len)
            break;
        unsigned char c = s[i];
        char esc[6];
        size_t elen = 2;
        esc[0] = '\\';
        if (c < 0x80) {
            switch (c) {
            case '"': esc[1] = '"'; break;
            case '\\': esc[1] = '\\'; break;
            case '\n': esc[1] = 'n'; break;
            case '\r': esc[1] = 'r'; break;
            case '\t': esc[1] = 't'; break;
            case '\b': esc[1] = 'b'; break;
            case '\f': esc[1] = 'f'; break;
            default:
                esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
                esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
                elen = 6;
            }
            if (cdc_buf_append(out, esc, elen) < 0)
                return -1;
            i++;
            continue;
        }
        size_t n = utf8_len(s + i, len - i);
        if (n == 0) {
            if (cdc_buf_append(out, "\xef\xbf\xbd", 3) < 0)
                return -1;
            i++;
            continue;
        }
        /* C1 controls (C2 80-9F) and the JavaScript line separators. */
        if ((n == 2 && c == 0xc2 && s[i + 1] <= 0x9f) ||
            (n == 3 && c == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9))) {
            unsigned cp = n == 2 ? s[i + 1] : 0x2000u | (0x28u + (s[i + 2] - 0xa8u));
            char u[6] = {'\\', 'u', hex[(cp >> 12) & 15], hex[(cp >> 8) & 15],
                         hex[(cp >> 4) & 15], hex[cp & 15]};
            if (cdc_buf_append(out, u, 6) < 0)
                return -1;
        } else if (cdc_buf_append(out, s + i, n) < 0) {
            return -1;
        }
        i += n;
    }
    return 0;
}

int pgvalue_append_json_string(cdc_buf *out, const char *s, size_t len)
{
    if (cdc_buf_reserve(out, len + 2) < 0 || cdc_buf_putc(out, '"') < 0 ||
        append_escaped(out, (const unsigned char *)s, len) < 0 ||
        cdc_buf_putc(out, '"') < 0)
        return -1;
    return 0;
}

/* ---- scalars ---------------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* PostgreSQL's integer output: -?[0-9]+, no leading zeros but for "0". */
static bool is_json_int(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return false;
    if (s[i] == '0' && n - i > 1)
        return false;
    for (; i < n; i++)
        if (!is_digit(s[i]))
            return false;
    return true;
}

/* The JSON number grammar (RFC 8259 section 6). */
static bool is_json_number(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n || !is_digit(s[i]))
        return false;
    if (s[i] == '0')
        i++;
    else
        while (i < n && is_digit(s[i]))
            i++;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i]))
            return false;
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !is_digit(s[i]))
            return false;
        while (i < n && is_digit(s[i]))
            i++;
    }
    return i == n;
}

static bool is_valid_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_len(p + i, n - i);
        if (!l)
            return false;
        i += l;
    }
    return true;
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int append_b64_group(cdc_buf *out, const unsigned char *g, size_t n)
{
    char q[4];
    unsigned v = (unsigned)g[0] << 16 | (n > 1 ? (unsigned)g[1] << 8 : 0) | (n > 2 ? g[2] : 0);
    q[0] = b64[(v >> 18) & 63];
    q[1] = b64[(v >> 12) & 63];
    q[2] = n > 1 ? b64[(v >> 6) & 63] : '=';
    q[3] = n > 2 ? b64[v & 63] : '=';
    return cdc_buf_append(out, q, 4);
}

/* bytea in hex format (\x0a0b...) or, should the session not use
 * bytea_output=hex, escape format (\\ and \ooo). Returns 1 when the text
 * is neither, so the caller can fall back to a string. */
static int append_bytea(cdc_buf *out, const char *s, size_t n)
{
    size_t start = out->len;
    unsigned char g[3];
    size_t gn = 0;
    if (cdc_buf_putc(out, '"') < 0)
        return -1;
    if (n >= 2 && s[0] == '\\' && s[1] == 'x') {
        if ((n - 2) % 2)
            goto not_bytea;
        if (cdc_buf_reserve(out, (n - 2) / 3 * 4 + 8) < 0)
            return -1;
        for (size_t i = 2; i < n; i += 2) {
            int hi = hexval(s[i]), lo = hexval(s[i + 1]);
            if (hi < 0 || lo < 0)
                goto not_bytea;
            g[gn++] = (unsigned char)(hi << 4 | lo);
            if (gn == 3) {
                if (append_b64_group(out, g, 3) < 0)
                    return -1;
                gn = 0;
            }
        }
    } else {
        for (size_t i = 0; i < n;) {
            unsigned char b;
            if (s[i] != '\\') {
                b = (unsigned char)s[i++];
            } else if (i + 1 < n && s[i + 1] == '\\') {
                b = '\\';
                i += 2;
            } else if (i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' &&
                       s[i + 2] >= '0' && s[i + 2] <= '7' &&
                       s[i + 3] >= '0' && s[i + 3] <= '7') {
                b = (unsigned char)((s[i + 1] - '0') << 6 | (s[i + 2] - '0') << 3 |
                                    (s[i + 3] - '0'));
                i += 4;
            } else {
                goto not_bytea;
            }
            g[gn++] = b;
            if (gn == 3) {
                if (append_b64_group(out, g, 3) < 0)
                    return -1;
                gn = 0;
            }
        }
    }
    if (gn && append_b64_group(out, g, gn) < 0)
        return -1;
    return cdc_buf_putc(out, '"');
not_bytea:
    cdc_buf_truncate(out, start);
    return 1;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t l = strlen(suffix);
    return n >= l && memcmp(s + n - l, suffix, l) == 0;
}

/* "YYYY-MM-DD HH:..." (years may have more than 4 digits): the position of
 * the space between date and time, or 0 when the text is not that shape
 * (infinity, BC values keep PostgreSQL's form, see pgvalue.h). */
static size_t timestamp_space(const char *s, size_t n)
{
    size_t i = 0;
    if (ends_with(s, n, " BC"))
        return 0;
    /* The text is copied into the JSON string unescaped below: only accept
     * what PostgreSQL prints (digits, separators, zone letters). */
    for (size_t k = 0; k < n; k++)
        if (s[k] < 0x20 || s[k] > 0x7e || s[k] == '"' || s[k] == '\\')
            return 0;
    while (i < n && is_digit(s[i]))
        i++;
    if (i < 4 || n - i < 10)
        return 0;
    if (s[i] != '-' || !is_digit(s[i + 1]) || !is_digit(s[i + 2]) || s[i + 3] != '-' ||
        !is_digit(s[i + 4]) || !is_digit(s[i + 5]) || s[i + 6] != ' ' ||
        !is_digit(s[i + 7]) || !is_digit(s[i + 8]) || s[i + 9] != ':')
        return 0;
    return i + 6;
}

static int append_timestamp(cdc_buf *out, const char *s, size_t n, bool tz)
{
    size_t sp = timestamp_space(s, n);
    if (!sp)
        return pgvalue_append_json_string(out, s, n);
    size_t end = n, off = n;
    if (tz) {
        /* The zone offset follows the time: "+00", "-05", "+05:30", "+05:30:15". */
        for (size_t i = sp + 1; i < n; i++)
            if (s[i] == '+' || s[i] == '-') {
                off = i;
                break;
            }
        if (off == n || n - off < 3)
            return pgvalue_append_json_string(out, s, n);
        end = off;
    }
    if (cdc_buf_reserve(out, n + 6) < 0)
        return -1;
    char *d = out->data + out->len;
    d[0] = '"';
    memcpy(d + 1, s, sp);
    d[1 + sp] = 'T';
    memcpy(d + 2 + sp, s + sp + 1, end - sp - 1);
    size_t w = 1 + end;
    if (tz) {
        size_t ol = n - off;
        if (ol == 3 && s[off] == '+' && s[off + 1] == '0' && s[off + 2] == '0') {
            d[w++] = 'Z';
        } else {
            memcpy(d + w, s + off, ol);
            w += ol;
            if (ol == 3) {
                memcpy(d + w, ":00", 3);
                w += 3;
            }
        }
    }
    d[w++] = '"';
    out->len += w;
    out->data[out->len] = '\0';
    return 0;
}

static int append_scalar(cdc_buf *out, pgvalue_class cls, const char *s, size_t n)
{
    switch (cls) {
    case PGVALUE_BOOL:
        if (n == 1 && s[0] == 't')
            return cdc_buf_append(out, "true", 4);
        if (n == 1 && s[0] == 'f')
            return cdc_buf_append(out, "false", 5);
        break;
    case PGVALUE_INT:
        if (is_json_int(s, n))
            return cdc_buf_append(out, s, n);
        break;
    case PGVALUE_FLOAT:
        /* NaN and +-Infinity fail the grammar and become strings. */
        if (is_json_number(s, n))
            return cdc_buf_append(out, s, n);
        break;
    case PGVALUE_JSON:
        /* PostgreSQL validated it as JSON; only the encoding can be off
         * (a SQL_ASCII database). */
        if (n > 0 && is_valid_utf8(s, n))
            return cdc_buf_append(out, s, n);
        break;
    case PGVALUE_BYTEA: {
        int rc = append_bytea(out, s, n);
        if (rc <= 0)
            return rc;
        break;
    }
    case PGVALUE_TIMESTAMP:
        return append_timestamp(out, s, n, false);
    case PGVALUE_TIMESTAMPTZ:
        return append_timestamp(out, s, n, true);
    case PGVALUE_TEXT:
    case PGVALUE_NUMERIC:
    case PGVALUE_DATE:
        break;
    }
    return pgvalue_append_json_string(out, s, n);
}

/* ---- arrays ----------------------------------------------------------- */

/* PostgreSQL allows at most 6 dimensions (MAXDIM); leave some room. */
#define ARRAY_MAX_DEPTH 16

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

__attribute__((format(printf, 4, 5)))
static int array_fail(char *err, size_t errlen, size_t off, const char *fmt, ...)
{
    if (err && errlen) {
        int n = snprintf(err, errlen, "malformed array literal at offset %zu: ", off);
        if (n >= 0 && (size_t)n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

static int append_array(cdc_buf *out, const pgvalue_type *t, const char *s, size_t n,
                        cdc_buf *scratch, char *err, size_t errlen)
{
    const char delim = t->delim ? t->delim : ',';
    size_t i = 0, start = out->len;
    int depth = 0;
    bool need_elem = false;    /* after a delimiter */
    bool first = true;         /* nothing yet at this level */

    while (i < n && is_space(s[i]))
        i++;
    /* Explicit bounds: "[0:1][1:2]={...}". The bounds carry no data JSON
     * can show, so they are dropped. */
    if (i < n && s[i] == '[') {
        while (i < n && s[i] != '=') {
            char c = s[i];
            if (!(is_digit(c) || c == '[' || c == ']' || c == ':' || c == '-' || c == '+'))
                return array_fail(err, errlen, i, "unexpected '%c' in dimensions", c);
            i++;
        }
        if (i >= n)
            return array_fail(err, errlen, i, "dimensions without '='");
        i++;
        while (i < n && is_space(s[i]))
            i++;
    }
    if (i >= n || s[i] != '{')
        return array_fail(err, errlen, i, "expected '{'");

    for (;;) {
        while (i < n && is_space(s[i]))
            i++;
        if (i >= n)
            goto truncated;
        char c = s[i];
        if (c == '{') {
            if (depth > 0 && !first && !need_elem)
                return array_fail(err, errlen, i, "expected '%c' or '}'", delim);
            if (++depth > ARRAY_MAX_DEPTH)
                return array_fail(err, errlen, i, "more than %d dimensions", ARRAY_MAX_DEPTH);
            if (!first && cdc_buf_putc(out, ',') < 0)
                goto oom;
            if (cdc_buf_putc(out, '[') < 0)
                goto oom;
            first = true;
            need_elem = false;
            i++;
            continue;
        }
        if (c == '}') {
            if (need_elem)
                return array_fail(err, errlen, i, "element expected after '%c'", delim);
            if (cdc_buf_putc(out, ']') < 0)
                goto oom;
            i++;
            first = false;
            if (--depth == 0)
                break;
            continue;
        }
        if (c == delim) {
            if (first || need_elem)
                return array_fail(err, errlen, i, "element expected before '%c'", delim);
            need_elem = true;
            i++;
            continue;
        }
        /* An element. */
        if (!first && !need_elem)
            return array_fail(err, errlen, i, "expected '%c' or '}'", delim);
        if (!first && cdc_buf_putc(out, ',') < 0)
            goto oom;
        const char *e;
        size_t elen;
        bool escaped = false, quoted = c == '"';
        size_t from = quoted ? i + 1 : i, j = from;
        if (quoted) {
            while (j < n && s[j] != '"') {
                if (s[j] == '\\') {
                    escaped = true;
                    j++;
                }
                j++;
            }
            if (j >= n)
                goto truncated;
            elen = j - from;
            i = j + 1;
        } else {
            size_t last = from; /* end of the element without trailing blanks */
            while (j < n && s[j] != delim && s[j] != '}' && s[j] != '{' && s[j] != '"') {
                if (s[j] == '\\') {
                    escaped = true;
                    j++;
                    if (j >= n)
                        goto truncated;
                    last = j + 1;
                } else if (!is_space(s[j])) {
                    last = j + 1;
                }
                j++;
            }
            if (j < n && (s[j] == '{' || s[j] == '"'))
                return array_fail(err, errlen, j, "unexpected '%c' inside an element", s[j]);
            elen = last - from;
            i = j;
        }
        e = s + from;
        if (escaped) {
            cdc_buf_reset(scratch);
            if (cdc_buf_reserve(scratch, elen) < 0)
                goto oom;
            for (size_t k = 0; k < elen; k++) {
                if (e[k] == '\\')
                    k++;
                scratch->data[scratch->len++] = e[k];
            }
            scratch->data[scratch->len] = '\0';
            e = scratch->data;
            elen = scratch->len;
        }
        if (!quoted && !escaped && elen == 4 && strncasecmp(e, "NULL", 4) == 0) {
            if (cdc_buf_append(out, "null", 4) < 0)
                goto oom;
        } else if (append_scalar(out, t->cls, e, elen) < 0) {
            goto oom;
        }
        first = false;
        need_elem = false;
    }
    while (i < n && is_space(s[i]))
        i++;
    if (i != n)
        return array_fail(err, errlen, i, "unexpected text after the closing '}'");
    return 0;
truncated:
    cdc_buf_truncate(out, start);
    return array_fail(err, errlen, n, "ends before its closing '}'");
oom:
    snprintf(err, errlen, "out of memory converting an array value");
    return -1;
}

int pgvalue_append_json(cdc_buf *out, const pgvalue_type *type,
                        const char *text, size_t len, cdc_buf *scratch,
                        char *err, size_t errlen)
{
    if (type->is_array) {
        size_t start = out->len;
        if (append_array(out, type, text, len, scratch, err, errlen) < 0) {
            cdc_buf_truncate(out, start);
            return -1;
        }
        return 0;
    }
    if (append_scalar(out, type->cls, text, len) < 0) {
        snprintf(err, errlen, "out of memory converting a value of %zu bytes", len);
        return -1;
    }
    return 0;
}

/* ---- rows ------------------------------------------------------------- */

void pgvalue_row_free(pgvalue_row *r)
{
    if (!r)
        return;
    cdc_buf_free(&r->values);
    cdc_buf_free(&r->scratch);
    free(r->cols);
    free(r->offs);
    memset(r, 0, sizeof *r);
}

int pgvalue_row_reserve(pgvalue_row *r, size_t n)
{
    if (n <= r->cap)
        return 0;
    cdc_column *c = realloc(r->cols, n * sizeof *c);
    if (!c)
        return -1;
    r->cols = c;
    size_t *o = realloc(r->offs, n * sizeof *o);
    if (!o)
        return -1;
    r->offs = o;
    r->cap = n;
    return 0;
}

void pgvalue_row_seal(pgvalue_row *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        r->cols[i].json = r->values.data + r->offs[i];
        r->cols[i].json_len = (i + 1 < n ? r->offs[i + 1] : r->values.len) - r->offs[i];
    }
}
