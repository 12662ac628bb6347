/* sink_es.c: the Elasticsearch/OpenSearch sink: applies a batch of events
 * with _bulk (external versions = LSN), _mget for unchanged TOAST columns
 * and _delete_by_query for truncates. Sending the requests, failover and
 * retries of whole requests are es_http.c's; the documents and bodies are
 * es_bulk.c's; reading the answers is es_response.c's.
 *
 * What users see (docs/consumer-sinks.md): each table's name (es_index.h:
 * --es-index) is an alias of the physical index <name>_v1, both created in
 * one request the first time this process writes to a table whose name
 * does not exist, with the mapping es_mapping.c derives from the events'
 * column types ("dynamic":false) and the --es-mappings overrides
 * (docs/consumer-sinks.md "Index mappings"):
 * - one document per row, _id as es_doc_id() (es_bulk.h), _version = the
 *   LSN of the row's last change (version_type=external);
 *   _pgcdc_lsn holds the same number, as a long (Elasticsearch 7.10 has no
 *   unsigned_long; LSNs stay below 2^63 in practice);
 * - a column added by ALTER TABLE is added to the mapping (PUT _mapping)
 *   before the batch that first carries it is written;
 * - a deleted row is a document {"_pgcdc_deleted":true,"_pgcdc_lsn":N}
 *   (es_bulk.h says why) that the alias filters out, or with
 *   --es-deletes=delete an external-version delete, the index created with
 *   index.gc_deletes=ES_GC_DELETES;
 * - a TRUNCATE removes every document whose _pgcdc_lsn is below its LSN
 *   (rows and deleted markers alike) from the indices behind the alias.
 * Writes go through the alias, so they follow it when a rebuild moves it,
 * and are copied first into <name>_v<N+1> while that exists next to the
 * alias's <name>_v<N> (versions_check, es_rebuild.h: a rebuild); with
 * --es-index-version N they go to <name>_vN itself (the rebuild), and
 * --es-switch-alias then moves the alias (es_at_end).
 * Index settings (shards, replicas, analyzers) are the engine's defaults
 * unless --es-mappings gives them.
 *
 * Requests in flight: up to --es-concurrency lanes apply a batch's
 * partitions side by side, each with its own client (es_lane); the batch
 * is applied, and its offsets may be stored, once every lane is done.
 *
 * Retries: whole requests as es_http.h says; items of a _bulk that fail
 * alone (429, 5xx) are sent again alone.
 *
 * What can never succeed is not retried: an answer larger than its limit
 * (es_bulk.h: a request of several documents is split, a single document
 * is refused and dead-lettered), a _bulk item or request refused for good.
 *
 * Stops: every request first looks for a stop request, and one in flight
 * is abandoned within about a second of SIGTERM (libcurl's progress
 * callback); the batch then fails, so none of its offsets are stored and
 * it is applied again after a restart (every write is idempotent by LSN).
 * A truncate runs as a task of the engine that is polled, and cancelled on
 * a stop. */
#include "sink.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_buf.h"
#include "cdc_clock.h"
#include "cdc_config.h"
#include "cdc_log.h"
#include "cdc_metrics.h"
#include "cdc_signal.h"
#include "es_bulk.h"
#include "es_engine.h"
#include "es_http.h"
#include "es_index.h"
#include "es_mapping.h"
#include "es_rebuild.h"
#include "es_response.h"
#include "row_json.h"

#define SINK_NAME "es"
/* A truncate's task is polled every 50-100 ms at first, then about once a
 * second; its progress is logged every TASK_LOG_MS. */
#define TASK_POLL_MIN_MS 100
#define TASK_POLL_MAX_MS 1000
#define TASK_LOG_MS 30000

/* How long a real delete is remembered (--es-deletes=delete): Kafka's
 * default retention, so that a replay of all a default topic holds cannot
 * bring a deleted row back while the engine keeps its version map. */
#define ES_GC_DELETES "7d"

/* What the sink knows of one table's index. */
typedef struct es_table {
    struct es_table *next;
    char *schema, *table;
    char *name;             /* the name readers use (es_index.h): an alias */
    char *index;            /* what writes go to: the alias, a physical index */
    bool aliased;           /* index is the alias (truncate resolves it) */
    bool ensured;           /* created, or found existing, by this process */
    bool warned_nokey;
    /* The last truncate applied to the index and whether anything was
     * written since: the same truncate arrives once per partition. */
    bool truncated;
    uint64_t truncate_lsn;
    es_mapping_known known; /* the columns mapped so far (es_mapping.h) */
    /* Writing through the alias (versions_check): what is known of the
     * versions (es_index.h), <name>_v<N+1> while it exists (a rebuild:
     * every write is copied there first), when that was last asked, and
     * when a refusal of the question was last logged. */
    es_versions versions;
    char *copy_to;
    int64_t asked_ms;
    int64_t refusal_logged_ms;
    /* --es-switch-alias: when this process made or found <name>_v<N>. */
    int64_t made_ms;
} es_table;

typedef struct es_sink {
    sink base;
    es_http http;
    size_t nlanes;          /* --es-concurrency */
    struct es_sink *views;  /* lanes 1..nlanes-1 (es_lane), each with its own client */
    es_index_rules *names;
    unsigned version;       /* --es-index-version: write to <name>_v<N>; 0: the alias */
    bool switch_alias;      /* --es-switch-alias */
    int64_t ends_at_ms;     /* when es_at_end last sent the consumer for end offsets */
    bool real_deletes;      /* --es-deletes=delete */
    es_table *tables;
    es_table *last_table;
    size_t budget;          /* bytes of one request (es_request_budget) */
    size_t mget_doc_bytes;  /* bytes an _mget document is thought to take */
    bool engine_known;      /* GET / answered: `engine` is set */
    es_engine engine;
    es_mapping_overrides *overrides;  /* --es-mappings */
    cdc_metric *m_conflicts;
} es_sink;

/* One c/u/r/d record of a segment (the records between two truncates). */
typedef struct es_item {
    consumer_record *rec;
    es_table *t;
    const char *index;      /* written to: t->index, or t->copy_to for a copy */
    size_t id_off;          /* into the segment's ids buffer */
    long prev;              /* earlier item of the same row in the segment, or -1 */
    long mget;              /* index into the chunk's _mget request, or -1 */
    size_t line_off, line_len;  /* action and document lines in the chunk's body */
    size_t doc_off;         /* the document line alone, within that body */
    bool done;              /* applied, refused or skipped */
    char **unindexed;       /* columns whose value the index refused */
    size_t n_unindexed;
} es_item;

/* ---- tables and indices ---------------------------------------------- */

static void table_free(es_table *t)
{
    if (!t)
        return;
    free(t->schema);
    free(t->table);
    free(t->name);
    free(t->index);
    free(t->copy_to);
    es_mapping_known_free(&t->known);
    free(t);
}

static es_table *table_get(es_sink *s, const char *schema, const char *table, char *err,
                           size_t errlen)
{
    es_table *t = s->last_table;
    if (t && strcmp(t->table, table) == 0 && strcmp(t->schema, schema) == 0)
        return t;
    for (t = s->tables; t; t = t->next)
        if (strcmp(t->table, table) == 0 && strcmp(t->schema, schema) == 0)
            return s->last_table = t;
    cdc_buf name = CDC_BUF_INIT, index = CDC_BUF_INIT;
    bool changed = false;
    t = calloc(1, sizeof *t);
    if (!t || !(t->schema = strdup(schema)) || !(t->table = strdup(table)) ||
        es_index_rules_name(s->names, schema, table, &name, &changed) < 0 || !name.data ||
        (s->version ? es_index_physical(name.data, s->version, &index)
                    : cdc_buf_puts(&index, name.data)) < 0) {
        cdc_buf_free(&name);
        cdc_buf_free(&index);
        table_free(t);
        snprintf(err, errlen, "cannot name the index of %s.%s: out of memory", schema, table);
        return NULL;
    }
    t->name = cdc_buf_steal(&name);
    t->index = cdc_buf_steal(&index);
    if (changed)
        cdc_log_info("table %s.%s goes to index %s (its name from --es-index or "
                     "--es-index-prefix is not a valid index name)", schema, table, t->name);
    t->next = s->tables;
    s->tables = t;
    return s->last_table = t;
}

/* How index_create went. */
typedef enum create_end {
    CREATE_DONE,        /* created */
    CREATE_EXISTS,      /* an index of that name exists */
    CREATE_NAME_TAKEN,  /* the alias: an index has its name (made before pgcdc used aliases) */
    CREATE_FAILED,      /* anything else: warned, writing anyway */
} create_end;

/* PUT /<index> with pgcdc's mapping and, when alias is not NULL, that
 * alias (filtered with deleted markers) in the same request: the engine
 * creates both or neither. Returns 0 with *end, or -1 on a stop. */
