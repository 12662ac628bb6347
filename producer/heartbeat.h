/* heartbeat.h: --heartbeat-interval (issue 7). A non-transactional logical
 * message, pg_logical_emit_message(false, 'pgcdc-heartbeat', ''), written
 * on the catalog connection every interval, gives the walsender something
 * of this database to send even when no published table changes, so the
 * slot's confirmed position keeps up with the WAL that other tables and
 * databases write, and PostgreSQL can recycle it. */
#ifndef PGCDC_HEARTBEAT_H
#define PGCDC_HEARTBEAT_H

#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "cdc_metrics.h"

#define HEARTBEAT_PREFIX "pgcdc-heartbeat"

typedef struct heartbeat {
    int64_t interval_ms;     /* 0: off */
    int64_t next_ms;
    int64_t next_warn_ms;
    cdc_metric *m_sent, *m_failed;
} heartbeat;

void heartbeat_init(heartbeat *hb, int64_t interval_s);
/* Writes a heartbeat when one is due (now_ms: a monotonic clock). A
 * failure is counted and logged (at most once a minute), never fatal: the
 * stream does not depend on it. */
void heartbeat_tick(heartbeat *hb, catalog *cat, int64_t now_ms);

#endif
