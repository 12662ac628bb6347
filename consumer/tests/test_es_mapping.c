/* test_es_mapping.c: index mappings derived from EVENTS.md "types"
 * (consumer/es_mapping.h): one field per PostgreSQL type, the engine's
 * JSON type, the user's overrides, and extending a mapping by new columns. */
#include <stdlib.h>
#include <string.h>

#include "es_mapping.h"
#include "row_json.h"
#include "tap.h"

static char err[512];

/* The field mapping of one type text, as a string (static storage). */
static const char *field(es_engine e, const char *type)
{
    static cdc_buf b = CDC_BUF_INIT;
    cdc_buf_reset(&b);
    if (es_mapping_field(e, type, &b) < 0)
        return "(failed)";
    return b.data;
}

static yajl_val parse(const char *json)
{
    yajl_val v = NULL;
    if (row_json_parse("test", json, strlen(json), 64, &v, err, sizeof err) < 0)
        printf("# %s\n", err);
    return v;
}

static void test_fields(void)
{
    es_engine E = ES_ENGINE_ELASTICSEARCH, O = ES_ENGINE_OPENSEARCH;
    TAP_STREQ(field(E, "integer"), "{\"type\":\"integer\",\"ignore_malformed\":true}",
              "integer_is_integer");
    TAP_STREQ(field(E, "smallint"), "{\"type\":\"short\",\"ignore_malformed\":true}",
              "smallint_is_short");
    TAP_STREQ(field(E, "bigint"), "{\"type\":\"long\",\"ignore_malformed\":true}",
              "bigint_is_long");
    TAP_STREQ(field(E, "numeric(10,2)"),
              "{\"type\":\"scaled_float\",\"scaling_factor\":100,\"ignore_malformed\":true}",
              "numeric_with_scale_is_scaled_float_of_its_scale");
    TAP_STREQ(field(E, "numeric(12)"),
              "{\"type\":\"scaled_float\",\"scaling_factor\":1,\"ignore_malformed\":true}",
              "numeric_of_scale_0_is_scaled_float_of_1");
    TAP_STREQ(field(E, "numeric"), "{\"type\":\"double\",\"ignore_malformed\":true}",
              "numeric_without_typmod_is_double");
    TAP_STREQ(field(E, "numeric(30,4)"), "{\"type\":\"double\",\"ignore_malformed\":true}",
              "numeric_too_wide_for_a_scaled_long_is_double");
    TAP_STREQ(field(E, "double precision"), "{\"type\":\"double\",\"ignore_malformed\":true}",
              "float8_is_double");
    TAP_STREQ(field(E, "real"), "{\"type\":\"double\",\"ignore_malformed\":true}",
              "float4_is_double");
    TAP_STREQ(field(E, "boolean"), "{\"type\":\"boolean\"}", "boolean_is_boolean");
    const char *date = "{\"type\":\"date\",\"format\":\"strict_date_optional_time||epoch_millis\","
                       "\"ignore_malformed\":true}";
    TAP_STREQ(field(E, "date"), date, "date_is_date_ignoring_infinity_and_bc");
    TAP_STREQ(field(E, "timestamp(3) without time zone"), date, "timestamp_with_precision_is_date");
    TAP_STREQ(field(E, "timestamp with time zone"), date, "timestamptz_is_date");
    const char *text = "{\"type\":\"text\",\"fields\":{\"keyword\":{\"type\":\"keyword\","
                       "\"ignore_above\":256}}}";
    TAP_STREQ(field(E, "text"), text, "text_is_text_with_keyword");
    TAP_STREQ(field(E, "character varying(40)"), text, "varchar_is_text_with_keyword");
    TAP_STREQ(field(E, "uuid"), "{\"type\":\"keyword\"}", "uuid_is_keyword");
    TAP_STREQ(field(E, "enum mood"), "{\"type\":\"keyword\"}", "enum_is_keyword");
    TAP_STREQ(field(E, "enum \"Odd Name\"[]"), "{\"type\":\"keyword\"}",
              "enum_array_is_keyword");
    TAP_STREQ(field(E, "inet"), "{\"type\":\"ip\",\"ignore_malformed\":true}", "inet_is_ip");
    TAP_STREQ(field(E, "integer[]"), "{\"type\":\"integer\",\"ignore_malformed\":true}",
              "array_is_its_element_type");
    TAP_STREQ(field(E, "numeric(5,1)[][]"),
              "{\"type\":\"scaled_float\",\"scaling_factor\":10,\"ignore_malformed\":true}",
              "multi_dimensional_array_is_its_element_type");
    TAP_STREQ(field(E, "jsonb"), "{\"type\":\"object\",\"enabled\":false}",
              "jsonb_on_elasticsearch_is_an_unparsed_object");
    TAP_STREQ(field(O, "jsonb"), "{\"type\":\"flat_object\"}", "jsonb_on_opensearch_is_flat_object");
    TAP_STREQ(field(O, "json"), "{\"type\":\"flat_object\"}", "json_on_opensearch_is_flat_object");
    TAP_STREQ(field(E, "interval"), "{\"type\":\"keyword\",\"ignore_above\":256}",
              "other_types_are_keywords");
}

