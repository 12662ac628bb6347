/* es_index.c: index names from --es-index templates, the physical index
 * behind a name's alias, the body creating both, GET /_alias and
 * _settings answers, and the body moving an alias (es_index.h says the
 * rules). */
#include "es_index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_bulk.h"
#include "row_json.h"

typedef struct es_index_rule {
    char *table;        /* "schema.table", or NULL for the template */
    char *tmpl;
} es_index_rule;

struct es_index_rules {
    char *prefix;
    es_index_rule *rules;
    size_t n;
    const es_index_rule *all;   /* the template for every other table, or NULL */
};

/* Expands tmpl into out (out may be NULL: only checks). Returns 0, or -1
 * with err set. */
static int expand(const char *tmpl, const char *schema, const char *table, cdc_buf *out,
                  char *err, size_t errlen)
{
    if (!*tmpl) {
        snprintf(err, errlen, "an empty index name");
        return -1;
    }
    for (const char *c = tmpl; *c;) {
        if (c[0] == '{' && c[1] == '{') {
            if (out && cdc_buf_putc(out, '{') < 0)
                goto nomem;
            c += 2;
        } else if (c[0] == '}' && c[1] == '}') {
            if (out && cdc_buf_putc(out, '}') < 0)
                goto nomem;
            c += 2;
        } else if (strncmp(c, "{schema}", 8) == 0) {
            if (out && cdc_buf_puts(out, schema) < 0)
                goto nomem;
            c += 8;
        } else if (strncmp(c, "{table}", 7) == 0) {
            if (out && cdc_buf_puts(out, table) < 0)
                goto nomem;
            c += 7;
        } else if (*c == '{' || *c == '}') {
            snprintf(err, errlen, "\"%s\": a brace at offset %zu that is not {schema}, {table}, "
                     "{{ or }}", tmpl, (size_t)(c - tmpl));
            return -1;
        } else {
            if (out && cdc_buf_putc(out, *c) < 0)
                goto nomem;
            c++;
        }
    }
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

int es_index_value_check(const char *value, char *err, size_t errlen)
{
    const char *eq = strchr(value, '=');
    if (eq) {
        const char *dot = memchr(value, '.', (size_t)(eq - value));
        if (!dot || dot == value || dot + 1 == eq) {
            snprintf(err, errlen, "\"%s\": an override is SCHEMA.TABLE=TEMPLATE", value);
            return -1;
        }
    }
    return expand(eq ? eq + 1 : value, "", "", NULL, err, errlen);
}

void es_index_rules_free(es_index_rules *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->rules[i].table);
        free(r->rules[i].tmpl);
    }
    free(r->rules);
    free(r->prefix);
    free(r);
}

es_index_rules *es_index_rules_new(const char *prefix, const char *const *values, size_t n,
                                   char *err, size_t errlen)
{
    es_index_rules *r = calloc(1, sizeof *r);
    if (!r || !(r->prefix = strdup(prefix ? prefix : "")) ||
        (n && !(r->rules = calloc(n, sizeof *r->rules))))
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        char verr[512];
        if (es_index_value_check(values[i], verr, sizeof verr) < 0) {
            snprintf(err, errlen, "--es-index: %s", verr);
            goto fail;
        }
        es_index_rule *u = &r->rules[r->n++];
        const char *eq = strchr(values[i], '=');
        if (eq ? !(u->table = strndup(values[i], (size_t)(eq - values[i]))) ||
                     !(u->tmpl = strdup(eq + 1))
               : !(u->tmpl = strdup(values[i])))
            goto nomem;
        if (!eq) {
            if (r->all) {
                snprintf(err, errlen, "--es-index: two templates for every table (\"%s\" and "
                         "\"%s\"); give one, and SCHEMA.TABLE=TEMPLATE for the others",
                         r->all->tmpl, u->tmpl);
                goto fail;
            }
            r->all = u;
        }
    }
    return r;
nomem:
    snprintf(err, errlen, "cannot read --es-index: out of memory");
fail:
    es_index_rules_free(r);
    return NULL;
}

