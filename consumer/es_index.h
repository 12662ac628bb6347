/* es_index.h: which index a table's documents go to, and the alias in
 * front of it. No I/O: the sink (sink_es.c) sends what is built here.
 *
 * Names: --es-index holds at most one TEMPLATE and any number of
 * SCHEMA.TABLE=TEMPLATE overrides. A template is text in which {schema}
 * and {table} stand for the table's names, and {{ and }} for a brace; any
 * other brace is refused at start. The expansion is then made a valid
 * index name by es_index_valid() (es_bulk.h: lowercase, forbidden bytes to
 * '_', a hash suffix when that changed anything). Without a template the
 * name is today's <--es-index-prefix><schema>.<table>.
 *
 * Aliases: readers use that name, which is an alias of the physical index
 * <name>_v<N>. The consumer creates <name>_v1 and the alias in one request
 * when neither exists (es_index_create_body) and writes through the alias,
 * so whatever index the alias points to gets the writes. With deleted
 * markers (--es-deletes=marker) the alias filters the markers out. Names
 * are cut to ES_INDEX_MAX - ES_VERSION_SUFFIX_MAX bytes, so that the
 * physical name fits too.
 *
 * Rebuilds (es_rebuild.h): the readers' version <name>_v<N> and the next
 * one, <name>_v<N+1>, are read from one answer: the aliases of the
 * indices matching <name>_v* (es_versions_read); the alias moves in one _aliases request
 * (es_alias_switch_body). */
#ifndef PGCDC_CONSUMER_ES_INDEX_H
#define PGCDC_CONSUMER_ES_INDEX_H

#include <stdbool.h>
#include <stddef.h>

#include "cdc_buf.h"

/* "_v" and up to 6 digits. */
#define ES_VERSION_SUFFIX_MAX 8
#define ES_VERSION_MAX 999999

/* The filter of the alias in front of an index with deleted markers. */
#define ES_LIVE_FILTER "{\"bool\":{\"must_not\":{\"term\":{\"_pgcdc_deleted\":true}}}}"

typedef struct es_index_rules es_index_rules;

/* Checks one --es-index value ("TEMPLATE" or "SCHEMA.TABLE=TEMPLATE").
 * Returns 0, or -1 with err set (a brace other than {schema}, {table},
 * {{, }}; an empty template; an override without "schema.table"). */
int es_index_value_check(const char *value, char *err, size_t errlen);

/* The rules of values[0..n) (--es-index) with `prefix` (--es-index-prefix)
 * for the default name. Returns NULL with err set (a bad value, two
 * templates, no memory). */
es_index_rules *es_index_rules_new(const char *prefix, const char *const *values, size_t n,
                                   char *err, size_t errlen);
void es_index_rules_free(es_index_rules *r);

/* Appends the index name (the alias readers query) of schema.table to
 * out; *changed tells that es_index_valid() changed the expansion.
 * Returns 0 or -1 (out of memory). */
int es_index_rules_name(const es_index_rules *r, const char *schema, const char *table,
                        cdc_buf *out, bool *changed);

/* Appends "/<index>" to a URL path, the name percent-encoded: es_index_name
 * leaves characters such as '%', '&', '+' or '[' in it, which a URL would
 * read as an escape, a separator or a space. Returns 0 or -1 (memory). */
int es_path_put_index(cdc_buf *path, const char *index);

/* Appends "<name>_v<version>". Returns 0 or -1. */
int es_index_physical(const char *name, unsigned version, cdc_buf *out);

/* The body of PUT /<physical>: `create_body`, a JSON object such as
 * {"mappings":{...}}, with "aliases" added to it: the alias, filtered by
 * ES_LIVE_FILTER when `filtered`. Returns 0, or -1 (create_body is not an
 * object with members; no memory). */
int es_index_create_body(const char *create_body, const char *alias, bool filtered,
                         cdc_buf *out);

/* The indices of GET /_alias/<name>'s answer ({"<index>":{"aliases":..},
 * ..}), appended to out each followed by a '\0'; *n is how many. Returns
 * 0, or -1 with err set (not such an object; no memory). */
int es_alias_indices(const char *body, size_t len, cdc_buf *out, size_t *n, char *err,
                     size_t errlen);

/* The N of `physical` when it is "<name>_v<N>" (N in 1..ES_VERSION_MAX,
 * digits only, no leading zero), else 0. */
unsigned es_index_version_of(const char *name, const char *physical);

/* Reads the answer of GET /<name>_v%2A/_alias, %2A being '*' ({"<index>":
 * {"aliases":{"<alias>":{..}}}, ..}: each matching index with its aliases).
 * *current = N when the alias `name` is on exactly one index of the answer
 * and that is <name>_v<N>, else 0; *next_exists: <name>_v<N+1> is in the
 * answer (false when *current is 0). Returns 0, or -1 with err set (not
 * such an object). */
int es_versions_read(const char *body, size_t len, const char *name, unsigned *current,
                     bool *next_exists, char *err, size_t errlen);

/* What a consumer writing through the alias knows of a table's versions
 * (es_rebuild.h): the N of the index <name>_v<N> the alias is on (0: not
 * known, or not one such index), whether <name>_v<N+1> exists (its writes
 * are then copied there), and whether the last question was refused. */
typedef struct es_versions {
    unsigned current;
    bool next_exists;
    bool refused;
} es_versions;

/* What es_versions_update changed, for the log. */
enum {
    ES_VERSIONS_MOVED = 1,        /* the alias is on another version than known */
    ES_VERSIONS_COPY_START = 2,   /* a next version to copy into, not known before */
    ES_VERSIONS_COPY_STOP = 4,    /* the next version copied into is no longer one */
    ES_VERSIONS_REFUSED = 8,      /* the question is refused, and was answered before */
    ES_VERSIONS_ANSWERED = 16,    /* the question is answered again after refusals */
};

/* Updates *known with an answer, or with a refusal when answer is NULL: a
 * refusal keeps what was known (a next version already seen stays copied
 * into: forgetting it would leave batches uncopied that a rebuild relies
 * on; es_rebuild.h) and only marks it refused. Returns the ES_VERSIONS_*
 * bits of what changed. */
unsigned es_versions_update(es_versions *known, const es_versions *answer);

/* The body of POST /_aliases that moves `alias` from index `from` to `to`
 * in one request: readers see one or the other, never neither. The alias
 * on `to` is filtered by ES_LIVE_FILTER when `filtered`. Returns 0 or -1
 * (no memory). */
int es_alias_switch_body(const char *alias, const char *from, const char *to, bool filtered,
                         cdc_buf *out);

/* The index.refresh_interval of GET /<index>/_settings/index.refresh_interval
 * ({"<index>":{"settings":{"index":{"refresh_interval":"1s"}}}}, or {}
 * when the index has none of its own), appended to out as a JSON value:
 * the string, or null. Returns 0, or -1 with err set. */
int es_refresh_interval_read(const char *body, size_t len, cdc_buf *out, char *err,
                             size_t errlen);

#endif
