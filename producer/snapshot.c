/* snapshot.c: the initial snapshot (see snapshot.h).
 *
 * Versions. Every snapshot row carries source.lsn = P, the position the
 * stream resumes from: the slot's consistent point when this producer has
 * just created it, its confirmed position otherwise. The snapshot itself is
 * taken at some later moment T, after waiting until every transaction that
 * held a transaction id once P was set has ended (wait_for_writers), and
 * streaming from P starts only once every snapshot record has been handed
 * to Kafka. For each row, then:
 * - a streamed change of a transaction that committed before T is already
 *   in the snapshot row; if its lsn is below P (a transaction that was
 *   writing when P was set, and committed after it: logical decoding
 *   streams it whole, at its commit) it loses to the row, harmlessly;
 *   otherwise it replays, in order, a state the stream then carries on to
 *   the newest one;
 * - a transaction that commits after T got its id after P was set (the
 *   wait saw all the older ones end), so every change it streams has an lsn
 *   above P and wins, in order.
 * So version-applying sinks end at the newest state, and so does a reader
 * that applies each partition in order (a log-compacted topic), since a
 * row's 'r' event comes before all of its streamed changes. What the
 * slot's exported snapshot (CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT)
 * would give, the database exactly at the consistent point, is not used
 * on a primary: a transaction in progress at that point is invisible to
 * it, yet may stream changes with an lsn below it, which snapshot rows
 * versioned P would beat. On a standby, where the wait cannot be done, it
 * is used with rows versioned below the slot's restart_lsn instead
 * (standby_version).
 *
 * Crash safety. The slot's confirmed position stays at P while the
 * snapshot runs, because streaming (and so any status update) only begins
 * after it. A physical slot "<slot>_snapshot_pending", reserving no WAL,
 * marks the snapshot as unfinished: it is made before the logical slot and
 * dropped only once Kafka has acknowledged every snapshot record. A start
 * that finds the marker reads every table again (never trusting a partial
 * run), in the same way, then streams from P. Nothing made meanwhile is
 * lost, and repeats are harmless to sinks that apply by version.
 * --snapshot always does the same on every start.
 *
 * Parallelism. Each table is read in primary-key order in chunks of
 * --snapshot-chunk-rows (keyset pagination: WHERE (key) > (last) ORDER BY
 * key LIMIT n), rows fetched one at a time (libpq single-row mode), so
 * memory is bounded by one row and librdkafka's queue whatever the table
 * size. With several workers a large table is split into key ranges at
 * boundaries drawn from a TABLESAMPLE of its keys; workers take ranges from
 * a shared list and produce straight to librdkafka (thread-safe); delivery
 * reports are served by the main thread, which also reports progress. */
#include "snapshot.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cdc_buf.h"
#include "cdc_clock.h"
#include "cdc_event.h"
#include "cdc_log.h"
#include "cdc_lsn.h"
#include "cdc_metrics.h"
#include "cdc_signal.h"
#include "pg_error.h"
#include "snapdb.h"
#include "snaprow.h"

#define TOPIC_TIMEOUT_MS 30000
#define LOG_EVERY_MS 5000
#define TTY_EVERY_MS 500
#define SEGMENTS_PER_WORKER 4
#define SAMPLE_ROWS_PER_SEGMENT 200

struct snapshot {
    snapshot_settings set;
    bool done_once;             /* `always` snapshots once per process */
    bool warned_never;
    char token;                 /* its address is the opaque of every snapshot record */
    _Atomic uint64_t produced;  /* records handed to librdkafka (workers) */
    uint64_t acked;             /* delivery reports (main thread only) */
    uint64_t refused;
    char refuse_err[768];
    cdc_metric *m_running, *m_rows_total;
};

typedef struct table_progress {
    snap_table *t;
    char label[600];            /* schema.table */
    double est;                 /* estimated rows */
    _Atomic uint64_t rows;
    atomic_int segments_left;
    bool reported_done;
    cdc_metric *m_rows, *m_est;
} table_progress;

/* A key range [lo, hi) of one table; NULL bounds are open. */
typedef struct segment {
    table_progress *tp;
    char **lo;
    char **hi;
} segment;

typedef struct run run;

typedef struct worker {
    run *r;
    PGconn *pg;
    pthread_t thread;
    bool started;
    snap_row_builder b;
    cdc_buf value, key, sql;
    snap_rowvals rv;            /* the row read, and the key values of the last one */
} worker;

struct run {
    snapshot *s;
    kafka_out *kafka;
    const char *dbname;
    uint64_t lsn;               /* the version of every row */
    int64_t ts_ms;              /* when the snapshot was taken */
    long chunk_rows;
    snap_table **tables;
    size_t ntables;
    table_progress *progress;
    segment *segs;
    size_t nsegs;
    size_t segcap;
    atomic_size_t next_seg;
    worker *workers;
    int nworkers;
    atomic_int running;
    atomic_bool abort;
    pthread_mutex_t mu;
    bool failed;                /* under mu */
    char err[1024];             /* under mu: the first failure */
};

