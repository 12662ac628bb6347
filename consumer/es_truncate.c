/* es_truncate.c: a TRUNCATE in the Elasticsearch/OpenSearch sink: every
 * document of the table older than the truncate (rows and deleted markers,
 * in every index behind the alias, and in a rebuild's next version) is
 * removed by a _delete_by_query that runs as a task of the engine, polled,
 * and cancelled on a stop (docs/consumer-sinks.md "Truncate"). */
#include "sink_es.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cdc_buf.h"
#include "cdc_clock.h"
#include "cdc_log.h"
#include "es_bulk.h"
#include "es_response.h"

/* A truncate's task is polled every 50-100 ms at first, then about once a
 * second; its progress is logged every TASK_LOG_MS. */
#define TASK_POLL_MIN_MS 100
#define TASK_POLL_MAX_MS 1000
#define TASK_LOG_MS 30000

/* Appends "/<index>[,<index>...]" to path: the indices behind `name` when
 * it is an alias, else name itself. A _delete_by_query through an alias
 * that filters out deleted markers would leave them. Returns 1, 0 (out of
 * memory), or -1 with err on a stop. */
static int path_put_physical(es_sink *s, cdc_buf *path, const char *name, char *err,
                             size_t errlen)
{
    cdc_buf get = CDC_BUF_INIT, names = CDC_BUF_INIT;
    int rc = 0;
    if (cdc_buf_puts(&get, "/_alias") < 0 || es_path_put_index(&get, name) < 0)
        goto done;
    es_req r = {.method = "GET", .path = get.data, .what = "look up an alias",
                .timeout_ms = ES_REQUEST_TIMEOUT_MS};
    unsigned attempt = 0;
    long status = 0;
    char why[512];
    size_t n = 0;
    int sent = es_http_send(&s->http, &r, &attempt, &status, why, sizeof why);
    if (sent < 0) {
        snprintf(err, errlen, "%s", why);
        rc = -1;
        goto done;
    }
    if (sent != 0 || status != 200 ||
        es_alias_indices(s->http.resp.data, s->http.resp.len, &names, &n, why, sizeof why) < 0) {
        if (sent == 0 && status == 200)
            cdc_log_warn("GET %s%s: %s; truncating %s itself", es_http_where(&s->http), get.data,
                         why, name);
        rc = es_path_put_index(path, name) < 0 ? 0 : 1;
        goto done;
    }
    const char *one = names.data;
    for (size_t i = 0; i < n; i++, one += strlen(one) + 1) {
        size_t mark = path->len;
        if (es_path_put_index(path, one) < 0)
            goto done;
        if (i > 0)
            path->data[mark] = ','; /* "/a" then ",b" */
    }
    rc = 1;
done:
    cdc_buf_free(&get);
    cdc_buf_free(&names);
    return rc;
}

/* Appends ",<index>" to a path of indices; nothing when index is NULL.
 * Returns 0 or -1 (memory). */
static int path_put_also(cdc_buf *path, const char *index)
{
    size_t mark = path->len;
    if (!index || mark == 0)
        return 0;
    if (es_path_put_index(path, index) < 0)
        return -1;
    path->data[mark] = ',';
    return 0;
}

/* How a truncate's task ended (task_wait). */
typedef enum task_end {
    TASK_ENDED,        /* completed: see the status */
    TASK_LOST,         /* the engine no longer knows it (its node restarted) */
    TASK_STOPPED,      /* a stop was requested: cancelled */
} task_end;

/* Polls the task until it completes. On a stop the task is cancelled: the
 * batch is not stored, so the truncate runs again after a restart, and
 * what this one deleted stays deleted. */
