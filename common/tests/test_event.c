/* test_event.c: pins the event format of shared/design/EVENTS.md: every
 * example of that page, each op, each reason to reject a record, names that
 * need escaping or repair, and the table-to-topic mapping. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "cdc_event.h"
#include "json_tree.h"
#include "tap.h"

/* The Value example of EVENTS.md, verbatim. */
static const char EXAMPLE_VALUE[] =
    "{\n"
    "  \"op\": \"u\",\n"
    "  \"before\": {\"id\": 42},\n"
    "  \"after\":  {\"id\": 42, \"name\": \"lamp\", \"price\": \"19.90\", \"tags\": [\"a\",\"b\"], \"attrs\": {\"k\": 1}},\n"
    "  \"unchanged_toast\": [\"description\"],\n"
    "  \"source\": {\n"
    "    \"db\": \"shop\", \"schema\": \"public\", \"table\": \"items\",\n"
    "    \"lsn\": 24337816, \"commit_lsn\": 24338104, \"txid\": 771,\n"
    "    \"seq\": 3, \"ts_ms\": 1732441234567, \"snapshot\": false\n"
    "  },\n"
    "  \"ts_ms\": 1732441234601\n"
    "}\n";

/* Its canonical compact form, which the encoder must produce byte for byte. */
static const char EXAMPLE_COMPACT[] =
    "{\"op\":\"u\",\"before\":{\"id\":42},"
    "\"after\":{\"id\":42,\"name\":\"lamp\",\"price\":\"19.90\",\"tags\":[\"a\",\"b\"],\"attrs\":{\"k\":1}},"
    "\"unchanged_toast\":[\"description\"],"
    "\"source\":{\"db\":\"shop\",\"schema\":\"public\",\"table\":\"items\","
    "\"lsn\":24337816,\"commit_lsn\":24338104,\"txid\":771,"
    "\"seq\":3,\"ts_ms\":1732441234567,\"snapshot\":false},"
    "\"ts_ms\":1732441234601}";

#define COL(n, j) {(n), (j), sizeof(j) - 1}

static char err[256];

/* ---- helpers ---------------------------------------------------------- */

static void check_json(yajl_val v, const char *want, const char *name)
{
    char *got = json_tree_compact(v, "(none)");
    TAP_STREQ(got, want, name);
    free(got);
}