static void run_fail(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void run_fail(run *r, const char *fmt, ...)
{
    pthread_mutex_lock(&r->mu);
    if (!r->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, sizeof r->err, fmt, ap);
        va_end(ap);
        r->failed = true;
    }
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->abort, true);
}

int snapshot_new(const snapshot_settings *set, snapshot **out, char *err, size_t errlen)
{
    *out = calloc(1, sizeof **out);
    if (!*out) {
        snprintf(err, errlen, "cannot set up the snapshot: out of memory");
        return -1;
    }
    (*out)->set = *set;
    if ((*out)->set.workers < 1)
        (*out)->set.workers = 1;
    if ((*out)->set.chunk_rows < 1)
        (*out)->set.chunk_rows = 1;
    (*out)->m_running = cdc_metrics_gauge("pgcdc_producer_snapshot_running",
                                          "1 while an initial snapshot is being read.", NULL);
    (*out)->m_rows_total = cdc_metrics_counter("pgcdc_producer_snapshot_rows_total",
                                               "Rows produced by initial snapshots.", NULL);
    return 0;
}

void snapshot_free(snapshot *s)
{
    free(s);
}

bool snapshot_on_delivered(snapshot *s, const rd_kafka_message_t *m)
{
    if (!s || m->_private != &s->token)
        return false;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        s->acked++;
        return true;
    }
    if (s->refused++ == 0)
        snprintf(s->refuse_err, sizeof s->refuse_err,
                 "Kafka refused a snapshot record of topic %s, key %.*s: %s",
                 rd_kafka_topic_name(m->rkt), m->key ? (int)(m->key_len > 200 ? 200 : m->key_len) : 4,
                 m->key ? (const char *)m->key : "null", rd_kafka_err2str(m->err));
    return true;
}

/* ---- workers -------------------------------------------------------- */