static int index_create(es_sink *s, es_table *t, yajl_val types, const char *index,
                        const char *alias, create_end *end, char *err, size_t errlen)
{
    cdc_buf path = CDC_BUF_INIT, what = CDC_BUF_INIT, body = CDC_BUF_INIT;
    cdc_buf mapping = CDC_BUF_INIT;
    int rc = -1;
    *end = CREATE_FAILED;
    if (es_mapping_index_body(s->engine, types, s->overrides, t->schema, t->table, &t->known,
                              &mapping, err, errlen) < 0)
        goto done;
    if (es_path_put_index(&path, index) < 0 ||
        cdc_buf_printf(&what, "create index %s for %s.%s", index, t->schema, t->table) < 0 ||
        (alias ? es_index_create_body(mapping.data, alias, !s->real_deletes, &body)
               : cdc_buf_append(&body, mapping.data, mapping.len)) < 0) {
        snprintf(err, errlen, "cannot create index %s: out of memory", index);
        goto done;
    }
    es_req r = {.method = "PUT", .path = path.data, .body = body.data, .len = body.len,
                .what = what.data, .timeout_ms = ES_REQUEST_TIMEOUT_MS};
    unsigned attempt = 0;
    long status = 0;
    char excerpt[ES_EXCERPT_MAX + 1], big[512];
    int sent = es_http_send(&s->http, &r, &attempt, &status, big, sizeof big);
    const char *resp = s->http.resp.data ? s->http.resp.data : "";
    *end = CREATE_FAILED;
    if (sent < 0) {
        snprintf(err, errlen, "%s", big);
        goto done;
    }
    if (sent == ES_TOO_LARGE) {
        cdc_log_warn("%s; writing anyway", big);
    } else if (status >= 200 && status < 300) {
        cdc_log_info("created index %s%s%s for %s.%s", index, alias ? " behind alias " : "",
                     alias ? alias : "", t->schema, t->table);
        *end = CREATE_DONE;
    } else if (strstr(resp, "resource_already_exists_exception")) {
        cdc_log_debug("index %s exists", index);
        *end = CREATE_EXISTS;
    } else if (alias && strstr(resp, "invalid_alias_name_exception")) {
        *end = CREATE_NAME_TAKEN;
    } else {
        /* Not fatal: the _bulk may still create it (auto_create_index) or
         * say per item why it cannot. */
        cdc_counter_add(s->m_conflicts, 1);
        cdc_log_warn("PUT %s/%s (create index for %s.%s): HTTP %ld: %s; writing anyway",
                     es_http_where(&s->http), index, t->schema, t->table, status,
                     es_http_excerpt(&s->http, excerpt, sizeof excerpt));
    }
    if (*end == CREATE_DONE && s->real_deletes) {
        /* Deletes are remembered for gc_deletes only: as long as a replay
         * may go back (docs/consumer-sinks.md). Set once, at creation, so
         * that an operator's later change stays. */
        cdc_buf_reset(&path);
        cdc_buf_reset(&what);
        if (es_path_put_index(&path, index) < 0 || cdc_buf_puts(&path, "/_settings") < 0 ||
            cdc_buf_printf(&what, "set index.gc_deletes of index %s", index) < 0) {
            snprintf(err, errlen, "cannot set up index %s: out of memory", index);
            goto done;
        }
        static const char settings[] = "{\"index\":{\"gc_deletes\":\"" ES_GC_DELETES "\"}}";
        es_req g = {.method = "PUT", .path = path.data, .body = settings,
                    .len = sizeof settings - 1, .what = what.data,
                    .timeout_ms = ES_REQUEST_TIMEOUT_MS};
        sent = es_http_send(&s->http, &g, &attempt, &status, big, sizeof big);
        if (sent < 0) {
            snprintf(err, errlen, "%s", big);
            goto done;
        }
        if (sent != 0 || status < 200 || status >= 300)
            cdc_log_warn("PUT %s%s (%s): HTTP %ld: %s; deletes are remembered for the engine's "
                         "default time only", es_http_where(&s->http), path.data, what.data,
                         status, es_http_excerpt(&s->http, excerpt, sizeof excerpt));
    }
    rc = 0;
done:
    cdc_buf_free(&path);
    cdc_buf_free(&what);
    cdc_buf_free(&body);
    cdc_buf_free(&mapping);
    return rc;
}

/* Which engine the sink talks to (GET /, once, es_engine.c): the mapping of
 * json columns differs. Returns 0, or -1 on a stop. */
static int engine_ensure(es_sink *s, char *err, size_t errlen)
{
    if (s->engine_known)
        return 0;
    if (es_engine_detect(&s->http, &s->engine, err, errlen) < 0)
        return -1;
    s->engine_known = true;
    return 0;
}

/* A column that `types` has and the index's mapping has not (ALTER TABLE
 * ADD COLUMN, or an index made before) is added with PUT _mapping through
 * the name writes use; a column whose type changed is reported and
 * counted (a mapping cannot change a field's type; its values that do not
 * fit stay unindexed in _source thanks to ignore_malformed). Never fatal.
 * Returns 0, or -1 on a stop. */
static int mapping_extend(es_sink *s, es_table *t, yajl_val types, char *err, size_t errlen)
{
    cdc_buf path = CDC_BUF_INIT, what = CDC_BUF_INIT, body = CDC_BUF_INIT;
    cdc_buf changed = CDC_BUF_INIT;
    int rc = -1;
    if (es_mapping_extend(s->engine, types, s->overrides, t->schema, t->table, &t->known, &body,
                          &changed, err, errlen) < 0)
        goto done;
    if (changed.len) {
        cdc_counter_add(s->m_conflicts, 1);
        cdc_log_warn("index %s (%s.%s): column type changed, the index keeps the old field type "
                     "(values that do not fit it stay unindexed in _source; rebuild the index to "
                     "index them): %s", t->index, t->schema, t->table, changed.data);
    }
    /* The index readers see, and the next version while it is copied to. */
    const char *targets[2] = {t->index, t->copy_to};
    for (size_t k = 0; body.len && k < 2 && targets[k]; k++) {
        const char *index = targets[k];
        cdc_buf_reset(&path);
        cdc_buf_reset(&what);
        if (es_path_put_index(&path, index) < 0 || cdc_buf_puts(&path, "/_mapping") < 0 ||
            cdc_buf_printf(&what, "extend the mapping of index %s", index) < 0) {
            snprintf(err, errlen, "cannot extend the mapping of %s: out of memory", index);
            goto done;
        }
        es_req r = {.method = "PUT", .path = path.data, .body = body.data, .len = body.len,
                    .what = what.data, .timeout_ms = ES_REQUEST_TIMEOUT_MS};
        unsigned attempt = 0;
        long status = 0;
        char big[512], excerpt[ES_EXCERPT_MAX + 1];
        int sent = es_http_send(&s->http, &r, &attempt, &status, big, sizeof big);
        if (sent < 0) {
            snprintf(err, errlen, "%s", big);
            goto done;
        }
        if (sent == 0 && status >= 200 && status < 300) {
            cdc_log_info("index %s (%s.%s): mapping extended: %s", index, t->schema, t->table,
                         body.data);
        } else {
            cdc_counter_add(s->m_conflicts, 1);
            cdc_log_warn("index %s (%s.%s): the engine refused new fields: HTTP %ld: %s",
                         index, t->schema, t->table, status,
                         sent == 0 ? es_http_excerpt(&s->http, excerpt, sizeof excerpt) : big);
        }
    }
    rc = 0;
done:
    cdc_buf_free(&path);
    cdc_buf_free(&what);
    cdc_buf_free(&body);
    cdc_buf_free(&changed);
    return rc;
}

/* Whether `name` is an alias (GET /_alias/<name>). Returns 1, 0, or -1 on
 * a stop. */
static int alias_exists(es_sink *s, const char *name, char *err, size_t errlen)
{
    cdc_buf path = CDC_BUF_INIT;
    int rc = -1;
    if (cdc_buf_puts(&path, "/_alias") < 0 || es_path_put_index(&path, name) < 0) {
        snprintf(err, errlen, "cannot look up alias %s: out of memory", name);
        goto done;
    }
    es_req r = {.method = "GET", .path = path.data, .what = "look up an alias",
                .timeout_ms = ES_REQUEST_TIMEOUT_MS};
    unsigned attempt = 0;
    long status = 0;
    char big[512], excerpt[ES_EXCERPT_MAX + 1];
    int sent = es_http_send(&s->http, &r, &attempt, &status, big, sizeof big);
    if (sent < 0) {
        snprintf(err, errlen, "%s", big);
        goto done;
    }
    rc = sent == 0 && status == 200;
    if (sent == 0 && status != 200 && status != 404)
        cdc_log_warn("GET %s%s: HTTP %ld: %s; taking it as no alias", es_http_where(&s->http),
                     path.data, status, es_http_excerpt(&s->http, excerpt, sizeof excerpt));
done:
    cdc_buf_free(&path);
    return rc;
}

/* After index_create: an index this process did not create (an earlier
 * run's, the user's, a template's) may lack columns added since, so all
 * are offered to it. A failed creation is not retried: its mapping is
 * taken as known, and the _bulk says per item what went wrong. */
static int index_ensured(es_sink *s, es_table *t, yajl_val types, create_end end, char *err,
                         size_t errlen)
{
    t->ensured = true;
    if (end == CREATE_DONE || end == CREATE_FAILED)
        return 0;
    es_mapping_known_free(&t->known);
    return mapping_extend(s, t, types, err, errlen);
}

/* Makes t's index ready once per process (es_index.h: aliases). With
 * --es-index-version N the physical index <name>_vN is created unless it
 * exists, and written to directly (a rebuild). Otherwise writes go through
 * the alias <name>: when it is missing, <name>_v1 and the alias are
 * created together. An index that exists (made by an earlier run, by the
 * user, or by a template) is left as it is; one that has the alias's name
 * (pgcdc before aliases) is written to as before. After that, a record
 * whose column types differ from what is mapped extends the mapping
 * (mapping_extend). Returns 0, or -1 on a stop. */
