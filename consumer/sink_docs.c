/* sink_docs.c: the documents sink (--documents, docs/documents.md). For each
 * batch it finds the root documents the batch's changes affect, reads them
 * whole from PostgreSQL in one REPEATABLE READ transaction per document type,
 * and writes them to the search index and/or Redis, versioned by the
 * transaction's snapshot so that an older read never replaces a newer one.
 *
 * A document is never built from the events themselves: the events only say
 * which documents to read again. So a replay of any range re-reads the
 * current state (it cannot bring an old one back), and a PostgreSQL, engine
 * or Redis failure is retried until it succeeds or a stop is requested;
 * until then apply() does not return, so no offset moves past the batch. */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "cdc_buf.h"
#include "cdc_clock.h"
#include "cdc_log.h"
#include "cdc_mask.h"
#include "cdc_metrics.h"
#include "cdc_signal.h"
#include "doc_def.h"
#include "doc_sql.h"
#include "es_engine.h"
#include "es_http.h"
#include "es_index.h"
#include "es_bulk.h"
#include "es_mapping.h"
#include "es_response.h"
#include "redis_conn.h"
#include "redis_keys.h"
#include "row_json.h"
#include "sink.h"
#include "xid_snapshot.h"

#define PAGE_ROOTS 1000          /* documents per page of a full re-read */
#define BULK_MAX (8u << 20)      /* bytes of one _bulk request */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define VERSION_SUFFIX ":pgcdc-version"

/* Writes one document, or deletes it, unless Redis holds a newer version of
 * it. KEYS: the document, its version. ARGV: the version (20 digits, so that
 * comparing the text compares the numbers), the deleted version's TTL in
 * seconds (0: forever), the document (absent: delete). */
static const char doc_script[] =
    "local v = redis.call('GET', KEYS[2])\n"
    "if v and v > ARGV[1] then return 0 end\n"
    "if ARGV[3] then\n"
    "  redis.call('SET', KEYS[1], ARGV[3])\n"
    "  redis.call('SET', KEYS[2], ARGV[1])\n"
    "else\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])\n"
    "  else redis.call('SET', KEYS[2], ARGV[1]) end\n"
    "end\n"
    "return 1\n";

/* Which column of a changed row names affected documents, and how. */
typedef enum watch_what {
    W_ROOT,      /* the root's key: a root key */
    W_VIA,       /* n->via of a child or aggregate row: a key of n->up */
    W_KEY,       /* n->key of a parent or many-to-many target: n's own key */
    W_LINK,      /* n->via of a many-to-many link row: a key of n->up */
} watch_what;

typedef struct watch {
    const char *schema, *table;
    size_t type;
    const doc_node *node;
    watch_what what;
} watch;

typedef struct root_ref {
    char *key;
    size_t rec;              /* the record that named it (dead letters) */
} root_ref;

typedef struct doc_out {
    const char *key;
    char *json;              /* NULL: the root is gone, delete */
    size_t rec;
} doc_out;

/* A set of values of one (node, values) pair, as a PostgreSQL array literal. */
typedef struct group {
    cdc_buf arr;
    size_t n;
    size_t rec;
} group;

typedef struct type_state {
    const doc_type *t;
    cdc_buf sql_read, sql_first, sql_after;
    cdc_buf *sql_roots;      /* [node id * 2 + doc_values]; empty: direct */
    bool *direct;
    char *index;             /* the alias, a valid index name */
    /* per batch */
    root_ref *roots;
    size_t nroots, cap;
    group *groups;           /* [node id * 2 + doc_values] */
    bool full;               /* re-read every document (a truncate) */
    bool root_truncated;
    size_t full_rec;
} type_state;

typedef struct docs_sink {
    sink base;
    doc_def *def;
    type_state *types;
    watch *watches;
    size_t nwatches;

    char *pg_dsn, *pg_masked;
    PGconn *pg;
    uint64_t version;        /* of the transaction being read */
    xid_snapshot snap;       /* its snapshot (common/xid_snapshot.c) */
    uint32_t *txids;         /* transactions of the batch's changes (0: none) */
    size_t ntxids, captxids;

    bool es_on;
    unsigned index_version;  /* --es-index-version: write <index>_v<N>, not the alias */
    es_http http;
    es_engine engine;

    bool redis_on;
    redisContext *redis;
    redis_target rtarget;    /* --redis, TLS, AUTH, database (redis_conn.c) */
    long long tombstone_ttl;

    doc_out *docs;
    size_t ndocs, capdocs;
    PGresult *res;           /* holds the docs' key and json text */
    consumer_record *const *recs;  /* the batch being applied */
    cdc_metric *m_written, *m_deleted, *m_reads;
    bool warned_missing;
    cdc_buf idbuf;           /* a composite id being made */
} docs_sink;

/* Makes room for one more element in *arr (of *cap, `n` used). */
static int grow(void *arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t want = *cap ? *cap * 2 : 64;
    void *p = realloc(*(void **)arr, want * size);
    if (!p)
        return -1;
    *(void **)arr = p;
    *cap = want;
    return 0;
}

/* ---- PostgreSQL -------------------------------------------------------- */

static void pg_close(docs_sink *d)
{
    if (d->res)
        PQclear(d->res);
    d->res = NULL;
    if (d->pg)
        PQfinish(d->pg);
    d->pg = NULL;
}

static int pg_connect(docs_sink *d, char *err, size_t errlen)
{
    if (d->pg && PQstatus(d->pg) == CONNECTION_OK)
        return 0;
    pg_close(d);
    d->pg = PQconnectdb(d->pg_dsn);
    if (!d->pg || PQstatus(d->pg) != CONNECTION_OK) {
        cdc_buf m = CDC_BUF_INIT;
        cdc_mask_secrets(d->pg ? PQerrorMessage(d->pg) : "out of memory", &m);
        snprintf(err, errlen, "cannot connect to PostgreSQL (%s) for document reads: %s",
                 d->pg_masked, m.data ? m.data : "");
        cdc_buf_free(&m);
        pg_close(d);
        return -1;
    }
    return 0;
}

/* Sends sql and waits for its result, watching for a stop: a read blocked
 * on a lock, or on a server that no longer answers, must not hold a stop
 * (or a rebalance) for ever. On a stop the query is cancelled and the
 * connection dropped; NULL then, as on a failure. */
static PGresult *pg_exec(docs_sink *d, const char *sql, int nparams, const char *const *params)
{
    if (!PQsendQueryParams(d->pg, sql, nparams, NULL, params, NULL, NULL, 0))
        return NULL;
    struct pollfd pfd[2] = {{.fd = PQsocket(d->pg), .events = POLLIN},
                            {.fd = cdc_signal_fd(), .events = POLLIN}};
    while (PQconsumeInput(d->pg) && PQisBusy(d->pg)) {
        if (cdc_signal_stop_requested()) {
            char ignored[256];
            PGcancel *cancel = PQgetCancel(d->pg);
            if (cancel) {
                PQcancel(cancel, ignored, sizeof ignored);
                PQfreeCancel(cancel);
            }
            pg_close(d);
            return NULL;
        }
        poll(pfd, pfd[1].fd >= 0 ? 2 : 1, 100);
    }
    /* The last result is the statement's (or its error); then NULL. */
    PGresult *last = NULL, *r;
    while ((r = PQgetResult(d->pg))) {
        if (last)
            PQclear(last);
        last = r;
    }
    return last;
}

/* Runs sql with up to two text parameters; the result's status must be
 * `want`. Returns the result, or NULL with err set. */
static PGresult *pg_run(docs_sink *d, const char *sql, int nparams, const char *const *params,
                        ExecStatusType want, const char *what, char *err, size_t errlen)
{
    PGresult *r = pg_exec(d, sql, nparams, params);
    if (r && PQresultStatus(r) == want)
        return r;
    snprintf(err, errlen, "PostgreSQL (%s): %s: %s", d->pg_masked, what,
             r ? PQresultErrorMessage(r)
               : cdc_signal_stop_requested() ? "stop requested" : PQerrorMessage(d->pg));
    size_t len = strlen(err);
    if (len && err[len - 1] == '\n')
        err[len - 1] = '\0';
    if (r)
        PQclear(r);
    return NULL;
}

