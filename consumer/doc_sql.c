/* doc_sql.c: the SQL and the index mapping of a document definition
 * (doc_sql.h). No I/O. Aliases are a<N> for node N's table and l<N> for a
 * many-to-many node's link table, N unique in the document. */
#include "doc_sql.h"

#include <stdio.h>
#include <string.h>

#include "row_json.h"

/* "name" with embedded quotes doubled (doc_def.c refused backslashes and
 * control characters). */
static int ident(cdc_buf *o, const char *name)
{
    if (cdc_buf_putc(o, '"') < 0)
        return -1;
    for (const char *q = name; *q; q++)
        if ((*q == '"' && cdc_buf_putc(o, '"') < 0) || cdc_buf_putc(o, *q) < 0)
            return -1;
    return cdc_buf_putc(o, '"');
}

/* 'text' with quotes doubled: a standard string, the same whatever
 * standard_conforming_strings says, since no backslash can be in it. */
static int literal(cdc_buf *o, const char *text)
{
    if (cdc_buf_putc(o, '\'') < 0)
        return -1;
    for (const char *q = text; *q; q++)
        if ((*q == '\'' && cdc_buf_putc(o, '\'') < 0) || cdc_buf_putc(o, *q) < 0)
            return -1;
    return cdc_buf_putc(o, '\'');
}

static int table(cdc_buf *o, const char *schema, const char *name)
{
    if (ident(o, schema) < 0 || cdc_buf_putc(o, '.') < 0)
        return -1;
    return ident(o, name);
}

/* a<id>."col" */
static int col(cdc_buf *o, char prefix, unsigned id, const char *name)
{
    if (cdc_buf_printf(o, "%c%u.", prefix, id) < 0)
        return -1;
    return ident(o, name);
}

/* a<ia>."ca" = b<ib>."cb" */
static int eq(cdc_buf *o, char pa, unsigned ia, const char *ca, char pb, unsigned ib,
              const char *cb)
{
    int rc = col(o, pa, ia, ca);
    rc |= cdc_buf_puts(o, " = ");
    rc |= col(o, pb, ib, cb);
    return rc < 0 ? -1 : 0;
}

/* a<ia>."ca[0]" = b<ib>."cb[0]" AND ... for n pairs (a composite key) */
static int eq_n(cdc_buf *o, char pa, unsigned ia, char *const *ca, char pb, unsigned ib,
                char *const *cb, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        rc |= cdc_buf_puts(o, i ? " AND " : "");
        rc |= eq(o, pa, ia, ca[i], pb, ib, cb[i]);
    }
    return rc < 0 ? -1 : 0;
}

/* The document id of root row a0, as text: its key's text, or for a
 * composite key the compact JSON array of the key's values, as the per-row
 * sinks make it from an event's key (docs/consumer-sinks.md "Row ids"):
 * to_json escapes strings as row_json_put_string does. */
static int root_id(cdc_buf *o, const doc_node *r)
{
    if (r->nkeys == 1) {
        int rc = col(o, 'a', 0, r->key);
        rc |= cdc_buf_puts(o, "::text");
        return rc < 0 ? -1 : 0;
    }
    int rc = cdc_buf_puts(o, "'[' || concat_ws(','");
    for (size_t i = 0; i < r->nkeys; i++) {
        rc |= cdc_buf_puts(o, ", to_json(");
        rc |= col(o, 'a', 0, r->keys[i]);
        rc |= cdc_buf_putc(o, ')');
    }
    rc |= cdc_buf_puts(o, ") || ']'");
    return rc < 0 ? -1 : 0;
}

/* a0."k1", a0."k2", ... */
static int root_keys(cdc_buf *o, const doc_node *r)
{
    int rc = 0;
    for (size_t i = 0; i < r->nkeys; i++) {
        rc |= cdc_buf_puts(o, i ? ", " : "");
        rc |= col(o, 'a', 0, r->keys[i]);
    }
    return rc < 0 ? -1 : 0;
}

