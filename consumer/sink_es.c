/* sink_es.c: the Elasticsearch/OpenSearch sink: applies a batch of events
 * with _bulk (external versions = LSN), _mget for unchanged TOAST columns
 * and _delete_by_query for truncates. Sending the requests, failover and
 * retries of whole requests are es_http.c's; the documents and bodies are
 * es_bulk.c's; reading the answers is es_response.c's; truncates are
 * es_truncate.c's and a rebuild's requests es_rebuild.c's; the state they
 * share is in sink_es.h.
 *
 * What users see (docs/consumer-sinks.md): each table's name (es_index.h:
 * --es-index) is an alias of the physical index <name>_v1, both created in
 * one request the first time this process writes to a table whose name
 * does not exist, with the mapping es_mapping.c derives from the events'
 * column types ("dynamic":false) and the --es-mappings overrides
 * (docs/consumer-sinks.md "Index mappings"):
 * - one document per row, _id as es_doc_id() (es_bulk.h), _version = the
 *   LSN of the row's last change (version_type=external);
 *   _pgcdc_lsn holds the same number, as a long (Elasticsearch 7.10 has no
 *   unsigned_long; LSNs stay below 2^63 in practice);
 * - a column added by ALTER TABLE is added to the mapping (PUT _mapping)
 *   before the batch that first carries it is written;
 * - a deleted row is a document {"_pgcdc_deleted":true,"_pgcdc_lsn":N}
 *   (es_bulk.h says why) that the alias filters out, or with
 *   --es-deletes=delete an external-version delete, the index created with
 *   index.gc_deletes=ES_GC_DELETES;
 * - a TRUNCATE removes every document whose _pgcdc_lsn is below its LSN
 *   (rows and deleted markers alike) from the indices behind the alias.
 * Writes go through the alias, so they follow it when a rebuild moves it,
 * and are copied first into <name>_v<N+1> while that exists next to the
 * alias's <name>_v<N> (es_versions_check, es_rebuild.h: a rebuild); with
 * --es-index-version N they go to <name>_vN itself (the rebuild), and
 * --es-switch-alias then moves the alias (es_at_end).
 * Index settings (shards, replicas, analyzers) are the engine's defaults
 * unless --es-mappings gives them.
 *
 * Requests in flight: up to --es-concurrency lanes apply a batch's
 * partitions side by side, each with its own client (es_lane); the batch
 * is applied, and its offsets may be stored, once every lane is done.
 *
 * Retries: whole requests as es_http.h says; items of a _bulk that fail
 * alone (429, 5xx) are sent again alone.
 *
 * What can never succeed is not retried: an answer larger than its limit
 * (es_bulk.h: a request of several documents is split, a single document
 * is refused and dead-lettered), a _bulk item or request refused for good.
 *
 * Stops: every request first looks for a stop request, and one in flight
 * is abandoned within about a second of SIGTERM (libcurl's progress
 * callback); the batch then fails, so none of its offsets are stored and
 * it is applied again after a restart (every write is idempotent by LSN).
 * A truncate runs as a task of the engine that is polled, and cancelled on
 * a stop. */
#include "sink_es.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_buf.h"
#include "cdc_clock.h"
#include "cdc_config.h"
#include "cdc_log.h"
#include "cdc_metrics.h"
#include "cdc_signal.h"
#include "es_bulk.h"
#include "es_engine.h"
#include "es_http.h"
#include "es_index.h"
#include "es_mapping.h"
#include "es_rebuild.h"
#include "es_response.h"
#include "row_json.h"


/* One c/u/r/d record of a segment (the records between two truncates). */
typedef struct es_item {
    consumer_record *rec;
    es_table *t;
    const char *index;      /* written to: t->index, or t->copy_to for a copy */
    size_t id_off;          /* into the segment's ids buffer */
    long prev;              /* earlier item of the same row in the segment, or -1 */
    long mget;              /* index into the chunk's _mget request, or -1 */
    size_t line_off, line_len;  /* action and document lines in the chunk's body */
    size_t doc_off;         /* the document line alone, within that body */
    bool done;              /* applied, refused or skipped */
    char **unindexed;       /* columns whose value the index refused */
    size_t n_unindexed;
} es_item;

/* ---- c/u/r/d segments ------------------------------------------------ */

/* The records between two truncates, applied in chunks (es_bulk.h: request
 * sizes): ids and plan for the whole segment, the rest for the chunk being
 * applied. */
typedef struct segment {
    es_item *items;
    es_chunk_item *plan;    /* by item */
    size_t n;
    cdc_buf ids;
    cdc_buf body;           /* the chunk's bulk lines */
    es_mget_result mget;    /* the chunk's stored documents */
    yajl_val *prev_docs;    /* parsed documents of the chunk's items, by item */
    size_t *todo, *sizes;   /* items to send, and their sizes */
} segment;

