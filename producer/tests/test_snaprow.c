/* test_snaprow.c: snapshot rows become the events and keys a streamed
 * change would carry, chunk SQL bounds and quoting, signal requests, the
 * chunk key set, and the kept key values of a chunk's last row. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snaprow.h"
#include "tap.h"

static snap_table *items_table(void)
{
    snap_table *t = snap_table_new(16384, "public", "items");
    snap_table_add_column(t, "id", 23, true);
    snap_table_add_column(t, "name", 25, false);
    snap_table_add_column(t, "tags", 1007, false);
    snap_table_add_column(t, "attrs", 3802, false);
    snap_table_add_column(t, "price", 1700, false);
    for (size_t i = 0; i < t->ncols; i++)
        pgvalue_builtin_type(t->cols[i].type_oid, &t->cols[i].type);
    return t;
}

static void test_row_encode(void)
{
    snap_table *t = items_table();
    snap_row_builder b;
    snap_row_builder_init(&b);
    cdc_buf value = CDC_BUF_INIT, key = CDC_BUF_INIT;
    char err[256] = "";
    const char *vals[] = {"42", "lamp \"x\"", "{1,NULL,3}", "{\"k\": 1}", NULL};
    size_t lens[5];
    for (int i = 0; i < 5; i++)
        lens[i] = vals[i] ? strlen(vals[i]) : 0;
    cdc_source src = {.db = "shop", .lsn = 24337816, .commit_lsn = 24337816, .ts_ms = 5};
    int rc = snap_row_encode(&b, t, vals, lens, &src, 7, &value, &key, err, sizeof err);
    TAP_OK(rc == 0, "row_encode_succeeds");
    TAP_STREQ(value.data,
              "{\"op\":\"r\",\"before\":null,\"after\":{\"id\":42,\"name\":\"lamp \\\"x\\\"\","
              "\"tags\":[1,null,3],\"attrs\":{\"k\": 1},\"price\":null},"
              "\"source\":{\"db\":\"shop\",\"schema\":\"public\",\"table\":\"items\","
              "\"lsn\":24337816,\"commit_lsn\":24337816,\"txid\":0,\"seq\":0,\"ts_ms\":5,"
              "\"snapshot\":true},\"ts_ms\":7}",
              "row_encode_writes_r_event_with_snapshot_true");
    TAP_STREQ(key.data, "{\"id\":42}", "row_encode_writes_key_like_a_streamed_change");

    /* Key only (the re-snapshot's chunk set). */
    cdc_buf_reset(&key);
    vals[0] = "7";
    lens[0] = 1;
    rc = snap_row_encode(&b, t, vals, lens, &src, 7, NULL, &key, err, sizeof err);
    TAP_OK(rc == 0 && strcmp(key.data, "{\"id\":7}") == 0, "row_encode_key_only_without_value");

    vals[0] = NULL;
    rc = snap_row_encode(&b, t, vals, lens, &src, 7, &value, &key, err, sizeof err);
    TAP_OK(rc == -1 && strstr(err, "key column \"id\" is NULL") && strstr(err, "public.items"),
           "row_encode_rejects_null_key_naming_table_and_column");

    vals[0] = "1";
    vals[2] = "{1,2";
    lens[2] = 4;
    rc = snap_row_encode(&b, t, vals, lens, &src, 7, &value, &key, err, sizeof err);
    TAP_OK(rc == -1 && strstr(err, "column \"tags\""), "row_encode_names_column_of_bad_array");

    snap_table_free(t);

    /* Composite key in column order; a keyless table has an empty key. */
    t = snap_table_new(1, "s", "c");
    snap_table_add_column(t, "tenant", 25, true);
    snap_table_add_column(t, "v", 25, false);
    snap_table_add_column(t, "id", 20, true);
    const char *v2[] = {"a", "x", "9000000000"};
    size_t l2[] = {1, 1, 10};
    rc = snap_row_encode(&b, t, v2, l2, &src, 7, &value, &key, err, sizeof err);
    TAP_OK(rc == 0, "composite_key_row_encodes");
    TAP_STREQ(key.data, "{\"tenant\":\"a\",\"id\":\"9000000000\"}",
              "composite_key_in_column_order_values_as_typed");
    snap_table_free(t);

    t = snap_table_new(2, "s", "nokey");
    snap_table_add_column(t, "v", 25, false);
    rc = snap_row_encode(&b, t, v2, l2, &src, 7, &value, &key, err, sizeof err);
    TAP_OK(rc == 0 && key.len == 0 && strstr(value.data, "\"after\":{\"v\":\"a\"}"),
           "keyless_table_has_no_record_key");
    snap_table_free(t);

    cdc_buf_free(&value);
    cdc_buf_free(&key);
    snap_row_builder_free(&b);
}

