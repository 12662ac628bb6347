/* test_offsets.c: the consumer's offset bookkeeping (consumer/offsets.h):
 * what is stored when batches finish, and that nothing is ever stored past
 * a record that was dropped. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "offsets.h"
#include "tap.h"

/* What the book asked to store, in order. */
static struct {
    char topic[32];
    int32_t partition;
    int64_t next;
} stored[64];
static size_t nstored;

static int record_store(void *ctx, const char *topic, int32_t partition, int64_t next)
{
    (void)ctx;
    if (nstored < sizeof stored / sizeof stored[0]) {
        snprintf(stored[nstored].topic, sizeof stored[0].topic, "%s", topic);
        stored[nstored].partition = partition;
        stored[nstored].next = next;
        nstored++;
    }
    return 0;
}

/* Reads offsets [first, last] of t[part] into batch b. */
static int read_range(offset_book *ob, const char *t, int32_t part, int64_t first, int64_t last,
                      uint64_t b)
{
    char err[256];
    for (int64_t o = first; o <= last; o++)
        if (offset_book_read(ob, t, part, o, b, err, sizeof err) < 0) {
            printf("# %s\n", err);
            return -1;
        }
    return 0;
}

int main(void)
{
    char err[256];
    offset_book *ob = offset_book_new(record_store, NULL);
    offset_book_assign(ob, "t", 0);
    offset_book_assign(ob, "t", 1);

    /* Two batches in flight at once, over two partitions. */
    TAP_OK(read_range(ob, "t", 0, 0, 4, 1) == 0 && read_range(ob, "t", 1, 10, 11, 1) == 0 &&
               read_range(ob, "t", 0, 5, 6, 2) == 0,
           "records_are_read_into_numbered_batches");
    TAP_OK(offset_book_finish(ob, 1, err, sizeof err) == 0 && nstored == 2,
           "a_finished_batch_stores_each_of_its_partitions");
    TAP_OK(offset_book_stored(ob, "t", 0) == 5 && offset_book_stored(ob, "t", 1) == 12,
           "stored_offset_is_the_one_after_the_last_record");
    TAP_OK(offset_book_finish(ob, 2, err, sizeof err) == 0 && offset_book_stored(ob, "t", 0) == 7,
           "the_next_batch_moves_it_on");

    /* Compacted topics and control records leave offsets out: not a gap. */
    TAP_OK(read_range(ob, "t", 0, 20, 20, 3) == 0 && offset_book_finish(ob, 3, err, sizeof err) == 0 &&
               offset_book_stored(ob, "t", 0) == 21,
           "offsets_missing_from_the_log_are_not_a_gap");

    /* The oversize dead letter of issue 12: offset 1 was dropped (its dead
     * letter failed), the batch holding offset 2 must not store 3. */
    offset_book_assign(ob, "u", 0);
    nstored = 0;
    read_range(ob, "u", 0, 0, 1, 4);
    offset_book_drop(ob, 4);
    read_range(ob, "u", 0, 2, 2, 5);
    TAP_OK(offset_book_finish(ob, 5, err, sizeof err) < 0 && nstored == 0,
           "nothing_is_stored_past_a_dropped_batch");
    TAP_OK(strstr(err, "u[0]") && strstr(err, "offset 0") && strstr(err, "dropped"),
           "the_gap_is_named_with_partition_and_offset");
    printf("# %s\n", err);
    read_range(ob, "u", 0, 3, 3, 6);
    TAP_OK(offset_book_finish(ob, 6, err, sizeof err) < 0 && nstored == 0,
           "a_hole_stays_a_hole_for_later_batches");

    /* A batch finished before the one read earlier (out of order). */
    offset_book_assign(ob, "v", 0);
    read_range(ob, "v", 0, 0, 0, 7);
    read_range(ob, "v", 0, 1, 1, 8);
    TAP_OK(offset_book_finish(ob, 8, err, sizeof err) < 0 && offset_book_stored(ob, "v", 0) == -1,
           "a_batch_cannot_finish_before_an_earlier_one_of_its_partition");
    TAP_OK(strstr(err, "not finished") != NULL, "the_pending_record_is_named");
    TAP_OK(offset_book_finish(ob, 7, err, sizeof err) == 0 && offset_book_stored(ob, "v", 0) == 1,
           "the_earlier_batch_still_stores_its_own_records");
    read_range(ob, "v", 0, 2, 2, 9);
    TAP_OK(offset_book_finish(ob, 9, err, sizeof err) < 0,
           "the_refused_batch_left_a_hole_behind_it");

    /* Only the partitions of the dropped batch are held back. */
    offset_book_assign(ob, "w", 0);
    offset_book_assign(ob, "w", 1);
    read_range(ob, "w", 0, 0, 1, 10);
    read_range(ob, "w", 1, 0, 1, 11);
    offset_book_drop(ob, 10);
    TAP_OK(offset_book_finish(ob, 11, err, sizeof err) == 0 && offset_book_stored(ob, "w", 1) == 2,
           "other_partitions_are_not_held_back_by_a_hole");

    /* A new assignment starts again from the committed offset. */
    offset_book_revoke(ob, "u", 0);
    offset_book_assign(ob, "u", 0);
    read_range(ob, "u", 0, 1, 3, 12);
    TAP_OK(offset_book_finish(ob, 12, err, sizeof err) == 0 && offset_book_stored(ob, "u", 0) == 4,
           "reassignment_forgets_the_hole");

    TAP_OK(offset_book_read(ob, "u", 0, 3, 13, err, sizeof err) < 0 && strstr(err, "offset 3"),
           "offsets_never_go_back_within_an_assignment");

    /* --reset-offsets. */
    offset_book_assign(ob, "x", 0);
    TAP_OK(offset_book_skip_to(ob, "x", 0, 50, err, sizeof err) == 0 &&
               offset_book_stored(ob, "x", 0) == 50,
           "skip_to_stores_the_reset_offset");
    TAP_OK(offset_book_read(ob, "x", 0, 49, 14, err, sizeof err) < 0,
           "records_before_the_skip_are_not_read");
    read_range(ob, "x", 0, 50, 50, 15);
    TAP_OK(offset_book_skip_to(ob, "x", 0, 60, err, sizeof err) < 0,
           "skip_to_refused_while_records_are_pending");

    offset_book_free(ob);
    return tap_done();
}
