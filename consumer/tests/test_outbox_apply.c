/* test_outbox_apply.c: outbox records as EVENTS.md events (consumer/outbox_apply.h):
 * the operation from the payload's op or the event type, the document, key,
 * index table and version, and what is skipped or refused. Every event made
 * is decoded with cdc_event_decode, as the consumer does. */
#include <stdio.h>
#include <string.h>

#include "cdc_event.h"
#include "outbox_apply.h"
#include "row_json.h"
#include "tap.h"

static char why[512];
static cdc_buf ev_text = CDC_BUF_INIT, key_text = CDC_BUF_INIT, shown = CDC_BUF_INIT;

static outbox_apply_input input(const char *topic, const char *key, const char *value,
                                const char *lsn, const char *type, const char *agg)
{
    return (outbox_apply_input){
        .topic = topic,
        .key = key, .key_len = key ? strlen(key) : 0,
        .value = value, .value_len = value ? strlen(value) : 0,
        .lsn = lsn, .lsn_len = lsn ? strlen(lsn) : 0,
        .event_type = type, .event_type_len = type ? strlen(type) : 0,
        .aggregate_type = agg, .aggregate_type_len = agg ? strlen(agg) : 0,
    };
}

static outbox_apply_result run(const outbox_apply_input *in)
{
    return outbox_apply_translate("pgcdc.outbox.", in, &ev_text, &key_text, why, sizeof why);
}

/* Translates and decodes; the decoded event is left in *ev (free it). */
static bool decoded(const outbox_apply_input *in, cdc_decoded_event *ev, yajl_val *key)
{
    memset(ev, 0, sizeof *ev);
    *key = NULL;
    char err[512];
    if (run(in) != OUTBOX_APPLY_EVENT) {
        printf("#   not an event: %s\n", why);
        return false;
    }
    if (cdc_event_decode(ev_text.data, ev_text.len, ev, err, sizeof err) < 0 ||
        cdc_key_decode(key_text.data, key_text.len, key, err, sizeof err) < 0) {
        printf("#   %s\n#   event: %s\n", err, ev_text.data);
        return false;
    }
    return true;
}

static const char *text_of(yajl_val v)
{
    cdc_buf_reset(&shown);
    row_json_put_value(&shown, v);
    return shown.data ? shown.data : "";
}

static void created_event_becomes_insert_of_the_payload(void)
{
    outbox_apply_input in = input("pgcdc.outbox.order", "42",
                                  "{\"id\":42,\"total\":\"19.90\",\"lines\":[{\"sku\":\"a\"}]}",
                                  "24337816", "OrderCreated", "order");
    cdc_decoded_event ev;
    yajl_val key;
    TAP_OK(decoded(&in, &ev, &key), "created_event_translates_and_decodes");
    TAP_OK(ev.op == 'c', "created_event_is_op_c");
    TAP_STREQ(ev.schema, "outbox", "schema_is_outbox");
    TAP_STREQ(ev.table, "order", "table_is_aggregate_type");
    TAP_OK(ev.lsn == 24337816, "lsn_is_pgcdc_lsn_header");
    TAP_STREQ(text_of(ev.after), "{\"id\":42,\"total\":\"19.90\",\"lines\":[{\"sku\":\"a\"}]}",
              "after_is_the_payload");
    TAP_OK(ev.before == NULL, "created_has_no_before");
    TAP_STREQ(text_of(key), "{\"id\":\"42\"}", "key_is_id_of_aggregate_id_text");
    cdc_decoded_event_free(&ev);
    yajl_tree_free(key);
}