/* "schema"."table" <prefix><id><then> */
static int aliased(cdc_buf *o, const char *schema, const char *name, char prefix, unsigned id,
                   const char *then)
{
    int rc = table(o, schema, name);
    rc |= cdc_buf_printf(o, " %c%u%s", prefix, id, then);
    return rc < 0 ? -1 : 0;
}

static int object(cdc_buf *o, const doc_node *n);

/* The value of embedded node e inside its embedding row a<e->up->id>. */
static int embedded(cdc_buf *o, const doc_node *e)
{
    unsigned up = e->up->id, id = e->id;
    int rc = 0;
    switch (e->kind) {
    case DOC_PARENT:
        rc |= cdc_buf_puts(o, "(SELECT ");
        rc |= object(o, e);
        rc |= cdc_buf_puts(o, " FROM ");
        rc |= aliased(o, e->schema, e->table, 'a', id, " WHERE ");
        rc |= eq(o, 'a', id, e->key, 'a', up, e->via);
        rc |= cdc_buf_puts(o, " LIMIT 1)");
        break;
    case DOC_CHILDREN:
    case DOC_MANY:
        rc |= cdc_buf_puts(o, "COALESCE((SELECT json_agg(");
        rc |= object(o, e);
        rc |= cdc_buf_puts(o, " ORDER BY ");
        rc |= col(o, 'a', id, e->key);
        rc |= cdc_buf_puts(o, ") FROM ");
        if (e->kind == DOC_MANY) {
            rc |= aliased(o, e->through_schema, e->through, 'l', id, " JOIN ");
            rc |= aliased(o, e->schema, e->table, 'a', id, " ON ");
            rc |= eq(o, 'a', id, e->key, 'l', id, e->to);
            rc |= cdc_buf_puts(o, " WHERE ");
            rc |= eq_n(o, 'l', id, e->vias, 'a', up, e->up->keys, e->nvias);
        } else {
            rc |= aliased(o, e->schema, e->table, 'a', id, " WHERE ");
            rc |= eq_n(o, 'a', id, e->vias, 'a', up, e->up->keys, e->nvias);
        }
        rc |= cdc_buf_puts(o, "), '[]'::json)");
        break;
    case DOC_AGG:
        rc |= cdc_buf_printf(o, "(SELECT %s(", doc_agg_name(e->agg));
        if (e->column)
            rc |= col(o, 'a', id, e->column);
        else
            rc |= cdc_buf_putc(o, '*');
        rc |= cdc_buf_puts(o, ") FROM ");
        rc |= aliased(o, e->schema, e->table, 'a', id, " WHERE ");
        rc |= eq_n(o, 'a', id, e->vias, 'a', up, e->up->keys, e->nvias);
        rc |= cdc_buf_putc(o, ')');
        break;
    case DOC_ROOT:
        return -1;
    }
    return rc < 0 ? -1 : 0;
}

/* json_build_object('col', a<N>."col", ..., 'field', <embedded>, ...) */
static int object(cdc_buf *o, const doc_node *n)
{
    int rc = cdc_buf_puts(o, "json_build_object(");
    for (size_t i = 0; i < n->ncolumns; i++) {
        rc |= cdc_buf_puts(o, i ? ", " : "");
        rc |= literal(o, n->columns[i]);
        rc |= cdc_buf_puts(o, ", ");
        rc |= col(o, 'a', n->id, n->columns[i]);
    }
    for (size_t i = 0; i < n->nembed; i++) {
        rc |= cdc_buf_puts(o, i || n->ncolumns ? ", " : "");
        rc |= literal(o, n->embed[i]->field);
        rc |= cdc_buf_puts(o, ", ");
        if (rc < 0 || embedded(o, n->embed[i]) < 0)
            return -1;
    }
    rc |= cdc_buf_putc(o, ')');
    return rc < 0 ? -1 : 0;
}