static int emit_row(worker *w, table_progress *tp, PGresult *res, char *err, size_t errlen)
{
    run *r = w->r;
    const snap_table *t = tp->t;
    if ((size_t)PQnfields(res) != (t->ncols ? t->ncols : 1)) {
        snprintf(err, errlen, "snapshot query of %s returned %d columns, expected %zu",
                 tp->label, PQnfields(res), t->ncols);
        return -1;
    }
    snapdb_row_values(res, 0, t, &w->rv);
    cdc_source src = {
        .db = r->dbname,
        .lsn = r->lsn,
        .commit_lsn = r->lsn,
        .ts_ms = r->ts_ms,
    };
    if (snap_row_encode(&w->b, t, w->rv.vals, w->rv.lens, &src, cdc_clock_wall_ms(), &w->value,
                        &w->key, err, errlen) < 0)
        return -1;
    bool keyed = t->nkey > 0;
    for (;;) {
        rd_kafka_resp_err_t e = kafka_out_produce(r->kafka, t->topic, RD_KAFKA_PARTITION_UA,
                                                  keyed ? w->key.data : NULL,
                                                  keyed ? w->key.len : 0, w->value.data,
                                                  w->value.len, r->lsn, &r->s->token);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            snprintf(err, errlen, "cannot produce a snapshot row of %s (key %s): %s", tp->label,
                     keyed ? w->key.data : "null", rd_kafka_err2str(e));
            return -1;
        }
        if (atomic_load(&r->abort))
            return -1;
        /* The main thread serves delivery reports; wait for room. */
        struct timespec pause = {0, 2 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    atomic_fetch_add(&r->s->produced, 1);
    atomic_fetch_add(&tp->rows, 1);
    return 0;
}

static int read_segment(worker *w, segment *sg, char *err, size_t errlen)
{
    run *r = w->r;
    table_progress *tp = sg->tp;
    const snap_table *t = tp->t;
    bool keyed = t->nkey > 0;
    if (snap_rowvals_reserve(&w->rv, t->ncols + 2 * t->nkey + 1) < 0)
        goto oom;
    const char **params = calloc(2 * t->nkey + 1, sizeof *params);
    Oid *types = calloc(2 * t->nkey + 1, sizeof *types);
    int rc = -1;
    if (!params || !types) {
        free(params);
        free(types);
        goto oom;
    }
    snap_lower lower = sg->lo ? SNAP_FROM_INCL : SNAP_FROM_START;
    for (;;) {
        cdc_buf_reset(&w->sql);
        if (snap_sql_chunk(t, lower, sg->hi != NULL, keyed ? r->chunk_rows : 0, &w->sql) < 0) {
            snprintf(err, errlen, "cannot build the snapshot query of %s: out of memory", tp->label);
            goto done;
        }
        int np = 0;
        for (size_t k = 0; keyed && lower != SNAP_FROM_START && k < t->nkey; k++) {
            types[np] = t->cols[t->key[k]].type_oid;
            params[np++] = lower == SNAP_FROM_INCL ? sg->lo[k] : snap_rowvals_last(&w->rv, k);
        }
        for (size_t k = 0; keyed && sg->hi && k < t->nkey; k++) {
            types[np] = t->cols[t->key[k]].type_oid;
            params[np++] = sg->hi[k];
        }
        if (!PQsendQueryParams(w->pg, w->sql.data, np, types, params, NULL, NULL, 0) ||
            !PQsetSingleRowMode(w->pg)) {
            char what[700];
            snprintf(what, sizeof what, "cannot read %s", tp->label);
            pg_error_format(w->pg, what, err, errlen);
            goto done;
        }
        long n = 0;
        int qrc = 0;
        bool cancelled = false;
        PGresult *res;
        /* Every result is drained, even after a failure, so the
         * connection stays usable. */
        while ((res = PQgetResult(w->pg))) {
            ExecStatusType st = PQresultStatus(res);
            if (st == PGRES_SINGLE_TUPLE) {
                n++;
                /* The row just read is where the next chunk starts. */
                if (qrc == 0 && (emit_row(w, tp, res, err, errlen) < 0 ||
                                 (keyed && snap_rowvals_keep_last(&w->rv, t) < 0)))
                    qrc = -1;
                if ((qrc < 0 || atomic_load(&r->abort)) && !cancelled) {
                    PQrequestCancel(w->pg);
                    cancelled = true;
                }
            } else if (st != PGRES_TUPLES_OK && qrc == 0) {
                char what[700];
                snprintf(what, sizeof what, "cannot read %s", tp->label);
                pg_error_format(w->pg, what, err, errlen);
                qrc = -1;
            }
            PQclear(res);
        }
        if (qrc < 0 || atomic_load(&r->abort)) {
            if (qrc == 0)
                snprintf(err, errlen, "snapshot stopped");
            goto done;
        }
        if (!keyed || n < r->chunk_rows)
            break;
        lower = SNAP_FROM_EXCL;
    }
    rc = 0;
done:
    free(params);
    free(types);
    return rc;
oom:
    snprintf(err, errlen, "cannot read %s: out of memory", tp->label);
    return -1;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    run *r = w->r;
    char err[1024];
    while (!atomic_load(&r->abort)) {
        size_t i = atomic_fetch_add(&r->next_seg, 1);
        if (i >= r->nsegs)
            break;
        segment *sg = &r->segs[i];
        if (read_segment(w, sg, err, sizeof err) < 0) {
            if (!atomic_load(&r->abort))
                run_fail(r, "%s", err);
            break;
        }
        atomic_fetch_sub(&sg->tp->segments_left, 1);
    }
    atomic_fetch_sub(&r->running, 1);
    return NULL;
}

/* ---- planning ------------------------------------------------------- */

static int add_segment(run *r, table_progress *tp, char **lo, char **hi)
{
    if (r->nsegs == r->segcap) {
        size_t cap = r->segcap ? r->segcap * 2 : 16;
        segment *s = realloc(r->segs, cap * sizeof *s);
        if (!s)
            return -1;
        r->segs = s;
        r->segcap = cap;
    }
    r->segs[r->nsegs++] = (segment){tp, lo, hi};
    atomic_fetch_add(&tp->segments_left, 1);
    return 0;
}

static char **copy_key(PGresult *res, int row, size_t nkey)
{
    char **k = calloc(nkey, sizeof *k);
    for (size_t i = 0; k && i < nkey; i++) {
        if (!(k[i] = strdup(PQgetvalue(res, row, (int)i)))) {
            for (size_t j = 0; j < i; j++)
                free(k[j]);
            free(k);
            return NULL;
        }
    }
    return k;
}

static void free_key(char **k, size_t nkey)
{
    if (!k)
        return;
    for (size_t i = 0; i < nkey; i++)
        free(k[i]);
    free(k);
}

/* The planner's estimate for a table never analyzed (reltuples -1). */
static double explain_rows(PGconn *pg, const snap_table *t)
{
    cdc_buf q = CDC_BUF_INIT;
    cdc_buf_puts(&q, t->with_children ? "EXPLAIN (FORMAT JSON) SELECT 1 FROM "
                                      : "EXPLAIN (FORMAT JSON) SELECT 1 FROM ONLY ");
    snap_sql_ident(&q, t->schema);
    cdc_buf_putc(&q, '.');
    snap_sql_ident(&q, t->name);
    double rows = -1;
    PGresult *res = q.data ? PQexec(pg, q.data) : NULL;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        const char *at = strstr(PQgetvalue(res, 0, 0), "\"Plan Rows\":");
        if (at)
            rows = strtod(at + strlen("\"Plan Rows\":"), NULL);
    }
    PQclear(res);
    cdc_buf_free(&q);
    return rows;
}

/* Splits a large keyed table into key ranges for the workers at
 * boundaries drawn from a sample of its keys: ranges of about equal row
 * counts, whatever the key type or its distribution. */
