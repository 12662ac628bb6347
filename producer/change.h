/* change.h: a decoded Insert/Update/Delete/Truncate plus its cached relation
 * turned into the cdc_event (and record key) of EVENTS.md, column values
 * mapped by pgvalue. Pure; storage is reused from one change to the next. */
#ifndef PGCDC_CHANGE_H
#define PGCDC_CHANGE_H

#include <stddef.h>
#include <stdint.h>

#include "cdc_buf.h"
#include "cdc_event.h"
#include "colpolicy.h"
#include "pgoutput.h"
#include "pgvalue.h"
#include "relcache.h"

/* Reads the current values of the columns cols[0..n) (indices into
 * rel->cols) of the row whose key columns (rel->key, in that order) have
 * the text values keyvals[]. Each values[i] receives a malloc'd copy of the
 * column's text form (as the walsender prints it), NULL for SQL NULL; the
 * caller frees them. Returns 1 when the row was found, 0 when it was not or
 * could not be read (then values[] are all NULL). */
typedef int (*change_fetch_fn)(void *ctx, const relcache_rel *rel, const char *const *keyvals,
                               const uint16_t *cols, size_t n, char **values);

typedef struct change_builder {
    relcache *rc;
    pgvalue_resolve_fn resolve;   /* user types; NULL maps them to text */
    void *resolve_ctx;
    change_fetch_fn fetch;        /* TOAST values of a moved row; NULL: none */
    void *fetch_ctx;
    const colpolicy *policy;      /* columns left out or hashed; NULL: none */
    pgvalue_row row;              /* before, after and key columns, and their JSON */
    int *pos_old, *pos_new;       /* relation column -> index in cols, or -1 */
    size_t pos_cap;
    const char **toast;
    size_t toast_cap;
    cdc_row before, after, key;
    cdc_row moved_from;           /* change_moved_from */
} change_builder;

void change_builder_init(change_builder *b, relcache *rc,
                         pgvalue_resolve_fn resolve, void *resolve_ctx);
void change_builder_free(change_builder *b);

/* Unchanged TOAST values of an update that changed the row's key (REPLICA
 * IDENTITY DEFAULT/INDEX) are in no WAL record: PostgreSQL only kept the
 * pointer. With a fetch function the builder asks it for the row's current
 * values by the new key and puts them into `after`, so that no sink has to
 * find them at an id the row has just left (maybe in another partition,
 * maybe not yet applied). A value read now may be newer than the update;
 * every later change of it is a later event, so each sink still ends with
 * the right value, and the event is still the row's state at its LSN for
 * every column PostgreSQL sent. Columns of a row that is gone stay in
 * unchanged_toast. */
void change_builder_set_fetch(change_builder *b, change_fetch_fn fetch, void *ctx);

/* Columns the policy drops are in no part of any event (before, after,
 * key, unchanged_toast); hashed ones carry colpolicy_append_hash of their
 * text wherever they appear, the record key included, so a row keeps one
 * key. A policy that drops a key column makes change_build fail (err says
 * why) at that relation's first change. Not owned; NULL keeps everything. */
void change_builder_set_policy(change_builder *b, const colpolicy *policy);

/* Builds the event of an Insert ('c'), Update ('u') or Delete ('d'):
 * - after: the new row, without unchanged-TOAST columns, which are listed
 *   in unchanged_toast instead; except that under REPLICA IDENTITY FULL
 *   they are taken from the old row PostgreSQL sent in full, and for an
 *   update that changed the key from b->fetch (change_builder_set_fetch);
 * - before: the old key columns ('K', REPLICA IDENTITY DEFAULT/INDEX) or
 *   the whole old row ('O', FULL); NULL when PostgreSQL sent no old tuple
 *   (an update that did not change the key);
 * - *key: the relation's key columns (relcache_rel.key) taken from the new
 *   row (from the old one for a delete, or where the new one has an
 *   unchanged-TOAST key value); NULL when the relation has no key.
 * ev->source is a copy of *src with schema and table filled in; ev->ts_ms
 * is 0 for the caller to set. Pointers in *ev and *key stay valid until the
 * next call on b, or until the relation is replaced in the cache.
 * Returns 0, or -1 with err naming the table and column (unknown relation,
 * binary tuple data, a key value missing, a malformed value, memory). */
int change_build(change_builder *b, const pgoutput_msg *m, const cdc_source *src,
                 cdc_event *ev, const cdc_row **key, char *err, size_t errlen);

/* After change_build of an update that changed the row's key: the old
 * key, as the record key the row had until then (the key columns, in key
 * order, with the values of `before`). NULL for every other change, and
 * when `before` lacks a key column. Valid as long as change_build's *key. */
const cdc_row *change_moved_from(const change_builder *b);

/* Builds the 't' event of relation i of a Truncate message (before and
 * after null; its record key is CHANGE_TRUNCATE_KEY). Returns 0, or -1 with err set (unknown relation). */
/* The record key of every truncate event (EVENTS.md): the JSON text null.
 * Not a Kafka null key, which a log-compacted topic refuses; and no
 * primary key, always a JSON object, can have it. */
#define CHANGE_TRUNCATE_KEY "null"

int change_build_truncate(change_builder *b, const pgoutput_msg *m, size_t i,
                          const cdc_source *src, cdc_event *ev,
                          char *err, size_t errlen);

/* The type mapping of one column, resolving and caching it on first use:
 * built-in, then the relcache's type cache, then b->resolve. */
int change_column_type(change_builder *b, relcache_col *col, const pgvalue_type **type,
                       char *err, size_t errlen);

#endif