static int index_ensure(es_sink *s, es_table *t, yajl_val types, char *err, size_t errlen)
{
    if (t->ensured)
        return es_mapping_unchanged(&t->known, types) ? 0
                                                       : mapping_extend(s, t, types, err, errlen);
    if (engine_ensure(s, err, errlen) < 0)
        return -1;
    create_end end;
    if (s->version) {
        if (index_create(s, t, types, t->index, NULL, &end, err, errlen) < 0)
            return -1;
        t->made_ms = cdc_clock_mono_ms();
        return index_ensured(s, t, types, end, err, errlen);
    }
    int is_alias = alias_exists(s, t->name, err, errlen);
    if (is_alias < 0)
        return -1;
    if (!is_alias) {
        cdc_buf v1 = CDC_BUF_INIT;
        if (es_index_physical(t->name, 1, &v1) < 0) {
            snprintf(err, errlen, "cannot name the index of %s: out of memory", t->name);
            cdc_buf_free(&v1);
            return -1;
        }
        int rc = index_create(s, t, types, v1.data, t->name, &end, err, errlen);
        if (rc == 0 && end == CREATE_EXISTS && (rc = is_alias = alias_exists(s, t->name, err,
                                                                            errlen)) == 0) {
            /* <name>_v1 without the alias: someone removed it. Writing to
             * <name> would create an index of that name. */
            cdc_log_warn("index %s exists but alias %s does not: writing to %s; add the alias "
                         "(docs/consumer-sinks.md) for readers", v1.data, t->name, v1.data);
            free(t->index);
            t->index = cdc_buf_steal(&v1);
        }
        cdc_buf_free(&v1);
        if (rc < 0)
            return -1;
        is_alias = is_alias || end == CREATE_DONE;
        if (end == CREATE_NAME_TAKEN)
            cdc_log_warn("%s.%s: %s is an index, not an alias (made before pgcdc wrote through "
                         "aliases): writing to it as before; rebuild it behind an alias to "
                         "rebuild without downtime later (docs/consumer-sinks.md)", t->schema,
                         t->table, t->name);
    } else {
        end = CREATE_EXISTS;
    }
    t->aliased = is_alias > 0 && strcmp(t->index, t->name) == 0;
    return index_ensured(s, t, types, end, err, errlen);
}

/* How often a refusal of the question about versions is logged again
 * while it lasts. */
#define ES_REFUSAL_LOG_MS 60000

/* A consumer writing through the alias copies every write of the table
 * into <name>_v<N+1> while that exists (a rebuild, es_rebuild.h): it asks
 * which version readers see and whether the next one exists at most once
 * per ES_NEXT_TTL_MS, before each batch is built. A refused question
 * keeps what was known (es_versions_update) and is logged as an error.
 * Returns 0, or -1 on a stop. */
static int versions_check(es_sink *s, es_table *t, char *err, size_t errlen)
{
    int64_t now = cdc_clock_mono_ms();
    if (s->version || (t->asked_ms && now - t->asked_ms < ES_NEXT_TTL_MS))
        return 0;
    /* Stamped before asking: the answer is at least as new as this. */
    t->asked_ms = now;
    es_versions answer = {0}, was = t->versions;
    char refused[1024];
    int asked = es_rebuild_versions(&s->http, t->name, &answer, refused, sizeof refused, err,
                                    errlen);
    if (asked < 0)
        return -1;
    unsigned changed = es_versions_update(&t->versions, asked == 0 ? &answer : NULL);
    const es_versions *v = &t->versions;
    if (asked > 0 && ((changed & ES_VERSIONS_REFUSED) ||
                      now - t->refusal_logged_ms >= ES_REFUSAL_LOG_MS)) {
        t->refusal_logged_ms = now;
        if (t->copy_to)
            cdc_log_error("%s.%s: cannot tell whether a rebuild's next version of %s exists (%s); "
                          "still copying every write into index %s, as last known",
                          t->schema, t->table, t->name, refused, t->copy_to);
        else
            cdc_log_error("%s.%s: cannot tell whether a rebuild's next version of %s exists (%s); "
                          "copying into none, as last known: do not move alias %s to another "
                          "index until this is mended (docs/consumer-sinks.md)",
                          t->schema, t->table, t->name, refused, t->name);
    }
    if (changed & ES_VERSIONS_ANSWERED)
        cdc_log_info("%s.%s: the versions of %s are known again", t->schema, t->table, t->name);
    if (changed & ES_VERSIONS_MOVED)
        cdc_log_info("alias %s is on %s_v%u now (was %s_v%u)", t->name, t->name, v->current,
                     t->name, was.current);
    cdc_buf next = CDC_BUF_INIT;
    if (v->next_exists && v->current && es_index_physical(t->name, v->current + 1, &next) < 0) {
        cdc_buf_free(&next);
        snprintf(err, errlen, "cannot name the next version of %s: out of memory", t->name);
        return -1;
    }
    if (changed & ES_VERSIONS_COPY_STOP)
        cdc_log_info("%s.%s: no longer copying writes into index %s", t->schema, t->table,
                     t->copy_to);
    if (changed & ES_VERSIONS_COPY_START)
        cdc_log_info("%s.%s: index %s exists (a rebuild): every write goes there too, before the "
                     "write through alias %s, until the alias moves", t->schema, t->table,
                     next.data, t->name);
    if (changed & (ES_VERSIONS_COPY_START | ES_VERSIONS_COPY_STOP)) {
        free(t->copy_to);
        t->copy_to = next.data ? cdc_buf_steal(&next) : NULL;
    }
    cdc_buf_free(&next);
    return 0;
}

/* ---- truncate -------------------------------------------------------- */

/* Appends "/<index>[,<index>...]" to path: the indices behind `name` when
 * it is an alias, else name itself. A _delete_by_query through an alias
 * that filters out deleted markers would leave them. Returns 1, 0 (out of
 * memory), or -1 with err on a stop. */
static int path_put_physical(es_sink *s, cdc_buf *path, const char *name, char *err,
                             size_t errlen)
{
    cdc_buf get = CDC_BUF_INIT, names = CDC_BUF_INIT;
    int rc = 0;
    if (cdc_buf_puts(&get, "/_alias") < 0 || es_path_put_index(&get, name) < 0)
        goto done;
    es_req r = {.method = "GET", .path = get.data, .what = "look up an alias",
                .timeout_ms = ES_REQUEST_TIMEOUT_MS};
    unsigned attempt = 0;
    long status = 0;
    char why[512];
    size_t n = 0;
    int sent = es_http_send(&s->http, &r, &attempt, &status, why, sizeof why);
    if (sent < 0) {
        snprintf(err, errlen, "%s", why);
        rc = -1;
        goto done;
    }
    if (sent != 0 || status != 200 ||
        es_alias_indices(s->http.resp.data, s->http.resp.len, &names, &n, why, sizeof why) < 0) {
        if (sent == 0 && status == 200)
            cdc_log_warn("GET %s%s: %s; truncating %s itself", es_http_where(&s->http), get.data,
                         why, name);
        rc = es_path_put_index(path, name) < 0 ? 0 : 1;
        goto done;
    }
    const char *one = names.data;
    for (size_t i = 0; i < n; i++, one += strlen(one) + 1) {
        size_t mark = path->len;
        if (es_path_put_index(path, one) < 0)
            goto done;
        if (i > 0)
            path->data[mark] = ','; /* "/a" then ",b" */
    }
    rc = 1;
done:
    cdc_buf_free(&get);
    cdc_buf_free(&names);
    return rc;
}

/* Appends ",<index>" to a path of indices; nothing when index is NULL.
 * Returns 0 or -1 (memory). */
static int path_put_also(cdc_buf *path, const char *index)
{
    size_t mark = path->len;
    if (!index || mark == 0)
        return 0;
    if (es_path_put_index(path, index) < 0)
        return -1;
    path->data[mark] = ',';
    return 0;
}

/* How a truncate's task ended (task_wait). */
typedef enum task_end {
    TASK_ENDED,        /* completed: see the status */
    TASK_LOST,         /* the engine no longer knows it (its node restarted) */
    TASK_STOPPED,      /* a stop was requested: cancelled */
} task_end;

/* Polls the task until it completes. On a stop the task is cancelled: the
 * batch is not stored, so the truncate runs again after a restart, and
 * what this one deleted stays deleted. */
static task_end task_wait(es_sink *s, const char *task, const char *what, es_task_status *st,
                          char *err, size_t errlen)
{
    cdc_buf path = CDC_BUF_INIT, cancel = CDC_BUF_INIT;
    task_end end = TASK_STOPPED;
    unsigned attempt = 0, poll = 0;
    int64_t log_at = cdc_clock_mono_ms() + TASK_LOG_MS;
    if (cdc_buf_printf(&path, "/_tasks/%s", task) < 0 ||
        cdc_buf_printf(&cancel, "/_tasks/%s/_cancel", task) < 0) {
        snprintf(err, errlen, "cannot wait for task %s (%s): out of memory", task, what);
        goto done;
    }
    for (;;) {
        if (!sink_backoff(poll < 5 ? poll++ : 5, TASK_POLL_MIN_MS, TASK_POLL_MAX_MS))
            goto stopped;
        es_req r = {.method = "GET", .path = path.data, .what = what,
                    .timeout_ms = ES_REQUEST_TIMEOUT_MS};
        long status = 0;
        char why[1024], perr[512], excerpt[ES_EXCERPT_MAX + 1];
        int rc = es_http_send(&s->http, &r, &attempt, &status, why, sizeof why);
        if (rc < 0)
            goto stopped;
        if (rc == 0 && status == 404) {
            cdc_log_warn("GET %s%s (%s): the engine no longer knows the task: %s", es_http_where(&s->http),
                         path.data, what, es_http_excerpt(&s->http, excerpt, sizeof excerpt));
            end = TASK_LOST;
            goto done;
        }
        if (rc == 0 && status == 200 &&
            es_task_parse(s->http.resp.data, s->http.resp.len, st, perr, sizeof perr) == 0) {
            attempt = 0;
            if (st->state != ES_TASK_RUNNING) {
                end = TASK_ENDED;
                goto done;
            }
            if (cdc_clock_mono_ms() >= log_at) {
                cdc_log_info("%s: task %s has deleted %lld of %lld document(s) so far", what, task,
                             st->deleted, st->total);
                log_at = cdc_clock_mono_ms() + TASK_LOG_MS;
            }
            continue;
        }
        if (rc == 0)
            snprintf(why, sizeof why, "GET %s%s (%s): HTTP %ld: %s", es_http_where(&s->http), path.data,
                     what, status, status == 200 ? perr : es_http_excerpt(&s->http, excerpt, sizeof excerpt));
        if (!es_http_retry_wait(&s->http, &attempt, false, why))
            goto stopped;
    }
stopped:
    es_http_once(&s->http, "POST", cancel.data, what, true);
    snprintf(err, errlen, "stop requested during the %s (task %s cancelled; the truncate runs "
             "again after a restart)", what, task);
done:
    cdc_buf_free(&path);
    cdc_buf_free(&cancel);
    return end;
}

