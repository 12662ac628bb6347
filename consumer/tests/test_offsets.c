/* test_offsets.c: the storable offset never passes a record some sink has
 * not acknowledged, whatever order acks come in. */
#include <stdlib.h>

#include "offsets.h"
#include "tap.h"

#define ES 1u
#define REDIS 2u
#define DLQ 4u

static char err[256];

static void out_of_order_batches_store_only_the_contiguous_prefix(void)
{
    offsets *t = offsets_create(100);
    uint32_t g = 0;
    for (int64_t o = 10; o < 20; o++)
        offsets_track(t, "pgcdc.public.items", 0, o, ES | REDIS, &g, err, sizeof err);
    TAP_OK(offsets_storable(t, "pgcdc.public.items", 0) == 10, "nothing acked: storable is the first offset");
    /* second batch (15..19) completes first in both sinks */
    offsets_ack_range(t, "pgcdc.public.items", 0, g, 15, 19, ES, err, sizeof err);
    offsets_ack_range(t, "pgcdc.public.items", 0, g, 15, 19, REDIS, err, sizeof err);
    TAP_OK(offsets_storable(t, "pgcdc.public.items", 0) == 10, "later batch done first: storable stays");
    offsets_ack_range(t, "pgcdc.public.items", 0, g, 10, 14, ES, err, sizeof err);
    TAP_OK(offsets_storable(t, "pgcdc.public.items", 0) == 10, "one sink of two: storable stays");
    offsets_ack(t, "pgcdc.public.items", 0, g, 10, REDIS, err, sizeof err);
    TAP_OK(offsets_storable(t, "pgcdc.public.items", 0) == 11, "first record done in both: storable 11");
    offsets_ack_range(t, "pgcdc.public.items", 0, g, 11, 14, REDIS, err, sizeof err);
    TAP_OK(offsets_storable(t, "pgcdc.public.items", 0) == 20, "everything done: storable is last + 1");
    TAP_OK(offsets_inflight_total(t) == 0, "nothing in flight");
    TAP_OK(offsets_ack(t, "pgcdc.public.items", 0, g, 12, ES, err, sizeof err) == OFFSETS_IGNORED,
           "a repeated ack of a popped record is ignored");
    offsets_destroy(t);
}

static void gaps_and_skipped_records(void)
{
    offsets *t = offsets_create(100);
    uint32_t g;
    /* offset 0 is a tombstone: nothing to wait for */
    offsets_track(t, "t", 3, 0, 0, &g, err, sizeof err);
    TAP_OK(offsets_storable(t, "t", 3) == 1, "a skipped tombstone alone is storable at once");
    offsets_track(t, "t", 3, 1, ES, &g, err, sizeof err);
    offsets_track(t, "t", 3, 2, 0, &g, err, sizeof err);   /* tombstone behind a pending record */
    offsets_track(t, "t", 3, 7, ES, &g, err, sizeof err);  /* gap: 3..6 compacted away */
    TAP_OK(offsets_storable(t, "t", 3) == 1, "tombstone behind pending record waits");
    offsets_ack(t, "t", 3, g, 1, ES, err, sizeof err);
    TAP_OK(offsets_storable(t, "t", 3) == 7, "gap is skipped: storable is the next pending offset");
    offsets_ack(t, "t", 3, g, 7, ES, err, sizeof err);
    TAP_OK(offsets_storable(t, "t", 3) == 8, "all done after gap: last + 1");
    TAP_OK(offsets_ack(t, "t", 3, g, 9, ES, err, sizeof err) == OFFSETS_ERROR,
           "ack of an offset never tracked is an error");
    TAP_OK(offsets_track(t, "t", 3, 7, ES, &g, err, sizeof err) == OFFSETS_ERROR,
           "offsets must increase");
    offsets_track(t, "t", 3, 9, ES, &g, err, sizeof err);
    offsets_track(t, "t", 3, 12, ES, &g, err, sizeof err);
    TAP_OK(offsets_ack(t, "t", 3, g, 11, ES, err, sizeof err) == OFFSETS_ERROR,
           "ack of a gap offset between tracked ones is an error");
    offsets_destroy(t);
}

