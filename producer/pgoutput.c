/* pgoutput.c: decoder of pgoutput protocol 1 and 2 messages (see pgoutput.h).
 * Every read is bounds-checked against the message length first; arrays are
 * sized from counts only after the count has been checked against the bytes
 * that remain, so a hostile length cannot make us allocate much. */
#include "pgoutput.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    const char *what;   /* message name, for errors */
    char *err;
    size_t errlen;
} reader;

const char *pgoutput_msg_name(int type)
{
    switch (type) {
    case PGOUTPUT_BEGIN: return "Begin";
    case PGOUTPUT_COMMIT: return "Commit";
    case PGOUTPUT_ORIGIN: return "Origin";
    case PGOUTPUT_RELATION: return "Relation";
    case PGOUTPUT_TYPE: return "Type";
    case PGOUTPUT_INSERT: return "Insert";
    case PGOUTPUT_UPDATE: return "Update";
    case PGOUTPUT_DELETE: return "Delete";
    case PGOUTPUT_TRUNCATE: return "Truncate";
    case PGOUTPUT_MESSAGE: return "Message";
    case PGOUTPUT_STREAM_START: return "Stream Start";
    case PGOUTPUT_STREAM_STOP: return "Stream Stop";
    case PGOUTPUT_STREAM_COMMIT: return "Stream Commit";
    case PGOUTPUT_STREAM_ABORT: return "Stream Abort";
    default: return "unknown";
    }
}

