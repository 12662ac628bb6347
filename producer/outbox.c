/* outbox.c: outbox rows and messages to records (see outbox.h). Message
 * content is checked with cdc_json_validate first and then walked as text,
 * so the payload goes out byte for byte as the application wrote it and
 * strings holding \u0000 survive (a yajl tree would cut them short).
 * Header texts are gathered in one buffer and pointed at only once it has
 * stopped growing. */
#include "outbox.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_buf.h"
#include "cdc_event.h"

const char *const outbox_role_names[OUTBOX_NROLES] = {
    "id", "aggregate_type", "aggregate_id", "type", "payload",
};

#define HDR_EVENT_ID "pgcdc-event-id"
#define HDR_EVENT_TYPE "pgcdc-event-type"
#define HDR_AGGREGATE_TYPE "pgcdc-aggregate-type"
#define HDR_DLQ_REASON "pgcdc-dlq-reason"
#define HDR_DLQ_SOURCE "pgcdc-dlq-source"

typedef struct hdr_pos {
    size_t name_off, name_len;
    size_t value_off, value_len;
    bool null;
} hdr_pos;

typedef struct table_name {
    char *nsp;
    char *rel;
} table_name;

struct outbox {
    char *topic_prefix;
    char *message_prefix;   /* NULL: messages are not routed */
    char *dlq_topic;
    char *columns[OUTBOX_NROLES];
    table_name *tables;
    size_t ntables;
    char **renamed;         /* aggregate types whose mapped topic was reported */
    size_t nrenamed;

    cdc_buf topic, key, agg, reason, source, store, scratch, scratch2;
    hdr_pos *pos;
    outbox_header *hdrs;
    size_t hcap, nh;
};

void outbox_free(outbox *ob)
{
    if (!ob)
        return;
    free(ob->topic_prefix);
    free(ob->message_prefix);
    free(ob->dlq_topic);
    for (int r = 0; r < OUTBOX_NROLES; r++)
        free(ob->columns[r]);
    for (size_t i = 0; i < ob->ntables; i++) {
        free(ob->tables[i].nsp);
        free(ob->tables[i].rel);
    }
    free(ob->tables);
    for (size_t i = 0; i < ob->nrenamed; i++)
        free(ob->renamed[i]);
    free(ob->renamed);
    cdc_buf_free(&ob->topic);
    cdc_buf_free(&ob->key);
    cdc_buf_free(&ob->agg);
    cdc_buf_free(&ob->reason);
    cdc_buf_free(&ob->source);
    cdc_buf_free(&ob->store);
    cdc_buf_free(&ob->scratch);
    cdc_buf_free(&ob->scratch2);
    free(ob->pos);
    free(ob->hdrs);
    free(ob);
}

static int role_of(const char *name, size_t len)
{
    for (int r = 0; r < OUTBOX_NROLES; r++)
        if (strlen(outbox_role_names[r]) == len && memcmp(outbox_role_names[r], name, len) == 0)
            return r;
    return -1;
}

