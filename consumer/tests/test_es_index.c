/* test_es_index.c: index names from --es-index templates and overrides, the
 * physical index behind an alias, the body creating both, and GET /_alias
 * answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_bulk.h"
#include "es_index.h"
#include "tap.h"

static char err[256];

static const char *name_of(const es_index_rules *r, const char *schema, const char *table,
                           bool *changed)
{
    static cdc_buf b = CDC_BUF_INIT;
    if (!r) {
        cdc_buf_free(&b);
        return NULL;
    }
    cdc_buf_reset(&b);
    if (es_index_rules_name(r, schema, table, &b, changed) < 0)
        return "(failed)";
    return b.data;
}

static es_index_rules *rules(const char *prefix, const char *const *values, size_t n)
{
    es_index_rules *r = es_index_rules_new(prefix, values, n, err, sizeof err);
    if (!r)
        printf("# %s\n", err);
    return r;
}

static void default_names_are_todays(void)
{
    es_index_rules *r = rules("pgcdc.", NULL, 0);
    bool changed = true;
    TAP_STREQ(name_of(r, "public", "items", &changed), "pgcdc.public.items",
              "default_name_is_prefix_schema_table");
    TAP_OK(!changed, "default_name_unchanged");
    bool c2;
    cdc_buf old = CDC_BUF_INIT;
    es_index_name("pgcdc.", "Shop", "Items", &old, &c2);
    TAP_STREQ(name_of(r, "Shop", "Items", &changed), old.data,
              "default_name_made_valid_as_es_index_name_does");
    cdc_buf_free(&old);
    es_index_rules_free(r);
}

static void templates_and_overrides(void)
{
    const char *const v[] = {"{schema}_{table}", "shop.orders=orders-{{live}}",
                             "shop.Items={table}"};
    es_index_rules *r = rules("ignored.", v, 3);
    bool changed = true;
    TAP_STREQ(name_of(r, "public", "items", &changed), "public_items", "template_expanded");
    TAP_OK(!changed, "template_expansion_valid_as_it_is");
    TAP_STREQ(name_of(r, "shop", "orders", &changed), "orders-{live}",
              "override_wins_and_double_braces_are_braces");
    TAP_STREQ(name_of(r, "shop", "orders2", NULL), "shop_orders2",
              "override_matches_the_whole_table_name_only");
    const char *items = name_of(r, "shop", "Items", &changed);
    TAP_OK(strncmp(items, "items-", 6) == 0 && changed,
           "expansion_made_valid_lowercase_with_hash");
    es_index_rules_free(r);

    const char *const only[] = {"public.t=t-{table}"};
    r = rules("p.", only, 1);
    TAP_STREQ(name_of(r, "public", "t", NULL), "t-t", "override_without_template");
    TAP_STREQ(name_of(r, "public", "u", NULL), "p.public.u", "others_keep_the_default");
    es_index_rules_free(r);

    char longt[300];
    memset(longt, 'a', sizeof longt - 1);
    longt[sizeof longt - 1] = '\0';
    const char *const tl[] = {"{table}"};
    r = rules("", tl, 1);
    const char *cut = name_of(r, "s", longt, &changed);
    TAP_OK(strlen(cut) == ES_INDEX_MAX - ES_VERSION_SUFFIX_MAX && changed,
           "long_name_leaves_room_for_the_version_suffix");
    es_index_rules_free(r);
    name_of(NULL, NULL, NULL, NULL);
}

static void bad_values_are_refused(void)
{
    TAP_OK(es_index_value_check("{tabel}", err, sizeof err) < 0 && strstr(err, "{tabel}"),
           "unknown_placeholder_refused");
    TAP_OK(es_index_value_check("a{b", err, sizeof err) < 0, "lone_brace_refused");
    TAP_OK(es_index_value_check("a}", err, sizeof err) < 0, "lone_closing_brace_refused");
    TAP_OK(es_index_value_check("", err, sizeof err) < 0, "empty_template_refused");
    TAP_OK(es_index_value_check("public.t=", err, sizeof err) < 0, "empty_override_refused");
    TAP_OK(es_index_value_check("t=x", err, sizeof err) < 0, "override_needs_schema_dot_table");
    TAP_OK(es_index_value_check("{{x}}-{schema}.{table}", err, sizeof err) == 0,
           "escapes_and_placeholders_accepted");
    const char *const two[] = {"{table}", "{schema}"};
    TAP_OK(es_index_rules_new("", two, 2, err, sizeof err) == NULL &&
           strstr(err, "two templates"), "two_templates_refused");
}

static void physical_and_create_body(void)
{
    cdc_buf b = CDC_BUF_INIT;
    TAP_OK(es_index_physical("items", 2, &b) == 0, "physical_ok");
    TAP_STREQ(b.data, "items_v2", "physical_is_name_v_n");
    cdc_buf_reset(&b);
    TAP_OK(es_index_create_body("{\"mappings\":{\"dynamic\":true}}", "it\"ems", true, &b) == 0,
           "create_body_ok");
    TAP_STREQ(b.data, "{\"mappings\":{\"dynamic\":true},\"aliases\":{\"it\\\"ems\":{\"filter\":"
              ES_LIVE_FILTER "}}}", "create_body_has_the_filtered_alias");
    cdc_buf_reset(&b);
    TAP_OK(es_index_create_body("{\"mappings\":{}}\n", "items", false, &b) == 0,
           "create_body_unfiltered_ok");
    TAP_STREQ(b.data, "{\"mappings\":{},\"aliases\":{\"items\":{}}}",
              "create_body_has_the_plain_alias");
    cdc_buf_reset(&b);
    TAP_OK(es_index_create_body("{ }", "items", false, &b) < 0, "empty_object_refused");
    cdc_buf_free(&b);
}

static void alias_answers(void)
{
    cdc_buf b = CDC_BUF_INIT;
    size_t n = 0;
    const char *one = "{\"items_v2\":{\"aliases\":{\"items\":{}}}}";
    TAP_OK(es_alias_indices(one, strlen(one), &b, &n, err, sizeof err) == 0 && n == 1,
           "alias_of_one_index");
    TAP_STREQ(b.data, "items_v2", "alias_index_named");
    cdc_buf_reset(&b);
    const char *two = "{\"a_v1\":{\"aliases\":{\"a\":{}}},\"a_v2\":{\"aliases\":{\"a\":{}}}}";
    TAP_OK(es_alias_indices(two, strlen(two), &b, &n, err, sizeof err) == 0 && n == 2 &&
           b.len == 10 && strcmp(b.data + 5, "a_v2") == 0, "alias_of_two_indices");
    cdc_buf_reset(&b);
    TAP_OK(es_alias_indices("{}", 2, &b, &n, err, sizeof err) < 0, "no_index_refused");
    TAP_OK(es_alias_indices("[1]", 3, &b, &n, err, sizeof err) < 0, "not_an_object_refused");
    cdc_buf_free(&b);
}

static void versions(void)
{
    TAP_OK(es_index_version_of("items", "items_v2") == 2, "version_of_name_v_n");
    TAP_OK(es_index_version_of("items", "items_v999999") == 999999, "version_of_largest");
    TAP_OK(es_index_version_of("items", "items_v1000000") == 0, "version_of_too_many_digits");
    TAP_OK(es_index_version_of("items", "items_v02") == 0, "version_of_leading_zero_refused");
    TAP_OK(es_index_version_of("items", "items_v0") == 0, "version_of_zero_refused");
    TAP_OK(es_index_version_of("items", "items_v") == 0, "version_of_no_digits");
    TAP_OK(es_index_version_of("items", "items_v2x") == 0, "version_of_trailing_text");
    TAP_OK(es_index_version_of("items", "items_v2_v3") == 0, "version_of_other_name");
    TAP_OK(es_index_version_of("items", "other_v2") == 0, "version_of_other_prefix");
    TAP_OK(es_index_version_of("items", "items") == 0, "version_of_the_name_itself");

    unsigned cur = 9;
    bool next = true;
    const char *before = "{\"items_v1\":{\"aliases\":{\"items\":{\"filter\":{}}}},"
                         "\"items_v2\":{\"aliases\":{}},\"items_v2_old\":{\"aliases\":{}}}";
    TAP_OK(es_versions_read(before, strlen(before), "items", &cur, &next, err, sizeof err) == 0 &&
           cur == 1 && next, "versions_alias_on_v1_and_v2_exists");
    const char *alone = "{\"items_v1\":{\"aliases\":{\"items\":{}}}}";
    TAP_OK(es_versions_read(alone, strlen(alone), "items", &cur, &next, err, sizeof err) == 0 &&
           cur == 1 && !next, "versions_alias_on_v1_no_next");
    const char *after = "{\"items_v1\":{\"aliases\":{}},\"items_v2\":{\"aliases\":"
                        "{\"items\":{}}}}";
    TAP_OK(es_versions_read(after, strlen(after), "items", &cur, &next, err, sizeof err) == 0 &&
           cur == 2 && !next, "versions_alias_moved_to_v2");
    const char *both = "{\"items_v1\":{\"aliases\":{\"items\":{}}},\"items_v2\":"
                       "{\"aliases\":{\"items\":{}}}}";
    TAP_OK(es_versions_read(both, strlen(both), "items", &cur, &next, err, sizeof err) == 0 &&
           cur == 0 && !next, "versions_alias_on_two_indices_is_no_version");
    const char *other = "{\"items_v1\":{\"aliases\":{\"other\":{}}},\"items_v2\":"
                        "{\"aliases\":{}}}";
    TAP_OK(es_versions_read(other, strlen(other), "items", &cur, &next, err, sizeof err) == 0 &&
           cur == 0 && !next, "versions_no_alias_is_no_version");
    TAP_OK(es_versions_read("{}", 2, "items", &cur, &next, err, sizeof err) == 0 && cur == 0,
           "versions_nothing_matches");
    TAP_OK(es_versions_read("[]", 2, "items", &cur, &next, err, sizeof err) < 0,
           "versions_not_an_object_refused");

    cdc_buf b = CDC_BUF_INIT;
    TAP_OK(es_alias_switch_body("it\"ems", "a_v1", "a_v2", true, &b) == 0, "switch_body_ok");
    TAP_STREQ(b.data, "{\"actions\":[{\"remove\":{\"index\":\"a_v1\",\"alias\":\"it\\\"ems\"}},"
              "{\"add\":{\"index\":\"a_v2\",\"alias\":\"it\\\"ems\",\"filter\":"
              ES_LIVE_FILTER "}}]}", "switch_body_removes_and_adds_with_the_filter");
    cdc_buf_reset(&b);
    TAP_OK(es_alias_switch_body("a", "a_v1", "a_v2", false, &b) == 0, "switch_body_plain_ok");
    TAP_STREQ(b.data, "{\"actions\":[{\"remove\":{\"index\":\"a_v1\",\"alias\":\"a\"}},"
              "{\"add\":{\"index\":\"a_v2\",\"alias\":\"a\"}}]}",
              "switch_body_without_filter_for_real_deletes");

    cdc_buf_reset(&b);
    const char *set = "{\"a_v1\":{\"settings\":{\"index\":{\"refresh_interval\":\"5s\"}}}}";
    TAP_OK(es_refresh_interval_read(set, strlen(set), &b, err, sizeof err) == 0, "refresh_set_ok");
    TAP_STREQ(b.data, "\"5s\"", "refresh_interval_of_the_index");
    cdc_buf_reset(&b);
    const char *unset = "{\"a_v1\":{\"settings\":{}}}";
    TAP_OK(es_refresh_interval_read(unset, strlen(unset), &b, err, sizeof err) == 0,
           "refresh_unset_ok");
    TAP_STREQ(b.data, "null", "refresh_interval_unset_is_null");
    const char *bad = "{\"a_v1\":{\"settings\":{\"index\":{\"refresh_interval\":5}}}}";
    TAP_OK(es_refresh_interval_read(bad, strlen(bad), &b, err, sizeof err) < 0,
           "refresh_interval_not_a_string_refused");
    cdc_buf_reset(&b);
    TAP_OK(es_refresh_interval_read("{}", 2, &b, err, sizeof err) == 0 &&
           strcmp(b.data, "null") == 0, "refresh_interval_left_out_is_null");
    TAP_OK(es_refresh_interval_read("[]", 2, &b, err, sizeof err) < 0,
           "refresh_not_an_object_refused");
    const char *two = "{\"a\":{\"settings\":{}},\"b\":{\"settings\":{}}}";
    TAP_OK(es_refresh_interval_read(two, strlen(two), &b, err, sizeof err) < 0,
           "refresh_two_indices_refused");
    cdc_buf_free(&b);
}

/* What a consumer writing through the alias knows after each answer or
 * refusal of its question about versions. */
