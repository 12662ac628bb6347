/* es_bulk.h: what pgcdc sends to Elasticsearch/OpenSearch, built from
 * decoded events: index names, document ids, documents, the _bulk NDJSON
 * body, the _mget body and response for unchanged TOAST columns, and the
 * truncate query. No I/O: the HTTP side lives in the sink.
 *
 * Every document carries, next to the row's columns:
 *   _pgcdc_lsn      the event's source.lsn (also its external _version),
 *                   queryable, unlike _version: truncate deletes by it;
 *   _pgcdc_deleted  true only in deleted markers (below).
 * Columns with those two names are left out of documents (the pgcdc field
 * wins).
 *
 * Deletes: a versioned deleted marker, not an ES delete. A 'd' event is
 * written as an `index` of {"_pgcdc_deleted":true,"_pgcdc_lsn":N} with
 * version N, version_type=external. Why: an ES delete's version is only
 * remembered for index.gc_deletes (60 s by default); after that an older
 * replayed insert of the row finds no document and succeeds, and the row
 * comes back. A marker is a real document, so its version is kept forever
 * and every older write of the row gets a 409. A longer gc_deletes only
 * moves the window, and the engine forgets it anyway when the shard restarts
 * (measured: bench/es/deletes.py). The price (docs/consumer-sinks.md): a
 * deleted row is still a document, which the alias readers query filters
 * out (es_index.h) but get by id returns, and markers take space until the
 * table is truncated. --es-deletes=delete writes real deletes instead
 * (es_bulk_append_delete).
 *
 * Truncate: POST /<index>/_delete_by_query?conflicts=proceed with the body
 * of es_truncate_body(): every document (rows and markers) whose
 * _pgcdc_lsn is below the truncate's LSN. Rows written after the truncate
 * have a larger LSN and stay; repeating it is harmless.
 *
 * Request sizes: a batch segment is applied in chunks, so that merged TOAST
 * values never make one request or response grow with the batch. The
 * budget of a request is --batch-bytes, at most ES_REQUEST_BYTES_MAX (the
 * engines refuse a body over http.max_content_length, 100 MB by default):
 *   - a chunk holds records whose values add up to at most the budget, and
 *     at most as many documents to fetch as es_mget_docs_per_request();
 *   - an _mget answer of several documents may hold the budget; one that
 *     would hold more is cut off and asked for again in halves;
 *   - a _bulk body holds items adding up to at most the budget
 *     (es_take_by_bytes); a single larger item goes alone. */
#ifndef PGCDC_CONSUMER_ES_BULK_H
#define PGCDC_CONSUMER_ES_BULK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_tree.h>

#include "cdc_buf.h"
#include "cdc_event.h"

#define ES_FIELD_LSN "_pgcdc_lsn"
#define ES_FIELD_DELETED "_pgcdc_deleted"
/* Columns whose value the index refused, kept in _source unindexed
 * (docs/consumer-sinks.md, "A value the index cannot take"). */
#define ES_FIELD_UNINDEXED "_pgcdc_unindexed"

/* Longest index name and _id the engines accept, in bytes. */
#define ES_INDEX_MAX 255
#define ES_ID_MAX 512

/* The index of a table: "<prefix><schema>.<table>" made valid:
 *  1. ASCII uppercase letters become lowercase;
 *  2. each byte of \ / * ? " < > | , # : space, each control character and
 *     each byte of a non-ASCII (UTF-8) character becomes '_' (the engines
 *     require lowercase and cannot lowercase for us: pgcdc has no Unicode
 *     tables, so non-ASCII is replaced rather than guessed at);
 *  3. a name starting with - _ + or . gets "x" in front ("." and ".." too);
 *  4. when any of 1-3 changed the name, "-" and 8 hex digits of a FNV-1a
 *     hash of the unmapped name are appended, so "Items" and "items", or
 *     "a b" and "a_b", never share an index;
 *  5. the name is cut so that the result fits ES_INDEX_MAX bytes (the hash
 *     suffix is added whenever cutting was needed, and kept).
 * Appends to out, sets *changed when the name differs from the unmapped one
 * (the caller logs that once per table). Returns 0 or -1 (out of memory). */
int es_index_name(const char *prefix, const char *schema, const char *table,
                  cdc_buf *out, bool *changed);

/* Steps 1-5 above for any name: `name` made a valid index name of at most
 * `max` (>= 16) bytes, appended to out. Returns 0 or -1 (out of memory). */
int es_index_valid(const char *name, size_t max, cdc_buf *out, bool *changed);

/* The _id of a row: row_id_text() of its key (the single value as text, or
 * the JSON array of the values). An id longer than ES_ID_MAX bytes, or one
 * that itself starts with "pgcdc-sha256:", becomes "pgcdc-sha256:" followed
 * by the SHA-256 of the id in hex (77 bytes), so long keys still get one
 * document each and no natural id can collide with a hashed one. Appends to
 * out. Returns 0, or -1 with err set (key not an object, empty). */
int es_doc_id(yajl_val key, cdc_buf *out, char *err, size_t errlen);

/* The same _id from a row id text already made (row_id_text()'s form):
 * the joined documents' ids (sink_docs.c). */
int es_doc_id_text(const char *id, cdc_buf *out, char *err, size_t errlen);

/* Columns of a row that go under ES_FIELD_UNINDEXED instead of their own
 * field: the engine refused their value (a mapping conflict), and the rest
 * of the row is still indexed. */
typedef struct es_unindexed {
    const char *const *names;
    size_t n;
} es_unindexed;

