/* flushpos.h: which WAL position may be reported to PostgreSQL as flushed.
 * Transactions are tracked in commit order with the number of their records
 * Kafka has not yet acknowledged; the flush position is the end of the newest
 * transaction that, with every one before it, is fully acknowledged. Pure. */
#ifndef PGCDC_FLUSHPOS_H
#define PGCDC_FLUSHPOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct flushpos_txn flushpos_txn;

typedef struct flushpos {
    flushpos_txn *head;      /* oldest transaction not yet confirmed */
    flushpos_txn *tail;
    flushpos_txn *open;      /* between Begin and Commit, or NULL */
    flushpos_txn *spare;     /* freed entries kept for reuse */
    uint64_t confirmed;      /* everything below this is in Kafka */
    size_t ntxn;             /* transactions tracked */
    uint64_t outstanding;    /* records sent and not yet acknowledged */
    uint64_t hold;           /* confirmed never passes this; 0: no hold */
} flushpos;

void flushpos_init(flushpos *fp, uint64_t confirmed);
void flushpos_free(flushpos *fp);

/* A Begin message. Returns 0, or -1 when memory runs out. */
int flushpos_begin(flushpos *fp);
/* A record of the open transaction (or, with no transaction open, of a
 * non-transactional message, tracked alone) handed to Kafka. Returns the
 * handle to give to flushpos_ack when it is delivered, or NULL when memory
 * runs out. */
flushpos_txn *flushpos_sent(flushpos *fp);
/* The Commit of the open transaction, whose end is end_lsn. */
void flushpos_commit(flushpos *fp, uint64_t end_lsn);
/* Kafka acknowledged one record of txn. */
void flushpos_ack(flushpos *fp, flushpos_txn *txn);
/* Kafka refused one record of txn for good: it no longer counts as
 * outstanding (nothing will ever acknowledge it), and txn never confirms,
 * so the position stays before it and a restart reads it again. */
void flushpos_refused(flushpos *fp, flushpos_txn *txn);
/* The stream broke inside a transaction: its records still count until they
 * are acknowledged, but it will never confirm anything (it is re-sent). */
void flushpos_abandon_open(flushpos *fp);

/* Keeps the confirmed position at or below lsn until flushpos_release,
 * whatever is acknowledged meanwhile (a re-snapshot asked for by a signal
 * row holds at the signal's transaction, so that a restart reads the
 * signal again). A second hold keeps the lower of the two. */
void flushpos_hold(flushpos *fp, uint64_t lsn);
/* Ends the hold; the position moves on with the next acknowledgement. */
void flushpos_release(flushpos *fp);

/* Nothing sent is waiting for Kafka and no transaction is open: the caller
 * may confirm the server's position. */
bool flushpos_idle(const flushpos *fp);
/* Moves the confirmed position forward to lsn if idle (never backwards). */
void flushpos_confirm_idle(flushpos *fp, uint64_t lsn);

#endif
