/* sink_es.c: the Elasticsearch/OpenSearch sink: applies a batch of events
 * with _bulk (external versions = LSN), _mget for unchanged TOAST columns
 * and _delete_by_query for truncates, over one keep-alive libcurl handle,
 * retrying what fails for a while (dead node, 429, 5xx) until it succeeds.
 *
 * What users see in the indices pgcdc creates (the first time this process
 * writes to an index that does not exist yet, PUT /<index>):
 *   {"mappings":{"dynamic":true,"properties":{
 *       "_pgcdc_lsn":{"type":"long"},"_pgcdc_deleted":{"type":"boolean"}}}}
 * - one document per row, _id as es_doc_id() (es_bulk.h), _version = the
 *   LSN of the row's last change (version_type=external);
 *   _pgcdc_lsn holds the same number, as a long (Elasticsearch 7.10 has no
 *   unsigned_long; LSNs stay below 2^63 in practice);
 * - columns are mapped dynamically by the engine from their JSON values
 *   (EVENTS.md: numerics arrive as strings, so they become text/keyword
 *   unless the user maps them first: create the index, or an index
 *   template, before the consumer writes to it, and pgcdc leaves it alone);
 * - a deleted row is a document {"_pgcdc_deleted":true,"_pgcdc_lsn":N}
 *   (es_bulk.h says why): searches must filter it out, e.g.
 *   {"bool":{"must_not":{"term":{"_pgcdc_deleted":true}}}}, or go through a
 *   filtered alias;
 * - a TRUNCATE removes every document whose _pgcdc_lsn is below its LSN
 *   (rows and deleted markers alike).
 * Index settings (shards, replicas, refresh) are the engine's defaults.
 *
 * Retries: a request that fails as a whole (connection refused or reset,
 * timeout, HTTP 408/429/5xx, a body that cannot be read, 401/403 which are
 * logged as errors since only the operator can fix them) is sent again
 * with capped exponential backoff and jitter, failing over to the next
 * --es URL on connection errors, until it succeeds or a stop is requested.
 * Items of a _bulk that fail alone (429, 5xx) are sent again alone. */
#include "sink.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cdc_buf.h"
#include "cdc_config.h"
#include "cdc_log.h"
#include "cdc_mask.h"
#include "cdc_metrics.h"
#include "cdc_signal.h"
#include "es_bulk.h"
#include "es_response.h"
#include "row_json.h"

#define SINK_NAME "es"
#define CONNECT_TIMEOUT_MS 5000L
#define REQUEST_TIMEOUT_MS 60000L
/* A truncate of a big index can take a while; repeating it after a
 * timeout is harmless but wasteful. */
#define TRUNCATE_TIMEOUT_MS 600000L
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define RESPONSE_MAX ((size_t)512 << 20)
#define EXCERPT_MAX 300

#define INDEX_MAPPING                                                                 \
    "{\"mappings\":{\"dynamic\":true,\"properties\":{"                                \
    "\"" ES_FIELD_LSN "\":{\"type\":\"long\"},\"" ES_FIELD_DELETED "\":{\"type\":\"boolean\"}}}}"

/* What the sink knows of one table's index. */
typedef struct es_table {
    struct es_table *next;
    char *schema, *table;
    char *index;
    bool ensured;           /* created, or found existing, by this process */
    bool warned_nokey;
    /* The last truncate applied to the index and whether anything was
     * written since: the same truncate arrives once per partition. */
    bool truncated;
    uint64_t truncate_lsn;
} es_table;

typedef struct es_sink {
    sink base;
    CURL *curl;
    bool curl_global;
    struct curl_slist *hdr_json, *hdr_ndjson;
    char **urls;            /* without a trailing '/' */
    char **masked;          /* the same, passwords masked, for messages */
    size_t nurls, cur;
    const char *prefix;
    const char *user, *password, *cacert;
    char curl_err[CURL_ERROR_SIZE];
    cdc_buf url;            /* of the request being sent */
    cdc_buf resp;           /* body of the last response */
    es_table *tables;
    es_table *last_table;
    bool failing;           /* the last request failed: log the recovery */
} es_sink;

/* One c/u/r/d record of a segment (the records between two truncates). */
typedef struct es_item {
    consumer_record *rec;
    es_table *t;
    size_t id_off;          /* into the segment's ids buffer */
    long prev;              /* earlier item of the same row in the segment, or -1 */
    long mget;              /* index into the _mget request, or -1 */
    size_t line_off, line_len;  /* action and document lines in the body */
    size_t doc_off;         /* the document line alone, within the body */
    bool done;              /* applied, refused or skipped */
} es_item;

typedef struct es_req {
    const char *method;     /* "POST", "PUT" */
    const char *path;       /* from '/' */
    bool ndjson;
    const char *body;
    size_t len;
    const char *what;       /* "_bulk of 12 items for index x", for messages */
    long timeout_ms;
} es_req;

