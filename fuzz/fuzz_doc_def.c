/* fuzz_doc_def.c: libFuzzer target for the --documents definition
 * (consumer/doc_def.c) and the SQL and mapping built from what parses
 * (consumer/doc_sql.c). Checks: no crash or leak; a refusal always says why;
 * every parsed definition yields its read query and one root query per
 * node that needs one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "doc_def.h"
#include "doc_sql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *any_type(void *ctx, const char *schema, const char *table, const char *column)
{
    (void)ctx;
    (void)schema;
    (void)table;
    return column[0] % 2 ? "integer" : "numeric(10,2)";
}

static int each_node(const doc_type *t, const doc_node *n, void *ctx)
{
    (void)t;
    (void)ctx;
    if (n->kind == DOC_ROOT)
        return 0;
    cdc_buf sql = CDC_BUF_INIT;
    bool direct = false;
    doc_values v = n->kind == DOC_PARENT || n->kind == DOC_MANY ? DOC_VALUES_KEY
                                                                : DOC_VALUES_UP_KEY;
    if (doc_sql_roots(n, v, &sql, &direct) < 0 || (!direct && sql.len == 0))
        abort();
    cdc_buf_free(&sql);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    doc_def *d = NULL;
    char err[512] = "";
    if (doc_def_parse("fuzz.json", (const char *)data, size, &d, err, sizeof err) < 0) {
        if (!err[0] || d)
            abort();
        return 0;
    }
    for (size_t i = 0; i < d->ntypes; i++) {
        cdc_buf sql = CDC_BUF_INIT, m = CDC_BUF_INIT;
        if (doc_sql_read(&d->types[i], DOC_READ_KEYS, &sql) < 0 ||
            doc_mapping_body(ES_ENGINE_ELASTICSEARCH, &d->types[i], any_type, NULL, &m, err,
                             sizeof err) < 0)
            abort();
        cdc_buf_free(&sql);
        cdc_buf_free(&m);
    }
    doc_def_walk(d, each_node, NULL);
    doc_def_free(d);
    return 0;
}
