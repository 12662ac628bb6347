/* deadletter.c: writing to the dead-letter topic (deadletter.h), whole or,
 * when refused for its size or by the topic, reduced.
 *
 * Every queued dead letter is an entry whose state the delivery report
 * sets; dead_letters_wait() serves the reports and re-sends refused ones in
 * a smaller form. An entry lives until its report arrived, even when the
 * caller has given up on it (stop, failure), because the report points at
 * it. */
#include "deadletter.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_kafka.h"
#include "cdc_log.h"
#include "cdc_metrics.h"
#include "cdc_signal.h"

#define REASON_MAX 1024       /* of a reduced dead letter's reason header */
#define KEY_MAX 1024          /* a longer key is replaced in a reduced dead letter */
#define FRAMING_BYTES 512     /* record batch and record framing, generously */
#define STOP_FLUSH_MS 5000

typedef enum { DL_QUEUED, DL_DONE, DL_REFUSED, DL_FAILED } dl_state;

typedef struct dl_entry {
    struct dl_entry *next;
    const rd_kafka_message_t *src;  /* NULL once the caller gave up on it */
    char *sink, *reason;
    unsigned reductions;            /* 0: sent whole */
    dl_state state;
    rd_kafka_resp_err_t err;
} dl_entry;

struct dead_letters {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    char *topic;
    size_t max_bytes;               /* the producer's message.max.bytes */
    dl_entry *entries;
    uint64_t written, reduced;
    cdc_metric *m_written, *m_reduced;
    bool stop_flushed;              /* a stop already gave the queue its STOP_FLUSH_MS */
};

size_t dead_letters_value_fit(size_t value_len, size_t max_bytes, size_t fixed, unsigned attempt)
{
    size_t keep = max_bytes > fixed ? max_bytes - fixed : 0;
    if (value_len < keep)
        keep = value_len;
    return attempt >= sizeof keep * 8 ? 0 : keep >> attempt;
}

/* Errors that say "not this record, not like this": a smaller or keyed
 * form may still be taken. Anything else is retried by librdkafka itself
 * (message.timeout.ms=0) or is final. */
static bool refused_for_form(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || e == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE ||
           e == RD_KAFKA_RESP_ERR_INVALID_RECORD || e == RD_KAFKA_RESP_ERR_POLICY_VIOLATION ||
           e == RD_KAFKA_RESP_ERR_INVALID_MSG;
}

static void on_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    dl_entry *e = m->_private;
    e->err = m->err;
    e->state = !m->err ? DL_DONE : refused_for_form(m->err) ? DL_REFUSED : DL_FAILED;
}

dead_letters *dead_letters_new(const cdc_config *cfg, const char *topic, char *err, size_t errlen)
{
    char reason[512];
    dead_letters *dl = calloc(1, sizeof *dl);
    if (!dl || !(dl->topic = strdup(topic))) {
        free(dl);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *const settings[] = {
        "bootstrap.servers", cdc_config_str(cfg, "brokers"),
        "client.id", "pgcdc-consumer-dlq",
        "enable.idempotence", "true",
        "acks", "all",
        "message.timeout.ms", "0",
        NULL,
    };
    if (cdc_kafka_conf_set_all(conf, settings, err, errlen) < 0 ||
        cdc_config_apply_kafka(cfg, conf, err, errlen) < 0) {
        rd_kafka_conf_destroy(conf);
        dead_letters_free(dl);
        return NULL;
    }
    char size[32];
    size_t size_len = sizeof size;
    dl->max_bytes = 1000000;
    if (rd_kafka_conf_get(conf, "message.max.bytes", size, &size_len) == RD_KAFKA_CONF_OK)
        dl->max_bytes = (size_t)strtoull(size, NULL, 10);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivered);
    rd_kafka_conf_set_log_cb(conf, cdc_kafka_log);
    dl->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, reason, sizeof reason);
    if (!dl->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "cannot create the dead-letter producer: %s", reason);
        dead_letters_free(dl);
        return NULL;
    }
    dl->rkt = rd_kafka_topic_new(dl->rk, topic, NULL);
    dl->m_written = cdc_metrics_counter("pgcdc_consumer_dead_lettered_total",
                                        "Records written to the dead-letter topic.", NULL);
    dl->m_reduced = cdc_metrics_counter(
        "pgcdc_consumer_dead_letters_reduced_total",
        "Dead letters written in a reduced form (origin, reason, size, part of the value) "
        "because the whole record was refused.", NULL);
    return dl;
}

