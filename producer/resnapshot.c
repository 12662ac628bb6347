/* resnapshot.c: re-reading tables while streaming (see resnapshot.h).
 *
 * The algorithm is DBLog's watermark algorithm (Andreas Andreakis, Ioannis
 * Papapanagiotou, "DBLog: A Watermark Based Change-Data-Capture
 * Framework", 2020; Debezium's incremental snapshots use it too), with one
 * step added because pgcdc's sinks order a row's versions by LSN rather
 * than by their place in the stream. For each chunk of a table, in primary
 * key order (WHERE (key) > (last key) ORDER BY key LIMIT n):
 *
 *   1. low watermark: pg_logical_emit_message(true, 'pgcdc-watermark',
 *      '<run>:<chunk>:low') in its own transaction;
 *   2. read the chunk (a plain READ COMMITTED query; no lock but the
 *      ordinary ACCESS SHARE of any SELECT) into memory, with the set of
 *      its record keys;
 *   3. high watermark: the same with ':high'; what the function returns is
 *      H, a WAL position after everything the chunk's query could see;
 *   4. N = pg_current_xact_id(), in a transaction of its own begun after
 *      the high watermark, then wait until pg_snapshot_xmin() > N: every
 *      transaction that held a transaction id when H was written has ended;
 *   5. close watermark: the same with ':close'.
 *
 * Meanwhile the stream is read as usual. Between the low and the close
 * watermark (the window), every streamed change of the table strikes its
 * key (and its old key, for an update that changed it) out of the chunk;
 * a truncate empties it. When the close watermark arrives, the chunk rows
 * left are produced as 'r' events with source.lsn = H, inside the close
 * watermark's transaction, before anything streamed after it.
 *
 * Why H keeps every sink's promise that a row's versions only go up:
 * - A row left in the chunk had no change in the window, so its last
 *   change committed before the low watermark: that change's lsn is below
 *   the low watermark's commit, which is below H; the chunk (read after
 *   that commit) holds exactly its result, the row's newest state.
 * - Every change streamed after the close watermark has an lsn above H.
 *   A transaction that wrote a record before H (and so held a transaction
 *   id then) was still running at step 4 or had committed before it: step
 *   4 waits for it, so it commits before the close watermark and its
 *   changes fall in the window (their keys are struck out) or before it.
 *   A transaction that commits after the close watermark therefore got its
 *   id after step 4 began, and wrote every record after H.
 * DBLog emits the chunk at the high watermark, which is enough when sinks
 * apply in stream order; with versions by LSN, a transaction that wrote
 * before the high watermark but committed after it would carry an lsn
 * below the chunk's, and its change would lose in the sinks: step 4 and
 * the close watermark exist for that case. A long transaction only delays
 * the chunk (and is logged); it never blocks streaming or writers.
 *
 * Crash safety: a request from the signal table holds the slot's confirmed
 * position at the signal's transaction (flushpos_hold) until every table
 * of it has been read, so after a crash the slot sends the signal again
 * and the re-snapshot starts over; a --resnapshot request starts over
 * with the next start that carries it. Chunk rows count in the close
 * watermark's transaction, so the position never passes a chunk Kafka has
 * not acknowledged. */
#include "resnapshot.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cdc_clock.h"
#include "cdc_log.h"
#include "cdc_lsn.h"
#include "cdc_metrics.h"
#include "pg_error.h"
#include "snapdb.h"
#include "snaprow.h"
#include "xid_snapshot.h"

#define TOPIC_TIMEOUT_MS 30000
#define POLL_MS 20
#define RETRY_MS 1000
#define LONG_WAIT_MS 30000
#define PROGRESS_LOG_MS 10000

typedef struct request {
    struct request *next;
    char *schema;               /* NULL: any schema */
    char *table;
    bool from_signal;
} request;

