/* offsets.c: per-partition ring of in-flight records and the storable
 * offset derived from it (see offsets.h). Partitions live in a chained hash
 * table keyed by (topic, partition). */
#include "offsets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    int64_t offset;
    uint32_t needs;
} entry;

typedef struct part {
    struct part *next;     /* hash chain */
    char *topic;
    int32_t partition;
    uint32_t generation;
    entry *ring;           /* entries [head, head+count) modulo cap, offsets increasing */
    size_t cap;            /* power of two, grows up to the tracker's limit */
    size_t head;
    size_t count;
    size_t pending;        /* entries with needs != 0 */
    int64_t last_tracked;  /* OFFSETS_NONE before the first record */
    int64_t collected;     /* storable offset last handed to offsets_collect */
} part;

struct offsets {
    part **buckets;
    size_t nbuckets;       /* power of two */
    size_t nparts;
    size_t max_inflight;
    size_t inflight;       /* sum of pending over partitions */
    uint32_t next_generation;
};

static uint64_t hash_key(const char *topic, int32_t partition)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)topic; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ (uint32_t)partition) * 1099511628211ULL;
    return h;
}

offsets *offsets_create(size_t max_inflight)
{
    offsets *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->nbuckets = 16;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    t->max_inflight = max_inflight ? max_inflight : 1;
    t->next_generation = 1;
    return t;
}

static void part_free(part *p)
{
    if (!p)
        return;
    free(p->topic);
    free(p->ring);
    free(p);
}

void offsets_destroy(offsets *t)
{
    if (!t)
        return;
    for (size_t i = 0; t->buckets && i < t->nbuckets; i++) {
        part *p = t->buckets[i];
        while (p) {
            part *next = p->next;
            part_free(p);
            p = next;
        }
    }
    free(t->buckets);
    free(t);
}

static part *part_find(const offsets *t, const char *topic, int32_t partition)
{
    part *p = t->buckets[hash_key(topic, partition) & (t->nbuckets - 1)];
    for (; p; p = p->next)
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    return NULL;
}