int outbox_check_column_item(const char *item, char *err, size_t errlen)
{
    const char *eq = strchr(item, '=');
    if (!eq || eq[1] == '\0' || role_of(item, (size_t)(eq - item)) < 0) {
        snprintf(err, errlen, "is not ROLE=COLUMN with ROLE one of id, aggregate_type, "
                              "aggregate_id, type, payload");
        return -1;
    }
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

int outbox_new(const outbox_settings *s, outbox **out, char *err, size_t errlen)
{
    *out = NULL;
    outbox *ob = calloc(1, sizeof *ob);
    if (!ob)
        goto nomem;
    ob->topic_prefix = strdup(s->topic_prefix ? s->topic_prefix : "");
    ob->dlq_topic = strdup(s->dlq_topic ? s->dlq_topic : "pgcdc.dlq");
    ob->message_prefix = dup_or_null(s->message_prefix);
    if (!ob->topic_prefix || !ob->dlq_topic || (s->message_prefix && *s->message_prefix &&
                                                !ob->message_prefix))
        goto nomem;
    for (int r = 0; r < OUTBOX_NROLES; r++)
        if (!(ob->columns[r] = strdup(outbox_role_names[r])))
            goto nomem;
    for (size_t i = 0; i < s->ncolumns; i++) {
        const char *item = s->columns[i];
        if (outbox_check_column_item(item, err, errlen) < 0) {
            char why[160];
            snprintf(why, sizeof why, "%s", err);
            snprintf(err, errlen, "--outbox-columns: \"%s\" %s", item, why);
            goto fail;
        }
        const char *eq = strchr(item, '=');
        int r = role_of(item, (size_t)(eq - item));
        char *col = strdup(eq + 1);
        if (!col)
            goto nomem;
        free(ob->columns[r]);
        ob->columns[r] = col;
    }
    for (int a = 0; a < OUTBOX_NROLES; a++)
        for (int b = a + 1; b < OUTBOX_NROLES; b++)
            if (strcmp(ob->columns[a], ob->columns[b]) == 0) {
                snprintf(err, errlen, "--outbox-columns: column %s cannot be both %s and %s",
                         ob->columns[a], outbox_role_names[a], outbox_role_names[b]);
                goto fail;
            }
    if (s->ntables > 0 && !(ob->tables = calloc(s->ntables, sizeof *ob->tables)))
        goto nomem;
    for (size_t i = 0; i < s->ntables; i++) {
        const char *t = s->tables[i];
        const char *dot = strchr(t, '.');
        table_name *tn = &ob->tables[ob->ntables++];
        tn->nsp = dot ? strndup(t, (size_t)(dot - t)) : strdup("public");
        tn->rel = strdup(dot ? dot + 1 : t);
        if (!tn->nsp || !tn->rel)
            goto nomem;
        if (!*tn->nsp || !*tn->rel) {
            snprintf(err, errlen, "--outbox-table: \"%s\" is not SCHEMA.TABLE", t);
            goto fail;
        }
    }
    *out = ob;
    return 0;
nomem:
    snprintf(err, errlen, "cannot set up the outbox: out of memory");
fail:
    outbox_free(ob);
    return -1;
}

bool outbox_has_table(const outbox *ob, const char *nspname, const char *relname)
{
    for (size_t i = 0; i < ob->ntables; i++)
        if (strcmp(ob->tables[i].rel, relname) == 0 && strcmp(ob->tables[i].nsp, nspname) == 0)
            return true;
    return false;
}

bool outbox_has_message_prefix(const outbox *ob, const char *prefix)
{
    return ob->message_prefix && prefix && strcmp(ob->message_prefix, prefix) == 0;
}

/* ---- record assembly ------------------------------------------------- */

static void start(outbox *ob, outbox_record *rec)
{
    cdc_buf_reset(&ob->topic);
    cdc_buf_reset(&ob->key);
    cdc_buf_reset(&ob->agg);
    cdc_buf_reset(&ob->reason);
    cdc_buf_reset(&ob->source);
    cdc_buf_reset(&ob->store);
    ob->nh = 0;
    memset(rec, 0, sizeof *rec);
}

static int hdr_add(outbox *ob, const char *name, size_t name_len, const char *value,
                   size_t value_len, bool null)
{
    if (ob->nh == ob->hcap) {
        size_t cap = ob->hcap ? ob->hcap * 2 : 16;
        hdr_pos *p = realloc(ob->pos, cap * sizeof *p);
        if (!p)
            return -1;
        ob->pos = p;
        outbox_header *h = realloc(ob->hdrs, cap * sizeof *h);
        if (!h)
            return -1;
        ob->hdrs = h;
        ob->hcap = cap;
    }
    hdr_pos *p = &ob->pos[ob->nh];
    p->name_off = ob->store.len;
    p->name_len = name_len;
    if (cdc_buf_append(&ob->store, name, name_len) < 0)
        return -1;
    p->value_off = ob->store.len;
    p->value_len = null ? 0 : value_len;
    p->null = null;
    if (!null && cdc_buf_append(&ob->store, value, value_len) < 0)
        return -1;
    ob->nh++;
    return 0;
}

static int hdr_add_str(outbox *ob, const char *name, const char *value, size_t len)
{
    return hdr_add(ob, name, strlen(name), value, len, false);
}

static void finish_headers(outbox *ob, outbox_record *rec)
{
    for (size_t i = 0; i < ob->nh; i++) {
        const hdr_pos *p = &ob->pos[i];
        ob->hdrs[i] = (outbox_header){
            .name = ob->store.data + p->name_off,
            .name_len = p->name_len,
            .value = p->null ? NULL : ob->store.data + p->value_off,
            .value_len = p->value_len,
        };
    }
    rec->headers = ob->nh ? ob->hdrs : NULL;
    rec->nheaders = ob->nh;
}

/* Makes rec a dead letter: the original content, the reason and where the
 * event came from. key/key_len: the aggregate id when known, else NULL. */
static int dead(outbox *ob, outbox_record *rec, const char *content, size_t len,
                const char *key, size_t key_len, char *err, size_t errlen,
                const char *fmt, ...) __attribute__((format(printf, 9, 10)));

static int dead(outbox *ob, outbox_record *rec, const char *content, size_t len,
                const char *key, size_t key_len, char *err, size_t errlen,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = cdc_buf_vprintf(&ob->reason, fmt, ap);
    va_end(ap);
    ob->nh = 0;
    cdc_buf_reset(&ob->store);
    if (rc < 0 || hdr_add_str(ob, HDR_DLQ_REASON, ob->reason.data, ob->reason.len) < 0 ||
        hdr_add_str(ob, HDR_DLQ_SOURCE, ob->source.data, ob->source.len) < 0) {
        snprintf(err, errlen, "cannot dead-letter an outbox event: out of memory");
        return -1;
    }
    finish_headers(ob, rec);
    rec->dead = true;
    rec->reason = ob->reason.data;
    rec->topic = ob->dlq_topic;
    rec->topic_renamed = false;
    rec->aggregate_type = NULL;
    rec->key = key;
    rec->key_len = key ? key_len : 0;
    rec->value = content;
    rec->value_len = len;
    return 0;
}

/* The topic of ob->agg (NUL-terminated aggregate type); reports a mapped
 * name once per aggregate type. */
static int route_topic(outbox *ob, outbox_record *rec)
{
    bool changed = false;
    if (cdc_topic_name(ob->topic_prefix, "outbox", ob->agg.data, &ob->topic, &changed) < 0)
        return -1;
    rec->topic = ob->topic.data;
    rec->aggregate_type = ob->agg.data;
    if (changed) {
        for (size_t i = 0; i < ob->nrenamed; i++)
            if (strcmp(ob->renamed[i], ob->agg.data) == 0)
                return 0;
        char **r = realloc(ob->renamed, (ob->nrenamed + 1) * sizeof *r);
        if (!r)
            return -1;
        ob->renamed = r;
        if (!(r[ob->nrenamed] = strdup(ob->agg.data)))
            return -1;
        ob->nrenamed++;
        rec->topic_renamed = true;
    }
    return 0;
}

/* ---- rows ------------------------------------------------------------ */

int outbox_route_row(outbox *ob, const relcache_rel *rel, const pgoutput_tuple *tup,
                     outbox_record *rec, char *err, size_t errlen)
{
    start(ob, rec);
    if (cdc_buf_printf(&ob->source, "%s.%s", rel->nspname, rel->relname) < 0)
        goto nomem;
    size_t ncols = tup->ncols < rel->ncols ? tup->ncols : rel->ncols;
    int pos[OUTBOX_NROLES];
    for (int r = 0; r < OUTBOX_NROLES; r++) {
        pos[r] = -1;
        for (size_t i = 0; i < ncols; i++)
            if (strcmp(rel->cols[i].name, ob->columns[r]) == 0) {
                pos[r] = (int)i;
                break;
            }
    }
    const pgoutput_value *ai = pos[OUTBOX_AGGREGATE_ID] >= 0 ? &tup->cols[pos[OUTBOX_AGGREGATE_ID]]
                                                             : NULL;
    const char *key = ai && ai->kind == PGOUTPUT_COL_TEXT && ai->len > 0 ? ai->data : NULL;
    size_t key_len = key ? ai->len : 0;
    static const outbox_role required[] = {OUTBOX_AGGREGATE_TYPE, OUTBOX_AGGREGATE_ID,
                                           OUTBOX_PAYLOAD};
    for (size_t k = 0; k < sizeof required / sizeof required[0]; k++)
        if (pos[required[k]] < 0)
            return dead(ob, rec, NULL, 0, key, key_len, err, errlen,
                        "outbox table %s has no column %s for %s (see --outbox-columns)",
                        ob->source.data, ob->columns[required[k]],
                        outbox_role_names[required[k]]);

    const pgoutput_value *at = &tup->cols[pos[OUTBOX_AGGREGATE_TYPE]];
    if (at->kind != PGOUTPUT_COL_TEXT || at->len == 0)
        return dead(ob, rec, NULL, 0, key, key_len, err, errlen,
                    "aggregate_type (column %s) is %s", ob->columns[OUTBOX_AGGREGATE_TYPE],
                    at->kind == PGOUTPUT_COL_TEXT ? "empty" : "NULL");
    if (!key)
        return dead(ob, rec, NULL, 0, NULL, 0, err, errlen,
                    "aggregate_id (column %s) is %s", ob->columns[OUTBOX_AGGREGATE_ID],
                    ai->kind == PGOUTPUT_COL_TEXT ? "empty" : "NULL");
    const pgoutput_value *pl = &tup->cols[pos[OUTBOX_PAYLOAD]];
    if (pl->kind == PGOUTPUT_COL_TEXT) {
        char why[256];
        if (cdc_json_validate(pl->data, pl->len, why, sizeof why) < 0)
            return dead(ob, rec, NULL, 0, key, key_len, err, errlen,
                        "payload (column %s) is not JSON: %s", ob->columns[OUTBOX_PAYLOAD], why);
        rec->value = pl->data;
        rec->value_len = pl->len;
    } else if (pl->kind != PGOUTPUT_COL_NULL) {
        return dead(ob, rec, NULL, 0, key, key_len, err, errlen,
                    "payload (column %s) was not sent as text", ob->columns[OUTBOX_PAYLOAD]);
    }
    rec->key = key;
    rec->key_len = key_len;

    if (cdc_buf_append(&ob->agg, at->data, at->len) < 0 || route_topic(ob, rec) < 0)
        goto nomem;
    static const struct { outbox_role role; const char *header; } named[] = {
        {OUTBOX_ID, HDR_EVENT_ID}, {OUTBOX_TYPE, HDR_EVENT_TYPE}};
    for (size_t k = 0; k < 2; k++) {
        int p = pos[named[k].role];
        if (p >= 0 && tup->cols[p].kind == PGOUTPUT_COL_TEXT &&
            hdr_add_str(ob, named[k].header, tup->cols[p].data, tup->cols[p].len) < 0)
            goto nomem;
    }
    if (hdr_add_str(ob, HDR_AGGREGATE_TYPE, at->data, at->len) < 0)
        goto nomem;
    for (size_t i = 0; i < ncols; i++) {
        bool is_role = false;
        for (int r = 0; r < OUTBOX_NROLES; r++)
            is_role |= pos[r] == (int)i;
        if (is_role)
            continue;
        const pgoutput_value *v = &tup->cols[i];
        bool text = v->kind == PGOUTPUT_COL_TEXT;
        if (hdr_add(ob, rel->cols[i].name, strlen(rel->cols[i].name), text ? v->data : NULL,
                    text ? v->len : 0, !text) < 0)
            goto nomem;
    }
    finish_headers(ob, rec);
    return 0;
nomem:
    snprintf(err, errlen, "cannot route an outbox row of %s: out of memory",
             ob->source.data ? ob->source.data : "?");
    return -1;
}

/* ---- messages: walking validated JSON text --------------------------- */

#define BAD SIZE_MAX

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* s[i] is '"': the index after the closing quote. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    for (size_t j = i + 1; j < len; j++) {
        if (s[j] == '\\')
            j++;
        else if (s[j] == '"')
            return j + 1;
    }
    return BAD;
}

