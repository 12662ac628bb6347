/* test_es_bulk.c: index names, ids, documents and request bodies for the
 * Elasticsearch/OpenSearch sink, byte for byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "es_bulk.h"
#include "event_fixture.h"
#include "fixture_file.h"
#include "row_json.h"
#include "tap.h"

static char err[256];

static const char *index_of(const char *prefix, const char *schema, const char *table, bool *changed)
{
    static cdc_buf b = CDC_BUF_INIT;
    cdc_buf_reset(&b);
    if (!schema) { /* release the buffer */
        cdc_buf_free(&b);
        return NULL;
    }
    es_index_name(prefix, schema, table, &b, changed);
    return b.data;
}

static void index_name_rules(void)
{
    bool changed = true;
    TAP_STREQ(index_of("", "public", "items", &changed), "public.items", "plain name kept");
    TAP_OK(!changed, "plain name: not changed");
    TAP_STREQ(index_of("pgcdc-", "shop", "order_lines", &changed), "pgcdc-shop.order_lines",
              "prefix is put in front as is");

    char upper[300], lower[300];
    strcpy(upper, index_of("", "public", "Items", &changed));
    TAP_OK(changed, "uppercase: changed");
    TAP_OK(strncmp(upper, "public.items-", 13) == 0 && strlen(upper) == 21,
           "uppercase lowered, 8 hex digits of hash appended");
    strcpy(lower, index_of("", "public", "items", NULL));
    TAP_OK(strcmp(upper, lower) != 0, "Items and items get different indices");

    char a[300], b[300];
    strcpy(a, index_of("", "public", "a b", &changed));
    strcpy(b, index_of("", "public", "a_b", NULL));
    TAP_OK(strncmp(a, "public.a_b-", 11) == 0, "space becomes _");
    TAP_OK(strcmp(a, b) != 0, "'a b' and 'a_b' get different indices");

    const char *bad = index_of("", "s", "\\/*?\"<>|,#: x", &changed);
    TAP_OK(strncmp(bad, "s.____________x-", 16) == 0, "every forbidden byte becomes _");
    const char *lead = index_of("_p", "s", "t", &changed);
    TAP_OK(lead[0] == 'x' && strncmp(lead, "x_ps.t-", 7) == 0 && changed, "leading _ gets an x");
    lead = index_of("-", "s", "t", &changed);
    TAP_OK(strncmp(lead, "x-s.t-", 6) == 0, "leading - gets an x");
    lead = index_of("+", "s", "t", &changed);
    TAP_OK(strncmp(lead, "x+s.t-", 6) == 0, "leading + gets an x");
    lead = index_of(".", "s", "t", &changed);
    TAP_OK(strncmp(lead, "x.s.t-", 6) == 0, "leading . gets an x (hidden indices)");

    const char *uni = index_of("", "public", "caf\xc3\xa9", &changed);
    TAP_OK(strncmp(uni, "public.caf__-", 13) == 0 && changed, "non-ASCII bytes become _");

    char long1[600], long2[600], t1[400], t2[400];
    memset(t1, 'a', 300);
    t1[300] = '\0';
    strcpy(t2, t1);
    t2[299] = 'b';
    strcpy(long1, index_of("", "s", t1, &changed));
    TAP_OK(strlen(long1) == ES_INDEX_MAX && changed, "long name cut to 255 bytes");
    TAP_OK(long1[ES_INDEX_MAX - 9] == '-', "cut name ends with the hash suffix");
    strcpy(long2, index_of("", "s", t2, NULL));
    TAP_OK(strcmp(long1, long2) != 0, "two long names sharing their first 246 bytes differ");
    memset(t1, 'a', 253 - 2);
    t1[251] = '\0';
    TAP_OK(strlen(index_of("", "s", t1, &changed)) == 253 && !changed, "253-byte name kept");
    index_of(NULL, NULL, NULL, NULL);
}

static void id_of(const char *key_json, cdc_buf *out)
{
    cdc_buf_reset(out);
    yajl_val key = fixture_json(key_json);
    if (es_doc_id(key, out, err, sizeof err) < 0)
        cdc_buf_puts(out, "ERROR");
    yajl_tree_free(key);
}

