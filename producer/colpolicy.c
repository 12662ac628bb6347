/* colpolicy.c: the column rules of --exclude-columns, --include-columns and
 * --hash-columns (see colpolicy.h). Few rules, looked up once per relation
 * (the callers cache the answer per column), so a linear search is enough. */
#include "colpolicy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "cdc_event.h"
#include "sha256.h"

enum rule_kind { RULE_EXCLUDE, RULE_INCLUDE, RULE_HASH };

static const char *const kind_option[] = {"exclude-columns", "include-columns",
                                          "hash-columns"};

typedef struct rule {
    char *schema, *table, *column;
    enum rule_kind kind;
} rule;

struct colpolicy {
    rule *rules;
    size_t n;
    cdc_hmac_sha256_key key;
};

/* "schema.table.column" split at the first and the last '.'. */
static int split_item(const char *s, size_t *dot1, size_t *dot2)
{
    const char *a = strchr(s, '.'), *b = strrchr(s, '.');
    if (!a || a == b || a == s || b == a + 1 || b[1] == '\0')
        return -1;
    *dot1 = (size_t)(a - s);
    *dot2 = (size_t)(b - s);
    return 0;
}

int colpolicy_check_item(const char *value, char *err, size_t errlen)
{
    size_t d1, d2;
    if (split_item(value, &d1, &d2) < 0) {
        snprintf(err, errlen, "is not SCHEMA.TABLE.COLUMN");
        return -1;
    }
    return 0;
}

static bool same(const rule *r, const char *schema, const char *table)
{
    return strcmp(r->schema, schema) == 0 && strcmp(r->table, table) == 0;
}

static int add_rules(colpolicy *p, const char *const *items, size_t n, enum rule_kind kind,
                     char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        size_t d1, d2;
        if (split_item(items[i], &d1, &d2) < 0) {
            snprintf(err, errlen, "--%s: \"%s\" is not SCHEMA.TABLE.COLUMN", kind_option[kind],
                     items[i]);
            return -1;
        }
        rule r = {.kind = kind};
        r.schema = strndup(items[i], d1);
        r.table = strndup(items[i] + d1 + 1, d2 - d1 - 1);
        r.column = strdup(items[i] + d2 + 1);
        if (!r.schema || !r.table || !r.column) {
            free(r.schema);
            free(r.table);
            free(r.column);
            snprintf(err, errlen, "--%s: out of memory", kind_option[kind]);
            return -1;
        }
        for (size_t j = 0; j < p->n; j++) {
            const rule *o = &p->rules[j];
            if (!same(o, r.schema, r.table) || strcmp(o->column, r.column) != 0)
                continue;
            if (o->kind == kind)
                break; /* named twice in one list: harmless */
            /* Include and hash together mean "send it hashed"; every other
             * pair contradicts itself. */
            if ((o->kind == RULE_INCLUDE && kind == RULE_HASH) ||
                (o->kind == RULE_HASH && kind == RULE_INCLUDE))
                continue;
            snprintf(err, errlen, "column %s is named by both --%s and --%s", items[i],
                     kind_option[o->kind], kind_option[kind]);
            free(r.schema);
            free(r.table);
            free(r.column);
            return -1;
        }
        p->rules[p->n++] = r;
    }
    return 0;
}

int colpolicy_new(const colpolicy_settings *s, colpolicy **out, char *err, size_t errlen)
{
    *out = NULL;
    size_t total = s->nexclude + s->ninclude + s->nhash;
    if (total == 0)
        return 0;
    if (s->nhash > 0 && s->keylen < COLPOLICY_MIN_KEY) {
        if (s->keylen == 0)
            snprintf(err, errlen, "--hash-columns needs a key: --hash-key-file");
        else
            snprintf(err, errlen, "--hash-key-file: the key has %zu bytes, fewer than %d (a "
                     "short key can be guessed, and with it every hashed value)", s->keylen,
                     COLPOLICY_MIN_KEY);
        return -1;
    }
    colpolicy *p = calloc(1, sizeof *p);
    if (!p || !(p->rules = calloc(total, sizeof *p->rules))) {
        free(p);
        snprintf(err, errlen, "column rules: out of memory");
        return -1;
    }
    if (add_rules(p, s->exclude, s->nexclude, RULE_EXCLUDE, err, errlen) < 0 ||
        add_rules(p, s->include, s->ninclude, RULE_INCLUDE, err, errlen) < 0 ||
        add_rules(p, s->hash, s->nhash, RULE_HASH, err, errlen) < 0) {
        colpolicy_free(p);
        return -1;
    }
    cdc_hmac_sha256_init(&p->key, s->key, s->keylen);
    *out = p;
    return 0;
}

