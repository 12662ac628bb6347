/* test_doc_def.c: the --documents definition (consumer/doc_def.h) and the SQL
 * and mapping built from it (consumer/doc_sql.h). */
#include <stdio.h>
#include <string.h>

#include "doc_def.h"
#include "doc_sql.h"
#include "tap.h"

#define SHOP                                                                                  \
    "{\"schema\":\"shop\",\"documents\":[{\"name\":\"product\",\"table\":\"products\","         \
    "\"columns\":[\"id\",\"name\"],\"index\":\"products\",\"redis_key\":\"product:{id}\","      \
    "\"embed\":{"                                                                             \
    "\"brand\":{\"parent\":\"brands\",\"via\":\"brand_id\",\"columns\":[\"name\"]},"           \
    "\"categories\":{\"many\":\"categories\",\"through\":\"product_categories\","              \
    "\"via\":\"product_id\",\"to\":\"category_id\",\"columns\":[\"name\"]},"                   \
    "\"reviews\":{\"children\":\"reviews\",\"via\":\"product_id\",\"columns\":[\"rating\"],"   \
    "\"embed\":{\"author\":{\"parent\":\"authors\",\"via\":\"author_id\",\"columns\":[\"name\"]}}}," \
    "\"review_count\":{\"count\":\"reviews\",\"via\":\"product_id\"},"                          \
    "\"rating_avg\":{\"avg\":\"other.reviews\",\"column\":\"rating\",\"via\":\"product_id\"}}}]}"

static char err[512];

static doc_def *parse(const char *json)
{
    doc_def *d = NULL;
    err[0] = '\0';
    if (doc_def_parse("shop.json", json, strlen(json), &d, err, sizeof err) < 0)
        return NULL;
    return d;
}

/* Parses json, which must fail with a message containing want. */
static int refuses(const char *json, const char *want)
{
    doc_def *d = parse(json);
    if (d) {
        doc_def_free(d);
        printf("# parsed: %s\n", json);
        return 0;
    }
    if (!strstr(err, want)) {
        printf("# got \"%s\", want \"%s\"\n", err, want);
        return 0;
    }
    return 1;
}

static const char *types(void *ctx, const char *schema, const char *table, const char *column)
{
    (void)ctx;
    (void)schema;
    (void)table;
    if (strcmp(column, "missing") == 0)
        return NULL;
    return strcmp(column, "rating") == 0 || strcmp(column, "id") == 0 ? "integer" : "text";
}