static int plan_table(run *r, PGconn *pg, table_progress *tp, int workers, char *err,
                      size_t errlen)
{
    const snap_table *t = tp->t;
    int nseg = 1;
    if (t->nkey > 0 && workers > 1 && tp->est > 2.0 * (double)r->chunk_rows) {
        nseg = workers * SEGMENTS_PER_WORKER;
        if (tp->est / (double)r->chunk_rows < nseg)
            nseg = (int)(tp->est / (double)r->chunk_rows);
        if (nseg < 2)
            nseg = 2;
    }
    if (nseg == 1)
        return add_segment(r, tp, NULL, NULL) < 0 ? (snprintf(err, errlen, "out of memory"), -1) : 0;
    cdc_buf q = CDC_BUF_INIT;
    double pct = 100.0 * nseg * SAMPLE_ROWS_PER_SEGMENT / tp->est;
    if (snap_sql_sample(t, pct, &q) < 0) {
        cdc_buf_free(&q);
        snprintf(err, errlen, "cannot sample %s: out of memory", tp->label);
        return -1;
    }
    PGresult *res = PQexec(pg, q.data);
    cdc_buf_free(&q);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char what[700];
        snprintf(what, sizeof what, "cannot sample the keys of %s", tp->label);
        pg_error_format(pg, what, err, errlen);
        PQclear(res);
        return -1;
    }
    int rows = PQntuples(res);
    char **prev = NULL;
    int prev_idx = -1;
    int rc = 0;
    for (int k = 1; k < nseg && rc == 0; k++) {
        int idx = (int)((long)k * rows / nseg);
        if (idx >= rows || idx == prev_idx)
            continue;
        char **b = copy_key(res, idx, t->nkey);
        if (!b || add_segment(r, tp, prev, b) < 0) {
            free_key(b, t->nkey);
            rc = -1;
            break;
        }
        prev = b;
        prev_idx = idx;
    }
    /* The last range is open; its lower bound is owned by the range before. */
    if (rc == 0 && add_segment(r, tp, prev ? copy_key(res, prev_idx, t->nkey) : NULL, NULL) < 0)
        rc = -1;
    PQclear(res);
    if (rc < 0)
        snprintf(err, errlen, "cannot split %s: out of memory", tp->label);
    return rc;
}

/* ---- one run -------------------------------------------------------- */

static void run_free(run *r)
{
    atomic_store(&r->abort, true);
    for (int i = 0; i < r->nworkers; i++) {
        worker *w = &r->workers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
        PQfinish(w->pg);
        snap_row_builder_free(&w->b);
        cdc_buf_free(&w->value);
        cdc_buf_free(&w->key);
        cdc_buf_free(&w->sql);
        snap_rowvals_free(&w->rv);
    }
    free(r->workers);
    /* Each range owns its upper bound; the lower bound of the first range
     * is NULL and that of the last one a copy. */
    for (size_t i = 0; i < r->nsegs; i++) {
        size_t nkey = r->segs[i].tp->t->nkey;
        free_key(r->segs[i].hi, nkey);
        if (!r->segs[i].hi)
            free_key(r->segs[i].lo, nkey);
    }
    free(r->segs);
    free(r->progress);
    snapdb_free_tables(r->tables, r->ntables);
    pthread_mutex_destroy(&r->mu);
}