static void dead_lettered_record_counts_once_the_dlq_write_is_acked(void)
{
    offsets *t = offsets_create(100);
    uint32_t g;
    offsets_track(t, "t", 0, 0, ES, &g, err, sizeof err);
    offsets_track(t, "t", 0, 1, ES, &g, err, sizeof err);
    offsets_track(t, "t", 0, 2, ES, &g, err, sizeof err);
    /* the cluster rejects offset 1 for good: it goes to the DLQ */
    TAP_OK(offsets_require(t, "t", 0, g, 1, DLQ, err, sizeof err) == OFFSETS_OK, "require DLQ");
    offsets_ack_range(t, "t", 0, g, 0, 2, ES, err, sizeof err);
    TAP_OK(offsets_storable(t, "t", 0) == 1, "DLQ write pending: storable stops at it");
    offsets_ack(t, "t", 0, g, 1, DLQ, err, sizeof err);
    TAP_OK(offsets_storable(t, "t", 0) == 3, "DLQ write acked: storable passes it");
    /* a record that never decoded: only the DLQ write is needed */
    offsets_track(t, "t", 0, 3, DLQ, &g, err, sizeof err);
    TAP_OK(offsets_storable(t, "t", 0) == 3, "undecodable record waits for its DLQ write");
    offsets_ack(t, "t", 0, g, 3, DLQ, err, sizeof err);
    TAP_OK(offsets_storable(t, "t", 0) == 4, "then passes");
    TAP_OK(offsets_require(t, "t", 0, g, 3, DLQ, err, sizeof err) == OFFSETS_ERROR,
           "cannot add a requirement to a done record");
    offsets_destroy(t);
}

static void revocation_ignores_late_acks_of_the_old_generation(void)
{
    offsets *t = offsets_create(100);
    uint32_t g1, g2;
    offsets_track(t, "t", 1, 100, ES, &g1, err, sizeof err);
    offsets_track(t, "t", 1, 101, ES, &g1, err, sizeof err);
    offsets_ack(t, "t", 1, g1, 100, ES, err, sizeof err);
    int64_t last = 0;
    TAP_OK(offsets_revoke(t, "t", 1, &last) == OFFSETS_OK, "revoke");
    TAP_OK(last == 101, "revoke returns the final storable offset");
    TAP_OK(offsets_inflight_total(t) == 0, "revoked records no longer count as in flight");
    TAP_OK(offsets_ack(t, "t", 1, g1, 101, ES, err, sizeof err) == OFFSETS_IGNORED,
           "late ack after revoke is ignored");
    /* reassigned, and 101 is read again */
    offsets_assign(t, "t", 1, err, sizeof err);
    offsets_track(t, "t", 1, 101, ES, &g2, err, sizeof err);
    TAP_OK(g2 != g1, "a new assignment is a new generation");
    TAP_OK(offsets_ack(t, "t", 1, g1, 101, ES, err, sizeof err) == OFFSETS_IGNORED,
           "late ack of the old generation does not clear the re-read record");
    TAP_OK(offsets_storable(t, "t", 1) == 101, "re-read record still pending");
    TAP_OK(offsets_revoke(t, "t", 9, &last) == OFFSETS_IGNORED && last == OFFSETS_NONE,
           "revoking an unknown partition is ignored");
    offsets_destroy(t);
}

