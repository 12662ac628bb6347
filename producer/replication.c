/* replication.c: libpq side of the replication stream (see replication.h).
 * The loop that drives it lives in producer.c; this file owns the protocol
 * details: framing, byte order, quoting of names in commands. */
#include "replication.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "cdc_buf.h"
#include "cdc_clock.h"
#include "cdc_lsn.h"
#include "pg_async.h"
#include "pg_error.h"

/* Seconds between 1970-01-01 and 2000-01-01. */
#define PG_EPOCH_OFFSET_S 946684800LL

/* IDENTIFY_SYSTEM and START_REPLICATION answer at once on a healthy server;
 * past this the connection is given up and retried. CREATE_REPLICATION_SLOT
 * has no deadline: it waits, as it must, for every running transaction. */
#define REPL_COMMAND_TIMEOUT_MS 60000

struct repl_conn {
    PGconn *pg;
    char *copybuf;          /* last frame from PQgetCopyData */
};

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

int64_t repl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((int64_t)ts.tv_sec - PG_EPOCH_OFFSET_S) * 1000000 + ts.tv_nsec / 1000;
}

int repl_parse_frame(const uint8_t *buf, size_t len, repl_frame *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    if (len < 1) {
        snprintf(err, errlen, "empty replication frame");
        return -1;
    }
    f->kind = (char)buf[0];
    switch (f->kind) {
    case 'w':
        if (len < 25) {
            snprintf(err, errlen, "XLogData frame of %zu bytes is shorter than its 25-byte header", len);
            return -1;
        }
        f->wal_start = get_u64(buf + 1);
        f->wal_end = get_u64(buf + 9);
        f->send_time = (int64_t)get_u64(buf + 17);
        f->data = buf + 25;
        f->len = len - 25;
        return 0;
    case 'k':
        if (len < 18) {
            snprintf(err, errlen, "keepalive frame of %zu bytes is shorter than 18 bytes", len);
            return -1;
        }
        f->wal_end = get_u64(buf + 1);
        f->send_time = (int64_t)get_u64(buf + 9);
        f->reply_requested = buf[17] != 0;
        return 0;
    default:
        snprintf(err, errlen, "unknown replication frame type 0x%02x", buf[0]);
        return -1;
    }
}

int repl_connect(const char *conninfo, repl_conn **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *keys[] = {"dbname", "replication", "options", "fallback_application_name", NULL};
    const char *vals[] = {conninfo ? conninfo : "", "database",
                          "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 "
                          "-c extra_float_digits=3 -c bytea_output=hex",
                          "pgcdc-producer", NULL};
    repl_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "cannot connect for replication: out of memory");
        return -1;
    }
    int rc = pg_connect(keys, vals, "cannot connect to PostgreSQL for replication", &c->pg,
                        err, errlen);
    if (rc < 0) {
        repl_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

int repl_identify(repl_conn *c, uint64_t *xlogpos, char *dbname, size_t dbnamelen,
                  char *err, size_t errlen)
{
    PGresult *res = pg_async_exec(c->pg, "IDENTIFY_SYSTEM", 0, NULL,
                                  cdc_clock_mono_ms() + REPL_COMMAND_TIMEOUT_MS, NULL, NULL,
                                  "IDENTIFY_SYSTEM failed", err, errlen);
    int rc = -1;
    if (!res)
        return -1;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = pg_error_result(c->pg, res, "IDENTIFY_SYSTEM failed", err, errlen);
        goto done;
    }
    if (PQntuples(res) != 1 || PQnfields(res) < 4) {
        snprintf(err, errlen, "IDENTIFY_SYSTEM returned %d rows and %d fields, expected 1 and 4",
                 PQntuples(res), PQnfields(res));
        goto done;
    }
    if (cdc_lsn_parse(PQgetvalue(res, 0, 2), xlogpos) < 0) {
        snprintf(err, errlen, "IDENTIFY_SYSTEM returned an invalid xlogpos \"%s\"",
                 PQgetvalue(res, 0, 2));
        goto done;
    }
    if (PQgetisnull(res, 0, 3)) {
        snprintf(err, errlen, "the replication connection is not bound to a database "
                              "(replication=database was not honoured)");
        goto done;
    }
    snprintf(dbname, dbnamelen, "%s", PQgetvalue(res, 0, 3));
    rc = 0;
done:
    PQclear(res);
    return rc;
}

/* Slot names are limited by PostgreSQL to [a-z0-9_]; checking here keeps
 * them out of any quoting question in replication commands. */
