/* sink.h: what the consumer's main loop asks of a sink (Elasticsearch/
 * OpenSearch, Redis): apply a batch of decoded events, in order per row,
 * and say for each record whether it was applied or rejected for good.
 * Transient failures (a dead server, 429, 5xx, timeouts) are the sink's to
 * retry, with capped exponential backoff and jitter, until they succeed or
 * a stop is requested. */
#ifndef PGCDC_CONSUMER_SINK_H
#define PGCDC_CONSUMER_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <yajl/yajl_tree.h>

#include "cdc_config.h"
#include "cdc_event.h"

/* One Kafka record of a batch, decoded. Sinks read everything but
 * `rejects`, and set a reject (sink_reject) for a record they refuse for
 * good; the main loop dead-letters it with that reason. */
typedef struct consumer_record {
    const rd_kafka_message_t *msg;  /* topic, partition, offset, key, value */
    cdc_decoded_event ev;           /* the value, decoded */
    yajl_val key;                   /* the key object; NULL for a null key (truncates,
                                       tables without replica identity) */
    bool key_in_arena;              /* key freed with the batch's arena, not yajl_tree_free */
    struct sink_reject *rejects;    /* list, one per refusing sink */
} consumer_record;

typedef struct sink_reject {
    struct sink_reject *next;
    const char *sink;               /* "es", "redis" */
    char *reason;                   /* the server's words, owned */
} sink_reject;

/* Marks rec as refused by `sink` with `reason` (copied). Returns 0 or -1. */
int sink_reject_record(consumer_record *rec, const char *sink, const char *reason);
void sink_rejects_free(consumer_record *rec);

typedef struct sink sink;
struct sink {
    const char *name;
    /* Applies recs[0..n) (one partition's records keep their order; records
     * of one row are in one partition). Returns 0 when every record is
     * applied, refused (sink_reject_record) or skipped on purpose (no key:
     * counted and logged); -1 with err when a stop was requested before the
     * batch was applied, including before its first request: once a stop is
     * requested no batch may succeed, since one before it may have been
     * dropped (consumer/offsets.h). None of its offsets is then stored. */
    int (*apply)(sink *s, consumer_record *const *recs, size_t n, char *err, size_t errlen);
    /* Or NULL: one attempt of apply, without its retries. Returns what apply
     * does, or 1 when the attempt met a transient failure (logged and
     * counted as a retry); apply then starts the batch over, which the
     * sink's writes, idempotent, allow. The consumer calls it on its
     * reading thread when nothing else is waiting to be read (consumer.c,
     * inflight_apply_here). */
    int (*apply_once)(sink *s, consumer_record *const *recs, size_t n, char *err,
                      size_t errlen);
    /* --until-end, or NULL: called with no batch in flight once every
     * assigned partition is applied up to its end offsets. Returns 0 when
     * the sink is done; 1 when the consumer must first apply everything up
     * to the end offsets of now, then call it again; -1 with err when it
     * failed (or a stop was requested). */
    int (*at_end)(sink *s, char *err, size_t errlen);
    void (*destroy)(sink *s);
    /* Applied, refused, skipped records; retried requests. */
    uint64_t applied, rejected, skipped, retries;
};

/* Each returns NULL with err set when its options are wrong; a server that
 * is down is not an error here (the first batch waits for it). */
sink *sink_es_new(const cdc_config *cfg, char *err, size_t errlen);
sink *sink_redis_new(const cdc_config *cfg, char *err, size_t errlen);
/* --documents (sink_docs.c): documents joined from several tables, written to
 * --es and/or --redis in place of the per-row sinks. It waits for PostgreSQL
 * (--documents-pg) at start, and refuses to start (NULL, err) on a bad
 * definition or a table whose replica identity lacks a column it needs. */
sink *sink_docs_new(const cdc_config *cfg, char *err, size_t errlen);

/* Sleeps for the backoff of `attempt` (0, 1, ...): exponential from
 * min_ms, capped at max_ms, with full jitter; wakes early on a stop
 * request. Returns false when a stop was requested. */
bool sink_backoff(unsigned attempt, int min_ms, int max_ms);

#endif
