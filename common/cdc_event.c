/* cdc_event.c: the event format of shared/design/EVENTS.md (see cdc_event.h):
 * encoding a change by writing its JSON directly, decoding a record into a
 * yajl tree after the strict validator of cdc_json.c. No I/O. */
#include "cdc_event.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


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

/* ---- encoding --------------------------------------------------------------- */

/* Events are written directly into the output buffer: the skeleton is fixed
 * text, names are quoted here, values are JSON fragments validated and
 * copied. yajl_gen did the same token by token, through a callback per
 * token and an allocation per event (a fifth of the producer's time on a
 * backlog); the bytes are the same as its output without beautify or
 * escape_solidus, which test_event's encode_escapes_as_yajl_gen checks. */

typedef struct enc {
    cdc_buf *out;
    size_t start;       /* out->len on entry, restored on failure */
    bool oom;
    cdc_buf scratch;    /* a name after UTF-8 repair */
    const char *what;   /* "event" or "key", for messages */
    char *err;
    size_t errlen;
} enc;

static void put(enc *e, const char *s, size_t n)
{
    cdc_buf *b = e->out;
    if (b->cap - b->len > n) {
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
        return;
    }
    if (!e->oom && cdc_buf_append(b, s, n) < 0)
        e->oom = true;
}

#define PUT(e, lit) put(e, lit, sizeof(lit) - 1)

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
    if (rc < 0)
        cdc_buf_truncate(e->out, e->start);
    cdc_buf_free(&e->scratch);
    return rc;
}

/* A JSON string of n bytes, escaped as yajl_gen escapes: the two-character
 * forms for \b \t \n \f \r " and \\, \u00XX (upper-case hex) for the other
 * control characters, everything else as it is. */
static void put_string(enc *e, const unsigned char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    PUT(e, "\"");
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(e, (const char *)s + from, i - from);
        from = i + 1;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0x0f]};
        switch (c) {
        case '"': PUT(e, "\\\""); break;
        case '\\': PUT(e, "\\\\"); break;
        case '\b': PUT(e, "\\b"); break;
        case '\t': PUT(e, "\\t"); break;
        case '\n': PUT(e, "\\n"); break;
        case '\f': PUT(e, "\\f"); break;
        case '\r': PUT(e, "\\r"); break;
        default: put(e, esc, sizeof esc); break;
        }
    }
    put(e, (const char *)s + from, n - from);
    PUT(e, "\"");
}

/* A byte a JSON string holds as it is and that needs no UTF-8 check:
 * ASCII from the space on, but the quote and the backslash. NUL is not. */