static int pg_cmd(docs_sink *d, const char *sql, char *err, size_t errlen)
{
    PGresult *r = pg_run(d, sql, 0, NULL, PGRES_COMMAND_OK, sql, err, errlen);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

/* Starts the read transaction and takes its version from its snapshot's
 * rank (xid_snapshot_rank: xmax * 65536 + (65535 - in-progress count)). A
 * snapshot taken later has an xmax at least as high and, for the same
 * xmax, a subset of in-progress transactions, so the version never goes
 * down with time, and two equal versions saw the same transactions
 * committed. */
static int pg_begin(docs_sink *d, char *err, size_t errlen)
{
    if (pg_connect(d, err, errlen) < 0 ||
        pg_cmd(d, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, errlen) < 0)
        return -1;
    PGresult *r = pg_run(d, "SELECT pg_current_snapshot()::text", 0, NULL, PGRES_TUPLES_OK,
                         "read the snapshot", err, errlen);
    if (!r)
        return -1;
    int rc = xid_snapshot_parse(&d->snap, PQgetvalue(r, 0, 0), err, errlen);
    PQclear(r);
    if (rc < 0)
        return -1;
    d->version = xid_snapshot_rank(&d->snap);
    return 0;
}

/* Whether the snapshot sees every transaction of the batch's changes.
 * PostgreSQL writes a commit record (which the producer may stream, and
 * this consumer read) a moment before other sessions see the transaction,
 * longer when the commit waits for a synchronous standby: a read in that
 * moment would miss the change, and nothing would read the document again.
 * The events carry 32-bit xids, judged modulo 2^32 as PostgreSQL does
 * (a change just committed is within 2^31 of xmax). */
static const char *snapshot_misses(const docs_sink *d, uint32_t *missed)
{
    for (size_t i = 0; i < d->ntxids; i++)
        if (!xid_snapshot_saw(&d->snap, d->txids[i])) {
            *missed = d->txids[i];
            return "not yet visible";
        }
    return NULL;
}
/* ---- what a batch affects ------------------------------------------------ */

static const char *member_text(yajl_val row, const char *name, char *num, size_t numlen)
{
    if (!row || !YAJL_IS_OBJECT(row))
        return NULL;
    for (size_t i = 0; i < row->u.object.len; i++) {
        if (strcmp(row->u.object.keys[i], name) != 0)
            continue;
        yajl_val v = row->u.object.values[i];
        if (YAJL_IS_STRING(v))
            return v->u.string;
        if (YAJL_IS_NUMBER(v))
            return v->u.number.r;
        if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
            snprintf(num, numlen, "%s", YAJL_IS_TRUE(v) ? "true" : "false");
            return num;
        }
        return NULL;
    }
    return NULL;
}

/* The columns whose values in a changed row name documents (a composite
 * root key, or the via columns joining a root by it: several). */
static size_t watch_cols(const watch *w, char *const **cols)
{
    if (w->what == W_ROOT) {
        *cols = w->node->keys;
        return w->node->nkeys;
    }
    if (w->what == W_KEY) {
        *cols = w->node->keys;
        return 1;
    }
    *cols = w->node->vias;
    return w->node->nvias;
}

/* A document id from the columns `cols` of a row, as the per-row sinks
 * make a row id from an event's key (docs/consumer-sinks.md "Row ids"):
 * one column: its value's text; several: the compact JSON array of their
 * values, which is what doc_sql.c's root_id() reads from PostgreSQL.
 * Returns the text, or NULL when a column is not in the row (*missing). */
static const char *row_id_of(yajl_val row, char *const *cols, size_t n, cdc_buf *buf,
                             char *num, size_t numlen, const char **missing)
{
    if (n == 1) {
        const char *v = member_text(row, cols[0], num, numlen);
        if (!v)
            *missing = cols[0];
        return v;
    }
    cdc_buf_reset(buf);
    int rc = cdc_buf_putc(buf, '[');
    for (size_t i = 0; i < n; i++) {
        yajl_val v = row && YAJL_IS_OBJECT(row) ? row_json_member(row, cols[i]) : NULL;
        if (!v || YAJL_IS_NULL(v) || YAJL_IS_OBJECT(v) || YAJL_IS_ARRAY(v)) {
            *missing = cols[i];
            return NULL;
        }
        rc |= cdc_buf_puts(buf, i ? "," : "");
        rc |= row_json_put_value(buf, v);
    }
    rc |= cdc_buf_putc(buf, ']');
    if (rc < 0) {
        *missing = NULL;
        return NULL;
    }
    return buf->data;
}

/* The values of a composite document id (a JSON array of scalars) as
 * PostgreSQL array elements go: strings as they are, numbers and booleans
 * as written. Returns the parsed array (yajl_tree_free), or NULL. */
static yajl_val id_parts(const char *id, size_t nkeys)
{
    yajl_val v = yajl_tree_parse(id, NULL, 0);
    if (!v || !YAJL_IS_ARRAY(v) || v->u.array.len != nkeys) {
        if (v)
            yajl_tree_free(v);
        return NULL;
    }
    for (size_t i = 0; i < nkeys; i++) {
        yajl_val e = v->u.array.values[i];
        if (!YAJL_IS_STRING(e) && !YAJL_IS_NUMBER(e) && !YAJL_IS_TRUE(e) && !YAJL_IS_FALSE(e)) {
            yajl_tree_free(v);
            return NULL;
        }
    }
    return v;
}

static const char *part_text(yajl_val e)
{
    return YAJL_IS_STRING(e) ? e->u.string : YAJL_IS_NUMBER(e) ? e->u.number.r
           : YAJL_IS_TRUE(e) ? "true" : "false";
}

static int add_root(type_state *ts, const char *key, size_t rec)
{
    if (grow(&ts->roots, &ts->cap, ts->nroots, sizeof *ts->roots) < 0 ||
        !(ts->roots[ts->nroots].key = strdup(key)))
        return -1;
    ts->roots[ts->nroots++].rec = rec;
    return 0;
}

static int add_group_value(group *g, const char *v, size_t rec)
{
    if (g->n == 0)
        g->rec = rec;
    if (cdc_buf_putc(&g->arr, g->n ? ',' : '{') < 0 ||
        doc_sql_array_elem(&g->arr, v, strlen(v)) < 0)
        return -1;
    g->n++;
    return 0;
}

static int watch_value(docs_sink *d, const watch *w, const char *v, size_t rec)
{
    type_state *ts = &d->types[w->type];
    if (w->what == W_ROOT)
        return add_root(ts, v, rec);
    doc_values role = w->what == W_KEY ? DOC_VALUES_KEY : DOC_VALUES_UP_KEY;
    size_t slot = w->node->id * 2 + role;
    if (ts->direct[slot])
        return add_root(ts, v, rec);
    return add_group_value(&ts->groups[slot], v, rec);
}

static int collect(docs_sink *d, consumer_record *const *recs, size_t n, uint64_t *watched)
{
    for (size_t i = 0; i < n; i++) {
        const cdc_decoded_event *ev = &recs[i]->ev;
        if (!ev->schema || !ev->table)
            continue;
        bool seen = false;
        for (size_t k = 0; k < d->nwatches; k++) {
            const watch *w = &d->watches[k];
            if (strcmp(w->table, ev->table) != 0 || strcmp(w->schema, ev->schema) != 0)
                continue;
            seen = true;
            type_state *ts = &d->types[w->type];
            if (ev->op == 't') {
                if (!ts->full)
                    ts->full_rec = i;
                ts->full = true;
                if (w->what == W_ROOT)
                    ts->root_truncated = true;
                continue;
            }
            char *const *cols;
            size_t ncols = watch_cols(w, &cols);
            yajl_val rows[2] = {ev->before, ev->after};
            for (int r = 0; r < 2; r++) {
                char num[8];
                const char *col = NULL;
                const char *v = row_id_of(rows[r], cols, ncols, &d->idbuf, num, sizeof num, &col);
                if (!v && !col)
                    return -1;
                if (!v) {
                    /* A null links the row to no document. A missing
                     * column is one the table's replica identity leaves
                     * out of the old row (docs/documents.md). */
                    bool absent = rows[r] && YAJL_IS_OBJECT(rows[r]) &&
                                  !row_json_member(rows[r], col);
                    if (absent && !d->warned_missing) {
                        cdc_log_warn("documents: a change of %s.%s has no %s in \"%s\": give "
                                     "the table REPLICA IDENTITY FULL", ev->schema, ev->table,
                                     col, r ? "after" : "before");
                        d->warned_missing = true;
                    }
                    continue;
                }
                if (watch_value(d, w, v, i) < 0)
                    return -1;
            }
        }
        if (seen) {
            (*watched)++;
            if (ev->txid > 0 && ev->txid <= UINT32_MAX &&
                (d->ntxids == 0 || d->txids[d->ntxids - 1] != (uint32_t)ev->txid)) {
                if (grow(&d->txids, &d->captxids, d->ntxids, sizeof *d->txids) < 0)
                    return -1;
                d->txids[d->ntxids++] = (uint32_t)ev->txid;
            }
        }
    }
    return 0;
}

