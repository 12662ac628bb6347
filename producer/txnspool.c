/* txnspool.c: streamed transactions kept on disk until their commit (see
 * txnspool.h). A file holds records of [u64 lsn][u32 length][message], in
 * the order received. */
#include "txnspool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgoutput.h"

#define RECORD_HEADER 12

/* Where a subtransaction's first message starts in the file. */
typedef struct sub_start {
    uint32_t xid;
    uint64_t offset;
    uint64_t messages;       /* messages before it */
} sub_start;

struct txnspool {
    struct txnspool *next;
    uint32_t xid;
    FILE *f;
    uint64_t size;           /* bytes written */
    uint64_t messages;
    sub_start *subs;         /* in order of first message, so offsets ascend */
    size_t nsubs, subs_cap;
    uint32_t last_xid;       /* of the last message: most follow one of the same */
    uint8_t *buf;            /* txnspool_next's message */
    size_t buf_cap;
};

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static txnspool *find(txnspool_set *set, uint32_t xid, txnspool ***link)
{
    for (txnspool **l = &set->head; *l; l = &(*l)->next)
        if ((*l)->xid == xid) {
            if (link)
                *link = l;
            return *l;
        }
    return NULL;
}

void txnspool_free(txnspool *s)
{
    if (!s)
        return;
    if (s->f)
        fclose(s->f);
    free(s->subs);
    free(s->buf);
    free(s);
}

static txnspool *spool_new(uint32_t xid, char *err, size_t errlen)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/pgcdc-txn-%u-XXXXXX", dir, xid);
    txnspool *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory for streamed transaction %u", xid);
        return NULL;
    }
    s->xid = s->last_xid = xid;
    int fd = mkstemp(path);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s for streamed transaction %u: %s (set TMPDIR to a "
                 "writable directory)", path, xid, strerror(errno));
        free(s);
        return NULL;
    }
    unlink(path); /* gone with the process, whatever way it ends */
    if (!(s->f = fdopen(fd, "w+b"))) {
        snprintf(err, errlen, "cannot open %s for streamed transaction %u: %s", path, xid,
                 strerror(errno));
        close(fd);
        free(s);
        return NULL;
    }
    return s;
}

int txnspool_start(txnspool_set *set, uint32_t xid, bool first_segment, char *err,
                   size_t errlen)
{
    if (set->current) {
        snprintf(err, errlen, "Stream Start of transaction %u inside the block of transaction %u",
                 xid, set->current->xid);
        return -1;
    }
    txnspool *s = find(set, xid, NULL);
    if (first_segment && s) {
        snprintf(err, errlen, "Stream Start of transaction %u as its first block, but blocks of "
                 "it were streamed already", xid);
        return -1;
    }
    if (!first_segment && !s) {
        snprintf(err, errlen, "Stream Start of a later block of transaction %u, whose first "
                 "block was never streamed", xid);
        return -1;
    }
    if (!s) {
        if (!(s = spool_new(xid, err, errlen)))
            return -1;
        s->next = set->head;
        set->head = s;
    }
    set->current = s;
    return 0;
}

int txnspool_stop(txnspool_set *set, char *err, size_t errlen)
{
    if (!set->current) {
        snprintf(err, errlen, "Stream Stop without a Stream Start");
        return -1;
    }
    set->current = NULL;
    return 0;
}

static int write_record(txnspool *s, uint64_t lsn, const uint8_t *msg, size_t len, char *err,
                        size_t errlen)
{
    uint8_t hdr[RECORD_HEADER];
    if (len > UINT32_MAX) {
        snprintf(err, errlen, "a message of %zu bytes of streamed transaction %u", len, s->xid);
        return -1;
    }
    put_u64(hdr, lsn);
    put_u32(hdr + 8, (uint32_t)len);
    if (fwrite(hdr, 1, sizeof hdr, s->f) != sizeof hdr || fwrite(msg, 1, len, s->f) != len) {
        snprintf(err, errlen, "cannot write streamed transaction %u to its file in $TMPDIR "
                 "(%llu bytes so far): %s", s->xid, (unsigned long long)s->size, strerror(errno));
        return -1;
    }
    s->size += sizeof hdr + len;
    s->messages++;
    return 0;
}

static sub_start *sub_find(txnspool *s, uint32_t xid)
{
    for (size_t i = s->nsubs; i-- > 0;)
        if (s->subs[i].xid == xid)
            return &s->subs[i];
    return NULL;
}

int txnspool_add(txnspool_set *set, uint64_t lsn, const uint8_t *msg, size_t len, char *err,
                 size_t errlen)
{
    txnspool *s = set->current;
    if (!s) {
        snprintf(err, errlen, "a %s message of a streamed transaction outside a stream block",
                 len ? pgoutput_msg_name(msg[0]) : "empty");
        return -1;
    }
    uint32_t xid = s->xid;
    int r = pgoutput_streamed_xid(msg, len, &xid, err, errlen);
    if (r < 0)
        return -1;
    if (r == 0)
        xid = s->xid;
    if (xid != s->last_xid && xid != s->xid && !sub_find(s, xid)) {
        if (s->nsubs == s->subs_cap) {
            size_t cap = s->subs_cap ? s->subs_cap * 2 : 8;
            sub_start *n = realloc(s->subs, cap * sizeof *n);
            if (!n) {
                snprintf(err, errlen, "out of memory for the subtransactions of streamed "
                         "transaction %u", s->xid);
                return -1;
            }
            s->subs = n;
            s->subs_cap = cap;
        }
        s->subs[s->nsubs++] = (sub_start){xid, s->size, s->messages};
    }
    s->last_xid = xid;
    return write_record(s, lsn, msg, len, err, errlen);
}