static void test_engine(void)
{
    es_engine e = ES_ENGINE_ELASTICSEARCH;
    const char *os = "{\"version\":{\"distribution\":\"opensearch\",\"number\":\"2.19.1\"}}";
    const char *es = "{\"version\":{\"number\":\"7.10.2\",\"build_flavor\":\"default\"}}";
    TAP_OK(es_mapping_engine(os, strlen(os), &e, err, sizeof err) == 0 &&
           e == ES_ENGINE_OPENSEARCH, "engine_opensearch_from_distribution");
    TAP_OK(es_mapping_engine(es, strlen(es), &e, err, sizeof err) == 0 &&
           e == ES_ENGINE_ELASTICSEARCH, "engine_elasticsearch_without_distribution");
    TAP_OK(es_mapping_engine("[1]", 3, &e, err, sizeof err) == -1 && strstr(err, "GET /"),
           "engine_rejects_a_body_that_is_not_an_object");
}

static void test_bodies(void)
{
    yajl_val types = parse("{\"id\":\"integer\",\"name\":\"text\",\"price\":\"numeric(10,2)\"}");
    const char *ov = "{\"public.items\":{\"settings\":{\"number_of_replicas\":0},"
                     "\"properties\":{\"name\":{\"type\":\"keyword\"},\"extra\":{\"type\":\"long\"}}},"
                     "\"*\":{\"settings\":{\"number_of_shards\":2}}}";
    es_mapping_overrides *o = NULL;
    TAP_OK(es_mapping_overrides_parse(ov, strlen(ov), &o, err, sizeof err) == 0 && o,
           "overrides_parse");
    es_mapping_known k = {0};
    cdc_buf b = CDC_BUF_INIT;
    TAP_OK(es_mapping_index_body(ES_ENGINE_OPENSEARCH, types, NULL, "public", "items", &k, &b, err,
                                 sizeof err) == 0, "index_body_builds");
    TAP_STREQ(b.data,
              "{\"mappings\":{\"dynamic\":false,\"properties\":{"
              "\"_pgcdc_lsn\":{\"type\":\"long\"},\"_pgcdc_deleted\":{\"type\":\"boolean\"},"
              "\"_pgcdc_unindexed\":{\"type\":\"object\",\"enabled\":false},"
              "\"id\":{\"type\":\"integer\",\"ignore_malformed\":true},"
              "\"name\":{\"type\":\"text\",\"fields\":{\"keyword\":{\"type\":\"keyword\","
              "\"ignore_above\":256}}},"
              "\"price\":{\"type\":\"scaled_float\",\"scaling_factor\":100,"
              "\"ignore_malformed\":true}}}}",
              "index_body_maps_pgcdc_fields_and_every_column_with_dynamic_false");
    es_mapping_known_free(&k);

    cdc_buf_reset(&b);
    TAP_OK(es_mapping_index_body(ES_ENGINE_OPENSEARCH, NULL, NULL, "outbox", "orders", &k, &b, err,
                                 sizeof err) == 0 &&
           strcmp(b.data, "{\"mappings\":{\"dynamic\":true,\"properties\":{"
                          "\"_pgcdc_lsn\":{\"type\":\"long\"},"
                          "\"_pgcdc_deleted\":{\"type\":\"boolean\"},"
                  "\"_pgcdc_unindexed\":{\"type\":\"object\",\"enabled\":false}}}}") == 0,
           "index_body_without_types_stays_dynamic");
    es_mapping_known_free(&k);

    cdc_buf_reset(&b);
    TAP_OK(es_mapping_index_body(ES_ENGINE_OPENSEARCH, types, o, "public", "items", &k, &b, err,
                                 sizeof err) == 0 &&
           strstr(b.data, "{\"settings\":{\"number_of_replicas\":0},\"mappings\":") == b.data &&
           strstr(b.data, "\"name\":{\"type\":\"keyword\"}") &&
           strstr(b.data, "\"extra\":{\"type\":\"long\"}") && !strstr(b.data, "\"name\":{\"type\":\"text\""),
           "override_of_the_table_replaces_settings_and_fields_and_adds_fields");
    es_mapping_known_free(&k);
    cdc_buf_reset(&b);
    TAP_OK(es_mapping_index_body(ES_ENGINE_OPENSEARCH, types, o, "other", "t", &k, &b, err,
                                 sizeof err) == 0 &&
           strstr(b.data, "{\"settings\":{\"number_of_shards\":2},") == b.data,
           "star_override_applies_to_other_tables");

    /* ALTER TABLE ADD COLUMN, then a type change. */
    TAP_OK(es_mapping_unchanged(&k, types) && es_mapping_unchanged(&k, NULL),
           "unchanged_after_the_index_body_of_the_same_types");
    yajl_val more = parse("{\"id\":\"integer\",\"name\":\"text\",\"price\":\"numeric(10,2)\","
                          "\"color\":\"enum color\"}");
    cdc_buf add = CDC_BUF_INIT, changed = CDC_BUF_INIT;
    TAP_OK(es_mapping_extend(ES_ENGINE_OPENSEARCH, types, o, "other", "t", &k, &add, &changed, err,
                             sizeof err) == 0 && add.len == 0 && changed.len == 0,
           "extend_with_known_columns_adds_nothing");
    TAP_OK(es_mapping_extend(ES_ENGINE_OPENSEARCH, more, o, "other", "t", &k, &add, &changed, err,
                             sizeof err) == 0 && changed.len == 0, "extend_with_a_new_column");
    TAP_STREQ(add.data, "{\"properties\":{\"color\":{\"type\":\"keyword\"}}}",
              "extend_body_has_only_the_new_column");
    TAP_OK(es_mapping_unchanged(&k, more) && !es_mapping_unchanged(&k, types),
           "unchanged_only_for_the_types_last_mapped");
    cdc_buf_reset(&add);
    TAP_OK(es_mapping_extend(ES_ENGINE_OPENSEARCH, more, o, "other", "t", &k, &add, &changed, err,
                             sizeof err) == 0 && add.len == 0, "a_column_is_added_once");
    yajl_val retyped = parse("{\"id\":\"text\",\"color\":\"enum color\"}");
    TAP_OK(es_mapping_extend(ES_ENGINE_OPENSEARCH, retyped, o, "other", "t", &k, &add, &changed,
                             err, sizeof err) == 0 && add.len == 0, "a_type_change_adds_nothing");
    TAP_STREQ(changed.data, "id (integer -> text); ", "a_type_change_is_reported");
    cdc_buf_reset(&changed);
    TAP_OK(es_mapping_extend(ES_ENGINE_OPENSEARCH, retyped, o, "other", "t", &k, &add, &changed,
                             err, sizeof err) == 0 && changed.len == 0,
           "a_type_change_is_reported_once");

    const char *bad[] = {"[]", "{\"t\":1}", "{\"s.t\":{\"mappings\":{}}}",
                         "{\"s.t\":{\"settings\":[]}}", "{nope"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        es_mapping_overrides *x = NULL;
        int rc = es_mapping_overrides_parse(bad[i], strlen(bad[i]), &x, err, sizeof err);
        TAP_OK(rc == -1 && !x && strncmp(err, "--es-mappings: ", 15) == 0,
               "overrides_parse_rejects_malformed_files");
    }
    es_mapping_known_free(&k);
    /* A column the override maps is recorded too: the fast check holds. */
    cdc_buf_reset(&b);
    TAP_OK(es_mapping_index_body(ES_ENGINE_OPENSEARCH, types, o, "public", "items", &k, &b, err,
                                 sizeof err) == 0 && es_mapping_unchanged(&k, types),
           "unchanged_holds_with_overridden_columns");
    es_mapping_known_free(&k);
    es_mapping_overrides_free(o);
    es_mapping_overrides_free(NULL);
    cdc_buf_free(&b);
    cdc_buf_free(&add);
    cdc_buf_free(&changed);
    yajl_tree_free(types);
    yajl_tree_free(more);
    yajl_tree_free(retyped);
}

int main(void)
{
    test_fields();
    test_engine();
    test_bodies();
    return tap_done();
}