static void batch_reset(docs_sink *d)
{
    d->ntxids = 0;
    for (size_t t = 0; t < d->def->ntypes; t++) {
        type_state *ts = &d->types[t];
        for (size_t i = 0; i < ts->nroots; i++)
            free(ts->roots[i].key);
        ts->nroots = 0;
        for (size_t g = 0; g < ts->t->nnodes * 2; g++) {
            cdc_buf_reset(&ts->groups[g].arr);
            ts->groups[g].n = 0;
        }
        ts->full = ts->root_truncated = false;
    }
}

/* The documents point into d->res and the roots of the batch. */
static void docs_reset(docs_sink *d)
{
    d->ndocs = 0;
    if (d->res)
        PQclear(d->res);
    d->res = NULL;
}

static int docs_push(docs_sink *d, const char *key, char *json, size_t rec)
{
    if (grow(&d->docs, &d->capdocs, d->ndocs, sizeof *d->docs) < 0)
        return -1;
    d->docs[d->ndocs++] = (doc_out){key, json, rec};
    return 0;
}

static int cmp_root(const void *a, const void *b)
{
    const root_ref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->rec < y->rec ? -1 : x->rec > y->rec);
}

typedef struct row_ref {
    const char *key;
    char *json;
} row_ref;

static int cmp_row(const void *a, const void *b)
{
    return strcmp(((const row_ref *)a)->key, ((const row_ref *)b)->key);
}

/* ---- reading ------------------------------------------------------------- */

/* Adds the roots of the mapped groups (the queries run inside the read
 * transaction, so they see what the documents will show). */
static int map_groups(docs_sink *d, type_state *ts, char *err, size_t errlen)
{
    for (size_t g = 0; g < ts->t->nnodes * 2; g++) {
        group *gr = &ts->groups[g];
        if (gr->n == 0)
            continue;
        cdc_buf_putc(&gr->arr, '}');
        const char *params[] = {gr->arr.data};
        PGresult *r = pg_run(d, ts->sql_roots[g].data, 1, params, PGRES_TUPLES_OK,
                             "find the documents a change affects", err, errlen);
        cdc_buf_truncate(&gr->arr, gr->arr.len - 1);
        if (!r)
            return -1;
        for (int i = 0; i < PQntuples(r); i++)
            if (add_root(ts, PQgetvalue(r, i, 0), gr->rec) < 0) {
                PQclear(r);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        PQclear(r);
    }
    return 0;
}

/* Reads the affected documents of ts into d->docs (those gone as deletes). */
static int read_roots(docs_sink *d, type_state *ts, char *err, size_t errlen)
{
    docs_reset(d);
    if (pg_begin(d, err, errlen) < 0)
        return -1;
    uint32_t missed;
    int64_t t0 = cdc_clock_mono_ms();
    if (snapshot_misses(d, &missed)) {
        snprintf(err, errlen, "the snapshot does not see transaction %" PRIu32 " yet", missed);
        return pg_cmd(d, "ROLLBACK", err, errlen) < 0 ? -1 : 1;
    }
    if (map_groups(d, ts, err, errlen) < 0)
        return -1;
    if (ts->nroots > 1) /* none may mean no array at all, which qsort must not get */
        qsort(ts->roots, ts->nroots, sizeof *ts->roots, cmp_root);
    size_t u = 0;
    for (size_t i = 0; i < ts->nroots; i++) {
        if (u && strcmp(ts->roots[u - 1].key, ts->roots[i].key) == 0) {
            free(ts->roots[i].key);
            continue;
        }
        ts->roots[u++] = ts->roots[i];
    }
    ts->nroots = u;
    if (u == 0)
        return pg_cmd(d, "COMMIT", err, errlen);
    /* One array of values per key column ($1, $2, ...). */
    size_t nkeys = ts->t->root->nkeys;
    cdc_buf arr[DOC_KEYS_MAX];
    const char *params[DOC_KEYS_MAX];
    int rc = 0;
    for (size_t c = 0; c < nkeys; c++)
        arr[c] = (cdc_buf)CDC_BUF_INIT;
    for (size_t i = 0; i < u; i++) {
        if (nkeys == 1) {
            rc |= cdc_buf_putc(&arr[0], i ? ',' : '{');
            rc |= doc_sql_array_elem(&arr[0], ts->roots[i].key, strlen(ts->roots[i].key));
            continue;
        }
        yajl_val parts = id_parts(ts->roots[i].key, nkeys);
        if (!parts) {
            cdc_log_warn("documents %s: %s is not a key of %zu columns; skipped", ts->t->name,
                         ts->roots[i].key, nkeys);
            continue;
        }
        for (size_t c = 0; c < nkeys; c++) {
            const char *text = part_text(parts->u.array.values[c]);
            rc |= cdc_buf_putc(&arr[c], arr[c].len ? ',' : '{');
            rc |= doc_sql_array_elem(&arr[c], text, strlen(text));
        }
        yajl_tree_free(parts);
    }
    for (size_t c = 0; c < nkeys; c++) {
        rc |= arr[c].len ? cdc_buf_putc(&arr[c], '}') : cdc_buf_puts(&arr[c], "{}");
        params[c] = arr[c].data;
    }
    d->res = rc == 0 ? pg_run(d, ts->sql_read.data, (int)nkeys, params, PGRES_TUPLES_OK,
                              "read documents", err, errlen) : NULL;
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    for (size_t c = 0; c < nkeys; c++)
        cdc_buf_free(&arr[c]);
    if (!d->res)
        return -1;
    if (pg_cmd(d, "COMMIT", err, errlen) < 0)
        return -1;
    cdc_log_debug("documents %s: %zu roots, %d read in %" PRId64 " ms", ts->t->name, u,
                  PQntuples(d->res), cdc_clock_mono_ms() - t0);
    /* Every row read is written, under PostgreSQL's text of its key; a root
     * asked for that no row matches is gone: a delete. Rows and roots are
     * sorted by that text and merged. */
    int nrows = PQntuples(d->res);
    row_ref *rows = calloc((size_t)nrows + 1, sizeof *rows);
    if (!rows) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int k = 0; k < nrows; k++)
        rows[k] = (row_ref){PQgetvalue(d->res, k, 0), PQgetvalue(d->res, k, 1)};
    qsort(rows, (size_t)nrows, sizeof *rows, cmp_row);
    size_t i = 0;
    for (int k = 0; k < nrows && rc == 0; k++) {
        for (; i < u && strcmp(ts->roots[i].key, rows[k].key) < 0 && rc == 0; i++)
            rc = docs_push(d, ts->roots[i].key, NULL, ts->roots[i].rec);
        size_t rec = i < u ? ts->roots[i].rec : ts->roots[u - 1].rec;
        if (i < u && strcmp(ts->roots[i].key, rows[k].key) == 0)
            i++;
        if (rc == 0)
            rc = docs_push(d, rows[k].key, rows[k].json, rec);
    }
    for (; i < u && rc == 0; i++)
        rc = docs_push(d, ts->roots[i].key, NULL, ts->roots[i].rec);
    free(rows);
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}

/* Reads a page of every document of ts, after key `after` (NULL: the
 * first). *more tells whether a full page came back. */
