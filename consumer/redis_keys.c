/* redis_keys.c: per-table settings and key templates of the Redis sink
 * (see redis_keys.h for the escaping rule and why keys cannot collide). */
#include "redis_keys.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "row_json.h"

/* One ':'-separated segment of a template: fixed text, or pre{name}suf
 * (at most one placeholder: placeholders are separated by ':'). */
typedef struct key_seg {
    char *pre;
    char *name;     /* NULL: a fixed segment, `pre` */
    char *suf;
} key_seg;

struct redis_key_template {
    char *text;     /* as given */
    key_seg *segs;
    size_t nsegs;
};

typedef struct table_entry {
    char *table;    /* "schema.table" */
    redis_key_template *key;
    int has_format, has_mode, has_ttl;
    redis_format format;
    redis_mode mode;
    long long ttl;
} table_entry;

struct redis_tables {
    redis_table_opts def;
    table_entry *t;
    size_t n;
};

static void template_free(redis_key_template *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nsegs; i++) {
        free(t->segs[i].pre);
        free(t->segs[i].name);
        free(t->segs[i].suf);
    }
    free(t->segs);
    free(t->text);
    free(t);
}

/* Appends s[0..len) with '%' as %25 and ':' as %3A. */
static int put_escaped(cdc_buf *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        int rc = s[i] == '%' ? cdc_buf_puts(out, "%25")
                 : s[i] == ':' ? cdc_buf_puts(out, "%3A")
                               : cdc_buf_putc(out, s[i]);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Escapes out->data[at..len) in place. */
static int escape_tail(cdc_buf *out, size_t at)
{
    size_t n = 0;
    for (size_t i = at; i < out->len; i++)
        n += out->data[i] == '%' || out->data[i] == ':';
    if (n == 0)
        return 0;
    if (cdc_buf_reserve(out, 2 * n) < 0)
        return -1;
    char *d = out->data;
    size_t src = out->len, dst = out->len + 2 * n;
    out->len = dst;
    while (src > at) {
        char c = d[--src];
        if (c == '%' || c == ':') {
            d[--dst] = c == '%' ? '5' : 'A';
            d[--dst] = c == '%' ? '2' : '3';
            d[--dst] = '%';
        } else {
            d[--dst] = c;
        }
    }
    return 0;
}

static char *take(cdc_buf *b)
{
    char *s = cdc_buf_steal(b);
    return s ? s : strdup("");
}

/* Parses `text` for schema.table (substituting {schema} and {table}). */
static int template_parse(const char *text, const char *schema, const char *table,
                          redis_key_template **out, char *err, size_t errlen)
{
    redis_key_template *t = calloc(1, sizeof *t);
    cdc_buf cur = CDC_BUF_INIT;
    char *name = NULL, *pre = NULL;
    size_t cap = 0;
    int ncols = 0;
    if (!t || !(t->text = strdup(text)))
        goto nomem;
    for (const char *p = text;; p++) {
        if (*p == ':' || *p == '\0') {
            if (t->nsegs == cap) {
                cap = cap ? cap * 2 : 4;
                key_seg *s = realloc(t->segs, cap * sizeof *s);
                if (!s)
                    goto nomem;
                t->segs = s;
            }
            key_seg *s = &t->segs[t->nsegs++];
            char *rest = take(&cur);
            s->pre = name ? pre : rest;
            s->name = name;
            s->suf = name ? rest : NULL;
            name = pre = NULL;
            if (!s->pre || (s->name && !s->suf))
                goto nomem;
            if (*p == '\0')
                break;
            continue;
        }
        if (*p == '}') {
            snprintf(err, errlen, "has a } without {");
            goto fail;
        }
        if (*p != '{') {
            if (cdc_buf_putc(&cur, *p) < 0)
                goto nomem;
            continue;
        }
        const char *end = strchr(p + 1, '}');
        size_t len = end ? (size_t)(end - p - 1) : 0;
        if (!end || len == 0 || memchr(p + 1, '{', len) || memchr(p + 1, ':', len)) {
            snprintf(err, errlen, "has a { not closed by } around a name");
            goto fail;
        }
        if (len == 6 && memcmp(p + 1, "schema", 6) == 0) {
            if (put_escaped(&cur, schema, strlen(schema)) < 0)
                goto nomem;
        } else if (len == 5 && memcmp(p + 1, "table", 5) == 0) {
            if (put_escaped(&cur, table, strlen(table)) < 0)
                goto nomem;
        } else if (name) {
            snprintf(err, errlen, "has {%s} and {%.*s} with no ':' between them (values could run "
                     "into each other)", name, (int)len, p + 1);
            goto fail;
        } else {
            if (!(name = strndup(p + 1, len)) || !(pre = take(&cur)))
                goto nomem;
            ncols++;
        }
        p = end;
    }
    if (ncols == 0) {
        snprintf(err, errlen, "names no key column (every row would get the same key)");
        goto fail;
    }
    cdc_buf_free(&cur);
    *out = t;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    free(name);
    free(pre);
    cdc_buf_free(&cur);
    template_free(t);
    return -1;
}

/* "SCHEMA.TABLE=VALUE" split at the first '=' (last, when `last`): the
 * table's text and the value; *table NULL when the item has no '='. */
static int split_item(const char *item, bool last, char **table, const char **value)
{
    const char *eq = last ? strrchr(item, '=') : strchr(item, '=');
    *table = NULL;
    *value = item;
    if (!eq)
        return 0;
    const char *dot = memchr(item, '.', (size_t)(eq - item));
    if (!dot || dot == item || dot + 1 == eq)
        return -1;
    *table = strndup(item, (size_t)(eq - item));
    *value = eq + 1;
    return *table ? 0 : -2;
}

int redis_key_item_check(const char *item, char *err, size_t errlen)
{
    char *table;
    const char *value;
    int rc = split_item(item, false, &table, &value);
    if (rc < 0 || !table) {
        free(table);
        snprintf(err, errlen, "is not SCHEMA.TABLE=TEMPLATE");
        return -1;
    }
    redis_key_template *t = NULL;
    char *dot = strchr(table, '.');
    *dot = '\0';
    rc = template_parse(value, table, dot + 1, &t, err, errlen);
    template_free(t);
    free(table);
    return rc;
}

static bool starts(const char *s, size_t len, const char *p)
{
    size_t n = strlen(p);
    return n <= len && memcmp(s, p, n) == 0;
}

static bool ends(const char *s, size_t len, const char *p)
{
    size_t n = strlen(p);
    return n <= len && memcmp(s + len - n, p, n) == 0;
}

/* Can segment `a` be the text s[0..len) for some value? */
static bool seg_fits(const key_seg *a, const char *s, size_t len)
{
    if (!a->name)
        return strlen(a->pre) == len && memcmp(a->pre, s, len) == 0;
    return strlen(a->pre) + strlen(a->suf) <= len && starts(s, len, a->pre) &&
           ends(s, len, a->suf);
}

/* Can segments a and b give the same text for some values? */
static bool segs_can_meet(const key_seg *a, const key_seg *b)
{
    if (!a->name)
        return seg_fits(b, a->pre, strlen(a->pre));
    if (!b->name)
        return seg_fits(a, b->pre, strlen(b->pre));
    /* pre{x}suf and pre'{y}suf': one prefix starts the other, one suffix ends the other */
    return (starts(a->pre, strlen(a->pre), b->pre) || starts(b->pre, strlen(b->pre), a->pre)) &&
           (ends(a->suf, strlen(a->suf), b->suf) || ends(b->suf, strlen(b->suf), a->suf));
}

static bool templates_can_meet(const redis_key_template *a, const redis_key_template *b)
{
    if (a->nsegs != b->nsegs)
        return false;
    for (size_t i = 0; i < a->nsegs; i++)
        if (!segs_can_meet(&a->segs[i], &b->segs[i]))
            return false;
    return true;
}

/* Can the template make a key starting "<prefix>:"? */
static bool under_prefix(const redis_key_template *t, const char *prefix)
{
    const char *p = prefix;
    for (size_t i = 0;; i++) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        if (i + 1 >= t->nsegs)
            return false; /* the key ends before the prefix's ':' */
        if (!seg_fits(&t->segs[i], p, len))
            return false;
        if (!colon)
            return true;
        p = colon + 1;
    }
}

