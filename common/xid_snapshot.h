/* xid_snapshot.h: which transactions a PostgreSQL snapshot saw, from the
 * text of pg_current_snapshot() ("xmin:xmax:xip,xip,..."), judged for the
 * 32-bit xids of the replication stream. The producer reads a re-snapshot
 * chunk with such a snapshot: a streamed change of a transaction it did not
 * see is newer than the chunk's row (producer/resnapshot.c). The consumer
 * reads joined documents with one: it is read again until it saw the
 * transactions of the events that asked for it, and it orders the documents'
 * versions (consumer/sink_docs.c). Pure: no I/O. */
#ifndef PGCDC_XID_SNAPSHOT_H
#define PGCDC_XID_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct xid_snapshot {
    uint32_t xmin;   /* every transaction before it had ended */
    uint32_t xmax;   /* none from it on had started */
    uint64_t xmax_full;  /* xmax as printed: 64 bits, never wraps */
    uint32_t *xip;   /* in progress in between: not seen */
    size_t nxip;
} xid_snapshot;

/* Parses text into snap (whose earlier contents are freed; zero it first).
 * The full 64-bit xids of pg_current_snapshot() are kept as the 32-bit xids
 * the replication stream carries. Returns 0, or -1 with err naming what was
 * wrong and where; snap is then empty. */
int xid_snapshot_parse(xid_snapshot *snap, const char *text, char *err, size_t errlen);

/* Whether the snapshot saw transaction xid's changes: it committed before
 * the snapshot was taken. 32-bit xids are compared modulo 2^32, as
 * PostgreSQL compares them. */
bool xid_snapshot_saw(const xid_snapshot *snap, uint32_t xid);

/* A number that never goes down for snapshots taken later: xmax_full *
 * 65536 + (65535 - nxip), nxip counted up to 65535. A later snapshot has an
 * xmax at least as high and, for the same xmax, a subset of the in-progress
 * transactions; two equal ranks saw the same transactions committed. */
uint64_t xid_snapshot_rank(const xid_snapshot *snap);

void xid_snapshot_clear(xid_snapshot *snap);

#endif