static void doc_ids(void)
{
    cdc_buf id = CDC_BUF_INIT;
    id_of("{\"id\":42}", &id);
    TAP_STREQ(id.data, "42", "single integer key: its text");
    id_of("{\"id\":\"abc \\\"q\\\" \\u00e9\"}", &id);
    TAP_STREQ(id.data, "abc \"q\" \xc3\xa9", "single string key: the string itself, unquoted");
    id_of("{\"n\":123456789012345678901234567890.10}", &id);
    TAP_STREQ(id.data, "123456789012345678901234567890.10", "number keeps its exact text");
    id_of("{\"tenant\":\"a\",\"id\":7}", &id);
    TAP_STREQ(id.data, "[\"a\",7]", "composite key: JSON array in key order");
    id_of("{\"a\":\"x\\ny\",\"b\":null,\"c\":true}", &id);
    TAP_STREQ(id.data, "[\"x\\ny\",null,true]", "composite key values are JSON, escaped");
    id_of("{}", &id);
    TAP_STREQ(id.data, "ERROR", "empty key is refused");

    char key[700];
    strcpy(key, "{\"k\":\"");
    size_t p = strlen(key);
    memset(key + p, 'z', 512);
    strcpy(key + p + 512, "\"}");
    id_of(key, &id);
    TAP_OK(id.len == 512 && id.data[0] == 'z', "512-byte id kept as is");
    memset(key + p, 'z', 513);
    strcpy(key + p + 513, "\"}");
    id_of(key, &id);
    /* digests from Python's hashlib.sha256 */
    TAP_STREQ(id.data, "pgcdc-sha256:8fb3cf605b01aa9e186b02c7e64e9b30dc74cfc267c7c92c1e12e71f4eb2b990",
              "513-byte id becomes pgcdc-sha256:<hex of the id>");
    id_of("{\"k\":\"pgcdc-sha256:abc\"}", &id);
    TAP_STREQ(id.data, "pgcdc-sha256:ab938e8c6ec4a1347117f0129c663787ffeef09be0eed2cb8a0b324273eb9694",
              "an id that looks hashed is hashed too (no collision)");
    cdc_buf_free(&id);
}

static void bulk_of(const char *event, const char *current_json, cdc_buf *body, size_t *missing)
{
    cdc_decoded_event ev;
    cdc_buf_reset(body);
    if (fixture_event(event, &ev) < 0) {
        cdc_buf_puts(body, "BAD FIXTURE");
        return;
    }
    yajl_val cur = current_json ? fixture_json(current_json) : NULL;
    if (es_bulk_append(body, "public.items", "42", &ev, cur, missing, NULL, err, sizeof err) < 0)
        cdc_buf_printf(body, "ERROR %s", err);
    yajl_tree_free(cur);
    fixture_event_free(&ev);
}

static void bulk_with_unindexed(const char *event, const char *current_json,
                                const char *const *names, size_t n, cdc_buf *body)
{
    cdc_decoded_event ev;
    cdc_buf_reset(body);
    if (fixture_event(event, &ev) < 0) {
        cdc_buf_puts(body, "BAD FIXTURE");
        return;
    }
    yajl_val cur = current_json ? fixture_json(current_json) : NULL;
    es_unindexed u = {.names = names, .n = n};
    if (es_doc_build(&ev, cur, body, NULL, &u, err, sizeof err) < 0)
        cdc_buf_printf(body, "ERROR %s", err);
    yajl_tree_free(cur);
    fixture_event_free(&ev);
}

/* A column whose value the index refused goes under _pgcdc_unindexed; the
 * others stay indexed (docs/consumer-sinks.md). */