static bool ends_scalar(char c)
{
    return c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_value(const char *s, size_t len, size_t i)
{
    if (i >= len)
        return BAD;
    if (s[i] == '"')
        return skip_string(s, len, i);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        for (size_t j = i; j < len;) {
            char c = s[j];
            if (c == '"') {
                if ((j = skip_string(s, len, j)) == BAD)
                    return BAD;
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return j + 1;
            }
            j++;
        }
        return BAD;
    }
    size_t j = i;
    while (j < len && !ends_scalar(s[j]))
        j++;
    return j > i ? j : BAD;
}

typedef struct span {
    const char *p;
    size_t len;
} span;

/* The next member of an object whose '{' (or previous member) ends before
 * *at. Returns 1 with key (raw, between the quotes) and value, 0 at '}', -1
 * on text that is not an object (cannot happen after validation). */
static int next_member(const char *s, size_t len, size_t *at, span *key, span *value)
{
    size_t i = skip_ws(s, len, *at);
    if (i < len && s[i] == ',')
        i = skip_ws(s, len, i + 1);
    if (i >= len)
        return -1;
    if (s[i] == '}') {
        *at = i + 1;
        return 0;
    }
    if (s[i] != '"')
        return -1;
    size_t k = skip_string(s, len, i);
    if (k == BAD)
        return -1;
    *key = (span){s + i + 1, k - i - 2};
    i = skip_ws(s, len, k);
    if (i >= len || s[i] != ':')
        return -1;
    i = skip_ws(s, len, i + 1);
    size_t v = skip_value(s, len, i);
    if (v == BAD)
        return -1;
    *value = (span){s + i, v - i};
    *at = v;
    return 1;
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        v = v * 16 + (unsigned)(c >= '0' && c <= '9' ? c - '0'
                                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 0);
    }
    return v;
}