static table_entry *entry_for(redis_tables *ts, char *table)
{
    for (size_t i = 0; i < ts->n; i++)
        if (strcmp(ts->t[i].table, table) == 0) {
            free(table);
            return &ts->t[i];
        }
    table_entry *t = realloc(ts->t, (ts->n + 1) * sizeof *t);
    if (!t) {
        free(table);
        return NULL;
    }
    ts->t = t;
    memset(&t[ts->n], 0, sizeof t[ts->n]);
    t[ts->n].table = table;
    return &t[ts->n++];
}

static int parse_format(const char *v, redis_format *f)
{
    if (strcmp(v, "hash") == 0)
        *f = REDIS_FORMAT_HASH;
    else if (strcmp(v, "json") == 0)
        *f = REDIS_FORMAT_JSON;
    else if (strcmp(v, "string") == 0)
        *f = REDIS_FORMAT_STRING;
    else
        return -1;
    return 0;
}

static int parse_mode(const char *v, redis_mode *m)
{
    if (strcmp(v, "write") == 0)
        *m = REDIS_MODE_WRITE;
    else if (strcmp(v, "invalidate") == 0)
        *m = REDIS_MODE_INVALIDATE;
    else
        return -1;
    return 0;
}

static int parse_ttl(const char *v, long long *ttl)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || *end || end == v || n < 0)
        return -1;
    *ttl = n;
    return 0;
}