static void test_sql(void)
{
    snap_table *t = snap_table_new(1, "my \"s\"", "T");
    snap_table_add_column(t, "a", 23, true);
    snap_table_add_column(t, "b", 25, false);
    snap_table_add_column(t, "c", 23, true);
    cdc_buf q = CDC_BUF_INIT;
    snap_sql_chunk(t, SNAP_FROM_START, false, 100, &q);
    TAP_STREQ(q.data, "SELECT \"a\", \"b\", \"c\" FROM ONLY \"my \"\"s\"\"\".\"T\" "
                      "ORDER BY \"a\", \"c\" LIMIT 100",
              "chunk_sql_from_start_quotes_identifiers");
    cdc_buf_reset(&q);
    snap_sql_chunk(t, SNAP_FROM_EXCL, true, 10, &q);
    TAP_STREQ(q.data, "SELECT \"a\", \"b\", \"c\" FROM ONLY \"my \"\"s\"\"\".\"T\" "
                      "WHERE (\"a\", \"c\") > ($1, $2) AND (\"a\", \"c\") < ($3, $4) "
                      "ORDER BY \"a\", \"c\" LIMIT 10",
              "chunk_sql_after_last_key_below_upper_bound");
    cdc_buf_reset(&q);
    snap_table_set_rowfilter(t, "b <> 'x'");
    t->with_children = true;
    snap_sql_chunk(t, SNAP_FROM_INCL, false, 0, &q);
    TAP_STREQ(q.data, "SELECT \"a\", \"b\", \"c\" FROM \"my \"\"s\"\"\".\"T\" "
                      "WHERE (b <> 'x') AND (\"a\", \"c\") >= ($1, $2) ORDER BY \"a\", \"c\"",
              "chunk_sql_row_filter_partitioned_inclusive_no_limit");
    cdc_buf_reset(&q);
    snap_sql_chunk(t, SNAP_FROM_START, true, 5, &q);
    TAP_STREQ(q.data, "SELECT \"a\", \"b\", \"c\" FROM \"my \"\"s\"\"\".\"T\" "
                      "WHERE (b <> 'x') AND (\"a\", \"c\") < ($1, $2) ORDER BY \"a\", \"c\" LIMIT 5",
              "chunk_sql_upper_bound_takes_first_parameters_without_lower");
    cdc_buf_reset(&q);
    TAP_OK(snap_sql_sample(t, 0.25, &q) == 0, "sample_sql_built");
    TAP_STREQ(q.data, "SELECT DISTINCT \"a\", \"c\" FROM \"my \"\"s\"\"\".\"T\" "
                      "TABLESAMPLE SYSTEM (0.250000) ORDER BY \"a\", \"c\"",
              "sample_sql_orders_distinct_keys");
    snap_table_free(t);

    t = snap_table_new(2, "public", "log");
    snap_table_add_column(t, "line", 25, false);
    cdc_buf_reset(&q);
    snap_sql_chunk(t, SNAP_FROM_EXCL, true, 10, &q);
    TAP_STREQ(q.data, "SELECT \"line\" FROM ONLY \"public\".\"log\"",
              "chunk_sql_keyless_table_reads_everything_unordered");
    cdc_buf_reset(&q);
    TAP_OK(snap_sql_sample(t, 1, &q) == -1, "sample_sql_needs_a_key");
    snap_table_free(t);
    cdc_buf_free(&q);
}

