/* consumer.c: pgcdc-consumer's main loop. Reads events as a member of a
 * Kafka consumer group, applies them in batches to every configured sink,
 * dead-letters what is not a valid event or what a sink refuses for good
 * (deadletter.h), and stores a partition's offset only once the sinks (and
 * the dead-letter topic) have acknowledged that record and every one before
 * it: Kafka's own at-least-once recipe (enable.auto.offset.store=false),
 * with the bookkeeping in offsets.h. A batch that is not applied (a stop, a
 * dead letter that cannot be written) ends the run: nothing read after it
 * is applied, and nothing past it is stored.
 *
 * A worker thread applies one batch to the sinks while the next is read
 * and decoded; the next is handed over only when the previous one is
 * finished (applied, dead letters acknowledged, offsets stored), so a
 * partition's changes are applied in order and no offset moves past what is
 * not applied. While a sink retries, at most one more batch is read, so
 * memory is bounded by two batches plus librdkafka's prefetch queue. A
 * rebalance that revokes partitions first applies what has been read,
 * stores and commits, then lets the partitions go. */
#include "consumer.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "cdc_buf.h"
#include "cdc_clock.h"
#include "cdc_event.h"
#include "cdc_kafka.h"
#include "cdc_log.h"
#include "cdc_metrics.h"
#include "cdc_signal.h"
#include "deadletter.h"
#include "fault.h"
#include "keychange.h"
#include "offsets.h"
#include "outbox_apply.h"
#include "sink.h"

#define MAX_SINKS 2
#define WATERMARK_TIMEOUT_MS 10000
#define PROGRESS_INTERVAL_MS 5000
#define PEND_MAX 1024           /* messages taken from Kafka at once */
#define FETCH_WAKE_MS 20        /* waker_main(), or fetch.queue.backoff.ms */
/* librdkafka 2.1.0 has fetch.queue.backoff.ms, which makes waker_main() unneeded. */
#define FETCH_QUEUE_BACKOFF_SINCE 0x02010000
#define FETCH_WAKE_TIMEOUT_MS 1000
#define MAX_WAKE_TARGETS 64

/* What the consumer knows of one partition it has (or had) assigned. */
typedef struct part_state {
    struct part_state *next;
    char *topic;
    int32_t partition;
    bool assigned;
    bool reset_done;         /* --reset-offsets applies once per process */
    int64_t end_at_start;    /* high watermark when first assigned (--until-end) */
    int64_t applied_next;    /* offset after the last applied record, -1 unknown
                                (a copy of what offsets.h stored, for --until-end) */
    int64_t eof_at;          /* offset of the last end-of-partition event, -1 none */
    int64_t reset_store;     /* offset --reset-offsets chose, to store once assigned */
} part_state;

/* One --reset-offsets item: for every partition, or for topic:partition. */
typedef struct reset_rule {
    char *topic;             /* NULL: any */
    int32_t partition;       /* -1: any */
    int64_t offset;          /* RD_KAFKA_OFFSET_BEGINNING/END or an offset */
    int64_t at_ms;           /* >= 0: by timestamp */
} reset_rule;

typedef struct consumer {
    const cdc_config *cfg;
    rd_kafka_t *rk;
    dead_letters *dlq;
    const char *dlq_topic;
    offset_book *offsets;
    sink *sinks[MAX_SINKS];
    size_t nsinks;

    size_t batch_records;
    size_t batch_bytes;
    int batch_ms;
    bool until_end;

    reset_rule *resets;
    size_t nresets;

    part_state *parts;
    bool assigned_once;
    /* The group's rebalance protocol is cooperative: as librdkafka last said,
     * or as the assignment strategy configured says until it does. */
    bool cooperative;

    /* Messages taken from Kafka, not yet added to a batch. */
    rd_kafka_queue_t *cq;
    rd_kafka_message_t *pend[PEND_MAX];
    size_t npend, ipend;
    /* waker_main(): the partitions to ask about, in turn (under mu). */
    struct {
        char topic[256];
        int32_t partition;
    } wake[MAX_WAKE_TARGETS];
    size_t nwake;
    atomic_llong backlog_at_ms;  /* when this thread last left messages queued */
    pthread_t waker;
    bool waker_needed;           /* a librdkafka without fetch.queue.backoff.ms */
    bool waker_started, waker_quit;
    pthread_cond_t wake_cv;

    /* The batch being read; its decoded trees live in the arena. */
    cdc_arena *arena;
    consumer_record *recs;      /* decoded records, in read order */
    consumer_record **recp;
    size_t nrecs;
    rd_kafka_message_t **msgs;  /* every message read, to destroy after */
    size_t nmsgs;
    size_t bytes;
    uint64_t batch;             /* its number, for offsets.h */

    /* The batch in flight: handed to the worker thread, which applies it
     * to the sinks while the next one is read and decoded (or applied
     * here, inflight_apply_here). Only one is in flight, and the next is
     * handed over only once it is finished, so changes of a partition are
     * applied in order; its offsets are stored by this thread once it is
     * finished (inflight_finish). */
    struct {
        cdc_arena *arena;
        consumer_record *recs;
        consumer_record **recp;
        size_t nrecs;
        rd_kafka_message_t **msgs;
        size_t nmsgs;
        size_t bytes;
        uint64_t batch;
        bool busy;              /* handed over, not yet finished */
        bool done;              /* finished, by the worker or here (under mu) */
        bool ok;                /* every sink applied it */
        size_t from_sink;       /* the sinks before it applied it already */
        char err[1024];
        int64_t started;
    } fl;
    pthread_t worker;
    bool worker_started, worker_quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;

    bool fatal;
    char fatal_err[1024];
    /* A batch was dropped (not applied): nothing after it may be applied or
     * stored in this run. */
    bool halted;

    uint64_t applied, skipped;
    uint64_t last_lsn;          /* highest source.lsn applied */

    /* Outbox topics (outbox_apply.h): skipped, or applied with --outbox-apply. */
    const char *outbox_prefix;
    bool outbox_apply;
    bool outbox_skip_logged;
    cdc_buf outbox_event, outbox_key;  /* the translation of the record being added */

    /* /metrics: per-sink counters are published as deltas of the sinks' own. */
    cdc_metric *m_applied[MAX_SINKS], *m_rejected[MAX_SINKS], *m_retries[MAX_SINKS];
    uint64_t seen_applied[MAX_SINKS], seen_rejected[MAX_SINKS], seen_retries[MAX_SINKS];
    cdc_metric *m_batch_seconds, *m_skipped, *m_last_lsn;
    int64_t lag_at_ms;
    int64_t progress_at_ms;
    int64_t waiting_at_ms;
    uint64_t progress_applied;
} consumer;

static part_state *part_get(consumer *c, const char *topic, int32_t partition, bool create)
{
    for (part_state *p = c->parts; p; p = p->next)
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    if (!create)
        return NULL;
    part_state *p = calloc(1, sizeof *p);
    if (!p || !(p->topic = strdup(topic))) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    p->end_at_start = -1;
    p->applied_next = -1;
    p->eof_at = -1;
    p->reset_store = -1;
    p->next = c->parts;
    c->parts = p;
    return p;
}

/* ---- --reset-offsets ------------------------------------------------- */

