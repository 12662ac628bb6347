/* kafka_floor.c: what librdkafka alone spends to produce the records
 * pgcdc-producer produced (not a test; bench/producer and bench/e2e run it).
 * It reads every record of a topic into memory first, untimed, then hands
 * them to a producer made by the producer's own kafka_out (the same
 * settings, partitioner and pgcdc-lsn header) and waits for every
 * acknowledgement. The CPU of that second phase, all threads, is the floor
 * under pgcdc-producer's CPU per change: no reading of the stream, no
 * decoding, no JSON, no bookkeeping, only the Kafka client.
 *
 *   kafka_floor --brokers HOST:PORT --from TOPIC --to TOPIC [--partitions N]
 *               [--rate RECORDS_PER_S] [--count N] [-X k=v]
 *
 * --rate paces the records as the producer's run did: librdkafka's cost per
 * record depends on how many records a produce request carries, which
 * depends on how fast they come. 0 hands them over as fast as it can.
 * --count replays only the first N records read (0: all).
 *
 * Prints one line: "records N user_s U sys_s S wall_s W librdkafka_threads_s T",
 * T being the share of U + S spent on librdkafka's own threads (rdk:*). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>

#include <librdkafka/rdkafka.h>

#include "cdc_buf.h"
#include "cdc_config.h"
#include "kafka_out.h"

#define READ_TIMEOUT_MS 120000
#define DELIVERY_TIMEOUT_MS 300000

typedef struct record {
    size_t key_off, key_len;
    size_t value_off, value_len; /* value_off SIZE_MAX: a tombstone */
    uint64_t lsn;
} record;

typedef struct records {
    record *items;
    size_t n, cap;
    cdc_buf bytes; /* keys and values, back to back */
} records;

typedef struct delivered {
    size_t ok, failed;
    char first_error[256];
} delivered;

static const cdc_option floor_options[] = {
    {.name = "brokers", .type = CDC_OPT_STRING, .def = "127.0.0.1:9092",
     .help = "Kafka bootstrap servers"},
    {.name = "from", .type = CDC_OPT_STRING, .help = "topic whose records are replayed"},
    {.name = "to", .type = CDC_OPT_STRING, .help = "topic they are produced to"},
    {.name = "partitions", .type = CDC_OPT_INT, .def = "6", .min = 1, .max = 10000,
     .help = "partitions of --to when it is created"},
    {.name = "count", .type = CDC_OPT_INT, .def = "0", .min = 0, .max = 1000000000,
     .help = "records to replay (0: all of --from)"},
    {.name = "rate", .type = CDC_OPT_INT, .def = "0", .min = 0, .max = 100000000,
     .help = "records per second to hand to librdkafka (0: as fast as possible)"},
    {.name = "replication-factor", .type = CDC_OPT_INT, .def = "1", .min = 1, .max = 100,
     .help = "replication factor of --to when it is created"},
    CDC_OPTION_END,
};

static double seconds(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of this process's threads named rdk:* (librdkafka's). */
static double librdkafka_threads_cpu(void)
{
    double total = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], stat[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[n] = '\0';
        /* "tid (comm) state ..." with utime and stime the 12th and 13th
         * fields after the comm's closing parenthesis. */
        char *comm = strchr(stat, '('), *close = strrchr(stat, ')');
        if (!comm || !close || strncmp(comm + 1, "rdk:", 4) != 0)
            continue;
        unsigned long long utime = 0, stime = 0;
        if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                   &utime, &stime) == 2)
            total += (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    }
    closedir(d);
    return total;
}

static int keep_record(records *r, const rd_kafka_message_t *m, char *err, size_t errlen)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 65536;
        record *items = realloc(r->items, cap * sizeof *items);
        if (!items) {
            snprintf(err, errlen, "out of memory after %zu records", r->n);
            return -1;
        }
        r->items = items;
        r->cap = cap;
    }
    record *rec = &r->items[r->n];
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t vlen = 0;
    char lsn[32];
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, "pgcdc-lsn", &v, &vlen) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        vlen == 0 || vlen >= sizeof lsn) {
        snprintf(err, errlen, "record at partition %" PRId32 " offset %" PRId64
                 " has no pgcdc-lsn header", m->partition, m->offset);
        return -1;
    }
    memcpy(lsn, v, vlen);
    lsn[vlen] = '\0';
    rec->lsn = strtoull(lsn, NULL, 10);
    rec->key_len = m->key_len;
    rec->value_len = m->payload ? m->len : 0;
    rec->key_off = r->bytes.len;
    rec->value_off = m->payload ? r->bytes.len + m->key_len : SIZE_MAX;
    if (cdc_buf_append(&r->bytes, m->key, m->key_len) < 0 ||
        (m->payload && cdc_buf_append(&r->bytes, m->payload, m->len) < 0)) {
        snprintf(err, errlen, "out of memory after %zu records", r->n);
        return -1;
    }
    r->n++;
    return 0;
}

/* Every record of `topic` (up to `count` when count > 0), each partition's
 * in offset order. */
