/* producer.c: pgcdc-producer's main loop. Reads the pgoutput stream,
 * turns each row change into an EVENTS.md record, hands it to Kafka, and
 * reports to PostgreSQL as flushed only what Kafka has acknowledged (with
 * everything before it), so a crash re-sends and never skips.
 *
 * The loop has explicit deadlines in the manner of pg_recvlogical: the next
 * status update, an immediate reply when the server asks for one, and a
 * stop reason. When librdkafka's queue is full the loop stops reading WAL
 * (the walsender then waits on TCP) and only serves Kafka and status
 * updates, which bounds memory whatever the transaction size. */
#include "producer.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog.h"
#include "cdc_buf.h"
#include "cdc_clock.h"
#include "cdc_event.h"
#include "cdc_log.h"
#include "cdc_lsn.h"
#include "cdc_metrics.h"
#include "cdc_signal.h"
#include "change.h"
#include "failover.h"
#include "columns.h"
#include "flushpos.h"
#include "heartbeat.h"
#include "kafka_out.h"
#include "outbox.h"
#include "pg_error.h"
#include "pgoutput.h"
#include "publication.h"
#include "relcache.h"
#include "replication.h"
#include "resnapshot.h"
#include "slot.h"
#include "snapshot.h"
#include "txnspool.h"

#define PG_EPOCH_MS 946684800000LL
#define TOPIC_TIMEOUT_MS 30000
#define SHUTDOWN_FLUSH_MS 30000
#define FATAL_FLUSH_MS 5000
/* How long a clean stop waits for the walsender to end the stream. */
#define END_STREAM_MS 5000
/* Shortest gap between two flush positions reported unasked: every report
 * is work for the walsender, which is the pipeline's bottleneck, and a
 * crash re-sends at most this much more. */
#define STATUS_MIN_GAP_MS 100
/* How long an update that moved a row may wait for its transaction to be
 * visible to the catalog connection (fetch_moved_row). */
#define FETCH_VISIBLE_MS 10000
#define BACKOFF_MIN_MS 500
/* A stream that broke sooner than this is reconnected after a pause. */
#define STREAM_LASTED_MS 5000
#define BACKOFF_MAX_MS 30000

typedef enum stop_reason {
    RUNNING = 0,
    STOP_SIGNAL,      /* SIGTERM/SIGINT: clean exit 0 */
    STOP_ENDPOS,      /* --endpos reached: clean exit 0 */
    STOP_FATAL,       /* a record Kafka refuses for good, a decoding error: exit 1 */
    STOP_RECONNECT,   /* connection lost: reconnect with backoff */
    STOP_KAFKA_FATAL, /* the idempotent producer failed for good: a new one, then reconnect */
} stop_reason;

/* Where a table's changes go, and its names for messages about them. One
 * per table for the life of the Kafka producer (not per relation entry,
 * which ALTER TABLE and reconnects replace), so the names a record in
 * flight points to stay valid and a renamed topic is logged once. */
typedef struct table_out {
    struct table_out *next;
    kafka_topic *topic;
    char *schema;
    char *table;
    bool warned_compact;     /* --tombstones: what compaction costs it, said once */
} table_out;

/* What a produced record needs to find its way back in the delivery
 * report: its transaction, and what to say if Kafka refuses it. */
typedef struct record_ref {
    flushpos_txn *txn;
    uint64_t lsn;
    const table_out *tab;    /* NULL: not a table's change (outbox, marker) */
    bool is_marker;          /* a --on-oversize=dlq marker */
    struct record_ref *next_spare;
} record_ref;

/* A record Kafka refused for good, whose --on-oversize=dlq marker is still
 * to be written. Its reference keeps its transaction unacknowledged, so the
 * position cannot pass it until the marker is acknowledged (or the program
 * stops: then the position stays before it). Queued from the delivery
 * callback, which must not produce (a full queue would need the poll that
 * is calling it), and written by the loop (markers_send). */
typedef struct pending_marker {
    struct pending_marker *next;
    record_ref *ref;
    char *topic;
    void *key;               /* NULL: a keyless record */
    size_t keylen;
    size_t size;
    char reason[160];
} pending_marker;

typedef struct producer {
    const cdc_config *cfg;
    const char *slot;
    const char *publication;
    const char *prefix;
    const char *dlq_topic;
    bool tombstones;
    bool oversize_to_dlq;
    uint64_t endpos;         /* 0: none */
    int64_t status_interval_ms;

    catalog *cat;
    repl_conn *repl;
    kafka_out *kafka;
    table_out *tables;       /* topics of p->kafka by table */
    relcache *rels;
    change_builder builder;
    pgoutput_decoder decoder;
    flushpos flush;

    char dbname[256];
    uint64_t received;       /* highest WAL position seen from the server */
    uint64_t reported;       /* flush position last sent */
    int64_t next_status_ms;
    int64_t last_status_ms;
    record_ref *spare_refs;  /* delivered records' references, for reuse */
    pending_marker *markers, **markers_tail;
    uint64_t nmarkers;

    /* Transactions streamed before their commit wait here (txnspool.h). */
    txnspool_set spools;

    /* The transaction being received. */
    bool in_txn;
    uint64_t txn_final_lsn;
    int64_t txn_commit_ms;
    uint32_t txn_xid;
    int64_t txn_seq;

    cdc_buf value;
    cdc_buf key;
    cdc_buf topic;

    stop_reason stop;
    char stop_err[1024];
    bool streamed;            /* a stream was started once: there is a position to report */
    bool in_stream;           /* p->repl is streaming (status updates may be sent) */
    bool slot_seen;           /* the slot existed (or was made) at an earlier connection */

    uint64_t changes;
    uint64_t keyless;         /* of them without a record key: sinks skip these */
    uint64_t txns;
    uint64_t server_wal_end;  /* newest end of WAL the server told us */

    /* The transactional outbox (outbox.h, docs/outbox.md). */
    outbox *outbox;
    cdc_metric *m_outbox_events, *m_outbox_dead;

    /* Columns left out or hashed (columns.h); NULL: none. */
    colpolicy *policy;

    /* Initial snapshot, re-snapshots and heartbeats (snapshot.h,
     * resnapshot.h, heartbeat.h). */
    snapshot *snap;
    resnap *resnap;
    heartbeat hb;

    /* /metrics */
    cdc_metric *m_changes, *m_bytes, *m_txns, *m_confirmed, *m_lag, *m_queue,
        *m_delivery_errors, *m_reconnects;
} producer;

static void metrics_register(producer *p)
{
    p->m_changes = cdc_metrics_counter("pgcdc_producer_changes_total",
                                       "Row changes produced to Kafka.", NULL);
    p->m_bytes = cdc_metrics_counter("pgcdc_producer_bytes_total",
                                     "Bytes of event values produced to Kafka.", NULL);
    p->m_txns = cdc_metrics_counter("pgcdc_producer_transactions_total",
                                    "Transactions received from PostgreSQL.", NULL);
    p->m_confirmed = cdc_metrics_gauge("pgcdc_producer_confirmed_lsn",
                                       "WAL position confirmed to PostgreSQL as flushed.", NULL);
    p->m_lag = cdc_metrics_gauge("pgcdc_producer_replication_lag_bytes",
                                 "Server WAL end minus the confirmed position.", NULL);
    p->m_queue = cdc_metrics_gauge("pgcdc_producer_queue_depth",
                                   "Records handed to librdkafka and not yet acknowledged.", NULL);
    p->m_delivery_errors = cdc_metrics_counter("pgcdc_producer_delivery_errors_total",
                                               "Records Kafka refused.", NULL);
    p->m_reconnects = cdc_metrics_counter("pgcdc_producer_reconnects_total",
                                          "Reconnections to PostgreSQL or Kafka.", NULL);
}

static void metrics_update(producer *p)
{
    cdc_gauge_set(p->m_confirmed, (double)p->flush.confirmed);
    uint64_t end = p->server_wal_end > p->received ? p->server_wal_end : p->received;
    cdc_gauge_set(p->m_lag, end > p->flush.confirmed ? (double)(end - p->flush.confirmed) : 0);
    cdc_gauge_set(p->m_queue, (double)p->flush.outstanding);
}

static void fail(producer *p, stop_reason why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(producer *p, stop_reason why, const char *fmt, ...)
{
    if (p->stop == STOP_FATAL || (p->stop == STOP_KAFKA_FATAL && why == STOP_RECONNECT))
        return; /* keep the first fatal reason; a new Kafka producer is due either way */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->stop_err, sizeof p->stop_err, fmt, ap);
    va_end(ap);
    p->stop = why;
}

/* Kafka refuses this record whatever we do: retrying cannot help. */
static bool permanent_refusal(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
        return true;
    default:
        return false;
    }
}

