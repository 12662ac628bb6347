/* deadletter.h: the dead-letter topic. A record that is not a valid event,
 * or that a sink refuses for good, is written there with its reason and
 * origin in headers (docs/consumer-sinks.md), and its offset may be stored
 * only once Kafka acknowledged the dead letter.
 *
 * A dead letter that cannot be written whole (larger than the producer's or
 * the topic's message size limit, or refused by the topic) is written in a
 * reduced form: origin, reason, original size and as much of the value as
 * fits. One that cannot be written at all is an error: the caller stores
 * nothing past it, so a restart reads the record again. */
#ifndef PGCDC_CONSUMER_DEADLETTER_H
#define PGCDC_CONSUMER_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "cdc_config.h"

typedef struct dead_letters dead_letters;

/* The producer of dead letters to `topic`: idempotent, acks=all, never
 * giving up on a transient error. Returns NULL with err. */
dead_letters *dead_letters_new(const cdc_config *cfg, const char *topic, char *err,
                               size_t errlen);
/* Waits up to 5 s for what is still queued, then frees. NULL is fine. */
void dead_letters_free(dead_letters *dl);

/* Queues the dead letter of `m` (refused by `sink`, "decode" or "outbox",
 * because of `reason`). `m` must stay alive until dead_letters_wait
 * returns. Returns 0, or -1 with err when it cannot even be queued. */
int dead_letters_send(dead_letters *dl, const rd_kafka_message_t *m, const char *sink,
                      const char *reason, char *err, size_t errlen);

/* Waits until every queued dead letter is acknowledged, writing again in a
 * reduced form those refused for their size or by the topic. Returns 0 when
 * all are written, 1 when a stop was requested first, -1 with err when one
 * cannot be written at all. Either way nothing stays queued after it. */
int dead_letters_wait(dead_letters *dl, char *err, size_t errlen);

/* The caller gives up on every queued dead letter (its batch is dropped):
 * their records may be freed; nothing of them counts as written. */
void dead_letters_abandon(dead_letters *dl);

/* Dead letters acknowledged, and how many of them were reduced. */
uint64_t dead_letters_written(const dead_letters *dl);
uint64_t dead_letters_reduced(const dead_letters *dl);

/* The reduced value: how many of `value_len` bytes to keep so that a
 * record of `max_bytes` (the size limit) still holds them with `fixed`
 * bytes of key, headers and framing; `attempt` 0 is the first reduction,
 * each further one (refused again) keeps half as much. Pure: unit tested. */
size_t dead_letters_value_fit(size_t value_len, size_t max_bytes, size_t fixed, unsigned attempt);

#endif