/* Drops entries whose report arrived and that nobody waits for. */
static void entries_prune(dead_letters *dl, bool all_reported)
{
    for (dl_entry **pp = &dl->entries; *pp;) {
        dl_entry *e = *pp;
        if (e->src || (e->state == DL_QUEUED && !all_reported)) {
            pp = &e->next;
            continue;
        }
        *pp = e->next;
        free(e->sink);
        free(e->reason);
        free(e);
    }
}

void dead_letters_free(dead_letters *dl)
{
    if (!dl)
        return;
    if (dl->rk) {
        if (!dl->stop_flushed) /* twice would only double the time a stop takes */
            rd_kafka_flush(dl->rk, STOP_FLUSH_MS);
        rd_kafka_purge(dl->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(dl->rk, 1000); /* serves the purged reports */
        if (dl->rkt)
            rd_kafka_topic_destroy(dl->rkt);
        rd_kafka_destroy(dl->rk);
    }
    for (dl_entry *e = dl->entries; e; e = e->next)
        e->src = NULL;
    entries_prune(dl, true);
    free(dl->topic);
    free(dl);
}

uint64_t dead_letters_written(const dead_letters *dl)
{
    return dl->written;
}

uint64_t dead_letters_reduced(const dead_letters *dl)
{
    return dl->reduced;
}

/* The origin of the entry's record, "topic[partition]@offset". */
static void origin(const dl_entry *e, char *buf, size_t len)
{
    snprintf(buf, len, "%s[%" PRId32 "]@%" PRId64, rd_kafka_topic_name(e->src->rkt),
             e->src->partition, e->src->offset);
}

/* Headers naming the reason and origin (docs/consumer-sinks.md). */
static void add_origin_headers(rd_kafka_headers_t *h, const dl_entry *e, const char *reason)
{
    char part[16], off[24];
    snprintf(part, sizeof part, "%" PRId32, e->src->partition);
    snprintf(off, sizeof off, "%" PRId64, e->src->offset);
    rd_kafka_header_add(h, "pgcdc-dlq-reason", -1, reason, -1);
    rd_kafka_header_add(h, "pgcdc-dlq-sink", -1, e->sink, -1);
    rd_kafka_header_add(h, "pgcdc-dlq-topic", -1, rd_kafka_topic_name(e->src->rkt), -1);
    rd_kafka_header_add(h, "pgcdc-dlq-partition", -1, part, -1);
    rd_kafka_header_add(h, "pgcdc-dlq-offset", -1, off, -1);
}

/* Queues the entry; a full queue is waited out unless a stop is requested. */
static rd_kafka_resp_err_t produce(dead_letters *dl, dl_entry *e, void *key, size_t key_len,
                                   void *value, size_t value_len, rd_kafka_headers_t *h)
{
    rd_kafka_resp_err_t err;
    e->state = DL_QUEUED;
    while ((err = rd_kafka_producev(dl->rk, RD_KAFKA_V_RKT(dl->rkt),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_KEY(key, key_len),
                                    RD_KAFKA_V_VALUE(value, value_len), RD_KAFKA_V_HEADERS(h),
                                    RD_KAFKA_V_OPAQUE(e), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL &&
           !cdc_signal_stop_requested())
        rd_kafka_poll(dl->rk, 100); /* reports of this handle only: no re-entry */
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(h);
        e->state = DL_FAILED; /* not queued: no report will come */
    }
    return err;
}

/* Sends the entry again in its next reduced form. Returns 0, or -1 with
 * err when even an empty value was refused (or it cannot be queued). */
static int send_reduced(dead_letters *dl, dl_entry *e, rd_kafka_resp_err_t why, char *err,
                        size_t errlen)
{
    const rd_kafka_message_t *m = e->src;
    char where[320];
    origin(e, where, sizeof where);
    for (;;) {
        unsigned attempt = e->reductions++;
        /* A missing or long key is replaced by the origin: a compacted
         * dead-letter topic refuses a null key, and keys count too. */
        void *key = m->key;
        size_t key_len = m->key_len;
        if (!key || key_len > KEY_MAX) {
            key = where;
            key_len = strlen(where);
        }
        size_t reason_len = strlen(e->reason);
        if (reason_len > REASON_MAX)
            reason_len = REASON_MAX;
        size_t fixed = key_len + reason_len + strlen(e->sink) + strlen(where) + FRAMING_BYTES;
        size_t keep = dead_letters_value_fit(m->len, dl->max_bytes, fixed, attempt);
        if (attempt > 0 && keep == 0 && dead_letters_value_fit(m->len, dl->max_bytes, fixed,
                                                               attempt - 1) == 0) {
            snprintf(err, errlen, "cannot dead-letter %s to %s even reduced to its origin and "
                     "reason: %s", where, dl->topic, rd_kafka_err2str(why));
            return -1;
        }
        char reason[REASON_MAX + 1], orig_bytes[24], note[256];
        snprintf(reason, sizeof reason, "%.*s", (int)reason_len, e->reason);
        snprintf(orig_bytes, sizeof orig_bytes, "%zu", m->len);
        snprintf(note, sizeof note, "%s; value cut to %zu of %zu bytes, original headers left out",
                 rd_kafka_err2str(why), keep, m->len);
        cdc_log_warn("dead letter of %s reduced: %s", where, note);
        rd_kafka_headers_t *h = rd_kafka_headers_new(8);
        add_origin_headers(h, e, reason);
        rd_kafka_header_add(h, "pgcdc-dlq-original-bytes", -1, orig_bytes, -1);
        rd_kafka_header_add(h, "pgcdc-dlq-reduced", -1, note, -1);
        rd_kafka_resp_err_t pe = produce(dl, e, key, key_len, keep ? m->payload : NULL, keep, h);
        if (pe == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (!refused_for_form(pe)) {
            snprintf(err, errlen, "cannot dead-letter %s to %s: %s", where, dl->topic,
                     rd_kafka_err2str(pe));
            return -1;
        }
        why = pe; /* refused at once: smaller still */
    }
}

int dead_letters_send(dead_letters *dl, const rd_kafka_message_t *m, const char *sink,
                      const char *reason, char *err, size_t errlen)
{
    dl_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->sink = strdup(sink)) || !(e->reason = strdup(reason))) {
        if (e)
            free(e->sink);
        free(e);
        snprintf(err, errlen, "out of memory for a dead letter");
        return -1;
    }
    e->src = m;
    e->next = dl->entries;
    dl->entries = e;
    char where[320];
    origin(e, where, sizeof where);
    cdc_log_warn("dead-lettering %s (sink %s): %s", where, sink, reason);

    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    rd_kafka_headers_t *orig = NULL;
    if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *val;
        size_t len;
        for (size_t i = 0; rd_kafka_header_get_all(orig, i, &name, &val, &len) ==
                           RD_KAFKA_RESP_ERR_NO_ERROR; i++)
            rd_kafka_header_add(h, name, -1, val, (ssize_t)len);
    }
    add_origin_headers(h, e, reason);
    rd_kafka_resp_err_t pe = produce(dl, e, m->key, m->key_len, m->payload, m->len, h);
    int rc = 0;
    if (pe != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (refused_for_form(pe)) {
            rc = send_reduced(dl, e, pe, err, errlen);
        } else {
            snprintf(err, errlen, "cannot dead-letter %s to %s: %s", where, dl->topic,
                     rd_kafka_err2str(pe));
            rc = -1;
        }
    }
    if (rc < 0)
        e->src = NULL; /* not queued (DL_FAILED): pruned by the next wait */
    return rc;
}