static bool plain_ascii(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* A name as a JSON string. Names are nearly always plain ASCII (column,
 * schema and table names, in every event): those take one pass and one
 * copy; it was a tenth of the producer's instructions on a backlog when
 * every name took three passes (length, UTF-8, escapes). */
static void gen_name(enc *e, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (plain_ascii(u[i]))
        i++;
    if (!u[i]) {
        cdc_buf *b = e->out;
        if (b->cap - b->len > i + 2) {
            char *d = b->data + b->len;
            d[0] = '"';
            memcpy(d + 1, s, i);
            d[i + 1] = '"';
            b->len += i + 2;
            b->data[b->len] = '\0';
            return;
        }
        put_string(e, u, i);
        return;
    }
    size_t n = i + strlen(s + i);
    while (i < n && u[i] < 0x80)
        i++;
    if (i < n && !cdc_utf8_valid(u + i, n - i)) {
        cdc_buf_reset(&e->scratch);
        if (cdc_utf8_repair(u, n, &e->scratch) < 0) {
            e->oom = true;
            return;
        }
        u = (const unsigned char *)e->scratch.data;
        n = e->scratch.len;
    }
    put_string(e, u, n);
}

/* Integers are formatted here: sprintf was a tenth of the encoding time. */
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
    put(e, tmp + i, sizeof tmp - i);
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
    PUT(e, "{");
    for (size_t i = 0; i < row->ncolumns; i++) {
        const cdc_column *c = &row->columns[i];
        if (!c->name) {
            set_err(e->err, e->errlen, "cannot encode %s: column %zu of %s has no name",
                    e->what, i, part);
            return -1;
        }
        if (i > 0)
            PUT(e, ",");
        gen_name(e, c->name);
        PUT(e, ":");
        if (!c->json) {
            PUT(e, "null");
            continue;
        }
        if (cdc_json_validate(c->json, c->json_len, vmsg, sizeof vmsg) < 0) {
            set_err(e->err, e->errlen,
                    "cannot encode %s: column \"%s\" of %s is not valid JSON (%s)",
                    e->what, printable(c->name, tmp, sizeof tmp), part, vmsg);
            return -1;
        }
        put(e, c->json, c->json_len); /* validated above */
    }
    PUT(e, "}");
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

    char op[] = {'{', '"', 'o', 'p', '"', ':', '"', ev->op, '"', ','};
    put(&e, op, sizeof op); /* op is one of cudrt (check_event) */
    PUT(&e, "\"before\":");
    if (!ev->before)
        PUT(&e, "null");
    else if (gen_row(&e, ev->before, "before") < 0)
        goto done;
    PUT(&e, ",\"after\":");
    if (!ev->after)
        PUT(&e, "null");
    else if (gen_row(&e, ev->after, "after") < 0)
        goto done;
    if (ev->n_unchanged_toast) {
        PUT(&e, ",\"unchanged_toast\":[");
        for (size_t i = 0; i < ev->n_unchanged_toast; i++) {
            if (i > 0)
                PUT(&e, ",");
            gen_name(&e, ev->unchanged_toast[i]);
        }
        PUT(&e, "]");
    }
    PUT(&e, ",\"source\":{\"db\":");
    if (ev->source.db)
        gen_name(&e, ev->source.db);
    else
        PUT(&e, "null");
    PUT(&e, ",\"schema\":");
    gen_name(&e, ev->source.schema);
    PUT(&e, ",\"table\":");
    gen_name(&e, ev->source.table);
    PUT(&e, ",\"lsn\":");
    gen_u64(&e, ev->source.lsn);
    PUT(&e, ",\"commit_lsn\":");
    gen_u64(&e, ev->source.commit_lsn);
    PUT(&e, ",\"txid\":");
    gen_i64(&e, ev->source.txid);
    PUT(&e, ",\"seq\":");
    gen_i64(&e, ev->source.seq);
    PUT(&e, ",\"ts_ms\":");
    gen_i64(&e, ev->source.ts_ms);
    if (ev->source.snapshot)
        PUT(&e, ",\"snapshot\":true},\"ts_ms\":");
    else
        PUT(&e, ",\"snapshot\":false},\"ts_ms\":");
    gen_i64(&e, ev->ts_ms);
    if (ev->types) {
        /* Made by cdc_types_encode once per relation: not checked again
         * per event (it is most of an event's names). */
        PUT(&e, ",\"types\":");
        put(&e, ev->types, ev->types_len);
    }
    PUT(&e, "}");
    rc = 0;
done:
    return enc_end(&e, rc);
}

int cdc_types_encode(const char *const *names, const char *const *types, size_t n,
                     cdc_buf *out, char *err, size_t errlen)
{
    enc e;
    int rc = -1;
    if (enc_begin(&e, out, "types", err, errlen) < 0)
        goto done;
    PUT(&e, "{");
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !types[i]) {
            set_err(err, errlen, "cannot encode types: column %zu has no %s", i,
                    names[i] ? "type" : "name");
            goto done;
        }
        if (i > 0)
            PUT(&e, ",");
        gen_name(&e, names[i]);
        PUT(&e, ":");
        gen_name(&e, types[i]);
    }
    PUT(&e, "}");
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
    yajl_val v = cdc_tree_build(arena, json, len);
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

/* types: absent or null reads as NULL; else an object of strings. */
static int get_types(yajl_val v, cdc_decoded_event *ev, char *err, size_t errlen)
{
    char tmp[64];
    if (!v || YAJL_IS_NULL(v))
        return 0;
    if (!YAJL_IS_OBJECT(v)) {
        set_err(err, errlen, "cannot decode event: types is %s, not an object", type_name(v));
        return -1;
    }
    for (size_t i = 0; i < v->u.object.len; i++)
        if (!YAJL_IS_STRING(v->u.object.values[i])) {
            set_err(err, errlen, "cannot decode event: types.%s is %s, not a string",
                    printable(v->u.object.keys[i], tmp, sizeof tmp),
                    type_name(v->u.object.values[i]));
            return -1;
        }
    ev->types = v;
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

enum { F_OP, F_BEFORE, F_AFTER, F_TOAST, F_SOURCE, F_TS, F_TYPES, F_N };
static const char *const event_fields[F_N] = {
    "op", "before", "after", "unchanged_toast", "source", "ts_ms", "types",
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

    if (get_int(f[F_TS], "ts_ms", false, false, NULL, &ev->ts_ms, err, errlen) < 0 ||
        get_types(f[F_TYPES], ev, err, errlen) < 0)
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