static int read_page(docs_sink *d, type_state *ts, const char *after, bool *more, char *err,
                     size_t errlen)
{
    docs_reset(d);
    if (pg_begin(d, err, errlen) < 0)
        return -1;
    uint32_t missed;
    if (!after && snapshot_misses(d, &missed)) {
        snprintf(err, errlen, "the snapshot does not see transaction %" PRIu32 " yet", missed);
        return pg_cmd(d, "ROLLBACK", err, errlen) < 0 ? -1 : 1;
    }
    char limit[16];
    snprintf(limit, sizeof limit, "%d", PAGE_ROOTS);
    size_t nkeys = ts->t->root->nkeys;
    const char *params[1 + DOC_KEYS_MAX] = {limit, after};
    yajl_val parts = NULL;
    if (after && nkeys > 1) {
        if (!(parts = id_parts(after, nkeys))) {
            snprintf(err, errlen, "documents %s: page after %s: not a key of %zu columns",
                     ts->t->name, after, nkeys);
            return -1;
        }
        for (size_t c = 0; c < nkeys; c++)
            params[1 + c] = part_text(parts->u.array.values[c]);
    }
    d->res = pg_run(d, after ? ts->sql_after.data : ts->sql_first.data,
                    after ? 1 + (int)nkeys : 1, params, PGRES_TUPLES_OK, "read every document",
                    err, errlen);
    if (parts)
        yajl_tree_free(parts);
    if (!d->res || pg_cmd(d, "COMMIT", err, errlen) < 0)
        return -1;
    int nrows = PQntuples(d->res);
    for (int k = 0; k < nrows; k++)
        if (docs_push(d, PQgetvalue(d->res, k, 0), PQgetvalue(d->res, k, 1), ts->full_rec) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    *more = nrows == PAGE_ROOTS;
    return 0;
}

/* ---- the search engine ----------------------------------------------------- */

static int bulk_item(cdc_buf *b, const char *index, const doc_out *doc, uint64_t version)
{
    int rc = cdc_buf_printf(b, "{\"%s\":{\"_index\":", doc->json ? "index" : "delete");
    rc |= row_json_put_string(b, index, strlen(index));
    /* The per-row sink's _id of the same row id: hashed when long. */
    char err[128];
    cdc_buf id = CDC_BUF_INIT;
    rc |= cdc_buf_puts(b, ",\"_id\":");
    rc |= es_doc_id_text(doc->key, &id, err, sizeof err);
    rc |= id.data ? row_json_put_string(b, id.data, id.len) : -1;
    cdc_buf_free(&id);
    rc |= cdc_buf_printf(b, ",\"version\":%" PRIu64 ",\"version_type\":\"external_gte\"}}\n",
                         version);
    if (doc->json) {
        rc |= cdc_buf_puts(b, doc->json);
        rc |= cdc_buf_putc(b, '\n');
    }
    return rc < 0 ? -1 : 0;
}

static int es_write(docs_sink *d, type_state *ts, consumer_record *const *recs, char *err,
                    size_t errlen)
{
    if (!d->es_on || !ts->index || d->ndocs == 0)
        return 0;
    size_t *pending = malloc(d->ndocs * sizeof *pending);
    size_t *sent_ix = malloc(d->ndocs * sizeof *sent_ix);
    cdc_buf body = CDC_BUF_INIT, path = CDC_BUF_INIT, what = CDC_BUF_INIT;
    int status = -1;
    if (!pending || !sent_ix) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    size_t npending = d->ndocs;
    for (size_t i = 0; i < npending; i++)
        pending[i] = i;
    unsigned attempt = 0;
    while (npending > 0) {
        /* One request of what fits; the rest in the next round. */
        cdc_buf_reset(&body);
        size_t nsent = 0;
        for (size_t i = 0; i < npending && (nsent == 0 || body.len < BULK_MAX); i++) {
            if (bulk_item(&body, ts->index, &d->docs[pending[i]], d->version) < 0) {
                snprintf(err, errlen, "out of memory");
                goto done;
            }
            sent_ix[nsent++] = pending[i];
        }
        cdc_buf_reset(&what);
        cdc_buf_printf(&what, "_bulk of %zu documents for index %s", nsent, ts->index);
        es_req r = {.method = "POST", .path = "/_bulk", .ndjson = true, .body = body.data,
                    .len = body.len, .what = what.data, .timeout_ms = ES_REQUEST_TIMEOUT_MS};
        long code = 0;
        int rc = es_http_send(&d->http, &r, &attempt, &code, err, errlen);
        if (rc < 0)
            goto done;
        es_bulk_result res;
        char perr[512];
        if (rc != 0 || es_bulk_parse(d->http.resp.data, d->http.resp.len, &res, perr,
                                     sizeof perr) < 0 || res.n != nsent) {
            if (rc == 0 && res.n != nsent)
                es_bulk_result_free(&res);
            if (!es_http_retry_wait(&d->http, &attempt, false,
                                    rc ? err : "an answer that is not a _bulk response")) {
                snprintf(err, errlen, "stopped while writing documents to %s", ts->index);
                goto done;
            }
            continue;
        }
        /* Items left to send again are the ones the engine asked to retry. */
        size_t left = 0;
        for (size_t i = 0; i < nsent; i++) {
            const es_bulk_item *it = &res.items[i];
            const doc_out *doc = &d->docs[sent_ix[i]];
            if (it->cls == ES_ITEM_RETRY) {
                pending[left++] = sent_ix[i];
            } else if (it->cls == ES_ITEM_REJECTED) {
                char reason[700];
                snprintf(reason, sizeof reason, "document %s of index %s: %s: %s", doc->key,
                         ts->index, it->error_type ? it->error_type : "error",
                         it->reason ? it->reason : "rejected");
                cdc_log_warn("documents: the engine refused %s", reason);
                consumer_record *rec = recs[doc->rec];
                if (!rec->rejects)
                    sink_reject_record(rec, "documents", reason);
                d->base.rejected++;
            }
        }
        for (size_t i = nsent; i < npending; i++)
            pending[left++] = pending[i];
        bool retry = res.count[ES_ITEM_RETRY] > 0;
        es_bulk_result_free(&res);
        npending = left;
        if (retry && !es_http_retry_wait(&d->http, &attempt, false,
                                         "the engine asked to retry some documents")) {
            snprintf(err, errlen, "stopped while writing documents to %s", ts->index);
            goto done;
        }
        if (!retry)
            attempt = 0;
    }
    status = 0;
done:
    free(pending);
    free(sent_ix);
    cdc_buf_free(&body);
    cdc_buf_free(&path);
    cdc_buf_free(&what);
    return status;
}

/* ---- Redis ------------------------------------------------------------------ */

static void redis_close(docs_sink *d)
{
    if (d->redis)
        redisFree(d->redis);
    d->redis = NULL;
}

static int redis_connect(docs_sink *d, char *err, size_t errlen)
{
    if (d->redis)
        return 0;
    d->redis = redis_target_connect(&d->rtarget, err, errlen);
    return d->redis ? 0 : -1;
}

/* The document's key: the template with each {<key column>} replaced by
 * that column's value in the document id (the id itself for a one-column
 * key), '%' and ':' written %25 and %3A so that no two keys render alike. */
static int redis_key(const char *tpl, const doc_node *root, const char *key, cdc_buf *out)
{
    yajl_val parts = NULL;
    if (root->nkeys > 1 && !(parts = id_parts(key, root->nkeys)))
        return -1;
    int rc = 0;
    for (const char *q = tpl; *q; q++) {
        if (*q != '{') {
            rc |= cdc_buf_putc(out, *q);
            continue;
        }
        const char *close = strchr(q, '}'), *v = key;
        for (size_t k = 0; parts && k < root->nkeys; k++)
            if (strlen(root->keys[k]) == (size_t)(close - q - 1) &&
                strncmp(q + 1, root->keys[k], (size_t)(close - q - 1)) == 0)
                v = part_text(parts->u.array.values[k]);
        for (; *v; v++)
            rc |= *v == '%' ? cdc_buf_puts(out, "%25")
                  : *v == ':' ? cdc_buf_puts(out, "%3A") : cdc_buf_putc(out, *v);
        q = close;
    }
    if (parts)
        yajl_tree_free(parts);
    return rc < 0 ? -1 : 0;
}

/* Writes (or deletes) d->docs under their keys: each doc's key is its Redis
 * key when `tpl` is NULL, else its root key rendered with `tpl`. */
static int redis_write_docs(docs_sink *d, const char *tpl, const doc_node *root, char *err,
                            size_t errlen)
{
    char version[24], ttl[24];
    snprintf(version, sizeof version, "%020" PRIu64, d->version);
    snprintf(ttl, sizeof ttl, "%lld", d->tombstone_ttl);
    cdc_buf key = CDC_BUF_INIT, vkey = CDC_BUF_INIT;
    int rc = 0;
    for (size_t i = 0; i < d->ndocs && rc == 0; i++) {
        const doc_out *doc = &d->docs[i];
        cdc_buf_reset(&key);
        cdc_buf_reset(&vkey);
        if ((tpl ? redis_key(tpl, root, doc->key, &key) : cdc_buf_puts(&key, doc->key)) < 0 ||
            cdc_buf_append(&vkey, key.data, key.len) < 0 || cdc_buf_puts(&vkey, VERSION_SUFFIX) < 0) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        const char *argv[] = {"EVAL", doc_script, "2", key.data, vkey.data, version, ttl,
                              doc->json};
        size_t lens[] = {4, sizeof doc_script - 1, 1, key.len, vkey.len, strlen(version),
                         strlen(ttl), doc->json ? strlen(doc->json) : 0};
        if (redisAppendCommandArgv(d->redis, doc->json ? 8 : 7, argv, lens) != REDIS_OK) {
            snprintf(err, errlen, "Redis at %s: %s", d->rtarget.url_masked, d->redis->errstr);
            rc = -1;
        }
    }
    cdc_buf_free(&key);
    cdc_buf_free(&vkey);
    /* Every reply is read, even after an error, so the connection stays in step. */
    for (size_t i = 0; i < d->ndocs; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(d->redis, (void **)&rep) != REDIS_OK) {
            if (rc == 0)
                snprintf(err, errlen, "Redis at %s: %s", d->rtarget.url_masked, d->redis->errstr);
            rc = -1;
            break;
        }
        if (rep->type == REDIS_REPLY_ERROR && rc == 0) {
            snprintf(err, errlen, "Redis at %s: %s", d->rtarget.url_masked, rep->str);
            rc = -1;
        }
        freeReplyObject(rep);
    }
    return rc;
}