/* librdkafka gave up on a record for its own state, not the record's: a
 * fatal idempotence error (librdkafka < 2.3 raises "out of order sequence
 * number" after a leader change, librdkafka#4438), or a topic that a
 * lagging broker's metadata left out (librdkafka#4401, seen on a
 * three-broker cluster: "partition count changed from 6 to 0"). A restarting
 * broker is transient, so these are too. */
static bool kafka_gave_up(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR__FATAL || e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
           e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
}

static int marker_queue(producer *p, record_ref *ref, const char *topic, const void *key,
                        size_t keylen, size_t size, const char *reason);

/* One reference per record in flight: recycled, as there are tens of
 * thousands per second. */
static record_ref *ref_new(producer *p)
{
    record_ref *r = p->spare_refs;
    if (r) {
        p->spare_refs = r->next_spare;
        return r;
    }
    return malloc(sizeof *r);
}

static void ref_release(producer *p, record_ref *r)
{
    r->next_spare = p->spare_refs;
    p->spare_refs = r;
}

static void refs_free(record_ref *r)
{
    while (r) {
        record_ref *next = r->next_spare;
        free(r);
        r = next;
    }
}

/* "table s.t (topic x), key {"id":1}, lsn 0/16B3748 (23803720)" for the
 * message of a refused record. */
static void describe_record(char *buf, size_t len, const record_ref *ref, const char *topic,
                            const void *key, size_t keylen)
{
    char lsn[CDC_LSN_BUFSZ];
    int n = ref->tab ? snprintf(buf, len, "table %s.%s (topic %s)", ref->tab->schema,
                                ref->tab->table, topic)
                     : snprintf(buf, len, "topic %s", topic);
    if (n < 0 || (size_t)n >= len)
        return;
    snprintf(buf + n, len - (size_t)n, ", key %.*s, lsn %s (%" PRIu64 ")",
             key ? (keylen > 512 ? 512 : (int)keylen) : 4, key ? (const char *)key : "null",
             cdc_lsn_format(ref->lsn, lsn), ref->lsn);
}

static void on_delivered(void *ctx, const rd_kafka_message_t *m)
{
    producer *p = ctx;
    if (snapshot_on_delivered(p->snap, m))
        return;
    record_ref *ref = m->_private;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        flushpos_ack(&p->flush, ref->txn);
        ref_release(p, ref);
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        /* Given up on by kafka_out_purge: read again from the slot. */
        flushpos_refused(&p->flush, ref->txn);
        ref_release(p, ref);
        return;
    }
    const char *topic = rd_kafka_topic_name(m->rkt);
    cdc_counter_add(p->m_delivery_errors, 1);
    char ferr[512];
    if (kafka_gave_up(m->err) ||
        kafka_out_fatal(p->kafka, ferr, sizeof ferr) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Not the record's fault: a new producer sends it again, read
         * from the slot (the position stays before it). */
        fail(p, STOP_KAFKA_FATAL, "the Kafka producer failed on a record of %s: %s", topic,
             rd_kafka_err2str(m->err));
        flushpos_refused(&p->flush, ref->txn);
        ref_release(p, ref);
        return;
    }
    if (!ref->is_marker && p->oversize_to_dlq && permanent_refusal(m->err)) {
        /* The marker takes over the record's place in its transaction. */
        if (marker_queue(p, ref, topic, m->key, m->key_len, m->len, rd_kafka_err2str(m->err)) == 0)
            return;
    }
    char what[1024];
    describe_record(what, sizeof what, ref, topic, m->key, m->key_len);
    fail(p, STOP_FATAL, "Kafka refused the record of %s, %zu bytes: %s%s", what, m->len,
         rd_kafka_err2str(m->err),
         p->oversize_to_dlq || ref->is_marker ? "" : " (--on-oversize=dlq would dead-letter it)");
    /* Never acknowledged: the position stays before it. */
    flushpos_refused(&p->flush, ref->txn);
    ref_release(p, ref);
}

static void marker_free(pending_marker *m)
{
    free(m->topic);
    free(m->key);
    free(m);
}

static int marker_queue(producer *p, record_ref *ref, const char *topic, const void *key,
                        size_t keylen, size_t size, const char *reason)
{
    pending_marker *m = calloc(1, sizeof *m);
    if (!m || !(m->topic = strdup(topic)) || (key && !(m->key = malloc(keylen ? keylen : 1)))) {
        if (m)
            marker_free(m);
        fail(p, STOP_FATAL, "cannot dead-letter a refused record: out of memory");
        return -1;
    }
    if (key)
        memcpy(m->key, key, keylen);
    m->ref = ref;
    m->keylen = keylen;
    m->size = size;
    snprintf(m->reason, sizeof m->reason, "%s", reason);
    ref->is_marker = true;
    *p->markers_tail = m;
    p->markers_tail = &m->next;
    p->nmarkers++;
    return 0;
}

/* A small JSON marker in place of a record Kafka would not take:
 * {"schema","table","topic","key","lsn","size","reason"}, keyed like the
 * record, so it says what to look up in PostgreSQL. */
static int marker_encode(const pending_marker *m, cdc_buf *out)
{
    const record_ref *ref = m->ref;
    int rc = cdc_buf_puts(out, "{\"schema\":");
    if (ref->tab) {
        rc |= pgvalue_append_json_string(out, ref->tab->schema, strlen(ref->tab->schema));
        rc |= cdc_buf_puts(out, ",\"table\":");
        rc |= pgvalue_append_json_string(out, ref->tab->table, strlen(ref->tab->table));
    } else {
        rc |= cdc_buf_puts(out, "null,\"table\":null");
    }
    rc |= cdc_buf_puts(out, ",\"topic\":");
    rc |= pgvalue_append_json_string(out, m->topic, strlen(m->topic));
    rc |= cdc_buf_puts(out, ",\"key\":");
    /* Table keys are JSON objects: embedded as such; anything else as text. */
    char jerr[64];
    if (!m->key)
        rc |= cdc_buf_puts(out, "null");
    else if (ref->tab && cdc_json_validate(m->key, m->keylen, jerr, sizeof jerr) == 0)
        rc |= cdc_buf_append(out, m->key, m->keylen);
    else
        rc |= pgvalue_append_json_string(out, m->key, m->keylen);
    rc |= cdc_buf_printf(out, ",\"lsn\":%" PRIu64 ",\"size\":%zu,\"reason\":", ref->lsn,
                         m->size);
    rc |= pgvalue_append_json_string(out, m->reason, strlen(m->reason));
    rc |= cdc_buf_putc(out, '}');
    return rc < 0 ? -1 : 0;
}

/* Writes the queued markers, in order, as far as the client queue takes
 * them; called from the loop, never from a delivery callback. A marker
 * that cannot be written at all stops the program (its record is
 * refused: the position stays before it). */
static void markers_send(producer *p)
{
    while (p->markers && p->stop != STOP_FATAL) {
        pending_marker *m = p->markers;
        char err[512], what[1024];
        describe_record(what, sizeof what, m->ref, m->topic, m->key, m->keylen);
        kafka_topic *dlq;
        cdc_buf marker = CDC_BUF_INIT;
        rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (kafka_out_topic(p->kafka, p->dlq_topic, TOPIC_TIMEOUT_MS, &dlq, err, sizeof err) < 0) {
            if (cdc_signal_stop_requested())
                return; /* gave up for the stop: dropped at the end of drain */
            fail(p, STOP_FATAL, "cannot dead-letter the refused record of %s: %s", what, err);
        } else if (marker_encode(m, &marker) < 0) {
            fail(p, STOP_FATAL, "cannot dead-letter the refused record of %s: out of memory",
                 what);
        } else if ((e = kafka_out_produce(p->kafka, dlq, RD_KAFKA_PARTITION_UA, m->key,
                                          m->keylen, marker.data, marker.len, m->ref->lsn,
                                          m->ref)) == RD_KAFKA_RESP_ERR__QUEUE_FULL ||
                   e == RD_KAFKA_RESP_ERR__FATAL) {
            /* Full: the loop polls, and this comes again. Fatal: the loop
             * replaces the Kafka producer, the record is read again. */
            cdc_buf_free(&marker);
            return;
        } else if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fail(p, STOP_FATAL, "cannot dead-letter the refused record of %s: %s", what,
                 rd_kafka_err2str(e));
        } else {
            cdc_log_warn("record of %s, %zu bytes, refused by Kafka (%s): marker written to %s",
                         what, m->size, m->reason, p->dlq_topic);
        }
        cdc_buf_free(&marker);
        if (p->stop == STOP_FATAL) {
            flushpos_refused(&p->flush, m->ref->txn);
            ref_release(p, m->ref);
        }
        p->markers = m->next;
        if (!p->markers)
            p->markers_tail = &p->markers;
        p->nmarkers--;
        marker_free(m);
    }
}