int main(void)
{
    doc_def *d = parse(SHOP);
    TAP_OK(d != NULL, "parses_the_shop_definition");
    if (!d) {
        printf("# %s\n", err);
        return tap_done();
    }
    const doc_type *t = &d->types[0];
    const doc_node *r = t->root;
    TAP_OK(d->ntypes == 1 && t->nnodes == 7 && r->nembed == 5, "every_node_is_counted");
    TAP_STREQ(r->schema, "shop", "the_default_schema_applies");
    TAP_STREQ(r->key, "id", "the_key_defaults_to_id");
    TAP_OK(r->embed[0]->kind == DOC_PARENT && r->embed[1]->kind == DOC_MANY &&
           r->embed[2]->kind == DOC_CHILDREN && r->embed[3]->kind == DOC_AGG &&
           r->embed[4]->agg == DOC_AGG_AVG, "kinds_follow_the_member_naming_the_table");
    TAP_STREQ(r->embed[4]->schema, "other", "a_schema_qualified_table_keeps_its_schema");
    TAP_OK(r->embed[2]->embed[0]->up == r->embed[2], "nested_nodes_know_their_embedding_node");

    cdc_buf sql = CDC_BUF_INIT;
    TAP_OK(doc_sql_read(t, DOC_READ_KEYS, &sql) == 0, "read_sql_builds");
    TAP_STREQ(sql.data,
              "SELECT a0.\"id\"::text, json_build_object('id', a0.\"id\", 'name', a0.\"name\", "
              "'brand', (SELECT json_build_object('name', a1.\"name\") FROM \"shop\".\"brands\" a1 "
              "WHERE a1.\"id\" = a0.\"brand_id\" LIMIT 1), "
              "'categories', COALESCE((SELECT json_agg(json_build_object('name', a2.\"name\") "
              "ORDER BY a2.\"id\") FROM \"shop\".\"product_categories\" l2 JOIN "
              "\"shop\".\"categories\" a2 ON a2.\"id\" = l2.\"category_id\" WHERE "
              "l2.\"product_id\" = a0.\"id\"), '[]'::json), "
              "'reviews', COALESCE((SELECT json_agg(json_build_object('rating', a3.\"rating\", "
              "'author', (SELECT json_build_object('name', a4.\"name\") FROM \"shop\".\"authors\" a4 "
              "WHERE a4.\"id\" = a3.\"author_id\" LIMIT 1)) ORDER BY a3.\"id\") FROM "
              "\"shop\".\"reviews\" a3 WHERE a3.\"product_id\" = a0.\"id\"), '[]'::json), "
              "'review_count', (SELECT count(*) FROM \"shop\".\"reviews\" a5 WHERE "
              "a5.\"product_id\" = a0.\"id\"), "
              "'rating_avg', (SELECT avg(a6.\"rating\") FROM \"other\".\"reviews\" a6 WHERE "
              "a6.\"product_id\" = a0.\"id\"))::text FROM \"shop\".\"products\" a0 WHERE "
              "a0.\"id\" = ANY($1)",
              "read_sql_joins_every_node_and_takes_the_keys_as_one_array");

    bool direct = false;
    cdc_buf_reset(&sql);
    TAP_OK(doc_sql_roots(r->embed[2], DOC_VALUES_UP_KEY, &sql, &direct) == 0 && direct &&
           sql.len == 0, "a_child_of_the_root_names_root_keys_directly");
    TAP_OK(doc_sql_roots(r->embed[0], DOC_VALUES_KEY, &sql, &direct) == 0 && !direct,
           "a_parent_needs_a_query");
    TAP_STREQ(sql.data, "SELECT DISTINCT a0.\"id\"::text FROM \"shop\".\"products\" a0 WHERE "
                        "a0.\"brand_id\" = ANY($1)", "a_parent_maps_by_the_via_column");
    cdc_buf_reset(&sql);
    doc_sql_roots(r->embed[2]->embed[0], DOC_VALUES_KEY, &sql, &direct);
    TAP_STREQ(sql.data, "SELECT DISTINCT a0.\"id\"::text FROM \"shop\".\"products\" a0 JOIN "
                        "\"shop\".\"reviews\" a3 ON a3.\"product_id\" = a0.\"id\" WHERE "
                        "a3.\"author_id\" = ANY($1)",
              "a_nested_parent_maps_through_the_chain_without_joining_itself");
    cdc_buf_reset(&sql);
    doc_sql_roots(r->embed[1], DOC_VALUES_KEY, &sql, &direct);
    TAP_STREQ(sql.data, "SELECT DISTINCT a0.\"id\"::text FROM \"shop\".\"products\" a0 JOIN "
                        "\"shop\".\"product_categories\" l2 ON l2.\"product_id\" = a0.\"id\" "
                        "WHERE l2.\"category_id\" = ANY($1)",
              "a_many_to_many_target_maps_through_its_link_table");
    cdc_buf_reset(&sql);
    TAP_OK(doc_sql_read(t, DOC_READ_AFTER, &sql) == 0 &&
           strstr(sql.data, "WHERE a0.\"id\" > $2 ORDER BY a0.\"id\" LIMIT $1"),
           "a_page_reads_after_the_last_key");

    /* A composite root key: children join by one via column per key column;
     * ids are the compact JSON array of the key's values, as row ids. */
    doc_def *cd = parse("{\"schema\":\"s\",\"documents\":[{\"name\":\"o\",\"table\":\"orders\","
                        "\"key\":[\"tenant\",\"id\"],\"columns\":[\"id\"],"
                        "\"redis_key\":\"o:{tenant}:{id}\",\"embed\":{\"lines\":"
                        "{\"children\":\"lines\",\"via\":[\"tenant\",\"order_id\"],"
                        "\"columns\":[\"id\"]}}}]}");
    TAP_OK(cd && cd->types[0].root->nkeys == 2 && cd->types[0].root->embed[0]->nvias == 2,
           "a_composite_key_and_its_via_columns_parse");
    cdc_buf_reset(&sql);
    TAP_OK(cd && doc_sql_read(&cd->types[0], DOC_READ_KEYS, &sql) == 0 &&
           strstr(sql.data, "SELECT '[' || concat_ws(',', to_json(a0.\"tenant\"), "
                            "to_json(a0.\"id\")) || ']', ") &&
           strstr(sql.data, "WHERE a1.\"tenant\" = a0.\"tenant\" AND a1.\"order_id\" = "
                            "a0.\"id\")") &&
           strstr(sql.data, "WHERE a0.\"tenant\" = ANY($1) AND a0.\"id\" = ANY($2)"),
           "a_composite_key_reads_by_one_array_per_column_and_joins_children_by_both");
    cdc_buf_reset(&sql);
    TAP_OK(cd && doc_sql_read(&cd->types[0], DOC_READ_AFTER, &sql) == 0 &&
           strstr(sql.data, "WHERE (a0.\"tenant\", a0.\"id\") > ($2, $3) ORDER BY "
                            "a0.\"tenant\", a0.\"id\" LIMIT $1"),
           "a_composite_key_pages_by_a_row_comparison");
    doc_def_free(cd);
    TAP_OK(refuses("{\"documents\":[{\"name\":\"o\",\"table\":\"o\",\"key\":[\"t\",\"id\"],"
                   "\"columns\":[\"id\"],\"redis_key\":\"o:{t}:{id}\",\"embed\":{\"l\":"
                   "{\"children\":\"l\",\"via\":\"o_id\",\"columns\":[\"id\"]}}}]}",
                   "documents[0].embed.l.via: names 1 column(s): one per key column of "
                   "public.o (2)"),
           "refuses_a_via_that_does_not_cover_a_composite_key");
    TAP_OK(refuses("{\"documents\":[{\"name\":\"o\",\"table\":\"o\",\"key\":[\"t\",\"id\"],"
                   "\"columns\":[\"id\"],\"redis_key\":\"o:{id}\"}]}",
                   "\"o:{id}\" has no {t}: documents would share keys"),
           "refuses_a_redis_key_without_every_key_column");

    cdc_buf m = CDC_BUF_INIT;
    TAP_OK(doc_mapping_body(ES_ENGINE_OPENSEARCH, t, types, NULL, &m, err, sizeof err) == 0,
           "mapping_builds");
    TAP_OK(m.data && strstr(m.data, "\"brand\":{\"properties\":{\"name\":{\"type\":\"text\"") &&
           strstr(m.data, "\"review_count\":{\"type\":\"long\"}") &&
           strstr(m.data, "\"rating_avg\":{\"type\":\"double\"") &&
           strstr(m.data, "\"author\":{\"properties\""),
           "mapping_nests_objects_and_types_aggregates");
    cdc_buf_free(&m);
    cdc_buf_free(&sql);
    doc_def_free(d);

    cdc_buf e = CDC_BUF_INIT;
    doc_sql_array_elem(&e, "a\"b\\c", 5);
    TAP_STREQ(e.data, "\"a\\\"b\\\\c\"", "array_elements_escape_quotes_and_backslashes");
    cdc_buf_free(&e);

    TAP_OK(refuses("[", "shop.json: not JSON"), "refuses_text_that_is_not_json");
    TAP_OK(refuses("{}", "\"documents\" is missing"), "refuses_no_documents");
    TAP_OK(refuses("{\"documents\":[{\"name\":\"p\",\"table\":\"t\",\"columns\":[\"id\"],"
                   "\"index\":\"i\",\"embed\":{\"r\":{\"children\":\"c\",\"columns\":[\"a\"]}}}]}",
                   "shop.json: documents[0].embed.r: \"via\" is missing"),
           "refuses_a_child_without_via_naming_its_path");
    TAP_OK(refuses("{\"documents\":[{\"name\":\"p\",\"table\":\"t\",\"columns\":[\"id\"]}]}",
                   "names no target"), "refuses_a_document_without_target");
    TAP_OK(refuses("{\"documents\":[{\"name\":\"p\",\"table\":\"t\",\"columns\":[\"id\",\"id\"],"
                   "\"index\":\"i\"}]}", "documents[0].columns[1]: \"id\" is named twice"),
           "refuses_a_column_named_twice");
    TAP_OK(refuses("{\"documents\":[{\"name\":\"p\",\"table\":\"t\",\"columns\":[\"id\"],"
                   "\"redis_key\":\"p:{name}\"}]}",
                   "a placeholder names a key column of the root table (id)"),
           "refuses_a_redis_key_without_the_root_key");
    TAP_OK(refuses("{\"documents\":[{\"name\":\"p\",\"table\":\"t\",\"columns\":[\"id\"],"
                   "\"index\":\"i\",\"embed\":{\"b\":{\"parent\":\"b\",\"children\":\"c\","
                   "\"via\":\"x\",\"columns\":[\"a\"]}}}]}", "names both"),
           "refuses_two_kinds_in_one_node");
    TAP_OK(refuses("{\"documents\":[{\"name\":\"p\",\"table\":\"t\",\"columns\":[\"id\"],"
                   "\"index\":\"i\",\"embed\":{\"n\":{\"count\":\"c\",\"via\":\"x\","
                   "\"column\":\"y\"}}}]}", "takes no \"column\""),
           "refuses_a_count_with_a_column");
    TAP_OK(refuses("{\"documents\":[{\"name\":\"p\",\"table\":\"t\",\"columns\":[\"id\"],"
                   "\"index\":\"i\",\"colums\":[]}]}", "unknown member \"colums\""),
           "refuses_an_unknown_member");
    TAP_OK(refuses("{\"documents\":[{\"name\":\"p\",\"table\":\"a.b.c\",\"columns\":[\"id\"],"
                   "\"index\":\"i\"}]}", "is not <table> or <schema>.<table>"),
           "refuses_a_table_with_two_dots");
    TAP_OK(refuses("{\"documents\":[{\"name\":\"p\",\"table\":\"t\",\"columns\":[\"a\\\\b\"],"
                   "\"index\":\"i\"}]}", "documents[0].columns[0]: is not a column name"),
           "refuses_a_backslash_in_a_name");
    TAP_OK(refuses("{\"documents\":[{\"name\":\"p\",\"table\":\"t\",\"columns\":[\"id\"],"
                   "\"index\":\"i\"},{\"name\":\"q\",\"table\":\"t\",\"columns\":[\"id\"],"
                   "\"index\":\"i\"}]}", "index \"i\" is used twice"),
           "refuses_two_types_in_one_index");
    /* Nine levels of children. */
    cdc_buf deep = CDC_BUF_INIT;
    cdc_buf_puts(&deep, "{\"documents\":[{\"name\":\"p\",\"table\":\"t\",\"columns\":[\"id\"],"
                        "\"index\":\"i\"");
    for (int i = 0; i < 9; i++)
        cdc_buf_puts(&deep, ",\"embed\":{\"c\":{\"children\":\"c\",\"via\":\"v\","
                            "\"columns\":[\"a\"]");
    for (int i = 0; i < 9; i++)
        cdc_buf_puts(&deep, "}}");
    cdc_buf_puts(&deep, "}]}");
    TAP_OK(refuses(deep.data, "more than 8 levels"), "refuses_too_deep_an_embedding");
    cdc_buf_free(&deep);
    return tap_done();
}
