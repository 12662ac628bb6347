/* test_outbox.c: outbox rows and messages to records (producer/outbox.h):
 * routing, keys, headers, payload bytes, and every malformed case going to
 * the dead-letter topic with its reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbox.h"
#include "tap.h"

static char err[512];

static outbox *make(const char *const *columns, size_t ncolumns)
{
    static const char *const tables[] = {"public.outbox", "events"};
    outbox_settings s = {
        .topic_prefix = "pgcdc",
        .tables = tables,
        .ntables = 2,
        .columns = columns,
        .ncolumns = ncolumns,
        .message_prefix = "pgcdc.outbox",
        .dlq_topic = "pgcdc.dlq",
    };
    outbox *ob = NULL;
    if (outbox_new(&s, &ob, err, sizeof err) < 0)
        printf("# outbox_new: %s\n", err);
    return ob;
}

/* A header's value as a NUL-terminated copy ("(null)" for a null header,
 * NULL when absent); static storage, valid until the next call. */
static const char *header(const outbox_record *rec, const char *name)
{
    static char buf[512];
    for (size_t i = 0; i < rec->nheaders; i++) {
        const outbox_header *h = &rec->headers[i];
        if (h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0) {
            if (!h->value)
                return "(null)";
            snprintf(buf, sizeof buf, "%.*s", (int)h->value_len, h->value);
            return buf;
        }
    }
    return NULL;
}

static bool span_is(const char *p, size_t len, const char *want)
{
    return p && len == strlen(want) && memcmp(p, want, len) == 0;
}

/* A relation "public.outbox" with the given column names and a tuple of
 * text values (NULL: SQL NULL). */
typedef struct fake_row {
    relcache_rel rel;
    relcache_col cols[8];
    pgoutput_value vals[8];
    pgoutput_tuple tup;
} fake_row;

static void fake(fake_row *f, const char *const *names, const char *const *values, size_t n)
{
    memset(f, 0, sizeof *f);
    f->rel.oid = 16400;
    f->rel.nspname = "public";
    f->rel.relname = "outbox";
    f->rel.replident = 'd';
    f->rel.ncols = (uint16_t)n;
    f->rel.cols = f->cols;
    for (size_t i = 0; i < n; i++) {
        f->cols[i].name = (char *)names[i];
        f->cols[i].type_oid = 25;
        if (values[i]) {
            f->vals[i] = (pgoutput_value){PGOUTPUT_COL_TEXT, (uint32_t)strlen(values[i]),
                                          values[i]};
        } else {
            f->vals[i] = (pgoutput_value){PGOUTPUT_COL_NULL, 0, NULL};
        }
    }
    f->tup.ncols = (uint16_t)n;
    f->tup.cols = f->vals;
}

static const char *const std_names[] = {"id", "aggregate_type", "aggregate_id", "type",
                                        "payload", "tenant", "trace"};

static void row_routes_to_aggregate_topic_with_key_headers_and_payload_as_is(void)
{
    outbox *ob = make(NULL, 0);
    const char *vals[] = {"9b2f6c1e-8d1a-4c55-a0a7-4b0c3b1f2e11", "order", "42", "OrderCreated",
                          "{\"total\": \"19.90\", \"lines\": [1, 2]}", "acme", NULL};
    fake_row f;
    fake(&f, std_names, vals, 7);
    outbox_record rec;
    int rc = outbox_route_row(ob, &f.rel, &f.tup, &rec, err, sizeof err);
    TAP_OK(rc == 0 && !rec.dead, "row_is_routed");
    TAP_STREQ(rec.topic, "pgcdc.outbox.order", "row_topic_is_prefix_outbox_aggregate_type");
    TAP_OK(span_is(rec.key, rec.key_len, "42"), "row_key_is_aggregate_id_text");
    TAP_OK(span_is(rec.value, rec.value_len, "{\"total\": \"19.90\", \"lines\": [1, 2]}"),
           "row_value_is_payload_as_is");
    TAP_STREQ(header(&rec, "pgcdc-event-id"), "9b2f6c1e-8d1a-4c55-a0a7-4b0c3b1f2e11",
              "row_event_id_header");
    TAP_STREQ(header(&rec, "pgcdc-event-type"), "OrderCreated", "row_event_type_header");
    TAP_STREQ(header(&rec, "pgcdc-aggregate-type"), "order", "row_aggregate_type_header");
    TAP_STREQ(header(&rec, "tenant"), "acme", "row_other_column_becomes_header");
    TAP_STREQ(header(&rec, "trace"), "(null)", "row_null_other_column_is_null_header");
    TAP_OK(header(&rec, "payload") == NULL && header(&rec, "aggregate_id") == NULL,
           "row_role_columns_are_not_headers");
    TAP_OK(rec.nheaders == 5, "row_has_five_headers");
    TAP_OK(!rec.topic_renamed, "row_plain_name_not_renamed");
    outbox_free(ob);
}