static int redis_write_keys(docs_sink *d, char *err, size_t errlen)
{
    return redis_write_docs(d, NULL, NULL, err, errlen);
}

static int redis_write_once(docs_sink *d, type_state *ts, char *err, size_t errlen)
{
    if (redis_connect(d, err, errlen) < 0)
        return -1;
    int rc = redis_write_docs(d, ts->t->redis_key, ts->t->root, err, errlen);
    if (rc < 0)
        redis_close(d);
    return rc;
}

/* Runs once(d, ts) until it returns 0: a failure is logged, counted and
 * retried with backoff (after `reset`, which drops a broken connection);
 * -1 with err naming `what` once a stop is requested. */
static int retrying(docs_sink *d, type_state *ts,
                    int (*once)(docs_sink *, type_state *, char *, size_t),
                    void (*reset)(docs_sink *), const char *what, char *err, size_t errlen)
{
    for (unsigned attempt = 0; !cdc_signal_stop_requested(); attempt++) {
        if (once(d, ts, err, errlen) == 0)
            return 0;
        cdc_log_warn("documents: %s; retrying", err);
        d->base.retries++;
        if (reset)
            reset(d);
        if (!sink_backoff(attempt, BACKOFF_MIN_MS, BACKOFF_MAX_MS))
            break;
    }
    snprintf(err, errlen, "stopped while %s", what);
    return -1;
}

static int redis_write(docs_sink *d, type_state *ts, char *err, size_t errlen)
{
    if (!d->redis_on || !ts->t->redis_key || d->ndocs == 0)
        return 0;
    return retrying(d, ts, redis_write_once, NULL, "writing documents to Redis", err, errlen);
}

/* A truncate of the root table: every document of the type goes, versioned
 * by a snapshot taken after the truncate, before the rows left (or added
 * since) are read again. */
static int snapshot_once(docs_sink *d, type_state *ts, char *err, size_t errlen)
{
    (void)ts;
    if (pg_begin(d, err, errlen) < 0)
        return -1;
    return pg_cmd(d, "COMMIT", err, errlen);
}

/* Every document of the index deleted with the version of a snapshot taken
 * after the truncate, a scroll page at a time. Versioned deletes, as in
 * Redis: a delete_by_query would leave internal tombstones one version
 * above the document's, which a re-read of the same snapshot (an equal
 * version) could not replace. Returns 0, or -1 with err (the caller
 * retries; a stop ends it). */
static int es_delete_all_once(docs_sink *d, type_state *ts, char *err, size_t errlen)
{
    if (!d->es_on || !ts->index)
        return 0;
    cdc_buf path = CDC_BUF_INIT, body = CDC_BUF_INIT;
    char *scroll = NULL;
    yajl_val page = NULL;
    unsigned attempt = 0;
    size_t deleted = 0;
    int rc = -1;
    cdc_buf_printf(&path, "/%s/_search?scroll=1m", ts->index);
    cdc_buf_puts(&body, "{\"size\":1000,\"_source\":false,\"sort\":[\"_doc\"],"
                        "\"query\":{\"match_all\":{}}}");
    for (;;) {
        es_req r = {.method = "POST", .path = path.data, .body = body.data, .len = body.len,
                    .what = "list the documents of a truncated root table",
                    .timeout_ms = ES_REQUEST_TIMEOUT_MS};
        long code = 0;
        if (es_http_send(&d->http, &r, &attempt, &code, err, errlen) != 0)
            goto done;
        if (code == 404 && !scroll) {
            rc = 0; /* no index: nothing to delete */
            goto done;
        }
        if (code != 200) {
            char ex[ES_EXCERPT_MAX + 8];
            snprintf(err, errlen, "listing the documents of %s: HTTP %ld: %s", ts->index, code,
                     es_http_excerpt(&d->http, ex, sizeof ex));
            goto done;
        }
        if (page)
            yajl_tree_free(page);
        page = NULL;
        if (row_json_parse("a scroll page", d->http.resp.data, d->http.resp.len, 64, &page, err,
                           errlen) < 0)
            goto done;
        const char *sid_path[] = {"_scroll_id", NULL}, *hits_path[] = {"hits", "hits", NULL};
        yajl_val sid = yajl_tree_get(page, sid_path, yajl_t_string);
        yajl_val hits = yajl_tree_get(page, hits_path, yajl_t_array);
        if (!sid || !hits) {
            snprintf(err, errlen, "listing the documents of %s: no _scroll_id or hits",
                     ts->index);
            goto done;
        }
        free(scroll);
        if (!(scroll = strdup(sid->u.string)))
            goto oom;
        if (hits->u.array.len == 0)
            break;
        docs_reset(d);
        for (size_t i = 0; i < hits->u.array.len; i++) {
            const char *id_path[] = {"_id", NULL};
            yajl_val id = yajl_tree_get(hits->u.array.values[i], id_path, yajl_t_string);
            if (id && docs_push(d, id->u.string, NULL, ts->full_rec) < 0)
                goto oom;
        }
        if (es_write(d, ts, d->recs, err, errlen) < 0)
            goto done;
        deleted += d->ndocs;
        docs_reset(d);
        cdc_buf_reset(&path);
        cdc_buf_reset(&body);
        cdc_buf_puts(&path, "/_search/scroll");
        cdc_buf_puts(&body, "{\"scroll\":\"1m\",\"scroll_id\":");
        row_json_put_string(&body, scroll, strlen(scroll));
        cdc_buf_putc(&body, '}');
    }
    cdc_log_info("documents %s: the root table was truncated: %zu documents deleted from %s",
                 ts->t->name, deleted, ts->index);
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "out of memory");
done:
    /* The scroll is left to expire (1 minute). */
    docs_reset(d);
    if (page)
        yajl_tree_free(page);
    free(scroll);
    cdc_buf_free(&path);
    cdc_buf_free(&body);
    return rc;
}

/* SCAN for the type's keys and delete each (unless Redis holds a newer
 * version of it). Returns 0, or -1 with err (the caller retries). */
