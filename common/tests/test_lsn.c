/* test_lsn.c: the text form of LSNs: what parses, what is rejected, and
 * that formatting round-trips. */
#include "cdc_lsn.h"
#include "tap.h"

#include <stdint.h>

static int rejects(const char *s)
{
    uint64_t v = 12345;
    return cdc_lsn_parse(s, &v) == -1 && v == 12345;
}

int main(void)
{
    uint64_t v = 0;
    char buf[CDC_LSN_BUFSZ];

    TAP_OK(cdc_lsn_parse("16/B374D848", &v) == 0 && v == 0x16B374D848ull,
           "lsn_parse_reads_both_halves");
    TAP_OK(cdc_lsn_parse("0/0", &v) == 0 && v == 0, "lsn_parse_accepts_zero");
    TAP_OK(cdc_lsn_parse("ffffffff/ffffffff", &v) == 0 && v == UINT64_MAX,
           "lsn_parse_accepts_lowercase_and_max");
    TAP_OK(cdc_lsn_parse("00000001/00000002", &v) == 0 && v == 0x100000002ull,
           "lsn_parse_accepts_leading_zeros_up_to_8_digits");

    TAP_OK(rejects(""), "lsn_parse_rejects_empty");
    TAP_OK(rejects(NULL), "lsn_parse_rejects_null");
    TAP_OK(rejects("16B374D848"), "lsn_parse_rejects_missing_slash");
    TAP_OK(rejects("/B374D848"), "lsn_parse_rejects_empty_upper_half");
    TAP_OK(rejects("16/"), "lsn_parse_rejects_empty_lower_half");
    TAP_OK(rejects("123456789/0"), "lsn_parse_rejects_9_digit_upper_half");
    TAP_OK(rejects("0/123456789"), "lsn_parse_rejects_9_digit_lower_half");
    TAP_OK(rejects("16/B374D848 "), "lsn_parse_rejects_trailing_space");
    TAP_OK(rejects("16/B374D848x"), "lsn_parse_rejects_trailing_junk");
    TAP_OK(rejects(" 16/B374D848"), "lsn_parse_rejects_leading_space");
    TAP_OK(rejects("-1/0"), "lsn_parse_rejects_sign");
    TAP_OK(rejects("0x16/0"), "lsn_parse_rejects_0x_prefix");
    TAP_OK(rejects("16/B3/74"), "lsn_parse_rejects_second_slash");
    TAP_OK(rejects("G/0"), "lsn_parse_rejects_non_hex");

    TAP_STREQ(cdc_lsn_format(0x16B374D848ull, buf), "16/B374D848", "lsn_format_upper_hex");
    TAP_STREQ(cdc_lsn_format(0, buf), "0/0", "lsn_format_zero");
    TAP_STREQ(cdc_lsn_format(UINT64_MAX, buf), "FFFFFFFF/FFFFFFFF", "lsn_format_max_fits_buffer");

    const uint64_t samples[] = {1, 0xFFFFFFFFull, 0x100000000ull, 0xDEADBEEF00C0FFEEull};
    int round = 1;
    for (size_t k = 0; k < sizeof samples / sizeof samples[0]; k++)
        round &= cdc_lsn_parse(cdc_lsn_format(samples[k], buf), &v) == 0 && v == samples[k];
    TAP_OK(round, "lsn_format_then_parse_round_trips");
    return tap_done();
}
