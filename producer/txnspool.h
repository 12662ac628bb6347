/* txnspool.h: the transactions PostgreSQL streams before they commit
 * (pgoutput protocol 2, streaming on: a transaction larger than the
 * server's logical_decoding_work_mem is sent in blocks between Stream Start
 * and Stream Stop while it runs). The event contract (docs/EVENTS.md) has
 * no uncommitted events, so nothing of such a transaction may reach Kafka
 * before its Stream Commit: its messages wait, as received, in a file of
 * their own (created in $TMPDIR, default /tmp, and unlinked at once), and
 * are read back in order at the commit. A Stream Abort drops the file; the
 * abort of a subtransaction cuts the file back to where that subtransaction
 * began, as PostgreSQL's own apply worker does (changes are streamed in WAL
 * order and subtransactions nest, so everything after a subtransaction's
 * first message belongs to it or to its children, or is a transactional
 * logical message, which carries the top-level xid). Memory stays at one
 * stdio buffer and one entry per subtransaction with changes, whatever the
 * size of the transaction. Nothing here talks to a server. */
#ifndef PGCDC_TXNSPOOL_H
#define PGCDC_TXNSPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct txnspool txnspool;

/* The transactions being streamed: several may be open at once, their
 * blocks interleaved with each other and with ordinary transactions. */
typedef struct txnspool_set {
    txnspool *head;
    txnspool *current;      /* the one of the open stream block, or NULL */
} txnspool_set;

/* Stream Start of transaction xid. first_segment: its first block (a new
 * file); otherwise the file of its earlier blocks. Returns 0, or -1 with
 * err set (a block already open, a first block of a transaction already
 * open, a later block of one never started, a file that cannot be made). */
int txnspool_start(txnspool_set *set, uint32_t xid, bool first_segment, char *err,
                   size_t errlen);
/* Stream Stop. Returns 0, or -1 when no block is open. */
int txnspool_stop(txnspool_set *set, char *err, size_t errlen);
/* A message of the open block (its WAL position and bytes as received).
 * Returns 0, or -1 with err set (not in a block, a message a block cannot
 * hold, a write that failed, e.g. a full disk). */
int txnspool_add(txnspool_set *set, uint64_t lsn, const uint8_t *msg, size_t len, char *err,
                 size_t errlen);
/* Stream Abort: subxid == xid drops the transaction; otherwise the
 * subtransaction's messages and all after them go, except Relation
 * messages, which are kept (the server does not send a relation again
 * within the same streamed transaction). An unknown xid or subxid had
 * nothing streamed: nothing to do. Returns 0, or -1 with err set. */
int txnspool_abort(txnspool_set *set, uint32_t xid, uint32_t subxid, char *err, size_t errlen);
/* Stream Commit: the transaction leaves the set, rewound for reading, or
 * NULL when it was never started (err set). The caller frees it. */
txnspool *txnspool_take(txnspool_set *set, uint32_t xid, char *err, size_t errlen);
/* Drops every transaction (the stream broke: the server sends them again). */
void txnspool_clear(txnspool_set *set);

/* The next message of a taken transaction: 1 with *lsn, *msg and *len set
 * (valid until the next call), 0 at the end, -1 with err set. */
int txnspool_next(txnspool *s, uint64_t *lsn, const uint8_t **msg, size_t *len, char *err,
                  size_t errlen);
uint64_t txnspool_messages(const txnspool *s);
uint64_t txnspool_bytes(const txnspool *s);
void txnspool_free(txnspool *s);

#endif
