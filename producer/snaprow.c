/* snaprow.c: snapshot rows to events, chunk SQL, signal requests and the
 * chunk key set (see snaprow.h). Row values go through pgvalue with the
 * column's resolved type, as change.c does for streamed tuples, so the two
 * paths cannot drift apart in how a value is written. */
#include "snaprow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

snap_table *snap_table_new(uint32_t oid, const char *schema, const char *name)
{
    snap_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->oid = oid;
    t->reltuples = -1;
    t->schema = strdup(schema);
    t->name = strdup(name);
    if (!t->schema || !t->name) {
        snap_table_free(t);
        return NULL;
    }
    return t;
}

int snap_table_add_column(snap_table *t, const char *name, uint32_t type_oid, bool is_key)
{
    snap_column *c = realloc(t->cols, (t->ncols + 1) * sizeof *c);
    if (!c)
        return -1;
    t->cols = c;
    if (is_key) {
        size_t *k = realloc(t->key, (t->nkey + 1) * sizeof *k);
        if (!k)
            return -1;
        t->key = k;
    }
    snap_column *col = &t->cols[t->ncols];
    memset(col, 0, sizeof *col);
    if (!(col->name = strdup(name)))
        return -1;
    col->type_oid = type_oid;
    col->type = (pgvalue_type){false, PGVALUE_TEXT, ',', 0};
    if (is_key)
        t->key[t->nkey++] = t->ncols;
    t->ncols++;
    return 0;
}

int snap_table_set_rowfilter(snap_table *t, const char *sql)
{
    char *copy = sql ? strdup(sql) : NULL;
    if (sql && !copy)
        return -1;
    free(t->rowfilter);
    t->rowfilter = copy;
    return 0;
}

int snap_table_apply_policy(snap_table *t, const colpolicy *policy, char *err, size_t errlen)
{
    t->policy = policy;
    if (!colpolicy_has_table(policy, t->schema, t->name))
        return 0;
    size_t kept = 0, nkey = 0;
    for (size_t i = 0; i < t->ncols; i++) {
        /* t->key is in column order: the next key column is key[nkey]. */
        bool is_key = nkey < t->nkey && t->key[nkey] == i;
        colpolicy_action a;
        if (colpolicy_column(policy, t->schema, t->name, t->cols[i].name, is_key, &a, err,
                             errlen) < 0)
            return -1;
        if (a == COLPOLICY_DROP) {
            free(t->cols[i].name);
            continue;
        }
        if (is_key)
            t->key[nkey++] = kept;
        t->cols[kept] = t->cols[i];
        t->cols[kept].hash = a == COLPOLICY_HASH;
        kept++;
    }
    t->ncols = kept;
    t->nkey = nkey;
    if (!t->types)
        return 0;
    /* The same "types" as the table's streamed changes (change.c). */
    const char **names = calloc(kept + 1, sizeof *names);
    bool *hashed = calloc(kept + 1, sizeof *hashed);
    int rc = -1;
    for (size_t i = 0; names && hashed && i < kept; i++) {
        names[i] = t->cols[i].name;
        hashed[i] = t->cols[i].hash;
    }
    if (names && hashed)
        rc = colpolicy_types(&t->types, &t->types_len, names, hashed, kept, err, errlen);
    else
        snprintf(err, errlen, "cannot describe the types of %s.%s: out of memory", t->schema,
                 t->name);
    free(names);
    free(hashed);
    return rc;
}

void snap_table_free(snap_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ncols; i++)
        free(t->cols[i].name);
    free(t->cols);
    free(t->key);
    free(t->schema);
    free(t->name);
    free(t->rowfilter);
    free(t->types);
    free(t);
}

void snap_row_builder_init(snap_row_builder *b)
{
    memset(b, 0, sizeof *b);
}

void snap_row_builder_free(snap_row_builder *b)
{
    pgvalue_row_free(b);
}

