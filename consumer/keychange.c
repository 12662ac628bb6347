/* keychange.c: the old key of a key-changing update (see keychange.h). */
#include "keychange.h"

#include <stdbool.h>
#include <string.h>

#include "row_json.h"

int keychange_old_key(const cdc_decoded_event *ev, yajl_val key, cdc_buf *out)
{
    if (ev->op != 'u' || !key || !YAJL_IS_OBJECT(key) || key->u.object.len == 0 ||
        !ev->before || !YAJL_IS_OBJECT(ev->before))
        return 0;
    cdc_buf a = CDC_BUF_INIT, b = CDC_BUF_INIT;
    size_t mark = out->len;
    int rc = -1;
    bool changed = false;
    if (cdc_buf_putc(out, '{') < 0)
        goto done;
    for (size_t i = 0; i < key->u.object.len; i++) {
        const char *name = key->u.object.keys[i];
        yajl_val old = row_json_member(ev->before, name);
        if (!old) {
            rc = 0; /* before is not a key (or not all of it): cannot tell */
            goto done;
        }
        /* Both texts come from the same writer: equal values, equal text. */
        cdc_buf_reset(&a);
        cdc_buf_reset(&b);
        if (row_json_put_value(&a, old) < 0 || row_json_put_value(&b, key->u.object.values[i]) < 0)
            goto done;
        if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
            changed = true;
        if ((i > 0 && cdc_buf_putc(out, ',') < 0) ||
            row_json_put_string(out, name, strlen(name)) < 0 || cdc_buf_putc(out, ':') < 0 ||
            cdc_buf_append(out, a.data, a.len) < 0)
            goto done;
    }
    if (cdc_buf_putc(out, '}') < 0)
        goto done;
    rc = changed ? 1 : 0;
done:
    if (rc != 1)
        cdc_buf_truncate(out, mark);
    cdc_buf_free(&a);
    cdc_buf_free(&b);
    return rc;
}
