/* es_mapping.c: index mappings from PostgreSQL column types (see
 * es_mapping.h and docs/consumer-sinks.md "Index mappings"). No I/O.
 *
 * Every field that can be handed a value it cannot parse (a numeric "NaN",
 * a date "infinity" or "0044-03-15 BC", a column whose type changed) has
 * ignore_malformed: the value stays in _source, unindexed, and the row's
 * other columns are still written, rather than the whole document being
 * refused and the index left stale. */
#include "es_mapping.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_event.h"
#include "es_bulk.h"
#include "row_json.h"

#define KEYWORD_IGNORE_ABOVE "256"
/* scaled_float keeps value * 10^scale in a long: numeric(p,s) fits when
 * 10^p < 2^63. */
#define SCALED_MAX_PRECISION 18
#define DATE_FORMAT "strict_date_optional_time||epoch_millis"

struct es_mapping_overrides {
    yajl_val root;
};

int es_mapping_engine(const char *body, size_t len, es_engine *out, char *err, size_t errlen)
{
    yajl_val root;
    if (row_json_parse("the answer to GET /", body, len, 64, &root, err, errlen) < 0)
        return -1;
    if (!YAJL_IS_OBJECT(root)) {
        yajl_tree_free(root);
        snprintf(err, errlen, "the answer to GET / is not a JSON object");
        return -1;
    }
    const char *path[] = {"version", "distribution", NULL};
    yajl_val d = yajl_tree_get(root, path, yajl_t_string);
    *out = d && strcmp(d->u.string, "opensearch") == 0 ? ES_ENGINE_OPENSEARCH
                                                       : ES_ENGINE_ELASTICSEARCH;
    yajl_tree_free(root);
    return 0;
}

/* `type` without its typmods ("(10,2)", "(3)") and array brackets, into
 * base; the numeric typmod into *p, *s (-1 when absent). */
static void type_base(const char *type, char *base, size_t baselen, int *p, int *s)
{
    size_t j = 0;
    *p = *s = -1;
    for (const char *c = type; *c && j + 1 < baselen; c++) {
        if (*c == '(') {
            int a = -1, b = -1;
            if (sscanf(c, "(%d,%d)", &a, &b) == 2 || sscanf(c, "(%d)", &a) == 1) {
                *p = a;
                *s = b < 0 ? 0 : b;
            }
            const char *close = strchr(c, ')');
            if (!close)
                break;
            c = close;
            continue;
        }
        if (*c == '[')
            break;
        base[j++] = *c;
    }
    while (j > 0 && base[j - 1] == ' ')
        j--;
    base[j] = '\0';
}

static bool is(const char *base, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(base, *names) == 0)
            return true;
    return false;
}