static void unindexed_columns(void)
{
    cdc_buf doc = CDC_BUF_INIT;
    const char *attrs[] = {"attrs"};
    bulk_with_unindexed("{\"op\":\"u\",\"after\":{\"id\":1,\"attrs\":42,\"name\":\"x\"},"
                        "\"source\":{\"lsn\":7}}", NULL, attrs, 1, &doc);
    TAP_STREQ(doc.data, "{\"id\":1,\"name\":\"x\",\"_pgcdc_unindexed\":{\"attrs\":42},\"_pgcdc_lsn\":7}",
              "unindexed: the refused column moves under _pgcdc_unindexed");

    const char *two[] = {"flag", "blob"};
    bulk_with_unindexed("{\"op\":\"u\",\"after\":{\"id\":1,\"flag\":\"maybe\"},"
                        "\"unchanged_toast\":[\"blob\",\"text\"],\"source\":{\"lsn\":8}}",
                        "{\"id\":1,\"text\":\"t\",\"_pgcdc_unindexed\":{\"blob\":[1,2]},\"_pgcdc_lsn\":7}",
                        two, 2, &doc);
    TAP_STREQ(doc.data, "{\"id\":1,\"text\":\"t\",\"_pgcdc_unindexed\":{\"flag\":\"maybe\",\"blob\":[1,2]},"
                        "\"_pgcdc_lsn\":8}",
              "unindexed: an unchanged TOAST value kept aside in the stored document is found there");

    bulk_with_unindexed("{\"op\":\"u\",\"after\":{\"id\":1},\"unchanged_toast\":[\"blob\"],"
                        "\"source\":{\"lsn\":9}}",
                        "{\"id\":1,\"_pgcdc_unindexed\":{\"blob\":\"b\"},\"_pgcdc_lsn\":8}",
                        NULL, 0, &doc);
    TAP_STREQ(doc.data, "{\"id\":1,\"blob\":\"b\",\"_pgcdc_lsn\":9}",
              "unindexed: a kept-aside TOAST value returns to its own field when not refused");

    bulk_with_unindexed("{\"op\":\"c\",\"after\":{\"id\":1,\"_pgcdc_unindexed\":{\"a\":1}},"
                        "\"source\":{\"lsn\":3}}", NULL, NULL, 0, &doc);
    TAP_STREQ(doc.data, "{\"id\":1,\"_pgcdc_lsn\":3}",
              "unindexed: a column named like the pgcdc field is left out like the others");
    cdc_buf_free(&doc);
}

