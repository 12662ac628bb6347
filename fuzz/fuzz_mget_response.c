/* fuzz_mget_response.c: libFuzzer target for the _mget response parser
 * (consumer/es_bulk.c), whose documents feed unchanged TOAST columns back
 * into writes: on any input no crash, no leak, and every found source can be
 * written out again as JSON. */
#include <stdint.h>
#include <stdlib.h>

#include "es_bulk.h"
#include "row_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    es_mget_result r;
    char err[256];
    if (es_mget_parse((const char *)data, size, &r, err, sizeof err) == 0) {
        cdc_buf b = CDC_BUF_INIT;
        for (size_t i = 0; i < r.n; i++)
            if (r.items[i].source && row_json_put_value(&b, r.items[i].source) < 0)
                abort();
        cdc_buf_free(&b);
    } else if (r.root || r.items) {
        abort();
    }
    es_mget_result_free(&r);
    return 0;
}
