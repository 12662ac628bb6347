/* kafka_tail: reads N records of one topic partition from the beginning with librdkafka
 * and prints them hex-encoded, so the integration tests can compare bytes exactly.
 *
 * Usage: kafka_tail -b BOOTSTRAP -t TOPIC [-p PARTITION] [-n COUNT] [-T TIMEOUT_MS]
 *                   [-X key=value]...
 * Output, one line per record, tab-separated:
 *   OFFSET  KEY  VALUE  HEADERS
 * KEY and VALUE are lowercase hex, or "-" when NULL (an empty value is "").
 * HEADERS is "-" when there are none, else comma-separated NAMEHEX:VALUEHEX pairs
 * (VALUEHEX "-" for a NULL header value).
 * Exit status: 0 when COUNT records were printed, 1 on timeout or a Kafka error,
 * 2 on bad usage. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define KAFKA_TAIL_MAX_PROPS 32

struct tail_opts {
    const char *bootstrap;
    const char *topic;
    int32_t partition;
    long count;
    long timeout_ms;
    const char *props[KAFKA_TAIL_MAX_PROPS];
    int nprops;
};

static void tail_usage(FILE *out)
{
    fprintf(out, "usage: kafka_tail -b BOOTSTRAP -t TOPIC [-p PARTITION] [-n COUNT] "
                 "[-T TIMEOUT_MS] [-X key=value]...\n");
}

static int tail_parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void tail_print_hex(const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        putchar(digits[p[i] >> 4]);
        putchar(digits[p[i] & 0xf]);
    }
}

static void tail_print_record(const rd_kafka_message_t *m)
{
    printf("%" PRId64 "\t", m->offset);
    if (m->key)
        tail_print_hex(m->key, m->key_len);
    else
        putchar('-');
    putchar('\t');
    if (m->payload)
        tail_print_hex(m->payload, m->len);
    else
        putchar('-');
    putchar('\t');

    rd_kafka_headers_t *hdrs = NULL;
    size_t nhdrs = 0;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
        nhdrs = rd_kafka_header_cnt(hdrs);
    if (nhdrs == 0)
        putchar('-');
    for (size_t i = 0; i < nhdrs; i++) {
        const char *name = NULL;
        const void *value = NULL;
        size_t size = 0;
        if (rd_kafka_header_get_all(hdrs, i, &name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (i > 0)
            putchar(',');
        tail_print_hex(name, strlen(name));
        putchar(':');
        if (value)
            tail_print_hex(value, size);
        else
            putchar('-');
    }
    putchar('\n');
    fflush(stdout);
}

static int tail_parse_args(int argc, char **argv, struct tail_opts *o)
{
    int c;
    long v;
    o->partition = 0;
    o->count = 1;
    o->timeout_ms = 30000;
    while ((c = getopt(argc, argv, "b:t:p:n:T:X:h")) != -1) {
        switch (c) {
        case 'b':
            o->bootstrap = optarg;
            break;
        case 't':
            o->topic = optarg;
            break;
        case 'p':
            if (tail_parse_long(optarg, 0, INT32_MAX, &v) < 0) {
                fprintf(stderr, "kafka_tail: -p wants a partition number >= 0, got '%s'\n", optarg);
                return -1;
            }
            o->partition = (int32_t)v;
            break;
        case 'n':
            if (tail_parse_long(optarg, 0, LONG_MAX, &o->count) < 0) {
                fprintf(stderr, "kafka_tail: -n wants a record count >= 0, got '%s'\n", optarg);
                return -1;
            }
            break;
        case 'T':
            if (tail_parse_long(optarg, 1, 3600000, &o->timeout_ms) < 0) {
                fprintf(stderr, "kafka_tail: -T wants milliseconds in 1..3600000, got '%s'\n",
                        optarg);
                return -1;
            }
            break;
        case 'X':
            if (o->nprops == KAFKA_TAIL_MAX_PROPS || !strchr(optarg, '=')) {
                fprintf(stderr, "kafka_tail: -X wants key=value (at most %d), got '%s'\n",
                        KAFKA_TAIL_MAX_PROPS, optarg);
                return -1;
            }
            o->props[o->nprops++] = optarg;
            break;
        case 'h':
            tail_usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (!o->bootstrap || !o->topic || optind != argc) {
        fprintf(stderr, "kafka_tail: -b and -t are required and nothing else may follow\n");
        return -1;
    }
    return 0;
}

static long tail_elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(now.tv_sec - since->tv_sec) * 1000 +
           (now.tv_nsec - since->tv_nsec) / 1000000;
}

static int tail_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka_tail: cannot set %s=%s: %s\n", name, value, errstr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct tail_opts o = {0};
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    char errstr[512];
    int status = 1;
    long got = 0;

    if (tail_parse_args(argc, argv, &o) < 0) {
        tail_usage(stderr);
        return 2;
    }

    conf = rd_kafka_conf_new();
    /* assign() without a group needs a group.id anyway for the consumer handle; nothing
     * is committed because auto-commit is off and we never call commit. */
    if (tail_set(conf, "bootstrap.servers", o.bootstrap) < 0 ||
        tail_set(conf, "group.id", "pgcdc-kafka-tail") < 0 ||
        tail_set(conf, "enable.auto.commit", "false") < 0 ||
        tail_set(conf, "enable.partition.eof", "false") < 0)
        goto fail;
    for (int i = 0; i < o.nprops; i++) {
        char kv[1024];
        snprintf(kv, sizeof kv, "%s", o.props[i]);
        char *eq = strchr(kv, '=');
        *eq = '\0';
        if (tail_set(conf, kv, eq + 1) < 0)
            goto fail;
    }

    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "kafka_tail: cannot create consumer: %s\n", errstr);
        goto fail;
    }
    conf = NULL; /* owned by rk now */

    parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, o.topic, o.partition)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, parts);
    if (err) {
        fprintf(stderr, "kafka_tail: cannot assign %s [%" PRId32 "]: %s\n", o.topic,
                o.partition, rd_kafka_err2str(err));
        goto fail;
    }

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (got < o.count) {
        long left = o.timeout_ms - tail_elapsed_ms(&start);
        if (left <= 0) {
            fprintf(stderr, "kafka_tail: read %ld of %ld records from %s [%" PRId32
                            "] within %ld ms\n", got, o.count, o.topic, o.partition,
                    o.timeout_ms);
            goto fail;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, left < 200 ? (int)left : 200);
        if (!m)
            continue;
        if (m->err) {
            /* The topic may not exist yet when the test starts reading; keep polling
             * until the deadline instead of failing on the first metadata miss. */
            if (m->err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
                m->err != RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION &&
                m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "kafka_tail: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        tail_print_record(m);
        rd_kafka_message_destroy(m);
        got++;
    }
    status = 0;

fail:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (conf)
        rd_kafka_conf_destroy(conf);
    return status;
}