/* Removes the table's documents older than the truncate: a refresh first,
 * because _delete_by_query only sees what a refresh has made searchable,
 * and documents of this table written just before must go too. A 404
 * (no such index) means there is nothing to remove. The deletion runs as
 * a task of the engine (wait_for_completion=false), polled: it may take
 * far longer than a request should, and a stop must be heard meanwhile. A
 * task that fails or is lost is started again: deleting what is older
 * than the truncate twice is harmless. */
static int apply_truncate(es_sink *s, consumer_record *rec, char *err, size_t errlen)
{
    const cdc_decoded_event *ev = &rec->ev;
    es_table *t = table_get(s, ev->schema, ev->table, err, errlen);
    if (!t)
        return -1;
    if (t->truncated && t->truncate_lsn >= ev->lsn) {
        /* The same truncate from another partition, nothing written since. */
        s->base.applied++;
        return 0;
    }
    if (versions_check(s, t, err, errlen) < 0)
        return -1;
    cdc_buf path = CDC_BUF_INIT, body = CDC_BUF_INIT, what = CDC_BUF_INIT, done_path = CDC_BUF_INIT;
    int rc = -1;
    unsigned attempt = 0;
    char excerpt[ES_EXCERPT_MAX + 1], why[1024], task[ES_TASK_ID_MAX + 1];
    /* A rebuild's next version (versions_check) is truncated in the same
     * requests; it may be gone by now (ignore_unavailable). */
    const char *copy = t->copy_to ? "?ignore_unavailable=true" : "";
    if (cdc_buf_printf(&what, "truncate of %s.%s at lsn %" PRIu64 " in index %s%s%s", ev->schema,
                       ev->table, ev->lsn, t->index, t->copy_to ? " and " : "",
                       t->copy_to ? t->copy_to : "") < 0 ||
        es_truncate_body(ev->lsn, &body) < 0) {
        snprintf(err, errlen, "cannot apply the truncate of %s.%s: out of memory", ev->schema,
                 ev->table);
        goto done;
    }
    for (;;) {
        long status = 0;
        cdc_buf_reset(&path);
        if (es_path_put_index(&path, t->index) < 0 || path_put_also(&path, t->copy_to) < 0 ||
            cdc_buf_puts(&path, "/_refresh") < 0 || cdc_buf_puts(&path, copy) < 0)
            goto nomem;
        es_req refresh = {.method = "POST", .path = path.data, .what = what.data,
                          .timeout_ms = ES_REQUEST_TIMEOUT_MS};
        int sent = es_http_send(&s->http, &refresh, &attempt, &status, why, sizeof why);
        if (sent < 0)
            goto stopped;
        if (sent == ES_TOO_LARGE)
            goto refused;
        if (status == 404 && s->http.resp.data && strstr(s->http.resp.data, "index_not_found_exception"))
            goto no_index;
        cdc_buf_reset(&path);
        int found = path_put_physical(s, &path, t->index, err, errlen);
        if (found < 0)
            goto done;
        if (found == 0 || path_put_also(&path, t->copy_to) < 0 ||
            cdc_buf_puts(&path, "/_delete_by_query?conflicts=proceed&refresh=true"
                                "&wait_for_completion=false") < 0 ||
            (t->copy_to && cdc_buf_puts(&path, "&ignore_unavailable=true") < 0))
            goto nomem;
        /* Its answer names the task a stop must cancel: awaited a while after
         * a stop, so that the task is not left running for minutes. */
        es_req dbq = {.method = "POST", .path = path.data, .body = body.data, .len = body.len,
                      .what = what.data, .timeout_ms = ES_REQUEST_TIMEOUT_MS,
                      .stop_grace_ms = 5000};
        sent = es_http_send(&s->http, &dbq, &attempt, &status, why, sizeof why);
        if (sent < 0)
            goto stopped;
        if (sent == ES_TOO_LARGE)
            goto refused;
        if (status == 404 && s->http.resp.data && strstr(s->http.resp.data, "index_not_found_exception"))
            goto no_index;
        if (status < 200 || status >= 300) {
            /* Any other answer is about this request itself (a bad query, a
             * field mapped otherwise by the user): retrying cannot help. */
            snprintf(why, sizeof why, "%s refused: HTTP %ld: %s", what.data, status,
                     es_http_excerpt(&s->http, excerpt, sizeof excerpt));
            goto refused;
        }
        char perr[512];
        if (es_task_id_parse(s->http.resp.data, s->http.resp.len, task, perr, sizeof perr) < 0) {
            snprintf(why, sizeof why, "POST %s%s (%s): %s", es_http_where(&s->http), path.data,
                     what.data, perr);
            if (!es_http_retry_wait(&s->http, &attempt, false, why))
                goto stopped;
            continue;
        }
        cdc_log_debug("%s: task %s started", what.data, task);
        es_task_status st;
        task_end end = task_wait(s, task, what.data, &st, err, errlen);
        if (end == TASK_STOPPED)
            goto done;
        if (end == TASK_ENDED) {
            /* The engine keeps a finished task's result in its .tasks index
             * until told otherwise. */
            cdc_buf_reset(&done_path);
            if (cdc_buf_printf(&done_path, "/.tasks/_doc/%s", task) < 0)
                goto nomem;
            es_http_once(&s->http, "DELETE", done_path.data, what.data, false);
            if (st.state == ES_TASK_NO_INDEX)
                goto no_index;
            if (st.state == ES_TASK_DONE) {
                cdc_log_info("truncate of %s.%s at lsn %" PRIu64 ": %lld document(s) removed "
                             "from index %s", ev->schema, ev->table, ev->lsn, st.deleted, t->index);
                break;
            }
            snprintf(why, sizeof why, "%s: task %s: %s", what.data, task, st.reason);
        } else {
            snprintf(why, sizeof why, "%s: task %s was lost", what.data, task);
        }
        if (!es_http_retry_wait(&s->http, &attempt, end == TASK_ENDED, why))
            goto stopped;
    }
    goto applied;
no_index:
    cdc_log_info("truncate of %s.%s at lsn %" PRIu64 ": index %s does not exist", ev->schema,
                 ev->table, ev->lsn, t->index);
applied:
    t->truncated = true;
    t->truncate_lsn = ev->lsn;
    s->base.applied++;
    rc = 0;
    goto done;
refused:
    cdc_log_error("%s; retrying cannot succeed: dead-lettering the truncate", why);
    if (sink_reject_record(rec, SINK_NAME, why) < 0)
        goto nomem;
    s->base.rejected++;
    rc = 0;
    goto done;
stopped:
    snprintf(err, errlen, "stop requested during the %s", what.data);
    goto done;
nomem:
    snprintf(err, errlen, "cannot apply the truncate of %s.%s: out of memory", ev->schema,
             ev->table);
done:
    cdc_buf_free(&path);
    cdc_buf_free(&body);
    cdc_buf_free(&what);
    cdc_buf_free(&done_path);
    return rc;
}

/* ---- c/u/r/d segments ------------------------------------------------ */

/* The records between two truncates, applied in chunks (es_bulk.h: request
 * sizes): ids and plan for the whole segment, the rest for the chunk being
 * applied. */
typedef struct segment {
    es_item *items;
    es_chunk_item *plan;    /* by item */
    size_t n;
    cdc_buf ids;
    cdc_buf body;           /* the chunk's bulk lines */
    es_mget_result mget;    /* the chunk's stored documents */
    yajl_val *prev_docs;    /* parsed documents of the chunk's items, by item */
    size_t *todo, *sizes;   /* items to send, and their sizes */
} segment;

/* Forgets what the chunk items[from..to) held. */
static void chunk_reset(segment *g, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (g->prev_docs[i]) {
            yajl_tree_free(g->prev_docs[i]);
            g->prev_docs[i] = NULL;
        }
    cdc_buf_reset(&g->body);
    es_mget_result_free(&g->mget);
}

static void segment_free(segment *g)
{
    if (g->prev_docs)
        chunk_reset(g, 0, g->n);
    for (size_t i = 0; g->items && i < g->n; i++) {
        for (size_t k = 0; k < g->items[i].n_unindexed; k++)
            free(g->items[i].unindexed[k]);
        free(g->items[i].unindexed);
    }
    free(g->prev_docs);
    free(g->items);
    free(g->plan);
    free(g->todo);
    free(g->sizes);
    cdc_buf_free(&g->ids);
    cdc_buf_free(&g->body);
    es_mget_result_free(&g->mget);
}