static void bulk_items(void)
{
    cdc_buf body = CDC_BUF_INIT;
    size_t missing = 99;
    bulk_of("{\"op\":\"c\",\"after\":{\"id\":42,\"name\":\"lamp\",\"price\":\"19.90\",\"big\":18446744073709551616,"
            "\"f\":1.5e300,\"tags\":[\"a\",\"b\"],\"attrs\":{\"k\":1},\"n\":null},"
            "\"source\":{\"schema\":\"public\",\"table\":\"items\",\"lsn\":24337816}}",
            NULL, &body, &missing);
    TAP_STREQ(body.data,
              "{\"index\":{\"_index\":\"public.items\",\"_id\":\"42\",\"version\":24337816,\"version_type\":\"external\"}}\n"
              "{\"id\":42,\"name\":\"lamp\",\"price\":\"19.90\",\"big\":18446744073709551616,\"f\":1.5e300,"
              "\"tags\":[\"a\",\"b\"],\"attrs\":{\"k\":1},\"n\":null,\"_pgcdc_lsn\":24337816}\n",
              "insert: index action with external version, columns exact, lsn field");
    TAP_OK(missing == 0, "insert: nothing missing");

    bulk_of("{\"op\":\"d\",\"before\":{\"id\":42},\"after\":null,"
            "\"source\":{\"schema\":\"public\",\"table\":\"items\",\"lsn\":30}}",
            NULL, &body, NULL);
    TAP_STREQ(body.data,
              "{\"index\":{\"_index\":\"public.items\",\"_id\":\"42\",\"version\":30,\"version_type\":\"external\"}}\n"
              "{\"_pgcdc_deleted\":true,\"_pgcdc_lsn\":30}\n",
              "delete: a versioned deleted marker is indexed");

    bulk_of("{\"op\":\"u\",\"after\":{\"id\":42,\"name\":\"desk\"},\"unchanged_toast\":[\"description\",\"blob\"],"
            "\"source\":{\"lsn\":40}}",
            "{\"id\":42,\"name\":\"lamp\",\"description\":\"long \\\"text\\\"\",\"_pgcdc_lsn\":30}",
            &body, &missing);
    TAP_STREQ(body.data,
              "{\"index\":{\"_index\":\"public.items\",\"_id\":\"42\",\"version\":40,\"version_type\":\"external\"}}\n"
              "{\"id\":42,\"name\":\"desk\",\"description\":\"long \\\"text\\\"\",\"_pgcdc_lsn\":40}\n",
              "update with unchanged TOAST: the stored value is kept, others are not");
    TAP_OK(missing == 1, "the TOAST column the current document lacks is counted as missing");

    bulk_of("{\"op\":\"u\",\"after\":{\"id\":42},\"unchanged_toast\":[\"d\"],\"source\":{\"lsn\":41}}",
            NULL, &body, &missing);
    TAP_OK(strstr(body.data, "\n{\"id\":42,\"_pgcdc_lsn\":41}\n") && missing == 1,
           "update with unchanged TOAST and no current document: written without it");

    bulk_of("{\"op\":\"c\",\"after\":{\"_pgcdc_lsn\":1,\"_pgcdc_deleted\":true,\"x\":\"\\u0001\\t\\u001f\\/\"},"
            "\"source\":{\"lsn\":5}}",
            NULL, &body, NULL);
    TAP_OK(strstr(body.data, "\n{\"x\":\"\\u0001\\t\\u001f/\",\"_pgcdc_lsn\":5}\n") != NULL,
           "columns named like pgcdc fields are left out; control characters escaped");

    bulk_of("{\"op\":\"t\",\"after\":null,\"source\":{\"lsn\":5}}", NULL, &body, NULL);
    TAP_OK(strncmp(body.data, "ERROR cannot write op 't'", 25) == 0, "truncate is not a bulk item");

    cdc_buf_reset(&body);
    cdc_buf_puts(&body, "keep");
    cdc_decoded_event ev;
    fixture_event("{\"op\":\"c\",\"after\":null,\"source\":{\"lsn\":5}}", &ev);
    TAP_OK(es_bulk_append(&body, "i", "1", &ev, NULL, NULL, NULL, err, sizeof err) < 0 &&
           strcmp(body.data, "keep") == 0, "insert without a row is refused and the body is left as it was");
    fixture_event_free(&ev);

    cdc_buf_reset(&body);
    es_truncate_body(24338104, &body);
    TAP_STREQ(body.data, "{\"query\":{\"range\":{\"_pgcdc_lsn\":{\"lt\":24338104}}}}", "truncate query");
    cdc_buf_free(&body);
}

static void mget_body_and_response(void)
{
    cdc_buf body = CDC_BUF_INIT;
    const char *f1[] = {"description", "we\"ird"};
    es_mget_doc docs[] = {
        {"public.items", "42", f1, 2},
        {"public.items", "[\"a\",7]", NULL, 0},
    };
    es_mget_body(docs, 2, &body);
    TAP_STREQ(body.data,
              "{\"docs\":[{\"_index\":\"public.items\",\"_id\":\"42\",\"_source\":[\"_pgcdc_lsn\",\"_pgcdc_deleted\",\"_pgcdc_unindexed\","
              "\"description\",\"we\\\"ird\"]},{\"_index\":\"public.items\",\"_id\":\"[\\\"a\\\",7]\","
              "\"_source\":[\"_pgcdc_lsn\",\"_pgcdc_deleted\",\"_pgcdc_unindexed\"]}]}",
              "mget body asks for the TOAST fields of each document");
    cdc_buf_free(&body);

    /* the shape OpenSearch 2.x and Elasticsearch 7.x answer with */
    const char *resp =
        "{\"docs\":[{\"_index\":\"public.items\",\"_id\":\"42\",\"_version\":30,\"_seq_no\":0,\"_primary_term\":1,"
        "\"found\":true,\"_source\":{\"_pgcdc_lsn\":30,\"description\":\"long\"}},"
        "{\"_index\":\"public.items\",\"_id\":\"43\",\"found\":false},"
        "{\"_index\":\"nope\",\"_id\":\"1\",\"error\":{\"root_cause\":[{\"type\":\"index_not_found_exception\","
        "\"reason\":\"no such index [nope]\"}],\"type\":\"index_not_found_exception\",\"reason\":\"no such index [nope]\"}}]}";
    es_mget_result r;
    int rc = es_mget_parse(resp, strlen(resp), &r, err, sizeof err);
    TAP_OK(rc == 0 && r.n == 3, "mget response parsed, three docs");
    if (rc == 0 && r.n == 3) {
        TAP_OK(r.items[0].found && r.items[0].version == 30 && r.items[0].source &&
               YAJL_IS_STRING(row_json_member(r.items[0].source, "description")),
               "found doc: version and source");
        TAP_OK(!r.items[1].found && !r.items[1].source && !r.items[1].error && r.items[1].version == -1,
               "missing doc: not found, no error");
        TAP_STREQ(r.items[2].error, "no such index [nope]", "doc error: its reason");
    }
    es_mget_result_free(&r);

    const char *bad[] = {"", "{\"docs\":{}}", "{\"docs\":[1]}", "[[[", "{\"docs\":[]} x",
                         "{\"error\":{\"type\":\"x\",\"reason\":\"cluster down\"},\"status\":503}"};
    int all = 1;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        all &= es_mget_parse(bad[i], strlen(bad[i]), &r, err, sizeof err) == -1 && r.root == NULL;
    }
    TAP_OK(all, "malformed mget responses are errors");
    TAP_STREQ(err, "the _mget response has no \"docs\" array: cluster down", "whole-request error reason");
    es_mget_result_free(NULL);
}

