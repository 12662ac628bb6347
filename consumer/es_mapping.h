/* es_mapping.h: the index mapping the Elasticsearch/OpenSearch sink derives
 * from the column types of EVENTS.md ("types"), the user's per-table
 * overrides (--es-mappings) and what the sink already put into an index.
 * Pure: bodies are built from values, nothing here sends or reads. */
#ifndef PGCDC_ES_MAPPING_H
#define PGCDC_ES_MAPPING_H

#include <stdbool.h>
#include <stddef.h>

#include <yajl/yajl_tree.h>

#include "cdc_buf.h"

typedef enum es_engine {
    ES_ENGINE_ELASTICSEARCH = 0,
    ES_ENGINE_OPENSEARCH,
} es_engine;

/* The engine of a GET / answer: OpenSearch says version.distribution
 * "opensearch"; anything else is taken for Elasticsearch. Returns 0, or -1
 * with err set when the body is not a JSON object. */
int es_mapping_engine(const char *body, size_t len, es_engine *out, char *err, size_t errlen);

/* Appends the field mapping of one column of PostgreSQL type text `type`
 * (EVENTS.md "types": format_type's text, "enum " before enums), e.g.
 * {"type":"scaled_float","scaling_factor":100,"ignore_malformed":true}.
 * Returns 0 or -1 (memory). */
int es_mapping_field(es_engine engine, const char *type, cdc_buf *out);

/* The user's overrides: a JSON object of "<schema>.<table>" (or "*" for
 * every table) to {"settings":{...},"properties":{"<column>":{...}}}.
 * Parsed once at start. */
typedef struct es_mapping_overrides es_mapping_overrides;
/* Returns 0, or -1 with err naming what is wrong ("--es-mappings: ..."). */
int es_mapping_overrides_parse(const char *json, size_t len, es_mapping_overrides **out,
                               char *err, size_t errlen);
void es_mapping_overrides_free(es_mapping_overrides *o);

/* What the sink has put into one index: the type text of each column it
 * mapped. Zeroed memory is an empty one. */
typedef struct es_mapping_known {
    char **cols, **types;
    size_t n, cap;
} es_mapping_known;
void es_mapping_known_free(es_mapping_known *k);

/* The body of PUT /<index>: settings (the override's, else none) and
 * mappings {"dynamic":false,"properties":{...}}: pgcdc's own fields, one
 * field per column of `types` (object or NULL), the override's properties
 * over them. Records the columns in *known. Without types (outbox records,
 * events of an older producer) nothing is known to derive a mapping from:
 * "dynamic" is then true, as before pgcdc derived mappings, so that such
 * documents stay searchable. Returns 0 or -1 (err). */
int es_mapping_index_body(es_engine engine, yajl_val types, const es_mapping_overrides *o,
                          const char *schema, const char *table, es_mapping_known *known,
                          cdc_buf *out, char *err, size_t errlen);

/* Whether `types` (NULL: nothing to say) is exactly what *known holds, in
 * its order: true for every event of a table but the first ones after a
 * schema change, in one pass, so that the per-record check costs little.
 * False means es_mapping_extend has something to look at. */
bool es_mapping_unchanged(const es_mapping_known *k, yajl_val types);

/* The columns of `types` an index's mapping does not cover as such yet.
 * Appends to `add` the body of PUT /<index>/_mapping with the columns
 * *known lacks (nothing when none), and to `changed` one
 * "<column> (<old> -> <new>); " per column whose type text differs from
 * the one mapped: a mapping cannot change a field's type, the caller
 * reports these. *known then holds exactly `types`, so each is sent or
 * reported once. Columns the override maps are left alone. Returns 0 or
 * -1. */
int es_mapping_extend(es_engine engine, yajl_val types, const es_mapping_overrides *o,
                      const char *schema, const char *table, es_mapping_known *known,
                      cdc_buf *add, cdc_buf *changed, char *err, size_t errlen);

#endif