static const char *item_id(const segment *g, const es_item *it)
{
    return g->ids.data + it->id_off;
}

static int reject(es_sink *s, es_item *it, const char *reason, char *err, size_t errlen)
{
    if (sink_reject_record(it->rec, SINK_NAME, reason) < 0) {
        snprintf(err, errlen, "cannot record a rejected document: out of memory");
        return -1;
    }
    s->base.rejected++;
    it->done = true;
    return 0;
}

/* Fetches the stored documents of the chunk items[from..to) that merge
 * unchanged TOAST columns and have no earlier record of their row in the
 * chunk (es_chunk_fetches). An answer of several documents may take
 * s->budget bytes: a longer one returns ES_TOO_LARGE, and the caller
 * makes the chunk smaller. A single document longer than RESPONSE_MAX can
 * never be read: its record is refused. Returns 0, ES_TOO_LARGE, or -1
 * with err (a stop, no memory). */
static int fetch_toast(es_sink *s, segment *g, size_t from, size_t to, char *err, size_t errlen)
{
    size_t nm = 0;
    for (size_t i = from; i < to; i++) {
        es_item *it = &g->items[i];
        it->mget = -1;
        if (!it->done && es_chunk_fetches(g->plan, i, from))
            it->mget = (long)nm++;
    }
    if (nm == 0)
        return 0;
    es_mget_doc *docs = calloc(nm, sizeof *docs);
    es_item *only = NULL;
    cdc_buf body = CDC_BUF_INIT, what = CDC_BUF_INIT;
    int rc = -1;
    if (!docs)
        goto nomem;
    for (size_t i = from; i < to; i++) {
        es_item *it = &g->items[i];
        if (it->mget < 0)
            continue;
        es_mget_doc *d = &docs[it->mget];
        d->index = it->t->index;
        d->id = item_id(g, it);
        d->fields = (const char *const *)it->rec->ev.unchanged_toast;
        d->nfields = it->rec->ev.n_unchanged_toast;
        only = it;
    }
    if (es_mget_body(docs, nm, &body) < 0 ||
        cdc_buf_printf(&what, "_mget of %zu document(s) for unchanged TOAST columns, first in "
                       "index %s", nm, docs[0].index) < 0)
        goto nomem;
    es_req r = {.method = "POST", .path = "/_mget", .body = body.data, .len = body.len,
                .what = what.data, .timeout_ms = ES_REQUEST_TIMEOUT_MS,
                .resp_max = nm > 1 ? s->budget : 0};
    unsigned attempt = 0;
    for (;;) {
        long status = 0;
        char why[1024], perr[512], excerpt[ES_EXCERPT_MAX + 1];
        int sent = es_http_send(&s->http, &r, &attempt, &status, why, sizeof why);
        if (sent < 0) {
            snprintf(err, errlen, "%s", why);
            goto done;
        }
        if (sent == ES_TOO_LARGE && nm > 1) {
            /* Cut off: so many documents take more than the budget. */
            s->mget_doc_bytes = s->budget / (nm / 2) + 1;
            cdc_log_info("%s; asking for at most %zu at a time", why,
                         es_mget_docs_per_request(s->budget, s->mget_doc_bytes));
            rc = ES_TOO_LARGE;
            goto done;
        }
        if (sent == ES_TOO_LARGE) {
            char reason[1536];
            snprintf(reason, sizeof reason, "%s: the stored document of id %s in index %s is too "
                     "large to be read, so the unchanged TOAST columns of lsn %" PRIu64 " can "
                     "never be merged", why, item_id(g, only), only->t->index, only->rec->ev.lsn);
            cdc_log_error("%s; retrying cannot succeed: dead-lettering the record", reason);
            if (reject(s, only, reason, err, errlen) < 0)
                goto done;
            only->mget = -1;
            break;
        }
        if (status == 200 && es_mget_parse(s->http.resp.data, s->http.resp.len, &g->mget, perr,
                                           sizeof perr) == 0) {
            if (g->mget.n == nm) {
                const char *doc_err = NULL;
                for (size_t k = 0; k < nm && !doc_err; k++)
                    if (g->mget.items[k].error &&
                        strncmp(g->mget.items[k].error, "no such index", 13) != 0)
                        doc_err = g->mget.items[k].error;
                if (!doc_err) {
                    s->mget_doc_bytes = es_mget_doc_bytes(s->http.resp.len, nm);
                    break;
                }
                snprintf(why, sizeof why, "POST %s/_mget (%s): a document could not be read: %s",
                         es_http_where(&s->http), what.data, doc_err);
            } else {
                snprintf(why, sizeof why, "POST %s/_mget (%s): %zu documents in the answer",
                         es_http_where(&s->http), what.data, g->mget.n);
            }
            es_mget_result_free(&g->mget);
        } else if (status == 200) {
            snprintf(why, sizeof why, "POST %s/_mget (%s): %s", es_http_where(&s->http), what.data, perr);
        } else {
            snprintf(why, sizeof why, "POST %s/_mget (%s): HTTP %ld: %s", es_http_where(&s->http),
                     what.data, status, es_http_excerpt(&s->http, excerpt, sizeof excerpt));
        }
        if (!es_http_retry_wait(&s->http, &attempt, status != 200 && status != 0, why)) {
            snprintf(err, errlen, "stop requested during the %s", what.data);
            goto done;
        }
    }
    rc = 0;
    goto done;
nomem:
    snprintf(err, errlen, "cannot fetch documents for unchanged TOAST columns: out of memory");
done:
    free(docs);
    cdc_buf_free(&body);
    cdc_buf_free(&what);
    return rc;
}

/* The document a TOAST merge of item i starts from: the stored one when
 * fetch_toast read it, else the one written by the same row earlier in
 * the chunk. Sets *base_refused when that earlier record was refused:
 * what it held is unknown, so this one cannot be merged either. */
static int toast_current(segment *g, size_t i, yajl_val *current, bool *base_refused, char *err,
                         size_t errlen)
{
    es_item *it = &g->items[i];
    *current = NULL;
    *base_refused = false;
    if (it->mget >= 0) {
        es_mget_item *m = &g->mget.items[it->mget];
        *current = m->found ? m->source : NULL;
    } else if (it->prev >= 0) {
        size_t p = (size_t)it->prev;
        es_item *pi = &g->items[p];
        if (pi->line_len == 0) {
            *base_refused = pi->done;
            return 0;
        }
        if (!g->prev_docs[p]) {
            const char *doc = g->body.data + pi->doc_off;
            size_t len = pi->line_off + pi->line_len - pi->doc_off;
            if (row_json_parse("a document of this batch", doc, len, CDC_JSON_MAX_DEPTH + 8,
                               &g->prev_docs[p], err, errlen) < 0)
                return -1;
        }
        *current = g->prev_docs[p];
    }
    return 0;
}

/* Builds the bulk lines of every item of the chunk items[from..to) still
 * to do, in order. */
static int build_body(es_sink *s, segment *g, size_t from, size_t to, char *err, size_t errlen)
{
    for (size_t i = from; i < to; i++) {
        es_item *it = &g->items[i];
        if (it->done)
            continue;
        const cdc_decoded_event *ev = &it->rec->ev;
        yajl_val current = NULL;
        bool base_refused = false;
        if (g->plan[i].merge && toast_current(g, i, &current, &base_refused, err, errlen) < 0)
            return -1;
        char berr[512];
        if (base_refused) {
            snprintf(berr, sizeof berr, "%s.%s id %s at lsn %" PRIu64 ": its unchanged TOAST "
                     "columns come from the row's record at lsn %" PRIu64 ", which was refused",
                     ev->schema, ev->table, item_id(g, it), ev->lsn,
                     g->items[it->prev].rec->ev.lsn);
            if (reject(s, it, berr, err, errlen) < 0)
                return -1;
            continue;
        }
        size_t mark = g->body.len, missing = 0;
        if (s->real_deletes && ev->op == 'd') {
            if (es_bulk_append_delete(&g->body, it->index, item_id(g, it), ev->lsn) < 0) {
                snprintf(err, errlen, "cannot build a _bulk request: out of memory");
                return -1;
            }
        } else if (es_bulk_append(&g->body, it->index, item_id(g, it), ev, current, &missing,
                                  NULL, berr, sizeof berr) < 0) {
            /* Only an event the decoder should not have let through, or no
             * memory; the first is this record's fault. */
            if (strstr(berr, "out of memory")) {
                snprintf(err, errlen, "%s", berr);
                return -1;
            }
            if (reject(s, it, berr, err, errlen) < 0)
                return -1;
            continue;
        }
        it->line_off = mark;
        it->line_len = g->body.len - mark;
        it->doc_off = (size_t)((char *)memchr(g->body.data + mark, '\n', it->line_len) -
                               g->body.data) + 1;
        if (missing > 0 && it->index == it->t->index) /* once, not again for the copy */
            cdc_log_warn("%s.%s id %s at lsn %" PRIu64 ": %zu unchanged TOAST column(s) not found "
                         "in index %s (row never written there, or deleted): left out",
                         ev->schema, ev->table, item_id(g, it), ev->lsn, missing, it->t->index);
    }
    return 0;
}

/* Describes the items of a request for messages: how many, which index. */
static void describe_items(const segment *g, const size_t *todo, size_t n, cdc_buf *out)
{
    cdc_buf_reset(out);
    const char *index = g->items[todo[0]].index;
    bool several = false;
    for (size_t k = 1; k < n && !several; k++)
        several = strcmp(g->items[todo[k]].index, index) != 0;
    cdc_buf_printf(out, "_bulk of %zu item(s) for index %s%s", n, index, several ? " and others" : "");
}