static void test_names(void)
{
    char *s, *t;
    TAP_OK(snap_parse_table_name("public.items", &s, &t) == 0 && strcmp(s, "public") == 0 &&
           strcmp(t, "items") == 0, "table_name_schema_and_table");
    free(s);
    free(t);
    TAP_OK(snap_parse_table_name("items", &s, &t) == 0 && s == NULL && strcmp(t, "items") == 0,
           "table_name_bare_table_has_no_schema");
    free(t);
    TAP_OK(snap_parse_table_name("public.", &s, &t) == -1 && !s && !t, "table_name_rejects_empty_table");
    TAP_OK(snap_parse_table_name(".x", &s, &t) == -1, "table_name_rejects_empty_schema");
}

static int signal(const char *type_json, const char *data_json, snap_request *r, char *err)
{
    cdc_column cols[] = {
        {"id", "\"1\"", 3},
        {"type", type_json, type_json ? strlen(type_json) : 0},
        {"data", data_json, data_json ? strlen(data_json) : 0},
    };
    cdc_row row = {cols, 3};
    return snap_signal_parse(&row, r, err, 256);
}

static void test_signal(void)
{
    snap_request r;
    char err[256];
    int rc = signal("\"snapshot\"", "{\"tables\": [\"public.t\", \"s.u\"]}", &r, err);
    TAP_OK(rc == 1 && r.ntables == 2 && strcmp(r.tables[0], "public.t") == 0 &&
           strcmp(r.tables[1], "s.u") == 0, "signal_snapshot_lists_tables");
    snap_request_free(&r);
    rc = signal("\"execute-snapshot\"", "{\"data-collections\": [\"public.t\"]}", &r, err);
    TAP_OK(rc == 1 && r.ntables == 1, "signal_accepts_debezium_form");
    snap_request_free(&r);
    rc = signal("\"snapshot\"", "\"{\\\"tables\\\":[\\\"a.b\\\"]}\"", &r, err);
    TAP_OK(rc == 1 && r.ntables == 1 && strcmp(r.tables[0], "a.b") == 0,
           "signal_data_as_text_holding_json");
    snap_request_free(&r);
    /* Regression (fuzz_snap_signal): a data value that is not NUL-terminated,
     * as column values never are, is read within its length only. */
    static const char text[] = "\"{\\\"tables\\\":[\\\"a.b\\\"]}\"";
    char *exact = malloc(sizeof text - 1);
    memcpy(exact, text, sizeof text - 1);
    cdc_column cols[] = {{"type", "\"snapshot\"", 10}, {"data", exact, sizeof text - 1}};
    cdc_row row = {cols, 2};
    rc = snap_signal_parse(&row, &r, err, 256);
    TAP_OK(rc == 1 && r.ntables == 1 && strcmp(r.tables[0], "a.b") == 0,
           "signal_data_without_terminating_nul_read_within_its_length");
    snap_request_free(&r);
    free(exact);
    TAP_OK(signal("\"log\"", "{}", &r, err) == 0, "signal_of_another_type_is_not_ours");
    TAP_OK(signal("\"snapshot\"", "null", &r, err) == -1 && strstr(err, "no \"data\""),
           "signal_without_data_rejected");
    TAP_OK(signal("\"snapshot\"", "{\"tables\": []}", &r, err) == -1 && strstr(err, "non-empty"),
           "signal_with_empty_table_list_rejected");
    TAP_OK(signal("\"snapshot\"", "{\"tables\": [1]}", &r, err) == -1 && strstr(err, "table 0"),
           "signal_with_non_string_table_rejected");
    TAP_OK(signal("\"snapshot\"", "\"not json\"", &r, err) == -1 && strstr(err, "not JSON"),
           "signal_with_text_that_is_not_json_rejected");
    TAP_OK(signal("42", "{}", &r, err) == -1 && strstr(err, "not a string"),
           "signal_type_must_be_a_string");
    TAP_OK(signal(NULL, "{}", &r, err) == -1, "signal_without_type_rejected");
}