static int parse_reset_value(const char *v, reset_rule *r, char *err, size_t errlen)
{
    r->at_ms = -1;
    char *end;
    if (strcmp(v, "earliest") == 0) {
        r->offset = RD_KAFKA_OFFSET_BEGINNING;
    } else if (strcmp(v, "latest") == 0) {
        r->offset = RD_KAFKA_OFFSET_END;
    } else if (v[0] == '@') {
        errno = 0;
        r->at_ms = strtoll(v + 1, &end, 10);
        if (errno || *end || end == v + 1 || r->at_ms < 0) {
            snprintf(err, errlen, "--reset-offsets: \"%s\" is not @<epoch milliseconds>", v);
            return -1;
        }
    } else {
        errno = 0;
        r->offset = strtoll(v, &end, 10);
        if (errno || *end || end == v || r->offset < 0) {
            snprintf(err, errlen, "--reset-offsets: \"%s\" is not earliest, latest, an offset "
                                  "or @<epoch ms>", v);
            return -1;
        }
    }
    return 0;
}

/* "VALUE" or "topic:partition=VALUE" (the topic may itself hold ':'). */
static int parse_resets(consumer *c, char *err, size_t errlen)
{
    const char *const *items;
    size_t n = cdc_config_list(c->cfg, "reset-offsets", &items);
    if (n == 0)
        return 0;
    c->resets = calloc(n, sizeof *c->resets);
    if (!c->resets) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        reset_rule *r = &c->resets[c->nresets++];
        r->partition = -1;
        const char *eq = strrchr(items[i], '=');
        const char *value = items[i];
        if (eq) {
            const char *colon = NULL;
            for (const char *q = items[i]; q < eq; q++)
                if (*q == ':')
                    colon = q;
            char *end;
            long part = colon ? strtol(colon + 1, &end, 10) : -1;
            if (!colon || colon == items[i] || end != eq || part < 0 || part > INT32_MAX) {
                snprintf(err, errlen, "--reset-offsets: \"%s\" is not topic:partition=VALUE",
                         items[i]);
                return -1;
            }
            r->topic = strndup(items[i], (size_t)(colon - items[i]));
            r->partition = (int32_t)part;
            value = eq + 1;
        }
        if (parse_reset_value(value, r, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static const reset_rule *reset_for(const consumer *c, const char *topic, int32_t partition)
{
    const reset_rule *any = NULL;
    for (size_t i = 0; i < c->nresets; i++) {
        const reset_rule *r = &c->resets[i];
        if (!r->topic)
            any = r;
        else if (r->partition == partition && strcmp(r->topic, topic) == 0)
            return r;
    }
    return any;
}

/* ---- dead letters ---------------------------------------------------- */

/* Queues the dead letter of m; when it cannot even be queued, the run ends
 * (fatal) and the batch holding m is dropped, so its offset is not stored. */
static bool dead_letter(consumer *c, const rd_kafka_message_t *m, const char *sink_name,
                        const char *reason)
{
    char err[1024];
    if (dead_letters_send(c->dlq, m, sink_name, reason, err, sizeof err) == 0)
        return true;
    if (!cdc_signal_stop_requested() && !c->fatal) {
        c->fatal = true;
        snprintf(c->fatal_err, sizeof c->fatal_err, "%s", err);
    }
    return false;
}

/* ---- metrics --------------------------------------------------------- */

static void metrics_register(consumer *c)
{
    static const double batch_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    for (size_t i = 0; i < c->nsinks; i++) {
        cdc_buf l = CDC_BUF_INIT;
        cdc_metrics_label(&l, "sink", c->sinks[i]->name);
        c->m_applied[i] = cdc_metrics_counter("pgcdc_consumer_records_applied_total",
                                              "Records applied to a sink.", l.data);
        c->m_rejected[i] = cdc_metrics_counter("pgcdc_consumer_records_rejected_total",
                                               "Records a sink refused for good.", l.data);
        c->m_retries[i] = cdc_metrics_counter("pgcdc_consumer_retries_total",
                                              "Requests a sink retried.", l.data);
        cdc_buf_free(&l);
    }
    c->m_batch_seconds = cdc_metrics_histogram("pgcdc_consumer_batch_seconds",
                                               "Time to apply a batch to every sink.", NULL,
                                               batch_bounds,
                                               sizeof batch_bounds / sizeof batch_bounds[0]);
    c->m_skipped = cdc_metrics_counter("pgcdc_consumer_skipped_total",
                                       "Tombstones and dead-letter records skipped.", NULL);
    c->m_last_lsn = cdc_metrics_gauge("pgcdc_consumer_last_applied_lsn",
                                      "Highest source.lsn applied.", NULL);
}

static void metrics_publish(consumer *c, double batch_seconds)
{
    for (size_t i = 0; i < c->nsinks; i++) {
        sink *s = c->sinks[i];
        cdc_counter_add(c->m_applied[i], s->applied - c->seen_applied[i]);
        cdc_counter_add(c->m_rejected[i], s->rejected - c->seen_rejected[i]);
        cdc_counter_add(c->m_retries[i], s->retries - c->seen_retries[i]);
        c->seen_applied[i] = s->applied;
        c->seen_rejected[i] = s->rejected;
        c->seen_retries[i] = s->retries;
    }
    if (batch_seconds >= 0)
        cdc_histogram_observe(c->m_batch_seconds, batch_seconds);
    cdc_gauge_set(c->m_last_lsn, (double)c->last_lsn);
}

/* Lag per partition from the watermarks librdkafka already has (no
 * request), every few seconds. */
static void metrics_lag(consumer *c)
{
    int64_t now = cdc_clock_mono_ms();
    if (now - c->lag_at_ms < 5000)
        return;
    c->lag_at_ms = now;
    for (part_state *p = c->parts; p; p = p->next) {
        if (!p->assigned)
            continue;
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(c->rk, p->topic, p->partition, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR || hi < 0)
            continue;
        int64_t pos = p->applied_next >= 0 ? p->applied_next : (p->eof_at >= 0 ? p->eof_at : lo);
        cdc_buf l = CDC_BUF_INIT;
        char part[16];
        snprintf(part, sizeof part, "%" PRId32, p->partition);
        cdc_metrics_label(&l, "topic", p->topic);
        cdc_metrics_label(&l, "partition", part);
        cdc_gauge_set(cdc_metrics_gauge("pgcdc_consumer_lag_records",
                                        "Records in a partition not yet applied.", l.data),
                      hi > pos ? (double)(hi - pos) : 0);
        cdc_buf_free(&l);
    }
}

/* ---- batches --------------------------------------------------------- */

static void records_free(consumer_record *recs, size_t nrecs, rd_kafka_message_t **msgs,
                         size_t nmsgs, cdc_arena *arena)
{
    for (size_t i = 0; i < nrecs; i++) {
        cdc_decoded_event_free(&recs[i].ev);
        if (recs[i].key && !recs[i].key_in_arena)
            yajl_tree_free(recs[i].key);
        sink_rejects_free(&recs[i]);
    }
    for (size_t i = 0; i < nmsgs; i++)
        rd_kafka_message_destroy(msgs[i]);
    cdc_arena_reset(arena); /* every tree of the batch at once */
}

/* Drops the batch being read: not applied, so nothing of it or after it
 * is stored (offsets.h); a later run reads it again. */
static void batch_clear(consumer *c)
{
    if (c->nmsgs > 0) {
        dead_letters_abandon(c->dlq); /* they point into its messages */
        offset_book_drop(c->offsets, c->batch);
        c->halted = true;
    }
    records_free(c->recs, c->nrecs, c->msgs, c->nmsgs, c->arena);
    c->nrecs = c->nmsgs = 0;
    c->bytes = 0;
    c->batch++;
}

static bool is_dlq_topic(const consumer *c, const char *topic)
{
    return strcmp(topic, c->dlq_topic) == 0;
}

/* Records of outbox topics are not row events. Without --outbox-apply they
 * are skipped; with it, those describing a document become an event and key
 * (outbox_apply_translate) that stand in for the record's own, the others
 * are skipped and the unusable ones dead-lettered. Returns false when the
 * record has been dealt with. */
static bool outbox_take(consumer *c, const rd_kafka_message_t *m, const char **value,
                        size_t *value_len, const char **key, size_t *key_len)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    if (!outbox_apply_is_topic(topic, c->outbox_prefix))
        return true;
    if (!c->outbox_apply) {
        if (!c->outbox_skip_logged)
            cdc_log_info("records of outbox topics (%s*) are skipped; --outbox-apply applies "
                         "those that describe a document", c->outbox_prefix);
        c->outbox_skip_logged = true;
        c->skipped++;
        cdc_counter_add(c->m_skipped, 1);
        return false;
    }
    outbox_apply_input in = {.topic = topic, .key = m->key, .key_len = m->key_len,
                             .value = m->payload, .value_len = m->len};
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const void *v;
        size_t len;
        if (rd_kafka_header_get_last(h, "pgcdc-lsn", &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            v) {
            in.lsn = v;
            in.lsn_len = len;
        }
        if (rd_kafka_header_get_last(h, "pgcdc-event-type", &v, &len) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            in.event_type = v;
            in.event_type_len = len;
        }
        if (rd_kafka_header_get_last(h, "pgcdc-aggregate-type", &v, &len) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            in.aggregate_type = v;
            in.aggregate_type_len = len;
        }
    }
    char why[512];
    outbox_apply_result res = OUTBOX_APPLY_ERROR;
    if (cdc_fault("outbox_take", m->offset)) /* fault.h: as out of memory would */
        snprintf(why, sizeof why, "cannot apply an outbox record: out of memory (injected)");
    else
        res = outbox_apply_translate(c->outbox_prefix, &in, &c->outbox_event, &c->outbox_key,
                                     why, sizeof why);
    switch (res) {
    case OUTBOX_APPLY_EVENT:
        *value = c->outbox_event.data;
        *value_len = c->outbox_event.len;
        *key = c->outbox_key.data;
        *key_len = c->outbox_key.len;
        return true;
    case OUTBOX_APPLY_SKIP:
        cdc_log_debug("%s[%" PRId32 "]@%" PRId64 " skipped: %s", topic, m->partition, m->offset,
                      why);
        c->skipped++;
        cdc_counter_add(c->m_skipped, 1);
        return false;
    case OUTBOX_APPLY_INVALID:
        dead_letter(c, m, "outbox", why);
        return false;
    default:
        /* The record is neither applied nor dead-lettered: batch_add's
         * caller drops the batch. */
        c->fatal = true;
        snprintf(c->fatal_err, sizeof c->fatal_err, "%s", why);
        return false;
    }
}

/* An update that changed the row's key also deletes the row at its old key
 * (keychange.h): a second record, right after it, of the same message.
 * When that cannot be made, the run ends (fatal) and the batch is dropped:
 * applying the update alone would leave the row at its old key. */
static void add_old_key_delete(consumer *c, const consumer_record *r, const char *value,
                               size_t value_len)
{
    cdc_buf old = CDC_BUF_INIT;
    char err[512];
    int rc = cdc_fault("old_key_delete", r->msg->offset) ? -1 /* fault.h: out of memory */
             : keychange_old_key(&r->ev, r->key, &old);
    if (rc <= 0) {
        if (rc < 0) {
            c->fatal = true;
            snprintf(c->fatal_err, sizeof c->fatal_err, "out of memory");
        }
        cdc_buf_free(&old);
        return;
    }
    consumer_record *d = &c->recs[c->nrecs];
    memset(d, 0, sizeof *d);
    d->msg = r->msg;
    if (cdc_event_decode(value, value_len, &d->ev, err, sizeof err) < 0 ||
        cdc_key_decode(old.data, old.len, &d->key, err, sizeof err) < 0) {
        cdc_decoded_event_free(&d->ev);
        c->fatal = true;
        snprintf(c->fatal_err, sizeof c->fatal_err, "cannot make the delete of an old key: %s", err);
        cdc_buf_free(&old);
        return;
    }
    d->ev.op = 'd';
    d->ev.after = NULL;
    d->ev.n_unchanged_toast = 0;
    cdc_log_debug("%s.%s: update at lsn %" PRIu64 " moved the row from key %s", d->ev.schema,
                  d->ev.table, d->ev.lsn, old.data);
    c->recp[c->nrecs] = d;
    c->nrecs++;
    cdc_buf_free(&old);
}

/* Takes one message into the batch: decoded into a record, or dead-lettered
 * at once, or skipped (tombstone, our own dead-letter topic). When it can be
 * none of these, c->fatal is set and the caller drops the batch. */
static void batch_add(consumer *c, rd_kafka_message_t *m)
{
    c->msgs[c->nmsgs++] = m;
    c->bytes += m->len + m->key_len;
    const char *topic = rd_kafka_topic_name(m->rkt);
    char why[512];
    if (offset_book_read(c->offsets, topic, m->partition, m->offset, c->batch, why,
                         sizeof why) < 0) {
        c->fatal = true;
        snprintf(c->fatal_err, sizeof c->fatal_err, "offset bookkeeping: %s", why);
        return;
    }
    if (!m->payload || is_dlq_topic(c, topic)) {
        c->skipped++;
        cdc_counter_add(c->m_skipped, 1);
        return;
    }
    const char *value = m->payload, *key = m->key;
    size_t value_len = m->len, key_len = m->key_len;
    if (!outbox_take(c, m, &value, &value_len, &key, &key_len))
        return;
    char err[512];
    consumer_record *r = &c->recs[c->nrecs];
    memset(r, 0, sizeof *r);
    r->msg = m;
    if (cdc_event_decode_in(c->arena, value, value_len, &r->ev, err, sizeof err) < 0) {
        dead_letter(c, m, "decode", err);
        return;
    }
    r->key_in_arena = true;
    /* A truncate's key is no row's (EVENTS.md: the text null): not decoded. */
    if (key && r->ev.op != 't' &&
        cdc_key_decode_in(c->arena, key, key_len, &r->key, err, sizeof err) < 0) {
        cdc_decoded_event_free(&r->ev);
        dead_letter(c, m, "decode", err);
        return;
    }
    c->recp[c->nrecs] = r;
    c->nrecs++;
    add_old_key_delete(c, r, value, value_len);
}

/* offsets.h's store callback: the only place an offset is stored. */
static int store_offset(void *ctx, const char *topic, int32_t partition, int64_t next)
{
    consumer *c = ctx;
    part_state *p = part_get(c, topic, partition, true);
    if (p)
        p->applied_next = next;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = next;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__STATE) {
        cdc_log_warn("cannot store offset %s[%" PRId32 "]@%" PRId64 ": %s", topic, partition, next,
                     rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

/* ---- waking librdkafka's fetcher ------------------------------------- */

/* librdkafka 2.0 stops fetching a partition while the consumer queue holds
 * more than queued.max.messages.kbytes (or queued.min.messages), and looks
 * again only when its broker thread wakes up, up to a second later. With a
 * sink slower than Kafka (the usual case) fetching went in bursts: one full
 * queue, 16 MB, then a pause, about 40,000 events/s whatever the sink could
 * do. Any request through the broker thread wakes it. So, every
 * FETCH_WAKE_MS while the consumer has a backlog (it left messages in the
 * queue within the last second), this thread asks the leader
 * of one assigned partition (in turn) for its watermarks. It is a thread of
 * its own because the request can wait: a broker answers a connection's
 * requests in order, and a fetch with nothing to return is held there up
 * to fetch.wait.max.ms. librdkafka 2.1.0 made that second a setting,
 * fetch.queue.backoff.ms: where it exists, it is set to FETCH_WAKE_MS and this
 * thread is not started. Without a backlog the queue is never full and the
 * fetcher never pauses: the questions were then only work for the broker
 * (50 a second under a steady trickle of small transactions, issue 17). */
static void *waker_main(void *arg)
{
    consumer *c = arg;
    size_t next = 0;
    pthread_mutex_lock(&c->mu);
    while (!c->waker_quit) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += FETCH_WAKE_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->wake_cv, &c->mu, &until);
        int64_t backlog = atomic_load_explicit(&c->backlog_at_ms, memory_order_relaxed);
        if (c->waker_quit || c->nwake == 0 || cdc_clock_mono_ms() - backlog > 1000)
            continue; /* no queue to be full: the fetcher runs by itself then */
        char topic[256];
        next = (next + 1) % c->nwake;
        snprintf(topic, sizeof topic, "%s", c->wake[next].topic);
        int32_t partition = c->wake[next].partition;
        pthread_mutex_unlock(&c->mu);
        int64_t lo, hi;
        rd_kafka_query_watermark_offsets(c->rk, topic, partition, &lo, &hi, FETCH_WAKE_TIMEOUT_MS);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* The waker's partitions: the assigned ones (topics longer than the buffer
 * are left out; MAX_WAKE_TARGETS covers more brokers than a partition
 * each needs). */
static void waker_targets(consumer *c)
{
    pthread_mutex_lock(&c->mu);
    c->nwake = 0;
    for (part_state *p = c->parts; p && c->nwake < MAX_WAKE_TARGETS; p = p->next) {
        if (!p->assigned || strlen(p->topic) >= sizeof c->wake[0].topic)
            continue;
        snprintf(c->wake[c->nwake].topic, sizeof c->wake[0].topic, "%s", p->topic);
        c->wake[c->nwake].partition = p->partition;
        c->nwake++;
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---- applying: the worker thread ------------------------------------- */

/* Runs on the worker thread: every sink applies the batch in flight. */
static void inflight_apply(consumer *c)
{
    c->fl.ok = true;
    for (size_t s = c->fl.from_sink; s < c->nsinks; s++)
        if (c->sinks[s]->apply(c->sinks[s], c->fl.recp, c->fl.nrecs, c->fl.err,
                               sizeof c->fl.err) < 0) {
            size_t len = strlen(c->fl.err);
            snprintf(c->fl.err + len, sizeof c->fl.err - len, " (sink %s)", c->sinks[s]->name);
            c->fl.ok = false;
            return;
        }
}

/* With nothing else to read yet, the batch in flight is applied on this
 * thread, one attempt per sink (sink.apply_once): handing it to the worker
 * and being woken when it was done cost two thread wake-ups a batch, under
 * small transactions as much as the apply itself (issue 17: at 4,000
 * single-row changes/s a batch is 5-10 records). With a backlog the worker
 * applies while the next batch is read. A transient failure hands the rest
 * to the worker, which retries: this thread must stay free to serve the
 * group (rebalances, max.poll.interval.ms) while a sink is down. Returns
 * true when the batch is finished here (c->fl.ok says how). */
static bool inflight_apply_here(consumer *c)
{
    if (c->ipend < c->npend || rd_kafka_queue_length(c->cq) > 0)
        return false;
    for (size_t s = 0; s < c->nsinks; s++)
        if (!c->sinks[s]->apply_once)
            return false;
    c->fl.ok = true;
    for (; c->fl.from_sink < c->nsinks; c->fl.from_sink++) {
        sink *s = c->sinks[c->fl.from_sink];
        int rc = s->apply_once(s, c->fl.recp, c->fl.nrecs, c->fl.err, sizeof c->fl.err);
        if (rc == 1)
            return false;
        if (rc < 0) {
            size_t len = strlen(c->fl.err);
            snprintf(c->fl.err + len, sizeof c->fl.err - len, " (sink %s)", s->name);
            c->fl.ok = false;
            break;
        }
    }
    return true;
}

static void *worker_main(void *arg)
{
    consumer *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->worker_quit && !(c->fl.busy && !c->fl.done))
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->worker_quit)
            break;
        pthread_mutex_unlock(&c->mu);
        inflight_apply(c);
        pthread_mutex_lock(&c->mu);
        c->fl.done = true;
        pthread_cond_broadcast(&c->cv);
        /* The reader may be waiting for messages with a batch in hand: it
         * hands that over now (run_loop). */
        rd_kafka_queue_yield(c->cq);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Tells the worker or the waker to quit (its flag, under c->mu, and the
 * condition it waits on) and waits for it. */
static void thread_stop(consumer *c, pthread_t thread, bool *quit, pthread_cond_t *cv)
{
    pthread_mutex_lock(&c->mu);
    *quit = true;
    pthread_cond_broadcast(cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(thread, NULL);
}

/* True when no batch is being applied: a batch read now would be taken up
 * at once. */
static bool sinks_free(consumer *c)
{
    if (!c->fl.busy)
        return true;
    pthread_mutex_lock(&c->mu);
    bool done = c->fl.done;
    pthread_mutex_unlock(&c->mu);
    return done;
}

/* Hands the batch being read to the worker (none may be in flight): the
 * two swap their arrays, so the next batch is read into the old ones. */
static void inflight_submit(consumer *c)
{
    cdc_arena *arena = c->fl.arena;
    consumer_record *recs = c->fl.recs, **recp = c->fl.recp;
    rd_kafka_message_t **msgs = c->fl.msgs;
    c->fl.arena = c->arena;
    c->fl.recs = c->recs;
    c->fl.recp = c->recp;
    c->fl.msgs = c->msgs;
    c->arena = arena;
    c->recs = recs;
    c->recp = recp;
    c->msgs = msgs;
    c->fl.nrecs = c->nrecs;
    c->fl.nmsgs = c->nmsgs;
    c->fl.bytes = c->bytes;
    c->fl.batch = c->batch++;
    c->nrecs = c->nmsgs = 0;
    c->bytes = 0;
    c->fl.started = cdc_clock_mono_ms();
    c->fl.from_sink = 0;
    if (!c->worker_started) { /* setup or teardown: apply right here */
        c->fl.busy = true;
        inflight_apply(c);
        c->fl.done = true;
        return;
    }
    /* Not busy while it is tried here: the worker leaves it alone. */
    bool finished = inflight_apply_here(c);
    pthread_mutex_lock(&c->mu);
    c->fl.busy = true;
    c->fl.done = finished;
    if (!finished)
        pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Waits for the batch in flight, if any, and finishes it: dead-letters
 * what the sinks refused, waits for the dead letters, then stores each
 * partition's next offset (offsets.h). Returns false when it could not be
 * applied (stop or fatal): nothing of it or after it is stored, and it will
 * be read again by the next run. */
static bool inflight_finish(consumer *c)
{
    if (!c->fl.busy)
        return true;
    pthread_mutex_lock(&c->mu);
    while (!c->fl.done)
        pthread_cond_wait(&c->cv, &c->mu);
    c->fl.busy = false;
    pthread_mutex_unlock(&c->mu);
    bool ok = c->fl.ok;
    char err[1024];
    if (!ok)
        cdc_log_warn("batch of %zu records not applied: %s; it will be read again", c->fl.nmsgs,
                     c->fl.err);
    for (size_t i = 0; ok && i < c->fl.nrecs; i++)
        for (sink_reject *r = c->fl.recs[i].rejects; ok && r; r = r->next)
            ok = dead_letter(c, c->fl.recs[i].msg, r->sink, r->reason);
    if (ok) {
        int rc = dead_letters_wait(c->dlq, err, sizeof err);
        if (rc < 0 && !c->fatal) {
            c->fatal = true;
            snprintf(c->fatal_err, sizeof c->fatal_err, "%s", err);
        }
        ok = rc == 0;
    }
    if (ok && offset_book_finish(c->offsets, c->fl.batch, err, sizeof err) < 0) {
        ok = false; /* a bug: say so and stop, never commit past the gap */
        c->fatal = true;
        snprintf(c->fatal_err, sizeof c->fatal_err, "offset bookkeeping: %.900s", err);
    }
    if (ok) {
        for (size_t i = 0; i < c->fl.nrecs; i++)
            if (c->fl.recs[i].ev.lsn > c->last_lsn)
                c->last_lsn = c->fl.recs[i].ev.lsn;
        c->applied += c->fl.nrecs;
    } else {
        dead_letters_abandon(c->dlq);
        offset_book_drop(c->offsets, c->fl.batch);
        c->halted = true;
    }
    records_free(c->fl.recs, c->fl.nrecs, c->fl.msgs, c->fl.nmsgs, c->fl.arena);
    c->fl.nrecs = c->fl.nmsgs = 0;
    if (ok) {
        metrics_publish(c, (double)(cdc_clock_mono_ms() - c->fl.started) / 1000.0);
        cdc_metrics_progress();
    }
    return ok;
}

/* Applies the batch being read now, after the one in flight: for
 * rebalances and the end. Returns false as inflight_finish does (the batch
 * being read is then dropped, unstored). */
static bool batch_apply(consumer *c)
{
    if (!inflight_finish(c)) {
        batch_clear(c);
        return false;
    }
    if (c->nmsgs == 0)
        return true;
    inflight_submit(c);
    return inflight_finish(c);
}

/* ---- rebalances ------------------------------------------------------ */

/* Resolves the partition's --reset-offsets rule to an absolute offset
 * within [low, high] watermarks: earliest, latest, an offset (clamped, as
 * kafka-consumer-groups does) or the first record at or after a time (the
 * end when there is none). Returns -1 when there is no rule or it cannot be
 * resolved (logged). */
static int64_t reset_resolve(consumer *c, const char *topic, int32_t partition, int64_t lo,
                             int64_t hi)
{
    const reset_rule *r = reset_for(c, topic, partition);
    if (!r)
        return -1;
    int64_t off;
    if (r->at_ms >= 0) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, topic, partition)->offset = r->at_ms;
        rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(c->rk, l, WATERMARK_TIMEOUT_MS);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            e = l->elems[0].err;
        off = l->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(l);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            cdc_log_error("cannot find the offset of %s[%" PRId32 "] at @%" PRId64 ": %s; "
                          "not reset", topic, partition, r->at_ms, rd_kafka_err2str(e));
            return -1;
        }
        if (off < 0)
            off = hi; /* no record at or after that time */
    } else if (r->offset == RD_KAFKA_OFFSET_BEGINNING) {
        off = lo;
    } else if (r->offset == RD_KAFKA_OFFSET_END) {
        off = hi;
    } else {
        off = r->offset < lo ? lo : r->offset > hi ? hi : r->offset;
        if (off != r->offset)
            cdc_log_warn("--reset-offsets: %s[%" PRId32 "] holds offsets %" PRId64 "..%" PRId64
                         ", not %" PRId64 "; using %" PRId64, topic, partition, lo, hi,
                         r->offset, off);
    }
    return off;
}

/* On assignment: remember each partition's end (for --until-end) and apply
 * --reset-offsets, once per partition and process. A reset is resolved to
 * an absolute offset and stored as soon as the partition is assigned
 * (store_resets), so that it is committed even when nothing follows it:
 * "latest" then really moves the group to the end. */
static void apply_resets_and_marks(consumer *c, rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        part_state *p = part_get(c, tp->topic, tp->partition, true);
        if (!p)
            continue;
        p->assigned = true;
        p->eof_at = -1;
        p->reset_store = -1;
        bool want_reset = !p->reset_done && reset_for(c, tp->topic, tp->partition);
        if (!want_reset && !(c->until_end && p->end_at_start < 0))
            continue;
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(c->rk, tp->topic, tp->partition,
                                                                 &lo, &hi, WATERMARK_TIMEOUT_MS);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            cdc_log_error("cannot read the offsets of %s[%" PRId32 "]: %s%s", tp->topic,
                          tp->partition, rd_kafka_err2str(e),
                          want_reset ? "; --reset-offsets not applied to it" : "");
            continue;
        }
        if (c->until_end && p->end_at_start < 0)
            p->end_at_start = hi;
        if (!want_reset)
            continue;
        p->reset_done = true;
        int64_t off = reset_resolve(c, tp->topic, tp->partition, lo, hi);
        if (off < 0)
            continue;
        tp->offset = off;
        p->reset_store = off;
        p->applied_next = off; /* nothing before it is to be applied any more */
        cdc_log_info("reset %s[%" PRId32 "] to offset %" PRId64 " (offsets %" PRId64 "..%" PRId64
                     ")", tp->topic, tp->partition, off, lo, hi);
    }
}

/* Stores the offsets --reset-offsets chose, once the partitions are ours
 * (librdkafka refuses to store for a partition not yet assigned). */
static void store_resets(consumer *c, const rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        part_state *p = part_get(c, parts->elems[i].topic, parts->elems[i].partition, false);
        if (!p || p->reset_store < 0)
            continue;
        char err[512];
        if (offset_book_skip_to(c->offsets, p->topic, p->partition, p->reset_store, err,
                                sizeof err) < 0)
            cdc_log_error("--reset-offsets: %s", err);
        p->reset_store = -1;
    }
}