int es_mapping_field(es_engine engine, const char *type, cdc_buf *out)
{
    static const char *const texts[] = {"text", "character varying", "character", "\"char\"",
                                        "name", "citext", NULL};
    static const char *const dates[] = {"date", "timestamp without time zone",
                                        "timestamp with time zone", NULL};
    static const char *const floats[] = {"real", "double precision", NULL};
    char base[128];
    int p, s;
    if (strncmp(type, "enum ", 5) == 0)
        return cdc_buf_puts(out, "{\"type\":\"keyword\"}");
    type_base(type, base, sizeof base, &p, &s);
    if (is(base, texts))
        return cdc_buf_puts(out, "{\"type\":\"text\",\"fields\":{\"keyword\":{\"type\":\"keyword\","
                                 "\"ignore_above\":" KEYWORD_IGNORE_ABOVE "}}}");
    if (strcmp(base, "smallint") == 0)
        return cdc_buf_puts(out, "{\"type\":\"short\",\"ignore_malformed\":true}");
    if (strcmp(base, "integer") == 0)
        return cdc_buf_puts(out, "{\"type\":\"integer\",\"ignore_malformed\":true}");
    if (strcmp(base, "bigint") == 0 || strcmp(base, "oid") == 0)
        return cdc_buf_puts(out, "{\"type\":\"long\",\"ignore_malformed\":true}");
    if (is(base, floats))
        return cdc_buf_puts(out, "{\"type\":\"double\",\"ignore_malformed\":true}");
    if (strcmp(base, "numeric") == 0) {
        if (p > 0 && p <= SCALED_MAX_PRECISION && s >= 0 && s <= p) {
            if (cdc_buf_puts(out, "{\"type\":\"scaled_float\",\"scaling_factor\":1") < 0)
                return -1;
            for (int i = 0; i < s; i++)
                if (cdc_buf_putc(out, '0') < 0)
                    return -1;
            return cdc_buf_puts(out, ",\"ignore_malformed\":true}");
        }
        return cdc_buf_puts(out, "{\"type\":\"double\",\"ignore_malformed\":true}");
    }
    if (strcmp(base, "boolean") == 0)
        return cdc_buf_puts(out, "{\"type\":\"boolean\"}");
    if (is(base, dates))
        return cdc_buf_puts(out, "{\"type\":\"date\",\"format\":\"" DATE_FORMAT "\","
                                 "\"ignore_malformed\":true}");
    if (strcmp(base, "uuid") == 0)
        return cdc_buf_puts(out, "{\"type\":\"keyword\"}");
    if (strcmp(base, "inet") == 0)
        return cdc_buf_puts(out, "{\"type\":\"ip\",\"ignore_malformed\":true}");
    if (strcmp(base, "json") == 0 || strcmp(base, "jsonb") == 0)
        return cdc_buf_puts(out, engine == ES_ENGINE_OPENSEARCH
                                     ? "{\"type\":\"flat_object\"}"
                                     : "{\"type\":\"object\",\"enabled\":false}");
    if (strcmp(base, "bytea") == 0)
        return cdc_buf_puts(out, "{\"type\":\"binary\"}");
    /* time, interval, money, cidr, ranges, composites, extension types...:
     * EVENTS.md sends them as strings. */
    return cdc_buf_puts(out, "{\"type\":\"keyword\",\"ignore_above\":" KEYWORD_IGNORE_ABOVE "}");
}

/* ---- overrides ------------------------------------------------------- */

int es_mapping_overrides_parse(const char *json, size_t len, es_mapping_overrides **out,
                               char *err, size_t errlen)
{
    *out = NULL;
    char perr[256];
    yajl_val root;
    /* Strict first (UTF-8 above all): names and settings go out as they are. */
    if (cdc_json_validate(json, len, perr, sizeof perr) < 0) {
        snprintf(err, errlen, "--es-mappings: the file is not JSON: %s", perr);
        return -1;
    }
    if (row_json_parse("the file", json, len, CDC_JSON_MAX_DEPTH, &root, perr, sizeof perr) < 0) {
        snprintf(err, errlen, "--es-mappings: %s", perr);
        return -1;
    }
    const char *why = NULL, *where = "";
    if (!YAJL_IS_OBJECT(root))
        why = "the file is not a JSON object of \"<schema>.<table>\" or \"*\" to settings "
              "and properties";
    for (size_t i = 0; !why && i < root->u.object.len; i++) {
        yajl_val t = root->u.object.values[i];
        where = root->u.object.keys[i];
        if (!YAJL_IS_OBJECT(t)) {
            why = "is not an object";
            break;
        }
        for (size_t k = 0; k < t->u.object.len; k++) {
            const char *key = t->u.object.keys[k];
            if (strcmp(key, "settings") != 0 && strcmp(key, "properties") != 0) {
                why = "has a field other than \"settings\" and \"properties\"";
                break;
            }
            if (!YAJL_IS_OBJECT(t->u.object.values[k])) {
                why = strcmp(key, "settings") == 0 ? "settings is not an object"
                                                    : "properties is not an object";
                break;
            }
        }
    }
    if (why) {
        snprintf(err, errlen, "--es-mappings: %s%s%s%s", *where ? "\"" : "", where,
                 *where ? "\" " : "", why);
        yajl_tree_free(root);
        return -1;
    }
    es_mapping_overrides *o = calloc(1, sizeof *o);
    if (!o) {
        yajl_tree_free(root);
        snprintf(err, errlen, "--es-mappings: out of memory");
        return -1;
    }
    o->root = root;
    *out = o;
    return 0;
}

