/* doc_def.c: parsing the --documents definition (doc_def.h) from JSON text
 * into document types and their trees of joined tables. No I/O; every
 * error names the file, the path in the definition and what is wrong. */
#include "doc_def.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "cdc_buf.h"
#include "cdc_json.h"

typedef struct parse_ctx {
    const char *file;
    char *err;
    size_t errlen;
    const char *schema;      /* the default schema */
} parse_ctx;

/* The path of the value being read, e.g. documents[0].embed.reviews. */
typedef struct path {
    const struct path *up;
    const char *name;        /* a member, or NULL for an index */
    size_t index;
} path;

static void path_text(const path *p, cdc_buf *out)
{
    if (!p)
        return;
    path_text(p->up, out);
    if (p->name)
        cdc_buf_printf(out, "%s%s", out->len ? "." : "", p->name);
    else
        cdc_buf_printf(out, "[%zu]", p->index);
}

__attribute__((format(printf, 3, 4)))
static int fail(parse_ctx *c, const path *p, const char *fmt, ...)
{
    cdc_buf where = CDC_BUF_INIT;
    path_text(p, &where);
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s%s%s", c->file, where.len ? where.data : "",
             where.len ? ": " : "", what);
    cdc_buf_free(&where);
    return -1;
}

/* Names go into SQL as quoted identifiers and string literals; a backslash
 * or a control character has no business in one and would need escaping
 * rules that depend on server settings. */
static bool name_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 63)
        return false;
    for (const unsigned char *q = (const unsigned char *)s; *q; q++)
        if (*q < 0x20 || *q == 0x7f || *q == '\\')
            return false;
    return cdc_utf8_valid((const unsigned char *)s, strlen(s));
}

static yajl_val member(yajl_val obj, const char *name)
{
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], name) == 0)
            return obj->u.object.values[i];
    return NULL;
}

static int get_name(parse_ctx *c, const path *p, yajl_val obj, const char *name, bool required,
                    char **out)
{
    yajl_val v = member(obj, name);
    path here = {p, name, 0};
    if (!v) {
        if (required)
            return fail(c, p, "\"%s\" is missing", name);
        return 0;
    }
    if (!YAJL_IS_STRING(v))
        return fail(c, &here, "is not a string");
    if (!name_ok(v->u.string))
        return fail(c, &here, "\"%s\" is not a name (1 to 63 bytes of UTF-8, no backslash or "
                              "control character)", v->u.string);
    if (!(*out = strdup(v->u.string)))
        return fail(c, &here, "out of memory");
    return 0;
}

/* A name, or an array of 1 to `max` names (a composite key), into *out
 * (*n of them); absent and not required: *n = 0 and, when `def` is given,
 * that one name. */
static int get_names(parse_ctx *c, const path *p, yajl_val obj, const char *name, bool required,
                     size_t max, const char *def, char ***out, size_t *n)
{
    yajl_val v = member(obj, name);
    path here = {p, name, 0};
    *n = 0;
    size_t count = !v ? (def ? 1 : 0) : YAJL_IS_ARRAY(v) ? v->u.array.len : 1;
    if (!v && required)
        return fail(c, p, "\"%s\" is missing", name);
    if (v && YAJL_IS_ARRAY(v) && (count == 0 || count > max))
        return fail(c, &here, "names %zu columns: 1 to %zu here", count, max);
    if (count == 0)
        return 0;
    if (!(*out = calloc(count, sizeof **out)))
        return fail(c, &here, "out of memory");
    for (size_t i = 0; i < count; i++) {
        yajl_val e = !v ? NULL : YAJL_IS_ARRAY(v) ? v->u.array.values[i] : v;
        path item = {&here, NULL, i};
        const path *at = v && YAJL_IS_ARRAY(v) ? &item : &here;
        if (e && !YAJL_IS_STRING(e))
            return fail(c, at, max == 1 ? "is not a string" : "is not a string or an array "
                                                             "of strings");
        if (e && !name_ok(e->u.string))
            return fail(c, at, "\"%s\" is not a name (1 to 63 bytes of UTF-8, no backslash "
                               "or control character)", e->u.string);
        if (!((*out)[i] = strdup(e ? e->u.string : def)))
            return fail(c, at, "out of memory");
        (*n)++;
    }
    return 0;
}