static yajl_val member(yajl_val obj, const char *key)
{
    if (!YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    return NULL;
}

static char *canonical(const char *json)
{
    char e[128];
    yajl_val v = yajl_tree_parse(json, e, sizeof e);
    char *s = json_tree_compact(v, "(none)");
    yajl_tree_free(v);
    return s;
}

static int decode_str(const char *json, cdc_decoded_event *ev)
{
    err[0] = '\0';
    return cdc_event_decode(json, strlen(json), ev, err, sizeof err);
}

/* Decoding must fail and the message must contain `want`. */
static void rejects(const char *json, size_t len, const char *want, const char *name)
{
    cdc_decoded_event ev;
    err[0] = '\0';
    int rc = cdc_event_decode(json, len, &ev, err, sizeof err);
    int ok = rc == -1 && strstr(err, want) != NULL && ev.root == NULL;
    TAP_OK(ok, name);
    if (!ok)
        printf("#   rc %d, err: %s\n#   want in err: %s\n", rc, err, want);
    cdc_decoded_event_free(&ev);
}

#define REJECTS(json, want, name) rejects((json), strlen(json), (want), (name))

static char *encode(const cdc_event *ev)
{
    cdc_buf b = CDC_BUF_INIT;
    err[0] = '\0';
    if (cdc_event_encode(ev, &b, err, sizeof err) < 0) {
        printf("#   encode failed: %s\n", err);
        cdc_buf_free(&b);
        return NULL;
    }
    return cdc_buf_steal(&b);
}

static const cdc_source SOURCE = {
    "shop", "public", "items", 24337816, 24338104, 771, 3, 1732441234567, false,
};

/* ---- the examples of EVENTS.md ------------------------------------------ */

static void test_value_example_decodes(void)
{
    cdc_decoded_event ev;
    int rc = decode_str(EXAMPLE_VALUE, &ev);
    TAP_OK(rc == 0, "example_value_decodes");
    if (rc < 0) {
        printf("#   %s\n", err);
        return;
    }
    TAP_OK(ev.op == 'u', "example_value_op_is_u");
    check_json(ev.before, "{\"id\":42}", "example_value_before");
    check_json(ev.after, "{\"id\":42,\"name\":\"lamp\",\"price\":\"19.90\",\"tags\":[\"a\",\"b\"],\"attrs\":{\"k\":1}}",
               "example_value_after_in_column_order");
    TAP_OK(ev.n_unchanged_toast == 1 && strcmp(ev.unchanged_toast[0], "description") == 0,
           "example_value_unchanged_toast");
    TAP_STREQ(ev.db, "shop", "example_value_db");
    TAP_STREQ(ev.schema, "public", "example_value_schema");
    TAP_STREQ(ev.table, "items", "example_value_table");
    TAP_OK(ev.lsn == 24337816, "example_value_lsn");
    TAP_OK(ev.commit_lsn == 24338104, "example_value_commit_lsn");
    TAP_OK(ev.txid == 771, "example_value_txid");
    TAP_OK(ev.seq == 3, "example_value_seq");
    TAP_OK(ev.source_ts_ms == 1732441234567, "example_value_source_ts_ms");
    TAP_OK(ev.snapshot == false, "example_value_snapshot");
    TAP_OK(ev.ts_ms == 1732441234601, "example_value_ts_ms");
    TAP_STREQ(YAJL_GET_STRING(member(ev.after, "price")), "19.90",
              "example_value_numeric_stays_a_string");
    cdc_decoded_event_free(&ev);
}

static void test_value_example_encodes(void)
{
    static const cdc_column before[] = {COL("id", "42")};
    static const cdc_column after[] = {
        COL("id", "42"), COL("name", "\"lamp\""), COL("price", "\"19.90\""),
        COL("tags", "[\"a\",\"b\"]"), COL("attrs", "{\"k\": 1}"),
    };
    /* jsonb's text output has a space after ':'; the encoder embeds values
     * verbatim, so the canonical example uses the compact fragment. */
    static const cdc_column after_compact[] = {
        COL("id", "42"), COL("name", "\"lamp\""), COL("price", "\"19.90\""),
        COL("tags", "[\"a\",\"b\"]"), COL("attrs", "{\"k\":1}"),
    };
    const cdc_row b = {before, 1}, a = {after_compact, 5}, a_spaced = {after, 5};
    const char *toast[] = {"description"};
    cdc_event ev = {'u', &b, &a, toast, 1, SOURCE, 1732441234601, NULL, 0};

    char *got = encode(&ev);
    TAP_STREQ(got, EXAMPLE_COMPACT, "example_value_encodes_to_its_compact_form");
    char *canon = canonical(EXAMPLE_VALUE);
    TAP_STREQ(got, canon, "example_value_compact_form_is_yajls_canonical_form");
    free(got);
    free(canon);

    ev.after = &a_spaced;
    got = encode(&ev);
    TAP_OK(got && strstr(got, "\"attrs\":{\"k\": 1}") != NULL,
           "encode_embeds_column_json_verbatim");
    free(got);
}

static void test_key_examples(void)
{
    static const cdc_column k1[] = {COL("id", "42")};
    static const cdc_column k2[] = {COL("tenant", "\"a\""), COL("id", "7")};
    const cdc_row r1 = {k1, 1}, r2 = {k2, 2};
    cdc_buf b = CDC_BUF_INIT;

    TAP_OK(cdc_key_encode(&r1, &b, err, sizeof err) == 0, "key_example_single_encodes");
    TAP_STREQ(b.data, "{\"id\":42}", "key_example_single_text");
    cdc_buf_reset(&b);
    TAP_OK(cdc_key_encode(&r2, &b, err, sizeof err) == 0, "key_example_composite_encodes");
    TAP_STREQ(b.data, "{\"tenant\":\"a\",\"id\":7}", "key_example_composite_keeps_column_order");

    yajl_val key = NULL;
    TAP_OK(cdc_key_decode(b.data, b.len, &key, err, sizeof err) == 0,
           "key_example_composite_decodes");
    TAP_OK(key && key->u.object.len == 2 && strcmp(key->u.object.keys[0], "tenant") == 0 &&
           strcmp(key->u.object.keys[1], "id") == 0,
           "key_decode_keeps_column_order");
    yajl_tree_free(key);

    /* Appends: a key after existing content. */
    cdc_buf_reset(&b);
    cdc_buf_puts(&b, "x");
    cdc_key_encode(&r1, &b, err, sizeof err);
    TAP_STREQ(b.data, "x{\"id\":42}", "key_encode_appends");

    /* A composite key with a string that needs escaping inside. */
    static const cdc_column k3[] = {
        COL("tenant", "\"a\\\"b\""), COL("region", "\"eu\\u00e9\""), COL("id", "-7"),
    };
    const cdc_row r3 = {k3, 3};
    cdc_buf_reset(&b);
    TAP_OK(cdc_key_encode(&r3, &b, err, sizeof err) == 0, "key_composite_three_columns_encodes");
    TAP_STREQ(b.data, "{\"tenant\":\"a\\\"b\",\"region\":\"eu\\u00e9\",\"id\":-7}",
              "key_composite_three_columns_text");
    key = NULL;
    cdc_key_decode(b.data, b.len, &key, err, sizeof err);
    TAP_STREQ(YAJL_GET_STRING(member(key, "tenant")), "a\"b", "key_decode_unescapes_strings");
    TAP_STREQ(YAJL_GET_STRING(member(key, "region")), "eu\xc3\xa9", "key_decode_unescapes_unicode");
    yajl_tree_free(key);

    size_t before = b.len;
    TAP_OK(cdc_key_encode(NULL, &b, err, sizeof err) == -1 && strstr(err, "null Kafka key"),
           "key_encode_rejects_no_key");
    const cdc_row empty = {NULL, 0};
    TAP_OK(cdc_key_encode(&empty, &b, err, sizeof err) == -1 && b.len == before,
           "key_encode_rejects_zero_columns");

    key = (yajl_val)1;
    TAP_OK(cdc_key_decode("[1]", 3, &key, err, sizeof err) == -1 && key == NULL &&
           strstr(err, "cannot decode key: the key is an array, not an object"),
           "key_decode_rejects_non_object");
    TAP_OK(cdc_key_decode("{\"id\":", 6, &key, err, sizeof err) == -1 &&
           strstr(err, "cannot decode key: not JSON"),
           "key_decode_rejects_non_json");
    TAP_OK(cdc_key_decode("null", 4, &key, err, sizeof err) == -1 && strstr(err, "null"),
           "key_decode_rejects_null_text");
    cdc_buf_free(&b);
}

/* The column value mapping table: each example value is embedded as is. */
static void test_column_value_examples(void)
{
    static const cdc_column cols[] = {
        COL("null", "null"), COL("bool_t", "true"), COL("bool_f", "false"),
        COL("int8", "9223372036854775807"), COL("float8", "1.0000000000000001e+300"),
        COL("float_nan", "\"NaN\""), COL("float_inf", "\"-Infinity\""),
        COL("numeric", "\"19.90\""), COL("numeric_nan", "\"NaN\""),
        COL("jsonb", "{\"k\": [1, {\"x\": null}]}"), COL("json_scalar", "3"),
        COL("bytea", "\"3q2+7w==\""), COL("date", "\"2024-01-31\""),
        COL("ts", "\"2024-01-31T10:00:00.123456\""),
        COL("tstz", "\"2024-01-31T10:00:00.123456Z\""),
        COL("uuid", "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""),
        COL("int_array", "[[1,2],[3,null]]"), COL("text_array", "[\"a\",null,\"c\"]"),
    };
    const size_t n = sizeof cols / sizeof cols[0];
    const cdc_row row = {cols, n};
    cdc_event ev = {'c', NULL, &row, NULL, 0, SOURCE, 1, NULL, 0};
    char *got = encode(&ev);
    TAP_OK(got != NULL, "encode_accepts_every_mapped_value_kind");
    cdc_decoded_event d;
    TAP_OK(got && decode_str(got, &d) == 0, "decode_reads_every_mapped_value_kind");
    int same = d.after && d.after->u.object.len == n;
    for (size_t i = 0; same && i < n; i++) {
        char *one = json_tree_compact(d.after->u.object.values[i], "(none)");
        char *want = canonical(cols[i].json);
        same = strcmp(d.after->u.object.keys[i], cols[i].name) == 0 && strcmp(one, want) == 0;
        if (!same)
            printf("#   column %s: %s vs %s\n", cols[i].name, one, want);
        free(one);
        free(want);
    }
    TAP_OK(same, "mapped_values_round_trip_in_column_order");
    TAP_STREQ(YAJL_GET_NUMBER(member(d.after, "int8")), "9223372036854775807",
              "decode_keeps_bigint_text_exact");
    TAP_STREQ(YAJL_GET_NUMBER(member(d.after, "float8")), "1.0000000000000001e+300",
              "decode_keeps_float_text_exact");
    cdc_decoded_event_free(&d);
    free(got);

    const char *big = "{\"op\":\"c\",\"after\":{\"n\":123456789012345678901234567890.123456789012345},"
                      "\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1}}";
    TAP_OK(decode_str(big, &d) == 0, "decode_accepts_numbers_beyond_double_precision");
    TAP_STREQ(YAJL_GET_NUMBER(member(d.after, "n")), "123456789012345678901234567890.123456789012345",
              "decode_keeps_long_number_text_exact");
    cdc_decoded_event_free(&d);
}

/* ---- each op -------------------------------------------------------------- */

static void test_each_op_round_trips(void)
{
    static const cdc_column key[] = {COL("id", "1")};
    static const cdc_column full[] = {COL("id", "1"), COL("v", "\"x\"")};
    const cdc_row k = {key, 1}, f = {full, 2};
    struct {
        char op;
        const cdc_row *before, *after;
        const char *want_before, *want_after;
        bool snapshot;
    } cases[] = {
        {'c', NULL, &f, "(none)", "{\"id\":1,\"v\":\"x\"}", false},
        {'u', &k, &f, "{\"id\":1}", "{\"id\":1,\"v\":\"x\"}", false},
        {'u', NULL, &f, "(none)", "{\"id\":1,\"v\":\"x\"}", false},
        {'d', &f, NULL, "{\"id\":1,\"v\":\"x\"}", "(none)", false},
        {'d', NULL, NULL, "(none)", "(none)", false},
        {'r', NULL, &f, "(none)", "{\"id\":1,\"v\":\"x\"}", true},
        {'t', NULL, NULL, "(none)", "(none)", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[96];
        cdc_event ev = {cases[i].op, cases[i].before, cases[i].after, NULL, 0, SOURCE, 5, NULL, 0};
        ev.source.snapshot = cases[i].snapshot;
        ev.source.lsn = UINT64_MAX - i;
        char *got = encode(&ev);
        cdc_decoded_event d;
        int rc = got ? decode_str(got, &d) : -1;
        snprintf(name, sizeof name, "op_%c_%s_round_trips", cases[i].op,
                 cases[i].before ? "with_before" : "without_before");
        TAP_OK(rc == 0 && d.op == cases[i].op && d.lsn == UINT64_MAX - i &&
               d.snapshot == cases[i].snapshot && d.seq == 3 && d.ts_ms == 5, name);
        if (rc == 0) {
            snprintf(name, sizeof name, "op_%c_before", cases[i].op);
            check_json(d.before, cases[i].want_before, name);
            snprintf(name, sizeof name, "op_%c_after", cases[i].op);
            check_json(d.after, cases[i].want_after, name);
            cdc_decoded_event_free(&d);
        } else {
            printf("#   %s\n", err);
        }
        free(got);
    }
}

static void test_truncate(void)
{
    cdc_source src = SOURCE;
    src.lsn = 99;
    cdc_event ev = {'t', NULL, NULL, NULL, 0, src, 7, NULL, 0};
    char *got = encode(&ev);
    TAP_STREQ(got, "{\"op\":\"t\",\"before\":null,\"after\":null,"
              "\"source\":{\"db\":\"shop\",\"schema\":\"public\",\"table\":\"items\","
              "\"lsn\":99,\"commit_lsn\":24338104,\"txid\":771,\"seq\":3,"
              "\"ts_ms\":1732441234567,\"snapshot\":false},\"ts_ms\":7}",
              "truncate_encodes_with_null_before_and_after");
    free(got);

    static const cdc_column c[] = {COL("id", "1")};
    const cdc_row r = {c, 1};
    ev.after = &r;
    TAP_OK(encode(&ev) == NULL && strstr(err, "op t must have no after row"),
           "encode_rejects_truncate_with_after");
    ev.after = NULL;
    ev.before = &r;
    TAP_OK(encode(&ev) == NULL && strstr(err, "op t must have no before row"),
           "encode_rejects_truncate_with_before");

    REJECTS("{\"op\":\"t\",\"after\":{\"id\":1},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1}}",
            "after is an object, but op t must have a null after",
            "decode_rejects_truncate_with_after");
    REJECTS("{\"op\":\"t\",\"before\":{\"id\":1},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1}}",
            "before is an object, but op t must have a null before",
            "decode_rejects_truncate_with_before");
    cdc_decoded_event d;
    TAP_OK(decode_str("{\"op\":\"t\",\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":12}}", &d) == 0 &&
           d.op == 't' && d.before == NULL && d.after == NULL && d.lsn == 12 && d.db == NULL,
           "decode_accepts_minimal_truncate");
    cdc_decoded_event_free(&d);
}

static void test_unchanged_toast(void)
{
    static const cdc_column c[] = {COL("id", "1")};
    const cdc_row r = {c, 1};
    cdc_event ev = {'u', NULL, &r, NULL, 0, SOURCE, 1, NULL, 0};
    char *got = encode(&ev);
    TAP_OK(got && !strstr(got, "unchanged_toast"), "unchanged_toast_omitted_when_empty");
    cdc_decoded_event d;
    TAP_OK(got && decode_str(got, &d) == 0 && d.n_unchanged_toast == 0 &&
           d.unchanged_toast == NULL, "unchanged_toast_absent_decodes_as_none");
    cdc_decoded_event_free(&d);
    free(got);

    const char *toast[] = {"description", "body", "na\xc3\xafve"};
    ev.unchanged_toast = toast;
    ev.n_unchanged_toast = 3;
    got = encode(&ev);
    TAP_OK(got && strstr(got, "\"after\":{\"id\":1},\"unchanged_toast\":[\"description\",\"body\",\"na\xc3\xafve\"],\"source\":"),
           "unchanged_toast_follows_after");
    TAP_OK(got && decode_str(got, &d) == 0 && d.n_unchanged_toast == 3 &&
           strcmp(d.unchanged_toast[2], "na\xc3\xafve") == 0,
           "unchanged_toast_round_trips");
    cdc_decoded_event_free(&d);
    free(got);

    toast[1] = NULL;
    TAP_OK(encode(&ev) == NULL && strstr(err, "unchanged_toast[1] is NULL"),
           "encode_rejects_null_unchanged_toast_name");

    TAP_OK(decode_str("{\"op\":\"c\",\"after\":{},\"unchanged_toast\":[],\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1}}", &d) == 0 &&
           d.n_unchanged_toast == 0, "unchanged_toast_empty_array_decodes_as_none");
    cdc_decoded_event_free(&d);
}

/* ---- rejections ----------------------------------------------------------- */

#define SRC "\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1}"

static void test_decode_rejections(void)
{
    REJECTS("{\"op\":", "cannot decode event: not JSON: at offset 6: unexpected end",
            "decode_rejects_truncated_json");
    REJECTS("", "not JSON: at offset 0: expected a value, found the end",
            "decode_rejects_empty_value");
    REJECTS("{\"op\":\"c\"} x", "not JSON: at offset 11: trailing data",
            "decode_rejects_trailing_data");
    REJECTS("/* c */{}", "not JSON: at offset 0", "decode_rejects_comments");
    rejects("{}\0{}", 5, "not JSON: at offset 2: trailing data", "decode_rejects_embedded_nul");
    rejects("{\"op\":\"c\xff\"}", 11, "invalid UTF-8", "decode_rejects_invalid_utf8");
    REJECTS("[1]", "the value is an array, not an object", "decode_rejects_array");
    REJECTS("\"x\"", "the value is a string, not an object", "decode_rejects_string");
    REJECTS("null", "the value is null, not an object", "decode_rejects_null_text");

    REJECTS("{" SRC "}", "cannot decode event: op is missing", "decode_rejects_missing_op");
    REJECTS("{\"op\":\"x\"," SRC "}", "op \"x\" is unknown (expected c, u, d, r or t)",
            "decode_rejects_unknown_op");
    REJECTS("{\"op\":\"cu\"," SRC "}", "op \"cu\" is unknown", "decode_rejects_long_op");
    REJECTS("{\"op\":\"\"," SRC "}", "op \"\" is unknown", "decode_rejects_empty_op");
    REJECTS("{\"op\":\"\\n\"," SRC "}", "op \"?\" is unknown", "decode_shows_control_op_printably");
    REJECTS("{\"op\":1," SRC "}", "op is a number, not a string", "decode_rejects_numeric_op");
    REJECTS("{\"op\":\"c\",\"op\":\"d\",\"after\":{}," SRC "}", "field op appears twice",
            "decode_rejects_duplicate_field");

    REJECTS("{\"op\":\"c\",\"after\":{}}", "source is missing, not an object",
            "decode_rejects_missing_source");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":[]}", "source is an array, not an object",
            "decode_rejects_source_not_object");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"table\":\"t\",\"lsn\":1}}",
            "source.schema is missing, not a string", "decode_rejects_missing_schema");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":1,\"table\":\"t\",\"lsn\":1}}",
            "source.schema is a number, not a string", "decode_rejects_numeric_schema");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":null,\"lsn\":1}}",
            "source.table is null, not a string", "decode_rejects_null_table");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"lsn\":1}}",
            "source.table is missing, not a string", "decode_rejects_missing_table");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"schema\":\"x\",\"lsn\":1}}",
            "field source.schema appears twice", "decode_rejects_duplicate_source_field");

    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\"}}",
            "source.lsn is missing, not a non-negative integer", "decode_rejects_missing_lsn");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":null}}",
            "source.lsn is null, not a non-negative integer", "decode_rejects_null_lsn");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":-1}}",
            "source.lsn is -1, not a non-negative integer", "decode_rejects_negative_lsn");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1.5}}",
            "source.lsn is 1.5, not a non-negative integer", "decode_rejects_fractional_lsn");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1e3}}",
            "source.lsn is 1e3, not a non-negative integer", "decode_rejects_exponent_lsn");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":\"16/B374D848\"}}",
            "source.lsn is a string, not a non-negative integer", "decode_rejects_lsn_as_text");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":18446744073709551616}}",
            "source.lsn 18446744073709551616 does not fit in 64 bits", "decode_rejects_lsn_overflow");
    cdc_decoded_event d;
    TAP_OK(decode_str("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":18446744073709551615}}", &d) == 0 &&
           d.lsn == UINT64_MAX, "decode_accepts_largest_lsn");
    cdc_decoded_event_free(&d);

    REJECTS("{\"op\":\"c\"," SRC "}", "after is missing (op c needs the new row)",
            "decode_rejects_insert_without_after");
    REJECTS("{\"op\":\"u\",\"after\":null," SRC "}", "after is null (op u needs the new row)",
            "decode_rejects_update_with_null_after");
    REJECTS("{\"op\":\"r\"," SRC "}", "after is missing (op r needs the new row)",
            "decode_rejects_snapshot_read_without_after");
    REJECTS("{\"op\":\"u\",\"before\":[1],\"after\":{}," SRC "}",
            "before is an array, not an object or null", "decode_rejects_before_array");
    REJECTS("{\"op\":\"c\",\"after\":\"row\"," SRC "}",
            "after is a string, not an object or null", "decode_rejects_after_string");
    REJECTS("{\"op\":\"d\",\"before\":{},\"after\":{}," SRC "}",
            "after is an object, but op d must have a null after", "decode_rejects_delete_with_after");
    REJECTS("{\"op\":\"c\",\"before\":{},\"after\":{}," SRC "}",
            "before is an object, but op c must have a null before", "decode_rejects_insert_with_before");

    REJECTS("{\"op\":\"u\",\"after\":{},\"unchanged_toast\":\"a\"," SRC "}",
            "unchanged_toast is a string, not an array of strings", "decode_rejects_toast_string");
    REJECTS("{\"op\":\"u\",\"after\":{},\"unchanged_toast\":[\"a\",1]," SRC "}",
            "unchanged_toast[1] is a number, not a string", "decode_rejects_toast_number_element");

    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1,\"txid\":\"7\"}}",
            "source.txid is a string, not an integer", "decode_rejects_mistyped_txid");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1,\"commit_lsn\":-2}}",
            "source.commit_lsn is -2, not a non-negative integer", "decode_rejects_negative_commit_lsn");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1,\"snapshot\":\"no\"}}",
            "source.snapshot is a string, not a boolean", "decode_rejects_mistyped_snapshot");
    REJECTS("{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1,\"db\":5}}",
            "source.db is a number, not a string", "decode_rejects_mistyped_db");
    REJECTS("{\"op\":\"c\",\"after\":{}," SRC ",\"ts_ms\":9223372036854775808}",
            "ts_ms 9223372036854775808 does not fit in 64 bits", "decode_rejects_ts_ms_overflow");

    TAP_OK(decode_str("{\"op\":\"c\",\"after\":{},\"future\":[1,{}],\"source\":{\"schema\":\"s\","
                      "\"table\":\"t\",\"lsn\":1,\"txid\":-9223372036854775808,\"extra\":true}}", &d) == 0 &&
           d.txid == INT64_MIN, "decode_ignores_unknown_fields");
    cdc_decoded_event_free(&d);

    /* A record that does not end in NUL: only len bytes are read. */
    char exact[] = "{\"op\":\"c\",\"after\":{}," SRC "}XXXX";
    d.root = NULL;
    TAP_OK(cdc_event_decode(exact, strlen(exact) - 4, &d, err, sizeof err) == 0 && d.lsn == 1,
           "decode_reads_only_len_bytes");
    cdc_decoded_event_free(&d);
    cdc_decoded_event_free(NULL);
}