static void test_keyset(void)
{
    snap_keyset ks;
    snap_keyset_init(&ks);
    char key[32];
    for (size_t i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "{\"id\":%zu}", i);
        snap_keyset_add(&ks, key, (size_t)n, i);
    }
    TAP_OK(ks.used == 5000, "keyset_holds_every_key");
    size_t row = 0;
    int n = snprintf(key, sizeof key, "{\"id\":%d}", 4321);
    TAP_OK(snap_keyset_remove(&ks, key, (size_t)n, &row) && row == 4321,
           "keyset_remove_returns_row");
    TAP_OK(!snap_keyset_remove(&ks, key, (size_t)n, &row), "keyset_remove_twice_finds_nothing");
    TAP_OK(!snap_keyset_contains(&ks, "{\"id\":5000}", 11), "keyset_unknown_key_absent");
    bool all = true;
    for (size_t i = 0; i < 5000; i++) {
        n = snprintf(key, sizeof key, "{\"id\":%zu}", i);
        if (i != 4321 && !snap_keyset_contains(&ks, key, (size_t)n))
            all = false;
    }
    TAP_OK(all && ks.used == 4999, "keyset_other_keys_survive_a_removal");
    snap_keyset_clear(&ks);
    TAP_OK(ks.used == 0 && !snap_keyset_contains(&ks, "{\"id\":1}", 8), "keyset_clear_empties");
    /* Removal and re-adding in turn never grows the table. */
    size_t nslots = ks.nslots;
    for (size_t i = 0; i < 100000; i++) {
        n = snprintf(key, sizeof key, "k%zu", i);
        snap_keyset_add(&ks, key, (size_t)n, i);
        snap_keyset_remove(&ks, key, (size_t)n, NULL);
    }
    TAP_OK(ks.used == 0 && ks.nslots == nslots, "keyset_tombstones_are_reclaimed");
    snap_keyset_free(&ks);
}

/* The key values kept from one row are the next chunk's lower bound:
 * copied out of the row (whose memory the next row replaces), in key
 * order, each NUL-terminated. */
static void test_rowvals(void)
{
    snap_table *t = snap_table_new(1, "public", "pairs");
    snap_table_add_column(t, "a", 25, false);
    snap_table_add_column(t, "k2", 25, true);
    snap_table_add_column(t, "k1", 23, true);
    snap_rowvals rv = {0};
    TAP_OK(snap_rowvals_reserve(&rv, t->ncols + t->nkey + 1) == 0 && rv.cap == 6,
           "rowvals_reserve_grows");
    TAP_OK(snap_rowvals_reserve(&rv, 2) == 0 && rv.cap == 6, "rowvals_reserve_never_shrinks");
    char row[] = "xyzb-7";
    rv.vals[0] = row;
    rv.lens[0] = 3;
    rv.vals[1] = row + 3;
    rv.lens[1] = 1;
    rv.vals[2] = row + 4;
    rv.lens[2] = 2;
    TAP_OK(snap_rowvals_keep_last(&rv, t) == 0, "rowvals_keep_last_succeeds");
    memset(row, '#', sizeof row - 1);
    TAP_OK(strcmp(snap_rowvals_last(&rv, 0), "b") == 0 &&
               strcmp(snap_rowvals_last(&rv, 1), "-7") == 0,
           "rowvals_keep_last_copies_key_values_in_key_order");
    rv.vals[1] = NULL;
    rv.lens[1] = 0;
    rv.vals[2] = "12345";
    rv.lens[2] = 3;
    TAP_OK(snap_rowvals_keep_last(&rv, t) == 0 && strcmp(snap_rowvals_last(&rv, 0), "") == 0 &&
               strcmp(snap_rowvals_last(&rv, 1), "123") == 0,
           "rowvals_keep_last_replaces_the_previous_row");
    snap_rowvals_free(&rv);
    snap_rowvals_free(&rv);
    snap_rowvals_free(NULL);
    TAP_OK(rv.cap == 0 && !rv.vals, "rowvals_free_twice_and_null_is_harmless");
    snap_table_free(t);
}

int main(void)
{
    test_row_encode();
    test_sql();
    test_names();
    test_signal();
    test_keyset();
    test_rowvals();
    return tap_done();
}