static void memory_is_bounded_per_partition(void)
{
    offsets *t = offsets_create(4);
    uint32_t g0, g1;
    for (int64_t o = 0; o < 4; o++)
        offsets_track(t, "t", 0, o, ES, &g0, err, sizeof err);
    TAP_OK(offsets_track(t, "t", 0, 4, ES, &g0, err, sizeof err) == OFFSETS_FULL,
           "fifth record in flight is refused: pause the partition");
    TAP_OK(offsets_track(t, "t", 1, 0, ES, &g1, err, sizeof err) == OFFSETS_OK,
           "another partition is not affected");
    TAP_OK(offsets_ack(t, "t", 0, g1, 0, ES, err, sizeof err) == OFFSETS_IGNORED,
           "an ack with another partition's generation is ignored");
    offsets_ack(t, "t", 0, g0, 0, ES, err, sizeof err);
    TAP_OK(offsets_track(t, "t", 0, 4, ES, &g0, err, sizeof err) == OFFSETS_OK,
           "after an ack at the head there is room again");
    /* a done record behind a pending head still holds memory */
    offsets_ack(t, "t", 0, g0, 2, ES, err, sizeof err);
    TAP_OK(offsets_track(t, "t", 0, 5, ES, &g0, err, sizeof err) == OFFSETS_FULL,
           "done records behind the pending head count against the limit");
    TAP_OK(offsets_inflight(t, "t", 0) == 3, "three records pending in partition 0");
    offsets_destroy(t);
}

static int collect_cb(void *opaque, const char *topic, int32_t partition, int64_t offset)
{
    int64_t *sum = opaque;
    *sum += offset * 1000 + partition;
    return 0;
}

static void collect_reports_each_advance_once(void)
{
    offsets *t = offsets_create(100);
    uint32_t g, ga0;
    int64_t sum = 0;
    offsets_track(t, "a", 0, 5, ES, &ga0, err, sizeof err);
    offsets_track(t, "a", 2, 0, 0, &g, err, sizeof err);
    offsets_collect(t, collect_cb, &sum);
    TAP_OK(sum == 5 * 1000 + 0 + 1 * 1000 + 2, "first collect reports both partitions");
    sum = 0;
    offsets_collect(t, collect_cb, &sum);
    TAP_OK(sum == 0, "nothing moved: nothing reported");
    offsets_ack(t, "a", 0, ga0, 5, ES, err, sizeof err);
    offsets_collect(t, collect_cb, &sum);
    TAP_OK(sum == 6 * 1000, "only the partition that moved is reported");
    /* many partitions: the table grows and everything is still found */
    for (int32_t p = 0; p < 200; p++)
        offsets_track(t, "many", p, 1, ES, &g, err, sizeof err);
    int ok = 1;
    for (int32_t p = 0; p < 200; p++)
        ok &= offsets_storable(t, "many", p) == 1;
    TAP_OK(ok, "200 partitions all tracked");
    TAP_OK(offsets_inflight_total(t) == 200, "200 records in flight");
    offsets_destroy(t);
    offsets_destroy(NULL);
}

static void random_ack_order_matches_a_model(void)
{
    /* A simple model: storable = lowest offset not done. */
    enum { N = 500 };
    offsets *t = offsets_create(N);
    uint32_t g = 0, needs[N];
    unsigned seed = 12345;
    int ok = 1;
    for (int i = 0; i < N; i++) {
        needs[i] = (uint32_t)(rand_r(&seed) % 4); /* 0: skipped */
        offsets_track(t, "m", 0, 2 * i, needs[i], &g, err, sizeof err);
    }
    for (int step = 0; step < 4 * N; step++) {
        int i = rand_r(&seed) % N;
        uint32_t bit = 1u << (rand_r(&seed) % 2);
        offsets_ack(t, "m", 0, g, 2 * i, bit, err, sizeof err);
        needs[i] &= ~bit;
        int64_t want = 2 * N - 1;
        for (int j = 0; j < N; j++)
            if (needs[j]) {
                want = 2 * j;
                break;
            }
        if (want == 2 * N - 1)
            want = 2 * (N - 1) + 1;
        ok &= offsets_storable(t, "m", 0) == want;
    }
    TAP_OK(ok, "random acks: storable always equals the lowest pending offset");
    offsets_destroy(t);
}

int main(void)
{
    out_of_order_batches_store_only_the_contiguous_prefix();
    gaps_and_skipped_records();
    dead_lettered_record_counts_once_the_dlq_write_is_acked();
    revocation_ignores_late_acks_of_the_old_generation();
    memory_is_bounded_per_partition();
    collect_reports_each_advance_once();
    random_ack_order_matches_a_model();
    return tap_done();
}