static void commit_sync(consumer *c)
{
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, 0);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        cdc_log_warn("cannot commit offsets: %s", rd_kafka_err2str(e));
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    consumer *c = opaque;
    /* NULL once the member has left its group, as during rd_kafka_consumer_close:
     * the protocol is then the one it had. */
    const char *protocol = rd_kafka_rebalance_protocol(rk);
    if (protocol)
        c->cooperative = strcmp(protocol, "COOPERATIVE") == 0;
    bool cooperative = c->cooperative;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++)
            offset_book_assign(c->offsets, parts->elems[i].topic, parts->elems[i].partition);
        apply_resets_and_marks(c, parts);
        c->assigned_once = true;
        cdc_metrics_set_ready(true); /* in the group: ready once it makes progress */
        cdc_log_info("assigned %d partition(s)", parts->cnt);
        rd_kafka_error_t *e = NULL;
        if (cooperative)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        if (e) {
            cdc_log_error("cannot take partitions: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return;
        }
        store_resets(c, parts);
        waker_targets(c);
        return;
    }
    /* Revoked or lost: finish what was read, store, commit, let go. A lost
     * assignment cannot commit; applying is still harmless (idempotent).
     * When the batches cannot be applied (a stop while a sink retries: a
     * rolling deploy), they are dropped and the run ends (c->halted): the
     * partitions kept must not move past them either. After a drop or a
     * fatal error nothing more is applied. */
    bool lost = rd_kafka_assignment_lost(rk);
    cdc_log_info("%s %d partition(s): finishing what was read first", lost ? "losing" : "revoking",
                 parts->cnt);
    if (c->halted || c->fatal) {
        inflight_finish(c);
        batch_clear(c);
    } else if (!batch_apply(c)) {
        cdc_log_warn("the records read before the rebalance were not applied; stopping without "
                     "storing their offsets");
    }
    if (!lost)
        commit_sync(c);
    for (int i = 0; i < parts->cnt; i++) {
        part_state *p = part_get(c, parts->elems[i].topic, parts->elems[i].partition, false);
        if (p)
            p->assigned = false;
        offset_book_revoke(c->offsets, parts->elems[i].topic, parts->elems[i].partition);
    }
    waker_targets(c);
    cdc_log_info("%s %d partition(s)", lost ? "lost" : "revoked", parts->cnt);
    rd_kafka_error_t *e = NULL;
    if (cooperative)
        e = rd_kafka_incremental_unassign(rk, parts);
    else
        rd_kafka_assign(rk, NULL);
    if (e)
        rd_kafka_error_destroy(e);
}