enum { OPT_KEY, OPT_FORMAT, OPT_MODE, OPT_TTL };

static int add_item(redis_tables *ts, int opt, const char *item, char *err, size_t errlen)
{
    static const char *const names[] = {"--redis-key", "--redis-format", "--redis-mode",
                                        "--redis-ttl"};
    static const char *const forms[] = {"SCHEMA.TABLE=TEMPLATE", "hash|json|string or "
                                        "SCHEMA.TABLE=hash|json|string", "write|invalidate or "
                                        "SCHEMA.TABLE=write|invalidate", "SECONDS or "
                                        "SCHEMA.TABLE=SECONDS"};
    char *table;
    const char *v;
    int rc = split_item(item, opt == OPT_TTL, &table, &v);
    if (rc == -2)
        goto nomem;
    if (rc < 0 || (opt == OPT_KEY && !table))
        goto bad;
    table_entry *e = NULL;
    if (table && !(e = entry_for(ts, table)))
        goto nomem;
    switch (opt) {
    case OPT_KEY: {
        /* Both hold (a key item always names SCHEMA.TABLE); said again for the
         * compiler's null-dereference check at -O3. */
        char *dot = e ? strchr(e->table, '.') : NULL;
        if (!dot)
            goto bad;
        redis_key_template *t = NULL;
        char perr[256];
        *dot = '\0';
        rc = template_parse(v, e->table, dot + 1, &t, perr, sizeof perr);
        *dot = '.';
        if (rc < 0) {
            snprintf(err, errlen, "--redis-key: \"%s\" %s", item, perr);
            return -1;
        }
        template_free(e->key);
        e->key = t;
        return 0;
    }
    case OPT_FORMAT:
        if (parse_format(v, e ? &e->format : &ts->def.format) < 0)
            goto bad;
        if (e)
            e->has_format = 1;
        return 0;
    case OPT_MODE:
        if (parse_mode(v, e ? &e->mode : &ts->def.mode) < 0)
            goto bad;
        if (e)
            e->has_mode = 1;
        return 0;
    default:
        if (parse_ttl(v, e ? &e->ttl : &ts->def.ttl) < 0)
            goto bad;
        if (e)
            e->has_ttl = 1;
        return 0;
    }
bad:
    snprintf(err, errlen, "%s: \"%s\" is not %s", names[opt], item, forms[opt]);
    return -1;
nomem:
    snprintf(err, errlen, "%s: out of memory", names[opt]);
    return -1;
}

int redis_tables_new(const char *prefix,
                     const char *const *keys, size_t nkeys,
                     const char *const *formats, size_t nformats,
                     const char *const *modes, size_t nmodes,
                     const char *const *ttls, size_t nttls,
                     redis_tables **out, char *err, size_t errlen)
{
    redis_tables *ts = calloc(1, sizeof *ts);
    if (!ts) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *const *lists[] = {keys, formats, modes, ttls};
    size_t counts[] = {nkeys, nformats, nmodes, nttls};
    for (int opt = OPT_KEY; opt <= OPT_TTL; opt++)
        for (size_t i = 0; i < counts[opt]; i++)
            if (add_item(ts, opt, lists[opt][i], err, errlen) < 0)
                goto fail;
    for (size_t i = 0; i < ts->n; i++) {
        const table_entry *a = &ts->t[i];
        if (!a->key)
            continue;
        if (under_prefix(a->key, prefix)) {
            snprintf(err, errlen, "--redis-key: %s's \"%s\" can make keys under \"%s:\", where "
                     "default keys and markers live; use another first segment or change "
                     "--redis-prefix", a->table, a->key->text, prefix);
            goto fail;
        }
        for (size_t j = i + 1; j < ts->n; j++) {
            const table_entry *b = &ts->t[j];
            if (b->key && templates_can_meet(a->key, b->key)) {
                snprintf(err, errlen, "--redis-key: %s's \"%s\" and %s's \"%s\" can make the same "
                         "key; give one of them different fixed text (e.g. another first "
                         "segment)", a->table, a->key->text, b->table, b->key->text);
                goto fail;
            }
        }
    }
    *out = ts;
    return 0;
fail:
    redis_tables_free(ts);
    return -1;
}