static void row_mapped_topic_name_is_reported_once(void)
{
    outbox *ob = make(NULL, 0);
    const char *vals[] = {NULL, "Sales Order", "7", NULL, "{}", "x", "y"};
    fake_row f;
    fake(&f, std_names, vals, 7);
    outbox_record rec;
    outbox_route_row(ob, &f.rel, &f.tup, &rec, err, sizeof err);
    TAP_STREQ(rec.topic, "pgcdc.outbox.Sales_Order", "row_topic_name_mapped_like_tables");
    TAP_OK(rec.topic_renamed, "row_mapped_name_reported_first_time");
    TAP_OK(header(&rec, "pgcdc-event-id") == NULL && header(&rec, "pgcdc-event-type") == NULL,
           "row_null_id_and_type_give_no_header");
    TAP_STREQ(header(&rec, "pgcdc-aggregate-type"), "Sales Order",
              "row_aggregate_type_header_keeps_original_name");
    outbox_route_row(ob, &f.rel, &f.tup, &rec, err, sizeof err);
    TAP_OK(!rec.topic_renamed, "row_mapped_name_not_reported_twice");
    outbox_free(ob);
}

static void row_null_payload_gives_null_value(void)
{
    outbox *ob = make(NULL, 0);
    const char *vals[] = {NULL, "order", "7", "OrderDeleted", NULL, NULL, NULL};
    fake_row f;
    fake(&f, std_names, vals, 7);
    outbox_record rec;
    int rc = outbox_route_row(ob, &f.rel, &f.tup, &rec, err, sizeof err);
    TAP_OK(rc == 0 && !rec.dead && rec.value == NULL, "row_null_payload_is_null_value");
    outbox_free(ob);
}