/* ---- setup ----------------------------------------------------------- */

static int kafka_setup(consumer *c, char *err, size_t errlen)
{
    char reason[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *const consumer_settings[] = {
        "bootstrap.servers", cdc_config_str(c->cfg, "brokers"),
        "group.id", cdc_config_str(c->cfg, "group"),
        "client.id", "pgcdc-consumer",
        "enable.auto.offset.store", "false",
        "enable.auto.commit", "true",
        "auto.commit.interval.ms", "1000",
        "auto.offset.reset", "earliest",
        "partition.assignment.strategy", "cooperative-sticky",
        "enable.partition.eof", "true",
        "topic.metadata.refresh.interval.ms", "10000",
        "queued.max.messages.kbytes", "16384",
        /* fetch.min.bytes and fetch.wait.max.ms stay librdkafka's (1 byte,
         * 500 ms): a fetch then returns with each produce request, and the
         * producer's linger.ms bounds how many those are. A larger minimum
         * with a short wait cut fetches under load but made an idle
         * consumer ask hundreds of times a second (issue 17). */
        NULL,
    };
    char backoff[16];
    snprintf(backoff, sizeof backoff, "%d", FETCH_WAKE_MS);
    const char *const fetch_settings[] = {"fetch.queue.backoff.ms", backoff, NULL};
    c->waker_needed = rd_kafka_version() < FETCH_QUEUE_BACKOFF_SINCE;
    /* Before -X, so that -X fetch.queue.backoff.ms=... still wins. */
    if (cdc_kafka_conf_set_all(conf, consumer_settings, err, errlen) < 0 ||
        (!c->waker_needed && cdc_kafka_conf_set_all(conf, fetch_settings, err, errlen) < 0) ||
        cdc_config_apply_kafka(c->cfg, conf, err, errlen) < 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    if (c->waker_needed)
        cdc_log_info("librdkafka %s has no fetch.queue.backoff.ms: a thread wakes the fetcher "
                     "every %d ms while records flow", rd_kafka_version_str(), FETCH_WAKE_MS);
    else
        cdc_log_info("librdkafka %s: fetch.queue.backoff.ms=%d (a full queue pauses a "
                     "partition's fetching that long)", rd_kafka_version_str(), FETCH_WAKE_MS);
    char strategy[256];
    size_t strategy_len = sizeof strategy;
    c->cooperative = rd_kafka_conf_get(conf, "partition.assignment.strategy", strategy,
                                       &strategy_len) == RD_KAFKA_CONF_OK &&
                     strstr(strategy, "cooperative") != NULL;
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_log_cb(conf, cdc_kafka_log);
    rd_kafka_conf_set_error_cb(conf, cdc_kafka_error);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, reason, sizeof reason);
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "cannot create the Kafka consumer: %s", reason);
        return -1;
    }
    rd_kafka_poll_set_consumer(c->rk);

    if (!(c->dlq = dead_letters_new(c->cfg, c->dlq_topic, err, errlen)))
        return -1;

    const char *const *topics;
    size_t n = cdc_config_list(c->cfg, "topics", &topics);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(sub, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "cannot subscribe to --topics: %s", rd_kafka_err2str(e));
        return -1;
    }
    c->cq = rd_kafka_queue_get_consumer(c->rk);
    if (!c->cq) {
        snprintf(err, errlen, "cannot get the Kafka consumer queue");
        return -1;
    }
    return 0;
}