int snap_row_encode(snap_row_builder *b, const snap_table *t, const char *const *vals,
                    const size_t *lens, const cdc_source *src, int64_t ts_ms,
                    cdc_buf *value, cdc_buf *key, char *err, size_t errlen)
{
    size_t n = t->ncols;
    if (pgvalue_row_reserve(b, n + t->nkey + 1) < 0)
        goto oom;
    cdc_buf_reset(&b->values);
    for (size_t i = 0; i < n; i++) {
        b->cols[i].name = t->cols[i].name;
        b->offs[i] = b->values.len;
        if (!vals[i]) {
            if (cdc_buf_append(&b->values, "null", 4) < 0)
                goto oom;
            continue;
        }
        if (t->cols[i].hash) {
            if (colpolicy_append_hash(t->policy, vals[i], lens[i], &b->values) < 0)
                goto oom;
            continue;
        }
        char verr[160];
        if (pgvalue_append_json(&b->values, &t->cols[i].type, vals[i], lens[i], &b->scratch,
                                verr, sizeof verr) < 0) {
            snprintf(err, errlen, "cannot convert column \"%s\" (type %u) of %s.%s: %s",
                     t->cols[i].name, t->cols[i].type_oid, t->schema, t->name, verr);
            return -1;
        }
    }
    /* The values buffer is complete: its addresses are stable from here. */
    pgvalue_row_seal(b, n);
    for (size_t k = 0; k < t->nkey; k++) {
        size_t i = t->key[k];
        if (!vals[i]) {
            snprintf(err, errlen, "cannot build the key of a row of %s.%s: key column \"%s\" "
                     "is NULL", t->schema, t->name, t->cols[i].name);
            return -1;
        }
        b->cols[n + k] = b->cols[i];
    }
    cdc_row after = {b->cols, n};
    cdc_row keyrow = {b->cols + n, t->nkey};
    cdc_buf_reset(key);
    if (t->nkey > 0 && cdc_key_encode(&keyrow, key, err, errlen) < 0)
        return -1;
    if (!value)
        return 0;
    cdc_event ev = {
        .op = 'r',
        .before = NULL,
        .after = &after,
        .source = *src,
        .ts_ms = ts_ms,
    };
    ev.source.schema = t->schema;
    ev.source.table = t->name;
    ev.source.snapshot = true;
    ev.types = t->types;
    ev.types_len = t->types_len;
    cdc_buf_reset(value);
    return cdc_event_encode(&ev, value, err, errlen);
oom:
    snprintf(err, errlen, "out of memory converting a row of %s.%s", t->schema, t->name);
    return -1;
}

void snap_rowvals_free(snap_rowvals *rv)
{
    if (!rv)
        return;
    free(rv->vals);
    free(rv->lens);
    cdc_buf_free(&rv->last);
    free(rv->last_off);
    memset(rv, 0, sizeof *rv);
}

int snap_rowvals_reserve(snap_rowvals *rv, size_t n)
{
    if (n <= rv->cap)
        return 0;
    const char **v = realloc(rv->vals, n * sizeof *v);
    if (!v)
        return -1;
    rv->vals = v;
    size_t *l = realloc(rv->lens, n * sizeof *l);
    if (!l)
        return -1;
    rv->lens = l;
    size_t *o = realloc(rv->last_off, n * sizeof *o);
    if (!o)
        return -1;
    rv->last_off = o;
    rv->cap = n;
    return 0;
}

int snap_rowvals_keep_last(snap_rowvals *rv, const snap_table *t)
{
    cdc_buf_reset(&rv->last);
    for (size_t k = 0; k < t->nkey; k++) {
        size_t col = t->key[k];
        rv->last_off[k] = rv->last.len;
        if ((rv->vals[col] && cdc_buf_append(&rv->last, rv->vals[col], rv->lens[col]) < 0) ||
            cdc_buf_putc(&rv->last, '\0') < 0)
            return -1;
    }
    return 0;
}

const char *snap_rowvals_last(const snap_rowvals *rv, size_t k)
{
    return rv->last.data + rv->last_off[k];
}