/* "schema.table" or "table" (in the default schema). */
static int split_table(parse_ctx *c, const path *p, const char *text, char **schema, char **table)
{
    const char *dot = strchr(text, '.');
    if (dot && (dot == text || !dot[1] || strchr(dot + 1, '.')))
        return fail(c, p, "\"%s\" is not <table> or <schema>.<table>", text);
    *schema = dot ? strndup(text, (size_t)(dot - text)) : strdup(c->schema);
    *table = strdup(dot ? dot + 1 : text);
    if (!*schema || !*table)
        return fail(c, p, "out of memory");
    return 0;
}

static int get_table(parse_ctx *c, const path *p, yajl_val obj, const char *name, char **schema,
                     char **table)
{
    char *text = NULL;
    if (get_name(c, p, obj, name, true, &text) < 0)
        return -1;
    path here = {p, name, 0};
    int rc = split_table(c, &here, text, schema, table);
    free(text);
    return rc;
}

static void node_free(doc_node *n)
{
    if (!n)
        return;
    free(n->field);
    free(n->schema);
    free(n->table);
    for (size_t i = 0; i < n->nkeys; i++)
        free(n->keys[i]);
    free(n->keys);
    for (size_t i = 0; i < n->nvias; i++)
        free(n->vias[i]);
    free(n->vias);
    free(n->through_schema);
    free(n->through);
    free(n->to);
    free(n->column);
    for (size_t i = 0; i < n->ncolumns; i++)
        free(n->columns[i]);
    free(n->columns);
    for (size_t i = 0; i < n->nembed; i++)
        node_free(n->embed[i]);
    free(n->embed);
    free(n);
}

static int check_members(parse_ctx *c, const path *p, yajl_val obj, const char *const *allowed)
{
    for (size_t i = 0; i < obj->u.object.len; i++) {
        const char *k = obj->u.object.keys[i];
        bool ok = false;
        for (size_t a = 0; allowed[a] && !ok; a++)
            ok = strcmp(k, allowed[a]) == 0;
        if (!ok) {
            cdc_buf list = CDC_BUF_INIT;
            for (size_t a = 0; allowed[a]; a++)
                cdc_buf_printf(&list, "%s%s", a ? ", " : "", allowed[a]);
            fail(c, p, "unknown member \"%s\" (expected one of %s)", k,
                 list.data ? list.data : "");
            cdc_buf_free(&list);
            return -1;
        }
    }
    return 0;
}

static int parse_node(parse_ctx *c, const path *p, const char *field, yajl_val obj, doc_node *up,
                      unsigned depth, size_t *nnodes, doc_node **out);

static bool field_taken(const doc_node *n, const char *name)
{
    for (size_t i = 0; i < n->ncolumns; i++)
        if (strcmp(n->columns[i], name) == 0)
            return true;
    for (size_t i = 0; i < n->nembed; i++)
        if (strcmp(n->embed[i]->field, name) == 0)
            return true;
    return false;
}

static int parse_columns(parse_ctx *c, const path *p, yajl_val obj, doc_node *n)
{
    yajl_val v = member(obj, "columns");
    path here = {p, "columns", 0};
    if (!v)
        return fail(c, p, "\"columns\" is missing");
    if (!YAJL_IS_ARRAY(v) || v->u.array.len == 0)
        return fail(c, &here, "is not a non-empty array of column names");
    if (!(n->columns = calloc(v->u.array.len, sizeof *n->columns)))
        return fail(c, &here, "out of memory");
    for (size_t i = 0; i < v->u.array.len; i++) {
        yajl_val s = v->u.array.values[i];
        path item = {&here, NULL, i};
        if (!YAJL_IS_STRING(s) || !name_ok(s->u.string))
            return fail(c, &item, "is not a column name");
        if (field_taken(n, s->u.string))
            return fail(c, &item, "\"%s\" is named twice", s->u.string);
        if (!(n->columns[n->ncolumns] = strdup(s->u.string)))
            return fail(c, &item, "out of memory");
        n->ncolumns++;
    }
    return 0;
}