static void row_malformed_goes_to_dead_letter_topic(void)
{
    outbox *ob = make(NULL, 0);
    struct {
        const char *vals[7];
        const char *reason;
        const char *key;
        const char *name;
    } cases[] = {
        {{NULL, NULL, "7", NULL, "{}", NULL, NULL}, "aggregate_type (column aggregate_type) is NULL",
         "7", "row_null_aggregate_type_is_dead"},
        {{NULL, "", "7", NULL, "{}", NULL, NULL}, "aggregate_type (column aggregate_type) is empty",
         "7", "row_empty_aggregate_type_is_dead"},
        {{NULL, "order", NULL, NULL, "{}", NULL, NULL}, "aggregate_id (column aggregate_id) is NULL",
         NULL, "row_null_aggregate_id_is_dead"},
        {{NULL, "order", "7", NULL, "not json", NULL, NULL},
         "payload (column payload) is not JSON: ", "7", "row_payload_not_json_is_dead"},
        {{NULL, "order", "7", NULL, "{\"a\":1} {", NULL, NULL},
         "payload (column payload) is not JSON: ", "7", "row_payload_trailing_data_is_dead"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_row f;
        fake(&f, std_names, cases[i].vals, 7);
        outbox_record rec;
        int rc = outbox_route_row(ob, &f.rel, &f.tup, &rec, err, sizeof err);
        bool ok = rc == 0 && rec.dead && strcmp(rec.topic, "pgcdc.dlq") == 0 &&
                  strncmp(rec.reason, cases[i].reason, strlen(cases[i].reason)) == 0 &&
                  rec.value == NULL &&
                  (cases[i].key ? span_is(rec.key, rec.key_len, cases[i].key) : rec.key == NULL) &&
                  header(&rec, "pgcdc-dlq-reason") &&
                  strcmp(header(&rec, "pgcdc-dlq-reason"), rec.reason) == 0 &&
                  strcmp(header(&rec, "pgcdc-dlq-source"), "public.outbox") == 0 &&
                  rec.nheaders == 2;
        TAP_OK(ok, cases[i].name);
        if (!ok)
            printf("#   reason: %s\n", rec.reason ? rec.reason : "(none)");
    }
    outbox_free(ob);
}

static void row_missing_column_is_dead(void)
{
    outbox *ob = make(NULL, 0);
    static const char *const names[] = {"id", "aggregate_type", "aggregate_id", "body"};
    const char *vals[] = {"1", "order", "7", "{}"};
    fake_row f;
    fake(&f, names, vals, 4);
    outbox_record rec;
    outbox_route_row(ob, &f.rel, &f.tup, &rec, err, sizeof err);
    TAP_OK(rec.dead, "row_table_without_payload_column_is_dead");
    TAP_STREQ(rec.reason,
              "outbox table public.outbox has no column payload for payload "
              "(see --outbox-columns)", "row_missing_column_reason_names_option");
    outbox_free(ob);
}

static void row_column_names_are_configurable(void)
{
    static const char *const columns[] = {"aggregate_type=kind", "aggregate_id=ref",
                                          "payload=body", "id=event_id", "type=event"};
    outbox *ob = make(columns, 5);
    static const char *const names[] = {"event_id", "kind", "ref", "event", "body", "id"};
    const char *vals[] = {"e-1", "invoice", "INV-9", "invoice.updated", "[1]", "55"};
    fake_row f;
    fake(&f, names, vals, 6);
    outbox_record rec;
    outbox_route_row(ob, &f.rel, &f.tup, &rec, err, sizeof err);
    TAP_OK(!rec.dead && strcmp(rec.topic, "pgcdc.outbox.invoice") == 0 &&
               span_is(rec.key, rec.key_len, "INV-9") && span_is(rec.value, rec.value_len, "[1]"),
           "row_custom_columns_route");
    TAP_STREQ(header(&rec, "pgcdc-event-id"), "e-1", "row_custom_id_column");
    TAP_STREQ(header(&rec, "pgcdc-event-type"), "invoice.updated", "row_custom_type_column");
    TAP_STREQ(header(&rec, "id"), "55", "row_column_named_like_a_default_role_is_a_header");
    outbox_free(ob);
}

/* ---- messages -------------------------------------------------------- */

static int route_msg(outbox *ob, const char *content, outbox_record *rec)
{
    return outbox_route_message(ob, content, strlen(content), rec, err, sizeof err);
}

static void message_routes_with_payload_text_as_is(void)
{
    outbox *ob = make(NULL, 0);
    const char *msg = " { \"aggregate_type\" : \"order\", \"aggregate_id\":\"42\", "
                      "\"type\":\"OrderCreated\", \"id\":\"e-1\", \"extra\": [1, {\"}\": \"]\"}], "
                      "\"payload\" : {\"total\" : 1.50e0, \"s\":\"a\\\"b\"} ,"
                      " \"headers\":{\"tenant\":\"acme\",\"trace\":null}}\n";
    outbox_record rec;
    int rc = route_msg(ob, msg, &rec);
    TAP_OK(rc == 0 && !rec.dead, "message_is_routed");
    TAP_STREQ(rec.topic, "pgcdc.outbox.order", "message_topic");
    TAP_OK(span_is(rec.key, rec.key_len, "42"), "message_key_is_aggregate_id");
    TAP_OK(span_is(rec.value, rec.value_len, "{\"total\" : 1.50e0, \"s\":\"a\\\"b\"}"),
           "message_payload_text_kept_byte_for_byte");
    TAP_STREQ(header(&rec, "pgcdc-event-id"), "e-1", "message_event_id_header");
    TAP_STREQ(header(&rec, "pgcdc-event-type"), "OrderCreated", "message_event_type_header");
    TAP_STREQ(header(&rec, "pgcdc-aggregate-type"), "order", "message_aggregate_type_header");
    TAP_STREQ(header(&rec, "tenant"), "acme", "message_headers_object_gives_headers");
    TAP_STREQ(header(&rec, "trace"), "(null)", "message_null_header_value");
    TAP_OK(rec.nheaders == 5, "message_has_five_headers");
    outbox_free(ob);
}

static void message_strings_are_unescaped(void)
{
    outbox *ob = make(NULL, 0);
    const char *msg = "{\"aggregate_type\":\"caf\\u00e9\",\"aggregate_id\":\"a\\/b\\ud83d\\ude00\","
                      "\"type\":\"x\\ty\",\"payload\":null,"
                      "\"headers\":{\"n\\u0041me\":\"nul\\u0000byte\"}}";
    outbox_record rec;
    int rc = route_msg(ob, msg, &rec);
    TAP_OK(rc == 0 && !rec.dead, "message_with_escapes_is_routed");
    TAP_OK(span_is(rec.key, rec.key_len, "a/b\xf0\x9f\x98\x80"),
           "message_key_unescaped_with_surrogate_pair");
    TAP_STREQ(rec.aggregate_type, "caf\xc3\xa9", "message_aggregate_type_unescaped");
    TAP_STREQ(rec.topic, "pgcdc.outbox.caf_", "message_non_ascii_type_mapped_in_topic");
    TAP_STREQ(header(&rec, "pgcdc-event-type"), "x\ty", "message_type_unescaped");
    TAP_OK(rec.value == NULL, "message_null_payload_is_null_value");
    bool found = false;
    for (size_t i = 0; i < rec.nheaders; i++)
        if (span_is(rec.headers[i].name, rec.headers[i].name_len, "nAme"))
            found = rec.headers[i].value_len == 8 &&
                    memcmp(rec.headers[i].value, "nul\0byte", 8) == 0;
    TAP_OK(found, "message_header_keeps_escaped_nul");
    outbox_free(ob);
}

static void message_number_aggregate_id_keeps_its_text(void)
{
    outbox *ob = make(NULL, 0);
    outbox_record rec;
    route_msg(ob, "{\"aggregate_type\":\"order\",\"aggregate_id\":12345678901234567890,"
                  "\"payload\":[]}", &rec);
    TAP_OK(!rec.dead && span_is(rec.key, rec.key_len, "12345678901234567890"),
           "message_number_aggregate_id_exact_text");
    TAP_OK(header(&rec, "pgcdc-event-id") == NULL, "message_without_id_has_no_id_header");
    outbox_free(ob);
}

static void message_malformed_goes_to_dead_letter_topic(void)
{
    outbox *ob = make(NULL, 0);
    struct {
        const char *msg;
        const char *reason;
        const char *key;
        const char *name;
    } cases[] = {
        {"not json", "outbox message is not JSON: ", NULL, "message_not_json_is_dead"},
        {"[1,2]", "outbox message is not a JSON object", NULL, "message_not_object_is_dead"},
        {"{\"aggregate_id\":\"1\",\"payload\":{}}", "outbox message has no aggregate_type", "1",
         "message_without_aggregate_type_is_dead"},
        {"{\"aggregate_type\":3,\"aggregate_id\":\"1\",\"payload\":{}}",
         "outbox message has no aggregate_type", "1", "message_numeric_aggregate_type_is_dead"},
        {"{\"aggregate_type\":\"\",\"aggregate_id\":\"1\",\"payload\":{}}",
         "outbox message's aggregate_type is empty", "1", "message_empty_aggregate_type_is_dead"},
        {"{\"aggregate_type\":\"a\\u0000b\",\"aggregate_id\":\"1\",\"payload\":{}}",
         "outbox message's aggregate_type is holding a NUL", "1",
         "message_aggregate_type_with_nul_is_dead"},
        {"{\"aggregate_type\":\"o\",\"payload\":{}}", "outbox message has no aggregate_id", NULL,
         "message_without_aggregate_id_is_dead"},
        {"{\"aggregate_type\":\"o\",\"aggregate_id\":\"\",\"payload\":{}}",
         "outbox message has no aggregate_id", NULL, "message_empty_aggregate_id_is_dead"},
        {"{\"aggregate_type\":\"o\",\"aggregate_id\":{},\"payload\":{}}",
         "outbox message has no aggregate_id", NULL, "message_object_aggregate_id_is_dead"},
        {"{\"aggregate_type\":\"o\",\"aggregate_id\":\"1\"}", "outbox message has no payload", "1",
         "message_without_payload_is_dead"},
        {"{\"aggregate_type\":\"o\",\"aggregate_id\":\"1\",\"aggregate_type\":\"p\",\"payload\":1}",
         "outbox message has the field aggregate_type twice", NULL,
         "message_duplicate_field_is_dead"},
        {"{\"aggregate_type\":\"o\",\"aggregate_id\":\"1\",\"type\":5,\"payload\":1}",
         "outbox message's type is not a string", "1", "message_numeric_type_is_dead"},
        {"{\"aggregate_type\":\"o\",\"aggregate_id\":\"1\",\"id\":[],\"payload\":1}",
         "outbox message's id is not a string", "1", "message_array_id_is_dead"},
        {"{\"aggregate_type\":\"o\",\"aggregate_id\":\"1\",\"payload\":1,\"headers\":[]}",
         "outbox message's headers is not an object", "1", "message_headers_array_is_dead"},
        {"{\"aggregate_type\":\"o\",\"aggregate_id\":\"1\",\"payload\":1,\"headers\":{\"h\":1}}",
         "outbox message's header \"h\" is not a string or null", "1",
         "message_numeric_header_value_is_dead"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        outbox_record rec;
        int rc = route_msg(ob, cases[i].msg, &rec);
        bool ok = rc == 0 && rec.dead && strcmp(rec.topic, "pgcdc.dlq") == 0 &&
                  strncmp(rec.reason, cases[i].reason, strlen(cases[i].reason)) == 0 &&
                  span_is(rec.value, rec.value_len, cases[i].msg) &&
                  (cases[i].key ? span_is(rec.key, rec.key_len, cases[i].key) : rec.key == NULL) &&
                  strcmp(header(&rec, "pgcdc-dlq-source"), "message:pgcdc.outbox") == 0 &&
                  strcmp(header(&rec, "pgcdc-dlq-reason"), rec.reason) == 0;
        TAP_OK(ok, cases[i].name);
        if (!ok)
            printf("#   reason: %s\n", rec.reason ? rec.reason : "(none)");
    }
    outbox_free(ob);
}

static void settings_are_checked(void)
{
    TAP_OK(outbox_check_column_item("payload=body", err, sizeof err) == 0,
           "column_item_role_equals_column_accepted");
    TAP_OK(outbox_check_column_item("body", err, sizeof err) < 0 &&
               outbox_check_column_item("payload=", err, sizeof err) < 0 &&
               outbox_check_column_item("content=body", err, sizeof err) < 0,
           "column_item_without_role_or_column_rejected");
    static const char *const clash[] = {"payload=type"};
    outbox *ob = make(clash, 1);
    TAP_OK(ob == NULL && strstr(err, "column type cannot be both type and payload"),
           "two_roles_on_one_column_rejected");
    ob = make(NULL, 0);
    TAP_OK(outbox_has_table(ob, "public", "outbox") && outbox_has_table(ob, "public", "events") &&
               !outbox_has_table(ob, "other", "outbox") && !outbox_has_table(ob, "public", "orders"),
           "tables_matched_by_schema_and_name_public_by_default");
    TAP_OK(outbox_has_message_prefix(ob, "pgcdc.outbox") &&
               !outbox_has_message_prefix(ob, "pgcdc.outbox.x") &&
               !outbox_has_message_prefix(ob, NULL),
           "message_prefix_matched_exactly");
    outbox_free(ob);
    outbox_free(NULL);
    static const char *const tables[] = {".outbox"};
    outbox_settings s = {.topic_prefix = "p", .tables = tables, .ntables = 1};
    TAP_OK(outbox_new(&s, &ob, err, sizeof err) < 0 && ob == NULL &&
               strstr(err, "--outbox-table: \".outbox\""),
           "empty_schema_rejected");
    s.ntables = 0;
    TAP_OK(outbox_new(&s, &ob, err, sizeof err) == 0 && !outbox_has_message_prefix(ob, ""),
           "no_message_prefix_routes_no_message");
    outbox_free(ob);
}

int main(void)
{
    row_routes_to_aggregate_topic_with_key_headers_and_payload_as_is();
    row_mapped_topic_name_is_reported_once();
    row_null_payload_gives_null_value();
    row_malformed_goes_to_dead_letter_topic();
    row_missing_column_is_dead();
    row_column_names_are_configurable();
    message_routes_with_payload_text_as_is();
    message_strings_are_unescaped();
    message_number_aggregate_id_keeps_its_text();
    message_malformed_goes_to_dead_letter_topic();
    settings_are_checked();
    return tap_done();
}