static void test_encode_rejections(void)
{
    static const cdc_column bad[] = {COL("id", "1"), COL("attrs", "{\"k\":}")};
    static const cdc_column good[] = {COL("id", "1")};
    const cdc_row b = {bad, 2}, g = {good, 1};
    cdc_buf out = CDC_BUF_INIT;
    cdc_buf_puts(&out, "keep");

    cdc_event ev = {'c', NULL, &b, NULL, 0, SOURCE, 1, NULL, 0};
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == -1 &&
           strstr(err, "column \"attrs\" of after is not valid JSON (at offset 5: expected a value)"),
           "encode_rejects_invalid_column_json_naming_the_column");
    TAP_STREQ(out.data, "keep", "encode_failure_leaves_output_as_it_was");

    static const cdc_column empty[] = {{"v", "", 0}};
    const cdc_row e = {empty, 1};
    ev.after = &e;
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == -1 && strstr(err, "not valid JSON"),
           "encode_rejects_empty_column_json");
    static const cdc_column two[] = {COL("v", "1 2")};
    const cdc_row t = {two, 1};
    ev.after = &t;
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == -1 && strstr(err, "trailing data"),
           "encode_rejects_two_values_in_one_column");
    static const cdc_column nul[] = {{"v", NULL, 0}, {"w", "\"x\"", 2}};
    const cdc_row n = {nul, 2};
    ev.after = &n;
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == -1 && strstr(err, "column \"w\""),
           "encode_uses_json_len_not_nul");
    static const cdc_column nul_ok[] = {{"v", NULL, 0}};
    const cdc_row no = {nul_ok, 1};
    ev.after = &no;
    cdc_buf_reset(&out);
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == 0 &&
           strstr(out.data, "\"after\":{\"v\":null}"), "encode_writes_null_json_pointer_as_null");

    cdc_buf_reset(&out);
    ev.after = &g;
    ev.op = 'x';
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == -1 && strstr(err, "op 0x78 is unknown"),
           "encode_rejects_unknown_op");
    ev.op = 0;
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == -1 && strstr(err, "op 0x00 is unknown"),
           "encode_rejects_nul_op");
    ev.op = 'c';
    ev.after = NULL;
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == -1 && strstr(err, "op c needs an after row"),
           "encode_rejects_insert_without_after");
    ev.op = 'd';
    ev.after = &g;
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == -1 && strstr(err, "op d must have no after row"),
           "encode_rejects_delete_with_after");
    ev.op = 'c';
    ev.source.schema = NULL;
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == -1 && strstr(err, "source.schema is NULL"),
           "encode_rejects_missing_schema");
    ev.source.schema = "s";
    ev.source.table = NULL;
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == -1 && strstr(err, "source.table is NULL"),
           "encode_rejects_missing_table");
    ev.source.table = "t";
    static const cdc_column noname[] = {{NULL, "1", 1}};
    const cdc_row nn = {noname, 1};
    ev.after = &nn;
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == -1 && strstr(err, "column 0 of after has no name"),
           "encode_rejects_unnamed_column");
    TAP_OK(out.len == 0, "encode_failures_append_nothing");
    ev.after = &g;
    ev.source.db = NULL;
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == 0 &&
           strstr(out.data, "\"source\":{\"db\":null,\"schema\":\"s\""), "encode_writes_null_db");

    cdc_buf_reset(&out);
    ev.source.txid = INT64_MIN;
    ev.source.seq = 0;
    ev.source.ts_ms = -1;
    ev.ts_ms = INT64_MAX;
    ev.source.lsn = 0;
    ev.source.commit_lsn = UINT64_MAX;
    TAP_OK(cdc_event_encode(&ev, &out, err, sizeof err) == 0 &&
           strstr(out.data, "\"lsn\":0,\"commit_lsn\":18446744073709551615,"
                  "\"txid\":-9223372036854775808,\"seq\":0,\"ts_ms\":-1,") &&
           strstr(out.data, "},\"ts_ms\":9223372036854775807}"),
           "encode_writes_integer_extremes_exactly");
    cdc_decoded_event d;
    TAP_OK(cdc_event_decode(out.data, out.len, &d, err, sizeof err) == 0 &&
           d.txid == INT64_MIN && d.source_ts_ms == -1 && d.ts_ms == INT64_MAX &&
           d.lsn == 0 && d.commit_lsn == UINT64_MAX, "integer_extremes_round_trip");
    cdc_decoded_event_free(&d);
    cdc_buf_free(&out);
}

