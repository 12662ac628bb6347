/* kafka_out.c: librdkafka producer setup, topic creation and produce calls
 * (see kafka_out.h). Settings that the guarantees rest on are set before
 * -X so users may tune anything, at their own risk. */
#include "kafka_out.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_clock.h"
#include "cdc_kafka.h"
#include "cdc_log.h"
#include "cdc_signal.h"

/* Longest single metadata request of kafka_out_topic: while no broker can
 * be reached (wrong CA, refused credentials, broker down) a request waits
 * out its whole timeout, and a SIGTERM must not wait that long. */
#define METADATA_SLICE_MS 500

struct kafka_topic {
    kafka_topic *next;
    char *name;
    rd_kafka_topic_t *rkt;
    int32_t partitions;
};

struct kafka_out {
    rd_kafka_t *rk;
    kafka_topic *topics;
    int partitions;
    int replication_factor;
    kafka_out_delivered_fn delivered;
    void *ctx;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kafka_out *k = opaque;
    k->delivered(k->ctx, m);
}

int kafka_out_new(const cdc_config *cfg, kafka_out_delivered_fn cb, void *ctx,
                  kafka_out **out, char *err, size_t errlen)
{
    *out = NULL;
    kafka_out *k = calloc(1, sizeof *k);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!k || !conf) {
        snprintf(err, errlen, "cannot create the Kafka producer: out of memory");
        goto fail;
    }
    k->delivered = cb;
    k->ctx = ctx;
    k->partitions = (int)cdc_config_int(cfg, "partitions");
    k->replication_factor = (int)cdc_config_int(cfg, "replication-factor");

    /* No record is ever given up on (message.timeout.ms=0): while Kafka is
     * away the client queue fills and the producer stops reading WAL,
     * rather than dropping a change it would have to re-read. The queue
     * size bounds memory whatever the backlog: librdkafka counts only keys
     * and values against max.kbytes, but each queued record costs about as
     * much again (message, header, delivery reference) and records in
     * flight are also copied into produce requests: peak RSS measured with
     * the queue full (broker stopped) was 37 MB at 10 MB and 50 MB at 16 MB,
     * and up to 66 MB at 16 MB with a broker taking records (VmHWM; the
     * 2-million-row test and bench/producer print it). 10 MB keeps the
     * producer well under 64 MB and is still a tenth of a second of a
     * local broker's intake; raise it with -X for a distant broker.
     * linger.ms is 10. librdkafka (up to 2.x) sends one produce request
     * per partition, and the consumer's fetch returns with each, so under
     * small transactions the broker's CPU is mostly per request (about
     * 120 us per request on a busy 2-core machine, against 20 us per
     * record). At 4,000 single-row commits/s over 6 partitions librdkafka's
     * statistics counted, per record: linger 5 ms, 0.19 produce and 0.13
     * fetch requests; 10 ms, 0.12 and 0.09; 20 ms, 0.07 and 0.05. 10 ms
     * takes a third off the broker's requests for about 2.5 ms of latency
     * on average; 20 ms took half, but had doubled bench/e2e's
     * commit-to-Redis p50 (14.8 ms against 5.9) and slowed bench/producer's
     * backlog (186,000 against 250,000 changes/s). */
    const char *const settings[] = {
        "bootstrap.servers", cdc_config_str(cfg, "brokers"),
        "enable.idempotence", "true",
        "acks", "all",
        "message.timeout.ms", "0",
        "partitioner", "murmur2_random",
        "allow.auto.create.topics", "false",
        "queue.buffering.max.kbytes", "10240",
        "queue.buffering.max.messages", "50000",
        "client.id", "pgcdc-producer",
        "linger.ms", "10",
        NULL,
    };
    if (cdc_kafka_conf_set_all(conf, settings, err, errlen) < 0)
        goto fail;
    if (cdc_config_apply_kafka(cfg, conf, err, errlen) < 0)
        goto fail;
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, cdc_kafka_error);
    rd_kafka_conf_set_log_cb(conf, cdc_kafka_log);

    char reason[512];
    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, reason, sizeof reason);
    if (!k->rk) {
        snprintf(err, errlen, "cannot create the Kafka producer: %s", reason);
        goto fail;
    }
    *out = k;
    return 0;
fail:
    if (conf && !(k && k->rk))
        rd_kafka_conf_destroy(conf);
    kafka_out_destroy(k);
    return -1;
}

void kafka_out_destroy(kafka_out *k)
{
    if (!k)
        return;
    kafka_topic *t = k->topics;
    while (t) {
        kafka_topic *next = t->next;
        if (t->rkt)
            rd_kafka_topic_destroy(t->rkt);
        free(t->name);
        free(t);
        t = next;
    }
    if (k->rk)
        rd_kafka_destroy(k->rk);
    free(k);
}

/* Partition count from the cluster's metadata: >0, 0 when the topic does
 * not exist, -1 on a topic error, -2 when no broker answered in time. */