/* Reads the record at the file position into s->buf. 1, 0 at the end, -1. */
static int read_record(txnspool *s, uint64_t *lsn, size_t *len, char *err, size_t errlen)
{
    uint8_t hdr[RECORD_HEADER];
    size_t got = fread(hdr, 1, sizeof hdr, s->f);
    if (got == 0 && feof(s->f))
        return 0;
    if (got != sizeof hdr)
        goto short_read;
    *lsn = get_be(hdr, 8);
    *len = (size_t)get_be(hdr + 8, 4);
    if (*len > s->buf_cap) {
        uint8_t *b = realloc(s->buf, *len);
        if (!b) {
            snprintf(err, errlen, "out of memory for a message of %zu bytes of streamed "
                     "transaction %u", *len, s->xid);
            return -1;
        }
        s->buf = b;
        s->buf_cap = *len;
    }
    if (*len && fread(s->buf, 1, *len, s->f) != *len)
        goto short_read;
    return 1;
short_read:
    snprintf(err, errlen, "cannot read streamed transaction %u back from its file: %s", s->xid,
             ferror(s->f) ? strerror(errno) : "it ends inside a message");
    return -1;
}

/* Cuts the file back to sub's first message, keeping the Relation
 * messages written since (read out first, written again after the cut). */
static int cut_back(txnspool *s, size_t sub, char *err, size_t errlen)
{
    uint64_t cut = s->subs[sub].offset, messages = s->subs[sub].messages;
    uint8_t *keep = NULL;
    size_t keep_len = 0, keep_cap = 0;
    int rc = -1;
    if (fflush(s->f) != 0 || fseeko(s->f, (off_t)cut, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot rewind streamed transaction %u: %s", s->xid,
                 strerror(errno));
        return -1;
    }
    for (;;) {
        uint64_t lsn;
        size_t len;
        int r = read_record(s, &lsn, &len, err, errlen);
        if (r < 0)
            goto done;
        if (r == 0)
            break;
        if (len == 0 || s->buf[0] != PGOUTPUT_RELATION)
            continue;
        if (keep_len + RECORD_HEADER + len > keep_cap) {
            size_t cap = (keep_len + RECORD_HEADER + len) * 2;
            uint8_t *n = realloc(keep, cap);
            if (!n) {
                snprintf(err, errlen, "out of memory keeping the relations of streamed "
                         "transaction %u", s->xid);
                goto done;
            }
            keep = n;
            keep_cap = cap;
        }
        put_u64(keep + keep_len, lsn);
        put_u32(keep + keep_len + 8, (uint32_t)len);
        memcpy(keep + keep_len + RECORD_HEADER, s->buf, len);
        keep_len += RECORD_HEADER + len;
    }
    clearerr(s->f);
    if (ftruncate(fileno(s->f), (off_t)cut) != 0 || fseeko(s->f, (off_t)cut, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot cut streamed transaction %u back: %s", s->xid,
                 strerror(errno));
        goto done;
    }
    s->size = cut;
    s->messages = messages;
    s->nsubs = sub;
    s->last_xid = s->xid;
    for (size_t at = 0; at < keep_len;) {
        size_t len = (size_t)get_be(keep + at + 8, 4);
        if (write_record(s, get_be(keep + at, 8), keep + at + RECORD_HEADER, len, err,
                         errlen) < 0)
            goto done;
        at += RECORD_HEADER + len;
    }
    rc = 0;
done:
    free(keep);
    return rc;
}

int txnspool_abort(txnspool_set *set, uint32_t xid, uint32_t subxid, char *err, size_t errlen)
{
    txnspool **link;
    txnspool *s = find(set, xid, &link);
    if (!s)
        return 0;
    if (s == set->current) {
        snprintf(err, errlen, "Stream Abort of transaction %u inside its own block", xid);
        return -1;
    }
    if (subxid == xid) {
        *link = s->next;
        txnspool_free(s);
        return 0;
    }
    sub_start *sub = sub_find(s, subxid);
    return sub ? cut_back(s, (size_t)(sub - s->subs), err, errlen) : 0;
}

txnspool *txnspool_take(txnspool_set *set, uint32_t xid, char *err, size_t errlen)
{
    txnspool **link;
    txnspool *s = find(set, xid, &link);
    if (!s) {
        snprintf(err, errlen, "Stream Commit of transaction %u, which was never streamed", xid);
        return NULL;
    }
    if (s == set->current) {
        snprintf(err, errlen, "Stream Commit of transaction %u inside its own block", xid);
        return NULL;
    }
    *link = s->next;
    s->next = NULL;
    if (fflush(s->f) != 0 || fseeko(s->f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot rewind streamed transaction %u: %s", xid, strerror(errno));
        txnspool_free(s);
        return NULL;
    }
    return s;
}

void txnspool_clear(txnspool_set *set)
{
    while (set->head) {
        txnspool *s = set->head;
        set->head = s->next;
        txnspool_free(s);
    }
    set->current = NULL;
}

int txnspool_next(txnspool *s, uint64_t *lsn, const uint8_t **msg, size_t *len, char *err,
                  size_t errlen)
{
    int r = read_record(s, lsn, len, err, errlen);
    if (r == 1)
        *msg = s->buf;
    return r;
}

uint64_t txnspool_messages(const txnspool *s)
{
    return s->messages;
}

uint64_t txnspool_bytes(const txnspool *s)
{
    return s->size;
}
