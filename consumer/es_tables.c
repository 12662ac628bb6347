/* es_tables.c: what the Elasticsearch/OpenSearch sink knows of each
 * table's index: made on first use; the index <name>_v1 and its alias
 * created in one request with the mapping derived from the events' column
 * types (es_mapping.c) and the --es-mappings overrides, once per process;
 * the mapping extended when a column is added; and which version readers
 * see and whether a rebuild's next version exists (es_rebuild.h). */
#include "sink_es.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_buf.h"
#include "cdc_clock.h"
#include "cdc_log.h"
#include "es_bulk.h"
#include "es_rebuild.h"
#include "es_response.h"

/* How long a real delete is remembered (--es-deletes=delete): Kafka's
 * default retention, so that a replay of all a default topic holds cannot
 * bring a deleted row back while the engine keeps its version map. */
#define ES_GC_DELETES "7d"

void es_table_free(es_table *t)
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

es_table *es_table_get(es_sink *s, const char *schema, const char *table, char *err,
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
        es_table_free(t);
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
int es_index_ensure(es_sink *s, es_table *t, yajl_val types, char *err, size_t errlen)
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
int es_versions_check(es_sink *s, es_table *t, char *err, size_t errlen)
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