int dead_letters_wait(dead_letters *dl, char *err, size_t errlen)
{
    int rc = 0;
    bool flushed = false;
    for (;;) {
        bool waiting = false;
        for (dl_entry *e = dl->entries; e && rc == 0; e = e->next) {
            if (!e->src)
                continue;
            switch (e->state) {
            case DL_QUEUED:
                waiting = true;
                break;
            case DL_DONE:
                e->src = NULL;
                dl->written++;
                cdc_counter_add(dl->m_written, 1);
                if (e->reductions) {
                    dl->reduced++;
                    cdc_counter_add(dl->m_reduced, 1);
                }
                break;
            case DL_REFUSED:
                if (send_reduced(dl, e, e->err, err, errlen) < 0)
                    rc = -1;
                else
                    waiting = true;
                break;
            case DL_FAILED: {
                char where[320];
                origin(e, where, sizeof where);
                snprintf(err, errlen, "cannot write to dead-letter topic %s (record %s): %s",
                         dl->topic, where, rd_kafka_err2str(e->err));
                rc = -1;
                break;
            }
            }
        }
        if (rc != 0 || !waiting)
            break;
        if (cdc_signal_stop_requested()) {
            if (flushed) {
                rc = 1;
                break;
            }
            /* One last chance for what is on its way, then leave it unstored. */
            rd_kafka_flush(dl->rk, STOP_FLUSH_MS);
            flushed = dl->stop_flushed = true;
            continue;
        }
        rd_kafka_poll(dl->rk, 100);
    }
    if (rc != 0)
        dead_letters_abandon(dl);
    entries_prune(dl, false);
    return rc;
}

void dead_letters_abandon(dead_letters *dl)
{
    for (dl_entry *e = dl->entries; e; e = e->next)
        e->src = NULL; /* kept until its report arrives: the report points at it */
    entries_prune(dl, false);
}
