/* es_rebuild.h: the requests of a rebuild without downtime
 * (docs/consumer-sinks.md, "Rebuilding an index without downtime"): what
 * the live consumer asks about a table's indices (which version readers
 * see, whether the next one exists, to copy its writes there), and the
 * rebuild consumer's move of the alias (--es-switch-alias). When to ask,
 * and what the answers change, is sink_es.c's.
 *
 * Why no change is lost: the live consumer asks at most ES_NEXT_TTL_MS
 * before it builds a batch, and copies the batch into <name>_v<N+1> while
 * that exists. So every record it reads more than ES_NEXT_TTL_MS after
 * <name>_v<N+1> appeared is copied there. The rebuild consumer waits
 * 2 x ES_NEXT_TTL_MS after it made or found <name>_v<N+1>, takes the
 * partitions' end offsets then, and applies everything before them; any
 * later record is read by the live consumer after that moment, so copied.
 *
 * A question the engine refuses (es_rebuild_versions) leaves the live
 * consumer with what it knew: a next version already seen is still copied
 * into, one never seen is not. The rebuild consumer asks the same question
 * before it moves the alias and refuses to move it on a refusal; a refusal
 * that only the live consumer meets (its own credentials or proxy) is
 * logged there as an error at once and every minute while it lasts
 * (docs/consumer-sinks.md).
 *
 * Why readers never see an older row at the switch: the copy is written
 * (and acknowledged) before the write through the alias, so <name>_v<N+1>
 * holds at least what <name>_v<N> holds at any time; and es_rebuild_switch
 * stops <name>_v<N>'s periodic refresh before it refreshes <name>_v<N+1>
 * and moves the alias, so what readers saw of <name>_v<N> was written
 * before that refresh. */
#ifndef PGCDC_CONSUMER_ES_REBUILD_H
#define PGCDC_CONSUMER_ES_REBUILD_H

#include <stdbool.h>
#include <stddef.h>

#include "es_http.h"
#include "es_index.h"

/* How long the live consumer trusts its answer about a table's versions. */
#define ES_NEXT_TTL_MS 1000

/* Asks which indices <name>_v* exist and which one carries the alias
 * `name` (one GET .../_alias). An answer is read into *answer
 * (es_versions_read): returns 0. Transient failures (no connection, 408,
 * 429, 5xx, 401/403) are asked again with backoff (es_http_send), so no
 * batch is built on them. Any other answer, one that cannot be read or
 * one too long is a refusal, which asking again cannot mend: returns 1
 * with `refused` naming the request and the answer, *answer untouched
 * (the caller keeps what it knew: es_versions_update). Returns -1 with
 * err on a stop. */
int es_rebuild_versions(es_http *h, const char *name, es_versions *answer, char *refused,
                        size_t refusedlen, char *err, size_t errlen);

/* Moves the alias `name` from <name>_v<version-1> to <name>_v<version>
 * (filtered with ES_LIVE_FILTER when `filtered`), with <name>_v<version-1>'s
 * periodic refresh stopped from before <name>_v<version> is refreshed until
 * after the move (then set back as it was, even after a stop). An alias
 * already on <name>_v<version> alone is left as it is. Returns 0, or -1
 * with err: a stop, an answer refusing a step, or an alias on anything
 * else (the live consumer copies only into the version after the one
 * readers see, so moving it could lose changes). */
int es_rebuild_switch(es_http *h, const char *name, unsigned version, bool filtered, char *err,
                      size_t errlen);

#endif