/* ---- --until-end ----------------------------------------------------- */

/* --until-end: every assigned partition has been read (not necessarily
 * applied) up to the end it had when it was first assigned, so nothing more
 * is worth waiting for. */
static bool read_to_end(const consumer *c)
{
    if (!c->until_end || !c->assigned_once)
        return false;
    for (const part_state *p = c->parts; p; p = p->next)
        if (p->assigned && p->end_at_start >= 0 && p->eof_at < p->end_at_start &&
            p->applied_next < p->end_at_start)
            return false;
    return true;
}

/* Every assigned partition has been applied up to the end it had when it
 * was first assigned. */
static bool reached_end(consumer *c, uint64_t *behind)
{
    bool done = c->assigned_once;
    *behind = 0;
    for (part_state *p = c->parts; p; p = p->next) {
        if (!p->assigned || p->end_at_start < 0)
            continue;
        int64_t pos = p->applied_next;
        if (pos < 0 && p->eof_at >= 0)
            pos = p->eof_at; /* read nothing: the committed position was already the end */
        if (pos < p->end_at_start) {
            done = false;
            *behind += (uint64_t)(p->end_at_start - (pos < 0 ? 0 : pos));
        }
    }
    return done;
}

/* --until-end reached: each sink's at_end (sink.h), with no batch in
 * flight. A sink that asks for it gets a second round: the ends become the
 * partitions' end offsets of now. Returns 1 for that round, 0 when the
 * run ends, -1 on a failure (fatal) or a stop. */
