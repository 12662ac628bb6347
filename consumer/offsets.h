/* offsets.h: the consumer's offset bookkeeping, the one place that decides
 * which offset of a partition may be stored (and so committed).
 *
 * The rule: a partition's offset moves past a record only once that record
 * and every record read before it in the partition were applied by the
 * sinks, refused into the dead-letter topic (acknowledged), or skipped on
 * purpose. A record read and then dropped (its batch was not applied) leaves
 * a hole: nothing at or past it is stored again in this assignment, and a
 * batch that would store past it is a bug reported as an error, not a
 * commit.
 *
 * Records are read into numbered batches; batches finish (or are dropped)
 * in the order they were read. Pure bookkeeping: no Kafka, no I/O. */
#ifndef PGCDC_CONSUMER_OFFSETS_H
#define PGCDC_CONSUMER_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct offset_book offset_book;

/* Called for each offset to store: `next` is the offset of the first record
 * not yet taken care of (Kafka's convention: last + 1). Returns 0, or -1
 * when it could not be stored (that is logged by the callee; bookkeeping
 * goes on: a later store covers it). */
typedef int (*offset_store_fn)(void *ctx, const char *topic, int32_t partition, int64_t next);

offset_book *offset_book_new(offset_store_fn store, void *ctx);
void offset_book_free(offset_book *ob);

/* The partition is assigned to this member: what was known of it from an
 * earlier assignment is forgotten (reading resumes at the group's committed
 * offset, which is never past a hole). */
void offset_book_assign(offset_book *ob, const char *topic, int32_t partition);
/* The partition was revoked or lost. */
void offset_book_revoke(offset_book *ob, const char *topic, int32_t partition);

/* Records before `next` are skipped on purpose (--reset-offsets): stored at
 * once. Returns -1 with err as offset_book_finish does. */
int offset_book_skip_to(offset_book *ob, const char *topic, int32_t partition, int64_t next,
                        char *err, size_t errlen);

/* A record at `offset` was read into batch number `batch` (batches are
 * numbered in read order). Returns -1 with err when it does not follow the
 * partition's last read record (offsets only grow within an assignment). */
int offset_book_read(offset_book *ob, const char *topic, int32_t partition, int64_t offset,
                     uint64_t batch, char *err, size_t errlen);

/* Every record of batch `batch` was applied, dead-lettered or skipped:
 * stores, for each partition it holds, the offset after its last record.
 * Returns -1 with err, storing nothing for that partition, when a record
 * read before the batch in that partition was dropped or is still pending
 * (a gap). */
int offset_book_finish(offset_book *ob, uint64_t batch, char *err, size_t errlen);

/* Batch `batch` was not applied (stop, failure): each partition it holds
 * gets a hole at its first record of the batch. */
void offset_book_drop(offset_book *ob, uint64_t batch);

/* The offset stored last for the partition (-1: none in this assignment). */
int64_t offset_book_stored(const offset_book *ob, const char *topic, int32_t partition);

#endif