static int item_reject_from_response(es_sink *s, segment *g, es_item *it, const es_bulk_item *r,
                                     char *err, size_t errlen)
{
    char reason[1024];
    snprintf(reason, sizeof reason, "HTTP %d %s: %s%s%s%s [index %s, id %s, lsn %" PRIu64 "]",
             r->status, r->error_type ? r->error_type : "error",
             r->reason ? r->reason : "no reason given", r->cause ? " (caused by: " : "",
             r->cause ? r->cause : "", r->cause ? ")" : "", it->index, item_id(g, it),
             it->rec->ev.lsn);
    return reject(s, it, reason, err, errlen);
}

/* Most columns of one row set aside as unindexed before the row is refused
 * after all. */
#define ES_UNINDEXED_MAX 32

/* A document the engine refused for one field's value (a mapping conflict:
 * a jsonb scalar in a flat_object field, text in a boolean field after
 * ALTER COLUMN ... TYPE) is written again with that column under
 * ES_FIELD_UNINDEXED, so the row's other columns stay current; counted and
 * logged as a mapping conflict. Returns 1 when item i's line was rebuilt
 * (send it again), 0 when the refusal names no column of the row, -1 on a
 * stop (out of memory). */
static int unindex_refused(es_sink *s, segment *g, size_t i, const es_bulk_item *r, char *err,
                           size_t errlen)
{
    es_item *it = &g->items[i];
    const cdc_decoded_event *ev = &it->rec->ev;
    char field[256];
    if (ev->op == 'd' || !ev->after || it->n_unindexed >= ES_UNINDEXED_MAX ||
        !es_refused_field(r, field, sizeof field))
        return 0;
    /* The column: the field itself, or the object holding it ("attrs.watts"). */
    const char *column = NULL;
    size_t best = 0;
    for (size_t k = 0; k < ev->after->u.object.len + ev->n_unchanged_toast; k++) {
        const char *name = k < ev->after->u.object.len
                               ? ev->after->u.object.keys[k]
                               : ev->unchanged_toast[k - ev->after->u.object.len];
        size_t len = strlen(name);
        if (len > best && strncmp(field, name, len) == 0 && (field[len] == '\0' || field[len] == '.')) {
            column = name;
            best = len;
        }
    }
    for (size_t k = 0; column && k < it->n_unindexed; k++)
        if (strcmp(it->unindexed[k], column) == 0)
            return 0; /* set aside already, refused anyway */
    if (!column)
        return 0;
    char **grown = realloc(it->unindexed, (it->n_unindexed + 1) * sizeof *grown);
    if (!grown)
        goto nomem;
    it->unindexed = grown;
    if (!(it->unindexed[it->n_unindexed] = strdup(column)))
        goto nomem;
    it->n_unindexed++;
    yajl_val current = NULL;
    bool base_refused = false;
    if (g->plan[i].merge && toast_current(g, i, &current, &base_refused, err, errlen) < 0)
        return -1;
    es_unindexed u = {.names = (const char *const *)it->unindexed, .n = it->n_unindexed};
    size_t mark = g->body.len;
    char berr[512];
    if (es_bulk_append(&g->body, it->index, item_id(g, it), ev, current, NULL, &u, berr,
                       sizeof berr) < 0) {
        snprintf(err, errlen, "%s", berr);
        return -1;
    }
    it->line_off = mark;
    it->line_len = g->body.len - mark;
    it->doc_off = (size_t)((char *)memchr(g->body.data + mark, '\n', it->line_len) -
                           g->body.data) + 1;
    cdc_counter_add(s->m_conflicts, 1);
    cdc_log_warn("index %s refused column %s of %s.%s id %s at lsn %" PRIu64 " (%s: %s); the "
                 "row is written with that value unindexed, under " ES_FIELD_UNINDEXED,
                 it->index, column, ev->schema, ev->table, item_id(g, it), ev->lsn,
                 r->error_type, r->reason ? r->reason : "no reason given");
    return 1;
nomem:
    snprintf(err, errlen, "cannot set a refused column aside: out of memory");
    return -1;
}

/* Sends the items todo[0..n) (indices into g->items) until each is
 * applied or refused. Whole-request failures are retried by es_send or
 * here (a body that cannot be read); items that fail alone with 429/5xx
 * are sent again alone. A request refused as a whole for another reason
 * (400, 413: something in it is wrong) is split into single items, so the
 * one at fault is refused and the others go through. */
static int send_items(es_sink *s, segment *g, size_t *todo, size_t n, char *err, size_t errlen)
{
    cdc_buf body = CDC_BUF_INIT, what = CDC_BUF_INIT;
    int rc = -1;
    unsigned attempt = 0, item_attempt = 0;
    while (n > 0) {
        cdc_buf_reset(&body);
        for (size_t k = 0; k < n; k++) {
            es_item *it = &g->items[todo[k]];
            if (cdc_buf_append(&body, g->body.data + it->line_off, it->line_len) < 0)
                goto nomem;
        }
        describe_items(g, todo, n, &what);
        if (!what.data)
            goto nomem;
        es_req r = {.method = "POST", .path = "/_bulk", .ndjson = true, .body = body.data,
                    .len = body.len, .what = what.data, .timeout_ms = ES_REQUEST_TIMEOUT_MS};
        long status = 0;
        char why[1536], perr[512], excerpt[ES_EXCERPT_MAX + 1];
        int sent = es_http_send(&s->http, &r, &attempt, &status, why, sizeof why);
        if (sent < 0) {
            snprintf(err, errlen, "%s", why);
            goto done;
        }
        if (sent == 0 && status == 404) {
            /* The whole _bulk endpoint missing: a wrong URL or proxy path,
             * which the operator must fix; not the documents' fault. */
            snprintf(why, sizeof why, "POST %s/_bulk (%s): HTTP 404 (is the --es URL right?): %s",
                     es_http_where(&s->http), what.data, es_http_excerpt(&s->http, excerpt, sizeof excerpt));
            if (!es_http_retry_wait(&s->http, &attempt, true, why))
                goto stopped;
            continue;
        }
        if (sent == ES_TOO_LARGE || status >= 400) {
            char reason[1600];
            if (sent == ES_TOO_LARGE)
                snprintf(reason, sizeof reason, "%s", why);
            else
                snprintf(reason, sizeof reason, "the %s was refused as a whole: HTTP %ld: %s",
                         what.data, status, es_http_excerpt(&s->http, excerpt, sizeof excerpt));
            if (n == 1) {
                if (reject(s, &g->items[todo[0]], reason, err, errlen) < 0)
                    goto done;
                break;
            }
            cdc_log_warn("%s; sending its %zu items one by one", reason, n);
            for (size_t k = 0; k < n; k++)
                if (send_items(s, g, &todo[k], 1, err, errlen) < 0)
                    goto done;
            break;
        }
        es_bulk_result res;
        if (es_bulk_parse(s->http.resp.data, s->http.resp.len, &res, perr, sizeof perr) < 0 ||
            res.n != n) {
            if (res.root == NULL)
                snprintf(why, sizeof why, "POST %s/_bulk (%s): HTTP %ld: %s", es_http_where(&s->http),
                         what.data, status, perr);
            else
                snprintf(why, sizeof why, "POST %s/_bulk (%s): %zu items in the answer",
                         es_http_where(&s->http), what.data, res.n);
            es_bulk_result_free(&res);
            if (!es_http_retry_wait(&s->http, &attempt, false, why))
                goto stopped;
            continue;
        }
        attempt = 0;
        size_t again = 0;
        const es_bulk_item *first_retry = NULL;
        for (size_t k = 0; k < n; k++) {
            es_item *it = &g->items[todo[k]];
            const es_bulk_item *ri = &res.items[k];
            switch (ri->cls) {
            case ES_ITEM_OK:
            case ES_ITEM_CONFLICT:
                it->done = true;
                s->base.applied++;
                break;
            case ES_ITEM_REJECTED: {
                int rebuilt = unindex_refused(s, g, todo[k], ri, err, errlen);
                if (rebuilt > 0) {
                    todo[again++] = todo[k];
                    break;
                }
                if (rebuilt < 0 || item_reject_from_response(s, g, it, ri, err, errlen) < 0) {
                    es_bulk_result_free(&res);
                    goto done;
                }
                break;
            }
            case ES_ITEM_RETRY:
                if (!first_retry)
                    first_retry = ri;
                todo[again++] = todo[k]; /* again <= k: order kept */
                break;
            }
        }
        if (first_retry) {
            snprintf(why, sizeof why, "%zu of %zu item(s) of the %s must be sent again, first: "
                     "HTTP %d %s: %s [index %s, id %s]", again, n, what.data, first_retry->status,
                     first_retry->error_type ? first_retry->error_type : "",
                     first_retry->reason ? first_retry->reason : "",
                     g->items[todo[0]].index, item_id(g, &g->items[todo[0]]));
            es_bulk_result_free(&res);
            if (!es_http_retry_wait(&s->http, &item_attempt, false, why))
                goto stopped;
        } else {
            es_bulk_result_free(&res);
        }
        n = again;
    }
    rc = 0;
    goto done;
stopped:
    snprintf(err, errlen, "stop requested while %zu item(s) of a _bulk were not applied", n);
    goto done;
nomem:
    snprintf(err, errlen, "cannot build a _bulk request: out of memory");
done:
    cdc_buf_free(&body);
    cdc_buf_free(&what);
    return rc;
}

