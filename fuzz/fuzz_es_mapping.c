/* fuzz_es_mapping.c: libFuzzer target for consumer/es_mapping.c, which reads
 * the --es-mappings file and the "types" of every event: on any input no
 * crash, no leak, and every body it builds is one valid JSON value. The
 * input is tried as an overrides file, and (when it is a JSON object of
 * strings, as the event decoder lets through) as the types of a table,
 * with and without the overrides, created and then extended. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_json.h"
#include "es_mapping.h"
#include "row_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const cdc_buf *b)
{
    char err[128];
    if (b->len && cdc_json_validate(b->data, b->len, err, sizeof err) < 0)
        abort();
}

static void bodies(yajl_val types, const es_mapping_overrides *o, es_engine e)
{
    static const char first[] = "{\"id\":\"integer\",\"x\":\"text\"}";
    yajl_val before = NULL;
    char err[256];
    if (row_json_parse("seed", first, sizeof first - 1, 8, &before, err, sizeof err) < 0)
        abort();
    es_mapping_known k = {0};
    cdc_buf b = CDC_BUF_INIT, add = CDC_BUF_INIT, changed = CDC_BUF_INIT;
    if (es_mapping_index_body(e, before, o, "public", "t", &k, &b, err, sizeof err) < 0)
        abort();
    check(&b);
    if (es_mapping_extend(e, types, o, "public", "t", &k, &add, &changed, err, sizeof err) == 0)
        check(&add);
    /* Extended once, the same types are known (column names are unique in
     * what a producer sends; a repeated one is merged). */
    bool unique = true;
    for (size_t i = 0; unique && i < types->u.object.len; i++)
        for (size_t j = 0; unique && j < i; j++)
            unique = strcmp(types->u.object.keys[i], types->u.object.keys[j]) != 0;
    if (unique && !es_mapping_unchanged(&k, types))
        abort();
    es_mapping_known_free(&k);
    cdc_buf_reset(&b);
    if (es_mapping_index_body(e, types, o, "s", "t", &k, &b, err, sizeof err) == 0)
        check(&b);
    es_mapping_known_free(&k);
    cdc_buf_free(&b);
    cdc_buf_free(&add);
    cdc_buf_free(&changed);
    yajl_tree_free(before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    es_mapping_overrides *o = NULL;
    if (es_mapping_overrides_parse((const char *)data, size, &o, err, sizeof err) < 0 && o)
        abort();
    yajl_val types = NULL;
    /* Types reach the mapping through cdc_event_decode, which validates. */
    if (cdc_json_validate((const char *)data, size, err, sizeof err) == 0 &&
        row_json_parse("input", (const char *)data, size, CDC_JSON_MAX_DEPTH, &types, err,
                       sizeof err) == 0 && YAJL_IS_OBJECT(types)) {
        bool strings = true;
        for (size_t i = 0; i < types->u.object.len; i++)
            strings &= YAJL_IS_STRING(types->u.object.values[i]);
        if (strings) {
            bodies(types, NULL, ES_ENGINE_OPENSEARCH);
            bodies(types, o, ES_ENGINE_ELASTICSEARCH);
        }
    }
    if (o) {
        cdc_buf b = CDC_BUF_INIT;
        es_mapping_known k = {0};
        if (es_mapping_index_body(ES_ENGINE_OPENSEARCH, NULL, o, "public", "items", &k, &b, err,
                                  sizeof err) == 0)
            check(&b);
        es_mapping_known_free(&k);
        cdc_buf_free(&b);
    }
    yajl_tree_free(types);
    es_mapping_overrides_free(o);
    return 0;
}
