/* offsets.c: per-partition offset bookkeeping (offsets.h). Each partition
 * keeps the ranges of records read but not yet finished, one per batch, in
 * read order; a finished batch must be the oldest range of every partition
 * it holds, and a dropped one leaves a hole that nothing may be stored past. */
#include "offsets.h"

#include <inttypes.h>
#include <stdbool.h>
#include <sys/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pending_range {
    uint64_t batch;
    int64_t first, last;
} pending_range;

typedef struct book_part {
    struct book_part *next;
    char *topic;
    int32_t partition;
    int64_t last_read;       /* -1: nothing read in this assignment */
    int64_t stored;          /* -1: nothing stored in this assignment */
    int64_t hole_at;         /* first dropped record, -1: none */
    pending_range *ranges;   /* oldest first */
    size_t nranges, cap;
} book_part;

struct offset_book {
    offset_store_fn store;
    void *ctx;
    book_part *parts;
};

offset_book *offset_book_new(offset_store_fn store, void *ctx)
{
    offset_book *ob = calloc(1, sizeof *ob);
    if (!ob)
        return NULL;
    ob->store = store;
    ob->ctx = ctx;
    return ob;
}

static void part_forget(book_part *p)
{
    p->last_read = p->stored = p->hole_at = -1;
    p->nranges = 0;
}

void offset_book_free(offset_book *ob)
{
    if (!ob)
        return;
    while (ob->parts) {
        book_part *next = ob->parts->next;
        free(ob->parts->topic);
        free(ob->parts->ranges);
        free(ob->parts);
        ob->parts = next;
    }
    free(ob);
}

static book_part *part_find(const offset_book *ob, const char *topic, int32_t partition)
{
    for (book_part *p = ob->parts; p; p = p->next)
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    return NULL;
}

static book_part *part_get(offset_book *ob, const char *topic, int32_t partition)
{
    book_part *p = part_find(ob, topic, partition);
    if (p)
        return p;
    p = calloc(1, sizeof *p);
    if (!p || !(p->topic = strdup(topic))) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    part_forget(p);
    p->next = ob->parts;
    ob->parts = p;
    return p;
}

void offset_book_assign(offset_book *ob, const char *topic, int32_t partition)
{
    book_part *p = part_get(ob, topic, partition);
    if (p)
        part_forget(p);
}

void offset_book_revoke(offset_book *ob, const char *topic, int32_t partition)
{
    book_part *p = part_find(ob, topic, partition);
    if (p)
        part_forget(p);
}

static int store(offset_book *ob, book_part *p, int64_t next)
{
    p->stored = next;
    return ob->store(ob->ctx, p->topic, p->partition, next);
}

int offset_book_skip_to(offset_book *ob, const char *topic, int32_t partition, int64_t next,
                        char *err, size_t errlen)
{
    book_part *p = part_get(ob, topic, partition);
    if (!p) {
        snprintf(err, errlen, "out of memory for the offsets of %s[%" PRId32 "]", topic, partition);
        return -1;
    }
    if (p->nranges > 0 || p->hole_at >= 0) {
        snprintf(err, errlen, "cannot skip %s[%" PRId32 "] to offset %" PRId64 ": records read "
                 "from offset %" PRId64 " are not finished", topic, partition, next,
                 p->hole_at >= 0 ? p->hole_at : p->ranges[0].first);
        return -1;
    }
    p->last_read = next - 1;
    store(ob, p, next);
    return 0;
}

int offset_book_read(offset_book *ob, const char *topic, int32_t partition, int64_t offset,
                     uint64_t batch, char *err, size_t errlen)
{
    book_part *p = part_get(ob, topic, partition);
    if (!p) {
        snprintf(err, errlen, "out of memory for the offsets of %s[%" PRId32 "]", topic, partition);
        return -1;
    }
    if (offset <= p->last_read) {
        snprintf(err, errlen, "%s[%" PRId32 "]: record at offset %" PRId64 " read after offset "
                 "%" PRId64, topic, partition, offset, p->last_read);
        return -1;
    }
    pending_range *tail = p->nranges ? &p->ranges[p->nranges - 1] : NULL;
    if (tail && tail->batch > batch) {
        snprintf(err, errlen, "%s[%" PRId32 "]: record at offset %" PRId64 " read into batch %"
                 PRIu64 " after batch %" PRIu64, topic, partition, offset, batch, tail->batch);
        return -1;
    }
    if (tail && tail->batch == batch) {
        tail->last = offset;
    } else {
        if (p->nranges == p->cap) {
            size_t cap = p->cap ? 2 * p->cap : 4;
            pending_range *r = realloc(p->ranges, cap * sizeof *r);
            if (!r) {
                snprintf(err, errlen, "out of memory for the offsets of %s[%" PRId32 "]", topic,
                         partition);
                return -1;
            }
            p->ranges = r;
            p->cap = cap;
        }
        p->ranges[p->nranges++] = (pending_range){.batch = batch, .first = offset, .last = offset};
    }
    p->last_read = offset;
    return 0;
}

/* Index of the partition's range of `batch`, or -1. */
static ssize_t range_of(const book_part *p, uint64_t batch)
{
    for (size_t i = 0; i < p->nranges; i++)
        if (p->ranges[i].batch == batch)
            return (ssize_t)i;
    return -1;
}

static void range_remove(book_part *p, size_t i)
{
    memmove(&p->ranges[i], &p->ranges[i + 1], (p->nranges - i - 1) * sizeof p->ranges[0]);
    p->nranges--;
}

int offset_book_finish(offset_book *ob, uint64_t batch, char *err, size_t errlen)
{
    int rc = 0;
    for (book_part *p = ob->parts; p; p = p->next) {
        ssize_t i = range_of(p, batch);
        if (i < 0)
            continue;
        pending_range r = p->ranges[i];
        bool hole_before = p->hole_at >= 0 && p->hole_at < r.first;
        int64_t gap = hole_before ? p->hole_at : i > 0 ? p->ranges[0].first : -1;
        if (gap >= 0) {
            /* The records of this batch cannot be stored; they count as a hole
             * themselves, so no later batch passes them either. */
            if (rc == 0)
                snprintf(err, errlen, "refusing to store offset %" PRId64 " of %s[%" PRId32 "]: "
                         "the record at offset %" PRId64 " was %s", r.last + 1, p->topic,
                         p->partition, gap,
                         hole_before ? "dropped without being applied or dead-lettered"
                                         : "read earlier and is not finished");
            rc = -1;
            if (p->hole_at < 0 || r.first < p->hole_at)
                p->hole_at = r.first;
            range_remove(p, (size_t)i);
            continue;
        }
        range_remove(p, 0);
        store(ob, p, r.last + 1);
    }
    return rc;
}

void offset_book_drop(offset_book *ob, uint64_t batch)
{
    for (book_part *p = ob->parts; p; p = p->next) {
        ssize_t i = range_of(p, batch);
        if (i < 0)
            continue;
        if (p->hole_at < 0 || p->ranges[i].first < p->hole_at)
            p->hole_at = p->ranges[i].first;
        range_remove(p, (size_t)i);
    }
}

int64_t offset_book_stored(const offset_book *ob, const char *topic, int32_t partition)
{
    const book_part *p = part_find(ob, topic, partition);
    return p ? p->stored : -1;
}