typedef enum rs_state {
    RS_IDLE,                    /* no chunk in flight */
    RS_WAIT_XACTS,              /* watermarks low and high written; waiting for step 4 */
    RS_WAIT_CLOSE,              /* close written; waiting for it in the stream */
} rs_state;

struct resnap {
    char *conninfo, *publication, *prefix;
    char *sig_schema, *sig_table;
    long chunk_rows;
    const colpolicy *policy;
    kafka_out *kafka;           /* the producer's, as of the last step */
    flushpos *fp;
    resnap_emit_fn emit;
    void *emit_ctx;
    PGconn *pg;
    bool checked_signal_table;
    int64_t retry_at;

    request *head, *tail;
    bool hold_set;
    /* After resnap_reset: the hold of dropped signal requests stays in the
     * flush position until the new stream brings the signal again (it
     * starts at or before it) or has passed this position without it. */
    uint64_t kept_hold;

    /* The table being read. */
    request *cur;
    snap_table *t;
    char label[600];
    kafka_topic *topic;
    bool have_last;             /* rv.last: the key values of the last row read */
    uint64_t rows, dropped, chunks;
    int64_t started_ms, next_log_ms;

    /* The chunk in flight. */
    rs_state state;
    uint64_t run_id, seq;
    PGresult *chunk;
    bool *gone;                 /* per row: struck out by a streamed change */
    snap_keyset keys;
    bool window_open;
    xid_snapshot chunk_snapshot;   /* which transactions the chunk saw */
    uint64_t high;              /* H */
    char xid[32];               /* N */
    int64_t chunk_ms, wait_since, next_poll;
    bool warned_wait;

    snap_row_builder b;
    cdc_buf value, key, scratch;
    snap_rowvals rv;

    cdc_metric *m_pending, *m_chunks, *m_dropped;
};

static void free_request(request *r)
{
    if (!r)
        return;
    free(r->schema);
    free(r->table);
    free(r);
}

static int enqueue(resnap *rs, const char *name, bool from_signal, bool front)
{
    request *r = calloc(1, sizeof *r);
    if (!r || snap_parse_table_name(name, &r->schema, &r->table) < 0) {
        free_request(r);
        return -1;
    }
    r->from_signal = from_signal;
    if (front) {
        r->next = rs->head;
        rs->head = r;
        if (!rs->tail)
            rs->tail = r;
    } else {
        if (rs->tail)
            rs->tail->next = r;
        else
            rs->head = r;
        rs->tail = r;
    }
    return 0;
}

size_t resnap_pending(const resnap *rs)
{
    size_t n = rs->cur ? 1 : 0;
    for (request *r = rs->head; r; r = r->next)
        n++;
    return n;
}

static void update_pending(resnap *rs)
{
    cdc_gauge_set(rs->m_pending, (double)resnap_pending(rs));
}