/* _mget answers captured from both engines (consumer/tests/fixtures/): a
 * row with its TOAST field, a deleted marker, a missing row, a missing
 * index; then the TOAST merge from the captured source. */
static void captured_mget(const char *dir)
{
    static const char *flavors[] = {"opensearch", "elasticsearch"};
    for (int f = 0; f < 2; f++) {
        char name[128], what[160];
        size_t len = 0;
        snprintf(name, sizeof name, "%s_mget.json", flavors[f]);
        char *body = fixture_read(dir, name, &len);
        es_mget_result r;
        int rc = body ? es_mget_parse(body, len, &r, err, sizeof err) : -1;
        snprintf(what, sizeof what, "%s: captured _mget response parses", flavors[f]);
        TAP_OK(rc == 0 && r.n == 4, what);
        if (rc == 0 && r.n == 4) {
            snprintf(what, sizeof what, "%s: found, marker, missing, index error", flavors[f]);
            yajl_val del = row_json_member(r.items[1].source, ES_FIELD_DELETED);
            TAP_OK(r.items[0].found && r.items[0].version == 50 && r.items[1].found && del && YAJL_IS_TRUE(del) &&
                   !r.items[2].found && !r.items[2].error && r.items[3].error &&
                   strcmp(r.items[3].error, "no such index [nope]") == 0, what);
            cdc_decoded_event ev;
            fixture_event("{\"op\":\"u\",\"after\":{\"id\":4,\"name\":\"chair\"},"
                          "\"unchanged_toast\":[\"description\"],\"source\":{\"lsn\":60}}", &ev);
            cdc_buf doc = CDC_BUF_INIT;
            size_t missing = 9;
            es_doc_build(&ev, r.items[0].source, &doc, &missing, NULL, err, sizeof err);
            snprintf(what, sizeof what, "%s: TOAST merged from the captured source", flavors[f]);
            TAP_OK(doc.data && strcmp(doc.data, "{\"id\":4,\"name\":\"chair\",\"description\":\"long text\","
                                                "\"_pgcdc_lsn\":60}") == 0 && missing == 0, what);
            cdc_buf_reset(&doc);
            es_doc_build(&ev, r.items[1].source, &doc, &missing, NULL, err, sizeof err);
            snprintf(what, sizeof what, "%s: a deleted marker has no TOAST value to keep", flavors[f]);
            TAP_OK(missing == 1, what);
            cdc_buf_free(&doc);
            fixture_event_free(&ev);
        }
        if (rc == 0)
            es_mget_result_free(&r);
        free(body);
    }
}

