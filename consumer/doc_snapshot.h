/* doc_snapshot.h: what the documents sink (sink_docs.c) makes of the snapshot
 * of its read transaction (pg_current_snapshot(): xmax and the transactions
 * still in progress): the version of the documents read, and whether the
 * read sees the transactions of the events that asked for it. Pure. */
#ifndef PGCDC_CONSUMER_DOC_SNAPSHOT_H
#define PGCDC_CONSUMER_DOC_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* xmax * 65536 + (65535 - nxip), nxip counted up to 65535. A snapshot taken
 * later has an xmax at least as high and, for the same xmax, a subset of
 * the in-progress transactions: the version never goes down with time, and
 * two equal versions saw the same transactions committed. */
uint64_t doc_snapshot_version(uint64_t xmax, size_t nxip);

/* Whether the snapshot (64-bit xmax and in-progress xids) sees the
 * transaction of 32-bit xid `xid` (an event's source.txid) as committed.
 * The xid is taken as the one of its value nearest to xmax, below or
 * above: a change just streamed is within 2^31 of it. */
bool doc_snapshot_sees(uint64_t xmax, const uint64_t *xip, size_t nxip, uint32_t xid);

#endif
