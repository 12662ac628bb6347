/* failover.c: the failover report and failover slots (see failover.h).
 * Only what the server the producer is connected to can show is checked:
 * whether a standby runs sync_replication_slots=on is not visible from the
 * primary, so the report says where to look instead. */
#include "failover.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdc_log.h"
#include "snapdb.h"

#define DOC "docs/failover.md"

/* One row of a query with one parameter, or NULL (logged). */
static PGresult *one_row(PGconn *pg, const char *sql, const char *param)
{
    const char *params[] = {param};
    PGresult *res = PQexecParams(pg, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1) {
        cdc_log_warn("failover: cannot check the server's settings: %s",
                     PQresultErrorMessage(res));
        PQclear(res);
        return NULL;
    }
    return res;
}

static void check_slot(repl_conn *repl, const char *slot, bool failover, bool make_failover)
{
    char err[512];
    if (failover)
        cdc_log_info("failover: replication slot %s is a failover slot: standbys with "
                     "sync_replication_slots=on keep a copy", slot);
    else if (!make_failover)
        cdc_log_warn("failover: replication slot %s is not a failover slot "
                     "(--no-failover-slot): no standby gets it, and after a failover the "
                     "producer stops (" DOC ")", slot);
    else if (repl_set_failover(repl, slot, err, sizeof err) < 0)
        cdc_log_warn("failover: %s", err);
    else
        cdc_log_info("failover: replication slot %s is now a failover slot (--failover-slot): "
                     "standbys with sync_replication_slots=on keep a copy", slot);
}

/* Each physical slot named by synchronized_standby_slots: a name this
 * server does not have (a setting copied to a promoted standby) or whose
 * standby is away holds logical decoding back, for ever or until it is back. */
static void check_standby_slots(PGconn *pg, const char *setting)
{
    if (!*setting) {
        cdc_log_warn("failover: synchronized_standby_slots is empty: the producer may receive "
                     "changes a standby does not have yet, which a failover loses from "
                     "PostgreSQL but not from Kafka; set it to the standby's physical slot "
                     "(" DOC ")");
        return;
    }
    PGresult *res = PQexecParams(pg,
        "SELECT trim(n), r.slot_type, r.active FROM unnest(string_to_array($1, ',')) n "
        "LEFT JOIN pg_replication_slots r ON r.slot_name = trim(n)",
        1, NULL, (const char *[]){setting}, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cdc_log_warn("failover: cannot check synchronized_standby_slots: %s",
                     PQresultErrorMessage(res));
        PQclear(res);
        return;
    }
    bool all_well = true;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *name = PQgetvalue(res, i, 0);
        if (PQgetisnull(res, i, 1)) {
            cdc_log_warn("failover: synchronized_standby_slots names %s, which this server does "
                         "not have: logical decoding waits for it for ever (on a promoted "
                         "standby: ALTER SYSTEM SET synchronized_standby_slots = ''; SELECT "
                         "pg_reload_conf())", name);
            all_well = false;
        } else if (strcmp(PQgetvalue(res, i, 2), "t") != 0) {
            cdc_log_warn("failover: synchronized_standby_slots names %s, whose standby is not "
                         "connected: logical decoding waits until it is back (or the setting "
                         "no longer names it)", name);
            all_well = false;
        }
    }
    if (all_well)
        cdc_log_info("failover: synchronized_standby_slots = '%s': the producer receives only "
                     "what those standbys have, and each is connected", setting);
    PQclear(res);
}

/* Physical standbys streaming from here (logical walsenders, ours and
 * others', left out) and how many send hot_standby_feedback. Returns their
 * number, or -1 when it cannot be read. */
static int check_standbys(PGconn *pg, const char *slot, bool quiet_if_none)
{
    PGresult *res = one_row(pg,
        "SELECT count(*), count(coalesce(r.backend_xmin, s.xmin)), "
        "string_agg(r.application_name, ', ') FROM pg_stat_replication r "
        "LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid "
        "WHERE r.state IN ('streaming', 'catchup') AND coalesce(s.slot_type, '') <> 'logical'",
        NULL);
    if (!res)
        return -1;
    int n = atoi(PQgetvalue(res, 0, 0)), feedback = atoi(PQgetvalue(res, 0, 1));
    if (n == 0 && quiet_if_none)
        cdc_log_info("failover: no standby streams from this server and "
                     "synchronized_standby_slots is empty: nothing to fail over to (" DOC ")");
    else if (n == 0)
        cdc_log_warn("failover: no standby streams from this server (or this role may not see "
                     "pg_stat_replication: pg_monitor): nothing to fail over to");
    else
        cdc_log_info("failover: %d standby(s) stream from this server (%s), %d with "
                     "hot_standby_feedback=on; sync_replication_slots=on is not visible from "
                     "here: on the standby, slot %s must show synced = t and temporary = f "
                     "before a failover (" DOC ")",
                     n, PQgetvalue(res, 0, 2), feedback, slot);
    if (n > 0 && feedback < n)
        cdc_log_warn("failover: %d standby(s) without hot_standby_feedback=on: slot "
                     "synchronization needs it", n - feedback);
    PQclear(res);
    return n;
}

void failover_check(repl_conn *repl, const char *conninfo, const char *slot, bool make_failover)
{
    int version = repl_server_version(repl);
    if (version < 170000) {
        cdc_log_info("failover: PostgreSQL %d does not synchronize logical slots to standbys "
                     "(17 and later do): after a failover the slot is gone and the producer "
                     "stops (" DOC ")", version / 10000);
        return;
    }
    char err[512];
    PGconn *pg = NULL;
    if (snapdb_connect(conninfo, "pgcdc-producer-failover", &pg, err, sizeof err) < 0) {
        cdc_log_warn("failover: cannot check the server's settings: %s", err);
        PQfinish(pg);
        return;
    }
    PGresult *res = one_row(pg,
        "SELECT pg_is_in_recovery(), current_setting('synchronized_standby_slots'), "
        "(SELECT failover FROM pg_replication_slots WHERE slot_name = $1)", slot);
    if (!res)
        goto done;
    if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
        cdc_log_info("failover: this server is a standby: the slot cannot be a failover slot, "
                     "and a standby's slots are not synchronized further (" DOC ")");
    } else {
        /* A server without standbys gets one line, not a warning per setting. */
        const char *standby_slots = PQgetvalue(res, 0, 1);
        check_slot(repl, slot, strcmp(PQgetvalue(res, 0, 2), "t") == 0, make_failover);
        if (check_standbys(pg, slot, !*standby_slots) != 0 || *standby_slots)
            check_standby_slots(pg, standby_slots);
    }
    PQclear(res);
done:
    PQfinish(pg);
}