static int read_topic(const char *brokers, const char *topic, size_t count, records *r,
                      char *err, size_t errlen)
{
    char reason[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, reason, sizeof reason) ||
        rd_kafka_conf_set(conf, "group.id", "pgcdc-bench-floor", reason, sizeof reason) ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", reason, sizeof reason) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", reason, sizeof reason)) {
        snprintf(err, errlen, "consumer settings: %s", reason);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, reason, sizeof reason);
    if (!rk) {
        snprintf(err, errlen, "cannot create a consumer: %s", reason);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    int rc = -1;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 30000);
    if (e || md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(err, errlen, "no metadata for topic %s: %s", topic,
                 rd_kafka_err2str(e ? e : md->topic_cnt ? md->topics[0].err
                                                         : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        goto done;
    }
    int partitions = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    e = rd_kafka_assign(rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    if (e) {
        snprintf(err, errlen, "cannot assign %s: %s", topic, rd_kafka_err2str(e));
        goto done;
    }
    int at_end = 0;
    double deadline = now() + READ_TIMEOUT_MS / 1000.0;
    while (at_end < partitions && (count == 0 || r->n < count)) {
        if (now() > deadline) {
            snprintf(err, errlen, "%s not read to its end within %d s (%zu records)", topic,
                     READ_TIMEOUT_MS / 1000, r->n);
            goto done;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m)
            continue;
        int failed = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            at_end++;
        else if (m->err) {
            snprintf(err, errlen, "reading %s: %s", topic, rd_kafka_message_errstr(m));
            failed = 1;
        } else if (keep_record(r, m, err, errlen) < 0)
            failed = 1;
        rd_kafka_message_destroy(m);
        if (failed)
            goto done;
    }
    rc = 0;
done:
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

static void on_delivered(void *ctx, const rd_kafka_message_t *m)
{
    delivered *d = ctx;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        d->ok++;
        return;
    }
    if (d->failed++ == 0)
        snprintf(d->first_error, sizeof d->first_error, "%s", rd_kafka_err2str(m->err));
}

/* Produces every record as pgcdc-producer does (kafka_out, the key
 * choosing the partition, the LSN as pgcdc-lsn), `rate` a second or as fast
 * as it can, and waits for all acknowledgements; polls for delivery reports
 * once per 100 records, about as often as the producer does under a
 * backlog, and while ahead of the pace. */
static int replay(const cdc_config *cfg, const records *r, const char *topic, long long rate,
                  double *rdk_cpu, char *err, size_t errlen)
{
    delivered d = {0};
    kafka_out *k = NULL;
    kafka_topic *t = NULL;
    if (kafka_out_new(cfg, on_delivered, &d, &k, err, errlen) < 0)
        return -1;
    int rc = -1;
    if (kafka_out_topic(k, topic, 60000, &t, err, errlen) < 0)
        goto done;
    double started = now();
    for (size_t i = 0; i < r->n; i++) {
        if (rate > 0 && i % 8 == 0) {
            double ahead = started + (double)i / (double)rate - now();
            if (ahead > 0.001)
                kafka_out_poll(k, (int)(ahead * 1000));
        }
        const record *rec = &r->items[i];
        const char *value = rec->value_off == SIZE_MAX ? NULL : r->bytes.data + rec->value_off;
        for (;;) {
            rd_kafka_resp_err_t e =
                kafka_out_produce(k, t, RD_KAFKA_PARTITION_UA, r->bytes.data + rec->key_off,
                                  rec->key_len, value, rec->value_len, rec->lsn, NULL);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                snprintf(err, errlen, "cannot produce record %zu: %s", i, rd_kafka_err2str(e));
                goto done;
            }
            kafka_out_poll(k, 10);
        }
        if (i % 100 == 99)
            kafka_out_poll(k, 0);
    }
    double deadline = now() + DELIVERY_TIMEOUT_MS / 1000.0;
    while (kafka_out_in_flight(k) > 0) {
        if (now() > deadline) {
            snprintf(err, errlen, "%d records not acknowledged within %d s",
                     kafka_out_in_flight(k), DELIVERY_TIMEOUT_MS / 1000);
            goto done;
        }
        kafka_out_poll(k, 100);
    }
    if (d.failed) {
        snprintf(err, errlen, "%zu of %zu records failed, the first with: %s", d.failed, r->n,
                 d.first_error);
        goto done;
    }
    *rdk_cpu = librdkafka_threads_cpu();
    rc = 0;
done:
    if (rc < 0)
        kafka_out_purge(k, 10000);
    kafka_out_destroy(k);
    return rc;
}

int main(int argc, char **argv)
{
    char err[1024];
    cdc_config *cfg = NULL;
    int parsed = cdc_config_parse(floor_options, "kafka_floor",
                                  "the CPU librdkafka alone spends on a topic's records",
                                  argc, argv, &cfg, err, sizeof err);
    if (parsed == CDC_CONFIG_EXIT)
        return 0;
    if (parsed != CDC_CONFIG_OK) {
        fprintf(stderr, "kafka_floor: %s\n", err);
        return 2;
    }
    const char *from = cdc_config_str(cfg, "from"), *to = cdc_config_str(cfg, "to");
    if (!from || !to) {
        fprintf(stderr, "kafka_floor: --from and --to are required\n");
        cdc_config_free(cfg);
        return 2;
    }
    records r = {.bytes = CDC_BUF_INIT};
    int rc = 1;
    if (read_topic(cdc_config_str(cfg, "brokers"), from, (size_t)cdc_config_int(cfg, "count"),
                   &r, err, sizeof err) < 0) {
        fprintf(stderr, "kafka_floor: %s\n", err);
        goto done;
    }
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    double started = now();
    double rdk_cpu = 0;
    if (replay(cfg, &r, to, cdc_config_int(cfg, "rate"), &rdk_cpu, err, sizeof err) < 0) {
        fprintf(stderr, "kafka_floor: %s\n", err);
        goto done;
    }
    double wall = now() - started;
    getrusage(RUSAGE_SELF, &after);
    printf("records %zu user_s %.3f sys_s %.3f wall_s %.3f librdkafka_threads_s %.3f\n", r.n,
           seconds(&after.ru_utime) - seconds(&before.ru_utime),
           seconds(&after.ru_stime) - seconds(&before.ru_stime), wall, rdk_cpu);
    rc = 0;
done:
    free(r.items);
    cdc_buf_free(&r.bytes);
    cdc_config_free(cfg);
    return rc;
}