int es_index_rules_name(const es_index_rules *r, const char *schema, const char *table,
                        cdc_buf *out, bool *changed)
{
    const es_index_rule *use = r->all;
    size_t ls = strlen(schema);
    for (size_t i = 0; i < r->n; i++) {
        const char *t = r->rules[i].table;
        if (t && strncmp(t, schema, ls) == 0 && t[ls] == '.' && strcmp(t + ls + 1, table) == 0) {
            use = &r->rules[i];
            break;
        }
    }
    cdc_buf raw = CDC_BUF_INIT;
    char err[64];
    int rc = -1;
    if (use ? expand(use->tmpl, schema, table, &raw, err, sizeof err) < 0
            : cdc_buf_printf(&raw, "%s%s.%s", r->prefix, schema, table) < 0)
        goto done;
    rc = es_index_valid(raw.data, ES_INDEX_MAX - ES_VERSION_SUFFIX_MAX, out, changed);
done:
    cdc_buf_free(&raw);
    return rc;
}

int es_path_put_index(cdc_buf *path, const char *index)
{
    static const char hex[] = "0123456789ABCDEF";
    if (cdc_buf_putc(path, '/') < 0)
        return -1;
    for (const unsigned char *c = (const unsigned char *)index; *c; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_' || *c == '~';
        if (plain ? cdc_buf_putc(path, (char)*c) < 0
                  : cdc_buf_printf(path, "%%%c%c", hex[*c >> 4], hex[*c & 15]) < 0)
            return -1;
    }
    return 0;
}

int es_index_physical(const char *name, unsigned version, cdc_buf *out)
{
    return cdc_buf_printf(out, "%s_v%u", name, version);
}

int es_index_create_body(const char *create_body, const char *alias, bool filtered,
                         cdc_buf *out)
{
    const char *end = strrchr(create_body, '}');
    const char *open = strchr(create_body, '{');
    if (!open || !end || end <= open)
        return -1;
    const char *last = end;
    while (last > open && strchr(" \t\r\n", last[-1]))
        last--;
    if (last == open + 1)
        return -1; /* {} */
    if (cdc_buf_append(out, create_body, (size_t)(end - create_body)) < 0 ||
        cdc_buf_puts(out, ",\"aliases\":{") < 0 || row_json_put_string(out, alias, strlen(alias)) < 0 ||
        cdc_buf_printf(out, ":{%s%s}}}", filtered ? "\"filter\":" : "",
                       filtered ? ES_LIVE_FILTER : "") < 0)
        return -1;
    return 0;
}

int es_alias_indices(const char *body, size_t len, cdc_buf *out, size_t *n, char *err,
                     size_t errlen)
{
    yajl_val root = NULL;
    *n = 0;
    if (row_json_parse("the answer of GET /_alias", body, len, 8, &root, err, errlen) < 0)
        return -1;
    int rc = -1;
    if (!YAJL_IS_OBJECT(root) || root->u.object.len == 0) {
        snprintf(err, errlen, "the answer of GET /_alias names no index");
        goto done;
    }
    for (size_t i = 0; i < root->u.object.len; i++) {
        if (cdc_buf_append(out, root->u.object.keys[i], strlen(root->u.object.keys[i]) + 1) < 0) {
            snprintf(err, errlen, "cannot read the answer of GET /_alias: out of memory");
            goto done;
        }
        (*n)++;
    }
    rc = 0;
done:
    yajl_tree_free(root);
    return rc;
}

unsigned es_index_version_of(const char *name, const char *physical)
{
    size_t ln = strlen(name);
    if (strncmp(physical, name, ln) != 0 || strncmp(physical + ln, "_v", 2) != 0)
        return 0;
    const char *d = physical + ln + 2;
    size_t nd = strspn(d, "0123456789");
    if (nd == 0 || nd > 6 || d[nd] != '\0' || d[0] == '0')
        return 0;
    return (unsigned)strtoul(d, NULL, 10);
}

