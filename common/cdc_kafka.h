/* cdc_kafka.h: what both binaries do the same way with librdkafka:
 * applying a table of settings, and routing the client's logs and errors
 * into cdc_log (so secrets are masked there too). */
#ifndef PGCDC_CDC_KAFKA_H
#define PGCDC_CDC_KAFKA_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/* Applies {key, value, key, value, ..., NULL}; a NULL value skips its key.
 * Returns 0, or -1 with err naming the key, the value and librdkafka's
 * reason. */
int cdc_kafka_conf_set_all(rd_kafka_conf_t *conf, const char *const *pairs,
                           char *err, size_t errlen);

/* For rd_kafka_conf_set_log_cb and rd_kafka_conf_set_error_cb. The error
 * callback marks the dependency "kafka" down (cdc_metrics_dependency) when
 * all brokers are down. */
void cdc_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
void cdc_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/* While "kafka" is marked down, or after a connection to a broker failed,
 * asks the cluster for metadata, at most once a second and for at most half
 * a second, and marks it up when a broker answers, down when none does:
 * librdkafka reports brokers going down but not coming back, and an idle
 * client has no request of its own to find out. Does nothing while Kafka is
 * up and no connection failed. Call it from the loop that owns rk (one
 * thread). */
void cdc_kafka_watch(rd_kafka_t *rk);

#endif