/* The contract end to end: an event as cdc_event_decode gives it. */
static void decoded_event_of_events_md(void)
{
    const char *v = "{\"op\":\"u\",\"before\":{\"id\":42},\"after\":{\"id\":42,\"name\":\"lamp\","
                    "\"price\":\"19.90\",\"tags\":[\"a\",\"b\"],\"attrs\":{\"k\":1}},"
                    "\"unchanged_toast\":[\"description\"],\"source\":{\"db\":\"shop\",\"schema\":\"public\","
                    "\"table\":\"items\",\"lsn\":24337816,\"commit_lsn\":24338104,\"txid\":771,\"seq\":3,"
                    "\"ts_ms\":1732441234567,\"snapshot\":false},\"ts_ms\":1732441234601}";
    cdc_decoded_event ev;
    int rc = cdc_event_decode(v, strlen(v), &ev, err, sizeof err);
    TAP_OK(rc == 0, "EVENTS.md example decodes");
    if (rc != 0)
        return;
    yajl_val cur = fixture_json("{\"description\":\"kept\"}");
    cdc_buf body = CDC_BUF_INIT;
    es_bulk_append(&body, "public.items", "42", &ev, cur, NULL, NULL, err, sizeof err);
    TAP_STREQ(body.data,
              "{\"index\":{\"_index\":\"public.items\",\"_id\":\"42\",\"version\":24337816,\"version_type\":\"external\"}}\n"
              "{\"id\":42,\"name\":\"lamp\",\"price\":\"19.90\",\"tags\":[\"a\",\"b\"],\"attrs\":{\"k\":1},"
              "\"description\":\"kept\",\"_pgcdc_lsn\":24337816}\n",
              "decoded EVENTS.md example becomes the expected bulk item");
    cdc_buf_free(&body);
    yajl_tree_free(cur);
    cdc_decoded_event_free(&ev);
}

/* _bulk bodies are cut by bytes, never below one item per request. */
static void bulk_requests_are_split_by_bytes(void)
{
    size_t sizes[] = {400, 300, 300, 1, 2000, 10, 10};
    TAP_OK(es_take_by_bytes(sizes, 0, 1000) == 0, "no items: nothing taken");
    TAP_OK(es_take_by_bytes(sizes, 7, 1000) == 3, "items fill the budget exactly and stop");
    TAP_OK(es_take_by_bytes(sizes + 4, 3, 1000) == 1, "an item over the budget goes alone");
    TAP_OK(es_take_by_bytes(sizes + 5, 2, 1000) == 2, "the rest fits in one request");
    TAP_OK(es_take_by_bytes(sizes, 7, SIZE_MAX) == 7, "no overflow with a huge budget");
    size_t big[] = {SIZE_MAX - 5, 10};
    TAP_OK(es_take_by_bytes(big, 2, SIZE_MAX) == 1, "sizes that would overflow the sum split");

    /* Every item lands in exactly one request, none over the budget but a
     * lone big one, in order. */
    size_t many[1000], total = 0, requests = 0, biggest = 0;
    for (size_t i = 0; i < 1000; i++)
        many[i] = 1 + (i * 7919) % 3000;
    for (size_t k = 0; k < 1000; requests++) {
        size_t take = es_take_by_bytes(many + k, 1000 - k, 2500), sum = 0;
        for (size_t j = k; j < k + take; j++)
            sum += many[j];
        if (take > 1 && sum > biggest)
            biggest = sum;
        total += take;
        k += take;
    }
    TAP_OK(total == 1000, "every item is in one request");
    TAP_OK(biggest <= 2500, "no request of several items is over the budget");
    TAP_OK(requests > 1000 * 1500 / 2500, "the budget made many requests");
}

