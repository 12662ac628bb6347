/* cdc_event.c: the event format of shared/design/EVENTS.md (see cdc_event.h):
 * encoding with yajl_gen, decoding with yajl_tree behind a strict validator,
 * and the table-to-topic name mapping. No I/O. */
#include "cdc_event.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>

#define TOPIC_MAX 249

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A name or value quoted in an error message: at most 48 bytes, controls and
 * non-ASCII bytes shown as '?', so messages stay one printable line. */
static const char *printable(const char *s, char *tmp, size_t tmplen)
{
    size_t i = 0;
    for (; s[i] && i + 4 < tmplen && i < 48; i++) {
        unsigned char c = (unsigned char)s[i];
        tmp[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
    }
    if (s[i]) {
        memcpy(tmp + i, "...", 3);
        i += 3;
    }
    tmp[i] = '\0';
    return tmp;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Looks at the sequence starting at s (n > 0 bytes available). Returns 1 and
 * its length in *used when it is one valid UTF-8 character (Unicode table 3-7:
 * no overlong forms, no surrogates, nothing above U+10FFFF); otherwise 0 and
 * in *used the length of the maximal subpart to replace by one U+FFFD (the
 * practice Unicode recommends and Python's "replace" follows). */
static int utf8_scan(const unsigned char *s, size_t n, size_t *used)
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

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0, used;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        if (!utf8_scan(s + i, n - i, &used))
            return false;
        i += used;
    }
    return true;
}

/* Copies s to out with every maximal invalid subpart replaced by U+FFFD. */
static int utf8_repair(const unsigned char *s, size_t n, cdc_buf *out)
{
    size_t i = 0, used;
    while (i < n) {
        if (utf8_scan(s + i, n - i, &used)) {
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
    set_err(j->err, j->errlen, "at offset %zu: %s", (size_t)(j->p - j->s), what);
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
        if (!utf8_scan(j->p, (size_t)(j->end - j->p), &used))
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

/* ---- encoding --------------------------------------------------------------- */

typedef struct enc {
    yajl_gen g;
    cdc_buf *out;
    size_t start;       /* out->len on entry, restored on failure */
    bool oom;
    bool gen_failed;    /* yajl_gen refused a call: a bug here, not bad input */
    cdc_buf scratch;    /* a name after UTF-8 repair */
    const char *what;   /* "event" or "key", for messages */
    char *err;
    size_t errlen;
} enc;

#define G(e, call)                                                            \
    do {                                                                      \
        if ((call) != yajl_gen_status_ok)                                     \
            (e)->gen_failed = true;                                           \
    } while (0)
#define KEY(e, lit) G(e, yajl_gen_string((e)->g, (const unsigned char *)(lit), sizeof(lit) - 1))

/* yajl prints token by token (quotes, commas, colons apart), so this is the
 * hottest function of the encoder: copy inline while the buffer has room. */
static void enc_print(void *ctx, const char *s, size_t n)
{
    enc *e = ctx;
    cdc_buf *b = e->out;
    if (b->cap - b->len > n) {
        if (n == 1)
            b->data[b->len] = *s;
        else
            memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
        return;
    }
    if (!e->oom && cdc_buf_append(b, s, n) < 0)
        e->oom = true;
}

static int enc_begin(enc *e, cdc_buf *out, const char *what, char *err, size_t errlen)
{
    memset(e, 0, sizeof *e);
    e->out = out;
    e->start = out->len;
    e->what = what;
    e->err = err;
    e->errlen = errlen;
    /* One reservation that fits a typical row, rather than several doublings
     * from 64 bytes on the first events. */
    if (cdc_buf_reserve(out, 512) < 0) {
        set_err(err, errlen, "cannot encode %s: out of memory", what);
        return -1;
    }
    e->g = yajl_gen_alloc(NULL);
    if (!e->g || !yajl_gen_config(e->g, yajl_gen_print_callback, enc_print, e)) {
        set_err(err, errlen, "cannot encode %s: out of memory", what);
        return -1;
    }
    return 0;
}

/* Frees what enc_begin made; on failure (rc < 0, or a late out-of-memory)
 * puts `out` back as it was. */
static int enc_end(enc *e, int rc)
{
    if (rc == 0 && e->oom) {
        set_err(e->err, e->errlen, "cannot encode %s: out of memory", e->what);
        rc = -1;
    }
    if (rc == 0 && e->gen_failed) {
        set_err(e->err, e->errlen, "cannot encode %s: yajl_gen refused a call "
                "(a bug in cdc_event.c)", e->what);
        rc = -1;
    }
    if (rc < 0)
        cdc_buf_truncate(e->out, e->start);
    if (e->g)
        yajl_gen_free(e->g);
    cdc_buf_free(&e->scratch);
    return rc;
}

static void gen_name(enc *e, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), i = 0;
    while (i < n && u[i] < 0x80)
        i++;
    if (i < n && !utf8_valid(u + i, n - i)) {
        cdc_buf_reset(&e->scratch);
        if (utf8_repair(u, n, &e->scratch) < 0) {
            e->oom = true;
            return;
        }
        u = (const unsigned char *)e->scratch.data;
        n = e->scratch.len;
    }
    G(e, yajl_gen_string(e->g, u, n));
}

/* Integers are formatted here rather than by yajl_gen_integer, which goes
 * through sprintf (a tenth of the encoding time) and has no unsigned form. */
static void gen_u64_sign(enc *e, uint64_t v, bool neg)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (neg)
        tmp[--i] = '-';
    G(e, yajl_gen_number(e->g, tmp + i, sizeof tmp - i));
}

static void gen_u64(enc *e, uint64_t v)
{
    gen_u64_sign(e, v, false);
}

static void gen_i64(enc *e, int64_t v)
{
    gen_u64_sign(e, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0);
}

static int gen_row(enc *e, const cdc_row *row, const char *part)
{
    char vmsg[128], tmp[64];
    G(e, yajl_gen_map_open(e->g));
    for (size_t i = 0; i < row->ncolumns; i++) {
        const cdc_column *c = &row->columns[i];
        if (!c->name) {
            set_err(e->err, e->errlen, "cannot encode %s: column %zu of %s has no name",
                    e->what, i, part);
            return -1;
        }
        gen_name(e, c->name);
        if (!c->json) {
            G(e, yajl_gen_null(e->g));
            continue;
        }
        if (cdc_json_validate(c->json, c->json_len, vmsg, sizeof vmsg) < 0) {
            set_err(e->err, e->errlen,
                    "cannot encode %s: column \"%s\" of %s is not valid JSON (%s)",
                    e->what, printable(c->name, tmp, sizeof tmp), part, vmsg);
            return -1;
        }
        /* yajl_gen_number writes its text verbatim: the one way to embed a
         * fragment that was validated above. */
        G(e, yajl_gen_number(e->g, c->json, c->json_len));
    }
    G(e, yajl_gen_map_close(e->g));
    return 0;
}

/* The same rules cdc_event_decode() applies, so that whatever is encoded
 * can be decoded. */
static int check_event(const cdc_event *ev, char *err, size_t errlen)
{
    char op = ev->op;
    if (!op || !strchr("cudrt", op)) {
        set_err(err, errlen, "cannot encode event: op 0x%02x is unknown "
                "(expected c, u, d, r or t)", (unsigned char)op);
        return -1;
    }
    if (!ev->source.schema || !ev->source.table) {
        set_err(err, errlen, "cannot encode event: source.%s is NULL",
                ev->source.schema ? "table" : "schema");
        return -1;
    }
    if ((op == 'c' || op == 'u' || op == 'r') && !ev->after) {
        set_err(err, errlen, "cannot encode event: op %c needs an after row", op);
        return -1;
    }
    if ((op == 'd' || op == 't') && ev->after) {
        set_err(err, errlen, "cannot encode event: op %c must have no after row", op);
        return -1;
    }
    if ((op == 'c' || op == 'r' || op == 't') && ev->before) {
        set_err(err, errlen, "cannot encode event: op %c must have no before row", op);
        return -1;
    }
    for (size_t i = 0; i < ev->n_unchanged_toast; i++)
        if (!ev->unchanged_toast || !ev->unchanged_toast[i]) {
            set_err(err, errlen, "cannot encode event: unchanged_toast[%zu] is NULL", i);
            return -1;
        }
    return 0;
}

int cdc_event_encode(const cdc_event *ev, cdc_buf *out, char *err, size_t errlen)
{
    enc e;
    int rc = -1;
    if (check_event(ev, err, errlen) < 0)
        return -1;
    if (enc_begin(&e, out, "event", err, errlen) < 0)
        goto done;

    G(&e, yajl_gen_map_open(e.g));
    KEY(&e, "op");
    G(&e, yajl_gen_string(e.g, (const unsigned char *)&ev->op, 1));
    KEY(&e, "before");
    if (!ev->before)
        G(&e, yajl_gen_null(e.g));
    else if (gen_row(&e, ev->before, "before") < 0)
        goto done;
    KEY(&e, "after");
    if (!ev->after)
        G(&e, yajl_gen_null(e.g));
    else if (gen_row(&e, ev->after, "after") < 0)
        goto done;
    if (ev->n_unchanged_toast) {
        KEY(&e, "unchanged_toast");
        G(&e, yajl_gen_array_open(e.g));
        for (size_t i = 0; i < ev->n_unchanged_toast; i++)
            gen_name(&e, ev->unchanged_toast[i]);
        G(&e, yajl_gen_array_close(e.g));
    }
    KEY(&e, "source");
    G(&e, yajl_gen_map_open(e.g));
    KEY(&e, "db");
    if (ev->source.db)
        gen_name(&e, ev->source.db);
    else
        G(&e, yajl_gen_null(e.g));
    KEY(&e, "schema");
    gen_name(&e, ev->source.schema);
    KEY(&e, "table");
    gen_name(&e, ev->source.table);
    KEY(&e, "lsn");
    gen_u64(&e, ev->source.lsn);
    KEY(&e, "commit_lsn");
    gen_u64(&e, ev->source.commit_lsn);
    KEY(&e, "txid");
    gen_i64(&e, ev->source.txid);
    KEY(&e, "seq");
    gen_i64(&e, ev->source.seq);
    KEY(&e, "ts_ms");
    gen_i64(&e, ev->source.ts_ms);
    KEY(&e, "snapshot");
    G(&e, yajl_gen_bool(e.g, ev->source.snapshot));
    G(&e, yajl_gen_map_close(e.g));
    KEY(&e, "ts_ms");
    gen_i64(&e, ev->ts_ms);
    G(&e, yajl_gen_map_close(e.g));
    rc = 0;
done:
    return enc_end(&e, rc);
}

int cdc_key_encode(const cdc_row *key, cdc_buf *out, char *err, size_t errlen)
{
    enc e;
    int rc = -1;
    if (!key || key->ncolumns == 0) {
        set_err(err, errlen, "cannot encode key: no key columns (a table without "
                "replica identity gets a null Kafka key, not an encoded one)");
        return -1;
    }
    if (enc_begin(&e, out, "key", err, errlen) < 0)
        goto done;
    if (gen_row(&e, key, "the key") < 0)
        goto done;
    rc = 0;
done:
    return enc_end(&e, rc);
}

/* ---- decoding --------------------------------------------------------------- */

static const char *type_name(yajl_val v)
{
    if (!v)
        return "missing";
    switch (v->type) {
    case yajl_t_string: return "a string";
    case yajl_t_number: return "a number";
    case yajl_t_object: return "an object";
    case yajl_t_array: return "an array";
    case yajl_t_true:
    case yajl_t_false: return "a boolean";
    case yajl_t_null: return "null";
    default: return "something unknown";
    }
}

/* ---- tree building ----
 * The tree of a text cdc_json_validate() accepted, built directly rather than
 * by yajl_tree_parse: yajl's tree parser allocates a parser handle and
 * lexer buffers per text, grows each object by one realloc per member and
 * converts every number with strtod, which made it 6 us of a 400-byte
 * event (bench/event_encode decode); the consumer decodes every record.
 * The nodes are laid out as yajl_tree lays them out and, without an arena,
 * allocated as it does (one malloc per node, string and key; keys/values
 * arrays), so yajl_tree_free() frees them; their contents are those yajl_tree_parse gives
 * (fuzz_event_decode compares the two on every input): strings unescaped
 * (\u0000 as a NUL byte), numbers with their text, yajl_parse_integer's
 * value and flags, and strtod's double. Validation has already checked the
 * syntax, UTF-8, escapes and depth, so building only allocates. */

/* ---- the arena ---- */

#define ARENA_CHUNK (256 * 1024)
#define ARENA_KEEP (64 * 1024 * 1024) /* kept across resets at most */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size, used;
    max_align_t data[];
} arena_chunk;

struct cdc_arena {
    arena_chunk *used;    /* current chunk first */
    arena_chunk *spare;   /* emptied by a reset, for reuse */
    size_t bytes;         /* held in both lists */
};

cdc_arena *cdc_arena_new(void)
{
    return calloc(1, sizeof(cdc_arena));
}

static void *arena_alloc(cdc_arena *a, size_t n)
{
    /* Nodes hold pointers, long long and double: 8-byte alignment is enough
     * (max_align_t would round every string up to 16). */
    n = (n + 7) & ~(size_t)7;
    arena_chunk *c = a->used;
    if (!c || c->size - c->used < n) {
        arena_chunk **sp = &a->spare;
        while (*sp && (*sp)->size < n)
            sp = &(*sp)->next;
        if (*sp) {
            c = *sp;
            *sp = c->next;
        } else {
            size_t size = n > ARENA_CHUNK ? n : ARENA_CHUNK;
            if (!(c = malloc(sizeof *c + size)))
                return NULL;
            c->size = size;
            a->bytes += size;
        }
        c->used = 0;
        c->next = a->used;
        a->used = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

void cdc_arena_reset(cdc_arena *a)
{
    if (!a)
        return;
    while (a->used) {
        arena_chunk *c = a->used;
        a->used = c->next;
        if (a->bytes > ARENA_KEEP) {
            a->bytes -= c->size;
            free(c);
        } else {
            c->next = a->spare;
            a->spare = c;
        }
    }
}

void cdc_arena_free(cdc_arena *a)
{
    if (!a)
        return;
    cdc_arena_reset(a);
    while (a->spare) {
        arena_chunk *c = a->spare;
        a->spare = c->next;
        free(c);
    }
    free(a);
}

size_t cdc_arena_size(const cdc_arena *a)
{
    return a ? a->bytes : 0;
}

/* The builder allocates from the arena when it has one, else with malloc
 * in yajl_tree's layout. */
typedef struct tbuild {
    const unsigned char *p, *end;
    cdc_arena *arena;
} tbuild;

static void *tb_alloc(tbuild *t, size_t n)
{
    return t->arena ? arena_alloc(t->arena, n) : malloc(n);
}

static void *tb_realloc(tbuild *t, void *old, size_t old_n, size_t n)
{
    if (!t->arena)
        return realloc(old, n);
    void *p = arena_alloc(t->arena, n);
    if (p && old)
        memcpy(p, old, old_n);
    return p;
}

/* Frees a node after a failure; the arena takes back its nodes itself. */
static void tb_drop(tbuild *t, yajl_val v)
{
    if (!t->arena)
        yajl_tree_free(v);
}

static void tb_free(tbuild *t, void *p)
{
    if (!t->arena)
        free(p);
}

static void tb_ws(tbuild *t)
{
    while (t->p < t->end && (*t->p == ' ' || *t->p == '\t' || *t->p == '\n' || *t->p == '\r'))
        t->p++;
}

static unsigned tb_hex4(const unsigned char *h)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = h[i];
        v = v * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* The string at t->p (its opening quote), unescaped into a new allocation. */
static char *tb_string(tbuild *t)
{
    const unsigned char *s = t->p + 1, *q = s;
    while (*q != '"') /* validated: a closing quote follows; escapes skipped */
        q += *q == '\\' ? 2 : 1;
    /* Unescaped text is never longer than its escaped form. */
    char *out = tb_alloc(t, (size_t)(q - s) + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    for (const unsigned char *r = s; r < q;) {
        if (*r != '\\') {
            out[n++] = (char)*r++;
            continue;
        }
        unsigned char e = r[1];
        r += 2;
        switch (e) {
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            unsigned cp = tb_hex4(r);
            r += 4;
            if ((cp & 0xFC00) == 0xD800) { /* validated: a low surrogate follows */
                cp = 0x10000 + ((cp - 0xD800) << 10) + (tb_hex4(r + 2) - 0xDC00);
                r += 6;
            }
            if (cp < 0x80) {
                out[n++] = (char)cp;
            } else if (cp < 0x800) {
                out[n++] = (char)(0xC0 | (cp >> 6));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[n++] = (char)(0xE0 | (cp >> 12));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[n++] = (char)(0xF0 | (cp >> 18));
                out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: out[n++] = (char)e; break; /* " \ / */
        }
    }
    out[n] = '\0';
    t->p = q + 1;
    return out;
}

/* yajl_parse_integer's result for a number's text, errno-free: *ok false
 * where yajl sets ERANGE (not an integer, or out of range). */
static long long tb_integer(const char *r, size_t len, bool *ok)
{
    const char *pos = r, *end = r + len;
    long long v = 0;
    int neg = *pos == '-';
    if (neg)
        pos++;
    *ok = false;
    for (; pos < end; pos++) {
        if (v > LLONG_MAX / 10)
            return neg ? LLONG_MIN : LLONG_MAX;
        v *= 10;
        if (LLONG_MAX - v < (long long)(*pos - '0') || *pos < '0' || *pos > '9')
            return neg ? LLONG_MIN : LLONG_MAX;
        v += *pos - '0';
    }
    *ok = true;
    return neg ? -v : v;
}

static yajl_val tb_value(tbuild *t);

static yajl_val tb_node(tbuild *t, yajl_type type)
{
    yajl_val v = tb_alloc(t, sizeof *v);
    if (v) {
        memset(v, 0, sizeof *v);
        v->type = type;
    }
    return v;
}

static yajl_val tb_number(tbuild *t)
{
    const unsigned char *s = t->p;
    while (t->p < t->end && ((*t->p >= '0' && *t->p <= '9') || *t->p == '-' || *t->p == '+' ||
                             *t->p == '.' || *t->p == 'e' || *t->p == 'E'))
        t->p++;
    size_t len = (size_t)(t->p - s);
    yajl_val v = tb_node(t, yajl_t_number);
    if (!v || !(v->u.number.r = tb_alloc(t, len + 1))) {
        tb_free(t, v);
        return NULL;
    }
    memcpy(v->u.number.r, s, len);
    v->u.number.r[len] = '\0';
    bool int_ok;
    v->u.number.i = tb_integer(v->u.number.r, len, &int_ok);
    if (int_ok) {
        /* The exact integer rounded to a double is what strtod gives for
         * its text; only the sign of a zero needs care. */
        v->u.number.d = v->u.number.i == 0 && s[0] == '-' ? -0.0 : (double)v->u.number.i;
        v->u.number.flags = YAJL_NUMBER_INT_VALID | YAJL_NUMBER_DOUBLE_VALID;
        return v;
    }
    char *endp = NULL;
    errno = 0;
    v->u.number.d = strtod(v->u.number.r, &endp);
    if (errno == 0 && endp && *endp == '\0')
        v->u.number.flags |= YAJL_NUMBER_DOUBLE_VALID;
    return v;
}

static yajl_val tb_container(tbuild *t)
{
    bool obj = *t->p == '{';
    yajl_val v = tb_node(t, obj ? yajl_t_object : yajl_t_array);
    if (!v)
        return NULL;
    t->p++;
    tb_ws(t);
    if (*t->p == (obj ? '}' : ']')) {
        t->p++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        if (obj) {
            if (!(key = tb_string(t)))
                goto fail;
            tb_ws(t);
            t->p++; /* ':' */
            tb_ws(t);
        }
        yajl_val item = tb_value(t);
        if (!item) {
            tb_free(t, key);
            goto fail;
        }
        /* Capacity: 4, then doubled whenever len reaches a power of two
         * (yajl_tree_free frees the arrays whatever their size). */
        size_t len = obj ? v->u.object.len : v->u.array.len;
        if (len < 4 ? len == 0 : (len & (len - 1)) == 0) {
            size_t cap = len < 4 ? 4 : len * 2;
            yajl_val *vals = tb_realloc(t, obj ? v->u.object.values : v->u.array.values,
                                        len * sizeof *vals, cap * sizeof *vals);
            if (vals) {
                if (obj)
                    v->u.object.values = vals;
                else
                    v->u.array.values = vals;
            }
            const char **keys = NULL;
            if (vals && obj &&
                (keys = tb_realloc(t, v->u.object.keys, len * sizeof *keys, cap * sizeof *keys)))
                v->u.object.keys = keys;
            if (!vals || (obj && !keys)) {
                tb_free(t, key);
                tb_drop(t, item);
                goto fail;
            }
        }
        if (obj) {
            v->u.object.keys[len] = key;
            v->u.object.values[len] = item;
            v->u.object.len++;
        } else {
            v->u.array.values[len] = item;
            v->u.array.len++;
        }
        tb_ws(t);
        if (*t->p++ != ',')
            return v; /* the closing bracket */
        tb_ws(t);
    }
fail:
    tb_drop(t, v);
    return NULL;
}

static yajl_val tb_value(tbuild *t)
{
    switch (*t->p) {
    case '{':
    case '[':
        return tb_container(t);
    case '"': {
        yajl_val v = tb_node(t, yajl_t_string);
        if (v && !(v->u.string = tb_string(t))) {
            tb_free(t, v);
            return NULL;
        }
        return v;
    }
    case 't': t->p += 4; return tb_node(t, yajl_t_true);
    case 'f': t->p += 5; return tb_node(t, yajl_t_false);
    case 'n': t->p += 4; return tb_node(t, yajl_t_null);
    default: return tb_number(t);
    }
}

/* Validates, then builds the tree. NULL with err set when the text is not
 * JSON (cdc_json_validate's reason) or memory ran out. */
static yajl_val tree_parse(cdc_arena *arena, const char *json, size_t len, const char *what,
                           char *err, size_t errlen)
{
    char vmsg[128];
    if (cdc_json_validate(json, len, vmsg, sizeof vmsg) < 0) {
        set_err(err, errlen, "cannot decode %s: not JSON: %s", what, vmsg);
        return NULL;
    }
    tbuild t = {(const unsigned char *)json, (const unsigned char *)json + len, arena};
    tb_ws(&t);
    yajl_val v = tb_value(&t);
    if (!v)
        set_err(err, errlen, "cannot decode %s: out of memory", what);
    return v;
}

/* Finds the named fields of an object; vals[i] stays NULL when absent (a
 * JSON null is a non-NULL yajl_val of type null). A known field given twice
 * is an error: which one wins would be up to the parser. */
static int get_fields(yajl_val obj, const char *const *names, yajl_val *vals, size_t n,
                      const char *prefix, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        vals[i] = NULL;
    for (size_t k = 0; k < obj->u.object.len; k++)
        for (size_t i = 0; i < n; i++) {
            const char *key = obj->u.object.keys[k];
            if (key[0] != names[i][0] || strcmp(key, names[i]) != 0)
                continue;
            if (vals[i]) {
                set_err(err, errlen, "cannot decode event: field %s%s appears twice",
                        prefix, names[i]);
                return -1;
            }
            vals[i] = obj->u.object.values[k];
            break;
        }
    return 0;
}

/* Exact integer from a number's text, without going through a double.
 * Returns 0, -1 when it is not an integer of the wanted sign, -2 when it does
 * not fit in 64 bits. */
static int number_u64(const char *r, uint64_t *out)
{
    uint64_t v = 0;
    if (!*r)
        return -1;
    for (; *r; r++) {
        if (*r < '0' || *r > '9')
            return -1;
        unsigned d = (unsigned)(*r - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -2;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int number_i64(const char *r, int64_t *out)
{
    bool neg = *r == '-';
    uint64_t u;
    int rc = number_u64(r + neg, &u);
    if (rc < 0)
        return rc;
    if (neg ? u > (uint64_t)INT64_MAX + 1 : u > (uint64_t)INT64_MAX)
        return -2;
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return 0;
}

/* An optional or required integer field. v NULL: absent. */
static int get_int(yajl_val v, const char *name, bool required, bool is_unsigned,
                   uint64_t *u, int64_t *s, char *err, size_t errlen)
{
    char tmp[64];
    const char *want = is_unsigned ? "a non-negative integer" : "an integer";
    if (!v || YAJL_IS_NULL(v)) {
        if (!required)
            return 0;
        set_err(err, errlen, "cannot decode event: %s is %s, not %s", name,
                v ? "null" : "missing", want);
        return -1;
    }
    if (!YAJL_IS_NUMBER(v)) {
        set_err(err, errlen, "cannot decode event: %s is %s, not %s", name,
                type_name(v), want);
        return -1;
    }
    int rc = is_unsigned ? number_u64(v->u.number.r, u) : number_i64(v->u.number.r, s);
    if (rc == -1) {
        set_err(err, errlen, "cannot decode event: %s is %s, not %s", name,
                printable(v->u.number.r, tmp, sizeof tmp), want);
        return -1;
    }
    if (rc == -2) {
        set_err(err, errlen, "cannot decode event: %s %s does not fit in 64 bits", name,
                printable(v->u.number.r, tmp, sizeof tmp));
        return -1;
    }
    return 0;
}

static int get_string(yajl_val v, const char *name, bool required, const char **out,
                      char *err, size_t errlen)
{
    if (v && YAJL_IS_STRING(v)) {
        *out = v->u.string;
        return 0;
    }
    if (!v && !required)
        return 0;
    if (v && YAJL_IS_NULL(v) && !required)
        return 0;
    set_err(err, errlen, "cannot decode event: %s is %s, not a string", name,
            v ? type_name(v) : "missing");
    return -1;
}

/* before/after: v NULL (absent) or null read as NULL. */
static int get_row(yajl_val v, const char *name, yajl_val *out, char *err, size_t errlen)
{
    *out = NULL;
    if (!v || YAJL_IS_NULL(v))
        return 0;
    if (!YAJL_IS_OBJECT(v)) {
        set_err(err, errlen, "cannot decode event: %s is %s, not an object or null",
                name, type_name(v));
        return -1;
    }
    *out = v;
    return 0;
}

/* unchanged_toast: absent or null reads as none. */
static int get_toast(yajl_val v, cdc_decoded_event *ev, char *err, size_t errlen)
{
    if (!v || YAJL_IS_NULL(v))
        return 0;
    if (v->type != yajl_t_array) {
        set_err(err, errlen, "cannot decode event: unchanged_toast is %s, not an "
                "array of strings", type_name(v));
        return -1;
    }
    size_t n = v->u.array.len;
    yajl_val *values = v->u.array.values;
    if (n == 0 || !values)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!YAJL_IS_STRING(values[i])) {
            set_err(err, errlen, "cannot decode event: unchanged_toast[%zu] is %s, "
                    "not a string", i, type_name(values[i]));
            return -1;
        }
    const char **names = malloc(n * sizeof *names);
    if (!names) {
        set_err(err, errlen, "cannot decode event: out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        names[i] = values[i]->u.string;
    ev->unchanged_toast = names;
    ev->n_unchanged_toast = n;
    return 0;
}

enum { F_OP, F_BEFORE, F_AFTER, F_TOAST, F_SOURCE, F_TS, F_N };
static const char *const event_fields[F_N] = {
    "op", "before", "after", "unchanged_toast", "source", "ts_ms",
};
enum { S_DB, S_SCHEMA, S_TABLE, S_LSN, S_COMMIT, S_TXID, S_SEQ, S_TS, S_SNAP, S_N };
static const char *const source_fields[S_N] = {
    "db", "schema", "table", "lsn", "commit_lsn", "txid", "seq", "ts_ms", "snapshot",
};

int cdc_event_decode(const char *json, size_t len, cdc_decoded_event *ev,
                     char *err, size_t errlen)
{
    return cdc_event_decode_in(NULL, json, len, ev, err, errlen);
}

int cdc_event_decode_in(cdc_arena *arena, const char *json, size_t len, cdc_decoded_event *ev,
                        char *err, size_t errlen)
{
    yajl_val f[F_N], s[S_N];
    char tmp[64];
    memset(ev, 0, sizeof *ev);
    ev->arena = arena;
    ev->root = tree_parse(arena, json, len, "event", err, errlen);
    if (!ev->root)
        goto fail;
    if (!YAJL_IS_OBJECT(ev->root)) {
        set_err(err, errlen, "cannot decode event: the value is %s, not an object",
                type_name(ev->root));
        goto fail;
    }
    if (get_fields(ev->root, event_fields, f, F_N, "", err, errlen) < 0)
        goto fail;

    yajl_val op = f[F_OP];
    if (!op) {
        set_err(err, errlen, "cannot decode event: op is missing");
        goto fail;
    }
    if (!YAJL_IS_STRING(op)) {
        set_err(err, errlen, "cannot decode event: op is %s, not a string", type_name(op));
        goto fail;
    }
    if (strlen(op->u.string) != 1 || !strchr("cudrt", op->u.string[0])) {
        set_err(err, errlen, "cannot decode event: op \"%s\" is unknown "
                "(expected c, u, d, r or t)", printable(op->u.string, tmp, sizeof tmp));
        goto fail;
    }
    ev->op = op->u.string[0];

    yajl_val src = f[F_SOURCE];
    if (!src || !YAJL_IS_OBJECT(src)) {
        set_err(err, errlen, "cannot decode event: source is %s, not an object",
                src ? type_name(src) : "missing");
        goto fail;
    }
    if (get_fields(src, source_fields, s, S_N, "source.", err, errlen) < 0 ||
        get_string(s[S_SCHEMA], "source.schema", true, &ev->schema, err, errlen) < 0 ||
        get_string(s[S_TABLE], "source.table", true, &ev->table, err, errlen) < 0 ||
        get_int(s[S_LSN], "source.lsn", true, true, &ev->lsn, NULL, err, errlen) < 0 ||
        get_string(s[S_DB], "source.db", false, &ev->db, err, errlen) < 0 ||
        get_int(s[S_COMMIT], "source.commit_lsn", false, true, &ev->commit_lsn, NULL,
                err, errlen) < 0 ||
        get_int(s[S_TXID], "source.txid", false, false, NULL, &ev->txid, err, errlen) < 0 ||
        get_int(s[S_SEQ], "source.seq", false, false, NULL, &ev->seq, err, errlen) < 0 ||
        get_int(s[S_TS], "source.ts_ms", false, false, NULL, &ev->source_ts_ms,
                err, errlen) < 0)
        goto fail;
    yajl_val snap = s[S_SNAP];
    if (snap && !YAJL_IS_NULL(snap)) {
        if (!YAJL_IS_TRUE(snap) && !YAJL_IS_FALSE(snap)) {
            set_err(err, errlen, "cannot decode event: source.snapshot is %s, not a boolean",
                    type_name(snap));
            goto fail;
        }
        ev->snapshot = YAJL_IS_TRUE(snap);
    }

    if (get_row(f[F_BEFORE], "before", &ev->before, err, errlen) < 0 ||
        get_row(f[F_AFTER], "after", &ev->after, err, errlen) < 0)
        goto fail;
    if (strchr("cur", ev->op) && !ev->after) {
        set_err(err, errlen, "cannot decode event: after is %s (op %c needs the new row)",
                f[F_AFTER] ? "null" : "missing", ev->op);
        goto fail;
    }
    if (strchr("dt", ev->op) && ev->after) {
        set_err(err, errlen, "cannot decode event: after is an object, but op %c must "
                "have a null after", ev->op);
        goto fail;
    }
    if (strchr("crt", ev->op) && ev->before) {
        set_err(err, errlen, "cannot decode event: before is an object, but op %c must "
                "have a null before", ev->op);
        goto fail;
    }

    if (get_toast(f[F_TOAST], ev, err, errlen) < 0)
        goto fail;

    if (get_int(f[F_TS], "ts_ms", false, false, NULL, &ev->ts_ms, err, errlen) < 0)
        goto fail;
    return 0;

fail:
    cdc_decoded_event_free(ev);
    return -1;
}

void cdc_decoded_event_free(cdc_decoded_event *ev)
{
    if (!ev)
        return;
    if (ev->root && !ev->arena)
        yajl_tree_free(ev->root);
    free(ev->unchanged_toast);
    memset(ev, 0, sizeof *ev);
}

int cdc_key_decode(const char *json, size_t len, yajl_val *key, char *err, size_t errlen)
{
    return cdc_key_decode_in(NULL, json, len, key, err, errlen);
}

int cdc_key_decode_in(cdc_arena *arena, const char *json, size_t len, yajl_val *key, char *err,
                      size_t errlen)
{
    *key = tree_parse(arena, json, len, "key", err, errlen);
    if (!*key)
        return -1;
    if (!YAJL_IS_OBJECT(*key)) {
        set_err(err, errlen, "cannot decode key: the key is %s, not an object",
                type_name(*key));
        if (!arena)
            yajl_tree_free(*key);
        *key = NULL;
        return -1;
    }
    return 0;
}

/* ---- topic names ------------------------------------------------------------ */

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
        i += utf8_scan(s + i, n - i, &used) ? used : 1;
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