static int redis_delete_all_once(docs_sink *d, type_state *ts, char *err, size_t errlen)
{
    if (redis_connect(d, err, errlen) < 0)
        return -1;
    cdc_buf pattern = CDC_BUF_INIT;
    const char *tpl = ts->t->redis_key;
    int rc = 0;
    for (const char *q = tpl; *q; q++) {
        if (*q == '{') {
            rc |= cdc_buf_putc(&pattern, '*');
            q = strchr(q, '}');
        } else {
            char one[2] = {*q, 0};
            rc |= redis_glob_escape(&pattern, one);
        }
    }
    char cursor[32] = "0";
    size_t deleted = 0;
    do {
        redisReply *rep = redisCommand(d->redis, "SCAN %s MATCH %s COUNT 1000", cursor,
                                       pattern.data);
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            snprintf(err, errlen, "Redis at %s: SCAN: %s", d->rtarget.url_masked,
                     rep && rep->str ? rep->str : d->redis->errstr);
            if (rep)
                freeReplyObject(rep);
            rc = -1;
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        redisReply *keys = rep->element[1];
        docs_reset(d);
        size_t slen = strlen(VERSION_SUFFIX);
        for (size_t i = 0; i < keys->elements && rc == 0; i++) {
            const redisReply *k = keys->element[i];
            if (k->len >= slen && memcmp(k->str + k->len - slen, VERSION_SUFFIX, slen) == 0)
                continue;
            rc = docs_push(d, k->str, NULL, ts->full_rec);
        }
        if (rc == 0)
            rc = redis_write_keys(d, err, errlen);
        deleted += d->ndocs;
        docs_reset(d);
        freeReplyObject(rep);
    } while (rc == 0 && strcmp(cursor, "0") != 0);
    cdc_buf_free(&pattern);
    if (rc < 0)
        redis_close(d);
    else
        cdc_log_info("documents %s: the root table was truncated: %zu documents deleted from "
                     "Redis", ts->t->name, deleted);
    return rc;
}

static int truncate_all(docs_sink *d, type_state *ts, char *err, size_t errlen)
{
    if (retrying(d, ts, snapshot_once, pg_close, "reading a snapshot", err, errlen) < 0 ||
        retrying(d, ts, es_delete_all_once, NULL, "deleting documents from the index", err,
                 errlen) < 0)
        return -1;
    if (!d->redis_on || !ts->t->redis_key)
        return 0;
    return retrying(d, ts, redis_delete_all_once, NULL, "deleting documents from Redis", err,
                    errlen);
}

/* ---- apply ------------------------------------------------------------------ */

/* Reads with `read` until it succeeds; a failure (a dead connection, a
 * server restarting) is retried on a new connection. */
static int read_retrying(docs_sink *d, type_state *ts, const char *after, bool *more,
                         char *err, size_t errlen)
{
    for (unsigned attempt = 0;; attempt++) {
        if (cdc_signal_stop_requested())
            break;
        int rc = after || more ? read_page(d, ts, after, more, err, errlen)
                               : read_roots(d, ts, err, errlen);
        if (rc == 0)
            return 0;
        if (rc > 0) {
            /* Too early by a moment: read again soon. Still unseen after
             * seconds, it is worth a line: --documents-pg may not be the
             * database the producer reads. */
            if (attempt == 40)
                cdc_log_warn("documents %s: %s after %u reads (is --documents-pg the primary "
                             "the producer reads?)", ts->t->name, err, attempt);
            if (!sink_backoff(attempt < 40 ? attempt : 40, 2, 1000))
                break;
            continue;
        }
        cdc_log_warn("documents %s: %s; retrying", ts->t->name, err);
        d->base.retries++;
        pg_close(d);
        if (!sink_backoff(attempt, BACKOFF_MIN_MS, BACKOFF_MAX_MS))
            break;
    }
    snprintf(err, errlen, "stopped while reading documents %s", ts->t->name);
    return -1;
}

static int write_docs(docs_sink *d, type_state *ts, consumer_record *const *recs, char *err,
                      size_t errlen)
{
    int64_t t0 = cdc_clock_mono_ms();
    if (es_write(d, ts, recs, err, errlen) < 0)
        return -1;
    int64_t t1 = cdc_clock_mono_ms();
    if (redis_write(d, ts, err, errlen) < 0)
        return -1;
    cdc_log_debug("documents %s: %zu written, index %" PRId64 " ms, Redis %" PRId64 " ms",
                  ts->t->name, d->ndocs, t1 - t0, cdc_clock_mono_ms() - t1);
    uint64_t gone = 0;
    for (size_t i = 0; i < d->ndocs; i++)
        gone += d->docs[i].json == NULL;
    cdc_counter_add(d->m_written, d->ndocs - gone);
    cdc_counter_add(d->m_deleted, gone);
    cdc_counter_add(d->m_reads, 1);
    return 0;
}

static int apply_type(docs_sink *d, type_state *ts, consumer_record *const *recs, char *err,
                      size_t errlen)
{
    if (ts->root_truncated && truncate_all(d, ts, err, errlen) < 0)
        return -1;
    if (ts->nroots > 0 || !ts->full) {
        bool any = ts->nroots > 0;
        for (size_t g = 0; g < ts->t->nnodes * 2 && !any; g++)
            any = ts->groups[g].n > 0;
        if (any && (read_retrying(d, ts, NULL, NULL, err, errlen) < 0 ||
                    write_docs(d, ts, recs, err, errlen) < 0))
            return -1;
    }
    if (!ts->full)
        return 0;
    /* Every document, page by page, each page its own snapshot: versions only
     * grow, so a page never undoes a later one. */
    char *after = NULL;
    bool more = true;
    size_t total = 0;
    while (more) {
        if (read_retrying(d, ts, after, &more, err, errlen) < 0 ||
            write_docs(d, ts, recs, err, errlen) < 0) {
            free(after);
            return -1;
        }
        total += d->ndocs;
        free(after);
        after = d->ndocs ? strdup(d->docs[d->ndocs - 1].key) : NULL;
        if (d->ndocs && !after) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    free(after);
    cdc_log_info("documents %s: a truncate re-read all %zu documents", ts->t->name, total);
    return 0;
}

static int docs_apply(sink *s, consumer_record *const *recs, size_t n, char *err, size_t errlen)
{
    docs_sink *d = (docs_sink *)s;
    uint64_t watched = 0;
    int rc = -1;
    d->recs = recs;
    if (collect(d, recs, n, &watched) < 0) {
        snprintf(err, errlen, "out of memory collecting the documents of a batch");
        goto done;
    }
    for (size_t t = 0; t < d->def->ntypes; t++)
        if (apply_type(d, &d->types[t], recs, err, errlen) < 0)
            goto done;
    d->base.applied += watched;
    d->base.skipped += n - watched;
    rc = 0;
done:
    docs_reset(d);
    batch_reset(d);
    return rc;
}

/* ---- start ------------------------------------------------------------------- */

typedef struct catalog {
    PGresult *res;           /* schema, table, column, type */
} catalog;

static const char *catalog_type(void *ctx, const char *schema, const char *table,
                                const char *column)
{
    PGresult *r = ((catalog *)ctx)->res;
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, 0), schema) == 0 && strcmp(PQgetvalue(r, i, 1), table) == 0 &&
            strcmp(PQgetvalue(r, i, 2), column) == 0)
            return PQgetvalue(r, i, 3);
    return NULL;
}

/* Which changes name documents: a watch per (table, node, column). */
static int add_watch(docs_sink *d, size_t type, const doc_node *n, const char *schema,
                     const char *table, watch_what what)
{
    watch *w = realloc(d->watches, (d->nwatches + 1) * sizeof *w);
    if (!w)
        return -1;
    d->watches = w;
    d->watches[d->nwatches++] = (watch){schema, table, type, n, what};
    return 0;
}

typedef struct setup_ctx {
    docs_sink *d;
    size_t type;
    cdc_buf tables;          /* array literal of schema.table names, for the catalog */
} setup_ctx;

static int setup_node(const doc_type *t, const doc_node *n, void *vctx)
{
    setup_ctx *c = vctx;
    docs_sink *d = c->d;
    while (&d->def->types[c->type] != t)
        c->type++;
    type_state *ts = &d->types[c->type];
    int rc = 0;
    switch (n->kind) {
    case DOC_ROOT:
        rc = add_watch(d, c->type, n, n->schema, n->table, W_ROOT);
        break;
    case DOC_PARENT:
        rc = add_watch(d, c->type, n, n->schema, n->table, W_KEY);
        break;
    case DOC_CHILDREN:
    case DOC_AGG:
        rc = add_watch(d, c->type, n, n->schema, n->table, W_VIA);
        break;
    case DOC_MANY:
        rc = add_watch(d, c->type, n, n->schema, n->table, W_KEY);
        rc |= add_watch(d, c->type, n, n->through_schema, n->through, W_LINK);
        break;
    }
    for (int role = 0; role < 2 && rc == 0 && n->kind != DOC_ROOT; role++) {
        size_t slot = n->id * 2 + (size_t)role;
        if (role == DOC_VALUES_KEY && (n->kind == DOC_CHILDREN || n->kind == DOC_AGG))
            continue;
        if (role == DOC_VALUES_UP_KEY && n->kind == DOC_PARENT)
            continue;
        rc = doc_sql_roots(n, (doc_values)role, &ts->sql_roots[slot], &ts->direct[slot]);
    }
    rc |= cdc_buf_putc(&c->tables, c->tables.len ? ',' : '{');
    cdc_buf name = CDC_BUF_INIT;
    rc |= cdc_buf_printf(&name, "%s.%s", n->schema, n->table);
    rc |= doc_sql_array_elem(&c->tables, name.data, name.len);
    cdc_buf_free(&name);
    return rc < 0 ? -1 : 0;
}