void es_mapping_overrides_free(es_mapping_overrides *o)
{
    if (!o)
        return;
    yajl_tree_free(o->root);
    free(o);
}

/* The field `name` of the table's entry ("<schema>.<table>", else "*"). */
static yajl_val override_get(const es_mapping_overrides *o, const char *schema,
                             const char *table, const char *name)
{
    if (!o)
        return NULL;
    yajl_val star = NULL, mine = NULL;
    size_t ls = strlen(schema);
    for (size_t i = 0; i < o->root->u.object.len; i++) {
        const char *k = o->root->u.object.keys[i];
        if (strcmp(k, "*") == 0)
            star = o->root->u.object.values[i];
        else if (strncmp(k, schema, ls) == 0 && k[ls] == '.' && strcmp(k + ls + 1, table) == 0)
            mine = o->root->u.object.values[i];
    }
    const char *path[] = {name, NULL};
    yajl_val v = mine ? yajl_tree_get(mine, path, yajl_t_object) : NULL;
    return v ? v : star ? yajl_tree_get(star, path, yajl_t_object) : NULL;
}

static bool props_have(yajl_val props, const char *col)
{
    if (!props)
        return false;
    for (size_t i = 0; i < props->u.object.len; i++)
        if (strcmp(props->u.object.keys[i], col) == 0)
            return true;
    return false;
}

/* ---- bodies ---------------------------------------------------------- */

void es_mapping_known_free(es_mapping_known *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->n; i++) {
        free(k->cols[i]);
        free(k->types[i]);
    }
    free(k->cols);
    free(k->types);
    memset(k, 0, sizeof *k);
}

static long known_find(const es_mapping_known *k, const char *col)
{
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->cols[i], col) == 0)
            return (long)i;
    return -1;
}

static int known_set(es_mapping_known *k, const char *col, const char *type)
{
    long i = known_find(k, col);
    char *t = strdup(type);
    if (!t)
        return -1;
    if (i >= 0) {
        free(k->types[i]);
        k->types[i] = t;
        return 0;
    }
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 16;
        char **c = realloc(k->cols, cap * sizeof *c);
        if (c)
            k->cols = c;
        char **ty = c ? realloc(k->types, cap * sizeof *ty) : NULL;
        if (ty)
            k->types = ty;
        if (!c || !ty) {
            free(t);
            return -1;
        }
        k->cap = cap;
    }
    if (!(k->cols[k->n] = strdup(col))) {
        free(t);
        return -1;
    }
    k->types[k->n++] = t;
    return 0;
}

/* "<name>":<mapping>, preceded by a comma unless first. */
static int put_field(cdc_buf *out, bool *first, const char *name, const char *mapping_type,
                     yajl_val mapping, es_engine engine)
{
    if ((!*first && cdc_buf_putc(out, ',') < 0) ||
        row_json_put_string(out, name, strlen(name)) < 0 || cdc_buf_putc(out, ':') < 0)
        return -1;
    *first = false;
    return mapping ? row_json_put_value(out, mapping) : es_mapping_field(engine, mapping_type, out);
}

/* The columns of `types` and the override's properties: those of `types`
 * not in *known when only_new, each recorded in *known. */
