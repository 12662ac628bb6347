/* fuzz_outbox_message.c: libFuzzer target for outbox message routing
 * (producer/outbox.c). On any content: no crash, no leak; a routed event
 * has a topic under <prefix>.outbox., a non-empty key, a payload that is a
 * piece of the content and valid JSON on its own; a dead letter carries the
 * content unchanged and a reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_event.h"
#include "outbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static outbox *ob;
    char err[256];
    if (!ob) {
        outbox_settings s = {.topic_prefix = "pgcdc", .message_prefix = "pgcdc.outbox",
                             .dlq_topic = "pgcdc.dlq"};
        if (outbox_new(&s, &ob, err, sizeof err) < 0)
            abort();
    }
    const char *content = (const char *)data;
    outbox_record rec;
    if (outbox_route_message(ob, content, size, &rec, err, sizeof err) < 0)
        abort(); /* only memory can fail */
    if (rec.dead) {
        if (!rec.reason || strcmp(rec.topic, "pgcdc.dlq") != 0 || rec.value != content ||
            rec.value_len != size || rec.nheaders != 2)
            abort();
        return 0;
    }
    if (strncmp(rec.topic, "pgcdc.outbox.", 13) != 0 || !rec.key || rec.key_len == 0 ||
        !rec.aggregate_type || !*rec.aggregate_type)
        abort();
    if (rec.value) {
        if (rec.value < content || rec.value + rec.value_len > content + size ||
            cdc_json_validate(rec.value, rec.value_len, err, sizeof err) < 0)
            abort();
    }
    for (size_t i = 0; i < rec.nheaders; i++)
        if (!rec.headers[i].name)
            abort();
    return 0;
}
