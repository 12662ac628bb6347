/* sink_es.h: what the Elasticsearch/OpenSearch sink's files share: the
 * sink's state and its tables', and the steps one file calls in another:
 * a table's index made ready (es_tables.c), a truncate (es_truncate.c). Private to the sink:
 * the rest of the consumer sees sink.h only. */
#ifndef PGCDC_CONSUMER_SINK_ES_H
#define PGCDC_CONSUMER_SINK_ES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdc_metrics.h"
#include "es_engine.h"
#include "es_http.h"
#include "es_index.h"
#include "es_mapping.h"
#include "sink.h"
#include <yajl/yajl_tree.h>

/* The sink's name in dead letters and metrics. */
#define ES_SINK_NAME "es"

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
    /* Writing through the alias (es_versions_check): what is known of the
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

/* The table's state, made on first use (es_tables.c). Returns NULL with
 * err (memory). */
es_table *es_table_get(es_sink *s, const char *schema, const char *table, char *err,
                       size_t errlen);

/* Frees t and the tables after it. */
void es_table_free(es_table *t);

/* Makes t's index ready (created with its alias and mapping, or found)
 * once per process, and its mapping extended by the columns of `types`
 * it lacks (es_tables.c says how). Returns 0, or -1 with err on a stop. */
int es_index_ensure(es_sink *s, es_table *t, yajl_val types, char *err, size_t errlen);

/* Before a batch of t is built: which version readers see and whether a
 * rebuild's next version exists (t->copy_to), asked at most once per
 * ES_NEXT_TTL_MS (sink_es.c says more). Returns 0, or -1 on a stop. */
int es_versions_check(es_sink *s, es_table *t, char *err, size_t errlen);

/* Applies a TRUNCATE record (es_truncate.c). Returns 0 (applied, or
 * dead-lettered when it can never succeed), or -1 with err on a stop. */
int es_truncate_apply(es_sink *s, consumer_record *rec, char *err, size_t errlen);

#endif