static void versions_known(void)
{
    es_versions k = {0};
    const es_versions none = {0}, v1 = {1, false, false}, v1_next = {1, true, false};
    const es_versions v2 = {2, false, false}, v2_next = {2, true, false};
    TAP_OK(es_versions_update(&k, NULL) == ES_VERSIONS_REFUSED && k.refused && !k.current &&
           !k.next_exists, "versions_refused_before_any_answer_copies_nothing");
    TAP_OK(es_versions_update(&k, &v1) == ES_VERSIONS_ANSWERED && k.current == 1 && !k.refused,
           "versions_answered_after_a_refusal");
    TAP_OK(es_versions_update(&k, &v1) == 0, "versions_same_answer_changes_nothing");
    TAP_OK(es_versions_update(&k, &v1_next) == ES_VERSIONS_COPY_START && k.next_exists,
           "versions_next_appears_copy_starts");
    TAP_OK(es_versions_update(&k, NULL) == ES_VERSIONS_REFUSED && k.current == 1 &&
           k.next_exists && k.refused, "versions_refused_keeps_the_next_version_seen");
    TAP_OK(es_versions_update(&k, NULL) == 0 && k.next_exists,
           "versions_refused_again_changes_nothing");
    TAP_OK(es_versions_update(&k, &v2) == (ES_VERSIONS_ANSWERED | ES_VERSIONS_MOVED |
                                           ES_VERSIONS_COPY_STOP) &&
           k.current == 2 && !k.next_exists, "versions_alias_moved_copy_stops");
    TAP_OK(es_versions_update(&k, &v2_next) == ES_VERSIONS_COPY_START,
           "versions_next_of_the_new_version");
    k = v1_next;
    TAP_OK(es_versions_update(&k, &v2_next) == (ES_VERSIONS_MOVED | ES_VERSIONS_COPY_START |
                                                ES_VERSIONS_COPY_STOP),
           "versions_moved_and_next_again_copies_elsewhere");
    TAP_OK(es_versions_update(&k, &none) == (ES_VERSIONS_MOVED | ES_VERSIONS_COPY_STOP) &&
           !k.current, "versions_alias_on_no_version_copies_nothing");
    k = v1;
    k.next_exists = false;
    TAP_OK(es_versions_update(&k, &v1) == 0, "versions_unchanged");
}

int main(void)
{
    default_names_are_todays();
    templates_and_overrides();
    bad_values_are_refused();
    physical_and_create_body();
    alias_answers();
    versions();
    versions_known();
    return tap_done();
}