static int parse_embeds(parse_ctx *c, const path *p, yajl_val obj, doc_node *n, unsigned depth,
                        size_t *nnodes)
{
    yajl_val v = member(obj, "embed");
    path here = {p, "embed", 0};
    if (!v)
        return 0;
    if (!YAJL_IS_OBJECT(v))
        return fail(c, &here, "is not an object of field names to embedded tables");
    if (depth >= DOC_DEPTH_MAX)
        return fail(c, &here, "more than %d levels of embedding", DOC_DEPTH_MAX);
    if (!(n->embed = calloc(v->u.object.len + 1, sizeof *n->embed)))
        return fail(c, &here, "out of memory");
    for (size_t i = 0; i < v->u.object.len; i++) {
        const char *field = v->u.object.keys[i];
        path item = {&here, field, 0};
        if (!name_ok(field))
            return fail(c, &item, "is not a field name");
        if (field_taken(n, field))
            return fail(c, &item, "field \"%s\" is named twice", field);
        if (!YAJL_IS_OBJECT(v->u.object.values[i]))
            return fail(c, &item, "is not an object");
        if (parse_node(c, &item, field, v->u.object.values[i], n, depth + 1, nnodes,
                       &n->embed[n->nembed]) < 0)
            return -1;
        n->nembed++;
    }
    if (n->ncolumns + n->nembed > DOC_FIELDS_MAX)
        return fail(c, p, "%zu fields: at most %d per object", n->ncolumns + n->nembed,
                    DOC_FIELDS_MAX);
    return 0;
}

static const char *const agg_names[] = {"count", "avg", "sum", "min", "max"};

const char *doc_agg_name(doc_agg a)
{
    return agg_names[a];
}

/* One embedded node: its kind is the member that names its table. */
static int parse_node(parse_ctx *c, const path *p, const char *field, yajl_val obj, doc_node *up,
                      unsigned depth, size_t *nnodes, doc_node **out)
{
    static const char *const kinds[] = {"parent", "children", "many", "count", "avg", "sum",
                                        "min", "max"};
    doc_node *n = calloc(1, sizeof *n);
    if (!n)
        return fail(c, p, "out of memory");
    n->up = up;
    n->id = (unsigned)(*nnodes)++;
    if (!(n->field = strdup(field))) {
        fail(c, p, "out of memory");
        goto fail;
    }
    const char *kind = NULL;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        if (!member(obj, kinds[k]))
            continue;
        if (kind) {
            fail(c, p, "names both \"%s\" and \"%s\": one of parent, children, many, count, "
                       "avg, sum, min, max", kind, kinds[k]);
            goto fail;
        }
        kind = kinds[k];
    }
    if (!kind) {
        fail(c, p, "names no table: give one of parent, children, many, count, avg, sum, min, "
                   "max");
        goto fail;
    }
    /* A node joined to its embedding row's key takes one via column per
     * key column (several under a composite root key). */
    size_t want_vias = strcmp(kind, "parent") == 0 ? 1 : up->nkeys;
    if (get_table(c, p, obj, kind, &n->schema, &n->table) < 0 ||
        get_names(c, p, obj, "via", true, want_vias, NULL, &n->vias, &n->nvias) < 0)
        goto fail;
    if (n->nvias != want_vias) {
        path here = {p, "via", 0};
        fail(c, &here, "names %zu column(s): one per key column of %s.%s (%zu)", n->nvias,
             up->schema, up->table, want_vias);
        goto fail;
    }
    n->via = n->vias[0];
    if (strcmp(kind, "parent") == 0 || strcmp(kind, "children") == 0 ||
        strcmp(kind, "many") == 0) {
        static const char *const common[] = {"parent", "children", "key", "via", "columns",
                                             "embed", NULL};
        static const char *const many[] = {"many", "through", "to", "key", "via", "columns",
                                           "embed", NULL};
        n->kind = kind[0] == 'p' ? DOC_PARENT : kind[0] == 'c' ? DOC_CHILDREN : DOC_MANY;
        if (check_members(c, p, obj, n->kind == DOC_MANY ? many : common) < 0 ||
            get_names(c, p, obj, "key", false, 1, "id", &n->keys, &n->nkeys) < 0)
            goto fail;
        n->key = n->keys[0];
        if (n->kind == DOC_MANY &&
            (get_table(c, p, obj, "through", &n->through_schema, &n->through) < 0 ||
             get_name(c, p, obj, "to", true, &n->to) < 0))
            goto fail;
        if (parse_columns(c, p, obj, n) < 0 || parse_embeds(c, p, obj, n, depth, nnodes) < 0)
            goto fail;
    } else {
        static const char *const agg[] = {"count", "avg", "sum", "min", "max", "via", "column",
                                          NULL};
        n->kind = DOC_AGG;
        for (size_t a = 0; a < sizeof agg_names / sizeof agg_names[0]; a++)
            if (strcmp(kind, agg_names[a]) == 0)
                n->agg = (doc_agg)a;
        if (check_members(c, p, obj, agg) < 0 ||
            get_name(c, p, obj, "column", n->agg != DOC_AGG_COUNT, &n->column) < 0)
            goto fail;
        if (n->agg == DOC_AGG_COUNT && n->column) {
            fail(c, p, "count counts rows: it takes no \"column\"");
            goto fail;
        }
    }
    *out = n;
    return 0;
