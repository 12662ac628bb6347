/* test_buf.c: cdc_buf growth, formatting, truncation and ownership transfer. */
#include "cdc_buf.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

int main(void)
{
    cdc_buf b = CDC_BUF_INIT;
    for (int i = 0; i < 1000; i++)
        cdc_buf_putc(&b, 'x');
    TAP_OK(b.len == 1000 && b.data[1000] == '\0', "buf_grows_by_single_bytes_and_stays_terminated");

    cdc_buf_reset(&b);
    cdc_buf_printf(&b, "%s=%d", "lsn", 42);
    TAP_STREQ(b.data, "lsn=42", "buf_printf_formats_after_reset");

    cdc_buf_append(&b, "\0z", 2);
    TAP_OK(b.len == 8 && b.data[6] == '\0' && b.data[7] == 'z', "buf_append_keeps_embedded_nul");

    cdc_buf_puts(&b, "=half");
    cdc_buf_truncate(&b, 6);
    TAP_OK(b.len == 6 && strcmp(b.data, "lsn=42") == 0, "buf_truncate_undoes_appends");
    cdc_buf empty_buf = CDC_BUF_INIT;
    cdc_buf_truncate(&empty_buf, 0);
    TAP_OK(empty_buf.len == 0 && !empty_buf.data, "buf_truncate_of_unused_buffer_is_harmless");

    char *s = cdc_buf_steal(&b);
    TAP_OK(s && b.data == NULL && b.len == 0, "buf_steal_empties_the_buffer");
    free(s);

    char *empty = cdc_buf_steal(&b);
    TAP_STREQ(empty, "", "buf_steal_of_empty_buffer_gives_empty_string");
    free(empty);
    cdc_buf_free(&b);
    return tap_done();
}