static int sinks_at_end(consumer *c)
{
    if (!inflight_finish(c))
        return -1;
    int again = 0;
    for (size_t i = 0; i < c->nsinks; i++) {
        char err[1024];
        int rc = c->sinks[i]->at_end ? c->sinks[i]->at_end(c->sinks[i], err, sizeof err) : 0;
        if (rc < 0) {
            if (!cdc_signal_stop_requested() && !c->fatal) {
                c->fatal = true;
                snprintf(c->fatal_err, sizeof c->fatal_err, "%s", err);
            }
            return -1;
        }
        again |= rc > 0;
    }
    for (part_state *p = c->parts; again && p; p = p->next) {
        int64_t lo = 0, hi = 0;
        if (!p->assigned)
            continue;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(c->rk, p->topic, p->partition,
                                                                 &lo, &hi, WATERMARK_TIMEOUT_MS);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            c->fatal = true;
            snprintf(c->fatal_err, sizeof c->fatal_err, "cannot read the end offset of %s[%"
                     PRId32 "]: %s", p->topic, p->partition, rd_kafka_err2str(e));
            return -1;
        }
        p->end_at_start = hi;
    }
    return again;
}

static void report_progress(consumer *c, uint64_t behind)
{
    int64_t now = cdc_clock_mono_ms();
    if (!c->assigned_once) {
        /* A member that died without leaving holds its partitions until its
         * session times out (session.timeout.ms, 45 s by default). */
        if (c->waiting_at_ms == 0)
            c->waiting_at_ms = now;
        else if (now - c->waiting_at_ms >= PROGRESS_INTERVAL_MS) {
            cdc_log_info("--until-end: still waiting for group %s to assign partitions",
                         cdc_config_str(c->cfg, "group"));
            c->waiting_at_ms = now;
        }
        return;
    }
    if (c->progress_at_ms == 0) {
        /* The first line says how far there is to go; later ones add rate and ETA. */
        cdc_log_info("replay: %" PRIu64 " records applied, %" PRIu64 " behind the end",
                     c->applied, behind);
        c->progress_at_ms = now;
        c->progress_applied = c->applied;
        return;
    }
    if (now - c->progress_at_ms < PROGRESS_INTERVAL_MS)
        return;
    double secs = (double)(now - c->progress_at_ms) / 1000.0;
    double rate = (double)(c->applied - c->progress_applied) / secs;
    if (rate > 0)
        cdc_log_info("replay: %" PRIu64 " records applied, %" PRIu64 " behind the end, %.0f/s, "
                     "about %.0f s left", c->applied, behind, rate, (double)behind / rate);
    else
        cdc_log_info("replay: %" PRIu64 " records applied, %" PRIu64 " behind the end",
                     c->applied, behind);
    c->progress_at_ms = now;
    c->progress_applied = c->applied;
}