int es_versions_read(const char *body, size_t len, const char *name, unsigned *current,
                     bool *next_exists, char *err, size_t errlen)
{
    yajl_val root = NULL;
    *current = 0;
    *next_exists = false;
    if (row_json_parse("the answer of GET /_alias", body, len, 8, &root, err, errlen) < 0)
        return -1;
    int rc = -1;
    if (!YAJL_IS_OBJECT(root)) {
        snprintf(err, errlen, "the answer of GET /_alias is not an object");
        goto done;
    }
    size_t on = 0;
    unsigned v = 0;
    for (size_t i = 0; i < root->u.object.len; i++) {
        yajl_val aliases = row_json_member(root->u.object.values[i], "aliases");
        if (YAJL_IS_OBJECT(aliases) && row_json_member(aliases, name)) {
            on++;
            v = es_index_version_of(name, root->u.object.keys[i]);
        }
    }
    if (on == 1 && v > 0) {
        *current = v;
        for (size_t i = 0; i < root->u.object.len; i++)
            if (es_index_version_of(name, root->u.object.keys[i]) == v + 1)
                *next_exists = true;
    }
    rc = 0;
done:
    yajl_tree_free(root);
    return rc;
}

unsigned es_versions_update(es_versions *known, const es_versions *answer)
{
    if (!answer) {
        unsigned changed = known->refused ? 0 : ES_VERSIONS_REFUSED;
        known->refused = true;
        return changed;
    }
    /* The version copied into is current + 1: it changes with either. */
    bool copied = known->next_exists && known->current;
    bool copies = answer->next_exists && answer->current;
    bool same_next = copied && copies && known->current == answer->current;
    unsigned changed = (known->refused ? ES_VERSIONS_ANSWERED : 0) |
                       (known->current && answer->current != known->current ? ES_VERSIONS_MOVED
                                                                            : 0) |
                       (copies && !same_next ? ES_VERSIONS_COPY_START : 0) |
                       (copied && !same_next ? ES_VERSIONS_COPY_STOP : 0);
    *known = *answer;
    known->refused = false;
    return changed;
}

int es_alias_switch_body(const char *alias, const char *from, const char *to, bool filtered,
                         cdc_buf *out)
{
    size_t la = strlen(alias);
    if (cdc_buf_puts(out, "{\"actions\":[{\"remove\":{\"index\":") < 0 ||
        row_json_put_string(out, from, strlen(from)) < 0 ||
        cdc_buf_puts(out, ",\"alias\":") < 0 || row_json_put_string(out, alias, la) < 0 ||
        cdc_buf_puts(out, "}},{\"add\":{\"index\":") < 0 ||
        row_json_put_string(out, to, strlen(to)) < 0 ||
        cdc_buf_puts(out, ",\"alias\":") < 0 || row_json_put_string(out, alias, la) < 0 ||
        cdc_buf_printf(out, "%s%s}}]}", filtered ? ",\"filter\":" : "",
                       filtered ? ES_LIVE_FILTER : "") < 0)
        return -1;
    return 0;
}

int es_refresh_interval_read(const char *body, size_t len, cdc_buf *out, char *err,
                             size_t errlen)
{
    yajl_val root = NULL;
    if (row_json_parse("the answer of GET /_settings", body, len, 8, &root, err, errlen) < 0)
        return -1;
    int rc = -1;
    /* The engines leave out an index without the setting: {} */
    if (!YAJL_IS_OBJECT(root) || root->u.object.len > 1 ||
        (root->u.object.len == 1 &&
         !YAJL_IS_OBJECT(row_json_member(root->u.object.values[0], "settings")))) {
        snprintf(err, errlen, "the answer of GET /_settings is not {\"<index>\":{\"settings\":"
                 "{..}}}");
        goto done;
    }
    yajl_val index = root->u.object.len == 0 ? NULL :
        row_json_member(row_json_member(root->u.object.values[0], "settings"), "index");
    yajl_val v = YAJL_IS_OBJECT(index) ? row_json_member(index, "refresh_interval") : NULL;
    if (v && !YAJL_IS_STRING(v)) {
        snprintf(err, errlen, "the answer of GET /_settings has a refresh_interval that is not "
                 "a string");
        goto done;
    }
    if (v ? row_json_put_string(out, v->u.string, strlen(v->u.string)) < 0
          : cdc_buf_puts(out, "null") < 0) {
        snprintf(err, errlen, "cannot read the answer of GET /_settings: out of memory");
        goto done;
    }
    rc = 0;
done:
    yajl_tree_free(root);
    return rc;
}
