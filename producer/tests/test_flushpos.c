/* test_flushpos.c: the flush position only moves past a transaction once it
 * and every earlier one are fully acknowledged by Kafka. */
#include "flushpos.h"
#include "tap.h"

int main(void)
{
    flushpos fp;
    flushpos_init(&fp, 100);

    flushpos_begin(&fp);
    flushpos_txn *a1 = flushpos_sent(&fp);
    flushpos_txn *a2 = flushpos_sent(&fp);
    flushpos_commit(&fp, 200);
    flushpos_begin(&fp);
    flushpos_txn *b1 = flushpos_sent(&fp);
    flushpos_commit(&fp, 300);
    TAP_OK(fp.confirmed == 100, "flushpos_holds_until_acknowledged");

    flushpos_ack(&fp, b1);
    TAP_OK(fp.confirmed == 100, "flushpos_later_txn_acked_first_does_not_confirm");
    flushpos_ack(&fp, a1);
    TAP_OK(fp.confirmed == 100, "flushpos_partially_acked_txn_does_not_confirm");
    flushpos_ack(&fp, a2);
    TAP_OK(fp.confirmed == 300, "flushpos_confirms_through_every_acked_txn");
    TAP_OK(flushpos_idle(&fp), "flushpos_idle_when_all_acked");

    flushpos_begin(&fp);
    flushpos_commit(&fp, 400);
    TAP_OK(fp.confirmed == 400, "flushpos_empty_txn_confirms_at_commit");

    flushpos_begin(&fp);
    flushpos_txn *c1 = flushpos_sent(&fp);
    TAP_OK(!flushpos_idle(&fp), "flushpos_open_txn_is_not_idle");
    flushpos_confirm_idle(&fp, 999);
    TAP_OK(fp.confirmed == 400, "flushpos_server_position_ignored_while_busy");
    flushpos_abandon_open(&fp);
    flushpos_begin(&fp);
    flushpos_txn *d1 = flushpos_sent(&fp);
    flushpos_commit(&fp, 500);
    flushpos_ack(&fp, d1);
    TAP_OK(fp.confirmed == 400, "flushpos_abandoned_txn_still_blocks_until_acked");
    flushpos_ack(&fp, c1);
    TAP_OK(fp.confirmed == 500, "flushpos_abandoned_txn_confirms_nothing_itself");

    flushpos_confirm_idle(&fp, 650);
    TAP_OK(fp.confirmed == 650, "flushpos_idle_confirms_server_position");
    flushpos_confirm_idle(&fp, 600);
    TAP_OK(fp.confirmed == 650, "flushpos_never_moves_backwards");

    /* Many transactions in flight: memory is recycled, order kept. */
    flushpos_txn *handles[1000];
    for (int i = 0; i < 1000; i++) {
        flushpos_begin(&fp);
        handles[i] = flushpos_sent(&fp);
        flushpos_commit(&fp, 1000 + (uint64_t)i);
    }
    for (int i = 999; i >= 1; i--)
        flushpos_ack(&fp, handles[i]);
    TAP_OK(fp.confirmed == 650 && fp.ntxn == 1000, "flushpos_reverse_acks_wait_for_the_first");
    flushpos_ack(&fp, handles[0]);
    TAP_OK(fp.confirmed == 1999 && fp.ntxn == 0 && fp.outstanding == 0,
           "flushpos_first_ack_releases_all");

    /* A record Kafka refused for good: nothing waits for it any more, but
     * its transaction and every later one stay unconfirmed. */
    flushpos_begin(&fp);
    flushpos_txn *e1 = flushpos_sent(&fp);
    flushpos_txn *e2 = flushpos_sent(&fp);
    flushpos_commit(&fp, 2100);
    flushpos_begin(&fp);
    flushpos_txn *f1 = flushpos_sent(&fp);
    flushpos_commit(&fp, 2200);
    flushpos_refused(&fp, e1);
    flushpos_ack(&fp, e2);
    flushpos_ack(&fp, f1);
    TAP_OK(fp.outstanding == 0, "flushpos_refused_record_is_not_outstanding");
    TAP_OK(fp.confirmed == 1999, "flushpos_refused_record_holds_the_position");
    flushpos_confirm_idle(&fp, 3000);
    TAP_OK(fp.confirmed == 1999, "flushpos_refused_record_blocks_idle_confirm");

    /* A hold (a signalled re-snapshot): acknowledged transactions and
     * idle keepalives confirm no further than the hold until it ends. */
    flushpos hp;
    flushpos_init(&hp, 100);
    flushpos_begin(&hp);
    flushpos_hold(&hp, 150);
    flushpos_txn *g1 = flushpos_sent(&hp);
    flushpos_commit(&hp, 200);
    flushpos_begin(&hp);
    flushpos_commit(&hp, 300);
    flushpos_ack(&hp, g1);
    TAP_OK(hp.confirmed == 150 && hp.ntxn == 0, "flushpos_hold_caps_acknowledged_position");
    flushpos_confirm_idle(&hp, 400);
    TAP_OK(hp.confirmed == 150, "flushpos_hold_caps_idle_confirm");
    flushpos_hold(&hp, 170);
    TAP_OK(hp.hold == 150, "flushpos_second_hold_keeps_the_lower");
    flushpos_release(&hp);
    flushpos_confirm_idle(&hp, 400);
    TAP_OK(hp.confirmed == 400, "flushpos_release_lets_position_move_on");
    flushpos_free(&hp);

    flushpos_free(&fp);
    return tap_done();
}
