/* offsets.h: which Kafka offset each partition may store, when records are
 * acknowledged out of order and by several parties (sinks, the dead-letter
 * producer). No I/O; memory per partition is capped by the caller.
 *
 * Every record read is tracked with a mask of the acknowledgements it still
 * needs (one bit per sink, chosen by the caller). The storable offset of a
 * partition is the lowest offset whose mask is not empty, or, when every
 * tracked record is done, the last tracked offset + 1: in Kafka's sense "the
 * next record to read", so every record below it has been acknowledged by
 * everyone. Records skipped on purpose (tombstones) are tracked with an
 * empty mask; a record sent to the dead-letter topic has its sink bit
 * swapped for a dead-letter bit (offsets_require, then offsets_ack), so it
 * counts as done only once the dead-letter write is acknowledged.
 *
 * Acknowledgements carry the generation that offsets_track returned: after a
 * revocation and a new assignment of the same partition, a late ack from the
 * old generation is ignored instead of clearing a re-read record. */
#ifndef PGCDC_CONSUMER_OFFSETS_H
#define PGCDC_CONSUMER_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct offsets offsets;

enum {
    OFFSETS_OK = 0,
    OFFSETS_IGNORED = 1,  /* ack for a revoked partition, an older generation,
                             or a record already fully acknowledged */
    OFFSETS_FULL = 2,     /* the partition holds max_inflight records: pause it */
    OFFSETS_ERROR = -1,   /* err says what (offset not increasing, never tracked, no memory) */
};

#define OFFSETS_NONE ((int64_t)-1) /* nothing storable yet */

/* max_inflight: records tracked but not yet done, per partition (>= 1).
 * Returns NULL when memory runs out. */
offsets *offsets_create(size_t max_inflight);
void offsets_destroy(offsets *t);

/* Starts a new generation of a partition (on assignment). Tracking an
 * unassigned partition assigns it implicitly. A partition already assigned
 * keeps its state. */
int offsets_assign(offsets *t, const char *topic, int32_t partition, char *err, size_t errlen);

/* Forgets a partition (on revocation, or before seeking it elsewhere) and
 * returns the offset it may store for the last time in *storable (or
 * OFFSETS_NONE). Later acks of that generation are ignored. Returns 0, or
 * OFFSETS_IGNORED when it was not assigned. */
int offsets_revoke(offsets *t, const char *topic, int32_t partition, int64_t *storable);

/* Tracks a record just read. Offsets of a partition must increase (gaps are
 * fine: compaction, transaction markers). needs == 0: nothing to wait for.
 * *generation receives the value to hand back with every ack of it.
 * OFFSETS_FULL: not tracked; pause the partition and retry after acks. */
int offsets_track(offsets *t, const char *topic, int32_t partition, int64_t offset,
                  uint32_t needs, uint32_t *generation, char *err, size_t errlen);

/* Adds bits to what a tracked record needs (before clearing the bit it
 * replaces, e.g. require DLQ then ack ES). */
int offsets_require(offsets *t, const char *topic, int32_t partition, uint32_t generation,
                    int64_t offset, uint32_t bits, char *err, size_t errlen);

/* Clears bits of one record, or of every tracked record in [first, last]
 * (a batch): bits a record does not need are ignored, so acking twice is
 * harmless. */
int offsets_ack(offsets *t, const char *topic, int32_t partition, uint32_t generation,
                int64_t offset, uint32_t bits, char *err, size_t errlen);
int offsets_ack_range(offsets *t, const char *topic, int32_t partition, uint32_t generation,
                      int64_t first, int64_t last, uint32_t bits, char *err, size_t errlen);

/* The offset the partition may store now, or OFFSETS_NONE. */
int64_t offsets_storable(const offsets *t, const char *topic, int32_t partition);

/* Records tracked and not yet done, in one partition / in all. */
size_t offsets_inflight(const offsets *t, const char *topic, int32_t partition);
size_t offsets_inflight_total(const offsets *t);

/* Calls fn for every partition whose storable offset moved since the last
 * collect (the caller then stores it with rd_kafka_offsets_store). A
 * non-zero return from fn stops the walk and is returned; that partition is
 * reported again next time. */
typedef int (*offsets_fn)(void *opaque, const char *topic, int32_t partition, int64_t offset);
int offsets_collect(offsets *t, offsets_fn fn, void *opaque);

#endif
