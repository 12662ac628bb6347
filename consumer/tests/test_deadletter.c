/* test_deadletter.c: how much of a refused dead letter's value the reduced
 * form keeps (consumer/deadletter.h, dead_letters_value_fit). The writing
 * itself runs against a real Kafka in tests/integration/test_consumer_offsets.py. */
#include "deadletter.h"
#include "tap.h"

int main(void)
{
    /* The 999,900-byte record of issue 12 under the default 1,000,000 limit. */
    TAP_OK(dead_letters_value_fit(999900, 1000000, 1000, 0) == 999000,
           "first_reduction_keeps_what_fits_beside_key_and_headers");
    TAP_OK(dead_letters_value_fit(999900, 1000000, 1000, 1) == 499500,
           "each_further_refusal_keeps_half");
    TAP_OK(dead_letters_value_fit(20000, 1000000, 700, 0) == 20000,
           "a_value_under_the_limit_is_kept_whole_at_first");
    TAP_OK(dead_letters_value_fit(20000, 1000000, 700, 3) == 2500,
           "a_topic_limit_below_the_producers_is_found_by_halving");
    TAP_OK(dead_letters_value_fit(20000, 500, 700, 0) == 0,
           "nothing_of_the_value_when_the_headers_alone_fill_the_limit");
    TAP_OK(dead_letters_value_fit(1, 1000000, 0, 1) == 0 &&
               dead_letters_value_fit(5, 1000000, 0, 200) == 0,
           "halving_ends_at_nothing");
    return tap_done();
}