int snap_sql_ident(cdc_buf *out, const char *name)
{
    int rc = cdc_buf_putc(out, '"');
    for (const char *p = name; *p && rc == 0; p++)
        rc = *p == '"' ? cdc_buf_puts(out, "\"\"") : cdc_buf_putc(out, *p);
    return rc | cdc_buf_putc(out, '"');
}

static int put_key_list(cdc_buf *out, const snap_table *t, bool parens)
{
    int rc = parens ? cdc_buf_putc(out, '(') : 0;
    for (size_t k = 0; k < t->nkey && rc == 0; k++) {
        if (k)
            rc |= cdc_buf_puts(out, ", ");
        rc |= snap_sql_ident(out, t->cols[t->key[k]].name);
    }
    return rc | (parens ? cdc_buf_putc(out, ')') : 0);
}

static int put_params(cdc_buf *out, size_t first, size_t n)
{
    int rc = cdc_buf_putc(out, '(');
    for (size_t i = 0; i < n && rc == 0; i++)
        rc |= cdc_buf_printf(out, "%s$%zu", i ? ", " : "", first + i);
    return rc | cdc_buf_putc(out, ')');
}

static int put_from(cdc_buf *out, const snap_table *t, bool only)
{
    int rc = cdc_buf_puts(out, only ? " FROM ONLY " : " FROM ");
    rc |= snap_sql_ident(out, t->schema);
    rc |= cdc_buf_putc(out, '.');
    return rc | snap_sql_ident(out, t->name);
}

int snap_sql_chunk(const snap_table *t, snap_lower lower, bool has_upper, long limit,
                   cdc_buf *out)
{
    int rc = cdc_buf_puts(out, "SELECT ");
    for (size_t i = 0; i < t->ncols && rc == 0; i++) {
        if (i)
            rc |= cdc_buf_puts(out, ", ");
        rc |= snap_sql_ident(out, t->cols[i].name);
    }
    if (t->ncols == 0)
        rc |= cdc_buf_puts(out, "NULL"); /* a table of no published column still has rows */
    rc |= put_from(out, t, !t->with_children);
    const char *sep = " WHERE ";
    if (t->rowfilter) {
        rc |= cdc_buf_printf(out, "%s(%s)", sep, t->rowfilter);
        sep = " AND ";
    }
    if (t->nkey > 0) {
        size_t next = 1;
        if (lower != SNAP_FROM_START) {
            rc |= cdc_buf_puts(out, sep);
            rc |= put_key_list(out, t, true);
            rc |= cdc_buf_puts(out, lower == SNAP_FROM_INCL ? " >= " : " > ");
            rc |= put_params(out, next, t->nkey);
            next += t->nkey;
            sep = " AND ";
        }
        if (has_upper) {
            rc |= cdc_buf_puts(out, sep);
            rc |= put_key_list(out, t, true);
            rc |= cdc_buf_puts(out, " < ");
            rc |= put_params(out, next, t->nkey);
        }
        rc |= cdc_buf_puts(out, " ORDER BY ");
        rc |= put_key_list(out, t, false);
        if (limit > 0)
            rc |= cdc_buf_printf(out, " LIMIT %ld", limit);
    }
    return rc ? -1 : 0;
}

int snap_sql_sample(const snap_table *t, double percent, cdc_buf *out)
{
    if (t->nkey == 0)
        return -1;
    if (percent > 100)
        percent = 100;
    if (!(percent > 0))
        percent = 0.0001;
    int rc = cdc_buf_puts(out, "SELECT DISTINCT ");
    rc |= put_key_list(out, t, false);
    rc |= put_from(out, t, !t->with_children);
    rc |= cdc_buf_printf(out, " TABLESAMPLE SYSTEM (%.6f) ORDER BY ", percent);
    rc |= put_key_list(out, t, false);
    return rc ? -1 : 0;
}

