/* test_xid_snapshot.c: pg_current_snapshot()'s text, and which transactions
 * a snapshot saw (what decides whether a streamed change strikes a
 * re-snapshot chunk's row before the low watermark, and whether a document
 * read saw its events), and the rank that versions documents. */
#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "xid_snapshot.h"

int main(void)
{
    xid_snapshot s = {0};
    char err[200];

    TAP_OK(xid_snapshot_parse(&s, "100:105:101,103", err, sizeof err) == 0 &&
           s.xmin == 100 && s.xmax == 105 && s.nxip == 2 && s.xip[0] == 101 && s.xip[1] == 103,
           "xid_snapshot_parses_xmin_xmax_and_in_progress");
    TAP_OK(xid_snapshot_saw(&s, 99), "xid_snapshot_saw_what_ended_before_xmin");
    TAP_OK(xid_snapshot_saw(&s, 100) && xid_snapshot_saw(&s, 102) && xid_snapshot_saw(&s, 104),
           "xid_snapshot_saw_what_ended_between_and_is_not_listed");
    TAP_OK(!xid_snapshot_saw(&s, 101) && !xid_snapshot_saw(&s, 103),
           "xid_snapshot_did_not_see_what_was_in_progress");
    TAP_OK(!xid_snapshot_saw(&s, 105) && !xid_snapshot_saw(&s, 2000),
           "xid_snapshot_did_not_see_what_started_at_or_after_xmax");

    TAP_OK(xid_snapshot_parse(&s, "742:742:", err, sizeof err) == 0 && s.nxip == 0 &&
           xid_snapshot_saw(&s, 741) && !xid_snapshot_saw(&s, 742),
           "xid_snapshot_with_nothing_in_progress");

    /* Past 2^32 the stream's xids are the low 32 bits of the full ones: a
     * snapshot straddling the wrap still judges them in order. */
    TAP_OK(xid_snapshot_parse(&s, "8589934590:8589934596:8589934594", err, sizeof err) == 0 &&
           xid_snapshot_saw(&s, 0xFFFFFFFFu) && !xid_snapshot_saw(&s, 2) &&
           xid_snapshot_saw(&s, 1) && !xid_snapshot_saw(&s, 4) &&
           xid_snapshot_saw(&s, 0xFFFFFFFDu),
           "xid_snapshot_compares_across_the_32_bit_wrap");

    /* Ranks: a later snapshot never ranks lower, also past the 32-bit wrap. */
    xid_snapshot a = {0}, b = {0};
    TAP_OK(xid_snapshot_parse(&a, "90:100:", err, sizeof err) == 0 &&
           xid_snapshot_parse(&b, "90:100:95", err, sizeof err) == 0 &&
           xid_snapshot_rank(&a) > xid_snapshot_rank(&b) &&
           xid_snapshot_parse(&b, "95:101:95,96,97", err, sizeof err) == 0 &&
           xid_snapshot_rank(&b) > xid_snapshot_rank(&a) &&
           xid_snapshot_parse(&a, "4294967290:4294967299:4294967295", err, sizeof err) == 0 &&
           xid_snapshot_rank(&a) > xid_snapshot_rank(&b) && a.xmax == 3,
           "xid_snapshot_rank_grows_with_xmax_and_with_fewer_in_progress");
    xid_snapshot_clear(&a);
    xid_snapshot_clear(&b);

    static const char *bad[] = {
        "", "100", "100:", "100:105", "x:105:", "100:105:101,", "100:105:,101",
        "100:105:101;103", "105:100:", "100:105:99", "100:105:105", "-1:5:",
        " 100:105:", "100:105:101 ", "0:2147483648:", "99999999999999999999999:100000000000000000000000:",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        int rc = xid_snapshot_parse(&s, bad[i], err, sizeof err);
        char name[160];
        snprintf(name, sizeof name, "xid_snapshot_refuses_malformed_text \"%s\"", bad[i]);
        TAP_OK(rc == -1 && strstr(err, "not a snapshot") && s.xip == NULL && s.nxip == 0, name);
    }
    xid_snapshot_clear(&s);
    return tap_done();
}
