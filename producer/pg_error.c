/* pg_error.c: libpq error messages for logs and error buffers, which of
 * them are permanent, and connecting so that the SQLSTATE of a refused
 * connection is known (see pg_error.h). */
#include "pg_error.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_buf.h"
#include "cdc_clock.h"
#include "cdc_mask.h"
#include "cdc_signal.h"

static void format_text(const char *what, const char *msg, const char *hint, char *err,
                        size_t errlen)
{
    cdc_buf masked = CDC_BUF_INIT;
    if (cdc_mask_secrets(msg, &masked) == 0 && masked.data)
        msg = masked.data;
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    snprintf(err, errlen, "%s: %.*s%s%s%s", what, (int)n, msg, hint ? " (" : "",
             hint ? hint : "", hint ? ")" : "");
    cdc_buf_free(&masked);
}

void pg_error_format(PGconn *pg, const char *what, char *err, size_t errlen)
{
    format_text(what, pg ? PQerrorMessage(pg) : "out of memory", NULL, err, errlen);
}

bool pg_error_permanent(const char *sqlstate)
{
    return pg_error_hint(sqlstate) != NULL;
}

const char *pg_error_hint(const char *sqlstate)
{
    static const struct {
        const char *state, *hint;
    } permanent[] = {
        {"28000", "check the user of --pg and the server's pg_hba.conf"},
        {"28P01", "check the user and password of --pg"},
        {"3D000", "check the database name of --pg"},
        {"3F000", "check the schema name"},
        {"42P01", "check the table name"},
        {"42704", "check the name of the publication or object"},
        {"42501", "grant the role of --pg this privilege; a replication connection needs "
                  "ALTER ROLE ... REPLICATION"},
    };
    if (!sqlstate)
        return NULL;
    for (size_t i = 0; i < sizeof permanent / sizeof permanent[0]; i++)
        if (strcmp(sqlstate, permanent[i].state) == 0)
            return permanent[i].hint;
    return NULL;
}

int pg_error_result(PGconn *pg, const PGresult *res, const char *what, char *err,
                    size_t errlen)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *hint = pg_error_hint(state);
    const char *msg = res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res)
                    : pg ? PQerrorMessage(pg) : "out of memory";
    format_text(what, msg, hint, err, errlen);
    return hint ? PG_PERMANENT : -1;
}

/* "FATAL:  " or "ERROR:  " followed by a SQLSTATE and ": " at s. */
static bool state_at(const char *s, const char **state)
{
    if (strncmp(s, "FATAL:  ", 8) != 0 && strncmp(s, "ERROR:  ", 8) != 0)
        return false;
    const char *c = s + 8;
    for (int i = 0; i < 5; i++)
        if (!isdigit((unsigned char)c[i]) && !isupper((unsigned char)c[i]))
            return false;
    if (c[5] != ':' || c[6] != ' ')
        return false;
    *state = c;
    return true;
}

bool pg_error_message_state(const char *msg, char state[6])
{
    bool found = false;
    for (const char *s = msg; s && *s; s++) {
        const char *c;
        if (state_at(s, &c)) {
            memcpy(state, c, 5);
            state[5] = '\0';
            found = true;
        }
    }
    return found;
}

int pg_error_unverbose(const char *msg, char **out)
{
    cdc_buf b = CDC_BUF_INIT;
    int rc = cdc_buf_puts(&b, "");
    const char *s = msg;
    while (rc == 0 && *s) {
        const char *c;
        bool line_start = s == msg || s[-1] == '\n';
        if (line_start && strncmp(s, "LOCATION:", 9) == 0) {
            const char *nl = strchr(s, '\n');
            s = nl ? nl + 1 : s + strlen(s);
            continue;
        }
        if (state_at(s, &c)) {
            rc = cdc_buf_append(&b, s, 8);
            s = c + 7;
            continue;
        }
        rc = cdc_buf_putc(&b, *s++);
    }
    if (rc < 0) {
        cdc_buf_free(&b);
        return -1;
    }
    *out = cdc_buf_steal(&b);
    return 0;
}

/* The conninfo the user gave: the "dbname" value, when it is a conninfo
 * rather than a bare database name (libpq's expand_dbname rule). */
static const char *user_conninfo(const char *const *keys, const char *const *vals)
{
    for (size_t i = 0; keys[i]; i++) {
        if (strcmp(keys[i], "dbname") != 0)
            continue;
        const char *v = vals[i];
        if (v && (strchr(v, '=') || strncmp(v, "postgresql://", 13) == 0 ||
                  strncmp(v, "postgres://", 11) == 0))
            return v;
        return NULL;
    }
    return NULL;
}

/* The effective value of one keyword of a connection, or NULL. */
static const char *conn_option(PQconninfoOption *opts, const char *keyword)
{
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, keyword) == 0)
            return o->val;
    return NULL;
}

/* connect_timeout per host (as PQconnectdb waits), since PQconnectPoll
 * leaves the waiting to its caller. */