fail:
    node_free(n);
    return -1;
}

/* A Redis key template: text with {<key column>} placeholders only, each
 * key column named at least once (else two documents could share a key). */
static int check_redis_key(parse_ctx *c, const path *p, const char *tpl, const doc_node *root)
{
    bool named[DOC_KEYS_MAX] = {false};
    for (const char *q = tpl; *q; q++) {
        if (*q == '}')
            return fail(c, p, "\"%s\": '}' without '{'", tpl);
        if (*q != '{')
            continue;
        const char *close = strchr(q, '}');
        size_t k = 0;
        while (close && k < root->nkeys &&
               (strlen(root->keys[k]) != (size_t)(close - q - 1) ||
                strncmp(q + 1, root->keys[k], (size_t)(close - q - 1)) != 0))
            k++;
        if (!close || k == root->nkeys)
            return fail(c, p, "\"%s\": a placeholder names a key column of the root table "
                              "(%s%s)", tpl, root->key, root->nkeys > 1 ? ", ..." : "");
        named[k] = true;
        q = close;
    }
    for (size_t k = 0; k < root->nkeys; k++)
        if (!named[k])
            return fail(c, p, "\"%s\" has no {%s}: documents would share keys", tpl,
                        root->keys[k]);
    return 0;
}

static int parse_type(parse_ctx *c, const path *p, yajl_val obj, doc_type *t)
{
    static const char *const allowed[] = {"name", "table", "key", "columns", "embed", "index",
                                          "redis_key", NULL};
    if (!YAJL_IS_OBJECT(obj))
        return fail(c, p, "is not an object");
    if (check_members(c, p, obj, allowed) < 0 || get_name(c, p, obj, "name", true, &t->name) < 0)
        return -1;
    doc_node *n = calloc(1, sizeof *n);
    if (!n)
        return fail(c, p, "out of memory");
    t->root = n;
    n->kind = DOC_ROOT;
    t->nnodes = 1;
    if (get_table(c, p, obj, "table", &n->schema, &n->table) < 0 ||
        get_names(c, p, obj, "key", false, DOC_KEYS_MAX, "id", &n->keys, &n->nkeys) < 0)
        return -1;
    n->key = n->keys[0];
    if (parse_columns(c, p, obj, n) < 0 || parse_embeds(c, p, obj, n, 0, &t->nnodes) < 0)
        return -1;
    if (get_name(c, p, obj, "index", false, &t->index) < 0)
        return -1;
    yajl_val rk = member(obj, "redis_key");
    if (rk) {
        path here = {p, "redis_key", 0};
        if (!YAJL_IS_STRING(rk) || !rk->u.string[0] || strlen(rk->u.string) > 512)
            return fail(c, &here, "is not a key template (1 to 512 bytes)");
        if (check_redis_key(c, &here, rk->u.string, n) < 0)
            return -1;
        if (!(t->redis_key = strdup(rk->u.string)))
            return fail(c, &here, "out of memory");
    }
    if (!t->index && !t->redis_key)
        return fail(c, p, "names no target: give \"index\" and/or \"redis_key\"");
    return 0;
}