__attribute__((format(printf, 3, 4)))
static int fail_at(reader *r, size_t off, const char *fmt, ...)
{
    if (r->err && r->errlen) {
        int n = snprintf(r->err, r->errlen, "cannot decode %s message at offset %zu: ",
                         r->what, off);
        if (n >= 0 && (size_t)n < r->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

static int need(reader *r, size_t n, const char *field)
{
    if (r->len - r->pos < n)
        return fail_at(r, r->pos, "truncated: %s needs %zu bytes, %zu left",
                       field, n, r->len - r->pos);
    return 0;
}

static int get_u8(reader *r, uint8_t *v, const char *field)
{
    if (need(r, 1, field) < 0)
        return -1;
    *v = r->buf[r->pos++];
    return 0;
}

static int get_u16(reader *r, uint16_t *v, const char *field)
{
    if (need(r, 2, field) < 0)
        return -1;
    const uint8_t *p = r->buf + r->pos;
    *v = (uint16_t)((p[0] << 8) | p[1]);
    r->pos += 2;
    return 0;
}

static int get_u32(reader *r, uint32_t *v, const char *field)
{
    if (need(r, 4, field) < 0)
        return -1;
    const uint8_t *p = r->buf + r->pos;
    *v = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    r->pos += 4;
    return 0;
}

static int get_u64(reader *r, uint64_t *v, const char *field)
{
    uint32_t hi = 0, lo = 0;
    if (need(r, 8, field) < 0)
        return -1;
    get_u32(r, &hi, field);
    get_u32(r, &lo, field);
    *v = ((uint64_t)hi << 32) | lo;
    return 0;
}

static int get_i64(reader *r, int64_t *v, const char *field)
{
    uint64_t u;
    if (get_u64(r, &u, field) < 0)
        return -1;
    memcpy(v, &u, sizeof *v);
    return 0;
}

/* A String is NUL-terminated on the wire: we hand out a pointer to it. */
static int get_str(reader *r, const char **s, const char *field)
{
    size_t start = r->pos;
    const uint8_t *nul = memchr(r->buf + start, '\0', r->len - start);
    if (!nul)
        return fail_at(r, start, "%s has no terminating NUL before the end", field);
    *s = (const char *)(r->buf + start);
    r->pos = (size_t)(nul - r->buf) + 1;
    return 0;
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < n)
        c *= 2;
    void *p = realloc(*arr, c * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = c;
    return 0;
}

/* Tuple values of old and new tuples share one array: `base` is where this
 * tuple's values start. */
static int read_tuple(pgoutput_decoder *d, reader *r, size_t base, int expect,
                      pgoutput_tuple *t, const char *which)
{
    size_t at = r->pos;
    uint16_t n;
    if (get_u16(r, &n, which) < 0)
        return -1;
    if (n > PGOUTPUT_MAX_COLUMNS)
        return fail_at(r, at, "%s column count %u exceeds limit %d", which, n,
                       PGOUTPUT_MAX_COLUMNS);
    if (expect >= 0 && n != (unsigned)expect)
        return fail_at(r, at, "%s has %u columns but the relation has %d", which, n,
                       expect);
    /* Each column takes at least its kind byte. */
    if (n > r->len - r->pos)
        return fail_at(r, at, "truncated: %s column count %u exceeds the %zu bytes left",
                       which, n, r->len - r->pos);
    if (grow((void **)&d->vals, &d->vals_cap, base + n, sizeof *d->vals) < 0)
        return fail_at(r, at, "out of memory for %u columns", n);
    pgoutput_value *v = d->vals + base;
    for (uint16_t i = 0; i < n; i++) {
        size_t kat = r->pos;
        uint8_t kind;
        if (get_u8(r, &kind, "column kind") < 0)
            return -1;
        v[i].kind = (char)kind;
        v[i].len = 0;
        v[i].data = NULL;
        switch (kind) {
        case PGOUTPUT_COL_NULL:
        case PGOUTPUT_COL_UNCHANGED:
            break;
        case PGOUTPUT_COL_TEXT:
        case PGOUTPUT_COL_BINARY: {
            size_t lat = r->pos;
            uint32_t l;
            if (get_u32(r, &l, "column length") < 0)
                return -1;
            if (l > r->len - r->pos)
                return fail_at(r, lat, "truncated: column %u length %u exceeds the %zu bytes left",
                               i + 1, l, r->len - r->pos);
            v[i].len = l;
            v[i].data = (const char *)(r->buf + r->pos);
            r->pos += l;
            break;
        }
        default:
            return fail_at(r, kat, "unknown tuple data kind 0x%02x for column %u of %s",
                           kind, i + 1, which);
        }
    }
    t->ncols = n;
    t->cols = v;
    return 0;
}

static int expected_ncols(pgoutput_decoder *d, reader *r, uint32_t relid, size_t at)
{
    if (!d->ncols_fn)
        return -1;
    int n = d->ncols_fn(d->ncols_ctx, relid);
    if (n < 0) {
        fail_at(r, at, "relation %u was not described by a Relation message", relid);
        return -2;
    }
    return n;
}

static int decode_relation(pgoutput_decoder *d, reader *r, pgoutput_msg *m)
{
    uint8_t ri;
    uint16_t n;
    if (get_u32(r, &m->u.relation.oid, "relation OID") < 0 ||
        get_str(r, &m->u.relation.nspname, "namespace") < 0 ||
        get_str(r, &m->u.relation.relname, "relation name") < 0 ||
        get_u8(r, &ri, "replica identity") < 0)
        return -1;
    if (ri != 'd' && ri != 'n' && ri != 'f' && ri != 'i')
        return fail_at(r, r->pos - 1, "unknown replica identity 0x%02x", ri);
    m->u.relation.replident = (char)ri;
    size_t at = r->pos;
    if (get_u16(r, &n, "column count") < 0)
        return -1;
    if (n > PGOUTPUT_MAX_COLUMNS)
        return fail_at(r, at, "column count %u exceeds limit %d", n, PGOUTPUT_MAX_COLUMNS);
    /* flags + NUL of the name + type OID + typmod */
    if ((size_t)n * 10 > r->len - r->pos)
        return fail_at(r, at, "truncated: column count %u needs at least %zu bytes, %zu left",
                       n, (size_t)n * 10, r->len - r->pos);
    if (grow((void **)&d->relcols, &d->relcols_cap, n, sizeof *d->relcols) < 0)
        return fail_at(r, at, "out of memory for %u columns", n);
    for (uint16_t i = 0; i < n; i++) {
        pgoutput_relation_col *c = &d->relcols[i];
        uint32_t typmod;
        if (get_u8(r, &c->flags, "column flags") < 0 ||
            get_str(r, &c->name, "column name") < 0 ||
            get_u32(r, &c->type_oid, "column type OID") < 0 ||
            get_u32(r, &typmod, "column type modifier") < 0)
            return -1;
        memcpy(&c->typmod, &typmod, sizeof typmod);
    }
    m->u.relation.ncols = n;
    m->u.relation.cols = d->relcols;
    return 0;
}

static int decode_old_new(pgoutput_decoder *d, reader *r, pgoutput_msg *m)
{
    size_t at = r->pos;
    uint32_t relid;
    if (get_u32(r, &relid, "relation OID") < 0)
        return -1;
    int expect = expected_ncols(d, r, relid, at);
    if (expect == -2)
        return -1;

    char old_kind = 0;
    pgoutput_tuple oldtup = {0, NULL}, newtup = {0, NULL};
    size_t kat = r->pos;
    uint8_t kind;
    if (get_u8(r, &kind, "tuple marker") < 0)
        return -1;

    if (m->type == PGOUTPUT_INSERT) {
        if (kind != 'N')
            return fail_at(r, kat, "expected new tuple marker 'N', got 0x%02x", kind);
        if (read_tuple(d, r, 0, expect, &newtup, "new tuple") < 0)
            return -1;
        m->u.insert.relid = relid;
        m->u.insert.newtup = newtup;
        return 0;
    }

    if (m->type == PGOUTPUT_DELETE) {
        if (kind != 'K' && kind != 'O')
            return fail_at(r, kat, "expected old tuple marker 'K' or 'O', got 0x%02x", kind);
        if (read_tuple(d, r, 0, expect, &oldtup, "old tuple") < 0)
            return -1;
        m->u.delete_.relid = relid;
        m->u.delete_.old_kind = (char)kind;
        m->u.delete_.oldtup = oldtup;
        return 0;
    }

    /* Update: optional old tuple, then the new one. */
    size_t used = 0;
    if (kind == 'K' || kind == 'O') {
        old_kind = (char)kind;
        if (read_tuple(d, r, 0, expect, &oldtup, "old tuple") < 0)
            return -1;
        used = oldtup.ncols;
        kat = r->pos;
        if (get_u8(r, &kind, "new tuple marker") < 0)
            return -1;
    }
    if (kind != 'N')
        return fail_at(r, kat, "expected tuple marker 'K', 'O' or 'N', got 0x%02x", kind);
    if (read_tuple(d, r, used, expect, &newtup, "new tuple") < 0)
        return -1;
    /* The array may have moved while reading the new tuple. */
    if (old_kind)
        oldtup.cols = d->vals;
    m->u.update.relid = relid;
    m->u.update.old_kind = old_kind;
    m->u.update.oldtup = oldtup;
    m->u.update.newtup = newtup;
    return 0;
}

static int decode_truncate(pgoutput_decoder *d, reader *r, pgoutput_msg *m)
{
    size_t at = r->pos;
    uint32_t n;
    if (get_u32(r, &n, "relation count") < 0 ||
        get_u8(r, &m->u.truncate.options, "options") < 0)
        return -1;
    if (m->u.truncate.options & ~(PGOUTPUT_TRUNCATE_CASCADE | PGOUTPUT_TRUNCATE_RESTART_IDENTITY))
        return fail_at(r, r->pos - 1, "unknown option bits 0x%02x", m->u.truncate.options);
    if (n == 0)
        return fail_at(r, at, "relation count is 0");
    if (n > (r->len - r->pos) / 4)
        return fail_at(r, at, "truncated: relation count %u needs %llu bytes, %zu left",
                       n, (unsigned long long)n * 4, r->len - r->pos);
    if (grow((void **)&d->relids, &d->relids_cap, n, sizeof *d->relids) < 0)
        return fail_at(r, at, "out of memory for %u relations", n);
    for (uint32_t i = 0; i < n; i++)
        get_u32(r, &d->relids[i], "relation OID");
    m->u.truncate.nrelids = n;
    m->u.truncate.relids = d->relids;
    return 0;
}

void pgoutput_decoder_init(pgoutput_decoder *d, pgoutput_ncols_fn fn, void *ctx)
{
    memset(d, 0, sizeof *d);
    d->ncols_fn = fn;
    d->ncols_ctx = ctx;
}

void pgoutput_decoder_free(pgoutput_decoder *d)
{
    if (!d)
        return;
    free(d->vals);
    free(d->relcols);
    free(d->relids);
    d->vals = NULL;
    d->relcols = NULL;
    d->relids = NULL;
    d->vals_cap = d->relcols_cap = d->relids_cap = 0;
}

/* Inside a stream block these carry their (sub)transaction's xid. */
static bool carries_stream_xid(uint8_t t)
{
    return t == PGOUTPUT_RELATION || t == PGOUTPUT_TYPE || t == PGOUTPUT_INSERT ||
           t == PGOUTPUT_UPDATE || t == PGOUTPUT_DELETE || t == PGOUTPUT_TRUNCATE ||
           t == PGOUTPUT_MESSAGE;
}

int pgoutput_streamed_xid(const uint8_t *buf, size_t len, uint32_t *xid, char *err,
                          size_t errlen)
{
    reader r = {buf, len, 0, "pgoutput", err, errlen};
    if (len == 0)
        return fail_at(&r, 0, "empty message in a stream block");
    r.what = pgoutput_msg_name(buf[0]);
    r.pos = 1;
    if (buf[0] == PGOUTPUT_ORIGIN)
        return 0;
    if (!carries_stream_xid(buf[0]))
        return fail_at(&r, 0, "a stream block cannot hold message type 0x%02x", buf[0]);
    if (get_u32(&r, xid, "xid") < 0)
        return -1;
    if (*xid == 0)
        return fail_at(&r, 1, "invalid xid 0");
    return 1;
}

static int decode(pgoutput_decoder *d, const uint8_t *buf, size_t len, bool streamed,
                  pgoutput_msg *msg, char *err, size_t errlen)
{
    reader r = {buf, len, 0, "pgoutput", err, errlen};
    memset(msg, 0, sizeof *msg);
    if (len == 0)
        return fail_at(&r, 0, "empty message");
    uint8_t t = buf[0];
    r.pos = 1;
    r.what = pgoutput_msg_name(t);
    msg->type = (pgoutput_msg_type)t;
    if (streamed && carries_stream_xid(t) && get_u32(&r, &msg->xid, "xid") < 0)
        return -1;
    int rc;
    switch (t) {
    case PGOUTPUT_BEGIN:
        rc = (get_u64(&r, &msg->u.begin.final_lsn, "final LSN") < 0 ||
              get_i64(&r, &msg->u.begin.commit_ts, "commit timestamp") < 0 ||
              get_u32(&r, &msg->u.begin.xid, "xid") < 0) ? -1 : 0;
        break;
    case PGOUTPUT_COMMIT:
        rc = (get_u8(&r, &msg->u.commit.flags, "flags") < 0 ||
              get_u64(&r, &msg->u.commit.commit_lsn, "commit LSN") < 0 ||
              get_u64(&r, &msg->u.commit.end_lsn, "end LSN") < 0 ||
              get_i64(&r, &msg->u.commit.commit_ts, "commit timestamp") < 0) ? -1 : 0;
        break;
    case PGOUTPUT_ORIGIN:
        rc = (get_u64(&r, &msg->u.origin.commit_lsn, "origin commit LSN") < 0 ||
              get_str(&r, &msg->u.origin.name, "origin name") < 0) ? -1 : 0;
        break;
    case PGOUTPUT_RELATION:
        rc = decode_relation(d, &r, msg);
        break;
    case PGOUTPUT_TYPE:
        rc = (get_u32(&r, &msg->u.type.oid, "type OID") < 0 ||
              get_str(&r, &msg->u.type.nspname, "namespace") < 0 ||
              get_str(&r, &msg->u.type.typname, "type name") < 0) ? -1 : 0;
        break;
    case PGOUTPUT_INSERT:
    case PGOUTPUT_UPDATE:
    case PGOUTPUT_DELETE:
        rc = decode_old_new(d, &r, msg);
        break;
    case PGOUTPUT_TRUNCATE:
        rc = decode_truncate(d, &r, msg);
        break;
    case PGOUTPUT_MESSAGE: {
        size_t lat;
        rc = (get_u8(&r, &msg->u.message.flags, "flags") < 0 ||
              get_u64(&r, &msg->u.message.lsn, "LSN") < 0 ||
              get_str(&r, &msg->u.message.prefix, "prefix") < 0) ? -1 : 0;
        lat = r.pos;
        if (rc == 0 && get_u32(&r, &msg->u.message.len, "content length") < 0)
            rc = -1;
        if (rc == 0 && msg->u.message.len > r.len - r.pos)
            rc = fail_at(&r, lat, "truncated: content length %u exceeds the %zu bytes left",
                         msg->u.message.len, r.len - r.pos);
        if (rc == 0) {
            msg->u.message.content = (const char *)(buf + r.pos);
            r.pos += msg->u.message.len;
        }
        break;
    }
    case PGOUTPUT_STREAM_START: {
        uint8_t first = 0;
        rc = (get_u32(&r, &msg->u.stream_start.xid, "xid") < 0 ||
              get_u8(&r, &first, "first segment") < 0) ? -1 : 0;
        if (rc == 0 && first > 1)
            rc = fail_at(&r, r.pos - 1, "first segment flag is %u, not 0 or 1", first);
        msg->u.stream_start.first_segment = first == 1;
        break;
    }
    case PGOUTPUT_STREAM_STOP:
        rc = 0;
        break;
    case PGOUTPUT_STREAM_COMMIT:
        rc = (get_u32(&r, &msg->u.stream_commit.xid, "xid") < 0 ||
              get_u8(&r, &msg->u.stream_commit.flags, "flags") < 0 ||
              get_u64(&r, &msg->u.stream_commit.commit_lsn, "commit LSN") < 0 ||
              get_u64(&r, &msg->u.stream_commit.end_lsn, "end LSN") < 0 ||
              get_i64(&r, &msg->u.stream_commit.commit_ts, "commit timestamp") < 0) ? -1 : 0;
        break;
    case PGOUTPUT_STREAM_ABORT:
        /* Protocol 2 and 3; version 4 adds an abort LSN and time only with
         * streaming = parallel, which we never ask for. */
        rc = (get_u32(&r, &msg->u.stream_abort.xid, "xid") < 0 ||
              get_u32(&r, &msg->u.stream_abort.subxid, "subtransaction xid") < 0) ? -1 : 0;
        break;
    default:
        r.what = "pgoutput";
        return fail_at(&r, 0, "unknown message type 0x%02x", t);
    }
    if (rc < 0)
        return -1;
    if (r.pos != len)
        return fail_at(&r, r.pos, "%zu unexpected bytes after the end of the message",
                       len - r.pos);
    return 0;
}

int pgoutput_decode(pgoutput_decoder *d, const uint8_t *buf, size_t len,
                    pgoutput_msg *msg, char *err, size_t errlen)
{
    return decode(d, buf, len, false, msg, err, errlen);
}

int pgoutput_decode_streamed(pgoutput_decoder *d, const uint8_t *buf, size_t len,
                             pgoutput_msg *msg, char *err, size_t errlen)
{
    return decode(d, buf, len, true, msg, err, errlen);
}