static task_end task_wait(es_sink *s, const char *task, const char *what, es_task_status *st,
                          char *err, size_t errlen)
{
    cdc_buf path = CDC_BUF_INIT, cancel = CDC_BUF_INIT;
    task_end end = TASK_STOPPED;
    unsigned attempt = 0, poll = 0;
    int64_t log_at = cdc_clock_mono_ms() + TASK_LOG_MS;
    if (cdc_buf_printf(&path, "/_tasks/%s", task) < 0 ||
        cdc_buf_printf(&cancel, "/_tasks/%s/_cancel", task) < 0) {
        snprintf(err, errlen, "cannot wait for task %s (%s): out of memory", task, what);
        goto done;
    }
    for (;;) {
        if (!sink_backoff(poll < 5 ? poll++ : 5, TASK_POLL_MIN_MS, TASK_POLL_MAX_MS))
            goto stopped;
        es_req r = {.method = "GET", .path = path.data, .what = what,
                    .timeout_ms = ES_REQUEST_TIMEOUT_MS};
        long status = 0;
        char why[1024], perr[512], excerpt[ES_EXCERPT_MAX + 1];
        int rc = es_http_send(&s->http, &r, &attempt, &status, why, sizeof why);
        if (rc < 0)
            goto stopped;
        if (rc == 0 && status == 404) {
            cdc_log_warn("GET %s%s (%s): the engine no longer knows the task: %s", es_http_where(&s->http),
                         path.data, what, es_http_excerpt(&s->http, excerpt, sizeof excerpt));
            end = TASK_LOST;
            goto done;
        }
        if (rc == 0 && status == 200 &&
            es_task_parse(s->http.resp.data, s->http.resp.len, st, perr, sizeof perr) == 0) {
            attempt = 0;
            if (st->state != ES_TASK_RUNNING) {
                end = TASK_ENDED;
                goto done;
            }
            if (cdc_clock_mono_ms() >= log_at) {
                cdc_log_info("%s: task %s has deleted %lld of %lld document(s) so far", what, task,
                             st->deleted, st->total);
                log_at = cdc_clock_mono_ms() + TASK_LOG_MS;
            }
            continue;
        }
        if (rc == 0)
            snprintf(why, sizeof why, "GET %s%s (%s): HTTP %ld: %s", es_http_where(&s->http), path.data,
                     what, status, status == 200 ? perr : es_http_excerpt(&s->http, excerpt, sizeof excerpt));
        if (!es_http_retry_wait(&s->http, &attempt, false, why))
            goto stopped;
    }
stopped:
    es_http_once(&s->http, "POST", cancel.data, what, true);
    snprintf(err, errlen, "stop requested during the %s (task %s cancelled; the truncate runs "
             "again after a restart)", what, task);
done:
    cdc_buf_free(&path);
    cdc_buf_free(&cancel);
    return end;
}

/* Removes the table's documents older than the truncate: a refresh first,
 * because _delete_by_query only sees what a refresh has made searchable,
 * and documents of this table written just before must go too. A 404
 * (no such index) means there is nothing to remove. The deletion runs as
 * a task of the engine (wait_for_completion=false), polled: it may take
 * far longer than a request should, and a stop must be heard meanwhile. A
 * task that fails or is lost is started again: deleting what is older
 * than the truncate twice is harmless. */