/* ---- HTTP ------------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t nmemb, void *opaque)
{
    cdc_buf *b = opaque;
    size_t n = size * nmemb;
    if (b->len + n > RESPONSE_MAX || cdc_buf_append(b, data, n) < 0)
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    return n;
}

/* The first EXCERPT_MAX bytes of the response, on one line, for messages. */
static const char *resp_excerpt(es_sink *s, char *out, size_t outlen)
{
    size_t n = s->resp.len < outlen - 1 ? s->resp.len : outlen - 1;
    for (size_t i = 0; i < n; i++) {
        char c = s->resp.data[i];
        out[i] = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
    }
    out[n] = '\0';
    return n ? out : "(empty body)";
}

/* Sends r once to the current URL. Returns 0 when the server answered
 * (*status, body in s->resp), or -1 with err set when it could not be
 * reached; then the next URL becomes current. */
static int es_perform(es_sink *s, const es_req *r, long *status, char *err, size_t errlen)
{
    size_t u = s->cur;
    cdc_buf_reset(&s->url);
    cdc_buf_reset(&s->resp);
    if (cdc_buf_printf(&s->url, "%s%s", s->urls[u], r->path) < 0) {
        snprintf(err, errlen, "%s %s%s: out of memory", r->method, s->masked[u], r->path);
        return -1;
    }
    CURL *c = s->curl;
    curl_easy_setopt(c, CURLOPT_URL, s->url.data);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, strcmp(r->method, "POST") == 0 ? NULL : r->method);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body ? r->body : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body ? r->len : 0));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->ndjson ? s->hdr_ndjson : s->hdr_json);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    s->curl_err[0] = '\0';
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s %s%s (%s) failed: %s", r->method, s->masked[u], r->path, r->what,
                 s->curl_err[0] ? s->curl_err : curl_easy_strerror(rc));
        if (s->nurls > 1)
            s->cur = (u + 1) % s->nurls;
        return -1;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

/* Logs why a request is about to be sent again, counts it, and waits.
 * Returns false when a stop was requested. */