static int put_utf8(cdc_buf *out, unsigned cp)
{
    char b[4];
    size_t n;
    if (cp >= 0xD800 && cp <= 0xDFFF)
        cp = 0xFFFD; /* a lone surrogate; the validator lets none through */
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | cp >> 6);
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | cp >> 12);
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | cp >> 18);
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return cdc_buf_append(out, b, n);
}

/* The text of a JSON string's raw contents (between the quotes), appended
 * to out (which is reset first). */
static int unescape(const span *raw, cdc_buf *out)
{
    cdc_buf_reset(out);
    if (cdc_buf_reserve(out, raw->len + 1) < 0)
        return -1;
    const char *s = raw->p;
    size_t n = raw->len;
    for (size_t i = 0; i < n;) {
        size_t run = i;
        while (run < n && s[run] != '\\')
            run++;
        if (run > i && cdc_buf_append(out, s + i, run - i) < 0)
            return -1;
        i = run;
        if (i >= n)
            break;
        if (i + 1 >= n)
            return cdc_buf_putc(out, '\\');
        char e = s[i + 1];
        i += 2;
        char c;
        switch (e) {
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            if (i + 4 > n)
                return 0;
            unsigned cp = hex4(s + i);
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= n && s[i] == '\\' && s[i + 1] == 'u') {
                unsigned lo = hex4(s + i + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            }
            if (put_utf8(out, cp) < 0)
                return -1;
            continue;
        }
        default: c = e; break; /* " \ / */
        }
        if (cdc_buf_putc(out, c) < 0)
            return -1;
    }
    return 0;
}