static int topic_partitions(kafka_out *k, rd_kafka_topic_t *rkt, int timeout_ms,
                            char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(k->rk, 0, rkt, &md, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "cannot read metadata of topic %s: %s", rd_kafka_topic_name(rkt),
                 rd_kafka_err2str(e));
        return -2;
    }
    int n = 0;
    if (md->topic_cnt == 1) {
        rd_kafka_resp_err_t te = md->topics[0].err;
        if (te == RD_KAFKA_RESP_ERR_NO_ERROR)
            n = md->topics[0].partition_cnt;
        else if (te != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
                 te != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) {
            snprintf(err, errlen, "topic %s: %s", rd_kafka_topic_name(rkt), rd_kafka_err2str(te));
            n = -1;
        }
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

static int create_topic(kafka_out *k, const char *name, int timeout_ms, char *err, size_t errlen)
{
    char reason[512];
    int rc = -1;
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, k->partitions, k->replication_factor,
                                                    reason, sizeof reason);
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(k->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_event_t *ev = NULL;
    if (!nt) {
        snprintf(err, errlen, "cannot create topic %s: %s", name, reason);
        goto done;
    }
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, reason, sizeof reason);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, reason, sizeof reason);
    rd_kafka_CreateTopics(k->rk, &nt, 1, opts, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (!ev) {
        snprintf(err, errlen, "cannot create topic %s: no answer within %d ms", name, timeout_ms);
        goto done;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(err, errlen, "cannot create topic %s: %s", name, rd_kafka_event_error_string(ev));
        goto done;
    }
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t **results = rd_kafka_CreateTopics_result_topics(res, &n);
    /* Another producer (or an earlier metadata miss) may have made it meanwhile. */
    bool existed = false;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
        if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            existed = true;
        } else if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "cannot create topic %s: %s", name,
                     rd_kafka_topic_result_error_string(results[i]));
            goto done;
        }
    }
    if (existed)
        cdc_log_info("topic %s already exists", name);
    else
        cdc_log_info("created topic %s (%d partitions, replication factor %d)", name,
                     k->partitions, k->replication_factor);
    rc = 0;
done:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    if (q)
        rd_kafka_queue_destroy(q);
    if (nt)
        rd_kafka_NewTopic_destroy(nt);
    return rc;
}

int kafka_out_topic(kafka_out *k, const char *name, int timeout_ms, kafka_topic **out,
                    char *err, size_t errlen)
{
    for (kafka_topic *t = k->topics; t; t = t->next) {
        if (strcmp(t->name, name) == 0) {
            *out = t;
            return 0;
        }
    }
    *out = NULL;
    kafka_topic *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name)) || !(t->rkt = rd_kafka_topic_new(k->rk, name, NULL))) {
        snprintf(err, errlen, "cannot open topic %s: %s", name,
                 t && t->name ? rd_kafka_err2str(rd_kafka_last_error()) : "out of memory");
        goto fail;
    }
    int64_t deadline = cdc_clock_mono_ms() + timeout_ms;
    bool created = false;
    for (;;) {
        int left = (int)(deadline - cdc_clock_mono_ms());
        if (left <= 0) {
            snprintf(err, errlen, "topic %s has no partitions after %d ms", name, timeout_ms);
            goto fail;
        }
        if (cdc_signal_stop_requested()) {
            snprintf(err, errlen, "stop requested while waiting for the metadata of topic %s",
                     name);
            goto fail;
        }
        int n = topic_partitions(k, t->rkt, left < METADATA_SLICE_MS ? left : METADATA_SLICE_MS,
                                 err, errlen);
        if (n == -2 && cdc_clock_mono_ms() < deadline) {
            kafka_out_poll(k, 0); /* the error callback tells why, now */
            continue;
        }
        if (n < 0)
            goto fail;
        if (n > 0) {
            t->partitions = n;
            break;
        }
        if (!created) {
            if (create_topic(k, name, left, err, errlen) < 0)
                goto fail;
            created = true;
        } else {
            kafka_out_poll(k, 100); /* the new topic's leader is being elected */
        }
    }
    t->next = k->topics;
    k->topics = t;
    *out = t;
    return 0;
fail:
    if (t) {
        if (t->rkt)
            rd_kafka_topic_destroy(t->rkt);
        free(t->name);
        free(t);
    }
    return -1;
}

int32_t kafka_topic_partitions(const kafka_topic *t)
{
    return t->partitions;
}

const char *kafka_topic_name(const kafka_topic *t)
{
    return t->name;
}

/* The decimal text of lsn at the end of buf[24]; returns where it starts.
 * Once per record: snprintf cost as much as the rest of this file. */
static const char *lsn_decimal(uint64_t lsn, char buf[24], size_t *len)
{
    char *p = buf + 24;
    do {
        *--p = (char)('0' + lsn % 10);
        lsn /= 10;
    } while (lsn);
    *len = (size_t)(buf + 24 - p);
    return p;
}