static int64_t connect_budget_ms(PGconn *pg)
{
    PQconninfoOption *opts = PQconninfo(pg);
    const char *t = conn_option(opts, "connect_timeout");
    const char *hosts = conn_option(opts, "host");
    if (!hosts || !*hosts)
        hosts = conn_option(opts, "hostaddr");
    long secs = t && *t ? strtol(t, NULL, 10) : 0;
    if (secs <= 0)
        secs = 3600; /* "wait indefinitely": still bounded, SIGTERM ends it anyway */
    else if (secs < 2)
        secs = 2; /* libpq's own minimum */
    long nhosts = 1;
    for (const char *h = hosts; h && *h; h++)
        nhosts += *h == ',';
    PQconninfoFree(opts);
    return (int64_t)secs * 1000 * nhosts;
}

/* The connection's message in its default form, for err. */
static void connect_error(PGconn *pg, const char *what, const char *hint, char *err,
                          size_t errlen)
{
    char *plain = NULL;
    const char *msg = pg ? PQerrorMessage(pg) : "out of memory";
    if (pg && pg_error_unverbose(msg, &plain) == 0)
        msg = plain;
    format_text(what, msg, hint, err, errlen);
    free(plain);
}

int pg_connect(const char *const *keys, const char *const *vals, const char *what,
               PGconn **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *conninfo = user_conninfo(keys, vals);
    if (conninfo) {
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
        if (!opts) {
            format_text(what, perr ? perr : "out of memory",
                        perr ? "--pg is not a valid libpq connection string; see "
                               "https://www.postgresql.org/docs/current/"
                               "libpq-connect.html#LIBPQ-PARAMKEYWORDS"
                             : NULL,
                        err, errlen);
            int rc = perr ? PG_PERMANENT : -1;
            PQfreemem(perr);
            return rc;
        }
        PQconninfoFree(opts);
    }
    /* Defaults first: the conninfo, expanded from "dbname" later in the
     * list, overrides them (libpq keeps the last value of a keyword). A dead
     * server or network is noticed in seconds, not after the kernel's two
     * hours of TCP retries. */
    const char *dkeys[] = {"connect_timeout", "keepalives", "keepalives_idle",
                           "keepalives_interval", "keepalives_count", "tcp_user_timeout"};
    const char *dvals[] = {getenv("PGCONNECT_TIMEOUT") ? getenv("PGCONNECT_TIMEOUT") : "10",
                           "1", "30", "10", "3", "60000"};
    enum { NDEF = sizeof dkeys / sizeof dkeys[0] };
    size_t n = 0;
    while (keys[n])
        n++;
    const char **k = calloc(n + NDEF + 1, sizeof *k);
    const char **v = calloc(n + NDEF + 1, sizeof *v);
    if (!k || !v) {
        free(k);
        free(v);
        snprintf(err, errlen, "%s: out of memory", what);
        return -1;
    }
    for (size_t i = 0; i < NDEF; i++) {
        k[i] = dkeys[i];
        v[i] = dvals[i];
    }
    for (size_t i = 0; i < n; i++) {
        k[NDEF + i] = keys[i];
        v[NDEF + i] = vals[i];
    }
    PGconn *pg = PQconnectStartParams(k, v, 1);
    free(k);
    free(v);
    int rc = -1;
    if (!pg || PQstatus(pg) == CONNECTION_BAD) {
        connect_error(pg, what, NULL, err, errlen);
        goto fail;
    }
    /* So that a refusal's message carries its SQLSTATE (pg_error.h). */
    PQsetErrorVerbosity(pg, PQERRORS_VERBOSE);
    int64_t deadline = cdc_clock_mono_ms() + connect_budget_ms(pg);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    for (;;) {
        if (st == PGRES_POLLING_OK)
            break;
        if (st == PGRES_POLLING_FAILED) {
            char state[6];
            const char *hint = NULL;
            if (pg_error_message_state(PQerrorMessage(pg), state))
                hint = pg_error_hint(state);
            else if (PQconnectionNeedsPassword(pg))
                hint = "--pg has no password (password=, PGPASSWORD or ~/.pgpass)";
            connect_error(pg, what, hint, err, errlen);
            rc = hint ? PG_PERMANENT : -1;
            goto fail;
        }
        if (cdc_signal_stop_requested()) {
            snprintf(err, errlen, "%s: stop requested", what);
            goto fail;
        }
        int64_t left = deadline - cdc_clock_mono_ms();
        if (left <= 0) {
            snprintf(err, errlen, "%s: no answer within the connect timeout (%" PRId64 " s)",
                     what, connect_budget_ms(pg) / 1000);
            goto fail;
        }
        struct pollfd pfd[2] = {
            {.fd = PQsocket(pg), .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT},
            {.fd = cdc_signal_fd(), .events = POLLIN},
        };
        int pr = poll(pfd, pfd[1].fd >= 0 ? 2 : 1, left > 100 ? 100 : (int)left);
        if (pr < 0 && errno != EINTR) {
            snprintf(err, errlen, "%s: cannot wait for the server: %s", what, strerror(errno));
            goto fail;
        }
        if (pr > 0 && pfd[0].revents)
            st = PQconnectPoll(pg);
    }
    PQsetErrorVerbosity(pg, PQERRORS_DEFAULT);
    *out = pg;
    return 0;
fail:
    PQfinish(pg);
    return rc;
}