/* The alias and its first index, made with the mapping derived from the
 * catalog unless the alias exists. */
static int es_prepare(docs_sink *d, type_state *ts, catalog *cat, char *err, size_t errlen)
{
    cdc_buf mapping = CDC_BUF_INIT, body = CDC_BUF_INIT, path = CDC_BUF_INIT, phys = CDC_BUF_INIT;
    int rc = -1;
    unsigned attempt = 0;
    long code = 0;
    if (doc_mapping_body(d->engine, ts->t, catalog_type, cat, &mapping, err, errlen) < 0)
        goto done;
    /* --es-index-version: a rebuild next to the live index (docs/documents.md),
     * the version's index made unless it exists, no alias (moving it is the
     * operator's step). Else the alias, with <index>_v1 behind it. */
    bool version = d->index_version > 0;
    cdc_buf_printf(&path, version ? "/%s" : "/_alias/%s", ts->index);
    es_req get = {.method = "GET", .path = path.data,
                  .what = version ? "look up an index" : "look up an alias",
                  .timeout_ms = ES_REQUEST_TIMEOUT_MS};
    if (es_http_send(&d->http, &get, &attempt, &code, err, errlen) != 0)
        goto done;
    if (code == 200) {
        rc = 0;
        goto done;
    }
    if (version ? cdc_buf_puts(&phys, ts->index) < 0 ||
                      cdc_buf_append(&body, mapping.data, mapping.len) < 0
                : es_index_physical(ts->index, 1, &phys) < 0 ||
                      es_index_create_body(mapping.data, ts->index, false, &body) < 0) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    cdc_buf_reset(&path);
    cdc_buf_printf(&path, "/%s", phys.data);
    es_req put = {.method = "PUT", .path = path.data, .body = body.data, .len = body.len,
                  .what = "create a document index", .timeout_ms = ES_REQUEST_TIMEOUT_MS};
    if (es_http_send(&d->http, &put, &attempt, &code, err, errlen) != 0)
        goto done;
    if (code / 100 != 2 && !(code == 400 && d->http.resp.data &&
                             strstr(d->http.resp.data, "resource_already_exists_exception"))) {
        char ex[ES_EXCERPT_MAX + 8];
        snprintf(err, errlen, "cannot create index %s for documents %s: HTTP %ld: %s", phys.data,
                 ts->t->name, code, es_http_excerpt(&d->http, ex, sizeof ex));
        goto done;
    }
    cdc_log_info("documents %s: created index %s%s%s", ts->t->name, phys.data,
                 version ? " (--es-index-version)" : " behind alias ", version ? "" : ts->index);
    rc = 0;
done:
    cdc_buf_free(&mapping);
    cdc_buf_free(&body);
    cdc_buf_free(&path);
    cdc_buf_free(&phys);
    return rc;
}

static void docs_destroy(sink *s)
{
    docs_sink *d = (docs_sink *)s;
    if (!d)
        return;
    docs_reset(d);
    if (d->def)
        batch_reset(d);
    pg_close(d);
    redis_close(d);
    if (d->es_on)
        es_http_cleanup(&d->http);
    for (size_t t = 0; d->types && t < d->def->ntypes; t++) {
        type_state *ts = &d->types[t];
        cdc_buf_free(&ts->sql_read);
        cdc_buf_free(&ts->sql_first);
        cdc_buf_free(&ts->sql_after);
        for (size_t g = 0; ts->sql_roots && g < ts->t->nnodes * 2; g++)
            cdc_buf_free(&ts->sql_roots[g]);
        for (size_t g = 0; ts->groups && g < ts->t->nnodes * 2; g++)
            cdc_buf_free(&ts->groups[g].arr);
        free(ts->sql_roots);
        free(ts->groups);
        free(ts->direct);
        free(ts->roots);
        free(ts->index);
    }
    free(d->types);
    free(d->watches);
    free(d->docs);
    xid_snapshot_clear(&d->snap);
    free(d->txids);
    doc_def_free(d->def);
    free(d->pg_dsn);
    free(d->pg_masked);
    redis_target_free(&d->rtarget);
    cdc_buf_free(&d->idbuf);
    free(d);
}

/* The type of every column of the tables named (an array literal). */
static PGresult *pg_catalog(docs_sink *d, const char *tables, char *err, size_t errlen)
{
    const char *params[] = {tables};
    return pg_run(d, "SELECT n.nspname, c.relname, a.attname, "
                     "format_type(a.atttypid, a.atttypmod) "
                     "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                     "JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE a.attnum > 0 AND NOT a.attisdropped "
                     "AND n.nspname || '.' || c.relname = ANY($1::text[])",
                  1, params, PGRES_TUPLES_OK, "read column types", err, errlen);
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    cdc_buf b = CDC_BUF_INIT;
    if (!f) {
        snprintf(err, errlen, "--documents: cannot open %s: %m", path);
        return NULL;
    }
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (cdc_buf_append(&b, chunk, got) < 0 || b.len > (1u << 20)) {
            snprintf(err, errlen, "--documents: %s is larger than 1 MiB", path);
            fclose(f);
            cdc_buf_free(&b);
            return NULL;
        }
    fclose(f);
    *len = b.len;
    return b.data ? cdc_buf_steal(&b) : strdup("");
}

/* Every column a change is read by must be in the old row PostgreSQL logs
 * for an update or a delete (its replica identity): else a review moved to
 * another product, or deleted, would not name the product it leaves. */
static int identity_holds(docs_sink *d, const watch *w, const char *col, char *err,
                          size_t errlen)
{
    const char *params[] = {w->schema, w->table, col};
    PGresult *r = pg_run(d, "SELECT c.relreplident = 'f' OR EXISTS (SELECT 1 FROM pg_index i "
                            "JOIN pg_attribute a ON a.attrelid = i.indrelid "
                            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = c.oid "
                            "AND a.attname = $3 AND ((c.relreplident = 'd' AND i.indisprimary) "
                            "OR (c.relreplident = 'i' AND i.indisreplident))) "
                            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = $1 AND c.relname = $2",
                         3, params, PGRES_TUPLES_OK, "check replica identities", err, errlen);
    if (!r)
        return -1;
    bool missing = PQntuples(r) == 0;
    bool ok = !missing && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (missing) {
        snprintf(err, errlen, "--documents: documents %s join table %s.%s, which does not "
                              "exist", d->def->types[w->type].name, w->schema, w->table);
        return -1;
    }
    if (!ok) {
        snprintf(err, errlen, "--documents: documents %s need the old %s of every updated "
                              "or deleted row of %s.%s, which its replica identity does "
                              "not log: run ALTER TABLE \"%s\".\"%s\" REPLICA IDENTITY FULL",
                 d->def->types[w->type].name, col, w->schema, w->table, w->schema, w->table);
        return -1;
    }
    return 0;
}

/* A composite root key names its columns in the table's column order, the
 * order of the events' key (EVENTS.md), so that a document id is the row id
 * (docs/consumer-sinks.md "Row ids"). */
