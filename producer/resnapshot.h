/* resnapshot.h: reading tables again while streaming goes on (issue 7):
 * backfill and repair without locking a table and without ever overwriting
 * a newer change, asked for by an insert into the signal table or by
 * --resnapshot. Chunks of rows are bracketed by watermarks written into the
 * WAL with pg_logical_emit_message; the algorithm, and why the versions it
 * gives chunk rows keep every sink's ordering promise, is told at the top
 * of resnapshot.c. The producer's main loop drives it through the calls
 * below, all from its own thread. */
#ifndef PGCDC_RESNAPSHOT_H
#define PGCDC_RESNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdc_buf.h"
#include "cdc_event.h"
#include "flushpos.h"
#include "colpolicy.h"
#include "kafka_out.h"
#include "pgvalue.h"

/* The prefix of the watermark messages. */
#define RESNAP_WATERMARK_PREFIX "pgcdc-watermark"

typedef struct resnap resnap;

/* Produces one chunk row through the producer (flush position tracked like
 * a row of the transaction being received). Returns 0 or -1 (the producer
 * has recorded why it stops). */
typedef int (*resnap_emit_fn)(void *ctx, kafka_topic *topic, const cdc_buf *key,
                              const cdc_buf *value, uint64_t lsn);

typedef struct resnap_settings {
    const char *conninfo;
    const char *publication;
    const char *topic_prefix;
    const char *signal_table;     /* "schema.table", "table" (any schema), or ""/NULL: off */
    long chunk_rows;
    const char *const *tables;    /* --resnapshot: read these once streaming starts */
    size_t ntables;
    const colpolicy *policy;      /* columns left out or hashed; not copied: must outlive */
} resnap_settings;

/* Strings are copied. fp is the producer's flush position (signals hold it);
 * emit produces chunk rows. Returns 0, or -1 with err. */
int resnap_new(const resnap_settings *set, flushpos *fp, resnap_emit_fn emit, void *emit_ctx,
               resnap **out, char *err, size_t errlen);
void resnap_free(resnap *rs);

/* Every streamed row change of a table, before it is produced: an insert
 * into the signal table queues its request; a change of the table whose
 * chunk is between its watermarks strikes its keys (new and old) out of the
 * chunk; a truncate of it empties the chunk. `key` is the record key row
 * (NULL without one); `final_lsn` the commit position of its transaction.
 * Never fails: a malformed signal is logged and ignored. */
void resnap_observe_change(resnap *rs, const char *schema, const char *table,
                           const cdc_event *ev, const cdc_row *key, uint64_t final_lsn);

/* A logical decoding message of the stream. At a chunk's closing
 * watermark its remaining rows are produced through emit. Returns 0, or -1
 * when emit failed. */
int resnap_on_message(resnap *rs, const char *prefix, const char *content, size_t len);

/* Called from the stream loop: starts the next chunk or checks the one in
 * progress (each a few short queries on its own connection). kafka gives
 * the topics (the producer's current client), resolve maps user types (the
 * producer's catalog connection). Failures are logged and the chunk is
 * retried; streaming is never stopped by a re-snapshot. */
void resnap_step(resnap *rs, kafka_out *kafka, pgvalue_resolve_fn resolve, void *resolve_ctx);

/* The stream broke: the chunk in progress is dropped; requests from signal
 * rows come again from the slot, those of --resnapshot start over. The
 * hold of signal requests stays on the flush position until the new
 * stream has brought the signal again, so that acknowledgements of records
 * still in flight cannot confirm past it. */
void resnap_reset(resnap *rs);

/* Tables queued or being read (for tests and /metrics). */
size_t resnap_pending(const resnap *rs);

#endif
