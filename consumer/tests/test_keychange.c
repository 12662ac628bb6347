/* test_keychange.c: the old key of an update that changed its key
 * (consumer/keychange.h), from events decoded as the consumer decodes them. */
#include <string.h>

#include "cdc_event.h"
#include "keychange.h"
#include "tap.h"

/* keychange_old_key on one event and key; the old key text in out. */
static int old_key(const char *value, const char *key, cdc_buf *out)
{
    cdc_decoded_event ev;
    yajl_val k = NULL;
    char err[256];
    cdc_buf_reset(out);
    if (cdc_event_decode(value, strlen(value), &ev, err, sizeof err) < 0 ||
        (key && cdc_key_decode(key, strlen(key), &k, err, sizeof err) < 0)) {
        printf("# %s\n", err);
        return -2;
    }
    int rc = keychange_old_key(&ev, k, out);
    cdc_decoded_event_free(&ev);
    if (k)
        yajl_tree_free(k);
    return rc;
}

#define SRC ",\"source\":{\"schema\":\"s\",\"table\":\"t\",\"lsn\":100}}"

int main(void)
{
    cdc_buf out = CDC_BUF_INIT;

    TAP_OK(old_key("{\"op\":\"u\",\"before\":{\"id\":1},\"after\":{\"id\":2,\"v\":\"x\"}" SRC,
                   "{\"id\":2}", &out) == 1, "update_that_changed_the_key_gives_the_old_key");
    TAP_STREQ(out.data, "{\"id\":1}", "old_key_has_before_values");

    TAP_OK(old_key("{\"op\":\"u\",\"before\":{\"id\":2},\"after\":{\"id\":2,\"v\":\"x\"}" SRC,
                   "{\"id\":2}", &out) == 0, "update_with_the_same_key_is_not_a_key_change");
    TAP_OK(out.len == 0, "nothing_appended_when_the_key_did_not_change");

    TAP_OK(old_key("{\"op\":\"u\",\"before\":{\"tenant\":\"a\",\"id\":7},"
                   "\"after\":{\"tenant\":\"b\",\"id\":7}" SRC,
                   "{\"tenant\":\"b\",\"id\":7}", &out) == 1,
           "composite_key_with_one_member_changed");
    TAP_STREQ(out.data, "{\"tenant\":\"a\",\"id\":7}", "composite_old_key_in_key_order");

    /* REPLICA IDENTITY FULL: before is the whole old row, in column order. */
    TAP_OK(old_key("{\"op\":\"u\",\"before\":{\"v\":\"q\\\"\",\"id\":12345678901234567890,"
                   "\"big\":\"xx\"},\"after\":{\"v\":\"q\",\"id\":5}" SRC,
                   "{\"id\":5}", &out) == 1, "full_row_before_gives_the_key_members_only");
    TAP_STREQ(out.data, "{\"id\":12345678901234567890}", "numbers_keep_their_exact_text");

    TAP_OK(old_key("{\"op\":\"u\",\"before\":{\"id\":1.0},\"after\":{\"id\":1}" SRC,
                   "{\"id\":1}", &out) == 1, "values_compare_by_text_like_the_sink_ids");

    TAP_OK(old_key("{\"op\":\"u\",\"before\":{\"other\":1},\"after\":{\"id\":2}" SRC,
                   "{\"id\":2}", &out) == 0, "before_without_a_key_member_cannot_tell");
    TAP_OK(old_key("{\"op\":\"u\",\"before\":null,\"after\":{\"id\":2}" SRC,
                   "{\"id\":2}", &out) == 0, "null_before_is_not_a_key_change");
    TAP_OK(old_key("{\"op\":\"u\",\"before\":{\"id\":1},\"after\":{\"id\":2}" SRC, NULL, &out) == 0,
           "null_record_key_is_not_a_key_change");
    TAP_OK(old_key("{\"op\":\"d\",\"before\":{\"id\":1},\"after\":null" SRC, "{\"id\":2}", &out) == 0,
           "delete_is_not_a_key_change");
    TAP_OK(old_key("{\"op\":\"c\",\"before\":null,\"after\":{\"id\":2}" SRC, "{\"id\":2}", &out) == 0,
           "insert_is_not_a_key_change");
    TAP_OK(old_key("{\"op\":\"u\",\"before\":{\"id\":\"a\\\"b\\\\c\\n\"},\"after\":{\"id\":\"x\"}" SRC,
                   "{\"id\":\"x\"}", &out) == 1, "string_key_with_escapes");
    TAP_STREQ(out.data, "{\"id\":\"a\\\"b\\\\c\\n\"}", "escapes_written_back_as_json");

    cdc_buf_free(&out);
    return tap_done();
}