int resnap_new(const resnap_settings *set, flushpos *fp, resnap_emit_fn emit, void *emit_ctx,
               resnap **out, char *err, size_t errlen)
{
    resnap *rs = calloc(1, sizeof *rs);
    *out = NULL;
    if (!rs)
        goto oom;
    rs->fp = fp;
    rs->emit = emit;
    rs->emit_ctx = emit_ctx;
    rs->chunk_rows = set->chunk_rows > 0 ? set->chunk_rows : 1;
    rs->policy = set->policy;
    if ((set->conninfo && !(rs->conninfo = strdup(set->conninfo))) ||
        !(rs->publication = strdup(set->publication)) ||
        (set->topic_prefix && !(rs->prefix = strdup(set->topic_prefix))))
        goto oom;
    if (set->signal_table && set->signal_table[0] &&
        snap_parse_table_name(set->signal_table, &rs->sig_schema, &rs->sig_table) < 0) {
        snprintf(err, errlen, "--signal-table \"%s\" is not [SCHEMA.]TABLE", set->signal_table);
        resnap_free(rs);
        return -1;
    }
    for (size_t i = 0; i < set->ntables; i++) {
        if (enqueue(rs, set->tables[i], false, false) < 0) {
            snprintf(err, errlen, "--resnapshot \"%s\" is not [SCHEMA.]TABLE", set->tables[i]);
            resnap_free(rs);
            return -1;
        }
    }
    snap_keyset_init(&rs->keys);
    snap_row_builder_init(&rs->b);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rs->run_id = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    rs->m_pending = cdc_metrics_gauge("pgcdc_producer_resnapshot_tables_pending",
                                      "Tables queued or being read by a re-snapshot.", NULL);
    rs->m_chunks = cdc_metrics_counter("pgcdc_producer_resnapshot_chunks_total",
                                       "Re-snapshot chunks produced.", NULL);
    rs->m_dropped = cdc_metrics_counter("pgcdc_producer_resnapshot_rows_dropped_total",
                                        "Re-snapshot chunk rows left out because a newer change "
                                        "of the row was streamed between the watermarks.", NULL);
    update_pending(rs);
    *out = rs;
    return 0;
oom:
    resnap_free(rs);
    snprintf(err, errlen, "cannot set up re-snapshots: out of memory");
    return -1;
}

static void clear_chunk(resnap *rs)
{
    PQclear(rs->chunk);
    rs->chunk = NULL;
    free(rs->gone);
    rs->gone = NULL;
    snap_keyset_clear(&rs->keys);
    rs->window_open = false;
    xid_snapshot_clear(&rs->chunk_snapshot);
    rs->state = RS_IDLE;
}

static void end_table(resnap *rs)
{
    clear_chunk(rs);
    snap_table_free(rs->t);
    rs->t = NULL;
    free_request(rs->cur);
    rs->cur = NULL;
    rs->have_last = false;
    if (!rs->head && rs->hold_set) {
        flushpos_release(rs->fp);
        rs->hold_set = false;
    }
    update_pending(rs);
}

void resnap_free(resnap *rs)
{
    if (!rs)
        return;
    clear_chunk(rs);
    snap_table_free(rs->t);
    free_request(rs->cur);
    while (rs->head) {
        request *r = rs->head;
        rs->head = r->next;
        free_request(r);
    }
    PQfinish(rs->pg);
    snap_keyset_free(&rs->keys);
    snap_row_builder_free(&rs->b);
    cdc_buf_free(&rs->value);
    cdc_buf_free(&rs->key);
    cdc_buf_free(&rs->scratch);
    snap_rowvals_free(&rs->rv);
    free(rs->conninfo);
    free(rs->publication);
    free(rs->prefix);
    free(rs->sig_schema);
    free(rs->sig_table);
    free(rs);
}

void resnap_reset(resnap *rs)
{
    if (!rs)
        return;
    clear_chunk(rs);
    rs->topic = NULL; /* the Kafka client may be replaced before the next stream */
    if (rs->cur && rs->cur->from_signal) {
        snap_table_free(rs->t);
        rs->t = NULL;
        free_request(rs->cur);
        rs->cur = NULL;
    }
    rs->have_last = false;
    request **pp = &rs->head;
    rs->tail = NULL;
    while (*pp) {
        request *r = *pp;
        if (r->from_signal) {
            *pp = r->next;
            free_request(r);
        } else {
            rs->tail = r;
            pp = &r->next;
        }
    }
    /* Not released: records of transactions after the signal may still be
     * in flight, and their acknowledgements would carry the position past
     * the signal before the new stream has read it again. */
    if (rs->hold_set) {
        rs->kept_hold = rs->fp->hold;
        rs->hold_set = false;
    }
    update_pending(rs);
}

static bool name_matches(const char *want_schema, const char *want_table, const char *schema,
                         const char *table)
{
    return strcmp(want_table, table) == 0 && (!want_schema || strcmp(want_schema, schema) == 0);
}