/* Markers never written (the program stops, or its Kafka producer is
 * replaced): their records stay unconfirmed. */
static void markers_drop(producer *p)
{
    while (p->markers) {
        pending_marker *m = p->markers;
        p->markers = m->next;
        flushpos_refused(&p->flush, m->ref->txn);
        ref_release(p, m->ref);
        marker_free(m);
    }
    p->markers_tail = &p->markers;
    p->nmarkers = 0;
}

/* A new flush position is worth reporting (not too often), or the status
 * interval has passed. */
static bool status_due(const producer *p)
{
    int64_t now = cdc_clock_mono_ms();
    return now >= p->next_status_ms ||
           (p->flush.confirmed != p->reported && now - p->last_status_ms >= STATUS_MIN_GAP_MS);
}

static void send_status(producer *p, bool reply_requested)
{
    char err[512];
    /* Only a started stream takes status updates (not a connection still
     * being set up, e.g. while a lost slot is made again). */
    if (p->in_stream && repl_send_status(p->repl, p->received > p->flush.confirmed ? p->received
                                                                              : p->flush.confirmed,
                                    p->flush.confirmed, reply_requested, err, sizeof err) < 0) {
        fail(p, STOP_RECONNECT, "%s", err);
        return;
    }
    if (p->flush.confirmed != p->reported) {
        char lsn[CDC_LSN_BUFSZ];
        cdc_log_debug("confirmed %s to PostgreSQL", cdc_lsn_format(p->flush.confirmed, lsn));
    }
    p->reported = p->flush.confirmed;
    p->last_status_ms = cdc_clock_mono_ms();
    p->next_status_ms = p->last_status_ms + p->status_interval_ms;
    metrics_update(p);
}

/* Hands one record to Kafka, waiting (serving delivery reports and status
 * updates) while the client queue is full. */
static int produce_with_headers(producer *p, kafka_topic *t, const table_out *tab,
                                int32_t partition, const cdc_buf *key, const cdc_buf *value,
                                uint64_t lsn, const kafka_out_header *hdrs, size_t nhdrs)
{
    record_ref *ref = ref_new(p);
    if (!ref) {
        fail(p, STOP_FATAL, "out of memory");
        return -1;
    }
    ref->lsn = lsn;
    ref->tab = tab;
    ref->is_marker = false;
    ref->txn = flushpos_sent(&p->flush);
    if (!ref->txn) {
        ref_release(p, ref);
        fail(p, STOP_FATAL, "out of memory");
        return -1;
    }
    for (;;) {
        rd_kafka_resp_err_t e = kafka_out_produce_headers(p->kafka, t, partition,
                                                  key ? key->data : NULL, key ? key->len : 0,
                                                  value ? value->data : NULL, value ? value->len : 0,
                                                  lsn, hdrs, nhdrs, ref);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            kafka_out_poll(p->kafka, 50);
            markers_send(p);
            if (status_due(p))
                send_status(p, false);
            if (p->stop == STOP_FATAL || cdc_signal_stop_requested()) {
                /* The queue may stay full for good (Kafka away): stop
                 * without this record; the position stays before it. */
                if (p->stop != STOP_FATAL)
                    p->stop = STOP_SIGNAL;
                flushpos_refused(&p->flush, ref->txn);
                ref_release(p, ref);
                return -1;
            }
            continue;
        }
        if (kafka_gave_up(e)) {
            /* The producer failed, not the record (a fatal idempotence error
             * raised before this produce call): a new producer sends it
             * again, read from the slot. */
            fail(p, STOP_KAFKA_FATAL, "the Kafka producer failed on a record of %s: %s",
                 kafka_topic_name(t), rd_kafka_err2str(e));
            flushpos_refused(&p->flush, ref->txn);
            ref_release(p, ref);
            return -1;
        }
        if (permanent_refusal(e) && p->oversize_to_dlq) {
            if (marker_queue(p, ref, kafka_topic_name(t), key ? key->data : NULL,
                             key ? key->len : 0, value ? value->len : 0,
                             rd_kafka_err2str(e)) == 0) {
                markers_send(p);
                return p->stop == STOP_FATAL ? -1 : 0;
            }
            flushpos_refused(&p->flush, ref->txn);
            ref_release(p, ref);
            return -1;
        }
        char what[1024];
        describe_record(what, sizeof what, ref, kafka_topic_name(t), key ? key->data : NULL,
                        key ? key->len : 0);
        fail(p, STOP_FATAL, "Kafka refused the record of %s, %zu bytes: %s%s", what,
             value ? value->len : 0, rd_kafka_err2str(e),
             permanent_refusal(e) ? " (--on-oversize=dlq would dead-letter it)" : "");
        /* Never acknowledged: the position stays before it. */
        flushpos_refused(&p->flush, ref->txn);
        ref_release(p, ref);
        return -1;
    }
}

static int produce(producer *p, const table_out *tab, int32_t partition, const cdc_buf *key,
                   const cdc_buf *value, uint64_t lsn)
{
    return produce_with_headers(p, tab->topic, tab, partition, key, value, lsn, NULL, 0);
}

static void tables_free(table_out *t)
{
    while (t) {
        table_out *next = t->next;
        free(t->schema);
        free(t->table);
        free(t);
        t = next;
    }
}

static table_out *topic_for(producer *p, relcache_rel *rel)
{
    if (rel->user)
        return rel->user;
    for (table_out *t = p->tables; t; t = t->next) {
        if (strcmp(t->schema, rel->nspname) == 0 && strcmp(t->table, rel->relname) == 0) {
            rel->user = t;
            return t;
        }
    }
    bool changed = false;
    cdc_buf_reset(&p->topic);
    if (cdc_topic_name(p->prefix, rel->nspname, rel->relname, &p->topic, &changed) < 0) {
        fail(p, STOP_FATAL, "cannot name the topic of %s.%s", rel->nspname, rel->relname);
        return NULL;
    }
    char err[512];
    kafka_topic *kt;
    if (kafka_out_topic(p->kafka, p->topic.data, TOPIC_TIMEOUT_MS, &kt, err, sizeof err) < 0) {
        fail(p, STOP_RECONNECT, "%s", err);
        return NULL;
    }
    table_out *t = calloc(1, sizeof *t);
    if (!t || !(t->schema = strdup(rel->nspname)) || !(t->table = strdup(rel->relname))) {
        tables_free(t);
        fail(p, STOP_FATAL, "out of memory");
        return NULL;
    }
    if (changed)
        cdc_log_warn("table %s.%s streams to topic %s: Kafka does not accept its name as is",
                     rel->nspname, rel->relname, p->topic.data);
    t->topic = kt;
    t->next = p->tables;
    p->tables = t;
    rel->user = t; /* owned by p->tables, which outlives relation entries */
    return t;
}

static void fill_source(producer *p, cdc_source *src, uint64_t lsn)
{
    *src = (cdc_source){
        .db = p->dbname,
        .lsn = lsn,
        .commit_lsn = p->txn_final_lsn,
        .txid = p->txn_xid,
        .seq = p->txn_seq++,
        .ts_ms = p->txn_commit_ms,
        .snapshot = false,
    };
}

/* ---- the transactional outbox (outbox.h, docs/outbox.md) ---------- */