static int begin_snapshot(PGconn *pg, const char *snapname, char *err, size_t errlen)
{
    PGresult *res = PQexec(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (ok && snapname) {
        char *lit = PQescapeLiteral(pg, snapname, strlen(snapname));
        cdc_buf q = CDC_BUF_INIT;
        if (lit && cdc_buf_printf(&q, "SET TRANSACTION SNAPSHOT %s", lit) == 0) {
            res = PQexec(pg, q.data);
            ok = PQresultStatus(res) == PGRES_COMMAND_OK;
            PQclear(res);
        } else {
            ok = false;
        }
        PQfreemem(lit);
        cdc_buf_free(&q);
    }
    if (!ok)
        pg_error_format(pg, "cannot import the snapshot", err, errlen);
    return ok ? 0 : -1;
}

static int cmp_est(const void *a, const void *b)
{
    const table_progress *x = a, *y = b;
    return x->est < y->est ? 1 : x->est > y->est ? -1 : 0;
}

static void progress_text(run *r, cdc_buf *out, int64_t elapsed_ms, bool brief)
{
    uint64_t done = 0;
    double est = 0;
    size_t tables_done = 0;
    for (size_t i = 0; i < r->ntables; i++) {
        table_progress *tp = &r->progress[i];
        uint64_t n = atomic_load(&tp->rows);
        done += n;
        est += tp->est > (double)n ? tp->est : (double)n;
        if (atomic_load(&tp->segments_left) == 0)
            tables_done++;
    }
    double pct = est > 0 ? 100.0 * (double)done / est : 100.0;
    if (pct > 99.9 && tables_done < r->ntables)
        pct = 99.9;
    double rate = elapsed_ms > 0 ? (double)done * 1000.0 / (double)elapsed_ms : 0;
    cdc_buf_printf(out, "snapshot: %" PRIu64 " of ~%.0f rows (%.1f%%), %.0f rows/s, %zu of %zu tables done",
                   done, est, pct, rate, tables_done, r->ntables);
    if (brief)
        return;
    for (size_t i = 0; i < r->ntables; i++) {
        table_progress *tp = &r->progress[i];
        uint64_t n = atomic_load(&tp->rows);
        if (n == 0 || atomic_load(&tp->segments_left) == 0)
            continue;
        cdc_buf_printf(out, "; %s %" PRIu64 " of ~%.0f", tp->label, n, tp->est);
    }
}

/* Serves delivery reports and reports progress until the workers are done
 * and Kafka has acknowledged every record, or something failed. */
static void wait_run(run *r)
{
    snapshot *s = r->s;
    int64_t start = cdc_clock_mono_ms();
    int64_t next_log = start + LOG_EVERY_MS, next_tty = start + TTY_EVERY_MS;
    bool tty = isatty(STDERR_FILENO) == 1;
    uint64_t counted = 0;
    cdc_buf line = CDC_BUF_INIT;
    for (;;) {
        kafka_out_poll(r->kafka, 50);
        if (cdc_signal_stop_requested())
            run_fail(r, "the initial snapshot was interrupted by a stop request");
        if (s->refused)
            run_fail(r, "%s", s->refuse_err);
        char ferr[512];
        if (kafka_out_fatal(r->kafka, ferr, sizeof ferr) != RD_KAFKA_RESP_ERR_NO_ERROR)
            run_fail(r, "the Kafka producer failed: %s", ferr);
        bool workers_done = atomic_load(&r->running) == 0;
        bool finished = workers_done && (atomic_load(&r->abort) ||
                                         s->acked + s->refused >= atomic_load(&s->produced));
        cdc_metrics_progress();
        uint64_t total = 0;
        for (size_t i = 0; i < r->ntables; i++) {
            table_progress *tp = &r->progress[i];
            uint64_t n = atomic_load(&tp->rows);
            total += n;
            cdc_gauge_set(tp->m_rows, (double)n);
            if (!tp->reported_done && atomic_load(&tp->segments_left) == 0) {
                tp->reported_done = true;
                if (tty)
                    fputs("\r\033[K", stderr);
                cdc_log_info("snapshot of %s read: %" PRIu64 " rows", tp->label, n);
            }
        }
        cdc_counter_add(s->m_rows_total, total - counted);
        counted = total;
        /* After the tables read are reported: the last one may end in the
         * same turn as the workers (its line was once never written). */
        if (finished)
            break;
        int64_t now = cdc_clock_mono_ms();
        if (now >= next_log) {
            cdc_buf_reset(&line);
            progress_text(r, &line, now - start, false);
            if (tty)
                fputs("\r\033[K", stderr);
            if (line.data)
                cdc_log_info("%s", line.data);
            next_log = now + LOG_EVERY_MS;
        }
        if (tty && now >= next_tty) {
            cdc_buf_reset(&line);
            progress_text(r, &line, now - start, true);
            if (line.data)
                fprintf(stderr, "\r\033[K%s", line.data);
            fflush(stderr);
            next_tty = now + TTY_EVERY_MS;
        }
    }
    uint64_t total = 0;
    for (size_t i = 0; i < r->ntables; i++) {
        total += atomic_load(&r->progress[i].rows);
        cdc_gauge_set(r->progress[i].m_rows, (double)atomic_load(&r->progress[i].rows));
    }
    cdc_counter_add(s->m_rows_total, total - counted);
    if (tty)
        fputs("\r\033[K", stderr);
    cdc_buf_free(&line);
}

/* Reads every table of the publication in one snapshot, taken now and
 * exported by the first worker to the others, versioned `lsn`. */
static int run_snapshot(snapshot *s, uint64_t lsn, const char *import, const char *dbname,
                        kafka_out *kafka, pgvalue_resolve_fn resolve, void *resolve_ctx,
                        char *err, size_t errlen)
{
    run r = {
        .s = s,
        .kafka = kafka,
        .dbname = dbname,
        .lsn = lsn,
        .ts_ms = cdc_clock_wall_ms(),
        .chunk_rows = s->set.chunk_rows,
    };
    pthread_mutex_init(&r.mu, NULL);
    int rc = -1;
    int nw = s->set.workers;
    char snapname[128] = "";
    cdc_buf topic = CDC_BUF_INIT;
    if (!(r.workers = calloc((size_t)nw, sizeof *r.workers))) {
        snprintf(err, errlen, "cannot start the snapshot: out of memory");
        goto done;
    }
    r.nworkers = nw;
    for (int i = 0; i < nw; i++) {
        worker *w = &r.workers[i];
        w->r = &r;
        snap_row_builder_init(&w->b);
    }
    /* The first worker's connection also plans the work. */
    PGconn *pg0;
    if (snapdb_connect(s->set.conninfo, "pgcdc-producer-snapshot", &r.workers[0].pg, err, errlen) < 0)
        goto done;
    pg0 = r.workers[0].pg;
    if (begin_snapshot(pg0, import, err, errlen) < 0)
        goto done;
    if (import) {
        snprintf(snapname, sizeof snapname, "%s", import);
    } else {
        PGresult *exp = PQexec(pg0, "SELECT pg_export_snapshot()");
        if (PQresultStatus(exp) != PGRES_TUPLES_OK) {
            pg_error_format(pg0, "cannot export a snapshot", err, errlen);
            PQclear(exp);
            goto done;
        }
        snprintf(snapname, sizeof snapname, "%s", PQgetvalue(exp, 0, 0));
        PQclear(exp);
    }
    int n = snapdb_publication_tables(pg0, s->set.publication, NULL, NULL, &r.tables, err, errlen);
    if (n < 0)
        goto done;
    r.ntables = (size_t)n;
    if (n > 0 && !(r.progress = calloc((size_t)n, sizeof *r.progress))) {
        snprintf(err, errlen, "cannot start the snapshot: out of memory");
        goto done;
    }
    for (size_t i = 0; i < r.ntables; i++) {
        table_progress *tp = &r.progress[i];
        snap_table *t = r.tables[i];
        tp->t = t;
        snprintf(tp->label, sizeof tp->label, "%s.%s", t->schema, t->name);
        tp->est = t->reltuples >= 0 ? t->reltuples : explain_rows(pg0, t);
        if (tp->est < 0)
            tp->est = 0;
        if (snapdb_resolve_types(t, resolve, resolve_ctx, err, errlen) < 0 ||
            snap_table_apply_policy(t, s->set.policy, err, errlen) < 0)
            goto done;
        bool renamed = false;
        cdc_buf_reset(&topic);
        if (cdc_topic_name(s->set.topic_prefix, t->schema, t->name, &topic, &renamed) < 0) {
            snprintf(err, errlen, "cannot name the topic of %s: out of memory", tp->label);
            goto done;
        }
        kafka_topic *kt;
        if (kafka_out_topic(kafka, topic.data, TOPIC_TIMEOUT_MS, &kt, err, errlen) < 0)
            goto done;
        t->topic = kt;
        cdc_buf labels = CDC_BUF_INIT;
        cdc_metrics_label(&labels, "table", tp->label);
        tp->m_rows = cdc_metrics_gauge("pgcdc_producer_snapshot_rows",
                                       "Rows read by the initial snapshot, per table.", labels.data);
        tp->m_est = cdc_metrics_gauge("pgcdc_producer_snapshot_rows_estimated",
                                      "Rows the initial snapshot expects, per table "
                                      "(pg_class.reltuples).", labels.data);
        cdc_buf_free(&labels);
        cdc_gauge_set(tp->m_est, tp->est);
        cdc_gauge_set(tp->m_rows, 0);
    }
    /* Large tables first, so that their ranges spread over the workers. */
    if (r.ntables > 1)
        qsort(r.progress, r.ntables, sizeof *r.progress, cmp_est);
    double est_total = 0;
    for (size_t i = 0; i < r.ntables; i++) {
        est_total += r.progress[i].est;
        if (plan_table(&r, pg0, &r.progress[i], nw, err, errlen) < 0)
            goto done;
    }
    for (int i = 1; i < nw; i++) {
        if (snapdb_connect(s->set.conninfo, "pgcdc-producer-snapshot", &r.workers[i].pg, err,
                           errlen) < 0 ||
            begin_snapshot(r.workers[i].pg, snapname, err, errlen) < 0)
            goto done;
    }
    cdc_log_info("snapshot: %zu tables, ~%.0f rows in %zu key ranges, %d workers, rows versioned %s",
                 r.ntables, est_total, r.nsegs, nw, cdc_lsn_format(lsn, (char[CDC_LSN_BUFSZ]){0}));
    int64_t started = cdc_clock_mono_ms();
    cdc_gauge_set(s->m_running, 1);
    atomic_store(&r.running, nw);
    for (int i = 0; i < nw; i++) {
        if (pthread_create(&r.workers[i].thread, NULL, worker_main, &r.workers[i]) != 0) {
            atomic_fetch_sub(&r.running, nw - i);
            run_fail(&r, "cannot start snapshot worker %d", i + 1);
            break;
        }
        r.workers[i].started = true;
    }
    wait_run(&r);
    cdc_gauge_set(s->m_running, 0);
    if (r.failed) {
        snprintf(err, errlen, "%s", r.err);
        goto done;
    }
    uint64_t rows = 0;
    for (size_t i = 0; i < r.ntables; i++)
        rows += atomic_load(&r.progress[i].rows);
    int64_t ms = cdc_clock_mono_ms() - started;
    cdc_log_info("snapshot done: %" PRIu64 " rows of %zu tables in %.1f s (%.0f rows/s), "
                 "every record acknowledged by Kafka", rows, r.ntables, (double)ms / 1000.0,
                 ms > 0 ? (double)rows * 1000.0 / (double)ms : 0.0);
    rc = 0;
done:
    run_free(&r);
    cdc_buf_free(&topic);
    return rc;
}

/* A transaction that was writing when the slot's position P was set can
 * commit after P with changes whose LSN lies below P (logical decoding
 * streams it whole, at its commit). Such a change would lose, in every
 * sink, against a snapshot row versioned P, so the snapshot must already
 * show its outcome: this waits until every transaction that holds an id now
 * (any that wrote before P does) has ended. Returns 0, or -1 with err (a
 * query failed, or a stop was requested). */
static int wait_for_writers(PGconn *pg, char *err, size_t errlen)
{
    PGresult *res = PQexec(pg, "SELECT pg_current_xact_id()::text");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_error_format(pg, "cannot read the current transaction id", err, errlen);
        PQclear(res);
        return -1;
    }
    char xid[32];
    snprintf(xid, sizeof xid, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    const char *params[] = {xid};
    int64_t start = cdc_clock_mono_ms();
    bool warned = false;
    for (;;) {
        if (cdc_signal_stop_requested()) {
            snprintf(err, errlen, "the initial snapshot was interrupted by a stop request");
            return -1;
        }
        res = PQexecParams(pg, "SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8", 1,
                           NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            pg_error_format(pg, "cannot read the oldest running transaction", err, errlen);
            PQclear(res);
            return -1;
        }
        bool ended = PQgetvalue(res, 0, 0)[0] == 't';
        PQclear(res);
        if (ended)
            return 0;
        if (!warned && cdc_clock_mono_ms() - start > 30000) {
            cdc_log_warn("the initial snapshot waits for transactions older than id %s to end",
                         xid);
            warned = true;
        }
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

/* Opens (creating when missing) the topic of every published table before
 * anything is made in PostgreSQL, so that a Kafka that cannot be reached
 * fails the start without leaving a slot or a marker behind. The snapshot
 * lists the tables again inside its own snapshot. */
static int open_topics(snapshot *s, PGconn *pg, kafka_out *kafka, char *err, size_t errlen)
{
    snap_table **tables;
    int n = snapdb_publication_tables(pg, s->set.publication, NULL, NULL, &tables, err, errlen);
    if (n < 0)
        return -1;
    int rc = 0;
    cdc_buf topic = CDC_BUF_INIT;
    for (int i = 0; i < n && rc == 0; i++) {
        bool renamed;
        kafka_topic *kt;
        cdc_buf_reset(&topic);
        if (cdc_topic_name(s->set.topic_prefix, tables[i]->schema, tables[i]->name, &topic,
                           &renamed) < 0) {
            snprintf(err, errlen, "cannot name a topic: out of memory");
            rc = -1;
        } else {
            rc = kafka_out_topic(kafka, topic.data, TOPIC_TIMEOUT_MS, &kt, err, errlen);
        }
    }
    cdc_buf_free(&topic);
    snapdb_free_tables(tables, (size_t)n);
    return rc;
}

/* 1 when the server is a standby (PostgreSQL 16+ decodes there), 0 when
 * not, -1 with err. */
static int is_standby(PGconn *ctl, char *err, size_t errlen)
{
    PGresult *res = PQexec(ctl, "SELECT pg_is_in_recovery()");
    int rc = -1;
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        pg_error_format(ctl, "cannot ask whether the server is a standby", err, errlen);
    else
        rc = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return rc;
}

/* A standby cannot tell which transactions hold an id (pg_current_xact_id()
 * is refused in recovery; its pg_current_snapshot() leaves out running
 * transactions above the newest completed one), so wait_for_writers cannot
 * be done there. Instead the slot is made with its exported snapshot, the
 * database exactly at the consistent point P, and rows are versioned just
 * below the slot's restart_lsn R: a transaction in progress at P, missing
 * from that snapshot, began after R (decoding starts at R, and a
 * transaction that began before it had to end before P could be reached),
 * so every change the stream brings has an LSN of R or more and wins over
 * the rows. Returns 0 with *version, or -1 with err. */
static int standby_version(PGconn *ctl, const char *slot, uint64_t *version, char *err,
                           size_t errlen)
{
    PGresult *res = PQexecParams(ctl, "SELECT restart_lsn::text FROM pg_replication_slots "
                                      "WHERE slot_name = $1", 1, NULL, &slot, NULL, NULL, 0);
    uint64_t restart = 0;
    int rc = -1;
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        pg_error_format(ctl, "cannot read the slot's restart_lsn", err, errlen);
    else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0) ||
             cdc_lsn_parse(PQgetvalue(res, 0, 0), &restart) < 0 || restart == 0)
        snprintf(err, errlen, "replication slot %s has no restart_lsn", slot);
    else
        rc = 0;
    PQclear(res);
    *version = restart - 1;
    return rc;
}

/* On a standby, a slot whose initial snapshot did not finish is made again
 * (nothing was streamed from it: its position is still P), since its
 * exported snapshot is gone with the connection that made it. A slot that
 * streamed cannot be read again there (--snapshot always): refused. */
static int standby_existing_slot(snapshot *s, PGconn *ctl, bool pending, char *err,
                                 size_t errlen)
{
    if (!pending) {
        snprintf(err, errlen, "--snapshot %s cannot read the tables again on a standby (slot "
                 "%s has streamed; a standby's snapshot must be the new slot's own): run it "
                 "against the primary, or with --snapshot initial here", s->set.mode,
                 s->set.slot);
        return PG_PERMANENT;
    }
    const char *slot = s->set.slot;
    PGresult *res = PQexecParams(ctl, "SELECT pg_drop_replication_slot($1)", 1, NULL, &slot,
                                 NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = pg_error_result(ctl, res, "cannot drop the slot of an unfinished snapshot", err,
                             errlen);
    else
        cdc_log_info("an earlier initial snapshot on this standby did not finish: replication "
                     "slot %s is made again, with a snapshot of its own", slot);
    PQclear(res);
    return rc;
}

int snapshot_written_topic(snapshot *s, kafka_out *kafka, char *topic, size_t topiclen,
                           char *err, size_t errlen)
{
    PGconn *ctl = NULL;
    snap_table **tables = NULL;
    int n = -1, rc = -1;
    if (snapdb_connect(s->set.conninfo, "pgcdc-producer-snapshot", &ctl, err, errlen) < 0 ||
        (n = snapdb_publication_tables(ctl, s->set.publication, NULL, NULL, &tables, err,
                                       errlen)) < 0)
        goto done;
    const char **names = calloc((size_t)n + 1, sizeof *names);
    if (!names) {
        snprintf(err, errlen, "cannot list the published tables' topics: out of memory");
        goto done;
    }
    rc = 0;
    int named = 0;
    for (; named < n && rc == 0; named++) {
        cdc_buf t = CDC_BUF_INIT;
        bool renamed;
        if (cdc_topic_name(s->set.topic_prefix, tables[named]->schema, tables[named]->name, &t,
                           &renamed) < 0) {
            snprintf(err, errlen, "cannot name a topic: out of memory");
            rc = -1;
        }
        names[named] = t.data; /* owned by names now */
    }
    if (rc == 0)
        rc = kafka_out_written(kafka, names, (size_t)n, TOPIC_TIMEOUT_MS, topic, topiclen, err,
                               errlen);
    for (int i = 0; i < named; i++)
        free((void *)names[i]);
    free(names);
done:
    if (tables)
        snapdb_free_tables(tables, (size_t)n);
    PQfinish(ctl);
    return rc;
}

int snapshot_before_stream(snapshot *s, repl_conn *repl, const char *dbname, kafka_out *kafka,
                           pgvalue_resolve_fn resolve, void *resolve_ctx, int *slot_exists,
                           uint64_t *confirmed, char *err, size_t errlen)
{
    const char *mode = s->set.mode;
    if (!*slot_exists && !s->set.create_slot)
        return 0; /* the producer says the slot is missing */
    PGconn *ctl = NULL;
    char marker[80];
    snapdb_marker_name(s->set.slot, marker, sizeof marker);
    if (snapdb_connect(s->set.conninfo, "pgcdc-producer-snapshot", &ctl, err, errlen) < 0)
        return -1;
    int rc = -1;
    int pending = snapdb_marker_exists(ctl, marker, err, errlen);
    if (pending < 0)
        goto done;
    if (strcmp(mode, "never") == 0) {
        if (pending && !s->warned_never)
            cdc_log_warn("an initial snapshot of slot %s did not finish (replication slot %s "
                         "marks it); --snapshot never leaves it so", s->set.slot, marker);
        s->warned_never = true;
        rc = 0;
        goto done;
    }
    bool always = strcmp(mode, "always") == 0 && !s->done_once;
    if (*slot_exists && !pending && !always) {
        rc = 0;
        goto done;
    }
    int standby = is_standby(ctl, err, errlen);
    if (standby < 0)
        goto done;
    if (standby && *slot_exists) {
        if ((rc = standby_existing_slot(s, ctl, pending, err, errlen)) < 0)
            goto done;
        *slot_exists = 0;
    }
    rc = -1;
    if (open_topics(s, ctl, kafka, err, errlen) < 0 ||
        snapdb_marker_create(ctl, marker, err, errlen) < 0)
        goto done;
    char lsntext[CDC_LSN_BUFSZ];
    char snapname[128] = "";
    bool created = false;
    if (!*slot_exists) {
        int made = standby ? repl_create_slot_exported(repl, s->set.slot, snapname,
                                                       sizeof snapname, err, errlen)
                           : repl_create_slot(repl, s->set.slot, err, errlen);
        if (made < 0)
            goto done;
        created = made == 0; /* 1: made by someone else meanwhile */
        if (standby && !created) {
            snprintf(err, errlen, "replication slot %s was made by someone else meanwhile",
                     s->set.slot);
            goto done;
        }
    }
    int found = snapdb_slot_confirmed(ctl, s->set.slot, confirmed, err, errlen);
    if (found <= 0) {
        if (found == 0)
            snprintf(err, errlen, "replication slot %s vanished", s->set.slot);
        goto done;
    }
    *slot_exists = 1;
    cdc_lsn_format(*confirmed, lsntext);
    if (created)
        cdc_log_info("created replication slot %s at %s: initial snapshot of publication %s",
                     s->set.slot, lsntext, s->set.publication);
    else
        cdc_log_info("%s: reading every table of publication %s again, rows versioned %s (the "
                     "slot's position); the stream from there replays every change since",
                     pending ? "an earlier initial snapshot did not finish" : "--snapshot always",
                     s->set.publication, lsntext);
    uint64_t version = *confirmed;
    if (standby ? standby_version(ctl, s->set.slot, &version, err, errlen) < 0
                : wait_for_writers(ctl, err, errlen) < 0)
        goto done;
    if (run_snapshot(s, version, standby ? snapname : NULL, dbname, kafka, resolve, resolve_ctx,
                     err, errlen) < 0)
        goto done;
    if (snapdb_marker_drop(ctl, marker, err, errlen) < 0)
        goto done;
    s->done_once = true;
    rc = 0;
done:
    PQfinish(ctl);
    return rc;
}