/* The record key of a change's old row (an update that changed the key). */
static void strike_old_key(resnap *rs, const cdc_row *before)
{
    const snap_table *t = rs->t;
    cdc_column cols[64];
    if (t->nkey > 64)
        return;
    for (size_t k = 0; k < t->nkey; k++) {
        const char *name = t->cols[t->key[k]].name;
        size_t i = 0;
        while (i < before->ncolumns && strcmp(before->columns[i].name, name) != 0)
            i++;
        if (i == before->ncolumns)
            return;
        cols[k] = before->columns[i];
    }
    cdc_row row = {cols, t->nkey};
    char err[128];
    cdc_buf_reset(&rs->scratch);
    size_t idx;
    if (cdc_key_encode(&row, &rs->scratch, err, sizeof err) == 0 &&
        snap_keyset_remove(&rs->keys, rs->scratch.data, rs->scratch.len, &idx)) {
        rs->gone[idx] = true;
        rs->dropped++;
        cdc_counter_add(rs->m_dropped, 1);
    }
}

void resnap_observe_change(resnap *rs, const char *schema, const char *table,
                           const cdc_event *ev, const cdc_row *key, uint64_t final_lsn)
{
    if (!rs)
        return;
    if (rs->kept_hold && final_lsn > rs->kept_hold) {
        /* The stream is past the kept hold and brought no signal before it
         * (the hold is set again at the first one it brings). */
        if (!rs->hold_set)
            flushpos_release(rs->fp);
        rs->kept_hold = 0;
    }
    if (rs->sig_table && ev->op == 'c' && ev->after &&
        name_matches(rs->sig_schema, rs->sig_table, schema, table)) {
        snap_request req;
        char err[300];
        int rc = snap_signal_parse(ev->after, &req, err, sizeof err);
        if (rc < 0)
            cdc_log_warn("ignoring a row of signal table %s.%s: %s", schema, table, err);
        for (size_t i = 0; rc == 1 && i < req.ntables; i++) {
            if (enqueue(rs, req.tables[i], true, false) < 0) {
                cdc_log_warn("ignoring re-snapshot of \"%s\" asked for in signal table %s.%s: "
                             "not [SCHEMA.]TABLE", req.tables[i], schema, table);
                continue;
            }
            cdc_log_info("re-snapshot of %s asked for by a row of %s.%s", req.tables[i], schema,
                         table);
            if (!rs->hold_set) {
                flushpos_hold(rs->fp, final_lsn);
                rs->hold_set = true;
                rs->kept_hold = 0;
            }
        }
        if (rc == 1)
            snap_request_free(&req);
        update_pending(rs);
    }
    /* Inside the window every change of the table strikes its key. Before
     * it (the low watermark not yet seen in the stream) so does a change of
     * a transaction the chunk's snapshot did not see: it committed before
     * the low watermark in the WAL but became visible only after the chunk
     * was read (PostgreSQL ends a transaction in its process array after
     * writing its commit record), so the chunk holds an older row. */
    if (rs->state == RS_IDLE || !rs->chunk || !rs->t ||
        (!rs->window_open && xid_snapshot_saw(&rs->chunk_snapshot, (uint32_t)ev->source.txid)) ||
        strcmp(rs->t->schema, schema) != 0 || strcmp(rs->t->name, table) != 0)
        return;
    if (ev->op == 't') {
        /* Every row read before the truncate is gone. */
        size_t n = (size_t)PQntuples(rs->chunk);
        for (size_t i = 0; i < n; i++) {
            if (!rs->gone[i]) {
                rs->gone[i] = true;
                rs->dropped++;
                cdc_counter_add(rs->m_dropped, 1);
            }
        }
        snap_keyset_clear(&rs->keys);
        return;
    }
    char err[128];
    size_t idx;
    if (key) {
        cdc_buf_reset(&rs->scratch);
        if (cdc_key_encode(key, &rs->scratch, err, sizeof err) == 0 &&
            snap_keyset_remove(&rs->keys, rs->scratch.data, rs->scratch.len, &idx)) {
            rs->gone[idx] = true;
            rs->dropped++;
            cdc_counter_add(rs->m_dropped, 1);
        }
    }
    if (ev->before)
        strike_old_key(rs, ev->before);
}

