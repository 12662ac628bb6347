/* snapshot.h: the initial snapshot (issue 7). Before the producer streams
 * from a slot it has just created (--snapshot initial), or on every start
 * (always), every table of the publication is read in one consistent
 * snapshot by --snapshot-workers connections, in primary-key chunks, and
 * each row is produced as an 'r' event versioned by the position streaming
 * resumes from. Why that version is safe, and how a crash is, is told in
 * snapshot.c. */
#ifndef PGCDC_SNAPSHOT_H
#define PGCDC_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "colpolicy.h"
#include "kafka_out.h"
#include "pgvalue.h"
#include "replication.h"

typedef struct snapshot snapshot;

typedef struct snapshot_settings {
    const char *conninfo;
    const char *slot;
    const char *publication;
    const char *topic_prefix;
    const char *mode;       /* "initial", "never" or "always" */
    int workers;            /* connections reading in parallel, >= 1 */
    long chunk_rows;        /* rows per key-ordered query */
    bool create_slot;       /* --create-slot: the slot may be made here */
    const colpolicy *policy; /* columns left out or hashed (NULL: none); must outlive */
} snapshot_settings;

/* Copies nothing: the strings must outlive the snapshot. Returns 0, or -1
 * with err (memory). */
int snapshot_new(const snapshot_settings *set, snapshot **out, char *err, size_t errlen);
void snapshot_free(snapshot *s);

/* Called on every connection, after IDENTIFY_SYSTEM and the slot look-up,
 * before START_REPLICATION. When a snapshot is due it creates the slot if
 * missing (on `repl`), reads and produces every table, waits until Kafka
 * has acknowledged every record, and only then returns, with *slot_exists
 * and *confirmed (the position to stream from) updated. Delivery reports are served meanwhile
 * through kafka_out_poll: the producer's callback must hand them to
 * snapshot_on_delivered first. resolve maps user types (catalog).
 * Returns 0, or -1 with err (the snapshot is then due again on the next
 * connection), or PG_PERMANENT when it can never be taken here (a standby).
 * A stop request (SIGTERM) ends it with -1 too. */
int snapshot_before_stream(snapshot *s, repl_conn *repl, const char *dbname, kafka_out *kafka,
                           pgvalue_resolve_fn resolve, void *resolve_ctx, int *slot_exists,
                           uint64_t *confirmed, char *err, size_t errlen);

/* Whether the topic of some published table was written to before (by an
 * earlier run: kafka_out_written), its name copied to topic. Returns 1, 0,
 * or -1 with err (PostgreSQL or Kafka did not answer). */
int snapshot_written_topic(snapshot *s, kafka_out *kafka, char *topic, size_t topiclen,
                           char *err, size_t errlen);

/* For the producer's delivery report callback: true when m is a record of
 * the snapshot (it is counted here and the caller must not look at it). */
bool snapshot_on_delivered(snapshot *s, const rd_kafka_message_t *m);

#endif