int snap_parse_table_name(const char *s, char **schema, char **table)
{
    *schema = *table = NULL;
    const char *dot = strchr(s, '.');
    const char *name = dot ? dot + 1 : s;
    if (*name == '\0' || (dot && dot == s))
        return -1;
    if (dot && !(*schema = strndup(s, (size_t)(dot - s))))
        return -1;
    if (!(*table = strdup(name))) {
        free(*schema);
        *schema = NULL;
        return -1;
    }
    return 0;
}

void snap_request_free(snap_request *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->ntables; i++)
        free(r->tables[i]);
    free(r->tables);
    r->tables = NULL;
    r->ntables = 0;
}

static const cdc_column *find_column(const cdc_row *row, const char *name)
{
    for (size_t i = 0; i < row->ncolumns; i++)
        if (strcmp(row->columns[i].name, name) == 0)
            return &row->columns[i];
    return NULL;
}

/* A JSON text (not NUL-terminated) as a tree; strings holding JSON are
 * unwrapped once, so a text "data" column works like json. */
static yajl_val parse_json(const char *json, size_t len, bool unwrap, char *err, size_t errlen)
{
    if (cdc_json_validate(json, len, err, errlen) < 0)
        return NULL;
    /* Not strndup: `json` need not be NUL-terminated, and strndup may look
     * for the NUL past len (ASan's strict_string_checks reports exactly
     * that; fuzz_snap_signal found it). */
    char *copy = malloc(len + 1);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(copy, json, len);
    copy[len] = '\0';
    char ymsg[128];
    yajl_val v = yajl_tree_parse(copy, ymsg, sizeof ymsg);
    free(copy);
    if (!v) {
        snprintf(err, errlen, "%s", ymsg);
        return NULL;
    }
    if (unwrap && YAJL_IS_STRING(v)) {
        const char *inner = YAJL_GET_STRING(v);
        yajl_val w = inner ? parse_json(inner, strlen(inner), false, err, errlen) : NULL;
        if (!inner)
            snprintf(err, errlen, "a string yajl could not read");
        yajl_tree_free(v);
        return w;
    }
    return v;
}

int snap_signal_parse(const cdc_row *after, snap_request *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const cdc_column *type = find_column(after, "type");
    if (!type || !type->json) {
        snprintf(err, errlen, "signal has no \"type\" column");
        return -1;
    }
    yajl_val tv = parse_json(type->json, type->json_len, false, err, errlen);
    if (!tv)
        return -1;
    int rc = 0;
    yajl_val dv = NULL;
    if (!YAJL_IS_STRING(tv)) {
        snprintf(err, errlen, "signal \"type\" is not a string");
        rc = -1;
        goto done;
    }
    const char *kind = YAJL_GET_STRING(tv);
    if (!kind || (strcmp(kind, "snapshot") != 0 && strcmp(kind, "execute-snapshot") != 0))
        goto done; /* some other signal: not ours to judge */
    const cdc_column *data = find_column(after, "data");
    if (!data || !data->json || (data->json_len == 4 && memcmp(data->json, "null", 4) == 0)) {
        snprintf(err, errlen, "snapshot signal has no \"data\"");
        rc = -1;
        goto done;
    }
    char perr[160];
    if (!(dv = parse_json(data->json, data->json_len, true, perr, sizeof perr))) {
        snprintf(err, errlen, "snapshot signal \"data\" is not JSON: %s", perr);
        rc = -1;
        goto done;
    }
    const char *path1[] = {"tables", NULL};
    const char *path2[] = {"data-collections", NULL};
    yajl_val list = YAJL_IS_OBJECT(dv) ? yajl_tree_get(dv, path1, yajl_t_array) : NULL;
    if (!list && YAJL_IS_OBJECT(dv))
        list = yajl_tree_get(dv, path2, yajl_t_array);
    if (!list || list->u.array.len == 0) {
        snprintf(err, errlen, "snapshot signal \"data\" must be an object with a non-empty "
                 "\"tables\" array");
        rc = -1;
        goto done;
    }
    size_t n = list->u.array.len;
    if (!(out->tables = calloc(n, sizeof *out->tables))) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        yajl_val item = list->u.array.values[i];
        const char *name = YAJL_IS_STRING(item) ? YAJL_GET_STRING(item) : NULL;
        if (!name || name[0] == '\0') {
            snprintf(err, errlen, "snapshot signal table %zu is not a non-empty string", i);
            rc = -1;
            goto done;
        }
        if (!(out->tables[i] = strdup(name))) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
            goto done;
        }
        out->ntables++;
    }
    rc = 1;
