/* pgoutput.h: decoder of the pgoutput logical replication messages of
 * protocol versions 1 and 2 (Begin, Commit, Origin, Relation, Type, Insert,
 * Update, Delete, Truncate, Message; and version 2's Stream Start, Stream
 * Stop, Stream Commit and Stream Abort, with the xid that every change of a
 * streamed transaction carries). Pure: bytes in, a decoded message out, no
 * I/O. */
#ifndef PGCDC_PGOUTPUT_H
#define PGCDC_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* PostgreSQL's own limits: a tuple has at most 1664 attributes
 * (MaxTupleAttributeNumber), a table at most 1600 columns. A larger count is
 * an absurd (corrupt or hostile) message, not a big table. */
#define PGOUTPUT_MAX_COLUMNS 1664

typedef enum pgoutput_msg_type {
    PGOUTPUT_BEGIN = 'B',
    PGOUTPUT_COMMIT = 'C',
    PGOUTPUT_ORIGIN = 'O',
    PGOUTPUT_RELATION = 'R',
    PGOUTPUT_TYPE = 'Y',
    PGOUTPUT_INSERT = 'I',
    PGOUTPUT_UPDATE = 'U',
    PGOUTPUT_DELETE = 'D',
    PGOUTPUT_TRUNCATE = 'T',
    PGOUTPUT_MESSAGE = 'M',
    PGOUTPUT_STREAM_START = 'S',
    PGOUTPUT_STREAM_STOP = 'E',
    PGOUTPUT_STREAM_COMMIT = 'c',
    PGOUTPUT_STREAM_ABORT = 'A',
} pgoutput_msg_type;

/* Tuple data column kinds, as on the wire. */
#define PGOUTPUT_COL_NULL      'n'
#define PGOUTPUT_COL_UNCHANGED 'u' /* unchanged TOAST value, not sent */
#define PGOUTPUT_COL_TEXT      't'
#define PGOUTPUT_COL_BINARY    'b'

/* Truncate option flags, as on the wire. */
#define PGOUTPUT_TRUNCATE_CASCADE          1
#define PGOUTPUT_TRUNCATE_RESTART_IDENTITY 2

/* Relation column flag: part of the replica identity. */
#define PGOUTPUT_COLFLAG_KEY 1

/* One column of a TupleData: `data` points into the message buffer and is
 * not NUL-terminated; NULL for 'n' and 'u'. */
typedef struct pgoutput_value {
    char kind;
    uint32_t len;
    const char *data;
} pgoutput_value;

typedef struct pgoutput_tuple {
    uint16_t ncols;
    const pgoutput_value *cols;   /* storage owned by the decoder */
} pgoutput_tuple;

typedef struct pgoutput_relation_col {
    uint8_t flags;                /* PGOUTPUT_COLFLAG_KEY */
    const char *name;             /* NUL-terminated, into the buffer */
    uint32_t type_oid;
    int32_t typmod;
} pgoutput_relation_col;

typedef struct pgoutput_msg {
    pgoutput_msg_type type;
    uint32_t xid;                     /* pgoutput_decode_streamed: the (sub)transaction's */
    union {
        struct { uint64_t final_lsn; int64_t commit_ts; uint32_t xid; } begin;
        struct { uint8_t flags; uint64_t commit_lsn; uint64_t end_lsn; int64_t commit_ts; } commit;
        struct { uint64_t commit_lsn; const char *name; } origin;
        struct {
            uint32_t oid;
            const char *nspname;      /* "" means pg_catalog */
            const char *relname;
            char replident;           /* 'd' default, 'n' nothing, 'f' full, 'i' index */
            uint16_t ncols;
            const pgoutput_relation_col *cols; /* owned by the decoder */
        } relation;
        struct { uint32_t oid; const char *nspname; const char *typname; } type;
        struct { uint32_t relid; pgoutput_tuple newtup; } insert;
        struct {
            uint32_t relid;
            char old_kind;            /* 0 (no old tuple), 'K' old key, 'O' old row */
            pgoutput_tuple oldtup;
            pgoutput_tuple newtup;
        } update;
        struct { uint32_t relid; char old_kind; pgoutput_tuple oldtup; } delete_;
        struct {
            uint8_t options;          /* PGOUTPUT_TRUNCATE_* */
            uint32_t nrelids;
            const uint32_t *relids;   /* owned by the decoder */
        } truncate;
        struct {
            uint8_t flags;            /* 1: transactional */
            uint64_t lsn;
            const char *prefix;
            uint32_t len;
            const char *content;      /* into the buffer, not NUL-terminated */
        } message;
        struct { uint32_t xid; bool first_segment; } stream_start;
        struct {
            uint32_t xid;
            uint8_t flags;
            uint64_t commit_lsn;      /* as Begin's final_lsn */
            uint64_t end_lsn;
            int64_t commit_ts;
        } stream_commit;
        struct { uint32_t xid; uint32_t subxid; } stream_abort; /* subxid == xid: all of it */
    } u;
} pgoutput_msg;

/* Tells the decoder how many columns a relation has, so that a tuple that
 * does not match the last Relation message is rejected. Returns the count,
 * or -1 when the relation is unknown. */
typedef int (*pgoutput_ncols_fn)(void *ctx, uint32_t relid);

/* Reusable scratch storage for the arrays of a decoded message: it grows to
 * the largest message seen (bounded by PGOUTPUT_MAX_COLUMNS and the message
 * length) and is reused, so decoding does not allocate in the steady state. */
typedef struct pgoutput_decoder {
    pgoutput_value *vals;
    size_t vals_cap;
    pgoutput_relation_col *relcols;
    size_t relcols_cap;
    uint32_t *relids;
    size_t relids_cap;
    pgoutput_ncols_fn ncols_fn;   /* optional */
    void *ncols_ctx;
} pgoutput_decoder;

void pgoutput_decoder_init(pgoutput_decoder *d, pgoutput_ncols_fn fn, void *ctx);
void pgoutput_decoder_free(pgoutput_decoder *d);

/* Decodes one message. Pointers in *msg point into `buf` and into the
 * decoder; they stay valid until the next call or until `buf` goes away.
 * Returns 0, or -1 with err naming the message, the offset and the reason
 * (truncated, trailing bytes, a string without its NUL, an unknown tuple
 * kind, a column count that disagrees with the relation, absurd lengths). */
int pgoutput_decode(pgoutput_decoder *d, const uint8_t *buf, size_t len,
                    pgoutput_msg *msg, char *err, size_t errlen);

/* Decodes a message sent between Stream Start and Stream Stop: Relation,
 * Type, Insert, Update, Delete, Truncate and Message carry the xid of their
 * (sub)transaction after the type byte (msg->xid); other types decode as
 * pgoutput_decode does. */
int pgoutput_decode_streamed(pgoutput_decoder *d, const uint8_t *buf, size_t len,
                             pgoutput_msg *msg, char *err, size_t errlen);

/* Only the xid of a message of a stream block, without decoding the rest
 * (which may need Relation messages that are not applied yet). Returns 1
 * with *xid set, 0 for a message type that carries none (Origin), -1 with
 * err set (an empty or truncated message, a type no stream block holds). */
int pgoutput_streamed_xid(const uint8_t *buf, size_t len, uint32_t *xid, char *err,
                          size_t errlen);

/* "Begin", "Relation", ... for messages; "unknown" otherwise. */
const char *pgoutput_msg_name(int type);

#endif
