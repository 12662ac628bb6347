/* es_response.h: reading a _bulk response body item by item, and deciding
 * for each whether it is done, to be retried, or rejected for good; reading
 * what the engine says of a truncate's task. No I/O: the body comes from
 * the sink's HTTP client.
 *
 * Classification (es_classify):
 *   2xx, and 404 for a delete (already gone)          -> ES_ITEM_OK
 *   409 (version conflict: the index already holds
 *        this version of the row or a newer one)       -> ES_ITEM_CONFLICT, a success
 *   408, 429, 5xx, any 1xx/3xx, and the error types
 *        es_rejected_execution_exception and
 *        cluster_block_exception (a read-only index,
 *        e.g. after the disk flood stage, whatever
 *        status the engine version gives it)           -> ES_ITEM_RETRY, only that item
 *   any other 4xx (mapping and parsing errors, ...)    -> ES_ITEM_REJECTED: dead-letter it
 *                                                          with the server's reason
 * A body that cannot be read item by item (not JSON, no items array, an
 * item without a status) is an error: the caller retries the whole request
 * rather than guess.
 *
 * A truncate runs as a task: es_task_id_parse reads the task id of a
 * _delete_by_query started with wait_for_completion=false, es_task_parse
 * what GET /_tasks/<id> says of it. */
#ifndef PGCDC_CONSUMER_ES_RESPONSE_H
#define PGCDC_CONSUMER_ES_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#include <yajl/yajl_tree.h>

typedef enum es_item_class {
    ES_ITEM_OK,
    ES_ITEM_CONFLICT,
    ES_ITEM_RETRY,
    ES_ITEM_REJECTED,
} es_item_class;

typedef struct es_bulk_item {
    const char *action;      /* "index", "delete", "create" or "update" */
    int status;              /* HTTP status of the item */
    const char *index;       /* _index, or NULL */
    const char *id;          /* _id, or NULL */
    const char *error_type;  /* error.type, or NULL when no error */
    const char *reason;      /* error.reason, or NULL */
    const char *cause;       /* error.caused_by.reason, or NULL */
    es_item_class cls;
} es_bulk_item;

typedef struct es_bulk_result {
    yajl_val root;           /* owns every string above */
    bool errors;             /* the response's own "errors" flag */
    es_bulk_item *items;     /* in request order */
    size_t n;
    size_t count[4];         /* items per es_item_class */
} es_bulk_result;

/* Parses a _bulk response body (not NUL-terminated). Returns 0, or -1 with
 * err set: not JSON, too deep, a whole-request error ("the _bulk request
 * failed: <type>: <reason>"), no items array, an item that is not
 * {"<action>":{..,"status":N,..}}. On -1 *out needs no freeing. */
int es_bulk_parse(const char *body, size_t len, es_bulk_result *out, char *err, size_t errlen);
void es_bulk_result_free(es_bulk_result *r);

/* The field whose value made the engine refuse an item, from its reason or
 * cause: "failed to parse field [price] of type [float] ..." or "object
 * mapping for [attrs] tried to parse field [attrs] as object ...". Copies it
 * into field (NUL-terminated) and returns 1; returns 0 when the error names
 * no field (or the name does not fit in fieldlen). */
int es_refused_field(const es_bulk_item *it, char *field, size_t fieldlen);

/* The class of one item; error_type may be NULL. */
es_item_class es_classify(const char *action, int status, const char *error_type);

/* "ok", "conflict", "retry", "rejected". */
const char *es_item_class_name(es_item_class c);

/* Longest task id kept ("<node id>:<number>"). */
#define ES_TASK_ID_MAX 128

/* The task id of {"task":"<node>:<n>"}, copied into id. Returns 0, or -1
 * with err set (not JSON, no task, an id too long or with a character
 * other than letters, digits, '-', '_' and ':'; it goes into a URL path). */
int es_task_id_parse(const char *body, size_t len, char id[ES_TASK_ID_MAX + 1], char *err,
                     size_t errlen);

/* What GET /_tasks/<id> says of a _delete_by_query task. */
typedef enum es_task_state {
    ES_TASK_RUNNING,
    ES_TASK_DONE,          /* completed, nothing failed */
    ES_TASK_NO_INDEX,      /* completed with index_not_found_exception: nothing to delete */
    ES_TASK_FAILED,        /* completed, but with an error, failures, a timeout or a
                              cancellation: running it again may finish the job */
} es_task_state;

typedef struct es_task_status {
    es_task_state state;
    long long total, deleted;  /* documents found and deleted so far (status, or the
                                  response once completed); -1 when not given */
    char reason[512];          /* ES_TASK_FAILED: why, from the engine's words */
} es_task_status;

/* Parses a GET /_tasks/<id> answer. Returns 0, or -1 with err set (not
 * JSON, no "completed" flag). */
int es_task_parse(const char *body, size_t len, es_task_status *out, char *err, size_t errlen);

#endif