int doc_def_parse(const char *file, const char *json, size_t len, doc_def **out, char *err,
                  size_t errlen)
{
    parse_ctx c = {.file = file ? file : "definition", .err = err, .errlen = errlen,
                   .schema = "public"};
    doc_def *d = NULL;
    yajl_val root = NULL;
    *out = NULL;
    char perr[256];
    if (cdc_json_validate(json, len, perr, sizeof perr) < 0) {
        snprintf(err, errlen, "%s: not JSON: %s", c.file, perr);
        return -1;
    }
    /* Copied with its length, not strndup: json need not end in a NUL. */
    char *text = malloc(len + 1);
    if (text) {
        memcpy(text, json, len);
        text[len] = '\0';
    }
    if (!text || memchr(json, '\0', len)) {
        snprintf(err, errlen, "%s: %s", c.file, text ? "holds a NUL byte" : "out of memory");
        free(text);
        return -1;
    }
    root = yajl_tree_parse(text, perr, sizeof perr);
    free(text);
    if (!root) {
        snprintf(err, errlen, "%s: not JSON: %s", c.file, perr);
        return -1;
    }
    static const char *const allowed[] = {"schema", "documents", NULL};
    if (!YAJL_IS_OBJECT(root)) {
        fail(&c, NULL, "is not a JSON object with \"documents\"");
        goto fail;
    }
    if (check_members(&c, NULL, root, allowed) < 0)
        goto fail;
    yajl_val schema = member(root, "schema");
    if (schema) {
        path here = {NULL, "schema", 0};
        if (!YAJL_IS_STRING(schema) || !name_ok(schema->u.string)) {
            fail(&c, &here, "is not a schema name");
            goto fail;
        }
        c.schema = schema->u.string;
    }
    yajl_val docs = member(root, "documents");
    path docs_path = {NULL, "documents", 0};
    if (!docs || !YAJL_IS_ARRAY(docs) || docs->u.array.len == 0) {
        fail(&c, docs ? &docs_path : NULL, docs ? "is not a non-empty array"
                                                : "\"documents\" is missing");
        goto fail;
    }
    if (!(d = calloc(1, sizeof *d)) ||
        !(d->types = calloc(docs->u.array.len, sizeof *d->types))) {
        fail(&c, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < docs->u.array.len; i++) {
        path item = {&docs_path, NULL, i};
        doc_type *t = &d->types[d->ntypes++];
        if (parse_type(&c, &item, docs->u.array.values[i], t) < 0)
            goto fail;
        for (size_t j = 0; j + 1 < d->ntypes; j++) {
            if (strcmp(d->types[j].name, t->name) == 0) {
                fail(&c, &item, "name \"%s\" is used twice", t->name);
                goto fail;
            }
            if (t->index && d->types[j].index && strcmp(d->types[j].index, t->index) == 0) {
                fail(&c, &item, "index \"%s\" is used twice", t->index);
                goto fail;
            }
        }
    }
    yajl_tree_free(root);
    *out = d;
    return 0;
fail:
    yajl_tree_free(root);
    doc_def_free(d);
    return -1;
}

void doc_def_free(doc_def *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->ntypes; i++) {
        free(d->types[i].name);
        free(d->types[i].index);
        free(d->types[i].redis_key);
        node_free(d->types[i].root);
    }
    free(d->types);
    free(d);
}

static int walk_node(const doc_type *t, const doc_node *n,
                     int (*fn)(const doc_type *, const doc_node *, void *), void *ctx)
{
    int rc = fn(t, n, ctx);
    for (size_t i = 0; rc == 0 && i < n->nembed; i++)
        rc = walk_node(t, n->embed[i], fn, ctx);
    return rc;
}

int doc_def_walk(const doc_def *d, int (*fn)(const doc_type *t, const doc_node *n, void *ctx),
                 void *ctx)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < d->ntypes; i++)
        rc = walk_node(&d->types[i], d->types[i].root, fn, ctx);
    return rc;
}
