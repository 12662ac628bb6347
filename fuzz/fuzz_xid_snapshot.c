/* fuzz_xid_snapshot.c: libFuzzer target for pg_current_snapshot()'s text
 * (common/xid_snapshot.c). Checks: no crash or leak; a snapshot that
 * parses saw nothing it lists as in progress, nothing from xmax on, and
 * everything before xmin. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xid_snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    xid_snapshot snap = {0};
    char err[160];
    if (xid_snapshot_parse(&snap, text, err, sizeof err) == 0) {
        for (size_t i = 0; i < snap.nxip; i++)
            if (xid_snapshot_saw(&snap, snap.xip[i]))
                abort();
        if (xid_snapshot_saw(&snap, snap.xmax))
            abort();
        if (!xid_snapshot_saw(&snap, snap.xmin - 1))
            abort();
    } else if (!err[0] || snap.xip) {
        abort();
    }
    xid_snapshot_clear(&snap);
    free(text);
    return 0;
}
