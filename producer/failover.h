/* failover.h: at each start, what surviving a failover of the server needs
 * and what is missing, one log line each (PostgreSQL 17+ failover slots:
 * docs/failover.md), and the producer's slot made a failover slot
 * (--failover-slot). Nothing here stops the producer. */
#ifndef PGCDC_FAILOVER_H
#define PGCDC_FAILOVER_H

#include <stdbool.h>

#include "replication.h"

/* Called with the slot present, before START_REPLICATION on repl. Reads
 * the server's settings on a short connection of its own (conninfo), and
 * alters the slot on repl when make_failover and it is not one yet. */
void failover_check(repl_conn *repl, const char *conninfo, const char *slot, bool make_failover);

#endif