int doc_sql_read(const doc_type *t, doc_read_kind kind, cdc_buf *out)
{
    const doc_node *r = t->root;
    int rc = cdc_buf_puts(out, "SELECT ");
    rc |= root_id(out, r);
    rc |= cdc_buf_puts(out, ", ");
    if (rc < 0 || object(out, r) < 0)
        return -1;
    rc |= cdc_buf_puts(out, "::text FROM ");
    rc |= table(out, r->schema, r->table);
    rc |= cdc_buf_puts(out, " a0");
    switch (kind) {
    case DOC_READ_KEYS:
        /* One array per key column: a composite key's columns are each
         * matched against their values (an index serves it); a root that
         * matches a mix of two asked keys is read too, which is harmless. */
        for (size_t i = 0; i < r->nkeys; i++) {
            rc |= cdc_buf_puts(out, i ? " AND " : " WHERE ");
            rc |= col(out, 'a', 0, r->keys[i]);
            rc |= cdc_buf_printf(out, " = ANY($%zu)", i + 1);
        }
        break;
    case DOC_READ_FIRST:
    case DOC_READ_AFTER:
        if (kind == DOC_READ_AFTER) {
            /* (k1, k2) > ($2, $3): a row comparison, in ORDER BY's order */
            bool many = r->nkeys > 1;
            rc |= cdc_buf_puts(out, many ? " WHERE (" : " WHERE ");
            rc |= root_keys(out, r);
            rc |= cdc_buf_puts(out, many ? ") > (" : " > ");
            for (size_t i = 0; i < r->nkeys; i++)
                rc |= cdc_buf_printf(out, "%s$%zu", i ? ", " : "", i + 2);
            rc |= cdc_buf_puts(out, many ? ")" : "");
        }
        rc |= cdc_buf_puts(out, " ORDER BY ");
        rc |= root_keys(out, r);
        rc |= cdc_buf_puts(out, " LIMIT $1");
        break;
    }
    return rc < 0 ? -1 : 0;
}

/* FROM <root> a0 JOIN ... up to and including node n's table (and for a
 * many-to-many node, its link table). */
static int chain(cdc_buf *o, const doc_node *n)
{
    if (n->kind == DOC_ROOT) {
        int rc = cdc_buf_puts(o, " FROM ");
        rc |= table(o, n->schema, n->table);
        rc |= cdc_buf_puts(o, " a0");
        return rc < 0 ? -1 : 0;
    }
    if (chain(o, n->up) < 0)
        return -1;
    unsigned up = n->up->id, id = n->id;
    int rc = cdc_buf_puts(o, " JOIN ");
    switch (n->kind) {
    case DOC_PARENT:
        rc |= aliased(o, n->schema, n->table, 'a', id, " ON ");
        rc |= eq(o, 'a', id, n->key, 'a', up, n->via);
        break;
    case DOC_CHILDREN:
        rc |= aliased(o, n->schema, n->table, 'a', id, " ON ");
        rc |= eq_n(o, 'a', id, n->vias, 'a', up, n->up->keys, n->nvias);
        break;
    case DOC_MANY:
        rc |= aliased(o, n->through_schema, n->through, 'l', id, " ON ");
        rc |= eq_n(o, 'l', id, n->vias, 'a', up, n->up->keys, n->nvias);
        rc |= cdc_buf_puts(o, " JOIN ");
        rc |= aliased(o, n->schema, n->table, 'a', id, " ON ");
        rc |= eq(o, 'a', id, n->key, 'l', id, n->to);
        break;
    default:
        return -1;
    }
    return rc < 0 ? -1 : 0;
}

static const doc_node *root_of(const doc_node *n)
{
    while (n->up)
        n = n->up;
    return n;
}