/* RD_KAFKA_MSG_F_COPY, not F_FREE: librdkafka puts a copied value in the
 * record's own allocation (one malloc with the key), while handing over the
 * encoded buffer makes that two, the buffer being malloc'd per event at a
 * guessed size. Tried (issue 17): callgrind over bench/producer's backlog
 * counted 8 % more instructions with F_FREE (malloc and free up by more
 * than the copy saved), and peak RSS grew with the rounded-up buffers.
 * Most of the allocation left per record is librdkafka's own: besides
 * the record, the pgcdc-lsn header's list and the header itself (perf:
 * two thirds of malloc's time on a backlog). */
rd_kafka_resp_err_t kafka_out_produce(kafka_out *k, kafka_topic *t, int32_t partition,
                                      const void *key, size_t keylen,
                                      const void *value, size_t valuelen,
                                      uint64_t lsn, void *opaque)
{
    char buf[24];
    size_t n;
    const char *lsntext = lsn_decimal(lsn, buf, &n);
    return rd_kafka_producev(k->rk,
                             RD_KAFKA_V_RKT(t->rkt),
                             RD_KAFKA_V_PARTITION(partition),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_KEY(key, keylen),
                             RD_KAFKA_V_VALUE((void *)value, valuelen),
                             RD_KAFKA_V_HEADER("pgcdc-lsn", lsntext, (ssize_t)n),
                             RD_KAFKA_V_OPAQUE(opaque),
                             RD_KAFKA_V_END);
}

rd_kafka_resp_err_t kafka_out_produce_headers(kafka_out *k, kafka_topic *t, int32_t partition,
                                              const void *key, size_t keylen,
                                              const void *value, size_t valuelen, uint64_t lsn,
                                              const kafka_out_header *hdrs, size_t nhdrs,
                                              void *opaque)
{
    if (nhdrs == 0)
        return kafka_out_produce(k, t, partition, key, keylen, value, valuelen, lsn, opaque);
    char buf[24];
    size_t n;
    const char *lsntext = lsn_decimal(lsn, buf, &n);
    rd_kafka_headers_t *h = rd_kafka_headers_new(nhdrs + 1);
    rd_kafka_header_add(h, "pgcdc-lsn", -1, lsntext, (ssize_t)n);
    for (size_t i = 0; i < nhdrs; i++)
        rd_kafka_header_add(h, hdrs[i].name, (ssize_t)hdrs[i].name_len, hdrs[i].value,
                            hdrs[i].value ? (ssize_t)hdrs[i].value_len : 0);
    rd_kafka_resp_err_t e = rd_kafka_producev(k->rk,
                                              RD_KAFKA_V_RKT(t->rkt),
                                              RD_KAFKA_V_PARTITION(partition),
                                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                              RD_KAFKA_V_KEY(key, keylen),
                                              RD_KAFKA_V_VALUE((void *)value, valuelen),
                                              RD_KAFKA_V_HEADERS(h),
                                              RD_KAFKA_V_OPAQUE(opaque),
                                              RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_headers_destroy(h); /* owned by the record only once it is queued */
    return e;
}

static bool listed(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

int kafka_out_written(kafka_out *k, const char *const *names, size_t n, int timeout_ms,
                      char *topic, size_t topiclen, char *err, size_t errlen)
{
    /* Every topic's metadata: asking for topics by name would create them
     * on a broker that auto-creates topics. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(k->rk, 1, NULL, &md, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "cannot list the Kafka topics: %s", rd_kafka_err2str(e));
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < md->topic_cnt && rc == 0; i++) {
        const struct rd_kafka_metadata_topic *t = &md->topics[i];
        if (!listed(t->topic, names, n))
            continue;
        for (int j = 0; j < t->partition_cnt && rc == 0; j++) {
            int64_t lo, hi;
            e = rd_kafka_query_watermark_offsets(k->rk, t->topic, t->partitions[j].id, &lo, &hi,
                                                 timeout_ms);
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
                snprintf(err, errlen, "cannot read the offsets of topic %s partition %d: %s",
                         t->topic, t->partitions[j].id, rd_kafka_err2str(e));
                rc = -1;
            } else if (hi > 0) {
                snprintf(topic, topiclen, "%s", t->topic);
                rc = 1;
            }
        }
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

void kafka_out_purge(kafka_out *k, int timeout_ms)
{
    if (!k)
        return;
    rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    int64_t deadline = cdc_clock_mono_ms() + timeout_ms;
    do
        rd_kafka_poll(k->rk, 10);
    while (rd_kafka_outq_len(k->rk) > 0 && cdc_clock_mono_ms() < deadline);
}

void kafka_out_poll(kafka_out *k, int timeout_ms)
{
    rd_kafka_poll(k->rk, timeout_ms);
    cdc_kafka_watch(k->rk); /* /readyz: are the brokers back? */
}

int kafka_out_in_flight(kafka_out *k)
{
    return rd_kafka_outq_len(k->rk);
}

rd_kafka_resp_err_t kafka_out_fatal(kafka_out *k, char *err, size_t errlen)
{
    return rd_kafka_fatal_error(k->rk, err, errlen);
}