void redis_tables_free(redis_tables *ts)
{
    if (!ts)
        return;
    for (size_t i = 0; i < ts->n; i++) {
        free(ts->t[i].table);
        template_free(ts->t[i].key);
    }
    free(ts->t);
    free(ts);
}

void redis_tables_get(const redis_tables *ts, const char *schema, const char *table,
                      redis_table_opts *out)
{
    *out = ts->def;
    size_t ls = strlen(schema);
    for (size_t i = 0; i < ts->n; i++) {
        const table_entry *e = &ts->t[i];
        if (strncmp(e->table, schema, ls) != 0 || e->table[ls] != '.' ||
            strcmp(e->table + ls + 1, table) != 0)
            continue;
        out->key = e->key;
        if (e->has_format)
            out->format = e->format;
        if (e->has_mode)
            out->mode = e->mode;
        if (e->has_ttl)
            out->ttl = e->ttl;
        return;
    }
}

int redis_key_render(const redis_key_template *t, yajl_val key, cdc_buf *out,
                     char *err, size_t errlen)
{
    size_t mark = out->len;
    if (!key || !YAJL_IS_OBJECT(key) || key->u.object.len == 0) {
        snprintf(err, errlen, "cannot make a key with \"%s\": the Kafka key is not an object of "
                 "key columns", t->text);
        return -1;
    }
    /* every key column named: otherwise two rows would share a key */
    for (size_t k = 0; k < key->u.object.len; k++) {
        size_t i = 0;
        while (i < t->nsegs && !(t->segs[i].name && strcmp(t->segs[i].name, key->u.object.keys[k]) == 0))
            i++;
        if (i == t->nsegs) {
            snprintf(err, errlen, "cannot make a key with \"%s\": it leaves out key column \"%s\" "
                     "(rows would share keys)", t->text, key->u.object.keys[k]);
            return -1;
        }
    }
    for (size_t i = 0; i < t->nsegs; i++) {
        const key_seg *s = &t->segs[i];
        if ((i > 0 && cdc_buf_putc(out, ':') < 0) || cdc_buf_puts(out, s->pre) < 0)
            goto nomem;
        if (!s->name)
            continue;
        yajl_val v = row_json_member(key, s->name);
        if (!v) {
            snprintf(err, errlen, "cannot make a key with \"%s\": {%s} is not a key column of "
                     "the row", t->text, s->name);
            cdc_buf_truncate(out, mark);
            return -1;
        }
        size_t at = out->len;
        int rc = YAJL_IS_STRING(v) ? cdc_buf_puts(out, v->u.string) : row_json_put_value(out, v);
        if (rc < 0 || escape_tail(out, at) < 0 || cdc_buf_puts(out, s->suf) < 0)
            goto nomem;
    }
    return 0;
nomem:
    snprintf(err, errlen, "cannot make a key with \"%s\": out of memory", t->text);
    cdc_buf_truncate(out, mark);
    return -1;
}

int redis_glob_escape(cdc_buf *out, const char *s)
{
    for (; *s; s++)
        if ((strchr("*?[]\\", *s) && cdc_buf_putc(out, '\\') < 0) || cdc_buf_putc(out, *s) < 0)
            return -1;
    return 0;
}

int redis_key_scan_pattern(const redis_key_template *t, cdc_buf *out)
{
    for (size_t i = 0; i < t->nsegs; i++) {
        const key_seg *s = &t->segs[i];
        if ((i > 0 && cdc_buf_putc(out, ':') < 0) || redis_glob_escape(out, s->pre) < 0)
            return -1;
        if (s->name && (cdc_buf_putc(out, '*') < 0 || redis_glob_escape(out, s->suf) < 0))
            return -1;
    }
    return 0;
}

int redis_key_matches(const redis_key_template *t, const char *key, size_t len)
{
    const char *p = key, *end = key + len;
    for (size_t i = 0; i < t->nsegs; i++) {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if ((colon != NULL) != (i + 1 < t->nsegs))
            return 0;
        const char *segend = colon ? colon : end;
        if (!seg_fits(&t->segs[i], p, (size_t)(segend - p)))
            return 0;
        p = segend + 1;
    }
    return 1;
}

const char *redis_key_text(const redis_key_template *t)
{
    return t->text;
}