static int table_grow(offsets *t)
{
    size_t n = t->nbuckets * 2;
    part **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < t->nbuckets; i++) {
        part *p = t->buckets[i];
        while (p) {
            part *next = p->next;
            size_t j = hash_key(p->topic, p->partition) & (n - 1);
            p->next = b[j];
            b[j] = p;
            p = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    return 0;
}

static part *part_get(offsets *t, const char *topic, int32_t partition, char *err, size_t errlen)
{
    part *p = part_find(t, topic, partition);
    if (p)
        return p;
    if (t->nparts >= t->nbuckets && table_grow(t) < 0)
        goto nomem;
    p = calloc(1, sizeof *p);
    if (!p)
        goto nomem;
    p->topic = strdup(topic);
    if (!p->topic) {
        part_free(p);
        goto nomem;
    }
    p->partition = partition;
    p->generation = t->next_generation++;
    if (t->next_generation == 0) /* 0 is never a valid generation */
        t->next_generation = 1;
    p->last_tracked = OFFSETS_NONE;
    p->collected = OFFSETS_NONE;
    size_t j = hash_key(topic, partition) & (t->nbuckets - 1);
    p->next = t->buckets[j];
    t->buckets[j] = p;
    t->nparts++;
    return p;
nomem:
    snprintf(err, errlen, "cannot track partition %s [%d]: out of memory", topic, (int)partition);
    return NULL;
}

int offsets_assign(offsets *t, const char *topic, int32_t partition, char *err, size_t errlen)
{
    return part_get(t, topic, partition, err, errlen) ? OFFSETS_OK : OFFSETS_ERROR;
}

static int64_t part_storable(const part *p)
{
    /* Done entries at the head are popped eagerly, so the head is pending
     * whenever anything is. */
    if (p->count > 0)
        return p->ring[p->head].offset;
    if (p->last_tracked == OFFSETS_NONE)
        return OFFSETS_NONE;
    return p->last_tracked + 1;
}

int offsets_revoke(offsets *t, const char *topic, int32_t partition, int64_t *storable)
{
    size_t j = hash_key(topic, partition) & (t->nbuckets - 1);
    for (part **pp = &t->buckets[j]; *pp; pp = &(*pp)->next) {
        part *p = *pp;
        if (p->partition != partition || strcmp(p->topic, topic) != 0)
            continue;
        if (storable)
            *storable = part_storable(p);
        t->inflight -= p->pending;
        *pp = p->next;
        part_free(p);
        t->nparts--;
        return OFFSETS_OK;
    }
    if (storable)
        *storable = OFFSETS_NONE;
    return OFFSETS_IGNORED;
}

static entry *ring_at(const part *p, size_t i)
{
    return &p->ring[(p->head + i) & (p->cap - 1)];
}

/* Pops done entries off the head so that the storable offset advances. */
static void part_advance(part *p)
{
    while (p->count > 0 && p->ring[p->head].needs == 0) {
        p->head = (p->head + 1) & (p->cap - 1);
        p->count--;
    }
    if (p->count == 0)
        p->head = 0;
}

static int ring_grow(part *p)
{
    /* Doubling keeps the capacity a power of two (index masking); it ends
     * below twice the tracker's limit. */
    size_t ncap = p->cap ? p->cap * 2 : 16;
    entry *r = malloc(ncap * sizeof *r);
    if (!r)
        return -1;
    for (size_t i = 0; i < p->count; i++)
        r[i] = *ring_at(p, i);
    free(p->ring);
    p->ring = r;
    p->cap = ncap;
    p->head = 0;
    return 0;
}

int offsets_track(offsets *t, const char *topic, int32_t partition, int64_t offset,
                  uint32_t needs, uint32_t *generation, char *err, size_t errlen)
{
    part *p = part_get(t, topic, partition, err, errlen);
    if (!p)
        return OFFSETS_ERROR;
    if (offset < 0 || (p->last_tracked != OFFSETS_NONE && offset <= p->last_tracked)) {
        snprintf(err, errlen,
                 "cannot track offset %lld of %s [%d]: offsets must increase (last tracked %lld)",
                 (long long)offset, topic, (int)partition, (long long)p->last_tracked);
        return OFFSETS_ERROR;
    }
    if (generation)
        *generation = p->generation;
    if (needs == 0 && p->count == 0) {
        /* Nothing in flight before it: it is done at once, no memory. */
        p->last_tracked = offset;
        return OFFSETS_OK;
    }
    /* The limit counts entries held, done or not: that is the memory. */
    if (p->count >= t->max_inflight)
        return OFFSETS_FULL;
    if (p->count == p->cap && ring_grow(p) < 0) {
        snprintf(err, errlen, "cannot track offset %lld of %s [%d]: out of memory",
                 (long long)offset, topic, (int)partition);
        return OFFSETS_ERROR;
    }
    entry *e = ring_at(p, p->count);
    e->offset = offset;
    e->needs = needs;
    p->count++;
    p->last_tracked = offset;
    if (needs) {
        p->pending++;
        t->inflight++;
    }
    return OFFSETS_OK;
}

/* First index whose offset is >= offset (count when none). */
static size_t ring_lower_bound(const part *p, int64_t offset)
{
    size_t lo = 0, hi = p->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring_at(p, mid)->offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Finds the live partition of a given generation; OFFSETS_IGNORED when the
 * partition was revoked or reassigned since. */
static int part_for_ack(offsets *t, const char *topic, int32_t partition, uint32_t generation,
                        part **out)
{
    part *p = part_find(t, topic, partition);
    if (!p || p->generation != generation)
        return OFFSETS_IGNORED;
    *out = p;
    return OFFSETS_OK;
}

int offsets_require(offsets *t, const char *topic, int32_t partition, uint32_t generation,
                    int64_t offset, uint32_t bits, char *err, size_t errlen)
{
    part *p;
    int rc = part_for_ack(t, topic, partition, generation, &p);
    if (rc != OFFSETS_OK)
        return rc;
    size_t i = ring_lower_bound(p, offset);
    entry *e = i < p->count ? ring_at(p, i) : NULL;
    if (!e || e->offset != offset || e->needs == 0) {
        /* A done record may already have moved the storable offset past
         * it: adding a requirement now would be a lie. */
        snprintf(err, errlen,
                 "cannot add a requirement to offset %lld of %s [%d]: it is not in flight",
                 (long long)offset, topic, (int)partition);
        return OFFSETS_ERROR;
    }
    e->needs |= bits;
    return OFFSETS_OK;
}

static void entry_clear(offsets *t, part *p, entry *e, uint32_t bits)
{
    if (e->needs == 0)
        return;
    e->needs &= ~bits;
    if (e->needs == 0) {
        p->pending--;
        t->inflight--;
    }
}

int offsets_ack(offsets *t, const char *topic, int32_t partition, uint32_t generation,
                int64_t offset, uint32_t bits, char *err, size_t errlen)
{
    part *p;
    int rc = part_for_ack(t, topic, partition, generation, &p);
    if (rc != OFFSETS_OK)
        return rc;
    if (p->last_tracked == OFFSETS_NONE || offset > p->last_tracked)
        goto never;
    if (p->count == 0 || offset < p->ring[p->head].offset)
        return OFFSETS_IGNORED; /* already done and popped */
    size_t i = ring_lower_bound(p, offset);
    if (i == p->count || ring_at(p, i)->offset != offset)
        goto never;
    entry_clear(t, p, ring_at(p, i), bits);
    part_advance(p);
    return OFFSETS_OK;
never:
    snprintf(err, errlen, "cannot acknowledge offset %lld of %s [%d]: it was never tracked",
             (long long)offset, topic, (int)partition);
    return OFFSETS_ERROR;
}

int offsets_ack_range(offsets *t, const char *topic, int32_t partition, uint32_t generation,
                      int64_t first, int64_t last, uint32_t bits, char *err, size_t errlen)
{
    part *p;
    int rc = part_for_ack(t, topic, partition, generation, &p);
    if (rc != OFFSETS_OK)
        return rc;
    if (first > last || p->last_tracked == OFFSETS_NONE || last > p->last_tracked) {
        snprintf(err, errlen,
                 "cannot acknowledge offsets %lld..%lld of %s [%d]: beyond what was tracked (%lld)",
                 (long long)first, (long long)last, topic, (int)partition,
                 (long long)p->last_tracked);
        return OFFSETS_ERROR;
    }
    for (size_t i = ring_lower_bound(p, first); i < p->count; i++) {
        entry *e = ring_at(p, i);
        if (e->offset > last)
            break;
        entry_clear(t, p, e, bits);
    }
    part_advance(p);
    return OFFSETS_OK;
}

int64_t offsets_storable(const offsets *t, const char *topic, int32_t partition)
{
    const part *p = part_find(t, topic, partition);
    return p ? part_storable(p) : OFFSETS_NONE;
}

size_t offsets_inflight(const offsets *t, const char *topic, int32_t partition)
{
    const part *p = part_find(t, topic, partition);
    return p ? p->pending : 0;
}

size_t offsets_inflight_total(const offsets *t)
{
    return t->inflight;
}

int offsets_collect(offsets *t, offsets_fn fn, void *opaque)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (part *p = t->buckets[i]; p; p = p->next) {
            int64_t s = part_storable(p);
            if (s == OFFSETS_NONE || s == p->collected)
                continue;
            int rc = fn(opaque, p->topic, p->partition, s);
            if (rc != 0)
                return rc;
            p->collected = s;
        }
    }
    return 0;
}
