/* xid_snapshot.c: the text of pg_current_snapshot() and what it saw. */
#include "xid_snapshot.h"

#include <stdio.h>
#include <stdlib.h>

void xid_snapshot_clear(xid_snapshot *snap)
{
    free(snap->xip);
    *snap = (xid_snapshot){0};
}

/* One unsigned decimal (xid8: at most 20 digits, no sign, no spaces). */
static const char *parse_xid(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = p;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
    }
    if (p == start)
        return NULL;
    *out = v;
    return p;
}

int xid_snapshot_parse(xid_snapshot *snap, const char *text, char *err, size_t errlen)
{
    xid_snapshot_clear(snap);
    uint64_t xmin, xmax, xid;
    const char *p = parse_xid(text, &xmin);
    if (!p || *p != ':' || !(p = parse_xid(p + 1, &xmax)) || *p != ':')
        goto bad;
    /* PostgreSQL keeps every live xid within 2^31 of each other (wraparound
     * protection); a wider span could not be compared in 32 bits. */
    if (xmax < xmin || xmax - xmin >= UINT64_C(1) << 31)
        goto bad;
    p++;
    size_t cap = 1;
    for (const char *c = p; *c; c++)
        cap += *c == ',';
    if (*p) {
        snap->xip = calloc(cap, sizeof *snap->xip);
        if (!snap->xip) {
            snprintf(err, errlen, "out of memory for a snapshot of %zu transactions", cap);
            return -1;
        }
        for (;;) {
            if (!(p = parse_xid(p, &xid)) || xid < xmin || xid >= xmax)
                goto bad;
            snap->xip[snap->nxip++] = (uint32_t)xid;
            if (!*p)
                break;
            if (*p++ != ',')
                goto bad;
        }
    }
    snap->xmin = (uint32_t)xmin;
    snap->xmax = (uint32_t)xmax;
    snap->xmax_full = xmax;
    return 0;
bad:
    snprintf(err, errlen, "not a snapshot (xmin:xmax:xip,...): \"%.80s\"", text);
    xid_snapshot_clear(snap);
    return -1;
}

bool xid_snapshot_saw(const xid_snapshot *snap, uint32_t xid)
{
    if ((int32_t)(xid - snap->xmin) < 0)
        return true;
    if ((int32_t)(xid - snap->xmax) >= 0)
        return false;
    for (size_t i = 0; i < snap->nxip; i++)
        if (snap->xip[i] == xid)
            return false;
    return true;
}

uint64_t xid_snapshot_rank(const xid_snapshot *snap)
{
    uint64_t n = snap->nxip > 65535 ? 65535 : snap->nxip;
    return snap->xmax_full * 65536 + (65535 - n);
}
