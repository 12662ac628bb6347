/* fuzz_bulk_response.c: libFuzzer target for the _bulk response parser
 * (consumer/es_response.c). On any input: no crash, no leak, and a parsed
 * response is internally consistent (every item classified, counts add up). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "es_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    es_bulk_result r;
    char err[256];
    if (es_bulk_parse((const char *)data, size, &r, err, sizeof err) == 0) {
        size_t sum = 0;
        for (int c = 0; c < 4; c++)
            sum += r.count[c];
        if (sum != r.n)
            abort();
        for (size_t i = 0; i < r.n; i++) {
            const es_bulk_item *it = &r.items[i];
            if (!it->action || it->status < 100 || it->status > 599 ||
                it->cls != es_classify(it->action, it->status, it->error_type))
                abort();
            char field[64];
            if (es_refused_field(it, field, sizeof field) && (!field[0] || strlen(field) >= 64))
                abort();
        }
    } else if (r.root || r.items) {
        abort(); /* a failed parse owns nothing */
    }
    es_bulk_result_free(&r);
    return 0;
}