done:
    yajl_tree_free(tv);
    yajl_tree_free(dv);
    if (rc != 1)
        snap_request_free(out);
    return rc;
}

/* ---- the chunk key set ---------------------------------------------- */

typedef struct snap_keyslot {
    uint64_t hash;
    size_t off;
    size_t len;
    size_t row;
    unsigned char state;    /* 0 empty, 1 live, 2 removed */
} snap_keyslot;

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

void snap_keyset_init(snap_keyset *ks)
{
    memset(ks, 0, sizeof *ks);
}

void snap_keyset_free(snap_keyset *ks)
{
    if (!ks)
        return;
    free(ks->slots);
    cdc_buf_free(&ks->arena);
    memset(ks, 0, sizeof *ks);
}

void snap_keyset_clear(snap_keyset *ks)
{
    if (ks->slots)
        memset(ks->slots, 0, ks->nslots * sizeof *ks->slots);
    ks->used = ks->filled = 0;
    cdc_buf_reset(&ks->arena);
}

static snap_keyslot *lookup(const snap_keyset *ks, const char *key, size_t len, uint64_t h)
{
    if (ks->nslots == 0)
        return NULL;
    size_t mask = ks->nslots - 1;
    for (size_t i = (size_t)h & mask, probes = 0; probes < ks->nslots; i = (i + 1) & mask, probes++) {
        snap_keyslot *s = &ks->slots[i];
        if (s->state == 0)
            return NULL;
        if (s->state == 1 && s->hash == h && s->len == len &&
            memcmp(ks->arena.data + s->off, key, len) == 0)
            return s;
    }
    return NULL;
}

static void place(snap_keyslot *slots, size_t nslots, const snap_keyslot *from)
{
    size_t mask = nslots - 1;
    size_t i = (size_t)from->hash & mask;
    while (slots[i].state != 0)
        i = (i + 1) & mask;
    slots[i] = *from;
}

static int grow(snap_keyset *ks)
{
    /* Sized by the live keys: a table full of removed slots is rehashed
     * at the same size. */
    size_t n = ks->nslots ? ks->nslots : 64;
    while (n < 2 * (ks->used + 1))
        n *= 2;
    snap_keyslot *slots = calloc(n, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < ks->nslots; i++)
        if (ks->slots[i].state == 1)
            place(slots, n, &ks->slots[i]);
    free(ks->slots);
    ks->slots = slots;
    ks->nslots = n;
    ks->filled = ks->used;
    return 0;
}

int snap_keyset_add(snap_keyset *ks, const char *key, size_t len, size_t row)
{
    uint64_t h = fnv1a(key, len);
    snap_keyslot *s = lookup(ks, key, len, h);
    if (s) {
        s->row = row;
        return 0;
    }
    if ((ks->filled + 1) * 4 > ks->nslots * 3 && grow(ks) < 0)
        return -1;
    size_t off = ks->arena.len;
    if (cdc_buf_append(&ks->arena, key, len) < 0)
        return -1;
    snap_keyslot slot = {h, off, len, row, 1};
    place(ks->slots, ks->nslots, &slot);
    ks->used++;
    ks->filled++;
    return 0;
}

bool snap_keyset_remove(snap_keyset *ks, const char *key, size_t len, size_t *row)
{
    snap_keyslot *s = lookup(ks, key, len, fnv1a(key, len));
    if (!s)
        return false;
    s->state = 2;
    ks->used--;
    if (row)
        *row = s->row;
    return true;
}

bool snap_keyset_contains(const snap_keyset *ks, const char *key, size_t len)
{
    return lookup(ks, key, len, fnv1a(key, len)) != NULL;
}