/* Forgets what the chunk items[from..to) held. */
static void chunk_reset(segment *g, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (g->prev_docs[i]) {
            yajl_tree_free(g->prev_docs[i]);
            g->prev_docs[i] = NULL;
        }
    cdc_buf_reset(&g->body);
    es_mget_result_free(&g->mget);
}

static void segment_free(segment *g)
{
    if (g->prev_docs)
        chunk_reset(g, 0, g->n);
    for (size_t i = 0; g->items && i < g->n; i++) {
        for (size_t k = 0; k < g->items[i].n_unindexed; k++)
            free(g->items[i].unindexed[k]);
        free(g->items[i].unindexed);
    }
    free(g->prev_docs);
    free(g->items);
    free(g->plan);
    free(g->todo);
    free(g->sizes);
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
    if (sink_reject_record(it->rec, ES_SINK_NAME, reason) < 0) {
        snprintf(err, errlen, "cannot record a rejected document: out of memory");
        return -1;
    }
    s->base.rejected++;
    it->done = true;
    return 0;
}

/* Fetches the stored documents of the chunk items[from..to) that merge
 * unchanged TOAST columns and have no earlier record of their row in the
 * chunk (es_chunk_fetches). An answer of several documents may take
 * s->budget bytes: a longer one returns ES_TOO_LARGE, and the caller
 * makes the chunk smaller. A single document longer than RESPONSE_MAX can
 * never be read: its record is refused. Returns 0, ES_TOO_LARGE, or -1
 * with err (a stop, no memory). */