/* ---- producing a chunk ---------------------------------------------- */

static int emit_chunk(resnap *rs)
{
    const snap_table *t = rs->t;
    int n = PQntuples(rs->chunk);
    cdc_source src = {
        .lsn = rs->high,
        .commit_lsn = rs->high,
        .ts_ms = rs->chunk_ms,
    };
    uint64_t produced = 0;
    for (int i = 0; i < n; i++) {
        if (rs->gone[i])
            continue;
        char err[600];
        snapdb_row_values(rs->chunk, i, t, &rs->rv);
        if (snap_row_encode(&rs->b, t, rs->rv.vals, rs->rv.lens, &src, cdc_clock_wall_ms(),
                            &rs->value, &rs->key, err, sizeof err) < 0) {
            cdc_log_error("re-snapshot of %s: %s; row left out", rs->label, err);
            continue;
        }
        if (rs->emit(rs->emit_ctx, rs->topic, &rs->key, &rs->value, rs->high) < 0)
            return -1;
        produced++;
    }
    rs->rows += produced;
    rs->chunks++;
    cdc_counter_add(rs->m_chunks, 1);
    cdc_buf labels = CDC_BUF_INIT;
    cdc_metrics_label(&labels, "table", rs->label);
    cdc_counter_add(cdc_metrics_counter("pgcdc_producer_resnapshot_rows_total",
                                        "Rows produced by re-snapshots, per table.", labels.data),
                    produced);
    cdc_buf_free(&labels);
    /* The next chunk starts after the last key read, struck out or not. */
    if (n > 0) {
        snapdb_row_values(rs->chunk, n - 1, t, &rs->rv);
        if (snap_rowvals_keep_last(&rs->rv, t) < 0) {
            cdc_log_error("re-snapshot of %s: out of memory", rs->label);
            return -1;
        }
        rs->have_last = true;
    }
    bool done = n < rs->chunk_rows;
    clear_chunk(rs);
    int64_t now = cdc_clock_mono_ms();
    if (done) {
        cdc_log_info("re-snapshot of %s done: %" PRIu64 " rows in %" PRIu64 " chunks, %" PRIu64
                     " left out for a newer streamed change, %.1f s", rs->label, rs->rows,
                     rs->chunks, rs->dropped, (double)(now - rs->started_ms) / 1000.0);
        end_table(rs);
    } else if (now >= rs->next_log_ms) {
        cdc_log_info("re-snapshot of %s: %" PRIu64 " rows so far", rs->label, rs->rows);
        rs->next_log_ms = now + PROGRESS_LOG_MS;
    }
    return 0;
}

int resnap_on_message(resnap *rs, const char *prefix, const char *content, size_t len)
{
    if (!rs || strcmp(prefix, RESNAP_WATERMARK_PREFIX) != 0 || rs->state == RS_IDLE)
        return 0;
    char text[96];
    if (len >= sizeof text)
        return 0;
    memcpy(text, content, len);
    text[len] = '\0';
    unsigned long long run, seq;
    char kind[8];
    if (sscanf(text, "%16llx:%llu:%7s", &run, &seq, kind) != 3 || run != rs->run_id ||
        seq != rs->seq)
        return 0; /* an earlier run's or an abandoned chunk's */
    if (strcmp(kind, "low") == 0) {
        rs->window_open = true;
        return 0;
    }
    if (strcmp(kind, "close") != 0 || rs->state != RS_WAIT_CLOSE)
        return 0;
    return emit_chunk(rs);
}

/* ---- stepping ------------------------------------------------------- */