static int produce_outbox(producer *p, const outbox_record *r, uint64_t lsn)
{
    char err[512];
    kafka_topic *t;
    if (r->topic_renamed)
        cdc_log_warn("outbox events of aggregate type %s stream to topic %s: Kafka does not "
                     "accept its name as is", r->aggregate_type, r->topic);
    if (kafka_out_topic(p->kafka, r->topic, TOPIC_TIMEOUT_MS, &t, err, sizeof err) < 0) {
        fail(p, STOP_RECONNECT, "%s", err);
        return -1;
    }
    kafka_out_header *hdrs = r->nheaders ? calloc(r->nheaders, sizeof *hdrs) : NULL;
    cdc_buf_reset(&p->key); /* a NUL-terminated copy, as error messages print it */
    if ((r->nheaders && !hdrs) || (r->key && cdc_buf_append(&p->key, r->key, r->key_len) < 0)) {
        free(hdrs);
        fail(p, STOP_FATAL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < r->nheaders; i++)
        hdrs[i] = (kafka_out_header){r->headers[i].name, r->headers[i].name_len,
                                     r->headers[i].value, r->headers[i].value_len};
    cdc_buf value = {(char *)r->value, r->value_len, r->value_len};
    int rc = produce_with_headers(p, t, NULL, RD_KAFKA_PARTITION_UA, r->key ? &p->key : NULL,
                                  r->value ? &value : NULL, lsn, hdrs, r->nheaders);
    free(hdrs);
    if (rc < 0)
        return -1;
    if (r->dead) {
        cdc_log_warn("outbox event at %" PRIu64 " written to dead-letter topic %s: %s", lsn,
                     r->topic, r->reason);
        cdc_counter_add(p->m_outbox_dead, 1);
    } else {
        cdc_counter_add(p->m_outbox_events, 1);
        cdc_counter_add(p->m_bytes, r->value_len);
    }
    return 0;
}

/* Inserts into an outbox table are events; its updates and deletes are
 * ignored, so applications may delete the rows right after inserting them.
 * A dead letter carries the insert's EVENTS.md event as its content. */
static int emit_outbox_row(producer *p, const pgoutput_msg *m, const cdc_event *ev,
                           const relcache_rel *rel, uint64_t lsn)
{
    if (m->type != PGOUTPUT_INSERT)
        return 0;
    char err[1024];
    outbox_record r;
    if (outbox_route_row(p->outbox, rel, &m->u.insert.newtup, &r, err, sizeof err) < 0) {
        fail(p, STOP_FATAL, "%s", err);
        return -1;
    }
    if (r.dead) {
        cdc_buf_reset(&p->value);
        if (cdc_event_encode(ev, &p->value, err, sizeof err) < 0) {
            fail(p, STOP_FATAL, "cannot encode the event of %s.%s at %" PRIu64 ": %s",
                 rel->nspname, rel->relname, lsn, err);
            return -1;
        }
        r.value = p->value.data;
        r.value_len = p->value.len;
    }
    return produce_outbox(p, &r, lsn);
}

/* pg_logical_emit_message(true, <prefix>, ...) arrives between its
 * transaction's Begin and Commit and counts in its flush position like a
 * row; a non-transactional one is tracked alone (flushpos_sent). */
static int emit_outbox_message(producer *p, const pgoutput_msg *m)
{
    if (!p->outbox || !outbox_has_message_prefix(p->outbox, m->u.message.prefix))
        return 0;
    char err[512];
    outbox_record r;
    if (outbox_route_message(p->outbox, m->u.message.content, m->u.message.len, &r, err,
                             sizeof err) < 0) {
        fail(p, STOP_FATAL, "%s", err);
        return -1;
    }
    return produce_outbox(p, &r, m->u.message.lsn);
}

static int outbox_setup(producer *p, char *err, size_t errlen)
{
    const char *const *tables, *const *columns;
    outbox_settings s = {
        .topic_prefix = p->prefix,
        .message_prefix = cdc_config_str(p->cfg, "outbox-message-prefix"),
        .dlq_topic = p->dlq_topic,
    };
    s.ntables = cdc_config_list(p->cfg, "outbox-table", &tables);
    s.tables = tables;
    s.ncolumns = cdc_config_list(p->cfg, "outbox-columns", &columns);
    s.columns = columns;
    if (outbox_new(&s, &p->outbox, err, errlen) < 0)
        return -1;
    p->m_outbox_events = cdc_metrics_counter("pgcdc_producer_outbox_events_total",
                                             "Outbox events produced to their topics.", NULL);
    p->m_outbox_dead = cdc_metrics_counter("pgcdc_producer_outbox_dead_letters_total",
                                           "Malformed outbox events written to the dead-letter "
                                           "topic.", NULL);
    if (s.ntables > 0)
        cdc_log_info("outbox tables: %s", cdc_config_str(p->cfg, "outbox-table"));
    return 0;
}

/* ---- snapshots and heartbeats (snapshot.h, resnapshot.h, heartbeat.h) -- */

/* A re-snapshot's chunk row, produced within the transaction of its closing
 * watermark (resnapshot.c says why that is where it belongs). */
static int emit_resnapshot_row(void *ctx, kafka_topic *topic, const cdc_buf *key,
                               const cdc_buf *value, uint64_t lsn)
{
    producer *p = ctx;
    if (produce_with_headers(p, topic, NULL, RD_KAFKA_PARTITION_UA, key, value, lsn, NULL, 0) < 0)
        return -1;
    cdc_counter_add(p->m_bytes, value->len);
    return 0;
}

static int snapshots_setup(producer *p, char *err, size_t errlen)
{
    const cdc_config *cfg = p->cfg;
    snapshot_settings ss = {
        .conninfo = cdc_config_str(cfg, "pg"),
        .slot = p->slot,
        .publication = p->publication,
        .topic_prefix = p->prefix,
        .mode = cdc_config_str(cfg, "snapshot"),
        .workers = (int)cdc_config_int(cfg, "snapshot-workers"),
        .chunk_rows = (long)cdc_config_int(cfg, "snapshot-chunk-rows"),
        .create_slot = cdc_config_bool(cfg, "create-slot"),
        .policy = p->policy,
    };
    if (snapshot_new(&ss, &p->snap, err, errlen) < 0)
        return -1;
    const char *const *tables;
    resnap_settings rs = {
        .conninfo = ss.conninfo,
        .publication = p->publication,
        .topic_prefix = p->prefix,
        .signal_table = cdc_config_str(cfg, "signal-table"),
        .chunk_rows = ss.chunk_rows,
        .ntables = cdc_config_list(cfg, "resnapshot", &tables),
    };
    rs.tables = tables;
    rs.policy = p->policy;
    if (resnap_new(&rs, &p->flush, emit_resnapshot_row, p, &p->resnap, err, errlen) < 0)
        return -1;
    heartbeat_init(&p->hb, cdc_config_int(cfg, "heartbeat-interval"));
    return 0;
}

/* What a log-compacted topic (--tombstones) needs besides the event just
 * produced. Compaction keeps only the latest record of each key, so a key
 * change's delete of the old key, which lives in the new key's record, goes
 * with that record once the new key is written again: the old key gets its
 * own delete, and a tombstone after it, in its own partition (EVENTS.md).
 * What nothing here can mend is said once per table: unchanged TOAST values
 * are in no record that is sure to stay, and a record without a key is
 * refused by a compacted topic (Kafka only says it failed to validate it). */
static int compacted_extras(producer *p, table_out *t, const cdc_event *ev, const cdc_row *key)
{
    if (!key && !t->warned_compact) {
        cdc_log_warn("%s.%s has no key (no replica identity): a log-compacted topic refuses "
                     "its records", t->schema, t->table);
        t->warned_compact = true;
    } else if (ev->n_unchanged_toast > 0 && !t->warned_compact) {
        cdc_log_warn("%s.%s: an update left unchanged TOAST column %s out of its event; once "
                     "compaction has removed the older records of such a row, a replay from "
                     "the topic lacks that value: REPLICA IDENTITY FULL puts it in every update",
                     t->schema, t->table, ev->unchanged_toast[0]);
        t->warned_compact = true;
    }
    const cdc_row *old = ev->op == 'u' ? change_moved_from(&p->builder) : NULL;
    if (!old)
        return 0;
    char err[512];
    cdc_event del = *ev;
    del.op = 'd';
    del.after = NULL;
    del.unchanged_toast = NULL;
    del.n_unchanged_toast = 0;
    cdc_buf_reset(&p->value);
    cdc_buf_reset(&p->key);
    if (cdc_event_encode(&del, &p->value, err, sizeof err) < 0 ||
        cdc_key_encode(old, &p->key, err, sizeof err) < 0) {
        fail(p, STOP_FATAL, "cannot encode the delete of the old key of %s.%s at %" PRIu64
             ": %s", t->schema, t->table, ev->source.lsn, err);
        return -1;
    }
    if (produce(p, t, RD_KAFKA_PARTITION_UA, &p->key, &p->value, ev->source.lsn) < 0 ||
        produce(p, t, RD_KAFKA_PARTITION_UA, &p->key, NULL, ev->source.lsn) < 0)
        return -1;
    cdc_counter_add(p->m_bytes, p->value.len);
    return 0;
}

static int emit_row_change(producer *p, const pgoutput_msg *m, uint64_t lsn)
{
    char err[1024];
    cdc_source src;
    fill_source(p, &src, lsn);
    cdc_event ev;
    const cdc_row *key = NULL;
    if (change_build(&p->builder, m, &src, &ev, &key, err, sizeof err) < 0) {
        if (cdc_signal_stop_requested() && p->stop == RUNNING)
            p->stop = STOP_SIGNAL; /* a catalog look-up gave up */
        else
            fail(p, STOP_FATAL, "cannot build the event at %" PRIu64 ": %s", lsn, err);
        return -1;
    }
    /* Stopped while it read the catalog (fetch_moved_row): not sent, the
     * transaction stays unconfirmed and is read again. */
    if (p->stop != RUNNING)
        return -1;
    ev.ts_ms = cdc_clock_wall_ms();
    uint32_t relid = m->type == PGOUTPUT_INSERT ? m->u.insert.relid
                   : m->type == PGOUTPUT_UPDATE ? m->u.update.relid
                                                : m->u.delete_.relid;
    relcache_rel *rel = relcache_get(p->rels, relid);
    resnap_observe_change(p->resnap, rel->nspname, rel->relname, &ev, key, p->txn_final_lsn);
    if (p->outbox && outbox_has_table(p->outbox, rel->nspname, rel->relname))
        return emit_outbox_row(p, m, &ev, rel, lsn);
    table_out *t = topic_for(p, rel);
    if (!t)
        return -1;
    if (!key)
        p->keyless++;
    cdc_buf_reset(&p->value);
    cdc_buf_reset(&p->key);
    if (cdc_event_encode(&ev, &p->value, err, sizeof err) < 0 ||
        (key && cdc_key_encode(key, &p->key, err, sizeof err) < 0)) {
        fail(p, STOP_FATAL, "cannot encode the event of %s.%s at %" PRIu64 ": %s",
             rel->nspname, rel->relname, lsn, err);
        return -1;
    }
    if (produce(p, t, RD_KAFKA_PARTITION_UA, key ? &p->key : NULL, &p->value, lsn) < 0)
        return -1;
    cdc_counter_add(p->m_changes, 1);
    cdc_counter_add(p->m_bytes, p->value.len);
    if (ev.op == 'd' && p->tombstones && key &&
        produce(p, t, RD_KAFKA_PARTITION_UA, &p->key, NULL, lsn) < 0)
        return -1;
    if (p->tombstones && compacted_extras(p, t, &ev, key) < 0)
        return -1;
    p->changes++;
    return 0;
}

/* A truncate is written to every partition so that each partition sees it
 * in order with the changes around it, keyed CHANGE_TRUNCATE_KEY: a
 * compacted topic refuses a null key, and keeps the latest truncate of each
 * partition, which removes all that the ones before it removed. */
static int emit_truncate(producer *p, const pgoutput_msg *m, uint64_t lsn)
{
    char err[1024];
    for (size_t i = 0; i < m->u.truncate.nrelids; i++) {
        cdc_source src;
        fill_source(p, &src, lsn);
        cdc_event ev;
        if (change_build_truncate(&p->builder, m, i, &src, &ev, err, sizeof err) < 0) {
            fail(p, STOP_FATAL, "cannot build the truncate event at %" PRIu64 ": %s", lsn, err);
            return -1;
        }
        ev.ts_ms = cdc_clock_wall_ms();
        relcache_rel *rel = relcache_get(p->rels, m->u.truncate.relids[i]);
        resnap_observe_change(p->resnap, rel->nspname, rel->relname, &ev, NULL,
                              p->txn_final_lsn);
        table_out *t = topic_for(p, rel);
        if (!t)
            return -1;
        cdc_buf_reset(&p->value);
        cdc_buf_reset(&p->key);
        if (cdc_buf_puts(&p->key, CHANGE_TRUNCATE_KEY) < 0) {
            fail(p, STOP_FATAL, "out of memory");
            return -1;
        }
        if (cdc_event_encode(&ev, &p->value, err, sizeof err) < 0) {
            fail(p, STOP_FATAL, "cannot encode the truncate of %s.%s: %s", rel->nspname,
                 rel->relname, err);
            return -1;
        }
        for (int32_t part = 0; part < kafka_topic_partitions(t->topic); part++)
            if (produce(p, t, part, &p->key, &p->value, lsn) < 0)
                return -1;
        p->changes++;
    }
    return 0;
}

/* catalog_wait_fn: while a catalog query or fetch_moved_row waits, Kafka's
 * acknowledgements and the server's status updates go on (a walsender that
 * hears nothing for wal_sender_timeout drops the stream). True: give up. */
static bool on_catalog_wait(void *ctx)
{
    producer *p = ctx;
    if (p->kafka)
        kafka_out_poll(p->kafka, 0);
    if (p->in_stream && status_due(p))
        send_status(p, false);
    return cdc_signal_stop_requested();
}

/* change_fetch_fn over the catalog connection: the TOAST values of a row
 * that an update moved to a new key (change.h says why). A failure only
 * loses those values, so it is logged and the event goes out without them. */
static int fetch_moved_row(void *ctx, const relcache_rel *rel, const char *const *keyvals,
                           const uint16_t *cols, size_t n, char **values)
{
    producer *p = ctx;
    char err[1024];
    const char **keycols = calloc(rel->nkey, sizeof *keycols);
    const char **names = calloc(n, sizeof *names);
    int rc = 0;
    if (keycols && names) {
        for (uint16_t k = 0; k < rel->nkey; k++)
            keycols[k] = rel->cols[rel->key[k]].name;
        for (size_t j = 0; j < n; j++)
            names[j] = rel->cols[cols[j]].name;
        /* Not visible yet: the committing session is a moment behind the
         * WAL it flushed; it catches up in microseconds, but not always.
         * The stream waits meanwhile, the server still hears from us. */
        int64_t deadline = cdc_clock_mono_ms() + FETCH_VISIBLE_MS;
        for (long pause_us = 2000;; pause_us = pause_us < 50000 ? pause_us * 2 : 50000) {
            rc = catalog_fetch_row(p->cat, rel->nspname, rel->relname, keycols, keyvals,
                                   rel->nkey, names, n, p->txn_xid, values, err, sizeof err);
            if (rc != 2)
                break;
            if (cdc_clock_mono_ms() >= deadline) {
                snprintf(err, sizeof err, "transaction %u is still not visible after %d s",
                         p->txn_xid, FETCH_VISIBLE_MS / 1000);
                rc = -1;
                break;
            }
            nanosleep(&(struct timespec){.tv_nsec = pause_us * 1000}, NULL);
            if (on_catalog_wait(p)) {
                rc = -1;
                break;
            }
        }
    } else {
        snprintf(err, sizeof err, "out of memory");
        rc = -1;
    }
    if (rc < 0 && cdc_signal_stop_requested())
        p->stop = p->stop == RUNNING ? STOP_SIGNAL : p->stop; /* the event is not sent */
    else if (rc < 0)
        cdc_log_warn("%s.%s: an update moved a row to a new key and its %zu unchanged TOAST "
                     "column(s) could not be read (%s): the event lists them as unchanged",
                     rel->nspname, rel->relname, n, err);
    else if (rc == 0)
        cdc_log_debug("%s.%s: a row moved to a new key is gone already; its unchanged TOAST "
                      "columns stay unchanged in the event", rel->nspname, rel->relname);
    free(keycols);
    free(names);
    return rc == 1 ? 1 : 0;
}

static int on_relation(producer *p, const pgoutput_msg *m)
{
    char err[512];
    relcache_rel *rel;
    if (relcache_put(p->rels, m, &rel, err, sizeof err) < 0) {
        fail(p, STOP_FATAL, "%s", err);
        return -1;
    }
    /* EVENTS.md "types": once per Relation message, then copied into each
     * event of the relation as is. */
    char **texts = NULL;
    if (catalog_type_texts(p->cat, rel, &texts, err, sizeof err) < 0) {
        fail(p, STOP_RECONNECT, "%s", err);
        return -1;
    }
    int trc = relcache_set_types(rel, (const char *const *)texts, err, sizeof err);
    catalog_free_names(texts, rel->ncols);
    if (trc < 0) {
        fail(p, STOP_FATAL, "%s", err);
        return -1;
    }
    if (rel->replident == 'f') {
        /* FULL flags every column; the record key is still the primary key. */
        char **names = NULL;
        int n = catalog_primary_key(p->cat, rel->oid, &names, err, sizeof err);
        if (n < 0) {
            fail(p, STOP_RECONNECT, "%s", err);
            return -1;
        }
        int rc = relcache_set_key(rel, (const char *const *)names, (size_t)n, err, sizeof err);
        catalog_free_names(names, n);
        if (rc < 0) {
            fail(p, STOP_FATAL, "%s", err);
            return -1;
        }
    }
    cdc_log_debug("relation %u %s.%s: %u columns, replica identity %c, %u key columns",
                  rel->oid, rel->nspname, rel->relname, rel->ncols, rel->replident, rel->nkey);
    return 0;
}

static void replay_streamed(producer *p, const pgoutput_msg *commit);
static void stream_control(producer *p, const pgoutput_msg *m, uint64_t wal_start);

/* One decoded message; wal_start is its WAL position. */
static void dispatch(producer *p, const pgoutput_msg *msg, uint64_t wal_start)
{
    pgoutput_msg m = *msg;
    switch (m.type) {
    case PGOUTPUT_BEGIN:
        if (p->endpos && m.u.begin.final_lsn > p->endpos) {
            p->stop = STOP_ENDPOS;
            return;
        }
        if (flushpos_begin(&p->flush) < 0) {
            fail(p, STOP_FATAL, "out of memory");
            return;
        }
        p->in_txn = true;
        p->txn_final_lsn = m.u.begin.final_lsn;
        p->txn_commit_ms = m.u.begin.commit_ts / 1000 + PG_EPOCH_MS;
        p->txn_xid = m.u.begin.xid;
        p->txn_seq = 0;
        break;
    case PGOUTPUT_COMMIT:
        flushpos_commit(&p->flush, m.u.commit.end_lsn);
        p->in_txn = false;
        p->txns++;
        cdc_counter_add(p->m_txns, 1);
        if (p->endpos && m.u.commit.end_lsn >= p->endpos)
            p->stop = STOP_ENDPOS;
        break;
    case PGOUTPUT_RELATION:
        on_relation(p, &m);
        break;
    case PGOUTPUT_INSERT:
    case PGOUTPUT_UPDATE:
    case PGOUTPUT_DELETE:
        emit_row_change(p, &m, wal_start);
        break;
    case PGOUTPUT_TRUNCATE:
        emit_truncate(p, &m, wal_start);
        break;
    case PGOUTPUT_MESSAGE: /* outbox events, re-snapshot watermarks; not changes */
        if (resnap_on_message(p->resnap, m.u.message.prefix, m.u.message.content,
                              m.u.message.len) == 0)
            emit_outbox_message(p, &m);
        break;
    case PGOUTPUT_STREAM_START:
    case PGOUTPUT_STREAM_STOP:
    case PGOUTPUT_STREAM_ABORT:
    case PGOUTPUT_STREAM_COMMIT:
        stream_control(p, &m, wal_start);
        break;
    case PGOUTPUT_ORIGIN:
    case PGOUTPUT_TYPE:   /* types are looked up in the catalog when first used */
        break;
    }
}

static void handle_message(producer *p, const repl_frame *f)
{
    char err[1024], lsn[CDC_LSN_BUFSZ];
    /* Inside a stream block: kept as is until the transaction commits. */
    if (p->spools.current && f->len > 0 && f->data[0] != PGOUTPUT_STREAM_STOP) {
        if (txnspool_add(&p->spools, f->wal_start, f->data, f->len, err, sizeof err) < 0)
            fail(p, STOP_FATAL, "at %s: %s", cdc_lsn_format(f->wal_start, lsn), err);
        return;
    }
    pgoutput_msg m;
    if (pgoutput_decode(&p->decoder, f->data, f->len, &m, err, sizeof err) < 0) {
        fail(p, STOP_FATAL, "at %s: %s", cdc_lsn_format(f->wal_start, lsn), err);
        return;
    }
    dispatch(p, &m, f->wal_start);
}

/* ---- transactions streamed before their commit (txnspool.h) -------- */

static void stream_control(producer *p, const pgoutput_msg *m, uint64_t wal_start)
{
    char err[1024], lsn[CDC_LSN_BUFSZ];
    int rc = 0;
    switch (m->type) {
    case PGOUTPUT_STREAM_START:
        rc = txnspool_start(&p->spools, m->u.stream_start.xid, m->u.stream_start.first_segment,
                            err, sizeof err);
        break;
    case PGOUTPUT_STREAM_STOP:
        rc = txnspool_stop(&p->spools, err, sizeof err);
        break;
    case PGOUTPUT_STREAM_ABORT:
        cdc_log_debug("streamed transaction %u: %s %u rolled back", m->u.stream_abort.xid,
                      m->u.stream_abort.subxid == m->u.stream_abort.xid ? "transaction"
                                                                        : "subtransaction",
                      m->u.stream_abort.subxid);
        rc = txnspool_abort(&p->spools, m->u.stream_abort.xid, m->u.stream_abort.subxid, err,
                            sizeof err);
        break;
    default:
        if (p->endpos && m->u.stream_commit.commit_lsn > p->endpos) {
            p->stop = STOP_ENDPOS;
            return;
        }
        replay_streamed(p, m);
        return;
    }
    if (rc < 0)
        fail(p, STOP_FATAL, "at %s: %s", cdc_lsn_format(wal_start, lsn), err);
}

/* What the loop does between frames, while a long replay keeps it away:
 * acknowledgements, markers, status updates (the walsender must hear from
 * us within wal_sender_timeout), a stop request. */
static void replay_housekeeping(producer *p)
{
    char ferr[512];
    if (cdc_signal_stop_requested()) {
        p->stop = p->stop == RUNNING ? STOP_SIGNAL : p->stop;
        return;
    }
    kafka_out_poll(p->kafka, 0);
    markers_send(p);
    if (status_due(p))
        send_status(p, false);
    if (kafka_out_fatal(p->kafka, ferr, sizeof ferr) != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail(p, STOP_KAFKA_FATAL, "the Kafka producer failed: %s", ferr);
}

/* Stream Commit: the transaction's messages, read back from its file, go
 * through dispatch as if it had come whole between Begin and Commit. A
 * stop meanwhile leaves it open: never confirmed, read again. */
static void replay_streamed(producer *p, const pgoutput_msg *c)
{
    char err[1024], lsn[CDC_LSN_BUFSZ];
    txnspool *s = txnspool_take(&p->spools, c->u.stream_commit.xid, err, sizeof err);
    if (!s) {
        fail(p, STOP_FATAL, "at %s: %s", cdc_lsn_format(c->u.stream_commit.commit_lsn, lsn),
             err);
        return;
    }
    cdc_log_info("transaction %u was streamed before its commit at %s: %" PRIu64 " messages "
                 "(%" PRIu64 " bytes) kept in $TMPDIR until now", c->u.stream_commit.xid,
                 cdc_lsn_format(c->u.stream_commit.commit_lsn, lsn), txnspool_messages(s),
                 txnspool_bytes(s));
    pgoutput_msg begin = {.type = PGOUTPUT_BEGIN};
    begin.u.begin.final_lsn = c->u.stream_commit.commit_lsn;
    begin.u.begin.commit_ts = c->u.stream_commit.commit_ts;
    begin.u.begin.xid = c->u.stream_commit.xid;
    dispatch(p, &begin, c->u.stream_commit.commit_lsn);
    uint64_t at;
    const uint8_t *msg;
    size_t len;
    int r = 0;
    for (uint64_t n = 1; p->stop == RUNNING &&
                         (r = txnspool_next(s, &at, &msg, &len, err, sizeof err)) == 1; n++) {
        pgoutput_msg m;
        if (pgoutput_decode_streamed(&p->decoder, msg, len, &m, err, sizeof err) < 0) {
            fail(p, STOP_FATAL, "at %s (streamed transaction %u): %s",
                 cdc_lsn_format(at, lsn), c->u.stream_commit.xid, err);
            break;
        }
        dispatch(p, &m, at);
        if (n % 256 == 0)
            replay_housekeeping(p);
    }
    if (r < 0)
        fail(p, STOP_FATAL, "%s", err);
    txnspool_free(s);
    if (p->stop != RUNNING)
        return;
    pgoutput_msg commit = {.type = PGOUTPUT_COMMIT};
    commit.u.commit.commit_lsn = c->u.stream_commit.commit_lsn;
    commit.u.commit.end_lsn = c->u.stream_commit.end_lsn;
    commit.u.commit.commit_ts = c->u.stream_commit.commit_ts;
    dispatch(p, &commit, c->u.stream_commit.end_lsn);
}

static void handle_frame(producer *p, const repl_frame *f)
{
    if (f->wal_end > p->server_wal_end)
        p->server_wal_end = f->wal_end;
    if (f->kind == 'w') {
        if (f->wal_start > p->received)
            p->received = f->wal_start;
        handle_message(p, f);
        return;
    }
    /* Keepalive. */
    if (f->wal_end > p->received && !p->in_txn)
        p->received = f->wal_end;
    if (!p->in_txn)
        flushpos_confirm_idle(&p->flush, f->wal_end);
    if (f->reply_requested)
        send_status(p, false);
    if (p->endpos && !p->in_txn && f->wal_end >= p->endpos)
        p->stop = STOP_ENDPOS;
}

/* Frames handled back to back, from what libpq has already read, before
 * the loop's housekeeping (delivery reports, status, signals, clocks) runs
 * again: once per frame it cost as much as a small change. */
#define FRAMES_PER_ROUND 256
/* After a round that emptied what had arrived, the loop waits this long
 * before it looks again. Under small transactions the walsender sends each
 * message as it decodes it, and waking for every one (poll, a context
 * switch, a socket read per message) was most of the producer's CPU per
 * change (perf under bench/e2e at 4,000 commits/s: two thirds in the
 * kernel); a millisecond gathers them at the cost of at most a millisecond
 * of latency. A backlog fills whole rounds and never waits. 2 ms did not
 * lower the CPU per change further (bench/e2e at 4,000/s: 20.3-21.7 us
 * against 19.7-22.9) and tripled the UPDATE -> event p50 (1.2 ms against
 * 0.4-0.6): what is left is librdkafka's broker thread and the stream's reads. */
#define GATHER_US 1000

/* Streams until a stop reason is set. */
static void stream(producer *p)
{
    char err[1024];
    p->next_status_ms = cdc_clock_mono_ms() + p->status_interval_ms;
    while (p->stop == RUNNING) {
        if (cdc_signal_stop_requested()) {
            p->stop = STOP_SIGNAL;
            break;
        }
        kafka_out_poll(p->kafka, 0);
        markers_send(p);
        if (status_due(p))
            send_status(p, false);
        if (p->stop != RUNNING)
            break;
        char ferr[512];
        if (kafka_out_fatal(p->kafka, ferr, sizeof ferr) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fail(p, STOP_KAFKA_FATAL, "the Kafka producer failed: %s", ferr);
            break;
        }
        heartbeat_tick(&p->hb, p->cat, cdc_clock_mono_ms());
        resnap_step(p->resnap, p->kafka, catalog_resolve_type, p->cat);
        int64_t wait = p->next_status_ms - cdc_clock_mono_ms();
        if (wait > 100)
            wait = 100;
        if (wait < 0)
            wait = 0;
        int handled = 0;
        while (handled < FRAMES_PER_ROUND && p->stop == RUNNING) {
            repl_frame f;
            int r = repl_read(p->repl, &f, handled == 0 ? (int)wait : 0, err, sizeof err);
            if (r < 0) {
                fail(p, r == PG_PERMANENT ? STOP_FATAL : STOP_RECONNECT, "%s", err);
                break;
            }
            if (r == 0)
                break;
            handle_frame(p, &f);
            handled++;
        }
        if (handled > 0)
            cdc_metrics_progress();
        if (handled > 0 && handled < FRAMES_PER_ROUND && p->stop == RUNNING) {
            struct timespec gather = {0, GATHER_US * 1000L};
            nanosleep(&gather, NULL);
        }
    }
}

/* Waits, serving Kafka and the server, until everything sent is
 * acknowledged or the deadline passes. Markers still queued stay queued
 * (counted in flush.outstanding): the caller drops them. */
static void drain(producer *p, int timeout_ms)
{
    int64_t deadline = cdc_clock_mono_ms() + timeout_ms;
    char ferr[512];
    while (p->flush.outstanding > 0 && cdc_clock_mono_ms() < deadline) {
        kafka_out_poll(p->kafka, 50);
        /* A failed producer takes no marker: do not wait for one. */
        if (kafka_out_fatal(p->kafka, ferr, sizeof ferr) != RD_KAFKA_RESP_ERR_NO_ERROR &&
            p->flush.outstanding <= p->nmarkers)
            break;
        markers_send(p);
        if (status_due(p))
            send_status(p, false);
    }
    kafka_out_poll(p->kafka, 0);
}

/* A failure of connect_and_start: retried, unless the call said that
 * retrying cannot help (PG_PERMANENT): then the program stops. */
static int start_failed(producer *p, int rc)
{
    if (rc == PG_PERMANENT)
        p->stop = STOP_FATAL;
    return -1;
}

/* The slot is not on the server: made for the first time, made again
 * (--snapshot when-needed, after everything of the old one is in Kafka,
 * with a new flush position), or refused (slot.h). Returns 0 to go on. */
static int slot_missing(producer *p, char *err, size_t errlen)
{
    char topic[512] = "";
    bool create = cdc_config_bool(p->cfg, "create-slot");
    if (create && !p->slot_seen) {
        int w = snapshot_written_topic(p->snap, p->kafka, topic, sizeof topic, err, errlen);
        if (w < 0)
            return -1;
        if (w == 0)
            topic[0] = '\0';
    }
    slot_missing_facts facts = {
        .slot = p->slot,
        .snapshot_mode = cdc_config_str(p->cfg, "snapshot"),
        .topic_prefix = p->prefix,
        .create_slot = create,
        .seen = p->slot_seen,
        .written_topic = topic[0] ? topic : NULL,
    };
    slot_verdict v = slot_judge_missing(&facts, err, errlen);
    if (v == SLOT_REFUSE)
        return PG_PERMANENT;
    if (v == SLOT_MAKE_FIRST)
        return 0;
    cdc_log_warn("%s", err);
    /* The old slot's transactions must not confirm anything of the new
     * one, whose positions may be lower (a promoted standby). */
    drain(p, SHUTDOWN_FLUSH_MS);
    if (p->flush.outstanding > 0) {
        snprintf(err, errlen, "waiting for Kafka to acknowledge %" PRIu64 " records of the lost "
                 "slot %s before making a new one", p->flush.outstanding, p->slot);
        return -1;
    }
    flushpos_free(&p->flush);
    flushpos_init(&p->flush, 0);
    p->reported = p->received = p->server_wal_end = 0;
    return 0;
}

static int connect_and_start(producer *p, char *err, size_t errlen)
{
    int rc;
    if (!p->cat) {
        if ((rc = catalog_connect(cdc_config_str(p->cfg, "pg"), &p->cat, err, errlen)) < 0)
            return start_failed(p, rc);
        catalog_set_wait(p->cat, on_catalog_wait, p);
    }
    if (cdc_config_bool(p->cfg, "create-publication")) {
        publication_spec spec = {.policy = p->policy};
        spec.ntables = cdc_config_list(p->cfg, "tables", &spec.tables);
        spec.nfilters = cdc_config_list(p->cfg, "row-filter", &spec.filters);
        if ((rc = publication_ensure(p->cat, p->publication, &spec, err, errlen)) < 0)
            return start_failed(p, rc);
    } else if ((rc = catalog_check_publication(p->cat, p->publication, err, errlen)) < 0) {
        return start_failed(p, rc);
    }
    /* Whoever made it: say what would make PostgreSQL refuse the
     * application's UPDATEs and DELETEs. */
    cdc_buf problems = CDC_BUF_INIT;
    if (publication_problems(p->cat, p->publication, &problems, err, errlen) > 0)
        cdc_log_warn("publication %s: %s", p->publication, problems.data);
    cdc_buf_free(&problems);
    if ((rc = columns_check(p->cat, p->policy, err, errlen)) < 0)
        return start_failed(p, rc);
    if ((rc = repl_connect(cdc_config_str(p->cfg, "pg"), &p->repl, err, errlen)) < 0)
        return start_failed(p, rc);
    uint64_t xlogpos;
    if ((rc = repl_identify(p->repl, &xlogpos, p->dbname, sizeof p->dbname, err, errlen)) < 0)
        return start_failed(p, rc);
    uint64_t confirmed;
    int exists = catalog_slot(p->cat, p->slot, &confirmed, err, errlen);
    if (exists < 0)
        return start_failed(p, exists);
    if (!exists && (rc = slot_missing(p, err, errlen)) < 0)
        return start_failed(p, rc);
    /* When an initial snapshot is due it creates the slot and reads every
     * table before anything is streamed (snapshot.c). */
    if ((rc = snapshot_before_stream(p->snap, p->repl, p->dbname, p->kafka,
                                     catalog_resolve_type, p->cat, &exists, &confirmed, err,
                                     errlen)) < 0)
        return start_failed(p, rc);
    if (!exists) {
        if ((rc = repl_create_slot(p->repl, p->slot, err, errlen)) < 0)
            return start_failed(p, rc);
        cdc_log_info("created replication slot %s", p->slot);
        catalog_slot(p->cat, p->slot, &confirmed, err, errlen);
    }
    p->slot_seen = true;
    failover_check(p->repl, cdc_config_str(p->cfg, "pg"), p->slot,
                   cdc_config_bool(p->cfg, "failover-slot"));
    if (confirmed > p->flush.confirmed)
        p->flush.confirmed = confirmed;
    p->reported = p->flush.confirmed;
    if ((rc = repl_start(p->repl, p->slot, p->publication, 0,
                         cdc_config_bool(p->cfg, "streaming"), err, errlen)) < 0) {
        /* Dropped since it was looked up: the next attempt judges that. */
        char lerr[256];
        if (rc == PG_PERMANENT && catalog_slot(p->cat, p->slot, &confirmed, lerr, sizeof lerr) == 0)
            rc = -1;
        return start_failed(p, rc);
    }
    char lsn[CDC_LSN_BUFSZ];
    cdc_metrics_set_ready(true);
    p->streamed = p->in_stream = true;
    cdc_log_info("streaming slot %s (publication %s, database %s) from %s", p->slot,
                 p->publication, p->dbname, cdc_lsn_format(confirmed, lsn));
    return 0;
}

static void disconnect(producer *p)
{
    cdc_metrics_set_ready(false);
    repl_close(p->repl);
    p->repl = NULL;
    p->in_stream = false;
    flushpos_abandon_open(&p->flush);
    p->in_txn = false;
    txnspool_clear(&p->spools); /* the server streams them again */
    resnap_reset(p->resnap);
}

/* A new relation cache, decoder and Kafka producer: at start, and after a
 * fatal Kafka error (relations point at their producer's topics). Returns
 * 0, or -1 with the error logged. */
static int pipeline_new(producer *p)
{
    char err[1024];
    if (!(p->rels = relcache_new(NULL))) {
        cdc_log_error("out of memory");
        return -1;
    }
    pgoutput_decoder_init(&p->decoder, relcache_ncols, p->rels);
    if (kafka_out_new(p->cfg, on_delivered, p, &p->kafka, err, sizeof err) < 0) {
        cdc_log_error("%s", err);
        return -1;
    }
    return 0;
}

/* Waits *backoff ms before the next connection attempt, serving Kafka so
 * that acknowledgements keep landing, and doubles it (up to the maximum).
 * Returns -1 when a stop was requested meanwhile (p->stop = STOP_SIGNAL). */
static int backoff_wait(producer *p, int *backoff)
{
    for (int64_t until = cdc_clock_mono_ms() + *backoff; cdc_clock_mono_ms() < until;) {
        if (cdc_signal_stop_requested()) {
            p->stop = STOP_SIGNAL;
            return -1;
        }
        kafka_out_poll(p->kafka, 50);
    }
    *backoff = *backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff * 2;
    return 0;
}

int producer_run(const cdc_config *cfg)
{
    producer p = {
        .cfg = cfg,
        .slot = cdc_config_str(cfg, "slot"),
        .publication = cdc_config_str(cfg, "publication"),
        .prefix = cdc_config_str(cfg, "topic-prefix"),
        .dlq_topic = cdc_config_str(cfg, "dlq-topic"),
        .tombstones = cdc_config_bool(cfg, "tombstones"),
        .oversize_to_dlq = strcmp(cdc_config_str(cfg, "on-oversize"), "dlq") == 0,
        .status_interval_ms = cdc_config_int(cfg, "status-interval") * 1000,
    };
    char err[1024];
    int status = 1;
    const char *endpos = cdc_config_str(cfg, "endpos");
    if (endpos && cdc_lsn_parse(endpos, &p.endpos) < 0) {
        cdc_log_error("--endpos: \"%s\" is not an LSN", endpos);
        return 2;
    }
    p.markers_tail = &p.markers;
    flushpos_init(&p.flush, 0);
    metrics_register(&p);
    if (outbox_setup(&p, err, sizeof err) < 0 ||
        columns_policy_new(cfg, p.outbox, &p.policy, err, sizeof err) < 0 ||
        snapshots_setup(&p, err, sizeof err) < 0) {
        cdc_log_error("%s", err);
        goto done;
    }
    if (pipeline_new(&p) < 0)
        goto done;

    int backoff = BACKOFF_MIN_MS;
    while (p.stop == RUNNING || p.stop == STOP_RECONNECT || p.stop == STOP_KAFKA_FATAL) {
        p.stop = RUNNING;
        if (connect_and_start(&p, err, sizeof err) < 0) {
            if (p.stop == STOP_FATAL) {
                snprintf(p.stop_err, sizeof p.stop_err, "%s", err);
                break;
            }
            cdc_log_warn("%s; retrying in %d ms", err, backoff);
            disconnect(&p);
            if (backoff_wait(&p, &backoff) < 0)
                break;
            p.stop = STOP_RECONNECT;
            continue;
        }
        /* The catalog connection serves the type look-ups of the stream. */
        change_builder_free(&p.builder);
        change_builder_init(&p.builder, p.rels, catalog_resolve_type, p.cat);
        change_builder_set_fetch(&p.builder, fetch_moved_row, &p);
        change_builder_set_policy(&p.builder, p.policy);
        backoff = BACKOFF_MIN_MS;
        int64_t started_ms = cdc_clock_mono_ms();
        stream(&p);
        if (p.stop == STOP_RECONNECT || p.stop == STOP_KAFKA_FATAL) {
            /* A stream that breaks right after it started is not
             * reconnected in a tight loop. */
            bool lasted = cdc_clock_mono_ms() - started_ms >= STREAM_LASTED_MS;
            cdc_log_warn("%s; reconnecting%s", p.stop_err, lasted ? "" : " after a pause");
            cdc_counter_add(p.m_reconnects, 1);
            disconnect(&p);
            stop_reason why = p.stop;
            if (!lasted && backoff_wait(&p, &backoff) < 0)
                break;
            p.stop = why;
            if (p.stop == STOP_KAFKA_FATAL) {
                /* A fatal idempotence error: a new producer, everything
                 * unacknowledged is read again from the slot. */
                drain(&p, 0);
                markers_drop(&p);
                kafka_out_purge(p.kafka, FATAL_FLUSH_MS);
                kafka_out_destroy(p.kafka);
                p.kafka = NULL;
                tables_free(p.tables);
                p.tables = NULL;
                /* A re-snapshot's hold outlives the tracker (resnap_reset). */
                uint64_t hold = p.flush.hold;
                flushpos_free(&p.flush);
                flushpos_init(&p.flush, p.reported);
                if (hold)
                    flushpos_hold(&p.flush, hold);
                /* Relations point at the old producer's topics; the server
                 * sends every Relation again on the new stream. */
                relcache_free(p.rels);
                pgoutput_decoder_free(&p.decoder);
                if (pipeline_new(&p) < 0)
                    goto done;
            }
        }
    }

    if (p.stop == STOP_SIGNAL || p.stop == STOP_ENDPOS || p.stop == STOP_FATAL) {
        stop_reason why = p.stop;
        if (p.flush.outstanding > 0)
            cdc_log_info("waiting for Kafka to acknowledge %" PRIu64 " records", p.flush.outstanding);
        /* After an error too: what Kafka still takes moves the position on,
         * which is less to send again. */
        drain(&p, why == STOP_FATAL ? FATAL_FLUSH_MS : SHUTDOWN_FLUSH_MS);
        uint64_t unacked = p.flush.outstanding; /* queued markers included */
        markers_drop(&p);
        /* Safe whatever happened: the position never passes a record that
         * Kafka refused or has not acknowledged. */
        if (p.in_stream) {
            send_status(&p, false);
            repl_end_stream(p.repl, END_STREAM_MS);
        }
        char lsn[CDC_LSN_BUFSZ];
        cdc_lsn_format(p.flush.confirmed, lsn);
        /* Sinks skip events without a key (EVENTS.md): say so once more. */
        char keyless[200] = "";
        if (p.keyless > 0)
            snprintf(keyless, sizeof keyless, "; %" PRIu64 " of them from tables without a key "
                     "(null record key: sinks skip them)", p.keyless);
        if ((why == STOP_FATAL || p.stop == STOP_FATAL) && !p.streamed) {
            cdc_log_error("%s", p.stop_err);
        } else if (why == STOP_FATAL || p.stop == STOP_FATAL) {
            cdc_log_error("%s", p.stop_err);
            cdc_log_error("stopped on the error above: %" PRIu64 " changes%s, confirmed "
                          "position %s, a restart resumes from there", p.changes, keyless, lsn);
        } else if (unacked > 0) {
            cdc_log_error("stopped with %" PRIu64 " records unacknowledged by Kafka; "
                          "confirmed position %s (they will be sent again)%s",
                          unacked, lsn, keyless);
        } else {
            cdc_log_info("stopped (%s): %" PRIu64 " changes in %" PRIu64 " transactions%s, "
                         "confirmed position %s",
                         why == STOP_SIGNAL ? "signal" : "endpos reached", p.changes, p.txns,
                         keyless, lsn);
            status = 0;
        }
    }
done:
    repl_close(p.repl);
    catalog_close(p.cat);
    change_builder_free(&p.builder);
    pgoutput_decoder_free(&p.decoder);
    kafka_out_purge(p.kafka, FATAL_FLUSH_MS);
    kafka_out_destroy(p.kafka);
    markers_drop(&p);
    refs_free(p.spare_refs);
    tables_free(p.tables);
    relcache_free(p.rels);
    flushpos_free(&p.flush);
    txnspool_clear(&p.spools);
    outbox_free(p.outbox);
    snapshot_free(p.snap);
    resnap_free(p.resnap);
    colpolicy_free(p.policy);
    cdc_buf_free(&p.value);
    cdc_buf_free(&p.key);
    cdc_buf_free(&p.topic);
    return status;
}
