/* kafka_out.h: the producer's Kafka side: an idempotent librdkafka producer
 * (acks=all, murmur2_random partitioner, no message timeout), topics created
 * through the admin API when missing, and their partition counts. Delivery
 * reports come back through a callback during kafka_out_poll. */
#ifndef PGCDC_KAFKA_OUT_H
#define PGCDC_KAFKA_OUT_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "cdc_config.h"

typedef struct kafka_out kafka_out;
typedef struct kafka_topic kafka_topic;

/* Called for every record from kafka_out_poll/flush: err is
 * RD_KAFKA_RESP_ERR_NO_ERROR when Kafka acknowledged it. */
typedef void (*kafka_out_delivered_fn)(void *ctx, const rd_kafka_message_t *m);

/* Options used: brokers, partitions, replication-factor and -X. */
int kafka_out_new(const cdc_config *cfg, kafka_out_delivered_fn cb, void *ctx,
                  kafka_out **out, char *err, size_t errlen);
void kafka_out_destroy(kafka_out *k);

/* The topic handle for `name`, created with the configured partitions and
 * replication factor when the cluster does not have it. Cached: only the
 * first call per topic talks to the cluster (up to timeout_ms, or until a
 * stop is requested: cdc_signal_stop_requested). */
int kafka_out_topic(kafka_out *k, const char *name, int timeout_ms, kafka_topic **t,
                    char *err, size_t errlen);
int32_t kafka_topic_partitions(const kafka_topic *t);
const char *kafka_topic_name(const kafka_topic *t);

/* Hands one record to librdkafka (copied). partition is
 * RD_KAFKA_PARTITION_UA to let the partitioner choose from the key.
 * value NULL is a tombstone. Returns RD_KAFKA_RESP_ERR_NO_ERROR,
 * RD_KAFKA_RESP_ERR__QUEUE_FULL (poll, then try again), or another error
 * (MSG_SIZE_TOO_LARGE, ...). */
rd_kafka_resp_err_t kafka_out_produce(kafka_out *k, kafka_topic *t, int32_t partition,
                                      const void *key, size_t keylen,
                                      const void *value, size_t valuelen,
                                      uint64_t lsn, void *opaque);

/* A record header besides pgcdc-lsn (outbox events); value NULL is a
 * header without value. */
typedef struct kafka_out_header {
    const char *name;
    size_t name_len;
    const void *value;
    size_t value_len;
} kafka_out_header;

/* kafka_out_produce with these headers after pgcdc-lsn (copied). */
rd_kafka_resp_err_t kafka_out_produce_headers(kafka_out *k, kafka_topic *t, int32_t partition,
                                              const void *key, size_t keylen,
                                              const void *value, size_t valuelen, uint64_t lsn,
                                              const kafka_out_header *hdrs, size_t nhdrs,
                                              void *opaque);

/* Whether one of the topics `names` was written to before (a high
 * watermark above 0 in some partition, whatever retention removed since):
 * its name is copied to topic. Returns 1, 0 when none was (or none
 * exists), -1 with err when the cluster did not answer within timeout_ms. */
int kafka_out_written(kafka_out *k, const char *const *names, size_t n, int timeout_ms,
                      char *topic, size_t topiclen, char *err, size_t errlen);

/* Gives up on every record not yet acknowledged, for a producer about to
 * be destroyed: each comes back through the delivery callback with
 * RD_KAFKA_RESP_ERR__PURGE_QUEUE or __PURGE_INFLIGHT (served here, for up
 * to timeout_ms), so no record is left without its report. */
void kafka_out_purge(kafka_out *k, int timeout_ms);

/* Serves delivery reports and errors for up to timeout_ms; while Kafka is
 * marked down, checks whether it is back (cdc_kafka_watch). */
void kafka_out_poll(kafka_out *k, int timeout_ms);
/* Records not yet acknowledged or failed. */
int kafka_out_in_flight(kafka_out *k);
/* A fatal error of the idempotent producer (the instance must be
 * replaced), or RD_KAFKA_RESP_ERR_NO_ERROR. */
rd_kafka_resp_err_t kafka_out_fatal(kafka_out *k, char *err, size_t errlen);

#endif