static void payload_op_wins_and_is_left_out(void)
{
    outbox_apply_input in = input("pgcdc.outbox.order", "7", "{\"op\":\"u\",\"status\":\"paid\"}",
                                  "100", "OrderCreated", NULL);
    cdc_decoded_event ev;
    yajl_val key;
    TAP_OK(decoded(&in, &ev, &key) && ev.op == 'u', "payload_op_overrides_event_type");
    TAP_STREQ(text_of(ev.after), "{\"status\":\"paid\"}", "payload_op_left_out_of_document");
    TAP_STREQ(text_of(ev.before), "{\"id\":\"7\"}", "updated_before_is_key");
    TAP_STREQ(ev.table, "order", "aggregate_type_from_topic_without_header");
    cdc_decoded_event_free(&ev);
    yajl_tree_free(key);

    in = input("pgcdc.outbox.order", "7", "{\"op\":\"refund\",\"amount\":1}", "100",
               "order.updated", "order");
    TAP_OK(decoded(&in, &ev, &key) && ev.op == 'u', "unknown_payload_op_falls_back_to_type");
    TAP_STREQ(text_of(ev.after), "{\"op\":\"refund\",\"amount\":1}",
              "unknown_payload_op_kept_in_document");
    cdc_decoded_event_free(&ev);
    yajl_tree_free(key);
}

static void deleted_event_becomes_delete(void)
{
    outbox_apply_input in = input("pgcdc.outbox.order", "7", "\"gone\"", "18446744073709551615",
                                  "ORDER_DELETED", "order");
    cdc_decoded_event ev;
    yajl_val key;
    TAP_OK(decoded(&in, &ev, &key) && ev.op == 'd' && ev.after == NULL,
           "deleted_event_is_op_d_with_any_payload");
    TAP_OK(ev.lsn == UINT64_MAX, "lsn_up_to_2_64_minus_1");
    cdc_decoded_event_free(&ev);
    yajl_tree_free(key);
    in = input("pgcdc.outbox.order", "7", "{\"op\":\"DELETE\"}", "5", NULL, NULL);
    TAP_OK(decoded(&in, &ev, &key) && ev.op == 'd', "payload_op_delete_any_case");
    cdc_decoded_event_free(&ev);
    yajl_tree_free(key);
}

static void event_type_words(void)
{
    struct { const char *type; char op; } cases[] = {
        {"OrderCreated", 'c'}, {"order.updated", 'u'}, {"ORDER_DELETED", 'd'}, {"created", 'c'},
        {"Order-Updated", 'u'}, {"order updated", 'u'}, {"OrderUndeleted", 0},
        {"ORDERCREATED", 0}, {"OrderShipped", 0}, {"recreated", 0}, {"", 0}, {"deleted ", 0},
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char got = outbox_apply_op_of_type(cases[i].type, strlen(cases[i].type));
        if (got != cases[i].op) {
            printf("#   %s: got %c\n", cases[i].type, got ? got : '0');
            ok = false;
        }
    }
    TAP_OK(ok, "event_type_last_word_names_the_operation");
    TAP_OK(outbox_apply_op_of_word("Created", 7) == 'c' && outbox_apply_op_of_word("u", 1) == 'u' &&
               outbox_apply_op_of_word("del", 3) == 0 && outbox_apply_op_of_word("", 0) == 0,
           "op_words");
}

static void other_events_are_skipped(void)
{
    outbox_apply_input in = input("pgcdc.outbox.order", "7", "{\"carrier\":\"x\"}", "5",
                                  "OrderShipped", "order");
    TAP_OK(run(&in) == OUTBOX_APPLY_SKIP, "event_that_names_no_change_is_skipped");
    in = input("pgcdc.outbox.order", "7", "{}", "5", NULL, NULL);
    TAP_OK(run(&in) == OUTBOX_APPLY_SKIP, "event_without_type_or_op_is_skipped");
    in = input("pgcdc.outbox.order", "7", NULL, "5", "OrderCreated", NULL);
    TAP_OK(run(&in) == OUTBOX_APPLY_SKIP, "tombstone_is_skipped");
}