/* ---- names: unicode, control characters, invalid UTF-8 ----------------------- */

static void test_names(void)
{
    struct {
        const char *name, *want_json, *want_decoded, *test;
    } cases[] = {
        {"na\xc3\xafve", "\"na\xc3\xafve\"", "na\xc3\xafve", "name_utf8_is_kept"},
        {"\xe6\x97\xa5\xe6\x9c\xac\xf0\x9f\x98\x80", "\"\xe6\x97\xa5\xe6\x9c\xac\xf0\x9f\x98\x80\"",
         "\xe6\x97\xa5\xe6\x9c\xac\xf0\x9f\x98\x80", "name_cjk_and_emoji_are_kept"},
        {"a\nb\tc\x01\x1f", "\"a\\nb\\tc\\u0001\\u001F\"", "a\nb\tc\x01\x1f",
         "name_control_characters_are_escaped"},
        {"q\"b\\s/", "\"q\\\"b\\\\s/\"", "q\"b\\s/", "name_quote_and_backslash_are_escaped"},
        {"del\x7f", "\"del\x7f\"", "del\x7f", "name_del_is_valid_json_as_is"},
        {"a\xff" "b", "\"a\xef\xbf\xbd" "b\"", "a\xef\xbf\xbd" "b", "name_invalid_byte_becomes_fffd"},
        {"x\xe6\x97", "\"x\xef\xbf\xbd\"", "x\xef\xbf\xbd", "name_truncated_sequence_becomes_one_fffd"},
        {"\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"",
         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", "name_encoded_surrogate_becomes_fffd_per_byte"},
        {"\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\"", "\xef\xbf\xbd\xef\xbf\xbd",
         "name_overlong_form_becomes_fffd"},
        {"\xf4\x90\x80\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"",
         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", "name_above_10ffff_becomes_fffd"},
        {"", "\"\"", "", "name_empty_is_kept"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cdc_column col = {cases[i].name, "1", 1};
        const cdc_row row = {&col, 1};
        cdc_event ev = {'c', NULL, &row, NULL, 0, SOURCE, 1, NULL, 0};
        ev.source.table = cases[i].name;
        char *got = encode(&ev);
        char want[128];
        snprintf(want, sizeof want, "\"after\":{%s:1}", cases[i].want_json);
        int ok = got && strstr(got, want);
        snprintf(want, sizeof want, "\"table\":%s,", cases[i].want_json);
        ok = ok && strstr(got, want);
        TAP_OK(ok, cases[i].test);
        if (!ok)
            printf("#   got: %s\n#   want: %s\n", got ? got : err, want);
        cdc_decoded_event d;
        char dname[96];
        snprintf(dname, sizeof dname, "%s_and_decodes", cases[i].test);
        TAP_OK(got && decode_str(got, &d) == 0 && strcmp(d.table, cases[i].want_decoded) == 0 &&
               d.after->u.object.len == 1 &&
               strcmp(d.after->u.object.keys[0], cases[i].want_decoded) == 0, dname);
        cdc_decoded_event_free(&d);
        free(got);
    }

    cdc_column col = {"bad\x80name\n", "{", 1};
    const cdc_row row = {&col, 1};
    cdc_event ev = {'c', NULL, &row, NULL, 0, SOURCE, 1, NULL, 0};
    TAP_OK(encode(&ev) == NULL && strstr(err, "column \"bad?name?\" of after"),
           "encode_error_shows_names_printably");
}

/* Whether the key {name: 1} encodes as yajl_gen writes it; says how not. */
static int key_encodes_as_yajl_gen(const char *name, const char *what)
{
    cdc_column col = {name, "1", 1};
    const cdc_row key = {&col, 1};
    cdc_buf got = {0};
    const unsigned char *want;
    size_t wantlen;
    yajl_gen g = yajl_gen_alloc(NULL);
    yajl_gen_map_open(g);
    yajl_gen_string(g, (const unsigned char *)name, strlen(name));
    yajl_gen_number(g, "1", 1);
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &want, &wantlen);
    int same = cdc_key_encode(&key, &got, err, sizeof err) == 0 && got.len == wantlen &&
               memcmp(got.data, want, wantlen) == 0;
    if (!same)
        printf("#   %s: got %.80s (%zu bytes), yajl_gen %.80s (%zu bytes)\n", what,
               got.data ? got.data : err, got.len, (const char *)want, wantlen);
    yajl_gen_free(g);
    cdc_buf_free(&got);
    return same;
}

/* The encoder writes JSON itself; its strings must be the bytes yajl_gen
 * (which it replaced) wrote, for every ASCII character, so that no record
 * changes form across the replacement. */
static void test_encode_escapes_as_yajl_gen(void)
{
    int same = 1;
    for (int c = 1; c < 0x80 && same; c++) {
        char name[] = {'a', (char)c, 'b', (char)c, '\0'};
        char what[32];
        snprintf(what, sizeof what, "byte 0x%02x", c);
        same = key_encodes_as_yajl_gen(name, what);
    }
    TAP_OK(same, "encode_escapes_as_yajl_gen");
}

/* Plain names take a shortcut while they fit the buffer, the escaping path
 * when they do not (or when a byte needs escaping): the same bytes either
 * way, around where a key's first buffer (1,024 bytes) runs out. */
static void test_encode_long_names_as_yajl_gen(void)
{
    const size_t lens[] = {0, 1, 63, 1015, 1018, 1019, 1020, 1021, 1022, 1025, 2100};
    int same = 1;
    for (size_t k = 0; k < 2 * sizeof lens / sizeof lens[0] && same; k++) {
        size_t n = lens[k / 2];
        char *name = malloc(n + 2), what[64];
        memset(name, 'a' + (int)(k % 26), n);
        name[n] = k % 2 ? '"' : '\0'; /* odd: one byte to escape at the end */
        name[n + 1] = '\0';
        snprintf(what, sizeof what, "a name of %zu bytes%s", strlen(name),
                 k % 2 ? " ending in a quote" : "");
        same = key_encodes_as_yajl_gen(name, what);
        free(name);
    }
    TAP_OK(same, "encode_long_names_as_yajl_gen");
}

/* ---- the validator ---------------------------------------------------------- */

static void test_validator(void)
{
    struct {
        const char *json;
        const char *want; /* NULL: accepted; else a part of the message */
    } cases[] = {
        {"0", NULL}, {"-0", NULL}, {"-12.5e+3", NULL}, {"1E-7", NULL}, {" \t\n42\r\n", NULL},
        {"\"\\u0000\"", NULL}, {"\"\\ud83d\\ude00\"", NULL}, {"\"\\/\\b\\f\\n\\r\\t\"", NULL},
        {"[]", NULL}, {"{}", NULL}, {"[[],{},[{}]]", NULL}, {"{\"a\":{\"b\":[1,true,false,null]}}", NULL},
        {"\"\xf0\x9f\x98\x80\"", NULL}, {"\"\x7f\"", NULL},
        {"01", "at offset 1: trailing data"}, {"1.", "at offset 2: invalid number"},
        {"1e", "at offset 2: invalid number"}, {"-", "at offset 1: invalid number"},
        {"+1", "at offset 0: expected a value"}, {".5", "at offset 0"}, {"NaN", "at offset 0"},
        {"tru", "at offset 0: expected a value"}, {"truex", "at offset 4: trailing data"},
        {"\"a", "unterminated string"}, {"\"\\x\"", "at offset 1: invalid escape"},
        {"\"\\u12g4\"", "invalid \\u escape"}, {"\"\\ud800\"", "high surrogate without a low one"},
        {"\"\\udc00\"", "low surrogate without a high one"},
        {"\"\\ud800\\u0041\"", "high surrogate without a low one"},
        {"\"a\tb\"", "at offset 2: unescaped control character"},
        {"\"\xc0\x80\"", "at offset 1: invalid UTF-8"}, {"\"\xed\xa0\x80\"", "invalid UTF-8"},
        {"\"\xf5\x80\x80\x80\"", "invalid UTF-8"}, {"\"\xe6\x97\"", "invalid UTF-8"},
        {"[1,]", "at offset 3: expected a value"}, {"[1 2]", "expected ',' or ']'"},
        {"{\"a\" 1}", "expected ':'"}, {"{\"a\":1,}", "expected a string as object key"},
        {"{1:2}", "expected a string as object key"}, {"[}", "at offset 1: expected a value"},
        {"{\"a\":1]", "expected ',' or '}'"}, {"[", "unexpected end of text"},
        {"// x\n1", "at offset 0"}, {"\xef\xbb\xbf{}", "at offset 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[96];
        err[0] = '\0';
        int rc = cdc_json_validate(cases[i].json, strlen(cases[i].json), err, sizeof err);
        int ok = cases[i].want ? rc == -1 && strstr(err, cases[i].want) : rc == 0;
        snprintf(name, sizeof name, "validate_%s_case_%zu", cases[i].want ? "rejects" : "accepts", i);
        TAP_OK(ok, name);
        if (!ok)
            printf("#   rc %d err \"%s\" want \"%s\"\n", rc, err, cases[i].want ? cases[i].want : "(ok)");
    }

    /* Nesting: exactly the limit is fine, one more is not. */
    size_t n = CDC_JSON_MAX_DEPTH + 1;
    char *deep = malloc(2 * n + 1);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    TAP_OK(cdc_json_validate(deep, 2 * n, err, sizeof err) == -1 && strstr(err, "deeper than 1024"),
           "validate_rejects_nesting_beyond_limit");
    TAP_OK(cdc_json_validate(deep + 1, 2 * n - 2, err, sizeof err) == 0,
           "validate_accepts_nesting_at_limit");
    free(deep);
    TAP_OK(cdc_json_validate(NULL, 0, err, sizeof err) == -1, "validate_rejects_null_input");
    TAP_OK(cdc_json_validate("1", 1, NULL, 0) == 0 && cdc_json_validate("x", 1, NULL, 0) == -1,
           "validate_works_without_error_buffer");
}

/* ---- topic names ------------------------------------------------------------ */

static void topic(const char *prefix, const char *schema, const char *table,
                  const char *want, bool want_changed, const char *name)
{
    cdc_buf b = CDC_BUF_INIT;
    bool changed = !want_changed;
    int rc = cdc_topic_name(prefix, schema, table, &b, &changed);
    TAP_OK(rc == 0 && b.data && strcmp(b.data, want) == 0 && changed == want_changed, name);
    if (!(rc == 0 && b.data && strcmp(b.data, want) == 0 && changed == want_changed))
        printf("#   got \"%s\" changed=%d\n#   want \"%s\" changed=%d\n", b.data ? b.data : "",
               changed, want, want_changed);
    cdc_buf_free(&b);
}

static void test_topic_names(void)
{
    topic("pgcdc", "public", "items", "pgcdc.public.items", false, "topic_plain_names");
    topic("pgcdc", "Sales-2024", "order_items", "pgcdc.Sales-2024.order_items", false,
          "topic_allowed_characters_kept");
    topic("pgcdc", "my.schema", "a.b", "pgcdc.my.schema.a.b", false, "topic_dots_in_names_kept");
    topic("pgcdc", "public", "order items", "pgcdc.public.order_items", true,
          "topic_space_becomes_underscore");
    topic("pgcdc", "public", "t\xc3\xabst", "pgcdc.public.t_st", true,
          "topic_one_underscore_per_unicode_character");
    topic("pgcdc", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x98\x80x", "pgcdc.__._x", true,
          "topic_cjk_and_emoji");
    topic("pgcdc", "public", "a\xff" "b", "pgcdc.public.a_b", true, "topic_invalid_utf8_byte");
    topic("pgcdc", "public", "we\"ird/na:me*", "pgcdc.public.we_ird_na_me_", true,
          "topic_punctuation");
    topic("", "public", "items", "public.items", false, "topic_empty_prefix_has_no_leading_dot");
    topic(NULL, "public", "items", "public.items", false, "topic_null_prefix");
    topic(NULL, "", "", "_", true, "topic_lone_dot_is_refused_by_kafka");
    topic(NULL, ".", "", "__", true, "topic_dot_dot_is_refused_by_kafka");
    topic(NULL, "", ".", "__", true, "topic_dot_dot_other_way");
    topic("my prefix", "s", "t", "my_prefix.s.t", true, "topic_prefix_is_mapped_too");

    char name300[301], other300[301];
    memset(name300, 'a', 300);
    name300[300] = '\0';
    memcpy(other300, name300, 301);
    other300[299] = 'b';
    cdc_buf b1 = CDC_BUF_INIT, b2 = CDC_BUF_INIT;
    bool c1 = false, c2 = false;
    cdc_topic_name("pgcdc", "public", name300, &b1, &c1);
    cdc_topic_name("pgcdc", "public", other300, &b2, &c2);
    TAP_OK(b1.len == 249 && c1, "topic_300_chars_cut_to_249");
    TAP_OK(b1.data && strncmp(b1.data, "pgcdc.public.aaaa", 17) == 0 && b1.data[240] == '-',
           "topic_cut_keeps_beginning_then_hash");
    int hex = 1;
    for (size_t i = 241; b1.data && i < 249; i++)
        hex &= (b1.data[i] >= '0' && b1.data[i] <= '9') || (b1.data[i] >= 'a' && b1.data[i] <= 'f');
    TAP_OK(hex, "topic_cut_ends_in_8_hex_digits");
    TAP_OK(b2.len == 249 && strcmp(b1.data, b2.data) != 0,
           "topic_long_names_sharing_a_beginning_stay_apart");
    cdc_buf_reset(&b2);
    cdc_topic_name("pgcdc", "public", name300, &b2, &c2);
    TAP_STREQ(b2.data, b1.data, "topic_cut_is_stable");

    /* Exactly 249 is allowed as is; 250 is cut. */
    char t236[237];
    memset(t236, 't', 236);
    t236[236] = '\0';
    cdc_buf_reset(&b1);
    cdc_topic_name("pgcdc", "public", t236, &b1, &c1);
    TAP_OK(b1.len == 249 && !c1 && b1.data[248] == 't', "topic_249_chars_kept");
    char t237[238];
    memset(t237, 't', 237);
    t237[237] = '\0';
    cdc_buf_reset(&b1);
    cdc_topic_name("pgcdc", "public", t237, &b1, &c1);
    TAP_OK(b1.len == 249 && c1 && b1.data[240] == '-', "topic_250_chars_cut");

    cdc_buf_reset(&b1);
    cdc_buf_puts(&b1, "keep:");
    TAP_OK(cdc_topic_name("pgcdc", "s", "t", &b1, NULL) == 0 &&
           strcmp(b1.data, "keep:pgcdc.s.t") == 0, "topic_appends_and_changed_is_optional");
    TAP_OK(cdc_topic_name("pgcdc", NULL, "t", &b1, &c1) == -1 &&
           cdc_topic_name("pgcdc", "s", NULL, &b1, &c1) == -1 &&
           strcmp(b1.data, "keep:pgcdc.s.t") == 0, "topic_rejects_null_names");
    cdc_buf_free(&b1);
    cdc_buf_free(&b2);
}

/* ---- the decoder's tree is yajl_tree_parse's tree ---- */

static void test_decoded_tree_is_yajls(void)
{
    static const char *const texts[] = {
        "{}",
        " {\t\"a\" :\r\n[ ] , \"b\":{ },\"c\":[1,[2,[3,{}]]]} ",
        "{\"s\":\"plain\",\"e\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\",\"u\":\"\\u00e9\\u20AC\\ud83d\\ude80\"}",
        "{\"nul\":\"a\\u0000b\",\"k\\u0000ey\":1,\"raw\":\"Zo\xc3\xab \xe6\x9d\xb1\xf0\x9f\x9a\x80\"}",
        "{\"i\":0,\"neg0\":-0,\"n\":-12,\"max\":9223372036854775807,\"min\":-9223372036854775808,"
        "\"over\":9223372036854775808,\"big\":12345678901234567890123,\"under\":-9223372036854775809}",
        "{\"f\":1.5,\"g\":-0.0,\"h\":1e3,\"j\":1E-7,\"k\":2.5e+10,\"l\":1e400,\"m\":-1e-400,"
        "\"p\":0.1,\"q\":123456789012345678.5}",
        "{\"t\":true,\"f\":false,\"n\":null,\"dup\":1,\"dup\":2}",
        "{\"a\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17],\"o\":{\"1\":1,\"2\":2,\"3\":3,"
        "\"4\":4,\"5\":5,\"6\":6,\"7\":7,\"8\":8,\"9\":9}}",
    };
    bool all = true;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        yajl_val mine = NULL, theirs = yajl_tree_parse(texts[i], NULL, 0);
        int rc = cdc_key_decode(texts[i], strlen(texts[i]), &mine, err, sizeof err);
        if (rc != 0 || !json_tree_same(mine, theirs)) {
            printf("# text %zu: decoded tree differs from yajl_tree_parse's (%s)\n", i,
                   rc ? err : "contents");
            all = false;
        }
        yajl_tree_free(mine);
        yajl_tree_free(theirs);
    }
    TAP_OK(all, "decode_builds_the_tree_yajl_tree_parse_builds");

    /* The same trees in an arena, all of them alive together. */
    cdc_arena *arena = cdc_arena_new();
    all = arena != NULL;
    yajl_val kept[sizeof texts / sizeof texts[0]];
    for (size_t i = 0; all && i < sizeof texts / sizeof texts[0]; i++)
        all = cdc_key_decode_in(arena, texts[i], strlen(texts[i]), &kept[i], err, sizeof err) == 0;
    for (size_t i = 0; all && i < sizeof texts / sizeof texts[0]; i++) {
        yajl_val theirs = yajl_tree_parse(texts[i], NULL, 0);
        all = json_tree_same(kept[i], theirs);
        yajl_tree_free(theirs);
    }
    TAP_OK(all, "decode_in_arena_builds_the_same_trees");

    /* Many events fill several chunks; a reset frees them all, and the
     * arena is used again. An event larger than a chunk gets its own. */
    size_t before = 0;
    for (int round = 0; round < 2; round++) {
        all = true;
        for (int i = 0; all && i < 3000; i++) {
            cdc_decoded_event ev;
            all = cdc_event_decode_in(arena, EXAMPLE_VALUE, strlen(EXAMPLE_VALUE), &ev, err,
                                      sizeof err) == 0 && ev.lsn == 24337816 && ev.arena == arena;
            cdc_decoded_event_free(&ev); /* frees only what is not in the arena */
        }
        TAP_OK(all, round ? "arena_reused_after_reset" : "arena_holds_many_events");
        if (round == 0)
            before = cdc_arena_size(arena);
        cdc_arena_reset(arena);
    }
    TAP_OK(before > 256 * 1024 && cdc_arena_size(arena) == before,
           "arena_reset_keeps_its_chunks_for_reuse");
    cdc_buf big = CDC_BUF_INIT;
    cdc_buf_puts(&big, "{\"s\":\"");
    for (int i = 0; i < 400000; i++)
        cdc_buf_putc(&big, 'x');
    cdc_buf_puts(&big, "\"}");
    yajl_val bk = NULL;
    const char *bs = NULL;
    if (cdc_key_decode_in(arena, big.data, big.len, &bk, err, sizeof err) == 0)
        bs = YAJL_GET_STRING(bk->u.object.values[0]);
    TAP_OK(bs && strlen(bs) == 400000, "arena_takes_a_value_larger_than_a_chunk");
    TAP_OK(cdc_key_decode_in(arena, "[1]", 3, &bk, err, sizeof err) == -1 && bk == NULL,
           "arena_key_decode_rejects_non_object");
    cdc_buf_free(&big);
    cdc_arena_free(arena);
    cdc_arena_free(NULL);

    /* Deep nesting at the validator's bound builds and frees. */
    size_t depth = CDC_JSON_MAX_DEPTH;
    char *deep = malloc(depth * 7 + 16);
    size_t n = 0;
    for (size_t i = 0; i < depth; i++)
        n += (size_t)sprintf(deep + n, i ? "[" : "{\"a\":");
    deep[n++] = '1';
    for (size_t i = 1; i < depth; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    yajl_val v = NULL;
    TAP_OK(cdc_key_decode(deep, n, &v, err, sizeof err) == 0, "decode_builds_nesting_at_the_bound");
    yajl_tree_free(v);
    free(deep);
}

/* EVENTS.md "types": made once per relation, carried verbatim in each
 * event, decoded as an object of strings. */
static void test_types(void)
{
    const char *names[] = {"id", "price", "mood", "na\"me"};
    const char *types[] = {"integer", "numeric(10,2)", "enum mood", "character varying(40)"};
    cdc_buf t = CDC_BUF_INIT;
    TAP_OK(cdc_types_encode(names, types, 4, &t, err, sizeof err) == 0, "types_encode_succeeds");
    TAP_STREQ(t.data, "{\"id\":\"integer\",\"price\":\"numeric(10,2)\",\"mood\":\"enum mood\","
                      "\"na\\\"me\":\"character varying(40)\"}",
              "types_encode_is_an_object_of_column_to_type_text");
    const char *nonames[] = {"id", NULL};
    size_t len = t.len;
    TAP_OK(cdc_types_encode(nonames, types, 2, &t, err, sizeof err) == -1 && t.len == len &&
           strstr(err, "column 1 has no name"), "types_encode_rejects_a_null_name");

    static const cdc_column row[] = {COL("id", "1")};
    const cdc_row r = {row, 1};
    cdc_event ev = {'c', NULL, &r, NULL, 0, SOURCE, 1, t.data, t.len};
    char *got = encode(&ev);
    TAP_OK(got && strstr(got, "\"ts_ms\":1,\"types\":{\"id\":\"integer\",") != NULL,
           "encode_writes_types_last");
    cdc_decoded_event d;
    TAP_OK(got && cdc_event_decode(got, strlen(got), &d, err, sizeof err) == 0 && d.types &&
           d.types->u.object.len == 4 && strcmp(d.types->u.object.keys[2], "mood") == 0 &&
           strcmp(d.types->u.object.values[2]->u.string, "enum mood") == 0,
           "decode_reads_types");
    cdc_decoded_event_free(&d);
    free(got);
    ev.types = NULL;
    got = encode(&ev);
    TAP_OK(got && !strstr(got, "types") &&
           cdc_event_decode(got, strlen(got), &d, err, sizeof err) == 0 && !d.types,
           "types_omitted_when_not_set_and_decode_reads_null");
    cdc_decoded_event_free(&d);
    free(got);

    static const char *bad[] = {
        "{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1},"
        "\"types\":[\"integer\"]}",
        "{\"op\":\"c\",\"after\":{},\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":1},"
        "\"types\":{\"id\":23}}",
    };
    TAP_OK(cdc_event_decode(bad[0], strlen(bad[0]), &d, err, sizeof err) == -1 &&
           strstr(err, "types is an array, not an object"), "decode_rejects_types_not_an_object");
    TAP_OK(cdc_event_decode(bad[1], strlen(bad[1]), &d, err, sizeof err) == -1 &&
           strstr(err, "types.id is a number, not a string"),
           "decode_rejects_a_type_that_is_not_a_string");
    cdc_buf_free(&t);
}

int main(void)
{
    test_types();
    test_value_example_decodes();
    test_value_example_encodes();
    test_key_examples();
    test_column_value_examples();
    test_each_op_round_trips();
    test_truncate();
    test_unchanged_toast();
    test_decode_rejections();
    test_encode_rejections();
    test_names();
    test_encode_escapes_as_yajl_gen();
    test_encode_long_names_as_yajl_gen();
    test_validator();
    test_decoded_tree_is_yajls();
    test_topic_names();
    return tap_done();
}