static bool es_retry_wait(es_sink *s, unsigned *attempt, bool as_error, const char *why)
{
    s->base.retries++;
    if (as_error)
        cdc_log_error("%s; retrying (attempt %u)", why, *attempt + 1);
    else
        cdc_log_warn("%s; retrying (attempt %u)", why, *attempt + 1);
    return sink_backoff((*attempt)++, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
}

/* Sends r until the server gives an answer that is not transient:
 * connection failures, 408, 429, 5xx, and 401/403 (logged as errors: only
 * the operator can fix credentials) are retried with backoff; with several
 * URLs each is tried once before waiting. *attempt counts consecutive
 * failures and is shared with callers that retry for their own reasons.
 * Returns 0 with *status, or -1 with err when a stop was requested. */
static int es_send(es_sink *s, const es_req *r, unsigned *attempt, long *status, char *err,
                   size_t errlen)
{
    unsigned unreachable = 0;
    for (;;) {
        char why[1024], excerpt[EXCERPT_MAX + 1];
        if (es_perform(s, r, status, why, sizeof why) < 0) {
            s->failing = true;
            unreachable++;
            if (s->nurls > 1 && unreachable % s->nurls != 0) {
                cdc_log_warn("%s; trying %s", why, s->masked[s->cur]);
                s->base.retries++;
                continue;
            }
            cdc_metrics_dependency("search", false); /* no node answers */
        } else {
            long st = *status;
            bool auth = st == 401 || st == 403;
            if (!(auth || st == 408 || st == 429 || st >= 500)) {
                if (s->failing) {
                    cdc_log_info("%s answers again (%s)", s->masked[s->cur], r->what);
                    s->failing = false;
                    cdc_metrics_dependency("search", true);
                }
                return 0;
            }
            snprintf(why, sizeof why, "%s %s%s (%s): HTTP %ld%s: %s", r->method, s->masked[s->cur],
                     r->path, r->what, st,
                     auth ? " (check --es-user/--es-password or --es-api-key and the user's "
                            "privileges)" : "",
                     resp_excerpt(s, excerpt, sizeof excerpt));
            s->failing = true;
            if (auth || st >= 500) /* cannot work: /readyz says so (408/429: busy) */
                cdc_metrics_dependency("search", false);
            if (auth) {
                if (!es_retry_wait(s, attempt, true, why))
                    goto stopped;
                continue;
            }
        }
        if (!es_retry_wait(s, attempt, false, why))
            goto stopped;
    }
stopped:
    snprintf(err, errlen, "stop requested while sending %s %s to %s", r->method, r->path,
             s->masked[s->cur]);
    return -1;
}

/* ---- tables and indices ---------------------------------------------- */

static void table_free(es_table *t)
{
    if (!t)
        return;
    free(t->schema);
    free(t->table);
    free(t->index);
    free(t);
}

static es_table *table_get(es_sink *s, const char *schema, const char *table, char *err,
                           size_t errlen)
{
    es_table *t = s->last_table;
    if (t && strcmp(t->table, table) == 0 && strcmp(t->schema, schema) == 0)
        return t;
    for (t = s->tables; t; t = t->next)
        if (strcmp(t->table, table) == 0 && strcmp(t->schema, schema) == 0)
            return s->last_table = t;
    cdc_buf name = CDC_BUF_INIT;
    bool changed = false;
    t = calloc(1, sizeof *t);
    if (!t || !(t->schema = strdup(schema)) || !(t->table = strdup(table)) ||
        es_index_name(s->prefix, schema, table, &name, &changed) < 0 || !name.data) {
        cdc_buf_free(&name);
        table_free(t);
        snprintf(err, errlen, "cannot name the index of %s.%s: out of memory", schema, table);
        return NULL;
    }
    t->index = cdc_buf_steal(&name);
    if (changed)
        cdc_log_info("table %s.%s goes to index %s (the name %s%s.%s is not a valid index name)",
                     schema, table, t->index, s->prefix, schema, table);
    t->next = s->tables;
    s->tables = t;
    return s->last_table = t;
}

/* Appends "/<index>" to a URL path, the name percent-encoded: es_index_name
 * leaves characters such as '%', '&', '+' or '[' in it, which a URL would
 * read as an escape, a separator or a space. Returns 0 or -1 (memory). */
static int path_put_index(cdc_buf *path, const char *index)
{
    static const char hex[] = "0123456789ABCDEF";
    if (cdc_buf_putc(path, '/') < 0)
        return -1;
    for (const unsigned char *c = (const unsigned char *)index; *c; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_' || *c == '~';
        if (plain ? cdc_buf_putc(path, (char)*c) < 0
                  : cdc_buf_printf(path, "%%%c%c", hex[*c >> 4], hex[*c & 15]) < 0)
            return -1;
    }
    return 0;
}

/* Creates t's index with pgcdc's mapping unless it exists, once per
 * process. An index that exists (made by an earlier run, by the user, or
 * by a template) is left as it is. Returns 0, or -1 on a stop. */
static int index_ensure(es_sink *s, es_table *t, char *err, size_t errlen)
{
    if (t->ensured)
        return 0;
    cdc_buf path = CDC_BUF_INIT, what = CDC_BUF_INIT;
    int rc = -1;
    if (path_put_index(&path, t->index) < 0 ||
        cdc_buf_printf(&what, "create index %s for %s.%s", t->index, t->schema, t->table) < 0) {
        snprintf(err, errlen, "cannot create index %s: out of memory", t->index);
        goto done;
    }
    es_req r = {.method = "PUT", .path = path.data, .body = INDEX_MAPPING,
                .len = strlen(INDEX_MAPPING), .what = what.data, .timeout_ms = REQUEST_TIMEOUT_MS};
    unsigned attempt = 0;
    long status = 0;
    if (es_send(s, &r, &attempt, &status, err, errlen) < 0)
        goto done;
    char excerpt[EXCERPT_MAX + 1];
    if (status >= 200 && status < 300) {
        cdc_log_info("created index %s for %s.%s", t->index, t->schema, t->table);
    } else if (s->resp.data && strstr(s->resp.data, "resource_already_exists_exception")) {
        cdc_log_debug("index %s exists", t->index);
    } else {
        /* Not fatal: the _bulk may still create it (auto_create_index) or
         * say per item why it cannot. */
        cdc_log_warn("PUT %s/%s (create index for %s.%s): HTTP %ld: %s; writing anyway",
                     s->masked[s->cur], t->index, t->schema, t->table, status,
                     resp_excerpt(s, excerpt, sizeof excerpt));
    }
    t->ensured = true;
    rc = 0;
done:
    cdc_buf_free(&path);
    cdc_buf_free(&what);
    return rc;
}

/* ---- truncate -------------------------------------------------------- */

/* Removes the table's documents older than the truncate: a refresh first,
 * because _delete_by_query only sees what a refresh has made searchable,
 * and documents of this table written just before must go too. A 404
 * (no such index) means there is nothing to remove. */
static int apply_truncate(es_sink *s, consumer_record *rec, char *err, size_t errlen)
{
    const cdc_decoded_event *ev = &rec->ev;
    es_table *t = table_get(s, ev->schema, ev->table, err, errlen);
    if (!t)
        return -1;
    if (t->truncated && t->truncate_lsn >= ev->lsn) {
        /* The same truncate from another partition, nothing written since. */
        s->base.applied++;
        return 0;
    }
    cdc_buf path = CDC_BUF_INIT, body = CDC_BUF_INIT, what = CDC_BUF_INIT;
    int rc = -1;
    unsigned attempt = 0;
    char excerpt[EXCERPT_MAX + 1], why[1024];
    if (cdc_buf_printf(&what, "truncate of %s.%s at lsn %" PRIu64 " in index %s", ev->schema,
                       ev->table, ev->lsn, t->index) < 0 ||
        es_truncate_body(ev->lsn, &body) < 0) {
        snprintf(err, errlen, "cannot apply the truncate of %s.%s: out of memory", ev->schema,
                 ev->table);
        goto done;
    }
    for (;;) {
        long status = 0;
        cdc_buf_reset(&path);
        if (path_put_index(&path, t->index) < 0 || cdc_buf_puts(&path, "/_refresh") < 0)
            goto nomem;
        es_req refresh = {.method = "POST", .path = path.data, .what = what.data,
                          .timeout_ms = REQUEST_TIMEOUT_MS};
        if (es_send(s, &refresh, &attempt, &status, err, errlen) < 0)
            goto done;
        cdc_buf_reset(&path);
        if (path_put_index(&path, t->index) < 0 ||
            cdc_buf_puts(&path, "/_delete_by_query?conflicts=proceed&refresh=true") < 0)
            goto nomem;
        es_req dbq = {.method = "POST", .path = path.data, .body = body.data, .len = body.len,
                      .what = what.data, .timeout_ms = TRUNCATE_TIMEOUT_MS};
        if (es_send(s, &dbq, &attempt, &status, err, errlen) < 0)
            goto done;
        if (status == 404 && s->resp.data && strstr(s->resp.data, "index_not_found_exception")) {
            cdc_log_info("truncate of %s.%s at lsn %" PRIu64 ": index %s does not exist",
                         ev->schema, ev->table, ev->lsn, t->index);
            break;
        }
        if (status >= 200 && status < 300) {
            yajl_val root = NULL;
            char perr[256];
            if (row_json_parse("the _delete_by_query response", s->resp.data, s->resp.len, 64,
                               &root, perr, sizeof perr) == 0) {
                yajl_val failures = row_json_member(root, "failures");
                yajl_val deleted = row_json_member(root, "deleted");
                bool failed = failures && YAJL_IS_ARRAY(failures) && failures->u.array.len > 0;
                long long n = deleted && YAJL_IS_INTEGER(deleted) ? YAJL_GET_INTEGER(deleted) : -1;
                yajl_tree_free(root);
                if (!failed) {
                    cdc_log_info("truncate of %s.%s at lsn %" PRIu64 ": %lld document(s) removed "
                                 "from index %s", ev->schema, ev->table, ev->lsn, n, t->index);
                    break;
                }
                snprintf(why, sizeof why, "POST %s%s (%s): some documents were not removed: %s",
                         s->masked[s->cur], path.data, what.data,
                         resp_excerpt(s, excerpt, sizeof excerpt));
            } else {
                snprintf(why, sizeof why, "POST %s%s (%s): HTTP %ld: %s", s->masked[s->cur],
                         path.data, what.data, status, perr);
            }
            if (!es_retry_wait(s, &attempt, false, why)) {
                snprintf(err, errlen, "stop requested during the %s", what.data);
                goto done;
            }
            continue;
        }
        /* Any other answer is about this request itself (a bad query, a
         * field mapped otherwise by the user): retrying cannot help. */
        snprintf(why, sizeof why, "%s refused: HTTP %ld: %s", what.data, status,
                 resp_excerpt(s, excerpt, sizeof excerpt));
        if (sink_reject_record(rec, SINK_NAME, why) < 0)
            goto nomem;
        s->base.rejected++;
        rc = 0;
        goto done;
    }
    t->truncated = true;
    t->truncate_lsn = ev->lsn;
    s->base.applied++;
    rc = 0;
    goto done;
nomem:
    snprintf(err, errlen, "cannot apply the truncate of %s.%s: out of memory", ev->schema,
             ev->table);
done:
    cdc_buf_free(&path);
    cdc_buf_free(&body);
    cdc_buf_free(&what);
    return rc;
}

/* ---- c/u/r/d segments ------------------------------------------------ */

typedef struct segment {
    es_item *items;
    size_t n;
    cdc_buf ids;
    cdc_buf body;
    es_mget_result mget;
    yajl_val *prev_docs;    /* parsed documents of earlier items, by item */
} segment;

static void segment_free(segment *g)
{
    if (g->prev_docs)
        for (size_t i = 0; i < g->n; i++)
            if (g->prev_docs[i])
                yajl_tree_free(g->prev_docs[i]);
    free(g->prev_docs);
    free(g->items);
    cdc_buf_free(&g->ids);
    cdc_buf_free(&g->body);
    es_mget_result_free(&g->mget);
}

static const char *item_id(const segment *g, const es_item *it)
{
    return g->ids.data + it->id_off;
}

static int reject(es_sink *s, es_item *it, const char *reason, char *err, size_t errlen)
{
    if (sink_reject_record(it->rec, SINK_NAME, reason) < 0) {
        snprintf(err, errlen, "cannot record a rejected document: out of memory");
        return -1;
    }
    s->base.rejected++;
    it->done = true;
    return 0;
}

/* Fetches the stored documents of the rows whose unchanged TOAST columns
 * cannot be taken from an earlier record of the same batch. */
static int fetch_toast(es_sink *s, segment *g, char *err, size_t errlen)
{
    size_t nm = 0;
    for (size_t i = 0; i < g->n; i++)
        if (g->items[i].mget >= 0)
            nm++;
    if (nm == 0)
        return 0;
    es_mget_doc *docs = calloc(nm, sizeof *docs);
    cdc_buf body = CDC_BUF_INIT, what = CDC_BUF_INIT;
    int rc = -1;
    if (!docs)
        goto nomem;
    for (size_t i = 0; i < g->n; i++) {
        es_item *it = &g->items[i];
        if (it->mget < 0)
            continue;
        es_mget_doc *d = &docs[it->mget];
        d->index = it->t->index;
        d->id = item_id(g, it);
        d->fields = (const char *const *)it->rec->ev.unchanged_toast;
        d->nfields = it->rec->ev.n_unchanged_toast;
    }
    if (es_mget_body(docs, nm, &body) < 0 ||
        cdc_buf_printf(&what, "_mget of %zu document(s) for unchanged TOAST columns, first in "
                       "index %s", nm, docs[0].index) < 0)
        goto nomem;
    es_req r = {.method = "POST", .path = "/_mget", .body = body.data, .len = body.len,
                .what = what.data, .timeout_ms = REQUEST_TIMEOUT_MS};
    unsigned attempt = 0;
    for (;;) {
        long status = 0;
        char why[1024], perr[512], excerpt[EXCERPT_MAX + 1];
        if (es_send(s, &r, &attempt, &status, err, errlen) < 0)
            goto done;
        if (status == 200 && es_mget_parse(s->resp.data, s->resp.len, &g->mget, perr,
                                           sizeof perr) == 0) {
            if (g->mget.n == nm) {
                const char *doc_err = NULL;
                for (size_t k = 0; k < nm && !doc_err; k++)
                    if (g->mget.items[k].error &&
                        strncmp(g->mget.items[k].error, "no such index", 13) != 0)
                        doc_err = g->mget.items[k].error;
                if (!doc_err)
                    break;
                snprintf(why, sizeof why, "POST %s/_mget (%s): a document could not be read: %s",
                         s->masked[s->cur], what.data, doc_err);
            } else {
                snprintf(why, sizeof why, "POST %s/_mget (%s): %zu documents in the answer",
                         s->masked[s->cur], what.data, g->mget.n);
            }
            es_mget_result_free(&g->mget);
        } else if (status == 200) {
            snprintf(why, sizeof why, "POST %s/_mget (%s): %s", s->masked[s->cur], what.data, perr);
        } else {
            snprintf(why, sizeof why, "POST %s/_mget (%s): HTTP %ld: %s", s->masked[s->cur],
                     what.data, status, resp_excerpt(s, excerpt, sizeof excerpt));
        }
        if (!es_retry_wait(s, &attempt, status != 200 && status != 0, why)) {
            snprintf(err, errlen, "stop requested during the %s", what.data);
            goto done;
        }
    }
    rc = 0;
    goto done;
nomem:
    snprintf(err, errlen, "cannot fetch documents for unchanged TOAST columns: out of memory");
done:
    free(docs);
    cdc_buf_free(&body);
    cdc_buf_free(&what);
    return rc;
}

/* The document a TOAST merge of item i starts from: the one written by the
 * same row earlier in the batch, else the stored one. */
static int toast_current(segment *g, size_t i, yajl_val *current, char *err, size_t errlen)
{
    es_item *it = &g->items[i];
    *current = NULL;
    if (it->prev >= 0) {
        size_t p = (size_t)it->prev;
        es_item *pi = &g->items[p];
        if (pi->line_len == 0)
            return 0; /* refused while building: nothing written to merge from */
        if (!g->prev_docs[p]) {
            const char *doc = g->body.data + pi->doc_off;
            size_t len = pi->line_off + pi->line_len - pi->doc_off;
            if (row_json_parse("a document of this batch", doc, len, CDC_JSON_MAX_DEPTH + 8,
                               &g->prev_docs[p], err, errlen) < 0)
                return -1;
        }
        *current = g->prev_docs[p];
    } else if (it->mget >= 0) {
        es_mget_item *m = &g->mget.items[it->mget];
        *current = m->found ? m->source : NULL;
    }
    return 0;
}

/* Builds the bulk lines of every item still to do, in order. */
static int build_body(es_sink *s, segment *g, char *err, size_t errlen)
{
    for (size_t i = 0; i < g->n; i++) {
        es_item *it = &g->items[i];
        if (it->done)
            continue;
        const cdc_decoded_event *ev = &it->rec->ev;
        yajl_val current = NULL;
        if (ev->n_unchanged_toast > 0 && ev->op != 'd' &&
            toast_current(g, i, &current, err, errlen) < 0)
            return -1;
        size_t mark = g->body.len, missing = 0;
        char berr[512];
        if (es_bulk_append(&g->body, it->t->index, item_id(g, it), ev, current, &missing, berr,
                           sizeof berr) < 0) {
            /* Only an event the decoder should not have let through, or no
             * memory; the first is this record's fault. */
            if (strstr(berr, "out of memory")) {
                snprintf(err, errlen, "%s", berr);
                return -1;
            }
            if (reject(s, it, berr, err, errlen) < 0)
                return -1;
            continue;
        }
        it->line_off = mark;
        it->line_len = g->body.len - mark;
        it->doc_off = (size_t)((char *)memchr(g->body.data + mark, '\n', it->line_len) -
                               g->body.data) + 1;
        if (missing > 0)
            cdc_log_warn("%s.%s id %s at lsn %" PRIu64 ": %zu unchanged TOAST column(s) not found "
                         "in index %s (row never written there, or deleted): left out",
                         ev->schema, ev->table, item_id(g, it), ev->lsn, missing, it->t->index);
    }
    return 0;
}

/* Describes the items of a request for messages: how many, which index. */
static void describe_items(const segment *g, const size_t *todo, size_t n, cdc_buf *out)
{
    cdc_buf_reset(out);
    const char *index = g->items[todo[0]].t->index;
    bool several = false;
    for (size_t k = 1; k < n && !several; k++)
        several = strcmp(g->items[todo[k]].t->index, index) != 0;
    cdc_buf_printf(out, "_bulk of %zu item(s) for index %s%s", n, index, several ? " and others" : "");
}

static int item_reject_from_response(es_sink *s, segment *g, es_item *it, const es_bulk_item *r,
                                     char *err, size_t errlen)
{
    char reason[1024];
    snprintf(reason, sizeof reason, "HTTP %d %s: %s%s%s%s [index %s, id %s, lsn %" PRIu64 "]",
             r->status, r->error_type ? r->error_type : "error",
             r->reason ? r->reason : "no reason given", r->cause ? " (caused by: " : "",
             r->cause ? r->cause : "", r->cause ? ")" : "", it->t->index, item_id(g, it),
             it->rec->ev.lsn);
    return reject(s, it, reason, err, errlen);
}

/* Sends the items todo[0..n) (indices into g->items) until each is
 * applied or refused. Whole-request failures are retried by es_send or
 * here (a body that cannot be read); items that fail alone with 429/5xx
 * are sent again alone. A request refused as a whole for another reason
 * (400, 413: something in it is wrong) is split into single items, so the
 * one at fault is refused and the others go through. */
static int send_items(es_sink *s, segment *g, size_t *todo, size_t n, char *err, size_t errlen)
{
    cdc_buf body = CDC_BUF_INIT, what = CDC_BUF_INIT;
    int rc = -1;
    unsigned attempt = 0, item_attempt = 0;
    while (n > 0) {
        cdc_buf_reset(&body);
        for (size_t k = 0; k < n; k++) {
            es_item *it = &g->items[todo[k]];
            if (cdc_buf_append(&body, g->body.data + it->line_off, it->line_len) < 0)
                goto nomem;
        }
        describe_items(g, todo, n, &what);
        if (!what.data)
            goto nomem;
        es_req r = {.method = "POST", .path = "/_bulk", .ndjson = true, .body = body.data,
                    .len = body.len, .what = what.data, .timeout_ms = REQUEST_TIMEOUT_MS};
        long status = 0;
        char why[1536], perr[512], excerpt[EXCERPT_MAX + 1];
        if (es_send(s, &r, &attempt, &status, err, errlen) < 0)
            goto done;
        if (status == 404) {
            /* The whole _bulk endpoint missing: a wrong URL or proxy path,
             * which the operator must fix; not the documents' fault. */
            snprintf(why, sizeof why, "POST %s/_bulk (%s): HTTP 404 (is the --es URL right?): %s",
                     s->masked[s->cur], what.data, resp_excerpt(s, excerpt, sizeof excerpt));
            if (!es_retry_wait(s, &attempt, true, why))
                goto stopped;
            continue;
        }
        if (status >= 400) {
            char reason[1024];
            snprintf(reason, sizeof reason, "the %s was refused as a whole: HTTP %ld: %s",
                     what.data, status, resp_excerpt(s, excerpt, sizeof excerpt));
            if (n == 1) {
                if (reject(s, &g->items[todo[0]], reason, err, errlen) < 0)
                    goto done;
                break;
            }
            cdc_log_warn("%s; sending its %zu items one by one", reason, n);
            for (size_t k = 0; k < n; k++)
                if (send_items(s, g, &todo[k], 1, err, errlen) < 0)
                    goto done;
            break;
        }
        es_bulk_result res;
        if (es_bulk_parse(s->resp.data, s->resp.len, &res, perr, sizeof perr) < 0 ||
            res.n != n) {
            if (res.root == NULL)
                snprintf(why, sizeof why, "POST %s/_bulk (%s): HTTP %ld: %s", s->masked[s->cur],
                         what.data, status, perr);
            else
                snprintf(why, sizeof why, "POST %s/_bulk (%s): %zu items in the answer",
                         s->masked[s->cur], what.data, res.n);
            es_bulk_result_free(&res);
            if (!es_retry_wait(s, &attempt, false, why))
                goto stopped;
            continue;
        }
        attempt = 0;
        size_t again = 0;
        const es_bulk_item *first_retry = NULL;
        for (size_t k = 0; k < n; k++) {
            es_item *it = &g->items[todo[k]];
            const es_bulk_item *ri = &res.items[k];
            switch (ri->cls) {
            case ES_ITEM_OK:
            case ES_ITEM_CONFLICT:
                it->done = true;
                s->base.applied++;
                break;
            case ES_ITEM_REJECTED:
                if (item_reject_from_response(s, g, it, ri, err, errlen) < 0) {
                    es_bulk_result_free(&res);
                    goto done;
                }
                break;
            case ES_ITEM_RETRY:
                if (!first_retry)
                    first_retry = ri;
                todo[again++] = todo[k]; /* again <= k: order kept */
                break;
            }
        }
        if (again > 0) {
            snprintf(why, sizeof why, "%zu of %zu item(s) of the %s must be sent again, first: "
                     "HTTP %d %s: %s [index %s, id %s]", again, n, what.data, first_retry->status,
                     first_retry->error_type ? first_retry->error_type : "",
                     first_retry->reason ? first_retry->reason : "",
                     g->items[todo[0]].t->index, item_id(g, &g->items[todo[0]]));
            es_bulk_result_free(&res);
            if (!es_retry_wait(s, &item_attempt, false, why))
                goto stopped;
        } else {
            es_bulk_result_free(&res);
        }
        n = again;
    }
    rc = 0;
    goto done;
stopped:
    snprintf(err, errlen, "stop requested while %zu item(s) of a _bulk were not applied", n);
    goto done;
nomem:
    snprintf(err, errlen, "cannot build a _bulk request: out of memory");
done:
    cdc_buf_free(&body);
    cdc_buf_free(&what);
    return rc;
}

/* Applies recs[0..n), which holds no truncate. */
static int apply_segment(es_sink *s, consumer_record *const *recs, size_t n, char *err,
                         size_t errlen)
{
    segment g = {.ids = CDC_BUF_INIT, .body = CDC_BUF_INIT};
    size_t *todo = NULL;
    int rc = -1;
    g.items = calloc(n, sizeof *g.items);
    g.prev_docs = calloc(n, sizeof *g.prev_docs);
    todo = calloc(n, sizeof *todo);
    if (!g.items || !g.prev_docs || !todo)
        goto nomem;
    long nmget = 0;
    for (size_t i = 0; i < n; i++) {
        es_item *it = &g.items[g.n];
        consumer_record *rec = recs[i];
        const cdc_decoded_event *ev = &rec->ev;
        it->rec = rec;
        it->prev = it->mget = -1;
        if (!(it->t = table_get(s, ev->schema, ev->table, err, errlen)))
            goto done;
        g.n++;
        if (!rec->key) {
            /* A table without replica identity: no row to address. */
            if (!it->t->warned_nokey) {
                cdc_log_warn("%s.%s: events without a key (no replica identity) cannot be "
                             "written to index %s; skipping them (counted)",
                             ev->schema, ev->table, it->t->index);
                it->t->warned_nokey = true;
            }
            cdc_log_debug("skipped %s.%s op '%c' at lsn %" PRIu64 ": no key", ev->schema,
                          ev->table, ev->op, ev->lsn);
            s->base.skipped++;
            it->done = true;
            continue;
        }
        it->id_off = g.ids.len;
        char ierr[512];
        if (es_doc_id(rec->key, &g.ids, ierr, sizeof ierr) < 0 || cdc_buf_putc(&g.ids, '\0') < 0) {
            g.ids.len = it->id_off;
            if (reject(s, it, ierr, err, errlen) < 0)
                goto done;
            continue;
        }
        it->t->truncated = false;
        if (ev->n_unchanged_toast == 0 || ev->op == 'd')
            continue;
        /* The merge starts from the row's latest earlier write in the batch
         * (the highest LSN below this one, not simply the nearest item), or
         * else from the stored document. Deletes are never a start: every
         * change of a row comes from its own partition in LSN order, except
         * the delete a key-changing update adds at the old key (keychange.h),
         * which comes from the new key's partition, in any batch, and may be
         * older than a re-insert of that key already stored or earlier in
         * the batch; and the row's own deletes are always followed by the
         * insert that made this update possible. */
        for (size_t p = g.n - 1; p-- > 0;) {
            es_item *pi = &g.items[p];
            if (!pi->done && pi->t == it->t && pi->rec->ev.op != 'd' &&
                pi->rec->ev.lsn < ev->lsn &&
                (it->prev < 0 || pi->rec->ev.lsn > g.items[it->prev].rec->ev.lsn) &&
                strcmp(item_id(&g, pi), item_id(&g, it)) == 0)
                it->prev = (long)p;
        }
        if (it->prev < 0)
            it->mget = nmget++;
    }
    for (size_t i = 0; i < g.n; i++)
        if (!g.items[i].done && index_ensure(s, g.items[i].t, err, errlen) < 0)
            goto done;
    if (fetch_toast(s, &g, err, errlen) < 0)
        goto done;
    if (build_body(s, &g, err, errlen) < 0)
        goto done;
    size_t nt = 0;
    for (size_t i = 0; i < g.n; i++)
        if (!g.items[i].done)
            todo[nt++] = i;
    if (nt > 0 && send_items(s, &g, todo, nt, err, errlen) < 0)
        goto done;
    rc = 0;
    goto done;
nomem:
    snprintf(err, errlen, "cannot apply a batch of %zu records: out of memory", n);
done:
    segment_free(&g);
    free(todo);
    return rc;
}

static int es_apply(sink *base, consumer_record *const *recs, size_t n, char *err, size_t errlen)
{
    es_sink *s = (es_sink *)base;
    size_t i = 0;
    while (i < n) {
        if (recs[i]->ev.op == 't') {
            if (apply_truncate(s, recs[i], err, errlen) < 0)
                return -1;
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && recs[j]->ev.op != 't')
            j++;
        if (apply_segment(s, recs + i, j - i, err, errlen) < 0)
            return -1;
        i = j;
    }
    return 0;
}

/* ---- set-up ---------------------------------------------------------- */

static void es_destroy(sink *base)
{
    es_sink *s = (es_sink *)base;
    if (!s)
        return;
    if (s->curl)
        curl_easy_cleanup(s->curl);
    curl_slist_free_all(s->hdr_json);
    curl_slist_free_all(s->hdr_ndjson);
    for (size_t i = 0; i < s->nurls; i++) {
        free(s->urls ? s->urls[i] : NULL);
        free(s->masked ? s->masked[i] : NULL);
    }
    free(s->urls);
    free(s->masked);
    cdc_buf_free(&s->url);
    cdc_buf_free(&s->resp);
    while (s->tables) {
        es_table *next = s->tables->next;
        table_free(s->tables);
        s->tables = next;
    }
    if (s->curl_global)
        curl_global_cleanup();
    free(s);
}

static struct curl_slist *headers_new(const char *content_type, const char *auth)
{
    struct curl_slist *h = NULL, *t;
    if (!(t = curl_slist_append(h, content_type)))
        goto fail;
    h = t;
    /* No "Expect: 100-continue" round trip before each large _bulk. */
    if (!(t = curl_slist_append(h, "Expect:")))
        goto fail;
    h = t;
    if (auth) {
        if (!(t = curl_slist_append(h, auth)))
            goto fail;
        h = t;
    }
    return h;
fail:
    curl_slist_free_all(h);
    return NULL;
}

sink *sink_es_new(const cdc_config *cfg, char *err, size_t errlen)
{
    es_sink *s = calloc(1, sizeof *s);
    cdc_buf auth = CDC_BUF_INIT;
    if (!s) {
        snprintf(err, errlen, "cannot set up the Elasticsearch sink: out of memory");
        return NULL;
    }
    s->base.name = SINK_NAME;
    s->base.apply = es_apply;
    s->base.destroy = es_destroy;
    s->prefix = cdc_config_str(cfg, "es-index-prefix");
    if (!s->prefix)
        s->prefix = "";
    s->user = cdc_config_str(cfg, "es-user");
    s->password = cdc_config_str(cfg, "es-password");
    s->cacert = cdc_config_str(cfg, "es-cacert");
    const char *api_key = cdc_config_str(cfg, "es-api-key");
    if (s->password && !s->user) {
        snprintf(err, errlen, "--es-password needs --es-user");
        goto fail;
    }
    if (api_key && s->user) {
        snprintf(err, errlen, "give either --es-user/--es-password or --es-api-key, not both");
        goto fail;
    }

    const char *const *urls;
    size_t n = cdc_config_list(cfg, "es", &urls);
    if (n == 0) {
        snprintf(err, errlen, "--es: no URL given");
        goto fail;
    }
    s->urls = calloc(n, sizeof *s->urls);
    s->masked = calloc(n, sizeof *s->masked);
    if (!s->urls || !s->masked)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(urls[i]);
        while (len > 0 && urls[i][len - 1] == '/')
            len--;
        s->nurls++;
        if (!(s->urls[i] = strndup(urls[i], len)))
            goto nomem;
        cdc_buf m = CDC_BUF_INIT;
        if (cdc_mask_secrets(s->urls[i], &m) < 0 || !m.data) {
            cdc_buf_free(&m);
            goto nomem;
        }
        s->masked[i] = cdc_buf_steal(&m);
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "cannot initialise libcurl");
        goto fail;
    }
    s->curl_global = true;
    if (api_key && cdc_buf_printf(&auth, "Authorization: ApiKey %s", api_key) < 0)
        goto nomem;
    if (!(s->hdr_json = headers_new("Content-Type: application/json", auth.data)) ||
        !(s->hdr_ndjson = headers_new("Content-Type: application/x-ndjson", auth.data)))
        goto nomem;
    if (!(s->curl = curl_easy_init())) {
        snprintf(err, errlen, "cannot create a libcurl handle");
        goto fail;
    }
    CURL *c = s->curl;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s->resp);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s->curl_err);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    if (s->user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, s->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, s->password ? s->password : "");
    }
    if (s->cacert && curl_easy_setopt(c, CURLOPT_CAINFO, s->cacert) != CURLE_OK) {
        snprintf(err, errlen, "--es-cacert %s: libcurl cannot use it", s->cacert);
        goto fail;
    }
    cdc_log_info("Elasticsearch/OpenSearch sink: %zu URL(s), first %s, index prefix \"%s\"",
                 s->nurls, s->masked[0], s->prefix);
    cdc_buf_free(&auth);
    return &s->base;
nomem:
    snprintf(err, errlen, "cannot set up the Elasticsearch sink: out of memory");
fail:
    cdc_buf_free(&auth);
    es_destroy(&s->base);
    return NULL;
}