/* Applies the chunk of items that starts at `from` (es_bulk.h: request
 * sizes) and sets *to to its end: its stored documents are fetched (the
 * chunk is made smaller while their answer would be too long), its bulk
 * lines built, then sent in _bulk requests of at most s->budget bytes. */
static int apply_chunk(es_sink *s, segment *g, size_t from, size_t *to, char *err, size_t errlen)
{
    for (;;) {
        size_t nfetch;
        size_t max_fetch = es_mget_docs_per_request(s->budget, s->mget_doc_bytes);
        *to = es_chunk_end(g->plan, g->n, from, s->budget, max_fetch, &nfetch);
        int rc = fetch_toast(s, g, from, *to, err, errlen);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
    }
    if (build_body(s, g, from, *to, err, errlen) < 0)
        return -1;
    size_t nt = 0;
    for (size_t i = from; i < *to; i++)
        if (!g->items[i].done) {
            g->todo[nt] = i;
            g->sizes[nt++] = g->items[i].line_len;
        }
    for (size_t k = 0; k < nt;) {
        size_t take = es_take_by_bytes(g->sizes + k, nt - k, s->budget);
        if (send_items(s, g, g->todo + k, take, err, errlen) < 0)
            return -1;
        k += take;
    }
    chunk_reset(g, from, *to);
    return 0;
}

/* Applies recs[0..n) (no truncate) whose tables tabs[0..n) are ready
 * (apply_segment), written to their tables' indices, or with `copy` to
 * their next versions (versions_check); unchanged TOAST columns are read
 * from the index readers see either way. Runs on a lane (es_lane): s may
 * be a lane's view. */
static int apply_records(es_sink *s, consumer_record *const *recs, es_table *const *tabs,
                         size_t n, bool copy, char *err, size_t errlen)
{
    segment g = {.ids = CDC_BUF_INIT, .body = CDC_BUF_INIT};
    int rc = -1;
    g.items = calloc(n, sizeof *g.items);
    g.plan = calloc(n, sizeof *g.plan);
    g.prev_docs = calloc(n, sizeof *g.prev_docs);
    g.todo = calloc(n, sizeof *g.todo);
    g.sizes = calloc(n, sizeof *g.sizes);
    if (!g.items || !g.plan || !g.prev_docs || !g.todo || !g.sizes)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        es_item *it = &g.items[g.n];
        consumer_record *rec = recs[i];
        const cdc_decoded_event *ev = &rec->ev;
        it->rec = rec;
        it->prev = it->mget = -1;
        g.plan[g.n] = (es_chunk_item){.bytes = rec->msg ? rec->msg->len : 0, .prev = -1};
        it->t = tabs[i];
        it->index = copy ? it->t->copy_to : it->t->index;
        g.n++;
        if (!rec->key) {
            cdc_log_debug("skipped %s.%s op '%c' at lsn %" PRIu64 ": no key", ev->schema,
                          ev->table, ev->op, ev->lsn);
            s->base.skipped++;
            it->done = true;
            continue;
        }
        it->id_off = g.ids.len;
        char ierr[512];
        if (es_doc_id(rec->key, &g.ids, ierr, sizeof ierr) < 0 || cdc_buf_putc(&g.ids, '\0') < 0) {
            g.ids.len = it->id_off;
            if (reject(s, it, ierr, err, errlen) < 0)
                goto done;
            continue;
        }
        if (ev->n_unchanged_toast == 0 || ev->op == 'd')
            continue;
        /* The merge starts from the row's latest earlier write in the batch
         * (the highest LSN below this one, not simply the nearest item), or
         * else from the stored document. Deletes are never a start: every
         * change of a row comes from its own partition in LSN order, except
         * the delete a key-changing update adds at the old key (keychange.h),
         * which comes from the new key's partition, in any batch, and may be
         * older than a re-insert of that key already stored or earlier in
         * the batch; and the row's own deletes are always followed by the
         * insert that made this update possible. An earlier write in an
         * earlier chunk is in the index by the time this one is built, so
         * the stored document is then read instead (es_chunk_fetches). */
        for (size_t p = g.n - 1; p-- > 0;) {
            es_item *pi = &g.items[p];
            if (!pi->done && pi->t == it->t && pi->rec->ev.op != 'd' &&
                pi->rec->ev.lsn < ev->lsn &&
                (it->prev < 0 || pi->rec->ev.lsn > g.items[it->prev].rec->ev.lsn) &&
                strcmp(item_id(&g, pi), item_id(&g, it)) == 0)
                it->prev = (long)p;
        }
        g.plan[g.n - 1].merge = true;
        g.plan[g.n - 1].prev = it->prev;
    }
    for (size_t from = 0, to; from < g.n; from = to)
        if (apply_chunk(s, &g, from, &to, err, errlen) < 0)
            goto done;
    rc = 0;
    goto done;
nomem:
    snprintf(err, errlen, "cannot apply a batch of %zu records: out of memory", n);
done:
    segment_free(&g);
    return rc;
}

/* A lane applies the records of some of a batch's partitions, on its own
 * HTTP client: the lanes' requests are in flight together (the node
 * indexes faster with several, bench/search). Every change of a row comes
 * from one partition, and a partition's records stay in one lane in their
 * order, so no row's writes are reordered; the one exception, the delete
 * a key change adds at the old key (keychange.h), is ordered by its
 * external version as before, whichever lane it is in. Lane 0 runs on the
 * calling thread with the sink itself; the others on threads, each with a
 * view: a copy of the sink, made for the batch, but for its client and
 * counters, which are the lane's own. The tables are all made ready
 * before the lanes start, and lanes only read them. */
typedef struct es_lane {
    es_sink *view;
    consumer_record **recs;
    es_table **tabs;
    size_t n;
    pthread_t thread;
    bool started;
    int rc;
    char err[1024];
} es_lane;

/* Applies a lane's records: first the copies of the writes of tables
 * being rebuilt into their next versions, then the writes themselves, so
 * that a next version always holds at least what readers see
 * (es_rebuild.h). */
static int apply_lane(es_sink *s, consumer_record *const *recs, es_table *const *tabs, size_t n,
                      char *err, size_t errlen)
{
    size_t nc = 0;
    for (size_t i = 0; i < n; i++)
        nc += tabs[i]->copy_to && recs[i]->key;
    if (nc > 0) {
        consumer_record **crecs = calloc(nc, sizeof *crecs);
        es_table **ctabs = calloc(nc, sizeof *ctabs);
        int rc = -1;
        if (!crecs || !ctabs) {
            snprintf(err, errlen, "cannot copy a batch of %zu records: out of memory", nc);
        } else {
            for (size_t i = 0, k = 0; i < n; i++)
                if (tabs[i]->copy_to && recs[i]->key) {
                    crecs[k] = recs[i];
                    ctabs[k++] = tabs[i];
                }
            /* A record is counted once, when it is written for readers. */
            uint64_t applied = s->base.applied;
            rc = apply_records(s, crecs, ctabs, nc, true, err, errlen);
            s->base.applied = applied;
        }
        free(crecs);
        free(ctabs);
        if (rc < 0)
            return -1;
    }
    return apply_records(s, recs, tabs, n, false, err, errlen);
}

static void *lane_main(void *arg)
{
    es_lane *l = arg;
    l->rc = apply_lane(l->view, l->recs, l->tabs, l->n, l->err, sizeof l->err);
    return NULL;
}

/* The lane of rec: its partition's, given in order of first appearance,
 * round robin. parts[0..*nparts) holds the partitions seen. */
static size_t lane_of(const consumer_record *rec, const rd_kafka_message_t **parts,
                      size_t *lanes_of, size_t *nparts, size_t nlanes)
{
    const rd_kafka_message_t *m = rec->msg;
    if (!m || nlanes == 1)
        return 0;
    for (size_t k = 0; k < *nparts; k++)
        if (parts[k]->rkt == m->rkt && parts[k]->partition == m->partition)
            return lanes_of[k];
    parts[*nparts] = m;
    lanes_of[*nparts] = *nparts % nlanes;
    return lanes_of[(*nparts)++];
}

/* Applies recs[0..n), which holds no truncate: their tables and indices
 * made ready here, then the records in lanes (es_lane). */