static void unusable_records_are_invalid(void)
{
    struct {
        outbox_apply_input in;
        const char *why;
        const char *name;
    } cases[] = {
        {input("pgcdc.outbox.o", "7", "{}", NULL, "OrderCreated", NULL),
         "outbox record has no pgcdc-lsn header", "missing_lsn_header_is_invalid"},
        {input("pgcdc.outbox.o", "7", "{}", "0/16B3748", "OrderCreated", NULL),
         "outbox record's pgcdc-lsn header \"0/16B3748\" is not a decimal LSN",
         "lsn_header_not_decimal_is_invalid"},
        {input("pgcdc.outbox.o", "7", "{}", "18446744073709551616", "OrderCreated", NULL),
         "outbox record's pgcdc-lsn header", "lsn_header_over_64_bits_is_invalid"},
        {input("pgcdc.outbox.o", "7", "{", "5", "OrderCreated", NULL), "outbox payload is not JSON",
         "payload_not_json_is_invalid"},
        {input("pgcdc.outbox.o", "7", "[1]", "5", "OrderCreated", NULL),
         "the payload of a created event is not a JSON object", "created_array_is_invalid"},
        {input("pgcdc.outbox.o", NULL, "{}", "5", "OrderCreated", NULL),
         "outbox record has no key", "null_key_is_invalid"},
        {input("pgcdc.outbox.o", "", "{}", "5", "OrderCreated", NULL), "outbox record has no key",
         "empty_key_is_invalid"},
        {input("pgcdc.outbox.o", "\xff", "{}", "5", "OrderCreated", NULL),
         "outbox record's key (the aggregate id) is not UTF-8", "key_not_utf8_is_invalid"},
        {input("pgcdc.outbox.o", "7", "{}", "5", "OrderCreated", "\xc3"),
         "outbox record's aggregate type is not UTF-8", "aggregate_type_not_utf8_is_invalid"},
        {input("other.topic", "7", "{}", "5", "OrderCreated", NULL),
         "outbox record has no aggregate type", "no_aggregate_type_is_invalid"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        outbox_apply_result r = run(&cases[i].in);
        bool ok = r == OUTBOX_APPLY_INVALID && strncmp(why, cases[i].why, strlen(cases[i].why)) == 0;
        TAP_OK(ok, cases[i].name);
        if (!ok)
            printf("#   result %d: %s\n", r, why);
    }
}

static void keys_and_names_are_escaped(void)
{
    outbox_apply_input in = input("pgcdc.outbox.x", "a\"b\\c\n", "{\"k\\u0022\":\"v\"}", "5",
                                  "Created", "Sales \"Order\"");
    cdc_decoded_event ev;
    yajl_val key;
    TAP_OK(decoded(&in, &ev, &key), "quotes_in_key_and_names_are_escaped");
    TAP_STREQ(ev.table, "Sales \"Order\"", "table_keeps_aggregate_type_header_text");
    TAP_STREQ(text_of(key), "{\"id\":\"a\\\"b\\\\c\\n\"}", "key_text_escaped");
    cdc_decoded_event_free(&ev);
    yajl_tree_free(key);
}

static void topics(void)
{
    TAP_OK(outbox_apply_is_topic("pgcdc.outbox.order", "pgcdc.outbox.") &&
               !outbox_apply_is_topic("pgcdc.outbox.", "pgcdc.outbox.") &&
               !outbox_apply_is_topic("pgcdc.public.outbox", "pgcdc.outbox.") &&
               !outbox_apply_is_topic("pgcdc.outbox.order", ""),
           "outbox_topics_by_prefix");
}

int main(void)
{
    created_event_becomes_insert_of_the_payload();
    payload_op_wins_and_is_left_out();
    deleted_event_becomes_delete();
    event_type_words();
    other_events_are_skipped();
    unusable_records_are_invalid();
    keys_and_names_are_escaped();
    topics();
    cdc_buf_free(&ev_text);
    cdc_buf_free(&key_text);
    cdc_buf_free(&shown);
    return tap_done();
}