int doc_sql_roots(const doc_node *n, doc_values values, cdc_buf *out, bool *direct)
{
    *direct = false;
    const doc_node *up = n->up;
    if (!up || (values == DOC_VALUES_UP_KEY && up->kind == DOC_ROOT)) {
        *direct = true;
        return 0;
    }
    int rc = cdc_buf_puts(out, "SELECT DISTINCT ");
    rc |= root_id(out, root_of(n));
    if (rc < 0 || chain(out, up) < 0)
        return -1;
    if (values == DOC_VALUES_UP_KEY) {
        rc |= cdc_buf_puts(out, " WHERE ");
        rc |= col(out, 'a', up->id, up->key);
    } else if (n->kind == DOC_PARENT) {
        rc |= cdc_buf_puts(out, " WHERE ");
        rc |= col(out, 'a', up->id, n->via);
    } else if (n->kind == DOC_MANY) {
        rc |= cdc_buf_puts(out, " JOIN ");
        rc |= table(out, n->through_schema, n->through);
        rc |= cdc_buf_printf(out, " l%u ON ", n->id);
        rc |= eq_n(out, 'l', n->id, n->vias, 'a', up->id, up->keys, n->nvias);
        rc |= cdc_buf_puts(out, " WHERE ");
        rc |= col(out, 'l', n->id, n->to);
    } else {
        return -1; /* children and aggregates are found by their via */
    }
    rc |= cdc_buf_puts(out, " = ANY($1)");
    return rc < 0 ? -1 : 0;
}

static int field_mapping(es_engine engine, const doc_node *n, const char *column,
                         doc_type_fn types, void *ctx, cdc_buf *out, char *err, size_t errlen)
{
    const char *type = types(ctx, n->schema, n->table, column);
    if (!type) {
        snprintf(err, errlen, "column %s.%s.%s is not in the catalog", n->schema, n->table,
                 column);
        return -1;
    }
    return es_mapping_field(engine, type, out);
}

static int properties(es_engine engine, const doc_node *n, doc_type_fn types, void *ctx,
                      cdc_buf *out, char *err, size_t errlen)
{
    int rc = cdc_buf_puts(out, "{\"properties\":{");
    for (size_t i = 0; rc == 0 && i < n->ncolumns; i++) {
        rc |= cdc_buf_printf(out, "%s", i ? "," : "");
        rc |= row_json_put_string(out, n->columns[i], strlen(n->columns[i]));
        rc |= cdc_buf_putc(out, ':');
        if (rc < 0 || field_mapping(engine, n, n->columns[i], types, ctx, out, err, errlen) < 0)
            return -1;
    }
    for (size_t i = 0; rc == 0 && i < n->nembed; i++) {
        const doc_node *e = n->embed[i];
        rc |= cdc_buf_printf(out, "%s", i || n->ncolumns ? "," : "");
        rc |= row_json_put_string(out, e->field, strlen(e->field));
        rc |= cdc_buf_putc(out, ':');
        if (rc < 0)
            return -1;
        if (e->kind != DOC_AGG)
            rc = properties(engine, e, types, ctx, out, err, errlen);
        else if (e->agg == DOC_AGG_COUNT)
            rc = cdc_buf_puts(out, "{\"type\":\"long\"}");
        else if (e->agg == DOC_AGG_AVG || e->agg == DOC_AGG_SUM)
            rc = cdc_buf_puts(out, "{\"type\":\"double\",\"ignore_malformed\":true}");
        else
            rc = field_mapping(engine, e, e->column, types, ctx, out, err, errlen);
    }
    rc |= cdc_buf_puts(out, "}}");
    return rc < 0 ? -1 : 0;
}

int doc_mapping_body(es_engine engine, const doc_type *t, doc_type_fn types, void *ctx,
                     cdc_buf *out, char *err, size_t errlen)
{
    err[0] = '\0';
    if (cdc_buf_puts(out, "{\"mappings\":{\"dynamic\":false,") < 0)
        goto oom;
    /* {"properties":{...}} without its braces */
    cdc_buf props = CDC_BUF_INIT;
    if (properties(engine, t->root, types, ctx, &props, err, errlen) < 0) {
        cdc_buf_free(&props);
        if (!err[0])
            goto oom;
        return -1;
    }
    int rc = cdc_buf_append(out, props.data + 1, props.len - 1);
    cdc_buf_free(&props);
    if (rc < 0 || cdc_buf_putc(out, '}') < 0)
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

int doc_sql_array_elem(cdc_buf *out, const char *s, size_t len)
{
    int rc = cdc_buf_putc(out, '"');
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\')
            rc |= cdc_buf_putc(out, '\\');
        rc |= cdc_buf_putc(out, s[i]);
    }
    rc |= cdc_buf_putc(out, '"');
    return rc < 0 ? -1 : 0;
}