static int fetch_toast(es_sink *s, segment *g, size_t from, size_t to, char *err, size_t errlen)
{
    size_t nm = 0;
    for (size_t i = from; i < to; i++) {
        es_item *it = &g->items[i];
        it->mget = -1;
        if (!it->done && es_chunk_fetches(g->plan, i, from))
            it->mget = (long)nm++;
    }
    if (nm == 0)
        return 0;
    es_mget_doc *docs = calloc(nm, sizeof *docs);
    es_item *only = NULL;
    cdc_buf body = CDC_BUF_INIT, what = CDC_BUF_INIT;
    int rc = -1;
    if (!docs)
        goto nomem;
    for (size_t i = from; i < to; i++) {
        es_item *it = &g->items[i];
        if (it->mget < 0)
            continue;
        es_mget_doc *d = &docs[it->mget];
        d->index = it->t->index;
        d->id = item_id(g, it);
        d->fields = (const char *const *)it->rec->ev.unchanged_toast;
        d->nfields = it->rec->ev.n_unchanged_toast;
        only = it;
    }
    if (es_mget_body(docs, nm, &body) < 0 ||
        cdc_buf_printf(&what, "_mget of %zu document(s) for unchanged TOAST columns, first in "
                       "index %s", nm, docs[0].index) < 0)
        goto nomem;
    es_req r = {.method = "POST", .path = "/_mget", .body = body.data, .len = body.len,
                .what = what.data, .timeout_ms = ES_REQUEST_TIMEOUT_MS,
                .resp_max = nm > 1 ? s->budget : 0};
    unsigned attempt = 0;
    for (;;) {
        long status = 0;
        char why[1024], perr[512], excerpt[ES_EXCERPT_MAX + 1];
        int sent = es_http_send(&s->http, &r, &attempt, &status, why, sizeof why);
        if (sent < 0) {
            snprintf(err, errlen, "%s", why);
            goto done;
        }
        if (sent == ES_TOO_LARGE && nm > 1) {
            /* Cut off: so many documents take more than the budget. */
            s->mget_doc_bytes = s->budget / (nm / 2) + 1;
            cdc_log_info("%s; asking for at most %zu at a time", why,
                         es_mget_docs_per_request(s->budget, s->mget_doc_bytes));
            rc = ES_TOO_LARGE;
            goto done;
        }
        if (sent == ES_TOO_LARGE) {
            char reason[1536];
            snprintf(reason, sizeof reason, "%s: the stored document of id %s in index %s is too "
                     "large to be read, so the unchanged TOAST columns of lsn %" PRIu64 " can "
                     "never be merged", why, item_id(g, only), only->t->index, only->rec->ev.lsn);
            cdc_log_error("%s; retrying cannot succeed: dead-lettering the record", reason);
            if (reject(s, only, reason, err, errlen) < 0)
                goto done;
            only->mget = -1;
            break;
        }
        if (status == 200 && es_mget_parse(s->http.resp.data, s->http.resp.len, &g->mget, perr,
                                           sizeof perr) == 0) {
            if (g->mget.n == nm) {
                const char *doc_err = NULL;
                for (size_t k = 0; k < nm && !doc_err; k++)
                    if (g->mget.items[k].error &&
                        strncmp(g->mget.items[k].error, "no such index", 13) != 0)
                        doc_err = g->mget.items[k].error;
                if (!doc_err) {
                    s->mget_doc_bytes = es_mget_doc_bytes(s->http.resp.len, nm);
                    break;
                }
                snprintf(why, sizeof why, "POST %s/_mget (%s): a document could not be read: %s",
                         es_http_where(&s->http), what.data, doc_err);
            } else {
                snprintf(why, sizeof why, "POST %s/_mget (%s): %zu documents in the answer",
                         es_http_where(&s->http), what.data, g->mget.n);
            }
            es_mget_result_free(&g->mget);
        } else if (status == 200) {
            snprintf(why, sizeof why, "POST %s/_mget (%s): %s", es_http_where(&s->http), what.data, perr);
        } else {
            snprintf(why, sizeof why, "POST %s/_mget (%s): HTTP %ld: %s", es_http_where(&s->http),
                     what.data, status, es_http_excerpt(&s->http, excerpt, sizeof excerpt));
        }
        if (!es_http_retry_wait(&s->http, &attempt, status != 200 && status != 0, why)) {
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

/* The document a TOAST merge of item i starts from: the stored one when
 * fetch_toast read it, else the one written by the same row earlier in
 * the chunk. Sets *base_refused when that earlier record was refused:
 * what it held is unknown, so this one cannot be merged either. */
static int toast_current(segment *g, size_t i, yajl_val *current, bool *base_refused, char *err,
                         size_t errlen)
{
    es_item *it = &g->items[i];
    *current = NULL;
    *base_refused = false;
    if (it->mget >= 0) {
        es_mget_item *m = &g->mget.items[it->mget];
        *current = m->found ? m->source : NULL;
    } else if (it->prev >= 0) {
        size_t p = (size_t)it->prev;
        es_item *pi = &g->items[p];
        if (pi->line_len == 0) {
            *base_refused = pi->done;
            return 0;
        }
        if (!g->prev_docs[p]) {
            const char *doc = g->body.data + pi->doc_off;
            size_t len = pi->line_off + pi->line_len - pi->doc_off;
            if (row_json_parse("a document of this batch", doc, len, CDC_JSON_MAX_DEPTH + 8,
                               &g->prev_docs[p], err, errlen) < 0)
                return -1;
        }
        *current = g->prev_docs[p];
    }
    return 0;
}

/* Builds the bulk lines of every item of the chunk items[from..to) still
 * to do, in order. */
static int build_body(es_sink *s, segment *g, size_t from, size_t to, char *err, size_t errlen)
{
    for (size_t i = from; i < to; i++) {
        es_item *it = &g->items[i];
        if (it->done)
            continue;
        const cdc_decoded_event *ev = &it->rec->ev;
        yajl_val current = NULL;
        bool base_refused = false;
        if (g->plan[i].merge && toast_current(g, i, &current, &base_refused, err, errlen) < 0)
            return -1;
        char berr[512];
        if (base_refused) {
            snprintf(berr, sizeof berr, "%s.%s id %s at lsn %" PRIu64 ": its unchanged TOAST "
                     "columns come from the row's record at lsn %" PRIu64 ", which was refused",
                     ev->schema, ev->table, item_id(g, it), ev->lsn,
                     g->items[it->prev].rec->ev.lsn);
            if (reject(s, it, berr, err, errlen) < 0)
                return -1;
            continue;
        }
        size_t mark = g->body.len, missing = 0;
        if (s->real_deletes && ev->op == 'd') {
            if (es_bulk_append_delete(&g->body, it->index, item_id(g, it), ev->lsn) < 0) {
                snprintf(err, errlen, "cannot build a _bulk request: out of memory");
                return -1;
            }
        } else if (es_bulk_append(&g->body, it->index, item_id(g, it), ev, current, &missing,
                                  NULL, berr, sizeof berr) < 0) {
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
        if (missing > 0 && it->index == it->t->index) /* once, not again for the copy */
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
    const char *index = g->items[todo[0]].index;
    bool several = false;
    for (size_t k = 1; k < n && !several; k++)
        several = strcmp(g->items[todo[k]].index, index) != 0;
    cdc_buf_printf(out, "_bulk of %zu item(s) for index %s%s", n, index, several ? " and others" : "");
}

static int item_reject_from_response(es_sink *s, segment *g, es_item *it, const es_bulk_item *r,
                                     char *err, size_t errlen)
{
    char reason[1024];
    snprintf(reason, sizeof reason, "HTTP %d %s: %s%s%s%s [index %s, id %s, lsn %" PRIu64 "]",
             r->status, r->error_type ? r->error_type : "error",
             r->reason ? r->reason : "no reason given", r->cause ? " (caused by: " : "",
             r->cause ? r->cause : "", r->cause ? ")" : "", it->index, item_id(g, it),
             it->rec->ev.lsn);
    return reject(s, it, reason, err, errlen);
}

/* Most columns of one row set aside as unindexed before the row is refused
 * after all. */
#define ES_UNINDEXED_MAX 32

/* A document the engine refused for one field's value (a mapping conflict:
 * a jsonb scalar in a flat_object field, text in a boolean field after
 * ALTER COLUMN ... TYPE) is written again with that column under
 * ES_FIELD_UNINDEXED, so the row's other columns stay current; counted and
 * logged as a mapping conflict. Returns 1 when item i's line was rebuilt
 * (send it again), 0 when the refusal names no column of the row, -1 on a
 * stop (out of memory). */
static int unindex_refused(es_sink *s, segment *g, size_t i, const es_bulk_item *r, char *err,
                           size_t errlen)
{
    es_item *it = &g->items[i];
    const cdc_decoded_event *ev = &it->rec->ev;
    char field[256];
    if (ev->op == 'd' || !ev->after || it->n_unindexed >= ES_UNINDEXED_MAX ||
        !es_refused_field(r, field, sizeof field))
        return 0;
    /* The column: the field itself, or the object holding it ("attrs.watts"). */
    const char *column = NULL;
    size_t best = 0;
    for (size_t k = 0; k < ev->after->u.object.len + ev->n_unchanged_toast; k++) {
        const char *name = k < ev->after->u.object.len
                               ? ev->after->u.object.keys[k]
                               : ev->unchanged_toast[k - ev->after->u.object.len];
        size_t len = strlen(name);
        if (len > best && strncmp(field, name, len) == 0 && (field[len] == '\0' || field[len] == '.')) {
            column = name;
            best = len;
        }
    }
    for (size_t k = 0; column && k < it->n_unindexed; k++)
        if (strcmp(it->unindexed[k], column) == 0)
            return 0; /* set aside already, refused anyway */
    if (!column)
        return 0;
    char **grown = realloc(it->unindexed, (it->n_unindexed + 1) * sizeof *grown);
    if (!grown)
        goto nomem;
    it->unindexed = grown;
    if (!(it->unindexed[it->n_unindexed] = strdup(column)))
        goto nomem;
    it->n_unindexed++;
    yajl_val current = NULL;
    bool base_refused = false;
    if (g->plan[i].merge && toast_current(g, i, &current, &base_refused, err, errlen) < 0)
        return -1;
    es_unindexed u = {.names = (const char *const *)it->unindexed, .n = it->n_unindexed};
    size_t mark = g->body.len;
    char berr[512];
    if (es_bulk_append(&g->body, it->index, item_id(g, it), ev, current, NULL, &u, berr,
                       sizeof berr) < 0) {
        snprintf(err, errlen, "%s", berr);
        return -1;
    }
    it->line_off = mark;
    it->line_len = g->body.len - mark;
    it->doc_off = (size_t)((char *)memchr(g->body.data + mark, '\n', it->line_len) -
                           g->body.data) + 1;
    cdc_counter_add(s->m_conflicts, 1);
    cdc_log_warn("index %s refused column %s of %s.%s id %s at lsn %" PRIu64 " (%s: %s); the "
                 "row is written with that value unindexed, under " ES_FIELD_UNINDEXED,
                 it->index, column, ev->schema, ev->table, item_id(g, it), ev->lsn,
                 r->error_type, r->reason ? r->reason : "no reason given");
    return 1;
nomem:
    snprintf(err, errlen, "cannot set a refused column aside: out of memory");
    return -1;
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
                    .len = body.len, .what = what.data, .timeout_ms = ES_REQUEST_TIMEOUT_MS};
        long status = 0;
        char why[1536], perr[512], excerpt[ES_EXCERPT_MAX + 1];
        int sent = es_http_send(&s->http, &r, &attempt, &status, why, sizeof why);
        if (sent < 0) {
            snprintf(err, errlen, "%s", why);
            goto done;
        }
        if (sent == 0 && status == 404) {
            /* The whole _bulk endpoint missing: a wrong URL or proxy path,
             * which the operator must fix; not the documents' fault. */
            snprintf(why, sizeof why, "POST %s/_bulk (%s): HTTP 404 (is the --es URL right?): %s",
                     es_http_where(&s->http), what.data, es_http_excerpt(&s->http, excerpt, sizeof excerpt));
            if (!es_http_retry_wait(&s->http, &attempt, true, why))
                goto stopped;
            continue;
        }
        if (sent == ES_TOO_LARGE || status >= 400) {
            char reason[1600];
            if (sent == ES_TOO_LARGE)
                snprintf(reason, sizeof reason, "%s", why);
            else
                snprintf(reason, sizeof reason, "the %s was refused as a whole: HTTP %ld: %s",
                         what.data, status, es_http_excerpt(&s->http, excerpt, sizeof excerpt));
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
        if (es_bulk_parse(s->http.resp.data, s->http.resp.len, &res, perr, sizeof perr) < 0 ||
            res.n != n) {
            if (res.root == NULL)
                snprintf(why, sizeof why, "POST %s/_bulk (%s): HTTP %ld: %s", es_http_where(&s->http),
                         what.data, status, perr);
            else
                snprintf(why, sizeof why, "POST %s/_bulk (%s): %zu items in the answer",
                         es_http_where(&s->http), what.data, res.n);
            es_bulk_result_free(&res);
            if (!es_http_retry_wait(&s->http, &attempt, false, why))
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
            case ES_ITEM_REJECTED: {
                int rebuilt = unindex_refused(s, g, todo[k], ri, err, errlen);
                if (rebuilt > 0) {
                    todo[again++] = todo[k];
                    break;
                }
                if (rebuilt < 0 || item_reject_from_response(s, g, it, ri, err, errlen) < 0) {
                    es_bulk_result_free(&res);
                    goto done;
                }
                break;
            }
            case ES_ITEM_RETRY:
                if (!first_retry)
                    first_retry = ri;
                todo[again++] = todo[k]; /* again <= k: order kept */
                break;
            }
        }
        if (first_retry) {
            snprintf(why, sizeof why, "%zu of %zu item(s) of the %s must be sent again, first: "
                     "HTTP %d %s: %s [index %s, id %s]", again, n, what.data, first_retry->status,
                     first_retry->error_type ? first_retry->error_type : "",
                     first_retry->reason ? first_retry->reason : "",
                     g->items[todo[0]].index, item_id(g, &g->items[todo[0]]));
            es_bulk_result_free(&res);
            if (!es_http_retry_wait(&s->http, &item_attempt, false, why))
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

/* Applies the chunk of items that starts at `from` (es_bulk.h: request
 * sizes) and sets *to to its end: its stored documents are fetched (the
 * chunk is made smaller while their answer would be too long), its bulk
 * lines built, then sent in _bulk requests of at most s->budget bytes. */
static int apply_chunk(es_sink *s, segment *g, size_t from, size_t *to, char *err, size_t errlen)
{
    for (;;) {
        size_t nfetch;
        size_t max_fetch = es_mget_docs_per_request(s->budget, s->mget_doc_bytes);
        *to = es_chunk_end(g->plan, g->n, from, s->budget, max_fetch, &nfetch);
        int rc = fetch_toast(s, g, from, *to, err, errlen);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
    }
    if (build_body(s, g, from, *to, err, errlen) < 0)
        return -1;
    size_t nt = 0;
    for (size_t i = from; i < *to; i++)
        if (!g->items[i].done) {
            g->todo[nt] = i;
            g->sizes[nt++] = g->items[i].line_len;
        }
    for (size_t k = 0; k < nt;) {
        size_t take = es_take_by_bytes(g->sizes + k, nt - k, s->budget);
        if (send_items(s, g, g->todo + k, take, err, errlen) < 0)
            return -1;
        k += take;
    }
    chunk_reset(g, from, *to);
    return 0;
}

/* Applies recs[0..n) (no truncate) whose tables tabs[0..n) are ready
 * (apply_segment), written to their tables' indices, or with `copy` to
 * their next versions (es_versions_check); unchanged TOAST columns are read
 * from the index readers see either way. Runs on a lane (es_lane): s may
 * be a lane's view. */
static int apply_records(es_sink *s, consumer_record *const *recs, es_table *const *tabs,
                         size_t n, bool copy, char *err, size_t errlen)
{
    segment g = {.ids = CDC_BUF_INIT, .body = CDC_BUF_INIT};
    int rc = -1;
    g.items = calloc(n, sizeof *g.items);
    g.plan = calloc(n, sizeof *g.plan);
    g.prev_docs = calloc(n, sizeof *g.prev_docs);
    g.todo = calloc(n, sizeof *g.todo);
    g.sizes = calloc(n, sizeof *g.sizes);
    if (!g.items || !g.plan || !g.prev_docs || !g.todo || !g.sizes)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        es_item *it = &g.items[g.n];
        consumer_record *rec = recs[i];
        const cdc_decoded_event *ev = &rec->ev;
        it->rec = rec;
        it->prev = it->mget = -1;
        g.plan[g.n] = (es_chunk_item){.bytes = rec->msg ? rec->msg->len : 0, .prev = -1};
        it->t = tabs[i];
        it->index = copy ? it->t->copy_to : it->t->index;
        g.n++;
        if (!rec->key) {
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
         * insert that made this update possible. An earlier write in an
         * earlier chunk is in the index by the time this one is built, so
         * the stored document is then read instead (es_chunk_fetches). */
        for (size_t p = g.n - 1; p-- > 0;) {
            es_item *pi = &g.items[p];
            if (!pi->done && pi->t == it->t && pi->rec->ev.op != 'd' &&
                pi->rec->ev.lsn < ev->lsn &&
                (it->prev < 0 || pi->rec->ev.lsn > g.items[it->prev].rec->ev.lsn) &&
                strcmp(item_id(&g, pi), item_id(&g, it)) == 0)
                it->prev = (long)p;
        }
        g.plan[g.n - 1].merge = true;
        g.plan[g.n - 1].prev = it->prev;
    }
    for (size_t from = 0, to; from < g.n; from = to)
        if (apply_chunk(s, &g, from, &to, err, errlen) < 0)
            goto done;
    rc = 0;
    goto done;
nomem:
    snprintf(err, errlen, "cannot apply a batch of %zu records: out of memory", n);
done:
    segment_free(&g);
    return rc;
}

/* A lane applies the records of some of a batch's partitions, on its own
 * HTTP client: the lanes' requests are in flight together (the node
 * indexes faster with several, bench/search). Every change of a row comes
 * from one partition, and a partition's records stay in one lane in their
 * order, so no row's writes are reordered; the one exception, the delete
 * a key change adds at the old key (keychange.h), is ordered by its
 * external version as before, whichever lane it is in. Lane 0 runs on the
 * calling thread with the sink itself; the others on threads, each with a
 * view: a copy of the sink, made for the batch, but for its client and
 * counters, which are the lane's own. The tables are all made ready
 * before the lanes start, and lanes only read them. */
typedef struct es_lane {
    es_sink *view;
    consumer_record **recs;
    es_table **tabs;
    size_t n;
    pthread_t thread;
    bool started;
    int rc;
    char err[1024];
} es_lane;

/* Applies a lane's records: first the copies of the writes of tables
 * being rebuilt into their next versions, then the writes themselves, so
 * that a next version always holds at least what readers see
 * (es_rebuild.h). */
static int apply_lane(es_sink *s, consumer_record *const *recs, es_table *const *tabs, size_t n,
                      char *err, size_t errlen)
{
    size_t nc = 0;
    for (size_t i = 0; i < n; i++)
        nc += tabs[i]->copy_to && recs[i]->key;
    if (nc > 0) {
        consumer_record **crecs = calloc(nc, sizeof *crecs);
        es_table **ctabs = calloc(nc, sizeof *ctabs);
        int rc = -1;
        if (!crecs || !ctabs) {
            snprintf(err, errlen, "cannot copy a batch of %zu records: out of memory", nc);
        } else {
            for (size_t i = 0, k = 0; i < n; i++)
                if (tabs[i]->copy_to && recs[i]->key) {
                    crecs[k] = recs[i];
                    ctabs[k++] = tabs[i];
                }
            /* A record is counted once, when it is written for readers. */
            uint64_t applied = s->base.applied;
            rc = apply_records(s, crecs, ctabs, nc, true, err, errlen);
            s->base.applied = applied;
        }
        free(crecs);
        free(ctabs);
        if (rc < 0)
            return -1;
    }
    return apply_records(s, recs, tabs, n, false, err, errlen);
}

static void *lane_main(void *arg)
{
    es_lane *l = arg;
    l->rc = apply_lane(l->view, l->recs, l->tabs, l->n, l->err, sizeof l->err);
    return NULL;
}

/* The lane of rec: its partition's, given in order of first appearance,
 * round robin. parts[0..*nparts) holds the partitions seen. */
static size_t lane_of(const consumer_record *rec, const rd_kafka_message_t **parts,
                      size_t *lanes_of, size_t *nparts, size_t nlanes)
{
    const rd_kafka_message_t *m = rec->msg;
    if (!m || nlanes == 1)
        return 0;
    for (size_t k = 0; k < *nparts; k++)
        if (parts[k]->rkt == m->rkt && parts[k]->partition == m->partition)
            return lanes_of[k];
    parts[*nparts] = m;
    lanes_of[*nparts] = *nparts % nlanes;
    return lanes_of[(*nparts)++];
}

/* Applies recs[0..n), which holds no truncate: their tables and indices
 * made ready here, then the records in lanes (es_lane). */
static int apply_segment(es_sink *s, consumer_record *const *recs, size_t n, char *err,
                         size_t errlen)
{
    int rc = -1;
    es_lane *lanes = calloc(s->nlanes, sizeof *lanes);
    es_table **tabs = calloc(n, sizeof *tabs);
    es_table **lane_tabs = calloc(n, sizeof *lane_tabs);
    consumer_record **lane_recs = calloc(n, sizeof *lane_recs);
    const rd_kafka_message_t **parts = calloc(n, sizeof *parts);
    size_t *lanes_of = calloc(n, sizeof *lanes_of), *lane_ix = calloc(n, sizeof *lane_ix);
    if (!lanes || !tabs || !lane_tabs || !lane_recs || !parts || !lanes_of || !lane_ix) {
        snprintf(err, errlen, "cannot apply a batch of %zu records: out of memory", n);
        goto done;
    }
    size_t nparts = 0;
    for (size_t i = 0; i < n; i++) {
        const cdc_decoded_event *ev = &recs[i]->ev;
        es_table *t = tabs[i] = es_table_get(s, ev->schema, ev->table, err, errlen);
        if (!t)
            goto done;
        if (!recs[i]->key) {
            /* A table without replica identity: no row to address. */
            if (!t->warned_nokey) {
                cdc_log_warn("%s.%s: events without a key (no replica identity) cannot be "
                             "written to index %s; skipping them (counted)",
                             ev->schema, ev->table, t->index);
                t->warned_nokey = true;
            }
        } else {
            t->truncated = false;
            if (es_index_ensure(s, t, ev->types, err, errlen) < 0 ||
                es_versions_check(s, t, err, errlen) < 0)
                goto done;
        }
        lane_ix[i] = lane_of(recs[i], parts, lanes_of, &nparts, s->nlanes);
        lanes[lane_ix[i]].n++;
    }
    /* Each lane's records, in batch order, side by side in lane_recs. */
    for (size_t k = 0, at = 0; k < s->nlanes; k++) {
        lanes[k].recs = lane_recs + at;
        lanes[k].tabs = lane_tabs + at;
        at += lanes[k].n;
        lanes[k].n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        es_lane *l = &lanes[lane_ix[i]];
        l->recs[l->n] = recs[i];
        l->tabs[l->n++] = tabs[i];
    }
    for (size_t k = 1; k < s->nlanes; k++) {
        es_lane *l = &lanes[k];
        if (l->n == 0)
            continue;
        /* The client stays where it is: libcurl holds its address. */
        es_sink *v = l->view = &s->views[k - 1];
        es_http http = v->http;
        *v = *s;
        v->http = http;
        v->base.applied = v->base.rejected = v->base.skipped = v->base.retries = 0;
        if (pthread_create(&l->thread, NULL, lane_main, l) != 0) {
            /* No thread: the lane runs after lane 0, on this one. */
            cdc_log_warn("cannot start a thread for a _bulk lane: applying its %zu records "
                         "after the others", l->n);
            continue;
        }
        l->started = true;
    }
    rc = lanes[0].n ? apply_lane(s, lanes[0].recs, lanes[0].tabs, lanes[0].n, err, errlen) : 0;
    for (size_t k = 1; k < s->nlanes; k++) {
        es_lane *l = &lanes[k];
        if (l->n == 0)
            continue;
        if (l->started)
            pthread_join(l->thread, NULL);
        else
            lane_main(l);
        s->base.applied += l->view->base.applied;
        s->base.rejected += l->view->base.rejected;
        s->base.skipped += l->view->base.skipped;
        s->base.retries += l->view->base.retries;
        if (l->view->mget_doc_bytes > s->mget_doc_bytes)
            s->mget_doc_bytes = l->view->mget_doc_bytes;
        if (l->rc < 0 && rc == 0) {
            snprintf(err, errlen, "%s", l->err);
            rc = -1;
        }
    }
done:
    free(lanes);
    free(tabs);
    free(lane_tabs);
    free(lane_recs);
    free(parts);
    free(lanes_of);
    free(lane_ix);
    return rc;
}

static int es_apply(sink *base, consumer_record *const *recs, size_t n, char *err, size_t errlen)
{
    es_sink *s = (es_sink *)base;
    /* A batch read before a stop must not be applied after one that the
     * stop cut short: its offsets would be stored past the other's. */
    if (cdc_signal_stop_requested()) {
        snprintf(err, errlen, "stop requested before a batch of %zu records was applied", n);
        return -1;
    }
    size_t i = 0;
    while (i < n) {
        if (recs[i]->ev.op == 't') {
            if (es_truncate_apply(s, recs[i], err, errlen) < 0)
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

/* --es-switch-alias (sink.h at_end): once everything up to the end offsets
 * is applied, the consumer is sent for the end offsets of a moment at
 * least 2 x ES_NEXT_TTL_MS after this process made or found the last of
 * its indices (a live consumer copies into it from a second after that),
 * again if a table first seen meanwhile makes that moment later; once
 * everything up to those is applied, each table's alias is moved to its
 * index (es_rebuild.h says why nothing is lost). */
static int es_at_end(sink *base, char *err, size_t errlen)
{
    es_sink *s = (es_sink *)base;
    if (!s->switch_alias)
        return 0;
    int64_t last = 0;
    for (es_table *t = s->tables; t; t = t->next)
        if (t->made_ms > last)
            last = t->made_ms;
    if (s->ends_at_ms == 0 || (last && s->ends_at_ms < last + 2 * ES_NEXT_TTL_MS)) {
        while (last && cdc_clock_mono_ms() < last + 2 * ES_NEXT_TTL_MS)
            if (!sink_backoff(0, 100, 100)) {
                snprintf(err, errlen, "stop requested before the aliases were moved");
                return -1;
            }
        s->ends_at_ms = cdc_clock_mono_ms();
        cdc_log_info("--es-switch-alias: applying up to the end offsets of now, then moving "
                     "the aliases");
        return 1;
    }
    int rc = 0;
    for (es_table *t = s->tables; t; t = t->next) {
        char terr[1024];
        if (!t->made_ms ||
            es_rebuild_switch(&s->http, t->name, s->version, !s->real_deletes, terr,
                              sizeof terr) == 0)
            continue;
        if (cdc_signal_stop_requested()) {
            snprintf(err, errlen, "%s", terr);
            return -1;
        }
        if (rc == 0)
            snprintf(err, errlen, "%s", terr);
        else
            cdc_log_error("%s", terr);
        rc = -1;
    }
    return rc;
}

/* ---- set-up ---------------------------------------------------------- */

/* --es-mappings FILE, read once at start. */
static int overrides_load(es_sink *s, const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "rb");
    cdc_buf b = CDC_BUF_INIT;
    char chunk[4096], perr[400];
    size_t n;
    int rc = -1;
    if (!f) {
        snprintf(err, errlen, "--es-mappings %s: cannot open it", file);
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (cdc_buf_append(&b, chunk, n) < 0) {
            snprintf(err, errlen, "--es-mappings %s: out of memory", file);
            goto done;
        }
    if (ferror(f)) {
        snprintf(err, errlen, "--es-mappings %s: cannot read it", file);
        goto done;
    }
    if (es_mapping_overrides_parse(b.data ? b.data : "", b.len, &s->overrides, perr,
                                   sizeof perr) < 0) {
        snprintf(err, errlen, "%s (file %s)", perr, file);
        goto done;
    }
    rc = 0;
done:
    fclose(f);
    cdc_buf_free(&b);
    return rc;
}

static void es_destroy(sink *base)
{
    es_sink *s = (es_sink *)base;
    if (!s)
        return;
    es_http_cleanup(&s->http);
    for (size_t k = 0; s->views && k + 1 < s->nlanes; k++)
        es_http_cleanup(&s->views[k].http);
    free(s->views);
    es_mapping_overrides_free(s->overrides);
    while (s->tables) {
        es_table *next = s->tables->next;
        es_table_free(s->tables);
        s->tables = next;
    }
    es_index_rules_free(s->names);
    free(s);
}

sink *sink_es_new(const cdc_config *cfg, char *err, size_t errlen)
{
    es_sink *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "cannot set up the Elasticsearch sink: out of memory");
        return NULL;
    }
    s->base.name = ES_SINK_NAME;
    s->base.apply = es_apply;
    s->base.at_end = es_at_end;
    s->base.destroy = es_destroy;
    s->budget = es_request_budget((size_t)cdc_config_int(cfg, "batch-bytes"));
    s->mget_doc_bytes = ES_MGET_DOC_GUESS;
    const char *const *templates;
    size_t ntemplates = cdc_config_list(cfg, "es-index", &templates);
    s->names = es_index_rules_new(cdc_config_str(cfg, "es-index-prefix"), templates, ntemplates,
                                  err, errlen);
    if (!s->names)
        goto fail;
    s->m_conflicts = cdc_metrics_counter("pgcdc_consumer_es_mapping_conflicts_total",
        "Mapping changes the search engine could not take (a column whose type changed, "
        "fields it refused): each also logged", NULL);
    const char *mappings = cdc_config_str(cfg, "es-mappings");
    if (mappings && overrides_load(s, mappings, err, errlen) < 0)
        goto fail;
    s->version = (unsigned)cdc_config_int(cfg, "es-index-version");
    s->switch_alias = cdc_config_bool(cfg, "es-switch-alias");
    if (s->switch_alias && (s->version < 2 || !cdc_config_bool(cfg, "until-end"))) {
        snprintf(err, errlen, "--es-switch-alias needs --until-end and --es-index-version N "
                 "with N >= 2 (the version that replaces N-1)");
        goto fail;
    }
    const char *deletes = cdc_config_str(cfg, "es-deletes");
    s->real_deletes = deletes && strcmp(deletes, "delete") == 0;
    if (es_http_init(&s->http, cfg, &s->base.retries, err, errlen) < 0)
        goto fail;
    s->nlanes = (size_t)cdc_config_int(cfg, "es-concurrency");
    if (!(s->views = calloc(s->nlanes, sizeof *s->views))) {
        snprintf(err, errlen, "cannot set up the Elasticsearch sink: out of memory");
        goto fail;
    }
    for (size_t k = 0; k + 1 < s->nlanes; k++)
        if (es_http_init(&s->views[k].http, cfg, &s->views[k].base.retries, err, errlen) < 0)
            goto fail;
    cdc_log_info("Elasticsearch/OpenSearch sink: %zu URL(s), first %s, deletes as %s, "
                 "writing to %s, requests of at most %zu bytes, up to %zu in flight",
                 s->http.nurls,
                 s->http.masked[0], s->real_deletes ? "deletes" : "deleted markers",
                 s->version ? "a version of each index (a rebuild)" : "each index's alias",
                 s->budget, s->nlanes);
    return &s->base;
fail:
    es_destroy(&s->base);
    return NULL;
}