static void request_budget_and_mget_sizes(void)
{
    TAP_OK(es_request_budget(8 << 20) == (size_t)8 << 20, "--batch-bytes is the budget");
    TAP_OK(es_request_budget((size_t)1 << 30) == ES_REQUEST_BYTES_MAX,
           "the budget is capped below the engines' request limit");
    TAP_OK(es_mget_docs_per_request(8 << 20, ES_MGET_DOC_GUESS) == 128,
           "first _mget: 128 documents of a guessed 64 KiB in 8 MiB");
    TAP_OK(es_mget_docs_per_request(8 << 20, 110 << 10) == 74, "110 KB documents: 74 a request");
    TAP_OK(es_mget_docs_per_request(1024, 110 << 10) == 1, "never fewer than one");
    TAP_OK(es_mget_docs_per_request(32 << 20, ES_MGET_DOC_MIN) == ES_MGET_DOCS_MAX,
           "never more than ES_MGET_DOCS_MAX");
    TAP_OK(es_mget_docs_per_request(1000, 0) == 1000, "a zero estimate does not divide by zero");
    TAP_OK(es_mget_doc_bytes(1100000, 10) == 110000, "learnt from an answer: bytes per document");
    TAP_OK(es_mget_doc_bytes(100, 10) == ES_MGET_DOC_MIN, "never below the per-document overhead");
    TAP_OK(es_mget_doc_bytes(5000, 0) == 5000, "no documents: no division by zero");
}

/* Chunks: bounded by the records' bytes and by the documents to fetch; a
 * record merging from an earlier one of its chunk fetches nothing, from an
 * earlier chunk it fetches the stored document. */
static void chunks_bound_bytes_and_fetches(void)
{
    /* 0: plain; 1: merges, fetch; 2: merges from 1; 3: merges, fetch;
     * 4: plain, big; 5: merges from 3; 6: merges, fetch */
    es_chunk_item it[] = {
        {.bytes = 100, .prev = -1},
        {.bytes = 100, .merge = true, .prev = -1},
        {.bytes = 100, .merge = true, .prev = 1},
        {.bytes = 100, .merge = true, .prev = -1},
        {.bytes = 5000, .prev = -1},
        {.bytes = 100, .merge = true, .prev = 3},
        {.bytes = 100, .merge = true, .prev = -1},
    };
    size_t nf = 99;
    TAP_OK(es_chunk_end(it, 7, 0, 1000, 100, &nf) == 4 && nf == 2,
           "bytes: the chunk stops before the record that would pass the budget");
    TAP_OK(es_chunk_end(it, 7, 4, 1000, 100, &nf) == 5 && nf == 0,
           "a record over the budget is a chunk of its own");
    TAP_OK(es_chunk_end(it, 7, 5, 1000, 100, &nf) == 7 && nf == 2,
           "merging from an earlier chunk fetches the stored document");
    TAP_OK(es_chunk_fetches(it, 5, 5) && !es_chunk_fetches(it, 5, 3) && !es_chunk_fetches(it, 0, 0),
           "es_chunk_fetches: only merging records whose base is not in the chunk");
    TAP_OK(es_chunk_end(it, 7, 0, 100000, 1, &nf) == 3 && nf == 1,
           "fetches: the chunk stops before a second document to fetch");
    TAP_OK(es_chunk_end(it, 7, 1, 100000, 0, &nf) == 2 && nf == 1,
           "at least one record, even over the fetch limit");
    TAP_OK(es_chunk_end(it, 7, 6, 10, 0, &nf) == 7 && nf == 1, "the last record alone");

    /* The case: a mass update of 5,000 rows whose 110 KB documents
     * are only in the index. Each chunk's answer stays near the budget. */
    static es_chunk_item mass[5000];
    for (size_t i = 0; i < 5000; i++)
        mass[i] = (es_chunk_item){.bytes = 400, .merge = true, .prev = -1};
    size_t budget = 8 << 20, chunks = 0, worst = 0;
    size_t per = es_mget_docs_per_request(budget, 110 << 10);
    for (size_t from = 0, to; from < 5000; from = to, chunks++) {
        to = es_chunk_end(mass, 5000, from, budget, per, &nf);
        if (nf * (110 << 10) > worst)
            worst = nf * (110 << 10);
    }
    TAP_OK(worst <= budget, "mass update: no _mget answer over the budget");
    TAP_OK(chunks == (5000 + per - 1) / per, "mass update: as few chunks as the budget allows");
}

int main(int argc, char **argv)
{
    index_name_rules();
    doc_ids();
    bulk_items();
    unindexed_columns();
    mget_body_and_response();
    decoded_event_of_events_md();
    bulk_requests_are_split_by_bytes();
    request_budget_and_mget_sizes();
    chunks_bound_bytes_and_fetches();
    if (argc > 1)
        captured_mget(argv[1]);
    return tap_done();
}
