/* doc_snapshot.c: document versions and event visibility from a read's
 * snapshot (doc_snapshot.h). No I/O. */
#include "doc_snapshot.h"

uint64_t doc_snapshot_version(uint64_t xmax, size_t nxip)
{
    uint64_t n = nxip > 65535 ? 65535 : nxip;
    return xmax * 65536 + (65535 - n);
}

bool doc_snapshot_sees(uint64_t xmax, const uint64_t *xip, size_t nxip, uint32_t xid)
{
    /* The 64-bit xid of this value nearest to xmax: an event's transaction
     * is recent, whether the snapshot saw it (below xmax) or not (from
     * xmax on). */
    const uint64_t epoch = (uint64_t)1 << 32, half = (uint64_t)1 << 31;
    uint64_t full = (xmax & ~(epoch - 1)) | xid;
    if (full >= xmax + half && full >= epoch)
        full -= epoch;
    else if (full + half < xmax)
        full += epoch;
    if (full >= xmax)
        return false;
    for (size_t k = 0; k < nxip; k++)
        if (xip[k] == full)
            return false;
    return true;
}