static int check_slot_name(const char *slot, char *err, size_t errlen)
{
    size_t n = strlen(slot);
    if (n == 0 || n > 63) {
        snprintf(err, errlen, "slot name \"%s\" must have 1 to 63 characters", slot);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = slot[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) {
            snprintf(err, errlen, "slot name \"%s\" may contain only a-z, 0-9 and _", slot);
            return -1;
        }
    }
    return 0;
}

int repl_create_slot(repl_conn *c, const char *slot, char *err, size_t errlen)
{
    if (check_slot_name(slot, err, errlen) < 0)
        return -1;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput NOEXPORT_SNAPSHOT", slot);
    PGresult *res = pg_async_exec(c->pg, cmd, 0, NULL, 0, NULL, NULL,
                                  "cannot create replication slot", err, errlen);
    if (!res)
        return -1;
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "42710") == 0) { /* duplicate_object */
            rc = 1;
        } else {
            rc = pg_error_result(c->pg, res, "cannot create replication slot", err, errlen);
        }
    }
    PQclear(res);
    return rc;
}

/* publication_names is a list of identifiers inside a string literal:
 * the name is double-quoted as an identifier, then the whole is a literal. */
static int append_publication_literal(cdc_buf *b, const char *name)
{
    cdc_buf ident = CDC_BUF_INIT;
    int rc = cdc_buf_putc(&ident, '"');
    for (const char *p = name; *p && rc == 0; p++)
        rc = *p == '"' ? cdc_buf_puts(&ident, "\"\"") : cdc_buf_putc(&ident, *p);
    rc |= cdc_buf_putc(&ident, '"');
    rc |= cdc_buf_putc(b, '\'');
    for (size_t i = 0; rc == 0 && i < ident.len; i++)
        rc = ident.data[i] == '\'' ? cdc_buf_puts(b, "''") : cdc_buf_putc(b, ident.data[i]);
    rc |= cdc_buf_putc(b, '\'');
    cdc_buf_free(&ident);
    return rc;
}

int repl_start(repl_conn *c, const char *slot, const char *publication, uint64_t startpos,
               bool want_streaming, char *err, size_t errlen)
{
    if (check_slot_name(slot, err, errlen) < 0)
        return -1;
    char lsn[CDC_LSN_BUFSZ];
    cdc_buf cmd = CDC_BUF_INIT;
    /* From 14, protocol 2 with streaming: a transaction larger than the
     * server's logical_decoding_work_mem comes while it runs instead of
     * being spilled to the server's disk first (producer.c keeps it until
     * its commit). 3 (two-phase) and 4 (parallel apply) add nothing here. */
    bool streaming = want_streaming && PQserverVersion(c->pg) >= 140000;
    int rc = cdc_buf_printf(&cmd, "START_REPLICATION SLOT %s LOGICAL %s (proto_version '%s', "
                                  "%smessages 'true', publication_names ",
                            slot, cdc_lsn_format(startpos, lsn), streaming ? "2" : "1",
                            streaming ? "streaming 'on', " : "");
    rc |= append_publication_literal(&cmd, publication);
    rc |= cdc_buf_putc(&cmd, ')');
    if (rc < 0) {
        snprintf(err, errlen, "cannot start replication: out of memory");
        cdc_buf_free(&cmd);
        return -1;
    }
    PGresult *res = pg_async_exec(c->pg, cmd.data, 0, NULL,
                                  cdc_clock_mono_ms() + REPL_COMMAND_TIMEOUT_MS, NULL, NULL,
                                  "cannot start replication", err, errlen);
    cdc_buf_free(&cmd);
    if (!res)
        return -1;
    rc = 0;
    if (PQresultStatus(res) != PGRES_COPY_BOTH) {
        char what[256];
        snprintf(what, sizeof what, "cannot start replication from slot %s, publication \"%s\"",
                 slot, publication);
        rc = pg_error_result(c->pg, res, what, err, errlen);
    }
    PQclear(res);
    return rc;
}

