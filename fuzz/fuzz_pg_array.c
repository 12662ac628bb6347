/* fuzz_pg_array.c: libFuzzer target for value mapping (producer/pgvalue.c):
 * PostgreSQL array literals and scalar text to JSON. Input: one byte picking
 * the type (class, array or not, delimiter), then the text.
 * Checks: no crash; the output of every class but json is exactly one valid
 * JSON value (cdc_json_validate); a failed conversion leaves the buffer as it
 * was; JSON strings are valid for any bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_event.h"
#include "pgvalue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cdc_buf out = CDC_BUF_INIT, scratch = CDC_BUF_INIT;
    char err[256];
    if (size < 1)
        return 0;
    pgvalue_type t = {
        .is_array = (data[0] & 0x10) == 0,   /* arrays are the main target */
        .cls = (pgvalue_class)((data[0] & 0x0f) % 10),
        .delim = (data[0] & 0x20) ? ';' : ',',
        .elem_oid = 0,
    };
    /* An exact-size copy, so that ASan catches a read past the end. */
    size_t len = size - 1;
    char *text = malloc(len ? len : 1);
    if (!text)
        return 0;
    memcpy(text, data + 1, len);

    cdc_buf_reset(&out);
    cdc_buf_puts(&out, "[");
    size_t before = out.len;
    if (pgvalue_append_json(&out, &t, text, len, &scratch, err, sizeof err) < 0) {
        if (out.len != before)
            abort();
    } else if (t.cls != PGVALUE_JSON) {
        if (cdc_json_validate(out.data + before, out.len - before, err, sizeof err) < 0)
            abort();
    }

    cdc_buf_reset(&out);
    if (pgvalue_append_json_string(&out, text, len) < 0 ||
        cdc_json_validate(out.data, out.len, err, sizeof err) < 0)
        abort();
    free(text);
    return 0;
}