static int put_columns(es_engine engine, yajl_val types, yajl_val props, es_mapping_known *known,
                       bool only_new, cdc_buf *out, cdc_buf *changed, bool *first)
{
    for (size_t i = 0; types && i < types->u.object.len; i++) {
        const char *col = types->u.object.keys[i];
        const char *type = types->u.object.values[i]->u.string;
        if (props_have(props, col) || (col[0] == '_' && strncmp(col, "_pgcdc_", 7) == 0)) {
            /* The user's mapping, or pgcdc's own field: not derived, only
             * recorded, so es_mapping_unchanged holds. */
            if (known_set(known, col, type) < 0)
                return -1;
            continue;
        }
        long k = known_find(known, col);
        if (only_new && k >= 0) {
            if (strcmp(known->types[k], type) != 0) {
                if (cdc_buf_printf(changed, "%s (%s -> %s); ", col, known->types[k], type) < 0 ||
                    known_set(known, col, type) < 0)
                    return -1;
            }
            continue;
        }
        if (put_field(out, first, col, type, NULL, engine) < 0 || known_set(known, col, type) < 0)
            return -1;
    }
    if (only_new)
        return 0;
    for (size_t i = 0; props && i < props->u.object.len; i++)
        if (put_field(out, first, props->u.object.keys[i], NULL, props->u.object.values[i],
                      engine) < 0)
            return -1;
    return 0;
}

int es_mapping_index_body(es_engine engine, yajl_val types, const es_mapping_overrides *o,
                          const char *schema, const char *table, es_mapping_known *known,
                          cdc_buf *out, char *err, size_t errlen)
{
    yajl_val settings = override_get(o, schema, table, "settings");
    yajl_val props = override_get(o, schema, table, "properties");
    bool first = true;
    if (cdc_buf_putc(out, '{') < 0 ||
        (settings && (cdc_buf_puts(out, "\"settings\":") < 0 ||
                      row_json_put_value(out, settings) < 0 || cdc_buf_putc(out, ',') < 0)) ||
        cdc_buf_printf(out, "\"mappings\":{\"dynamic\":%s,\"properties\":{",
                       types ? "false" : "true") < 0 ||
        cdc_buf_puts(out, "\"" ES_FIELD_LSN "\":{\"type\":\"long\"},"
                          "\"" ES_FIELD_DELETED "\":{\"type\":\"boolean\"},"
                          "\"" ES_FIELD_UNINDEXED "\":{\"type\":\"object\",\"enabled\":false}") < 0)
        goto oom;
    first = false;
    if (put_columns(engine, types, props, known, false, out, NULL, &first) < 0 ||
        cdc_buf_puts(out, "}}}") < 0)
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "cannot build the mapping of %s.%s: out of memory", schema, table);
    return -1;
}

bool es_mapping_unchanged(const es_mapping_known *k, yajl_val types)
{
    if (!types)
        return true;
    if (types->u.object.len != k->n)
        return false;
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->cols[i], types->u.object.keys[i]) != 0 ||
            strcmp(k->types[i], types->u.object.values[i]->u.string) != 0)
            return false;
    return true;
}

int es_mapping_extend(es_engine engine, yajl_val types, const es_mapping_overrides *o,
                      const char *schema, const char *table, es_mapping_known *known,
                      cdc_buf *add, cdc_buf *changed, char *err, size_t errlen)
{
    if (es_mapping_unchanged(known, types))
        return 0;
    yajl_val props = override_get(o, schema, table, "properties");
    size_t start = add->len;
    bool first = true;
    if (cdc_buf_puts(add, "{\"properties\":{") < 0 ||
        put_columns(engine, types, props, known, true, add, changed, &first) < 0 ||
        cdc_buf_puts(add, "}}") < 0) {
        snprintf(err, errlen, "cannot extend the mapping of %s.%s: out of memory", schema, table);
        return -1;
    }
    if (first)
        cdc_buf_truncate(add, start);
    /* *known now mirrors `types`, in its order, so that the next event with
     * the same types passes es_mapping_unchanged; a column dropped from the
     * table leaves it (were it added again with another type, the engine
     * would refuse the field and the caller report it). */
    es_mapping_known now = {0};
    for (size_t i = 0; i < types->u.object.len; i++)
        if (known_set(&now, types->u.object.keys[i], types->u.object.values[i]->u.string) < 0) {
            es_mapping_known_free(&now);
            snprintf(err, errlen, "cannot extend the mapping of %s.%s: out of memory", schema,
                     table);
            return -1;
        }
    es_mapping_known_free(known);
    *known = now;
    return 0;
}