void colpolicy_free(colpolicy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->rules[i].schema);
        free(p->rules[i].table);
        free(p->rules[i].column);
    }
    free(p->rules);
    /* The prepared key is as secret as the key itself. */
    memset(&p->key, 0, sizeof p->key);
    free(p);
}

int colpolicy_column(const colpolicy *p, const char *schema, const char *table,
                     const char *column, bool is_key, colpolicy_action *action, char *err,
                     size_t errlen)
{
    *action = COLPOLICY_KEEP;
    if (!p)
        return 0;
    bool has_include = false, included = false, excluded = false, hashed = false;
    for (size_t i = 0; i < p->n; i++) {
        const rule *r = &p->rules[i];
        if (!same(r, schema, table))
            continue;
        bool named = strcmp(r->column, column) == 0;
        if (r->kind == RULE_INCLUDE) {
            has_include = true;
            included |= named;
        } else if (named) {
            excluded |= r->kind == RULE_EXCLUDE;
            hashed |= r->kind == RULE_HASH;
        }
    }
    if (excluded && is_key) {
        snprintf(err, errlen, "--exclude-columns %s.%s.%s: the column is part of the table's "
                 "record key, which every event and sink needs; send it hashed "
                 "(--hash-columns) instead", schema, table, column);
        return -1;
    }
    if (hashed)
        *action = COLPOLICY_HASH;
    else if (excluded || (has_include && !included && !is_key))
        *action = COLPOLICY_DROP;
    return 0;
}

bool colpolicy_has_table(const colpolicy *p, const char *schema, const char *table)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (same(&p->rules[i], schema, table))
            return true;
    return false;
}

int colpolicy_append_hash(const colpolicy *p, const char *text, size_t len, cdc_buf *out)
{
    uint8_t d[32];
    char hex[2 * sizeof d + 1];
    cdc_hmac_sha256(&p->key, text, len, d);
    cdc_hex(d, sizeof d, hex);
    if (cdc_buf_putc(out, '"') < 0 || cdc_buf_append(out, hex, 2 * sizeof d) < 0 ||
        cdc_buf_putc(out, '"') < 0)
        return -1;
    return 0;
}

size_t colpolicy_count(const colpolicy *p)
{
    return p ? p->n : 0;
}

void colpolicy_rule(const colpolicy *p, size_t i, const char **schema, const char **table,
                    const char **column, const char **option)
{
    const rule *r = &p->rules[i];
    *schema = r->schema;
    *table = r->table;
    *column = r->column;
    *option = kind_option[r->kind];
}

int colpolicy_types(char **types, size_t *len, const char *const *names, const bool *hashed,
                    size_t n, char *err, size_t errlen)
{
    char *text = malloc(*len + 1);
    const char **texts = calloc(n ? n : 1, sizeof *texts);
    const char **kept = calloc(n ? n : 1, sizeof *kept);
    cdc_buf out = CDC_BUF_INIT;
    yajl_val root = NULL;
    int rc = -1;
    if (!text || !texts || !kept) {
        snprintf(err, errlen, "cannot describe the column types: out of memory");
        goto done;
    }
    memcpy(text, *types, *len);
    text[*len] = '\0';
    char perr[128];
    root = yajl_tree_parse(text, perr, sizeof perr);
    if (!YAJL_IS_OBJECT(root)) {
        snprintf(err, errlen, "cannot describe the column types: not an object (%s)", perr);
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < root->u.object.len; j++) {
            yajl_val v = root->u.object.values[j];
            if (strcmp(root->u.object.keys[j], names[i]) != 0 || !YAJL_IS_STRING(v))
                continue;
            kept[k] = names[i];
            texts[k++] = hashed[i] ? COLPOLICY_HASH_TYPE : YAJL_GET_STRING(v);
            break;
        }
    }
    if (cdc_types_encode(kept, texts, k, &out, err, errlen) < 0)
        goto done;
    free(*types);
    *len = out.len;
    *types = cdc_buf_steal(&out);
    rc = 0;
done:
    cdc_buf_free(&out);
    yajl_tree_free(root);
    free(text);
    free(texts);
    free(kept);
    return rc;
}