/* The document of a c/u/r event: the columns of `after`, then
 * the unchanged TOAST columns taken from `current` (the stored document's
 * _source from _mget, or the merged document of the same row written
 * earlier in the batch; NULL when there is none), then _pgcdc_lsn.
 * A TOAST column that `current` does not have (row never seen, deleted
 * marker) is left out and counted in *toast_missing (may be NULL); one
 * kept under the stored document's ES_FIELD_UNINDEXED is found there. The
 * columns named in `unindexed` (may be NULL) go into an ES_FIELD_UNINDEXED
 * object. Appends to out. Returns 0, or -1 with err set (op without after, out of
 * memory). */
int es_doc_build(const cdc_decoded_event *ev, yajl_val current, cdc_buf *out,
                 size_t *toast_missing, const es_unindexed *unindexed, char *err, size_t errlen);

/* Appends one _bulk item (action line and document line, each ending with
 * '\n') for a c/u/r/d event: `index` with version=lsn and
 * version_type=external; for d the document is the deleted marker.
 * `current` and `toast_missing` as in es_doc_build. A t event is not a bulk
 * item (es_truncate_body) and is refused. On -1 body is left as it was. */
int es_bulk_append(cdc_buf *body, const char *index, const char *id,
                   const cdc_decoded_event *ev, yajl_val current,
                   size_t *toast_missing, const es_unindexed *unindexed, char *err,
                   size_t errlen);

/* Appends the _bulk item of a real delete (--es-deletes=delete): one
 * action line, {"delete":{..,"version":lsn,"version_type":"external"}}.
 * The engine remembers its version for index.gc_deletes only
 * (docs/consumer-sinks.md). Returns 0 or -1 (out of memory; body as it was). */
int es_bulk_append_delete(cdc_buf *body, const char *index, const char *id, uint64_t lsn);

/* Appends the _delete_by_query body removing documents older than lsn:
 * {"query":{"range":{"_pgcdc_lsn":{"lt":<lsn>}}}}. Returns 0 or -1. */
int es_truncate_body(uint64_t lsn, cdc_buf *out);

/* One document to fetch for unchanged TOAST columns. Only the named
 * fields (plus _pgcdc_lsn and _pgcdc_deleted) are asked for. */
typedef struct es_mget_doc {
    const char *index;
    const char *id;
    const char *const *fields;
    size_t nfields;
} es_mget_doc;

/* Appends the body of POST /_mget: {"docs":[{"_index":..,"_id":..,
 * "_source":[..]},..]}. Returns 0 or -1 (out of memory). */
int es_mget_body(const es_mget_doc *docs, size_t n, cdc_buf *out);

/* One document of an _mget response, in request order. */
typedef struct es_mget_item {
    bool found;
    int64_t version;      /* _version, -1 when absent */
    yajl_val source;      /* the _source object, or NULL */
    const char *error;    /* error.reason (or type) when the engine failed
                             to fetch this document, else NULL */
} es_mget_item;

typedef struct es_mget_result {
    yajl_val root;        /* owns every tree and string above */
    es_mget_item *items;
    size_t n;
} es_mget_result;

/* Parses an _mget response body. Returns 0, or -1 with err set (not JSON,
 * too deep, no "docs" array, a doc that is not an object); on -1 *out needs
 * no freeing. */
int es_mget_parse(const char *body, size_t len, es_mget_result *out, char *err, size_t errlen);
void es_mget_result_free(es_mget_result *r);

/* ---- request sizes (see the top of this file) ---- */

#define ES_REQUEST_BYTES_MAX ((size_t)32 << 20)
/* Most documents one _mget asks for, however small they are. */
#define ES_MGET_DOCS_MAX 10000
/* Bytes per _mget document assumed before the first answer, and the least
 * ever assumed (an answer's per-document overhead). */
#define ES_MGET_DOC_GUESS ((size_t)64 << 10)
#define ES_MGET_DOC_MIN 512

/* The byte budget of one request for a --batch-bytes value. */
size_t es_request_budget(size_t batch_bytes);

/* How many of the next items, of sizes[0..n), go into one request of at
 * most `budget` bytes: the longest prefix that fits, but at least one (a
 * larger item goes alone). 0 only when n is 0. */
size_t es_take_by_bytes(const size_t *sizes, size_t n, size_t budget);

/* How many documents one _mget asks for when a document is thought to
 * take `doc_bytes` in the answer: budget / doc_bytes, within
 * 1..ES_MGET_DOCS_MAX. */
size_t es_mget_docs_per_request(size_t budget, size_t doc_bytes);

/* Bytes per document learnt from an _mget of ndocs answered with len
 * bytes (at least ES_MGET_DOC_MIN). */
size_t es_mget_doc_bytes(size_t len, size_t ndocs);

/* One record of a segment as the chunk planner sees it. */
typedef struct es_chunk_item {
    size_t bytes;   /* its Kafka value: what its document holds at least */
    bool merge;     /* it has unchanged TOAST columns to merge */
    long prev;      /* the earlier record of the same row it merges from, or -1 */
} es_chunk_item;

/* The end of the chunk of items[from..n) that starts at `from`: the longest
 * run whose bytes add up to at most `budget` and that needs at most
 * `max_fetch` stored documents (an item that merges needs one unless it
 * merges from an earlier item of the same chunk: items of earlier chunks
 * are written by then, so it reads their result from the index). At least
 * one item. Sets *nfetch to the documents the chunk needs. */
size_t es_chunk_end(const es_chunk_item *items, size_t n, size_t from, size_t budget,
                    size_t max_fetch, size_t *nfetch);

/* Whether item i of a chunk starting at `from` needs its stored document. */
bool es_chunk_fetches(const es_chunk_item *items, size_t i, size_t from);

#endif