static int key_order_check(docs_sink *d, const doc_type *t, char *err, size_t errlen)
{
    const doc_node *r = t->root;
    cdc_buf names = CDC_BUF_INIT, rel = CDC_BUF_INIT;
    for (size_t i = 0; i < r->nkeys; i++) {
        cdc_buf_putc(&names, i ? ',' : '{');
        doc_sql_array_elem(&names, r->keys[i], strlen(r->keys[i]));
    }
    cdc_buf_putc(&names, '}');
    const char *params[] = {r->schema, r->table, names.data};
    PGresult *res = names.data ? pg_run(d, "SELECT a.attname FROM pg_attribute a JOIN pg_class c "
                                        "ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = "
                                        "c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 "
                                        "AND a.attname = ANY($3::text[]) ORDER BY a.attnum",
                                        3, params, PGRES_TUPLES_OK, "check a key's columns",
                                        err, errlen) : NULL;
    int rc = res ? 0 : -1;
    bool same = res && PQntuples(res) == (int)r->nkeys;
    for (int i = 0; res && i < PQntuples(res); i++) {
        cdc_buf_printf(&rel, "%s%s", i ? ", " : "", PQgetvalue(res, i, 0));
        same = same && strcmp(PQgetvalue(res, i, 0), r->keys[i]) == 0;
    }
    if (res && !same) {
        snprintf(err, errlen, "--documents: documents %s: list the key of %s.%s in the "
                              "table's column order, the order of the events' key: [%s]",
                 t->name, r->schema, r->table,
                 rel.data ? rel.data : "");
        rc = -1;
    }
    if (res)
        PQclear(res);
    cdc_buf_free(&names);
    cdc_buf_free(&rel);
    return rc;
}

static int replica_identity_check(docs_sink *d, char *err, size_t errlen)
{
    for (size_t t = 0; t < d->def->ntypes; t++)
        if (d->def->types[t].root->nkeys > 1 &&
            key_order_check(d, &d->def->types[t], err, errlen) < 0)
            return -1;
    for (size_t i = 0; i < d->nwatches; i++) {
        char *const *cols;
        size_t ncols = watch_cols(&d->watches[i], &cols);
        for (size_t c = 0; c < ncols; c++)
            if (identity_holds(d, &d->watches[i], cols[c], err, errlen) < 0)
                return -1;
    }
    return 0;
}

sink *sink_docs_new(const cdc_config *cfg, char *err, size_t errlen)
{
    const char *file = cdc_config_str(cfg, "documents");
    const char *dsn = cdc_config_str(cfg, "documents-pg");
    docs_sink *d = calloc(1, sizeof *d);
    catalog cat = {0};
    setup_ctx sc = {0};
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->base.name = "documents";
    d->m_written = cdc_metrics_counter("pgcdc_consumer_documents_written_total",
                                       "Joined documents read and written (--documents).", NULL);
    d->m_deleted = cdc_metrics_counter("pgcdc_consumer_documents_deleted_total",
                                       "Joined documents deleted: their root row is gone.", NULL);
    d->m_reads = cdc_metrics_counter("pgcdc_consumer_documents_reads_total",
                                     "Reads of joined documents from PostgreSQL (one per batch "
                                     "and document type, one per page of a full re-read).", NULL);
    d->base.apply = docs_apply;
    d->base.destroy = docs_destroy;
    if (!dsn) {
        snprintf(err, errlen, "--documents needs --documents-pg (the PostgreSQL the documents "
                              "are read from)");
        goto fail;
    }
    size_t len = 0;
    char *text = read_file(file, &len, err, errlen);
    if (!text)
        goto fail;
    int prc = doc_def_parse(file, text, len, &d->def, err, errlen);
    free(text);
    if (prc < 0)
        goto fail;
    cdc_buf masked = CDC_BUF_INIT;
    cdc_mask_secrets(dsn, &masked);
    d->pg_masked = masked.data ? cdc_buf_steal(&masked) : strdup("");
    d->pg_dsn = strdup(dsn);
    d->types = calloc(d->def->ntypes, sizeof *d->types);
    if (!d->pg_dsn || !d->pg_masked || !d->types)
        goto oom;
    const char *const *es;
    d->es_on = cdc_config_list(cfg, "es", &es) > 0;
    const char *rurl = cdc_config_str(cfg, "redis");
    d->redis_on = rurl != NULL;
    d->tombstone_ttl = cdc_config_int(cfg, "redis-tombstone-ttl");
    d->index_version = (unsigned)cdc_config_int(cfg, "es-index-version");
    for (size_t t = 0; t < d->def->ntypes; t++) {
        type_state *ts = &d->types[t];
        const doc_type *dt = &d->def->types[t];
        ts->t = dt;
        if (dt->index && !d->es_on) {
            snprintf(err, errlen, "--documents: documents %s go to index %s: give --es",
                     dt->name, dt->index);
            goto fail;
        }
        if (dt->redis_key && !d->redis_on) {
            snprintf(err, errlen, "--documents: documents %s go to Redis: give --redis",
                     dt->name);
            goto fail;
        }
        if (dt->index) {
            cdc_buf name = CDC_BUF_INIT;
            bool changed = false;
            if (es_index_valid(dt->index, 255 - ES_VERSION_SUFFIX_MAX, &name, &changed) < 0)
                goto oom;
            if (changed)
                cdc_log_warn("documents %s: index name \"%s\" is written %s", dt->name,
                             dt->index, name.data);
            if (d->index_version) {
                cdc_buf phys = CDC_BUF_INIT;
                if (es_index_physical(name.data, d->index_version, &phys) < 0) {
                    cdc_buf_free(&name);
                    goto oom;
                }
                cdc_buf_free(&name);
                name = phys;
            }
            ts->index = cdc_buf_steal(&name);
        }
        ts->sql_roots = calloc(dt->nnodes * 2, sizeof *ts->sql_roots);
        ts->direct = calloc(dt->nnodes * 2, sizeof *ts->direct);
        ts->groups = calloc(dt->nnodes * 2, sizeof *ts->groups);
        if (!ts->sql_roots || !ts->direct || !ts->groups ||
            doc_sql_read(dt, DOC_READ_KEYS, &ts->sql_read) < 0 ||
            doc_sql_read(dt, DOC_READ_FIRST, &ts->sql_first) < 0 ||
            doc_sql_read(dt, DOC_READ_AFTER, &ts->sql_after) < 0)
            goto oom;
    }
    sc.d = d;
    if (doc_def_walk(d->def, setup_node, &sc) < 0)
        goto oom;
    cdc_buf_putc(&sc.tables, '}');
    if (d->redis_on && redis_target_init(&d->rtarget, cfg, err, errlen) < 0)
        goto fail;
    /* PostgreSQL must answer before anything else: the replica identities and
     * the column types come from its catalog. Waited for like a sink that is
     * down; a connection lost on the way is made again. */
    for (unsigned attempt = 0;; attempt++) {
        if (pg_connect(d, err, errlen) == 0 && replica_identity_check(d, err, errlen) == 0 &&
            (cat.res = pg_catalog(d, sc.tables.data, err, errlen)))
            break;
        if (d->pg && PQstatus(d->pg) == CONNECTION_OK)
            goto fail; /* the server answered: a refusal */
        cdc_log_warn("documents: %s; retrying", err);
        pg_close(d);
        if (!sink_backoff(attempt, BACKOFF_MIN_MS, BACKOFF_MAX_MS)) {
            snprintf(err, errlen, "stopped while connecting to PostgreSQL (%s)", d->pg_masked);
            goto fail;
        }
    }
    if (d->es_on) {
        if (es_http_init(&d->http, cfg, &d->base.retries, err, errlen) < 0 ||
            es_engine_detect(&d->http, &d->engine, err, errlen) < 0)
            goto fail;
        for (size_t t = 0; t < d->def->ntypes; t++)
            if (d->types[t].index && es_prepare(d, &d->types[t], &cat, err, errlen) < 0)
                goto fail;
    }
    PQclear(cat.res);
    cdc_buf_free(&sc.tables);
    for (size_t t = 0; t < d->def->ntypes; t++)
        cdc_log_info("documents %s: root %s.%s, %zu tables joined%s%s%s%s", d->def->types[t].name,
                     d->def->types[t].root->schema, d->def->types[t].root->table,
                     d->def->types[t].nnodes, d->types[t].index ? ", index " : "",
                     d->types[t].index ? d->types[t].index : "",
                     d->def->types[t].redis_key ? ", Redis key " : "",
                     d->def->types[t].redis_key ? d->def->types[t].redis_key : "");
    return &d->base;
oom:
    snprintf(err, errlen, "out of memory setting up --documents");
fail:
    if (cat.res)
        PQclear(cat.res);
    cdc_buf_free(&sc.tables);
    docs_destroy(&d->base);
    return NULL;
}