static int apply_segment(es_sink *s, consumer_record *const *recs, size_t n, char *err,
                         size_t errlen)
{
    int rc = -1;
    es_lane *lanes = calloc(s->nlanes, sizeof *lanes);
    es_table **tabs = calloc(n, sizeof *tabs);
    es_table **lane_tabs = calloc(n, sizeof *lane_tabs);
    consumer_record **lane_recs = calloc(n, sizeof *lane_recs);
    const rd_kafka_message_t **parts = calloc(n, sizeof *parts);
    size_t *lanes_of = calloc(n, sizeof *lanes_of), *lane_ix = calloc(n, sizeof *lane_ix);
    if (!lanes || !tabs || !lane_tabs || !lane_recs || !parts || !lanes_of || !lane_ix) {
        snprintf(err, errlen, "cannot apply a batch of %zu records: out of memory", n);
        goto done;
    }
    size_t nparts = 0;
    for (size_t i = 0; i < n; i++) {
        const cdc_decoded_event *ev = &recs[i]->ev;
        es_table *t = tabs[i] = table_get(s, ev->schema, ev->table, err, errlen);
        if (!t)
            goto done;
        if (!recs[i]->key) {
            /* A table without replica identity: no row to address. */
            if (!t->warned_nokey) {
                cdc_log_warn("%s.%s: events without a key (no replica identity) cannot be "
                             "written to index %s; skipping them (counted)",
                             ev->schema, ev->table, t->index);
                t->warned_nokey = true;
            }
        } else {
            t->truncated = false;
            if (index_ensure(s, t, ev->types, err, errlen) < 0 ||
                versions_check(s, t, err, errlen) < 0)
                goto done;
        }
        lane_ix[i] = lane_of(recs[i], parts, lanes_of, &nparts, s->nlanes);
        lanes[lane_ix[i]].n++;
    }
    /* Each lane's records, in batch order, side by side in lane_recs. */
    for (size_t k = 0, at = 0; k < s->nlanes; k++) {
        lanes[k].recs = lane_recs + at;
        lanes[k].tabs = lane_tabs + at;
        at += lanes[k].n;
        lanes[k].n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        es_lane *l = &lanes[lane_ix[i]];
        l->recs[l->n] = recs[i];
        l->tabs[l->n++] = tabs[i];
    }
    for (size_t k = 1; k < s->nlanes; k++) {
        es_lane *l = &lanes[k];
        if (l->n == 0)
            continue;
        /* The client stays where it is: libcurl holds its address. */
        es_sink *v = l->view = &s->views[k - 1];
        es_http http = v->http;
        *v = *s;
        v->http = http;
        v->base.applied = v->base.rejected = v->base.skipped = v->base.retries = 0;
        if (pthread_create(&l->thread, NULL, lane_main, l) != 0) {
            /* No thread: the lane runs after lane 0, on this one. */
            cdc_log_warn("cannot start a thread for a _bulk lane: applying its %zu records "
                         "after the others", l->n);
            continue;
        }
        l->started = true;
    }
    rc = lanes[0].n ? apply_lane(s, lanes[0].recs, lanes[0].tabs, lanes[0].n, err, errlen) : 0;
    for (size_t k = 1; k < s->nlanes; k++) {
        es_lane *l = &lanes[k];
        if (l->n == 0)
            continue;
        if (l->started)
            pthread_join(l->thread, NULL);
        else
            lane_main(l);
        s->base.applied += l->view->base.applied;
        s->base.rejected += l->view->base.rejected;
        s->base.skipped += l->view->base.skipped;
        s->base.retries += l->view->base.retries;
        if (l->view->mget_doc_bytes > s->mget_doc_bytes)
            s->mget_doc_bytes = l->view->mget_doc_bytes;
        if (l->rc < 0 && rc == 0) {
            snprintf(err, errlen, "%s", l->err);
            rc = -1;
        }
    }
done:
    free(lanes);
    free(tabs);
    free(lane_tabs);
    free(lane_recs);
    free(parts);
    free(lanes_of);
    free(lane_ix);
    return rc;
}

static int es_apply(sink *base, consumer_record *const *recs, size_t n, char *err, size_t errlen)
{
    es_sink *s = (es_sink *)base;
    /* A batch read before a stop must not be applied after one that the
     * stop cut short: its offsets would be stored past the other's. */
    if (cdc_signal_stop_requested()) {
        snprintf(err, errlen, "stop requested before a batch of %zu records was applied", n);
        return -1;
    }
    size_t i = 0;
    while (i < n) {
        if (recs[i]->ev.op == 't') {
            if (apply_truncate(s, recs[i], err, errlen) < 0)
                return -1;
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && recs[j]->ev.op != 't')
            j++;
        if (apply_segment(s, recs + i, j - i, err, errlen) < 0)
            return -1;
        i = j;
    }
    return 0;
}

/* --es-switch-alias (sink.h at_end): once everything up to the end offsets
 * is applied, the consumer is sent for the end offsets of a moment at
 * least 2 x ES_NEXT_TTL_MS after this process made or found the last of
 * its indices (a live consumer copies into it from a second after that),
 * again if a table first seen meanwhile makes that moment later; once
 * everything up to those is applied, each table's alias is moved to its
 * index (es_rebuild.h says why nothing is lost). */
static int es_at_end(sink *base, char *err, size_t errlen)
{
    es_sink *s = (es_sink *)base;
    if (!s->switch_alias)
        return 0;
    int64_t last = 0;
    for (es_table *t = s->tables; t; t = t->next)
        if (t->made_ms > last)
            last = t->made_ms;
    if (s->ends_at_ms == 0 || (last && s->ends_at_ms < last + 2 * ES_NEXT_TTL_MS)) {
        while (last && cdc_clock_mono_ms() < last + 2 * ES_NEXT_TTL_MS)
            if (!sink_backoff(0, 100, 100)) {
                snprintf(err, errlen, "stop requested before the aliases were moved");
                return -1;
            }
        s->ends_at_ms = cdc_clock_mono_ms();
        cdc_log_info("--es-switch-alias: applying up to the end offsets of now, then moving "
                     "the aliases");
        return 1;
    }
    int rc = 0;
    for (es_table *t = s->tables; t; t = t->next) {
        char terr[1024];
        if (!t->made_ms ||
            es_rebuild_switch(&s->http, t->name, s->version, !s->real_deletes, terr,
                              sizeof terr) == 0)
            continue;
        if (cdc_signal_stop_requested()) {
            snprintf(err, errlen, "%s", terr);
            return -1;
        }
        if (rc == 0)
            snprintf(err, errlen, "%s", terr);
        else
            cdc_log_error("%s", terr);
        rc = -1;
    }
    return rc;
}

/* ---- set-up ---------------------------------------------------------- */

/* --es-mappings FILE, read once at start. */
static int overrides_load(es_sink *s, const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "rb");
    cdc_buf b = CDC_BUF_INIT;
    char chunk[4096], perr[400];
    size_t n;
    int rc = -1;
    if (!f) {
        snprintf(err, errlen, "--es-mappings %s: cannot open it", file);
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (cdc_buf_append(&b, chunk, n) < 0) {
            snprintf(err, errlen, "--es-mappings %s: out of memory", file);
            goto done;
        }
    if (ferror(f)) {
        snprintf(err, errlen, "--es-mappings %s: cannot read it", file);
        goto done;
    }
    if (es_mapping_overrides_parse(b.data ? b.data : "", b.len, &s->overrides, perr,
                                   sizeof perr) < 0) {
        snprintf(err, errlen, "%s (file %s)", perr, file);
        goto done;
    }
    rc = 0;
done:
    fclose(f);
    cdc_buf_free(&b);
    return rc;
}

static void es_destroy(sink *base)
{
    es_sink *s = (es_sink *)base;
    if (!s)
        return;
    es_http_cleanup(&s->http);
    for (size_t k = 0; s->views && k + 1 < s->nlanes; k++)
        es_http_cleanup(&s->views[k].http);
    free(s->views);
    es_mapping_overrides_free(s->overrides);
    while (s->tables) {
        es_table *next = s->tables->next;
        table_free(s->tables);
        s->tables = next;
    }
    es_index_rules_free(s->names);
    free(s);
}

sink *sink_es_new(const cdc_config *cfg, char *err, size_t errlen)
{
    es_sink *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "cannot set up the Elasticsearch sink: out of memory");
        return NULL;
    }
    s->base.name = SINK_NAME;
    s->base.apply = es_apply;
    s->base.at_end = es_at_end;
    s->base.destroy = es_destroy;
    s->budget = es_request_budget((size_t)cdc_config_int(cfg, "batch-bytes"));
    s->mget_doc_bytes = ES_MGET_DOC_GUESS;
    const char *const *templates;
    size_t ntemplates = cdc_config_list(cfg, "es-index", &templates);
    s->names = es_index_rules_new(cdc_config_str(cfg, "es-index-prefix"), templates, ntemplates,
                                  err, errlen);
    if (!s->names)
        goto fail;
    s->m_conflicts = cdc_metrics_counter("pgcdc_consumer_es_mapping_conflicts_total",
        "Mapping changes the search engine could not take (a column whose type changed, "
        "fields it refused): each also logged", NULL);
    const char *mappings = cdc_config_str(cfg, "es-mappings");
    if (mappings && overrides_load(s, mappings, err, errlen) < 0)
        goto fail;
    s->version = (unsigned)cdc_config_int(cfg, "es-index-version");
    s->switch_alias = cdc_config_bool(cfg, "es-switch-alias");
    if (s->switch_alias && (s->version < 2 || !cdc_config_bool(cfg, "until-end"))) {
        snprintf(err, errlen, "--es-switch-alias needs --until-end and --es-index-version N "
                 "with N >= 2 (the version that replaces N-1)");
        goto fail;
    }
    const char *deletes = cdc_config_str(cfg, "es-deletes");
    s->real_deletes = deletes && strcmp(deletes, "delete") == 0;
    if (es_http_init(&s->http, cfg, &s->base.retries, err, errlen) < 0)
        goto fail;
    s->nlanes = (size_t)cdc_config_int(cfg, "es-concurrency");
    if (!(s->views = calloc(s->nlanes, sizeof *s->views))) {
        snprintf(err, errlen, "cannot set up the Elasticsearch sink: out of memory");
        goto fail;
    }
    for (size_t k = 0; k + 1 < s->nlanes; k++)
        if (es_http_init(&s->views[k].http, cfg, &s->views[k].base.retries, err, errlen) < 0)
            goto fail;
    cdc_log_info("Elasticsearch/OpenSearch sink: %zu URL(s), first %s, deletes as %s, "
                 "writing to %s, requests of at most %zu bytes, up to %zu in flight",
                 s->http.nurls,
                 s->http.masked[0], s->real_deletes ? "deletes" : "deleted markers",
                 s->version ? "a version of each index (a rebuild)" : "each index's alias",
                 s->budget, s->nlanes);
    return &s->base;
fail:
    es_destroy(&s->base);
    return NULL;
}
