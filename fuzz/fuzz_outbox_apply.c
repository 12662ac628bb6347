/* fuzz_outbox_apply.c: libFuzzer target for outbox record translation
 * (consumer/outbox_apply.c). The input is split at the first two 0xFF bytes
 * into key, event type header and payload (the pgcdc-lsn header is fixed).
 * On any input: no crash, no leak, and whatever is translated into an event
 * is accepted by cdc_event_decode and cdc_key_decode as the consumer uses
 * them, with schema "outbox". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_event.h"
#include "outbox_apply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *cut1 = memchr(p, 0xFF, size);
    const char *cut2 = cut1 ? memchr(cut1 + 1, 0xFF, (size_t)(end - cut1 - 1)) : NULL;
    outbox_apply_input in = {.topic = "pgcdc.outbox.order", .lsn = "24337816", .lsn_len = 8};
    if (cut2) {
        in.key = p;
        in.key_len = (size_t)(cut1 - p);
        in.event_type = cut1 + 1;
        in.event_type_len = (size_t)(cut2 - cut1 - 1);
        in.value = cut2 + 1;
        in.value_len = (size_t)(end - cut2 - 1);
    } else {
        in.key = "7";
        in.key_len = 1;
        in.value = p;
        in.value_len = size;
    }
    cdc_buf ev = CDC_BUF_INIT, key = CDC_BUF_INIT;
    char why[256];
    outbox_apply_result r = outbox_apply_translate("pgcdc.outbox.", &in, &ev, &key, why,
                                                   sizeof why);
    if (r == OUTBOX_APPLY_ERROR)
        abort();
    if (r == OUTBOX_APPLY_EVENT) {
        cdc_decoded_event d;
        yajl_val k = NULL;
        char err[256];
        if (cdc_event_decode(ev.data, ev.len, &d, err, sizeof err) < 0 ||
            cdc_key_decode(key.data, key.len, &k, err, sizeof err) < 0 ||
            strcmp(d.schema, "outbox") != 0 || d.lsn != 24337816)
            abort();
        cdc_decoded_event_free(&d);
        yajl_tree_free(k);
    }
    cdc_buf_free(&ev);
    cdc_buf_free(&key);
    return 0;
}