static int watermark(resnap *rs, const char *kind, uint64_t *lsn, char *err, size_t errlen)
{
    char content[80];
    snprintf(content, sizeof content, "%016" PRIx64 ":%" PRIu64 ":%s", rs->run_id, rs->seq, kind);
    return snapdb_emit_message(rs->pg, true, RESNAP_WATERMARK_PREFIX, content, lsn, err, errlen);
}

/* Describes the table again (every chunk, so a column added meanwhile is
 * read), its types and topic. Returns 1, 0 when the table has left the
 * publication, -1 on error. */
static int describe(resnap *rs, pgvalue_resolve_fn resolve, void *resolve_ctx, char *err,
                    size_t errlen)
{
    snap_table **tables;
    int n = snapdb_publication_tables(rs->pg, rs->publication, rs->cur->schema, rs->cur->table,
                                      &tables, err, errlen);
    if (n <= 0)
        return n;
    /* A bare name in several schemas: the others are queued in front. */
    for (int i = n - 1; i >= 1; i--) {
        char name[1200];
        snprintf(name, sizeof name, "%s.%s", tables[i]->schema, tables[i]->name);
        if (!rs->cur->schema && enqueue(rs, name, rs->cur->from_signal, true) < 0) {
            snapdb_free_tables(tables, (size_t)n);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (!rs->cur->schema) {
        rs->cur->schema = strdup(tables[0]->schema);
        if (!rs->cur->schema) {
            snapdb_free_tables(tables, (size_t)n);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    snap_table *t = tables[0];
    tables[0] = NULL;
    snapdb_free_tables(tables, (size_t)n);
    if (snapdb_resolve_types(t, resolve, resolve_ctx, err, errlen) < 0 ||
        snap_table_apply_policy(t, rs->policy, err, errlen) < 0 ||
        snap_rowvals_reserve(&rs->rv, t->ncols + t->nkey + 1) < 0) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        snap_table_free(t);
        return -1;
    }
    if (rs->t && rs->t->nkey != t->nkey) {
        snprintf(err, errlen, "the key of %s changed during its re-snapshot", rs->label);
        snap_table_free(t);
        return -1;
    }
    snap_table_free(rs->t);
    rs->t = t;
    snprintf(rs->label, sizeof rs->label, "%s.%s", t->schema, t->name);
    if (!rs->topic) {
        cdc_buf topic = CDC_BUF_INIT;
        bool renamed;
        int rc = cdc_topic_name(rs->prefix, t->schema, t->name, &topic, &renamed);
        if (rc == 0)
            rc = kafka_out_topic(rs->kafka, topic.data, TOPIC_TIMEOUT_MS, &rs->topic, err, errlen);
        else
            snprintf(err, errlen, "out of memory");
        cdc_buf_free(&topic);
        if (rc < 0)
            return -1;
    }
    return 1;
}

/* Steps 1 to 4 of the algorithm for the next chunk. */
static int start_chunk(resnap *rs, pgvalue_resolve_fn resolve, void *resolve_ctx, char *err,
                       size_t errlen)
{
    int d = describe(rs, resolve, resolve_ctx, err, errlen);
    if (d < 0)
        return -1;
    if (d == 0) {
        cdc_log_warn("re-snapshot of %s%s%s skipped: no such table in publication %s",
                     rs->cur->schema ? rs->cur->schema : "", rs->cur->schema ? "." : "",
                     rs->cur->table, rs->publication);
        end_table(rs);
        return 0;
    }
    const snap_table *t = rs->t;
    if (t->nkey == 0) {
        cdc_log_warn("re-snapshot of %s skipped: the table has no primary key or replica "
                     "identity index, so a chunk row cannot be told apart from a newer change",
                     rs->label);
        end_table(rs);
        return 0;
    }
    if (rs->chunks == 0 && !rs->have_last) {
        rs->started_ms = rs->next_log_ms = cdc_clock_mono_ms();
        rs->next_log_ms += PROGRESS_LOG_MS;
        cdc_log_info("re-snapshot of %s: reading it again in chunks of %ld rows", rs->label,
                     rs->chunk_rows);
    }
    rs->seq++;
    if (watermark(rs, "low", NULL, err, errlen) < 0)
        return -1;
    cdc_buf sql = CDC_BUF_INIT;
    if (snap_sql_chunk(t, rs->have_last ? SNAP_FROM_EXCL : SNAP_FROM_START, false,
                       rs->chunk_rows, &sql) < 0) {
        cdc_buf_free(&sql);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *params[64];
    Oid types[64];
    int np = 0;
    for (size_t k = 0; rs->have_last && k < t->nkey && k < 64; k++) {
        types[np] = t->cols[t->key[k]].type_oid;
        params[np++] = snap_rowvals_last(&rs->rv, k);
    }
    rs->chunk_ms = cdc_clock_wall_ms();
    /* The chunk and the snapshot it is read with, in one transaction. */
    PGresult *snap = PQexec(rs->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    bool began = PQresultStatus(snap) == PGRES_COMMAND_OK;
    PQclear(snap);
    snap = began ? PQexec(rs->pg, "SELECT pg_current_snapshot()::text") : NULL;
    bool snapped = PQresultStatus(snap) == PGRES_TUPLES_OK && PQntuples(snap) == 1;
    char parse_err[160] = "";
    if (snapped && xid_snapshot_parse(&rs->chunk_snapshot, PQgetvalue(snap, 0, 0), parse_err,
                                      sizeof parse_err) != 0)
        snapped = false;
    PQclear(snap);
    rs->chunk = snapped ? PQexecParams(rs->pg, sql.data, np, types, params, NULL, NULL, 0)
                        : NULL;
    cdc_buf_free(&sql);
    if (PQresultStatus(rs->chunk) != PGRES_TUPLES_OK) {
        char what[700];
        snprintf(what, sizeof what, "cannot read a chunk of %s%s%s", rs->label,
                 parse_err[0] ? ": pg_current_snapshot(): " : "", parse_err);
        if (parse_err[0])
            snprintf(err, errlen, "%s", what);
        else
            pg_error_format(rs->pg, what, err, errlen);
        if (began)
            PQclear(PQexec(rs->pg, "ROLLBACK"));
        clear_chunk(rs);
        return -1;
    }
    PGresult *end = PQexec(rs->pg, "COMMIT");
    bool committed = PQresultStatus(end) == PGRES_COMMAND_OK;
    PQclear(end);
    if (!committed) {
        pg_error_format(rs->pg, "cannot end the transaction of a chunk", err, errlen);
        clear_chunk(rs);
        return -1;
    }
    int n = PQntuples(rs->chunk);
    if ((size_t)PQnfields(rs->chunk) != (t->ncols ? t->ncols : 1) ||
        (n > 0 && !(rs->gone = calloc((size_t)n, sizeof *rs->gone)))) {
        snprintf(err, errlen, "cannot hold a chunk of %s", rs->label);
        clear_chunk(rs);
        return -1;
    }
    cdc_source src = {0};
    for (int i = 0; i < n; i++) {
        snapdb_row_values(rs->chunk, i, t, &rs->rv);
        if (snap_row_encode(&rs->b, t, rs->rv.vals, rs->rv.lens, &src, 0, NULL, &rs->key, err,
                            errlen) < 0 ||
            snap_keyset_add(&rs->keys, rs->key.data, rs->key.len, (size_t)i) < 0) {
            clear_chunk(rs);
            return -1;
        }
    }
    if (watermark(rs, "high", &rs->high, err, errlen) < 0) {
        clear_chunk(rs);
        return -1;
    }
    PGresult *res = PQexec(rs->pg, "SELECT pg_current_xact_id()::text");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_error_format(rs->pg, "cannot read the current transaction id", err, errlen);
        PQclear(res);
        clear_chunk(rs);
        return -1;
    }
    snprintf(rs->xid, sizeof rs->xid, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    rs->state = RS_WAIT_XACTS;
    rs->wait_since = rs->next_poll = cdc_clock_mono_ms();
    rs->warned_wait = false;
    return 0;
}

/* Step 4's wait, then step 5. */
static int check_xacts(resnap *rs, char *err, size_t errlen)
{
    const char *params[] = {rs->xid};
    PGresult *res = PQexecParams(rs->pg, "SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_error_format(rs->pg, "cannot read the oldest running transaction", err, errlen);
        PQclear(res);
        return -1;
    }
    bool ended = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    int64_t now = cdc_clock_mono_ms();
    if (!ended) {
        if (!rs->warned_wait && now - rs->wait_since > LONG_WAIT_MS) {
            cdc_log_warn("re-snapshot of %s waits for transactions older than id %s to end "
                         "(a long transaction delays the re-snapshot, not the stream)",
                         rs->label, rs->xid);
            rs->warned_wait = true;
        }
        rs->next_poll = now + POLL_MS;
        return 0;
    }
    if (watermark(rs, "close", NULL, err, errlen) < 0)
        return -1;
    rs->state = RS_WAIT_CLOSE;
    return 0;
}

void resnap_step(resnap *rs, kafka_out *kafka, pgvalue_resolve_fn resolve, void *resolve_ctx)
{
    if (!rs || (!rs->cur && !rs->head) || rs->state == RS_WAIT_CLOSE)
        return;
    rs->kafka = kafka;
    int64_t now = cdc_clock_mono_ms();
    if (now < rs->retry_at || (rs->state == RS_WAIT_XACTS && now < rs->next_poll))
        return;
    char err[1024] = "";
    if (!rs->pg && snapdb_connect(rs->conninfo, "pgcdc-producer-resnapshot", &rs->pg, err,
                                  sizeof err) < 0)
        goto fail;
    if (!rs->checked_signal_table && rs->sig_table) {
        snap_table **tables;
        int n = snapdb_publication_tables(rs->pg, rs->publication, rs->sig_schema, rs->sig_table,
                                          &tables, err, sizeof err);
        if (n < 0)
            goto fail;
        snapdb_free_tables(tables, (size_t)n);
        if (n == 0)
            cdc_log_warn("signal table %s%s%s is not in publication %s: its rows cannot reach "
                         "the producer", rs->sig_schema ? rs->sig_schema : "",
                         rs->sig_schema ? "." : "", rs->sig_table, rs->publication);
        rs->checked_signal_table = true;
    }
    if (rs->state == RS_IDLE) {
        if (!rs->cur) {
            rs->cur = rs->head;
            rs->head = rs->cur->next;
            if (!rs->head)
                rs->tail = NULL;
            rs->cur->next = NULL;
            rs->have_last = false;
            rs->rows = rs->dropped = rs->chunks = 0;
            rs->topic = NULL;
            snap_table_free(rs->t);
            rs->t = NULL;
            update_pending(rs);
        }
        if (start_chunk(rs, resolve, resolve_ctx, err, sizeof err) < 0)
            goto fail;
        return;
    }
    if (check_xacts(rs, err, sizeof err) < 0)
        goto fail;
    return;
fail:
    /* The chunk is read again from its low watermark; the stream goes on. */
    cdc_log_warn("re-snapshot%s%s: %s; retrying in %d ms", rs->t ? " of " : "",
                 rs->t ? rs->label : "", err, RETRY_MS);
    clear_chunk(rs);
    if (rs->pg && PQstatus(rs->pg) != CONNECTION_OK) {
        PQfinish(rs->pg);
        rs->pg = NULL;
    }
    rs->retry_at = cdc_clock_mono_ms() + RETRY_MS;
}