/* ---- the loop -------------------------------------------------------- */

static void handle_event_message(consumer *c, rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        part_state *p = part_get(c, rd_kafka_topic_name(m->rkt), m->partition, true);
        if (p)
            p->eof_at = m->offset;
    } else if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        cdc_log_debug("kafka: %s", rd_kafka_message_errstr(m));
    } else {
        cdc_log_warn("kafka: %s", rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
}

/* The next message (or event) of the consumer queue, taken from Kafka many
 * at a time: one rd_kafka_consumer_poll() per message cost a wake-up of
 * this thread per message (7 us each, more than decoding it). Called only
 * with nothing pending, so a rebalance callback (run from inside
 * rd_kafka_consume_batch_queue) never sees half-taken messages; messages of
 * a partition revoked meanwhile may still come out of it and be applied
 * (harmless: writes are idempotent; their offsets are not stored). */
static rd_kafka_message_t *next_message(consumer *c, int timeout)
{
    if (c->ipend < c->npend)
        return c->pend[c->ipend++];
    c->ipend = c->npend = 0;
    size_t want = c->batch_records - c->nmsgs;
    if (want > PEND_MAX)
        want = PEND_MAX;
    /* rd_kafka_consume_batch_queue waits until it has `want` messages or the
     * timeout passes: asked for 1024 at 10,000 messages/s, it held each one
     * for up to 100 ms. So: what is there now, and only when nothing is,
     * wait for the first one to arrive. */
    ssize_t n = rd_kafka_consume_batch_queue(c->cq, 0, c->pend, want ? want : 1);
    if (n == 0 && timeout > 0)
        n = rd_kafka_consume_batch_queue(c->cq, timeout, c->pend, 1);
    if (n <= 0)
        return NULL;
    /* More than asked for was there: a backlog, with which the queue can
     * fill and the fetcher pause, so keep it awake (waker_main). */
    if ((size_t)n == want && c->waker_needed && rd_kafka_queue_length(c->cq) > 0)
        atomic_store_explicit(&c->backlog_at_ms, cdc_clock_mono_ms(), memory_order_relaxed);
    c->npend = (size_t)n;
    return c->pend[c->ipend++];
}

static void run_loop(consumer *c)
{
    while (!c->fatal && !c->halted) {
        if (cdc_signal_stop_requested())
            break;
        /* Group commit: a batch takes what has arrived and goes to the
         * sinks as soon as they are free; it grows (up to --batch-records,
         * --batch-bytes and --batch-ms) only while they are busy with the
         * one before. Waiting --batch-ms for company with idle sinks was
         * most of the end-to-end latency at 10,000 changes/s (bench/e2e),
         * and under a backlog the batches fill all the same. The worker
         * wakes this wait when it finishes (rd_kafka_queue_yield). */
        int64_t batch_start = -1;
        while (c->nmsgs < c->batch_records && c->bytes < c->batch_bytes && !read_to_end(c)) {
            int timeout = 100;
            if (batch_start >= 0) {
                int64_t left = batch_start + c->batch_ms - cdc_clock_mono_ms();
                if (left <= 0)
                    break;
                timeout = sinks_free(c) ? 0 : left < 100 ? (int)left : 100;
            }
            rd_kafka_message_t *m = next_message(c, timeout);
            if (c->halted) { /* by a rebalance, inside next_message */
                if (m)
                    rd_kafka_message_destroy(m);
                break;
            }
            if (!m) {
                /* Nothing to read now. While the sinks are busy (a retrying
                 * sink may be busy for minutes) keep serving the consumer
                 * queue rather than block on them: rebalances are then
                 * handled at once and max.poll.interval.ms holds. */
                if (cdc_signal_stop_requested() || sinks_free(c))
                    break;
                continue;
            }
            if (m->err) {
                handle_event_message(c, m);
                /* let --until-end look at the end-of-partition (once the
                 * sinks are free: until then nothing can have reached it);
                 * and once everything is read, apply it without waiting
                 * --batch-ms */
                if (read_to_end(c) || (batch_start < 0 && sinks_free(c)))
                    break;
                continue;
            }
            if (batch_start < 0)
                batch_start = cdc_clock_mono_ms();
            batch_add(c, m);
            if (c->fatal)
                break;
        }
        /* The previous batch must be finished before this one is handed
         * over; then this one is applied while the next is read. A batch
         * holding a record that could not be taken (c->fatal) is dropped,
         * never handed over: its offsets must not be stored. */
        if (!inflight_finish(c) || c->fatal || c->halted || cdc_signal_stop_requested()) {
            batch_clear(c); /* after a stop the sinks take no batch: read again next run */
            break;
        }
        if (c->nmsgs > 0)
            inflight_submit(c);
        cdc_metrics_progress();
        cdc_kafka_watch(c->rk);
        metrics_lag(c);
        if (c->until_end) {
            uint64_t behind;
            if (reached_end(c, &behind)) {
                cdc_log_info("--until-end: every assigned partition is applied up to its end");
                if (sinks_at_end(c) > 0)
                    continue;
                break;
            }
            report_progress(c, behind);
        }
    }
    /* Whatever ended the loop, the batch in flight is finished (stored if
     * it was applied). */
    inflight_finish(c);
}

static void usage_topics_warning(consumer *c)
{
    const char *const *topics;
    size_t n = cdc_config_list(c->cfg, "topics", &topics);
    for (size_t i = 0; i < n; i++)
        if (topics[i][0] == '^')
            cdc_log_debug("records of the dead-letter topic %s are never applied, even when --topics "
                          "matches it", c->dlq_topic);
}

/* librdkafka before 2.3.0 (Debian bookworm has 2.0.2) aborts in
 * rd_kafka_destroy() of a cooperative-sticky consumer that has been answered
 * its JoinGroup but not yet given its first assignment (assert
 * `assignor_state' in rd_kafka_sticky_assignor_state_destroy, librdkafka
 * issue #4312): a SIGTERM during the first rebalance ended the consumer by
 * SIGABRT after it had shut down cleanly. Such a handle, already closed
 * (out of the group, nothing to commit), is left to the exit instead; it
 * stays reachable from here, so it is not a leak. */
static rd_kafka_t *kept_until_exit;

static bool has_member_id(rd_kafka_t *rk)
{
    char *member = rd_kafka_memberid(rk);
    bool joined = member && member[0];
    if (member)
        rd_kafka_mem_free(rk, member);
    return joined;
}

/* `joined`: the member had a member id before it was closed. Only such a
 * member is at risk; one that never reached the group (a wrong CA, a
 * broker that is down) is destroyed as usual, so no leak is reported. */
static void consumer_handle_destroy(consumer *c, bool joined)
{
    if (!c->assigned_once && joined && rd_kafka_version() < 0x020300ff) {
        cdc_log_debug("Kafka consumer closed before its first assignment: its handle is "
                      "left to the exit (librdkafka %s would abort in rd_kafka_destroy)",
                      rd_kafka_version_str());
        kept_until_exit = c->rk;
        return;
    }
    rd_kafka_destroy(c->rk);
}

int consumer_run(const cdc_config *cfg)
{
    consumer c = {
        .cfg = cfg,
        .dlq_topic = cdc_config_str(cfg, "dlq-topic"),
        .batch_records = (size_t)cdc_config_int(cfg, "batch-records"),
        .batch_bytes = (size_t)cdc_config_int(cfg, "batch-bytes"),
        .batch_ms = (int)cdc_config_int(cfg, "batch-ms"),
        .until_end = cdc_config_bool(cfg, "until-end"),
        .outbox_prefix = cdc_config_str(cfg, "outbox-topic-prefix"),
        .outbox_apply = cdc_config_bool(cfg, "outbox-apply"),
        .batch = 1,
    };
    char err[1024];
    int status = 1;
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    pthread_cond_init(&c.wake_cv, NULL);
    const char *const *es;
    if (cdc_config_str(cfg, "documents")) {
        /* Documents joined from several tables take --es and --redis for
         * themselves: no per-row sink (docs/documents.md). */
        if (!(c.sinks[c.nsinks] = sink_docs_new(cfg, err, sizeof err))) {
            cdc_log_error("%s", err);
            goto done;
        }
        c.nsinks++;
    } else if (cdc_config_list(cfg, "es", &es) > 0) {
        if (!(c.sinks[c.nsinks] = sink_es_new(cfg, err, sizeof err))) {
            cdc_log_error("%s", err);
            goto done;
        }
        c.nsinks++;
    }
    if (cdc_config_str(cfg, "redis") && !cdc_config_str(cfg, "documents")) {
        if (!(c.sinks[c.nsinks] = sink_redis_new(cfg, err, sizeof err))) {
            cdc_log_error("%s", err);
            goto done;
        }
        c.nsinks++;
    }
    if (c.nsinks == 0) {
        cdc_log_error("no sink configured: give --es URL and/or --redis URL");
        status = 2;
        goto done;
    }
    /* Twice the records: a key-changing update adds the delete of its old key. */
    c.arena = cdc_arena_new();
    c.recs = calloc(2 * c.batch_records, sizeof *c.recs);
    c.recp = calloc(2 * c.batch_records, sizeof *c.recp);
    c.msgs = calloc(c.batch_records, sizeof *c.msgs);
    c.fl.arena = cdc_arena_new();
    c.fl.recs = calloc(2 * c.batch_records, sizeof *c.fl.recs);
    c.fl.recp = calloc(2 * c.batch_records, sizeof *c.fl.recp);
    c.fl.msgs = calloc(c.batch_records, sizeof *c.fl.msgs);
    c.offsets = offset_book_new(store_offset, &c);
    if (!c.offsets || !c.arena || !c.recs || !c.recp || !c.msgs || !c.fl.arena || !c.fl.recs || !c.fl.recp ||
        !c.fl.msgs) {
        cdc_log_error("out of memory for a batch of %zu records", c.batch_records);
        goto done;
    }
    if (parse_resets(&c, err, sizeof err) < 0) {
        cdc_log_error("%s", err);
        status = 2;
        goto done;
    }
    if (kafka_setup(&c, err, sizeof err) < 0) {
        cdc_log_error("%s", err);
        goto done;
    }
    usage_topics_warning(&c);
    metrics_register(&c);
    int e = pthread_create(&c.worker, NULL, worker_main, &c);
    if (e != 0) {
        cdc_log_error("cannot start the thread that applies batches: %s", strerror(e));
        goto done;
    }
    c.worker_started = true;
    if (c.waker_needed) {
        e = pthread_create(&c.waker, NULL, waker_main, &c);
        if (e != 0) {
            cdc_log_error("cannot start the thread that wakes the Kafka fetcher: %s", strerror(e));
            goto done;
        }
        c.waker_started = true;
    }
    run_loop(&c);
    cdc_metrics_set_ready(false);

    if (c.fatal) {
        cdc_log_error("%s", c.fatal_err);
    } else {
        /* Finish the batch in flight (run_loop applied it), commit, leave. */
        commit_sync(&c);
        status = 0;
    }
    cdc_log_info("stopping: %" PRIu64 " records applied, %" PRIu64 " dead-lettered (%" PRIu64
                 " reduced), %" PRIu64 " skipped", c.applied, dead_letters_written(c.dlq),
                 dead_letters_reduced(c.dlq), c.skipped);
done:
    if (c.waker_started)
        thread_stop(&c, c.waker, &c.waker_quit, &c.wake_cv);
    /* Taken from Kafka but not read into a batch: read again next time. */
    while (c.ipend < c.npend)
        rd_kafka_message_destroy(c.pend[c.ipend++]);
    /* Leaving the group revokes the partitions: what was read is applied
     * (by the worker) and committed first. */
    bool joined = c.rk && has_member_id(c.rk);
    if (c.rk)
        rd_kafka_consumer_close(c.rk);
    if (c.worker_started)
        thread_stop(&c, c.worker, &c.worker_quit, &c.cv);
    /* Messages hold references into the consumer handle: they go first. */
    batch_clear(&c);
    records_free(c.fl.recs, c.fl.nrecs, c.fl.msgs, c.fl.nmsgs, c.fl.arena);
    if (c.rk) {
        if (c.cq)
            rd_kafka_queue_destroy(c.cq);
        consumer_handle_destroy(&c, joined);
    }
    dead_letters_free(c.dlq);
    offset_book_free(c.offsets);
    for (size_t s = 0; s < c.nsinks; s++)
        c.sinks[s]->destroy(c.sinks[s]);
    while (c.parts) {
        part_state *next = c.parts->next;
        free(c.parts->topic);
        free(c.parts);
        c.parts = next;
    }
    for (size_t i = 0; i < c.nresets; i++)
        free(c.resets[i].topic);
    free(c.resets);
    free(c.recs);
    free(c.recp);
    free(c.msgs);
    cdc_arena_free(c.arena);
    free(c.fl.recs);
    free(c.fl.recp);
    free(c.fl.msgs);
    cdc_arena_free(c.fl.arena);
    pthread_cond_destroy(&c.cv);
    pthread_cond_destroy(&c.wake_cv);
    pthread_mutex_destroy(&c.mu);
    cdc_buf_free(&c.outbox_event);
    cdc_buf_free(&c.outbox_key);
    return status;
}
