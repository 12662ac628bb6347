/* replication.h: the logical replication connection to PostgreSQL (libpq,
 * replication=database): IDENTIFY_SYSTEM, START_REPLICATION with pgoutput,
 * reading CopyData frames, and standby status updates. The frame headers
 * are checked for length before they are read. */
#ifndef PGCDC_REPLICATION_H
#define PGCDC_REPLICATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct repl_conn repl_conn;

/* One frame of the stream. */
typedef struct repl_frame {
    char kind;              /* 'w' XLogData or 'k' primary keepalive */
    uint64_t wal_start;     /* 'w': WAL position of this message */
    uint64_t wal_end;       /* the server's current end of WAL */
    int64_t send_time;      /* microseconds since 2000-01-01 */
    bool reply_requested;   /* 'k': answer at once */
    const uint8_t *data;    /* 'w': the pgoutput message, valid until the next read */
    size_t len;
} repl_frame;

/* Parses a CopyData payload of the stream ('w' or 'k'). Pure. Returns 0, or
 * -1 with err naming the frame and what is wrong with it. */
int repl_parse_frame(const uint8_t *buf, size_t len, repl_frame *f, char *err, size_t errlen);

/* Connects with replication=database and the session settings EVENTS.md
 * names (DateStyle, TimeZone, IntervalStyle, extra_float_digits,
 * bytea_output). Returns 0, or -1 with err from libpq (password masked). */
int repl_connect(const char *conninfo, repl_conn **out, char *err, size_t errlen);

/* IDENTIFY_SYSTEM: the server's WAL end and the database name. */
int repl_identify(repl_conn *c, uint64_t *xlogpos, char *dbname, size_t dbnamelen,
                  char *err, size_t errlen);

/* CREATE_REPLICATION_SLOT ... LOGICAL pgoutput. Returns 0, 1 when the slot
 * already exists, -1 on error. */
int repl_create_slot(repl_conn *c, const char *slot, char *err, size_t errlen);

/* repl_create_slot with EXPORT_SNAPSHOT: snapname gets the snapshot of the
 * slot's consistent point, which other connections can import (SET
 * TRANSACTION SNAPSHOT) until c runs its next command. */
int repl_create_slot_exported(repl_conn *c, const char *slot, char *snapname, size_t snaplen,
                              char *err, size_t errlen);

/* START_REPLICATION SLOT slot LOGICAL startpos with the publication and
 * logical messages on: with `streaming`, protocol 2 with streaming on from
 * PostgreSQL 14 (Stream Start/Stop/Commit/Abort, see txnspool.h); protocol
 * 1 otherwise. */
int repl_start(repl_conn *c, const char *slot, const char *publication, uint64_t startpos,
               bool streaming, char *err, size_t errlen);

/* Waits up to timeout_ms for a frame. Returns 1 with *f filled, 0 when none
 * arrived in time, -1 on error or when the server ended the stream,
 * PG_PERMANENT when its error cannot pass (e.g. the publication does not
 * exist). */
int repl_read(repl_conn *c, repl_frame *f, int timeout_ms, char *err, size_t errlen);

/* Sends a standby status update: received up to `write`, flushed (durable
 * in Kafka) up to `flush`. */
int repl_send_status(repl_conn *c, uint64_t write, uint64_t flush, bool reply_requested,
                     char *err, size_t errlen);

/* The server's version number (170002 for 17.2). */
int repl_server_version(const repl_conn *c);

/* ALTER_REPLICATION_SLOT slot (FAILOVER true), PostgreSQL 17+: the slot is
 * synchronized to standbys that run sync_replication_slots=on. */
int repl_set_failover(repl_conn *c, const char *slot, char *err, size_t errlen);

/* Microseconds since 2000-01-01, PostgreSQL's epoch. */
int64_t repl_now(void);

/* Ends a started stream the way the protocol asks (CopyDone, then what the
 * server still sends is read and dropped until it ends the COPY too), for
 * at most timeout_ms, so that the walsender has read the last status
 * update before the connection closes: on PQfinish alone a walsender
 * blocked writing to us could exit without reading it, and the slot would
 * keep an older position than the one the producer reported. */
void repl_end_stream(repl_conn *c, int timeout_ms);

void repl_close(repl_conn *c);

#endif
