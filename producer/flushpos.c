/* flushpos.c: commit-ordered transaction tracking for the flush position
 * (see flushpos.h). Entries are recycled so the steady state allocates
 * nothing; memory is bounded by the records Kafka holds in flight. */
#include "flushpos.h"

#include <stdlib.h>

struct flushpos_txn {
    flushpos_txn *next;
    uint64_t end_lsn;        /* 0 until committed; 0 forever when abandoned */
    uint64_t unacked;
    bool closed;             /* committed or abandoned */
    bool refused;            /* a record was refused: never confirms */
};

void flushpos_init(flushpos *fp, uint64_t confirmed)
{
    *fp = (flushpos){.confirmed = confirmed};
}

static void free_list(flushpos_txn *t)
{
    while (t) {
        flushpos_txn *next = t->next;
        free(t);
        t = next;
    }
}

void flushpos_free(flushpos *fp)
{
    if (!fp)
        return;
    free_list(fp->head);
    free_list(fp->spare);
    fp->head = fp->tail = fp->open = fp->spare = NULL;
    fp->ntxn = 0;
}

static flushpos_txn *push(flushpos *fp)
{
    flushpos_txn *t = fp->spare;
    if (t)
        fp->spare = t->next;
    else if (!(t = malloc(sizeof *t)))
        return NULL;
    *t = (flushpos_txn){0};
    if (fp->tail)
        fp->tail->next = t;
    else
        fp->head = t;
    fp->tail = t;
    fp->ntxn++;
    return t;
}

/* Pops every leading transaction that is closed and fully acknowledged. */
static void advance(flushpos *fp)
{
    while (fp->head && fp->head->closed && fp->head->unacked == 0 && !fp->head->refused) {
        flushpos_txn *t = fp->head;
        uint64_t end = fp->hold && t->end_lsn > fp->hold ? fp->hold : t->end_lsn;
        if (end > fp->confirmed)
            fp->confirmed = end;
        fp->head = t->next;
        if (!fp->head)
            fp->tail = NULL;
        t->next = fp->spare;
        fp->spare = t;
        fp->ntxn--;
    }
}

int flushpos_begin(flushpos *fp)
{
    if (fp->open)
        flushpos_abandon_open(fp);
    fp->open = push(fp);
    return fp->open ? 0 : -1;
}

flushpos_txn *flushpos_sent(flushpos *fp)
{
    flushpos_txn *t = fp->open;
    if (!t) {
        /* A record outside any transaction confirms nothing by itself. */
        if (!(t = push(fp)))
            return NULL;
        t->closed = true;
    }
    t->unacked++;
    fp->outstanding++;
    return t;
}

void flushpos_commit(flushpos *fp, uint64_t end_lsn)
{
    flushpos_txn *t = fp->open;
    if (!t) {
        /* A Commit without Begin cannot happen in pgoutput; be safe. */
        if (!(t = push(fp)))
            return;
    }
    t->end_lsn = end_lsn;
    t->closed = true;
    fp->open = NULL;
    advance(fp);
}

void flushpos_ack(flushpos *fp, flushpos_txn *txn)
{
    if (txn->unacked > 0)
        txn->unacked--;
    if (fp->outstanding > 0)
        fp->outstanding--;
    advance(fp);
}

void flushpos_refused(flushpos *fp, flushpos_txn *txn)
{
    txn->refused = true;
    if (fp->outstanding > 0)
        fp->outstanding--;
}

void flushpos_abandon_open(flushpos *fp)
{
    if (!fp->open)
        return;
    fp->open->closed = true;
    fp->open->end_lsn = 0;
    fp->open = NULL;
    advance(fp);
}

bool flushpos_idle(const flushpos *fp)
{
    return fp->head == NULL && fp->open == NULL;
}

void flushpos_confirm_idle(flushpos *fp, uint64_t lsn)
{
    if (fp->hold && lsn > fp->hold)
        lsn = fp->hold;
    if (flushpos_idle(fp) && lsn > fp->confirmed)
        fp->confirmed = lsn;
}

void flushpos_hold(flushpos *fp, uint64_t lsn)
{
    if (!fp->hold || lsn < fp->hold)
        fp->hold = lsn;
}

void flushpos_release(flushpos *fp)
{
    fp->hold = 0;
}