int es_truncate_apply(es_sink *s, consumer_record *rec, char *err, size_t errlen)
{
    const cdc_decoded_event *ev = &rec->ev;
    es_table *t = es_table_get(s, ev->schema, ev->table, err, errlen);
    if (!t)
        return -1;
    if (t->truncated && t->truncate_lsn >= ev->lsn) {
        /* The same truncate from another partition, nothing written since. */
        s->base.applied++;
        return 0;
    }
    if (es_versions_check(s, t, err, errlen) < 0)
        return -1;
    cdc_buf path = CDC_BUF_INIT, body = CDC_BUF_INIT, what = CDC_BUF_INIT, done_path = CDC_BUF_INIT;
    int rc = -1;
    unsigned attempt = 0;
    char excerpt[ES_EXCERPT_MAX + 1], why[1024], task[ES_TASK_ID_MAX + 1];
    /* A rebuild's next version (es_versions_check) is truncated in the same
     * requests; it may be gone by now (ignore_unavailable). */
    const char *copy = t->copy_to ? "?ignore_unavailable=true" : "";
    if (cdc_buf_printf(&what, "truncate of %s.%s at lsn %" PRIu64 " in index %s%s%s", ev->schema,
                       ev->table, ev->lsn, t->index, t->copy_to ? " and " : "",
                       t->copy_to ? t->copy_to : "") < 0 ||
        es_truncate_body(ev->lsn, &body) < 0) {
        snprintf(err, errlen, "cannot apply the truncate of %s.%s: out of memory", ev->schema,
                 ev->table);
        goto done;
    }
    for (;;) {
        long status = 0;
        cdc_buf_reset(&path);
        if (es_path_put_index(&path, t->index) < 0 || path_put_also(&path, t->copy_to) < 0 ||
            cdc_buf_puts(&path, "/_refresh") < 0 || cdc_buf_puts(&path, copy) < 0)
            goto nomem;
        es_req refresh = {.method = "POST", .path = path.data, .what = what.data,
                          .timeout_ms = ES_REQUEST_TIMEOUT_MS};
        int sent = es_http_send(&s->http, &refresh, &attempt, &status, why, sizeof why);
        if (sent < 0)
            goto stopped;
        if (sent == ES_TOO_LARGE)
            goto refused;
        if (status == 404 && s->http.resp.data && strstr(s->http.resp.data, "index_not_found_exception"))
            goto no_index;
        cdc_buf_reset(&path);
        int found = path_put_physical(s, &path, t->index, err, errlen);
        if (found < 0)
            goto done;
        if (found == 0 || path_put_also(&path, t->copy_to) < 0 ||
            cdc_buf_puts(&path, "/_delete_by_query?conflicts=proceed&refresh=true"
                                "&wait_for_completion=false") < 0 ||
            (t->copy_to && cdc_buf_puts(&path, "&ignore_unavailable=true") < 0))
            goto nomem;
        /* Its answer names the task a stop must cancel: awaited a while after
         * a stop, so that the task is not left running for minutes. */
        es_req dbq = {.method = "POST", .path = path.data, .body = body.data, .len = body.len,
                      .what = what.data, .timeout_ms = ES_REQUEST_TIMEOUT_MS,
                      .stop_grace_ms = 5000};
        sent = es_http_send(&s->http, &dbq, &attempt, &status, why, sizeof why);
        if (sent < 0)
            goto stopped;
        if (sent == ES_TOO_LARGE)
            goto refused;
        if (status == 404 && s->http.resp.data && strstr(s->http.resp.data, "index_not_found_exception"))
            goto no_index;
        if (status < 200 || status >= 300) {
            /* Any other answer is about this request itself (a bad query, a
             * field mapped otherwise by the user): retrying cannot help. */
            snprintf(why, sizeof why, "%s refused: HTTP %ld: %s", what.data, status,
                     es_http_excerpt(&s->http, excerpt, sizeof excerpt));
            goto refused;
        }
        char perr[512];
        if (es_task_id_parse(s->http.resp.data, s->http.resp.len, task, perr, sizeof perr) < 0) {
            snprintf(why, sizeof why, "POST %s%s (%s): %s", es_http_where(&s->http), path.data,
                     what.data, perr);
            if (!es_http_retry_wait(&s->http, &attempt, false, why))
                goto stopped;
            continue;
        }
        cdc_log_debug("%s: task %s started", what.data, task);
        es_task_status st;
        task_end end = task_wait(s, task, what.data, &st, err, errlen);
        if (end == TASK_STOPPED)
            goto done;
        if (end == TASK_ENDED) {
            /* The engine keeps a finished task's result in its .tasks index
             * until told otherwise. */
            cdc_buf_reset(&done_path);
            if (cdc_buf_printf(&done_path, "/.tasks/_doc/%s", task) < 0)
                goto nomem;
            es_http_once(&s->http, "DELETE", done_path.data, what.data, false);
            if (st.state == ES_TASK_NO_INDEX)
                goto no_index;
            if (st.state == ES_TASK_DONE) {
                cdc_log_info("truncate of %s.%s at lsn %" PRIu64 ": %lld document(s) removed "
                             "from index %s", ev->schema, ev->table, ev->lsn, st.deleted, t->index);
                break;
            }
            snprintf(why, sizeof why, "%s: task %s: %s", what.data, task, st.reason);
        } else {
            snprintf(why, sizeof why, "%s: task %s was lost", what.data, task);
        }
        if (!es_http_retry_wait(&s->http, &attempt, end == TASK_ENDED, why))
            goto stopped;
    }
    goto applied;
no_index:
    cdc_log_info("truncate of %s.%s at lsn %" PRIu64 ": index %s does not exist", ev->schema,
                 ev->table, ev->lsn, t->index);
applied:
    t->truncated = true;
    t->truncate_lsn = ev->lsn;
    s->base.applied++;
    rc = 0;
    goto done;
refused:
    cdc_log_error("%s; retrying cannot succeed: dead-lettering the truncate", why);
    if (sink_reject_record(rec, ES_SINK_NAME, why) < 0)
        goto nomem;
    s->base.rejected++;
    rc = 0;
    goto done;
stopped:
    snprintf(err, errlen, "stop requested during the %s", what.data);
    goto done;
nomem:
    snprintf(err, errlen, "cannot apply the truncate of %s.%s: out of memory", ev->schema,
             ev->table);
done:
    cdc_buf_free(&path);
    cdc_buf_free(&body);
    cdc_buf_free(&what);
    cdc_buf_free(&done_path);
    return rc;
}