int repl_read(repl_conn *c, repl_frame *f, int timeout_ms, char *err, size_t errlen)
{
    if (c->copybuf) {
        PQfreemem(c->copybuf);
        c->copybuf = NULL;
    }
    for (;;) {
        int n = PQgetCopyData(c->pg, &c->copybuf, 1);
        if (n > 0)
            return repl_parse_frame((const uint8_t *)c->copybuf, (size_t)n, f, err, errlen) < 0 ? -1 : 1;
        if (n == -1) {
            PGresult *res = PQgetResult(c->pg);
            int rc = -1;
            if (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_COPY_OUT)
                snprintf(err, errlen, "the server ended the replication stream");
            else
                rc = pg_error_result(c->pg, res, "replication stream ended", err, errlen);
            PQclear(res);
            return rc;
        }
        if (n == -2) {
            pg_error_format(c->pg, "cannot read the replication stream", err, errlen);
            return -1;
        }
        if (timeout_ms <= 0)
            return 0;
        struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLIN};
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr < 0 && errno != EINTR) {
            snprintf(err, errlen, "cannot wait on the replication socket: %s", strerror(errno));
            return -1;
        }
        if (pr <= 0)
            return 0; /* timed out, or a signal: let the caller look at its deadlines */
        if (!PQconsumeInput(c->pg)) {
            pg_error_format(c->pg, "cannot read the replication stream", err, errlen);
            return -1;
        }
        timeout_ms = 0; /* data arrived: one more non-blocking try */
    }
}

int repl_send_status(repl_conn *c, uint64_t write, uint64_t flush, bool reply_requested,
                     char *err, size_t errlen)
{
    uint8_t msg[34];
    msg[0] = 'r';
    put_u64(msg + 1, write);
    put_u64(msg + 9, flush);
    put_u64(msg + 17, flush); /* applied: nothing is applied beyond Kafka */
    put_u64(msg + 25, (uint64_t)repl_now());
    msg[33] = reply_requested ? 1 : 0;
    if (PQputCopyData(c->pg, (const char *)msg, sizeof msg) <= 0 || PQflush(c->pg) < 0) {
        pg_error_format(c->pg, "cannot send a status update", err, errlen);
        return -1;
    }
    return 0;
}

/* Waits for input on c until deadline_ms. Returns 0 with input read, -1 on
 * a broken connection or the deadline. */
static int wait_input(repl_conn *c, int64_t deadline_ms)
{
    int64_t left = deadline_ms - cdc_clock_mono_ms();
    if (left <= 0)
        return -1;
    struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLIN};
    if (poll(&pfd, 1, (int)(left < 100 ? left : 100)) < 0 && errno != EINTR)
        return -1;
    return PQconsumeInput(c->pg) ? 0 : -1;
}

void repl_end_stream(repl_conn *c, int timeout_ms)
{
    if (!c || !c->pg || PQputCopyEnd(c->pg, NULL) <= 0 || PQflush(c->pg) < 0)
        return;
    int64_t deadline = cdc_clock_mono_ms() + timeout_ms;
    for (;;) {
        char *buf = NULL;
        int n = PQgetCopyData(c->pg, &buf, 1);
        if (buf)
            PQfreemem(buf);
        if (n == -1)
            break; /* the server ended the COPY: its result follows */
        if (n < -1 || (n == 0 && wait_input(c, deadline) < 0))
            return;
    }
    for (;;) {
        while (PQisBusy(c->pg))
            if (wait_input(c, deadline) < 0)
                return;
        PGresult *res = PQgetResult(c->pg);
        if (!res)
            return;
        PQclear(res);
    }
}

void repl_close(repl_conn *c)
{
    if (!c)
        return;
    if (c->copybuf)
        PQfreemem(c->copybuf);
    if (c->pg)
        PQfinish(c->pg);
    free(c);
}

int repl_server_version(const repl_conn *c)
{
    return PQserverVersion(c->pg);
}

int repl_set_failover(repl_conn *c, const char *slot, char *err, size_t errlen)
{
    if (check_slot_name(slot, err, errlen) < 0)
        return -1;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "ALTER_REPLICATION_SLOT %s (FAILOVER true)", slot);
    PGresult *res = PQexec(c->pg, cmd);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        char what[160];
        snprintf(what, sizeof what, "cannot make replication slot %s a failover slot", slot);
        rc = pg_error_result(c->pg, res, what, err, errlen);
    }
    PQclear(res);
    return rc;
}

int repl_create_slot_exported(repl_conn *c, const char *slot, char *snapname, size_t snaplen,
                              char *err, size_t errlen)
{
    if (check_slot_name(slot, err, errlen) < 0)
        return -1;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput EXPORT_SNAPSHOT", slot);
    PGresult *res = PQexec(c->pg, cmd);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        rc = state && strcmp(state, "42710") == 0
                 ? 1
                 : pg_error_result(c->pg, res, "cannot create replication slot", err, errlen);
    } else if (PQntuples(res) != 1 || PQnfields(res) < 3 || PQgetisnull(res, 0, 2)) {
        snprintf(err, errlen, "CREATE_REPLICATION_SLOT %s returned no snapshot name", slot);
        rc = -1;
    } else {
        snprintf(snapname, snaplen, "%s", PQgetvalue(res, 0, 2));
    }
    PQclear(res);
    return rc;
}
