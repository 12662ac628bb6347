/* fuzz_lsn.c: libFuzzer target for LSN text (common/cdc_lsn.c). Checks: no
 * crash; whatever parses formats back to text that parses to the same LSN. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_lsn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[64];
    if (size >= sizeof text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    uint64_t lsn, again;
    char buf[CDC_LSN_BUFSZ];
    if (cdc_lsn_parse(text, &lsn) == 0 &&
        (cdc_lsn_parse(cdc_lsn_format(lsn, buf), &again) != 0 || again != lsn))
        abort();
    return 0;
}
