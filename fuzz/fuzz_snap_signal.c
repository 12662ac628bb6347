/* fuzz_snap_signal.c: libFuzzer target for the signal-table request parser
 * (producer/snaprow.c, snap_signal_parse). Input: one byte choosing the
 * signal type, then the "data" column's JSON text (any bytes).
 * Checks: no crash, no leak; a request, when accepted, has at least one
 * table and every table is a non-empty string; a rejection leaves nothing
 * to free. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "snaprow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {"\"snapshot\"", "\"execute-snapshot\"", "\"log\"",
                                        "42", "\"sn\\u0061pshot\""};
    if (size < 1)
        return 0;
    const char *type = types[data[0] % 5];
    /* An exact-size copy, so that ASan catches a read past the end. */
    size_t len = size - 1;
    char *text = malloc(len ? len : 1);
    if (!text)
        return 0;
    memcpy(text, data + 1, len);
    cdc_column cols[] = {
        {"type", type, strlen(type)},
        {"data", text, len},
    };
    cdc_row row = {cols, 2};
    snap_request req;
    char err[256];
    int rc = snap_signal_parse(&row, &req, err, sizeof err);
    if (rc == 1) {
        if (req.ntables == 0)
            abort();
        for (size_t i = 0; i < req.ntables; i++)
            if (!req.tables[i] || req.tables[i][0] == '\0')
                abort();
    } else if (req.tables || req.ntables) {
        abort();
    }
    snap_request_free(&req);
    free(text);
    return 0;
}