static bool is_string(const span *v)
{
    return v->len >= 2 && v->p[0] == '"';
}

static bool is_null(const span *v)
{
    return v->len == 4 && memcmp(v->p, "null", 4) == 0;
}

static bool is_number(const span *v)
{
    return v->len > 0 && (v->p[0] == '-' || (v->p[0] >= '0' && v->p[0] <= '9'));
}

enum { F_HEADERS = OUTBOX_NROLES, F_COUNT };

int outbox_route_message(outbox *ob, const char *content, size_t len, outbox_record *rec,
                         char *err, size_t errlen)
{
    start(ob, rec);
    if (cdc_buf_printf(&ob->source, "message:%s", ob->message_prefix ? ob->message_prefix : "")
        < 0)
        goto nomem;
    char why[256];
    if (cdc_json_validate(content, len, why, sizeof why) < 0)
        return dead(ob, rec, content, len, NULL, 0, err, errlen,
                    "outbox message is not JSON: %s", why);
    size_t at = skip_ws(content, len, 0);
    if (at >= len || content[at] != '{')
        return dead(ob, rec, content, len, NULL, 0, err, errlen,
                    "outbox message is not a JSON object");
    at++;
    span f[F_COUNT] = {{NULL, 0}};
    bool seen[F_COUNT] = {false};
    span k, v;
    int r;
    while ((r = next_member(content, len, &at, &k, &v)) > 0) {
        if (unescape(&k, &ob->scratch) < 0)
            goto nomem;
        int which = role_of(ob->scratch.data, ob->scratch.len);
        if (which < 0 && ob->scratch.len == 7 && memcmp(ob->scratch.data, "headers", 7) == 0)
            which = F_HEADERS;
        if (which < 0)
            continue;
        if (seen[which])
            return dead(ob, rec, content, len, NULL, 0, err, errlen,
                        "outbox message has the field %s twice",
                        which == F_HEADERS ? "headers" : outbox_role_names[which]);
        seen[which] = true;
        f[which] = v;
    }
    if (r < 0)
        return dead(ob, rec, content, len, NULL, 0, err, errlen,
                    "outbox message cannot be read as an object");

    /* The aggregate id first, so that later dead letters carry it as key. */
    if (seen[OUTBOX_AGGREGATE_ID] && is_string(&f[OUTBOX_AGGREGATE_ID])) {
        span raw = {f[OUTBOX_AGGREGATE_ID].p + 1, f[OUTBOX_AGGREGATE_ID].len - 2};
        if (unescape(&raw, &ob->key) < 0)
            goto nomem;
    } else if (seen[OUTBOX_AGGREGATE_ID] && is_number(&f[OUTBOX_AGGREGATE_ID])) {
        if (cdc_buf_append(&ob->key, f[OUTBOX_AGGREGATE_ID].p, f[OUTBOX_AGGREGATE_ID].len) < 0)
            goto nomem;
    }
    const char *key = ob->key.len > 0 ? ob->key.data : NULL;
    size_t key_len = ob->key.len;
    if (!key)
        return dead(ob, rec, content, len, NULL, 0, err, errlen,
                    "outbox message has no aggregate_id (a non-empty string or a number)");

    if (!seen[OUTBOX_AGGREGATE_TYPE] || !is_string(&f[OUTBOX_AGGREGATE_TYPE]))
        return dead(ob, rec, content, len, key, key_len, err, errlen,
                    "outbox message has no aggregate_type (a non-empty string)");
    span raw = {f[OUTBOX_AGGREGATE_TYPE].p + 1, f[OUTBOX_AGGREGATE_TYPE].len - 2};
    if (unescape(&raw, &ob->agg) < 0)
        goto nomem;
    if (ob->agg.len == 0 || memchr(ob->agg.data, '\0', ob->agg.len))
        return dead(ob, rec, content, len, key, key_len, err, errlen,
                    "outbox message's aggregate_type is %s",
                    ob->agg.len == 0 ? "empty" : "holding a NUL character");

    if (!seen[OUTBOX_PAYLOAD])
        return dead(ob, rec, content, len, key, key_len, err, errlen,
                    "outbox message has no payload");
    static const outbox_role optional[] = {OUTBOX_ID, OUTBOX_TYPE};
    for (size_t n = 0; n < 2; n++) {
        outbox_role role = optional[n];
        if (seen[role] && !is_null(&f[role]) && !is_string(&f[role]))
            return dead(ob, rec, content, len, key, key_len, err, errlen,
                        "outbox message's %s is not a string", outbox_role_names[role]);
    }
    bool has_headers = seen[F_HEADERS] && !is_null(&f[F_HEADERS]);
    if (has_headers && f[F_HEADERS].p[0] != '{')
        return dead(ob, rec, content, len, key, key_len, err, errlen,
                    "outbox message's headers is not an object");

    static const struct { outbox_role role; const char *header; } named[] = {
        {OUTBOX_ID, HDR_EVENT_ID}, {OUTBOX_TYPE, HDR_EVENT_TYPE}};
    for (size_t n = 0; n < 2; n++) {
        const span *s = &f[named[n].role];
        if (!seen[named[n].role] || is_null(s))
            continue;
        span inner = {s->p + 1, s->len - 2};
        if (unescape(&inner, &ob->scratch) < 0 ||
            hdr_add_str(ob, named[n].header, ob->scratch.data, ob->scratch.len) < 0)
            goto nomem;
    }
    if (hdr_add_str(ob, HDR_AGGREGATE_TYPE, ob->agg.data, ob->agg.len) < 0)
        goto nomem;
    if (has_headers) {
        size_t hat = (size_t)(f[F_HEADERS].p - content) + 1;
        while ((r = next_member(content, len, &hat, &k, &v)) > 0) {
            if (unescape(&k, &ob->scratch) < 0)
                goto nomem;
            if (is_null(&v)) {
                if (hdr_add(ob, ob->scratch.data, ob->scratch.len, NULL, 0, true) < 0)
                    goto nomem;
                continue;
            }
            if (!is_string(&v))
                return dead(ob, rec, content, len, key, key_len, err, errlen,
                            "outbox message's header \"%s\" is not a string or null",
                            ob->scratch.data);
            span inner = {v.p + 1, v.len - 2};
            if (unescape(&inner, &ob->scratch2) < 0 ||
                hdr_add(ob, ob->scratch.data, ob->scratch.len, ob->scratch2.data,
                        ob->scratch2.len, false) < 0)
                goto nomem;
        }
    }
    if (route_topic(ob, rec) < 0)
        goto nomem;
    rec->key = key;
    rec->key_len = key_len;
    if (!is_null(&f[OUTBOX_PAYLOAD])) {
        rec->value = f[OUTBOX_PAYLOAD].p;
        rec->value_len = f[OUTBOX_PAYLOAD].len;
    }
    finish_headers(ob, rec);
    return 0;
nomem:
    snprintf(err, errlen, "cannot route an outbox message: out of memory");
    return -1;
}
